/*
 * sse_format.c — see sse_format.h.
 */
#include "sse_format.h"
#include "push_proto.h"

#include <stdlib.h>
#include <string.h>

static size_t s_lines(const char *data, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++) {
        if (data[i] == '\n')
            n++;
        else if (data[i] == '\r') {
            n++;
            if (i + 1 < len && data[i + 1] == '\n')
                i++;
        }
    }
    return n;
}

char *push_sse_encode(uint64_t id, const char *event, const char *data, size_t len,
                      size_t *out_len)
{
    size_t evlen = event ? strlen(event) : 0;
    /* "id: " 20 digits "\n" + "event: " ev "\n" + per line "data: " "\n" + "\n" */
    size_t cap = 4 + 20 + 1 + (event ? 7 + evlen + 1 : 0) + s_lines(data, len) * 7 + len + 1;
    char *buf = malloc(cap), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, "id: ", 4);
    p += 4;
    p += push_fmt_u64(p, id);
    *p++ = '\n';
    if (event) {
        memcpy(p, "event: ", 7);
        p += 7;
        memcpy(p, event, evlen);
        p += evlen;
        *p++ = '\n';
    }
    size_t start = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && data[i] != '\n' && data[i] != '\r')
            continue;
        memcpy(p, "data: ", 6);
        p += 6;
        memcpy(p, data + start, i - start);
        p += i - start;
        *p++ = '\n';
        if (i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        start = i + 1;
    }
    *p++ = '\n';
    *out_len = (size_t)(p - buf);
    return buf;
}
