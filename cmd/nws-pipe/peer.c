/* The one peer nws-pipe is: stdin lines, chunks or JSON frames become broadcasts or
 * messages; what the channel sends us goes to stdout in the same form. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsontext.h"
#include "keys.h"
#include "log.h"
#include "pipe.h"

#define READ_CHUNK (64 * 1024)
#define OUT_BURST (256 * 1024)
#define SYNC_RESEND_US (2 * LWS_US_PER_SEC)
#define REASON_SHOWN 256   /* bytes of an error frame's reason a log line shows */

/* The most data one frame carries: the rest of max_frame is room for the keys. */
static size_t
data_max(const struct np *np)
{
	return np->max_frame > 4096 ? np->max_frame - 1024 : np->max_frame / 2;
}

static void
out_flush(struct np *np)
{
	while (np->out.len) {
		ssize_t n = write(1, buf_data(&np->out), np->out.len);
		if (n > 0) {
			np->bytes_written += (size_t)n;
			progress_first(np);
			buf_consume(&np->out, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			/* stdout was left non-blocking by someone else: wait like a blocking write. */
			struct pollfd pfd = { .fd = 1, .events = POLLOUT };
			poll(&pfd, 1, -1);
			continue;
		}
		if (errno != EPIPE)
			log_error("cannot write to stdout: %s", strerror(errno));
		buf_reset(&np->out);
		np_stop(np, errno == EPIPE ? NWS_EXIT_OK : NWS_EXIT_FAIL);
		return;
	}
	buf_reset(&np->out);
}

static void
flush_cb(lws_sorted_usec_list_t *sul)
{
	out_flush(lws_container_of(sul, struct np, sul_flush));
}

/* Output goes out once per loop turn (a burst of frames, one write), or at once when
 * it is large: stdout is blocking, so a slow reader slows the whole peer down. */
static void
out_queued(struct np *np)
{
	if (np->out.len >= OUT_BURST)
		out_flush(np);
	else
		lws_sul_schedule(np->cx, 0, &np->sul_flush, flush_cb, 0);
}

static void
out_frame(struct np *np, const struct frame *f)
{
	if (frame_encode(f, FORMAT_JSON, &np->out) < 0)
		log_error("cannot encode a frame for stdout (out of memory?)");
	out_queued(np);
}

static void
out_data(struct np *np, const struct frame *f)
{
	if (np->mode == MODE_JSON) {
		struct frame c = *f;
		c.channel = NULL;   /* the client format: the channel is implied */
		out_frame(np, &c);
		return;
	}
	if (f->data_kind == DATA_NONE)
		return;
	if (buf_append(&np->out, f->data, f->data_len) < 0 ||
	    (np->mode == MODE_LINES && buf_append(&np->out, "\n", 1) < 0))
		log_error("out of memory writing to stdout");
	out_queued(np);
}

static void
out_peer(struct np *np, enum frame_action a, const char *peer)
{
	struct frame f;

	if (np->mode != MODE_JSON)
		return;
	frame_view(&f, a);
	f.source = np->id;
	f.target = (char *)peer;
	out_frame(np, &f);
}

static void
out_error(struct np *np, const char *reason)
{
	struct frame f;

	frame_error(&f, 1, reason);
	out_frame(np, &f);
}

static void
in_pause(struct np *np)
{
	if (np->in_paused)
		return;
	np->in_paused = 1;
	if (np->in_wsi)
		lws_rx_flow_control(np->in_wsi, 0);
}

/* Hands a frame to the backend; stdin pauses when it says its queue is filling. */
static void
send_frame(struct np *np, const struct frame *f)
{
	int rc = np->be->send(np, f);

	if (f->action == ACTION_BROADCAST || f->action == ACTION_MESSAGE)
		np->sent_data = 1;
	if (rc < 0 && log_once_per_burst("nws-pipe: dropped"))
		log_error("the network side is not keeping up; dropped data");
	if (rc != 0)
		in_pause(np);
}

/* One broadcast (or message to --to) of n bytes at p; p[n] is writable and is used
 * for a NUL while the frame is sent. */
static void
send_data(struct np *np, unsigned char *p, size_t n, int text)
{
	struct frame f;
	unsigned char saved = p[n];

	frame_view(&f, np->to ? ACTION_MESSAGE : ACTION_BROADCAST);
	f.channel = np->channel;
	f.source = np->id;
	f.target = (char *)np->to;
	f.data = p;
	f.data_len = n;
	f.data_kind = text && !memchr(p, 0, n) && jsontext_utf8(p, n) ? DATA_TEXT : DATA_BYTES;
	p[n] = 0;
	send_frame(np, &f);
	np->bytes_sent += n;
	progress_first(np);
	p[n] = saved;
}

static void
send_json(struct np *np, unsigned char *line, size_t n)
{
	struct frame f;
	char err[160];

	if (frame_decode(&f, FORMAT_JSON, line, n, err, sizeof err) < 0) {
		out_error(np, err);
		return;
	}
	switch (f.action) {
	case ACTION_STATUS:
		out_peer(np, ACTION_STATUS, np->id);
		break;
	case ACTION_END:
		if (frame_set(&f.channel, np->channel) < 0 || frame_set(&f.source, np->id) < 0)
			log_error("out of memory");
		else if (np->be->send(np, &f) != 0)
			in_pause(np);
		break;
	case ACTION_MESSAGE:
		if (!f.target) {
			out_error(np, "a message needs a \"target\"");
			break;
		}
		/* fall through */
	case ACTION_BROADCAST:
		if (frame_set(&f.channel, np->channel) < 0 || frame_set(&f.source, np->id) < 0)
			log_error("out of memory");
		else
			send_frame(np, &f);
		break;
	default:
		out_error(np, "send \"broadcast\", \"message\", \"end\" or \"status\"");
		break;
	}
	frame_clear(&f);
}

static void
send_line(struct np *np, unsigned char *p, size_t n)
{
	if (n && p[n - 1] == '\r')
		n--;
	if (np->mode == MODE_JSON) {
		if (n)
			send_json(np, p, n);
		return;
	}
	send_data(np, p, n, 1);
}

/* Sends the whole lines in np->in until the backend asks for a pause; with eof, the
 * last one without its '\n' too. A pause leaves the rest for np_drain. */
static void
send_lines(struct np *np, int eof)
{
	size_t max = data_max(np);

	while (!np->in_paused && np->in.len) {
		unsigned char *p = buf_data(&np->in);
		unsigned char *nl = memchr(p, '\n', np->in.len);
		if (nl) {
			send_line(np, p, (size_t)(nl - p));
			buf_consume(&np->in, (size_t)(nl - p) + 1);
		} else if (np->in.len > max) {
			if (log_once_per_burst("nws-pipe: long line"))
				log_error("a line longer than --max-frame allows is sent in pieces");
			if (np->mode == MODE_JSON) {
				out_error(np, "frame too large");
				buf_reset(&np->in);
			} else {
				send_data(np, p, max, 1);
				buf_consume(&np->in, max);
			}
		} else if (eof) {
			if (buf_reserve(&np->in, 1) == 0)
				send_line(np, buf_data(&np->in), np->in.len);
			buf_reset(&np->in);
		} else {
			break;
		}
	}
}

/* Raw mode: whatever is buffered goes, in pieces of at most a frame's data. */
static void
send_chunks(struct np *np)
{
	size_t max = data_max(np);

	while (!np->in_paused && np->in.len) {
		size_t n = np->in.len < max ? np->in.len : max;
		send_data(np, buf_data(&np->in), n, 0);
		buf_consume(&np->in, n);
	}
}

static void
sync_cb(lws_sorted_usec_list_t *sul)
{
	struct np *np = lws_container_of(sul, struct np, sul_timeout);

	if (np->stopping)
		return;
	/* Sent again now and then: one lost to a pipeline restart must not hang us. Any copy
	 * that comes back proves everything before it was handed on. */
	np->be->sync(np, np->sync_token);
	lws_sul_schedule(np->cx, 0, &np->sul_timeout, sync_cb, SYNC_RESEND_US);
}

/* A sender tells its peers that its input has ended (a receiver with --once exits on
 * it). 0 told, or nothing to tell; -1 the backend did not take it: again on drain. */
static int
send_end(struct np *np)
{
	struct frame f;

	if (np->end_sent || !np->sent_data || np->mode == MODE_JSON)
		return 0;
	frame_view(&f, ACTION_END);
	f.channel = np->channel;
	f.source = np->id;
	int rc = np->be->send(np, &f);
	if (rc < 0) {
		in_pause(np);
		return -1;
	}
	np->end_sent = 1;
	return 0;
}

/* With --once a peer that sent nothing is a receiver: it ends with the first sender's
 * end instead of its own. */
static int
is_receiver(const struct np *np)
{
	return np->once && !np->sent_data;
}

static void
input_done(struct np *np)
{
	if (send_end(np) < 0)
		return;
	np->in_eof = 1;
	if (!np->once || np->sync_sent || is_receiver(np))
		return;
	keys_random_hex(np->sync_token, PEER_ID_HEX);
	np->sync_sent = 1;
	sync_cb(&np->sul_timeout);
}

/* Sends what stdin gave as far as the backend takes it; after stdin's end and the last
 * of it, what --once waits for begins. */
static void
pump(struct np *np)
{
	if (np->stopping)
		return;
	if (buf_reserve(&np->in, 1) < 0) {   /* send_data borrows the byte after the data */
		log_error("out of memory reading stdin");
		buf_reset(&np->in);
	}
	if (np->mode == MODE_RAW)
		send_chunks(np);
	else
		send_lines(np, np->in_ended);
	if (!np->in.len)
		buf_reset(&np->in);
	else
		buf_compact(&np->in);
	if (np->in_ended && !np->in.len && !np->in_eof)
		input_done(np);
}

/* One read of stdin, sent on: 0 data, 1 nothing ready, -1 the end (or an error). */
static int
stdin_read(struct np *np)
{
	static unsigned char chunk[READ_CHUNK];
	ssize_t n;

	do
		n = read(0, chunk, READ_CHUNK);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 1;
	if (n < 0)
		log_error("cannot read stdin: %s", strerror(errno));
	if (n > 0 && buf_append(&np->in, chunk, (size_t)n) < 0) {
		log_error("out of memory reading stdin");
		n = -1;
	}
	if (n <= 0)
		np->in_ended = 1;
	pump(np);
	return n > 0 ? 0 : -1;
}

static int
stdin_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	struct np *np = lws_get_opaque_user_data(wsi);

	(void)user;
	(void)in;
	(void)len;
	if (!np)
		return 0;
	switch (reason) {
	case LWS_CALLBACK_RAW_RX_FILE:
		if (np->in_paused || np->stopping)
			return 0;
		return stdin_read(np) < 0 ? -1 : 0;
	case LWS_CALLBACK_RAW_CLOSE_FILE:
		/* lws closes on POLLHUP, which may come with the last bytes still unread: they
		 * are at most a pipe's buffer, read now and sent as the backend takes them. */
		np->in_wsi = NULL;
		while (!np->in_ended && stdin_read(np) == 0)
			;
		np->in_ended = 1;
		pump(np);
		return 0;
	default:
		return 0;
	}
}

const struct lws_protocols np_stdin_protocol = {
	.name = "nws-pipe-stdin",
	.callback = stdin_callback,
};

static void
start_sending(struct np *np)
{
	lws_adopt_desc_t info;

	np->sending = 1;
	lws_sul_cancel(&np->sul_timeout);
	memset(&info, 0, sizeof info);
	info.vh = np->vh;
	info.type = LWS_ADOPT_RAW_FILE_DESC;
	info.fd.filefd = 0;
	info.vh_prot_name = np_stdin_protocol.name;
	info.opaque = np;
	np->in_wsi = lws_adopt_descriptor_vhost_via_info(&info);
	if (!np->in_wsi) {
		np->in_ended = 1;   /* no stdin (closed): nothing to send */
		pump(np);
	}
}

static void
check_wait(struct np *np)
{
	if (np->sending || np->stopping)
		return;
	if ((size_t)np->wait_n > idset_count(&np->peers) ||
	    (np->to && !idset_get(&np->peers, np->to)))
		return;
	start_sending(np);
}

static void
timeout_cb(lws_sorted_usec_list_t *sul)
{
	struct np *np = lws_container_of(sul, struct np, sul_timeout);

	if (np->sending || np->stopping)
		return;
	if (np->to && !idset_get(&np->peers, np->to))
		log_error("peer %s did not join within %.1f s", np->to,
		    (double)np->timeout_ms / 1000);
	else
		log_error("%zu of %ld peers joined within %.1f s", idset_count(&np->peers), np->wait_n,
		    (double)np->timeout_ms / 1000);
	np_stop(np, NWS_EXIT_FAIL);
}

void
np_start(struct np *np)
{
	progress_start(np);
	if (np->timeout_ms >= 0 && (np->wait_n > 0 || np->to))
		lws_sul_schedule(np->cx, 0, &np->sul_timeout, timeout_cb,
		    (lws_usec_t)np->timeout_ms * 1000);
	check_wait(np);
}

static void
peer_join(struct np *np, const char *id)
{
	int rc = idset_add(&np->peers, id, NULL);
	if (rc < 0 && idset_count(&np->peers) == IDSET_PEERS_MAX &&
	    log_once_per_burst("nws-pipe: peers"))
		log_error("more than %d peers: not counting the rest", IDSET_PEERS_MAX);
	if (rc <= 0)
		return;
	if (log_level >= 2) {
		char esc[LOG_ESCAPE_MAX(IDSET_ID_MAX)];
		log_debug("peer %s joined", log_escape(id, strlen(id), esc, sizeof esc));
	}
	out_peer(np, ACTION_CONNECT, id);
	check_wait(np);
}

static void
peer_leave(struct np *np, const char *id)
{
	if (!idset_del(&np->peers, id))
		return;
	if (log_level >= 2) {
		char esc[LOG_ESCAPE_MAX(IDSET_ID_MAX)];
		log_debug("peer %s left", log_escape(id, strlen(id), esc, sizeof esc));
	}
	out_peer(np, ACTION_DISCONNECT, id);
}

/* Discovery is down: said once for the whole pipeline (its stages leave it to us). With
 * our own pipeline no peer can join, so a wait for peers ends here; through nws-proxy the
 * peers of this machine still can. */
static void
net_down(struct np *np, const char *reason)
{
	int waiting = !np->sending && (np->wait_n > 0 || np->to);

	if (np->via_proxy) {
		char esc[LOG_ESCAPE_MAX(REASON_SHOWN)];
		if (!np->net_down_said++)
			log_error("%s", reason ? log_escape(reason, strlen(reason), esc, sizeof esc) :
			    "discovery is unavailable");
		return;
	}
	if (waiting) {
		log_error("cannot reach avahi-daemon%s: start avahi-daemon (peers on the "
		    "network) or nws-proxy (peers on this machine) to wait for peers",
		    np->no_proxy ? "" : ", and no nws-proxy runs on this machine");
		np_stop(np, NWS_EXIT_UNAVAILABLE);
		return;
	}
	if (!np->net_down_said++)
		log_error("cannot reach avahi-daemon%s: no peer can join until it runs (or "
		    "nws-proxy does); waiting", np->no_proxy ? "" :
		    ", and no nws-proxy runs on this machine");
}

void
np_frame(struct np *np, const struct frame *f)
{
	if (np->stopping && f->action != ACTION_BROADCAST && f->action != ACTION_MESSAGE)
		return;
	switch (f->action) {
	case ACTION_CONNECT:
		if (f->target && strcmp(f->target, np->id))
			peer_join(np, f->target);
		break;
	case ACTION_DISCONNECT:
		if (f->target)
			peer_leave(np, f->target);
		break;
	case ACTION_BROADCAST:
		if (!f->source || strcmp(f->source, np->id))
			out_data(np, f);
		break;
	case ACTION_MESSAGE:
		if (f->target && !strcmp(f->target, np->id))
			out_data(np, f);
		break;
	case ACTION_END:
		if (!f->source || !strcmp(f->source, np->id))
			break;
		if (np->mode == MODE_JSON)
			out_data(np, f);
		if (is_receiver(np)) {
			char esc[LOG_ESCAPE_MAX(IDSET_ID_MAX)];
			log_debug("peer %s ended its input",
			    log_escape(f->source, strlen(f->source), esc, sizeof esc));
			np_stop(np, NWS_EXIT_OK);
		}
		break;
	case ACTION_ERROR:
		if (f->code == NWS_EXIT_UNAVAILABLE) {
			net_down(np, f->reason);
		} else if (log_once_per_burst(f->reason ? f->reason : "error")) {
			char esc[LOG_ESCAPE_MAX(REASON_SHOWN)];
			log_error("%s", f->reason ? log_escape(f->reason, strlen(f->reason), esc,
			    sizeof esc) : "the network side reported an error");
		}
		break;
	case ACTION_UNKNOWN:
		if (np->sync_sent && f->action_name && !strcmp(f->action_name, "sync") &&
		    f->source && !strcmp(f->source, np->sync_token))
			np_stop(np, NWS_EXIT_OK);
		break;
	default:
		break;
	}
}

void
np_drain(struct np *np)
{
	if (!np->in_paused)
		return;
	np->in_paused = 0;
	pump(np);
	if (np->in_wsi && !np->in_paused)
		lws_rx_flow_control(np->in_wsi, 1);
}

void
np_stop(struct np *np, int code)
{
	if (np->stopping)
		return;
	np->stopping = 1;
	np->exit_code = code;
	lws_sul_cancel(&np->sul_timeout);
	in_pause(np);
	out_flush(np);
	progress_end(np);   /* the transfer is over; the backend may take a while to stop */
	if (np->be)
		np->be->stop(np);
	else
		np_finished(np);
}

void
np_finished(struct np *np)
{
	out_flush(np);
	progress_end(np);
	np->finished = 1;
	lws_cancel_service(np->cx);
}
