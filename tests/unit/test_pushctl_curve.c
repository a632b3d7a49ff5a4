/*
 * test_pushctl_curve.c — pushctl's CURVE options and the keygen command
 * (clients/c/pushctl_args.c), and pushclient_new_curve()'s checks of its
 * keys (no broker involved).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "pushclient.h"
#include "pushctl_args.h"

#define PUB "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define SEC "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

static int s_parse(pushctl_args_t *a, char *err, ...)
{
    char *argv[16];
    int argc = 0;
    va_list ap;
    argv[argc++] = "pushctl";
    va_start(ap, err);
    for (char *s; (s = va_arg(ap, char *)) != NULL;)
        argv[argc++] = s;
    va_end(ap);
    argv[argc] = NULL;
    return pushctl_args_parse(a, argc, argv, NULL, NULL, NULL, err, 256);
}

static void s_error(const char *needle, int rc, const char *err)
{
    assert_int_equal(rc, -1);
    if (!strstr(err, needle))
        fail_msg("error '%s' lacks '%s'", err, needle);
}

static void test_keygen(void **state)
{
    (void)state;
    pushctl_args_t a;
    char err[256];
    assert_int_equal(s_parse(&a, err, "keygen", NULL), 0);
    assert_int_equal(a.cmd, PUSHCTL_CMD_KEYGEN);
    assert_null(a.keygen_base);
    assert_int_equal(a.force, 0);
    assert_int_equal(s_parse(&a, err, "--force", "keygen", "/etc/pushbrokerd/app", NULL), 0);
    assert_string_equal(a.keygen_base, "/etc/pushbrokerd/app");
    assert_int_equal(a.force, 1);
    assert_null(a.channel);
    s_error("unexpected argument 'b'", s_parse(&a, err, "keygen", "a", "b", NULL), err);
    s_error("empty base name", s_parse(&a, err, "keygen", "", NULL), err);
    s_error("--force is only valid with 'keygen'",
            s_parse(&a, err, "publish", "c", "d", "--force", NULL), err);
    s_error("takes no value", s_parse(&a, err, "keygen", "--force=yes", NULL), err);
}

static void test_key_options(void **state)
{
    (void)state;
    pushctl_args_t a;
    char err[256];
    assert_int_equal(s_parse(&a, err, "--server-key", "broker.pub", "publish", "c", "d",
                             "--client-key=app.secret", NULL), 0);
    assert_string_equal(a.server_key, "broker.pub");
    assert_string_equal(a.client_key, "app.secret");
    assert_string_equal(a.channel, "c");
    s_error("--server-key needs a key", s_parse(&a, err, "--server-key=", "ping", NULL), err);
    s_error("--client-key needs a key", s_parse(&a, err, "--client-key", "", "ping", NULL), err);
    s_error("--server-key needs a value", s_parse(&a, err, "ping", "--server-key", NULL), err);
}

static void test_new_curve_checks_keys(void **state)
{
    (void)state;
    const char *ep1 = "tcp://127.0.0.1:1", *ep2 = "tcp://127.0.0.1:2";
    const char *bad[][2] = {
        { "short", NULL },
        { PUB, "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]y,7" },
        { NULL, SEC },
        { "rq:rM" "#####" "s47E1%kR.o@n%FcmmsL/@{H8]yf7ab", NULL },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_null(pushclient_new_curve(ep1, ep2, bad[i][0], bad[i][1]));
        assert_int_equal(errno, EINVAL);
    }
    pushclient_t *c = pushclient_new_curve(ep1, ep2, PUB, SEC);
    assert_non_null(c);
    pushclient_destroy(&c);
    assert_null(c);
    c = pushclient_new_curve(ep1, ep2, PUB, NULL);      /* a throwaway pair */
    assert_non_null(c);
    pushclient_destroy(&c);
    c = pushclient_new_curve("ipc:///tmp/x.sock", ep2, NULL, NULL);
    assert_non_null(c);
    pushclient_destroy(&c);
}

/* Endpoints are checked without connecting (the sockets connect on first use). */
static void test_new_checks_endpoints(void **state)
{
    (void)state;
    const struct { const char *ep; int err; } bad[] = {
        { "", EINVAL }, { "nonsense", EINVAL }, { "tcp://", EINVAL },
        { "tcp://127.0.0.1", EINVAL }, { "tcp://127.0.0.1:", EINVAL }, { "tcp://:1", EINVAL },
        { "://x", EINVAL }, { "udp://127.0.0.1:1", EPROTONOSUPPORT },
        { "foo://x", EPROTONOSUPPORT },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        errno = 0;
        assert_null(pushclient_new(bad[i].ep, NULL));
        assert_int_equal(errno, bad[i].err);
        errno = 0;
        assert_null(pushclient_new(NULL, bad[i].ep));
        assert_int_equal(errno, bad[i].err);
    }
    const char *good[] = { "tcp://127.0.0.1:1", "tcp://[::1]:7701", "tcp://localhost:*",
                           "ipc:///tmp/x.sock", "inproc://x" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        pushclient_t *c = pushclient_new(good[i], good[i]);
        assert_non_null(c);
        pushclient_destroy(&c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen),
        cmocka_unit_test(test_key_options),
        cmocka_unit_test(test_new_curve_checks_keys),
        cmocka_unit_test(test_new_checks_endpoints),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
