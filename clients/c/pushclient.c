/*
 * pushclient.c — publishing client for pushbrokerd; see pushclient.h.
 *
 * Requests go over a REQ socket with the lazy-pirate pattern: wait for the
 * reply with zmq_poll() up to the timeout, and on timeout (or any send or
 * receive failure) throw the REQ socket away and connect a new one.
 */
#include "pushclient.h"
#include "push_curve.h"
#include "push_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>
#include <cjson/cJSON.h>

struct _pushclient_t {
    void *ctx;
    void *req;            /* REQ to the api endpoint; NULL after a failed reconnect */
    void *push;           /* PUSH to the push endpoint; NULL after a failed reconnect */
    char *api_endpoint;
    char *push_endpoint;
    int   timeout;        /* ms */
    int   curve;          /* created with CURVE keys */
    push_curve_key server_key, public_key, secret_key;
    char  errcode[64];
    char  errmsg[512];
};

/* ---- small helpers ----------------------------------------------------- */

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void s_clear_error(pushclient_t *self)
{
    self->errcode[0] = '\0';
    self->errmsg[0] = '\0';
}

/* Record an error and return rc. */
static int s_error(pushclient_t *self, int rc, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int s_error(pushclient_t *self, int rc, const char *code, const char *fmt, ...)
{
    va_list ap;
    snprintf(self->errcode, sizeof self->errcode, "%s", code);
    va_start(ap, fmt);
    vsnprintf(self->errmsg, sizeof self->errmsg, fmt, ap);
    va_end(ap);
    return rc;
}

/* Record an error whose code and message are reply frames (not NUL-terminated). */
static int s_error_frames(pushclient_t *self, int rc, const push_frame *code,
                          const push_frame *msg)
{
    int cl = code->size < sizeof self->errcode ? (int)code->size
                                                : (int)sizeof self->errcode - 1;
    int ml = msg && msg->size < sizeof self->errmsg ? (int)msg->size
           : msg ? (int)sizeof self->errmsg - 1 : 0;
    snprintf(self->errcode, sizeof self->errcode, "%.*s", cl, cl ? code->data : "");
    snprintf(self->errmsg, sizeof self->errmsg, "%.*s", ml, ml ? msg->data : "");
    return rc;
}

static int s_frame_u64(const push_frames *f, int i, uint64_t *out)
{
    return i < f->count ? push_parse_u64(f->frame[i].data, f->frame[i].size, out) : -1;
}

/* ---- sockets ----------------------------------------------------------- */

/* ZMQ_IMMEDIATE: queue messages only on completed connections, so a send to
 * a broker that is down waits (up to ZMQ_SNDTIMEO) instead of piling up
 * messages that may never leave; "cannot connect" then shows as a timeout
 * on send, distinct from "no reply". */
static void *s_socket(pushclient_t *self, int type, const char *endpoint, int linger)
{
    int immediate = 1;
    void *sock = zmq_socket(self->ctx, type);
    if (!sock)
        return NULL;
    int curve = self->curve && push_curve_applies(endpoint);
    if (zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger) < 0
        || zmq_setsockopt(sock, ZMQ_IMMEDIATE, &immediate, sizeof immediate) < 0
        || (curve && push_curve_set_client(sock, self->server_key, self->public_key,
                                           self->secret_key) < 0)
        || zmq_connect(sock, endpoint) < 0) {
        int e = errno;
        zmq_close(sock);
        errno = e;
        return NULL;
    }
    return sock;
}

/* The checks zmq_connect() would make at once, without connecting: the
 * sockets connect on first use, so that a client that only publishes
 * fire-and-forget never opens (and drops, half-handshaken) a connection to
 * the api endpoint, which a CURVE broker would log as a refused client.
 * Anything these checks miss is reported by the first call that connects. */
static int s_endpoint_valid(const char *endpoint)
{
    const char *sep = strstr(endpoint, "://");
    if (!sep || sep == endpoint || !sep[3]) {
        errno = EINVAL;
        return -1;
    }
    size_t tlen = (size_t)(sep - endpoint);
    const char *addr = sep + 3;
    if (tlen == 3 && memcmp(endpoint, "tcp", 3) == 0) {
        const char *colon = strrchr(addr, ':');
        if (!colon || colon == addr || !colon[1]) {
            errno = EINVAL;
            return -1;
        }
        return 0;
    }
    if ((tlen == 6 && memcmp(endpoint, "inproc", 6) == 0)
        || (tlen == 3 && memcmp(endpoint, "ipc", 3) == 0 && zmq_has("ipc")))
        return 0;
    errno = EPROTONOSUPPORT;
    return -1;
}

static void s_close(void **sock_p)
{
    if (*sock_p) {
        zmq_close(*sock_p);
        *sock_p = NULL;
    }
}

/* Lazy pirate: drop the REQ socket (pending request and all) and connect a
 * fresh one.  Returns 0 or -1 (then self->req is NULL and will be retried). */
static int s_req_reset(pushclient_t *self)
{
    s_close(&self->req);
    self->req = s_socket(self, ZMQ_REQ, self->api_endpoint, 0);
    return self->req ? 0 : -1;
}

static int s_push_reset(pushclient_t *self)
{
    s_close(&self->push);
    self->push = s_socket(self, ZMQ_PUSH, self->push_endpoint, PUSHCLIENT_PUSH_LINGER);
    return self->push ? 0 : -1;
}

/* Send one request and receive its reply within the timeout.
 * Returns 0 with *reply filled (frame 0 is neither ERR nor missing; the
 * caller checks the rest and closes it), or a PUSHCLIENT_E* value with the
 * error recorded. */
static int s_request(pushclient_t *self, const push_frame *frames, int count,
                     push_frames *reply)
{
    s_clear_error(self);
    if (!self->req && s_req_reset(self) < 0)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                       "cannot create socket for %s: %s", self->api_endpoint,
                       zmq_strerror(errno));

    int64_t deadline = s_now_ms() + self->timeout;
    if (zmq_setsockopt(self->req, ZMQ_SNDTIMEO, &self->timeout, sizeof self->timeout) < 0
        || push_send_frames(self->req, frames, count, 0) < 0) {
        int e = errno;
        s_req_reset(self);
        if (e == EAGAIN)
            return s_error(self, PUSHCLIENT_ETIMEOUT, PUSHCLIENT_ERR_TIMEOUT,
                           "cannot connect to %s within %d ms%s", self->api_endpoint,
                           self->timeout, self->curve && push_curve_applies(self->api_endpoint)
                           ? " (or the broker refused the CURVE handshake: check the keys)"
                           : "");
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                       "send to %s failed: %s", self->api_endpoint, zmq_strerror(e));
    }

    for (;;) {
        int64_t left = deadline - s_now_ms();
        if (left <= 0) {
            s_req_reset(self);
            return s_error(self, PUSHCLIENT_ETIMEOUT, PUSHCLIENT_ERR_TIMEOUT,
                           "no reply from %s within %d ms", self->api_endpoint,
                           self->timeout);
        }
        zmq_pollitem_t item = { self->req, 0, ZMQ_POLLIN, 0 };
        int rc = zmq_poll(&item, 1, (long)left);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            int e = errno;
            s_req_reset(self);
            return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                           "poll failed: %s", zmq_strerror(e));
        }
        if (rc == 0)
            continue;   /* the deadline check above ends the loop */
        if (push_frames_recv(self->req, reply, ZMQ_DONTWAIT) == 0)
            break;
        if (errno == EAGAIN)
            continue;
        int e = errno;
        s_req_reset(self);
        if (e == EPROTO)
            return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_PROTOCOL,
                           "reply from %s has more than %d frames",
                           self->api_endpoint, PUSH_MAX_FRAMES);
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                       "receive from %s failed: %s", self->api_endpoint,
                       zmq_strerror(e));
    }

    if (reply->count == 0 || (reply->count == 1 && reply->frame[0].size == 0)) {
        push_frames_close(reply);
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_PROTOCOL, "empty reply");
    }
    if (push_frame_is(reply, 0, PUSH_REP_ERR)) {
        int rc;
        if (reply->count < 2)
            rc = s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_PROTOCOL,
                         "ERR reply without an error code");
        else
            rc = s_error_frames(self, PUSHCLIENT_EREJECTED, &reply->frame[1],
                                reply->count > 2 ? &reply->frame[2] : NULL);
        push_frames_close(reply);
        return rc;
    }
    return 0;
}

/* The reply did not have the expected shape. */
static int s_bad_reply(pushclient_t *self, push_frames *reply, const char *what)
{
    int n = reply->frame[0].size < 32 ? (int)reply->frame[0].size : 32;
    s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_PROTOCOL,
            "unexpected reply to %s (%d frames, first \"%.*s\")", what,
            reply->count, n, n ? reply->frame[0].data : "");
    push_frames_close(reply);
    return PUSHCLIENT_EFAIL;
}

/* ---- public API -------------------------------------------------------- */

/* The key pair: this secret key and its public key, or a new pair. */
static int s_key_pair(pushclient_t *self, const char *secret_key)
{
    if (!secret_key)
        return zmq_curve_keypair(self->public_key, self->secret_key) == 0 ? 0 : -1;
    memcpy(self->secret_key, secret_key, PUSH_CURVE_KEY_LEN + 1);
    return push_curve_public(self->secret_key, self->public_key);
}

/* Keys before any socket exists: a client that connected without them
 * first would be logged by the broker as a refused one. */
static int s_set_keys(pushclient_t *self, const char *server_key, const char *secret_key)
{
    if (!server_key && !secret_key)
        return 0;
    if (!server_key || push_curve_decode(server_key, strlen(server_key), NULL) < 0
        || (secret_key && push_curve_decode(secret_key, strlen(secret_key), NULL) < 0)) {
        errno = EINVAL;
        return -1;
    }
    memcpy(self->server_key, server_key, PUSH_CURVE_KEY_LEN + 1);
    if (s_key_pair(self, secret_key) < 0)
        return -1;
    self->curve = 1;
    return 0;
}

pushclient_t *pushclient_new_curve(const char *api_endpoint, const char *push_endpoint,
                                   const char *server_key, const char *secret_key)
{
    pushclient_t *self = calloc(1, sizeof *self);
    if (!self) {
        errno = ENOMEM;
        return NULL;
    }
    self->timeout = PUSHCLIENT_DEFAULT_TIMEOUT;
    self->api_endpoint = strdup(api_endpoint ? api_endpoint : PUSH_DEFAULT_API_ENDPOINT);
    self->push_endpoint = strdup(push_endpoint ? push_endpoint : PUSH_DEFAULT_PUSH_ENDPOINT);
    if (!self->api_endpoint || !self->push_endpoint) {
        pushclient_destroy(&self);
        errno = ENOMEM;
        return NULL;
    }
    if (s_set_keys(self, server_key, secret_key) < 0
        || s_endpoint_valid(self->api_endpoint) < 0 || s_endpoint_valid(self->push_endpoint) < 0
        || !(self->ctx = zmq_ctx_new())) {
        int e = errno;
        pushclient_destroy(&self);
        errno = e;
        return NULL;
    }
    return self;
}

pushclient_t *pushclient_new(const char *api_endpoint, const char *push_endpoint)
{
    return pushclient_new_curve(api_endpoint, push_endpoint, NULL, NULL);
}

void pushclient_destroy(pushclient_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pushclient_t *self = *self_p;
    s_close(&self->req);
    s_close(&self->push);
    if (self->ctx)
        while (zmq_ctx_term(self->ctx) < 0 && errno == EINTR)
            ;
    free(self->api_endpoint);
    free(self->push_endpoint);
    explicit_bzero(self->secret_key, sizeof self->secret_key);
    free(self);
    *self_p = NULL;
}

void pushclient_set_timeout(pushclient_t *self, int timeout_ms)
{
    if (timeout_ms > 0)
        self->timeout = timeout_ms;
}

int pushclient_timeout(pushclient_t *self)
{
    return self->timeout;
}

const char *pushclient_api_endpoint(pushclient_t *self)
{
    return self->api_endpoint;
}

const char *pushclient_push_endpoint(pushclient_t *self)
{
    return self->push_endpoint;
}

const char *pushclient_errcode(pushclient_t *self)
{
    return self->errcode;
}

const char *pushclient_errmsg(pushclient_t *self)
{
    return self->errmsg;
}

/* PUB <channel> <data> [<event>] */
static int s_pub_frames(push_frame *f, const char *channel, const void *data,
                        size_t size, const char *event)
{
    int n = 0;
    f[n++] = push_str_frame(PUSH_CMD_PUB);
    f[n++] = push_str_frame(channel);
    f[n].data = size ? data : "";
    f[n++].size = size;
    if (event && *event)
        f[n++] = push_str_frame(event);
    return n;
}

int pushclient_publish(pushclient_t *self, const char *channel,
                       const void *data, size_t size, const char *event,
                       uint64_t *id, uint64_t *subscribers)
{
    if (!channel || (!data && size))
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_INVALID,
                       "publish: channel and data are required");
    push_frame f[4];
    int n = s_pub_frames(f, channel, data, size, event);
    push_frames reply;
    int rc = s_request(self, f, n, &reply);
    if (rc)
        return rc;
    uint64_t i, s;
    if (!push_frame_is(&reply, 0, PUSH_REP_OK) || s_frame_u64(&reply, 1, &i) < 0
        || s_frame_u64(&reply, 2, &s) < 0)
        return s_bad_reply(self, &reply, "PUB");
    push_frames_close(&reply);
    if (id)
        *id = i;
    if (subscribers)
        *subscribers = s;
    return 0;
}

int pushclient_publish_nowait(pushclient_t *self, const char *channel,
                              const void *data, size_t size, const char *event)
{
    s_clear_error(self);
    if (!channel || (!data && size))
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_INVALID,
                       "publish: channel and data are required");
    if (!push_channel_valid(channel, strlen(channel)))
        return s_error(self, PUSHCLIENT_EREJECTED, PUSH_ERR_BAD_CHANNEL,
                       "invalid channel name (1..%d bytes of A-Z a-z 0-9 _.:@~-)",
                       PUSH_CHANNEL_MAX);
    if (event && !push_event_valid(event, strlen(event)))
        return s_error(self, PUSHCLIENT_EREJECTED, PUSH_ERR_BAD_REQUEST,
                       "invalid event name (up to %d printable ASCII bytes, no spaces)",
                       PUSH_EVENT_MAX);
    if (!self->push && s_push_reset(self) < 0)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                       "cannot create socket for %s: %s", self->push_endpoint,
                       zmq_strerror(errno));
    push_frame f[4];
    int n = s_pub_frames(f, channel, data, size, event);
    if (zmq_setsockopt(self->push, ZMQ_SNDTIMEO, &self->timeout, sizeof self->timeout) < 0
        || push_send_frames(self->push, f, n, 0) < 0) {
        int e = errno;
        /* a half-sent multipart message would corrupt the next one */
        s_push_reset(self);
        if (e == EAGAIN)
            return s_error(self, PUSHCLIENT_ETIMEOUT, PUSHCLIENT_ERR_TIMEOUT,
                           "cannot connect to %s within %d ms",
                           self->push_endpoint, self->timeout);
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM,
                       "send to %s failed: %s", self->push_endpoint, zmq_strerror(e));
    }
    return 0;
}

void pushclient_msgs_free(pushclient_msg_t **msgs_p, size_t count)
{
    if (!msgs_p || !*msgs_p)
        return;
    pushclient_msg_t *msgs = *msgs_p;
    for (size_t i = 0; i < count; i++) {
        free(msgs[i].event);
        free(msgs[i].data);
    }
    free(msgs);
    *msgs_p = NULL;
}

/* One HISTORY request for at most limit (> 0) messages after after_id.
 * On success stores a malloc'ed array (NULL when empty) and returns 0. */
static int s_history_page(pushclient_t *self, const char *channel,
                          uint64_t after_id, uint64_t limit,
                          pushclient_msg_t **msgs_p, size_t *count_p, uint64_t *last_p)
{
    char after_s[21], limit_s[21];
    push_fmt_u64(after_s, after_id);
    push_fmt_u64(limit_s, limit);
    push_frame f[4] = { push_str_frame(PUSH_CMD_HISTORY), push_str_frame(channel),
                        push_str_frame(after_s), push_str_frame(limit_s) };
    push_frames reply;
    int rc = s_request(self, f, 4, &reply);
    if (rc)
        return rc;

    uint64_t last, count;
    if (!push_frame_is(&reply, 0, PUSH_REP_OK) || s_frame_u64(&reply, 1, &last) < 0
        || s_frame_u64(&reply, 2, &count) < 0 || count > limit
        || (uint64_t)(reply.count - 3) != count * 4)
        return s_bad_reply(self, &reply, "HISTORY");

    pushclient_msg_t *msgs = count ? calloc(count, sizeof *msgs) : NULL;
    if (count && !msgs) {
        push_frames_close(&reply);
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM, "out of memory");
    }
    uint64_t prev = after_id;
    for (size_t i = 0; i < count; i++) {
        int base = 3 + (int)i * 4;
        pushclient_msg_t *m = &msgs[i];
        /* ids must grow (this also makes paging terminate) */
        if (s_frame_u64(&reply, base, &m->id) < 0 || m->id <= prev || m->id > last
            || s_frame_u64(&reply, base + 3, &m->time_us) < 0) {
            pushclient_msgs_free(&msgs, count);
            return s_bad_reply(self, &reply, "HISTORY");
        }
        prev = m->id;
        m->event = push_memdup_str(reply.frame[base + 1].data, reply.frame[base + 1].size);
        m->data = push_memdup_str(reply.frame[base + 2].data, reply.frame[base + 2].size);
        m->data_len = reply.frame[base + 2].size;
        if (!m->event || !m->data) {
            pushclient_msgs_free(&msgs, count);
            push_frames_close(&reply);
            return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM, "out of memory");
        }
    }
    push_frames_close(&reply);
    *msgs_p = msgs;
    *count_p = (size_t)count;
    *last_p = last;
    return 0;
}

int pushclient_history(pushclient_t *self, const char *channel,
                       uint64_t after_id, uint64_t limit,
                       pushclient_history_fn *fn, void *arg, uint64_t *last_id)
{
    if (!channel)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_INVALID,
                       "history: channel is required");
    uint64_t cursor = after_id, left = limit, last = 0;
    int stopped = 0;
    for (;;) {
        uint64_t page = left && left < PUSHCLIENT_HISTORY_PAGE ? left
                                                               : PUSHCLIENT_HISTORY_PAGE;
        pushclient_msg_t *msgs = NULL;
        size_t n = 0;
        int rc = s_history_page(self, channel, cursor, page, &msgs, &n, &last);
        if (rc)
            return rc;
        for (size_t i = 0; fn && !stopped && i < n; i++)
            stopped = fn(&msgs[i], arg) != 0;
        if (n)
            cursor = msgs[n - 1].id;
        pushclient_msgs_free(&msgs, n);
        if (stopped || n == 0 || cursor >= last || (left && (left -= n) == 0))
            break;
    }
    if (last_id)
        *last_id = last;
    return 0;
}

/* Accumulator for pushclient_history_get(). */
typedef struct {
    pushclient_msg_t *msgs;
    size_t count, cap;
    int failed;
} s_collect_t;

static int s_collect(const pushclient_msg_t *m, void *arg)
{
    s_collect_t *c = arg;
    if (c->count == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 64;
        pushclient_msg_t *bigger = realloc(c->msgs, cap * sizeof *bigger);
        if (!bigger) {
            c->failed = 1;
            return 1;
        }
        c->msgs = bigger;
        c->cap = cap;
    }
    pushclient_msg_t *d = &c->msgs[c->count];
    *d = *m;
    d->event = push_memdup_str(m->event, strlen(m->event));
    d->data = push_memdup_str(m->data, m->data_len);
    if (!d->event || !d->data) {
        free(d->event);
        free(d->data);
        c->failed = 1;
        return 1;
    }
    c->count++;
    return 0;
}

int pushclient_history_get(pushclient_t *self, const char *channel,
                           uint64_t after_id, uint64_t limit,
                           pushclient_msg_t **msgs_p, size_t *count_p,
                           uint64_t *last_id)
{
    if (!msgs_p || !count_p)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_INVALID,
                       "history: outputs are required");
    s_collect_t c = { NULL, 0, 0, 0 };
    uint64_t last = 0;
    int rc = pushclient_history(self, channel, after_id, limit, s_collect, &c, &last);
    if (rc == 0 && c.failed)
        rc = s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM, "out of memory");
    if (rc) {
        pushclient_msgs_free(&c.msgs, c.count);
        return rc;
    }
    if (c.count == 0)
        pushclient_msgs_free(&c.msgs, 0);
    *msgs_p = c.msgs;
    *count_p = c.count;
    if (last_id)
        *last_id = last;
    return 0;
}

/* A request whose answer is OK <json>: STATS, PRESENCE. */
static int s_json_request(pushclient_t *self, const push_frame *f, int n, const char *what,
                          char **json_p)
{
    if (!json_p)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_INVALID,
                       "output is required");
    push_frames reply;
    int rc = s_request(self, f, n, &reply);
    if (rc)
        return rc;
    if (!push_frame_is(&reply, 0, PUSH_REP_OK) || reply.count < 2)
        return s_bad_reply(self, &reply, what);
    cJSON *doc = cJSON_ParseWithLength(reply.frame[1].data, reply.frame[1].size);
    if (!doc)
        return s_bad_reply(self, &reply, what);
    cJSON_Delete(doc);
    char *json = push_memdup_str(reply.frame[1].data, reply.frame[1].size);
    push_frames_close(&reply);
    if (!json)
        return s_error(self, PUSHCLIENT_EFAIL, PUSHCLIENT_ERR_SYSTEM, "out of memory");
    *json_p = json;
    return 0;
}

int pushclient_stats(pushclient_t *self, char **json_p)
{
    push_frame f[1] = { push_str_frame(PUSH_CMD_STATS) };
    return s_json_request(self, f, 1, "STATS", json_p);
}

int pushclient_presence(pushclient_t *self, const char *channel, char **json_p)
{
    if (!channel || !push_channel_valid(channel, strlen(channel)))
        return s_error(self, PUSHCLIENT_EREJECTED, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    push_frame f[2] = { push_str_frame(PUSH_CMD_PRESENCE), push_str_frame(channel) };
    return s_json_request(self, f, 2, "PRESENCE", json_p);
}

int pushclient_ping(pushclient_t *self, uint64_t *epoch)
{
    push_frame f[1] = { push_str_frame(PUSH_CMD_PING) };
    push_frames reply;
    int rc = s_request(self, f, 1, &reply);
    if (rc)
        return rc;
    uint64_t e;
    if (!push_frame_is(&reply, 0, PUSH_REP_PONG) || s_frame_u64(&reply, 1, &e) < 0)
        return s_bad_reply(self, &reply, "PING");
    push_frames_close(&reply);
    if (epoch)
        *epoch = e;
    return 0;
}
