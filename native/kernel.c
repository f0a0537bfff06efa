/* dataio._native.ImageKernel: whole batches of JPEGs decoded, cropped, resized, flipped and normalised on a pool of
 * native threads, with the GIL released once per call.
 *
 * Python prepares each batch (record buffers, each sample's crop box and flip from ImagePipeline.window, the output
 * rows) and calls run() once; the call validates every argument with the GIL held, copies the boxes, flips and
 * rows into its own memory (the caller's arrays may change while the GIL is released: only the copies are checked
 * and read), releases the GIL, and returns a list with None for each image written and (status, message) for
 * each left to the Python path.
 *
 * close() refuses new batches at once and returns when every batch already submitted is done (each of those
 * run() calls returns its full result) and the threads are joined; run() called after close() raises ValueError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "jpeg_window.h"
#include "kernel.h"
#include "pool.h"

#define MAX_BATCH (1 << 24) /* the job counter is an int */

typedef struct {
    PyObject_HEAD
    Pool pool;
    int ready; /* pool_init succeeded and pool_destroy is still to come */
    int threads;
    int closed;
} Kernel;

/* One run(): the images and where their pixels go. boxes, flips and rows are the call's own copies. */
typedef struct {
    Py_buffer *views;
    double *boxes;
    uint8_t *flips;
    int64_t *rows;
    int *status;
    char *msgs;
    DwTask base; /* out_w/out_h, crop_first, normalisation; per-image fields filled per item */
    uint8_t *out;
    size_t row_bytes;
    int is_float;
} Batch;

static void run_item(Job *job, int i, DecodeCtx *ctx) {
    Batch *b = job->arg;
    DwTask task = b->base;
    memcpy(task.box, &b->boxes[4 * (size_t)i], sizeof(task.box));
    task.flip = b->flips[i] != 0;
    uint8_t *row = b->out + (size_t)b->rows[i] * b->row_bytes;
    if (b->is_float)
        task.out_f32 = (float *)row;
    else
        task.out_u8 = row;
    b->status[i] = dw_process(ctx, b->views[i].buf, (size_t)b->views[i].len, &task, &b->msgs[(size_t)i * DW_MSG_LEN]);
}

/* --- lifecycle -------------------------------------------------------------------------------------------------- */

static PyObject *pool_error(int rc) {
    if (rc == POOL_CLOSED) return PyErr_Format(PyExc_ValueError, "ImageKernel is closed");
    char msg[200];
    snprintf(msg, sizeof(msg), "ImageKernel could not start a native thread in this process: %s", strerror(rc));
    PyObject *args = Py_BuildValue("(is)", rc, msg);
    if (args != NULL) PyErr_SetObject(PyExc_OSError, args);
    Py_XDECREF(args);
    return NULL;
}

static int Kernel_init(Kernel *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"threads", NULL};
    int threads = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i", kwlist, &threads)) return -1;
    if (threads < 1 || threads > POOL_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "threads must be in 1..%d, got %d", POOL_MAX_THREADS, threads);
        return -1;
    }
    if (self->ready || self->closed) {
        PyErr_SetString(PyExc_RuntimeError, "ImageKernel is already initialised");
        return -1;
    }
    int rc = pool_init(&self->pool);
    if (rc != 0) {
        errno = rc;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    int active = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_set_threads(&self->pool, threads, &active);
    Py_END_ALLOW_THREADS
    if (active == 0) { /* not one thread: nothing runs, nothing to stop */
        pool_destroy(&self->pool);
        pool_error(rc);
        return -1;
    }
    self->ready = 1;
    self->threads = active; /* a partial start keeps the threads it got */
    return 0;
}

static void kernel_close(Kernel *self) {
    if (!self->ready) return;
    self->closed = 1;
    Py_BEGIN_ALLOW_THREADS
    pool_stop(&self->pool); /* a second caller returns once the first has joined the threads */
    Py_END_ALLOW_THREADS
}

static void Kernel_dealloc(Kernel *self) {
    kernel_close(self);
    if (self->ready) pool_destroy(&self->pool);
    self->ready = 0;
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Kernel_close(Kernel *self, PyObject *noargs) {
    kernel_close(self);
    Py_RETURN_NONE;
}

static int check_open(Kernel *self) {
    if (!self->ready || self->closed) {
        PyErr_SetString(PyExc_ValueError, self->ready ? "ImageKernel is closed" : "ImageKernel is not initialised");
        return -1;
    }
    return 0;
}

static PyObject *Kernel_set_threads(Kernel *self, PyObject *arg) {
    if (check_open(self) < 0) return NULL;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > POOL_MAX_THREADS) return PyErr_Format(PyExc_ValueError, "threads must be in 1..%d", POOL_MAX_THREADS);
    int rc, active = 0;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_set_threads(&self->pool, (int)n, &active);
    Py_END_ALLOW_THREADS
    if (rc == POOL_CLOSED || (rc != 0 && active == 0)) return pool_error(rc);
    self->threads = active;
    Py_RETURN_NONE;
}

/* --- run() ------------------------------------------------------------------------------------------------------ */

static PyObject *batch_result(Batch *b, Py_ssize_t n) {
    PyObject *out = PyList_New(n);
    if (out == NULL) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item;
        if (b->status[i] == DW_OK) {
            item = Py_NewRef(Py_None);
        } else {
            item = Py_BuildValue("(is)", b->status[i], &b->msgs[(size_t)i * DW_MSG_LEN]);
            if (item == NULL) {
                Py_DECREF(out);
                return NULL;
            }
        }
        PyList_SET_ITEM(out, i, item);
    }
    return out;
}

/* Copies the caller's (n, cols) array (cols 0: (n,)) of `itemsize`-byte items into dst. */
static int copy_array(PyObject *obj, const char *name, const char *formats, Py_ssize_t n, Py_ssize_t cols,
                      Py_ssize_t itemsize, void *dst) {
    Py_buffer v;
    if (args_array(obj, &v, name, formats, cols ? 2 : 1, 0) < 0) return -1;
    int shape_ok = v.shape[0] == n && (!cols || v.shape[1] == cols), size_ok = v.itemsize == itemsize;
    if (shape_ok && size_ok) memcpy(dst, v.buf, (size_t)n * (size_t)(cols ? cols : 1) * (size_t)itemsize);
    PyBuffer_Release(&v);
    if (!shape_ok || !size_ok) {
        if (shape_ok)
            PyErr_Format(PyExc_TypeError, "%s must be %s", name, itemsize == 8 ? "int64" : "uint8");
        else
            PyErr_Format(PyExc_ValueError, "boxes (n, 4), flips (n,) and rows (n,) must match the %zd images", n);
        return -1;
    }
    return 0;
}

/* Copies boxes, flips and rows into b (one allocation), checks the copied rows against out (GIL held). */
static int take_batch(Batch *b, Py_ssize_t n, PyObject *boxes, PyObject *flips, PyObject *rows, Py_buffer *out_v) {
    size_t m = n > 0 ? (size_t)n : 1;
    char *mem = PyMem_Malloc(m * (4 * sizeof(double) + sizeof(int64_t) + 1));
    if (mem == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->boxes = (double *)mem;
    b->rows = (int64_t *)(mem + m * 4 * sizeof(double));
    b->flips = (uint8_t *)(mem + m * (4 * sizeof(double) + sizeof(int64_t)));
    if (copy_array(boxes, "boxes", "d", n, 4, 8, b->boxes) < 0 || copy_array(flips, "flips", "B?", n, 0, 1, b->flips) < 0 ||
        copy_array(rows, "rows", "ql", n, 0, 8, b->rows) < 0)
        return -1;
    if (out_v->shape[1] != 3 || out_v->shape[2] < 1 || out_v->shape[3] < 1 || out_v->shape[2] > 65535 ||
        out_v->shape[3] > 65535) {
        PyErr_SetString(PyExc_ValueError, "out must be a writable (N, 3, H, W) array with 1 <= H, W <= 65535");
        return -1;
    }
    Py_ssize_t capacity = out_v->shape[0];
    char *seen = PyMem_Calloc(capacity > 0 ? (size_t)capacity : 1, 1);
    if (seen == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int64_t r = b->rows[i];
        if (r < 0 || r >= capacity || seen[r]) {
            PyMem_Free(seen);
            PyErr_Format(PyExc_ValueError, "rows[%zd] = %lld is outside out's %zd rows or repeated", i, (long long)r,
                         capacity);
            return -1;
        }
        seen[r] = 1;
    }
    PyMem_Free(seen);
    b->out = out_v->buf;
    b->base.out_h = (int)out_v->shape[2];
    b->base.out_w = (int)out_v->shape[3];
    b->row_bytes = (size_t)out_v->itemsize * 3 * (size_t)out_v->shape[2] * (size_t)out_v->shape[3];
    b->is_float = args_format(out_v) == 'f';
    return 0;
}

static PyObject *Kernel_run(Kernel *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"data", "boxes", "flips", "out", "rows", "crop_first", "scale", "shift", NULL};
    PyObject *data, *boxes, *flips, *out, *rows, *scale = NULL, *shift = NULL;
    int crop_first;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOp|OO", kwlist, &data, &boxes, &flips, &out, &rows,
                                     &crop_first, &scale, &shift))
        return NULL;
    if (check_open(self) < 0) return NULL;
    PyObject *seq = PySequence_Fast(data, "data must be a sequence of bytes-like objects");
    if (seq == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    if (n > MAX_BATCH) {
        Py_DECREF(seq);
        return PyErr_Format(PyExc_ValueError, "a batch of %zd images is over the limit of %d", n, MAX_BATCH);
    }
    Batch b;
    memset(&b, 0, sizeof(b));
    Py_buffer out_v;
    int have_out = 0;
    Py_ssize_t got = 0;
    PyObject *result = NULL;
    if (args_array(out, &out_v, "out", "Bf", 4, 1) < 0) goto finally;
    have_out = 1;
    if (take_batch(&b, n, boxes, flips, rows, &out_v) < 0) goto finally;
    b.base.crop_first = crop_first;
    b.base.scale[0] = b.base.scale[1] = b.base.scale[2] = 1.0f;
    if (b.is_float) {
        if (scale == NULL || shift == NULL) {
            PyErr_SetString(PyExc_ValueError, "a float32 out needs scale and shift (three numbers each)");
            goto finally;
        }
        if (args_triple(scale, b.base.scale, "scale") < 0 || args_triple(shift, b.base.shift, "shift") < 0) goto finally;
    }
    b.views = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(Py_buffer));
    b.status = PyMem_Calloc(n > 0 ? (size_t)n : 1, sizeof(int));
    b.msgs = PyMem_Calloc(n > 0 ? (size_t)n : 1, DW_MSG_LEN);
    if (b.views == NULL || b.status == NULL || b.msgs == NULL) {
        PyErr_NoMemory();
        goto finally;
    }
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PySequence_Fast_GET_ITEM(seq, got), &b.views[got], PyBUF_SIMPLE) < 0) {
            PyErr_Format(PyExc_TypeError, "data[%zd] is not a contiguous bytes-like object", got);
            goto finally;
        }
    }
    Job job;
    memset(&job, 0, sizeof(job));
    job.fn = run_item;
    job.arg = &b;
    job.n = (int)n;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = pool_run(&self->pool, &job);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        pool_error(rc);
        goto finally;
    }
    result = batch_result(&b, n);
finally:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&b.views[i]);
    PyMem_Free(b.views);
    PyMem_Free(b.status);
    PyMem_Free(b.msgs);
    PyMem_Free(b.boxes); /* the start of the copies' allocation */
    if (have_out) PyBuffer_Release(&out_v);
    Py_DECREF(seq);
    return result;
}

/* --- the type --------------------------------------------------------------------------------------------------- */

static PyObject *Kernel_get_threads(Kernel *self, void *closure) { return PyLong_FromLong(self->threads); }

static PyObject *Kernel_get_busy(Kernel *self, void *closure) {
    return PyFloat_FromDouble((double)atomic_load(&self->pool.busy_ns) / 1e9);
}

static PyObject *Kernel_get_images(Kernel *self, void *closure) {
    return PyLong_FromLongLong(atomic_load(&self->pool.items));
}

static PyObject *Kernel_get_closed(Kernel *self, void *closure) { return PyBool_FromLong(self->closed); }

static PyMethodDef Kernel_methods[] = {
    {"run", (PyCFunction)(void (*)(void))Kernel_run, METH_VARARGS | METH_KEYWORDS,
     "run(data, boxes, flips, out, rows, crop_first, scale=None, shift=None) -> list\n\n"
     "Decodes data[i] (JPEG bytes), resizes its box boxes[i] = (left, top, right, bottom) (original pixels) to\n"
     "out's H x W, mirrors it when flips[i], and writes it as CHW into out[rows[i]] (uint8, or float32 as\n"
     "pixel * scale[c] + shift[c]). crop_first: RandomResizedCrop semantics, else Resize + CenterCrop. boxes,\n"
     "flips and rows are copied when the call starts; the GIL is released once for the whole batch. Returns None\n"
     "per image written, (status, message) per image left unwritten. Raises ValueError once the kernel is closed."},
    {"set_threads", (PyCFunction)Kernel_set_threads, METH_O, "set_threads(n): run on n native threads from now on."},
    {"close", (PyCFunction)Kernel_close, METH_NOARGS,
     "Refuses new batches, waits for every batch already submitted (their run() calls return in full), joins the\n"
     "threads. Idempotent; safe while other threads are in run()."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef Kernel_getset[] = {
    {"threads", (getter)Kernel_get_threads, NULL, "native threads taking work (those that could be started)", NULL},
    {"busy_seconds", (getter)Kernel_get_busy, NULL, "seconds the threads spent on images, summed over threads", NULL},
    {"images", (getter)Kernel_get_images, NULL, "images processed (written or failed)", NULL},
    {"closed", (getter)Kernel_get_closed, NULL, "close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "dataio._native.ImageKernel",
    .tp_basicsize = sizeof(Kernel),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ImageKernel(threads=1): batch JPEG decode -> crop -> resize -> flip -> normalise on native threads.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_methods = Kernel_methods,
    .tp_getset = Kernel_getset,
};

int dataio_kernel_register(PyObject *module) {
    if (PyType_Ready(&KernelType) < 0) return -1;
    return PyModule_AddObjectRef(module, "ImageKernel", (PyObject *)&KernelType);
}
