/*
 * poll_format.h — JSON encodings of messages for polling transports and
 * for publish replies.  Pure functions, no Apache.
 */
#ifndef PUSH_POLL_FORMAT_H
#define PUSH_POLL_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* {"id":N,"event":"e"|null,"data":"...","time":T}, time in microseconds
 * since the epoch.  Data is expected to be UTF-8: control characters are
 * escaped, and bytes that are not valid UTF-8 become U+FFFD so that the
 * output is always valid JSON.  Returns malloc'ed text (length in *out_len)
 * or NULL when out of memory. */
char *push_json_msg_encode(uint64_t id, const char *event, const char *data, size_t len,
                           uint64_t time_us, size_t *out_len);

/* Append the JSON string literal of s (with quotes) to buf, which must have
 * room for push_json_str_max(len) bytes; returns the bytes written. */
size_t push_json_str(char *buf, const char *s, size_t len);
size_t push_json_str_max(size_t len);

#endif
