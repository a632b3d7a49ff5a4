/*
 * outbuf.c — the output buffer of a detached connection; see outbuf.h.
 */
#include "outbuf.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define CHUNK_LINE_MAX 10     /* "ffffffff\r\n": reserved before a chunk's data */

static int s_reserve(push_outbuf *o, size_t more)
{
    if (o->len + more <= o->cap)
        return 0;
    size_t cap = o->cap ? o->cap : 512;
    while (cap < o->len + more)
        cap *= 2;
    char *b = realloc(o->buf, cap);
    if (!b)
        return -1;
    o->buf = b;
    o->cap = cap;
    return 0;
}

int push_outbuf_append(push_outbuf *o, int chunked, const char *data, size_t len)
{
    if (s_reserve(o, len + CHUNK_LINE_MAX) < 0)
        return -1;
    if (chunked && !o->in_chunk) {
        o->chunk_at = o->len;
        o->len += CHUNK_LINE_MAX;
        o->in_chunk = 1;
    }
    if (len)
        memcpy(o->buf + o->len, data, len);
    o->len += len;
    return 0;
}

/* The size line goes right before the data; the unused part of the
 * reservation is squeezed out (or skipped, when nothing before it waits). */
int push_outbuf_close_chunk(push_outbuf *o)
{
    if (!o->in_chunk)
        return 0;
    if (s_reserve(o, 2) < 0)
        return -1;
    o->in_chunk = 0;
    size_t data_len = o->len - o->chunk_at - CHUNK_LINE_MAX;
    char line[CHUNK_LINE_MAX + 1];
    size_t n = (size_t)snprintf(line, sizeof line, "%zx\r\n", data_len);
    size_t gap = CHUNK_LINE_MAX - n;
    memcpy(o->buf + o->chunk_at + gap, line, n);
    if (o->chunk_at == o->off)
        o->off += gap;
    else {
        memmove(o->buf + o->chunk_at, o->buf + o->chunk_at + gap, n + data_len);
        o->len -= gap;
    }
    memcpy(o->buf + o->len, "\r\n", 2);
    o->len += 2;
    return 0;
}

int push_outbuf_send(push_outbuf *o, int fd, uint64_t *sent)
{
    size_t end = o->in_chunk ? o->chunk_at : o->len;
    uint64_t total = 0;
    int rc = 0;
    while (o->off < end) {
        ssize_t n = send(fd, o->buf + o->off, end - o->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
            break;
        }
        o->off += (size_t)n;
        total += (uint64_t)n;
    }
    if (sent)
        *sent = total;
    if (rc == 0 && o->off == o->len)
        push_outbuf_free(o);
    return rc;
}

int push_outbuf_pending(const push_outbuf *o)
{
    return o->off < o->len;
}

void push_outbuf_free(push_outbuf *o)
{
    free(o->buf);
    memset(o, 0, sizeof *o);
}
