/* loop: framed pipes and watched fds on the libwebsockets event loop. nws-link, nws-pipe
 * and nws-proxy adopt their stdin/stdout (or a spawned pipeline's ends) as raw file
 * descriptors with this module, and watch derive's result pipe, the pipeline's child
 * pidfds and a signalfd with it, so frames, network events, derived keys, children and
 * signals share one poll loop and no polling timer.
 *
 * The libwebsockets 4.1 workarounds live in loop.c, and only there:
 * - lws clears POLLOUT of a raw file after its writeable callback returns, so a short
 *   write asks again from a timer due at once (pipe_more).
 * - A write-only fd whose reader went away polls POLLERR, which lws does not act on:
 *   an idle one is checked once a second (LOOP_ERR_CHECK_US).
 * - What a pass of the loop queued is written as the next pass begins, from a timer due
 *   at once, not after a POLLOUT round an empty pipe would answer at once (pipe_flush_due).
 * - A read fd at its end may report POLLHUP while paused with data left: that data is
 *   read before the close (pipe_drain_input).
 * - lws closes what it adopts, so a watched fd is a duplicate of the caller's.
 * - Destroying the context calls on_close from inside lws_context_destroy, and a close
 *   from a timer leaves lws polling with nothing due: the last pipe to go wakes
 *   lws_service, and tools wait for loop_pipes_open() to reach 0 first. */
#ifndef NWS_LOOP_H
#define NWS_LOOP_H

#include <stddef.h>
#include <libwebsockets.h>

#include "frame.h"
#include "stream.h"

struct loop_pipe;

/* A whole frame arrived: raw/len in format fmt, valid during the call only. */
typedef void (*loop_frame_fn)(void *ctx, struct loop_pipe *p, enum frame_format fmt,
    const unsigned char *raw, size_t len);
/* The read side reached end of file or an error, or the write side's reader went away
 * (EPIPE), or loop_pipe_close was called. Called once; p must not be used after it
 * returns. Frames sent during the call are still written before the fds close. */
typedef void (*loop_close_fn)(void *ctx, struct loop_pipe *p);

/* The protocol that must be in the protocol list of any vhost pipes are adopted into. */
extern const struct lws_protocols loop_protocol;

/* Adopts rfd (read, may be -1) and wfd (write, may be -1, may equal rfd) into vh. Frames
 * written go out in out_fmt; input format is detected. Both fds are made non-blocking. */
struct loop_pipe *loop_pipe_adopt(struct lws_vhost *vh, int rfd, int wfd,
    enum frame_format out_fmt, size_t max_frame, size_t max_queue,
    loop_frame_fn on_frame, loop_close_fn on_close, void *ctx);
/* Queue a frame; -1 when the write queue bound would be passed (caller decides). */
int loop_pipe_send(struct loop_pipe *p, const struct frame *f);
/* Queue an encoded frame read in fmt (copied when fmt is the pipe's format). */
int loop_pipe_send_raw(struct loop_pipe *p, enum frame_format fmt,
    const unsigned char *raw, size_t len);
size_t loop_pipe_pending(const struct loop_pipe *p);
/* Called after a write leaves at most `below` bytes queued, for a writer that paused
 * something when the queue grew (fn NULL: none). */
typedef void (*loop_drain_fn)(void *ctx, struct loop_pipe *p);
void loop_pipe_on_drain(struct loop_pipe *p, size_t below, loop_drain_fn fn, void *ctx);
/* Stops (1) or resumes (0) reading, for backpressure. Input that ends while paused is
 * still read to its end before on_close. */
void loop_pipe_pause(struct loop_pipe *p, int pause);
/* Reads what the read fd holds now and hands its frames over, as the loop would when
 * it finds the fd readable: for a reader of two inputs that must take what one of them
 * sent before what came on the other (unless paused or closed). */
void loop_pipe_read_now(struct loop_pipe *p);
/* Stops reading; closes the fds once the write queue is flushed. on_close is called
 * (from inside this call). */
void loop_pipe_close(struct loop_pipe *p);
/* Pipes whose fds are still open, including closed ones still flushing their queue: a
 * tool that is stopping runs lws_service until this is 0, then destroys the context
 * (destroying it earlier calls on_close from inside lws_context_destroy). The last pipe
 * to go wakes lws_service, so that wait never sleeps past it. */
size_t loop_pipes_open(void);

/* A file descriptor the loop watches for reading, such as derive_fd: fn runs on the loop's
 * thread each time the fd is readable and must read what made it so. The fd stays the
 * caller's (lws watches a duplicate of it). *w is the watch until it ends (then NULL):
 * with the context, or at loop_watch_stop, after which fn is never called again.
 * 0, or -1 when the fd cannot be watched. */
struct loop_watch;
typedef void (*loop_watch_fn)(void *ctx);
int loop_watch_fd(struct lws_vhost *vh, int fd, loop_watch_fn fn, void *ctx,
    struct loop_watch **w);
void loop_watch_stop(struct loop_watch **w);

/* Signals as loop events: the signals in sigs (0-terminated) are blocked and read from a
 * signalfd the loop watches, so fn runs on the loop's thread, never in a handler.
 * SIGPIPE is ignored (a write to a gone reader fails with EPIPE). Call it before any
 * thread starts, as a thread with them unblocked would take them (pipeline gives its
 * stages the default mask back). 0, or -1 with errno. */
typedef void (*loop_signal_fn)(void *ctx, int signo);
/* The blocking and the signalfd behind loop_signals, for aloop's twin: a non-blocking fd
 * to read struct signalfd_siginfo from, or -1. */
int loop_signalfd(const int *sigs);
int loop_signals(struct lws_vhost *vh, const int *sigs, loop_signal_fn fn, void *ctx);

#endif
