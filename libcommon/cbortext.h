/* cbortext: scans CBOR in place, without allocating: item heads and lengths (stream
 * framing), walking a map's pairs and finding one field (action peeking, frame decoding).
 * The one owner of CBOR's wire rules, as jsontext is of JSON's; a frame's own rules
 * (nws(7) FRAMES: definite lengths only, distinct known keys) are checked by frame.c
 * with the strict scan below. */
#ifndef NWS_CBORTEXT_H
#define NWS_CBORTEXT_H

#include <stddef.h>
#include <stdint.h>

#define CBORTEXT_MAX_DEPTH 64

/* The head of one item: major type, additional info (31: indefinite), argument (length,
 * value or tag) and how many bytes the head takes. */
struct cbortext_head {
	int major;
	int ai;
	uint64_t arg;
	size_t len;
};

/* The head at p[0..n): 1; 0 when more bytes are needed (h->len then says how many the
 * head takes); -1 when malformed. Indefinite lengths are accepted here (ai 31). */
int cbortext_head(const void *p, size_t n, struct cbortext_head *h);

/* 1 when an item starting with this byte is a CBOR map (0xa0..0xbf). */
int cbortext_is_map(unsigned char first);

/* The length of the one CBOR item at the start of buf[0..len), nested at most
 * CBORTEXT_MAX_DEPTH deep. Returns 1 with *itemlen; 0 when more bytes are needed (then
 * *need, if not NULL, is a lower bound on the total length, so callers need not rescan
 * before that many bytes are there); -1 when malformed; -2 when the item would be longer
 * than max (0: no bound); -3, when strict, at the first indefinite length. */
int cbortext_item_len(const void *buf, size_t len, size_t max, int strict, size_t *itemlen,
    size_t *need);

/* A walk over the pairs of a definite map, checking on the way that each key is a
 * definite text string and each item is whole. */
struct cbortext_map {
	const unsigned char *p;
	size_t n, pos;
	uint64_t left;
};

/* Starts a walk over the map at p[0..n): 0, or -1 when it is not a definite map. */
int cbortext_map_start(struct cbortext_map *m, const void *p, size_t n);

/* The next pair: 1 with the key's text k[0..kn) and the whole value item v[0..vn); 0 at
 * the end; -1 when a key is not a definite text string or an item is cut or malformed. */
int cbortext_map_next(struct cbortext_map *m, const unsigned char **k, size_t *kn,
    const unsigned char **v, size_t *vn);

/* The whole value item of top-level key `key` in the definite map at p[0..n): 0 and *v,
 * *vn set, or -1 (absent, or a key before it is not definite text). Safe on any input. */
int cbortext_span(const void *p, size_t n, const char *key, const unsigned char **v,
    size_t *vn);

/* The text of a definite text string item at p[0..n): 0 and *s, *sn set, or -1. */
int cbortext_text(const void *p, size_t n, const unsigned char **s, size_t *sn);

#endif
