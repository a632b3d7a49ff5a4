/*
 * test_ws_frame.c — unit tests for mod_push/ws_frame.c: every parser rule
 * with its exact close code, reassembly, interleaved control frames,
 * incremental UTF-8 across fragments, length encodings and their
 * boundaries, the message size limit, close frames, stickiness, the
 * encoder and the handshake helpers.
 *
 * Every stream is parsed three ways — all at once, one byte at a time and
 * in pseudo-random pieces — and the three must agree on the units
 * delivered and on the result.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "ws_frame.h"

/* ---- building client streams ------------------------------------------------ */

#define FIN  0x80
#define RSV1 0x40
#define RSV2 0x20
#define RSV3 0x10

typedef struct stream {
    unsigned char *b;
    size_t         len, cap;
} stream;

static void s_put_bytes(stream *s, const void *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 64;
        s->b = realloc(s->b, s->cap);
        assert_non_null(s->b);
    }
    if (n)
        memcpy(s->b + s->len, p, n);
    s->len += n;
}

static void s_put_byte(stream *s, unsigned v)
{
    unsigned char c = (unsigned char)v;
    s_put_bytes(s, &c, 1);
}

static const unsigned char s_mask[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* A frame with the length in the given form: 0 shortest, else 7, 16 or 64
 * bits; masked unless unmasked is set. */
static void s_frame_ex(stream *s, unsigned b0, const void *payload, uint64_t len,
                       int form, int unmasked)
{
    unsigned mbit = unmasked ? 0 : 0x80;
    if (form == 0)
        form = len < 126 ? 7 : len <= 0xFFFF ? 16 : 64;
    s_put_byte(s, b0);
    if (form == 7) {
        s_put_byte(s, mbit | (unsigned)len);
    } else {
        int n = form == 16 ? 2 : 8;
        s_put_byte(s, mbit | (form == 16 ? 126u : 127u));
        for (int i = n - 1; i >= 0; i--)
            s_put_byte(s, (unsigned)(len >> (8 * i)) & 0xFF);
    }
    if (!unmasked)
        s_put_bytes(s, s_mask, 4);
    const unsigned char *p = payload;
    for (uint64_t i = 0; p && i < len; i++)
        s_put_byte(s, p[i] ^ (unmasked ? 0 : s_mask[i & 3]));
}

static void s_frame(stream *s, unsigned b0, const void *payload, size_t len)
{
    s_frame_ex(s, b0, payload, len, 0, 0);
}

#define FRAME(s, b0, lit) s_frame((s), (b0), (lit), sizeof(lit) - 1)

/* ---- recording what the parser delivers --------------------------------------- */

typedef struct rec {
    char  *log;          /* one line per unit */
    size_t len, cap;
    int    count;
    int    stop_at;      /* return stop_rc on this unit (1-based), 0: never */
    int    stop_rc;
} rec;

static void s_log(rec *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (r->len + (size_t)n + 1 > r->cap) {
        r->cap = (r->len + (size_t)n + 1) * 2;
        r->log = realloc(r->log, r->cap);
        assert_non_null(r->log);
    }
    va_start(ap, fmt);
    vsnprintf(r->log + r->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    r->len += (size_t)n;
}

static const char *const s_opname[16] = {
    [PUSH_WS_OP_TEXT] = "text", [PUSH_WS_OP_BINARY] = "binary", [PUSH_WS_OP_CLOSE] = "close",
    [PUSH_WS_OP_PING] = "ping", [PUSH_WS_OP_PONG] = "pong",
};

/* Control bytes as \xHH, so that logs are C strings; UTF-8 stays as is. */
static void s_log_bytes(rec *r, const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] < 0x20 || p[i] == 0x7f)
            s_log(r, "\\x%02x", p[i]);
        else
            s_log(r, "%c", p[i]);
    }
}

/* Logs a unit as "op[z] len:payload" with long payloads summarised by a
 * checksum, so that logs stay small and comparable. */
static int s_on_unit(void *arg, const push_ws_unit *u)
{
    rec *r = arg;
    assert_non_null(u->data);
    r->count++;
    s_log(r, "%s%s %zu:", s_opname[u->opcode & 15] ? s_opname[u->opcode & 15] : "?",
          u->compressed ? "z" : "", u->len);
    if (u->opcode == PUSH_WS_OP_CLOSE && u->len)
        s_log(r, "%u/%.*s", u->close_code, (int)u->reason_len, u->reason);
    else if (u->len <= 64)
        s_log_bytes(r, u->data, u->len);
    else {
        uint32_t h = 2166136261u;
        for (size_t i = 0; i < u->len; i++)
            h = (h ^ u->data[i]) * 16777619u;
        s_log(r, "#%08x", h);
    }
    s_log(r, "\n");
    if (r->stop_at && r->count == r->stop_at)
        return r->stop_rc;
    return 0;
}

static void s_rec_free(rec *r)
{
    free(r->log);
    memset(r, 0, sizeof *r);
}

/* ---- feeding -------------------------------------------------------------------- */

enum { ALL, BYTES, CHUNKS, NMODES };

static uint32_t s_rand(uint32_t *seed)
{
    *seed = *seed * 1103515245u + 12345u;
    return *seed >> 8;
}

/* Parse s in the given mode; stops feeding at the first non-zero result. */
static int s_parse(const stream *s, size_t max, int rsv1, int mode, rec *r)
{
    push_ws_parser p;
    push_ws_parser_init(&p, max, rsv1);
    int rc = 0;
    uint32_t seed = 42;
    for (size_t i = 0; i < s->len && rc == 0;) {
        size_t n = mode == ALL ? s->len : mode == BYTES ? 1 : 1 + s_rand(&seed) % 300;
        if (n > s->len - i)
            n = s->len - i;
        rc = push_ws_parser_feed(&p, s->b + i, n, s_on_unit, r);
        i += n;
    }
    if (s->len == 0)
        rc = push_ws_parser_feed(&p, NULL, 0, s_on_unit, r);
    push_ws_parser_free(&p);
    return rc;
}

/* Parse s every way; all must return want and log the same units, which
 * are returned (caller frees) for further checks. */
static char *s_expect_ex(const stream *s, size_t max, int rsv1, int want)
{
    char *first = NULL;
    for (int mode = 0; mode < NMODES; mode++) {
        rec r = { 0 };
        int rc = s_parse(s, max, rsv1, mode, &r);
        if (rc != want)
            fail_msg("mode %d: result %d, expected %d", mode, rc, want);
        const char *log = r.log ? r.log : "";
        if (first && strcmp(first, log) != 0)
            fail_msg("mode %d delivered\n%s\ninstead of\n%s", mode, log, first);
        if (!first)
            first = strdup(log);
        s_rec_free(&r);
    }
    return first;
}

/* Parse, expect the result and exactly the units in log. */
static void s_expect(const stream *s, size_t max, int rsv1, int want, const char *log)
{
    char *got = s_expect_ex(s, max, rsv1, want);
    if (strcmp(got, log) != 0) {
        char msg[4096];
        snprintf(msg, sizeof msg, "delivered\n%s\nexpected\n%s", got, log);
        free(got);
        fail_msg("%s", msg);
    }
    free(got);
}

#define BIG ((size_t)1 << 20)

/* One-frame stream helpers for the many single-rule checks. */
static void s_expect_one(unsigned b0, const void *payload, size_t len, int rsv1, int want,
                         const char *log)
{
    stream s = { 0 };
    s_frame(&s, b0, payload, len);
    s_expect(&s, BIG, rsv1, want, log);
    free(s.b);
}

/* ---- basic delivery ---------------------------------------------------------------- */

static void test_rfc6455_examples(void **state)
{
    (void)state;
    /* §5.7: a single-frame masked text message, and a masked ping */
    static const unsigned char hello[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                           0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    static const unsigned char ping[] = { 0x89, 0x85, 0x37, 0xfa, 0x21, 0x3d,
                                          0x7f, 0x9f, 0x4d, 0x51, 0x58 };
    stream s = { 0 };
    s_put_bytes(&s, hello, sizeof hello);
    s_put_bytes(&s, ping, sizeof ping);
    s_expect(&s, BIG, 0, 0, "text 5:Hello\nping 5:Hello\n");
    free(s.b);

    /* §5.7's fragmented "Hel" "lo" is unmasked: a server must refuse it */
    static const unsigned char frag[] = { 0x01, 0x03, 0x48, 0x65, 0x6c };
    s = (stream){ 0 };
    s_put_bytes(&s, frag, sizeof frag);
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    free(s.b);
}

static void test_fragmented_message_reassembled(void **state)
{
    (void)state;
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "Hel");
    FRAME(&s, PUSH_WS_OP_CONT, "l");
    FRAME(&s, PUSH_WS_OP_CONT, "");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "o!");
    FRAME(&s, PUSH_WS_OP_BINARY, "\x00\x01");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\x02");
    s_expect(&s, BIG, 0, 0, "text 6:Hello!\nbinary 3:\\x00\\x01\\x02\n");
    free(s.b);
}

static void test_empty_messages(void **state)
{
    (void)state;
    stream s = { 0 };
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "");
    FRAME(&s, FIN | PUSH_WS_OP_BINARY, "");
    FRAME(&s, PUSH_WS_OP_TEXT, "");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "");
    FRAME(&s, FIN | PUSH_WS_OP_PONG, "");
    FRAME(&s, FIN | PUSH_WS_OP_CLOSE, "");
    s_expect(&s, 0, 0, 0, "text 0:\nbinary 0:\ntext 0:\nping 0:\npong 0:\nclose 0:\n");
    free(s.b);
}

static void test_control_between_fragments_in_order(void **state)
{
    (void)state;
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "one ");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "p1");
    FRAME(&s, PUSH_WS_OP_CONT, "two ");
    FRAME(&s, FIN | PUSH_WS_OP_PONG, "p2");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "three");
    FRAME(&s, FIN | PUSH_WS_OP_CLOSE, "\x03\xe8" "bye");
    s_expect(&s, BIG, 0, 0,
             "ping 2:p1\npong 2:p2\nping 0:\ntext 13:one two three\nclose 5:1000/bye\n");
    free(s.b);
}

/* ---- the rules, each with its close code ---------------------------------------------- */

static void test_unmasked_frame_1002(void **state)
{
    (void)state;
    static const unsigned ops[] = { PUSH_WS_OP_TEXT, PUSH_WS_OP_BINARY, PUSH_WS_OP_PING,
                                    PUSH_WS_OP_CLOSE };
    for (size_t i = 0; i < 4; i++) {
        stream s = { 0 };
        s_frame_ex(&s, FIN | ops[i], "x", 1, 0, 1);
        s_expect(&s, BIG, 1, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
    }
    /* also in the middle of a fragmented message */
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "a");
    s_frame_ex(&s, FIN | PUSH_WS_OP_CONT, "b", 1, 0, 1);
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    free(s.b);
}

static void test_rsv_bits(void **state)
{
    (void)state;
    /* without a negotiated extension, any RSV bit */
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_TEXT, "x", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV2 | PUSH_WS_OP_TEXT, "x", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV3 | PUSH_WS_OP_BINARY, "x", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_PING, "", 0, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    /* with permessage-deflate: RSV2/3 still, RSV1 on control frames */
    s_expect_one(FIN | RSV2 | PUSH_WS_OP_TEXT, "x", 1, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV3 | PUSH_WS_OP_TEXT, "x", 1, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV1 | RSV2 | PUSH_WS_OP_TEXT, "x", 1, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_PING, "", 0, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_PONG, "", 0, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_CLOSE, "", 0, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    /* RSV1 on the first frame of a data message is the compressed flag */
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_TEXT, "zz", 2, 1, 0, "textz 2:zz\n");
    s_expect_one(FIN | RSV1 | PUSH_WS_OP_BINARY, "zz", 2, 1, 0, "binaryz 2:zz\n");

    /* ... and only there: never on a continuation frame */
    stream s = { 0 };
    FRAME(&s, RSV1 | PUSH_WS_OP_TEXT, "a");
    FRAME(&s, FIN | RSV1 | PUSH_WS_OP_CONT, "b");
    s_expect(&s, BIG, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    free(s.b);
    s = (stream){ 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "a");
    FRAME(&s, FIN | RSV1 | PUSH_WS_OP_CONT, "b");
    s_expect(&s, BIG, 1, PUSH_WS_CLOSE_PROTOCOL, "");
    free(s.b);
    /* the flag of the first frame covers the whole message */
    s = (stream){ 0 };
    FRAME(&s, RSV1 | PUSH_WS_OP_BINARY, "a");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "p");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "b");
    FRAME(&s, FIN | PUSH_WS_OP_BINARY, "c");
    s_expect(&s, BIG, 1, 0, "ping 1:p\nbinaryz 2:ab\nbinary 1:c\n");
    free(s.b);
}

static void test_reserved_opcodes_1002(void **state)
{
    (void)state;
    for (unsigned op = 0; op < 16; op++) {
        if (op <= 2 || (op >= 8 && op <= 0xA))
            continue;
        s_expect_one(FIN | op, "", 0, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        s_expect_one(op, "abc", 3, 1, PUSH_WS_CLOSE_PROTOCOL, "");
        /* also while a message is open */
        stream s = { 0 };
        FRAME(&s, PUSH_WS_OP_TEXT, "a");
        s_frame(&s, FIN | op, "", 0);
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
    }
}

static void test_fragmented_control_1002(void **state)
{
    (void)state;
    s_expect_one(PUSH_WS_OP_PING, "a", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(PUSH_WS_OP_PONG, "a", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(PUSH_WS_OP_CLOSE, "\x03\xe8", 2, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(PUSH_WS_OP_PING, "", 0, 0, PUSH_WS_CLOSE_PROTOCOL, "");
}

static void test_control_payload_limit(void **state)
{
    (void)state;
    unsigned char p[200];
    memset(p, 'p', sizeof p);
    /* 125 is fine for every control frame */
    stream s = { 0 };
    s_frame(&s, FIN | PUSH_WS_OP_PING, p, 125);
    s_frame(&s, FIN | PUSH_WS_OP_PONG, p, 125);
    char *log = s_expect_ex(&s, BIG, 0, 0);
    assert_int_equal(strncmp(log, "ping 125:#", 10), 0);
    assert_non_null(strstr(log, "\npong 125:#"));
    free(log);
    free(s.b);

    /* 126 needs the 16-bit form: refused already at the 7-bit length */
    static const unsigned ops[] = { PUSH_WS_OP_PING, PUSH_WS_OP_PONG, PUSH_WS_OP_CLOSE };
    for (size_t i = 0; i < 3; i++) {
        s = (stream){ 0 };
        s_frame(&s, FIN | ops[i], p, 126);
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
        s = (stream){ 0 };
        s_frame_ex(&s, FIN | ops[i], p, 3, 16, 0);       /* small, in a longer form */
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
        s = (stream){ 0 };
        s_frame_ex(&s, FIN | ops[i], p, 3, 64, 0);
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
    }
    /* the error comes with the second header byte, before any payload */
    s = (stream){ 0 };
    s_put_byte(&s, FIN | PUSH_WS_OP_PING);
    s_put_byte(&s, 0x80 | 126);
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    free(s.b);
}

static void test_continuation_without_message_1002(void **state)
{
    (void)state;
    s_expect_one(FIN | PUSH_WS_OP_CONT, "x", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    s_expect_one(PUSH_WS_OP_CONT, "x", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    /* after a finished message there is nothing to continue either */
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "a");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "b");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "c");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "text 2:ab\n");
    free(s.b);
    /* nor after a control frame alone */
    s = (stream){ 0 };
    FRAME(&s, FIN | PUSH_WS_OP_PING, "");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "c");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "ping 0:\n");
    free(s.b);
}

static void test_new_message_while_fragmented_1002(void **state)
{
    (void)state;
    static const unsigned firsts[] = { PUSH_WS_OP_TEXT, PUSH_WS_OP_BINARY };
    static const unsigned seconds[] = { FIN | PUSH_WS_OP_TEXT, FIN | PUSH_WS_OP_BINARY,
                                        PUSH_WS_OP_TEXT };
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 3; j++) {
            stream s = { 0 };
            FRAME(&s, firsts[i], "a");
            FRAME(&s, FIN | PUSH_WS_OP_PING, "");
            FRAME(&s, seconds[j], "b");
            s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "ping 0:\n");
            free(s.b);
        }
    }
}

static void test_length_not_minimal_1002(void **state)
{
    (void)state;
    static const uint64_t bad16[] = { 0, 1, 125 };
    static const uint64_t bad64[] = { 0, 125, 126, 65535 };
    unsigned char *p = calloc(1, 70000);
    assert_non_null(p);
    for (size_t i = 0; i < 3; i++) {
        stream s = { 0 };
        s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, p, bad16[i], 16, 0);
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
    }
    for (size_t i = 0; i < 4; i++) {
        stream s = { 0 };
        s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, p, bad64[i], 64, 0);
        s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "");
        free(s.b);
    }
    /* the shortest forms of the same boundaries are fine */
    stream s = { 0 };
    s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, p, 126, 16, 0);
    s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, p, 65536, 64, 0);
    char *log = s_expect_ex(&s, BIG, 0, 0);
    assert_int_equal(strncmp(log, "binary 126:#", 12), 0);
    assert_non_null(strstr(log, "\nbinary 65536:#"));
    free(log);
    free(s.b);
    free(p);
}

static void test_length_msb_set_1002(void **state)
{
    (void)state;
    /* the top bit of a 64-bit length: a protocol error, even when the size
     * limit would also refuse it */
    static const uint64_t lens[] = { UINT64_C(1) << 63, UINT64_MAX };
    static const size_t maxes[] = { BIG, SIZE_MAX };
    for (size_t i = 0; i < 2; i++) {
        for (size_t j = 0; j < 2; j++) {
            stream s = { 0 };
            s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, NULL, lens[i], 64, 0);
            s_expect(&s, maxes[j], 0, PUSH_WS_CLOSE_PROTOCOL, "");
            free(s.b);
        }
    }
}

/* Compare delivered bytes exactly (the log checks only a hash). */
static int s_copy_unit(void *arg, const push_ws_unit *u)
{
    stream *out = arg;
    s_put_bytes(out, u->data, u->len);
    return 0;
}

static void test_length_boundaries(void **state)
{
    (void)state;
    static const size_t lens[] = { 0, 1, 124, 125, 126, 127, 65535, 65536, 65537, 100000 };
    static const size_t hlen[] = { 2, 2, 2, 2, 4, 4, 4, 10, 10, 10 };
    unsigned char *p = malloc(100000);
    assert_non_null(p);
    for (size_t i = 0; i < 100000; i++)
        p[i] = (unsigned char)(i * 7 + i / 251);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        stream s = { 0 };
        s_frame(&s, FIN | PUSH_WS_OP_BINARY, p, lens[i]);
        /* the client frame is our header plus the 4-byte mask key */
        assert_int_equal(s.len, hlen[i] + 4 + lens[i]);
        char *log = s_expect_ex(&s, lens[i], 0, 0);
        char want[64];
        snprintf(want, sizeof want, "binary %zu:", lens[i]);
        assert_int_equal(strncmp(log, want, strlen(want)), 0);
        free(log);
        /* one byte less allowed: too big */
        if (lens[i] > 0)
            s_expect(&s, lens[i] - 1, 0, PUSH_WS_CLOSE_TOO_BIG, "");
        free(s.b);
    }
    /* contents survive unmasking at every alignment */
    for (size_t i = 0; i < 9; i++) {
        stream s = { 0 };
        s_frame(&s, FIN | PUSH_WS_OP_BINARY, p + i, 70 + i);
        push_ws_parser ps;
        push_ws_parser_init(&ps, BIG, 0);
        stream out = { 0 };
        for (size_t k = 0; k < s.len; k += 3) {
            size_t n = s.len - k < 3 ? s.len - k : 3;
            assert_int_equal(push_ws_parser_feed(&ps, s.b + k, n, s_copy_unit, &out), 0);
        }
        assert_int_equal(out.len, 70 + i);
        assert_memory_equal(out.b, p + i, 70 + i);
        free(out.b);
        push_ws_parser_free(&ps);
        free(s.b);
    }
    free(p);
}

static void test_payload_bytes_exact(void **state)
{
    (void)state;
    unsigned char p[300];
    for (size_t i = 0; i < sizeof p; i++)
        p[i] = (unsigned char)(255 - i);
    stream s = { 0 };
    s_frame(&s, PUSH_WS_OP_BINARY, p, 1);
    s_frame(&s, PUSH_WS_OP_CONT, p + 1, 2);
    s_frame(&s, FIN | PUSH_WS_OP_PING, "zz", 2);
    s_frame(&s, FIN | PUSH_WS_OP_CONT, p + 3, 297);
    for (int mode = 0; mode < NMODES; mode++) {
        push_ws_parser ps;
        push_ws_parser_init(&ps, BIG, 0);
        stream out = { 0 };
        size_t step = mode == ALL ? s.len : mode == BYTES ? 1 : 7;
        for (size_t k = 0; k < s.len; k += step) {
            size_t n = s.len - k < step ? s.len - k : step;
            assert_int_equal(push_ws_parser_feed(&ps, s.b + k, n, s_copy_unit, &out), 0);
        }
        assert_int_equal(out.len, 302);
        assert_memory_equal(out.b, "zz", 2);
        assert_memory_equal(out.b + 2, p, 300);
        free(out.b);
        push_ws_parser_free(&ps);
    }
    free(s.b);
}

/* ---- size limit ---------------------------------------------------------------------- */

static void test_message_too_big_1009(void **state)
{
    (void)state;
    unsigned char p[1000];
    memset(p, 'a', sizeof p);
    /* one frame over the limit */
    stream s = { 0 };
    s_frame(&s, FIN | PUSH_WS_OP_TEXT, p, 101);
    s_expect(&s, 100, 0, PUSH_WS_CLOSE_TOO_BIG, "");
    free(s.b);
    /* fragments adding up to exactly the limit, then over it */
    s = (stream){ 0 };
    s_frame(&s, PUSH_WS_OP_TEXT, p, 40);
    s_frame(&s, PUSH_WS_OP_CONT, p, 40);
    s_frame(&s, FIN | PUSH_WS_OP_CONT, p, 20);
    s_frame(&s, PUSH_WS_OP_BINARY, p, 60);
    s_frame(&s, FIN | PUSH_WS_OP_PING, p, 100);     /* control frames do not count */
    s_frame(&s, PUSH_WS_OP_CONT, p, 40);
    s_frame(&s, FIN | PUSH_WS_OP_CONT, p, 1);        /* 101 */
    char *log = s_expect_ex(&s, 100, 0, PUSH_WS_CLOSE_TOO_BIG);
    assert_int_equal(strncmp(log, "text 100:#", 10), 0);
    assert_non_null(strstr(log, "\nping 100:#"));
    assert_null(strstr(log, "binary"));
    free(log);
    free(s.b);
    /* a limit of 0 allows only empty messages */
    s = (stream){ 0 };
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "");
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "x");
    s_expect(&s, 0, 0, PUSH_WS_CLOSE_TOO_BIG, "text 0:\n");
    free(s.b);
}

/* The limit is enforced from the header alone: no payload needed, nothing
 * allocated for a huge announced length. */
static void test_too_big_known_from_header(void **state)
{
    (void)state;
    static const uint64_t lens[] = { 1001, 65536, UINT64_C(1) << 40, (UINT64_C(1) << 63) - 1 };
    for (size_t i = 0; i < 4; i++) {
        for (size_t cut = 0; cut < 2; cut++) {
            stream s = { 0 };
            s_frame_ex(&s, (cut ? 0 : FIN) | PUSH_WS_OP_BINARY, NULL, lens[i], 0, 0);
            /* header only, without even the mask key */
            s.len = lens[i] < 65536 ? 4 : 10;
            s_expect(&s, 1000, 0, PUSH_WS_CLOSE_TOO_BIG, "");
            free(s.b);
        }
    }
    /* the crossing fragment is refused at its header */
    stream s = { 0 };
    unsigned char p[600] = { 0 };
    s_frame(&s, PUSH_WS_OP_BINARY, p, 600);
    s_frame_ex(&s, FIN | PUSH_WS_OP_CONT, NULL, 401, 16, 0);
    s.len -= 4;     /* again without the mask key */
    push_ws_parser ps;
    push_ws_parser_init(&ps, 1000, 0);
    rec r = { 0 };
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r), PUSH_WS_CLOSE_TOO_BIG);
    assert_int_equal(r.count, 0);
    assert_true(ps.msg_cap <= 600);     /* nothing reserved for the refused fragment */
    push_ws_parser_free(&ps);
    s_rec_free(&r);
    free(s.b);
}

/* Memory follows the bytes received, not the length announced. */
static void test_buffer_grows_with_data(void **state)
{
    (void)state;
    stream s = { 0 };
    s_frame_ex(&s, FIN | PUSH_WS_OP_BINARY, NULL, 1000000, 64, 0);
    push_ws_parser ps;
    push_ws_parser_init(&ps, 1000000, 0);
    rec r = { 0 };
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r), 0);
    unsigned char chunk[1000] = { 0 };
    assert_int_equal(push_ws_parser_feed(&ps, chunk, sizeof chunk, s_on_unit, &r), 0);
    assert_true(ps.msg_cap < 4096);
    for (int i = 0; i < 999; i++)
        assert_int_equal(push_ws_parser_feed(&ps, chunk, sizeof chunk, s_on_unit, &r), 0);
    assert_int_equal(r.count, 1);
    /* a large buffer is not kept once the message is delivered ... */
    assert_null(ps.msg);
    /* ... a small one is */
    s.len = 0;
    s_frame(&s, FIN | PUSH_WS_OP_BINARY, chunk, 100);
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r), 0);
    assert_non_null(ps.msg);
    push_ws_parser_free(&ps);
    push_ws_parser_free(&ps);       /* twice is fine */
    s_rec_free(&r);
    free(s.b);
}

/* ---- UTF-8 ------------------------------------------------------------------------------ */

static void test_text_utf8(void **state)
{
    (void)state;
    s_expect_one(FIN | PUSH_WS_OP_TEXT, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 11, 0,
                 0, "text 11:\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\n");
    s_expect_one(FIN | PUSH_WS_OP_TEXT, "\xed\xa0\x80", 3, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    s_expect_one(FIN | PUSH_WS_OP_TEXT, "ok\xc0\xaf", 4, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    s_expect_one(FIN | PUSH_WS_OP_TEXT, "\xf4\x90\x80\x80", 4, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    /* ends inside a character */
    s_expect_one(FIN | PUSH_WS_OP_TEXT, "ab\xe2\x82", 4, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    /* binary messages are not text */
    s_expect_one(FIN | PUSH_WS_OP_BINARY, "\xff\xfe", 2, 0, 0, "binary 2:\xff\xfe\n");
}

static void test_utf8_split_across_fragments_accepted(void **state)
{
    (void)state;
    /* € = E2 82 AC and 😀 = F0 9F 98 80, cut inside, with a ping between */
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "a\xe2");
    FRAME(&s, PUSH_WS_OP_CONT, "\x82");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "p");
    FRAME(&s, PUSH_WS_OP_CONT, "\xac\xf0\x9f");
    FRAME(&s, PUSH_WS_OP_CONT, "");
    FRAME(&s, PUSH_WS_OP_CONT, "\x98");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\x80z");
    s_expect(&s, BIG, 0, 0, "ping 1:p\ntext 9:a\xe2\x82\xac\xf0\x9f\x98\x80z\n");
    free(s.b);
}

static void test_utf8_invalid_across_fragments_1007(void **state)
{
    (void)state;
    /* E2 82 then a non-continuation byte in the next fragment */
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "a\xe2");
    FRAME(&s, PUSH_WS_OP_CONT, "\x82");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "A");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    free(s.b);
    /* a surrogate split across fragments */
    s = (stream){ 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "\xed");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\xa0\x80");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    free(s.b);
    /* a message ending inside a character, cut across fragments */
    s = (stream){ 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "\xf0\x9f");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\x98");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    free(s.b);
}

/* Invalid text fails the connection when the byte arrives, without waiting
 * for the end of the message. */
static void test_utf8_invalid_detected_early(void **state)
{
    (void)state;
    stream s = { 0 };
    FRAME(&s, PUSH_WS_OP_TEXT, "fine so far");
    FRAME(&s, PUSH_WS_OP_CONT, "then \xff");      /* no final fragment follows */
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    free(s.b);
    /* inside one frame, before its last byte */
    unsigned char p[100];
    memset(p, 'a', sizeof p);
    p[10] = 0xc0;
    s = (stream){ 0 };
    s_frame(&s, FIN | PUSH_WS_OP_TEXT, p, sizeof p);
    s.len -= 80;
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA, "");
    free(s.b);
}

static void test_compressed_text_not_validated(void **state)
{
    (void)state;
    /* deflated bytes are not UTF-8: the caller validates after inflating */
    stream s = { 0 };
    FRAME(&s, RSV1 | PUSH_WS_OP_TEXT, "\xf2\x48");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\xcd\xc9\xc9\x07\x00");
    s_expect(&s, BIG, 1, 0, "textz 7:\xf2H\xcd\xc9\xc9\\x07\\x00\n");
    free(s.b);
}

/* ---- close frames ------------------------------------------------------------------------- */

static void s_expect_close(unsigned code, const char *reason, int want)
{
    unsigned char p[125];
    size_t rl = strlen(reason);
    p[0] = (unsigned char)(code >> 8);
    p[1] = (unsigned char)code;
    memcpy(p + 2, reason, rl);
    char log[200] = "";
    if (want == 0)
        snprintf(log, sizeof log, "close %zu:%u/%s\n", rl + 2, code, reason);
    s_expect_one(FIN | PUSH_WS_OP_CLOSE, p, rl + 2, 0, want, log);
}

static void test_close_payload_rules(void **state)
{
    (void)state;
    s_expect_one(FIN | PUSH_WS_OP_CLOSE, "", 0, 0, 0, "close 0:\n");
    s_expect_one(FIN | PUSH_WS_OP_CLOSE, "\x03", 1, 0, PUSH_WS_CLOSE_PROTOCOL, "");
    /* 1 byte, even where a stale second byte would make a valid code */
    stream s = { 0 };
    FRAME(&s, FIN | PUSH_WS_OP_PING, "p\xe8");
    FRAME(&s, FIN | PUSH_WS_OP_CLOSE, "\x03");
    s_expect(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL, "ping 2:p\xe8\n");
    free(s.b);
    static const unsigned ok[] = { 1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011,
                                   3000, 3999, 4000, 4999 };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        s_expect_close(ok[i], "", 0);
        s_expect_close(ok[i], "reason", 0);
    }
    static const unsigned bad[] = { 0, 1, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015,
                                    1016, 1100, 2000, 2999, 5000, 65535 };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_expect_close(bad[i], "", PUSH_WS_CLOSE_PROTOCOL);
    /* the reason must be UTF-8 */
    s_expect_close(1000, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0);
    s_expect_close(1000, "bad \xed\xa0\x80", PUSH_WS_CLOSE_INVALID_DATA);
    s_expect_close(1000, "cut \xe2\x82", PUSH_WS_CLOSE_INVALID_DATA);
    /* an invalid code is reported before an invalid reason */
    s_expect_close(1005, "\xff", PUSH_WS_CLOSE_PROTOCOL);
    /* the longest reason */
    char r[124];
    memset(r, 'r', 123);
    r[123] = '\0';
    s_expect_close(4000, r, 0);
}

static void test_close_code_valid(void **state)
{
    (void)state;
    int n = 0;
    for (unsigned c = 0; c < 70000; c++)
        n += push_ws_close_code_valid(c);
    assert_int_equal(n, 4 + 5 + 2000);
    assert_true(push_ws_close_code_valid(1000));
    assert_false(push_ws_close_code_valid(1004));
    assert_false(push_ws_close_code_valid(1006));
    assert_true(push_ws_close_code_valid(1011));
    assert_false(push_ws_close_code_valid(1012));
    assert_false(push_ws_close_code_valid(2999));
    assert_true(push_ws_close_code_valid(3000));
    assert_true(push_ws_close_code_valid(4999));
    assert_false(push_ws_close_code_valid(5000));
}

/* ---- feeding: chunking, stickiness, stopping -------------------------------------------------- */

static void s_mixed_stream(stream *s)
{
    static unsigned char big[70000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (unsigned char)('a' + i % 26);
    FRAME(s, FIN | PUSH_WS_OP_TEXT, "first");
    s_frame(s, PUSH_WS_OP_TEXT, big, 126);
    FRAME(s, FIN | PUSH_WS_OP_PING, "ping in the middle");
    s_frame(s, PUSH_WS_OP_CONT, big, 65535);
    FRAME(s, FIN | PUSH_WS_OP_PONG, "");
    s_frame(s, FIN | PUSH_WS_OP_CONT, big, 3);
    s_frame(s, FIN | PUSH_WS_OP_BINARY, big, 65536);
    FRAME(s, FIN | PUSH_WS_OP_BINARY, "");
    s_frame(s, PUSH_WS_OP_TEXT, "\xe2\x82\xac\xe2\x82\xac", 4);
    s_frame(s, FIN | PUSH_WS_OP_CONT, "\x82\xac", 2);
    s_frame(s, FIN | PUSH_WS_OP_PING, big, 125);
    FRAME(s, FIN | PUSH_WS_OP_CLOSE, "\x03\xe9going");
}

static void test_bytewise_equals_all_at_once(void **state)
{
    (void)state;
    stream s = { 0 };
    s_mixed_stream(&s);
    char *log = s_expect_ex(&s, BIG, 0, 0);      /* all modes agree */
    int lines = 0;
    for (const char *c = log; *c; c++)
        lines += *c == '\n';
    assert_int_equal(lines, 9);
    const char *head = "text 5:first\nping 18:ping in the middle\npong 0:\ntext 65664:#";
    assert_int_equal(strncmp(log, head, strlen(head)), 0);
    assert_non_null(strstr(log, "\nbinary 65536:#"));
    assert_non_null(strstr(log, "\nbinary 0:\ntext 6:\xe2\x82\xac\xe2\x82\xac\nping 125:#"));
    assert_non_null(strstr(log, "\nclose 7:1001/going\n"));
    free(log);

    /* every two-piece cut of a smaller stream */
    stream t = { 0 };
    FRAME(&t, PUSH_WS_OP_TEXT, "ab\xe2");
    FRAME(&t, FIN | PUSH_WS_OP_PING, "x");
    FRAME(&t, FIN | PUSH_WS_OP_CONT, "\x82\xac");
    FRAME(&t, FIN | PUSH_WS_OP_BINARY, "bin");
    char *ref = s_expect_ex(&t, BIG, 0, 0);
    for (size_t cut = 0; cut <= t.len; cut++) {
        push_ws_parser ps;
        push_ws_parser_init(&ps, BIG, 0);
        rec r = { 0 };
        assert_int_equal(push_ws_parser_feed(&ps, t.b, cut, s_on_unit, &r), 0);
        assert_int_equal(push_ws_parser_feed(&ps, t.b + cut, t.len - cut, s_on_unit, &r), 0);
        assert_string_equal(r.log, ref);
        s_rec_free(&r);
        push_ws_parser_free(&ps);
    }
    free(ref);
    free(t.b);
    free(s.b);
}

/* Errors land at the same byte however the stream is cut. */
static void test_errors_identical_in_every_mode(void **state)
{
    (void)state;
    stream s = { 0 };
    s_mixed_stream(&s);
    size_t good = s.len;
    s_frame(&s, FIN | RSV2 | PUSH_WS_OP_TEXT, "x", 1);
    char *log = s_expect_ex(&s, BIG, 0, PUSH_WS_CLOSE_PROTOCOL);
    assert_non_null(strstr(log, "close 7:1001/going\n"));
    free(log);
    s.len = good;
    FRAME(&s, PUSH_WS_OP_TEXT, "ok");
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "\xc1");
    log = s_expect_ex(&s, BIG, 0, PUSH_WS_CLOSE_INVALID_DATA);
    assert_non_null(strstr(log, "close 7:1001/going\n"));
    free(log);
    free(s.b);
}

static void test_error_is_sticky(void **state)
{
    (void)state;
    push_ws_parser ps;
    push_ws_parser_init(&ps, BIG, 0);
    rec r = { 0 };
    stream s = { 0 };
    FRAME(&s, FIN | PUSH_WS_OP_CONT, "x");
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r),
                     PUSH_WS_CLOSE_PROTOCOL);
    s.len = 0;
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "valid");
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r),
                     PUSH_WS_CLOSE_PROTOCOL);
    assert_int_equal(push_ws_parser_feed(&ps, NULL, 0, s_on_unit, &r), PUSH_WS_CLOSE_PROTOCOL);
    assert_int_equal(r.count, 0);
    push_ws_parser_free(&ps);
    s_rec_free(&r);
    free(s.b);
}

static void test_callback_stops_parser(void **state)
{
    (void)state;
    stream s = { 0 };
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "one");
    FRAME(&s, FIN | PUSH_WS_OP_PING, "two");
    FRAME(&s, FIN | PUSH_WS_OP_TEXT, "three");
    for (int mode = 0; mode < NMODES; mode++) {
        rec r = { .stop_at = 2, .stop_rc = -7 };
        assert_int_equal(s_parse(&s, BIG, 0, mode, &r), -7);
        assert_string_equal(r.log, "text 3:one\nping 3:two\n");
        s_rec_free(&r);
    }
    /* and stays stopped */
    push_ws_parser ps;
    push_ws_parser_init(&ps, BIG, 0);
    rec r = { .stop_at = 1, .stop_rc = PUSH_WS_CLOSE_POLICY };
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r), PUSH_WS_CLOSE_POLICY);
    assert_int_equal(push_ws_parser_feed(&ps, s.b, s.len, s_on_unit, &r), PUSH_WS_CLOSE_POLICY);
    assert_int_equal(r.count, 1);
    push_ws_parser_free(&ps);
    s_rec_free(&r);
    free(s.b);
}

/* ---- encoder ------------------------------------------------------------------------------- */

static void test_frame_header_encoding(void **state)
{
    (void)state;
    unsigned char h[PUSH_WS_HEADER_MAX];
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_TEXT, 1, 0, 0), 2);
    assert_memory_equal(h, "\x81\x00", 2);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_TEXT, 1, 0, 125), 2);
    assert_memory_equal(h, "\x81\x7d", 2);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_BINARY, 1, 0, 126), 4);
    assert_memory_equal(h, "\x82\x7e\x00\x7e", 4);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_BINARY, 0, 0, 65535), 4);
    assert_memory_equal(h, "\x02\x7e\xff\xff", 4);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_TEXT, 1, 1, 65536), 10);
    assert_memory_equal(h, "\xc1\x7f\x00\x00\x00\x00\x00\x01\x00\x00", 10);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_CONT, 0, 0, INT64_MAX), 10);
    assert_memory_equal(h, "\x00\x7f\x7f\xff\xff\xff\xff\xff\xff\xff", 10);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_CLOSE, 1, 0, 2), 2);
    assert_memory_equal(h, "\x88\x02", 2);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_PONG, 1, 0, 5), 2);
    assert_memory_equal(h, "\x8a\x05", 2);
    /* refused */
    assert_int_equal(push_ws_frame_header(h, 16, 1, 0, 0), 0);
    assert_int_equal(push_ws_frame_header(h, -1, 1, 0, 0), 0);
    assert_int_equal(push_ws_frame_header(h, PUSH_WS_OP_TEXT, 1, 0, UINT64_C(1) << 63), 0);
}

/* A server header, given a mask bit and key, is a client frame our parser
 * must read back — lengths around every boundary. */
static void test_frame_header_round_trip(void **state)
{
    (void)state;
    static const size_t lens[] = { 0, 1, 125, 126, 65535, 65536, 65537 };
    unsigned char *p = calloc(1, 65537);
    assert_non_null(p);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        unsigned char h[PUSH_WS_HEADER_MAX];
        size_t hl = push_ws_frame_header(h, PUSH_WS_OP_BINARY, 1, 1, lens[i]);
        assert_int_equal(hl, lens[i] < 126 ? 2 : lens[i] < 65536 ? 4 : 10);
        h[1] |= 0x80;
        stream s = { 0 };
        s_put_bytes(&s, h, hl);
        s_put_bytes(&s, "\0\0\0\0", 4);
        s_put_bytes(&s, p, lens[i]);
        char *log = s_expect_ex(&s, BIG, 1, 0);
        char want[64];
        snprintf(want, sizeof want, "binaryz %zu:", lens[i]);
        assert_int_equal(strncmp(log, want, strlen(want)), 0);
        free(log);
        free(s.b);
    }
    free(p);
}

static void test_close_payload_encoding(void **state)
{
    (void)state;
    unsigned char b[PUSH_WS_CONTROL_MAX];
    assert_int_equal(push_ws_close_payload(b, 1000, "bye"), 5);
    assert_memory_equal(b, "\x03\xe8" "bye", 5);
    assert_int_equal(push_ws_close_payload(b, 1009, NULL), 2);
    assert_memory_equal(b, "\x03\xf1", 2);
    assert_int_equal(push_ws_close_payload(b, 4999, ""), 2);
    assert_memory_equal(b, "\x13\x87", 2);
    /* codes that must not be sent give the empty payload */
    assert_int_equal(push_ws_close_payload(b, 0, "x"), 0);
    assert_int_equal(push_ws_close_payload(b, 1005, "x"), 0);
    assert_int_equal(push_ws_close_payload(b, 1006, NULL), 0);
    assert_int_equal(push_ws_close_payload(b, 1015, NULL), 0);
    /* a reason that is not UTF-8 is left out */
    assert_int_equal(push_ws_close_payload(b, 1011, "bad \xff"), 2);
    /* long reasons are cut to 123 bytes, before a character that would not fit */
    char r[300];
    memset(r, 'a', sizeof r);
    r[299] = '\0';
    assert_int_equal(push_ws_close_payload(b, 1001, r), 125);
    memcpy(r + 122, "\xe2\x82\xac", 3);      /* € would straddle byte 123 */
    assert_int_equal(push_ws_close_payload(b, 1001, r), 124);
    assert_memory_equal(b + 2, r, 122);
    memset(r, 'a', 298);
    memcpy(r + 120, "\xe2\x82\xac", 3);      /* ends exactly at 123 */
    assert_int_equal(push_ws_close_payload(b, 1001, r), 125);
    assert_memory_equal(b + 122, "\xe2\x82\xac", 3);
    /* whatever we write, our own parser accepts */
    stream s = { 0 };
    size_t n = push_ws_close_payload(b, 1001, r);
    s_frame(&s, FIN | PUSH_WS_OP_CLOSE, b, n);
    char *log = s_expect_ex(&s, BIG, 0, 0);
    assert_int_equal(strncmp(log, "close 125:1001/", 15), 0);
    free(log);
    free(s.b);
}

/* ---- handshake ------------------------------------------------------------------------------- */

static void test_accept_key(void **state)
{
    (void)state;
    char out[29];
    /* RFC 6455 §1.3 */
    assert_int_equal(push_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    /* RFC 6455 §4.2.2 uses the same computation; a second known pair
     * (computed with Python's hashlib and base64) */
    assert_int_equal(push_ws_accept_key("x3JJHMbDL1EzLkh9GBhXDw==", out), 0);
    assert_string_equal(out, "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
    /* invalid keys give -1 and "" */
    memset(out, 'z', sizeof out);
    assert_int_equal(push_ws_accept_key("short==", out), -1);
    assert_string_equal(out, "");
    assert_int_equal(push_ws_accept_key(NULL, out), -1);
}

static void test_key_valid(void **state)
{
    (void)state;
    assert_true(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=="));
    assert_true(push_ws_key_valid("AAAAAAAAAAAAAAAAAAAAAA=="));
    assert_true(push_ws_key_valid("+/+/+/+/+/+/+/+/+/+/+w=="));
    assert_false(push_ws_key_valid(NULL));
    assert_false(push_ws_key_valid(""));
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ="));     /* 23 chars */
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ==="));   /* 25 chars */
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ=A"));
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZ==="));    /* 15 bytes */
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ"));      /* no padding */
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQAA"));    /* 18 bytes */
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25j-Q=="));    /* base64url */
    assert_false(push_ws_key_valid(" dGhlIHNhbXBsZSBub25jZQ=="));
    assert_false(push_ws_key_valid("dGhlIHNhbXBsZSBub25jZQ== "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc6455_examples),
        cmocka_unit_test(test_fragmented_message_reassembled),
        cmocka_unit_test(test_empty_messages),
        cmocka_unit_test(test_control_between_fragments_in_order),
        cmocka_unit_test(test_unmasked_frame_1002),
        cmocka_unit_test(test_rsv_bits),
        cmocka_unit_test(test_reserved_opcodes_1002),
        cmocka_unit_test(test_fragmented_control_1002),
        cmocka_unit_test(test_control_payload_limit),
        cmocka_unit_test(test_continuation_without_message_1002),
        cmocka_unit_test(test_new_message_while_fragmented_1002),
        cmocka_unit_test(test_length_not_minimal_1002),
        cmocka_unit_test(test_length_msb_set_1002),
        cmocka_unit_test(test_length_boundaries),
        cmocka_unit_test(test_payload_bytes_exact),
        cmocka_unit_test(test_message_too_big_1009),
        cmocka_unit_test(test_too_big_known_from_header),
        cmocka_unit_test(test_buffer_grows_with_data),
        cmocka_unit_test(test_text_utf8),
        cmocka_unit_test(test_utf8_split_across_fragments_accepted),
        cmocka_unit_test(test_utf8_invalid_across_fragments_1007),
        cmocka_unit_test(test_utf8_invalid_detected_early),
        cmocka_unit_test(test_compressed_text_not_validated),
        cmocka_unit_test(test_close_payload_rules),
        cmocka_unit_test(test_close_code_valid),
        cmocka_unit_test(test_bytewise_equals_all_at_once),
        cmocka_unit_test(test_errors_identical_in_every_mode),
        cmocka_unit_test(test_error_is_sticky),
        cmocka_unit_test(test_callback_stops_parser),
        cmocka_unit_test(test_frame_header_encoding),
        cmocka_unit_test(test_frame_header_round_trip),
        cmocka_unit_test(test_close_payload_encoding),
        cmocka_unit_test(test_accept_key),
        cmocka_unit_test(test_key_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
