/* Stress test of the ring core (native/ring_core.h: no Python in it) on real threads, no GIL anywhere:
 * exactly-once delivery and per-producer order under contention, close waking blocked putters and getters,
 * timeouts, and leftovers handed to the drop callback. Exit status 0 when every check passes.
 *
 *   gcc -std=gnu11 -O2 -g -pthread tests/native/ring_stress.c -o /tmp/ring_stress && /tmp/ring_stress
 *   gcc -std=gnu11 -O1 -g -pthread -fsanitize=thread tests/native/ring_stress.c -o /tmp/ring_tsan && /tmp/ring_tsan
 *
 * Through Python every non-blocking attempt holds the GIL, so the core's concurrent paths only run when calls
 * wait; here nothing serialises them. (The extension itself also runs under ThreadSanitizer inside a plain
 * CPython, see docs/loader.md; the interpreter's own accesses are not watched there.)
 * tests/native/test_ring_core.py builds and runs this harness from pytest when a compiler is there.
 */

#include "../../native/ring_core.h"

#include <pthread.h>
#include <stdio.h>

#define FAIL(...)                                                                                            \
    do {                                                                                                     \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                                                 \
        fprintf(stderr, __VA_ARGS__);                                                                        \
        fputc('\n', stderr);                                                                                 \
        exit(1);                                                                                             \
    } while (0)

#define MAX_THREADS 8

/* items are (producer << 32 | index) + 1, never NULL */
static void *encode(uint64_t p, uint64_t i) { return (void *)(uintptr_t)(((p << 32) | i) + 1); }
static uint64_t decode(void *item) { return (uint64_t)(uintptr_t)item - 1; }

typedef struct {
    ring_t *r;
    int id;
    uint64_t n;        /* producer: items to put */
    uint64_t *got;     /* consumer: received items */
    uint64_t count;
    int status;        /* last status */
} job;

/* Waits as the Python type does, but in one slice of an hour instead of 100 ms ones: a lost wake-up hangs here
 * (and the alarm set in main kills the run) instead of costing a 100 ms slice. */
static int blocking(ring_t *r, int put, void **io, int64_t timeout_ns) {
    int64_t deadline = timeout_ns < 0 ? -1 : ring_now_ns() + timeout_ns;
    if (!ring_enter(r, put)) FAIL("spsc side taken by another thread");
    int st = ring_attempt(r, put, io);
    while (st != RING_OK && st != RING_CLOSED && st != RING_TIMEOUT)
        st = ring_wait(r, put, io, deadline, ring_now_ns() + 3600 * 1000000000LL);
    ring_leave(r, put);
    return st;
}

static void *producer(void *arg) {
    job *j = arg;
    for (uint64_t i = 0; i < j->n; i++) {
        void *item = encode((uint64_t)j->id, i);
        j->status = blocking(j->r, 1, &item, -1);
        if (j->status != RING_OK) return NULL;
    }
    return NULL;
}

static void *consumer(void *arg) {
    job *j = arg;
    for (;;) {
        void *item = NULL;
        j->status = blocking(j->r, 0, &item, -1);
        if (j->status != RING_OK) return NULL;
        j->got[j->count++] = decode(item);
    }
}

static void exactly_once(int kind, uint32_t capacity, int producers, int consumers, uint64_t n) {
    ring_t *r = ring_create(kind, capacity);
    if (r == NULL) FAIL("ring_create");
    job pj[MAX_THREADS], cj[MAX_THREADS];
    pthread_t pt[MAX_THREADS], ct[MAX_THREADS];
    uint64_t total = (uint64_t)producers * n;
    for (int c = 0; c < consumers; c++) {
        cj[c] = (job){.r = r, .id = c, .got = calloc(total, sizeof(uint64_t))};
        pthread_create(&ct[c], NULL, consumer, &cj[c]);
    }
    for (int p = 0; p < producers; p++) {
        pj[p] = (job){.r = r, .id = p, .n = n};
        pthread_create(&pt[p], NULL, producer, &pj[p]);
    }
    for (int p = 0; p < producers; p++) {
        pthread_join(pt[p], NULL);
        if (pj[p].status != RING_OK) FAIL("producer %d ended with status %d", p, pj[p].status);
    }
    ring_close(r);
    uint8_t *seen = calloc(total, 1);
    uint64_t received = 0;
    for (int c = 0; c < consumers; c++) {
        pthread_join(ct[c], NULL);
        if (cj[c].status != RING_CLOSED) FAIL("consumer %d ended with status %d", c, cj[c].status);
        uint64_t last[MAX_THREADS];
        for (int p = 0; p < MAX_THREADS; p++) last[p] = UINT64_MAX;
        for (uint64_t k = 0; k < cj[c].count; k++) {
            uint64_t p = cj[c].got[k] >> 32, i = cj[c].got[k] & 0xffffffffu;
            if (p >= (uint64_t)producers || i >= n) FAIL("foreign item %llx", (unsigned long long)cj[c].got[k]);
            if (seen[p * n + i]++) FAIL("item (%llu, %llu) delivered twice", (unsigned long long)p,
                                        (unsigned long long)i);
            if (last[p] != UINT64_MAX && i <= last[p]) FAIL("producer %llu out of order", (unsigned long long)p);
            last[p] = i;
        }
        received += cj[c].count;
        free(cj[c].got);
    }
    if (received != total) FAIL("received %llu of %llu", (unsigned long long)received, (unsigned long long)total);
    if (ring_len(r) != 0) FAIL("ring not empty at the end");
    free(seen);
    ring_destroy(r, NULL);
    printf("ok  %s cap %u: %d producers x %d consumers x %llu items, each once, in producer order\n",
           kind == RING_SPSC ? "spsc" : "mpmc", capacity, producers, consumers, (unsigned long long)n);
}

static int dropped;
static void count_drop(void *item) { (void)item; dropped++; }

static void *put_forever(void *arg) {
    job *j = arg;
    for (uint64_t i = 0;; i++) {
        void *item = encode((uint64_t)j->id, i);
        j->status = blocking(j->r, 1, &item, -1);
        if (j->status != RING_OK) return NULL;
    }
}

static void close_wakes(int kind) {
    int n = kind == RING_SPSC ? 1 : 3;
    ring_t *full = ring_create(kind, 4), *empty = ring_create(kind, 4);
    job pj[MAX_THREADS], cj[MAX_THREADS];
    pthread_t pt[MAX_THREADS], ct[MAX_THREADS];
    uint64_t sink[1];
    for (int k = 0; k < n; k++) {
        pj[k] = (job){.r = full, .id = k};
        cj[k] = (job){.r = empty, .id = k, .got = sink};
        pthread_create(&pt[k], NULL, put_forever, &pj[k]);
        pthread_create(&ct[k], NULL, consumer, &cj[k]);
    }
    struct timespec pause = {.tv_sec = 0, .tv_nsec = 150000000};
    nanosleep(&pause, NULL); /* everyone is asleep in the kernel by now */
    int64_t t0 = ring_now_ns();
    ring_close(full);
    ring_close(empty);
    for (int k = 0; k < n; k++) {
        pthread_join(pt[k], NULL);
        pthread_join(ct[k], NULL);
        if (pj[k].status != RING_CLOSED || cj[k].status != RING_CLOSED) FAIL("a waiter missed close");
    }
    int64_t waited = ring_now_ns() - t0;
    if (waited > 500000000LL) FAIL("close took %lld ms to wake its waiters", (long long)(waited / 1000000));
    uint32_t cap = full->capacity;
    dropped = 0;
    ring_destroy(full, count_drop);
    if ((uint32_t)dropped != cap) FAIL("destroy dropped %d of %u leftovers", dropped, cap);
    ring_destroy(empty, count_drop);
    printf("ok  %s close wakes %d blocked putters and %d blocked getters in %lld us; leftovers dropped\n",
           kind == RING_SPSC ? "spsc" : "mpmc", n, n, (long long)(waited / 1000));
}

static void timeouts(int kind) {
    ring_t *r = ring_create(kind, 1);
    void *item = NULL;
    int64_t t0 = ring_now_ns();
    if (blocking(r, 0, &item, 50000000LL) != RING_TIMEOUT) FAIL("get on an empty ring did not time out");
    int64_t waited = ring_now_ns() - t0;
    if (waited < 45000000LL || waited > 2000000000LL) FAIL("50 ms timeout took %lld us", (long long)waited / 1000);
    item = encode(0, 0);
    while (ring_attempt_put(r, item) == RING_OK) {}
    if (blocking(r, 1, &item, 20000000LL) != RING_TIMEOUT) FAIL("put on a full ring did not time out");
    ring_destroy(r, NULL);
    printf("ok  %s timeouts\n", kind == RING_SPSC ? "spsc" : "mpmc");
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    alarm(120); /* a hang (lost wake-up) ends the run with SIGALRM */
    uint64_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 200000;
    exactly_once(RING_SPSC, 1, 1, 1, n / 4);
    exactly_once(RING_SPSC, 7, 1, 1, n);
    exactly_once(RING_MPMC, 2, 4, 4, n / 4);
    exactly_once(RING_MPMC, 64, 4, 4, n);
    exactly_once(RING_MPMC, 16, 1, 4, n);
    exactly_once(RING_MPMC, 16, 4, 1, n);
    close_wakes(RING_SPSC);
    close_wakes(RING_MPMC);
    timeouts(RING_SPSC);
    timeouts(RING_MPMC);
    puts("all ring core checks passed");
    return 0;
}
