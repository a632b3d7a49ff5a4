/*
 * utf8.h — incremental UTF-8 validation (RFC 3629; Unicode Table 3-7,
 * "well-formed byte sequences").  Pure C, no Apache.
 *
 * A WebSocket text message may arrive in fragments cut anywhere, even in
 * the middle of a character, and RFC 6455 §8.1 wants the connection failed
 * as soon as the text is known to be invalid.  So the validator keeps a
 * few bytes of state between calls instead of needing the whole text.
 *
 * Contract:
 *   - feeding a text in any number of pieces, cut anywhere, gives exactly
 *     the verdict of feeding it whole;
 *   - push_utf8_feed reports -1 at the first byte that cannot begin or
 *     continue a well-formed sequence: overlong forms (C0, C1, E0 80..9F,
 *     F0 80..8F), surrogates (ED A0..BF), code points above U+10FFFF
 *     (F4 90..BF, F5..FF), a continuation byte where none is expected, or a
 *     non-continuation byte where one is;
 *   - once invalid, the state stays invalid (every later feed returns -1);
 *   - a text that ends inside a character is not invalid yet, only not
 *     complete: check push_utf8_complete at the end of the message.
 * No allocation, no failure other than the verdict.
 */
#ifndef PUSH_UTF8_H
#define PUSH_UTF8_H

#include <stddef.h>
#include <stdint.h>

typedef struct push_utf8_state {
    uint8_t need;   /* continuation bytes still expected for this character */
    uint8_t lo;     /* allowed range of the next continuation byte */
    uint8_t hi;
    uint8_t bad;    /* sticky: an invalid byte has been seen */
} push_utf8_state;

/* Start of a text: nothing seen, on a character boundary. */
void push_utf8_init(push_utf8_state *st);

/* Validate len more bytes of the text.  Returns 0 when the text is valid
 * so far (possibly ending inside a character), -1 when it is invalid. */
int push_utf8_feed(push_utf8_state *st, const void *data, size_t len);

/* 1 when everything fed so far is valid and ends on a character boundary
 * (the empty text included), 0 otherwise. */
int push_utf8_complete(const push_utf8_state *st);

/* One-shot: 1 when data[0..len) is complete, valid UTF-8, 0 otherwise. */
int push_utf8_valid(const void *data, size_t len);

#endif
