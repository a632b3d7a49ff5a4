/*
 * jsonesc.h — JSON text for values cJSON cannot print faithfully.
 *
 * Contract: json_add_u64() adds an integer member printed in plain decimal.
 * cJSON prints numbers from doubles and may choose exponent notation for
 * large integers (1.76372345678901e+15 for a microsecond timestamp ending in
 * 0), which clients then parse as floats.  Returns the new item or NULL.
 *
 * Message data is arbitrary bytes, but JSON strings are Unicode
 * text and cJSON strings stop at NUL.  json_quote() returns a malloc'ed,
 * NUL-terminated, double-quoted JSON string literal (ready for
 * cJSON_CreateRaw) in which valid UTF-8 is kept as is, control characters,
 * '"' and '\' are escaped (NUL becomes \u0000), and each byte that is not
 * part of valid UTF-8 becomes U+FFFD.  Returns NULL on ENOMEM.
 */
#ifndef PUSHBROKERD_JSONESC_H
#define PUSHBROKERD_JSONESC_H

#include <stddef.h>

#include <stdint.h>

struct cJSON;

char *json_quote(const void *data, size_t len);

struct cJSON *json_add_u64(struct cJSON *obj, const char *key, uint64_t v);

#endif
