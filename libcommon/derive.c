#include "derive.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <sodium.h>

#include "log.h"

struct derive_job {
	struct derive_job *next;   /* in the queue */
	char name[KEYS_NAME_MAX + 1];
	struct keys *k;
	int cancelled;             /* the loop's, under mu while the job may be running */
	derive_done_fn done;
	void *ctx;
};

/* Each worker holds one Argon2id's 64 MiB while it derives: this bounds the memory. */
#define WORKERS_MAX 4

struct derive {
	pthread_t workers[WORKERS_MAX];
	size_t nworkers, nstarted;        /* nstarted: workers that took their slot (mu) */
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct derive_job *head, *tail;   /* queued, not started */
	struct derive_job *running[WORKERS_MAX];   /* each worker's job, until its name is wiped */
	size_t pending;                   /* started, not cancelled, not collected (loop) */
	int stop;
	int pipe[2];                      /* workers -> loop: finished job pointers */
};

static void
job_free(struct derive_job *j)
{
	keys_free(j->k);
	sodium_memzero(j->name, sizeof j->name);
	free(j);
}

static void *
worker(void *arg)
{
	struct derive *dv = arg;
	struct derive_job *j;
	size_t me;

	/* Argon2id's burst of CPU and memory traffic must not delay the frames the loop
	 * passes on meanwhile (measured: 28 ms latency tails when a channel opened). On Linux
	 * the nice value is per thread; failing to lower it only costs latency. */
	(void)setpriority(PRIO_PROCESS, (id_t)gettid(), 19);
	pthread_mutex_lock(&dv->mu);
	me = dv->nstarted++;
	pthread_mutex_unlock(&dv->mu);
	for (;;) {
		pthread_mutex_lock(&dv->mu);
		while (!dv->stop && !dv->head)
			pthread_cond_wait(&dv->cv, &dv->mu);
		if (dv->stop) {
			pthread_mutex_unlock(&dv->mu);
			return NULL;
		}
		j = dv->head;
		if (!(dv->head = j->next))
			dv->tail = NULL;
		dv->running[me] = j;
		pthread_mutex_unlock(&dv->mu);
		/* Counted by tests: one Argon2id per channel per host (nws(7) FRAMES). */
		log_debug("deriving a channel key (Argon2id)");
		j->k = keys_derive(j->name);
		/* libsodium takes Argon2id's 64 MiB with malloc, from this thread's arena, whose
		 * pages stay resident after the free: give them back until the next one. */
		malloc_trim(0);
		pthread_mutex_lock(&dv->mu);
		dv->running[me] = NULL;
		sodium_memzero(j->name, sizeof j->name);
		pthread_mutex_unlock(&dv->mu);
		/* A pointer is far below PIPE_BUF: the write is whole. */
		while (write(dv->pipe[1], &j, sizeof j) < 0 && errno == EINTR)
			;
	}
}

struct derive *
derive_new(void)
{
	struct derive *dv;
	long cpus;
	size_t want;
	int err = 0;

	if (!(dv = calloc(1, sizeof *dv)))
		return NULL;
	if (pipe2(dv->pipe, O_CLOEXEC) < 0) {
		free(dv);
		return NULL;
	}
	fcntl(dv->pipe[0], F_SETFL, O_NONBLOCK);
	pthread_mutex_init(&dv->mu, NULL);
	pthread_cond_init(&dv->cv, NULL);
	/* One worker per core: the jobs still start in the order asked (FIFO), so two hosts
	 * opening the same channels derive the same ones first and those pairs meet early. */
	cpus = sysconf(_SC_NPROCESSORS_ONLN);
	want = cpus < 1 ? 1 : cpus > WORKERS_MAX ? WORKERS_MAX : (size_t)cpus;
	for (; dv->nworkers < want; dv->nworkers++)
		if ((err = pthread_create(&dv->workers[dv->nworkers], NULL, worker, dv)) != 0)
			break;
	if (!dv->nworkers) {
		pthread_mutex_destroy(&dv->mu);
		pthread_cond_destroy(&dv->cv);
		close(dv->pipe[0]);
		close(dv->pipe[1]);
		free(dv);
		errno = err;
		return NULL;
	}
	return dv;
}

int
derive_fd(const struct derive *dv)
{
	return dv->pipe[0];
}

struct derive_job *
derive_start(struct derive *dv, const char *name, derive_done_fn done, void *ctx)
{
	struct derive_job *j;

	pthread_mutex_lock(&dv->mu);
	for (size_t i = 0; i < dv->nworkers; i++) {
		j = dv->running[i];
		if (j && j->cancelled && !strncmp(j->name, name, KEYS_NAME_MAX)) {
			/* Closed and opened again while a worker derives it: take that result. */
			j->cancelled = 0;
			j->done = done;
			j->ctx = ctx;
			dv->pending++;
			pthread_mutex_unlock(&dv->mu);
			return j;
		}
	}
	pthread_mutex_unlock(&dv->mu);
	if (!(j = calloc(1, sizeof *j)))
		return NULL;
	strncpy(j->name, name, KEYS_NAME_MAX);
	j->done = done;
	j->ctx = ctx;
	dv->pending++;
	pthread_mutex_lock(&dv->mu);
	if (dv->tail)
		dv->tail->next = j;
	else
		dv->head = j;
	dv->tail = j;
	pthread_cond_signal(&dv->cv);
	pthread_mutex_unlock(&dv->mu);
	return j;
}

void
derive_cancel(struct derive *dv, struct derive_job *j)
{
	struct derive_job **pp, *prev = NULL;

	dv->pending--;
	pthread_mutex_lock(&dv->mu);
	for (pp = &dv->head; *pp; prev = *pp, pp = &(*pp)->next)
		if (*pp == j) {
			/* Not started: it never runs. */
			*pp = j->next;
			if (dv->tail == j)
				dv->tail = prev;
			pthread_mutex_unlock(&dv->mu);
			job_free(j);
			return;
		}
	j->cancelled = 1;
	pthread_mutex_unlock(&dv->mu);
}

size_t
derive_pending(const struct derive *dv)
{
	return dv->pending;
}

void
derive_collect(struct derive *dv)
{
	struct derive_job *j;

	while (read(dv->pipe[0], &j, sizeof j) == (ssize_t)sizeof j) {
		if (!j->cancelled) {
			dv->pending--;
			j->done(j->ctx, j, j->k);
			j->k = NULL;   /* the callee's now */
		}
		job_free(j);
	}
}

void
derive_free(struct derive *dv)
{
	struct derive_job *j;

	if (!dv)
		return;
	pthread_mutex_lock(&dv->mu);
	dv->stop = 1;
	pthread_cond_broadcast(&dv->cv);
	pthread_mutex_unlock(&dv->mu);
	for (size_t i = 0; i < dv->nworkers; i++)
		pthread_join(dv->workers[i], NULL);
	while ((j = dv->head)) {
		dv->head = j->next;
		job_free(j);
	}
	while (read(dv->pipe[0], &j, sizeof j) == (ssize_t)sizeof j)
		job_free(j);
	close(dv->pipe[0]);
	close(dv->pipe[1]);
	pthread_mutex_destroy(&dv->mu);
	pthread_cond_destroy(&dv->cv);
	free(dv);
}
