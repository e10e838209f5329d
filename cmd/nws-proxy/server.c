/* server: the proxy's HTTP and WebSocket front end on the libwebsockets loop. It binds
 * 127.0.0.1 and ::1 itself (so "port in use" is one clear error, and nothing listens
 * beyond loopback), hands accepted sockets to lws, serves the embedded assets, rejects
 * foreign Host headers (403) and bad channel names (400) before any upgrade, answers
 * HTTP and picks the subprotocol as the seed's proxy does, and keeps a bounded output
 * queue per client. */
#include "proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <sodium.h>

#include "assets.h"
#include "keys.h"
#include "log.h"
#include "loop.h"
#include "nws.h"
#include "wsclient.h"

/* A client's queue holds finished WebSocket frames (a server's are unmasked), so all that
 * was queued since its last write goes out in one send(2), whatever the number of
 * messages. Its bound counts only what the kernel refused: bytes queued within one pass
 * of the loop are written in the next, so a client that keeps up is never "too slow"
 * however fast the pipeline is read. The queue may hold up to this many bounds at once
 * (its hard memory limit, reached only when one pass queues more than a bound): */
#define TX_HARD_BOUNDS 2
/* A closing client that never reads its close frame is dropped after this long. */
#define CLOSE_GRACE_S 10
/* A client that made no write progress for this long with bytes waiting is too slow. */
#define STALL_US (4 * LWS_US_PER_SEC)
/* A client closed as too slow gets this long to read its close frame; then its socket is
 * reset, so the connection ends even if it never reads again (lws's own close would
 * flush, send a close frame and wait for the peer's FIN, each with a timeout, and a
 * closed socket with unsent bytes lingers in the kernel for as long as the peer keeps a
 * zero window open). */
#define SLOW_GRACE_S 2
#define HTTP_CHUNK 16384

/* One WebSocket client: lws's per-session data of both ws protocols, so lws zeroes it.
 * Route knows it as conn, and it knows route's side as peer. */
struct client {
	struct lws *wsi;
	void *peer;                     /* route's; NULL until joined and after its leave */
	struct client *leave_next;      /* on the list of leaves owed to route */
	struct client *dirty_next;      /* on the list of clients to write to */
	unsigned cbor : 1;              /* subprotocol nws.cbor: CBOR frames both ways */
	unsigned dead : 1;              /* closing: sends are dropped */
	unsigned owes_leave : 1;        /* on the leave list */
	unsigned rx_binary : 1;
	unsigned write_asked : 1;       /* lws_callback_on_writable is pending */
	unsigned dirty : 1;             /* on the list of clients to write to */
	lws_usec_t progress_us;         /* when its socket last took bytes */
	lws_sorted_usec_list_t sul;     /* live: bytes wait for its socket; dead: its grace */
	int close_code;
	char close_reason[64];
	struct buf rx;                  /* the message being reassembled, max_message */
	struct buf tx;                  /* WebSocket frames not yet written (see client_flush) */
};

struct conn {
	struct client client;
	const struct asset *asset;
	size_t off;
};

static const struct proxy_config *cfg;
static const struct proxy_route_ops *route;
static void *route_ctx;
static struct lws_context *context;
static struct lws_vhost *vhost;
static int listen_fds[2] = { -1, -1 };
static struct lws *listen_wsi[2];
static size_t nclients;
static int stopping, route_done, finished;
static lws_sorted_usec_list_t stop_sul;
static char hostname[256];
static struct client *dirty;   /* clients with messages queued in this pass of the loop */
static struct client *leaving; /* closed clients whose leave route is owed */

static int http_cb(struct lws *, enum lws_callback_reasons, void *, void *, size_t);
static int listen_cb(struct lws *, enum lws_callback_reasons, void *, void *, size_t);

/* lws accepts only subprotocols named in its list and echoes the name it matched, but the
 * seed accepts whatever a client offers and echoes the first. So one entry stands for
 * "any other": it takes the client's first name just before lws looks the list up, which
 * happens in the same call as the upgrade's confirmation (subprotocol_pick). */
static char any_protocol[64] = "nws.any";

#define PROTOCOLS_INTERNAL 3   /* protocols[] from here on are not for clients */
static struct lws_protocols protocols[] = {
	/* The default protocol: plain HTTP, and WebSocket clients that ask for none (JSON). */
	{ "http", http_cb, sizeof(struct conn), 65536, 0, NULL, 0 },
	{ any_protocol, http_cb, sizeof(struct conn), 65536, 0, NULL, 0 },   /* JSON */
	{ "nws.cbor", http_cb, sizeof(struct conn), 65536, 0, NULL, 0 },
	{ "nws-listen", listen_cb, 0, 0, 0, NULL, 0 },
	{ NULL, NULL, 0, 0, 0, NULL, 0 },   /* loop_protocol, set at start */
	{ NULL, NULL, 0, 0, 0, NULL, 0 },
};

static void
check_finished(void)
{
	if (stopping && route_done && nclients == 0 && !finished) {
		finished = 1;
		/* Set inside a timer callback, it would wait for the poll's next timer: wake it. */
		lws_cancel_service(context);
	}
}

/* Queueing */

/* c's queue is written once the current pass of the loop has run every callback: all
 * its messages of the pass in one send(2), without waiting for poll to say what it just
 * said. */
static void
client_want_write(struct client *c)
{
	if (!c->dirty) {
		c->dirty = 1;
		c->dirty_next = dirty;
		dirty = c;
	}
}

static void client_stall_watch(struct client *c);

/* The socket refused part of the queue (or lws holds bytes for it): wait for POLLOUT. */
static void
client_wait_writeable(struct client *c)
{
	if (!c->dead)
		client_stall_watch(c);
	/* lws keeps POLLOUT asked until the writeable callback, which clears this. */
	if (!c->write_asked) {
		c->write_asked = 1;
		lws_callback_on_writable(c->wsi);
	}
}

static void client_close(void *conn, int code, const char *reason);

static int
client_full(struct client *c)
{
	client_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "too slow");
	return -1;
}

/* The end of a too slow client's grace: a zero linger makes lws's close of the socket a
 * reset, which drops what the peer never read and ends the connection at once. Set only
 * now: lws closes the socket soon after writing its close frame, before the peer read
 * the messages queued ahead of it. A timeout's close skips lws's flush and handshake. */
static void
client_reset(lws_sorted_usec_list_t *sul)
{
	struct client *c = lws_container_of(sul, struct client, sul);
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };

	setsockopt(lws_get_socket_fd(c->wsi), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
}

static void
client_stall_check(lws_sorted_usec_list_t *sul)
{
	struct client *c = lws_container_of(sul, struct client, sul);
	lws_usec_t idle = lws_now_usecs() - c->progress_us;

	if (c->dead || (!c->tx.len && !lws_partial_buffered(c->wsi)))
		return;
	if (idle >= STALL_US)
		client_full(c);
	else
		lws_sul_schedule(context, 0, &c->sul, client_stall_check, STALL_US - idle);
}

/* Bytes wait for c's socket: unless it takes some within STALL_US, c is too slow. */
static void
client_stall_watch(struct client *c)
{
	lws_usec_t left = STALL_US - (lws_now_usecs() - c->progress_us);

	if (!c->sul.list.owner)
		lws_sul_schedule(context, 0, &c->sul, client_stall_check,
		    left > 0 ? left : 1);
}

static int
client_send(void *conn, int binary, const void *p, size_t n)
{
	struct client *c = conn;
	if (c->dead)
		return 0;
	if (ws_frame_append(&c->tx, binary ? WS_OP_BINARY : WS_OP_TEXT, p, n, 0) < 0)
		return client_full(c);
	client_want_write(c);
	return 0;
}

/* Encoded straight into the queue after room for its header (ws_frame_close_up): a
 * 1 MiB broadcast is written there once, not encoded aside and then copied. */
static int
client_send_frame(void *conn, const struct frame *f)
{
	struct client *c = conn;
	size_t at = c->tx.len;

	if (c->dead)
		return 0;
	if (ws_frame_open(&c->tx) < 0)
		return client_full(c);
	if (frame_encode(f, c->cbor ? FORMAT_CBOR : FORMAT_JSON, &c->tx) < 0) {
		c->tx.len = at;
		return client_full(c);
	}
	if (!c->cbor && buf_data(&c->tx)[c->tx.len - 1] == '\n')
		c->tx.len--;
	ws_frame_close_up(&c->tx, at, c->cbor ? WS_OP_BINARY : WS_OP_TEXT);
	client_want_write(c);
	return 0;
}

/* Route is not called from here (this may run inside its fan-out): the client's leave
 * is owed, and run by leaves_run once route has returned. */
static void
client_close(void *conn, int code, const char *reason)
{
	struct client *c = conn;
	if (c->dead)
		return;
	c->dead = 1;
	c->close_code = code;
	snprintf(c->close_reason, sizeof c->close_reason, "%s", reason);
	if (c->peer && !c->owes_leave) {
		c->owes_leave = 1;
		c->leave_next = leaving;
		leaving = c;
	}
	lws_sul_cancel(&c->sul);
	if (code == LWS_CLOSE_STATUS_POLICY_VIOLATION) {
		/* A client closed for being slow gets nothing more: it has every message
		 * before this one, then the close frame if it reads within SLOW_GRACE_S. */
		buf_clear(&c->tx);
		lws_sul_schedule(context, 0, &c->sul, client_reset, SLOW_GRACE_S * LWS_US_PER_SEC);
	}
	lws_set_timeout(c->wsi, PENDING_TIMEOUT_USER_OK, CLOSE_GRACE_S);
	client_want_write(c);
}

static void
client_pause(void *conn, int pause)
{
	struct client *c = conn;
	lws_rx_flow_control(c->wsi, !pause);
}

const struct proxy_conn_ops server_conn_ops = {
	.send = client_send,
	.send_frame = client_send_frame,
	.close = client_close,
	.pause = client_pause,
};

/* c leaves its channel now, owed or not. */
static void
client_leave(struct client *c)
{
	if (c->owes_leave) {
		for (struct client **pp = &leaving; *pp; pp = &(*pp)->leave_next)
			if (*pp == c) {
				*pp = c->leave_next;
				break;
			}
		c->owes_leave = 0;
	}
	if (c->peer)
		route->leave(route_ctx, c->peer);
	c->peer = NULL;
}

/* The leaves owed to route: run outside any route call, before the next one and at the
 * end of each pass of the loop. */
static void
leaves_run(void)
{
	while (leaving)
		client_leave(leaving);
}

/* One whole message from c, to route. */
static void
client_input(struct client *c, const unsigned char *p, size_t n)
{
	leaves_run();
	if (c->peer && !c->dead)
		route->input(route_ctx, c->peer, c->rx_binary, p, n);
}

static int
client_flush(struct client *c)
{
	long w = ws_queue_send(c->wsi, &c->tx);

	if (w < 0)
		return -1;
	if (w > 0)
		c->progress_us = lws_now_usecs();
	if (c->tx.len > cfg->max_queue)
		client_full(c);
	return 0;
}

static int
client_writeable(struct client *c)
{
	/* lws calls this once its own pending bytes went out: that is progress too. */
	c->progress_us = lws_now_usecs();
	c->write_asked = 0;
	if (c->tx.len && client_flush(c) < 0)
		return -1;
	if (c->tx.len) {
		client_wait_writeable(c);
		return 0;
	}
	if (c->dead) {
		/* The grace timer stays armed: the close frame may sit unread behind the rest. */
		lws_close_reason(c->wsi, (enum lws_close_status)c->close_code,
		    (unsigned char *)c->close_reason, strlen(c->close_reason));
		return -1;
	}
	lws_sul_cancel(&c->sul);
	return 0;
}

/* The end of a pass of the loop: every client something was queued for in it. A closing
 * client, or one with bytes in lws, is left to its writeable callback. */
static void
server_flush(void)
{
	while (dirty) {
		struct client *c = dirty;
		dirty = c->dirty_next;
		c->dirty = 0;
		if (c->write_asked)
			continue;
		if (c->dead || lws_partial_buffered(c->wsi) || client_flush(c) < 0 || c->tx.len)
			client_wait_writeable(c);
	}
}

/* Requests */

/* The Host header must name this machine by a loopback name, or its own name, with our
 * port: a page may connect from any origin (that is the point), but a DNS-rebinding page,
 * whose requests carry the attacker's host name, may not. */
static int
host_ok(struct lws *wsi)
{
	char host[300], *name = host, *port = NULL;
	if (lws_hdr_copy(wsi, host, sizeof host, WSI_TOKEN_HOST) <= 0)
		return 0;
	if (host[0] == '[') {
		char *end = strchr(host, ']');
		if (!end)
			return 0;
		if (end[1] == ':')
			port = end + 2;
		else if (end[1])
			return 0;
		end[1] = '\0';
	} else if ((port = strchr(host, ':'))) {
		*port++ = '\0';
	}
	if (port) {
		char *e;
		long p = strtol(port, &e, 10);
		if (*e || e == port || p != cfg->port)
			return 0;
	} else if (cfg->port != 80) {
		return 0;
	}
	size_t n = strlen(name);
	if (n && name[n - 1] == '.')
		name[--n] = '\0';
	if (!strcasecmp(name, "localhost") || !strcmp(name, "127.0.0.1") ||
	    !strcasecmp(name, "[::1]"))
		return 1;
	if (hostname[0]) {
		size_t h = strlen(hostname);
		if (!strcasecmp(name, hostname))
			return 1;
		if (n == h + 6 && !strncasecmp(name, hostname, h) && !strcasecmp(name + h, ".local"))
			return 1;
	}
	return 0;
}

/* The channel name of a request, "/name" with an optional query, into out (lws has
 * decoded %XX escapes; a literal '+' came to it as %2B, see client_adopt). */
static int
request_channel(struct lws *wsi, char *out, size_t outlen)
{
	char uri[KEYS_NAME_MAX + 3];
	if (lws_hdr_copy(wsi, uri, sizeof uri, WSI_TOKEN_GET_URI) <= 0 || uri[0] != '/')
		return -1;
	int ok = keys_name_valid(uri + 1) && strlen(uri + 1) < outlen;
	if (ok)
		strcpy(out, uri + 1);
	sodium_memzero(uri, sizeof uri);
	return ok ? 0 : -1;
}

/* Answers a request with a one-line text/plain body (no HTML page that would link a
 * stylesheet we do not have), then ends the transaction. HEAD gets the headers only. */
static int
http_text(struct lws *wsi, unsigned code, const char *text, const char *allow)
{
	unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
	    *end = buf + sizeof buf - 1;
	char body[512];
	int n = snprintf(body, sizeof body, "%s\n", text);

	if (lws_add_http_common_headers(wsi, code, "text/plain; charset=utf-8", (lws_filepos_t)n,
	        &p, end) ||
	    lws_add_http_header_by_name(wsi, (unsigned char *)"x-content-type-options:",
	        (unsigned char *)"nosniff", 7, &p, end) ||
	    (allow && lws_add_http_header_by_name(wsi, (unsigned char *)"allow:",
	        (const unsigned char *)allow, (int)strlen(allow), &p, end)) ||
	    lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (!lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI)) {
		memcpy(start, body, (size_t)n);
		if (lws_write(wsi, start, (size_t)n, LWS_WRITE_HTTP_FINAL) < n)
			return -1;
	}
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* Refuses an upgrade. Written by hand: before lws has parsed the HTTP version it would
 * answer "HTTP/1.0", which WebSocket clients reject as no valid response at all. */
static int
upgrade_refuse(struct lws *wsi, unsigned code, const char *status, const char *why)
{
	unsigned char buf[LWS_PRE + 512];
	int n = snprintf((char *)buf + LWS_PRE, sizeof buf - LWS_PRE,
	    "HTTP/1.1 %u %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
	    "content-length: %zu\r\nconnection: close\r\n\r\n%s\n",
	    code, status, strlen(why) + 1, why);
	if (lws_write(wsi, buf + LWS_PRE, (size_t)n, LWS_WRITE_HTTP_HEADERS) < n)
		return -1;
	return 1;
}

#define TCHARS "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

/* Accepts the first subprotocol offered, as the seed does: nws.cbor means CBOR frames,
 * any other name JSON, and that name is what lws echoes (see any_protocol). Refuses only
 * what lws could not match at all, which it would drop without an answer: a list longer
 * than its 127-byte buffer, a first name it reads as a number, a name too long, or one of
 * our internal protocols. */
static int
subprotocol_pick(struct lws *wsi)
{
	char list[128];
	int n = lws_hdr_total_length(wsi, WSI_TOKEN_PROTOCOL);
	if (n <= 0)
		return 0;
	if (n >= (int)sizeof list || lws_hdr_copy(wsi, list, sizeof list, WSI_TOKEN_PROTOCOL) < 0)
		return -1;
	char *name = list + strspn(list, " \t");
	size_t len = strspn(name, TCHARS);
	if (!len || len >= sizeof any_protocol || (name[len] && !strchr(", \t", name[len])))
		return -1;
	name[len] = '\0';
	if (strspn(name, "0123456789.") == len)
		return -1;
	for (int i = PROTOCOLS_INTERNAL; protocols[i].name; i++)
		if (!strcmp(name, protocols[i].name))
			return -1;
	if (strcmp(name, protocols[2].name))
		memcpy(any_protocol, name, len + 1);
	return 0;
}

static const struct asset *
asset_find(const char *path)
{
	for (size_t i = 0; i < nassets; i++)
		if (!strcmp(assets[i].path, path))
			return &assets[i];
	return NULL;
}

static int
http_serve(struct lws *wsi, struct conn *cn, const char *path)
{
	unsigned char buf[LWS_PRE + 1024], *start = buf + LWS_PRE, *p = start,
	    *end = buf + sizeof buf - 1;
	char mime[64], name[KEYS_NAME_MAX + 1];

	if (!host_ok(wsi))
		return http_text(wsi, HTTP_STATUS_FORBIDDEN, "this Host is not allowed (use "
		    "localhost, 127.0.0.1, [::1] or this machine's name with the port)", NULL);
	/* The seed's proxy answers only GET; HEAD too gets 405. */
	if (!lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI))
		return http_text(wsi, HTTP_STATUS_METHOD_NOT_ALLOWED, "only GET is served", "GET");
	if (!strcmp(path, "/index.html"))
		path = "/";
	const struct asset *a = asset_find(path);
	if (!a && request_channel(wsi, name, sizeof name) == 0) {
		sodium_memzero(name, sizeof name);
		return http_text(wsi, HTTP_STATUS_BAD_REQUEST, "nws-proxy: this is a WebSocket "
		    "endpoint: open it with new WebSocket(url) or new NetworkWebSocket(name) from "
		    "/nws.js; the console is at /", NULL);
	}
	if (!a)
		return http_text(wsi, HTTP_STATUS_NOT_FOUND, "no such page (the console is at /)",
		    NULL);
	snprintf(mime, sizeof mime, "%s%s", a->mime,
	    strncmp(a->mime, "text/", 5) ? "" : "; charset=utf-8");
	if (lws_add_http_common_headers(wsi, HTTP_STATUS_OK, mime, a->len, &p, end) ||
	    lws_add_http_header_by_name(wsi, (unsigned char *)"cache-control:",
	        (unsigned char *)"no-cache", 8, &p, end) ||
	    lws_add_http_header_by_name(wsi, (unsigned char *)"x-content-type-options:",
	        (unsigned char *)"nosniff", 7, &p, end))
		return -1;
	if (!strcmp(path, "/")) {
		static const char csp[] = "default-src 'self'; connect-src 'self' ws: wss:; "
		    "img-src 'self' data:; frame-ancestors 'none'";
		if (lws_add_http_header_by_name(wsi,
		    (unsigned char *)"content-security-policy:", (unsigned char *)csp,
		    (int)strlen(csp), &p, end))
			return -1;
	} else if (!strcmp(path, "/nws.js")) {
		/* Pages of any origin include the polyfill, also as a module or with fetch(). */
		if (lws_add_http_header_by_name(wsi,
		    (unsigned char *)"access-control-allow-origin:", (unsigned char *)"*", 1,
		    &p, end))
			return -1;
	}
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	cn->asset = a;
	cn->off = 0;
	lws_callback_on_writable(wsi);
	return 0;
}

static int
http_writeable(struct lws *wsi, struct conn *cn)
{
	unsigned char buf[LWS_PRE + HTTP_CHUNK];
	const struct asset *a = cn->asset;
	if (!a)
		return 0;
	size_t n = a->len - cn->off;
	if (n > HTTP_CHUNK)
		n = HTTP_CHUNK;
	memcpy(buf + LWS_PRE, a->data + cn->off, n);
	cn->off += n;
	int final = cn->off == a->len;
	if (lws_write(wsi, buf + LWS_PRE, n, final ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP)
	    < (int)n)
		return -1;
	if (!final) {
		lws_callback_on_writable(wsi);
		return 0;
	}
	cn->asset = NULL;
	return lws_http_transaction_completed(wsi) ? -1 : 0;
}

/* WebSocket clients */

/* Pages are told apart by their Origin header, for route.c's caps on the channel keys
 * each may have derived at once. */
static uint64_t
client_origin(struct lws *wsi)
{
	char origin[512];
	int n = lws_hdr_copy(wsi, origin, sizeof origin, WSI_TOKEN_ORIGIN);
	uint64_t h = 0;

	if (n > 0) {
		crypto_generichash((unsigned char *)&h, sizeof h, (unsigned char *)origin,
		    (size_t)n, NULL, 0);
		h |= 1;   /* never 0 */
	}
	return h;
}

/* What route is told of a client: its format, its origin, what it asked for. */
static void
client_info(struct lws *wsi, const struct client *c, struct proxy_client_info *info)
{
	char arg[32];

	memset(info, 0, sizeof *info);
	info->cbor = c->cbor;
	const char *ev = lws_get_urlarg_by_name(wsi, "events=", arg, sizeof arg);
	info->link_events = ev && !strcmp(ev, "link");
	const char *by = lws_get_urlarg_by_name(wsi, "bytes=", arg, sizeof arg);
	info->bytes_base64 = by && !strcmp(by, "base64");
	info->origin = client_origin(wsi);
}

static void
client_established(struct lws *wsi, struct client *c)
{
	char name[KEYS_NAME_MAX + 1];
	struct proxy_client_info info;
	memset(c, 0, sizeof *c);
	c->wsi = wsi;
	c->progress_us = lws_now_usecs();
	/* lws keeps its own copy of the protocol list: compare names. */
	c->cbor = !strcmp(lws_get_protocol(wsi)->name, protocols[2].name);
	buf_init(&c->rx, cfg->max_message);
	buf_init(&c->tx, cfg->max_queue > SIZE_MAX / TX_HARD_BOUNDS ? SIZE_MAX
	    : cfg->max_queue * TX_HARD_BOUNDS);
	nclients++;
	if (stopping) {
		client_close(c, LWS_CLOSE_STATUS_GOINGAWAY, "nws-proxy is shutting down");
		return;
	}
	/* Checked before the upgrade too; a failure here means the headers are gone. */
	if (request_channel(wsi, name, sizeof name) < 0) {
		client_close(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "invalid channel name");
		return;
	}
	client_info(wsi, c, &info);
	leaves_run();
	c->peer = route->join(route_ctx, c, name, &info);
	sodium_memzero(name, sizeof name);
}

static int
client_receive(struct lws *wsi, struct client *c, const void *in, size_t len)
{
	if (c->dead)
		return 0;
	int whole = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
	if (lws_is_first_fragment(wsi)) {
		buf_reset(&c->rx);
		c->rx_binary = lws_frame_is_binary(wsi) != 0;
		/* The usual case, a message in one piece of lws's read: routed where it lies.
		 * A buffer grown for big messages is kept while they keep coming (growing it
		 * again per message cost a copy of each); the first small one frees it. */
		if (whole && len <= cfg->max_message) {
			if (c->rx.cap > 65536)
				buf_clear(&c->rx);
			client_input(c, in, len);
			return 0;
		}
	}
	if (buf_append(&c->rx, in, len) < 0) {
		static const char why[] = "message too big";
		client_leave(c);
		c->dead = 1;
		buf_clear(&c->rx);
		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
		    (unsigned char *)why, sizeof why - 1);
		return -1;
	}
	if (!whole)
		return 0;
	client_input(c, buf_data(&c->rx), c->rx.len);
	buf_reset(&c->rx);
	return 0;
}

static void
client_closed(struct client *c)
{
	if (!c->wsi)
		return;   /* never established: nothing was counted or joined */
	/* lws frees c after this: nothing may queue for it or find it on the dirty list. */
	c->dead = 1;
	lws_sul_cancel(&c->sul);
	for (struct client **pp = &dirty; c->dirty && *pp; pp = &(*pp)->dirty_next)
		if (*pp == c) {
			*pp = c->dirty_next;
			break;
		}
	client_leave(c);
	buf_clear(&c->rx);
	buf_clear(&c->tx);
	nclients--;
	check_finished();
}

/* Shutdown */

static void
stop_deadline(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	log_error("shutdown is taking too long; exiting anyway");
	finished = 1;
}

static void
on_route_done(void *ctx)
{
	(void)ctx;
	route_done = 1;
	check_finished();
}

static void
stop_begin(void)
{
	if (stopping)
		return;
	stopping = 1;
	for (int i = 0; i < 2; i++)
		if (listen_wsi[i])
			lws_set_timeout(listen_wsi[i], PENDING_TIMEOUT_CLOSE_SEND, LWS_TO_KILL_ASYNC);
	lws_sul_schedule(context, 0, &stop_sul, stop_deadline,
			 NWS_STOP_DEADLINE_MS * LWS_US_PER_MS);
	route->stop(route_ctx, on_route_done, NULL);
}

static void
on_signal(void *ctx, int sig)
{
	(void)ctx;
	log_info("stopping on signal %d", sig);
	stop_begin();
}

static int
http_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t len)
{
	struct conn *cn = user;

	switch (reason) {
	case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE: {
		char name[KEYS_NAME_MAX + 1];
		if (!host_ok(wsi))
			return upgrade_refuse(wsi, 403, "Forbidden", "this Host is not allowed "
			    "(use localhost, 127.0.0.1, [::1] or this machine's name with the port)");
		if (strcasecmp(in, "websocket") || request_channel(wsi, name, sizeof name) < 0)
			return upgrade_refuse(wsi, 400, "Bad Request", "a channel name is 1 to 255 "
			    "characters of A-Z a-z 0-9 + = * . _ -");
		sodium_memzero(name, sizeof name);
		/* lws would drop these without an answer. */
		if (!lws_hdr_total_length(wsi, WSI_TOKEN_KEY))
			return upgrade_refuse(wsi, 400, "Bad Request", "a WebSocket upgrade needs "
			    "Sec-WebSocket-Key and Sec-WebSocket-Version: 13");
		if (subprotocol_pick(wsi) < 0)
			return upgrade_refuse(wsi, 400, "Bad Request", "nws-proxy accepts the first "
			    "subprotocol offered if it is a name of up to 63 characters (not a "
			    "number) and the list is at most 127 bytes");
		return 0;
	}
	case LWS_CALLBACK_HTTP:
		return http_serve(wsi, cn, in);
	case LWS_CALLBACK_HTTP_WRITEABLE:
		return http_writeable(wsi, cn);
	case LWS_CALLBACK_ESTABLISHED:
		client_established(wsi, &cn->client);
		return 0;
	case LWS_CALLBACK_RECEIVE:
		return client_receive(wsi, &cn->client, in, len);
	case LWS_CALLBACK_SERVER_WRITEABLE:
		return client_writeable(&cn->client);
	case LWS_CALLBACK_CLOSED:
		client_closed(&cn->client);
		return 0;
	default:
		return lws_callback_http_dummy(wsi, reason, user, in, len);
	}
}

/* Listeners */

/* lws decodes a literal '+' of a request's path into a space, as in a form's query; the
 * seed's proxy keeps it a '+', and its polyfill does not escape names, so /a+b must be
 * channel "a+b" (and /a%20b stay invalid). The listening sockets accept only once the
 * request has arrived (TCP_DEFER_ACCEPT), so its first bytes are read here and handed to
 * lws with each '+' of the request line's path written as %2B. A connection whose bytes
 * are not there yet is handed over as it is. */
static void
client_adopt(int s)
{
	char in[2048], out[sizeof in * 3];
	ssize_t n = recv(s, in, sizeof in, 0);
	if (n <= 0) {
		lws_adopt_socket_vhost(vhost, s);
		return;
	}
	size_t m = 0, i = 0, len = (size_t)n;
	while (i < len && in[i] != ' ' && in[i] != '\r')
		out[m++] = in[i++];
	if (i < len && in[i] == ' ')
		out[m++] = in[i++];
	for (; i < len && in[i] != ' ' && in[i] != '?' && in[i] != '\r'; i++) {
		if (in[i] == '+') {
			memcpy(out + m, "%2B", 3);
			m += 3;
		} else {
			out[m++] = in[i];
		}
	}
	memcpy(out + m, in + i, len - i);
	m += len - i;
	/* On failure lws closes the socket itself. */
	lws_adopt_socket_vhost_readbuf(vhost, s, out, m);
	sodium_memzero(in, sizeof in);
	sodium_memzero(out, m);
}

static int
listen_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	(void)user, (void)in, (void)len;
	int fd = lws_get_socket_fd(wsi), one = 1;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		for (int i = 0; i < 64; i++) {
			int s = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			if (s < 0) {
				if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED &&
				    log_once_per_burst("accept"))
					log_error("cannot accept a connection: %s", strerror(errno));
				break;
			}
			/* lws sets no socket options on a socket it adopts. Each pass of the loop
			 * writes a client's queue in one send: Nagle could only hold a message
			 * back behind an earlier one's delayed ACK. */
			setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
			client_adopt(s);
		}
		return 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		/* lws closes the fd itself. */
		for (int i = 0; i < 2; i++)
			if (listen_wsi[i] == wsi)
				listen_wsi[i] = NULL;
		return 0;
	default:
		return 0;
	}
}

static int
listen_on(int family, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int one = 1;
	memset(&ss, 0, sizeof ss);
	if (family == AF_INET) {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)*port);
		s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sl = sizeof *s4;
	} else {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)*port);
		s6->sin6_addr = in6addr_loopback;
		sl = sizeof *s6;
	}
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	/* Accept once the request is there, for client_adopt (seconds before giving up). */
	int defer = 5;
	setsockopt(fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof defer);
	if (family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	if (*port == 0) {
		sl = sizeof ss;
		getsockname(fd, (struct sockaddr *)&ss, &sl);
		*port = ntohs(family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
		    : ((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return fd;
}

static void
listen_fail(int port)
{
	if (errno == EADDRINUSE)
		log_fatal(NWS_EXIT_FAIL, "port %d is already in use (another nws-proxy?); stop "
		    "it or choose another port with -p", port);
	log_fatal(NWS_EXIT_FAIL, "cannot listen on localhost port %d: %s", port,
	    strerror(errno));
}

/* Binds 127.0.0.1 and ::1 before lws starts, so a busy port is one line and exit 1. */
static void
listeners_bind(int *port)
{
	if ((listen_fds[0] = listen_on(AF_INET, port)) < 0)
		listen_fail(*port);
	if ((listen_fds[1] = listen_on(AF_INET6, port)) < 0) {
		if (errno == EADDRINUSE)
			listen_fail(*port);
		log_info("no IPv6 loopback (%s); serving on 127.0.0.1 only", strerror(errno));
	}
}

/* The lws context, with the bound sockets handed to it. */
static void
context_create(void)
{
	struct lws_context_creation_info info;

	lws_set_log_level(log_level >= 2 ? LLL_ERR | LLL_WARN : 0, log_lws);
	protocols[PROTOCOLS_INTERNAL + 1] = loop_protocol;
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.vhost_name = "nws-proxy";
	info.pt_serv_buf_size = 65536;
	info.timeout_secs = 20;
	info.keepalive_timeout = 20;
	if (!(context = lws_create_context(&info)))
		log_fatal(NWS_EXIT_FAIL, "cannot start libwebsockets");
	vhost = lws_get_vhost_by_name(context, "nws-proxy");
	for (int i = 0; i < 2; i++) {
		if (listen_fds[i] < 0)
			continue;
		lws_sock_file_fd_type fd = { .filefd = listen_fds[i] };
		listen_wsi[i] = lws_adopt_descriptor_vhost(vhost, LWS_ADOPT_RAW_FILE_DESC, fd,
		    "nws-listen", NULL);
		if (!listen_wsi[i])
			log_fatal(NWS_EXIT_FAIL, "cannot watch the listening socket");
		listen_fds[i] = -1;   /* lws owns it now */
	}
}

int
server_start(const struct proxy_config *c, const struct proxy_route_ops *ops, void *ctx)
{
	static struct proxy_config live;
	static const int sigs[] = { SIGINT, SIGTERM, 0 };

	live = *c;
	cfg = &live;
	route = ops;
	route_ctx = ctx;
	if (gethostname(hostname, sizeof hostname) < 0)
		hostname[0] = '\0';
	hostname[sizeof hostname - 1] = '\0';
	listeners_bind(&live.port);
	context_create();
	/* Said at every verbosity, as the seed's proxy does: where pages and programs connect. */
	log_at(0, "serving ws://localhost:%d/ on 127.0.0.1%s (console: http://localhost:%d/)",
	    live.port, listen_wsi[1] ? " and [::1]" : " only", live.port);

	/* Before the route starts the pipeline's key worker thread: signals come through
	 * the loop. */
	if (loop_signals(vhost, sigs, on_signal, NULL) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot watch signals: %s", strerror(errno));
	return route->start(route_ctx, context, vhost);
}

void
server_run(void)
{
	while (!finished) {
		if (lws_service(context, 0) < 0)
			break;
		leaves_run();
		server_flush();
	}
}

void
server_free(void)
{
	lws_sul_cancel(&stop_sul);
	if (context)
		lws_context_destroy(context);
	context = NULL;
	for (int i = 0; i < 2; i++)
		if (listen_fds[i] >= 0)
			close(listen_fds[i]);
}
