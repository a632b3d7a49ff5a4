/*
 * broker.h — the broker's shared state and the operations every entry point
 * (application API, push socket, link children) goes through.
 *
 * Contract: broker_publish() is the only way a message enters a channel, so
 * channel-name, event-name and max_message_size checks are made in exactly
 * one place.  Errors come back as a PUSH_ERR_* code plus a human message,
 * ready for ERR / PUBACK ERR / JSON error replies.  The broker does not own
 * the links object; when links is NULL (unit tests) fan-out is skipped.
 *
 * Persistence (cfg->data_dir set, broker_open_store() called): every
 * published message is appended to the store (store.h) before anything
 * else sees it.  Fan-out and replies that may acknowledge a message are
 * held back until broker_commit() has written (and, for fsync "always",
 * synced) the records; the event loop commits once per round, so one write
 * and one fdatasync cover a whole batch (group commit).  Replies go through
 * broker_send(), which sends at once when nothing is pending and otherwise
 * queues a copy; queued replies and fan-out keep their order.  History
 * queries commit first, so nobody ever reads a message that is not yet in
 * the journal.  Without a store all of this is skipped: fan-out and replies
 * happen at once.
 */
#ifndef PUSHBROKERD_BROKER_H
#define PUSHBROKERD_BROKER_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "config.h"
#include "history.h"
#include "reply.h"

struct links;
struct cJSON;
struct store;

typedef struct broker_unsent {        /* a message whose fan-out waits for the commit */
    channel *chan;
    uint64_t id;
} broker_unsent;

typedef struct broker_queued {        /* a reply that waits for the commit */
    void  *socket;
    reply  r;
} broker_queued;

typedef struct broker {
    const broker_config *cfg;
    channel_table        channels;
    struct links        *links;       /* set by main after links_open() */
    uint64_t             epoch;       /* identifies this run to children */
    uint64_t             start_us;    /* monotonic clock at start */
    uint64_t             published;   /* messages accepted since start */
    double               publish_rate; /* messages/s over the last second or so */
    uint64_t             rate_published, rate_us;   /* where the rate was last taken */
    struct store        *store;       /* NULL: memory only */
    broker_unsent       *unsent;      /* fan-out held back, in publish order */
    size_t               nunsent, unsent_cap;
    broker_queued       *queued;      /* replies held back, in order */
    size_t               nqueued, queued_cap;
    uint64_t             replay_stale; /* records skipped at recovery (id not new) */
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

/* Periodic work: age trimming and dropping unused channels; with a store
 * also a commit retry, the everysec sync and compaction. */
void broker_tick(broker *b, uint64_t now_us);

/* Open the message store of cfg->data_dir (no-op without one) and replay
 * it into the channels, then age-trim them with now_us.  Logs a summary
 * line.  Returns 0, or -1 (logged) when the broker must not start. */
int  broker_open_store(broker *b, uint64_t now_us);

/* Write (and sync, per policy) what was appended, then fan out and send
 * what was held back.  Returns 0, or -1 when the store could not write
 * (held back until a later commit works) or is broken (broker_fatal()). */
int  broker_commit(broker *b);

/* Compact the store now, whatever its size (no-op without a store); with
 * wait, block until the new journal is installed.  Returns 0 or -1. */
int  broker_compact(broker *b, int wait);

/* True while a compaction child runs: the event loop then wakes up often,
 * so that broker_commit() installs the result soon after it is ready. */
int  broker_compacting(const broker *b);

/* Commit, sync and close the store (also done by broker_free()). */
int  broker_close_store(broker *b);

/* True when the store failed in a way that forbids going on (fdatasync
 * failed): the broker should stop. */
int  broker_fatal(const broker *b);

/* Send r on socket, now or (while something is held back) after the next
 * commit.  Takes r: it is freed either way. */
void broker_send(broker *b, void *socket, reply *r);

/* Fill *err (message is printf-formatted); returns -1 for tail calls. */
int  broker_fail(broker_err *err, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
