/*
 * outbuf.h — the output buffer of a detached connection (PushDetach).
 *
 * Once a connection has left httpd, nothing frames or buffers its output
 * but this: bytes appended here are sent with non-blocking send(2), and in
 * a chunked response every flush becomes one HTTP/1.1 chunk.
 *
 * Contract
 *   - A push_outbuf is zeroed to start (no allocation until the first
 *     append) and owned by one thread at a time; it is not locked.
 *   - Chunked: the first append after a flush opens a chunk; closing it
 *     writes its size line in front of its data and "\r\n" after it.  An
 *     empty chunk is the last chunk, "0\r\n\r\n".  An open chunk is never
 *     sent in part: the peer would see a size line that is not yet known.
 *   - Once everything is sent the buffer is freed: an idle connection
 *     costs no buffer memory (that is what detaching is for).
 *   - No function here logs or blocks; errors are returned.
 */
#ifndef PUSH_OUTBUF_H
#define PUSH_OUTBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct push_outbuf {
    char   *buf;
    size_t  off, len, cap;  /* sent up to off, filled up to len, allocated cap */
    size_t  chunk_at;       /* where the open chunk's size line is reserved */
    int     in_chunk;
} push_outbuf;

/* Append len bytes (opening a chunk first when chunked and none is open).
 * 0, or -1 when out of memory (the buffer is left as it was). */
int push_outbuf_append(push_outbuf *o, int chunked, const char *data, size_t len);

/* Close the open chunk, if any, so that it can be sent.  0 or -1 (out of
 * memory). */
int push_outbuf_close_chunk(push_outbuf *o);

/* Send what is complete without blocking; *sent (may be NULL) gets the
 * bytes written by this call.  0: everything sent or the socket is full
 * (push_outbuf_pending tells which), -1: the connection failed (errno). */
int push_outbuf_send(push_outbuf *o, int fd, uint64_t *sent);

/* Bytes not sent yet? */
int push_outbuf_pending(const push_outbuf *o);

/* Free the buffer and zero it; safe on a zeroed one. */
void push_outbuf_free(push_outbuf *o);

#endif
