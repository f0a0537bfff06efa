/* The fork generation counter (see forks.h). */
#include "forks.h"

#include <pthread.h>
#include <stdatomic.h>

static atomic_uint generation;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int init_rc;

/* Runs in the child only, before fork() returns there: one thread exists, nothing else can read the counter. */
static void count_fork(void) { atomic_fetch_add_explicit(&generation, 1, memory_order_relaxed); }

static void register_handler(void) { init_rc = pthread_atfork(NULL, NULL, count_fork); }

int forks_init(void) {
    pthread_once(&once, register_handler);
    return init_rc;
}

unsigned forks_generation(void) { return atomic_load_explicit(&generation, memory_order_relaxed); }
