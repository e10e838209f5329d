/* idset: a set of peer ids, each with a util pointer for its owner's use, with O(1) add,
 * get and delete and an optional cap. The hash is keyed per set (SipHash), so ids that a
 * remote member chooses cannot be made to collide. Iterate with idset_next; the set must
 * not change meanwhile. */
#ifndef NWS_IDSET_H
#define NWS_IDSET_H

#include <stddef.h>
#include <stdint.h>

/* Peer ids are 16 hex characters from nws itself; this is what anyone may send. */
#define IDSET_ID_MAX 255
/* The one limit on the peers of one channel a tool keeps track of (mesh's local peers,
 * the pipeline's remote and local peers, nws-pipe's peers present, nws-proxy's remote
 * peers): past it a peer is not tracked (idset_add says -1). What one remote member may
 * make a tool hold is capped tighter by its caller (nws-link --max-peers,
 * MESH_PEERS_DEFAULT). */
#define IDSET_PEERS_MAX 65536

struct idset_item {
	char *id;      /* NULL: a free slot */
	void *util;
	uint64_t hash;
};

struct idset {
	struct idset_item *slot;   /* open addressing, linear probing, cap a power of 2 */
	size_t n, cap, max;
	unsigned char key[16];
};

/* max 0: no cap. */
void idset_init(struct idset *s, size_t max);
/* 1 added, 0 already there (util unchanged), -1 when the id is empty or longer than
 * IDSET_ID_MAX, the set is at its cap, or memory is out. */
int idset_add(struct idset *s, const char *id, void *util);
struct idset_item *idset_get(const struct idset *s, const char *id);
/* 1 removed, 0 was not there. */
int idset_del(struct idset *s, const char *id);
size_t idset_count(const struct idset *s);
/* The next item from *pos on (start at 0), or NULL at the end. */
struct idset_item *idset_next(const struct idset *s, size_t *pos);
/* Frees every id; the set is then as after idset_init with the same cap. */
void idset_clear(struct idset *s);

#endif
