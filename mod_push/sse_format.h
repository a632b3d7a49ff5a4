/*
 * sse_format.h — Server-Sent Events encoding (WHATWG HTML, "server-sent
 * events", event stream interpretation).  Pure functions, no Apache.
 */
#ifndef PUSH_SSE_FORMAT_H
#define PUSH_SSE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* Encode one event:
 *   id: <id>\n
 *   event: <event>\n            (only when event is not NULL)
 *   data: <line>\n              (one per line of data; CRLF, CR and LF all
 *                                end a line, as a browser splits them)
 *   \n
 * Empty data gives one "data: " line, so the browser dispatches an event
 * with data "".  Returns a malloc'ed buffer (length in *out_len), or NULL
 * when out of memory. */
char *push_sse_encode(uint64_t id, const char *event, const char *data, size_t len,
                      size_t *out_len);

#endif
