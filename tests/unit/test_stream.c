/* stream: framed reading and writing over real non-blocking pipes: 1-byte reads and
 * writes, JSON resynchronisation, CBOR loss of sync, truncation at end of file, oversized
 * frames (17 MiB against the 16 MiB default) in bounded memory, and the writer's bound,
 * partial writes, EAGAIN and EPIPE. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "stream.h"

#define MAXEV 64

/* What a reader produced: frames (raw bytes) and errors, in order. */
struct events {
	int n;
	int is_err[MAXEV];
	char *text[MAXEV];
	size_t len[MAXEV];
};

static void
events_free(struct events *e)
{
	for (int i = 0; i < e->n; i++)
		free(e->text[i]);
	e->n = 0;
}

/* Takes every frame now in r. */
static void
drain_next(struct stream_reader *r, struct events *e)
{
	const unsigned char *raw;
	size_t len;
	char err[256];
	int rc;
	while ((rc = stream_reader_next(r, &raw, &len, err, sizeof err)) != 0) {
		assert_true(e->n < MAXEV);
		e->is_err[e->n] = rc < 0;
		if (rc < 0) {
			e->text[e->n] = strdup(err);
			e->len[e->n] = strlen(err);
		} else {
			e->text[e->n] = malloc(len + 1);
			memcpy(e->text[e->n], raw, len);
			e->text[e->n][len] = 0;
			e->len[e->n] = len;
		}
		e->n++;
	}
}

static void
nonblocking(int fd)
{
	assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
}

/* Writes input one byte at a time into a pipe; after each byte the reader reads it (a
 * 1-byte read) and takes whatever frames are complete. Then end of file. */
static void
feed_bytewise(const void *input, size_t n, size_t max_frame, struct events *e,
    struct stream_reader *out)
{
	int p[2];
	struct stream_reader r;
	const unsigned char *in = input;
	assert_int_equal(pipe(p), 0);
	nonblocking(p[0]);
	stream_reader_init(&r, p[0], max_frame);
	memset(e, 0, sizeof *e);
	errno = 0;
	assert_int_equal(stream_reader_fill(&r), -1);
	assert_int_equal(errno, EAGAIN);
	for (size_t i = 0; i < n; i++) {
		assert_int_equal(write(p[1], in + i, 1), 1);
		if (!r.broken)
			assert_int_equal(stream_reader_fill(&r), 1);
		drain_next(&r, e);
		assert_true(r.in.cap <= r.max_frame + (64u << 10));
	}
	close(p[1]);
	ssize_t got;
	while ((got = stream_reader_fill(&r)) > 0)
		drain_next(&r, e);
	assert_int_equal(got, 0);
	drain_next(&r, e);
	/* End of file is sticky and reports nothing more. */
	assert_int_equal(stream_reader_fill(&r), 0);
	drain_next(&r, e);
	close(p[0]);
	if (out)
		*out = r;
	else
		stream_reader_free(&r);
}

static void
expect_frame(struct events *e, int i, const char *raw, size_t len)
{
	assert_true(i < e->n);
	if (e->is_err[i])
		fail_msg("event %d is the error \"%s\", not a frame", i, e->text[i]);
	assert_int_equal(e->len[i], len);
	assert_memory_equal(e->text[i], raw, len);
}

static void
expect_str(struct events *e, int i, const char *raw)
{
	expect_frame(e, i, raw, strlen(raw));
}

static void
expect_error(struct events *e, int i, const char *why)
{
	assert_true(i < e->n);
	if (!e->is_err[i])
		fail_msg("event %d is a frame [%s], not an error", i, e->text[i]);
	if (!strstr(e->text[i], why))
		fail_msg("error \"%s\" does not say \"%s\"", e->text[i], why);
}

static void
test_json_bytewise_resync(void **state)
{
	static const char in[] =
	    "\n  \n{\"action\":\"open\",\"channel\":\"a\"}\n{bad\n\r\n"
	    "{\"action\":\"close\",\"data\":\"\xf0\x9f\x98\x80\"}\r\n[1]\n"
	    "{\"action\":\"x\",\"data\":\"\xff\"}\n \t{\"action\":\"lost\"}\n{\"action\":\"end\"}";
	struct events e;
	(void)state;
	feed_bytewise(in, sizeof in - 1, 0, &e, NULL);
	assert_int_equal(e.n, 7);
	expect_str(&e, 0, "{\"action\":\"open\",\"channel\":\"a\"}\n");
	expect_error(&e, 1, "bad JSON frame");
	expect_str(&e, 2, "{\"action\":\"close\",\"data\":\"\xf0\x9f\x98\x80\"}\r\n");
	expect_error(&e, 3, "not a JSON object");
	expect_error(&e, 4, "UTF-8");
	expect_str(&e, 5, " \t{\"action\":\"lost\"}\n");
	/* The last line had no '\n' but was whole: given as a frame, '\n' added. */
	expect_str(&e, 6, "{\"action\":\"end\"}\n");
	events_free(&e);
}

static void
test_json_truncated_at_eof(void **state)
{
	static const char in[] = "{\"action\":\"open\"}\n{\"action\":\"op";
	struct events e;
	(void)state;
	feed_bytewise(in, sizeof in - 1, 0, &e, NULL);
	assert_int_equal(e.n, 2);
	expect_str(&e, 0, "{\"action\":\"open\"}\n");
	expect_error(&e, 1, "truncated frame");
	events_free(&e);
	/* Whitespace left at the end is not a frame. */
	feed_bytewise("{\"action\":\"open\"}\n \r", 20, 0, &e, NULL);
	assert_int_equal(e.n, 1);
	events_free(&e);
}

static void
test_json_oversized_line(void **state)
{
	char in[400];
	struct events e;
	struct stream_reader r;
	(void)state;
	/* 64 bytes exactly is allowed; 65 and 200 are not, each reported once. */
	size_t n = 0;
	n += (size_t)sprintf(in + n, "{\"action\":\"open\",\"data\":\"%0*d\"}\n", 64 - 27, 0);
	n += (size_t)sprintf(in + n, "{\"action\":\"open\",\"data\":\"%0*d\"}\n", 65 - 27, 0);
	n += (size_t)sprintf(in + n, "{\"action\":\"open\",\"data\":\"%0*d\"}\n", 200 - 27, 0);
	n += (size_t)sprintf(in + n, "{\"action\":\"close\"}\n");
	feed_bytewise(in, n, 64, &e, &r);
	assert_int_equal(e.n, 4);
	assert_int_equal(e.len[0], 65);
	expect_error(&e, 1, "frame over 64 bytes");
	expect_error(&e, 2, "frame over 64 bytes");
	expect_str(&e, 3, "{\"action\":\"close\"}\n");
	assert_int_equal(r.skipping, 0);
	stream_reader_free(&r);
	events_free(&e);
	/* An oversized line cut by end of file: one error, no truncation report after it. */
	feed_bytewise(in + 65 + 66, 100, 64, &e, NULL);
	assert_int_equal(e.n, 1);
	expect_error(&e, 0, "frame over 64 bytes");
	events_free(&e);
}

struct writer_arg {
	int fd;
	const unsigned char *p;
	size_t n;
	ssize_t rc;
};

/* Writes everything on a blocking fd (the far end of a pipe), then closes it. */
static void *
writer_thread(void *v)
{
	struct writer_arg *a = v;
	size_t off = 0;
	a->rc = 0;
	while (off < a->n) {
		ssize_t w = write(a->fd, a->p + off, a->n - off);
		if (w < 0) {
			a->rc = -errno;
			break;
		}
		off += (size_t)w;
	}
	close(a->fd);
	return NULL;
}

/* Reads fd with poll until end of file or a broken reader, collecting events, checking
 * the input buffer never passes its bound. */
static void
read_all(struct stream_reader *r, struct events *e)
{
	for (;;) {
		struct pollfd pfd = { .fd = r->fd, .events = POLLIN };
		assert_true(poll(&pfd, 1, 10000) == 1);
		ssize_t n = stream_reader_fill(r);
		assert_true(n >= 0 || errno == EAGAIN);
		drain_next(r, e);
		assert_true(r->in.cap <= r->max_frame + (64u << 10));
		if (n == 0 || r->broken)
			return;
	}
}

static void
big_through_pipe(const unsigned char *in, size_t n, struct events *e, struct stream_reader *r)
{
	int p[2];
	pthread_t t;
	struct writer_arg a;
	assert_int_equal(pipe(p), 0);
	nonblocking(p[0]);
	a = (struct writer_arg){ .fd = p[1], .p = in, .n = n };
	assert_int_equal(pthread_create(&t, NULL, writer_thread, &a), 0);
	stream_reader_init(r, p[0], 0);
	memset(e, 0, sizeof *e);
	read_all(r, e);
	close(p[0]);   /* a writer still blocked (after a broken CBOR read) gets EPIPE */
	pthread_join(t, NULL);
}

static void
test_json_17mib_frame(void **state)
{
	size_t big = 17u << 20, n = 0;
	unsigned char *in = malloc(big + 200);
	assert_non_null(in);
	struct events e;
	struct stream_reader r;
	(void)state;
	n += (size_t)sprintf((char *)in, "{\"action\":\"broadcast\",\"data\":\"");
	memset(in + n, 'x', big);
	n += big;
	n += (size_t)sprintf((char *)in + n, "\"}\n{\"action\":\"open\"}\n");
	big_through_pipe(in, n, &e, &r);
	assert_int_equal(e.n, 2);
	expect_error(&e, 0, "frame over 16777216 bytes");
	expect_str(&e, 1, "{\"action\":\"open\"}\n");
	stream_reader_free(&r);
	events_free(&e);

	/* 1 MiB of '[' on one line (as data, and alone): refused, the next line still read. */
	n = (size_t)sprintf((char *)in, "{\"action\":\"close\"}\n{\"data\":");
	memset(in + n, '[', 1u << 20);
	n += 1u << 20;
	n += (size_t)sprintf((char *)in + n, "\n");
	memset(in + n, '[', 1u << 20);
	n += 1u << 20;
	n += (size_t)sprintf((char *)in + n, "\n{\"action\":\"open\"}\n");
	big_through_pipe(in, n, &e, &r);
	assert_int_equal(e.n, 4);
	expect_str(&e, 0, "{\"action\":\"close\"}\n");
	expect_error(&e, 1, "nested too deep");
	expect_error(&e, 2, "not a JSON object");
	expect_str(&e, 3, "{\"action\":\"open\"}\n");
	stream_reader_free(&r);
	events_free(&e);
	free(in);
}

/* A few frames of every data kind, as CBOR, back to back. */
static void
cbor_frames(struct buf *b, size_t *ends, size_t *nframes)
{
	static const char *js[] = {
		"{\"action\":\"open\",\"channel\":\"chat\"}",
		"{\"action\":\"broadcast\",\"channel\":\"\",\"data\":{\"a\":[1,null,\"\xc3\xa9\"]}}",
		"{\"action\":\"message\",\"data\":\"AAEC\",\"encoding\":\"base64\",\"port\":0}",
		"{\"action\":\"found\",\"data\":\"\xf0\x9f\x98\x80\",\"port\":65535}",
	};
	/* Indefinite map, chunked text: framed by the scanner like any other map. */
	static const unsigned char indef[] = { 0xbf, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x7f,
		0x62, 'o', 'p', 0x62, 'e', 'n', 0xff, 0xff };
	buf_init(b, 0);
	*nframes = 0;
	for (size_t i = 0; i < sizeof js / sizeof js[0]; i++) {
		struct frame f;
		char err[128];
		assert_int_equal(frame_decode(&f, FORMAT_JSON, js[i], strlen(js[i]), err,
		    sizeof err), 0);
		assert_int_equal(frame_encode(&f, FORMAT_CBOR, b), 0);
		frame_clear(&f);
		ends[(*nframes)++] = b->len;
	}
	assert_int_equal(buf_append(b, indef, sizeof indef), 0);
	ends[(*nframes)++] = b->len;
}

static void
test_cbor_bytewise_then_broken(void **state)
{
	struct buf b;
	size_t ends[8], nf;
	struct events e;
	struct stream_reader r;
	(void)state;
	cbor_frames(&b, ends, &nf);
	size_t good = b.len;
	/* An item that is not a map, then more good frames that must not be read. */
	buf_append(&b, "\x01", 1);
	buf_append(&b, buf_data(&b), ends[0]);
	feed_bytewise(buf_data(&b), b.len, 0, &e, &r);
	assert_int_equal(e.n, (int)nf + 1);
	for (size_t i = 0; i < nf; i++) {
		size_t start = i ? ends[i - 1] : 0;
		expect_frame(&e, (int)i, (char *)buf_data(&b) + start, ends[i] - start);
	}
	expect_error(&e, (int)nf, "not a map");
	assert_int_equal(r.broken, 1);
	assert_int_equal(r.fmt, FORMAT_CBOR);
	stream_reader_free(&r);
	events_free(&e);

	/* A reserved head inside a map: malformed, broken. */
	b.len = good;
	buf_append(&b, "\xa1\x66" "action" "\x1c", 9);
	buf_append(&b, buf_data(&b), ends[0]);
	feed_bytewise(buf_data(&b), b.len, 0, &e, &r);
	assert_int_equal(e.n, (int)nf + 1);
	expect_error(&e, (int)nf, "malformed");
	assert_int_equal(r.broken, 1);
	stream_reader_free(&r);
	events_free(&e);

	/* Truncated at end of file: one error, no broken flag needed. */
	b.len = good + 5;
	memcpy(buf_data(&b) + good, buf_data(&b), 5);
	feed_bytewise(buf_data(&b), b.len, 0, &e, &r);
	assert_int_equal(e.n, (int)nf + 1);
	expect_error(&e, (int)nf, "truncated frame");
	stream_reader_free(&r);
	events_free(&e);

	/* Over max_frame (here 40): refused as soon as the lengths say so. */
	b.len = good;
	feed_bytewise(buf_data(&b), b.len, 40, &e, &r);
	expect_frame(&e, 0, (char *)buf_data(&b), ends[0]);
	expect_error(&e, 1, "frame over 40 bytes");
	assert_int_equal(e.n, 2);
	assert_int_equal(r.broken, 1);
	stream_reader_free(&r);
	events_free(&e);
	buf_clear(&b);
}

static void
test_cbor_17mib_frame(void **state)
{
	size_t big = 17u << 20;
	struct frame f;
	struct buf b;
	struct events e;
	struct stream_reader r;
	(void)state;
	frame_init(&f);
	f.action = ACTION_BROADCAST;
	unsigned char *data = calloc(1, big);
	frame_set_data(&f, DATA_BYTES, data, big);
	free(data);
	buf_init(&b, 0);
	assert_int_equal(frame_encode(&f, FORMAT_CBOR, &b), 0);
	frame_clear(&f);
	big_through_pipe(buf_data(&b), b.len, &e, &r);
	assert_int_equal(e.n, 1);
	expect_error(&e, 0, "frame over 16777216 bytes");
	assert_int_equal(r.broken, 1);
	stream_reader_free(&r);
	events_free(&e);
	buf_clear(&b);
}

static void
test_format_detection(void **state)
{
	struct events e;
	struct stream_reader r;
	(void)state;
	feed_bytewise("hello\n{\"action\":\"open\"}\n", 25, 0, &e, &r);
	assert_int_equal(e.n, 1);
	expect_error(&e, 0, "not a frame stream");
	assert_int_equal(r.broken, 1);
	stream_reader_free(&r);
	events_free(&e);
	feed_bytewise("\x81\xa0", 2, 0, &e, &r);
	assert_int_equal(e.n, 1);
	expect_error(&e, 0, "not a frame stream");
	stream_reader_free(&r);
	events_free(&e);
	feed_bytewise("\n\r\n{\"action\":\"open\"}\n", 21, 0, &e, &r);
	assert_int_equal(e.n, 1);
	assert_int_equal(r.fmt, FORMAT_JSON);
	stream_reader_free(&r);
	events_free(&e);
	feed_bytewise("", 0, 0, &e, &r);
	assert_int_equal(e.n, 0);
	assert_int_equal(r.fmt, FORMAT_UNKNOWN);
	stream_reader_free(&r);
}

static void
test_reader_feed(void **state)
{
	struct stream_reader r;
	struct events e;
	(void)state;
	memset(&e, 0, sizeof e);
	stream_reader_init(&r, -1, 64);
	const char *in = "{\"action\":\"open\"}\n{\"action\":\"close\"}\n{\"act";
	for (const char *c = in; *c; c++) {
		assert_int_equal(stream_reader_feed(&r, c, 1), 0);
		drain_next(&r, &e);
	}
	assert_int_equal(e.n, 2);
	expect_str(&e, 1, "{\"action\":\"close\"}\n");
	char big[70000];
	memset(big, ' ', sizeof big);
	assert_int_equal(stream_reader_feed(&r, big, sizeof big), -1);   /* past the bound */
	assert_int_equal(stream_reader_feed(&r, "ion\":\"lost\"}\n", 13), 0);
	drain_next(&r, &e);
	assert_int_equal(e.n, 3);
	expect_str(&e, 2, "{\"action\":\"lost\"}\n");
	stream_reader_free(&r);
	events_free(&e);
}

static void
queue_frames(struct stream_writer *w, int count)
{
	for (int i = 0; i < count; i++) {
		struct frame f;
		char data[32];
		frame_init(&f);
		f.action = ACTION_BROADCAST;
		frame_set(&f.channel, "chat");
		snprintf(data, sizeof data, "%d", i);
		frame_set_data(&f, DATA_TEXT, data, strlen(data));
		assert_int_equal(stream_writer_frame(w, &f), 0);
		frame_clear(&f);
	}
}

/* The writer against a 4 KiB pipe nobody reads: partial write, then EAGAIN; then a
 * reader taking 1 byte per read(2) until every frame arrived whole and in order. */
static void
test_writer_partial_eagain(void **state)
{
	int p[2];
	struct stream_writer w;
	struct stream_reader r;
	(void)state;
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++) {
		assert_int_equal(pipe(p), 0);
		nonblocking(p[0]);
		nonblocking(p[1]);
		assert_true(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 4096);
		int cap = fcntl(p[1], F_GETPIPE_SZ);
		stream_writer_init(&w, p[1], (enum frame_format)fmt, 0);
		queue_frames(&w, 400);
		size_t total = stream_writer_pending(&w);
		assert_true(total > (size_t)cap);
		assert_int_equal(stream_writer_flush(&w), 0);
		assert_int_equal(stream_writer_pending(&w), total - (size_t)cap);
		assert_int_equal(stream_writer_flush(&w), 0);   /* EAGAIN: nothing moved */
		assert_int_equal(stream_writer_pending(&w), total - (size_t)cap);

		stream_reader_init(&r, -1, 0);
		size_t got = 0;
		unsigned char c;
		int done = 0, seen = 0;
		while (got < total) {
			ssize_t n = read(p[0], &c, 1);
			if (n < 0) {
				assert_int_equal(errno, EAGAIN);
				assert_int_equal(done, 0);
				done = stream_writer_flush(&w);
				assert_true(done >= 0);
				continue;
			}
			assert_int_equal(n, 1);
			got++;
			assert_int_equal(stream_reader_feed(&r, &c, 1), 0);
			const unsigned char *raw;
			size_t len;
			char err[128], want[32];
			int rc;
			while ((rc = stream_reader_next(&r, &raw, &len, err, sizeof err)) != 0) {
				struct frame f;
				assert_int_equal(rc, 1);
				assert_int_equal(frame_decode(&f, (enum frame_format)fmt, raw, len, err,
				    sizeof err), 0);
				snprintf(want, sizeof want, "%d", seen++);
				assert_string_equal((char *)f.data, want);
				frame_clear(&f);
			}
		}
		assert_int_equal(seen, 400);
		assert_int_equal(done, 1);
		assert_int_equal(stream_writer_flush(&w), 1);
		assert_int_equal(stream_writer_pending(&w), 0);
		assert_int_equal(read(p[0], &c, 1), -1);
		stream_writer_free(&w);
		stream_reader_free(&r);
		close(p[0]);
		close(p[1]);
	}
}

static void
test_writer_bound_and_epipe(void **state)
{
	int p[2];
	struct stream_writer w;
	struct frame f;
	(void)state;
	assert_int_equal(pipe(p), 0);
	nonblocking(p[1]);
	stream_writer_init(&w, p[1], FORMAT_JSON, 100);
	frame_init(&f);
	f.action = ACTION_OPEN;
	frame_set(&f.channel, "0123456789012345678901234567890123456789");
	assert_int_equal(stream_writer_frame(&w, &f), 0);
	size_t one = stream_writer_pending(&w);
	assert_int_equal(stream_writer_frame(&w, &f), -1);   /* 2 x 71 > 100 */
	assert_int_equal(stream_writer_pending(&w), one);
	assert_int_equal(stream_writer_raw(&w, FORMAT_JSON, buf_data(&w.out), one), -1);
	assert_int_equal(stream_writer_pending(&w), one);
	frame_clear(&f);

	assert_int_equal(stream_writer_flush(&w), 1);
	assert_int_equal(stream_writer_flush(&w), 1);   /* nothing queued: still done */
	close(p[0]);
	assert_int_equal(stream_writer_raw(&w, FORMAT_JSON, (const unsigned char *)
	    "{\"action\":\"close\"}", 18), 0);
	errno = 0;
	assert_int_equal(stream_writer_flush(&w), -1);
	assert_int_equal(errno, EPIPE);
	assert_int_equal(stream_writer_drain(&w), -1);
	stream_writer_free(&w);
	close(p[1]);
}

static void
raw_case(enum frame_format wfmt, enum frame_format rfmt, const void *raw, size_t len,
    int rc, const void *want, size_t wantlen)
{
	struct stream_writer w;
	stream_writer_init(&w, -1, wfmt, 0);
	assert_int_equal(stream_writer_raw(&w, rfmt, raw, len), rc);
	assert_int_equal(stream_writer_pending(&w), wantlen);
	if (wantlen)
		assert_memory_equal(buf_data(&w.out), want, wantlen);
	stream_writer_free(&w);
}

static void
test_writer_raw(void **state)
{
	static const char j[] = "{\"action\":\"open\",\"channel\":\"c\"}\n";
	static const unsigned char c[] = { 0xa2, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x64, 'o',
		'p', 'e', 'n', 0x67, 'c', 'h', 'a', 'n', 'n', 'e', 'l', 0x61, 'c' };
	static const char pretty[] = "{\n  \"channel\": \"c\",\n  \"action\": \"open\"\n}";
	static const char odd[] = "{\"channel\":\"c\", \"action\":\"open\"}\n";
	(void)state;
	raw_case(FORMAT_JSON, FORMAT_JSON, j, sizeof j - 1, 0, j, sizeof j - 1);
	raw_case(FORMAT_JSON, FORMAT_JSON, j, sizeof j - 2, 0, j, sizeof j - 1);   /* '\n' added */
	raw_case(FORMAT_JSON, FORMAT_JSON, "{\"action\":\"x\"}\r\n", 16, 0, "{\"action\":\"x\"}\n",
	    15);
	raw_case(FORMAT_JSON, FORMAT_JSON, pretty, sizeof pretty - 1, 0, j, sizeof j - 1);
	/* Copied as is, key order and spaces too: pass-through does not re-encode. */
	raw_case(FORMAT_JSON, FORMAT_JSON, odd, sizeof odd - 1, 0, odd, sizeof odd - 1);
	raw_case(FORMAT_JSON, FORMAT_CBOR, c, sizeof c, 0, j, sizeof j - 1);
	raw_case(FORMAT_CBOR, FORMAT_JSON, j, sizeof j - 1, 0, c, sizeof c);
	raw_case(FORMAT_CBOR, FORMAT_CBOR, c, sizeof c, 0, c, sizeof c);
	raw_case(FORMAT_UNKNOWN, FORMAT_CBOR, c, sizeof c, 0, c, sizeof c);
	raw_case(FORMAT_CBOR, FORMAT_UNKNOWN, j, sizeof j - 1, 0, c, sizeof c);
	/* Bad input queues nothing. */
	raw_case(FORMAT_JSON, FORMAT_JSON, "{\"action\":\n\"x\"", 15, -1, NULL, 0);
	raw_case(FORMAT_JSON, FORMAT_JSON, "", 0, -1, NULL, 0);
	raw_case(FORMAT_CBOR, FORMAT_CBOR, c, sizeof c - 1, -1, NULL, 0);
	raw_case(FORMAT_CBOR, FORMAT_CBOR, "\x01", 1, -1, NULL, 0);
	raw_case(FORMAT_JSON, FORMAT_CBOR, c, sizeof c - 1, -1, NULL, 0);
	raw_case(FORMAT_CBOR, FORMAT_JSON, "{\"channel\":\"c\"}", 15, -1, NULL, 0);
}

/* Everything the pipe's read end holds. */
static size_t
drain_pipe(int fd, struct buf *into)
{
	unsigned char b[65536];
	ssize_t n;
	size_t got = 0;
	while ((n = read(fd, b, sizeof b)) > 0) {
		assert_int_equal(buf_append(into, b, (size_t)n), 0);
		got += (size_t)n;
	}
	return got;
}

/* A big frame with nothing queued goes straight to the fd, only what it does not take
 * is queued; behind a queued frame it queues whole; either way the bytes arrive in
 * order, and JSON gets its '\n'. */
static void
test_writer_raw_big_skips_the_queue(void **state)
{
	static const char small[] = "{\"action\":\"open\",\"channel\":\"c\"}";
	struct frame f;
	struct buf enc, got;
	struct stream_writer w;
	int p[2];
	char *data = malloc(200000);
	(void)state;
	assert_non_null(data);
	memset(data, 'x', 200000);
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++) {
		frame_init(&f);
		f.action = ACTION_BROADCAST;
		frame_set(&f.channel, "chat");
		frame_set_data(&f, DATA_TEXT, data, 200000);
		buf_init(&enc, 0);
		assert_int_equal(frame_encode(&f, (enum frame_format)fmt, &enc), 0);
		frame_clear(&f);
		size_t len = enc.len - (fmt == FORMAT_JSON);   /* without the '\n' */
		buf_init(&got, 0);

		assert_int_equal(pipe(p), 0);
		nonblocking(p[0]);
		nonblocking(p[1]);
		assert_true(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= 1 << 20);
		stream_writer_init(&w, p[1], (enum frame_format)fmt, 0);
		assert_int_equal(stream_writer_raw(&w, (enum frame_format)fmt, buf_data(&enc), len), 0);
		assert_int_equal(stream_writer_pending(&w), fmt == FORMAT_JSON);
		assert_int_equal(drain_pipe(p[0], &got), len);

		/* A small pipe takes part; the rest is queued and flushed after it. */
		assert_true(fcntl(p[1], F_SETPIPE_SZ, 65536) >= 65536);
		assert_int_equal(stream_writer_flush(&w), 1);
		drain_pipe(p[0], &got);
		assert_int_equal(stream_writer_raw(&w, (enum frame_format)fmt, buf_data(&enc), len), 0);
		size_t first = drain_pipe(p[0], &got);
		assert_true(first > 0 && first < len);
		assert_int_equal(stream_writer_pending(&w), enc.len - first);
		while (stream_writer_flush(&w) == 0)
			drain_pipe(p[0], &got);
		drain_pipe(p[0], &got);

		/* Behind a queued frame, the big one queues whole. */
		assert_int_equal(stream_writer_raw(&w, FORMAT_JSON, (const unsigned char *)small,
		    sizeof small - 1), 0);
		size_t q = stream_writer_pending(&w);
		assert_int_equal(stream_writer_raw(&w, (enum frame_format)fmt, buf_data(&enc), len), 0);
		assert_int_equal(stream_writer_pending(&w), q + enc.len);
		while (stream_writer_flush(&w) == 0)
			drain_pipe(p[0], &got);
		drain_pipe(p[0], &got);

		/* Two whole frames, the small one, the big one again. */
		assert_int_equal(got.len, 3 * enc.len + q);
		assert_memory_equal(buf_data(&got), buf_data(&enc), enc.len);
		assert_memory_equal(buf_data(&got) + enc.len, buf_data(&enc), enc.len);
		assert_memory_equal(buf_data(&got) + 2 * enc.len + q, buf_data(&enc), enc.len);
		stream_writer_free(&w);
		buf_clear(&got);
		buf_clear(&enc);
		close(p[0]);
		close(p[1]);
	}
	free(data);
}

struct slow_arg {
	int fd;
	size_t got;
	unsigned long sum;
};

/* A consumer reading a blocking pipe in small pieces until end of file. */
static void *
slow_reader(void *v)
{
	struct slow_arg *a = v;
	unsigned char b[333];
	ssize_t n;
	while ((n = read(a->fd, b, sizeof b)) > 0)
		for (ssize_t i = 0; i < n; i++, a->got++)
			a->sum = a->sum * 31 + b[i];
	return NULL;
}

static void
test_writer_drain(void **state)
{
	int p[2];
	struct stream_writer w;
	pthread_t t;
	struct slow_arg a = { 0 };
	(void)state;
	assert_int_equal(pipe(p), 0);
	nonblocking(p[1]);
	a.fd = p[0];
	stream_writer_init(&w, p[1], FORMAT_JSON, 0);
	queue_frames(&w, 20000);
	size_t total = stream_writer_pending(&w);
	unsigned long sum = 0;
	for (size_t i = 0; i < total; i++)
		sum = sum * 31 + buf_data(&w.out)[i];
	assert_int_equal(pthread_create(&t, NULL, slow_reader, &a), 0);
	assert_int_equal(stream_writer_drain(&w), 1);
	assert_int_equal(stream_writer_pending(&w), 0);
	close(p[1]);
	pthread_join(t, NULL);
	close(p[0]);
	assert_int_equal(a.got, total);
	assert_true(a.sum == sum);
	stream_writer_free(&w);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json_bytewise_resync),
		cmocka_unit_test(test_json_truncated_at_eof),
		cmocka_unit_test(test_json_oversized_line),
		cmocka_unit_test(test_json_17mib_frame),
		cmocka_unit_test(test_cbor_bytewise_then_broken),
		cmocka_unit_test(test_cbor_17mib_frame),
		cmocka_unit_test(test_format_detection),
		cmocka_unit_test(test_reader_feed),
		cmocka_unit_test(test_writer_partial_eagain),
		cmocka_unit_test(test_writer_bound_and_epipe),
		cmocka_unit_test(test_writer_raw),
		cmocka_unit_test(test_writer_raw_big_skips_the_queue),
		cmocka_unit_test(test_writer_drain),
	};
	/* Writes to a pipe whose reader is gone must fail with EPIPE, not kill the test. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
