/*
 * links.c — see links.h.
 */
#include <cjson/cJSON.h>

#include "links.h"
#include "presence.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "broker.h"
#include "clock.h"
#include "endpoint.h"
#include "log.h"
#include "push_proto.h"
#include "reply.h"

/* ---- socket ------------------------------------------------------------ */

static int s_setopt_int(void *sock, int opt, int v)
{
    return zmq_setsockopt(sock, opt, &v, sizeof v);
}

/* No ZMQ_MAXMSGSIZE here, unlike the api sockets: a child cut off for an
 * oversized PUBLISH would never get its PUBACK, while one answered
 * too_large can tell its HTTP client. */
static int s_configure(void *sock)
{
    return s_setopt_int(sock, ZMQ_SNDHWM, LINKS_SNDHWM) < 0
        || s_setopt_int(sock, ZMQ_RCVHWM, LINKS_SNDHWM) < 0
        || s_setopt_int(sock, ZMQ_LINGER, 0) < 0
        || s_setopt_int(sock, ZMQ_ROUTER_MANDATORY, 0) < 0 ? -1 : 0;
}

static void s_presence_event(void *arg, const char *channel, const char *identity, int join,
                             uint64_t connections, uint64_t time_us);

links *links_open(void *zctx, const char *endpoint, broker *b)
{
    links *l = calloc(1, sizeof *l);
    if (!l)
        return NULL;
    l->broker = b;
    l->presence = presence_new(s_presence_event, l);
    l->socket = l->presence ? zmq_socket(zctx, ZMQ_ROUTER) : NULL;
    if (!l->socket || s_configure(l->socket) < 0) {
        log_error("cannot create link socket: %s", zmq_strerror(errno));
        links_close(l);
        return NULL;
    }
    if (endpoint_bind(l->socket, "link", endpoint, b->cfg) < 0) {
        int e = errno;
        links_close(l);
        errno = e;
        return NULL;
    }
    return l;
}

void links_close(links *l)
{
    if (!l)
        return;
    if (l->socket) {
        s_setopt_int(l->socket, ZMQ_LINGER, 0);
        zmq_close(l->socket);
    }
    presence_free(&l->presence);
    free(l->child);
    free(l);
}

size_t links_count(const links *l)
{
    return l->live;
}

/* ---- children ---------------------------------------------------------- */

static long s_find(const links *l, const push_frame *id)
{
    for (size_t i = 0; i < l->nslots; i++)
        if (l->child[i].id_len && l->child[i].id_len == id->size   /* not a free slot */
            && memcmp(l->child[i].id, id->data, id->size) == 0)
            return (long)i;
    return -1;
}

static long s_free_slot(links *l)
{
    for (size_t i = 0; i < l->nslots; i++)
        if (l->child[i].id_len == 0)
            return (long)i;
    if (l->nslots >= LINKS_MAX_CHILDREN)
        return -1;
    size_t n = l->nslots ? l->nslots * 2 : 16;
    link_child *more = realloc(l->child, n * sizeof *more);
    if (!more)
        return -1;
    memset(more + l->nslots, 0, (n - l->nslots) * sizeof *more);
    l->child = more;
    long slot = (long)l->nslots;
    l->nslots = n;
    return slot;
}

static void s_forget(links *l, size_t slot, const char *why)
{
    channel_table_drop_child(&l->broker->channels, (uint32_t)slot);
    presence_drop_child(l->presence, (uint32_t)slot, clock_real_us());
    log_info("child link pid %llu forgotten (%s)",
             (unsigned long long)l->child[slot].pid, why);
    l->child[slot].id_len = 0;
    l->live--;
}

void links_tick(links *l, uint64_t now_mono_us)
{
    for (size_t i = 0; i < l->nslots; i++)
        if (l->child[i].id_len
            && now_mono_us - l->child[i].last_seen_us > l->broker->cfg->child_timeout * 1000000u)
            s_forget(l, i, "silent longer than child_timeout");
}

/* ---- sending ----------------------------------------------------------- */

static void s_send(links *l, const push_frame *fr, int n)
{
    if (push_send_frames(l->socket, fr, n, ZMQ_DONTWAIT) < 0)
        log_debug("link send failed: %s", zmq_strerror(errno));
}

static void s_send_reply(links *l, reply *r)
{
    if (reply_send(r, l->socket) < 0)
        log_debug("link reply not sent: %s", zmq_strerror(errno));
}

static void s_send2(links *l, const push_frame *id, const char *cmd, const char *arg)
{
    push_frame fr[3] = { *id, push_str_frame(cmd), push_str_frame(arg) };
    s_send(l, fr, arg ? 3 : 2);
}

static void s_send_epoch(links *l, const push_frame *id, const char *cmd)
{
    char epoch[24];
    push_fmt_u64(epoch, l->broker->epoch);
    s_send2(l, id, cmd, epoch);
}

static void s_reset(links *l, const push_frame *id)
{
    s_send2(l, id, PUSH_LINK_RESET, NULL);
}

void links_fanout(links *l, const channel *c, const history_msg *m)
{
    char id[24], when[24];
    push_frame fr[7] = {
        { NULL, 0 }, push_str_frame(PUSH_LINK_MSG), { c->name, c->name_len },
        { id, (size_t)push_fmt_u64(id, m->id) }, { m->event, m->event_len },
        { m->data, m->data_len }, { when, (size_t)push_fmt_u64(when, m->time_us) },
    };
    for (size_t i = 0; i < c->nsubs; i++) {
        const link_child *child = &l->child[c->subs[i].child];
        fr[0].data = (const char *)child->id;
        fr[0].size = child->id_len;
        s_send(l, fr, 7);
    }
}

/* A presence change goes where the channel's messages go. */
static void s_presence_event(void *arg, const char *chan, const char *identity, int join,
                             uint64_t connections, uint64_t time_us)
{
    links *l = arg;
    const channel *c = channel_find(&l->broker->channels, chan, strlen(chan));
    char conns[24], when[24];
    push_frame fr[7] = {
        { NULL, 0 }, push_str_frame(PUSH_LINK_PEVENT), push_str_frame(chan),
        push_str_frame(join ? PUSH_PRESENCE_JOIN : PUSH_PRESENCE_LEAVE), push_str_frame(identity),
        { conns, (size_t)push_fmt_u64(conns, connections) },
        { when, (size_t)push_fmt_u64(when, time_us) },
    };
    log_debug("presence: %s %s channel %s", identity, join ? "joined" : "left", chan);
    for (size_t i = 0; c && i < c->nsubs; i++) {
        const link_child *child = &l->child[c->subs[i].child];
        fr[0].data = (const char *)child->id;
        fr[0].size = child->id_len;
        s_send(l, fr, 7);
    }
}

cJSON *links_presence_json(const links *l, const char *chan)
{
    return presence_json(l->presence, chan);
}

/* ---- commands ----------------------------------------------------------
 * Each handler returns -1 when the message is malformed (the dispatcher logs
 * and drops it, and sends no RESET for it), 0 otherwise. */

static void s_malformed(const push_frames *f, const char *why)
{
    char cmd[24];
    const push_frame *c = f->count > 1 ? &f->frame[1] : NULL;
    log_warn("link: dropped malformed message (%s; command \"%s\", %d frames)", why,
             c ? log_safe(c->data, c->size, cmd, sizeof cmd) : "", f->count);
}

static long s_register(links *l, const push_frame *id, uint64_t pid)
{
    long slot = s_free_slot(l);
    if (slot < 0) {
        log_warn("child link pid %llu refused: %zu children already linked",
                 (unsigned long long)pid, l->live);
        return -1;
    }
    memcpy(l->child[slot].id, id->data, id->size);
    l->child[slot].id_len = id->size;
    l->live++;
    log_info("child link HELLO from pid %llu (%zu linked)", (unsigned long long)pid, l->live);
    return slot;
}

static int s_hello(links *l, const push_frames *f, long slot, uint64_t now)
{
    uint64_t pid;
    const push_frame *id = &f->frame[0];
    if (f->count != 3 || push_parse_u64(f->frame[2].data, f->frame[2].size, &pid) < 0
        || id->size == 0 || id->size > sizeof l->child[0].id)
        return -1;
    if (slot >= 0) {
        /* the child lost its state (or we never had it right): it re-sends
         * every SUB after WELCOME, so stale counts must not linger */
        channel_table_drop_child(&l->broker->channels, (uint32_t)slot);
        presence_drop_child(l->presence, (uint32_t)slot, clock_real_us());
        log_info("child link pid %llu said HELLO again (was pid %llu): subscriptions reset",
                 (unsigned long long)pid, (unsigned long long)l->child[slot].pid);
    } else if ((slot = s_register(l, id, pid)) < 0) {
        return 0;
    }
    l->child[slot].pid = pid;
    l->child[slot].last_seen_us = now;
    s_send_epoch(l, id, PUSH_LINK_WELCOME);
    return 0;
}

static int s_sub(links *l, const push_frames *f, long slot)
{
    uint64_t count;
    if (f->count != 4)
        return -1;
    const push_frame *ch = &f->frame[2];
    if (!push_channel_valid(ch->data, ch->size)
        || push_parse_u64(f->frame[3].data, f->frame[3].size, &count) < 0)
        return -1;
    if (slot < 0)
        return 0;   /* the dispatcher's RESET makes the child start over */
    channel *c = count ? channel_get(&l->broker->channels, ch->data, ch->size)
                       : channel_find(&l->broker->channels, ch->data, ch->size);
    uint32_t n = count > UINT32_MAX ? UINT32_MAX : (uint32_t)count;
    if ((count && !c) || (c && channel_set_subs(c, (uint32_t)slot, n) < 0))
        log_error("link: cannot record %u subscribers: out of memory", n);
    return 0;
}

static void s_hist_err(links *l, const push_frames *f, const char *code, const char *msg)
{
    push_frame fr[6] = { f->frame[0], push_str_frame(PUSH_LINK_HIST), f->frame[2],
                         push_str_frame(PUSH_REP_ERR), push_str_frame(code),
                         push_str_frame(msg) };
    s_send(l, fr, 6);
}

static void s_hist_ok(links *l, const push_frames *f, const channel *c, history_view v)
{
    reply r;
    if (reply_init(&r, 6 + 4 * (int)v.count) < 0) {
        s_hist_err(l, f, PUSH_ERR_UNAVAILABLE, "broker out of memory");
        return;
    }
    reply_frames(&r, f->frame, 3);     /* identity, HIST, reqid */
    reply_str(&r, PUSH_REP_OK);
    reply_u64(&r, v.last_id);
    reply_u64(&r, v.oldest_id);
    for (size_t i = 0; i < v.count; i++) {
        const history_msg *m = history_get(&c->hist, v.first_id + i);
        reply_u64(&r, m->id);
        reply_bytes(&r, m->event, m->event_len);
        reply_bytes(&r, m->data, m->data_len);
        reply_u64(&r, m->time_us);
    }
    s_send_reply(l, &r);
    reply_free(&r);
}

static int s_hist(links *l, const push_frames *f)
{
    if (f->count != 5)
        return -1;
    const push_frame *ch = &f->frame[3], *after = &f->frame[4];
    uint64_t from = 0;
    int only_last = after->size == 1 && after->data[0] == '-';
    broker_err err;
    if (!push_channel_valid(ch->data, ch->size)) {
        s_hist_err(l, f, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
        return 0;
    }
    if (!only_last && push_parse_u64(after->data, after->size, &from) < 0) {
        s_hist_err(l, f, PUSH_ERR_BAD_REQUEST, "after must be a message id or \"-\"");
        return 0;
    }
    channel *c = broker_history_channel(l->broker, ch->data, ch->size, &err);
    if (!c) {
        s_hist_err(l, f, err.code, err.msg);
        return 0;
    }
    /* "-": the child only wants last_id to start a live subscription */
    history_view v = history_after(&c->hist, only_last ? UINT64_MAX : from,
                                   LINKS_HIST_MAX);
    s_hist_ok(l, f, c, v);
    return 0;
}

static int s_publish(links *l, const push_frames *f)
{
    if (f->count != 6)
        return -1;
    const push_frame *fr = f->frame;
    broker_published pub;
    broker_err err;
    int rc = broker_publish(l->broker, fr[3].data, fr[3].size, fr[4].data, fr[4].size,
                            fr[5].data, fr[5].size, clock_real_us(), &pub, &err);
    reply r;
    if (reply_init(&r, 6) < 0) {
        log_error("link: cannot answer PUBLISH: out of memory");
        return 0;
    }
    reply_frames(&r, fr, 1);
    reply_str(&r, PUSH_LINK_PUBACK);
    reply_frames(&r, &fr[2], 1);
    if (rc < 0) {
        reply_str(&r, PUSH_REP_ERR);
        reply_str(&r, err.code);
        reply_copy(&r, err.msg);
    } else {
        reply_str(&r, PUSH_REP_OK);
        reply_u64(&r, pub.id);
        reply_u64(&r, pub.subscribers);
    }
    /* at once, or held back until the message is committed */
    broker_send(l->broker, l->socket, &r);
    return 0;
}

/* PJOIN / PLEAVE <channel> <identity> */
static int s_presence_change(links *l, const push_frames *f, long slot, int join)
{
    char chan[PUSH_CHANNEL_MAX + 1], ident[PUSH_IDENTITY_MAX + 1];
    if (f->count != 4 || !push_channel_valid(f->frame[2].data, f->frame[2].size)
        || !push_identity_valid(f->frame[3].data, f->frame[3].size))
        return -1;
    if (slot < 0)
        return 0;   /* RESET: the child re-sends its joins after WELCOME */
    memcpy(chan, f->frame[2].data, f->frame[2].size);
    chan[f->frame[2].size] = '\0';
    memcpy(ident, f->frame[3].data, f->frame[3].size);
    ident[f->frame[3].size] = '\0';
    int rc = join ? presence_join(l->presence, chan, ident, (uint32_t)slot, clock_real_us())
                  : presence_leave(l->presence, chan, ident, (uint32_t)slot, clock_real_us());
    if (rc < 0)
        log_warn("presence: cannot record %s of \"%s\" on %s", join ? "join" : "leave",
                 ident, chan);
    return 0;
}

/* PRESENCE <reqid> <channel> -> PRESENCE <reqid> OK <json> */
static int s_presence_query(links *l, const push_frames *f)
{
    char chan[PUSH_CHANNEL_MAX + 1];
    if (f->count != 4 || !push_channel_valid(f->frame[3].data, f->frame[3].size))
        return -1;
    memcpy(chan, f->frame[3].data, f->frame[3].size);
    chan[f->frame[3].size] = '\0';
    cJSON *o = presence_json(l->presence, chan);
    char *json = o ? cJSON_PrintUnformatted(o) : NULL;
    cJSON_Delete(o);
    push_frame fr[5] = { f->frame[0], f->frame[1], f->frame[2],
                         push_str_frame(json ? PUSH_REP_OK : PUSH_REP_ERR),
                         push_str_frame(json ? json : "out of memory") };
    s_send(l, fr, 5);
    free(json);
    return 0;
}

static int s_ping(links *l, const push_frames *f)
{
    if (f->count != 2)
        return -1;
    s_send_epoch(l, &f->frame[0], PUSH_LINK_PONG);
    return 0;
}

static int s_command(links *l, const push_frames *f, long slot, uint64_t now)
{
    if (push_frame_is(f, 1, PUSH_LINK_HELLO))
        return s_hello(l, f, slot, now);
    if (push_frame_is(f, 1, PUSH_LINK_SUB))
        return s_sub(l, f, slot);
    if (push_frame_is(f, 1, PUSH_LINK_HIST))
        return s_hist(l, f);
    if (push_frame_is(f, 1, PUSH_LINK_PUBLISH))
        return s_publish(l, f);
    if (push_frame_is(f, 1, PUSH_LINK_PING))
        return s_ping(l, f);
    if (push_frame_is(f, 1, PUSH_LINK_PJOIN))
        return s_presence_change(l, f, slot, 1);
    if (push_frame_is(f, 1, PUSH_LINK_PLEAVE))
        return s_presence_change(l, f, slot, 0);
    if (push_frame_is(f, 1, PUSH_LINK_PRESENCE))
        return s_presence_query(l, f);
    return -1;
}

static void s_dispatch(links *l, const push_frames *f, uint64_t now)
{
    long slot = s_find(l, &f->frame[0]);
    if (slot >= 0)
        l->child[slot].last_seen_us = now;
    if (s_command(l, f, slot, now) < 0)
        s_malformed(f, "unknown command or wrong frames");
    else if (slot < 0 && !push_frame_is(f, 1, PUSH_LINK_HELLO))
        s_reset(l, &f->frame[0]);
}

void links_handle(links *l, int max)
{
    for (int i = 0; i < max; i++) {
        push_frames f;
        if (push_frames_recv(l->socket, &f, ZMQ_DONTWAIT) < 0) {
            int e = errno;
            if (e == EPROTO) {
                log_warn("link: dropped message with more than %d frames", PUSH_MAX_FRAMES);
                continue;
            }
            if (e != EAGAIN && e != EINTR && e != ETERM)
                log_error("link receive failed: %s", zmq_strerror(e));
            return;
        }
        if (f.count >= 2)
            s_dispatch(l, &f, clock_mono_us());
        else
            s_malformed(&f, "no command frame");
        push_frames_close(&f);
    }
}
