/* buf: a growable byte buffer with a hard upper bound, the one buffer type every module
 * uses for frames, queues and encodings. */
#ifndef NWS_BUF_H
#define NWS_BUF_H

#include <stddef.h>

struct buf {
	unsigned char *p;
	size_t len;   /* bytes in use, starting at p + off */
	size_t off;   /* consumed prefix, reclaimed lazily by buf_compact */
	size_t cap;
	size_t max;   /* 0: unbounded (only for buffers whose size the caller bounds) */
};

void buf_init(struct buf *b, size_t max);
/* Frees the memory; b is then empty, as after buf_init with the same max. */
void buf_clear(struct buf *b);
/* Wipes the contents before freeing: for buffers that held secrets or plaintext. */
void buf_wipe(struct buf *b);
/* Makes room for n more bytes; -1 when that would pass b->max or memory is out. */
int buf_reserve(struct buf *b, size_t n);
int buf_append(struct buf *b, const void *data, size_t n);
int buf_append_str(struct buf *b, const char *s);
/* Start of the unconsumed bytes. */
unsigned char *buf_data(const struct buf *b);
/* Drops n bytes from the front without moving memory. */
void buf_consume(struct buf *b, size_t n);
/* Moves the unconsumed bytes to the front so the free space is contiguous. */
void buf_compact(struct buf *b);
void buf_reset(struct buf *b);

#endif
