/*
 * guard.h — who may talk to the broker's CURVE endpoints, and the log of
 * those who were refused.
 *
 * With curve_secret_key_file, the tcp:// endpoints are CURVE servers
 * (endpoint.c) and the guard answers their ZAP requests (ZeroMQ RFC 27) on
 * inproc://zeromq.zap.01, in the main loop:
 *  - without curve_authorized_keys, every client that completes the CURVE
 *    handshake (it knows the server's public key) is accepted;
 *  - with it, only clients whose public key is listed; the file is read
 *    again on SIGHUP (guard_reload), and a file that has become bad leaves
 *    the old list in force.
 * Clients refused before ZAP is asked (no CURVE at all, another server key)
 * are seen through socket monitors (guard_watch).
 *
 * Refusals are logged at warn level, once per peer and reason (address and
 * key for ZAP, endpoint and reason for the monitors) per GUARD_RELOG_US: a
 * refused client retries every 100 ms or so, and must not flood the log.
 * The next line after a quiet period says how many refusals it left out.
 */
#ifndef PUSHBROKERD_GUARD_H
#define PUSHBROKERD_GUARD_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "config.h"

#define GUARD_ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define GUARD_SEEN_MAX     64
#define GUARD_SEEN_KEY     160
#define GUARD_RELOG_US     (600ull * 1000000)   /* 10 minutes */
#define GUARD_MAX_WATCH    3                    /* api, push, link */

/* ---- the refusal log's memory (pure: unit-tested) ------------------------- */

typedef struct guard_seen_entry {
    char     key[GUARD_SEEN_KEY];   /* "" : free */
    uint64_t logged_us;             /* when it was last logged */
    uint64_t suppressed;            /* refusals not logged since */
} guard_seen_entry;

typedef struct guard_seen {
    guard_seen_entry e[GUARD_SEEN_MAX];
} guard_seen;

/* A refusal named key happened at now_us: returns -1 when it must not be
 * logged (the same key was logged less than GUARD_RELOG_US ago), otherwise
 * how many refusals of key went unlogged since its last line (0 the first
 * time).  When the table is full, the entry logged longest ago is reused. */
int64_t guard_seen_note(guard_seen *t, const char *key, uint64_t now_us);

/* ---- the guard ------------------------------------------------------------------ */

typedef struct guard guard;

/* Bind the ZAP handler (before any CURVE endpoint is bound: a handshake
 * that finds no handler would be let through) and load the allow-list.
 * Without CURVE, returns an idle guard.  NULL on failure (logged). */
guard *guard_open(void *zctx, const broker_config *cfg);
void   guard_close(guard *g);

/* Watch the handshakes of a bound socket (does nothing unless the endpoint
 * is a CURVE one).  Returns 0, or -1 (logged). */
int    guard_watch(guard *g, void *zctx, void *sock, const char *name, const char *endpoint);

/* The guard's sockets for zmq_poll: fills at most max items, returns how
 * many.  guard_handle() then serves those that are readable. */
int    guard_pollitems(guard *g, zmq_pollitem_t *items, int max);
void   guard_handle(guard *g, const zmq_pollitem_t *items, int n, uint64_t now_us);

/* Read curve_authorized_keys again (SIGHUP). */
void   guard_reload(guard *g);

/* Whether key is allowed in (the ZAP decision). */
int    guard_allows(const guard *g, const push_curve_key key);

#endif
