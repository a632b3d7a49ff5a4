/*
 * channel.c — see channel.h.
 */
#include "channel.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define CHANNEL_FIRST_BUCKETS 64

static uint64_t s_hash(const char *p, size_t len)
{
    uint64_t h = 1469598103934665603ull;   /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

int channel_table_init(channel_table *t)
{
    t->bucket = calloc(CHANNEL_FIRST_BUCKETS, sizeof *t->bucket);
    if (!t->bucket)
        return -1;
    t->nbucket = CHANNEL_FIRST_BUCKETS;
    t->count = 0;
    return 0;
}

static void s_channel_free(channel *c)
{
    history_free(&c->hist);
    free(c->subs);
    free(c);
}

void channel_table_free(channel_table *t)
{
    for (size_t b = 0; b < t->nbucket; b++) {
        channel *c = t->bucket[b];
        while (c) {
            channel *next = c->next;
            s_channel_free(c);
            c = next;
        }
    }
    free(t->bucket);
    t->bucket = NULL;
    t->nbucket = t->count = 0;
}

channel *channel_find(const channel_table *t, const char *name, size_t len)
{
    uint64_t h = s_hash(name, len);
    for (channel *c = t->bucket[h & (t->nbucket - 1)]; c; c = c->next)
        if (c->hash == h && c->name_len == len && memcmp(c->name, name, len) == 0)
            return c;
    return NULL;
}

/* Doubling keeps chains short; a failed resize only costs speed. */
static void s_maybe_grow(channel_table *t)
{
    if (t->count < t->nbucket * 2)
        return;
    size_t n = t->nbucket * 2;
    channel **bucket = calloc(n, sizeof *bucket);
    if (!bucket)
        return;
    for (size_t b = 0; b < t->nbucket; b++) {
        channel *c = t->bucket[b];
        while (c) {
            channel *next = c->next;
            c->next = bucket[c->hash & (n - 1)];
            bucket[c->hash & (n - 1)] = c;
            c = next;
        }
    }
    free(t->bucket);
    t->bucket = bucket;
    t->nbucket = n;
}

channel *channel_get(channel_table *t, const char *name, size_t len)
{
    channel *c = channel_find(t, name, len);
    if (c)
        return c;
    c = calloc(1, sizeof *c + len + 1);
    if (!c)
        return NULL;
    memcpy(c->name, name, len);
    c->name_len = len;
    c->hash = s_hash(name, len);
    history_init(&c->hist);
    s_maybe_grow(t);
    size_t b = c->hash & (t->nbucket - 1);
    c->next = t->bucket[b];
    t->bucket[b] = c;
    t->count++;
    return c;
}

static channel_sub *s_find_sub(const channel *c, uint32_t child)
{
    for (size_t i = 0; i < c->nsubs; i++)
        if (c->subs[i].child == child)
            return &c->subs[i];
    return NULL;
}

uint32_t channel_child_subs(const channel *c, uint32_t child)
{
    const channel_sub *s = s_find_sub(c, child);
    return s ? s->count : 0;
}

static void s_remove_sub(channel *c, channel_sub *s)
{
    c->subscribers -= s->count;
    *s = c->subs[--c->nsubs];   /* order does not matter */
}

static int s_add_sub(channel *c, uint32_t child, uint32_t count)
{
    if (c->nsubs == c->subs_cap) {
        size_t cap = c->subs_cap ? c->subs_cap * 2 : 4;
        channel_sub *subs = realloc(c->subs, cap * sizeof *subs);
        if (!subs)
            return -1;
        c->subs = subs;
        c->subs_cap = cap;
    }
    c->subs[c->nsubs].child = child;
    c->subs[c->nsubs].count = count;
    c->nsubs++;
    c->subscribers += count;
    return 0;
}

int channel_set_subs(channel *c, uint32_t child, uint32_t count)
{
    channel_sub *s = s_find_sub(c, child);
    if (s && count == 0) {
        s_remove_sub(c, s);
        return 0;
    }
    if (s) {
        c->subscribers = c->subscribers - s->count + count;
        s->count = count;
        return 0;
    }
    return count ? s_add_sub(c, child, count) : 0;
}

void channel_table_drop_child(channel_table *t, uint32_t child)
{
    for (size_t b = 0; b < t->nbucket; b++)
        for (channel *c = t->bucket[b]; c; c = c->next) {
            channel_sub *s = s_find_sub(c, child);
            if (s)
                s_remove_sub(c, s);
        }
}

static int s_unused(const channel *c)
{
    return c->nsubs == 0 && history_last_id(&c->hist) == 0;
}

size_t channel_table_tick(channel_table *t, uint64_t now_us, uint64_t max_age_us)
{
    size_t trimmed = 0;
    for (size_t b = 0; b < t->nbucket; b++) {
        channel **link = &t->bucket[b];
        while (*link) {
            channel *c = *link;
            trimmed += history_trim_age(&c->hist, now_us, max_age_us);
            if (s_unused(c)) {
                *link = c->next;
                s_channel_free(c);
                t->count--;
            } else {
                link = &c->next;
            }
        }
    }
    return trimmed;
}

uint64_t channel_table_messages(const channel_table *t)
{
    uint64_t n = 0;
    for (size_t b = 0; b < t->nbucket; b++)
        for (const channel *c = t->bucket[b]; c; c = c->next)
            n += history_count(&c->hist);
    return n;
}
