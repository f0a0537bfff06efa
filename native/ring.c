/* dataio._native.Ring(capacity, kind="spsc" | "mpmc"): the Python binding of the ring core (ring_core.h).
 *
 * The binding keeps references (a ring holds one per item), checks arguments, releases the GIL around blocking
 * waits and returns to Python every slice to run signal handlers; the core moves the items. See ring_core.h for
 * the data structures, blocking and close semantics.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "forks.h"
#include "ring.h"

#ifdef __linux__

#include "ring_core.h"

static PyObject *RingClosed; /* dataio._native.RingClosed */

/* No Py_TPFLAGS_HAVE_GC on purpose: tp_traverse would read cells that threads without the GIL are moving
 * items in and out of, and a collector that counted an item in one pass and not the next could free an object
 * a getter is about to return. The price: a cycle through a ring's items is not collected. */
typedef struct {
    PyObject_HEAD
    ring_t *ring;
    unsigned generation; /* forks_generation() at creation */
} RingObject;

/* fork() copies a ring as the parent's threads left it: a put or get may be half done (an mpmc cell claimed but
 * never published, `putting` or an spsc busy flag never reset), and the threads on its other side do not exist in
 * the child, so a get could wait forever. A forked child therefore refuses put and get on an inherited ring (close,
 * len, repr and freeing it work): -1 with RuntimeError set. */
static int check_same_process(RingObject *self) {
    if (self->generation == forks_generation()) return 0;
    PyErr_SetString(PyExc_RuntimeError, "this Ring was inherited through fork(): the threads on its other side are "
                                        "in the parent process; create a new Ring in the child");
    return -1;
}

static void drop_item(void *item) { Py_DECREF((PyObject *)item); }

static PyObject *Ring_new(PyTypeObject *type, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"capacity", "kind", NULL};
    Py_ssize_t capacity;
    PyObject *kind_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "n|O:Ring", kwlist, &capacity, &kind_obj)) return NULL;
    if (capacity < 1 || capacity > (Py_ssize_t)RING_MAX_CAPACITY) {
        PyErr_Format(PyExc_ValueError, "Ring capacity must be between 1 and %u, got %zd", RING_MAX_CAPACITY,
                     capacity);
        return NULL;
    }
    int kind = RING_MPMC;
    if (kind_obj != NULL) {
        if (!PyUnicode_Check(kind_obj)) {
            PyErr_Format(PyExc_TypeError, "Ring kind must be a str ('spsc' or 'mpmc'), got %.100s",
                         Py_TYPE(kind_obj)->tp_name);
            return NULL;
        }
        if (PyUnicode_CompareWithASCIIString(kind_obj, "spsc") == 0) {
            kind = RING_SPSC;
        } else if (PyUnicode_CompareWithASCIIString(kind_obj, "mpmc") != 0) {
            PyErr_Format(PyExc_ValueError, "Ring kind must be 'spsc' or 'mpmc', got %R", kind_obj);
            return NULL;
        }
    }
    RingObject *self = (RingObject *)type->tp_alloc(type, 0);
    if (self == NULL) return NULL;
    self->generation = forks_generation();
    self->ring = ring_create(kind, (uint32_t)capacity);
    if (self->ring == NULL) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return (PyObject *)self;
}

static void Ring_dealloc(RingObject *self) {
    ring_t *r = self->ring;
    self->ring = NULL;
    if (r != NULL) ring_destroy(r, drop_item); /* the leftover items' references die with the ring */
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* timeout=None -> -1 (wait forever); else nanoseconds >= 0. Infinity and > 10 years also mean forever. */
static int parse_timeout(PyObject *obj, int64_t *out) {
    if (obj == NULL || obj == Py_None) {
        *out = -1;
        return 0;
    }
    double t = PyFloat_AsDouble(obj); /* floats, ints, numpy scalars: __float__, else __index__ */
    if (t == -1.0 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_TypeError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_TypeError, "timeout must be a number of seconds or None, got %.100s",
                         Py_TYPE(obj)->tp_name);
        }
        return -1;
    }
    if (isnan(t) || t < 0) {
        PyErr_Format(PyExc_ValueError, "timeout must be >= 0 seconds or None, got %R", obj);
        return -1;
    }
    *out = t > 3.2e8 ? -1 : (int64_t)(t * 1e9);
    return 0;
}

/* The blocking part of put/get, entered after a failed attempt with the GIL held and ring_enter done.
 * Returns RING_OK, RING_CLOSED or RING_TIMEOUT with the side still entered, or -1 with a Python exception set
 * and the side left (a signal handler raised, or an spsc side was taken over while the handler ran). */
static int Ring_block(RingObject *self, int put, void **io, int64_t timeout_ns) {
    ring_t *r = self->ring;
    int64_t deadline = timeout_ns < 0 ? -1 : ring_now_ns() + timeout_ns;
    int st;
    for (;;) {
        int64_t slice_end = ring_now_ns() + RING_SLICE_NS;
        Py_BEGIN_ALLOW_THREADS
        st = ring_wait(r, put, io, deadline, slice_end);
        Py_END_ALLOW_THREADS
        if (st != RING_SLICE) return st;
        /* handlers run with the side released: a handler may use this ring itself */
        ring_leave(r, put);
        if (PyErr_CheckSignals() < 0) return -1;
        if (!ring_enter(r, put)) {
            PyErr_SetString(PyExc_RuntimeError,
                            put ? "spsc Ring: another thread started a put while this one waited "
                                  "(one producer at a time; use kind='mpmc')"
                                : "spsc Ring: another thread started a get while this one waited "
                                  "(one consumer at a time; use kind='mpmc')");
            return -1;
        }
    }
}

static PyObject *busy_error(int put) {
    PyErr_SetString(PyExc_RuntimeError, put ? "spsc Ring: two threads put at the same time "
                                              "(one producer at a time; use kind='mpmc')"
                                            : "spsc Ring: two threads get at the same time "
                                              "(one consumer at a time; use kind='mpmc')");
    return NULL;
}

/* put/try_put: block = 0 tries once. Returns True, False (timeout) or NULL (RingClosed / other error). */
static PyObject *Ring_put_impl(RingObject *self, PyObject *item, int64_t timeout_ns) {
    ring_t *r = self->ring;
    if (check_same_process(self) < 0) return NULL;
    if (!ring_enter(r, 1)) return busy_error(1);
    Py_INCREF(item); /* this reference moves into the ring, and from there to the getter */
    int st = ring_attempt_put(r, item);
    if (st == RING_FULL && timeout_ns != 0) {
        Py_INCREF(self); /* keep the ring alive while the GIL is released */
        void *io = item;
        st = Ring_block(self, 1, &io, timeout_ns);
        Py_DECREF(self);
    }
    if (st >= 0) ring_leave(r, 1);
    if (st == RING_OK) Py_RETURN_TRUE;
    Py_DECREF(item); /* not stored */
    if (st == RING_FULL || st == RING_TIMEOUT) Py_RETURN_FALSE;
    if (st == RING_CLOSED) PyErr_SetString(RingClosed, "put on a closed Ring");
    return NULL;
}

/* get/try_get: returns a new reference, or NULL with *st_out = RING_EMPTY / RING_TIMEOUT and no exception,
 * or NULL with an exception (RingClosed or another error). */
static PyObject *Ring_get_impl(RingObject *self, int64_t timeout_ns, int *st_out) {
    ring_t *r = self->ring;
    *st_out = -1;
    if (check_same_process(self) < 0) return NULL;
    if (!ring_enter(r, 0)) return busy_error(0);
    void *item = NULL;
    int st = ring_attempt_get(r, &item);
    if ((st == RING_EMPTY || st == RING_DRAINING) && timeout_ns != 0) {
        Py_INCREF(self);
        st = Ring_block(self, 0, &item, timeout_ns);
        Py_DECREF(self);
    }
    if (st >= 0) ring_leave(r, 0);
    *st_out = st;
    if (st == RING_OK) return (PyObject *)item; /* the put's reference, now the caller's */
    if (st == RING_CLOSED) PyErr_SetString(RingClosed, "get on a closed and drained Ring");
    return NULL;
}

static PyObject *Ring_put(RingObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"item", "timeout", NULL};
    PyObject *item, *timeout = NULL;
    int64_t timeout_ns;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|O:put", kwlist, &item, &timeout)) return NULL;
    if (parse_timeout(timeout, &timeout_ns) < 0) return NULL;
    return Ring_put_impl(self, item, timeout_ns);
}

static PyObject *Ring_try_put(RingObject *self, PyObject *item) { return Ring_put_impl(self, item, 0); }

static PyObject *Ring_get(RingObject *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"timeout", NULL};
    PyObject *timeout = NULL;
    int64_t timeout_ns;
    int st;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:get", kwlist, &timeout)) return NULL;
    if (parse_timeout(timeout, &timeout_ns) < 0) return NULL;
    PyObject *item = Ring_get_impl(self, timeout_ns, &st);
    if (item == NULL && !PyErr_Occurred()) /* empty until the deadline */
        PyErr_SetString(PyExc_TimeoutError, "Ring.get timed out (the ring stayed empty)");
    return item;
}

static PyObject *Ring_try_get(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    int st;
    PyObject *item = Ring_get_impl(self, 0, &st);
    if (item != NULL) {
        PyObject *res = PyTuple_Pack(2, Py_True, item);
        Py_DECREF(item);
        return res;
    }
    if (PyErr_Occurred()) return NULL;
    return PyTuple_Pack(2, Py_False, Py_None);
}

static PyObject *Ring_close(RingObject *self, PyObject *Py_UNUSED(ignored)) {
    ring_close(self->ring);
    Py_RETURN_NONE;
}

static PyObject *Ring_get_closed(RingObject *self, void *Py_UNUSED(closure)) {
    return PyBool_FromLong(atomic_load_explicit(&self->ring->closed, memory_order_seq_cst));
}

static PyObject *Ring_get_capacity(RingObject *self, void *Py_UNUSED(closure)) {
    return PyLong_FromUnsignedLong(self->ring->capacity);
}

static PyObject *Ring_get_kind(RingObject *self, void *Py_UNUSED(closure)) {
    return PyUnicode_FromString(self->ring->kind == RING_SPSC ? "spsc" : "mpmc");
}

static Py_ssize_t Ring_len(RingObject *self) { return (Py_ssize_t)ring_len(self->ring); }

static PyObject *Ring_repr(RingObject *self) {
    ring_t *r = self->ring;
    return PyUnicode_FromFormat("<dataio._native.Ring kind='%s' capacity=%u len=%zd closed=%s>",
                                r->kind == RING_SPSC ? "spsc" : "mpmc", r->capacity, (Py_ssize_t)ring_len(r),
                                atomic_load(&r->closed) ? "True" : "False");
}

static PyMethodDef Ring_methods[] = {
    {"put", (PyCFunction)(void (*)(void))Ring_put, METH_VARARGS | METH_KEYWORDS,
     "put($self, /, item, timeout=None)\n--\n\n"
     "Puts item, waiting while the ring is full: True when stored, False when timeout seconds passed first "
     "(None: wait forever). Raises RingClosed once the ring is closed."},
    {"try_put", (PyCFunction)Ring_try_put, METH_O,
     "try_put($self, item, /)\n--\n\n"
     "Puts item if there is room now: True, or False when full. Raises RingClosed once the ring is closed."},
    {"get", (PyCFunction)(void (*)(void))Ring_get, METH_VARARGS | METH_KEYWORDS,
     "get($self, /, timeout=None)\n--\n\n"
     "Takes the oldest item, waiting while the ring is empty. Raises TimeoutError when timeout seconds passed "
     "first (None: wait forever), RingClosed once the ring is closed and drained."},
    {"try_get", (PyCFunction)Ring_try_get, METH_NOARGS,
     "try_get($self, /)\n--\n\n"
     "(True, item) when an item was there, else (False, None). Raises RingClosed once the ring is closed and "
     "drained."},
    {"close", (PyCFunction)Ring_close, METH_NOARGS,
     "close($self, /)\n--\n\n"
     "Closes the ring (idempotent) and wakes every waiter: puts raise RingClosed, gets return what is left, then "
     "raise RingClosed."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Ring_getset[] = {
    {"closed", (getter)Ring_get_closed, NULL, "True once close() was called.", NULL},
    {"capacity", (getter)Ring_get_capacity, NULL,
     "Slots (mpmc: the requested capacity rounded up to a power of two >= 2).", NULL},
    {"kind", (getter)Ring_get_kind, NULL, "'spsc' or 'mpmc'.", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PySequenceMethods Ring_as_sequence = {
    .sq_length = (lenfunc)Ring_len,
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataio._native.Ring",
    .tp_basicsize = sizeof(RingObject),
    .tp_dealloc = (destructor)Ring_dealloc,
    .tp_repr = (reprfunc)Ring_repr,
    .tp_as_sequence = &Ring_as_sequence,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Ring(capacity, kind='mpmc')\n--\n\n"
              "Bounded lock-free FIFO of Python objects between threads. kind='spsc': one producer and one "
              "consumer thread at a time, exact capacity; 'mpmc': any number of each, capacity rounded up to a "
              "power of two >= 2. Waiting calls sleep without the GIL (futex) and run signal handlers every "
              "100 ms. len() is approximate while other threads use the ring. Not tracked by the garbage "
              "collector: an item that refers back to its ring forms a cycle that only draining it breaks.",
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
    .tp_new = Ring_new,
};

int dataio_ring_register(PyObject *module) {
    if (PyType_Ready(&RingType) < 0) return -1;
    if (RingClosed == NULL) { /* one exception type per process, like the static Ring type (see module.c) */
        RingClosed = PyErr_NewExceptionWithDoc(
            "dataio._native.RingClosed",
            "A put on a closed Ring, or a get on a closed Ring that has been drained.", NULL, NULL);
        if (RingClosed == NULL) return -1;
    }
    Py_INCREF(RingClosed);
    if (PyModule_AddObject(module, "RingClosed", RingClosed) < 0) {
        Py_DECREF(RingClosed);
        return -1;
    }
    Py_INCREF(&RingType);
    if (PyModule_AddObject(module, "Ring", (PyObject *)&RingType) < 0) {
        Py_DECREF(&RingType);
        return -1;
    }
    return 0;
}

#else /* not Linux: no futex; dataio.loaders.rings falls back to its Python ring */

int dataio_ring_register(PyObject *module) { return 0; }

#endif /* __linux__ */
