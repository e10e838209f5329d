/* mesh: the channels of one nws-link process and where every frame goes (DESIGN.md §5,
 * §6): local peers' frames from the input to the links of their channel, the links'
 * frames to the output, found peers to dials with backoff, one link per remote node
 * (double links and links to ourselves are dropped), and link state to linked/unlinked
 * frames. Backpressure: a link queue past half of max_queue pauses the input (through
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

struct mesh *mesh_new(struct lws_context *cx, struct lws_vhost *vh, int port,
    size_t max_frame, size_t max_queue);
/* Where remote frames, listening and linked/unlinked go. */
void mesh_set_output(struct mesh *m, struct loop_pipe *out);
/* The output's queue is down to half of max_queue again: paused links read on. */
void mesh_output_drained(struct mesh *m);
#define MESH_STALL_SECS 5
/* Called with 1 when the input should stop being read, 0 when it may go on. */
typedef void (*mesh_flow_fn)(void *ctx, int pause);
void mesh_set_flow(struct mesh *m, mesh_flow_fn fn, void *ctx);
/* Opens a channel: picks its path, derives its keys on a worker thread and then writes
 * `listening`. 0, or -1 on an invalid name or out of memory. */
int mesh_open(struct mesh *m, const char *name);
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
