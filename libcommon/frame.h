/* frame: the one message model of nws (nws(7) FRAMES) and its two encodings, JSON Lines
 * (jansson) and CBOR Sequence maps (libcbor). Both are lossless for every field. */
#ifndef NWS_FRAME_H
#define NWS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

enum frame_format {
	FORMAT_UNKNOWN = 0,
	FORMAT_JSON,   /* one object per line, '\n' terminated */
	FORMAT_CBOR,   /* a CBOR map per frame, concatenated (RFC 8742) */
};

enum frame_action {
	ACTION_UNKNOWN = 0,   /* any other string: kept in frame.action_name, passed on */
	ACTION_OPEN,
	ACTION_CLOSE,
	ACTION_FOUND,
	ACTION_LOST,
	ACTION_LISTENING,
	ACTION_ADVERTISED,
	ACTION_CONNECT,
	ACTION_DISCONNECT,
	ACTION_BROADCAST,
	ACTION_MESSAGE,
	ACTION_STATUS,
	ACTION_LINKED,
	ACTION_UNLINKED,
	ACTION_ERROR,
	ACTION_END,           /* a sender's end of input; routed like a broadcast */
};

enum frame_data {
	DATA_NONE = 0,   /* no "data" key */
	DATA_TEXT,       /* a text string (UTF-8, may be empty) */
	DATA_BYTES,      /* a byte string (CBOR bstr; JSON "encoding":"base64") */
	DATA_JSON,       /* any other JSON value, held as its compact JSON text (CBOR tag 262) */
};

#define FRAME_KEY_LEN 32

/* String fields are NUL-terminated and owned by the frame (frame_init, frame_set,
 * frame_decode; released by frame_clear), or borrowed (frame_view); NULL means absent, ""
 * is an empty string that was present. Text may not contain NUL (such input is
 * rejected). */
struct frame {
	enum frame_action action;
	char *action_name;   /* set when action == ACTION_UNKNOWN */
	char *channel, *source, *target;
	char *instance, *host, *address, *path, *interface, *domain, *node, *reason;
	int64_t port;        /* -1: absent */
	int64_t code;        /* -1: absent */
	enum frame_data data_kind;
	unsigned char *data; /* owned; NUL-terminated for DATA_TEXT and DATA_JSON */
	size_t data_len;
	/* K of the channel on an `open` between the stages of one pipeline (nws(7) FRAMES):
	 * a byte string in CBOR; written in JSON (base64) only when frame_json_keys is set.
	 * frame_clear wipes it. */
	int has_key;
	unsigned char key[FRAME_KEY_LEN];
	int borrowed;        /* made by frame_view: its fields are not the frame's */
};

/* Set by a tool run with -vv: its JSON output shows `key` too. */
extern int frame_json_keys;

void frame_init(struct frame *f);
/* A frame that borrows, for building one to encode or hand on without copying: f has
 * action a and every other field absent, and the caller points fields at memory that
 * outlives f's use (casting away const: a view is only read). It is never frame_clear'd
 * (frame_clear asserts so) and needs no release. */
void frame_view(struct frame *f, enum frame_action a);
/* A view (frame_view) of an error frame with this code and borrowed reason. */
void frame_error(struct frame *f, int64_t code, const char *reason);
/* Frees the fields of an owning frame; f is then empty, as after frame_init. */
void frame_clear(struct frame *f);

const char *frame_action_name(const struct frame *f);
enum frame_action frame_action_parse(const char *s);

/* Replaces a string field with a copy of s (NULL makes it absent). -1 on out of memory. */
int frame_set(char **field, const char *s);
/* Replaces data with a copy of n bytes of the given kind (DATA_NONE clears it). DATA_JSON
 * must be one JSON value; it is stored compacted (whitespace outside strings dropped), so
 * -1 also when it is not valid JSON. -1 on out of memory. */
int frame_set_data(struct frame *f, enum frame_data kind, const void *p, size_t n);

/* Decodes exactly one frame from buf[0..len) (for JSON: one line, with or without its
 * '\n'). On error returns -1, leaves f freed, and writes a one-line reason to err. */
int frame_decode(struct frame *f, enum frame_format fmt, const void *buf, size_t len,
    char *err, size_t errlen);

/* Decodes a CBOR frame of the common form without allocating: a definite map of known
 * text keys whose values are definite text strings (or bytes, for data), every head in
 * its shortest form, an action nws knows, no key twice. Strings are copied, NUL-ended,
 * into store[0..storelen); data points into buf. f is borrowed (as by frame_view): valid
 * while buf and store are, and never frame_clear'd. -1 (f as after frame_init) for anything else, which
 * frame_decode then decides on: errors read the same either way. */
int frame_decode_view(struct frame *f, const void *buf, size_t len, char *store, size_t storelen);
/* frame_decode_view for CBOR when it can (no allocation, no copy of the data), else
 * frame_decode: 0 or -1 as frame_decode. End f with frame_release. The hot paths read
 * frames so: decoding a 1 MiB broadcast copied it, and libcbor counted its code points. */
int frame_read(struct frame *f, enum frame_format fmt, const void *buf, size_t len,
    char *store, size_t storelen, char *err, size_t errlen);
/* Ends a frame_read frame: frees a decoded one, wipes the store under a viewed one (it
 * held the channel name). */
void frame_release(struct frame *f, char *store, size_t storelen);

/* Appends one encoded frame (JSON with its '\n') to out. -1 on out of memory or bound, or
 * when a text field or DATA_TEXT is not UTF-8 (or DATA_TEXT holds a NUL), there is no
 * action, or port is past 65535 (negative port/code: absent); out is then
 * unchanged. JSON keys come in a fixed order, action first; no spaces; UTF-8 unescaped. */
int frame_encode(const struct frame *f, enum frame_format fmt, struct buf *out);

/* The action of an encoded frame without decoding the rest, for pass-through stages
 * that only route on it: for any frame frame_decode accepts, the action it decodes.
 * ACTION_UNKNOWN when there is none or it is not a known one. */
enum frame_action frame_peek_action(enum frame_format fmt, const void *buf, size_t len);

/* The format a stream starting with this byte is in: '{' (after optional whitespace is
 * the caller's concern) is JSON, 0xa0..0xbf is a CBOR map, anything else UNKNOWN. */
enum frame_format frame_detect(unsigned char first);

#endif
