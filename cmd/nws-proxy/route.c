/* route: the channels of the proxy's clients and the one pipeline behind them. A channel
 * exists while it has a local client: it is opened in the pipeline at the first and closed
 * at the last. A client's broadcast goes to every other local client and, while the
 * channel has a remote peer, into the pipeline; remote events from the pipeline fan out to
 * the local clients of the channel. */
#include "route.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "buf.h"
#include "idset.h"
#include "jsontext.h"
#include "keys.h"
#include "log.h"
#include "nws.h"

#define PEER_ID_MAX 64
#define LINKS_MAX 256        /* link states remembered per channel, for the console */
/* Channel keys being derived (Argon2id, ~0.1 s of a core and 64 MiB each) at once, past
 * which a web page (a client with an Origin) may not open one more channel: in all, and
 * for the pages of one origin. Any page can open channels in a loop, and must not keep a
 * core busy for long or starve the other pages. A program without an Origin is not
 * refused: it runs on this machine and could run Argon2id itself. */
#define DERIVING_MAX 16
#define DERIVING_MAX_ORIGIN 4

struct link {
	char node[PEER_ID_MAX + 1];
	char address[80];
};

/* One client in its channel; conn is the server's side of it. */
struct peer {
	void *conn;
	struct channel *ch;          /* NULL once it left */
	struct peer *prev, *next;    /* the peers of ch */
	char id[PROXY_ID_LEN + 1];
	struct proxy_client_info info;
	unsigned dead : 1;           /* closed: told nothing more, leaves when the server says */
};

struct channel {
	char *name;                  /* a key: wiped when the channel closes */
	uint64_t origin;             /* of the client that opened it (see DERIVING_MAX) */
	struct peer *clients, *last;
	struct idset remotes;        /* ids of the remote peers (IDSET_PEERS_MAX at most) */
	struct link *links;
	size_t nlinks, caplinks;
	struct channel *next;
};

struct route {
	const struct proxy_config *cfg;
	const struct proxy_conn_ops *conn;
	struct channel *channels;
	struct pipeline *pipe;
	struct buf held;             /* frames for the head that did not fit: u32 len + CBOR */
	struct buf enc_json, enc_cbor;
	int paused, net_down, stopping;
	proxy_done_fn stop_done;
	void *stop_ctx;
};

/* Channels and peers */

static struct channel *
channel_find(struct route *r, const char *name)
{
	if (!name)
		return NULL;
	for (struct channel *ch = r->channels; ch; ch = ch->next)
		if (!strcmp(ch->name, name))
			return ch;
	return NULL;
}

static void
channel_free(struct route *r, struct channel *ch)
{
	for (struct channel **pp = &r->channels; *pp; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	sodium_memzero(ch->name, strlen(ch->name));
	free(ch->name);
	idset_clear(&ch->remotes);
	free(ch->links);
	free(ch);
}

static struct peer *
local_find(struct channel *ch, const char *id)
{
	for (struct peer *c = ch->clients; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

/* 1 when id is new and was added. */
static int
remote_add(struct channel *ch, const char *id)
{
	if (strlen(id) > PEER_ID_MAX || idset_get(&ch->remotes, id) || local_find(ch, id))
		return 0;
	if (idset_add(&ch->remotes, id, NULL) < 0) {
		if (log_once_per_burst("remotes"))
			log_error("too many remote peers in one channel; ignoring new ones");
		return 0;
	}
	return 1;
}

static void
link_set(struct channel *ch, const char *node, const char *address, int up)
{
	size_t i;
	for (i = 0; i < ch->nlinks; i++)
		if (!strcmp(ch->links[i].node, node))
			break;
	if (!up) {
		if (i < ch->nlinks)
			ch->links[i] = ch->links[--ch->nlinks];
		return;
	}
	if (i == ch->nlinks) {
		if (ch->nlinks == ch->caplinks) {
			size_t cap = ch->caplinks ? ch->caplinks * 2 : 4;
			struct link *l;
			if (cap > LINKS_MAX || !(l = realloc(ch->links, cap * sizeof *l)))
				return;
			ch->links = l;
			ch->caplinks = cap;
		}
		ch->nlinks++;
	}
	snprintf(ch->links[i].node, sizeof ch->links[i].node, "%s", node);
	snprintf(ch->links[i].address, sizeof ch->links[i].address, "%s",
	    address ? address : "");
}

/* To connections. A send that closed the connection (too slow) marks its peer dead, so
 * the rest of a fan-out skips it; the server runs its leave after route returns. */

static void
peer_send(struct route *r, struct peer *p, int binary, const void *data, size_t n)
{
	if (!p->dead && r->conn->send(p->conn, binary, data, n) < 0)
		p->dead = 1;
}

static void
peer_send_frame(struct route *r, struct peer *p, const struct frame *f)
{
	if (!p->dead && r->conn->send_frame(p->conn, f) < 0)
		p->dead = 1;
}

static void
peer_close(struct route *r, struct peer *p, int code, const char *reason)
{
	if (p->dead)
		return;
	p->dead = 1;
	r->conn->close(p->conn, code, reason);
}

/* The pipeline */

static void
rx_all(struct route *r, int on)
{
	r->paused = !on;
	for (struct channel *ch = r->channels; ch; ch = ch->next)
		for (struct peer *c = ch->clients; c; c = c->next)
			r->conn->pause(c->conn, !on);
}

/* Into the head, in order. When the head's queue passes half full, clients are not read
 * until it drains; a frame that did not fit at all is held, and frames after it queue
 * behind it, so the pipeline sees them in order. */
static void
up_send(struct route *r, const struct frame *f)
{
	if (!r->pipe)
		return;
	if (!r->held.len) {
		int rc = pipeline_send(r->pipe, f);
		if (rc == 0)
			return;
		if (rc == 1) {
			if (!r->paused)
				rx_all(r, 0);
			return;
		}
	}
	size_t at = r->held.len;
	if (buf_reserve(&r->held, 4) < 0)
		goto drop;
	r->held.len += 4;
	if (frame_encode(f, FORMAT_CBOR, &r->held) < 0) {
		r->held.len = at;
		goto drop;
	}
	uint32_t n = (uint32_t)(r->held.len - at - 4);
	memcpy(buf_data(&r->held) + at, &n, 4);
	if (!r->paused)
		rx_all(r, 0);
	return;
drop:
	if (log_once_per_burst("held"))
		log_error("the network pipeline is not keeping up; a frame was dropped");
}

static void
up_event(struct route *r, struct channel *ch, enum frame_action a, const char *target)
{
	struct frame f;
	frame_init(&f);
	f.action = a;
	f.channel = ch->name;
	f.target = (char *)target;
	up_send(r, &f);
}

static void
on_drain(void *ctx)
{
	struct route *r = ctx;
	int over = 0;
	while (r->held.len && r->pipe) {
		uint32_t n;
		memcpy(&n, buf_data(&r->held), 4);
		int rc = pipeline_send_raw(r->pipe, FORMAT_CBOR, buf_data(&r->held) + 4, n);
		if (rc < 0)
			return;
		over |= rc == 1;
		buf_consume(&r->held, 4 + n);
	}
	/* Over half full again: the next on_drain resumes reading. */
	if (r->paused && !over)
		rx_all(r, 1);
}

/* To clients */

static void
tell(struct route *r, struct peer *to, enum frame_action a, const char *source,
    const char *target)
{
	struct frame f;
	frame_init(&f);
	f.action = a;
	f.source = (char *)source;
	f.target = (char *)target;
	peer_send_frame(r, to, &f);
}

static void
tell_error(struct route *r, struct peer *to, int code, const char *reason)
{
	struct frame f;

	frame_error(&f, code, reason);
	peer_send_frame(r, to, &f);
}

/* How client c takes a fanned-out f: not at all, CBOR, JSON, or a broadcast's bytes
 * as they are (a JSON client's binary message: the seed's form, without its sender; one
 * that asked with ?bytes=base64 gets a JSON broadcast with its source and the bytes in
 * base64, as JSON clients receive bytes elsewhere). */
enum takes { TAKES_NOTHING, TAKES_CBOR, TAKES_JSON, TAKES_BYTES };

static enum takes
takes(const struct peer *c, const struct peer *except, const struct frame *f)
{
	if (c == except || c->dead)
		return TAKES_NOTHING;
	if (c->info.cbor)
		return TAKES_CBOR;
	if (f->action == ACTION_BROADCAST && f->data_kind == DATA_BYTES &&
	    !c->info.bytes_base64)
		return TAKES_BYTES;
	return TAKES_JSON;
}

/* f (no channel) to every local client of ch but except. Encoded once per format when
 * several clients take it; a lone client of a format has it encoded straight into its
 * queue (one pass over a 1 MiB broadcast instead of two). */
static void
fanout(struct route *r, struct channel *ch, struct peer *except, const struct frame *f)
{
	int json = 0, cbor = 0, n[4] = { 0 };

	for (struct peer *c = ch->clients; c; c = c->next)
		n[takes(c, except, f)]++;
	for (struct peer *c = ch->clients; c; c = c->next) {
		enum takes t = takes(c, except, f);
		if (t == TAKES_NOTHING)
			continue;
		if (t == TAKES_BYTES) {
			peer_send(r, c, 1, f->data, f->data_len);
		} else if (n[t] == 1) {
			peer_send_frame(r, c, f);
		} else if (t == TAKES_CBOR) {
			if (!cbor) {
				buf_reset(&r->enc_cbor);
				cbor = frame_encode(f, FORMAT_CBOR, &r->enc_cbor) < 0 ? -1 : 1;
			}
			if (cbor > 0)
				peer_send(r, c, 1, buf_data(&r->enc_cbor), r->enc_cbor.len);
		} else {
			if (!json) {
				buf_reset(&r->enc_json);
				json = frame_encode(f, FORMAT_JSON, &r->enc_json) < 0 ? -1 : 1;
			}
			if (json > 0)
				peer_send(r, c, 0, buf_data(&r->enc_json), r->enc_json.len - 1);
		}
	}
}

/* A connect or disconnect of peer id to every local client of ch. */
static void
tell_all(struct route *r, struct channel *ch, enum frame_action a, const char *id)
{
	for (struct peer *c = ch->clients; c; c = c->next)
		tell(r, c, a, c->id, id);
}

static void
tell_links(struct route *r, struct channel *ch, const struct frame *f)
{
	for (struct peer *c = ch->clients; c; c = c->next)
		if (c->info.link_events)
			peer_send_frame(r, c, f);
}

static void
tell_link_state(struct route *r, struct peer *c)
{
	struct frame f;
	for (size_t i = 0; i < c->ch->nlinks; i++) {
		frame_init(&f);
		f.action = ACTION_LINKED;
		f.node = c->ch->links[i].node;
		f.address = c->ch->links[i].address;
		peer_send_frame(r, c, &f);
	}
	if (r->net_down)
		tell_error(r, c, NWS_EXIT_UNAVAILABLE, "cannot reach avahi-daemon: only peers on this machine are "
		    "reachable until it runs");
}

/* Leaving */

/* c leaves its channel (told to the others and the pipeline); c itself stays. */
static void
peer_detach(struct route *r, struct peer *c)
{
	struct channel *ch = c->ch;
	if (!ch)
		return;
	if (c->prev)
		c->prev->next = c->next;
	else
		ch->clients = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		ch->last = c->prev;
	c->prev = c->next = NULL;
	c->ch = NULL;
	up_event(r, ch, ACTION_DISCONNECT, c->id);
	tell_all(r, ch, ACTION_DISCONNECT, c->id);
	if (!ch->clients) {
		up_event(r, ch, ACTION_CLOSE, NULL);
		channel_free(r, ch);
	}
}

static void
route_leave(void *ctx, void *peer)
{
	peer_detach(ctx, peer);
	free(peer);
}

/* Joining */

/* 1 when opening one more channel for a client of origin would pass a cap on the keys
 * being derived. */
static int
deriving_full(struct route *r, uint64_t origin)
{
	const char *names[DERIVING_MAX];
	size_t total, mine = 0;

	if (!r->pipe || !origin)
		return 0;
	if ((total = pipeline_deriving(r->pipe, names, DERIVING_MAX)) >= DERIVING_MAX)
		return 1;
	for (size_t i = 0; i < total; i++) {
		struct channel *ch = channel_find(r, names[i]);
		mine += ch && ch->origin == origin;
	}
	return mine >= DERIVING_MAX_ORIGIN;
}

/* The channel name for c, opened (in the pipeline too) if new; NULL when c was closed. */
static struct channel *
channel_open(struct route *r, struct peer *c, const char *name)
{
	struct channel *ch = channel_find(r, name);
	if (ch)
		return ch;
	if (deriving_full(r, c->info.origin)) {
		tell_error(r, c, 429, "too many channels are being opened at once; try again "
		    "in a moment");
		peer_close(r, c, 1013, "try again later");
		return NULL;
	}
	if (!(ch = calloc(1, sizeof *ch)) || !(ch->name = strdup(name))) {
		free(ch);
		peer_close(r, c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		return NULL;
	}
	ch->origin = c->info.origin;
	idset_init(&ch->remotes, IDSET_PEERS_MAX);
	ch->next = r->channels;
	r->channels = ch;
	up_event(r, ch, ACTION_OPEN, NULL);
	log_debug("channel %s opened", name);
	return ch;
}

static void *
route_join(void *ctx, void *conn, const char *name, const struct proxy_client_info *info)
{
	struct route *r = ctx;
	struct peer *c = calloc(1, sizeof *c);
	struct channel *ch;

	if (!c) {
		r->conn->close(conn, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
		return NULL;
	}
	c->conn = conn;
	c->info = *info;
	if (!(ch = channel_open(r, c, name))) {
		free(c);
		return NULL;
	}
	keys_random_hex(c->id, PROXY_ID_LEN / 2);
	c->ch = ch;
	c->prev = ch->last;
	if (ch->last)
		ch->last->next = c;
	else
		ch->clients = c;
	ch->last = c;
	if (r->paused)
		r->conn->pause(conn, 1);
	up_event(r, ch, ACTION_CONNECT, c->id);
	for (struct peer *l = ch->clients; l; l = l->next) {
		if (l == c || l->dead)
			continue;
		tell(r, c, ACTION_CONNECT, c->id, l->id);
		tell(r, l, ACTION_CONNECT, l->id, c->id);
	}
	size_t pos = 0;
	for (struct idset_item *it; (it = idset_next(&ch->remotes, &pos));)
		tell(r, c, ACTION_CONNECT, c->id, it->id);
	if (c->info.link_events)
		tell_link_state(r, c);
	return c;
}

/* From clients */

/* A broadcast or end goes into the pipeline only while the channel has a remote peer
 * (one whose connect came out of the tail): nws-link would hand it to no link anyway.
 * Measured (tests/bench/README): otherwise each local broadcast woke the stages about
 * twice (nws-browse, then nws-link), on a 2-core machine whose cores also run the
 * clients, and the issue saw a local round trip at 2-3x its --local time. Now they wake
 * only for their periodic ticks. Opens, closes, connects and disconnects still go:
 * they are what makes a remote peer appear. Its local receivers are queued first and
 * written at the end of this pass of the loop (server_flush), before the head, whose
 * write is due as the next pass begins. */
static void
up_data(struct route *r, struct channel *ch, struct frame *f)
{
	if (!idset_count(&ch->remotes))
		return;
	f->channel = ch->name;
	up_send(r, f);
}

static void
input_broadcast(struct route *r, struct peer *c, enum frame_data kind, unsigned char *data,
    size_t len)
{
	struct frame f;
	frame_init(&f);
	f.action = ACTION_BROADCAST;
	f.source = c->id;
	f.data_kind = kind;
	f.data = data;
	f.data_len = len;
	fanout(r, c->ch, c, &f);
	up_data(r, c->ch, &f);
}

/* A client's end of input, told to every other peer like a broadcast (nws(7) FRAMES). */
static void
input_end(struct route *r, struct peer *c)
{
	struct frame f;
	frame_init(&f);
	f.action = ACTION_END;
	f.source = c->id;
	fanout(r, c->ch, c, &f);
	up_data(r, c->ch, &f);
}

static void
input_message(struct route *r, struct peer *c, const char *target, enum frame_data kind,
    unsigned char *data, size_t len)
{
	struct frame f;
	struct peer *t = local_find(c->ch, target);
	frame_init(&f);
	f.action = ACTION_MESSAGE;
	f.source = c->id;
	f.target = (char *)target;
	f.data_kind = kind;
	f.data = data;
	f.data_len = len;
	if (t) {
		peer_send_frame(r, t, &f);
	} else if (idset_get(&c->ch->remotes, target)) {
		f.channel = c->ch->name;
		up_send(r, &f);
	} else {
		char why[PEER_ID_MAX + 64];
		snprintf(why, sizeof why, "no peer \"%.*s\" in this channel", PEER_ID_MAX, target);
		tell_error(r, c, 404, why);
	}
}

static int
span_is(const unsigned char *s, size_t n, const char *lit)
{
	return n == strlen(lit) && !memcmp(s, lit, n);
}

/* The frames clients send most, {"action":"broadcast","data":"text"} and a message with
 * a "target", routed from where they lie: 1 when handled. The full decode (jansson,
 * allocating every field) was the proxy's largest cost per message. Anything else
 * (escapes, other keys or values, duplicates) is left to it, so errors read the same. */
static int
input_plain(struct route *r, struct peer *c, const unsigned char *p, size_t n)
{
	struct jsontext_member m[3];
	const struct jsontext_member *action = NULL, *data = NULL, *target = NULL;
	char to[PEER_ID_MAX + 1];
	int k = jsontext_plain_members(p, n, m, 3);

	for (int i = 0; i < k; i++) {
		const struct jsontext_member **slot = span_is(m[i].key, m[i].klen, "action") ?
		    &action : span_is(m[i].key, m[i].klen, "data") ? &data :
		    span_is(m[i].key, m[i].klen, "target") ? &target : NULL;
		if (!slot || *slot)
			return 0;
		*slot = &m[i];
	}
	if (!action || !data)
		return 0;
	if (!target && span_is(action->val, action->vlen, "broadcast")) {
		input_broadcast(r, c, DATA_TEXT, (unsigned char *)data->val, data->vlen);
		return 1;
	}
	if (target && target->vlen <= PEER_ID_MAX &&
	    span_is(action->val, action->vlen, "message")) {
		memcpy(to, target->val, target->vlen);
		to[target->vlen] = '\0';
		input_message(r, c, to, DATA_TEXT, (unsigned char *)data->val, data->vlen);
		return 1;
	}
	return 0;
}

/* A decoded frame from client c. */
static void
input_frame(struct route *r, struct peer *c, struct frame *f)
{
	char err[160];

	switch (f->action) {
	case ACTION_BROADCAST:
		if (f->data_kind == DATA_NONE)
			tell_error(r, c, 400, "a broadcast needs \"data\"");
		else
			input_broadcast(r, c, f->data_kind, f->data, f->data_len);
		break;
	case ACTION_MESSAGE:
		if (!f->target || f->data_kind == DATA_NONE)
			tell_error(r, c, 400, "a message needs \"target\" and \"data\"");
		else
			input_message(r, c, f->target, f->data_kind, f->data, f->data_len);
		break;
	case ACTION_STATUS:
		tell(r, c, ACTION_STATUS, c->id, c->id);
		break;
	case ACTION_END:
		input_end(r, c);
		break;
	case ACTION_UNKNOWN:
		snprintf(err, sizeof err, "unknown action \"%.40s\": send broadcast, message "
		    "or status", frame_action_name(f));
		tell_error(r, c, 400, err);
		break;
	default:
		snprintf(err, sizeof err, "\"%s\" is not a client action: send broadcast, "
		    "message, end or status", frame_action_name(f));
		tell_error(r, c, 400, err);
		break;
	}
}

static void
route_input(void *ctx, void *peer, int binary, const unsigned char *p, size_t n)
{
	struct route *r = ctx;
	struct peer *c = peer;
	struct frame f;
	char err[160];

	if (c->dead || !c->ch)
		return;
	if (binary && !c->info.cbor) {
		input_broadcast(r, c, DATA_BYTES, (unsigned char *)p, n);
		return;
	}
	if (!binary && !c->info.cbor && input_plain(r, c, p, n))
		return;
	if (frame_decode(&f, binary ? FORMAT_CBOR : FORMAT_JSON, p, n, err, sizeof err) < 0) {
		tell_error(r, c, 400, err);
		return;
	}
	input_frame(r, c, &f);
	frame_clear(&f);
}

/* From the pipeline */

static void
on_network_error(struct route *r, const struct frame *f)
{
	if (f->code != NWS_EXIT_UNAVAILABLE) {
		/* The stage said it on stderr already. */
		return;
	}
	if (!r->net_down)
		log_error("cannot reach avahi-daemon: serving peers on this machine only "
		    "until it runs (then this proxy joins the network by itself)");
	r->net_down = 1;
	for (struct channel *ch = r->channels; ch; ch = ch->next)
		tell_links(r, ch, f);
}

/* A remote peer's broadcast, end or message, to the local clients it is for: out
 * carries only the fields a client is told. */
static void
tail_data(struct route *r, struct channel *ch, const struct frame *f)
{
	struct frame out;
	frame_init(&out);
	out.action = f->action;
	out.source = f->source;
	if (!ch || !f->source)
		return;
	if (f->action == ACTION_END) {
		fanout(r, ch, NULL, &out);
		return;
	}
	if (f->data_kind == DATA_NONE)
		return;
	out.data_kind = f->data_kind;
	out.data = f->data;
	out.data_len = f->data_len;
	if (f->action == ACTION_BROADCAST) {
		fanout(r, ch, NULL, &out);
		return;
	}
	struct peer *t = f->target ? local_find(ch, f->target) : NULL;
	if (t) {
		out.target = f->target;
		peer_send_frame(r, t, &out);
	}
}

/* A link or advertisement state, to the clients that asked for them (?events=link). */
static void
tail_state(struct route *r, struct channel *ch, const struct frame *f)
{
	struct frame out;
	frame_init(&out);
	out.action = f->action;
	if (f->action == ACTION_ADVERTISED) {
		if (r->net_down)
			log_info("avahi-daemon is reachable again: joining the network");
		out.instance = f->instance;
	} else if (ch && f->node) {
		link_set(ch, f->node, f->address, f->action == ACTION_LINKED);
		out.node = f->node;
		out.address = f->address;
	} else {
		ch = NULL;
	}
	r->net_down = 0;
	if (ch)
		tell_links(r, ch, &out);
}

static void
tail_route(struct route *r, const struct frame *f)
{
	struct channel *ch = channel_find(r, f->channel);

	switch (f->action) {
	case ACTION_CONNECT:
		if (ch && f->target && remote_add(ch, f->target))
			tell_all(r, ch, ACTION_CONNECT, f->target);
		break;
	case ACTION_DISCONNECT:
		if (ch && f->target && idset_del(&ch->remotes, f->target))
			tell_all(r, ch, ACTION_DISCONNECT, f->target);
		break;
	case ACTION_BROADCAST:
	case ACTION_END:
	case ACTION_MESSAGE:
		tail_data(r, ch, f);
		break;
	case ACTION_LINKED:
	case ACTION_UNLINKED:
	case ACTION_ADVERTISED:
		tail_state(r, ch, f);
		break;
	case ACTION_ERROR:
		on_network_error(r, f);
		break;
	default:
		/* open/close passed through, found/lost, listening: the stages' business. */
		break;
	}
}

static void
on_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	struct frame f;
	char err[160], store[3 * (PEER_ID_MAX + 1) + KEYS_NAME_MAX + 1];

	/* Most tail frames are remote broadcasts: viewed where they lie. Decoding them
	 * (libcbor builds and counts every string, each field copied) was this proxy's
	 * largest cost per message, and with 1 MiB broadcasts a fifth of its time. */
	if (frame_read(&f, fmt, raw, len, store, sizeof store, err, sizeof err) < 0) {
		if (log_once_per_burst("tail"))
			log_error("skipping a frame from the pipeline: %s", err);
		return;
	}
	tail_route(ctx, &f);
	frame_release(&f, store, sizeof store);
}

/* Life */

struct route *
route_new(const struct proxy_config *cfg, const struct proxy_conn_ops *conn)
{
	struct route *r = calloc(1, sizeof *r);
	if (!r)
		return NULL;
	r->cfg = cfg;
	r->conn = conn;
	buf_init(&r->held, cfg->max_queue);
	buf_init(&r->enc_json, 0);
	buf_init(&r->enc_cbor, 0);
	return r;
}

static int
route_start(void *ctx, struct lws_context *cx, struct lws_vhost *vh)
{
	struct route *r = ctx;
	if (r->cfg->local_only)
		return 0;
	if (!(r->pipe = pipeline_start(cx, vh, &r->cfg->pipe, on_frame, on_drain, r)))
		log_error("cannot start the network pipeline (nws-browse | nws-link | "
		    "nws-advertise); serving peers on this machine only");
	return 0;
}

static void
on_pipeline_done(void *ctx)
{
	struct route *r = ctx;
	if (r->stop_done)
		r->stop_done(r->stop_ctx);
}

static void
route_stop(void *ctx, proxy_done_fn done, void *done_ctx)
{
	struct route *r = ctx;
	if (r->stopping)
		return;
	r->stopping = 1;
	r->stop_done = done;
	r->stop_ctx = done_ctx;
	/* Every client leaves now (each channel holds one at least while it exists), so
	 * disconnect and close frames withdraw us from the network before the pipeline
	 * ends; the server frees the peers with their leaves. */
	while (r->channels) {
		struct peer *c = r->channels->clients;
		peer_close(r, c, LWS_CLOSE_STATUS_GOINGAWAY, "nws-proxy is shutting down");
		peer_detach(r, c);
	}
	on_drain(r);
	if (!r->pipe) {
		done(done_ctx);
		return;
	}
	struct pipeline *p = r->pipe;
	r->pipe = NULL;
	pipeline_stop(p, on_pipeline_done, r);
}

void
route_free(struct route *r)
{
	if (!r)
		return;
	while (r->channels) {
		struct channel *ch = r->channels;
		while (ch->clients) {
			struct peer *c = ch->clients;
			ch->clients = c->next;
			free(c);
		}
		channel_free(r, ch);
	}
	buf_clear(&r->held);
	buf_clear(&r->enc_json);
	buf_clear(&r->enc_cbor);
	free(r);
}

const struct proxy_route_ops route_ops = {
	.start = route_start,
	.join = route_join,
	.input = route_input,
	.leave = route_leave,
	.stop = route_stop,
};
