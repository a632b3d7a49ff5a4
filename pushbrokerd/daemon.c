/*
 * daemon.c — see daemon.h.
 */
#define _GNU_SOURCE
#include "daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int s_ready_fd = -1;   /* write end of the pipe the parent waits on */
static int s_out_fd = -1;     /* where stdout/stderr go once ready */

static void s_parent_wait(int fd)
{
    unsigned char status;
    ssize_t n;
    do
        n = read(fd, &status, 1);
    while (n < 0 && errno == EINTR);
    int rc = n == 1 ? status : 1;
    if (rc != 0)
        fprintf(stderr, "pushbrokerd: the daemon did not start (exit status %d)\n", rc);
    _exit(rc);
}

/* Points target at out_fd, or at /dev/null when out_fd < 0. */
static int s_redirect(int target, int out_fd)
{
    int null = out_fd < 0 ? open("/dev/null", O_RDWR | O_CLOEXEC) : -1;
    int from = out_fd < 0 ? null : out_fd;
    int rc = from < 0 ? -1 : dup2(from, target);
    if (null >= 0)
        close(null);
    return rc < 0 ? -1 : 0;
}

int daemon_start(int out_fd)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return -1;
    fflush(NULL);   /* or buffered output would be written twice */
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        errno = e;
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        s_parent_wait(fds[0]);
    }
    close(fds[0]);
    s_ready_fd = fds[1];
    s_out_fd = out_fd;
    /* failures past this point are reported through daemon_ready() */
    if (setsid() < 0 || chdir("/") < 0 || s_redirect(STDIN_FILENO, -1) < 0) {
        daemon_ready(1);
        _exit(1);
    }
    return 0;
}

void daemon_ready(int status)
{
    if (s_ready_fd < 0)
        return;
    /* stderr stayed on the terminal until now so that start-up errors
     * (bind failures) are seen even without --log; dup2 between open
     * descriptors cannot fail in a way worth refusing to run for */
    if (status == 0) {
        s_redirect(STDOUT_FILENO, s_out_fd);
        s_redirect(STDERR_FILENO, s_out_fd);
    }
    unsigned char b = (unsigned char)status;
    ssize_t n;
    do
        n = write(s_ready_fd, &b, 1);
    while (n < 0 && errno == EINTR);
    close(s_ready_fd);
    s_ready_fd = -1;
}

int pidfile_write(const char *path)
{
    char *tmp = NULL;
    if (asprintf(&tmp, "%s.%ld.tmp", path, (long)getpid()) < 0)
        return -1;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int rc = -1;
    if (fd >= 0) {
        rc = dprintf(fd, "%ld\n", (long)getpid()) < 0 ? -1 : 0;
        if (close(fd) < 0)
            rc = -1;
        if (rc == 0)
            rc = rename(tmp, path);
        if (rc < 0) {
            int e = errno;
            unlink(tmp);
            errno = e;
        }
    }
    free(tmp);
    return rc;
}

void pidfile_remove(const char *path)
{
    char buf[32];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    /* another instance may have taken the file over: leave theirs alone */
    if (strtol(buf, NULL, 10) == (long)getpid())
        unlink(path);
}
