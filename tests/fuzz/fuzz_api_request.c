/*
 * fuzz_api_request.c — the broker's request decoder (pushbrokerd/api.c
 * api_request): multipart PUB / HISTORY / STATS / PING / PRESENCE and
 * one-frame JSON requests, on a broker built as the unit tests build it
 * (no sockets, no store), with a presence table so PRESENCE is answered.
 *
 * Input: a sequence of requests (tests/fuzz/fuzz_common.h: requests
 * separated by 0x1e, frames by 0x1f), run in order against one broker, so
 * that PUB then HISTORY sees what was published.  Every request is run
 * with the envelope ID / "" (the ROUTER socket's way); every second one is
 * run again without an envelope (the PULL socket's way).
 *
 * Checked (see api.h, push_proto.h):
 *  - the reply starts with the envelope exactly, is not failed, and fits;
 *  - multipart: -1 <=> ERR <code> <message> with a known code; PUB answers
 *    OK <id> <subscribers> with decimal ids one above the channel's last;
 *    HISTORY answers OK <last> <count> and exactly 4 frames per message,
 *    with ids ascending, after the cursor, data within max_message_size;
 *    PING answers PONG <epoch>;
 *  - JSON: one frame, valid JSON, an object whose "ok" is true <=> 0 and
 *    whose "error" is a known code otherwise;
 *  - reply_own() gives an independent reply with the same bytes.
 */
#include "fuzz_common.h"

#include <cjson/cJSON.h>

#include "api.h"
#include "broker.h"
#include "clock.h"
#include "config.h"
#include "links.h"
#include "log.h"
#include "presence.h"
#include "push_proto.h"
#include "reply.h"

#define MAX_REQUESTS 32

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    log_open("/dev/null");
    return 0;
}

static int s_known_code(const char *c, size_t n)
{
    static const char *const codes[] = { PUSH_ERR_BAD_REQUEST, PUSH_ERR_BAD_CHANNEL,
                                         PUSH_ERR_TOO_LARGE, PUSH_ERR_UNKNOWN_CMD,
                                         PUSH_ERR_UNAVAILABLE };
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++)
        if (strlen(codes[i]) == n && memcmp(codes[i], c, n) == 0)
            return 1;
    return 0;
}

static int s_is(const push_frame *f, const char *w)
{
    return f->size == strlen(w) && memcmp(f->data, w, f->size) == 0;
}

static uint64_t s_u64(const push_frame *f)
{
    uint64_t v = 0;
    FUZZ_CHECK(push_parse_u64(f->data, f->size, &v) == 0);
    return v;
}

static void s_check_multipart(const broker *b, const push_frame *body, int nbody,
                              const push_frame *rep, int nrep, int rc)
{
    FUZZ_CHECK(nrep >= 1);
    if (rc < 0) {
        FUZZ_CHECK(nrep == 3 && s_is(&rep[0], PUSH_REP_ERR));
        FUZZ_CHECK(s_known_code(rep[1].data, rep[1].size));
        FUZZ_CHECK(rep[2].size > 0 && memchr(rep[2].data, '\0', rep[2].size) == NULL);
        return;
    }
    const push_frame *cmd = &body[0];
    if (s_is(cmd, PUSH_CMD_PUB)) {
        FUZZ_CHECK(nrep == 3 && s_is(&rep[0], PUSH_REP_OK));
        uint64_t id = s_u64(&rep[1]);
        const channel *c = channel_find(&b->channels, body[1].data, body[1].size);
        FUZZ_CHECK(c != NULL && history_last_id(&c->hist) == id);
        FUZZ_CHECK(s_u64(&rep[2]) == c->subscribers);
        FUZZ_CHECK(body[2].size <= b->cfg->max_message_size);
    } else if (s_is(cmd, PUSH_CMD_HISTORY)) {
        FUZZ_CHECK(nrep >= 3 && s_is(&rep[0], PUSH_REP_OK));
        uint64_t last = s_u64(&rep[1]), count = s_u64(&rep[2]);
        uint64_t after = s_u64(&body[2]);
        FUZZ_CHECK((uint64_t)nrep == 3 + 4 * count);
        FUZZ_CHECK(count <= API_HISTORY_MAX && count <= b->cfg->history_max);
        uint64_t prev = after;
        for (uint64_t i = 0; i < count; i++) {
            const push_frame *m = &rep[3 + 4 * i];
            uint64_t id = s_u64(&m[0]);
            FUZZ_CHECK(id > prev && id <= last);
            prev = id;
            FUZZ_CHECK(push_event_valid(m[1].data, m[1].size));
            FUZZ_CHECK(m[2].size <= b->cfg->max_message_size);
            (void)s_u64(&m[3]);
        }
    } else if (s_is(cmd, PUSH_CMD_PING)) {
        FUZZ_CHECK(nrep == 2 && s_is(&rep[0], PUSH_REP_PONG) && s_u64(&rep[1]) == b->epoch);
    } else if (s_is(cmd, PUSH_CMD_STATS) || s_is(cmd, PUSH_CMD_PRESENCE)) {
        FUZZ_CHECK(nrep == 2 && s_is(&rep[0], PUSH_REP_OK));
        cJSON *j = cJSON_ParseWithLength(rep[1].data, rep[1].size);
        FUZZ_CHECK(cJSON_IsObject(j));
        cJSON_Delete(j);
    } else {
        FUZZ_CHECK(!"unknown command accepted");
    }
    (void)nbody;
}

static void s_check_json(const push_frame *rep, int nrep, int rc)
{
    FUZZ_CHECK(nrep == 1);
    cJSON *j = cJSON_ParseWithLength(rep[0].data, rep[0].size);
    FUZZ_CHECK(cJSON_IsObject(j));
    const cJSON *ok = cJSON_GetObjectItemCaseSensitive(j, "ok");
    FUZZ_CHECK(cJSON_IsBool(ok));
    FUZZ_CHECK(cJSON_IsTrue(ok) == (rc == 0));
    if (rc < 0) {
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
        FUZZ_CHECK(cJSON_IsString(e) && s_known_code(e->valuestring, strlen(e->valuestring)));
    }
    cJSON_Delete(j);
}

static void s_one(broker *b, const push_frame *env, int nenv, const push_frame *body, int n)
{
    reply r;
    broker_err err;
    memset(&err, 0, sizeof err);
    int rc = api_request(b, env, nenv, body, n, &r, &err);
    FUZZ_CHECK(rc == 0 || rc == -1);
    FUZZ_CHECK(r.count > 0);              /* empty only when out of memory */
    FUZZ_CHECK(!r.failed && r.count <= r.cap);
    if (rc < 0)
        FUZZ_CHECK(err.code != NULL && memchr(err.msg, '\0', sizeof err.msg) != NULL);
    for (int i = 0; i < nenv; i++)
        FUZZ_CHECK(r.frame[i].size == env[i].size
                   && memcmp(r.frame[i].data, env[i].data, env[i].size) == 0);
    int is_json = n == 1 && body[0].size > 0 && body[0].data[0] == '{';
    if (is_json)
        s_check_json(r.frame + nenv, r.count - nenv, rc);
    else
        s_check_multipart(b, body, n, r.frame + nenv, r.count - nenv, rc);

    /* an owned copy says the same */
    reply copy = r;
    size_t total = 0;
    for (int i = 0; i < r.count; i++)
        total += r.frame[i].size;
    unsigned char *flat = malloc(total + 1), *q = flat;
    FUZZ_CHECK(flat != NULL);
    for (int i = 0; i < r.count; i++) {
        if (r.frame[i].size)
            memcpy(q, r.frame[i].data, r.frame[i].size);
        q += r.frame[i].size;
    }
    FUZZ_CHECK(reply_own(&copy) == 0);
    q = flat;
    for (int i = 0; i < copy.count; i++) {
        FUZZ_CHECK(copy.frame[i].size == 0 || memcmp(q, copy.frame[i].data,
                                                     copy.frame[i].size) == 0);
        q += copy.frame[i].size;
    }
    free(flat);
    reply_free(&copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    broker_config cfg;
    broker b;
    FUZZ_CHECK(config_defaults(&cfg) == 0);
    cfg.history_max = 4;
    cfg.max_message_size = 64;
    cfg.history_age = 0;
    FUZZ_CHECK(broker_init(&b, &cfg, 4242, clock_mono_us()) == 0);
    /* a links object without a socket: presence queries work, nothing is
     * ever fanned out (no child subscribes) */
    links *l = calloc(1, sizeof *l);
    FUZZ_CHECK(l != NULL);
    l->broker = &b;
    l->presence = presence_new(NULL, NULL);
    FUZZ_CHECK(l->presence != NULL);
    b.links = l;

    fuzz_in in = { data, size };
    fuzz_frame fr[FUZZ_MAX_FRAMES];
    push_frame body[FUZZ_MAX_FRAMES];
    const push_frame env[2] = { { "ID", 2 }, { "", 0 } };
    int n;
    for (int req = 0; req < MAX_REQUESTS && (n = fuzz_next_msg(&in, fr, FUZZ_MAX_FRAMES)) > 0;
         req++) {
        for (int i = 0; i < n; i++) {
            body[i].data = fr[i].data;
            body[i].size = fr[i].size;
        }
        s_one(&b, env, 2, body, n);
        if (req % 2)                       /* the PULL socket's way, no envelope */
            s_one(&b, NULL, 0, body, n);
        fuzz_free_msg(fr, n);
    }

    b.links = NULL;
    presence_free(&l->presence);
    free(l);
    broker_free(&b);
    config_free(&cfg);
    return 0;
}
