/* route: the channels of the proxy's clients, their peers and the one pipeline behind
 * them. It reaches connections only through the proxy_conn_ops it is given and is
 * reached only through route_ops (the rule is in proxy.h), so it runs without lws in
 * tests/unit/test_route.c. */
#ifndef NWS_ROUTE_H
#define NWS_ROUTE_H

#include "proxy.h"

struct route;

/* cfg and conn must outlive the route. */
struct route *route_new(const struct proxy_config *cfg, const struct proxy_conn_ops *conn);
/* Frees the channels and the peers still in them (the pipeline is stopped already). */
void route_free(struct route *r);

extern const struct proxy_route_ops route_ops;

#endif
