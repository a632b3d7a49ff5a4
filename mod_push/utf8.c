/*
 * utf8.c — see utf8.h.
 *
 * The state machine is Unicode Table 3-7 read left to right: the lead
 * byte fixes how many continuation bytes follow and, for the four lead
 * bytes where overlongs, surrogates or values above U+10FFFF hide in the
 * second byte, narrows the range of that second byte.  Every later
 * continuation byte is plain 80..BF.  This rejects at the earliest byte
 * that makes the sequence impossible, which is what RFC 6455 §8.1 asks.
 */
#include "utf8.h"

#include <string.h>

void push_utf8_init(push_utf8_state *st)
{
    st->need = 0;
    st->lo = 0x80;
    st->hi = 0xBF;
    st->bad = 0;
}

/* Lead byte: how many continuation bytes follow and the range allowed for
 * the first of them.  Returns 0 for a byte that can never start a
 * character (continuation bytes, C0/C1 overlongs, F5..FF). */
static int s_lead(push_utf8_state *st, uint8_t b)
{
    st->lo = 0x80;
    st->hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
        st->need = 1;
    } else if (b >= 0xE0 && b <= 0xEF) {
        st->need = 2;
        if (b == 0xE0)
            st->lo = 0xA0;          /* below: overlong (< U+0800) */
        else if (b == 0xED)
            st->hi = 0x9F;          /* above: surrogates U+D800..DFFF */
    } else if (b >= 0xF0 && b <= 0xF4) {
        st->need = 3;
        if (b == 0xF0)
            st->lo = 0x90;          /* below: overlong (< U+10000) */
        else if (b == 0xF4)
            st->hi = 0x8F;          /* above: > U+10FFFF */
    } else {
        return 0;
    }
    return 1;
}

/* Length of the run of ASCII bytes at p, the common case of text, checked
 * eight bytes at a time. */
static size_t s_ascii_run(const uint8_t *p, size_t len)
{
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        if (w & UINT64_C(0x8080808080808080))
            break;
    }
    while (i < len && p[i] < 0x80)
        i++;
    return i;
}

int push_utf8_feed(push_utf8_state *st, const void *data, size_t len)
{
    const uint8_t *p = data;
    size_t i = 0;
    while (!st->bad && i < len) {
        if (st->need == 0) {
            i += s_ascii_run(p + i, len - i);
            if (i == len)
                break;
            if (!s_lead(st, p[i++]))
                st->bad = 1;
            continue;
        }
        uint8_t b = p[i++];
        if (b < st->lo || b > st->hi) {
            st->bad = 1;
            continue;
        }
        st->need--;
        st->lo = 0x80;
        st->hi = 0xBF;
    }
    return st->bad ? -1 : 0;
}

int push_utf8_complete(const push_utf8_state *st)
{
    return !st->bad && st->need == 0;
}

int push_utf8_valid(const void *data, size_t len)
{
    push_utf8_state st;
    push_utf8_init(&st);
    return push_utf8_feed(&st, data, len) == 0 && push_utf8_complete(&st);
}
