/*
 * pushctl_args.h — command-line parsing and output formatting for pushctl.
 *
 * Pure functions (no I/O, no globals), so they can be unit-tested
 * (tests/unit/test_client_args.c).  Used only by pushctl.c; not part of the
 * pushclient library API.
 */
#ifndef PUSHCTL_ARGS_H
#define PUSHCTL_ARGS_H

#include <stddef.h>
#include <stdint.h>

#define PUSHCTL_TIMEOUT_MAX 3600000   /* ms accepted by --timeout */
#define PUSHCTL_TTL_DEFAULT 3600      /* seconds a token is valid (--ttl) */
#define PUSHCTL_TTL_MAX     (10LL * 366 * 86400)
#define PUSHCTL_TOKEN_CHANNELS_MAX 64 /* --channel options (PUSH_TOKEN_MAX_CHANNELS) */

typedef enum {
    PUSHCTL_CMD_NONE = 0,
    PUSHCTL_CMD_PUBLISH,
    PUSHCTL_CMD_HISTORY,
    PUSHCTL_CMD_STATS,
    PUSHCTL_CMD_PING,
    PUSHCTL_CMD_PRESENCE,
    PUSHCTL_CMD_TOKEN,
    PUSHCTL_CMD_KEYGEN,
    PUSHCTL_CMD_HELP,
    PUSHCTL_CMD_VERSION
} pushctl_cmd_t;

/* The parsed command line.  Strings point into argv or into the env_*
 * arguments given to pushctl_args_parse(); nothing is allocated. */
typedef struct {
    pushctl_cmd_t cmd;
    const char *api;        /* NULL: library default */
    const char *push;       /* NULL: library default */
    int         timeout_ms; /* 0: library default */
    /* publish */
    const char *channel;    /* publish, history, presence */
    const char *data;       /* "-" means: read the data from stdin */
    const char *event;      /* NULL: none */
    int         no_ack;
    /* history */
    uint64_t    after;
    uint64_t    limit;      /* 0: no limit */
    int         json;
    /* token */
    const char *secret_file;
    const char *channels[PUSHCTL_TOKEN_CHANNELS_MAX];   /* --channel, in order */
    int         nchannels;
    const char *rights;     /* letters of "spl" */
    const char *sub;        /* NULL: none */
    int64_t     ttl;        /* seconds */
    /* CURVE (pushctl.c falls back on PUSH_CURVE_SERVER_KEY / _CLIENT_KEY) */
    const char *server_key; /* --server-key: Z85 or a key file; NULL: none */
    const char *client_key; /* --client-key: secret key, Z85 or a key file */
    /* keygen */
    const char *keygen_base; /* NULL: print the keys; else write BASE.pub, BASE.secret */
    int         force;      /* --force: replace existing key files */
} pushctl_args_t;

/* Parse argv (argv[0] is the program name).  env_api / env_push /
 * env_timeout: the values of PUSH_API / PUSH_PUSH / PUSH_TIMEOUT (NULL or ""
 * when unset); --api / --push / --timeout override them.  Options may appear before or after the command; "--" ends options.
 * "--opt value" and "--opt=value" are both accepted.  --help / -h or
 * --version anywhere before "--" win over everything else.
 * Returns 0 and fills *out, or -1 and writes a one-line message to err
 * (errlen bytes, always NUL-terminated when errlen > 0); *out is then
 * unspecified. */
int pushctl_args_parse(pushctl_args_t *out, int argc, char **argv,
                       const char *env_api, const char *env_push,
                       const char *env_timeout, char *err, size_t errlen);

/* Escape data for one line of text: \ -> \\, LF -> \n, CR -> \r, TAB -> \t,
 * other control bytes and DEL -> \xHH; other bytes (printable ASCII, UTF-8)
 * are kept.  Returns a malloc'ed NUL-terminated string, or NULL when out of
 * memory. */
char *pushctl_escape(const char *data, size_t len);

/* Format a time in microseconds since the epoch as UTC ISO 8601 with
 * microseconds, e.g. "2024-11-21T10:32:00.123456Z".  buf needs at least
 * 40 bytes.  Returns the length, or -1 (buf set to "") when the time cannot
 * be represented. */
int pushctl_fmt_time(char *buf, size_t size, uint64_t time_us);

/* One history line (without newline):
 *   id=<id> time=<iso time> event=<event> data=<escaped data>
 * event may be NULL or "" (then "event=" is empty).  Returns a malloc'ed
 * string, or NULL when out of memory. */
char *pushctl_format_msg(uint64_t id, uint64_t time_us, const char *event,
                         const char *data, size_t data_len);

#endif
