/*
 * ws_frame.c — see ws_frame.h.
 *
 * The frame header is taken one byte at a time into hdr[] and each rule is
 * checked at the byte that decides it.  Because the checks only ever look
 * at header bytes in order, the first violation — and so the close code —
 * is the same however the stream is cut.  Payload bytes are taken in runs.
 */
#include "ws_frame.h"

#include <openssl/evp.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

/* A message buffer up to this size is kept for the next message, so that
 * chatty small messages do not allocate each time; a larger one is
 * released so that one big message does not pin memory on an idle
 * connection. */
#define S_KEEP_BUFFER 4096
#define S_MIN_BUFFER  256

static const unsigned char s_empty[1];

void push_ws_parser_init(push_ws_parser *p, size_t max_message_size, int allow_rsv1)
{
    memset(p, 0, sizeof *p);
    p->max_message = max_message_size;
    p->allow_rsv1 = allow_rsv1 != 0;
    p->hdr_need = 2;
}

void push_ws_parser_free(push_ws_parser *p)
{
    free(p->msg);
    p->msg = NULL;
    p->msg_cap = 0;
    p->msg_len = 0;
}

int push_ws_close_code_valid(unsigned code)
{
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) ||
           (code >= 3000 && code <= 4999);
}

/* ---- frame header ---------------------------------------------------------- */

static int s_is_control(int opcode)
{
    return (opcode & 0x8) != 0;
}

static int s_known_opcode(int opcode)
{
    return opcode <= PUSH_WS_OP_BINARY ||
           (opcode >= PUSH_WS_OP_CLOSE && opcode <= PUSH_WS_OP_PONG);
}

/* FIN, RSV and opcode, against what is open. */
static int s_check_first(push_ws_parser *p, unsigned char b)
{
    p->fin = b >> 7;
    p->rsv1 = (b >> 6) & 1;
    p->opcode = b & 0x0F;
    if (b & 0x30)                   /* no extension we negotiate defines RSV2/RSV3 */
        return PUSH_WS_CLOSE_PROTOCOL;
    if (!s_known_opcode(p->opcode))
        return PUSH_WS_CLOSE_PROTOCOL;
    if (s_is_control(p->opcode))
        return (!p->fin || p->rsv1) ? PUSH_WS_CLOSE_PROTOCOL : 0;
    if (p->opcode == PUSH_WS_OP_CONT)   /* RSV1 marks a message, only on its first frame */
        return (!p->msg_opcode || p->rsv1) ? PUSH_WS_CLOSE_PROTOCOL : 0;
    if (p->msg_opcode)
        return PUSH_WS_CLOSE_PROTOCOL;
    return (p->rsv1 && !p->allow_rsv1) ? PUSH_WS_CLOSE_PROTOCOL : 0;
}

/* MASK and the 7-bit length, which tells how long the header is. */
static int s_check_second(push_ws_parser *p, unsigned char b)
{
    unsigned len7 = b & 0x7F;
    if (!(b & 0x80))
        return PUSH_WS_CLOSE_PROTOCOL;
    if (s_is_control(p->opcode) && len7 > PUSH_WS_CONTROL_MAX)
        return PUSH_WS_CLOSE_PROTOCOL;
    p->hdr_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return 0;
}

static uint64_t s_be(const unsigned char *b, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | b[i];
    return v;
}

/* The payload length, complete; the message limit is enforced here, before
 * a byte of the payload is taken. */
static int s_check_length(push_ws_parser *p)
{
    unsigned len7 = p->hdr[1] & 0x7F;
    uint64_t n = len7;
    if (len7 == 126) {
        n = s_be(p->hdr + 2, 2);
        if (n < 126)
            return PUSH_WS_CLOSE_PROTOCOL;
    } else if (len7 == 127) {
        n = s_be(p->hdr + 2, 8);
        if ((n >> 63) || n <= 0xFFFF)
            return PUSH_WS_CLOSE_PROTOCOL;
    }
    p->remaining = n;
    /* msg_len <= max_message always holds, so the subtraction is safe */
    if (!s_is_control(p->opcode) && n > (uint64_t)(p->max_message - p->msg_len))
        return PUSH_WS_CLOSE_TOO_BIG;
    return 0;
}

static void s_begin_payload(push_ws_parser *p)
{
    memcpy(p->mask, p->hdr + p->hdr_need - 4, 4);
    p->mask_pos = 0;
    p->in_payload = 1;
    p->hdr_len = 0;
    p->hdr_need = 2;
    if (s_is_control(p->opcode)) {
        p->ctl_len = 0;
    } else if (p->opcode != PUSH_WS_OP_CONT) {
        p->msg_opcode = p->opcode;
        p->msg_compressed = p->rsv1;
        p->msg_len = 0;
        push_utf8_init(&p->utf8);
    }
}

static int s_header_byte(push_ws_parser *p, unsigned char b)
{
    int rc = 0;
    p->hdr[p->hdr_len++] = b;
    if (p->hdr_len == 1)
        rc = s_check_first(p, b);
    else if (p->hdr_len == 2)
        rc = s_check_second(p, b);
    if (rc == 0 && p->hdr_len >= 2 && p->hdr_len == p->hdr_need - 4)
        rc = s_check_length(p);
    if (rc == 0 && p->hdr_len >= 2 && p->hdr_len == p->hdr_need)
        s_begin_payload(p);
    return rc;
}

/* ---- payload ---------------------------------------------------------------- */

static void s_unmask(push_ws_parser *p, unsigned char *dst, const unsigned char *src, size_t n)
{
    unsigned char m[4];
    for (unsigned i = 0; i < 4; i++)     /* rotate so that m[i & 3] lines up with src[i] */
        m[i] = p->mask[(p->mask_pos + i) & 3];
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i] ^ m[i & 3];
    p->mask_pos = (unsigned)((p->mask_pos + n) & 3);
}

/* Room for n more bytes.  Growth is geometric but never past what the
 * current frame announced, so memory follows the bytes really received
 * and stays within max_message. */
static int s_reserve(push_ws_parser *p, size_t n)
{
    size_t need = p->msg_len + n;
    if (need <= p->msg_cap)
        return 0;
    size_t limit = p->msg_len + (size_t)p->remaining;
    size_t cap = p->msg_cap > limit / 2 ? limit : p->msg_cap * 2;
    if (cap < S_MIN_BUFFER)
        cap = S_MIN_BUFFER < limit ? S_MIN_BUFFER : limit;
    if (cap < need)
        cap = need;
    unsigned char *m = realloc(p->msg, cap);
    if (!m)
        return -1;
    p->msg = m;
    p->msg_cap = cap;
    return 0;
}

static int s_payload(push_ws_parser *p, const unsigned char *src, size_t n)
{
    if (s_is_control(p->opcode)) {
        s_unmask(p, p->ctl + p->ctl_len, src, n);
        p->ctl_len += n;
        return 0;
    }
    if (s_reserve(p, n) != 0)
        return PUSH_WS_CLOSE_INTERNAL;
    unsigned char *dst = p->msg + p->msg_len;
    s_unmask(p, dst, src, n);
    p->msg_len += n;
    if (p->msg_opcode == PUSH_WS_OP_TEXT && !p->msg_compressed &&
        push_utf8_feed(&p->utf8, dst, n) != 0)
        return PUSH_WS_CLOSE_INVALID_DATA;
    return 0;
}

/* ---- delivery ---------------------------------------------------------------- */

static int s_parse_close(push_ws_unit *u)
{
    if (u->len == 0)
        return 0;
    if (u->len == 1)
        return PUSH_WS_CLOSE_PROTOCOL;
    u->close_code = (unsigned)u->data[0] << 8 | u->data[1];
    if (!push_ws_close_code_valid(u->close_code))
        return PUSH_WS_CLOSE_PROTOCOL;
    u->reason = (const char *)u->data + 2;
    u->reason_len = u->len - 2;
    if (!push_utf8_valid(u->reason, u->reason_len))
        return PUSH_WS_CLOSE_INVALID_DATA;
    return 0;
}

static int s_deliver_control(push_ws_parser *p, push_ws_unit_fn fn, void *arg)
{
    push_ws_unit u = { .opcode = p->opcode, .data = p->ctl, .len = p->ctl_len };
    if (p->opcode == PUSH_WS_OP_CLOSE) {
        int rc = s_parse_close(&u);
        if (rc != 0)
            return rc;
    }
    return fn(arg, &u);
}

static void s_message_done(push_ws_parser *p)
{
    p->msg_opcode = 0;
    p->msg_len = 0;
    if (p->msg_cap > S_KEEP_BUFFER)
        push_ws_parser_free(p);
}

static int s_deliver_message(push_ws_parser *p, push_ws_unit_fn fn, void *arg)
{
    if (p->msg_opcode == PUSH_WS_OP_TEXT && !p->msg_compressed &&
        !push_utf8_complete(&p->utf8))
        return PUSH_WS_CLOSE_INVALID_DATA;
    push_ws_unit u = {
        .opcode = p->msg_opcode,
        .compressed = p->msg_compressed,
        .data = p->msg ? p->msg : s_empty,
        .len = p->msg_len,
    };
    int rc = fn(arg, &u);
    s_message_done(p);
    return rc;
}

static int s_end_frame(push_ws_parser *p, push_ws_unit_fn fn, void *arg)
{
    p->in_payload = 0;
    if (s_is_control(p->opcode))
        return s_deliver_control(p, fn, arg);
    return p->fin ? s_deliver_message(p, fn, arg) : 0;
}

int push_ws_parser_feed(push_ws_parser *p, const void *data, size_t len,
                        push_ws_unit_fn fn, void *arg)
{
    const unsigned char *s = data;
    size_t i = 0;
    while (p->error == 0 && i < len) {
        int rc;
        if (!p->in_payload) {
            rc = s_header_byte(p, s[i++]);
        } else {
            size_t n = len - i;
            if (p->remaining < n)
                n = (size_t)p->remaining;
            rc = s_payload(p, s + i, n);
            i += n;
            p->remaining -= n;
        }
        /* a frame ends when its last payload byte is in — or with its
         * header, when the payload is empty */
        if (rc == 0 && p->in_payload && p->remaining == 0)
            rc = s_end_frame(p, fn, arg);
        p->error = rc;
    }
    return p->error;
}

/* ---- encoder ------------------------------------------------------------------ */

size_t push_ws_frame_header(unsigned char *buf, int opcode, int fin, int rsv1,
                            uint64_t payload_len)
{
    if (opcode < 0 || opcode > 0xF || (payload_len >> 63))
        return 0;
    buf[0] = (unsigned char)((fin ? 0x80 : 0) | (rsv1 ? 0x40 : 0) | opcode);
    if (payload_len < 126) {
        buf[1] = (unsigned char)payload_len;
        return 2;
    }
    unsigned n = payload_len <= 0xFFFF ? 2 : 8;
    buf[1] = n == 2 ? 126 : 127;
    for (unsigned i = 0; i < n; i++)
        buf[2 + i] = (unsigned char)(payload_len >> (8 * (n - 1 - i)));
    return 2 + n;
}

/* Length of the reason to send: at most 123 bytes, cut before a character
 * that would not fit whole; 0 when the reason is not valid UTF-8, because
 * the peer would have to fail the connection on it. */
static size_t s_reason_len(const char *reason)
{
    const size_t room = PUSH_WS_CONTROL_MAX - 2;
    size_t n = strnlen(reason, room + 1);
    if (n > room) {
        n = room;
        while (n > 0 && ((unsigned char)reason[n] & 0xC0) == 0x80)
            n--;
    }
    return push_utf8_valid(reason, n) ? n : 0;
}

size_t push_ws_close_payload(unsigned char *buf, unsigned code, const char *reason)
{
    if (!push_ws_close_code_valid(code))
        return 0;
    buf[0] = (unsigned char)(code >> 8);
    buf[1] = (unsigned char)code;
    size_t n = reason ? s_reason_len(reason) : 0;
    if (n)
        memcpy(buf + 2, reason, n);
    return 2 + n;
}

/* ---- opening handshake ----------------------------------------------------------- */

static const char s_guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

static int s_b64_char(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '+' || c == '/';
}

int push_ws_key_valid(const char *key)
{
    if (!key)
        return 0;
    for (int i = 0; i < 22; i++)    /* stops at the NUL of a short key */
        if (!s_b64_char(key[i]))
            return 0;
    return key[22] == '=' && key[23] == '=' && key[24] == '\0';
}

int push_ws_accept_key(const char *client_key, char out[29])
{
    unsigned char buf[24 + sizeof s_guid - 1];
    unsigned char md[SHA_DIGEST_LENGTH];
    out[0] = '\0';
    if (!push_ws_key_valid(client_key))
        return -1;
    memcpy(buf, client_key, 24);
    memcpy(buf + 24, s_guid, sizeof s_guid - 1);
    if (!SHA1(buf, sizeof buf, md))
        return -1;
    EVP_EncodeBlock((unsigned char *)out, md, SHA_DIGEST_LENGTH);
    return 0;
}
