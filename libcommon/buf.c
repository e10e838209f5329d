#include "buf.h"

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

void
buf_init(struct buf *b, size_t max)
{
	memset(b, 0, sizeof *b);
	b->max = max;
}

void
buf_clear(struct buf *b)
{
	free(b->p);
	buf_init(b, b->max);
}

void
buf_wipe(struct buf *b)
{
	if (b->p)
		sodium_memzero(b->p, b->cap);
	buf_clear(b);
}

void
buf_compact(struct buf *b)
{
	if (b->off == 0)
		return;
	if (b->len)
		memmove(b->p, b->p + b->off, b->len);
	b->off = 0;
}

int
buf_reserve(struct buf *b, size_t n)
{
	if (b->max && (n > b->max || b->len > b->max - n))
		return -1;
	if (b->off + b->len + n <= b->cap)
		return 0;
	/* Reclaiming the consumed prefix is cheaper than growing when it is most of the buffer. */
	if (b->off >= b->len && b->len + n <= b->cap) {
		buf_compact(b);
		return 0;
	}
	buf_compact(b);
	size_t cap = b->cap ? b->cap : 256;
	while (cap < b->len + n)
		cap *= 2;
	if (b->max && cap > b->max)
		cap = b->max;
	unsigned char *p = realloc(b->p, cap);
	if (!p)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

int
buf_append(struct buf *b, const void *data, size_t n)
{
	if (n == 0)
		return 0;
	if (buf_reserve(b, n) < 0)
		return -1;
	memcpy(b->p + b->off + b->len, data, n);
	b->len += n;
	return 0;
}

int
buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

unsigned char *
buf_data(const struct buf *b)
{
	return b->p ? b->p + b->off : NULL;
}

void
buf_consume(struct buf *b, size_t n)
{
	if (n >= b->len) {
		b->off = b->len = 0;
		return;
	}
	b->off += n;
	b->len -= n;
}

void
buf_reset(struct buf *b)
{
	b->off = b->len = 0;
}
