/*
 * mod_push.h — what the files of mod_push share: the module record, the
 * configuration structures and the per-child state.
 *
 * Threads in an Apache child (see docs/architecture.md):
 *   - MPM workers run the handlers and, borrowed through timed callbacks,
 *     finish held connections (push_reactor_finish_cb);
 *   - the link thread (link.c) owns the ZeroMQ socket to pushbrokerd;
 *   - the reactor thread (reactor.c) owns every parked connection.
 * They meet only in the hub (registry.c), under its one lock.
 */
#ifndef MOD_PUSH_H
#define MOD_PUSH_H

#include "httpd.h"
#include "http_config.h"
#include "http_log.h"

#include <stdint.h>

extern module AP_MODULE_DECLARE_DATA push_module;

#define PUSH_UNSET (-1)

/* Server-wide settings (only the main server's are used: one link per child). */
typedef struct push_server_conf {
    const char *broker;        /* PushBroker: the broker's link endpoint */
    int         broker_timeout_ms; /* PushBrokerTimeout */
    const char *broker_server_key; /* PushBrokerServerKey: Z85 (NULL: no CURVE) */
    const char *broker_public_key; /* PushBrokerClientKeys: Z85 (NULL: a throwaway */
    const char *broker_secret_key; /*   key pair in each child); link_keys.c */
} push_server_conf;

/* Per-directory settings; every field has PUSH_UNSET / NULL for "not set here"
 * so that merging is exact (see push_merge_dir_conf). */
typedef struct push_dir_conf {
    const char *location;      /* the <Location> path: the channel is what follows */
    int  longpoll_timeout;     /* PushLongPollTimeout, seconds */
    int  sse_keepalive;        /* PushSSEKeepalive, seconds (0 = off) */
    int  sse_retry_ms;         /* PushSSERetry, milliseconds (0 = do not send retry:) */
    long max_message_size;     /* PushMaxMessageSize, bytes */
    int  retry_after;          /* PushRetryAfter, seconds, sent with 503 */
    int  max_queue;            /* PushMaxQueue, messages queued per connection */
    int  ws_enabled;           /* PushWebSocket on|off */
    apr_array_header_t *ws_origins;   /* PushWebSocketOrigins (NULL: any) */
    apr_array_header_t *ws_protocols; /* PushWebSocketSubprotocols (NULL: none) */
    int  ws_deflate;           /* PushWebSocketDeflate on|off */
    int  ws_ping;              /* PushWebSocketPing, seconds (0 = none) */
    long ws_max_message;       /* PushWebSocketMaxMessage, bytes */
    int  ws_publish;           /* PushWebSocketPublish on|off */
    int  ws_raw;               /* PushWebSocketMode raw (1) or json (0) */
    int  presence_names;       /* PushPresenceNames on|off */
    int  detach;               /* PushDetach on|off */
    const unsigned char *token_secret; /* PushTokenSecretFile: the secret (NULL: none) */
    int  token_secret_len;     /* its length (PUSH_UNSET with no secret) */
    int  token_require;        /* PushTokenRequire on|off */
    int  max_channels;         /* PushMaxChannels, per WebSocket connection */
    int  max_subscribers;      /* PushMaxSubscribers, per channel in one child (0: no limit) */
    int  ws_publish_rate;      /* PushWebSocketPublishRate, messages/s per connection (0: no limit) */
} push_dir_conf;

/* Resolved values with defaults applied, copied into every held connection so
 * that the reactor never reads configuration owned by a pool. */
typedef struct push_settings {
    apr_interval_time_t longpoll_timeout;
    apr_interval_time_t sse_keepalive;
    int    sse_retry_ms;
    size_t max_message_size;
    int    retry_after;
    int    max_queue;
    int    ws_enabled;
    const apr_array_header_t *ws_origins;
    const apr_array_header_t *ws_protocols;
    int    ws_deflate;
    apr_interval_time_t ws_ping;
    size_t ws_max_message;
    int    ws_publish;
    int    ws_raw;
    int    presence_names;
    int    detach;
    const unsigned char *token_secret;   /* NULL: none configured */
    size_t token_secret_len;
    int    token_require;
    int    max_channels;
    int    max_subscribers;
    int    ws_publish_rate;
} push_settings;

void push_settings_resolve(const push_dir_conf *d, push_settings *out);

/* Channel named by the request URI: what follows the <Location> path.
 * Returns NULL (and sets *status to 404 or 400) when there is none or it is
 * not a valid channel name. */
const char *push_request_channel(request_rec *r, const push_dir_conf *d, int *status);

/* The presence identity of a subscriber: Apache's authenticated user, the
 * "sub" of its token (token_sub, may be NULL or ""), or the ?name= the
 * client chose where PushPresenceNames allows it; NULL for none.  *bad is
 * set when a name was given but is not acceptable. */
const char *push_request_identity(request_rec *r, const push_settings *set,
                                  const char *token_sub, int *bad);

/* The client's token: "Authorization: Bearer <token>", else ?token=
 * (NULL when neither). */
const char *push_request_token(request_rec *r);

/* Where PushTokenRequire is on, check the request's token for right (a
 * PUSH_RIGHT_* letter) on channel.  Returns 1 when the request may go on
 * (always when tokens are not required); 0 when it was refused: the answer
 * (403, or 500 when no secret is configured) is written and logged, and
 * the handler returns OK.  sub (may be NULL; PUSH_IDENTITY_MAX + 1 bytes)
 * receives the token's identity, "" when none. */
int push_token_check(request_rec *r, const push_settings *set, const char *channel,
                     int right, char *sub);

/* The message of a refused token (result: a push_token_result), for the
 * client and the log: from pool, or static. */
const char *push_token_message(apr_pool_t *pool, int result, const char *channel, int right);

/* Log a refused token (never the token itself): where it was refused
 * (r; or c when r is NULL; or the client address of a detached
 * connection when both are), for which channel and right, and why. */
void push_token_log(request_rec *r, conn_rec *c, const char *client, const char *channel,
                    int right, int result, const char *sub);

/* Whether a comma-separated header value lists token exactly (parameters
 * after ';' and surrounding spaces ignored); case-insensitive unless
 * case_sensitive. */
int push_header_has_token(const char *list, const char *token, int case_sensitive);

/* Value of a query parameter, %-decoded (NULL when absent or undecodable). */
const char *push_query_param(request_rec *r, const char *name);

/* What every channel handler does first: resolve the settings, check the
 * method (405 with Allow otherwise), take the channel from the URL (404 or
 * 400 otherwise).  Returns the channel, or NULL with *rc set to what the
 * handler must return. */
const char *push_handler_start(request_rec *r, int method, const char *how,
                               push_settings *set, int *rc);

/* 503 with Retry-After (set->retry_after) and error "unavailable". */
int push_unavailable(request_rec *r, const push_settings *set, const char *msg);

/* Send a JSON error body {"error":code,"message":msg} with the given status;
 * returns the value a handler should return. */
int push_json_error(request_rec *r, int status, const char *code, const char *msg);

/* Per-child state, created in child_init (after fork) and owned by the
 * child's main thread; read-only for the other threads once set. */
struct push_hub;
struct push_link;
struct push_reactor;
typedef struct push_child {
    server_rec          *s;
    struct push_hub     *hub;
    struct push_link    *link;
    struct push_reactor *rx;
    int                  broker_timeout_ms;
} push_child;

/* NULL before child_init or when it failed. */
push_child *push_child_get(void);

/* Handlers (one per file). */
int push_subscriber_handler(request_rec *r);   /* subscribe.c */
int push_publisher_handler(request_rec *r);    /* publish.c */
int push_presence_handler(request_rec *r);     /* presence.c */
int push_client_handler(request_rec *r);       /* client_script.c */

#endif
