/* derive: channel keys derived on a worker thread, so a tool's loop keeps passing frames
 * during the ~0.2 s (and 64 MiB) of Argon2id that keys_derive costs. One worker per online
 * core (at most 4, so memory stays at four derivations) takes the jobs in the order they
 * were started, so hosts opening the same channels derive them alike. Results come back
 * through a pipe the caller's loop watches: when derive_fd is readable, call derive_collect,
 * which runs each finished job's callback on the loop's thread. */
#ifndef NWS_DERIVE_H
#define NWS_DERIVE_H

#include "keys.h"

struct derive;
struct derive_job;

/* keys is NULL when the name was invalid or memory ran out; the callee owns it. */
typedef void (*derive_done_fn)(void *ctx, struct derive_job *j, struct keys *k);

/* NULL (with errno) when the pipe or thread cannot be made. */
struct derive *derive_new(void);
/* Waits for the job in progress, drops the rest (their callbacks do not run), frees. */
void derive_free(struct derive *dv);
int derive_fd(const struct derive *dv);

/* Queues the derivation of name's keys. NULL on out of memory. A name cancelled while
 * the worker derives it is not derived twice: the running job is taken over. */
struct derive_job *derive_start(struct derive *dv, const char *name, derive_done_fn done,
    void *ctx);
/* The job's callback will not run. A job not started yet is dropped (never derived);
 * a running one's keys are wiped when it finishes. */
void derive_cancel(struct derive *dv, struct derive_job *j);
/* Jobs started and neither cancelled nor collected yet. */
size_t derive_pending(const struct derive *dv);
/* Runs the callbacks of every finished job. */
void derive_collect(struct derive *dv);

#endif
