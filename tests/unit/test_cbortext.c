/* cbortext: heads, strict and lax item lengths, the map walk and field lookup on the
 * shapes frame.c and stream.c rely on. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>

#include "cbortext.h"

#define S(x) (const unsigned char *)(x), sizeof(x) - 1

static void
test_head(void **state)
{
	struct cbortext_head h;
	(void)state;
	assert_int_equal(cbortext_head(S("\x19\x01\x00"), &h), 1);
	assert_int_equal(h.major, 0);
	assert_int_equal(h.arg, 256);
	assert_int_equal(h.len, 3);
	assert_int_equal(cbortext_head(S("\x19\x01"), &h), 0);
	assert_int_equal(h.len, 3);
	assert_int_equal(cbortext_head(S("\x1c"), &h), -1);
	assert_int_equal(cbortext_head(S("\xbf"), &h), 1);
	assert_int_equal(h.ai, 31);
	assert_true(cbortext_is_map(0xa0) && cbortext_is_map(0xbf));
	assert_false(cbortext_is_map(0x9f) || cbortext_is_map(0xc0));
}

static void
test_item_len(void **state)
{
	size_t il = 0, need = 0;
	(void)state;
	/* {_ "a": 1} with a break: whole when lax, refused when strict. */
	assert_int_equal(cbortext_item_len(S("\xbf\x61" "a" "\x01\xff"), 0, 0, &il, NULL), 1);
	assert_int_equal(il, 5);
	assert_int_equal(cbortext_item_len(S("\xbf\x61" "a" "\x01\xff"), 0, 1, &il, NULL), -3);
	/* {"a": "bc"} cut after the key: the rest is owed. */
	assert_int_equal(cbortext_item_len(S("\xa1\x61" "a"), 0, 1, &il, &need), 0);
	assert_true(need >= 4);
	assert_int_equal(cbortext_item_len(S("\xa1\x61" "a" "\x62" "bc"), 0, 1, &il, NULL), 1);
	assert_int_equal(il, 6);
	assert_int_equal(cbortext_item_len(S("\xa1\x61" "a" "\x62" "bc"), 4, 1, &il, NULL), -2);
	assert_int_equal(cbortext_item_len(S("\xff"), 0, 0, &il, NULL), -1);
}

static void
test_map(void **state)
{
	static const char m[] = "\xa3\x61" "a" "\x01\x66" "action" "\x64" "open" "\x61" "z"
	    "\x82\x01\x02";
	const unsigned char *k, *v, *s;
	size_t kn, vn, sn;
	struct cbortext_map it;
	int n = 0;
	(void)state;
	assert_int_equal(cbortext_map_start(&it, S(m)), 0);
	while (cbortext_map_next(&it, &k, &kn, &v, &vn) == 1)
		n++;
	assert_int_equal(n, 3);
	assert_int_equal(it.pos, sizeof m - 1);
	assert_int_equal(cbortext_span(S(m), "action", &v, &vn), 0);
	assert_int_equal(cbortext_text(v, vn, &s, &sn), 0);
	assert_int_equal(sn, 4);
	assert_memory_equal(s, "open", 4);
	assert_int_equal(cbortext_span(S(m), "z", &v, &vn), 0);
	assert_int_equal(vn, 3);
	assert_int_equal(cbortext_span(S(m), "b", &v, &vn), -1);
	/* A key that is no text stops the walk; so does a map cut short. */
	assert_int_equal(cbortext_span(S("\xa2\x01\x01\x61" "a" "\x01"), "a", &v, &vn), -1);
	assert_int_equal(cbortext_span(S("\xa2\x61" "b" "\x01"), "a", &v, &vn), -1);
	assert_int_equal(cbortext_map_start(&it, S("\xbf\xff")), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_head),
		cmocka_unit_test(test_item_len),
		cmocka_unit_test(test_map),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
