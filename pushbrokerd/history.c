/*
 * history.c — see history.h.
 */
#include "history.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define HISTORY_FIRST_CAP 16

void history_init(history *h)
{
    memset(h, 0, sizeof *h);
}

static history_msg *s_slot(const history *h, size_t i)
{
    return h->ring[(h->head + i) % h->cap];
}

static void s_drop_oldest(history *h)
{
    h->bytes -= h->ring[h->head]->event_len + h->ring[h->head]->data_len;
    free(h->ring[h->head]);
    h->ring[h->head] = NULL;
    h->head = (h->head + 1) % h->cap;
    h->count--;
}

void history_free(history *h)
{
    while (h->count)
        s_drop_oldest(h);
    free(h->ring);
    history_init(h);
}

static history_msg *s_msg_new(const char *event, size_t event_len,
                              const void *data, size_t data_len)
{
    if (data_len > SIZE_MAX - sizeof(history_msg) - event_len - 2) {
        errno = ENOMEM;
        return NULL;
    }
    history_msg *m = malloc(sizeof *m + event_len + 1 + data_len + 1);
    if (!m)
        return NULL;
    char *ev = (char *)(m + 1);
    char *d = ev + event_len + 1;
    if (event_len)
        memcpy(ev, event, event_len);
    ev[event_len] = '\0';
    if (data_len)
        memcpy(d, data, data_len);
    d[data_len] = '\0';
    m->event = ev;
    m->event_len = event_len;
    m->data = d;
    m->data_len = data_len;
    return m;
}

/* Unrolls the ring into a bigger array so that head becomes 0. */
static int s_grow(history *h, size_t max_count)
{
    size_t cap = h->cap ? h->cap * 2 : HISTORY_FIRST_CAP;
    if (cap > max_count)
        cap = max_count;
    history_msg **ring = calloc(cap, sizeof *ring);
    if (!ring)
        return -1;
    for (size_t i = 0; i < h->count; i++)
        ring[i] = s_slot(h, i);
    free(h->ring);
    h->ring = ring;
    h->cap = cap;
    h->head = 0;
    return 0;
}

/* Makes room for one more message without exceeding max_count. */
static int s_make_room(history *h, size_t max_count)
{
    while (h->count >= max_count)
        s_drop_oldest(h);
    if (h->count < h->cap)
        return 0;
    return s_grow(h, max_count);
}

const history_msg *history_append(history *h, const char *event, size_t event_len,
                                  const void *data, size_t data_len,
                                  uint64_t time_us, const history_limits *lim)
{
    if (h->last_id >= (uint64_t)INT64_MAX) {
        errno = EOVERFLOW;   /* ids must stay parseable by push_parse_u64 */
        return NULL;
    }
    history_msg *m = s_msg_new(event, event_len, data, data_len);
    if (!m)
        return NULL;
    size_t max_count = lim->max_count ? lim->max_count : 1;
    if (s_make_room(h, max_count) < 0) {
        free(m);
        return NULL;
    }
    history_trim_age(h, time_us, lim->max_age_us);
    m->id = ++h->last_id;
    m->time_us = time_us;
    h->ring[(h->head + h->count) % h->cap] = m;
    h->count++;
    h->bytes += event_len + data_len;
    return m;
}

int history_skip_to(history *h, uint64_t last_id)
{
    if (last_id > (uint64_t)INT64_MAX) {
        errno = EOVERFLOW;
        return -1;
    }
    if (last_id <= h->last_id)
        return 0;
    while (h->count)
        s_drop_oldest(h);
    h->last_id = last_id;
    return 0;
}

size_t history_trim_age(history *h, uint64_t now_us, uint64_t max_age_us)
{
    if (max_age_us == 0 || now_us < max_age_us)
        return 0;
    uint64_t cutoff = now_us - max_age_us;
    size_t dropped = 0;
    /* publish times are non-decreasing unless the wall clock stepped back;
     * stopping at the first young message keeps the ring contiguous */
    while (h->count && h->ring[h->head]->time_us < cutoff) {
        s_drop_oldest(h);
        dropped++;
    }
    return dropped;
}

uint64_t history_last_id(const history *h)
{
    return h->last_id;
}

uint64_t history_oldest_id(const history *h)
{
    return h->last_id + 1 - h->count;
}

size_t history_count(const history *h)
{
    return h->count;
}

uint64_t history_bytes(const history *h)
{
    return h->bytes;
}

history_view history_after(const history *h, uint64_t after, size_t limit)
{
    history_view v;
    v.last_id = h->last_id;
    v.oldest_id = history_oldest_id(h);
    v.first_id = after + 1 > v.oldest_id ? after + 1 : v.oldest_id;
    if (after >= h->last_id) {
        v.first_id = h->last_id + 1;
        v.count = 0;
        return v;
    }
    uint64_t avail = h->last_id - v.first_id + 1;
    v.count = avail < limit ? (size_t)avail : limit;
    return v;
}

const history_msg *history_get(const history *h, uint64_t id)
{
    uint64_t oldest = history_oldest_id(h);
    if (id < oldest || id > h->last_id)
        return NULL;
    return s_slot(h, (size_t)(id - oldest));
}
