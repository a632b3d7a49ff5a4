/*
 * reactor.h — the per-child event loop that owns parked (suspended)
 * connections, so that a waiting subscriber holds no worker thread.
 *
 * Life of a held connection (a "hold"):
 *   1. a worker runs the handler: push_hold_new(), subscribes, writes what
 *      it can, and returns SUSPENDED;
 *   2. the suspend_connection hook calls push_reactor_park(): from then on
 *      only the reactor thread touches r, c, the filters and the bucket
 *      allocator of that connection;
 *   3. the reactor writes events without blocking (data + a "nudge" bucket
 *      through the request's filters, then the core output filter with a
 *      NULL brigade), watches the socket for the client going away, runs
 *      the transport's timer, and cuts off slow consumers;
 *   4. when the hold ends, the reactor detaches it from the hub and lends an
 *      MPM worker (timed callback, t = 0) to finish the request (last chunk,
 *      logging), then waits for the client's FIN (at most 2 s) and lends a
 *      worker again to destroy the connection's pool.
 *
 * A detached ("lean") hold skips 2-4: once the response head is written, the
 * handler gives the socket (a duplicate of its descriptor) to the reactor
 * and lets Apache close its side and free the connection's pools, which are
 * most of what an idle connection costs (~30 KiB).  The reactor then writes
 * to the socket itself (chunked framing included), reads WebSocket input
 * itself, and closes.  Only plain-HTTP connections whose filters do nothing
 * the reactor cannot do qualify (push_hold_detach); TLS stays in Apache.
 * See docs/architecture.md and ../shared/docs/apache-async.md for why.
 */
#ifndef PUSH_REACTOR_H
#define PUSH_REACTOR_H

#include "hub.h"
#include "mod_push.h"
#include "outbuf.h"

#include "apr_buckets.h"
#include "util_filter.h"

typedef struct push_reactor push_reactor;
typedef struct push_hold push_hold;

/* What a transport does with a parked connection.  The callbacks run on
 * the reactor thread, which owns the hold.  Return 0 to keep holding, 1 to
 * end the hold (h->aborted tells whether it ends in error). */
/* Slots of the per-transport statistics. */
enum { PUSH_TP_SSE, PUSH_TP_LONGPOLL, PUSH_TP_WEBSOCKET, PUSH_TP_COUNT };

typedef struct push_transport {
    const char *name;
    int         slot;                            /* PUSH_TP_* */
    int (*deliver)(push_hold *h, push_entry *e, int n);
    int (*tick)(push_hold *h, apr_time_t now);   /* called when now >= h->deadline */
    void (*stop)(push_hold *h);                  /* last words before a server stop */
    /* Last words to a slow consumer (its queue overflowed), written without
     * blocking.  With it, the hold then ends normally and the finishing
     * worker flushes what it can (at most CLOSE_TIMEOUT); without it, the
     * connection is cut at once. */
    void (*slow)(push_hold *h);
    /* The client sent something (NULL: only its going away matters). */
    int (*readable)(push_hold *h);
    /* A connection switched to another protocol (101): no HTTP response
     * to finalize when the hold ends. */
    int upgraded;
    /* Release the transport's own state (h->tdata); NULL when none. */
    void (*cleanup)(push_hold *h);
} push_transport;

struct push_hold {
    push_client           client;     /* the hub's side; first member */
    request_rec          *r;          /* NULL once detached (lean) */
    conn_rec             *c;          /* NULL once detached (lean) */
    int                   fd;
    const push_transport *tp;
    push_settings         set;
    const char           *channel;    /* from r->pool */
    apr_bucket_brigade   *bb;         /* reused for every write */
    ap_filter_t          *out;        /* where writes go: the request's or the connection's filters */
    push_reactor         *rx;
    void                 *tdata;      /* the transport's own state */
    void (*borrowed)(push_hold *h);   /* work a borrowed worker does */
    int                   input_pending; /* input arrived while a worker had the hold */
    apr_time_t            deadline;   /* next tp->tick */
    /* reactor bookkeeping */
    int                   state;
    int                   backlog;    /* writes in a row that left data pending */
    int                   events;     /* epoll events currently registered */
    apr_time_t            suspended_at;
    apr_time_t            linger_until;
    int                   aborted;
    /* lean (detached) holds */
    int                   lean;
    int                   chunked;    /* the response is chunked: frame every flush */
    push_outbuf           out_raw;    /* what it could not send yet (outbuf.h) */
    apr_time_t            close_by;   /* give up flushing the last words */
    char                 *own_channel; /* channel copied out of r->pool */
    char                  client_ip[48];
    push_hold            *prev, *next;
    push_hold            *next_returning;
    push_hold            *all_prev, *all_next;   /* rx->all, under rx->lock */
};

/* Start the reactor thread; child_init.  NULL (logged) on failure. */
push_reactor *push_reactor_start(server_rec *s, push_hub *hub);

/* Graceful stop: end every hold cleanly (child_stopping), then let the
 * workers finish them.  push_reactor_destroy() joins the thread. */
void push_reactor_stop(push_reactor *rx);
void push_reactor_destroy(push_reactor **rx);

/* fn(arg) runs on the reactor thread at every tick (a few times a second). */
void push_reactor_on_tick(push_reactor *rx, void (*fn)(void *arg), void *arg);

/* Wake the reactor: the hub has ready clients (link thread callback). */
void push_reactor_wake(void *rx);

/* End every hold as on a stop (link thread callback: the broker restarted
 * and its ids may have started again; clients reconnect with their cursor). */
void push_reactor_reset(void *rx);

/* Worker: a new hold for r, not yet parked.  Allocated with malloc.  NULL
 * with errno ENOMEM, or EMFILE when this child holds as many connections as
 * its open-file limit allows (the limit minus a tenth and 64, kept for the
 * connections httpd is serving: an accept() failing with EMFILE would make
 * httpd stop the whole child); answer that with push_hold_refused(). */
push_hold *push_hold_new(push_reactor *rx, request_rec *r, const push_transport *tp,
                         const push_settings *set, const char *channel);

/* Worker, in the handler, once the response head and everything before
 * it are flushed: detach the connection from Apache (see above) and give
 * it to the reactor.  Returns 1 when done: the handler returns OK and
 * Apache closes only its own descriptor.  Returns 0 when the connection
 * must stay Apache's (TLS, an output filter the reactor cannot stand in
 * for, input already buffered): the handler suspends it as usual. */
int push_hold_detach(push_hold *h);

/* Log about a hold's client: through its conn_rec while it has one, else
 * with the server and the client's address (lean holds). */
#define push_hold_log(h, level, tag, fmt, ...)                                        \
    do {                                                                             \
        if ((h)->c)                                                                  \
            ap_log_cerror(APLOG_MARK, level, 0, (h)->c, tag fmt, ##__VA_ARGS__);     \
        else                                                                         \
            ap_log_error(APLOG_MARK, level, 0, push_hold_server(h),                   \
                         "[client %s] " tag fmt, (h)->client_ip, ##__VA_ARGS__);      \
    } while (0)
server_rec *push_hold_server(const push_hold *h);

/* A pool for work a borrowed worker does on the hold; destroy it after. */
apr_status_t push_hold_pool(push_hold *h, apr_pool_t **p);

/* Worker: the handler did not suspend after all: detach and free. */
void push_hold_discard(push_reactor *rx, push_hold *h);

/* suspend_connection hook: hand the hold to the reactor. */
void push_reactor_park(push_reactor *rx, push_hold *h);

/* Owner thread: queue bytes for the client (copied) / flush them without
 * blocking.  push_hold_flush returns 0, or -1 when the connection failed. */
void push_hold_write(push_hold *h, const char *data, size_t len);
int  push_hold_flush(push_hold *h);

/* Reactor: lend an MPM worker to run fn(h), for work that may block (a
 * broker round trip).  Meanwhile the reactor leaves the hold alone; then it
 * serves it again (input that arrived, queued messages). */
void push_hold_borrow(push_hold *h, void (*fn)(push_hold *h));

/* Reactor: end the hold (aborted: in error, no final response). */
void push_hold_end(push_hold *h, int aborted);

/* Statistics of this child's reactor. */
typedef struct push_reactor_stats {
    int      held;
    int      held_by[PUSH_TP_COUNT];   /* held connections per transport */
    uint64_t delivered;
    uint64_t bytes_sent;
    uint64_t slow_cut;
} push_reactor_stats;
void push_reactor_get_stats(push_reactor *rx, push_reactor_stats *out);

#endif
