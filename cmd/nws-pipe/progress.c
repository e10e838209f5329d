/* --progress: what a long transfer has done so far, on one stderr line redrawn in place
 * (as pv and curl do), and a last line with the totals when the peer ends. */
#include <stdio.h>

#include "log.h"
#include "pipe.h"

#define PROGRESS_US (LWS_US_PER_SEC / 2)

static void
human(char *out, size_t n, double v)
{
	static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
	size_t u = 0;

	while (v >= 1024 && u + 1 < sizeof unit / sizeof unit[0]) {
		v /= 1024;
		u++;
	}
	snprintf(out, n, u ? "%.2f %s" : "%.0f %s", v, unit[u]);
}

/* Nothing is drawn before the first byte: waiting for peers is not part of a transfer.
 * While running, the rate is that of the last interval; at the end, the average. */
static void
draw(struct np *np, int last)
{
	int64_t now = lws_now_usecs();
	uint64_t total = np->bytes_sent + np->bytes_written;
	double secs, rate;
	char amount[32], speed[32];

	if (!np->first_us)
		return;
	secs = (double)(now - (last ? np->first_us : np->last_us)) / LWS_US_PER_SEC;
	rate = secs > 0 ? (double)(total - (last ? 0 : np->last_bytes)) / secs : 0;
	secs = (double)(now - np->first_us) / LWS_US_PER_SEC;
	np->last_us = now;
	np->last_bytes = total;
	human(amount, sizeof amount, (double)total);
	human(speed, sizeof speed, rate);
	/* \033[K clears what a longer earlier line left. */
	fprintf(stderr, "\r%s: %s %s in %.1f s (%s/s)\033[K%s", log_prog,
	    np->bytes_sent >= np->bytes_written ? "sent" : "received", amount, secs, speed,
	    last ? "\n" : "");
	fflush(stderr);
}

static void
tick(lws_sorted_usec_list_t *sul)
{
	struct np *np = lws_container_of(sul, struct np, sul_progress);

	draw(np, 0);
	lws_sul_schedule(np->cx, 0, &np->sul_progress, tick, PROGRESS_US);
}

void
progress_start(struct np *np)
{
	if (!np->progress || np->started_us)
		return;
	np->started_us = lws_now_usecs();
	lws_sul_schedule(np->cx, 0, &np->sul_progress, tick, PROGRESS_US);
}

void
progress_end(struct np *np)
{
	if (!np->started_us)
		return;
	lws_sul_cancel(&np->sul_progress);
	draw(np, 1);
	np->started_us = np->first_us = 0;
}
