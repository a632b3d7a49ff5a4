/*
 * fuzz_ws_deflate.c — permessage-deflate (mod_push/ws_deflate.c): the
 * Sec-WebSocket-Extensions negotiation and the inflater that client
 * messages go through.
 *
 * Input: byte 0 = mode and settings, the rest = payload.
 *   bit 0 = 0: negotiation.  The payload, cut at its first NUL, is the
 *              header value.  Bits 1-7 pick the server config:
 *              bit 1 server_no_context_takeover, bit 2 client_no_context_takeover,
 *              bits 3-5 server_max_window_bits (0 or 9..15), bits 6-7 client cap
 *              (0, 8, 10, 15).
 *   bit 0 = 1: decompression.  Bits 1-3: window bits 8 + v; bit 4:
 *              client_no_context_takeover; bits 5-7: max_out (0, 1, 16, 100,
 *              1000, 4096, 65536, 1 MiB).  The first payload byte says where
 *              to cut the rest in two messages (value * len / 256), which
 *              are inflated one after the other on the same decompressor
 *              (context takeover carries the window over).
 *              Then the inflated text is compressed and inflated again:
 *              it must come back unchanged.
 *
 * Checked (see ws_deflate.h):
 *  - negotiation returns 0 with "" or 1 with params in range and a response
 *    that starts with "permessage-deflate" and fits; the response, offered
 *    again with the same config, is accepted with the same params and the
 *    same response (the client's view of the agreement is consistent);
 *  - decompression returns one of the four results, OK with a buffer of at
 *    most max_out bytes, errors with NULL/0, and after an error refuses;
 *  - compress then decompress is the identity.
 */
#include "fuzz_common.h"

#include "ws_deflate.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static void s_check_params(const push_ws_deflate_params *pp)
{
    FUZZ_CHECK(pp->server_max_window_bits >= 9 && pp->server_max_window_bits <= 15);
    FUZZ_CHECK(pp->client_max_window_bits >= 8 && pp->client_max_window_bits <= 15);
    FUZZ_CHECK(pp->server_no_context_takeover == 0 || pp->server_no_context_takeover == 1);
    FUZZ_CHECK(pp->client_no_context_takeover == 0 || pp->client_no_context_takeover == 1);
}

static void s_negotiate(uint8_t settings, const uint8_t *data, size_t size)
{
    static const int smwb[8] = { 0, 9, 10, 11, 12, 13, 14, 15 };
    static const int cmwb[4] = { 0, 8, 10, 15 };
    push_ws_deflate_config cfg = {
        .server_no_context_takeover = (settings >> 1) & 1,
        .client_no_context_takeover = (settings >> 2) & 1,
        .server_max_window_bits = smwb[(settings >> 3) & 7],
        .client_max_window_bits = cmwb[(settings >> 6) & 3],
    };
    char *offers = malloc(size + 1);
    FUZZ_CHECK(offers != NULL);
    memcpy(offers, data, size);
    offers[size] = '\0';
    push_ws_deflate_params pp, pp2;
    char resp[PUSH_WS_DEFLATE_RESPONSE_MAX], resp2[PUSH_WS_DEFLATE_RESPONSE_MAX];
    memset(resp, 'x', sizeof resp);
    int rc = push_ws_deflate_negotiate(offers, &cfg, &pp, resp);
    FUZZ_CHECK(rc == 0 || rc == 1);
    FUZZ_CHECK(memchr(resp, '\0', sizeof resp) != NULL);
    if (rc == 0) {
        FUZZ_CHECK(resp[0] == '\0');
    } else {
        s_check_params(&pp);
        FUZZ_CHECK(strncmp(resp, "permessage-deflate", 18) == 0);
        FUZZ_CHECK(resp[18] == '\0' || resp[18] == ';');
        /* the agreement read back as an offer */
        memset(resp2, 'x', sizeof resp2);
        FUZZ_CHECK(push_ws_deflate_negotiate(resp, &cfg, &pp2, resp2) == 1);
        FUZZ_CHECK(memcmp(&pp, &pp2, sizeof pp) == 0);
        FUZZ_CHECK(strcmp(resp, resp2) == 0);
    }
    /* NULL cfg means the defaults */
    (void)push_ws_deflate_negotiate(offers, NULL, &pp, resp);
    free(offers);
}

/* Inflate one message; returns the result (out filled only on OK). */
static int s_inflate(push_ws_decompressor *d, const uint8_t *in, size_t len, size_t max_out,
                     int *failed, unsigned char **keep, size_t *keep_len)
{
    unsigned char *out = (unsigned char *)"sentinel";
    size_t out_len = 777;
    int rc = push_ws_decompress(d, in, len, max_out, &out, &out_len);
    FUZZ_CHECK(rc == PUSH_WS_DEFLATE_OK || rc == PUSH_WS_DEFLATE_INTERNAL
               || rc == PUSH_WS_DEFLATE_TOO_BIG || rc == PUSH_WS_DEFLATE_CORRUPT);
    if (*failed)
        FUZZ_CHECK(rc == PUSH_WS_DEFLATE_INTERNAL);
    if (rc != PUSH_WS_DEFLATE_OK) {
        FUZZ_CHECK(out == NULL && out_len == 0);
        *failed = 1;
        return rc;
    }
    FUZZ_CHECK(out != NULL);
    FUZZ_CHECK(out_len <= max_out);
    volatile unsigned sum = 0;
    for (size_t i = 0; i < out_len; i++)
        sum += out[i];
    (void)sum;
    if (keep && !*keep) {
        *keep = out;
        *keep_len = out_len;
    } else {
        free(out);
    }
    return rc;
}

/* compress(text) inflates back to text */
static void s_round_trip(const unsigned char *text, size_t len, int bits, int nct)
{
    int cbits = bits < 9 ? 9 : bits;
    push_ws_compressor *c = push_ws_compressor_new(cbits, nct, -1);
    push_ws_decompressor *d = push_ws_decompressor_new(bits, nct);
    FUZZ_CHECK(c && d);
    for (int round = 0; round < 2; round++) {     /* twice: the window carries over */
        unsigned char *z = NULL, *back = NULL;
        size_t zlen = 0, blen = 0;
        FUZZ_CHECK(push_ws_compress(c, text, len, &z, &zlen) == PUSH_WS_DEFLATE_OK);
        FUZZ_CHECK(z != NULL);
        FUZZ_CHECK(push_ws_decompress(d, z, zlen, len, &back, &blen) == PUSH_WS_DEFLATE_OK);
        FUZZ_CHECK(blen == len && (len == 0 || memcmp(back, text, len) == 0));
        free(z);
        free(back);
    }
    push_ws_compressor_free(c);
    push_ws_decompressor_free(d);
}

static void s_decompress(uint8_t settings, const uint8_t *data, size_t size)
{
    static const size_t max_outs[8] = { 0, 1, 16, 100, 1000, 4096, 65536, 1u << 20 };
    int bits = 8 + ((settings >> 1) & 7);
    int nct = (settings >> 4) & 1;
    size_t max_out = max_outs[settings >> 5];
    if (size == 0)
        return;
    size_t cut = (size_t)data[0] * (size - 1) / 256;
    data++;
    size--;
    push_ws_decompressor *d = push_ws_decompressor_new(bits, nct);
    FUZZ_CHECK(d != NULL);
    int failed = 0;
    unsigned char *text = NULL;
    size_t text_len = 0;
    s_inflate(d, data, cut, max_out, &failed, &text, &text_len);
    s_inflate(d, data + cut, size - cut, max_out, &failed, &text, &text_len);
    push_ws_decompressor_free(d);
    if (text)
        s_round_trip(text, text_len, bits, nct);
    else
        s_round_trip(data, size, bits, nct);   /* the raw bytes are text enough */
    free(text);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] & 1)
        s_decompress(data[0], data + 1, size - 1);
    else
        s_negotiate(data[0], data + 1, size - 1);
    return 0;
}
