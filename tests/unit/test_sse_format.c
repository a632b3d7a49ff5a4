/*
 * test_sse_format.c — unit tests for mod_push/sse_format.c: the exact bytes
 * of a Server-Sent Events block.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sse_format.h"

/* Printable rendering of bytes for failure messages. */
static const char *s_show(const char *p, size_t n, char *buf, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n && o + 5 < cap; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\n')      o += (size_t)snprintf(buf + o, cap - o, "\\n");
        else if (c == '\r') o += (size_t)snprintf(buf + o, cap - o, "\\r");
        else if (c == '\\') o += (size_t)snprintf(buf + o, cap - o, "\\\\");
        else if (c < 0x20 || c >= 0x7f) o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        else buf[o++] = (char)c;
    }
    buf[o < cap ? o : cap - 1] = '\0';
    return buf;
}

static void s_expect(uint64_t id, const char *event, const char *data, size_t len,
                     const char *expect, size_t expect_len)
{
    size_t out_len = 0xdead;
    char *out = push_sse_encode(id, event, data, len, &out_len);
    assert_non_null(out);
    if (out_len != expect_len || memcmp(out, expect, expect_len) != 0) {
        char a[4096], b[4096];
        s_show(out, out_len, a, sizeof a);
        s_show(expect, expect_len, b, sizeof b);
        free(out);
        fail_msg("got      \"%s\" (%zu bytes)\nexpected \"%s\" (%zu bytes)", a, out_len, b,
                 expect_len);
    }
    free(out);
}

/* data and expectation as string literals (may hold NULs) */
#define EXPECT(id, ev, data, exp) \
    s_expect((id), (ev), (data), sizeof(data) - 1, (exp), sizeof(exp) - 1)

static void test_simple(void **state)
{
    (void)state;
    EXPECT(1, NULL, "hello", "id: 1\ndata: hello\n\n");
    EXPECT(42, NULL, "hello world", "id: 42\ndata: hello world\n\n");
}

static void test_with_event(void **state)
{
    (void)state;
    EXPECT(7, "update", "x", "id: 7\nevent: update\ndata: x\n\n");
    EXPECT(8, "a:b-c", "{\"k\":1}", "id: 8\nevent: a:b-c\ndata: {\"k\":1}\n\n");
}

static void test_empty_event_is_still_written(void **state)
{
    (void)state;
    /* the event line is there whenever event is not NULL */
    EXPECT(3, "", "x", "id: 3\nevent: \ndata: x\n\n");
}

static void test_ids(void **state)
{
    (void)state;
    EXPECT(0, NULL, "a", "id: 0\ndata: a\n\n");
    EXPECT(10, NULL, "a", "id: 10\ndata: a\n\n");
    EXPECT(9223372036854775807ull, NULL, "a", "id: 9223372036854775807\ndata: a\n\n");
    EXPECT(UINT64_MAX, "e", "a", "id: 18446744073709551615\nevent: e\ndata: a\n\n");
}

static void test_empty_data(void **state)
{
    (void)state;
    EXPECT(5, NULL, "", "id: 5\ndata: \n\n");
    EXPECT(5, "ping", "", "id: 5\nevent: ping\ndata: \n\n");
}

static void test_lf_lines(void **state)
{
    (void)state;
    EXPECT(1, NULL, "a\nb", "id: 1\ndata: a\ndata: b\n\n");
    EXPECT(1, NULL, "a\nb\nc", "id: 1\ndata: a\ndata: b\ndata: c\n\n");
    EXPECT(1, NULL, "a\n\nb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
}

static void test_cr_lines(void **state)
{
    (void)state;
    EXPECT(1, NULL, "a\rb", "id: 1\ndata: a\ndata: b\n\n");
    EXPECT(1, NULL, "a\r\rb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
}

static void test_crlf_lines(void **state)
{
    (void)state;
    EXPECT(1, NULL, "a\r\nb", "id: 1\ndata: a\ndata: b\n\n");
    EXPECT(1, NULL, "a\r\n\r\nb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
    /* LF CR is two line ends, CR LF is one */
    EXPECT(1, NULL, "a\n\rb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
    EXPECT(1, NULL, "a\r\n\nb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
    EXPECT(1, NULL, "a\r\r\nb", "id: 1\ndata: a\ndata: \ndata: b\n\n");
    /* all three mixed */
    EXPECT(2, "m", "1\r\n2\r3\n4", "id: 2\nevent: m\ndata: 1\ndata: 2\ndata: 3\ndata: 4\n\n");
}

static void test_trailing_line_ends(void **state)
{
    (void)state;
    EXPECT(1, NULL, "a\n", "id: 1\ndata: a\ndata: \n\n");
    EXPECT(1, NULL, "a\r", "id: 1\ndata: a\ndata: \n\n");
    EXPECT(1, NULL, "a\r\n", "id: 1\ndata: a\ndata: \n\n");
    EXPECT(1, NULL, "a\n\n", "id: 1\ndata: a\ndata: \ndata: \n\n");
}

static void test_only_line_ends(void **state)
{
    (void)state;
    EXPECT(1, NULL, "\n", "id: 1\ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\r", "id: 1\ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\r\n", "id: 1\ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\n\n\n", "id: 1\ndata: \ndata: \ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\r\r\r", "id: 1\ndata: \ndata: \ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\r\n\r\n", "id: 1\ndata: \ndata: \ndata: \n\n");
    EXPECT(1, NULL, "\nx", "id: 1\ndata: \ndata: x\n\n");
}

static void test_leading_spaces_and_colons_kept(void **state)
{
    (void)state;
    EXPECT(1, NULL, " a", "id: 1\ndata:  a\n\n");
    EXPECT(1, NULL, ": not a comment\n:x", "id: 1\ndata: : not a comment\ndata: :x\n\n");
    EXPECT(1, NULL, "data: y", "id: 1\ndata: data: y\n\n");
    EXPECT(1, NULL, "\t \t", "id: 1\ndata: \t \t\n\n");
}

static void test_unicode_passes_through(void **state)
{
    (void)state;
    EXPECT(1, NULL, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
           "id: 1\ndata: caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\n\n");
    /* U+2028 / U+0085 are not SSE line ends */
    EXPECT(1, NULL, "a\xe2\x80\xa8" "b\xc2\x85" "c", "id: 1\ndata: a\xe2\x80\xa8" "b\xc2\x85" "c\n\n");
    /* bytes are not validated here */
    EXPECT(1, NULL, "\xff\xfe", "id: 1\ndata: \xff\xfe\n\n");
}

static void test_len_is_authoritative(void **state)
{
    (void)state;
    /* embedded NUL is just a byte */
    EXPECT(1, NULL, "a\0b", "id: 1\ndata: a\0b\n\n");
    /* bytes past len are not read */
    s_expect(1, NULL, "abc\ndef", 3, "id: 1\ndata: abc\n\n", 17);
    s_expect(1, NULL, "abc\ndef", 4, "id: 1\ndata: abc\ndata: \n\n", 24);
    s_expect(1, NULL, "abc\ndef", 0, "id: 1\ndata: \n\n", 14);
    /* a CR at the end of the range is one line end even if LF follows in memory */
    s_expect(1, NULL, "a\r\nb", 2, "id: 1\ndata: a\ndata: \n\n", 22);
}

static void test_many_lines_and_large(void **state)
{
    (void)state;
    /* 1000 lines "L<i>" separated by alternating LF, CR, CRLF */
    size_t cap = 16 * 1024;
    char *data = malloc(cap), *exp = malloc(4 * cap);
    assert_non_null(data);
    assert_non_null(exp);
    size_t dl = 0, el = 0;
    el += (size_t)sprintf(exp + el, "id: 99\nevent: bulk\n");
    const char *seps[3] = { "\n", "\r", "\r\n" };
    for (int i = 0; i < 1000; i++) {
        dl += (size_t)sprintf(data + dl, "L%d", i);
        el += (size_t)sprintf(exp + el, "data: L%d\n", i);
        if (i < 999)
            dl += (size_t)sprintf(data + dl, "%s", seps[i % 3]);
    }
    exp[el++] = '\n';
    s_expect(99, "bulk", data, dl, exp, el);

    /* one 64 KiB line */
    size_t big = 64 * 1024;
    char *line = malloc(big);
    char *bexp = malloc(big + 64);
    assert_non_null(line);
    assert_non_null(bexp);
    memset(line, 'z', big);
    size_t bl = (size_t)sprintf(bexp, "id: 1\ndata: ");
    memcpy(bexp + bl, line, big);
    bl += big;
    memcpy(bexp + bl, "\n\n", 2);
    bl += 2;
    s_expect(1, NULL, line, big, bexp, bl);

    /* 64 Ki line ends: the worst case for the buffer estimate */
    memset(line, '\n', big);
    char *nexp = malloc(7 * (big + 1) + 64);
    assert_non_null(nexp);
    size_t nl = (size_t)sprintf(nexp, "id: 18446744073709551615\nevent: e\n");
    for (size_t i = 0; i <= big; i++) {
        memcpy(nexp + nl, "data: \n", 7);
        nl += 7;
    }
    nexp[nl++] = '\n';
    s_expect(UINT64_MAX, "e", line, big, nexp, nl);
    memset(line, '\r', big);
    s_expect(UINT64_MAX, "e", line, big, nexp, nl);

    free(nexp);
    free(bexp);
    free(line);
    free(exp);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_simple),
        cmocka_unit_test(test_with_event),
        cmocka_unit_test(test_empty_event_is_still_written),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_empty_data),
        cmocka_unit_test(test_lf_lines),
        cmocka_unit_test(test_cr_lines),
        cmocka_unit_test(test_crlf_lines),
        cmocka_unit_test(test_trailing_line_ends),
        cmocka_unit_test(test_only_line_ends),
        cmocka_unit_test(test_leading_spaces_and_colons_kept),
        cmocka_unit_test(test_unicode_passes_through),
        cmocka_unit_test(test_len_is_authoritative),
        cmocka_unit_test(test_many_lines_and_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
