/* The peer as a WebSocket client of a running nws-proxy: with --via-proxy, or by itself
 * when one answers on localhost (then, if none does, the peer runs its own pipeline). It
 * speaks the client protocol (nws(7) THE LOCAL WEBSOCKET PROTOCOL) in its CBOR form
 * (subprotocol nws.cbor), so that broadcasts of bytes, too, come with their source. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pipe.h"

struct proxy {
	struct np *np;
	struct lws *wsi;
	char url[512], path[600], host[300];
	struct buf q;              /* queued messages: 4-byte length, then the JSON text */
	size_t queued;             /* messages in q */
	struct buf msg;            /* the message being received, in fragments */
	struct buf scratch;        /* LWS_PRE + one message for lws_write */
	size_t max_queue;
	int have_id, congested, closing, closed;
	int probing;               /* no --via-proxy: without a proxy, run our own pipeline */
	int status_owed;           /* replies to our first status not yet seen */
	const char *sync_token;
};

static struct proxy the_proxy;

static int
queue_text(struct proxy *px, const struct frame *f)
{
	struct frame c = *f;
	size_t start = px->q.len;
	unsigned char len4[4] = { 0 };

	/* The client format: the channel is the URL's, the source is us. */
	c.channel = NULL;
	c.source = NULL;
	if (px->q.len + 4 > px->max_queue)
		goto full;
	if (buf_append(&px->q, len4, 4) < 0 || frame_encode(&c, FORMAT_CBOR, &px->q) < 0) {
		px->q.len = start;
		goto full;
	}
	uint32_t n = (uint32_t)(px->q.len - start - 4);
	unsigned char *p = buf_data(&px->q) + start;
	p[0] = n >> 24;
	p[1] = n >> 16;
	p[2] = n >> 8;
	p[3] = n;
	px->queued++;
	if (px->wsi)
		lws_callback_on_writable(px->wsi);
	if (px->q.len > px->max_queue / 2) {
		px->congested = 1;
		return 1;
	}
	return 0;
full:
	px->congested = 1;
	return -1;
}

static int
proxy_send(struct np *np, const struct frame *f)
{
	(void)np;
	return queue_text(&the_proxy, f);
}

static int
proxy_sync(struct np *np, const char *token)
{
	struct frame f;

	/* The proxy answers status in order, after what came before it was handed on. */
	(void)np;
	frame_view(&f, ACTION_STATUS);
	the_proxy.sync_token = token;
	return queue_text(&the_proxy, &f);
}

static void
proxy_stop(struct np *np)
{
	struct proxy *px = &the_proxy;

	if (!px->wsi || px->closed) {
		np_finished(np);
		return;
	}
	px->closing = 1;
	lws_callback_on_writable(px->wsi);
}

static const struct np_backend proxy_backend = {
	.send = proxy_send,
	.sync = proxy_sync,
	.stop = proxy_stop,
};

static int
write_some(struct proxy *px, struct lws *wsi)
{
	while (px->queued && !lws_send_pipe_choked(wsi)) {
		unsigned char *p = buf_data(&px->q);
		size_t n = (size_t)p[0] << 24 | (size_t)p[1] << 16 | (size_t)p[2] << 8 | p[3];
		buf_reset(&px->scratch);
		if (buf_reserve(&px->scratch, LWS_PRE + n) < 0)
			return -1;
		memcpy(px->scratch.p + LWS_PRE, p + 4, n);
		buf_consume(&px->q, 4 + n);
		px->queued--;
		if (lws_write(wsi, px->scratch.p + LWS_PRE, n, LWS_WRITE_BINARY) < (int)n)
			return -1;
	}
	if (!px->queued)
		buf_reset(&px->q);
	else
		buf_compact(&px->q);
	if (px->congested && px->q.len <= px->max_queue / 2) {
		px->congested = 0;
		np_drain(px->np);
	}
	if (px->queued) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	if (px->closing) {
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL, NULL, 0);
		return -1;
	}
	return 0;
}

/* Our id is the proxy's, known from the first frame that names us: the connect events
 * of the peers already there come before the answer to our status. */
static void
have_id(struct proxy *px, const char *id)
{
	if (px->have_id)
		return;
	snprintf(px->np->id, sizeof px->np->id, "%s", id);
	px->have_id = 1;
	np_start(px->np);
}

static void
received(struct proxy *px)
{
	struct np *np = px->np;
	struct frame f;
	char err[160];

	if (frame_decode(&f, FORMAT_CBOR, buf_data(&px->msg), px->msg.len, err, sizeof err) < 0) {
		if (log_once_per_burst("nws-pipe: bad proxy message"))
			log_error("skipping a message from nws-proxy: %s", err);
		return;
	}
	if ((f.action == ACTION_CONNECT || f.action == ACTION_DISCONNECT) && f.source)
		have_id(px, f.source);
	if (f.action == ACTION_STATUS && f.source) {
		if (px->status_owed) {
			px->status_owed = 0;
			have_id(px, f.source);
		} else if (px->sync_token) {
			struct frame s;
			frame_view(&s, ACTION_UNKNOWN);
			s.action_name = (char *)"sync";
			s.source = (char *)px->sync_token;
			np_frame(np, &s);
		}
	} else {
		np_frame(np, &f);
	}
	frame_clear(&f);
}

static int
proxy_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct proxy *px = &the_proxy;

	(void)user;
	switch (reason) {
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		px->closed = 1;
		px->wsi = NULL;
		if (px->probing) {
			int rc;
			log_info("no nws-proxy at %s: running our own pipeline", px->url);
			if ((rc = local_start(px->np)))
				np_stop(px->np, rc);
			return 0;
		}
		char esc[LOG_ESCAPE_MAX(128)];
		/* libwebsockets' words may quote what the other end answered. */
		log_error("cannot connect to nws-proxy at %s: %s (is nws-proxy running?)",
		    px->url, in ? log_escape(in, strnlen(in, 128), esc, sizeof esc) :
		    "connection failed");
		np_stop(px->np, NWS_EXIT_UNAVAILABLE);
		np_finished(px->np);
		return 0;
	case LWS_CALLBACK_CLIENT_ESTABLISHED: {
		struct frame f;
		frame_view(&f, ACTION_STATUS);
		log_info("attached to nws-proxy at %s", px->url);
		px->np->via_proxy = 1;
		/* Our id is the proxy's; nothing is sent before it is known. */
		px->status_owed = 1;
		queue_text(px, &f);
		return 0;
	}
	case LWS_CALLBACK_CLIENT_RECEIVE:
		if (lws_is_first_fragment(wsi))
			buf_reset(&px->msg);
		if (buf_append(&px->msg, in, len) < 0) {
			log_error("a message from nws-proxy is larger than --max-frame");
			return -1;
		}
		if (lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi))
			received(px);
		return 0;
	case LWS_CALLBACK_CLIENT_WRITEABLE:
		return write_some(px, wsi);
	case LWS_CALLBACK_CLIENT_CLOSED:
		px->closed = 1;
		px->wsi = NULL;
		if (!px->np->stopping) {
			log_error("nws-proxy closed the connection");
			np_stop(px->np, NWS_EXIT_FAIL);
		}
		np_finished(px->np);
		return 0;
	default:
		return 0;
	}
}

/* Named as the subprotocol asked for, which lws binds the connection to. */
const struct lws_protocols proxy_protocol = {
	.name = "nws.cbor",
	.callback = proxy_callback,
	.rx_buffer_size = 65536,
};

const char *
proxy_url_problem(const char *url)
{
	if (!strncmp(url, "wss://", 6) || !strncmp(url, "https://", 8))
		return "--via-proxy: nws-proxy serves plain ws:// on this machine; TLS "
		    "(wss://, https://) is not supported";
	if (strncmp(url, "ws://", 5) && strncmp(url, "http://", 7))
		return "--via-proxy takes ws://HOST[:PORT][/PATH] or http://HOST[:PORT]";
	if (!url[strncmp(url, "ws://", 5) ? 7 : 5] || strlen(url) >= 400)
		return "--via-proxy: the URL has no host, or is too long";
	return NULL;
}

int
proxy_start(struct np *np, int probing)
{
	struct proxy *px = &the_proxy;
	struct lws_client_connect_info ci;
	char tmp[512];
	const char *prot, *ads, *path;
	int port;

	px->np = np;
	px->probing = probing;
	px->max_queue = 2 * np->max_frame + (1u << 20);
	buf_init(&px->q, 0);
	buf_init(&px->msg, np->max_frame);
	buf_init(&px->scratch, 0);
	snprintf(px->url, sizeof px->url, "%s", np->proxy_url);
	snprintf(tmp, sizeof tmp, "%s", np->proxy_url);
	if (lws_parse_uri(tmp, &prot, &ads, &port, &path) ||
	    (strcmp(prot, "ws") && strcmp(prot, "http"))) {
		log_error("--via-proxy wants a ws://HOST[:PORT][/PATH] URL");
		return NWS_EXIT_USAGE;
	}
	if (!strchr(strstr(np->proxy_url, "//") + 2, ':'))
		port = NWS_PROXY_PORT;
	size_t pl = strlen(path);
	while (pl && path[pl - 1] == '/')
		pl--;
	snprintf(px->path, sizeof px->path, "/%.*s%s%s", (int)pl, path, pl ? "/" : "",
	    np->channel);
	/* An IPv6 literal goes back in brackets: the proxy checks the Host header. */
	snprintf(px->host, sizeof px->host, strchr(ads, ':') ? "[%s]:%d" : "%s:%d", ads, port);
	memset(&ci, 0, sizeof ci);
	ci.context = np->cx;
	ci.vhost = np->vh;
	ci.address = ads;
	ci.port = port;
	ci.path = px->path;
	ci.host = px->host;
	ci.local_protocol_name = proxy_protocol.name;
	ci.protocol = proxy_protocol.name;
	ci.pwsi = &px->wsi;
	np->be = &proxy_backend;
	np->be_state = px;
	if (!lws_client_connect_via_info(&ci) && !px->closed) {
		if (probing)
			return local_start(np);
		log_error("cannot connect to nws-proxy at %s (is nws-proxy running?)", px->url);
		return NWS_EXIT_UNAVAILABLE;
	}
	return 0;
}
