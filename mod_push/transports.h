/*
 * transports.h — the subscriber transports behind the push_transport
 * interface of reactor.h, one file each, and the history a subscriber
 * starts from.
 */
#ifndef PUSH_TRANSPORTS_H
#define PUSH_TRANSPORTS_H

#include "reactor.h"

/* Messages of a channel after a cursor, as answered by the broker. */
typedef struct push_history {
    uint64_t   last_id;     /* newest id of the channel (0: none yet) */
    uint64_t   oldest_id;   /* oldest id still in history */
    push_msg **msgs;        /* n references, released with r->pool */
    int        n;
    /* Set by push_history_since when the client's cursor cannot be
     * continued: {"channel":..,"after":<cursor>,"oldest_id":..,"last_id":..,
     * "reason":"trimmed"|"lost"}, from the pool; NULL when nothing is missing. */
    const char *gap;
} push_history;

/* Ask the broker for the messages of channel after *after (NULL: none, only
 * last_id).  *out is allocated from pool and its messages are released
 * with it.  Returns OK, or an HTTP status (503 when the broker cannot be
 * asked, 400 on a bad request, 502 on a malformed answer). */
int push_history_fetch(apr_pool_t *pool, conn_rec *c, const char *channel,
                       const uint64_t *after, push_history **out);

/* The same after the client's cursor (if has_cursor).  A cursor beyond the
 * channel's end means the broker started its ids again (it lost its state):
 * then the client gets everything the channel has now and *cursor becomes 0.
 * Either that or a cursor older than the history sets (*hist)->gap: gaps
 * are never silent. */
int push_history_since(apr_pool_t *pool, conn_rec *c, const char *channel, int has_cursor,
                       uint64_t *cursor, push_history **hist);

/* What a subscriber asked of presence: its identity (NULL: anonymous) and
 * whether it wants join/leave events. */
typedef struct push_presence_req {
    const char *identity;
    int         events;
    const char *token;      /* the client's token where PushTokenRequire is on, else NULL */
} push_presence_req;

/* Answer 503 {"error":"limit"} (PushMaxSubscribers reached) and log it;
 * returns the handler's status. */
int push_subscriber_limit(request_rec *r, const push_settings *set, const char *channel);

/* Answer what a NULL push_hold_new() means: 503 {"error":"limit"} with
 * Retry-After when this child is at its open-file guard (errno EMFILE),
 * else 500 {"error":"internal"}. */
int push_hold_refused(request_rec *r, const push_settings *set);

/* WebSocket (websocket.c): the handler's part, for an Upgrade request. */
int push_ws_handle(request_rec *r, const char *channel, const push_settings *set,
                   int has_cursor, uint64_t cursor, const push_presence_req *pr);

/* Server-Sent Events (sse.c). */
extern const push_transport push_sse_transport;
/* Worker: send headers, the preamble and the history, flushed. 0 or -1. */
int push_sse_begin(push_hold *h, const push_history *hist);

/* Long polling (longpoll.c). */
extern const push_transport push_longpoll_transport;
/* Worker: answer at once with the given messages (short poll, or a long
 * poll that found messages).  Returns the handler's status. */
int push_poll_respond(request_rec *r, const char *channel, push_msg *const *msgs, int n,
                      uint64_t cursor, const char *gap);

#endif
