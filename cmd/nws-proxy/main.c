/* nws-proxy: ws://localhost:9009/<channel> for web pages and local programs, the seed's
 * JSON protocol, console and polyfill, on one nws-browse | nws-link | nws-advertise
 * pipeline for all channels (nws(7) THE LOCAL WEBSOCKET PROTOCOL). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "nws.h"
#include "opts.h"
#include "route.h"

static const char usage[] =
    "usage: nws-proxy [-v] [-p PORT] [--max-message SIZE] [--max-queue SIZE]\n"
    "                 [--listen [ADDR:]PORT] [-d DOMAIN] [--tsig-key FILE]\n"
    "                 [--dns-server ADDR] [--local]\n"
    "Serves named network channels to web pages and local programs:\n"
    "  ws://localhost:PORT/CHANNEL   the WebSocket endpoint (JSON, or CBOR with the\n"
    "                                subprotocol nws.cbor)\n"
    "  http://localhost:PORT/        a test console; /nws.js the NetworkWebSocket polyfill\n"
    "  -p, --port, -port PORT  port on 127.0.0.1 and ::1 (default 9009)\n"
    "  --max-message SIZE      largest message a client may send (default 1M; 1009 above)\n"
    "  --max-queue SIZE        output queued per client before it is closed as too slow\n"
    "                          (default 8M; 1008)\n"
    "  --listen [ADDR:]PORT    where nws-link accepts links from other machines\n"
    "                          (default all interfaces, a free port)\n"
    "  -d, --domain DOMAIN     DNS-SD browse and publish domain (default local)\n"
    "  --tsig-key FILE         with -d: the TSIG key (tsig-keygen) to publish by DNS\n"
    "                          UPDATE\n"
    "  --dns-server ADDR       with -d: send updates to ADDR, not to the zone's primary\n"
    "  --local                 do not join the network: channels of this machine only\n"
    "  --max-frame SIZE        largest frame in the pipeline (default 16M)\n"
    "  -v, --verbose           say more (-vv: per-event detail, channel names included)\n"
    "  -h, --help              this help\n"
    "  -V, --version           the version\n";

enum {
	OPT_MAX_MESSAGE = OPT_TOOL,
	OPT_MAX_QUEUE,
	OPT_LISTEN,
	OPT_LOCAL,
	OPT_TSIG_KEY,
	OPT_DNS_SERVER,
};

static size_t
size_arg(struct opts *o, const char *arg, const char *what)
{
	long long n = opts_size(arg);
	if (n <= 0) {
		char msg[80];
		snprintf(msg, sizeof msg, "%s wants a size such as 1M", what);
		opts_usage(o, msg);
	}
	return (size_t)n;
}

/* The seed's proxy took one flag, -port N (Go style); getopt would read it as -p "ort". */
static void
seed_flags(int argc, char **argv)
{
	static char port_eq[32];
	for (int i = 1; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "-port")) {
			argv[i] = "--port";
		} else if (!strncmp(argv[i], "-port=", 6)) {
			snprintf(port_eq, sizeof port_eq, "-%s", argv[i]);
			argv[i] = port_eq;
		}
	}
}

static const struct option longopts[] = {
	OPTS_LONG,
	{ "port", required_argument, 0, 'p' },
	{ "max-message", required_argument, 0, OPT_MAX_MESSAGE },
	{ "max-queue", required_argument, 0, OPT_MAX_QUEUE },
	{ "listen", required_argument, 0, OPT_LISTEN },
	{ "local", no_argument, 0, OPT_LOCAL },
	{ "tsig-key", required_argument, 0, OPT_TSIG_KEY },
	{ "dns-server", required_argument, 0, OPT_DNS_SERVER },
	{ 0, 0, 0, 0 },
};

/* The command line into cfg (o keeps the shared options); usage errors exit 2. */
static void
config_parse(int argc, char **argv, struct opts *o, struct proxy_config *cfg)
{
	const char *why;
	char *end;
	int c;

	/* No frame output to format, and channels come from clients: --json, --cbor and
	 * --channel-file are refused rather than ignored. */
	opts_take(o, OPTS_DOMAIN | OPTS_MAX_FRAME);
	memset(cfg, 0, sizeof *cfg);
	cfg->port = NWS_PROXY_PORT;
	cfg->max_message = 1u << 20;
	cfg->max_queue = 8u << 20;
	while ((c = opts_getopt(o, argc, argv, "p:", longopts)) != -1) {
		if (opts_common(o, c, optarg))
			continue;
		switch (c) {
		case 'p':
			cfg->port = (int)strtol(optarg, &end, 10);
			if (*end || end == optarg || cfg->port < 0 || cfg->port > 65535)
				opts_usage(o, "-p wants a port number (0-65535)");
			break;
		case OPT_MAX_MESSAGE:
			cfg->max_message = size_arg(o, optarg, "--max-message");
			break;
		case OPT_MAX_QUEUE:
			cfg->max_queue = size_arg(o, optarg, "--max-queue");
			break;
		case OPT_LISTEN:
			cfg->pipe.listen = optarg;
			break;
		case OPT_LOCAL:
			cfg->local_only = 1;
			break;
		case OPT_TSIG_KEY:
			cfg->pipe.tsig_key = optarg;
			break;
		case OPT_DNS_SERVER:
			cfg->pipe.dns_server = optarg;
			break;
		default:
			opts_usage(o, NULL);
		}
	}
	if (optind < argc)
		opts_usage(o, "channels come from clients: ws://localhost:PORT/CHANNEL");
	cfg->pipe.domain = o->domain;
	if ((why = pipeline_config_problem(&cfg->pipe)))
		opts_usage(o, why);
	cfg->pipe.verbose = log_level;
	cfg->pipe.max_frame = o->max_frame;
	cfg->pipe.max_queue = cfg->max_queue;
}

int
main(int argc, char **argv)
{
	struct proxy_config cfg;
	struct opts o;

	log_init(argv[0]);
	seed_flags(argc, argv);
	opts_init(&o, usage);
	config_parse(argc, argv, &o, &cfg);
	struct route *route = route_new(&cfg, &server_conn_ops);
	if (!route)
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	if (server_start(&cfg, &route_ops, route) < 0)
		return NWS_EXIT_FAIL;
	server_run();
	server_free();
	route_free(route);
	opts_free(&o);
	return NWS_EXIT_OK;
}
