/*
 * pushctl_args.c — command-line parsing and output formatting for pushctl;
 * see pushctl_args.h.
 */
#include "pushctl_args.h"
#include "push_proto.h"
#include "push_token.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


static int s_parse_u64(const char *s, uint64_t *out)
{
    return push_parse_u64(s, strlen(s), out);
}

/* Options that take a value. */
static int s_takes_value(const char *name)
{
    static const char *const with_value[] = {
        "api", "push", "timeout", "event", "after", "limit",
        "secret-file", "channel", "rights", "sub", "ttl", "server-key", "client-key", NULL
    };
    for (int i = 0; with_value[i]; i++)
        if (strcmp(name, with_value[i]) == 0)
            return 1;
    return 0;
}

static int s_only_for(pushctl_cmd_t have, pushctl_cmd_t want, int given,
                      const char *opt, const char *cmd, char *err, size_t errlen)
{
    if (given && have != want)
        return push_errf(err, errlen, "option --%s is only valid with '%s'", opt, cmd);
    return 0;
}

int pushctl_args_parse(pushctl_args_t *out, int argc, char **argv,
                       const char *env_api, const char *env_push,
                       const char *env_timeout, char *err, size_t errlen)
{
    pushctl_args_t a;
    memset(&a, 0, sizeof a);
    if (err && errlen)
        err[0] = '\0';
    a.api = env_api && *env_api ? env_api : NULL;
    a.push = env_push && *env_push ? env_push : NULL;
    const char *timeout_s = env_timeout && *env_timeout ? env_timeout : NULL;
    const char *timeout_from = "PUSH_TIMEOUT";

    /* --help and --version win, wherever they are (before "--") */
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            a.cmd = PUSHCTL_CMD_HELP;
            *out = a;
            return 0;
        }
        if (strcmp(argv[i], "--version") == 0) {
            a.cmd = PUSHCTL_CMD_VERSION;
            *out = a;
            return 0;
        }
    }

    const char *pos[8];
    int npos = 0, options_done = 0;
    int have_event = 0, have_after = 0, have_limit = 0;
    int have_ttl = 0;
    a.ttl = PUSHCTL_TTL_DEFAULT;

    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = 1;
            continue;
        }
        if (options_done || strncmp(arg, "--", 2) != 0) {
            /* positional; a lone "-" is a positional too (data from stdin) */
            if (npos == (int)(sizeof pos / sizeof pos[0]))
                return push_errf(err, errlen, "too many arguments");
            pos[npos++] = arg;
            continue;
        }
        /* --name, --name=value, --name value */
        char name[32];
        const char *eq = strchr(arg + 2, '=');
        size_t nlen = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
        if (nlen == 0 || nlen >= sizeof name)
            return push_errf(err, errlen, "unknown option '%s'", arg);
        memcpy(name, arg + 2, nlen);
        name[nlen] = '\0';
        const char *value = NULL;
        if (s_takes_value(name)) {
            if (eq)
                value = eq + 1;
            else if (i + 1 < argc)
                value = argv[++i];
            else
                return push_errf(err, errlen, "option --%s needs a value", name);
        }
        else if (eq)
            return push_errf(err, errlen, "option --%s takes no value", name);

        if (strcmp(name, "api") == 0) {
            if (!*value)
                return push_errf(err, errlen, "option --api needs an endpoint");
            a.api = value;
        }
        else if (strcmp(name, "push") == 0) {
            if (!*value)
                return push_errf(err, errlen, "option --push needs an endpoint");
            a.push = value;
        }
        else if (strcmp(name, "timeout") == 0) {
            timeout_s = value;
            timeout_from = "--timeout";
        }
        else if (strcmp(name, "event") == 0) {
            a.event = *value ? value : NULL;
            have_event = 1;
        }
        else if (strcmp(name, "after") == 0) {
            if (s_parse_u64(value, &a.after) < 0)
                return push_errf(err, errlen, "--after: '%s' is not a message id", value);
            have_after = 1;
        }
        else if (strcmp(name, "limit") == 0) {
            if (s_parse_u64(value, &a.limit) < 0 || a.limit == 0)
                return push_errf(err, errlen, "--limit: '%s' is not a positive number",
                              value);
            have_limit = 1;
        }
        else if (strcmp(name, "secret-file") == 0) {
            if (!*value)
                return push_errf(err, errlen, "option --secret-file needs a file name");
            a.secret_file = value;
        }
        else if (strcmp(name, "channel") == 0) {
            if (!push_token_pattern_valid(value, strlen(value)))
                return push_errf(err, errlen, "--channel: '%s' is not a channel name or pattern "
                              "(name, prefix*, or *)", value);
            if (a.nchannels == PUSHCTL_TOKEN_CHANNELS_MAX)
                return push_errf(err, errlen, "at most %d --channel options",
                              PUSHCTL_TOKEN_CHANNELS_MAX);
            a.channels[a.nchannels++] = value;
        }
        else if (strcmp(name, "rights") == 0) {
            if (!push_token_rights_valid(value))
                return push_errf(err, errlen, "--rights: '%s' is not 1 to 3 distinct letters of "
                              "s (subscribe), p (publish), l (presence)", value);
            a.rights = value;
        }
        else if (strcmp(name, "sub") == 0) {
            if (!push_identity_valid(value, strlen(value)))
                return push_errf(err, errlen, "--sub: the identity must be 1 to %d bytes of UTF-8 "
                              "text without control characters", PUSH_IDENTITY_MAX);
            a.sub = value;
        }
        else if (strcmp(name, "ttl") == 0) {
            uint64_t t;
            if (s_parse_u64(value, &t) < 0 || t == 0 || t > (uint64_t)PUSHCTL_TTL_MAX)
                return push_errf(err, errlen, "--ttl: '%s' is not a number of seconds (1..%lld)",
                              value, (long long)PUSHCTL_TTL_MAX);
            a.ttl = (int64_t)t;
            have_ttl = 1;
        }
        else if (strcmp(name, "server-key") == 0) {
            if (!*value)
                return push_errf(err, errlen, "option --server-key needs a key or a key file");
            a.server_key = value;
        }
        else if (strcmp(name, "client-key") == 0) {
            if (!*value)
                return push_errf(err, errlen, "option --client-key needs a key or a key file");
            a.client_key = value;
        }
        else if (strcmp(name, "force") == 0)
            a.force = 1;
        else if (strcmp(name, "no-ack") == 0)
            a.no_ack = 1;
        else if (strcmp(name, "json") == 0)
            a.json = 1;
        else
            return push_errf(err, errlen, "unknown option '%s'", arg);
    }

    if (timeout_s) {
        uint64_t t;
        if (s_parse_u64(timeout_s, &t) < 0 || t == 0 || t > PUSHCTL_TIMEOUT_MAX)
            return push_errf(err, errlen,
                          "%s: '%s' is not a number of milliseconds (1..%d)",
                          timeout_from, timeout_s, PUSHCTL_TIMEOUT_MAX);
        a.timeout_ms = (int)t;
    }
    if (npos == 0)
        return push_errf(err, errlen, "no command given");
    const char *cmd = pos[0];
    int want;   /* positional arguments after the command */
    if (strcmp(cmd, "publish") == 0 || strcmp(cmd, "pub") == 0) {
        a.cmd = PUSHCTL_CMD_PUBLISH;
        want = 2;
    }
    else if (strcmp(cmd, "history") == 0) {
        a.cmd = PUSHCTL_CMD_HISTORY;
        want = 1;
    }
    else if (strcmp(cmd, "stats") == 0) {
        a.cmd = PUSHCTL_CMD_STATS;
        want = 0;
    }
    else if (strcmp(cmd, "ping") == 0) {
        a.cmd = PUSHCTL_CMD_PING;
        want = 0;
    }
    else if (strcmp(cmd, "presence") == 0) {
        a.cmd = PUSHCTL_CMD_PRESENCE;
        want = 1;
    }
    else if (strcmp(cmd, "token") == 0) {
        a.cmd = PUSHCTL_CMD_TOKEN;
        want = 0;
    }
    else if (strcmp(cmd, "keygen") == 0) {
        /* the base name of the key files is optional */
        a.cmd = PUSHCTL_CMD_KEYGEN;
        want = npos > 1 ? 1 : 0;
    }
    else if (strcmp(cmd, "help") == 0) {
        a.cmd = PUSHCTL_CMD_HELP;
        *out = a;
        return 0;
    }
    else if (strcmp(cmd, "version") == 0) {
        a.cmd = PUSHCTL_CMD_VERSION;
        *out = a;
        return 0;
    }
    else
        return push_errf(err, errlen, "unknown command '%s'", cmd);

    if (npos - 1 < want) {
        if (a.cmd == PUSHCTL_CMD_PUBLISH)
            return push_errf(err, errlen, "publish needs <channel> and <data>");
        return push_errf(err, errlen, "%s needs <channel>", cmd);
    }
    if (npos - 1 > want)
        return push_errf(err, errlen, "unexpected argument '%s'", pos[want + 1]);
    if (want >= 1 && a.cmd == PUSHCTL_CMD_KEYGEN)
        a.keygen_base = pos[1];
    else if (want >= 1)
        a.channel = pos[1];
    if (want >= 2)
        a.data = pos[2];

    if (s_only_for(a.cmd, PUSHCTL_CMD_PUBLISH, have_event, "event", "publish", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_PUBLISH, a.no_ack, "no-ack", "publish", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_HISTORY, have_after, "after", "history", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_HISTORY, have_limit, "limit", "history", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_HISTORY, a.json, "json", "history", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_TOKEN, a.secret_file != NULL, "secret-file", "token",
                      err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_TOKEN, a.nchannels > 0, "channel", "token", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_TOKEN, a.rights != NULL, "rights", "token", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_TOKEN, a.sub != NULL, "sub", "token", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_TOKEN, have_ttl, "ttl", "token", err, errlen)
        || s_only_for(a.cmd, PUSHCTL_CMD_KEYGEN, a.force, "force", "keygen", err, errlen))
        return -1;
    if (a.keygen_base && !*a.keygen_base)
        return push_errf(err, errlen, "keygen: empty base name for the key files");
    if (a.cmd == PUSHCTL_CMD_TOKEN) {
        if (!a.secret_file)
            return push_errf(err, errlen, "token needs --secret-file FILE");
        if (!a.nchannels)
            return push_errf(err, errlen, "token needs at least one --channel NAME|PATTERN");
        if (!a.rights)
            return push_errf(err, errlen, "token needs --rights (letters of s, p, l)");
    }
    *out = a;
    return 0;
}

char *pushctl_escape(const char *data, size_t len)
{
    /* worst case: every byte becomes \xHH */
    if (len > (((size_t)-1) - 1) / 4)
        return NULL;
    char *out = malloc(len * 4 + 1);
    if (!out)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)data[i];
        switch (ch) {
        case '\\': *p++ = '\\'; *p++ = '\\'; break;
        case '\n': *p++ = '\\'; *p++ = 'n'; break;
        case '\r': *p++ = '\\'; *p++ = 'r'; break;
        case '\t': *p++ = '\\'; *p++ = 't'; break;
        default:
            if (ch < 0x20 || ch == 0x7f) {
                static const char hex[] = "0123456789abcdef";
                *p++ = '\\';
                *p++ = 'x';
                *p++ = hex[ch >> 4];
                *p++ = hex[ch & 15];
            }
            else
                *p++ = (char)ch;
        }
    }
    *p = '\0';
    return out;
}

int pushctl_fmt_time(char *buf, size_t size, uint64_t time_us)
{
    struct tm tm;
    time_t secs = (time_t)(time_us / 1000000);
    if (size)
        buf[0] = '\0';
    if (size < 40 || !gmtime_r(&secs, &tm) || tm.tm_year + 1900 > 9999)
        return -1;
    int n = snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%06luZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                     tm.tm_hour, tm.tm_min, tm.tm_sec,
                     (unsigned long)(time_us % 1000000));
    if (n < 0 || (size_t)n >= size) {
        buf[0] = '\0';
        return -1;
    }
    return n;
}

char *pushctl_format_msg(uint64_t id, uint64_t time_us, const char *event,
                         const char *data, size_t data_len)
{
    char ids[21], when[40];
    push_fmt_u64(ids, id);
    if (pushctl_fmt_time(when, sizeof when, time_us) < 0) {
        /* out of range: show the raw number rather than nothing */
        push_fmt_u64(when, time_us);
    }
    char *ev = pushctl_escape(event ? event : "", event ? strlen(event) : 0);
    char *d = pushctl_escape(data ? data : "", data ? data_len : 0);
    char *line = NULL;
    if (ev && d) {
        size_t n = strlen(ids) + strlen(when) + strlen(ev) + strlen(d) + 32;
        line = malloc(n);
        if (line)
            snprintf(line, n, "id=%s time=%s event=%s data=%s", ids, when, ev, d);
    }
    free(ev);
    free(d);
    return line;
}
