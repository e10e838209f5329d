#include "aloop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <avahi-common/simple-watch.h>

#include "log.h"
#include "loop.h"
#include "nws.h"
#include "stream.h"

struct aloop {
	AvahiSimplePoll *sp;
	int code;
	int sigfd;
	aloop_signal_fn on_signal;
	void *signal_ctx;
};

struct aloop *
aloop_new(void)
{
	struct aloop *al = calloc(1, sizeof *al);

	if (!al)
		return NULL;
	al->sigfd = -1;
	if (!(al->sp = avahi_simple_poll_new())) {
		free(al);
		return NULL;
	}
	return al;
}

void
aloop_free(struct aloop *al)
{
	if (!al)
		return;
	avahi_simple_poll_free(al->sp);   /* frees every watch and timeout */
	if (al->sigfd >= 0)
		close(al->sigfd);
	free(al);
}

const AvahiPoll *
aloop_poll(struct aloop *al)
{
	return avahi_simple_poll_get(al->sp);
}

int
aloop_run(struct aloop *al)
{
	while (avahi_simple_poll_iterate(al->sp, -1) == 0)
		;
	return al->code;
}

void
aloop_quit(struct aloop *al, int code)
{
	al->code = code;
	avahi_simple_poll_quit(al->sp);
}

static void
signals_ready(AvahiWatch *w, int fd, AvahiWatchEvent ev, void *arg)
{
	struct aloop *al = arg;
	struct signalfd_siginfo si;

	(void)w;
	(void)ev;
	while (read(fd, &si, sizeof si) == (ssize_t)sizeof si)
		al->on_signal(al->signal_ctx, (int)si.ssi_signo);
}

int
aloop_signals(struct aloop *al, const int *sigs, aloop_signal_fn fn, void *ctx)
{
	const AvahiPoll *api = aloop_poll(al);

	al->on_signal = fn;
	al->signal_ctx = ctx;
	if ((al->sigfd = loop_signalfd(sigs)) < 0)
		return -1;
	if (!api->watch_new(api, al->sigfd, AVAHI_WATCH_IN, signals_ready, al)) {
		errno = ENOMEM;
		return -1;
	}
	return 0;
}

static void
derive_ready(AvahiWatch *w, int fd, AvahiWatchEvent ev, void *ctx)
{
	(void)w;
	(void)fd;
	(void)ev;
	derive_collect(ctx);
}

struct derive *
aloop_derive_new(struct aloop *al)
{
	const AvahiPoll *api = aloop_poll(al);
	struct derive *dv = derive_new();

	if (dv && !api->watch_new(api, derive_fd(dv), AVAHI_WATCH_IN, derive_ready, dv)) {
		derive_free(dv);
		errno = ENOMEM;
		return NULL;
	}
	return dv;
}

struct aloop_pipe {
	struct aloop *al;
	struct stream_reader r;
	struct stream_writer w;
	size_t max_queue;
	AvahiWatch *in_watch, *out_watch;
	AvahiWatchEvent in_ev, out_ev;   /* what each watch is set to */
	aloop_frame_fn on_frame;
	void (*on_eof)(void *ctx);
	void *ctx;
};

/* Pipes and sockets become non-blocking; a terminal or file is left as it is, since its
 * file description may be shared with the shell, and one read or write on it is short. */
static void
nonblock_if_pipe(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
}

static void
io_update(struct aloop_pipe *io)
{
	const AvahiPoll *api = aloop_poll(io->al);
	size_t pending = stream_writer_pending(&io->w);

	AvahiWatchEvent in = pending > io->max_queue / 2 ? 0 : AVAHI_WATCH_IN;
	AvahiWatchEvent out = pending ? AVAHI_WATCH_OUT : 0;

	/* Only changes: AvahiSimplePoll wakes its own poll (a write to its wake-up pipe, a
	 * read and one more turn) at each update, which was three syscalls per frame
	 * passed on, in each pass-through stage. */
	if (io->in_watch && in != io->in_ev)
		api->watch_update(io->in_watch, in);
	if (out != io->out_ev)
		api->watch_update(io->out_watch, out);
	io->in_ev = in;
	io->out_ev = out;
}

static void
io_flush(struct aloop_pipe *io)
{
	if (stream_writer_flush(&io->w) < 0) {
		log_debug("output closed: %s", strerror(errno));
		aloop_quit(io->al, NWS_EXIT_FAIL);
	}
	io_update(io);
}

static void
io_in_cb(AvahiWatch *w, int fd, AvahiWatchEvent ev, void *arg)
{
	struct aloop_pipe *io = arg;
	const unsigned char *raw;
	size_t len;
	char err[160];
	int rc;

	(void)w;
	(void)fd;
	(void)ev;
	ssize_t n = stream_reader_fill(&io->r);
	if (n < 0 && errno == EAGAIN)
		return;
	if (n < 0)
		log_error("cannot read input: %s", strerror(errno));
	while ((rc = stream_reader_next(&io->r, &raw, &len, err, sizeof err)) != 0) {
		if (rc < 0) {
			if (log_once_per_burst("bad-frame"))
				log_error("%s", err);
			continue;
		}
		io->on_frame(io->ctx, io->r.fmt, raw, len);
	}
	if (n <= 0 || io->r.broken) {
		aloop_poll(io->al)->watch_free(io->in_watch);
		io->in_watch = NULL;
		if (io->on_eof)
			io->on_eof(io->ctx);
	}
	io_flush(io);
}

static void
io_out_cb(AvahiWatch *w, int fd, AvahiWatchEvent ev, void *arg)
{
	struct aloop_pipe *io = arg;

	(void)w;
	(void)fd;
	/* poll(2) reports a pipe whose reader went away even when nothing is asked of it,
	 * and would report it at once forever: with nothing queued no write would fail,
	 * and the loop would spin. The output is gone, as when a write fails. */
	if ((ev & (AVAHI_WATCH_ERR | AVAHI_WATCH_HUP)) && !(ev & AVAHI_WATCH_OUT)) {
		log_debug("output closed");
		aloop_quit(io->al, NWS_EXIT_FAIL);
		return;
	}
	io_flush(io);
}

struct aloop_pipe *
aloop_pipe_new(struct aloop *al, int in, int out, enum frame_format out_fmt, size_t max_frame,
    aloop_frame_fn on_frame, void (*on_eof)(void *ctx), void *ctx)
{
	const AvahiPoll *api = aloop_poll(al);
	struct aloop_pipe *io;

	if (!(io = calloc(1, sizeof *io)))
		return NULL;
	io->al = al;
	/* Room for the largest frame we accept, twice, so a pass-through never drops one. */
	io->max_queue = STREAM_MAX_QUEUE_DEFAULT + 2 * max_frame;
	io->on_frame = on_frame;
	io->on_eof = on_eof;
	io->ctx = ctx;
	stream_reader_init(&io->r, in, max_frame);
	stream_writer_init(&io->w, out, out_fmt, io->max_queue);
	nonblock_if_pipe(in);
	nonblock_if_pipe(out);
	io->in_watch = api->watch_new(api, in, io->in_ev = AVAHI_WATCH_IN, io_in_cb, io);
	io->out_watch = api->watch_new(api, out, io->out_ev = 0, io_out_cb, io);
	if (!io->in_watch || !io->out_watch) {
		aloop_pipe_close(io);
		return NULL;
	}
	return io;
}

/* Output is flushed from the loop's next turn only when a write would block; a frame
 * the tool makes (found, advertised) is written at once. */
static int
io_queued(struct aloop_pipe *io, int rc)
{
	if (rc < 0 && log_once_per_burst("out-full"))
		log_error("output is not being read: dropping frames");
	io_flush(io);
	return rc < 0 ? -1 : 0;
}

void
aloop_pipe_flush(struct aloop_pipe *io)
{
	io_flush(io);
}

int
aloop_pipe_send(struct aloop_pipe *io, const struct frame *f)
{
	return io_queued(io, stream_writer_frame(&io->w, f));
}

int
aloop_pipe_pass(struct aloop_pipe *io, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	/* Passed frames are flushed once per read burst by io_in_cb, not one by one. */
	int rc = stream_writer_raw(&io->w, fmt, raw, len);
	if (rc < 0 && log_once_per_burst("out-full"))
		log_error("output is not being read: dropping frames");
	return rc;
}

int
aloop_pipe_text(struct aloop_pipe *io, const char *s)
{
	return io_queued(io, buf_append_str(&io->w.out, s));
}

void
aloop_pipe_close(struct aloop_pipe *io)
{
	const AvahiPoll *api;

	if (!io)
		return;
	api = aloop_poll(io->al);
	stream_writer_drain(&io->w);
	if (io->in_watch)
		api->watch_free(io->in_watch);
	if (io->out_watch)
		api->watch_free(io->out_watch);
	stream_reader_free(&io->r);
	stream_writer_free(&io->w);
	free(io);
}
