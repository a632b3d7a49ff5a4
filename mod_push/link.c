/*
 * link.c — the broker link thread of one Apache child; see link.h.
 */
#include "link.h"
#include "link_keys.h"
#include "mod_push.h"

#include "http_log.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

APLOG_USE_MODULE(push);

#define PING_INTERVAL_MS 500
#define DOWN_AFTER_MS    2000

/* A command from another thread: a SUB update or a request to send. */
typedef struct link_cmd {
    struct link_cmd *next;
    char            *channel;     /* SUB, PJOIN, PLEAVE: channel name */
    char            *identity;    /* PJOIN, PLEAVE */
    int              join;
    uint64_t         reqid;       /* request: 0 for SUB */
    push_frame      *frames;      /* request: copies, one malloc'ed block */
    int              nframes;
} link_cmd;

/* A worker waiting for a reply; lives on the worker's stack and is linked
 * in l->pending, under l->lock, from enqueue until the worker leaves. */
typedef struct link_waiter {
    struct link_waiter *next;
    uint64_t            reqid;
    int                 done;     /* 1 = reply, -1 = failed */
    push_frames         reply;
    pthread_cond_t      cond;
} link_waiter;

struct push_link {
    server_rec       *s;
    char             *endpoint;
    push_hub         *hub;
    push_link_wake_fn *wake;
    push_link_wake_fn *reset;
    void             *wake_arg;
    void             *ctx;
    void             *sock;
    void             *mon;         /* handshake events of sock (NULL: none) */
    int               curve;       /* the link uses CURVE */
    push_curve_key    public_key;  /* ... with this public key */
    int               hs_logged;   /* link thread: the handshake failure last logged */
    int               evfd;
    pthread_t         thread;
    int               started;
    int               stop;        /* atomic */
    int               up;          /* atomic */
    pthread_mutex_t   lock;        /* cmds, pending, next_reqid, up_cond */
    pthread_cond_t    up_cond;     /* signalled when the link comes up */
    int64_t           started_ms;
    link_cmd         *cmds, *cmds_tail;
    link_waiter      *pending;
    uint64_t          next_reqid;
    uint64_t          epoch;       /* link thread only */
    int               welcomed;    /* link thread only */
    uint64_t          messages_in; /* atomic */
    uint64_t          reconnects;  /* atomic */
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_kick(push_link *l)
{
    uint64_t one = 1;
    ssize_t rc = write(l->evfd, &one, sizeof one);
    (void)rc;   /* a full counter still wakes the thread */
}

static void s_enqueue(push_link *l, link_cmd *cmd)
{
    if (l->cmds_tail)
        l->cmds_tail->next = cmd;
    else
        l->cmds = cmd;
    l->cmds_tail = cmd;
}

void push_link_presence_changed(void *arg, const char *channel, const char *identity, int join)
{
    push_link *l = arg;
    link_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd || !(cmd->channel = strdup(channel)) || !(cmd->identity = strdup(identity))) {
        ap_log_error(APLOG_MARK, APLOG_ERR, ENOMEM, l->s, APLOGNO(20007)
                     "out of memory: presence %s of %s on %s not told to the broker",
                     join ? "join" : "leave", identity, channel);
        if (cmd)
            free(cmd->channel);
        free(cmd);
        return;
    }
    cmd->join = join;
    pthread_mutex_lock(&l->lock);
    s_enqueue(l, cmd);
    pthread_mutex_unlock(&l->lock);
    s_kick(l);
}

void push_link_count_changed(void *arg, const char *channel)
{
    push_link *l = arg;
    link_cmd *cmd = calloc(1, sizeof *cmd);
    if (!cmd || !(cmd->channel = strdup(channel))) {
        /* The periodic resync in s_resync_counts repairs a lost update. */
        free(cmd);
        return;
    }
    pthread_mutex_lock(&l->lock);
    s_enqueue(l, cmd);
    pthread_mutex_unlock(&l->lock);
    s_kick(l);
}

/* ---- link thread: sending -------------------------------------------------- */

static int s_send_words(push_link *l, const char *a, const char *b, const char *c)
{
    push_frame f[3] = { push_str_frame(a), push_str_frame(b), push_str_frame(c) };
    int n = c ? 3 : b ? 2 : 1;
    return push_send_frames(l->sock, f, n, ZMQ_DONTWAIT);
}

static void s_send_count(void *arg, const char *channel, int count)
{
    push_link *l = arg;
    char num[24];
    push_fmt_u64(num, (uint64_t)count);
    s_send_words(l, PUSH_LINK_SUB, channel, num);
}

static void s_send_join(void *arg, const char *channel, const char *identity)
{
    s_send_words(arg, PUSH_LINK_PJOIN, channel, identity);
}

static void s_send_hello(push_link *l)
{
    char pid[24];
    push_fmt_u64(pid, (uint64_t)getpid());
    s_send_words(l, PUSH_LINK_HELLO, pid, NULL);
}

/* Fail the waiter of reqid, if it is still waiting. */
static void s_finish(push_link *l, uint64_t reqid, push_frames *reply)
{
    pthread_mutex_lock(&l->lock);
    for (link_waiter *w = l->pending; w; w = w->next) {
        if (w->reqid != reqid)
            continue;
        if (reply) {
            w->reply = *reply;
            reply->count = 0;   /* ownership moved */
            reply->msgs = NULL;
            reply->frame = NULL;
        }
        w->done = reply ? 1 : -1;
        pthread_cond_signal(&w->cond);
        break;
    }
    pthread_mutex_unlock(&l->lock);
}

static void s_run_cmd(push_link *l, link_cmd *cmd)
{
    if (cmd->identity) {
        /* Before WELCOME nothing is sent: s_on_welcome re-sends every join. */
        if (l->welcomed)
            s_send_words(l, cmd->join ? PUSH_LINK_PJOIN : PUSH_LINK_PLEAVE, cmd->channel,
                         cmd->identity);
        return;
    }
    if (cmd->channel) {
        if (l->welcomed)
            s_send_count(l, cmd->channel, push_hub_count(l->hub, cmd->channel));
        return;
    }
    if (!l->welcomed || push_send_frames(l->sock, cmd->frames, cmd->nframes, ZMQ_DONTWAIT) < 0)
        s_finish(l, cmd->reqid, NULL);
}

static void s_run_cmds(push_link *l)
{
    uint64_t v;
    ssize_t rc = read(l->evfd, &v, sizeof v);
    (void)rc;
    pthread_mutex_lock(&l->lock);
    link_cmd *cmd = l->cmds;
    l->cmds = l->cmds_tail = NULL;
    pthread_mutex_unlock(&l->lock);
    while (cmd) {
        link_cmd *next = cmd->next;
        s_run_cmd(l, cmd);
        free(cmd->channel);
        free(cmd->identity);
        free(cmd->frames);
        free(cmd);
        cmd = next;
    }
}

/* ---- link thread: receiving ------------------------------------------------ */

static int s_u64(const push_frames *f, int i, uint64_t *out)
{
    return i < f->count ? push_parse_u64(f->frame[i].data, f->frame[i].size, out) : -1;
}

/* MSG <channel> <id> <event> <data> <time_us> */
static int s_on_msg(push_link *l, push_frames *f)
{
    uint64_t id, t;
    if (f->count != 6 || s_u64(f, 2, &id) < 0 || s_u64(f, 5, &t) < 0
        || !push_channel_valid(f->frame[1].data, f->frame[1].size)) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, l->s, APLOGNO(20001)
                     "malformed MSG from broker dropped (%d frames)", f->count);
        return 0;
    }
    push_msg *m = push_msg_new(f->frame[1].data, f->frame[1].size, id,
                               f->frame[3].data, f->frame[3].size,
                               f->frame[4].data, f->frame[4].size, t);
    if (!m) {
        ap_log_error(APLOG_MARK, APLOG_ERR, ENOMEM, l->s, APLOGNO(20002)
                     "out of memory: message %" APR_UINT64_T_FMT " dropped", id);
        return 0;
    }
    __atomic_add_fetch(&l->messages_in, 1, __ATOMIC_RELAXED);
    int woken = push_hub_dispatch(l->hub, m);
    push_msg_unref(m);
    return woken;
}

/* PEVENT <channel> <join|leave> <identity> <connections> <time_us> */
static int s_on_pevent(push_link *l, push_frames *f)
{
    uint64_t n, t;
    char chan[PUSH_CHANNEL_MAX + 1], ident[PUSH_IDENTITY_MAX + 1];
    int join = push_frame_is(f, 2, PUSH_PRESENCE_JOIN);
    if (f->count != 6 || (!join && !push_frame_is(f, 2, PUSH_PRESENCE_LEAVE))
        || !push_channel_valid(f->frame[1].data, f->frame[1].size)
        || !push_identity_valid(f->frame[3].data, f->frame[3].size)
        || s_u64(f, 4, &n) < 0 || s_u64(f, 5, &t) < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, l->s, APLOGNO(20008)
                     "malformed PEVENT from broker dropped (%d frames)", f->count);
        return 0;
    }
    memcpy(chan, f->frame[1].data, f->frame[1].size);
    chan[f->frame[1].size] = '\0';
    memcpy(ident, f->frame[3].data, f->frame[3].size);
    ident[f->frame[3].size] = '\0';
    push_msg *m = push_msg_new_presence(chan, join, ident, n, t);
    if (!m)
        return 0;
    int woken = push_hub_dispatch(l->hub, m);
    push_msg_unref(m);
    return woken;
}

static void s_on_welcome(push_link *l, push_frames *f)
{
    uint64_t epoch = 0;
    s_u64(f, 1, &epoch);
    if (l->welcomed && epoch == l->epoch)
        return;
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, l->s, APLOGNO(20003)
                 "linked to pushbrokerd at %s (epoch %" APR_UINT64_T_FMT ")%s%s", l->endpoint,
                 epoch, l->curve ? " with CURVE, as public key " : "",
                 l->curve ? l->public_key : "");
    if (l->epoch && epoch != l->epoch)
        l->reset(l->wake_arg);
    l->epoch = epoch;
    l->welcomed = 1;
    push_hub_each_channel(l->hub, s_send_count, l);
    push_hub_each_presence(l->hub, s_send_join, l);
}

static int s_on_message(push_link *l, push_frames *f, int64_t *last_seen)
{
    uint64_t reqid, epoch;
    *last_seen = s_now_ms();
    if (push_frame_is(f, 0, PUSH_LINK_MSG))
        return s_on_msg(l, f);
    if (push_frame_is(f, 0, PUSH_LINK_PEVENT))
        return s_on_pevent(l, f);
    if (push_frame_is(f, 0, PUSH_LINK_HIST) || push_frame_is(f, 0, PUSH_LINK_PUBACK)
        || push_frame_is(f, 0, PUSH_LINK_PRESENCE)) {
        if (s_u64(f, 1, &reqid) == 0)
            s_finish(l, reqid, f);
    }
    else if (push_frame_is(f, 0, PUSH_LINK_WELCOME))
        s_on_welcome(l, f);
    else if (push_frame_is(f, 0, PUSH_LINK_PONG)) {
        /* A new epoch means a restarted broker: it knows nothing of us. */
        if (s_u64(f, 1, &epoch) == 0 && (!l->welcomed || epoch != l->epoch))
            s_send_hello(l);
    }
    else if (push_frame_is(f, 0, PUSH_LINK_RESET)) {
        l->welcomed = 0;
        s_send_hello(l);
    }
    else
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, l->s, APLOGNO(20004)
                     "unknown message from broker dropped");
    return 0;
}

static void s_recv_all(push_link *l, int64_t *last_seen)
{
    int woken = 0;
    push_frames f;
    while (push_frames_recv(l->sock, &f, ZMQ_DONTWAIT) == 0) {
        woken += s_on_message(l, &f, last_seen);
        push_frames_close(&f);
    }
    if (woken)
        l->wake(l->wake_arg);
}

static void s_set_up(push_link *l, int up)
{
    int was = __atomic_exchange_n(&l->up, up, __ATOMIC_ACQ_REL);
    if (was == up)
        return;
    if (up) {
        pthread_mutex_lock(&l->lock);
        pthread_cond_broadcast(&l->up_cond);
        pthread_mutex_unlock(&l->lock);
        return;
    }
    __atomic_add_fetch(&l->reconnects, 1, __ATOMIC_RELAXED);
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, l->s, APLOGNO(20005)
                 "pushbrokerd at %s is not answering; subscribers get 503 until it is back",
                 l->endpoint);
}

/* A link that never came up says so once: a wrong endpoint or socket
 * permissions would otherwise only show as 503s. */
static void s_warn_never_up(push_link *l, int64_t now, int *warned)
{
    if (*warned || l->epoch || now - l->started_ms < 5000)
        return;
    *warned = 1;
    ap_log_error(APLOG_MARK, APLOG_WARNING, 0, l->s, APLOGNO(20009)
                 "no answer from pushbrokerd at %s since this child started: is it running, "
                 "and may this user connect to it (ipc:// socket permissions%s)?", l->endpoint,
                 l->curve ? ", CURVE keys" : "");
}

/* ---- link thread: handshake failures --------------------------------------- */

/* Why the handshake failed, said once per kind until one succeeds: a
 * refused link retries every 100 ms or so. */
static void s_log_handshake(push_link *l, uint16_t event, uint32_t value)
{
    int kind = event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH ? 1
             : value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH ? 2 : 3;
    if (kind == l->hs_logged)
        return;
    l->hs_logged = kind;
    if (kind == 1)
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, l->s, APLOGNO(20093)
                     "pushbrokerd at %s refused this server's CURVE public key %s (status %u): "
                     "add it to the broker's curve_authorized_keys", l->endpoint,
                     l->public_key, (unsigned)value);
    else if (kind == 2)
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, l->s, APLOGNO(20094)
                     "pushbrokerd at %s %s", l->endpoint, l->curve
                     ? "does not use CURVE, but PushBrokerServerKey is set: give the broker "
                       "curve_secret_key_file, or remove PushBrokerServerKey"
                     : "uses CURVE: set PushBrokerServerKey to its public key (and "
                       "PushBrokerClientKeys if it has curve_authorized_keys)");
    else
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, l->s, APLOGNO(20095)
                     "the handshake with pushbrokerd at %s failed (event 0x%x, 0x%x)%s",
                     l->endpoint, (unsigned)event, (unsigned)value, l->curve
                     ? ": is PushBrokerServerKey the broker's public key?"
                     : ": does the broker use CURVE (PushBrokerServerKey)?");
}

static void s_on_monitor(push_link *l)
{
    push_frames f;
    while (push_frames_recv(l->mon, &f, ZMQ_DONTWAIT) == 0) {
        uint16_t event = 0;
        uint32_t value = 0;
        if (f.count >= 1 && f.frame[0].size == 6) {
            memcpy(&event, f.frame[0].data, sizeof event);
            memcpy(&value, f.frame[0].data + 2, sizeof value);
        }
        push_frames_close(&f);
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED)
            l->hs_logged = 0;
        else if (event)
            s_log_handshake(l, event, value);
    }
}

static void *s_thread(void *arg)
{
    push_link *l = arg;
    int64_t last_seen = 0, last_ping = 0;
    int warned = 0;
    s_send_hello(l);
    while (!__atomic_load_n(&l->stop, __ATOMIC_ACQUIRE)) {
        zmq_pollitem_t items[3] = {
            { l->sock, 0, ZMQ_POLLIN, 0 },
            { NULL, l->evfd, ZMQ_POLLIN, 0 },
            { l->mon, 0, ZMQ_POLLIN, 0 },
        };
        if (zmq_poll(items, l->mon ? 3 : 2, 100) < 0 && errno == ETERM)
            break;
        if (l->mon && (items[2].revents & ZMQ_POLLIN))
            s_on_monitor(l);
        if (items[1].revents & ZMQ_POLLIN)
            s_run_cmds(l);
        if (items[0].revents & ZMQ_POLLIN)
            s_recv_all(l, &last_seen);
        int64_t now = s_now_ms();
        if (now - last_ping >= PING_INTERVAL_MS) {
            last_ping = now;
            if (!l->welcomed)
                s_send_hello(l);
            s_send_words(l, PUSH_LINK_PING, NULL, NULL);
        }
        if (now - last_seen > DOWN_AFTER_MS)
            l->welcomed = 0;
        s_set_up(l, l->welcomed && now - last_seen <= DOWN_AFTER_MS);
        s_warn_never_up(l, now, &warned);
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* Handshake events, so that a refused link says why.  Without them the link
 * still works: a failure here is no reason not to start. */
static void s_open_monitor(push_link *l)
{
    const char *addr = "inproc://mod_push.link.monitor";
    int zero = 0;
    if (zmq_socket_monitor(l->sock, addr, ZMQ_EVENT_HANDSHAKE_SUCCEEDED
                           | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
                           | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                           | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) < 0)
        return;
    l->mon = zmq_socket(l->ctx, ZMQ_PAIR);
    if (l->mon)
        zmq_setsockopt(l->mon, ZMQ_LINGER, &zero, sizeof zero);
    if (!l->mon || zmq_connect(l->mon, addr) < 0) {
        if (l->mon)
            zmq_close(l->mon);
        l->mon = NULL;
        zmq_socket_monitor(l->sock, NULL, 0);
    }
}

static int s_open_socket(push_link *l)
{
    int zero = 0, one = 1, hwm = 1000000;
    l->sock = zmq_socket(l->ctx, ZMQ_DEALER);
    if (!l->sock)
        return -1;
    zmq_setsockopt(l->sock, ZMQ_LINGER, &zero, sizeof zero);
    /* Only queue to a live broker: a send to a dead one fails at once. */
    zmq_setsockopt(l->sock, ZMQ_IMMEDIATE, &one, sizeof one);
    zmq_setsockopt(l->sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(l->sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    if (push_link_apply_keys(l->sock, l->s, l->endpoint, &l->curve, l->public_key) < 0)
        return -1;
    s_open_monitor(l);
    return zmq_connect(l->sock, l->endpoint);
}

push_link *push_link_start(server_rec *s, const char *endpoint, push_hub *hub,
                           push_link_wake_fn *wake, push_link_wake_fn *reset, void *wake_arg)
{
    push_link *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->s = s;
    l->hub = hub;
    l->wake = wake;
    l->reset = reset;
    l->wake_arg = wake_arg;
    l->next_reqid = 1;
    l->evfd = -1;
    l->started_ms = s_now_ms();
    pthread_mutex_init(&l->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&l->up_cond, &attr);
    pthread_condattr_destroy(&attr);
    if (!(l->endpoint = strdup(endpoint))
        || (l->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0
        || !(l->ctx = zmq_ctx_new())
        || s_open_socket(l) < 0
        || pthread_create(&l->thread, NULL, s_thread, l) != 0) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, errno, s, APLOGNO(20006)
                     "cannot start the link to pushbrokerd at %s: %s", endpoint,
                     zmq_strerror(errno));
        push_link_stop(&l);
        return NULL;
    }
    l->started = 1;
    return l;
}

void push_link_stop(push_link **lp)
{
    push_link *l = *lp;
    if (!l)
        return;
    if (l->started) {
        __atomic_store_n(&l->stop, 1, __ATOMIC_RELEASE);
        s_kick(l);
        pthread_join(l->thread, NULL);
    }
    if (l->sock)
        zmq_close(l->sock);
    if (l->mon)
        zmq_close(l->mon);
    if (l->ctx)
        zmq_ctx_term(l->ctx);
    if (l->evfd >= 0)
        close(l->evfd);
    for (link_cmd *c = l->cmds, *n; c; c = n) {
        n = c->next;
        free(c->channel);
        free(c->identity);
        free(c->frames);
        free(c);
    }
    pthread_mutex_destroy(&l->lock);
    pthread_cond_destroy(&l->up_cond);
    free(l->endpoint);
    free(l);
    *lp = NULL;
}

static void s_deadline(struct timespec *ts, int64_t ms_from_now)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += ms_from_now / 1000;
    ts->tv_nsec += (long)(ms_from_now % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

int push_link_up(push_link *l)
{
    if (!l)
        return 0;
    if (__atomic_load_n(&l->up, __ATOMIC_ACQUIRE))
        return 1;
    int64_t left = l->started_ms + DOWN_AFTER_MS - s_now_ms();
    if (left <= 0 || __atomic_load_n(&l->reconnects, __ATOMIC_RELAXED))
        return 0;
    struct timespec until;
    s_deadline(&until, left);
    pthread_mutex_lock(&l->lock);
    while (!__atomic_load_n(&l->up, __ATOMIC_ACQUIRE)
           && pthread_cond_timedwait(&l->up_cond, &l->lock, &until) == 0)
        ;
    pthread_mutex_unlock(&l->lock);
    return __atomic_load_n(&l->up, __ATOMIC_ACQUIRE);
}

/* ---- requests from workers --------------------------------------------------- */

static link_cmd *s_request_cmd(const push_frame *frames, int n, uint64_t reqid)
{
    char id[24];
    size_t idlen = (size_t)push_fmt_u64(id, reqid), total = idlen;
    for (int i = 0; i < n; i++)
        total += frames[i].size;
    link_cmd *cmd = calloc(1, sizeof *cmd);
    push_frame *f = cmd ? malloc(sizeof *f * (size_t)(n + 1) + total) : NULL;
    if (!f) {
        free(cmd);
        return NULL;
    }
    char *p = (char *)(f + n + 1);
    for (int i = 0, j = 0; i < n + 1; i++) {
        const char *src = i == 1 ? id : frames[j].data;
        size_t len = i == 1 ? idlen : frames[j++].size;
        if (len)
            memcpy(p, src, len);
        f[i].data = p;
        f[i].size = len;
        p += len;
    }
    cmd->reqid = reqid;
    cmd->frames = f;
    cmd->nframes = n + 1;
    return cmd;
}

static void s_unlink_waiter(push_link *l, link_waiter *w)
{
    for (link_waiter **p = &l->pending; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            return;
        }
    }
}

int push_link_request(push_link *l, const push_frame *frames, int n, int timeout_ms,
                      push_frames *reply)
{
    if (!push_link_up(l) || n < 1)
        return -1;
    link_waiter w = { 0 };
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w.cond, &attr);
    pthread_condattr_destroy(&attr);

    pthread_mutex_lock(&l->lock);
    w.reqid = l->next_reqid++;
    link_cmd *cmd = s_request_cmd(frames, n, w.reqid);
    if (!cmd) {
        pthread_mutex_unlock(&l->lock);
        pthread_cond_destroy(&w.cond);
        return -1;
    }
    w.next = l->pending;
    l->pending = &w;
    s_enqueue(l, cmd);
    s_kick(l);

    struct timespec until;
    s_deadline(&until, timeout_ms);
    while (!w.done && pthread_cond_timedwait(&w.cond, &l->lock, &until) == 0)
        ;
    s_unlink_waiter(l, &w);
    pthread_mutex_unlock(&l->lock);
    pthread_cond_destroy(&w.cond);
    if (w.done != 1)
        return -1;
    *reply = w.reply;
    return 0;
}

void push_link_get_stats(push_link *l, push_link_stats *out)
{
    out->up = push_link_up(l);
    out->messages_in = __atomic_load_n(&l->messages_in, __ATOMIC_RELAXED);
    out->reconnects = __atomic_load_n(&l->reconnects, __ATOMIC_RELAXED);
}
