/*
 * push_curve.h — ZeroMQ CURVE keys: the one key-file reader, and the socket
 * settings, shared by pushbrokerd, mod_push and the clients.
 *
 * Keys travel as Z85 text (40 characters for 32 bytes, ZeroMQ RFC 32), the
 * form zmq_curve_keypair() and `pushctl keygen` produce.  A key file is text:
 *
 *   # pushbrokerd's public key            <- comment: a line starting with '#'
 *   rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7   # text after '#' is a comment too
 *
 * One key per line; blank lines, surrounding blanks and CR LF line ends are
 * ignored.  '#' is a Z85 character, but never the first of a key (32 bits of
 * Z85 text are at most "%nSc0"), so a line starting with '#' is always a
 * comment.  Anything else is an error that names the file and the line.
 *
 * CURVE applies to tcp:// endpoints only (push_curve_applies): an ipc://
 * socket is protected by its file permissions, and both sides follow the
 * same rule, so one set of keys serves a mix of endpoints.
 *
 * Nothing here logs or keeps state; errors are one line in err.
 */
#ifndef PUSH_CURVE_H
#define PUSH_CURVE_H

#include <stddef.h>

#define PUSH_CURVE_KEY_LEN   40     /* Z85 characters of a key */
#define PUSH_CURVE_KEY_BYTES 32     /* bytes of a key */
#define PUSH_CURVE_LINE_MAX  4096   /* longest line of a key file */

typedef char push_curve_key[PUSH_CURVE_KEY_LEN + 1];   /* Z85, NUL-terminated */

/* Decode a 40-character Z85 key into 32 bytes (out may be NULL: only check).
 * Returns 0, or -1 when s[0..len) is not one. */
int push_curve_decode(const char *s, size_t len, unsigned char *out);

/* Encode 32 bytes as Z85 (out: PUSH_CURVE_KEY_LEN + 1 bytes, NUL-terminated). */
void push_curve_encode(const unsigned char *in, push_curve_key out);

/* One line of a key file: 1 and the key in *key, 0 for a blank or comment
 * line, -1 with the reason in why. */
int push_curve_parse_line(const char *line, push_curve_key key, char *why, size_t whylen);

/* Called for every key of a file, in order; non-zero stops the reading
 * (push_curve_read_keys then fails with "stopped"). */
typedef int push_curve_key_fn(const push_curve_key key, void *arg);

/* Read every key of the regular file path.  *world_readable (may be NULL)
 * tells whether every user may read it.  Returns the number of keys, or -1
 * with "path: problem" / "path:line: problem" in err. */
long push_curve_read_keys(const char *path, push_curve_key_fn *fn, void *arg,
                          int *world_readable, char *err, size_t errlen);

/* A file holding exactly one key.  Returns 0, or -1 with the reason in err. */
int push_curve_load_key(const char *path, push_curve_key key, int *world_readable,
                        char *err, size_t errlen);

/* A key given either as its 40 Z85 characters or as the name of a key file.
 * *world_readable is 0 for a key given inline. */
int push_curve_key_arg(const char *arg, push_curve_key key, int *world_readable,
                       char *err, size_t errlen);

/* The public key of a secret key (zmq_curve_public).  Returns 0 or -1. */
int push_curve_public(const push_curve_key secret, push_curve_key public_key);

/* Whether CURVE is used on endpoint: tcp:// only (see above). */
int push_curve_applies(const char *endpoint);

/* Make sock, before it connects, a CURVE client of the server whose public
 * key is server, with the key pair (public_key, secret).  Returns 0, or -1
 * with errno set. */
int push_curve_set_client(void *sock, const push_curve_key server,
                          const push_curve_key public_key, const push_curve_key secret);

/* Make sock, before it binds, a CURVE server with secret; domain is the
 * ZAP domain its handshakes are authorized in.  Returns 0, or -1 (errno). */
int push_curve_set_server(void *sock, const push_curve_key secret, const char *domain);

#endif
