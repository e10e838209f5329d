/* log_escape: what remote text becomes before it reaches a terminal. C0 controls, DEL and
 * backslash are also in test_link's test_log_escape; here the rules past ASCII. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <unistd.h>

#include "log.h"

static const char *
esc(const char *s, size_t n)
{
	static char out[256];
	return log_escape(s, n, out, sizeof out);
}
#define ESC(lit) esc(lit, sizeof lit - 1)

static void
test_escape_utf8(void **state)
{
	char out[8];

	(void)state;
	/* Kept: readable characters of any script, NBSP (U+00A0, the first past C1). */
	assert_string_equal(ESC("K\xc3\xbc" "che \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xc2\xa0"),
	    "K\xc3\xbc" "che \xe6\x97\xa5\xe6\x9c\xac \xf0\x9f\x98\x80 \xc2\xa0");
	/* C1 controls, as UTF-8 and as bare bytes: CSI, NEL. */
	assert_string_equal(ESC("\xc2\x9b" "2J\xc2\x85\x9b\x85"),
	    "\\xc2\\x9b2J\\xc2\\x85\\x9b\\x85");
	/* Bidirectional formatting and line separators. */
	assert_string_equal(ESC("a\xe2\x80\xae" "b\xe2\x81\xa6" "c\xe2\x80\x8f" "d\xd8\x9c" "e\xe2\x80\xa8"),
	    "a\\xe2\\x80\\xaeb\\xe2\\x81\\xa6c\\xe2\\x80\\x8fd\\xd8\\x9ce\\xe2\\x80\\xa8");
	/* Not UTF-8: a stray lead or continuation, an overlong '/', a surrogate, past
	 * U+10FFFF, a sequence cut at the end; each byte alone, what follows read afresh. */
	assert_string_equal(ESC("\xc3" "A\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80\xfe\xe2\x82"),
	    "\\xc3A\\x80\\xc0\\xaf\\xed\\xa0\\x80\\xf4\\x90\\x80\\x80\\xfe\\xe2\\x82");
	/* Cut between characters, never inside one or inside an escape. */
	log_escape("a\xc3\xbc", 3, out, 3);
	assert_string_equal(out, "a");
	log_escape("ab\xc2\x9b", 4, out, 8);
	assert_string_equal(out, "ab");
}

/* libwebsockets' lines reach stderr escaped like any remote text, one line each. */
static void
test_lws_line(void **state)
{
	char got[256];
	int fds[2], saved;
	ssize_t n;

	(void)state;
	log_init("nws-test");
	assert_int_equal(pipe(fds), 0);
	saved = dup(2);
	dup2(fds[1], 2);
	log_level = 1;
	log_lws(2, "not at -v\n");
	log_level = 2;
	log_lws(2, "bad header \x1b[2J\xc2\x9b: x\r\n");
	dup2(saved, 2);
	close(saved);
	close(fds[1]);
	n = read(fds[0], got, sizeof got - 1);
	close(fds[0]);
	assert_true(n > 0);
	got[n] = '\0';
	assert_string_equal(got, "nws-test: lws: bad header \\x1b[2J\\xc2\\x9b: x\n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape_utf8),
		cmocka_unit_test(test_lws_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
