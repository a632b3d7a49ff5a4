/*
 * jsonesc.c — see jsonesc.h.
 */
#include "jsonesc.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>

#include "push_proto.h"

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0.
 * Rejects overlong forms, surrogates and code points above U+10FFFF. */
static size_t s_utf8_len(const unsigned char *p, size_t n)
{
    unsigned char c = p[0];
    size_t len;
    uint32_t cp, min;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)      { len = 2; cp = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; cp = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; cp = c & 0x07; min = 0x10000; }
    else
        return 0;
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* Writes the escaped form of one ASCII byte; returns its length. */
static size_t s_escape_ascii(unsigned char c, char *out)
{
    static const char named[] = "\"\"\\\\\bb\ff\nn\rr\tt";
    for (size_t i = 0; i < sizeof named - 1; i += 2)
        if ((unsigned char)named[i] == c) {
            out[0] = '\\';
            out[1] = named[i + 1];
            return 2;
        }
    if (c < 0x20 || c == 0x7f) {
        snprintf(out, 7, "\\u%04x", c);
        return 6;
    }
    out[0] = (char)c;
    return 1;
}

char *json_quote(const void *data, size_t len)
{
    const unsigned char *p = data;
    /* worst case: every byte becomes \u0000 (6 bytes) */
    if (len > (SIZE_MAX - 3) / 6)
        return NULL;
    char *out = malloc(len * 6 + 3);
    if (!out)
        return NULL;
    size_t o = 0;
    out[o++] = '"';
    for (size_t i = 0; i < len;) {
        size_t n = p[i] < 0x80 ? 1 : s_utf8_len(p + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);   /* U+FFFD */
            o += 3;
            i++;
        } else if (n == 1) {
            o += s_escape_ascii(p[i], out + o);
            i++;
        } else {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        }
    }
    out[o++] = '"';
    out[o] = '\0';
    return out;
}

cJSON *json_add_u64(cJSON *obj, const char *key, uint64_t v)
{
    char buf[24];
    push_fmt_u64(buf, v);
    return cJSON_AddRawToObject(obj, key, buf);
}
