/* log_escape: what remote text becomes before it reaches a terminal. C0 controls, DEL and
 * backslash are also in test_link's test_log_escape; here the rules past ASCII. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsontext.h"
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
	log_utf8 = 1;
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

/* Outside a UTF-8 locale every byte from 0x80 is escaped: "ě" is c4 9b, and 0x9b is CSI
 * to a terminal in an 8-bit character set. */
static void
test_escape_not_utf8(void **state)
{
	(void)state;
	log_utf8 = 0;
	assert_string_equal(ESC("K\xc3\xbc" "che \xc4\x9b \xc2\x9b"),
	    "K\\xc3\\xbcche \\xc4\\x9b \\xc2\\x9b");
	log_utf8 = 1;
}

/* The tools keep UTF-8 only where the user's locale says the terminal reads it. */
static void
test_utf8_from_locale(void **state)
{
	(void)state;
	setenv("LC_ALL", "C.UTF-8", 1);
	log_init("nws-test");
	assert_int_equal(log_utf8, 1);
	setenv("LC_ALL", "C", 1);
	log_init("nws-test");
	assert_int_equal(log_utf8, 0);
	unsetenv("LC_ALL");
	log_utf8 = 1;
}

/* Reads log_escape's output back: \xHH is a byte, anything else itself. */
static size_t
unescape(const char *s, unsigned char *out)
{
	size_t n = 0;
	unsigned v;

	while (*s) {
		if (s[0] == '\\') {
			assert_int_equal(s[1], 'x');
			assert_int_equal(sscanf(s + 2, "%2x", &v), 1);
			out[n++] = (unsigned char)v;
			s += 4;
		} else {
			out[n++] = (unsigned char)*s++;
		}
	}
	return n;
}

/* Nothing a terminal acts on: no C0, DEL, C1 or bidi control, and valid UTF-8. */
static void
assert_inert(const char *s)
{
	const unsigned char *u = (const unsigned char *)s;
	size_t n = strlen(s);

	assert_true(jsontext_utf8(u, n));
	for (size_t i = 0; i < n; i++) {
		assert_true(u[i] >= 0x20 && u[i] != 0x7f);
		assert_false(u[i] == 0xc2 && u[i + 1] >= 0x80 && u[i + 1] <= 0x9f);
		assert_false(u[i] == 0xd8 && u[i + 1] == 0x9c);
		assert_false(u[i] == 0xe2 && u[i + 1] == 0x80 &&
		    (u[i + 2] == 0x8e || u[i + 2] == 0x8f || (u[i + 2] >= 0xa8 && u[i + 2] <= 0xae)));
		assert_false(u[i] == 0xe2 && u[i + 1] == 0x81 && u[i + 2] >= 0xa6 && u[i + 2] <= 0xa9);
	}
}

/* Random text built from pieces near every rule's edges: the output is inert, reads back
 * to the input (to a prefix of it when cut), and never passes outlen. */
static void
test_escape_random(void **state)
{
	static const char *pieces[] = {
		"a", "\\", "\x1b", "\x7f", "\r", "\xc2\x9b", "\xc2\x9f", "\xc2\xa0", "\xc3\xbc",
		"\xe2\x80\xae", "\xe2\x80\xad", "\xe2\x80\xaf", "\xe2\x81\xa9", "\xe2\x81\xaa",
		"\xd8\x9c", "\xe6\x97\xa5", "\xf0\x9f\x98\x80", "\xc3", "\x80", "\xff", "\xed\xa0",
		"\xf4\x90", "\xe0\x80",
	};
	uint64_t x = 88172645463325252ull;
	char in[64], out[LOG_ESCAPE_MAX(sizeof in)];
	unsigned char back[sizeof in];

	(void)state;
	for (int iter = 0; iter < 200000; iter++) {
		log_utf8 = iter % 2;
		size_t n = 0, outlen, m;
		for (;;) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			const char *p = x & 1 ? (char[]){ (char)(x >> 8), 0 } :
			    pieces[(x >> 8) % (sizeof pieces / sizeof *pieces)];
			size_t k = p[0] ? strlen(p) : 1;   /* a random NUL is a byte too */
			if (n + k > sizeof in || (x >> 40) % 12 == 0)
				break;
			memcpy(in + n, p, k);
			n += k;
		}
		outlen = (x >> 20) % 2 ? sizeof out : 1 + (x >> 21) % 40;
		log_escape(in, n, out, outlen);
		assert_true(strlen(out) < outlen);
		assert_inert(out);
		for (const char *c = out; !log_utf8 && *c; c++)
			assert_true((unsigned char)*c < 0x80);
		m = unescape(out, back);
		assert_true(m <= n && memcmp(back, in, m) == 0);
		if (outlen == sizeof out)
			assert_int_equal(m, n);
	}
	log_utf8 = 1;
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
	log_utf8 = 1;
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
		cmocka_unit_test(test_escape_not_utf8),
		cmocka_unit_test(test_utf8_from_locale),
		cmocka_unit_test(test_escape_random),
		cmocka_unit_test(test_lws_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
