/* jsontext: checks and walks JSON text in place, without allocating, for the paths that
 * must not pay for a full parse (stream framing, action peeking, keeping the exact text of
 * a "data" value, the common frames of nws-proxy's clients). Decoding proper is jansson's
 * job, in frame.c. */
#ifndef NWS_JSONTEXT_H
#define NWS_JSONTEXT_H

#include <stddef.h>

#define JSONTEXT_MAX_DEPTH 512

/* 1 when s[0..n) is UTF-8 (no overlongs, surrogates or code points past U+10FFFF). */
int jsontext_utf8(const unsigned char *s, size_t n);
/* How many bytes from s on may go into a JSON string as they are: up to the first byte
 * below 0x20, '"' or '\\' (n when none). For writing strings; eight bytes at a time. */
size_t jsontext_plain_run(const unsigned char *s, size_t n);
/* The one character at s[0..n) by the same rules: its length in bytes and its code point
 * in *cp, or 0 when s holds no well-formed character there. */
size_t jsontext_utf8_char(const unsigned char *s, size_t n, unsigned long *cp);

/* 0 when p[0..n) is one JSON value (an object unless any) with optional whitespace around
 * it, in UTF-8, nested at most JSONTEXT_MAX_DEPTH deep, with no NUL in any string; else
 * -1 and a short reason in why. */
int jsontext_check(const void *p, size_t n, int any, char *why, size_t whylen);

/* Copies valid JSON text dropping the whitespace outside strings; returns its length. */
size_t jsontext_compact(unsigned char *dst, const void *src, size_t n);

/* The raw text of the value of top-level key `key` (written without escapes, so key has
 * no backslash) of the object in p[0..n): 0 and *v, *vn set, or -1. Safe on any input. */
int jsontext_span(const void *p, size_t n, const char *key, const unsigned char **v,
    size_t *vn);

/* A top-level member of an object, as spans of p (strings without their quotes). */
struct jsontext_member {
	const unsigned char *key, *val;
	size_t klen, vlen;
};

/* When p[0..n) is an object of at most max members whose keys and values are all plain
 * strings (no escapes, UTF-8, no control characters), with optional whitespace: their
 * number, m[] filled in order (duplicates included). Else -1: any other JSON, or not
 * JSON. For the common frames of clients, which a full parse costs most on. */
int jsontext_plain_members(const void *p, size_t n, struct jsontext_member *m, size_t max);

#endif
