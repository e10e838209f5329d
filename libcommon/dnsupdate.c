#include "dnsupdate.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ldns/ldns.h>
#include <sodium.h>

#include "dnssd.h"
#include "log.h"

#define KEYFILE_MAX 4096

struct dnsupdate {
	char *domain;             /* without a trailing dot */
	char *server;             /* --dns-server, or NULL */
	char keyname[256], algorithm[64];
	char secret[256];         /* base64, wiped at free */
	ldns_resolver *res;       /* sends to the primary; NULL until the first publish */
	ldns_rdf *zone;
	char local[INET6_ADDRSTRLEN];   /* our address as the primary sees it */
	int local_v6;
};

struct dnsupdate_pub {
	char instance[DNSSD_INSTANCE_HEX * 2 + 1];
	uint16_t port;
	char tag[128];
};

static void
say(char *err, size_t n, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, n, fmt, ap);
	va_end(ap);
}

/* The word after key at p (quoted or up to ';', '{' or space) into out. */
static int
key_word(const char *text, const char *key, char *out, size_t n)
{
	const char *p = text, *end;
	size_t klen = strlen(key);

	for (;;) {
		if (!(p = strstr(p, key)))
			return -1;
		/* a whole word: not "algorithm" inside another name */
		if ((p == text || strchr(" \t\n{;", p[-1])) && strchr(" \t\n", p[klen]))
			break;
		p += klen;
	}
	p += klen;
	p += strspn(p, " \t\n");
	if (*p == '"') {
		p++;
		end = strchr(p, '"');
	} else {
		end = p + strcspn(p, " \t\n;{");
	}
	if (!end || end == p || (size_t)(end - p) >= n)
		return -1;
	memcpy(out, p, (size_t)(end - p));
	out[end - p] = 0;
	return 0;
}

static int
key_read(struct dnsupdate *u, const char *path, char *err, size_t n)
{
	char text[KEYFILE_MAX + 1];
	FILE *f = fopen(path, "r");
	size_t len;
	int rc = -1;

	if (!f) {
		say(err, n, "cannot read the TSIG key %s: %s", path, strerror(errno));
		return -1;
	}
	len = fread(text, 1, KEYFILE_MAX, f);
	text[len] = 0;
	fclose(f);
	if (key_word(text, "key", u->keyname, sizeof u->keyname) < 0 ||
	    key_word(text, "algorithm", u->algorithm, sizeof u->algorithm - 1) < 0 ||
	    key_word(text, "secret", u->secret, sizeof u->secret) < 0)
		say(err, n, "%s is not a TSIG key file as tsig-keygen writes it "
		    "(key \"NAME\" { algorithm ALG; secret \"BASE64\"; };)", path);
	else
		rc = 0;
	sodium_memzero(text, sizeof text);
	/* ldns looks algorithms up by their full domain name. */
	if (rc == 0 && u->algorithm[strlen(u->algorithm) - 1] != '.')
		strcat(u->algorithm, ".");
	return rc;
}

struct dnsupdate *
dnsupdate_new(const char *domain, const char *keyfile, const char *server, char *err,
    size_t errlen)
{
	struct dnsupdate *u;
	size_t dlen = strlen(domain);

	/* The records are written as zone-file text: nothing but a host name may go in. */
	if (!dlen || dlen > 253 || strspn(domain, "abcdefghijklmnopqrstuvwxyz"
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") != dlen || domain[0] == '.') {
		say(err, errlen, "-d wants a DNS domain name such as nws.example.org");
		return NULL;
	}
	u = calloc(1, sizeof *u);
	if (!u || !(u->domain = strndup(domain, dlen && domain[dlen - 1] == '.' ? dlen - 1 :
	    dlen)) || (server && !(u->server = strdup(server)))) {
		say(err, errlen, "out of memory");
		dnsupdate_free(u);
		return NULL;
	}
	if (key_read(u, keyfile, err, errlen) < 0) {
		dnsupdate_free(u);
		return NULL;
	}
	return u;
}

static ldns_rdf *
addr_rdf(const char *s)
{
	struct in6_addr a6;

	return ldns_rdf_new_frm_str(inet_pton(AF_INET6, s, &a6) == 1 ? LDNS_RDF_TYPE_AAAA :
	    LDNS_RDF_TYPE_A, s);
}

/* Our address towards the first name server: what a peer dials (nws-link listens on
 * every interface unless told otherwise). */
static int
local_address(struct dnsupdate *u, char *err, size_t n)
{
	ldns_rdf **ns = ldns_resolver_nameservers(u->res);
	struct sockaddr_storage *to, me;
	socklen_t melen = sizeof me;
	size_t tolen;
	int fd = -1, rc = -1;

	if (!(to = ldns_rdf2native_sockaddr_storage(ns[0], 53, &tolen))) {
		say(err, n, "out of memory");
		return -1;
	}
	if ((fd = socket(to->ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0 ||
	    connect(fd, (struct sockaddr *)to, (socklen_t)tolen) < 0 ||
	    getsockname(fd, (struct sockaddr *)&me, &melen) < 0) {
		say(err, n, "no route to the DNS server: %s", strerror(errno));
	} else {
		u->local_v6 = me.ss_family == AF_INET6;
		inet_ntop(me.ss_family, u->local_v6 ?
		    (void *)&((struct sockaddr_in6 *)&me)->sin6_addr :
		    (void *)&((struct sockaddr_in *)&me)->sin_addr, u->local, sizeof u->local);
		rc = 0;
	}
	if (fd >= 0)
		close(fd);
	LDNS_FREE(to);
	return rc;
}

/* The SOA of the zone holding name: in the answer (name is the apex) or the authority
 * section (a name below it). zone and mname are set, or -1. */
static int
soa_find(ldns_resolver *r, const char *name, ldns_rdf **zone, ldns_rdf **mname)
{
	ldns_rdf *q = ldns_dname_new_frm_str(name);
	ldns_pkt *ans = NULL;
	int rc = -1;

	if (q && ldns_resolver_send(&ans, r, q, LDNS_RR_TYPE_SOA, LDNS_RR_CLASS_IN, LDNS_RD) ==
	    LDNS_STATUS_OK && ans) {
		ldns_rr_list *secs[2] = { ldns_pkt_answer(ans), ldns_pkt_authority(ans) };
		for (int s = 0; s < 2 && rc < 0; s++)
			for (size_t i = 0; i < ldns_rr_list_rr_count(secs[s]) && rc < 0; i++) {
				ldns_rr *rr = ldns_rr_list_rr(secs[s], i);
				if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA || !ldns_rr_rdf(rr, 0))
					continue;
				*zone = ldns_rdf_clone(ldns_rr_owner(rr));
				*mname = ldns_rdf_clone(ldns_rr_rdf(rr, 0));
				rc = 0;
			}
	}
	ldns_rdf_deep_free(q);
	ldns_pkt_free(ans);
	return rc;
}

/* Makes the addresses of name (A, then AAAA) name servers of to; their count. */
static size_t
primary_addresses(ldns_resolver *look, const ldns_rdf *name, ldns_resolver *to)
{
	static const ldns_rr_type types[2] = { LDNS_RR_TYPE_A, LDNS_RR_TYPE_AAAA };

	for (int t = 0; t < 2; t++) {
		ldns_pkt *ans = NULL;
		if (ldns_resolver_send(&ans, look, name, types[t], LDNS_RR_CLASS_IN, LDNS_RD) !=
		    LDNS_STATUS_OK || !ans) {
			ldns_pkt_free(ans);
			continue;
		}
		ldns_rr_list *l = ldns_pkt_answer(ans);
		for (size_t i = 0; i < ldns_rr_list_rr_count(l); i++)
			if (ldns_rr_get_type(ldns_rr_list_rr(l, i)) == types[t])
				ldns_resolver_push_nameserver(to, ldns_rr_rdf(ldns_rr_list_rr(l, i), 0));
		ldns_pkt_free(ans);
	}
	return ldns_resolver_nameserver_count(to);
}

/* Finds the zone and where to send updates, once: the server given, or the primary named
 * by the SOA's MNAME, looked up through the system resolver as nsupdate does. */
static int
primary_find(struct dnsupdate *u, char *err, size_t n)
{
	ldns_resolver *look = NULL;
	ldns_rdf *mname = NULL, *a = NULL;
	char fqdn[300];
	struct timeval tv = { DNSUPDATE_TIMEOUT_MS / 1000, DNSUPDATE_TIMEOUT_MS % 1000 * 1000 };

	if (u->res)
		return 0;
	if (!(u->res = ldns_resolver_new())) {
		say(err, n, "out of memory");
		return -1;
	}
	ldns_resolver_set_timeout(u->res, tv);
	ldns_resolver_set_retry(u->res, 2);
	if (u->server) {
		if (!(a = addr_rdf(u->server))) {
			say(err, n, "--dns-server wants an IPv4 or IPv6 address, not %s", u->server);
			goto fail;
		}
		ldns_resolver_push_nameserver(u->res, a);
		look = u->res;
	} else if (ldns_resolver_new_frm_file(&look, NULL) != LDNS_STATUS_OK) {
		say(err, n, "cannot read /etc/resolv.conf to find the primary of %s "
		    "(or give --dns-server)", u->domain);
		goto fail;
	} else {
		ldns_resolver_set_timeout(look, tv);
		ldns_resolver_set_retry(look, 2);
	}
	snprintf(fqdn, sizeof fqdn, "%s.%s.", DNSSD_TYPE, u->domain);
	if (soa_find(look, fqdn, &u->zone, &mname) < 0) {
		say(err, n, "no SOA record for %s from %s (is the domain served there?)",
		    u->domain, u->server ? u->server : "the resolvers of /etc/resolv.conf");
		goto fail;
	}
	if (!u->server && !primary_addresses(look, mname, u->res)) {
		char *m = ldns_rdf2str(mname);
		say(err, n, "the primary %s of %s has no address (or give --dns-server)",
		    m ? m : "?", u->domain);
		free(m);
		goto fail;
	}
	ldns_resolver_set_tsig_keyname(u->res, u->keyname);
	ldns_resolver_set_tsig_keydata(u->res, u->secret);
	ldns_resolver_set_tsig_algorithm(u->res, u->algorithm);
	if (local_address(u, err, n) < 0)
		goto fail;
	if (look != u->res)
		ldns_resolver_deep_free(look);
	ldns_rdf_deep_free(mname);
	ldns_rdf_deep_free(a);
	return 0;
fail:
	if (look && look != u->res)
		ldns_resolver_deep_free(look);
	ldns_resolver_deep_free(u->res);
	u->res = NULL;
	ldns_rdf_deep_free(u->zone);
	u->zone = NULL;
	ldns_rdf_deep_free(mname);
	ldns_rdf_deep_free(a);
	return -1;
}

/* p's four records; for a deletion (RFC 2136 2.5.4) of class NONE and TTL 0. */
static ldns_rr_list *
records(const struct dnsupdate *u, const struct dnsupdate_pub *p, int del)
{
	char s[4][512];
	ldns_rr_list *l = ldns_rr_list_new();
	const char *d = u->domain, *i = p->instance;

	snprintf(s[0], sizeof s[0], "%s.%s. %d IN PTR %s.%s.%s.", DNSSD_TYPE, d,
	    DNSUPDATE_TTL, i, DNSSD_TYPE, d);
	snprintf(s[1], sizeof s[1], "%s.%s.%s. %d IN SRV 0 0 %u %s.%s.", i, DNSSD_TYPE, d,
	    DNSUPDATE_TTL, p->port, i, d);
	snprintf(s[2], sizeof s[2], "%s.%s.%s. %d IN TXT \"v=1\" \"t=%s\"", i, DNSSD_TYPE, d,
	    DNSUPDATE_TTL, p->tag);
	snprintf(s[3], sizeof s[3], "%s.%s. %d IN %s %s", i, d, DNSUPDATE_TTL,
	    u->local_v6 ? "AAAA" : "A", u->local);
	for (int k = 0; l && k < 4; k++) {
		ldns_rr *rr = NULL;
		if (ldns_rr_new_frm_str(&rr, s[k], 0, NULL, NULL) != LDNS_STATUS_OK) {
			ldns_rr_list_deep_free(l);
			return NULL;
		}
		if (del) {
			ldns_rr_set_class(rr, LDNS_RR_CLASS_NONE);
			ldns_rr_set_ttl(rr, 0);
		}
		ldns_rr_list_push_rr(l, rr);
	}
	return l;
}

/* Sends one signed update of p's records; 0 when the primary answered NOERROR. */
static int
update_send(struct dnsupdate *u, const struct dnsupdate_pub *p, int del, char *err, size_t n)
{
	ldns_rr_list *l = records(u, p, del);
	ldns_pkt *q = NULL, *ans = NULL;
	ldns_status st;
	int rc = -1;

	if (!l) {
		say(err, n, "cannot form the records in %s (is it a domain name?)", u->domain);
		return -1;
	}
	if (!(q = ldns_update_pkt_new(ldns_rdf_clone(u->zone), LDNS_RR_CLASS_IN, NULL, l,
	    NULL))) {
		say(err, n, "out of memory");
		goto out;
	}
	/* ldns leaves the id at 0: a fixed id makes spoofed answers easy to match. */
	ldns_pkt_set_id(q, (uint16_t)randombytes_uniform(65536));
	if ((st = ldns_update_pkt_tsig_add(q, u->res)) != LDNS_STATUS_OK) {
		say(err, n, "cannot sign the update with key %s: %s", u->keyname,
		    ldns_get_errorstr_by_id(st));
		goto out;
	}
	if ((st = ldns_resolver_send_pkt(&ans, u->res, q)) != LDNS_STATUS_OK || !ans) {
		say(err, n, "no answer from the primary of %s: %s", u->domain,
		    ldns_get_errorstr_by_id(st));
		goto out;
	}
	if (ldns_pkt_get_rcode(ans) != LDNS_RCODE_NOERROR) {
		const ldns_lookup_table *t = ldns_lookup_by_id(ldns_rcodes,
		    (int)ldns_pkt_get_rcode(ans));
		say(err, n, "the primary of %s refused the update: %s (does key %s allow it?)",
		    u->domain, t ? t->name : "error", u->keyname);
		goto out;
	}
	rc = 0;
out:
	ldns_pkt_free(q);
	ldns_pkt_free(ans);
	ldns_rr_list_deep_free(l);
	return rc;
}

struct dnsupdate_pub *
dnsupdate_publish(struct dnsupdate *u, uint16_t port, const char *tag, char *err,
    size_t errlen)
{
	unsigned char rnd[DNSSD_INSTANCE_HEX];
	struct dnsupdate_pub *p;

	if (strlen(tag) >= sizeof p->tag) {
		say(err, errlen, "tag too long");
		return NULL;
	}
	if (primary_find(u, err, errlen) < 0)
		return NULL;
	if (!(p = calloc(1, sizeof *p))) {
		say(err, errlen, "out of memory");
		return NULL;
	}
	randombytes_buf(rnd, sizeof rnd);
	sodium_bin2hex(p->instance, sizeof p->instance, rnd, sizeof rnd);
	p->port = port;
	strcpy(p->tag, tag);
	if (update_send(u, p, 0, err, errlen) < 0) {
		free(p);
		return NULL;
	}
	return p;
}

const char *
dnsupdate_pub_instance(const struct dnsupdate_pub *p)
{
	return p->instance;
}

void
dnsupdate_unpublish(struct dnsupdate *u, struct dnsupdate_pub *p)
{
	char err[256];

	if (!p)
		return;
	if (update_send(u, p, 1, err, sizeof err) < 0)
		log_error("cannot withdraw instance %s: %s (it stays until removed by hand)",
		    p->instance, err);
	free(p);
}

void
dnsupdate_free(struct dnsupdate *u)
{
	if (!u)
		return;
	if (u->res) {
		/* ldns keeps its own copy of the secret: wipe it before it is freed. */
		const char *kd = ldns_resolver_tsig_keydata(u->res);
		if (kd)
			sodium_memzero((void *)kd, strlen(kd));
		ldns_resolver_deep_free(u->res);
	}
	ldns_rdf_deep_free(u->zone);
	sodium_memzero(u->secret, sizeof u->secret);
	free(u->domain);
	free(u->server);
	free(u);
}
