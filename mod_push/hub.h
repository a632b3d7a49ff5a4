/*
 * hub.h — where the threads of a child meet: messages, channels with their
 * local subscribers, per-connection queues and the ready list.
 *
 * One hub per child, one mutex inside it.  The link thread dispatches new
 * messages into it; the reactor takes ready clients out of it; workers
 * subscribe and unsubscribe.  Nothing here touches Apache structures, so
 * the hub is unit-testable and safe from any thread.
 *
 * Ownership: a push_msg is reference counted (atomically); a queue entry
 * holds one reference.  A push_client is owned by its connection (the
 * reactor's hold); the hub only links it.  Memory is malloc'ed: the hub
 * outlives every request and is not tied to any pool.
 */
#ifndef PUSH_HUB_H
#define PUSH_HUB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

/* A message as delivered to subscribers, encoded once for every transport. */
typedef struct push_msg {
    int      refs;
    int      presence;   /* a join/leave event: no id, not in history */
    uint64_t id;
    uint64_t time_us;
    char    *channel;
    char    *event;      /* NULL when the message has no event name */
    char    *data;
    size_t   data_len;
    char    *sse;        /* the SSE event block, see sse_format.h */
    size_t   sse_len;
    char    *json;       /* the JSON object, see poll_format.h */
    size_t   json_len;
    char    *ws_json;    /* WebSocket JSON mode: {"type":"message","channel":..,"id":..,...} */
    size_t   ws_json_len;
} push_msg;

/* Copies everything it is given.  Returns NULL when out of memory. */
push_msg *push_msg_new(const char *channel, size_t channel_len, uint64_t id,
                       const char *event, size_t event_len,
                       const char *data, size_t data_len, uint64_t time_us);
/* A presence event (join = 1, leave = 0): event is "join"/"leave", data the
 * JSON {"channel":..,"identity":..,"connections":N,"time":T}, sse an event
 * without id, json {"type":"join"|"leave",...}.  NULL when out of memory. */
push_msg *push_msg_new_presence(const char *channel, int join, const char *identity,
                                uint64_t connections, uint64_t time_us);
void push_msg_ref(push_msg *m);
void push_msg_unref(push_msg *m);

typedef struct push_channel push_channel;
typedef struct push_client push_client;

/* One subscription of one client to one channel. */
typedef struct push_sub {
    push_client     *client;
    push_channel    *channel;
    uint64_t         sent_id;   /* last id written to the client: owner thread only */
    int              want_presence; /* join/leave events are delivered too */
    struct push_sub *chan_prev, *chan_next;   /* in the channel's list */
    struct push_sub *client_next;             /* in the client's list */
} push_sub;

typedef struct push_entry {
    push_msg *msg;
    push_sub *sub;
} push_entry;

/* The hub's view of a subscriber connection; embedded in the reactor's hold. */
struct push_client {
    push_sub    *subs;
    const char  *identity;       /* presence identity (owned by the owner), or NULL */
    push_entry  *queue;          /* a ring: qlen entries from qhead */
    int          qhead, qlen, qcap, qmax;
    /* Extra room while the client's socket still takes data: a burst the
     * owner has not caught up with yet is not a slow consumer.  Once the
     * owner marks it blocked (its socket is full), qmax is the limit. */
    int          qslack;
    int          blocked;        /* atomic: set and cleared by the owner */
    int          overflow;       /* set when a message was dropped: the client is a slow consumer */
    int          ready;          /* in the ready list */
    push_client *ready_next, *ready_prev;
    void        *owner;
};

/* Called with the hub locked when a channel's local subscriber count
 * changes from or to zero, or changes at all while mark_dirty is pending;
 * must only enqueue work (the link thread sends the counts). */
typedef void push_hub_count_fn(void *arg, const char *channel);

/* Owner: whether the client's socket is full (see qslack). */
static inline void push_client_set_blocked(push_client *c, int blocked)
{
    __atomic_store_n(&c->blocked, blocked, __ATOMIC_RELAXED);
}

/* Called with the hub locked when a subscription of a client with an
 * identity starts (join = 1) or ends (join = 0); must only enqueue work. */
typedef void push_hub_presence_fn(void *arg, const char *channel, const char *identity,
                                  int join);

typedef struct push_hub push_hub;

push_hub *push_hub_new(push_hub_count_fn *on_count, void *arg);
void      push_hub_destroy(push_hub **hub);
void      push_hub_set_presence_fn(push_hub *h, push_hub_presence_fn *fn);

void push_client_init(push_client *c, int qmax, void *owner);

/* Subscribe client to channel.  Returns the subscription or NULL when out
 * of memory (nothing changed then). */
push_sub *push_hub_subscribe(push_hub *h, push_client *c, const char *channel);

/* The same, unless channel already has max (> 0) subscribers in this hub:
 * then NULL with *full (may be NULL) set to 1.  Checked and done under the
 * hub's lock, so concurrent subscribers never exceed max. */
push_sub *push_hub_subscribe_max(push_hub *h, push_client *c, const char *channel, int max,
                                 int *full);

/* Owner: the client's subscription to channel, or NULL. */
push_sub *push_hub_find(push_client *c, const char *channel);

/* Owner: end one subscription; its queued entries are dropped.  Returns 1,
 * or 0 when the client was not subscribed to channel. */
int push_hub_unsubscribe(push_hub *h, push_client *c, const char *channel);

/* Remove every subscription of the client, drop its queue and take it off
 * the ready list.  Afterwards no other thread refers to the client. */
void push_hub_detach(push_hub *h, push_client *c);

/* Link thread: queue msg for every local subscriber of its channel.
 * Returns how many clients became ready (0: nobody to wake). */
int push_hub_dispatch(push_hub *h, push_msg *msg);

/* Reactor: take up to max clients off the ready list into out; returns how
 * many.  They are no longer linked: a dispatch meanwhile puts them on the
 * list again.  Clients stay valid: only their owner frees them. */
int push_hub_take_ready(push_hub *h, push_client **out, int max);

/* Owner: move up to max queued entries of the client to out (the caller
 * then owns their references), stopping once their data add up to
 * max_bytes or more (at least one entry moves when any is queued).  Entries already sent
 * (id <= sub->sent_id) are dropped here.  Returns the number moved;
 * *overflow tells whether the queue overflowed since the last call. */
int push_hub_drain(push_hub *h, push_client *c, push_entry *out, int max, size_t max_bytes,
                   int *overflow);

/* Owner: whether the client's queue overflowed since the last drain,
 * without draining it (a client whose socket takes nothing more). */
int push_hub_overflowed(push_hub *h, push_client *c);

/* Local subscriber count of a channel (0 when unknown) and whether the
 * hub has any channel at all; for the link thread. */
int push_hub_count(push_hub *h, const char *channel);

/* Call fn for every channel with subscribers (link reconnect). */
void push_hub_each_channel(push_hub *h, void (*fn)(void *arg, const char *channel, int count),
                           void *arg);

/* Call fn for every subscription of a client with an identity (link
 * reconnect: the broker is told every present connection again). */
void push_hub_each_presence(push_hub *h,
                            void (*fn)(void *arg, const char *channel, const char *identity),
                            void *arg);

/* Totals for statistics; queued: messages waiting in all client queues. */
void push_hub_totals(push_hub *h, int *channels, int *subscriptions);
uint64_t push_hub_queued(push_hub *h);

#endif
