/*
 * test_poll_format.c — unit tests for mod_push/poll_format.c: exact JSON
 * text of messages and string literals, UTF-8 sanitising, and that the
 * output parses with cJSON and round-trips.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <cjson/cJSON.h>

#include "poll_format.h"

#define FFFD_ESC "\\ufffd"            /* what the encoder writes */
#define FFFD_UTF8 "\xef\xbf\xbd"      /* what a JSON parser reads back */

static const char *s_show(const char *p, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c < 0x20 || c >= 0x7f)
            o += (size_t)snprintf(buf + o, cap - o, "<%02x>", c);
        else
            buf[o++] = (char)c;
    }
    buf[o < cap ? o : cap - 1] = '\0';
    return buf;
}

static void s_bytes_equal(const char *got, size_t got_len, const char *exp, size_t exp_len)
{
    if (got_len != exp_len || memcmp(got, exp, exp_len) != 0) {
        char a[4096], b[4096];
        fail_msg("got      '%s' (%zu bytes)\nexpected '%s' (%zu bytes)",
                 s_show(got, got_len, a, sizeof a), got_len,
                 s_show(exp, exp_len, b, sizeof b), exp_len);
    }
}

/* push_json_str into a canary-filled buffer of exactly push_json_str_max(len)
 * bytes (plus canary); checks the text, the length, and that nothing beyond
 * the returned length was written. */
static void s_str_expect(const char *s, size_t len, const char *exp, size_t exp_len)
{
    size_t max = push_json_str_max(len);
    char *buf = malloc(max + 16);
    assert_non_null(buf);
    memset(buf, '#', max + 16);
    size_t n = push_json_str(buf, s, len);
    assert_true(n <= max);
    s_bytes_equal(buf, n, exp, exp_len);
    for (size_t i = n; i < max + 16; i++)
        if (buf[i] != '#')
            fail_msg("byte %zu beyond the %zu written was changed", i, n);
    free(buf);
}

#define STR_EXPECT(in, exp) s_str_expect((in), sizeof(in) - 1, (exp), sizeof(exp) - 1)

/* Parse text as one JSON string with cJSON and compare its value. */
static void s_parse_string_equal(const char *json, size_t len, const char *value, size_t vlen)
{
    cJSON *v = cJSON_ParseWithLength(json, len);
    if (!v) {
        char a[4096];
        fail_msg("cJSON cannot parse '%s'", s_show(json, len, a, sizeof a));
    }
    assert_true(cJSON_IsString(v));
    s_bytes_equal(v->valuestring, strlen(v->valuestring), value, vlen);
    cJSON_Delete(v);
}

/* ======================================================================== */
/* push_json_str_max / push_json_str                                         */
/* ======================================================================== */

static void test_str_max(void **state)
{
    (void)state;
    assert_int_equal(push_json_str_max(0), 2);
    assert_int_equal(push_json_str_max(1), 8);
    assert_int_equal(push_json_str_max(10), 62);
    assert_int_equal(push_json_str_max(65536), 393218);
}

static void test_str_plain(void **state)
{
    (void)state;
    STR_EXPECT("", "\"\"");
    STR_EXPECT("a", "\"a\"");
    STR_EXPECT("hello world", "\"hello world\"");
    /* '/' and DEL need no escape; neither do '\'' and '<' */
    STR_EXPECT("a/b\x7f'<>&", "\"a/b\x7f'<>&\"");
}

static void test_str_quote_backslash(void **state)
{
    (void)state;
    STR_EXPECT("\"", "\"\\\"\"");
    STR_EXPECT("\\", "\"\\\\\"");
    STR_EXPECT("say \"hi\" \\o/", "\"say \\\"hi\\\" \\\\o/\"");
    STR_EXPECT("\\u0041", "\"\\\\u0041\"");
}

static void test_str_named_controls(void **state)
{
    (void)state;
    STR_EXPECT("\n", "\"\\n\"");
    STR_EXPECT("\r", "\"\\r\"");
    STR_EXPECT("\t", "\"\\t\"");
    STR_EXPECT("a\r\nb\tc", "\"a\\r\\nb\\tc\"");
}

static void test_str_other_controls(void **state)
{
    (void)state;
    STR_EXPECT("\0", "\"\\u0000\"");
    STR_EXPECT("\x01", "\"\\u0001\"");
    STR_EXPECT("\x08", "\"\\u0008\"");
    STR_EXPECT("\x0b", "\"\\u000b\"");
    STR_EXPECT("\x0c", "\"\\u000c\"");
    STR_EXPECT("\x1b[0m", "\"\\u001b[0m\"");
    STR_EXPECT("\x1f", "\"\\u001f\"");
    STR_EXPECT("a\0b", "\"a\\u0000b\"");
    /* every control byte other than \t \n \r as \u00xx (lower-case hex) */
    for (int c = 0; c < 0x20; c++) {
        if (c == '\t' || c == '\n' || c == '\r')
            continue;
        char in[1] = { (char)c }, exp[16];
        int n = snprintf(exp, sizeof exp, "\"\\u00%02x\"", c);
        s_str_expect(in, 1, exp, (size_t)n);
    }
    /* space is the first byte copied as is */
    STR_EXPECT(" ", "\" \"");
}

static void test_str_valid_utf8_passes(void **state)
{
    (void)state;
    STR_EXPECT("\xc2\x80", "\"\xc2\x80\"");                  /* U+0080, smallest 2-byte */
    STR_EXPECT("caf\xc3\xa9", "\"caf\xc3\xa9\"");            /* é */
    STR_EXPECT("\xdf\xbf", "\"\xdf\xbf\"");                  /* U+07FF */
    STR_EXPECT("\xe0\xa0\x80", "\"\xe0\xa0\x80\"");          /* U+0800, smallest 3-byte */
    STR_EXPECT("\xe2\x82\xac", "\"\xe2\x82\xac\"");          /* € */
    STR_EXPECT("\xed\x9f\xbf", "\"\xed\x9f\xbf\"");          /* U+D7FF, just below surrogates */
    STR_EXPECT("\xee\x80\x80", "\"\xee\x80\x80\"");          /* U+E000, just above */
    STR_EXPECT("\xef\xbf\xbd", "\"\xef\xbf\xbd\"");          /* U+FFFD itself */
    STR_EXPECT("\xef\xbf\xbf", "\"\xef\xbf\xbf\"");          /* U+FFFF */
    STR_EXPECT("\xe2\x80\xa8", "\"\xe2\x80\xa8\"");          /* U+2028 */
    STR_EXPECT("\xf0\x90\x80\x80", "\"\xf0\x90\x80\x80\"");  /* U+10000, smallest 4-byte */
    STR_EXPECT("\xf0\x9f\x98\x80", "\"\xf0\x9f\x98\x80\"");  /* 😀 */
    STR_EXPECT("\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\"");  /* U+10FFFF, largest */
    STR_EXPECT("\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\"");
}

static void test_str_invalid_bytes(void **state)
{
    (void)state;
    /* lone continuation bytes */
    STR_EXPECT("\x80", "\"" FFFD_ESC "\"");
    STR_EXPECT("\xbf", "\"" FFFD_ESC "\"");
    STR_EXPECT("a\x80" "b", "\"a" FFFD_ESC "b\"");
    /* bytes never valid in UTF-8 */
    STR_EXPECT("\xfe", "\"" FFFD_ESC "\"");
    STR_EXPECT("\xff", "\"" FFFD_ESC "\"");
    STR_EXPECT("\xf8\x88\x80\x80\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\"");
    /* leads above U+10FFFF */
    STR_EXPECT("\xf5\x80\x80\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\"");
    STR_EXPECT("\xf4\x90\x80\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+110000 */
    /* Latin-1 text */
    STR_EXPECT("caf\xe9", "\"caf" FFFD_ESC "\"");
    STR_EXPECT("\xe9t\xe9", "\"" FFFD_ESC "t" FFFD_ESC "\"");
}

static void test_str_truncated_sequences(void **state)
{
    (void)state;
    STR_EXPECT("\xc3", "\"" FFFD_ESC "\"");
    STR_EXPECT("\xe2\x82", "\"" FFFD_ESC FFFD_ESC "\"");
    STR_EXPECT("\xf0\x9f\x98", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");
    /* cut short by a non-continuation byte */
    STR_EXPECT("\xe2\x82" "A", "\"" FFFD_ESC FFFD_ESC "A\"");
    STR_EXPECT("\xc3\xc3\xa9", "\"" FFFD_ESC "\xc3\xa9\"");
    STR_EXPECT("\xf0\x9f" "\"", "\"" FFFD_ESC FFFD_ESC "\\\"\"");
    /* len cuts a valid sequence in memory */
    s_str_expect("\xe2\x82\xac", 2, "\"" FFFD_ESC FFFD_ESC "\"", 14);
}

static void test_str_overlong_invalid(void **state)
{
    (void)state;
    STR_EXPECT("\xc0\x80", "\"" FFFD_ESC FFFD_ESC "\"");              /* NUL */
    STR_EXPECT("\xc0\xaf", "\"" FFFD_ESC FFFD_ESC "\"");              /* '/' */
    STR_EXPECT("\xc1\xbf", "\"" FFFD_ESC FFFD_ESC "\"");              /* U+007F */
    STR_EXPECT("\xe0\x80\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* NUL */
    STR_EXPECT("\xe0\x80\xaf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* '/' */
    STR_EXPECT("\xe0\x9f\xbf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+07FF */
    STR_EXPECT("\xf0\x80\x80\xaf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\"");
    STR_EXPECT("\xf0\x8f\xbf\xbf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\""); /* U+FFFF */
    /* overlong '"' must not smuggle an unescaped quote */
    STR_EXPECT("\xc0\xa2", "\"" FFFD_ESC FFFD_ESC "\"");
    STR_EXPECT("\xc1\x9c", "\"" FFFD_ESC FFFD_ESC "\"");               /* '\\' */
}

static void test_str_surrogates_invalid(void **state)
{
    (void)state;
    STR_EXPECT("\xed\xa0\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+D800 */
    STR_EXPECT("\xed\xad\xbf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+DB7F */
    STR_EXPECT("\xed\xb0\x80", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+DC00 */
    STR_EXPECT("\xed\xbf\xbf", "\"" FFFD_ESC FFFD_ESC FFFD_ESC "\"");  /* U+DFFF */
    /* CESU-8 pair for U+1F600 */
    STR_EXPECT("\xed\xa0\xbd\xed\xb8\x80",
               "\"" FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC "\"");
}

static void test_str_worst_case_fits(void **state)
{
    (void)state;
    char in[256];
    char exp[256 * 6 + 2];
    /* all invalid: exactly push_json_str_max(len) */
    memset(in, 0xff, sizeof in);
    exp[0] = '"';
    for (size_t i = 0; i < sizeof in; i++)
        memcpy(exp + 1 + 6 * i, FFFD_ESC, 6);
    exp[sizeof exp - 1] = '"';
    s_str_expect(in, sizeof in, exp, sizeof exp);
    /* all control bytes: likewise */
    memset(in, 0x01, sizeof in);
    for (size_t i = 0; i < sizeof in; i++)
        memcpy(exp + 1 + 6 * i, "\\u0001", 6);
    s_str_expect(in, sizeof in, exp, sizeof exp);
}

/* ======================================================================== */
/* push_json_msg_encode                                                      */
/* ======================================================================== */

static void s_msg_expect(uint64_t id, const char *event, const char *data, size_t len,
                         uint64_t time_us, const char *exp)
{
    size_t out_len = 0xdead;
    char *out = push_json_msg_encode(id, event, data, len, time_us, &out_len);
    assert_non_null(out);
    s_bytes_equal(out, out_len, exp, strlen(exp));
    free(out);
}

#define MSG_EXPECT(id, ev, data, t, exp) s_msg_expect((id), (ev), (data), sizeof(data) - 1, (t), (exp))

static void test_msg_basic(void **state)
{
    (void)state;
    MSG_EXPECT(1, NULL, "hello", 1700000000000000ull,
               "{\"id\":1,\"event\":null,\"data\":\"hello\",\"time\":1700000000000000}");
    MSG_EXPECT(42, "update", "x", 5,
               "{\"id\":42,\"event\":\"update\",\"data\":\"x\",\"time\":5}");
    MSG_EXPECT(0, NULL, "", 0, "{\"id\":0,\"event\":null,\"data\":\"\",\"time\":0}");
    MSG_EXPECT(3, "", "d", 7, "{\"id\":3,\"event\":\"\",\"data\":\"d\",\"time\":7}");
}

static void test_msg_extremes(void **state)
{
    (void)state;
    MSG_EXPECT(UINT64_MAX, "e", "d", UINT64_MAX,
               "{\"id\":18446744073709551615,\"event\":\"e\",\"data\":\"d\","
               "\"time\":18446744073709551615}");
    MSG_EXPECT(9223372036854775807ull, NULL, "d", 1,
               "{\"id\":9223372036854775807,\"event\":null,\"data\":\"d\",\"time\":1}");
}

static void test_msg_escaping(void **state)
{
    (void)state;
    MSG_EXPECT(9, "ev", "a\"b\\c\nd\re\tf\x01g\0h\xffi\xc3\xa9j\xf0\x9f\x98\x80", 11,
               "{\"id\":9,\"event\":\"ev\",\"data\":"
               "\"a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u0000h\\ufffdi\xc3\xa9j\xf0\x9f\x98\x80\","
               "\"time\":11}");
    /* the event is a JSON string literal too */
    MSG_EXPECT(9, "a\"b\\", "x", 1,
               "{\"id\":9,\"event\":\"a\\\"b\\\\\",\"data\":\"x\",\"time\":1}");
    /* JSON inside data is data */
    MSG_EXPECT(2, NULL, "{\"k\":[1,2]}", 3,
               "{\"id\":2,\"event\":null,\"data\":\"{\\\"k\\\":[1,2]}\",\"time\":3}");
}

static void test_msg_len_authoritative(void **state)
{
    (void)state;
    s_msg_expect(1, NULL, "abcdef", 3, 2, "{\"id\":1,\"event\":null,\"data\":\"abc\",\"time\":2}");
    s_msg_expect(1, NULL, "abcdef", 0, 2, "{\"id\":1,\"event\":null,\"data\":\"\",\"time\":2}");
}

/* Parse an encoded message with cJSON and check every member. */
static void s_msg_parses(uint64_t id, const char *event, const char *data, size_t len,
                         uint64_t time_us, const char *data_back, size_t back_len)
{
    size_t out_len;
    char *out = push_json_msg_encode(id, event, data, len, time_us, &out_len);
    assert_non_null(out);
    cJSON *o = cJSON_ParseWithLength(out, out_len);
    if (!o) {
        char a[4096];
        fail_msg("cJSON cannot parse '%s'", s_show(out, out_len, a, sizeof a));
    }
    assert_true(cJSON_IsObject(o));
    assert_int_equal(cJSON_GetArraySize(o), 4);
    cJSON *jid = cJSON_GetObjectItemCaseSensitive(o, "id");
    cJSON *jev = cJSON_GetObjectItemCaseSensitive(o, "event");
    cJSON *jdata = cJSON_GetObjectItemCaseSensitive(o, "data");
    cJSON *jtime = cJSON_GetObjectItemCaseSensitive(o, "time");
    assert_true(cJSON_IsNumber(jid));
    assert_true(jid->valuedouble == (double)id);
    if (event) {
        assert_true(cJSON_IsString(jev));
        assert_string_equal(jev->valuestring, event);
    }
    else
        assert_true(cJSON_IsNull(jev));
    assert_true(cJSON_IsString(jdata));
    s_bytes_equal(jdata->valuestring, strlen(jdata->valuestring), data_back, back_len);
    assert_true(cJSON_IsNumber(jtime));
    assert_true(jtime->valuedouble == (double)time_us);
    cJSON_Delete(o);
    free(out);
}

static void test_msg_round_trip_valid_text(void **state)
{
    (void)state;
    const char *texts[] = {
        "",
        "plain",
        "quote \" backslash \\ slash /",
        "lines\nwith\r\nbreaks\tand tabs",
        "ctl \x01\x02\x1f\x7f",
        "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xf4\x8f\xbf\xbf \xef\xbf\xbd",
        "{\"json\":[\"inside\",1,null]}",
        "\\u0041 is not unescaped",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        s_msg_parses(100 + i, i % 2 ? "ev" : NULL, texts[i], strlen(texts[i]),
                     1700000000000000ull + i, texts[i], strlen(texts[i]));
}

static void test_msg_invalid_utf8_parses_as_replacement(void **state)
{
    (void)state;
    const char in[] = "a\xff" "b\xc0\x80" "c\xed\xa0\x80" "d\xe2\x82";
    const char back[] = "a" FFFD_UTF8 "b" FFFD_UTF8 FFFD_UTF8 "c" FFFD_UTF8 FFFD_UTF8 FFFD_UTF8
                        "d" FFFD_UTF8 FFFD_UTF8;
    s_msg_parses(5, "e", in, sizeof in - 1, 6, back, sizeof back - 1);
}

/* ---- randomised: fragments with known encodings ------------------------- */

typedef struct frag {
    const char *in;     /* raw bytes */
    const char *json;   /* inside the JSON literal */
    const char *back;   /* what a parser reads back */
} frag;

/* None of the invalid fragments can combine with a neighbour into a valid
 * sequence (no incomplete leads, no continuation bytes that could finish
 * one), so the expectation is the concatenation. */
static const frag s_frags[] = {
    { "a", "a", "a" },
    { "Z9 ", "Z9 ", "Z9 " },
    { "\"", "\\\"", "\"" },
    { "\\", "\\\\", "\\" },
    { "\n", "\\n", "\n" },
    { "\r", "\\r", "\r" },
    { "\t", "\\t", "\t" },
    { "\x01", "\\u0001", "\x01" },
    { "\x1f", "\\u001f", "\x1f" },
    { "\x7f", "\x7f", "\x7f" },
    { "/", "/", "/" },
    { "\xc3\xa9", "\xc3\xa9", "\xc3\xa9" },
    { "\xe2\x82\xac", "\xe2\x82\xac", "\xe2\x82\xac" },
    { "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80" },
    { "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf" },
    { "\xef\xbf\xbd", "\xef\xbf\xbd", "\xef\xbf\xbd" },
    { "\xff", FFFD_ESC, FFFD_UTF8 },
    { "\xfe", FFFD_ESC, FFFD_UTF8 },
    { "\x80", FFFD_ESC, FFFD_UTF8 },
    { "\xc0\x80", FFFD_ESC FFFD_ESC, FFFD_UTF8 FFFD_UTF8 },
    { "\xe0\x80\xaf", FFFD_ESC FFFD_ESC FFFD_ESC, FFFD_UTF8 FFFD_UTF8 FFFD_UTF8 },
    { "\xed\xa0\x80", FFFD_ESC FFFD_ESC FFFD_ESC, FFFD_UTF8 FFFD_UTF8 FFFD_UTF8 },
    { "\xf4\x90\x80\x80", FFFD_ESC FFFD_ESC FFFD_ESC FFFD_ESC,
      FFFD_UTF8 FFFD_UTF8 FFFD_UTF8 FFFD_UTF8 },
};

static uint32_t s_rand(uint32_t *st)
{
    *st ^= *st << 13;
    *st ^= *st >> 17;
    *st ^= *st << 5;
    return *st;
}

static void test_str_random_fragments(void **state)
{
    (void)state;
    uint32_t st = 0x9e3779b9u;
    size_t nfrag = sizeof s_frags / sizeof s_frags[0];
    char in[1024], json[8192], back[4096];
    for (int round = 0; round < 3000; round++) {
        size_t il = 0, jl = 0, bl = 0;
        json[jl++] = '"';
        int count = (int)(s_rand(&st) % 40);
        for (int k = 0; k < count; k++) {
            const frag *f = &s_frags[s_rand(&st) % nfrag];
            size_t a = strlen(f->in), b = strlen(f->json), c = strlen(f->back);
            memcpy(in + il, f->in, a);
            il += a;
            memcpy(json + jl, f->json, b);
            jl += b;
            memcpy(back + bl, f->back, c);
            bl += c;
        }
        json[jl++] = '"';
        s_str_expect(in, il, json, jl);
        s_parse_string_equal(json, jl, back, bl);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_str_max),
        cmocka_unit_test(test_str_plain),
        cmocka_unit_test(test_str_quote_backslash),
        cmocka_unit_test(test_str_named_controls),
        cmocka_unit_test(test_str_other_controls),
        cmocka_unit_test(test_str_valid_utf8_passes),
        cmocka_unit_test(test_str_invalid_bytes),
        cmocka_unit_test(test_str_truncated_sequences),
        cmocka_unit_test(test_str_overlong_invalid),
        cmocka_unit_test(test_str_surrogates_invalid),
        cmocka_unit_test(test_str_worst_case_fits),
        cmocka_unit_test(test_msg_basic),
        cmocka_unit_test(test_msg_extremes),
        cmocka_unit_test(test_msg_escaping),
        cmocka_unit_test(test_msg_len_authoritative),
        cmocka_unit_test(test_msg_round_trip_valid_text),
        cmocka_unit_test(test_msg_invalid_utf8_parses_as_replacement),
        cmocka_unit_test(test_str_random_fragments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
