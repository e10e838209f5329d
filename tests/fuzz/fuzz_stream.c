/* stream: the same bytes read through a pipe whole and in chunks (sizes drawn from the
 * input) give the same frames and bad-frame reports in the same order (the reasons may
 * differ: a broken CBOR item can be too long before it is seen to be malformed), and
 * every frame returned is one its format's framing accepts. Input: byte 0 picks
 * max_frame (64 B to 8 KiB, so oversized lines and items are met), byte 1 seeds the
 * chunk sizes, the rest is the stream. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "cbortext.h"
#include "frame.h"
#include "fuzz.h"
#include "jsontext.h"
#include "stream.h"

/* A pipe holds 64 KiB: the whole stream is written before it is read. */
#define STREAM_MAX (60u << 10)

/* What a read gave: 'F', the length and the bytes of each frame, 'E' for each report;
 * and the reports' reasons, for the message when two reads differ. */
struct seen {
	struct buf events, reasons;
};

/* Takes every frame now in r. */
static void
drain(struct stream_reader *r, struct seen *s)
{
	const unsigned char *raw;
	size_t len;
	char err[160];

	for (;;) {
		err[0] = '\0';
		int rc = stream_reader_next(r, &raw, &len, err, sizeof err);
		if (rc == 0)
			return;
		unsigned char tag = rc > 0 ? 'F' : 'E';
		fuzz_check(buf_append(&s->events, &tag, 1) == 0);
		if (rc > 0) {
			size_t il;
			fuzz_check(len > 0 && len <= r->max_frame + 1);
			if (r->fmt == FORMAT_CBOR)
				fuzz_check(cbortext_item_len(raw, len, 0, 0, &il, NULL) == 1 &&
				    il == len);
			else
				fuzz_check(raw[len - 1] == '\n' &&
				    jsontext_check(raw, len, 0, NULL, 0) == 0);
			fuzz_check(buf_append(&s->events, &len, sizeof len) == 0);
			fuzz_check(buf_append(&s->events, raw, len) == 0);
		} else {
			fuzz_check(err[0] != '\0');
			fuzz_check(buf_append(&s->reasons, err, strlen(err) + 1) == 0);
			if (r->broken)
				return;
		}
	}
}

/* Reads s[0..n) through a pipe in chunks (seed 0: one chunk). */
static void
read_stream(const unsigned char *s, size_t n, size_t max_frame, uint32_t seed,
    struct seen *seen)
{
	struct stream_reader r;
	int fds[2];
	size_t off = 0;

	fuzz_check(pipe2(fds, O_NONBLOCK) == 0);
	stream_reader_init(&r, fds[0], max_frame);
	while (off < n) {
		size_t k = seed ? 1 + fuzz_rand(&seed) % 251 : n;
		if (k > n - off)
			k = n - off;
		fuzz_check(write(fds[1], s + off, k) == (ssize_t)k);
		off += k;
		while (stream_reader_fill(&r) > 0)
			drain(&r, seen);
		drain(&r, seen);
	}
	close(fds[1]);
	while (stream_reader_fill(&r) > 0)
		drain(&r, seen);
	drain(&r, seen);
	fuzz_check(stream_reader_fill(&r) == 0);
	stream_reader_free(&r);
	close(fds[0]);
}

static void
seen_print(const char *what, const struct seen *s)
{
	const unsigned char *d = buf_data(&s->events), *e = d + s->events.len;
	const char *why = (const char *)buf_data(&s->reasons);

	fprintf(stderr, "%s:\n", what);
	while (d < e) {
		size_t len;
		if (*d++ == 'F') {
			memcpy(&len, d, sizeof len);
			d += sizeof len + len;
			fprintf(stderr, "  a frame of %zu bytes\n", len);
		} else {
			fprintf(stderr, "  %s\n", why);
			why += strlen(why) + 1;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct seen whole, chunked;

	if (n < 2 || n - 2 > STREAM_MAX)
		return 0;
	size_t max_frame = (size_t)64 << (p[0] & 7);
	uint32_t seed = p[1] | 0x100u;
	buf_init(&whole.events, 0);
	buf_init(&whole.reasons, 0);
	buf_init(&chunked.events, 0);
	buf_init(&chunked.reasons, 0);
	read_stream(p + 2, n - 2, max_frame, 0, &whole);
	read_stream(p + 2, n - 2, max_frame, seed, &chunked);
	if (whole.events.len != chunked.events.len || (whole.events.len &&
	    memcmp(buf_data(&whole.events), buf_data(&chunked.events), whole.events.len))) {
		seen_print("read whole", &whole);
		seen_print("read in chunks", &chunked);
		abort();
	}
	buf_clear(&whole.events);
	buf_clear(&whole.reasons);
	buf_clear(&chunked.events);
	buf_clear(&chunked.reasons);
	return 0;
}
