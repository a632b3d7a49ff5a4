/*
 * ws_deflate.h — the permessage-deflate WebSocket extension (RFC 7692),
 * server side, on zlib: negotiation of the Sec-WebSocket-Extensions
 * header, and per-message compression and decompression.  Pure C, no
 * Apache.
 *
 * Negotiation.  The client's header may carry several offers, in its order
 * of preference, separated by commas.  The first permessage-deflate offer
 * whose parameters are all known, given once and valid is accepted; the
 * others are declined (declining is always allowed: the connection then
 * simply runs uncompressed).  A header that does not parse at all is
 * declined as a whole, since where one offer ends is then unknowable.
 *
 * server_max_window_bits=8.  zlib cannot compress raw deflate with a
 * 256-byte window (deflateInit2 refuses windowBits -8), and the server must
 * answer with a value no larger than the one offered (RFC 7692 §7.1.2.1),
 * so answering 9 — or using 9 while answering 8 — would let the server
 * emit references the client is entitled to reject.  Such an offer is
 * therefore declined and the next offer considered (clients that send it
 * usually follow with a plainer fallback offer).
 *
 * client_max_window_bits=8 is accepted: only the client compresses with
 * it.  The decompressor inflates with a window of at least 9 bits, because
 * zlib-based clients asked for 8 silently use 9; a larger inflate window
 * accepts everything a smaller one does.
 *
 * Compression (server to client): a whole message is deflated with
 * Z_SYNC_FLUSH and the trailing 00 00 ff ff removed (RFC 7692 §7.2.1).
 * An empty message becomes the single byte 00.  With context takeover the
 * LZ77 window carries over from message to message (and the compressor
 * holds about 2^(bits+2) + 128 KiB of zlib state between messages);
 * without it each message is compressed alone and the zlib state is
 * released between messages, so an idle connection holds nothing — and the
 * compressed bytes of a message then depend only on (bits, level, data),
 * so one compression can serve every such subscriber.
 *
 * Decompression (client to server): 00 00 ff ff is appended and the result
 * inflated; output beyond the limit is "too big" (the caller sends 1009),
 * undecodable data or data that does not end on a deflate block boundary
 * is "corrupt" (1007), out of memory or a zlib failure "internal" (1011).
 * Blocks with BFINAL set are allowed (RFC 7692 §7.2.3.4): inflation goes on
 * after them with the LZ77 window kept; a message that ends right after
 * such a block, without the 00 byte §7.2.3.4 adds, is accepted as is.  An
 * empty compressed payload is taken as an empty message.  The inflate
 * window is the negotiated client window: it bounds memory, and a
 * reference into an earlier message beyond it is corrupt data.  Without
 * client context takeover the inflate state (about 2^bits + 7 KiB) is
 * released between messages.
 *
 * After any error a compressor or decompressor refuses further work (its
 * LZ77 window may no longer match the peer's): free it and close the
 * connection.  Neither is thread-safe; each belongs to one connection (or
 * to one thread, for a shared no-context-takeover compressor).
 */
#ifndef PUSH_WS_DEFLATE_H
#define PUSH_WS_DEFLATE_H

#include <stddef.h>

/* What the server wants; all zero is a good default. */
typedef struct push_ws_deflate_config {
    int server_no_context_takeover;  /* use it even unasked: no deflate state kept
                                        between messages, shareable output */
    int client_no_context_takeover;  /* demand it even unasked: no inflate state
                                        kept between messages */
    int server_max_window_bits;      /* cap for our compressor, 9..15; 0 = 15 */
    int client_max_window_bits;      /* cap asked of the client, 8..15; 0 = 15;
                                        sent only when the client offered the
                                        parameter, as the RFC requires */
} push_ws_deflate_config;

/* What was agreed. */
typedef struct push_ws_deflate_params {
    int server_no_context_takeover;
    int client_no_context_takeover;
    int server_max_window_bits;      /* 9..15: window of our compressor */
    int client_max_window_bits;      /* 8..15: window the client may use */
} push_ws_deflate_params;

/* Longest response value, NUL included. */
#define PUSH_WS_DEFLATE_RESPONSE_MAX 160

/* Negotiate from the request's Sec-WebSocket-Extensions value (NULL when
 * absent; several headers must be joined with ","), cfg may be NULL.
 * Returns 1 when an offer is accepted: params filled and response holding
 * the value of the Sec-WebSocket-Extensions response header.  Returns 0
 * when every offer is declined: response is "" and no header is sent. */
int push_ws_deflate_negotiate(const char *offers, const push_ws_deflate_config *cfg,
                              push_ws_deflate_params *params,
                              char response[PUSH_WS_DEFLATE_RESPONSE_MAX]);

/* Results of push_ws_compress and push_ws_decompress. */
enum {
    PUSH_WS_DEFLATE_OK       = 0,
    PUSH_WS_DEFLATE_INTERNAL = -1,  /* out of memory, zlib failure: close 1011 */
    PUSH_WS_DEFLATE_TOO_BIG  = -2,  /* inflated message over the limit: close 1009 */
    PUSH_WS_DEFLATE_CORRUPT  = -3   /* not valid compressed data: close 1007 */
};

typedef struct push_ws_compressor push_ws_compressor;
typedef struct push_ws_decompressor push_ws_decompressor;

/* window_bits 9..15 (params.server_max_window_bits), level 0..9 or -1 for
 * zlib's default.  Returns NULL on bad arguments or out of memory. */
push_ws_compressor *push_ws_compressor_new(int window_bits, int no_context_takeover,
                                           int level);
void push_ws_compressor_free(push_ws_compressor *c);

/* Compress one whole message.  On PUSH_WS_DEFLATE_OK, *out is a malloc'ed
 * buffer of *out_len bytes (never NULL) the caller frees, to be sent with
 * RSV1 on the message's first frame.  On error *out is NULL, *out_len 0. */
int push_ws_compress(push_ws_compressor *c, const void *in, size_t len,
                     unsigned char **out, size_t *out_len);

/* window_bits 8..15 (params.client_max_window_bits).  Returns NULL on bad
 * arguments or out of memory. */
push_ws_decompressor *push_ws_decompressor_new(int window_bits, int no_context_takeover);
void push_ws_decompressor_free(push_ws_decompressor *d);

/* Decompress one whole message (the reassembled payload of a message that
 * had RSV1).  At most max_out bytes of output are accepted.  On
 * PUSH_WS_DEFLATE_OK, *out is a malloc'ed buffer of *out_len bytes (never
 * NULL) the caller frees; text still has to be checked with
 * push_utf8_valid.  On error *out is NULL, *out_len 0. */
int push_ws_decompress(push_ws_decompressor *d, const void *in, size_t len, size_t max_out,
                       unsigned char **out, size_t *out_len);

#endif
