/*
 * push_proto.h — the mod_push wire protocol, written once.
 *
 * Compiled into mod_push (every Apache child), pushbrokerd and the client
 * library.  docs/protocol.md describes the same messages for people who write
 * clients in other languages; this header is the authority for C code.
 *
 * Every message is a ZeroMQ multipart message.  Frame 0 is a command word
 * (ASCII, upper case).  Integers travel as decimal ASCII, so that PHP, shell
 * and Python clients need no binary packing.  Data frames are raw bytes.
 *
 * Contract of the helpers below: they never allocate unless they say so,
 * they never block unless the socket call they wrap blocks, and on failure
 * they return a negative value (or NULL) and leave their outputs untouched.
 */
#ifndef PUSH_PROTO_H
#define PUSH_PROTO_H

#include <stddef.h>
#include <stdint.h>

/* ---- default endpoints (loopback only) --------------------------------- */
#define PUSH_DEFAULT_API_ENDPOINT  "tcp://127.0.0.1:7701" /* ROUTER: REQ/DEALER clients */
#define PUSH_DEFAULT_PUSH_ENDPOINT "tcp://127.0.0.1:7702" /* PULL: fire-and-forget PUSH clients */
#define PUSH_DEFAULT_LINK_ENDPOINT "tcp://127.0.0.1:7703" /* ROUTER: mod_push children (DEALER) */

/* ---- limits ------------------------------------------------------------ */
#define PUSH_CHANNEL_MAX      128        /* bytes in a channel name */
#define PUSH_EVENT_MAX        64         /* bytes in an event name */
#define PUSH_DEFAULT_MAX_MSG  (64 * 1024) /* default max data size in bytes */
#define PUSH_HISTORY_PAGE     1000       /* most messages in one HISTORY / HIST reply */
#define PUSH_MAX_FRAMES       (8 + 4 * PUSH_HISTORY_PAGE) /* frames accepted in one message */

/* ---- application API (api and push endpoints) ------------------------- */
/* request:  PUB <channel> <data> [<event>]        reply: OK <id> <subscribers>
 * request:  HISTORY <channel> <after_id> [<limit>] reply: OK <last_id> <count>
 *                                                   then per message: <id> <event> <data> <time_us>
 * request:  STATS                                  reply: OK <json>
 * request:  PING                                   reply: PONG <epoch>
 * request:  PRESENCE <channel>                     reply: OK <json>  (see docs/protocol.md)
 * request:  one frame holding a JSON object (first byte '{'), see
 *           docs/protocol.md; the reply is one JSON frame.
 * any error:                                       reply: ERR <code> <message>
 */
#define PUSH_CMD_PUB      "PUB"
#define PUSH_CMD_HISTORY  "HISTORY"
#define PUSH_CMD_STATS    "STATS"
#define PUSH_CMD_PING     "PING"
#define PUSH_CMD_PRESENCE "PRESENCE"
#define PUSH_REP_OK       "OK"
#define PUSH_REP_ERR      "ERR"
#define PUSH_REP_PONG     "PONG"

/* error codes carried in ERR replies and JSON "error" fields */
#define PUSH_ERR_BAD_REQUEST   "bad_request"    /* malformed message or JSON */
#define PUSH_ERR_BAD_CHANNEL   "bad_channel"    /* channel name not valid */
#define PUSH_ERR_TOO_LARGE     "too_large"      /* data over the size limit */
#define PUSH_ERR_UNKNOWN_CMD   "unknown_command"
#define PUSH_ERR_UNAVAILABLE   "unavailable"    /* broker link down (mod_push only) */

/* ---- link between pushbrokerd and mod_push children ------------------- */
/* child -> broker:
 *   HELLO <pid>                          broker answers WELCOME <epoch>
 *   SUB <channel> <count>                local subscriber count (0 = none); no reply
 *   HIST <reqid> <channel> <after>       after = id, or "-" for "only tell me last id"
 *        reply: HIST <reqid> OK <last_id> <oldest_id> then per message <id> <event> <data> <time_us>
 *        or     HIST <reqid> ERR <code> <message>
 *   PUBLISH <reqid> <channel> <data> <event>
 *        reply: PUBACK <reqid> OK <id> <subscribers> | PUBACK <reqid> ERR <code> <message>
 *   PING                                 broker answers PONG <epoch>
 *   PJOIN <channel> <identity>           one more present connection of identity
 *   PLEAVE <channel> <identity>          one less (both: no reply)
 *   PRESENCE <reqid> <channel>           reply: PRESENCE <reqid> OK <json>
 * broker -> child:
 *   MSG <channel> <id> <event> <data> <time_us>   a new message for a channel with subscribers
 *   PEVENT <channel> <join|leave> <identity> <connections> <time_us>
 *                                        presence changed, sent like MSG
 *   RESET                                the broker does not know this child: send HELLO,
 *                                        every SUB and every PJOIN again
 */
#define PUSH_LINK_HELLO    "HELLO"
#define PUSH_LINK_WELCOME  "WELCOME"
#define PUSH_LINK_SUB      "SUB"
#define PUSH_LINK_HIST     "HIST"
#define PUSH_LINK_PUBLISH  "PUBLISH"
#define PUSH_LINK_PUBACK   "PUBACK"
#define PUSH_LINK_PING     "PING"
#define PUSH_LINK_PONG     "PONG"
#define PUSH_LINK_MSG      "MSG"
#define PUSH_LINK_RESET    "RESET"
#define PUSH_LINK_PJOIN    "PJOIN"
#define PUSH_LINK_PLEAVE   "PLEAVE"
#define PUSH_LINK_PRESENCE "PRESENCE"
#define PUSH_LINK_PEVENT   "PEVENT"
#define PUSH_PRESENCE_JOIN  "join"
#define PUSH_PRESENCE_LEAVE "leave"
#define PUSH_IDENTITY_MAX   128          /* bytes in a presence identity */

/* ---- frames ------------------------------------------------------------ */

/* A received multipart message: frames point into zmq-owned memory held by
 * the push_frames object until push_frames_close(). */
typedef struct push_frame {
    const char *data;
    size_t      size;
} push_frame;

typedef struct push_frames {
    int         count;
    push_frame *frame;   /* count entries */
    void       *msgs;    /* zmq_msg_t[count], private */
} push_frames;

/* Receive one whole multipart message from a ZeroMQ socket.  flags is 0 or
 * ZMQ_DONTWAIT.  Returns 0, or -1 with errno set (EAGAIN, EINTR, ETERM,
 * EPROTO when the message has more than PUSH_MAX_FRAMES frames; the rest of
 * such a message is consumed and dropped).  On success the caller owns *out
 * and must call push_frames_close(). */
int  push_frames_recv(void *socket, push_frames *out, int flags);
void push_frames_close(push_frames *f);

/* True when frame i exists and equals the NUL-terminated word. */
int  push_frame_is(const push_frames *f, int i, const char *word);

/* Send count frames as one multipart message.  Returns 0 or -1 (errno). */
int  push_send_frames(void *socket, const push_frame *frames, int count, int flags);

/* Convenience: frame from a C string (NULL gives an empty frame). */
push_frame push_str_frame(const char *s);

/* ---- values ------------------------------------------------------------ */

/* A channel name is 1..PUSH_CHANNEL_MAX bytes of [A-Za-z0-9_.:@~-].
 * Returns 1 when valid. */
int  push_channel_valid(const char *name, size_t len);

/* An event name is 0..PUSH_EVENT_MAX bytes of printable ASCII without
 * spaces, CR or LF (it becomes an SSE "event:" field).  Returns 1 when valid. */
int  push_event_valid(const char *name, size_t len);

/* A presence identity is 1..PUSH_IDENTITY_MAX bytes of valid UTF-8 without
 * control characters.  Returns 1 when valid. */
int  push_identity_valid(const char *s, size_t len);

/* Parse a message id / cursor: decimal digits only, no sign, no spaces,
 * value <= 2^63-1.  Returns 0 and sets *out, or -1. */
int  push_parse_u64(const char *s, size_t len, uint64_t *out);

/* Format v in decimal into buf (at least 21 bytes); returns the length. */
int  push_fmt_u64(char *buf, uint64_t v);

/* ---- JSON publish requests -------------------------------------------- */

/* A decoded publish request.  Strings are malloc'ed copies, owned by the
 * struct; release with push_publish_req_free(). */
typedef struct push_publish_req {
    char  *channel;    /* may be NULL when the channel comes from elsewhere (URL) */
    char  *event;      /* NULL when absent */
    char  *data;       /* never NULL after a successful decode */
    size_t data_len;
} push_publish_req;

/* Decode {"op":"publish","channel":"c","data":"...","event":"e"}.
 * need_channel: whether "channel" (and "op") are required.  The data field
 * must be a string.  A request holding an escaped NUL (\u0000) is refused,
 * since the strings are NUL-terminated.  Returns 0, or -1 and writes a static error code
 * (PUSH_ERR_*) and a static human message. */
int  push_publish_req_decode(const char *json, size_t len, int need_channel,
                             push_publish_req *out,
                             const char **err_code, const char **err_msg);
void push_publish_req_free(push_publish_req *req);

/* Format an error message into err (errlen bytes; nothing when err is
 * NULL) and return -1: the error convention of the parsers and readers
 * that report to a caller-provided buffer. */
int push_errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A malloc'd, NUL-terminated copy of len bytes at s (which may hold NUL
 * bytes, unlike strndup's input; s may be NULL when len is 0), or NULL when
 * out of memory.  The caller frees it. */
char *push_memdup_str(const void *s, size_t len);

#endif
