/*
 * pushctl.c — command-line client for pushbrokerd.
 *
 * Exit status: 0 ok, 1 the broker refused the request (ERR reply),
 * 2 usage error, 3 timeout, broker unreachable or other failure.
 */
#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include "pushclient.h"
#include "pushctl_args.h"
#include "push_curve.h"
#include "push_proto.h"
#include "push_token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>
#include <cjson/cJSON.h>
#include <openssl/crypto.h>

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

#define EXIT_OK       0
#define EXIT_REFUSED  1
#define EXIT_USAGE    2
#define EXIT_COMM     3

#define STDIN_MAX (256u * 1024 * 1024)   /* refuse absurd stdin data */

static void s_usage(FILE *out)
{
    fprintf(out,
"Usage: pushctl [OPTIONS] COMMAND [ARGS]\n"
"\n"
"Publish to and query pushbrokerd, the broker behind mod_push.\n"
"\n"
"Commands:\n"
"  publish CHANNEL DATA [--event NAME] [--no-ack]\n"
"        Publish DATA on CHANNEL (DATA \"-\": read it from stdin, byte for\n"
"        byte). Prints \"id=<id> subscribers=<n>\". With --no-ack the message\n"
"        is sent fire-and-forget to the push endpoint and nothing is printed;\n"
"        an unreachable broker is still reported (exit 3), but a message the\n"
"        broker refuses (e.g. too large) is then not noticed.\n"
"  history CHANNEL [--after ID] [--limit N] [--json]\n"
"        Print the stored messages of CHANNEL with an id greater than ID\n"
"        (default 0: all), oldest first, at most N. One line per message:\n"
"          id=<id> time=<UTC ISO 8601> event=<event> data=<data>\n"
"        where backslash, newline, CR, tab and other control bytes in the\n"
"        event and data are escaped as \\\\ \\n \\r \\t \\xHH. With --json, prints\n"
"        one JSON object instead:\n"
"          {\"channel\":..,\"last_id\":..,\"messages\":[{\"id\":..,\"event\":..,\n"
"           \"data\":..,\"time_us\":..},..]}\n"
"  stats\n"
"        Print the broker's statistics (JSON).\n"
"  ping\n"
"        Check that the broker answers; prints \"epoch=<epoch> rtt_ms=<ms>\".\n"
"  presence CHANNEL\n"
"        Print who is present on CHANNEL (JSON): {\"channel\":..,\"count\":N,\n"
"        \"members\":[{\"identity\":..,\"connections\":N,\"since\":<µs>},..]}\n"
"  token --secret-file FILE --channel PATTERN [--channel PATTERN]... --rights RIGHTS\n"
"        [--sub IDENTITY] [--ttl SECONDS]\n"
"        Print a signed token for mod_push locations with PushTokenRequire on\n"
"        (the broker is not asked). FILE is the PushTokenSecretFile of the\n"
"        server; PATTERN a channel name, a prefix ending in * (room:*), or *;\n"
"        RIGHTS letters of s (subscribe), p (publish), l (presence); IDENTITY\n"
"        the holder's presence identity; the token expires after SECONDS\n"
"        (default %d).\n"
"  keygen [BASE] [--force]\n"
"        Make a CURVE key pair (the broker's curve_secret_key_file, a\n"
"        client's --client-key, mod_push's PushBrokerClientKeys). Without\n"
"        BASE, prints \"public=<key>\" and \"secret=<key>\" (40 characters of\n"
"        Z85 each). With BASE, writes BASE.pub and BASE.secret (mode 0600) and\n"
"        prints the public key; existing files are only replaced with --force.\n"
"\n"
"Options (anywhere on the line; \"--\" ends options):\n"
"  --api ENDPOINT    request/reply endpoint (env PUSH_API, default %s)\n"
"  --push ENDPOINT   fire-and-forget endpoint (env PUSH_PUSH, default %s)\n"
"  --timeout MS      wait at most MS milliseconds for a reply\n"
"                    (env PUSH_TIMEOUT, default %d)\n"
"  --server-key KEY  use CURVE on tcp:// endpoints: KEY is the broker's public\n"
"                    key, or a file holding it (env PUSH_CURVE_SERVER_KEY)\n"
"  --client-key KEY  this client's CURVE secret key, or a file holding it (env\n"
"                    PUSH_CURVE_CLIENT_KEY); without it, a throwaway key pair,\n"
"                    which a broker with curve_authorized_keys refuses\n"
"  -h, --help        show this help and exit\n"
"  --version         show the version and exit\n"
"\n"
"Exit status:\n"
"  0  success\n"
"  1  the broker refused the request; \"error: <code>: <message>\" on stderr\n"
"     (codes such as bad_channel, bad_request, too_large)\n"
"  2  usage error\n"
"  3  timeout, broker unreachable, or another failure\n"
"\n"
"Examples:\n"
"  pushctl publish news 'hello world' --event update\n"
"  date | pushctl publish clock -\n"
"  pushctl history news --after 41 --limit 10\n"
"  pushctl token --secret-file /etc/apache2/push.secret --channel 'room:*' \\\n"
"          --rights sl --sub alice --ttl 600\n"
"  pushctl keygen /etc/pushbrokerd/app1\n"
"  pushctl --server-key /etc/pushbrokerd/broker.pub \\\n"
"          --client-key /etc/pushbrokerd/app1.secret publish news hello\n",
            PUSHCTL_TTL_DEFAULT, PUSH_DEFAULT_API_ENDPOINT, PUSH_DEFAULT_PUSH_ENDPOINT,
            PUSHCLIENT_DEFAULT_TIMEOUT);
}

static int s_usage_error(const char *msg)
{
    fprintf(stderr, "pushctl: %s\nTry 'pushctl --help' for more information.\n", msg);
    return EXIT_USAGE;
}

/* Report a failed library call; returns the exit status. */
static int s_fail(pushclient_t *client, int rc)
{
    fprintf(stderr, "error: %s: %s\n", pushclient_errcode(client),
            pushclient_errmsg(client));
    if (rc == PUSHCLIENT_EREJECTED)
        return EXIT_REFUSED;
    if (rc == PUSHCLIENT_EFAIL && strcmp(pushclient_errcode(client),
                                         PUSHCLIENT_ERR_INVALID) == 0)
        return EXIT_USAGE;
    return EXIT_COMM;
}

/* Read all of stdin.  Returns 0 or -1 (message printed). */
static int s_read_stdin(char **buf_p, size_t *len_p)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) {
        fprintf(stderr, "pushctl: out of memory\n");
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap >= STDIN_MAX) {
                fprintf(stderr, "pushctl: data on stdin is larger than %u bytes\n",
                        STDIN_MAX);
                free(buf);
                return -1;
            }
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                fprintf(stderr, "pushctl: out of memory\n");
                free(buf);
                return -1;
            }
            buf = bigger;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - len, stdin);
        len += n;
        if (n == 0) {
            if (ferror(stdin)) {
                fprintf(stderr, "pushctl: cannot read stdin: %s\n", strerror(errno));
                free(buf);
                return -1;
            }
            break;
        }
    }
    *buf_p = buf;
    *len_p = len;
    return 0;
}

static int s_cmd_publish(pushclient_t *client, const pushctl_args_t *a)
{
    char *stdin_data = NULL;
    const char *data = a->data;
    size_t len = strlen(a->data);
    if (strcmp(a->data, "-") == 0) {
        if (s_read_stdin(&stdin_data, &len) < 0)
            return EXIT_USAGE;
        data = stdin_data;
    }
    int rc, status = EXIT_OK;
    if (a->no_ack) {
        rc = pushclient_publish_nowait(client, a->channel, data, len, a->event);
        if (rc)
            status = s_fail(client, rc);
    }
    else {
        uint64_t id, subscribers;
        rc = pushclient_publish(client, a->channel, data, len, a->event, &id,
                                &subscribers);
        if (rc)
            status = s_fail(client, rc);
        else
            printf("id=%llu subscribers=%llu\n", (unsigned long long)id,
                   (unsigned long long)subscribers);
    }
    free(stdin_data);
    return status;
}

static int s_print_msg(const pushclient_msg_t *m, void *arg)
{
    int *failed = arg;
    char *line = pushctl_format_msg(m->id, m->time_us, m->event, m->data, m->data_len);
    if (!line) {
        *failed = 1;
        return 1;
    }
    puts(line);
    free(line);
    return 0;
}

static int s_history_json(pushclient_t *client, const pushctl_args_t *a)
{
    pushclient_msg_t *msgs = NULL;
    size_t count = 0;
    uint64_t last_id = 0;
    int rc = pushclient_history_get(client, a->channel, a->after, a->limit, &msgs,
                                    &count, &last_id);
    if (rc)
        return s_fail(client, rc);

    cJSON *root = cJSON_CreateObject();
    cJSON *arr = NULL;
    int ok = root && cJSON_AddStringToObject(root, "channel", a->channel)
          && cJSON_AddNumberToObject(root, "last_id", (double)last_id)
          && (arr = cJSON_AddArrayToObject(root, "messages")) != NULL;
    for (size_t i = 0; ok && i < count; i++) {
        cJSON *m = cJSON_CreateObject();
        if (!m || !cJSON_AddItemToArray(arr, m)) {
            cJSON_Delete(m);   /* not owned by arr */
            ok = 0;
            break;
        }
        ok = cJSON_AddNumberToObject(m, "id", (double)msgs[i].id)
          && cJSON_AddStringToObject(m, "event", msgs[i].event)
          && cJSON_AddStringToObject(m, "data", msgs[i].data)
          && cJSON_AddNumberToObject(m, "time_us", (double)msgs[i].time_us);
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    pushclient_msgs_free(&msgs, count);
    if (!text) {
        fprintf(stderr, "pushctl: out of memory\n");
        return EXIT_COMM;
    }
    puts(text);
    free(text);
    return EXIT_OK;
}

static int s_cmd_history(pushclient_t *client, const pushctl_args_t *a)
{
    if (a->json)
        return s_history_json(client, a);
    int failed = 0;
    int rc = pushclient_history(client, a->channel, a->after, a->limit, s_print_msg,
                                &failed, NULL);
    if (rc)
        return s_fail(client, rc);
    if (failed) {
        fprintf(stderr, "pushctl: out of memory\n");
        return EXIT_COMM;
    }
    return EXIT_OK;
}

static int s_cmd_stats(pushclient_t *client)
{
    char *json = NULL;
    int rc = pushclient_stats(client, &json);
    if (rc)
        return s_fail(client, rc);
    puts(json);
    free(json);
    return EXIT_OK;
}

static int s_cmd_presence(pushclient_t *client, const pushctl_args_t *a)
{
    char *json = NULL;
    int rc = pushclient_presence(client, a->channel, &json);
    if (rc)
        return s_fail(client, rc);
    puts(json);
    free(json);
    return EXIT_OK;
}

static int s_cmd_ping(pushclient_t *client)
{
    struct timespec t0, t1;
    uint64_t epoch;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = pushclient_ping(client, &epoch);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rc)
        return s_fail(client, rc);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3
              + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("epoch=%llu rtt_ms=%.3f\n", (unsigned long long)epoch, ms);
    return EXIT_OK;
}

/* Mint a token: no broker involved. */
static int s_cmd_token(const pushctl_args_t *a)
{
    unsigned char secret[PUSH_TOKEN_SECRET_MAX];
    size_t len = 0;
    int world = 0;
    char err[512];
    if (push_token_secret_load(a->secret_file, secret, &len, &world, err, sizeof err) < 0) {
        fprintf(stderr, "pushctl: %s\n", err);
        return EXIT_USAGE;
    }
    if (world)
        fprintf(stderr, "pushctl: warning: %s is readable by every user of this machine\n",
                a->secret_file);
    int64_t now = (int64_t)time(NULL);
    char *tok = push_token_mint(secret, len, a->sub, a->channels, a->nchannels, a->rights,
                                now, now + a->ttl);
    int e = errno;
    OPENSSL_cleanse(secret, sizeof secret);
    if (!tok) {
        fprintf(stderr, "pushctl: cannot mint the token: %s\n",
                e == EINVAL ? "it would be longer than 4096 bytes (fewer --channel)"
                            : strerror(e));
        return e == EINVAL ? EXIT_USAGE : EXIT_COMM;
    }
    puts(tok);
    free(tok);
    return EXIT_OK;
}

/* ---- keygen ------------------------------------------------------------------ */

static int s_keygen_print(const char *pub, const char *sec)
{
    printf("public=%s\nsecret=%s\n", pub, sec);
    return EXIT_OK;
}

/* Create path with exactly mode (O_EXCL: never through an existing file or
 * link); --force removes what is there first.  Returns 0 or -1 (printed). */
static int s_write_key(const char *path, const char *text, mode_t mode, int force)
{
    if (force && unlink(path) < 0 && errno != ENOENT) {
        fprintf(stderr, "pushctl: cannot replace %s: %s\n", path, strerror(errno));
        return -1;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
    if (fd < 0 && errno == EEXIST)
        fprintf(stderr, "pushctl: %s exists; not overwritten (--force replaces it)\n", path);
    else if (fd < 0)
        fprintf(stderr, "pushctl: cannot create %s: %s\n", path, strerror(errno));
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int ok = fchmod(fd, mode) == 0 && write(fd, text, len) == (ssize_t)len && fsync(fd) == 0;
    int e = errno;
    if (close(fd) != 0 && ok) {
        ok = 0;
        e = errno;
    }
    if (!ok) {
        fprintf(stderr, "pushctl: cannot write %s: %s\n", path, strerror(e));
        unlink(path);
    }
    return ok ? 0 : -1;
}

/* Both files or neither: the public one goes if the secret one fails. */
static int s_keygen_files(const pushctl_args_t *a, const char *pub, const char *sec)
{
    char pub_path[4096], sec_path[4096], pub_text[256], sec_text[256];
    if (snprintf(pub_path, sizeof pub_path, "%s.pub", a->keygen_base) >= (int)sizeof pub_path
        || snprintf(sec_path, sizeof sec_path, "%s.secret", a->keygen_base)
           >= (int)sizeof sec_path) {
        fprintf(stderr, "pushctl: keygen: base name too long\n");
        return EXIT_USAGE;
    }
    if (!a->force && (access(pub_path, F_OK) == 0 || access(sec_path, F_OK) == 0)) {
        fprintf(stderr, "pushctl: %s exists; not overwritten (--force replaces it)\n",
                access(pub_path, F_OK) == 0 ? pub_path : sec_path);
        return EXIT_USAGE;
    }
    snprintf(pub_text, sizeof pub_text, "# CURVE public key (pushctl keygen)\n%s\n", pub);
    snprintf(sec_text, sizeof sec_text, "# CURVE secret key (pushctl keygen): keep it "
             "private. Public key: %s\n%s\n", pub, sec);
    int rc = EXIT_COMM;
    if (s_write_key(pub_path, pub_text, 0644, a->force) == 0) {
        if (s_write_key(sec_path, sec_text, 0600, a->force) == 0)
            rc = EXIT_OK;
        else
            unlink(pub_path);
    }
    OPENSSL_cleanse(sec_text, sizeof sec_text);
    if (rc == EXIT_OK)
        printf("public=%s\npublic_file=%s\nsecret_file=%s\n", pub, pub_path, sec_path);
    return rc;
}

static int s_cmd_keygen(const pushctl_args_t *a)
{
    push_curve_key pub, sec;
    if (zmq_curve_keypair(pub, sec) != 0) {
        fprintf(stderr, "pushctl: cannot make a CURVE key pair: %s\n", zmq_strerror(errno));
        return EXIT_COMM;
    }
    int status = a->keygen_base ? s_keygen_files(a, pub, sec) : s_keygen_print(pub, sec);
    OPENSSL_cleanse(sec, sizeof sec);
    return status;
}

/* ---- CURVE for the requests ------------------------------------------------ */

static const char *s_env(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static int s_key(const char *what, const char *arg, push_curve_key key)
{
    char err[1024];
    int world = 0;
    if (push_curve_key_arg(arg, key, &world, err, sizeof err) < 0) {
        fprintf(stderr, "pushctl: %s: %s\n", what, err);
        return -1;
    }
    if (world && strcmp(what, "client key") == 0)
        fprintf(stderr, "pushctl: warning: %s is readable by every user of this machine\n",
                arg);
    return 0;
}

/* The client, with --server-key / --client-key or their environment
 * variables.  Returns it, or NULL with *status set (message printed). */
static pushclient_t *s_client(const pushctl_args_t *a, int *status)
{
    const char *server = a->server_key ? a->server_key : s_env("PUSH_CURVE_SERVER_KEY");
    const char *secret = a->client_key ? a->client_key : s_env("PUSH_CURVE_CLIENT_KEY");
    push_curve_key skey, ckey;
    *status = EXIT_USAGE;
    if (!server && secret) {
        s_usage_error("a client key (--client-key, PUSH_CURVE_CLIENT_KEY) needs the "
                      "broker's public key (--server-key, PUSH_CURVE_SERVER_KEY)");
        return NULL;
    }
    if ((server && s_key("server key", server, skey) < 0)
        || (secret && s_key("client key", secret, ckey) < 0))
        return NULL;
    pushclient_t *client = pushclient_new_curve(a->api, a->push, server ? skey : NULL,
                                                secret ? ckey : NULL);
    int e = errno;
    OPENSSL_cleanse(ckey, sizeof ckey);
    if (!client) {
        fprintf(stderr, "pushctl: cannot use endpoints %s / %s: %s\n",
                a->api ? a->api : PUSH_DEFAULT_API_ENDPOINT,
                a->push ? a->push : PUSH_DEFAULT_PUSH_ENDPOINT, zmq_strerror(e));
        *status = e == EINVAL || e == EPROTONOSUPPORT || e == ENOCOMPATPROTO
                ? EXIT_USAGE : EXIT_COMM;
    }
    return client;
}

int main(int argc, char **argv)
{
    pushctl_args_t a;
    char err[256];
    if (pushctl_args_parse(&a, argc, argv, getenv("PUSH_API"), getenv("PUSH_PUSH"),
                           getenv("PUSH_TIMEOUT"), err, sizeof err) < 0)
        return s_usage_error(err);

    if (a.cmd == PUSHCTL_CMD_HELP) {
        s_usage(stdout);
        return EXIT_OK;
    }
    if (a.cmd == PUSHCTL_CMD_VERSION) {
        int major, minor, patch;
        zmq_version(&major, &minor, &patch);
        printf("pushctl %s (libzmq %d.%d.%d)\n", PACKAGE_VERSION, major, minor, patch);
        return EXIT_OK;
    }

    if (a.cmd == PUSHCTL_CMD_TOKEN || a.cmd == PUSHCTL_CMD_KEYGEN) {
        int status = a.cmd == PUSHCTL_CMD_TOKEN ? s_cmd_token(&a) : s_cmd_keygen(&a);
        if (fflush(stdout) != 0 && status == EXIT_OK) {
            fprintf(stderr, "pushctl: cannot write output: %s\n", strerror(errno));
            status = EXIT_COMM;
        }
        return status;
    }

    int status;
    pushclient_t *client = s_client(&a, &status);
    if (!client)
        return status;
    if (a.timeout_ms)
        pushclient_set_timeout(client, a.timeout_ms);

    switch (a.cmd) {
    case PUSHCTL_CMD_PUBLISH: status = s_cmd_publish(client, &a); break;
    case PUSHCTL_CMD_HISTORY: status = s_cmd_history(client, &a); break;
    case PUSHCTL_CMD_STATS:   status = s_cmd_stats(client); break;
    case PUSHCTL_CMD_PING:    status = s_cmd_ping(client); break;
    case PUSHCTL_CMD_PRESENCE: status = s_cmd_presence(client, &a); break;
    default:                  status = s_usage_error("no command given"); break;
    }
    pushclient_destroy(&client);
    if (fflush(stdout) != 0 && status == EXIT_OK) {
        fprintf(stderr, "pushctl: cannot write output: %s\n", strerror(errno));
        status = EXIT_COMM;
    }
    return status;
}
