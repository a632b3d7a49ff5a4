/*
 * store.c — see store.h.
 */
#define _GNU_SOURCE
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#include "clock.h"
#include "log.h"
#include "push_proto.h"

#define MAGIC        "PUSHJRNL"
#define VERSION      1u
#define BUF_KEEP     (8u * 1024 * 1024)   /* a bigger buffer is shrunk after a write */

typedef unsigned long long ull;

/* Filled in by the compaction child, read by the parent after waitpid(). */
typedef struct compact_shared {
    int      done;
    int      stage;
    int      err;
    uint64_t bytes;
    uint64_t records;
    uint64_t elapsed_us;
} compact_shared;

struct store_writer {
    int            fd;
    unsigned char *buf;
    size_t         len, cap;
    uint64_t       bytes, records;
};

typedef struct syncer {
    pthread_t       thread;
    pthread_mutex_t mu;
    pthread_cond_t  cv;
    int             running;
    int             stop;
    int             req_fd;       /* to fdatasync; -1 when none */
    int             close_fd;     /* to close; -1 when none */
    uint64_t        req_upto;
    int             busy;         /* a request is queued or in progress */
    int             have_result;
    uint64_t        res_upto;
    int             res_err;
} syncer;

struct store {
    char           *dir, *path, *tmp_path;
    int             dirfd, fd, lockfd;
    int             policy;
    pid_t           owner;
    /* records not yet written */
    unsigned char  *buf;
    size_t          len, cap;
    size_t          cancel_len;
    int             can_cancel;
    /* positions */
    uint64_t        size;             /* bytes in the journal file */
    uint64_t        appended;         /* bytes written since open, over all files */
    uint64_t        synced;           /* ... of which fdatasync()ed */
    uint64_t        unsynced_since;   /* monotonic us of the oldest unsynced append */
    uint64_t        sync_req_time;
    int             failed;           /* errno of a failing write */
    int             fatal;            /* errno of a failed fdatasync */
    syncer          sync;
    /* compaction */
    pid_t           child;
    uint64_t        child_from;       /* journal size at the fork */
    uint64_t        child_start;
    uint64_t        fork_us;          /* how long fork() stalled the broker */
    pid_t           child_pid;        /* for the log, after it was reaped */
    int             nfd;              /* the new journal while catching up, or -1 */
    uint64_t        copied;           /* old journal bytes copied to it so far */
    uint64_t        steps;
    uint64_t        pause_max;
    compact_shared *shared;
    unsigned char  *cbuf;             /* STORE_BUFFER_FLUSH bytes, allocated before forking */
    uint64_t        compact_next;
    uint64_t        compactions;
};

/* ---- little helpers ---------------------------------------------------- */

static void s_put32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void s_put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t s_get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t s_get64(const unsigned char *p)
{
    return (uint64_t)s_get32(p) | (uint64_t)s_get32(p + 4) << 32;
}

/* zlib's crc32 treats a NULL buffer as "give me the initial value". */
static uint32_t s_crc(uint32_t crc, const void *p, size_t len)
{
    return len ? (uint32_t)crc32_z(crc, p, len) : crc;
}

static uint64_t s_max(uint64_t a, uint64_t b)
{
    return a > b ? a : b;
}

static int s_write_all(int fd, const void *p, size_t len)
{
    const char *c = p;
    while (len) {
        ssize_t w = write(fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        c += w;
        len -= (size_t)w;
    }
    return 0;
}

static void s_header(unsigned char h[STORE_HEADER_SIZE])
{
    memcpy(h, MAGIC, 8);
    s_put32(h + 8, VERSION);
    s_put32(h + 12, s_crc(0, h, 12));
}

int store_fsync_parse(const char *name)
{
    if (strcmp(name, "always") == 0)
        return STORE_FSYNC_ALWAYS;
    if (strcmp(name, "everysec") == 0)
        return STORE_FSYNC_EVERYSEC;
    if (strcmp(name, "no") == 0)
        return STORE_FSYNC_NO;
    return -1;
}

const char *store_fsync_name(int policy)
{
    switch (policy) {
    case STORE_FSYNC_ALWAYS:   return "always";
    case STORE_FSYNC_EVERYSEC: return "everysec";
    case STORE_FSYNC_NO:       return "no";
    default:                   return "?";
    }
}

uint64_t store_record_size(size_t channel_len, size_t event_len, size_t data_len)
{
    return STORE_RECORD_OVERHEAD + (uint64_t)channel_len + event_len + data_len;
}

/* ---- encoding ---------------------------------------------------------- */

/* Fills the record's first STORE_RECORD_OVERHEAD bytes, CRC included.
 * Returns the record's total size, or 0 (EINVAL) when it cannot be stored. */
static size_t s_head(const store_record *r, unsigned char *h)
{
    if (r->channel_len < 1 || r->channel_len > PUSH_CHANNEL_MAX
        || r->event_len > PUSH_EVENT_MAX
        || r->data_len > STORE_BODY_MAX - 20 - r->channel_len - r->event_len
        || (r->type != STORE_REC_MSG && r->type != STORE_REC_FLOOR)) {
        errno = EINVAL;
        return 0;
    }
    uint32_t body = (uint32_t)(20 + r->channel_len + r->event_len + r->data_len);
    s_put32(h, body);
    h[8] = (unsigned char)r->type;
    h[9] = (unsigned char)r->channel_len;
    h[10] = (unsigned char)r->event_len;
    h[11] = 0;
    s_put64(h + 12, r->id);
    s_put64(h + 20, r->time_us);
    uint32_t crc = s_crc(0, h, 4);
    crc = s_crc(crc, h + 8, 20);
    crc = s_crc(crc, r->channel, r->channel_len);
    crc = s_crc(crc, r->event, r->event_len);
    crc = s_crc(crc, r->data, r->data_len);
    s_put32(h + 4, crc);
    return STORE_RECORD_HEAD + body;
}

static void s_copy_record(unsigned char *dst, const unsigned char *head, const store_record *r)
{
    memcpy(dst, head, STORE_RECORD_OVERHEAD);
    dst += STORE_RECORD_OVERHEAD;
    if (r->channel_len)
        memcpy(dst, r->channel, r->channel_len);
    dst += r->channel_len;
    if (r->event_len)
        memcpy(dst, r->event, r->event_len);
    dst += r->event_len;
    if (r->data_len)
        memcpy(dst, r->data, r->data_len);
}

/* ---- decoding ---------------------------------------------------------- */

/* Decodes the record at p (avail bytes to the end of the file).  Returns its
 * total size, or 0 with the reason in why. */
static uint64_t s_decode(const unsigned char *p, uint64_t avail, store_record *r,
                         char *why, size_t whysize)
{
    if (avail < STORE_RECORD_HEAD) {
        snprintf(why, whysize, "incomplete record head (%llu of %d bytes)",
                 (ull)avail, STORE_RECORD_HEAD);
        return 0;
    }
    uint32_t body = s_get32(p);
    if (body < 20 || body > STORE_BODY_MAX) {
        snprintf(why, whysize, "impossible record size %lu", (unsigned long)body);
        return 0;
    }
    if (avail - STORE_RECORD_HEAD < body) {
        snprintf(why, whysize, "incomplete record (%llu of %llu bytes)",
                 (ull)avail, (ull)body + STORE_RECORD_HEAD);
        return 0;
    }
    uint32_t crc = s_crc(s_crc(0, p, 4), p + STORE_RECORD_HEAD, body);
    if (crc != s_get32(p + 4)) {
        snprintf(why, whysize, "checksum mismatch");
        return 0;
    }
    size_t clen = p[9], elen = p[10];
    r->type = p[8];
    r->channel = (const char *)p + STORE_RECORD_OVERHEAD;
    r->channel_len = clen;
    r->event = r->channel + clen;
    r->event_len = elen;
    r->id = s_get64(p + 12);
    r->time_us = s_get64(p + 20);
    int ok = (r->type == STORE_REC_MSG || r->type == STORE_REC_FLOOR) && p[11] == 0
          && 20 + clen + elen <= body;
    if (ok) {
        r->data = r->event + elen;
        r->data_len = body - 20 - clen - elen;
        ok = push_channel_valid(r->channel, clen) && push_event_valid(r->event, elen)
          && r->id <= (uint64_t)INT64_MAX
          && (r->type == STORE_REC_FLOOR ? elen == 0 && r->data_len == 0 : r->id >= 1);
    }
    if (!ok) {
        snprintf(why, whysize, "invalid record contents (type %u)", p[8]);
        return 0;
    }
    return STORE_RECORD_HEAD + (uint64_t)body;
}

/* ---- files ------------------------------------------------------------- */

static int s_mkdirs(const char *dir)
{
    char *p = strdup(dir);
    if (!p)
        return -1;
    int rc = 0;
    for (char *c = p + 1; rc == 0; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        if (mkdir(p, 0750) < 0 && errno != EEXIST)
            rc = -1;
        *c = saved;
        if (!saved)
            break;
    }
    free(p);
    return rc;
}

static int s_lock(store *s)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s", s->dir, STORE_LOCK_FILE) < 0)
        return -1;
    s->lockfd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (s->lockfd < 0) {
        log_error("message store: cannot open %s: %s", path, strerror(errno));
        free(path);
        return -1;
    }
    if (flock(s->lockfd, LOCK_EX | LOCK_NB) < 0) {
        int e = errno;
        char pid[24] = "";
        ssize_t n = pread(s->lockfd, pid, sizeof pid - 1, 0);
        pid[n > 0 ? n : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        if (e == EWOULDBLOCK)
            log_error("message store: data directory %s is in use by another pushbrokerd "
                      "(pid %s)", s->dir, *pid ? pid : "unknown");
        else
            log_error("message store: cannot lock %s: %s", path, strerror(e));
        free(path);
        errno = e == EWOULDBLOCK ? EBUSY : e;
        return -1;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(s->lockfd, 0) < 0 || pwrite(s->lockfd, pid, (size_t)n, 0) != n)
        log_warn("message store: cannot write the pid to %s: %s", path, strerror(errno));
    free(path);
    return 0;
}

/* A fresh journal: header into the temp file, fsync, rename, fsync dir. */
static int s_create(store *s)
{
    unsigned char h[STORE_HEADER_SIZE];
    s_header(h);
    int fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    int rc = fd < 0 || s_write_all(fd, h, sizeof h) < 0 || fdatasync(fd) < 0
          || rename(s->tmp_path, s->path) < 0 || fsync(s->dirfd) < 0 ? -1 : 0;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (rc < 0) {
        log_error("message store: cannot create %s: %s", s->path, strerror(e));
        unlink(s->tmp_path);
        errno = e;
        return -1;
    }
    log_info("message store: created %s", s->path);
    return 0;
}

/* Saves the bytes about to be cut off; returns the file name or NULL. */
static char *s_save_tail(store *s, const unsigned char *p, uint64_t off, uint64_t len)
{
    char *path = NULL;
    if (asprintf(&path, "%s/%s.damaged.%lld.%llu", s->dir, STORE_FILE,
                 (long long)time(NULL), (ull)off) < 0)
        return NULL;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0640);
    if (fd < 0 || s_write_all(fd, p, (size_t)len) < 0 || fdatasync(fd) < 0) {
        log_warn("message store: cannot save the damaged tail to %s: %s", path,
                 strerror(errno));
        if (fd >= 0) {
            close(fd);
            unlink(path);
        }
        free(path);
        return NULL;
    }
    close(fd);
    return path;
}

/* Counts the intact records that follow a damaged one (when its size is
 * plausible enough to step over it). */
static uint64_t s_intact_after(const unsigned char *map, uint64_t off, uint64_t size)
{
    uint64_t n = 0;
    if (size - off < STORE_RECORD_HEAD)
        return 0;
    uint32_t body = s_get32(map + off);
    if (body < 20 || body > STORE_BODY_MAX || size - off - STORE_RECORD_HEAD < body)
        return 0;
    off += STORE_RECORD_HEAD + (uint64_t)body;
    store_record r;
    char why[128];
    uint64_t len;
    while (off < size && (len = s_decode(map + off, size - off, &r, why, sizeof why)) > 0) {
        off += len;
        n++;
    }
    return n;
}

static int s_cut(store *s, const unsigned char *map, uint64_t off, uint64_t size,
                 const char *why, uint64_t kept, store_recovery *rec)
{
    rec->cut_offset = off;
    rec->dropped_bytes = size - off;
    uint64_t intact = s_intact_after(map, off, size);
    rec->dropped_records = 1 + intact;
    char *saved = s_save_tail(s, map + off, off, size - off);
    log_warn("message store %s: damaged tail cut off at offset %llu: %s; dropped %llu "
             "bytes, %llu record%s (the damaged one and %llu intact after it); kept %llu "
             "records (%llu bytes)%s%s",
             s->path, (ull)off, why, (ull)(size - off), (ull)rec->dropped_records,
             rec->dropped_records == 1 ? "" : "s", (ull)intact, (ull)kept, (ull)off,
             saved ? "; the dropped bytes are saved in " : "", saved ? saved : "");
    free(saved);
    if (ftruncate(s->fd, (off_t)off) < 0 || fdatasync(s->fd) < 0) {
        log_error("message store: cannot truncate %s: %s", s->path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A file shorter than the header: a prefix of one is a crash during
 * creation (before rename existed; harmless to restart), anything else is
 * not ours. */
static int s_short_file(store *s, uint64_t size)
{
    unsigned char want[STORE_HEADER_SIZE], got[STORE_HEADER_SIZE];
    s_header(want);
    if (size && pread(s->fd, got, (size_t)size, 0) != (ssize_t)size) {
        log_error("message store: cannot read %s: %s", s->path, strerror(errno));
        return -1;
    }
    if (size && memcmp(got, want, (size_t)size) != 0) {
        log_error("message store: %s is not a pushbrokerd journal (%llu bytes, bad header); "
                  "move it away or choose another data_dir", s->path, (ull)size);
        errno = EINVAL;
        return -1;
    }
    if (!size)
        log_info("message store: %s is empty: starting the journal afresh", s->path);
    else
        log_warn("message store %s: incomplete file header (%llu of %d bytes): "
                 "starting the journal afresh", s->path, (ull)size, STORE_HEADER_SIZE);
    if (ftruncate(s->fd, 0) < 0 || s_write_all(s->fd, want, sizeof want) < 0
        || fdatasync(s->fd) < 0) {
        log_error("message store: cannot write %s: %s", s->path, strerror(errno));
        return -1;
    }
    s->size = STORE_HEADER_SIZE;
    return 0;
}

static int s_check_header(store *s, const unsigned char *h)
{
    if (memcmp(h, MAGIC, 8) != 0) {
        log_error("message store: %s is not a pushbrokerd journal (bad magic); "
                  "move it away or choose another data_dir", s->path);
    } else if (s_get32(h + 12) != s_crc(0, h, 12)) {
        log_error("message store: %s has a damaged file header (checksum mismatch); "
                  "refusing to guess", s->path);
    } else if (s_get32(h + 8) != VERSION) {
        log_error("message store: %s has journal version %lu; this pushbrokerd reads "
                  "version %u", s->path, (unsigned long)s_get32(h + 8), VERSION);
    } else {
        return 0;
    }
    errno = EINVAL;
    return -1;
}

static int s_recover(store *s, store_replay_fn replay, void *ctx, store_recovery *rec)
{
    struct stat st;
    if (fstat(s->fd, &st) < 0)
        return -1;
    uint64_t size = (uint64_t)st.st_size;
    if (size < STORE_HEADER_SIZE)
        return s_short_file(s, size);
    unsigned char *map = mmap(NULL, (size_t)size, PROT_READ, MAP_PRIVATE, s->fd, 0);
    if (map == MAP_FAILED) {
        log_error("message store: cannot map %s: %s", s->path, strerror(errno));
        return -1;
    }
    madvise(map, (size_t)size, MADV_SEQUENTIAL);
    int rc = s_check_header(s, map);
    uint64_t off = STORE_HEADER_SIZE, len = 0;
    char why[160] = "";
    store_record r;
    while (rc == 0 && off < size
           && (len = s_decode(map + off, size - off, &r, why, sizeof why)) > 0) {
        if (replay && replay(ctx, &r) < 0) {
            log_error("message store: cannot replay %s: %s", s->path, strerror(errno));
            rc = -1;
            break;
        }
        rec->records++;
        off += len;
    }
    if (rc == 0 && off < size)
        rc = s_cut(s, map, off, size, why, rec->records, rec);
    munmap(map, (size_t)size);
    s->size = off;
    return rc;
}

/* ---- the background thread ----------------------------------------------
 * It runs the everysec fdatasync() and closes replaced journals (closing the
 * last descriptor of a big unlinked file frees its blocks, which takes a
 * while).  It gets its own descriptors (dup), so the broker can switch files
 * under it. */

static void *s_bg_main(void *arg)
{
    syncer *y = arg;
    pthread_mutex_lock(&y->mu);
    for (;;) {
        while (!y->stop && y->req_fd < 0 && y->close_fd < 0)
            pthread_cond_wait(&y->cv, &y->mu);
        if (y->req_fd < 0 && y->close_fd < 0)
            break;
        int fd = y->req_fd, cfd = y->close_fd;
        uint64_t upto = y->req_upto;
        y->req_fd = y->close_fd = -1;
        pthread_mutex_unlock(&y->mu);
        int rc = 0, e = 0;
        if (fd >= 0) {
            rc = fdatasync(fd);
            e = errno;
            close(fd);
        }
        if (cfd >= 0)
            close(cfd);
        pthread_mutex_lock(&y->mu);
        if (fd >= 0) {
            y->res_upto = upto;
            y->res_err = rc < 0 ? e : 0;
            y->have_result = 1;
            y->busy = 0;
        }
    }
    pthread_mutex_unlock(&y->mu);
    return NULL;
}

static int s_bg_start(store *s)
{
    syncer *y = &s->sync;
    if (pthread_mutex_init(&y->mu, NULL) != 0)
        return -1;
    if (pthread_cond_init(&y->cv, NULL) != 0) {
        pthread_mutex_destroy(&y->mu);
        return -1;
    }
    /* block the broker's signals in the thread: they must reach the main
     * thread, whose zmq_poll() they interrupt */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&y->thread, NULL, s_bg_main, y);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        pthread_cond_destroy(&y->cv);
        pthread_mutex_destroy(&y->mu);
        errno = rc;
        return -1;
    }
    y->running = 1;
    return 0;
}

static void s_bg_stop(store *s)
{
    syncer *y = &s->sync;
    if (!y->running)
        return;
    pthread_mutex_lock(&y->mu);
    y->stop = 1;
    pthread_cond_signal(&y->cv);
    pthread_mutex_unlock(&y->mu);
    pthread_join(y->thread, NULL);
    pthread_cond_destroy(&y->cv);
    pthread_mutex_destroy(&y->mu);
    y->running = 0;
}

/* Close fd in the background (at once when the thread is busy closing). */
static void s_bg_close(store *s, int fd)
{
    syncer *y = &s->sync;
    if (y->running) {
        pthread_mutex_lock(&y->mu);
        int queued = y->close_fd < 0;
        if (queued) {
            y->close_fd = fd;
            pthread_cond_signal(&y->cv);
        }
        pthread_mutex_unlock(&y->mu);
        if (queued)
            return;
    }
    close(fd);
}

static void s_set_fatal(store *s, int e, const char *what)
{
    if (s->fatal)
        return;
    s->fatal = e ? e : EIO;
    log_error("message store: %s of %s failed: %s; data acknowledged from now on could "
              "be lost, so the broker stops accepting messages", what, s->path,
              strerror(s->fatal));
}

static void s_sync_collect(store *s)
{
    syncer *y = &s->sync;
    if (!y->running)
        return;
    pthread_mutex_lock(&y->mu);
    int have = y->have_result;
    uint64_t upto = y->res_upto;
    int err = y->res_err;
    y->have_result = 0;
    pthread_mutex_unlock(&y->mu);
    if (!have)
        return;
    if (err) {
        s_set_fatal(s, err, "background fdatasync");
        return;
    }
    if (upto > s->synced) {
        s->synced = upto;
        s->unsynced_since = s->synced >= s->appended && s->len == 0 ? 0 : s->sync_req_time;
    }
}

static void s_sync_maybe_start(store *s, uint64_t now)
{
    syncer *y = &s->sync;
    if (!y->running || s->synced >= s->appended || !s->unsynced_since
        || now - s->unsynced_since < STORE_EVERYSEC_US)
        return;
    pthread_mutex_lock(&y->mu);
    if (!y->busy) {
        int fd = fcntl(s->fd, F_DUPFD_CLOEXEC, 0);
        if (fd < 0) {
            log_warn("message store: cannot start a background fdatasync: %s",
                     strerror(errno));
        } else {
            y->req_fd = fd;
            y->req_upto = s->appended;
            y->busy = 1;
            s->sync_req_time = now;
            pthread_cond_signal(&y->cv);
        }
    }
    pthread_mutex_unlock(&y->mu);
}

/* ---- open / close ------------------------------------------------------ */

static store *s_alloc(const char *dir, int policy)
{
    store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->dirfd = s->fd = s->lockfd = s->nfd = -1;
    s->sync.req_fd = s->sync.close_fd = -1;
    s->policy = policy;
    s->owner = getpid();
    s->dir = strdup(dir);
    size_t n = strlen(dir) + sizeof STORE_TMP_FILE + 1;
    s->path = malloc(n);
    s->tmp_path = malloc(n);
    if (!s->dir || !s->path || !s->tmp_path) {
        store_close(s);
        errno = ENOMEM;
        return NULL;
    }
    snprintf(s->path, n, "%s/%s", dir, STORE_FILE);
    snprintf(s->tmp_path, n, "%s/%s", dir, STORE_TMP_FILE);
    return s;
}

static int s_open_files(store *s)
{
    if (s_mkdirs(s->dir) < 0) {
        log_error("message store: cannot create directory %s: %s", s->dir, strerror(errno));
        return -1;
    }
    s->dirfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s->dirfd < 0) {
        log_error("message store: cannot open directory %s: %s", s->dir, strerror(errno));
        return -1;
    }
    if (s_lock(s) < 0)
        return -1;
    if (unlink(s->tmp_path) == 0)
        log_info("message store: removed %s, left by a compaction that did not finish",
                 s->tmp_path);
    s->fd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (s->fd < 0 && errno == ENOENT && s_create(s) == 0)
        s->fd = open(s->path, O_RDWR | O_APPEND | O_CLOEXEC);
    if (s->fd < 0) {
        log_error("message store: cannot open %s: %s", s->path, strerror(errno));
        return -1;
    }
    return 0;
}

store *store_open(const char *dir, int policy, store_replay_fn replay, void *ctx,
                  store_recovery *rec)
{
    uint64_t t0 = clock_mono_us();
    memset(rec, 0, sizeof *rec);
    store *s = s_alloc(dir, policy);
    if (!s)
        return NULL;
    (void)s_crc(0, "", 1);   /* zlib may build its tables on first use: not in a child */
    int rc = s_open_files(s) < 0 || s_recover(s, replay, ctx, rec) < 0 ? -1 : 0;
    if (rc == 0 && fdatasync(s->fd) < 0) {
        log_error("message store: cannot sync %s: %s", s->path, strerror(errno));
        rc = -1;
    }
    if (rc == 0) {
        s->shared = mmap(NULL, sizeof *s->shared, PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        s->cbuf = malloc(STORE_BUFFER_FLUSH);
        if (s->shared == MAP_FAILED)
            s->shared = NULL;
        if (!s->shared || !s->cbuf) {
            log_error("message store: out of memory");
            rc = -1;
        }
    }
    if (rc == 0 && s_bg_start(s) < 0) {
        log_error("message store: cannot start its thread: %s", strerror(errno));
        rc = -1;
    }
    if (rc < 0) {
        int e = errno;
        store_close(s);
        errno = e;
        return NULL;
    }
    s->compact_next = STORE_COMPACT_MIN;
    rec->bytes = s->size;
    rec->elapsed_us = clock_mono_us() - t0;
    return s;
}

static void s_compact_abort(store *s);

int store_close(store *s)
{
    if (!s)
        return 0;
    int rc = 0;
    if (store_compacting(s))
        s_compact_abort(s);
    if (s->fd >= 0 && !s->fatal) {
        s->failed = 0;   /* one last try */
        if (store_commit(s) < 0 || fdatasync(s->fd) < 0) {
            log_error("message store: cannot write or sync %s at close: %s", s->path,
                      strerror(errno));
            rc = -1;
        }
    }
    s_bg_stop(s);
    if (s->fd >= 0)
        close(s->fd);
    if (s->dirfd >= 0)
        close(s->dirfd);
    if (s->lockfd >= 0)
        close(s->lockfd);   /* releases the flock */
    if (s->shared)
        munmap(s->shared, sizeof *s->shared);
    free(s->cbuf);
    free(s->buf);
    free(s->dir);
    free(s->path);
    free(s->tmp_path);
    free(s);
    return rc;
}

/* ---- appending --------------------------------------------------------- */

/* Writes the buffer to the journal.  A failure cuts the file back to its
 * last whole record and keeps the buffer for a retry. */
static int s_write_buffer(store *s)
{
    if (!s->len)
        return 0;
    if (s_write_all(s->fd, s->buf, s->len) < 0) {
        int e = errno;
        if (ftruncate(s->fd, (off_t)s->size) < 0) {
            s_set_fatal(s, errno, "truncation after a failed write");
            errno = e;
            return -1;
        }
        if (!s->failed)
            log_error("message store: cannot write %s: %s; messages are refused until "
                      "writing works again", s->path, strerror(e));
        s->failed = e;
        errno = e;
        return -1;
    }
    if (s->failed)
        log_info("message store: writing %s works again", s->path);
    s->failed = 0;
    s->size += s->len;
    s->appended += s->len;
    s->len = 0;
    if (s->cap > BUF_KEEP) {
        unsigned char *small = realloc(s->buf, STORE_BUFFER_FLUSH);
        if (small) {
            s->buf = small;
            s->cap = STORE_BUFFER_FLUSH;
        }
    }
    return 0;
}

static int s_reserve(store *s, size_t n)
{
    if (s->len + n <= s->cap)
        return 0;
    size_t cap = s->cap ? s->cap : 64 * 1024;
    while (cap < s->len + n)
        cap *= 2;
    unsigned char *b = realloc(s->buf, cap);
    if (!b)
        return -1;
    s->buf = b;
    s->cap = cap;
    return 0;
}

int store_append(store *s, const store_record *r)
{
    unsigned char head[STORE_RECORD_OVERHEAD];
    s->can_cancel = 0;
    if (s->fatal || s->failed) {
        errno = EIO;
        return -1;
    }
    size_t n = s_head(r, head);
    if (!n)
        return -1;
    if (s->len && s->len + n > STORE_BUFFER_FLUSH && s_write_buffer(s) < 0) {
        errno = EIO;
        return -1;
    }
    if (s_reserve(s, n) < 0)
        return -1;
    s_copy_record(s->buf + s->len, head, r);
    s->cancel_len = s->len;
    s->can_cancel = 1;
    s->len += n;
    if (!s->unsynced_since)
        s->unsynced_since = clock_mono_us();
    return 0;
}

void store_cancel_last(store *s)
{
    if (s->can_cancel)
        s->len = s->cancel_len;
    s->can_cancel = 0;
    if (s->len == 0 && s->synced >= s->appended)
        s->unsynced_since = 0;
}

int store_commit(store *s)
{
    s->can_cancel = 0;
    if (s->fatal)
        return -2;
    if (s->len && s_write_buffer(s) < 0)
        return s->fatal ? -2 : -1;
    if (s->policy == STORE_FSYNC_ALWAYS && s->synced < s->appended) {
        if (fdatasync(s->fd) < 0) {
            s_set_fatal(s, errno, "fdatasync");
            return -2;
        }
        s->synced = s->appended;
        s->unsynced_since = 0;
    }
    return 0;
}

int store_dirty(const store *s)
{
    return s->len > 0 || (s->policy == STORE_FSYNC_ALWAYS && s->synced < s->appended);
}

int store_failed(const store *s)
{
    return s->failed;
}

int store_fatal(const store *s)
{
    return s->fatal;
}

/* ---- compaction -------------------------------------------------------- */

static int s_writer_flush(store_writer *w)
{
    if (w->len && s_write_all(w->fd, w->buf, w->len) < 0)
        return -1;
    w->len = 0;
    return 0;
}

int store_writer_put(store_writer *w, const store_record *r)
{
    unsigned char head[STORE_RECORD_OVERHEAD];
    size_t n = s_head(r, head);
    if (!n)
        return -1;
    if (w->len + n > w->cap && s_writer_flush(w) < 0)
        return -1;
    if (n <= w->cap) {
        s_copy_record(w->buf + w->len, head, r);
        w->len += n;
    } else {
        /* bigger than the buffer: straight to the file, no allocation */
        struct iovec iov[4] = {
            { head, sizeof head }, { (void *)r->channel, r->channel_len },
            { (void *)r->event, r->event_len }, { (void *)r->data, r->data_len },
        };
        size_t done = 0;
        while (done < n) {
            ssize_t k = writev(w->fd, iov, 4);
            if (k < 0 && errno == EINTR)
                continue;
            if (k <= 0)
                return -1;
            done += (size_t)k;
            for (int i = 0; i < 4 && k > 0; i++) {
                size_t step = (size_t)k < iov[i].iov_len ? (size_t)k : iov[i].iov_len;
                iov[i].iov_base = (char *)iov[i].iov_base + step;
                iov[i].iov_len -= step;
                k -= (ssize_t)step;
            }
        }
    }
    w->bytes += n;
    w->records++;
    return 0;
}

enum { STAGE_OPEN = 1, STAGE_WRITE, STAGE_EMIT, STAGE_SYNC };

static const char *s_stage_name(int stage)
{
    switch (stage) {
    case STAGE_OPEN:  return "creating the file";
    case STAGE_WRITE: return "writing";
    case STAGE_EMIT:  return "collecting the live records";
    case STAGE_SYNC:  return "syncing";
    default:          return "starting";
    }
}

/* The forked child: write the live records to the temp file and leave.
 * Only system calls and our own code run here: no logging, no malloc. */
static void s_child(store *s, store_emit_fn emit, void *ctx)
{
    compact_shared *sh = s->shared;
    uint64_t t0 = clock_mono_us();
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != s->owner)
        _exit(3);
    close(s->lockfd);       /* the lock dies with the broker, not with us */
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    store_writer w = { .buf = s->cbuf, .cap = STORE_BUFFER_FLUSH };
    unsigned char h[STORE_HEADER_SIZE];
    s_header(h);
    sh->stage = STAGE_OPEN;
    w.fd = open(s->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    if (w.fd < 0)
        goto fail;
    sh->stage = STAGE_WRITE;
    if (s_write_all(w.fd, h, sizeof h) < 0)
        goto fail;
    w.bytes = sizeof h;
    sh->stage = STAGE_EMIT;
    if (emit(ctx, &w) < 0)
        goto fail;
    sh->stage = STAGE_WRITE;
    if (s_writer_flush(&w) < 0)
        goto fail;
    sh->stage = STAGE_SYNC;
    if (fdatasync(w.fd) < 0)
        goto fail;
    close(w.fd);
    sh->bytes = w.bytes;
    sh->records = w.records;
    sh->elapsed_us = clock_mono_us() - t0;
    sh->done = 1;
    _exit(0);
fail:
    sh->err = errno;
    _exit(1);
}

static void s_compact_backoff(store *s)
{
    s->compact_next = s->size + s_max(STORE_COMPACT_MIN, s->size / 2);
}

int store_compact_start(store *s, store_emit_fn emit, void *ctx)
{
    if (store_compacting(s))
        return 0;
    if (s->fatal || s->failed)
        return -1;
    /* the child's snapshot of memory must match the journal's first
     * child_from bytes exactly: nothing may stay buffered */
    if (s_write_buffer(s) < 0)
        return -1;
    memset(s->shared, 0, sizeof *s->shared);
    s->child_from = s->size;
    s->child_start = clock_mono_us();
    pid_t pid = fork();
    if (pid < 0) {
        log_warn("message store: cannot fork to compact %s: %s", s->path, strerror(errno));
        s_compact_backoff(s);
        return -1;
    }
    if (pid == 0)
        s_child(s, emit, ctx);
    s->child = s->child_pid = pid;
    s->steps = s->pause_max = 0;
    s->fork_us = clock_mono_us() - s->child_start;
    log_debug("message store: compacting %s (%llu bytes) in child pid %ld", s->path,
              (ull)s->size, (long)pid);
    return 1;
}

int store_compact_due(const store *s)
{
    return !store_compacting(s) && !s->fatal && !s->failed && s->size >= s->compact_next;
}

int store_compact_maybe(store *s, uint64_t live_bytes, store_emit_fn emit, void *ctx)
{
    if (!store_compact_due(s))
        return 0;
    uint64_t want = s_max(STORE_COMPACT_MIN,
                          STORE_COMPACT_FACTOR * (live_bytes + STORE_HEADER_SIZE));
    if (s->size <= want) {
        s->compact_next = s_max(want, s->size + s->size / 4) + 1;
        return 0;
    }
    return store_compact_start(s, emit, ctx);
}

int store_compacting(const store *s)
{
    return s->child != 0 || s->nfd >= 0;
}

static void s_compact_fail(store *s, const char *what, int e)
{
    log_warn("message store: compaction of %s failed (%s: %s); the old journal stays",
             s->path, what, strerror(e));
    if (s->nfd >= 0)
        close(s->nfd);
    s->nfd = -1;
    unlink(s->tmp_path);
    s_compact_backoff(s);
}

/* Copy journal[s->copied, s->copied + len) to the end of the new file. */
static int s_copy(store *s, uint64_t len)
{
    uint64_t end = s->copied + len;
    while (s->copied < end) {
        uint64_t want = end - s->copied;
        size_t n = want < STORE_BUFFER_FLUSH ? (size_t)want : STORE_BUFFER_FLUSH;
        ssize_t got = pread(s->fd, s->cbuf, n, (off_t)s->copied);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0) {
            if (got == 0)
                errno = EIO;
            return -1;
        }
        if (s_write_all(s->nfd, s->cbuf, (size_t)got) < 0)
            return -1;
        s->copied += (uint64_t)got;
    }
    return 0;
}

/* The new file holds everything: make it the journal. */
static int s_switch(store *s, uint64_t t0)
{
    if (fdatasync(s->nfd) < 0) {
        s_compact_fail(s, "syncing the new journal", errno);
        return -1;
    }
    if (rename(s->tmp_path, s->path) < 0) {
        s_compact_fail(s, "renaming the new journal", errno);
        return -1;
    }
    /* from here on the new file is the journal, durable or not: it holds
     * everything, so a failing directory sync must stop acknowledgements */
    int dir_err = fsync(s->dirfd) < 0 ? errno : 0;
    s_bg_close(s, s->fd);        /* frees the old file's blocks: not here */
    s->fd = s->nfd;
    s->nfd = -1;
    uint64_t old = s->size, tail = s->copied - s->child_from;
    struct stat st;
    s->size = fstat(s->fd, &st) == 0 ? (uint64_t)st.st_size : s->shared->bytes + tail;
    s->synced = s->appended;
    if (s->len == 0)
        s->unsynced_since = 0;
    s->compactions++;
    /* the next check is relative to the live size, not to what was
     * appended meanwhile (which may be a lot, and mostly dead soon) */
    s->compact_next = s_max(STORE_COMPACT_MIN, STORE_COMPACT_FACTOR * s->shared->bytes) + 1;
    if (dir_err) {
        s_set_fatal(s, dir_err, "directory fsync after compaction");
        return -1;
    }
    uint64_t now = clock_mono_us();
    uint64_t pause = s_max(s->pause_max, now - t0);
    log_info("message store: compacted %s from %llu to %llu bytes (%llu live records "
             "written in %llu ms by child pid %ld; %llu bytes appended meanwhile, copied in "
             "%llu steps; %llu ms in all; the longest pause of the broker was %llu.%llu ms, "
             "forking took %llu.%llu ms)",
             s->path, (ull)old, (ull)s->size, (ull)s->shared->records,
             (ull)(s->shared->elapsed_us / 1000), (long)s->child_pid, (ull)tail,
             (ull)s->steps + 1, (ull)((now - s->child_start) / 1000),
             (ull)(pause / 1000), (ull)(pause / 100 % 10),
             (ull)(s->fork_us / 1000), (ull)(s->fork_us / 100 % 10));
    return 1;
}

/* One round of catching up with what was appended since the fork: at most
 * STORE_COMPACT_STEP bytes, unless finish or little is left, in which case
 * the rest is copied and the files are switched.  Returns 1 when switched,
 * 0 when more is to come, -1 on failure. */
static int s_catch_up(store *s, int finish)
{
    uint64_t t0 = clock_mono_us();
    if (s_write_buffer(s) < 0) {
        s_compact_fail(s, "writing the buffer", errno);
        return -1;
    }
    uint64_t left = s->size - s->copied;
    if (!finish && left > STORE_COMPACT_STEP) {
        uint64_t from = s->copied;
        if (s_copy(s, STORE_COMPACT_STEP) < 0) {
            s_compact_fail(s, "copying the records appended meanwhile", errno);
            return -1;
        }
        /* start writing it out now, so that the final fdatasync is short */
        sync_file_range(s->nfd, (off_t)(from - s->child_from + s->shared->bytes),
                        STORE_COMPACT_STEP, SYNC_FILE_RANGE_WRITE);
        s->steps++;
        s->pause_max = s_max(s->pause_max, clock_mono_us() - t0);
        return 0;
    }
    if (s_copy(s, left) < 0) {
        s_compact_fail(s, "copying the records appended meanwhile", errno);
        return -1;
    }
    return s_switch(s, t0);
}

/* Reaps the child, then catches up.  Returns 1 when the new journal is
 * installed, 0 while work remains, -1 when compaction failed. */
static int s_compact_poll(store *s, int wait)
{
    if (s->child) {
        int status;
        pid_t p;
        do
            p = waitpid(s->child, &status, wait ? 0 : WNOHANG);
        while (p < 0 && errno == EINTR);
        if (p == 0)
            return 0;
        pid_t pid = s->child;
        s->child = 0;
        if (p < 0) {
            s_compact_fail(s, "waiting for the child", errno);
            return -1;
        }
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || !s->shared->done) {
            if (WIFSIGNALED(status))
                log_warn("message store: compaction child pid %ld was killed by signal %d",
                         (long)pid, WTERMSIG(status));
            s_compact_fail(s, s_stage_name(s->shared->stage),
                           s->shared->err ? s->shared->err : EIO);
            return -1;
        }
        s->nfd = open(s->tmp_path, O_RDWR | O_APPEND | O_CLOEXEC);
        if (s->nfd < 0) {
            s_compact_fail(s, "opening the new journal", errno);
            return -1;
        }
        s->copied = s->child_from;
    }
    if (s->nfd < 0)
        return 0;
    int rc;
    while ((rc = s_catch_up(s, 0)) == 0 && wait)
        ;
    return rc;
}

static void s_compact_abort(store *s)
{
    if (s->child) {
        kill(s->child, SIGKILL);
        int status;
        while (waitpid(s->child, &status, 0) < 0 && errno == EINTR)
            ;
        s->child = 0;
    }
    if (s->nfd >= 0)
        close(s->nfd);
    s->nfd = -1;
    unlink(s->tmp_path);
    log_info("message store: compaction abandoned at close");
}

int store_compact_check(store *s)
{
    return store_compacting(s) && !s->fatal && !s->failed ? s_compact_poll(s, 0) : 0;
}

int store_compact_wait(store *s)
{
    if (!store_compacting(s))
        return -1;
    return s_compact_poll(s, 1) == 1 ? 0 : -1;
}

/* ---- periodic work and statistics -------------------------------------- */

int store_tick(store *s)
{
    if (s->fatal)
        return -2;
    s_sync_collect(s);
    if (s->policy == STORE_FSYNC_EVERYSEC && !s->fatal)
        s_sync_maybe_start(s, clock_mono_us());
    if (store_compacting(s) && !s->fatal && !s->failed)
        s_compact_poll(s, 0);
    return s->fatal ? -2 : 0;
}

uint64_t store_size(const store *s)
{
    return s->size;
}

int store_policy(const store *s)
{
    return s->policy;
}

uint64_t store_fsync_lag_ms(const store *s)
{
    if (!s->unsynced_since)
        return 0;
    uint64_t now = clock_mono_us();
    return now > s->unsynced_since ? (now - s->unsynced_since) / 1000 : 0;
}

uint64_t store_compactions(const store *s)
{
    return s->compactions;
}

const char *store_path(const store *s)
{
    return s->path;
}
