/*
 * ws_frame.h — WebSocket framing, server side (RFC 6455 §5, §7.4, §8.1),
 * plus the two opening-handshake computations (§4.2).  Pure C, no Apache:
 * unit-tested on its own, driven by the module's reactor thread.
 *
 * Parser.  Bytes go in as they come off the socket, in pieces of any size
 * (one byte, or many frames at once: the result is the same).  Out come
 * complete, validated units through a callback: a whole data message with
 * all its fragments reassembled, or one control frame.  Control frames
 * that arrive between the fragments of a message are delivered at once,
 * before the message.  Any violation stops the parser with the close code
 * the caller must send (then close the connection):
 *
 *   1002 PUSH_WS_CLOSE_PROTOCOL
 *        - a client frame without the mask bit;
 *        - RSV2 or RSV3 set; RSV1 set unless allow_rsv1 and the frame is
 *          the first frame of a data message (never on continuation or
 *          control frames);
 *        - a reserved opcode (3-7, 0xB-0xF);
 *        - a control frame with FIN clear or a payload over 125 bytes;
 *        - a continuation frame with no message started, or a text/binary
 *          frame while a fragmented message is still open;
 *        - a length not in its shortest form (16-bit form below 126, 64-bit
 *          form below 65536) or a 64-bit length with the top bit set;
 *        - a close payload of 1 byte, or a close code not allowed on the
 *          wire (see push_ws_close_code_valid).
 *   1007 PUSH_WS_CLOSE_INVALID_DATA
 *        - an uncompressed text message that is not valid UTF-8, reported
 *          at the first byte that proves it even if more fragments were
 *          to follow, or at the end of the message when it stops inside a
 *          character;
 *        - a close reason that is not valid UTF-8.
 *   1009 PUSH_WS_CLOSE_TOO_BIG
 *        - a data message whose fragments add up to more than
 *          max_message_size bytes, reported as soon as a frame header
 *          announces it, before any of that payload is buffered.
 *   1011 PUSH_WS_CLOSE_INTERNAL
 *        - out of memory while buffering a message.
 *
 * Compressed messages (RSV1, permessage-deflate) are delivered as they
 * are on the wire with unit.compressed set: they are not UTF-8 checked
 * here, because only the inflated text is meaningful — the caller inflates
 * (ws_deflate.h), then validates text with push_utf8_valid (1007 if not).
 * max_message_size limits the compressed size; the inflated size is
 * limited by the decompressor.
 *
 * Memory: the parser owns at most one message buffer, which grows with the
 * bytes actually received (never beyond what the current frame header
 * announced, never beyond max_message_size), plus a fixed 125-byte control
 * frame buffer inside the struct.  Small buffers are kept for the next
 * message, large ones released after delivery.  Not thread-safe: one
 * parser per connection, used by one thread at a time.
 */
#ifndef PUSH_WS_FRAME_H
#define PUSH_WS_FRAME_H

#include <stddef.h>
#include <stdint.h>

#include "utf8.h"

/* Opcodes (RFC 6455 §5.2). */
enum {
    PUSH_WS_OP_CONT   = 0x0,
    PUSH_WS_OP_TEXT   = 0x1,
    PUSH_WS_OP_BINARY = 0x2,
    PUSH_WS_OP_CLOSE  = 0x8,
    PUSH_WS_OP_PING   = 0x9,
    PUSH_WS_OP_PONG   = 0xA
};

/* Close codes (RFC 6455 §7.4.1) this code produces or callers commonly send. */
enum {
    PUSH_WS_CLOSE_NORMAL       = 1000,
    PUSH_WS_CLOSE_GOING_AWAY   = 1001,
    PUSH_WS_CLOSE_PROTOCOL     = 1002,
    PUSH_WS_CLOSE_UNSUPPORTED  = 1003,
    PUSH_WS_CLOSE_NO_STATUS    = 1005,  /* never on the wire */
    PUSH_WS_CLOSE_ABNORMAL     = 1006,  /* never on the wire */
    PUSH_WS_CLOSE_INVALID_DATA = 1007,
    PUSH_WS_CLOSE_POLICY       = 1008,
    PUSH_WS_CLOSE_TOO_BIG      = 1009,
    PUSH_WS_CLOSE_EXTENSION    = 1010,
    PUSH_WS_CLOSE_INTERNAL     = 1011
};

#define PUSH_WS_CONTROL_MAX 125   /* payload limit of a control frame */
#define PUSH_WS_HEADER_MAX  10    /* longest unmasked (server) frame header */

/* One unit delivered by the parser.  Pointers are valid only during the
 * callback (copy what must outlive it); data is never NULL, even when len
 * is 0. */
typedef struct push_ws_unit {
    int                  opcode;      /* TEXT, BINARY, CLOSE, PING or PONG */
    int                  compressed;  /* data message with RSV1 on its first frame */
    const unsigned char *data;        /* the whole (unmasked) payload */
    size_t               len;
    /* CLOSE only: the code (0 when the payload was empty, which means "no
     * status": answer with an empty close or 1000) and the reason, valid
     * UTF-8, not NUL-terminated. */
    unsigned             close_code;
    const char          *reason;
    size_t               reason_len;
} push_ws_unit;

/* Returns 0 to go on.  Any other value stops the parser at once: feed
 * returns that value, and the parser refuses further input. */
typedef int (*push_ws_unit_fn)(void *arg, const push_ws_unit *unit);

/* Parser state.  The fields are private; the struct is public only so that
 * it can be embedded in a connection. */
typedef struct push_ws_parser {
    size_t          max_message;
    int             allow_rsv1;
    int             error;          /* sticky result once failed */
    /* frame being read */
    unsigned char   hdr[14];
    unsigned        hdr_len, hdr_need;
    int             in_payload;
    int             fin, rsv1, opcode;
    uint64_t        remaining;      /* payload bytes of this frame still to come */
    unsigned char   mask[4];
    unsigned        mask_pos;
    /* data message being assembled */
    int             msg_opcode;     /* 0: none open */
    int             msg_compressed;
    unsigned char  *msg;
    size_t          msg_len, msg_cap;
    push_utf8_state utf8;
    /* control frame being read */
    unsigned char   ctl[PUSH_WS_CONTROL_MAX];
    size_t          ctl_len;
} push_ws_parser;

/* max_message_size: largest data message accepted, in bytes, counted on
 * the wire (SIZE_MAX: no limit).  allow_rsv1: permessage-deflate was
 * negotiated.  Allocates nothing; cannot fail. */
void push_ws_parser_init(push_ws_parser *p, size_t max_message_size, int allow_rsv1);

/* Consume len bytes.  Returns 0 when all were consumed and nothing was
 * wrong (any partial frame is kept for the next call); otherwise the close
 * code of the first violation (see above) or the callback's non-zero
 * value, and every later call returns the same value without reading. */
int push_ws_parser_feed(push_ws_parser *p, const void *data, size_t len,
                        push_ws_unit_fn fn, void *arg);

/* Release the message buffer; the parser may then only be initialised
 * again.  Safe to call twice. */
void push_ws_parser_free(push_ws_parser *p);

/* 1 when code may appear in a close frame on the wire: 1000-1003,
 * 1007-1011, 3000-4999.  0 otherwise (1004-1006, 1012-2999, 1015 and
 * anything below 1000 or above 4999). */
int push_ws_close_code_valid(unsigned code);

/* ---- encoder (server frames are never masked) ---------------------------- */

/* Write the header of a server frame to buf (room for PUSH_WS_HEADER_MAX
 * bytes): 2, 4 or 10 bytes, the length always in its shortest form.
 * Returns the header length, or 0 (nothing written) when opcode is not a
 * 4-bit value or payload_len does not fit in 63 bits. */
size_t push_ws_frame_header(unsigned char *buf, int opcode, int fin, int rsv1,
                            uint64_t payload_len);

/* Write a close frame payload to buf (room for PUSH_WS_CONTROL_MAX bytes):
 * the 2-byte code then the reason (may be NULL), cut to 123 bytes on a
 * character boundary.  Returns the payload length.  The result is always a
 * payload the peer must accept: code 0 or a code not valid on the wire
 * gives the empty payload (0), and a reason that is not valid UTF-8 is
 * left out. */
size_t push_ws_close_payload(unsigned char *buf, unsigned code, const char *reason);

/* ---- opening handshake (libcrypto) -------------------------------------- */

/* 1 when key (Sec-WebSocket-Key) is the base64 of exactly 16 bytes: 22
 * characters of the base64 alphabet followed by "==".  0 otherwise, NULL
 * included.  Surrounding whitespace is not accepted: trim it first. */
int push_ws_key_valid(const char *key);

/* out = base64(SHA-1(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")), the
 * Sec-WebSocket-Accept value, NUL-terminated (28 characters).  Returns 0,
 * or -1 (out set to "") when the key is not valid per push_ws_key_valid. */
int push_ws_accept_key(const char *client_key, char out[29]);

#endif
