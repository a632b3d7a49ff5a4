/*
 * push_token.h — signed channel tokens: who may subscribe to, publish on or
 * see the presence of which channels, until when.
 *
 *   v1.<base64url(payload JSON)>.<base64url(HMAC-SHA256(secret, "v1." + payload part))>
 *
 * base64url is RFC 4648 §5 without padding.  The payload is a JSON object:
 *   "ch"   array of channel names or patterns (required, 1..PUSH_TOKEN_MAX_CHANNELS):
 *          "news" is that channel, "room:*" every channel starting with
 *          "room:", "*" every channel;
 *   "r"    the rights, a non-empty string of distinct letters of "spl":
 *          s = subscribe, p = publish, l = presence (required);
 *   "exp"  expiry, Unix seconds (required): valid while now < exp;
 *   "iat"  issue time, Unix seconds (optional, informative);
 *   "sub"  the holder's identity (optional; 1..128 bytes of UTF-8 text,
 *          see push_identity_valid), which becomes its presence identity.
 * Other members are ignored.  docs/protocol.md ("Tokens") says the same for
 * people who mint tokens in other languages.
 *
 * Compiled into mod_push (verification) and pushctl (minting).  Nothing here
 * logs, keeps state or allocates except where it says so.
 */
#ifndef PUSH_TOKEN_H
#define PUSH_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "push_proto.h"

#define PUSH_TOKEN_MAX          4096   /* bytes in a token; longer ones are malformed */
#define PUSH_TOKEN_MAX_CHANNELS 64     /* entries of "ch" */
#define PUSH_TOKEN_SECRET_MIN   32     /* bytes of secret, at least */
#define PUSH_TOKEN_SECRET_MAX   4096   /* bytes of a secret file, at most */
#define PUSH_TOKEN_SIG_LEN      32     /* HMAC-SHA256 */

/* Rights, as letters of "r". */
#define PUSH_RIGHT_SUBSCRIBE 's'
#define PUSH_RIGHT_PUBLISH   'p'
#define PUSH_RIGHT_PRESENCE  'l'

typedef enum push_token_result {
    PUSH_TOKEN_OK = 0,
    PUSH_TOKEN_MISSING,        /* no token (NULL or empty) */
    PUSH_TOKEN_MALFORMED,      /* not v1.<b64url>.<b64url>, too long, or a bad payload */
    PUSH_TOKEN_BAD_SIGNATURE,  /* well formed, but not signed with this secret */
    PUSH_TOKEN_EXPIRED,        /* signed, but now >= exp */
    PUSH_TOKEN_NO_RIGHT        /* valid, but not for this channel and right */
} push_token_result;

/* A short English reason ("token expired", ...), static. */
const char *push_token_result_str(push_token_result r);

/* The name of a right letter: "subscribe", "publish", "presence" ("?" otherwise). */
const char *push_token_right_name(int right);

/* What a verified token says.  ch[] is malloc'ed: push_token_claims_free(). */
typedef struct push_token_claims {
    char     sub[PUSH_IDENTITY_MAX + 1];   /* "" when the token names nobody */
    int64_t  exp;
    int64_t  iat;                          /* 0 when absent */
    char     rights[4];                    /* the letters of "r", NUL-terminated */
    int      nch;
    char   **ch;
} push_token_claims;

/* Check a token's form, signature and expiry (in that order; the payload is
 * only parsed once the signature is good) and fill *out (zeroed and empty
 * unless the result is PUSH_TOKEN_OK).  token may be NULL. */
push_token_result push_token_decode(const void *secret, size_t secret_len, const char *token,
                                    int64_t now, push_token_claims *out);

/* 1 when the claims grant right (a PUSH_RIGHT_* letter) on channel. */
int push_token_allows(const push_token_claims *c, const char *channel, int right);

void push_token_claims_free(push_token_claims *c);

/* decode + allows.  identity (PUSH_IDENTITY_MAX + 1 bytes, may be NULL)
 * receives the token's "sub" ("" when none) when the result is OK or
 * NO_RIGHT, "" otherwise. */
push_token_result push_token_verify(const void *secret, size_t secret_len, const char *token,
                                    int64_t now, const char *channel, int right,
                                    char *identity);

/* Mint a token.  sub may be NULL; channels are nch names or patterns; rights
 * is a string of distinct letters of "spl"; iat may be 0 (then omitted).
 * Returns a malloc'ed NUL-terminated token, or NULL with errno EINVAL (an
 * argument is not valid, or the token would exceed PUSH_TOKEN_MAX) or ENOMEM. */
char *push_token_mint(const void *secret, size_t secret_len, const char *sub,
                      const char *const *channels, int nch, const char *rights,
                      int64_t iat, int64_t exp);

/* A channel pattern: a channel name, or 0..PUSH_CHANNEL_MAX-1 channel
 * characters followed by one '*' (alone: every channel).  1 when valid. */
int push_token_pattern_valid(const char *pattern, size_t len);

/* 1 when channel matches pattern (a trailing '*' matches any suffix, the
 * empty one too). */
int push_token_pattern_match(const char *pattern, const char *channel);

/* Rights string: 1..3 distinct letters of "spl".  1 when valid. */
int push_token_rights_valid(const char *rights);

/* ---- base64url (RFC 4648 §5, no padding) ------------------------------- */

/* Characters needed to encode len bytes (without the NUL). */
size_t push_b64url_len(size_t len);
/* Encode; out needs push_b64url_len(len) + 1 bytes; NUL-terminated.
 * Returns the length. */
size_t push_b64url_encode(char *out, const void *in, size_t len);
/* Decode strictly: only [A-Za-z0-9_-], no padding, no length of 4k+1, and
 * unused trailing bits must be zero (one encoding per value).  out needs
 * len * 3 / 4 + 1 bytes.  Returns 0 and sets *outlen, or -1. */
int push_b64url_decode(const char *in, size_t len, unsigned char *out, size_t *outlen);

/* ---- the secret ---------------------------------------------------------- */

/* Read a secret file: its bytes, without trailing CR / LF characters (so
 * that `openssl rand -hex 32 > file` works), PUSH_TOKEN_SECRET_MIN to
 * PUSH_TOKEN_SECRET_MAX bytes.  buf needs PUSH_TOKEN_SECRET_MAX bytes.
 * *world_readable (may be NULL) tells whether others may read the file.
 * Returns 0, or -1 and a one-line message in err. */
int push_token_secret_load(const char *path, unsigned char *buf, size_t *len,
                           int *world_readable, char *err, size_t errlen);

#endif
