/*
 * test_proto.c — unit tests for the protocol library (proto/push_proto.c):
 * value validation and formatting, JSON publish requests, and multipart
 * frames over a real ZeroMQ inproc PAIR socket pair.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <cmocka.h>
#include <zmq.h>

#include "push_proto.h"

#define S(lit) (lit), (sizeof(lit) - 1)

/* ======================================================================== */
/* push_channel_valid                                                        */
/* ======================================================================== */

static void test_channel_valid_accepts_allowed_chars(void **state)
{
    (void)state;
    assert_int_equal(push_channel_valid(S("a")), 1);
    assert_int_equal(push_channel_valid(S("news")), 1);
    assert_int_equal(push_channel_valid(S("abcdefghijklmnopqrstuvwxyz")), 1);
    assert_int_equal(push_channel_valid(S("ABCDEFGHIJKLMNOPQRSTUVWXYZ")), 1);
    assert_int_equal(push_channel_valid(S("0123456789")), 1);
    assert_int_equal(push_channel_valid(S("_")), 1);
    assert_int_equal(push_channel_valid(S(".")), 1);
    assert_int_equal(push_channel_valid(S(":")), 1);
    assert_int_equal(push_channel_valid(S("@")), 1);
    assert_int_equal(push_channel_valid(S("~")), 1);
    assert_int_equal(push_channel_valid(S("-")), 1);
    assert_int_equal(push_channel_valid(S("user@host:room.1~x-y_z")), 1);
}

static void test_channel_valid_rejects_other_chars(void **state)
{
    (void)state;
    const char *bad = " /#?&%+=!\"'()*,;<>[]\\^`{|}$\t\r\n\x7f";
    for (const char *p = bad; *p; p++) {
        char name[3] = { 'a', *p, 'b' };
        if (push_channel_valid(name, 3) != 0)
            fail_msg("channel with byte 0x%02x accepted", (unsigned char)*p);
    }
    for (int ch = 0x80; ch <= 0xff; ch++) {
        char name[1] = { (char)ch };
        if (push_channel_valid(name, 1) != 0)
            fail_msg("channel with byte 0x%02x accepted", ch);
    }
    /* UTF-8 letter */
    assert_int_equal(push_channel_valid(S("caf\xc3\xa9")), 0);
    /* an embedded NUL is not in the allowed set */
    assert_int_equal(push_channel_valid("a\0b", 3), 0);
    assert_int_equal(push_channel_valid("\0", 1), 0);
}

static void test_channel_valid_length_limits(void **state)
{
    (void)state;
    char name[PUSH_CHANNEL_MAX + 2];
    memset(name, 'c', sizeof name);
    assert_int_equal(push_channel_valid(name, 0), 0);
    assert_int_equal(push_channel_valid(name, 1), 1);
    assert_int_equal(push_channel_valid(name, PUSH_CHANNEL_MAX - 1), 1);
    assert_int_equal(push_channel_valid(name, PUSH_CHANNEL_MAX), 1);
    assert_int_equal(push_channel_valid(name, PUSH_CHANNEL_MAX + 1), 0);
    assert_int_equal(push_channel_valid(NULL, 0), 0);
    assert_int_equal(push_channel_valid(NULL, 5), 0);
}

static void test_channel_valid_uses_len_not_nul(void **state)
{
    (void)state;
    /* only the first len bytes count */
    assert_int_equal(push_channel_valid("abc def", 3), 1);
    assert_int_equal(push_channel_valid("abc def", 4), 0);
    assert_int_equal(push_channel_valid("abc def", 7), 0);
}

/* ======================================================================== */
/* push_event_valid                                                          */
/* ======================================================================== */

static void test_event_valid(void **state)
{
    (void)state;
    assert_int_equal(push_event_valid(S("")), 1);
    assert_int_equal(push_event_valid(NULL, 0), 1);
    assert_int_equal(push_event_valid(NULL, 1), 0);
    assert_int_equal(push_event_valid(S("update")), 1);
    assert_int_equal(push_event_valid(S("!")), 1);
    assert_int_equal(push_event_valid(S("~")), 1);
    assert_int_equal(push_event_valid(S("a/b:c{d}\"e\"")), 1);
    /* every printable ASCII byte except space */
    for (int ch = 0x21; ch <= 0x7e; ch++) {
        char n[1] = { (char)ch };
        if (push_event_valid(n, 1) != 1)
            fail_msg("event byte 0x%02x rejected", ch);
    }
    /* control bytes, space, DEL and non-ASCII */
    for (int ch = 0; ch <= 0x20; ch++) {
        char n[3] = { 'a', (char)ch, 'b' };
        if (push_event_valid(n, 3) != 0)
            fail_msg("event byte 0x%02x accepted", ch);
    }
    for (int ch = 0x7f; ch <= 0xff; ch++) {
        char n[3] = { 'a', (char)ch, 'b' };
        if (push_event_valid(n, 3) != 0)
            fail_msg("event byte 0x%02x accepted", ch);
    }
    assert_int_equal(push_event_valid(S("a b")), 0);
    assert_int_equal(push_event_valid(S("a\r")), 0);
    assert_int_equal(push_event_valid(S("a\n")), 0);
}

static void test_event_valid_length_limits(void **state)
{
    (void)state;
    char name[PUSH_EVENT_MAX + 2];
    memset(name, 'e', sizeof name);
    assert_int_equal(push_event_valid(name, PUSH_EVENT_MAX), 1);
    assert_int_equal(push_event_valid(name, PUSH_EVENT_MAX + 1), 0);
    /* len is authoritative */
    assert_int_equal(push_event_valid("ab cd", 2), 1);
}

/* ======================================================================== */
/* push_parse_u64 / push_fmt_u64                                             */
/* ======================================================================== */

static void test_parse_u64_valid(void **state)
{
    (void)state;
    uint64_t v = 77;
    assert_int_equal(push_parse_u64(S("0"), &v), 0);
    assert_int_equal(v, 0);
    assert_int_equal(push_parse_u64(S("1"), &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(push_parse_u64(S("123456789"), &v), 0);
    assert_int_equal(v, 123456789u);
    assert_int_equal(push_parse_u64(S("007"), &v), 0);
    assert_int_equal(v, 7);
    assert_int_equal(push_parse_u64(S("9223372036854775807"), &v), 0);
    assert_true(v == (uint64_t)INT64_MAX);
    assert_int_equal(push_parse_u64(S("9223372036854775806"), &v), 0);
    assert_true(v == (uint64_t)INT64_MAX - 1);
    assert_int_equal(push_parse_u64(S("1000000000000000000"), &v), 0);
    assert_true(v == 1000000000000000000ull);
    /* only len bytes are read */
    assert_int_equal(push_parse_u64("42abc", 2, &v), 0);
    assert_int_equal(v, 42);
    assert_int_equal(push_parse_u64("9223372036854775807999", 19, &v), 0);
    assert_true(v == (uint64_t)INT64_MAX);
}

static void s_parse_fails(const char *s, size_t len)
{
    uint64_t v = 0xdeadbeefull;
    if (push_parse_u64(s, len, &v) != -1)
        fail_msg("push_parse_u64(\"%.*s\") did not fail", (int)len, s ? s : "(null)");
    if (v != 0xdeadbeefull)
        fail_msg("push_parse_u64(\"%.*s\") wrote its output on failure", (int)len, s ? s : "");
}

static void test_parse_u64_invalid(void **state)
{
    (void)state;
    s_parse_fails(NULL, 0);
    s_parse_fails(NULL, 3);
    s_parse_fails("", 0);
    s_parse_fails("123", 0);
    s_parse_fails(S("-1"));
    s_parse_fails(S("+1"));
    s_parse_fails(S(" 1"));
    s_parse_fails(S("1 "));
    s_parse_fails(S("1a"));
    s_parse_fails(S("0x10"));
    s_parse_fails(S("1.0"));
    s_parse_fails(S("1e3"));
    s_parse_fails("1\0" "2", 3);
    s_parse_fails(S("9223372036854775808"));    /* 2^63 */
    s_parse_fails(S("9999999999999999999"));    /* 19 digits, > 2^63-1 */
    s_parse_fails(S("18446744073709551615"));   /* 2^64-1 */
    s_parse_fails(S("18446744073709551616"));   /* 2^64: would wrap to 0 */
    s_parse_fails(S("36893488147419103232"));   /* 2^65: would wrap to 0 */
    s_parse_fails(S("99999999999999999999"));
    s_parse_fails(S("123456789012345678901234567890"));
}

/* "decimal digits only, no sign, no spaces, value <= 2^63-1": leading zeros
 * are digits, so a zero-padded small value is within the contract whatever
 * its length. */
static void test_parse_u64_zero_padded_20_digits(void **state)
{
    (void)state;
    uint64_t v = 99;
    assert_int_equal(push_parse_u64(S("0000000000000000001"), &v), 0);   /* 19 chars */
    assert_int_equal(v, 1);
    v = 99;
    assert_int_equal(push_parse_u64(S("00000000000000000001"), &v), 0);  /* 20 chars */
    assert_int_equal(v, 1);
}

static void s_fmt(uint64_t v, const char *expect)
{
    char buf[32];
    memset(buf, 'X', sizeof buf);
    int n = push_fmt_u64(buf, v);
    assert_int_equal(n, (int)strlen(expect));
    assert_string_equal(buf, expect);
    /* nothing written beyond the terminating NUL */
    for (size_t i = (size_t)n + 1; i < sizeof buf; i++)
        assert_int_equal(buf[i], 'X');
}

static void test_fmt_u64(void **state)
{
    (void)state;
    s_fmt(0, "0");
    s_fmt(7, "7");
    s_fmt(9, "9");
    s_fmt(10, "10");
    s_fmt(100, "100");
    s_fmt(1234567890, "1234567890");
    s_fmt((uint64_t)INT64_MAX, "9223372036854775807");
    s_fmt(UINT64_MAX, "18446744073709551615");
}

static void test_fmt_parse_round_trip(void **state)
{
    (void)state;
    uint64_t vals[] = { 0, 1, 9, 10, 99, 100, 65535, 4294967296ull, 999999999999ull,
                        (uint64_t)INT64_MAX - 1, (uint64_t)INT64_MAX };
    for (size_t i = 0; i < sizeof vals / sizeof vals[0]; i++) {
        char buf[21];
        int n = push_fmt_u64(buf, vals[i]);
        uint64_t back = 0xabcdef;
        assert_int_equal(push_parse_u64(buf, (size_t)n, &back), 0);
        assert_true(back == vals[i]);
    }
    /* 21 bytes suffice for the largest value */
    char buf[21];
    assert_int_equal(push_fmt_u64(buf, UINT64_MAX), 20);
    assert_int_equal(buf[20], '\0');
}

/* ======================================================================== */
/* push_publish_req_decode                                                   */
/* ======================================================================== */

static char s_sentinel_a, s_sentinel_b, s_sentinel_c;

static void s_req_poison(push_publish_req *r)
{
    r->channel = &s_sentinel_a;
    r->event = &s_sentinel_b;
    r->data = &s_sentinel_c;
    r->data_len = 4242;
}

static void s_decode_fails(const char *json, size_t len, int need_channel,
                           const char *code, const char *msg)
{
    push_publish_req r;
    s_req_poison(&r);
    const char *c = NULL, *m = NULL;
    int rc = push_publish_req_decode(json, len, need_channel, &r, &c, &m);
    if (rc == 0)
        push_publish_req_free(&r);
    if (rc != -1)
        fail_msg("decode of %.*s returned %d, expected -1", (int)len, json, rc);
    if (!c || strcmp(c, code) != 0)
        fail_msg("decode of %.*s: code '%s', expected '%s'", (int)len, json, c ? c : "(null)", code);
    if (!m || strcmp(m, msg) != 0)
        fail_msg("decode of %.*s: message '%s', expected '%s'", (int)len, json, m ? m : "(null)", msg);
    /* outputs untouched on failure */
    assert_ptr_equal(r.channel, &s_sentinel_a);
    assert_ptr_equal(r.event, &s_sentinel_b);
    assert_ptr_equal(r.data, &s_sentinel_c);
    assert_int_equal(r.data_len, 4242);
}

#define DECODE_FAILS(json, need, code, msg) s_decode_fails(S(json), need, code, msg)

static void s_decode_ok(const char *json, size_t len, int need_channel, push_publish_req *r)
{
    const char *c = "untouched-code", *m = "untouched-msg";
    const char *c0 = c, *m0 = m;
    s_req_poison(r);
    int rc = push_publish_req_decode(json, len, need_channel, r, &c, &m);
    if (rc != 0)
        fail_msg("decode of %.*s failed: %s: %s", (int)len, json, c, m);
    /* error outputs untouched on success */
    assert_ptr_equal(c, c0);
    assert_ptr_equal(m, m0);
}

static void test_publish_decode_full(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("{\"op\":\"publish\",\"channel\":\"news\",\"data\":\"hello world\","
                  "\"event\":\"update\"}"), 1, &r);
    assert_string_equal(r.channel, "news");
    assert_string_equal(r.event, "update");
    assert_string_equal(r.data, "hello world");
    assert_int_equal(r.data_len, 11);
    push_publish_req_free(&r);
    assert_null(r.channel);
    assert_null(r.event);
    assert_null(r.data);
    assert_int_equal(r.data_len, 0);
    /* freeing twice is harmless after the first free reset the struct */
    push_publish_req_free(&r);
    assert_null(r.data);
}

static void test_publish_decode_without_event(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\"}"), 1, &r);
    assert_string_equal(r.channel, "c");
    assert_null(r.event);
    assert_string_equal(r.data, "x");
    assert_int_equal(r.data_len, 1);
    push_publish_req_free(&r);

    s_decode_ok(S("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":null}"), 1, &r);
    assert_null(r.event);
    assert_string_equal(r.data, "x");
    push_publish_req_free(&r);

    s_decode_ok(S("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"\"}"), 1, &r);
    assert_null(r.event);
    assert_string_equal(r.data, "x");
    push_publish_req_free(&r);
}

static void test_publish_decode_field_order_and_extras(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("  {\"event\":\"e\", \"extra\":[1,2,{}], \"data\":\"d\",\n"
                  "\"channel\":\"ch-1\", \"op\":\"publish\"}  "), 1, &r);
    assert_string_equal(r.channel, "ch-1");
    assert_string_equal(r.event, "e");
    assert_string_equal(r.data, "d");
    assert_int_equal(r.data_len, 1);
    push_publish_req_free(&r);
}

static void test_publish_decode_no_channel_needed(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("{\"data\":\"payload\"}"), 0, &r);
    assert_null(r.channel);
    assert_null(r.event);
    assert_string_equal(r.data, "payload");
    assert_int_equal(r.data_len, 7);
    push_publish_req_free(&r);

    /* op and channel are neither required nor checked nor copied */
    s_decode_ok(S("{\"op\":\"other\",\"channel\":\"bad channel!\",\"data\":\"p\",\"event\":\"ev\"}"),
                0, &r);
    assert_null(r.channel);
    assert_string_equal(r.event, "ev");
    assert_string_equal(r.data, "p");
    push_publish_req_free(&r);

    /* data and event are still checked */
    DECODE_FAILS("{\"channel\":\"c\"}", 0, PUSH_ERR_BAD_REQUEST, "\"data\" must be a string");
    DECODE_FAILS("{\"data\":\"x\",\"event\":\"a b\"}", 0, PUSH_ERR_BAD_REQUEST,
                 "\"event\" must be a short token");
}

static void test_publish_decode_data_unescaped(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("{\"data\":\"line1\\nline2\\t\\\"q\\\" \\\\ \\u00e9 \\ud83d\\ude00 \xe2\x82\xac\"}"),
                0, &r);
    const char expect[] = "line1\nline2\t\"q\" \\ \xc3\xa9 \xf0\x9f\x98\x80 \xe2\x82\xac";
    assert_int_equal(r.data_len, sizeof expect - 1);
    assert_memory_equal(r.data, expect, sizeof expect);   /* includes the NUL */
    push_publish_req_free(&r);

    s_decode_ok(S("{\"data\":\"\"}"), 0, &r);
    assert_non_null(r.data);
    assert_string_equal(r.data, "");
    assert_int_equal(r.data_len, 0);
    push_publish_req_free(&r);
}

static void test_publish_decode_respects_len(void **state)
{
    (void)state;
    push_publish_req r;
    /* the buffer goes on, but len ends after the object */
    const char buf[] = "{\"data\":\"abc\"}{\"data\":";
    s_decode_ok(buf, 14, 0, &r);
    assert_string_equal(r.data, "abc");
    assert_int_equal(r.data_len, 3);
    push_publish_req_free(&r);

    /* len cuts the object short */
    s_decode_fails(buf, 13, 0, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    /* no NUL terminator at all */
    char raw[14];
    memcpy(raw, "{\"data\":\"abc\"}", 14);
    s_decode_ok(raw, sizeof raw, 0, &r);
    assert_string_equal(r.data, "abc");
    push_publish_req_free(&r);
}

static void test_publish_decode_malformed(void **state)
{
    (void)state;
    DECODE_FAILS("", 1, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("{", 1, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("{\"op\":", 1, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("{\"data\":\"x\",}", 0, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("{'data':'x'}", 0, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("publish news hello", 1, PUSH_ERR_BAD_REQUEST, "malformed JSON");
}

static void test_publish_decode_not_object(void **state)
{
    (void)state;
    DECODE_FAILS("[]", 1, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    DECODE_FAILS("[{\"data\":\"x\"}]", 0, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    DECODE_FAILS("\"data\"", 0, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    DECODE_FAILS("42", 1, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    DECODE_FAILS("null", 1, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    DECODE_FAILS("true", 0, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
}

static void test_publish_decode_bad_op(void **state)
{
    (void)state;
    const char *msg = "\"op\" must be \"publish\"";
    DECODE_FAILS("{\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"PUBLISH\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"publishx\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"publ\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":1,\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":null,\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":[\"publish\"],\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"history\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    /* keys are case sensitive */
    DECODE_FAILS("{\"OP\":\"publish\",\"channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    /* the op is checked before anything else */
    DECODE_FAILS("{\"op\":\"x\"}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
    DECODE_FAILS("{\"op\":\"x\",\"channel\":\"bad channel\",\"data\":1}", 1, PUSH_ERR_UNKNOWN_CMD, msg);
}

static void test_publish_decode_bad_channel(void **state)
{
    (void)state;
    const char *type_msg = "\"channel\" must be a string";
    const char *name_msg = "invalid channel name";
    DECODE_FAILS("{\"op\":\"publish\",\"data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, type_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":5,\"data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, type_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":null,\"data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, type_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":[\"c\"],\"data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, type_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"Channel\":\"c\",\"data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, type_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"\",\"data\":\"x\"}", 1, PUSH_ERR_BAD_CHANNEL, name_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"a b\",\"data\":\"x\"}", 1, PUSH_ERR_BAD_CHANNEL, name_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"a/b\",\"data\":\"x\"}", 1, PUSH_ERR_BAD_CHANNEL, name_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"caf\\u00e9\",\"data\":\"x\"}", 1,
                 PUSH_ERR_BAD_CHANNEL, name_msg);
    /* the channel is checked before the data */
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"a b\"}", 1, PUSH_ERR_BAD_CHANNEL, name_msg);
    DECODE_FAILS("{\"op\":\"publish\",\"data\":5}", 1, PUSH_ERR_BAD_REQUEST, type_msg);

    /* length limit */
    char json[512], name[PUSH_CHANNEL_MAX + 2];
    memset(name, 'n', sizeof name);
    name[PUSH_CHANNEL_MAX] = '\0';
    int n = snprintf(json, sizeof json, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":\"x\"}", name);
    push_publish_req r;
    s_decode_ok(json, (size_t)n, 1, &r);
    assert_int_equal(strlen(r.channel), PUSH_CHANNEL_MAX);
    assert_string_equal(r.channel, name);
    push_publish_req_free(&r);
    name[PUSH_CHANNEL_MAX] = 'n';
    name[PUSH_CHANNEL_MAX + 1] = '\0';
    n = snprintf(json, sizeof json, "{\"op\":\"publish\",\"channel\":\"%s\",\"data\":\"x\"}", name);
    s_decode_fails(json, (size_t)n, 1, PUSH_ERR_BAD_CHANNEL, name_msg);
}

/* The header: "A request holding an escaped NUL (\u0000) is refused, since
 * the strings are NUL-terminated". */
#define NUL_MSG "NUL characters (\\u0000) are not allowed in JSON requests"

static void test_publish_decode_escaped_nul_refused(void **state)
{
    (void)state;
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"news\\u0000evil\",\"data\":\"x\"}", 1,
                 PUSH_ERR_BAD_REQUEST, NUL_MSG);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"ok\\u0000 no\"}", 1,
                 PUSH_ERR_BAD_REQUEST, NUL_MSG);
    DECODE_FAILS("{\"data\":\"a\\u0000b\"}", 0, PUSH_ERR_BAD_REQUEST, NUL_MSG);
    DECODE_FAILS("{\"data\":\"\\u0000\"}", 0, PUSH_ERR_BAD_REQUEST, NUL_MSG);
    /* even in a field nobody reads */
    DECODE_FAILS("{\"data\":\"x\",\"extra\":\"\\u0000\"}", 0, PUSH_ERR_BAD_REQUEST, NUL_MSG);
}

/* An escaped backslash followed by the text u0000 is no NUL. */
static void test_publish_decode_escaped_backslash_u0000_accepted(void **state)
{
    (void)state;
    push_publish_req r;
    s_decode_ok(S("{\"data\":\"\\\\u0000\"}"), 0, &r);
    assert_int_equal(r.data_len, 6);
    assert_string_equal(r.data, "\\u0000");
    push_publish_req_free(&r);
    s_decode_ok(S("{\"data\":\"a\\\\\\u0001\"}"), 0, &r);   /* a \\ \u0001 */
    assert_int_equal(r.data_len, 3);
    assert_memory_equal(r.data, "a\\\x01", 4);
    push_publish_req_free(&r);
    /* \u0000 split over the len boundary is not looked at beyond len */
    const char buf[] = "{\"data\":\"x\"}\\u0000";
    s_decode_ok(buf, 12, 0, &r);
    assert_string_equal(r.data, "x");
    push_publish_req_free(&r);
}

/* A raw (unescaped) NUL byte inside a JSON string is not valid JSON
 * (RFC 8259 §7: control characters must be escaped) and, like an escaped
 * NUL, would cut the NUL-terminated strings short.  It must be refused with
 * bad_request, not decoded as the prefix before the NUL. */
static void s_raw_nul_refused(const char *json, size_t len, int need_channel)
{
    push_publish_req r;
    s_req_poison(&r);
    const char *c = NULL, *m = NULL;
    int rc = push_publish_req_decode(json, len, need_channel, &r, &c, &m);
    if (rc == 0) {
        char got[64];
        snprintf(got, sizeof got, "channel \"%s\" data \"%s\" (%zu bytes)",
                 r.channel ? r.channel : "(null)", r.data, r.data_len);
        push_publish_req_free(&r);
        fail_msg("JSON with a raw NUL byte accepted: %s", got);
    }
    assert_int_equal(rc, -1);
    assert_string_equal(c, PUSH_ERR_BAD_REQUEST);
    if (strcmp(m, "malformed JSON") != 0 && strcmp(m, NUL_MSG) != 0)
        fail_msg("unexpected message '%s'", m);
    assert_ptr_equal(r.data, &s_sentinel_c);
}

static void test_publish_decode_raw_nul_in_data(void **state)
{
    (void)state;
    const char json[] = "{\"data\":\"a\0b\"}";
    s_raw_nul_refused(json, sizeof json - 1, 0);
}

static void test_publish_decode_raw_nul_in_channel(void **state)
{
    (void)state;
    const char json[] = "{\"op\":\"publish\",\"channel\":\"news\0evil\",\"data\":\"x\"}";
    s_raw_nul_refused(json, sizeof json - 1, 1);
}

/* Text after the object is not JSON (RFC 8259: one value per text). */
static void test_publish_decode_trailing_garbage(void **state)
{
    (void)state;
    DECODE_FAILS("{\"data\":\"x\"} trailing", 0, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    DECODE_FAILS("{\"data\":\"x\"}{\"data\":\"y\"}", 0, PUSH_ERR_BAD_REQUEST, "malformed JSON");
}

static void test_publish_decode_bad_data(void **state)
{
    (void)state;
    const char *msg = "\"data\" must be a string";
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\"}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":1}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":null}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":true}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":{\"a\":1}}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":[\"x\"]}", 1, PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"Data\":\"x\"}", 1, PUSH_ERR_BAD_REQUEST, msg);
    /* data is checked before the event */
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"event\":\"a b\"}", 1, PUSH_ERR_BAD_REQUEST, msg);
}

static void test_publish_decode_bad_event(void **state)
{
    (void)state;
    const char *msg = "\"event\" must be a short token";
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":5}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":false}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":[\"e\"]}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"a b\"}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"a\\nb\"}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"a\\rb\"}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);
    DECODE_FAILS("{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\",\"event\":\"\\u00e9\"}", 1,
                 PUSH_ERR_BAD_REQUEST, msg);

    char json[512], ev[PUSH_EVENT_MAX + 2];
    memset(ev, 'e', sizeof ev);
    ev[PUSH_EVENT_MAX] = '\0';
    int n = snprintf(json, sizeof json, "{\"data\":\"x\",\"event\":\"%s\"}", ev);
    push_publish_req r;
    s_decode_ok(json, (size_t)n, 0, &r);
    assert_string_equal(r.event, ev);
    push_publish_req_free(&r);
    ev[PUSH_EVENT_MAX] = 'e';
    ev[PUSH_EVENT_MAX + 1] = '\0';
    n = snprintf(json, sizeof json, "{\"data\":\"x\",\"event\":\"%s\"}", ev);
    s_decode_fails(json, (size_t)n, 0, PUSH_ERR_BAD_REQUEST, msg);
}

/* ======================================================================== */
/* frames over a real ZeroMQ inproc PAIR pair                                */
/* ======================================================================== */

typedef struct zpair {
    void *ctx, *a, *b;
} zpair;

static int s_zsetup(void **state)
{
    static int seq;
    char ep[64];
    zpair *z = calloc(1, sizeof *z);
    if (!z)
        return -1;
    z->ctx = zmq_ctx_new();
    z->a = zmq_socket(z->ctx, ZMQ_PAIR);
    z->b = zmq_socket(z->ctx, ZMQ_PAIR);
    int zero = 0, linger = 0;
    zmq_setsockopt(z->a, ZMQ_SNDHWM, &zero, sizeof zero);
    zmq_setsockopt(z->b, ZMQ_RCVHWM, &zero, sizeof zero);
    zmq_setsockopt(z->a, ZMQ_LINGER, &linger, sizeof linger);
    zmq_setsockopt(z->b, ZMQ_LINGER, &linger, sizeof linger);
    snprintf(ep, sizeof ep, "inproc://test-proto-%d", seq++);
    if (zmq_bind(z->b, ep) != 0 || zmq_connect(z->a, ep) != 0)
        return -1;
    *state = z;
    return 0;
}

static int s_zteardown(void **state)
{
    zpair *z = *state;
    zmq_close(z->a);
    zmq_close(z->b);
    zmq_ctx_term(z->ctx);
    free(z);
    return 0;
}

/* Receive with a bounded wait so a broken implementation cannot hang. */
static int s_recv(void *sock, push_frames *f)
{
    zmq_pollitem_t it = { sock, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll(&it, 1, 5000) != 1)
        fail_msg("nothing to receive within 5 s");
    return push_frames_recv(sock, f, ZMQ_DONTWAIT);
}

static void test_frames_round_trip(void **state)
{
    zpair *z = *state;
    const char bin[] = { 'x', '\0', 'y', '\xff' };
    push_frame out[4] = {
        push_str_frame("PUB"),
        push_str_frame("news"),
        { bin, sizeof bin },
        push_str_frame(NULL),
    };
    assert_int_equal(push_send_frames(z->a, out, 4, 0), 0);

    push_frames f;
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 4);
    assert_non_null(f.frame);
    assert_int_equal(f.frame[0].size, 3);
    assert_memory_equal(f.frame[0].data, "PUB", 3);
    assert_int_equal(f.frame[1].size, 4);
    assert_memory_equal(f.frame[1].data, "news", 4);
    assert_int_equal(f.frame[2].size, 4);
    assert_memory_equal(f.frame[2].data, bin, 4);
    assert_int_equal(f.frame[3].size, 0);

    assert_int_equal(push_frame_is(&f, 0, "PUB"), 1);
    assert_int_equal(push_frame_is(&f, 1, "news"), 1);
    assert_int_equal(push_frame_is(&f, 3, ""), 1);
    push_frames_close(&f);
    assert_int_equal(f.count, 0);
    assert_null(f.frame);
    assert_null(f.msgs);

    /* one message only: nothing left */
    push_frames g = { 99, NULL, NULL };
    errno = 0;
    assert_int_equal(push_frames_recv(z->b, &g, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(g.count, 99);
}

static void test_frames_single_and_messages_kept_apart(void **state)
{
    zpair *z = *state;
    push_frame one = push_str_frame("PING");
    push_frame two[2] = { push_str_frame("OK"), push_str_frame("7") };
    assert_int_equal(push_send_frames(z->a, &one, 1, 0), 0);
    assert_int_equal(push_send_frames(z->a, two, 2, 0), 0);
    assert_int_equal(push_send_frames(z->a, &one, 1, ZMQ_DONTWAIT), 0);

    push_frames f;
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 1);
    assert_int_equal(push_frame_is(&f, 0, "PING"), 1);
    push_frames_close(&f);

    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 2);
    assert_int_equal(push_frame_is(&f, 0, "OK"), 1);
    assert_int_equal(push_frame_is(&f, 1, "7"), 1);
    push_frames_close(&f);

    /* blocking receive of a message already there */
    assert_int_equal(push_frames_recv(z->b, &f, 0), 0);
    assert_int_equal(f.count, 1);
    assert_int_equal(push_frame_is(&f, 0, "PING"), 1);
    push_frames_close(&f);
}

static void test_frames_recv_eagain_leaves_output(void **state)
{
    zpair *z = *state;
    push_frame junk = { (const char *)0x1, 0 };
    push_frames f = { 12345, &junk, (void *)&junk };
    errno = 0;
    assert_int_equal(push_frames_recv(z->b, &f, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(f.count, 12345);
    assert_ptr_equal(f.frame, &junk);
    assert_ptr_equal(f.msgs, &junk);
}

static void test_frame_is(void **state)
{
    zpair *z = *state;
    push_frame out[3] = { push_str_frame("PUB"), push_str_frame("pub"), push_str_frame("") };
    assert_int_equal(push_send_frames(z->a, out, 3, 0), 0);
    push_frames f;
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 3);
    assert_int_equal(push_frame_is(&f, 0, "PUB"), 1);
    assert_int_equal(push_frame_is(&f, 0, "pub"), 0);   /* case sensitive */
    assert_int_equal(push_frame_is(&f, 0, "PU"), 0);    /* prefix */
    assert_int_equal(push_frame_is(&f, 0, "PUBX"), 0);  /* longer */
    assert_int_equal(push_frame_is(&f, 0, ""), 0);
    assert_int_equal(push_frame_is(&f, 1, "pub"), 1);
    assert_int_equal(push_frame_is(&f, 1, "PUB"), 0);
    assert_int_equal(push_frame_is(&f, 2, ""), 1);
    assert_int_equal(push_frame_is(&f, 2, "PUB"), 0);
    assert_int_equal(push_frame_is(&f, 3, "PUB"), 0);   /* does not exist */
    assert_int_equal(push_frame_is(&f, 3, ""), 0);
    assert_int_equal(push_frame_is(&f, 1000, ""), 0);
    push_frames_close(&f);
}

/* "True when frame i exists": there is no frame -1.  The frames struct is
 * laid out over a bigger array so that a read of frame[-1] touches valid
 * memory (no crash) and shows up as a wrong answer. */
static void test_frame_is_negative_index(void **state)
{
    (void)state;
    push_frame arr[3] = { push_str_frame("PUB"), push_str_frame("a"), push_str_frame("b") };
    push_frames f = { 2, arr + 1, NULL };
    assert_int_equal(push_frame_is(&f, 0, "a"), 1);
    assert_int_equal(push_frame_is(&f, 1, "b"), 1);
    assert_int_equal(push_frame_is(&f, -1, "PUB"), 0);
}

static void test_str_frame(void **state)
{
    (void)state;
    push_frame f = push_str_frame("hello");
    assert_int_equal(f.size, 5);
    assert_memory_equal(f.data, "hello", 5);
    f = push_str_frame("");
    assert_int_equal(f.size, 0);
    assert_non_null(f.data);
    f = push_str_frame(NULL);
    assert_int_equal(f.size, 0);
    assert_non_null(f.data);
    assert_string_equal(f.data, "");
}

static void s_send_n_frames(void *sock, int n, const char *tag)
{
    push_frame *fr = calloc((size_t)n, sizeof *fr);
    char (*text)[16] = calloc((size_t)n, sizeof *text);
    assert_non_null(fr);
    assert_non_null(text);
    for (int i = 0; i < n; i++) {
        snprintf(text[i], sizeof text[i], "%s%d", tag, i);
        fr[i] = push_str_frame(text[i]);
    }
    assert_int_equal(push_send_frames(sock, fr, n, 0), 0);
    free(text);
    free(fr);
}

static void test_frames_exactly_max(void **state)
{
    zpair *z = *state;
    s_send_n_frames(z->a, PUSH_MAX_FRAMES, "f");
    push_frames f;
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, PUSH_MAX_FRAMES);
    for (int i = 0; i < PUSH_MAX_FRAMES; i++) {
        char want[16];
        snprintf(want, sizeof want, "f%d", i);
        if (!push_frame_is(&f, i, want))
            fail_msg("frame %d is '%.*s', expected '%s'", i, (int)f.frame[i].size,
                     f.frame[i].data, want);
    }
    push_frames_close(&f);
}

/* "EPROTO when the message has more than PUSH_MAX_FRAMES frames": one frame
 * over the limit is already too many. */
static void test_frames_max_plus_one_is_eproto(void **state)
{
    zpair *z = *state;
    s_send_n_frames(z->a, PUSH_MAX_FRAMES + 1, "x");
    push_frame next[2] = { push_str_frame("NEXT"), push_str_frame("ok") };
    assert_int_equal(push_send_frames(z->a, next, 2, 0), 0);

    push_frame junk = { "junk", 4 };
    push_frames f = { -7, &junk, NULL };
    errno = 0;
    int rc = s_recv(z->b, &f);
    if (rc == 0) {
        int count = f.count;
        push_frames_close(&f);
        fail_msg("a message of PUSH_MAX_FRAMES+1 = %d frames was accepted (count %d), "
                 "expected -1/EPROTO", PUSH_MAX_FRAMES + 1, count);
    }
    assert_int_equal(rc, -1);
    assert_int_equal(errno, EPROTO);
    /* output untouched */
    assert_int_equal(f.count, -7);
    assert_ptr_equal(f.frame, &junk);
    assert_null(f.msgs);

    /* the rest of the oversized message was dropped: the next one is whole */
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 2);
    assert_int_equal(push_frame_is(&f, 0, "NEXT"), 1);
    assert_int_equal(push_frame_is(&f, 1, "ok"), 1);
    push_frames_close(&f);
}

/* Far over the limit (past any internal array size): EPROTO, the tail is
 * dropped, and the socket serves the next message. */
static void test_frames_far_over_max_is_eproto_and_socket_survives(void **state)
{
    zpair *z = *state;
    s_send_n_frames(z->a, 3 * PUSH_MAX_FRAMES + 5, "y");
    s_send_n_frames(z->a, 3, "z");

    push_frame junk = { "junk", 4 };
    push_frames f = { -7, &junk, NULL };
    errno = 0;
    assert_int_equal(s_recv(z->b, &f), -1);
    assert_int_equal(errno, EPROTO);
    assert_int_equal(f.count, -7);
    assert_ptr_equal(f.frame, &junk);
    assert_null(f.msgs);

    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, 3);
    assert_int_equal(push_frame_is(&f, 0, "z0"), 1);
    assert_int_equal(push_frame_is(&f, 1, "z1"), 1);
    assert_int_equal(push_frame_is(&f, 2, "z2"), 1);
    push_frames_close(&f);

    /* nothing else is pending */
    push_frames g = { 5, NULL, NULL };
    errno = 0;
    assert_int_equal(push_frames_recv(z->b, &g, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(g.count, 5);

    /* and a message of exactly the limit still goes through afterwards */
    s_send_n_frames(z->a, PUSH_MAX_FRAMES, "w");
    assert_int_equal(s_recv(z->b, &f), 0);
    assert_int_equal(f.count, PUSH_MAX_FRAMES);
    char last[16];
    snprintf(last, sizeof last, "w%d", PUSH_MAX_FRAMES - 1);
    assert_int_equal(push_frame_is(&f, PUSH_MAX_FRAMES - 1, last), 1);
    push_frames_close(&f);
}

static void test_send_frames_error(void **state)
{
    (void)state;
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_PAIR);
    int linger = 0;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    /* a PAIR socket with no peer cannot send; DONTWAIT makes that EAGAIN */
    push_frame fr[2] = { push_str_frame("A"), push_str_frame("B") };
    errno = 0;
    assert_int_equal(push_send_frames(s, fr, 2, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    /* nothing was half-sent: once a peer connects it gets nothing */
    void *peer = zmq_socket(ctx, ZMQ_PAIR);
    zmq_setsockopt(peer, ZMQ_LINGER, &linger, sizeof linger);
    assert_int_equal(zmq_bind(peer, "inproc://test-proto-unsent"), 0);
    assert_int_equal(zmq_connect(s, "inproc://test-proto-unsent"), 0);
    assert_int_equal(push_send_frames(s, fr + 1, 1, 0), 0);
    push_frames f;
    assert_int_equal(s_recv(peer, &f), 0);
    assert_int_equal(f.count, 1);
    assert_int_equal(push_frame_is(&f, 0, "B"), 1);
    push_frames_close(&f);
    zmq_close(peer);
    zmq_close(s);
    zmq_ctx_term(ctx);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_channel_valid_accepts_allowed_chars),
        cmocka_unit_test(test_channel_valid_rejects_other_chars),
        cmocka_unit_test(test_channel_valid_length_limits),
        cmocka_unit_test(test_channel_valid_uses_len_not_nul),
        cmocka_unit_test(test_event_valid),
        cmocka_unit_test(test_event_valid_length_limits),
        cmocka_unit_test(test_parse_u64_valid),
        cmocka_unit_test(test_parse_u64_invalid),
        cmocka_unit_test(test_parse_u64_zero_padded_20_digits),
        cmocka_unit_test(test_fmt_u64),
        cmocka_unit_test(test_fmt_parse_round_trip),
        cmocka_unit_test(test_publish_decode_full),
        cmocka_unit_test(test_publish_decode_without_event),
        cmocka_unit_test(test_publish_decode_field_order_and_extras),
        cmocka_unit_test(test_publish_decode_no_channel_needed),
        cmocka_unit_test(test_publish_decode_data_unescaped),
        cmocka_unit_test(test_publish_decode_respects_len),
        cmocka_unit_test(test_publish_decode_malformed),
        cmocka_unit_test(test_publish_decode_not_object),
        cmocka_unit_test(test_publish_decode_bad_op),
        cmocka_unit_test(test_publish_decode_bad_channel),
        cmocka_unit_test(test_publish_decode_bad_data),
        cmocka_unit_test(test_publish_decode_bad_event),
        cmocka_unit_test(test_publish_decode_escaped_nul_refused),
        cmocka_unit_test(test_publish_decode_escaped_backslash_u0000_accepted),
        cmocka_unit_test(test_publish_decode_raw_nul_in_data),
        cmocka_unit_test(test_publish_decode_raw_nul_in_channel),
        cmocka_unit_test(test_publish_decode_trailing_garbage),
        cmocka_unit_test(test_str_frame),
        cmocka_unit_test(test_frame_is_negative_index),
        cmocka_unit_test_setup_teardown(test_frames_round_trip, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frames_single_and_messages_kept_apart, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frames_recv_eagain_leaves_output, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frame_is, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frames_exactly_max, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frames_max_plus_one_is_eproto, s_zsetup, s_zteardown),
        cmocka_unit_test_setup_teardown(test_frames_far_over_max_is_eproto_and_socket_survives,
                                        s_zsetup, s_zteardown),
        cmocka_unit_test(test_send_frames_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
