/* jsontext: what jsontext_check accepts and refuses, and that a refusal names the byte at
 * fault (string errors once reported a pointer difference from NULL), the span of a
 * top-level key, compaction, and the plain runs string writers copy whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "jsontext.h"

static int
check(const char *s, char *why, size_t whylen)
{
	return jsontext_check(s, strlen(s), 0, why, whylen);
}

/* The reason jsontext_check gives for s, which must be refused. */
static const char *
reason(const char *s)
{
	static char why[128];

	why[0] = '\0';
	assert_int_equal(check(s, why, sizeof why), -1);
	return why;
}

static void
test_accepts(void **state)
{
	static const char *ok[] = {
		"{}", " { } ", "{\"a\":1}", "{\"a\":[1,2.5e-3,-0,true,false,null,{}]}",
		"{\"s\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}",
		"{\"u\":\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"}",
	};
	char why[64];

	(void)state;
	for (size_t i = 0; i < sizeof ok / sizeof *ok; i++)
		assert_int_equal(check(ok[i], why, sizeof why), 0);
	assert_int_equal(jsontext_check("[1]", 3, 1, why, sizeof why), 0);
	assert_int_equal(jsontext_check("\"x\"", 3, 1, why, sizeof why), 0);
	assert_int_equal(jsontext_check("[1]", 3, 0, why, sizeof why), -1);
}

/* Each refusal names its reason and the offset of the byte at fault. */
static void
test_string_errors_name_the_byte(void **state)
{
	(void)state;
	/*                                  0123456789012345678 */
	assert_string_equal(reason("{\"data\":\"ab\\udc00\"}"),
	    "lone surrogate escape at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\\ud800x\"}"),
	    "lone surrogate escape at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\\ud800\\u0041\"}"),
	    "lone surrogate escape at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\\u0000\"}"), "NUL in a string at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\\x\"}"),
	    "invalid escape in a string at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\\u12\"}"),
	    "invalid escape in a string at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\ncd\"}"),
	    "control character in a string at byte 11");
	assert_string_equal(reason("{\"data\":\"ab\xc0\x80\"}"), "invalid UTF-8 at byte 11");
	assert_string_equal(reason("{\"data\":\"abc"), "unterminated string at byte 12");
	assert_string_equal(reason("{\"data\":\"ab\\"), "unterminated string at byte 11");
	/* The same in a key. */
	assert_string_equal(reason("{\"k\\udc00\":1}"), "lone surrogate escape at byte 3");
	assert_string_equal(reason("{\"key"), "unterminated string at byte 5");
	/* A NUL byte in a string, counted by length, not by strlen. */
	char why[64];
	assert_int_equal(jsontext_check("{\"a\":\"\0\"}", 9, 0, why, sizeof why), -1);
	assert_string_equal(why, "NUL in a string at byte 6");
}

static void
test_structure_errors(void **state)
{
	(void)state;
	assert_string_equal(reason("[]"), "not a JSON object at byte 0");
	assert_string_equal(reason("{\"a\":1"), "truncated JSON at byte 6");
	assert_string_equal(reason("{\"a\" 1}"), "expected ':' at byte 6");
	assert_string_equal(reason("{1:1}"), "expected a string key at byte 1");
	assert_string_equal(reason("{\"a\":tru}"), "invalid JSON value at byte 5");
	assert_string_equal(reason("{\"a\":1} x"), "text after the JSON value at byte 8");
	assert_string_equal(reason("{\"a\":[1 2]}"),
	    "expected ',' or a closing bracket at byte 8");

	char deep[2 * JSONTEXT_MAX_DEPTH + 16], why[64];
	size_t n = 0;
	deep[n++] = '{';
	deep[n++] = '"';
	deep[n++] = 'a';
	deep[n++] = '"';
	deep[n++] = ':';
	for (int i = 0; i < JSONTEXT_MAX_DEPTH; i++)
		deep[n++] = '[';
	assert_int_equal(jsontext_check(deep, n, 0, why, sizeof why), -1);
	assert_non_null(strstr(why, "nested too deep"));
}

static void
test_span_and_compact(void **state)
{
	const char *s = " { \"action\" : \"broadcast\" , \"data\" : { \"x\" : [1, \"}\"] } } ";
	const unsigned char *v;
	size_t vn;
	unsigned char out[128];

	(void)state;
	assert_int_equal(jsontext_span(s, strlen(s), "data", &v, &vn), 0);
	assert_int_equal(vn, strlen("{ \"x\" : [1, \"}\"] }"));
	assert_memory_equal(v, "{ \"x\" : [1, \"}\"] }", vn);
	assert_int_equal(jsontext_span(s, strlen(s), "action", &v, &vn), 0);
	assert_memory_equal(v, "\"broadcast\"", vn);
	assert_int_equal(jsontext_span(s, strlen(s), "none", &v, &vn), -1);
	assert_int_equal(jsontext_span("{\"a\":", 5, "a", &v, &vn), -1);

	size_t n = jsontext_compact(out, s, strlen(s));
	assert_int_equal(n, strlen("{\"action\":\"broadcast\",\"data\":{\"x\":[1,\"}\"]}}"));
	assert_memory_equal(out, "{\"action\":\"broadcast\",\"data\":{\"x\":[1,\"}\"]}}", n);
}

/* Byte by byte, the definition jsontext_plain_run must agree with. */
static size_t
plain_run_ref(const unsigned char *s, size_t n)
{
	size_t i = 0;
	while (i < n && s[i] >= 0x20 && s[i] != '"' && s[i] != '\\')
		i++;
	return i;
}

static void
test_plain_run(void **state)
{
	static const unsigned char stops[] = { 0, 0x1f, '\n', '"', '\\' };
	static const unsigned char goes[] = { ' ', 'a', 0x7f, 0x80, 0xc3, 0xff, '!', '#', '[' };
	unsigned char s[64];
	(void)state;
	/* Every length, every position of one stopping byte in text of passing bytes (ASCII
	 * and not: the fast path must not take 0x80 and up for a stop). */
	for (size_t n = 0; n <= sizeof s; n++)
		for (size_t at = 0; at <= n; at++)
			for (size_t k = 0; k < sizeof stops; k++) {
				for (size_t i = 0; i < n; i++)
					s[i] = goes[(i * 7 + n) % sizeof goes];
				if (at < n)
					s[at] = stops[k];
				assert_int_equal(jsontext_plain_run(s, n), plain_run_ref(s, n));
			}
}

/* jsontext_utf8 a byte at a time (the reference for its word-at-a-time paths). */
static int
utf8_ref(const unsigned char *s, size_t n)
{
	unsigned long cp;
	for (size_t i = 0, k; i < n; i += k)
		if (!(k = jsontext_utf8_char(s + i, n - i, &cp)))
			return 0;
	return 1;
}

static void
test_utf8_every_length(void **state)
{
	/* A bad byte (or the first half of a character) at every position; e-acute and a
	 * character cut by the end at every position; past n, bytes that would make it
	 * invalid, which must not be looked at. */
	static const char *const ins[] = { "\xff", "\xc3", "\xc3\xa9", "\x80", "\xe2\x82\xac" };
	unsigned char s[100 + 4];
	(void)state;
	for (size_t n = 0; n <= 100; n++)
		for (size_t at = 0; at <= n; at++)
			for (size_t k = 0; k <= sizeof ins / sizeof *ins; k++) {
				memset(s, 'a', n);
				memset(s + n, 0xff, 4);
				if (k < sizeof ins / sizeof *ins && at < n)
					memcpy(s + at, ins[k], strlen(ins[k]) < n - at ?
					    strlen(ins[k]) : n - at);
				assert_int_equal(jsontext_utf8(s, n), utf8_ref(s, n));
			}
	memset(s, 'a', 64);
	s[64] = 0xff;
	assert_true(jsontext_utf8(s, 32));
	assert_true(jsontext_utf8(s, 64));
}

/* The block scans against byte-at-a-time references over text that is ASCII, not
 * ASCII, or both, for every length to 200 with a special byte (or a bad one) at every
 * position: the blocks and the words must hand over at every boundary. */
static void
test_scans_every_length(void **state)
{
	static const char *const fill[] = { "a", "\xc3\xa9", "ab\xe4\xb8\x80" };
	static const unsigned char put[] = { '"', '\\', 0x1f, 0xff };
	unsigned char s[200 + 8];
	(void)state;
	for (size_t f = 0; f < sizeof fill / sizeof *fill; f++) {
		size_t fl = strlen(fill[f]);
		for (size_t i = 0; i < sizeof s; i++)
			s[i] = (unsigned char)fill[f][i % fl];
		for (size_t n = 0; n <= 200; n++)
			for (size_t at = 0; at <= n; at++)
				for (size_t k = 0; k <= sizeof put; k++) {
					unsigned char keep = s[at];
					if (k < sizeof put)
						s[at] = put[k];
					size_t want = 0;
					while (want < n && s[want] >= 0x20 && s[want] != '"' &&
					    s[want] != '\\')
						want++;
					assert_int_equal(jsontext_plain_run(s, n), want);
					assert_int_equal(jsontext_utf8(s, n), utf8_ref(s, n));
					s[at] = keep;
				}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_accepts),
		cmocka_unit_test(test_string_errors_name_the_byte),
		cmocka_unit_test(test_structure_errors),
		cmocka_unit_test(test_span_and_compact),
		cmocka_unit_test(test_plain_run),
		cmocka_unit_test(test_utf8_every_length),
		cmocka_unit_test(test_scans_every_length),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
