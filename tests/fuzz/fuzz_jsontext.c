/* jsontext: the in-place checker against jansson, the parser frame.c decodes with. Text
 * one accepts the other accepts, except where their documented limits differ (jansson
 * refuses numbers it cannot hold; jsontext refuses nesting past JSONTEXT_MAX_DEPTH).
 * jsontext_compact keeps the value, and jsontext_span finds each top-level key's value
 * as jansson reads it. */
#include <string.h>

#include <jansson.h>

#include "fuzz.h"
#include "jsontext.h"

static int
jansson_number_limit(const json_error_t *je)
{
	return strstr(je->text, "too big") || strstr(je->text, "overflow");
}

/* jansson's reading of text[0..n), or NULL. */
static json_t *
load(const void *text, size_t n, size_t flags, json_error_t *je)
{
	return json_loadb(text, n, JSON_DECODE_ANY | flags, je);
}

static void
check_span(const uint8_t *p, size_t n, json_t *obj)
{
	const char *key;
	json_t *v;

	json_object_foreach(obj, key, v) {
		const unsigned char *s;
		size_t sn;
		/* Keys are matched as written, so only a key with no backslash is one the span
		 * can look for (the text of "\\\\" is the key of two backslashes, "\\" that
		 * of one), and one written with an escape may not be found. */
		if (strchr(key, '\\') || jsontext_span(p, n, key, &s, &sn) < 0)
			continue;
		json_error_t je;
		json_t *w = load(s, sn, 0, &je);
		fuzz_check(w && json_equal(v, w));
		json_decref(w);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	char why[128];
	json_error_t je;

	int ok = jsontext_check(p, n, 1, why, sizeof why) == 0;
	/* jansson takes a NUL byte for the end of its input; JSON has none outside strings
	 * and frame.c checks with jsontext first. */
	if (memchr(p, 0, n)) {
		fuzz_check(!ok);
		return 0;
	}
	json_t *v = load(p, n, 0, &je);

	if (ok && !v && !jansson_number_limit(&je)) {
		fprintf(stderr, "jsontext accepts what jansson refuses: %s\n", je.text);
		abort();
	}
	if (!ok && v && !strstr(why, "nested too deep")) {
		fprintf(stderr, "jansson accepts what jsontext refuses: %s\n", why);
		abort();
	}
	if (!ok) {
		fuzz_check(strstr(why, " at byte ") != NULL);
		json_decref(v);
		return 0;
	}
	if (v)
		fuzz_check((jsontext_check(p, n, 0, NULL, 0) == 0) == json_is_object(v));
	unsigned char *c = malloc(n ? n : 1);
	fuzz_check(c != NULL);
	size_t cn = jsontext_compact(c, p, n);
	fuzz_check(cn <= n && jsontext_check(c, cn, 1, NULL, 0) == 0);
	if (v) {
		json_t *w = load(c, cn, 0, &je);
		fuzz_check(w && json_equal(v, w));
		json_decref(w);
		json_t *strict = load(p, n, JSON_REJECT_DUPLICATES, &je);
		if (strict && json_is_object(strict))
			check_span(p, n, strict);
		json_decref(strict);
	}
	free(c);
	json_decref(v);
	return 0;
}
