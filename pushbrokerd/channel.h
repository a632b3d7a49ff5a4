/*
 * channel.h — the channel table: name -> channel.
 *
 * Contract:
 *  - A channel is created on first use (publish, subscribe, history query)
 *    by channel_get(); names must already have passed push_channel_valid().
 *  - Each channel owns its history and, per link child, that child's local
 *    subscriber count.  Children are small integers handed out by links.c;
 *    a child with count 0 has no entry.  subscribers is the sum of counts
 *    ("subscribers reached" by a publish).
 *  - channel_table_tick() age-trims every history and deletes channels that
 *    carry no state worth keeping: never published to and no subscribers.
 *    Channels that ever had a message are kept, so their ids keep counting
 *    up (see history.h).  Channel pointers are therefore only valid until
 *    the next tick or channel_table_free().
 */
#ifndef PUSHBROKERD_CHANNEL_H
#define PUSHBROKERD_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "history.h"

typedef struct channel_sub {
    uint32_t child;
    uint32_t count;
} channel_sub;

typedef struct channel {
    struct channel *next;         /* hash chain */
    uint64_t        hash;
    history         hist;
    channel_sub    *subs;         /* nsubs entries, all with count > 0 */
    size_t          nsubs;
    size_t          subs_cap;
    uint64_t        subscribers;  /* sum of subs[].count */
    uint64_t        unsent_from;  /* first id not yet fanned out (0: none), while
                                     the broker holds fan-out back for a commit */
    size_t          name_len;
    char            name[];       /* NUL-terminated */
} channel;

typedef struct channel_table {
    channel **bucket;
    size_t    nbucket;            /* power of two */
    size_t    count;
} channel_table;

int  channel_table_init(channel_table *t);
void channel_table_free(channel_table *t);

/* The channel, or NULL when it does not exist. */
channel *channel_find(const channel_table *t, const char *name, size_t len);

/* The channel, created when missing; NULL (errno ENOMEM) on failure. */
channel *channel_get(channel_table *t, const char *name, size_t len);

/* Set child's subscriber count (0 removes it).  Returns 0, or -1 (ENOMEM)
 * with the old count kept. */
int  channel_set_subs(channel *c, uint32_t child, uint32_t count);

/* child's count on c (0 when none). */
uint32_t channel_child_subs(const channel *c, uint32_t child);

/* Remove child from every channel (it was forgotten or said HELLO again). */
void channel_table_drop_child(channel_table *t, uint32_t child);

/* Periodic work, see above.  Returns the number of messages trimmed. */
size_t channel_table_tick(channel_table *t, uint64_t now_us, uint64_t max_age_us);

/* Messages retained over all channels. */
uint64_t channel_table_messages(const channel_table *t);

#endif
