/* frame: any bytes through frame_decode as JSON and as CBOR. A frame that decodes must
 * encode in both formats, decode back to the same frame, and encode again to the same
 * bytes: a stage can pass on whatever it accepted, in either format, without change. */
#include <string.h>

#include "frame.h"
#include "fuzz.h"

static int
str_same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static int
frame_same(const struct frame *a, const struct frame *b)
{
	return a->action == b->action && str_same(a->action_name, b->action_name) &&
	    str_same(a->channel, b->channel) && str_same(a->source, b->source) &&
	    str_same(a->target, b->target) && str_same(a->instance, b->instance) &&
	    str_same(a->host, b->host) && str_same(a->address, b->address) &&
	    str_same(a->path, b->path) && str_same(a->interface, b->interface) &&
	    str_same(a->domain, b->domain) && str_same(a->node, b->node) &&
	    str_same(a->reason, b->reason) && a->port == b->port && a->code == b->code &&
	    a->data_kind == b->data_kind && a->data_len == b->data_len &&
	    (a->data_len == 0 || memcmp(a->data, b->data, a->data_len) == 0);
}

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
	fuzz_check(frame_same(f, &g));
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
