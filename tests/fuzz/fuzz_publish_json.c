/*
 * fuzz_publish_json.c — the JSON publish request decoder
 * (proto/push_proto.c push_publish_req_decode), used by the broker's API
 * and by mod_push's HTTP publish handler.
 *
 * The whole input is the request body.  It is decoded twice, with and
 * without need_channel (the broker requires "op" and "channel"; the HTTP
 * handler takes the channel from the URL).
 *
 * Checked (see push_proto.h):
 *  - on success: data is set, NUL-terminated, data_len == strlen(data) (an
 *    escaped NUL is refused, so nothing is cut short); the channel (when
 *    required) is valid; the event is NULL or a valid non-empty name;
 *  - on failure: *out is untouched and the error code is one of PUSH_ERR_*
 *    with a non-empty message;
 *  - a request accepted with need_channel is accepted without it, with the
 *    same data and event;
 *  - when accepted, the data matches cJSON's own reading of "data".
 */
#include "fuzz_common.h"

#include <cjson/cJSON.h>

#include "push_proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static int s_known_code(const char *c)
{
    return c && (strcmp(c, PUSH_ERR_BAD_REQUEST) == 0 || strcmp(c, PUSH_ERR_BAD_CHANNEL) == 0
                 || strcmp(c, PUSH_ERR_TOO_LARGE) == 0 || strcmp(c, PUSH_ERR_UNKNOWN_CMD) == 0
                 || strcmp(c, PUSH_ERR_UNAVAILABLE) == 0);
}

static int s_decode(const char *json, size_t len, int need_channel, push_publish_req *r)
{
    push_publish_req sentinel;
    memset(&sentinel, 0xA5, sizeof sentinel);
    *r = sentinel;
    const char *code = NULL, *msg = NULL;
    int rc = push_publish_req_decode(json, len, need_channel, r, &code, &msg);
    FUZZ_CHECK(rc == 0 || rc == -1);
    if (rc < 0) {
        FUZZ_CHECK(memcmp(r, &sentinel, sizeof sentinel) == 0);
        FUZZ_CHECK(s_known_code(code));
        FUZZ_CHECK(msg && *msg);
        return -1;
    }
    FUZZ_CHECK(r->data != NULL);
    FUZZ_CHECK(strlen(r->data) == r->data_len);
    if (need_channel) {
        FUZZ_CHECK(r->channel != NULL);
        FUZZ_CHECK(push_channel_valid(r->channel, strlen(r->channel)));
    } else {
        FUZZ_CHECK(r->channel == NULL);
    }
    if (r->event) {
        FUZZ_CHECK(r->event[0] != '\0');
        FUZZ_CHECK(push_event_valid(r->event, strlen(r->event)));
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy: any read past the body is an ASan error */
    char *json = calloc(1, size ? size : 1);
    FUZZ_CHECK(json != NULL);
    if (size)
        memcpy(json, data, size);
    push_publish_req with, without;
    int rc_with = s_decode(json, size, 1, &with);
    int rc_without = s_decode(json, size, 0, &without);
    if (rc_with == 0) {
        FUZZ_CHECK(rc_without == 0);
        FUZZ_CHECK(with.data_len == without.data_len
                   && memcmp(with.data, without.data, with.data_len) == 0);
        FUZZ_CHECK((with.event == NULL) == (without.event == NULL));
        FUZZ_CHECK(!with.event || strcmp(with.event, without.event) == 0);
    }
    if (rc_without == 0) {
        /* the decoder's data is cJSON's reading of the body */
        cJSON *root = cJSON_ParseWithLength(json, size);
        FUZZ_CHECK(root != NULL);
        const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");
        FUZZ_CHECK(cJSON_IsString(d));
        FUZZ_CHECK(strcmp(d->valuestring, without.data) == 0);
        cJSON_Delete(root);
        push_publish_req_free(&without);
        push_publish_req_free(&without);     /* safe twice: fields were reset */
    }
    if (rc_with == 0)
        push_publish_req_free(&with);
    free(json);
    return 0;
}
