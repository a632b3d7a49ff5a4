/*
 * presence.h — who is present on which channel.
 *
 * Contract:
 *  - A member is (channel, identity).  Its connections are counted per link
 *    child (the children's slots of links.c), so that a child that dies or
 *    is forgotten takes exactly its own connections away
 *    (presence_drop_child): presence is a lease the children renew by
 *    talking to the broker, never a promise that someone will say goodbye.
 *  - presence_join / presence_leave report through the callback when an
 *    identity becomes present (0 -> 1 connection) or absent (1 -> 0), so the
 *    caller can fan out join and leave events.
 *  - Memory is malloc'ed; a channel or member without connections is freed.
 */
#ifndef PUSHBROKERD_PRESENCE_H
#define PUSHBROKERD_PRESENCE_H

#include <stddef.h>
#include <stdint.h>

struct cJSON;

typedef struct presence_table presence_table;

/* join = 1 for a join, 0 for a leave; connections is the total after it. */
typedef void presence_event_fn(void *arg, const char *channel, const char *identity,
                               int join, uint64_t connections, uint64_t time_us);

presence_table *presence_new(presence_event_fn *fn, void *arg);
void            presence_free(presence_table **pt);

/* One more / one less connection of identity on channel from child.
 * Returns 0, or -1 when out of memory (join) or unknown (leave). */
int  presence_join(presence_table *pt, const char *channel, const char *identity,
                   uint32_t child, uint64_t now_us);
int  presence_leave(presence_table *pt, const char *channel, const char *identity,
                    uint32_t child, uint64_t now_us);

/* Remove every connection of child (it died, restarted or was forgotten). */
void presence_drop_child(presence_table *pt, uint32_t child, uint64_t now_us);

/* {"channel":c,"count":N,"members":[{"identity":..,"connections":N,"since":T}]}
 * (members sorted by identity).  NULL when out of memory. */
struct cJSON *presence_json(const presence_table *pt, const char *channel);

/* Totals for statistics. */
void presence_totals(const presence_table *pt, uint64_t *channels, uint64_t *members,
                     uint64_t *connections);

#endif
