/*
 * push_curve.c — CURVE keys; see push_curve.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE     /* getline */
#endif
#include "push_proto.h"
#include "push_curve.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

static const char s_z85[] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";


/* ---- Z85 ----------------------------------------------------------------- */

static int s_z85_value(char c)
{
    const char *p = c ? strchr(s_z85, c) : NULL;
    return p ? (int)(p - s_z85) : -1;
}

int push_curve_decode(const char *s, size_t len, unsigned char *out)
{
    if (len != PUSH_CURVE_KEY_LEN)
        return -1;
    for (size_t g = 0; g < len; g += 5) {
        uint64_t v = 0;
        for (size_t i = g; i < g + 5; i++) {
            int d = s_z85_value(s[i]);
            if (d < 0)
                return -1;
            v = v * 85 + (uint64_t)d;
        }
        /* five characters can say more than 32 bits: such text is no key */
        if (v > 0xffffffffu)
            return -1;
        if (out)
            for (int k = 0; k < 4; k++)
                out[g / 5 * 4 + (size_t)k] = (unsigned char)(v >> (24 - 8 * k));
    }
    return 0;
}

void push_curve_encode(const unsigned char *in, push_curve_key out)
{
    for (size_t g = 0; g < PUSH_CURVE_KEY_BYTES / 4; g++) {
        uint32_t v = (uint32_t)in[g * 4] << 24 | (uint32_t)in[g * 4 + 1] << 16
                   | (uint32_t)in[g * 4 + 2] << 8 | in[g * 4 + 3];
        for (int k = 4; k >= 0; k--) {
            out[g * 5 + (size_t)k] = s_z85[v % 85];
            v /= 85;
        }
    }
    out[PUSH_CURVE_KEY_LEN] = '\0';
}

/* ---- lines ----------------------------------------------------------------- */

/* Why word[0..len) is not a key, for a message. */
static void s_why_not_key(const char *word, size_t len, char *why, size_t whylen)
{
    if (len != PUSH_CURVE_KEY_LEN) {
        push_errf(why, whylen, "not a CURVE key: a Z85 key has %d characters, this one %zu",
              PUSH_CURVE_KEY_LEN, len);
        return;
    }
    for (size_t i = 0; i < len; i++)
        if (s_z85_value(word[i]) < 0) {
            unsigned char c = (unsigned char)word[i];
            if (isprint(c))
                push_errf(why, whylen, "not a CURVE key: '%c' (column %zu) is not a Z85 character",
                      c, i + 1);
            else
                push_errf(why, whylen, "not a CURVE key: byte 0x%02x (column %zu) is not a Z85 "
                      "character", c, i + 1);
            return;
        }
    push_errf(why, whylen, "not a CURVE key: its Z85 text is out of range");
}

int push_curve_parse_line(const char *line, push_curve_key key, char *why, size_t whylen)
{
    while (isspace((unsigned char)*line))
        line++;
    size_t len = 0;
    while (line[len] && !isspace((unsigned char)line[len]))
        len++;
    if (len == 0)
        return 0;
    if (push_curve_decode(line, len, NULL) == 0) {
        const char *rest = line + len;
        while (isspace((unsigned char)*rest))
            rest++;
        if (*rest && *rest != '#')
            return push_errf(why, whylen, "text after the key (a comment starts with #)");
        memcpy(key, line, PUSH_CURVE_KEY_LEN);
        key[PUSH_CURVE_KEY_LEN] = '\0';
        return 1;
    }
    if (line[0] == '#')
        return 0;
    s_why_not_key(line, len, why, whylen);
    return -1;
}

/* ---- files ------------------------------------------------------------------ */

/* Open a regular file for reading; O_NONBLOCK so that a FIFO named by
 * mistake cannot hang the start. */
static FILE *s_open(const char *path, int *world_readable, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        push_errf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    FILE *f = NULL;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        push_errf(err, errlen, "%s: not a regular file", path);
    else if (!(f = fdopen(fd, "r")))
        push_errf(err, errlen, "%s: %s", path, strerror(errno));
    if (!f) {
        close(fd);
        return NULL;
    }
    if (world_readable)
        *world_readable = (st.st_mode & S_IROTH) != 0;
    return f;
}

/* One line: 1 key, 0 none, -1 error (err filled). */
static int s_line(const char *path, unsigned lineno, const char *line, size_t n,
                  push_curve_key key, char *err, size_t errlen)
{
    char why[160];
    if (n > PUSH_CURVE_LINE_MAX)
        return push_errf(err, errlen, "%s:%u: line longer than %d bytes", path, lineno,
                     PUSH_CURVE_LINE_MAX);
    if (strlen(line) != n)
        return push_errf(err, errlen, "%s:%u: NUL byte in the line", path, lineno);
    int rc = push_curve_parse_line(line, key, why, sizeof why);
    if (rc < 0)
        return push_errf(err, errlen, "%s:%u: %s", path, lineno, why);
    return rc;
}

static long s_read_lines(FILE *f, const char *path, push_curve_key_fn *fn, void *arg,
                         char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    long count = 0;
    push_curve_key key;
    while (count >= 0 && (n = getline(&line, &cap, f)) >= 0) {
        int rc = s_line(path, ++lineno, line, (size_t)n, key, err, errlen);
        if (rc < 0)
            count = -1;
        else if (rc > 0 && fn && fn(key, arg) != 0)
            count = push_errf(err, errlen, "%s:%u: stopped", path, lineno);
        else
            count += rc;
    }
    if (count >= 0 && ferror(f))
        count = push_errf(err, errlen, "%s: read error: %s", path, strerror(errno));
    free(line);
    return count;
}

long push_curve_read_keys(const char *path, push_curve_key_fn *fn, void *arg,
                          int *world_readable, char *err, size_t errlen)
{
    FILE *f = s_open(path, world_readable, err, errlen);
    if (!f)
        return -1;
    long count = s_read_lines(f, path, fn, arg, err, errlen);
    fclose(f);
    return count;
}

/* Keeps the first key. */
static int s_keep_first(const push_curve_key key, void *arg)
{
    char *first = arg;
    if (!first[0])
        memcpy(first, key, PUSH_CURVE_KEY_LEN + 1);
    return 0;
}

int push_curve_load_key(const char *path, push_curve_key key, int *world_readable,
                        char *err, size_t errlen)
{
    push_curve_key first = "";
    long n = push_curve_read_keys(path, s_keep_first, first, world_readable, err, errlen);
    if (n < 0)
        return -1;
    if (n == 0)
        return push_errf(err, errlen, "%s: no key in the file (a key is a line of %d Z85 "
                     "characters, as written by pushctl keygen)", path, PUSH_CURVE_KEY_LEN);
    if (n > 1)
        return push_errf(err, errlen, "%s: %ld keys in the file; exactly one is expected",
                     path, n);
    memcpy(key, first, sizeof first);
    return 0;
}

int push_curve_key_arg(const char *arg, push_curve_key key, int *world_readable,
                       char *err, size_t errlen)
{
    if (push_curve_decode(arg, strlen(arg), NULL) == 0) {
        memcpy(key, arg, PUSH_CURVE_KEY_LEN + 1);
        if (world_readable)
            *world_readable = 0;
        return 0;
    }
    if (!*arg)
        return push_errf(err, errlen, "empty key or file name");
    return push_curve_load_key(arg, key, world_readable, err, errlen);
}

/* ---- sockets ---------------------------------------------------------------- */

int push_curve_public(const push_curve_key secret, push_curve_key public_key)
{
    return zmq_curve_public(public_key, secret) == 0 ? 0 : -1;
}

int push_curve_applies(const char *endpoint)
{
    return endpoint && strncmp(endpoint, "tcp://", 6) == 0;
}

int push_curve_set_client(void *sock, const push_curve_key server,
                          const push_curve_key public_key, const push_curve_key secret)
{
    return zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, server, PUSH_CURVE_KEY_LEN) < 0
        || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, public_key, PUSH_CURVE_KEY_LEN) < 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, PUSH_CURVE_KEY_LEN) < 0 ? -1 : 0;
}

int push_curve_set_server(void *sock, const push_curve_key secret, const char *domain)
{
    int one = 1;
    return zmq_setsockopt(sock, ZMQ_CURVE_SERVER, &one, sizeof one) < 0
        || zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, secret, PUSH_CURVE_KEY_LEN) < 0
        || zmq_setsockopt(sock, ZMQ_ZAP_DOMAIN, domain, strlen(domain)) < 0 ? -1 : 0;
}
