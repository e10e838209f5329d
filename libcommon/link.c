#include "link.h"

#include <arpa/inet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "buf.h"
#include "log.h"
#include "wsclient.h"

#define LINK_PROLOGUE "nws-link/1"
/* Handshake payload: the CBOR map {"node": h'<16 bytes>'}. */
#define LINK_PAYLOAD_LEN (1 + 5 + 1 + LINK_NODE_LEN)
/* msg1 has exactly this length: e, then the encrypted payload. */
#define LINK_MSG1_LEN (NOISE_DHLEN + LINK_PAYLOAD_LEN + NOISE_TAGLEN)
/* Partly received frames of every link together (nws(7) LINKS): a member that starts big
 * frames on many links and finishes none cannot grow memory past this; the link whose
 * piece passes it is closed. */
#define LINK_PARTIAL_BUDGET ((size_t)64 << 20)
static size_t partial_total;
/* A finished frame's buffer stays for the next frame (growing and faulting in 1 MiB again
 * per frame was a tenth of a receiving link's time) while the buffers kept by every link
 * together stay within LINK_KEPT_BUDGET; one past LINK_ACC_KEEP is freed at the liveness
 * tick when nothing came in since the last, so idle links hold no big buffers. */
#define LINK_KEPT_BUDGET ((size_t)16 << 20)
#define LINK_ACC_KEEP ((size_t)2 * NOISE_MAX_MSG)
static size_t kept_total;
/* Liveness is checked this often, at both ends: */
#define LINK_LIVE_TICK_US (2 * LWS_US_PER_SEC)

struct link {
	struct lws *wsi;
	int initiator;
	int up, closing, flush, gone;
	int flush_due;       /* sul_flush is armed */
	int keyed;           /* the handshake is done; the accepting end waits to be up */
	int dialing;         /* inside lws_client_connect_via_info: a failure is reported there */
	int hs_sent;         /* the dialling end sent its first handshake message */
	int frag;            /* inside a fragmented message (dialling end) */
	int close_status;
	char close_reason[64];
	char why[64];
	const struct link_ops *ops;
	void *ctx, *user;
	size_t max_queue;
	lws_usec_t progress;     /* when the queue last moved (or last became non-empty) */
	unsigned char our_node[LINK_NODE_LEN], node[LINK_NODE_LEN];
	unsigned char hash[NOISE_HASHLEN];
	char address[64];
	struct noise_handshake hs;
	struct noise_session s;
	struct noise_reassembly re;
	size_t partial, kept;  /* re's buffer as counted in partial_total or kept_total */
	struct buf out;      /* WebSocket frames ready to write: a burst goes in one send(2) */
	struct buf msg;      /* one WebSocket message arriving in fragments */
	/* The dialling end speaks WebSocket itself over a raw socket (wsclient.h). */
	struct wsc wsc;
	lws_usec_t last_rx;      /* the last transport message that decrypted */
	lws_sorted_usec_list_t sul_flush;   /* writes the queue as the loop's next pass begins */
	lws_usec_t last_tx;      /* the last transport message queued */
	lws_sorted_usec_list_t live;
};

/* Per-connection lws storage: an incoming connection's first message, until it is whole
 * and the acceptor has found the channel whose key opens it. */
struct link_pss {
	unsigned char msg1[LINK_MSG1_LEN];
	size_t len;
};

static link_accept_fn acceptor;
static void *acceptor_ctx;

const lws_retry_bo_t link_retry_policy = {
	.secs_since_valid_ping = LINK_PING_SECS,
	.secs_since_valid_hangup = LINK_HANGUP_SECS,
};

void
link_set_acceptor(link_accept_fn fn, void *ctx)
{
	acceptor = fn;
	acceptor_ctx = ctx;
}

static int
iface_name_ok(const char *s, size_t n)
{
	if (n == 0 || n >= IF_NAMESIZE)
		return 0;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		    (s[i] >= '0' && s[i] <= '9') || strchr("._-@", s[i])))
			return 0;
	return 1;
}

int
link_target_check(const char *address, long port, const char *iface, const char **why)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char ip[INET6_ADDRSTRLEN];
	const char *pct;
	size_t n;

	if (!address || (n = strlen(address)) == 0 || n >= sizeof ((struct link *)0)->address) {
		*why = "no address, or one too long";
		return -1;
	}
	pct = strchr(address, '%');
	n = pct ? (size_t)(pct - address) : n;
	if (n >= sizeof ip) {
		*why = "the address is not an IP address";
		return -1;
	}
	memcpy(ip, address, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, bin) != 1 && inet_pton(AF_INET6, ip, bin) != 1) {
		*why = "the address is not an IP address";
		return -1;
	}
	if (pct && (!strchr(ip, ':') || !iface_name_ok(pct + 1, strlen(pct + 1)))) {
		*why = "the address has a bad %interface";
		return -1;
	}
	if (port < 1 || port > 65535) {
		*why = "the port is not from 1 to 65535";
		return -1;
	}
	if (iface && *iface && !iface_name_ok(iface, strlen(iface))) {
		*why = "the interface is not an interface name";
		return -1;
	}
	return 0;
}

int
link_msg1_opens(const unsigned char psk[32], const unsigned char *msg1, size_t len)
{
	struct noise_handshake hs;
	unsigned char payload[LINK_MSG1_LEN];
	long n = -1;

	if (len == LINK_MSG1_LEN &&
	    noise_handshake_init(&hs, 0, psk, LINK_PROLOGUE, sizeof LINK_PROLOGUE - 1) == 0)
		n = noise_handshake_read(&hs, msg1, len, payload);
	noise_handshake_clear(&hs);
	sodium_memzero(payload, sizeof payload);
	return n >= 0;
}

struct link *
link_new(const struct link_conf *c, int initiator)
{
	struct link *l = calloc(1, sizeof *l);

	if (!l)
		return NULL;
	if (noise_handshake_init(&l->hs, initiator, c->psk, LINK_PROLOGUE,
	    sizeof LINK_PROLOGUE - 1) < 0) {
		free(l);
		return NULL;
	}
	l->initiator = initiator;
	l->ops = c->ops;
	l->ctx = c->ctx;
	l->max_queue = c->max_queue;
	memcpy(l->our_node, c->node, LINK_NODE_LEN);
	noise_reassembly_init(&l->re, c->max_frame);
	/* One entry past the bound is allowed (see link_send), so the buffer is not capped
	 * below max_queue + max_frame + the pieces' overhead. */
	buf_init(&l->out, c->max_queue + c->max_frame + c->max_frame / 64 + (1u << 20));
	buf_init(&l->msg, NOISE_MAX_MSG);
	wsc_init(&l->wsc, LINK_SUBPROTOCOL, NOISE_MAX_MSG);
	return l;
}

/* Counts re's buffer, by capacity (the memory it holds), as an unfinished frame's, as
 * kept for the next frame, or (both 0) as neither. */
static void
link_acc_count(struct link *l, size_t partial, size_t kept)
{
	partial_total += partial - l->partial;
	kept_total += kept - l->kept;
	l->partial = partial;
	l->kept = kept;
}

/* Frees re's buffer (wiped). */
static void
link_acc_free(struct link *l)
{
	link_acc_count(l, 0, 0);
	noise_reassembly_clear(&l->re);
}

/* A frame was taken out of re: its buffer stays for the next one if the budget allows. */
static void
link_acc_done(struct link *l)
{
	size_t cap = l->re.acc.cap;

	noise_reassembly_reset(&l->re);
	link_acc_count(l, 0, 0);
	if (cap <= LINK_ACC_KEEP)
		return;
	if (kept_total + cap > LINK_KEPT_BUDGET)
		link_acc_free(l);
	else
		link_acc_count(l, 0, cap);
}

static void
link_free(struct link *l)
{
	noise_handshake_clear(&l->hs);
	noise_session_clear(&l->s);
	link_acc_free(l);
	lws_sul_cancel(&l->live);
	lws_sul_cancel(&l->sul_flush);
	wsc_free(&l->wsc);
	/* The queues hold ciphertext only: freed, not wiped. */
	buf_clear(&l->out);
	buf_clear(&l->msg);
	sodium_memzero(l, sizeof *l);
	free(l);
}

/* Appends one message as a binary WebSocket frame, masked when we dialled. */
static int
link_queue(struct link *l, const unsigned char *msg, size_t len)
{
	return ws_frame_append(&l->out, WS_OP_BINARY, msg, len, l->initiator);
}

/* Where noise_send_frame writes one message: a frame's payload in the queue. */
static unsigned char *
link_place(void *ctx, size_t len)
{
	struct link *l = ctx;
	return ws_frame_put(&l->out, WS_OP_BINARY, len, l->initiator);
}

static void link_flush_due(lws_sorted_usec_list_t *sul);

/* What was queued goes out from a timer due at once, which runs as the loop's next pass
 * begins, before it polls: every message of this pass in one write, without first
 * polling for POLLOUT, which an idle socket reports at once anyway (one more pass of
 * the loop per message on each hop). Only a closing link, or a socket that did not take
 * everything, waits for the writeable callback. */
static void
link_want_write(struct link *l)
{
	if (l->wsi && !l->flush_due) {
		l->flush_due = 1;
		lws_sul_schedule(lws_get_context(l->wsi), 0, &l->sul_flush, link_flush_due, 0);
	}
}

int
link_send(struct link *l, const void *cbor, size_t len)
{
	if (!l->up || l->closing)
		return 0;
	if (l->out.len >= l->max_queue)
		return -1;
	if (l->out.len == 0)
		l->progress = lws_now_usecs();
	size_t at = l->out.len;
	if (noise_send_frame(&l->s.send, cbor, len, link_place, l) != 0) {
		l->out.len = at;
		return -1;
	}
	l->last_tx = lws_now_usecs();
	link_want_write(l);
	return 0;
}

size_t
link_pending(const struct link *l)
{
	return l->out.len;
}

int
link_stalled(const struct link *l, lws_usec_t us)
{
	return l->out.len && lws_now_usecs() - l->progress > us;
}

void
link_close(struct link *l, int status, const char *reason, int flush)
{
	if (l->closing)
		return;
	l->closing = 1;
	l->flush = flush && l->up;   /* a link not up has nothing of ours to deliver */
	l->close_status = status;
	snprintf(l->close_reason, sizeof l->close_reason, "%s", reason);
	if (!l->why[0])
		snprintf(l->why, sizeof l->why, "%s", reason);
	if (!l->wsi)
		return;
	/* The close frame goes out from the writeable callback; a peer that does not read
	 * may never let that come, so a timeout (lws's only way to close a connection
	 * from outside its callbacks) ends it regardless. */
	link_want_write(l);
	if (!flush)
		link_pause(l, 1);
	lws_set_timeout(l->wsi, PENDING_TIMEOUT_CLOSE_SEND, l->flush ? LINK_HANDSHAKE_SECS : 1);
}

int
link_closing(const struct link *l)
{
	return l->closing;
}

void
link_pause(struct link *l, int pause)
{
	if (l->wsi && l->up)
		lws_rx_flow_control(l->wsi, !pause);
}

int link_is_up(const struct link *l) { return l->up; }
int link_initiator(const struct link *l) { return l->initiator; }
const unsigned char *link_node(const struct link *l) { return l->node; }
const unsigned char *link_hash(const struct link *l) { return l->hash; }
const char *link_address(const struct link *l) { return l->address; }
void link_set_user(struct link *l, void *user) { l->user = user; }
void *link_user(const struct link *l) { return l->user; }

static void
link_payload(const struct link *l, unsigned char out[LINK_PAYLOAD_LEN])
{
	out[0] = 0xa1;                 /* map(1) */
	out[1] = 0x64;                 /* text(4) */
	memcpy(out + 2, "node", 4);
	out[6] = 0x40 | LINK_NODE_LEN; /* bytes(16) */
	memcpy(out + 7, l->our_node, LINK_NODE_LEN);
}

static int
link_payload_parse(struct link *l, const unsigned char *p, long n)
{
	unsigned char want[LINK_PAYLOAD_LEN];

	link_payload(l, want);
	if (n != LINK_PAYLOAD_LEN || memcmp(p, want, 7) != 0)
		return -1;
	memcpy(l->node, p + 7, LINK_NODE_LEN);
	return 0;
}

static int
link_hs_write(struct link *l)
{
	unsigned char payload[LINK_PAYLOAD_LEN];
	unsigned char msg[NOISE_DHLEN + LINK_PAYLOAD_LEN + NOISE_TAGLEN];

	link_payload(l, payload);
	long n = noise_handshake_write(&l->hs, payload, sizeof payload, msg);
	if (n < 0 || link_queue(l, msg, (size_t)n) < 0)
		return -1;
	link_want_write(l);
	return 0;
}

static int
link_split(struct link *l)
{
	if (noise_handshake_split(&l->hs, &l->s) < 0)
		return -1;
	memcpy(l->hash, l->s.h, sizeof l->hash);
	l->keyed = 1;
	return 0;
}

/* An empty non-final piece: no frame, but proof that we hold the session's keys. */
static int
link_send_empty(struct link *l)
{
	unsigned char msg[1 + NOISE_TAGLEN] = { 0 };
	long n = noise_encrypt(&l->s.send, msg, 1, msg);

	if (n < 0 || link_queue(l, msg, (size_t)n) < 0)
		return -1;
	l->last_tx = lws_now_usecs();
	link_want_write(l);
	return 0;
}

static void link_live(lws_sorted_usec_list_t *sul);

static void
link_up(struct link *l)
{
	l->up = 1;
	l->last_rx = lws_now_usecs();
	if (!l->last_tx)
		l->last_tx = l->last_rx;
	lws_set_timeout(l->wsi, NO_PENDING_TIMEOUT, 0);
	lws_sul_schedule(lws_get_context(l->wsi), 0, &l->live, link_live, LINK_LIVE_TICK_US);
	l->ops->up(l->ctx, l);
}

/* One whole WebSocket message. -1 closes the link. msg1 can be replayed by anyone who saw
 * it, so the accepting end answers it with msg2 and nothing else, and takes the link as
 * up only when the dialler's first transport message decrypts: the dialler sends one (an
 * empty piece) at once after reading msg2. Until then the handshake deadline runs. */
static int
link_message(struct link *l, const unsigned char *msg, size_t len)
{
	if (!l->keyed) {
		unsigned char payload[NOISE_MAX_MSG];
		long n = noise_handshake_read(&l->hs, msg, len, payload);
		if (n < 0 || link_payload_parse(l, payload, n) < 0) {
			snprintf(l->why, sizeof l->why, "handshake failed");
			return -1;
		}
		if (!l->initiator)
			return link_hs_write(l) < 0 || link_split(l) < 0 ? -1 : 0;
		if (link_split(l) < 0 || link_send_empty(l) < 0)
			return -1;
		link_up(l);
		return 0;
	}
	int r = noise_recv_piece(&l->s.recv, &l->re, msg, len);
	if (r < 0) {
		link_acc_free(l);
		snprintf(l->why, sizeof l->why, "message does not decrypt");
		return -1;
	}
	l->last_rx = lws_now_usecs();
	if (!l->up)
		link_up(l);
	if (r == 0) {
		if (!l->re.acc.len)
			return 0;   /* an empty piece between frames: the other end's keepalive */
		link_acc_count(l, l->re.acc.cap, 0);
		if (partial_total > LINK_PARTIAL_BUDGET) {
			link_acc_free(l);
			snprintf(l->why, sizeof l->why, "unfinished frames past the budget");
			return -1;
		}
		return 0;
	}
	size_t n;
	const unsigned char *f = noise_reassembly_frame(&l->re, &n);
	l->ops->frame(l->ctx, l, f, n);
	link_acc_done(l);
	return 0;
}

static int
link_receive(struct link *l, struct lws *wsi, const unsigned char *in, size_t len)
{
	int last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);

	if (l->closing && !l->flush)
		return 0;
	if (!lws_frame_is_binary(wsi)) {
		snprintf(l->why, sizeof l->why, "text message");
		return -1;
	}
	if (last && l->msg.len == 0)
		return link_message(l, in, len);
	if (buf_append(&l->msg, in, len) < 0) {
		snprintf(l->why, sizeof l->why, "message too long");
		return -1;
	}
	if (!last)
		return 0;
	int r = link_message(l, buf_data(&l->msg), l->msg.len);
	buf_reset(&l->msg);
	return r;
}

static int
link_writeable(struct link *l, struct lws *wsi)
{
	size_t before = l->out.len;

	if (l->closing && (!l->flush || l->out.len == 0)) {
		if (!l->initiator) {
			lws_close_reason(wsi, l->close_status, (unsigned char *)l->close_reason,
			    strlen(l->close_reason));
			return -1;
		}
		/* Our own close frame, then the socket: the server needs no answer from us. */
		unsigned char pl[2 + sizeof l->close_reason];
		size_t rl = strlen(l->close_reason);
		pl[0] = (unsigned char)(l->close_status >> 8);
		pl[1] = (unsigned char)l->close_status;
		memcpy(pl + 2, l->close_reason, rl);
		buf_reset(&l->out);
		if (l->wsc.open && ws_frame_append(&l->out, WS_OP_CLOSE, pl, 2 + rl, 1) == 0)
			lws_write(wsi, buf_data(&l->out), l->out.len, LWS_WRITE_RAW);
		return -1;
	}
	if (l->out.len && ws_queue_send(wsi, &l->out) < 0) {
		snprintf(l->why, sizeof l->why, "write failed");
		return -1;
	}
	if (l->out.len < before) {
		l->progress = lws_now_usecs();
		if (before > l->max_queue / 4 && l->out.len <= l->max_queue / 4 && l->up &&
		    !l->closing && l->ops->drained)
			l->ops->drained(l->ctx, l);
	}
	if (l->out.len || l->closing)
		lws_callback_on_writable(wsi);
	return 0;
}

static void
link_flush_due(lws_sorted_usec_list_t *sul)
{
	struct link *l = lws_container_of(sul, struct link, sul_flush);

	l->flush_due = 0;
	if (!l->wsi)
		return;
	if (l->closing || lws_partial_buffered(l->wsi)) {
		lws_callback_on_writable(l->wsi);
	} else if (link_writeable(l, l->wsi) < 0) {
		log_info("closing the link to %s: %s", l->address, l->why);
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
	}
}

/* The other end sent a close frame (payload: status, reason). Its reason is only text
 * for logs and unlinked frames, escaped, and only once the link is up: before that the
 * other end is not known to hold the key, so nothing it says is taken. */
static void
link_peer_closed(struct link *l, const unsigned char *p, size_t n)
{
	if (!l->up)
		snprintf(l->why, sizeof l->why, "closed before the handshake finished");
	else if (n > 2)
		log_escape((const char *)p + 2, n - 2, l->why, sizeof l->why);
	else if (!l->why[0])
		snprintf(l->why, sizeof l->why, "closed");
}

/* One frame from the server (dialling end). */
static int
link_ws_frame(void *ctx, int op, int fin, const unsigned char *p, size_t n)
{
	struct link *l = ctx;

	switch (op) {
	case WS_OP_BINARY:
	case WS_OP_CONT:
		if ((op == WS_OP_BINARY) == l->frag) {
			snprintf(l->why, sizeof l->why, "bad fragments");
			return -1;
		}
		if (fin && op == WS_OP_BINARY)
			return link_message(l, p, n);
		if (buf_append(&l->msg, p, n) < 0) {
			snprintf(l->why, sizeof l->why, "message too long");
			return -1;
		}
		l->frag = !fin;
		if (!fin)
			return 0;
		int r = link_message(l, buf_data(&l->msg), l->msg.len);
		buf_reset(&l->msg);
		return r;
	case WS_OP_PING:
		if (ws_frame_append(&l->out, WS_OP_PONG, p, n, 1) == 0)
			link_want_write(l);
		return 0;
	case WS_OP_PONG:
		return 0;
	case WS_OP_CLOSE:
		link_peer_closed(l, p, n);
		return -1;
	default:
		snprintf(l->why, sizeof l->why, "unexpected frame");
		return -1;
	}
}

/* Liveness, both ends, once up: only transport messages that decrypt count as traffic
 * (a WebSocket pong proves nothing about the key), so each end sends an empty piece when
 * it has sent nothing for LINK_PING_SECS. */
static void
link_live(lws_sorted_usec_list_t *sul)
{
	struct link *l = lws_container_of(sul, struct link, live);
	lws_usec_t now = lws_now_usecs(), age = now - l->last_rx;

	if (!l->wsi)
		return;
	if (l->kept && age >= LINK_LIVE_TICK_US)
		link_acc_free(l);
	if (age > LINK_HANGUP_SECS * LWS_US_PER_SEC) {
		snprintf(l->why, sizeof l->why, "silent for %d s", LINK_HANGUP_SECS);
		log_info("closing the link to %s: %s", l->address, l->why);
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	if (!l->closing && !l->out.len && now - l->last_tx >= LINK_PING_SECS * LWS_US_PER_SEC &&
	    link_send_empty(l) < 0) {
		snprintf(l->why, sizeof l->why, "cannot send");
		lws_set_timeout(l->wsi, PENDING_TIMEOUT_USER_OK, LWS_TO_KILL_ASYNC);
		return;
	}
	lws_sul_schedule(lws_get_context(l->wsi), 0, &l->live, link_live, LINK_LIVE_TICK_US);
}

static int
link_raw_rx(struct link *l, const unsigned char *in, size_t len)
{
	const char *err = NULL;

	if (wsc_feed(&l->wsc, in, len, link_ws_frame, l, &err) < 0) {
		if (err)
			snprintf(l->why, sizeof l->why, "%s", err);
		return -1;
	}
	if (l->wsc.open && !l->hs_sent) {
		l->hs_sent = 1;
		return link_hs_write(l);
	}
	return 0;
}

static void
link_gone(struct link *l)
{
	if (l->gone)
		return;
	l->gone = 1;
	if (l->wsi)
		lws_set_opaque_user_data(l->wsi, NULL);
	l->wsi = NULL;
	if (l->dialing)
		return;
	l->ops->down(l->ctx, l, l->why[0] ? l->why : "closed");
	link_free(l);
}

static void
link_peer_address(struct lws *wsi, char *out, size_t len)
{
	lws_get_peer_simple(wsi, out, len);
	if (strncmp(out, "::ffff:", 7) == 0 && strchr(out, '.'))
		memmove(out, out + 7, strlen(out + 7) + 1);
}

/* The first message of an incoming connection, msg1, names no channel: the acceptor finds
 * the one whose key opens it, and only then is there a link. */
static int
link_accept_first(struct lws *wsi, struct link_pss *pss, const unsigned char *in, size_t len)
{
	int last = lws_is_final_fragment(wsi) && !lws_remaining_packet_payload(wsi);
	char address[64];
	struct link *l;

	link_peer_address(wsi, address, sizeof address);
	if (!lws_frame_is_binary(wsi) || len > sizeof pss->msg1 - pss->len) {
		log_info("refused a link from %s: its first message is no handshake", address);
		return -1;
	}
	memcpy(pss->msg1 + pss->len, in, len);
	pss->len += len;
	if (!last)
		return 0;
	if (!acceptor || !(l = acceptor(acceptor_ctx, pss->msg1, pss->len))) {
		log_info("refused a link from %s: its handshake opens no channel open here",
		    address);
		return -1;
	}
	l->wsi = wsi;
	lws_set_opaque_user_data(wsi, l);
	snprintf(l->address, sizeof l->address, "%s", address);
	if (link_message(l, pss->msg1, pss->len) < 0) {
		log_info("closing a link from %s: %s", l->address, l->why);
		return -1;
	}
	return 0;
}

/* The accepting side: an upgrade is a link only on LINK_PATH, and only while an
 * acceptor (mesh) is there to find its channel. 1 refuses it. */
static int
link_filter_upgrade(struct lws *wsi)
{
	char path[sizeof LINK_PATH + 1];

	if (lws_hdr_copy(wsi, path, sizeof path, WSI_TOKEN_GET_URI) <= 0 ||
	    strcmp(path, LINK_PATH) != 0 || !acceptor) {
		log_info("refused a link upgrade that is not for " LINK_PATH);
		return 1;
	}
	return 0;
}

/* The dialling side's socket is up: the WebSocket upgrade request (wsclient.h), with the
 * handshake deadline from here. */
static int
link_send_upgrade(struct link *l, struct lws *wsi)
{
	char req[512];
	int n;

	if ((n = wsc_request(&l->wsc, req, sizeof req, "nws-link", LINK_PATH)) < 0 ||
	    lws_write(wsi, (unsigned char *)req, (size_t)n, LWS_WRITE_RAW) < n)
		return -1;
	lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LINK_HANDSHAKE_SECS);
	return 0;
}

static int
link_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct link *l = lws_get_opaque_user_data(wsi);
	struct link_pss *pss = user;

	switch (reason) {
	case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
		return link_filter_upgrade(wsi);
	case LWS_CALLBACK_ESTABLISHED:
		/* No link yet: its channel is known only from msg1 (link_accept_first). */
		lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, LINK_HANDSHAKE_SECS);
		return 0;
	case LWS_CALLBACK_RAW_CONNECTED:
		return l ? link_send_upgrade(l, wsi) : -1;
	case LWS_CALLBACK_RAW_RX:
		if (!l)
			return -1;
		if (link_raw_rx(l, in, len) < 0) {
			log_info("closing the link to %s: %s", l->address, l->why);
			return -1;
		}
		return 0;
	case LWS_CALLBACK_RECEIVE:
		if (!l)
			return pss ? link_accept_first(wsi, pss, in, len) : -1;
		if (link_receive(l, wsi, in, len) < 0) {
			log_info("closing a link from %s: %s", l->address, l->why);
			return -1;
		}
		return 0;
	case LWS_CALLBACK_SERVER_WRITEABLE:
	case LWS_CALLBACK_RAW_WRITEABLE:
		if (!l)
			return -1;
		return link_writeable(l, wsi);
	case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
		if (l)
			link_peer_closed(l, in, len);
		return 0;
	case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
		if (l) {
			snprintf(l->why, sizeof l->why, "%s", in ? (const char *)in : "cannot connect");
			log_info("cannot link to %s: %s", l->address, l->why);
			link_gone(l);
		}
		return 0;
	case LWS_CALLBACK_CLOSED:
	case LWS_CALLBACK_RAW_CLOSE:
		if (l && !l->up && !l->why[0])
			snprintf(l->why, sizeof l->why, "handshake did not finish");
		if (l)
			link_gone(l);
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols link_protocol = {
	.name = LINK_SUBPROTOCOL,
	.callback = link_callback,
	.per_session_data_size = sizeof(struct link_pss),
	.rx_buffer_size = NOISE_MAX_MSG + 16,
};

int
link_dial(struct link *l, struct lws_context *cx, struct lws_vhost *vh,
    const char *address, int port, const char *iface)
{
	struct lws_client_connect_info ci;
	const char *why;
	char addr[96];
	struct lws *wsi;

	/* Checked again here: nothing but an IP literal may reach the request's bytes. */
	if (link_target_check(address, port, iface, &why) < 0) {
		log_error("not dialling a peer: %s", why);
		link_free(l);
		return -1;
	}
	if (iface && *iface && strncmp(address, "fe80:", 5) == 0 && !strchr(address, '%'))
		snprintf(addr, sizeof addr, "%s%%%s", address, iface);
	else
		snprintf(addr, sizeof addr, "%s", address);
	snprintf(l->address, sizeof l->address, "%s", address);
	memset(&ci, 0, sizeof ci);
	ci.context = cx;
	ci.vhost = vh;
	ci.address = addr;
	ci.port = port;
	ci.path = LINK_PATH;
	ci.host = "nws-link";
	ci.method = "RAW";     /* WebSocket is spoken by wsclient, see its header */
	ci.local_protocol_name = LINK_SUBPROTOCOL;
	ci.opaque_user_data = l;
	ci.pwsi = &l->wsi;
	l->dialing = 1;
	wsi = lws_client_connect_via_info(&ci);
	l->dialing = 0;
	if (!wsi || l->gone) {
		if (!l->gone)
			log_info("cannot link to %s: cannot start a connection", l->address);
		link_free(l);
		return -1;
	}
	return 0;
}
