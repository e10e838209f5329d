/* route (cmd/nws-proxy/route.c) without lws: fake connections record what route sends
 * and closes, a fake pipeline (the pipeline_* functions below, linked in place of
 * libcommon's) records what goes up and feeds the tail. Covers join/leave, broadcast,
 * message, status and end routing, local-only channels kept out of the pipeline, remote
 * events fanned out, and a connection closed in the middle of a fan-out. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "route.h"

#define MSGS 32

struct fconn {
	char msg[MSGS][512];          /* what was sent, as JSON text (bytes: "<bytes>") */
	int nmsg, nsend;              /* messages kept; send calls (also refused ones) */
	int fail_sends;               /* refuse this many more sends, as a too slow client */
	int close_code, paused;
};

/* The fake pipeline's state: every frame sent up, as JSON. */
static struct {
	char up[64][512];
	int nup, started, deriving, stopped;
	pipeline_frame_fn on_frame;
	void *ctx;
} pl;

static void
record(char (*log)[512], int *n, int max, const void *p, size_t len)
{
	if (*n == max)
		fail_msg("too many messages recorded");
	snprintf(log[(*n)++], 512, "%.*s", (int)len, (const char *)p);
}

static int
fake_send(void *conn, int binary, const void *p, size_t n)
{
	struct fconn *c = conn;
	c->nsend++;
	if (c->fail_sends) {
		c->fail_sends--;
		c->close_code = 1008;
		return -1;
	}
	if (binary)
		record(c->msg, &c->nmsg, MSGS, "<bytes>", 7);
	else
		record(c->msg, &c->nmsg, MSGS, p, n);
	return 0;
}

static int
fake_send_frame(void *conn, const struct frame *f)
{
	struct buf b;
	buf_init(&b, 0);
	assert_int_equal(frame_encode(f, FORMAT_JSON, &b), 0);
	int rc = fake_send(conn, 0, buf_data(&b), b.len - 1);
	buf_clear(&b);
	return rc;
}

static void
fake_close(void *conn, int code, const char *reason)
{
	struct fconn *c = conn;
	(void)reason;
	c->close_code = code;
}

static void
fake_pause(void *conn, int pause)
{
	((struct fconn *)conn)->paused = pause;
}

static const struct proxy_conn_ops fake_ops = {
	fake_send, fake_send_frame, fake_close, fake_pause,
};

struct pipeline *
pipeline_start(struct lws_context *cx, struct lws_vhost *vh,
    const struct pipeline_config *cfg, pipeline_frame_fn on_frame,
    pipeline_drain_fn on_drain, void *ctx)
{
	(void)cx, (void)vh, (void)cfg, (void)on_drain;
	pl.started = 1;
	pl.on_frame = on_frame;
	pl.ctx = ctx;
	return (struct pipeline *)&pl;
}

int
pipeline_send(struct pipeline *p, const struct frame *f)
{
	struct buf b;
	(void)p;
	buf_init(&b, 0);
	assert_int_equal(frame_encode(f, FORMAT_JSON, &b), 0);
	record(pl.up, &pl.nup, 64, buf_data(&b), b.len - 1);
	buf_clear(&b);
	return 0;
}

int
pipeline_send_raw(struct pipeline *p, enum frame_format fmt, const unsigned char *raw,
    size_t len)
{
	(void)p, (void)fmt, (void)raw, (void)len;
	fail_msg("nothing was held");
	return -1;
}

size_t
pipeline_deriving(const struct pipeline *p, const char **names, size_t max)
{
	(void)p, (void)names;
	return (size_t)pl.deriving < max ? (size_t)pl.deriving : max;
}

void
pipeline_stop(struct pipeline *p, pipeline_done_fn done, void *ctx)
{
	(void)p;
	pl.stopped = 1;
	done(ctx);
}

/* The fixture: a route on the fake pipeline (or --local). */
static struct proxy_config cfg;
static struct route *r;

static int
setup(void **state)
{
	(void)state;
	memset(&pl, 0, sizeof pl);
	memset(&cfg, 0, sizeof cfg);
	cfg.max_queue = 1 << 20;
	r = route_new(&cfg, &fake_ops);
	assert_non_null(r);
	assert_int_equal(route_ops.start(r, NULL, NULL), 0);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	route_free(r);
	return 0;
}

static void *
join(struct fconn *c, const char *name)
{
	struct proxy_client_info info = { 0 };
	return route_ops.join(r, c, name, &info);
}

static void
input(void *peer, const char *json)
{
	route_ops.input(r, peer, 0, (const unsigned char *)json, strlen(json));
}

static void
tail(const char *json)
{
	pl.on_frame(pl.ctx, FORMAT_JSON, (const unsigned char *)json, strlen(json));
}

/* Message i of c, decoded. */
static void
msg(const struct fconn *c, int i, struct frame *f)
{
	char err[160];
	assert_true(i < c->nmsg);
	assert_int_equal(frame_decode(f, FORMAT_JSON, c->msg[i], strlen(c->msg[i]), err,
	    sizeof err), 0);
}

/* c's own id, from the first connect it was told: its source. */
static void
id_of(const struct fconn *c, char *id)
{
	struct frame f;
	msg(c, 0, &f);
	assert_int_equal(f.action, ACTION_CONNECT);
	snprintf(id, PROXY_ID_LEN + 1, "%s", f.source);
	frame_clear(&f);
}

static int
up_has(const char *needle)
{
	for (int i = 0; i < pl.nup; i++)
		if (strstr(pl.up[i], needle))
			return 1;
	return 0;
}

static void
test_join_leave(void **state)
{
	struct fconn a = { 0 }, b = { 0 };
	char ida[PROXY_ID_LEN + 1], idb[PROXY_ID_LEN + 1];
	struct frame f;
	(void)state;

	void *pa = join(&a, "chan");
	assert_non_null(pa);
	assert_int_equal(a.nmsg, 0);
	assert_true(up_has("\"open\""));
	void *pb = join(&b, "chan");
	/* Each is told of the other, as its own source. */
	assert_int_equal(a.nmsg, 1);
	assert_int_equal(b.nmsg, 1);
	id_of(&a, ida);
	id_of(&b, idb);
	msg(&a, 0, &f);
	assert_string_equal(f.target, idb);
	frame_clear(&f);
	assert_string_not_equal(ida, idb);

	route_ops.leave(r, pb);
	msg(&a, 1, &f);
	assert_int_equal(f.action, ACTION_DISCONNECT);
	assert_string_equal(f.target, idb);
	frame_clear(&f);
	assert_true(up_has("\"disconnect\""));
	assert_false(up_has("\"close\""));
	route_ops.leave(r, pa);
	assert_true(up_has("\"close\""));
}

static void
test_local_only_stays_out(void **state)
{
	struct fconn a = { 0 }, b = { 0 };
	char ida[PROXY_ID_LEN + 1];
	struct frame f;
	(void)state;

	void *pa = join(&a, "chan");
	void *pb = join(&b, "chan");
	id_of(&a, ida);
	int up = pl.nup;
	input(pa, "{\"action\":\"broadcast\",\"data\":\"hi\"}");
	/* To b, not back to a, and not into the pipeline: no remote peer. */
	assert_int_equal(a.nmsg, 1);
	assert_int_equal(b.nmsg, 2);
	msg(&b, 1, &f);
	assert_int_equal(f.action, ACTION_BROADCAST);
	assert_string_equal(f.source, ida);
	assert_string_equal((char *)f.data, "hi");
	frame_clear(&f);
	input(pa, "{\"action\":\"end\"}");
	assert_int_equal(b.nmsg, 3);
	assert_int_equal(pl.nup, up);

	/* A remote peer appears: both are told, and broadcasts go up from now on. */
	tail("{\"action\":\"connect\",\"channel\":\"chan\",\"target\":\"remote1\"}");
	assert_int_equal(a.nmsg, 2);
	assert_int_equal(b.nmsg, 4);
	msg(&a, 1, &f);
	assert_int_equal(f.action, ACTION_CONNECT);
	assert_string_equal(f.target, "remote1");
	frame_clear(&f);
	input(pa, "{\"action\":\"broadcast\",\"data\":\"out\"}");
	assert_int_equal(pl.nup, up + 1);
	assert_non_null(strstr(pl.up[up], "\"out\""));

	tail("{\"action\":\"disconnect\",\"channel\":\"chan\",\"target\":\"remote1\"}");
	assert_int_equal(b.nmsg, 6);
	input(pa, "{\"action\":\"broadcast\",\"data\":\"in\"}");
	assert_int_equal(pl.nup, up + 1);
	route_ops.leave(r, pa);
	route_ops.leave(r, pb);
}

static void
test_message_status(void **state)
{
	struct fconn a = { 0 }, b = { 0 }, c = { 0 };
	char ida[PROXY_ID_LEN + 1], idb[PROXY_ID_LEN + 1], json[200];
	struct frame f;
	(void)state;

	void *pa = join(&a, "chan");
	void *pb = join(&b, "chan");
	void *pc = join(&c, "chan");
	id_of(&a, ida);
	id_of(&b, idb);
	int na = a.nmsg, nb = b.nmsg, nc = c.nmsg;

	snprintf(json, sizeof json, "{\"action\":\"message\",\"target\":\"%s\",\"data\":\"x\"}",
	    idb);
	input(pa, json);
	assert_int_equal(b.nmsg, nb + 1);
	assert_int_equal(c.nmsg, nc);
	msg(&b, nb, &f);
	assert_int_equal(f.action, ACTION_MESSAGE);
	assert_string_equal(f.source, ida);
	frame_clear(&f);

	input(pa, "{\"action\":\"message\",\"target\":\"nobody\",\"data\":\"x\"}");
	msg(&a, na, &f);
	assert_int_equal(f.action, ACTION_ERROR);
	assert_int_equal(f.code, 404);
	frame_clear(&f);

	tail("{\"action\":\"connect\",\"channel\":\"chan\",\"target\":\"remote1\"}");
	int up = pl.nup;
	input(pa, "{\"action\":\"message\",\"target\":\"remote1\",\"data\":\"x\"}");
	assert_int_equal(pl.nup, up + 1);
	assert_non_null(strstr(pl.up[up], "\"message\""));

	na = a.nmsg;
	input(pa, "{\"action\":\"status\"}");
	msg(&a, na, &f);
	assert_int_equal(f.action, ACTION_STATUS);
	assert_string_equal(f.source, ida);
	assert_string_equal(f.target, ida);
	frame_clear(&f);

	input(pa, "{\"action\":\"open\"}");
	msg(&a, na + 1, &f);
	assert_int_equal(f.code, 400);
	frame_clear(&f);
	route_ops.leave(r, pa);
	route_ops.leave(r, pb);
	route_ops.leave(r, pc);
}

static void
test_tail_routing(void **state)
{
	struct fconn a = { 0 }, b = { 0 }, other = { 0 };
	char ida[PROXY_ID_LEN + 1], json[200];
	struct frame f;
	(void)state;

	void *pa = join(&a, "chan");
	void *pb = join(&b, "chan");
	void *po = join(&other, "elsewhere");
	id_of(&a, ida);
	int na = a.nmsg, nb = b.nmsg;
	tail("{\"action\":\"broadcast\",\"channel\":\"chan\",\"source\":\"remote1\","
	    "\"data\":\"all\"}");
	assert_int_equal(a.nmsg, na + 1);
	assert_int_equal(b.nmsg, nb + 1);
	assert_int_equal(other.nmsg, 0);
	msg(&a, na, &f);
	assert_int_equal(f.action, ACTION_BROADCAST);
	assert_string_equal(f.source, "remote1");
	assert_null(f.channel);
	frame_clear(&f);

	snprintf(json, sizeof json, "{\"action\":\"message\",\"channel\":\"chan\","
	    "\"source\":\"remote1\",\"target\":\"%s\",\"data\":\"one\"}", ida);
	tail(json);
	assert_int_equal(a.nmsg, na + 2);
	assert_int_equal(b.nmsg, nb + 1);

	tail("{\"action\":\"end\",\"channel\":\"chan\",\"source\":\"remote1\"}");
	assert_int_equal(a.nmsg, na + 3);
	assert_int_equal(b.nmsg, nb + 2);
	route_ops.leave(r, pa);
	route_ops.leave(r, pb);
	route_ops.leave(r, po);
}

/* b is closed as too slow by the send of a fan-out: the fan-out goes on to c, b is told
 * nothing more and stays in the channel until the server runs its leave. */
static void
test_close_during_fanout(void **state)
{
	struct fconn a = { 0 }, b = { 0 }, c = { 0 };
	char idb[PROXY_ID_LEN + 1];
	struct frame f;
	(void)state;

	void *pa = join(&a, "chan");
	void *pb = join(&b, "chan");
	void *pc = join(&c, "chan");
	id_of(&b, idb);
	int nb = b.nmsg, nc = c.nmsg;
	b.fail_sends = 1;
	input(pa, "{\"action\":\"broadcast\",\"data\":\"1\"}");
	assert_int_equal(b.close_code, 1008);
	assert_int_equal(c.nmsg, nc + 1);
	int sends = b.nsend;
	input(pa, "{\"action\":\"broadcast\",\"data\":\"2\"}");
	assert_int_equal(b.nsend, sends);
	assert_int_equal(b.nmsg, nb);
	assert_int_equal(c.nmsg, nc + 2);

	/* A later joiner is not told of b. */
	struct fconn d = { 0 };
	void *pd = join(&d, "chan");
	assert_int_equal(d.nmsg, 2);

	route_ops.leave(r, pb);
	msg(&c, nc + 3, &f);
	assert_int_equal(f.action, ACTION_DISCONNECT);
	assert_string_equal(f.target, idb);
	frame_clear(&f);
	route_ops.leave(r, pa);
	route_ops.leave(r, pc);
	route_ops.leave(r, pd);
}

static void
test_deriving_full(void **state)
{
	struct fconn a = { 0 };
	struct proxy_client_info page = { .origin = 7 };
	struct frame f;
	(void)state;

	pl.deriving = 16;
	assert_null(route_ops.join(r, &a, "chan", &page));
	assert_int_equal(a.close_code, 1013);
	msg(&a, 0, &f);
	assert_int_equal(f.code, 429);
	frame_clear(&f);
	assert_false(up_has("\"open\""));
}

static void
on_done(void *ctx)
{
	++*(int *)ctx;
}

/* Stopping closes every client and withdraws its channel before the pipeline ends; the
 * server's leaves then free the peers. */
static void
test_stop(void **state)
{
	struct fconn a = { 0 }, b = { 0 };
	int done = 0;
	(void)state;

	void *pa = join(&a, "chan");
	void *pb = join(&b, "other");
	route_ops.stop(r, on_done, &done);
	assert_int_equal(done, 1);
	assert_int_equal(a.close_code, 1001);
	assert_int_equal(b.close_code, 1001);
	assert_true(pl.stopped);
	assert_int_equal(strstr(pl.up[pl.nup - 1], "\"close\"") != NULL, 1);
	route_ops.leave(r, pa);
	route_ops.leave(r, pb);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_join_leave, setup, teardown),
		cmocka_unit_test_setup_teardown(test_local_only_stays_out, setup, teardown),
		cmocka_unit_test_setup_teardown(test_message_status, setup, teardown),
		cmocka_unit_test_setup_teardown(test_tail_routing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_during_fanout, setup, teardown),
		cmocka_unit_test_setup_teardown(test_deriving_full, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
