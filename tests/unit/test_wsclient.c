/* wsclient: the server's answer checked against RFC 6455's example key, frames parsed
 * whole, split at every byte and right behind the answer, and what must be refused
 * (masked server frames, a missing subprotocol, a refused upgrade, oversized frames). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "wsclient.h"

#define RFC_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define RFC_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
#define ANSWER "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n" \
	"Connection: Upgrade\r\nSec-WebSocket-Accept: " RFC_ACCEPT "\r\n" \
	"Sec-WebSocket-Protocol: nws-link.1\r\n\r\n"

struct seen {
	int n;
	int op[16];
	size_t len[16];
	unsigned char data[16][300];
};

static int
on_frame(void *ctx, int op, int fin, const unsigned char *p, size_t n)
{
	struct seen *s = ctx;

	assert_true(fin);
	assert_true(s->n < 16 && n <= 300);
	s->op[s->n] = op;
	s->len[s->n] = n;
	memcpy(s->data[s->n], p, n);
	s->n++;
	return 0;
}

static void
open_client(struct wsc *w)
{
	char req[512];

	wsc_init(w, "nws-link.1", 65535);
	assert_true(wsc_request(w, req, sizeof req, "h", "/p") > 0);
	assert_non_null(strstr(req, "Sec-WebSocket-Protocol: nws-link.1\r\n"));
	assert_non_null(strstr(req, "GET /p HTTP/1.1\r\n"));
	/* The RFC's example key, so the expected accept value is known. */
	snprintf(w->key, sizeof w->key, "%s", RFC_KEY);
}

/* The answer, a 5-byte binary frame, a 200-byte one (16-bit length) and a ping. */
static size_t
stream(unsigned char *out)
{
	struct buf b;
	unsigned char big[200];

	memset(big, 0xab, sizeof big);
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, ANSWER), 0);
	assert_int_equal(ws_frame_append(&b, WS_OP_BINARY, "hello", 5, 0), 0);
	assert_int_equal(ws_frame_append(&b, WS_OP_BINARY, big, sizeof big, 0), 0);
	assert_int_equal(ws_frame_append(&b, WS_OP_PING, "", 0, 0), 0);
	size_t n = b.len;
	memcpy(out, buf_data(&b), n);
	buf_clear(&b);
	return n;
}

static void
check_seen(const struct seen *s)
{
	assert_int_equal(s->n, 3);
	assert_int_equal(s->op[0], WS_OP_BINARY);
	assert_int_equal(s->len[0], 5);
	assert_memory_equal(s->data[0], "hello", 5);
	assert_int_equal(s->len[1], 200);
	assert_int_equal(s->data[1][199], 0xab);
	assert_int_equal(s->op[2], WS_OP_PING);
	assert_int_equal(s->len[2], 0);
}

static void
test_whole(void **state)
{
	unsigned char in[1024];
	size_t n = stream(in);
	struct wsc w;
	struct seen s = { 0 };
	const char *err = NULL;

	(void)state;
	open_client(&w);
	assert_int_equal(wsc_feed(&w, in, n, on_frame, &s, &err), 0);
	assert_true(w.open);
	check_seen(&s);
	wsc_free(&w);
}

static void
test_split_everywhere(void **state)
{
	unsigned char in[1024];
	size_t n = stream(in);

	(void)state;
	for (size_t cut = 1; cut < n; cut++) {
		struct wsc w;
		struct seen s = { 0 };
		const char *err = NULL;
		open_client(&w);
		assert_int_equal(wsc_feed(&w, in, cut, on_frame, &s, &err), 0);
		assert_int_equal(wsc_feed(&w, in + cut, n - cut, on_frame, &s, &err), 0);
		check_seen(&s);
		wsc_free(&w);
	}
	/* One byte at a time. */
	struct wsc w;
	struct seen s = { 0 };
	const char *err = NULL;
	open_client(&w);
	for (size_t i = 0; i < n; i++)
		assert_int_equal(wsc_feed(&w, in + i, 1, on_frame, &s, &err), 0);
	check_seen(&s);
	wsc_free(&w);
}

static void
refused(const char *answer, const unsigned char *frame, size_t flen)
{
	struct wsc w;
	struct seen s = { 0 };
	const char *err = NULL;
	unsigned char in[1024];
	size_t n = strlen(answer);

	memcpy(in, answer, n);
	if (flen)
		memcpy(in + n, frame, flen);
	open_client(&w);
	assert_int_equal(wsc_feed(&w, in, n + flen, on_frame, &s, &err), -1);
	assert_non_null(err);
	assert_int_equal(s.n, 0);
	wsc_free(&w);
}

static void
test_refusals(void **state)
{
	static const unsigned char masked[] = { 0x82, 0x81, 1, 2, 3, 4, 'x' };
	static const unsigned char huge[] = { 0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0 };
	static const unsigned char bigping[] = { 0x89, 126, 0, 200 };

	(void)state;
	refused(ANSWER, masked, sizeof masked);
	refused(ANSWER, huge, sizeof huge);
	refused(ANSWER, bigping, sizeof bigping);
	refused("HTTP/1.1 404 Not Found\r\n\r\n", NULL, 0);
	refused("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: " RFC_ACCEPT
	    "\r\n\r\n", NULL, 0);
	refused("HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: x\r\n"
	    "Sec-WebSocket-Protocol: nws-link.1\r\n\r\n", NULL, 0);
}

static int
count_frame(void *ctx, int op, int fin, const unsigned char *p, size_t n)
{
	size_t *total = ctx;

	(void)op;
	(void)fin;
	(void)p;
	*total += n;
	return 0;
}

/* Frames that come in the answer's read are no part of it: however long they are, the
 * 8 KiB bound is the answer's alone (the whole read was refused as "answer too long"). */
static void
test_answer_bound_is_the_answers_alone(void **state)
{
	static unsigned char big[20000];
	struct buf b;
	struct wsc w;
	size_t total = 0;
	const char *err = NULL;

	(void)state;
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, ANSWER), 0);
	assert_int_equal(ws_frame_append(&b, WS_OP_BINARY, big, sizeof big, 0), 0);
	open_client(&w);
	assert_int_equal(wsc_feed(&w, buf_data(&b), b.len, count_frame, &total, &err), 0);
	assert_int_equal(total, sizeof big);
	wsc_free(&w);
	buf_clear(&b);

	/* An answer that is itself too long is still refused, whole or in pieces. */
	buf_init(&b, 0);
	assert_int_equal(buf_append_str(&b, "HTTP/1.1 101 Switching Protocols\r\nX: "), 0);
	memset(big, 'x', sizeof big);
	assert_int_equal(buf_append(&b, big, 9000), 0);
	assert_int_equal(buf_append_str(&b, "\r\n\r\n"), 0);
	for (size_t piece = 1000; piece <= b.len; piece += b.len - 1000) {
		open_client(&w);
		int rc = 0;
		for (size_t off = 0; off < b.len && rc == 0; off += piece)
			rc = wsc_feed(&w, buf_data(&b) + off, off + piece < b.len ? piece :
			    b.len - off, count_frame, &total, &err);
		assert_int_equal(rc, -1);
		assert_string_equal(err, "answer too long");
		wsc_free(&w);
	}
	buf_clear(&b);
}

/* Client frames carry a zero masking key, so the payload goes out as it is (wsclient.h);
 * a server's carry none. */
static void
test_frame_build(void **state)
{
	struct buf b;
	static unsigned char big[70000];
	unsigned char p[300];

	(void)state;
	memset(p, 0x5a, sizeof p);
	buf_init(&b, 0);
	assert_int_equal(ws_frame_append(&b, WS_OP_BINARY, p, sizeof p, 1), 0);
	assert_int_equal(ws_frame_len(buf_data(&b)), 4 + 4 + sizeof p);
	unsigned char *d = buf_data(&b);
	assert_int_equal(d[0], 0x82);
	assert_int_equal(d[1], 0x80 | 126);
	assert_int_equal(d[2] << 8 | d[3], sizeof p);
	for (size_t i = 0; i < 4; i++)
		assert_int_equal(d[4 + i], 0);
	assert_memory_equal(d + 8, p, sizeof p);
	buf_reset(&b);
	assert_int_equal(ws_frame_append(&b, WS_OP_TEXT, big, sizeof big, 0), 0);
	d = buf_data(&b);
	assert_int_equal(d[1], 127);
	assert_int_equal(ws_frame_len(d), 10 + sizeof big);
	buf_reset(&b);
	unsigned char *at = ws_frame_put(&b, WS_OP_PONG, 5, 0);
	assert_true(at == buf_data(&b) + 2 && b.len == 7);
	buf_clear(&b);
}

/* A payload written after ws_frame_open ends up, once closed up, as the frame
 * ws_frame_append builds, behind what the buffer held, for each header length; and
 * ws_frame_open keeps out's bound. */
static void
test_frame_close_up(void **state)
{
	static unsigned char p[70000];
	const size_t sizes[] = { 0, 5, 125, 126, 300, 65535, 65536, 70000 };
	struct buf a, b;

	(void)state;
	for (size_t i = 0; i < sizeof p; i++)
		p[i] = (unsigned char)(i * 7);
	buf_init(&a, 0);
	buf_init(&b, 0);
	for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
		buf_reset(&a);
		buf_reset(&b);
		assert_int_equal(buf_append(&a, "head", 4), 0);
		assert_int_equal(ws_frame_append(&a, WS_OP_TEXT, p, sizes[k], 0), 0);
		assert_int_equal(buf_append(&b, "head", 4), 0);
		assert_int_equal(ws_frame_open(&b), 0);
		assert_int_equal(buf_append(&b, p, sizes[k]), 0);
		ws_frame_close_up(&b, 4, WS_OP_TEXT);
		assert_int_equal(b.len, a.len);
		assert_memory_equal(buf_data(&b), buf_data(&a), a.len);
	}
	buf_clear(&a);
	buf_clear(&b);
	buf_init(&b, 4 + 9);
	assert_int_equal(buf_append(&b, "head", 4), 0);
	assert_int_equal(ws_frame_open(&b), -1);
	assert_int_equal(b.len, 4);
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_whole),
		cmocka_unit_test(test_split_everywhere),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_answer_bound_is_the_answers_alone),
		cmocka_unit_test(test_frame_build),
		cmocka_unit_test(test_frame_close_up),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
