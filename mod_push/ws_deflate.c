/*
 * ws_deflate.c — see ws_deflate.h.
 */
#include "ws_deflate.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* ==== negotiation ========================================================== */

enum { S_SNCT, S_CNCT, S_SMWB, S_CMWB, S_NPARAMS };

static const char *const s_param_names[S_NPARAMS] = {
    "server_no_context_takeover", "client_no_context_takeover",
    "server_max_window_bits", "client_max_window_bits",
};

/* One offer as read from the header. */
typedef struct s_offer {
    int      is_deflate;  /* the extension is permessage-deflate */
    int      bad;         /* unknown, repeated or invalid parameter */
    unsigned seen;        /* bit per S_ parameter */
    int      snct, cnct;
    int      smwb;        /* 0: absent, else 8..15 */
    int      cmwb;        /* -1: absent, 0: without value, else 8..15 */
} s_offer;

/* A value is kept only as far as a window-bits value could reach; anything
 * longer is invalid anyway. */
#define S_VALUE_MAX 8

static void s_ows(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static int s_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static size_t s_token(const char *p)
{
    size_t n = 0;
    while (s_tchar((unsigned char)p[n]))
        n++;
    return n;
}

/* "8".."15" without leading zeros (RFC 7692 §7.1.2.1); -1 for anything else. */
static int s_window_bits(const char *v, size_t n)
{
    if (n == 1 && (v[0] == '8' || v[0] == '9'))
        return v[0] - '0';
    if (n == 2 && v[0] == '1' && v[1] >= '0' && v[1] <= '5')
        return 10 + v[1] - '0';
    return -1;
}

static void s_keep(char *val, size_t *vlen, char c)
{
    if (*vlen < S_VALUE_MAX)
        val[*vlen] = c;
    if (*vlen <= S_VALUE_MAX)        /* S_VALUE_MAX + 1 marks "too long" */
        (*vlen)++;
}

/* quoted-string (RFC 7230 §3.2.6), unescaped into val.  -1: syntax error. */
static int s_quoted(const char **pp, char *val, size_t *vlen)
{
    const char *p = *pp + 1;
    for (; *p != '"'; p++) {
        if (*p == '\0')
            return -1;
        if (*p == '\\' && *++p == '\0')
            return -1;
        s_keep(val, vlen, *p);
    }
    *pp = p + 1;
    return 0;
}

/* A parameter value: token or quoted-string (RFC 6455 §9.1).  -1: syntax error. */
static int s_value(const char **pp, char *val, size_t *vlen)
{
    *vlen = 0;
    if (**pp == '"')
        return s_quoted(pp, val, vlen);
    size_t n = s_token(*pp);
    if (n == 0)
        return -1;
    for (size_t i = 0; i < n; i++)
        s_keep(val, vlen, (*pp)[i]);
    *pp += n;
    return 0;
}

static int s_param_id(const char *name, size_t n)
{
    for (int i = 0; i < S_NPARAMS; i++)
        if (strlen(s_param_names[i]) == n && memcmp(s_param_names[i], name, n) == 0)
            return i;
    return -1;
}

/* Record one parameter; val is NULL when it had no value. */
static void s_apply(s_offer *o, const char *name, size_t n, const char *val, size_t vlen)
{
    int id = s_param_id(name, n);
    if (id < 0 || (o->seen & (1u << id))) {
        o->bad = 1;
        return;
    }
    o->seen |= 1u << id;
    int bits = val ? s_window_bits(val, vlen) : 0;
    switch (id) {
    case S_SNCT: o->snct = 1; o->bad |= val != NULL; break;
    case S_CNCT: o->cnct = 1; o->bad |= val != NULL; break;
    case S_SMWB: o->smwb = bits; o->bad |= bits <= 0; break;
    case S_CMWB: o->cmwb = bits; o->bad |= bits < 0; break;
    }
}

/* ";" already taken: OWS name [OWS "=" OWS value].  -1: syntax error. */
static int s_param(const char **pp, s_offer *o)
{
    char val[S_VALUE_MAX];
    size_t vlen = 0;
    int has_value = 0;
    s_ows(pp);
    const char *name = *pp;
    size_t n = s_token(name);
    if (n == 0)
        return -1;
    *pp += n;
    s_ows(pp);
    if (**pp == '=') {
        (*pp)++;
        s_ows(pp);
        if (s_value(pp, val, &vlen) != 0)
            return -1;
        has_value = 1;
    }
    s_apply(o, name, n, has_value ? val : NULL, vlen);
    return 0;
}

/* One list element: extension-token *(";" param), up to and including the
 * "," that ends it.  Returns 1 when it is a permessage-deflate offer (maybe
 * bad), 0 for an empty element or another extension, -1 on a syntax error. */
static int s_extension(const char **pp, s_offer *o)
{
    memset(o, 0, sizeof *o);
    o->cmwb = -1;
    s_ows(pp);
    if (**pp == ',' || **pp == '\0') {  /* empty list element, allowed by RFC 7230 §7 */
        *pp += **pp == ',';
        return 0;
    }
    size_t n = s_token(*pp);
    if (n == 0)
        return -1;
    o->is_deflate = n == 18 && memcmp(*pp, "permessage-deflate", 18) == 0;
    *pp += n;
    for (;;) {
        s_ows(pp);
        if (**pp == ';') {
            (*pp)++;
            if (s_param(pp, o) != 0)
                return -1;
        } else if (**pp == ',' || **pp == '\0') {
            *pp += **pp == ',';
            return o->is_deflate;
        } else {
            return -1;
        }
    }
}

static int s_clamp(int v, int lo, int hi)
{
    return v == 0 ? hi : v < lo ? lo : v > hi ? hi : v;
}

static int s_min(int a, int b)
{
    return a < b ? a : b;
}

/* Append "; param" or "; param=bits" (bits > 0).  The longest response,
 * every parameter with two digits, is 128 characters: never truncated. */
static void s_add(char *out, size_t *n, const char *param, int bits)
{
    size_t room = PUSH_WS_DEFLATE_RESPONSE_MAX - *n;
    int w = bits ? snprintf(out + *n, room, "; %s=%d", param, bits)
                 : snprintf(out + *n, room, "; %s", param);
    if (w > 0)
        *n += (size_t)w;
}

static void s_response(const s_offer *o, const push_ws_deflate_params *pp, char *out)
{
    static const char name[] = "permessage-deflate";
    size_t n = sizeof name - 1;
    memcpy(out, name, sizeof name);
    if (pp->server_no_context_takeover)
        s_add(out, &n, s_param_names[S_SNCT], 0);
    if (pp->client_no_context_takeover)
        s_add(out, &n, s_param_names[S_CNCT], 0);
    /* an offered limit must be answered; our own smaller one may be stated */
    if (o->smwb || pp->server_max_window_bits < 15)
        s_add(out, &n, s_param_names[S_SMWB], pp->server_max_window_bits);
    /* only if offered (RFC 7692 §7.1.2.2), and only when it says something */
    if (o->cmwb > 0 || (o->cmwb == 0 && pp->client_max_window_bits < 15))
        s_add(out, &n, s_param_names[S_CMWB], pp->client_max_window_bits);
}

/* Accept o if we can honour it: fill pp and the response. */
static int s_accept(const s_offer *o, const push_ws_deflate_config *cfg,
                    push_ws_deflate_params *pp, char *response)
{
    if (o->bad || o->smwb == 8)      /* 8: zlib cannot, see ws_deflate.h */
        return 0;
    int smax = s_clamp(cfg->server_max_window_bits, 9, 15);
    int cmax = s_clamp(cfg->client_max_window_bits, 8, 15);
    pp->server_no_context_takeover = o->snct || cfg->server_no_context_takeover;
    pp->client_no_context_takeover = o->cnct || cfg->client_no_context_takeover;
    pp->server_max_window_bits = s_min(o->smwb ? o->smwb : 15, smax);
    pp->client_max_window_bits = o->cmwb < 0 ? 15 : s_min(o->cmwb ? o->cmwb : 15, cmax);
    s_response(o, pp, response);
    return 1;
}

int push_ws_deflate_negotiate(const char *offers, const push_ws_deflate_config *cfg,
                              push_ws_deflate_params *params,
                              char response[PUSH_WS_DEFLATE_RESPONSE_MAX])
{
    static const push_ws_deflate_config defaults;
    const char *p = offers;
    int accepted = 0;
    response[0] = '\0';
    if (!p)
        return 0;
    if (!cfg)
        cfg = &defaults;
    while (*p) {
        s_offer o;
        int rc = s_extension(&p, &o);
        if (rc < 0) {
            response[0] = '\0';
            return 0;
        }
        if (rc == 1 && !accepted)
            accepted = s_accept(&o, cfg, params, response);
    }
    return accepted;
}

/* ==== output buffer ========================================================= */

typedef struct s_buf {
    unsigned char *data;
    size_t         len, cap;
} s_buf;

/* Make room to write, never beyond limit bytes in all. */
static int s_buf_room(s_buf *b, size_t want, size_t limit)
{
    if (b->len < b->cap)
        return 0;
    size_t cap = b->cap ? (b->cap > limit / 2 ? limit : b->cap * 2) : want;
    if (cap > limit)
        cap = limit;
    if (cap <= b->len)
        return -1;
    unsigned char *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

/* Point the stream's output at the free part of b (zlib counts in uInt). */
static void s_buf_out(s_buf *b, z_stream *z)
{
    size_t room = b->cap - b->len;
    z->next_out = b->data + b->len;
    z->avail_out = room > UINT_MAX ? UINT_MAX : (uInt)room;
}

/* Give the stream its next piece of input (zlib counts in uInt). */
static void s_refill(z_stream *z, const unsigned char **in, size_t *left)
{
    if (z->avail_in > 0 || *left == 0)
        return;
    size_t n = *left > UINT_MAX ? UINT_MAX : *left;
    z->next_in = (Bytef *)(uintptr_t)*in;  /* zlib does not write input */
    z->avail_in = (uInt)n;
    *in += n;
    *left -= n;
}

/* Hand over b's bytes, or clean up after a failure. */
static int s_finish(int rc, s_buf *b, unsigned char **out, size_t *out_len)
{
    if (rc == PUSH_WS_DEFLATE_OK && b->data == NULL && s_buf_room(b, 1, 1) != 0)
        rc = PUSH_WS_DEFLATE_INTERNAL;
    if (rc != PUSH_WS_DEFLATE_OK) {
        free(b->data);
        *out = NULL;
        *out_len = 0;
        return rc;
    }
    *out = b->data;
    *out_len = b->len;
    return rc;
}

/* ==== compressor ============================================================= */

/* zlib's default.  Deflate state is 2^(bits+2) + 2^(memLevel+9) bytes:
 * 256 KiB at 15 bits; memLevel 9 would add 128 KiB for little gain. */
#define S_MEM_LEVEL 8

static const unsigned char s_tail[4] = { 0x00, 0x00, 0xff, 0xff };

struct push_ws_compressor {
    z_stream z;
    int      live;        /* z is initialised */
    int      failed;
    int      bits, level, no_takeover;
};

push_ws_compressor *push_ws_compressor_new(int window_bits, int no_context_takeover, int level)
{
    if (window_bits < 9 || window_bits > 15 || level < -1 || level > 9)
        return NULL;
    push_ws_compressor *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->bits = window_bits;
    c->level = level;
    c->no_takeover = no_context_takeover != 0;
    return c;
}

static void s_deflate_close(push_ws_compressor *c)
{
    if (c->live)
        deflateEnd(&c->z);
    c->live = 0;
}

void push_ws_compressor_free(push_ws_compressor *c)
{
    if (!c)
        return;
    s_deflate_close(c);
    free(c);
}

static int s_deflate_open(push_ws_compressor *c)
{
    if (c->live)
        return 0;
    memset(&c->z, 0, sizeof c->z);
    if (deflateInit2(&c->z, c->level, Z_DEFLATED, -c->bits, S_MEM_LEVEL,
                     Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    c->live = 1;
    return 0;
}

/* Deflate all of in with a sync flush at the end. */
static int s_deflate_all(push_ws_compressor *c, const unsigned char *in, size_t len, s_buf *b)
{
    z_stream *z = &c->z;
    size_t left = len;
    size_t first = deflateBound(z, len > ULONG_MAX ? ULONG_MAX : (uLong)len) + 16;
    z->avail_in = 0;
    for (;;) {
        s_refill(z, &in, &left);
        if (s_buf_room(b, first, SIZE_MAX) != 0)
            return PUSH_WS_DEFLATE_INTERNAL;
        s_buf_out(b, z);
        uInt room = z->avail_out;
        int flush = left ? Z_NO_FLUSH : Z_SYNC_FLUSH;
        int rc = deflate(z, flush);
        b->len += room - z->avail_out;
        if (rc == Z_STREAM_ERROR)
            return PUSH_WS_DEFLATE_INTERNAL;
        /* the flush is complete once deflate leaves output space unused */
        if (flush == Z_SYNC_FLUSH && z->avail_in == 0 && z->avail_out > 0)
            return PUSH_WS_DEFLATE_OK;
    }
}

/* A sync flush always ends with an empty stored block: 00 00 ff ff, which
 * the receiver puts back (RFC 7692 §7.2.1). */
static int s_strip_tail(s_buf *b)
{
    if (b->len < 4 || memcmp(b->data + b->len - 4, s_tail, 4) != 0)
        return PUSH_WS_DEFLATE_INTERNAL;
    b->len -= 4;
    return PUSH_WS_DEFLATE_OK;
}

/* An empty message is the single byte 00: the header of an empty stored
 * block whose LEN/NLEN the receiver appends.  Deflate cannot give it:
 * after a flush, a second flush without input produces nothing. */
static int s_empty_message(s_buf *b)
{
    if (s_buf_room(b, 1, 1) != 0)
        return PUSH_WS_DEFLATE_INTERNAL;
    b->data[b->len++] = 0x00;
    return PUSH_WS_DEFLATE_OK;
}

int push_ws_compress(push_ws_compressor *c, const void *in, size_t len,
                     unsigned char **out, size_t *out_len)
{
    s_buf b = { NULL, 0, 0 };
    int rc = PUSH_WS_DEFLATE_INTERNAL;
    if (c->failed)
        return s_finish(rc, &b, out, out_len);
    if (len == 0)
        rc = s_empty_message(&b);
    else if (s_deflate_open(c) == 0 && (rc = s_deflate_all(c, in, len, &b)) == 0)
        rc = s_strip_tail(&b);
    /* an error leaves a window the peer never saw: no way back */
    if (rc != PUSH_WS_DEFLATE_OK)
        c->failed = 1;
    if (rc != PUSH_WS_DEFLATE_OK || c->no_takeover)
        s_deflate_close(c);
    return s_finish(rc, &b, out, out_len);
}

/* ==== decompressor ============================================================= */

struct push_ws_decompressor {
    z_stream z;
    int      live;
    int      failed;
    int      bits, no_takeover;
};

push_ws_decompressor *push_ws_decompressor_new(int window_bits, int no_context_takeover)
{
    if (window_bits < 8 || window_bits > 15)
        return NULL;
    push_ws_decompressor *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    /* zlib-based clients told 8 compress with 9; see ws_deflate.h */
    d->bits = window_bits < 9 ? 9 : window_bits;
    d->no_takeover = no_context_takeover != 0;
    return d;
}

static void s_inflate_close(push_ws_decompressor *d)
{
    if (d->live)
        inflateEnd(&d->z);
    d->live = 0;
}

void push_ws_decompressor_free(push_ws_decompressor *d)
{
    if (!d)
        return;
    s_inflate_close(d);
    free(d);
}

static int s_inflate_open(push_ws_decompressor *d)
{
    if (d->live)
        return 0;
    memset(&d->z, 0, sizeof d->z);
    if (inflateInit2(&d->z, -d->bits) != Z_OK)
        return -1;
    d->live = 1;
    return 0;
}

/* A block with BFINAL ended the deflate stream, but the message (and with
 * context takeover, the next ones) may go on referring to what came
 * before: start a new stream over the same LZ77 window. */
static int s_inflate_restart(push_ws_decompressor *d)
{
    unsigned char *dict = malloc((size_t)1 << d->bits);
    uInt n = 0;
    if (!dict)
        return PUSH_WS_DEFLATE_INTERNAL;
    int rc = inflateGetDictionary(&d->z, dict, &n);
    if (rc == Z_OK)
        rc = inflateReset(&d->z);
    if (rc == Z_OK && n > 0)
        rc = inflateSetDictionary(&d->z, dict, n);
    free(dict);
    return rc == Z_OK ? PUSH_WS_DEFLATE_OK : PUSH_WS_DEFLATE_INTERNAL;
}

static int s_inflate_error(int zrc)
{
    return zrc == Z_DATA_ERROR || zrc == Z_NEED_DICT ? PUSH_WS_DEFLATE_CORRUPT
                                                     : PUSH_WS_DEFLATE_INTERNAL;
}

/* Where inflation stopped. */
enum { S_MID_BLOCK, S_BLOCK_END, S_STREAM_END };

/* Inflate all of in into b, at most limit - 1 bytes in all; *where tells
 * where the input ended. */
static int s_inflate_part(push_ws_decompressor *d, const unsigned char *in, size_t len,
                          s_buf *b, size_t limit, int *where)
{
    z_stream *z = &d->z;
    size_t left = len;
    /* a first guess, doubled as needed: reserving for the worst case would
     * let a small message pin a buffer the size of the limit */
    size_t first = len < SIZE_MAX / 4 ? len * 2 + 1024 : SIZE_MAX;
    z->avail_in = 0;
    for (;;) {
        s_refill(z, &in, &left);
        if (s_buf_room(b, first, limit) != 0)
            return PUSH_WS_DEFLATE_INTERNAL;
        s_buf_out(b, z);
        uInt room = z->avail_out;
        int rc = inflate(z, Z_SYNC_FLUSH);
        b->len += room - z->avail_out;
        if (b->len >= limit)    /* the buffer never exceeds limit: this is max_out + 1 */
            return PUSH_WS_DEFLATE_TOO_BIG;
        if (rc == Z_STREAM_END) {
            if ((rc = s_inflate_restart(d)) != PUSH_WS_DEFLATE_OK)
                return rc;
            if (z->avail_in == 0 && left == 0) {
                *where = S_STREAM_END;
                return PUSH_WS_DEFLATE_OK;
            }
            continue;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR)
            return s_inflate_error(rc);
        if (z->avail_in == 0 && left == 0 && z->avail_out > 0) {
            /* bit 128: waiting for the header of a new block */
            *where = (z->data_type & 128) ? S_BLOCK_END : S_MID_BLOCK;
            return PUSH_WS_DEFLATE_OK;
        }
    }
}

/* The message, then the four bytes its sender stripped.  A message must
 * end between blocks, or the next one would be read from the middle of a
 * block.  One that ends exactly with a BFINAL block lacks the 00 byte RFC
 * 7692 §7.2.3.4 asks for; it is complete as it is, and the tail, which
 * would start a block it cannot finish, is left out. */
static int s_inflate_message(push_ws_decompressor *d, const unsigned char *in, size_t len,
                             s_buf *b, size_t limit)
{
    int where = S_MID_BLOCK;
    int rc = s_inflate_part(d, in, len, b, limit, &where);
    if (rc == PUSH_WS_DEFLATE_OK && where != S_STREAM_END)
        rc = s_inflate_part(d, s_tail, sizeof s_tail, b, limit, &where);
    if (rc == PUSH_WS_DEFLATE_OK && where == S_MID_BLOCK)
        rc = PUSH_WS_DEFLATE_CORRUPT;
    return rc;
}

int push_ws_decompress(push_ws_decompressor *d, const void *in, size_t len, size_t max_out,
                       unsigned char **out, size_t *out_len)
{
    s_buf b = { NULL, 0, 0 };
    /* one byte past the limit is room enough to see the limit crossed */
    size_t limit = max_out < SIZE_MAX ? max_out + 1 : SIZE_MAX;
    int rc = PUSH_WS_DEFLATE_INTERNAL;
    if (d->failed)
        return s_finish(rc, &b, out, out_len);
    if (len == 0)
        rc = PUSH_WS_DEFLATE_OK;
    else if (s_inflate_open(d) == 0)
        rc = s_inflate_message(d, in, len, &b, limit);
    if (rc != PUSH_WS_DEFLATE_OK)
        d->failed = 1;
    if (rc != PUSH_WS_DEFLATE_OK || d->no_takeover)
        s_inflate_close(d);
    return s_finish(rc, &b, out, out_len);
}
