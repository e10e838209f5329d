#include "show.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

/* A line being written: n bytes in p, at most cap of them, so "\n" and NUL still fit. */
struct line {
	char *p;
	size_t n, cap;
};

static void
put_n(struct line *l, const char *s, size_t len)
{
	if (len > SHOW_FIELD_MAX) {
		len = SHOW_FIELD_MAX;
		/* Not inside a UTF-8 character: its first bytes would show as invalid. */
		while (len && ((unsigned char)s[len] & 0xc0) == 0x80)
			len--;
	}
	/* log_escape cuts between characters and escapes, never inside either. */
	log_escape(s, len, l->p + l->n, l->cap - l->n + 1);
	l->n += strlen(l->p + l->n);
}

static void
put(struct line *l, const char *s)
{
	put_n(l, s, strlen(s));
}

size_t
show_record(char *out, size_t outlen, const struct dnssd_record *r, const char *channel,
    int found)
{
	struct line l = { out, 0, outlen >= 2 ? outlen - 2 : 0 };
	/* One byte past the field, so put_n sees a character cut there. */
	char host[SHOW_FIELD_MAX + 2], port[8];
	int v6 = r->family == AF_INET6;

	if (outlen < 2) {
		if (outlen)
			out[0] = '\0';
		return 0;
	}
	put(&l, found ? "+ " : "- ");
	put(&l, channel ? channel : "?");
	put(&l, v6 ? " [" : " ");
	put(&l, r->address);
	snprintf(port, sizeof port, "%s:%u", v6 ? "]" : "", r->port);
	put(&l, port);
	put(&l, " ");
	put(&l, dnssd_name_decode(r->host, host, sizeof host));
	put(&l, " ");
	put(&l, r->interface);
	out[l.n++] = '\n';
	out[l.n] = '\0';
	return l.n;
}
