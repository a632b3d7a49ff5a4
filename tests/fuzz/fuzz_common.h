/*
 * fuzz_common.h — shared helpers for the libFuzzer harnesses in tests/fuzz/.
 *
 * Every harness defines LLVMFuzzerTestOneInput() and LLVMFuzzerInitialize(),
 * so that it links either with libFuzzer (clang -fsanitize=fuzzer) or with
 * tests/fuzz/standalone.c (any compiler: replays files, no fuzzing).
 *
 * Invariant violations call FUZZ_CHECK, which prints the failed condition
 * and aborts: libFuzzer (and ASan's abort handler) then saves the input.
 */
#ifndef PUSH_FUZZ_COMMON_H
#define PUSH_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                          \
    do {                                                                          \
        if (!(cond)) {                                                            \
            fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond,         \
                    __FILE__, __LINE__);                                          \
            abort();                                                              \
        }                                                                         \
    } while (0)

/* ---- reading the input ------------------------------------------------- */

/* A cursor over the input; taking past the end yields zeros. */
typedef struct fuzz_in {
    const uint8_t *p;
    size_t         left;
} fuzz_in;

static inline uint8_t fuzz_u8(fuzz_in *in)
{
    if (!in->left)
        return 0;
    in->left--;
    return *in->p++;
}

/* ---- multipart messages as text ------------------------------------------
 * Several harnesses take a sequence of multipart messages.  The encoding is
 * chosen for mutation: messages are separated by FUZZ_MSG_SEP (0x1e, ASCII
 * RS), frames inside a message by FUZZ_FRAME_SEP (0x1f, ASCII US).  Any other
 * byte, NUL included, is frame content.  So "PUB\x1fnews\x1fhello" is the
 * three-frame message PUB / news / hello. */
#define FUZZ_MSG_SEP   0x1e
#define FUZZ_FRAME_SEP 0x1f
#define FUZZ_MAX_FRAMES 64

typedef struct fuzz_frame {
    const char *data;
    size_t      size;
} fuzz_frame;

/* Cut the next message off *in: up to max frames into fr (the rest of the
 * message is ignored).  Each frame is a heap copy of exactly its size, so
 * that ASan reports a read one byte past any frame (the frames of a real
 * message live in separate zmq buffers too).  Returns the number of frames
 * (>= 1), or 0 when the input is used up.  Release with fuzz_free_msg(). */
static inline int fuzz_next_msg(fuzz_in *in, fuzz_frame *fr, int max)
{
    if (!in->left)
        return 0;
    const uint8_t *end = memchr(in->p, FUZZ_MSG_SEP, in->left);
    size_t mlen = end ? (size_t)(end - in->p) : in->left;
    const uint8_t *s = in->p;
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= mlen; i++) {
        if (i == mlen || s[i] == FUZZ_FRAME_SEP) {
            if (n < max) {
                size_t len = i - start;
                char *copy = malloc(len ? len : 1);
                if (!copy)
                    abort();
                memcpy(copy, s + start, len);
                fr[n].data = copy;
                fr[n].size = len;
                n++;
            }
            start = i + 1;
        }
    }
    in->p += mlen + (end ? 1 : 0);
    in->left -= mlen + (end ? 1 : 0);
    return n;
}

static inline void fuzz_free_msg(fuzz_frame *fr, int n)
{
    for (int i = 0; i < n; i++)
        free((void *)fr[i].data);
}

#endif
