/*
 * test_hub.c — unit tests for mod_push/hub.c: messages and their reference
 * counts, channels, subscriptions, queues, the ready list, draining with
 * limits, overflow, detaching, the count callback, and one dispatcher
 * thread against a draining thread.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <pthread.h>
#include <cmocka.h>

#include "hub.h"

/* ---- helpers ------------------------------------------------------------- */

#define MAX_CALLS 4096

typedef struct counts {
    int   n;
    char *name[MAX_CALLS];
} counts;

static void s_on_count(void *arg, const char *channel)
{
    counts *c = arg;
    if (c->n < MAX_CALLS)
        c->name[c->n] = strdup(channel);
    c->n++;
}

static void s_counts_clear(counts *c)
{
    for (int i = 0; i < c->n && i < MAX_CALLS; i++)
        free(c->name[i]);
    c->n = 0;
}

typedef struct fixture {
    push_hub *hub;
    counts    calls;
} fixture;

static int s_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    f->hub = push_hub_new(s_on_count, &f->calls);
    if (!f->hub)
        return -1;
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture *f = *state;
    push_hub_destroy(&f->hub);
    s_counts_clear(&f->calls);
    free(f);
    return 0;
}

static push_msg *s_msg(const char *channel, uint64_t id, const char *event, const char *data)
{
    push_msg *m = push_msg_new(channel, strlen(channel), id, event, event ? strlen(event) : 0,
                               data, strlen(data), 1000 + id);
    assert_non_null(m);
    return m;
}

/* Dispatch a new message and drop the caller's reference; returns woken. */
static int s_pub(push_hub *h, const char *channel, uint64_t id, const char *data)
{
    push_msg *m = s_msg(channel, id, NULL, data);
    int woken = push_hub_dispatch(h, m);
    push_msg_unref(m);
    return woken;
}

static int s_refs(const push_msg *m)
{
    return __atomic_load_n(&m->refs, __ATOMIC_ACQUIRE);
}

static void s_release(push_entry *e, int n)
{
    for (int i = 0; i < n; i++)
        push_msg_unref(e[i].msg);
}

/* Take the whole ready list and say how long it was. */
static int s_ready_count(push_hub *h)
{
    push_client *arr[64];
    int n, total = 0;
    while ((n = push_hub_take_ready(h, arr, 64)) > 0)
        total += n;
    return total;
}


static int s_has(push_client **arr, int n, const push_client *c)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        k += arr[i] == c;
    return k;
}

static int s_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The recorded callback names, sorted, must be exactly these. */
static void s_expect_calls(counts *c, int n, ...)
{
    if (c->n != n)
        fail_msg("count callback called %d times, expected %d", c->n, n);
    char *want[64];
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        want[i] = va_arg(ap, char *);
    va_end(ap);
    qsort(want, (size_t)n, sizeof want[0], s_cmp_str);
    qsort(c->name, (size_t)n, sizeof c->name[0], s_cmp_str);
    for (int i = 0; i < n; i++)
        assert_string_equal(c->name[i], want[i]);
    s_counts_clear(c);
}

static void s_totals(push_hub *h, int channels, int subs)
{
    int c = -1, s = -1;
    push_hub_totals(h, &c, &s);
    assert_int_equal(c, channels);
    assert_int_equal(s, subs);
}

/* ======================================================================== */
/* messages                                                                  */
/* ======================================================================== */

static void test_msg_new_copies_and_encodes(void **state)
{
    (void)state;
    char channel[] = "newsXYZ", event[] = "updateQQ", data[] = "line1\nline2\"!";
    push_msg *m = push_msg_new(channel, 4, 17, event, 6, data, 12, 1700000000000001ull);
    assert_non_null(m);
    /* the inputs may change afterwards: everything was copied */
    memset(channel, '?', sizeof channel - 1);
    memset(event, '?', sizeof event - 1);
    memset(data, '?', sizeof data - 1);

    assert_int_equal(s_refs(m), 1);
    assert_int_equal(m->id, 17);
    assert_int_equal(m->time_us, 1700000000000001ull);
    assert_string_equal(m->channel, "news");
    assert_string_equal(m->event, "update");
    assert_int_equal(m->data_len, 12);
    assert_memory_equal(m->data, "line1\nline2\"", 12);
    const char sse[] = "id: 17\nevent: update\ndata: line1\ndata: line2\"\n\n";
    assert_int_equal(m->sse_len, sizeof sse - 1);
    assert_memory_equal(m->sse, sse, sizeof sse - 1);
    const char json[] = "{\"id\":17,\"event\":\"update\",\"data\":\"line1\\nline2\\\"\","
                        "\"time\":1700000000000001}";
    assert_int_equal(m->json_len, sizeof json - 1);
    assert_memory_equal(m->json, json, sizeof json - 1);
    push_msg_unref(m);
}

static void test_msg_new_without_event_and_binary_data(void **state)
{
    (void)state;
    push_msg *m = push_msg_new("c", 1, 2, NULL, 0, "a\0b", 3, 9);
    assert_non_null(m);
    assert_null(m->event);
    assert_int_equal(m->data_len, 3);
    assert_memory_equal(m->data, "a\0b", 3);
    const char sse[] = "id: 2\ndata: a\0b\n\n";
    assert_int_equal(m->sse_len, sizeof sse - 1);
    assert_memory_equal(m->sse, sse, sizeof sse - 1);
    const char json[] = "{\"id\":2,\"event\":null,\"data\":\"a\\u0000b\",\"time\":9}";
    assert_int_equal(m->json_len, sizeof json - 1);
    assert_memory_equal(m->json, json, sizeof json - 1);
    push_msg_unref(m);

    /* an empty event name is no event */
    m = push_msg_new("c", 1, 3, "ignored", 0, "", 0, 1);
    assert_non_null(m);
    assert_null(m->event);
    assert_int_equal(m->data_len, 0);
    assert_non_null(m->data);
    assert_string_equal(m->data, "");
    const char sse2[] = "id: 3\ndata: \n\n";
    assert_int_equal(m->sse_len, sizeof sse2 - 1);
    assert_memory_equal(m->sse, sse2, sizeof sse2 - 1);
    push_msg_unref(m);
}

static void test_msg_refcount(void **state)
{
    (void)state;
    push_msg *m = s_msg("c", 1, NULL, "x");
    assert_int_equal(s_refs(m), 1);
    push_msg_ref(m);
    assert_int_equal(s_refs(m), 2);
    push_msg_ref(m);
    assert_int_equal(s_refs(m), 3);
    push_msg_unref(m);
    assert_int_equal(s_refs(m), 2);
    push_msg_unref(m);
    assert_int_equal(s_refs(m), 1);
    push_msg_unref(m);         /* freed: ASan reports a leak otherwise */
    push_msg_unref(NULL);      /* harmless */
}

/* ======================================================================== */
/* hub, clients, subscriptions                                               */
/* ======================================================================== */

static void test_hub_new_destroy(void **state)
{
    (void)state;
    counts calls = { 0 };
    push_hub *h = push_hub_new(s_on_count, &calls);
    assert_non_null(h);
    s_totals(h, 0, 0);
    assert_int_equal(push_hub_count(h, "x"), 0);
    assert_int_equal(s_ready_count(h), 0);
    push_hub_destroy(&h);
    assert_null(h);
    push_hub_destroy(&h);      /* NULL is fine */
    assert_null(h);
    assert_int_equal(calls.n, 0);
}

static void test_client_init(void **state)
{
    (void)state;
    push_client c;
    memset(&c, 0x5a, sizeof c);
    int owner;
    push_client_init(&c, 100, &owner);
    assert_null(c.subs);
    assert_null(c.queue);
    assert_int_equal(c.qlen, 0);
    assert_int_equal(c.qcap, 0);
    assert_int_equal(c.qmax, 100);
    assert_int_equal(c.overflow, 0);
    assert_int_equal(c.ready, 0);
    assert_null(c.ready_next);
    assert_null(c.ready_prev);
    assert_ptr_equal(c.owner, &owner);
    push_client_init(&c, 0, NULL);
    assert_int_equal(c.qmax, 1);
    push_client_init(&c, -5, NULL);
    assert_int_equal(c.qmax, 1);
    assert_null(c.owner);
}

static void test_subscribe_counts_and_callback(void **state)
{
    fixture *f = *state;
    push_client a, b;
    push_client_init(&a, 10, NULL);
    push_client_init(&b, 10, NULL);

    push_sub *sa = push_hub_subscribe(f->hub, &a, "news");
    assert_non_null(sa);
    assert_ptr_equal(sa->client, &a);
    assert_non_null(sa->channel);
    assert_int_equal(sa->sent_id, 0);
    assert_ptr_equal(a.subs, sa);
    assert_int_equal(push_hub_count(f->hub, "news"), 1);
    s_expect_calls(&f->calls, 1, "news");
    s_totals(f->hub, 1, 1);

    push_sub *sb = push_hub_subscribe(f->hub, &b, "news");
    assert_non_null(sb);
    assert_ptr_equal(sb->channel, sa->channel);   /* one channel record */
    assert_int_equal(push_hub_count(f->hub, "news"), 2);
    s_expect_calls(&f->calls, 1, "news");
    s_totals(f->hub, 1, 2);

    push_sub *sa2 = push_hub_subscribe(f->hub, &a, "sport");
    assert_non_null(sa2);
    assert_ptr_not_equal(sa2->channel, sa->channel);
    assert_int_equal(push_hub_count(f->hub, "sport"), 1);
    assert_int_equal(push_hub_count(f->hub, "news"), 2);
    assert_int_equal(push_hub_count(f->hub, "weather"), 0);
    assert_int_equal(push_hub_count(f->hub, "New"), 0);
    s_expect_calls(&f->calls, 1, "sport");
    s_totals(f->hub, 2, 3);

    /* a's list holds both of its subscriptions */
    int na = 0, seen_sa = 0, seen_sa2 = 0;
    for (push_sub *s = a.subs; s; s = s->client_next) {
        na++;
        seen_sa += s == sa;
        seen_sa2 += s == sa2;
    }
    assert_int_equal(na, 2);
    assert_int_equal(seen_sa, 1);
    assert_int_equal(seen_sa2, 1);

    push_hub_detach(f->hub, &a);
    assert_null(a.subs);
    assert_int_equal(push_hub_count(f->hub, "news"), 1);
    assert_int_equal(push_hub_count(f->hub, "sport"), 0);
    s_expect_calls(&f->calls, 2, "news", "sport");
    s_totals(f->hub, 1, 1);

    push_hub_detach(f->hub, &b);
    assert_int_equal(push_hub_count(f->hub, "news"), 0);
    s_expect_calls(&f->calls, 1, "news");
    s_totals(f->hub, 0, 0);

    /* detaching a client without subscriptions changes nothing */
    push_hub_detach(f->hub, &b);
    assert_int_equal(f->calls.n, 0);
    s_totals(f->hub, 0, 0);
}

static void test_channel_recreated_after_release(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 10, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    push_hub_detach(f->hub, &a);
    s_totals(f->hub, 0, 0);
    assert_int_equal(s_pub(f->hub, "c", 1, "lost"), 0);

    push_client_init(&a, 10, NULL);
    push_sub *s = push_hub_subscribe(f->hub, &a, "c");
    assert_non_null(s);
    assert_int_equal(push_hub_count(f->hub, "c"), 1);
    s_totals(f->hub, 1, 1);
    assert_int_equal(s_pub(f->hub, "c", 2, "found"), 1);
    push_entry e[4];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, &ovf), 1);
    assert_int_equal(e[0].msg->id, 2);
    assert_int_equal(ovf, 0);
    s_release(e, 1);
    push_hub_detach(f->hub, &a);
    s_expect_calls(&f->calls, 4, "c", "c", "c", "c");
}

/* ======================================================================== */
/* dispatch and the ready list                                               */
/* ======================================================================== */

static void test_dispatch_no_subscribers(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 10, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "other"));
    push_msg *m = s_msg("nobody", 1, NULL, "x");
    assert_int_equal(push_hub_dispatch(f->hub, m), 0);
    assert_int_equal(s_refs(m), 1);
    assert_int_equal(a.qlen, 0);
    assert_int_equal(a.ready, 0);
    assert_int_equal(s_ready_count(f->hub), 0);
    push_msg_unref(m);
    push_hub_detach(f->hub, &a);
}

static void test_dispatch_wakes_once(void **state)
{
    fixture *f = *state;
    push_client a, b, other;
    push_client_init(&a, 10, NULL);
    push_client_init(&b, 10, NULL);
    push_client_init(&other, 10, NULL);
    push_sub *sa = push_hub_subscribe(f->hub, &a, "news");
    push_sub *sb = push_hub_subscribe(f->hub, &b, "news");
    assert_non_null(push_hub_subscribe(f->hub, &other, "sport"));

    push_msg *m1 = s_msg("news", 1, NULL, "one");
    assert_int_equal(push_hub_dispatch(f->hub, m1), 2);
    assert_int_equal(s_refs(m1), 3);                 /* one per queue entry */
    push_msg *m2 = s_msg("news", 2, "e", "two");
    assert_int_equal(push_hub_dispatch(f->hub, m2), 0);   /* both already ready */
    assert_int_equal(s_refs(m2), 3);
    assert_int_equal(a.qlen, 2);
    assert_int_equal(b.qlen, 2);
    assert_int_equal(other.qlen, 0);
    assert_int_equal(a.ready, 1);
    assert_int_equal(b.ready, 1);
    assert_int_equal(other.ready, 0);

    push_client *arr[8];
    int n = push_hub_take_ready(f->hub, arr, 8);
    assert_int_equal(n, 2);
    assert_int_equal(s_has(arr, n, &a), 1);
    assert_int_equal(s_has(arr, n, &b), 1);
    assert_int_equal(a.ready, 0);
    assert_int_equal(b.ready, 0);
    assert_int_equal(s_ready_count(f->hub), 0);

    /* ready again on the next message, only the one not ready yet counts */
    push_msg *m3 = s_msg("news", 3, NULL, "three");
    assert_int_equal(push_hub_dispatch(f->hub, m3), 2);
    push_msg *m4 = s_msg("sport", 4, NULL, "four");
    assert_int_equal(push_hub_dispatch(f->hub, m4), 1);
    n = push_hub_take_ready(f->hub, arr, 8);
    assert_int_equal(n, 3);
    assert_int_equal(s_has(arr, n, &a), 1);
    assert_int_equal(s_has(arr, n, &b), 1);
    assert_int_equal(s_has(arr, n, &other), 1);

    /* queue order and the subscription of each entry */
    push_entry e[8];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 3);
    assert_int_equal(ovf, 0);
    assert_ptr_equal(e[0].msg, m1);
    assert_ptr_equal(e[1].msg, m2);
    assert_ptr_equal(e[2].msg, m3);
    assert_ptr_equal(e[0].sub, sa);
    assert_ptr_equal(e[1].sub, sa);
    assert_ptr_equal(e[2].sub, sa);
    s_release(e, 3);
    assert_int_equal(push_hub_drain(f->hub, &b, e, 8, 1 << 20, &ovf), 3);
    assert_ptr_equal(e[0].msg, m1);
    assert_ptr_equal(e[2].msg, m3);
    assert_ptr_equal(e[0].sub, sb);
    s_release(e, 3);
    assert_int_equal(s_refs(m1), 1);
    assert_int_equal(s_refs(m2), 1);
    assert_int_equal(s_refs(m3), 1);
    assert_int_equal(s_refs(m4), 2);
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 0);

    push_hub_detach(f->hub, &other);   /* drops m4's queued reference */
    assert_int_equal(s_refs(m4), 1);
    push_msg_unref(m1);
    push_msg_unref(m2);
    push_msg_unref(m3);
    push_msg_unref(m4);
    push_hub_detach(f->hub, &a);
    push_hub_detach(f->hub, &b);
}

static void test_dispatch_to_client_with_two_channels(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 10, NULL);
    push_sub *sx = push_hub_subscribe(f->hub, &a, "x");
    push_sub *sy = push_hub_subscribe(f->hub, &a, "y");
    assert_int_equal(s_pub(f->hub, "y", 1, "to-y"), 1);
    assert_int_equal(s_pub(f->hub, "x", 1, "to-x"), 0);
    push_entry e[4];
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, NULL), 2);
    assert_ptr_equal(e[0].sub, sy);
    assert_string_equal(e[0].msg->data, "to-y");
    assert_ptr_equal(e[1].sub, sx);
    assert_string_equal(e[1].msg->data, "to-x");
    s_release(e, 2);
    push_hub_detach(f->hub, &a);
}

/* The reactor serves the clients it took while the link thread keeps
 * dispatching: a client made ready again meanwhile must neither cut the
 * taken batch short nor be lost for the next round. */
static void test_take_ready_list_survives_concurrent_dispatch(void **state)
{
    fixture *f = *state;
    push_client a, b, c;
    push_client_init(&a, 10, NULL);
    push_client_init(&b, 10, NULL);
    push_client_init(&c, 10, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "ch-a"));
    assert_non_null(push_hub_subscribe(f->hub, &b, "ch-b"));
    assert_non_null(push_hub_subscribe(f->hub, &c, "ch-c"));
    assert_int_equal(s_pub(f->hub, "ch-a", 1, "a1"), 1);
    assert_int_equal(s_pub(f->hub, "ch-b", 1, "b1"), 1);
    assert_int_equal(s_pub(f->hub, "ch-c", 1, "c1"), 1);

    push_client *arr[8];
    int n = push_hub_take_ready(f->hub, arr, 8);
    assert_int_equal(n, 3);
    /* "link thread": a new message for the second client of the batch */
    push_client *second = arr[1];
    const char *ch = second == &a ? "ch-a" : second == &b ? "ch-b" : "ch-c";
    assert_int_equal(s_pub(f->hub, ch, 2, "again"), 1);

    int missing = (!s_has(arr, n, &a)) + (!s_has(arr, n, &b)) + (!s_has(arr, n, &c));
    assert_int_equal(missing, 0);
    /* the re-dispatched client waits on the list for the next round */
    push_client *again[8];
    assert_int_equal(push_hub_take_ready(f->hub, again, 8), 1);
    assert_ptr_equal(again[0], second);

    push_hub_detach(f->hub, &a);
    push_hub_detach(f->hub, &b);
    push_hub_detach(f->hub, &c);
}

/* ======================================================================== */
/* drain                                                                     */
/* ======================================================================== */

static void test_drain_max_entries(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 100, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    for (uint64_t id = 1; id <= 5; id++)
        s_pub(f->hub, "c", id, "0123456789");
    push_entry e[8];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 2, 1 << 20, &ovf), 2);
    assert_int_equal(ovf, 0);
    assert_int_equal(e[0].msg->id, 1);
    assert_int_equal(e[1].msg->id, 2);
    s_release(e, 2);
    assert_int_equal(a.qlen, 3);
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 3);
    assert_int_equal(e[0].msg->id, 3);
    assert_int_equal(e[1].msg->id, 4);
    assert_int_equal(e[2].msg->id, 5);
    s_release(e, 3);
    assert_int_equal(a.qlen, 0);
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 0);
    assert_int_equal(ovf, 0);
    /* max 0 moves nothing and keeps the queue */
    s_pub(f->hub, "c", 6, "x");
    assert_int_equal(push_hub_drain(f->hub, &a, e, 0, 1 << 20, &ovf), 0);
    assert_int_equal(a.qlen, 1);
    assert_int_equal(push_hub_drain(f->hub, &a, e, 1, 1 << 20, &ovf), 1);
    assert_int_equal(e[0].msg->id, 6);
    s_release(e, 1);
    push_hub_detach(f->hub, &a);
}

static void test_drain_skips_already_sent(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 100, NULL);
    push_sub *s = push_hub_subscribe(f->hub, &a, "c");
    push_msg *m[6];
    for (int i = 1; i <= 5; i++) {
        m[i] = s_msg("c", (uint64_t)i, NULL, "d");
        push_hub_dispatch(f->hub, m[i]);
        assert_int_equal(s_refs(m[i]), 2);
    }
    s->sent_id = 3;
    push_entry e[8];
    int ovf = -1;
    /* skipped entries do not count against max */
    assert_int_equal(push_hub_drain(f->hub, &a, e, 1, 1 << 20, &ovf), 1);
    assert_ptr_equal(e[0].msg, m[4]);
    assert_ptr_equal(e[0].sub, s);
    /* the skipped entries' references were dropped */
    assert_int_equal(s_refs(m[1]), 1);
    assert_int_equal(s_refs(m[2]), 1);
    assert_int_equal(s_refs(m[3]), 1);
    assert_int_equal(s_refs(m[4]), 2);   /* held by e[0] */
    assert_int_equal(s_refs(m[5]), 2);   /* still queued */
    assert_int_equal(a.qlen, 1);
    s_release(e, 1);
    s->sent_id = 4;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 1);
    assert_ptr_equal(e[0].msg, m[5]);
    s_release(e, 1);

    /* an id equal to sent_id is a duplicate; a queue of only duplicates
     * drains to nothing */
    s->sent_id = 5;
    push_hub_dispatch(f->hub, m[5]);
    push_hub_dispatch(f->hub, m[2]);
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 0);
    assert_int_equal(a.qlen, 0);
    for (int i = 1; i <= 5; i++) {
        assert_int_equal(s_refs(m[i]), 1);
        push_msg_unref(m[i]);
    }
    push_hub_detach(f->hub, &a);
}

static void test_drain_skip_is_per_subscription(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 100, NULL);
    push_sub *sx = push_hub_subscribe(f->hub, &a, "x");
    push_sub *sy = push_hub_subscribe(f->hub, &a, "y");
    s_pub(f->hub, "x", 5, "x5");
    s_pub(f->hub, "y", 5, "y5");
    sx->sent_id = 5;
    push_entry e[4];
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, NULL), 1);
    assert_ptr_equal(e[0].sub, sy);
    assert_string_equal(e[0].msg->data, "y5");
    s_release(e, 1);
    push_hub_detach(f->hub, &a);
}

/* Queue n messages of data_len bytes each on channel "c" of a fresh client,
 * drain once with max_bytes and return how many moved. */
static int s_drain_bytes(fixture *f, int n, size_t data_len, size_t max_bytes)
{
    push_client a;
    push_client_init(&a, 1000, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    char *data = malloc(data_len + 1);
    assert_non_null(data);
    memset(data, 'd', data_len);
    data[data_len] = '\0';
    for (int i = 1; i <= n; i++)
        s_pub(f->hub, "c", (uint64_t)i, data);
    free(data);
    push_entry e[64];
    int moved = push_hub_drain(f->hub, &a, e, 64, max_bytes, NULL);
    for (int i = 0; i < moved; i++)
        assert_int_equal(e[i].msg->id, (uint64_t)i + 1);
    s_release(e, moved);
    assert_int_equal(a.qlen, n - moved);
    push_hub_detach(f->hub, &a);
    s_counts_clear(&f->calls);
    return moved;
}

static void test_drain_max_bytes_at_least_one(void **state)
{
    fixture *f = *state;
    /* one entry moves even when it alone is over the budget */
    assert_int_equal(s_drain_bytes(f, 5, 100, 1), 1);
    assert_int_equal(s_drain_bytes(f, 5, 100, 99), 1);
    assert_int_equal(s_drain_bytes(f, 5, 100, 100), 1);
    /* budget reached exactly by whole entries */
    assert_int_equal(s_drain_bytes(f, 5, 10, 10), 1);
    assert_int_equal(s_drain_bytes(f, 5, 10, 20), 2);
    assert_int_equal(s_drain_bytes(f, 5, 10, 30), 3);
    /* a large budget: all of them */
    assert_int_equal(s_drain_bytes(f, 5, 10, 1 << 20), 5);
}

/* "stopping once their data add up to max_bytes": after two 10-byte entries
 * the data add up to 20, which has not reached 21, so a third moves. */
static void test_drain_max_bytes_counts_data_bytes(void **state)
{
    fixture *f = *state;
    assert_int_equal(s_drain_bytes(f, 5, 10, 21), 3);
    assert_int_equal(s_drain_bytes(f, 5, 10, 11), 2);
    /* empty messages carry no data: the budget never fills */
    assert_int_equal(s_drain_bytes(f, 5, 0, 1), 5);
}

/* "(at least one entry moves)" — also with a zero budget. */
static void test_drain_max_bytes_zero_moves_one(void **state)
{
    fixture *f = *state;
    assert_int_equal(s_drain_bytes(f, 3, 10, 0), 1);
}

/* ======================================================================== */
/* overflow                                                                  */
/* ======================================================================== */

static void test_overflow_reported_once(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 3, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    push_msg *m[6];
    for (int i = 1; i <= 5; i++) {
        m[i] = s_msg("c", (uint64_t)i, NULL, "d");
        push_hub_dispatch(f->hub, m[i]);
    }
    assert_int_equal(a.qlen, 3);
    assert_int_equal(a.overflow, 1);
    assert_int_equal(s_refs(m[4]), 1);   /* dropped, not queued */
    assert_int_equal(s_refs(m[5]), 1);

    push_entry e[8];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 3);
    assert_int_equal(ovf, 1);
    assert_ptr_equal(e[0].msg, m[1]);
    assert_ptr_equal(e[1].msg, m[2]);
    assert_ptr_equal(e[2].msg, m[3]);
    s_release(e, 3);
    ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 0);
    assert_int_equal(ovf, 0);

    /* below qmax again: queued normally, no overflow */
    push_hub_dispatch(f->hub, m[4]);
    ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 1);
    assert_int_equal(ovf, 0);
    s_release(e, 1);
    for (int i = 1; i <= 5; i++)
        push_msg_unref(m[i]);
    push_hub_detach(f->hub, &a);
}

static void test_overflow_still_wakes_client(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 1, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    assert_int_equal(s_pub(f->hub, "c", 1, "x"), 1);
    push_client *arr[4];
    assert_int_equal(push_hub_take_ready(f->hub, arr, 4), 1);
    /* the queue is full: the message is dropped but the client must learn it */
    assert_int_equal(s_pub(f->hub, "c", 2, "y"), 1);
    assert_int_equal(a.qlen, 1);
    assert_int_equal(push_hub_take_ready(f->hub, arr, 4), 1);
    assert_ptr_equal(arr[0], &a);
    push_entry e[4];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, &ovf), 1);
    assert_int_equal(ovf, 1);
    assert_int_equal(e[0].msg->id, 1);
    s_release(e, 1);
    push_hub_detach(f->hub, &a);
}

/* A drain that moves only part of the queue (max) still reports the
 * overflow, and only once. */
static void test_overflow_with_partial_drain(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 4, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    for (int i = 1; i <= 6; i++)
        s_pub(f->hub, "c", (uint64_t)i, "d");
    push_entry e[8];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 2, 1 << 20, &ovf), 2);
    assert_int_equal(ovf, 1);
    s_release(e, 2);
    ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 8, 1 << 20, &ovf), 2);
    assert_int_equal(ovf, 0);
    assert_int_equal(e[0].msg->id, 3);
    assert_int_equal(e[1].msg->id, 4);
    s_release(e, 2);
    push_hub_detach(f->hub, &a);
}

/* The queue is a ring: entries keep their order across the wrap. */
static void test_queue_ring_wraps(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 8, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    push_entry e[16];
    int ovf = -1;
    for (int i = 1; i <= 6; i++)
        s_pub(f->hub, "c", (uint64_t)i, "d");
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, &ovf), 4);
    s_release(e, 4);
    for (int i = 7; i <= 12; i++)
        s_pub(f->hub, "c", (uint64_t)i, "d");
    assert_int_equal(a.qcap, 8);          /* wrapped, not grown */
    assert_int_equal(push_hub_drain(f->hub, &a, e, 16, 1 << 20, &ovf), 8);
    assert_int_equal(ovf, 0);
    for (int i = 0; i < 8; i++)
        assert_int_equal(e[i].msg->id, (uint64_t)(5 + i));
    s_release(e, 8);
    push_hub_detach(f->hub, &a);
}

/* A client whose socket takes data may queue qmax + qslack; a blocked one
 * only qmax. */
static void test_queue_slack_until_blocked(void **state)
{
    fixture *f = *state;
    push_client a, b;
    push_client_init(&a, 2, NULL);
    push_client_init(&b, 2, NULL);
    a.qslack = b.qslack = 4;
    push_client_set_blocked(&b, 1);
    assert_non_null(push_hub_subscribe(f->hub, &a, "c"));
    assert_non_null(push_hub_subscribe(f->hub, &b, "c"));
    for (int i = 1; i <= 6; i++)
        s_pub(f->hub, "c", (uint64_t)i, "d");
    assert_int_equal(a.qlen, 6);
    assert_int_equal(a.overflow, 0);
    assert_int_equal(b.qlen, 2);
    assert_int_equal(b.overflow, 1);
    s_pub(f->hub, "c", 7, "d");
    assert_int_equal(a.qlen, 6);
    assert_int_equal(a.overflow, 1);
    push_hub_detach(f->hub, &a);
    push_hub_detach(f->hub, &b);
}

/* ======================================================================== */
/* detach                                                                    */
/* ======================================================================== */

static void test_detach_drops_queue_and_subs(void **state)
{
    fixture *f = *state;
    push_client a, b;
    push_client_init(&a, 100, NULL);
    push_client_init(&b, 100, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "x"));
    assert_non_null(push_hub_subscribe(f->hub, &a, "y"));
    assert_non_null(push_hub_subscribe(f->hub, &b, "x"));
    s_counts_clear(&f->calls);
    push_msg *m1 = s_msg("x", 1, NULL, "one"), *m2 = s_msg("y", 1, NULL, "two");
    assert_int_equal(push_hub_dispatch(f->hub, m1), 2);
    assert_int_equal(push_hub_dispatch(f->hub, m2), 0);
    assert_int_equal(s_refs(m1), 3);
    assert_int_equal(s_refs(m2), 2);

    push_hub_detach(f->hub, &a);
    assert_null(a.subs);
    assert_null(a.queue);
    assert_int_equal(a.qlen, 0);
    assert_int_equal(a.qcap, 0);
    assert_int_equal(a.ready, 0);
    assert_int_equal(s_refs(m1), 2);
    assert_int_equal(s_refs(m2), 1);
    assert_int_equal(push_hub_count(f->hub, "x"), 1);
    assert_int_equal(push_hub_count(f->hub, "y"), 0);
    s_totals(f->hub, 1, 1);
    s_expect_calls(&f->calls, 2, "x", "y");

    /* only b is ready now */
    push_client *arr[4];
    int n = push_hub_take_ready(f->hub, arr, 4);
    assert_int_equal(n, 1);
    assert_ptr_equal(arr[0], &b);
    /* a gets nothing more */
    assert_int_equal(push_hub_dispatch(f->hub, m2), 0);
    assert_int_equal(s_refs(m2), 1);
    assert_int_equal(a.qlen, 0);
    assert_int_equal(s_ready_count(f->hub), 0);

    push_hub_detach(f->hub, &b);
    assert_int_equal(s_refs(m1), 1);
    push_msg_unref(m1);
    push_msg_unref(m2);
    s_totals(f->hub, 0, 0);
}

/* Detach each position of a three-client ready list: the rest stays linked. */
static void test_detach_unlinks_from_ready_list(void **state)
{
    fixture *f = *state;
    for (int victim = 0; victim < 3; victim++) {
        push_client c[3];
        for (int i = 0; i < 3; i++) {
            push_client_init(&c[i], 10, NULL);
            assert_non_null(push_hub_subscribe(f->hub, &c[i], "c"));
        }
        assert_int_equal(s_pub(f->hub, "c", 1, "x"), 3);
        /* find who sits at position victim and detach it */
        push_client *arr[4];
        int n;
        push_client *order[3];
        int k = 0;
        /* the list head is reachable through any ready client's prev links */
        push_client *head = &c[0];
        while (head->ready_prev)
            head = head->ready_prev;
        for (push_client *p = head; p && k < 3; p = p->ready_next)
            order[k++] = p;
        assert_int_equal(k, 3);
        push_client *gone = order[victim];
        push_hub_detach(f->hub, gone);
        assert_int_equal(gone->ready, 0);
        assert_null(gone->ready_next);
        assert_null(gone->ready_prev);
        n = push_hub_take_ready(f->hub, arr, 4);
        assert_int_equal(n, 2);
        assert_int_equal(s_has(arr, n, gone), 0);
        for (int i = 0; i < 3; i++)
            if (order[i] != gone)
                assert_int_equal(s_has(arr, n, order[i]), 1);
        /* order of the survivors is kept */
        int j = 0;
        for (int i = 0; i < 3; i++)
            if (order[i] != gone)
                assert_ptr_equal(arr[j++], order[i]);
        for (int i = 0; i < 3; i++)
            push_hub_detach(f->hub, &c[i]);
        s_totals(f->hub, 0, 0);
    }
}

/* ======================================================================== */
/* each_channel, many channels                                               */
/* ======================================================================== */

typedef struct seen {
    int  n;
    char name[2048][24];
    int  count[2048];
} seen;

static void s_each(void *arg, const char *channel, int count)
{
    seen *s = arg;
    if (s->n < 2048) {
        snprintf(s->name[s->n], sizeof s->name[0], "%s", channel);
        s->count[s->n] = count;
    }
    s->n++;
}

static int s_seen_count(const seen *s, const char *name)
{
    int found = -1;
    for (int i = 0; i < s->n && i < 2048; i++)
        if (strcmp(s->name[i], name) == 0) {
            if (found != -1)
                fail_msg("channel %s visited twice", name);
            found = s->count[i];
        }
    return found;
}

static void test_each_channel(void **state)
{
    fixture *f = *state;
    seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    push_hub_each_channel(f->hub, s_each, s);
    assert_int_equal(s->n, 0);

    push_client c[3];
    for (int i = 0; i < 3; i++)
        push_client_init(&c[i], 10, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &c[0], "one"));
    assert_non_null(push_hub_subscribe(f->hub, &c[0], "two"));
    assert_non_null(push_hub_subscribe(f->hub, &c[1], "two"));
    assert_non_null(push_hub_subscribe(f->hub, &c[0], "three"));
    assert_non_null(push_hub_subscribe(f->hub, &c[1], "three"));
    assert_non_null(push_hub_subscribe(f->hub, &c[2], "three"));
    push_hub_each_channel(f->hub, s_each, s);
    assert_int_equal(s->n, 3);
    assert_int_equal(s_seen_count(s, "one"), 1);
    assert_int_equal(s_seen_count(s, "two"), 2);
    assert_int_equal(s_seen_count(s, "three"), 3);

    push_hub_detach(f->hub, &c[0]);
    memset(s, 0, sizeof *s);
    push_hub_each_channel(f->hub, s_each, s);
    assert_int_equal(s->n, 2);
    assert_int_equal(s_seen_count(s, "one"), -1);
    assert_int_equal(s_seen_count(s, "two"), 1);
    assert_int_equal(s_seen_count(s, "three"), 2);
    push_hub_detach(f->hub, &c[1]);
    push_hub_detach(f->hub, &c[2]);
    memset(s, 0, sizeof *s);
    push_hub_each_channel(f->hub, s_each, s);
    assert_int_equal(s->n, 0);
    free(s);
}

static void test_many_channels(void **state)
{
    fixture *f = *state;
    enum { N = 1500 };
    push_client a, b;
    push_client_init(&a, 10, NULL);
    push_client_init(&b, 10, NULL);
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch-%d", i);
        assert_non_null(push_hub_subscribe(f->hub, &a, name));
        if (i % 3 == 0)
            assert_non_null(push_hub_subscribe(f->hub, &b, name));
    }
    assert_int_equal(f->calls.n, N + N / 3);
    s_counts_clear(&f->calls);
    s_totals(f->hub, N, N + N / 3);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "ch-%d", i);
        assert_int_equal(push_hub_count(f->hub, name), i % 3 == 0 ? 2 : 1);
    }
    assert_int_equal(push_hub_count(f->hub, "ch-1500"), 0);
    seen *s = calloc(1, sizeof *s);
    assert_non_null(s);
    push_hub_each_channel(f->hub, s_each, s);
    assert_int_equal(s->n, N);
    assert_int_equal(s_seen_count(s, "ch-0"), 2);
    assert_int_equal(s_seen_count(s, "ch-1499"), 1);
    assert_int_equal(s_seen_count(s, "ch-777"), 2);
    free(s);

    assert_int_equal(s_pub(f->hub, "ch-1234", 9, "deep"), 1);
    assert_int_equal(s_pub(f->hub, "ch-1233", 10, "both"), 1);   /* a ready already, b new */
    push_entry e[4];
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, NULL), 2);
    assert_string_equal(e[0].msg->channel, "ch-1234");
    assert_string_equal(e[1].msg->channel, "ch-1233");
    s_release(e, 2);
    assert_int_equal(push_hub_drain(f->hub, &b, e, 4, 1 << 20, NULL), 1);
    assert_string_equal(e[0].msg->data, "both");
    s_release(e, 1);

    push_hub_detach(f->hub, &b);
    s_totals(f->hub, N, N);
    assert_int_equal(f->calls.n, N / 3);
    s_counts_clear(&f->calls);
    push_hub_detach(f->hub, &a);
    s_totals(f->hub, 0, 0);
    assert_int_equal(f->calls.n, N);
}

/* ======================================================================== */
/* one dispatching thread, one draining thread                               */
/* ======================================================================== */

#define MT_N 100000

typedef struct mt {
    push_hub *hub;
    int       done;
} mt;

static void *s_dispatcher(void *arg)
{
    mt *t = arg;
    char data[32];
    for (uint64_t id = 1; id <= MT_N; id++) {
        int n = snprintf(data, sizeof data, "msg-%llu", (unsigned long long)id);
        push_msg *m = push_msg_new("live", 4, id, id % 2 ? "odd" : NULL, id % 2 ? 3 : 0,
                                   data, (size_t)n, id);
        if (!m)
            abort();
        push_hub_dispatch(t->hub, m);
        push_msg_unref(m);
    }
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static double s_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_threads_every_id_once_in_order(void **state)
{
    fixture *f = *state;
    push_client c[2];
    push_sub *sub[2];
    for (int i = 0; i < 2; i++) {
        push_client_init(&c[i], MT_N + 10, NULL);
        sub[i] = push_hub_subscribe(f->hub, &c[i], "live");
        assert_non_null(sub[i]);
    }
    /* Give each queue its storage first (an id-0 message, dropped by the
     * drain as already sent): draining a never-used queue is a separate
     * test, test_drain_client_never_queued, run last. */
    assert_int_equal(s_pub(f->hub, "live", 0, "prime"), 2);
    for (int i = 0; i < 2; i++) {
        push_entry e[2];
        assert_int_equal(push_hub_drain(f->hub, &c[i], e, 2, 1 << 20, NULL), 0);
        assert_non_null(c[i].queue);
    }
    assert_int_equal(push_hub_take_ready(f->hub, (push_client *[4]){ 0 }, 4), 2);

    mt t = { f->hub, 0 };
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, s_dispatcher, &t), 0);

    uint64_t next[2] = { 1, 1 };
    int overflows = 0;
    uint64_t bad_id = 0, bad_want = 0;
    int bad_client = -1;
    double deadline = s_now() + 120;
    while ((next[0] <= MT_N || next[1] <= MT_N) && s_now() < deadline && bad_client < 0) {
        /* take the ready list too (the reactor does), but serve everyone */
        push_client *taken[4];
        int nt = push_hub_take_ready(f->hub, taken, 4);
        for (int k = 0; k < nt; k++)
            if (taken[k] != &c[0] && taken[k] != &c[1])
                bad_client = 99;
        if (bad_client == 99)
            break;
        int got = 0;
        for (int i = 0; i < 2; i++) {
            push_entry e[64];
            int ovf = 0;
            int n = push_hub_drain(f->hub, &c[i], e, 64, 16 * 1024, &ovf);
            overflows += ovf;
            for (int k = 0; k < n; k++) {
                push_msg *m = e[k].msg;
                char data[32];
                int dl = snprintf(data, sizeof data, "msg-%llu", (unsigned long long)m->id);
                if (bad_client < 0 && (m->id != next[i] || e[k].sub != sub[i]
                                       || m->data_len != (size_t)dl
                                       || memcmp(m->data, data, (size_t)dl) != 0)) {
                    bad_client = i;
                    bad_id = m->id;
                    bad_want = next[i];
                }
                next[i] = m->id + 1;
                sub[i]->sent_id = m->id;
            }
            s_release(e, n);
            got += n;
        }
        if (!got)
            sched_yield();
    }
    pthread_join(th, NULL);
    assert_int_equal(__atomic_load_n(&t.done, __ATOMIC_ACQUIRE), 1);
    if (bad_client == 99)
        fail_msg("take_ready returned a client that is not ours");
    if (bad_client >= 0)
        fail_msg("client %d: got id %llu, expected %llu", bad_client,
                 (unsigned long long)bad_id, (unsigned long long)bad_want);
    assert_int_equal(overflows, 0);
    assert_int_equal(next[0], MT_N + 1);
    assert_int_equal(next[1], MT_N + 1);
    /* nothing left over */
    push_entry e[4];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(push_hub_drain(f->hub, &c[i], e, 4, 1 << 20, NULL), 0);
        assert_int_equal(c[i].qlen, 0);
        push_hub_detach(f->hub, &c[i]);
    }
    s_totals(f->hub, 0, 0);
}

/* Draining a client that never had anything queued (the reactor does this
 * for every hold it parks) must simply return 0.  Run last: under UBSan with
 * -fno-sanitize-recover a failure here ends the program. */
static void test_drain_client_never_queued(void **state)
{
    fixture *f = *state;
    push_client a;
    push_client_init(&a, 10, NULL);
    assert_non_null(push_hub_subscribe(f->hub, &a, "quiet"));
    push_entry e[4];
    int ovf = -1;
    assert_int_equal(push_hub_drain(f->hub, &a, e, 4, 1 << 20, &ovf), 0);
    assert_int_equal(ovf, 0);
    assert_int_equal(a.qlen, 0);
    push_hub_detach(f->hub, &a);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_msg_new_copies_and_encodes),
        cmocka_unit_test(test_msg_new_without_event_and_binary_data),
        cmocka_unit_test(test_msg_refcount),
        cmocka_unit_test(test_hub_new_destroy),
        cmocka_unit_test(test_client_init),
        T(test_subscribe_counts_and_callback),
        T(test_channel_recreated_after_release),
        T(test_dispatch_no_subscribers),
        T(test_dispatch_wakes_once),
        T(test_dispatch_to_client_with_two_channels),
        T(test_take_ready_list_survives_concurrent_dispatch),
        T(test_drain_max_entries),
        T(test_drain_skips_already_sent),
        T(test_drain_skip_is_per_subscription),
        T(test_drain_max_bytes_at_least_one),
        T(test_drain_max_bytes_counts_data_bytes),
        T(test_drain_max_bytes_zero_moves_one),
        T(test_overflow_reported_once),
        T(test_overflow_still_wakes_client),
        T(test_overflow_with_partial_drain),
        T(test_queue_ring_wraps),
        T(test_queue_slack_until_blocked),
        T(test_detach_drops_queue_and_subs),
        T(test_detach_unlinks_from_ready_list),
        T(test_each_channel),
        T(test_many_channels),
        T(test_threads_every_id_once_in_order),
        T(test_drain_client_never_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
