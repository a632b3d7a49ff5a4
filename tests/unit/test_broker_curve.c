/*
 * test_broker_curve.c — unit tests for the broker's security settings
 * (config.c: curve_secret_key_file, curve_authorized_keys, ipc_mode,
 * ipc_group, and config_resolve's errors, which must name the key and the
 * file) and for the memory of the refusal log (guard.c: once per peer and
 * reason per GUARD_RELOG_US, with the count of what was left out).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <grp.h>
#include <unistd.h>

#include "config.h"
#include "guard.h"

#define PUB "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define SEC "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

static char *s_write(const char *text)
{
    char *path = strdup("/tmp/test_broker_curve.XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

/* defaults + settings (key, value pairs, NULL-terminated) + resolve */
static int s_resolve(broker_config *c, char *err, size_t errlen, ...)
{
    va_list ap;
    assert_int_equal(config_defaults(c), 0);
    va_start(ap, errlen);
    for (const char *k; (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        assert_int_equal(config_set(c, k, v, err, errlen), 0);
    }
    va_end(ap);
    return config_resolve(c, err, errlen);
}

static void s_expect(const char *err, const char *part)
{
    if (!strstr(err, part))
        fail_msg("\"%s\" does not say \"%s\"", err, part);
}

static void test_defaults_off(void **state)
{
    (void)state;
    broker_config c;
    char err[512];
    assert_int_equal(s_resolve(&c, err, sizeof err, NULL), 0);
    assert_string_equal(c.curve_secret, "");
    assert_int_equal(c.ipc_mode, 0660);
    assert_int_equal(c.ipc_gid, -1);
    config_free(&c);
}

static void test_secret_key_loaded(void **state)
{
    (void)state;
    broker_config c;
    char err[512];
    char *sec = s_write("# broker secret\n" SEC "\n"), *allow = s_write(PUB "\n");
    assert_int_equal(s_resolve(&c, err, sizeof err, "curve_secret_key_file", sec,
                               "curve_authorized_keys", allow, NULL), 0);
    assert_string_equal(c.curve_secret, SEC);
    assert_string_equal(c.curve_public, PUB);
    config_free(&c);
    unlink(sec);
    unlink(allow);
    free(sec);
    free(allow);
}

static void test_key_errors_name_the_file(void **state)
{
    (void)state;
    broker_config c;
    char err[1024];
    char *bad = s_write("# short\nrq:rM>}U?@Lns47E1%kR\n"), *sec = s_write(SEC "\n");
    assert_int_equal(s_resolve(&c, err, sizeof err, "curve_secret_key_file", bad, NULL), -1);
    s_expect(err, "curve_secret_key_file: ");
    s_expect(err, bad);
    s_expect(err, ":2: not a CURVE key");
    config_free(&c);
    assert_int_equal(s_resolve(&c, err, sizeof err, "curve_secret_key_file",
                               "/nonexistent/broker.secret", NULL), -1);
    assert_string_equal(err, "curve_secret_key_file: /nonexistent/broker.secret: cannot open: "
                             "No such file or directory");
    config_free(&c);
    assert_int_equal(s_resolve(&c, err, sizeof err, "curve_secret_key_file", sec,
                               "curve_authorized_keys", bad, NULL), -1);
    s_expect(err, "curve_authorized_keys: ");
    s_expect(err, bad);
    config_free(&c);
    assert_int_equal(s_resolve(&c, err, sizeof err, "curve_authorized_keys", sec, NULL), -1);
    s_expect(err, "curve_authorized_keys needs curve_secret_key_file");
    config_free(&c);
    unlink(bad);
    unlink(sec);
    free(bad);
    free(sec);
}

static void test_ipc_mode(void **state)
{
    (void)state;
    broker_config c;
    char err[512];
    assert_int_equal(config_defaults(&c), 0);
    assert_int_equal(config_set(&c, "ipc_mode", "0600", err, sizeof err), 0);
    assert_int_equal(c.ipc_mode, 0600);
    assert_int_equal(config_set(&c, "ipc_mode", "770", err, sizeof err), 0);
    assert_int_equal(c.ipc_mode, 0770);
    const char *bad[] = { "", "0800", "01777", "rw-rw----", "-1", "+660", "0660 ", NULL };
    for (int i = 0; bad[i]; i++) {
        assert_int_equal(config_set(&c, "ipc_mode", bad[i], err, sizeof err), -1);
        s_expect(err, "ipc_mode: ");
    }
    assert_int_equal(c.ipc_mode, 0770);
    config_free(&c);
}

static void test_ipc_group(void **state)
{
    (void)state;
    broker_config c;
    char err[512];
    struct group *root = getgrgid(0);
    assert_non_null(root);
    assert_int_equal(s_resolve(&c, err, sizeof err, "ipc_group", root->gr_name, NULL), 0);
    assert_int_equal(c.ipc_gid, 0);
    config_free(&c);
    assert_int_equal(s_resolve(&c, err, sizeof err, "ipc_group", "4242", NULL), 0);
    assert_int_equal(c.ipc_gid, 4242);
    config_free(&c);
    assert_int_equal(s_resolve(&c, err, sizeof err, "ipc_group", "no-such-group-xyz", NULL), -1);
    assert_string_equal(err, "ipc_group: there is no group \"no-such-group-xyz\"");
    config_free(&c);
}

static void test_command_line(void **state)
{
    (void)state;
    broker_config c;
    char *sec = s_write(SEC "\n");
    char *argv[] = { "pushbrokerd", "--curve-secret-key-file", sec, "--ipc-mode", "0640",
                     NULL };
    assert_int_equal(config_parse_args(&c, 5, argv), CONFIG_RUN);
    assert_string_equal(c.curve_public, PUB);
    assert_int_equal(c.ipc_mode, 0640);
    config_free(&c);
    char *bad[] = { "pushbrokerd", "--curve-secret-key-file", "/nonexistent/k", NULL };
    assert_int_equal(config_parse_args(&c, 3, bad), CONFIG_FAIL);
    config_free(&c);
    unlink(sec);
    free(sec);
}

static void test_seen_once_per_key(void **state)
{
    (void)state;
    guard_seen *t = calloc(1, sizeof *t);
    uint64_t now = 1000000;
    assert_int_equal(guard_seen_note(t, "zap api 127.0.0.1 K1", now), 0);
    for (int i = 1; i <= 5; i++)
        assert_int_equal(guard_seen_note(t, "zap api 127.0.0.1 K1", now + (uint64_t)i), -1);
    /* another key or address is another peer */
    assert_int_equal(guard_seen_note(t, "zap api 127.0.0.1 K2", now), 0);
    assert_int_equal(guard_seen_note(t, "zap api 10.0.0.7 K1", now), 0);
    /* after the quiet period: logged again, with what was left out */
    assert_int_equal(guard_seen_note(t, "zap api 127.0.0.1 K1", now + GUARD_RELOG_US), 5);
    assert_int_equal(guard_seen_note(t, "zap api 127.0.0.1 K1", now + GUARD_RELOG_US + 1), -1);
    free(t);
}

static void test_seen_table_full(void **state)
{
    (void)state;
    guard_seen *t = calloc(1, sizeof *t);
    char key[32];
    for (int i = 0; i < GUARD_SEEN_MAX + 10; i++) {
        snprintf(key, sizeof key, "peer %d", i);
        assert_int_equal(guard_seen_note(t, key, 1000 + (uint64_t)i), 0);
    }
    /* the newest are remembered, the oldest were pushed out */
    snprintf(key, sizeof key, "peer %d", GUARD_SEEN_MAX + 9);
    assert_int_equal(guard_seen_note(t, key, 5000), -1);
    assert_int_equal(guard_seen_note(t, "peer 0", 5000), 0);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_off),
        cmocka_unit_test(test_secret_key_loaded),
        cmocka_unit_test(test_key_errors_name_the_file),
        cmocka_unit_test(test_ipc_mode),
        cmocka_unit_test(test_ipc_group),
        cmocka_unit_test(test_command_line),
        cmocka_unit_test(test_seen_once_per_key),
        cmocka_unit_test(test_seen_table_full),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
