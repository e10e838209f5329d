#include "mesh.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "derive.h"
#include "dial.h"
#include "idset.h"
#include "keys.h"
#include "link.h"
#include "listen.h"
#include "log.h"

/* A node may announce all its peers at once when its link comes up and as many again
 * soon after: a burst of CONNECT_BURST_MUL times the peer cap, refilled at the cap over
 * CONNECT_RATE_DIV per second (connect_allowed). */
#define CONNECT_BURST_MUL 2
#define CONNECT_RATE_DIV 2

struct channel;

/* A remote nws-link process of a channel, known by its node id, and the one link to it
 * that carries frames both ways (see mesh_up). */
struct node {
	struct channel *ch;
	unsigned char id[LINK_NODE_LEN];
	char hex[2 * LINK_NODE_LEN + 1];
	char address[64];
	struct link *active;
	struct idset peers;      /* the ids it announced: those it may speak for */
	struct node *next;
};

/* What mesh keeps with each link. */
struct lref {
	struct link *link;
	struct channel *ch;
	struct dial_target *t;   /* the found address it dials, NULL when accepted */
	int dup;                 /* closed by us as a double link */
	int waiting;             /* up, but not yet "kept" by the other end: nothing is sent */
	int full;                /* past half its queue: the input is paused for it */
	uint64_t tokens;         /* connects it may still send now, in millionths */
	lws_usec_t refilled;     /* when tokens were last topped up */
	struct lref *next;
};

struct channel {
	struct mesh *m;
	char *name;
	struct keys *keys;          /* NULL while the worker derives them */
	struct derive_job *job;
	int closed;
	struct idset locals;
	/* Every peer id of the channel, local or remote, with its holder (a struct node, or
	 * LOCAL), so an id has one holder and a message one way to go. */
	struct idset holders;
	struct node *nodes;
	struct dial dial;           /* the found addresses of the channel */
	struct lref *links;
	struct channel *next;
};

struct mesh {
	struct lws_context *cx;
	struct lws_vhost *vh;
	int lfd, port;           /* where links are accepted (listen.h) */
	size_t max_frame, max_queue;
	struct mesh_limits lim;
	unsigned char node[LINK_NODE_LEN];
	struct loop_pipe *out;
	struct loop_pipe *peers_out;   /* remote peers' frames, when not to out */
	struct channel *channels;
	int stopping, paused;
	size_t nfull;           /* links with lref.full set */
	mesh_flow_fn flow;
	void *flow_ctx;
	lws_sorted_usec_list_t stall;
	struct buf scratch;     /* one encoded frame at a time */
	struct derive *dv;      /* Argon2id off the loop: links keep flowing meanwhile */
	struct loop_watch *derive_watch;
};

/* The strings of a viewed frame (frame_read): channel, ids, and room for the rest. */
#define MESH_VIEW_STORE 1024

/* The holder of a local peer's id in channel.holders. */
static char local_holder;
#define LOCAL ((void *)&local_holder)

/* ---- output ---- */

static struct loop_pipe *
peers_out(const struct mesh *m)
{
	return m->peers_out ? m->peers_out : m->out;
}

static void
out_frame(struct mesh *m, struct loop_pipe *to, const struct frame *f)
{
	if (!to || m->stopping)
		return;
	if (loop_pipe_send(to, f) < 0 && log_once_per_burst("mesh: out full"))
		log_error("output is full; a status frame was dropped");
}

static void
out_status(struct mesh *m, enum frame_action a, struct channel *ch, const char *node,
    const char *address, const char *reason)
{
	struct frame f;

	frame_init(&f);
	f.action = a;
	if (frame_set(&f.channel, ch->name) < 0 || frame_set(&f.node, node) < 0 ||
	    frame_set(&f.address, address) < 0 || frame_set(&f.reason, reason) < 0)
		log_error("out of memory");
	else
		out_frame(m, m->out, &f);
	frame_clear(&f);
}

static void
out_peer(struct mesh *m, enum frame_action a, struct channel *ch, const char *peer)
{
	struct frame f;

	frame_init(&f);
	f.action = a;
	if (frame_set(&f.channel, ch->name) == 0 && frame_set(&f.target, peer) == 0)
		out_frame(m, peers_out(m), &f);
	frame_clear(&f);
}

static void
mesh_pause(struct mesh *m, int pause)
{
	if (m->paused == pause)
		return;
	m->paused = pause;
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		for (struct lref *r = ch->links; r; r = r->next)
			link_pause(r->link, pause);
}

void
mesh_output_drained(struct mesh *m)
{
	mesh_pause(m, 0);
}

/* A frame from a link to the output, as received. */
static void
out_raw(struct mesh *m, const unsigned char *raw, size_t len)
{
	struct loop_pipe *to = peers_out(m);

	if (!to || m->stopping)
		return;
	if (loop_pipe_send_raw(to, FORMAT_CBOR, raw, len) < 0) {
		if (log_once_per_burst("mesh: out dropped"))
			log_error("output is not being read; dropping frames from links");
		return;
	}
	if (loop_pipe_pending(to) >= m->max_queue)
		mesh_pause(m, 1);
}

/* ---- channels, nodes ---- */

static struct channel *
channel_find(struct mesh *m, const char *name, size_t n)
{
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		if (!ch->closed && strlen(ch->name) == n && memcmp(ch->name, name, n) == 0)
			return ch;
	return NULL;
}

static struct node *
node_find(struct channel *ch, const unsigned char *id)
{
	for (struct node *n = ch->nodes; n; n = n->next)
		if (memcmp(n->id, id, LINK_NODE_LEN) == 0)
			return n;
	return NULL;
}

static const struct link_ops mesh_link_ops;

/* The node's last link is gone: its peers leave, and targets that waited on it dial. */
static void
node_drop(struct node *n, const char *why)
{
	struct channel *ch = n->ch;
	struct mesh *m = ch->m;

	struct idset_item *it;
	for (size_t pos = 0; (it = idset_next(&n->peers, &pos)); ) {
		out_peer(m, ACTION_DISCONNECT, ch, it->id);
		idset_del(&ch->holders, it->id);
	}
	out_status(m, ACTION_UNLINKED, ch, n->hex, n->address, why);
	log_info("unlinked from node %s at %s: %s", n->hex, n->address, why);
	for (struct node **pp = &ch->nodes; *pp; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	dial_uncover(&ch->dial, n->id);
	idset_clear(&n->peers);
	free(n);
}

static struct lref *
lref_new(struct channel *ch, struct dial_target *t, int initiator)
{
	struct mesh *m = ch->m;
	struct lref *r = calloc(1, sizeof *r);
	struct link_conf c;

	if (!r)
		return NULL;
	c.psk = ch->keys->link;
	c.node = m->node;
	c.max_queue = m->max_queue;
	c.max_frame = m->max_frame;
	c.ops = &mesh_link_ops;
	c.ctx = m;
	if (!(r->link = link_new(&c, initiator))) {
		free(r);
		return NULL;
	}
	link_set_user(r->link, r);
	r->ch = ch;
	r->t = t;
	r->tokens = (uint64_t)CONNECT_BURST_MUL * m->lim.peers * 1000000;
	r->refilled = lws_now_usecs();
	r->next = ch->links;
	ch->links = r;
	return r;
}

static void
lref_unlink(struct lref *r)
{
	for (struct lref **pp = &r->ch->links; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
}

static void
channel_free(struct channel *ch)
{
	struct mesh *m = ch->m;

	for (struct channel **pp = &m->channels; *pp; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	idset_clear(&ch->locals);
	idset_clear(&ch->holders);
	if (ch->job) {
		derive_cancel(m->dv, ch->job);
	}
	keys_free(ch->keys);
	sodium_memzero(ch->name, strlen(ch->name));
	free(ch->name);
	free(ch);
}

/* dial's start hook: a link to t, unless the channel cannot link yet. Found records cost
 * a member nothing: never more dials than links allowed. */
static int
mesh_dial(void *ctx, struct dial_target *t)
{
	struct channel *ch = ctx;
	struct mesh *m = ch->m;
	struct lref *r;

	if (ch->closed || !ch->keys || m->stopping)
		return 1;
	size_t nlinks = 0;
	for (r = ch->links; r; r = r->next)
		nlinks++;
	if (nlinks >= m->lim.links || !(r = lref_new(ch, t, 1)))
		return -1;
	log_debug("dialling %s port %d", t->address, t->port);
	if (link_dial(r->link, m->cx, m->vh, t->address, t->port, t->iface) < 0) {
		lref_unlink(r);
		free(r);
		return -1;
	}
	return 0;
}

/* A lost address: links still dialling it stop pointing at it. */
static void
mesh_forget_target(struct channel *ch, struct dial_target *t)
{
	for (struct lref *r = ch->links; r; r = r->next)
		if (r->t == t)
			r->t = NULL;
	dial_remove(t);
}

/* ---- flow control towards the input ---- */

static void
flow_set(struct mesh *m, struct lref *r, int full)
{
	if (r->full == full)
		return;
	r->full = full;
	m->nfull += full ? 1 : -1;
	if (m->nfull == (size_t)full && m->flow)
		m->flow(m->flow_ctx, full);
}

static void
flow_check(lws_sorted_usec_list_t *sul)
{
	struct mesh *m = lws_container_of(sul, struct mesh, stall);

	if (!m->nfull)
		return;
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		for (struct lref *r = ch->links; r; r = r->next)
			if (r->full && link_stalled(r->link, MESH_STALL_SECS * LWS_US_PER_SEC)) {
				log_info("closing the link to %s: too slow (nothing sent for %d s)",
				    link_address(r->link), MESH_STALL_SECS);
				link_close(r->link, 1008, "too slow", 0);
				flow_set(m, r, 0);
			}
	if (m->nfull)
		lws_sul_schedule(m->cx, 0, &m->stall, flow_check, LWS_US_PER_SEC);
}

static void
mesh_link_drained(void *ctx, struct link *l)
{
	flow_set(ctx, link_user(l), 0);
}

void
mesh_set_flow(struct mesh *m, mesh_flow_fn fn, void *ctx)
{
	m->flow = fn;
	m->flow_ctx = ctx;
}

/* ---- links ---- */

static void
mesh_announce(struct mesh *m, struct channel *ch, struct link *l)
{
	struct idset_item *it;

	for (size_t pos = 0; (it = idset_next(&ch->locals, &pos)); ) {
		struct frame f;
		frame_init(&f);
		f.action = ACTION_CONNECT;
		buf_reset(&m->scratch);
		if (frame_set(&f.channel, ch->name) == 0 && frame_set(&f.target, it->id) == 0 &&
		    frame_encode(&f, FORMAT_CBOR, &m->scratch) == 0)
			link_send(l, buf_data(&m->scratch), m->scratch.len);
		frame_clear(&f);
	}
}

/* Double links (both ends dial, or one dials several addresses of the other) are settled
 * by one end alone, before any frame is sent, so no frame ever goes on a link that is then
 * dropped and all frames between two nodes take one link, in order: the end with the
 * smaller node id keeps the first link to a node that comes up at it, closes any later
 * one at once, and sends "kept" first on the one it keeps. The other end sends nothing on
 * a link before it has read that. */
static int
mesh_decides(const struct mesh *m, const struct link *l)
{
	return memcmp(m->node, link_node(l), LINK_NODE_LEN) < 0;
}

static int
mesh_send_kept(struct mesh *m, struct channel *ch, struct link *l)
{
	struct frame f;
	int rc = -1;

	frame_init(&f);
	f.action = ACTION_UNKNOWN;
	buf_reset(&m->scratch);
	if (frame_set(&f.action_name, "kept") == 0 && frame_set(&f.channel, ch->name) == 0 &&
	    frame_encode(&f, FORMAT_CBOR, &m->scratch) == 0)
		rc = link_send(l, buf_data(&m->scratch), m->scratch.len);
	frame_clear(&f);
	return rc;
}

/* l becomes the node's link: linked, and our peers announced on it. */
static void
node_link(struct mesh *m, struct lref *r)
{
	struct link *l = r->link;
	struct channel *ch = r->ch;
	struct node *n = calloc(1, sizeof *n);

	if (!n) {
		link_close(l, 1011, "out of memory", 0);
		return;
	}
	n->ch = ch;
	memcpy(n->id, link_node(l), LINK_NODE_LEN);
	sodium_bin2hex(n->hex, sizeof n->hex, n->id, LINK_NODE_LEN);
	snprintf(n->address, sizeof n->address, "%s", link_address(l));
	n->active = l;
	idset_init(&n->peers, m->lim.peers);
	n->next = ch->nodes;
	ch->nodes = n;
	log_info("linked to node %s at %s", n->hex, n->address);
	out_status(m, ACTION_LINKED, ch, n->hex, n->address, NULL);
	if (r->t)
		r->t->state = DIAL_UP;
	mesh_announce(m, ch, l);
}

/* Why one more link that came up, l, is past the bounds of its channel, or NULL. Only
 * links whose handshake succeeded count: the handshake deadline bounds the others. */
static const char *
links_over(struct channel *ch, struct link *l)
{
	const struct mesh_limits *lim = &ch->m->lim;
	size_t all = 0, here = 0;

	for (struct lref *r = ch->links; r; r = r->next) {
		if (r->link == l || !link_is_up(r->link) || link_closing(r->link))
			continue;
		all++;
		here += strcmp(link_address(r->link), link_address(l)) == 0;
	}
	if (all >= lim->links)
		return "the channel has as many links as --max-links allows";
	if (here >= lim->links_per_address)
		return "that address has as many links as --max-links-per-address allows";
	return NULL;
}

static void
mesh_up(void *ctx, struct link *l)
{
	struct mesh *m = ctx;
	struct lref *r = link_user(l);
	struct channel *ch = r->ch;

	if (ch->closed || m->stopping) {
		link_close(l, 1001, "going away", 0);
		return;
	}
	if (memcmp(link_node(l), m->node, LINK_NODE_LEN) == 0) {
		log_info("refused a link to ourselves at %s", link_address(l));
		if (r->t)
			dial_self(r->t);
		/* Flushed, so the dialling end finishes its handshake and sees it too. */
		link_close(l, 1008, "self", 1);
		return;
	}
	const char *over = links_over(ch, l);
	if (over) {
		if (log_once_per_burst("mesh: too many links"))
			log_info("closing a link from %s: %s", link_address(l), over);
		link_close(l, 1008, "too many links", 0);
		return;
	}
	if (r->t)
		dial_handshaken(r->t, link_node(l));
	if (m->paused)
		link_pause(l, 1);
	if (!mesh_decides(m, l)) {
		r->waiting = 1;
		return;
	}
	if (node_find(ch, link_node(l))) {
		log_debug("closing a double link to %s", link_address(l));
		r->dup = 1;
		link_close(l, 1000, "duplicate", 0);
		return;
	}
	if (mesh_send_kept(m, ch, l) < 0) {
		link_close(l, 1011, "out of memory", 0);
		return;
	}
	node_link(m, r);
}

/* The other end keeps r's link. A link it kept before is gone at its end by now. */
static void
mesh_kept(struct mesh *m, struct lref *r)
{
	struct node *n = node_find(r->ch, link_node(r->link));

	r->waiting = 0;
	if (n) {
		struct link *old = n->active;
		node_drop(n, "replaced");
		if (old)
			link_close(old, 1000, "replaced", 0);
	}
	node_link(m, r);
}

/* A token bucket per link: 1 when one more connect may go on now. */
static int
connect_allowed(struct mesh *m, struct lref *r)
{
	const uint64_t unit = 1000000;
	uint64_t burst = (uint64_t)CONNECT_BURST_MUL * m->lim.peers * unit;
	lws_usec_t now = lws_now_usecs();
	uint64_t rate = (m->lim.peers + CONNECT_RATE_DIV - 1) / CONNECT_RATE_DIV;
	uint64_t add = (uint64_t)(now - r->refilled) * rate;

	r->refilled = now;
	r->tokens = add > burst - r->tokens ? burst : r->tokens + add;
	if (r->tokens < unit)
		return 0;
	r->tokens -= unit;
	return 1;
}

/* A remote connect: n now speaks for f->target, unless another holds that id. */
static void
node_connect(struct mesh *m, struct lref *r, struct node *n, const struct frame *f,
    const unsigned char *cbor, size_t len)
{
	struct channel *ch = r->ch;
	struct idset_item *h;

	if (!connect_allowed(m, r)) {
		log_info("closing the link to node %s at %s: more connects than the rate limit",
		    n->hex, n->address);
		link_close(r->link, 1008, "too many connects", 0);
		return;
	}
	if (!f->target)
		return;
	if ((h = idset_get(&ch->holders, f->target))) {
		/* Refused, not forwarded: the id keeps its holder, and a frame n sends from it
		 * later closes n's link as one from an unannounced source. */
		if (h->util != n && log_once_per_burst("mesh: id held"))
			log_info("refused a connect from node %s for a peer id %s holds", n->hex,
			    h->util == LOCAL ? "a local peer" : "another node");
		return;
	}
	if (idset_add(&n->peers, f->target, NULL) < 0) {
		log_info("closing the link to node %s at %s: more peers than --max-peers "
		    "(or an id longer than %d bytes)", n->hex, n->address, IDSET_ID_MAX);
		link_close(r->link, 1008, "too many peers", 0);
		return;
	}
	if (idset_add(&ch->holders, f->target, n) < 0) {
		idset_del(&n->peers, f->target);
		log_error("out of memory; a remote peer was not announced");
		return;
	}
	out_raw(m, cbor, len);
}

/* Decoded once, strictly (frame_read: frame_decode's rules, in place for the common
 * frames), and routed on what was decoded; the bytes that go on are the ones decoded,
 * so every later reader sees the same fields. */
static void
mesh_link_frame(void *ctx, struct link *l, const unsigned char *cbor, size_t len)
{
	struct mesh *m = ctx;
	struct lref *r = link_user(l);
	struct channel *ch = r->ch;
	struct frame f;
	struct node *n;
	char err[128], store[MESH_VIEW_STORE];

	if (ch->closed || m->stopping)
		return;
	int bad = frame_read(&f, FORMAT_CBOR, cbor, len, store, sizeof store, err,
	    sizeof err) < 0;
	if (bad || !f.channel || strcmp(f.channel, ch->name) != 0) {
		/* jansson's reason for a tag 262 "data" may quote the member's text. */
		char esc[LOG_ESCAPE_MAX(sizeof err)];
		log_info("closing a link from %s: it sent a malformed frame (%s)", link_address(l),
		    bad ? log_escape(err, strlen(err), esc, sizeof esc) : "not of the link's channel");
		link_close(l, 1008, "malformed frame", 0);
		frame_release(&f, store, sizeof store);
		return;
	}
	if (r->waiting) {
		if (f.action == ACTION_UNKNOWN && strcmp(f.action_name, "kept") == 0)
			mesh_kept(m, r);
		else {
			log_info("closing a link from %s: it sent a frame before keeping the link",
			    link_address(l));
			link_close(l, 1008, "protocol error", 0);
		}
		frame_release(&f, store, sizeof store);
		return;
	}
	if (!(n = node_find(ch, link_node(l))) || n->active != l) {
		frame_release(&f, store, sizeof store);
		return;
	}
	switch (f.action) {
	case ACTION_CONNECT:
		node_connect(m, r, n, &f, cbor, len);
		break;
	case ACTION_DISCONNECT:
		if (f.target && idset_del(&n->peers, f.target)) {
			idset_del(&ch->holders, f.target);
			out_raw(m, cbor, len);
		}
		break;
	case ACTION_BROADCAST:
	case ACTION_MESSAGE:
	case ACTION_END:
		if (!f.source || !idset_get(&n->peers, f.source)) {
			log_info("closing the link to node %s at %s: it sent a %s from a peer it did "
			    "not announce", n->hex, n->address, frame_action_name(&f));
			link_close(l, 1008, "unannounced source", 0);
			break;
		}
		if (f.action == ACTION_MESSAGE) {
			struct idset_item *h = f.target ? idset_get(&ch->holders, f.target) : NULL;
			if (!h || h->util != LOCAL) {
				log_debug("a message from a link is for no local peer; dropped");
				break;
			}
		}
		out_raw(m, cbor, len);
		break;
	default:
		log_debug("ignoring a frame from a link that is no peer event");
		break;
	}
	frame_release(&f, store, sizeof store);
}

static void
mesh_down(void *ctx, struct link *l, const char *why)
{
	struct mesh *m = ctx;
	struct lref *r = link_user(l);
	struct channel *ch = r->ch;
	struct node *n = link_is_up(l) ? node_find(ch, link_node(l)) : NULL;

	lref_unlink(r);
	flow_set(m, r, 0);
	if (n && n->active == l) {
		n->active = NULL;
		node_drop(n, why);
	}
	/* What happens to the target is decided from what the handshake proved (the node id
	 * at the other end), never from the close reason, which anyone on the path can write:
	 * a link to ourselves was seen as such by mesh_up, and a link to a node that another
	 * link carries is covered by it. */
	if (r->t)
		dial_down(r->t, link_is_up(l) && node_find(ch, link_node(l)) ? link_node(l) : NULL);
	free(r);
	if (ch->closed && !ch->links && !ch->nodes)
		channel_free(ch);
	/* The stopping tool waits in lws_service for the last link: wake it, as this may run
	 * from a timer after which lws would poll with nothing due. */
	if (m->stopping && mesh_idle(m))
		lws_cancel_service(m->cx);
}

static const struct link_ops mesh_link_ops = {
	.up = mesh_up,
	.frame = mesh_link_frame,
	.down = mesh_down,
	.drained = mesh_link_drained,
};

/* An incoming link's channel is the one whose key opens its msg1: one path serves every
 * channel, so nothing before the handshake tells them apart. */
static struct link *
mesh_accept(void *ctx, const unsigned char *msg1, size_t len)
{
	struct mesh *m = ctx;

	if (m->stopping)
		return NULL;
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		if (!ch->closed && ch->keys && link_msg1_opens(ch->keys->link, msg1, len)) {
			struct lref *r = lref_new(ch, NULL, 0);
			return r ? r->link : NULL;
		}
	return NULL;
}

/* ---- the mesh ---- */

/* derive_fd is readable: keys are derived (channel_derived runs for each). */
static void
derive_ready(void *ctx)
{
	struct mesh *m = ctx;

	derive_collect(m->dv);
}

struct mesh *
mesh_new(struct lws_context *cx, struct lws_vhost *vh, int lfd, int port,
    size_t max_frame, size_t max_queue)
{
	struct mesh *m = calloc(1, sizeof *m);

	if (!m)
		return NULL;
	m->cx = cx;
	m->vh = vh;
	m->lfd = lfd;
	m->port = port;
	m->max_frame = max_frame;
	m->max_queue = max_queue;
	mesh_set_limits(m, NULL);
	if (!(m->dv = derive_new()) ||
	    loop_watch_fd(vh, derive_fd(m->dv), derive_ready, m, &m->derive_watch) < 0) {
		derive_free(m->dv);
		free(m);
		return NULL;
	}
	randombytes_buf(m->node, sizeof m->node);
	buf_init(&m->scratch, 0);
	link_set_acceptor(mesh_accept, m);
	return m;
}

void
mesh_set_limits(struct mesh *m, const struct mesh_limits *lim)
{
	static const struct mesh_limits defaults = {
		MESH_LINKS_DEFAULT, MESH_LINKS_PER_ADDRESS_DEFAULT, MESH_PEERS_DEFAULT,
	};

	m->lim = defaults;
	if (lim && lim->links)
		m->lim.links = lim->links;
	if (lim && lim->links_per_address)
		m->lim.links_per_address = lim->links_per_address;
	if (lim && lim->peers)
		m->lim.peers = lim->peers;
}

void
mesh_set_output(struct mesh *m, struct loop_pipe *out)
{
	m->out = out;
}

void
mesh_set_peers_output(struct mesh *m, struct loop_pipe *out)
{
	m->peers_out = out;
}

/* The channel can link now: say where it listens, and dial what was found meanwhile. */
static void
channel_derived(void *ctx, struct derive_job *j, struct keys *k)
{
	struct channel *ch = ctx;
	struct mesh *m = ch->m;
	struct frame f;

	(void)j;
	ch->job = NULL;
	if (!k) {
		log_error("out of memory deriving a channel key: that channel is not linked");
		return;
	}
	ch->keys = k;
	if (ch->closed)
		return;
	frame_init(&f);
	f.action = ACTION_LISTENING;
	f.port = m->port;
	if (frame_set(&f.channel, ch->name) == 0)
		out_frame(m, m->out, &f);
	frame_clear(&f);
	dial_all(&ch->dial);
}

int
mesh_open(struct mesh *m, const char *name, const unsigned char *key)
{
	struct channel *ch;

	if (!keys_name_valid(name))
		return -1;
	if (channel_find(m, name, strlen(name)))
		return 0;
	if (!(ch = calloc(1, sizeof *ch)))
		return -1;
	struct keys *k = key ? keys_from_channel_key(key) : NULL;
	if (!(ch->name = strdup(name)) || (key && !k) ||
	    (!key && !(ch->job = derive_start(m->dv, name, channel_derived, ch)))) {
		keys_free(k);
		free(ch->name);
		free(ch);
		return -1;
	}
	ch->m = m;
	dial_init(&ch->dial, m->cx, mesh_dial, ch);
	idset_init(&ch->locals, IDSET_PEERS_MAX);   /* from our own pipeline */
	idset_init(&ch->holders, 0);
	ch->next = m->channels;
	m->channels = ch;
	log_debug("opened channel %s", name);
	if (k) {
		/* K came with the open: as if the worker had just derived it. */
		channel_derived(ch, NULL, k);
	}
	return 0;
}

static void
mesh_close_channel(struct channel *ch)
{
	ch->closed = 1;
	while (ch->dial.targets)
		mesh_forget_target(ch, ch->dial.targets);
	for (struct lref *r = ch->links; r; r = r->next)
		link_close(r->link, 1001, "channel closed", 1);
	while (ch->nodes) {
		ch->nodes->active = NULL;
		node_drop(ch->nodes, "channel closed");
	}
	if (!ch->links)
		channel_free(ch);
}

static void
mesh_found(struct mesh *m, const struct frame *f, int lost)
{
	struct channel *ch = channel_find(m, f->channel, strlen(f->channel));
	struct dial_target *t;
	const char *why;

	if (!ch)
		return;
	if (link_target_check(f->address, f->port, f->interface, &why) < 0) {
		if (log_once_per_burst("mesh: bad found"))
			log_error("ignoring a %s frame: %s", lost ? "lost" : "found", why);
		return;
	}
	if (!lost && listen_reaches(m->lfd, f->address, (int)f->port)) {
		/* Our own advertisement (browse finds it like any other): no dial. */
		log_info("not dialling ourselves at %s port %d", f->address, (int)f->port);
		return;
	}
	t = dial_find(&ch->dial, f->address, (int)f->port);
	if (lost && t)
		mesh_forget_target(ch, t);
	else if (!lost && !t && !dial_add(&ch->dial, f->address, (int)f->port, f->interface,
	    f->instance, f->domain))
		log_error("out of memory");
}

/* open/close/found/lost: decoded, acted on; open and close are also passed on. */
static void
mesh_control(struct mesh *m, enum frame_action a, enum frame_format fmt,
    const unsigned char *raw, size_t len)
{
	struct frame f;
	char err[128];

	if (frame_decode(&f, fmt, raw, len, err, sizeof err) < 0) {
		if (log_once_per_burst("mesh: bad control"))
			log_error("skipping a frame that does not decode: %s", err);
		return;
	}
	struct channel *ch = f.channel ? channel_find(m, f.channel, strlen(f.channel)) : NULL;
	switch (a) {
	case ACTION_OPEN:
		if (m->out)
			loop_pipe_send_raw(m->out, fmt, raw, len);
		if (f.channel && !ch && mesh_open(m, f.channel, f.has_key ? f.key : NULL) < 0)
			log_error("cannot open a channel: invalid name or out of memory");
		break;
	case ACTION_CLOSE:
		if (ch)
			mesh_close_channel(ch);
		if (m->out)
			loop_pipe_send_raw(m->out, fmt, raw, len);
		break;
	case ACTION_FOUND:
	case ACTION_LOST:
		if (!ch) {
			if (m->out)
				loop_pipe_send_raw(m->out, fmt, raw, len);
			break;
		}
		mesh_found(m, &f, a == ACTION_LOST);
		break;
	default:
		break;
	}
	frame_clear(&f);
}

static void
mesh_send_or_drop(struct mesh *m, struct link *l, const unsigned char *p, size_t n)
{
	struct lref *r = link_user(l);

	if (link_closing(l))
		return;
	if (link_send(l, p, n) < 0) {
		log_info("closing the link to %s: too slow", link_address(l));
		link_close(l, 1008, "too slow", 0);
		flow_set(m, r, 0);
		return;
	}
	if (!r->full && !m->stopping && link_pending(l) >= m->max_queue / 2) {
		flow_set(m, r, 1);
		lws_sul_schedule(m->cx, 0, &m->stall, flow_check, LWS_US_PER_SEC);
	}
}

/* connect/disconnect/broadcast/message/end of a local peer, decoded, and the same frame
 * as CBOR: sent on the links it is for. 0 when its channel is not open here (the frame
 * is passed on). A frame a link would refuse (a source that is no local peer) is not
 * sent, so a local mistake never closes a link. */
static int
mesh_local(struct mesh *m, const struct frame *f, const unsigned char *p, size_t n)
{
	struct channel *ch = f->channel ? channel_find(m, f->channel, strlen(f->channel)) : NULL;
	struct idset_item *h;

	if (!ch)
		return 0;
	switch (f->action) {
	case ACTION_CONNECT:
		if (!f->target)
			return 1;
		if ((h = idset_get(&ch->holders, f->target)) && h->util != LOCAL) {
			log_error("a local peer id is already held by a remote node; it was not "
			    "announced (connect with another id)");
			return 1;
		}
		if (!h && (idset_add(&ch->locals, f->target, NULL) < 0 ||
		    idset_add(&ch->holders, f->target, LOCAL) < 0)) {
			idset_del(&ch->locals, f->target);
			log_error("too many local peers (or an id longer than %d bytes); a connect "
			    "was not announced", IDSET_ID_MAX);
			return 1;
		}
		break;
	case ACTION_DISCONNECT:
		if (!f->target || !idset_del(&ch->locals, f->target))
			return 1;
		idset_del(&ch->holders, f->target);
		break;
	default:
		if (!f->source || !idset_get(&ch->locals, f->source)) {
			if (log_once_per_burst("mesh: unknown local source"))
				log_error("a %s was not sent on links: its source is no connected "
				    "local peer (send a connect for it first)", frame_action_name(f));
			return 1;
		}
		if (f->action != ACTION_MESSAGE)
			break;
		h = f->target ? idset_get(&ch->holders, f->target) : NULL;
		if (h && h->util != LOCAL) {
			struct node *nd = h->util;
			if (nd->active)
				mesh_send_or_drop(m, nd->active, p, n);
		} else {
			log_debug("no link carries the target of a message; dropped");
		}
		return 1;
	}
	for (struct node *nd = ch->nodes; nd; nd = nd->next)
		if (nd->active)
			mesh_send_or_drop(m, nd->active, p, n);
	return 1;
}

void
mesh_input(struct mesh *m, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	enum frame_action a = frame_peek_action(fmt, raw, len);
	struct frame f;
	char err[128], store[MESH_VIEW_STORE];

	switch (a) {
	case ACTION_OPEN:
	case ACTION_CLOSE:
	case ACTION_FOUND:
	case ACTION_LOST:
		mesh_control(m, a, fmt, raw, len);
		return;
	case ACTION_CONNECT:
	case ACTION_DISCONNECT:
	case ACTION_BROADCAST:
	case ACTION_MESSAGE:
	case ACTION_END:
		break;
	default:
		if (m->out)
			loop_pipe_send_raw(m->out, fmt, raw, len);
		return;
	}
	/* Decoded once, as a link decodes it, so what goes on a link is what a link accepts;
	 * links carry CBOR, so JSON is encoded once here. */
	if (frame_read(&f, fmt, raw, len, store, sizeof store, err, sizeof err) < 0) {
		if (log_once_per_burst("mesh: bad local"))
			log_error("skipping a frame that does not decode: %s", err);
		return;
	}
	const unsigned char *p = raw;
	size_t n = len;
	if (fmt != FORMAT_CBOR) {
		buf_reset(&m->scratch);
		if (frame_encode(&f, FORMAT_CBOR, &m->scratch) < 0) {
			log_error("out of memory, or a frame that cannot be carried; skipped");
			frame_release(&f, store, sizeof store);
			return;
		}
		p = buf_data(&m->scratch);
		n = m->scratch.len;
	}
	if (!mesh_local(m, &f, p, n) && m->out)
		loop_pipe_send_raw(m->out, fmt, raw, len);
	frame_release(&f, store, sizeof store);
}

void
mesh_stop(struct mesh *m)
{
	m->stopping = 1;
	/* Every timer goes now, while the context lives: none is armed again once stopping,
	 * and mesh_free, after lws_context_destroy, must not touch lws's timer lists. */
	lws_sul_cancel(&m->stall);
	loop_watch_stop(&m->derive_watch);
	for (struct channel *ch = m->channels; ch; ch = ch->next) {
		dial_stop(&ch->dial);
		for (struct lref *r = ch->links; r; r = r->next)
			link_close(r->link, 1001, "going away", 1);
	}
}

int
mesh_idle(const struct mesh *m)
{
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		if (ch->links)
			return 0;
	return 1;
}

/* After mesh_stop and lws_context_destroy: every link and timer is gone by then. */
void
mesh_free(struct mesh *m)
{
	m->out = m->peers_out = NULL;
	m->stopping = 1;
	while (m->channels) {
		struct channel *ch = m->channels;
		dial_clear(&ch->dial);
		while (ch->nodes) {
			struct node *n = ch->nodes;
			ch->nodes = n->next;
			idset_clear(&n->peers);
			free(n);
		}
		channel_free(ch);
	}
	link_set_acceptor(NULL, NULL);
	derive_free(m->dv);
	buf_clear(&m->scratch);
	sodium_memzero(m, sizeof *m);
	free(m);
}
