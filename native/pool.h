/* A pool of persistent native threads working through batch jobs, one image at a time (pool.c).
 *
 * A job is n independent items; workers take items with an atomic counter, so an image is the unit of work and
 * the job's caller waits (without the GIL) until all n are done. Jobs queue in submission order; a worker that
 * finds the head job exhausted moves on to the next, so two callers' batches overlap without idle tails.
 *
 * Stopping: pool_stop refuses new jobs at once, lets the workers finish every job already queued or running
 * (each caller's pool_run returns 0 with all its items done), then joins the threads. Nothing is abandoned.
 *
 * Fork safety: every live pool is registered; pthread_atfork handlers take each pool's lock before fork() (so
 * the child's copy is consistent and not held) and, in the child, give each pool fresh locks and condition
 * variables and forget the parent's threads and queued jobs (they belong to threads the child does not have).
 * The child's next pool_run or pool_set_threads starts its own threads, as many as the parent had asked for.
 */
#ifndef DATAIO_POOL_H
#define DATAIO_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "jpeg_window.h"

#define POOL_MAX_THREADS 1024
#define POOL_CLOSED (-1) /* pool_run / pool_set_threads: the pool is stopping or stopped */

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
    pthread_cond_t done; /* a job finished, a caller left, or the threads were joined */
    Job *head, *tail;
    Worker *workers[POOL_MAX_THREADS];
    int want;    /* threads asked for (pool_set_threads); a forked child starts this many */
    int started; /* threads running */
    int active;  /* threads allowed to take work (<= started); the rest park on `work` */
    int inflight;
    int stopping; /* no new jobs; workers leave once the queue is empty */
    int joining;  /* a pool_stop is joining the threads */
    int joined;   /* the threads are joined: every pool_stop may return */
    Pool *prev, *next; /* the registry of live pools (fork handlers) */
    atomic_llong busy_ns;
    atomic_llong items;
};

/* Initialises and registers the pool (no threads yet); 0 on success, else an errno (nothing to undo then). */
int pool_init(Pool *pool);
/* Starts threads up to n (1..POOL_MAX_THREADS) and lets n take work; *active (if not NULL) receives the number
 * that now take work. 0 on success, POOL_CLOSED, or the errno of a failed start (the threads that did start keep
 * working: *active says how many). */
int pool_set_threads(Pool *pool, int n, int *active);
/* Runs job to completion on the pool (call without the GIL). 0 when every item ran, POOL_CLOSED when the pool is
 * stopping (nothing ran), or the errno of a failed thread start when the pool has no thread (a forked child that
 * could not start its own; nothing ran). */
int pool_run(Pool *pool, Job *job);
/* Refuses new jobs, waits until every queued and running job is done and every caller has returned, joins the
 * threads (call without the GIL). Idempotent; a concurrent second call returns only once the threads are joined. */
void pool_stop(Pool *pool);
/* Unregisters the pool and frees its locks: after pool_stop, or after pool_init when no thread ever started. */
void pool_destroy(Pool *pool);

#endif
