/*
 * test_client_args.c — unit tests for pushctl's argument parsing and
 * output formatting (clients/c/pushctl_args.c).
 *
 * Build: gcc -Iproto -Iclients/c tests/unit/test_client_args.c
 *            clients/c/pushctl_args.c proto/push_proto.c -lcmocka -lzmq -lcjson
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pushctl_args.h"

/* Parse a NULL-terminated list of arguments (program name added). */
static int s_parse(pushctl_args_t *a, char *err, const char *env_api,
                   const char *env_push, const char *env_timeout, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    argv[argc++] = "pushctl";
    va_start(ap, env_timeout);
    for (char *s; (s = va_arg(ap, char *)) != NULL;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    return pushctl_args_parse(a, argc, argv, env_api, env_push, env_timeout, err, 256);
}

#define PARSE_OK(a, ...) \
    do { char e_[256]; \
         int r_ = s_parse(a, e_, NULL, NULL, NULL, __VA_ARGS__, (char *)NULL); \
         if (r_ != 0) fail_msg("unexpected parse error: %s", e_); } while (0)

#define PARSE_ERR(needle, ...) \
    do { pushctl_args_t a_; char e_[256]; \
         assert_int_equal(s_parse(&a_, e_, NULL, NULL, NULL, __VA_ARGS__, (char *)NULL), -1); \
         if (!strstr(e_, needle)) fail_msg("error '%s' lacks '%s'", e_, needle); } while (0)

static void test_publish_basic(void **state)
{
    (void)state;
    pushctl_args_t a;
    PARSE_OK(&a, "publish", "news", "hello world");
    assert_int_equal(a.cmd, PUSHCTL_CMD_PUBLISH);
    assert_string_equal(a.channel, "news");
    assert_string_equal(a.data, "hello world");
    assert_null(a.event);
    assert_int_equal(a.no_ack, 0);
    assert_null(a.api);
    assert_null(a.push);
    assert_int_equal(a.timeout_ms, 0);
}

static void test_publish_options_anywhere(void **state)
{
    (void)state;
    pushctl_args_t a;
    PARSE_OK(&a, "--api", "tcp://127.0.0.1:1", "publish", "--event", "upd", "news",
             "-", "--no-ack", "--timeout=250", "--push=tcp://127.0.0.1:2");
    assert_int_equal(a.cmd, PUSHCTL_CMD_PUBLISH);
    assert_string_equal(a.api, "tcp://127.0.0.1:1");
    assert_string_equal(a.push, "tcp://127.0.0.1:2");
    assert_int_equal(a.timeout_ms, 250);
    assert_string_equal(a.event, "upd");
    assert_string_equal(a.channel, "news");
    assert_string_equal(a.data, "-");       /* stdin */
    assert_int_equal(a.no_ack, 1);
}

static void test_double_dash(void **state)
{
    (void)state;
    pushctl_args_t a;
    PARSE_OK(&a, "publish", "news", "--", "--help");
    assert_int_equal(a.cmd, PUSHCTL_CMD_PUBLISH);
    assert_string_equal(a.data, "--help");
    PARSE_OK(&a, "publish", "news", "-x");   /* single dash: positional */
    assert_string_equal(a.data, "-x");
}

static void test_env_and_override(void **state)
{
    (void)state;
    pushctl_args_t a;
    char err[256];
    char *argv1[] = { "pushctl", "ping", NULL };
    assert_int_equal(pushctl_args_parse(&a, 2, argv1, "tcp://127.0.0.1:5",
                                        "tcp://127.0.0.1:6", "700", err, sizeof err), 0);
    assert_string_equal(a.api, "tcp://127.0.0.1:5");
    assert_string_equal(a.push, "tcp://127.0.0.1:6");
    assert_int_equal(a.timeout_ms, 700);
    char *argv2[] = { "pushctl", "ping", "--api", "tcp://127.0.0.1:7",
                      "--timeout", "90", NULL };
    assert_int_equal(pushctl_args_parse(&a, 6, argv2, "tcp://127.0.0.1:5", "", "700",
                                        err, sizeof err), 0);
    assert_string_equal(a.api, "tcp://127.0.0.1:7");
    assert_null(a.push);                     /* empty env = unset */
    assert_int_equal(a.timeout_ms, 90);
    /* a bad PUSH_TIMEOUT is an error, unless --timeout overrides it */
    assert_int_equal(pushctl_args_parse(&a, 2, argv1, NULL, NULL, "5s",
                                        err, sizeof err), -1);
    assert_non_null(strstr(err, "PUSH_TIMEOUT"));
    assert_int_equal(pushctl_args_parse(&a, 6, argv2, NULL, NULL, "5s",
                                        err, sizeof err), 0);
    assert_int_equal(a.timeout_ms, 90);
}

static void test_history(void **state)
{
    (void)state;
    pushctl_args_t a;
    PARSE_OK(&a, "history", "news");
    assert_int_equal(a.cmd, PUSHCTL_CMD_HISTORY);
    assert_string_equal(a.channel, "news");
    assert_true(a.after == 0 && a.limit == 0 && a.json == 0);
    PARSE_OK(&a, "history", "news", "--after", "41", "--limit=10", "--json");
    assert_true(a.after == 41 && a.limit == 10 && a.json == 1);
    PARSE_OK(&a, "history", "news", "--after", "9223372036854775807");
    assert_true(a.after == 9223372036854775807ULL);
}

static void test_simple_commands(void **state)
{
    (void)state;
    pushctl_args_t a;
    PARSE_OK(&a, "stats");
    assert_int_equal(a.cmd, PUSHCTL_CMD_STATS);
    PARSE_OK(&a, "ping");
    assert_int_equal(a.cmd, PUSHCTL_CMD_PING);
    PARSE_OK(&a, "--help");
    assert_int_equal(a.cmd, PUSHCTL_CMD_HELP);
    PARSE_OK(&a, "publish", "-h");
    assert_int_equal(a.cmd, PUSHCTL_CMD_HELP);
    PARSE_OK(&a, "bogus", "--bogus", "--help");   /* --help wins */
    assert_int_equal(a.cmd, PUSHCTL_CMD_HELP);
    PARSE_OK(&a, "--version");
    assert_int_equal(a.cmd, PUSHCTL_CMD_VERSION);
    PARSE_OK(&a, "help");
    assert_int_equal(a.cmd, PUSHCTL_CMD_HELP);
}

static void test_usage_errors(void **state)
{
    (void)state;
    pushctl_args_t a;
    char err[256];
    char *argv0[] = { "pushctl", NULL };
    assert_int_equal(pushctl_args_parse(&a, 1, argv0, NULL, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no command"));

    PARSE_ERR("unknown command", "frobnicate");
    PARSE_ERR("unknown option", "ping", "--frob");
    PARSE_ERR("no command", "--");
}

static void test_usage_errors_2(void **state)
{
    (void)state;
    PARSE_ERR("publish needs", "publish", "news");
    PARSE_ERR("publish needs", "publish");
    PARSE_ERR("history needs", "history");
    PARSE_ERR("unexpected argument 'extra'", "publish", "a", "b", "extra");
    PARSE_ERR("unexpected argument", "stats", "x");
    PARSE_ERR("needs a value", "publish", "a", "b", "--event");
    PARSE_ERR("takes no value", "publish", "a", "b", "--no-ack=1");
    PARSE_ERR("--timeout", "--timeout", "0", "ping");
    PARSE_ERR("--timeout", "--timeout", "-5", "ping");
    PARSE_ERR("--timeout", "--timeout", "5s", "ping");
    PARSE_ERR("--timeout", "--timeout", "3600001", "ping");
    PARSE_ERR("--after", "history", "c", "--after", "x");
    PARSE_ERR("--after", "history", "c", "--after", "9223372036854775808");
    PARSE_ERR("--limit", "history", "c", "--limit", "0");
    PARSE_ERR("only valid with 'publish'", "history", "c", "--event", "e");
    PARSE_ERR("only valid with 'publish'", "ping", "--no-ack");
    PARSE_ERR("only valid with 'history'", "publish", "c", "d", "--json");
    PARSE_ERR("only valid with 'history'", "stats", "--after", "1");
    PARSE_ERR("--api", "--api", "", "ping");
}

static void test_escape(void **state)
{
    (void)state;
    static const char in[] = "a b\\c\nd\re\tf\x01g\x7f\xc3\xa9";
    char *s = pushctl_escape(in, sizeof in - 1);
    assert_string_equal(s, "a b\\\\c\\nd\\re\\tf\\x01g\\x7f\xc3\xa9");
    free(s);
    s = pushctl_escape("x\0y", 3);          /* embedded NUL */
    assert_string_equal(s, "x\\x00y");
    free(s);
    s = pushctl_escape("", 0);
    assert_string_equal(s, "");
    free(s);
}

static void test_fmt_time(void **state)
{
    (void)state;
    char buf[40];
    assert_int_equal(pushctl_fmt_time(buf, sizeof buf, 0), 27);
    assert_string_equal(buf, "1970-01-01T00:00:00.000000Z");
    assert_true(pushctl_fmt_time(buf, sizeof buf, 1732184000123456ULL) > 0);
    assert_string_equal(buf, "2024-11-21T10:13:20.123456Z");
    assert_int_equal(pushctl_fmt_time(buf, 10, 0), -1);
    assert_int_equal(pushctl_fmt_time(buf, sizeof buf, UINT64_MAX), -1);
    assert_string_equal(buf, "");
}

static void test_format_msg(void **state)
{
    (void)state;
    char *line = pushctl_format_msg(42, 1732184000123456ULL, "update",
                                    "two\nlines", 9);
    assert_string_equal(line,
        "id=42 time=2024-11-21T10:13:20.123456Z event=update data=two\\nlines");
    free(line);
    line = pushctl_format_msg(1, 0, NULL, "", 0);
    assert_string_equal(line, "id=1 time=1970-01-01T00:00:00.000000Z event= data=");
    free(line);
    line = pushctl_format_msg(1, UINT64_MAX, "", "x", 1);   /* raw time fallback */
    assert_string_equal(line, "id=1 time=18446744073709551615 event= data=x");
    free(line);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_basic),
        cmocka_unit_test(test_publish_options_anywhere),
        cmocka_unit_test(test_double_dash),
        cmocka_unit_test(test_env_and_override),
        cmocka_unit_test(test_history),
        cmocka_unit_test(test_simple_commands),
        cmocka_unit_test(test_usage_errors),
        cmocka_unit_test(test_usage_errors_2),
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_fmt_time),
        cmocka_unit_test(test_format_msg),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
