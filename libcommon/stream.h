/* stream: frames over non-blocking file descriptors. A reader turns whatever read(2)
 * returns into whole frames (format detected from the first byte, bounded by max_frame);
 * a writer queues encoded frames up to a bound and flushes them in as few writes as it can. */
#ifndef NWS_STREAM_H
#define NWS_STREAM_H

#include <stddef.h>
#include <sys/types.h>

#include "buf.h"
#include "frame.h"

#define STREAM_MAX_FRAME_DEFAULT (16u << 20)
#define STREAM_MAX_QUEUE_DEFAULT (8u << 20)

struct stream_reader {
	int fd;
	enum frame_format fmt;     /* FORMAT_UNKNOWN until the first byte is seen */
	size_t max_frame;
	struct buf in;
	int broken;                /* CBOR stream that lost sync: nothing more is read */
	int skipping;              /* JSON: discarding an oversized line up to its '\n' */
	int eof;
	size_t scanned;            /* bytes of in already searched for a frame end */
};

void stream_reader_init(struct stream_reader *r, int fd, size_t max_frame);
void stream_reader_free(struct stream_reader *r);

/* One read(2) into the buffer: >0 bytes read, 0 end of file (also once r->broken: treat
 * it as the end), -1 with errno (EAGAIN when nothing is ready; ENOBUFS when frames were
 * left in the buffer instead of being taken with stream_reader_next). */
ssize_t stream_reader_fill(struct stream_reader *r);
/* Adds bytes that came from elsewhere (a WebSocket message) as if read: JSON frames still
 * end at '\n' (frame_decode suits one message without it). -1 past max_frame. */
int stream_reader_feed(struct stream_reader *r, const void *p, size_t n);

/* The next whole frame in the buffer: 1 with *raw and *len set (valid until the next call on
 * r), 0 when more input is needed, -1 for a bad frame with a reason in err. After -1 a JSON
 * reader has skipped that line and can go on; a CBOR reader is r->broken. A frame that is
 * still incomplete at end of file is reported once as truncated.
 * JSON: blank lines are skipped; a line is returned when it is one valid JSON object (UTF-8,
 * no NUL, nested at most 512 deep), as read: with its '\n' (added to a complete
 * last line that had none), leading blanks and a '\r' before the '\n' kept. A line over
 * max_frame is reported once and dropped as it arrives. CBOR: one well-formed map (at most
 * CBORTEXT_MAX_DEPTH deep) per frame; its keys and values are not checked here. */
int stream_reader_next(struct stream_reader *r, const unsigned char **raw, size_t *len,
    char *err, size_t errlen);

struct stream_writer {
	int fd;
	enum frame_format fmt;     /* the format frames are written in */
	struct buf out;            /* bounded by max_queue */
};

void stream_writer_init(struct stream_writer *w, int fd, enum frame_format fmt,
    size_t max_queue);
void stream_writer_free(struct stream_writer *w);

/* Queue one frame, encoded in w->fmt (JSON when FORMAT_UNKNOWN). -1 when the queue bound
 * would be passed or frame_encode refuses the frame (see there). */
int stream_writer_frame(struct stream_writer *w, const struct frame *f);
/* Queue an encoded frame read in format fmt: copied as is when fmt is w->fmt, re-encoded
 * otherwise. -1 when over the bound or the frame does not decode. The copy checks framing
 * only (one CBOR map; one JSON line, '\n' added when missing, a multi-line JSON object
 * re-encoded onto one line): what a stream_reader returned is already checked. A writer
 * still in FORMAT_UNKNOWN takes fmt. Nothing is queued on -1. */
int stream_writer_raw(struct stream_writer *w, enum frame_format fmt,
    const unsigned char *raw, size_t len);
/* Write as much as the fd takes now, all of the queue in one write(2) per call: 1 all
 * written, 0 some left (wait for POLLOUT), -1 with errno on a write error (EPIPE when the
 * reader went away: ignore SIGPIPE). */
int stream_writer_flush(struct stream_writer *w);
/* Blocking variant for short-lived tools and exit paths: flushes everything, polling.
 * 1 when all is written, -1 with errno. */
int stream_writer_drain(struct stream_writer *w);
size_t stream_writer_pending(const struct stream_writer *w);

#endif
