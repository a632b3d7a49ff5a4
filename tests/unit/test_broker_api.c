/*
 * test_broker_api.c — unit tests for pushbrokerd/api.c request handling
 * (no sockets: api_request() on a broker without links) and jsonesc.c.
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

#include "api.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "jsonesc.h"

typedef struct fixture {
    broker_config cfg;
    broker        b;
} fixture;

static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f || config_defaults(&f->cfg) < 0)
        return -1;
    f->cfg.history_max = 5;
    f->cfg.max_message_size = 16;
    if (broker_init(&f->b, &f->cfg, 4242, clock_mono_us()) < 0)
        return -1;
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    broker_free(&f->b);
    config_free(&f->cfg);
    free(f);
    return 0;
}

/* Runs a request given as NUL-separated words (n of them). */
static int s_request(fixture *f, reply *r, int n, const char *const *words)
{
    push_frame body[8];
    push_frame env[2] = { { "ID", 2 }, { "", 0 } };
    broker_err err;
    for (int i = 0; i < n; i++)
        body[i] = push_str_frame(words[i]);
    return api_request(&f->b, env, 2, body, n, r, &err);
}

static void s_expect_frames(const reply *r, int n, const char *const *words)
{
    assert_int_equal(r->count, n + 2);
    assert_false(r->failed);
    /* the envelope comes back exactly */
    assert_int_equal(r->frame[0].size, 2);
    assert_memory_equal(r->frame[0].data, "ID", 2);
    assert_int_equal(r->frame[1].size, 0);
    for (int i = 0; i < n; i++) {
        if (!words[i])
            continue;   /* not checked */
        assert_int_equal(r->frame[i + 2].size, strlen(words[i]));
        assert_memory_equal(r->frame[i + 2].data, words[i], strlen(words[i]));
    }
}

#define REQ(f, r, ...) s_request(f, r, (int)(sizeof (const char *[]){ __VA_ARGS__ } \
                         / sizeof(const char *)), (const char *[]){ __VA_ARGS__ })
#define EXPECT(r, ...) s_expect_frames(r, (int)(sizeof (const char *[]){ __VA_ARGS__ } \
                         / sizeof(const char *)), (const char *[]){ __VA_ARGS__ })

static void test_pub_ids(void **state)
{
    fixture *f = *state;
    reply r;
    assert_int_equal(REQ(f, &r, "PUB", "news", "one"), 0);
    EXPECT(&r, "OK", "1", "0");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PUB", "news", "two", "update"), 0);
    EXPECT(&r, "OK", "2", "0");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PUB", "other", "x"), 0);
    EXPECT(&r, "OK", "1", "0");
    reply_free(&r);
    assert_int_equal(f->b.published, 3);
}

static void test_pub_reports_subscribers(void **state)
{
    fixture *f = *state;
    reply r;
    channel *c = channel_get(&f->b.channels, "room", 4);
    channel_set_subs(c, 0, 2);
    channel_set_subs(c, 1, 3);
    assert_int_equal(REQ(f, &r, "PUB", "room", "hi"), 0);
    EXPECT(&r, "OK", "1", "5");
    reply_free(&r);
}

static void test_pub_errors(void **state)
{
    fixture *f = *state;
    reply r;
    assert_int_equal(REQ(f, &r, "PUB", "bad channel", "x"), -1);
    EXPECT(&r, "ERR", "bad_channel", NULL);
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PUB", "news", "0123456789abcdefX"), -1);
    EXPECT(&r, "ERR", "too_large", "message of 17 bytes exceeds max_message_size 16");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PUB", "news"), -1);
    EXPECT(&r, "ERR", "bad_request", NULL);
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PUB", "news", "x", "bad event"), -1);
    EXPECT(&r, "ERR", "bad_request", NULL);
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "NOPE"), -1);
    EXPECT(&r, "ERR", "unknown_command", NULL);
    reply_free(&r);
    assert_int_equal(f->b.published, 0);
}

static void test_history(void **state)
{
    fixture *f = *state;
    reply r;
    for (int i = 0; i < 7; i++) {   /* history_max 5: ids 3..7 retained */
        assert_int_equal(REQ(f, &r, "PUB", "h", "d", i % 2 ? "odd" : ""), 0);
        reply_free(&r);
    }
    assert_int_equal(REQ(f, &r, "HISTORY", "h", "5"), 0);
    EXPECT(&r, "OK", "7", "2", "6", "odd", "d", NULL, "7", "", "d", NULL);
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "HISTORY", "h", "0", "2"), 0);
    EXPECT(&r, "OK", "7", "2", "3", "", "d", NULL, "4", "odd", "d", NULL);
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "HISTORY", "h", "7"), 0);
    EXPECT(&r, "OK", "7", "0");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "HISTORY", "never", "0"), 0);
    EXPECT(&r, "OK", "0", "0");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "HISTORY", "h", "-1"), -1);
    EXPECT(&r, "ERR", "bad_request", NULL);
    reply_free(&r);
}

/* A client using push_frames_recv() drops replies over PUSH_MAX_FRAMES. */
static void test_history_reply_fits_max_frames(void **state)
{
    fixture *f = *state;
    reply r;
    f->cfg.history_max = 2000;
    for (int i = 0; i < 1100; i++) {
        assert_int_equal(REQ(f, &r, "PUB", "big", "d"), 0);
        reply_free(&r);
    }
    assert_int_equal(REQ(f, &r, "HISTORY", "big", "0", "5000"), 0);
    assert_int_equal(r.count, 2 + 3 + 4 * PUSH_HISTORY_PAGE);
    assert_true(r.count - 1 <= PUSH_MAX_FRAMES);      /* the client sees no identity */
    assert_int_equal(r.frame[3].size, 4);
    assert_memory_equal(r.frame[3].data, "1100", 4);
    assert_int_equal(r.frame[4].size, 4);
    assert_memory_equal(r.frame[4].data, "1000", 4);
    assert_int_equal(r.frame[5].size, 1);
    assert_memory_equal(r.frame[5].data, "1", 1);      /* oldest first */
    reply_free(&r);
}

static void test_stats_and_ping(void **state)
{
    fixture *f = *state;
    reply r;
    REQ(f, &r, "PUB", "a", "1");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "PING"), 0);
    EXPECT(&r, "PONG", "4242");
    reply_free(&r);
    assert_int_equal(REQ(f, &r, "STATS"), 0);
    EXPECT(&r, "OK", NULL);
    cJSON *j = cJSON_ParseWithLength(r.frame[3].data, r.frame[3].size);
    assert_non_null(j);
    assert_int_equal(cJSON_GetObjectItem(j, "channels")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "messages_stored")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "published")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "children")->valueint, 0);
    assert_non_null(cJSON_GetObjectItem(j, "uptime_s"));
    cJSON_Delete(j);
    reply_free(&r);
}

/* Sends one JSON frame, returns the parsed JSON reply. */
static cJSON *s_json(fixture *f, const char *text, int expect_rc)
{
    reply r;
    push_frame body = push_str_frame(text);
    broker_err err;
    assert_int_equal(api_request(&f->b, NULL, 0, &body, 1, &r, &err), expect_rc);
    assert_int_equal(r.count, 1);
    cJSON *j = cJSON_ParseWithLength(r.frame[0].data, r.frame[0].size);
    reply_free(&r);
    assert_non_null(j);
    return j;
}

static void s_expect_error(cJSON *j, const char *code)
{
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "ok")));
    assert_string_equal(cJSON_GetObjectItem(j, "error")->valuestring, code);
    assert_true(cJSON_IsString(cJSON_GetObjectItem(j, "message")));
    cJSON_Delete(j);
}

static void test_json_publish_and_history(void **state)
{
    fixture *f = *state;
    cJSON *j = s_json(f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"t\\u00e9xt\",\"event\":\"e\"}", 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    assert_int_equal(cJSON_GetObjectItem(j, "id")->valueint, 1);
    assert_int_equal(cJSON_GetObjectItem(j, "subscribers")->valueint, 0);
    cJSON_Delete(j);
    cJSON_Delete(s_json(f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"2\"}", 0));

    j = s_json(f, "{\"op\":\"history\",\"channel\":\"c\",\"after\":0}", 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    assert_int_equal(cJSON_GetObjectItem(j, "last_id")->valueint, 2);
    cJSON *msgs = cJSON_GetObjectItem(j, "messages");
    assert_int_equal(cJSON_GetArraySize(msgs), 2);
    cJSON *m0 = cJSON_GetArrayItem(msgs, 0), *m1 = cJSON_GetArrayItem(msgs, 1);
    assert_int_equal(cJSON_GetObjectItem(m0, "id")->valueint, 1);
    assert_string_equal(cJSON_GetObjectItem(m0, "event")->valuestring, "e");
    assert_string_equal(cJSON_GetObjectItem(m0, "data")->valuestring, "t\xc3\xa9xt");
    assert_true(cJSON_GetObjectItem(m0, "time")->valuedouble > 1.6e15);
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m1, "event")));
    cJSON_Delete(j);

    j = s_json(f, "{\"op\":\"history\",\"channel\":\"c\",\"after\":1,\"limit\":5}", 0);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(j, "messages")), 1);
    cJSON_Delete(j);
}

static void test_json_binary_data_in_history(void **state)
{
    fixture *f = *state;
    reply r;
    push_frame body[3] = { push_str_frame("PUB"), push_str_frame("bin"), { "a\0b\xff", 4 } };
    broker_err err;
    assert_int_equal(api_request(&f->b, NULL, 0, body, 3, &r, &err), 0);
    reply_free(&r);
    cJSON *j = s_json(f, "{\"op\":\"history\",\"channel\":\"bin\"}", 0);
    cJSON *d = cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "messages"), 0),
                                   "data");
    /* cJSON stops at the decoded NUL, but the JSON text itself was valid */
    assert_true(cJSON_IsString(d));
    assert_string_equal(d->valuestring, "a");
    cJSON_Delete(j);
}

/* cJSON alone would print 1700000000000000 as 1.7e+15. */
static void test_json_integers_are_plain(void **state)
{
    fixture *f = *state;
    broker_published pub;
    broker_err err;
    reply r;
    assert_int_equal(broker_publish(&f->b, "t", 1, "x", 1, NULL, 0, 1700000000000000ull,
                                    &pub, &err), 0);
    push_frame body = push_str_frame("{\"op\":\"history\",\"channel\":\"t\"}");
    assert_int_equal(api_request(&f->b, NULL, 0, &body, 1, &r, &err), 0);
    char text[256];
    snprintf(text, sizeof text, "%.*s", (int)r.frame[0].size, r.frame[0].data);
    assert_string_equal(text, "{\"ok\":true,\"last_id\":1,\"oldest_id\":1,\"messages\":"
                        "[{\"id\":1,\"event\":null,\"data\":\"x\",\"time\":1700000000000000}]}");
    reply_free(&r);
}

static void test_json_errors(void **state)
{
    fixture *f = *state;
    s_expect_error(s_json(f, "{\"op\":\"publish\",", -1), "bad_request");
    s_expect_error(s_json(f, "{\"op\":\"publish\",\"channel\":\"c\"}", -1), "bad_request");
    s_expect_error(s_json(f, "{\"op\":\"publish\",\"channel\":\"c c\",\"data\":\"x\"}", -1),
                   "bad_channel");
    s_expect_error(s_json(f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"0123456789abcdefg\"}", -1),
                   "too_large");
    s_expect_error(s_json(f, "{\"op\":\"explode\"}", -1), "unknown_command");
    s_expect_error(s_json(f, "{\"op\":\"stats\"} {}", -1), "bad_request");
    s_expect_error(s_json(f, "{\"op\":\"publish\",\"channel\":\"c\",\"data\":\"x\"}x", -1),
                   "bad_request");
    s_expect_error(s_json(f, "{\"channel\":\"c\"}", -1), "bad_request");
    s_expect_error(s_json(f, "{\"op\":\"history\",\"channel\":\"c\",\"after\":-1}", -1),
                   "bad_request");
    s_expect_error(s_json(f, "{\"op\":\"history\",\"channel\":\"c\",\"after\":1.5}", -1),
                   "bad_request");
    assert_int_equal(f->b.published, 0);
}

static void test_json_stats(void **state)
{
    fixture *f = *state;
    cJSON *j = s_json(f, "{\"op\":\"stats\"}\r\n", 0);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "ok")));
    assert_int_equal(cJSON_GetObjectItem(j, "channels")->valueint, 0);
    assert_int_equal(cJSON_GetObjectItem(j, "published")->valueint, 0);
    cJSON_Delete(j);
}

static void s_quote(const char *in, size_t len, const char *want)
{
    char *q = json_quote(in, len);
    assert_non_null(q);
    assert_string_equal(q, want);
    free(q);
}

static void test_json_quote(void **state)
{
    (void)state;
    s_quote("", 0, "\"\"");
    s_quote("plain", 5, "\"plain\"");
    s_quote("q\"b\\", 4, "\"q\\\"b\\\\\"");
    s_quote("a\nb\tc\x01", 6, "\"a\\nb\\tc\\u0001\"");
    s_quote("a\0b", 3, "\"a\\u0000b\"");
    s_quote("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"");
    /* invalid: lone continuation, truncated sequence, overlong, surrogate */
    s_quote("\x80", 1, "\"\xef\xbf\xbd\"");
    s_quote("\xe2\x82", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    s_quote("\xc0\xaf", 2, "\"\xef\xbf\xbd\xef\xbf\xbd\"");
    s_quote("\xed\xa0\x80", 3, "\"\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_pub_ids),
        T(test_pub_reports_subscribers),
        T(test_pub_errors),
        T(test_history),
        T(test_history_reply_fits_max_frames),
        T(test_stats_and_ping),
        T(test_json_publish_and_history),
        T(test_json_binary_data_in_history),
        T(test_json_integers_are_plain),
        T(test_json_errors),
        T(test_json_stats),
        cmocka_unit_test(test_json_quote),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
