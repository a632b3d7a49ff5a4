/*
 * links.h — the ROUTER socket that mod_push children (DEALER) connect to.
 *
 * Contract:
 *  - A child is known by its ROUTER identity once it said HELLO; it gets a
 *    small integer (its slot) that channel.c uses for subscriber counts.
 *    Slots are reused only after the child's counts were dropped everywhere.
 *  - Any message from a known child refreshes it; a child not heard from for
 *    child_timeout seconds (config.h) is forgotten by links_tick(): its
 *    counts and its presence (a lease) drop.
 *  - Messages from unknown identities other than HELLO are answered with
 *    RESET (and HIST / PUBLISH / PING are still served), so a child that the
 *    broker lost (restart, timeout, reconnect) registers again.
 *  - Malformed messages are logged at warning level and dropped.
 *  - Nothing here blocks: sends use ZMQ_DONTWAIT on a socket with a large
 *    send HWM and ROUTER_MANDATORY off, so a slow or dead child loses
 *    messages (it recovers them through HIST) instead of stalling the broker.
 */
#ifndef PUSHBROKERD_LINKS_H
#define PUSHBROKERD_LINKS_H

#include <stddef.h>
#include <stdint.h>

#include "channel.h"
#include "history.h"
#include "push_proto.h"

struct broker;

#define LINKS_MAX_CHILDREN 65536
#define LINKS_SNDHWM       100000
/* Messages in one HIST reply, oldest first.  A child that got a full page
 * with its last id below last_id asks again after that id (see
 * mod_push/subscribe.c); a page keeps the reply within PUSH_MAX_FRAMES. */
#define LINKS_HIST_MAX     PUSH_HISTORY_PAGE

typedef struct link_child {
    unsigned char id[256];        /* ROUTER identity */
    size_t        id_len;         /* 0: free slot */
    uint64_t      pid;
    uint64_t      last_seen_us;   /* monotonic */
} link_child;

struct presence_table;

typedef struct links {
    void          *socket;
    struct broker *broker;
    struct presence_table *presence;  /* who is present, per child (presence.h) */
    link_child    *child;         /* nslots entries */
    size_t         nslots;
    size_t         live;
} links;

/* Create and bind the ROUTER socket.  Returns NULL (errno set; the reason
 * is logged) on failure. */
links *links_open(void *zctx, const char *endpoint, struct broker *b);
void   links_close(links *l);

/* Presence JSON of a channel (presence.h), for the application API. */
struct cJSON *links_presence_json(const links *l, const char *channel);

/* Handle up to max waiting messages without blocking. */
void   links_handle(links *l, int max);

/* Forget silent children. */
void   links_tick(links *l, uint64_t now_mono_us);

/* Send MSG to every child with subscribers on c. */
void   links_fanout(links *l, const channel *c, const history_msg *m);

size_t links_count(const links *l);

#endif
