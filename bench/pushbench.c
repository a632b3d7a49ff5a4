/*
 * pushbench — load generator for server push (SSE, WebSocket, long polling).
 *
 * Opens N subscriber connections (one thread, epoll, non-blocking sockets),
 * then publishes K messages from a second thread (ZeroMQ PUSH to a
 * pushbrokerd, or HTTP POST to any server) and measures what arrives:
 * deliveries, latency (receive time - send time embedded in the payload),
 * losses, duplicates and reordering per connection.  URLs are templates
 * ("{ch}" = channel name) so that mod_push, Nchan and Pushpin can be driven
 * alike.  See bench/README.md; `pushbench --help` lists the options.
 *
 * --procs P splits the subscribers over P processes (subscriber i belongs to
 * process i % P), forked right after option parsing: one receive loop spends
 * some microseconds of kernel time per delivery, so a single loop reading one
 * message from 5,000 sockets would serialize 5,000 reads and measure itself.
 * The parent (process 0) also runs the publisher; a socketpair per child
 * carries "established", "publishing", "publisher done" (with the per-channel
 * counts), "stop" and the child's results (counts and its latency histogram,
 * merged bucket by bucket, so the percentiles are those of the union).
 *
 * Payload: "<seq>:<send_time_us>:" padded with 'x' to --payload-size, seq per
 * channel from 1, time CLOCK_REALTIME in microseconds.
 *
 * Output: a human summary, then one line "RESULT {json}".
 * Exit status: 0 the run completed (even with losses), 2 usage error,
 * 1 setup failure.
 *
 * Dependencies: libc and libzmq only.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

#ifndef IP_BIND_ADDRESS_NO_PORT
#define IP_BIND_ADDRESS_NO_PORT 24
#endif

#define MAX_INFLIGHT_CONNECTS 200
#define FD_SLACK              64
#define HEAD_MAX              (64 * 1024)
#define WS_MAX_FRAME          (64u * 1024 * 1024)
#define SCRATCH_SIZE          (256 * 1024)
#define HIST_RES_US           10
#define HIST_BUCKETS          (10 * 1000 * 1000 / HIST_RES_US)   /* 10 s */
#define PUB_QCAP              64
#define MAX_GAPS              4096
#define MAX_PROCS             16

enum { T_SSE, T_WS, T_LP };
static const char *const transport_names[] = { "sse", "ws", "longpoll" };

/* ------------------------------------------------------------------------ */
/* small helpers                                                             */
/* ------------------------------------------------------------------------ */

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double thread_cpu(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double mono(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_usage(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pushbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs(" (see --help)\n", stderr);
    va_end(ap);
    exit(2);
}

/* --procs: this process's index (0 = the parent, which publishes) */
static int g_proc;
static void kill_kids(void);

static void die_setup(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die_setup(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (g_proc)
        fprintf(stderr, "pushbench[%d]: ", g_proc);
    else
        fputs("pushbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    if (g_proc)
        _exit(1);                  /* the parent sees it and tells why the run failed */
    kill_kids();                   /* no orphans: the children go with the parent */
    exit(1);
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        die_setup("out of memory");
    return p;
}

static void *xcalloc(size_t n, size_t m)
{
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p)
        die_setup("out of memory");
    return p;
}

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    if (!p)
        die_setup("out of memory");
    return p;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = 0;
    return p;
}

/* A growable byte buffer. */
typedef struct {
    char  *p;
    size_t len, cap;
} buf_t;

static void buf_reserve(buf_t *b, size_t extra)
{
    if (b->len + extra <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p)
        die_setup("out of memory");
    b->p = p;
    b->cap = cap;
}

static void buf_append(buf_t *b, const void *d, size_t n)
{
    if (!n)
        return;
    buf_reserve(b, n);
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        buf_append(b, tmp, (size_t)n);
        return;
    }
    buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static void buf_consume(buf_t *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        if (b->cap > 16384) {      /* idle connections keep no big buffers */
            free(b->p);
            b->p = NULL;
            b->cap = 0;
        }
        return;
    }
    memmove(b->p, b->p + n, b->len - n);
    b->len -= n;
}

static void buf_free(buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
}

/* xorshift64*: WebSocket keys and masks need no cryptographic strength. */
static uint64_t g_rng;
static uint64_t rng_next(void)
{
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1DULL;
}

/* Replace every "{key}" of a template; keys are given with their braces. */
static char *subst(const char *t, const char *k1, const char *v1, const char *k2, const char *v2)
{
    buf_t b = { 0 };
    size_t l1 = k1 ? strlen(k1) : 0, l2 = k2 ? strlen(k2) : 0;
    while (*t) {
        if (k1 && strncmp(t, k1, l1) == 0) {
            buf_append(&b, v1, strlen(v1));
            t += l1;
        }
        else if (k2 && strncmp(t, k2, l2) == 0) {
            buf_append(&b, v2, strlen(v2));
            t += l2;
        }
        else {
            buf_append(&b, t, 1);
            t++;
        }
    }
    buf_append(&b, "", 1);
    return b.p;
}

/* ---- SHA-1 and base64, for the WebSocket handshake ---------------------- */

static uint32_t rol32(uint32_t x, int n) { return (x << n) | (x >> (32 - n)); }

static void sha1_block(uint32_t h[5], const uint8_t *p)
{
    uint32_t w[80];
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 80; i++)
        w[i] = rol32(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
    for (int i = 0; i < 80; i++) {
        uint32_t f, k;
        if (i < 20) { f = (b & c) | (~b & d); k = 0x5A827999; }
        else if (i < 40) { f = b ^ c ^ d; k = 0x6ED9EBA1; }
        else if (i < 60) { f = (b & c) | (b & d) | (c & d); k = 0x8F1BBCDC; }
        else { f = b ^ c ^ d; k = 0xCA62C1D6; }
        uint32_t t = rol32(a, 5) + f + e + k + w[i];
        e = d; d = c; c = rol32(b, 30); b = a; a = t;
    }
    h[0] += a; h[1] += b; h[2] += c; h[3] += d; h[4] += e;
}

static void sha1(const void *data, size_t len, uint8_t out[20])
{
    uint32_t h[5] = { 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0 };
    const uint8_t *p = data;
    size_t left = len;
    while (left >= 64) {
        sha1_block(h, p);
        p += 64;
        left -= 64;
    }
    uint8_t blk[128] = { 0 };
    memcpy(blk, p, left);
    blk[left] = 0x80;
    size_t n = left + 1 + 8 <= 64 ? 64 : 128;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        blk[n - 1 - i] = (uint8_t)(bits >> (8 * i));
    sha1_block(h, blk);
    if (n == 128)
        sha1_block(h, blk + 64);
    for (int i = 0; i < 5; i++) {
        out[4 * i] = (uint8_t)(h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(h[i] >> 8);
        out[4 * i + 3] = (uint8_t)h[i];
    }
}

static void base64(const uint8_t *in, size_t n, char *out)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i = 0, o = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = 0;
}

/* ------------------------------------------------------------------------ */
/* options                                                                   */
/* ------------------------------------------------------------------------ */

typedef struct {
    char                    hostport[300];   /* as written in the URL: the Host header */
    char                   *path;            /* template, starts with '/' */
    struct sockaddr_storage sa;
    socklen_t               salen;
} url_t;

static struct {
    int         transport;
    const char *sub_url;
    long        subscribers;
    long        channels;
    const char *prefix;
    double      connect_rate;
    struct sockaddr_storage *src;
    socklen_t  *srclen;
    int         nsrc;
    buf_t       extra_headers;     /* "Name: value\r\n"... */
    double      hold;
    int         hold_given;
    const char *publish;
    int         pub_zmq;
    const char *pub_target;        /* endpoint or URL template */
    long        pub_conns;
    int         pub_unordered;
    const char *pub_body_tmpl;
    uint64_t    messages;
    double      rate;
    long        payload_size;
    double      drain;
    double      connect_timeout;
    const char *label;
    long        procs;             /* receive processes (--procs) */
} o;

static url_t g_sub_url, g_pub_url;
static char **g_chan;              /* channel names */
static char **g_sub_path;          /* subscriber path per channel */
static char **g_sse_req;           /* prebuilt SSE request per channel */

static void parse_url(const char *s, url_t *u, int allow_ws, const char *what)
{
    const char *p;
    if (strncmp(s, "http://", 7) == 0)
        p = s + 7;
    else if (allow_ws && strncmp(s, "ws://", 5) == 0)
        p = s + 5;
    else if (strncmp(s, "https://", 8) == 0 || strncmp(s, "wss://", 6) == 0)
        die_usage("%s %s: TLS is not supported (use http:// or ws://)", what, s);
    else
        die_usage("%s %s: must start with http://%s", what, s, allow_ws ? " or ws://" : "");
    const char *end = p + strcspn(p, "/?#");
    if (end == p || (size_t)(end - p) >= sizeof u->hostport)
        die_usage("%s %s: no host", what, s);
    memcpy(u->hostport, p, (size_t)(end - p));
    u->hostport[end - p] = 0;
    char host[300], port[16] = "80";
    const char *hp = u->hostport, *colon;
    if (hp[0] == '[') {
        const char *rb = strchr(hp, ']');
        if (!rb)
            die_usage("%s %s: bad IPv6 literal", what, s);
        snprintf(host, sizeof host, "%.*s", (int)(rb - hp - 1), hp + 1);
        colon = rb[1] == ':' ? rb + 1 : NULL;
    }
    else {
        colon = strrchr(hp, ':');
        snprintf(host, sizeof host, "%.*s", (int)(colon ? colon - hp : (long)strlen(hp)), hp);
    }
    if (colon) {
        if (!colon[1] || strlen(colon + 1) >= sizeof port || strspn(colon + 1, "0123456789") != strlen(colon + 1))
            die_usage("%s %s: bad port", what, s);
        snprintf(port, sizeof port, "%s", colon + 1);
    }
    if (*end == '/')
        u->path = xstrdup(end);
    else {
        u->path = xmalloc(strlen(end) + 2);
        u->path[0] = '/';
        strcpy(u->path + 1, end);
    }
    char *hash = strchr(u->path, '#');
    if (hash)
        *hash = 0;
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0)
        die_setup("%s %s: cannot resolve %s: %s", what, s, host, gai_strerror(rc));
    memcpy(&u->sa, ai->ai_addr, ai->ai_addrlen);
    u->salen = ai->ai_addrlen;
    freeaddrinfo(ai);
}

static double opt_num(const char *name, const char *v, double min)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d != d || d < min)
        die_usage("--%s %s: not a number >= %g", name, v, min);
    return d;
}

static long opt_int(const char *name, const char *v, long min, long max)
{
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end || n < min || n > max)
        die_usage("--%s %s: not an integer in [%ld, %ld]", name, v, min, max);
    return (long)n;
}

static void usage(FILE *f)
{
    fputs(
"usage: pushbench [options]\n"
"  --transport sse|ws|longpoll    subscriber transport (default sse)\n"
"  --sub-url URL                  template, {ch} = channel, e.g. http://127.0.0.1:8080/sub/{ch}\n"
"  --subscribers N                subscriber connections (default 0)\n"
"  --channels M                   channels (default 1); subscriber i uses channel i % M\n"
"  --channel-prefix P             channel names P000000, P000001, ... (default bench)\n"
"  --connect-rate R               new connections per second (0 = as fast as possible,\n"
"                                 at most 200 connects in flight)\n"
"  --source-addrs A,B,...         bind subscriber sockets round-robin to these addresses\n"
"  --header 'Name: value'         extra subscriber request header (repeatable)\n"
"  --hold S                       idle S seconds after the connect phase, before publishing\n"
"  --publish zmq:ENDPOINT|http:URL  publisher: ZeroMQ PUSH [PUB, channel, data], or HTTP POST\n"
"                                 to a URL template with {ch}\n"
"  --pub-conns K                  parallel keep-alive HTTP publisher connections (default 4);\n"
"                                 channel c is published over connection c % K (in order)\n"
"  --pub-unordered                spread every channel over all K connections: faster on few\n"
"                                 channels, but the publisher itself may then reorder messages\n"
"  --pub-body-template T          HTTP POST body, {data} = payload, {ch} = channel\n"
"  --messages K                   total messages (round-robin over the channels)\n"
"  --rate R                       messages per second in total (0 = as fast as possible)\n"
"  --payload-size B               payload bytes (default 64)\n"
"  --drain S                      wait up to S s after the last publish (default 10)\n"
"  --connect-timeout S            give up the connect phase after S s (default 60)\n"
"  --procs P                      split the subscribers over P receive processes (default 1,\n"
"                                 at most 16): subscriber i is read by process i % P\n"
"  --label TEXT                   copied into the RESULT line\n"
"  --json                         accepted; the RESULT line is always printed\n"
"Output: a summary, then one line 'RESULT {json}'. With --hold and --messages 0 the\n"
"line 'ESTABLISHED <n>' is printed when the connect phase ends.\n"
"Exit status: 0 run completed, 2 usage error, 1 setup failure.\n", f);
}

static void parse_args(int argc, char **argv)
{
    enum { O_TRANSPORT = 256, O_SUBURL, O_SUBS, O_CHANS, O_PREFIX, O_CRATE, O_SRC, O_HEADER,
           O_HOLD, O_PUBLISH, O_PUBCONNS, O_BODY, O_MESSAGES, O_RATE, O_PAYLOAD, O_DRAIN,
           O_CTIMEOUT, O_LABEL, O_JSON, O_HELP, O_UNORDERED, O_PROCS };
    static const struct option lo[] = {
        { "transport", 1, 0, O_TRANSPORT }, { "sub-url", 1, 0, O_SUBURL },
        { "subscribers", 1, 0, O_SUBS }, { "channels", 1, 0, O_CHANS },
        { "channel-prefix", 1, 0, O_PREFIX }, { "connect-rate", 1, 0, O_CRATE },
        { "source-addrs", 1, 0, O_SRC }, { "header", 1, 0, O_HEADER },
        { "hold", 1, 0, O_HOLD }, { "publish", 1, 0, O_PUBLISH },
        { "pub-conns", 1, 0, O_PUBCONNS }, { "pub-body-template", 1, 0, O_BODY },
        { "messages", 1, 0, O_MESSAGES }, { "rate", 1, 0, O_RATE },
        { "payload-size", 1, 0, O_PAYLOAD }, { "drain", 1, 0, O_DRAIN },
        { "connect-timeout", 1, 0, O_CTIMEOUT }, { "label", 1, 0, O_LABEL },
        { "json", 0, 0, O_JSON }, { "help", 0, 0, O_HELP },
        { "pub-unordered", 0, 0, O_UNORDERED }, { "procs", 1, 0, O_PROCS }, { 0, 0, 0, 0 },
    };
    o.transport = T_SSE;
    o.channels = 1;
    o.prefix = "bench";
    o.pub_conns = 4;
    o.payload_size = 64;
    o.drain = 10;
    o.connect_timeout = 60;
    o.label = "";
    o.procs = 1;
    const char *src = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case O_TRANSPORT:
            if (!strcmp(optarg, "sse"))
                o.transport = T_SSE;
            else if (!strcmp(optarg, "ws") || !strcmp(optarg, "websocket"))
                o.transport = T_WS;
            else if (!strcmp(optarg, "longpoll") || !strcmp(optarg, "lp"))
                o.transport = T_LP;
            else
                die_usage("--transport %s: must be sse, ws or longpoll", optarg);
            break;
        case O_SUBURL: o.sub_url = optarg; break;
        case O_SUBS: o.subscribers = opt_int("subscribers", optarg, 0, 10000000); break;
        case O_CHANS: o.channels = opt_int("channels", optarg, 1, 1000000); break;
        case O_PREFIX: o.prefix = optarg; break;
        case O_CRATE: o.connect_rate = opt_num("connect-rate", optarg, 0); break;
        case O_SRC: src = optarg; break;
        case O_HEADER: {
            const char *colon = strchr(optarg, ':');
            if (!colon || colon == optarg || strpbrk(optarg, "\r\n"))
                die_usage("--header %s: must be 'Name: value'", optarg);
            buf_printf(&o.extra_headers, "%s\r\n", optarg);
            break;
        }
        case O_HOLD: o.hold = opt_num("hold", optarg, 0); o.hold_given = 1; break;
        case O_PUBLISH:
            o.publish = optarg;
            if (!strncmp(optarg, "zmq:", 4)) {
                o.pub_zmq = 1;
                o.pub_target = optarg + 4;
            }
            else if (!strncmp(optarg, "http:", 5) && strncmp(optarg, "http://", 7) != 0) {
                o.pub_target = optarg + 5;
            }
            else if (!strncmp(optarg, "http://", 7)) {
                o.pub_target = optarg;          /* "http://..." alone is taken as http:URL */
            }
            else
                die_usage("--publish %s: must be zmq:ENDPOINT or http:URL", optarg);
            if (!*o.pub_target)
                die_usage("--publish %s: empty target", optarg);
            break;
        case O_PUBCONNS: o.pub_conns = opt_int("pub-conns", optarg, 1, 1000); break;
        case O_BODY: o.pub_body_tmpl = optarg; break;
        case O_MESSAGES:
            o.messages = (uint64_t)opt_int("messages", optarg, 0, LONG_MAX);
            break;
        case O_RATE: o.rate = opt_num("rate", optarg, 0); break;
        case O_PAYLOAD: o.payload_size = opt_int("payload-size", optarg, 1, 16 * 1024 * 1024); break;
        case O_DRAIN: o.drain = opt_num("drain", optarg, 0); break;
        case O_CTIMEOUT: o.connect_timeout = opt_num("connect-timeout", optarg, 0); break;
        case O_LABEL: o.label = optarg; break;
        case O_JSON: break;
        case O_UNORDERED: o.pub_unordered = 1; break;
        case O_PROCS: o.procs = opt_int("procs", optarg, 1, MAX_PROCS); break;
        case 'h': case O_HELP: usage(stdout); exit(0);
        case ':': die_usage("option %s needs a value", argv[optind - 1]);
        default: die_usage("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind < argc)
        die_usage("unexpected argument %s", argv[optind]);
    if (o.subscribers > 0 && !o.sub_url)
        die_usage("--subscribers needs --sub-url");
    if (o.messages > 0 && !o.publish)
        die_usage("--messages needs --publish");
    if (o.pub_body_tmpl && o.pub_zmq)
        die_usage("--pub-body-template is for http: publishers");
    if (o.sub_url && !strstr(o.sub_url, "{ch}"))
        fprintf(stderr, "pushbench: warning: --sub-url has no {ch}: every subscriber uses the same URL\n");
    if (src) {
        char *copy = xstrdup(src), *save = NULL;
        int n = 1;
        for (const char *q = src; *q; q++)
            n += *q == ',';
        o.src = xcalloc((size_t)n, sizeof *o.src);
        o.srclen = xcalloc((size_t)n, sizeof *o.srclen);
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            while (*t == ' ')
                t++;
            if (!*t)
                continue;
            struct sockaddr_in *s4 = (struct sockaddr_in *)&o.src[o.nsrc];
            struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&o.src[o.nsrc];
            if (inet_pton(AF_INET, t, &s4->sin_addr) == 1) {
                s4->sin_family = AF_INET;
                o.srclen[o.nsrc++] = sizeof *s4;
            }
            else if (inet_pton(AF_INET6, t, &s6->sin6_addr) == 1) {
                s6->sin6_family = AF_INET6;
                o.srclen[o.nsrc++] = sizeof *s6;
            }
            else
                die_usage("--source-addrs: %s is not an IP address", t);
        }
        free(copy);
        if (!o.nsrc)
            die_usage("--source-addrs: no address");
    }
}

/* ------------------------------------------------------------------------ */
/* HTTP response parsing (shared by subscribers and the HTTP publisher)       */
/* ------------------------------------------------------------------------ */

enum { BM_NONE, BM_LEN, BM_CHUNKED, BM_EOF };
enum { CS_SIZE, CS_DATA, CS_DATA_END, CS_TRAILER };

typedef struct {
    int      status;
    int      close;                /* the connection ends after this response */
    uint8_t  mode;                 /* BM_* */
    uint8_t  cstate;               /* CS_* */
    uint64_t rem;                  /* BM_LEN: bytes left; BM_CHUNKED: of this chunk */
} hresp_t;

typedef struct {
    const char *etag, *lastmod, *accept;
    size_t      etag_len, lastmod_len, accept_len;
} hinfo_t;

static int has_token(const char *v, size_t n, const char *tok)
{
    size_t l = strlen(tok);
    for (size_t i = 0; i + l <= n; i++)
        if (strncasecmp(v + i, tok, l) == 0)
            return 1;
    return 0;
}

/* Parse a response head (ending with CRLFCRLF, len bytes). -1 when malformed. */
static int parse_head(const char *d, size_t len, hresp_t *h, hinfo_t *hi, int head_request)
{
    memset(h, 0, sizeof *h);
    if (hi)
        memset(hi, 0, sizeof *hi);
    if (len < 12 || memcmp(d, "HTTP/1.", 7) != 0)
        return -1;
    int http10 = d[7] == '0';
    if (!isdigit((unsigned char)d[9]) || !isdigit((unsigned char)d[10]) || !isdigit((unsigned char)d[11]))
        return -1;
    h->status = (d[9] - '0') * 100 + (d[10] - '0') * 10 + (d[11] - '0');
    int64_t clen = -1;
    int chunked = 0, close = http10, keepalive = 0;
    const char *p = memchr(d, '\n', len), *end = d + len;
    while (p && ++p < end) {
        const char *e = memchr(p, '\n', (size_t)(end - p));
        if (!e)
            break;
        size_t n = (size_t)(e - p);
        if (n && p[n - 1] == '\r')
            n--;
        if (!n)
            break;
        const char *colon = memchr(p, ':', n);
        if (colon) {
            size_t nl = (size_t)(colon - p);
            const char *v = colon + 1;
            size_t vl = n - nl - 1;
            while (vl && (*v == ' ' || *v == '\t')) { v++; vl--; }
            while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t')) vl--;
#define HDR(name) (nl == sizeof(name) - 1 && strncasecmp(p, name, nl) == 0)
            if (HDR("Content-Length")) {
                clen = 0;
                for (size_t i = 0; i < vl && isdigit((unsigned char)v[i]); i++)
                    clen = clen * 10 + (v[i] - '0');
            }
            else if (HDR("Transfer-Encoding"))
                chunked = has_token(v, vl, "chunked");
            else if (HDR("Connection")) {
                if (has_token(v, vl, "close"))
                    close = 1;
                if (has_token(v, vl, "keep-alive"))
                    keepalive = 1;
            }
            else if (hi && HDR("ETag")) { hi->etag = v; hi->etag_len = vl; }
            else if (hi && HDR("Last-Modified")) { hi->lastmod = v; hi->lastmod_len = vl; }
            else if (hi && HDR("Sec-WebSocket-Accept")) { hi->accept = v; hi->accept_len = vl; }
#undef HDR
        }
        p = e;
    }
    if (http10 && keepalive)
        close = 0;
    h->close = close;
    if (head_request || h->status < 200 || h->status == 204 || h->status == 304)
        h->mode = BM_NONE;
    else if (chunked)
        h->mode = BM_CHUNKED, h->cstate = CS_SIZE;
    else if (clen >= 0)
        h->mode = clen ? BM_LEN : BM_NONE, h->rem = (uint64_t)clen;
    else
        h->mode = BM_EOF, h->close = 1;
    return 0;
}

typedef void (*sink_fn)(void *arg, const char *d, size_t n);

/* Decode body bytes; returns bytes consumed, -1 on a framing error; *done
 * is set when the body ended (then the rest belongs to what follows). */
static ssize_t body_feed(hresp_t *h, const char *d, size_t n, sink_fn sink, void *arg, int *done)
{
    size_t pos = 0;
    *done = 0;
    if (h->mode == BM_NONE) {
        *done = 1;
        return 0;
    }
    if (h->mode == BM_EOF) {
        if (sink && n)
            sink(arg, d, n);
        return (ssize_t)n;
    }
    if (h->mode == BM_LEN) {
        size_t k = n < h->rem ? n : (size_t)h->rem;
        if (sink && k)
            sink(arg, d, k);
        h->rem -= k;
        if (!h->rem)
            *done = 1;
        return (ssize_t)k;
    }
    while (pos < n) {
        if (h->cstate == CS_DATA) {
            size_t k = n - pos < h->rem ? n - pos : (size_t)h->rem;
            if (sink && k)
                sink(arg, d + pos, k);
            pos += k;
            h->rem -= k;
            if (!h->rem)
                h->cstate = CS_DATA_END;
            continue;
        }
        const char *e = memchr(d + pos, '\n', n - pos);
        if (!e) {
            if (n - pos > 4096)
                return -1;
            break;
        }
        size_t ll = (size_t)(e - (d + pos));
        const char *line = d + pos;
        pos += ll + 1;
        if (ll && line[ll - 1] == '\r')
            ll--;
        if (h->cstate == CS_SIZE) {
            uint64_t sz = 0;
            size_t i = 0;
            for (; i < ll && isxdigit((unsigned char)line[i]); i++) {
                if (sz >> 60)
                    return -1;
                sz = sz * 16 + (uint64_t)(isdigit((unsigned char)line[i]) ? line[i] - '0'
                                          : (tolower((unsigned char)line[i]) - 'a' + 10));
            }
            if (!i)
                return -1;
            if (sz) {
                h->rem = sz;
                h->cstate = CS_DATA;
            }
            else
                h->cstate = CS_TRAILER;
        }
        else if (h->cstate == CS_DATA_END) {
            if (ll)
                return -1;
            h->cstate = CS_SIZE;
        }
        else {  /* CS_TRAILER */
            if (!ll) {
                *done = 1;
                return (ssize_t)pos;
            }
        }
    }
    return (ssize_t)pos;
}

/* ------------------------------------------------------------------------ */
/* statistics                                                                */
/* ------------------------------------------------------------------------ */

static uint32_t *g_hist;            /* latency, HIST_RES_US buckets; the last one is "more" */
static uint64_t  g_lat_n, g_lat_max_us;
static double    g_lat_sum_us;
static uint64_t  g_delivered, g_received, g_dups, g_reorders;
static int64_t   g_first_delivery_us, g_last_delivery_us;
static int64_t   g_start_us;        /* process start: older messages are not ours */

/* Counts by reason: failed connections, long-poll errors. */
typedef struct { char what[80]; long n; } reason_t;
#define MAX_REASONS 24
static reason_t g_fail[MAX_REASONS], g_lperr[MAX_REASONS];
static int      g_nfail, g_nlperr;

static void note_reason_n(reason_t *t, int *nt, const char *what, long n)
{
    for (int i = 0; i < *nt; i++)
        if (!strcmp(t[i].what, what)) {
            t[i].n += n;
            return;
        }
    int i = *nt < MAX_REASONS ? (*nt)++ : MAX_REASONS - 1;
    if (i == MAX_REASONS - 1)
        what = "other";
    if (strcmp(t[i].what, what) != 0) {
        snprintf(t[i].what, sizeof t[i].what, "%s", what);
        t[i].n = 0;
    }
    t[i].n += n;
}

static void note_reason(reason_t *t, int *nt, const char *what)
{
    note_reason_n(t, nt, what, 1);
}

static void note_fail(const char *what)
{
    note_reason(g_fail, &g_nfail, what);
}

static long g_lp_errors;

static void lp_error(const char *what)
{
    g_lp_errors++;
    note_reason(g_lperr, &g_nlperr, what);
}

static void print_reasons(const reason_t *t, int n)
{
    if (!n)
        return;
    printf(" [");
    for (int i = 0; i < n; i++)
        printf("%s%s: %ld", i ? ", " : "", t[i].what, t[i].n);
    printf("]");
}

/* ------------------------------------------------------------------------ */
/* subscriber connections                                                    */
/* ------------------------------------------------------------------------ */

enum { S_NEW, S_CONNECTING, S_OPEN, S_WAIT, S_FAILED, S_CLOSED, S_DONE };
enum { P_HEAD, P_BODY, P_WS };

typedef struct { uint64_t lo, hi; } gap_t;

typedef struct conn {
    int      fd;
    int      ch;
    uint32_t idx;
    uint8_t  state;            /* S_* */
    uint8_t  phase;            /* P_* */
    uint8_t  established;
    uint8_t  closed;           /* closed by the server after being established */
    uint8_t  ws_acked;         /* mod_push JSON mode: {"type":"subscribed"} seen */
    uint8_t  frag_op;          /* WebSocket: opcode of the fragmented message, 0 = none */
    uint8_t  evout;            /* EPOLLOUT is registered */
    uint8_t  got_bytes;        /* something of the current response arrived */
    uint8_t  lp_has_cursor;
    uint8_t  lp_errs;          /* consecutive long-poll errors */
    hresp_t  h;
    buf_t    in, out, aux;     /* raw input; output; SSE line / LP body / WS message */
    char     wskey[32];
    /* sequence tracking */
    uint64_t max_seq, unique, dup, reorder;
    gap_t   *gaps;
    uint32_t ngaps, gcap;
    /* long poll */
    uint64_t cursor;
    char    *etag, *lastmod;
    double   retry_at;
    struct conn *next_wait;
} conn_t;

static conn_t *g_conns;
static long    g_nsubs;            /* this process's subscribers (all but with --procs) */
static int     g_ep = -1;
static char   *g_scratch;
static long    g_started, g_resolved, g_established, g_failed, g_closed_by_server;
static long    g_ws_acked, g_proto_errors;
static double  g_last_ack;          /* when the last WebSocket subscription was acknowledged */
static conn_t *g_waitlist;          /* long polls waiting to retry */
static int64_t g_now;               /* CLOCK_REALTIME of the current read */
static volatile sig_atomic_t g_stop, g_signals;

static _Atomic uint64_t *g_pub_count;   /* per channel: messages published (acknowledged) */

static void conn_begin(conn_t *c);

static void ep_set(conn_t *c, int out)
{
    if (c->fd < 0 || c->evout == out)
        return;
    struct epoll_event ev = { .events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c };
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->evout = (uint8_t)out;
}

static void conn_close_fd(conn_t *c)
{
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    buf_free(&c->in);
    buf_free(&c->out);
    buf_free(&c->aux);
    c->evout = 0;
    c->frag_op = 0;
}

static void conn_set_established(conn_t *c)
{
    if (c->established)
        return;
    c->established = 1;
    g_established++;
    g_resolved++;
}

static void conn_fail(conn_t *c, const char *why)
{
    if (!c->established) {
        note_fail(why);
        g_failed++;
        g_resolved++;
    }
    c->state = S_FAILED;
    conn_close_fd(c);
}

static void conn_server_closed(conn_t *c)
{
    if (!c->established) {
        conn_fail(c, "closed before the response");
        return;
    }
    if (!c->closed) {
        c->closed = 1;
        g_closed_by_server++;
    }
    c->state = S_CLOSED;
    conn_close_fd(c);
}

/* ---- message accounting ------------------------------------------------ */

static void lat_record(int64_t lat)
{
    if (lat < 0)
        lat = 0;
    uint64_t b = (uint64_t)lat / HIST_RES_US;
    if (b >= HIST_BUCKETS)
        b = HIST_BUCKETS;
    g_hist[b]++;
    g_lat_n++;
    g_lat_sum_us += (double)lat;
    if ((uint64_t)lat > g_lat_max_us)
        g_lat_max_us = (uint64_t)lat;
}

static void gap_add(conn_t *c, uint64_t lo, uint64_t hi)
{
    if (c->ngaps == MAX_GAPS) {          /* forget the oldest gap */
        memmove(c->gaps, c->gaps + 1, (MAX_GAPS - 1) * sizeof *c->gaps);
        c->ngaps--;
    }
    if (c->ngaps == c->gcap) {
        c->gcap = c->gcap ? c->gcap * 2 : 4;
        gap_t *g = realloc(c->gaps, c->gcap * sizeof *g);
        if (!g)
            die_setup("out of memory");
        c->gaps = g;
    }
    c->gaps[c->ngaps++] = (gap_t){ lo, hi };
}

/* 1 when seq was missing (and is now taken out of the gaps). */
static int gap_take(conn_t *c, uint64_t seq)
{
    for (uint32_t i = 0; i < c->ngaps; i++) {
        gap_t *g = &c->gaps[i];
        if (seq < g->lo || seq > g->hi)
            continue;
        if (g->lo == g->hi) {
            memmove(g, g + 1, (c->ngaps - i - 1) * sizeof *g);
            c->ngaps--;
        }
        else if (seq == g->lo)
            g->lo++;
        else if (seq == g->hi)
            g->hi--;
        else {
            uint64_t hi = g->hi;
            g->hi = seq - 1;
            gap_add(c, seq + 1, hi);
        }
        return 1;
    }
    return 0;
}

static void record(conn_t *c, uint64_t seq, int64_t ts)
{
    if (ts < g_start_us || seq == 0)
        return;                          /* not from this run */
    g_received++;
    if (seq == c->max_seq + 1)
        c->max_seq = seq;
    else if (seq > c->max_seq) {
        gap_add(c, c->max_seq + 1, seq - 1);
        c->max_seq = seq;
    }
    else if (gap_take(c, seq)) {
        c->reorder++;
        g_reorders++;
    }
    else {
        c->dup++;
        g_dups++;
        return;
    }
    c->unique++;
    g_delivered++;
    if (!g_first_delivery_us)
        g_first_delivery_us = g_now;
    g_last_delivery_us = g_now;
    lat_record(g_now - ts);
}

/* "<seq>:<time_us>:" at the start of p. */
static int parse_payload(const char *p, size_t n, uint64_t *seq, int64_t *ts)
{
    size_t i = 0;
    uint64_t s = 0;
    int64_t t = 0;
    for (; i < n && i < 19 && isdigit((unsigned char)p[i]); i++)
        s = s * 10 + (uint64_t)(p[i] - '0');
    if (!i || i >= n || p[i] != ':')
        return 0;
    size_t j = ++i;
    for (; i < n && i - j < 19 && isdigit((unsigned char)p[i]); i++)
        t = t * 10 + (p[i] - '0');
    if (i == j || i >= n || p[i] != ':')
        return 0;
    *seq = s;
    *ts = t;
    return 1;
}

static void take_payload(conn_t *c, const char *p, size_t n)
{
    uint64_t seq;
    int64_t ts;
    if (parse_payload(p, n, &seq, &ts))
        record(c, seq, ts);
}

/* ---- SSE ------------------------------------------------------------------ */

static void sse_line(conn_t *c, const char *l, size_t n)
{
    if (n < 5 || memcmp(l, "data:", 5) != 0)
        return;                            /* id:, event:, retry:, comments */
    l += 5;
    n -= 5;
    if (n && *l == ' ') {
        l++;
        n--;
    }
    take_payload(c, l, n);
}

static const char *find_eol(const char *d, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (d[i] == '\n' || d[i] == '\r')
            return d + i;
    return NULL;
}

/* Lines end at CR, LF or CRLF; empty lines (event ends) need no handling
 * since every payload is one data: line. */
static void sse_sink(void *arg, const char *d, size_t n)
{
    conn_t *c = arg;
    if (c->aux.len) {
        const char *e = find_eol(d, n);
        if (!e) {
            buf_append(&c->aux, d, n);
            return;
        }
        buf_append(&c->aux, d, (size_t)(e - d));
        sse_line(c, c->aux.p, c->aux.len);
        c->aux.len = 0;
        n -= (size_t)(e - d) + 1;
        d = e + 1;
    }
    while (n) {
        const char *e = find_eol(d, n);
        if (!e) {
            buf_append(&c->aux, d, n);
            return;
        }
        if (e > d)
            sse_line(c, d, (size_t)(e - d));
        n -= (size_t)(e - d) + 1;
        d = e + 1;
    }
}

/* ---- long poll ------------------------------------------------------------ */

static void lp_sink(void *arg, const char *d, size_t n)
{
    conn_t *c = arg;
    buf_append(&c->aux, d, n);
}

static void lp_build_request(conn_t *c)
{
    const char *path = g_sub_path[c->ch];
    c->out.len = 0;
    if (c->lp_has_cursor && !c->etag && !c->lastmod)
        buf_printf(&c->out, "GET %s%clast_id=%" PRIu64 " HTTP/1.1\r\n", path,
                   strchr(path, '?') ? '&' : '?', c->cursor);
    else
        buf_printf(&c->out, "GET %s HTTP/1.1\r\n", path);
    buf_printf(&c->out, "Host: %s\r\n", g_sub_url.hostport);
    if (c->lastmod)
        buf_printf(&c->out, "If-Modified-Since: %s\r\n", c->lastmod);
    if (c->etag)
        buf_printf(&c->out, "If-None-Match: %s\r\n", c->etag);
    buf_append(&c->out, o.extra_headers.p, o.extra_headers.len);
    buf_append(&c->out, "\r\n", 2);
}

static void lp_wait(conn_t *c, double delay)
{
    conn_close_fd(c);
    c->state = S_WAIT;
    c->retry_at = mono() + delay;
    c->next_wait = g_waitlist;
    g_waitlist = c;
}

static int conn_flush(conn_t *c);

/* The response is complete: take the messages, ask again. 1 when the
 * connection goes on (keep-alive), 0 when it was closed. */
static int lp_done(conn_t *c, int status, int close_after)
{
    int ok = status >= 200 && status < 300;
    if (ok) {
        c->lp_errs = 0;
        const char *b = c->aux.p;
        size_t n = c->aux.len;
        if (c->etag || c->lastmod)
            take_payload(c, b, n);         /* Nchan: the body is the message */
        else if (n) {
            const char *p = b, *end = b + n, *q;
            int any = 0;
            while ((q = memmem(p, (size_t)(end - p), "\"data\":\"", 8)) != NULL) {
                q += 8;
                take_payload(c, q, (size_t)(end - q));
                p = q;
                any = 1;
            }
            const char *li = memmem(b, n, "\"last_id\":", 10);
            if (li) {
                li += 10;
                uint64_t v = 0;
                int digits = 0;
                while (li < end && isdigit((unsigned char)*li)) {
                    v = v * 10 + (uint64_t)(*li++ - '0');
                    digits = 1;
                }
                if (digits) {
                    c->cursor = v;
                    c->lp_has_cursor = 1;
                }
            }
            else if (!any)
                take_payload(c, b, n);     /* a raw body without caching headers */
        }
    }
    else if (status != 304 && status != 408) {
        char why[32];
        snprintf(why, sizeof why, "HTTP %d", status);
        lp_error(why);
        if (c->lp_errs < 255)
            c->lp_errs++;
    }
    c->aux.len = 0;
    if (g_stop) {
        conn_close_fd(c);
        c->state = S_DONE;
        return 0;
    }
    if (!ok && status != 304 && status != 408) {
        lp_wait(c, c->lp_errs > 3 ? 1.0 : 0.1);
        return 0;
    }
    if (close_after) {
        conn_close_fd(c);
        conn_begin(c);
        return 0;
    }
    c->phase = P_HEAD;
    c->got_bytes = 0;
    lp_build_request(c);
    conn_flush(c);
    return c->fd >= 0;
}

static void lp_take_headers(conn_t *c, const hinfo_t *hi, int status)
{
    if (status < 200 || status >= 300)
        return;
    if (hi->etag) {
        free(c->etag);
        c->etag = xstrndup(hi->etag, hi->etag_len);
    }
    if (hi->lastmod) {
        free(c->lastmod);
        c->lastmod = xstrndup(hi->lastmod, hi->lastmod_len);
    }
}

/* ---- WebSocket ------------------------------------------------------------ */

static void ws_send(conn_t *c, int op, const char *payload, size_t n)
{
    uint8_t hdr[8];
    if (n > 125)
        n = 125;                           /* control frames only */
    hdr[0] = (uint8_t)(0x80 | op);
    hdr[1] = (uint8_t)(0x80 | n);
    uint32_t m = (uint32_t)rng_next();
    memcpy(hdr + 2, &m, 4);
    buf_append(&c->out, hdr, 6);
    uint8_t *mask = hdr + 2;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)payload[i] ^ mask[i & 3];
        buf_append(&c->out, &b, 1);
    }
    conn_flush(c);
}

static void ws_message(conn_t *c, const char *p, size_t n)
{
    if (n && isdigit((unsigned char)p[0])) {
        take_payload(c, p, n);             /* raw: Nchan, Pushpin, mod_push raw mode */
        return;
    }
    const char *q = memmem(p, n, "\"data\":\"", 8);
    if (q) {
        q += 8;
        take_payload(c, q, (size_t)(p + n - q));
        return;
    }
    if (!c->ws_acked && memmem(p, n, "\"type\":\"subscribed\"", 19)) {
        c->ws_acked = 1;
        g_ws_acked++;
        g_last_ack = mono();
    }
}

/* Parse frames; returns bytes consumed, -1 when the connection ended. */
static ssize_t ws_feed(conn_t *c, char *d, size_t n)
{
    size_t pos = 0;
    while (n - pos >= 2) {
        uint8_t b0 = (uint8_t)d[pos], b1 = (uint8_t)d[pos + 1];
        int fin = b0 & 0x80, op = b0 & 0x0f, masked = b1 & 0x80;
        uint64_t len = b1 & 0x7f;
        size_t hl = 2;
        if (len == 126) {
            if (n - pos < 4)
                break;
            len = (uint64_t)(uint8_t)d[pos + 2] << 8 | (uint8_t)d[pos + 3];
            hl = 4;
        }
        else if (len == 127) {
            if (n - pos < 10)
                break;
            len = 0;
            for (int i = 0; i < 8; i++)
                len = len << 8 | (uint8_t)d[pos + 2 + i];
            hl = 10;
        }
        if (masked)
            hl += 4;
        if ((b0 & 0x70) || len > WS_MAX_FRAME || (op >= 8 && (len > 125 || !fin))) {
            g_proto_errors++;
            note_fail("WebSocket protocol error");
            ws_send(c, 8, "\x03\xea", 2);  /* 1002 */
            conn_server_closed(c);
            return -1;
        }
        if (n - pos < hl + len)
            break;
        char *pl = d + pos + hl;
        if (masked) {
            const uint8_t *mk = (const uint8_t *)d + pos + hl - 4;
            for (uint64_t i = 0; i < len; i++)
                pl[i] ^= (char)mk[i & 3];
        }
        pos += hl + (size_t)len;
        switch (op) {
        case 0x0:                          /* continuation */
            if (!c->frag_op)
                break;
            buf_append(&c->aux, pl, (size_t)len);
            if (fin) {
                ws_message(c, c->aux.p, c->aux.len);
                c->aux.len = 0;
                c->frag_op = 0;
            }
            break;
        case 0x1:
        case 0x2:
            if (fin)
                ws_message(c, pl, (size_t)len);
            else {
                c->frag_op = (uint8_t)op;
                c->aux.len = 0;
                buf_append(&c->aux, pl, (size_t)len);
            }
            break;
        case 0x8:                          /* close: answer with the same code */
            ws_send(c, 8, pl, len >= 2 ? 2 : 0);
            conn_server_closed(c);
            return -1;
        case 0x9:
            ws_send(c, 0xA, pl, (size_t)len);
            if (c->fd < 0)
                return -1;
            break;
        default:                           /* pong, reserved */
            break;
        }
    }
    return (ssize_t)pos;
}

/* ---- the connection machine ---------------------------------------------- */

static int conn_flush(conn_t *c)
{
    while (c->out.len && c->fd >= 0) {
        ssize_t w = send(c->fd, c->out.p, c->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&c->out, (size_t)w);
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            ep_set(c, 1);
            return 0;
        }
        /* a broken socket: the read side reports it */
        c->out.len = 0;
        break;
    }
    ep_set(c, 0);
    if (o.transport == T_LP && !c->established && c->fd >= 0)
        conn_set_established(c);          /* the first poll is on its way */
    return 0;
}

static void conn_head(conn_t *c, const char *d, size_t hl, int *gone)
{
    hinfo_t hi;
    *gone = 0;
    if (parse_head(d, hl, &c->h, &hi, 0) < 0) {
        g_proto_errors++;
        if (o.transport == T_LP && c->established) {
            lp_error("malformed HTTP response");
            lp_wait(c, 0.5);
        }
        else
            conn_fail(c, "malformed HTTP response");
        *gone = 1;
        return;
    }
    int st = c->h.status;
    if (st >= 100 && st < 200 && st != 101)
        return;                            /* an interim response: the real one follows */
    if (o.transport == T_WS) {
        if (st != 101) {
            char why[64];
            snprintf(why, sizeof why, "HTTP %d", st);
            conn_fail(c, why);
            *gone = 1;
            return;
        }
        char cat[128], acc[32];
        uint8_t dg[20];
        snprintf(cat, sizeof cat, "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", c->wskey);
        sha1(cat, strlen(cat), dg);
        base64(dg, 20, acc);
        if (!hi.accept || hi.accept_len != strlen(acc) || memcmp(hi.accept, acc, hi.accept_len)) {
            conn_fail(c, "bad Sec-WebSocket-Accept");
            *gone = 1;
            return;
        }
        c->phase = P_WS;
        c->aux.len = 0;
        conn_set_established(c);
        return;
    }
    if (o.transport == T_SSE) {
        if (st < 200 || st >= 300) {
            char why[64];
            snprintf(why, sizeof why, "HTTP %d", st);
            conn_fail(c, why);
            *gone = 1;
            return;
        }
        c->phase = P_BODY;
        c->aux.len = 0;
        conn_set_established(c);
        return;
    }
    /* long poll */
    lp_take_headers(c, &hi, st);
    c->phase = P_BODY;
    c->aux.len = 0;
}

/* Process raw input; returns bytes consumed, -1 when the connection is gone
 * (or was replaced: the rest of d must be dropped). */
static ssize_t conn_process(conn_t *c, char *d, size_t n)
{
    size_t pos = 0;
    while (pos < n) {
        if (c->phase == P_HEAD) {
            c->got_bytes = 1;
            const char *e = memmem(d + pos, n - pos, "\r\n\r\n", 4);
            if (!e) {
                if (n - pos > HEAD_MAX) {
                    conn_fail(c, "response head too large");
                    return -1;
                }
                return (ssize_t)pos;
            }
            size_t hl = (size_t)(e + 4 - (d + pos));
            int gone;
            conn_head(c, d + pos, hl, &gone);
            if (gone)
                return -1;
            pos += hl;
            if (c->phase == P_BODY && c->h.mode == BM_NONE && o.transport == T_LP) {
                if (!lp_done(c, c->h.status, c->h.close))
                    return -1;
            }
            else if (c->phase == P_BODY && c->h.mode == BM_NONE) {
                conn_server_closed(c);
                return -1;
            }
            continue;
        }
        if (c->phase == P_BODY) {
            int done;
            ssize_t k = body_feed(&c->h, d + pos, n - pos,
                                  o.transport == T_SSE ? sse_sink : lp_sink, c, &done);
            if (k < 0) {
                g_proto_errors++;
                if (o.transport == T_LP) {
                    lp_error("bad HTTP body framing");
                    lp_wait(c, 0.5);
                }
                else
                    conn_server_closed(c);
                return -1;
            }
            pos += (size_t)k;
            if (!done)
                return (ssize_t)pos;
            if (o.transport == T_SSE) {    /* the stream ended */
                conn_server_closed(c);
                return -1;
            }
            if (!lp_done(c, c->h.status, c->h.close))
                return -1;
            continue;
        }
        ssize_t k = ws_feed(c, d + pos, n - pos);
        if (k < 0)
            return -1;
        pos += (size_t)k;
        return (ssize_t)pos;
    }
    return (ssize_t)pos;
}

static void conn_feed(conn_t *c, char *d, size_t n)
{
    if (c->in.len) {
        buf_append(&c->in, d, n);
        ssize_t u = conn_process(c, c->in.p, c->in.len);
        if (u >= 0)
            buf_consume(&c->in, (size_t)u);
    }
    else {
        ssize_t u = conn_process(c, d, n);
        if (u >= 0 && (size_t)u < n)
            buf_append(&c->in, d + u, n - (size_t)u);
    }
}

static void conn_eof(conn_t *c, int err)
{
    if (o.transport == T_LP) {
        if (c->phase == P_BODY && c->h.mode == BM_EOF) {
            lp_done(c, c->h.status, 1);
            return;
        }
        if (c->phase == P_HEAD && !c->got_bytes && !err && c->lp_errs < 3) {
            c->lp_errs++;                  /* a keep-alive connection ended: ask again */
            conn_close_fd(c);
            conn_begin(c);
            return;
        }
        if (!c->established) {
            conn_fail(c, err ? strerror(err) : "closed before the response");
            return;
        }
        lp_error(err ? strerror(err) : "closed before the response");
        if (c->lp_errs < 255)
            c->lp_errs++;
        lp_wait(c, c->lp_errs > 3 ? 1.0 : 0.1);
        return;
    }
    if (c->phase == P_BODY && c->h.mode == BM_EOF && c->aux.len)
        sse_line(c, c->aux.p, c->aux.len);
    if (!c->established)
        conn_fail(c, err ? strerror(err) : "closed before the response");
    else
        conn_server_closed(c);
}

static void conn_read(conn_t *c)
{
    ssize_t r = recv(c->fd, g_scratch, SCRATCH_SIZE, 0);
    if (r > 0) {
        g_now = now_us();
        conn_feed(c, g_scratch, (size_t)r);
    }
    else if (r == 0)
        conn_eof(c, 0);
    else if (errno != EAGAIN && errno != EINTR)
        conn_eof(c, errno);
}

static void conn_event(conn_t *c, uint32_t ev)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t l = sizeof err;
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
        if (err) {
            if (o.transport == T_LP && c->established) {
                lp_error(strerror(err));
                if (c->lp_errs < 255)
                    c->lp_errs++;
                lp_wait(c, c->lp_errs > 3 ? 1.0 : 0.1);
            }
            else
                conn_fail(c, strerror(err));
            return;
        }
        c->state = S_OPEN;
        conn_flush(c);
        return;
    }
    if ((ev & EPOLLOUT) && c->fd >= 0)
        conn_flush(c);
    if ((ev & (EPOLLIN | EPOLLERR | EPOLLHUP)) && c->fd >= 0)
        conn_read(c);
}

/* Open the socket and queue the request (a new connection, or a long poll's
 * next one). */
static void conn_begin(conn_t *c)
{
    c->phase = P_HEAD;
    c->got_bytes = 0;
    c->out.len = 0;
    c->in.len = 0;
    c->aux.len = 0;
    if (o.transport == T_SSE)
        buf_append(&c->out, g_sse_req[c->ch], strlen(g_sse_req[c->ch]));
    else if (o.transport == T_WS) {
        uint8_t key[16];
        uint64_t a = rng_next(), b = rng_next();
        memcpy(key, &a, 8);
        memcpy(key + 8, &b, 8);
        base64(key, 16, c->wskey);
        buf_printf(&c->out, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                   "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                   g_sub_path[c->ch], g_sub_url.hostport, c->wskey);
        buf_append(&c->out, o.extra_headers.p, o.extra_headers.len);
        buf_append(&c->out, "\r\n", 2);
    }
    else
        lp_build_request(c);

    int fd = socket(g_sub_url.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (o.nsrc) {
        int k = (int)(c->idx % (uint32_t)o.nsrc);
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, (struct sockaddr *)&o.src[k], o.srclen[k]) < 0) {
            int e = errno;
            close(fd);
            errno = e;
            goto fail;
        }
    }
    if (connect(fd, (struct sockaddr *)&g_sub_url.sa, g_sub_url.salen) < 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        errno = e;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = c };
    if (epoll_ctl(g_ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        goto fail;
    }
    c->fd = fd;
    c->evout = 1;
    c->state = S_CONNECTING;
    return;
fail:
    c->fd = -1;
    if (o.transport == T_LP && c->established) {
        lp_error(strerror(errno));
        if (c->lp_errs < 255)
            c->lp_errs++;
        lp_wait(c, 1.0);
    }
    else
        conn_fail(c, strerror(errno));
}

static void run_waitlist(double now)
{
    conn_t **pp = &g_waitlist;
    while (*pp) {
        conn_t *c = *pp;
        if (c->state != S_WAIT) {
            *pp = c->next_wait;
            continue;
        }
        if (c->retry_at <= now && !g_stop) {
            *pp = c->next_wait;
            c->next_wait = NULL;
            conn_begin(c);
            continue;
        }
        pp = &c->next_wait;
    }
}

/* --procs: the control sockets are registered with &g_ctl_tag[k] as their
 * epoll data (k = the child's index in the parent, 0 in a child) */
static char g_ctl_tag[MAX_PROCS];
static int  g_nprocs = 1;
static void ctl_event(int k);
static void ctl_stop_kids(void);

static void loop_once(int timeout_ms)
{
    struct epoll_event ev[1024];
    int n = epoll_wait(g_ep, ev, 1024, timeout_ms);
    for (int i = 0; i < n; i++) {
        uintptr_t p = (uintptr_t)ev[i].data.ptr;
        if (p >= (uintptr_t)g_ctl_tag && p < (uintptr_t)(g_ctl_tag + MAX_PROCS))
            ctl_event((int)(p - (uintptr_t)g_ctl_tag));
        else
            conn_event(ev[i].data.ptr, ev[i].events);
    }
    if (g_waitlist)
        run_waitlist(mono());
    if (g_stop && g_nprocs > 1 && !g_proc)
        ctl_stop_kids();
}

/* ------------------------------------------------------------------------ */
/* the publisher thread                                                      */
/* ------------------------------------------------------------------------ */

static uint64_t   *g_pub_seq;              /* publisher only: last seq per channel */
static atomic_int  g_pub_done;
static int64_t     g_pub_first_us, g_pub_end_us;
static uint64_t    g_pub_total, g_pub_errors;
static int         g_pub_fatal;
static char        g_pub_errmsg[256];
static void       *g_zctx, *g_zsock;

static size_t make_payload(char *buf, uint64_t seq, int64_t ts)
{
    int n = snprintf(buf, 48, "%" PRIu64 ":%" PRId64 ":", seq, ts);
    size_t len = (size_t)n;
    if (len < (size_t)o.payload_size) {
        memset(buf + len, 'x', (size_t)o.payload_size - len);
        len = (size_t)o.payload_size;
    }
    buf[len] = 0;
    return len;
}

static void pace(double start, uint64_t i)
{
    if (o.rate <= 0)
        return;
    double target = start + (double)i / o.rate;
    double now = mono();
    if (now >= target)
        return;                            /* behind: catch up without sleeping */
    struct timespec ts;
    ts.tv_sec = (time_t)target;
    ts.tv_nsec = (long)((target - (double)ts.tv_sec) * 1e9);
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR && !g_stop)
        ;
}

static void pub_zmq(void)
{
    char *payload = xmalloc((size_t)o.payload_size + 64);
    double start = mono();
    for (uint64_t i = 0; i < o.messages && !g_stop; i++) {
        pace(start, i);
        int ch = (int)(i % (uint64_t)o.channels);
        uint64_t seq = ++g_pub_seq[ch];
        int64_t ts = now_us();
        if (!g_pub_first_us)
            g_pub_first_us = ts;
        size_t len = make_payload(payload, seq, ts);
        if (zmq_send(g_zsock, "PUB", 3, ZMQ_SNDMORE) < 0 ||
            zmq_send(g_zsock, g_chan[ch], strlen(g_chan[ch]), ZMQ_SNDMORE) < 0 ||
            zmq_send(g_zsock, payload, len, 0) < 0) {
            g_pub_errors++;
            g_pub_fatal = 1;
            snprintf(g_pub_errmsg, sizeof g_pub_errmsg, "zmq_send: %s", zmq_strerror(zmq_errno()));
            break;
        }
        atomic_fetch_add(&g_pub_count[ch], 1);
        g_pub_total++;
    }
    /* PUSH has no acknowledgement: closing waits (up to the linger time)
     * until the queued messages went out to the broker */
    zmq_close(g_zsock);
    zmq_ctx_term(g_zctx);
    g_zsock = g_zctx = NULL;
    g_pub_end_us = now_us();
    free(payload);
}

typedef struct {
    int      fd;
    int      state;                        /* 0 closed, 1 connecting, 2 open */
    int      busy;                         /* a request is waiting for its response */
    int      ch;
    int      in_head;
    int      consec_err;
    double   retry_at;                     /* after an error: not before */
    hresp_t  h;
    buf_t    in, out;
    int      q[PUB_QCAP];
    int      qh, qn;
} pconn_t;

static int pconn_open(int ep, pconn_t *p)
{
    int fd = socket(g_pub_url.sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&g_pub_url.sa, g_pub_url.salen) < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.ptr = p };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    p->fd = fd;
    p->state = 1;
    p->in.len = p->out.len = 0;
    p->in_head = 1;
    return 0;
}

/* Close; a connection that failed (why != NULL) is reopened after a pause
 * growing with the failures in a row, one the server closed after a
 * response (Pushpin does so after every publish) at once. */
static void pconn_drop(pconn_t *p, const char *why)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    p->state = 0;
    p->in.len = p->out.len = 0;
    if (p->busy) {
        p->busy = 0;
        g_pub_errors++;
        p->consec_err++;
    }
    if (why) {
        snprintf(g_pub_errmsg, sizeof g_pub_errmsg, "%s", why);
        p->retry_at = mono() + 0.01 * (p->consec_err < 50 ? p->consec_err + 1 : 50);
    }
    else
        p->retry_at = 0;
}

static void pconn_flush(int ep, pconn_t *p)
{
    while (p->out.len) {
        ssize_t w = send(p->fd, p->out.p, p->out.len, MSG_NOSIGNAL);
        if (w > 0) {
            buf_consume(&p->out, (size_t)w);
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        pconn_drop(p, strerror(errno));
        return;
    }
    struct epoll_event ev = { .events = EPOLLIN | (p->out.len ? EPOLLOUT : 0), .data.ptr = p };
    epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &ev);
}

static void pconn_send(int ep, pconn_t *p, char *payload)
{
    int ch = p->q[p->qh];
    p->qh = (p->qh + 1) % PUB_QCAP;
    p->qn--;
    uint64_t seq = ++g_pub_seq[ch];
    int64_t ts = now_us();
    if (!g_pub_first_us)
        g_pub_first_us = ts;
    size_t len = make_payload(payload, seq, ts);
    char *body = o.pub_body_tmpl ? subst(o.pub_body_tmpl, "{data}", payload, "{ch}", g_chan[ch]) : NULL;
    size_t blen = body ? strlen(body) : len;
    char *path = subst(g_pub_url.path, "{ch}", g_chan[ch], NULL, NULL);
    buf_printf(&p->out, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
               path, g_pub_url.hostport, body ? "application/json" : "application/octet-stream", blen);
    buf_append(&p->out, body ? body : payload, blen);
    free(body);
    free(path);
    p->busy = 1;
    p->ch = ch;
    p->in_head = 1;
    pconn_flush(ep, p);
}

static void pconn_read(pconn_t *p)
{
    char tmp[16384];
    ssize_t r = recv(p->fd, tmp, sizeof tmp, 0);
    if (r == 0 && p->busy && !p->in_head && p->h.mode == BM_EOF) {
        p->in_head = 1;                    /* a response that ends with the connection */
        p->busy = 0;
        if (p->h.status >= 200 && p->h.status < 300) {
            atomic_fetch_add(&g_pub_count[p->ch], 1);
            g_pub_total++;
            p->consec_err = 0;
        }
        else {
            g_pub_errors++;
            p->consec_err++;
        }
        pconn_drop(p, NULL);
        return;
    }
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
        pconn_drop(p, r == 0 ? "publisher connection closed by the server" : strerror(errno));
        return;
    }
    if (r < 0)
        return;
    buf_append(&p->in, tmp, (size_t)r);
    for (;;) {
        if (p->in_head) {
            const char *e = memmem(p->in.p, p->in.len, "\r\n\r\n", 4);
            if (!e)
                return;
            size_t hl = (size_t)(e + 4 - p->in.p);
            if (parse_head(p->in.p, hl, &p->h, NULL, 0) < 0) {
                pconn_drop(p, "malformed HTTP response to a publish");
                return;
            }
            buf_consume(&p->in, hl);
            if (p->h.status >= 100 && p->h.status < 200)
                continue;
            p->in_head = 0;
        }
        int done;
        ssize_t k = body_feed(&p->h, p->in.p, p->in.len, NULL, NULL, &done);
        if (k < 0) {
            pconn_drop(p, "bad HTTP framing in a publish response");
            return;
        }
        buf_consume(&p->in, (size_t)k);
        if (!done)
            return;
        if (p->busy) {
            p->busy = 0;
            if (p->h.status >= 200 && p->h.status < 300) {
                atomic_fetch_add(&g_pub_count[p->ch], 1);
                g_pub_total++;
                p->consec_err = 0;
            }
            else {
                g_pub_errors++;
                p->consec_err++;
                snprintf(g_pub_errmsg, sizeof g_pub_errmsg, "publish answered HTTP %d", p->h.status);
            }
        }
        p->in_head = 1;
        if (p->h.close) {
            pconn_drop(p, NULL);
            return;
        }
        if (!p->in.len)
            return;
    }
}

static void pub_http(void)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    long K = o.pub_conns;
    if (K > o.channels && !o.pub_unordered)
        K = o.channels;                    /* one connection per channel shard keeps order */
    pconn_t *pc = xcalloc((size_t)K, sizeof *pc);
    char *payload = xmalloc((size_t)o.payload_size + 64);
    for (long i = 0; i < K; i++) {
        pc[i].fd = -1;
        pconn_open(ep, &pc[i]);
    }
    /* wait (briefly) for the connections before the clock starts */
    double deadline = mono() + 5;
    for (;;) {
        int open = 0;
        for (long i = 0; i < K; i++)
            open += pc[i].state == 2;
        if (open == K || mono() > deadline || g_stop)
            break;
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, 50);
        for (int i = 0; i < n; i++) {
            pconn_t *p = ev[i].data.ptr;
            if (p->state == 1) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    snprintf(g_pub_errmsg, sizeof g_pub_errmsg, "publisher connect: %s", strerror(err));
                    close(p->fd);
                    p->fd = -1;
                    p->state = 0;
                    continue;
                }
                p->state = 2;
                struct epoll_event e2 = { .events = EPOLLIN, .data.ptr = p };
                epoll_ctl(ep, EPOLL_CTL_MOD, p->fd, &e2);
            }
        }
    }
    int any_open = 0;
    for (long i = 0; i < K; i++)
        any_open |= pc[i].state == 2;
    if (!any_open) {
        g_pub_fatal = 1;
        if (!g_pub_errmsg[0])
            snprintf(g_pub_errmsg, sizeof g_pub_errmsg, "publisher: cannot connect");
        goto out;
    }
    double start = mono();
    uint64_t released = 0;
    for (;;) {
        if (g_stop)
            break;
        double t = mono();
        uint64_t allowed = o.messages;
        if (o.rate > 0) {
            double a = (t - start) * o.rate + 1;
            if (a < (double)o.messages)
                allowed = (uint64_t)a;
        }
        int blocked = 0;
        while (released < allowed) {
            int ch = (int)(released % (uint64_t)o.channels);
            pconn_t *p = &pc[o.pub_unordered ? (long)(released % (uint64_t)K) : ch % K];
            if (p->qn == PUB_QCAP) {
                blocked = 1;               /* wait for responses */
                break;
            }
            p->q[(p->qh + p->qn) % PUB_QCAP] = ch;
            p->qn++;
            released++;
        }
        int pending = 0, fatal = 0;
        for (long i = 0; i < K; i++) {
            pconn_t *p = &pc[i];
            if (p->consec_err > 100)
                fatal = 1;
            if (p->state == 0 && (p->qn || p->busy) && t >= p->retry_at && pconn_open(ep, p) < 0) {
                p->consec_err++;
                p->retry_at = t + 0.05;
            }
            if (p->state == 2 && !p->busy && p->qn)
                pconn_send(ep, p, payload);
            pending += p->qn + p->busy;
        }
        if (fatal) {
            g_pub_fatal = 1;
            break;
        }
        if (released == o.messages && !pending)
            break;
        int timeout = 50;
        if (released < o.messages && o.rate > 0 && !blocked) {
            double next = start + (double)released / o.rate - mono();
            timeout = next <= 0 ? 0 : (int)(next * 1000) + 1;
            if (timeout > 50)
                timeout = 50;
        }
        struct epoll_event ev[64];
        int n = epoll_wait(ep, ev, 64, timeout);
        for (int i = 0; i < n; i++) {
            pconn_t *p = ev[i].data.ptr;
            if (p->fd < 0)
                continue;
            if (p->state == 1) {
                int err = 0;
                socklen_t l = sizeof err;
                getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &l);
                if (err) {
                    char why[128];
                    p->consec_err++;
                    snprintf(why, sizeof why, "publisher connect: %s", strerror(err));
                    pconn_drop(p, why);
                    continue;
                }
                p->state = 2;
                pconn_flush(ep, p);
                continue;
            }
            if (ev[i].events & EPOLLOUT)
                pconn_flush(ep, p);
            if (p->fd >= 0 && (ev[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
                pconn_read(p);
        }
    }
out:
    g_pub_end_us = now_us();
    for (long i = 0; i < K; i++) {
        if (pc[i].fd >= 0)
            close(pc[i].fd);
        buf_free(&pc[i].in);
        buf_free(&pc[i].out);
    }
    free(pc);
    free(payload);
    close(ep);
}

static void *pub_thread(void *arg)
{
    (void)arg;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    if (o.pub_zmq)
        pub_zmq();
    else
        pub_http();
    atomic_store(&g_pub_done, 1);
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* main                                                                      */
/* ------------------------------------------------------------------------ */

static void on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_signals < 100)
        g_signals++;
}

static double pct(double p)
{
    if (!g_lat_n)
        return 0;
    uint64_t target = (uint64_t)(p * (double)g_lat_n);
    if ((double)target < p * (double)g_lat_n)
        target++;
    if (!target)
        target = 1;
    uint64_t cum = 0;
    for (uint64_t b = 0; b <= HIST_BUCKETS; b++) {
        cum += g_hist[b];
        if (cum >= target) {
            if (b == HIST_BUCKETS)
                return (double)g_lat_max_us / 1000.0;
            double v = (double)(b * HIST_RES_US + HIST_RES_US / 2);
            if (v > (double)g_lat_max_us)
                v = (double)g_lat_max_us;
            return v / 1000.0;
        }
    }
    return (double)g_lat_max_us / 1000.0;
}

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\')
            fprintf(f, "\\%c", ch);
        else if (ch < 0x20)
            fprintf(f, "\\u%04x", ch);
        else
            fputc(ch, f);
    }
    fputc('"', f);
}

static int all_received(void)
{
    for (long i = 0; i < g_nsubs; i++) {
        conn_t *c = &g_conns[i];
        if (!c->established || c->closed || c->state == S_FAILED)
            continue;
        if (c->unique < atomic_load(&g_pub_count[c->ch]))
            return 0;
    }
    return 1;
}

/* ------------------------------------------------------------------------ */
/* --procs: receive processes                                                */
/* ------------------------------------------------------------------------ */

/* Messages on a control socket: an mhdr_t, then len bytes.
 *   child -> parent: M_EST (est_msg_t) after its connect phase,
 *                    M_RES (res_msg_t + nhist hpair_t) at the end;
 *   parent -> child: M_PUB (publishing starts), M_DONE (done_msg_t, then the
 *                    per-channel published counts when published), M_STOP. */
enum { M_EST = 'E', M_RES = 'R', M_PUB = 'P', M_DONE = 'D', M_STOP = 'S' };

typedef struct { uint32_t type, len; } mhdr_t;

typedef struct {
    long   established, failed, ws_acked;
    double connect_s;
    int    timed_out;
} est_msg_t;

typedef struct {
    int    published;              /* 0: no publish phase (--messages 0, or stopped) */
    double t_done;                 /* CLOCK_MONOTONIC: the drain counts from here */
} done_msg_t;

typedef struct {                   /* one process's results */
    long     established, failed, closed_by_server, lp_errors, proto_errors;
    uint64_t received, dups, reorders, expected, delivered, lost;
    long     lost_conns, dup_conns, reorder_conns;
    int64_t  first_delivery_us, last_delivery_us;
    uint64_t lat_n, lat_max_us;
    double   lat_sum_us, busy_pct;
    int      nfail, nlperr;
    reason_t fail[MAX_REASONS], lperr[MAX_REASONS];
    uint64_t nhist;                /* followed by nhist hpair_t: the histogram's non-empty buckets */
} res_msg_t;

typedef struct { uint32_t b, n; } hpair_t;

typedef struct {
    pid_t     pid;                 /* 0 once reaped */
    int       fd;
    int       got_est, got_res, eof, stop_sent;
    buf_t     in;
    est_msg_t est;
    buf_t     res;                 /* the M_RES payload */
} kid_t;

static kid_t g_kid[MAX_PROCS];     /* parent: children 1 .. g_nprocs-1 */
static int   g_ctl = -1;           /* child: the socket to the parent */
static buf_t g_ctl_in;             /* child: input from the parent */
static int   g_c_pub, g_c_done, g_c_published;   /* child: what the parent said */
static double g_c_t_done, g_c_t_pub0, g_c_cpu_pub0;

static int send_all(int fd, const void *p, size_t n, int flags)
{
    const char *c = p;
    while (n) {
        ssize_t w = send(fd, c, n, MSG_NOSIGNAL | flags);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
        flags = 0;                 /* a partial message is finished, whatever it takes */
    }
    return 0;
}

static int ctl_send(int fd, int type, const void *a, size_t na, const void *b, size_t nb)
{
    mhdr_t h = { (uint32_t)type, (uint32_t)(na + nb) };
    if (send_all(fd, &h, sizeof h, 0) < 0 || send_all(fd, a, na, 0) < 0 || send_all(fd, b, nb, 0) < 0)
        return -1;
    return 0;
}

/* Read what is there; 1 on EOF or error. */
static int ctl_recv(int fd, buf_t *in)
{
    for (;;) {
        buf_reserve(in, 65536);
        ssize_t r = recv(fd, in->p + in->len, in->cap - in->len, MSG_DONTWAIT);
        if (r > 0)
            in->len += (size_t)r;
        else if (r < 0 && errno == EINTR)
            continue;
        else if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return 1;
    }
}

/* The next complete message in `in`, or NULL. */
static const char *ctl_next(buf_t *in, size_t *off, mhdr_t *h)
{
    if (in->len - *off < sizeof *h)
        return NULL;
    memcpy(h, in->p + *off, sizeof *h);
    if (in->len - *off - sizeof *h < h->len)
        return NULL;
    const char *p = in->p + *off + sizeof *h;
    *off += sizeof *h + h->len;
    return p;
}

static const char *status_text(int st, char *buf, size_t n)
{
    if (WIFEXITED(st))
        snprintf(buf, n, "exited with status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, n, "was killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, n, "ended (status 0x%x)", st);
    return buf;
}

/* Reap child k: wait up to `wait_s` seconds, then SIGKILL.  Its status, or -1. */
static int reap_kid(int k, double wait_s)
{
    kid_t *d = &g_kid[k];
    int st = -1;
    if (d->pid <= 0)
        return -1;
    double until = mono() + wait_s;
    for (;;) {
        pid_t r = waitpid(d->pid, &st, WNOHANG);
        if (r == d->pid || (r < 0 && errno != EINTR))
            break;
        if (mono() >= until) {
            kill(d->pid, SIGKILL);
            while (waitpid(d->pid, &st, 0) < 0 && errno == EINTR)
                ;
            break;
        }
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    d->pid = 0;
    return st;
}

static void kill_kids(void)
{
    for (int k = 1; k < g_nprocs; k++)
        if (g_kid[k].pid > 0) {
            kill(g_kid[k].pid, SIGKILL);
            reap_kid(k, 5);
        }
}

/* A run with a lost receive process is no measurement: say why, kill the
 * others, exit 1. */
static void kids_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void kids_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("pushbench: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    kill_kids();
    fflush(stdout);
    _exit(1);                      /* the publisher thread may still be running */
}

static void ctl_stop_kids(void)
{
    for (int k = 1; k < g_nprocs; k++) {
        kid_t *d = &g_kid[k];
        if (d->stop_sent || d->eof)
            continue;
        mhdr_t h = { M_STOP, 0 };
        /* never blocks on a child that does not read (the rest of a
         * started header is sent in any case) */
        if (send_all(d->fd, &h, sizeof h, MSG_DONTWAIT) == 0)
            d->stop_sent = 1;
        else if (errno != EAGAIN && errno != EWOULDBLOCK)
            d->stop_sent = 1;      /* gone: its EOF tells */
    }
}

static void parent_ctl_event(int k)
{
    kid_t *d = &g_kid[k];
    if (d->eof)
        return;
    int eof = ctl_recv(d->fd, &d->in);
    size_t off = 0;
    mhdr_t h;
    const char *p;
    while ((p = ctl_next(&d->in, &off, &h))) {
        if (h.type == M_EST && h.len == sizeof d->est) {
            memcpy(&d->est, p, sizeof d->est);
            d->got_est = 1;
        }
        else if (h.type == M_RES && h.len >= sizeof(res_msg_t)) {
            buf_append(&d->res, p, h.len);
            d->got_res = 1;
        }
        else
            kids_fail("receive process %d: bad control message", k);
    }
    buf_consume(&d->in, off);
    if (eof) {
        d->eof = 1;
        epoll_ctl(g_ep, EPOLL_CTL_DEL, d->fd, NULL);
        if (!d->got_res) {
            pid_t pid = d->pid;
            char why[128];
            int st = reap_kid(k, 5);
            kids_fail("receive process %d of %d (pid %d) %s before reporting its results", k,
                      g_nprocs, (int)pid, st == -1 ? "ended" : status_text(st, why, sizeof why));
        }
    }
}

static void child_ctl_event(void)
{
    int eof = ctl_recv(g_ctl, &g_ctl_in);
    size_t off = 0;
    mhdr_t h;
    const char *p;
    while ((p = ctl_next(&g_ctl_in, &off, &h))) {
        if (h.type == M_STOP)
            g_stop = 1;
        else if (h.type == M_PUB) {
            g_c_pub = 1;
            g_c_t_pub0 = mono();
            g_c_cpu_pub0 = thread_cpu();
        }
        else if (h.type == M_DONE && h.len >= sizeof(done_msg_t)) {
            done_msg_t dm;
            memcpy(&dm, p, sizeof dm);
            g_c_published = dm.published;
            g_c_t_done = dm.t_done;
            if (dm.published && h.len != sizeof dm + (size_t)o.channels * sizeof(uint64_t))
                die_setup("bad control message from the parent");
            if (dm.published)
                for (long c = 0; c < o.channels; c++) {
                    uint64_t v;
                    memcpy(&v, p + sizeof dm + (size_t)c * sizeof v, sizeof v);
                    atomic_store(&g_pub_count[c], v);
                }
            g_c_done = 1;
        }
        else
            die_setup("bad control message from the parent");
    }
    buf_consume(&g_ctl_in, off);
    if (eof) {
        fprintf(stderr, "pushbench[%d]: the parent is gone, exiting\n", g_proc);
        _exit(1);
    }
}

static void ctl_event(int k)
{
    if (g_proc)
        child_ctl_event();
    else
        parent_ctl_event(k);
}

/* Fork the receive processes 1 .. P-1; in a child this returns there with
 * g_proc set. */
static void spawn_procs(void)
{
    pid_t parent = getpid();
    for (int k = 1; k < g_nprocs; k++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            die_setup("socketpair: %s", strerror(errno));
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid < 0) {
            int e = errno;
            close(sv[0]);
            close(sv[1]);
            die_setup("fork: %s", strerror(e));
        }
        if (pid == 0) {
            /* the child: dies with the parent */
            prctl(PR_SET_PDEATHSIG, SIGKILL);
            if (getppid() != parent)
                _exit(1);
            for (int j = 1; j < k; j++)
                close(g_kid[j].fd);
            memset(g_kid, 0, sizeof g_kid);
            close(sv[0]);
            g_ctl = sv[1];
            g_proc = k;
            return;
        }
        close(sv[1]);
        g_kid[k].pid = pid;
        g_kid[k].fd = sv[0];
    }
}

/* This process's results; the histogram stays in g_hist. */
static void local_results(res_msg_t *r)
{
    memset(r, 0, sizeof *r);
    r->established = g_established;
    r->failed = g_failed;
    r->closed_by_server = g_closed_by_server;
    r->lp_errors = g_lp_errors;
    r->proto_errors = g_proto_errors;
    r->received = g_received;
    r->dups = g_dups;
    r->reorders = g_reorders;
    for (long i = 0; i < g_nsubs; i++) {
        conn_t *c = &g_conns[i];
        if (!c->established)
            continue;
        uint64_t pub = atomic_load(&g_pub_count[c->ch]);
        r->expected += pub;
        uint64_t got = c->unique < pub ? c->unique : pub;
        r->delivered += got;
        if (got < pub) {
            r->lost += pub - got;
            r->lost_conns++;
        }
        r->dup_conns += c->dup > 0;
        r->reorder_conns += c->reorder > 0;
    }
    r->first_delivery_us = g_first_delivery_us;
    r->last_delivery_us = g_last_delivery_us;
    r->lat_n = g_lat_n;
    r->lat_max_us = g_lat_max_us;
    r->lat_sum_us = g_lat_sum_us;
    r->nfail = g_nfail;
    r->nlperr = g_nlperr;
    memcpy(r->fail, g_fail, sizeof g_fail);
    memcpy(r->lperr, g_lperr, sizeof g_lperr);
}

/* Add a child's results to the parent's: counts to the globals, histogram
 * bucket by bucket (so pct() gives the percentiles of the union). */
static void merge_results(res_msg_t *tot, const char *msg, size_t len)
{
    res_msg_t r;
    memcpy(&r, msg, sizeof r);
    if (len != sizeof r + r.nhist * sizeof(hpair_t))
        kids_fail("a receive process sent a malformed result");
    tot->expected += r.expected;
    tot->delivered += r.delivered;
    tot->lost += r.lost;
    tot->lost_conns += r.lost_conns;
    tot->dup_conns += r.dup_conns;
    tot->reorder_conns += r.reorder_conns;
    if (r.busy_pct > tot->busy_pct)
        tot->busy_pct = r.busy_pct;
    g_established += r.established;
    g_failed += r.failed;
    g_closed_by_server += r.closed_by_server;
    g_lp_errors += r.lp_errors;
    g_proto_errors += r.proto_errors;
    g_received += r.received;
    g_dups += r.dups;
    g_reorders += r.reorders;
    if (r.first_delivery_us && (!g_first_delivery_us || r.first_delivery_us < g_first_delivery_us))
        g_first_delivery_us = r.first_delivery_us;
    if (r.last_delivery_us > g_last_delivery_us)
        g_last_delivery_us = r.last_delivery_us;
    g_lat_n += r.lat_n;
    g_lat_sum_us += r.lat_sum_us;      /* sums of whole microseconds: exact */
    if (r.lat_max_us > g_lat_max_us)
        g_lat_max_us = r.lat_max_us;
    for (int i = 0; i < r.nfail && i < MAX_REASONS; i++)
        note_reason_n(g_fail, &g_nfail, r.fail[i].what, r.fail[i].n);
    for (int i = 0; i < r.nlperr && i < MAX_REASONS; i++)
        note_reason_n(g_lperr, &g_nlperr, r.lperr[i].what, r.lperr[i].n);
    for (uint64_t i = 0; i < r.nhist; i++) {
        hpair_t hp;
        memcpy(&hp, msg + sizeof r + i * sizeof hp, sizeof hp);
        if (hp.b > HIST_BUCKETS)
            kids_fail("a receive process sent a malformed histogram");
        g_hist[hp.b] += hp.n;
    }
}

static void close_all_conns(void)
{
    for (long i = 0; i < g_nsubs; i++)
        if (g_conns[i].fd >= 0)
            conn_close_fd(&g_conns[i]);
    g_waitlist = NULL;             /* no long poll asks again */
}

static int all_drained(double drain_end)
{
    double last_check = 0;
    while (!g_stop && mono() < drain_end) {
        double t = mono();
        if (t - last_check >= 0.02) {
            last_check = t;
            if (all_received())
                return 1;
        }
        loop_once(10);
    }
    return 0;
}

/* A child after its connect phase: report, wait for the publisher, drain as
 * the parent does, send the results, exit. */
static void child_rest(double connect_s, int timed_out) __attribute__((noreturn));
static void child_rest(double connect_s, int timed_out)
{
    est_msg_t e = { g_established, g_failed, g_ws_acked, connect_s, timed_out };
    if (ctl_send(g_ctl, M_EST, &e, sizeof e, NULL, 0) < 0)
        _exit(1);
    while (!g_c_done)
        loop_once(20);
    double t_pub1 = 0, cpu_pub1 = 0;
    if (g_c_published) {
        all_drained(g_c_t_done + o.drain);
        t_pub1 = mono();
        cpu_pub1 = thread_cpu();
    }
    close_all_conns();
    res_msg_t r;
    local_results(&r);
    r.busy_pct = g_c_pub && t_pub1 > g_c_t_pub0
                 ? 100.0 * (cpu_pub1 - g_c_cpu_pub0) / (t_pub1 - g_c_t_pub0) : 0;
    buf_t hist = { 0 };
    for (uint32_t b = 0; b <= HIST_BUCKETS; b++)
        if (g_hist[b]) {
            hpair_t hp = { b, g_hist[b] };
            buf_append(&hist, &hp, sizeof hp);
            r.nhist++;
        }
    if (ctl_send(g_ctl, M_RES, &r, sizeof r, hist.p, hist.len) < 0)
        _exit(1);
    _exit(0);
}

static void raise_nofile(long subs, long extra)
{
    struct rlimit rl;
    long need = subs + extra + FD_SLACK;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        if (rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            setrlimit(RLIMIT_NOFILE, &rl);
            getrlimit(RLIMIT_NOFILE, &rl);
        }
        if (rl.rlim_cur != RLIM_INFINITY && (rlim_t)need > rl.rlim_cur)
            die_setup("%ld subscribers%s need about %ld open files, but this process may open only %lu "
                      "(RLIMIT_NOFILE hard limit %lu); use fewer subscribers (at most %ld%s) or "
                      "raise the limit", subs, o.procs > 1 ? " per process" : "", need,
                      (unsigned long)rl.rlim_cur, (unsigned long)rl.rlim_max,
                      (long)rl.rlim_cur - (need - subs), o.procs > 1 ? " per process" : "");
    }
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv);
    g_start_us = now_us();
    double t_start = mono();

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    /* receive processes: never more than subscribers */
    if (o.procs > 1 && o.procs > o.subscribers)
        o.procs = o.subscribers > 1 ? o.subscribers : 1;
    g_nprocs = (int)o.procs;
    long pub_fds = o.publish && !o.pub_zmq ? o.pub_conns : 0;

    /* file descriptors: the parent has the largest share (and the publisher) */
    raise_nofile((o.subscribers + g_nprocs - 1) / g_nprocs, pub_fds + (g_nprocs - 1));

    /* channels and URLs */
    g_chan = xcalloc((size_t)o.channels, sizeof *g_chan);
    for (long i = 0; i < o.channels; i++) {
        char name[64];
        snprintf(name, sizeof name, "%06ld", i);
        g_chan[i] = xmalloc(strlen(o.prefix) + strlen(name) + 1);
        sprintf(g_chan[i], "%s%s", o.prefix, name);
    }
    if (o.sub_url && o.subscribers > 0) {
        parse_url(o.sub_url, &g_sub_url, 1, "--sub-url");
        g_sub_path = xcalloc((size_t)o.channels, sizeof *g_sub_path);
        g_sse_req = xcalloc((size_t)o.channels, sizeof *g_sse_req);
        for (long i = 0; i < o.channels; i++) {
            g_sub_path[i] = subst(g_sub_url.path, "{ch}", g_chan[i], NULL, NULL);
            if (o.transport == T_SSE) {
                buf_t b = { 0 };
                buf_printf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                           "Cache-Control: no-cache\r\n", g_sub_path[i], g_sub_url.hostport);
                buf_append(&b, o.extra_headers.p, o.extra_headers.len);
                buf_append(&b, "\r\n", 3);
                g_sse_req[i] = b.p;
            }
        }
    }
    if (o.publish && !o.pub_zmq)
        parse_url(o.pub_target, &g_pub_url, 0, "--publish http:");

    /* --procs: fork now, before any thread, subscriber socket or ZeroMQ context */
    if (g_nprocs > 1)
        spawn_procs();
    g_nsubs = o.subscribers > g_proc ? (o.subscribers - g_proc + g_nprocs - 1) / g_nprocs : 0;
    if (g_proc)
        raise_nofile(g_nsubs, 0);  /* inherited from the parent already: a no-op */

    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != sizeof seed)
        seed = (uint64_t)now_us() ^ ((uint64_t)getpid() << 32);
    g_rng = seed | 1;

    g_pub_count = xcalloc((size_t)o.channels, sizeof *g_pub_count);
    g_pub_seq = xcalloc((size_t)o.channels, sizeof *g_pub_seq);
    g_hist = xcalloc(HIST_BUCKETS + 1, sizeof *g_hist);
    g_scratch = xmalloc(SCRATCH_SIZE);

    /* the ZeroMQ socket connects now, so that it is up when publishing starts */
    if (!g_proc && o.publish && o.pub_zmq && o.messages > 0) {
        g_zctx = zmq_ctx_new();
        g_zsock = g_zctx ? zmq_socket(g_zctx, ZMQ_PUSH) : NULL;
        if (!g_zsock)
            die_setup("zmq: %s", zmq_strerror(zmq_errno()));
        int hwm = 100000, linger = 30000, sndtimeo = 10000;
        zmq_setsockopt(g_zsock, ZMQ_SNDHWM, &hwm, sizeof hwm);
        zmq_setsockopt(g_zsock, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(g_zsock, ZMQ_SNDTIMEO, &sndtimeo, sizeof sndtimeo);
        if (zmq_connect(g_zsock, o.pub_target) != 0)
            die_setup("--publish zmq:%s: %s", o.pub_target, zmq_strerror(zmq_errno()));
    }

    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0)
        die_setup("epoll_create1: %s", strerror(errno));
    if (g_proc) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &g_ctl_tag[0] };
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_ctl, &ev) < 0)
            die_setup("epoll_ctl: %s", strerror(errno));
    }
    for (int k = 1; !g_proc && k < g_nprocs; k++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &g_ctl_tag[k] };
        if (epoll_ctl(g_ep, EPOLL_CTL_ADD, g_kid[k].fd, &ev) < 0)
            die_setup("epoll_ctl: %s", strerror(errno));
    }
    g_conns = xcalloc((size_t)(g_nsubs ? g_nsubs : 1), sizeof *g_conns);
    for (long j = 0; j < g_nsubs; j++) {
        long i = g_proc + j * g_nprocs;        /* the subscriber's number */
        g_conns[j].fd = -1;
        g_conns[j].idx = (uint32_t)i;
        g_conns[j].ch = (int)(i % o.channels);
    }

    /* ---- connect phase (each process its own share, at its share of the rate) ---- */
    double c0 = mono(), last_progress = c0;
    int timed_out = 0;
    long max_inflight = MAX_INFLIGHT_CONNECTS / g_nprocs;
    while (g_resolved < g_nsubs && !g_stop) {
        double t = mono();
        if (t - c0 > o.connect_timeout) {
            timed_out = 1;
            break;
        }
        long allowed = g_nsubs;
        if (o.connect_rate > 0) {
            double a = (t - c0) * o.connect_rate / g_nprocs + 1;
            if (a < (double)allowed)
                allowed = (long)a;
        }
        while (g_started < allowed && g_started - g_resolved < max_inflight) {
            conn_t *c = &g_conns[g_started++];
            conn_begin(c);
        }
        loop_once(o.connect_rate > 0 ? 2 : 20);
        if (t - last_progress >= 2) {
            if (g_nprocs > 1)
                fprintf(stderr, "pushbench[%d]: connecting: %ld established, %ld failed of %ld\n",
                        g_proc, g_established, g_failed, g_nsubs);
            else
                fprintf(stderr, "pushbench: connecting: %ld established, %ld failed of %ld\n",
                        g_established, g_failed, o.subscribers);
            last_progress = t;
        }
    }
    double connect_end = mono();
    /* mod_push in JSON mode acknowledges the subscription ({"type":"subscribed"})
     * a moment after the 101: wait for every acknowledgement, or up to 1 s for
     * the first one (a server that sends none: Nchan, Pushpin, raw mode) */
    if (o.transport == T_WS && g_established > 0) {
        double t0 = mono();
        while (!g_stop) {
            long open = 0;
            for (long i = 0; i < g_started; i++)
                open += g_conns[i].established && g_conns[i].fd >= 0 && !g_conns[i].ws_acked;
            double t = mono();
            if (!open || (!g_ws_acked && t - t0 > 1.0) || t - t0 > o.connect_timeout)
                break;
            loop_once(5);
        }
        if (g_ws_acked && g_last_ack > connect_end)
            connect_end = g_last_ack;
    }
    double connect_s = connect_end - c0;
    if (g_resolved < g_nsubs) {
        for (long i = 0; i < g_nsubs; i++) {
            conn_t *c = &g_conns[i];
            if (c->established || c->state == S_FAILED)
                continue;
            conn_fail(c, c->state == S_NEW ? "not started (connect phase ended)"
                                           : "connect phase timed out");
        }
    }
    if (g_proc)
        child_rest(connect_s, timed_out);

    /* the parent: publishing starts when every process is connected */
    long est_total = g_established, failed_total = g_failed, acked_total = g_ws_acked;
    if (g_nprocs > 1) {
        double give_up = mono() + o.connect_timeout + 60;
        for (;;) {
            int all = 1;
            for (int k = 1; k < g_nprocs; k++)
                all &= g_kid[k].got_est;
            if (all)
                break;
            if (mono() > give_up)
                kids_fail("a receive process did not finish its connect phase");
            if (g_signals >= 2)
                kids_fail("interrupted");
            loop_once(20);
        }
        for (int k = 1; k < g_nprocs; k++) {
            est_msg_t *e = &g_kid[k].est;
            est_total += e->established;
            failed_total += e->failed;
            acked_total += e->ws_acked;
            if (e->connect_s > connect_s)
                connect_s = e->connect_s;
            timed_out |= e->timed_out;
        }
    }
    fprintf(stderr, "pushbench: connect phase: %ld established, %ld failed in %.3f s%s",
            est_total, failed_total, connect_s, timed_out ? " (timed out)" : "");
    if (o.transport == T_WS && acked_total)
        fprintf(stderr, "; %ld subscriptions acknowledged (mod_push JSON mode)", acked_total);
    if (g_nprocs > 1)
        fprintf(stderr, " (%d receive processes)", g_nprocs);
    fprintf(stderr, "\n");
    if (o.hold_given && o.messages == 0) {
        printf("ESTABLISHED %ld\n", est_total);
        fflush(stdout);
    }

    /* ---- hold ---- */
    double hold_end = mono() + o.hold;
    while (!g_stop && mono() < hold_end) {
        double left = hold_end - mono();
        loop_once(left > 0.05 ? 50 : (int)(left * 1000) + 1);
    }

    /* ---- publish and drain ---- */
    pthread_t th;
    int have_thread = 0;
    double t_pub0 = 0, t_pub1 = 0, cpu_pub0 = 0, cpu_pub1 = 0, drain_end = 0;
    done_msg_t dm = { 0, 0 };
    if (o.messages > 0 && !g_stop) {
        for (int k = 1; k < g_nprocs; k++)
            if (ctl_send(g_kid[k].fd, M_PUB, NULL, 0, NULL, 0) < 0)
                parent_ctl_event(k);       /* gone: tells why and fails */
        if (pthread_create(&th, NULL, pub_thread, NULL) != 0)
            die_setup("pthread_create failed");
        have_thread = 1;
        t_pub0 = mono();
        cpu_pub0 = thread_cpu();
        while (!atomic_load(&g_pub_done))
            loop_once(20);
        dm.published = 1;
        dm.t_done = mono();
        drain_end = dm.t_done + o.drain;
    }
    if (g_nprocs > 1) {
        /* the children drain by the same rule (or finish without a publish phase) */
        uint64_t *counts = NULL;
        size_t nc = dm.published ? (size_t)o.channels : 0;
        if (nc) {
            counts = xcalloc(nc, sizeof *counts);
            for (size_t c = 0; c < nc; c++)
                counts[c] = atomic_load(&g_pub_count[c]);
        }
        for (int k = 1; k < g_nprocs; k++)
            if (ctl_send(g_kid[k].fd, M_DONE, &dm, sizeof dm, counts, nc * sizeof *counts) < 0)
                parent_ctl_event(k);
        free(counts);
    }
    if (dm.published) {
        all_drained(drain_end);
        t_pub1 = mono();
        cpu_pub1 = thread_cpu();
        pthread_join(th, NULL);
    }
    (void)have_thread;
    double t_end = mono();

    /* ---- close everything ---- */
    close_all_conns();
    if (g_zsock) {
        zmq_close(g_zsock);
        zmq_ctx_term(g_zctx);
    }

    /* ---- results ---- */
    res_msg_t tot;
    local_results(&tot);
    /* CPU use of the receive loop while publishing and draining: near
     * 100 % would make pushbench the bottleneck (--procs: the busiest one) */
    tot.busy_pct = t_pub1 > t_pub0 ? 100.0 * (cpu_pub1 - cpu_pub0) / (t_pub1 - t_pub0) : 0;
    if (g_nprocs > 1) {
        double give_up = (drain_end > mono() ? drain_end : mono()) + 30;
        for (;;) {
            int all = 1;
            for (int k = 1; k < g_nprocs; k++)
                all &= g_kid[k].got_res;
            if (all)
                break;
            if (mono() > give_up)
                kids_fail("a receive process did not report its results in time");
            if (g_signals >= 2)
                kids_fail("interrupted");
            loop_once(20);
        }
        for (int k = 1; k < g_nprocs; k++) {
            pid_t pid = g_kid[k].pid;
            char why[128];
            int st = reap_kid(k, 10);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
                kids_fail("receive process %d of %d (pid %d) %s after reporting", k, g_nprocs,
                          (int)pid, st == -1 ? "could not be reaped" : status_text(st, why, sizeof why));
            close(g_kid[k].fd);
            merge_results(&tot, g_kid[k].res.p, g_kid[k].res.len);
            buf_free(&g_kid[k].res);
        }
        t_end = mono();            /* the last process has finished */
    }

    uint64_t expected = tot.expected, lost = tot.lost, delivered = tot.delivered;
    long lost_conns = tot.lost_conns, dup_conns = tot.dup_conns, reorder_conns = tot.reorder_conns;
    double busy_pct = tot.busy_pct;
    double publish_s = g_pub_first_us && g_pub_end_us > g_pub_first_us
                       ? (double)(g_pub_end_us - g_pub_first_us) / 1e6 : 0;
    double window_s = g_pub_first_us && g_last_delivery_us > g_pub_first_us
                      ? (double)(g_last_delivery_us - g_pub_first_us) / 1e6 : 0;
    double dps = window_s > 0 ? (double)delivered / window_s : 0;
    double prate = publish_s > 0 ? (double)g_pub_total / publish_s : 0;
    double p50 = pct(0.50), p90 = pct(0.90), p99 = pct(0.99), pmax = (double)g_lat_max_us / 1000.0;
    double mean = g_lat_n ? g_lat_sum_us / (double)g_lat_n / 1000.0 : 0;
    double duration_s = t_end - t_start;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu_s = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                   (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
    if (g_nprocs > 1 && getrusage(RUSAGE_CHILDREN, &ru) == 0)   /* the reaped receive processes */
        cpu_s += (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;

    printf("pushbench %s: %ld subscribers on %ld channels (%s)%s%s\n",
           transport_names[o.transport], o.subscribers, o.channels, o.sub_url ? o.sub_url : "-",
           *o.label ? ", label " : "", o.label);
    printf("  connect:   %ld established, %ld failed in %.3f s%s", g_established, g_failed, connect_s,
           timed_out ? " (timed out)" : "");
    print_reasons(g_fail, g_nfail);
    printf("\n");
    if (o.messages > 0) {
        printf("  publish:   %" PRIu64 " of %" PRIu64 " messages via %s in %.3f s = %.0f msg/s, %" PRIu64 " errors%s%s\n",
               g_pub_total, o.messages, o.publish, publish_s, prate, g_pub_errors,
               g_pub_errors && g_pub_errmsg[0] ? " - last: " : "", g_pub_errors ? g_pub_errmsg : "");
        printf("  delivery:  %" PRIu64 " of %" PRIu64 " expected in %.3f s (first publish to last delivery) = %.0f deliveries/s\n",
               delivered, expected, window_s, dps);
        printf("  latency:   p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms, mean %.2f ms (%" PRIu64 " samples)\n",
               p50, p90, p99, pmax, mean, g_lat_n);
        printf("  problems:  lost %" PRIu64 " (%ld conns), duplicated %" PRIu64 " (%ld conns), reordered %" PRIu64 " (%ld conns)\n",
               lost, lost_conns, g_dups, dup_conns, g_reorders, reorder_conns);
    }
    printf("  closed by server: %ld", g_closed_by_server);
    if (o.transport == T_LP) {
        printf(", long-poll errors: %ld", g_lp_errors);
        print_reasons(g_lperr, g_nlperr);
    }
    if (g_proto_errors)
        printf(", protocol errors: %ld", g_proto_errors);
    printf("; run %.3f s\n", duration_s);
    if (o.messages > 0 && g_nprocs > 1)
        printf("  client:    %.2f s CPU (all %d processes), busiest of the %d receive loops %.0f %% of a core "
               "while publishing and draining%s\n", cpu_s, g_nprocs, g_nprocs, busy_pct,
               busy_pct > 90 ? " - pushbench may be the bottleneck" : "");
    else if (o.messages > 0)
        printf("  client:    %.2f s CPU (both threads), receive loop %.0f %% of a core while publishing and draining%s\n",
           cpu_s, busy_pct, busy_pct > 90 ? " - pushbench may be the bottleneck" : "");

    printf("RESULT {\"label\":");
    json_str(stdout, o.label);
    printf(",\"transport\":\"%s\",\"subscribers\":%ld,\"established\":%ld,\"failed\":%ld,"
           "\"channels\":%ld,\"messages\":%" PRIu64 ",\"published\":%" PRIu64 ",\"pub_errors\":%" PRIu64 ","
           "\"expected\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"received\":%" PRIu64 ","
           "\"deliveries_per_s\":%.1f,\"publish_rate\":%.1f,"
           "\"lat_p50_ms\":%.3f,\"lat_p90_ms\":%.3f,\"lat_p99_ms\":%.3f,\"lat_max_ms\":%.3f,\"lat_mean_ms\":%.3f,"
           "\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64 ",\"reordered\":%" PRIu64 ","
           "\"lost_conns\":%ld,\"duplicated_conns\":%ld,\"reordered_conns\":%ld,"
           "\"closed_by_server\":%ld,\"lp_errors\":%ld,\"protocol_errors\":%ld,"
           "\"connect_s\":%.3f,\"publish_s\":%.3f,\"window_s\":%.3f,\"duration_s\":%.3f,"
           "\"payload_size\":%ld,\"rate\":%.1f,\"connect_timed_out\":%s,"
           "\"client_cpu_s\":%.2f,\"client_busy_pct\":%.1f,\"pub_ordered\":%s,"
           "\"lat_samples\":%" PRIu64 ",\"procs\":%d}\n",
           transport_names[o.transport], o.subscribers, g_established, g_failed, o.channels,
           o.messages, g_pub_total, g_pub_errors, expected, delivered, g_received, dps, prate,
           p50, p90, p99, pmax, mean, lost, g_dups, g_reorders, lost_conns, dup_conns, reorder_conns,
           g_closed_by_server, g_lp_errors, g_proto_errors, connect_s, publish_s, window_s, duration_s,
           o.payload_size, o.rate, timed_out ? "true" : "false", cpu_s, busy_pct,
           o.pub_unordered && !o.pub_zmq ? "false" : "true", g_lat_n, g_nprocs);
    fflush(stdout);
    if (g_pub_fatal) {
        fprintf(stderr, "pushbench: publishing failed: %s\n", g_pub_errmsg);
        return 1;
    }
    if (o.subscribers > 0 && !g_established) {
        fprintf(stderr, "pushbench: no subscriber connection was established\n");
        return 1;
    }
    return 0;
}
