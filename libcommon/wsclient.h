/* wsclient: the client end of RFC 6455 for links, over a raw lws socket: the upgrade
 * request, the check of the server's answer, a parser of server frames that works on
 * whole buffers; and for both ends, building frames and writing queues of them. lws
 * 4.1's own client parser handles a byte at a time (about 250 MB/s a core); this one
 * costs a header per message. */
#ifndef NWS_WSCLIENT_H
#define NWS_WSCLIENT_H

#include <stddef.h>

#include "buf.h"

#define WS_OP_CONT 0x0
#define WS_OP_TEXT 0x1
#define WS_OP_BINARY 0x2
#define WS_OP_CLOSE 0x8
#define WS_OP_PING 0x9
#define WS_OP_PONG 0xa
/* The longest header: 2 bytes, 8 of length, 4 of mask. */
#define WS_HDR_MAX 14

struct wsc {
	char key[32];            /* Sec-WebSocket-Key sent */
	const char *subprotocol; /* the one asked for, required in the answer */
	size_t max_payload;      /* longer frames are a protocol error */
	int open;                /* the 101 answer was accepted */
	struct buf in;           /* a partial answer or frame */
};

void wsc_init(struct wsc *w, const char *subprotocol, size_t max_payload);
void wsc_free(struct wsc *w);

/* The upgrade request for path; its length, or -1 when out is too small. */
int wsc_request(struct wsc *w, char *out, size_t outlen, const char *host, const char *path);

/* One whole frame: return -1 to stop (the connection is closed). */
typedef int (*wsc_frame_fn)(void *ctx, int opcode, int fin, const unsigned char *p,
    size_t n);
/* Feeds bytes read from the socket: the answer first, then frames. -1 on a protocol
 * error, with a reason in *err, or when fn returned -1. */
int wsc_feed(struct wsc *w, const unsigned char *p, size_t n, wsc_frame_fn fn, void *ctx,
    const char **err);

/* Appends a final frame of opcode with payload p to out: a client's (masked) or a
 * server's. -1 when out is past its bound.
 *
 * A client frame's masking key is all zeros, so its payload goes out as it is. Masking
 * (RFC 6455 5.3) keeps a script from putting bytes of its choice on the wire, where an
 * intermediary could take them for a request of its own. The only client here is the
 * dialling end of a link, whose payloads are Noise ciphertext: no one chooses or foresees
 * those bytes, not even a member who chose the plaintext. The zero key spares both ends a
 * pass over every message (lws skips unmasking when the key is zero). */
int ws_frame_append(struct buf *out, int opcode, const void *p, size_t n, int masked);
/* Appends the header of the same frame and returns where its n payload bytes go, for
 * the caller to write; NULL when out is past its bound. */
unsigned char *ws_frame_put(struct buf *out, int opcode, size_t n, int masked);
/* A server frame whose payload's length is known only once it is written in place: at =
 * out->len, then ws_frame_open(out) leaves room for the header (-1 when out is past its
 * bound), the caller appends the payload, and ws_frame_close_up(out, at, opcode) puts
 * the header in (moving a payload shorter than 65536 bytes, whose header is shorter, up
 * to it). */
int ws_frame_open(struct buf *out);
void ws_frame_close_up(struct buf *out, size_t at, int opcode);
/* The length of the frame at p, which holds at least its header (frames we built). */
size_t ws_frame_len(const unsigned char *p);

struct lws;
/* Writes the frames queued in q to wsi's socket with one send(2), past lws: lws_write
 * would copy what the socket does not take into a buffer of its own. What the kernel
 * refused stays in q, except the rest of a frame it took only part of: that goes to
 * lws, which writes its pending bytes before anything else (its pongs and close frames
 * included), so nothing cuts into the frame. Call it only when lws holds no bytes for
 * wsi (lws_partial_buffered). Returns the bytes the socket took, -1 on an error. */
long ws_queue_send(struct lws *wsi, struct buf *q);

#endif
