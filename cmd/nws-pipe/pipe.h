/* nws-pipe: one peer of one channel with stdin and stdout as its ends. peer.c owns the
 * peer (stdin to frames, frames to stdout, --wait, --once, exit codes); it talks to the
 * network either through a spawned pipeline (local.c) or a running nws-proxy (proxy.c). */
#ifndef NWS_PIPE_H
#define NWS_PIPE_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>

#include "buf.h"
#include "frame.h"
#include "idset.h"
#include "nws.h"
#include "pipeline.h"

enum pipe_mode { MODE_LINES, MODE_RAW, MODE_JSON };

/* Exit codes (man/nws-pipe.1) are nws.h's: NWS_EXIT_FAIL is a --timeout, or a failure
 * that is not usage. */

#define PEER_ID_HEX 8          /* random bytes of a peer id: 16 hex characters */

struct np;

struct np_backend {
	/* Queue a frame in pipeline form (channel, source set): as pipeline_send. */
	int (*send)(struct np *np, const struct frame *f);
	/* Ask for a reply that comes back after everything sent so far was handed on. */
	int (*sync)(struct np *np, const char *token);
	/* End it; np_finished() once it has. */
	void (*stop)(struct np *np);
};

struct np {
	/* options */
	enum pipe_mode mode;
	char *channel;
	const char *to;            /* --to PEER */
	const char *proxy_url;     /* --via-proxy, or NULL */
	int no_proxy;              /* --no-proxy: our own pipeline even if a proxy runs */
	int via_proxy;             /* attached to an nws-proxy (asked for, or found) */
	int progress;              /* --progress: bytes and rate on stderr */
	long wait_n;               /* --wait */
	int64_t timeout_ms;        /* --timeout; -1: none */
	int once;
	size_t max_frame;
	struct pipeline_config pcfg;

	struct lws_context *cx;
	struct lws_vhost *vh;
	const struct np_backend *be;
	void *be_state;

	char id[65];                     /* our peer id (the proxy's, with --via-proxy) */
	struct idset peers;              /* remote peers present (counted for --wait) */

	struct lws *in_wsi;        /* stdin, adopted once sending starts */
	int sending, in_paused;
	int in_ended;              /* stdin has ended (its rest may still be in `in`) */
	int in_eof;                /* ... and all of it was handed on */
	int sent_data;             /* a broadcast or message went out: we are a sender */
	int end_sent;              /* our end of input was told to the peers */
	struct buf in;             /* read from stdin, not yet sent */
	struct buf out;            /* stdout, written in bursts */
	char sync_token[2 * PEER_ID_HEX + 1];
	int sync_sent;
	int stopping, finished, exit_code;
	int net_down_said;         /* told the user avahi-daemon is down */
	uint64_t bytes_sent, bytes_written;
	int64_t started_us, first_us, last_us;   /* progress: start, first byte, last draw */
	uint64_t last_bytes;
	lws_sorted_usec_list_t sul_progress;
	lws_sorted_usec_list_t sul_flush, sul_timeout;
};

/* peer.c */
extern const struct lws_protocols np_stdin_protocol;
void np_start(struct np *np);             /* after the backend is up */
void np_frame(struct np *np, const struct frame *f);   /* a frame from the network side */
void np_drain(struct np *np);             /* the backend has room again */
void np_stop(struct np *np, int code);    /* end with this exit code */
void np_finished(struct np *np);          /* the backend has ended */

/* local.c, proxy.c: 0 started, or an exit code. probing: no proxy was asked for; if
 * none answers, run our own pipeline. */
int local_start(struct np *np);
int proxy_start(struct np *np, int probing);
/* NULL when url is a form --via-proxy takes, else what is wrong with it. */
const char *proxy_url_problem(const char *url);

/* progress.c: --progress on stderr, from np_start to np_finished. */
void progress_start(struct np *np);
void progress_end(struct np *np);
/* Bytes were counted: the rate is measured from the first, not from the wait before. */
static inline void
progress_first(struct np *np)
{
	if (np->started_us && !np->first_us)
		np->first_us = np->last_us = lws_now_usecs();
}
extern const struct lws_protocols proxy_protocol;

#endif
