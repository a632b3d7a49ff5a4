/*
 * poll_format.c — see poll_format.h.
 */
#include "poll_format.h"
#include "push_proto.h"

#include <stdlib.h>
#include <string.h>

size_t push_json_str_max(size_t len)
{
    return len * 6 + 2;   /* worst case: every byte as \u00XX or \ufffd */
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when invalid. */
static size_t s_utf8_len(const unsigned char *s, size_t left)
{
    size_t n;
    unsigned min;
    unsigned cp;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0) { n = 2; min = 0x80; cp = s[0] & 0x1f; }
    else if ((s[0] & 0xf0) == 0xe0) { n = 3; min = 0x800; cp = s[0] & 0x0f; }
    else if ((s[0] & 0xf8) == 0xf0) { n = 4; min = 0x10000; cp = s[0] & 0x07; }
    else
        return 0;
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

size_t push_json_str(char *buf, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    char *p = buf;
    *p++ = '"';
    for (size_t i = 0; i < len;) {
        unsigned char ch = s[i];
        if (ch == '"' || ch == '\\') {
            *p++ = '\\';
            *p++ = (char)ch;
            i++;
        }
        else if (ch == '\n') { memcpy(p, "\\n", 2); p += 2; i++; }
        else if (ch == '\r') { memcpy(p, "\\r", 2); p += 2; i++; }
        else if (ch == '\t') { memcpy(p, "\\t", 2); p += 2; i++; }
        else if (ch < 0x20) {
            memcpy(p, "\\u00", 4);
            p[4] = hex[ch >> 4];
            p[5] = hex[ch & 15];
            p += 6;
            i++;
        }
        else {
            size_t n = s_utf8_len(s + i, len - i);
            if (n == 0) {
                memcpy(p, "\\ufffd", 6);
                p += 6;
                i++;
            }
            else {
                memcpy(p, s + i, n);
                p += n;
                i += n;
            }
        }
    }
    *p++ = '"';
    return (size_t)(p - buf);
}

char *push_json_msg_encode(uint64_t id, const char *event, const char *data, size_t len,
                           uint64_t time_us, size_t *out_len)
{
    size_t evlen = event ? strlen(event) : 0;
    size_t cap = 64 + push_json_str_max(evlen) + push_json_str_max(len) + 2 * 21;
    char *buf = malloc(cap), *p = buf;
    if (!buf)
        return NULL;
    memcpy(p, "{\"id\":", 6);
    p += 6;
    p += push_fmt_u64(p, id);
    memcpy(p, ",\"event\":", 9);
    p += 9;
    if (event)
        p += push_json_str(p, event, evlen);
    else {
        memcpy(p, "null", 4);
        p += 4;
    }
    memcpy(p, ",\"data\":", 8);
    p += 8;
    p += push_json_str(p, data, len);
    memcpy(p, ",\"time\":", 8);
    p += 8;
    p += push_fmt_u64(p, time_us);
    *p++ = '}';
    *p = '\0';
    *out_len = (size_t)(p - buf);
    return buf;
}
