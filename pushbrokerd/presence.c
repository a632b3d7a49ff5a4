/*
 * presence.c — see presence.h.
 */
#include "presence.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBUCKETS 1024

typedef struct p_conn {
    uint32_t child;
    uint32_t count;
} p_conn;

typedef struct p_member {
    struct p_member *next;
    char            *identity;
    uint64_t         since_us;
    uint64_t         total;
    p_conn          *conn;
    size_t           nconn, cap;
} p_member;

typedef struct p_channel {
    struct p_channel *next;
    char             *name;
    p_member         *members;
    size_t            nmembers;
} p_channel;

struct presence_table {
    p_channel         *bucket[NBUCKETS];
    presence_event_fn *fn;
    void              *arg;
};

static unsigned s_hash(const char *s)
{
    unsigned h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h & (NBUCKETS - 1);
}

presence_table *presence_new(presence_event_fn *fn, void *arg)
{
    presence_table *pt = calloc(1, sizeof *pt);
    if (pt) {
        pt->fn = fn;
        pt->arg = arg;
    }
    return pt;
}

static void s_member_free(p_member *m)
{
    free(m->identity);
    free(m->conn);
    free(m);
}

static void s_channel_free(p_channel *c)
{
    for (p_member *m = c->members, *n; m; m = n) {
        n = m->next;
        s_member_free(m);
    }
    free(c->name);
    free(c);
}

void presence_free(presence_table **ptp)
{
    presence_table *pt = *ptp;
    if (!pt)
        return;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (p_channel *c = pt->bucket[b], *n; c; c = n) {
            n = c->next;
            s_channel_free(c);
        }
    free(pt);
    *ptp = NULL;
}

static p_channel **s_chan_slot(const presence_table *pt, const char *name)
{
    p_channel **p = (p_channel **)&pt->bucket[s_hash(name)];
    while (*p && strcmp((*p)->name, name) != 0)
        p = &(*p)->next;
    return p;
}

static p_member **s_member_slot(p_channel *c, const char *identity)
{
    p_member **p = &c->members;
    while (*p && strcmp((*p)->identity, identity) != 0)
        p = &(*p)->next;
    return p;
}

static p_conn *s_conn(p_member *m, uint32_t child)
{
    for (size_t i = 0; i < m->nconn; i++)
        if (m->conn[i].child == child)
            return &m->conn[i];
    return NULL;
}

static p_channel *s_channel_get(presence_table *pt, const char *name)
{
    p_channel **slot = s_chan_slot(pt, name);
    if (*slot)
        return *slot;
    p_channel *c = calloc(1, sizeof *c);
    if (!c || !(c->name = strdup(name))) {
        free(c);
        return NULL;
    }
    *slot = c;
    return c;
}

static p_member *s_member_get(p_channel *c, const char *identity, uint64_t now_us)
{
    p_member **slot = s_member_slot(c, identity);
    if (*slot)
        return *slot;
    p_member *m = calloc(1, sizeof *m);
    if (!m || !(m->identity = strdup(identity))) {
        free(m);
        return NULL;
    }
    m->since_us = now_us;
    *slot = m;
    c->nmembers++;
    return m;
}

/* Free what became empty: a member without connections, a channel without members. */
static void s_prune(presence_table *pt, p_channel *c, p_member *m)
{
    if (m->total == 0) {
        p_member **ms = s_member_slot(c, m->identity);
        *ms = m->next;
        c->nmembers--;
        s_member_free(m);
    }
    if (c->nmembers == 0) {
        p_channel **cs = s_chan_slot(pt, c->name);
        *cs = c->next;
        s_channel_free(c);
    }
}

int presence_join(presence_table *pt, const char *channel, const char *identity,
                  uint32_t child, uint64_t now_us)
{
    p_channel *c = s_channel_get(pt, channel);
    p_member *m = c ? s_member_get(c, identity, now_us) : NULL;
    if (!m) {
        if (c && c->nmembers == 0) {     /* created for nothing */
            *s_chan_slot(pt, c->name) = c->next;
            s_channel_free(c);
        }
        return -1;
    }
    p_conn *pc = s_conn(m, child);
    if (!pc) {
        if (m->nconn == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 2;
            p_conn *more = realloc(m->conn, cap * sizeof *more);
            if (!more) {
                if (m->total == 0)
                    s_prune(pt, c, m);
                return -1;
            }
            m->conn = more;
            m->cap = cap;
        }
        pc = &m->conn[m->nconn++];
        pc->child = child;
        pc->count = 0;
    }
    pc->count++;
    if (++m->total == 1 && pt->fn)
        pt->fn(pt->arg, channel, identity, 1, m->total, now_us);
    return 0;
}

/* Take n connections of child away from m; reports a leave at zero. */
static void s_take(presence_table *pt, p_channel *c, p_member *m, p_conn *pc, uint32_t n,
                   uint64_t now_us)
{
    pc->count -= n;
    m->total -= n;
    if (pc->count == 0)
        *pc = m->conn[--m->nconn];
    if (m->total == 0 && pt->fn)
        pt->fn(pt->arg, c->name, m->identity, 0, 0, now_us);
    s_prune(pt, c, m);
}

int presence_leave(presence_table *pt, const char *channel, const char *identity,
                   uint32_t child, uint64_t now_us)
{
    p_channel *c = *s_chan_slot(pt, channel);
    p_member *m = c ? *s_member_slot(c, identity) : NULL;
    p_conn *pc = m ? s_conn(m, child) : NULL;
    if (!pc)
        return -1;
    s_take(pt, c, m, pc, 1, now_us);
    return 0;
}

void presence_drop_child(presence_table *pt, uint32_t child, uint64_t now_us)
{
    for (size_t b = 0; b < NBUCKETS; b++) {
        p_channel *c = pt->bucket[b];
        while (c) {
            p_channel *next_c = c->next;
            int channel_freed = 0;
            p_member *m = c->members;
            while (m && !channel_freed) {
                p_member *next_m = m->next;
                p_conn *pc = s_conn(m, child);
                if (pc) {
                    channel_freed = c->nmembers == 1 && m->total == pc->count;
                    s_take(pt, c, m, pc, pc->count, now_us);
                }
                m = next_m;
            }
            c = next_c;
        }
    }
}

/* A JSON number in plain decimal (cJSON would print large times in
 * exponent form, losing digits). */
static cJSON *s_num(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cJSON_CreateRaw(buf);
}

static int s_cmp(const void *a, const void *b)
{
    const p_member *x = *(const p_member *const *)a, *y = *(const p_member *const *)b;
    return strcmp(x->identity, y->identity);
}

cJSON *presence_json(const presence_table *pt, const char *channel)
{
    const p_channel *c = *s_chan_slot(pt, channel);
    size_t n = c ? c->nmembers : 0;
    const p_member **sorted = n ? malloc(n * sizeof *sorted) : NULL;
    cJSON *o = cJSON_CreateObject(), *arr = cJSON_CreateArray();
    if ((n && !sorted) || !o || !arr) {
        free(sorted);
        cJSON_Delete(o);
        cJSON_Delete(arr);
        return NULL;
    }
    size_t i = 0;
    for (const p_member *m = c ? c->members : NULL; m; m = m->next)
        sorted[i++] = m;
    if (n)
        qsort(sorted, n, sizeof *sorted, s_cmp);
    cJSON_AddItemToObject(o, "channel", cJSON_CreateString(channel));
    cJSON_AddItemToObject(o, "count", s_num(n));
    cJSON_AddItemToObject(o, "members", arr);
    for (i = 0; i < n; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m)
            break;
        cJSON_AddItemToObject(m, "identity", cJSON_CreateString(sorted[i]->identity));
        cJSON_AddItemToObject(m, "connections", s_num(sorted[i]->total));
        cJSON_AddItemToObject(m, "since", s_num(sorted[i]->since_us));
        cJSON_AddItemToArray(arr, m);
    }
    free(sorted);
    return o;
}

void presence_totals(const presence_table *pt, uint64_t *channels, uint64_t *members,
                     uint64_t *connections)
{
    *channels = *members = *connections = 0;
    for (size_t b = 0; b < NBUCKETS; b++)
        for (const p_channel *c = pt->bucket[b]; c; c = c->next) {
            (*channels)++;
            *members += c->nmembers;
            for (const p_member *m = c->members; m; m = m->next)
                *connections += m->total;
        }
}
