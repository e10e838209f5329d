/* jsontext_plain_members: the allocation-free path for nws-proxy's common client frames
 * takes exactly the objects of plain strings, and everything else falls to the full
 * decoder (-1), whatever the bytes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsontext.h"

static int
members(const char *s, struct jsontext_member *m, size_t max)
{
	return jsontext_plain_members(s, strlen(s), m, max);
}

static void
assert_span(const unsigned char *p, size_t n, const char *want)
{
	assert_int_equal(n, strlen(want));
	assert_memory_equal(p, want, n);
}

static void
test_plain_objects(void **state)
{
	struct jsontext_member m[3];
	(void)state;

	assert_int_equal(members("{\"action\":\"broadcast\",\"data\":\"hi\"}", m, 3), 2);
	assert_span(m[0].key, m[0].klen, "action");
	assert_span(m[0].val, m[0].vlen, "broadcast");
	assert_span(m[1].key, m[1].klen, "data");
	assert_span(m[1].val, m[1].vlen, "hi");
	assert_int_equal(members(" {\n\"data\" : \"\" ,\"action\":\"x\"}\r\n", m, 3), 2);
	assert_span(m[0].val, m[0].vlen, "");
	/* UTF-8 is taken as it is; duplicates are reported for the caller to refuse. */
	assert_int_equal(members("{\"data\":\"caf\xc3\xa9 \xf0\x9f\x99\x82\"}", m, 3), 1);
	assert_int_equal(members("{\"a\":\"1\",\"a\":\"2\"}", m, 3), 2);
}

static void
test_everything_else_falls_back(void **state)
{
	struct jsontext_member m[3];
	static const char *const other[] = {
		"", "{}", "[]", "\"x\"", "{\"a\":1}", "{\"a\":\"b\",\"c\":null}",
		"{\"a\":{\"b\":\"c\"}}", "{\"a\":\"b\\\"c\"}", "{\"a\\u0041\":\"b\"}",
		"{\"a\":\"b\"", "{\"a\":\"b\",}", "{\"a\":\"b\"}x", "{\"a\":\"b\"}{}",
		"{\"a\" \"b\"}", "{\"a\":\"b\" \"c\":\"d\"}", "{\"a\":\"\x01\"}",
		"{\"a\":\"\xc3\"}", "{\"a\":\"\xed\xa0\x80\"}", "{\"a\":\"\xc0\xaf\"}",
		"{\"a\":\"b", "{\"a\":",
		"{\"1\":\"\",\"2\":\"\",\"3\":\"\",\"4\":\"\"}",   /* more than max */
	};
	(void)state;

	for (size_t i = 0; i < sizeof other / sizeof *other; i++)
		if (members(other[i], m, 3) != -1)
			fail_msg("taken: %s", other[i]);
	/* A NUL inside the string, which strlen would hide. */
	static const char nul[] = "{\"a\":\"b\0c\"}";
	assert_int_equal(jsontext_plain_members(nul, sizeof nul - 1, m, 3), -1);
}

/* Any prefix of a valid frame, and any one byte changed, is safe to scan. */
static void
test_prefixes_and_flips(void **state)
{
	struct jsontext_member m[3];
	const char *ok = "{\"action\":\"message\",\"target\":\"0123456789abcdef\",\"data\":\"x\"}";
	size_t n = strlen(ok);
	unsigned char *copy = malloc(n);
	(void)state;

	assert_int_equal(members(ok, m, 3), 3);
	for (size_t i = 0; i < n; i++) {
		memcpy(copy, ok, i);
		assert_int_equal(jsontext_plain_members(copy, i, m, 3), -1);
	}
	for (size_t i = 0; i < n; i++)
		for (int b = 0; b < 256; b += 7) {
			memcpy(copy, ok, n);
			copy[i] = (unsigned char)b;
			int k = jsontext_plain_members(copy, n, m, 3);
			assert_true(k == -1 || (k >= 1 && k <= 3));
		}
	free(copy);
}

/* Long runs are scanned eight bytes at a time: whatever stops a byte-wise scan stops it
 * at every offset of such a run too. */
static void
test_long_runs(void **state)
{
	struct jsontext_member m[3];
	static const char *const bad[] = { "\\", "\x01", "\x1f", "\xff", "\xc3", "\xed\xa0\x80" };
	char text[64], obj[96];
	(void)state;

	for (size_t at = 0; at < 40; at++) {
		for (size_t b = 0; b < sizeof bad / sizeof *bad; b++) {
			memset(text, 'a', 40);
			memcpy(text + at, bad[b], strlen(bad[b]));
			text[40] = '\0';
			snprintf(obj, sizeof obj, "{\"data\":\"%s\"}", text);
			assert_int_equal(members(obj, m, 3), -1);
			if (bad[b][0] != '\\' && (unsigned char)bad[b][0] >= 0x80)
				assert_false(jsontext_utf8((unsigned char *)text, 40));
		}
		memset(text, 'a', 41);
		memcpy(text + at, "\xc3\xa9", 2);
		text[41] = '\0';
		assert_true(jsontext_utf8((unsigned char *)text, 41));
		snprintf(obj, sizeof obj, "{\"data\":\"%s\"}", text);
		assert_int_equal(members(obj, m, 3), 1);
		assert_int_equal(m[0].vlen, 41);
		/* A quote inside the run ends the string there. */
		memset(text, 'a', 40);
		text[at] = '"';
		text[40] = '\0';
		snprintf(obj, sizeof obj, "{\"data\":\"%s\"}", text);
		assert_int_equal(members(obj, m, 3), -1);
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_plain_objects),
		cmocka_unit_test(test_everything_else_falls_back),
		cmocka_unit_test(test_prefixes_and_flips),
		cmocka_unit_test(test_long_runs),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
