/*
 * main.c — pushbrokerd: configuration, process setup and the event loop.
 *
 * Everything with state lives in the other files (compiled into a library
 * that unit tests link); this file only wires them together.  Exit status:
 * 0 after a clean stop, 1 when the broker could not start (bind, pid file,
 * log file), 2 for bad configuration or usage.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#include "api.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "daemon.h"
#include "guard.h"
#include "links.h"
#include "log.h"
#include "store.h"

#define TICK_US     (100 * 1000ull)
#define BATCH       256     /* messages per socket per wakeup, for fairness */
#define COMPACT_POLL_MS 5   /* wakeups while a compaction child runs */
#define GUARD_ITEMS (1 + GUARD_MAX_WATCH)

static volatile sig_atomic_t s_stop;
static volatile sig_atomic_t s_reopen;

static void s_on_stop(int sig)
{
    (void)sig;
    s_stop = 1;
}

static void s_on_hup(int sig)
{
    (void)sig;
    s_reopen = 1;
}

static void s_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    /* no SA_RESTART: zmq_poll must return EINTR so the loop sees the flag */
    sa.sa_handler = s_on_stop;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sa.sa_handler = s_on_hup;
    sigaction(SIGHUP, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
    /* a file size limit makes journal writes fail (EFBIG, handled) instead
     * of killing the broker */
    sigaction(SIGXFSZ, &sa, NULL);
}

/* SIGHUP: the log file (logrotate) and the CURVE allow-list. */
static void s_maybe_reopen_log(guard *g)
{
    if (!s_reopen)
        return;
    s_reopen = 0;
    if (log_reopen() < 0)
        log_error("cannot reopen log file: %s", strerror(errno));
    else
        log_info("log file reopened");
    guard_reload(g);
}

static void s_tick(broker *b, links *l, uint64_t *next_tick)
{
    uint64_t now = clock_mono_us();
    if (now < *next_tick)
        return;
    broker_tick(b, clock_real_us());
    links_tick(l, now);
    *next_tick = now + TICK_US;
}

static int s_loop(api *a, links *l, broker *b, guard *g)
{
    zmq_pollitem_t items[3 + GUARD_ITEMS] = {
        { a->router, 0, ZMQ_POLLIN, 0 },
        { a->pull, 0, ZMQ_POLLIN, 0 },
        { l->socket, 0, ZMQ_POLLIN, 0 },
    };
    int nguard = guard_pollitems(g, items + 3, GUARD_ITEMS);
    uint64_t next_tick = clock_mono_us() + TICK_US;
    while (!s_stop) {
        s_maybe_reopen_log(g);
        uint64_t now = clock_mono_us();
        long timeout = next_tick > now ? (long)((next_tick - now + 999) / 1000) : 0;
        if (broker_compacting(b) && timeout > COMPACT_POLL_MS)
            timeout = COMPACT_POLL_MS;
        if (zmq_poll(items, 3 + nguard, timeout) < 0) {
            if (errno == EINTR)
                continue;
            log_error("poll failed: %s", zmq_strerror(errno));
            return 1;
        }
        if (items[0].revents & ZMQ_POLLIN)
            api_handle_router(a, BATCH);
        if (items[1].revents & ZMQ_POLLIN)
            api_handle_pull(a, BATCH);
        if (items[2].revents & ZMQ_POLLIN)
            links_handle(l, BATCH);
        guard_handle(g, items + 3, nguard, clock_mono_us());
        /* group commit: one write (and fdatasync) for the round, then the
         * held-back acknowledgements and fan-out */
        broker_commit(b);
        s_tick(b, l, &next_tick);
        if (broker_fatal(b)) {
            log_error("stopping: the message store can no longer guarantee durability");
            return 1;
        }
    }
    return 0;
}

static void s_log_start(const broker_config *cfg, const broker *b)
{
    log_info("starting %s: api %s, push %s, link %s, history_max %llu, "
             "history_age %llus, max_message_size %llu, data_dir %s, fsync %s, epoch %llu",
             PUSHBROKERD_VERSION, cfg->api, cfg->push, cfg->link,
             (unsigned long long)cfg->history_max, (unsigned long long)cfg->history_age,
             (unsigned long long)cfg->max_message_size,
             cfg->data_dir ? cfg->data_dir : "(none: memory only)",
             cfg->data_dir ? store_fsync_name(cfg->fsync) : "-",
             (unsigned long long)b->epoch);
}

/* The handshakes of the CURVE endpoints are watched for refusals to log. */
static int s_watch(guard *g, void *ctx, const api *a, const links *l, const broker_config *cfg)
{
    return guard_watch(g, ctx, l->socket, "link", cfg->link) < 0
        || guard_watch(g, ctx, a->router, "api", cfg->api) < 0
        || guard_watch(g, ctx, a->pull, "push", cfg->push) < 0 ? -1 : 0;
}

/* Everything between "ZeroMQ context exists" and "it is gone".  The guard
 * comes first: a CURVE endpoint must never see a handshake without it. */
static int s_serve(void *ctx, const broker_config *cfg, broker *b)
{
    guard *g = guard_open(ctx, cfg);
    links *l = g ? links_open(ctx, cfg->link, b) : NULL;
    api *a = l ? api_open(ctx, cfg->api, cfg->push, b) : NULL;
    int rc = 1;
    b->links = l;
    if (a && s_watch(g, ctx, a, l, cfg) < 0)
        ;   /* logged */
    else if (a && cfg->pid_file && pidfile_write(cfg->pid_file) < 0)
        log_error("cannot write pid file %s: %s", cfg->pid_file, strerror(errno));
    else if (a) {
        s_log_start(cfg, b);
        daemon_ready(0);
        rc = s_loop(a, l, b, g);
        /* what the last round appended goes out before the sockets close */
        broker_commit(b);
        log_info("stopping");
        if (cfg->pid_file)
            pidfile_remove(cfg->pid_file);
    }
    api_close(a);
    links_close(l);
    guard_close(g);
    b->links = NULL;
    return rc;
}

static int s_run(const broker_config *cfg)
{
    broker b;
    if (broker_init(&b, cfg, clock_real_us(), clock_mono_us()) < 0) {
        log_error("out of memory");
        return 1;
    }
    /* recovery comes before binding: no client sees a half-loaded broker */
    if (broker_open_store(&b, clock_real_us()) < 0) {
        broker_free(&b);
        return 1;
    }
    void *ctx = zmq_ctx_new();
    int rc = 1;
    if (!ctx)
        log_error("cannot create ZeroMQ context: %s", zmq_strerror(errno));
    else
        rc = s_serve(ctx, cfg, &b);
    if (ctx)
        zmq_ctx_term(ctx);
    if (broker_close_store(&b) < 0 && rc == 0)
        rc = 1;
    broker_free(&b);
    return rc;
}

int main(int argc, char **argv)
{
    broker_config cfg;
    int rc = config_parse_args(&cfg, argc, argv);
    if (rc != CONFIG_RUN) {
        config_free(&cfg);
        return rc == CONFIG_DONE ? 0 : 2;
    }
    log_set_level(cfg.log_level);
    if (cfg.log_file && log_open(cfg.log_file) < 0) {
        fprintf(stderr, "pushbrokerd: cannot open log file %s: %s\n", cfg.log_file,
                strerror(errno));
        config_free(&cfg);
        return 1;
    }
    int log_to_file = cfg.log_file && strcmp(cfg.log_file, "syslog") != 0;
    if (cfg.daemonize && daemon_start(log_to_file ? log_fd() : -1) < 0) {
        log_error("cannot detach: %s", strerror(errno));
        rc = 1;
    } else {
        s_signals();
        rc = s_run(&cfg);
    }
    daemon_ready(rc);
    log_close();
    config_free(&cfg);
    return rc;
}
