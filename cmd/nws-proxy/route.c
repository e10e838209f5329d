/* route: the channels of the proxy's clients and the one pipeline behind them. A channel
 * exists while it has a local client: it is opened in the pipeline at the first and closed
 * at the last. A client's broadcast goes to every other local client and, while the
 * channel has a remote peer, into the pipeline; remote events from the pipeline fan out to
 * the local clients of the channel. */
#include "proxy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "jsontext.h"
#include "keys.h"
#include "log.h"

#define PEER_ID_MAX 64
#define REMOTES_MAX 4096     /* remote peers remembered per channel */
#define LINKS_MAX 256        /* link states remembered per channel, for the console */
/* Channel keys being derived (Argon2id, ~0.1 s of a core and 64 MiB each) at once, past
 * which a web page (a client with an Origin) may not open one more channel: in all, and
 * for the pages of one origin. Any page can open channels in a loop, and must not keep a
 * core busy for long or starve the other pages. A program without an Origin is not
 * refused: it runs on this machine and could run Argon2id itself. */
#define DERIVING_MAX 16
#define DERIVING_MAX_ORIGIN 4

struct peer_id {
	char s[PEER_ID_MAX + 1];
};

struct link {
	char node[PEER_ID_MAX + 1];
	char address[80];
};

struct channel {
	char *name;                  /* a key: wiped when the channel closes */
	uint64_t origin;             /* of the client that opened it (see DERIVING_MAX) */
	struct client *clients, *last;
	struct peer_id *remotes;
	size_t nremotes, capremotes;
	struct link *links;
	size_t nlinks, caplinks;
	struct channel *next;
};

static const struct proxy_config *cfg;
static struct channel *channels;
static struct pipeline *pipe_;
static struct client *reap;        /* closed clients still to leave their channel */
static struct buf held;            /* frames for the head that did not fit: u32 len + CBOR */
static struct buf enc_json, enc_cbor;
static int paused, net_down, stopping;
static void (*stop_done)(void);

/* Channels and peers */

static struct channel *
channel_find(const char *name)
{
	if (!name)
		return NULL;
	for (struct channel *ch = channels; ch; ch = ch->next)
		if (!strcmp(ch->name, name))
			return ch;
	return NULL;
}

static void
channel_free(struct channel *ch)
{
	for (struct channel **pp = &channels; *pp; pp = &(*pp)->next)
		if (*pp == ch) {
			*pp = ch->next;
			break;
		}
	sodium_memzero(ch->name, strlen(ch->name));
	free(ch->name);
	free(ch->remotes);
	free(ch->links);
	free(ch);
}

static struct client *
local_find(struct channel *ch, const char *id)
{
	for (struct client *c = ch->clients; c; c = c->next)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

static ssize_t
remote_find(struct channel *ch, const char *id)
{
	for (size_t i = 0; i < ch->nremotes; i++)
		if (!strcmp(ch->remotes[i].s, id))
			return (ssize_t)i;
	return -1;
}

/* 1 when id is new and was added. */
static int
remote_add(struct channel *ch, const char *id)
{
	if (strlen(id) > PEER_ID_MAX || remote_find(ch, id) >= 0 || local_find(ch, id))
		return 0;
	if (ch->nremotes == ch->capremotes) {
		size_t cap = ch->capremotes ? ch->capremotes * 2 : 8;
		struct peer_id *r;
		if (cap > REMOTES_MAX || !(r = realloc(ch->remotes, cap * sizeof *r))) {
			if (log_once_per_burst("remotes"))
				log_error("too many remote peers in one channel; ignoring new ones");
			return 0;
		}
		ch->remotes = r;
		ch->capremotes = cap;
	}
	snprintf(ch->remotes[ch->nremotes++].s, PEER_ID_MAX + 1, "%s", id);
	return 1;
}

static int
remote_del(struct channel *ch, const char *id)
{
	ssize_t i = remote_find(ch, id);
	if (i < 0)
		return 0;
	ch->remotes[i] = ch->remotes[--ch->nremotes];
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

/* The pipeline */

static void
rx_all(int on)
{
	paused = !on;
	for (struct channel *ch = channels; ch; ch = ch->next)
		for (struct client *c = ch->clients; c; c = c->next)
			lws_rx_flow_control(c->wsi, on);
}

/* Into the head, in order. When the head's queue passes half full, clients are not read
 * until it drains; a frame that did not fit at all is held, and frames after it queue
 * behind it, so the pipeline sees them in order. */
static void
up_send(const struct frame *f)
{
	if (!pipe_)
		return;
	if (!held.len) {
		int rc = pipeline_send(pipe_, f);
		if (rc == 0)
			return;
		if (rc == 1) {
			if (!paused)
				rx_all(0);
			return;
		}
	}
	size_t at = held.len;
	if (buf_reserve(&held, 4) < 0)
		goto drop;
	held.len += 4;
	if (frame_encode(f, FORMAT_CBOR, &held) < 0) {
		held.len = at;
		goto drop;
	}
	uint32_t n = (uint32_t)(held.len - at - 4);
	memcpy(buf_data(&held) + at, &n, 4);
	if (!paused)
		rx_all(0);
	return;
drop:
	if (log_once_per_burst("held"))
		log_error("the network pipeline is not keeping up; a frame was dropped");
}

static void
up_event(struct channel *ch, enum frame_action a, const char *target)
{
	struct frame f;
	frame_init(&f);
	f.action = a;
	f.channel = ch->name;
	f.target = (char *)target;
	up_send(&f);
}

static void
on_drain(void *ctx)
{
	int over = 0;
	(void)ctx;
	while (held.len && pipe_) {
		uint32_t n;
		memcpy(&n, buf_data(&held), 4);
		int rc = pipeline_send_raw(pipe_, FORMAT_CBOR, buf_data(&held) + 4, n);
		if (rc < 0)
			return;
		over |= rc == 1;
		buf_consume(&held, 4 + n);
	}
	/* Over half full again: the next on_drain resumes reading. */
	if (paused && !over)
		rx_all(1);
}

/* To clients */

static void
tell(struct client *to, enum frame_action a, const char *source, const char *target)
{
	struct frame f;
	frame_init(&f);
	f.action = a;
	f.source = (char *)source;
	f.target = (char *)target;
	client_send_frame(to, &f);
}

static void
tell_error(struct client *to, int code, const char *reason)
{
	struct frame f;

	frame_error(&f, code, reason);
	client_send_frame(to, &f);
}

/* f (no channel) to every local client of ch but except, encoded once per format. A
 * broadcast of bytes reaches a JSON client as a binary message of those bytes (the seed's
 * form, without its sender), or, if it asked with ?bytes=base64, as a JSON broadcast
 * with its source and the bytes in base64, as JSON clients receive bytes elsewhere. */
static void
fanout(struct channel *ch, struct client *except, const struct frame *f)
{
	int json = 0, cbor = 0;
	for (struct client *c = ch->clients; c; c = c->next) {
		if (c == except || c->dead)
			continue;
		if (c->cbor) {
			if (!cbor) {
				buf_reset(&enc_cbor);
				cbor = frame_encode(f, FORMAT_CBOR, &enc_cbor) < 0 ? -1 : 1;
			}
			if (cbor > 0)
				client_send(c, 1, buf_data(&enc_cbor), enc_cbor.len);
		} else if (f->action == ACTION_BROADCAST && f->data_kind == DATA_BYTES &&
		    !c->bytes_base64) {
			client_send(c, 1, f->data, f->data_len);
		} else {
			if (!json) {
				buf_reset(&enc_json);
				json = frame_encode(f, FORMAT_JSON, &enc_json) < 0 ? -1 : 1;
			}
			if (json > 0)
				client_send(c, 0, buf_data(&enc_json), enc_json.len - 1);
		}
	}
}

static void
tell_links(struct channel *ch, struct client *only, const struct frame *f)
{
	for (struct client *c = ch->clients; c; c = c->next)
		if (c->link_events && (!only || c == only))
			client_send_frame(c, f);
}

static void
tell_link_state(struct client *c)
{
	struct frame f;
	for (size_t i = 0; i < c->ch->nlinks; i++) {
		frame_init(&f);
		f.action = ACTION_LINKED;
		f.node = c->ch->links[i].node;
		f.address = c->ch->links[i].address;
		client_send_frame(c, &f);
	}
	if (net_down)
		tell_error(c, 69, "cannot reach avahi-daemon: only peers on this machine are "
		    "reachable until it runs");
}

/* Leaving */

static void
leave_one(struct client *c)
{
	for (struct client **pp = &reap; *pp; pp = &(*pp)->reap_next)
		if (*pp == c) {
			*pp = c->reap_next;
			break;
		}
	c->reaping = 0;
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
	up_event(ch, ACTION_DISCONNECT, c->id);
	for (struct client *l = ch->clients; l; l = l->next)
		tell(l, ACTION_DISCONNECT, l->id, c->id);
	if (!ch->clients) {
		up_event(ch, ACTION_CLOSE, NULL);
		channel_free(ch);
	}
}

static void
reap_run(void)
{
	while (reap)
		leave_one(reap);
}

void
route_dead(struct client *c)
{
	if (!c->ch || c->reaping)
		return;
	c->reaping = 1;
	c->reap_next = reap;
	reap = c;
}

void
route_leave(struct client *c)
{
	leave_one(c);
	reap_run();
}

/* Joining */

/* 1 when opening one more channel for c would pass a cap on the keys being derived. */
static int
deriving_full(const struct client *c)
{
	const char *names[DERIVING_MAX];
	size_t total, mine = 0;

	if (!pipe_ || !c->origin)
		return 0;
	if ((total = pipeline_deriving(pipe_, names, DERIVING_MAX)) >= DERIVING_MAX)
		return 1;
	for (size_t i = 0; i < total; i++) {
		struct channel *ch = channel_find(names[i]);
		mine += ch && ch->origin == c->origin;
	}
	return mine >= DERIVING_MAX_ORIGIN;
}

void
route_join(struct client *c, const char *name)
{
	struct channel *ch = channel_find(name);
	if (!ch && deriving_full(c)) {
		tell_error(c, 429, "too many channels are being opened at once; try again "
		    "in a moment");
		client_close(c, 1013, "try again later");
		return;
	}
	if (!ch) {
		if (!(ch = calloc(1, sizeof *ch)) || !(ch->name = strdup(name))) {
			free(ch);
			client_close(c, LWS_CLOSE_STATUS_UNEXPECTED_CONDITION, "out of memory");
			return;
		}
		ch->origin = c->origin;
		ch->next = channels;
		channels = ch;
		up_event(ch, ACTION_OPEN, NULL);
		log_debug("channel %s opened", name);
	}
	keys_random_hex(c->id, PROXY_ID_LEN / 2);
	c->ch = ch;
	c->prev = ch->last;
	if (ch->last)
		ch->last->next = c;
	else
		ch->clients = c;
	ch->last = c;
	if (paused)
		lws_rx_flow_control(c->wsi, 0);
	up_event(ch, ACTION_CONNECT, c->id);
	for (struct client *l = ch->clients; l; l = l->next) {
		if (l == c || l->dead)
			continue;
		tell(c, ACTION_CONNECT, c->id, l->id);
		tell(l, ACTION_CONNECT, l->id, c->id);
	}
	for (size_t i = 0; i < ch->nremotes; i++)
		tell(c, ACTION_CONNECT, c->id, ch->remotes[i].s);
	if (c->link_events)
		tell_link_state(c);
	reap_run();
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
up_data(struct channel *ch, struct frame *f)
{
	if (!ch->nremotes)
		return;
	f->channel = ch->name;
	up_send(f);
}

static void
input_broadcast(struct client *c, enum frame_data kind, unsigned char *data, size_t len)
{
	struct frame f;
	frame_init(&f);
	f.action = ACTION_BROADCAST;
	f.source = c->id;
	f.data_kind = kind;
	f.data = data;
	f.data_len = len;
	fanout(c->ch, c, &f);
	up_data(c->ch, &f);
}

/* A client's end of input, told to every other peer like a broadcast (DESIGN.md §2). */
static void
input_end(struct client *c)
{
	struct frame f;
	frame_init(&f);
	f.action = ACTION_END;
	f.source = c->id;
	fanout(c->ch, c, &f);
	up_data(c->ch, &f);
}

static void
input_message(struct client *c, const char *target, enum frame_data kind,
    unsigned char *data, size_t len)
{
	struct frame f;
	struct client *t = local_find(c->ch, target);
	frame_init(&f);
	f.action = ACTION_MESSAGE;
	f.source = c->id;
	f.target = (char *)target;
	f.data_kind = kind;
	f.data = data;
	f.data_len = len;
	if (t) {
		client_send_frame(t, &f);
	} else if (remote_find(c->ch, target) >= 0) {
		f.channel = c->ch->name;
		up_send(&f);
	} else {
		char why[PEER_ID_MAX + 64];
		snprintf(why, sizeof why, "no peer \"%.*s\" in this channel", PEER_ID_MAX, target);
		tell_error(c, 404, why);
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
input_plain(struct client *c, const unsigned char *p, size_t n)
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
		input_broadcast(c, DATA_TEXT, (unsigned char *)data->val, data->vlen);
		return 1;
	}
	if (target && target->vlen <= PEER_ID_MAX &&
	    span_is(action->val, action->vlen, "message")) {
		memcpy(to, target->val, target->vlen);
		to[target->vlen] = '\0';
		input_message(c, to, DATA_TEXT, (unsigned char *)data->val, data->vlen);
		return 1;
	}
	return 0;
}

void
route_input(struct client *c, int binary, const unsigned char *p, size_t n)
{
	struct frame f;
	char err[160];

	if (c->dead || !c->ch)
		return;
	if (binary && !c->cbor) {
		input_broadcast(c, DATA_BYTES, (unsigned char *)p, n);
		reap_run();
		return;
	}
	if (!binary && !c->cbor && input_plain(c, p, n)) {
		reap_run();
		return;
	}
	if (frame_decode(&f, binary ? FORMAT_CBOR : FORMAT_JSON, p, n, err, sizeof err) < 0) {
		tell_error(c, 400, err);
		reap_run();
		return;
	}
	switch (f.action) {
	case ACTION_BROADCAST:
		if (f.data_kind == DATA_NONE)
			tell_error(c, 400, "a broadcast needs \"data\"");
		else
			input_broadcast(c, f.data_kind, f.data, f.data_len);
		break;
	case ACTION_MESSAGE:
		if (!f.target || f.data_kind == DATA_NONE)
			tell_error(c, 400, "a message needs \"target\" and \"data\"");
		else
			input_message(c, f.target, f.data_kind, f.data, f.data_len);
		break;
	case ACTION_STATUS:
		tell(c, ACTION_STATUS, c->id, c->id);
		break;
	case ACTION_END:
		input_end(c);
		break;
	default:
		if (f.action != ACTION_UNKNOWN) {
			snprintf(err, sizeof err, "\"%s\" is not a client action: send broadcast, "
			    "message, end or status", frame_action_name(&f));
			tell_error(c, 400, err);
			break;
		}
		snprintf(err, sizeof err, "unknown action \"%.40s\": send broadcast, message "
		    "or status", frame_action_name(&f));
		tell_error(c, 400, err);
		break;
	}
	frame_free(&f);
	reap_run();
}

/* From the pipeline */

static void
on_network_error(const struct frame *f)
{
	if (f->code != 69) {
		/* The stage said it on stderr already. */
		return;
	}
	if (!net_down)
		log_error("cannot reach avahi-daemon: serving peers on this machine only "
		    "until it runs (then this proxy joins the network by itself)");
	net_down = 1;
	for (struct channel *ch = channels; ch; ch = ch->next)
		tell_links(ch, NULL, f);
}

static void
on_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	struct frame f, out;
	char err[160], store[3 * (PEER_ID_MAX + 1) + KEYS_NAME_MAX + 1];

	(void)ctx;
	/* Most tail frames are remote broadcasts: viewed where they lie. Decoding them
	 * (libcbor builds and counts every string, each field copied) was this proxy's
	 * largest cost per message, and with 1 MiB broadcasts a fifth of its time. */
	int viewed = fmt == FORMAT_CBOR && frame_decode_view(&f, raw, len, store, sizeof store) == 0;
	if (!viewed && frame_decode(&f, fmt, raw, len, err, sizeof err) < 0) {
		if (log_once_per_burst("tail"))
			log_error("skipping a frame from the pipeline: %s", err);
		return;
	}
	struct channel *ch = channel_find(f.channel);
	frame_init(&out);
	out.action = f.action;
	switch (f.action) {
	case ACTION_CONNECT:
		if (ch && f.target && remote_add(ch, f.target))
			for (struct client *c = ch->clients; c; c = c->next)
				tell(c, ACTION_CONNECT, c->id, f.target);
		break;
	case ACTION_DISCONNECT:
		if (ch && f.target && remote_del(ch, f.target))
			for (struct client *c = ch->clients; c; c = c->next)
				tell(c, ACTION_DISCONNECT, c->id, f.target);
		break;
	case ACTION_BROADCAST:
		if (ch && f.source && f.data_kind != DATA_NONE) {
			out.source = f.source;
			out.data_kind = f.data_kind;
			out.data = f.data;
			out.data_len = f.data_len;
			fanout(ch, NULL, &out);
		}
		break;
	case ACTION_END:
		if (ch && f.source) {
			out.source = f.source;
			fanout(ch, NULL, &out);
		}
		break;
	case ACTION_MESSAGE: {
		struct client *t = ch && f.target ? local_find(ch, f.target) : NULL;
		if (t && f.source && f.data_kind != DATA_NONE) {
			out.source = f.source;
			out.target = f.target;
			out.data_kind = f.data_kind;
			out.data = f.data;
			out.data_len = f.data_len;
			client_send_frame(t, &out);
		}
		break;
	}
	case ACTION_LINKED:
	case ACTION_UNLINKED:
		if (ch && f.node) {
			link_set(ch, f.node, f.address, f.action == ACTION_LINKED);
			out.node = f.node;
			out.address = f.address;
			tell_links(ch, NULL, &out);
		}
		net_down = 0;
		break;
	case ACTION_ADVERTISED:
		if (net_down)
			log_info("avahi-daemon is reachable again: joining the network");
		net_down = 0;
		if (ch) {
			out.instance = f.instance;
			tell_links(ch, NULL, &out);
		}
		break;
	case ACTION_ERROR:
		on_network_error(&f);
		break;
	default:
		/* open/close passed through, found/lost, listening: the stages' business. */
		break;
	}
	if (!viewed)
		frame_free(&f);
	else
		sodium_memzero(store, sizeof store);   /* it held the channel name */
	reap_run();
}

/* Life */

int
route_start(const struct proxy_config *c, struct lws_context *cx, struct lws_vhost *vh)
{
	cfg = c;
	buf_init(&held, cfg->max_queue);
	buf_init(&enc_json, 0);
	buf_init(&enc_cbor, 0);
	if (cfg->local_only)
		return 0;
	if (!(pipe_ = pipeline_start(cx, vh, &cfg->pipe, on_frame, on_drain, NULL)))
		log_error("cannot start the network pipeline (nws-browse | nws-link | "
		    "nws-advertise); serving peers on this machine only");
	return 0;
}

static void
on_pipeline_done(void *ctx)
{
	(void)ctx;
	if (stop_done)
		stop_done();
}

void
route_stop(void (*done)(void))
{
	if (stopping)
		return;
	stopping = 1;
	stop_done = done;
	for (struct channel *ch = channels; ch; ch = ch->next)
		for (struct client *c = ch->clients; c; c = c->next)
			client_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "nws-proxy is shutting down");
	/* Every client leaves: disconnect and close frames withdraw us from the network. */
	reap_run();
	on_drain(NULL);
	if (!pipe_) {
		done();
		return;
	}
	struct pipeline *p = pipe_;
	pipe_ = NULL;
	pipeline_stop(p, on_pipeline_done, NULL);
}

void
route_free(void)
{
	while (channels) {
		struct channel *ch = channels;
		for (struct client *c = ch->clients; c; c = c->next)
			c->ch = NULL;
		channel_free(ch);
	}
	buf_free(&held);
	buf_free(&enc_json);
	buf_free(&enc_cbor);
}
