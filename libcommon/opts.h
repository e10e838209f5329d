/* opts: the options tools share (-h, -V and -v, which every tool takes; -d, --json and
 * --cbor, --max-frame, --channel-file, which each tool declares it takes with opts_take)
 * and where channel names come from: arguments, NWS_CHANNEL, a file. */
#ifndef NWS_OPTS_H
#define NWS_OPTS_H

#include <getopt.h>
#include <stddef.h>

#include "frame.h"

#ifndef NWS_VERSION
#define NWS_VERSION "0.1.0"
#endif

enum {
	OPT_JSON = 0x100,
	OPT_CBOR,
	OPT_MAX_FRAME,
	OPT_CHANNEL_FILE,
	OPT_TOOL = 0x200,    /* first value free for a tool's own long-only options */
};

/* The shared options a tool may take beyond -h, -V and -v. */
enum {
	OPTS_DOMAIN = 1 << 0,          /* -d, --domain */
	OPTS_FORMAT = 1 << 1,          /* --json, --cbor */
	OPTS_MAX_FRAME = 1 << 2,       /* --max-frame */
	OPTS_CHANNEL_FILE = 1 << 3,    /* --channel-file */
	OPTS_ALL = (1 << 4) - 1,
};

#define OPTS_SHORT "hVv"     /* opts_getopt adds these itself, and d: with OPTS_DOMAIN */
#define OPTS_LONG \
	{ "help", no_argument, 0, 'h' }, \
	{ "version", no_argument, 0, 'V' }, \
	{ "verbose", no_argument, 0, 'v' }, \
	{ "domain", required_argument, 0, 'd' }, \
	{ "json", no_argument, 0, OPT_JSON }, \
	{ "cbor", no_argument, 0, OPT_CBOR }, \
	{ "max-frame", required_argument, 0, OPT_MAX_FRAME }, \
	{ "channel-file", required_argument, 0, OPT_CHANNEL_FILE }

struct opts {
	const char *usage;             /* printed by -h */
	char **argv;                   /* set by opts_getopt, to name a bad option */
	enum frame_format out_fmt;     /* FORMAT_JSON unless --cbor */
	size_t max_frame;
	const char *domain;            /* NULL: avahi's default ("local") */
	const char *channel_file;
	unsigned takes;                /* OPTS_*: the shared options the tool takes */
	char **channels;               /* owned, validated, deduplicated */
	size_t nchannels;
};

/* Takes every shared option until opts_take says otherwise. */
void opts_init(struct opts *o, const char *usage);
/* The shared options the tool takes (OPTS_*): the others are unknown options to it, even
 * when longopts lists them (OPTS_LONG lists all). */
void opts_take(struct opts *o, unsigned takes);
void opts_free(struct opts *o);   /* wipes the channel names: they are keys */

/* getopt_long with the shared short options prepended, quiet: a bad or incomplete
 * option comes back as '?' or ':' for opts_common to report in one line. */
int opts_getopt(struct opts *o, int argc, char **argv, const char *shortopts,
    const struct option *longopts);
/* Handles c if it is a shared option and returns 1; 0 if it is not. -h prints usage on
 * stdout and exits 0, -V the version, a bad value or '?' exits 2 via opts_usage. */
int opts_common(struct opts *o, int c, const char *arg);
/* Prints one line, "prog: msg; try 'prog -h'", on stderr and exits 2. */
void opts_usage(const struct opts *o, const char *msg) __attribute__((noreturn));

/* After getopt: collects the channel names of argv[first..], NWS_CHANNEL (names separated
 * by white space or commas) and --channel-file (one per line, '#' comments). An invalid
 * name or unreadable file exits 2 with a message that never echoes a name. */
void opts_channels(struct opts *o, int argc, char **argv, int first);
/* Adds one name (copied) unless already present. 0 added or present, -1 invalid. */
int opts_channel_add(struct opts *o, const char *name);

/* "16M", "512k", "1048576" -> bytes; -1 when not a size. */
long long opts_size(const char *s);

#endif
