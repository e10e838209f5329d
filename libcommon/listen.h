/* listen: a TCP listening socket bound to exactly the address asked for, and its adoption
 * into a libwebsockets vhost. lws 4.1 binds a vhost's own listener to a `::` socket even
 * for an IPv4 --listen address (the address lands in sin6_flowinfo), so the socket would
 * take connections on every interface; a server that must listen on one address binds it
 * here, creates its vhost with CONTEXT_PORT_NO_LISTEN_SERVER, and hands the connections it
 * accepts to lws as if lws had accepted them. */
#ifndef NWS_LISTEN_H
#define NWS_LISTEN_H

#include <stddef.h>
#include <libwebsockets.h>

/* A non-blocking listening socket on addr (an IPv4 or IPv6 literal, [v6] and fe80::x%if
 * allowed; NULL or "" for every address, IPv6 and IPv4) and port (0: any free port).
 * Returns the fd and the port bound in *bound, or -1 with a reason in err. */
int listen_bind(const char *addr, int port, int *bound, char *err, size_t errlen);

/* 1 when a connection to address (as listen_bind takes it) and port would reach fd, a
 * listen_bind socket: the same port, and fd's own address or, bound to every address,
 * an address of this machine. For not dialling ourselves: a 0 is never wrong, as the
 * link's handshake tells a link to ourselves anyway. */
int listen_reaches(int fd, const char *address, int port);

/* The protocol that must be in the protocol list of a vhost a listener is adopted into. */
extern const struct lws_protocols listen_protocol;

/* Watches fd (from listen_bind) on vh's loop: each connection it accepts is adopted into
 * vh as an HTTP server connection (WebSocket upgrades go to the vhost's protocols). The
 * fd is closed with the vhost. -1 when lws cannot adopt it. */
int listen_adopt(struct lws_vhost *vh, int fd);

#endif
