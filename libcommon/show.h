/* show: the lines a tool writes for a person to read instead of frames (nws-browse
 * --format text). Every field goes through log_escape, text from the network and our own
 * alike, so nothing a host on the network names can move the cursor, forge a line or
 * rewrite the terminal. A host name is shown as its bytes (dnssd_name_decode), so a
 * readable non-ASCII name stays readable in a UTF-8 locale (log_utf8): "Küche.local",
 * not avahi's "K\195\188che.local".
 * A line is always whole: one event, one newline at its end. */
#ifndef NWS_SHOW_H
#define NWS_SHOW_H

#include <stddef.h>

#include "dnssd.h"
#include "log.h"

/* A field shows at most this many bytes of its text (a DNS name's length), cut before a
 * character that would not fit. */
#define SHOW_FIELD_MAX 255
/* Room for any line show_record writes: four escaped fields, a port and the separators. */
#define SHOW_LINE_MAX (4 * LOG_ESCAPE_MAX(SHOW_FIELD_MAX) + 16)

/* One record found (found = 1) or lost, as
 *     + chat 10.0.0.2:40123 host-a.local eth0
 * ('-' for lost, '?' for no channel, brackets around an IPv6 address) into out, ending in
 * "\n" and cut to outlen if it must (SHOW_LINE_MAX never cuts). Returns its length. */
size_t show_record(char *out, size_t outlen, const struct dnssd_record *r,
    const char *channel, int found);

#endif
