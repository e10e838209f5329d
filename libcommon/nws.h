/* nws: the constants every tool shares, named once: exit statuses (EXIT STATUS in each
 * tool's man page), nws-proxy's port, and how long a stopping tool waits for its links
 * and pipes to flush. Default frame and queue sizes are stream.h's. */
#ifndef NWS_NWS_H
#define NWS_NWS_H

#define NWS_EXIT_OK 0
#define NWS_EXIT_FAIL 1
#define NWS_EXIT_USAGE 2
/* EX_UNAVAILABLE (sysexits.h): avahi-daemon, or the nws-proxy asked for, is not there.
 * Also the code of the error frame that says so. */
#define NWS_EXIT_UNAVAILABLE 69

#define NWS_PROXY_PORT 9009
#define NWS_PROXY_URL "ws://localhost:9009"

/* A stopping tool gives its links, clients and pipes this long to flush, then exits
 * anyway. 5 s, not less: nws-proxy's stop includes its pipeline's, which gives each stage
 * 2 s to finish its input and 1 s after SIGTERM before SIGKILL (pipeline.c), and its
 * clients their close handshake alongside. */
#define NWS_STOP_DEADLINE_MS 5000

#endif
