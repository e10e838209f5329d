#include "listen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define LISTEN_BACKLOG 128
/* Connections taken per wake-up, so a flood of them cannot hold the loop. */
#define LISTEN_ACCEPT_BURST 64

/* Fills sa from addr; 0, or -1 when addr is no IP literal. */
static int
listen_addr(const char *addr, int port, struct sockaddr_storage *sa, socklen_t *salen)
{
	struct sockaddr_in *s4 = (struct sockaddr_in *)sa;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)sa;
	char ip[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
	size_t n = strlen(addr);
	char *pct;

	memset(sa, 0, sizeof *sa);
	if (n >= 2 && addr[0] == '[' && addr[n - 1] == ']') {
		addr++;
		n -= 2;
	}
	if (n >= sizeof ip)
		return -1;
	memcpy(ip, addr, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, &s4->sin_addr) == 1) {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*salen = sizeof *s4;
		return 0;
	}
	if ((pct = strchr(ip, '%'))) {
		*pct++ = '\0';
		if (!(s6->sin6_scope_id = if_nametoindex(pct)))
			return -1;
	}
	if (inet_pton(AF_INET6, ip, &s6->sin6_addr) != 1)
		return -1;
	s6->sin6_family = AF_INET6;
	s6->sin6_port = htons((uint16_t)port);
	*salen = sizeof *s6;
	return 0;
}

int
listen_bind(const char *addr, int port, int *bound, char *err, size_t errlen)
{
	struct sockaddr_storage sa;
	socklen_t salen;
	int fd, one = 1, v6only;

	if (addr && *addr) {
		if (listen_addr(addr, port, &sa, &salen) < 0) {
			snprintf(err, errlen, "%s is not an IP address of this machine", addr);
			return -1;
		}
		v6only = 1;
	} else {
		/* Every address: one IPv6 socket that takes IPv4 too. */
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&sa;
		memset(&sa, 0, sizeof sa);
		s6->sin6_family = AF_INET6;
		s6->sin6_addr = in6addr_any;
		s6->sin6_port = htons((uint16_t)port);
		salen = sizeof *s6;
		v6only = 0;
	}
	fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0 && !(addr && *addr) && errno == EAFNOSUPPORT) {
		/* No IPv6 on this machine: every IPv4 address, then. */
		struct sockaddr_in *s4 = (struct sockaddr_in *)&sa;
		memset(&sa, 0, sizeof sa);
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		salen = sizeof *s4;
		fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	}
	if (fd < 0) {
		snprintf(err, errlen, "cannot make a socket: %s", strerror(errno));
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	if (sa.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, sizeof v6only);
	if (bind(fd, (struct sockaddr *)&sa, salen) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	salen = sizeof sa;
	if (getsockname(fd, (struct sockaddr *)&sa, &salen) < 0) {
		snprintf(err, errlen, "%s", strerror(errno));
		close(fd);
		return -1;
	}
	*bound = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port :
	    ((struct sockaddr_in *)&sa)->sin_port);
	return fd;
}

/* The port of sa, and whether its address is the wildcard. */
static int
listen_port_of(const struct sockaddr_storage *sa, int *any)
{
	if (sa->ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		*any = IN6_IS_ADDR_UNSPECIFIED(&s6->sin6_addr);
		return ntohs(s6->sin6_port);
	}
	const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
	*any = s4->sin_addr.s_addr == htonl(INADDR_ANY);
	return ntohs(s4->sin_port);
}

int
listen_reaches(int fd, const char *address, int port)
{
	struct sockaddr_storage own, sa;
	socklen_t ownlen = sizeof own, salen;
	int any, fd2, mine;

	if (getsockname(fd, (struct sockaddr *)&own, &ownlen) < 0 ||
	    listen_addr(address, 0, &sa, &salen) < 0 || listen_port_of(&own, &any) != port)
		return 0;
	if (!any) {
		/* Bound to one address: that one only (a v6 socket bound to one address is
		 * v6-only, see listen_bind). */
		if (own.ss_family != sa.ss_family)
			return 0;
		if (sa.ss_family == AF_INET)
			return ((struct sockaddr_in *)&own)->sin_addr.s_addr ==
			    ((struct sockaddr_in *)&sa)->sin_addr.s_addr;
		return IN6_ARE_ADDR_EQUAL(&((struct sockaddr_in6 *)&own)->sin6_addr,
		    &((struct sockaddr_in6 *)&sa)->sin6_addr);
	}
	/* Bound to every address: any address of this machine, which only a local address
	 * can be bound to. */
	if ((fd2 = socket(sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	mine = bind(fd2, (struct sockaddr *)&sa, salen) == 0;
	close(fd2);
	return mine;
}

static void
listen_accept(struct lws *wsi)
{
	int lfd = lws_get_socket_fd(wsi);
	struct lws_vhost *vh = lws_get_vhost(wsi);
	int one = 1;

	for (int i = 0; i < LISTEN_ACCEPT_BURST; i++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;   /* EAGAIN, or a connection that died before we took it */
		/* lws sets options only on sockets it accepts or dials itself, so the accepting
		 * end of a link had Nagle on: a frame written while the one before was still
		 * unacknowledged (one-way traffic, whose ACKs the peer delays) waited for that
		 * ACK, up to a delayed-ACK timeout. Each write is a whole burst already. */
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		/* lws closes fd itself when it cannot adopt it. */
		lws_adopt_socket_vhost(vh, fd);
	}
	/* More may be waiting: poll says so again at once. */
}

static int
listen_callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
    size_t len)
{
	(void)user;
	(void)in;
	(void)len;
	if (reason == LWS_CALLBACK_RAW_RX_FILE)
		listen_accept(wsi);
	return 0;
}

const struct lws_protocols listen_protocol = {
	.name = "nws-listen",
	.callback = listen_callback,
};

int
listen_adopt(struct lws_vhost *vh, int fd)
{
	lws_adopt_desc_t info;

	memset(&info, 0, sizeof info);
	info.vh = vh;
	info.type = LWS_ADOPT_RAW_FILE_DESC;
	info.fd.filefd = fd;
	info.vh_prot_name = listen_protocol.name;
	return lws_adopt_descriptor_vhost_via_info(&info) ? 0 : -1;
}
