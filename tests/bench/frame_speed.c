/* CPU cost per frame of libcommon's frame and stream modules (tests/README.md), for a
 * 100-byte broadcast: what a pass-through stage pays (read, frame, peek, queue the bytes
 * as they are) and what a consuming stage pays (decode, encode). Built and run by
 * bench_frame.py; prints one line per figure. */
#include <stdio.h>
#include <string.h>
#include <time.h>

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
	return 0;
}
