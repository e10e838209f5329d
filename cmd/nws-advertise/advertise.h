/* advertise: what nws-advertise does with frames: publishes a tagged _nws._tcp record per
 * channel for each listening frame (or for the command line's channels), withdraws it on
 * close, reports advertised/error, and passes every other frame on. */
#ifndef NWS_ADVERTISE_H
#define NWS_ADVERTISE_H

#include <stddef.h>
#include <stdint.h>

#include "derive.h"
#include "dnssd.h"
#include "dnsupdate.h"
#include "frame.h"
#include "keys.h"

#define ADVERTISE_MAX_CHANNELS 1024

struct advert {
	char *channel;
	struct keys *k;            /* NULL while job derives it: published when it is done */
	/* port 0: K came with an open, the listening has not come yet */
	struct derive_job *job;
	struct dnssd_pub *pub;
	struct dnsupdate_pub *wpub;   /* -d DOMAIN: the records put there by DNS UPDATE */
	uint16_t port;
};

struct advertise {
	struct aloop *al;
	struct dnssd *d;
	struct aloop_pipe *io;
	struct derive *dv;
	struct advert *ads[ADVERTISE_MAX_CHANNELS];   /* each is its publication's user */
	size_t nads;
	int keep;         /* channels came from the command line: stdin EOF does not end us */
	const char *instance;   /* --instance: the first name to try */
	int wide;         /* -d names a unicast DNS domain: publish by DNS UPDATE, not avahi */
	struct dnsupdate *up;   /* wide with --tsig-key; NULL: cannot publish there */
};

extern const struct dnssd_callbacks advertise_callbacks;
/* SIGINT or SIGTERM (aloop_signals): the loop ends. */
void advertise_signal(void *ctx, int signo);

/* Publishes channel at port, replacing an advertisement of the channel at another port,
 * once the channel's keys are derived on the worker (a->dv) while frames keep passing.
 * 0 done, -1 with a reason for an error frame. */
int advertise_add(struct advertise *a, const char *channel, uint16_t port,
    const char **why);
/* Takes channel's K from an open frame (no Argon2id): its listening publishes at once.
 * -1 on out of memory. */
int advertise_key(struct advertise *a, const char *channel, const unsigned char *key);
/* Watches the key worker on the loop. -1 when it cannot be started. */
int advertise_derive_init(struct advertise *a);
void advertise_remove(struct advertise *a, const char *channel);
void advertise_remove_all(struct advertise *a);
void advertise_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len);
void advertise_eof(void *ctx);

#endif
