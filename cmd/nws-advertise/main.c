/* nws-advertise: publishes the channels nws-link listens on as tagged _nws._tcp records
 * (nws(7) DISCOVERY) and withdraws them on close or exit. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "advertise.h"
#include "log.h"
#include "nws.h"
#include "opts.h"

static const char usage[] =
    "usage: nws-advertise [-v] [-d domain] [-i interface] [-p port]\n"
    "                     [--instance name] [--format json|cbor] [--channel-file file]\n"
    "                     [--tsig-key file] [--dns-server addr] [channel ...]\n"
    "Publishes each channel of a listening frame on stdin (or of the arguments, NWS_CHANNEL\n"
    "and --channel-file, at --port) as an _nws._tcp record that names no channel, withdraws\n"
    "it on close, and passes every other frame on.\n"
    "  -p, --port PORT            the port the channels given here listen on (needed\n"
    "                             with them)\n"
    "  -i, --interface INTERFACE  publish on this interface only\n"
    "  --instance NAME            the instance name to try first (default: 16 random hex)\n"
    "  -d, --domain DOMAIN        publish in unicast DNS domain DOMAIN by DNS UPDATE\n"
    "                             instead of on mDNS (local)\n"
    "  --tsig-key FILE            the TSIG key for -d, as tsig-keygen writes it\n"
    "  --dns-server ADDR          send updates to ADDR, not to the primary in the SOA\n"
    "  --format json|cbor         json (default) or cbor\n"
    "  --json, --cbor             the same as --format json, --format cbor\n"
    "  --channel-file FILE        read channel names from FILE (also: NWS_CHANNEL)\n"
    "  --max-frame SIZE           skip input frames larger than SIZE (default 16M)\n"
    "  -v, --verbose              more on stderr\n"
    "  -h, --help                 this text\n"
    "  -V, --version              the version\n";

enum { OPT_FORMAT = OPT_TOOL, OPT_INSTANCE, OPT_TSIG_KEY, OPT_DNS_SERVER };

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		OPTS_LONG,
		{ "port", required_argument, 0, 'p' },
		{ "interface", required_argument, 0, 'i' },
		{ "format", required_argument, 0, OPT_FORMAT },
		{ "instance", required_argument, 0, OPT_INSTANCE },
		{ "tsig-key", required_argument, 0, OPT_TSIG_KEY },
		{ "dns-server", required_argument, 0, OPT_DNS_SERVER },
		{ 0, 0, 0, 0 },
	};
	static struct advertise a;
	struct opts o;
	const char *iface = NULL, *why, *keyfile = NULL, *server = NULL;
	char err[512];
	long port = 0;
	char *end;
	int c, rc;

	log_init(argv[0]);
	opts_init(&o, usage);
	opts_take(&o, OPTS_DOMAIN | OPTS_FORMAT | OPTS_MAX_FRAME | OPTS_CHANNEL_FILE);
	while ((c = opts_getopt(&o, argc, argv, "p:i:", longopts)) != -1) {
		if (opts_common(&o, c, optarg))
			continue;
		switch (c) {
		case 'p':
			port = strtol(optarg, &end, 10);
			if (*end || port < 1 || port > 65535)
				opts_usage(&o, "--port takes a number from 1 to 65535");
			break;
		case OPT_INSTANCE:
			if (!*optarg || strlen(optarg) > 63)
				opts_usage(&o, "--instance takes 1 to 63 bytes");
			a.instance = optarg;
			break;
		case 'i': iface = optarg; break;
		case OPT_TSIG_KEY: keyfile = optarg; break;
		case OPT_DNS_SERVER: server = optarg; break;
		case OPT_FORMAT:
			if (strcmp(optarg, "cbor") == 0)
				o.out_fmt = FORMAT_CBOR;
			else if (strcmp(optarg, "json") == 0)
				o.out_fmt = FORMAT_JSON;
			else
				opts_usage(&o, "--format takes json or cbor");
			break;
		default:
			opts_usage(&o, NULL);
		}
	}
	opts_channels(&o, argc, argv, optind);
	if (o.nchannels && !port)
		opts_usage(&o, "channels given here need --port (the port their peers dial)");
	a.keep = o.nchannels > 0;
	a.wide = o.domain && strcasecmp(o.domain, "local") && strcasecmp(o.domain, "local.");
	if ((keyfile || server) && !a.wide)
		opts_usage(&o, "--tsig-key and --dns-server publish in a unicast DNS domain: "
		    "name it with -d DOMAIN");
	if (a.wide && keyfile && !(a.up = dnsupdate_new(o.domain, keyfile, server, err,
	    sizeof err)))
		log_fatal(NWS_EXIT_FAIL, "%s", err);
	if (a.wide && !keyfile)
		log_error("no --tsig-key: cannot publish in %s, so peers there cannot find this "
		    "host (it still finds and links to theirs)", o.domain);

	static const int sigs[] = { SIGINT, SIGTERM, 0 };
	if (!(a.al = aloop_new()))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	/* Before the key worker thread starts: signals come through the loop. */
	if (aloop_signals(a.al, sigs, advertise_signal, &a) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot watch signals: %s", strerror(errno));
	if (!(a.d = dnssd_new(a.al, o.domain, iface, &advertise_callbacks, &a))) {
		opts_free(&o);
		return NWS_EXIT_FAIL;
	}
	if (!(a.io = aloop_pipe_new(a.al, STDIN_FILENO, STDOUT_FILENO, o.out_fmt, o.max_frame,
	    advertise_frame, advertise_eof, &a)))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	if (advertise_derive_init(&a) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot start the key worker: %s", strerror(errno));
	for (size_t i = 0; i < o.nchannels; i++)
		if (advertise_add(&a, o.channels[i], (uint16_t)port, &why) < 0)
			log_fatal(NWS_EXIT_FAIL, "cannot advertise: %s", why);
	opts_free(&o);
	dnssd_start(a.d);
	rc = aloop_run(a.al);
	aloop_pipe_close(a.io);
	advertise_remove_all(&a);   /* the daemon withdraws them with goodbye packets */
	dnsupdate_free(a.up);
	dnssd_free(a.d);
	aloop_free(a.al);
	return rc;
}
