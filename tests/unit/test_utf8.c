/*
 * test_utf8.c — unit tests for mod_push/utf8.c: known good and bad
 * sequences, rejection at the earliest byte, stickiness, any split giving
 * the one-shot verdict, and an exhaustive comparison with an independent
 * reference (code point arithmetic instead of byte ranges) over every
 * sequence of up to 3 bytes and a large sample of 4-byte ones.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "utf8.h"

/* ---- reference ------------------------------------------------------------ */

/* Verdict on b[0..n) by decoding code points: 1 valid and complete, 0 valid
 * so far but ending inside a character that can still be completed, -1
 * invalid (no continuation can make it valid). */
static int s_ref(const uint8_t *b, size_t n)
{
    static const uint32_t min_cp[4] = { 0, 0x80, 0x800, 0x10000 };
    size_t i = 0;
    while (i < n) {
        uint8_t c = b[i];
        int k = c < 0x80 ? 0 : c >= 0xF0 && c < 0xF8 ? 3 : c >= 0xE0 && c < 0xF0 ? 2
              : c >= 0xC0 && c < 0xE0 ? 1 : -1;
        if (k < 0)
            return -1;
        uint32_t cp = k == 0 ? c : c & (0x3Fu >> k);
        int have = 0;
        for (; have < k && i + 1 + have < n; have++) {
            uint8_t t = b[i + 1 + have];
            if ((t & 0xC0) != 0x80)
                return -1;
            cp = cp << 6 | (t & 0x3F);
        }
        /* the code points this character can still become */
        int missing = k - have;
        uint32_t lo = cp << (6 * missing), hi = lo | ((1u << (6 * missing)) - 1);
        if (lo < min_cp[k])
            lo = min_cp[k];
        if (hi > 0x10FFFF)
            hi = 0x10FFFF;
        if (lo > hi || (lo >= 0xD800 && hi <= 0xDFFF))
            return -1;
        if (missing)
            return 0;
        i += 1 + (size_t)k;
    }
    return 1;
}

/* The validator against the reference after every byte of b. */
static void s_check_incremental(const uint8_t *b, size_t n)
{
    push_utf8_state st;
    push_utf8_init(&st);
    for (size_t i = 0; i < n; i++) {
        int ref = s_ref(b, i + 1);
        int got = push_utf8_feed(&st, b + i, 1);
        if ((ref < 0) != (got < 0) || (ref == 1) != push_utf8_complete(&st))
            fail_msg("bytes %02x %02x %02x %02x, prefix %zu: ref %d, feed %d, complete %d",
                     b[0], n > 1 ? b[1] : 0, n > 2 ? b[2] : 0, n > 3 ? b[3] : 0, i + 1, ref,
                     got, push_utf8_complete(&st));
    }
    if (push_utf8_valid(b, n) != (s_ref(b, n) == 1))
        fail_msg("one-shot differs on %zu bytes starting %02x", n, b[0]);
}

/* ---- helpers -------------------------------------------------------------- */

#define VALID(lit)   assert_int_equal(push_utf8_valid((lit), sizeof(lit) - 1), 1)
#define INVALID(lit) assert_int_equal(push_utf8_valid((lit), sizeof(lit) - 1), 0)

/* Feeding s cut at every pair of positions gives the one-shot verdict. */
static void s_check_splits(const char *s, size_t n)
{
    int whole = push_utf8_valid(s, n);
    for (size_t a = 0; a <= n; a++) {
        for (size_t b = a; b <= n; b++) {
            push_utf8_state st;
            push_utf8_init(&st);
            push_utf8_feed(&st, s, a);
            push_utf8_feed(&st, s + a, b - a);
            int rc = push_utf8_feed(&st, s + b, n - b);
            assert_int_equal(rc == 0 && push_utf8_complete(&st), whole);
        }
    }
}

/* Feeding bytes one at a time: index of the first byte reported invalid,
 * or -1. */
static long s_first_bad(const char *s, size_t n)
{
    push_utf8_state st;
    push_utf8_init(&st);
    for (size_t i = 0; i < n; i++)
        if (push_utf8_feed(&st, s + i, 1) != 0)
            return (long)i;
    return -1;
}

/* ---- tests ---------------------------------------------------------------- */

static void test_valid_text(void **state)
{
    (void)state;
    assert_int_equal(push_utf8_valid("", 0), 1);
    assert_int_equal(push_utf8_valid(NULL, 0), 1);
    VALID("hello, world");
    VALID("\x00");                              /* NUL is a character */
    VALID("\x7f");
    VALID("\xc2\x80");                          /* U+0080 */
    VALID("\xdf\xbf");                          /* U+07FF */
    VALID("\xe0\xa0\x80");                      /* U+0800 */
    VALID("\xed\x9f\xbf");                      /* U+D7FF, just below the surrogates */
    VALID("\xee\x80\x80");                      /* U+E000, just above them */
    VALID("\xef\xbf\xbf");                      /* U+FFFF */
    VALID("\xf0\x90\x80\x80");                  /* U+10000 */
    VALID("\xf4\x8f\xbf\xbf");                  /* U+10FFFF */
    VALID("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5");   /* κόσμε */
    VALID("\xef\xbb\xbf BOM and \xe2\x82\xac euro and \xf0\x9f\x98\x80 face");
}

static void test_invalid_text(void **state)
{
    (void)state;
    INVALID("\x80");                            /* lone continuation */
    INVALID("\xbf");
    INVALID("\xc0\x80");                        /* overlong NUL */
    INVALID("\xc1\xbf");                        /* overlong U+007F */
    INVALID("\xe0\x80\x80");                    /* overlong */
    INVALID("\xe0\x9f\xbf");                    /* overlong U+07FF */
    INVALID("\xf0\x80\x80\x80");                /* overlong */
    INVALID("\xf0\x8f\xbf\xbf");                /* overlong U+FFFF */
    INVALID("\xed\xa0\x80");                    /* U+D800 */
    INVALID("\xed\xbf\xbf");                    /* U+DFFF */
    INVALID("\xed\xa0\x80\xed\xb0\x80");        /* surrogate pair, CESU-8 */
    INVALID("\xf4\x90\x80\x80");                /* U+110000 */
    INVALID("\xf5\x80\x80\x80");
    INVALID("\xf8\x88\x80\x80\x80");            /* 5-byte form */
    INVALID("\xfe");
    INVALID("\xff");
    INVALID("\xc2\x41");                        /* continuation missing */
    INVALID("\xe2\x82\x41");
    INVALID("\xf0\x9f\x98\x41");
    INVALID("\xc2");                            /* truncated */
    INVALID("\xe2\x82");
    INVALID("\xf0\x9f\x98");
    INVALID("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited");
}

static void test_fails_at_earliest_byte(void **state)
{
    (void)state;
    assert_int_equal(s_first_bad("\xc0\x80", 2), 0);
    assert_int_equal(s_first_bad("\xf5", 1), 0);
    assert_int_equal(s_first_bad("ab\x80", 3), 2);
    assert_int_equal(s_first_bad("\xe0\x80\x80", 3), 1);     /* overlong known at byte 2 */
    assert_int_equal(s_first_bad("\xed\xa0\x80", 3), 1);     /* surrogate known at byte 2 */
    assert_int_equal(s_first_bad("\xf0\x8f\x80\x80", 4), 1);
    assert_int_equal(s_first_bad("\xf4\x90\x80\x80", 4), 1); /* > U+10FFFF known at byte 2 */
    assert_int_equal(s_first_bad("\xf0\x9f\x98\x41", 4), 3);
    assert_int_equal(s_first_bad("\xe2\x82", 2), -1);        /* incomplete is not invalid */
}

static void test_incomplete_is_not_complete(void **state)
{
    (void)state;
    push_utf8_state st;
    push_utf8_init(&st);
    assert_int_equal(push_utf8_complete(&st), 1);
    assert_int_equal(push_utf8_feed(&st, "\xf0\x9f", 2), 0);
    assert_int_equal(push_utf8_complete(&st), 0);
    assert_int_equal(push_utf8_feed(&st, "\x98", 1), 0);
    assert_int_equal(push_utf8_complete(&st), 0);
    assert_int_equal(push_utf8_feed(&st, "\x80", 1), 0);
    assert_int_equal(push_utf8_complete(&st), 1);
    assert_int_equal(push_utf8_feed(&st, "", 0), 0);
    assert_int_equal(push_utf8_complete(&st), 1);
}

static void test_invalid_is_sticky(void **state)
{
    (void)state;
    push_utf8_state st;
    push_utf8_init(&st);
    assert_int_equal(push_utf8_feed(&st, "ok", 2), 0);
    assert_int_equal(push_utf8_feed(&st, "\xff", 1), -1);
    assert_int_equal(push_utf8_complete(&st), 0);
    assert_int_equal(push_utf8_feed(&st, "fine again", 10), -1);
    assert_int_equal(push_utf8_feed(&st, "", 0), -1);
    assert_int_equal(push_utf8_complete(&st), 0);
    push_utf8_init(&st);
    assert_int_equal(push_utf8_feed(&st, "fine again", 10), 0);
}

static void test_any_split_gives_same_verdict(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5",
        "a\xf0\x9f\x98\x80z\xe2\x82\xac",
        "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80" "edited",
        "\xf4\x8f\xbf\xbf\xf4\x90\x80\x80",
        "\xe2\x82",
        "abc\xc2",
        "\xc2\xa9 2024",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        s_check_splits(texts[i], strlen(texts[i]));
}

/* The ASCII fast path reads 8 bytes at a time: a bad byte at any offset
 * and alignment must still be seen, and multi-byte characters right after
 * long ASCII runs must still be decoded. */
static void test_ascii_runs(void **state)
{
    (void)state;
    char buf[80];
    for (size_t bad = 0; bad < 40; bad++) {
        for (size_t start = 0; start < 8; start++) {
            memset(buf, 'x', sizeof buf);
            buf[start + bad] = (char)0x80;
            assert_int_equal(s_first_bad(buf + start, 60), (long)bad);
            assert_int_equal(push_utf8_valid(buf + start, 60), 0);
            memcpy(buf + start + bad, "\xe2\x82\xac", 3);
            assert_int_equal(push_utf8_valid(buf + start, 60), 1);
        }
    }
}

/* Every sequence of 1, 2 and 3 bytes, byte by byte, against the reference. */
static void test_exhaustive_up_to_3_bytes(void **state)
{
    (void)state;
    uint8_t b[3];
    for (unsigned x = 0; x < 256; x++) {
        b[0] = (uint8_t)x;
        s_check_incremental(b, 1);
        for (unsigned y = 0; y < 256; y++) {
            b[1] = (uint8_t)y;
            s_check_incremental(b, 2);
            for (unsigned z = 0; z < 256; z++) {
                b[2] = (uint8_t)z;
                s_check_incremental(b, 3);
            }
        }
    }
}

/* 4-byte sequences: every first and second byte, the interesting values
 * of the last two (the edges of the continuation range and a few others). */
static void test_4_byte_sample(void **state)
{
    (void)state;
    static const uint8_t edge[] = { 0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
                                    0xc0, 0xc2, 0xe0, 0xf0, 0xff };
    const size_t ne = sizeof edge;
    uint8_t b[4];
    for (unsigned x = 0; x < 256; x++) {
        for (unsigned y = 0; y < 256; y++) {
            for (size_t i = 0; i < ne; i++) {
                for (size_t j = 0; j < ne; j++) {
                    b[0] = (uint8_t)x;
                    b[1] = (uint8_t)y;
                    b[2] = edge[i];
                    b[3] = edge[j];
                    s_check_incremental(b, 4);
                }
            }
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_text),
        cmocka_unit_test(test_invalid_text),
        cmocka_unit_test(test_fails_at_earliest_byte),
        cmocka_unit_test(test_incomplete_is_not_complete),
        cmocka_unit_test(test_invalid_is_sticky),
        cmocka_unit_test(test_any_split_gives_same_verdict),
        cmocka_unit_test(test_ascii_runs),
        cmocka_unit_test(test_exhaustive_up_to_3_bytes),
        cmocka_unit_test(test_4_byte_sample),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
