/* show: what a terminal gets from nws-browse --format text when a host on the network
 * names itself with control bytes, C1 controls, bidirectional overrides or invalid UTF-8;
 * readable non-ASCII names stay readable; long names are cut whole. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "show.h"

static const struct dnssd_record plain = {
	.instance = "0123456789abcdef", .domain = "local", .host = "host-a.local",
	.address = "10.0.0.2", .interface = "eth0", .port = 40123, .family = AF_INET,
};

static const char *
line(const struct dnssd_record *r, const char *channel, int found)
{
	static char out[SHOW_LINE_MAX];
	size_t n = show_record(out, sizeof out, r, channel, found);
	assert_int_equal(n, strlen(out));
	return out;
}

static void
test_record_plain(void **state)
{
	struct dnssd_record r = plain;

	(void)state;
	assert_string_equal(line(&r, "chat", 1), "+ chat 10.0.0.2:40123 host-a.local eth0\n");
	r.family = AF_INET6;
	r.address = "fe80::1%eth0";
	r.port = 9;
	assert_string_equal(line(&r, NULL, 0), "- ? [fe80::1%eth0]:9 host-a.local eth0\n");
}

/* Every field is escaped, whoever wrote it: the host is the responder's own text. */
static void
test_record_hostile(void **state)
{
	struct dnssd_record r = plain;

	(void)state;
	r.host = "x\x1b[2J\x1b[H\rnws-browse: ok\b\b\x7f\xc2\x9b" "31m\xff\xc3(.local";
	r.interface = "eth\xe2\x80\xae" "0";
	r.address = "10.0.0.2\n+ chat 10.0.0.9";
	assert_string_equal(line(&r, "a\\b", 1),
	    "+ a\\x5cb 10.0.0.2\\x0a+ chat 10.0.0.9:40123 "
	    "x\\x1b[2J\\x1b[H\\x0dnws-browse: ok\\x08\\x08\\x7f\\xc2\\x9b31m\\xff\\xc3(.local "
	    "eth\\xe2\\x80\\xae0\n");
}

static void
test_record_utf8_kept(void **state)
{
	struct dnssd_record r = plain;

	(void)state;
	r.host = "K\xc3\xbc" "che.local";
	assert_string_equal(line(&r, "chat", 1), "+ chat 10.0.0.2:40123 K\xc3\xbc" "che.local eth0\n");
	r.host = "Wohnzimmer-Fernseher.local";
	assert_string_equal(line(&r, "chat", 0),
	    "- chat 10.0.0.2:40123 Wohnzimmer-Fernseher.local eth0\n");
}

/* A host as avahi gives it: its bytes shown, so UTF-8 reads as text and a control byte,
 * written \DDD by avahi, is escaped like any other; an escape avahi would not write is
 * kept as text. */
static void
test_record_avahi_host(void **state)
{
	struct dnssd_record r = plain;
	char host[1100], want[SHOW_LINE_MAX], *w;

	(void)state;
	r.host = "K\\195\\188che-\\027\\0912J\\155\\.x\\\\y\\000\\9\\256.local";
	assert_string_equal(line(&r, "chat", 1),
	    "+ chat 10.0.0.2:40123 K\xc3\xbc" "che-\\x1b[2J\\x9b.x\\x5cy\\x5c000\\x5c9\\x5c256.local eth0\n");
	/* Cut after SHOW_FIELD_MAX bytes of the name, not of avahi's text. */
	for (int i = 0; i < 270; i++)
		memcpy(host + 4 * i, "\\027", 4);
	strcpy(host + 4 * 270, ".local");
	r.host = host;
	w = want + sprintf(want, "+ chat 10.0.0.2:40123 ");
	for (int i = 0; i < SHOW_FIELD_MAX; i++)
		w += sprintf(w, "\\x1b");
	strcpy(w, " eth0\n");
	assert_string_equal(line(&r, "chat", 1), want);
}

/* A long field is cut to SHOW_FIELD_MAX bytes, never inside a character, and the rest of
 * the line still follows it. */
static void
test_record_long(void **state)
{
	struct dnssd_record r = plain;
	char host[400], want[SHOW_LINE_MAX], *w;

	(void)state;
	memset(host, 'a', sizeof host - 1);
	host[sizeof host - 1] = '\0';
	r.host = host;
	w = want + sprintf(want, "+ chat 10.0.0.2:40123 ");
	memset(w, 'a', SHOW_FIELD_MAX);
	strcpy(w + SHOW_FIELD_MAX, " eth0\n");
	assert_string_equal(line(&r, "chat", 1), want);

	/* "ü" across the cut is left out whole. */
	memcpy(host + SHOW_FIELD_MAX - 1, "\xc3\xbc", 2);
	w[SHOW_FIELD_MAX - 1] = '\0';
	strcat(want, " eth0\n");
	assert_string_equal(line(&r, "chat", 1), want);

	/* The longest escape: every byte a control; the line still ends whole. */
	memset(host, 0x1b, sizeof host - 1);
	w = want + sprintf(want, "+ chat 10.0.0.2:40123 ");
	for (int i = 0; i < SHOW_FIELD_MAX; i++)
		w += sprintf(w, "\\x1b");
	strcpy(w, " eth0\n");
	assert_string_equal(line(&r, "chat", 1), want);
	assert_true(strlen(want) < SHOW_LINE_MAX);
}

/* Cut to a small buffer: still one line, ending in a newline. */
static void
test_record_small_buffer(void **state)
{
	char out[10];

	(void)state;
	assert_int_equal(show_record(out, sizeof out, &plain, "chat", 1), 9);
	assert_string_equal(out, "+ chat 1\n");
	assert_int_equal(show_record(out, 1, &plain, "chat", 1), 0);
	assert_string_equal(out, "");

	/* Never inside an escape or a character: what does not fit whole is left out. */
	struct dnssd_record r = plain;
	char line[26];
	r.host = "\\027";
	show_record(line, sizeof line, &r, "chat", 1);
	assert_string_equal(line, "+ chat 10.0.0.2:40123  e\n");
	r.host = "\\195\\188";
	r.interface = "\xc3\xbc";
	show_record(line, 25, &r, "chat", 1);
	assert_string_equal(line, "+ chat 10.0.0.2:40123  \n");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_record_plain),
		cmocka_unit_test(test_record_hostile),
		cmocka_unit_test(test_record_utf8_kept),
		cmocka_unit_test(test_record_avahi_host),
		cmocka_unit_test(test_record_long),
		cmocka_unit_test(test_record_small_buffer),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
