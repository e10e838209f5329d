/* keys: channel names and what is derived from them (nws(7) DISCOVERY): the Argon2id
 * channel key, its discovery and link subkeys, and the DNS-SSD tag that proves an
 * advertisement belongs to a channel without naming it. Derived keys live in
 * sodium-locked memory. */
#ifndef NWS_KEYS_H
#define NWS_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEYS_LEN 32
#define KEYS_NAME_MAX 255
#define KEYS_NONCE_LEN 16
#define KEYS_TAG_LEN 16
/* base64url, no padding, of nonce || tag: 32 bytes -> 43 characters, plus NUL. */
#define KEYS_TAG_TEXT_LEN 44

struct keys {
	unsigned char channel[KEYS_LEN];   /* K */
	unsigned char disc[KEYS_LEN];      /* K_disc */
	unsigned char link[KEYS_LEN];      /* K_link */
};

/* 1 when name matches ^[A-Za-z0-9+=*._-]{1,255}$, else 0. */
int keys_name_valid(const char *name);

/* Allocates (sodium_malloc) and derives the keys of a channel. NULL on an invalid name or
 * out of memory. keys_free wipes and frees. */
struct keys *keys_derive(const char *name);
/* The same from K itself, as an earlier stage of a pipeline derived it (the `key` of an
 * `open` frame): no Argon2id. NULL on out of memory. */
struct keys *keys_from_channel_key(const unsigned char channel_key[KEYS_LEN]);
void keys_free(struct keys *k);

/* The TXT "t=" value for an advertisement at port with a fresh random nonce. */
void keys_tag_make(const struct keys *k, uint16_t port, char out[KEYS_TAG_TEXT_LEN]);
/* The same with a given nonce (for tests and known answers). */
void keys_tag_make_nonce(const struct keys *k, uint16_t port,
    const unsigned char nonce[KEYS_NONCE_LEN], char out[KEYS_TAG_TEXT_LEN]);
/* 1 when t has the form of a tag: exactly KEYS_TAG_TEXT_LEN - 1 base64url characters
 * that decode to nonce || tag, nothing else. */
int keys_tag_form_ok(const char *t);
/* 1 when t is a tag of k for port (constant-time compare), 0 otherwise, including for t
 * that is not well-formed. */
int keys_tag_verify(const struct keys *k, uint16_t port, const char *t);

/* n random bytes as 2n lowercase hex characters plus NUL (peer ids, instances). */
void keys_random_hex(char *out, size_t nbytes);

#endif
