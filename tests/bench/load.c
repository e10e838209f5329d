/* nws-load: the benchmarks' WebSocket load generator (tests/README.md). A small RFC 6455
 * client over plain sockets, so that the generator costs far less per message than what
 * it measures: frames are built and parsed in place, many per write and per read, and the
 * sender never waits for an echo.
 *
 *   nws-load send URL [-n N] [-r RATE] [-s SIZE] [-t SECS] [--raw] [--wait]
 *   nws-load recv URL [-n N] [-t SECS] [--idle SECS] [--lowat BYTES]
 *   nws-load relay [-a ADDR] [-p PORT] [-t SECS]   a C one-hop relay (the ceiling)
 *   nws-load clock                        prints CLOCK_MONOTONIC in ns
 *
 * Each payload is SIZE bytes of text, "#<seq>.<CLOCK_MONOTONIC ns>." padded with 'x', sent
 * as the nws-proxy broadcast {"action":"broadcast","data":"<payload>"}, or as-is with
 * --raw (for a plain relay). The receiver finds the '#' in whatever arrives, so it reads
 * both forms, and reports one-way latency from the embedded time: sender and receiver run
 * on one machine, where CLOCK_MONOTONIC is one clock in every network namespace.
 *
 * Lines on stdout: "ready" once upgraded, "peer" when a recv sees an nws connect event,
 * and a final JSON object with the figures. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <libwebsockets.h>

#define RX_CAP   (4u << 20)
#define TX_BATCH 512                    /* messages per write when sending flat out */
#define TX_BATCH_BYTES (1u << 20)       /* ... and at most this many bytes of them */
#define MAX_N    20000000L
#define MAX_SIZE (1u << 20)             /* 1 MiB broadcasts (bench_e2e.py) */

static const char *prog = "nws-load";

static void
die(const char *fmt, const char *arg)
{
	fprintf(stderr, "%s: ", prog);
	fprintf(stderr, fmt, arg);
	fputc('\n', stderr);
	exit(1);
}

static int64_t
now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint32_t rng = 2463534242u;

static uint32_t
rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 17;
	rng ^= rng << 5;
	return rng;
}

/* The connection: one socket, a receive buffer parsed in place, a send buffer. */
struct conn {
	int fd;
	unsigned char *rx;
	size_t roff, rlen;
	unsigned char *tx;
	size_t toff, tlen, tcap;
	int closed;             /* 1: we sent a close, 2: the server did */
	int code;               /* the server's close code and reason */
	char reason[124];
};

static void
tx_need(struct conn *c, size_t n)
{
	if (c->toff == c->tlen)
		c->toff = c->tlen = 0;
	if (c->tlen + n <= c->tcap)
		return;
	if (c->toff) {
		memmove(c->tx, c->tx + c->toff, c->tlen - c->toff);
		c->tlen -= c->toff;
		c->toff = 0;
	}
	if (c->tlen + n > c->tcap) {
		size_t cap = c->tcap ? c->tcap : 1u << 16;
		while (cap < c->tlen + n)
			cap *= 2;
		if (cap > (64u << 20))
			die("send buffer past 64 MiB (%s)", "peer stopped reading?");
		if (!(c->tx = realloc(c->tx, cap)))
			die("out of memory%s", "");
		c->tcap = cap;
	}
}

/* Appends one frame: masked (client to server) or not (relay to client). */
static void
frame_put(struct conn *c, int opcode, const void *p, size_t n, int masked)
{
	unsigned char *o;
	size_t i;

	tx_need(c, n + 14);
	o = c->tx + c->tlen;
	*o++ = 0x80 | (unsigned char)opcode;
	if (n < 126) {
		*o++ = (masked ? 0x80 : 0) | (unsigned char)n;
	} else if (n < 65536) {
		*o++ = (masked ? 0x80 : 0) | 126;
		*o++ = (unsigned char)(n >> 8);
		*o++ = (unsigned char)n;
	} else {
		*o++ = (masked ? 0x80 : 0) | 127;
		for (i = 0; i < 8; i++)
			*o++ = (unsigned char)((uint64_t)n >> (56 - 8 * i));
	}
	if (masked) {
		uint32_t k = rnd();
		unsigned char m[4];
		memcpy(m, &k, 4);
		memcpy(o, m, 4);
		o += 4;
		/* Eight bytes a step, as a browser's masking is: a byte loop here was a tenth of
		 * a 1 MiB run's CPU, taken from the cores the relay under test shares. */
		uint64_t k8 = (uint64_t)k << 32 | k, w;
		for (i = 0; i + 8 <= n; i += 8) {
			memcpy(&w, (const unsigned char *)p + i, 8);
			w ^= k8;
			memcpy(o + i, &w, 8);
		}
		for (; i < n; i++)
			o[i] = ((const unsigned char *)p)[i] ^ m[i & 3];
	} else {
		memcpy(o, p, n);
	}
	c->tlen = (size_t)(o + n - c->tx);
}

/* Writes what is queued; 0 when all is out, 1 when the socket is full, -1 on error. */
static int
tx_flush(struct conn *c)
{
	while (c->toff < c->tlen) {
		ssize_t w = write(c->fd, c->tx + c->toff, c->tlen - c->toff);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 1 : -1;
		}
		c->toff += (size_t)w;
	}
	c->toff = c->tlen = 0;
	return 0;
}

/* Reads what is available; 0 on EOF or error, else 1. */
static int
rx_fill(struct conn *c)
{
	ssize_t r;

	if (c->roff) {
		memmove(c->rx, c->rx + c->roff, c->rlen - c->roff);
		c->rlen -= c->roff;
		c->roff = 0;
	}
	if (c->rlen == RX_CAP)
		die("a frame larger than the receive buffer (%s)", "4 MiB");
	r = read(c->fd, c->rx + c->rlen, RX_CAP - c->rlen);
	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return 1;
	if (r <= 0)
		return 0;
	c->rlen += (size_t)r;
	return 1;
}

/* The next whole frame in rx, unmasked in place: its opcode, or -1 if none is whole. */
static int
frame_next(struct conn *c, unsigned char **p, size_t *n)
{
	unsigned char *b = c->rx + c->roff;
	size_t have = c->rlen - c->roff, hl = 2, len, i;
	int masked;

	if (have < 2)
		return -1;
	masked = b[1] & 0x80;
	len = b[1] & 0x7f;
	if (len == 126) {
		if (have < 4)
			return -1;
		len = (size_t)b[2] << 8 | b[3];
		hl = 4;
	} else if (len == 127) {
		if (have < 10)
			return -1;
		for (len = 0, i = 0; i < 8; i++)
			len = len << 8 | b[2 + i];
		hl = 10;
	}
	if (masked)
		hl += 4;
	if (len > RX_CAP - 14)
		die("a frame larger than the receive buffer (%s)", "4 MiB");
	if (have < hl + len)
		return -1;
	*p = b + hl;
	*n = len;
	if (masked)
		for (i = 0; i < len; i++)
			(*p)[i] ^= b[hl - 4 + (i & 3)];
	c->roff += hl + len;
	return b[0] & 0x0f;
}

static void
conn_init(struct conn *c, int fd)
{
	memset(c, 0, sizeof *c);
	c->fd = fd;
	if (!(c->rx = malloc(RX_CAP)))
		die("out of memory%s", "");
}

static void
nonblock(int fd)
{
	int one = 1, buf = 4 << 20;

	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buf, sizeof buf);
}

/* Connects to ws://HOST:PORT/PATH and upgrades; extra bytes after the 101 stay in rx. */
static void
ws_connect(struct conn *c, const char *url)
{
	char host[256], path[1024], req[1536], port[8] = "80", key[32];
	unsigned char nonce[16];
	const char *h, *slash, *colon;
	struct addrinfo hints, *ai;
	struct timeval tv = { 10, 0 };
	unsigned char *end = NULL;
	int fd, i;

	if (strncmp(url, "ws://", 5))
		die("%s: only ws:// URLs", url);
	h = url + 5;
	slash = strchr(h, '/');
	if (!slash)
		slash = h + strlen(h);
	colon = memchr(h, ':', (size_t)(slash - h));
	if ((colon ? colon : slash) - h >= (long)sizeof host || strlen(slash) >= sizeof path - 1)
		die("%s: URL too long", url);
	snprintf(host, sizeof host, "%.*s", (int)((colon ? colon : slash) - h), h);
	if (colon)
		snprintf(port, sizeof port, "%.*s", (int)(slash - colon - 1), colon + 1);
	snprintf(path, sizeof path, "%s", *slash ? slash : "/");

	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, port, &hints, &ai))
		die("cannot resolve %s", host);
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
		die("cannot connect to %s (is the server running?)", url);
	freeaddrinfo(ai);
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);

	for (i = 0; i < 16; i++)
		nonce[i] = (unsigned char)rnd();
	lws_b64_encode_string((char *)nonce, 16, key, sizeof key);
	/* Host localhost:PORT: nws-proxy answers 403 to any other name (nws(7), THE LOCAL
	 * WEBSOCKET PROTOCOL). */
	snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: localhost:%s\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
	    "Sec-WebSocket-Version: 13\r\n\r\n", path, port, key);
	if (write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		die("cannot send the upgrade to %s", url);

	conn_init(c, fd);
	while (!end) {
		ssize_t r = read(fd, c->rx + c->rlen, 8192 - c->rlen);
		if (r <= 0)
			die("%s closed or timed out during the upgrade", url);
		c->rlen += (size_t)r;
		c->rx[c->rlen] = 0;
		end = (unsigned char *)strstr((char *)c->rx, "\r\n\r\n");
		if (!end && c->rlen >= 8192)
			die("%s: upgrade answer too long", url);
	}
	if (strncmp((char *)c->rx, "HTTP/1.1 101", 12)) {
		*end = 0;
		fprintf(stderr, "%s: %s refused the upgrade:\n%s\n", prog, url, (char *)c->rx);
		exit(1);
	}
	c->roff = (size_t)(end + 4 - c->rx);
	nonblock(fd);
}

/* Answers pings, notes a close; returns the opcode of a data frame, or -1. */
static int
control(struct conn *c, int op, unsigned char *p, size_t n)
{
	if (op == 0x9) {
		frame_put(c, 0xA, p, n, 1);
	} else if (op == 0x8) {
		if (!c->closed)
			frame_put(c, 0x8, p, n < 2 ? n : 2, 1);
		c->closed = 2;
		if (n >= 2) {
			size_t k = n - 2 < sizeof c->reason - 1 ? n - 2 : sizeof c->reason - 1, i;
			c->code = p[0] << 8 | p[1];
			for (i = 0; i < k; i++)
				c->reason[i] = p[2 + i] >= ' ' && p[2 + i] != '"' &&
				    p[2 + i] != '\\' && p[2 + i] < 127 ? (char)p[2 + i] : '?';
			c->reason[k] = 0;
		}
	}
	return op < 8 ? op : -1;
}

struct run {
	long n;                 /* messages to send / expect */
	double rate;            /* msgs/s, 0 = as fast as possible */
	size_t size;
	double secs;            /* whole run deadline */
	double idle;            /* recv: stop when nothing came for this long */
	int raw;
	int wait;               /* send: wait for a line on stdin before sending */
	int lowat;              /* recv: wake up for this many bytes (or the 100 ms tick) */
};

/* This process's own cost as it exits: CPU seconds and wake-ups (voluntary context
 * switches), as the benchmark reads them from /proc for the processes it measures. */
static void
print_cost(const struct rusage *ru)
{
	printf("\"cpu_s\":%.3f,\"wakeups\":%ld", (double)(ru->ru_utime.tv_sec +
	    ru->ru_stime.tv_sec) + (ru->ru_utime.tv_usec + ru->ru_stime.tv_usec) / 1e6,
	    ru->ru_nvcsw);
}

static size_t
payload(char *buf, size_t size, long seq)
{
	int k = snprintf(buf, size + 1, "#%ld.%" PRId64 ".", seq, now_ns());
	if ((size_t)k < size)
		memset(buf + k, 'x', size - (size_t)k);
	return size;
}

static void
queue_message(struct conn *c, const struct run *r, long seq)
{
	static char msg[MAX_SIZE + 64];
	static const char pre[] = "{\"action\":\"broadcast\",\"data\":\"";
	size_t n;

	if (r->raw) {
		n = payload(msg, r->size, seq);
	} else {
		memcpy(msg, pre, sizeof pre - 1);
		n = sizeof pre - 1 + payload(msg + sizeof pre - 1, r->size, seq);
		msg[n++] = '"';
		msg[n++] = '}';
	}
	frame_put(c, 0x1, msg, n, 1);
}

/* Reads and drops what the server sends, answering pings; 0 once it has closed. */
static int
drain(struct conn *c)
{
	unsigned char *p;
	size_t n;
	int op;

	if (!rx_fill(c))
		return 0;
	while ((op = frame_next(c, &p, &n)) >= 0)
		control(c, op, p, n);
	return c->closed != 2;
}

static void
wait_stdin(struct conn *c, int64_t deadline)
{
	char line[64];

	for (;;) {
		struct pollfd pf[2] = { { 0, POLLIN, 0 }, { c->fd, POLLIN, 0 } };
		int ms = (int)((deadline - now_ns()) / 1000000);
		if (ms <= 0)
			die("no go on stdin before the deadline%s", "");
		if (poll(pf, 2, ms) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if (pf[1].revents && !drain(c))
			die("the server closed before the start%s", "");
		tx_flush(c);
		if (pf[0].revents) {
			if (!fgets(line, sizeof line, stdin))
				die("stdin closed before the start%s", "");
			return;
		}
	}
}

static int
run_send(struct conn *c, const struct run *r)
{
	struct rusage ru;
	int64_t t0, deadline, t, last = 0;
	long sent = 0;
	int full = 0, err = 0;

	deadline = now_ns() + (int64_t)(r->secs * 1e9);
	if (r->wait)
		wait_stdin(c, deadline);
	t0 = now_ns();
	while (sent < r->n && (t = now_ns()) < deadline) {
		struct pollfd pf = { c->fd, POLLIN, 0 };
		struct timespec ts = { 0, 0 }, *tmo = NULL;
		long due = r->n;

		if (r->rate > 0) {
			due = (long)((double)(t - t0) * r->rate / 1e9) + 1;
			if (due > r->n)
				due = r->n;
		}
		if (!full) {
			/* New messages only once the last batch is out: their times stay true. */
			long k = due - sent, most = (long)(TX_BATCH_BYTES / r->size);
			if (most > TX_BATCH)
				most = TX_BATCH;
			if (k > (most > 0 ? most : 1))
				k = most > 0 ? most : 1;
			while (k-- > 0)
				queue_message(c, r, sent++);
			if ((full = tx_flush(c)) < 0) {
				err = 1;
				break;
			}
			last = now_ns();
		}
		if (full) {
			pf.events |= POLLOUT;
		} else if (sent < r->n && r->rate > 0) {
			int64_t next = t0 + (int64_t)((double)sent * 1e9 / r->rate);
			int64_t d = next - now_ns();
			if (d > 0) {
				ts.tv_sec = d / 1000000000;
				ts.tv_nsec = d % 1000000000;
			}
			tmo = &ts;
		} else {
			tmo = &ts;
		}
		if (ppoll(&pf, 1, tmo, NULL) < 0 && errno != EINTR)
			die("poll: %s", strerror(errno));
		if ((pf.revents & (POLLIN | POLLHUP | POLLERR)) && !drain(c)) {
			err = 1;
			break;
		}
		if (pf.revents & POLLOUT) {
			if ((full = tx_flush(c)) < 0) {
				err = 1;
				break;
			}
			last = now_ns();
		}
	}
	/* Close cleanly: our close frame follows the data, and unread input left at close()
	 * would make the kernel reset the connection and drop what is still queued. */
	if (!err) {
		frame_put(c, 0x8, "\x03\xe8", 2, 1);
		c->closed = 1;
		deadline = now_ns() + 30 * (int64_t)1000000000;
		while (now_ns() < deadline) {
			struct pollfd pf = { c->fd, POLLIN | (c->toff < c->tlen ? POLLOUT : 0), 0 };
			if (poll(&pf, 1, 100) < 0 && errno != EINTR)
				break;
			if (tx_flush(c) < 0)
				break;
			if ((pf.revents & (POLLIN | POLLHUP | POLLERR)) && !drain(c))
				break;
		}
	}
	t = (last ? last : now_ns()) - t0;
	printf("{\"mode\":\"send\",\"sent\":%ld,\"elapsed_s\":%.6f,\"rate\":%.1f,\"error\":%s,",
	    sent, t / 1e9, t > 0 ? sent * 1e9 / t : 0.0, err ? "true" : "false");
	getrusage(RUSAGE_SELF, &ru);
	print_cost(&ru);
	printf("}\n");
	return err || sent < r->n;
}

static int
cmp64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static int64_t
pct(const int64_t *v, long n, double q)
{
	long i = (long)(q * (double)(n - 1) + 0.5);
	return n ? v[i] : 0;
}

/* What a receiver saw. */
struct seen {
	int64_t *lat;           /* one-way latency of each message, ns */
	long got, last_seq, reordered;
	long gaps, gap_at, gap_len;     /* lost messages: where the first gap is */
	long connects;          /* nws connect events: more than one, a link came back */
	long disconnects;
	int64_t first_tx, last_rx;
};

static void
seen_message(struct seen *s, const struct run *r, unsigned char *p, size_t n, int64_t t)
{
	unsigned char *h = memchr(p, '#', n);
	long seq;
	int64_t ts;
	char *e;

	if (!h) {
		if (memmem(p, n, "\"disconnect\"", 12)) {
			s->disconnects++;
		} else if (memmem(p, n, "\"connect\"", 9) && !s->connects++) {
			printf("peer\n");
			fflush(stdout);
		}
		return;
	}
	seq = strtol((char *)h + 1, &e, 10);
	ts = strtoll(e + 1, NULL, 10);
	if (seq <= s->last_seq) {
		s->reordered++;
	} else if (seq > s->last_seq + 1 && !s->gaps++) {
		s->gap_at = s->last_seq + 1;
		s->gap_len = seq - s->last_seq - 1;
	}
	s->last_seq = seq;
	if (!s->got || ts < s->first_tx)
		s->first_tx = ts;
	if (s->got < r->n)
		s->lat[s->got++] = t - ts;
	s->last_rx = t;
}

static int
run_recv(struct conn *c, const struct run *r)
{
	struct seen s = { .last_seq = -1, .gap_at = -1 };
	struct timeval tick = { 0, 100000 };
	struct rusage ru;
	int64_t deadline, t;
	int lowat = r->lowat;
	unsigned char *p;
	size_t n;
	int op;

	if (!(s.lat = malloc(sizeof *s.lat * (size_t)r->n)))
		die("out of memory%s", "");
	/* A blocking read with a timeout: one system call per wake-up, where poll and read
	 * would be two (a receiver fed one message per TCP segment wakes once for each). */
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tick, sizeof tick);
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tick, sizeof tick);
	if (lowat > 1)
		setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
	deadline = now_ns() + (int64_t)(r->secs * 1e9);
	while (s.got < r->n && (t = now_ns()) < deadline && c->closed != 2) {
		if (s.got && t - s.last_rx > (int64_t)(r->idle * 1e9))
			break;
		if (lowat > 1 && (r->n - s.got) * 64 < lowat) {
			/* The last few messages: do not let them wait for the tick. */
			lowat = 1;
			setsockopt(c->fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
		}
		if (!rx_fill(c))
			break;
		t = now_ns();
		while ((op = frame_next(c, &p, &n)) >= 0)
			if (control(c, op, p, n) > 0)
				seen_message(&s, r, p, n, t);
		if (tx_flush(c) < 0)
			break;
	}
	getrusage(RUSAGE_SELF, &ru);    /* the cost of receiving, not of the sort below */
	qsort(s.lat, (size_t)s.got, sizeof *s.lat, cmp64);
	t = s.last_rx - s.first_tx;
	printf("{\"mode\":\"recv\",\"received\":%ld,\"expected\":%ld,\"reordered\":%ld,"
	    "\"gaps\":%ld,\"first_gap\":%ld,\"first_gap_len\":%ld,\"connects\":%ld,"
	    "\"disconnects\":%ld,\"closed\":%d,\"close_code\":%d,\"close_reason\":\"%s\",",
	    s.got, r->n, s.reordered, s.gaps, s.gap_at, s.gap_len, s.connects, s.disconnects,
	    c->closed == 2, c->code, c->reason);
	printf("\"elapsed_s\":%.6f,\"rate\":%.1f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
	    "\"max_us\":%.1f,", t / 1e9,
	    s.got > 1 && t > 0 ? s.got * 1e9 / t : 0.0, pct(s.lat, s.got, 0.5) / 1e3,
	    pct(s.lat, s.got, 0.99) / 1e3, s.got ? s.lat[s.got - 1] / 1e3 : 0.0);
	print_cost(&ru);
	printf("}\n");
	free(s.lat);
	return s.got < r->n;
}

/* The C relay: what relay.js does, as cheaply as can be, to show the generator's own
 * ceiling. One epoll loop; every client's frames go to every other client of its path. */
struct rclient {
	struct conn c;
	char path[256];
	int up;
	struct rclient *next;
};

static struct rclient *clients;

static void
relay_drop(int ep, struct rclient *rc)
{
	struct rclient **pp;

	for (pp = &clients; *pp; pp = &(*pp)->next)
		if (*pp == rc) {
			*pp = rc->next;
			break;
		}
	epoll_ctl(ep, EPOLL_CTL_DEL, rc->c.fd, NULL);
	close(rc->c.fd);
	free(rc->c.rx);
	free(rc->c.tx);
	free(rc);
}

static int
relay_upgrade(struct rclient *rc)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char *end, *k, *ke, buf[128], acc[64], resp[256];
	unsigned char sha[20];

	rc->c.rx[rc->c.rlen] = 0;
	if (!(end = strstr((char *)rc->c.rx, "\r\n\r\n")))
		return rc->c.rlen < 8192 ? 0 : -1;
	if (sscanf((char *)rc->c.rx, "GET %255s ", rc->path) != 1 ||
	    !(k = strcasestr((char *)rc->c.rx, "\r\nSec-WebSocket-Key:")))
		return -1;
	k += 20;
	while (*k == ' ')
		k++;
	ke = strstr(k, "\r\n");
	if (ke - k > 64)
		return -1;
	snprintf(buf, sizeof buf, "%.*s%s", (int)(ke - k), k, guid);
	lws_SHA1((unsigned char *)buf, strlen(buf), sha);
	lws_b64_encode_string((char *)sha, 20, acc, sizeof acc);
	snprintf(resp, sizeof resp, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", acc);
	tx_need(&rc->c, strlen(resp));
	memcpy(rc->c.tx + rc->c.tlen, resp, strlen(resp));
	rc->c.tlen += strlen(resp);
	rc->c.roff = (size_t)(end + 4 - (char *)rc->c.rx);
	rc->up = 1;
	return 1;
}

static void
relay_want(int ep, struct rclient *rc)
{
	struct epoll_event ev = { EPOLLIN | (rc->c.toff < rc->c.tlen ? EPOLLOUT : 0), { rc } };
	epoll_ctl(ep, EPOLL_CTL_MOD, rc->c.fd, &ev);
}

static int
relay_input(int ep, struct rclient *rc)
{
	struct rclient *o;
	unsigned char *p;
	size_t n;
	int op, closing = 0;

	if (!rx_fill(&rc->c))
		return -1;
	if (!rc->up && relay_upgrade(rc) <= 0)
		return rc->c.rlen < 8192 ? 0 : -1;
	while ((op = frame_next(&rc->c, &p, &n)) >= 0) {
		if (op == 0x8) {
			closing = 1;
			break;
		}
		if (op == 0x1 || op == 0x2) {
			for (o = clients; o; o = o->next)
				if (o != rc && o->up && !strcmp(o->path, rc->path))
					frame_put(&o->c, op, p, n, 0);
		} else {
			control(&rc->c, op, p, n);
		}
	}
	/* One write per peer per read burst. */
	for (o = clients; o; o = o->next) {
		if (o->c.toff < o->c.tlen && tx_flush(&o->c) >= 0)
			relay_want(ep, o);
	}
	return closing ? -1 : 0;
}

static int
run_relay(const char *addr, int port, double secs)
{
	int64_t deadline = now_ns() + (int64_t)(secs * 1e9);
	struct sockaddr_in sa;
	struct epoll_event ev, evs[64];
	int lfd, ep, one = 1, i, k;

	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1)
		die("%s: not an IPv4 address", addr);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 64) < 0)
		die("cannot listen: %s", strerror(errno));
	socklen_t sl = sizeof sa;
	getsockname(lfd, (struct sockaddr *)&sa, &sl);
	printf("listening %d\n", ntohs(sa.sin_port));
	fflush(stdout);
	ep = epoll_create1(EPOLL_CLOEXEC);
	ev.events = EPOLLIN;
	ev.data.ptr = NULL;
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	while (now_ns() < deadline) {
		k = epoll_wait(ep, evs, 64, 100);
		for (i = 0; i < k; i++) {
			struct rclient *rc = evs[i].data.ptr;
			if (!rc) {
				int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
				if (fd < 0)
					continue;
				nonblock(fd);
				if (!(rc = calloc(1, sizeof *rc)))
					die("out of memory%s", "");
				conn_init(&rc->c, fd);
				rc->next = clients;
				clients = rc;
				ev.events = EPOLLIN;
				ev.data.ptr = rc;
				epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
				continue;
			}
			if ((evs[i].events & EPOLLOUT) && tx_flush(&rc->c) < 0) {
				relay_drop(ep, rc);
				continue;
			}
			if ((evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)) &&
			    relay_input(ep, rc) < 0) {
				relay_drop(ep, rc);
				continue;
			}
			relay_want(ep, rc);
		}
	}
	return 0;
}

static const char usage[] =
    "usage: nws-load send URL [-n N] [-r RATE] [-s SIZE] [-t SECS] [--raw] [--wait]\n"
    "       nws-load recv URL [-n N] [-t SECS] [--idle SECS] [--lowat BYTES]\n"
    "       nws-load relay [-a ADDR] [-p PORT] [-t SECS]   (exits after SECS)\n"
    "       nws-load clock\n"
    "  -n N        messages to send or expect (default 1000)\n"
    "  -r RATE     messages per second (default: as fast as possible)\n"
    "  -s SIZE     payload bytes (default 100)\n"
    "  -t SECS     give up after SECS (default 60)\n"
    "  --idle SECS recv: stop when nothing arrived for SECS after the first (default 3)\n"
    "  --lowat BYTES  recv: wake up only once BYTES are in (fewer wake-ups flat out;\n"
    "              it delays messages, so not for latency runs)\n"
    "  --raw       send the payload as-is, not as an nws broadcast\n"
    "  --wait      send: connect, print ready, start on a line on stdin\n";

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "raw", no_argument, 0, 'R' },
		{ "wait", no_argument, 0, 'W' },
		{ "idle", required_argument, 0, 'I' },
		{ "lowat", required_argument, 0, 'L' },
		{ 0, 0, 0, 0 },
	};
	struct run r = { 1000, 0, 100, 60, 3, 0, 0, 0 };
	const char *mode, *addr = "127.0.0.1";
	struct conn c;
	int o, port = 0;

	if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2;
	}
	mode = argv[1];
	optind = 2;
	while ((o = getopt_long(argc, argv, "n:r:s:t:a:p:", longopts, NULL)) != -1) {
		switch (o) {
		case 'n': r.n = strtol(optarg, NULL, 10); break;
		case 'r': r.rate = strtod(optarg, NULL); break;
		case 's': r.size = (size_t)strtoul(optarg, NULL, 10); break;
		case 't': r.secs = strtod(optarg, NULL); break;
		case 'I': r.idle = strtod(optarg, NULL); break;
		case 'L': r.lowat = atoi(optarg); break;
		case 'R': r.raw = 1; break;
		case 'W': r.wait = 1; break;
		case 'a': addr = optarg; break;
		case 'p': port = atoi(optarg); break;
		default: fputs(usage, stderr); return 1;
		}
	}
	if (r.n < 1 || r.n > MAX_N || r.size < 40 || r.size > MAX_SIZE || r.secs <= 0)
		die("%s", "-n wants 1..20000000, -s 40..65536, -t a positive time");
	signal(SIGPIPE, SIG_IGN);
	rng ^= (uint32_t)now_ns() ^ (uint32_t)getpid() << 16;
	if (!strcmp(mode, "clock")) {
		printf("%" PRId64 "\n", now_ns());
		return 0;
	}
	if (!strcmp(mode, "relay"))
		return run_relay(addr, port, r.secs);
	if (optind >= argc)
		die("%s wants a ws:// URL", mode);
	if (strcmp(mode, "send") && strcmp(mode, "recv"))
		die("%s: mode is send, recv, relay or clock", mode);
	ws_connect(&c, argv[optind]);
	printf("ready\n");
	fflush(stdout);
	o = !strcmp(mode, "send") ? run_send(&c, &r) : run_recv(&c, &r);
	fflush(stdout);
	close(c.fd);
	free(c.rx);
	free(c.tx);
	return o;
}
