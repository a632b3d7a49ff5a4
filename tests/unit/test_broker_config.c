/*
 * test_broker_config.c — unit tests for pushbrokerd/config.c: the config
 * file parser and command-line precedence.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "config.h"
#include "log.h"
#include "push_proto.h"

static char s_path[64];

static const char *s_write(const char *text)
{
    strcpy(s_path, "/tmp/test_broker_config.XXXXXX");
    int fd = mkstemp(s_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return s_path;
}

static int s_load(broker_config *c, const char *text, char *err, size_t errsize)
{
    assert_int_equal(config_defaults(c), 0);
    int rc = config_load_file(c, s_write(text), err, errsize);
    unlink(s_path);
    return rc;
}

static void test_defaults(void **state)
{
    (void)state;
    broker_config c;
    assert_int_equal(config_defaults(&c), 0);
    assert_string_equal(c.api, PUSH_DEFAULT_API_ENDPOINT);
    assert_string_equal(c.push, PUSH_DEFAULT_PUSH_ENDPOINT);
    assert_string_equal(c.link, PUSH_DEFAULT_LINK_ENDPOINT);
    assert_int_equal(c.history_max, 1000);
    assert_int_equal(c.history_age, 3600);
    assert_int_equal(c.max_message_size, 65536);
    assert_int_equal(c.daemonize, 0);
    assert_null(c.pid_file);
    config_free(&c);
}

static void test_file_values(void **state)
{
    (void)state;
    broker_config c;
    char err[256] = "";
    assert_int_equal(s_load(&c,
        "# comment\n"
        "\n"
        "api   tcp://127.0.0.1:9001   # trailing comment\n"
        "  push\ttcp://127.0.0.1:9002\n"
        "link ipc:///tmp/x#y\n"
        "history_max 5\n"
        "history_age 0\n"
        "max_message_size 100", err, sizeof err), 0);
    assert_string_equal(c.api, "tcp://127.0.0.1:9001");
    assert_string_equal(c.push, "tcp://127.0.0.1:9002");
    assert_string_equal(c.link, "ipc:///tmp/x#y");
    assert_int_equal(c.history_max, 5);
    assert_int_equal(c.history_age, 0);
    assert_int_equal(c.max_message_size, 100);
    config_free(&c);
}

static void s_expect_error(const char *text, const char *want_suffix)
{
    broker_config c;
    char err[512] = "", want[600];
    assert_int_equal(s_load(&c, text, err, sizeof err), -1);
    snprintf(want, sizeof want, "%s:%s", s_path, want_suffix);
    assert_string_equal(err, want);
    config_free(&c);
}

static void test_file_errors(void **state)
{
    (void)state;
    s_expect_error("api tcp://127.0.0.1:1\n\nfoo 1\n", "3: unknown key \"foo\"");
    s_expect_error("history_max\n", "1: key \"history_max\" has no value");
    s_expect_error("history_max -5\n",
                   "1: history_max: \"-5\" is not a non-negative decimal integer");
    s_expect_error("history_max 0\n", "1: history_max: 0 is out of range (1..10000000)");
    s_expect_error("max_message_size 12k\n",
                   "1: max_message_size: \"12k\" is not a non-negative decimal integer");
    s_expect_error("# ok\napi 127.0.0.1:7701\n",
                   "2: api: \"127.0.0.1:7701\" is not a ZeroMQ endpoint "
                   "(like tcp://127.0.0.1:7701 or ipc:///run/push.sock)");
    s_expect_error("log_level loud\n",
                   "1: log_level: \"loud\" is not one of error, warn, info, debug");
}

static void test_missing_file(void **state)
{
    (void)state;
    broker_config c;
    char err[256];
    assert_int_equal(config_defaults(&c), 0);
    assert_int_equal(config_load_file(&c, "/nonexistent/pushbrokerd.conf", err, sizeof err), -1);
    assert_string_equal(err, "/nonexistent/pushbrokerd.conf: cannot open: No such file or directory");
    config_free(&c);
}

static void test_command_line_overrides_file(void **state)
{
    (void)state;
    broker_config c;
    s_write("history_max 7\nhistory_age 9\napi tcp://127.0.0.1:9001\n");
    /* the option comes before -c but still wins */
    char *argv[] = { "pushbrokerd", "--history-max", "3", "-c", s_path, "-d",
                     "--log-level", "debug", "--push", "tcp://127.0.0.1:9002",
                     "-p", "/tmp/pb.pid", NULL };
    int rc = config_parse_args(&c, 12, argv);
    unlink(s_path);
    assert_int_equal(rc, CONFIG_RUN);
    assert_int_equal(c.history_max, 3);
    assert_int_equal(c.history_age, 9);
    assert_string_equal(c.api, "tcp://127.0.0.1:9001");
    assert_string_equal(c.push, "tcp://127.0.0.1:9002");
    assert_string_equal(c.link, PUSH_DEFAULT_LINK_ENDPOINT);
    assert_string_equal(c.pid_file, "/tmp/pb.pid");
    assert_int_equal(c.daemonize, 1);
    assert_int_equal(c.log_level, PB_LOG_DEBUG);
    config_free(&c);
}

static void test_command_line_errors(void **state)
{
    (void)state;
    broker_config c;
    char *bad_value[] = { "pushbrokerd", "--max-message-size", "x", NULL };
    assert_int_equal(config_parse_args(&c, 3, bad_value), CONFIG_FAIL);
    config_free(&c);
    char *unknown[] = { "pushbrokerd", "--frobnicate", NULL };
    assert_int_equal(config_parse_args(&c, 2, unknown), CONFIG_FAIL);
    config_free(&c);
    char *missing[] = { "pushbrokerd", "--api", NULL };
    assert_int_equal(config_parse_args(&c, 2, missing), CONFIG_FAIL);
    config_free(&c);
    char *extra[] = { "pushbrokerd", "stray", NULL };
    assert_int_equal(config_parse_args(&c, 2, extra), CONFIG_FAIL);
    config_free(&c);
}

static void test_relative_paths_made_absolute(void **state)
{
    (void)state;
    broker_config c;
    char *argv[] = { "pushbrokerd", "-p", "run/pb.pid", "--link", "ipc://pb.sock", NULL };
    assert_int_equal(config_parse_args(&c, 5, argv), CONFIG_RUN);
    char *cwd = getcwd(NULL, 0), want[4200];
    snprintf(want, sizeof want, "%s/run/pb.pid", cwd);
    assert_string_equal(c.pid_file, want);
    snprintf(want, sizeof want, "ipc://%s/pb.sock", cwd);
    assert_string_equal(c.link, want);
    free(cwd);
    config_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_file_values),
        cmocka_unit_test(test_file_errors),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_command_line_overrides_file),
        cmocka_unit_test(test_command_line_errors),
        cmocka_unit_test(test_relative_paths_made_absolute),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
