/*
 * link.h — the one ZeroMQ link of an Apache child to pushbrokerd.
 *
 * A dedicated thread owns the DEALER socket (ZeroMQ sockets are single
 * threaded).  It announces the child (HELLO), keeps the broker told of the
 * local subscriber count of every channel (SUB), pings every 500 ms and
 * considers the link down after 2 s of silence; it turns MSG into push_msg
 * objects and hands them to the hub, then wakes the reactor once per batch.
 * Workers use push_link_request() for request/reply exchanges (HIST,
 * PUBLISH); it is safe from any thread and never waits longer than its
 * timeout.  Wire format: proto/push_proto.h.
 */
#ifndef PUSH_LINK_H
#define PUSH_LINK_H

#include "hub.h"
#include "push_proto.h"

#include "httpd.h"

typedef struct push_link push_link;

typedef void push_link_wake_fn(void *arg);

/* Create the ZeroMQ context and start the link thread (call in child_init).
 * wake(arg) is called from the link thread when the hub has ready clients;
 * reset(arg) when the broker turned out to be a new one (another epoch): ids
 * may have started again, so open streams can no longer be continued.
 * Returns NULL (and logs why) on failure. */
push_link *push_link_start(server_rec *s, const char *endpoint, push_hub *hub,
                           push_link_wake_fn *wake, push_link_wake_fn *reset, void *arg);

/* Stop the thread, close the socket, terminate the context. */
void push_link_stop(push_link **link);

/* Whether the broker answered recently (a WELCOME and a PONG in the last 2 s).
 * A child that has just started waits for its first WELCOME (at most 2 s
 * after the start): a freshly forked child is not a dead broker. */
int push_link_up(push_link *link);

/* Hub callback: the local count of channel changed (called with the hub locked). */
void push_link_count_changed(void *link, const char *channel);

/* Hub callback: a connection with an identity joined or left channel. */
void push_link_presence_changed(void *link, const char *channel, const char *identity, int join);

/* Send frames[0..n) with a request id inserted after frames[0] and wait up
 * to timeout_ms for the reply carrying that id.  Returns 0 and fills *reply
 * (the whole reply message; the caller calls push_frames_close), or -1 when
 * the link is down, the send failed or the time ran out. */
int push_link_request(push_link *link, const push_frame *frames, int n, int timeout_ms,
                      push_frames *reply);

/* Counters for statistics. */
typedef struct push_link_stats {
    int      up;
    uint64_t messages_in;
    uint64_t reconnects;
} push_link_stats;
void push_link_get_stats(push_link *link, push_link_stats *out);

#endif
