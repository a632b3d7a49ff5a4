/*
 * log.h — pushbrokerd's log lines.
 *
 * Contract: every line is
 *     2026-11-21T10:00:00.123Z pushbrokerd[1234] INFO: message
 * (UTC, milliseconds), written with a single write(2) so that lines from
 * concurrent writers to an O_APPEND file never interleave.  Lines go to
 * stderr until log_open() names a file.  Messages above the current level are
 * discarded before formatting.  Nothing here allocates after log_open().
 *
 * Untrusted bytes (frames from the network) must pass through log_safe()
 * before they reach a format string argument: a log line must stay one line.
 */
#ifndef PUSHBROKERD_LOG_H
#define PUSHBROKERD_LOG_H

#include <stddef.h>

enum log_level {
    PB_LOG_ERROR = 0,
    PB_LOG_WARN  = 1,
    PB_LOG_INFO  = 2,
    PB_LOG_DEBUG = 3
};

/* Parse "error", "warn" (or "warning"), "info", "debug"; -1 when unknown. */
int  log_level_parse(const char *name);
const char *log_level_name(int level);

void log_set_level(int level);
int  log_get_level(void);

/* Append to path (created 0640 if missing) instead of stderr; the path
 * "syslog" sends lines to syslog(3) (facility daemon).  NULL selects
 * stderr again.  Returns 0, or -1 with errno set and the old target kept. */
int  log_open(const char *path);

/* Reopen the current file (after logrotate moved it); no-op for stderr. */
int  log_reopen(void);

/* The file descriptor log lines go to (for pointing stdout/stderr at it). */
int  log_fd(void);

void log_close(void);

void log_msg(int level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(PB_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(PB_LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(PB_LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(PB_LOG_DEBUG, __VA_ARGS__)

/* Copy at most bufsize-1 bytes of p[0..len) into buf, replacing anything
 * that is not printable ASCII with '?', and marking truncation with "...".
 * Returns buf. */
const char *log_safe(const void *p, size_t len, char *buf, size_t bufsize);

#endif
