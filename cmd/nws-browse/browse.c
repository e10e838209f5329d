#include "browse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>
#include <avahi-common/timeval.h>

#include "log.h"
#include "nws.h"
#include "show.h"

#define UNMATCHED_REPORTED 1u   /* dnssd_record.mark: a channel-less found went out */

static void
emit(struct browse *b, const struct dnssd_record *r, const char *channel, int found)
{
	if (b->text) {
		char line[SHOW_LINE_MAX];
		show_record(line, sizeof line, r, channel, found);
		aloop_pipe_text(b->io, line);
		return;
	}
	struct frame f;
	frame_init(&f);
	f.action = found ? ACTION_FOUND : ACTION_LOST;
	f.port = r->port;
	if (frame_set(&f.channel, channel) < 0 || frame_set(&f.instance, r->instance) < 0 ||
	    frame_set(&f.host, r->host) < 0 || frame_set(&f.address, r->address) < 0 ||
	    frame_set(&f.interface, r->interface) < 0 ||
	    frame_set(&f.domain, r->domain) < 0)
		log_error("out of memory: a %s event is lost", found ? "found" : "lost");
	else
		aloop_pipe_send(b->io, &f);
	frame_clear(&f);
}

static int
matches(const struct browse_chan *c, const struct dnssd_record *r)
{
	return c->k && keys_tag_verify(c->k, r->port, r->tag);
}

static void
on_record(void *ctx, struct dnssd_record *r, int found)
{
	struct browse *b = ctx;
	int n = 0;

	for (size_t i = 0; i < b->nchans; i++)
		if (matches(&b->chans[i], r)) {
			emit(b, r, b->chans[i].name, found);
			n++;
		}
	if (found && !n && b->all) {
		emit(b, r, NULL, 1);
		r->mark |= UNMATCHED_REPORTED;
		n++;
	} else if (!found && (r->mark & UNMATCHED_REPORTED)) {
		emit(b, r, NULL, 0);
	}
	if (log_level >= 2) {
		char inst[LOG_ESCAPE_MAX(64)];
		log_debug("%s %s at %s port %u: %d match(es)", found ? "found" : "lost",
		    log_escape(r->instance, strlen(r->instance), inst, sizeof inst), r->address,
		    r->port, n);
	}
	if (found)
		b->reported += (size_t)n;
}

static void
on_all_for_now(void *ctx)
{
	struct browse *b = ctx;

	if (b->terminate)
		aloop_quit(b->al, b->reported ? NWS_EXIT_OK : NWS_EXIT_FAIL);
}

static void
on_down(void *ctx, const char *why)
{
	struct browse *b = ctx;
	struct frame f;

	if (!log_stage || b->text)
		log_error(DNSSD_DOWN_REASON ": %s", why);
	frame_error(&f, NWS_EXIT_UNAVAILABLE, DNSSD_DOWN_REASON);
	if (!b->text)
		aloop_pipe_send(b->io, &f);
	if (b->terminate)
		aloop_quit(b->al, NWS_EXIT_UNAVAILABLE);
}

static void
on_up(void *ctx)
{
	(void)ctx;
	log_info("avahi-daemon is running: browsing");
}

void
browse_signal(void *ctx, int signo)
{
	struct browse *b = ctx;

	aloop_quit(b->al, b->terminate ? 128 + signo : NWS_EXIT_OK);
}

const struct dnssd_callbacks browse_callbacks = {
	.down = on_down,
	.up = on_up,
	.record = on_record,
	.all_for_now = on_all_for_now,
};

struct open_ctx {
	struct browse *b;
	struct browse_chan *c;
};

static void
match_new_channel(void *ctx, struct dnssd_record *r)
{
	struct open_ctx *o = ctx;

	if (matches(o->c, r)) {
		emit(o->b, r, o->c->name, 1);
		o->b->reported++;
	}
}

/* c's keys are there: records seen before are matched now. */
static void
chan_ready(struct browse *b, struct browse_chan *c)
{
	struct open_ctx o = { b, c };

	dnssd_records(b->d, match_new_channel, &o);
}

static void chan_remove(struct browse *b, size_t i);

static void
derived(void *ctx, struct derive_job *j, struct keys *k)
{
	struct browse *b = ctx;

	for (size_t i = 0; i < b->nchans; i++)
		if (b->chans[i].job == j) {
			b->chans[i].job = NULL;
			if (!(b->chans[i].k = k)) {
				log_error("out of memory deriving a channel key: a channel is not matched");
				chan_remove(b, i);
				return;
			}
			chan_ready(b, &b->chans[i]);
			return;
		}
	keys_free(k);
}

int
browse_open(struct browse *b, const char *name, const unsigned char *key, int wait)
{
	struct browse_chan *c;

	if (!keys_name_valid(name))
		return -1;
	for (size_t i = 0; i < b->nchans; i++)
		if (strcmp(b->chans[i].name, name) == 0)
			return 0;
	if (b->nchans == BROWSE_MAX_CHANNELS)
		return -1;
	c = &b->chans[b->nchans];
	memset(c, 0, sizeof *c);
	if (!(c->name = strdup(name)) ||
	    (key ? !(c->k = keys_from_channel_key(key)) : wait ? !(c->k = keys_derive(name)) :
	    !(c->job = derive_start(b->dv, name, derived, b)))) {
		free(c->name);
		log_error("out of memory deriving a channel key");
		return -1;
	}
	b->nchans++;
	log_debug("matching channel %s", name);
	if (c->k)
		chan_ready(b, c);
	return 0;
}

int
browse_derive_init(struct browse *b)
{
	b->dv = aloop_derive_new(b->al);
	return b->dv ? 0 : -1;
}

static void
chan_remove(struct browse *b, size_t i)
{
	struct browse_chan *c = &b->chans[i];

	if (c->job)
		derive_cancel(b->dv, c->job);
	sodium_memzero(c->name, strlen(c->name));
	free(c->name);
	keys_free(c->k);
	b->chans[i] = b->chans[--b->nchans];
}

void
browse_close(struct browse *b, const char *name)
{
	for (size_t i = 0; i < b->nchans; i++)
		if (strcmp(b->chans[i].name, name) == 0) {
			chan_remove(b, i);
			return;
		}
}

void
browse_close_all(struct browse *b)
{
	while (b->nchans)
		chan_remove(b, b->nchans - 1);
	derive_free(b->dv);
	b->dv = NULL;
}

static void
send_error(struct browse *b, const char *reason)
{
	struct frame f;

	frame_error(&f, NWS_EXIT_FAIL, reason);
	aloop_pipe_send(b->io, &f);
}

void
browse_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	struct browse *b = ctx;
	enum frame_action a = frame_peek_action(fmt, raw, len);
	struct frame f;
	char err[160];

	/* open and close are passed on first, so the next stage knows the channel before
	 * it sees a found for it. */
	aloop_pipe_pass(b->io, fmt, raw, len);
	if (a != ACTION_OPEN && a != ACTION_CLOSE)
		return;
	if (frame_decode(&f, fmt, raw, len, err, sizeof err) < 0)
		return;
	if (!f.channel || !keys_name_valid(f.channel)) {
		log_error("an %s frame without a valid channel name: ignored", frame_action_name(&f));
		send_error(b, "open and close need a valid channel name");
	} else if (a == ACTION_OPEN && browse_open(b, f.channel, f.has_key ? f.key : NULL, 0) < 0) {
		log_error("cannot open more than %d channels: ignored", BROWSE_MAX_CHANNELS);
		send_error(b, "too many open channels");
	} else if (a == ACTION_CLOSE) {
		browse_close(b, f.channel);
	}
	frame_clear(&f);
}

void
browse_eof(void *ctx)
{
	struct browse *b = ctx;

	if (!b->keep && !b->terminate)
		aloop_quit(b->al, NWS_EXIT_OK);
}

static void
deadline_cb(AvahiTimeout *t, void *ctx)
{
	struct browse *b = ctx;

	(void)t;
	log_error("avahi-daemon did not finish browsing within %d s: giving up",
	    BROWSE_TERMINATE_MS / 1000);
	aloop_quit(b->al, b->reported ? NWS_EXIT_OK : NWS_EXIT_FAIL);
}

void
browse_deadline(struct browse *b)
{
	const AvahiPoll *api = aloop_poll(b->al);
	struct timeval tv;

	api->timeout_new(api, avahi_elapse_time(&tv, BROWSE_TERMINATE_MS, 0), deadline_cb, b);
}
