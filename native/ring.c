/* Bounded lock-free rings of Python objects: dataio._native.Ring(capacity, kind="spsc" | "mpmc").
 *
 * Two parts in one file:
 *   1. the ring core: pure C11 atomics over void * items, no Python (tests/native/ring_stress.c includes this
 *      file with DATAIO_RING_CORE_ONLY to run it under ThreadSanitizer without an interpreter);
 *   2. the Python type: reference counting, argument checks, GIL release around blocking waits, signals.
 *
 * Data structures
 *   spsc  one producer, one consumer: a slot array and two monotonic 64-bit counters, `tail` written only by
 *         the producer and `head` only by the consumer, on separate cache lines; each side keeps a private
 *         copy of the other side's counter and re-reads the shared one only when its copy says full/empty.
 *         Any capacity 1..2^24 (index = position % capacity).
 *   mpmc  Dmitry Vyukov's bounded MPMC queue: every cell carries a sequence number telling which position
 *         may use it next; producers claim positions with a CAS on `tail`, consumers with a CAS on `head`.
 *         Capacity is a power of two >= 2 (a one-cell ring cannot tell "full at p" from "free for p + 1").
 *
 * Blocking: idle waiters sleep in the kernel (futex) on one of two 32-bit event counts, `not_empty` (getters)
 * and `not_full` (putters). A successful put/get only pays a system call when its event count has waiters.
 *
 * Close: `closed` is set once; close() wakes every waiter on both sides. Puts fail from then on; gets drain
 * what is left, then fail. `putting` counts puts between their closed check and their enqueue, so a getter
 * never reports "closed and empty" while a put that saw the ring open can still land an item.
 */
#ifdef DATAIO_RING_CORE_ONLY
#define _GNU_SOURCE /* sched_yield, syscall (Python.h defines it otherwise) */
#else
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include "forks.h"
#include "ring.h"
#endif

#ifdef __linux__

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <math.h>
#include <sched.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------------------
 * Part 1: the core
 * ---------------------------------------------------------------------------------------------------------- */

#define RING_LINE 64
#define RING_MAX_CAPACITY (1u << 24)
#define RING_SPINS 64        /* attempts before a waiter sleeps (a cheap pause between them) */
#define RING_SLICE_NS 100000000LL /* a blocked call returns to Python this often to run signal handlers */

enum ring_kind { RING_SPSC = 0, RING_MPMC = 1 };

enum ring_status {
    RING_OK = 0,
    RING_FULL,      /* put: no free slot now */
    RING_EMPTY,     /* get: nothing to take now */
    RING_DRAINING,  /* get: closed and empty, but a put that saw the ring open may still land an item */
    RING_CLOSED,    /* put: ring closed; get: closed and drained */
    RING_TIMEOUT,   /* the deadline passed */
    RING_SLICE,     /* the slice ended (the caller runs signal handlers and waits again) */
};

_Static_assert(sizeof(atomic_uint) == 4, "futex words are 32-bit");
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

/* An event count: waiters read `seq`, re-check their condition, and sleep while `seq` is unchanged;
 * notifiers bump `seq` and wake, but only when `waiters` says someone registered. */
typedef struct {
    atomic_uint seq;
    atomic_uint waiters;
} ring_event;

typedef struct {
    _Atomic uint64_t seq; /* p: free for position p; p + 1: holds p's item (freed: p + capacity, next lap) */
    void *item;           /* written before seq is published (release), read after seq is seen (acquire) */
} ring_cell;

typedef struct {
    /* read-only after creation */
    alignas(RING_LINE) int kind;
    uint32_t capacity;
    uint64_t mask;        /* mpmc: capacity - 1 */
    void **slots;         /* spsc */
    ring_cell *cells;     /* mpmc */

    /* producer side: spsc's producer alone, mpmc's producers through CAS */
    alignas(RING_LINE) _Atomic uint64_t tail;
    uint64_t head_seen;   /* spsc producer's copy of head */
    atomic_int put_busy;  /* spsc: a put is running (a second concurrent putter is refused) */

    /* consumer side */
    alignas(RING_LINE) _Atomic uint64_t head;
    uint64_t tail_seen;   /* spsc consumer's copy of tail */
    atomic_int get_busy;

    alignas(RING_LINE) ring_event not_empty;
    alignas(RING_LINE) ring_event not_full;

    alignas(RING_LINE) atomic_int closed;
    atomic_uint putting;
} ring_t;

_Static_assert(sizeof(ring_t) % RING_LINE == 0, "aligned_alloc needs a multiple of the alignment");

static int64_t ring_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void ring_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* Capacity actually used for a requested one (the caller checked 1..RING_MAX_CAPACITY). */
static uint32_t ring_real_capacity(int kind, uint32_t requested) {
    if (kind == RING_SPSC) return requested;
    uint32_t cap = 2;
    while (cap < requested) cap <<= 1;
    return cap;
}

static ring_t *ring_create(int kind, uint32_t requested) {
    ring_t *r = aligned_alloc(RING_LINE, sizeof(ring_t)); /* sizeof is a multiple of the alignment */
    if (r == NULL) return NULL;
    memset(r, 0, sizeof(*r));
    r->kind = kind;
    r->capacity = ring_real_capacity(kind, requested);
    if (kind == RING_SPSC) {
        r->slots = calloc(r->capacity, sizeof(void *));
        if (r->slots == NULL) goto fail;
    } else {
        r->mask = r->capacity - 1;
        r->cells = calloc(r->capacity, sizeof(ring_cell));
        if (r->cells == NULL) goto fail;
        for (uint64_t i = 0; i < r->capacity; i++) atomic_init(&r->cells[i].seq, i);
    }
    atomic_init(&r->tail, 0);
    atomic_init(&r->head, 0);
    atomic_init(&r->put_busy, 0);
    atomic_init(&r->get_busy, 0);
    atomic_init(&r->not_empty.seq, 0);
    atomic_init(&r->not_empty.waiters, 0);
    atomic_init(&r->not_full.seq, 0);
    atomic_init(&r->not_full.waiters, 0);
    atomic_init(&r->closed, 0);
    atomic_init(&r->putting, 0);
    return r;
fail:
    free(r->slots);
    free(r->cells);
    free(r);
    return NULL;
}

/* Frees the ring; `drop` (if not NULL) receives every item still in it. Nobody else may use the ring now. */
static void ring_destroy(ring_t *r, void (*drop)(void *)) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    for (uint64_t pos = head; drop != NULL && pos != tail; pos++) {
        if (r->kind == RING_SPSC) {
            drop(r->slots[pos % r->capacity]);
        } else {
            ring_cell *c = &r->cells[pos & r->mask];
            /* a position claimed by a put that never published cannot exist here: puts finish before
             * anyone can drop the last reference, so every cell in [head, tail) holds its item */
            if (atomic_load_explicit(&c->seq, memory_order_acquire) == pos + 1) drop(c->item);
        }
    }
    free(r->slots);
    free(r->cells);
    free(r);
}

/* Items in the ring right now (approximate while others run). head is read first: tail read later is >= it. */
static uint64_t ring_len(ring_t *r) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_acquire);
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t n = tail >= head ? tail - head : 0;
    return n > r->capacity ? r->capacity : n;
}

/* --- spsc ----------------------------------------------------------------------------------------------- */

static int spsc_push(ring_t *r, void *item) {
    uint64_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed); /* only we write it */
    if (tail - r->head_seen >= r->capacity) {
        /* acquire: the consumer's read of the slot we are about to overwrite happened before it moved head */
        r->head_seen = atomic_load_explicit(&r->head, memory_order_acquire);
        if (tail - r->head_seen >= r->capacity) return RING_FULL;
    }
    r->slots[tail % r->capacity] = item;
    /* release: the slot's contents are visible to a consumer that sees the new tail */
    atomic_store_explicit(&r->tail, tail + 1, memory_order_release);
    return RING_OK;
}

static int spsc_pop(ring_t *r, void **out) {
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed); /* only we write it */
    if (head == r->tail_seen) {
        r->tail_seen = atomic_load_explicit(&r->tail, memory_order_acquire); /* pairs with the push's release */
        if (head == r->tail_seen) return RING_EMPTY;
    }
    *out = r->slots[head % r->capacity];
    /* release: our read of the slot happens before the producer reuses it */
    atomic_store_explicit(&r->head, head + 1, memory_order_release);
    return RING_OK;
}

/* --- mpmc (Vyukov) -------------------------------------------------------------------------------------- */

static int mpmc_push(ring_t *r, void *item) {
    uint64_t pos = atomic_load_explicit(&r->tail, memory_order_relaxed);
    ring_cell *c;
    for (;;) {
        c = &r->cells[pos & r->mask];
        /* acquire: if the cell is free for pos, the consumer that freed it has finished reading its item */
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire);
        int64_t dif = (int64_t)(seq - pos);
        if (dif == 0) {
            /* relaxed CAS: it only claims the position; the cell's seq carries the ordering of the data */
            if (atomic_compare_exchange_weak_explicit(&r->tail, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
            /* failure reloaded pos */
        } else if (dif < 0) {
            return RING_FULL; /* the cell still holds the item of pos - capacity */
        } else {
            pos = atomic_load_explicit(&r->tail, memory_order_relaxed); /* another producer took pos */
        }
    }
    c->item = item;
    /* release: publishes the item to the consumer that sees seq == pos + 1 */
    atomic_store_explicit(&c->seq, pos + 1, memory_order_release);
    return RING_OK;
}

static int mpmc_pop(ring_t *r, void **out) {
    uint64_t pos = atomic_load_explicit(&r->head, memory_order_relaxed);
    ring_cell *c;
    for (;;) {
        c = &r->cells[pos & r->mask];
        uint64_t seq = atomic_load_explicit(&c->seq, memory_order_acquire); /* pairs with the push's release */
        int64_t dif = (int64_t)(seq - (pos + 1));
        if (dif == 0) {
            if (atomic_compare_exchange_weak_explicit(&r->head, &pos, pos + 1, memory_order_relaxed,
                                                      memory_order_relaxed))
                break;
        } else if (dif < 0) {
            return RING_EMPTY; /* not yet published (or never put) */
        } else {
            pos = atomic_load_explicit(&r->head, memory_order_relaxed);
        }
    }
    *out = c->item;
    /* release: frees the cell for position pos + capacity after our read of the item */
    atomic_store_explicit(&c->seq, pos + r->mask + 1, memory_order_release);
    return RING_OK;
}

/* --- event counts (futex) ------------------------------------------------------------------------------- */

static void ring_futex_wait(atomic_uint *word, unsigned expected, int64_t timeout_ns) {
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL};
    /* returns on a wake, a timeout, a signal, or at once (EAGAIN) when the word already changed: the caller
     * re-checks its condition and the clock in every case */
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAIT_PRIVATE, expected, &ts, NULL, 0);
}

static void ring_futex_wake(atomic_uint *word, int n) {
    syscall(SYS_futex, (unsigned *)word, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

/* Called after a state change that may let a waiter proceed (an item put, a slot freed).
 *
 * No lost wake-up: the waiter registers with an RMW on `waiters` before it re-checks the ring, and we read
 * `waiters` with an RMW after changing the ring. Both RMWs are seq_cst (acquire + release) and RMWs on one
 * object are totally ordered, each reading the one before it:
 *   - ours comes second: it reads the waiter's increment, so we wake;
 *   - the waiter's comes second: it reads from ours (release -> acquire; RMWs in between, such as another
 *     waiter's decrement, continue our release sequence), so our ring change happens-before its re-check,
 *     which sees it and does not sleep.
 * (An RMW rather than a fence + load: the same cost on x86, and ThreadSanitizer understands it.) */
static void ring_notify(ring_event *ev) {
    if (atomic_fetch_add_explicit(&ev->waiters, 0, memory_order_seq_cst) == 0) return;
    atomic_fetch_add_explicit(&ev->seq, 1, memory_order_seq_cst);
    /* one item or slot lets one waiter proceed; a woken waiter always retries before it gives up */
    ring_futex_wake(&ev->seq, 1);
}

static void ring_close(ring_t *r) {
    atomic_store_explicit(&r->closed, 1, memory_order_seq_cst);
    /* bump and wake unconditionally: a waiter that read seq before this bump cannot sleep through it, and one
     * that read it after re-checks `closed` after the read and sees it set */
    atomic_fetch_add_explicit(&r->not_empty.seq, 1, memory_order_seq_cst);
    atomic_fetch_add_explicit(&r->not_full.seq, 1, memory_order_seq_cst);
    ring_futex_wake(&r->not_empty.seq, INT_MAX);
    ring_futex_wake(&r->not_full.seq, INT_MAX);
}

/* --- attempts: one non-blocking try, with close semantics ----------------------------------------------- */

static int ring_attempt_put(ring_t *r, void *item) {
    /* seq_cst increment, then seq_cst load of closed: a getter that saw `closed` and then putting == 0 either
     * saw our decrement (and so our item) or read putting before our increment, in which case our closed load
     * comes later in the single seq_cst order and sees closed = 1 */
    atomic_fetch_add_explicit(&r->putting, 1, memory_order_seq_cst);
    if (atomic_load_explicit(&r->closed, memory_order_seq_cst)) {
        atomic_fetch_sub_explicit(&r->putting, 1, memory_order_release);
        return RING_CLOSED;
    }
    int st = r->kind == RING_SPSC ? spsc_push(r, item) : mpmc_push(r, item);
    /* release: a getter that reads the decremented count also sees the item */
    atomic_fetch_sub_explicit(&r->putting, 1, memory_order_release);
    if (st == RING_OK) ring_notify(&r->not_empty);
    return st;
}

static int ring_pop(ring_t *r, void **out) {
    int st = r->kind == RING_SPSC ? spsc_pop(r, out) : mpmc_pop(r, out);
    if (st == RING_OK) ring_notify(&r->not_full);
    return st;
}

static int ring_attempt_get(ring_t *r, void **out) {
    if (ring_pop(r, out) == RING_OK) return RING_OK;
    if (!atomic_load_explicit(&r->closed, memory_order_seq_cst)) return RING_EMPTY;
    if (atomic_load_explicit(&r->putting, memory_order_seq_cst) != 0) return RING_DRAINING;
    /* closed and no put in flight: whatever was put is visible now; take it or report the end */
    return ring_pop(r, out) == RING_OK ? RING_OK : RING_CLOSED;
}

static int ring_attempt(ring_t *r, int put, void **io) {
    return put ? ring_attempt_put(r, *io) : ring_attempt_get(r, io);
}

/* Blocks (without the GIL) until a put/get succeeds, the ring is closed (and drained, for get), `deadline`
 * passes (< 0: none) or `slice_end` passes. Spins briefly, then sleeps on the event count. */
static int ring_wait(ring_t *r, int put, void **io, int64_t deadline, int64_t slice_end) {
    ring_event *ev = put ? &r->not_full : &r->not_empty;
    int spins = 0;
    for (;;) {
        int st = ring_attempt(r, put, io);
        if (st == RING_OK || st == RING_CLOSED) return st;
        int64_t now = ring_now_ns();
        if (deadline >= 0 && now >= deadline) return RING_TIMEOUT;
        if (now >= slice_end) return RING_SLICE;
        if (st == RING_DRAINING) { /* a put is between two instructions: let it finish */
            sched_yield();
            continue;
        }
        if (spins < RING_SPINS) {
            spins++;
            ring_pause();
            continue;
        }
        int64_t until = deadline >= 0 && deadline < slice_end ? deadline : slice_end;
        atomic_fetch_add_explicit(&ev->waiters, 1, memory_order_seq_cst); /* see ring_notify */
        /* a notifier that bumps seq after this read makes futex_wait return at once (EAGAIN) */
        unsigned key = atomic_load_explicit(&ev->seq, memory_order_seq_cst);
        st = ring_attempt(r, put, io);
        if (st == RING_EMPTY || st == RING_FULL) ring_futex_wait(&ev->seq, key, until - now);
        atomic_fetch_sub_explicit(&ev->waiters, 1, memory_order_relaxed);
        if (st == RING_OK || st == RING_CLOSED) return st;
        spins = RING_SPINS - 4; /* after a wake-up: a few quick retries, then sleep again */
    }
}

/* spsc: at most one putter and one getter at a time. A second concurrent one is refused, not allowed to
 * corrupt the counters (acquire/release also order the private copies between successive threads). */
static int ring_enter(ring_t *r, int put) {
    if (r->kind != RING_SPSC) return 1;
    return atomic_exchange_explicit(put ? &r->put_busy : &r->get_busy, 1, memory_order_acquire) == 0;
}

static void ring_leave(ring_t *r, int put) {
    if (r->kind == RING_SPSC) atomic_store_explicit(put ? &r->put_busy : &r->get_busy, 0, memory_order_release);
}

/* ------------------------------------------------------------------------------------------------------------
 * Part 2: the Python type
 * ---------------------------------------------------------------------------------------------------------- */
#ifndef DATAIO_RING_CORE_ONLY

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
    RingClosed = PyErr_NewExceptionWithDoc(
        "dataio._native.RingClosed",
        "A put on a closed Ring, or a get on a closed Ring that has been drained.", NULL, NULL);
    if (RingClosed == NULL) return -1;
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

#endif /* DATAIO_RING_CORE_ONLY */

#else /* not Linux: no futex; dataio.loaders.rings falls back to its Python ring */

#ifndef DATAIO_RING_CORE_ONLY
int dataio_ring_register(PyObject *module) { return 0; }
#endif

#endif /* __linux__ */
