/*
 * fuzz_store.c — the persistence log reader (pushbrokerd/store.c): journal
 * recovery at store_open(), the broker's replay of it (broker.c), and the
 * journal it leaves behind.
 *
 * Input: byte 0 = mode, the rest = journal bytes.
 *   bit 0  put a valid 16-byte file header in front of the bytes
 *   bit 1  repair record CRCs: walk the bytes as records (while a size field
 *          fits) and write the right CRC into each, so that the fuzzer gets
 *          past the checksum to the field checks
 *   bit 2  append one record after recovery, before reopening
 *   bits 3-5  history_max of the replaying broker: 1, 2, 3, 5, 8, 100, 1000, 1000
 * The journal is written to <tmp>/journal (the temp dir is made once per
 * process and emptied before each input) and opened.
 *
 * Checked (see store.h):
 *  - store_open() never crashes; it refuses only a file that is not a
 *    journal (bad magic, header CRC or version: never with bit 0 set), and
 *    then leaves the file untouched;
 *  - every replayed record is valid: type MSG or FLOOR, channel valid, event
 *    valid, id in 1..2^63-1 (FLOOR: 0.. and no event, no data), and the
 *    records plus the header add up to the bytes kept; the file is cut to
 *    exactly that size and the dropped bytes are accounted for;
 *  - what was kept reads back identically: reopening replays the same
 *    records (plus the appended one) and cuts nothing;
 *  - the broker replays the journal without failing; writing its channels
 *    out the way compaction does (FLOOR + retained messages) and replaying
 *    that into a second broker gives the same channels, ids and messages.
 */
#define _GNU_SOURCE
#include "fuzz_common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "broker.h"
#include "config.h"
#include "history.h"
#include "log.h"
#include "push_proto.h"
#include "store.h"

static char s_dir[256], s_dir2[256];

/* ---- collected records ------------------------------------------------------ */

typedef struct rec {
    int      type;
    uint64_t id, time_us;
    size_t   clen, elen, dlen;
    unsigned char *bytes;          /* channel, event, data */
} rec;

typedef struct recs {
    rec   *r;
    size_t n, cap;
} recs;

static int s_collect(void *ctx, const store_record *r)
{
    recs *c = ctx;
    /* the record is valid (store.h) */
    FUZZ_CHECK(r->type == STORE_REC_MSG || r->type == STORE_REC_FLOOR);
    FUZZ_CHECK(push_channel_valid(r->channel, r->channel_len));
    FUZZ_CHECK(push_event_valid(r->event, r->event_len));
    FUZZ_CHECK(r->id <= (uint64_t)INT64_MAX);
    if (r->type == STORE_REC_MSG)
        FUZZ_CHECK(r->id >= 1);
    else
        FUZZ_CHECK(r->event_len == 0 && r->data_len == 0);
    FUZZ_CHECK(r->data_len <= STORE_BODY_MAX);
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 16;
        c->r = realloc(c->r, c->cap * sizeof *c->r);
        FUZZ_CHECK(c->r != NULL);
    }
    rec *d = &c->r[c->n++];
    d->type = r->type;
    d->id = r->id;
    d->time_us = r->time_us;
    d->clen = r->channel_len;
    d->elen = r->event_len;
    d->dlen = r->data_len;
    d->bytes = malloc(d->clen + d->elen + d->dlen + 1);
    FUZZ_CHECK(d->bytes != NULL);
    memcpy(d->bytes, r->channel, d->clen);
    if (d->elen)
        memcpy(d->bytes + d->clen, r->event, d->elen);
    if (d->dlen)
        memcpy(d->bytes + d->clen + d->elen, r->data, d->dlen);
    return 0;
}

static void s_recs_free(recs *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->r[i].bytes);
    free(c->r);
    memset(c, 0, sizeof *c);
}

static int s_rec_eq(const rec *a, const rec *b)
{
    return a->type == b->type && a->id == b->id && a->time_us == b->time_us
        && a->clen == b->clen && a->elen == b->elen && a->dlen == b->dlen
        && memcmp(a->bytes, b->bytes, a->clen + a->elen + a->dlen) == 0;
}

/* ---- files ---------------------------------------------------------------------- */

static void s_empty_dir(const char *dir)
{
    DIR *d = opendir(dir);
    FUZZ_CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FUZZ_CHECK(unlink(path) == 0);
    }
    closedir(d);
}

static void s_write_file(const char *path, const void *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0640);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(n == 0 || write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static unsigned char *s_read_file(const char *path, size_t *n)
{
    struct stat st;
    FUZZ_CHECK(stat(path, &st) == 0);
    *n = (size_t)st.st_size;
    unsigned char *p = malloc(*n + 1);
    FUZZ_CHECK(p != NULL);
    int fd = open(path, O_RDONLY);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(*n == 0 || read(fd, p, *n) == (ssize_t)*n);
    close(fd);
    return p;
}

static void s_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t s_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void s_header(unsigned char h[STORE_HEADER_SIZE])
{
    memcpy(h, "PUSHJRNL", 8);
    s_put32(h + 8, 1);
    s_put32(h + 12, (uint32_t)crc32(0, h, 12));
}

/* Write the right CRC into every record whose size field fits. */
static void s_fix_crcs(unsigned char *p, size_t len)
{
    size_t off = STORE_HEADER_SIZE;
    while (off + STORE_RECORD_HEAD <= len) {
        uint32_t body = s_get32(p + off);
        if (body > len - off - STORE_RECORD_HEAD)
            break;
        uint32_t crc = (uint32_t)crc32(0, p + off, 4);
        if (body)
            crc = (uint32_t)crc32(crc, p + off + STORE_RECORD_HEAD, body);
        s_put32(p + off + 4, crc);
        off += STORE_RECORD_HEAD + body;
    }
}

/* ---- brokers -------------------------------------------------------------------- */

static void s_broker(broker *b, broker_config *cfg, const char *dir, uint64_t history_max)
{
    FUZZ_CHECK(config_defaults(cfg) == 0);
    cfg->history_max = history_max;
    cfg->history_age = 0;         /* no age trimming: deterministic */
    cfg->fsync = STORE_FSYNC_NO;
    cfg->data_dir = strdup(dir);
    FUZZ_CHECK(cfg->data_dir != NULL);
    FUZZ_CHECK(broker_init(b, cfg, 1, 0) == 0);
}

static void s_broker_free(broker *b, broker_config *cfg)
{
    broker_free(b);
    config_free(cfg);
}

/* What compaction writes (broker.c s_emit), through the public store API. */
static void s_write_compacted(const broker *b, const char *dir)
{
    store_recovery rec;
    store *s = store_open(dir, STORE_FSYNC_NO, NULL, NULL, &rec);
    FUZZ_CHECK(s != NULL);
    const channel_table *t = &b->channels;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next) {
            const history *h = &c->hist;
            uint64_t last = history_last_id(h), oldest = history_oldest_id(h);
            if (!last)
                continue;
            store_record r = { .type = STORE_REC_FLOOR, .channel = c->name,
                               .channel_len = c->name_len, .id = oldest - 1 };
            if (oldest > 1)
                FUZZ_CHECK(store_append(s, &r) == 0);
            r.type = STORE_REC_MSG;
            for (uint64_t id = oldest; id <= last; id++) {
                const history_msg *m = history_get(h, id);
                FUZZ_CHECK(m != NULL && m->id == id);
                r.id = m->id;
                r.time_us = m->time_us;
                r.event = m->event;
                r.event_len = m->event_len;
                r.data = m->data;
                r.data_len = m->data_len;
                FUZZ_CHECK(store_append(s, &r) == 0);
            }
        }
    FUZZ_CHECK(store_close(s) == 0);
}

/* Every channel that ever had a message is the same in both. */
static void s_same_channels(const broker *a, const broker *b)
{
    size_t na = 0, nb = 0;
    const channel_table *t = &a->channels;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next) {
            const history *h = &c->hist;
            if (!history_last_id(h))
                continue;
            na++;
            const channel *d = channel_find(&b->channels, c->name, c->name_len);
            FUZZ_CHECK(d != NULL);
            const history *g = &d->hist;
            FUZZ_CHECK(history_last_id(g) == history_last_id(h));
            FUZZ_CHECK(history_oldest_id(g) == history_oldest_id(h));
            FUZZ_CHECK(history_count(g) == history_count(h));
            FUZZ_CHECK(history_bytes(g) == history_bytes(h));
            for (uint64_t id = history_oldest_id(h); id <= history_last_id(h); id++) {
                const history_msg *m = history_get(h, id), *n = history_get(g, id);
                FUZZ_CHECK(m && n && m->time_us == n->time_us);
                FUZZ_CHECK(m->event_len == n->event_len
                           && memcmp(m->event, n->event, m->event_len) == 0);
                FUZZ_CHECK(m->data_len == n->data_len
                           && memcmp(m->data, n->data, m->data_len) == 0);
            }
        }
    t = &b->channels;
    for (size_t i = 0; i < t->nbucket; i++)
        for (const channel *c = t->bucket[i]; c; c = c->next)
            nb += history_last_id(&c->hist) != 0;
    FUZZ_CHECK(na == nb);
}

/* ---- the harness -------------------------------------------------------------------- */

static void s_mkdtemp(char *out, size_t size, const char *base)
{
    snprintf(out, size, "%s/push-fuzz-store.XXXXXX", base);
    FUZZ_CHECK(mkdtemp(out) != NULL);
}

static void s_cleanup(void)
{
    if (s_dir[0]) {
        s_empty_dir(s_dir);
        rmdir(s_dir);
    }
    if (s_dir2[0]) {
        s_empty_dir(s_dir2);
        rmdir(s_dir2);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_open("/dev/null");
    /* tmpfs when there is one: the store fdatasyncs */
    const char *base = getenv("PUSH_FUZZ_TMPDIR");
    struct stat st;
    if (!base)
        base = stat("/dev/shm", &st) == 0 && access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                                                                           : "/tmp";
    s_mkdtemp(s_dir, sizeof s_dir, base);
    s_mkdtemp(s_dir2, sizeof s_dir2, base);
    atexit(s_cleanup);
    return 0;
}

static const uint64_t s_hmax[8] = { 1, 2, 3, 5, 8, 100, 1000, 1000 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0];
    data++;
    size--;
    s_empty_dir(s_dir);
    s_empty_dir(s_dir2);

    /* the file */
    size_t len = size + ((mode & 1) ? STORE_HEADER_SIZE : 0);
    unsigned char *file = malloc(len + 1);
    FUZZ_CHECK(file != NULL);
    if (mode & 1)
        s_header(file);
    if (size)
        memcpy(file + len - size, data, size);
    if (mode & 2)
        s_fix_crcs(file, len);
    char path[300];
    snprintf(path, sizeof path, "%s/%s", s_dir, STORE_FILE);
    s_write_file(path, file, len);

    unsigned char hdr[STORE_HEADER_SIZE];
    s_header(hdr);
    int is_journal = len >= STORE_HEADER_SIZE ? memcmp(file, hdr, STORE_HEADER_SIZE) == 0
                                              : memcmp(file, hdr, len) == 0;

    /* first open: recovery */
    recs first = { 0 };
    store_recovery rec;
    store *s = store_open(s_dir, STORE_FSYNC_NO, s_collect, &first, &rec);
    if (!s) {
        FUZZ_CHECK(!is_journal);            /* only a file that is not ours is refused */
        FUZZ_CHECK(errno == EINVAL);
        size_t n;
        unsigned char *now = s_read_file(path, &n);
        FUZZ_CHECK(n == len && memcmp(now, file, len) == 0);   /* untouched */
        free(now);
        s_recs_free(&first);
        free(file);
        return 0;
    }
    FUZZ_CHECK(is_journal);
    FUZZ_CHECK(rec.records == first.n);
    uint64_t kept = STORE_HEADER_SIZE;
    for (size_t i = 0; i < first.n; i++)
        kept += store_record_size(first.r[i].clen, first.r[i].elen, first.r[i].dlen);
    FUZZ_CHECK(rec.bytes == kept && store_size(s) == kept);
    if (len >= STORE_HEADER_SIZE) {
        FUZZ_CHECK(rec.dropped_bytes == len - kept);
        if (rec.dropped_bytes) {
            FUZZ_CHECK(rec.cut_offset == kept && rec.dropped_records >= 1);
        } else {
            FUZZ_CHECK(rec.dropped_records == 0);
        }
        /* what is kept is the original prefix */
        size_t n;
        unsigned char *now = s_read_file(path, &n);
        FUZZ_CHECK(n == kept && memcmp(now, file, kept) == 0);
        free(now);
    }

    /* optionally append after recovery */
    int appended = 0;
    if (mode & 4) {
        store_record r = { .type = STORE_REC_MSG, .channel = "fuzz", .channel_len = 4,
                           .id = 1, .time_us = 7, .event = "e", .event_len = 1,
                           .data = "appended", .data_len = 8 };
        FUZZ_CHECK(store_append(s, &r) == 0);
        FUZZ_CHECK(store_commit(s) == 0);
        FUZZ_CHECK(s_collect(&first, &r) == 0);
        appended = 1;
    }
    FUZZ_CHECK(store_close(s) == 0);

    /* second open: the same records, nothing cut */
    recs second = { 0 };
    s = store_open(s_dir, STORE_FSYNC_NO, s_collect, &second, &rec);
    FUZZ_CHECK(s != NULL);
    FUZZ_CHECK(rec.dropped_bytes == 0 && rec.dropped_records == 0);
    FUZZ_CHECK(second.n == first.n);
    for (size_t i = 0; i < first.n; i++)
        FUZZ_CHECK(s_rec_eq(&first.r[i], &second.r[i]));
    FUZZ_CHECK(store_close(s) == 0);
    size_t kept_records = first.n;
    s_recs_free(&first);
    s_recs_free(&second);
    (void)appended;
    if (kept_records == 0) {        /* nothing to replay: skip the slow part */
        free(file);
        return 0;
    }

    /* the broker's replay, then compaction's output replayed again */
    broker_config cfg1, cfg2;
    broker b1, b2;
    uint64_t hmax = s_hmax[(mode >> 3) & 7];
    s_broker(&b1, &cfg1, s_dir, hmax);
    FUZZ_CHECK(broker_open_store(&b1, 0) == 0);
    s_write_compacted(&b1, s_dir2);
    s_broker(&b2, &cfg2, s_dir2, hmax);
    FUZZ_CHECK(broker_open_store(&b2, 0) == 0);
    FUZZ_CHECK(b2.replay_stale == 0);
    s_same_channels(&b1, &b2);
    s_broker_free(&b2, &cfg2);
    s_broker_free(&b1, &cfg1);
    free(file);
    return 0;
}
