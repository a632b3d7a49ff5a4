/*
 * daemon.h — process plumbing: detaching and the pid file.
 *
 * Contract: daemon_start() forks; the parent waits until the child calls
 * daemon_ready() and exits with the status given there (or 1 if the child
 * died first), so "pushbrokerd -d" fails visibly when the daemon cannot bind.
 * The child becomes a session leader in "/" with stdin on /dev/null; its
 * stdout/stderr stay where they were (so start-up errors reach the terminal)
 * until daemon_ready(0) moves them to out_fd (or /dev/null when out_fd < 0).  Call it before
 * any thread exists — in particular before the ZeroMQ context is created,
 * since threads do not survive fork().  daemon_ready() is a no-op when
 * not daemonized or called twice.
 */
#ifndef PUSHBROKERD_DAEMON_H
#define PUSHBROKERD_DAEMON_H

/* Returns 0 in the daemon, -1 (errno set) when detaching failed before the
 * fork; the parent does not return. */
int  daemon_start(int out_fd);
void daemon_ready(int status);

/* Write our pid to path atomically (temp file + rename).  Returns 0 or -1. */
int  pidfile_write(const char *path);

/* Remove path if it still holds our pid. */
void pidfile_remove(const char *path);

#endif
