/*
 * guard.c — see guard.h.
 */
#include "guard.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "log.h"
#include "push_proto.h"

#define GUARD_BATCH 64      /* requests or events per wakeup */

typedef struct watch {
    void       *pair;       /* receives the monitor events of one endpoint */
    const char *name;
    const char *endpoint;
} watch;

struct guard {
    const broker_config *cfg;
    void           *zap;        /* REP; NULL when CURVE is off */
    watch           watch[GUARD_MAX_WATCH];
    int             nwatch;
    push_curve_key *keys;       /* sorted allow-list */
    size_t          nkeys;
    guard_seen      seen;
};

/* ---- the refusal log's memory --------------------------------------------- */

/* The entry of key; else a free one, else the one logged longest ago. */
static guard_seen_entry *s_seen_slot(guard_seen *t, const char *key)
{
    guard_seen_entry *victim = NULL;
    for (int i = 0; i < GUARD_SEEN_MAX; i++) {
        guard_seen_entry *e = &t->e[i];
        if (strcmp(e->key, key) == 0)
            return e;
        int better = !victim || (victim->key[0] && (!e->key[0]
                                                    || e->logged_us < victim->logged_us));
        if (better)
            victim = e;
    }
    memset(victim, 0, sizeof *victim);
    snprintf(victim->key, sizeof victim->key, "%s", key);
    return victim;
}

int64_t guard_seen_note(guard_seen *t, const char *key, uint64_t now_us)
{
    guard_seen_entry *e = s_seen_slot(t, key);
    if (e->logged_us && now_us - e->logged_us < GUARD_RELOG_US) {
        e->suppressed++;
        return -1;
    }
    int64_t left_out = (int64_t)e->suppressed;
    e->logged_us = now_us ? now_us : 1;
    e->suppressed = 0;
    return left_out;
}

/* " (N more since the last report)" or "". */
static const char *s_left_out(int64_t n, char *buf, size_t size)
{
    if (n <= 0)
        return "";
    snprintf(buf, size, " (and %lld more times since the last report)", (long long)n);
    return buf;
}

/* ---- the allow-list ---------------------------------------------------------- */

typedef struct keylist {
    push_curve_key *keys;
    size_t          n, cap;
} keylist;

static int s_add_key(const push_curve_key key, void *arg)
{
    keylist *l = arg;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        push_curve_key *more = realloc(l->keys, cap * sizeof *more);
        if (!more)
            return 1;
        l->keys = more;
        l->cap = cap;
    }
    memcpy(l->keys[l->n++], key, sizeof(push_curve_key));
    return 0;
}

static int s_cmp_key(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* Load the allow-list into g, or keep the old one and return -1 (logged). */
static int s_load_keys(guard *g)
{
    char err[700];
    keylist l = { NULL, 0, 0 };
    if (push_curve_read_keys(g->cfg->curve_authorized_keys, s_add_key, &l, NULL, err,
                             sizeof err) < 0) {
        log_error("curve_authorized_keys: %s%s", err,
                  strstr(err, ": stopped") ? " (out of memory)" : "");
        free(l.keys);
        return -1;
    }
    if (l.n)
        qsort(l.keys, l.n, sizeof *l.keys, s_cmp_key);
    free(g->keys);
    g->keys = l.keys;
    g->nkeys = l.n;
    return 0;
}

int guard_allows(const guard *g, const push_curve_key key)
{
    if (!g->cfg->curve_authorized_keys)
        return 1;
    return g->nkeys && bsearch(key, g->keys, g->nkeys, sizeof *g->keys, s_cmp_key) != NULL;
}

void guard_reload(guard *g)
{
    if (!g || !g->zap || !g->cfg->curve_authorized_keys)
        return;
    if (s_load_keys(g) == 0)
        log_info("curve_authorized_keys %s read again: %zu client keys",
                 g->cfg->curve_authorized_keys, g->nkeys);
    else
        log_error("curve_authorized_keys: keeping the %zu client keys read before", g->nkeys);
}

/* ---- open and close ------------------------------------------------------------ */

static void s_log_curve(const guard *g)
{
    const broker_config *c = g->cfg;
    if (c->curve_authorized_keys)
        log_info("CURVE on the tcp:// endpoints: server public key %s; %zu client keys "
                 "from %s", c->curve_public, g->nkeys, c->curve_authorized_keys);
    else
        log_info("CURVE on the tcp:// endpoints: server public key %s; any client that "
                 "has this key is accepted (no curve_authorized_keys)", c->curve_public);
    if (c->curve_authorized_keys && !g->nkeys)
        log_warn("curve_authorized_keys %s lists no key: every CURVE client is refused",
                 c->curve_authorized_keys);
    if (c->curve_secret_world_readable)
        log_warn("curve_secret_key_file %s is readable by every user: anyone who reads it "
                 "can pose as this broker (chmod 600)", c->curve_secret_key_file);
    if (!endpoint_is_curve(c->api, c) && !endpoint_is_curve(c->push, c)
        && !endpoint_is_curve(c->link, c))
        log_warn("curve_secret_key_file is set but no endpoint is tcp://: CURVE is not used");
}

guard *guard_open(void *zctx, const broker_config *cfg)
{
    guard *g = calloc(1, sizeof *g);
    if (!g) {
        log_error("out of memory");
        return NULL;
    }
    g->cfg = cfg;
    if (!cfg->curve_secret[0])
        return g;
    int zero = 0;
    g->zap = zmq_socket(zctx, ZMQ_REP);
    if (!g->zap || zmq_setsockopt(g->zap, ZMQ_LINGER, &zero, sizeof zero) < 0
        || zmq_bind(g->zap, GUARD_ZAP_ENDPOINT) < 0) {
        log_error("cannot start the CURVE authenticator (%s): %s", GUARD_ZAP_ENDPOINT,
                  zmq_strerror(errno));
        guard_close(g);
        return NULL;
    }
    if (cfg->curve_authorized_keys && s_load_keys(g) < 0) {
        guard_close(g);
        return NULL;
    }
    s_log_curve(g);
    return g;
}

void guard_close(guard *g)
{
    if (!g)
        return;
    for (int i = 0; i < g->nwatch; i++)
        zmq_close(g->watch[i].pair);
    if (g->zap)
        zmq_close(g->zap);
    free(g->keys);
    free(g);
}

/* ---- ZAP ------------------------------------------------------------------------- */

/* version, request id, status, text, user id, metadata (RFC 27). */
static void s_zap_reply(guard *g, const push_frames *req, const char *status,
                        const char *text, const char *user)
{
    push_frame f[6] = {
        push_str_frame("1.0"), req->count > 1 ? req->frame[1] : push_str_frame(""),
        push_str_frame(status), push_str_frame(text), push_str_frame(user),
        push_str_frame(""),
    };
    if (push_send_frames(g->zap, f, 6, ZMQ_DONTWAIT) < 0)
        log_error("cannot answer a CURVE authentication request: %s", zmq_strerror(errno));
}

static void s_log_denied(guard *g, const push_frames *req, const push_curve_key key,
                         uint64_t now)
{
    char domain[16], address[64], seen[GUARD_SEEN_KEY], more[64];
    log_safe(req->frame[2].data, req->frame[2].size, domain, sizeof domain);
    log_safe(req->frame[3].data, req->frame[3].size, address, sizeof address);
    snprintf(seen, sizeof seen, "zap %s %s %s", domain, address, key);
    int64_t left_out = guard_seen_note(&g->seen, seen, now);
    if (left_out >= 0)
        log_warn("refused a client of the %s endpoint from %s: its CURVE public key %s is "
                 "not in curve_authorized_keys %s%s", domain, address, key,
                 g->cfg->curve_authorized_keys, s_left_out(left_out, more, sizeof more));
}

/* [version, request id, domain, address, identity, mechanism, credentials...] */
static void s_zap_one(guard *g, const push_frames *req, uint64_t now)
{
    push_curve_key key;
    if (req->count < 6 || !push_frame_is(req, 0, "1.0")) {
        s_zap_reply(g, req, "500", "malformed ZAP request", "");
        return;
    }
    /* only CURVE endpoints have a ZAP domain; others (ipc://) are guarded
     * by their socket file's permissions */
    if (!push_frame_is(req, 5, "CURVE")) {
        s_zap_reply(g, req, "200", "OK", "");
        return;
    }
    if (req->count < 7 || req->frame[6].size != PUSH_CURVE_KEY_BYTES) {
        s_zap_reply(g, req, "400", "no CURVE public key", "");
        return;
    }
    push_curve_encode((const unsigned char *)req->frame[6].data, key);
    if (guard_allows(g, key)) {
        log_debug("accepted CURVE client %s on %.*s", key, (int)req->frame[2].size,
                  req->frame[2].data);
        s_zap_reply(g, req, "200", "OK", key);
        return;
    }
    s_log_denied(g, req, key, now);
    s_zap_reply(g, req, "400", "client key not authorized", "");
}

static void s_zap(guard *g, uint64_t now)
{
    push_frames req;
    for (int i = 0; i < GUARD_BATCH && push_frames_recv(g->zap, &req, ZMQ_DONTWAIT) == 0; i++) {
        s_zap_one(g, &req, now);
        push_frames_close(&req);
    }
}

/* ---- handshakes refused before ZAP ------------------------------------------------ */

int guard_watch(guard *g, void *zctx, void *sock, const char *name, const char *endpoint)
{
    if (!g->zap || !endpoint_is_curve(endpoint, g->cfg))
        return 0;
    char addr[64];
    int zero = 0;
    void *pair = NULL;
    snprintf(addr, sizeof addr, "inproc://pushbrokerd.monitor.%s", name);
    if (g->nwatch == GUARD_MAX_WATCH
        || zmq_socket_monitor(sock, addr, ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL
                                          | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) < 0
        || !(pair = zmq_socket(zctx, ZMQ_PAIR))
        || zmq_setsockopt(pair, ZMQ_LINGER, &zero, sizeof zero) < 0
        || zmq_connect(pair, addr) < 0) {
        log_error("cannot watch the handshakes of the %s endpoint: %s", name,
                  zmq_strerror(errno));
        zmq_socket_monitor(sock, NULL, 0);      /* stops it, if it had started */
        if (pair)
            zmq_close(pair);
        return -1;
    }
    g->watch[g->nwatch++] = (watch){ pair, name, endpoint };
    return 0;
}

static const char *s_reason(const guard *g, uint16_t event, uint32_t value, char *buf,
                            size_t size)
{
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
        /* which side noticed the mismatch first is a race: a client
         * without CURVE often just hangs up */
        snprintf(buf, size, "the connection ended during the CURVE handshake (%s; a client "
                 "without CURVE or with another server key ends this way)", strerror((int)value));
        return buf;
    }
    if (value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return "it does not use CURVE (a client without the broker's public key)";
    if (value != ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return "CURVE handshake protocol error";
    snprintf(buf, size, "its CURVE handshake does not decrypt (was it given another server "
             "public key than this broker's, %s?)", g->cfg->curve_public);
    return buf;
}

static void s_log_event(guard *g, const watch *w, uint16_t event, uint32_t value,
                        uint64_t now)
{
    char seen[GUARD_SEEN_KEY], more[64], why[200];
    /* the errno of a hang-up varies from one attempt to the next */
    snprintf(seen, sizeof seen, "mon %s %u %x", w->name, (unsigned)event,
             event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL ? 0u : (unsigned)value);
    int64_t left_out = guard_seen_note(&g->seen, seen, now);
    if (left_out < 0)
        return;
    log_warn("refused a client of the %s endpoint %s: %s [0x%x]%s", w->name, w->endpoint,
             s_reason(g, event, value, why, sizeof why), (unsigned)value,
             s_left_out(left_out, more, sizeof more));
}

/* One monitor event: a 6-byte frame (event, value) then the address. */
static int s_event(guard *g, const watch *w, uint64_t now)
{
    push_frames f;
    if (push_frames_recv(w->pair, &f, ZMQ_DONTWAIT) < 0)
        return -1;
    if (f.count >= 1 && f.frame[0].size == 6) {
        uint16_t event;
        uint32_t value;
        memcpy(&event, f.frame[0].data, sizeof event);
        memcpy(&value, f.frame[0].data + 2, sizeof value);
        s_log_event(g, w, event, value, now);
    }
    push_frames_close(&f);
    return 0;
}

/* ---- the main loop's part ----------------------------------------------------------- */

int guard_pollitems(guard *g, zmq_pollitem_t *items, int max)
{
    int n = 0;
    if (g->zap && n < max)
        items[n++] = (zmq_pollitem_t){ g->zap, 0, ZMQ_POLLIN, 0 };
    for (int i = 0; i < g->nwatch && n < max; i++)
        items[n++] = (zmq_pollitem_t){ g->watch[i].pair, 0, ZMQ_POLLIN, 0 };
    return n;
}

void guard_handle(guard *g, const zmq_pollitem_t *items, int n, uint64_t now_us)
{
    for (int i = 0; i < n; i++) {
        if (!(items[i].revents & ZMQ_POLLIN))
            continue;
        if (items[i].socket == g->zap) {
            s_zap(g, now_us);
            continue;
        }
        for (int k = 0; k < g->nwatch; k++)
            if (items[i].socket == g->watch[k].pair)
                for (int j = 0; j < GUARD_BATCH && s_event(g, &g->watch[k], now_us) == 0; j++)
                    ;
    }
}
