/* nws-proxy: the seed's ws://localhost:9009/<channel> endpoint (DESIGN.md §3) on one
 * spawned pipeline. server.c owns HTTP, WebSocket, the loopback listeners and each
 * client's bounded output queue; route.c owns channels, peers and the pipeline. */
#ifndef NWS_PROXY_H
#define NWS_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>

#include "buf.h"
#include "frame.h"
#include "pipeline.h"

#define PROXY_ID_LEN 16

struct proxy_config {
	int port;
	size_t max_message;             /* largest message a client may send (--max-message) */
	size_t max_queue;               /* bound of each client's output queue (--max-queue) */
	int local_only;                 /* --local: no pipeline, this machine only */
	struct pipeline_config pipe;
};

struct channel;

/* One WebSocket client: lws's per-session data of both ws protocols, so lws zeroes it. */
struct client {
	struct lws *wsi;
	struct channel *ch;             /* NULL until joined and after leaving */
	struct client *prev, *next;     /* the clients of ch */
	struct client *reap_next;       /* on the reap list (dead, to leave its channel) */
	struct client *dirty_next;      /* on server.c's list of clients to write to */
	char id[PROXY_ID_LEN + 1];
	uint64_t origin;                /* hash of its Origin header; 0: none (a program) */
	unsigned cbor : 1;              /* subprotocol nws.cbor: CBOR frames both ways */
	unsigned link_events : 1;       /* asked (?events=link) for link status and errors */
	unsigned bytes_base64 : 1;      /* asked (?bytes=base64) for broadcasts of bytes as JSON */
	unsigned dead : 1;              /* closing: sends are dropped */
	unsigned reaping : 1;
	unsigned rx_binary : 1;
	unsigned write_asked : 1;       /* lws_callback_on_writable is pending */
	unsigned dirty : 1;             /* on the list of clients to write to */
	lws_usec_t progress_us;         /* when its socket last took bytes */
	lws_sorted_usec_list_t sul;     /* live: bytes wait for its socket; dead: its grace */
	int close_code;
	char close_reason[64];
	struct buf rx;                  /* the message being reassembled, max_message */
	struct buf tx;                  /* WebSocket frames not yet written (see server.c) */
};

/* server.c */
int server_start(const struct proxy_config *cfg);
void server_run(void);              /* until SIGINT/SIGTERM and a clean shutdown */
void server_free(void);
/* Queues one message for c (binary or text), written at the end of this pass of the
 * loop, or at c's writeable callback when its socket is full. A
 * client is closed with 1008 "too slow" (and -1 returned) once what its socket refused
 * passes max_queue, or what is queued passes twice that. Sends to a closing client are
 * dropped. */
int client_send(struct client *c, int binary, const void *p, size_t n);
/* Encodes f in c's format (JSON without its newline, or CBOR) and queues it. */
int client_send_frame(struct client *c, const struct frame *f);
/* Closes c with a WebSocket close code and reason, after what is queued for it. */
void client_close(struct client *c, int code, const char *reason);

/* route.c */
int route_start(const struct proxy_config *cfg, struct lws_context *cx, struct lws_vhost *vh);
/* A client upgraded on /name: join the channel, tell it and the others. */
void route_join(struct client *c, const char *name);
/* A client went away: leave its channel now. Safe to call twice. */
void route_leave(struct client *c);
/* A client was closed by the proxy: it leaves its channel once the fan-out in progress
 * is done (so no channel list changes under an iteration). */
void route_dead(struct client *c);
/* One whole message from a client: text (JSON, or CBOR for nws.cbor) or binary. */
void route_input(struct client *c, int binary, const unsigned char *p, size_t n);
/* Shutdown: withdraw every channel, stop the pipeline; done() once it has ended. */
void route_stop(void (*done)(void));
void route_free(void);

#endif
