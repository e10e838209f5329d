/* assets: the console, its style and script, and the nws.js polyfill, embedded into the
 * binary at build time by embed.sh (see build.mk), so the proxy serves them from memory. */
#ifndef NWS_PROXY_ASSETS_H
#define NWS_PROXY_ASSETS_H

#include <stddef.h>

struct asset {
	const char *path;         /* "/nws.js"; "/" is the console */
	const char *mime;
	const unsigned char *data;
	size_t len;
};

extern const struct asset assets[];
extern const size_t nassets;

#endif
