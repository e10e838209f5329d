/* browse: what nws-browse does with records and frames: matches resolved _nws._tcp
 * records against the open channels' tags and reports found/lost, acts on open/close
 * frames and passes every frame on. */
#ifndef NWS_BROWSE_H
#define NWS_BROWSE_H

#include <stddef.h>

#include "derive.h"
#include "dnssd.h"
#include "frame.h"
#include "keys.h"

#define BROWSE_MAX_CHANNELS 1024
#define BROWSE_TERMINATE_MS 15000   /* -t gives up on a daemon that never gets running */

struct browse_chan {
	char *name;
	struct keys *k;            /* NULL while job derives it: nothing matches yet */
	struct derive_job *job;
};

struct browse {
	struct aloop *al;
	struct dnssd *d;
	struct aloop_pipe *io;
	struct derive *dv;
	struct browse_chan chans[BROWSE_MAX_CHANNELS];
	size_t nchans;
	int all;          /* -a: report unmatched records too */
	int terminate;    /* -t: exit after ALL_FOR_NOW */
	int text;         /* --format text */
	int keep;         /* channels came from the command line: stdin EOF does not end us */
	size_t reported;  /* found events so far (the -t exit status) */
};

extern const struct dnssd_callbacks browse_callbacks;
/* SIGINT or SIGTERM (aloop_signals): the loop ends. */
void browse_signal(void *ctx, int signo);

/* Starts matching name, once its keys are derived: from K (key, an open's; NULL: none),
 * or by Argon2id now (wait = 1) or on the worker (b->dv) while frames keep passing. 0 opened or already open, -1 invalid name or too many. */
int browse_open(struct browse *b, const char *name, const unsigned char *key, int wait);
/* Watches the key worker on the loop. -1 when it cannot be started. */
int browse_derive_init(struct browse *b);
void browse_close(struct browse *b, const char *name);
void browse_close_all(struct browse *b);
void browse_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len);
void browse_eof(void *ctx);
/* -t: arms the deadline after which what was found so far is the answer. */
void browse_deadline(struct browse *b);

#endif
