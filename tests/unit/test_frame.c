/* frame: round trips JSON -> CBOR -> JSON and CBOR -> JSON -> CBOR for every action and
 * data kind, absent versus empty fields, malformed input of both encodings, action
 * peeking, and CBOR checked independently by Python's cbor2. Run from the repo root. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cbortext.h"
#include "frame.h"
#include "jsontext.h"

static const char *all_actions[] = {
	"open", "close", "found", "lost", "listening", "advertised", "connect", "disconnect",
	"broadcast", "message", "status", "linked", "unlinked", "error", "end",
	"custom-thing",
};
#define NALL (sizeof all_actions / sizeof all_actions[0])

/* Every data kind as a JSON client would send it ("data" and what follows it). */
static const char *all_data[] = {
	"",
	",\"data\":\"hello\"",
	",\"data\":\"\"",
	",\"data\":\"h \xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 \\\"q\\\" \\\\ \\n\\t\\u0001\"",
	",\"data\":\"AAEA/w==\",\"encoding\":\"base64\"",
	",\"data\":\"\",\"encoding\":\"base64\"",
	",\"data\":42",
	",\"data\":-1.5e-7",
	",\"data\":0.1",
	",\"data\":12345678901234567890123",
	",\"data\":{\"a\":{\"b\":[1,2.50,{\"c\":null}]},\"u\":\"\xc3\xbc\xf0\x9f\x98\x80\"}",
	",\"data\":[]",
	",\"data\":{}",
	",\"data\":true",
	",\"data\":false",
	",\"data\":null",
};
#define NDATA (sizeof all_data / sizeof all_data[0])

static const char all_fields[] =
    ",\"instance\":\"nws 1\",\"host\":\"h.local\",\"address\":\"10.0.0.1\",\"port\":4000,"
    "\"path\":\"/p\",\"interface\":\"veth0\",\"domain\":\"local\",\"node\":\"n1\",\"code\":69,"
    "\"reason\":\"why \xe2\x80\x94 because\"";

static void
decode_ok(struct frame *f, enum frame_format fmt, const void *p, size_t n)
{
	char err[256] = "";
	int rc = frame_decode(f, fmt, p, n, err, sizeof err);
	if (rc != 0)
		fail_msg("decode failed: %s for [%.*s]", err, (int)(n > 200 ? 200 : n),
		    (const char *)p);
}

/* Encodes f in fmt into a fresh buffer. */
static void
encode_ok(const struct frame *f, enum frame_format fmt, struct buf *b)
{
	buf_init(b, 0);
	assert_int_equal(frame_encode(f, fmt, b), 0);
}

/* JSON text -> CBOR -> JSON text, checking the CBOR -> JSON -> CBOR leg on the way. */
static void
json_round_trip(const char *json)
{
	struct frame f;
	struct buf c1, j, c2;

	decode_ok(&f, FORMAT_JSON, json, strlen(json));
	encode_ok(&f, FORMAT_CBOR, &c1);
	frame_clear(&f);
	decode_ok(&f, FORMAT_CBOR, buf_data(&c1), c1.len);
	encode_ok(&f, FORMAT_JSON, &j);
	frame_clear(&f);
	assert_int_equal(j.len, strlen(json) + 1);
	assert_memory_equal(buf_data(&j), json, strlen(json));
	assert_int_equal(buf_data(&j)[j.len - 1], '\n');

	decode_ok(&f, FORMAT_JSON, buf_data(&j), j.len);
	encode_ok(&f, FORMAT_CBOR, &c2);
	frame_clear(&f);
	assert_int_equal(c1.len, c2.len);
	assert_memory_equal(buf_data(&c1), buf_data(&c2), c1.len);
	buf_clear(&c1);
	buf_clear(&j);
	buf_clear(&c2);
}

static void
test_round_trip_every_action_and_data(void **state)
{
	char json[1024];
	(void)state;
	for (size_t a = 0; a < NALL; a++) {
		for (size_t d = 0; d < NDATA; d++) {
			snprintf(json, sizeof json, "{\"action\":\"%s\",\"channel\":\"chat\","
			    "\"source\":\"0123456789abcdef\",\"target\":\"\"%s%s}", all_actions[a],
			    all_data[d], d % 2 ? all_fields : "");
			json_round_trip(json);
		}
		snprintf(json, sizeof json, "{\"action\":\"%s\"}", all_actions[a]);
		json_round_trip(json);
	}
}

static void
test_decoded_values(void **state)
{
	struct frame f;
	const char *in = "{\"action\":\"found\",\"channel\":\"c\",\"port\":65535,\"code\":0,"
	    "\"data\":\"AGEA/w==\",\"encoding\":\"base64\",\"host\":\"\"}";
	(void)state;
	decode_ok(&f, FORMAT_JSON, in, strlen(in));
	assert_int_equal(f.action, ACTION_FOUND);
	assert_null(f.action_name);
	assert_string_equal(frame_action_name(&f), "found");
	assert_string_equal(f.channel, "c");
	assert_string_equal(f.host, "");
	assert_null(f.source);
	assert_null(f.target);
	assert_null(f.reason);
	assert_int_equal(f.port, 65535);
	assert_int_equal(f.code, 0);
	assert_int_equal(f.data_kind, DATA_BYTES);
	assert_int_equal(f.data_len, 4);
	assert_memory_equal(f.data, "\0a\0\xff", 4);
	frame_clear(&f);
	assert_null(f.channel);
	assert_int_equal(f.port, -1);

	in = "{\"action\":\"Open\",\"data\":[1, 2,\n 3] }\n";
	decode_ok(&f, FORMAT_JSON, in, strlen(in));
	assert_int_equal(f.action, ACTION_UNKNOWN);
	assert_string_equal(frame_action_name(&f), "Open");
	assert_int_equal(f.data_kind, DATA_JSON);
	assert_string_equal((char *)f.data, "[1,2,3]");
	assert_int_equal(f.port, -1);
	assert_int_equal(f.code, -1);
	frame_clear(&f);
}

/* Bytes with NUL and every byte value, and text data made by a tool, both ways. */
static void
test_bytes_and_text_built(void **state)
{
	unsigned char all[256];
	struct frame f, g;
	struct buf b;
	(void)state;
	for (int i = 0; i < 256; i++)
		all[i] = (unsigned char)i;
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++) {
		for (size_t n = 0; n <= 256; n += 37) {
			frame_init(&f);
			f.action = ACTION_MESSAGE;
			assert_int_equal(frame_set_data(&f, DATA_BYTES, all + 256 - n, n), 0);
			encode_ok(&f, (enum frame_format)fmt, &b);
			decode_ok(&g, (enum frame_format)fmt, buf_data(&b), b.len);
			assert_int_equal(g.data_kind, DATA_BYTES);
			assert_int_equal(g.data_len, n);
			if (n)
				assert_memory_equal(g.data, all + 256 - n, n);
			frame_clear(&f);
			frame_clear(&g);
			buf_clear(&b);
		}
		frame_init(&f);
		f.action = ACTION_BROADCAST;
		assert_int_equal(frame_set_data(&f, DATA_TEXT, "", 0), 0);
		assert_int_equal(frame_set(&f.channel, ""), 0);
		encode_ok(&f, (enum frame_format)fmt, &b);
		decode_ok(&g, (enum frame_format)fmt, buf_data(&b), b.len);
		assert_int_equal(g.data_kind, DATA_TEXT);
		assert_int_equal(g.data_len, 0);
		assert_string_equal((char *)g.data, "");
		assert_string_equal(g.channel, "");
		assert_null(g.source);
		frame_clear(&f);
		frame_clear(&g);
		buf_clear(&b);
	}
}

static void
test_json_output_form(void **state)
{
	struct frame f;
	struct buf b;
	static const char want[] = "{\"action\":\"message\",\"channel\":\"c\",\"source\":\"s\","
	    "\"target\":\"t\",\"data\":\"\xc3\xa9/\\u001f\",\"instance\":\"i\",\"host\":\"h\","
	    "\"address\":\"a\",\"port\":1,\"path\":\"/\",\"interface\":\"if\",\"domain\":\"d\","
	    "\"node\":\"n\",\"code\":2,\"reason\":\"r\"}\n";
	(void)state;
	frame_init(&f);
	/* Set in an order unlike the output's, which must not matter. */
	frame_set(&f.reason, "r");
	frame_set(&f.node, "n");
	frame_set(&f.domain, "d");
	frame_set(&f.interface, "if");
	frame_set(&f.path, "/");
	frame_set(&f.address, "a");
	frame_set(&f.host, "h");
	frame_set(&f.instance, "i");
	frame_set(&f.target, "t");
	frame_set(&f.source, "s");
	frame_set(&f.channel, "c");
	f.port = 1;
	f.code = 2;
	f.action = ACTION_MESSAGE;
	frame_set_data(&f, DATA_TEXT, "\xc3\xa9/\x1f", 4);
	encode_ok(&f, FORMAT_JSON, &b);
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(buf_data(&b), want, b.len);
	buf_clear(&b);
	frame_clear(&f);
}

/* Known CBOR bytes (RFC 8949 encoding by hand): tag 262 around a byte string of JSON. */
static void
test_cbor_known_bytes(void **state)
{
	static const unsigned char want[] = {
		0xa2, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x69, 'b', 'r', 'o', 'a', 'd', 'c', 'a',
		's', 't', 0x64, 'd', 'a', 't', 'a', 0xd9, 0x01, 0x06, 0x47, '{', '"', 'a', '"',
		':', '1', '}',
	};
	static const unsigned char bytes[] = {
		0xa3, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x64, 'o', 'p', 'e', 'n', 0x64, 'p', 'o',
		'r', 't', 0x19, 0x1f, 0x90, 0x64, 'd', 'a', 't', 'a', 0x42, 0x00, 0xff,
	};
	const char *in = "{\"action\":\"broadcast\",\"data\":{\"a\": 1}}";
	struct frame f;
	struct buf b;
	(void)state;
	decode_ok(&f, FORMAT_JSON, in, strlen(in));
	encode_ok(&f, FORMAT_CBOR, &b);
	assert_int_equal(b.len, sizeof want);
	assert_memory_equal(buf_data(&b), want, sizeof want);
	frame_clear(&f);
	buf_clear(&b);

	/* Embedded JSON that is a string is just that text. */
	static const unsigned char es[] = { 0xa2, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x61, 'x',
		0x64, 'd', 'a', 't', 'a', 0xd9, 0x01, 0x06, 0x49, ' ', '"', '\\', 'u', '0', '0', 'e',
		'9' };
	unsigned char es2[sizeof es + 1];
	memcpy(es2, es, sizeof es);
	es2[sizeof es] = '"';
	decode_ok(&f, FORMAT_CBOR, es2, sizeof es2);
	assert_int_equal(f.data_kind, DATA_TEXT);
	assert_string_equal((char *)f.data, "\xc3\xa9");
	frame_clear(&f);

	decode_ok(&f, FORMAT_CBOR, bytes, sizeof bytes);
	assert_int_equal(f.action, ACTION_OPEN);
	assert_int_equal(f.port, 8080);
	assert_int_equal(f.data_kind, DATA_BYTES);
	assert_int_equal(f.data_len, 2);
	assert_memory_equal(f.data, "\0\xff", 2);
	encode_ok(&f, FORMAT_JSON, &b);
	static const char j[] = "{\"action\":\"open\",\"data\":\"AP8=\",\"encoding\":\"base64\","
	    "\"port\":8080}\n";
	assert_int_equal(b.len, strlen(j));
	assert_memory_equal(buf_data(&b), j, b.len);
	frame_clear(&f);
	buf_clear(&b);
}

/* Unknown text keys of any (definite) value are ignored. */
static void
test_cbor_unknown_keys(void **state)
{
	static const unsigned char in[] = {
		0xa4,
		0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x67, 'm', 'e', 's', 's', 'a', 'g', 'e',
		0x63, 'z', 'z', 'z', 0x82, 0x01, 0xa1, 0x01, 0x02,   /* unknown key, any value */
		0x62, 'z', 'y', 0xd8, 0x20, 0x61, 'x',
		0x64, 'd', 'a', 't', 'a', 0x43, 0x00, 0x01, 0x02,
	};
	struct frame f;
	(void)state;
	decode_ok(&f, FORMAT_CBOR, in, sizeof in);
	assert_int_equal(f.action, ACTION_MESSAGE);
	assert_int_equal(f.data_kind, DATA_BYTES);
	assert_int_equal(f.data_len, 3);
	assert_memory_equal(f.data, "\0\1\2", 3);
	frame_clear(&f);
	assert_int_equal(frame_peek_action(FORMAT_CBOR, in, sizeof in), ACTION_MESSAGE);

	const char *j = "{\"zzz\":{\"action\":\"open\"},\"channel\":\"c\",\"action\":\"close\","
	    "\"extra\":[1,{\"a\":\"}\"}]}";
	decode_ok(&f, FORMAT_JSON, j, strlen(j));
	assert_int_equal(f.action, ACTION_CLOSE);
	assert_string_equal(f.channel, "c");
	frame_clear(&f);
}

static void
expect_error(enum frame_format fmt, const void *p, size_t n, const char *why)
{
	struct frame f;
	char err[256] = "";
	if (frame_decode(&f, fmt, p, n, err, sizeof err) != -1)
		fail_msg("accepted [%.*s]", (int)(n > 100 ? 100 : n), (const char *)p);
	/* The frame is left freed: nothing to free and nothing leaked. */
	assert_null(f.channel);
	assert_null(f.data);
	assert_null(f.action_name);
	if (!strstr(err, why))
		fail_msg("error \"%s\" does not mention \"%s\"", err, why);
}

static void
test_json_malformed(void **state)
{
	static const struct {
		const char *in, *why;
	} bad[] = {
		{ "{\"action\":\"open\",\"port\":\"x\"}", "\"port\"" },
		{ "{\"action\":\"open\",\"port\":70000}", "\"port\"" },
		{ "{\"action\":\"open\",\"port\":-1}", "\"port\"" },
		{ "{\"action\":\"open\",\"port\":1.5}", "\"port\"" },
		{ "{\"action\":\"open\",\"code\":true}", "\"code\"" },
		{ "{\"action\":\"open\",\"channel\":5}", "\"channel\"" },
		{ "{\"action\":\"open\",\"channel\":null}", "\"channel\"" },
		{ "{\"action\":\"open\",\"reason\":[]}", "\"reason\"" },
		{ "{\"action\":5}", "\"action\"" },
		{ "{\"action\":null}", "\"action\"" },
		{ "{\"channel\":\"c\"}", "\"action\" is missing" },
		{ "{}", "\"action\" is missing" },
		{ "[{\"action\":\"open\"}]", "object" },
		{ "\"open\"", "object" },
		{ "{\"action\":\"open\",\"channel\":\"\xff\"}", "UTF-8" },
		{ "{\"action\":\"open\",\"channel\":\"\xc0\xaf\"}", "UTF-8" },
		{ "{\"action\":\"open\",\"data\":\"\xed\xa0\x80\"}", "UTF-8" },
		{ "{\"action\":\"open\",\"data\":\"\xf4\x90\x80\x80\"}", "UTF-8" },
		{ "{\"action\":\"open\",\"data\":\"\xe2\x82\"}", "UTF-8" },
		{ "{\"action\":\"\xfe\"}", "UTF-8" },
		{ "{\"action\":\"open\",\"data\":\"a\\u0000b\"}", "NUL" },
		{ "{\"action\":\"op\\u0000en\"}", "NUL" },
		{ "{\"action\":\"open\",\"data\":{\"k\":\"\\u0000\"}}", "NUL" },
		{ "{\"action\":\"open\",\"data\":\"\\ud800\"}", "surrogate" },
		{ "{\"action\":\"open\",\"data\":\"!!\",\"encoding\":\"base64\"}", "base64" },
		{ "{\"action\":\"open\",\"data\":\"AAE\",\"encoding\":\"base64\"}", "base64" },
		{ "{\"action\":\"open\",\"data\":\"AA==AA==\",\"encoding\":\"base64\"}", "base64" },
		{ "{\"action\":\"open\",\"data\":\"AA\",\"encoding\":\"hex\"}", "encoding" },
		{ "{\"action\":\"open\",\"data\":5,\"encoding\":\"base64\"}", "string" },
		{ "{\"action\":\"open\",\"action\":\"close\"}", "duplicate" },
		{ "{\"action\":\"open\"} {}", "JSON" },
		{ "{\"action\":\"open\"", "JSON" },
		{ "{\"action\":\"open\",}", "JSON" },
		{ "{\"action\":\"open\",\"data\":1e400}", "JSON" },
		{ "{\"action\":\"open\",\"data\":01}", "JSON" },
		{ "", "empty" },
	};
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(FORMAT_JSON, bad[i].in, strlen(bad[i].in), bad[i].why);
	/* A raw NUL byte inside a string, and one outside. */
	expect_error(FORMAT_JSON, "{\"action\":\"o\0pen\"}", 18, "JSON");
	expect_error(FORMAT_JSON, "{\"action\":\"open\"}\0", 18, "JSON");
}

static void
test_json_deep_nesting(void **state)
{
	size_t n = 1u << 20;
	char *s = malloc(n + 1);
	(void)state;
	assert_non_null(s);
	memset(s, '[', n);
	s[n] = 0;
	expect_error(FORMAT_JSON, s, n, "JSON");
	assert_int_equal(jsontext_check(s, n, 1, NULL, 0), -1);
	assert_int_equal(frame_peek_action(FORMAT_JSON, s, n), ACTION_UNKNOWN);
	/* The same depth inside an object, after a valid action. */
	memcpy(s, "{\"action\":\"open\",\"data\":", 24);
	expect_error(FORMAT_JSON, s, n, "JSON");
	assert_int_equal(frame_peek_action(FORMAT_JSON, s, n), ACTION_OPEN);
	/* A frame set by a tool may not carry such JSON either. */
	struct frame f;
	frame_init(&f);
	assert_int_equal(frame_set_data(&f, DATA_JSON, s + 24, n - 24), -1);
	assert_int_equal(f.data_kind, DATA_NONE);
	free(s);
}

static void
test_cbor_malformed(void **state)
{
	static const struct {
		const char *in;
		size_t n;
		const char *why;
	} bad[] = {
#define B(s, why) { s, sizeof s - 1, why }
		B("\xa1\x66" "action" "\x44open", "\"action\" must be a text"),
		B("\xa1\x66" "action" "\x01", "\"action\" must be a text"),
		B("\xa1\x67" "channel" "\x61" "c", "\"action\" is missing"),
		B("\xa0", "\"action\" is missing"),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\x05", "\"channel\""),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\xf6", "\"channel\""),
		B("\xa2\x66" "action" "\x64open\x64port\x61x", "\"port\""),
		B("\xa2\x66" "action" "\x64open\x64port\x20", "\"port\""),
		B("\xa2\x66" "action" "\x64open\x64port\x1a\x00\x01\x00\x00", "\"port\""),
		B("\xa2\x66" "action" "\x64open\x64port\xf9\x3c\x00", "\"port\""),
		B("\xa2\x66" "action" "\x64open\x64" "code" "\x1b\xff\xff\xff\xff\xff\xff\xff\xff",
		    "\"code\""),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\x05", "\"data\""),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\xa0", "\"data\""),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\xd8\x20\x61x", "\"data\""),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\xd9\x01\x06\x61" "1", "tag 262"),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\xd9\x01\x06\x42{x", "not JSON"),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\xd9\x01\x06\x41\x00", "not JSON"),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\x61\xff", "UTF-8"),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\x62\xc0\x80", "UTF-8"),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\x63\xed\xbf\xbf", "UTF-8"),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\x62\xf0\x9f", "UTF-8"),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\x7f\x61\xe2\x62\x82\xac\xff", "indefinite"),
		B("\xa1\x66" "action" "\x62\xfe\xff", "UTF-8"),
		B("\xa2\x66" "action" "\x64open\x67" "channel" "\x63" "a\0b", "NUL"),
		B("\xa2\x66" "action" "\x64open\x66" "action" "\x65" "close", "twice"),
		B("\x81\xa0", "map"),
		B("\x01", "map"),
		B("\xa1\x66" "action" "\x64open\x00", "after"),
		B("\xa1\x66" "action" "\x64open\xa0", "after"),
		B("\xbc", "malformed"),
		B("\xa1\x66" "action" "\x7c", "malformed"),
		B("\xbf\x66" "action" "\x64open\x01\xff", "indefinite"),
		B("\xbf\x66" "action" "\xff", "indefinite"),
		B("\xa1\x66" "action" "\x7f\x01\xff", "indefinite"),
		B("\xa1\x66" "action" "\x7f\x7f\xff\xff", "indefinite"),
		B("\xa1\x66" "action" "\x7f\x41x\xff", "indefinite"),
		B("\xa1\x66" "action" "\xff", "malformed"),
		B("\xa1\x66" "action" "\xf8\x10", "malformed"),
		B("\xa1\x66" "action" "\x1f", "malformed"),
		B("\xa1\x66" "action" "\xdf\x00", "malformed"),
#undef B
	};
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(FORMAT_CBOR, bad[i].in, bad[i].n, bad[i].why);
}

/* nws(7) ROUTING: a frame is decoded strictly, so no two readers of its bytes can see
 * different fields: indefinite lengths, duplicate keys and non-text keys are refused, and
 * peek finds no action where decode would refuse the map's shape. */
static void
test_cbor_strict(void **state)
{
	static const struct {
		const char *in;
		size_t n;
		const char *why;
	} bad[] = {
#define B(s, why) { s, sizeof s - 1, why }
		/* indefinite map, key, text value, byte value, value inside an unknown key */
		B("\xbf\x66" "action" "\x64open\xff", "indefinite"),
		B("\xa1\x7f\x66" "action" "\xff\x64open", "indefinite"),
		B("\xa1\x66" "action" "\x7f\x64open\xff", "indefinite"),
		B("\xa2\x66" "action" "\x64open\x64" "data" "\x5f\x41x\xff", "indefinite"),
		B("\xa2\x66" "action" "\x64open\x61z\x9f\x01\xff", "indefinite"),
		B("\xa2\x66" "action" "\x64open\x61z\x81\xbf\xff", "indefinite"),
		/* duplicate keys: ours, and unknown ones */
		B("\xa3\x66" "action" "\x69" "broadcast" "\x67" "channel" "\x61" "a"
		  "\x67" "channel" "\x61" "b", "\"channel\" appears twice"),
		B("\xa3\x66" "action" "\x64open\x61z\x01\x61z\x02", "twice"),
		B("\xa3\x66" "action" "\x64open\x66" "target" "\x61t\x66" "target" "\x61t",
		  "twice"),
		/* keys that are not text */
		B("\xa2\x66" "action" "\x64open\x01\x61x", "text"),
		B("\xa2\x66" "action" "\x64open\x46" "source" "\x61x", "text"),
#undef B
	};
	(void)state;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		expect_error(FORMAT_CBOR, bad[i].in, bad[i].n, bad[i].why);
	/* The shapes peek must not read an action from. */
	static const unsigned char indef_map[] = "\xbf\x66" "action" "\x64open\xff";
	static const unsigned char chunked_key[] = "\xa1\x7f\x66" "action" "\xff\x64open";
	static const unsigned char int_key[] = "\xa2\x01\x01\x66" "action" "\x64open";
	assert_int_equal(frame_peek_action(FORMAT_CBOR, indef_map, sizeof indef_map - 1),
	    ACTION_UNKNOWN);
	assert_int_equal(frame_peek_action(FORMAT_CBOR, chunked_key, sizeof chunked_key - 1),
	    ACTION_UNKNOWN);
	assert_int_equal(frame_peek_action(FORMAT_CBOR, int_key, sizeof int_key - 1),
	    ACTION_UNKNOWN);

	/* More keys than any frame has: refused, so the duplicate check stays cheap. */
	struct buf b;
	buf_init(&b, 0);
	unsigned char h[] = { 0xb8, 65 };
	buf_append(&b, h, sizeof h);
	buf_append(&b, "\x66" "action" "\x64open", 12);
	for (int i = 0; i < 64; i++) {
		unsigned char kv[] = { 0x62, (unsigned char)('a' + i / 26), (unsigned char)('a' + i % 26), 0x00 };
		buf_append(&b, kv, sizeof kv);
	}
	expect_error(FORMAT_CBOR, buf_data(&b), b.len, "keys");
	buf_clear(&b);
}

static void
test_cbor_truncated_and_deep(void **state)
{
	const char *j = "{\"action\":\"broadcast\",\"channel\":\"c\",\"data\":{\"a\":[1,2]},"
	    "\"port\":300,\"reason\":\"\xf0\x9f\x98\x80\"}";
	struct frame f;
	struct buf b;
	(void)state;
	decode_ok(&f, FORMAT_JSON, j, strlen(j));
	encode_ok(&f, FORMAT_CBOR, &b);
	frame_clear(&f);
	/* Every proper prefix is an error, never a crash or a read past the end. */
	for (size_t n = 0; n < b.len; n++) {
		unsigned char *cut = malloc(n ? n : 1);
		size_t il, need = 0;
		memcpy(cut, buf_data(&b), n);
		expect_error(FORMAT_CBOR, cut, n, n ? "truncated" : "empty");
		assert_int_equal(cbortext_item_len(cut, n, 0, 0, &il, &need), 0);
		assert_true(need > n && need <= b.len);
		free(cut);
	}
	buf_clear(&b);

	/* 100 nested arrays under an unknown key: past the depth bound, refused. */
	unsigned char deep[104] = { 0xa1, 0x61, 'z' };
	memset(deep + 3, 0x81, 100);
	deep[103] = 0x01;
	size_t n = sizeof deep;
	expect_error(FORMAT_CBOR, deep, n, "malformed");
	/* 60 deep is fine (and ignored). */
	static const unsigned char head[] = "\xa2\x66" "action" "\x64open\x61z";
	unsigned char ok[sizeof head + 61];
	memcpy(ok, head, sizeof head - 1);
	memset(ok + sizeof head - 1, 0x81, 60);
	ok[sizeof head - 1 + 60] = 0x01;
	decode_ok(&f, FORMAT_CBOR, ok, sizeof head + 60);
	assert_int_equal(f.action, ACTION_OPEN);
	frame_clear(&f);
}

/* A map declaring far more items than can follow: bounded, no huge allocation. */
static void
test_cbor_length_bounds(void **state)
{
	static const unsigned char huge_map[] = { 0xbb, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff };
	static const unsigned char huge_str[] = { 0xa1, 0x66, 'a', 'c', 't', 'i', 'o', 'n',
		0x7b, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	size_t il, need;
	(void)state;
	expect_error(FORMAT_CBOR, huge_map, sizeof huge_map, "truncated");
	expect_error(FORMAT_CBOR, huge_str, sizeof huge_str, "truncated");
	assert_int_equal(cbortext_item_len(huge_map, sizeof huge_map, 1u << 24, 0, &il, &need),
	    -2);
	assert_int_equal(cbortext_item_len(huge_str, sizeof huge_str, 1u << 24, 0, &il, &need),
	    -2);
	assert_int_equal(frame_peek_action(FORMAT_CBOR, huge_map, sizeof huge_map),
	    ACTION_UNKNOWN);
	assert_int_equal(frame_peek_action(FORMAT_CBOR, huge_str, sizeof huge_str),
	    ACTION_UNKNOWN);

	/* An unknown key holding a million items is skipped, never built in memory. */
	size_t n = 1u << 20;
	unsigned char *m = calloc(1, n + 64);
	static const unsigned char head[] = { 0xa2, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x64,
		'o', 'p', 'e', 'n', 0x61, 'z', 0x9a, 0x00, 0x10, 0x00, 0x00 };
	memcpy(m, head, sizeof head);
	struct frame f;
	char err[128];
	assert_int_equal(frame_decode(&f, FORMAT_CBOR, m, sizeof head + n, err, sizeof err), 0);
	assert_int_equal(f.action, ACTION_OPEN);
	frame_clear(&f);
	free(m);
}

static void
test_peek(void **state)
{
	static const struct {
		const char *in;
		enum frame_action a;
	} js[] = {
		{ "{\"action\":\"open\",\"channel\":\"c\"}\n", ACTION_OPEN },
		{ "{\"action\":\"unlinked\"}", ACTION_UNLINKED },
		{ "{ \"action\" : \"close\" }", ACTION_CLOSE },
		{ "{\"channel\":\"c\",\"action\":\"found\"}", ACTION_FOUND },
		{ "{\"data\":{\"action\":\"open\"},\"action\":\"lost\"}", ACTION_LOST },
		{ "{\"data\":\"\\\"action\\\":\\\"open\\\"\",\"action\":\"error\"}", ACTION_ERROR },
		{ "{\"data\":\"{\\\"action\\\":\\\"open\\\"}\"}", ACTION_UNKNOWN },
		{ "{\"action\":\"op\\u0065n\"}", ACTION_OPEN },
		{ "{\"\\u0061ction\":\"close\"}", ACTION_CLOSE },
		{ "{\"action\":\"opener\"}", ACTION_UNKNOWN },
		{ "{\"action\":\"ope", ACTION_UNKNOWN },
		{ "{\"action\":5}", ACTION_UNKNOWN },
		{ "{\"channel\":\"c\"}", ACTION_UNKNOWN },
		{ "{\"", ACTION_UNKNOWN },
		{ "[", ACTION_UNKNOWN },
		{ "", ACTION_UNKNOWN },
	};
	(void)state;
	for (size_t i = 0; i < sizeof js / sizeof js[0]; i++)
		if (frame_peek_action(FORMAT_JSON, js[i].in, strlen(js[i].in)) != js[i].a)
			fail_msg("peek of %s", js[i].in);
	/* Every encoded action peeks as itself in both formats. */
	for (size_t a = 0; a < NALL; a++) {
		char j[256];
		struct frame f;
		struct buf b;
		snprintf(j, sizeof j, "{\"channel\":\"c\",\"data\":{\"action\":\"x\"},\"action\":"
		    "\"%s\"}", all_actions[a]);
		enum frame_action want = frame_action_parse(all_actions[a]);
		assert_int_equal(frame_peek_action(FORMAT_JSON, j, strlen(j)), want);
		decode_ok(&f, FORMAT_JSON, j, strlen(j));
		for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++) {
			encode_ok(&f, (enum frame_format)fmt, &b);
			assert_int_equal(frame_peek_action((enum frame_format)fmt, buf_data(&b),
			    b.len), want);
			assert_int_equal(frame_peek_action(FORMAT_UNKNOWN, buf_data(&b), b.len), want);
			buf_clear(&b);
		}
		frame_clear(&f);
	}
	/* CBOR with action after other keys holding values of every kind. */
	static const unsigned char c[] = {
		0xa4, 0x61, 'z', 0x82, 0x01, 0x02, 0x64, 'd', 'a', 't', 'a', 0xd9, 0x01, 0x06, 0x42,
		'[', ']', 0x61, 'a', 0x00, 0x66, 'a', 'c', 't', 'i', 'o', 'n', 0x66,
		'l', 'i', 'n', 'k', 'e', 'd',
	};
	assert_int_equal(frame_peek_action(FORMAT_CBOR, c, sizeof c), ACTION_LINKED);
	for (size_t n = 0; n < sizeof c; n++)
		assert_int_equal(frame_peek_action(FORMAT_CBOR, c, n), ACTION_UNKNOWN);
}

static void
test_detect_and_names(void **state)
{
	(void)state;
	assert_int_equal(frame_detect('{'), FORMAT_JSON);
	assert_int_equal(frame_detect('\n'), FORMAT_JSON);
	assert_int_equal(frame_detect(' '), FORMAT_JSON);
	assert_int_equal(frame_detect(0xa0), FORMAT_CBOR);
	assert_int_equal(frame_detect(0xbf), FORMAT_CBOR);
	assert_int_equal(frame_detect(0x9f), FORMAT_UNKNOWN);
	assert_int_equal(frame_detect(0xc0), FORMAT_UNKNOWN);
	assert_int_equal(frame_detect('['), FORMAT_UNKNOWN);
	assert_int_equal(frame_detect(0), FORMAT_UNKNOWN);
	for (size_t a = 0; a + 1 < NALL; a++) {
		struct frame f;
		frame_init(&f);
		f.action = frame_action_parse(all_actions[a]);
		assert_int_equal(f.action, (enum frame_action)(a + 1));
		assert_string_equal(frame_action_name(&f), all_actions[a]);
	}
	assert_int_equal(frame_action_parse("OPEN"), ACTION_UNKNOWN);
	assert_int_equal(frame_action_parse(NULL), ACTION_UNKNOWN);
}

/* frame_encode refuses what cannot be carried and leaves the output as it was. */
static void
test_encode_refusals(void **state)
{
	struct frame f;
	struct buf b;
	(void)state;
	buf_init(&b, 64);
	assert_int_equal(buf_append(&b, "xy", 2), 0);
	frame_init(&f);
	assert_int_equal(frame_encode(&f, FORMAT_JSON, &b), -1);   /* no action at all */
	f.action = ACTION_OPEN;
	frame_set(&f.channel, "bad \xff");
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++)
		assert_int_equal(frame_encode(&f, (enum frame_format)fmt, &b), -1);
	frame_set(&f.channel, "ok");
	f.port = 65536;
	assert_int_equal(frame_encode(&f, FORMAT_JSON, &b), -1);
	f.port = -1;
	frame_set_data(&f, DATA_TEXT, "a\0b", 3);
	assert_int_equal(frame_encode(&f, FORMAT_CBOR, &b), -1);
	char big[100];
	memset(big, 'x', sizeof big - 1);
	big[sizeof big - 1] = 0;
	frame_set_data(&f, DATA_TEXT, big, strlen(big));
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++)
		assert_int_equal(frame_encode(&f, (enum frame_format)fmt, &b), -1);   /* bound */
	assert_int_equal(b.len, 2);
	assert_memory_equal(buf_data(&b), "xy", 2);
	frame_set_data(&f, DATA_NONE, NULL, 0);
	assert_int_equal(f.data_kind, DATA_NONE);
	assert_int_equal(frame_encode(&f, FORMAT_JSON, &b), 0);
	static const char want[] = "xy{\"action\":\"open\",\"channel\":\"ok\"}\n";
	assert_int_equal(b.len, strlen(want));
	assert_memory_equal(buf_data(&b), want, b.len);
	frame_clear(&f);
	buf_clear(&b);
}

static void
test_set_data_json(void **state)
{
	struct frame f;
	const char *in = " { \"a\" : [ 1 , \" s p \\\" \" ] ,\n\"b\":null } ";
	(void)state;
	frame_init(&f);
	assert_int_equal(frame_set_data(&f, DATA_JSON, in, strlen(in)), 0);
	assert_string_equal((char *)f.data, "{\"a\":[1,\" s p \\\" \"],\"b\":null}");
	assert_int_equal(f.data_len, strlen((char *)f.data));
	assert_int_equal(frame_set_data(&f, DATA_JSON, "{", 1), -1);
	assert_int_equal(frame_set_data(&f, DATA_JSON, "1 2", 3), -1);
	assert_string_equal((char *)f.data, "{\"a\":[1,\" s p \\\" \"],\"b\":null}");
	frame_clear(&f);
}

/* Our CBOR against an independent implementation: Python's cbor2 decodes what we write
 * to the same map, and what cbor2 writes decodes here to the same frame. */
static void
test_cbor2_interop(void **state)
{
	static const char py[] =
	    "/usr/bin/python3 -c '\n"
	    "import sys, cbor2, json\n"
	    "m = cbor2.loads(bytes.fromhex(sys.stdin.readline()))\n"
	    "d = m[\"data\"]\n"
	    "assert isinstance(d, cbor2.CBORTag) and d.tag == 262, d\n"
	    "m[\"data\"] = json.loads(d.value)\n"
	    "print(json.dumps(m, sort_keys=True, ensure_ascii=True))\n"
	    "m[\"data\"] = b\"\\x00\\x01\"\n"
	    "m[\"zzz\"] = [1.5, None]\n"
	    "print(cbor2.dumps(m).hex())\n"
	    "'";
	const char *j = "{\"action\":\"broadcast\",\"channel\":\"\xc3\xa9\",\"port\":7,"
	    "\"data\":{\"k\":[1,\"\xf0\x9f\x98\x80\",null]}}";
	struct frame f;
	struct buf b;
	char cmd[2048], line[4096];
	(void)state;
	if (system("/usr/bin/python3 -c 'import cbor2' 2>/dev/null") != 0)
		fail_msg("python3-cbor2 is missing: apt-get install python3-cbor2 (make deps)");
	decode_ok(&f, FORMAT_JSON, j, strlen(j));
	encode_ok(&f, FORMAT_CBOR, &b);
	frame_clear(&f);
	char *hexs = malloc(2 * b.len + 2);
	for (size_t i = 0; i < b.len; i++)
		sprintf(hexs + 2 * i, "%02x", buf_data(&b)[i]);
	snprintf(cmd, sizeof cmd, "echo %s | %s", hexs, py);
	free(hexs);
	buf_clear(&b);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	assert_non_null(fgets(line, sizeof line, p));
	assert_string_equal(line, "{\"action\": \"broadcast\", \"channel\": \"\\u00e9\", "
	    "\"data\": {\"k\": [1, \"\\ud83d\\ude00\", null]}, \"port\": 7}\n");
	assert_non_null(fgets(line, sizeof line, p));
	assert_int_equal(pclose(p), 0);
	size_t n = strlen(line) - 1;
	unsigned char bin[2048];
	for (size_t i = 0; i < n / 2; i++)
		sscanf(line + 2 * i, "%2hhx", &bin[i]);
	decode_ok(&f, FORMAT_CBOR, bin, n / 2);
	assert_int_equal(f.action, ACTION_BROADCAST);
	assert_string_equal(f.channel, "\xc3\xa9");
	assert_int_equal(f.port, 7);
	assert_int_equal(f.data_kind, DATA_BYTES);
	assert_int_equal(f.data_len, 2);
	assert_memory_equal(f.data, "\0\1", 2);
	frame_clear(&f);
}

/* An open's key: 32 bytes in CBOR, in JSON only when asked (-vv), wiped by frame_clear. */
static void
test_open_key(void **state)
{
	struct frame f, g;
	struct buf b;
	char err[128];

	(void)state;
	buf_init(&b, 0);
	frame_init(&f);
	f.action = ACTION_OPEN;
	f.channel = strdup("chat");
	f.has_key = 1;
	for (int i = 0; i < FRAME_KEY_LEN; i++)
		f.key[i] = (unsigned char)(i * 7 + 1);
	assert_int_equal(frame_encode(&f, FORMAT_CBOR, &b), 0);
	decode_ok(&g, FORMAT_CBOR, buf_data(&b), b.len);
	assert_true(g.has_key);
	assert_memory_equal(g.key, f.key, FRAME_KEY_LEN);
	frame_clear(&g);
	assert_false(g.has_key);
	assert_int_equal(g.key[0], 0);

	buf_reset(&b);
	assert_int_equal(frame_encode(&f, FORMAT_JSON, &b), 0);
	assert_null(memmem(buf_data(&b), b.len, "key", 3));
	frame_json_keys = 1;
	buf_reset(&b);
	assert_int_equal(frame_encode(&f, FORMAT_JSON, &b), 0);
	frame_json_keys = 0;
	assert_non_null(memmem(buf_data(&b), b.len, "\"key\":\"", 7));
	decode_ok(&g, FORMAT_JSON, buf_data(&b), b.len);
	assert_true(g.has_key);
	assert_memory_equal(g.key, f.key, FRAME_KEY_LEN);
	frame_clear(&g);
	frame_clear(&f);
	buf_clear(&b);

	/* 31 bytes, or text, is not a key. */
	static const unsigned char short_key[] = { 0xa2, 0x66, 'a', 'c', 't', 'i', 'o', 'n',
		0x64, 'o', 'p', 'e', 'n', 0x63, 'k', 'e', 'y', 0x58, 31 };
	unsigned char bad[sizeof short_key + 31] = { 0 };
	memcpy(bad, short_key, sizeof short_key);
	assert_int_equal(frame_decode(&g, FORMAT_CBOR, bad, sizeof bad, err, sizeof err), -1);
	assert_non_null(strstr(err, "key"));
	assert_int_equal(frame_decode(&g, FORMAT_JSON, "{\"action\":\"open\",\"key\":\"AAAA\"}",
	    30, err, sizeof err), -1);
}
/* A view borrows: it encodes as the owning frame with the same fields would. */
static void
test_view_borrows(void **state)
{
	struct frame v, o;
	struct buf a, b;
	char channel[] = "room";
	(void)state;
	buf_init(&a, 0);
	buf_init(&b, 0);
	frame_view(&v, ACTION_CONNECT);
	v.channel = channel;
	v.target = (char *)"0123456789abcdef";
	assert_true(v.borrowed);
	assert_int_equal(v.port, -1);
	assert_int_equal(v.code, -1);
	frame_init(&o);
	o.action = ACTION_CONNECT;
	assert_int_equal(frame_set(&o.channel, "room"), 0);
	assert_int_equal(frame_set(&o.target, "0123456789abcdef"), 0);
	assert_false(o.borrowed);
	for (int fmt = FORMAT_JSON; fmt <= FORMAT_CBOR; fmt++) {
		buf_reset(&a);
		buf_reset(&b);
		assert_int_equal(frame_encode(&v, (enum frame_format)fmt, &a), 0);
		assert_int_equal(frame_encode(&o, (enum frame_format)fmt, &b), 0);
		assert_int_equal(a.len, b.len);
		assert_memory_equal(buf_data(&a), buf_data(&b), a.len);
	}
	frame_clear(&o);
	frame_error(&v, 69, "down");
	assert_true(v.borrowed);
	assert_int_equal(v.action, ACTION_ERROR);
	buf_clear(&a);
	buf_clear(&b);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_every_action_and_data),
		cmocka_unit_test(test_view_borrows),
		cmocka_unit_test(test_decoded_values),
		cmocka_unit_test(test_bytes_and_text_built),
		cmocka_unit_test(test_json_output_form),
		cmocka_unit_test(test_cbor_known_bytes),
		cmocka_unit_test(test_cbor_unknown_keys),
		cmocka_unit_test(test_cbor_strict),
		cmocka_unit_test(test_json_malformed),
		cmocka_unit_test(test_json_deep_nesting),
		cmocka_unit_test(test_cbor_malformed),
		cmocka_unit_test(test_cbor_truncated_and_deep),
		cmocka_unit_test(test_cbor_length_bounds),
		cmocka_unit_test(test_peek),
		cmocka_unit_test(test_detect_and_names),
		cmocka_unit_test(test_encode_refusals),
		cmocka_unit_test(test_set_data_json),
		cmocka_unit_test(test_cbor2_interop),
		cmocka_unit_test(test_open_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
