#include "dial.h"

#include <stdlib.h>
#include <string.h>

#define BACKOFF_MIN_MS 500
#define BACKOFF_MAX_MS 30000

void
dial_init(struct dial *d, struct lws_context *cx, dial_start_fn start, void *ctx)
{
	memset(d, 0, sizeof *d);
	d->cx = cx;
	d->start = start;
	d->ctx = ctx;
}

struct dial_target *
dial_find(const struct dial *d, const char *address, int port)
{
	for (struct dial_target *t = d->targets; t; t = t->next)
		if (t->port == port && strcmp(t->address, address) == 0)
			return t;
	return NULL;
}

static void dial_try(struct dial_target *t);

static int
same(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Another address of t's advertisement (dial.h). */
static int
dial_sibling(const struct dial_target *t, const struct dial_target *s)
{
	return s != t && t->instance && s->port == t->port && same(s->instance, t->instance) &&
	    same(s->domain, t->domain) && same(s->iface, t->iface);
}

/* What t's siblings waiting on it learn: the node it reached (covered by it), that it was
 * us, or nothing (then they are dialled themselves). */
static void
dial_settle_waiting(struct dial_target *t, enum dial_state to, const unsigned char *node)
{
	for (struct dial_target *s = t->d->targets; s; s = s->next) {
		if (s->state != DIAL_WAITING || !dial_sibling(t, s))
			continue;
		s->state = to;
		if (node)
			memcpy(s->node, node, LINK_NODE_LEN);
		if (to == DIAL_IDLE)
			dial_try(s);
	}
}

static void
dial_due(lws_sorted_usec_list_t *sul)
{
	dial_try(lws_container_of(sul, struct dial_target, sul));
}

static void
dial_schedule(struct dial_target *t)
{
	if (t->d->stopped)
		return;
	lws_sul_schedule(t->d->cx, 0, &t->sul, dial_due, (lws_usec_t)t->backoff_ms * LWS_US_PER_MS);
	t->backoff_ms = t->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : t->backoff_ms * 2;
}

static void
dial_try(struct dial_target *t)
{
	if (t->state != DIAL_IDLE || t->d->stopped)
		return;
	for (struct dial_target *s = t->d->targets; s; s = s->next)
		if (dial_sibling(t, s) && (s->state == DIAL_DIALING || s->state == DIAL_UP)) {
			t->state = DIAL_WAITING;
			return;
		}
	/* Dialling before the start: a link that fails at once is down (dial_down) before
	 * start returns. */
	t->state = DIAL_DIALING;
	int rc = t->d->start(t->d->ctx, t);
	if (rc != 0) {
		t->state = DIAL_IDLE;
		if (rc < 0)
			dial_schedule(t);
	}
}

struct dial_target *
dial_add(struct dial *d, const char *address, int port, const char *iface,
    const char *instance, const char *domain)
{
	struct dial_target *t = calloc(1, sizeof *t);
	if (!t || !(t->address = strdup(address)) || (iface && !(t->iface = strdup(iface))) ||
	    (instance && !(t->instance = strdup(instance))) ||
	    (domain && !(t->domain = strdup(domain)))) {
		if (t) {
			free(t->address);
			free(t->iface);
			free(t->instance);
		}
		free(t);
		return NULL;
	}
	t->d = d;
	t->port = port;
	t->backoff_ms = BACKOFF_MIN_MS;
	t->state = DIAL_IDLE;
	t->next = d->targets;
	d->targets = t;
	dial_try(t);
	return t;
}

void
dial_all(struct dial *d)
{
	for (struct dial_target *t = d->targets; t; t = t->next)
		dial_try(t);
}

void
dial_handshaken(struct dial_target *t, const unsigned char *node)
{
	t->backoff_ms = BACKOFF_MIN_MS;
	memcpy(t->node, node, LINK_NODE_LEN);
	dial_settle_waiting(t, DIAL_COVERED, node);
}

void
dial_self(struct dial_target *t)
{
	t->state = DIAL_SELF;
	dial_settle_waiting(t, DIAL_SELF, NULL);
}

void
dial_down(struct dial_target *t, const unsigned char *covered_by)
{
	if (t->state == DIAL_SELF)
		return;
	if (covered_by) {
		memcpy(t->node, covered_by, LINK_NODE_LEN);
		t->state = DIAL_COVERED;
		dial_settle_waiting(t, DIAL_COVERED, covered_by);
	} else {
		t->state = DIAL_IDLE;
		dial_schedule(t);
		dial_settle_waiting(t, DIAL_IDLE, NULL);
	}
}

void
dial_uncover(struct dial *d, const unsigned char *node)
{
	for (struct dial_target *t = d->targets; t; t = t->next)
		if (t->state == DIAL_COVERED && memcmp(t->node, node, LINK_NODE_LEN) == 0) {
			t->state = DIAL_IDLE;
			dial_schedule(t);
		}
}

void
dial_remove(struct dial_target *t)
{
	for (struct dial_target **pp = &t->d->targets; *pp; pp = &(*pp)->next)
		if (*pp == t) {
			*pp = t->next;
			break;
		}
	lws_sul_cancel(&t->sul);
	if (t->state == DIAL_DIALING || t->state == DIAL_UP)
		dial_settle_waiting(t, DIAL_IDLE, NULL);
	free(t->address);
	free(t->iface);
	free(t->instance);
	free(t->domain);
	free(t);
}

void
dial_stop(struct dial *d)
{
	d->stopped = 1;
	for (struct dial_target *t = d->targets; t; t = t->next)
		lws_sul_cancel(&t->sul);
}

void
dial_clear(struct dial *d)
{
	while (d->targets)
		dial_remove(d->targets);
}
