/*
 * websocket.c — the WebSocket transport (RFC 6455, RFC 7692).
 *
 * The handler's worker does the handshake, subscribes the URL's channel,
 * sends the 101 and the missed history, and parks the connection.  Then the
 * reactor reads frames without blocking (the connection's input filters, so
 * TLS works), answers pings and closes itself, and writes messages; a
 * command that needs the broker (subscribe, publish) borrows a worker.
 * The JSON protocol on the socket is described in docs/protocol.md.
 */
#include "transports.h"
#include "link.h"
#include "poll_format.h"
#include "push_proto.h"
#include "push_token.h"
#include "ws_deflate.h"
#include "ws_frame.h"
#include "utf8.h"

#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

APLOG_USE_MODULE(push);

#define WS_MAX_PENDING   256          /* commands waiting for a worker */
#define WS_COMPRESS_MIN  64           /* smaller messages are not worth deflating */
#define WS_END           (-100)       /* unit callback: the connection ends */
/* 1013 "Try Again Later" (IANA registry, after RFC 6455): sent, never
 * accepted from a client (push_ws_close_code_valid keeps to RFC 6455). */
#define PUSH_WS_CLOSE_TRY_AGAIN 1013

/* Commands answered in the order they came: while any waits for a worker,
 * the replies the reactor could give at once (pong, errors, unsubscribe)
 * wait behind it as CMD_REPLY / CMD_UNSUBSCRIBE. */
enum { CMD_SUBSCRIBE, CMD_PUBLISH, CMD_UNSUBSCRIBE, CMD_REPLY };

typedef struct ws_cmd {
    struct ws_cmd *next;
    int            op;
    char          *channel;
    char          *data;     /* PUBLISH */
    size_t         len;
    char          *event;    /* PUBLISH, may be NULL */
    char          *ref;      /* the client's "ref" as JSON text, may be NULL */
    int            has_cursor;
    uint64_t       cursor;
    int            presence;  /* SUBSCRIBE: join/leave events wanted */
} ws_cmd;

typedef struct ws_state {
    push_ws_parser        parser;
    push_ws_compressor   *comp;
    push_ws_decompressor *decomp;
    apr_bucket_brigade   *in;
    ws_cmd               *cmds, *cmds_tail;
    int                   ncmds;
    int                   close_sent;
    int                   awaiting_pong;
    int                   ended;        /* set by the unit callback */
    int                   running;      /* a borrowed worker is running the commands */
    int                   nsubscribes;  /* CMD_SUBSCRIBE among cmds */
    char                 *token;        /* the handshake's token (PushTokenRequire), or NULL */
    double                rate_tokens;  /* PushWebSocketPublishRate: the token bucket */
    apr_time_t            rate_at;      /* when it was last filled (0: never) */
} ws_state;

/* ---- writing frames (owner thread) ----------------------------------------------- */

static void s_frame(push_hold *h, int opcode, const void *data, size_t len)
{
    ws_state *ws = h->tdata;
    unsigned char hdr[PUSH_WS_HEADER_MAX];
    if (ws->close_sent)               /* nothing may follow a close frame */
        return;
    if (ws->comp && (opcode == PUSH_WS_OP_TEXT || opcode == PUSH_WS_OP_BINARY)
        && len >= WS_COMPRESS_MIN) {
        unsigned char *z;
        size_t zlen;
        if (push_ws_compress(ws->comp, data, len, &z, &zlen) == PUSH_WS_DEFLATE_OK) {
            size_t n = push_ws_frame_header(hdr, opcode, 1, 1, zlen);
            push_hold_write(h, (const char *)hdr, n);
            push_hold_write(h, (const char *)z, zlen);
            free(z);
            return;
        }
    }
    size_t n = push_ws_frame_header(hdr, opcode, 1, 0, len);
    push_hold_write(h, (const char *)hdr, n);
    if (len)
        push_hold_write(h, data, len);
}

static void s_text(push_hold *h, const char *json)
{
    s_frame(h, PUSH_WS_OP_TEXT, json, strlen(json));
}

static void s_close(push_hold *h, unsigned code, const char *reason)
{
    ws_state *ws = h->tdata;
    unsigned char payload[PUSH_WS_CONTROL_MAX];
    if (ws->close_sent)
        return;
    size_t n = code ? push_ws_close_payload(payload, code, reason) : 0;
    if (code == PUSH_WS_CLOSE_TRY_AGAIN) {
        size_t rlen = reason ? strlen(reason) : 0;      /* ASCII, ours */
        if (rlen > PUSH_WS_CONTROL_MAX - 2)
            rlen = PUSH_WS_CONTROL_MAX - 2;
        payload[0] = (unsigned char)(code >> 8);
        payload[1] = (unsigned char)code;
        if (rlen)
            memcpy(payload + 2, reason, rlen);
        n = 2 + rlen;
    }
    s_frame(h, PUSH_WS_OP_CLOSE, payload, n);
    ws->close_sent = 1;
}

/* JSON string literal of s, malloc'ed. */
static char *s_jstr(const char *s, size_t len)
{
    char *out = malloc(push_json_str_max(len) + 1);
    if (out)
        out[push_json_str(out, s, len)] = '\0';
    return out;
}

/* A formatted text frame.  Malloc'ed, not from a pool: a connection lives
 * long, and its pools would grow with every reply. */
static void s_textf(push_hold *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void s_queue_text(push_hold *h, char *text, size_t len);

static void s_textf(push_hold *h, const char *fmt, ...)
{
    ws_state *ws = h->tdata;
    char *json;
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&json, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if (ws->cmds && !ws->running) {
        s_queue_text(h, json, (size_t)n);      /* takes json */
        return;
    }
    s_frame(h, PUSH_WS_OP_TEXT, json, (size_t)n);
    free(json);
}

/* {"type":"error","code":..,"message":..[,"ref":..]} */
static void s_error(push_hold *h, const char *code, const char *msg, const char *ref)
{
    char *c = s_jstr(code, strlen(code)), *m = s_jstr(msg, strlen(msg));
    if (c && m)
        s_textf(h, "{\"type\":\"error\",\"code\":%s,\"message\":%s%s%s}",
                c, m, ref ? ",\"ref\":" : "", ref ? ref : "");
    free(c);
    free(m);
}

/* One delivered message: raw data, or the JSON message object. */
static void s_message(push_hold *h, const push_msg *m)
{
    if (m->presence) {               /* {"type":"join"|"leave",...}; raw sockets carry data only */
        if (!h->set.ws_raw)
            s_frame(h, PUSH_WS_OP_TEXT, m->json, m->json_len);
        return;
    }
    if (h->set.ws_raw) {
        /* A text frame must be UTF-8 (RFC 6455 §8.1). */
        int binary = (m->event && strcmp(m->event, "~binary") == 0)
                     || !push_utf8_valid(m->data, m->data_len);
        s_frame(h, binary ? PUSH_WS_OP_BINARY : PUSH_WS_OP_TEXT, m->data, m->data_len);
        return;
    }
    if (m->ws_json)
        s_frame(h, PUSH_WS_OP_TEXT, m->ws_json, m->ws_json_len);
}

/* ---- reactor: transport callbacks ---------------------------------------------------- */

static int s_deliver(push_hold *h, push_entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        s_message(h, e[i].msg);
        if (!e[i].msg->presence)
            e[i].sub->sent_id = e[i].msg->id;
    }
    return push_hold_flush(h) < 0;
}

/* Server pings keep intermediaries from timing the socket out and find
 * peers that vanished: no pong by the next ping ends the connection. */
static int s_tick(push_hold *h, apr_time_t now)
{
    ws_state *ws = h->tdata;
    if (ws->awaiting_pong) {
        push_hold_log(h, APLOG_DEBUG, APLOGNO(20050), "WebSocket peer did not answer a ping: closing");
        h->aborted = 1;
        return 1;
    }
    s_frame(h, PUSH_WS_OP_PING, "mod_push", 8);
    ws->awaiting_pong = 1;
    h->deadline = now + h->set.ws_ping;
    return push_hold_flush(h) < 0;
}

static void s_stop(push_hold *h)
{
    s_close(h, PUSH_WS_CLOSE_GOING_AWAY, "server stopping");
    push_hold_flush(h);
}

/* A slow consumer: 1013 "try again later"; the client reconnects with its
 * last id and is told of any gap.  Written without blocking; the worker
 * that finishes the connection flushes what it can. */
static void s_slow(push_hold *h)
{
    s_close(h, PUSH_WS_CLOSE_TRY_AGAIN, "slow consumer: too many messages queued");
    push_hold_flush(h);
}

static void s_cleanup(push_hold *h)
{
    ws_state *ws = h->tdata;
    if (!ws)
        return;
    push_ws_parser_free(&ws->parser);
    push_ws_compressor_free(ws->comp);
    push_ws_decompressor_free(ws->decomp);
    for (ws_cmd *c = ws->cmds, *n; c; c = n) {
        n = c->next;
        free(c->channel);
        free(c->data);
        free(c->event);
        free(c->ref);
        free(c);
    }
    free(ws->token);
    free(ws);
    h->tdata = NULL;
}

/* ---- commands from the client ------------------------------------------------------- */

static void s_queue(ws_state *ws, ws_cmd *cmd)
{
    if (cmd->op == CMD_SUBSCRIBE)
        ws->nsubscribes++;
    if (ws->cmds_tail)
        ws->cmds_tail->next = cmd;
    else
        ws->cmds = cmd;
    ws->cmds_tail = cmd;
    ws->ncmds++;
}

/* Where PushTokenRequire is on: may this connection do right on channel?
 * The token is the command's "token" member when it has one (root may be
 * NULL), else the handshake's.  Returns 1, or 0 after logging why and, in
 * JSON mode, answering {"type":"error","code":"forbidden",...}; *result
 * (may be NULL) gets the push_token_result. */
static int s_allowed(push_hold *h, const cJSON *root, const char *channel, int right,
                     const char *ref, int *result)
{
    ws_state *ws = h->tdata;
    if (result)
        *result = PUSH_TOKEN_OK;
    if (!h->set.token_require)
        return 1;
    const cJSON *tj = root ? cJSON_GetObjectItemCaseSensitive(root, "token") : NULL;
    char sub[PUSH_IDENTITY_MAX + 1] = "";
    int rc;
    if (!h->set.token_secret)
        rc = PUSH_TOKEN_BAD_SIGNATURE;      /* the handshake was refused already */
    else if (tj && !cJSON_IsString(tj))
        rc = PUSH_TOKEN_MALFORMED;
    else
        rc = push_token_verify(h->set.token_secret, h->set.token_secret_len,
                               tj ? tj->valuestring : ws->token,
                               (int64_t)apr_time_sec(apr_time_now()), channel, right, sub);
    if (rc == PUSH_TOKEN_OK)
        return 1;
    if (result)
        *result = rc;
    push_token_log(NULL, h->c, h->client_ip, channel, right, rc, sub);
    if (!h->set.ws_raw) {
        char *msg = NULL;
        if (rc == PUSH_TOKEN_NO_RIGHT && asprintf(&msg, "token does not grant %s on channel %s",
                                                  push_token_right_name(right), channel) < 0)
            msg = NULL;
        s_error(h, "forbidden", msg ? msg : push_token_result_str(rc), ref);
        free(msg);
    }
    return 0;
}

/* PushWebSocketPublishRate: a token bucket holding at most `rate` publishes,
 * filled with `rate` a second.  Returns 1 when this publish may go. */
static int s_rate_ok(push_hold *h)
{
    ws_state *ws = h->tdata;
    int rate = h->set.ws_publish_rate;
    if (rate <= 0)
        return 1;
    apr_time_t now = apr_time_now();
    if (!ws->rate_at)
        ws->rate_tokens = rate;
    else if (now > ws->rate_at) {
        ws->rate_tokens += (double)(now - ws->rate_at) * rate / (double)APR_USEC_PER_SEC;
        if (ws->rate_tokens > rate)
            ws->rate_tokens = rate;
    }
    ws->rate_at = now;
    if (ws->rate_tokens < 1.0)
        return 0;
    ws->rate_tokens -= 1.0;
    return 1;
}

/* Queue a publish of data to channel; returns 0, or a close code. */
static int s_queue_publish(push_hold *h, const char *channel, const char *data, size_t len,
                           const char *event, const char *ref)
{
    ws_state *ws = h->tdata;
    ws_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
        return PUSH_WS_CLOSE_INTERNAL;
    cmd->op = CMD_PUBLISH;
    cmd->channel = strdup(channel);
    cmd->data = push_memdup_str(data, len);
    cmd->len = len;
    cmd->event = event ? strdup(event) : NULL;
    cmd->ref = ref ? strdup(ref) : NULL;
    s_queue(ws, cmd);
    if (!cmd->channel || !cmd->data || (event && !cmd->event) || (ref && !cmd->ref))
        return PUSH_WS_CLOSE_INTERNAL;
    return 0;
}

static const char *s_channel_arg(const cJSON *root)
{
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "channel");
    if (!cJSON_IsString(ch) || !push_channel_valid(ch->valuestring, strlen(ch->valuestring)))
        return NULL;
    return ch->valuestring;
}

static int s_cmd_subscribe(push_hold *h, const cJSON *root, const char *ref)
{
    ws_state *ws = h->tdata;
    const char *channel = s_channel_arg(root);
    const cJSON *last = cJSON_GetObjectItemCaseSensitive(root, "last_id");
    if (!channel) {
        s_error(h, PUSH_ERR_BAD_CHANNEL, "invalid channel name", ref);
        return 0;
    }
    if (last && !(cJSON_IsNumber(last) && last->valuedouble >= 0
                  && last->valuedouble <= 9007199254740992.0)) {
        s_error(h, PUSH_ERR_BAD_REQUEST, "last_id must be a message id", ref);
        return 0;
    }
    int presence = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "presence"));
    if (!s_allowed(h, root, channel, PUSH_RIGHT_SUBSCRIBE, ref, NULL)
        || (presence && !s_allowed(h, root, channel, PUSH_RIGHT_PRESENCE, ref, NULL)))
        return 0;
    int n = 0;
    for (push_sub *s = h->client.subs; s; s = s->client_next)
        n++;
    if (!push_hub_find(&h->client, channel) && n + ws->nsubscribes >= h->set.max_channels) {
        char *msg = NULL;
        if (asprintf(&msg, "too many channels on this connection (PushMaxChannels %d)",
                     h->set.max_channels) < 0)
            msg = NULL;
        s_error(h, "limit", msg ? msg : "too many channels on this connection", ref);
        free(msg);
        return 0;
    }
    ws_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
        return PUSH_WS_CLOSE_INTERNAL;
    cmd->op = CMD_SUBSCRIBE;
    cmd->channel = strdup(channel);
    cmd->ref = ref ? strdup(ref) : NULL;
    cmd->has_cursor = last != NULL;
    cmd->cursor = last ? (uint64_t)last->valuedouble : 0;
    cmd->presence = presence;
    s_queue(ws, cmd);
    return cmd->channel && (!ref || cmd->ref) ? 0 : PUSH_WS_CLOSE_INTERNAL;
}

static void s_do_unsubscribe(push_hold *h, const char *channel, const char *ref)
{
    push_child *ch = push_child_get();
    if (!push_hub_unsubscribe(ch->hub, &h->client, channel)) {
        s_error(h, "not_subscribed", "not subscribed to this channel", ref);
        return;
    }
    char *c = s_jstr(channel, strlen(channel));
    if (c)
        s_textf(h, "{\"type\":\"unsubscribed\",\"channel\":%s%s%s}", c,
                ref ? ",\"ref\":" : "", ref ? ref : "");
    free(c);
}

static int s_cmd_unsubscribe(push_hold *h, const cJSON *root, const char *ref)
{
    ws_state *ws = h->tdata;
    const char *channel = s_channel_arg(root);
    if (!channel) {
        s_error(h, PUSH_ERR_BAD_CHANNEL, "invalid channel name", ref);
        return 0;
    }
    if (!ws->cmds) {
        s_do_unsubscribe(h, channel, ref);
        return 0;
    }
    ws_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
        return PUSH_WS_CLOSE_INTERNAL;
    cmd->op = CMD_UNSUBSCRIBE;
    cmd->channel = strdup(channel);
    cmd->ref = ref ? strdup(ref) : NULL;
    s_queue(ws, cmd);
    return cmd->channel && (!ref || cmd->ref) ? 0 : PUSH_WS_CLOSE_INTERNAL;
}

/* A reply waiting behind earlier commands; takes text (malloc'ed). */
static void s_queue_text(push_hold *h, char *text, size_t len)
{
    ws_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd) {
        free(text);
        return;
    }
    cmd->op = CMD_REPLY;
    cmd->data = text;
    cmd->len = len;
    s_queue(h->tdata, cmd);
}

static int s_cmd_publish(push_hold *h, const cJSON *root, const char *ref)
{
    if (!h->set.ws_publish) {
        s_error(h, "forbidden", "publishing is not allowed on this location", ref);
        return 0;
    }
    const char *channel = s_channel_arg(root);
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "event");
    if (!channel) {
        s_error(h, PUSH_ERR_BAD_CHANNEL, "invalid channel name", ref);
        return 0;
    }
    if (!cJSON_IsString(data)) {
        s_error(h, PUSH_ERR_BAD_REQUEST, "\"data\" must be a string", ref);
        return 0;
    }
    if (ev && !cJSON_IsNull(ev)
        && (!cJSON_IsString(ev) || !push_event_valid(ev->valuestring, strlen(ev->valuestring)))) {
        s_error(h, PUSH_ERR_BAD_REQUEST, "\"event\" must be a short token", ref);
        return 0;
    }
    if (!s_allowed(h, root, channel, PUSH_RIGHT_PUBLISH, ref, NULL))
        return 0;
    if (!s_rate_ok(h)) {
        char *msg = NULL;
        if (asprintf(&msg, "more than %d messages a second (PushWebSocketPublishRate); "
                     "not published", h->set.ws_publish_rate) < 0)
            msg = NULL;
        s_error(h, "rate_limited", msg ? msg : "publish rate exceeded; not published", ref);
        free(msg);
        return 0;
    }
    return s_queue_publish(h, channel, data->valuestring, strlen(data->valuestring),
                           cJSON_IsString(ev) && *ev->valuestring ? ev->valuestring : NULL, ref);
}

/* A text message in JSON mode.  Returns 0 or a close code. */
static int s_command(push_hold *h, const char *text, size_t len)
{
    if (memchr(text, '\0', len)) {
        s_error(h, PUSH_ERR_BAD_REQUEST, "NUL characters are not allowed", NULL);
        return 0;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
    while (root && end < text + len && strchr(" \t\r\n", *end))
        end++;
    if (root && end != text + len) {          /* one JSON object, nothing after it */
        cJSON_Delete(root);
        root = NULL;
    }
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        s_error(h, PUSH_ERR_BAD_REQUEST, "malformed JSON", NULL);
        return 0;
    }
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
    const cJSON *refj = cJSON_GetObjectItemCaseSensitive(root, "ref");
    char *ref = refj ? cJSON_PrintUnformatted(refj) : NULL;
    int rc = 0;
    const char *t = cJSON_IsString(type) ? type->valuestring : "";
    if (strcmp(t, "subscribe") == 0)
        rc = s_cmd_subscribe(h, root, ref);
    else if (strcmp(t, "unsubscribe") == 0)
        rc = s_cmd_unsubscribe(h, root, ref);
    else if (strcmp(t, "publish") == 0)
        rc = s_cmd_publish(h, root, ref);
    else if (strcmp(t, "ping") == 0)
        s_textf(h, "{\"type\":\"pong\"%s%s}", ref ? ",\"ref\":" : "", ref ? ref : "");
    else
        s_error(h, PUSH_ERR_UNKNOWN_CMD, "unknown \"type\"", ref);
    free(ref);
    cJSON_Delete(root);
    return rc;
}

/* A whole data message from the client.  Returns 0 or a close code. */
static int s_data(push_hold *h, const push_ws_unit *u)
{
    ws_state *ws = h->tdata;
    const unsigned char *data = u->data;
    size_t len = u->len;
    unsigned char *inflated = NULL;
    if (u->compressed) {
        int rc = ws->decomp ? push_ws_decompress(ws->decomp, data, len, h->set.ws_max_message,
                                                 &inflated, &len)
                            : PUSH_WS_DEFLATE_CORRUPT;
        if (rc == PUSH_WS_DEFLATE_TOO_BIG)
            return PUSH_WS_CLOSE_TOO_BIG;
        if (rc != PUSH_WS_DEFLATE_OK)
            return rc == PUSH_WS_DEFLATE_CORRUPT ? PUSH_WS_CLOSE_INVALID_DATA
                                                 : PUSH_WS_CLOSE_INTERNAL;
        data = inflated;
        if (u->opcode == PUSH_WS_OP_TEXT && !push_utf8_valid(data, len)) {
            free(inflated);
            return PUSH_WS_CLOSE_INVALID_DATA;
        }
    }
    int rc = 0;
    if (h->set.ws_raw) {
        int why;
        if (!h->set.ws_publish)
            s_close(h, PUSH_WS_CLOSE_POLICY, "publishing is not allowed here"), rc = WS_END;
        else if (!s_allowed(h, NULL, h->channel, PUSH_RIGHT_PUBLISH, NULL, &why))
            s_close(h, PUSH_WS_CLOSE_POLICY, push_token_result_str(why)), rc = WS_END;
        else if (!s_rate_ok(h))
            s_close(h, PUSH_WS_CLOSE_POLICY, "publish rate exceeded"), rc = WS_END;
        else
            rc = s_queue_publish(h, h->channel, (const char *)data, len,
                                 u->opcode == PUSH_WS_OP_BINARY ? "~binary" : NULL, NULL);
    }
    else if (u->opcode == PUSH_WS_OP_BINARY)
        s_error(h, PUSH_ERR_BAD_REQUEST, "commands are JSON text messages", NULL);
    else
        rc = s_command(h, (const char *)data, len);
    free(inflated);
    return rc;
}

static int s_on_unit(void *arg, const push_ws_unit *u)
{
    push_hold *h = arg;
    ws_state *ws = h->tdata;
    switch (u->opcode) {
    case PUSH_WS_OP_PING:
        s_frame(h, PUSH_WS_OP_PONG, u->data, u->len);
        return 0;
    case PUSH_WS_OP_PONG:
        ws->awaiting_pong = 0;
        return 0;
    case PUSH_WS_OP_CLOSE:
        /* Echo the code (none for an empty close), then the server closes TCP. */
        s_close(h, u->close_code, NULL);
        return WS_END;
    default:
        if (ws->ncmds >= WS_MAX_PENDING)
            return PUSH_WS_CLOSE_POLICY;
        return s_data(h, u);
    }
}

static void s_run_cmds(push_hold *h);

/* Parse bytes the client sent.  Returns 1 when the hold ends, 0 to read
 * on, -1 when the reactor must wait for a worker (commands to run). */
static int s_feed(push_hold *h, const char *data, size_t len)
{
    ws_state *ws = h->tdata;
    int rc = push_ws_parser_feed(&ws->parser, data, len, s_on_unit, h);
    if (rc != WS_END && rc <= 0)
        return 0;
    if (rc > 0)
        s_close(h, (unsigned)rc, NULL);
    if (push_hold_flush(h) < 0)
        return 1;
    /* Publishes that came before the end are still done; then the reactor
     * ends the connection (close_sent). */
    for (ws_cmd *c = ws->cmds; c && ws->close_sent; c = c->next)
        if (c->op == CMD_PUBLISH) {
            push_hold_borrow(h, s_run_cmds);
            return -1;
        }
    return 1;
}

/* What the client sent, through httpd's input filters.  Returns 1 when
 * the hold ends, 0 when the filters have no more, -1 as s_feed. */
static int s_read_filters(push_hold *h)
{
    ws_state *ws = h->tdata;
    apr_brigade_cleanup(ws->in);
    apr_status_t rv = ap_get_brigade(h->c->input_filters, ws->in, AP_MODE_READBYTES,
                                     APR_NONBLOCK_READ, 16384);
    if (APR_STATUS_IS_EAGAIN(rv) || (rv == APR_SUCCESS && APR_BRIGADE_EMPTY(ws->in))) {
        /* A non-blocking read reports the peer's FIN only as "nothing
         * yet", and edge-triggered epoll says no more: look at the socket. */
        char b;
        if (recv(h->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0) {
            h->aborted = !ws->close_sent;
            return 1;
        }
        return 2;
    }
    if (rv != APR_SUCCESS) {
        h->aborted = !ws->close_sent;
        return 1;
    }
    for (apr_bucket *b = APR_BRIGADE_FIRST(ws->in); b != APR_BRIGADE_SENTINEL(ws->in);
         b = APR_BUCKET_NEXT(b)) {
        const char *data;
        apr_size_t len;
        if (APR_BUCKET_IS_EOS(b)) {
            h->aborted = !ws->close_sent;
            return 1;
        }
        if (apr_bucket_read(b, &data, &len, APR_BLOCK_READ) != APR_SUCCESS)
            return h->aborted = 1;
        int rc = s_feed(h, data, len);
        if (rc)
            return rc;
    }
    return 0;
}

/* The same straight from the socket (a detached connection). */
static int s_read_socket(push_hold *h)
{
    ws_state *ws = h->tdata;
    char buf[16384];
    ssize_t n = recv(h->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return 2;
    if (n <= 0) {
        h->aborted = !ws->close_sent;
        return 1;
    }
    return s_feed(h, buf, (size_t)n);
}

/* Reactor: read what the client sent, until there is no more. */
static int s_readable(push_hold *h)
{
    ws_state *ws = h->tdata;
    if (ws->close_sent) {             /* a worker closed it (refused raw publish) */
        push_hold_flush(h);
        return 1;
    }
    for (;;) {
        if (ws->ncmds >= WS_MAX_PENDING / 2) {
            h->input_pending = 1;        /* read on when the worker is back */
            break;
        }
        int rc = h->lean ? s_read_socket(h) : s_read_filters(h);
        if (rc == 1)
            return 1;
        if (rc == -1)
            return 0;
        if (rc == 2)
            break;
    }
    if (push_hold_flush(h) < 0)
        return 1;
    if (ws->cmds)
        push_hold_borrow(h, s_run_cmds);
    return 0;
}

const push_transport push_ws_transport = {
    .name = "websocket", .slot = PUSH_TP_WEBSOCKET, .deliver = s_deliver, .tick = s_tick, .stop = s_stop,
    .slow = s_slow, .readable = s_readable, .upgraded = 1, .cleanup = s_cleanup,
};

/* ---- commands that need the broker (a borrowed worker, or the handler) ------------- */

static const char *s_ref_suffix(apr_pool_t *p, const char *ref)
{
    return ref ? apr_pstrcat(p, ",\"ref\":", ref, NULL) : "";
}

/* Subscribe and send what the client missed, then the acknowledgement. */
static void s_subscribe(push_hold *h, apr_pool_t *p, const char *channel, int has_cursor,
                        uint64_t cursor, int presence, const char *ref)
{
    push_child *ch = push_child_get();
    push_sub *sub = push_hub_find(&h->client, channel);
    int full = 0;
    if (!sub && !(sub = push_hub_subscribe_max(ch->hub, &h->client, channel,
                                               h->set.max_subscribers, &full))) {
        if (!full) {
            s_error(h, "internal", "out of memory", ref);
            return;
        }
        push_hold_log(h, APLOG_INFO, APLOGNO(20084), "WebSocket subscribe refused: channel %s "
                      "has %d subscribers in this process (PushMaxSubscribers)", channel,
                      h->set.max_subscribers);
        s_error(h, "limit", apr_psprintf(p, "channel %s has reached its subscriber limit "
                                         "(PushMaxSubscribers %d)", channel,
                                         h->set.max_subscribers), ref);
        return;
    }
    sub->want_presence = presence;
    push_history *hist;
    int st = push_history_since(p, h->c, channel, has_cursor, &cursor, &hist);
    if (st != OK) {
        push_hub_unsubscribe(ch->hub, &h->client, channel);
        s_error(h, st == HTTP_SERVICE_UNAVAILABLE ? PUSH_ERR_UNAVAILABLE : PUSH_ERR_BAD_REQUEST,
                st == HTTP_SERVICE_UNAVAILABLE ? "the message broker is not reachable"
                                               : "history query failed", ref);
        return;
    }
    sub->sent_id = has_cursor ? cursor : hist->last_id;
    if (hist->gap && !h->set.ws_raw)
        s_textf(h, "{\"type\":\"gap\",%s", hist->gap + 1);
    for (int i = 0; i < hist->n; i++) {
        s_message(h, hist->msgs[i]);
        sub->sent_id = hist->msgs[i]->id;
    }
    if (!h->set.ws_raw) {
        char *c = s_jstr(channel, strlen(channel));
        if (c)
            s_text(h, apr_psprintf(p, "{\"type\":\"subscribed\",\"channel\":%s,\"last_id\":%"
                                   APR_UINT64_T_FMT "%s}", c, sub->sent_id,
                                   s_ref_suffix(p, ref)));
        free(c);
    }
}

static void s_publish(push_hold *h, apr_pool_t *p, ws_cmd *cmd)
{
    push_child *ch = push_child_get();
    push_frame req[4] = { push_str_frame(PUSH_LINK_PUBLISH), push_str_frame(cmd->channel),
                          { cmd->data, cmd->len }, push_str_frame(cmd->event) };
    push_frames rep;
    if (push_link_request(ch->link, req, 4, ch->broker_timeout_ms, &rep) < 0) {
        s_error(h, PUSH_ERR_UNAVAILABLE, "the message broker is not reachable; not published",
                cmd->ref);
        return;
    }
    uint64_t id, subs;
    if (push_frame_is(&rep, 2, PUSH_REP_OK) && rep.count == 5
        && push_parse_u64(rep.frame[3].data, rep.frame[3].size, &id) == 0
        && push_parse_u64(rep.frame[4].data, rep.frame[4].size, &subs) == 0) {
        char *c = s_jstr(cmd->channel, strlen(cmd->channel));
        if (c && !h->set.ws_raw)
            s_text(h, apr_psprintf(p, "{\"type\":\"published\",\"channel\":%s,\"id\":%"
                                   APR_UINT64_T_FMT ",\"subscribers\":%" APR_UINT64_T_FMT "%s}",
                                   c, id, subs, s_ref_suffix(p, cmd->ref)));
        free(c);
    }
    else if (push_frame_is(&rep, 2, PUSH_REP_ERR) && rep.count == 5) {
        if (h->set.ws_raw)
            s_close(h, PUSH_WS_CLOSE_POLICY, "message refused");
        else
            s_error(h, apr_pstrmemdup(p, rep.frame[3].data, rep.frame[3].size),
                    apr_pstrmemdup(p, rep.frame[4].data, rep.frame[4].size), cmd->ref);
    }
    push_frames_close(&rep);
}

/* Borrowed worker: run every queued command, then let the reactor flush. */
static void s_run_cmds(push_hold *h)
{
    ws_state *ws = h->tdata;
    apr_pool_t *p;
    if (push_hold_pool(h, &p) != APR_SUCCESS)
        return;
    ws->running = 1;
    while (ws->cmds) {
        ws_cmd *cmd = ws->cmds;
        ws->cmds = cmd->next;
        if (!ws->cmds)
            ws->cmds_tail = NULL;
        ws->ncmds--;
        if (cmd->op == CMD_SUBSCRIBE)
            ws->nsubscribes--;
        if (cmd->op == CMD_SUBSCRIBE && ws->close_sent)
            ;                         /* closing: only publishes are still done */
        else if (cmd->op == CMD_SUBSCRIBE)
            s_subscribe(h, p, cmd->channel, cmd->has_cursor, cmd->cursor, cmd->presence,
                        cmd->ref);
        else if (cmd->op == CMD_UNSUBSCRIBE)
            s_do_unsubscribe(h, cmd->channel, cmd->ref);
        else if (cmd->op == CMD_REPLY)
            s_frame(h, PUSH_WS_OP_TEXT, cmd->data, cmd->len);
        else
            s_publish(h, p, cmd);
        free(cmd->channel);
        free(cmd->data);
        free(cmd->event);
        free(cmd->ref);
        free(cmd);
        apr_pool_clear(p);
    }
    ws->running = 0;
    apr_pool_destroy(p);
    push_hold_flush(h);
    if (ws->close_sent)
        h->input_pending = 1;         /* the reactor ends it when it takes it back */
}

/* ---- the handshake (the handler's worker) ----------------------------------------------- */

static int s_token_in(const char *list, const char *token)
{
    return push_header_has_token(list, token, 0);
}

static int s_origin_allowed(request_rec *r, const push_settings *set)
{
    if (!set->ws_origins)
        return 1;
    const char *origin = apr_table_get(r->headers_in, "Origin");
    const char **allowed = (const char **)set->ws_origins->elts;
    for (int i = 0; origin && i < set->ws_origins->nelts; i++)
        if (strcmp(allowed[i], "*") == 0 || strcasecmp(allowed[i], origin) == 0)
            return 1;
    return 0;
}

/* The first of our subprotocols that the client offers, or NULL. */
static const char *s_subprotocol(request_rec *r, const push_settings *set)
{
    const char *offer = apr_table_get(r->headers_in, "Sec-WebSocket-Protocol");
    if (!offer || !set->ws_protocols)
        return NULL;
    const char **ours = (const char **)set->ws_protocols->elts;
    for (int i = 0; i < set->ws_protocols->nelts; i++)
        if (push_header_has_token(offer, ours[i], 1))   /* subprotocols: case-sensitive */
            return ours[i];
    return NULL;
}

static int s_refuse(request_rec *r, int status, const char *msg)
{
    return push_json_error(r, status, PUSH_ERR_BAD_REQUEST, msg);
}

/* RFC 6455 §4.2.1: what makes a request a valid opening handshake. */
static int s_check_request(request_rec *r, const push_settings *set)
{
    const char *key = apr_table_get(r->headers_in, "Sec-WebSocket-Key");
    const char *version = apr_table_get(r->headers_in, "Sec-WebSocket-Version");
    if (!set->ws_enabled)
        return s_refuse(r, HTTP_BAD_REQUEST, "WebSocket is not enabled on this location");
    if (r->proto_num < HTTP_VERSION(1, 1)
        || !s_token_in(apr_table_get(r->headers_in, "Connection"), "upgrade"))
        return s_refuse(r, HTTP_BAD_REQUEST, "a WebSocket handshake needs HTTP/1.1 and Connection: Upgrade");
    if (!key || !push_ws_key_valid(key))
        return s_refuse(r, HTTP_BAD_REQUEST, "missing or malformed Sec-WebSocket-Key");
    if (!version || strcmp(version, "13") != 0) {
        apr_table_setn(r->err_headers_out, "Sec-WebSocket-Version", "13");
        apr_table_setn(r->err_headers_out, "Upgrade", "websocket");   /* RFC 7231 §6.5.15 */
        return s_refuse(r, HTTP_UPGRADE_REQUIRED, "unsupported Sec-WebSocket-Version; use 13");
    }
    if (!s_origin_allowed(r, set)) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(20051)
                      "WebSocket from Origin %s refused (PushWebSocketOrigins)",
                      apr_table_get(r->headers_in, "Origin"));
        return push_json_error(r, HTTP_FORBIDDEN, "forbidden", "Origin not allowed");
    }
    if (r->connection->master)
        return push_json_error(r, HTTP_NOT_IMPLEMENTED, PUSH_ERR_BAD_REQUEST,
                               "WebSocket over HTTP/2 is not supported; use HTTP/1.1");
    return OK;
}

static ws_state *s_state_new(request_rec *r, const push_settings *set, const char *offers,
                             char response[PUSH_WS_DEFLATE_RESPONSE_MAX])
{
    ws_state *ws = calloc(1, sizeof *ws);
    if (!ws)
        return NULL;
    push_ws_deflate_params dp;
    push_ws_deflate_config cfg = { .server_no_context_takeover = 1 };
    response[0] = '\0';
    int deflate = set->ws_deflate && offers && push_ws_deflate_negotiate(offers, &cfg, &dp, response);
    push_ws_parser_init(&ws->parser, set->ws_max_message, deflate);
    if (deflate) {
        ws->comp = push_ws_compressor_new(dp.server_max_window_bits,
                                          dp.server_no_context_takeover, -1);
        ws->decomp = push_ws_decompressor_new(dp.client_max_window_bits,
                                              dp.client_no_context_takeover);
    }
    ws->in = apr_brigade_create(r->connection->pool, r->connection->bucket_alloc);
    if (deflate && (!ws->comp || !ws->decomp)) {
        push_ws_parser_free(&ws->parser);
        push_ws_compressor_free(ws->comp);
        push_ws_decompressor_free(ws->decomp);
        free(ws);
        return NULL;
    }
    return ws;
}

static void s_send_101(request_rec *r, const char *accept, const char *protocol,
                       const char *extensions)
{
    r->status = HTTP_SWITCHING_PROTOCOLS;
    r->status_line = ap_get_status_line(HTTP_SWITCHING_PROTOCOLS);
    apr_table_clear(r->headers_out);
    apr_table_setn(r->headers_out, "Upgrade", "websocket");
    apr_table_setn(r->headers_out, "Connection", "Upgrade");
    apr_table_setn(r->headers_out, "Sec-WebSocket-Accept", accept);
    if (protocol)
        apr_table_setn(r->headers_out, "Sec-WebSocket-Protocol", protocol);
    if (extensions && *extensions)
        apr_table_setn(r->headers_out, "Sec-WebSocket-Extensions", extensions);
    ap_send_interim_response(r, 1);
}

int push_ws_handle(request_rec *r, const char *channel, const push_settings *set,
                   int has_cursor, uint64_t cursor, const push_presence_req *pr)
{
    int st = s_check_request(r, set);
    if (st != OK || r->status != HTTP_OK)
        return st;
    push_child *ch = push_child_get();
    /* Refused before the 101 when it is known already (the subscription
     * itself checks again, under the hub's lock). */
    if (set->max_subscribers > 0 && push_hub_count(ch->hub, channel) >= set->max_subscribers)
        return push_subscriber_limit(r, set, channel);
    char accept[29], extensions[PUSH_WS_DEFLATE_RESPONSE_MAX];
    push_ws_accept_key(apr_table_get(r->headers_in, "Sec-WebSocket-Key"), accept);
    push_hold *h = push_hold_new(ch->rx, r, &push_ws_transport, set, channel);
    if (!h)
        return push_hold_refused(r, set);
    if (!(h->tdata = s_state_new(r, set, apr_table_get(r->headers_in,
                                                             "Sec-WebSocket-Extensions"),
                                       extensions))
        || (pr->identity && !(h->client.identity = strdup(pr->identity)))
        || (pr->token && !(((ws_state *)h->tdata)->token = strdup(pr->token)))) {
        push_hold_discard(ch->rx, h);
        return push_json_error(r, HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }
    s_send_101(r, accept, s_subprotocol(r, set), extensions);
    r->connection->keepalive = AP_CONN_CLOSE;
    /* mod_reqtimeout would cut a quiet socket: the protocol has its own pings. */
    ap_remove_input_filter_byhandle(r->connection->input_filters, "reqtimeout");
    h->out = r->connection->output_filters;

    s_subscribe(h, r->pool, channel, has_cursor, cursor, pr->events, NULL);
    apr_bucket *flush = apr_bucket_flush_create(r->connection->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(h->bb, flush);
    apr_status_t rv = ap_pass_brigade(h->out, h->bb);
    apr_brigade_cleanup(h->bb);
    if (rv != APR_SUCCESS || r->connection->aborted) {
        push_hold_discard(ch->rx, h);
        return OK;
    }
    if (set->ws_ping > 0)
        h->deadline = apr_time_now() + set->ws_ping;
    if (push_hold_detach(h))
        return OK;
    ap_set_module_config(r->connection->conn_config, &push_module, h);
    return SUSPENDED;
}
