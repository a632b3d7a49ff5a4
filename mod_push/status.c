/*
 * status.c — per-child statistics in shared memory and the push-status
 * handler; see status.h.
 */
#include "status.h"
#include "hub.h"
#include "link.h"
#include "reactor.h"

#include "ap_mpm.h"
#include "http_protocol.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

APLOG_USE_MODULE(push);

typedef struct stat_slot {
    int      pid;                    /* owner; 0 = free; claimed by CAS */
    uint64_t updated_us;
    uint64_t held[PUSH_TP_COUNT];
    uint64_t channels;
    uint64_t subscriptions;
    uint64_t delivered;
    uint64_t bytes_sent;
    uint64_t queued;
    uint64_t slow_cut;
    uint64_t link_up;
    uint64_t link_reconnects;
    uint64_t messages_in;
} stat_slot;

/* Set in post_config (before fork), read-only afterwards. */
static stat_slot *s_slots;
static int        s_nslots;
/* This child's slot, set in child_init. */
static stat_slot *s_mine;

apr_status_t push_status_init(apr_pool_t *pconf, server_rec *s)
{
    int limit = 0;
    apr_shm_t *shm;
    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS || limit <= 0)
        limit = 256;
    apr_status_t rv = apr_shm_create(&shm, sizeof(stat_slot) * (apr_size_t)limit, NULL, pconf);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, APLOGNO(20070)
                     "cannot create shared memory for statistics: push-status will only "
                     "report the child that answers");
        s_slots = NULL;
        return rv;
    }
    s_slots = apr_shm_baseaddr_get(shm);
    s_nslots = limit;
    memset(s_slots, 0, sizeof(stat_slot) * (size_t)limit);
    return APR_SUCCESS;
}

static int s_alive(int pid)
{
    return pid > 0 && (kill(pid, 0) == 0 || errno == EPERM);
}

void push_status_child_init(void)
{
    int me = (int)getpid();
    for (int i = 0; s_slots && i < s_nslots && !s_mine; i++) {
        int pid = __atomic_load_n(&s_slots[i].pid, __ATOMIC_ACQUIRE);
        if (pid && s_alive(pid))
            continue;
        if (__atomic_compare_exchange_n(&s_slots[i].pid, &pid, me, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            s_mine = &s_slots[i];
    }
}

static void s_fill(stat_slot *d, push_child *ch)
{
    push_reactor_stats rs;
    push_link_stats ls;
    int channels, subs;
    push_reactor_get_stats(ch->rx, &rs);
    push_link_get_stats(ch->link, &ls);
    push_hub_totals(ch->hub, &channels, &subs);
    for (int i = 0; i < PUSH_TP_COUNT; i++)
        d->held[i] = (uint64_t)rs.held_by[i];
    d->channels = (uint64_t)channels;
    d->subscriptions = (uint64_t)subs;
    d->delivered = rs.delivered;
    d->bytes_sent = rs.bytes_sent;
    d->queued = push_hub_queued(ch->hub);
    d->slow_cut = rs.slow_cut;
    d->link_up = (uint64_t)ls.up;
    d->link_reconnects = ls.reconnects;
    d->messages_in = ls.messages_in;
    d->updated_us = (uint64_t)apr_time_now();
}

void push_status_update(push_child *ch)
{
    if (s_mine)
        s_fill(s_mine, ch);    /* readers tolerate a torn update: counters only */
}

/* ---- reports ------------------------------------------------------------------------ */

typedef struct report {
    int        n;
    stat_slot *child;      /* n entries: a snapshot */
    stat_slot  total;
} report;

static void s_add(stat_slot *t, const stat_slot *c)
{
    for (int i = 0; i < PUSH_TP_COUNT; i++)
        t->held[i] += c->held[i];
    t->channels += c->channels;
    t->subscriptions += c->subscriptions;
    t->delivered += c->delivered;
    t->bytes_sent += c->bytes_sent;
    t->queued += c->queued;
    t->slow_cut += c->slow_cut;
    t->link_up += c->link_up;
    t->link_reconnects += c->link_reconnects;
    t->messages_in += c->messages_in;
}

static void s_collect(request_rec *r, report *rep)
{
    push_child *ch = push_child_get();
    memset(rep, 0, sizeof *rep);
    rep->child = apr_pcalloc(r->pool, sizeof(stat_slot) * (size_t)(s_nslots ? s_nslots : 1));
    int me = (int)getpid();
    for (int i = 0; s_slots && i < s_nslots; i++) {
        stat_slot snap = s_slots[i];
        if (snap.pid == me && ch)
            s_fill(&snap, ch);           /* this child's numbers, current */
        else if (!snap.pid || !s_alive(snap.pid) || !snap.updated_us)
            continue;
        rep->child[rep->n++] = snap;
    }
    if (!s_slots && ch) {                /* no shared memory: this child only */
        s_fill(&rep->child[0], ch);
        rep->child[0].pid = (int)getpid();
        rep->n = 1;
    }
    for (int i = 0; i < rep->n; i++)
        s_add(&rep->total, &rep->child[i]);
}

static const char *s_tp_name[PUSH_TP_COUNT] = { "sse", "longpoll", "websocket" };

static void s_json_slot(request_rec *r, const stat_slot *s, int with_pid)
{
    if (with_pid)
        ap_rprintf(r, "{\"pid\":%d,", s->pid);
    else
        ap_rputs("{", r);
    ap_rputs("\"subscribers\":{", r);
    for (int i = 0; i < PUSH_TP_COUNT; i++)
        ap_rprintf(r, "%s\"%s\":%" APR_UINT64_T_FMT, i ? "," : "", s_tp_name[i], s->held[i]);
    ap_rprintf(r, "},\"channels\":%" APR_UINT64_T_FMT ",\"subscriptions\":%" APR_UINT64_T_FMT
               ",\"delivered\":%" APR_UINT64_T_FMT ",\"bytes_sent\":%" APR_UINT64_T_FMT
               ",\"queued\":%" APR_UINT64_T_FMT ",\"slow_consumers_cut\":%" APR_UINT64_T_FMT
               ",\"broker_messages_in\":%" APR_UINT64_T_FMT ",\"broker_reconnects\":%"
               APR_UINT64_T_FMT, s->channels, s->subscriptions, s->delivered, s->bytes_sent,
               s->queued, s->slow_cut, s->messages_in, s->link_reconnects);
    if (with_pid)
        ap_rprintf(r, ",\"broker_link\":\"%s\"}", s->link_up ? "up" : "down");
    else
        ap_rprintf(r, ",\"broker_links_up\":%" APR_UINT64_T_FMT "}", s->link_up);
}

static void s_json(request_rec *r, const report *rep)
{
    ap_set_content_type(r, "application/json");
    ap_rprintf(r, "{\"children\":%d,\"total\":", rep->n);
    s_json_slot(r, &rep->total, 0);
    ap_rputs(",\"per_child\":[", r);
    for (int i = 0; i < rep->n; i++) {
        if (i)
            ap_rputs(",", r);
        s_json_slot(r, &rep->child[i], 1);
    }
    ap_rputs("]}\n", r);
}

/* One Prometheus metric family with a sample per child. */
static void s_prom(request_rec *r, const report *rep, const char *name, const char *type,
                   const char *help, size_t offset)
{
    ap_rprintf(r, "# HELP mod_push_%s %s\n# TYPE mod_push_%s %s\n", name, help, name, type);
    for (int i = 0; i < rep->n; i++) {
        const stat_slot *s = &rep->child[i];
        uint64_t v;
        memcpy(&v, (const char *)s + offset, sizeof v);
        ap_rprintf(r, "mod_push_%s{pid=\"%d\"} %" APR_UINT64_T_FMT "\n", name, s->pid, v);
    }
}

#define OFF(f) APR_OFFSETOF(stat_slot, f)

static void s_prometheus(request_rec *r, const report *rep)
{
    ap_set_content_type(r, "text/plain; version=0.0.4; charset=utf-8");
    ap_rprintf(r, "# HELP mod_push_children Apache children reporting\n"
                  "# TYPE mod_push_children gauge\nmod_push_children %d\n", rep->n);
    ap_rputs("# HELP mod_push_subscribers Held subscriber connections\n"
             "# TYPE mod_push_subscribers gauge\n", r);
    for (int i = 0; i < rep->n; i++)
        for (int t = 0; t < PUSH_TP_COUNT; t++)
            ap_rprintf(r, "mod_push_subscribers{pid=\"%d\",transport=\"%s\"} %"
                       APR_UINT64_T_FMT "\n", rep->child[i].pid, s_tp_name[t],
                       rep->child[i].held[t]);
    s_prom(r, rep, "channels", "gauge", "Channels with local subscribers", OFF(channels));
    s_prom(r, rep, "subscriptions", "gauge", "Channel subscriptions", OFF(subscriptions));
    s_prom(r, rep, "delivered_total", "counter", "Messages delivered to held connections",
           OFF(delivered));
    s_prom(r, rep, "bytes_sent_total", "counter", "Bytes written to held connections",
           OFF(bytes_sent));
    s_prom(r, rep, "send_queue", "gauge", "Messages waiting in send queues", OFF(queued));
    s_prom(r, rep, "slow_consumers_cut_total", "counter", "Connections cut as slow consumers",
           OFF(slow_cut));
    s_prom(r, rep, "broker_link_up", "gauge", "1 when the child's broker link is up",
           OFF(link_up));
    s_prom(r, rep, "broker_reconnects_total", "counter", "Times the broker link went down",
           OFF(link_reconnects));
    s_prom(r, rep, "broker_messages_total", "counter", "Messages received from the broker",
           OFF(messages_in));
}

static void s_html_row(request_rec *r, const char *who, const stat_slot *s, const char *link)
{
    ap_rprintf(r, "<tr><td>%s</td>", who);
    for (int t = 0; t < PUSH_TP_COUNT; t++)
        ap_rprintf(r, "<td>%" APR_UINT64_T_FMT "</td>", s->held[t]);
    ap_rprintf(r, "<td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td><td>%"
               APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT "</td><td>%" APR_UINT64_T_FMT
               "</td><td>%s</td></tr>\n", s->channels, s->delivered, s->bytes_sent, s->queued,
               s->slow_cut, link);
}

static void s_html(request_rec *r, const report *rep)
{
    ap_set_content_type(r, "text/html; charset=utf-8");
    ap_rputs("<!doctype html><html><head><meta charset=\"utf-8\">"
             "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
             "<title>mod_push status</title><style>body{font:14px system-ui,sans-serif;"
             "margin:1em}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
             "padding:4px 8px;text-align:right}th{background:#eee}</style></head><body>"
             "<h1>mod_push status</h1><table><tr><th>child</th><th>SSE</th><th>long poll</th>"
             "<th>WebSocket</th><th>channels</th><th>delivered</th><th>bytes sent</th>"
             "<th>queued</th><th>slow cut</th><th>broker link</th></tr>\n", r);
    for (int i = 0; i < rep->n; i++)
        s_html_row(r, apr_psprintf(r->pool, "%d", rep->child[i].pid), &rep->child[i],
                   rep->child[i].link_up ? "up" : "<b>down</b>");
    s_html_row(r, "<b>total</b>", &rep->total,
               apr_psprintf(r->pool, "%" APR_UINT64_T_FMT " of %d up", rep->total.link_up,
                            rep->n));
    ap_rputs("</table><p>Also as <a href=\"?format=json\">JSON</a> and "
             "<a href=\"?format=prometheus\">Prometheus</a> text.</p></body></html>\n", r);
}

int push_status_handler(request_rec *r)
{
    if (r->method_number != M_GET) {
        apr_table_setn(r->err_headers_out, "Allow", "GET");
        return push_json_error(r, HTTP_METHOD_NOT_ALLOWED, PUSH_ERR_BAD_REQUEST,
                               "ask for the status with GET");
    }
    const char *format = push_query_param(r, "format");
    const char *accept = apr_table_get(r->headers_in, "Accept");
    if (!format) {
        if (accept && ap_strcasestr(accept, "text/html"))
            format = "html";
        else if (accept && (ap_strcasestr(accept, "text/plain")
                            || ap_strcasestr(accept, "openmetrics")))
            format = "prometheus";
        else
            format = "json";
    }
    report rep;
    s_collect(r, &rep);
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache");
    if (strcmp(format, "prometheus") == 0)
        s_prometheus(r, &rep);
    else if (strcmp(format, "html") == 0)
        s_html(r, &rep);
    else if (strcmp(format, "json") == 0)
        s_json(r, &rep);
    else
        return push_json_error(r, HTTP_BAD_REQUEST, PUSH_ERR_BAD_REQUEST,
                               "format must be json, prometheus or html");
    return OK;
}
