/*
 * link_keys.h — CURVE on the link to pushbrokerd: PushBrokerServerKey and
 * PushBrokerClientKeys (docs/directives.md).
 *
 * Keys are read when the configuration is read (as the user Apache starts
 * as, so key files may be root's with mode 0600): a missing or malformed one
 * stops the start with its file name.  They are set on the link's socket in
 * each child (push_link_apply_keys, from the link's start in child_init):
 * no ZeroMQ context ever exists in the parent.  Only tcp:// endpoints use
 * them, as in the broker (proto/push_curve.h).
 */
#ifndef PUSH_LINK_KEYS_H
#define PUSH_LINK_KEYS_H

#include "httpd.h"
#include "http_config.h"

#include "push_curve.h"

/* PushBrokerServerKey key|file: the broker's public key. */
const char *push_link_set_server_key(cmd_parms *cmd, void *dummy, const char *arg);

/* PushBrokerClientKeys [public-file] secret-file: this server's key pair
 * (the public key is derived from the secret one, and checked against the
 * public file when one is given). */
const char *push_link_set_client_keys(cmd_parms *cmd, void *dummy, const char *first,
                                      const char *second);

/* After the configuration is read: the keys must fit together.  Returns OK,
 * or an error status that stops the start (logged). */
int push_link_check_keys(server_rec *s);

/* In the child, before the link connects: make sock a CURVE client when
 * PushBrokerServerKey applies to endpoint, with the configured key pair or
 * a throwaway one.  *curve says whether it did; public_key receives the
 * public key used (for the log).  Returns 0, or -1 with errno set. */
int push_link_apply_keys(void *sock, server_rec *s, const char *endpoint, int *curve,
                         push_curve_key public_key);

#endif
