/*
 * pushclient.h — publishing client for pushbrokerd (mod_push).
 *
 * A pushclient_t talks to the broker's two application endpoints:
 *
 *   api  (ROUTER, default tcp://127.0.0.1:7701)  request/reply, over a REQ socket
 *   push (PULL,   default tcp://127.0.0.1:7702)  fire-and-forget, over a PUSH socket
 *
 * The wire protocol is proto/push_proto.h; this library only wraps it.
 *
 * General contract
 *   - Every pushclient_t owns its own ZeroMQ context and up to two sockets.
 *     It is not thread-safe: use one pushclient_t per thread.
 *   - No call blocks for longer than the timeout (pushclient_set_timeout,
 *     default PUSHCLIENT_DEFAULT_TIMEOUT ms), except pushclient_destroy(),
 *     which may wait up to PUSHCLIENT_PUSH_LINGER ms to flush fire-and-forget
 *     messages that are still queued.
 *   - Calls that talk to the broker return 0 on success or one of the
 *     negative PUSHCLIENT_E* values below.  After a failure,
 *     pushclient_errcode() and pushclient_errmsg() describe it; after a
 *     success both return "".  Output parameters are written only on success.
 *   - When no reply arrives in time (or sending or receiving fails), the REQ
 *     socket is closed and a new one is connected ("lazy pirate"), so the
 *     next call starts clean.  Requests are never re-sent automatically: a
 *     publish whose reply was lost may or may not have been delivered.
 *   - Unless stated otherwise, string arguments must not be NULL.
 */
#ifndef PUSHCLIENT_H
#define PUSHCLIENT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PUSHCLIENT_VERSION_MAJOR 0
#define PUSHCLIENT_VERSION_MINOR 1
#define PUSHCLIENT_VERSION_PATCH 0

#define PUSHCLIENT_DEFAULT_TIMEOUT 5000   /* ms to wait for a reply */
#define PUSHCLIENT_PUSH_LINGER     2000   /* ms to flush the PUSH socket at destroy */

/* Return values. */
#define PUSHCLIENT_OK         0
#define PUSHCLIENT_EREJECTED (-1)  /* the request was refused: the broker answered
                                      ERR <code> <message>, or (fire-and-forget
                                      only) the library's own check failed with
                                      the code the broker would have used */
#define PUSHCLIENT_ETIMEOUT  (-2)  /* no reply within the timeout, or the message
                                      could not be queued in time (errcode "timeout") */
#define PUSHCLIENT_EFAIL     (-3)  /* anything else: invalid argument, malformed
                                      reply, ZeroMQ or memory failure */

/* Error codes produced by the library itself (besides the broker's codes,
 * PUSH_ERR_* in push_proto.h, which come with PUSHCLIENT_EREJECTED). */
#define PUSHCLIENT_ERR_TIMEOUT  "timeout"
#define PUSHCLIENT_ERR_INVALID  "invalid_argument"
#define PUSHCLIENT_ERR_PROTOCOL "protocol"   /* the reply did not follow push_proto.h */
#define PUSHCLIENT_ERR_SYSTEM   "system"     /* ZeroMQ or memory failure */

typedef struct _pushclient_t pushclient_t;

/* One stored message, as returned by history. */
typedef struct {
    uint64_t id;
    uint64_t time_us;     /* publication time, microseconds since the Unix epoch */
    char    *event;       /* NUL-terminated; "" when the message has no event name */
    char    *data;        /* NUL-terminated copy of the data ... */
    size_t   data_len;    /* ... and its exact length (data may contain NUL bytes) */
} pushclient_msg_t;

/* Create a client.  api_endpoint / push_endpoint: ZeroMQ endpoints, or NULL
 * for PUSH_DEFAULT_API_ENDPOINT / PUSH_DEFAULT_PUSH_ENDPOINT.  Nothing is
 * connected here: each socket connects on its first use (so a client that
 * only publishes fire-and-forget never opens a connection to the api
 * endpoint), and a broker that is down is not an error (requests then time
 * out).  Returns NULL, with errno set, when the context cannot be created,
 * an endpoint is malformed (errno EINVAL: no "transport://address", or a
 * tcp:// address without a port) or of a transport other than tcp, ipc and
 * inproc (EPROTONOSUPPORT), or when out of memory.  Whatever zmq_connect()
 * refuses beyond these checks fails the first call (PUSHCLIENT_EFAIL). */
pushclient_t *pushclient_new(const char *api_endpoint, const char *push_endpoint);

/* The same, for a broker with curve_secret_key_file (CURVE: ZeroMQ's
 * encryption and authentication): server_key is the broker's public key,
 * secret_key this client's secret key (its public key is derived from it),
 * or NULL for a throwaway key pair, enough when the broker has no
 * curve_authorized_keys.  Both are 40 characters of Z85 (pushctl keygen;
 * push_curve_key_arg() in proto/push_curve.h reads them from key files).
 * The keys are used on tcp:// endpoints only: an ipc:// endpoint is guarded
 * by its file permissions, and the broker uses no CURVE there.  A broker
 * that refuses the keys does not answer: requests time out.  With both keys
 * NULL this is pushclient_new().  Returns NULL with errno EINVAL when a key
 * is not valid Z85 (or secret_key is given without server_key), otherwise
 * as pushclient_new(). */
pushclient_t *pushclient_new_curve(const char *api_endpoint, const char *push_endpoint,
                                   const char *server_key, const char *secret_key);

/* Destroy the client and set *self_p to NULL.  Safe with self_p == NULL or
 * *self_p == NULL.  Unacknowledged requests are abandoned; fire-and-forget
 * messages still queued get up to PUSHCLIENT_PUSH_LINGER ms to be delivered,
 * then are dropped silently. */
void pushclient_destroy(pushclient_t **self_p);

/* Set the reply timeout in milliseconds (> 0; other values are ignored and
 * leave the timeout unchanged).  Applies to each whole request: sending,
 * waiting and receiving. */
void pushclient_set_timeout(pushclient_t *self, int timeout_ms);
int  pushclient_timeout(pushclient_t *self);

/* The endpoints in use (never NULL; owned by the client). */
const char *pushclient_api_endpoint(pushclient_t *self);
const char *pushclient_push_endpoint(pushclient_t *self);

/* Error of the last failed call: a short code (a PUSH_ERR_* code from the
 * broker, or a PUSHCLIENT_ERR_* code) and a human-readable message.  Both
 * are "" after a successful call, never NULL, owned by the client and valid
 * until the next call on it. */
const char *pushclient_errcode(pushclient_t *self);
const char *pushclient_errmsg(pushclient_t *self);

/* Acknowledged publish: PUB <channel> <data> [<event>] on the api endpoint.
 * data/size: the payload (data may be NULL when size is 0).  event: NULL or
 * "" for none.  The channel and event are checked by the broker, not here.
 * On success returns 0 and stores the new message id in *id and the number
 * of subscribers it was delivered to in *subscribers (either pointer may be
 * NULL).  On failure returns PUSHCLIENT_EREJECTED (e.g. "bad_channel",
 * "too_large"), PUSHCLIENT_ETIMEOUT or PUSHCLIENT_EFAIL; *id and
 * *subscribers are not touched. */
int pushclient_publish(pushclient_t *self, const char *channel,
                       const void *data, size_t size, const char *event,
                       uint64_t *id, uint64_t *subscribers);

/* Fire-and-forget publish: the same PUB request on the push endpoint; the
 * broker sends no reply, so errors it finds are not reported.  The channel
 * and event names are checked here first (push_channel_valid,
 * push_event_valid): an invalid one gives PUSHCLIENT_EREJECTED with
 * "bad_channel" / "bad_request" and nothing is sent.  Messages are queued
 * only on an established connection to the broker.  Returns 0 once the
 * message is queued (not yet delivered: it is lost if the broker goes away
 * before reading it, or if it is still queued PUSHCLIENT_PUSH_LINGER ms
 * into pushclient_destroy()); PUSHCLIENT_ETIMEOUT when there is no
 * connection to the broker, or the queue stays full, for the whole timeout;
 * PUSHCLIENT_EFAIL on other failures. */
int pushclient_publish_nowait(pushclient_t *self, const char *channel,
                              const void *data, size_t size, const char *event);

/* Called once per message by pushclient_history(), oldest first.  msg and
 * its strings belong to the library and are valid only during the call.
 * Return 0 to go on, non-zero to skip the remaining messages. */
typedef int (pushclient_history_fn)(const pushclient_msg_t *msg, void *arg);

/* Messages asked for per HISTORY request: a reply carries 3 + 4 frames per
 * message and must stay within PUSH_MAX_FRAMES. */
#define PUSHCLIENT_HISTORY_PAGE 1000

/* History: the stored messages of channel with id > after_id (0: all that
 * the broker still keeps), oldest first, at most limit (0: no limit).
 * Sends HISTORY <channel> <after_id> <page> on the api endpoint, as many
 * times as needed, in pages of at most PUSHCLIENT_HISTORY_PAGE messages,
 * until limit messages were seen or the channel's last id is reached.
 * Each reply is received and validated (ids growing, frame count right)
 * before fn is called for its messages, so fn never sees a message from a
 * failed or malformed reply.  fn may be NULL (e.g. only to get last_id).
 * On success stores the channel's last id (the newest id the broker
 * assigned on the channel, 0 if none; not necessarily the last message
 * passed to fn) in *last_id (may be NULL) and returns 0, also when fn
 * stopped early.  On failure returns PUSHCLIENT_EREJECTED (e.g.
 * "bad_channel"), PUSHCLIENT_ETIMEOUT or PUSHCLIENT_EFAIL; when the failing
 * request was not the first page, fn has already been called for the
 * messages of the earlier pages. */
int pushclient_history(pushclient_t *self, const char *channel,
                       uint64_t after_id, uint64_t limit,
                       pushclient_history_fn *fn, void *arg, uint64_t *last_id);

/* History as an array: same requests as pushclient_history(), all or
 * nothing.  On success stores a malloc'ed array of *count_p messages (NULL
 * when the count is 0) in *msgs_p and the channel's last id in *last_id (may
 * be NULL), and returns 0; release the array with
 * pushclient_msgs_free(&msgs, count).  On failure returns
 * PUSHCLIENT_EREJECTED, PUSHCLIENT_ETIMEOUT or PUSHCLIENT_EFAIL and touches
 * none of the outputs. */
int pushclient_history_get(pushclient_t *self, const char *channel,
                           uint64_t after_id, uint64_t limit,
                           pushclient_msg_t **msgs_p, size_t *count_p,
                           uint64_t *last_id);

/* Free an array from pushclient_history_get() and set *msgs_p to NULL.
 * Safe with msgs_p == NULL or *msgs_p == NULL. */
void pushclient_msgs_free(pushclient_msg_t **msgs_p, size_t count);

/* Broker statistics: STATS.  On success stores a malloc'ed, NUL-terminated
 * JSON text in *json_p (caller frees) and returns 0.  Failure:
 * PUSHCLIENT_EREJECTED, PUSHCLIENT_ETIMEOUT or PUSHCLIENT_EFAIL (also when
 * the reply is not valid JSON). */
int pushclient_stats(pushclient_t *self, char **json_p);

/* Who is present on channel: PRESENCE.  On success stores a malloc'ed JSON
 * text {"channel":..,"count":N,"members":[{"identity":..,"connections":N,
 * "since":T}]} in *json_p (caller frees) and returns 0.  Failure as for
 * pushclient_stats; an invalid channel name gives PUSHCLIENT_EREJECTED with
 * code bad_channel before anything is sent. */
int pushclient_presence(pushclient_t *self, const char *channel, char **json_p);

/* Liveness check: PING.  On success stores the broker's epoch (an id of the
 * broker's run, as carried in PONG <epoch>) in *epoch (may be NULL) and
 * returns 0.  Failure: PUSHCLIENT_EREJECTED, PUSHCLIENT_ETIMEOUT or
 * PUSHCLIENT_EFAIL. */
int pushclient_ping(pushclient_t *self, uint64_t *epoch);

#ifdef __cplusplus
}
#endif

#endif
