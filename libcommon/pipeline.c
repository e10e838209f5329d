#include "pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sodium.h>

#include "derive.h"
#include "idset.h"
#include "log.h"
#include "loop.h"
#include "stream.h"

#define NSTAGES 3
/* Stages of dead pipelines still being terminated, plus the live ones. A restart waits
 * at least 0.25 s and an old stage is killed within 1 s, so a few generations suffice. */
#define MAX_KIDS 24
#define BACKOFF_MIN_MS 250
#define BACKOFF_MAX_MS 10000
#define BACKOFF_RESET_MS 30000
#define STOP_WAIT_MS 2000
#define TERM_WAIT_MS 1000
#define BROKEN_GRACE_MS 200
/* Each pipe between the stages holds this much: a 64 KiB pipe takes a 1 MiB broadcast in
 * 16 pieces at each of the four hops, each piece a wake-up of both ends (and of the
 * writer's loop for POLLOUT); small frames never fill even 64 KiB. */
#define PIPE_SIZE (1 << 20)
/* Where nws-link finds its --data-fds. */
#define LINK_DATA_IN 3
#define LINK_DATA_OUT 4

static const char *const stage_names[NSTAGES] = { "nws-browse", "nws-link", "nws-advertise" };

enum state { RUNNING, DOWN, STOPPING };

/* A stage's process; a free slot has pid 0. The loop watches its pidfd, which becomes
 * readable when it exits: no SIGCHLD handler, no polling with waitpid. */
struct kid {
	pid_t pid;
	int stage;
	unsigned gen;
	int64_t deadline;    /* ms; 0: none. First SIGTERM, then SIGKILL. */
	int termed;
	struct loop_watch *exit_watch;
};

/* An open channel: its key or the derivation of it, the local peers to replay into a new
 * generation and the remote peers to disconnect when one dies (beyond IDSET_PEERS_MAX
 * they are not tracked). */
struct chan {
	char *name;
	struct keys *k;
	struct derive_job *job;
	struct idset locals, remotes;
};

struct pipeline {
	struct lws_vhost *vh;
	struct lws_context *cx;
	char **argv[NSTAGES];
	size_t max_frame, max_queue;
	pipeline_frame_fn on_frame;
	pipeline_drain_fn on_drain;
	void *ctx;

	enum state state;
	unsigned gen;
	struct kid kids[MAX_KIDS];   /* slots stay put: a watch points at its kid's */
	size_t nkids;
	/* head and tail carry discovery and status; link_in and link_out are nws-link's
	 * --data-fds, the peers' frames (the fast path: see spawn). */
	struct loop_pipe *head, *tail, *link_in, *link_out;
	int pipes_open;          /* adopted pipes whose on_close has not come yet */
	int64_t started_ms, broken_ms;
	int backoff_ms;
	int congested;           /* a send returned 1 or -1: on_drain is owed */
	int paused;              /* the caller paused the tail */

	struct chan *chans;
	size_t nchans, capchans;
	struct derive *dv;       /* K per channel, once for all stages (nws(7) FRAMES) */
	struct loop_watch *derive_watch;

	/* The likeliest cause of this generation's death so far: a stage that saw only end
	 * of file can be reaped before the stage that was killed, so a clean exit waits
	 * BROKEN_GRACE_MS for a better explanation. cause_rank -1: no death yet. */
	struct kid cause;
	int cause_rank, cause_status;
	int64_t cause_ms;

	pipeline_done_fn done;
	void *done_ctx;
	/* check() when something is due: a stage's deadline, the end of the grace. */
	lws_sorted_usec_list_t sul_check, sul_restart;
};

static int64_t
now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void
str_wipe_free(char *s)
{
	if (s) {
		sodium_memzero(s, strlen(s));
		free(s);
	}
}

static struct chan *
chan_find(const struct pipeline *p, const char *name)
{
	for (size_t i = 0; name && i < p->nchans; i++)
		if (!strcmp(p->chans[i].name, name))
			return &p->chans[i];
	return NULL;
}

static struct chan *
chan_add(struct pipeline *p, const char *name)
{
	if (p->nchans == p->capchans) {
		size_t cap = p->capchans ? p->capchans * 2 : 8;
		struct chan *v = realloc(p->chans, cap * sizeof *v);
		if (!v)
			return NULL;
		p->chans = v;
		p->capchans = cap;
	}
	struct chan *ch = &p->chans[p->nchans];
	if (!(ch->name = strdup(name)))
		return NULL;
	ch->k = NULL;
	ch->job = NULL;
	idset_init(&ch->locals, IDSET_PEERS_MAX);
	idset_init(&ch->remotes, IDSET_PEERS_MAX);
	p->nchans++;
	return ch;
}

static void
chan_del(struct pipeline *p, struct chan *ch)
{
	keys_free(ch->k);
	str_wipe_free(ch->name);
	idset_clear(&ch->locals);
	idset_clear(&ch->remotes);
	*ch = p->chans[--p->nchans];
}

/* Where a stage's binary is: NWS_LIBEXEC, the running program's directory, then PATH.
 * Returns a malloc'd path, NULL when not found. */
static char *
stage_path(const char *name)
{
	char dir[PATH_MAX], path[PATH_MAX + 64];
	const char *env = getenv("NWS_LIBEXEC");

	if (env && *env) {
		snprintf(path, sizeof path, "%s/%s", env, name);
		return access(path, X_OK) ? NULL : strdup(path);
	}
	ssize_t n = readlink("/proc/self/exe", dir, sizeof dir - 1);
	if (n > 0) {
		dir[n] = 0;
		char *slash = strrchr(dir, '/');
		if (slash) {
			*slash = 0;
			snprintf(path, sizeof path, "%s/%s", dir, name);
			if (!access(path, X_OK))
				return strdup(path);
		}
	}
	const char *p = getenv("PATH");
	while (p && *p) {
		size_t len = strcspn(p, ":");
		if (len)
			snprintf(path, sizeof path, "%.*s/%s", (int)len, p, name);
		else
			snprintf(path, sizeof path, "./%s", name);
		if (!access(path, X_OK))
			return strdup(path);
		p += len + (p[len] == ':');
	}
	return NULL;
}

static void
argv_free(char **argv)
{
	if (!argv)
		return;
	for (char **a = argv; *a; a++)
		free(*a);
	free(argv);
}

const char *
pipeline_config_problem(const struct pipeline_config *cfg)
{
	if ((cfg->tsig_key || cfg->dns_server) && !cfg->domain)
		return "--tsig-key and --dns-server publish in a unicast DNS domain: "
		    "name it with -d DOMAIN";
	return NULL;
}

/* Appends "opt value" when value is set; ok goes 0 on out of memory. */
static void
arg_pair(char **argv, size_t *n, int *ok, const char *opt, const char *value)
{
	if (!value)
		return;
	*ok &= (argv[(*n)++] = strdup(opt)) != NULL;
	*ok &= (argv[(*n)++] = strdup(value)) != NULL;
}

static char **
stage_argv(int stage, const struct pipeline_config *cfg)
{
	/* argv[0], --cbor, five option pairs at most, NULL; and the -v's. */
	size_t n = 0, cap = 13 + (size_t)(cfg->verbose > 0 ? cfg->verbose : 0);
	char **argv = calloc(cap, sizeof *argv);
	if (!argv)
		return NULL;
	char size[32];
	int ok = (argv[n++] = stage_path(stage_names[stage])) != NULL;
	if (!ok) {
		if (getenv("NWS_LIBEXEC") && *getenv("NWS_LIBEXEC"))
			log_error("cannot find %s in NWS_LIBEXEC (%s); fix or unset it",
			    stage_names[stage], getenv("NWS_LIBEXEC"));
		else
			log_error("cannot find %s beside this program or on PATH; install nws "
			    "or set NWS_LIBEXEC to its directory", stage_names[stage]);
		free(argv);
		return NULL;
	}
	ok &= (argv[n++] = strdup("--cbor")) != NULL;
	for (int i = 0; i < cfg->verbose; i++)
		ok &= (argv[n++] = strdup("-v")) != NULL;
	if (stage != 1)
		arg_pair(argv, &n, &ok, "-d", cfg->domain);
	if (cfg->max_frame) {
		snprintf(size, sizeof size, "%zu", cfg->max_frame);
		arg_pair(argv, &n, &ok, "--max-frame", size);
	}
	if (stage == 1) {
		arg_pair(argv, &n, &ok, "--listen", cfg->listen);
		snprintf(size, sizeof size, "%d,%d", LINK_DATA_IN, LINK_DATA_OUT);
		arg_pair(argv, &n, &ok, "--data-fds", size);
	}
	if (stage == 2) {
		arg_pair(argv, &n, &ok, "--tsig-key", cfg->tsig_key);
		arg_pair(argv, &n, &ok, "--dns-server", cfg->dns_server);
	}
	if (!ok) {
		log_error("out of memory");
		argv_free(argv);
		return NULL;
	}
	return argv;
}

/* In the child: fds[i] on descriptor i (0 in, 1 out, 2 stays stderr, then nws-link's
 * data fds; -1 ends the list), nothing else, default signals. */
static void __attribute__((noreturn))
child_exec(char **argv, const int *fds)
{
	int moved[LINK_DATA_OUT + 1], n = 0;
	sigset_t none;

	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	for (int s = 1; s < NSIG; s++)
		signal(s, SIG_DFL);
	/* Own process group: a terminal's ^C reaches the caller, which stops us in order. */
	setpgid(0, 0);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	/* Out of the way first, so that no dup2 below lands on a descriptor still to be
	 * moved; the copies have no FD_CLOEXEC. */
	for (; n <= LINK_DATA_OUT && fds[n] != -1; n++)
		if (n != 2 && (moved[n] = fcntl(fds[n], F_DUPFD, LINK_DATA_OUT + 1)) < 0)
			_exit(127);
	for (int i = 0; i < n; i++)
		if (i != 2 && (dup2(moved[i], i) < 0 || close(moved[i]) < 0))
			_exit(127);
	close_range((unsigned)n, ~0U, 0);
	execv(argv[0], argv);
	fprintf(stderr, "%s: cannot run %s: %s\n", log_prog, argv[0], strerror(errno));
	_exit(127);
}

static void check_soon(struct pipeline *p);

/* A stage's pidfd is readable: it exited. */
static void
kid_exited(void *ctx)
{
	check_soon(ctx);
}

static void
kid_add(struct pipeline *p, pid_t pid, int stage)
{
	struct kid *k = NULL;
	int fd = -1;

	for (size_t i = 0; i < MAX_KIDS && !k; i++)
		if (!p->kids[i].pid)
			k = &p->kids[i];
	/* No slot cannot happen with the backoff; never leave a stage unsupervised. */
	if (k && (fd = pidfd_open(pid, 0)) >= 0 &&
	    loop_watch_fd(p->vh, fd, kid_exited, p, &k->exit_watch) == 0) {
		close(fd);
		k->pid = pid;
		k->stage = stage;
		k->gen = p->gen;
		k->deadline = 0;
		k->termed = 0;
		p->nkids++;
		return;
	}
	log_error("cannot watch %s: %s", stage_names[stage], k ? strerror(errno) :
	    "too many stages");
	if (fd >= 0)
		close(fd);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

static void on_stage_frame(void *ctx, struct loop_pipe *lp, enum frame_format fmt,
    const unsigned char *raw, size_t len);
static void on_pipe_close(void *ctx, struct loop_pipe *lp);
static void on_stages_drained(void *ctx, struct loop_pipe *lp);

static void
send_state(struct pipeline *p, enum frame_action a, const char *channel, const char *peer)
{
	struct frame f;

	frame_init(&f);
	f.action = a;
	if (frame_set(&f.channel, channel) == 0 && frame_set(&f.target, peer) == 0)
		loop_pipe_send(p->link_in, &f);
	frame_clear(&f);
}

/* The stages learn of a channel once its key is there: `open` with K, then the local
 * peers that joined meanwhile. */
static void
send_open(struct pipeline *p, const struct chan *ch)
{
	struct frame f;

	frame_init(&f);
	f.action = ACTION_OPEN;
	f.has_key = 1;
	memcpy(f.key, ch->k->channel, sizeof f.key);
	if (frame_set(&f.channel, ch->name) == 0) {
		loop_pipe_send(p->link_in, &f);
		loop_pipe_send(p->head, &f);
	}
	frame_clear(&f);
	struct idset_item *it;
	for (size_t pos = 0; (it = idset_next(&ch->locals, &pos)); )
		send_state(p, ACTION_CONNECT, ch->name, it->id);
}

/* Adopts our end of a pipe: fd is written (head, link_in) or read (tail, link_out). */
static struct loop_pipe *
adopt(struct pipeline *p, int fd, int write)
{
	struct loop_pipe *lp = loop_pipe_adopt(p->vh, write ? -1 : fd, write ? fd : -1,
	    FORMAT_CBOR, p->max_frame, p->max_queue, write ? NULL : on_stage_frame,
	    on_pipe_close, p);
	if (!lp) {
		close(fd);
		return NULL;
	}
	p->pipes_open++;
	if (write)
		loop_pipe_on_drain(lp, p->max_queue / 2, on_stages_drained, p);
	else
		loop_pipe_pause(lp, p->paused);
	return lp;
}

/* Spawns a new generation and replays the state into it. -1 if it could not.
 *
 * The stages are a pipeline, fds[0] to fds[3], but the peers' frames take a shorter way:
 * nws-link reads them on link[0] and writes the remote ones on link[1] (its --data-fds),
 * so a broadcast wakes nws-link and no other stage, where passing through nws-browse
 * and nws-advertise cost two more wake-ups and copies each way (tests/bench/README).
 * nws-browse still gets open and close on the head, and nws-advertise listening, open
 * and close on the tail's way; the caller's frames stay in one order on link[0]. */
static int
spawn(struct pipeline *p)
{
	int fds[NSTAGES + 1][2], link[2][2];
	int made = 0;

	for (; made < NSTAGES + 3; made++) {
		int *pp = made <= NSTAGES ? fds[made] : link[made - NSTAGES - 1];
		if (pipe2(pp, O_CLOEXEC) < 0)
			goto fail;
		/* Best effort (bounded by fs.pipe-max-size). */
		fcntl(pp[1], F_SETPIPE_SZ, PIPE_SIZE);
	}
	p->gen++;
	for (int i = 0; i < NSTAGES; i++) {
		int child_fds[] = { fds[i][0], fds[i + 1][1], 2, -1, -1, -1 };
		if (i == 1) {
			child_fds[LINK_DATA_IN] = link[0][0];
			child_fds[LINK_DATA_OUT] = link[1][1];
		}
		pid_t pid = fork();
		if (pid < 0) {
			log_error("cannot start %s: %s", stage_names[i], strerror(errno));
			goto fail;
		}
		if (pid == 0)
			child_exec(p->argv[i], child_fds);
		kid_add(p, pid, i);
	}
	/* Keep the head's and link[0]'s write ends, the tail's and link[1]'s read ends. */
	for (int i = 0; i <= NSTAGES; i++) {
		if (i < NSTAGES)
			close(fds[i][0]);
		if (i > 0)
			close(fds[i][1]);
	}
	close(link[0][0]);
	close(link[1][1]);
	p->head = adopt(p, fds[0][1], 1);
	p->link_in = adopt(p, link[0][1], 1);
	p->tail = adopt(p, fds[NSTAGES][0], 0);
	p->link_out = adopt(p, link[1][0], 0);
	p->state = RUNNING;
	p->started_ms = now_ms();
	p->broken_ms = 0;
	if (!p->head || !p->tail || !p->link_in || !p->link_out) {
		log_error("cannot watch the pipeline's pipes");
		p->broken_ms = now_ms() - BROKEN_GRACE_MS;
		check_soon(p);
		return 0;
	}
	for (size_t i = 0; i < p->nchans; i++)
		if (p->chans[i].k)
			send_open(p, &p->chans[i]);
	return 0;
fail:
	for (int i = 0; i < made; i++) {
		int *pp = i <= NSTAGES ? fds[i] : link[i - NSTAGES - 1];
		close(pp[0]);
		close(pp[1]);
	}
	return -1;
}

static void
kid_term(struct kid *k, int64_t wait_ms)
{
	if (!k->termed) {
		kill(k->pid, SIGTERM);
		k->termed = 1;
	}
	k->deadline = now_ms() + wait_ms;
}

/* Hands the caller a disconnect for every remote peer the dead pipeline announced. */
static void
forget_remotes(struct pipeline *p)
{
	struct buf out;
	struct frame f;

	buf_init(&out, 0);
	for (size_t i = 0; i < p->nchans; i++) {
		struct chan *ch = &p->chans[i];
		struct idset_item *it;
		for (size_t pos = 0; (it = idset_next(&ch->remotes, &pos)); ) {
			frame_init(&f);
			f.action = ACTION_DISCONNECT;
			buf_reset(&out);
			if (frame_set(&f.channel, ch->name) == 0 &&
			    frame_set(&f.target, it->id) == 0 &&
			    frame_encode(&f, FORMAT_CBOR, &out) == 0)
				p->on_frame(p->ctx, FORMAT_CBOR, buf_data(&out), out.len);
			frame_clear(&f);
		}
		idset_clear(&ch->remotes);
	}
	buf_clear(&out);
}

static void restart_cb(lws_sorted_usec_list_t *sul);

/* Closes the pipes to the stages (those from them too when all), forgetting them
 * first: their on_close then knows we closed them. */
static void
close_pipes(struct pipeline *p, int all)
{
	struct loop_pipe *to[] = { p->head, p->link_in }, *from[] = { p->tail, p->link_out };

	p->head = p->link_in = NULL;
	if (all)
		p->tail = p->link_out = NULL;
	for (int i = 0; i < 2; i++) {
		if (to[i])
			loop_pipe_close(to[i]);
		if (all && from[i])
			loop_pipe_close(from[i]);
	}
}

/* The current generation is broken: end it and schedule the next one. */
static void
go_down(struct pipeline *p)
{
	int64_t up = now_ms() - p->started_ms;

	p->state = DOWN;
	p->broken_ms = 0;
	p->cause_rank = -1;
	close_pipes(p, 1);
	for (size_t i = 0; i < MAX_KIDS; i++)
		if (p->kids[i].pid && p->kids[i].gen == p->gen)
			kid_term(&p->kids[i], TERM_WAIT_MS);
	if (up >= BACKOFF_RESET_MS)
		p->backoff_ms = BACKOFF_MIN_MS;
	int delay = p->backoff_ms;
	p->backoff_ms = p->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : p->backoff_ms * 2;
	log_info("restarting the pipeline in %d ms", delay);
	lws_sul_schedule(p->cx, 0, &p->sul_restart, restart_cb, (lws_usec_t)delay * 1000);
	forget_remotes(p);
	if (p->congested && p->on_drain) {
		/* Nothing is queued any more: data is dropped until the restart. */
		p->congested = 0;
		p->on_drain(p->ctx);
	}
}

static void
restart_cb(lws_sorted_usec_list_t *sul)
{
	struct pipeline *p = lws_container_of(sul, struct pipeline, sul_restart);

	if (p->state != DOWN)
		return;
	if (spawn(p) < 0)
		go_down(p);
}

static void
report_death(const struct kid *k, int status)
{
	if (WIFSIGNALED(status))
		log_error("%s was killed by signal %d; restarting the pipeline",
		    stage_names[k->stage], WTERMSIG(status));
	else
		log_error("%s exited with status %d; restarting the pipeline",
		    stage_names[k->stage], WEXITSTATUS(status));
}

static void
finish(struct pipeline *p)
{
	pipeline_done_fn done = p->done;
	void *ctx = p->done_ctx;

	lws_sul_cancel(&p->sul_check);
	lws_sul_cancel(&p->sul_restart);
	loop_watch_stop(&p->derive_watch);
	derive_free(p->dv);
	for (int i = 0; i < NSTAGES; i++)
		argv_free(p->argv[i]);
	while (p->nchans)
		chan_del(p, &p->chans[p->nchans - 1]);
	free(p->chans);
	free(p);
	if (done)
		done(ctx);
}

/* How much a death explains: a stage that was killed or failed is the cause; the
 * others only saw end of file, or SIGPIPE writing to it. */
static int
death_rank(const struct kid *k, int status)
{
	int rank = WIFSIGNALED(status) ? 2 * (WTERMSIG(status) != SIGPIPE) :
	    WEXITSTATUS(status) != 0;
	return rank * NSTAGES + (NSTAGES - 1 - k->stage);
}

static void check_cb(lws_sorted_usec_list_t *sul);

/* Reaps the stages that exited (keeping the likeliest cause of this generation's death)
 * and escalates signals on deadlines. Returns the next deadline (INT64_MAX: none) and
 * in *alive how many stages of this generation still run. */
static int64_t
kids_check(struct pipeline *p, int64_t now, int *alive)
{
	int64_t due = INT64_MAX;

	*alive = 0;
	for (size_t i = 0; i < MAX_KIDS; i++) {
		struct kid *k = &p->kids[i];
		int status = 0;
		if (!k->pid)
			continue;
		pid_t r = waitpid(k->pid, &status, WNOHANG);
		if (r == k->pid || (r < 0 && errno == ECHILD)) {
			if (k->gen == p->gen && p->state == RUNNING &&
			    death_rank(k, status) > p->cause_rank) {
				if (p->cause_rank < 0)
					p->cause_ms = now;
				p->cause_rank = death_rank(k, status);
				p->cause_status = status;
				p->cause = *k;
			}
			loop_watch_stop(&k->exit_watch);
			k->pid = 0;
			p->nkids--;
			continue;
		}
		*alive += k->gen == p->gen;
		if (k->deadline && now >= k->deadline) {
			if (!k->termed) {
				kid_term(k, TERM_WAIT_MS);
			} else {
				kill(k->pid, SIGKILL);
				k->deadline = 0;
			}
		}
		if (k->deadline && k->deadline < due)
			due = k->deadline;
	}
	return due;
}

/* kids_check, then: notices a broken generation, finishes a stop, and sets the timer
 * for the next thing due, if any. Runs from the timer only (check_soon), never inside a
 * pipe's or the caller's call. */
static void
check(struct pipeline *p)
{
	int64_t now = now_ms();
	int died = 0, alive;
	int64_t due = kids_check(p, now, &alive);

	if (p->state == RUNNING && p->cause_rank >= 0) {
		if (p->cause_rank >= NSTAGES || !alive || now - p->cause_ms >= BROKEN_GRACE_MS) {
			report_death(&p->cause, p->cause_status);
			died = 1;
		} else if (p->cause_ms + BROKEN_GRACE_MS < due) {
			due = p->cause_ms + BROKEN_GRACE_MS;
		}
	}
	if (p->state == RUNNING && !died && p->broken_ms) {
		if (now - p->broken_ms >= BROKEN_GRACE_MS) {
			log_error("the pipeline's %s closed; restarting it",
			    p->tail && p->link_out ? "input" : "output");
			died = 1;
		} else if (p->broken_ms + BROKEN_GRACE_MS < due) {
			due = p->broken_ms + BROKEN_GRACE_MS;
		}
	}
	if (died)
		go_down(p);
	if (p->state == STOPPING && !p->nkids) {
		close_pipes(p, 1);
		if (!p->pipes_open) {
			finish(p);
			return;
		}
	}
	if (died)
		check_soon(p);   /* for the deadlines go_down gave the stages */
	else if (due != INT64_MAX)
		lws_sul_schedule(p->cx, 0, &p->sul_check, check_cb,
		    (due > now ? due - now : 0) * LWS_US_PER_MS);
	else
		lws_sul_cancel(&p->sul_check);
}

static void
check_cb(lws_sorted_usec_list_t *sul)
{
	check(lws_container_of(sul, struct pipeline, sul_check));
}

/* check() on the loop's next pass: a stage exited, a pipe closed, a stop began. */
static void
check_soon(struct pipeline *p)
{
	lws_sul_schedule(p->cx, 0, &p->sul_check, check_cb, 0);
}

static void
on_pipe_close(void *ctx, struct loop_pipe *lp)
{
	struct pipeline *p = ctx;

	p->pipes_open--;
	if (lp == p->head)
		p->head = NULL;
	else if (lp == p->tail)
		p->tail = NULL;
	else if (lp == p->link_in)
		p->link_in = NULL;
	else if (lp == p->link_out)
		p->link_out = NULL;
	else
		return;   /* closed by us */
	if (p->state == RUNNING && !p->broken_ms) {
		/* A stage ended; check() names it once it is reaped, or after the grace. */
		p->broken_ms = now_ms();
		check_soon(p);
	} else if (p->state == STOPPING && !p->pipes_open) {
		check_soon(p);
	}
}

/* Remembers remote peers so a dead pipeline's peers can be disconnected. */
static void
track_remote(struct pipeline *p, enum frame_format fmt, const unsigned char *raw,
    size_t len, enum frame_action a)
{
	struct frame f;
	char err[128];

	if (frame_decode(&f, fmt, raw, len, err, sizeof err) < 0)
		return;
	struct chan *ch = f.target && !f.source ? chan_find(p, f.channel) : NULL;
	if (ch && a == ACTION_DISCONNECT)
		idset_del(&ch->remotes, f.target);
	else if (ch)
		idset_add(&ch->remotes, f.target, NULL);
	frame_clear(&f);
}

static void
on_stage_frame(void *ctx, struct loop_pipe *lp, enum frame_format fmt,
    const unsigned char *raw, size_t len)
{
	struct pipeline *p = ctx;

	if (lp != p->tail && lp != p->link_out)
		return;   /* the rest of a dead generation's output */
	enum frame_action a = frame_peek_action(fmt, raw, len);
	if (a == ACTION_CONNECT || a == ACTION_DISCONNECT)
		track_remote(p, fmt, raw, len, a);
	p->on_frame(p->ctx, fmt, raw, len);
}

static void
on_stages_drained(void *ctx, struct loop_pipe *lp)
{
	struct pipeline *p = ctx;

	if ((lp != p->head && lp != p->link_in) || !p->congested ||
	    pipeline_pending(p) > p->max_queue / 2)
		return;
	p->congested = 0;
	if (p->on_drain)
		p->on_drain(p->ctx);
}

/* derive_fd is readable: channel keys are derived (derived runs for each). */
static void
derive_ready(void *ctx)
{
	struct pipeline *p = ctx;

	derive_collect(p->dv);
}

struct pipeline *
pipeline_start(struct lws_context *cx, struct lws_vhost *vh,
    const struct pipeline_config *cfg, pipeline_frame_fn on_frame,
    pipeline_drain_fn on_drain, void *ctx)
{
	struct pipeline *p = calloc(1, sizeof *p);

	if (!p) {
		log_error("out of memory");
		return NULL;
	}
	signal(SIGPIPE, SIG_IGN);
	setenv(LOG_STAGE_ENV, "1", 1);   /* inherited by every stage (log.h) */
	unsetenv("NWS_CHANNEL");         /* stages open only the channels sent to them */
	p->vh = vh;
	p->cx = cx;
	p->max_frame = cfg->max_frame ? cfg->max_frame : STREAM_MAX_FRAME_DEFAULT;
	p->max_queue = cfg->max_queue ? cfg->max_queue : STREAM_MAX_QUEUE_DEFAULT;
	p->on_frame = on_frame;
	p->on_drain = on_drain;
	p->ctx = ctx;
	p->backoff_ms = BACKOFF_MIN_MS;
	p->cause_rank = -1;
	if (!(p->dv = derive_new())) {
		log_error("cannot start a thread to derive channel keys: %s", strerror(errno));
		free(p);
		return NULL;
	}
	if (loop_watch_fd(vh, derive_fd(p->dv), derive_ready, p, &p->derive_watch) < 0) {
		log_error("cannot watch the channel key thread: %s", strerror(errno));
		goto fail;
	}
	for (int i = 0; i < NSTAGES; i++)
		if (!(p->argv[i] = stage_argv(i, cfg)))
			goto fail;
	if (spawn(p) < 0) {
		for (size_t i = 0; i < MAX_KIDS; i++)
			if (p->kids[i].pid) {
				kill(p->kids[i].pid, SIGKILL);
				waitpid(p->kids[i].pid, NULL, 0);
				loop_watch_stop(&p->kids[i].exit_watch);
			}
		goto fail;
	}
	return p;
fail:
	for (int i = 0; i < NSTAGES; i++)
		argv_free(p->argv[i]);
	loop_watch_stop(&p->derive_watch);
	derive_free(p->dv);
	free(p);
	return NULL;
}

/* Channel keys */

static void
derived(void *ctx, struct derive_job *j, struct keys *k)
{
	struct pipeline *p = ctx;
	struct chan *ch = NULL;

	for (size_t i = 0; i < p->nchans && !ch; i++)
		if (p->chans[i].job == j)
			ch = &p->chans[i];
	log_info("channel keys being derived: %zu", derive_pending(p->dv));
	if (!ch) {
		keys_free(k);
		return;
	}
	ch->job = NULL;
	if (!(ch->k = k)) {
		log_error("out of memory deriving a channel key: that channel stays off the "
		    "network");
		return;
	}
	if (p->state == RUNNING && p->head && p->link_in)
		send_open(p, ch);
}

/* Updates the replayed state from a frame the caller sends. 1 when the frame must not
 * reach the head now: an open waits for its key (send_open sends it, and the peers that
 * joined meanwhile), a close of a channel the stages never saw is not for them, and
 * neither is anything else for that channel: it has no link yet. */
static int
track_local(struct pipeline *p, const struct frame *f)
{
	struct chan *ch = chan_find(p, f->channel);

	if (!f->channel)
		return 0;
	switch (f->action) {
	case ACTION_OPEN:
		if (ch)
			return ch->job != NULL;
		if (!(ch = chan_add(p, f->channel))) {
			log_error("out of memory: a channel is not opened on the network");
			return 1;
		}
		if (!(ch->job = derive_start(p->dv, f->channel, derived, p))) {
			log_error("out of memory: a channel is not opened on the network");
			chan_del(p, ch);
			return 1;
		}
		log_info("channel keys being derived: %zu", derive_pending(p->dv));
		return 1;
	case ACTION_CLOSE: {
		int unseen = !ch || ch->job;
		if (ch && ch->job) {
			derive_cancel(p->dv, ch->job);
			ch->job = NULL;
			log_info("channel keys being derived: %zu", derive_pending(p->dv));
		}
		if (ch)
			chan_del(p, ch);
		return unseen;
	}
	case ACTION_CONNECT:
		if (ch && f->target && idset_add(&ch->locals, f->target, NULL) < 0)
			log_error("out of memory: a restart will not reconnect a peer");
		break;
	case ACTION_DISCONNECT:
		if (ch && f->target)
			idset_del(&ch->locals, f->target);
		break;
	default:
		break;
	}
	return ch && ch->job;
}

/* f, or raw when f is NULL, queued on lp. */
static int
put(struct loop_pipe *lp, const struct frame *f, enum frame_format fmt,
    const unsigned char *raw, size_t len)
{
	return f ? loop_pipe_send(lp, f) : loop_pipe_send_raw(lp, fmt, raw, len);
}

/* Queues f (or raw, when f is NULL) for nws-link, and an open or close for nws-browse
 * too. Returns -1 refused, else 1 (and on_drain later) once the queues are over half
 * full, so callers stop feeding before a frame is ever refused. */
static int
send_stages(struct pipeline *p, enum frame_action a, const struct frame *f,
    enum frame_format fmt, const unsigned char *raw, size_t len)
{
	if (p->state != RUNNING || !p->head || !p->link_in)
		return 0;
	int rc = put(p->link_in, f, fmt, raw, len);
	if ((a == ACTION_OPEN || a == ACTION_CLOSE) && put(p->head, f, fmt, raw, len) < 0)
		rc = -1;
	if (rc == 0 && pipeline_pending(p) <= p->max_queue / 2)
		return 0;
	p->congested = 1;
	return rc < 0 ? -1 : 1;
}

int
pipeline_send(struct pipeline *p, const struct frame *f)
{
	if (track_local(p, f))
		return 0;
	return send_stages(p, f->action, f, FORMAT_CBOR, NULL, 0);
}

int
pipeline_send_raw(struct pipeline *p, enum frame_format fmt, const unsigned char *raw,
    size_t len)
{
	enum frame_action a = frame_peek_action(fmt, raw, len);

	/* Decoded only when it may change the state, or be for a channel still deriving. */
	if (a == ACTION_OPEN || a == ACTION_CLOSE || a == ACTION_CONNECT ||
	    a == ACTION_DISCONNECT || derive_pending(p->dv)) {
		struct frame f;
		char err[128];
		if (frame_decode(&f, fmt, raw, len, err, sizeof err) == 0) {
			int hold = track_local(p, &f);
			frame_clear(&f);
			if (hold)
				return 0;
		}
	}
	return send_stages(p, a, NULL, fmt, raw, len);
}

size_t
pipeline_deriving(const struct pipeline *p, const char **names, size_t max)
{
	size_t n = 0;

	for (size_t i = 0; i < p->nchans; i++)
		if (p->chans[i].job && n++ < max)
			names[n - 1] = p->chans[i].name;
	return n;
}

size_t
pipeline_pending(const struct pipeline *p)
{
	return (p->head ? loop_pipe_pending(p->head) : 0) +
	    (p->link_in ? loop_pipe_pending(p->link_in) : 0);
}

void
pipeline_pause(struct pipeline *p, int pause)
{
	p->paused = !!pause;
	if (p->tail)
		loop_pipe_pause(p->tail, p->paused);
	if (p->link_out)
		loop_pipe_pause(p->link_out, p->paused);
}

int
pipeline_up(const struct pipeline *p)
{
	return p->state == RUNNING && p->head && p->tail && p->link_in && p->link_out;
}

void
pipeline_stop(struct pipeline *p, pipeline_done_fn done, void *ctx)
{
	p->done = done;
	p->done_ctx = ctx;
	p->state = STOPPING;
	p->congested = 0;
	lws_sul_cancel(&p->sul_restart);
	close_pipes(p, 0);
	for (size_t i = 0; i < MAX_KIDS; i++)
		if (p->kids[i].pid && p->kids[i].gen == p->gen && !p->kids[i].termed)
			p->kids[i].deadline = now_ms() + STOP_WAIT_MS;
	check_soon(p);
}
