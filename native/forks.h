/* Fork generations (forks.c): how a native object tells that it was inherited by a forked child.
 *
 * fork() copies only the calling thread. Whatever another thread was doing at that moment is frozen in the
 * child's copy: a mutex it held stays held, a condition variable keeps waiters that do not exist, a lock-free
 * structure can be half-way through an update. Each native part that owns such state makes it safe with its own
 * pthread_atfork handlers (pool.c, calls.c); objects that cannot be repaired compare the generation they were
 * made in with the current one and refuse to be used in a child (ring.c).
 */
#ifndef DATAIO_FORKS_H
#define DATAIO_FORKS_H

/* Registers the handler that counts forks (idempotent, thread-safe); 0 on success, else an errno. */
int forks_init(void);
/* 0 in the process that loaded the module, +1 in each generation of forked children. */
unsigned forks_generation(void);

#endif
