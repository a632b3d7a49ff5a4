/*
 * broker.c — see broker.h.
 */
#include "broker.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "jsonesc.h"
#include "links.h"
#include "log.h"
#include "push_proto.h"

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
    const history_msg *m = c ? history_append(&c->hist, event, event_len, data,
                                              data_len, now_us, &lim) : NULL;
    if (!m) {
        log_error("cannot store message on %s: %s", c ? c->name : "new channel",
                  strerror(errno));
        return broker_fail(err, PUSH_ERR_UNAVAILABLE, "broker out of memory");
    }
    b->published++;
    out->id = m->id;
    out->subscribers = c->subscribers;
    if (b->links)
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
          && json_add_u64(obj, "uptime_s", up);
    return ok ? 0 : -1;
}

void broker_tick(broker *b, uint64_t now_us)
{
    size_t n = channel_table_tick(&b->channels, now_us, b->cfg->history_age * 1000000u);
    if (n)
        log_debug("trimmed %zu expired messages", n);
}
