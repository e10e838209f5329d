/* noise: the cacophony vector byte for byte, the failures that must fail (tampering,
 * replay, reordering, wrong psk, truncation, spent nonces), and the piece framing of
 * nws(7) LINKS. Run from the repo root (the vector is tests/vectors/...). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <sodium.h>

#include "noise.h"

#define VECTOR "tests/vectors/noise-nnpsk0-blake2b.json"
#define MAXHEX 1024

struct vec {
	unsigned char prologue[MAXHEX], psk[32], ie[32], re[32], hash[NOISE_HASHLEN];
	size_t prologue_len;
	size_t nmsg;
	struct {
		unsigned char pt[MAXHEX], ct[MAXHEX];
		size_t ptlen, ctlen;
	} msg[16];
};

static size_t
unhex(unsigned char *out, size_t max, const char *hex)
{
	size_t n = 0;

	assert_non_null(hex);
	assert_int_equal(sodium_hex2bin(out, max, hex, strlen(hex), NULL, &n, NULL), 0);
	return n;
}

static const char *
jstr(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);

	if (json_is_array(v))
		v = json_array_get(v, 0);
	if (!json_is_string(v))
		fail_msg("%s: field %s missing or not a string", VECTOR, key);
	return json_string_value(v);
}

static void
vec_load(struct vec *v)
{
	json_error_t err;
	json_t *root = json_load_file(VECTOR, 0, &err), *t, *msgs;
	size_t i;

	if (!root)
		fail_msg("%s: %s (run from the repo root)", VECTOR, err.text);
	memset(v, 0, sizeof *v);
	t = json_array_get(json_object_get(root, "vectors"), 0);
	assert_non_null(t);
	assert_string_equal(jstr(t, "protocol_name"), "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b");
	/* Both sides share prologue and psk in this vector; check rather than assume. */
	assert_string_equal(jstr(t, "init_prologue"), jstr(t, "resp_prologue"));
	assert_string_equal(jstr(t, "init_psks"), jstr(t, "resp_psks"));
	v->prologue_len = unhex(v->prologue, sizeof v->prologue, jstr(t, "init_prologue"));
	assert_int_equal(unhex(v->psk, 32, jstr(t, "init_psks")), 32);
	assert_int_equal(unhex(v->ie, 32, jstr(t, "init_ephemeral")), 32);
	assert_int_equal(unhex(v->re, 32, jstr(t, "resp_ephemeral")), 32);
	assert_int_equal(unhex(v->hash, NOISE_HASHLEN, jstr(t, "handshake_hash")),
	    NOISE_HASHLEN);
	msgs = json_object_get(t, "messages");
	v->nmsg = json_array_size(msgs);
	assert_true(v->nmsg >= 3 && v->nmsg <= 16);
	for (i = 0; i < v->nmsg; i++) {
		json_t *m = json_array_get(msgs, i);
		v->msg[i].ptlen = unhex(v->msg[i].pt, MAXHEX, jstr(m, "payload"));
		v->msg[i].ctlen = unhex(v->msg[i].ct, MAXHEX, jstr(m, "ciphertext"));
	}
	json_decref(root);
}

/* Both handshake states, initialised as the vector says. */
static void
vec_start(const struct vec *v, struct noise_handshake *i, struct noise_handshake *r)
{
	assert_int_equal(noise_handshake_init(i, 1, v->psk, v->prologue, v->prologue_len), 0);
	assert_int_equal(noise_handshake_init(r, 0, v->psk, v->prologue, v->prologue_len), 0);
	noise_handshake_set_ephemeral(i, v->ie);
	noise_handshake_set_ephemeral(r, v->re);
}

/* Runs the vector's handshake; the sessions are returned split. */
static void
vec_handshake(const struct vec *v, struct noise_session *si, struct noise_session *sr)
{
	struct noise_handshake i, r;
	unsigned char out[MAXHEX], pt[MAXHEX];

	vec_start(v, &i, &r);
	assert_int_equal(noise_handshake_write(&i, v->msg[0].pt, v->msg[0].ptlen, out),
	    v->msg[0].ctlen);
	assert_memory_equal(out, v->msg[0].ct, v->msg[0].ctlen);
	assert_int_equal(noise_handshake_read(&r, out, v->msg[0].ctlen, pt), v->msg[0].ptlen);
	assert_memory_equal(pt, v->msg[0].pt, v->msg[0].ptlen);

	assert_int_equal(noise_handshake_write(&r, v->msg[1].pt, v->msg[1].ptlen, out),
	    v->msg[1].ctlen);
	assert_memory_equal(out, v->msg[1].ct, v->msg[1].ctlen);
	assert_int_equal(noise_handshake_read(&i, out, v->msg[1].ctlen, pt), v->msg[1].ptlen);
	assert_memory_equal(pt, v->msg[1].pt, v->msg[1].ptlen);

	assert_int_equal(noise_handshake_split(&i, si), 0);
	assert_int_equal(noise_handshake_split(&r, sr), 0);
	/* Split wipes the handshake. */
	assert_true(sodium_is_zero((unsigned char *)&i, sizeof i));
	assert_true(sodium_is_zero((unsigned char *)&r, sizeof r));
}

static void
test_vector(void **state)
{
	struct vec v;
	struct noise_session si, sr;
	unsigned char out[MAXHEX], pt[MAXHEX];

	(void)state;
	vec_load(&v);
	vec_handshake(&v, &si, &sr);
	assert_memory_equal(si.h, v.hash, NOISE_HASHLEN);
	assert_memory_equal(sr.h, v.hash, NOISE_HASHLEN);
	/* Transport messages alternate, initiator first, after the two handshake messages. */
	for (size_t m = 2; m < v.nmsg; m++) {
		struct noise_session *tx = m % 2 == 0 ? &si : &sr, *rx = m % 2 == 0 ? &sr : &si;
		assert_int_equal(noise_encrypt(&tx->send, v.msg[m].pt, v.msg[m].ptlen, out),
		    v.msg[m].ctlen);
		assert_memory_equal(out, v.msg[m].ct, v.msg[m].ctlen);
		assert_int_equal(noise_decrypt(&rx->recv, out, v.msg[m].ctlen, pt),
		    v.msg[m].ptlen);
		assert_memory_equal(pt, v.msg[m].pt, v.msg[m].ptlen);
	}
	noise_session_clear(&si);
	noise_session_clear(&sr);
	assert_true(sodium_is_zero((unsigned char *)&si, sizeof si));
}

/* Every single-bit flip of either handshake message, and every truncation, fails. */
static void
test_handshake_tamper(void **state)
{
	struct vec v;
	struct noise_handshake i, r;
	unsigned char m[MAXHEX], pt[MAXHEX];

	(void)state;
	vec_load(&v);
	for (int which = 0; which < 2; which++) {
		size_t len = v.msg[which].ctlen;
		for (size_t b = 0; b < len * 8; b++) {
			vec_start(&v, &i, &r);
			if (which == 1) {
				assert_true(noise_handshake_write(&i, v.msg[0].pt, v.msg[0].ptlen, m) > 0);
				assert_true(noise_handshake_read(&r, m, v.msg[0].ctlen, pt) >= 0);
			}
			memcpy(m, v.msg[which].ct, len);
			m[b / 8] ^= 1u << (b % 8);
			assert_int_equal(noise_handshake_read(which ? &i : &r, m, len, pt), -1);
			assert_int_equal((which ? &i : &r)->step, NOISE_STEP_FAILED);
		}
		for (size_t cut = 0; cut < len; cut++) {
			vec_start(&v, &i, &r);
			if (which == 1) {
				assert_true(noise_handshake_write(&i, v.msg[0].pt, v.msg[0].ptlen, m) > 0);
				assert_true(noise_handshake_read(&r, m, v.msg[0].ctlen, pt) >= 0);
			}
			assert_int_equal(noise_handshake_read(which ? &i : &r, v.msg[which].ct, cut,
			    pt), -1);
		}
	}
	noise_handshake_clear(&i);
	noise_handshake_clear(&r);
}

/* A responder with another psk (or prologue) cannot read the first message. */
static void
test_wrong_psk(void **state)
{
	struct vec v;
	struct noise_handshake i, r;
	struct noise_session s;
	unsigned char m[MAXHEX], pt[MAXHEX], psk[32];
	long n;

	(void)state;
	vec_load(&v);
	for (size_t b = 0; b < sizeof psk; b++) {
		memcpy(psk, v.psk, sizeof psk);
		psk[b] ^= 0x80;
		noise_handshake_init(&i, 1, v.psk, v.prologue, v.prologue_len);
		noise_handshake_init(&r, 0, psk, v.prologue, v.prologue_len);
		assert_true((n = noise_handshake_write(&i, "hi", 2, m)) > 0);
		assert_int_equal(noise_handshake_read(&r, m, (size_t)n, pt), -1);
		/* A failed handshake refuses everything after. */
		assert_int_equal(noise_handshake_write(&r, "x", 1, m), -1);
		assert_int_equal(noise_handshake_split(&r, &s), -1);
	}
	noise_handshake_init(&i, 1, v.psk, "a", 1);
	noise_handshake_init(&r, 0, v.psk, "b", 1);
	assert_true((n = noise_handshake_write(&i, NULL, 0, m)) > 0);
	assert_int_equal(noise_handshake_read(&r, m, (size_t)n, pt), -1);
	noise_handshake_clear(&i);
	noise_handshake_clear(&r);
}

/* Random ephemerals: both sides agree, turns are enforced, low-order points refused. */
static void
test_handshake_random(void **state)
{
	struct noise_handshake i, r, i2;
	struct noise_session si, sr;
	unsigned char psk[32], m[256], pt[256], m1[256], ct[64];
	long n;

	(void)state;
	randombytes_buf(psk, sizeof psk);
	noise_handshake_init(&i, 1, psk, "p", 1);
	noise_handshake_init(&r, 0, psk, "p", 1);
	assert_int_equal(noise_handshake_write(&r, NULL, 0, m), -1);   /* not its turn */
	assert_int_equal(noise_handshake_split(&i, &si), -1);
	assert_true((n = noise_handshake_write(&i, "node-i", 6, m)) == 32 + 6 + 16);
	assert_int_equal(noise_handshake_write(&i, NULL, 0, m1), -1);
	memcpy(m1, m, (size_t)n);
	i2 = i;
	assert_int_equal(noise_handshake_read(&r, m, (size_t)n, pt), 6);
	assert_memory_equal(pt, "node-i", 6);
	assert_int_equal(noise_handshake_read(&r, m, (size_t)n, pt), -1);   /* not its turn */
	assert_true((n = noise_handshake_write(&r, "node-r", 6, m)) == 32 + 6 + 16);

	/* A second message whose e is the zero point: DH gives zero, refused. */
	memset(m1, 0, 32);
	assert_int_equal(noise_handshake_read(&i2, m1, (size_t)n, pt), -1);
	noise_handshake_clear(&i2);

	assert_int_equal(noise_handshake_read(&i, m, (size_t)n, pt), 6);
	assert_memory_equal(pt, "node-r", 6);
	assert_int_equal(noise_handshake_split(&i, &si), 0);
	assert_int_equal(noise_handshake_split(&r, &sr), 0);
	assert_memory_equal(si.h, sr.h, NOISE_HASHLEN);
	assert_memory_equal(si.send.k, sr.recv.k, 32);
	assert_memory_equal(si.recv.k, sr.send.k, 32);
	assert_memory_not_equal(si.send.k, si.recv.k, 32);
	assert_int_equal(noise_encrypt(&sr.send, "back", 4, ct), 20);
	assert_int_equal(noise_decrypt(&si.recv, ct, 20, pt), 4);
	assert_memory_equal(pt, "back", 4);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

static void
test_transport_failures(void **state)
{
	struct vec v;
	struct noise_session si, sr;
	unsigned char a[64], b[64], x[64], pt[64];

	(void)state;
	vec_load(&v);
	vec_handshake(&v, &si, &sr);
	assert_int_equal(noise_encrypt(&si.send, "first", 5, a), 21);
	assert_int_equal(noise_encrypt(&si.send, "second", 6, b), 22);
	/* Every flipped bit, every truncation: fail, and the nonce does not move. */
	for (size_t bit = 0; bit < 21 * 8; bit++) {
		memcpy(x, a, 21);
		x[bit / 8] ^= 1u << (bit % 8);
		assert_int_equal(noise_decrypt(&sr.recv, x, 21, pt), -1);
	}
	for (size_t cut = 0; cut < 21; cut++)
		assert_int_equal(noise_decrypt(&sr.recv, a, cut, pt), -1);
	/* Reordered: the second message cannot be read first. */
	assert_int_equal(noise_decrypt(&sr.recv, b, 22, pt), -1);
	assert_int_equal(sr.recv.n, 0);
	assert_int_equal(noise_decrypt(&sr.recv, a, 21, pt), 5);
	assert_memory_equal(pt, "first", 5);
	/* Replayed. */
	assert_int_equal(noise_decrypt(&sr.recv, a, 21, pt), -1);
	assert_int_equal(noise_decrypt(&sr.recv, b, 22, pt), 6);
	assert_int_equal(noise_decrypt(&sr.recv, b, 22, pt), -1);
	/* A message from our own send direction does not decrypt as received. */
	assert_int_equal(noise_encrypt(&sr.send, "mine", 4, x), 20);
	assert_int_equal(noise_decrypt(&sr.recv, x, 20, pt), -1);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

/* Collects placed messages; refuses the place numbered fail_at (1-based). */
struct sink {
	unsigned char **msg;
	size_t *len;
	size_t n, cap;
	size_t fail_at;
};

static unsigned char *
sink_place(void *ctx, size_t len)
{
	struct sink *s = ctx;

	if (s->fail_at && s->n + 1 == s->fail_at)
		return NULL;
	assert_true(len <= NOISE_MAX_MSG);
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->msg = realloc(s->msg, s->cap * sizeof *s->msg);
		s->len = realloc(s->len, s->cap * sizeof *s->len);
		assert_true(s->msg && s->len);
	}
	s->msg[s->n] = malloc(len);
	assert_non_null(s->msg[s->n]);
	s->len[s->n] = len;
	return s->msg[s->n++];
}

/* The frame r holds, checked against want. */
static void
assert_frame(struct noise_reassembly *r, const void *want, size_t len)
{
	size_t n;
	const unsigned char *f = noise_reassembly_frame(r, &n);

	assert_int_equal(n, len);
	if (len)
		assert_memory_equal(f, want, len);
	noise_reassembly_reset(r);
}

static void
sink_free(struct sink *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->msg[i]);
	free(s->msg);
	free(s->len);
	memset(s, 0, sizeof *s);
}

/* Nonce 2^64-1 is reserved: the last usable nonce is 2^64-2. */
static void
test_nonce_limit(void **state)
{
	struct noise_session si, sr;
	struct vec v;
	unsigned char ct[64], pt[64];

	(void)state;
	vec_load(&v);
	vec_handshake(&v, &si, &sr);
	si.send.n = sr.recv.n = UINT64_MAX - 1;
	assert_int_equal(noise_encrypt(&si.send, "z", 1, ct), 17);
	assert_int_equal(noise_decrypt(&sr.recv, ct, 17, pt), 1);
	assert_true(si.send.n == UINT64_MAX && sr.recv.n == UINT64_MAX);
	assert_int_equal(noise_encrypt(&si.send, "z", 1, ct), -1);
	assert_int_equal(noise_decrypt(&sr.recv, ct, 17, pt), -1);
	struct sink s = { 0 };
	assert_int_equal(noise_send_frame(&si.send, "z", 1, sink_place, &s), -1);
	assert_int_equal(s.n, 1);
	assert_true(s.msg[0][0] == 0 && s.msg[0][1] == 0);
	sink_free(&s);
	/* Too long for one message. */
	si.send.n = 0;
	assert_int_equal(noise_encrypt(&si.send, NULL, NOISE_MAX_MSG, NULL), -1);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

/* Sends a frame of len random bytes and reassembles it; returns the number of messages,
 * checking that exactly the last one completes the frame. */
static size_t
roundtrip(struct noise_session *si, struct noise_session *sr, size_t len, size_t max_frame)
{
	struct sink s = { 0 };
	struct noise_reassembly r;
	unsigned char *frame = malloc(len ? len : 1);
	size_t n;

	assert_non_null(frame);
	randombytes_buf(frame, len);
	assert_int_equal(noise_send_frame(&si->send, frame, len, sink_place, &s), 0);
	noise_reassembly_init(&r, max_frame);
	for (size_t i = 0; i < s.n; i++) {
		assert_int_equal(s.len[i], i + 1 < s.n ? NOISE_MAX_MSG : len - i * NOISE_MAX_PIECE + 17);
		assert_int_equal(noise_recv_piece(&sr->recv, &r, s.msg[i], s.len[i]),
		    i + 1 == s.n);
	}
	assert_frame(&r, frame, len);
	noise_reassembly_clear(&r);
	n = s.n;
	sink_free(&s);
	free(frame);
	return n;
}

static void
test_pieces(void **state)
{
	struct vec v;
	struct noise_session si, sr;
	const size_t mib5 = 5u << 20;

	(void)state;
	vec_load(&v);
	vec_handshake(&v, &si, &sr);
	assert_int_equal(roundtrip(&si, &sr, mib5, 16u << 20),
	    (mib5 + NOISE_MAX_PIECE - 1) / NOISE_MAX_PIECE);
	assert_int_equal(roundtrip(&si, &sr, 0, 1), 1);
	assert_int_equal(roundtrip(&si, &sr, 1, 1), 1);
	assert_int_equal(roundtrip(&si, &sr, NOISE_MAX_PIECE, 1u << 20), 1);
	assert_int_equal(roundtrip(&si, &sr, NOISE_MAX_PIECE + 1, 1u << 20), 2);
	assert_int_equal(roundtrip(&si, &sr, 2 * NOISE_MAX_PIECE, 1u << 20), 2);
	/* A frame exactly max_frame long passes. */
	assert_int_equal(roundtrip(&si, &sr, 200000, 200000), 4);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

static void
test_pieces_reject(void **state)
{
	struct vec v;
	struct noise_session si, sr;
	struct noise_reassembly r;
	struct sink s = { 0 };
	unsigned char *frame = calloc(1, 200001), m[64], pt[8];
	size_t i;
	int got = 0;
	long n;

	(void)state;
	assert_non_null(frame);
	vec_load(&v);
	vec_handshake(&v, &si, &sr);

	/* One byte over max_frame: rejected, and the partial frame is dropped. */
	assert_int_equal(noise_send_frame(&si.send, frame, 200001, sink_place, &s), 0);
	noise_reassembly_init(&r, 200000);
	for (i = 0; i < s.n && (got = noise_recv_piece(&sr.recv, &r, s.msg[i], s.len[i])) == 0;
	    i++)
		;
	assert_int_equal(got, -1);
	assert_int_equal(i, s.n - 1);
	assert_frame(&r, NULL, 0);
	sink_free(&s);
	/* The link closes on -1: what follows starts over. */
	noise_session_clear(&si);
	noise_session_clear(&sr);
	vec_handshake(&v, &si, &sr);

	/* Flag bytes other than 0 and 1. */
	for (const unsigned char *f = (const unsigned char *)"\x02\x03\x80\xff"; *f; f++) {
		pt[0] = *f;
		pt[1] = 'x';
		assert_int_equal(n = noise_encrypt(&si.send, pt, 2, m), 18);
		assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), -1);
	}

	/* An empty piece between frames (a keepalive) takes no memory. */
	noise_reassembly_clear(&r);
	n = noise_encrypt(&si.send, "", 1, m);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 0);
	assert_int_equal(r.acc.cap, 0);
	n = noise_encrypt(&si.send, "\1", 1, m);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 1);
	assert_int_equal(r.acc.cap, 0);
	assert_frame(&r, NULL, 0);

	/* Short non-final pieces, an empty one included, are accepted. */
	memcpy(pt, "\0ab", 3);
	n = noise_encrypt(&si.send, pt, 3, m);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 0);
	n = noise_encrypt(&si.send, pt, 1, m);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 0);
	memcpy(pt, "\1cd", 3);
	n = noise_encrypt(&si.send, pt, 3, m);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 1);
	assert_frame(&r, "abcd", 4);

	/* Tampered, replayed and truncated pieces. */
	n = noise_encrypt(&si.send, "\1ok", 3, m);
	m[5] ^= 4;
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), -1);
	m[5] ^= 4;
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n - 1), -1);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), 1);
	assert_frame(&r, "ok", 2);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), -1);
	/* A message with no flag byte at all (refused before decrypting, so last). */
	assert_int_equal(n = noise_encrypt(&si.send, NULL, 0, m), 16);
	assert_int_equal(noise_recv_piece(&sr.recv, &r, m, (size_t)n), -1);
	noise_reassembly_clear(&r);

	/* A place refused stops the frame. */
	s.fail_at = 2;
	assert_int_equal(noise_send_frame(&si.send, frame, 200001, sink_place, &s), -1);
	assert_int_equal(s.n, 1);
	sink_free(&s);

	free(frame);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vector),
		cmocka_unit_test(test_handshake_tamper),
		cmocka_unit_test(test_wrong_psk),
		cmocka_unit_test(test_handshake_random),
		cmocka_unit_test(test_transport_failures),
		cmocka_unit_test(test_nonce_limit),
		cmocka_unit_test(test_pieces),
		cmocka_unit_test(test_pieces_reject),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
