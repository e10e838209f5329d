/* noise: the link handshake's responder fed any msg1 (byte 0 even), and a session's
 * transport (odd): the rest of the input is cut into pieces ([length][flag][bytes]...)
 * that the initiator encrypts and the responder reassembles, checked against a model of
 * the piece rules (flag 0 or final, frames up to MAX_FRAME), with tampered messages that
 * must be refused. The session comes from one handshake made at the first call, whose
 * two ends must agree; each input starts from a copy of it, so its nonces start at 0. */
#include <string.h>

#include "fuzz.h"
#include "noise.h"

/* The link's prologue, as link.c sets it: one for every channel. */
#define PROLOGUE "nws-link/1"
#define MAX_FRAME 1024

static const unsigned char psk[32] = "nws fuzz: a fixed link key K_li";

/* Message-sized scratch, static: on the stack ASan poisons and unpoisons these 64 KiB
 * arrays at every call, which was most of an execution's time. */
static unsigned char payload[NOISE_MAX_MSG], msg[NOISE_MAX_MSG], pt[NOISE_MAX_MSG];

static void
responder_only(const uint8_t *p, size_t n)
{
	struct noise_handshake r;
	unsigned char msg2[NOISE_DHLEN + NOISE_TAGLEN];
	struct noise_session s;

	static struct noise_handshake r0;
	static int made;

	if (n > NOISE_MAX_MSG)
		return;
	/* A fresh responder is the same every time: made once, with a fixed ephemeral key
	 * so that answering a good msg1 costs one X25519 instead of two. */
	if (!made) {
		static const unsigned char er[32] = "fuzz: responder ephemeral key..";
		fuzz_check(noise_handshake_init(&r0, 0, psk, PROLOGUE, sizeof PROLOGUE - 1) == 0);
		noise_handshake_set_ephemeral(&r0, er);
		made = 1;
	}
	r = r0;
	long pn = noise_handshake_read(&r, p, n, payload);
	if (pn < 0) {
		/* A message of a possible length that fails leaves nothing usable: every
		 * further call refuses. (One too short or long is refused before it is read.) */
		if (n >= NOISE_DHLEN + NOISE_TAGLEN)
			fuzz_check(r.step == NOISE_STEP_FAILED);
		fuzz_check(noise_handshake_write(&r, NULL, 0, msg2) < 0);
		fuzz_check(noise_handshake_split(&r, &s) < 0);
		noise_handshake_clear(&r);
		return;
	}
	fuzz_check((size_t)pn + NOISE_DHLEN + NOISE_TAGLEN == n);
	fuzz_check(noise_handshake_write(&r, NULL, 0, msg2) == (long)sizeof msg2);
	fuzz_check(noise_handshake_split(&r, &s) == 0);
	noise_session_clear(&s);
}

/* The initiator's and the responder's session after one handshake with fixed
 * ephemeral keys and node-id-sized payloads, made once. */
static void
sessions(struct noise_session *si, struct noise_session *sr)
{
	static struct noise_session i0, r0;
	static int made;

	if (!made) {
		static const unsigned char ei[32] = "fuzz: initiator ephemeral key..";
		static const unsigned char er[32] = "fuzz: responder ephemeral key..";
		struct noise_handshake i, r;
		unsigned char hello[16], got[16];
		memset(hello, 0x5a, sizeof hello);
		fuzz_check(noise_handshake_init(&i, 1, psk, PROLOGUE, sizeof PROLOGUE - 1) == 0);
		fuzz_check(noise_handshake_init(&r, 0, psk, PROLOGUE, sizeof PROLOGUE - 1) == 0);
		noise_handshake_set_ephemeral(&i, ei);
		noise_handshake_set_ephemeral(&r, er);
		long m1 = noise_handshake_write(&i, hello, sizeof hello, msg);
		fuzz_check(m1 > 0 && noise_handshake_read(&r, msg, (size_t)m1, got) == 16);
		long m2 = noise_handshake_write(&r, hello, sizeof hello, msg);
		fuzz_check(m2 > 0 && noise_handshake_read(&i, msg, (size_t)m2, got) == 16);
		fuzz_check(noise_handshake_split(&i, &i0) == 0 &&
		    noise_handshake_split(&r, &r0) == 0);
		fuzz_check(memcmp(i0.h, r0.h, NOISE_HASHLEN) == 0);
		made = 1;
	}
	*si = i0;
	*sr = r0;
}

/* The piece rules as nws(7) LINKS states them, for one frame at a time. */
struct model {
	unsigned char acc[MAX_FRAME];
	size_t len;
	int broken;
};

static void
transport(const uint8_t *p, size_t n)
{
	struct noise_session si, sr;
	struct noise_reassembly re;
	struct model m = { .len = 0 };
	size_t off = 0;

	sessions(&si, &sr);
	noise_reassembly_init(&re, MAX_FRAME);
	while (off + 2 <= n && !m.broken) {
		size_t len = p[off] * 8u + (p[off + 1] >> 2);
		/* 0 and 1: the two valid flags; 2: an invalid one; 3: tampered, flag from p[off]. */
		unsigned sel = p[off + 1] & 3;
		int tamper = sel == 3;
		unsigned flag = tamper ? (p[off] & 1u) : sel;
		off += 2;
		if (len > n - off)
			len = n - off;
		pt[0] = (unsigned char)flag;
		memcpy(pt + 1, p + off, len);
		long cn = noise_encrypt(&si.send, pt, len + 1, msg);
		fuzz_check(cn == (long)len + 1 + NOISE_TAGLEN);
		if (tamper)
			msg[(size_t)p[off - 2] % (size_t)cn] ^= 0x20;
		int got = noise_recv_piece(&sr.recv, &re, msg, (size_t)cn);
		if (tamper || flag > NOISE_PIECE_FINAL || m.len + len > MAX_FRAME) {
			fuzz_check(got == -1);
			m.broken = 1;
		} else {
			memcpy(m.acc + m.len, p + off, len);
			m.len += len;
			fuzz_check(got == (flag == NOISE_PIECE_FINAL));
			if (got == 1) {
				size_t fl;
				const unsigned char *f = noise_reassembly_frame(&re, &fl);
				fuzz_check(fl == m.len && (m.len == 0 || memcmp(f, m.acc, m.len) == 0));
				noise_reassembly_reset(&re);
				m.len = 0;
			}
		}
		off += len;
	}
	noise_reassembly_clear(&re);
	noise_session_clear(&si);
	noise_session_clear(&sr);
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	if (n == 0)
		return 0;
	if (p[0] & 1)
		transport(p + 1, n - 1);
	else
		responder_only(p + 1, n - 1);
	return 0;
}
