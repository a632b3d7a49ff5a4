/*
 * reactor.c — the per-child event loop owning parked connections; see reactor.h.
 */
#include "reactor.h"

#include "http_connection.h"
#include "http_core.h"
#include "http_protocol.h"
#include "http_request.h"
#include "mpm_common.h"
#include "ap_mpm.h"
#include "http_ssl.h"
#include "apr_strings.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

APLOG_USE_MODULE(push);

#define TICK_MS          250
#define BATCH_ENTRIES    32
#define BATCH_BYTES      (32 * 1024)   /* stays below core's FlushMaxThreshold */
#define PARKED_TIMEOUT   apr_time_from_msec(50)   /* bounds any write wait on the reactor */
#define CLOSE_TIMEOUT    apr_time_from_sec(2)     /* final flush on the worker */
#define LINGER_TIME      apr_time_from_sec(2)
#define DESTROY_GRACE    apr_time_from_msec(100)  /* see apache-async.md §3 */
/* While a socket still takes data, a queue may hold this many times
 * PushMaxQueue more: a burst the reactor is still writing out. */
#define QUEUE_SLACK      3

enum { HOLD_NEW, HOLD_PARKED, HOLD_BUSY, HOLD_FINISHING, HOLD_LINGER, HOLD_DESTROYING };

struct push_reactor {
    server_rec     *s;
    push_hub       *hub;
    int             epfd;
    int             evfd;
    pthread_t       thread;
    int             started;
    int             quit;         /* atomic: leave the loop */
    int             stopping;     /* atomic: graceful stop requested */
    int             reset;        /* atomic: end every current hold once */
    void          (*tick_fn)(void *arg);
    void           *tick_arg;
    pthread_mutex_t lock;         /* incoming, closing_in */
    push_hold      *incoming;     /* parked by the suspend hook */
    push_hold      *closing_in;   /* finished by a worker, waiting for linger */
    push_hold      *returning;    /* lent to a worker, given back */
    push_hold      *discarded;    /* never parked; to be freed by the reactor */
    push_hold      *all;          /* every hold, push_hold_new to s_free (under lock) */
    int             nall;         /* how many (under lock) */
    int             max_holds;    /* open-file guard, 0: none (set before the thread starts) */
    apr_time_t      refused_logged; /* last AH20096 (under lock) */
    int             refused;      /* refusals since (under lock) */
    /* reactor thread only */
    push_hold      *held;         /* parked holds */
    push_hold      *closing;      /* lingering or waiting to be destroyed */
    /* statistics (atomic) */
    int             nheld;
    int             held_by[PUSH_TP_COUNT];
    uint64_t        bytes_sent;
    uint64_t        delivered;
    uint64_t        slow_cut;
};

/* ---- the nudge bucket: ends mod_ssl's coalescing without forcing a blocking flush */

static apr_status_t s_nudge_read(apr_bucket *b, const char **str, apr_size_t *len,
                                 apr_read_type_e block)
{
    *str = NULL;
    *len = 0;
    return APR_SUCCESS;
}

static const apr_bucket_type_t s_nudge_type = {
    "PUSH_NUDGE", 5, APR_BUCKET_METADATA,
    apr_bucket_destroy_noop, s_nudge_read, apr_bucket_setaside_noop,
    apr_bucket_split_notimpl, apr_bucket_simple_copy
};

static apr_bucket *s_nudge_create(apr_bucket_alloc_t *list)
{
    apr_bucket *b = apr_bucket_alloc(sizeof *b, list);
    APR_BUCKET_INIT(b);
    b->free = apr_bucket_free;
    b->list = list;
    b->length = 0;
    b->start = 0;
    b->data = NULL;
    b->type = &s_nudge_type;
    return b;
}

/* ---- writing ------------------------------------------------------------------ */

/* Write what core output holds, without blocking (a NULL brigade). */
static apr_status_t s_kick(push_hold *h)
{
    ap_filter_t *f = h->c->output_filters;
    while (f->next)
        f = f->next;
    return f->frec->filter_func.out_func(f, NULL);
}

/* ---- lean holds: the reactor's own output buffer (outbuf.h) ----------------------- */

static int s_raw_send(push_hold *h)
{
    uint64_t sent = 0;
    int rc = push_outbuf_send(&h->out_raw, h->fd, &sent);
    if (sent)
        __atomic_add_fetch(&h->rx->bytes_sent, sent, __ATOMIC_RELAXED);
    return rc;
}

/* Unsent bytes, wherever they wait. */
static int s_pending(push_hold *h)
{
    return h->lean ? push_outbuf_pending(&h->out_raw) : h->c->data_in_output_filters;
}

/* Push out what is pending without blocking. */
static apr_status_t s_send_pending(push_hold *h)
{
    if (h->lean)
        return s_raw_send(h) < 0 ? APR_EGENERAL : APR_SUCCESS;
    apr_status_t rv = s_kick(h);
    return rv == APR_SUCCESS && h->c->aborted ? APR_ECONNABORTED : rv;
}

void push_hold_write(push_hold *h, const char *data, size_t len)
{
    if (h->lean) {
        if (push_outbuf_append(&h->out_raw, h->chunked, data, len) < 0)
            h->aborted = 1;
        return;
    }
    apr_bucket *b = apr_bucket_heap_create(data, len, NULL, h->c->bucket_alloc);
    APR_BRIGADE_INSERT_TAIL(h->bb, b);
}

int push_hold_flush(push_hold *h)
{
    if (h->lean) {
        if (h->aborted || push_outbuf_close_chunk(&h->out_raw) < 0 || s_raw_send(h) < 0) {
            h->aborted = 1;
            return -1;
        }
        return 0;
    }
    apr_off_t len = 0;
    if (apr_brigade_length(h->bb, 0, &len) == APR_SUCCESS && len > 0)
        __atomic_add_fetch(&h->rx->bytes_sent, (uint64_t)len, __ATOMIC_RELAXED);
    APR_BRIGADE_INSERT_TAIL(h->bb, s_nudge_create(h->c->bucket_alloc));
    apr_status_t rv = ap_pass_brigade(h->out, h->bb);
    apr_brigade_cleanup(h->bb);
    if (rv == APR_SUCCESS && !h->c->aborted)
        rv = s_kick(h);
    if (rv != APR_SUCCESS || h->c->aborted) {
        h->aborted = 1;
        return -1;
    }
    return 0;
}

/* ---- holds ------------------------------------------------------------------------ */

/* Every hold is a descriptor of this child.  httpd's listener stops the
 * whole child (gracefully: every stream it holds ends) when accept() fails
 * with EMFILE, so holds stop short of the open-file limit, leaving a tenth
 * of it (and 64) for connections httpd is still serving. */
static int s_max_holds(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0 || rl.rlim_cur == RLIM_INFINITY
        || rl.rlim_cur > INT_MAX)
        return 0;
    int soft = (int)rl.rlim_cur, reserve = 64 + soft / 10;
    return soft > reserve ? soft - reserve : 1;
}

/* Under rx->lock: may one more hold be made?  Refusals are logged at most
 * once a minute, with their count. */
static int s_room(push_reactor *rx, request_rec *r)
{
    if (!rx->max_holds || rx->nall < rx->max_holds)
        return 1;
    rx->refused++;
    apr_time_t now = apr_time_now();
    if (now - rx->refused_logged >= apr_time_from_sec(60)) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, APLOGNO(20096)
                      "this process holds %d connections, as many as its open-file limit "
                      "allows (ulimit -n less a tenth and 64, kept for connections in "
                      "progress): %d new subscriber(s) refused with 503 since the last such "
                      "message; raise the limit (docs/operations.md, 2.2)", rx->nall,
                      rx->refused);
        rx->refused_logged = now;
        rx->refused = 0;
    }
    return 0;
}

push_hold *push_hold_new(push_reactor *rx, request_rec *r, const push_transport *tp,
                         const push_settings *set, const char *channel)
{
    pthread_mutex_lock(&rx->lock);
    int room = s_room(rx, r);
    if (room)
        rx->nall++;        /* taken now, so that concurrent workers see it */
    pthread_mutex_unlock(&rx->lock);
    if (!room) {
        errno = EMFILE;
        return NULL;
    }
    push_hold *h = calloc(1, sizeof *h);
    if (!h) {
        pthread_mutex_lock(&rx->lock);
        rx->nall--;
        pthread_mutex_unlock(&rx->lock);
        errno = ENOMEM;
        return NULL;
    }
    push_client_init(&h->client, set->max_queue, h);
    h->client.qslack = QUEUE_SLACK * set->max_queue;
    h->r = r;
    h->c = r->connection;
    h->tp = tp;
    h->set = *set;
    h->channel = channel;
    h->fd = -1;
    apr_os_sock_get(&h->fd, ap_get_conn_socket(r->connection));
    h->bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    h->out = r->output_filters;
    h->rx = rx;
    h->state = HOLD_NEW;
    pthread_mutex_lock(&rx->lock);
    h->all_next = rx->all;
    if (rx->all)
        rx->all->all_prev = h;
    rx->all = h;
    pthread_mutex_unlock(&rx->lock);
    return h;
}

static void s_free(push_hold *h)
{
    push_reactor *rx = h->rx;
    pthread_mutex_lock(&rx->lock);
    if (h->all_prev)
        h->all_prev->all_next = h->all_next;
    else
        rx->all = h->all_next;
    if (h->all_next)
        h->all_next->all_prev = h->all_prev;
    rx->nall--;
    pthread_mutex_unlock(&rx->lock);
    if (h->tp->cleanup)
        h->tp->cleanup(h);
    if (h->lean && h->fd >= 0)
        close(h->fd);
    push_outbuf_free(&h->out_raw);
    free(h->own_channel);
    free((char *)h->client.identity);
    free(h);
}

server_rec *push_hold_server(const push_hold *h)
{
    return h->rx->s;
}

apr_status_t push_hold_pool(push_hold *h, apr_pool_t **p)
{
    /* A lean hold has no connection pool; an unmanaged pool has its own
     * allocator, so no lock is shared with anyone. */
    if (h->c)
        return apr_pool_create(p, h->c->pool);
    return apr_pool_create_unmanaged_ex(p, NULL, NULL);
}

/* ---- detaching a connection from Apache ----------------------------------------- */

/* Output filters whose work is done once the head is sent (or that only
 * count bytes): the reactor can stand in for them.  Anything else (TLS,
 * compression, a filter we do not know) keeps the connection in Apache. */
static int s_filter_known(const char *name)
{
    static const char *const known[] = {
        "byterange", "content_length", "http_header", "http_outerror", "chunk", "core",
        "log_input_output", "reqtimeout", NULL
    };
    for (int i = 0; known[i]; i++)
        if (strcasecmp(name, known[i]) == 0)
            return 1;
    return 0;
}

static int s_filters_known(ap_filter_t *f)
{
    for (; f; f = f->next)
        if (!s_filter_known(f->frec->name))
            return 0;
    return 1;
}

/* Whether the connection's input filters already hold bytes (read along
 * with the request): only Apache could give them to us. */
static int s_input_buffered(push_hold *h)
{
    apr_bucket_brigade *bb = apr_brigade_create(h->r->pool, h->c->bucket_alloc);
    apr_status_t rv = ap_get_brigade(h->c->input_filters, bb, AP_MODE_SPECULATIVE,
                                     APR_NONBLOCK_READ, 1);
    int buffered = rv == APR_SUCCESS && !APR_BRIGADE_EMPTY(bb);
    apr_brigade_destroy(bb);
    return buffered;
}

static int s_can_detach(push_hold *h)
{
    conn_rec *c = h->c;
    return h->set.detach && !c->master && !ap_ssl_conn_is_ssl(c) && !c->aborted
           && !c->data_in_output_filters && s_filters_known(h->out)
           && s_filters_known(c->output_filters)
           && (!h->tp->readable || !s_input_buffered(h));
}

int push_hold_detach(push_hold *h)
{
    if (!s_can_detach(h))
        return 0;
    conn_rec *c = h->c;
    int fd = fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
    char *channel = strdup(h->channel);
    if (fd < 0 || !channel) {
        if (fd >= 0)
            close(fd);
        free(channel);
        return 0;
    }
    h->own_channel = channel;
    h->channel = channel;
    apr_snprintf(h->client_ip, sizeof h->client_ip, "%s:%d", c->client_ip ? c->client_ip : "-",
                 c->client_addr ? (int)c->client_addr->port : 0);
    h->chunked = !h->tp->upgraded && h->r->chunked;
    h->fd = fd;
    h->lean = 1;
    h->r = NULL;
    h->c = NULL;
    h->bb = NULL;
    h->out = NULL;
    /* From here Apache writes nothing more (the core output filter drops
     * everything for an aborted connection) and closes its descriptor
     * without a lingering close; the socket lives on in ours. */
    c->aborted = 1;
    c->keepalive = AP_CONN_CLOSE;
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c, APLOGNO(20017)
                  "%s connection detached from httpd (fd %d)", h->tp->name, fd);
    push_reactor_park(h->rx, h);
    return 1;
}

static void s_wakeup(push_reactor *rx);

/* The hold is detached at once, but freed by the reactor thread: a batch
 * the reactor took from the hub's ready list may still point at it. */
void push_hold_discard(push_reactor *rx, push_hold *h)
{
    push_hub_detach(rx->hub, &h->client);
    pthread_mutex_lock(&rx->lock);
    h->next = rx->discarded;
    rx->discarded = h;
    pthread_mutex_unlock(&rx->lock);
    s_wakeup(rx);
}

static void s_wakeup(push_reactor *rx)
{
    uint64_t one = 1;
    ssize_t rc = write(rx->evfd, &one, sizeof one);
    (void)rc;
}

void push_reactor_wake(void *arg)
{
    s_wakeup(arg);
}

void push_reactor_on_tick(push_reactor *rx, void (*fn)(void *arg), void *arg)
{
    rx->tick_arg = arg;
    rx->tick_fn = fn;
}

void push_reactor_reset(void *arg)
{
    push_reactor *rx = arg;
    __atomic_store_n(&rx->reset, 1, __ATOMIC_RELEASE);
    s_wakeup(rx);
}

void push_reactor_park(push_reactor *rx, push_hold *h)
{
    h->suspended_at = apr_time_now();
    if (!h->lean)
        apr_socket_timeout_set(ap_get_conn_socket(h->c), PARKED_TIMEOUT);
    pthread_mutex_lock(&rx->lock);
    h->next = rx->incoming;
    rx->incoming = h;
    pthread_mutex_unlock(&rx->lock);
    s_wakeup(rx);
}

static void s_epoll(push_reactor *rx, push_hold *h, int op, int events)
{
    struct epoll_event ev = { .events = (uint32_t)events, .data.ptr = h };
    if (epoll_ctl(rx->epfd, op, h->fd, &ev) == 0)
        h->events = events;
}

static void s_want(push_reactor *rx, push_hold *h, int events)
{
    if (events != h->events)
        s_epoll(rx, h, EPOLL_CTL_MOD, events);
}

/* on: the socket is full; only then does PushMaxQueue cut the client off. */
static void s_want_out(push_reactor *rx, push_hold *h, int on)
{
    push_client_set_blocked(&h->client, on);
    s_want(rx, h, EPOLLIN | EPOLLRDHUP | EPOLLET | (on ? EPOLLOUT : 0));
}

static void s_list_remove(push_hold **head, push_hold *h)
{
    if (h->prev)
        h->prev->next = h->next;
    else
        *head = h->next;
    if (h->next)
        h->next->prev = h->prev;
    h->prev = h->next = NULL;
}

static void s_list_push(push_hold **head, push_hold *h)
{
    h->prev = NULL;
    h->next = *head;
    if (*head)
        (*head)->prev = h;
    *head = h;
}

/* ---- ending a hold: reactor -> worker (finish) -> reactor (linger) -> worker (destroy) */

static void s_destroy_cb(void *baton)
{
    push_hold *h = baton;
    conn_rec *c = h->c;
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c, APLOGNO(20015) "destroying held connection");
    /* The MPM's pool cleanup decrements its suspended count only in this state. */
    c->cs->state = CONN_STATE_SUSPENDED;
    apr_pool_destroy(c->pool);
    s_free(h);
}

/* Worker: end the request (last chunk, logging) and start the close. */
static void s_finish_cb(push_hold *h)
{
    conn_rec *c = h->c;
    ap_log_cerror(APLOG_MARK, APLOG_TRACE1, 0, c, APLOGNO(20016) "finishing held %s request (aborted=%d)",
                  h->tp->name, h->aborted);
    apr_socket_timeout_set(ap_get_conn_socket(c), CLOSE_TIMEOUT);
    if (h->aborted)
        c->aborted = 1;
    else if (!h->tp->upgraded)
        ap_finalize_request_protocol(h->r);
    c->keepalive = AP_CONN_CLOSE;
    ap_process_request_after_handler(h->r);  /* logs the request, frees r->pool */
    h->r = NULL;
    h->bb = NULL;
    if (c->aborted || ap_start_lingering_close(c) != 0)
        h->linger_until = 0;                 /* nothing to wait for */
    else
        h->linger_until = apr_time_now() + LINGER_TIME;
}

/* The finish callback hands the hold back to its reactor (h->rx). */
static void s_finish_and_return(void *arg)
{
    push_hold *h = arg;
    push_reactor *rx = h->rx;
    s_finish_cb(h);
    pthread_mutex_lock(&rx->lock);
    h->next = rx->closing_in;
    rx->closing_in = h;
    pthread_mutex_unlock(&rx->lock);
    s_wakeup(rx);
}

static void s_want(push_reactor *rx, push_hold *h, int events);

/* The client's FIN, or the time is up: a lean hold's socket is closed
 * (the hold is freed by the next tick, never under a caller's feet). */
static void s_lean_close(push_reactor *rx, push_hold *h)
{
    if (h->fd >= 0) {
        epoll_ctl(rx->epfd, EPOLL_CTL_DEL, h->fd, NULL);
        close(h->fd);
        h->fd = -1;
    }
    h->linger_until = 0;
    h->close_by = 0;
}

/* Lean: the last words are out; say so with a FIN and wait for the
 * client's (a lingering close, so that no RST eats what we sent). */
static void s_lean_linger(push_reactor *rx, push_hold *h)
{
    h->close_by = 0;
    if (shutdown(h->fd, SHUT_WR) < 0) {
        s_lean_close(rx, h);
        return;
    }
    h->linger_until = apr_time_now() + LINGER_TIME;
    s_want(rx, h, EPOLLIN | EPOLLRDHUP);
}

/* Lean: end of the response (last chunk), flushed without blocking for at
 * most CLOSE_TIMEOUT, then the lingering close. */
static void s_lean_end(push_reactor *rx, push_hold *h)
{
    s_list_push(&rx->closing, h);
    h->state = HOLD_LINGER;
    if (!h->aborted && h->chunked)
        push_hold_write(h, "", 0);          /* opens an empty chunk: "0\r\n\r\n" */
    if (h->aborted || push_hold_flush(h) < 0) {
        s_lean_close(rx, h);
        return;
    }
    if (s_pending(h)) {
        h->close_by = apr_time_now() + CLOSE_TIMEOUT;
        s_want(rx, h, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
        return;
    }
    s_lean_linger(rx, h);
}

/* Reactor: stop holding h and lend a worker to finish the request. */
static void s_end(push_reactor *rx, push_hold *h, int aborted)
{
    if (aborted)
        h->aborted = 1;
    push_hub_detach(rx->hub, &h->client);
    if (!h->lean)
        epoll_ctl(rx->epfd, EPOLL_CTL_DEL, h->fd, NULL);
    s_list_remove(&rx->held, h);
    __atomic_sub_fetch(&rx->nheld, 1, __ATOMIC_RELAXED);
    __atomic_sub_fetch(&rx->held_by[h->tp->slot], 1, __ATOMIC_RELAXED);
    if (h->lean) {
        s_lean_end(rx, h);
        return;
    }
    h->events = 0;
    h->state = HOLD_FINISHING;
    if (ap_mpm_register_timed_callback(0, s_finish_and_return, h) != APR_SUCCESS) {
        /* Without a worker the request cannot be finished; the MPM reclaims
         * the connection when the child exits. */
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rx->s, APLOGNO(20010)
                     "cannot schedule the end of a held connection");
    }
}

void push_hold_end(push_hold *h, int aborted)
{
    if (h->state == HOLD_PARKED)
        s_end(h->rx, h, aborted);
}

static void s_borrow_cb(void *baton)
{
    push_hold *h = baton;
    push_reactor *rx = h->rx;
    h->borrowed(h);
    pthread_mutex_lock(&rx->lock);
    h->next_returning = rx->returning;
    rx->returning = h;
    pthread_mutex_unlock(&rx->lock);
    s_wakeup(rx);
}

void push_hold_borrow(push_hold *h, void (*fn)(push_hold *h))
{
    h->borrowed = fn;
    h->state = HOLD_BUSY;
    if (ap_mpm_register_timed_callback(0, s_borrow_cb, h) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, h->rx->s, APLOGNO(20014)
                     "cannot borrow a worker for a held connection");
        h->state = HOLD_PARKED;
        s_end(h->rx, h, 1);
    }
}

static void s_slow(push_reactor *rx, push_hold *h)
{
    __atomic_add_fetch(&rx->slow_cut, 1, __ATOMIC_RELAXED);
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, rx->s, APLOGNO(20011)
                 "slow consumer on channel %s cut off: more than %d messages queued",
                 h->channel, h->set.max_queue);
    if (!h->tp->slow) {
        s_end(rx, h, 1);
        return;
    }
    h->tp->slow(h);
    s_end(rx, h, h->aborted);
}

/* ---- serving a parked hold ---------------------------------------------------- */

static void s_release(push_entry *e, int n)
{
    for (int i = 0; i < n; i++)
        push_msg_unref(e[i].msg);
}

static void s_process(push_reactor *rx, push_hold *h)
{
    if (s_pending(h)) {
        if (s_send_pending(h) != APR_SUCCESS) {
            s_end(rx, h, 1);
            return;
        }
        if (s_pending(h)) {
            /* The socket takes nothing: the queue is not drained, so its
             * overflow is looked at here (a client that never reads again
             * would otherwise never be cut off). */
            if (push_hub_overflowed(rx->hub, &h->client)) {
                s_slow(rx, h);
                return;
            }
            s_want_out(rx, h, 1);
            return;
        }
    }
    for (;;) {
        push_entry e[BATCH_ENTRIES];
        int overflow = 0;
        int n = push_hub_drain(rx->hub, &h->client, e, BATCH_ENTRIES, BATCH_BYTES, &overflow);
        if (overflow) {
            s_release(e, n);
            s_slow(rx, h);
            return;
        }
        if (n == 0)
            break;
        int fin = h->tp->deliver(h, e, n);
        s_release(e, n);
        __atomic_add_fetch(&rx->delivered, (uint64_t)n, __ATOMIC_RELAXED);
        if (fin || h->aborted) {
            s_end(rx, h, h->aborted);
            return;
        }
        if (s_pending(h)) {
            s_want_out(rx, h, 1);
            return;
        }
    }
    s_want_out(rx, h, 0);
}

/* The transport reads what the client sent; returns 1 when the hold ended. */
static int s_read(push_reactor *rx, push_hold *h)
{
    h->input_pending = 0;
    if (!h->tp->readable(h))
        return 0;
    if (h->state == HOLD_PARKED)
        s_end(rx, h, h->aborted);
    return 1;
}

/* Edge-triggered readiness: a FIN or an error ends the hold; stray bytes
 * from the client are left alone (a push client has nothing to say). */
static void s_on_socket(push_reactor *rx, push_hold *h, uint32_t events)
{
    char b;
    if (h->state == HOLD_LINGER) {
        if (h->lean && h->close_by && (events & EPOLLOUT)) {
            if (s_raw_send(h) < 0)
                s_lean_close(rx, h);
            else if (!s_pending(h))
                s_lean_linger(rx, h);
            return;
        }
        char buf[512];
        ssize_t n;
        while ((n = recv(h->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
            ;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) {
            h->linger_until = 0;
            if (h->lean)
                s_lean_close(rx, h);
        }
        return;
    }
    if (h->state == HOLD_BUSY) {
        h->input_pending = 1;     /* looked at when the worker gives it back */
        return;
    }
    if (h->tp->readable && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP))) {
        if (s_read(rx, h) || h->state != HOLD_PARKED)
            return;
    }
    else if (events & (EPOLLERR | EPOLLHUP | EPOLLRDHUP)
             || ((events & EPOLLIN) && recv(h->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0)) {
        s_end(rx, h, 1);
        return;
    }
    if (events & EPOLLOUT)
        s_process(rx, h);
}

/* A hold the reactor (again) owns: stop it, read what arrived, write. */
static void s_serve(push_reactor *rx, push_hold *h)
{
    if (__atomic_load_n(&rx->stopping, __ATOMIC_ACQUIRE)) {
        h->tp->stop(h);
        s_end(rx, h, h->aborted);
        return;
    }
    if (h->input_pending && (s_read(rx, h) || h->state != HOLD_PARKED))
        return;
    s_process(rx, h);
}

static void s_take_incoming(push_reactor *rx)
{
    pthread_mutex_lock(&rx->lock);
    push_hold *list = rx->incoming, *closing = rx->closing_in, *back = rx->returning;
    push_hold *gone = rx->discarded;
    rx->incoming = rx->closing_in = rx->returning = rx->discarded = NULL;
    pthread_mutex_unlock(&rx->lock);

    for (push_hold *h = gone, *next; h; h = next) {
        next = h->next;
        s_free(h);
    }

    for (push_hold *h = back, *next; h; h = next) {
        next = h->next_returning;
        h->state = HOLD_PARKED;
        /* Readiness that came while the worker had it was not looked at
         * (edge-triggered: it will not come again): read now. */
        if (h->tp->readable)
            h->input_pending = 1;
        s_serve(rx, h);
    }

    for (push_hold *h = list, *next; h; h = next) {
        next = h->next;
        s_list_push(&rx->held, h);
        __atomic_add_fetch(&rx->nheld, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&rx->held_by[h->tp->slot], 1, __ATOMIC_RELAXED);
        h->state = HOLD_PARKED;
        s_epoll(rx, h, EPOLL_CTL_ADD, EPOLLIN | EPOLLRDHUP | EPOLLET);
        /* input may already wait in the filters (read along with the request) */
        h->input_pending = h->tp->readable != NULL;
        s_serve(rx, h);
    }
    for (push_hold *h = closing, *next; h; h = next) {
        next = h->next;
        s_list_push(&rx->closing, h);
        h->state = HOLD_LINGER;
        if (h->linger_until)
            s_epoll(rx, h, EPOLL_CTL_ADD, EPOLLIN | EPOLLRDHUP);
    }
}

static void s_take_ready(push_reactor *rx)
{
    push_client *ready[256];
    int n;
    while ((n = push_hub_take_ready(rx->hub, ready, 256)) > 0) {
        for (int i = 0; i < n; i++) {
            push_hold *h = ready[i]->owner;
            /* A hold not parked yet, or lent to a worker, is served when it
             * comes (back) to the reactor. */
            if (h->state == HOLD_PARKED)
                s_process(rx, h);
        }
    }
}

/* Timers: transport deadlines, lingering closes and pool destruction. */
static void s_tick(push_reactor *rx)
{
    apr_time_t now = apr_time_now();
    int stopping = __atomic_load_n(&rx->stopping, __ATOMIC_ACQUIRE)
                   || __atomic_exchange_n(&rx->reset, 0, __ATOMIC_ACQ_REL);
    for (push_hold *h = rx->held, *next; h; h = next) {
        next = h->next;
        if (h->state != HOLD_PARKED)
            continue;                /* a worker has it; served when it returns */
        if (stopping) {
            h->tp->stop(h);
            s_end(rx, h, h->aborted);
        }
        else if (h->deadline && now >= h->deadline && h->tp->tick(h, now))
            s_end(rx, h, h->aborted);
    }
    for (push_hold *h = rx->closing, *next; h; h = next) {
        next = h->next;
        if (h->lean) {
            if ((h->close_by && now < h->close_by) || (h->linger_until && now < h->linger_until))
                continue;
            s_lean_close(rx, h);
            s_list_remove(&rx->closing, h);
            s_free(h);
            continue;
        }
        if (h->linger_until && now < h->linger_until)
            continue;
        /* The suspending worker may still be leaving the MPM (apache-async.md §3). */
        if (h->c->sbh != NULL || now - h->suspended_at < DESTROY_GRACE)
            continue;
        /* registered while it lingered, and still when the client's FIN
         * zeroed linger_until (level-triggered: it would keep reporting) */
        epoll_ctl(rx->epfd, EPOLL_CTL_DEL, h->fd, NULL);
        s_list_remove(&rx->closing, h);
        h->state = HOLD_DESTROYING;
        if (ap_mpm_register_timed_callback(0, s_destroy_cb, h) != APR_SUCCESS)
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, rx->s, APLOGNO(20012)
                         "cannot schedule closing a held connection");
    }
}

/* The process is exiting: what detached connections still have to say
 * goes to the kernel, followed by a FIN, instead of dying unsent with the
 * process (httpd does not wait for connections it no longer knows). */
static void s_lean_last_words(push_reactor *rx)
{
    push_hold *lists[2] = { rx->held, rx->closing };
    for (int i = 0; i < 2; i++)
        for (push_hold *h = lists[i]; h; h = h->next)
            if (h->lean && h->fd >= 0 && h->state != HOLD_BUSY) {
                s_raw_send(h);
                shutdown(h->fd, SHUT_WR);
            }
}

static void *s_thread(void *arg)
{
    push_reactor *rx = arg;
    apr_time_t last_tick = 0;
    struct epoll_event evs[256];
    while (!__atomic_load_n(&rx->quit, __ATOMIC_ACQUIRE)) {
        int n = epoll_wait(rx->epfd, evs, 256, TICK_MS);
        int woken = 0;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == rx) {
                uint64_t v;
                ssize_t rc = read(rx->evfd, &v, sizeof v);
                (void)rc;
                woken = 1;
                continue;
            }
            push_hold *h = evs[i].data.ptr;
            /* BUSY too: edge-triggered, the event would not come again */
            if (h->state == HOLD_PARKED || h->state == HOLD_LINGER || h->state == HOLD_BUSY)
                s_on_socket(rx, h, evs[i].events);
        }
        if (woken) {
            s_take_incoming(rx);
            s_take_ready(rx);
        }
        apr_time_t now = apr_time_now();
        if (now - last_tick >= apr_time_from_msec(TICK_MS) || rx->closing
            || __atomic_load_n(&rx->stopping, __ATOMIC_ACQUIRE)
            || __atomic_load_n(&rx->reset, __ATOMIC_ACQUIRE)) {
            last_tick = now;
            s_tick(rx);
            if (rx->tick_fn)
                rx->tick_fn(rx->tick_arg);
        }
    }
    s_lean_last_words(rx);
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

push_reactor *push_reactor_start(server_rec *s, push_hub *hub)
{
    push_reactor *rx = calloc(1, sizeof *rx);
    if (!rx)
        return NULL;
    rx->s = s;
    rx->hub = hub;
    rx->max_holds = s_max_holds();
    rx->epfd = epoll_create1(EPOLL_CLOEXEC);
    rx->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    pthread_mutex_init(&rx->lock, NULL);
    struct epoll_event ev = { .events = EPOLLIN, .data.ptr = rx };
    if (rx->epfd < 0 || rx->evfd < 0
        || epoll_ctl(rx->epfd, EPOLL_CTL_ADD, rx->evfd, &ev) < 0
        || pthread_create(&rx->thread, NULL, s_thread, rx) != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, errno, s, APLOGNO(20013)
                     "cannot start the mod_push reactor thread");
        push_reactor_destroy(&rx);
        return NULL;
    }
    rx->started = 1;
    return rx;
}

void push_reactor_stop(push_reactor *rx)
{
    if (!rx)
        return;
    __atomic_store_n(&rx->stopping, 1, __ATOMIC_RELEASE);
    s_wakeup(rx);
}

void push_reactor_destroy(push_reactor **rxp)
{
    push_reactor *rx = *rxp;
    if (!rx)
        return;
    if (rx->started) {
        __atomic_store_n(&rx->quit, 1, __ATOMIC_RELEASE);
        s_wakeup(rx);
        pthread_join(rx->thread, NULL);
    }
    /* Holds still here (parked, lingering, or waiting for a worker callback
     * the stopping MPM never ran) belong to connections the exiting process
     * drops: free their memory. */
    while (rx->all) {
        push_hub_detach(rx->hub, &rx->all->client);   /* the link thread still runs */
        s_free(rx->all);
    }
    if (rx->epfd >= 0)
        close(rx->epfd);
    if (rx->evfd >= 0)
        close(rx->evfd);
    pthread_mutex_destroy(&rx->lock);
    free(rx);
    *rxp = NULL;
}

void push_reactor_get_stats(push_reactor *rx, push_reactor_stats *out)
{
    out->held = __atomic_load_n(&rx->nheld, __ATOMIC_RELAXED);
    for (int i = 0; i < PUSH_TP_COUNT; i++)
        out->held_by[i] = __atomic_load_n(&rx->held_by[i], __ATOMIC_RELAXED);
    out->bytes_sent = __atomic_load_n(&rx->bytes_sent, __ATOMIC_RELAXED);
    out->delivered = __atomic_load_n(&rx->delivered, __ATOMIC_RELAXED);
    out->slow_cut = __atomic_load_n(&rx->slow_cut, __ATOMIC_RELAXED);
}
