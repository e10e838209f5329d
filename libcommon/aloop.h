/* aloop: the event loop of nws-browse and nws-advertise, avahi's simple poll, doing for
 * them what loop.c does for the libwebsockets tools, under the same names: framed pipes
 * (aloop_pipe_*), signals as loop events (aloop_signals), the derive worker's results
 * (aloop_derive_new), run and quit. avahi-client (dnssd) and the tools' timers run on
 * the AvahiPoll it gives. */
#ifndef NWS_ALOOP_H
#define NWS_ALOOP_H

#include <stddef.h>

#include <avahi-common/watch.h>

#include "derive.h"
#include "frame.h"

struct aloop;

/* NULL on out of memory. */
struct aloop *aloop_new(void);
/* After everything that watches on it (dnssd_free, aloop_pipe_close) is gone. */
void aloop_free(struct aloop *al);
/* The poll API, for avahi-client, more watches and timeouts. */
const AvahiPoll *aloop_poll(struct aloop *al);
/* Runs the loop until aloop_quit; returns its code. */
int aloop_run(struct aloop *al);
void aloop_quit(struct aloop *al, int code);

/* As loop_signals: sigs (0-terminated) are blocked and read from a signalfd the loop
 * watches, so fn runs on the loop's thread; SIGPIPE is ignored. Call it before any
 * thread starts. 0, or -1 with errno. */
typedef void (*aloop_signal_fn)(void *ctx, int signo);
int aloop_signals(struct aloop *al, const int *sigs, aloop_signal_fn fn, void *ctx);

/* A key-derivation worker whose results are collected on this loop (derive.h). NULL,
 * with errno, when it cannot be started. The caller frees it with derive_free. */
struct derive *aloop_derive_new(struct aloop *al);

/* The tool's frame pipes on the loop: every whole frame read from in goes to on_frame
 * (raw, in the format it came in), on_eof once at end of input; frames queued for out are
 * flushed as out takes them. Reading pauses while more than half of the output bound
 * waits, so a slow reader slows the writer instead of growing memory. A reader of out
 * that went away ends the loop with NWS_EXIT_FAIL. */
struct aloop_pipe;
typedef void (*aloop_frame_fn)(void *ctx, enum frame_format fmt, const unsigned char *raw,
    size_t len);
struct aloop_pipe *aloop_pipe_new(struct aloop *al, int in, int out,
    enum frame_format out_fmt, size_t max_frame, aloop_frame_fn on_frame,
    void (*on_eof)(void *ctx), void *ctx);
/* Queue a frame, a frame read in fmt (copied as is when the formats agree), or text
 * (--format text lines). -1 when the output bound would be passed: the frame is dropped. */
int aloop_pipe_send(struct aloop_pipe *io, const struct frame *f);
int aloop_pipe_pass(struct aloop_pipe *io, enum frame_format fmt, const unsigned char *raw,
    size_t len);
int aloop_pipe_text(struct aloop_pipe *io, const char *s);
/* Writes what out takes now, e.g. before something slow (deriving a channel key). */
void aloop_pipe_flush(struct aloop_pipe *io);
/* Writes out everything queued, blocking (at exit), and frees io. */
void aloop_pipe_close(struct aloop_pipe *io);

#endif
