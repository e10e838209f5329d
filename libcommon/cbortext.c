#include "cbortext.h"

#include <string.h>

int
cbortext_head(const void *buf, size_t n, struct cbortext_head *h)
{
	const unsigned char *p = buf;
	h->len = 1;
	if (n < 1)
		return 0;
	h->major = p[0] >> 5;
	h->ai = p[0] & 31;
	if (h->ai < 24) {
		h->arg = (uint64_t)h->ai;
		return 1;
	}
	if (h->ai == 31) {
		/* Indefinite length (strings, arrays, maps) or "break" (major 7). */
		h->arg = 0;
		return h->major >= 2 && h->major != 6 ? 1 : -1;
	}
	if (h->ai > 27)
		return -1;
	size_t w = (size_t)1 << (h->ai - 24);
	h->len = 1 + w;
	if (n < 1 + w)
		return 0;
	uint64_t v = 0;
	for (size_t i = 0; i < w; i++)
		v = v << 8 | p[1 + i];
	h->arg = v;
	return 1;
}

int
cbortext_is_map(unsigned char first)
{
	return first >> 5 == 5;
}

struct level {
	uint64_t owed;         /* items still to come in a definite container or tag */
	unsigned char indef;   /* 0, or the major type of an indefinite container */
	unsigned char odd;     /* indefinite map: a key without its value so far */
};

/* The item stops short: pos bytes scanned and at least `more` needed for the current one.
 * Every container still open owes one byte per item it still expects (or its break), so
 * that sum bounds the whole item from below: reported as *need, or as -2 past max. */
static int
scan_short(const struct level *lv, size_t depth, size_t pos, size_t more, size_t max,
    size_t *need)
{
	if (more > max - pos)
		return -2;
	size_t total = pos + more;
	for (size_t d = 1; d <= depth; d++) {
		uint64_t owe = lv[d].indef ? 1 : lv[d].owed - 1;
		if (owe > max - total)
			return -2;
		total += (size_t)owe;
	}
	if (need)
		*need = (size_t)total;
	return 0;
}

int
cbortext_item_len(const void *buf, size_t len, size_t max, int strict, size_t *itemlen,
    size_t *need)
{
	struct level lv[CBORTEXT_MAX_DEPTH + 1];
	const unsigned char *p = buf;
	size_t pos = 0, depth = 0;
	if (max == 0)
		max = SIZE_MAX;
	for (;;) {
		struct cbortext_head h = { 0, 0, 0, 0 };
		int rc = cbortext_head(p + pos, len - pos, &h);
		if (rc < 0)
			return -1;
		if (strict && rc == 1 && h.ai == 31)
			return h.major == 7 ? -1 : -3;
		if (rc == 0 || pos + h.len > max)
			return scan_short(lv, depth, pos, h.len, max, need);
		struct level *in = &lv[depth];
		if (depth && in->indef >= 2 && in->indef <= 3 && p[pos] != 0xff &&
		    (h.major != in->indef || h.ai == 31))
			return -1;   /* chunks of an indefinite string: definite, same type */
		pos += h.len;
		if (p[pos - h.len] == 0xff) {
			if (depth == 0 || !in->indef || (in->indef == 5 && in->odd))
				return -1;
			depth--;
		} else if (h.major <= 1 || h.major == 7) {
			if (h.major == 7 && h.ai == 24 && h.arg < 32)
				return -1;
		} else if ((h.major == 2 || h.major == 3) && h.ai != 31) {
			if (h.arg > max - pos) {
				if (max == SIZE_MAX)
					return -1;
				return -2;
			}
			if (h.arg > len - pos)
				return scan_short(lv, depth, pos, (size_t)h.arg, max, need);
			pos += (size_t)h.arg;
		} else {
			/* A string of chunks, an array, a map or a tag opens a level. */
			if (depth == CBORTEXT_MAX_DEPTH)
				return -1;
			if (h.ai == 31) {
				lv[++depth] = (struct level){ 0, (unsigned char)h.major, 0 };
				continue;
			}
			if (h.major == 5 && h.arg > UINT64_MAX / 2)
				return -1;
			uint64_t owed = h.major == 6 ? 1 : h.major == 5 ? h.arg * 2 : h.arg;
			if (owed) {
				lv[++depth] = (struct level){ owed, 0, 0 };
				continue;
			}
		}
		/* One item is complete: count it in its container, closing those it fills. */
		for (;;) {
			if (depth == 0) {
				*itemlen = pos;
				return 1;
			}
			struct level *l = &lv[depth];
			if (l->indef) {
				l->odd ^= 1;
				break;
			}
			if (--l->owed)
				break;
			depth--;
		}
	}
}

int
cbortext_map_start(struct cbortext_map *m, const void *p, size_t n)
{
	struct cbortext_head h;
	if (cbortext_head(p, n, &h) != 1 || h.major != 5 || h.ai == 31)
		return -1;
	m->p = p;
	m->n = n;
	m->pos = h.len;
	m->left = h.arg;
	return 0;
}

int
cbortext_map_next(struct cbortext_map *m, const unsigned char **k, size_t *kn,
    const unsigned char **v, size_t *vn)
{
	size_t kl;
	if (m->left == 0)
		return 0;
	const unsigned char *at = m->p + m->pos;
	size_t rest = m->n - m->pos;
	if (cbortext_text(at, rest, k, kn) < 0 ||
	    cbortext_item_len(at, rest, 0, 0, &kl, NULL) != 1 ||
	    cbortext_item_len(at + kl, rest - kl, 0, 0, vn, NULL) != 1)
		return -1;
	*v = at + kl;
	m->pos += kl + *vn;
	m->left--;
	return 1;
}

int
cbortext_span(const void *p, size_t n, const char *key, const unsigned char **v,
    size_t *vn)
{
	struct cbortext_map m;
	const unsigned char *k;
	size_t kn, len = strlen(key);
	if (cbortext_map_start(&m, p, n) < 0)
		return -1;
	while (cbortext_map_next(&m, &k, &kn, v, vn) == 1)
		if (kn == len && memcmp(k, key, len) == 0)
			return 0;
	return -1;
}

int
cbortext_text(const void *p, size_t n, const unsigned char **s, size_t *sn)
{
	struct cbortext_head h;
	if (cbortext_head(p, n, &h) != 1 || h.major != 3 || h.ai == 31 || h.arg > n - h.len)
		return -1;
	*s = (const unsigned char *)p + h.len;
	*sn = (size_t)h.arg;
	return 0;
}
