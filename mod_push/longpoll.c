/*
 * longpoll.c — long and short polling transports.
 *
 * Both answer one JSON document:
 *   {"channel":"c","messages":[<message>...],"last_id":N}
 * where <message> is push_msg->json and last_id is the cursor for the next
 * poll.  A long poll with nothing to answer is parked; the reactor answers
 * with the first messages that arrive, or with an empty list when
 * PushLongPollTimeout runs out.
 */
#include "transports.h"
#include "poll_format.h"
#include "push_proto.h"

#include "http_protocol.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Build the JSON document; malloc'ed, NULL when out of memory. */
/* ,"name":[json,json] */
static char *s_array(char *p, const char *name, push_msg *const *msgs, int n)
{
    p += sprintf(p, ",\"%s\":[", name);
    for (int i = 0; i < n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, msgs[i]->json, msgs[i]->json_len);
        p += msgs[i]->json_len;
    }
    *p++ = ']';
    return p;
}

static char *s_body(const char *channel, push_msg *const *msgs, int n, uint64_t last_id,
                    const char *gap, push_msg *const *pres, int npres, size_t *len)
{
    size_t chlen = strlen(channel);
    size_t cap = 80 + push_json_str_max(chlen) + (gap ? strlen(gap) + 8 : 0);
    for (int i = 0; i < n; i++)
        cap += msgs[i]->json_len + 1;
    for (int i = 0; i < npres; i++)
        cap += pres[i]->json_len + 1;
    char *buf = malloc(cap), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, "{\"channel\":", 11);
    p += 11;
    p += push_json_str(p, channel, chlen);
    p = s_array(p, "messages", msgs, n);
    memcpy(p, ",\"last_id\":", 11);
    p += 11;
    p += push_fmt_u64(p, last_id);
    if (npres)
        p = s_array(p, "presence", pres, npres);
    if (gap) {
        memcpy(p, ",\"gap\":", 7);
        p += 7;
        memcpy(p, gap, strlen(gap));
        p += strlen(gap);
    }
    memcpy(p, "}\n", 2);
    p += 2;
    *len = (size_t)(p - buf);
    return buf;
}

int push_poll_respond(request_rec *r, const char *channel, push_msg *const *msgs, int n,
                      uint64_t cursor, const char *gap)
{
    size_t len;
    uint64_t last = n ? msgs[n - 1]->id : cursor;
    char *body = s_body(channel, msgs, n, last, gap, NULL, 0, &len);
    if (!body)
        return HTTP_INTERNAL_SERVER_ERROR;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    ap_set_content_length(r, (apr_off_t)len);
    ap_rwrite(body, (int)len, r);
    free(body);
    return OK;
}

/* Reactor: answer the parked poll and finish. */
static int s_answer(push_hold *h, push_msg *const *msgs, int n, uint64_t last,
                    push_msg *const *pres, int npres)
{
    size_t len;
    char *body = s_body(h->channel, msgs, n, last, NULL, pres, npres, &len);
    if (!body) {
        h->aborted = 1;
        return 1;
    }
    ap_set_content_length(h->r, (apr_off_t)len);
    push_hold_write(h, body, len);
    free(body);
    push_hold_flush(h);
    return 1;
}

static int s_deliver(push_hold *h, push_entry *e, int n)
{
    push_msg *msgs[64], *pres[64];
    int nm = 0, np = 0;
    uint64_t last = h->client.subs ? h->client.subs->sent_id : 0;
    for (int i = 0; i < n && i < 64; i++) {
        if (e[i].msg->presence) {
            pres[np++] = e[i].msg;
            continue;
        }
        msgs[nm++] = e[i].msg;
        last = e[i].sub->sent_id = e[i].msg->id;
    }
    return s_answer(h, msgs, nm, last, pres, np);
}

static int s_tick(push_hold *h, apr_time_t now)
{
    uint64_t cursor = h->client.subs ? h->client.subs->sent_id : 0;
    return s_answer(h, NULL, 0, cursor, NULL, 0);
}

/* A stopping server answers like a timeout: the client polls again elsewhere. */
static void s_stop(push_hold *h)
{
    s_tick(h, apr_time_now());
}

const push_transport push_longpoll_transport = {
    .name = "longpoll", .slot = PUSH_TP_LONGPOLL, .deliver = s_deliver, .tick = s_tick, .stop = s_stop,
};
