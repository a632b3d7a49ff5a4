/*
 * broker.c — see broker.h.
 */
#include "broker.h"
#include "presence.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <zmq.h>
#include <cjson/cJSON.h>

#include "clock.h"
#include "jsonesc.h"
#include "links.h"
#include "log.h"
#include "push_proto.h"
#include "store.h"

int broker_init(broker *b, const broker_config *cfg, uint64_t epoch, uint64_t now_mono_us)
{
    memset(b, 0, sizeof *b);
    b->cfg = cfg;
    b->epoch = epoch;
    b->start_us = now_mono_us;
    return channel_table_init(&b->channels);
}

void broker_free(broker *b)
{
    broker_close_store(b);
    channel_table_free(&b->channels);
    b->links = NULL;
}

int broker_fail(broker_err *err, const char *code, const char *fmt, ...)
{
    va_list ap;
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return -1;
}

static int s_check(const broker *b, const char *chan, size_t chan_len,
                   size_t data_len, const char *event, size_t event_len,
                   broker_err *err)
{
    if (!push_channel_valid(chan, chan_len))
        return broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    if (data_len > b->cfg->max_message_size)
        return broker_fail(err, PUSH_ERR_TOO_LARGE,
                           "message of %zu bytes exceeds max_message_size %llu",
                           data_len, (unsigned long long)b->cfg->max_message_size);
    if (!push_event_valid(event, event_len))
        return broker_fail(err, PUSH_ERR_BAD_REQUEST,
                           "invalid event name (at most %d printable ASCII bytes, no spaces)",
                           PUSH_EVENT_MAX);
    return 0;
}

static history_limits s_limits(const broker *b)
{
    history_limits lim = {
        .max_count = (size_t)b->cfg->history_max,
        .max_age_us = b->cfg->history_age * 1000000u,
    };
    return lim;
}

/* ---- holding back fan-out and replies until the commit ------------------ */

static int s_holding(const broker *b)
{
    return b->store && (b->nqueued || b->nunsent || store_dirty(b->store));
}

static int s_grow(void **arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 64;
    void *more = realloc(*arr, ncap * size);
    if (!more)
        return -1;
    *arr = more;
    *cap = ncap;
    return 0;
}

static void s_drop_held(broker *b)
{
    for (size_t i = 0; i < b->nunsent; i++)
        b->unsent[i].chan->unsent_from = 0;
    for (size_t i = 0; i < b->nqueued; i++)
        reply_free(&b->queued[i].r);
    free(b->unsent);
    free(b->queued);
    b->unsent = NULL;
    b->queued = NULL;
    b->nunsent = b->unsent_cap = b->nqueued = b->queued_cap = 0;
}

static void s_fanout_held(broker *b)
{
    for (size_t i = 0; i < b->nunsent; i++) {
        channel *c = b->unsent[i].chan;
        const history_msg *m = history_get(&c->hist, b->unsent[i].id);
        c->unsent_from = 0;
        if (!m)
            log_debug("%s #%llu left history before its fan-out", c->name,
                      (unsigned long long)b->unsent[i].id);
        else if (b->links)
            links_fanout(b->links, c, m);
    }
    b->nunsent = 0;
}

static void s_send_held(broker *b)
{
    for (size_t i = 0; i < b->nqueued; i++) {
        if (reply_send(&b->queued[i].r, b->queued[i].socket) < 0)
            log_debug("held reply not sent: %s", zmq_strerror(errno));
        reply_free(&b->queued[i].r);
    }
    b->nqueued = 0;
}

int broker_commit(broker *b)
{
    if (!b->store)
        return 0;
    int rc = store_commit(b->store);
    if (rc == -2) {
        s_drop_held(b);
        return -1;
    }
    if (rc < 0)
        return -1;
    s_fanout_held(b);
    s_send_held(b);
    if (store_compacting(b->store))
        store_compact_check(b->store);   /* install it as soon as it is done */
    return 0;
}

void broker_send(broker *b, void *socket, reply *r)
{
    if (r->count == 0) {
        reply_free(r);    /* building it ran out of memory */
        return;
    }
    if (s_holding(b)) {
        if (s_grow((void **)&b->queued, &b->queued_cap, b->nqueued, sizeof *b->queued) == 0
            && reply_own(r) == 0) {
            b->queued[b->nqueued].socket = socket;
            b->queued[b->nqueued].r = *r;
            b->nqueued++;
            return;
        }
        log_error("cannot hold a reply back: out of memory; reply dropped");
    } else if (reply_send(r, socket) < 0) {
        log_debug("reply not sent: %s", zmq_strerror(errno));
    }
    reply_free(r);
}

int broker_fatal(const broker *b)
{
    return b->store && store_fatal(b->store);
}

/* ---- publishing ---------------------------------------------------------- */

/* With a store: the record goes to the journal buffer before the message
 * is stored in memory, and its fan-out waits for the commit. */
static int s_persist(broker *b, channel *c, const history_limits *lim,
                     const void *data, size_t data_len,
                     const char *event, size_t event_len, uint64_t now_us, broker_err *err)
{
    history *h = &c->hist;
    /* appending would trim a message whose fan-out is still held back:
     * commit first (this only happens with tiny history_max) */
    if (c->unsent_from && history_count(h) >= lim->max_count
        && history_oldest_id(h) >= c->unsent_from)
        broker_commit(b);
    if (store_fatal(b->store) || store_failed(b->store))
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "message store cannot write: %s",
                           strerror(store_fatal(b->store) ? store_fatal(b->store)
                                                          : store_failed(b->store)));
    store_record rec = {
        .type = STORE_REC_MSG, .channel = c->name, .channel_len = c->name_len,
        .id = history_last_id(h) + 1, .time_us = now_us,
        .event = event, .event_len = event_len, .data = data, .data_len = data_len,
    };
    if (store_append(b->store, &rec) < 0) {
        log_error("cannot journal message on %s: %s", c->name, strerror(errno));
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "message store cannot write: %s",
                           strerror(errno));
    }
    return 0;
}

static void s_hold_fanout(broker *b, channel *c, const history_msg *m)
{
    if (s_grow((void **)&b->unsent, &b->unsent_cap, b->nunsent, sizeof *b->unsent) < 0) {
        if (b->links)
            links_fanout(b->links, c, m);   /* out of memory: do not lose it */
        return;
    }
    b->unsent[b->nunsent].chan = c;
    b->unsent[b->nunsent].id = m->id;
    b->nunsent++;
    if (!c->unsent_from)
        c->unsent_from = m->id;
}

int broker_publish(broker *b, const char *chan, size_t chan_len,
                   const void *data, size_t data_len,
                   const char *event, size_t event_len,
                   uint64_t now_us, broker_published *out, broker_err *err)
{
    if (!event)
        event_len = 0;
    if (s_check(b, chan, chan_len, data_len, event, event_len, err) < 0)
        return -1;
    channel *c = channel_get(&b->channels, chan, chan_len);
    history_limits lim = s_limits(b);
    if (c && b->store && s_persist(b, c, &lim, data, data_len, event, event_len,
                                   now_us, err) < 0)
        return -1;
    const history_msg *m = c ? history_append(&c->hist, event, event_len, data,
                                              data_len, now_us, &lim) : NULL;
    if (!m) {
        log_error("cannot store message on %s: %s", c ? c->name : "new channel",
                  strerror(errno));
        if (c && b->store)
            store_cancel_last(b->store);
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    }
    b->published++;
    out->id = m->id;
    out->subscribers = c->subscribers;
    if (b->store)
        s_hold_fanout(b, c, m);
    else if (b->links)
        links_fanout(b->links, c, m);
    log_debug("published %s #%llu (%zu bytes) to %llu subscribers", c->name,
              (unsigned long long)m->id, data_len, (unsigned long long)c->subscribers);
    return 0;
}

channel *broker_history_channel(broker *b, const char *chan, size_t chan_len,
                                broker_err *err)
{
    if (!push_channel_valid(chan, chan_len)) {
        broker_fail(err, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
        return NULL;
    }
    /* readers only ever see messages that are in the journal */
    broker_commit(b);
    channel *c = channel_get(&b->channels, chan, chan_len);
    if (!c)
        broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    return c;
}

int broker_stats_json(const broker *b, cJSON *obj, uint64_t now_mono_us)
{
    uint64_t up = now_mono_us > b->start_us ? (now_mono_us - b->start_us) / 1000000u : 0;
    int ok = json_add_u64(obj, "channels", b->channels.count)
          && json_add_u64(obj, "messages_stored", channel_table_messages(&b->channels))
          && json_add_u64(obj, "published", b->published)
          && json_add_u64(obj, "children", b->links ? links_count(b->links) : 0)
          && json_add_u64(obj, "uptime_s", up)
          && json_add_u64(obj, "publish_rate", (uint64_t)(b->publish_rate + 0.5));
    if (ok && b->links) {
        uint64_t pch, pmem, pconn;
        presence_totals(b->links->presence, &pch, &pmem, &pconn);
        ok = json_add_u64(obj, "presence_channels", pch)
          && json_add_u64(obj, "presence_members", pmem)
          && json_add_u64(obj, "presence_connections", pconn);
    }
    if (ok && b->store)
        ok = json_add_u64(obj, "log_bytes", store_size(b->store))
          && cJSON_AddStringToObject(obj, "fsync", store_fsync_name(store_policy(b->store)))
          && json_add_u64(obj, "fsync_lag_ms", store_fsync_lag_ms(b->store))
          && json_add_u64(obj, "compactions", store_compactions(b->store));
    return ok ? 0 : -1;
}

/* ---- the store: recovery and compaction ---------------------------------- */

static int s_replay(void *ctx, const store_record *r)
{
    broker *b = ctx;
    channel *c = channel_get(&b->channels, r->channel, r->channel_len);
    if (!c)
        return -1;
    history *h = &c->hist;
    if (r->type == STORE_REC_FLOOR)
        return history_skip_to(h, r->id);
    uint64_t last = history_last_id(h);
    if (r->id <= last) {
        b->replay_stale++;
        return 0;
    }
    if (r->id > last + 1 && history_skip_to(h, r->id - 1) < 0)
        return -1;
    history_limits lim = s_limits(b);
    return history_append(h, r->event, r->event_len, r->data, r->data_len, r->time_us,
                          &lim) ? 0 : -1;
}

/* Runs in the compaction child: no allocation, no logging. */
static int s_emit(void *ctx, store_writer *w)
{
    const channel_table *t = &((const broker *)ctx)->channels;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next) {
            const history *h = &c->hist;
            uint64_t last = history_last_id(h), oldest = history_oldest_id(h);
            if (!last)
                continue;
            store_record r = { .type = STORE_REC_FLOOR, .channel = c->name,
                               .channel_len = c->name_len, .id = oldest - 1 };
            if (oldest > 1 && store_writer_put(w, &r) < 0)
                return -1;
            r.type = STORE_REC_MSG;
            for (uint64_t id = oldest; id <= last; id++) {
                const history_msg *m = history_get(h, id);
                r.id = m->id;
                r.time_us = m->time_us;
                r.event = m->event;
                r.event_len = m->event_len;
                r.data = m->data;
                r.data_len = m->data_len;
                if (store_writer_put(w, &r) < 0)
                    return -1;
            }
        }
    return 0;
}

/* What s_emit() would write, in bytes. */
static uint64_t s_live_bytes(const broker *b)
{
    const channel_table *t = &b->channels;
    uint64_t n = 0;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next) {
            const history *h = &c->hist;
            if (!history_last_id(h))
                continue;
            uint64_t per = store_record_size(c->name_len, 0, 0);
            n += (history_oldest_id(h) > 1 ? per : 0) + history_count(h) * per
               + history_bytes(h);
        }
    return n;
}

int broker_open_store(broker *b, uint64_t now_us)
{
    if (!b->cfg->data_dir)
        return 0;
    uint64_t t0 = clock_mono_us();
    store_recovery rec;
    b->store = store_open(b->cfg->data_dir, b->cfg->fsync, s_replay, b, &rec);
    if (!b->store)
        return -1;
    channel_table_tick(&b->channels, now_us, b->cfg->history_age * 1000000u);
    uint64_t chans = 0, msgs = 0;
    const channel_table *t = &b->channels;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next) {
            chans += history_last_id(&c->hist) > 0;
            msgs += history_count(&c->hist);
        }
    if (b->replay_stale)
        log_warn("message store: %llu records were skipped: their ids were not above "
                 "their channel's last id", (unsigned long long)b->replay_stale);
    log_info("message store %s: recovered %llu messages in %llu channels from %llu bytes "
             "in %llu ms (%llu records read; fsync %s)",
             store_path(b->store), (unsigned long long)msgs, (unsigned long long)chans,
             (unsigned long long)rec.bytes,
             (unsigned long long)((clock_mono_us() - t0) / 1000),
             (unsigned long long)rec.records, store_fsync_name(b->cfg->fsync));
    return 0;
}

int broker_compact(broker *b, int wait)
{
    if (!b->store)
        return 0;
    if (broker_commit(b) < 0 || store_compact_start(b->store, s_emit, b) < 0)
        return -1;
    return wait && store_compacting(b->store) ? store_compact_wait(b->store) : 0;
}

int broker_compacting(const broker *b)
{
    return b->store && store_compacting(b->store);
}

int broker_close_store(broker *b)
{
    if (!b->store)
        return 0;
    s_drop_held(b);
    int rc = store_close(b->store);
    b->store = NULL;
    return rc;
}

/* The publish rate over the last second (at least) of ticks. */
static void s_rate(broker *b, uint64_t now_us)
{
    if (!b->rate_us || now_us < b->rate_us) {
        b->rate_us = now_us;
        b->rate_published = b->published;
        return;
    }
    uint64_t dt = now_us - b->rate_us;
    if (dt < 1000000u)
        return;
    b->publish_rate = (double)(b->published - b->rate_published) * 1e6 / (double)dt;
    b->rate_us = now_us;
    b->rate_published = b->published;
}

void broker_tick(broker *b, uint64_t now_us)
{
    broker_commit(b);   /* retries a failed write; normally nothing to do */
    s_rate(b, now_us);
    size_t n = channel_table_tick(&b->channels, now_us, b->cfg->history_age * 1000000u);
    if (n)
        log_debug("trimmed %zu expired messages", n);
    if (b->store && store_tick(b->store) == 0 && store_compact_due(b->store))
        store_compact_maybe(b->store, s_live_bytes(b), s_emit, b);
}
