/*
 * mod_push.c — module glue: configuration, directives, hooks.
 *
 * Transports live in sse.c and longpoll.c, the handlers in subscribe.c and
 * publish.c, the per-child machinery in hub.c, link.c and reactor.c.
 * Directives are documented in docs/directives.md.
 */
#include "mod_push.h"
#include "hub.h"
#include "link.h"
#include "link_keys.h"
#include "reactor.h"
#include "status.h"
#include "poll_format.h"
#include "push_proto.h"
#include "push_token.h"

#include "http_protocol.h"
#include "http_request.h"
#include "mpm_common.h"
#include "ap_mpm.h"
#include "apr_strings.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_BROKER_TIMEOUT_MS 5000
#define DEFAULT_LONGPOLL_TIMEOUT  30
#define DEFAULT_SSE_KEEPALIVE     15
#define DEFAULT_SSE_RETRY_MS      2000
#define DEFAULT_RETRY_AFTER       5
#define DEFAULT_MAX_QUEUE         1000
#define DEFAULT_WS_PING           30
#define DEFAULT_MAX_CHANNELS      256

/* Set once in child_init, before any other thread of ours starts. */
static push_child *s_child;

push_child *push_child_get(void)
{
    return s_child;
}

/* ---- configuration -------------------------------------------------------------- */

static void *s_create_server_conf(apr_pool_t *p, server_rec *s)
{
    push_server_conf *sc = apr_pcalloc(p, sizeof *sc);
    sc->broker_timeout_ms = PUSH_UNSET;
    return sc;
}

static void *s_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    push_server_conf *base = basev, *add = addv, *sc = apr_pcalloc(p, sizeof *sc);
    sc->broker = add->broker ? add->broker : base->broker;
    sc->broker_timeout_ms = add->broker_timeout_ms != PUSH_UNSET ? add->broker_timeout_ms
                                                                 : base->broker_timeout_ms;
    return sc;
}

static void *s_create_dir_conf(apr_pool_t *p, char *path)
{
    push_dir_conf *d = apr_pcalloc(p, sizeof *d);
    d->location = path;
    d->longpoll_timeout = d->sse_keepalive = d->sse_retry_ms = PUSH_UNSET;
    d->retry_after = d->max_queue = PUSH_UNSET;
    d->max_message_size = PUSH_UNSET;
    d->ws_enabled = d->ws_deflate = d->ws_ping = d->ws_publish = d->ws_raw = PUSH_UNSET;
    d->ws_max_message = PUSH_UNSET;
    d->presence_names = PUSH_UNSET;
    d->detach = PUSH_UNSET;
    d->token_secret_len = d->token_require = PUSH_UNSET;
    d->max_channels = d->max_subscribers = d->ws_publish_rate = PUSH_UNSET;
    return d;
}

#define MERGE(f) d->f = add->f != PUSH_UNSET ? add->f : base->f

static void *s_merge_dir_conf(apr_pool_t *p, void *basev, void *addv)
{
    push_dir_conf *base = basev, *add = addv, *d = apr_pcalloc(p, sizeof *d);
    d->location = add->location ? add->location : base->location;
    MERGE(longpoll_timeout);
    MERGE(sse_keepalive);
    MERGE(sse_retry_ms);
    MERGE(max_message_size);
    MERGE(retry_after);
    MERGE(max_queue);
    MERGE(ws_enabled);
    MERGE(ws_deflate);
    MERGE(ws_ping);
    MERGE(ws_max_message);
    MERGE(ws_publish);
    MERGE(ws_raw);
    MERGE(presence_names);
    MERGE(detach);
    MERGE(token_require);
    MERGE(max_channels);
    MERGE(max_subscribers);
    MERGE(ws_publish_rate);
    if (add->token_secret) {
        d->token_secret = add->token_secret;
        d->token_secret_len = add->token_secret_len;
    }
    else {
        d->token_secret = base->token_secret;
        d->token_secret_len = base->token_secret_len;
    }
    d->ws_origins = add->ws_origins ? add->ws_origins : base->ws_origins;
    d->ws_protocols = add->ws_protocols ? add->ws_protocols : base->ws_protocols;
    return d;
}

#define OR_DEFAULT(v, def) ((v) != PUSH_UNSET ? (v) : (def))

void push_settings_resolve(const push_dir_conf *d, push_settings *out)
{
    out->longpoll_timeout = apr_time_from_sec(OR_DEFAULT(d->longpoll_timeout,
                                                         DEFAULT_LONGPOLL_TIMEOUT));
    out->sse_keepalive = apr_time_from_sec(OR_DEFAULT(d->sse_keepalive, DEFAULT_SSE_KEEPALIVE));
    out->sse_retry_ms = OR_DEFAULT(d->sse_retry_ms, DEFAULT_SSE_RETRY_MS);
    out->max_message_size = (size_t)OR_DEFAULT(d->max_message_size, PUSH_DEFAULT_MAX_MSG);
    out->retry_after = OR_DEFAULT(d->retry_after, DEFAULT_RETRY_AFTER);
    out->max_queue = OR_DEFAULT(d->max_queue, DEFAULT_MAX_QUEUE);
    out->ws_enabled = OR_DEFAULT(d->ws_enabled, 1);
    out->ws_origins = d->ws_origins;
    out->ws_protocols = d->ws_protocols;
    out->ws_deflate = OR_DEFAULT(d->ws_deflate, 1);
    out->ws_ping = apr_time_from_sec(OR_DEFAULT(d->ws_ping, DEFAULT_WS_PING));
    out->ws_max_message = (size_t)OR_DEFAULT(d->ws_max_message, PUSH_DEFAULT_MAX_MSG);
    out->ws_publish = OR_DEFAULT(d->ws_publish, 0);
    out->ws_raw = OR_DEFAULT(d->ws_raw, 0);
    out->presence_names = OR_DEFAULT(d->presence_names, 0);
    out->detach = OR_DEFAULT(d->detach, 1);
    out->token_secret = d->token_secret;
    out->token_secret_len = d->token_secret ? (size_t)d->token_secret_len : 0;
    out->token_require = OR_DEFAULT(d->token_require, 0);
    out->max_channels = OR_DEFAULT(d->max_channels, DEFAULT_MAX_CHANNELS);
    out->max_subscribers = OR_DEFAULT(d->max_subscribers, 0);
    out->ws_publish_rate = OR_DEFAULT(d->ws_publish_rate, 0);
}

/* ---- directives ------------------------------------------------------------------ */

static const char *s_set_broker(cmd_parms *cmd, void *dummy, const char *arg)
{
    push_server_conf *sc = ap_get_module_config(cmd->server->module_config, &push_module);
    if (strncmp(arg, "tcp://", 6) != 0 && strncmp(arg, "ipc://", 6) != 0)
        return "PushBroker: the endpoint must start with tcp:// or ipc://";
    sc->broker = arg;
    return NULL;
}

/* Parse a whole number in [min, max]. */
static const char *s_int(cmd_parms *cmd, const char *arg, long min, long max, long *out)
{
    char *end;
    long v = strtol(arg, &end, 10);
    if (!*arg || *end || v < min || v > max)
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number from %ld to %ld",
                            cmd->directive->directive, arg, min, max);
    *out = v;
    return NULL;
}

static const char *s_set_broker_timeout(cmd_parms *cmd, void *dummy, const char *arg)
{
    push_server_conf *sc = ap_get_module_config(cmd->server->module_config, &push_module);
    long v = 0;
    const char *err = s_int(cmd, arg, 10, 600000, &v);
    if (!err)
        sc->broker_timeout_ms = (int)v;
    return err;
}

/* Per-directory integer directives: cmd->info is the field's offset. */
static const char *s_set_dir_int(cmd_parms *cmd, void *dv, const char *arg)
{
    long v = 0;
    const char *err = s_int(cmd, arg, 0, 86400L * 365, &v);
    if (!err)
        *(int *)((char *)dv + (size_t)cmd->info) = (int)v;
    return err;
}

static const char *s_set_max_message(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 1, 64L * 1024 * 1024, &v);
    if (!err)
        d->max_message_size = v;
    return err;
}

static const char *s_set_max_queue(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 1, 1000000, &v);
    if (!err)
        d->max_queue = (int)v;
    return err;
}

/* On/off directives: cmd->info is the field's offset. */
static const char *s_set_dir_flag(cmd_parms *cmd, void *dv, int on)
{
    *(int *)((char *)dv + (size_t)cmd->info) = on ? 1 : 0;
    return NULL;
}

static const char *s_set_ws_mode(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    if (strcasecmp(arg, "json") == 0)
        d->ws_raw = 0;
    else if (strcasecmp(arg, "raw") == 0)
        d->ws_raw = 1;
    else
        return "PushWebSocketMode: json or raw";
    return NULL;
}

static const char *s_set_ws_max(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 125, 64L * 1024 * 1024, &v);
    if (!err)
        d->ws_max_message = v;
    return err;
}

static const char *s_set_max_channels(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 1, 100000, &v);
    if (!err)
        d->max_channels = (int)v;
    return err;
}

static const char *s_set_max_subscribers(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 0, 10000000, &v);
    if (!err)
        d->max_subscribers = (int)v;
    return err;
}

static const char *s_set_publish_rate(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    long v = 0;
    const char *err = s_int(cmd, arg, 0, 1000000, &v);
    if (!err)
        d->ws_publish_rate = (int)v;
    return err;
}

/* PushTokenSecretFile: read now (as the user Apache starts as, so the file
 * may belong to root with mode 0600); the bytes live in the config pool. */
static const char *s_set_token_secret(cmd_parms *cmd, void *dv, const char *arg)
{
    push_dir_conf *d = dv;
    const char *path = ap_server_root_relative(cmd->pool, arg);
    unsigned char *buf = apr_palloc(cmd->pool, PUSH_TOKEN_SECRET_MAX);
    size_t len = 0;
    int world = 0;
    char err[512];
    if (!path)
        return apr_psprintf(cmd->pool, "PushTokenSecretFile: invalid path '%s'", arg);
    if (push_token_secret_load(path, buf, &len, &world, err, sizeof err) < 0)
        return apr_psprintf(cmd->pool, "PushTokenSecretFile: %s", err);
    if (world)
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, cmd->server, APLOGNO(20082)
                     "PushTokenSecretFile %s is readable by every user of this machine: "
                     "anyone who reads it can mint tokens (chmod o-r %s)", path, path);
    d->token_secret = buf;
    d->token_secret_len = (int)len;
    return NULL;
}

/* Lists: cmd->info is the offset of the array pointer; each use replaces
 * what an enclosing section set (that is how the merge reads them). */
static const char *s_add_list(cmd_parms *cmd, void *dv, const char *arg)
{
    apr_array_header_t **list = (apr_array_header_t **)((char *)dv + (size_t)cmd->info);
    if (!*list)
        *list = apr_array_make(cmd->pool, 4, sizeof(const char *));
    *(const char **)apr_array_push(*list) = arg;
    return NULL;
}

#define DIR_FLAG(name, field, help) \
    AP_INIT_FLAG(name, s_set_dir_flag, (void *)APR_OFFSETOF(push_dir_conf, field), \
                 OR_ALL, help)
#define DIR_LIST(name, field, help) \
    AP_INIT_ITERATE(name, s_add_list, (void *)APR_OFFSETOF(push_dir_conf, field), \
                    OR_ALL, help)

#define DIR_INT(name, field, help) \
    AP_INIT_TAKE1(name, s_set_dir_int, (void *)APR_OFFSETOF(push_dir_conf, field), \
                  OR_ALL, help)

static const command_rec s_cmds[] = {
    AP_INIT_TAKE1("PushBroker", s_set_broker, NULL, RSRC_CONF,
                  "ZeroMQ endpoint of pushbrokerd's link socket, e.g. tcp://127.0.0.1:7703"),
    AP_INIT_TAKE1("PushBrokerTimeout", s_set_broker_timeout, NULL, RSRC_CONF,
                  "milliseconds to wait for pushbrokerd's answer (default 5000)"),
    AP_INIT_TAKE1("PushBrokerServerKey", push_link_set_server_key, NULL, RSRC_CONF,
                  "pushbrokerd's CURVE public key, or a file holding it: the link uses CURVE"),
    AP_INIT_TAKE12("PushBrokerClientKeys", push_link_set_client_keys, NULL, RSRC_CONF,
                   "[public key file] secret key file: this server's CURVE key pair"),
    DIR_INT("PushLongPollTimeout", longpoll_timeout,
            "seconds a long poll waits for a message (default 30)"),
    DIR_INT("PushSSEKeepalive", sse_keepalive,
            "seconds between SSE keep-alive comments, 0 = none (default 15)"),
    DIR_INT("PushSSERetry", sse_retry_ms,
            "SSE retry: hint in milliseconds, 0 = none (default 2000)"),
    DIR_INT("PushRetryAfter", retry_after,
            "Retry-After seconds sent with 503 when the broker is down (default 5)"),
    AP_INIT_TAKE1("PushMaxMessageSize", s_set_max_message, NULL, OR_ALL,
                  "largest message data accepted for publishing, in bytes (default 65536)"),
    AP_INIT_TAKE1("PushMaxQueue", s_set_max_queue, NULL, OR_ALL,
                  "messages queued for one slow connection before it is cut off (default 1000)"),
    DIR_FLAG("PushWebSocket", ws_enabled,
             "accept WebSocket upgrades on a push-subscriber location (default on)"),
    DIR_LIST("PushWebSocketOrigins", ws_origins,
             "Origin values allowed to open a WebSocket (default: any)"),
    DIR_LIST("PushWebSocketSubprotocols", ws_protocols,
             "subprotocols the server accepts, in order of preference (default: none)"),
    DIR_FLAG("PushWebSocketDeflate", ws_deflate,
             "negotiate permessage-deflate (default on)"),
    DIR_INT("PushWebSocketPing", ws_ping,
            "seconds between server pings; no pong by the next one closes (default 30, 0 = none)"),
    AP_INIT_TAKE1("PushWebSocketMaxMessage", s_set_ws_max, NULL, OR_ALL,
                  "largest message a client may send, in bytes (default 65536)"),
    DIR_FLAG("PushWebSocketPublish", ws_publish,
             "let WebSocket clients publish (default off)"),
    AP_INIT_TAKE1("PushWebSocketMode", s_set_ws_mode, NULL, OR_ALL,
                  "json (control messages, default) or raw (frames are published as they are)"),
    DIR_FLAG("PushDetach", detach,
             "On (default): an idle SSE or WebSocket connection over plain HTTP is detached "
             "from httpd once its response head is sent, so that it costs a few hundred bytes "
             "instead of httpd's connection pools; Off: it stays suspended in httpd"),
    DIR_FLAG("PushPresenceNames", presence_names,
             "let unauthenticated subscribers choose their presence name with ?name= (default off)"),
    AP_INIT_TAKE1("PushTokenSecretFile", s_set_token_secret, NULL, RSRC_CONF | ACCESS_CONF,
                  "file holding the HMAC-SHA256 secret of channel tokens (at least 32 bytes)"),
    AP_INIT_FLAG("PushTokenRequire", s_set_dir_flag,
                 (void *)APR_OFFSETOF(push_dir_conf, token_require), RSRC_CONF | ACCESS_CONF,
                 "require a signed token granting the right on the channel (default off)"),
    AP_INIT_TAKE1("PushMaxChannels", s_set_max_channels, NULL, OR_ALL,
                  "channels one WebSocket connection may subscribe to (default 256)"),
    AP_INIT_TAKE1("PushMaxSubscribers", s_set_max_subscribers, NULL, OR_ALL,
                  "subscriber connections of one channel in one server process, 0 = no limit "
                  "(default 0)"),
    AP_INIT_TAKE1("PushWebSocketPublishRate", s_set_publish_rate, NULL, OR_ALL,
                  "messages per second one WebSocket connection may publish, 0 = no limit "
                  "(default 0)"),
    { NULL }
};

/* ---- shared request helpers -------------------------------------------------------- */

const char *push_request_channel(request_rec *r, const push_dir_conf *d, int *status)
{
    const char *uri = r->uri, *rest;
    size_t loclen = d->location ? strlen(d->location) : 0;
    if (loclen && strncmp(uri, d->location, loclen) == 0)
        rest = uri + loclen;
    else {
        /* <LocationMatch> and friends: the last path segment names the channel. */
        const char *slash = strrchr(uri, '/');
        rest = slash ? slash + 1 : uri;
    }
    while (*rest == '/')
        rest++;
    if (!*rest || strchr(rest, '/')) {
        *status = HTTP_NOT_FOUND;
        return NULL;
    }
    if (!push_channel_valid(rest, strlen(rest))) {
        *status = HTTP_BAD_REQUEST;
        return NULL;
    }
    return rest;
}

int push_header_has_token(const char *list, const char *token, int case_sensitive)
{
    size_t tlen = strlen(token);
    for (const char *p = list; p && *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *end = p;
        while (*end && *end != ',' && *end != ';' && *end != ' ' && *end != '\t')
            end++;
        if ((size_t)(end - p) == tlen && (case_sensitive ? strncmp(p, token, tlen)
                                                         : strncasecmp(p, token, tlen)) == 0)
            return 1;
        p = strchr(end, ',');
    }
    return 0;
}

const char *push_query_param(request_rec *r, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = r->args; p && *p;) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen >= len && strncmp(p, name, len) == 0 && (plen == len || p[len] == '=')) {
            char *v = apr_pstrndup(r->pool, plen == len ? "" : p + len + 1,
                                   plen == len ? 0 : plen - len - 1);
            for (char *s = v; *s; s++)     /* form encoding: + is a space */
                if (*s == '+')
                    *s = ' ';
            return ap_unescape_url(v) == OK ? v : NULL;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

const char *push_request_identity(request_rec *r, const push_settings *set,
                                  const char *token_sub, int *bad)
{
    *bad = 0;
    if (r->user && *r->user)
        return push_identity_valid(r->user, strlen(r->user)) ? r->user : NULL;
    if (token_sub && *token_sub)
        return apr_pstrdup(r->pool, token_sub);
    if (!set->presence_names)
        return NULL;
    const char *name = push_query_param(r, "name");
    if (!name || !*name)
        return NULL;
    if (!push_identity_valid(name, strlen(name))) {
        *bad = 1;
        return NULL;
    }
    return name;
}

const char *push_request_token(request_rec *r)
{
    const char *auth = apr_table_get(r->headers_in, "Authorization");
    if (auth && strncasecmp(auth, "Bearer", 6) == 0 && (auth[6] == ' ' || auth[6] == '\t')) {
        const char *t = auth + 6;
        while (*t == ' ' || *t == '\t')
            t++;
        size_t n = strlen(t);
        while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
            n--;
        return apr_pstrndup(r->pool, t, n);
    }
    return push_query_param(r, "token");
}

const char *push_token_message(apr_pool_t *pool, int result, const char *channel, int right)
{
    if (result == PUSH_TOKEN_NO_RIGHT)
        return apr_psprintf(pool, "token does not grant %s on channel %s",
                            push_token_right_name(right), channel);
    return push_token_result_str((push_token_result)result);
}

void push_token_log(request_rec *r, conn_rec *c, const char *client, const char *channel,
                    int right, int result, const char *sub)
{
    const char *why = result == PUSH_TOKEN_NO_RIGHT ? "token does not grant this right"
                                                    : push_token_result_str(result);
    int with_sub = sub && *sub;
    if (r)
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(20080)
                      "token refused for %s on channel %s: %s%s%s%s",
                      push_token_right_name(right), channel, why,
                      with_sub ? " (sub \"" : "", with_sub ? sub : "", with_sub ? "\")" : "");
    else if (c)
        ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, c, APLOGNO(20080)
                      "token refused for %s on channel %s: %s%s%s%s",
                      push_token_right_name(right), channel, why,
                      with_sub ? " (sub \"" : "", with_sub ? sub : "", with_sub ? "\")" : "");
    else
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, push_child_get()->s, "[client %s] " APLOGNO(20080)
                     "token refused for %s on channel %s: %s%s%s%s", client,
                     push_token_right_name(right), channel, why,
                     with_sub ? " (sub \"" : "", with_sub ? sub : "", with_sub ? "\")" : "");
}

int push_token_check(request_rec *r, const push_settings *set, const char *channel,
                     int right, char *sub)
{
    char id[PUSH_IDENTITY_MAX + 1];
    if (sub)
        *sub = '\0';
    if (!set->token_require)
        return 1;
    if (!set->token_secret) {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(20081)
                      "PushTokenRequire is on for %s, but no PushTokenSecretFile applies: "
                      "refusing the request", r->uri);
        push_json_error(r, HTTP_INTERNAL_SERVER_ERROR, "internal",
                        "token verification is not configured on this server");
        return 0;
    }
    int rc = push_token_verify(set->token_secret, set->token_secret_len, push_request_token(r),
                               (int64_t)apr_time_sec(apr_time_now()), channel, right, id);
    if (rc == PUSH_TOKEN_OK) {
        if (sub)
            strcpy(sub, id);
        return 1;
    }
    push_token_log(r, NULL, NULL, channel, right, rc, id);
    push_json_error(r, HTTP_FORBIDDEN, "forbidden", push_token_message(r->pool, rc, channel, right));
    return 0;
}

const char *push_handler_start(request_rec *r, int method, const char *how,
                               push_settings *set, int *rc)
{
    push_dir_conf *d = ap_get_module_config(r->per_dir_config, &push_module);
    push_settings_resolve(d, set);
    if (r->method_number != method) {
        apr_table_setn(r->err_headers_out, "Allow", method == M_POST ? "POST" : "GET");
        *rc = push_json_error(r, HTTP_METHOD_NOT_ALLOWED, PUSH_ERR_BAD_REQUEST, how);
        return NULL;
    }
    int status;
    const char *channel = push_request_channel(r, d, &status);
    if (!channel)
        *rc = push_json_error(r, status,
                              status == HTTP_NOT_FOUND ? "not_found" : PUSH_ERR_BAD_CHANNEL,
                              status == HTTP_NOT_FOUND ? "no channel in the URL"
                                                       : "invalid channel name");
    return channel;
}

int push_unavailable(request_rec *r, const push_settings *set, const char *msg)
{
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%d", set->retry_after));
    return push_json_error(r, HTTP_SERVICE_UNAVAILABLE, PUSH_ERR_UNAVAILABLE, msg);
}

int push_json_error(request_rec *r, int status, const char *code, const char *msg)
{
    char *m = apr_palloc(r->pool, push_json_str_max(strlen(msg)) + 1);
    char *c = apr_palloc(r->pool, push_json_str_max(strlen(code)) + 1);
    m[push_json_str(m, msg, strlen(msg))] = '\0';
    c[push_json_str(c, code, strlen(code))] = '\0';
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    ap_rprintf(r, "{\"error\":%s,\"message\":%s}\n", c, m);
    return OK;
}

/* ---- hooks ---------------------------------------------------------------------- */

static void s_count_changed(void *arg, const char *channel)
{
    push_child *ch = arg;
    if (ch->link)
        push_link_count_changed(ch->link, channel);
}

static void s_presence_changed(void *arg, const char *channel, const char *identity, int join)
{
    push_child *ch = arg;
    if (ch->link)
        push_link_presence_changed(ch->link, channel, identity, join);
}

static apr_status_t s_child_exit(void *arg)
{
    push_child *ch = arg;
    push_reactor_destroy(&ch->rx);
    push_link_stop(&ch->link);
    push_hub_destroy(&ch->hub);
    s_child = NULL;
    free(ch);
    return APR_SUCCESS;
}

static int s_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    push_status_init(pconf, s);   /* without it, push-status reports one child */
    return push_link_check_keys(s);
}

static void s_status_tick(void *arg)
{
    push_status_update(arg);
}

static void s_child_init(apr_pool_t *pchild, server_rec *s)
{
    push_server_conf *sc = ap_get_module_config(s->module_config, &push_module);
    int async = 0;
    if (ap_mpm_query(AP_MPMQ_IS_ASYNC, &async) != APR_SUCCESS || !async) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, APLOGNO(20040)
                     "mod_push needs the event MPM; push locations will answer 503");
        return;
    }
    push_child *ch = calloc(1, sizeof *ch);
    if (!ch)
        return;
    ch->s = s;
    ch->broker_timeout_ms = OR_DEFAULT(sc->broker_timeout_ms, DEFAULT_BROKER_TIMEOUT_MS);
    ch->hub = push_hub_new(s_count_changed, ch);
    if (ch->hub)
        push_hub_set_presence_fn(ch->hub, s_presence_changed);
    ch->rx = ch->hub ? push_reactor_start(s, ch->hub) : NULL;
    ch->link = ch->rx ? push_link_start(s, sc->broker ? sc->broker : PUSH_DEFAULT_LINK_ENDPOINT,
                                        ch->hub, push_reactor_wake, push_reactor_reset, ch->rx)
                      : NULL;
    apr_pool_cleanup_register(pchild, ch, s_child_exit, apr_pool_cleanup_null);
    if (!ch->link) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s, APLOGNO(20041)
                     "mod_push could not start in this child");
        return;
    }
    push_status_child_init();
    push_reactor_on_tick(ch->rx, s_status_tick, ch);
    s_child = ch;
}

static void s_child_stopping(apr_pool_t *pchild, int graceful)
{
    /* Held connections would keep this child alive (and its scoreboard
     * slot taken) until they end: end them now. */
    if (s_child)
        push_reactor_stop(s_child->rx);
}

static void s_suspend_connection(conn_rec *c, request_rec *r)
{
    push_hold *h = ap_get_module_config(c->conn_config, &push_module);
    if (!h || !s_child)
        return;
    ap_set_module_config(c->conn_config, &push_module, NULL);
    push_reactor_park(s_child->rx, h);
}

static int s_handler(request_rec *r)
{
    if (!r->handler || strncmp(r->handler, "push-", 5) != 0)
        return DECLINED;
    if (!s_child) {
        push_dir_conf *d = ap_get_module_config(r->per_dir_config, &push_module);
        push_settings set;
        push_settings_resolve(d, &set);
        return push_unavailable(r, &set, "mod_push is not running in this server process");
    }
    if (strcmp(r->handler, "push-subscriber") == 0)
        return push_subscriber_handler(r);
    if (strcmp(r->handler, "push-publisher") == 0)
        return push_publisher_handler(r);
    if (strcmp(r->handler, "push-presence") == 0)
        return push_presence_handler(r);
    if (strcmp(r->handler, "push-status") == 0)
        return push_status_handler(r);
    if (strcmp(r->handler, "push-client") == 0)
        return push_client_handler(r);
    return DECLINED;
}

static void s_register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(s_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(s_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(s_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(s_suspend_connection, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(s_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

AP_DECLARE_MODULE(push) = {
    STANDARD20_MODULE_STUFF,
    s_create_dir_conf,
    s_merge_dir_conf,
    s_create_server_conf,
    s_merge_server_conf,
    s_cmds,
    s_register_hooks,
    AP_MODULE_FLAG_NONE
};
