/* dnssd: the avahi-client side of discovery (nws(7) DISCOVERY) for nws-browse and
 * nws-advertise, on the loop it is given (aloop.h). It owns a client that survives a
 * missing, stopped or restarted avahi-daemon,
 * _nws._tcp publications that take a new random instance name on collision and are
 * published again when the daemon returns, and a _nws._tcp browser whose resolved records
 * come and go through one callback. It knows the TXT layout but not channels or keys. */
#ifndef NWS_DNSSD_H
#define NWS_DNSSD_H

#include <stddef.h>
#include <stdint.h>

#include "aloop.h"

#define DNSSD_TYPE "_nws._tcp"
#define DNSSD_INSTANCE_HEX 8          /* random bytes of an instance name: 16 hex chars */
#define DNSSD_INSTANCE_MAX 63         /* longest DNS label */
#define DNSSD_MAX_RECORDS 4096        /* browse items kept at once; more are ignored */
/* A unicast (wide-area) domain is browsed anew this often: a peer that went is reported
 * lost within its records' TTL and one or two of these. */
#define DNSSD_WIDE_POLL_MS 2000

struct dnssd;
struct dnssd_pub;

/* A resolved advertisement with a well-formed v=1 TXT. Strings are valid during the
 * callback; the record itself (and mark) lives from found to lost. The instance is the
 * name as published (any UTF-8); domain and host are avahi's text for a DNS name, where a
 * byte other than A-Z a-z 0-9 _ - is written \DDD (decimal), a dot in a label \. and a
 * backslash \\ (dnssd_name_decode reads it back). */
struct dnssd_record {
	const char *instance, *domain, *host;
	const char *address;     /* printable; link-local IPv6 carries "%interface" */
	const char *interface;   /* name of the interface it was seen on */
	const char *tag;         /* TXT t=, well-formed (keys_tag_form_ok) */
	uint16_t port;
	int family;              /* AF_INET or AF_INET6 */
	unsigned mark;           /* free for the caller (0 at found) */
};

struct dnssd_callbacks {
	/* The daemon cannot be reached (at start, or it went away): why is avahi's text. All
	 * records were reported lost first; publications wait for up. Reported once per outage. */
	void (*down)(void *ctx, const char *why);
	/* The daemon is (again) reachable and running; publications are being re-sent. */
	void (*up)(void *ctx);
	/* A publication was established, under this instance name (again after a rename). */
	void (*published)(void *ctx, struct dnssd_pub *p, const char *instance);
	/* A publication failed for a reason other than the daemon going away. */
	void (*publish_failed)(void *ctx, struct dnssd_pub *p, const char *why);
	/* A record appeared (found = 1) or went away (found = 0). */
	void (*record)(void *ctx, struct dnssd_record *r, int found);
	/* Browsing: everything on the network now has been reported (ALL_FOR_NOW, and every
	 * resolve it started has ended). */
	void (*all_for_now)(void *ctx);
};

/* domain: NULL for avahi's default. interface: NULL for all, else a name; NULL is
 * returned with a message on stderr when it does not exist or on out of memory. */
struct dnssd *dnssd_new(struct aloop *al, const char *domain, const char *interface,
    const struct dnssd_callbacks *cb, void *ctx);
/* Connects to the daemon; from here on the callbacks run (up or down at once, maybe). */
void dnssd_start(struct dnssd *d);
/* Withdraws every publication (the daemon sends goodbyes) and frees everything; before
 * aloop_free. */
void dnssd_free(struct dnssd *d);

/* What the tools say, and put in an error frame of code 69, while the daemon is away. */
#define DNSSD_DOWN_REASON "cannot reach avahi-daemon (is it running?)"

/* 1 while the daemon is reachable and running. */
int dnssd_is_up(const struct dnssd *d);

/* Publishes DNSSD_TYPE at port with TXT v=1, t=tag under instance name
 * instance (NULL: a random one; either way a random one after a collision), now or as
 * soon as the daemon is up. user is returned by dnssd_pub_user. */
struct dnssd_pub *dnssd_publish(struct dnssd *d, const char *instance, uint16_t port,
    const char *tag, void *user);
/* Withdraws and frees p. */
void dnssd_unpublish(struct dnssd *d, struct dnssd_pub *p);
void *dnssd_pub_user(const struct dnssd_pub *p);

/* Starts browsing, now or as soon as the daemon is up, and again after it restarts. */
void dnssd_browse(struct dnssd *d);
/* The bytes of the DNS name in avahi's text (as in dnssd_record.host), labels joined
 * by dots, into out (cut to outlen, always terminated); an escape avahi would not write
 * (\000, a lone backslash) is copied as it is. Returns out. A name from the network:
 * may hold any byte but NUL, so escape it before printing. */
const char *dnssd_name_decode(const char *name, char *out, size_t outlen);

/* Calls fn for every record found and not lost. */
void dnssd_records(struct dnssd *d, void (*fn)(void *ctx, struct dnssd_record *r), void *ctx);

#endif
