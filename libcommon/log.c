#include "log.h"

#include <langinfo.h>
#include <locale.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jsontext.h"

const char *log_prog = "nws";
int log_level;
int log_utf8 = 1;
int log_stage;

void
log_init(const char *prog)
{
	const char *slash = strrchr(prog, '/');
	log_prog = slash ? slash + 1 : prog;
	log_stage = getenv(LOG_STAGE_ENV) != NULL;
	/* Asked of a locale object, so the process's own locale stays "C". */
	locale_t loc = newlocale(LC_CTYPE_MASK, "", (locale_t)0);
	log_utf8 = loc && strcmp(nl_langinfo_l(CODESET, loc), "UTF-8") == 0;
	if (loc)
		freelocale(loc);
}

static void
vlog(const char *fmt, va_list ap)
{
	char line[1024];
	int n = snprintf(line, sizeof line, "%s: ", log_prog);
	if (n < 0 || (size_t)n >= sizeof line)
		n = 0;
	vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
	/* One write per line, so lines from the stages of a pipeline do not interleave. */
	fprintf(stderr, "%s\n", line);
}

void
log_at(int level, const char *fmt, ...)
{
	if (level > log_level)
		return;
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
}

void
log_fatal(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vlog(fmt, ap);
	va_end(ap);
	exit(code);
}

int
log_once_per_burst(const char *key)
{
	static char last[64];
	static struct timespec at;
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int same = strncmp(last, key, sizeof last - 1) == 0;
	long elapsed_ms = (now.tv_sec - at.tv_sec) * 1000 + (now.tv_nsec - at.tv_nsec) / 1000000;
	at = now;
	if (same && elapsed_ms < 1000)
		return 0;
	snprintf(last, sizeof last, "%s", key);
	return 1;
}

/* Characters a terminal acts on or reorders a line by, beyond C0 and DEL: the C1 controls
 * (U+009B is CSI to many terminals), the line and paragraph separators and the
 * bidirectional formatting characters (they make a line show other than what it holds). */
static int
escape_char(unsigned long cp)
{
	return (cp >= 0x80 && cp <= 0x9f) || cp == 0x61c || cp == 0x200e || cp == 0x200f ||
	    (cp >= 0x2028 && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069);
}

const char *
log_escape(const char *s, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *u = (const unsigned char *)s;
	size_t o = 0;

	if (!outlen)
		return out;
	for (size_t i = 0, k; s && i < len; i += k) {
		unsigned long cp;
		k = jsontext_utf8_char(u + i, len - i, &cp);
		if (k && cp >= 0x20 && cp != 0x7f && cp != '\\' && !escape_char(cp) &&
		    (cp < 0x80 || log_utf8)) {
			if (o + k >= outlen)
				break;
			memcpy(out + o, u + i, k);
			o += k;
			continue;
		}
		/* Not UTF-8 here: this byte alone, so what follows is read afresh. */
		if (!k)
			k = 1;
		if (o + 4 * k >= outlen)
			break;
		for (size_t j = 0; j < k; j++) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[u[i + j] >> 4];
			out[o++] = hex[u[i + j] & 15];
		}
	}
	out[o] = '\0';
	return out;
}

void
log_lws(int level, const char *line)
{
	char esc[LOG_ESCAPE_MAX(256)];
	size_t n = strlen(line);

	(void)level;
	while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
		n--;
	log_debug("lws: %s", log_escape(line, n, esc, sizeof esc));
}
