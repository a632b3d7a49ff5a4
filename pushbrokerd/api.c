/*
 * api.c — see api.h.
 */
#include "api.h"
#include "links.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include <cjson/cJSON.h>

#include "clock.h"
#include "endpoint.h"
#include "jsonesc.h"
#include "log.h"

/* Largest id a JSON number carries exactly (2^53). */
#define API_JSON_INT_MAX 9007199254740992.0

/* ---- sockets ----------------------------------------------------------- */

static void *s_socket(void *zctx, int type, const char *what, const char *endpoint,
                      const broker_config *cfg)
{
    int linger = 0;
    int64_t maxmsg = config_frame_limit(cfg);
    void *sock = zmq_socket(zctx, type);
    if (!sock || zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) < 0
        || zmq_setsockopt(sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg) < 0) {
        log_error("cannot create %s socket: %s", what, zmq_strerror(errno));
    } else if (endpoint_bind(sock, what, endpoint, cfg) < 0) {
        /* logged by endpoint_bind */
    } else {
        return sock;
    }
    int e = errno;
    if (sock)
        zmq_close(sock);
    errno = e;
    return NULL;
}

api *api_open(void *zctx, const char *api_endpoint, const char *push_endpoint, broker *b)
{
    api *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    a->broker = b;
    a->router = s_socket(zctx, ZMQ_ROUTER, "api", api_endpoint, b->cfg);
    if (a->router)
        a->pull = s_socket(zctx, ZMQ_PULL, "push", push_endpoint, b->cfg);
    if (!a->pull) {
        int e = errno;
        api_close(a);
        errno = e;
        return NULL;
    }
    return a;
}

void api_close(api *a)
{
    if (!a)
        return;
    if (a->router)
        zmq_close(a->router);
    if (a->pull)
        zmq_close(a->pull);
    free(a);
}

/* ---- replies ----------------------------------------------------------- */

static int s_start(reply *out, const push_frame *env, int nenv, int nframes)
{
    if (reply_init(out, nenv + nframes) < 0)
        return -1;
    reply_frames(out, env, nenv);
    return 0;
}

static void s_err_reply(reply *out, const push_frame *env, int nenv, const broker_err *err)
{
    reply_free(out);
    if (s_start(out, env, nenv, 3) < 0)
        return;
    reply_str(out, PUSH_REP_ERR);
    reply_str(out, err->code);
    reply_copy(out, err->msg);
}

/* ---- multipart requests ------------------------------------------------ */

static int s_pub(broker *b, const push_frame *env, int nenv,
                 const push_frame *body, int n, reply *out, broker_err *err)
{
    if (n != 3 && n != 4)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST,
                           "PUB needs <channel> <data> [<event>]");
    const push_frame *ev = n == 4 ? &body[3] : NULL;
    broker_published pub;
    if (broker_publish(b, body[1].data, body[1].size, body[2].data, body[2].size,
                       ev ? ev->data : NULL, ev ? ev->size : 0, clock_real_us(),
                       &pub, err) < 0)
        return -1;
    if (s_start(out, env, nenv, 3) < 0)
        return 0;
    reply_str(out, PUSH_REP_OK);
    reply_u64(out, pub.id);
    reply_u64(out, pub.subscribers);
    return 0;
}

static size_t s_limit(uint64_t requested)
{
    return requested < API_HISTORY_MAX ? (size_t)requested : API_HISTORY_MAX;
}

static int s_history_reply(const channel *c, history_view v, const push_frame *env,
                           int nenv, reply *out)
{
    if (s_start(out, env, nenv, 3 + 4 * (int)v.count) < 0)
        return 0;
    reply_str(out, PUSH_REP_OK);
    reply_u64(out, v.last_id);
    reply_u64(out, v.count);
    for (size_t i = 0; i < v.count; i++) {
        const history_msg *m = history_get(&c->hist, v.first_id + i);
        reply_u64(out, m->id);
        reply_bytes(out, m->event, m->event_len);
        reply_bytes(out, m->data, m->data_len);
        reply_u64(out, m->time_us);
    }
    return 0;
}

static int s_history(broker *b, const push_frame *env, int nenv,
                     const push_frame *body, int n, reply *out, broker_err *err)
{
    uint64_t after, limit = API_HISTORY_LIMIT;
    if (n != 3 && n != 4)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST,
                           "HISTORY needs <channel> <after_id> [<limit>]");
    if (!push_channel_valid(body[1].data, body[1].size))
        return broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    if (push_parse_u64(body[2].data, body[2].size, &after) < 0)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "after_id must be a decimal id");
    if (n == 4 && push_parse_u64(body[3].data, body[3].size, &limit) < 0)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "limit must be a decimal number");
    channel *c = broker_history_channel(b, body[1].data, body[1].size, err);
    if (!c)
        return -1;
    return s_history_reply(c, history_after(&c->hist, after, s_limit(limit)),
                           env, nenv, out);
}

static char *s_stats_text(broker *b)
{
    cJSON *obj = cJSON_CreateObject();
    char *text = NULL;
    if (obj && broker_stats_json(b, obj, clock_mono_us()) == 0)
        text = cJSON_PrintUnformatted(obj);
    cJSON_Delete(obj);
    return text;
}

static int s_stats(broker *b, const push_frame *env, int nenv, int n,
                   reply *out, broker_err *err)
{
    if (n != 1)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "STATS takes no arguments");
    if (s_start(out, env, nenv, 2) < 0)
        return 0;
    reply_str(out, PUSH_REP_OK);
    reply_take(out, s_stats_text(b));
    return 0;
}

static int s_ping(broker *b, const push_frame *env, int nenv, int n,
                  reply *out, broker_err *err)
{
    if (n != 1)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "PING takes no arguments");
    if (s_start(out, env, nenv, 2) < 0)
        return 0;
    reply_str(out, PUSH_REP_PONG);
    reply_u64(out, b->epoch);
    return 0;
}

/* The channel's presence JSON (presence.h), NULL when out of memory. */
static char *s_presence_text(broker *b, const push_frame *chan)
{
    char name[PUSH_CHANNEL_MAX + 1];
    memcpy(name, chan->data, chan->size);
    name[chan->size] = '\0';
    cJSON *o = b->links ? links_presence_json(b->links, name) : NULL;
    char *text = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    return text;
}

/* PRESENCE <channel> -> OK <json> */
static int s_presence(broker *b, const push_frame *env, int nenv, const push_frame *body,
                      int n, reply *out, broker_err *err)
{
    if (n != 2)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "PRESENCE needs <channel>");
    if (!push_channel_valid(body[1].data, body[1].size))
        return broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    char *text = s_presence_text(b, &body[1]);
    if (!text)
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    if (s_start(out, env, nenv, 2) < 0) {
        free(text);
        return 0;
    }
    reply_str(out, PUSH_REP_OK);
    reply_take(out, text);
    return 0;
}

static int s_multipart(broker *b, const push_frame *env, int nenv,
                       const push_frame *body, int n, reply *out, broker_err *err)
{
    push_frames f = { n, (push_frame *)body, NULL };
    int rc;
    if (push_frame_is(&f, 0, PUSH_CMD_PUB))
        rc = s_pub(b, env, nenv, body, n, out, err);
    else if (push_frame_is(&f, 0, PUSH_CMD_HISTORY))
        rc = s_history(b, env, nenv, body, n, out, err);
    else if (push_frame_is(&f, 0, PUSH_CMD_STATS))
        rc = s_stats(b, env, nenv, n, out, err);
    else if (push_frame_is(&f, 0, PUSH_CMD_PING))
        rc = s_ping(b, env, nenv, n, out, err);
    else if (push_frame_is(&f, 0, PUSH_CMD_PRESENCE))
        rc = s_presence(b, env, nenv, body, n, out, err);
    else
        rc = broker_fail(err, PUSH_ERR_UNKNOWN_CMD,
                         "unknown command (expected PUB, HISTORY, STATS, PING or PRESENCE)");
    if (rc < 0)
        s_err_reply(out, env, nenv, err);
    return rc;
}

/* ---- JSON requests ----------------------------------------------------- */

/* Reads an optional non-negative integer field. */
static int s_json_uint(const cJSON *obj, const char *key, uint64_t dflt,
                       uint64_t *out, broker_err *err)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!item || cJSON_IsNull(item)) {
        *out = dflt;
        return 0;
    }
    double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
    if (v < 0 || v > API_JSON_INT_MAX || v != (double)(uint64_t)v)
        return broker_fail(err, PUSH_ERR_BAD_REQUEST,
                           "\"%s\" must be a non-negative integer", key);
    *out = (uint64_t)v;
    return 0;
}

static int s_json_publish(broker *b, const push_frame *req, cJSON *res, broker_err *err)
{
    push_publish_req pr;
    const char *code, *msg;
    if (push_publish_req_decode(req->data, req->size, 1, &pr, &code, &msg) < 0)
        return broker_fail(err, code, "%s", msg);
    broker_published pub;
    int rc = broker_publish(b, pr.channel, strlen(pr.channel), pr.data, pr.data_len,
                            pr.event, pr.event ? strlen(pr.event) : 0,
                            clock_real_us(), &pub, err);
    push_publish_req_free(&pr);
    if (rc < 0)
        return -1;
    if (!json_add_u64(res, "id", pub.id) || !json_add_u64(res, "subscribers", pub.subscribers))
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    return 0;
}

static cJSON *s_json_message(const history_msg *m)
{
    cJSON *o = cJSON_CreateObject();
    char *data = json_quote(m->data, m->data_len);
    int ok = o && data
          && json_add_u64(o, "id", m->id)
          && (m->event_len ? cJSON_AddStringToObject(o, "event", m->event)
                           : cJSON_AddNullToObject(o, "event"))
          && cJSON_AddRawToObject(o, "data", data)
          && json_add_u64(o, "time", m->time_us);
    free(data);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int s_json_messages(const channel *c, history_view v, cJSON *res, broker_err *err)
{
    cJSON *list = cJSON_AddArrayToObject(res, "messages");
    if (!list)
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    for (size_t i = 0; i < v.count; i++) {
        cJSON *m = s_json_message(history_get(&c->hist, v.first_id + i));
        if (!m)
            return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
        cJSON_AddItemToArray(list, m);
    }
    return 0;
}

static int s_json_history(broker *b, const cJSON *root, cJSON *res, broker_err *err)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "channel");
    uint64_t after, limit;
    if (!cJSON_IsString(ch))
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "\"channel\" must be a string");
    if (!push_channel_valid(ch->valuestring, strlen(ch->valuestring)))
        return broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    if (s_json_uint(root, "after", 0, &after, err) < 0
        || s_json_uint(root, "limit", API_HISTORY_LIMIT, &limit, err) < 0)
        return -1;
    channel *c = broker_history_channel(b, ch->valuestring, strlen(ch->valuestring), err);
    if (!c)
        return -1;
    history_view v = history_after(&c->hist, after, s_limit(limit));
    if (!json_add_u64(res, "last_id", v.last_id)
        || !json_add_u64(res, "oldest_id", v.oldest_id))
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    return s_json_messages(c, v, res, err);
}

/* {"op":"presence","channel":"c"} -> {"ok":true,"channel":..,"count":..,"members":[..]} */
static int s_json_presence(broker *b, const cJSON *root, cJSON *res, broker_err *err)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "channel");
    if (!cJSON_IsString(ch) || !push_channel_valid(ch->valuestring, strlen(ch->valuestring)))
        return broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    cJSON *o = b->links ? links_presence_json(b->links, ch->valuestring) : NULL;
    if (!o)
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    cJSON *item;
    while ((item = o->child) != NULL) {
        cJSON_DetachItemViaPointer(o, item);
        cJSON_AddItemToObject(res, item->string, item);
    }
    cJSON_Delete(o);
    return 0;
}

static int s_json_op(broker *b, const push_frame *req, const cJSON *root,
                     cJSON *res, broker_err *err)
{
    if (!cJSON_IsObject(root))
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    if (!cJSON_IsString(op))
        return broker_fail(err, PUSH_ERR_BAD_REQUEST, "\"op\" must be a string");
    if (strcmp(op->valuestring, "publish") == 0)
        return s_json_publish(b, req, res, err);
    if (strcmp(op->valuestring, "history") == 0)
        return s_json_history(b, root, res, err);
    if (strcmp(op->valuestring, "stats") == 0)
        return broker_stats_json(b, res, clock_mono_us()) < 0
            ? broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory") : 0;
    if (strcmp(op->valuestring, "ping") == 0)
        return json_add_u64(res, "epoch", b->epoch) ? 0
            : broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    if (strcmp(op->valuestring, "presence") == 0)
        return s_json_presence(b, root, res, err);
    return broker_fail(err, PUSH_ERR_UNKNOWN_CMD,
                       "unknown \"op\" (expected publish, history, stats, ping or presence)");
}

static cJSON *s_json_error(const broker_err *err)
{
    cJSON *res = cJSON_CreateObject();
    if (res) {
        cJSON_AddFalseToObject(res, "ok");
        cJSON_AddStringToObject(res, "error", err->code);
        cJSON_AddStringToObject(res, "message", err->msg);
    }
    return res;
}

/* The whole frame must be one JSON value (trailing blanks allowed), as
 * push_publish_req_decode() demands for publish requests. */
static cJSON *s_parse(const push_frame *req)
{
    const char *end = NULL;
    if (memchr(req->data, '\0', req->size))
        return NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(req->data, req->size, &end, 0);
    while (root && end < req->data + req->size) {
        if (!strchr(" \t\r\n", *end++)) {
            cJSON_Delete(root);
            return NULL;
        }
    }
    return root;
}

static int s_json(broker *b, const push_frame *env, int nenv, const push_frame *req,
                  reply *out, broker_err *err)
{
    cJSON *root = s_parse(req);
    cJSON *res = cJSON_CreateObject();
    int rc;
    if (!res)
        rc = broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    else if (!root)
        rc = broker_fail(err, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    else
        rc = cJSON_AddTrueToObject(res, "ok") ? s_json_op(b, req, root, res, err)
           : broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    cJSON_Delete(root);
    if (rc < 0) {
        cJSON_Delete(res);
        res = s_json_error(err);
    }
    char *text = res ? cJSON_PrintUnformatted(res) : NULL;
    cJSON_Delete(res);
    if (s_start(out, env, nenv, 1) == 0)
        reply_take(out, text);
    else
        free(text);
    return rc;
}

/* ---- dispatch ---------------------------------------------------------- */

int api_request(broker *b, const push_frame *env, int nenv,
                const push_frame *body, int nbody, reply *out, broker_err *err)
{
    memset(out, 0, sizeof *out);
    if (nbody == 1 && body[0].size > 0 && body[0].data[0] == '{')
        return s_json(b, env, nenv, &body[0], out, err);
    return s_multipart(b, env, nenv, body, nbody, out, err);
}

/* Envelope length: identity frames plus the empty delimiter, or -1. */
static int s_envelope(const push_frames *f)
{
    for (int i = 1; i < f->count; i++)
        if (f->frame[i].size == 0)
            return i + 1 < f->count ? i + 1 : -1;
    return -1;
}

static void s_log_rejected(const char *where, const push_frame *cmd, const broker_err *err,
                           int level)
{
    char word[24];
    log_msg(level, "%s: rejected \"%s\" request: %s: %s", where,
            log_safe(cmd->data, cmd->size, word, sizeof word), err->code, err->msg);
}

static void s_router_one(api *a, const push_frames *f)
{
    int nenv = s_envelope(f);
    if (nenv < 0) {
        log_warn("api: dropped request without an empty delimiter frame "
                 "followed by a command (%d frames)",
                 f->count);
        return;
    }
    reply r;
    broker_err err;
    if (api_request(a->broker, f->frame, nenv, f->frame + nenv, f->count - nenv,
                    &r, &err) < 0)
        s_log_rejected("api", &f->frame[nenv], &err, PB_LOG_DEBUG);
    /* at once, or held back until the message it acknowledges is committed */
    broker_send(a->broker, a->router, &r);
}

static void s_pull_one(api *a, const push_frames *f)
{
    reply r;
    broker_err err;
    if (api_request(a->broker, NULL, 0, f->frame, f->count, &r, &err) < 0)
        s_log_rejected("push", &f->frame[0], &err, PB_LOG_WARN);
    reply_free(&r);
}

static void s_drain(api *a, void *sock, const char *what, int max,
                    void (*one)(api *, const push_frames *))
{
    for (int i = 0; i < max; i++) {
        push_frames f;
        if (push_frames_recv(sock, &f, ZMQ_DONTWAIT) < 0) {
            if (errno == EPROTO) {
                log_warn("%s: dropped request with more than %d frames", what,
                         PUSH_MAX_FRAMES);
                continue;
            }
            if (errno != EAGAIN && errno != EINTR && errno != ETERM)
                log_error("%s: receive failed: %s", what, zmq_strerror(errno));
            return;
        }
        one(a, &f);
        push_frames_close(&f);
    }
}

void api_handle_router(api *a, int max)
{
    s_drain(a, a->router, "api", max, s_router_one);
}

void api_handle_pull(api *a, int max)
{
    s_drain(a, a->pull, "push", max, s_pull_one);
}
