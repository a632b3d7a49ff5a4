/*
 * endpoint.h — binding the broker's sockets the way the configuration says.
 *
 * Contract of endpoint_bind():
 *  - tcp:// with curve_secret_key_file: the socket becomes a CURVE server;
 *    its handshakes are authorized (ZAP, guard.c) in the domain called name
 *    ("api", "push" or "link"), so refusals say which endpoint refused.
 *  - ipc:///path: the socket file gets ipc_mode and, with ipc_group, that
 *    group.  The umask is narrowed around the bind, so the file is never
 *    more open than ipc_mode, not even until the chmod.
 *  - anything else (abstract ipc://@name, the ipc wildcard, inproc) is bound
 *    as it is.
 * On failure the reason is logged (naming the endpoint) and -1 returned with
 * errno set; the caller closes the socket.
 */
#ifndef PUSHBROKERD_ENDPOINT_H
#define PUSHBROKERD_ENDPOINT_H

#include "config.h"

int endpoint_bind(void *sock, const char *name, const char *endpoint,
                  const broker_config *cfg);

/* Whether endpoint_bind() makes endpoint a CURVE server under cfg. */
int endpoint_is_curve(const char *endpoint, const broker_config *cfg);

#endif
