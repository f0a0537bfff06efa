/* The ring core: bounded lock-free rings of void * items in pure C11 atomics, no Python (Linux: futex waits).
 *
 * A header of static functions: ring.c (the binding, dataio._native.Ring: reference counting, argument checks, GIL
 * release around blocking waits, signals) includes it, and so does tests/native/ring_stress.c, which runs it on
 * real threads, plain and under ThreadSanitizer, without an interpreter.
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
#ifndef DATAIO_RING_CORE_H
#define DATAIO_RING_CORE_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* sched_yield, syscall (Python.h defines it in the binding) */
#endif


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

#endif /* DATAIO_RING_CORE_H */
