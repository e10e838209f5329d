/* fuzz: what every target under tests/fuzz shares. A target defines
 * LLVMFuzzerTestOneInput and checks its properties with fuzz_check, which aborts (a crash
 * to libFuzzer and to replay.c alike) naming the property that failed. */
#ifndef NWS_FUZZ_H
#define NWS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define fuzz_check(cond) do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

static inline int
fuzz_str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* a and b hold the same frame: every field, the data byte for byte (not the key). */
static inline int
fuzz_frame_same(const struct frame *a, const struct frame *b)
{
	return a->action == b->action && fuzz_str_same(a->action_name, b->action_name) &&
	    fuzz_str_same(a->channel, b->channel) && fuzz_str_same(a->source, b->source) &&
	    fuzz_str_same(a->target, b->target) && fuzz_str_same(a->instance, b->instance) &&
	    fuzz_str_same(a->host, b->host) && fuzz_str_same(a->address, b->address) &&
	    fuzz_str_same(a->path, b->path) && fuzz_str_same(a->interface, b->interface) &&
	    fuzz_str_same(a->domain, b->domain) && fuzz_str_same(a->node, b->node) &&
	    fuzz_str_same(a->reason, b->reason) && a->port == b->port && a->code == b->code &&
	    a->data_kind == b->data_kind && a->data_len == b->data_len &&
	    (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
}

/* A small deterministic generator for chunk sizes and choices drawn from the input. */
static inline uint32_t
fuzz_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

#endif
