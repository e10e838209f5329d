/* noise: Noise_NNpsk0_25519_ChaChaPoly_BLAKE2b (Noise spec rev. 34) on libsodium, and
 * the piece framing that carries frames larger than one Noise message (nws(7) LINKS).
 * Every key-bearing struct is wiped by its *_clear function. */
#ifndef NWS_NOISE_H
#define NWS_NOISE_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define NOISE_DHLEN 32
#define NOISE_HASHLEN 64
#define NOISE_TAGLEN 16
#define NOISE_MAX_MSG 65535
/* Plaintext of a transport message: 1 flag byte + piece. */
#define NOISE_MAX_PIECE (NOISE_MAX_MSG - NOISE_TAGLEN - 1)
#define NOISE_PIECE_FINAL 0x01

struct noise_cipher {
	unsigned char k[32];
	uint64_t n;
	int has_key;
};

struct noise_handshake {
	int initiator;
	int step;                            /* messages processed so far: 0, 1, 2, or
	                                        NOISE_STEP_FAILED */
	unsigned char ck[NOISE_HASHLEN];
	unsigned char h[NOISE_HASHLEN];
	unsigned char psk[32];
	unsigned char e_pk[NOISE_DHLEN], e_sk[NOISE_DHLEN];
	unsigned char re[NOISE_DHLEN];
	int fixed_e;                         /* e set by noise_handshake_set_ephemeral */
	struct noise_cipher cs;
};

/* A handshake whose message failed (or whose DH was all zero) is wiped and refuses every
 * further call: the caller closes the link. */
#define NOISE_STEP_FAILED (-1)

struct noise_session {
	struct noise_cipher send, recv;
	unsigned char h[NOISE_HASHLEN];      /* handshake hash, for tests and channel binding */
};

int noise_handshake_init(struct noise_handshake *hs, int initiator,
    const unsigned char psk[32], const void *prologue, size_t prologue_len);
/* Use this ephemeral private key instead of a random one (test vectors only). */
void noise_handshake_set_ephemeral(struct noise_handshake *hs, const unsigned char sk[32]);
/* Writes the next handshake message carrying payload. out must hold
 * NOISE_DHLEN + plen + NOISE_TAGLEN bytes. Returns its length, -1 if out of turn. */
long noise_handshake_write(struct noise_handshake *hs, const void *payload, size_t plen,
    unsigned char *out);
/* Reads the peer's next handshake message; payload must hold len bytes. Returns the
 * payload length, -1 if it does not authenticate (wrong psk, tampering) or is out of turn. */
long noise_handshake_read(struct noise_handshake *hs, const unsigned char *msg, size_t len,
    unsigned char *payload);
/* After both messages: the transport ciphers. Wipes hs. -1 if the handshake is not done. */
int noise_handshake_split(struct noise_handshake *hs, struct noise_session *s);
void noise_handshake_clear(struct noise_handshake *hs);

/* Transport: out holds len + NOISE_TAGLEN bytes; returns the ciphertext length, -1 when
 * len + NOISE_TAGLEN passes NOISE_MAX_MSG or the nonce is spent (2^64-1 is reserved).
 * out may equal pt. */
long noise_encrypt(struct noise_cipher *c, const void *pt, size_t len, unsigned char *out);
/* out holds len - NOISE_TAGLEN bytes. Returns the plaintext length, -1 when the message
 * does not authenticate with the next nonce (tampered, replayed, reordered or truncated);
 * the nonce only advances on success. */
long noise_decrypt(struct noise_cipher *c, const unsigned char *ct, size_t len,
    unsigned char *out);
void noise_session_clear(struct noise_session *s);

/* Pieces: a frame of any size goes out as ceil(len / NOISE_MAX_PIECE) transport messages
 * (at least one). Every piece but the last is full and has flag 0; the last has flag
 * NOISE_PIECE_FINAL (an empty frame is one final message with no piece bytes). Each
 * message is written and encrypted where place(ctx, msglen) says it goes, in the caller's
 * queue. Returns 0, or -1 when place returns NULL or the cipher refuses (nonce spent):
 * then the caller drops what was placed for this frame. */
typedef unsigned char *(*noise_place_fn)(void *ctx, size_t len);
int noise_send_frame(struct noise_cipher *c, const void *frame, size_t len,
    noise_place_fn place, void *ctx);

/* Reassembles frames from transport messages, bounded by max_frame (> 0). The receiver
 * accepts non-final pieces of any size, empty ones included (a sender may flush early),
 * and rejects flag bytes other than 0 and NOISE_PIECE_FINAL. */
struct noise_reassembly {
	struct buf acc;     /* a spare byte, then the frame so far (noise.c) */
};
void noise_reassembly_init(struct noise_reassembly *r, size_t max_frame);
void noise_reassembly_clear(struct noise_reassembly *r);
/* Decrypts one transport message into r: 1 when a whole frame is ready (the caller reads
 * it with noise_reassembly_frame, then calls noise_reassembly_reset), 0 when more pieces
 * are needed, -1 when the message fails to decrypt, is malformed, or the frame would pass
 * max_frame (then the partial frame is dropped and the link should close). */
int noise_recv_piece(struct noise_cipher *c, struct noise_reassembly *r,
    const unsigned char *msg, size_t len);
const unsigned char *noise_reassembly_frame(const struct noise_reassembly *r, size_t *len);
/* Empties r for the next frame; its memory stays for it (noise_reassembly_clear frees). */
void noise_reassembly_reset(struct noise_reassembly *r);

#endif
