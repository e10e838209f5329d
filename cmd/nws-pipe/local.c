/* The default backend: our own browse | link | advertise pipeline (libcommon/pipeline). */
#include <string.h>

#include "log.h"
#include "pipe.h"

static void
on_frame(void *ctx, enum frame_format fmt, const unsigned char *raw, size_t len)
{
	struct np *np = ctx;
	struct frame f;
	char err[160];

	switch (frame_peek_action(fmt, raw, len)) {
	case ACTION_CONNECT:
	case ACTION_DISCONNECT:
	case ACTION_BROADCAST:
	case ACTION_MESSAGE:
	case ACTION_END:
	case ACTION_ERROR:
	case ACTION_UNKNOWN:    /* our sync marker */
		break;
	default:
		return;         /* listening, advertised, linked, ...: not for a peer */
	}
	if (frame_decode(&f, fmt, raw, len, err, sizeof err) < 0) {
		if (log_once_per_burst("nws-pipe: bad frame"))
			log_error("skipping a frame from the pipeline: %s", err);
		return;
	}
	if (!f.channel || !strcmp(f.channel, np->channel))
		np_frame(np, &f);
	frame_clear(&f);
}

static void
on_drain(void *ctx)
{
	np_drain(ctx);
}

static void
on_done(void *ctx)
{
	np_finished(ctx);
}

/* Our only local peer is us: data for a channel with no remote peer yet (none whose
 * connect came out of the tail) would reach no link, so it does not wake the stages
 * (nws-proxy's route.c does the same, see up_data there). */
static int
local_send(struct np *np, const struct frame *f)
{
	if (!idset_count(&np->peers) && (f->action == ACTION_BROADCAST || f->action == ACTION_MESSAGE ||
	    f->action == ACTION_END))
		return 0;
	return pipeline_send(np->be_state, f);
}

static int
local_sync(struct np *np, const char *token)
{
	struct frame f;

	/* An action no stage knows is passed on in order by each: when it comes out of the
	 * tail, nws-link has handed every frame before it to its links. */
	frame_view(&f, ACTION_UNKNOWN);
	f.action_name = (char *)"sync";
	f.source = (char *)token;
	return pipeline_send(np->be_state, &f);
}

static void
local_stop(struct np *np)
{
	struct frame f;

	frame_view(&f, ACTION_DISCONNECT);
	f.channel = np->channel;
	f.target = np->id;
	pipeline_send(np->be_state, &f);
	f.action = ACTION_CLOSE;
	f.target = NULL;
	pipeline_send(np->be_state, &f);
	pipeline_stop(np->be_state, on_done, np);
}

static const struct np_backend local_backend = {
	.send = local_send,
	.sync = local_sync,
	.stop = local_stop,
};

int
local_start(struct np *np)
{
	struct frame f;

	np->pcfg.max_frame = np->max_frame;
	/* Room for two of the largest frames: a whole line is always taken. */
	np->pcfg.max_queue = 2 * np->max_frame + (1u << 20);
	struct pipeline *p = pipeline_start(np->cx, np->vh, &np->pcfg, on_frame, on_drain, np);
	if (!p)
		return NWS_EXIT_FAIL;
	np->be = &local_backend;
	np->be_state = p;
	frame_view(&f, ACTION_OPEN);
	f.channel = np->channel;
	pipeline_send(p, &f);
	f.action = ACTION_CONNECT;
	f.target = np->id;
	pipeline_send(p, &f);
	np_start(np);
	return 0;
}
