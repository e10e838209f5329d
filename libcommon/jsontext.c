#include "jsontext.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

static int
is_ws(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static const unsigned char *
skip_ws(const unsigned char *p, const unsigned char *e)
{
	while (p < e && is_ws(*p))
		p++;
	return p;
}

/* Length of the one well-formed UTF-8 sequence starting at s (a non-ASCII lead), or 0;
 * its code point in *cpp. */
static size_t
utf8_decode(const unsigned char *s, size_t n, unsigned long *cpp)
{
	unsigned c = s[0];
	size_t k;
	unsigned long cp;
	if (c >= 0xc2 && c <= 0xdf) {
		k = 1;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		k = 2;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		k = 3;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < k + 1)
		return 0;
	for (size_t j = 1; j <= k; j++) {
		if ((s[j] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[j] & 0x3f);
	}
	if (k == 2 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff)))
		return 0;
	if (k == 3 && (cp < 0x10000 || cp > 0x10ffff))
		return 0;
	*cpp = cp;
	return k + 1;
}

static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	unsigned long cp;
	return utf8_decode(s, n, &cp);
}

size_t
jsontext_utf8_char(const unsigned char *s, size_t n, unsigned long *cp)
{
	if (!n)
		return 0;
	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	return utf8_decode(s, n, cp);
}

/* Eight bytes at a time through the ASCII runs that are most of any text: every frame is
 * checked when it is encoded, and a 1 MiB broadcast was checked at ~1 byte a cycle. */
#define ONES 0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static uint64_t
load8(const unsigned char *s)
{
	uint64_t w;
	memcpy(&w, s, sizeof w);
	return w;
}

/* Nonzero when w may hold a byte that is not plain string text: >= 0x80, < 0x20, '"' or
 * '\\' (exact for none of them; a false alarm only sends the caller byte by byte). */
static uint64_t
special8(uint64_t w)
{
	uint64_t q = w ^ (ONES * '"'), b = w ^ (ONES * '\\');
	return (w | ((w - ONES * 0x20) & ~w) | ((q - ONES) & ~q) | ((b - ONES) & ~b)) & HIGHS;
}

/* Nonzero when one of the 64 bytes at s is a control, '"' or '\\': exact, unlike special8,
 * so text that is not ASCII keeps the fast path. GCC's and clang's vector extension makes
 * each compare one or two SSE2 or NEON instructions: 1 MiB in ~50 us, a word at a time
 * ~160 us. */
typedef unsigned char bytes16 __attribute__((vector_size(16)));
#define BLOCK 64

static int
special64(const unsigned char *s)
{
	bytes16 a, b, c, d, m;
	uint64_t x[2];

	memcpy(&a, s, 16);
	memcpy(&b, s + 16, 16);
	memcpy(&c, s + 32, 16);
	memcpy(&d, s + 48, 16);
	m = (a < 0x20) | (a == '"') | (a == '\\') | (b < 0x20) | (b == '"') | (b == '\\') |
	    (c < 0x20) | (c == '"') | (c == '\\') | (d < 0x20) | (d == '"') | (d == '\\');
	memcpy(x, &m, sizeof x);
	return (x[0] | x[1]) != 0;
}

/* A word or a byte at a time for the first block: the writer calls this again after
 * every escape, and escapes come close together (in JSON carried as text, every few
 * bytes). After that, a block at a time, ASCII or not; the block where special64 finds
 * something goes a word or a byte at a time again. */
size_t
jsontext_plain_run(const unsigned char *s, size_t n)
{
	size_t i = 0, stop = BLOCK;

	for (;;) {
		while (i < stop) {
			if (i + 8 <= n && !special8(load8(s + i)))
				i += 8;
			else if (i < n && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
				i++;
			else
				return i;
		}
		while (n - i >= BLOCK && !special64(s + i))
			i += BLOCK;
		stop = i + BLOCK;
	}
}

/* Four words at a time: one test and branch per 32 bytes, which compilers turn into
 * vector code (three times the speed on ASCII). */
static int
ascii32(const unsigned char *s)
{
	return !((load8(s) | load8(s + 8) | load8(s + 16) | load8(s + 24)) & HIGHS);
}

int
jsontext_utf8(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n) {
		if (i + 8 <= n && !(load8(s + i) & HIGHS)) {
			/* In an ASCII run: on by blocks while they last. Testing the block first
			 * would cost text that is not ASCII a failed test per character. */
			for (i += 8; n - i >= 32 && ascii32(s + i); i += 32)
				;
			continue;
		}
		if (s[i] < 0x80) {
			i++;
			continue;
		}
		size_t k = utf8_seq(s + i, n - i);
		if (!k)
			return 0;
		i += k;
	}
	return 1;
}

static int
hex4(const unsigned char *p, const unsigned char *e, unsigned *v)
{
	unsigned x = 0;
	if (e - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		unsigned c = p[i];
		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= c - '0';
		else if (c >= 'a' && c <= 'f')
			x |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			x |= c - 'A' + 10;
		else
			return -1;
	}
	*v = x;
	return 0;
}

/* p is just past the opening quote; returns just past the closing one, or NULL with *why
 * and *at (the byte at fault) set. */
static const unsigned char *
scan_string(const unsigned char *p, const unsigned char *e, const char **why,
    const unsigned char **at)
{
	for (;;) {
		while (p < e && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
			p++;
		*at = p;
		if (p == e) {
			*why = "unterminated string";
			return NULL;
		}
		unsigned c = *p;
		if (c == '"')
			return p + 1;
		if (c < 0x20) {
			*why = c ? "control character in a string" : "NUL in a string";
			return NULL;
		}
		if (c >= 0x80) {
			size_t k = utf8_seq(p, (size_t)(e - p));
			if (!k) {
				*why = "invalid UTF-8";
				return NULL;
			}
			p += k;
			continue;
		}
		if (e - p < 2) {
			*why = "unterminated string";
			return NULL;
		}
		if (strchr("\"\\/bfnrt", p[1]) && p[1]) {
			p += 2;
			continue;
		}
		unsigned u, lo;
		if (p[1] != 'u' || hex4(p + 2, e, &u) < 0) {
			*why = "invalid escape in a string";
			return NULL;
		}
		if (u == 0) {
			*why = "NUL in a string";
			return NULL;
		}
		if (u >= 0xdc00 && u <= 0xdfff) {
			*why = "lone surrogate escape";
			return NULL;
		}
		p += 6;
		if (u >= 0xd800 && u <= 0xdbff) {
			if (e - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, e, &lo) < 0 ||
			    lo < 0xdc00 || lo > 0xdfff) {
				*at = p - 6;
				*why = "lone surrogate escape";
				return NULL;
			}
			p += 6;
		}
	}
}

static int
is_digit(const unsigned char *p, const unsigned char *e)
{
	return p < e && *p >= '0' && *p <= '9';
}

static const unsigned char *
scan_number(const unsigned char *p, const unsigned char *e)
{
	if (p < e && *p == '-')
		p++;
	if (!is_digit(p, e))
		return NULL;
	if (*p++ != '0')
		while (is_digit(p, e))
			p++;
	if (p < e && *p == '.') {
		if (!is_digit(++p, e))
			return NULL;
		while (is_digit(p, e))
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (!is_digit(p, e))
			return NULL;
		while (is_digit(p, e))
			p++;
	}
	return p;
}

static const unsigned char *
scan_literal(const unsigned char *p, const unsigned char *e)
{
	static const char *lits[] = { "true", "false", "null" };
	for (int i = 0; i < 3; i++) {
		size_t n = strlen(lits[i]);
		if ((size_t)(e - p) >= n && memcmp(p, lits[i], n) == 0)
			return p + n;
	}
	return NULL;
}

/* jsontext_check's walk: what comes next, and where. */
enum check_state { C_VALUE, C_KEY, C_AFTER, C_DONE, C_BAD };

struct check {
	const unsigned char *p, *e;
	const char *w;                              /* why, at C_BAD */
	size_t depth;
	unsigned char stack[JSONTEXT_MAX_DEPTH];   /* 1: in an object, 0: in an array */
};

/* A value, or the opening of an object or array. */
static enum check_state
check_value(struct check *c)
{
	const unsigned char *q;

	c->p = skip_ws(c->p, c->e);
	if (c->p == c->e)
		return C_BAD;
	switch (*c->p) {
	case '{':
	case '[':
		if (c->depth == JSONTEXT_MAX_DEPTH) {
			c->w = "JSON nested too deep";
			return C_BAD;
		}
		c->stack[c->depth++] = *c->p == '{';
		c->p = skip_ws(c->p + 1, c->e);
		if (c->p < c->e && *c->p == (c->stack[c->depth - 1] ? '}' : ']')) {
			c->p++;
			c->depth--;
			return C_AFTER;
		}
		return c->stack[c->depth - 1] ? C_KEY : C_VALUE;
	case '"':
		if (!(q = scan_string(c->p + 1, c->e, &c->w, &c->p)))
			return C_BAD;
		c->p = q;
		return C_AFTER;
	case 't':
	case 'f':
	case 'n':
		q = scan_literal(c->p, c->e);
		break;
	default:
		q = scan_number(c->p, c->e);
	}
	if (!q) {
		c->w = "invalid JSON value";
		return C_BAD;
	}
	c->p = q;
	return C_AFTER;
}

/* A key and its ':'. */
static enum check_state
check_key(struct check *c)
{
	const unsigned char *q;

	c->p = skip_ws(c->p, c->e);
	if (c->p == c->e)
		return C_BAD;
	if (*c->p != '"') {
		c->w = "expected a string key";
		return C_BAD;
	}
	if (!(q = scan_string(c->p + 1, c->e, &c->w, &c->p)))
		return C_BAD;
	c->p = skip_ws(q, c->e);
	if (c->p == c->e)
		return C_BAD;
	if (*c->p++ != ':') {
		c->w = "expected ':'";
		return C_BAD;
	}
	return C_VALUE;
}

/* After a value: a ',', a closing bracket, or the end of the text. */
static enum check_state
check_after(struct check *c)
{
	c->p = skip_ws(c->p, c->e);
	if (c->depth == 0) {
		if (c->p == c->e)
			return C_DONE;
		c->w = "text after the JSON value";
		return C_BAD;
	}
	if (c->p == c->e)
		return C_BAD;
	if (*c->p == ',') {
		c->p++;
		return c->stack[c->depth - 1] ? C_KEY : C_VALUE;
	}
	if (*c->p == (c->stack[c->depth - 1] ? '}' : ']')) {
		c->p++;
		c->depth--;
		return C_AFTER;
	}
	c->w = "expected ',' or a closing bracket";
	return C_BAD;
}

int
jsontext_check(const void *buf, size_t n, int any, char *why, size_t whylen)
{
	struct check c;
	enum check_state st = C_VALUE;

	c.p = skip_ws(buf, (const unsigned char *)buf + n);
	c.e = (const unsigned char *)buf + n;
	c.w = "truncated JSON";
	c.depth = 0;
	if (!any && (c.p == c.e || *c.p != '{')) {
		c.w = "not a JSON object";
		st = C_BAD;
	}
	while (st != C_DONE && st != C_BAD)
		st = st == C_VALUE ? check_value(&c) : st == C_KEY ? check_key(&c) :
		    check_after(&c);
	if (st == C_DONE)
		return 0;
	if (why && whylen)
		snprintf(why, whylen, "%s at byte %zu", c.w, (size_t)(c.p - (const unsigned char *)buf));
	return -1;
}

size_t
jsontext_compact(unsigned char *dst, const void *src, size_t n)
{
	const unsigned char *s = src;
	size_t o = 0;
	int in = 0, esc = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = s[i];
		if (in) {
			dst[o++] = c;
			if (esc)
				esc = 0;
			else if (c == '\\')
				esc = 1;
			else if (c == '"')
				in = 0;
		} else if (!is_ws(c)) {
			dst[o++] = c;
			in = c == '"';
		}
	}
	return o;
}

/* Past the closing quote of a string whose opening quote is just before p, or NULL. */
static const unsigned char *
skip_string(const unsigned char *p, const unsigned char *e)
{
	while (p < e) {
		if (*p == '\\') {
			if (e - p < 2)
				return NULL;
			p += 2;
		} else if (*p++ == '"')
			return p;
	}
	return NULL;
}

static const unsigned char *
skip_value(const unsigned char *p, const unsigned char *e)
{
	if (p == e)
		return NULL;
	if (*p == '"')
		return skip_string(p + 1, e);
	if (*p == '{' || *p == '[') {
		size_t d = 0;
		while (p < e) {
			unsigned char c = *p++;
			if (c == '"') {
				if (!(p = skip_string(p, e)))
					return NULL;
			} else if (c == '{' || c == '[') {
				d++;
			} else if ((c == '}' || c == ']') && --d == 0) {
				return p;
			}
		}
		return NULL;
	}
	while (p < e && !is_ws(*p) && *p != ',' && *p != '}' && *p != ']')
		p++;
	return p;
}

int
jsontext_span(const void *buf, size_t n, const char *key, const unsigned char **v, size_t *vn)
{
	const unsigned char *p = buf, *e = p + n;
	size_t klen = strlen(key);
	p = skip_ws(p, e);
	if (p == e || *p++ != '{')
		return -1;
	for (;;) {
		p = skip_ws(p, e);
		if (p == e || *p != '"')
			return -1;
		const unsigned char *ks = p + 1;
		if (!(p = skip_string(ks, e)))
			return -1;
		size_t kn = (size_t)(p - 1 - ks);
		p = skip_ws(p, e);
		if (p == e || *p++ != ':')
			return -1;
		p = skip_ws(p, e);
		const unsigned char *vs = p;
		if (!(p = skip_value(p, e)) || p == vs || p > e)
			return -1;
		if (kn == klen && memcmp(ks, key, klen) == 0) {
			*v = vs;
			*vn = (size_t)(p - vs);
			return 0;
		}
		p = skip_ws(p, e);
		if (p == e || *p++ != ',')
			return -1;
	}
}

/* p is just past the opening quote: just past the closing one if the string has no
 * escape or control character and is UTF-8, else NULL. */
static const unsigned char *
plain_string(const unsigned char *p, const unsigned char *e)
{
	size_t n = jsontext_plain_run(p, (size_t)(e - p));

	if (p + n == e || p[n] != '"' || !jsontext_utf8(p, n))
		return NULL;
	return p + n + 1;
}

int
jsontext_plain_members(const void *buf, size_t n, struct jsontext_member *m, size_t max)
{
	const unsigned char *p = buf, *e = p + n, *s[2];
	size_t len[2], count = 0;

	p = skip_ws(p, e);
	if (p == e || *p++ != '{')
		return -1;
	for (;;) {
		for (int i = 0; i < 2; i++) {
			p = skip_ws(p, e);
			if (p == e || *p != '"')
				return -1;
			s[i] = p + 1;
			if (!(p = plain_string(s[i], e)))
				return -1;
			len[i] = (size_t)(p - 1 - s[i]);
			p = skip_ws(p, e);
			if (i == 0 && (p == e || *p++ != ':'))
				return -1;
		}
		if (count == max)
			return -1;
		m[count++] = (struct jsontext_member){ s[0], s[1], len[0], len[1] };
		if (p == e)
			return -1;
		if (*p == '}')
			break;
		if (*p++ != ',')
			return -1;
	}
	return skip_ws(p + 1, e) == e ? (int)count : -1;
}
