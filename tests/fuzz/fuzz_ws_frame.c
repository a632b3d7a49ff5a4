/*
 * fuzz_ws_frame.c — the WebSocket frame parser (mod_push/ws_frame.c, with
 * utf8.c), fed like a socket would feed it, and the decompression of the
 * compressed messages it delivers (ws_deflate.c).
 *
 * Input: byte 0 = settings, byte 1 = chunking seed, the rest = client bytes.
 *   settings bit 0      allow_rsv1 (permessage-deflate negotiated)
 *   settings bits 1-3   max_message_size: 0, 1, 16, 125, 126, 1000, 65536, SIZE_MAX
 *   settings bit 4      the callback stops the parser (returns 4000) at the 3rd unit
 *   settings bits 5-7   decompressor: window bits 8 + (v % 8), and
 *                       client_no_context_takeover when v is odd
 *
 * Checked (see ws_frame.h):
 *  - the stream cut into random pieces, or fed one byte at a time, gives
 *    exactly the units and the result of feeding it whole;
 *  - every unit is well formed: a known opcode, data never NULL, control
 *    payloads <= 125 bytes, data messages <= max_message_size, compressed
 *    only when allowed and only for data, uncompressed text valid UTF-8,
 *    close code/reason per the rules;
 *  - the result is 0, a close code the header lists, or the callback's value;
 *    after a non-zero result no unit is delivered and every later feed returns
 *    the same value;
 *  - compressed units inflate within max_out (or fail cleanly), and a failed
 *    decompressor refuses further work.
 */
#include "fuzz_common.h"

#include "utf8.h"
#include "ws_deflate.h"
#include "ws_frame.h"

#define STOP_VALUE 4000
#define MAX_OUT    4096

/* What the callback saw, serialized for comparison between feeds. */
typedef struct trace {
    unsigned char *buf;
    size_t         len, cap;
    size_t         units;
    int            stop_at;      /* 0: never; else stop at this unit */
    int            stopped;      /* the parser returned non-zero */
    size_t         max_message;
    int            allow_rsv1;
    push_ws_decompressor *dec;   /* NULL: no inflating */
    int            dec_failed;
} trace;

static void s_put(trace *t, const void *p, size_t n)
{
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        t->buf = realloc(t->buf, cap);
        FUZZ_CHECK(t->buf != NULL);
        t->cap = cap;
    }
    memcpy(t->buf + t->len, p, n);
    t->len += n;
}

static void s_inflate(trace *t, const push_ws_unit *u)
{
    unsigned char *out = (unsigned char *)"sentinel";
    size_t out_len = 12345;
    int rc = push_ws_decompress(t->dec, u->data, u->len, MAX_OUT, &out, &out_len);
    FUZZ_CHECK(rc == PUSH_WS_DEFLATE_OK || rc == PUSH_WS_DEFLATE_INTERNAL
               || rc == PUSH_WS_DEFLATE_TOO_BIG || rc == PUSH_WS_DEFLATE_CORRUPT);
    if (t->dec_failed)
        FUZZ_CHECK(rc == PUSH_WS_DEFLATE_INTERNAL);    /* refuses once failed */
    if (rc == PUSH_WS_DEFLATE_OK) {
        FUZZ_CHECK(out != NULL);
        FUZZ_CHECK(out_len <= MAX_OUT);
        volatile unsigned sum = 0;  /* touch every byte: ASan checks the size */
        for (size_t i = 0; i < out_len; i++)
            sum += out[i];
        (void)sum;
        free(out);
    } else {
        FUZZ_CHECK(out == NULL && out_len == 0);
        t->dec_failed = 1;
    }
}

static int s_unit(void *arg, const push_ws_unit *u)
{
    trace *t = arg;
    FUZZ_CHECK(!t->stopped);
    FUZZ_CHECK(u->data != NULL);
    switch (u->opcode) {
    case PUSH_WS_OP_TEXT:
    case PUSH_WS_OP_BINARY:
        FUZZ_CHECK(u->len <= t->max_message);
        FUZZ_CHECK(!u->compressed || t->allow_rsv1);
        if (u->opcode == PUSH_WS_OP_TEXT && !u->compressed)
            FUZZ_CHECK(push_utf8_valid(u->data, u->len));
        FUZZ_CHECK(u->close_code == 0 && u->reason == NULL && u->reason_len == 0);
        break;
    case PUSH_WS_OP_CLOSE:
        FUZZ_CHECK(u->len <= PUSH_WS_CONTROL_MAX && !u->compressed);
        if (u->len == 0) {
            FUZZ_CHECK(u->close_code == 0 && u->reason_len == 0);
        } else {
            FUZZ_CHECK(u->len >= 2);
            FUZZ_CHECK(push_ws_close_code_valid(u->close_code));
            FUZZ_CHECK(u->close_code == ((unsigned)u->data[0] << 8 | u->data[1]));
            FUZZ_CHECK(u->reason == (const char *)u->data + 2);
            FUZZ_CHECK(u->reason_len == u->len - 2);
            FUZZ_CHECK(push_utf8_valid(u->reason, u->reason_len));
        }
        break;
    case PUSH_WS_OP_PING:
    case PUSH_WS_OP_PONG:
        FUZZ_CHECK(u->len <= PUSH_WS_CONTROL_MAX && !u->compressed);
        FUZZ_CHECK(u->close_code == 0 && u->reason == NULL);
        break;
    default:
        FUZZ_CHECK(!"unknown opcode delivered");
    }
    unsigned char head[2] = { (unsigned char)u->opcode, (unsigned char)u->compressed };
    uint64_t len = u->len;
    s_put(t, head, sizeof head);
    s_put(t, &len, sizeof len);
    if (u->len)
        s_put(t, u->data, u->len);
    if (t->dec && u->compressed)
        s_inflate(t, u);
    t->units++;
    return t->stop_at && t->units == (size_t)t->stop_at ? STOP_VALUE : 0;
}

static void s_check_result(int rc)
{
    FUZZ_CHECK(rc == 0 || rc == PUSH_WS_CLOSE_PROTOCOL || rc == PUSH_WS_CLOSE_INVALID_DATA
               || rc == PUSH_WS_CLOSE_TOO_BIG || rc == PUSH_WS_CLOSE_INTERNAL
               || rc == STOP_VALUE);
}

/* Tiny deterministic generator for the cut points. */
static uint32_t s_rand(uint32_t *s)
{
    *s = *s * 1103515245u + 12345u;
    return *s >> 16;
}

/* Feed data in pieces: mode 0 whole, 1 random pieces, 2 one byte at a time. */
static int s_run(const uint8_t *data, size_t size, size_t max_message, int allow_rsv1,
                 int stop, int mode, uint32_t seed, trace *t, int dec_bits, int dec_nct)
{
    push_ws_parser p;
    memset(t, 0, sizeof *t);
    t->stop_at = stop ? 3 : 0;
    t->max_message = max_message;
    t->allow_rsv1 = allow_rsv1;
    if (dec_bits && allow_rsv1) {
        t->dec = push_ws_decompressor_new(dec_bits, dec_nct);
        FUZZ_CHECK(t->dec != NULL);
    }
    push_ws_parser_init(&p, max_message, allow_rsv1);
    int rc = 0;
    size_t off = 0;
    while (off < size) {
        size_t n = size - off;
        if (mode == 2)
            n = 1;
        else if (mode == 1) {
            /* mostly small pieces, sometimes large ones */
            uint32_t r = s_rand(&seed);
            size_t cap = (r & 3) == 0 ? 4096 : (r & 3) == 1 ? 64 : 8;
            size_t want = 1 + (s_rand(&seed) % cap);
            if (want < n)
                n = want;
        }
        size_t before = t->units;
        int r = push_ws_parser_feed(&p, data + off, n, s_unit, t);
        s_check_result(r);
        if (rc != 0) {       /* sticky: same value, nothing delivered */
            FUZZ_CHECK(r == rc);
            FUZZ_CHECK(t->units == before);
        }
        rc = r;
        if (rc != 0)
            t->stopped = 1;
        off += n;
    }
    if (rc != 0) {
        /* more input after the error: still the same value, no unit */
        size_t before = t->units;
        FUZZ_CHECK(push_ws_parser_feed(&p, "\x81\x80\0\0\0\0", 6, s_unit, t) == rc);
        FUZZ_CHECK(t->units == before);
    }
    push_ws_parser_free(&p);
    push_ws_parser_free(&p);      /* documented as safe */
    push_ws_decompressor_free(t->dec);
    t->dec = NULL;
    return rc;
}

static const size_t s_limits[8] = { 0, 1, 16, 125, 126, 1000, 65536, SIZE_MAX };

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    uint8_t settings = data[0];
    uint32_t seed = data[1];
    data += 2;
    size -= 2;
    int allow_rsv1 = settings & 1;
    size_t max_message = s_limits[(settings >> 1) & 7];
    int stop = (settings >> 4) & 1;
    int dv = settings >> 5;
    int dec_bits = 8 + dv, dec_nct = dv & 1;

    trace whole, pieces;
    /* the decompressor runs on the whole feed only: its verdicts depend on
     * the units, which must be the same anyway */
    int rc_whole = s_run(data, size, max_message, allow_rsv1, stop, 0, 0, &whole,
                         dec_bits, dec_nct);
    int rc_pieces = s_run(data, size, max_message, allow_rsv1, stop, 1, seed, &pieces, 0, 0);
    FUZZ_CHECK(rc_whole == rc_pieces);
    FUZZ_CHECK(whole.units == pieces.units);
    FUZZ_CHECK(whole.len == pieces.len && (whole.len == 0 ||
               memcmp(whole.buf, pieces.buf, whole.len) == 0));
    free(pieces.buf);
    if (size <= 2048) {
        trace bytes;
        int rc_bytes = s_run(data, size, max_message, allow_rsv1, stop, 2, 0, &bytes, 0, 0);
        FUZZ_CHECK(rc_whole == rc_bytes);
        FUZZ_CHECK(whole.len == bytes.len && (whole.len == 0 ||
                   memcmp(whole.buf, bytes.buf, whole.len) == 0));
        free(bytes.buf);
    }
    free(whole.buf);
    return 0;
}
