/*
 * config.h — pushbrokerd's settings: defaults, config file, command line.
 *
 * Contract: precedence is defaults < config file (-c) < other command-line
 * options, whatever their order on the command line.  The config file holds
 * "key value" lines; '#' at the start of a line or after whitespace starts a
 * comment.  Every problem is reported with enough context to fix it (the
 * file:line for the file, the option for the command line) and makes
 * config_parse_args() return CONFIG_FAIL, which the caller turns into exit
 * status 2.  Relative pid/log file paths, the data directory, key files and ipc:// endpoints
 * are made absolute so that they survive the chdir("/") of daemon mode.  Key
 * files are read at start, before anything is bound: a key that cannot be
 * read or is malformed is a configuration error too (config_resolve).
 */
#ifndef PUSHBROKERD_CONFIG_H
#define PUSHBROKERD_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "push_curve.h"

#define PUSHBROKERD_VERSION "0.1.0"

#define CONFIG_HISTORY_MAX_DEFAULT   1000
#define CONFIG_HISTORY_MAX_LIMIT     10000000
#define CONFIG_HISTORY_AGE_DEFAULT   3600
#define CONFIG_HISTORY_AGE_LIMIT     (10ull * 366 * 24 * 3600)
#define CONFIG_MAX_MSG_LIMIT         (256ull * 1024 * 1024)
#define CONFIG_IPC_MODE_DEFAULT      0660

typedef struct broker_config {
    char    *api;               /* endpoints, malloc'ed */
    char    *push;
    char    *link;
    uint64_t history_max;       /* messages kept per channel, >= 1 */
    uint64_t history_age;       /* seconds, 0 = no age limit */
    uint64_t child_timeout;     /* seconds a silent Apache child (and its presence) lives */
    uint64_t max_message_size;  /* bytes of data per message */
    char    *config_file;       /* NULL when none */
    char    *pid_file;          /* NULL when none */
    char    *log_file;          /* NULL: stderr */
    int      log_level;         /* enum log_level */
    int      daemonize;
    char    *data_dir;          /* message store directory; NULL: memory only */
    int      fsync;             /* enum store_fsync */
    /* security (docs/operations.md §4.2) */
    char    *curve_secret_key_file; /* NULL: no CURVE */
    char    *curve_authorized_keys; /* NULL: any client that has the server key */
    unsigned ipc_mode;          /* permissions of ipc:// socket files */
    char    *ipc_group;         /* group of ipc:// socket files; NULL: the broker's */
    /* resolved from the above by config_parse_args() (config_resolve) */
    long     ipc_gid;           /* -1: leave the group alone */
    push_curve_key curve_secret;    /* "" when CURVE is off */
    push_curve_key curve_public;    /* derived from curve_secret */
    int      curve_secret_world_readable;
} broker_config;

enum config_result {
    CONFIG_RUN  = 0,            /* start the broker */
    CONFIG_DONE = 1,            /* --help / --version printed: exit 0 */
    CONFIG_FAIL = 2             /* error printed to stderr: exit 2 */
};

/* Fill in the built-in defaults.  Returns 0, or -1 on ENOMEM. */
int  config_defaults(broker_config *c);

/* Defaults, then -c FILE, then the other options.  Prints errors, help and
 * version itself.  On CONFIG_FAIL / CONFIG_DONE *c must still be freed. */
int  config_parse_args(broker_config *c, int argc, char **argv);

/* Apply one "key value" setting (the config file's key names).  Returns 0,
 * or -1 with a message in err. */
int  config_set(broker_config *c, const char *key, const char *value,
                char *err, size_t errsize);

/* Apply a config file.  Returns 0, or -1 with "file:line: problem" in err. */
int  config_load_file(broker_config *c, const char *path, char *err, size_t errsize);

/* Check what the settings name outside the file, once they are all known:
 * load the CURVE secret key (and derive the public one), read the authorized
 * keys file once to find its errors, look ipc_group up.  Returns 0, or -1
 * with "key: problem" (naming the file) in err. */
int  config_resolve(broker_config *c, char *err, size_t errsize);

/* Largest single inbound frame the api and push sockets accept
 * (ZMQ_MAXMSGSIZE).  ZeroMQ drops the connection of a peer that sends more,
 * without any reply, so the limit is far above max_message_size (even
 * JSON-escaped, 6 bytes per byte): any plausible oversized publish still
 * gets its too_large answer, and only absurd frames (a runaway client
 * sending gigabytes) are cut off before they are buffered. */
int64_t config_frame_limit(const broker_config *c);

void config_usage(FILE *out);
void config_free(broker_config *c);

#endif
