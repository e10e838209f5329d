#include "frame.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cbor.h>
#include <jansson.h>
#include <sodium.h>

#include "cbortext.h"
#include "jsontext.h"

/* RFC 8949 tag registry: "embedded JSON", a byte string holding JSON text. */
#define TAG_EMBEDDED_JSON 262

static const char *action_names[] = {
	[ACTION_UNKNOWN] = NULL,
	[ACTION_OPEN] = "open",
	[ACTION_CLOSE] = "close",
	[ACTION_FOUND] = "found",
	[ACTION_LOST] = "lost",
	[ACTION_LISTENING] = "listening",
	[ACTION_ADVERTISED] = "advertised",
	[ACTION_CONNECT] = "connect",
	[ACTION_DISCONNECT] = "disconnect",
	[ACTION_BROADCAST] = "broadcast",
	[ACTION_MESSAGE] = "message",
	[ACTION_STATUS] = "status",
	[ACTION_LINKED] = "linked",
	[ACTION_UNLINKED] = "unlinked",
	[ACTION_ERROR] = "error",
	[ACTION_END] = "end",
};
#define NACTIONS (sizeof action_names / sizeof action_names[0])

/* The keys of the map in the order JSON output writes them (action first, so that
 * frame_peek_action finds it at a fixed place in frames nws wrote itself). */
enum key_kind { K_ACTION, K_STR, K_INT, K_DATA, K_KEY };
struct key {
	const char *name;
	size_t namelen;
	enum key_kind kind;
	size_t off;   /* of the char * or int64_t field */
};
#define KEY(n, k, f) { n, sizeof n - 1, k, offsetof(struct frame, f) }
static const struct key keys[] = {
	KEY("action", K_ACTION, action),
	KEY("channel", K_STR, channel),
	KEY("source", K_STR, source),
	KEY("target", K_STR, target),
	KEY("data", K_DATA, data),
	KEY("instance", K_STR, instance),
	KEY("host", K_STR, host),
	KEY("address", K_STR, address),
	KEY("port", K_INT, port),
	KEY("path", K_STR, path),
	KEY("interface", K_STR, interface),
	KEY("domain", K_STR, domain),
	KEY("node", K_STR, node),
	KEY("code", K_INT, code),
	KEY("reason", K_STR, reason),
	KEY("key", K_KEY, key),
};

int frame_json_keys;
#define NKEYS (sizeof keys / sizeof keys[0])
_Static_assert(NKEYS <= 32, "cb_decode marks the keys it saw in 32 bits");

static char **
str_field(struct frame *f, const struct key *k)
{
	return (char **)((char *)f + k->off);
}

static int64_t *
int_field(struct frame *f, const struct key *k)
{
	return (int64_t *)((char *)f + k->off);
}

static const struct key *
key_find(const char *s, size_t n)
{
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].namelen == n && memcmp(keys[i].name, s, n) == 0)
			return &keys[i];
	return NULL;
}

/* Range a K_INT field must be in: port is a TCP port, code an exit-status-like number. */
static int
int_ok(const struct key *k, int64_t v)
{
	if (k->off == offsetof(struct frame, port))
		return v >= 0 && v <= 65535;
	return v >= 0;
}

void
frame_init(struct frame *f)
{
	memset(f, 0, sizeof *f);
	f->port = -1;
	f->code = -1;
}

void
frame_view(struct frame *f, enum frame_action a)
{
	frame_init(f);
	f->action = a;
	f->borrowed = 1;
}

void
frame_error(struct frame *f, int64_t code, const char *reason)
{
	frame_view(f, ACTION_ERROR);
	f->code = code;
	f->reason = (char *)reason;
}

void
frame_clear(struct frame *f)
{
	assert(!f->borrowed);
	free(f->action_name);
	for (size_t i = 0; i < NKEYS; i++)
		if (keys[i].kind == K_STR)
			free(*str_field(f, &keys[i]));
	free(f->data);
	if (f->has_key)
		sodium_memzero(f->key, sizeof f->key);
	frame_init(f);
}

const char *
frame_action_name(const struct frame *f)
{
	if (f->action > ACTION_UNKNOWN && (size_t)f->action < NACTIONS)
		return action_names[f->action];
	return f->action_name;
}

static enum frame_action
action_lookup(const char *s, size_t n)
{
	for (size_t i = 1; i < NACTIONS; i++)
		if (strlen(action_names[i]) == n && memcmp(action_names[i], s, n) == 0)
			return (enum frame_action)i;
	return ACTION_UNKNOWN;
}

enum frame_action
frame_action_parse(const char *s)
{
	return s ? action_lookup(s, strlen(s)) : ACTION_UNKNOWN;
}

int
frame_set(char **field, const char *s)
{
	char *c = NULL;
	if (s && !(c = strdup(s)))
		return -1;
	free(*field);
	*field = c;
	return 0;
}

static int
set_n(char **field, const void *p, size_t n)
{
	char *c = malloc(n + 1);
	if (!c)
		return -1;
	memcpy(c, p, n);
	c[n] = 0;
	free(*field);
	*field = c;
	return 0;
}

int
frame_set_data(struct frame *f, enum frame_data kind, const void *p, size_t n)
{
	unsigned char *c = NULL;
	size_t len = 0;
	if (kind == DATA_JSON) {
		/* Kept compact so that it can be written inside one JSON line as is. */
		if (jsontext_check(p, n, 1, NULL, 0) < 0)
			return -1;
		if (!(c = malloc(n + 1)))
			return -1;
		len = jsontext_compact(c, p, n);
		c[len] = 0;
	} else if (kind != DATA_NONE) {
		if (!(c = malloc(n + 1)))
			return -1;
		if (n)
			memcpy(c, p, n);
		c[n] = 0;
		len = n;
	}
	free(f->data);
	f->data = c;
	f->data_len = len;
	f->data_kind = c ? kind : DATA_NONE;
	return 0;
}

static int
set_action(struct frame *f, const char *s, size_t n)
{
	f->action = action_lookup(s, n);
	if (f->action == ACTION_UNKNOWN)
		return set_n(&f->action_name, s, n);
	return 0;
}

enum frame_format
frame_detect(unsigned char first)
{
	if (first == '{' || first == ' ' || first == '\t' || first == '\r' || first == '\n')
		return FORMAT_JSON;
	if (cbortext_is_map(first))
		return FORMAT_CBOR;
	return FORMAT_UNKNOWN;
}

/* ---- JSON ---- */

static int
json_str_field(json_t *v, const char *key, const char **s, size_t *n, char *err, size_t errlen)
{
	if (!json_is_string(v)) {
		snprintf(err, errlen, "\"%s\" must be a string", key);
		return -1;
	}
	*s = json_string_value(v);
	*n = json_string_length(v);
	if (memchr(*s, 0, *n)) {
		snprintf(err, errlen, "\"%s\" contains a NUL character", key);
		return -1;
	}
	return 0;
}

/* An integer, also as parsed on the JSON_DECODE_INT_AS_REAL retry (a whole real). */
static int
json_int(json_t *v, int64_t *x)
{
	if (json_is_integer(v)) {
		*x = json_integer_value(v);
		return 0;
	}
	double d = json_is_real(v) ? json_real_value(v) : -1;
	if (!(d >= 0 && d < 9.2e18) || d != (double)(int64_t)d)
		return -1;
	*x = (int64_t)d;
	return 0;
}

static int
json_data(struct frame *f, json_t *obj, json_t *v, const unsigned char *buf, size_t len,
    char *err, size_t errlen)
{
	json_t *enc = json_object_get(obj, "encoding");
	if (enc) {
		if (!json_is_string(enc) || strcmp(json_string_value(enc), "base64") != 0) {
			snprintf(err, errlen, "\"encoding\" must be \"base64\"");
			return -1;
		}
		if (!json_is_string(v)) {
			snprintf(err, errlen, "\"encoding\":\"base64\" needs a string \"data\"");
			return -1;
		}
		const char *s = json_string_value(v);
		size_t n = json_string_length(v), out;
		const char *end;
		unsigned char *bin = malloc(n / 4 * 3 + 1);
		if (!bin) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		if (sodium_base642bin(bin, n / 4 * 3 + 1, s, n, NULL, &out, &end,
		    sodium_base64_VARIANT_ORIGINAL) != 0 || end != s + n) {
			free(bin);
			snprintf(err, errlen, "\"data\" is not valid base64");
			return -1;
		}
		bin[out] = 0;
		f->data = bin;
		f->data_len = out;
		f->data_kind = DATA_BYTES;
		return 0;
	}
	if (json_is_string(v)) {
		const char *s;
		size_t n;
		if (json_str_field(v, "data", &s, &n, err, errlen) < 0)
			return -1;
		if (set_n((char **)&f->data, s, n) < 0) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		f->data_len = n;
		f->data_kind = DATA_TEXT;
		return 0;
	}
	/* Any other value: keep the sender's own text (numbers exactly as written). */
	const unsigned char *vs;
	size_t vn;
	char *dumped = NULL;
	if (jsontext_span(buf, len, "data", &vs, &vn) < 0) {
		/* The key was written with escapes: jansson's rendering is the best left. */
		if (!(dumped = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY))) {
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		vs = (const unsigned char *)dumped;
		vn = strlen(dumped);
	}
	int rc = frame_set_data(f, DATA_JSON, vs, vn);
	free(dumped);
	if (rc < 0)
		snprintf(err, errlen, "\"data\" is not valid JSON or memory is out");
	return rc;
}

/* jansson's reading of JSON text as the JSON decoder takes it: no key twice in any
 * object. flags: 0 for a frame, JSON_DECODE_ANY for a "data" value. */
static json_t *
json_load(const unsigned char *buf, size_t len, size_t flags, json_error_t *je)
{
	flags |= JSON_REJECT_DUPLICATES;
	json_t *obj = json_loadb((const char *)buf, len, flags, je);
	/* An integer past int64 (a JavaScript 1e19) is still JSON a client may send in
	 * "data", whose text is kept as written anyway: parse once more taking it as real. */
	if (!obj && json_error_code(je) == json_error_numeric_overflow)
		obj = json_loadb((const char *)buf, len, flags | JSON_DECODE_INT_AS_REAL, je);
	return obj;
}

/* 0 when p[0..n) is a "data" value the JSON decoder would take: valid JSON text that
 * jansson also reads (a real in range, no key twice). Else -1 and a reason in why. */
static int
json_data_check(const unsigned char *p, size_t n, char *why, size_t whylen)
{
	json_error_t je;
	json_t *v;

	if (jsontext_check(p, n, 1, why, whylen) < 0)
		return -1;
	if (!(v = json_load(p, n, JSON_DECODE_ANY, &je))) {
		snprintf(why, whylen, "%.64s", je.text);
		return -1;
	}
	json_decref(v);
	return 0;
}

static int
json_decode(struct frame *f, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	/* The same check (and reasons) as the stream reader's; jansson then only rejects
	 * what it cannot represent. */
	char why[96];
	if (jsontext_check(buf, len, 0, why, sizeof why) < 0) {
		snprintf(err, errlen, "invalid JSON: %s", why);
		return -1;
	}
	json_error_t je;
	json_t *obj = json_load(buf, len, 0, &je);
	if (!obj) {
		snprintf(err, errlen, "invalid JSON at column %d: %s", je.column, je.text);
		return -1;
	}
	int rc = -1;
	if (!json_is_object(obj)) {
		snprintf(err, errlen, "a frame must be a JSON object");
		goto out;
	}
	if (!json_object_get(obj, "action")) {
		snprintf(err, errlen, "\"action\" is missing");
		goto out;
	}
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		json_t *v = json_object_get(obj, k->name);
		const char *s;
		size_t n;
		if (!v)
			continue;
		switch (k->kind) {
		case K_ACTION:
			if (json_str_field(v, k->name, &s, &n, err, errlen) < 0)
				goto out;
			if (set_action(f, s, n) < 0)
				goto oom;
			break;
		case K_STR:
			if (json_str_field(v, k->name, &s, &n, err, errlen) < 0)
				goto out;
			if (set_n(str_field(f, k), s, n) < 0)
				goto oom;
			break;
		case K_INT:
			if (json_int(v, int_field(f, k)) < 0 || !int_ok(k, *int_field(f, k))) {
				snprintf(err, errlen, "\"%s\" must be an integer in range", k->name);
				goto out;
			}
			break;
		case K_DATA:
			if (json_data(f, obj, v, buf, len, err, errlen) < 0)
				goto out;
			break;
		case K_KEY: {
			size_t kn = 0;
			const char *end = NULL;
			if (json_str_field(v, k->name, &s, &n, err, errlen) < 0)
				goto out;
			if (sodium_base642bin(f->key, sizeof f->key, s, n, NULL, &kn, &end,
			    sodium_base64_VARIANT_ORIGINAL) != 0 || kn != sizeof f->key ||
			    end != s + n) {
				sodium_memzero(f->key, sizeof f->key);
				snprintf(err, errlen, "\"key\" must be %d bytes in base64",
				    FRAME_KEY_LEN);
				goto out;
			}
			f->has_key = 1;
			break;
		}
		}
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	json_decref(obj);
	return rc;
}

static int
json_put_str(struct buf *out, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	if (buf_reserve(out, 2) < 0)
		return -1;
	out->p[out->off + out->len++] = '"';
	size_t i = 0;
	while (i < n) {
		size_t j = i + jsontext_plain_run((const unsigned char *)s + i, n - i);
		if (buf_append(out, s + i, j - i) < 0)
			return -1;
		if (j == n)
			break;
		unsigned char c = (unsigned char)s[j], e[6] = { '\\', 0 };
		size_t en = 2;
		switch (c) {
		case '"': e[1] = '"'; break;
		case '\\': e[1] = '\\'; break;
		case '\n': e[1] = 'n'; break;
		case '\r': e[1] = 'r'; break;
		case '\t': e[1] = 't'; break;
		case '\b': e[1] = 'b'; break;
		case '\f': e[1] = 'f'; break;
		default:
			memcpy(e + 1, "u00", 3);
			e[4] = hex[c >> 4];
			e[5] = hex[c & 15];
			en = 6;
		}
		if (buf_append(out, e, en) < 0)
			return -1;
		i = j + 1;
	}
	return buf_append(out, "\"", 1);
}

static int
json_put_key(struct buf *out, const struct key *k, int first)
{
	if (!first && buf_append(out, ",", 1) < 0)
		return -1;
	if (buf_append(out, "\"", 1) < 0 || buf_append(out, k->name, k->namelen) < 0)
		return -1;
	return buf_append(out, "\":", 2);
}

static int
json_put_data(struct buf *out, const struct frame *f)
{
	switch (f->data_kind) {
	case DATA_TEXT:
		return json_put_str(out, (const char *)f->data, f->data_len);
	case DATA_JSON:
		return buf_append(out, f->data, f->data_len);
	case DATA_BYTES: {
		size_t n = sodium_base64_encoded_len(f->data_len, sodium_base64_VARIANT_ORIGINAL);
		if (buf_reserve(out, n + 1) < 0)
			return -1;
		char *p = (char *)out->p + out->off + out->len;
		*p = '"';
		sodium_bin2base64(p + 1, n, f->data, f->data_len, sodium_base64_VARIANT_ORIGINAL);
		p[n] = '"';   /* n counts the NUL after the text, which the quote replaces */
		out->len += n + 1;
		return buf_append(out, ",\"encoding\":\"base64\"", 20);
	}
	case DATA_NONE:
		break;
	}
	return 0;
}

static int
json_encode(const struct frame *f, struct buf *out)
{
	if (buf_append(out, "{", 1) < 0)
		return -1;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		struct frame *ff = (struct frame *)f;
		const char *s;
		int rc = 0;
		switch (k->kind) {
		case K_ACTION:
			s = frame_action_name(f);
			rc = json_put_key(out, k, 1);
			if (!rc)
				rc = json_put_str(out, s, strlen(s));
			break;
		case K_STR:
			if (!(s = *str_field(ff, k)))
				continue;
			rc = json_put_key(out, k, 0);
			if (!rc)
				rc = json_put_str(out, s, strlen(s));
			break;
		case K_INT: {
			char num[24];
			if (*int_field(ff, k) < 0)
				continue;
			int n = snprintf(num, sizeof num, "%lld", (long long)*int_field(ff, k));
			rc = json_put_key(out, k, 0);
			if (!rc)
				rc = buf_append(out, num, (size_t)n);
			break;
		}
		case K_DATA:
			if (f->data_kind == DATA_NONE)
				continue;
			rc = json_put_key(out, k, 0);
			if (!rc)
				rc = json_put_data(out, f);
			break;
		case K_KEY: {
			char b64[sodium_base64_ENCODED_LEN(FRAME_KEY_LEN, sodium_base64_VARIANT_ORIGINAL)];
			if (!f->has_key || !frame_json_keys)
				continue;
			sodium_bin2base64(b64, sizeof b64, f->key, sizeof f->key,
			    sodium_base64_VARIANT_ORIGINAL);
			rc = json_put_key(out, k, 0);
			if (!rc)
				rc = json_put_str(out, b64, strlen(b64));
			sodium_memzero(b64, sizeof b64);
			break;
		}
		}
		if (rc < 0)
			return -1;
	}
	return buf_append(out, "}\n", 2);
}

/* ---- CBOR ---- */

static int
cb_reserve_put(struct buf *out, size_t (*enc)(uint64_t, unsigned char *, size_t), uint64_t v)
{
	if (buf_reserve(out, 9) < 0)
		return -1;
	out->len += enc(v, out->p + out->off + out->len, 9);
	return 0;
}

static size_t
enc_map(uint64_t n, unsigned char *p, size_t cap)
{
	return cbor_encode_map_start((size_t)n, p, cap);
}

static size_t
enc_tstr(uint64_t n, unsigned char *p, size_t cap)
{
	return cbor_encode_string_start((size_t)n, p, cap);
}

static size_t
enc_bstr(uint64_t n, unsigned char *p, size_t cap)
{
	return cbor_encode_bytestring_start((size_t)n, p, cap);
}

static int
cb_put_tstr(struct buf *out, const void *s, size_t n)
{
	if (cb_reserve_put(out, enc_tstr, n) < 0)
		return -1;
	return buf_append(out, s, n);
}

static int
cb_encode(const struct frame *f, struct buf *out)
{
	struct frame *ff = (struct frame *)f;
	size_t n = 0;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		n += k->kind == K_ACTION || (k->kind == K_STR && *str_field(ff, k)) ||
		    (k->kind == K_INT && *int_field(ff, k) >= 0) ||
		    (k->kind == K_DATA && f->data_kind != DATA_NONE) ||
		    (k->kind == K_KEY && f->has_key);
	}
	if (cb_reserve_put(out, enc_map, n) < 0)
		return -1;
	for (size_t i = 0; i < NKEYS; i++) {
		const struct key *k = &keys[i];
		const char *s;
		switch (k->kind) {
		case K_ACTION:
			s = frame_action_name(f);
			if (cb_put_tstr(out, k->name, k->namelen) < 0 ||
			    cb_put_tstr(out, s, strlen(s)) < 0)
				return -1;
			break;
		case K_STR:
			if (!(s = *str_field(ff, k)))
				break;
			if (cb_put_tstr(out, k->name, k->namelen) < 0 ||
			    cb_put_tstr(out, s, strlen(s)) < 0)
				return -1;
			break;
		case K_INT:
			if (*int_field(ff, k) < 0)
				break;
			if (cb_put_tstr(out, k->name, k->namelen) < 0 ||
			    cb_reserve_put(out, cbor_encode_uint, (uint64_t)*int_field(ff, k)) < 0)
				return -1;
			break;
		case K_DATA:
			if (f->data_kind == DATA_NONE)
				break;
			if (cb_put_tstr(out, k->name, k->namelen) < 0)
				return -1;
			if (f->data_kind == DATA_JSON &&
			    cb_reserve_put(out, cbor_encode_tag, TAG_EMBEDDED_JSON) < 0)
				return -1;
			if (cb_reserve_put(out, f->data_kind == DATA_TEXT ? enc_tstr : enc_bstr,
			    f->data_len) < 0 || buf_append(out, f->data, f->data_len) < 0)
				return -1;
			break;
		case K_KEY:
			if (!f->has_key)
				break;
			if (cb_put_tstr(out, k->name, k->namelen) < 0 ||
			    cb_reserve_put(out, enc_bstr, sizeof f->key) < 0 ||
			    buf_append(out, f->key, sizeof f->key) < 0)
				return -1;
			break;
		}
	}
	return 0;
}

/* A text value's bytes at p (a whole item): checked to be a definite text string, UTF-8,
 * without NUL. */
static int
cb_text(const unsigned char *p, size_t n, const char *key, const unsigned char **s,
    size_t *sn, char *err, size_t errlen)
{
	if (cbortext_text(p, n, s, sn) < 0) {
		snprintf(err, errlen, "\"%s\" must be a text string", key);
		return -1;
	}
	if (memchr(*s, 0, *sn)) {
		snprintf(err, errlen, "\"%s\" contains a NUL character", key);
		return -1;
	}
	if (!jsontext_utf8(*s, *sn)) {
		snprintf(err, errlen, "\"%s\" is not valid UTF-8", key);
		return -1;
	}
	return 0;
}

/* Embedded JSON holding a string is the text itself: stored as DATA_TEXT, so that JSON
 * written from it reads back as the same frame. */
static int
embedded_json(struct frame *f, const unsigned char *p, size_t n)
{
	size_t i = 0;
	while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
		i++;
	if (i == n || p[i] != '"')
		return frame_set_data(f, DATA_JSON, p, n);
	json_t *v = json_loadb((const char *)p, n, JSON_DECODE_ANY, NULL);
	int rc = v ? frame_set_data(f, DATA_TEXT, json_string_value(v), json_string_length(v)) : -1;
	json_decref(v);
	return rc;
}

static int
cb_data(struct frame *f, const unsigned char *p, size_t n, char *err, size_t errlen)
{
	int rc;
	struct cbortext_head h;
	const unsigned char *s;
	size_t sn;
	cbortext_head(p, n, &h);
	if (h.major == 3) {
		if (cb_text(p, n, "data", &s, &sn, err, errlen) < 0)
			return -1;
		rc = frame_set_data(f, DATA_TEXT, s, sn);
	} else if (h.major == 2) {
		rc = frame_set_data(f, DATA_BYTES, p + h.len, (size_t)h.arg);
	} else if (h.major == 6 && h.arg == TAG_EMBEDDED_JSON) {
		p += h.len;
		n -= h.len;
		if (cbortext_head(p, n, &h) != 1 || h.major != 2) {
			snprintf(err, errlen, "tag 262 \"data\" must hold a byte string");
			return -1;
		}
		char why[96];
		if (json_data_check(p + h.len, (size_t)h.arg, why, sizeof why) < 0) {
			snprintf(err, errlen, "tag 262 \"data\" is not JSON: %s", why);
			return -1;
		}
		rc = embedded_json(f, p + h.len, (size_t)h.arg);
	} else {
		snprintf(err, errlen, "\"data\" must be a text or byte string or tag 262");
		return -1;
	}
	if (rc < 0)
		snprintf(err, errlen, "out of memory");
	return rc;
}

/* The field k from its value at p, a whole definite item. */
static int
cb_field(struct frame *f, const struct key *k, const unsigned char *p, size_t n, char *err,
    size_t errlen)
{
	const unsigned char *s;
	size_t sn;
	int rc;
	struct cbortext_head h;
	switch (k->kind) {
	case K_ACTION:
	case K_STR:
		if (cb_text(p, n, k->name, &s, &sn, err, errlen) < 0)
			return -1;
		rc = k->kind == K_STR ? set_n(str_field(f, k), s, sn) :
		    set_action(f, (const char *)s, sn);
		if (rc < 0)
			snprintf(err, errlen, "out of memory");
		return rc;
	case K_INT: {
		int64_t x = -1;
		if (cbortext_head(p, n, &h) == 1 && h.major == 0 && h.arg <= INT64_MAX)
			x = (int64_t)h.arg;
		if (!int_ok(k, x)) {
			snprintf(err, errlen, "\"%s\" must be an integer in range", k->name);
			return -1;
		}
		*int_field(f, k) = x;
		return 0;
	}
	case K_DATA:
		return cb_data(f, p, n, err, errlen);
	case K_KEY:
		if (cbortext_head(p, n, &h) != 1 || h.major != 2 ||
		    h.arg != sizeof f->key || h.len + h.arg != n) {
			snprintf(err, errlen, "\"key\" must be a byte string of %d bytes",
			    FRAME_KEY_LEN);
			return -1;
		}
		memcpy(f->key, p + h.len, sizeof f->key);
		f->has_key = 1;
		return 0;
	}
	return -1;
}

/* Every key nws writes fits with room to spare; more is no frame of ours, and the bound
 * keeps the duplicate check among unknown keys cheap. */
#define CB_MAX_KEYS 64

/* Strict (nws(7) FRAMES): one definite map with distinct text keys, no indefinite length
 * anywhere, so every reader of the bytes sees the same fields as this decoder. */
static int
cb_decode(struct frame *f, const unsigned char *buf, size_t len, char *err, size_t errlen)
{
	size_t itemlen, kn, vn;
	const unsigned char *kp, *vp;
	uint32_t seen = 0;
	struct { const unsigned char *p; size_t n; } other[CB_MAX_KEYS];
	size_t nother = 0;
	struct cbortext_map m;
	int sc = cbortext_item_len(buf, len, len, 1, &itemlen, NULL);
	if (sc == 0 || sc == -2) {
		snprintf(err, errlen, "truncated CBOR item");
		return -1;
	}
	if (sc == -3) {
		snprintf(err, errlen, "indefinite-length CBOR item (only definite lengths)");
		return -1;
	}
	if (sc < 0) {
		snprintf(err, errlen, "malformed CBOR (or nested deeper than %d)",
		    CBORTEXT_MAX_DEPTH);
		return -1;
	}
	if (itemlen != len) {
		snprintf(err, errlen, "bytes after the CBOR map");
		return -1;
	}
	if (cbortext_map_start(&m, buf, len) < 0) {
		snprintf(err, errlen, "a frame must be a CBOR map");
		return -1;
	}
	if (m.left > CB_MAX_KEYS) {
		snprintf(err, errlen, "more than %d keys", CB_MAX_KEYS);
		return -1;
	}
	/* The scan above proved the map whole and definite: only a key's type can fail. */
	for (int rc; (rc = cbortext_map_next(&m, &kp, &kn, &vp, &vn)) != 0;) {
		if (rc < 0) {
			snprintf(err, errlen, "a frame's keys must be text strings");
			return -1;
		}
		const struct key *k = key_find((const char *)kp, kn);
		if (k) {
			uint32_t bit = (uint32_t)1 << (k - keys);
			if (seen & bit) {
				snprintf(err, errlen, "\"%s\" appears twice", k->name);
				return -1;
			}
			seen |= bit;
			if (cb_field(f, k, vp, vn, err, errlen) < 0)
				return -1;
		} else {
			for (size_t j = 0; j < nother; j++)
				if (other[j].n == kn && memcmp(other[j].p, kp, kn) == 0) {
					snprintf(err, errlen, "a key appears twice");
					return -1;
				}
			other[nother].p = kp;
			other[nother++].n = kn;
		}
	}
	if (!(seen & 1)) {   /* keys[0] */
		snprintf(err, errlen, "\"action\" is missing");
		return -1;
	}
	return 0;
}

int
frame_decode(struct frame *f, enum frame_format fmt, const void *buf, size_t len,
    char *err, size_t errlen)
{
	char dummy[1];
	int rc;
	if (!err || errlen == 0) {
		err = dummy;
		errlen = sizeof dummy;
	}
	frame_init(f);
	if (len == 0) {
		snprintf(err, errlen, "empty frame");
		return -1;
	}
	if (fmt == FORMAT_UNKNOWN)
		fmt = frame_detect(*(const unsigned char *)buf);
	if (fmt == FORMAT_JSON)
		rc = json_decode(f, buf, len, err, errlen);
	else if (fmt == FORMAT_CBOR)
		rc = cb_decode(f, buf, len, err, errlen);
	else {
		snprintf(err, errlen, "neither a JSON object nor a CBOR map");
		rc = -1;
	}
	if (rc < 0)
		frame_clear(f);
	return rc;
}

/* What one stage writes the next must read: text fields in UTF-8 (either encoding carries
 * them as text) and a port that fits a TCP port. */
static int
frame_valid(const struct frame *f)
{
	struct frame *ff = (struct frame *)f;
	const char *a = frame_action_name(f);
	if (!a || !jsontext_utf8((const unsigned char *)a, strlen(a)))
		return 0;
	for (size_t i = 0; i < NKEYS; i++) {
		const char *s = keys[i].kind == K_STR ? *str_field(ff, &keys[i]) : NULL;
		if (s && !jsontext_utf8((const unsigned char *)s, strlen(s)))
			return 0;
	}
	if (f->port > 65535)
		return 0;
	if (f->data_kind == DATA_TEXT && (memchr(f->data, 0, f->data_len) ||
	    !jsontext_utf8(f->data, f->data_len)))
		return 0;
	return f->data_kind == DATA_NONE || f->data != NULL;
}

int
frame_encode(const struct frame *f, enum frame_format fmt, struct buf *out)
{
	/* A reserve may compact the buffer but keeps len: restoring it drops a half-written
	 * frame so nothing partial stays queued. */
	size_t len = out->len;
	int rc = -1;
	if (frame_valid(f))
		rc = fmt == FORMAT_CBOR ? cb_encode(f, out) : json_encode(f, out);
	if (rc < 0)
		out->len = len;
	return rc;
}

static enum frame_action
json_peek(const unsigned char *p, size_t n)
{
	static const char lead[] = "{\"action\":\"";
	size_t ln = sizeof lead - 1;
	/* nws writes action first: one compare and a short scan is all most frames need. */
	if (n > ln && memcmp(p, lead, ln) == 0) {
		const unsigned char *s = p + ln, *e = memchr(s, '"', n - ln);
		if (e && !memchr(s, '\\', (size_t)(e - s)))
			return action_lookup((const char *)s, (size_t)(e - s));
	}
	const unsigned char *v;
	size_t vn;
	if (jsontext_span(p, n, "action", &v, &vn) == 0 && vn >= 2 && v[0] == '"' &&
	    !memchr(v, '\\', vn))
		return action_lookup((const char *)v + 1, vn - 2);
	/* The action or its key written with escapes ("\u0062roadcast"), or no action: read
	 * it as frame_decode does, or a stage would route the frame as something else than
	 * what the next one decodes. Nothing nws writes takes this path. */
	json_error_t je;
	json_t *obj = json_load(p, n, 0, &je);
	json_t *a = obj ? json_object_get(obj, "action") : NULL;
	enum frame_action r = json_is_string(a) ?
	    action_lookup(json_string_value(a), json_string_length(a)) : ACTION_UNKNOWN;
	json_decref(obj);
	return r;
}

/* Only what frame_decode could accept: a definite map with definite text keys. */
static enum frame_action
cb_peek(const unsigned char *p, size_t n)
{
	const unsigned char *v, *s;
	size_t vn, sn;
	if (cbortext_span(p, n, "action", &v, &vn) < 0 || cbortext_text(v, vn, &s, &sn) < 0)
		return ACTION_UNKNOWN;
	return action_lookup((const char *)s, sn);
}

enum frame_action
frame_peek_action(enum frame_format fmt, const void *buf, size_t len)
{
	if (len == 0)
		return ACTION_UNKNOWN;
	if (fmt == FORMAT_UNKNOWN)
		fmt = frame_detect(*(const unsigned char *)buf);
	if (fmt == FORMAT_JSON)
		return json_peek(buf, len);
	if (fmt == FORMAT_CBOR)
		return cb_peek(buf, len);
	return ACTION_UNKNOWN;
}

/* ---- Views ---- */

/* The head's argument is in its shortest form, as nws writes every head. */
static int
cb_minimal(int ai, uint64_t arg)
{
	static const uint64_t least[4] = { 24, 256, 65536, (uint64_t)1 << 32 };
	return ai < 24 || (ai <= 27 && arg >= least[ai - 24]);
}

/* One definite, minimal string head at p[*pos]: major 2 or 3 as allowed by bytes, its
 * contents in *v, *vn, and *pos past it; the major type, or -1. */
static int
cb_view_str(const unsigned char *p, size_t len, size_t *pos, int bytes,
    const unsigned char **v, size_t *vn)
{
	struct cbortext_head h;

	if (cbortext_head(p + *pos, len - *pos, &h) != 1 || h.ai == 31 ||
	    !cb_minimal(h.ai, h.arg) || (h.major != 3 && !(bytes && h.major == 2)) ||
	    h.arg > len - *pos - h.len)
		return -1;
	*v = p + *pos + h.len;
	*vn = (size_t)h.arg;
	*pos += h.len + (size_t)h.arg;
	if (h.major == 3 && (memchr(*v, 0, *vn) || !jsontext_utf8(*v, *vn)))
		return -1;
	return h.major;
}

int
frame_read(struct frame *f, enum frame_format fmt, const void *buf, size_t len,
    char *store, size_t storelen, char *err, size_t errlen)
{
	if (fmt == FORMAT_CBOR && frame_decode_view(f, buf, len, store, storelen) == 0)
		return 0;
	return frame_decode(f, fmt, buf, len, err, errlen);
}

void
frame_release(struct frame *f, char *store, size_t storelen)
{
	if (f->borrowed) {
		sodium_memzero(store, storelen);
		frame_init(f);
	} else {
		frame_clear(f);
	}
}

int
frame_decode_view(struct frame *f, const void *buf, size_t len, char *store, size_t storelen)
{
	const unsigned char *p = buf, *ks, *vs;
	size_t pos, kn, vn, used = 0;
	uint64_t pairs, seen = 0;
	struct cbortext_head h;
	int major;

	frame_init(f);
	if (cbortext_head(p, len, &h) != 1 || h.major != 5 || h.ai == 31 ||
	    !cb_minimal(h.ai, h.arg))
		return -1;
	pairs = h.arg;
	pos = h.len;
	for (uint64_t i = 0; i < pairs; i++) {
		if (cb_view_str(p, len, &pos, 0, &ks, &kn) < 0)
			goto other;
		const struct key *k = key_find((const char *)ks, kn);
		if (!k || k->kind == K_INT || k->kind == K_KEY || seen & 1u << (k - keys))
			goto other;
		seen |= 1u << (k - keys);
		if ((major = cb_view_str(p, len, &pos, k->kind == K_DATA, &vs, &vn)) < 0)
			goto other;
		if (k->kind == K_DATA) {
			f->data = (unsigned char *)vs;
			f->data_len = vn;
			f->data_kind = major == 3 ? DATA_TEXT : DATA_BYTES;
		} else if (k->kind == K_ACTION) {
			if ((f->action = action_lookup((const char *)vs, vn)) == ACTION_UNKNOWN)
				goto other;
		} else {
			if (storelen - used < vn + 1)
				goto other;
			memcpy(store + used, vs, vn);
			store[used + vn] = '\0';
			*str_field(f, k) = store + used;
			used += vn + 1;
		}
	}
	if (pos == len && seen & 1) {
		f->borrowed = 1;
		return 0;
	}
other:
	frame_init(f);
	return -1;
}
