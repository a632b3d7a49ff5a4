/*
 * test_broker_store.c — unit tests for pushbrokerd/store.c (the journal:
 * format, recovery, damaged tails, compaction, fsync bookkeeping) and for
 * the broker's use of it (replay, ids across restarts, held-back replies).
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <zmq.h>
#include <cjson/cJSON.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "history.h"
#include "log.h"
#include "reply.h"
#include "store.h"

/* ---- helpers ----------------------------------------------------------- */

typedef struct rec_copy {
    int      type;
    char     channel[129];
    uint64_t id;
    uint64_t time_us;
    char     event[65];
    char    *data;
    size_t   data_len;
} rec_copy;

typedef struct collected {
    rec_copy *rec;
    size_t    n, cap;
} collected;

static int s_collect(void *ctx, const store_record *r)
{
    collected *c = ctx;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->rec = realloc(c->rec, c->cap * sizeof *c->rec);
        assert_non_null(c->rec);
    }
    rec_copy *d = &c->rec[c->n++];
    memset(d, 0, sizeof *d);
    d->type = r->type;
    memcpy(d->channel, r->channel, r->channel_len);
    d->id = r->id;
    d->time_us = r->time_us;
    if (r->event_len)
        memcpy(d->event, r->event, r->event_len);
    d->data = malloc(r->data_len + 1);
    assert_non_null(d->data);
    if (r->data_len)
        memcpy(d->data, r->data, r->data_len);
    d->data_len = r->data_len;
    return 0;
}

static void s_collected_free(collected *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->rec[i].data);
    free(c->rec);
    memset(c, 0, sizeof *c);
}

static char *s_tmpdir(void)
{
    char *d = strdup("/tmp/test_broker_store.XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static void s_rmdir(char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        assert_int_equal(unlink(path), 0);
    }
    closedir(d);
    assert_int_equal(rmdir(dir), 0);
    free(dir);
}

/* Number of files in dir whose name starts with prefix. */
static int s_count_files(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strncmp(e->d_name, prefix, strlen(prefix)) == 0;
    closedir(d);
    return n;
}

static char *s_journal(const char *dir)
{
    char *p = NULL;
    assert_true(asprintf(&p, "%s/%s", dir, STORE_FILE) > 0);
    return p;
}

static uint64_t s_file_size(const char *dir)
{
    char *p = s_journal(dir);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    free(p);
    return (uint64_t)st.st_size;
}

static void s_truncate(const char *dir, uint64_t size)
{
    char *p = s_journal(dir);
    assert_int_equal(truncate(p, (off_t)size), 0);
    free(p);
}

static void s_patch(const char *dir, uint64_t off, const void *bytes, size_t n)
{
    char *p = s_journal(dir);
    int fd = open(p, O_WRONLY);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, bytes, n, (off_t)off), (ssize_t)n);
    close(fd);
    free(p);
}

static void s_append_raw(const char *dir, const void *bytes, size_t n)
{
    char *p = s_journal(dir);
    int fd = open(p, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
    close(fd);
    free(p);
}

static store_record s_msg(const char *chan, uint64_t id, const char *event, const void *data,
                          size_t data_len)
{
    store_record r = {
        .type = STORE_REC_MSG, .channel = chan, .channel_len = strlen(chan), .id = id,
        .time_us = 1700000000000000ull + id, .event = event,
        .event_len = event ? strlen(event) : 0, .data = data, .data_len = data_len,
    };
    return r;
}

/* Writes n messages "m<i>" on channel "c" (ids 1..n) and returns the file
 * offset where each record starts (offsets[n] = end). */
static void s_write_n(const char *dir, int policy, int n, uint64_t *offsets)
{
    store_recovery rec;
    store *s = store_open(dir, policy, NULL, NULL, &rec);
    assert_non_null(s);
    uint64_t off = store_size(s);
    for (int i = 1; i <= n; i++) {
        char data[32];
        int len = snprintf(data, sizeof data, "message %d", i);
        store_record r = s_msg("c", (uint64_t)i, i % 2 ? "ev" : NULL, data, (size_t)len);
        if (offsets)
            offsets[i - 1] = off;
        off += store_record_size(1, r.event_len, r.data_len);
        assert_int_equal(store_append(s, &r), 0);
    }
    if (offsets)
        offsets[n] = off;
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_size(s), off);
    assert_int_equal(store_close(s), 0);
}

static store *s_reopen(const char *dir, collected *c, store_recovery *rec)
{
    store *s = store_open(dir, STORE_FSYNC_NO, s_collect, c, rec);
    assert_non_null(s);
    return s;
}

/* ---- the journal ------------------------------------------------------- */

static void test_round_trip(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_ALWAYS, NULL, NULL, &rec);
    assert_non_null(s);
    assert_int_equal(rec.records, 0);
    assert_int_equal(store_size(s), STORE_HEADER_SIZE);
    assert_int_equal(rec.dropped_bytes, 0);

    static const char bin[5] = { 'a', '\0', 'b', '\n', '\xff' };
    store_record recs[4] = {
        s_msg("news", 1, "headline", "first", 5),
        s_msg("news", 2, NULL, bin, sizeof bin),
        s_msg("x.y:z@w~-_9", 7, "e", NULL, 0),
        { .type = STORE_REC_FLOOR, .channel = "gone", .channel_len = 4, .id = 42 },
    };
    for (int i = 0; i < 4; i++)
        assert_int_equal(store_append(s, &recs[i]), 0);
    assert_true(store_dirty(s));
    assert_int_equal(store_commit(s), 0);
    assert_false(store_dirty(s));
    assert_int_equal(store_fsync_lag_ms(s), 0);   /* "always" synced it */
    uint64_t size = STORE_HEADER_SIZE;
    for (int i = 0; i < 4; i++)
        size += store_record_size(recs[i].channel_len, recs[i].event_len, recs[i].data_len);
    assert_int_equal(store_size(s), size);
    assert_int_equal(store_close(s), 0);
    assert_int_equal(s_file_size(dir), size);

    collected c = { 0 };
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 4);
    assert_int_equal(rec.bytes, size);
    assert_int_equal(rec.dropped_bytes, 0);
    assert_int_equal(c.n, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(c.rec[i].type, recs[i].type);
        assert_string_equal(c.rec[i].channel, recs[i].channel);
        assert_int_equal(c.rec[i].id, recs[i].id);
        assert_int_equal(c.rec[i].time_us, recs[i].time_us);
        assert_string_equal(c.rec[i].event, recs[i].event ? recs[i].event : "");
        assert_int_equal(c.rec[i].data_len, recs[i].data_len);
        if (recs[i].data_len)
            assert_memory_equal(c.rec[i].data, recs[i].data, recs[i].data_len);
    }
    /* appending after a reopen continues the same file */
    store_record more = s_msg("news", 3, NULL, "third", 5);
    assert_int_equal(store_append(s, &more), 0);
    assert_int_equal(store_close(s), 0);   /* close commits */
    s_collected_free(&c);
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.rec[4].id, 3);
    assert_memory_equal(c.rec[4].data, "third", 5);
    store_close(s);
    s_collected_free(&c);
    s_rmdir(dir);
}

static void test_record_format(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    s_write_n(dir, STORE_FSYNC_NO, 1, NULL);
    char *p = s_journal(dir);
    unsigned char buf[128];
    int fd = open(p, O_RDONLY);
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    free(p);
    /* header + one record: 28 + "c" + "ev" + "message 1" */
    assert_int_equal(n, 16 + 28 + 1 + 2 + 9);
    assert_memory_equal(buf, "PUSHJRNL\1\0\0\0", 12);
    const unsigned char *r = buf + 16;
    assert_int_equal(r[0] | r[1] << 8 | r[2] << 16 | r[3] << 24, 20 + 1 + 2 + 9);
    assert_int_equal(r[8], STORE_REC_MSG);
    assert_int_equal(r[9], 1);
    assert_int_equal(r[10], 2);
    assert_int_equal(r[11], 0);
    assert_int_equal(r[12], 1);                 /* id 1, little-endian */
    assert_memory_equal(r + 28, "cevmessage 1", 12);
    s_rmdir(dir);
}

static void test_refuses_bad_records(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    store_record bad = s_msg("", 1, NULL, "x", 1);
    assert_int_equal(store_append(s, &bad), -1);
    assert_int_equal(errno, EINVAL);
    char longev[80];
    memset(longev, 'e', sizeof longev - 1);
    longev[sizeof longev - 1] = '\0';
    bad = s_msg("c", 1, longev, "x", 1);
    assert_int_equal(store_append(s, &bad), -1);
    /* cancel undoes exactly the last append */
    store_record ok = s_msg("c", 1, NULL, "x", 1);
    assert_int_equal(store_append(s, &ok), 0);
    store_cancel_last(s);
    assert_false(store_dirty(s));
    assert_int_equal(store_close(s), 0);
    assert_int_equal(s_file_size(dir), STORE_HEADER_SIZE);
    s_rmdir(dir);
}

static void test_crc_corruption_cuts_tail(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    uint64_t off[11];
    s_write_n(dir, STORE_FSYNC_ALWAYS, 10, off);
    /* flip one data byte of record 8 (of 10): records 8, 9, 10 go */
    unsigned char x = 'X';
    s_patch(dir, off[7] + STORE_RECORD_OVERHEAD + 3, &x, 1);

    collected c = { 0 };
    store_recovery rec;
    store *s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 7);
    assert_int_equal(c.n, 7);
    assert_int_equal(c.rec[6].id, 7);
    assert_int_equal(rec.cut_offset, off[7]);
    assert_int_equal(rec.dropped_bytes, off[10] - off[7]);
    assert_int_equal(rec.dropped_records, 3);   /* the damaged one + 2 intact */
    assert_int_equal(rec.bytes, off[7]);
    assert_int_equal(store_size(s), off[7]);
    /* new records follow the last good one */
    store_record r = s_msg("c", 8, NULL, "again", 5);
    assert_int_equal(store_append(s, &r), 0);
    assert_int_equal(store_close(s), 0);
    assert_int_equal(s_file_size(dir), off[7] + store_record_size(1, 0, 5));
    /* the cut bytes were kept aside */
    assert_int_equal(s_count_files(dir, STORE_FILE ".damaged."), 1);

    s_collected_free(&c);
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 8);
    assert_int_equal(rec.dropped_bytes, 0);
    assert_memory_equal(c.rec[7].data, "again", 5);
    store_close(s);
    s_collected_free(&c);
    s_rmdir(dir);
}

static void test_truncated_last_record(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    uint64_t off[6];
    s_write_n(dir, STORE_FSYNC_NO, 5, off);
    uint64_t half = (off[5] - off[4]) / 2;
    s_truncate(dir, off[4] + half);

    collected c = { 0 };
    store_recovery rec;
    store *s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 4);
    assert_int_equal(rec.dropped_records, 1);
    assert_int_equal(rec.dropped_bytes, half);
    assert_int_equal(rec.cut_offset, off[4]);
    assert_int_equal(s_file_size(dir), off[4]);
    store_close(s);
    s_collected_free(&c);

    /* a tail shorter than a record head (3 bytes) */
    s_truncate(dir, off[3] + 3);
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 3);
    assert_int_equal(rec.dropped_records, 1);
    assert_int_equal(rec.dropped_bytes, 3);
    store_close(s);
    s_collected_free(&c);
    s_rmdir(dir);
}

static void test_garbage_tail(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    uint64_t off[4];
    s_write_n(dir, STORE_FSYNC_NO, 3, off);
    unsigned char junk[100];
    for (size_t i = 0; i < sizeof junk; i++)
        junk[i] = (unsigned char)(i * 37 + 11);
    s_append_raw(dir, junk, sizeof junk);

    collected c = { 0 };
    store_recovery rec;
    store *s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 3);
    assert_int_equal(rec.dropped_bytes, 100);
    assert_int_equal(rec.dropped_records, 1);
    assert_int_equal(store_size(s), off[3]);
    store_close(s);
    s_collected_free(&c);

    /* zeroes (a preallocated or half-written block) are no record either */
    unsigned char zero[64] = { 0 };
    s_append_raw(dir, zero, sizeof zero);
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 3);
    assert_int_equal(rec.dropped_bytes, 64);
    store_close(s);
    s_collected_free(&c);
    s_rmdir(dir);
}

static void test_not_a_journal(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    s_write_n(dir, STORE_FSYNC_NO, 2, NULL);
    uint64_t size = s_file_size(dir);
    s_patch(dir, 0, "XUSH", 4);
    store_recovery rec;
    assert_null(store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec));
    assert_int_equal(s_file_size(dir), size);   /* never truncated */
    s_patch(dir, 0, "PUSH", 4);
    unsigned char v2 = 2;
    s_patch(dir, 8, &v2, 1);
    assert_null(store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec));
    assert_int_equal(s_file_size(dir), size);
    s_rmdir(dir);
}

static void test_short_header(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    s_write_n(dir, STORE_FSYNC_NO, 1, NULL);
    s_truncate(dir, 5);                        /* "PUSHJ": a crash at creation */
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    assert_int_equal(rec.records, 0);
    assert_int_equal(store_size(s), STORE_HEADER_SIZE);
    store_close(s);
    s_rmdir(dir);
}

static void test_lock(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    /* a compaction interrupted by a crash left its file: it goes */
    char tmp[512];
    snprintf(tmp, sizeof tmp, "%s/%s", dir, STORE_TMP_FILE);
    FILE *junk = fopen(tmp, "w");
    assert_non_null(junk);
    fputs("half a journal", junk);
    fclose(junk);
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    assert_int_equal(access(tmp, F_OK), -1);
    assert_null(store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec));
    assert_int_equal(errno, EBUSY);
    store_close(s);
    s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    store_close(s);
    s_rmdir(dir);
}

static void test_creates_directories(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    char sub[512];
    snprintf(sub, sizeof sub, "%s/a/b", dir);
    store_recovery rec;
    store *s = store_open(sub, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    store_close(s);
    char *d = strdup(sub);
    s_rmdir(d);
    snprintf(sub, sizeof sub, "%s/a", dir);
    assert_int_equal(rmdir(sub), 0);
    s_rmdir(dir);
}

static void test_fsync_policies(void **state)
{
    (void)state;
    assert_int_equal(store_fsync_parse("always"), STORE_FSYNC_ALWAYS);
    assert_int_equal(store_fsync_parse("everysec"), STORE_FSYNC_EVERYSEC);
    assert_int_equal(store_fsync_parse("no"), STORE_FSYNC_NO);
    assert_int_equal(store_fsync_parse("sometimes"), -1);
    assert_string_equal(store_fsync_name(STORE_FSYNC_EVERYSEC), "everysec");

    char *dir = s_tmpdir();
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_EVERYSEC, NULL, NULL, &rec);
    assert_non_null(s);
    store_record r = s_msg("c", 1, NULL, "x", 1);
    assert_int_equal(store_append(s, &r), 0);
    assert_int_equal(store_commit(s), 0);
    assert_false(store_dirty(s));              /* written; the sync comes later */
    usleep(20 * 1000);
    assert_true(store_fsync_lag_ms(s) >= 10);
    /* the background sync starts once the data is STORE_EVERYSEC_US old */
    uint64_t deadline = clock_mono_us() + 5000000;
    while (store_fsync_lag_ms(s) > 0 && clock_mono_us() < deadline) {
        assert_int_equal(store_tick(s), 0);
        usleep(20 * 1000);
    }
    assert_int_equal(store_fsync_lag_ms(s), 0);
    assert_int_equal(store_close(s), 0);

    /* "no" never syncs by itself */
    s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    assert_int_equal(store_append(s, &r), 0);
    assert_int_equal(store_commit(s), 0);
    usleep(600 * 1000);
    assert_int_equal(store_tick(s), 0);
    assert_true(store_fsync_lag_ms(s) >= 500);
    assert_int_equal(store_close(s), 0);
    s_rmdir(dir);
}

/* A write that fails half-way (here: the file size limit) is cut back and
 * retried; nothing half-written stays in the journal. */
static struct rlimit s_old_fsize;

static void s_limit_file_size(uint64_t max)
{
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &s_old_fsize), 0);
    struct rlimit lim = { (rlim_t)max, s_old_fsize.rlim_max };
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
}

static void s_unlimit_file_size(void)
{
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &s_old_fsize), 0);
}

static void test_write_failure_is_retried(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    uint64_t off[4];
    s_write_n(dir, STORE_FSYNC_ALWAYS, 3, off);
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_ALWAYS, NULL, NULL, &rec);
    assert_non_null(s);
    char big[300];
    memset(big, 'b', sizeof big);
    store_record r = s_msg("c", 4, NULL, big, sizeof big);
    assert_int_equal(store_append(s, &r), 0);

    s_limit_file_size(off[3] + 100);            /* room for a third of it */
    assert_int_equal(store_commit(s), -1);
    assert_int_equal(store_failed(s), EFBIG);
    assert_false(store_fatal(s));
    assert_true(store_dirty(s));
    assert_int_equal(s_file_size(dir), off[3]); /* the partial write is gone */
    assert_int_equal(store_append(s, &r), -1);  /* refused while failing */
    assert_int_equal(store_commit(s), -1);      /* still failing */
    s_unlimit_file_size();

    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_failed(s), 0);
    assert_false(store_dirty(s));
    assert_int_equal(store_close(s), 0);
    collected c = { 0 };
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(rec.records, 4);
    assert_int_equal(rec.dropped_bytes, 0);
    assert_int_equal(c.rec[3].data_len, sizeof big);
    store_close(s);
    s_collected_free(&c);
    s_rmdir(dir);
}

/* ---- compaction at the store level -------------------------------------- */

typedef struct emit_ctx {
    int n;
} emit_ctx;

static int s_emit_some(void *ctx, store_writer *w)
{
    emit_ctx *e = ctx;
    store_record f = { .type = STORE_REC_FLOOR, .channel = "c", .channel_len = 1,
                       .id = 100 - (uint64_t)e->n };
    if (store_writer_put(w, &f) < 0)
        return -1;
    for (int i = e->n - 1; i >= 0; i--) {
        store_record r = s_msg("c", 100 - (uint64_t)i, NULL, "live", 4);
        if (store_writer_put(w, &r) < 0)
            return -1;
    }
    return 0;
}

static int s_emit_fail(void *ctx, store_writer *w)
{
    (void)ctx;
    (void)w;
    errno = ENOSPC;
    return -1;
}

static void test_store_compaction(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    s_write_n(dir, STORE_FSYNC_NO, 100, NULL);
    uint64_t before = s_file_size(dir);
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    emit_ctx e = { 3 };
    assert_int_equal(store_compact_start(s, s_emit_some, &e), 1);
    assert_true(store_compacting(s));
    /* appended while the child works: must end up in the new journal */
    store_record late = s_msg("d", 1, NULL, "late", 4);
    assert_int_equal(store_append(s, &late), 0);
    assert_int_equal(store_commit(s), 0);
    assert_int_equal(store_compact_wait(s), 0);
    assert_false(store_compacting(s));
    assert_int_equal(store_compactions(s), 1);
    uint64_t want = STORE_HEADER_SIZE + store_record_size(1, 0, 0)
                  + 3 * store_record_size(1, 0, 4) + store_record_size(1, 0, 4);
    assert_int_equal(store_size(s), want);
    assert_int_equal(s_file_size(dir), want);
    assert_true(want < before);
    /* appends go to the new file */
    store_record after = s_msg("d", 2, NULL, "after", 5);
    assert_int_equal(store_append(s, &after), 0);
    assert_int_equal(store_close(s), 0);

    collected c = { 0 };
    s = s_reopen(dir, &c, &rec);
    assert_int_equal(c.n, 6);
    assert_int_equal(c.rec[0].type, STORE_REC_FLOOR);
    assert_int_equal(c.rec[0].id, 97);
    for (int i = 1; i <= 3; i++)
        assert_int_equal(c.rec[i].id, 97 + (uint64_t)i);
    assert_string_equal(c.rec[4].channel, "d");
    assert_memory_equal(c.rec[4].data, "late", 4);
    assert_memory_equal(c.rec[5].data, "after", 5);
    s_collected_free(&c);

    /* a failing child leaves the old journal alone */
    uint64_t size = store_size(s);
    assert_int_equal(store_compact_start(s, s_emit_fail, NULL), 1);
    assert_int_equal(store_compact_wait(s), -1);
    assert_int_equal(store_size(s), size);
    assert_int_equal(s_count_files(dir, STORE_TMP_FILE), 0);
    store_close(s);
    s_rmdir(dir);
}

static void test_compaction_policy(void **state)
{
    (void)state;
    char *dir = s_tmpdir();
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    assert_non_null(s);
    assert_false(store_compact_due(s));         /* under STORE_COMPACT_MIN */
    char data[1000];
    memset(data, 'x', sizeof data);
    for (uint64_t i = 1; store_size(s) < STORE_COMPACT_MIN; i++) {
        store_record r = s_msg("c", i, NULL, data, sizeof data);
        assert_int_equal(store_append(s, &r), 0);
        assert_int_equal(store_commit(s), 0);
    }
    assert_true(store_compact_due(s));
    /* mostly live: not worth it, and not asked again at once */
    assert_int_equal(store_compact_maybe(s, store_size(s) - 100, s_emit_some, &(emit_ctx){ 1 }),
                     0);
    assert_false(store_compact_due(s));
    store_close(s);
    s_rmdir(dir);
}

/* ---- the broker on a store ----------------------------------------------- */

typedef struct bfix {
    broker_config cfg;
    broker        b;
    char         *dir;
} bfix;

static void s_broker_open(bfix *f, uint64_t now_us)
{
    assert_int_equal(broker_init(&f->b, &f->cfg, 1, clock_mono_us()), 0);
    assert_int_equal(broker_open_store(&f->b, now_us), 0);
}

static void s_broker_restart(bfix *f, uint64_t now_us)
{
    broker_free(&f->b);
    s_broker_open(f, now_us);
}

static bfix *s_bfix(uint64_t history_max, uint64_t history_age, int policy)
{
    bfix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(config_defaults(&f->cfg), 0);
    f->dir = s_tmpdir();
    f->cfg.data_dir = strdup(f->dir);
    f->cfg.history_max = history_max;
    f->cfg.history_age = history_age;
    f->cfg.fsync = policy;
    s_broker_open(f, clock_real_us());
    return f;
}

static void s_bfix_free(bfix *f)
{
    broker_free(&f->b);
    config_free(&f->cfg);
    s_rmdir(f->dir);
    free(f);
}

static uint64_t s_pub(bfix *f, const char *chan, const char *data, uint64_t now_us)
{
    broker_published p;
    broker_err err;
    assert_int_equal(broker_publish(&f->b, chan, strlen(chan), data, strlen(data), NULL, 0,
                                    now_us, &p, &err), 0);
    return p.id;
}

static const history *s_hist(bfix *f, const char *chan)
{
    channel *c = channel_find(&f->b.channels, chan, strlen(chan));
    assert_non_null(c);
    return &c->hist;
}

static void test_broker_ids_monotonic_after_restart(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(3, 60, STORE_FSYNC_ALWAYS);
    for (int i = 1; i <= 10; i++)
        assert_int_equal(s_pub(f, "trimmed", "m", now), (uint64_t)i);
    /* published 2 minutes ago: expired by the time of the restart */
    for (int i = 1; i <= 4; i++)
        assert_int_equal(s_pub(f, "expired", "old", now - 120000000ull), (uint64_t)i);
    assert_int_equal(broker_commit(&f->b), 0);

    s_broker_restart(f, now);
    const history *h = s_hist(f, "trimmed");
    assert_int_equal(history_last_id(h), 10);
    assert_int_equal(history_count(h), 3);
    assert_int_equal(history_oldest_id(h), 8);
    assert_memory_equal(history_get(h, 10)->data, "m", 1);
    h = s_hist(f, "expired");
    assert_int_equal(history_last_id(h), 4);
    assert_int_equal(history_count(h), 0);
    assert_int_equal(s_pub(f, "trimmed", "n", now), 11);
    assert_int_equal(s_pub(f, "expired", "new", now), 5);

    /* and again after a compaction dropped the trimmed and expired records */
    assert_int_equal(broker_compact(&f->b, 1), 0);
    s_broker_restart(f, now);
    h = s_hist(f, "trimmed");
    assert_int_equal(history_last_id(h), 11);
    assert_int_equal(history_oldest_id(h), 9);
    assert_int_equal(history_count(s_hist(f, "expired")), 1);
    assert_int_equal(s_pub(f, "trimmed", "o", now), 12);
    assert_int_equal(s_pub(f, "expired", "newer", now), 6);
    s_bfix_free(f);
}

/* Compaction through the broker: the journal then holds exactly the live
 * history, plus one FLOOR per channel whose history does not start at 1. */
static void test_broker_compaction_exact(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(5, 60, STORE_FSYNC_NO);
    char data[64];
    for (int i = 1; i <= 200; i++) {
        snprintf(data, sizeof data, "a-%03d", i);
        s_pub(f, "a", data, now);
    }
    for (int i = 1; i <= 3; i++)
        s_pub(f, "bb", "b", now);
    for (int i = 1; i <= 7; i++)
        s_pub(f, "old", "x", now - 120000000ull);
    broker_tick(&f->b, now);                      /* commits; ages "old" out */
    assert_int_equal(history_count(s_hist(f, "old")), 0);
    uint64_t before = store_size(f->b.store);
    assert_false(store_compacting(f->b.store));   /* small: not due by itself */

    assert_int_equal(broker_compact(&f->b, 1), 0);
    uint64_t want = STORE_HEADER_SIZE
        + store_record_size(1, 0, 0) + 5 * store_record_size(1, 0, 5)   /* a: FLOOR 195, 196..200 */
        + 3 * store_record_size(2, 0, 1)                                /* bb: 1..3 */
        + store_record_size(3, 0, 0);                                   /* old: FLOOR 7 */
    assert_int_equal(store_size(f->b.store), want);
    assert_int_equal(s_file_size(f->dir), want);
    assert_true(want < before);

    broker_close_store(&f->b);
    collected c = { 0 };
    store_recovery rec;
    store *s = s_reopen(f->dir, &c, &rec);
    assert_int_equal(c.n, 1 + 5 + 3 + 1);
    int a = 0, bb = 0;
    for (size_t i = 0; i < c.n; i++) {
        rec_copy *r = &c.rec[i];
        if (r->type == STORE_REC_FLOOR && strcmp(r->channel, "a") == 0) {
            assert_int_equal(r->id, 195);
            assert_int_equal(a, 0);               /* before the messages */
        } else if (r->type == STORE_REC_FLOOR) {
            assert_string_equal(r->channel, "old");
            assert_int_equal(r->id, 7);
        } else if (strcmp(r->channel, "a") == 0) {
            assert_int_equal(r->id, 196 + (uint64_t)a);
            snprintf(data, sizeof data, "a-%03d", 196 + a);
            assert_memory_equal(r->data, data, 5);
            a++;
        } else {
            assert_string_equal(r->channel, "bb");
            assert_int_equal(r->id, (uint64_t)++bb);
        }
    }
    assert_int_equal(a, 5);
    assert_int_equal(bb, 3);
    store_close(s);
    s_collected_free(&c);
    s_bfix_free(f);
}

/* Drives the broker past STORE_COMPACT_MIN so that broker_tick() compacts on
 * its own, then checks the journal holds exactly the live records. */
static void test_broker_compaction_by_tick(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(5, 60, STORE_FSYNC_NO);
    char data[512];
    memset(data, 'd', sizeof data - 1);
    data[sizeof data - 1] = '\0';
    for (int i = 1; i <= 7; i++)
        s_pub(f, "old", "x", now - 120000000ull);
    for (int i = 1; i <= 3; i++)
        s_pub(f, "b", "b", now);
    uint64_t n = 0;
    while (store_size(f->b.store) < STORE_COMPACT_MIN + 10000) {
        s_pub(f, "a", data, now);
        n++;
        assert_int_equal(broker_commit(&f->b), 0);
    }
    uint64_t before = store_size(f->b.store);
    broker_tick(&f->b, now);
    assert_true(store_compacting(f->b.store));
    /* publishing goes on during compaction */
    s_pub(f, "b", "during", now);
    assert_int_equal(broker_commit(&f->b), 0);
    assert_int_equal(store_compact_wait(f->b.store), 0);

    uint64_t per_a = store_record_size(1, 0, strlen(data));
    uint64_t want = STORE_HEADER_SIZE
        + store_record_size(1, 0, 0) + 5 * per_a            /* a: FLOOR + 5 */
        + 3 * store_record_size(1, 0, 1)                    /* b: 1..3 (from id 1) */
        + store_record_size(3, 0, 0)                        /* old: FLOOR 7 */
        + store_record_size(1, 0, 6);                       /* b #4, appended meanwhile */
    assert_int_equal(store_size(f->b.store), want);
    assert_int_equal(s_file_size(f->dir), want);
    assert_true(want < before / 10);

    /* the records themselves */
    broker_close_store(&f->b);
    collected c = { 0 };
    store_recovery rec;
    store *s = s_reopen(f->dir, &c, &rec);
    int floors = 0, a = 0, b = 0;
    for (size_t i = 0; i < c.n; i++) {
        rec_copy *r = &c.rec[i];
        if (r->type == STORE_REC_FLOOR) {
            floors++;
            if (strcmp(r->channel, "a") == 0)
                assert_int_equal(r->id, n - 5);
            else
                assert_true(strcmp(r->channel, "old") == 0 && r->id == 7);
        } else if (strcmp(r->channel, "a") == 0) {
            assert_int_equal(r->id, n - 4 + (uint64_t)a++);
        } else {
            assert_string_equal(r->channel, "b");
            assert_int_equal(r->id, (uint64_t)++b);
        }
    }
    assert_int_equal(floors, 2);
    assert_int_equal(a, 5);
    assert_int_equal(b, 4);
    store_close(s);
    s_collected_free(&c);

    /* and a restart sees the same state, ids continuing */
    s_broker_restart(f, now);
    assert_int_equal(history_last_id(s_hist(f, "a")), n);
    assert_int_equal(history_count(s_hist(f, "a")), 5);
    assert_int_equal(history_last_id(s_hist(f, "old")), 7);
    assert_int_equal(history_count(s_hist(f, "old")), 0);
    assert_int_equal(history_last_id(s_hist(f, "b")), 4);
    assert_int_equal(s_pub(f, "old", "y", now), 8);
    assert_int_equal(s_pub(f, "a", "z", now), n + 1);
    s_bfix_free(f);
}

static void test_broker_replay_respects_limits(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(100, 0, STORE_FSYNC_NO);
    for (int i = 1; i <= 50; i++)
        s_pub(f, "c", "x", now);
    broker_commit(&f->b);
    f->cfg.history_max = 10;                   /* restarted with a smaller limit */
    s_broker_restart(f, now);
    const history *h = s_hist(f, "c");
    assert_int_equal(history_count(h), 10);
    assert_int_equal(history_oldest_id(h), 41);
    assert_int_equal(history_last_id(h), 50);
    s_bfix_free(f);
}

/* Replies wait for the commit; replies sent while nothing is pending go at
 * once.  A PAIR socket pair stands in for a client. */
static void test_broker_holds_replies(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(10, 0, STORE_FSYNC_ALWAYS);
    void *ctx = zmq_ctx_new();
    void *srv = zmq_socket(ctx, ZMQ_PAIR), *cli = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(srv, "inproc://held"), 0);
    assert_int_equal(zmq_connect(cli, "inproc://held"), 0);
    char buf[64];

    reply r;
    assert_int_equal(reply_init(&r, 1), 0);
    reply_str(&r, "now");
    broker_send(&f->b, srv, &r);               /* nothing pending: at once */
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), 3);

    s_pub(f, "c", "x", now);                   /* appended, not yet committed */
    char frame[8] = "later";                   /* borrowed memory: must be copied */
    assert_int_equal(reply_init(&r, 2), 0);
    reply_bytes(&r, frame, 5);
    reply_u64(&r, 1);
    broker_send(&f->b, srv, &r);
    memset(frame, 0, sizeof frame);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), -1);
    assert_int_equal(errno, EAGAIN);
    /* a second reply queues behind the first, even if it acknowledges nothing */
    assert_int_equal(reply_init(&r, 1), 0);
    reply_str(&r, "second");
    broker_send(&f->b, srv, &r);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), -1);

    assert_int_equal(broker_commit(&f->b), 0);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), 5);
    assert_memory_equal(buf, "later", 5);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), 1);
    assert_memory_equal(buf, "1", 1);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), 6);
    assert_memory_equal(buf, "second", 6);

    /* a history query commits first, so it never shows an unwritten message */
    s_pub(f, "c", "y", now);
    assert_true(store_dirty(f->b.store));
    broker_err err;
    assert_non_null(broker_history_channel(&f->b, "c", 1, &err));
    assert_false(store_dirty(f->b.store));

    /* replies still queued at close are dropped, not leaked */
    s_pub(f, "c", "z", now);
    assert_int_equal(reply_init(&r, 1), 0);
    reply_str(&r, "dropped");
    broker_send(&f->b, srv, &r);
    zmq_close(srv);
    zmq_close(cli);
    zmq_ctx_term(ctx);
    s_bfix_free(f);
}

/* While the journal cannot be written, publishes are refused and the
 * acknowledgements of what was accepted wait; both recover. */
static void test_broker_write_failure(void **state)
{
    (void)state;
    uint64_t now = clock_real_us();
    bfix *f = s_bfix(10, 0, STORE_FSYNC_ALWAYS);
    void *ctx = zmq_ctx_new();
    void *srv = zmq_socket(ctx, ZMQ_PAIR), *cli = zmq_socket(ctx, ZMQ_PAIR);
    assert_int_equal(zmq_bind(srv, "inproc://fail"), 0);
    assert_int_equal(zmq_connect(cli, "inproc://fail"), 0);
    char buf[16];

    s_pub(f, "c", "one", now);
    assert_int_equal(broker_commit(&f->b), 0);
    uint64_t size = store_size(f->b.store);
    s_pub(f, "c", "two", now);
    reply r;
    assert_int_equal(reply_init(&r, 1), 0);
    reply_str(&r, "ack2");
    broker_send(&f->b, srv, &r);

    s_limit_file_size(size);
    assert_int_equal(broker_commit(&f->b), -1);
    broker_published p;
    broker_err err;
    assert_int_equal(broker_publish(&f->b, "c", 1, "three", 5, NULL, 0, now, &p, &err), -1);
    assert_string_equal(err.code, PUSH_ERR_UNAVAILABLE);
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), -1);   /* still held */
    s_unlimit_file_size();

    broker_tick(&f->b, now);                   /* the retry */
    assert_int_equal(zmq_recv(cli, buf, sizeof buf, ZMQ_DONTWAIT), 4);
    assert_int_equal(s_pub(f, "c", "three", now), 3);
    assert_int_equal(broker_commit(&f->b), 0);
    zmq_close(srv);
    zmq_close(cli);
    zmq_ctx_term(ctx);
    s_broker_restart(f, now);
    assert_int_equal(history_last_id(s_hist(f, "c")), 3);
    s_bfix_free(f);
}

static void test_broker_stats(void **state)
{
    (void)state;
    bfix *f = s_bfix(10, 0, STORE_FSYNC_EVERYSEC);
    s_pub(f, "c", "x", clock_real_us());
    broker_commit(&f->b);
    cJSON *o = cJSON_CreateObject();
    assert_int_equal(broker_stats_json(&f->b, o, clock_mono_us()), 0);
    char *text = cJSON_PrintUnformatted(o);
    assert_non_null(strstr(text, "\"fsync\":\"everysec\""));
    assert_non_null(strstr(text, "\"log_bytes\":"));
    assert_non_null(strstr(text, "\"fsync_lag_ms\":"));
    free(text);
    cJSON_Delete(o);
    s_bfix_free(f);
}

/* ---- configuration ------------------------------------------------------ */

static void test_config_keys(void **state)
{
    (void)state;
    broker_config c;
    char err[256] = "";
    assert_int_equal(config_defaults(&c), 0);
    assert_null(c.data_dir);                    /* memory only by default */
    assert_int_equal(c.fsync, STORE_FSYNC_EVERYSEC);
    assert_int_equal(config_set(&c, "fsync", "always", err, sizeof err), 0);
    assert_int_equal(c.fsync, STORE_FSYNC_ALWAYS);
    assert_int_equal(config_set(&c, "fsync", "sometimes", err, sizeof err), -1);
    assert_non_null(strstr(err, "always, everysec, no"));
    assert_int_equal(config_set(&c, "data_dir", "", err, sizeof err), -1);
    assert_int_equal(config_set(&c, "data_dir", "/var/lib/push", err, sizeof err), 0);
    assert_string_equal(c.data_dir, "/var/lib/push");
    config_free(&c);

    /* command line; a relative directory is made absolute (daemons chdir) */
    char *argv[] = { "pushbrokerd", "--data-dir", "rel/data", "--fsync", "no", NULL };
    assert_int_equal(config_parse_args(&c, 5, argv), CONFIG_RUN);
    char *cwd = getcwd(NULL, 0), want[4096];
    snprintf(want, sizeof want, "%s/rel/data", cwd);
    free(cwd);
    assert_string_equal(c.data_dir, want);
    assert_int_equal(c.fsync, STORE_FSYNC_NO);
    config_free(&c);
    char *bad[] = { "pushbrokerd", "--fsync", "never", NULL };
    assert_int_equal(config_parse_args(&c, 3, bad), CONFIG_FAIL);
    config_free(&c);
}

int main(void)
{
    log_set_level(PB_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_record_format),
        cmocka_unit_test(test_refuses_bad_records),
        cmocka_unit_test(test_crc_corruption_cuts_tail),
        cmocka_unit_test(test_truncated_last_record),
        cmocka_unit_test(test_garbage_tail),
        cmocka_unit_test(test_not_a_journal),
        cmocka_unit_test(test_short_header),
        cmocka_unit_test(test_lock),
        cmocka_unit_test(test_creates_directories),
        cmocka_unit_test(test_fsync_policies),
        cmocka_unit_test(test_write_failure_is_retried),
        cmocka_unit_test(test_store_compaction),
        cmocka_unit_test(test_compaction_policy),
        cmocka_unit_test(test_broker_ids_monotonic_after_restart),
        cmocka_unit_test(test_broker_compaction_exact),
        cmocka_unit_test(test_broker_compaction_by_tick),
        cmocka_unit_test(test_broker_replay_respects_limits),
        cmocka_unit_test(test_broker_holds_replies),
        cmocka_unit_test(test_broker_write_failure),
        cmocka_unit_test(test_broker_stats),
        cmocka_unit_test(test_config_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
