/*
 * store.h — the broker's message store: one append-only journal file.
 *
 * Files in the data directory (created when missing):
 *     journal           the journal
 *     journal.compact   a compaction in progress (removed at start-up)
 *     journal.damaged.<unix time>.<offset>
 *                       bytes cut off a damaged journal at start-up, kept
 *                       for inspection; the broker never reads them
 *     lock              flock()ed by the running broker; holds its pid
 *
 * Journal format (all integers little-endian):
 *
 *   file header, 16 bytes:
 *     0  8  magic "PUSHJRNL"
 *     8  4  version, 1
 *    12  4  CRC-32 of bytes 0..11
 *   then records, back to back:
 *     0  4  size: bytes of the record after this 8-byte head (20..STORE_BODY_MAX)
 *     4  4  CRC-32 of bytes 0..3 (size) followed by the size bytes from 8 on
 *     8  1  type: 1 MSG (a published message), 2 FLOOR (see below)
 *     9  1  channel name length, 1..128
 *    10  1  event name length, 0..64 (0 for FLOOR)
 *    11  1  flags, 0
 *    12  8  id
 *    20  8  time_us (publish time; 0 for FLOOR)
 *    28     channel name, then event name, then data (the rest; empty for FLOOR)
 *
 *   CRC-32 is zlib's crc32() (the CRC of gzip and PNG, polynomial 0xEDB88320).
 *   A record holds at least STORE_RECORD_OVERHEAD bytes plus its channel
 *   name, event name and data.
 *
 *   MSG records of one channel appear in id order.  FLOOR <channel> <id>
 *   says "ids up to <id> are used; none of them is retained": replaying it
 *   drops whatever the channel retained and makes its next id <id> + 1.
 *   Compaction writes, per channel that ever had a message, a FLOOR with
 *   oldest_id - 1 when the channel's retained ids do not start at 1 (so a
 *   channel whose history was trimmed or expired completely still continues
 *   its ids), then its retained messages oldest first.
 *
 * Contract:
 *  - store_open() takes the directory's lock, replays every good record
 *    through the callback, in file order, and cuts a damaged tail: the first
 *    record that is incomplete, fails its CRC or does not decode ends the
 *    journal.  The file is truncated there (the cut bytes are saved next to
 *    it first) and a warning tells the offset, the bytes and records dropped
 *    and why.  A file that is not a journal (bad magic, unknown version) is
 *    refused, never truncated.
 *  - store_append() encodes a record into a memory buffer (the buffer is
 *    written out early when it exceeds STORE_BUFFER_FLUSH bytes);
 *    store_commit() writes the buffer with write(2) on the O_APPEND file and,
 *    for fsync "always", fdatasync()s it.  The broker commits once per event
 *    loop round and answers publishers only after the commit (group commit).
 *  - fsync "everysec": store_tick() hands an fdatasync() to the store's
 *    background thread once the oldest unsynced byte is STORE_EVERYSEC_US old, so data
 *    reaches the disk at most about a second after it was written.  "no":
 *    never, except on store_close() and after compaction.
 *  - A failed write is cut back (ftruncate to the last whole record) and
 *    retried by store_commit()/store_tick(); meanwhile store_failed() is
 *    true and the buffered records stay buffered.  A failed fdatasync() is
 *    fatal (store_fatal()): the kernel may have dropped the data, so nothing
 *    after it may be acknowledged.
 *  - Compaction runs in a forked child that writes the live records from its
 *    copy-on-write view of the broker's memory to journal.compact and
 *    fsyncs it; publishing goes on meanwhile, appending to the old journal.
 *    When the child is done, the broker copies what was appended since the
 *    fork to the new file (STORE_COMPACT_STEP bytes per event loop round,
 *    so that it never stalls for long), then fdatasyncs it, renames it over
 *    the journal and fsyncs the directory.  The old file is closed (and its
 *    blocks freed) by the store's background thread.  A crash at any point leaves either the old or the new
 *    journal, both complete.
 *  - Nothing here is thread-safe: one thread (the broker's) calls all of it.
 */
#ifndef PUSHBROKERD_STORE_H
#define PUSHBROKERD_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_FILE             "journal"
#define STORE_TMP_FILE         "journal.compact"
#define STORE_LOCK_FILE        "lock"
#define STORE_HEADER_SIZE      16
#define STORE_RECORD_HEAD      8
#define STORE_RECORD_OVERHEAD  28      /* head + fixed fields */
#define STORE_BODY_MAX         (20u + 128u + 64u + 256u * 1024 * 1024)
#define STORE_BUFFER_FLUSH     (1024 * 1024)
#define STORE_EVERYSEC_US      500000ull
/* Compaction: when the journal is at least this big and more than twice the
 * size of the live records. */
#define STORE_COMPACT_MIN      (1024 * 1024ull)
#define STORE_COMPACT_FACTOR   2
/* After the child is done, what was appended since the fork is copied to
 * the new file in steps of at most this many bytes per event loop round. */
#define STORE_COMPACT_STEP     (1024 * 1024ull)

enum store_fsync { STORE_FSYNC_ALWAYS = 0, STORE_FSYNC_EVERYSEC = 1, STORE_FSYNC_NO = 2 };

enum store_rec_type { STORE_REC_MSG = 1, STORE_REC_FLOOR = 2 };

typedef struct store_record {
    int         type;             /* enum store_rec_type */
    const char *channel;
    size_t      channel_len;
    uint64_t    id;
    uint64_t    time_us;
    const char *event;            /* may be NULL when event_len is 0 */
    size_t      event_len;
    const void *data;             /* may be NULL when data_len is 0 */
    size_t      data_len;
} store_record;

/* Called once per good record at open; returns 0, or -1 to fail the open
 * (errno set). */
typedef int (*store_replay_fn)(void *ctx, const store_record *rec);

/* What store_open() found. */
typedef struct store_recovery {
    uint64_t records;             /* good records replayed */
    uint64_t bytes;               /* journal size after recovery */
    uint64_t cut_offset;          /* where a damaged tail began (valid when dropped_bytes) */
    uint64_t dropped_bytes;
    uint64_t dropped_records;     /* the damaged one plus intact ones after it */
    uint64_t elapsed_us;
} store_recovery;

typedef struct store store;
typedef struct store_writer store_writer;

/* Emits the live records during compaction (in the forked child): calls
 * store_writer_put() for each and returns 0, or -1 to abandon compaction.
 * It must not allocate memory, lock anything or touch sockets. */
typedef int (*store_emit_fn)(void *ctx, store_writer *w);

/* "always", "everysec", "no" -> enum store_fsync, or -1. */
int         store_fsync_parse(const char *name);
const char *store_fsync_name(int policy);

/* Bytes one record takes in the journal. */
uint64_t store_record_size(size_t channel_len, size_t event_len, size_t data_len);

/* Open (creating) dir/journal and replay it.  Returns NULL with the reason
 * logged (errno set) when the directory is locked by another broker, is not
 * usable, holds a file that is not a journal, or replay failed. */
store *store_open(const char *dir, int policy, store_replay_fn replay, void *ctx,
                  store_recovery *rec);

/* Commit, fdatasync (whatever the policy), stop the sync thread and any
 * compaction, unlock.  Returns 0, or -1 when data may not have reached the
 * disk (logged).  NULL is a no-op. */
int  store_close(store *s);

/* Buffer one record.  Returns 0, or -1 (errno: EIO while store_failed(),
 * ENOMEM, EINVAL for a record that cannot be encoded). */
int  store_append(store *s, const store_record *r);

/* Forget the record of the last successful store_append() (only valid
 * until the next call of anything else). */
void store_cancel_last(store *s);

/* Write what is buffered; fdatasync for "always".  Returns 0, -1 when the
 * write failed (retried later, store_failed() is true), or -2 when fdatasync
 * failed (store_fatal() is true from now on). */
int  store_commit(store *s);

/* Records buffered or (for "always") written but not yet synced. */
int  store_dirty(const store *s);
int  store_failed(const store *s);     /* errno of the failing write, or 0 */
int  store_fatal(const store *s);      /* errno of the failed fdatasync, or 0 */

/* Periodic work: retry a failed write, start the everysec background sync
 * and collect its result, finish a compaction.  Returns 0, or -2 when a sync
 * failed (fatal). */
int  store_tick(store *s);

/* Compaction.  store_compact_due() is a cheap test (the journal grew past
 * the next check point); the caller then computes the live size (sum of
 * store_record_size() over what store_emit_fn would write) and calls
 * store_compact_maybe(), which starts a compaction when the journal is over
 * STORE_COMPACT_MIN and STORE_COMPACT_FACTOR times the live size.  Returns
 * 1 when a compaction started, 0 when not needed (or one is running), -1 on
 * failure (logged; retried after the journal grew further). */
int  store_compact_due(const store *s);
int  store_compact_maybe(store *s, uint64_t live_bytes, store_emit_fn emit, void *ctx);
/* Start a compaction unconditionally (tests, forced). */
int  store_compact_start(store *s, store_emit_fn emit, void *ctx);
int  store_compacting(const store *s);
/* Finish a compaction whose child is done (cheap: waitpid WNOHANG); the
 * broker calls it every event loop round while one runs.  Returns 1 when
 * installed, 0 when none or still running, -1 when it failed. */
int  store_compact_check(store *s);
/* Block until a running compaction is finished and installed.  Returns 0,
 * or -1 when it failed or none was running. */
int  store_compact_wait(store *s);

/* For the child's emit function: write one record to the new journal.
 * Returns 0 or -1 (errno). */
int  store_writer_put(store_writer *w, const store_record *r);

/* Statistics. */
uint64_t store_size(const store *s);               /* bytes in the journal file */
int      store_policy(const store *s);
uint64_t store_fsync_lag_ms(const store *s);       /* age of the oldest unsynced append */
uint64_t store_compactions(const store *s);
const char *store_path(const store *s);

#endif
