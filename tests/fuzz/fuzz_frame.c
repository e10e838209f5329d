/* frame: any bytes through frame_decode as JSON and as CBOR. A frame that decodes must
 * encode in both formats, decode back to the same frame, and encode again to the same
 * bytes: a stage can pass on whatever it accepted, in either format, without change. */
#include <string.h>

#include "frame.h"
#include "fuzz.h"

static void
round_trip(const struct frame *f, enum frame_format fmt)
{
	struct buf once, twice;
	struct frame g;
	char err[160];

	buf_init(&once, 0);
	buf_init(&twice, 0);
	fuzz_check(frame_encode(f, fmt, &once) == 0);
	if (frame_decode(&g, fmt, buf_data(&once), once.len, err, sizeof err) < 0) {
		fprintf(stderr, "an encoded frame does not decode: %s\n", err);
		abort();
	}
	fuzz_check(fuzz_frame_same(f, &g));
	fuzz_check(frame_encode(&g, fmt, &twice) == 0);
	fuzz_check(twice.len == once.len && memcmp(buf_data(&twice), buf_data(&once),
	    once.len) == 0);
	frame_clear(&g);
	buf_clear(&once);
	buf_clear(&twice);
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	static const enum frame_format fmts[] = { FORMAT_JSON, FORMAT_CBOR };
	struct frame f;
	char err[160];

	for (size_t i = 0; i < 2; i++) {
		err[0] = '\0';
		if (frame_decode(&f, fmts[i], p, n, err, sizeof err) < 0) {
			fuzz_check(err[0] != '\0');
			continue;
		}
		round_trip(&f, FORMAT_JSON);
		round_trip(&f, FORMAT_CBOR);
		frame_clear(&f);
	}
	return 0;
}
