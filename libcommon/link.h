/* link: one encrypted link between two nws-link processes for one channel (DESIGN.md §5):
 * a WebSocket with subprotocol nws-link.1 carrying a Noise NNpsk0 session whose handshake
 * payloads are the node ids. Owns the handshake and its 5 s deadline, frames in pieces,
 * the bounded queue of encrypted messages, and liveness: a link is pinged after 10 s
 * without traffic and closed after 30 s of silence (lws does it for the accepting end,
 * a timer here for the dialling end, which speaks WebSocket through wsclient). Where
 * frames go is mesh's business. */
#ifndef NWS_LINK_H
#define NWS_LINK_H

#include <stddef.h>
#include <libwebsockets.h>

#include "noise.h"

#define LINK_SUBPROTOCOL "nws-link.1"
#define LINK_NODE_LEN 16
#define LINK_HANDSHAKE_SECS 5
#define LINK_PING_SECS 10
#define LINK_HANGUP_SECS 30

struct link;

struct link_ops {
	/* The handshake succeeded: link_node and link_hash are valid. */
	void (*up)(void *ctx, struct link *l);
	/* One whole CBOR frame (valid during the call). */
	void (*frame)(void *ctx, struct link *l, const unsigned char *cbor, size_t len);
	/* The link is gone (why: a short reason, "duplicate" when the other side dropped it
	 * as a double link). Called once, also for links that never came up; l is freed
	 * after it returns. */
	void (*down)(void *ctx, struct link *l, const char *why);
	/* The queue went down to a quarter of max_queue after being above it. */
	void (*drained)(void *ctx, struct link *l);
};

struct link_conf {
	const unsigned char *psk;         /* K_link, 32 bytes */
	const char *path;                 /* the channel's path, part of the prologue */
	const unsigned char *node;        /* our node id */
	size_t max_queue, max_frame;
	const struct link_ops *ops;
	void *ctx;
};

/* Server side: known says whether path is a channel's (checked before the upgrade is
 * answered); accept returns a new responder link from link_new for it, or NULL. */
typedef int (*link_known_fn)(void *ctx, const char *path);
typedef struct link *(*link_accept_fn)(void *ctx, const char *path);

/* The protocol list entry for nws-link.1; the hooks are called for incoming connections. */
extern const struct lws_protocols link_protocol;
void link_set_acceptor(link_known_fn known, link_accept_fn accept, void *ctx);
/* Sets the liveness policy (ping/hangup) the vhost and client connections use. */
extern const lws_retry_bo_t link_retry_policy;

struct link *link_new(const struct link_conf *c, int initiator);
/* Dials ws://address:port/path. -1 when it cannot even start (l is freed, down is not
 * called); otherwise down reports a failure later. iface scopes a link-local IPv6. */
int link_dial(struct link *l, struct lws_context *cx, struct lws_vhost *vh,
    const char *address, int port, const char *iface);

/* Queues a frame: 0, or -1 when the queue is past its bound (the caller closes the link
 * as too slow). A frame is taken whenever the queue is below the bound, so memory stays
 * under max_queue + max_frame. */
int link_send(struct link *l, const void *cbor, size_t len);
size_t link_pending(const struct link *l);
/* 1 when frames are queued and none has gone out for `us` microseconds. */
int link_stalled(const struct link *l, lws_usec_t us);
/* Closes with a WebSocket close status and reason; flush first sends what is queued.
 * A peer that does not read is cut off after 1 s (5 s with flush). */
void link_close(struct link *l, int status, const char *reason, int flush);
int link_closing(const struct link *l);
/* Stops (1) or resumes (0) reading from the link, for backpressure. */
void link_pause(struct link *l, int pause);

int link_is_up(const struct link *l);
int link_initiator(const struct link *l);
const unsigned char *link_node(const struct link *l);
/* The Noise handshake hash: equal on both ends, a tie-break both sides agree on. */
const unsigned char *link_hash(const struct link *l);
/* The peer's address as text. */
const char *link_address(const struct link *l);
void link_set_user(struct link *l, void *user);
void *link_user(const struct link *l);

#endif
