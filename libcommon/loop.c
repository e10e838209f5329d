#include "loop.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "log.h"

/* A pipe is one or two lws wsi: the read fd and, when it is a different fd, the write
 * fd. It is freed when the last of them has closed. */
struct loop_pipe {
	struct lws *rwsi, *wwsi;
	struct lws_context *ctx;
	struct stream_reader r;
	struct stream_writer w;
	loop_frame_fn on_frame;
	loop_close_fn on_close;
	void *ctx_user;
	int closing;       /* no more reading; the fds close once the queue is flushed */
	int notified;      /* on_close was called */
	int dead;          /* the write side failed: nothing more is written */
	int paused;
	int pollout;       /* POLLOUT is asked for: the writeable callback will flush */
	loop_drain_fn on_drain;
	void *drain_ctx;
	size_t drain_below;
	lws_sorted_usec_list_t sul;     /* watches a write-only fd whose reader may be gone */
	lws_sorted_usec_list_t rearm;   /* asks for POLLOUT again after a short write */
	lws_sorted_usec_list_t flush;   /* writes what this pass of the loop queued */
	lws_sorted_usec_list_t resume;  /* goes on with buffered frames after a pause */
};

static size_t npipes;   /* pipes not freed yet: loop_pipes_open */

/* How often an idle write-only fd is checked for a reader that went away: poll(2) reports
 * that as POLLERR even when nothing is asked for, which lws does not act on. */
#define LOOP_ERR_CHECK_US (1000 * LWS_US_PER_MS)

static void
pipe_notify(struct loop_pipe *p)
{
	if (p->notified)
		return;
	p->notified = 1;
	p->on_close(p->ctx_user, p);
}

/* Outside the writeable callback only: lws drops a request made from inside it. */
static void
pipe_want_pollout(struct loop_pipe *p)
{
	p->pollout = 1;
	lws_callback_on_writable(p->wwsi);
}

static void
pipe_kill(struct lws *wsi)
{
	if (wsi)
		lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
}

/* Ends the pipe: the read wsi goes at once, the write wsi once its queue is empty (or at
 * once when writing failed). */
static void
pipe_finish(struct loop_pipe *p)
{
	p->closing = 1;
	if (p->rwsi && p->rwsi != p->wwsi)
		pipe_kill(p->rwsi);
	else if (p->rwsi)
		lws_rx_flow_control(p->rwsi, 0);   /* a read fd at its end stays readable */
	if (!p->wwsi)
		return;
	if (p->dead || stream_writer_pending(&p->w) == 0)
		pipe_kill(p->wwsi);
	else
		pipe_want_pollout(p);
}

static void
pipe_err_check(lws_sorted_usec_list_t *sul)
{
	struct loop_pipe *p = lws_container_of(sul, struct loop_pipe, sul);
	struct pollfd pfd = { .fd = p->w.fd, .events = 0 };

	if (!p->wwsi || p->dead)
		return;
	if (poll(&pfd, 1, 0) == 1 && (pfd.revents & (POLLERR | POLLHUP | POLLNVAL))) {
		p->dead = 1;
		pipe_notify(p);
		pipe_finish(p);
		return;
	}
	lws_sul_schedule(p->ctx, 0, &p->sul, pipe_err_check, LOOP_ERR_CHECK_US);
}

/* Hands every whole frame in the buffer to on_frame, until paused or closed. */
static void
pipe_frames(struct loop_pipe *p)
{
	const unsigned char *raw;
	size_t len;
	char err[160];

	while (!p->closing && !p->paused) {
		int rc = stream_reader_next(&p->r, &raw, &len, err, sizeof err);
		if (rc == 0)
			break;
		if (rc < 0) {
			if (log_once_per_burst("loop: bad frame"))
				log_error("skipping a frame that does not decode: %s", err);
			if (p->r.broken)
				break;
			continue;
		}
		p->on_frame(p->ctx_user, p, p->r.fmt, raw, len);
	}
}

/* The end of input (or a CBOR stream that lost sync). */
static void
pipe_ended(struct loop_pipe *p)
{
	if (p->r.broken && !p->closing)
		log_error("input is not a CBOR sequence any more; stopping reading it");
	if (!p->notified)
		pipe_notify(p);
	pipe_finish(p);
}

/* One read: 1 when it got data and there may be more. */
static int
pipe_read(struct loop_pipe *p)
{
	ssize_t n = stream_reader_fill(&p->r);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	if (n < 0)
		log_error("cannot read input: %s", strerror(errno));
	pipe_frames(p);
	if ((n > 0 && !p->r.broken) || p->paused)
		return n > 0;
	pipe_ended(p);
	return 0;
}

void
loop_pipe_read_now(struct loop_pipe *p)
{
	/* Bounded: a writer as fast as us must not keep us here. */
	for (int i = 0; i < 64 && p->rwsi && !p->closing && !p->paused; i++)
		if (!pipe_read(p))
			break;
}

/* Input that ended while paused: read what is left (bounded by what the pipe holds). */
static void
pipe_drain_input(struct loop_pipe *p)
{
	p->paused = 0;
	for (int i = 0; i < 4096 && !p->closing; i++) {
		ssize_t n = stream_reader_fill(&p->r);
		pipe_frames(p);
		if (n <= 0 || p->r.broken)
			break;
	}
}

static void
pipe_resume(lws_sorted_usec_list_t *sul)
{
	struct loop_pipe *p = lws_container_of(sul, struct loop_pipe, resume);

	if (p->paused || p->closing || !p->rwsi)
		return;
	pipe_frames(p);
	if (p->r.eof || p->r.broken) {
		pipe_ended(p);
		return;
	}
	if (!p->paused)
		lws_rx_flow_control(p->rwsi, 1);
}

static void
pipe_rearm(lws_sorted_usec_list_t *sul)
{
	struct loop_pipe *p = lws_container_of(sul, struct loop_pipe, rearm);

	if (p->wwsi && !p->dead)
		pipe_want_pollout(p);
}

/* lws 4.1 clears POLLOUT of a raw file after its writeable callback returns, so asking
 * again from inside the callback is lost: ask from a timer that is due at once. */
static void
pipe_more(struct loop_pipe *p)
{
	lws_sul_schedule(p->ctx, 0, &p->rearm, pipe_rearm, 0);
}

/* Writes what is queued: 1 when all of it went, 0 when the fd is full, -1 when writing
 * failed (the pipe is finished then). */
static int
pipe_flush(struct loop_pipe *p)
{
	if (p->dead)
		return -1;
	int rc = stream_writer_flush(&p->w);
	if (rc < 0) {
		if (errno != EPIPE)
			log_error("cannot write output: %s", strerror(errno));
		p->dead = 1;
		pipe_notify(p);
		pipe_finish(p);
		return -1;
	}
	if (p->on_drain && stream_writer_pending(&p->w) <= p->drain_below)
		p->on_drain(p->drain_ctx, p);
	return rc;
}

/* The writeable callback: returning -1 closes the fd. */
static int
pipe_write(struct loop_pipe *p)
{
	p->pollout = 0;
	int rc = pipe_flush(p);
	if (rc < 0)
		return -1;
	if (rc == 0) {
		pipe_more(p);
		return 0;
	}
	return p->closing ? -1 : 0;
}

/* Due at once, so run as the next lws_service begins, before it polls: every frame queued
 * in the last pass goes out in one write, without a poll round for POLLOUT, which an
 * empty pipe or socket would report anyway. Only a full fd waits for POLLOUT. */
static void
pipe_flush_due(lws_sorted_usec_list_t *sul)
{
	struct loop_pipe *p = lws_container_of(sul, struct loop_pipe, flush);

	if (!p->wwsi || p->dead || p->pollout)
		return;
	int rc = pipe_flush(p);
	if (rc == 0)
		pipe_want_pollout(p);
	else if (rc > 0 && p->closing)
		pipe_kill(p->wwsi);
}

struct loop_watch {
	loop_watch_fn fn;        /* NULL once stopped */
	void *ctx;
	struct lws *wsi;
	struct loop_watch **handle;   /* the owner's pointer, cleared when the watch ends */
	struct loop_watch *next;
};

static struct loop_watch *watches;   /* live watches: their wsi share loop_protocol */

/* The watch whose wsi this is, given its opaque pointer; NULL for a pipe's wsi. */
static struct loop_watch *
watch_of(void *opaque)
{
	for (struct loop_watch *w = watches; w; w = w->next)
		if (w == opaque)
			return w;
	return NULL;
}

static int
watch_callback(struct loop_watch *w, struct lws *wsi, enum lws_callback_reasons reason)
{
	if (reason == LWS_CALLBACK_RAW_RX_FILE && w->fn)
		w->fn(w->ctx);
	if (reason != LWS_CALLBACK_RAW_CLOSE_FILE)
		return 0;
	lws_set_opaque_user_data(wsi, NULL);
	for (struct loop_watch **pp = &watches; *pp; pp = &(*pp)->next)
		if (*pp == w) {
			*pp = w->next;
			break;
		}
	if (w->handle)
		*w->handle = NULL;
	free(w);
	return 0;
}

static int
loop_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct loop_pipe *p = lws_get_opaque_user_data(wsi);
	struct loop_watch *w = watch_of(p);

	(void)user;
	(void)in;
	(void)len;
	if (w)
		return watch_callback(w, wsi, reason);
	if (!p)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (wsi == p->rwsi && !p->closing)
			pipe_read(p);
		return 0;
	case LWS_CALLBACK_RAW_WRITEABLE_FILE:
		if (wsi == p->wwsi)
			return pipe_write(p);
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		lws_set_opaque_user_data(wsi, NULL);
		if (wsi == p->rwsi) {
			/* POLLHUP with nothing left to read, or, when paused, maybe with some: the
			 * fd is still open here, so what is left is read now. */
			if (p->paused && !p->closing)
				pipe_drain_input(p);
			p->rwsi = NULL;
			lws_sul_cancel(&p->resume);
			if (!p->notified)
				pipe_notify(p);
			if (!p->closing)
				pipe_finish(p);
		}
		if (wsi == p->wwsi) {
			p->wwsi = NULL;
			p->dead = 1;
			lws_sul_cancel(&p->sul);
			lws_sul_cancel(&p->rearm);
			lws_sul_cancel(&p->flush);
			if (!p->notified)
				pipe_notify(p);
			if (!p->closing)
				pipe_finish(p);
		}
		if (!p->rwsi && !p->wwsi) {
			stream_reader_free(&p->r);
			stream_writer_free(&p->w);
			free(p);
			/* A stopping tool waits in lws_service for this count to reach 0; the close
			 * may come from a timer, after which lws would poll with nothing due. */
			if (--npipes == 0)
				lws_cancel_service(lws_get_context(wsi));
		}
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols loop_protocol = {
	.name = "nws-loop-pipe",
	.callback = loop_callback,
};

/* fd into vh under loop_protocol, with opaque (a pipe or a watch) as its user data. */
static struct lws *
pipe_adopt_fd(struct lws_vhost *vh, int fd, void *opaque)
{
	lws_adopt_desc_t info;

	memset(&info, 0, sizeof info);
	info.vh = vh;
	info.type = LWS_ADOPT_RAW_FILE_DESC;
	info.fd.filefd = fd;
	info.vh_prot_name = loop_protocol.name;
	info.opaque = opaque;
	return lws_adopt_descriptor_vhost_via_info(&info);
}

struct loop_pipe *
loop_pipe_adopt(struct lws_vhost *vh, int rfd, int wfd, enum frame_format out_fmt,
    size_t max_frame, size_t max_queue, loop_frame_fn on_frame, loop_close_fn on_close,
    void *ctx)
{
	struct loop_pipe *p = calloc(1, sizeof *p);

	if (!p)
		return NULL;
	p->on_frame = on_frame;
	p->on_close = on_close;
	p->ctx_user = ctx;
	stream_reader_init(&p->r, rfd, max_frame ? max_frame : STREAM_MAX_FRAME_DEFAULT);
	stream_writer_init(&p->w, wfd, out_fmt, max_queue ? max_queue : STREAM_MAX_QUEUE_DEFAULT);
	/* Counted before adopting: lws calls back into this pipe from inside the adoption. */
	npipes++;
	if (rfd >= 0 && !(p->rwsi = pipe_adopt_fd(vh, rfd, p)))
		goto fail;
	if (p->rwsi)
		p->ctx = lws_get_context(p->rwsi);
	if (wfd >= 0 && wfd == rfd)
		p->wwsi = p->rwsi;
	else if (wfd >= 0) {
		if (!(p->wwsi = pipe_adopt_fd(vh, wfd, p)))
			goto fail;
		p->ctx = lws_get_context(p->wwsi);
		/* A write-only fd is never read: a terminal would report POLLIN forever. */
		lws_rx_flow_control(p->wwsi, 0);
		lws_sul_schedule(p->ctx, 0, &p->sul, pipe_err_check, LOOP_ERR_CHECK_US);
	}
	return p;
fail:
	log_error("cannot watch a file descriptor on the event loop (out of memory?)");
	p->notified = 1;
	if (p->rwsi || p->wwsi) {
		/* Freed by the close callback of what was adopted. */
		p->dead = 1;
		pipe_finish(p);
		return NULL;
	}
	npipes--;
	stream_reader_free(&p->r);
	stream_writer_free(&p->w);
	free(p);
	return NULL;
}

static int
pipe_queued(struct loop_pipe *p, int rc)
{
	if (rc == 0 && p->wwsi && !p->pollout)
		lws_sul_schedule(p->ctx, 0, &p->flush, pipe_flush_due, 0);
	return rc;
}

int
loop_pipe_send(struct loop_pipe *p, const struct frame *f)
{
	if (p->dead || !p->wwsi)
		return -1;
	return pipe_queued(p, stream_writer_frame(&p->w, f));
}

int
loop_pipe_send_raw(struct loop_pipe *p, enum frame_format fmt, const unsigned char *raw,
    size_t len)
{
	if (p->dead || !p->wwsi)
		return -1;
	return pipe_queued(p, stream_writer_raw(&p->w, fmt, raw, len));
}

size_t
loop_pipe_pending(const struct loop_pipe *p)
{
	return stream_writer_pending(&p->w);
}

void
loop_pipe_close(struct loop_pipe *p)
{
	if (p->closing)
		return;
	p->closing = 1;
	pipe_notify(p);
	pipe_finish(p);
}

void
loop_pipe_on_drain(struct loop_pipe *p, size_t below, loop_drain_fn fn, void *ctx)
{
	p->on_drain = fn;
	p->drain_below = below;
	p->drain_ctx = ctx;
}

void
loop_pipe_pause(struct loop_pipe *p, int pause)
{
	if (!p->rwsi || p->closing || p->paused == !!pause)
		return;
	p->paused = !!pause;
	if (pause)
		lws_rx_flow_control(p->rwsi, 0);
	else
		lws_sul_schedule(p->ctx, 0, &p->resume, pipe_resume, 0);
}

size_t
loop_pipes_open(void)
{
	return npipes;
}

int
loop_watch_fd(struct lws_vhost *vh, int fd, loop_watch_fn fn, void *ctx,
    struct loop_watch **handle)
{
	struct loop_watch *w = calloc(1, sizeof *w);
	int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	*handle = NULL;
	if (!w || dup < 0) {
		free(w);
		if (dup >= 0)
			close(dup);
		return -1;
	}
	w->fn = fn;
	w->ctx = ctx;
	w->next = watches;
	watches = w;
	if (!(w->wsi = pipe_adopt_fd(vh, dup, w))) {
		watches = w->next;
		free(w);
		close(dup);
		return -1;
	}
	w->handle = handle;
	*handle = w;
	return 0;
}

void
loop_watch_stop(struct loop_watch **handle)
{
	struct loop_watch *w = *handle;

	if (!w)
		return;
	*handle = NULL;
	w->handle = NULL;
	w->fn = NULL;
	pipe_kill(w->wsi);
}

static struct {
	int fd;
	loop_signal_fn fn;
	void *ctx;
	struct loop_watch *watch;
} sigs_in;

static void
signals_ready(void *ctx)
{
	struct signalfd_siginfo si;

	(void)ctx;
	while (read(sigs_in.fd, &si, sizeof si) == (ssize_t)sizeof si)
		sigs_in.fn(sigs_in.ctx, (int)si.ssi_signo);
}

int
loop_signalfd(const int *sigs)
{
	sigset_t set;

	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	for (const int *s = sigs; *s; s++)
		sigaddset(&set, *s);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -1;
	return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int
loop_signals(struct lws_vhost *vh, const int *sigs, loop_signal_fn fn, void *ctx)
{
	sigs_in.fn = fn;
	sigs_in.ctx = ctx;
	if ((sigs_in.fd = loop_signalfd(sigs)) < 0)
		return -1;
	return loop_watch_fd(vh, sigs_in.fd, signals_ready, NULL, &sigs_in.watch);
}
