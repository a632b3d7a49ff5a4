/*
 * publish.c — the push-publisher handler: POST /pub/<channel>.
 *
 * The body is the message data, or, with Content-Type: application/json, an
 * object {"data": "...", "event": "..."}.  The event may also come from the
 * event query parameter.  The reply is
 *   {"channel":"c","id":N,"subscribers":N}
 * or an error {"error":code,"message":text} with 400, 413 or 503.
 */
#include "mod_push.h"
#include "link.h"
#include "poll_format.h"
#include "push_token.h"

#include "http_protocol.h"
#include "apr_strings.h"

#include <string.h>

APLOG_USE_MODULE(push);

/* Read the whole body, at most max bytes.  Returns OK, 413 or 400. */
static int s_read_body(request_rec *r, size_t max, char **out, size_t *len)
{
    int rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK);
    if (rc != OK)
        return rc;
    if (r->remaining > (apr_off_t)max)
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    size_t cap = 8192, n = 0;
    char *buf = apr_palloc(r->pool, cap + 1);
    if (ap_should_client_block(r)) {
        long got;
        char chunk[8192];
        while ((got = ap_get_client_block(r, chunk, sizeof chunk)) > 0) {
            if (n + (size_t)got > max)
                return HTTP_REQUEST_ENTITY_TOO_LARGE;
            if (n + (size_t)got > cap) {
                while (n + (size_t)got > cap)
                    cap *= 2;
                char *bigger = apr_palloc(r->pool, cap + 1);
                memcpy(bigger, buf, n);
                buf = bigger;
            }
            memcpy(buf + n, chunk, (size_t)got);
            n += (size_t)got;
        }
        if (got < 0)
            return HTTP_BAD_REQUEST;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return OK;
}

static int s_is_json(request_rec *r)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    return ct && strncasecmp(ct, "application/json", 16) == 0;
}

static const char *s_event_param(request_rec *r)
{
    for (const char *p = r->args; p && *p;) {
        const char *end = strchr(p, '&');
        size_t plen = end ? (size_t)(end - p) : strlen(p);
        if (plen > 6 && strncmp(p, "event=", 6) == 0) {
            char *v = apr_pstrndup(r->pool, p + 6, plen - 6);
            return ap_unescape_url(v) == OK ? v : "";
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

static int s_error_status(const push_frame *code)
{
    if (code->size == strlen(PUSH_ERR_TOO_LARGE)
        && memcmp(code->data, PUSH_ERR_TOO_LARGE, code->size) == 0)
        return HTTP_REQUEST_ENTITY_TOO_LARGE;
    return HTTP_BAD_REQUEST;
}

/* PUBLISH <reqid> <channel> <data> <event> -> PUBACK <reqid> OK <id> <subscribers> */
static int s_publish(request_rec *r, const push_settings *set, const char *channel,
                     const char *data, size_t len, const char *event)
{
    push_child *ch = push_child_get();
    push_frame req[4] = { push_str_frame(PUSH_LINK_PUBLISH), push_str_frame(channel),
                          { data, len }, push_str_frame(event) };
    push_frames rep;
    if (!ch || push_link_request(ch->link, req, 4, ch->broker_timeout_ms, &rep) < 0) {
        return push_unavailable(r, set,
                                "the message broker is not reachable; message not published");
    }
    int rc;
    uint64_t id, subs;
    if (push_frame_is(&rep, 2, PUSH_REP_OK) && rep.count == 5
        && push_parse_u64(rep.frame[3].data, rep.frame[3].size, &id) == 0
        && push_parse_u64(rep.frame[4].data, rep.frame[4].size, &subs) == 0) {
        char *chan = apr_palloc(r->pool, push_json_str_max(strlen(channel)) + 1);
        chan[push_json_str(chan, channel, strlen(channel))] = '\0';
        ap_set_content_type(r, "application/json");
        ap_rprintf(r, "{\"channel\":%s,\"id\":%" APR_UINT64_T_FMT ",\"subscribers\":%"
                   APR_UINT64_T_FMT "}\n", chan, id, subs);
        rc = OK;
    }
    else if (push_frame_is(&rep, 2, PUSH_REP_ERR) && rep.count == 5) {
        rc = push_json_error(r, s_error_status(&rep.frame[3]),
                             apr_pstrmemdup(r->pool, rep.frame[3].data, rep.frame[3].size),
                             apr_pstrmemdup(r->pool, rep.frame[4].data, rep.frame[4].size));
    }
    else {
        ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, APLOGNO(20030)
                      "malformed publish reply from pushbrokerd");
        rc = push_json_error(r, HTTP_BAD_GATEWAY, PUSH_ERR_BAD_REQUEST,
                             "malformed reply from the message broker");
    }
    push_frames_close(&rep);
    return rc;
}

int push_publisher_handler(request_rec *r)
{
    if (!r->handler || strcmp(r->handler, "push-publisher") != 0)
        return DECLINED;
    push_settings set;
    int status;
    const char *channel = push_handler_start(r, M_POST, "publish with POST", &set, &status);
    if (!channel)
        return status;
    if (!push_token_check(r, &set, channel, PUSH_RIGHT_PUBLISH, NULL))
        return OK;
    char *body;
    size_t len;
    status = s_read_body(r, s_is_json(r) ? set.max_message_size * 6 + 1024 : set.max_message_size,
                         &body, &len);
    if (status == HTTP_REQUEST_ENTITY_TOO_LARGE)
        return push_json_error(r, status, PUSH_ERR_TOO_LARGE,
                               apr_psprintf(r->pool, "message exceeds PushMaxMessageSize (%"
                                            APR_SIZE_T_FMT " bytes)", set.max_message_size));
    if (status != OK)
        return push_json_error(r, HTTP_BAD_REQUEST, PUSH_ERR_BAD_REQUEST, "unreadable body");

    const char *event = s_event_param(r);
    if (s_is_json(r)) {
        push_publish_req req;
        const char *code, *msg;
        if (push_publish_req_decode(body, len, 0, &req, &code, &msg) < 0)
            return push_json_error(r, HTTP_BAD_REQUEST, code, msg);
        body = apr_pstrmemdup(r->pool, req.data, req.data_len);
        len = req.data_len;
        if (req.event)
            event = apr_pstrdup(r->pool, req.event);
        push_publish_req_free(&req);
        if (len > set.max_message_size)
            return push_json_error(r, HTTP_REQUEST_ENTITY_TOO_LARGE, PUSH_ERR_TOO_LARGE,
                                   apr_psprintf(r->pool, "message exceeds PushMaxMessageSize (%"
                                                APR_SIZE_T_FMT " bytes)", set.max_message_size));
    }
    if (event && !push_event_valid(event, strlen(event)))
        return push_json_error(r, HTTP_BAD_REQUEST, PUSH_ERR_BAD_REQUEST,
                               "event must be a token of at most 64 printable characters");
    return s_publish(r, &set, channel, body, len, event ? event : "");
}
