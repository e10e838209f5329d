#include "advertise.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "log.h"
#include "nws.h"


static void
send_error(struct advertise *a, int code, const char *reason)
{
	struct frame f;

	frame_error(&f, code, reason);
	aloop_pipe_send(a->io, &f);
}

static void
advertised(struct advertise *a, struct advert *ad, const char *instance)
{
	struct frame f;

	log_info("advertised instance %s at port %u", instance, ad->port);
	frame_init(&f);
	f.action = ACTION_ADVERTISED;
	if (frame_set(&f.channel, ad->channel) == 0 && frame_set(&f.instance, instance) == 0)
		aloop_pipe_send(a->io, &f);
	frame_clear(&f);
}

static void
on_published(void *ctx, struct dnssd_pub *p, const char *instance)
{
	advertised(ctx, dnssd_pub_user(p), instance);
}

static void
on_publish_failed(void *ctx, struct dnssd_pub *p, const char *why)
{
	struct advertise *a = ctx;
	char reason[256];

	(void)p;
	log_error("cannot publish an advertisement: %s", why);
	snprintf(reason, sizeof reason, "cannot publish: %s", why);
	send_error(a, 1, reason);
}

static void
on_down(void *ctx, const char *why)
{
	struct advertise *a = ctx;

	if (a->wide) {
		log_debug(DNSSD_DOWN_REASON ": %s (not needed for -d)", why);
		return;
	}
	if (!log_stage)
		log_error(DNSSD_DOWN_REASON ": %s", why);
	send_error(a, NWS_EXIT_UNAVAILABLE, DNSSD_DOWN_REASON);
}

static void
on_up(void *ctx)
{
	struct advertise *a = ctx;

	log_info("avahi-daemon is running: publishing %zu advertisement(s)", a->nads);
}

void
advertise_signal(void *ctx, int signo)
{
	struct advertise *a = ctx;

	(void)signo;
	aloop_quit(a->al, NWS_EXIT_OK);   /* main withdraws everything before exit */
}

const struct dnssd_callbacks advertise_callbacks = {
	.down = on_down,
	.up = on_up,
	.published = on_published,
	.publish_failed = on_publish_failed,
};

static struct advert *
find(struct advertise *a, const char *channel)
{
	for (size_t i = 0; i < a->nads; i++)
		if (strcmp(a->ads[i]->channel, channel) == 0)
			return a->ads[i];
	return NULL;
}

/* Wide area: one DNS UPDATE; a failure is the user's to see, not out of memory. */
static void
publish_wide(struct advertise *a, struct advert *ad, const char *tag)
{
	char err[512], reason[600];

	if (!a->up)
		return;   /* main said once that nothing can be published without a key */
	dnsupdate_unpublish(a->up, ad->wpub);
	if ((ad->wpub = dnsupdate_publish(a->up, ad->port, tag, err, sizeof err))) {
		advertised(a, ad, dnsupdate_pub_instance(ad->wpub));
		return;
	}
	log_error("cannot publish an advertisement: %s", err);
	snprintf(reason, sizeof reason, "cannot publish: %s", err);
	send_error(a, 1, reason);
}

/* (Re)publishes ad at its port with a fresh tag: a new advertisement. */
static int
publish(struct advertise *a, struct advert *ad)
{
	char tag[KEYS_TAG_TEXT_LEN];

	keys_tag_make(ad->k, ad->port, tag);
	if (a->wide) {
		publish_wide(a, ad, tag);
		return 0;
	}
	if (ad->pub)
		dnssd_unpublish(a->d, ad->pub);
	ad->pub = dnssd_publish(a->d, a->instance, ad->port, tag, ad);
	return ad->pub ? 0 : -1;
}

static void
advert_free(struct advertise *a, struct advert *ad)
{
	if (ad->job)
		derive_cancel(a->dv, ad->job);
	if (ad->pub)
		dnssd_unpublish(a->d, ad->pub);
	if (ad->wpub)
		dnsupdate_unpublish(a->up, ad->wpub);
	sodium_memzero(ad->channel, strlen(ad->channel));
	free(ad->channel);
	keys_free(ad->k);
	free(ad);
}

static void
derived(void *ctx, struct derive_job *j, struct keys *k)
{
	struct advertise *a = ctx;

	for (size_t i = 0; i < a->nads; i++) {
		struct advert *ad = a->ads[i];
		if (ad->job != j)
			continue;
		ad->job = NULL;
		if (!(ad->k = k) || publish(a, ad) < 0) {
			log_error("out of memory: a channel is not advertised");
			send_error(a, 1, "out of memory");
		}
		return;
	}
	keys_free(k);
}

int
advertise_derive_init(struct advertise *a)
{
	a->dv = aloop_derive_new(a->al);
	return a->dv ? 0 : -1;
}

int
advertise_add(struct advertise *a, const char *channel, uint16_t port, const char **why)
{
	struct advert *ad;

	if ((ad = find(a, channel))) {
		if (ad->port == port)
			return 0;
		ad->port = port;
		if (!ad->k)
			return 0;   /* published at the new place once derived */
		return publish(a, ad) < 0 ? (*why = "out of memory", -1) : 0;
	}
	if (a->nads == ADVERTISE_MAX_CHANNELS) {
		*why = "too many channels advertised";
		return -1;
	}
	if (!(ad = calloc(1, sizeof *ad)))
		goto oom;
	ad->port = port;
	if (!(ad->channel = strdup(channel)) ||
	    !(ad->job = derive_start(a->dv, channel, derived, a))) {
		free(ad->channel);
		free(ad);
		goto oom;
	}
	a->ads[a->nads++] = ad;
	log_debug("advertising channel %s at port %u", channel, port);
	return 0;
oom:
	*why = "out of memory";
	return -1;
}

int
advertise_key(struct advertise *a, const char *channel, const unsigned char *key)
{
	struct advert *ad = find(a, channel);

	if (ad && ad->k)
		return 0;
	if (!ad) {
		if (a->nads == ADVERTISE_MAX_CHANNELS)
			return 0;   /* derived at its listening, which says what is wrong */
		if (!(ad = calloc(1, sizeof *ad)) || !(ad->channel = strdup(channel))) {
			free(ad);
			return -1;
		}
		a->ads[a->nads++] = ad;
	}
	if (!(ad->k = keys_from_channel_key(key)))
		return -1;
	if (ad->job) {
		derive_cancel(a->dv, ad->job);
		ad->job = NULL;
	}
	return ad->port ? publish(a, ad) : 0;
}

void
advertise_remove(struct advertise *a, const char *channel)
{
	for (size_t i = 0; i < a->nads; i++)
		if (strcmp(a->ads[i]->channel, channel) == 0) {
			advert_free(a, a->ads[i]);
			a->ads[i] = a->ads[--a->nads];
			return;
		}
}

void
advertise_remove_all(struct advertise *a)
{
	while (a->nads)
		advert_free(a, a->ads[--a->nads]);
	derive_free(a->dv);
	a->dv = NULL;
}

void
advertise_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	struct advertise *a = ctx;
	enum frame_action act = frame_peek_action(fmt, raw, len);
	const char *why = NULL;
	struct frame f;

	/* listening is ours alone; close is acted on and passed on; the rest passes. An
	 * open's key, from an earlier stage, spares deriving it at the listening. */
	if (act != ACTION_LISTENING)
		aloop_pipe_pass(a->io, fmt, raw, len);
	if (act != ACTION_LISTENING && act != ACTION_CLOSE && act != ACTION_OPEN)
		return;
	if (frame_decode(&f, fmt, raw, len, NULL, 0) < 0)
		return;
	if (act == ACTION_OPEN) {
		if (f.has_key && keys_name_valid(f.channel) &&
		    advertise_key(a, f.channel, f.key) < 0)
			log_error("out of memory: a channel key is derived again");
	} else if (!f.channel || !keys_name_valid(f.channel)) {
		why = "needs a valid channel name";
	} else if (act == ACTION_CLOSE) {
		advertise_remove(a, f.channel);
	} else if (f.port < 1 || f.port > 65535) {
		why = "listening needs a port from 1 to 65535";
	} else {
		advertise_add(a, f.channel, (uint16_t)f.port, &why);
	}
	if (why) {
		log_error("a %s frame was ignored: %s", frame_action_name(&f), why);
		send_error(a, 1, why);
	}
	frame_clear(&f);
}

void
advertise_eof(void *ctx)
{
	struct advertise *a = ctx;

	if (!a->keep)
		aloop_quit(a->al, NWS_EXIT_OK);
}
