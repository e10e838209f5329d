/* dial: the found addresses of one channel that mesh dials and redials while they are
 * not lost (nws(7) LINKS): one target per address and port, what its last link proved
 * (up, covered by another link to the same node, or ourselves) and the backoff between
 * attempts, 0.5 s doubling to 30 s, back to 0.5 s once a handshake succeeds. Making the
 * link is the caller's, through the start hook; dial decides when and whether.
 * The addresses of one advertisement (avahi reports it once per address family) are one
 * node: one of them is dialled at a time, the others wait for what its handshake proves,
 * and are dialled only when it fails. One advertisement is one instance name in one
 * domain seen on one interface, which DNS-SD keeps unique: a member that copies another's
 * instance name into another domain or onto another interface starts a group of its
 * own, so it cannot make that node's addresses wait on its own. */
#ifndef NWS_DIAL_H
#define NWS_DIAL_H

#include <libwebsockets.h>

#include "link.h"

/* IDLE: due for a dial; DIALING: a link is on its way; UP: it carries the node; COVERED:
 * another link carries that node (dialled again when it goes); SELF: it was us (never
 * dialled again); WAITING: another address of the same instance is being dialled. The
 * caller sets UP, and SELF through dial_self, from what a handshake proved. */
enum dial_state { DIAL_IDLE, DIAL_DIALING, DIAL_UP, DIAL_COVERED, DIAL_SELF, DIAL_WAITING };

struct dial;

struct dial_target {
	struct dial *d;
	char *address, *iface;
	char *instance, *domain;             /* the advertisement's; NULL: none (static) */
	int port;
	enum dial_state state;
	unsigned char node[LINK_NODE_LEN];   /* the node its last handshake proved */
	unsigned backoff_ms;
	lws_sorted_usec_list_t sul;
	struct dial_target *next;
};

/* Starts a link to t: 0 when one is on its way, -1 to try again after the backoff, 1 when
 * the channel cannot dial yet (no keys): dial_all tries again when it can. */
typedef int (*dial_start_fn)(void *ctx, struct dial_target *t);

struct dial {
	struct lws_context *cx;
	dial_start_fn start;
	void *ctx;
	int stopped;                 /* no timer is armed any more */
	struct dial_target *targets;
};

void dial_init(struct dial *d, struct lws_context *cx, dial_start_fn start, void *ctx);
struct dial_target *dial_find(const struct dial *d, const char *address, int port);
/* A found address of instance in domain (NULL: none): a new target, tried at once unless
 * another address of that advertisement is being dialled. NULL when out of memory. */
struct dial_target *dial_add(struct dial *d, const char *address, int port,
    const char *iface, const char *instance, const char *domain);
/* Tries every idle target (the channel can dial now). */
void dial_all(struct dial *d);
/* A link of t did its handshake with node: the backoff starts over. */
void dial_handshaken(struct dial_target *t, const unsigned char *node);
/* t's link reached ourselves: t, and the other addresses of its instance, are never
 * dialled again. */
void dial_self(struct dial_target *t);
/* t's link went: covered when covered_by (the node it reached) is carried by another
 * link, else dialled again after the backoff. A SELF target stays as it is. */
void dial_down(struct dial_target *t, const unsigned char *covered_by);
/* The link carrying node went: the targets it covered are dialled again. */
void dial_uncover(struct dial *d, const unsigned char *node);
/* A lost address: the target goes (its pointer with it). */
void dial_remove(struct dial_target *t);
/* Cancels every timer, for good (while the lws context still lives). */
void dial_stop(struct dial *d);
/* Frees every target. */
void dial_clear(struct dial *d);

#endif
