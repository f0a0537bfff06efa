/* Persistent worker threads over a FIFO of jobs; items taken by an atomic counter (see pool.h). */
#include "pool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

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

static void *worker_main(void *arg) {
    Worker *w = arg;
    Pool *pool = w->pool;
    pthread_mutex_lock(&pool->mu);
    while (!pool->stopping) {
        Job *job = pool->head;
        if (w->id >= pool->active || job == NULL) {
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

int pool_init(Pool *pool) {
    memset(pool, 0, sizeof(*pool));
    if (pthread_mutex_init(&pool->mu, NULL) || pthread_cond_init(&pool->work, NULL) ||
        pthread_cond_init(&pool->done, NULL))
        return -1;
    pool->pid = getpid();
    return 0;
}

/* In a forked child none of the parent's threads exist, and a lock may have been copied held: start over. The
 * parent's workers' scratch memory is left as it was (a worker may have been inside it at the fork). */
static void reset_if_forked(Pool *pool) {
    if (pool->pid == getpid()) return;
    pthread_mutex_init(&pool->mu, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->done, NULL);
    memset(pool->workers, 0, sizeof(pool->workers));
    pool->head = pool->tail = NULL;
    pool->started = pool->inflight = pool->stopping = 0;
    pool->pid = getpid();
}

/* Called with the lock held. */
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

int pool_set_threads(Pool *pool, int n) {
    if (n < 1) n = 1;
    if (n > POOL_MAX_THREADS) n = POOL_MAX_THREADS;
    pthread_mutex_lock(&pool->mu);
    reset_if_forked(pool);
    int rc = pool->stopping ? EINVAL : start_threads(pool, n);
    pool->active = n < pool->started ? n : pool->started;
    pthread_cond_broadcast(&pool->work);
    pthread_mutex_unlock(&pool->mu);
    return rc;
}

int pool_run(Pool *pool, Job *job) {
    if (job->n <= 0) return 0;
    atomic_store(&job->next, 0);
    atomic_store(&job->done, 0);
    job->link = NULL;
    pthread_mutex_lock(&pool->mu);
    reset_if_forked(pool);
    if (pool->started == 0 && !pool->stopping) { /* after a fork */
        start_threads(pool, pool->active > 0 ? pool->active : 1);
        pool->active = pool->active > 0 && pool->active <= pool->started ? pool->active : pool->started;
    }
    if (pool->stopping || pool->active == 0) {
        pthread_mutex_unlock(&pool->mu);
        return -1;
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
    pthread_cond_broadcast(&pool->done); /* pool_stop may wait for inflight == 0 */
    pthread_mutex_unlock(&pool->mu);
    return 0;
}

void pool_stop(Pool *pool) {
    pthread_mutex_lock(&pool->mu);
    reset_if_forked(pool);
    pool->stopping = 1;
    while (pool->inflight > 0) pthread_cond_wait(&pool->done, &pool->mu);
    pthread_cond_broadcast(&pool->work);
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
}
