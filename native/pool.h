/* A pool of persistent native threads working through batch jobs, one image at a time (pool.c).
 *
 * A job is n independent items; workers take items with an atomic counter, so an image is the unit of work and
 * the job's caller waits (without the GIL) until all n are done. Jobs queue in submission order; a worker that
 * finds the head job exhausted moves on to the next, so two callers' batches overlap without idle tails.
 */
#ifndef DATAIO_POOL_H
#define DATAIO_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <sys/types.h>

#include "jpeg_window.h"

#define POOL_MAX_THREADS 1024

typedef struct Job Job;
typedef void (*JobFn)(Job *job, int item, DecodeCtx *ctx);

struct Job {
    JobFn fn;
    void *arg;
    int n;
    atomic_int next; /* next item to take */
    atomic_int done; /* items finished */
    Job *link;       /* queue */
};

typedef struct Pool Pool;

typedef struct {
    Pool *pool;
    int id;
    DecodeCtx *ctx;
    pthread_t tid;
} Worker;

struct Pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* jobs queued, threads raised, or stopping */
    pthread_cond_t done; /* a job finished */
    Job *head, *tail;
    Worker *workers[POOL_MAX_THREADS];
    int started; /* threads running */
    int active;  /* threads allowed to take work (<= started); the rest park on `work` */
    int inflight;
    int stopping;
    pid_t pid; /* the process that started the threads: a forked child starts its own */
    atomic_llong busy_ns;
    atomic_llong items;
};

/* 0 on success. */
int pool_init(Pool *pool);
/* Starts threads up to n (1..POOL_MAX_THREADS) and lets n take work; 0 on success, else errno of the failed start
 * (the threads that did start keep working). */
int pool_set_threads(Pool *pool, int n);
/* Runs job to completion on the pool (call without the GIL). 0 on success, -1 if the pool is stopped or has no
 * thread. */
int pool_run(Pool *pool, Job *job);
/* Waits for running jobs, stops and joins every thread (call without the GIL). Idempotent. */
void pool_stop(Pool *pool);

#endif
