/*
 * log.c — see log.h.
 */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048

static int   s_level = PB_LOG_INFO;
static int   s_fd = -1;          /* -1: stderr */
static char *s_path;             /* kept for log_reopen() */
static int   s_syslog;           /* log_open("syslog"): lines go to syslog(3) */

static const char *const s_names[] = { "error", "warn", "info", "debug" };
static const char *const s_tags[]  = { "ERROR", "WARN", "INFO", "DEBUG" };

int log_level_parse(const char *name)
{
    if (strcmp(name, "warning") == 0)
        return PB_LOG_WARN;
    for (int i = 0; i < 4; i++)
        if (strcmp(name, s_names[i]) == 0)
            return i;
    return -1;
}

const char *log_level_name(int level)
{
    return level >= 0 && level < 4 ? s_names[level] : "?";
}

void log_set_level(int level)
{
    if (level >= PB_LOG_ERROR && level <= PB_LOG_DEBUG)
        s_level = level;
}

int log_get_level(void)
{
    return s_level;
}

static int s_open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

int log_open(const char *path)
{
    if (!path) {
        log_close();
        return 0;
    }
    if (strcmp(path, "syslog") == 0) {
        log_close();
        openlog("pushbrokerd", LOG_PID | LOG_NDELAY, LOG_DAEMON);
        s_syslog = 1;
        return 0;
    }
    char *copy = strdup(path);
    if (!copy)
        return -1;
    int fd = s_open_file(path);
    if (fd < 0) {
        int e = errno;
        free(copy);
        errno = e;
        return -1;
    }
    log_close();
    s_fd = fd;
    s_path = copy;
    return 0;
}

int log_reopen(void)
{
    if (!s_path)
        return 0;
    int fd = s_open_file(s_path);
    if (fd < 0)
        return -1;
    /* a daemon's stdout/stderr stay on the old file; only log lines, which
     * are all we write deliberately, follow the rename */
    close(s_fd);
    s_fd = fd;
    return 0;
}

int log_fd(void)
{
    return s_fd >= 0 ? s_fd : STDERR_FILENO;
}

void log_close(void)
{
    if (s_syslog)
        closelog();
    s_syslog = 0;
    if (s_fd >= 0)
        close(s_fd);
    s_fd = -1;
    free(s_path);
    s_path = NULL;
}

static size_t s_stamp(char *buf, size_t size)
{
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    size_t n = strftime(buf, size, "%Y-%m-%dT%H:%M:%S", &tm);
    int m = snprintf(buf + n, size - n, ".%03dZ", (int)(tv.tv_usec / 1000));
    return n + (m > 0 ? (size_t)m : 0);
}

static void s_write_all(int fd, const char *p, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;   /* nowhere left to report a logging failure */
        p += w;
        len -= (size_t)w;
    }
}

void log_msg(int level, const char *fmt, ...)
{
    if (level > s_level || level < 0)
        return;
    char line[LOG_LINE_MAX];
    int saved = errno;   /* callers often log right before using errno */
    if (s_syslog) {      /* syslog adds the time, the name and the pid */
        static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof line, fmt, ap);
        va_end(ap);
        syslog(prio[level], "%s: %s", s_tags[level], line);
        errno = saved;
        return;
    }
    size_t n = s_stamp(line, sizeof line);
    int m = snprintf(line + n, sizeof line - n, " pushbrokerd[%ld] %s: ",
                     (long)getpid(), s_tags[level]);
    n += m > 0 ? (size_t)m : 0;
    va_list ap;
    va_start(ap, fmt);
    m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
    va_end(ap);
    if (m > 0)
        n += (size_t)m < sizeof line - n - 1 ? (size_t)m : sizeof line - n - 2;
    line[n++] = '\n';
    s_write_all(log_fd(), line, n);
    errno = saved;
}

const char *log_safe(const void *p, size_t len, char *buf, size_t bufsize)
{
    const unsigned char *s = p;
    size_t room = bufsize - 1, i;
    int cut = len > room;
    if (cut)
        room = room > 3 ? room - 3 : 0;
    for (i = 0; i < len && i < room; i++)
        buf[i] = s[i] >= 0x20 && s[i] < 0x7f ? (char)s[i] : '?';
    if (cut)
        for (size_t k = 0; k < 3 && i < bufsize - 1; k++)
            buf[i++] = '.';
    buf[i] = '\0';
    return buf;
}
