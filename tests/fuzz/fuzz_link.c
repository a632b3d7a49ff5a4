/*
 * fuzz_link.c — the broker side of the link with mod_push children
 * (pushbrokerd/links.c): the decoding and handling of every child message
 * (HELLO, SUB, HIST, PUBLISH, PING, PJOIN, PLEAVE, PRESENCE and garbage),
 * through the real entry point links_handle(), and the layout of every
 * message the broker sends back (WELCOME, PONG, RESET, MSG, PEVENT, HIST,
 * PUBACK, PRESENCE), checked the way mod_push/link.c decodes them.
 *
 * No socket at all: the harness is linked with
 *     -Wl,--wrap=push_frames_recv,--wrap=push_frames_close,
 *     -Wl,--wrap=push_send_frames,--wrap=reply_send,
 *     -Wl,--wrap=clock_mono_us,--wrap=clock_real_us,
 *     -Wl,--wrap=zmq_socket,--wrap=zmq_setsockopt,--wrap=zmq_bind,--wrap=zmq_close
 * so links.c receives the input's messages, everything it sends is
 * captured and checked here, time is the harness's (deterministic), and
 * links_open() / links_close() cost nothing (a real ZeroMQ socket per input
 * made the harness some 25 times slower).
 *
 * Input: a sequence of messages (fuzz_common.h: separated by 0x1e, frames
 * by 0x1f).  Frame 0 is the child's ROUTER identity, frame 1 the command,
 * as links.c sees them.  A message of one frame starting with '~' is not
 * sent: it ends the current links_handle() round and advances the clock by
 * as many seconds as the frame has bytes, then links_tick() runs (so
 * children time out).  A message cut at FUZZ_MAX_FRAMES frames is delivered
 * as push_frames_recv's EPROTO ("too many frames").
 *
 * Checked (see links.h, channel.h, presence.h, push_proto.h):
 *  - bookkeeping: live == slots in use; no identity in two slots; every
 *    channel's subscribers is the sum of its per-child counts, all > 0 and
 *    all for live children;
 *  - every outgoing message goes to a live child (or answers the sender),
 *    has the documented frame count, and the fields a child parses pass the
 *    same checks mod_push/link.c makes (ids and times decimal, channel and
 *    identity valid, event valid, JSON parses); MSG / PEVENT only go to
 *    children subscribed to the channel;
 *  - when every child is forgotten, no subscription and no presence is left.
 */
#include "fuzz_common.h"

#include <errno.h>
#include <zmq.h>
#include <cjson/cJSON.h>

#include "broker.h"
#include "clock.h"
#include "config.h"
#include "links.h"
#include "log.h"
#include "presence.h"
#include "push_proto.h"
#include "reply.h"

#define EPOCH 4242

static char s_fake_socket;           /* what the wrapped zmq_socket() returns */
static uint64_t s_now;               /* the wrapped monotonic clock */
static fuzz_in s_in;                 /* messages not yet received */
static links *s_links;               /* for the send checks */
static const push_frames *s_current; /* the message being handled */

/* ---- wrapped functions --------------------------------------------------- */

uint64_t __wrap_clock_mono_us(void);
uint64_t __wrap_clock_real_us(void);
int __wrap_push_frames_recv(void *socket, push_frames *out, int flags);
void __wrap_push_frames_close(push_frames *f);
int __wrap_push_send_frames(void *socket, const push_frame *frames, int count, int flags);
int __wrap_reply_send(reply *r, void *socket);
void *__wrap_zmq_socket(void *ctx, int type);
int __wrap_zmq_setsockopt(void *s, int opt, const void *v, size_t len);
int __wrap_zmq_bind(void *s, const char *endpoint);
int __wrap_zmq_close(void *s);

void *__wrap_zmq_socket(void *ctx, int type)
{
    (void)ctx;
    FUZZ_CHECK(type == ZMQ_ROUTER);
    return &s_fake_socket;
}

int __wrap_zmq_setsockopt(void *s, int opt, const void *v, size_t len)
{
    (void)opt;
    (void)v;
    (void)len;
    FUZZ_CHECK(s == &s_fake_socket);
    return 0;
}

int __wrap_zmq_bind(void *s, const char *endpoint)
{
    (void)endpoint;
    FUZZ_CHECK(s == &s_fake_socket);
    return 0;
}

int __wrap_zmq_close(void *s)
{
    FUZZ_CHECK(s == &s_fake_socket);
    return 0;
}

uint64_t __wrap_clock_mono_us(void)
{
    return s_now;
}

uint64_t __wrap_clock_real_us(void)
{
    return 1700000000000000ull + s_now;
}

static int s_is_tick(const uint8_t *p, size_t left)
{
    /* one frame (no separator before the message ends) starting with '~' */
    if (!left || p[0] != '~')
        return 0;
    for (size_t i = 0; i < left && p[i] != FUZZ_MSG_SEP; i++)
        if (p[i] == FUZZ_FRAME_SEP)
            return 0;
    return 1;
}

int __wrap_push_frames_recv(void *socket, push_frames *out, int flags)
{
    (void)socket;
    (void)flags;
    if (!s_in.left || s_is_tick(s_in.p, s_in.left)) {
        errno = EAGAIN;
        return -1;
    }
    fuzz_frame fr[FUZZ_MAX_FRAMES + 1];
    int n = fuzz_next_msg(&s_in, fr, FUZZ_MAX_FRAMES + 1);
    if (n > FUZZ_MAX_FRAMES) {
        fuzz_free_msg(fr, n);
        errno = EPROTO;
        return -1;
    }
    push_frame *f = malloc(sizeof *f * (size_t)n);
    FUZZ_CHECK(f != NULL);
    for (int i = 0; i < n; i++) {
        f[i].data = fr[i].data;
        f[i].size = fr[i].size;
    }
    out->count = n;
    out->frame = f;
    out->msgs = NULL;
    s_current = out;
    return 0;
}

void __wrap_push_frames_close(push_frames *f)
{
    for (int i = 0; i < f->count; i++)
        free((void *)f->frame[i].data);
    free(f->frame);
    f->frame = NULL;
    f->count = 0;
    s_current = NULL;
}

/* ---- checks of what the broker sends -------------------------------------- */

static int s_is(const push_frame *f, const char *w)
{
    return f->size == strlen(w) && memcmp(f->data, w, f->size) == 0;
}

static int s_u64(const push_frame *f)
{
    uint64_t v;
    return push_parse_u64(f->data, f->size, &v) == 0;
}

static long s_slot_of(const push_frame *id)
{
    for (size_t i = 0; i < s_links->nslots; i++)
        if (s_links->child[i].id_len && s_links->child[i].id_len == id->size
            && memcmp(s_links->child[i].id, id->data, id->size) == 0)
            return (long)i;
    return -1;
}

/* MSG and PEVENT go to children subscribed to the channel. */
static void s_check_subscribed(const push_frame *id, const push_frame *chan)
{
    long slot = s_slot_of(id);
    FUZZ_CHECK(slot >= 0);
    const channel *c = channel_find(&s_links->broker->channels, chan->data, chan->size);
    FUZZ_CHECK(c != NULL);
    FUZZ_CHECK(channel_child_subs(c, (uint32_t)slot) > 0);
}

/* An answer goes back to the sender of the message being handled. */
static void s_check_answer(const push_frame *id)
{
    FUZZ_CHECK(s_current != NULL);
    FUZZ_CHECK(id->size == s_current->frame[0].size
               && memcmp(id->data, s_current->frame[0].data, id->size) == 0);
}

static int s_known_code(const push_frame *f)
{
    return s_is(f, PUSH_ERR_BAD_REQUEST) || s_is(f, PUSH_ERR_BAD_CHANNEL)
        || s_is(f, PUSH_ERR_TOO_LARGE) || s_is(f, PUSH_ERR_UNKNOWN_CMD)
        || s_is(f, PUSH_ERR_UNAVAILABLE);
}

static void s_check_out(const push_frame *fr, int n)
{
    FUZZ_CHECK(n >= 2);
    const push_frame *cmd = &fr[1];
    size_t max = s_links->broker->cfg->max_message_size;
    if (s_is(cmd, PUSH_LINK_WELCOME) || s_is(cmd, PUSH_LINK_PONG)) {
        FUZZ_CHECK(n == 3 && s_u64(&fr[2]));
        s_check_answer(&fr[0]);
    } else if (s_is(cmd, PUSH_LINK_RESET)) {
        FUZZ_CHECK(n == 2);
        s_check_answer(&fr[0]);
        FUZZ_CHECK(s_slot_of(&fr[0]) < 0);           /* only unknown children */
    } else if (s_is(cmd, PUSH_LINK_MSG)) {
        /* mod_push/link.c s_on_msg: 6 frames after the identity */
        FUZZ_CHECK(n == 7 && push_channel_valid(fr[2].data, fr[2].size) && s_u64(&fr[3])
                   && push_event_valid(fr[4].data, fr[4].size) && fr[5].size <= max
                   && s_u64(&fr[6]));
        s_check_subscribed(&fr[0], &fr[2]);
    } else if (s_is(cmd, PUSH_LINK_PEVENT)) {
        /* s_on_pevent */
        FUZZ_CHECK(n == 7 && push_channel_valid(fr[2].data, fr[2].size)
                   && (s_is(&fr[3], PUSH_PRESENCE_JOIN) || s_is(&fr[3], PUSH_PRESENCE_LEAVE))
                   && push_identity_valid(fr[4].data, fr[4].size) && s_u64(&fr[5])
                   && s_u64(&fr[6]));
        s_check_subscribed(&fr[0], &fr[2]);
    } else if (s_is(cmd, PUSH_LINK_HIST)) {
        s_check_answer(&fr[0]);
        FUZZ_CHECK(n >= 6);
        if (s_is(&fr[3], PUSH_REP_ERR)) {
            FUZZ_CHECK(n == 6 && s_known_code(&fr[4]) && fr[5].size > 0);
        } else {
            FUZZ_CHECK(s_is(&fr[3], PUSH_REP_OK) && s_u64(&fr[4]) && s_u64(&fr[5]));
            FUZZ_CHECK((n - 6) % 4 == 0 && (n - 6) / 4 <= LINKS_HIST_MAX);
            uint64_t prev = 0;
            for (int i = 6; i < n; i += 4) {
                uint64_t id;
                FUZZ_CHECK(push_parse_u64(fr[i].data, fr[i].size, &id) == 0 && id > prev);
                prev = id;
                FUZZ_CHECK(push_event_valid(fr[i + 1].data, fr[i + 1].size));
                FUZZ_CHECK(fr[i + 2].size <= max && s_u64(&fr[i + 3]));
            }
        }
    } else if (s_is(cmd, PUSH_LINK_PUBACK)) {
        s_check_answer(&fr[0]);
        FUZZ_CHECK(n == 6);
        if (s_is(&fr[3], PUSH_REP_OK))
            FUZZ_CHECK(s_u64(&fr[4]) && s_u64(&fr[5]));
        else
            FUZZ_CHECK(s_is(&fr[3], PUSH_REP_ERR) && s_known_code(&fr[4]) && fr[5].size > 0);
    } else if (s_is(cmd, PUSH_LINK_PRESENCE)) {
        s_check_answer(&fr[0]);
        FUZZ_CHECK(n == 5 && s_is(&fr[3], PUSH_REP_OK));
        cJSON *j = cJSON_ParseWithLength(fr[4].data, fr[4].size);
        FUZZ_CHECK(cJSON_IsObject(j));
        cJSON_Delete(j);
    } else {
        FUZZ_CHECK(!"unknown command sent to a child");
    }
}

int __wrap_push_send_frames(void *socket, const push_frame *frames, int count, int flags)
{
    (void)socket;
    (void)flags;
    s_check_out(frames, count);
    return 0;
}

int __wrap_reply_send(reply *r, void *socket)
{
    (void)socket;
    FUZZ_CHECK(!r->failed && r->count > 0);
    s_check_out(r->frame, r->count);
    return 0;
}

/* ---- bookkeeping invariants ----------------------------------------------- */

static void s_check_state(const links *l, int expect_empty)
{
    size_t live = 0;
    for (size_t i = 0; i < l->nslots; i++) {
        if (!l->child[i].id_len)
            continue;
        live++;
        FUZZ_CHECK(l->child[i].id_len <= sizeof l->child[i].id);
        for (size_t j = i + 1; j < l->nslots; j++)
            FUZZ_CHECK(l->child[j].id_len != l->child[i].id_len
                       || memcmp(l->child[j].id, l->child[i].id, l->child[i].id_len) != 0);
    }
    FUZZ_CHECK(live == l->live && l->nslots <= LINKS_MAX_CHILDREN);
    const channel_table *t = &l->broker->channels;
    size_t nchan = 0;
    for (size_t b = 0; b < t->nbucket; b++)
        for (const channel *c = t->bucket[b]; c; c = c->next) {
            nchan++;
            FUZZ_CHECK(push_channel_valid(c->name, c->name_len));
            uint64_t sum = 0;
            for (size_t k = 0; k < c->nsubs; k++) {
                FUZZ_CHECK(c->subs[k].count > 0);
                FUZZ_CHECK(c->subs[k].child < l->nslots);
                FUZZ_CHECK(l->child[c->subs[k].child].id_len != 0);
                sum += c->subs[k].count;
            }
            FUZZ_CHECK(sum == c->subscribers);
            if (expect_empty)
                FUZZ_CHECK(c->nsubs == 0 && c->subscribers == 0);
        }
    FUZZ_CHECK(nchan == t->count);
    uint64_t pch, pmem, pconn;
    presence_totals(l->presence, &pch, &pmem, &pconn);
    if (expect_empty)
        FUZZ_CHECK(pch == 0 && pmem == 0 && pconn == 0);
    else
        FUZZ_CHECK(pmem <= pconn && (pch == 0) == (pmem == 0));
}

/* ---- the harness ------------------------------------------------------------ */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_open("/dev/null");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    broker_config cfg;
    broker b;
    FUZZ_CHECK(config_defaults(&cfg) == 0);
    cfg.history_max = 4;
    cfg.max_message_size = 64;
    cfg.history_age = 0;
    s_now = 1000000000ull;
    FUZZ_CHECK(broker_init(&b, &cfg, EPOCH, clock_mono_us()) == 0);
    links *l = links_open(&s_fake_socket, "inproc://fuzz-link", &b);
    FUZZ_CHECK(l != NULL);
    b.links = l;
    s_links = l;

    s_in.p = data;
    s_in.left = size;
    for (int round = 0; round < 64 && s_in.left; round++) {
        links_handle(l, 64);
        s_check_state(l, 0);
        if (s_in.left && s_is_tick(s_in.p, s_in.left)) {
            fuzz_frame fr[1];
            int n = fuzz_next_msg(&s_in, fr, 1);
            s_now += fr[0].size * 1000000ull;
            fuzz_free_msg(fr, n);
            links_tick(l, s_now);
            s_check_state(l, 0);
        }
    }
    /* every child falls silent: nothing of theirs may remain */
    s_now += (cfg.child_timeout + 1) * 1000000ull;
    links_tick(l, s_now);
    s_check_state(l, 1);
    FUZZ_CHECK(l->live == 0);

    s_links = NULL;
    b.links = NULL;
    links_close(l);
    broker_free(&b);
    config_free(&cfg);
    return 0;
}
