/*
 * sse.c — Server-Sent Events transport.
 *
 * The worker sends the headers, a comment, the retry: hint and the missed
 * history, flushed, before the connection is parked; afterwards the reactor
 * writes one pre-encoded event block per message (push_msg->sse, encoded
 * once per message by the hub) and a keep-alive comment when idle.
 */
#include "transports.h"

#include "http_protocol.h"
#include "util_filter.h"

#include <stdio.h>

static void s_next_keepalive(push_hold *h, apr_time_t now)
{
    h->deadline = h->set.sse_keepalive > 0 ? now + h->set.sse_keepalive : 0;
}

static int s_deliver(push_hold *h, push_entry *e, int n)
{
    for (int i = 0; i < n; i++) {
        push_hold_write(h, e[i].msg->sse, e[i].msg->sse_len);
        if (!e[i].msg->presence)
            e[i].sub->sent_id = e[i].msg->id;
    }
    if (push_hold_flush(h) < 0)
        return 1;
    s_next_keepalive(h, apr_time_now());
    return 0;
}

static int s_tick(push_hold *h, apr_time_t now)
{
    static const char keepalive[] = ": keepalive\n\n";
    push_hold_write(h, keepalive, sizeof keepalive - 1);
    if (push_hold_flush(h) < 0)
        return 1;
    s_next_keepalive(h, now);
    return 0;
}

/* The stream just ends: EventSource reconnects with Last-Event-ID. */
static void s_stop(push_hold *h)
{
}

/* A slow consumer: the stream ends (the last chunk follows what is still
 * buffered); EventSource reconnects with Last-Event-ID and is told of
 * any gap. */
static void s_slow(push_hold *h)
{
}

const push_transport push_sse_transport = {
    .name = "sse", .slot = PUSH_TP_SSE, .deliver = s_deliver, .tick = s_tick, .stop = s_stop,
    .slow = s_slow,
};

int push_sse_begin(push_hold *h, const push_history *hist)
{
    request_rec *r = h->r;
    apr_bucket_alloc_t *ba = r->connection->bucket_alloc;
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, ba);

    ap_set_content_type(r, "text/event-stream; charset=utf-8");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    r->connection->keepalive = AP_CONN_CLOSE;
    /* Chunked even so: a client can tell a clean end of the stream (the
     * last chunk) from a cut connection. */
    if (r->proto_num >= HTTP_VERSION(1, 1))
        r->chunked = 1;

    apr_brigade_puts(bb, NULL, NULL, ": mod_push\n\n");
    if (h->set.sse_retry_ms > 0)
        apr_brigade_printf(bb, NULL, NULL, "retry: %d\n\n", h->set.sse_retry_ms);
    /* No id: the client's Last-Event-ID stays what it has really seen. */
    if (hist->gap)
        apr_brigade_printf(bb, NULL, NULL, "event: gap\ndata: %s\n\n", hist->gap);
    for (int i = 0; i < hist->n; i++)
        apr_brigade_write(bb, NULL, NULL, hist->msgs[i]->sse, hist->msgs[i]->sse_len);
    APR_BRIGADE_INSERT_TAIL(bb, apr_bucket_flush_create(ba));
    apr_status_t rv = ap_pass_brigade(r->output_filters, bb);
    apr_brigade_cleanup(bb);
    s_next_keepalive(h, apr_time_now());
    return rv == APR_SUCCESS && !r->connection->aborted ? 0 : -1;
}
