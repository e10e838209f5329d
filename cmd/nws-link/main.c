/* nws-link: encrypted, authenticated links between the nws-link processes of a channel
 * (nws(7) LINKS and ROUTING). Frames in on stdin, frames out on stdout, links over
 * WebSocket. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libwebsockets.h>

#include "log.h"
#include "nws.h"
#include "loop.h"
#include "mesh.h"
#include "opts.h"
#include "link.h"
#include "listen.h"


enum {
	OPT_LISTEN = OPT_TOOL, OPT_MAX_QUEUE, OPT_MAX_LINKS, OPT_MAX_LINKS_ADDR, OPT_MAX_PEERS,
	OPT_DATA_FDS,
};

static const char usage[] =
    "usage: nws-link [-hVv] [--json | --cbor] [--listen [ADDR:]PORT] [--max-queue SIZE]\n"
    "                [--max-frame SIZE] [--max-links N] [--max-links-per-address N]\n"
    "                [--max-peers N] [--data-fds IN,OUT] [--channel-file FILE]\n"
    "                [CHANNEL...]\n"
    "Links this machine's peers of each open channel (arguments, NWS_CHANNEL,\n"
    "--channel-file, or open frames on stdin) to the peers that found frames name, over\n"
    "Noise-encrypted WebSockets; local peer frames in on stdin, remote ones out on stdout.\n"
    "  --listen [ADDR:]PORT  where links are accepted (default all addresses, a free port)\n"
    "  --max-queue SIZE      bytes queued per link before it is closed as too slow (8M)\n"
    "  --max-frame SIZE      the largest frame (default 16M)\n"
    "  --max-links N         links per channel (256)\n"
    "  --max-links-per-address N  links per channel from one address (16)\n"
    "  --max-peers N         peers one remote node may announce per channel (1024)\n"
    "  --data-fds IN,OUT     local peers' frames on fd IN, remote peers' out on fd OUT;\n"
    "                        stdin then brings found and lost, stdout takes the rest\n"
    "  --json, --cbor        the output format (default json; input is detected)\n"
    "  --channel-file FILE   read channel names from FILE (also: NWS_CHANNEL)\n"
    "  -v, --verbose         more on stderr (-vv: per event, channel names included)\n"
    "  -h, --help            this text\n"
    "  -V, --version         the version\n"
    "Exits 0 at the end of stdin or on SIGINT/SIGTERM, after closing every link.\n";

static int stop;        /* set on a signal or at the end of input */
static int late;   /* the stop deadline passed */
static lws_sorted_usec_list_t late_sul;
static struct lws_context *cx;
static struct mesh *mesh;
static struct loop_pipe *in_pipe, *out_pipe;
/* --data-fds: the pipeline's fast path (nws-link(1) DATA FDS). */
static int data_fds[2] = { -1, -1 };
static struct loop_pipe *data_in, *data_out;
static size_t max_queue = STREAM_MAX_QUEUE_DEFAULT;

/* Input is paused while an output is full or a link is past half its queue. */
static int out_full, links_full;

static void
input_flow(void)
{
	if (in_pipe)
		loop_pipe_pause(in_pipe, out_full || links_full);
	if (data_in)
		loop_pipe_pause(data_in, out_full || links_full);
}

static void
on_links_full(void *ctx, int full)
{
	(void)ctx;
	links_full = full;
	input_flow();
}

/* protocols[0] gets WebSocket upgrades that name no subprotocol, and plain HTTP: neither
 * is a link. */
static int
http_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	if (reason == LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION)
		return 1;
	if (reason == LWS_CALLBACK_HTTP) {
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, NULL);
		return -1;
	}
	return lws_callback_http_dummy(wsi, reason, user, in, len);
}

/* Also from callbacks: one may run from a timer, after which lws_service would poll on
 * with nothing due. */
static void
stop_loop(void)
{
	stop = 1;
	if (cx)
		lws_cancel_service(cx);
}

static void
on_signal(void *ctx, int sig)
{
	(void)ctx;
	(void)sig;
	stop_loop();
}

static void
on_late(lws_sorted_usec_list_t *sul)
{
	(void)sul;
	late = 1;
}

static int
output_full(const struct loop_pipe *p)
{
	return p && loop_pipe_pending(p) >= max_queue;
}

static void
on_input(void *ctx, struct loop_pipe *p, enum frame_format fmt, const unsigned char *raw,
    size_t len)
{
	(void)ctx;
	if (p == in_pipe && data_in) {
		/* stdin brings discovery. Its open and close are nws-browse passing on what the
		 * data input said first (acting on them again could close a channel reopened
		 * since); a found must not pass the open it answers, still unread there. */
		enum frame_action a = frame_peek_action(fmt, raw, len);
		if (a == ACTION_OPEN || a == ACTION_CLOSE)
			return;
		if (a == ACTION_FOUND || a == ACTION_LOST)
			loop_pipe_read_now(data_in);
	}
	mesh_input(mesh, fmt, raw, len);
	/* Pass-through frames must not outrun a reader that stopped reading our output. */
	if (output_full(out_pipe) || output_full(data_out)) {
		out_full = 1;
		input_flow();
	}
}

static void
on_input_closed(void *ctx, struct loop_pipe *p)
{
	(void)ctx;
	if (p == in_pipe)
		in_pipe = NULL;
	else
		data_in = NULL;
	stop_loop();
}

static void
on_output_closed(void *ctx, struct loop_pipe *p)
{
	(void)ctx;
	if (p == out_pipe) {
		out_pipe = NULL;
		mesh_set_output(mesh, NULL);
	} else {
		data_out = NULL;
		mesh_set_peers_output(mesh, NULL);
	}
	stop_loop();
}

static void
on_output_drained(void *ctx, struct loop_pipe *p)
{
	(void)p;
	(void)ctx;
	if (output_full(out_pipe) || output_full(data_out))
		return;
	mesh_output_drained(mesh);
	out_full = 0;
	input_flow();
}

/* IN,OUT: two descriptors open in the right direction, neither a standard one. */
static void
parse_data_fds(struct opts *o, const char *s)
{
	char *end;
	long in = strtol(s, &end, 10), out = -1;

	if (*end == ',')
		out = strtol(end + 1, &end, 10);
	if (*end || in < 3 || out < 3 || in == out || in > INT_MAX || out > INT_MAX)
		opts_usage(o, "--data-fds takes IN,OUT: two file descriptors above 2");
	int fl_in = fcntl((int)in, F_GETFL), fl_out = fcntl((int)out, F_GETFL);
	if (fl_in < 0 || (fl_in & O_ACCMODE) == O_WRONLY ||
	    fl_out < 0 || (fl_out & O_ACCMODE) == O_RDONLY)
		opts_usage(o, "--data-fds IN,OUT: IN must be open for reading and OUT for "
		    "writing");
	data_fds[0] = (int)in;
	data_fds[1] = (int)out;
}

/* [ADDR:]PORT, ADDR possibly [v6]. */
static void
parse_listen(struct opts *o, const char *s, char *addr, size_t addrlen, int *port)
{
	const char *colon = strrchr(s, ':');
	const char *ps = colon ? colon + 1 : s;
	char *end;
	long p = strtol(ps, &end, 10);

	if (!*ps || *end || p < 0 || p > 65535)
		opts_usage(o, "--listen takes [ADDR:]PORT with a port from 0 to 65535");
	*port = (int)p;
	addr[0] = '\0';
	if (colon) {
		size_t n = (size_t)(colon - s);
		if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
			s++;
			n -= 2;
		}
		if (n >= addrlen)
			opts_usage(o, "--listen address too long");
		memcpy(addr, s, n);
		addr[n] = '\0';
	}
}

/* A count for a --max-* option: 1 to 1,000,000. */
static size_t
count_arg(const struct opts *o, const char *arg, const char *what)
{
	char *end, msg[96];
	unsigned long v;

	errno = 0;
	v = strtoul(arg, &end, 10);
	if (errno || end == arg || *end || arg[0] == '-' || v < 1 || v > 1000000) {
		snprintf(msg, sizeof msg, "%s takes a number from 1 to 1000000", what);
		opts_usage(o, msg);
	}
	return (size_t)v;
}

/* The options into o, the listen address and port, and the limits. */
static void
parse(struct opts *o, int argc, char **argv, char *addr, size_t addrlen, int *port,
    struct mesh_limits *lim)
{
	static const struct option longopts[] = {
		OPTS_LONG,
		{ "listen", required_argument, 0, OPT_LISTEN },
		{ "max-queue", required_argument, 0, OPT_MAX_QUEUE },
		{ "max-links", required_argument, 0, OPT_MAX_LINKS },
		{ "max-links-per-address", required_argument, 0, OPT_MAX_LINKS_ADDR },
		{ "max-peers", required_argument, 0, OPT_MAX_PEERS },
		{ "data-fds", required_argument, 0, OPT_DATA_FDS },
		{ 0, 0, 0, 0 },
	};
	long long sz;
	int c;

	opts_init(o, usage);
	opts_take(o, OPTS_FORMAT | OPTS_MAX_FRAME | OPTS_CHANNEL_FILE);
	while ((c = opts_getopt(o, argc, argv, "", longopts)) != -1) {
		if (opts_common(o, c, optarg))
			continue;
		switch (c) {
		case OPT_LISTEN:
			parse_listen(o, optarg, addr, addrlen, port);
			break;
		case OPT_MAX_QUEUE:
			if ((sz = opts_size(optarg)) < 65536)
				opts_usage(o, "--max-queue takes a size of at least 64k");
			max_queue = (size_t)sz;
			break;
		case OPT_MAX_LINKS:
			lim->links = count_arg(o, optarg, "--max-links");
			break;
		case OPT_MAX_LINKS_ADDR:
			lim->links_per_address = count_arg(o, optarg, "--max-links-per-address");
			break;
		case OPT_MAX_PEERS:
			lim->peers = count_arg(o, optarg, "--max-peers");
			break;
		case OPT_DATA_FDS:
			parse_data_fds(o, optarg);
			break;
		default:
			opts_usage(o, NULL);
		}
	}
	opts_channels(o, argc, argv, optind);
}

/* The lws context (cx) and its vhost, taking links on the socket (*lfdp) bound to addr
 * and *port (0: a free one, then set). protocols must outlive the context. */
static struct lws_vhost *
start_loop(const struct lws_protocols *protocols, const char *addr, int *port, int *lfdp)
{
	struct lws_context_creation_info info;
	char err[160];
	int lfd;

	/* Bound here, not by lws: see listen.h. */
	if ((lfd = listen_bind(addr, *port, port, err, sizeof err)) < 0)
		log_fatal(NWS_EXIT_FAIL,
		    "cannot listen on %s%sport %d: %s (choose another with --listen)",
		    addr, addr[0] ? " " : "", *port, err);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
	info.protocols = protocols;
	info.timeout_secs = LINK_HANDSHAKE_SECS;
	/* lws reads a socket into this buffer: the default 4k costs a read(2) and a trip
	 * round the loop per 4k received. */
	info.pt_serv_buf_size = 256 << 10;
	info.retry_and_idle_policy = &link_retry_policy;
	info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
	info.vhost_name = "nws-link";
	if (!(cx = lws_create_context(&info)))
		log_fatal(NWS_EXIT_FAIL, "cannot start libwebsockets (out of memory?)");
	struct lws_vhost *vh = lws_create_vhost(cx, &info);
	if (!vh || listen_adopt(vh, lfd) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot start libwebsockets (out of memory?)");
	*lfdp = lfd;
	return vh;
}

/* Clean stop: close frames to every link, flush stdout, then go. The last link and the
 * last pipe wake lws_service when they go; the deadline is a timer so that it wakes it
 * too. Every timer is cancelled before the context is destroyed. */
static void
drain(void)
{
	mesh_stop(mesh);
	lws_sul_schedule(cx, 0, &late_sul, on_late, NWS_STOP_DEADLINE_MS * LWS_US_PER_MS);
	while (!mesh_idle(mesh) && !late)
		lws_service(cx, 0);
	struct loop_pipe *pipes[] = { in_pipe, data_in, out_pipe, data_out };
	for (size_t i = 0; i < sizeof pipes / sizeof pipes[0]; i++)
		if (pipes[i])
			loop_pipe_close(pipes[i]);
	while (loop_pipes_open() && !late)
		lws_service(cx, 0);
	lws_sul_cancel(&late_sul);
}

int
main(int argc, char **argv)
{
	static const int sigs[] = { SIGINT, SIGTERM, 0 };
	struct lws_protocols protocols[] = {
		{ .name = "nws-link-http", .callback = http_callback },
		link_protocol,
		loop_protocol,
		listen_protocol,
		{ 0 },
	};
	struct opts o;
	struct mesh_limits lim = { 0 };
	char addr[128] = "";
	int port = 0;

	log_init("nws-link");
	parse(&o, argc, argv, addr, sizeof addr, &port, &lim);
	lws_set_log_level(log_level >= 2 ? LLL_ERR | LLL_WARN | LLL_NOTICE :
	    log_level ? LLL_ERR : 0, log_lws);
	int lfd;
	struct lws_vhost *vh = start_loop(protocols, addr, &port, &lfd);
	/* Before mesh_new starts the key worker thread: signals come through the loop. */
	if (loop_signals(vh, sigs, on_signal, NULL) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot watch signals: %s", strerror(errno));

	if (!(mesh = mesh_new(cx, vh, lfd, port, o.max_frame, max_queue)))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	mesh_set_limits(mesh, &lim);
	out_pipe = loop_pipe_adopt(vh, -1, STDOUT_FILENO, o.out_fmt, o.max_frame,
	    max_queue + o.max_frame, NULL, on_output_closed, NULL);
	in_pipe = loop_pipe_adopt(vh, STDIN_FILENO, -1, o.out_fmt, o.max_frame, 0,
	    on_input, on_input_closed, NULL);
	if (!out_pipe || !in_pipe)
		log_fatal(NWS_EXIT_FAIL, "cannot watch standard input and output");
	mesh_set_output(mesh, out_pipe);
	loop_pipe_on_drain(out_pipe, max_queue / 2, on_output_drained, NULL);
	if (data_fds[0] >= 0) {
		data_out = loop_pipe_adopt(vh, -1, data_fds[1], o.out_fmt, o.max_frame,
		    max_queue + o.max_frame, NULL, on_output_closed, NULL);
		data_in = loop_pipe_adopt(vh, data_fds[0], -1, o.out_fmt, o.max_frame, 0,
		    on_input, on_input_closed, NULL);
		if (!data_out || !data_in)
			log_fatal(NWS_EXIT_FAIL, "cannot watch the --data-fds descriptors");
		mesh_set_peers_output(mesh, data_out);
		loop_pipe_on_drain(data_out, max_queue / 2, on_output_drained, NULL);
	}
	mesh_set_flow(mesh, on_links_full, NULL);
	log_info("listening on port %d", port);
	for (size_t i = 0; i < o.nchannels; i++)
		if (mesh_open(mesh, o.channels[i], NULL) < 0)
			log_fatal(NWS_EXIT_FAIL, "cannot open a channel (out of memory?)");

	while (!stop)
		if (lws_service(cx, 0) < 0)
			break;
	drain();
	lws_context_destroy(cx);
	mesh_free(mesh);
	opts_free(&o);
	return NWS_EXIT_OK;
}
