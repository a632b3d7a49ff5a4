/*
 * broker.h — the broker's shared state and the operations every entry point
 * (application API, push socket, link children) goes through.
 *
 * Contract: broker_publish() is the only way a message enters a channel, so
 * channel-name, event-name and max_message_size checks are made in exactly
 * one place.  Errors come back as a PUSH_ERR_* code plus a human message,
 * ready for ERR / PUBACK ERR / JSON error replies.  The broker does not own
 * the links object; when links is NULL (unit tests) fan-out is skipped.
 */
#ifndef PUSHBROKERD_BROKER_H
#define PUSHBROKERD_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "config.h"
#include "history.h"

struct links;
struct cJSON;

typedef struct broker {
    const broker_config *cfg;
    channel_table        channels;
    struct links        *links;       /* set by main after links_open() */
    uint64_t             epoch;       /* identifies this run to children */
    uint64_t             start_us;    /* monotonic clock at start */
    uint64_t             published;   /* messages accepted since start */
} broker;

typedef struct broker_err {
    const char *code;                 /* PUSH_ERR_* */
    char        msg[160];
} broker_err;

typedef struct broker_published {
    uint64_t id;
    uint64_t subscribers;             /* sum of child counts when published */
} broker_published;

/* epoch: the run's identity (time-based); now_mono_us: for uptime. */
int  broker_init(broker *b, const broker_config *cfg, uint64_t epoch, uint64_t now_mono_us);
void broker_free(broker *b);

/* Validate, store, fan out.  event may be NULL/empty.  Returns 0, or -1
 * with *err filled in. */
int  broker_publish(broker *b, const char *chan, size_t chan_len,
                    const void *data, size_t data_len,
                    const char *event, size_t event_len,
                    uint64_t now_us, broker_published *out, broker_err *err);

/* Look up (creating) a channel for a history query.  Returns NULL with *err
 * filled in when the name is invalid or memory ran out. */
channel *broker_history_channel(broker *b, const char *chan, size_t chan_len,
                                broker_err *err);

/* Add the STATS fields to a JSON object.  Returns 0 or -1 (ENOMEM). */
int  broker_stats_json(const broker *b, struct cJSON *obj, uint64_t now_mono_us);

/* Periodic work: age trimming and dropping unused channels. */
void broker_tick(broker *b, uint64_t now_us);

/* Fill *err (message is printf-formatted); returns -1 for tail calls. */
int  broker_fail(broker_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
