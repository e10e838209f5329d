/* mesh: the channels of one nws-link process and where every frame goes (nws(7) LINKS,
 * §6): local peers' frames from the input to the links of their channel, the links'
 * frames to the output, found peers to dials with backoff, one link per remote node
 * (double links and links to ourselves are dropped), and link state to linked/unlinked
 * frames. Frames from a link are decoded once, strictly, and routed on what was decoded;
 * a node speaks only for the peer ids it announced, and an id has one holder. Backpressure: a link queue past half of max_queue pauses the input (through
 * the flow hook) until every link is down to a quarter; a link that sends nothing for
 * MESH_STALL_SECS meanwhile, or whose queue passes max_queue, is closed as too slow.
 * Past max_queue on the output every link is paused until it drains. */
#ifndef NWS_MESH_H
#define NWS_MESH_H

#include <stddef.h>
#include <libwebsockets.h>

#include "frame.h"
#include "loop.h"

struct mesh;

/* lfd and port: the listen_bind socket links are accepted on, and its port. */
struct mesh *mesh_new(struct lws_context *cx, struct lws_vhost *vh, int lfd, int port,
    size_t max_frame, size_t max_queue);
/* Bounds against members (nws(7) LINKS). A link past links or links_per_address (links
 * up in one channel, all or from one address) is closed as soon as it is up; a node that
 * announces more than peers ids, or more connects than the rate limit allows, loses its
 * link. 0 (or lim NULL) keeps a default. */
#define MESH_LINKS_DEFAULT 256
#define MESH_LINKS_PER_ADDRESS_DEFAULT 16
#define MESH_PEERS_DEFAULT 1024
struct mesh_limits {
	size_t links, links_per_address, peers;
};
void mesh_set_limits(struct mesh *m, const struct mesh_limits *lim);
/* Where remote frames, listening and linked/unlinked go. */
void mesh_set_output(struct mesh *m, struct loop_pipe *out);
/* Where remote peers' frames (connect, disconnect, broadcast, message, end) go instead,
 * when set: nws-link --data-fds. */
void mesh_set_peers_output(struct mesh *m, struct loop_pipe *out);
/* An output's queue is down to half of max_queue again: paused links read on. */
void mesh_output_drained(struct mesh *m);
#define MESH_STALL_SECS 5
/* Called with 1 when the input should stop being read, 0 when it may go on. */
typedef void (*mesh_flow_fn)(void *ctx, int pause);
void mesh_set_flow(struct mesh *m, mesh_flow_fn fn, void *ctx);
/* Opens a channel: derives its keys from key (K, an open's; no Argon2id) or, when key
 * is NULL, on a worker thread, and then writes `listening`. 0, or -1 on an invalid name
 * or out of memory. */
int mesh_open(struct mesh *m, const char *name, const unsigned char *key);
/* One frame from the input: consumed, or passed on to the output unchanged. */
void mesh_input(struct mesh *m, enum frame_format fmt, const unsigned char *raw, size_t len);
/* Closes every link cleanly (the other ends see our peers leave at once) and cancels
 * every timer. The last link to go wakes lws_service. */
void mesh_stop(struct mesh *m);
/* 1 when no link is left. */
int mesh_idle(const struct mesh *m);
/* After mesh_stop and lws_context_destroy (which ends the links still open). */
void mesh_free(struct mesh *m);

#endif
