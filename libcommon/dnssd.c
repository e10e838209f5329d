#include "dnssd.h"

#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/domain.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/strlst.h>
#include <avahi-common/timeval.h>

#include "keys.h"
#include "log.h"

#define RETRY_MS 1000   /* how often to retry when even the system bus is missing */

struct dnssd_pub {
	struct dnssd_pub *next;
	struct dnssd *d;
	AvahiEntryGroup *group;   /* NULL while the daemon is away */
	char instance[DNSSD_INSTANCE_MAX + 1];
	uint16_t port;
	char *tag_txt;            /* "t=..." */
	int probe;                /* publish with probing (see pub_add_fast) */
	void *user;
};

/* One browse result: a (interface, protocol, instance, domain) the browser reported. */
struct item {
	struct item *next;
	struct dnssd *d;
	AvahiIfIndex ifindex;
	AvahiProtocol proto;
	char *name, *domain;
	AvahiServiceResolver *resolver;   /* set while resolving */
	int found;                        /* rec was reported found */
	unsigned gen;                     /* the last wide-area browser that reported it */
	struct dnssd_record rec;
	char *host, *address, *interface, *tag;
};

struct dnssd {
	struct aloop *al;
	AvahiClient *client;
	const struct dnssd_callbacks *cb;
	void *ctx;
	char *domain;
	AvahiIfIndex ifindex;
	int up;                 /* 1 running, 0 down (reported), -1 not known yet */
	int code;
	struct dnssd_pub *pubs;
	int browsing;
	AvahiServiceBrowser *browser;
	int all_for_now;        /* ALL_FOR_NOW seen, not yet reported */
	struct item *items;
	size_t nitems;
	int wide;               /* a unicast domain: browsers are re-created (dnssd.h) */
	unsigned gen;           /* counts those browsers */
	AvahiTimeout *rebrowse;
	AvahiTimeout *reconnect;
};

static void client_cb(AvahiClient *c, AvahiClientState state, void *arg);
static void pub_commit(struct dnssd_pub *p);
static void browse_start(struct dnssd *d);
static void rebrowse_cb(AvahiTimeout *t, void *arg);

/* Client life cycle. ------------------------------------------------------------------ */

static void
item_free(struct item *it)
{
	if (it->resolver)
		avahi_service_resolver_free(it->resolver);
	free(it->name);
	free(it->domain);
	free(it->host);
	free(it->address);
	free(it->interface);
	free(it->tag);
	free(it);
}

/* Forgets every object of the client: the daemon went away or we are exiting. Records
 * are reported lost, since nobody is watching them any more. */
static void
client_forget(struct dnssd *d, int report)
{
	struct item *it;

	while ((it = d->items)) {
		d->items = it->next;
		d->nitems--;
		if (report && it->found && d->cb->record)
			d->cb->record(d->ctx, &it->rec, 0);
		item_free(it);
	}
	if (d->browser) {
		avahi_service_browser_free(d->browser);
		d->browser = NULL;
	}
	d->all_for_now = 0;
	for (struct dnssd_pub *p = d->pubs; p; p = p->next)
		if (p->group) {
			avahi_entry_group_free(p->group);
			p->group = NULL;
		}
}

static void
set_down(struct dnssd *d, const char *why)
{
	if (d->up == 0)
		return;
	d->up = 0;
	client_forget(d, 1);
	if (d->cb->down)
		d->cb->down(d->ctx, why);
}

static void
client_connect(struct dnssd *d)
{
	int err = 0;

	/* NO_FAIL: a missing daemon is not an error, the client waits for it. Only a missing
	 * system bus fails here, and then we retry on a timer. */
	if (!avahi_client_new(aloop_poll(d->al), AVAHI_CLIENT_NO_FAIL, client_cb, d,
	    &err)) {
		d->client = NULL;
		set_down(d, avahi_strerror(err));
		struct timeval tv;
		const AvahiPoll *api = aloop_poll(d->al);
		api->timeout_update(d->reconnect, avahi_elapse_time(&tv, RETRY_MS, 0));
	}
}

static void
reconnect_cb(AvahiTimeout *t, void *arg)
{
	struct dnssd *d = arg;
	const AvahiPoll *api = aloop_poll(d->al);

	api->timeout_update(t, NULL);
	if (d->client) {
		/* Deferred from client_cb: a client is not freed inside its own callback. */
		client_forget(d, 0);
		avahi_client_free(d->client);
		d->client = NULL;
	}
	client_connect(d);
}

static void
client_cb(AvahiClient *c, AvahiClientState state, void *arg)
{
	struct dnssd *d = arg;
	struct timeval tv;

	/* This runs from inside avahi_client_new too, before it has returned c. */
	d->client = c;
	switch (state) {
	case AVAHI_CLIENT_S_RUNNING:
		if (d->up != 1) {
			d->up = 1;
			if (d->cb->up)
				d->cb->up(d->ctx);
		}
		for (struct dnssd_pub *p = d->pubs; p; p = p->next)
			pub_commit(p);
		browse_start(d);
		break;
	case AVAHI_CLIENT_S_COLLISION:
	case AVAHI_CLIENT_S_REGISTERING:
		/* The daemon is (re)registering its host name: records must wait for RUNNING. */
		for (struct dnssd_pub *p = d->pubs; p; p = p->next)
			if (p->group)
				avahi_entry_group_reset(p->group);
		break;
	case AVAHI_CLIENT_CONNECTING:
		set_down(d, avahi_strerror(AVAHI_ERR_NO_DAEMON));
		break;
	case AVAHI_CLIENT_FAILURE:
		set_down(d, avahi_strerror(avahi_client_errno(c)));
		aloop_poll(d->al)->timeout_update(d->reconnect,
		    avahi_elapse_time(&tv, 0, 0));
		break;
	}
}

struct dnssd *
dnssd_new(struct aloop *al, const char *domain, const char *interface,
    const struct dnssd_callbacks *cb, void *ctx)
{
	struct dnssd *d;

	if (!(d = calloc(1, sizeof *d)))
		goto oom;
	d->al = al;
	d->cb = cb;
	d->ctx = ctx;
	d->up = -1;
	d->ifindex = AVAHI_IF_UNSPEC;
	if (interface && !(d->ifindex = (AvahiIfIndex)if_nametoindex(interface))) {
		log_error("no network interface named %s: see `ip link` for the names", interface);
		free(d);
		return NULL;
	}
	if (domain && !(d->domain = strdup(domain)))
		goto oom;
	d->wide = domain && strcasecmp(domain, "local") && strcasecmp(domain, "local.");
	const AvahiPoll *api = aloop_poll(al);
	if (!(d->reconnect = api->timeout_new(api, NULL, reconnect_cb, d)) ||
	    (d->wide && !(d->rebrowse = api->timeout_new(api, NULL, rebrowse_cb, d))))
		goto oom;
	return d;
oom:
	log_error("out of memory");
	dnssd_free(d);
	return NULL;
}

void
dnssd_start(struct dnssd *d)
{
	client_connect(d);
}

void
dnssd_free(struct dnssd *d)
{
	struct dnssd_pub *p;

	if (!d)
		return;
	while ((p = d->pubs))
		dnssd_unpublish(d, p);
	client_forget(d, 0);
	if (d->client)
		avahi_client_free(d->client);
	if (d->reconnect)
		aloop_poll(d->al)->timeout_free(d->reconnect);
	if (d->rebrowse)
		aloop_poll(d->al)->timeout_free(d->rebrowse);
	free(d->domain);
	free(d);
}

int
dnssd_is_up(const struct dnssd *d)
{
	return d->up == 1;
}

/* Publishing. ------------------------------------------------------------------------- */

static void
pub_rename(struct dnssd_pub *p)
{
	keys_random_hex(p->instance, DNSSD_INSTANCE_HEX);
	p->probe = p->d->domain && strcmp(p->d->domain, "local") != 0;
}

/* name (escaped text) in DNS wire format; 0 when it does not fit. */
static size_t
name_wire(const char *name, unsigned char *out, size_t max)
{
	char label[AVAHI_LABEL_MAX];
	size_t n = 0, l;

	while (*name) {
		if (!avahi_unescape_label(&name, label, sizeof label) || !(l = strlen(label)) ||
		    n + 1 + l + 1 > max)
			return 0;
		out[n++] = (unsigned char)l;
		memcpy(out + n, label, l);
		n += l;
	}
	out[n++] = 0;
	return n;
}

const char *
dnssd_name_decode(const char *name, char *out, size_t outlen)
{
	size_t o = 0;

	if (!outlen)
		return out;
	while (*name && o + 1 < outlen) {
		const char *e = name + 1;
		int c = (unsigned char)*name;
		if (c == '\\' && e[0] >= '0' && e[0] <= '9' && e[1] >= '0' && e[1] <= '9' &&
		    e[2] >= '0' && e[2] <= '9') {
			int v = (e[0] - '0') * 100 + (e[1] - '0') * 10 + (e[2] - '0');
			if (v > 0 && v < 256) {
				c = v;
				e += 3;
			}
		} else if (c == '\\' && (e[0] == '.' || e[0] == '\\')) {
			c = *e++;
		}
		out[o++] = (char)c;
		name = e;
	}
	out[o] = '\0';
	return out;
}

/* A random 64-bit instance name collides by accident about never, so it is published
 * as its PTR, SRV and TXT records with NO_PROBE: announced at once instead of after the
 * ~1 s of probing avahi_entry_group_add_service always does. That is most of the time
 * from start to being found. Names a user chose (--instance) and other domains take the
 * ordinary, probed path. Returns an AVAHI_ERR_* or 0. */
static int
pub_add_fast(struct dnssd_pub *p)
{
	struct dnssd *d = p->d;
	char svc[AVAHI_DOMAIN_NAME_MAX], type[AVAHI_DOMAIN_NAME_MAX];
	unsigned char srv[6 + AVAHI_DOMAIN_NAME_MAX], ptr[AVAHI_DOMAIN_NAME_MAX], txt[1024];
	const char *host = avahi_client_get_host_name_fqdn(d->client);
	AvahiStringList *l;
	size_t nsrv, nptr, ntxt, ntype;
	int r;

	if (!host)
		return avahi_client_errno(d->client);
	if ((r = avahi_service_name_join(svc, sizeof svc, p->instance, DNSSD_TYPE, "local")) < 0 ||
	    (r = avahi_service_name_join(type, sizeof type, NULL, DNSSD_TYPE, "local")) < 0)
		return r;
	srv[0] = srv[1] = srv[2] = srv[3] = 0;   /* priority, weight */
	srv[4] = p->port >> 8;
	srv[5] = p->port & 0xff;
	if (!(nsrv = name_wire(host, srv + 6, sizeof srv - 6)) ||
	    !(nptr = name_wire(svc, ptr, sizeof ptr)))
		return AVAHI_ERR_INVALID_HOST_NAME;
	if (!(l = avahi_string_list_new("v=1", p->tag_txt, NULL)))
		return AVAHI_ERR_NO_MEMORY;
	ntxt = avahi_string_list_serialize(l, txt, sizeof txt);
	avahi_string_list_free(l);
	unsigned char type_wire[AVAHI_DOMAIN_NAME_MAX];
	ntype = name_wire(type, type_wire, sizeof type_wire);

	const AvahiPublishFlags uniq = AVAHI_PUBLISH_UNIQUE | AVAHI_PUBLISH_NO_PROBE;
	if ((r = avahi_entry_group_add_record(p->group, d->ifindex, AVAHI_PROTO_UNSPEC, 0, type,
	    AVAHI_DNS_CLASS_IN, AVAHI_DNS_TYPE_PTR, AVAHI_DEFAULT_TTL, ptr, nptr)) < 0 ||
	    (r = avahi_entry_group_add_record(p->group, d->ifindex, AVAHI_PROTO_UNSPEC, uniq, svc,
	    AVAHI_DNS_CLASS_IN, AVAHI_DNS_TYPE_SRV, AVAHI_DEFAULT_TTL_HOST_NAME, srv, 6 + nsrv)) < 0 ||
	    (r = avahi_entry_group_add_record(p->group, d->ifindex, AVAHI_PROTO_UNSPEC, uniq, svc,
	    AVAHI_DNS_CLASS_IN, AVAHI_DNS_TYPE_TXT, AVAHI_DEFAULT_TTL, txt, ntxt)) < 0)
		return r;
	/* The DNS-SD service type enumeration, as add_service publishes it. */
	return avahi_entry_group_add_record(p->group, d->ifindex, AVAHI_PROTO_UNSPEC, 0,
	    "_services._dns-sd._udp.local", AVAHI_DNS_CLASS_IN, AVAHI_DNS_TYPE_PTR,
	    AVAHI_DEFAULT_TTL, type_wire, ntype);
}

static void
pub_fail(struct dnssd_pub *p, int err)
{
	if (p->d->cb->publish_failed)
		p->d->cb->publish_failed(p->d->ctx, p, avahi_strerror(err));
}

static void
group_cb(AvahiEntryGroup *g, AvahiEntryGroupState state, void *arg)
{
	struct dnssd_pub *p = arg;
	AvahiClient *c = avahi_entry_group_get_client(g);

	switch (state) {
	case AVAHI_ENTRY_GROUP_ESTABLISHED:
		if (p->d->cb->published)
			p->d->cb->published(p->d->ctx, p, p->instance);
		break;
	case AVAHI_ENTRY_GROUP_COLLISION:
		/* Someone on the network has this name: silently take another. */
		log_debug("instance name %s is taken, choosing another", p->instance);
		pub_rename(p);
		avahi_entry_group_reset(g);
		pub_commit(p);
		break;
	case AVAHI_ENTRY_GROUP_FAILURE:
		/* A daemon that went away is handled by client_cb; this is anything else. */
		if (avahi_client_get_state(c) == AVAHI_CLIENT_S_RUNNING)
			pub_fail(p, avahi_client_errno(c));
		break;
	case AVAHI_ENTRY_GROUP_UNCOMMITED:
	case AVAHI_ENTRY_GROUP_REGISTERING:
		break;
	}
}

static void
pub_commit(struct dnssd_pub *p)
{
	struct dnssd *d = p->d;
	int r = AVAHI_ERR_COLLISION;

	if (!d->client || avahi_client_get_state(d->client) != AVAHI_CLIENT_S_RUNNING)
		return;
	if (!p->group && !(p->group = avahi_entry_group_new(d->client, group_cb, p))) {
		pub_fail(p, avahi_client_errno(d->client));
		return;
	}
	if (!avahi_entry_group_is_empty(p->group))
		return;
	/* A local collision is reported at once; a few fresh names settle it. */
	for (int tries = 0; r == AVAHI_ERR_COLLISION && tries < 8; tries++) {
		r = p->probe ? avahi_entry_group_add_service(p->group, d->ifindex,
		    AVAHI_PROTO_UNSPEC, 0, p->instance, DNSSD_TYPE, d->domain, NULL, p->port,
		    "v=1", p->tag_txt, NULL) : pub_add_fast(p);
		if (r == AVAHI_ERR_COLLISION) {
			avahi_entry_group_reset(p->group);
			pub_rename(p);
		}
	}
	if (r < 0 || (r = avahi_entry_group_commit(p->group)) < 0) {
		avahi_entry_group_reset(p->group);
		pub_fail(p, r);
	}
}

struct dnssd_pub *
dnssd_publish(struct dnssd *d, const char *instance, uint16_t port, const char *tag,
    void *user)
{
	struct dnssd_pub *p;

	if (!(p = calloc(1, sizeof *p)) || asprintf(&p->tag_txt, "t=%s", tag) < 0) {
		free(p);
		return NULL;
	}
	p->d = d;
	p->port = port;
	p->user = user;
	if (instance && *instance && strlen(instance) <= DNSSD_INSTANCE_MAX) {
		strcpy(p->instance, instance);
		p->probe = 1;
	} else {
		pub_rename(p);
	}
	p->next = d->pubs;
	d->pubs = p;
	pub_commit(p);
	return p;
}

void
dnssd_unpublish(struct dnssd *d, struct dnssd_pub *p)
{
	for (struct dnssd_pub **pp = &d->pubs; *pp; pp = &(*pp)->next)
		if (*pp == p) {
			*pp = p->next;
			break;
		}
	/* Freeing the group makes the daemon withdraw it, with goodbye packets. */
	if (p->group)
		avahi_entry_group_free(p->group);
	free(p->tag_txt);
	free(p);
}

void *
dnssd_pub_user(const struct dnssd_pub *p)
{
	return p->user;
}

/* Browsing. --------------------------------------------------------------------------- */

static void
check_all_for_now(struct dnssd *d)
{
	if (!d->all_for_now)
		return;
	for (struct item *it = d->items; it; it = it->next)
		if (it->resolver)
			return;
	d->all_for_now = 0;
	if (d->cb->all_for_now)
		d->cb->all_for_now(d->ctx);
}

static struct item *
item_find(struct dnssd *d, AvahiIfIndex ifindex, AvahiProtocol proto, const char *name,
    const char *domain, struct item ***prev)
{
	struct item **pp;

	for (pp = &d->items; *pp; pp = &(*pp)->next) {
		struct item *it = *pp;
		if (it->ifindex == ifindex && it->proto == proto && strcmp(it->name, name) == 0 &&
		    strcmp(it->domain, domain) == 0) {
			if (prev)
				*prev = pp;
			return it;
		}
	}
	return NULL;
}

/* The value of TXT key in l as a new string; NULL when absent, without a value, present
 * more than once or holding a NUL byte: a record is taken only in exactly its form. */
static char *
txt_get(AvahiStringList *l, const char *key)
{
	char *k = NULL, *v = NULL, *s = NULL;
	size_t size = 0, n = 0, klen = strlen(key);
	AvahiStringList *hit = NULL;

	for (AvahiStringList *e = l; e; e = avahi_string_list_get_next(e))
		if (e->size >= klen && strncasecmp((char *)e->text, key, klen) == 0 &&
		    (e->size == klen || e->text[klen] == '=')) {
			hit = e;
			n++;
		}
	if (n != 1 || avahi_string_list_get_pair(hit, &k, &v, &size) < 0)
		return NULL;
	if (v && strlen(v) == size)
		s = strdup(v);
	avahi_free(k);
	avahi_free(v);
	return s;
}

static int
is_link_local(const AvahiAddress *a)
{
	return a->proto == AVAHI_PROTO_INET6 && a->data.ipv6.address[0] == 0xfe &&
	    (a->data.ipv6.address[1] & 0xc0) == 0x80;
}

/* Fills it->rec from a resolve; 0 when the record is a usable v=1 advertisement. */
static int
item_fill(struct item *it, AvahiIfIndex ifindex, const char *host, const AvahiAddress *a,
    uint16_t port, AvahiStringList *txt)
{
	char addr[AVAHI_ADDRESS_STR_MAX + IF_NAMESIZE + 1], ifname[IF_NAMESIZE] = "";
	char *v = txt_get(txt, "v");
	int ok = v && strcmp(v, "1") == 0;

	free(v);
	if (!ok)
		return -1;
	if (!(it->tag = txt_get(txt, "t")) || !keys_tag_form_ok(it->tag))
		return -1;
	if (!if_indextoname((unsigned)ifindex, ifname))
		snprintf(ifname, sizeof ifname, "%d", ifindex);
	avahi_address_snprint(addr, AVAHI_ADDRESS_STR_MAX, a);
	if (is_link_local(a)) {
		/* A link-local address is only usable with its interface: make it dialable. */
		size_t n = strlen(addr);
		snprintf(addr + n, sizeof addr - n, "%%%s", ifname);
	}
	if (!(it->host = strdup(host)) || !(it->address = strdup(addr)) ||
	    !(it->interface = strdup(ifname)))
		return -1;
	it->rec = (struct dnssd_record){
		.instance = it->name, .domain = it->domain, .host = it->host,
		.address = it->address, .interface = it->interface, .tag = it->tag,
		.port = port,
		.family = a->proto == AVAHI_PROTO_INET6 ? AF_INET6 : AF_INET,
	};
	return 0;
}

static void
resolver_cb(AvahiServiceResolver *r, AvahiIfIndex ifindex, AvahiProtocol proto,
    AvahiResolverEvent ev, const char *name, const char *type, const char *domain,
    const char *host, const AvahiAddress *a, uint16_t port, AvahiStringList *txt,
    AvahiLookupResultFlags flags, void *arg)
{
	struct item *it = arg;
	struct dnssd *d = it->d;
	char esc[LOG_ESCAPE_MAX(AVAHI_LABEL_MAX)] = "", dom[LOG_ESCAPE_MAX(AVAHI_LABEL_MAX)] = "";

	(void)proto;
	(void)type;
	(void)flags;
	/* On a failure name and domain are r's own strings, gone with it: what the log says
	 * of them is taken first, escaped, as the instance name is anyone's text. */
	if (log_level >= 2) {
		log_escape(name, strlen(name), esc, sizeof esc);
		log_escape(domain, strlen(domain), dom, sizeof dom);
	}
	/* One answer is all an advertisement needs: its TXT never changes while published. */
	avahi_service_resolver_free(r);
	it->resolver = NULL;
	if (ev == AVAHI_RESOLVER_FOUND && item_fill(it, ifindex, host, a, port, txt) == 0) {
		it->found = 1;
		if (d->cb->record)
			d->cb->record(d->ctx, &it->rec, 1);
	} else if (ev == AVAHI_RESOLVER_FOUND) {
		log_debug("ignoring %s in %s: not an nws v=1 record", esc, dom);
	} else {
		log_debug("cannot resolve %s in %s", esc, dom);
	}
	check_all_for_now(d);
}

/* Wide area: reports lost, and forgets, what the current browser has not reported. */
static void
wide_sweep(struct dnssd *d)
{
	struct item **pp = &d->items, *it;

	if (!d->wide)
		return;
	while ((it = *pp)) {
		if (it->gen == d->gen || it->resolver) {
			pp = &it->next;
			continue;
		}
		*pp = it->next;
		d->nitems--;
		if (it->found && d->cb->record)
			d->cb->record(d->ctx, &it->rec, 0);
		item_free(it);
	}
}

static void
browser_cb(AvahiServiceBrowser *b, AvahiIfIndex ifindex, AvahiProtocol proto,
    AvahiBrowserEvent ev, const char *name, const char *type, const char *domain,
    AvahiLookupResultFlags flags, void *arg)
{
	struct dnssd *d = arg;
	struct item *it, **prev;

	(void)b;
	(void)flags;
	switch (ev) {
	case AVAHI_BROWSER_NEW:
		if ((it = item_find(d, ifindex, proto, name, domain, NULL))) {
			it->gen = d->gen;
			break;
		}
		if (d->nitems >= DNSSD_MAX_RECORDS) {
			if (log_once_per_burst("dnssd-full"))
				log_error("more than %d advertisements: ignoring the rest",
				    DNSSD_MAX_RECORDS);
			break;
		}
		if (!(it = calloc(1, sizeof *it)) || !(it->name = strdup(name)) ||
		    !(it->domain = strdup(domain))) {
			if (it)
				item_free(it);
			log_error("out of memory");
			break;
		}
		it->d = d;
		it->gen = d->gen;
		it->ifindex = ifindex;
		it->proto = proto;
		it->resolver = avahi_service_resolver_new(d->client, ifindex, proto, name, type,
		    domain, proto, 0, resolver_cb, it);
		if (!it->resolver) {
			char esc[LOG_ESCAPE_MAX(AVAHI_LABEL_MAX)];
			log_debug("cannot resolve %s: %s", log_escape(name, strlen(name), esc,
			    sizeof esc), avahi_strerror(avahi_client_errno(d->client)));
			item_free(it);
			break;
		}
		it->next = d->items;
		d->items = it;
		d->nitems++;
		break;
	case AVAHI_BROWSER_REMOVE:
		if (!(it = item_find(d, ifindex, proto, name, domain, &prev)))
			break;
		*prev = it->next;
		d->nitems--;
		if (it->found && d->cb->record)
			d->cb->record(d->ctx, &it->rec, 0);
		item_free(it);
		check_all_for_now(d);
		break;
	case AVAHI_BROWSER_ALL_FOR_NOW:
		wide_sweep(d);
		d->all_for_now = 1;
		check_all_for_now(d);
		break;
	case AVAHI_BROWSER_CACHE_EXHAUSTED:
		break;
	case AVAHI_BROWSER_FAILURE:
		/* The daemon going away is client_cb's; this is a bad domain or the like. */
		if (avahi_client_get_state(d->client) == AVAHI_CLIENT_S_RUNNING) {
			log_error("cannot browse %s: %s", d->domain ? d->domain : "local",
			    avahi_strerror(avahi_client_errno(d->client)));
			d->all_for_now = 1;
			check_all_for_now(d);
		}
		break;
	}
}

static void
browse_start(struct dnssd *d)
{
	struct timeval tv;

	if (!d->browsing || d->browser || !d->client ||
	    avahi_client_get_state(d->client) != AVAHI_CLIENT_S_RUNNING)
		return;
	d->browser = avahi_service_browser_new(d->client, d->ifindex, AVAHI_PROTO_UNSPEC,
	    DNSSD_TYPE, d->domain, 0, browser_cb, d);
	if (!d->browser)
		log_error("cannot browse: %s", avahi_strerror(avahi_client_errno(d->client)));
	if (d->wide)
		aloop_poll(d->al)->timeout_update(d->rebrowse,
		    avahi_elapse_time(&tv, DNSSD_WIDE_POLL_MS, 0));
}

/* avahi 0.8 neither re-asks a unicast server nor sends REMOVE for wide-area results, so
 * the browser is made anew on a timer, and what the newest one no longer reports (once
 * avahi's cache of it ends, at its TTL) has gone. */
static void
rebrowse_cb(AvahiTimeout *t, void *arg)
{
	struct dnssd *d = arg;

	aloop_poll(d->al)->timeout_update(t, NULL);
	if (!d->browser)
		return;
	wide_sweep(d);
	avahi_service_browser_free(d->browser);
	d->browser = NULL;
	d->gen++;
	browse_start(d);
}

void
dnssd_browse(struct dnssd *d)
{
	d->browsing = 1;
	browse_start(d);
}

void
dnssd_records(struct dnssd *d, void (*fn)(void *ctx, struct dnssd_record *r), void *ctx)
{
	for (struct item *it = d->items; it; it = it->next)
		if (it->found)
			fn(ctx, &it->rec);
}
