/*
 * test_ws_deflate.c — unit tests for mod_push/ws_deflate.c: the RFC 7692
 * §7.2.3 examples byte for byte, round trips for every window size with
 * and without context takeover, empty messages, the output limit, corrupt
 * input, the window limit, stickiness after errors, and the negotiation of
 * Sec-WebSocket-Extensions offers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ws_deflate.h"

/* ---- helpers ---------------------------------------------------------------- */

#define HELLO_Z   "\xf2\x48\xcd\xc9\xc9\x07\x00"     /* RFC 7692 §7.2.3.1 */
#define HELLO_Z2  "\xf2\x00\x11\x00\x00"             /* §7.2.3.2, window shared */

static void s_expect_compress(push_ws_compressor *c, const char *in, size_t len,
                              const char *want, size_t want_len)
{
    unsigned char *out = (unsigned char *)"x";
    size_t out_len = 99;
    assert_int_equal(push_ws_compress(c, in, len, &out, &out_len), PUSH_WS_DEFLATE_OK);
    assert_non_null(out);
    assert_int_equal(out_len, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

#define COMPRESS(c, in, want) \
    s_expect_compress((c), (in), sizeof(in) - 1, (want), sizeof(want) - 1)

static void s_expect_inflate(push_ws_decompressor *d, const char *in, size_t len,
                             const char *want, size_t want_len)
{
    unsigned char *out = NULL;
    size_t out_len = 99;
    assert_int_equal(push_ws_decompress(d, in, len, 1 << 20, &out, &out_len),
                     PUSH_WS_DEFLATE_OK);
    assert_non_null(out);
    assert_int_equal(out_len, want_len);
    assert_memory_equal(out, want, want_len);
    free(out);
}

#define INFLATE(d, in, want) \
    s_expect_inflate((d), (in), sizeof(in) - 1, (want), sizeof(want) - 1)

/* Decompression must fail with rc, leaving nothing to free. */
static void s_expect_inflate_error(push_ws_decompressor *d, const void *in, size_t len,
                                   size_t max, int rc)
{
    unsigned char *out = (unsigned char *)"x";
    size_t out_len = 99;
    assert_int_equal(push_ws_decompress(d, in, len, max, &out, &out_len), rc);
    assert_null(out);
    assert_int_equal(out_len, 0);
}

static uint32_t s_rand(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Text-like data: words from a small vocabulary, so that it compresses. */
static unsigned char *s_text(size_t len, uint32_t seed)
{
    static const char *const words[] = { "push ", "channel ", "event ", "data ", "id ",
                                         "{\"k\":", "42, ", "\xc3\xa9t\xc3\xa9 ", "\n" };
    unsigned char *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t i = 0; i < len;) {
        const char *w = words[s_rand(&seed) % 9];
        for (size_t k = 0; w[k] && i < len; k++)
            p[i++] = (unsigned char)w[k];
    }
    return p;
}

static unsigned char *s_noise(size_t len, uint32_t seed)
{
    unsigned char *p = malloc(len ? len : 1);
    assert_non_null(p);
    for (size_t i = 0; i < len; i++)
        p[i] = (unsigned char)s_rand(&seed);
    return p;
}

/* in through c then d must come back unchanged. */
static void s_round_trip(push_ws_compressor *c, push_ws_decompressor *d,
                         const unsigned char *in, size_t len)
{
    unsigned char *z = NULL, *back = NULL;
    size_t zlen = 0, blen = 0;
    assert_int_equal(push_ws_compress(c, in, len, &z, &zlen), PUSH_WS_DEFLATE_OK);
    assert_int_equal(push_ws_decompress(d, z, zlen, len, &back, &blen), PUSH_WS_DEFLATE_OK);
    assert_int_equal(blen, len);
    if (len)
        assert_memory_equal(back, in, len);
    free(z);
    free(back);
}

/* ---- the RFC 7692 examples ----------------------------------------------------- */

static void test_rfc7692_hello_compressed(void **state)
{
    (void)state;
    push_ws_compressor *c = push_ws_compressor_new(15, 0, -1);
    assert_non_null(c);
    COMPRESS(c, "Hello", HELLO_Z);
    COMPRESS(c, "Hello", HELLO_Z2);      /* refers back to the first message */
    push_ws_compressor_free(c);
}

static void test_rfc7692_hello_decompressed(void **state)
{
    (void)state;
    push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
    assert_non_null(d);
    INFLATE(d, HELLO_Z, "Hello");
    INFLATE(d, HELLO_Z2, "Hello");
    /* §7.2.3.3: a stored (uncompressed) block */
    INFLATE(d, "\x00\x05\x00\xfa\xff" "Hello" "\x00", "Hello");
    /* §7.2.3.4: a block with BFINAL set, followed by the extra 00 */
    INFLATE(d, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", "Hello");
    /* §7.2.3.5: two blocks in one message */
    INFLATE(d, "\xf2\x48\x05\x00\x00\x00\xff\xff\xca\xc9\xc9\x07\x00", "Hello");
    push_ws_decompressor_free(d);
}

/* After a BFINAL block the LZ77 window is still there for the next
 * message: "Hello" again as a back-reference. */
static void test_bfinal_keeps_window(void **state)
{
    (void)state;
    for (int extra = 0; extra < 2; extra++) {
        push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
        assert_non_null(d);
        /* with the 00 RFC 7692 asks for, and without it */
        s_expect_inflate(d, "\xf3\x48\xcd\xc9\xc9\x07\x00\x00", 7 + (size_t)extra, "Hello", 5);
        INFLATE(d, HELLO_Z2, "Hello");
        push_ws_decompressor_free(d);
    }
}

/* ---- context takeover -------------------------------------------------------------- */

static void test_no_context_takeover(void **state)
{
    (void)state;
    push_ws_compressor *c = push_ws_compressor_new(15, 1, -1);
    assert_non_null(c);
    COMPRESS(c, "Hello", HELLO_Z);
    COMPRESS(c, "Hello", HELLO_Z);       /* each message alone */
    push_ws_compressor_free(c);

    /* a decompressor without takeover cannot resolve a reference to the
     * previous message */
    push_ws_decompressor *d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    INFLATE(d, HELLO_Z, "Hello");
    s_expect_inflate_error(d, HELLO_Z2, 5, 100, PUSH_WS_DEFLATE_CORRUPT);
    push_ws_decompressor_free(d);
}

/* Without takeover the output depends only on the message: one compression
 * serves every connection with the same parameters. */
static void test_no_takeover_output_is_shareable(void **state)
{
    (void)state;
    push_ws_compressor *a = push_ws_compressor_new(12, 1, 6);
    push_ws_compressor *b = push_ws_compressor_new(12, 1, 6);
    assert_non_null(a);
    assert_non_null(b);
    unsigned char *t = s_text(5000, 7), *za, *zb;
    size_t la, lb;
    assert_int_equal(push_ws_compress(a, t, 3000, &za, &la), 0);    /* history for a only */
    free(za);
    assert_int_equal(push_ws_compress(a, t + 1000, 4000, &za, &la), 0);
    assert_int_equal(push_ws_compress(b, t + 1000, 4000, &zb, &lb), 0);
    assert_int_equal(la, lb);
    assert_memory_equal(za, zb, la);
    free(za);
    free(zb);
    free(t);
    push_ws_compressor_free(a);
    push_ws_compressor_free(b);
}

static void test_round_trips(void **state)
{
    (void)state;
    static const size_t lens[] = { 1, 5, 100, 0, 4096, 70000, 3, 200000, 0, 1000 };
    for (int bits = 9; bits <= 15; bits++) {
        for (int nt = 0; nt < 2; nt++) {
            push_ws_compressor *c = push_ws_compressor_new(bits, nt, bits % 2 ? -1 : 9);
            push_ws_decompressor *d = push_ws_decompressor_new(bits, nt);
            assert_non_null(c);
            assert_non_null(d);
            for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
                unsigned char *t = s_text(lens[i], (uint32_t)i);
                unsigned char *n = s_noise(lens[i], (uint32_t)i);
                s_round_trip(c, d, t, lens[i]);
                s_round_trip(c, d, n, lens[i]);
                s_round_trip(c, d, t, lens[i]);       /* the same again: back-references */
                free(t);
                free(n);
            }
            push_ws_compressor_free(c);
            push_ws_decompressor_free(d);
        }
    }
}

static void test_takeover_compresses_repeats(void **state)
{
    (void)state;
    unsigned char *t = s_noise(2000, 3), *z1, *z2;
    size_t l1, l2;
    push_ws_compressor *c = push_ws_compressor_new(15, 0, -1);
    assert_non_null(c);
    assert_int_equal(push_ws_compress(c, t, 2000, &z1, &l1), 0);
    assert_int_equal(push_ws_compress(c, t, 2000, &z2, &l2), 0);
    assert_true(l1 > 2000);             /* noise does not compress ... */
    assert_true(l2 < 50);               /* ... but a repeat does, across messages */
    push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
    assert_non_null(d);
    s_expect_inflate(d, (char *)z1, l1, (char *)t, 2000);
    s_expect_inflate(d, (char *)z2, l2, (char *)t, 2000);
    free(z1);
    free(z2);
    free(t);
    push_ws_compressor_free(c);
    push_ws_decompressor_free(d);
}

static void test_empty_message(void **state)
{
    (void)state;
    for (int nt = 0; nt < 2; nt++) {
        push_ws_compressor *c = push_ws_compressor_new(15, nt, -1);
        push_ws_decompressor *d = push_ws_decompressor_new(15, nt);
        assert_non_null(c);
        assert_non_null(d);
        COMPRESS(c, "", "\x00");
        COMPRESS(c, "Hello", HELLO_Z);
        COMPRESS(c, "", "\x00");
        COMPRESS(c, "", "\x00");
        if (nt)
            COMPRESS(c, "Hello", HELLO_Z);
        else
            COMPRESS(c, "Hello", HELLO_Z2);
        INFLATE(d, "\x00", "");
        INFLATE(d, HELLO_Z, "Hello");
        INFLATE(d, "", "");             /* an empty payload is an empty message */
        INFLATE(d, "\x00", "");
        if (!nt)
            INFLATE(d, HELLO_Z2, "Hello");
        push_ws_compressor_free(c);
        push_ws_decompressor_free(d);
    }
}

/* ---- limits and errors ------------------------------------------------------------- */

static void test_output_limit(void **state)
{
    (void)state;
    unsigned char *t = s_text(10000, 1), *z = NULL, *out = NULL;
    size_t zl = 0, ol = 0;
    push_ws_compressor *c = push_ws_compressor_new(15, 1, -1);
    assert_non_null(c);
    assert_int_equal(push_ws_compress(c, t, 10000, &z, &zl), 0);
    push_ws_decompressor *d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    /* exactly the limit is fine */
    assert_int_equal(push_ws_decompress(d, z, zl, 10000, &out, &ol), PUSH_WS_DEFLATE_OK);
    assert_int_equal(ol, 10000);
    free(out);
    /* one byte over is too big */
    s_expect_inflate_error(d, z, zl, 9999, PUSH_WS_DEFLATE_TOO_BIG);
    push_ws_decompressor_free(d);
    d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    s_expect_inflate_error(d, z, zl, 0, PUSH_WS_DEFLATE_TOO_BIG);
    push_ws_decompressor_free(d);
    /* the empty message fits a limit of 0 */
    d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    assert_int_equal(push_ws_decompress(d, "\x00", 1, 0, &out, &ol), PUSH_WS_DEFLATE_OK);
    assert_int_equal(ol, 0);
    free(out);
    push_ws_decompressor_free(d);
    free(z);
    free(t);
    push_ws_compressor_free(c);
}

/* 64 MiB of zeros deflate to about 64 KiB: stopped at the limit. */
static void test_decompression_bomb(void **state)
{
    (void)state;
    size_t big = (size_t)64 << 20;
    unsigned char *zeros = calloc(1, big), *z = NULL;
    size_t zl = 0;
    assert_non_null(zeros);
    push_ws_compressor *c = push_ws_compressor_new(15, 1, 9);
    assert_non_null(c);
    assert_int_equal(push_ws_compress(c, zeros, big, &z, &zl), 0);
    free(zeros);
    assert_true(zl < 128 * 1024);
    push_ws_decompressor *d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    s_expect_inflate_error(d, z, zl, 1 << 20, PUSH_WS_DEFLATE_TOO_BIG);
    push_ws_decompressor_free(d);
    free(z);
    push_ws_compressor_free(c);
}

static void test_corrupt_input(void **state)
{
    (void)state;
    static const struct { const char *data; size_t len; } bad[] = {
        { "\xff\xff\xff\xff", 4 },
        { "\x07", 1 },                          /* block type 3 is reserved */
        { "\x06\x00", 2 },
        { "\x00\x05\x00\x00\x00Hello", 10 },    /* stored block, NLEN != ~LEN */
        { "\xf2\x48\xcd", 3 },                  /* cut inside a block */
        { "\x00\x05\x00\xfa\xff" "Hel", 8 },    /* stored block cut short */
        { "\xf3\x48\xcd\xc9\xc9\x07\x00\x00\x00", 9 },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
        assert_non_null(d);
        s_expect_inflate_error(d, bad[i].data, bad[i].len, 1000, PUSH_WS_DEFLATE_CORRUPT);
        push_ws_decompressor_free(d);
    }
    /* a reference to before the start of the stream */
    push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
    assert_non_null(d);
    s_expect_inflate_error(d, HELLO_Z2, 5, 1000, PUSH_WS_DEFLATE_CORRUPT);
    push_ws_decompressor_free(d);
}

/* The inflate window is the negotiated client window: a reference into an
 * earlier message further back than it cannot be resolved.  (Within one
 * message zlib also resolves references from its output buffer, so the
 * window bounds memory there, not validity.) */
static void test_window_limit_across_messages(void **state)
{
    (void)state;
    unsigned char *n = s_noise(1500, 9), *z1 = NULL, *z2 = NULL;
    size_t l1 = 0, l2 = 0;
    push_ws_compressor *c15 = push_ws_compressor_new(15, 0, -1);
    assert_non_null(c15);
    assert_int_equal(push_ws_compress(c15, n, 1500, &z1, &l1), 0);
    assert_int_equal(push_ws_compress(c15, n, 1500, &z2, &l2), 0);  /* distance 1500 */
    assert_true(l2 < 50);
    push_ws_decompressor *d9 = push_ws_decompressor_new(9, 0);
    push_ws_decompressor *d15 = push_ws_decompressor_new(15, 0);
    assert_non_null(d9);
    assert_non_null(d15);
    s_expect_inflate(d15, (char *)z1, l1, (char *)n, 1500);
    s_expect_inflate(d15, (char *)z2, l2, (char *)n, 1500);
    s_expect_inflate(d9, (char *)z1, l1, (char *)n, 1500);
    s_expect_inflate_error(d9, z2, l2, 5000, PUSH_WS_DEFLATE_CORRUPT);
    free(z1);
    free(z2);
    push_ws_decompressor_free(d9);
    push_ws_decompressor_free(d15);
    push_ws_compressor_free(c15);
    free(n);
}

/* A client told 8 is read with a 9-bit window, which zlib-based clients
 * really use (zlib cannot deflate with 8). */
static void test_client_window_8_reads_9(void **state)
{
    (void)state;
    unsigned char *t = s_text(3000, 4), *z = NULL;
    size_t zl = 0;
    push_ws_compressor *c9 = push_ws_compressor_new(9, 0, -1);
    push_ws_decompressor *d8 = push_ws_decompressor_new(8, 0);
    assert_non_null(c9);
    assert_non_null(d8);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(push_ws_compress(c9, t + 1000 * i, 1000, &z, &zl), 0);
        s_expect_inflate(d8, (char *)z, zl, (char *)t + 1000 * i, 1000);
        free(z);
    }
    push_ws_compressor_free(c9);
    push_ws_decompressor_free(d8);
    free(t);
}

static void test_errors_are_sticky(void **state)
{
    (void)state;
    push_ws_decompressor *d = push_ws_decompressor_new(15, 0);
    assert_non_null(d);
    s_expect_inflate_error(d, "\xff\xff", 2, 1000, PUSH_WS_DEFLATE_CORRUPT);
    s_expect_inflate_error(d, HELLO_Z, 7, 1000, PUSH_WS_DEFLATE_INTERNAL);
    push_ws_decompressor_free(d);
    d = push_ws_decompressor_new(15, 1);
    assert_non_null(d);
    s_expect_inflate_error(d, HELLO_Z, 7, 4, PUSH_WS_DEFLATE_TOO_BIG);
    s_expect_inflate_error(d, HELLO_Z, 7, 1000, PUSH_WS_DEFLATE_INTERNAL);
    push_ws_decompressor_free(d);
}

static void test_constructor_arguments(void **state)
{
    (void)state;
    assert_null(push_ws_compressor_new(8, 0, -1));      /* zlib cannot */
    assert_null(push_ws_compressor_new(16, 0, -1));
    assert_null(push_ws_compressor_new(15, 0, 10));
    assert_null(push_ws_compressor_new(15, 0, -2));
    assert_null(push_ws_decompressor_new(7, 0));
    assert_null(push_ws_decompressor_new(16, 0));
    for (int bits = 8; bits <= 15; bits++) {
        push_ws_decompressor *d = push_ws_decompressor_new(bits, bits & 1);
        assert_non_null(d);
        push_ws_decompressor_free(d);
    }
    for (int level = -1; level <= 9; level++) {
        push_ws_compressor *c = push_ws_compressor_new(9 + (level + 1) % 7, 0, level);
        assert_non_null(c);
        push_ws_compressor_free(c);
    }
    push_ws_compressor_free(NULL);
    push_ws_decompressor_free(NULL);
}

/* ---- negotiation ----------------------------------------------------------------------- */

/* Negotiate and expect the response ("" for declined) and, when accepted,
 * the agreed parameters as "snct cnct sbits cbits". */
static void s_nego(const char *offers, const push_ws_deflate_config *cfg, const char *want,
                   const char *want_params)
{
    char resp[PUSH_WS_DEFLATE_RESPONSE_MAX];
    push_ws_deflate_params p = { -1, -1, -1, -1 };
    int rc = push_ws_deflate_negotiate(offers, cfg, &p, resp);
    if (strcmp(resp, want) != 0 || rc != (want[0] != '\0'))
        fail_msg("offers [%s]: rc %d response [%s], expected [%s]", offers ? offers : "(null)",
                 rc, resp, want);
    if (rc) {
        char got[64];
        snprintf(got, sizeof got, "%d %d %d %d", p.server_no_context_takeover,
                 p.client_no_context_takeover, p.server_max_window_bits,
                 p.client_max_window_bits);
        if (strcmp(got, want_params) != 0)
            fail_msg("offers [%s]: params [%s], expected [%s]", offers, got, want_params);
    }
}

#define PMD "permessage-deflate"

static void test_negotiate_browsers(void **state)
{
    (void)state;
    s_nego(NULL, NULL, "", "");
    s_nego("", NULL, "", "");
    s_nego(PMD, NULL, PMD, "0 0 15 15");                                    /* Firefox */
    s_nego(PMD "; client_max_window_bits", NULL, PMD, "0 0 15 15");         /* Chrome */
    s_nego("x-webkit-deflate-frame", NULL, "", "");
    s_nego("x-webkit-deflate-frame, " PMD "; client_max_window_bits", NULL, PMD, "0 0 15 15");
}

static void test_negotiate_parameters(void **state)
{
    (void)state;
    s_nego(PMD "; server_no_context_takeover", NULL, PMD "; server_no_context_takeover",
           "1 0 15 15");
    s_nego(PMD "; client_no_context_takeover", NULL, PMD "; client_no_context_takeover",
           "0 1 15 15");
    s_nego(PMD "; server_max_window_bits=10", NULL, PMD "; server_max_window_bits=10",
           "0 0 10 15");
    s_nego(PMD "; server_max_window_bits=15", NULL, PMD "; server_max_window_bits=15",
           "0 0 15 15");
    s_nego(PMD "; client_max_window_bits=10", NULL, PMD "; client_max_window_bits=10",
           "0 0 15 10");
    s_nego(PMD "; client_max_window_bits=8", NULL, PMD "; client_max_window_bits=8",
           "0 0 15 8");
    s_nego(PMD "; client_max_window_bits=15", NULL, PMD "; client_max_window_bits=15",
           "0 0 15 15");
    s_nego(PMD "; client_no_context_takeover; server_no_context_takeover; "
               "client_max_window_bits=9; server_max_window_bits=9",
           NULL,
           PMD "; server_no_context_takeover; client_no_context_takeover; "
               "server_max_window_bits=9; client_max_window_bits=9",
           "1 1 9 9");
    /* quoted values (RFC 6455 §9.1), escapes included */
    s_nego(PMD "; server_max_window_bits=\"12\"", NULL, PMD "; server_max_window_bits=12",
           "0 0 12 15");
    s_nego(PMD "; client_max_window_bits=\"1\\1\"", NULL, PMD "; client_max_window_bits=11",
           "0 0 15 11");
    /* whitespace around separators */
    s_nego("  " PMD " ;client_max_window_bits = 12 ;\tserver_no_context_takeover , foo ", NULL,
           PMD "; server_no_context_takeover; client_max_window_bits=12", "1 0 15 12");
}

static void test_negotiate_declines_bad_offers(void **state)
{
    (void)state;
    static const char *const bad[] = {
        PMD "; foo",
        PMD "; foo=1",
        PMD "; server_no_context_takeover; server_no_context_takeover",
        PMD "; client_no_context_takeover; client_no_context_takeover",
        PMD "; server_max_window_bits=10; server_max_window_bits=10",
        PMD "; client_max_window_bits; client_max_window_bits=10",
        PMD "; server_no_context_takeover=1",
        PMD "; client_no_context_takeover=\"\"",
        PMD "; server_max_window_bits",
        PMD "; server_max_window_bits=7",
        PMD "; server_max_window_bits=16",
        PMD "; server_max_window_bits=08",
        PMD "; server_max_window_bits=015",
        PMD "; server_max_window_bits=25",
        PMD "; client_max_window_bits=05",
        PMD "; server_max_window_bits=1.5",
        PMD "; server_max_window_bits=abc",
        PMD "; server_max_window_bits=\"\"",
        PMD "; server_max_window_bits=100000000000000000015",
        PMD "; client_max_window_bits=7",
        PMD "; client_max_window_bits=16",
        PMD "; client_max_window_bits=-9",
        PMD "; Server_No_Context_Takeover",
        "Permessage-Deflate",
        /* 8: zlib cannot compress with it, and 9 would break the RFC */
        PMD "; server_max_window_bits=8",
        PMD "; server_max_window_bits=\"8\"; client_max_window_bits",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_nego(bad[i], NULL, "", "");
}

static void test_negotiate_picks_first_acceptable(void **state)
{
    (void)state;
    s_nego(PMD "; server_max_window_bits=8, " PMD "; server_max_window_bits=9", NULL,
           PMD "; server_max_window_bits=9", "0 0 9 15");
    s_nego(PMD "; server_max_window_bits=8; client_max_window_bits, " PMD, NULL, PMD,
           "0 0 15 15");
    s_nego(PMD "; foo, " PMD "; client_no_context_takeover, " PMD, NULL,
           PMD "; client_no_context_takeover", "0 1 15 15");
    s_nego(PMD "; client_max_window_bits=10, " PMD "; client_max_window_bits=11", NULL,
           PMD "; client_max_window_bits=10", "0 0 15 10");
    s_nego("foo; bar=\"a,b\"; baz, " PMD, NULL, PMD, "0 0 15 15");
    s_nego(", ,," PMD ",", NULL, PMD, "0 0 15 15");     /* empty list elements */
}

/* When the list itself does not parse, nothing can be trusted. */
static void test_negotiate_malformed_header(void **state)
{
    (void)state;
    static const char *const bad[] = {
        PMD ";",
        PMD "; =10",
        PMD " x",
        PMD "; server_max_window_bits=\"10",
        PMD "; server_max_window_bits=",
        PMD "; server_max_window_bits=\"1\\",
        PMD ", @@",
        PMD "; client_max_window_bits, " PMD " " PMD,
        "\"" PMD "\"",
        ";" PMD,
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_nego(bad[i], NULL, "", "");
}

static void test_negotiate_with_config(void **state)
{
    (void)state;
    push_ws_deflate_config cfg = { .server_no_context_takeover = 1 };
    s_nego(PMD, &cfg, PMD "; server_no_context_takeover", "1 0 15 15");
    cfg = (push_ws_deflate_config){ .client_no_context_takeover = 1 };
    s_nego(PMD, &cfg, PMD "; client_no_context_takeover", "0 1 15 15");
    /* our own window cap may be stated unasked, and lowers an offered one */
    cfg = (push_ws_deflate_config){ .server_max_window_bits = 12 };
    s_nego(PMD, &cfg, PMD "; server_max_window_bits=12", "0 0 12 15");
    s_nego(PMD "; server_max_window_bits=14", &cfg, PMD "; server_max_window_bits=12",
           "0 0 12 15");
    s_nego(PMD "; server_max_window_bits=10", &cfg, PMD "; server_max_window_bits=10",
           "0 0 10 15");
    cfg = (push_ws_deflate_config){ .server_max_window_bits = 8 };   /* clamped to 9 */
    s_nego(PMD, &cfg, PMD "; server_max_window_bits=9", "0 0 9 15");
    /* the client's window can only be capped when it offered the parameter */
    cfg = (push_ws_deflate_config){ .client_max_window_bits = 10 };
    s_nego(PMD, &cfg, PMD, "0 0 15 15");
    s_nego(PMD "; client_max_window_bits", &cfg, PMD "; client_max_window_bits=10", "0 0 15 10");
    s_nego(PMD "; client_max_window_bits=12", &cfg, PMD "; client_max_window_bits=10",
           "0 0 15 10");
    s_nego(PMD "; client_max_window_bits=9", &cfg, PMD "; client_max_window_bits=9",
           "0 0 15 9");
    /* everything at once: the longest response fits */
    cfg = (push_ws_deflate_config){ 1, 1, 10, 9 };
    char resp[PUSH_WS_DEFLATE_RESPONSE_MAX];
    push_ws_deflate_params p;
    assert_int_equal(push_ws_deflate_negotiate(PMD "; client_max_window_bits", &cfg, &p, resp), 1);
    assert_string_equal(resp, PMD "; server_no_context_takeover; client_no_context_takeover; "
                              "server_max_window_bits=10; client_max_window_bits=9");
    assert_true(strlen(resp) < sizeof resp);
}

/* What negotiation agrees drives a working pair of codecs. */
static void test_negotiated_params_work(void **state)
{
    (void)state;
    push_ws_deflate_params p;
    char resp[PUSH_WS_DEFLATE_RESPONSE_MAX];
    assert_int_equal(push_ws_deflate_negotiate(PMD "; server_max_window_bits=11; "
                                               "client_max_window_bits=8; "
                                               "server_no_context_takeover", NULL, &p, resp), 1);
    assert_string_equal(resp, PMD "; server_no_context_takeover; server_max_window_bits=11; "
                              "client_max_window_bits=8");
    /* server to client: our compressor, a client inflating with our window */
    push_ws_compressor *sc = push_ws_compressor_new(p.server_max_window_bits,
                                                    p.server_no_context_takeover, -1);
    push_ws_decompressor *cd = push_ws_decompressor_new(p.server_max_window_bits,
                                                        p.server_no_context_takeover);
    /* client to server: a zlib client (8 means 9), our decompressor */
    push_ws_compressor *cc = push_ws_compressor_new(9, p.client_no_context_takeover, -1);
    push_ws_decompressor *sd = push_ws_decompressor_new(p.client_max_window_bits,
                                                        p.client_no_context_takeover);
    assert_non_null(sc);
    assert_non_null(cd);
    assert_non_null(cc);
    assert_non_null(sd);
    unsigned char *t = s_text(20000, 5);
    for (int i = 0; i < 3; i++) {
        s_round_trip(sc, cd, t, 20000);
        s_round_trip(cc, sd, t, 20000);
    }
    free(t);
    push_ws_compressor_free(sc);
    push_ws_compressor_free(cc);
    push_ws_decompressor_free(cd);
    push_ws_decompressor_free(sd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7692_hello_compressed),
        cmocka_unit_test(test_rfc7692_hello_decompressed),
        cmocka_unit_test(test_bfinal_keeps_window),
        cmocka_unit_test(test_no_context_takeover),
        cmocka_unit_test(test_no_takeover_output_is_shareable),
        cmocka_unit_test(test_round_trips),
        cmocka_unit_test(test_takeover_compresses_repeats),
        cmocka_unit_test(test_empty_message),
        cmocka_unit_test(test_output_limit),
        cmocka_unit_test(test_decompression_bomb),
        cmocka_unit_test(test_corrupt_input),
        cmocka_unit_test(test_window_limit_across_messages),
        cmocka_unit_test(test_client_window_8_reads_9),
        cmocka_unit_test(test_errors_are_sticky),
        cmocka_unit_test(test_constructor_arguments),
        cmocka_unit_test(test_negotiate_browsers),
        cmocka_unit_test(test_negotiate_parameters),
        cmocka_unit_test(test_negotiate_declines_bad_offers),
        cmocka_unit_test(test_negotiate_picks_first_acceptable),
        cmocka_unit_test(test_negotiate_malformed_header),
        cmocka_unit_test(test_negotiate_with_config),
        cmocka_unit_test(test_negotiated_params_work),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
