/* nws-pipe: a channel in a shell pipe. stdin to the channel, the channel to stdout, as
 * one peer; through its own pipeline or a running nws-proxy. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "loop.h"
#include "opts.h"
#include "pipe.h"

static const char usage[] =
"usage: nws-pipe [options] CHANNEL\n"
"       nws-pipe --new-name\n"
"Joins CHANNEL as one peer: each stdin line is broadcast, each broadcast received is\n"
"written to stdout as a line. Uses the nws-proxy of this machine if one runs.\n"
"  --raw                  byte chunks both ways instead of lines (binary-safe)\n"
"  --json                 whole frames both ways, as a client of nws-proxy sees them\n"
"  --to PEER              send to PEER only (direct messages), once it is present\n"
"  -w, --wait N           read stdin only once N peers are present\n"
"  -t, --timeout SECONDS  give up waiting for peers after SECONDS (exit 1); implies -w 1\n"
"  -1, --once             exit once stdin has ended and all it held was handed on;\n"
"                         having sent nothing, once a sender's input has ended\n"
"  --progress             bytes and rate on stderr (default: --raw on a terminal)\n"
"  --via-proxy [URL]      only through nws-proxy (default ws://localhost:9009)\n"
"  --no-proxy             our own pipeline, even if an nws-proxy runs\n"
"  --new-name             print a random private channel name and exit\n"
"  --listen ADDR          where the spawned nws-link listens\n"
"  -d, --domain DOMAIN    DNS-SD domain to browse and publish in (default local)\n"
"  --tsig-key FILE        with -d: the TSIG key (tsig-keygen) to publish by DNS UPDATE\n"
"  --dns-server ADDR      with -d: send updates to ADDR, not to the zone's primary\n"
"  --max-frame SIZE       the largest frame (default 16M); longer lines go in pieces\n"
"  --channel-file FILE    read the channel name from FILE (also: NWS_CHANNEL)\n"
"  -v, --verbose          say more on stderr (twice: more still)\n"
"  -h, --help             this text\n"
"  -V, --version          the version\n"
"Exit: 0 done, 1 timed out waiting for peers, 2 usage, 69 avahi-daemon (needed by\n"
"--wait) or nws-proxy (--via-proxy) unreachable.\n";

enum {
	OPT_RAW = OPT_TOOL,
	OPT_TO,
	OPT_VIA_PROXY,
	OPT_LISTEN,
	OPT_NO_PROXY,
	OPT_PROGRESS,
	OPT_NEW_NAME,
	OPT_TSIG_KEY,
	OPT_DNS_SERVER,
};

static int signalled;
static struct lws_context *context;

static void
on_signal(void *ctx, int sig)
{
	(void)ctx;
	if (signalled)
		_exit(128 + sig);   /* a second ^C: the user does not want to wait */
	signalled = sig;
	lws_cancel_service(context);
}

static double
parse_seconds(const struct opts *o, const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || *end || v < 0 || v > 1e7)
		opts_usage(o, "--timeout wants a number of seconds");
	return v;
}

/* A channel name nobody can guess: 18 random bytes in base64, '/' made '_' (a name
 * character), as the console's "Make a private name" does. */
static void __attribute__((noreturn))
print_new_name(void)
{
	unsigned char b[18];
	char name[sodium_base64_ENCODED_LEN(sizeof b, sodium_base64_VARIANT_ORIGINAL)];

	if (sodium_init() < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot initialise libsodium");
	randombytes_buf(b, sizeof b);
	sodium_bin2base64(name, sizeof name, b, sizeof b, sodium_base64_VARIANT_ORIGINAL);
	for (char *p = name; *p; p++)
		if (*p == '/')
			*p = '_';
	printf("%s\n", name);
	sodium_memzero(name, sizeof name);
	exit(fflush(stdout) ? NWS_EXIT_FAIL : NWS_EXIT_OK);
}

static void
parse(struct np *np, struct opts *o, int argc, char **argv)
{
	static const struct option longopts[] = {
		OPTS_LONG,
		{ "raw", no_argument, 0, OPT_RAW },
		{ "to", required_argument, 0, OPT_TO },
		{ "wait", required_argument, 0, 'w' },
		{ "timeout", required_argument, 0, 't' },
		{ "once", no_argument, 0, '1' },
		{ "via-proxy", optional_argument, 0, OPT_VIA_PROXY },
		{ "listen", required_argument, 0, OPT_LISTEN },
		{ "no-proxy", no_argument, 0, OPT_NO_PROXY },
		{ "progress", no_argument, 0, OPT_PROGRESS },
		{ "new-name", no_argument, 0, OPT_NEW_NAME },
		{ "tsig-key", required_argument, 0, OPT_TSIG_KEY },
		{ "dns-server", required_argument, 0, OPT_DNS_SERVER },
		{ 0, 0, 0, 0 },
	};
	int c, new_name = 0;
	char *end;
	const char *why;

	while ((c = opts_getopt(o, argc, argv, "w:t:1", longopts)) != -1) {
		switch (c) {
		case OPT_JSON:     /* not the frame format of the shared option: the mode */
			np->mode = MODE_JSON;
			break;
		case OPT_CBOR:
			opts_usage(o, "--cbor is not a mode of nws-pipe (try --raw or --json)");
		case OPT_RAW:
			np->mode = MODE_RAW;
			break;
		case OPT_TO:
			if (!*optarg)
				opts_usage(o, "--to wants a peer id");
			np->to = optarg;
			break;
		case 'w':
			np->wait_n = strtol(optarg, &end, 10);
			if (end == optarg || *end || np->wait_n < 0 || np->wait_n > IDSET_PEERS_MAX)
				opts_usage(o, "--wait wants a number of peers");
			break;
		case 't':
			np->timeout_ms = (int64_t)(parse_seconds(o, optarg) * 1000);
			break;
		case '1':
			np->once = 1;
			break;
		case OPT_VIA_PROXY:
			np->proxy_url = optarg;
			if (!optarg && optind < argc && strstr(argv[optind], "://"))
				np->proxy_url = argv[optind++];
			if (!np->proxy_url)
				np->proxy_url = NWS_PROXY_URL;
			if ((why = proxy_url_problem(np->proxy_url)))
				opts_usage(o, why);
			break;
		case OPT_NO_PROXY:
			np->no_proxy = 1;
			break;
		case OPT_PROGRESS:
			np->progress = 1;
			break;
		case OPT_NEW_NAME:
			new_name = 1;
			break;
		case OPT_LISTEN:
			np->pcfg.listen = optarg;
			break;
		case OPT_TSIG_KEY:
			np->pcfg.tsig_key = optarg;
			break;
		case OPT_DNS_SERVER:
			np->pcfg.dns_server = optarg;
			break;
		default:
			if (!opts_common(o, c, optarg))
				opts_usage(o, NULL);
		}
	}
	if (new_name) {
		if (optind < argc || np->mode != MODE_LINES)
			opts_usage(o, "--new-name takes nothing else");
		print_new_name();
	}
	/* The command line wins over the environment: NWS_CHANNEL may be exported for
	 * other tools while this one is pointed elsewhere. */
	if (optind < argc)
		unsetenv("NWS_CHANNEL");
	opts_channels(o, argc, argv, optind);
	if (o->nchannels != 1)
		opts_usage(o, o->nchannels ? "one channel only" : "which channel?");
	np->channel = o->channels[0];
	np->max_frame = o->max_frame;
	np->pcfg.domain = o->domain;
	np->pcfg.verbose = log_level;
	if (np->timeout_ms >= 0 && !np->wait_n && !np->to)
		np->wait_n = 1;
	if ((why = pipeline_config_problem(&np->pcfg)))
		opts_usage(o, why);
	if (np->proxy_url && (o->domain || np->pcfg.listen))
		opts_usage(o, "-d, --listen, --tsig-key and --dns-server are the proxy's "
		    "business with --via-proxy");
	if (np->proxy_url && np->no_proxy)
		opts_usage(o, "--via-proxy and --no-proxy exclude each other");
	/* -d and --listen configure a pipeline of our own: no proxy is looked for. */
	if (o->domain || np->pcfg.listen)
		np->no_proxy = 1;
	if (np->mode == MODE_RAW && isatty(2))
		np->progress = 1;
}

static void
np_free(struct np *np)
{
	idset_clear(&np->peers);
	buf_clear(&np->in);
	buf_clear(&np->out);
}

int
main(int argc, char **argv)
{
	static struct np np;
	struct opts o;
	struct lws_context_creation_info info;
	struct lws_protocols protocols[] = {
		loop_protocol, np_stdin_protocol, proxy_protocol, { 0 },
	};

	log_init("nws-pipe");
	opts_init(&o, usage);
	opts_take(&o, OPTS_DOMAIN | OPTS_FORMAT | OPTS_MAX_FRAME | OPTS_CHANNEL_FILE);
	np.timeout_ms = -1;
	parse(&np, &o, argc, argv);
	if (sodium_init() < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot initialise libsodium");
	keys_random_hex(np.id, PEER_ID_HEX);
	buf_init(&np.in, 0);
	buf_init(&np.out, 0);
	idset_init(&np.peers, IDSET_PEERS_MAX);

	lws_set_log_level(log_level >= 2 ? LLL_ERR | LLL_WARN : 0, log_lws);
	memset(&info, 0, sizeof info);
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.vhost_name = "nws-pipe";
	context = lws_create_context(&info);
	if (!context)
		log_fatal(NWS_EXIT_FAIL, "cannot start the event loop (libwebsockets)");
	np.cx = context;
	np.vh = lws_get_vhost_by_name(context, "nws-pipe");
	/* Before a pipeline starts its key worker thread: signals come through the loop. */
	static const int sigs[] = { SIGINT, SIGTERM, SIGHUP, 0 };
	if (loop_signals(np.vh, sigs, on_signal, NULL) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot watch signals: %s", strerror(errno));

	int rc;
	if (np.proxy_url)
		rc = proxy_start(&np, 0);
	else if (np.no_proxy)
		rc = local_start(&np);
	else {
		np.proxy_url = NWS_PROXY_URL;
		rc = proxy_start(&np, 1);
	}
	if (rc)
		np_stop(&np, rc);
	while (!np.finished) {
		if (signalled && !np.stopping) {
			log_info("stopping on signal %d", (int)signalled);
			np_stop(&np, NWS_EXIT_OK);
		}
		if (lws_service(context, 0) < 0)
			break;
	}
	lws_context_destroy(context);
	rc = np.exit_code;
	np_free(&np);
	opts_free(&o);
	return rc;
}
