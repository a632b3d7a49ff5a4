/*
 * push_proto.c — helpers for the wire protocol declared in push_proto.h.
 */
#include "push_proto.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>
#include <cjson/cJSON.h>

/* ---- frames ------------------------------------------------------------ */

static void s_drop_rest(void *socket)
{
    int more = 1;
    size_t sz = sizeof more;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, socket, 0) < 0) {
            zmq_msg_close(&m);
            return;
        }
        zmq_msg_close(&m);
        if (zmq_getsockopt(socket, ZMQ_RCVMORE, &more, &sz) < 0)
            return;
    }
}

int push_frames_recv(void *socket, push_frames *out, int flags)
{
    int cap = 8, n = 0;
    zmq_msg_t *msgs = malloc(sizeof *msgs * cap);
    if (!msgs) {
        errno = ENOMEM;
        return -1;
    }
    for (;;) {
        if (n == cap) {
            if (n >= PUSH_MAX_FRAMES) {
                for (int i = 0; i < n; i++)
                    zmq_msg_close(&msgs[i]);
                free(msgs);
                s_drop_rest(socket);
                errno = EPROTO;
                return -1;
            }
            int newcap = cap * 2 < PUSH_MAX_FRAMES ? cap * 2 : PUSH_MAX_FRAMES;
            zmq_msg_t *bigger = realloc(msgs, sizeof *msgs * (size_t)newcap);
            if (!bigger) {
                for (int i = 0; i < n; i++)
                    zmq_msg_close(&msgs[i]);
                free(msgs);
                s_drop_rest(socket);
                errno = ENOMEM;
                return -1;
            }
            msgs = bigger;
            cap = newcap;
        }
        zmq_msg_init(&msgs[n]);
        /* only the first frame may be non-blocking: the rest are already here */
        if (zmq_msg_recv(&msgs[n], socket, n == 0 ? flags : 0) < 0) {
            int e = errno;
            for (int i = 0; i <= n; i++)
                zmq_msg_close(&msgs[i]);
            free(msgs);
            if (n > 0)          /* never leave a tail to be read as a message */
                s_drop_rest(socket);
            errno = e;
            return -1;
        }
        n++;
        if (!zmq_msg_more(&msgs[n - 1]))
            break;
    }
    push_frame *fr = malloc(sizeof *fr * n);
    if (!fr) {
        for (int i = 0; i < n; i++)
            zmq_msg_close(&msgs[i]);
        free(msgs);
        errno = ENOMEM;
        return -1;
    }
    for (int i = 0; i < n; i++) {
        fr[i].data = zmq_msg_data(&msgs[i]);
        fr[i].size = zmq_msg_size(&msgs[i]);
    }
    out->count = n;
    out->frame = fr;
    out->msgs = msgs;
    return 0;
}

void push_frames_close(push_frames *f)
{
    zmq_msg_t *msgs = f->msgs;
    for (int i = 0; i < f->count; i++)
        zmq_msg_close(&msgs[i]);
    free(msgs);
    free(f->frame);
    f->msgs = NULL;
    f->frame = NULL;
    f->count = 0;
}

int push_frame_is(const push_frames *f, int i, const char *word)
{
    size_t len = strlen(word);
    return i >= 0 && i < f->count && f->frame[i].size == len
        && memcmp(f->frame[i].data, word, len) == 0;
}

int push_send_frames(void *socket, const push_frame *frames, int count, int flags)
{
    for (int i = 0; i < count; i++) {
        int more = i + 1 < count ? ZMQ_SNDMORE : 0;
        if (zmq_send(socket, frames[i].data, frames[i].size, flags | more) < 0)
            return -1;
    }
    return 0;
}

push_frame push_str_frame(const char *s)
{
    push_frame f = { s ? s : "", s ? strlen(s) : 0 };
    return f;
}

/* ---- values ------------------------------------------------------------ */

int push_channel_valid(const char *name, size_t len)
{
    if (!name || len == 0 || len > PUSH_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
              || (ch >= '0' && ch <= '9') || strchr("_.:@~-", ch);
        if (!ok || ch == '\0')
            return 0;
    }
    return 1;
}

int push_event_valid(const char *name, size_t len)
{
    if (len > PUSH_EVENT_MAX || (len && !name))
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch <= 0x20 || ch >= 0x7f)
            return 0;
    }
    return 1;
}

int push_identity_valid(const char *s, size_t len)
{
    if (!s || len == 0 || len > PUSH_IDENTITY_MAX)
        return 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                 : (c & 0xf8) == 0xf0 ? 4 : 0;
        if (n == 0 || i + n > len || c < 0x20 || c == 0x7f || (n == 2 && c < 0xc2)
            || c > 0xf4)
            return 0;
        /* second byte (Unicode Table 3-7): no overlong 3- or 4-byte forms,
         * no surrogates, nothing above U+10FFFF */
        unsigned char c1 = n > 1 ? (unsigned char)s[i + 1] : 0x80;
        if ((c == 0xe0 && c1 < 0xa0) || (c == 0xed && c1 > 0x9f)
            || (c == 0xf0 && c1 < 0x90) || (c == 0xf4 && c1 > 0x8f))
            return 0;
        for (size_t k = 1; k < n; k++)
            if (((unsigned char)s[i + k] & 0xc0) != 0x80)
                return 0;
        i += n;
    }
    return 1;
}

int push_parse_u64(const char *s, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (!s || len == 0 || len > 64)
        return -1;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        uint64_t d = (uint64_t)(s[i] - '0');
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int push_fmt_u64(char *buf, uint64_t v)
{
    char tmp[21];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* ---- JSON publish requests -------------------------------------------- */

static int s_fail(const char **code, const char **msg, const char *c, const char *m)
{
    *code = c;
    *msg = m;
    return -1;
}

static int s_decode(const cJSON *root, int need_channel, push_publish_req *r,
                    const char **code, const char **msg)
{
    if (!cJSON_IsObject(root))
        return s_fail(code, msg, PUSH_ERR_BAD_REQUEST, "request is not a JSON object");
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(root, "op");
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(root, "channel");
    const cJSON *ev = cJSON_GetObjectItemCaseSensitive(root, "event");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    if (need_channel) {
        if (!cJSON_IsString(op) || strcmp(op->valuestring, "publish") != 0)
            return s_fail(code, msg, PUSH_ERR_UNKNOWN_CMD, "\"op\" must be \"publish\"");
        if (!cJSON_IsString(ch))
            return s_fail(code, msg, PUSH_ERR_BAD_REQUEST, "\"channel\" must be a string");
        if (!push_channel_valid(ch->valuestring, strlen(ch->valuestring)))
            return s_fail(code, msg, PUSH_ERR_BAD_CHANNEL, "invalid channel name");
    }
    if (!cJSON_IsString(data))
        return s_fail(code, msg, PUSH_ERR_BAD_REQUEST, "\"data\" must be a string");
    if (ev && !cJSON_IsNull(ev)) {
        if (!cJSON_IsString(ev) || !push_event_valid(ev->valuestring, strlen(ev->valuestring)))
            return s_fail(code, msg, PUSH_ERR_BAD_REQUEST, "\"event\" must be a short token");
    }
    r->data_len = strlen(data->valuestring);
    r->data = push_memdup_str(data->valuestring, r->data_len);
    if (need_channel && ch)
        r->channel = push_memdup_str(ch->valuestring, strlen(ch->valuestring));
    if (cJSON_IsString(ev) && ev->valuestring[0])
        r->event = push_memdup_str(ev->valuestring, strlen(ev->valuestring));
    if (!r->data || (need_channel && !r->channel)
        || (cJSON_IsString(ev) && ev->valuestring[0] && !r->event))
        return s_fail(code, msg, PUSH_ERR_BAD_REQUEST, "out of memory");
    return 0;
}

/* cJSON stores strings NUL-terminated: an escaped NUL would silently cut
 * the channel or the data short, so such requests are refused. */
static int s_has_escaped_nul(const char *json, size_t len)
{
    for (size_t i = 0; i + 1 < len; i++) {
        if (json[i] != '\\')
            continue;
        if (json[i + 1] == 'u' && i + 5 < len && memcmp(json + i + 2, "0000", 4) == 0)
            return 1;
        i++;            /* skip the escaped character */
    }
    return 0;
}

static int s_only_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\n", s[i]))
            return 0;
    return 1;
}

int push_publish_req_decode(const char *json, size_t len, int need_channel,
                            push_publish_req *out,
                            const char **err_code, const char **err_msg)
{
    push_publish_req r = { 0 };
    if (memchr(json, '\0', len) || s_has_escaped_nul(json, len))
        return s_fail(err_code, err_msg, PUSH_ERR_BAD_REQUEST,
                      "NUL characters (\\u0000) are not allowed in JSON requests");
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    if (root && !s_only_space(end, (size_t)(json + len - end))) {
        cJSON_Delete(root);
        root = NULL;
    }
    if (!root)
        return s_fail(err_code, err_msg, PUSH_ERR_BAD_REQUEST, "malformed JSON");
    int rc = s_decode(root, need_channel, &r, err_code, err_msg);
    cJSON_Delete(root);
    if (rc < 0) {
        push_publish_req_free(&r);
        return -1;
    }
    *out = r;
    return 0;
}

void push_publish_req_free(push_publish_req *req)
{
    free(req->channel);
    free(req->event);
    free(req->data);
    req->channel = req->event = req->data = NULL;
    req->data_len = 0;
}

int push_errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *push_memdup_str(const void *s, size_t len)
{
    char *d = malloc(len + 1);
    if (d) {
        if (len)
            memcpy(d, s, len);
        d[len] = '\0';
    }
    return d;
}
