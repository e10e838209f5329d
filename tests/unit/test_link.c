/* link and log: what a link may be dialled at (found frames come from anyone), msg1
 * trial against a psk, and the escaping of remote text for logs. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <string.h>
#include <sodium.h>

#include "link.h"
#include "log.h"
#include "noise.h"

static void
test_target_check(void **state)
{
	const char *why = NULL;
	static const char *good[][2] = {
		{ "10.0.0.1", NULL }, { "127.0.0.1", "lo" }, { "::1", "" },
		{ "fe80::1", "eth0" }, { "fe80::1%eth0", "eth0" }, { "2001:db8::2", "br-lan.10" },
	};
	static const char *bad[][2] = {
		{ "", NULL }, { "localhost", NULL }, { "evil.example", NULL },
		{ "10.0.0.1\r\nX-Evil: 1", NULL }, { "10.0.0.1 ", NULL }, { " 10.0.0.1", NULL },
		{ "10.0.0.1/24", NULL }, { "10.0.0.256", NULL }, { "10.0.0.1%eth0", NULL },
		{ "fe80::1%", NULL }, { "fe80::1%eth0\r\n", NULL }, { "fe80::1%a b", NULL },
		{ "[::1]", NULL }, { "10.0.0.1", "eth0\r\nHost: x" }, { "10.0.0.1", "a/b" },
		{ "10.0.0.1", "averyveryverylongname" },
	};

	(void)state;
	for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
		assert_int_equal(link_target_check(good[i][0], 4000, good[i][1], &why), 0);
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		why = NULL;
		assert_int_equal(link_target_check(bad[i][0], 4000, bad[i][1], &why), -1);
		assert_non_null(why);
	}
	assert_int_equal(link_target_check(NULL, 4000, NULL, &why), -1);
	assert_int_equal(link_target_check("10.0.0.1", 0, NULL, &why), -1);
	assert_int_equal(link_target_check("10.0.0.1", 65536, NULL, &why), -1);
	assert_int_equal(link_target_check("10.0.0.1", -1, NULL, &why), -1);
	assert_int_equal(link_target_check("10.0.0.1", 65535, NULL, &why), 0);
}

/* A msg1 opens under its own psk and prologue nws-link/1 only. */
static void
test_msg1_trial(void **state)
{
	unsigned char psk[32], other[32], msg[200], payload[23] = { 0xa1, 0x64, 'n', 'o', 'd',
	    'e', 0x50 };
	struct noise_handshake hs;
	long n;

	(void)state;
	randombytes_buf(psk, sizeof psk);
	randombytes_buf(other, sizeof other);
	noise_handshake_init(&hs, 1, psk, "nws-link/1", 10);
	n = noise_handshake_write(&hs, payload, sizeof payload, msg);
	assert_int_equal(n, 71);
	assert_true(link_msg1_opens(psk, msg, (size_t)n));
	assert_false(link_msg1_opens(other, msg, (size_t)n));
	assert_false(link_msg1_opens(psk, msg, (size_t)n - 1));
	msg[40] ^= 1;
	assert_false(link_msg1_opens(psk, msg, (size_t)n));
	/* The old prologue, with a path after it, is another protocol. */
	noise_handshake_init(&hs, 1, psk, "nws-link/1abc", 13);
	n = noise_handshake_write(&hs, payload, sizeof payload, msg);
	assert_false(link_msg1_opens(psk, msg, (size_t)n));
	noise_handshake_clear(&hs);
}

static void
test_log_escape(void **state)
{
	char out[64];
	const char in[] = "ok \x1b[31mred\r\nnws: forged\\ \x7f\x01\xc3\xa9";

	(void)state;
	log_escape(in, sizeof in - 1, out, sizeof out);
	assert_string_equal(out,
	    "ok \\x1b[31mred\\x0d\\x0anws: forged\\x5c \\x7f\\x01\xc3\xa9");
	/* A NUL inside the text is escaped, not an end. */
	log_escape("a\0b", 3, out, sizeof out);
	assert_string_equal(out, "a\\x00b");
	/* Cut to the buffer, never inside an escape, always terminated. */
	log_escape("abc\x01", 4, out, 6);
	assert_string_equal(out, "abc");
	log_escape("abcdef", 6, out, 4);
	assert_string_equal(out, "abc");
	log_escape(NULL, 3, out, sizeof out);
	assert_string_equal(out, "");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_target_check),
		cmocka_unit_test(test_msg1_trial),
		cmocka_unit_test(test_log_escape),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
