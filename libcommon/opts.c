#include "opts.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>

#include "keys.h"
#include "log.h"
#include "nws.h"
#include "stream.h"

void
opts_init(struct opts *o, const char *usage)
{
	memset(o, 0, sizeof *o);
	o->usage = usage;
	o->out_fmt = FORMAT_JSON;
	o->max_frame = STREAM_MAX_FRAME_DEFAULT;
	o->takes = OPTS_ALL;
}

void
opts_take(struct opts *o, unsigned takes)
{
	o->takes = takes;
}

/* The shared option behind a getopt value, 0 for -h, -V, -v and a tool's own. */
static unsigned
opts_kind(int val)
{
	switch (val) {
	case 'd':
		return OPTS_DOMAIN;
	case OPT_JSON:
	case OPT_CBOR:
		return OPTS_FORMAT;
	case OPT_MAX_FRAME:
		return OPTS_MAX_FRAME;
	case OPT_CHANNEL_FILE:
		return OPTS_CHANNEL_FILE;
	}
	return 0;
}

void
opts_free(struct opts *o)
{
	for (size_t i = 0; i < o->nchannels; i++) {
		sodium_memzero(o->channels[i], strlen(o->channels[i]));
		free(o->channels[i]);
	}
	free(o->channels);
	o->channels = NULL;
	o->nchannels = 0;
}

void
opts_usage(const struct opts *o, const char *msg)
{
	(void)o;
	fprintf(stderr, "%s: %s; try '%s -h'\n", log_prog, msg ? msg : "bad usage", log_prog);
	exit(NWS_EXIT_USAGE);
}

int
opts_getopt(struct opts *o, int argc, char **argv, const char *shortopts,
    const struct option *longopts)
{
	static struct option taken[64];
	char all[128];
	size_t n = 0;

	o->argv = argv;
	opterr = 0;
	snprintf(all, sizeof all, ":" OPTS_SHORT "%s%s", o->takes & OPTS_DOMAIN ? "d:" : "",
	    shortopts);
	/* The tool's table less the shared options it does not take; tables are short. */
	for (const struct option *lo = longopts; lo->name; lo++)
		if (n < sizeof taken / sizeof *taken - 1 &&
		    (!opts_kind(lo->val) || (o->takes & opts_kind(lo->val))))
			taken[n++] = *lo;
	memset(&taken[n], 0, sizeof taken[n]);
	return getopt_long(argc, argv, all, taken, NULL);
}

/* What getopt rejected, in words: optind has moved past the option (and past its
 * argument when it was glued, "-wx"), so the offending word is the one before. */
static void
bad_option(const struct opts *o, int c)
{
	char msg[200];
	const char *word = o->argv && optind > 0 ? o->argv[optind - 1] : "?";
	int len = (int)strcspn(word, "=");

	if (c == ':')
		snprintf(msg, sizeof msg, "option %.*s needs an argument", len > 60 ? 60 : len, word);
	else if (optopt && word[0] == '-' && word[1] != '-')
		snprintf(msg, sizeof msg, "unknown option -%c", optopt);
	else if (optopt)
		snprintf(msg, sizeof msg, "option %.*s takes no argument", len > 60 ? 60 : len, word);
	else
		snprintf(msg, sizeof msg, "unknown option %.*s", len > 60 ? 60 : len, word);
	opts_usage(o, msg);
}

long long
opts_size(const char *s)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || v < 0)
		return -1;
	switch (tolower((unsigned char)*end)) {
	case 'k': v <<= 10; end++; break;
	case 'm': v <<= 20; end++; break;
	case 'g': v <<= 30; end++; break;
	}
	return *end ? -1 : v;
}

int
opts_common(struct opts *o, int c, const char *arg)
{
	long long n;

	switch (c) {
	case 'h':
		printf("%s", o->usage);
		exit(NWS_EXIT_OK);
	case 'V':
		printf("%s %s\n", log_prog, NWS_VERSION);
		exit(NWS_EXIT_OK);
	case 'v':
		log_level++;
		/* -vv shows channel names; an open's key is the same secret. */
		frame_json_keys = log_level >= 2;
		return 1;
	case 'd':
		o->domain = arg;
		return 1;
	case OPT_JSON:
		o->out_fmt = FORMAT_JSON;
		return 1;
	case OPT_CBOR:
		o->out_fmt = FORMAT_CBOR;
		return 1;
	case OPT_MAX_FRAME:
		if ((n = opts_size(arg)) < 64)
			opts_usage(o, "--max-frame takes a size of at least 64 bytes, such as 16M");
		o->max_frame = (size_t)n;
		return 1;
	case OPT_CHANNEL_FILE:
		o->channel_file = arg;
		return 1;
	case '?':
	case ':':
		bad_option(o, c);
	}
	return 0;
}

int
opts_channel_add(struct opts *o, const char *name)
{
	if (!keys_name_valid(name))
		return -1;
	for (size_t i = 0; i < o->nchannels; i++)
		if (strcmp(o->channels[i], name) == 0)
			return 0;
	char **v = realloc(o->channels, (o->nchannels + 1) * sizeof *v);
	if (!v || !(v[o->nchannels] = strdup(name)))
		log_fatal(NWS_EXIT_FAIL, "out of memory");
	o->channels = v;
	o->nchannels++;
	return 0;
}

/* Splits s in place on white space and commas, adding each name. */
static int
add_list(struct opts *o, char *s)
{
	int bad = 0;
	for (char *tok = strtok(s, " \t\r\n,"); tok; tok = strtok(NULL, " \t\r\n,"))
		if (opts_channel_add(o, tok) < 0)
			bad++;
	return bad;
}

void
opts_channels(struct opts *o, int argc, char **argv, int first)
{
	for (int i = first; i < argc; i++)
		if (opts_channel_add(o, argv[i]) < 0)
			opts_usage(o, "invalid channel name: names are 1 to 255 of A-Z a-z 0-9 + = * . _ -");

	const char *env = getenv("NWS_CHANNEL");
	if (env && *env) {
		char *copy = strdup(env);
		if (!copy)
			log_fatal(NWS_EXIT_FAIL, "out of memory");
		int bad = add_list(o, copy);
		sodium_memzero(copy, strlen(env));
		free(copy);
		if (bad)
			opts_usage(o, "NWS_CHANNEL holds an invalid channel name: names are 1 to 255 of A-Z a-z 0-9 + = * . _ -");
	}

	if (o->channel_file) {
		FILE *fp = fopen(o->channel_file, "r");
		if (!fp)
			log_fatal(NWS_EXIT_USAGE, "cannot read channel file %s: %s", o->channel_file, strerror(errno));
		char line[1024];
		int lineno = 0, bad = 0;
		while (fgets(line, sizeof line, fp)) {
			lineno++;
			char *hash = strchr(line, '#');
			if (hash)
				*hash = 0;
			if (add_list(o, line) && !bad)
				bad = lineno;
		}
		sodium_memzero(line, sizeof line);
		fclose(fp);
		if (bad)
			log_fatal(NWS_EXIT_USAGE, "%s:%d: invalid channel name: names are 1 to 255 of A-Z a-z 0-9 + = * . _ -",
			    o->channel_file, bad);
	}
}
