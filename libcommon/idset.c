#include "idset.h"

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

_Static_assert(sizeof ((struct idset *)0)->key == crypto_shorthash_KEYBYTES,
    "idset's key is a SipHash key");

void
idset_init(struct idset *s, size_t max)
{
	memset(s, 0, sizeof *s);
	s->max = max;
	randombytes_buf(s->key, sizeof s->key);
}

static uint64_t
idset_hash(const struct idset *s, const char *id, size_t n)
{
	unsigned char h[crypto_shorthash_BYTES];
	uint64_t v = 0;

	crypto_shorthash(h, (const unsigned char *)id, n, s->key);
	for (size_t i = 0; i < sizeof h; i++)
		v = v << 8 | h[i];
	return v;
}

/* The slot holding id, or the free slot where it would go. */
static size_t
idset_find(const struct idset *s, const char *id, uint64_t hash)
{
	size_t mask = s->cap - 1, i = (size_t)hash & mask;

	while (s->slot[i].id && (s->slot[i].hash != hash || strcmp(s->slot[i].id, id) != 0))
		i = (i + 1) & mask;
	return i;
}

static int
idset_grow(struct idset *s)
{
	size_t cap = s->cap ? 2 * s->cap : 16;
	struct idset_item *old = s->slot, *slot = calloc(cap, sizeof *slot);
	size_t oldcap = s->cap;

	if (!slot)
		return -1;
	s->slot = slot;
	s->cap = cap;
	for (size_t i = 0; i < oldcap; i++)
		if (old[i].id)
			s->slot[idset_find(s, old[i].id, old[i].hash)] = old[i];
	free(old);
	return 0;
}

int
idset_add(struct idset *s, const char *id, void *util)
{
	size_t n = strlen(id);
	uint64_t hash;
	size_t i;

	if (n == 0 || n > IDSET_ID_MAX)
		return -1;
	hash = idset_hash(s, id, n);
	if (s->cap && s->slot[idset_find(s, id, hash)].id)
		return 0;
	if (s->max && s->n >= s->max)
		return -1;
	/* At most three quarters full, so probes stay short. */
	if (4 * (s->n + 1) > 3 * s->cap && idset_grow(s) < 0)
		return -1;
	i = idset_find(s, id, hash);
	if (!(s->slot[i].id = strdup(id)))
		return -1;
	s->slot[i].util = util;
	s->slot[i].hash = hash;
	s->n++;
	return 1;
}

struct idset_item *
idset_get(const struct idset *s, const char *id)
{
	size_t n = strlen(id), i;

	if (!s->cap || n == 0 || n > IDSET_ID_MAX)
		return NULL;
	i = idset_find(s, id, idset_hash(s, id, n));
	return s->slot[i].id ? &s->slot[i] : NULL;
}

int
idset_del(struct idset *s, const char *id)
{
	struct idset_item *it = idset_get(s, id);
	size_t mask = s->cap - 1, i, j;

	if (!it)
		return 0;
	i = (size_t)(it - s->slot);
	free(it->id);
	/* Backward shift: later items of the same probe run move up into the hole, so no
	 * tombstones are left to lengthen lookups. */
	for (j = (i + 1) & mask; s->slot[j].id; j = (j + 1) & mask) {
		size_t home = (size_t)s->slot[j].hash & mask;
		/* j stays when its home lies cyclically in (i, j]. */
		if (i <= j ? (home > i && home <= j) : (home > i || home <= j))
			continue;
		s->slot[i] = s->slot[j];
		i = j;
	}
	memset(&s->slot[i], 0, sizeof s->slot[i]);
	s->n--;
	return 1;
}

size_t
idset_count(const struct idset *s)
{
	return s->n;
}

struct idset_item *
idset_next(const struct idset *s, size_t *pos)
{
	for (; *pos < s->cap; ++*pos)
		if (s->slot[*pos].id)
			return &s->slot[(*pos)++];
	return NULL;
}

void
idset_clear(struct idset *s)
{
	size_t max = s->max;

	for (size_t i = 0; i < s->cap; i++)
		free(s->slot[i].id);
	free(s->slot);
	idset_init(s, max);
}
