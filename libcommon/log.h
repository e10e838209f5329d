/* log: every message a tool prints on stderr, as "program: message". Errors always;
 * -v adds what a user debugging a setup wants; -vv adds per-event detail. Nothing here
 * ever prints a channel name: callers pass names only to log_debug. */
#ifndef NWS_LOG_H
#define NWS_LOG_H

#include <stddef.h>

extern const char *log_prog;
extern int log_level;   /* 0 default, 1 -v, 2 -vv */
/* 1 (the default) when text may be printed as UTF-8: log_init sets it from the locale
 * (LC_ALL, LC_CTYPE, LANG), so it is 0 unless that is UTF-8. */
extern int log_utf8;
/* Set in the stages pipeline_start spawns: what their owner reports to the user once
 * (avahi-daemon is down) a stage only passes on as an error frame. */
#define LOG_STAGE_ENV "NWS_PIPELINE_STAGE"
extern int log_stage;

void log_init(const char *prog);
/* Prints when level <= log_level: 0 errors, 1 info (-v), 2 debug (-vv). */
void log_at(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_error(...) log_at(0, __VA_ARGS__)
#define log_info(...) log_at(1, __VA_ARGS__)
#define log_debug(...) log_at(2, __VA_ARGS__)
/* log_error, then exit(code). */
void log_fatal(int code, const char *fmt, ...)
    __attribute__((format(printf, 2, 3), noreturn));

/* Remote text (close reasons, host names, instance names, peer ids) made safe to print,
 * the one escaping every tool uses, so a peer cannot forge lines or drive a terminal:
 * each byte of a C0 or C1 control (U+0080 to U+009F), DEL, backslash, a line or paragraph
 * separator or a bidirectional formatting character (U+061C, U+200E, U+200F, U+202A to
 * U+202E, U+2066 to U+2069), and each byte that is not part of well-formed UTF-8, becomes
 * \xHH. Every other character, non-ASCII UTF-8 too ("Küche"), is kept as it is while
 * log_utf8 is set; without it every byte from 0x80 is \xHH as well, since a terminal not
 * in UTF-8 takes a byte inside a character (0x9b in "ě", c4 9b) for a C1 control.
 * Writes at most outlen bytes into out (cut between characters, always terminated) and
 * returns out. */
#define LOG_ESCAPE_MAX(n) (4 * (n) + 1)
const char *log_escape(const char *s, size_t len, char *out, size_t outlen);

/* The emit function every tool gives lws_set_log_level: a libwebsockets line as a -vv
 * line, escaped, since lws may quote what the other end sent. */
void log_lws(int level, const char *line);

/* Says the same thing at most once per burst: returns 1 (and the caller prints) unless
 * the same key was reported less than a second ago. */
int log_once_per_burst(const char *key);

#endif
