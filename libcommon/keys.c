#include "keys.h"

#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#define SALT_TEXT "nws/1 channel"
#define DISC_TEXT "nws/1 discovery"
#define LINK_TEXT "nws/1 link"
#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
#define TAG_RAW_LEN (KEYS_NONCE_LEN + KEYS_TAG_LEN)

int
keys_name_valid(const char *name)
{
	size_t n = 0;

	if (!name)
		return 0;
	for (; name[n]; n++) {
		char c = name[n];
		if (n >= KEYS_NAME_MAX)
			return 0;
		if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    strchr("+=*._-", c)))
			return 0;
	}
	return n > 0;
}

/* The salt is fixed so that every node derives the same K from the same name; it only
 * separates nws from other users of Argon2id on the same low-entropy strings. */
static void
keys_salt(unsigned char salt[crypto_pwhash_SALTBYTES])
{
	unsigned char h[32];

	crypto_generichash(h, sizeof h, (const unsigned char *)SALT_TEXT, strlen(SALT_TEXT),
	    NULL, 0);
	memcpy(salt, h, crypto_pwhash_SALTBYTES);
	sodium_memzero(h, sizeof h);
}

static void
keys_subkeys(struct keys *k)
{
	crypto_generichash(k->disc, KEYS_LEN, (const unsigned char *)DISC_TEXT,
	    strlen(DISC_TEXT), k->channel, KEYS_LEN);
	crypto_generichash(k->link, KEYS_LEN, (const unsigned char *)LINK_TEXT,
	    strlen(LINK_TEXT), k->channel, KEYS_LEN);
}

struct keys *
keys_derive(const char *name)
{
	unsigned char salt[crypto_pwhash_SALTBYTES];
	struct keys *k;

	if (!keys_name_valid(name) || sodium_init() < 0)
		return NULL;
	if (!(k = sodium_malloc(sizeof *k)))
		return NULL;
	keys_salt(salt);
	if (crypto_pwhash(k->channel, KEYS_LEN, name, strlen(name), salt,
	    crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE,
	    crypto_pwhash_ALG_ARGON2ID13) != 0) {
		keys_free(k);
		return NULL;
	}
	keys_subkeys(k);
	return k;
}

struct keys *
keys_from_channel_key(const unsigned char channel_key[KEYS_LEN])
{
	struct keys *k;

	if (sodium_init() < 0 || !(k = sodium_malloc(sizeof *k)))
		return NULL;
	memcpy(k->channel, channel_key, KEYS_LEN);
	keys_subkeys(k);
	return k;
}

void
keys_free(struct keys *k)
{
	/* sodium_free zeroes the region before unmapping it. */
	if (k)
		sodium_free(k);
}

static void
keys_tag_raw(const struct keys *k, uint16_t port, const unsigned char nonce[KEYS_NONCE_LEN],
    unsigned char tag[KEYS_TAG_LEN])
{
	crypto_generichash_state st;
	unsigned char be[2] = { port >> 8, port & 0xff };

	crypto_generichash_init(&st, k->disc, KEYS_LEN, KEYS_TAG_LEN);
	crypto_generichash_update(&st, nonce, KEYS_NONCE_LEN);
	crypto_generichash_update(&st, be, sizeof be);
	crypto_generichash_final(&st, tag, KEYS_TAG_LEN);
	sodium_memzero(&st, sizeof st);
}

void
keys_tag_make_nonce(const struct keys *k, uint16_t port,
    const unsigned char nonce[KEYS_NONCE_LEN], char out[KEYS_TAG_TEXT_LEN])
{
	unsigned char raw[TAG_RAW_LEN];

	memcpy(raw, nonce, KEYS_NONCE_LEN);
	keys_tag_raw(k, port, nonce, raw + KEYS_NONCE_LEN);
	sodium_bin2base64(out, KEYS_TAG_TEXT_LEN, raw, sizeof raw,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

void
keys_tag_make(const struct keys *k, uint16_t port, char out[KEYS_TAG_TEXT_LEN])
{
	unsigned char nonce[KEYS_NONCE_LEN];

	randombytes_buf(nonce, sizeof nonce);
	keys_tag_make_nonce(k, port, nonce, out);
}

/* raw gets nonce || tag when t is exactly their base64url text. */
static int
keys_tag_decode(const char *t, unsigned char raw[TAG_RAW_LEN])
{
	size_t rawlen = 0;
	const char *end = NULL;

	if (!t || strnlen(t, KEYS_TAG_TEXT_LEN) != KEYS_TAG_TEXT_LEN - 1)
		return -1;
	/* libsodium 1.0.18 decodes some bytes >= 0x80 as '-' or '_' (its constant-time char
	 * compare sees only the low byte of a sign-extended char), so check the alphabet. */
	if (strspn(t, B64URL) != KEYS_TAG_TEXT_LEN - 1)
		return -1;
	/* Strict: no ignored characters, nothing left over, exactly 32 bytes. 43 characters
	 * carry 258 bits, so a non-canonical last character is also rejected by libsodium. */
	if (sodium_base642bin(raw, TAG_RAW_LEN, t, KEYS_TAG_TEXT_LEN - 1, NULL, &rawlen, &end,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0 || rawlen != TAG_RAW_LEN ||
	    end != t + KEYS_TAG_TEXT_LEN - 1)
		return -1;
	return 0;
}

int
keys_tag_form_ok(const char *t)
{
	unsigned char raw[TAG_RAW_LEN];

	return keys_tag_decode(t, raw) == 0;
}

int
keys_tag_verify(const struct keys *k, uint16_t port, const char *t)
{
	unsigned char raw[TAG_RAW_LEN], tag[KEYS_TAG_LEN];

	if (!k || keys_tag_decode(t, raw) < 0)
		return 0;
	keys_tag_raw(k, port, raw, tag);
	return sodium_memcmp(tag, raw + KEYS_NONCE_LEN, KEYS_TAG_LEN) == 0;
}

void
keys_random_hex(char *out, size_t nbytes)
{
	unsigned char b[64];
	size_t off = 0;

	if (sodium_init() < 0)
		abort();
	/* Chunked so that any size works without a variable-length array. */
	while (off < nbytes) {
		size_t n = nbytes - off < sizeof b ? nbytes - off : sizeof b;
		randombytes_buf(b, n);
		sodium_bin2hex(out + 2 * off, 2 * n + 1, b, n);
		off += n;
	}
	if (nbytes == 0)
		out[0] = '\0';
}
