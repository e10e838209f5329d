#include "stream.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cbortext.h"
#include "jsontext.h"

/* Most read(2) calls ask for this much: a pipe holds 64 KiB, so one read empties it. */
#define READ_CHUNK (64u << 10)
/* A frame at least this big, with nothing queued before it, skips the queue. */
#define WRITE_THROUGH (64u << 10)
/* An empty buffer bigger than this (after a large frame) is given back to the system. */
#define SHRINK_ABOVE (1u << 20)

void
stream_reader_init(struct stream_reader *r, int fd, size_t max_frame)
{
	memset(r, 0, sizeof *r);
	r->fd = fd;
	r->fmt = FORMAT_UNKNOWN;
	if (max_frame == 0)
		max_frame = STREAM_MAX_FRAME_DEFAULT;
	if (max_frame > SIZE_MAX / 2)
		max_frame = SIZE_MAX / 2;
	r->max_frame = max_frame;
	/* One whole frame plus one read's worth of the next: read never starves next. */
	buf_init(&r->in, max_frame + READ_CHUNK);
}

void
stream_reader_free(struct stream_reader *r)
{
	buf_clear(&r->in);
}

ssize_t
stream_reader_fill(struct stream_reader *r)
{
	struct buf *b = &r->in;
	if (r->broken || r->eof)
		return 0;
	if (b->len == 0 && b->cap > SHRINK_ABOVE)
		buf_clear(b);
	size_t want = b->max - b->len < READ_CHUNK ? b->max - b->len : READ_CHUNK;
	if (want == 0 || buf_reserve(b, want) < 0) {
		errno = ENOBUFS;   /* stream_reader_next was not called to take frames out */
		return -1;
	}
	ssize_t n;
	do
		n = read(r->fd, b->p + b->off + b->len, b->cap - b->off - b->len);
	while (n < 0 && errno == EINTR);
	if (n > 0)
		b->len += (size_t)n;
	else if (n == 0)
		r->eof = 1;
	return n;
}

int
stream_reader_feed(struct stream_reader *r, const void *p, size_t n)
{
	if (r->broken)
		return 0;
	if (r->in.len == 0 && r->in.cap > SHRINK_ABOVE)
		buf_clear(&r->in);
	return buf_append(&r->in, p, n);
}

static int
blank(const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
			return 0;
	return 1;
}

static int
json_next(struct stream_reader *r, const unsigned char **raw, size_t *len, char *err,
    size_t errlen)
{
	struct buf *b = &r->in;
	int tail = 0;   /* the last line, completed with a '\n' at end of file */
	for (;;) {
		unsigned char *d = buf_data(b), *nl;
		size_t n = b->len;
		if (r->skipping) {
			/* The rest of an oversized line: dropped as it comes, never buffered. */
			if (!n || !(nl = memchr(d, '\n', n))) {
				buf_reset(b);
				r->skipping = !r->eof;
				return 0;
			}
			buf_consume(b, (size_t)(nl - d) + 1);
			r->skipping = 0;
			r->scanned = 0;
			continue;
		}
		nl = n > r->scanned ? memchr(d + r->scanned, '\n', n - r->scanned) : NULL;
		if (!nl) {
			r->scanned = n;
			if (n > r->max_frame) {
				buf_reset(b);
				r->scanned = 0;
				r->skipping = !r->eof;
				snprintf(err, errlen, "frame over %zu bytes (see --max-frame); skipped",
				    r->max_frame);
				return -1;
			}
			if (!r->eof || n == 0)
				return 0;
			if (blank(d, n)) {
				buf_reset(b);
				r->scanned = 0;
				return 0;
			}
			/* n <= max_frame leaves room for the '\n' within the buffer's bound. */
			if (buf_append(b, "\n", 1) < 0) {
				buf_reset(b);
				r->scanned = 0;
				snprintf(err, errlen, "truncated frame at end of input");
				return -1;
			}
			tail = 1;
			continue;
		}
		size_t ll = (size_t)(nl - d) + 1;
		r->scanned = 0;
		buf_consume(b, ll);   /* the bytes stay where they are until the next fill */
		if (ll - 1 > r->max_frame) {
			snprintf(err, errlen, "frame over %zu bytes (see --max-frame); skipped",
			    r->max_frame);
			return -1;
		}
		if (blank(d, ll - 1))
			continue;
		char why[96];
		if (jsontext_check(d, ll - 1, 0, why, sizeof why) < 0) {
			if (tail)
				snprintf(err, errlen, "truncated frame at end of input (%s)", why);
			else
				snprintf(err, errlen, "bad JSON frame, skipped: %s", why);
			return -1;
		}
		*raw = d;
		*len = ll;
		return 1;
	}
}

static int
cbor_next(struct stream_reader *r, const unsigned char **raw, size_t *len, char *err,
    size_t errlen)
{
	struct buf *b = &r->in;
	unsigned char *d = buf_data(b);
	size_t n = b->len, il, need = 0;
	if (n == 0 || (n < r->scanned && !r->eof))
		return 0;
	int rc = !cbortext_is_map(d[0]) ? -3 :
	    cbortext_item_len(d, n, r->max_frame, 0, &il, &need);
	if (rc == 1) {
		r->scanned = 0;
		buf_consume(b, il);
		*raw = d;
		*len = il;
		return 1;
	}
	if (rc == 0 && !r->eof) {
		r->scanned = need;   /* no rescan before that many bytes are in */
		return 0;
	}
	buf_reset(b);
	r->scanned = 0;
	if (rc == 0) {
		snprintf(err, errlen, "truncated frame at end of input");
		return -1;
	}
	r->broken = 1;
	if (rc == -2)
		snprintf(err, errlen, "frame over %zu bytes (see --max-frame); the CBOR "
		    "stream cannot be resynchronised", r->max_frame);
	else if (rc == -3)
		snprintf(err, errlen, "a CBOR item that is not a map (0x%02x); the CBOR stream "
		    "cannot be resynchronised", d[0]);
	else
		snprintf(err, errlen, "malformed CBOR or nested over %d deep; the CBOR stream "
		    "cannot be resynchronised", CBORTEXT_MAX_DEPTH);
	return -1;
}

int
stream_reader_next(struct stream_reader *r, const unsigned char **raw, size_t *len,
    char *err, size_t errlen)
{
	char dummy[1];
	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof dummy;
	}
	if (r->broken)
		return 0;
	if (r->fmt == FORMAT_UNKNOWN) {
		if (r->in.len == 0)
			return 0;
		unsigned char first = buf_data(&r->in)[0];
		r->fmt = frame_detect(first);
		if (r->fmt == FORMAT_UNKNOWN) {
			r->broken = 1;
			buf_reset(&r->in);
			snprintf(err, errlen, "not a frame stream (first byte 0x%02x is neither '{' "
			    "nor a CBOR map)", first);
			return -1;
		}
	}
	if (r->fmt == FORMAT_JSON)
		return json_next(r, raw, len, err, errlen);
	return cbor_next(r, raw, len, err, errlen);
}

void
stream_writer_init(struct stream_writer *w, int fd, enum frame_format fmt, size_t max_queue)
{
	w->fd = fd;
	w->fmt = fmt;
	buf_init(&w->out, max_queue ? max_queue : STREAM_MAX_QUEUE_DEFAULT);
}

void
stream_writer_free(struct stream_writer *w)
{
	buf_clear(&w->out);
}

int
stream_writer_frame(struct stream_writer *w, const struct frame *f)
{
	if (w->fmt == FORMAT_UNKNOWN)
		w->fmt = FORMAT_JSON;
	return frame_encode(f, w->fmt, &w->out);
}

/* Can raw be queued as it is? JSON: one line (its '\n' added when missing); CBOR: exactly
 * one map. Full validation is the reader's job; this only keeps the framing intact. */
static int
raw_copyable(enum frame_format fmt, const unsigned char *raw, size_t *len)
{
	size_t n = *len, il;
	if (fmt == FORMAT_CBOR)
		return n && cbortext_is_map(raw[0]) &&
		    cbortext_item_len(raw, n, n, 0, &il, NULL) == 1 && il == n;
	while (n && (raw[n - 1] == '\n' || raw[n - 1] == '\r' || raw[n - 1] == ' ' ||
	    raw[n - 1] == '\t'))
		n--;
	*len = n;
	return n && raw[0] == '{' && raw[n - 1] == '}' && !memchr(raw, '\n', n);
}

/* Appends p (and a '\n' when nl) to the queue; but a big frame with nothing queued
 * before it is written from where it lies, and only what the fd does not take is queued:
 * one copy less of each 1 MiB broadcast at every stage that passes it on. The bound is
 * checked first, so a frame is queued whole or not at all; a write error is left for
 * stream_writer_flush to report. */
static int
queue_or_write(struct stream_writer *w, const unsigned char *p, size_t n, int nl)
{
	ssize_t k = 0;

	if (w->out.max && n + (size_t)nl > w->out.max - w->out.len)
		return -1;
	if (w->out.len == 0 && n >= WRITE_THROUGH) {
		do
			k = write(w->fd, p, n);
		while (k < 0 && errno == EINTR);
		if (k < 0)
			k = 0;
	}
	if (buf_append(&w->out, p + k, n - (size_t)k) < 0)
		return -1;
	return nl ? buf_append(&w->out, "\n", 1) : 0;
}

int
stream_writer_raw(struct stream_writer *w, enum frame_format fmt, const unsigned char *raw,
    size_t len)
{
	if (fmt == FORMAT_UNKNOWN && len)
		fmt = frame_detect(raw[0]);
	if (w->fmt == FORMAT_UNKNOWN)
		w->fmt = fmt == FORMAT_UNKNOWN ? FORMAT_JSON : fmt;
	size_t n = len;
	if (fmt == w->fmt && raw_copyable(fmt, raw, &n)) {
		return queue_or_write(w, raw, n, fmt == FORMAT_JSON);
	}
	struct frame f;
	if (frame_decode(&f, fmt, raw, len, NULL, 0) < 0)
		return -1;
	int rc = frame_encode(&f, w->fmt, &w->out);
	frame_clear(&f);
	return rc;
}

int
stream_writer_flush(struct stream_writer *w)
{
	struct buf *b = &w->out;
	while (b->len) {
		ssize_t n = write(w->fd, buf_data(b), b->len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		buf_consume(b, (size_t)n);
		/* A short write means the pipe or socket is full: asking again now would only
		 * earn an EAGAIN. */
		if (b->len)
			return 0;
	}
	if (b->cap > SHRINK_ABOVE)
		buf_clear(b);
	return 1;
}

int
stream_writer_drain(struct stream_writer *w)
{
	for (;;) {
		int rc = stream_writer_flush(w);
		if (rc != 0)
			return rc;
		struct pollfd pfd = { .fd = w->fd, .events = POLLOUT };
		if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
			return -1;
	}
}

size_t
stream_writer_pending(const struct stream_writer *w)
{
	return w->out.len;
}
