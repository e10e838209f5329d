/* nws-browse: reports the peers of open channels as they appear on the network and leave
 * it (nws(7) DISCOVERY). */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "browse.h"
#include "log.h"
#include "nws.h"
#include "opts.h"

static const char usage[] =
    "usage: nws-browse [-atv] [-d domain] [-i interface] [--format json|cbor|text]\n"
    "                  [--channel-file file] [channel ...]\n"
    "Reports found/lost frames for nws peers of the open channels (arguments, NWS_CHANNEL,\n"
    "--channel-file, or open frames on stdin) and passes every input frame on.\n"
    "  -a, --all                  also report advertisements of no open channel\n"
    "  -t, --terminate            report what is there now and exit: 0 found, 1 none,\n"
    "                             69 no avahi-daemon\n"
    "  -i, --interface INTERFACE  browse on this interface only\n"
    "  -d, --domain DOMAIN        browse DOMAIN instead of local\n"
    "  --format json|cbor|text    json (default), cbor, or one human line per event\n"
    "  --json, --cbor             the same as --format json, --format cbor\n"
    "  --channel-file FILE        read channel names from FILE (also: NWS_CHANNEL)\n"
    "  --max-frame SIZE           skip input frames larger than SIZE (default 16M)\n"
    "  -v, --verbose              more on stderr (-vv: per event)\n"
    "  -h, --help                 this text\n"
    "  -V, --version              the version\n";

enum { OPT_FORMAT = OPT_TOOL };

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		OPTS_LONG,
		{ "all", no_argument, 0, 'a' },
		{ "terminate", no_argument, 0, 't' },
		{ "interface", required_argument, 0, 'i' },
		{ "format", required_argument, 0, OPT_FORMAT },
		{ 0, 0, 0, 0 },
	};
	static struct browse b;
	struct opts o;
	const char *iface = NULL;
	int c, rc;

	log_init(argv[0]);
	opts_init(&o, usage);
	opts_take(&o, OPTS_DOMAIN | OPTS_FORMAT | OPTS_MAX_FRAME | OPTS_CHANNEL_FILE);
	while ((c = opts_getopt(&o, argc, argv, "ati:", longopts)) != -1) {
		if (opts_common(&o, c, optarg))
			continue;
		switch (c) {
		case 'a': b.all = 1; break;
		case 't': b.terminate = 1; break;
		case 'i': iface = optarg; break;
		case OPT_FORMAT:
			b.text = 0;
			if (strcmp(optarg, "text") == 0)
				b.text = 1;
			else if (strcmp(optarg, "cbor") == 0)
				o.out_fmt = FORMAT_CBOR;
			else if (strcmp(optarg, "json") == 0)
				o.out_fmt = FORMAT_JSON;
			else
				opts_usage(&o, "--format takes json, cbor or text");
			break;
		default:
			opts_usage(&o, NULL);
		}
	}
	opts_channels(&o, argc, argv, optind);
	if (b.terminate && !o.nchannels && !b.all)
		opts_usage(&o, "-t needs a channel (or -a): there is nothing to match");
	if (b.text)
		o.out_fmt = FORMAT_JSON;
	b.keep = o.nchannels > 0;

	static const int sigs[] = { SIGINT, SIGTERM, 0 };
	if (!(b.al = aloop_new()))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	/* Before the key worker thread starts: signals come through the loop. */
	if (aloop_signals(b.al, sigs, browse_signal, &b) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot watch signals: %s", strerror(errno));
	if (!(b.d = dnssd_new(b.al, o.domain, iface, &browse_callbacks, &b))) {
		opts_free(&o);
		return NWS_EXIT_FAIL;
	}
	if (!(b.io = aloop_pipe_new(b.al, STDIN_FILENO, STDOUT_FILENO, o.out_fmt, o.max_frame,
	    browse_frame, browse_eof, &b)))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	if (browse_derive_init(&b) < 0)
		log_fatal(NWS_EXIT_FAIL, "cannot start the key worker: %s", strerror(errno));
	/* Channels of the command line are ready before browsing starts, for -t's answer. */
	for (size_t i = 0; i < o.nchannels; i++)
		if (browse_open(&b, o.channels[i], NULL, 1) < 0)
			log_fatal(NWS_EXIT_USAGE, "too many channels: at most %d", BROWSE_MAX_CHANNELS);
	opts_free(&o);
	dnssd_browse(b.d);
	if (b.terminate)
		browse_deadline(&b);
	dnssd_start(b.d);
	rc = aloop_run(b.al);
	aloop_pipe_close(b.io);
	browse_close_all(&b);
	dnssd_free(b.d);
	aloop_free(b.al);
	return rc;
}
