#include "wsclient.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sodium.h>
#include <libwebsockets.h>

/* The header maps lws_SHA1 to OpenSSL's SHA1, which is not linked; libwebsockets exports
 * its own. */
#undef lws_SHA1
unsigned char *lws_SHA1(const unsigned char *d, size_t n, unsigned char *md);

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_ANSWER_MAX 8192

void
wsc_init(struct wsc *w, const char *subprotocol, size_t max_payload)
{
	memset(w, 0, sizeof *w);
	w->subprotocol = subprotocol;
	w->max_payload = max_payload;
	buf_init(&w->in, max_payload + WS_HDR_MAX + WS_ANSWER_MAX);
}

void
wsc_free(struct wsc *w)
{
	buf_clear(&w->in);   /* ciphertext and headers only */
}

int
wsc_request(struct wsc *w, char *out, size_t outlen, const char *host, const char *path)
{
	unsigned char nonce[16];

	randombytes_buf(nonce, sizeof nonce);
	sodium_bin2base64(w->key, sizeof w->key, nonce, sizeof nonce,
	    sodium_base64_VARIANT_ORIGINAL);
	int n = snprintf(out, outlen,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Protocol: %s\r\n"
	    "\r\n", path, host, w->key, w->subprotocol);
	return n < 0 || (size_t)n >= outlen ? -1 : n;
}

/* The value of header name in the answer head (NUL-terminated), trimmed, or NULL. */
static const char *
header(const char *head, const char *name, size_t *vlen)
{
	size_t nl = strlen(name);

	for (const char *l = strstr(head, "\r\n"); l; l = strstr(l, "\r\n")) {
		l += 2;
		if (strncasecmp(l, name, nl) == 0 && l[nl] == ':') {
			const char *v = l + nl + 1, *e = strstr(v, "\r\n");
			while (*v == ' ' || *v == '\t')
				v++;
			if (!e)
				return NULL;
			while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
				e--;
			*vlen = (size_t)(e - v);
			return v;
		}
	}
	return NULL;
}

/* Checks the answer in head: 101, the accept hash of our key, our subprotocol. */
static int
answer_ok(struct wsc *w, const char *head, const char **err)
{
	char text[sizeof w->key + sizeof WS_GUID];
	unsigned char md[20];
	char want[32];
	const char *v;
	size_t vl;

	if (strncmp(head, "HTTP/1.1 101", 12) != 0) {
		*err = "the server refused the upgrade";
		return -1;
	}
	snprintf(text, sizeof text, "%s%s", w->key, WS_GUID);
	lws_SHA1((const unsigned char *)text, strlen(text), md);
	sodium_bin2base64(want, sizeof want, md, sizeof md, sodium_base64_VARIANT_ORIGINAL);
	if (!(v = header(head, "Sec-WebSocket-Accept", &vl)) || vl != strlen(want) ||
	    memcmp(v, want, vl) != 0) {
		*err = "bad Sec-WebSocket-Accept";
		return -1;
	}
	if (!(v = header(head, "Sec-WebSocket-Protocol", &vl)) ||
	    vl != strlen(w->subprotocol) || memcmp(v, w->subprotocol, vl) != 0) {
		*err = "the server did not take the subprotocol";
		return -1;
	}
	return 0;
}

/* Frames at p: returns the bytes used (whole frames only), -1 on error. */
static long
frames(struct wsc *w, const unsigned char *p, size_t n, wsc_frame_fn fn, void *ctx,
    const char **err)
{
	size_t pos = 0;

	while (n - pos >= 2) {
		const unsigned char *h = p + pos;
		size_t len = h[1] & 0x7f, hl = 2;
		int op = h[0] & 0x0f;

		if (h[1] & 0x80) {
			*err = "a masked frame from the server";
			return -1;
		}
		if (h[0] & 0x70) {
			*err = "reserved bits set";
			return -1;
		}
		if (len == 126) {
			if (n - pos < 4)
				break;
			len = (size_t)h[2] << 8 | h[3];
			hl = 4;
		} else if (len == 127) {
			uint64_t l64 = 0;
			if (n - pos < 10)
				break;
			for (int i = 0; i < 8; i++)
				l64 = l64 << 8 | h[2 + i];
			if (l64 > w->max_payload) {
				*err = "frame too long";
				return -1;
			}
			len = (size_t)l64;
			hl = 10;
		}
		if (len > w->max_payload || (op >= WS_OP_CLOSE && len > 125)) {
			*err = "frame too long";
			return -1;
		}
		if (n - pos < hl + len)
			break;
		if (fn(ctx, op, !!(h[0] & 0x80), h + hl, len) < 0) {
			*err = NULL;
			return -1;
		}
		pos += hl + len;
	}
	return (long)pos;
}

/* How many bytes the frame starting with h[0..have) needs in all, as far as its header
 * tells yet; 0 when its length cannot be (a masked or oversized frame: frames() says). */
static size_t
frame_need(const struct wsc *w, const unsigned char *h, size_t have)
{
	size_t len, hl = 2;

	if (have < 2)
		return 2;
	len = h[1] & 0x7f;
	if (len == 126) {
		if (have < 4)
			return 4;
		len = (size_t)h[2] << 8 | h[3];
		hl = 4;
	} else if (len == 127) {
		uint64_t l64 = 0;
		if (have < 10)
			return 10;
		for (int i = 0; i < 8; i++)
			l64 = l64 << 8 | h[2 + i];
		if (l64 > w->max_payload)
			return 0;
		len = (size_t)l64;
		hl = 10;
	}
	return (h[1] & 0x80) ? 0 : hl + len;
}

int
wsc_feed(struct wsc *w, const unsigned char *p, size_t n, wsc_frame_fn fn, void *ctx,
    const char **err)
{
	long used;

	if (n == 0)
		return 0;   /* nothing to search: an empty buffer has no data pointer */
	if (!w->open) {
		/* Only the answer is bounded by WS_ANSWER_MAX, not the frames that may follow it
		 * in the same read: buffer no more than the answer can take. */
		size_t take = n < WS_ANSWER_MAX - w->in.len ? n : WS_ANSWER_MAX - w->in.len;
		/* The end was not in what came before: search only from where it could
		 * start, so an answer arriving in many small reads is not rescanned each time. */
		size_t from = w->in.len > 3 ? w->in.len - 3 : 0;
		if (buf_append(&w->in, p, take) < 0) {
			*err = "answer too long";
			return -1;
		}
		unsigned char *d = buf_data(&w->in);
		unsigned char *end = memmem(d + from, w->in.len - from, "\r\n\r\n", 4);
		if (!end) {
			if (w->in.len < WS_ANSWER_MAX)
				return 0;
			*err = "answer too long";
			return -1;
		}
		size_t hl = (size_t)(end - d) + 4;
		char head[WS_ANSWER_MAX + 1];
		memcpy(head, d, hl);
		head[hl] = '\0';
		if (answer_ok(w, head, err) < 0)
			return -1;
		w->open = 1;
		/* The answer ends in what this call took (it was not whole before): the bytes
		 * behind it are frames, parsed from p below like any others. */
		size_t behind = w->in.len - hl;
		buf_reset(&w->in);
		p += take - behind;
		n -= take - behind;
	}
	/* A frame split across reads: complete it from p, byte counts from its header. */
	while (w->in.len && n) {
		size_t need = frame_need(w, buf_data(&w->in), w->in.len);
		if (need == 0) {
			/* Let frames() name the problem. */
			if (frames(w, buf_data(&w->in), w->in.len, fn, ctx, err) >= 0)
				*err = "bad frame";
			return -1;
		}
		size_t take = need > w->in.len ? need - w->in.len : 0;
		if (take > n)
			take = n;
		if (buf_append(&w->in, p, take) < 0) {
			*err = "frame too long";
			return -1;
		}
		p += take;
		n -= take;
		if ((used = frames(w, buf_data(&w->in), w->in.len, fn, ctx, err)) < 0)
			return -1;
		buf_consume(&w->in, (size_t)used);
	}
	if (!n)
		return 0;
	/* The usual case: whole frames parsed where they were read, the tail kept. */
	if ((used = frames(w, p, n, fn, ctx, err)) < 0)
		return -1;
	if ((size_t)used < n && buf_append(&w->in, p + used, n - (size_t)used) < 0) {
		*err = "frame too long";
		return -1;
	}
	return 0;
}

/* A final frame's header; its length. */
static size_t
frame_header(unsigned char h[WS_HDR_MAX], int opcode, size_t n, int masked)
{
	size_t hl = 2;

	memset(h, 0, WS_HDR_MAX);
	h[0] = (unsigned char)(0x80 | opcode);
	if (n < 126)
		h[1] = (unsigned char)n;
	else if (n < 65536) {
		h[1] = 126;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	} else {
		h[1] = 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
		hl = 10;
	}
	if (masked) {
		h[1] |= 0x80;
		hl += 4;    /* the zero key */
	}
	return hl;
}

unsigned char *
ws_frame_put(struct buf *out, int opcode, size_t n, int masked)
{
	unsigned char h[WS_HDR_MAX];
	size_t hl = frame_header(h, opcode, n, masked);

	if (buf_reserve(out, hl + n) < 0)
		return NULL;
	unsigned char *d = out->p + out->off + out->len;
	memcpy(d, h, hl);
	out->len += hl + n;
	return d + hl;
}

/* Room for a server frame's longest header (no masking key). */
#define SERVER_HDR_MAX (WS_HDR_MAX - 4)

int
ws_frame_open(struct buf *out)
{
	if (buf_reserve(out, SERVER_HDR_MAX) < 0)
		return -1;
	out->len += SERVER_HDR_MAX;
	return 0;
}

void
ws_frame_close_up(struct buf *out, size_t at, int opcode)
{
	unsigned char h[WS_HDR_MAX];
	unsigned char *d = buf_data(out) + at;
	size_t n = out->len - at - SERVER_HDR_MAX;
	size_t hl = frame_header(h, opcode, n, 0);

	if (hl < SERVER_HDR_MAX)
		memmove(d + hl, d + SERVER_HDR_MAX, n);
	memcpy(d, h, hl);
	out->len -= SERVER_HDR_MAX - hl;
}

int
ws_frame_append(struct buf *out, int opcode, const void *p, size_t n, int masked)
{
	unsigned char *d = ws_frame_put(out, opcode, n, masked);

	if (!d)
		return -1;
	if (n)
		memcpy(d, p, n);
	return 0;
}

size_t
ws_frame_len(const unsigned char *p)
{
	size_t n = p[1] & 0x7f, hl = 2;

	if (n == 126) {
		n = (size_t)p[2] << 8 | p[3];
		hl = 4;
	} else if (n == 127) {
		n = 0;
		for (int i = 0; i < 8; i++)
			n = n << 8 | p[2 + i];
		hl = 10;
	}
	return hl + ((p[1] & 0x80) ? 4 : 0) + n;
}

long
ws_queue_send(struct lws *wsi, struct buf *q)
{
	unsigned char *p = buf_data(q);
	ssize_t w = send(lws_get_socket_fd(wsi), p, q->len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (w < 0) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return -1;
		w = 0;
	}
	size_t end = 0;
	while (end < (size_t)w)
		end += ws_frame_len(p + end);
	if (end > (size_t)w &&
	    lws_write(wsi, p + w, end - (size_t)w, LWS_WRITE_HTTP) < (int)(end - (size_t)w))
		return -1;
	buf_consume(q, end);
	return (long)w;
}
