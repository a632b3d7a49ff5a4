/*
 * reply.c — see reply.h.
 */
#include "reply.h"

#include <errno.h>
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

int reply_send(reply *r, void *socket)
{
    if (r->failed || r->count == 0) {
        errno = EINVAL;
        return -1;
    }
    return push_send_frames(socket, r->frame, r->count, ZMQ_DONTWAIT);
}
