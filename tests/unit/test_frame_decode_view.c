/* frame_decode_view: nws-proxy's allocation-free reading of the pipeline's common frames. It
 * takes what frame_encode writes for them, exactly as frame_decode reads it, and leaves
 * everything else (-1) to frame_decode; whatever bytes it is given, a frame it takes is
 * one frame_decode takes too, with the same fields. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "frame.h"

static char store[512];

static void
encode(const struct frame *f, struct buf *out)
{
	buf_reset(out);
	assert_int_equal(frame_encode(f, FORMAT_CBOR, out), 0);
}

static int
same_str(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcmp(a, b));
}

/* v (from frame_decode_view) and d (from frame_decode) hold the same frame. */
static void
assert_same(const struct frame *v, const struct frame *d)
{
	assert_int_equal(v->action, d->action);
	assert_true(same_str(v->channel, d->channel));
	assert_true(same_str(v->source, d->source));
	assert_true(same_str(v->target, d->target));
	assert_true(same_str(v->node, d->node));
	assert_true(same_str(v->address, d->address));
	assert_int_equal(v->data_kind, d->data_kind);
	assert_int_equal(v->data_len, d->data_len);
	if (v->data_len)
		assert_memory_equal(v->data, d->data, v->data_len);
}

static void
test_common_frames(void **state)
{
	struct buf out;
	struct frame f, v, d;
	static const enum frame_action actions[] = { ACTION_BROADCAST, ACTION_MESSAGE,
		ACTION_END, ACTION_CONNECT, ACTION_DISCONNECT };
	(void)state;

	buf_init(&out, 0);
	for (size_t i = 0; i < sizeof actions / sizeof *actions; i++)
		for (int kind = DATA_NONE; kind <= DATA_BYTES; kind++) {
			frame_init(&f);
			f.action = actions[i];
			f.channel = (char *)"a channel";
			f.source = (char *)"0123456789abcdef";
			f.target = i == 1 ? (char *)"fedcba9876543210" : NULL;
			f.data_kind = (enum frame_data)kind;
			f.data = (unsigned char *)(kind == DATA_BYTES ? "b\0y\xfftes" : "caf\xc3\xa9");
			f.data_len = kind == DATA_NONE ? 0 : kind == DATA_BYTES ? 8 : 5;
			if (kind == DATA_NONE)
				f.data = NULL;
			encode(&f, &out);
			assert_int_equal(frame_decode_view(&v, buf_data(&out), out.len, store,
			    sizeof store), 0);
			assert_int_equal(frame_decode(&d, FORMAT_CBOR, buf_data(&out), out.len,
			    NULL, 0), 0);
			assert_same(&v, &d);
			/* data is borrowed from the buffer, not copied. */
			if (kind != DATA_NONE)
				assert_true(v.data > buf_data(&out) && v.data < buf_data(&out) + out.len);
			frame_clear(&d);
		}
	buf_clear(&out);
}

static void
assert_other(const void *p, size_t n, size_t storelen)
{
	struct frame v;
	assert_int_equal(frame_decode_view(&v, p, n, store, storelen), -1);
	assert_int_equal(v.action, ACTION_UNKNOWN);
	assert_null(v.channel);
	assert_null(v.data);
}

#define OTHER(lit) assert_other(lit, sizeof lit - 1, sizeof store)

static void
test_other_frames(void **state)
{
	struct buf out;
	struct frame f;
	(void)state;

	/* {"action":"end"} is taken; each change below is not. */
	static const char end[] = "\xa1\x66" "action" "\x63" "end";
	struct frame v;
	assert_int_equal(frame_decode_view(&v, end, sizeof end - 1, store, sizeof store), 0);
	assert_int_equal(v.action, ACTION_END);
	OTHER("\xbf\x66" "action" "\x63" "end" "\xff");          /* indefinite map */
	OTHER("\xb8\x01\x66" "action" "\x63" "end");             /* non-minimal count */
	OTHER("\xa1\x78\x06" "action" "\x63" "end");             /* non-minimal key */
	OTHER("\xa1\x66" "action" "\x7f\x63" "end" "\xff");      /* indefinite text */
	OTHER("\xa1\x66" "action" "\x63" "foo");                 /* unknown action */
	OTHER("\xa1\x66" "action" "\x43" "end");                 /* action as bytes */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x66" "action" "\x63" "end");  /* twice */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x63" "foo" "\x61" "x");       /* unknown key */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x64" "port" "\x01");          /* integer */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x64" "data" "\xd9\x01\x06\x61" "1"); /* tag */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x66" "source" "\x62" "a\0");   /* NUL */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x66" "source" "\x62" "\xc3("); /* UTF-8 */
	OTHER("\xa2\x66" "action" "\x63" "end" "\x66" "source" "\x41" "a");     /* bytes */
	OTHER("\xa1\x66" "source" "\x61" "a");                   /* no action */
	OTHER("\xa1\x66" "action" "\x63" "end" "\x00");          /* trailing bytes */
	OTHER("\x81\x66" "action");                              /* not a map */
	OTHER("");
	/* Strings that do not fit in the store. */
	buf_init(&out, 0);
	frame_init(&f);
	f.action = ACTION_CONNECT;
	f.channel = (char *)"0123456789";
	encode(&f, &out);
	assert_other(buf_data(&out), out.len, 10);
	assert_int_equal(frame_decode_view(&v, buf_data(&out), out.len, store, 11), 0);
	/* Every prefix of a frame. */
	f.source = (char *)"src";
	f.data_kind = DATA_TEXT;
	f.data = (unsigned char *)"hello";
	f.data_len = 5;
	encode(&f, &out);
	for (size_t n = 0; n < out.len; n++)
		assert_other(buf_data(&out), n, sizeof store);
	buf_clear(&out);
}

/* Any byte of a frame changed to anything: taken only when frame_decode agrees. */
static void
test_flips_agree_with_decode(void **state)
{
	struct buf out;
	struct frame f, v, d;
	(void)state;

	buf_init(&out, 0);
	frame_init(&f);
	f.action = ACTION_MESSAGE;
	f.channel = (char *)"chan";
	f.source = (char *)"0123456789abcdef";
	f.target = (char *)"fedcba9876543210";
	f.data_kind = DATA_TEXT;
	f.data = (unsigned char *)"some text";
	f.data_len = 9;
	encode(&f, &out);
	unsigned char *copy = malloc(out.len);
	for (size_t i = 0; i < out.len; i++)
		for (int b = 0; b < 256; b++) {
			memcpy(copy, buf_data(&out), out.len);
			copy[i] = (unsigned char)b;
			if (frame_decode_view(&v, copy, out.len, store, sizeof store) < 0)
				continue;
			assert_int_equal(frame_decode(&d, FORMAT_CBOR, copy, out.len, NULL, 0), 0);
			assert_same(&v, &d);
			frame_clear(&d);
		}
	free(copy);
	buf_clear(&out);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_common_frames),
		cmocka_unit_test(test_other_frames),
		cmocka_unit_test(test_flips_agree_with_decode),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
