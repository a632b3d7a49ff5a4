/*
 * endpoint.c — see endpoint.h.
 */
#include "endpoint.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zmq.h>

#include "log.h"
#include "push_curve.h"

int endpoint_is_curve(const char *endpoint, const broker_config *cfg)
{
    return cfg->curve_secret[0] && push_curve_applies(endpoint);
}

/* The socket file of an ipc:// endpoint, or NULL: abstract sockets
 * (ipc://@name) and the wildcard (a '*' path) have none we could name. */
static const char *s_ipc_path(const char *endpoint)
{
    if (strncmp(endpoint, "ipc://", 6) != 0)
        return NULL;
    const char *path = endpoint + 6;
    return *path == '@' || strcmp(path, "*") == 0 ? NULL : path;
}

static int s_bind(void *sock, const char *name, const char *endpoint)
{
    if (zmq_bind(sock, endpoint) == 0)
        return 0;
    int e = errno;
    log_error("cannot bind %s endpoint %s: %s", name, endpoint, zmq_strerror(e));
    errno = e;
    return -1;
}

/* bind(2) creates the socket file with 0777 & ~umask: with this umask it is
 * never more open than ipc_mode, even before the chmod. */
static int s_bind_ipc(void *sock, const char *name, const char *endpoint,
                      const broker_config *cfg)
{
    mode_t old = umask((mode_t)(~cfg->ipc_mode & 0777));
    int rc = s_bind(sock, name, endpoint);
    int e = errno;
    umask(old);
    errno = e;
    return rc;
}

/* chown before chmod: chown may clear mode bits, chmod sets them all. */
static int s_set_file(const char *name, const char *path, const broker_config *cfg)
{
    if (cfg->ipc_gid >= 0 && chown(path, (uid_t)-1, (gid_t)cfg->ipc_gid) < 0) {
        int e = errno;
        log_error("cannot give the %s socket %s to group %s (ipc_group): %s", name, path,
                  cfg->ipc_group, strerror(e));
        errno = e;
        return -1;
    }
    if (chmod(path, (mode_t)cfg->ipc_mode) < 0) {
        int e = errno;
        log_error("cannot set mode %04o (ipc_mode) on the %s socket %s: %s", cfg->ipc_mode,
                  name, path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

int endpoint_bind(void *sock, const char *name, const char *endpoint,
                  const broker_config *cfg)
{
    if (endpoint_is_curve(endpoint, cfg)
        && push_curve_set_server(sock, cfg->curve_secret, name) < 0) {
        int e = errno;
        log_error("cannot make the %s endpoint %s a CURVE server: %s", name, endpoint,
                  zmq_strerror(e));
        errno = e;
        return -1;
    }
    const char *path = s_ipc_path(endpoint);
    if (!path)
        return s_bind(sock, name, endpoint);
    if (s_bind_ipc(sock, name, endpoint, cfg) < 0)
        return -1;
    return s_set_file(name, path, cfg);
}
