/*
 * api.h — the application API: a ROUTER socket for request/reply clients
 * (REQ, or DEALER sending an empty delimiter frame) and a PULL socket for
 * fire-and-forget PUSH clients.  Both accept the same requests (see
 * push_proto.h): multipart PUB / HISTORY / STATS / PING, or one frame holding
 * a JSON object with "op" publish / history / stats / ping.
 *
 * Contract:
 *  - ROUTER replies carry back the envelope exactly as received: every frame
 *    up to and including the first empty frame.  A request without that
 *    delimiter cannot be answered in its own format, so it is logged and
 *    dropped.
 *  - PULL requests are never answered; rejected ones are logged (warn).
 *  - HISTORY returns the oldest messages after the cursor first (at most
 *    limit, default API_HISTORY_LIMIT, never more than API_HISTORY_MAX), so
 *    a client pages forward by asking again after the last id it got.
 *  - Nothing here blocks; replies to vanished clients are dropped by ZeroMQ.
 */
#ifndef PUSHBROKERD_API_H
#define PUSHBROKERD_API_H

#include <stdint.h>

#include "broker.h"
#include "push_proto.h"
#include "reply.h"

#define API_HISTORY_LIMIT PUSH_HISTORY_PAGE
/* Replies hold at most a page, so that they stay within PUSH_MAX_FRAMES:
 * clients using push_frames_recv() would drop a longer one whole. */
#define API_HISTORY_MAX   PUSH_HISTORY_PAGE

typedef struct api {
    void   *router;
    void   *pull;
    broker *broker;
} api;

/* Create and bind both sockets.  Returns NULL (reason logged, errno set). */
api *api_open(void *zctx, const char *api_endpoint, const char *push_endpoint,
              broker *b);
void api_close(api *a);

/* Handle up to max waiting requests on each socket without blocking. */
void api_handle_router(api *a, int max);
void api_handle_pull(api *a, int max);

/* Answer one request: body holds the request frames, env the envelope to put
 * in front of the reply (nenv may be 0).  *out is initialised here and must
 * be reply_free()d; it is left empty only when memory ran out.  Returns 0, or
 * -1 when the reply is an error reply (then *err says why). */
int  api_request(broker *b, const push_frame *env, int nenv,
                 const push_frame *body, int nbody, reply *out, broker_err *err);

#endif
