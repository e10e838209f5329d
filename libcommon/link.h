/* link: one encrypted link between two nws-link processes for one channel (nws(7) LINKS):
 * a WebSocket at LINK_PATH with subprotocol nws-link.1 carrying a Noise NNpsk0 session
 * whose handshake payloads are the node ids. Owns the handshake and its 5 s deadline, the
 * accepting end's wait for the dialler's first transport message (msg1 can be replayed,
 * so nothing about an incoming link is trusted or reported before that), frames in
 * pieces, the bounded queue of encrypted messages, and liveness: each end sends an empty
 * piece after 10 s of sending nothing, and a link with no decrypted traffic for 30 s is
 * closed (WebSocket pings and pongs do not count). Where frames go is mesh's business. */
#ifndef NWS_LINK_H
#define NWS_LINK_H

#include <stddef.h>
#include <libwebsockets.h>

#include "noise.h"

#define LINK_SUBPROTOCOL "nws-link.1"
/* One path for every channel: nothing before the handshake tells channels apart. */
#define LINK_PATH "/nws-link/1"
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
	/* The link is gone (why: a short reason, for logs and unlinked frames only: the
	 * other end's close reason is unauthenticated, and is passed only for links that
	 * came up, escaped). Called once, also for links that never came up; l is freed after
	 * it returns. */
	void (*down)(void *ctx, struct link *l, const char *why);
	/* The queue went down to a quarter of max_queue after being above it. */
	void (*drained)(void *ctx, struct link *l);
};

struct link_conf {
	const unsigned char *psk;         /* K_link, 32 bytes */
	const unsigned char *node;        /* our node id */
	size_t max_queue, max_frame;
	const struct link_ops *ops;
	void *ctx;
};

/* Server side: accept gets the first message of an incoming link and returns a new
 * responder link (link_new, initiator 0) of the channel whose psk it opens under
 * (link_msg1_opens), or NULL to refuse it. */
typedef struct link *(*link_accept_fn)(void *ctx, const unsigned char *msg1, size_t len);
/* 1 when msg1 authenticates under psk (an HKDF and an AEAD check; nothing is kept). */
int link_msg1_opens(const unsigned char psk[32], const unsigned char *msg1, size_t len);

/* The protocol list entry for nws-link.1; the hook is called for incoming connections. */
extern const struct lws_protocols link_protocol;
void link_set_acceptor(link_accept_fn accept, void *ctx);
/* Sets the liveness policy (ping/hangup) the vhost and client connections use. */
extern const lws_retry_bo_t link_retry_policy;

/* What a link may be dialled at, whoever said so (a found frame comes from the network
 * or any pipe): 0 when address is an IPv4 or IPv6 literal (a link-local one may carry
 * %IFACE), port is 1 to 65535 and iface is NULL, empty or an interface name; else -1 with
 * a reason in *why. */
int link_target_check(const char *address, long port, const char *iface, const char **why);

struct link *link_new(const struct link_conf *c, int initiator);
/* Dials ws://address:port/nws-link/1. address must be an IP literal. -1 when it cannot even start (l is freed, down is not
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

/* Up: the handshake is done and, at the accepting end, the dialler's first transport
 * message decrypted. */
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
