/* fuzz: what every target under tests/fuzz shares. A target defines
 * LLVMFuzzerTestOneInput and checks its properties with fuzz_check, which aborts (a crash
 * to libFuzzer and to replay.c alike) naming the property that failed. */
#ifndef NWS_FUZZ_H
#define NWS_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n);

#define fuzz_check(cond) do { \
		if (!(cond)) { \
			fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
			abort(); \
		} \
	} while (0)

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
