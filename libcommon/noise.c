#include "noise.h"

#include <string.h>
#include <sodium.h>

#define PROTOCOL_NAME "Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b"
#define BLOCKLEN 128
#define KEYLEN 32
/* Nonce 2^64-1 is reserved by the spec; a cipher that reaches it is spent. */
#define NONCE_MAX UINT64_MAX

/* HASH = BLAKE2b-512 over the concatenation of up to two inputs. */
static void
hash2(unsigned char out[NOISE_HASHLEN], const void *a, size_t alen, const void *b,
    size_t blen)
{
	crypto_generichash_state st;

	crypto_generichash_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_update(&st, a, alen);
	if (blen)
		crypto_generichash_update(&st, b, blen);
	crypto_generichash_final(&st, out, NOISE_HASHLEN);
	sodium_memzero(&st, sizeof st);
}

/* HMAC-BLAKE2b per RFC 2104 as the Noise spec defines it (not BLAKE2b's keyed mode, which
 * would give different bytes). Keys here are always HASHLEN long, so never hashed first. */
static void
hmac(unsigned char out[NOISE_HASHLEN], const unsigned char key[NOISE_HASHLEN],
    const void *a, size_t alen, const void *b, size_t blen)
{
	crypto_generichash_state st;
	unsigned char pad[BLOCKLEN], inner[NOISE_HASHLEN];

	memset(pad, 0x36, sizeof pad);
	for (size_t i = 0; i < NOISE_HASHLEN; i++)
		pad[i] ^= key[i];
	crypto_generichash_init(&st, NULL, 0, NOISE_HASHLEN);
	crypto_generichash_update(&st, pad, sizeof pad);
	crypto_generichash_update(&st, a, alen);
	if (blen)
		crypto_generichash_update(&st, b, blen);
	crypto_generichash_final(&st, inner, sizeof inner);

	memset(pad, 0x5c, sizeof pad);
	for (size_t i = 0; i < NOISE_HASHLEN; i++)
		pad[i] ^= key[i];
	hash2(out, pad, sizeof pad, inner, sizeof inner);
	sodium_memzero(pad, sizeof pad);
	sodium_memzero(inner, sizeof inner);
	sodium_memzero(&st, sizeof st);
}

/* HKDF(ck, ikm, n) for n = 2 or 3; out3 may be NULL. */
static void
hkdf(const unsigned char ck[NOISE_HASHLEN], const void *ikm, size_t ikmlen,
    unsigned char out1[NOISE_HASHLEN], unsigned char out2[NOISE_HASHLEN],
    unsigned char out3[NOISE_HASHLEN])
{
	unsigned char tk[NOISE_HASHLEN], c;

	hmac(tk, ck, ikm, ikmlen, NULL, 0);
	c = 1;
	hmac(out1, tk, &c, 1, NULL, 0);
	c = 2;
	hmac(out2, tk, out1, NOISE_HASHLEN, &c, 1);
	if (out3) {
		c = 3;
		hmac(out3, tk, out2, NOISE_HASHLEN, &c, 1);
	}
	sodium_memzero(tk, sizeof tk);
}

static void
cipher_init(struct noise_cipher *c, const unsigned char k[KEYLEN])
{
	memcpy(c->k, k, KEYLEN);
	c->n = 0;
	c->has_key = 1;
}

static void
cipher_nonce(unsigned char nonce[12], uint64_t n)
{
	memset(nonce, 0, 4);
	for (int i = 0; i < 8; i++)
		nonce[4 + i] = (unsigned char)(n >> (8 * i));
}

/* EncryptWithAd; out may equal pt (libsodium supports in-place). */
static long
cipher_encrypt(struct noise_cipher *c, const unsigned char *ad, size_t adlen,
    const void *pt, size_t len, unsigned char *out)
{
	unsigned char nonce[12];
	unsigned long long clen;

	if (!c->has_key || c->n == NONCE_MAX || len > NOISE_MAX_MSG - NOISE_TAGLEN)
		return -1;
	cipher_nonce(nonce, c->n);
	crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, pt, len, ad, adlen, NULL, nonce,
	    c->k);
	c->n++;
	return (long)clen;
}

/* DecryptWithAd; the nonce only advances when the message authenticates. */
static long
cipher_decrypt(struct noise_cipher *c, const unsigned char *ad, size_t adlen,
    const unsigned char *ct, size_t len, unsigned char *out)
{
	unsigned char nonce[12];
	unsigned long long plen;

	if (!c->has_key || c->n == NONCE_MAX || len < NOISE_TAGLEN || len > NOISE_MAX_MSG)
		return -1;
	cipher_nonce(nonce, c->n);
	if (crypto_aead_chacha20poly1305_ietf_decrypt(out, &plen, NULL, ct, len, ad, adlen,
	    nonce, c->k) != 0)
		return -1;
	c->n++;
	return (long)plen;
}

static void
mix_hash(struct noise_handshake *hs, const void *data, size_t len)
{
	hash2(hs->h, hs->h, NOISE_HASHLEN, data, len);
}

static void
mix_key(struct noise_handshake *hs, const void *ikm, size_t len)
{
	unsigned char tk[NOISE_HASHLEN];

	hkdf(hs->ck, ikm, len, hs->ck, tk, NULL);
	cipher_init(&hs->cs, tk);
	sodium_memzero(tk, sizeof tk);
}

static void
mix_key_and_hash(struct noise_handshake *hs, const void *ikm, size_t len)
{
	unsigned char th[NOISE_HASHLEN], tk[NOISE_HASHLEN];

	hkdf(hs->ck, ikm, len, hs->ck, th, tk);
	mix_hash(hs, th, sizeof th);
	cipher_init(&hs->cs, tk);
	sodium_memzero(th, sizeof th);
	sodium_memzero(tk, sizeof tk);
}

/* The e token, for both sides: MixHash(e.pub), and MixKey(e.pub) because this is a psk
 * handshake. */
static void
mix_e(struct noise_handshake *hs, const unsigned char pk[NOISE_DHLEN])
{
	mix_hash(hs, pk, NOISE_DHLEN);
	mix_key(hs, pk, NOISE_DHLEN);
}

/* The ee token; -1 on an all-zero result (a low-order point from the peer). */
static int
mix_ee(struct noise_handshake *hs)
{
	unsigned char dh[NOISE_DHLEN];
	int r = -1;

	if (crypto_scalarmult(dh, hs->e_sk, hs->re) == 0 && !sodium_is_zero(dh, sizeof dh)) {
		mix_key(hs, dh, sizeof dh);
		r = 0;
	}
	sodium_memzero(dh, sizeof dh);
	return r;
}

static void
handshake_fail(struct noise_handshake *hs)
{
	noise_handshake_clear(hs);
	hs->step = NOISE_STEP_FAILED;
}

int
noise_handshake_init(struct noise_handshake *hs, int initiator,
    const unsigned char psk[32], const void *prologue, size_t prologue_len)
{
	memset(hs, 0, sizeof *hs);
	if (sodium_init() < 0) {
		hs->step = NOISE_STEP_FAILED;
		return -1;
	}
	hs->initiator = initiator != 0;
	/* The name is shorter than HASHLEN: h is the name padded with zeros. */
	memcpy(hs->h, PROTOCOL_NAME, sizeof PROTOCOL_NAME - 1);
	memcpy(hs->ck, hs->h, NOISE_HASHLEN);
	mix_hash(hs, prologue, prologue_len);
	memcpy(hs->psk, psk, sizeof hs->psk);
	return 0;
}

void
noise_handshake_set_ephemeral(struct noise_handshake *hs, const unsigned char sk[32])
{
	memcpy(hs->e_sk, sk, NOISE_DHLEN);
	crypto_scalarmult_base(hs->e_pk, hs->e_sk);
	hs->fixed_e = 1;
}

/* Our turn to write: initiator at step 0, responder at step 1. */
static int
handshake_our_turn(const struct noise_handshake *hs)
{
	return (hs->step == 0 && hs->initiator) || (hs->step == 1 && !hs->initiator);
}

long
noise_handshake_write(struct noise_handshake *hs, const void *payload, size_t plen,
    unsigned char *out)
{
	long n;

	if (!handshake_our_turn(hs) || plen > NOISE_MAX_MSG - NOISE_DHLEN - NOISE_TAGLEN)
		return -1;
	if (hs->step == 0)
		mix_key_and_hash(hs, hs->psk, sizeof hs->psk);
	if (!hs->fixed_e) {
		randombytes_buf(hs->e_sk, NOISE_DHLEN);
		crypto_scalarmult_base(hs->e_pk, hs->e_sk);
	}
	memcpy(out, hs->e_pk, NOISE_DHLEN);
	mix_e(hs, hs->e_pk);
	if (hs->step == 1 && mix_ee(hs) < 0) {
		handshake_fail(hs);
		return -1;
	}
	n = cipher_encrypt(&hs->cs, hs->h, NOISE_HASHLEN, payload, plen, out + NOISE_DHLEN);
	if (n < 0) {
		handshake_fail(hs);
		return -1;
	}
	mix_hash(hs, out + NOISE_DHLEN, (size_t)n);
	hs->step++;
	return NOISE_DHLEN + n;
}

long
noise_handshake_read(struct noise_handshake *hs, const unsigned char *msg, size_t len,
    unsigned char *payload)
{
	long n;

	if (hs->step < 0 || hs->step > 1 || handshake_our_turn(hs) ||
	    len < NOISE_DHLEN + NOISE_TAGLEN || len > NOISE_MAX_MSG)
		return -1;
	if (hs->step == 0)
		mix_key_and_hash(hs, hs->psk, sizeof hs->psk);
	memcpy(hs->re, msg, NOISE_DHLEN);
	mix_e(hs, hs->re);
	if (hs->step == 1 && mix_ee(hs) < 0) {
		handshake_fail(hs);
		return -1;
	}
	n = cipher_decrypt(&hs->cs, hs->h, NOISE_HASHLEN, msg + NOISE_DHLEN,
	    len - NOISE_DHLEN, payload);
	if (n < 0) {
		/* The transcript already absorbed the bad message: this handshake is over. */
		sodium_memzero(payload, len - NOISE_DHLEN);
		handshake_fail(hs);
		return -1;
	}
	mix_hash(hs, msg + NOISE_DHLEN, len - NOISE_DHLEN);
	hs->step++;
	return n;
}

int
noise_handshake_split(struct noise_handshake *hs, struct noise_session *s)
{
	unsigned char k1[NOISE_HASHLEN], k2[NOISE_HASHLEN];

	if (hs->step != 2)
		return -1;
	memset(s, 0, sizeof *s);
	hkdf(hs->ck, NULL, 0, k1, k2, NULL);
	cipher_init(&s->send, hs->initiator ? k1 : k2);
	cipher_init(&s->recv, hs->initiator ? k2 : k1);
	memcpy(s->h, hs->h, NOISE_HASHLEN);
	sodium_memzero(k1, sizeof k1);
	sodium_memzero(k2, sizeof k2);
	noise_handshake_clear(hs);
	return 0;
}

void
noise_handshake_clear(struct noise_handshake *hs)
{
	sodium_memzero(hs, sizeof *hs);
}

long
noise_encrypt(struct noise_cipher *c, const void *pt, size_t len, unsigned char *out)
{
	return cipher_encrypt(c, NULL, 0, pt, len, out);
}

long
noise_decrypt(struct noise_cipher *c, const unsigned char *ct, size_t len,
    unsigned char *out)
{
	return cipher_decrypt(c, NULL, 0, ct, len, out);
}

void
noise_session_clear(struct noise_session *s)
{
	sodium_memzero(s, sizeof *s);
}

int
noise_send_frame(struct noise_cipher *c, const void *frame, size_t len,
    noise_place_fn place, void *ctx)
{
	const unsigned char *p = frame;

	do {
		size_t n = len < NOISE_MAX_PIECE ? len : NOISE_MAX_PIECE;
		unsigned char *msg = place(ctx, n + 1 + NOISE_TAGLEN);

		if (!msg)
			return -1;
		/* Encrypted where it will be sent from: the piece is copied once. */
		msg[0] = n == len ? NOISE_PIECE_FINAL : 0;
		if (n)
			memcpy(msg + 1, p, n);
		if (noise_encrypt(c, msg, n + 1, msg) < 0) {
			sodium_memzero(msg, n + 1);
			return -1;
		}
		p += n;
		len -= n;
	} while (len > 0);
	return 0;
}

/* acc holds one spare byte, then the frame so far. A piece decrypts straight to its place
 * after the frame, its flag byte onto the byte before it (kept and put back): the
 * plaintext is neither copied nor left on the stack. */
void
noise_reassembly_init(struct noise_reassembly *r, size_t max_frame)
{
	buf_init(&r->acc, max_frame + 1);
}

void
noise_reassembly_clear(struct noise_reassembly *r)
{
	buf_wipe(&r->acc);
}

const unsigned char *
noise_reassembly_frame(const struct noise_reassembly *r, size_t *len)
{
	*len = r->acc.len ? r->acc.len - 1 : 0;
	return r->acc.len ? buf_data(&r->acc) + 1 : (const unsigned char *)"";
}

void
noise_reassembly_reset(struct noise_reassembly *r)
{
	buf_reset(&r->acc);
}

int
noise_recv_piece(struct noise_cipher *c, struct noise_reassembly *r,
    const unsigned char *msg, size_t len)
{
	unsigned char *at, keep, flag;

	if (len < NOISE_TAGLEN + 1 || len > NOISE_MAX_MSG)
		goto fail;
	if (r->acc.len == 0 && len == NOISE_TAGLEN + 1) {
		/* An empty piece with no frame begun (a keepalive, or an empty frame): the
		 * flag alone, so it takes no memory. */
		if (noise_decrypt(c, msg, len, &flag) < 0 || (flag & ~NOISE_PIECE_FINAL))
			goto fail;
		return flag == NOISE_PIECE_FINAL;
	}
	if (r->acc.len == 0 && buf_append(&r->acc, "", 1) < 0)
		goto fail;
	if (buf_reserve(&r->acc, len - NOISE_TAGLEN - 1) < 0)
		goto fail;
	at = buf_data(&r->acc) + r->acc.len - 1;
	keep = *at;
	if (noise_decrypt(c, msg, len, at) < 0) {
		*at = keep;
		goto fail;
	}
	flag = *at;
	*at = keep;
	if (flag & ~NOISE_PIECE_FINAL) {
		sodium_memzero(at + 1, len - NOISE_TAGLEN - 1);
		goto fail;
	}
	r->acc.len += len - NOISE_TAGLEN - 1;
	return flag == NOISE_PIECE_FINAL;
fail:
	buf_reset(&r->acc);
	return -1;
}
