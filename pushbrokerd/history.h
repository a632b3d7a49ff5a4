/*
 * history.h — one channel's message ring.
 *
 * Contract:
 *  - Ids start at 1 and each append takes last_id + 1, so retained ids are
 *    always one contiguous range [oldest_id, last_id].  Trimming only ever
 *    drops from the old end.  last_id survives trimming: a channel whose
 *    messages all expired still numbers the next one last_id + 1, so client
 *    cursors never go backwards.
 *  - Count trimming happens on append (at most max_count retained, and
 *    max_count >= 1, because the message just appended must survive for
 *    fan-out).  Age trimming happens on append and on history_trim_age()
 *    from the periodic tick; max_age_us == 0 means "no age limit".
 *  - A message is one allocation holding its event (NUL-terminated, "" when
 *    none) and its data (raw bytes, may contain NUL; a NUL is appended after
 *    them for convenience but is not part of data_len).
 *  - Pointers returned by history_append() and history_get() stay valid
 *    until the next append or trim of the same history.
 */
#ifndef PUSHBROKERD_HISTORY_H
#define PUSHBROKERD_HISTORY_H

#include <stddef.h>
#include <stdint.h>

typedef struct history_msg {
    uint64_t    id;
    uint64_t    time_us;     /* publish time, microseconds since the epoch */
    const char *event;
    size_t      event_len;
    const char *data;
    size_t      data_len;
} history_msg;

typedef struct history {
    history_msg **ring;      /* cap slots, count used, oldest at head */
    size_t        cap;
    size_t        head;
    size_t        count;
    uint64_t      last_id;   /* 0 until the first append */
    uint64_t      bytes;     /* sum of event_len + data_len over retained messages */
} history;

typedef struct history_limits {
    size_t   max_count;      /* >= 1 */
    uint64_t max_age_us;     /* 0: unlimited */
} history_limits;

/* Result of a query: messages first_id .. first_id + count - 1. */
typedef struct history_view {
    uint64_t last_id;
    uint64_t oldest_id;      /* last_id + 1 when nothing is retained */
    uint64_t first_id;
    size_t   count;
} history_view;

void history_init(history *h);
void history_free(history *h);

/* Store a message stamped time_us, trimming by lim first.  Returns the stored
 * message, or NULL (errno ENOMEM, or EOVERFLOW when ids ran out) with the
 * history unchanged. */
const history_msg *history_append(history *h, const char *event, size_t event_len,
                                  const void *data, size_t data_len,
                                  uint64_t time_us, const history_limits *lim);

/* Recovery from the message store: make the next append take id
 * last_id + 1.  When that skips ids, every retained message is dropped
 * (retained ids must stay contiguous).  Never lowers last_id: a last_id at or
 * below the current one changes nothing.  Returns 0, or -1 (EOVERFLOW) when
 * last_id is beyond the id range and nothing changed. */
int history_skip_to(history *h, uint64_t last_id);

/* Drop messages published before now_us - max_age_us.  Returns how many. */
size_t history_trim_age(history *h, uint64_t now_us, uint64_t max_age_us);

/* The retained messages with id > after, oldest first, at most limit.
 * after == 0 means "from the beginning"; after older than the oldest
 * retained id yields everything retained (the caller sees the gap through
 * oldest_id); after >= last_id yields nothing. */
history_view history_after(const history *h, uint64_t after, size_t limit);

/* The retained message with this id, or NULL. */
const history_msg *history_get(const history *h, uint64_t id);

uint64_t history_last_id(const history *h);
uint64_t history_oldest_id(const history *h);
size_t   history_count(const history *h);
/* Bytes of event names and data retained (for sizing the message store). */
uint64_t history_bytes(const history *h);

#endif
