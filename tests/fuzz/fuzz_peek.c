/* peek: the cheap scans pass-through stages route on, against the full decoder. For any
 * input that frame_decode accepts, frame_peek_action names the same action (also with
 * the format left to frame_detect), a CBOR frame is exactly one item to
 * cbortext_item_len, and a JSON frame is one object to jsontext_check (what the stream
 * reader lets through). A disagreement lets a frame be routed as one thing and read as
 * another. */
#include <string.h>

#include "cbortext.h"
#include "frame.h"
#include "fuzz.h"
#include "jsontext.h"

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	static const enum frame_format fmts[] = { FORMAT_JSON, FORMAT_CBOR };
	struct frame f;
	char err[160];
	size_t il;

	for (size_t i = 0; i < 2; i++) {
		enum frame_action peeked = frame_peek_action(fmts[i], p, n);
		if (frame_decode(&f, fmts[i], p, n, err, sizeof err) < 0)
			continue;
		if (peeked != f.action) {
			fprintf(stderr, "peek says %d, decode says %d (%s)\n", peeked, f.action,
			    frame_action_name(&f) ? frame_action_name(&f) : "none");
			abort();
		}
		if (n && frame_detect(p[0]) == fmts[i])
			fuzz_check(frame_peek_action(FORMAT_UNKNOWN, p, n) == f.action);
		if (fmts[i] == FORMAT_CBOR)
			fuzz_check(cbortext_item_len(p, n, 0, 0, &il, NULL) == 1 && il == n);
		else
			fuzz_check(jsontext_check(p, n, 0, NULL, 0) == 0);
		frame_clear(&f);
	}
	return 0;
}
