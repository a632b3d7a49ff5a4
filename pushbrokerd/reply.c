/*
 * reply.c — see reply.h.
 */
#include "reply.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

int reply_init(reply *r, int cap)
{
    memset(r, 0, sizeof *r);
    if (cap < 1)
        cap = 1;
    r->frame = calloc((size_t)cap, sizeof *r->frame);
    r->num = calloc((size_t)cap, sizeof *r->num);
    r->owned = calloc((size_t)cap, sizeof *r->owned);
    r->cap = cap;
    if (!r->frame || !r->num || !r->owned) {
        reply_free(r);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

static void s_free_owned(reply *r, int keep_from)
{
    while (r->nowned > keep_from)
        free(r->owned[--r->nowned]);
}

void reply_free(reply *r)
{
    if (r->owned)
        s_free_owned(r, 0);
    free(r->frame);
    free(r->num);
    free(r->owned);
    memset(r, 0, sizeof *r);
}

void reply_reset(reply *r, int keep)
{
    /* owned blocks are only ever added after the envelope, so dropping them
     * all is right as long as keep covers just the envelope */
    s_free_owned(r, 0);
    if (keep < r->count)
        r->count = keep;
    r->failed = 0;
}

static push_frame *s_next(reply *r)
{
    if (r->count >= r->cap) {
        r->failed = 1;
        return NULL;
    }
    return &r->frame[r->count++];
}

void reply_bytes(reply *r, const void *p, size_t len)
{
    push_frame *f = s_next(r);
    if (f) {
        f->data = len ? p : "";
        f->size = len;
    }
}

void reply_str(reply *r, const char *s)
{
    reply_bytes(r, s ? s : "", s ? strlen(s) : 0);
}

void reply_u64(reply *r, uint64_t v)
{
    if (r->count >= r->cap) {
        r->failed = 1;
        return;
    }
    char *slot = r->num[r->count];
    int n = push_fmt_u64(slot, v);
    reply_bytes(r, slot, (size_t)n);
}

void reply_frames(reply *r, const push_frame *f, int n)
{
    for (int i = 0; i < n; i++)
        reply_bytes(r, f[i].data, f[i].size);
}

void reply_take(reply *r, char *s)
{
    if (!s || r->count >= r->cap) {
        free(s);
        r->failed = 1;
        return;
    }
    r->owned[r->nowned++] = s;
    reply_str(r, s);
}

void reply_copy(reply *r, const char *s)
{
    reply_take(r, strdup(s ? s : ""));
}

static int s_is_own(const reply *r, const push_frame *f)
{
    uintptr_t p = (uintptr_t)f->data;
    if (f->size == 0)
        return 1;   /* nothing to keep; "" is static */
    if (p >= (uintptr_t)r->num && p < (uintptr_t)(r->num + r->cap))
        return 1;
    for (int i = 0; i < r->nowned; i++)
        if (f->data == r->owned[i])
            return 1;
    return 0;
}

int reply_own(reply *r)
{
    size_t total = 0;
    for (int i = 0; i < r->count; i++)
        if (!s_is_own(r, &r->frame[i]))
            total += r->frame[i].size;
    if (total == 0)
        return 0;
    /* a borrowed frame exists, so fewer than count <= cap blocks are owned */
    char *block = malloc(total);
    if (!block) {
        errno = ENOMEM;
        return -1;
    }
    char *at = block;
    for (int i = 0; i < r->count; i++) {
        push_frame *f = &r->frame[i];
        if (s_is_own(r, f))
            continue;
        memcpy(at, f->data, f->size);
        f->data = at;
        at += f->size;
    }
    r->owned[r->nowned++] = block;
    return 0;
}

int reply_send(reply *r, void *socket)
{
    if (r->failed || r->count == 0) {
        errno = EINVAL;
        return -1;
    }
    return push_send_frames(socket, r->frame, r->count, ZMQ_DONTWAIT);
}
