/* nws-proxy: the seed's ws://localhost:9009/<channel> endpoint (nws(7), THE LOCAL
 * WEBSOCKET PROTOCOL) on one spawned pipeline. server.c owns HTTP, WebSocket, the
 * loopback listeners and each connection's bounded output queue; route.c owns channels,
 * peers and the pipeline.
 *
 * The layering rule: route calls the server only through struct proxy_conn_ops; the
 * server calls route only through the struct proxy_route_ops main gives it. Neither
 * names the other's functions or sees the other's structs: a connection and its peer
 * know each other by an opaque pointer. A connection closed while route is fanning out
 * is only marked; the server runs the leave it owes once route has returned. */
#ifndef NWS_PROXY_H
#define NWS_PROXY_H

#include <stddef.h>
#include <stdint.h>
#include <libwebsockets.h>

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

/* What the server learned of a WebSocket client at its upgrade. */
struct proxy_client_info {
	uint64_t origin;                /* hash of its Origin header; 0: none (a program) */
	unsigned cbor : 1;              /* subprotocol nws.cbor: CBOR frames both ways */
	unsigned link_events : 1;       /* asked (?events=link) for link status and errors */
	unsigned bytes_base64 : 1;      /* asked (?bytes=base64) for broadcasts of bytes as JSON */
};

/* How route reaches a connection (conn: the server's pointer, given at join). */
struct proxy_conn_ops {
	/* Queues one message (binary or text), written at the end of this pass of the loop,
	 * or when the socket takes more. -1: the connection was closed as too slow (1008)
	 * by this send. Sends to a closing connection are dropped. */
	int (*send)(void *conn, int binary, const void *p, size_t n);
	/* Encodes f in the connection's format (JSON without its newline, or CBOR). */
	int (*send_frame)(void *conn, const struct frame *f);
	/* Closes with a WebSocket close code and reason, after what is queued. Only marks
	 * the connection: its leave comes after the route call in progress returns. */
	void (*close)(void *conn, int code, const char *reason);
	/* Stops (1) or resumes (0) reading the connection. */
	void (*pause)(void *conn, int pause);
};

typedef void (*proxy_done_fn)(void *ctx);

/* How the server reaches route (ctx: what main gave with the table). */
struct proxy_route_ops {
	/* The loop is up: start the pipeline in it. */
	int (*start)(void *ctx, struct lws_context *cx, struct lws_vhost *vh);
	/* A client upgraded on /name: its peer, or NULL when route closed it instead. */
	void *(*join)(void *ctx, void *conn, const char *name,
	    const struct proxy_client_info *info);
	/* One whole message from a client: text (JSON, or CBOR for nws.cbor) or binary. */
	void (*input)(void *ctx, void *peer, int binary, const unsigned char *p, size_t n);
	/* The client went away or was closed: its peer leaves and is freed. */
	void (*leave)(void *ctx, void *peer);
	/* Shutdown: every client closed, the pipeline stopped; done(done_ctx) when ended. */
	void (*stop)(void *ctx, proxy_done_fn done, void *done_ctx);
};

/* server.c */
extern const struct proxy_conn_ops server_conn_ops;
int server_start(const struct proxy_config *cfg, const struct proxy_route_ops *route,
    void *route_ctx);
void server_run(void);              /* until SIGINT/SIGTERM and a clean shutdown */
void server_free(void);

#endif
