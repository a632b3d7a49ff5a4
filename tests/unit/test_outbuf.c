/*
 * test_outbuf.c — unit tests for mod_push/outbuf.c: the bytes a detached
 * connection sends (HTTP/1.1 chunk framing), over a real socket pair, with
 * a full socket and a peer that is gone.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <cmocka.h>

#include "outbuf.h"

typedef struct {
    int fd[2];          /* fd[0]: the server's end, fd[1]: the client's */
} pair_t;

static int s_setup(void **state)
{
    pair_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p->fd), 0);
    assert_int_equal(fcntl(p->fd[1], F_SETFL, O_NONBLOCK), 0);
    *state = p;
    return 0;
}

static int s_teardown(void **state)
{
    pair_t *p = *state;
    close(p->fd[0]);
    if (p->fd[1] >= 0)
        close(p->fd[1]);
    free(p);
    return 0;
}

/* Everything the client end has received so far, NUL-terminated. */
static char *s_drain(pair_t *p, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    assert_non_null(b);
    for (;;) {
        if (n == cap) {
            cap *= 2;
            b = realloc(b, cap + 1);
            assert_non_null(b);
        }
        ssize_t got = read(p->fd[1], b + n, cap - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    b[n] = '\0';
    if (len)
        *len = n;
    return b;
}

static void s_expect(pair_t *p, const char *want)
{
    char *got = s_drain(p, NULL);
    assert_string_equal(got, want);
    free(got);
}

static void test_plain_bytes_and_no_buffer_when_idle(void **state)
{
    pair_t *p = *state;
    push_outbuf o = { 0 };
    assert_int_equal(push_outbuf_append(&o, 0, "hello ", 6), 0);
    assert_int_equal(push_outbuf_append(&o, 0, "world", 5), 0);
    assert_true(push_outbuf_pending(&o));
    uint64_t sent = 0;
    assert_int_equal(push_outbuf_send(&o, p->fd[0], &sent), 0);
    assert_int_equal(sent, 11);
    assert_false(push_outbuf_pending(&o));
    assert_null(o.buf);                 /* all sent: the buffer is gone */
    assert_int_equal(o.cap, 0);
    s_expect(p, "hello world");
}

static void test_one_chunk_per_flush(void **state)
{
    pair_t *p = *state;
    push_outbuf o = { 0 };
    assert_int_equal(push_outbuf_append(&o, 1, "data: a\n", 8), 0);
    assert_int_equal(push_outbuf_append(&o, 1, "\n", 1), 0);
    assert_int_equal(push_outbuf_close_chunk(&o), 0);
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), 0);
    s_expect(p, "9\r\ndata: a\n\n\r\n");
    assert_null(o.buf);
    /* the last chunk */
    assert_int_equal(push_outbuf_append(&o, 1, "", 0), 0);
    assert_int_equal(push_outbuf_close_chunk(&o), 0);
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), 0);
    s_expect(p, "0\r\n\r\n");
}

static void test_open_chunk_is_never_sent(void **state)
{
    pair_t *p = *state;
    push_outbuf o = { 0 };
    assert_int_equal(push_outbuf_append(&o, 1, "first", 5), 0);
    assert_int_equal(push_outbuf_close_chunk(&o), 0);
    assert_int_equal(push_outbuf_append(&o, 1, "second", 6), 0);     /* open */
    uint64_t sent = 0;
    assert_int_equal(push_outbuf_send(&o, p->fd[0], &sent), 0);
    assert_int_equal(sent, strlen("5\r\nfirst\r\n"));
    s_expect(p, "5\r\nfirst\r\n");
    assert_true(push_outbuf_pending(&o));
    assert_non_null(o.buf);
    assert_int_equal(push_outbuf_close_chunk(&o), 0);
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), 0);
    s_expect(p, "6\r\nsecond\r\n");
    assert_false(push_outbuf_pending(&o));
    push_outbuf_close_chunk(&o);        /* nothing open: no-op */
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), 0);
    s_expect(p, "");
}

/* Chunks closed while earlier ones wait unsent: each size line sits right
 * before its data, with no gap in between (the memmove path). */
static void test_chunks_queued_behind_unsent_data(void **state)
{
    pair_t *p = *state;
    push_outbuf o = { 0 };
    char big[300];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(push_outbuf_append(&o, 1, big, (size_t)(100 * (i + 1))), 0);
        assert_int_equal(push_outbuf_close_chunk(&o), 0);
    }
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), 0);
    size_t n;
    char *got = s_drain(p, &n);
    char want[1024];
    size_t w = 0;
    for (int i = 0; i < 3; i++) {
        w += (size_t)snprintf(want + w, sizeof want - w, "%x\r\n", 100 * (i + 1));
        memset(want + w, 'x', (size_t)(100 * (i + 1)));
        w += (size_t)(100 * (i + 1));
        memcpy(want + w, "\r\n", 2);
        w += 2;
    }
    assert_int_equal(n, w);
    assert_memory_equal(got, want, w);
    free(got);
}

/* A full socket keeps the rest for later, in order; nothing is lost or
 * sent twice. */
static void test_full_socket_keeps_the_rest(void **state)
{
    pair_t *p = *state;
    int small = 4096;
    setsockopt(p->fd[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    push_outbuf o = { 0 };
    size_t total = 0;
    char line[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(line, sizeof line, "message %d\n", i);
        assert_int_equal(push_outbuf_append(&o, 1, line, (size_t)n), 0);
        assert_int_equal(push_outbuf_close_chunk(&o), 0);
    }
    total = o.len - o.off;
    uint64_t sent = 0, all = 0;
    assert_int_equal(push_outbuf_send(&o, p->fd[0], &sent), 0);
    all += sent;
    assert_true(push_outbuf_pending(&o));       /* the socket filled up */
    assert_true(sent < total);
    size_t got_len = 0, cap = total + 1;
    char *got = malloc(cap);
    assert_non_null(got);
    while (push_outbuf_pending(&o) || got_len < total) {
        ssize_t r = read(p->fd[1], got + got_len, cap - got_len);
        if (r > 0)
            got_len += (size_t)r;
        assert_int_equal(push_outbuf_send(&o, p->fd[0], &sent), 0);
        all += sent;
    }
    assert_int_equal(all, total);
    assert_int_equal(got_len, total);
    /* decode the chunks and check every message, in order */
    size_t at = 0;
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(line, sizeof line, "message %d\n", i);
        char head[16];
        int h = snprintf(head, sizeof head, "%x\r\n", n);
        assert_memory_equal(got + at, head, (size_t)h);
        at += (size_t)h;
        assert_memory_equal(got + at, line, (size_t)n);
        at += (size_t)n;
        assert_memory_equal(got + at, "\r\n", 2);
        at += 2;
    }
    assert_int_equal(at, total);
    free(got);
    assert_null(o.buf);
}

static void test_peer_gone_is_an_error(void **state)
{
    pair_t *p = *state;
    close(p->fd[1]);
    p->fd[1] = -1;
    push_outbuf o = { 0 };
    assert_int_equal(push_outbuf_append(&o, 0, "late", 4), 0);
    errno = 0;
    assert_int_equal(push_outbuf_send(&o, p->fd[0], NULL), -1);
    assert_int_equal(errno, EPIPE);
    assert_true(push_outbuf_pending(&o));
    push_outbuf_free(&o);
    assert_null(o.buf);
    push_outbuf_free(&o);               /* twice is harmless */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_plain_bytes_and_no_buffer_when_idle, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_one_chunk_per_flush, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_open_chunk_is_never_sent, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_chunks_queued_behind_unsent_data, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_full_socket_keeps_the_rest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_peer_gone_is_an_error, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
