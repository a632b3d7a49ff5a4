/*
 * test_curve_keys.c — unit tests for proto/push_curve.c: Z85 against
 * libzmq's own codec, the line rules (keys, comments, blanks, a 40-character
 * line starting with '#'), and every error of the key-file reader (short key, bad
 * character, out-of-range text, trailing words, missing file, no key, two
 * keys, not a regular file), which must name the file and the line.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "push_curve.h"

/* A key pair made by zmq_curve_keypair once (the test needs fixed text). */
#define PUB "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
#define SEC "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6"

static char s_path[64];

static const char *s_write(const char *text)
{
    strcpy(s_path, "/tmp/test_curve_keys.XXXXXX");
    int fd = mkstemp(s_path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return s_path;
}

/* Load text as a one-key file; returns the result, err filled. */
static int s_load(const char *text, push_curve_key key, char *err, size_t errlen)
{
    int rc = push_curve_load_key(s_write(text), key, NULL, err, errlen);
    unlink(s_path);
    return rc;
}

static void s_assert_error(const char *text, const char *expect)
{
    push_curve_key key;
    char err[512], where[96];
    assert_int_equal(s_load(text, key, err, sizeof err), -1);
    snprintf(where, sizeof where, "%s", s_path);
    if (!strstr(err, expect) || !strstr(err, where))
        fail_msg("error \"%s\" should name %s and say \"%s\"", err, where, expect);
}

static void test_z85_matches_libzmq(void **state)
{
    (void)state;
    for (int i = 0; i < 50; i++) {
        char pub[41], sec[41];
        unsigned char a[32], b[32];
        push_curve_key again;
        assert_int_equal(zmq_curve_keypair(pub, sec), 0);
        assert_int_equal(push_curve_decode(sec, 40, a), 0);
        assert_non_null(zmq_z85_decode(b, sec));
        assert_memory_equal(a, b, 32);
        push_curve_encode(a, again);
        assert_string_equal(again, sec);
        push_curve_key derived;
        assert_int_equal(push_curve_public(sec, derived), 0);
        assert_string_equal(derived, pub);
    }
}

static void test_good_key_file(void **state)
{
    (void)state;
    push_curve_key key;
    char err[256] = "";
    assert_int_equal(s_load(PUB "\n", key, err, sizeof err), 0);
    assert_string_equal(key, PUB);
    /* comments, blank lines, blanks, CR LF, a comment after the key */
    assert_int_equal(s_load("# pushbrokerd public key\n\n   \t\r\n  " PUB "  # broker\r\n"
                            "#another comment\n", key, err, sizeof err), 0);
    assert_string_equal(key, PUB);
    /* no newline at the end */
    assert_int_equal(s_load(SEC, key, err, sizeof err), 0);
    assert_string_equal(key, SEC);
}

static void test_hash_line_is_a_comment(void **state)
{
    (void)state;
    /* '#' is a Z85 digit, but 32 bits of Z85 text never start with it (the
     * largest group is "%nSc0"): a 40-character line starting with '#' is
     * a comment, never a key */
    unsigned char bin[32];
    push_curve_key k, got;
    char err[256], text[128];
    memset(bin, 0xff, sizeof bin);
    push_curve_encode(bin, k);
    assert_memory_equal(k, "%nSc0", 5);
    snprintf(text, sizeof text, "#%s\n%s\n", k + 1, k);
    assert_int_equal(s_load(text, got, err, sizeof err), 0);
    assert_string_equal(got, k);
}

static void test_parse_line(void **state)
{
    (void)state;
    push_curve_key key;
    char why[160];
    assert_int_equal(push_curve_parse_line("", key, why, sizeof why), 0);
    assert_int_equal(push_curve_parse_line(" \t\n", key, why, sizeof why), 0);
    assert_int_equal(push_curve_parse_line("#", key, why, sizeof why), 0);
    assert_int_equal(push_curve_parse_line("  # indented comment", key, why, sizeof why), 0);
    assert_int_equal(push_curve_parse_line(PUB, key, why, sizeof why), 1);
    assert_string_equal(key, PUB);
    assert_int_equal(push_curve_parse_line(PUB " alice", key, why, sizeof why), -1);
    assert_non_null(strstr(why, "text after the key"));
    assert_int_equal(push_curve_parse_line(PUB "x", key, why, sizeof why), -1);
    assert_non_null(strstr(why, "41"));
}

static void test_short_key(void **state)
{
    (void)state;
    s_assert_error("# comment\n" "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\n",
                   ":2: not a CURVE key: a Z85 key has 40 characters, this one 39");
}

static void test_bad_z85_character(void **state)
{
    (void)state;
    /* ',' and '"' are not in the Z85 alphabet */
    s_assert_error("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]y,7\n",
                   ":1: not a CURVE key: ',' (column 39) is not a Z85 character");
    s_assert_error("\n\n\"q:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7\n",
                   ":3: not a CURVE key: '\"' (column 1)");
    s_assert_error("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\x01\n",
                   ":1: not a CURVE key: byte 0x01 (column 40)");
}

static void test_out_of_range(void **state)
{
    (void)state;
    /* "#####" is 85^5 - 1 > 2^32 - 1 */
    s_assert_error("rq:rM" "#####" "s47E1%kR.o@n%FcmmsL/@{H8]yf7ab\n",
                   ":1: not a CURVE key: its Z85 text is out of range");
}

static void test_text_after_key(void **state)
{
    (void)state;
    s_assert_error(PUB " alice\n", ":1: text after the key");
}

static void test_no_key_and_two_keys(void **state)
{
    (void)state;
    s_assert_error("# only a comment\n\n", "no key in the file");
    s_assert_error("", "no key in the file");
    s_assert_error(PUB "\n" SEC "\n", "2 keys in the file; exactly one is expected");
}

static void test_missing_file(void **state)
{
    (void)state;
    push_curve_key key;
    char err[256];
    assert_int_equal(push_curve_load_key("/nonexistent/dir/broker.key", key, NULL, err,
                                         sizeof err), -1);
    assert_string_equal(err, "/nonexistent/dir/broker.key: cannot open: No such file or directory");
    assert_int_equal(push_curve_load_key("/tmp", key, NULL, err, sizeof err), -1);
    assert_string_equal(err, "/tmp: not a regular file");
}

static void test_key_arg(void **state)
{
    (void)state;
    push_curve_key key;
    char err[256];
    int world = -1;
    assert_int_equal(push_curve_key_arg(PUB, key, &world, err, sizeof err), 0);
    assert_string_equal(key, PUB);
    assert_int_equal(world, 0);
    const char *path = s_write("#secret\n" SEC "\n");
    chmod(path, 0644);
    assert_int_equal(push_curve_key_arg(path, key, &world, err, sizeof err), 0);
    assert_string_equal(key, SEC);
    assert_int_equal(world, 1);
    chmod(path, 0600);
    assert_int_equal(push_curve_key_arg(path, key, &world, err, sizeof err), 0);
    assert_int_equal(world, 0);
    unlink(path);
    assert_int_equal(push_curve_key_arg("", key, NULL, err, sizeof err), -1);
    /* a 39-character word is no key, so it is taken as a file name */
    assert_int_equal(push_curve_key_arg("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf", key, NULL,
                                        err, sizeof err), -1);
    assert_non_null(strstr(err, "cannot open"));
}

static int s_count(const push_curve_key key, void *arg)
{
    (void)key;
    ++*(int *)arg;
    return 0;
}

static int s_stop(const push_curve_key key, void *arg)
{
    (void)key;
    (void)arg;
    return 1;
}

static void test_key_list(void **state)
{
    (void)state;
    char err[256];
    int n = 0;
    const char *path = s_write("# allowed publishers\n" PUB "  # app1\n\n" SEC "\n");
    assert_int_equal(push_curve_read_keys(path, s_count, &n, NULL, err, sizeof err), 2);
    assert_int_equal(n, 2);
    assert_int_equal(push_curve_read_keys(path, s_stop, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: stopped"));
    unlink(path);
    path = s_write(PUB "\nnot-a-key\n");
    assert_int_equal(push_curve_read_keys(path, NULL, NULL, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, ":2: not a CURVE key"));
    unlink(path);
}

static void test_applies(void **state)
{
    (void)state;
    assert_true(push_curve_applies("tcp://127.0.0.1:7701"));
    assert_false(push_curve_applies("ipc:///run/push.sock"));
    assert_false(push_curve_applies("inproc://x"));
    assert_false(push_curve_applies(NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_z85_matches_libzmq),
        cmocka_unit_test(test_good_key_file),
        cmocka_unit_test(test_hash_line_is_a_comment),
        cmocka_unit_test(test_parse_line),
        cmocka_unit_test(test_short_key),
        cmocka_unit_test(test_bad_z85_character),
        cmocka_unit_test(test_out_of_range),
        cmocka_unit_test(test_text_after_key),
        cmocka_unit_test(test_no_key_and_two_keys),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_key_arg),
        cmocka_unit_test(test_key_list),
        cmocka_unit_test(test_applies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
