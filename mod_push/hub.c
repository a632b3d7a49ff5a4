/*
 * hub.c — channels, subscriptions and queues of one child; see hub.h.
 */
#define _GNU_SOURCE 1   /* asprintf */
#include "hub.h"
#include "sse_format.h"
#include "poll_format.h"
#include "push_proto.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct push_channel {
    char         *name;
    unsigned      hash;
    int           count;
    push_sub     *subs;
    push_channel *next;          /* hash chain */
};

struct push_hub {
    pthread_mutex_t    lock;
    push_channel     **buckets;
    unsigned           nbuckets;  /* power of two */
    int                nchannels;
    int                nsubs;
    uint64_t           queued;     /* entries in all client queues */
    push_client       *ready;
    push_hub_count_fn *on_count;
    push_hub_presence_fn *on_presence;
    void              *on_count_arg;
};

/* ---- messages ---------------------------------------------------------- */

/* m->json is {"id":..,...}: the WebSocket message object splices the type
 * and the channel in front, once per message rather than per subscriber. */
static char *s_ws_json(const push_msg *m, size_t *len)
{
    size_t clen = strlen(m->channel);
    size_t max = 32 + push_json_str_max(clen) + m->json_len;
    char *out = malloc(max);
    if (!out)
        return NULL;
    size_t n = (size_t)snprintf(out, max, "{\"type\":\"message\",\"channel\":");
    n += push_json_str(out + n, m->channel, clen);
    out[n++] = ',';
    memcpy(out + n, m->json + 1, m->json_len - 1);
    *len = n + m->json_len - 1;
    return out;
}

push_msg *push_msg_new(const char *channel, size_t channel_len, uint64_t id,
                       const char *event, size_t event_len,
                       const char *data, size_t data_len, uint64_t time_us)
{
    push_msg *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->refs = 1;
    m->id = id;
    m->time_us = time_us;
    m->data_len = data_len;
    m->channel = push_memdup_str(channel, channel_len);
    m->event = event_len ? push_memdup_str(event, event_len) : NULL;
    m->data = push_memdup_str(data, data_len);
    if (m->channel && m->data && (m->event || !event_len)) {
        m->sse = push_sse_encode(id, m->event, m->data, data_len, &m->sse_len);
        m->json = push_json_msg_encode(id, m->event, m->data, data_len, time_us, &m->json_len);
    }
    if (m->json)
        m->ws_json = s_ws_json(m, &m->ws_json_len);
    if (!m->sse || !m->json || !m->ws_json) {
        push_msg_unref(m);
        return NULL;
    }
    return m;
}

push_msg *push_msg_new_presence(const char *channel, int join, const char *identity,
                                uint64_t connections, uint64_t time_us)
{
    size_t clen = strlen(channel), ilen = strlen(identity);
    const char *kind = join ? "join" : "leave";
    char *ch = malloc(push_json_str_max(clen) + 1), *id = malloc(push_json_str_max(ilen) + 1);
    push_msg *m = ch && id ? calloc(1, sizeof *m) : NULL;
    if (!m) {
        free(ch);
        free(id);
        return NULL;
    }
    ch[push_json_str(ch, channel, clen)] = '\0';
    id[push_json_str(id, identity, ilen)] = '\0';
    m->refs = 1;
    m->presence = 1;
    m->time_us = time_us;
    m->channel = strdup(channel);
    m->event = strdup(kind);
    int n = asprintf(&m->data, "{\"channel\":%s,\"identity\":%s,\"connections\":%llu,"
                     "\"time\":%llu}", ch, id, (unsigned long long)connections,
                     (unsigned long long)time_us);
    m->data_len = n > 0 ? (size_t)n : 0;
    if (n > 0 && asprintf(&m->sse, "event: %s\ndata: %s\n\n", kind, m->data) > 0)
        m->sse_len = strlen(m->sse);
    if (n > 0 && asprintf(&m->json, "{\"type\":\"%s\",%s", kind, m->data + 1) > 0)
        m->json_len = strlen(m->json);
    free(ch);
    free(id);
    if (n <= 0 || !m->channel || !m->event || !m->sse || !m->json) {
        push_msg_unref(m);
        return NULL;
    }
    return m;
}

void push_msg_ref(push_msg *m)
{
    __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
}

void push_msg_unref(push_msg *m)
{
    if (!m || __atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    free(m->channel);
    free(m->event);
    free(m->data);
    free(m->sse);
    free(m->json);
    free(m->ws_json);
    free(m);
}

/* ---- channels ------------------------------------------------------------ */

static unsigned s_hash(const char *s)
{
    unsigned h = 2166136261u;           /* FNV-1a */
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static push_channel *s_find(push_hub *h, const char *name, unsigned hash)
{
    for (push_channel *ch = h->buckets[hash & (h->nbuckets - 1)]; ch; ch = ch->next)
        if (ch->hash == hash && strcmp(ch->name, name) == 0)
            return ch;
    return NULL;
}

/* Doubling keeps chains short; on allocation failure the old table stays. */
static void s_grow(push_hub *h)
{
    unsigned n = h->nbuckets * 2;
    push_channel **b = calloc(n, sizeof *b);
    if (!b)
        return;
    for (unsigned i = 0; i < h->nbuckets; i++) {
        push_channel *ch = h->buckets[i], *next;
        for (; ch; ch = next) {
            next = ch->next;
            ch->next = b[ch->hash & (n - 1)];
            b[ch->hash & (n - 1)] = ch;
        }
    }
    free(h->buckets);
    h->buckets = b;
    h->nbuckets = n;
}

static push_channel *s_get(push_hub *h, const char *name)
{
    unsigned hash = s_hash(name);
    push_channel *ch = s_find(h, name, hash);
    if (ch)
        return ch;
    ch = calloc(1, sizeof *ch);
    if (!ch || !(ch->name = strdup(name))) {
        free(ch);
        return NULL;
    }
    ch->hash = hash;
    if ((unsigned)h->nchannels >= h->nbuckets)
        s_grow(h);
    ch->next = h->buckets[hash & (h->nbuckets - 1)];
    h->buckets[hash & (h->nbuckets - 1)] = ch;
    h->nchannels++;
    return ch;
}

/* Channels without subscribers are freed: the hub holds only what is live. */
static void s_release(push_hub *h, push_channel *ch)
{
    push_channel **p = &h->buckets[ch->hash & (h->nbuckets - 1)];
    while (*p != ch)
        p = &(*p)->next;
    *p = ch->next;
    h->nchannels--;
    free(ch->name);
    free(ch);
}

/* ---- hub ------------------------------------------------------------------ */

push_hub *push_hub_new(push_hub_count_fn *on_count, void *arg)
{
    push_hub *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->nbuckets = 64;
    h->buckets = calloc(h->nbuckets, sizeof *h->buckets);
    if (!h->buckets || pthread_mutex_init(&h->lock, NULL) != 0) {
        free(h->buckets);
        free(h);
        return NULL;
    }
    h->on_count = on_count;
    h->on_count_arg = arg;
    return h;
}

void push_hub_destroy(push_hub **hp)
{
    push_hub *h = *hp;
    if (!h)
        return;
    /* Clients are owned by their connections; only the channel records remain. */
    for (unsigned i = 0; i < h->nbuckets; i++) {
        push_channel *ch = h->buckets[i], *next;
        for (; ch; ch = next) {
            next = ch->next;
            free(ch->name);
            free(ch);
        }
    }
    free(h->buckets);
    pthread_mutex_destroy(&h->lock);
    free(h);
    *hp = NULL;
}

void push_hub_set_presence_fn(push_hub *h, push_hub_presence_fn *fn)
{
    h->on_presence = fn;
}

void push_client_init(push_client *c, int qmax, void *owner)
{
    memset(c, 0, sizeof *c);
    c->qmax = qmax > 0 ? qmax : 1;
    c->owner = owner;
}

push_sub *push_hub_subscribe(push_hub *h, push_client *c, const char *channel)
{
    return push_hub_subscribe_max(h, c, channel, 0, NULL);
}

push_sub *push_hub_subscribe_max(push_hub *h, push_client *c, const char *channel, int max,
                                 int *full)
{
    if (full)
        *full = 0;
    push_sub *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    pthread_mutex_lock(&h->lock);
    if (max > 0) {
        push_channel *have = s_find(h, channel, s_hash(channel));
        if (have && have->count >= max) {
            pthread_mutex_unlock(&h->lock);
            free(s);
            if (full)
                *full = 1;
            return NULL;
        }
    }
    push_channel *ch = s_get(h, channel);
    if (!ch) {
        pthread_mutex_unlock(&h->lock);
        free(s);
        return NULL;
    }
    s->client = c;
    s->channel = ch;
    s->chan_next = ch->subs;
    if (ch->subs)
        ch->subs->chan_prev = s;
    ch->subs = s;
    s->client_next = c->subs;
    c->subs = s;
    ch->count++;
    h->nsubs++;
    if (h->on_count)
        h->on_count(h->on_count_arg, ch->name);
    if (c->identity && h->on_presence)
        h->on_presence(h->on_count_arg, ch->name, c->identity, 1);
    pthread_mutex_unlock(&h->lock);
    return s;
}

static void s_unlink_sub(push_hub *h, push_sub *s)
{
    push_channel *ch = s->channel;
    if (s->chan_prev)
        s->chan_prev->chan_next = s->chan_next;
    else
        ch->subs = s->chan_next;
    if (s->chan_next)
        s->chan_next->chan_prev = s->chan_prev;
    ch->count--;
    h->nsubs--;
    if (h->on_count)
        h->on_count(h->on_count_arg, ch->name);
    if (s->client->identity && h->on_presence)
        h->on_presence(h->on_count_arg, ch->name, s->client->identity, 0);
    if (ch->count == 0)
        s_release(h, ch);
}

push_sub *push_hub_find(push_client *c, const char *channel)
{
    for (push_sub *s = c->subs; s; s = s->client_next)
        if (strcmp(s->channel->name, channel) == 0)
            return s;
    return NULL;
}

int push_hub_unsubscribe(push_hub *h, push_client *c, const char *channel)
{
    pthread_mutex_lock(&h->lock);
    push_sub **p = &c->subs;
    while (*p && strcmp((*p)->channel->name, channel) != 0)
        p = &(*p)->client_next;
    push_sub *s = *p;
    if (!s) {
        pthread_mutex_unlock(&h->lock);
        return 0;
    }
    *p = s->client_next;
    int kept = 0;
    for (int i = 0; i < c->qlen; i++) {
        push_entry e = c->queue[(c->qhead + i) % c->qcap];
        if (e.sub == s)
            push_msg_unref(e.msg);
        else
            c->queue[(c->qhead + kept++) % c->qcap] = e;
    }
    h->queued -= (uint64_t)(c->qlen - kept);
    c->qlen = kept;
    s_unlink_sub(h, s);
    pthread_mutex_unlock(&h->lock);
    free(s);
    return 1;
}

static void s_unready(push_hub *h, push_client *c)
{
    if (!c->ready)
        return;
    if (c->ready_prev)
        c->ready_prev->ready_next = c->ready_next;
    else
        h->ready = c->ready_next;
    if (c->ready_next)
        c->ready_next->ready_prev = c->ready_prev;
    c->ready = 0;
    c->ready_next = c->ready_prev = NULL;
}

void push_hub_detach(push_hub *h, push_client *c)
{
    pthread_mutex_lock(&h->lock);
    push_sub *s = c->subs, *next;
    for (; s; s = next) {
        next = s->client_next;
        s_unlink_sub(h, s);
        free(s);
    }
    c->subs = NULL;
    for (int i = 0; i < c->qlen; i++)
        push_msg_unref(c->queue[(c->qhead + i) % c->qcap].msg);
    h->queued -= (uint64_t)c->qlen;
    free(c->queue);
    c->queue = NULL;
    c->qhead = c->qlen = c->qcap = 0;
    s_unready(h, c);
    pthread_mutex_unlock(&h->lock);
}

/* Double the ring, unwrapping it: the entries start at 0 again. */
static int s_queue_grow(push_client *c)
{
    int cap = c->qcap ? c->qcap * 2 : 4;
    push_entry *q = malloc(sizeof *q * (size_t)cap);
    if (!q)
        return -1;
    for (int i = 0; i < c->qlen; i++)
        q[i] = c->queue[(c->qhead + i) % c->qcap];
    free(c->queue);
    c->queue = q;
    c->qcap = cap;
    c->qhead = 0;
    return 0;
}

static int s_full(const push_client *c)
{
    if (c->qlen < c->qmax)
        return 0;
    return __atomic_load_n(&c->blocked, __ATOMIC_RELAXED) || c->qlen >= c->qmax + c->qslack;
}

static int s_enqueue(push_hub *h, push_sub *s, push_msg *msg)
{
    push_client *c = s->client;
    if (s_full(c) || (c->qlen == c->qcap && s_queue_grow(c) < 0)) {
        c->overflow = 1;
    }
    else {
        push_msg_ref(msg);
        push_entry *e = &c->queue[(c->qhead + c->qlen) % c->qcap];
        e->msg = msg;
        e->sub = s;
        c->qlen++;
        h->queued++;
    }
    if (c->ready)
        return 0;
    c->ready = 1;
    c->ready_prev = NULL;
    c->ready_next = h->ready;
    if (h->ready)
        h->ready->ready_prev = c;
    h->ready = c;
    return 1;
}

int push_hub_dispatch(push_hub *h, push_msg *msg)
{
    int woken = 0;
    pthread_mutex_lock(&h->lock);
    push_channel *ch = s_find(h, msg->channel, s_hash(msg->channel));
    for (push_sub *s = ch ? ch->subs : NULL; s; s = s->chan_next)
        if (!msg->presence || s->want_presence)
            woken += s_enqueue(h, s, msg);
    pthread_mutex_unlock(&h->lock);
    return woken;
}

int push_hub_take_ready(push_hub *h, push_client **out, int max)
{
    int n = 0;
    pthread_mutex_lock(&h->lock);
    while (h->ready && n < max) {
        push_client *c = h->ready;
        h->ready = c->ready_next;
        if (h->ready)
            h->ready->ready_prev = NULL;
        c->ready = 0;
        c->ready_next = c->ready_prev = NULL;
        out[n++] = c;
    }
    pthread_mutex_unlock(&h->lock);
    return n;
}

int push_hub_drain(push_hub *h, push_client *c, push_entry *out, int max, size_t max_bytes,
                   int *overflow)
{
    int n = 0, i = 0;
    size_t bytes = 0;
    pthread_mutex_lock(&h->lock);
    for (; i < c->qlen && n < max && (n == 0 || bytes < max_bytes); i++) {
        push_entry e = c->queue[(c->qhead + i) % c->qcap];
        if (!e.msg->presence && e.msg->id <= e.sub->sent_id) {
            push_msg_unref(e.msg);
            continue;
        }
        out[n++] = e;
        bytes += e.msg->data_len;
    }
    c->qhead = c->qlen > i ? (c->qhead + i) % c->qcap : 0;
    c->qlen -= i;
    h->queued -= (uint64_t)i;
    if (overflow)
        *overflow = c->overflow;
    c->overflow = 0;
    pthread_mutex_unlock(&h->lock);
    return n;
}

int push_hub_overflowed(push_hub *h, push_client *c)
{
    pthread_mutex_lock(&h->lock);
    int o = c->overflow;
    pthread_mutex_unlock(&h->lock);
    return o;
}

int push_hub_count(push_hub *h, const char *channel)
{
    pthread_mutex_lock(&h->lock);
    push_channel *ch = s_find(h, channel, s_hash(channel));
    int n = ch ? ch->count : 0;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void push_hub_each_channel(push_hub *h, void (*fn)(void *, const char *, int), void *arg)
{
    pthread_mutex_lock(&h->lock);
    for (unsigned i = 0; i < h->nbuckets; i++)
        for (push_channel *ch = h->buckets[i]; ch; ch = ch->next)
            fn(arg, ch->name, ch->count);
    pthread_mutex_unlock(&h->lock);
}

void push_hub_each_presence(push_hub *h,
                            void (*fn)(void *arg, const char *channel, const char *identity),
                            void *arg)
{
    pthread_mutex_lock(&h->lock);
    for (unsigned i = 0; i < h->nbuckets; i++)
        for (push_channel *ch = h->buckets[i]; ch; ch = ch->next)
            for (push_sub *s = ch->subs; s; s = s->chan_next)
                if (s->client->identity)
                    fn(arg, ch->name, s->client->identity);
    pthread_mutex_unlock(&h->lock);
}

uint64_t push_hub_queued(push_hub *h)
{
    pthread_mutex_lock(&h->lock);
    uint64_t n = h->queued;
    pthread_mutex_unlock(&h->lock);
    return n;
}

void push_hub_totals(push_hub *h, int *channels, int *subscriptions)
{
    pthread_mutex_lock(&h->lock);
    *channels = h->nchannels;
    *subscriptions = h->nsubs;
    pthread_mutex_unlock(&h->lock);
}
