/* keys: known answers from PyNaCl (tests/unit/keys_ref.py, run now, not pasted), tag
 * make/verify and its failure cases, name validation edges. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "keys.h"

#define REF "/usr/bin/python3 tests/unit/keys_ref.py"
#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define KA_PORT 4242

static const unsigned char ka_nonce[KEYS_NONCE_LEN] = {
	0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77,
	0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff,
};

static void
hex(char *out, const void *p, size_t n)
{
	sodium_bin2hex(out, 2 * n + 1, p, n);
}

/* Fills name with len characters cycling through every allowed one. */
static void
long_name(char *name, size_t len)
{
	static const char allowed[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+=*._-";
	for (size_t i = 0; i < len; i++)
		name[i] = allowed[i % (sizeof allowed - 1)];
	name[len] = '\0';
}

static void
test_known_answers(void **state)
{
	char n255[KEYS_NAME_MAX + 1];
	const char *names[] = { "webchat", "A+=*._-z09", n255, "x" };
	const size_t nnames = sizeof names / sizeof names[0];
	char cmd[4096], line[1024], h[2 * KEYS_LEN + 1];
	size_t off;
	FILE *p;

	(void)state;
	long_name(n255, KEYS_NAME_MAX);
	if (system("/usr/bin/python3 -c 'import nacl.pwhash, nacl.hash' 2>/dev/null") != 0)
		fail_msg("PyNaCl is missing: install the declared dependency with "
		    "'apt-get install python3-nacl' (or run 'make deps' as root)");

	off = (size_t)snprintf(cmd, sizeof cmd, "%s ", REF);
	hex(cmd + off, ka_nonce, sizeof ka_nonce);
	off = strlen(cmd);
	off += (size_t)snprintf(cmd + off, sizeof cmd - off, " %d", KA_PORT);
	for (size_t i = 0; i < nnames; i++) {
		off = strlen(cmd);
		cmd[off++] = ' ';
		assert_true(off + 2 * strlen(names[i]) + 1 < sizeof cmd);
		hex(cmd + off, names[i], strlen(names[i]));
	}
	p = popen(cmd, "r");
	assert_non_null(p);
	for (size_t i = 0; i < nnames; i++) {
		char rk[2 * KEYS_LEN + 1], rd[2 * KEYS_LEN + 1], rl[2 * KEYS_LEN + 1];
		char rt[KEYS_TAG_TEXT_LEN + 8], t[KEYS_TAG_TEXT_LEN];
		struct keys *k;

		if (!fgets(line, sizeof line, p))
			fail_msg("keys_ref.py gave no answer for name %zu (see its error above)", i);
		assert_int_equal(sscanf(line, "%64s %64s %64s %50s", rk, rd, rl, rt), 4);
		k = keys_derive(names[i]);
		assert_non_null(k);
		hex(h, k->channel, KEYS_LEN);
		assert_string_equal(h, rk);
		hex(h, k->disc, KEYS_LEN);
		assert_string_equal(h, rd);
		hex(h, k->link, KEYS_LEN);
		assert_string_equal(h, rl);
		keys_tag_make_nonce(k, KA_PORT, ka_nonce, t);
		assert_string_equal(t, rt);
		assert_true(keys_tag_verify(k, KA_PORT, rt));
		keys_free(k);
	}
	assert_int_equal(pclose(p), 0);
}

static void
test_name_valid(void **state)
{
	char n[KEYS_NAME_MAX + 2];
	const char *forbidden = " /\\:;,!?@#$%^&()[]{}<>'\"`~|\t\n\x7f\xc3\xa9";

	(void)state;
	assert_false(keys_name_valid(NULL));
	assert_false(keys_name_valid(""));
	assert_true(keys_name_valid("a"));
	assert_true(keys_name_valid("+"));
	assert_true(keys_name_valid("ABCXYZabcxyz0189+=*._-"));
	long_name(n, KEYS_NAME_MAX);
	assert_true(keys_name_valid(n));
	long_name(n, KEYS_NAME_MAX + 1);
	assert_false(keys_name_valid(n));
	assert_null(keys_derive(n));
	assert_null(keys_derive(""));
	/* Each forbidden character is rejected alone, at the start, middle and end. */
	for (const char *c = forbidden; *c; c++) {
		char one[2] = { *c, 0 };
		char s[8];
		assert_false(keys_name_valid(one));
		snprintf(s, sizeof s, "%cab", *c);
		assert_false(keys_name_valid(s));
		snprintf(s, sizeof s, "a%cb", *c);
		assert_false(keys_name_valid(s));
		snprintf(s, sizeof s, "ab%c", *c);
		assert_false(keys_name_valid(s));
	}
	/* Every byte value: exactly the 68 allowed characters pass. */
	int allowed = 0;
	for (int c = 1; c < 256; c++) {
		char s[2] = { (char)c, 0 };
		allowed += keys_name_valid(s);
	}
	assert_int_equal(allowed, 26 + 26 + 10 + 6);
}

static void
test_tag_verify(void **state)
{
	const char *name = "webchat";
	char t[KEYS_TAG_TEXT_LEN], t2[KEYS_TAG_TEXT_LEN], s[64];
	struct keys *k = keys_derive(name);

	(void)state;
	assert_non_null(k);
	keys_tag_make(k, 8080, t);
	assert_int_equal(strlen(t), KEYS_TAG_TEXT_LEN - 1);
	assert_true(keys_tag_verify(k, 8080, t));
	keys_tag_make(k, 8080, t2);
	assert_string_not_equal(t, t2);      /* fresh nonce: advertisements are unlinkable */
	assert_true(keys_tag_verify(k, 8080, t2));

	/* Any one byte of the name changed: another channel key. */
	for (size_t i = 0; i < strlen(name); i++) {
		struct keys *o;
		strcpy(s, name);
		s[i] = s[i] == 'z' ? 'y' : 'z';
		assert_non_null(o = keys_derive(s));
		assert_false(keys_tag_verify(o, 8080, t));
		keys_free(o);
	}
	/* Any one bit of the port. */
	for (int b = 0; b < 16; b++)
		assert_false(keys_tag_verify(k, 8080 ^ (1u << b), t));
	/* Any character of t replaced by every other base64url character, which also covers
	 * non-canonical final characters that decode to the same bytes. */
	for (size_t i = 0; i < KEYS_TAG_TEXT_LEN - 1; i++) {
		for (const char *c = B64URL; *c; c++) {
			if (*c == t[i])
				continue;
			strcpy(s, t);
			s[i] = *c;
			assert_false(keys_tag_verify(k, 8080, s));
		}
	}
	keys_free(k);
}

static void
test_tag_garbage(void **state)
{
	char t[KEYS_TAG_TEXT_LEN], s[128];
	struct keys *k = keys_derive("garbage");

	(void)state;
	assert_non_null(k);
	keys_tag_make(k, 1, t);
	assert_true(keys_tag_verify(k, 1, t));
	assert_true(keys_tag_form_ok(t));
	assert_false(keys_tag_verify(k, 1, NULL));
	assert_false(keys_tag_verify(k, 1, ""));
	assert_false(keys_tag_verify(NULL, 1, t));
	/* Truncated, extended, padded, standard-alphabet, spaces, newline. */
	snprintf(s, sizeof s, "%.42s", t);
	assert_false(keys_tag_verify(k, 1, s));
	assert_false(keys_tag_form_ok(s));
	snprintf(s, sizeof s, "%sA", t);
	assert_false(keys_tag_verify(k, 1, s));
	snprintf(s, sizeof s, "%s=", t);
	assert_false(keys_tag_verify(k, 1, s));
	snprintf(s, sizeof s, "%s\n", t);
	assert_false(keys_tag_verify(k, 1, s));
	snprintf(s, sizeof s, " %.42s", t);
	assert_false(keys_tag_verify(k, 1, s));
	/* Any character of t replaced by any byte outside base64url (libsodium alone would
	 * take some bytes >= 0x80 for '-' or '_'). */
	for (size_t i = 0; i < KEYS_TAG_TEXT_LEN - 1; i++) {
		for (int c = 1; c < 256; c++) {
			if (strchr(B64URL, c))
				continue;
			strcpy(s, t);
			s[i] = (char)c;
			assert_false(keys_tag_verify(k, 1, s));
			assert_false(keys_tag_form_ok(s));
		}
	}
	/* Random bytes of every length up to 100: never verifies, never crashes (ASan). */
	for (size_t len = 0; len < 100; len++) {
		for (int r = 0; r < 20; r++) {
			randombytes_buf(s, len);
			s[len] = '\0';
			assert_false(keys_tag_verify(k, 1, s));
		}
	}
	keys_free(k);
}

static void
test_random_hex(void **state)
{
	char a[2 * 100 + 1], b[2 * 100 + 1];

	(void)state;
	memset(a, 'Z', sizeof a);
	keys_random_hex(a, 0);
	assert_string_equal(a, "");
	keys_random_hex(a, 8);
	assert_int_equal(strlen(a), 16);
	keys_random_hex(a, 100);
	keys_random_hex(b, 100);
	assert_int_equal(strlen(a), 200);
	assert_int_equal(strspn(a, "0123456789abcdef"), 200);
	assert_string_not_equal(a, b);
}

/* A stage given K (an open's key) gets the same subkeys as one that derived K. */
static void
test_from_channel_key(void **state)
{
	struct keys *d = keys_derive("webchat"), *k;

	(void)state;
	assert_non_null(d);
	assert_non_null(k = keys_from_channel_key(d->channel));
	assert_memory_equal(k->channel, d->channel, KEYS_LEN);
	assert_memory_equal(k->disc, d->disc, KEYS_LEN);
	assert_memory_equal(k->link, d->link, KEYS_LEN);
	keys_free(k);
	keys_free(d);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_name_valid),
		cmocka_unit_test(test_known_answers),
		cmocka_unit_test(test_tag_verify),
		cmocka_unit_test(test_tag_garbage),
		cmocka_unit_test(test_random_hex),
		cmocka_unit_test(test_from_channel_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
