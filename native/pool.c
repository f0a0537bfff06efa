/* Persistent worker threads over a FIFO of jobs; items taken by an atomic counter (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* --- fork handlers: every live pool's lock taken around fork(), the child's copies made new -------------------- */

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static Pool *registry;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int atfork_rc;

/* Lock order: registry_mu, then each pool's mu. No holder of a pool's mu waits for anything but that mu (the
 * threads that hold it never take the GIL or another pool's lock), so fork() waits here for moments only. */
static void before_fork(void) {
    pthread_mutex_lock(&registry_mu);
    for (Pool *p = registry; p != NULL; p = p->next) pthread_mutex_lock(&p->mu);
}

static void after_fork_in_parent(void) {
    for (Pool *p = registry; p != NULL; p = p->next) pthread_mutex_unlock(&p->mu);
    pthread_mutex_unlock(&registry_mu);
}

/* The child's copy: the locks were taken by before_fork in the parent's forking thread (not this thread, as far as
 * the implementation is concerned), and the condition variables may count waiters that do not exist here: all are
 * made new. The parent's threads and their jobs do not exist here either; their Worker records and decoder
 * scratch memory are left as they were (a worker may have been inside them at the fork). `want`, `stopping` and
 * the counters stay: a child starts as many threads as the parent had asked for, on first use. */
static void after_fork_in_child(void) {
    for (Pool *p = registry; p != NULL; p = p->next) {
        pthread_mutex_init(&p->mu, NULL);
        pthread_cond_init(&p->work, NULL);
        pthread_cond_init(&p->done, NULL);
        memset(p->workers, 0, sizeof(p->workers));
        p->head = p->tail = NULL;
        p->started = p->active = p->inflight = p->joining = p->joined = 0;
    }
    pthread_mutex_init(&registry_mu, NULL);
}

static void register_atfork(void) { atfork_rc = pthread_atfork(before_fork, after_fork_in_parent, after_fork_in_child); }

/* --- workers ---------------------------------------------------------------------------------------------------- */

/* Works through the items of `job`, starting with `item` (already taken). The job stays alive while one of its
 * items is taken but not yet counted done, so the next item is taken before the current one is counted. */
static void work_on(Pool *pool, Job *job, int item, DecodeCtx *ctx) {
    while (item < job->n) {
        long long t0 = now_ns();
        job->fn(job, item, ctx);
        atomic_fetch_add_explicit(&pool->busy_ns, now_ns() - t0, memory_order_relaxed);
        atomic_fetch_add_explicit(&pool->items, 1, memory_order_relaxed);
        int next = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        /* release: the item's output is visible to the waiter that sees `done` reach n */
        if (atomic_fetch_add_explicit(&job->done, 1, memory_order_acq_rel) + 1 == job->n) {
            pthread_mutex_lock(&pool->mu); /* the waiter re-checks under the lock: no lost wake-up */
            pthread_cond_broadcast(&pool->done);
            pthread_mutex_unlock(&pool->mu);
            return; /* `job` may be freed from here on */
        }
        item = next;
    }
}

/* A worker leaves only when the pool is stopping and no job is queued: every job queued before pool_stop is
 * worked to its end (while stopping, parked workers help too). */
static void *worker_main(void *arg) {
    Worker *w = arg;
    Pool *pool = w->pool;
    pthread_mutex_lock(&pool->mu);
    for (;;) {
        Job *job = pool->head;
        if (job == NULL && pool->stopping) break;
        if (job == NULL || (w->id >= pool->active && !pool->stopping)) {
            pthread_cond_wait(&pool->work, &pool->mu);
            continue;
        }
        int item = atomic_fetch_add_explicit(&job->next, 1, memory_order_relaxed);
        if (item >= job->n) { /* exhausted: later items are in flight elsewhere; the next job is ours */
            pool->head = job->link;
            if (pool->head == NULL) pool->tail = NULL;
            job->link = NULL;
            continue;
        }
        pthread_mutex_unlock(&pool->mu);
        work_on(pool, job, item, w->ctx);
        pthread_mutex_lock(&pool->mu);
    }
    pthread_mutex_unlock(&pool->mu);
    return NULL;
}

/* --- the pool --------------------------------------------------------------------------------------------------- */

int pool_init(Pool *pool) {
    memset(pool, 0, sizeof(*pool));
    pthread_once(&atfork_once, register_atfork);
    if (atfork_rc != 0) return atfork_rc;
    int rc = pthread_mutex_init(&pool->mu, NULL);
    if (rc != 0) return rc;
    if ((rc = pthread_cond_init(&pool->work, NULL)) != 0) {
        pthread_mutex_destroy(&pool->mu);
        return rc;
    }
    if ((rc = pthread_cond_init(&pool->done, NULL)) != 0) {
        pthread_cond_destroy(&pool->work);
        pthread_mutex_destroy(&pool->mu);
        return rc;
    }
    pthread_mutex_lock(&registry_mu);
    pool->next = registry;
    if (registry != NULL) registry->prev = pool;
    registry = pool;
    pthread_mutex_unlock(&registry_mu);
    return 0;
}

void pool_destroy(Pool *pool) {
    pthread_mutex_lock(&registry_mu);
    if (pool->prev != NULL)
        pool->prev->next = pool->next;
    else
        registry = pool->next;
    if (pool->next != NULL) pool->next->prev = pool->prev;
    pool->prev = pool->next = NULL;
    pthread_mutex_unlock(&registry_mu);
    pthread_cond_destroy(&pool->done);
    pthread_cond_destroy(&pool->work);
    pthread_mutex_destroy(&pool->mu);
}

/* Called with the lock held: starts threads up to n; 0, or the errno of the start that failed. */
static int start_threads(Pool *pool, int n) {
    while (pool->started < n) {
        Worker *w = calloc(1, sizeof(Worker));
        if (w == NULL) return ENOMEM;
        w->pool = pool;
        w->id = pool->started;
        w->ctx = dw_ctx_new();
        if (w->ctx == NULL) {
            free(w);
            return ENOMEM;
        }
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc != 0) {
            dw_ctx_free(w->ctx);
            free(w);
            return rc;
        }
        pool->workers[pool->started++] = w;
    }
    return 0;
}

/* Called with the lock held and the pool not stopping: threads up to `want`, `want` of them active. */
static int raise_threads(Pool *pool) {
    int rc = start_threads(pool, pool->want);
    pool->active = pool->want < pool->started ? pool->want : pool->started;
    pthread_cond_broadcast(&pool->work);
    return rc;
}

int pool_set_threads(Pool *pool, int n, int *active) {
    if (n < 1) n = 1;
    if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
    pthread_mutex_lock(&pool->mu);
    int rc = POOL_CLOSED;
    if (!pool->stopping) {
        pool->want = n;
        rc = raise_threads(pool);
    }
    if (active != NULL) *active = pool->active;
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

int pool_run(Pool *pool, Job *job) {
    if (job->n <= 0) return 0;
    atomic_store(&job->next, 0);
    atomic_store(&job->done, 0);
    job->link = NULL;
    pthread_mutex_lock(&pool->mu);
    if (pool->stopping) {
        pthread_mutex_unlock(&pool->mu);
        return POOL_CLOSED;
    }
    if (pool->active == 0) { /* a forked child: its own threads, as many as the parent had asked for */
        int rc = raise_threads(pool);
        if (pool->active == 0) {
            pthread_mutex_unlock(&pool->mu);
            return rc != 0 ? rc : EAGAIN;
        }
    }
    if (pool->tail != NULL)
        pool->tail->link = job;
    else
        pool->head = job;
    pool->tail = job;
    pool->inflight++;
    pthread_cond_broadcast(&pool->work);
    while (atomic_load_explicit(&job->done, memory_order_acquire) < job->n) pthread_cond_wait(&pool->done, &pool->mu);
    /* still queued if no worker found it exhausted: unlink before the caller frees it */
    for (Job **p = &pool->head, *prev = NULL; *p != NULL; prev = *p, p = &(*p)->link) {
        if (*p == job) {
            *p = job->link;
            if (pool->tail == job) pool->tail = prev;
            break;
        }
    }
    pool->inflight--;
    pthread_cond_broadcast(&pool->done); /* pool_stop waits for inflight == 0 */
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

void pool_stop(Pool *pool) {
    pthread_mutex_lock(&pool->mu);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work); /* parked workers help drain the queue, then every worker leaves */
    while (pool->inflight > 0) pthread_cond_wait(&pool->done, &pool->mu);
    if (pool->joining) { /* another pool_stop joins: return once it has */
        while (!pool->joined) pthread_cond_wait(&pool->done, &pool->mu);
        pthread_mutex_unlock(&pool->mu);
        return;
    }
    pool->joining = 1;
    int started = pool->started;
    pool->started = pool->active = 0;
    pthread_mutex_unlock(&pool->mu);
    for (int i = 0; i < started; i++) {
        Worker *w = pool->workers[i];
        pthread_join(w->tid, NULL);
        dw_ctx_free(w->ctx);
        free(w);
        pool->workers[i] = NULL;
    }
    pthread_mutex_lock(&pool->mu);
    pool->joined = 1;
    pthread_cond_broadcast(&pool->done);
    pthread_mutex_unlock(&pool->mu);
}
