/* pipeline: runs `nws-browse --cbor | nws-link --cbor | nws-advertise --cbor` for a caller
 * on the libwebsockets loop (nws-pipe, nws-proxy). The caller sends frames into it and
 * gets every frame out of it; inside, the peers' frames go to and come from nws-link on
 * its --data-fds, past the two stages that would only pass them on, and open and close
 * also go to nws-browse at the head (spawn in pipeline.c). The module keeps the state the
 * caller sent (open channels, the connect of each local peer), so when a stage dies it
 * says so on stderr, ends the rest, starts a new pipeline (with backoff if it dies again
 * soon) and replays that state: local peers stay connected, remote peers come back.
 * Remote peers the dead pipeline had announced get a disconnect from the module first, so
 * callers see disconnect then connect, never a peer that silently went away.
 *
 * Stages are found in NWS_LIBEXEC if set, else beside the running program, else on PATH.
 * Their stderr is the caller's stderr; no other fd of the caller leaks into them. They
 * run with LOG_STAGE_ENV set: the caller tells the user once that avahi-daemon is down.
 * The caller's vhost must list loop_protocol (loop.h). SIGPIPE is ignored from
 * pipeline_start on (writes to a dead stage must fail with EPIPE, not kill the caller). */
#ifndef NWS_PIPELINE_H
#define NWS_PIPELINE_H

#include <stddef.h>
#include <libwebsockets.h>

#include "frame.h"

struct pipeline;

struct pipeline_config {
	const char *domain;             /* -d DOMAIN for browse and advertise; NULL: default */
	int verbose;                    /* this many -v for every stage */
	size_t max_frame;               /* --max-frame for every stage; 0: default (16 MiB) */
	size_t max_queue;               /* bound of the stages' write queues; 0: 8 MiB */
	const char *listen;             /* --listen for nws-link; NULL: its default */
	const char *tsig_key;           /* --tsig-key for nws-advertise (with -d); or NULL */
	const char *dns_server;         /* --dns-server for nws-advertise (with -d); or NULL */
};

/* What is wrong with cfg as a user gave it (a line for opts_usage), or NULL. */
const char *pipeline_config_problem(const struct pipeline_config *cfg);

/* A frame from the tail, in format fmt (CBOR in practice), valid during the call only. */
typedef void (*pipeline_frame_fn)(void *ctx, enum frame_format fmt,
    const unsigned char *raw, size_t len);
/* pipeline_send returned 1 or -1 before: the queues are at most half full again. */
typedef void (*pipeline_drain_fn)(void *ctx);
/* pipeline_stop finished: every stage is reaped and the pipeline is freed. */
typedef void (*pipeline_done_fn)(void *ctx);

/* Starts the stages, their pipes adopted into vh of cx (lws 4.1 cannot get a vhost's
 * context, hence both). NULL (with the reason on stderr) when a stage cannot be found or
 * spawned at all; later deaths are handled inside. on_drain may be NULL. cfg is copied. */
struct pipeline *pipeline_start(struct lws_context *cx, struct lws_vhost *vh,
    const struct pipeline_config *cfg, pipeline_frame_fn on_frame,
    pipeline_drain_fn on_drain, void *ctx);

/* Queue a frame for the stages: 0 queued; 1 queued, but the queue is now over half full:
 * stop feeding until on_drain; -1 the queue is full, the frame was not taken, on_drain
 * follows. open/close/connect/disconnect also update the replayed state (even on -1).
 * While the pipeline is down (a restart is pending) frames are not sent and 0 is
 * returned: broadcasts and messages are dropped (there is no link to hand them to), the
 * state is replayed by the restart.
 * An `open` derives the channel's key K (Argon2id, on a worker thread) and reaches the
 * stages once K is there, with K in its `key` (so no stage derives it again), followed by
 * a `connect` for each local peer that joined meanwhile. Until then the channel's other
 * frames are not sent (it has no links to hand them to); a `close` before then cancels
 * the derivation. K is wiped when the channel closes. */
int pipeline_send(struct pipeline *p, const struct frame *f);
/* The same for an already encoded frame in format fmt. */
int pipeline_send_raw(struct pipeline *p, enum frame_format fmt,
    const unsigned char *raw, size_t len);
/* Stops (1) or resumes (0) reading the tail, for a caller whose own output is full;
 * the stages then block in turn. Kept across restarts. */
void pipeline_pause(struct pipeline *p, int pause);
/* How many channel keys are being derived; the names of up to max of those channels go
 * to names (valid until the next pipeline call). */
size_t pipeline_deriving(const struct pipeline *p, const char **names, size_t max);
/* Bytes queued for the stages and not yet written. */
size_t pipeline_pending(const struct pipeline *p);
/* 1 while all stages run (0 while a restart is pending or after pipeline_stop). */
int pipeline_up(const struct pipeline *p);

/* Ends the pipeline: EOF to the stages once their queues are written, waits up to 2 s
 * for them to exit (frames from them are still delivered meanwhile), then SIGTERM, then
 * SIGKILL after 1 s more. done (may be NULL) is called once all are reaped; p is then
 * freed. */
void pipeline_stop(struct pipeline *p, pipeline_done_fn done, void *ctx);

#endif
