/*
 * fuzz_values.c — the value checks every decoder relies on
 * (proto/push_proto.c): channel names, event names, presence identities
 * and message ids / cursors, each compared with a plain reference
 * implementation written from the contract in push_proto.h.
 *
 * The whole input is the value.  Checked:
 *  - push_channel_valid  == 1..PUSH_CHANNEL_MAX bytes of [A-Za-z0-9_.:@~-];
 *  - push_event_valid    == 0..PUSH_EVENT_MAX bytes of 0x21..0x7e;
 *  - push_identity_valid == 1..PUSH_IDENTITY_MAX bytes of well-formed UTF-8
 *    (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF)
 *    without the control characters U+0000..U+001F and U+007F;
 *  - push_parse_u64      == a strtoull()-based reading: digits only, no sign
 *    or blanks, value <= 2^63-1 (leading zeros allowed; at most 64 bytes,
 *    the implementation's own length cap);
 *  - push_fmt_u64 prints the canonical form, which parses back to the value;
 *  - push_frame_is on a one-frame message holding the input.
 * Every function reads only its len bytes (exact-size copy under ASan).
 */
#include "fuzz_common.h"

#include <errno.h>
#include <stdint.h>

#include "push_proto.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    return 0;
}

static int ref_channel(const uint8_t *s, size_t n)
{
    if (n < 1 || n > PUSH_CHANNEL_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
              || c == '_' || c == '.' || c == ':' || c == '@' || c == '~' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static int ref_event(const uint8_t *s, size_t n)
{
    if (n > PUSH_EVENT_MAX)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return 0;
    return 1;
}

/* Decode code points the long way (bit arithmetic, then range checks). */
static int ref_identity(const uint8_t *s, size_t n)
{
    if (n < 1 || n > PUSH_IDENTITY_MAX)
        return 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k;
        uint8_t c = s[i];
        if (c < 0x80) { cp = c; k = 1; }
        else if (c >= 0xC0 && c < 0xE0) { cp = c & 0x1F; k = 2; }
        else if (c >= 0xE0 && c < 0xF0) { cp = c & 0x0F; k = 3; }
        else if (c >= 0xF0 && c < 0xF8) { cp = c & 0x07; k = 4; }
        else return 0;
        if (i + k > n)
            return 0;
        for (size_t j = 1; j < k; j++) {
            if ((s[i + j] & 0xC0) != 0x80)
                return 0;
            cp = cp << 6 | (s[i + j] & 0x3F);
        }
        static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
        if (cp < min[k] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return 0;
        if (cp < 0x20 || cp == 0x7F)
            return 0;
        i += k;
    }
    return 1;
}

static int ref_u64(const uint8_t *s, size_t n, uint64_t *out)
{
    char buf[80];
    if (n < 1 || n > 64)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno == ERANGE || end != buf + n || v > (unsigned long long)INT64_MAX)
        return -1;
    *out = v;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = calloc(1, size ? size : 1);
    FUZZ_CHECK(s != NULL);
    if (size)
        memcpy(s, data, size);

    FUZZ_CHECK(push_channel_valid(s, size) == ref_channel(data, size));
    FUZZ_CHECK(push_event_valid(s, size) == ref_event(data, size));
    FUZZ_CHECK(push_identity_valid(s, size) == ref_identity(data, size));
    FUZZ_CHECK(push_channel_valid(NULL, size) == 0);
    FUZZ_CHECK(push_identity_valid(NULL, size) == 0);
    FUZZ_CHECK(push_event_valid(NULL, size) == (size == 0));

    uint64_t got = 0xdeadbeef, want = 0;
    int rc = push_parse_u64(s, size, &got);
    int ref = ref_u64(data, size, &want);
    FUZZ_CHECK(rc == ref);
    if (rc == 0) {
        FUZZ_CHECK(got == want);
        char buf[24];
        int n = push_fmt_u64(buf, got);
        FUZZ_CHECK(n >= 1 && n <= 19 && buf[n] == '\0' && (size_t)n == strlen(buf));
        FUZZ_CHECK(n == 1 || buf[0] != '0');
        uint64_t back = 0;
        FUZZ_CHECK(push_parse_u64(buf, (size_t)n, &back) == 0 && back == got);
    } else {
        FUZZ_CHECK(got == 0xdeadbeef);     /* output untouched on failure */
    }
    /* any 8 bytes: fmt then parse is the identity below 2^63 */
    if (size >= 8) {
        uint64_t v;
        memcpy(&v, data, 8);
        char buf[24];
        int n = push_fmt_u64(buf, v);
        FUZZ_CHECK(n >= 1 && n <= 20 && buf[n] == '\0');
        uint64_t back = 0;
        FUZZ_CHECK(push_parse_u64(buf, (size_t)n, &back) == (v <= (uint64_t)INT64_MAX ? 0 : -1));
        FUZZ_CHECK(v > (uint64_t)INT64_MAX || back == v);
    }

    push_frame fr = { s, size };
    push_frames f = { 1, &fr, NULL };
    char word[16];
    size_t wl = size < sizeof word - 1 ? size : sizeof word - 1;
    memcpy(word, data, wl);
    word[wl] = '\0';
    FUZZ_CHECK(push_frame_is(&f, 0, word) == (strlen(word) == size));
    FUZZ_CHECK(!push_frame_is(&f, 1, word) && !push_frame_is(&f, -1, word));
    free(s);
    return 0;
}
