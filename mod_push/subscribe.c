/*
 * subscribe.c — the push-subscriber handler: chooses the transport from the
 * request, fetches what the client missed, and parks the connection.
 *
 *   Accept: text/event-stream      -> Server-Sent Events
 *   ?poll=1                        -> short polling (answers at once)
 *   any other GET                  -> long polling
 * Cursor: the Last-Event-ID header, or the last_id query parameter.
 */
#include "transports.h"
#include "link.h"
#include "poll_format.h"
#include "push_token.h"

#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

APLOG_USE_MODULE(push);

/* ---- history ------------------------------------------------------------------ */

static apr_status_t s_release_msgs(void *arg)
{
    push_history *hist = arg;
    for (int i = 0; i < hist->n; i++)
        push_msg_unref(hist->msgs[i]);
    free(hist->msgs);
    hist->msgs = NULL;
    hist->n = 0;
    return APR_SUCCESS;
}

/* HIST <reqid> OK <last_id> <oldest_id> (<id> <event> <data> <time_us>)*
 * Appends the messages to out->msgs, grown to fit exactly (a held
 * connection keeps this array for its lifetime); returns how many the page
 * held, or -1 when the reply is malformed or memory ran out. */
static int s_parse_page(const char *channel, push_frames *f, push_history *out)
{
    if (f->count < 5 || (f->count - 5) % 4 != 0
        || push_parse_u64(f->frame[3].data, f->frame[3].size, &out->last_id) < 0
        || push_parse_u64(f->frame[4].data, f->frame[4].size, &out->oldest_id) < 0)
        return -1;
    int n = (f->count - 5) / 4;
    if (n == 0)
        return 0;
    push_msg **msgs = realloc(out->msgs, sizeof *msgs * (size_t)(out->n + n));
    if (!msgs)
        return -1;
    out->msgs = msgs;
    for (int i = 0; i < n; i++) {
        const push_frame *m = &f->frame[5 + 4 * i];
        uint64_t id, t;
        if (push_parse_u64(m[0].data, m[0].size, &id) < 0
            || push_parse_u64(m[3].data, m[3].size, &t) < 0)
            return -1;
        push_msg *msg = push_msg_new(channel, strlen(channel), id, m[1].data, m[1].size,
                                     m[2].data, m[2].size, t);
        if (!msg)
            return -1;
        out->msgs[out->n++] = msg;
    }
    return n;
}

/* One HIST exchange.  Returns OK, 503 (no answer), 400 (refused) or 502. */
static int s_fetch_page(conn_rec *c, const char *channel, const char *after,
                        push_history *out, int *got)
{
    push_child *ch = push_child_get();
    push_frame req[3] = { push_str_frame(PUSH_LINK_HIST), push_str_frame(channel),
                          push_str_frame(after) };
    push_frames rep;
    if (!ch || push_link_request(ch->link, req, 3, ch->broker_timeout_ms, &rep) < 0)
        return HTTP_SERVICE_UNAVAILABLE;
    int status = OK;
    if (!push_frame_is(&rep, 2, PUSH_REP_OK))
        status = HTTP_BAD_REQUEST;
    else if ((*got = s_parse_page(channel, &rep, out)) < 0) {
        if (c)
            ap_log_cerror(APLOG_MARK, APLOG_ERR, 0, c, APLOGNO(20020)
                          "malformed history reply from pushbrokerd for channel %s", channel);
        else
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, ch->s, APLOGNO(20020)
                         "malformed history reply from pushbrokerd for channel %s", channel);
        status = HTTP_BAD_GATEWAY;
    }
    push_frames_close(&rep);
    return status;
}

/* The broker answers at most PUSH_HISTORY_PAGE messages at a time: ask
 * again after the last one until the channel's end is reached. */
int push_history_fetch(apr_pool_t *pool, conn_rec *c, const char *channel,
                       const uint64_t *after, push_history **outp)
{
    char num[24] = "-";
    int got = 0, status;
    push_history *out = *outp = apr_pcalloc(pool, sizeof *out);
    apr_pool_cleanup_register(pool, out, s_release_msgs, apr_pool_cleanup_null);
    if (after)
        push_fmt_u64(num, *after);
    while ((status = s_fetch_page(c, channel, num, out, &got)) == OK
           && after && got == PUSH_HISTORY_PAGE
           && out->msgs[out->n - 1]->id < out->last_id)
        push_fmt_u64(num, out->msgs[out->n - 1]->id);
    return status;
}

/* ---- request parsing --------------------------------------------------------- */

/* Value of a query parameter (not unescaped: cursors and flags are plain). */
static const char *s_query_param(request_rec *r, const char *name)
{
    size_t len = strlen(name);
    for (const char *p = r->args; p && *p;) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen >= len && strncmp(p, name, len) == 0 && (plen == len || p[len] == '='))
            return apr_pstrndup(r->pool, plen == len ? p + len : p + len + 1,
                                plen == len ? 0 : plen - len - 1);
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

/* 0: no cursor; 1: cursor in *out; -1: malformed. */
static int s_cursor(request_rec *r, uint64_t *out)
{
    const char *v = apr_table_get(r->headers_in, "Last-Event-ID");
    if (!v || !*v)
        v = s_query_param(r, "last_id");
    if (!v || !*v)
        return 0;
    return push_parse_u64(v, strlen(v), out) == 0 ? 1 : -1;
}

static int s_wants_sse(request_rec *r)
{
    const char *accept = apr_table_get(r->headers_in, "Accept");
    return accept && ap_strcasestr(accept, "text/event-stream") != NULL;
}

static int s_unavailable(request_rec *r, const push_settings *set)
{
    return push_unavailable(r, set, "the message broker is not reachable; retry later");
}

/* ---- transports ------------------------------------------------------------------ */

int push_history_since(apr_pool_t *pool, conn_rec *c, const char *channel, int has_cursor,
                       uint64_t *cursor, push_history **hist)
{
    int st = push_history_fetch(pool, c, channel, has_cursor ? cursor : NULL, hist);
    if (st != OK || !has_cursor)
        return st;
    uint64_t after = *cursor;
    const char *reason = NULL;
    if (after > (*hist)->last_id) {
        reason = "lost";
        *cursor = 0;
        st = push_history_fetch(pool, c, channel, cursor, hist);
    }
    else if (after + 1 < (*hist)->oldest_id)
        reason = "trimmed";
    if (st == OK && reason) {
        char *ch = apr_palloc(pool, push_json_str_max(strlen(channel)) + 1);
        ch[push_json_str(ch, channel, strlen(channel))] = '\0';
        (*hist)->gap = apr_psprintf(pool, "{\"channel\":%s,\"after\":%" APR_UINT64_T_FMT
                                    ",\"oldest_id\":%" APR_UINT64_T_FMT ",\"last_id\":%"
                                    APR_UINT64_T_FMT ",\"reason\":\"%s\"}", ch, after,
                                    (*hist)->oldest_id, (*hist)->last_id, reason);
    }
    return st;
}

static int s_history_since(request_rec *r, const char *channel, int has_cursor,
                           uint64_t *cursor, push_history **hist)
{
    return push_history_since(r->pool, r->connection, channel, has_cursor, cursor, hist);
}

static int s_short_poll(request_rec *r, const char *channel, const push_settings *set,
                        int has_cursor, uint64_t cursor)
{
    push_history *hist;
    int st = s_history_since(r, channel, has_cursor, &cursor, &hist);
    if (st == HTTP_SERVICE_UNAVAILABLE)
        return s_unavailable(r, set);
    if (st != OK)
        return push_json_error(r, st, PUSH_ERR_BAD_REQUEST, "history query failed");
    uint64_t next = has_cursor ? cursor : hist->last_id;
    if (hist->n)
        next = hist->msgs[hist->n - 1]->id;
    return push_poll_respond(r, channel, hist->msgs, hist->n, next, hist->gap);
}

/* Subscribe, then fetch history: the broker handles the SUB before the HIST
 * on the same link, so nothing published in between is missed; what
 * arrives twice is dropped by id (push_hub_drain). */
static int s_hold(request_rec *r, const char *channel, const push_settings *set,
                  int sse, int has_cursor, uint64_t cursor, const push_presence_req *pr)
{
    push_child *ch = push_child_get();
    const push_transport *tp = sse ? &push_sse_transport : &push_longpoll_transport;
    push_hold *h = push_hold_new(ch->rx, r, tp, set, channel);
    if (!h)
        return push_hold_refused(r, set);
    /* Only lasting connections count as present: a long poll comes and goes. */
    if (h && sse && pr->identity && !(h->client.identity = strdup(pr->identity))) {
        push_hold_discard(ch->rx, h);
        h = NULL;
    }
    int full = 0;
    push_sub *sub = h ? push_hub_subscribe_max(ch->hub, &h->client, channel,
                                               set->max_subscribers, &full) : NULL;
    if (sub)
        sub->want_presence = pr->events;
    if (!sub) {
        if (h)
            push_hold_discard(ch->rx, h);
        if (full)
            return push_subscriber_limit(r, set, channel);
        return push_json_error(r, HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    }
    push_history *hist;
    int st = s_history_since(r, channel, has_cursor, &cursor, &hist);
    if (st != OK) {
        push_hold_discard(ch->rx, h);
        if (st == HTTP_SERVICE_UNAVAILABLE)
            return s_unavailable(r, set);
        return push_json_error(r, st, PUSH_ERR_BAD_REQUEST, "history query failed");
    }
    sub->sent_id = has_cursor ? cursor : hist->last_id;
    if (hist->n)
        sub->sent_id = hist->msgs[hist->n - 1]->id;

    if (!sse && (hist->n || hist->gap)) {
        uint64_t next = sub->sent_id;
        push_hold_discard(ch->rx, h);
        return push_poll_respond(r, channel, hist->msgs, hist->n, next, hist->gap);
    }
    if (sse) {
        if (push_sse_begin(h, hist) < 0) {
            push_hold_discard(ch->rx, h);
            return OK;
        }
    }
    else {
        ap_set_content_type(r, "application/json");
        apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
        /* A suspended connection never returns to keep-alive in httpd 2.4. */
        r->connection->keepalive = AP_CONN_CLOSE;
        h->deadline = apr_time_now() + set->longpoll_timeout;
    }
    /* A long poll is answered soon and stays in httpd; a stream is detached. */
    if (sse && push_hold_detach(h))
        return OK;
    ap_set_module_config(r->connection->conn_config, &push_module, h);
    return SUSPENDED;
}

int push_subscriber_limit(request_rec *r, const push_settings *set, const char *channel)
{
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, APLOGNO(20083)
                  "subscriber refused: channel %s has %d subscribers in this process "
                  "(PushMaxSubscribers)", channel, set->max_subscribers);
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%d", set->retry_after));
    return push_json_error(r, HTTP_SERVICE_UNAVAILABLE, "limit",
                           apr_psprintf(r->pool, "channel %s has reached its subscriber limit "
                                        "(PushMaxSubscribers %d)", channel,
                                        set->max_subscribers));
}

int push_hold_refused(request_rec *r, const push_settings *set)
{
    if (errno != EMFILE)
        return push_json_error(r, HTTP_INTERNAL_SERVER_ERROR, "internal", "out of memory");
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_psprintf(r->pool, "%d", set->retry_after));
    return push_json_error(r, HTTP_SERVICE_UNAVAILABLE, "limit",
                           "this server process holds as many connections as its open-file "
                           "limit allows; retry later");
}

int push_subscriber_handler(request_rec *r)
{
    if (!r->handler || strcmp(r->handler, "push-subscriber") != 0)
        return DECLINED;
    push_settings set;
    int status;
    const char *channel = push_handler_start(r, M_GET, "subscribe with GET", &set, &status);
    if (!channel)
        return status;
    /* Tokens first: nothing else is told to a client without the right. */
    char token_sub[PUSH_IDENTITY_MAX + 1];
    const char *pflag = s_query_param(r, "presence");
    int want_presence = pflag && strcmp(pflag, "0") != 0;
    if (!push_token_check(r, &set, channel, PUSH_RIGHT_SUBSCRIBE, token_sub)
        || (want_presence && !push_token_check(r, &set, channel, PUSH_RIGHT_PRESENCE, NULL)))
        return OK;
    uint64_t cursor = 0;
    int has_cursor = s_cursor(r, &cursor);
    if (has_cursor < 0)
        return push_json_error(r, HTTP_BAD_REQUEST, PUSH_ERR_BAD_REQUEST,
                               "Last-Event-ID / last_id must be a message id");
    push_child *ch = push_child_get();
    if (!ch || !push_link_up(ch->link))
        return s_unavailable(r, &set);

    push_presence_req pr;
    int bad;
    pr.identity = push_request_identity(r, &set, token_sub, &bad);
    pr.events = want_presence;
    pr.token = set.token_require ? push_request_token(r) : NULL;
    if (bad)
        return push_json_error(r, HTTP_BAD_REQUEST, PUSH_ERR_BAD_REQUEST,
                               "name must be 1 to 128 characters of UTF-8 text");

    const char *upgrade = apr_table_get(r->headers_in, "Upgrade");
    if (push_header_has_token(upgrade, "websocket", 0))
        return push_ws_handle(r, channel, &set, has_cursor, cursor, &pr);

    const char *poll = s_query_param(r, "poll");
    int sse = s_wants_sse(r);
    if (!sse && poll && strcmp(poll, "0") != 0)
        return s_short_poll(r, channel, &set, has_cursor, cursor);
    /* HTTP/2 streams cannot be suspended in httpd 2.4 (apache-async.md §5). */
    if (r->connection->master)
        return push_json_error(r, HTTP_NOT_IMPLEMENTED, PUSH_ERR_BAD_REQUEST,
                               "held transports need HTTP/1.1; use ?poll=1 over HTTP/2");
    return s_hold(r, channel, &set, sse, has_cursor, cursor, &pr);
}
