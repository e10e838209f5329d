/* CPU cost per frame of libcommon's frame and stream modules (tests/README.md), for a
 * 100-byte broadcast: what a pass-through stage pays (read, frame, peek, queue the bytes
 * as they are) and what a consuming stage pays (decode, encode); and the text scans every
 * text broadcast goes through, over 1 MiB of three kinds of text. Built and run by
 * bench_frame.py; prints one line per figure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsontext.h"
#include "stream.h"

#define N 2000000

static double
now(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void
bench(enum frame_format fmt, const unsigned char *one, size_t ol)
{
	const char *name = fmt == FORMAT_JSON ? "json" : "cbor";
	static unsigned char chunk[65536];
	size_t per = sizeof chunk / ol, got = 0, len;
	const unsigned char *raw;
	char err[128];
	struct stream_reader r;
	struct stream_writer w;
	volatile int sink = 0;

	for (size_t i = 0; i < per; i++)
		memcpy(chunk + i * ol, one, ol);
	stream_reader_init(&r, -1, 0);
	stream_writer_init(&w, -1, fmt, 0);
	double t0 = now();
	while (got < N) {
		stream_reader_feed(&r, chunk, per * ol);
		while (stream_reader_next(&r, &raw, &len, err, sizeof err) == 1) {
			sink += frame_peek_action(fmt, raw, len);
			stream_writer_raw(&w, fmt, raw, len);
			got++;
		}
		buf_reset(&w.out);
	}
	double t1 = now();
	printf("%s pass-through (frame + peek + queue as is): %.0f ns/frame, %.0f MB/s\n", name,
	    (t1 - t0) / got * 1e9, got * ol / (t1 - t0) / 1e6);

	t0 = now();
	for (int i = 0; i < N / 10; i++) {
		struct frame f;
		frame_decode(&f, fmt, one, ol, err, sizeof err);
		buf_reset(&w.out);
		stream_writer_frame(&w, &f);
		frame_clear(&f);
	}
	t1 = now();
	printf("%s decode + encode: %.0f ns/frame\n", name, (t1 - t0) / (N / 10) * 1e9);

	enum frame_format other = fmt == FORMAT_JSON ? FORMAT_CBOR : FORMAT_JSON;
	struct stream_writer x;
	stream_writer_init(&x, -1, other, 0);
	t0 = now();
	for (int i = 0; i < N / 10; i++) {
		buf_reset(&x.out);
		stream_writer_raw(&x, fmt, one, ol);
	}
	t1 = now();
	printf("%s -> %s conversion: %.0f ns/frame\n", name, other == FORMAT_JSON ? "json" :
	    "cbor", (t1 - t0) / (N / 10) * 1e9);
	stream_writer_free(&x);
	stream_writer_free(&w);
	stream_reader_free(&r);
	(void)sink;
}

/* The best of 20 calls of each scan over s (n bytes, a JSON string's content). */
static void
scans(const char *name, const unsigned char *s, size_t n)
{
	static const char pre[] = "{\"action\":\"broadcast\",\"data\":\"";
	unsigned char *doc = malloc(sizeof pre + n + 1);
	struct jsontext_member m[3];
	double best[3] = { 1e9, 1e9, 1e9 };
	volatile size_t sink = 0;

	if (!doc)
		return;
	memcpy(doc, pre, sizeof pre - 1);
	memcpy(doc + sizeof pre - 1, s, n);
	memcpy(doc + sizeof pre - 1 + n, "\"}", 2);
	for (int k = 0; k < 20; k++) {
		double t[4];
		t[0] = now();
		sink += (size_t)jsontext_utf8(s, n);
		t[1] = now();
		for (size_t i = 0; i < n; i++)   /* as the JSON writer does, escape by escape */
			i += jsontext_plain_run(s + i, n - i);
		t[2] = now();
		sink += (size_t)jsontext_plain_members(doc, sizeof pre + n + 1, m, 3);
		t[3] = now();
		for (int j = 0; j < 3; j++)
			if (t[j + 1] - t[j] < best[j])
				best[j] = t[j + 1] - t[j];
	}
	printf("1 MiB of %s: utf8 check %.0f us, escape scan %.0f us, client frame read %.0f us\n",
	    name, best[0] * 1e6, best[1] * 1e6, best[2] * 1e6);
	free(doc);
	(void)sink;
}

/* ASCII; CJK (3-byte UTF-8); JSON carried as text (an escape every few bytes). */
static void
text_scans(void)
{
	size_t n = 1 << 20;
	unsigned char *s = malloc(n);

	if (!s)
		return;
	for (size_t i = 0; i < n; i++)
		s[i] = (unsigned char)('a' + i % 26);
	scans("ASCII", s, n);
	for (size_t i = 0; i + 3 <= n; i += 3)
		memcpy(s + i, "\xe4\xb8\x80", 3);
	scans("CJK", s, n / 3 * 3);
	for (size_t i = 0; i + 8 <= n; i += 8)
		memcpy(s + i, "\\\"a\\\":1,", 8);
	scans("JSON as text", s, n);
	free(s);
}

int
main(void)
{
	const char *j = "{\"action\":\"broadcast\",\"channel\":\"chat\",\"source\":"
	    "\"0123456789abcdef\",\"data\":\"a 100-byte broadcast, as in the e2e bench.\"}\n";
	struct frame f;
	struct buf c;
	char err[128];
	if (frame_decode(&f, FORMAT_JSON, j, strlen(j), err, sizeof err) < 0)
		return 1;
	buf_init(&c, 0);
	frame_encode(&f, FORMAT_CBOR, &c);
	frame_clear(&f);
	bench(FORMAT_JSON, (const unsigned char *)j, strlen(j));
	bench(FORMAT_CBOR, buf_data(&c), c.len);
	buf_clear(&c);
	text_scans();
	return 0;
}
