/* dnsupdate: wide-area publishing (nws(7) DISCOVERY) for nws-advertise -d DOMAIN. It owns a
 * TSIG key read from a file in the format tsig-keygen writes, the zone's primary (found
 * as nsupdate finds it: the SOA's MNAME through the system resolver, unless a server is
 * given), and _nws._tcp records put there and taken away by RFC 2136 DNS UPDATE through
 * libldns. Each publication is a PTR, an SRV, a TXT (v=1, t=tag) and an A or AAAA record
 * for the address this host reaches the server from, all with a short TTL so that
 * caches forget a peer soon after it goes. Sends block for at most a few seconds. */
#ifndef NWS_DNSUPDATE_H
#define NWS_DNSUPDATE_H

#include <stddef.h>
#include <stdint.h>

#define DNSUPDATE_TTL 10          /* seconds: how long a cache may remember a gone peer */
#define DNSUPDATE_TIMEOUT_MS 2000 /* per try, two tries: the loop waits at most this twice */

struct dnsupdate;
struct dnsupdate_pub;

/* Reads the key from keyfile; server (an IPv4 or IPv6 address) is where updates go, NULL
 * for the zone's primary. Nothing is sent yet. NULL with a reason in err. */
struct dnsupdate *dnsupdate_new(const char *domain, const char *keyfile, const char *server,
    char *err, size_t errlen);
/* Puts one advertisement of port with TXT t=tag under a new random instance name into
 * the zone. NULL with a reason in err (no primary found, refused, no answer...). */
struct dnsupdate_pub *dnsupdate_publish(struct dnsupdate *u, uint16_t port, const char *tag,
    char *err, size_t errlen);
const char *dnsupdate_pub_instance(const struct dnsupdate_pub *p);
/* Deletes p's records from the zone (a failure is logged) and frees p. */
void dnsupdate_unpublish(struct dnsupdate *u, struct dnsupdate_pub *p);
/* Frees u and wipes the key; publications must have been unpublished. */
void dnsupdate_free(struct dnsupdate *u);

#endif
