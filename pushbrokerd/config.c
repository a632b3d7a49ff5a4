/*
 * config.c — see config.h.
 */
#define _GNU_SOURCE
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zmq.h>

#include "log.h"
#include "push_proto.h"
#include "store.h"

enum value_kind { V_ENDPOINT, V_UINT, V_PATH, V_LEVEL, V_FSYNC, V_MODE, V_NAME };

typedef struct config_key {
    const char     *name;
    enum value_kind kind;
    uint64_t        min, max;   /* V_UINT only */
    size_t          offset;     /* into broker_config */
} config_key;

#define OFF(f) offsetof(broker_config, f)

static const config_key s_keys[] = {
    { "api",              V_ENDPOINT, 0, 0, OFF(api) },
    { "push",             V_ENDPOINT, 0, 0, OFF(push) },
    { "link",             V_ENDPOINT, 0, 0, OFF(link) },
    { "history_max",      V_UINT, 1, CONFIG_HISTORY_MAX_LIMIT, OFF(history_max) },
    { "history_age",      V_UINT, 0, CONFIG_HISTORY_AGE_LIMIT, OFF(history_age) },
    { "child_timeout",    V_UINT, 2, 3600, OFF(child_timeout) },
    { "max_message_size", V_UINT, 1, CONFIG_MAX_MSG_LIMIT, OFF(max_message_size) },
    { "pid_file",         V_PATH, 0, 0, OFF(pid_file) },
    { "log_file",         V_PATH, 0, 0, OFF(log_file) },
    { "log_level",        V_LEVEL, 0, 0, OFF(log_level) },
    { "data_dir",         V_PATH, 0, 0, OFF(data_dir) },
    { "fsync",            V_FSYNC, 0, 0, OFF(fsync) },
    { "curve_secret_key_file", V_PATH, 0, 0, OFF(curve_secret_key_file) },
    { "curve_authorized_keys", V_PATH, 0, 0, OFF(curve_authorized_keys) },
    { "ipc_mode",         V_MODE, 0, 0, OFF(ipc_mode) },
    { "ipc_group",        V_NAME, 0, 0, OFF(ipc_group) },
};

static const config_key *s_key(const char *name)
{
    for (size_t i = 0; i < sizeof s_keys / sizeof s_keys[0]; i++)
        if (strcmp(s_keys[i].name, name) == 0)
            return &s_keys[i];
    return NULL;
}

/* ---- values ------------------------------------------------------------ */

static int s_replace_str(char **slot, const char *value, char *err, size_t errsize)
{
    char *copy = strdup(value);
    if (!copy) {
        snprintf(err, errsize, "out of memory");
        return -1;
    }
    free(*slot);
    *slot = copy;
    return 0;
}

static int s_set_endpoint(char **slot, const config_key *k, const char *v,
                          char *err, size_t errsize)
{
    const char *sep = strstr(v, "://");
    int bad = !sep || sep == v || sep[3] == '\0';
    for (const char *p = v; *p && !bad; p++)
        bad = isspace((unsigned char)*p);
    if (bad) {
        snprintf(err, errsize, "%s: \"%s\" is not a ZeroMQ endpoint "
                 "(like tcp://127.0.0.1:7701 or ipc:///run/push.sock)", k->name, v);
        return -1;
    }
    return s_replace_str(slot, v, err, errsize);
}

static int s_set_uint(uint64_t *slot, const config_key *k, const char *v,
                      char *err, size_t errsize)
{
    uint64_t n;
    if (push_parse_u64(v, strlen(v), &n) < 0) {
        snprintf(err, errsize, "%s: \"%s\" is not a non-negative decimal integer",
                 k->name, v);
        return -1;
    }
    if (n < k->min || n > k->max) {
        snprintf(err, errsize, "%s: %s is out of range (%llu..%llu)", k->name, v,
                 (unsigned long long)k->min, (unsigned long long)k->max);
        return -1;
    }
    *slot = n;
    return 0;
}

static int s_set_level(int *slot, const char *v, char *err, size_t errsize)
{
    int level = log_level_parse(v);
    if (level < 0) {
        snprintf(err, errsize, "log_level: \"%s\" is not one of error, warn, info, debug", v);
        return -1;
    }
    *slot = level;
    return 0;
}

static int s_set_fsync(int *slot, const char *v, char *err, size_t errsize)
{
    int policy = store_fsync_parse(v);
    if (policy < 0) {
        snprintf(err, errsize, "fsync: \"%s\" is not one of always, everysec, no", v);
        return -1;
    }
    *slot = policy;
    return 0;
}

/* Octal permissions such as 0660; the broker itself never connects, so any
 * mode up to 0777 is taken (setuid and friends mean nothing on a socket). */
static int s_set_mode(unsigned *slot, const char *v, char *err, size_t errsize)
{
    char *end;
    unsigned long mode = strtoul(v, &end, 8);
    if (!*v || *end || *v == '-' || *v == '+' || mode > 0777) {
        snprintf(err, errsize, "ipc_mode: \"%s\" is not an octal mode from 0 to 0777 "
                 "(like 0660)", v);
        return -1;
    }
    *slot = (unsigned)mode;
    return 0;
}

int config_set(broker_config *c, const char *key, const char *value,
               char *err, size_t errsize)
{
    const config_key *k = s_key(key);
    if (!k) {
        snprintf(err, errsize, "unknown key \"%s\"", key);
        return -1;
    }
    void *slot = (char *)c + k->offset;
    switch (k->kind) {
    case V_ENDPOINT: return s_set_endpoint(slot, k, value, err, errsize);
    case V_UINT:     return s_set_uint(slot, k, value, err, errsize);
    case V_LEVEL:    return s_set_level(slot, value, err, errsize);
    case V_FSYNC:    return s_set_fsync(slot, value, err, errsize);
    case V_MODE:     return s_set_mode(slot, value, err, errsize);
    case V_NAME:
    case V_PATH:
        if (!*value) {
            snprintf(err, errsize, "%s: empty %s", k->name, k->kind == V_PATH ? "path" : "name");
            return -1;
        }
        return s_replace_str(slot, value, err, errsize);
    }
    return -1;
}

/* ---- config file ------------------------------------------------------- */

/* Cuts a comment and surrounding blanks off line; returns the trimmed text. */
static char *s_strip(char *line)
{
    for (char *p = line; *p; p++)
        if (*p == '#' && (p == line || isspace((unsigned char)p[-1]))) {
            *p = '\0';
            break;
        }
    while (isspace((unsigned char)*line))
        line++;
    size_t n = strlen(line);
    while (n && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    return line;
}

static int s_apply_line(broker_config *c, char *line, char *err, size_t errsize)
{
    char *text = s_strip(line);
    if (!*text)
        return 0;
    char *value = text;
    while (*value && !isspace((unsigned char)*value))
        value++;
    if (*value)
        *value++ = '\0';
    while (isspace((unsigned char)*value))
        value++;
    if (!*value) {
        snprintf(err, errsize, "key \"%s\" has no value", text);
        return -1;
    }
    return config_set(c, text, value, err, errsize);
}

int config_load_file(broker_config *c, const char *path, char *err, size_t errsize)
{
    FILE *f = fopen(path, "re");
    if (!f) {
        snprintf(err, errsize, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL, msg[512];
    size_t cap = 0;
    unsigned lineno = 0;
    int rc = 0;
    while (rc == 0 && getline(&line, &cap, f) >= 0) {
        lineno++;
        if (s_apply_line(c, line, msg, sizeof msg) < 0) {
            snprintf(err, errsize, "%s:%u: %s", path, lineno, msg);
            rc = -1;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errsize, "%s: read error: %s", path, strerror(errno));
        rc = -1;
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- defaults and cleanup ---------------------------------------------- */

int config_defaults(broker_config *c)
{
    memset(c, 0, sizeof *c);
    c->api = strdup(PUSH_DEFAULT_API_ENDPOINT);
    c->push = strdup(PUSH_DEFAULT_PUSH_ENDPOINT);
    c->link = strdup(PUSH_DEFAULT_LINK_ENDPOINT);
    c->history_max = CONFIG_HISTORY_MAX_DEFAULT;
    c->history_age = CONFIG_HISTORY_AGE_DEFAULT;
    c->child_timeout = 10;
    c->max_message_size = PUSH_DEFAULT_MAX_MSG;
    c->log_level = PB_LOG_INFO;
    c->fsync = STORE_FSYNC_EVERYSEC;
    c->ipc_mode = CONFIG_IPC_MODE_DEFAULT;
    c->ipc_gid = -1;
    return c->api && c->push && c->link ? 0 : -1;
}

void config_free(broker_config *c)
{
    free(c->api);
    free(c->push);
    free(c->link);
    free(c->config_file);
    free(c->pid_file);
    free(c->log_file);
    free(c->data_dir);
    free(c->curve_secret_key_file);
    free(c->curve_authorized_keys);
    free(c->ipc_group);
    memset(c, 0, sizeof *c);
}

int64_t config_frame_limit(const broker_config *c)
{
    uint64_t escaped = c->max_message_size * 6 + 64 * 1024;
    uint64_t floor = 64ull * 1024 * 1024;
    return (int64_t)(escaped > floor ? escaped : floor);
}

/* ---- absolute paths ---------------------------------------------------- */

/* Prefixes *slot + skip with the working directory when it is relative. */
static int s_absolute(char **slot, size_t skip)
{
    if (!*slot || (*slot)[skip] == '/' || (*slot)[skip] == '@')
        return 0;   /* '@': abstract ipc socket, not a path */
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return -1;
    char *abs = NULL;
    int rc = asprintf(&abs, "%.*s%s/%s", (int)skip, *slot, cwd, *slot + skip);
    free(cwd);
    if (rc < 0)
        return -1;
    free(*slot);
    *slot = abs;
    return 0;
}

static int s_absolute_endpoint(char **slot)
{
    return strncmp(*slot, "ipc://", 6) == 0 ? s_absolute(slot, 6) : 0;
}

static int s_make_absolute(broker_config *c)
{
    int to_syslog = c->log_file && strcmp(c->log_file, "syslog") == 0;
    if (s_absolute(&c->pid_file, 0) < 0 || (!to_syslog && s_absolute(&c->log_file, 0) < 0)
        || s_absolute(&c->data_dir, 0) < 0
        || s_absolute(&c->curve_secret_key_file, 0) < 0
        || s_absolute(&c->curve_authorized_keys, 0) < 0
        || s_absolute_endpoint(&c->api) < 0 || s_absolute_endpoint(&c->push) < 0
        || s_absolute_endpoint(&c->link) < 0) {
        fprintf(stderr, "pushbrokerd: cannot resolve relative paths: %s\n", strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- what the settings name ---------------------------------------------- */

static int s_resolve_curve(broker_config *c, char *err, size_t errsize)
{
    char why[700];
    if (!c->curve_secret_key_file) {
        if (!c->curve_authorized_keys)
            return 0;
        snprintf(err, errsize, "curve_authorized_keys needs curve_secret_key_file "
                 "(the broker's own key pair, from pushctl keygen)");
        return -1;
    }
    if (!zmq_has("curve")) {
        snprintf(err, errsize, "curve_secret_key_file: this libzmq has no CURVE support");
        return -1;
    }
    if (push_curve_load_key(c->curve_secret_key_file, c->curve_secret,
                            &c->curve_secret_world_readable, why, sizeof why) < 0
        || push_curve_public(c->curve_secret, c->curve_public) < 0) {
        snprintf(err, errsize, "curve_secret_key_file: %s", why);
        return -1;
    }
    /* read once now, so that a bad line stops the start; the allow-list
     * itself is loaded by guard.c (and again on SIGHUP) */
    if (c->curve_authorized_keys
        && push_curve_read_keys(c->curve_authorized_keys, NULL, NULL, NULL, why,
                                sizeof why) < 0) {
        snprintf(err, errsize, "curve_authorized_keys: %s", why);
        return -1;
    }
    return 0;
}

/* A group name, or a number where no group has that name. */
static int s_resolve_group(broker_config *c, char *err, size_t errsize)
{
    if (!c->ipc_group)
        return 0;
    struct group *g = getgrnam(c->ipc_group);
    uint64_t n;
    if (g)
        c->ipc_gid = (long)g->gr_gid;
    else if (push_parse_u64(c->ipc_group, strlen(c->ipc_group), &n) == 0 && n < 0x7fffffff)
        c->ipc_gid = (long)n;
    else {
        snprintf(err, errsize, "ipc_group: there is no group \"%s\"", c->ipc_group);
        return -1;
    }
    return 0;
}

int config_resolve(broker_config *c, char *err, size_t errsize)
{
    return s_resolve_curve(c, err, errsize) < 0 || s_resolve_group(c, err, errsize) < 0
         ? -1 : 0;
}

/* ---- command line ------------------------------------------------------ */

void config_usage(FILE *out)
{
    fprintf(out,
"Usage: pushbrokerd [OPTION]...\n"
"Message broker for mod_push: keeps per-channel history and fans messages\n"
"out to Apache children.\n"
"\n"
"  -c, --config FILE          read settings from FILE (\"key value\" lines)\n"
"  -f, --foreground           stay in the foreground (default)\n"
"  -d, --daemon               detach: fork, setsid, stdio to /dev/null\n"
"                             (stdout/stderr to the --log file if given)\n"
"  -p, --pid-file FILE        write the pid to FILE after binding; removed on exit\n"
"      --log FILE             append log lines to FILE instead of stderr\n"
"                             (reopened on SIGHUP); --log syslog: to syslog\n"
"      --log-level LEVEL      error, warn, info (default) or debug\n"
"      --api EP               request/reply endpoint (default %s)\n"
"      --push EP              fire-and-forget endpoint (default %s)\n"
"      --link EP              mod_push children endpoint (default %s)\n"
"      --history-max N        messages kept per channel (default %d, 1..%d)\n"
"      --history-age S        seconds messages are kept (default %d, 0 = forever)\n"
"      --max-message-size N   largest message data in bytes (default %d)\n"
"      --child-timeout S      seconds before a silent Apache child is forgotten,\n"
"                             with its subscribers and presence (default 10)\n"
"      --data-dir DIR         keep messages in an append-only journal in DIR\n"
"                             (created if missing); default: memory only\n"
"      --fsync POLICY         when the journal is flushed to disk: always (before\n"
"                             every acknowledgement), everysec (default; at most\n"
"                             about a second later) or no (left to the kernel)\n"
"      --curve-secret-key-file FILE\n"
"                             the broker's CURVE secret key (pushctl keygen):\n"
"                             tcp:// endpoints then accept CURVE clients only\n"
"      --curve-authorized-keys FILE\n"
"                             public keys of the clients allowed in, one per\n"
"                             line (default: any client with the server key)\n"
"      --ipc-mode MODE        permissions of ipc:// socket files (default 0660)\n"
"      --ipc-group GROUP      group of ipc:// socket files (default: the broker's)\n"
"  -h, --help                 show this help and exit\n"
"  -V, --version              show the version and exit\n"
"\n"
"Config file keys: api, push, link, history_max, history_age, child_timeout,\n"
"max_message_size, pid_file, log_file, log_level, data_dir, fsync,\n"
"curve_secret_key_file, curve_authorized_keys, ipc_mode, ipc_group.\n"
"Command-line options override the file.  Exit status: 0 ok, 1 runtime\n"
"failure (e.g. cannot bind, data directory unusable), 2 bad configuration\n"
"(a key file that cannot be read or is malformed too) or usage.\n",
            PUSH_DEFAULT_API_ENDPOINT, PUSH_DEFAULT_PUSH_ENDPOINT,
            PUSH_DEFAULT_LINK_ENDPOINT, CONFIG_HISTORY_MAX_DEFAULT,
            CONFIG_HISTORY_MAX_LIMIT, CONFIG_HISTORY_AGE_DEFAULT,
            PUSH_DEFAULT_MAX_MSG);
}

enum {
    OPT_LOG = 256, OPT_LOG_LEVEL, OPT_API, OPT_PUSH, OPT_LINK,
    OPT_HISTORY_MAX, OPT_HISTORY_AGE, OPT_MAX_MSG, OPT_DATA_DIR, OPT_FSYNC, OPT_CHILD_TIMEOUT,
    OPT_CURVE_SECRET, OPT_CURVE_AUTHORIZED, OPT_IPC_MODE, OPT_IPC_GROUP
};

static const struct option s_options[] = {
    { "config",           required_argument, NULL, 'c' },
    { "foreground",       no_argument,       NULL, 'f' },
    { "daemon",           no_argument,       NULL, 'd' },
    { "pid-file",         required_argument, NULL, 'p' },
    { "pidfile",          required_argument, NULL, 'p' },
    { "log",              required_argument, NULL, OPT_LOG },
    { "log-level",        required_argument, NULL, OPT_LOG_LEVEL },
    { "api",              required_argument, NULL, OPT_API },
    { "push",             required_argument, NULL, OPT_PUSH },
    { "link",             required_argument, NULL, OPT_LINK },
    { "history-max",      required_argument, NULL, OPT_HISTORY_MAX },
    { "history_max",      required_argument, NULL, OPT_HISTORY_MAX },
    { "history-age",      required_argument, NULL, OPT_HISTORY_AGE },
    { "history_age",      required_argument, NULL, OPT_HISTORY_AGE },
    { "max-message-size", required_argument, NULL, OPT_MAX_MSG },
    { "max_message_size", required_argument, NULL, OPT_MAX_MSG },
    { "data-dir",         required_argument, NULL, OPT_DATA_DIR },
    { "data_dir",         required_argument, NULL, OPT_DATA_DIR },
    { "fsync",            required_argument, NULL, OPT_FSYNC },
    { "child-timeout",    required_argument, NULL, OPT_CHILD_TIMEOUT },
    { "child_timeout",    required_argument, NULL, OPT_CHILD_TIMEOUT },
    { "curve-secret-key-file", required_argument, NULL, OPT_CURVE_SECRET },
    { "curve_secret_key_file", required_argument, NULL, OPT_CURVE_SECRET },
    { "curve-authorized-keys", required_argument, NULL, OPT_CURVE_AUTHORIZED },
    { "curve_authorized_keys", required_argument, NULL, OPT_CURVE_AUTHORIZED },
    { "ipc-mode",         required_argument, NULL, OPT_IPC_MODE },
    { "ipc_mode",         required_argument, NULL, OPT_IPC_MODE },
    { "ipc-group",        required_argument, NULL, OPT_IPC_GROUP },
    { "ipc_group",        required_argument, NULL, OPT_IPC_GROUP },
    { "help",             no_argument,       NULL, 'h' },
    { "version",          no_argument,       NULL, 'V' },
    { NULL, 0, NULL, 0 }
};

static const char *s_opt_key(int opt)
{
    switch (opt) {
    case 'p':             return "pid_file";
    case OPT_LOG:         return "log_file";
    case OPT_LOG_LEVEL:   return "log_level";
    case OPT_API:         return "api";
    case OPT_PUSH:        return "push";
    case OPT_LINK:        return "link";
    case OPT_HISTORY_MAX: return "history_max";
    case OPT_HISTORY_AGE: return "history_age";
    case OPT_MAX_MSG:     return "max_message_size";
    case OPT_DATA_DIR:    return "data_dir";
    case OPT_FSYNC:       return "fsync";
    case OPT_CHILD_TIMEOUT: return "child_timeout";
    case OPT_CURVE_SECRET: return "curve_secret_key_file";
    case OPT_CURVE_AUTHORIZED: return "curve_authorized_keys";
    case OPT_IPC_MODE:    return "ipc_mode";
    case OPT_IPC_GROUP:   return "ipc_group";
    default:              return NULL;
    }
}

/* An option that sets a key, remembered until the config file is read. */
typedef struct pending_opt {
    const char *key;
    const char *value;
} pending_opt;

static int s_fail(const char *msg)
{
    fprintf(stderr, "pushbrokerd: %s\nTry 'pushbrokerd --help' for more information.\n", msg);
    return CONFIG_FAIL;
}

/* First pass: flags act at once, key options are queued in pending. */
static int s_scan(broker_config *c, int argc, char **argv,
                  pending_opt *pending, int *npending)
{
    int opt;
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":c:fdp:hV", s_options, NULL)) != -1) {
        char msg[256];
        switch (opt) {
        case 'h': config_usage(stdout); return CONFIG_DONE;
        case 'V': printf("pushbrokerd %s\n", PUSHBROKERD_VERSION); return CONFIG_DONE;
        case 'f': c->daemonize = 0; break;
        case 'd': c->daemonize = 1; break;
        case 'c':
            if (s_replace_str(&c->config_file, optarg, msg, sizeof msg) < 0)
                return s_fail(msg);
            break;
        case ':':
            snprintf(msg, sizeof msg, "option '%s' needs a value", argv[optind - 1]);
            return s_fail(msg);
        case '?':
            snprintf(msg, sizeof msg, "unknown option '%s'", argv[optind - 1]);
            return s_fail(msg);
        default:
            pending[*npending].key = s_opt_key(opt);
            pending[*npending].value = optarg;
            (*npending)++;
        }
    }
    if (optind < argc) {
        char msg[256];
        snprintf(msg, sizeof msg, "unexpected argument '%s'", argv[optind]);
        return s_fail(msg);
    }
    return CONFIG_RUN;
}

static int s_apply(broker_config *c, const pending_opt *pending, int npending)
{
    char err[1024], msg[1100];
    if (c->config_file && config_load_file(c, c->config_file, err, sizeof err) < 0) {
        fprintf(stderr, "pushbrokerd: %s\n", err);
        return CONFIG_FAIL;
    }
    for (int i = 0; i < npending; i++)
        if (config_set(c, pending[i].key, pending[i].value, err, sizeof err) < 0) {
            snprintf(msg, sizeof msg, "command line: %s", err);
            return s_fail(msg);
        }
    if (s_make_absolute(c) < 0)
        return CONFIG_FAIL;
    if (config_resolve(c, err, sizeof err) < 0) {
        fprintf(stderr, "pushbrokerd: %s\n", err);
        return CONFIG_FAIL;
    }
    return CONFIG_RUN;
}

int config_parse_args(broker_config *c, int argc, char **argv)
{
    if (config_defaults(c) < 0)
        return s_fail("out of memory");
    pending_opt *pending = calloc((size_t)argc + 1, sizeof *pending);
    if (!pending)
        return s_fail("out of memory");
    int npending = 0;
    int rc = s_scan(c, argc, argv, pending, &npending);
    if (rc == CONFIG_RUN)
        rc = s_apply(c, pending, npending);
    free(pending);
    return rc;
}
