/*
 * reply.h — an outgoing multipart message under construction.
 *
 * Contract: the capacity (in frames) is fixed by reply_init(), so that frames
 * can point at the reply's own number slots without ever moving.  Adding more
 * frames than that marks the reply failed instead of writing past the end;
 * reply_send() refuses a failed reply.  String and byte frames point at the
 * caller's memory (it must outlive reply_send()) unless added with
 * reply_copy() or reply_take(), which make the reply own a heap copy.
 * Sending never blocks (ZMQ_DONTWAIT): the broker never waits for a peer.
 */
#ifndef PUSHBROKERD_REPLY_H
#define PUSHBROKERD_REPLY_H

#include <stddef.h>
#include <stdint.h>

#include "push_proto.h"

#define REPLY_NUM_SIZE 24

typedef struct reply {
    push_frame *frame;
    char      (*num)[REPLY_NUM_SIZE];   /* num[i] backs frame[i] when numeric */
    char      **owned;                  /* heap blocks freed by reply_free() */
    int         nowned;
    int         count;
    int         cap;
    int         failed;
} reply;

/* Returns 0, or -1 (ENOMEM) with *r safe to reply_free(). */
int  reply_init(reply *r, int cap);
void reply_free(reply *r);

/* Drop all frames but keep the capacity (to build an error reply instead). */
void reply_reset(reply *r, int keep);

void reply_bytes(reply *r, const void *p, size_t len);
void reply_str(reply *r, const char *s);
void reply_u64(reply *r, uint64_t v);
void reply_frames(reply *r, const push_frame *f, int n);
void reply_copy(reply *r, const char *s);    /* owns a copy of s */
void reply_take(reply *r, char *s);          /* owns s (malloc'ed); NULL fails */

/* Make the reply independent of the caller's memory: frames that point
 * elsewhere than its own number slots and owned blocks are copied into one
 * owned block, so the reply can be sent after the request's frames are gone
 * (the broker holds replies back until their messages are committed).
 * Returns 0, or -1 (ENOMEM) with the reply unchanged. */
int  reply_own(reply *r);

/* Send all frames as one message.  Returns 0 or -1 (errno; EINVAL when the
 * reply is failed or empty). */
int  reply_send(reply *r, void *socket);

#endif
