/* wsclient: the dialling end's WebSocket parser, in both of its modes: from the server's
 * answer on (byte 0 even), or already open (odd). The same bytes fed whole and in chunks
 * (sizes seeded by byte 1) give the same frames in the same order and the same verdict;
 * no frame passes max_payload (chosen by byte 2) or, for control frames, 125 bytes. The
 * key is RFC 6455's example, so a seed can hold an answer that is accepted. */
#include <string.h>

#include "buf.h"
#include "fuzz.h"
#include "link.h"
#include "wsclient.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="

struct seen {
	struct buf log;
	size_t max_payload;
};

static int
on_frame(void *ctx, int op, int fin, const unsigned char *p, size_t n)
{
	struct seen *s = ctx;
	unsigned char h[2] = { (unsigned char)op, (unsigned char)fin };

	fuzz_check(n <= s->max_payload && (op < WS_OP_CLOSE || n <= 125));
	fuzz_check(buf_append(&s->log, h, 2) == 0 && buf_append(&s->log, &n, sizeof n) == 0 &&
	    buf_append(&s->log, p, n) == 0);
	/* A close frame ends the connection, as the link's callback does. */
	return op == WS_OP_CLOSE ? -1 : 0;
}

/* Feeds s[0..n) in chunks (seed 0: whole); returns 0 or -1 as wsc_feed last did. */
static int
feed(int open, size_t max_payload, const unsigned char *s, size_t n, uint32_t seed,
    struct seen *seen)
{
	struct wsc w;
	const char *err = NULL;
	size_t off = 0;
	int rc = 0;

	wsc_init(&w, LINK_SUBPROTOCOL, max_payload);
	memcpy(w.key, RFC_KEY, sizeof RFC_KEY);
	w.open = open;
	seen->max_payload = max_payload;
	do {
		size_t k = seed ? 1 + fuzz_rand(&seed) % 61 : n - off;
		if (k > n - off)
			k = n - off;
		rc = wsc_feed(&w, s + off, k, on_frame, seen, &err);
		off += k;
	} while (rc == 0 && off < n);
	wsc_free(&w);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct seen whole, chunked;

	if (n < 3)
		return 0;
	int open = p[0] & 1;
	size_t max_payload = (size_t)16 << (p[2] & 7);
	buf_init(&whole.log, 0);
	buf_init(&chunked.log, 0);
	int a = feed(open, max_payload, p + 3, n - 3, 0, &whole);
	int b = feed(open, max_payload, p + 3, n - 3, p[1] | 0x100u, &chunked);
	if (a != b || whole.log.len != chunked.log.len || (whole.log.len &&
	    memcmp(buf_data(&whole.log), buf_data(&chunked.log), whole.log.len) != 0)) {
		fprintf(stderr, "whole (%d, %zu bytes of frames) and chunked (%d, %zu) differ\n",
		    a, whole.log.len, b, chunked.log.len);
		abort();
	}
	buf_clear(&whole.log);
	buf_clear(&chunked.log);
	return 0;
}
