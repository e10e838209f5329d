#include "mesh.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "derive.h"
#include "keys.h"
#include "link.h"
#include "log.h"

#define PATH_BYTES 16
#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000
#define PEER_ID_MAX 255
#define PEERS_MAX 65536

/* A set of peer ids: few per channel, so an array. */
struct peers {
	char **id;
	size_t n, cap;
};

struct channel;

/* A remote nws-link process of a channel, known by its node id, and the one link to it
 * that carries frames both ways (see mesh_up). */
struct node {
	struct channel *ch;
	unsigned char id[LINK_NODE_LEN];
	char hex[2 * LINK_NODE_LEN + 1];
	char address[64];
	struct link *active;
	struct peers peers;
	struct node *next;
};

enum target_state { T_IDLE, T_DIALING, T_UP, T_COVERED, T_SELF };

/* A found advertisement we dial and redial while it is not lost. */
struct target {
	struct channel *ch;
	char *address, *path, *iface;
	int port;
	enum target_state state;
	struct link *link;
	unsigned char node[LINK_NODE_LEN];
	unsigned backoff_ms;
	lws_sorted_usec_list_t sul;
	struct target *next;
};

/* What mesh keeps with each link. */
struct lref {
	struct link *link;
	struct channel *ch;
	struct target *t;
	int dup;                 /* closed by us as a double link */
	int waiting;             /* up, but not yet "kept" by the other end: nothing is sent */
	int full;                /* past half its queue: the input is paused for it */
	struct lref *next;
};

struct channel {
	struct mesh *m;
	char *name;
	struct keys *keys;          /* NULL while the worker derives them */
	struct derive_job *job;
	char path[2 * PATH_BYTES + 1];
	int closed;
	struct peers locals;
	struct node *nodes;
	struct target *targets;
	struct lref *links;
	struct channel *next;
};

struct mesh {
	struct lws_context *cx;
	struct lws_vhost *vh;
	int port;
	size_t max_frame, max_queue;
	unsigned char node[LINK_NODE_LEN];
	struct loop_pipe *out;
	struct channel *channels;
	int stopping, paused;
	size_t nfull;           /* links with lref.full set */
	mesh_flow_fn flow;
	void *flow_ctx;
	lws_sorted_usec_list_t stall;
	struct buf scratch;     /* one encoded frame at a time */
	struct derive *dv;      /* Argon2id off the loop: links keep flowing meanwhile */
	size_t deriving;
	lws_sorted_usec_list_t derive_sul;
};

/* ---- peer sets ---- */

static int
peers_find(const struct peers *s, const char *id, size_t n)
{
	for (size_t i = 0; i < s->n; i++)
		if (strlen(s->id[i]) == n && memcmp(s->id[i], id, n) == 0)
			return (int)i;
	return -1;
}

/* 1 added, 0 already there, -1 full or out of memory. */
static int
peers_add(struct peers *s, const char *id, size_t n)
{
	if (peers_find(s, id, n) >= 0)
		return 0;
	if (s->n >= PEERS_MAX || n > PEER_ID_MAX)
		return -1;
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 8;
		char **p = realloc(s->id, cap * sizeof *p);
		if (!p)
			return -1;
		s->id = p;
		s->cap = cap;
	}
	if (!(s->id[s->n] = strndup(id, n)))
		return -1;
	s->n++;
	return 1;
}

/* 1 removed, 0 was not there. */
static int
peers_del(struct peers *s, const char *id, size_t n)
{
	int i = peers_find(s, id, n);
	if (i < 0)
		return 0;
	free(s->id[i]);
	s->id[i] = s->id[--s->n];
	return 1;
}

static void
peers_free(struct peers *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->id[i]);
	free(s->id);
	memset(s, 0, sizeof *s);
}

/* ---- CBOR fields without decoding ---- */

struct span {
	const char *p;
	size_t n;
};

struct fields {
	struct span action, channel, target;
};

static int
cbor_head(const unsigned char *p, size_t n, int *major, uint64_t *arg, size_t *hl)
{
	if (n < 1)
		return -1;
	int ai = p[0] & 31;
	*major = p[0] >> 5;
	if (ai < 24) {
		*arg = (uint64_t)ai;
		*hl = 1;
		return 0;
	}
	if (ai > 27)
		return -1;
	size_t k = (size_t)1 << (ai - 24);
	if (n < 1 + k)
		return -1;
	*arg = 0;
	for (size_t i = 0; i < k; i++)
		*arg = *arg << 8 | p[1 + i];
	*hl = 1 + k;
	return 0;
}

static int
text_at(const unsigned char *p, size_t n, struct span *s)
{
	int major;
	uint64_t arg;
	size_t hl;

	if (cbor_head(p, n, &major, &arg, &hl) < 0 || major != 3 || arg > n - hl)
		return -1;
	s->p = (const char *)p + hl;
	s->n = (size_t)arg;
	return 0;
}

/* Finds the text fields mesh routes on in one CBOR map. -1 when it is not one. */
static int
fields_scan(const unsigned char *p, size_t n, struct fields *f)
{
	int major;
	uint64_t pairs;
	size_t hl, il, pos;

	memset(f, 0, sizeof *f);
	if (n < 1 || (p[0] >> 5) != 5)
		return -1;
	if (p[0] == 0xbf) {
		pairs = UINT64_MAX;
		pos = 1;
	} else if (cbor_head(p, n, &major, &pairs, &hl) < 0)
		return -1;
	else
		pos = hl;
	for (uint64_t i = 0; i < pairs && pos < n && p[pos] != 0xff; i++) {
		struct span key = { 0 }, *want = NULL;
		if (text_at(p + pos, n - pos, &key) == 0) {
			if (key.n == 6 && memcmp(key.p, "action", 6) == 0)
				want = &f->action;
			else if (key.n == 7 && memcmp(key.p, "channel", 7) == 0)
				want = &f->channel;
			else if (key.n == 6 && memcmp(key.p, "target", 6) == 0)
				want = &f->target;
		}
		if (frame_cbor_item_len(p + pos, n - pos, 0, &il, NULL) != 1)
			return -1;
		pos += il;
		if (want && text_at(p + pos, n - pos, want) < 0)
			return -1;
		if (frame_cbor_item_len(p + pos, n - pos, 0, &il, NULL) != 1)
			return -1;
		pos += il;
	}
	return 0;
}

static int
span_is(struct span s, const char *str)
{
	return s.p && strlen(str) == s.n && memcmp(s.p, str, s.n) == 0;
}

/* ---- output ---- */

static void
out_frame(struct mesh *m, const struct frame *f)
{
	if (!m->out || m->stopping)
		return;
	if (loop_pipe_send(m->out, f) < 0 && log_once_per_burst("mesh: out full"))
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
		out_frame(m, &f);
	frame_free(&f);
}

static void
out_peer(struct mesh *m, enum frame_action a, struct channel *ch, const char *peer)
{
	struct frame f;

	frame_init(&f);
	f.action = a;
	if (frame_set(&f.channel, ch->name) == 0 && frame_set(&f.target, peer) == 0)
		out_frame(m, &f);
	frame_free(&f);
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
	if (!m->out || m->stopping)
		return;
	if (loop_pipe_send_raw(m->out, FORMAT_CBOR, raw, len) < 0) {
		if (log_once_per_burst("mesh: out dropped"))
			log_error("output is not being read; dropping frames from links");
		return;
	}
	if (loop_pipe_pending(m->out) >= m->max_queue)
		mesh_pause(m, 1);
}

/* ---- channels, nodes, targets ---- */

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

static void target_schedule(struct target *t);
static const struct link_ops mesh_link_ops;

/* The node's last link is gone: its peers leave, and targets that waited on it dial. */
static void
node_drop(struct node *n, const char *why)
{
	struct channel *ch = n->ch;
	struct mesh *m = ch->m;

	for (size_t i = 0; i < n->peers.n; i++)
		out_peer(m, ACTION_DISCONNECT, ch, n->peers.id[i]);
	out_status(m, ACTION_UNLINKED, ch, n->hex, n->address, why);
	log_info("unlinked from node %s at %s: %s", n->hex, n->address, why);
	for (struct node **pp = &ch->nodes; *pp; pp = &(*pp)->next)
		if (*pp == n) {
			*pp = n->next;
			break;
		}
	for (struct target *t = ch->targets; t; t = t->next)
		if (t->state == T_COVERED && memcmp(t->node, n->id, LINK_NODE_LEN) == 0) {
			t->state = T_IDLE;
			target_schedule(t);
		}
	peers_free(&n->peers);
	free(n);
}

static struct lref *
lref_new(struct channel *ch, struct target *t, int initiator)
{
	struct mesh *m = ch->m;
	struct lref *r = calloc(1, sizeof *r);
	struct link_conf c;

	if (!r)
		return NULL;
	c.psk = ch->keys->link;
	c.path = t ? t->path : ch->path;   /* the listener's path, as in the URL */
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
	peers_free(&ch->locals);
	if (ch->job) {
		derive_cancel(m->dv, ch->job);
		m->deriving--;
	}
	keys_free(ch->keys);
	sodium_memzero(ch->name, strlen(ch->name));
	free(ch->name);
	free(ch);
}

static void
target_dial(struct target *t)
{
	struct lref *r;

	if (t->state != T_IDLE || t->ch->closed || !t->ch->keys || t->ch->m->stopping)
		return;
	if (!(r = lref_new(t->ch, t, 1))) {
		target_schedule(t);
		return;
	}
	t->state = T_DIALING;
	t->link = r->link;
	log_debug("dialling %s port %d", t->address, t->port);
	if (link_dial(r->link, t->ch->m->cx, t->ch->m->vh, t->address, t->port, t->iface) < 0) {
		lref_unlink(r);
		free(r);
		t->link = NULL;
		t->state = T_IDLE;
		target_schedule(t);
	}
}

static void
target_due(lws_sorted_usec_list_t *sul)
{
	target_dial(lws_container_of(sul, struct target, sul));
}

static void
target_schedule(struct target *t)
{
	if (t->ch->m->stopping || t->ch->closed)
		return;
	lws_sul_schedule(t->ch->m->cx, 0, &t->sul, target_due,
	    (lws_usec_t)t->backoff_ms * LWS_US_PER_MS);
	t->backoff_ms = t->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : t->backoff_ms * 2;
}

static void
target_free(struct target *t)
{
	struct channel *ch = t->ch;

	for (struct target **pp = &ch->targets; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	lws_sul_cancel(&t->sul);
	for (struct lref *r = ch->links; r; r = r->next)
		if (r->t == t)
			r->t = NULL;
	free(t->address);
	free(t->path);
	free(t->iface);
	free(t);
}

static struct target *
target_find(struct channel *ch, const char *address, int port, const char *path)
{
	for (struct target *t = ch->targets; t; t = t->next)
		if (t->port == port && strcmp(t->address, address) == 0 &&
		    strcmp(t->path, path) == 0)
			return t;
	return NULL;
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
link_announce(struct mesh *m, struct channel *ch, struct link *l)
{
	for (size_t i = 0; i < ch->locals.n; i++) {
		struct frame f;
		frame_init(&f);
		f.action = ACTION_CONNECT;
		buf_reset(&m->scratch);
		if (frame_set(&f.channel, ch->name) == 0 &&
		    frame_set(&f.target, ch->locals.id[i]) == 0 &&
		    frame_encode(&f, FORMAT_CBOR, &m->scratch) == 0)
			link_send(l, buf_data(&m->scratch), m->scratch.len);
		frame_free(&f);
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
link_send_kept(struct mesh *m, struct channel *ch, struct link *l)
{
	struct frame f;
	int rc = -1;

	frame_init(&f);
	f.action = ACTION_UNKNOWN;
	buf_reset(&m->scratch);
	if (frame_set(&f.action_name, "kept") == 0 && frame_set(&f.channel, ch->name) == 0 &&
	    frame_encode(&f, FORMAT_CBOR, &m->scratch) == 0)
		rc = link_send(l, buf_data(&m->scratch), m->scratch.len);
	frame_free(&f);
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
	n->next = ch->nodes;
	ch->nodes = n;
	log_info("linked to node %s at %s", n->hex, n->address);
	out_status(m, ACTION_LINKED, ch, n->hex, n->address, NULL);
	if (r->t)
		r->t->state = T_UP;
	link_announce(m, ch, l);
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
			r->t->state = T_SELF;
		/* Flushed, so the dialling end finishes its handshake and sees it too. */
		link_close(l, 1008, "self", 1);
		return;
	}
	if (r->t) {
		r->t->backoff_ms = BACKOFF_MIN_MS;
		memcpy(r->t->node, link_node(l), LINK_NODE_LEN);
	}
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
	if (link_send_kept(m, ch, l) < 0) {
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

static void
mesh_link_frame(void *ctx, struct link *l, const unsigned char *cbor, size_t len)
{
	struct mesh *m = ctx;
	struct lref *r = link_user(l);
	struct channel *ch = r->ch;
	struct fields f;
	struct node *n;

	if (ch->closed || m->stopping)
		return;
	if (fields_scan(cbor, len, &f) < 0 || !span_is(f.channel, ch->name)) {
		log_info("closing a link from %s: it sent a malformed frame", link_address(l));
		link_close(l, 1008, "malformed frame", 0);
		return;
	}
	if (r->waiting) {
		if (span_is(f.action, "kept")) {
			mesh_kept(m, r);
			return;
		}
		log_info("closing a link from %s: it sent a frame before keeping the link",
		    link_address(l));
		link_close(l, 1008, "protocol error", 0);
		return;
	}
	if (!(n = node_find(ch, link_node(l))) || n->active != l)
		return;
	if (span_is(f.action, "connect") && f.target.p) {
		int added = peers_add(&n->peers, f.target.p, f.target.n);
		if (added < 0) {
			link_close(l, 1008, "too many peers", 0);
			return;
		}
		if (added)
			out_raw(m, cbor, len);
	} else if (span_is(f.action, "disconnect") && f.target.p) {
		if (peers_del(&n->peers, f.target.p, f.target.n))
			out_raw(m, cbor, len);
	} else if (span_is(f.action, "broadcast") || span_is(f.action, "message")) {
		out_raw(m, cbor, len);
	} else if (log_level >= 2) {
		log_debug("ignoring a frame from a link that is no local peer event");
	}
}

static void
mesh_down(void *ctx, struct link *l, const char *why)
{
	struct mesh *m = ctx;
	struct lref *r = link_user(l);
	struct channel *ch = r->ch;
	struct target *t = r->t;
	int dup = r->dup || strcmp(why, "duplicate") == 0;
	struct node *n = link_is_up(l) ? node_find(ch, link_node(l)) : NULL;

	lref_unlink(r);
	flow_set(m, r, 0);
	if (n && n->active == l) {
		n->active = NULL;
		node_drop(n, why);
	}
	if (t) {
		t->link = NULL;
		if (t->state == T_SELF || strcmp(why, "self") == 0)
			t->state = T_SELF;
		else if (dup && link_is_up(l) && node_find(ch, link_node(l))) {
			memcpy(t->node, link_node(l), LINK_NODE_LEN);
			t->state = T_COVERED;
		} else {
			t->state = T_IDLE;
			target_schedule(t);
		}
	}
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

static int
mesh_known(void *ctx, const char *path)
{
	struct mesh *m = ctx;

	if (m->stopping)
		return 0;
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		if (!ch->closed && ch->keys && strcmp(ch->path, path) == 0)
			return 1;
	return 0;
}

static struct link *
mesh_accept(void *ctx, const char *path)
{
	struct mesh *m = ctx;

	if (m->stopping)
		return NULL;
	for (struct channel *ch = m->channels; ch; ch = ch->next)
		if (!ch->closed && ch->keys && strcmp(ch->path, path) == 0) {
			struct lref *r = lref_new(ch, NULL, 0);
			return r ? r->link : NULL;
		}
	return NULL;
}

/* ---- the mesh ---- */

struct mesh *
mesh_new(struct lws_context *cx, struct lws_vhost *vh, int port, size_t max_frame,
    size_t max_queue)
{
	struct mesh *m = calloc(1, sizeof *m);

	if (!m)
		return NULL;
	m->cx = cx;
	m->vh = vh;
	m->port = port;
	m->max_frame = max_frame;
	m->max_queue = max_queue;
	if (!(m->dv = derive_new())) {
		free(m);
		return NULL;
	}
	randombytes_buf(m->node, sizeof m->node);
	buf_init(&m->scratch, 0);
	link_set_acceptor(mesh_known, mesh_accept, m);
	return m;
}

void
mesh_set_output(struct mesh *m, struct loop_pipe *out)
{
	m->out = out;
}

/* A pending derivation takes ~0.2 s once per channel open: looking for its result every
 * 5 ms meanwhile is cheaper than another adopted fd, and costs nothing the rest of the time. */
#define DERIVE_POLL_US (5 * LWS_US_PER_MS)

static void
derive_due(lws_sorted_usec_list_t *sul)
{
	struct mesh *m = lws_container_of(sul, struct mesh, derive_sul);

	derive_collect(m->dv);
	if (m->deriving && !m->stopping)
		lws_sul_schedule(m->cx, 0, &m->derive_sul, derive_due, DERIVE_POLL_US);
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
	m->deriving--;
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
	if (frame_set(&f.channel, ch->name) == 0 && frame_set(&f.path, ch->path) == 0)
		out_frame(m, &f);
	frame_free(&f);
	for (struct target *t = ch->targets; t; t = t->next)
		target_dial(t);
}

int
mesh_open(struct mesh *m, const char *name)
{
	struct channel *ch;

	if (!keys_name_valid(name))
		return -1;
	if (channel_find(m, name, strlen(name)))
		return 0;
	if (!(ch = calloc(1, sizeof *ch)))
		return -1;
	if (!(ch->name = strdup(name)) ||
	    !(ch->job = derive_start(m->dv, name, channel_derived, ch))) {
		free(ch->name);
		free(ch);
		return -1;
	}
	ch->m = m;
	keys_random_hex(ch->path, PATH_BYTES);
	ch->next = m->channels;
	m->channels = ch;
	if (m->deriving++ == 0)
		lws_sul_schedule(m->cx, 0, &m->derive_sul, derive_due, DERIVE_POLL_US);
	log_debug("opened channel %s at path /%s", name, ch->path);
	return 0;
}

static void
mesh_close_channel(struct channel *ch)
{
	ch->closed = 1;
	while (ch->targets)
		target_free(ch->targets);
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
	struct target *t;

	if (!ch || !f->address || !f->path || f->port <= 0 || f->port > 65535)
		return;
	t = target_find(ch, f->address, (int)f->port, f->path);
	if (lost) {
		if (t)
			target_free(t);
		return;
	}
	if (t)
		return;
	if (!(t = calloc(1, sizeof *t)) || !(t->address = strdup(f->address)) ||
	    !(t->path = strdup(f->path)) ||
	    (f->interface && !(t->iface = strdup(f->interface)))) {
		if (t) {
			free(t->address);
			free(t->path);
			free(t);
		}
		log_error("out of memory");
		return;
	}
	t->ch = ch;
	t->port = (int)f->port;
	t->backoff_ms = BACKOFF_MIN_MS;
	t->state = T_IDLE;
	t->next = ch->targets;
	ch->targets = t;
	target_dial(t);
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
		if (f.channel && !ch && mesh_open(m, f.channel) < 0)
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
	frame_free(&f);
}

static void
link_send_or_drop(struct mesh *m, struct link *l, const unsigned char *p, size_t n)
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

/* connect/disconnect/broadcast/message of a local peer, as CBOR. */
static int
mesh_local(struct mesh *m, enum frame_action a, const unsigned char *p, size_t n)
{
	struct fields f;
	struct channel *ch;

	if (fields_scan(p, n, &f) < 0 || !f.channel.p ||
	    !(ch = channel_find(m, f.channel.p, f.channel.n)))
		return 0;
	if (a == ACTION_CONNECT && f.target.p) {
		if (peers_add(&ch->locals, f.target.p, f.target.n) < 0)
			log_error("too many local peers; a connect was not announced");
	} else if (a == ACTION_DISCONNECT && f.target.p) {
		peers_del(&ch->locals, f.target.p, f.target.n);
	} else if (a == ACTION_MESSAGE) {
		if (!f.target.p)
			return 1;
		for (struct node *nd = ch->nodes; nd; nd = nd->next)
			if (nd->active && peers_find(&nd->peers, f.target.p, f.target.n) >= 0) {
				link_send_or_drop(m, nd->active, p, n);
				return 1;
			}
		log_debug("no link carries the target of a message; dropped");
		return 1;
	}
	for (struct node *nd = ch->nodes; nd; nd = nd->next)
		if (nd->active)
			link_send_or_drop(m, nd->active, p, n);
	return 1;
}

void
mesh_input(struct mesh *m, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	enum frame_action a = frame_peek_action(fmt, raw, len);
	struct frame f;
	char err[128];

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
		break;
	default:
		if (m->out)
			loop_pipe_send_raw(m->out, fmt, raw, len);
		return;
	}
	if (fmt == FORMAT_CBOR) {
		if (!mesh_local(m, a, raw, len) && m->out)
			loop_pipe_send_raw(m->out, fmt, raw, len);
		return;
	}
	/* JSON: links carry CBOR, so encode it once here. */
	if (frame_decode(&f, fmt, raw, len, err, sizeof err) < 0) {
		if (log_once_per_burst("mesh: bad local"))
			log_error("skipping a frame that does not decode: %s", err);
		return;
	}
	buf_reset(&m->scratch);
	if (frame_encode(&f, FORMAT_CBOR, &m->scratch) == 0 &&
	    !mesh_local(m, a, buf_data(&m->scratch), m->scratch.len) && m->out)
		loop_pipe_send_raw(m->out, fmt, raw, len);
	frame_free(&f);
}

void
mesh_stop(struct mesh *m)
{
	m->stopping = 1;
	/* Every timer goes now, while the context lives: none is armed again once stopping,
	 * and mesh_free, after lws_context_destroy, must not touch lws's timer lists. */
	lws_sul_cancel(&m->stall);
	lws_sul_cancel(&m->derive_sul);
	for (struct channel *ch = m->channels; ch; ch = ch->next) {
		for (struct target *t = ch->targets; t; t = t->next)
			lws_sul_cancel(&t->sul);
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
	m->out = NULL;
	m->stopping = 1;
	while (m->channels) {
		struct channel *ch = m->channels;
		while (ch->targets)
			target_free(ch->targets);
		while (ch->nodes) {
			struct node *n = ch->nodes;
			ch->nodes = n->next;
			peers_free(&n->peers);
			free(n);
		}
		channel_free(ch);
	}
	link_set_acceptor(NULL, NULL, NULL);
	derive_free(m->dv);
	buf_free(&m->scratch);
	sodium_memzero(m, sizeof *m);
	free(m);
}
