/* txt: a resolved advertisement's TXT rdata (any bytes, parsed as avahi does) through
 * dnssd.c's record check, and tag verification as nws-browse matches with it. A record
 * that is accepted has a well-formed tag; a tag verifies only in its canonical text; a
 * tag made for a nonce verifies, and no longer with one character or the port changed.
 * Input: bytes 0-1 the port, byte 2 picks IPv4 or link-local IPv6 and which tag
 * character to change, the rest the rdata (also tried whole as a tag). dnssd.c is
 * included for its static item_fill, the function that checks what avahi resolved. */
#include "../../libcommon/dnssd.c"

#include <arpa/inet.h>
#include <sodium.h>

#include "fuzz.h"

#define B64URL "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

static const struct keys fixed_keys = {
	.disc = "nws fuzz: a fixed discovery key",
};

/* t verified for port: it must be the canonical tag of the nonce it holds. */
static void
check_canonical(uint16_t port, const char *t)
{
	unsigned char raw[KEYS_NONCE_LEN + KEYS_TAG_LEN];
	char again[KEYS_TAG_TEXT_LEN];
	size_t rawlen = 0;

	fuzz_check(sodium_base642bin(raw, sizeof raw, t, strlen(t), NULL, &rawlen, NULL,
	    sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 && rawlen == sizeof raw);
	keys_tag_make_nonce(&fixed_keys, port, raw, again);
	fuzz_check(strcmp(again, t) == 0);
}

static void
check_record(const uint8_t *rdata, size_t n, uint16_t port, int v6)
{
	AvahiStringList *l = NULL;
	AvahiAddress a;

	if (avahi_string_list_parse(rdata, n, &l) < 0)
		return;
	memset(&a, 0, sizeof a);
	if (v6) {
		a.proto = AVAHI_PROTO_INET6;
		a.data.ipv6.address[0] = 0xfe;
		a.data.ipv6.address[1] = 0x80;
		a.data.ipv6.address[15] = 1;
	} else {
		a.proto = AVAHI_PROTO_INET;
		a.data.ipv4.address = htonl(0x0a000001);
	}
	struct item *it = calloc(1, sizeof *it);
	fuzz_check(it && (it->name = strdup("0123456789abcdef")) &&
	    (it->domain = strdup("local")));
	if (item_fill(it, 1, "host.local", &a, port, l) == 0) {
		const struct dnssd_record *r = &it->rec;
		fuzz_check(r->tag && strlen(r->tag) == KEYS_TAG_TEXT_LEN - 1 &&
		    strspn(r->tag, B64URL) == KEYS_TAG_TEXT_LEN - 1 && keys_tag_form_ok(r->tag));
		fuzz_check(r->port == port && r->address && r->interface && r->host);
		if (keys_tag_verify(&fixed_keys, r->port, r->tag))
			check_canonical(r->port, r->tag);
	}
	item_free(it);
	avahi_string_list_free(l);
}

int
LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	unsigned char nonce[KEYS_NONCE_LEN] = { 0 };
	char t[KEYS_TAG_TEXT_LEN];

	if (n < 3)
		return 0;
	uint16_t port = (uint16_t)(p[0] << 8 | p[1]);
	check_record(p + 3, n - 3, port, p[2] & 1);

	memcpy(nonce, p + 3, n - 3 < sizeof nonce ? n - 3 : sizeof nonce);
	keys_tag_make_nonce(&fixed_keys, port, nonce, t);
	fuzz_check(keys_tag_verify(&fixed_keys, port, t) == 1);
	fuzz_check(keys_tag_verify(&fixed_keys, port ^ 1, t) == 0);
	size_t i = (p[2] >> 1) % (KEYS_TAG_TEXT_LEN - 1);
	const char *c = strchr(B64URL, t[i]);
	fuzz_check(c != NULL);
	t[i] = B64URL[(size_t)(c - B64URL + 1 + p[2] % 63) % 64];
	fuzz_check(keys_tag_verify(&fixed_keys, port, t) == 0);

	char *any = strndup((const char *)p + 3, n - 3);
	fuzz_check(any != NULL);
	if (keys_tag_verify(&fixed_keys, port, any))
		check_canonical(port, any);
	free(any);
	return 0;
}
