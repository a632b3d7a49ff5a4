/*
 * test_broker_channel.c — unit tests for pushbrokerd/channel.c: the table,
 * per-child subscriber counts, dropping children and the periodic tick.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "channel.h"

#define SEC 1000000ull
#define T0  (1700000000ull * SEC)

static channel *s_get(channel_table *t, const char *name)
{
    channel *c = channel_get(t, name, strlen(name));
    assert_non_null(c);
    return c;
}

static void s_publish(channel *c, const char *data, uint64_t t)
{
    history_limits lim = { 100, 0 };
    assert_non_null(history_append(&c->hist, "", 0, data, strlen(data), t, &lim));
}

static int s_setup(void **state)
{
    static channel_table t;
    if (channel_table_init(&t) < 0)
        return -1;
    *state = &t;
    return 0;
}

static int s_teardown(void **state)
{
    channel_table_free(*state);
    return 0;
}

static void test_created_on_first_use(void **state)
{
    channel_table *t = *state;
    assert_null(channel_find(t, "news", 4));
    channel *c = s_get(t, "news");
    assert_int_equal(t->count, 1);
    assert_string_equal(c->name, "news");
    assert_int_equal(c->name_len, 4);
    assert_int_equal(c->subscribers, 0);
    assert_int_equal(history_last_id(&c->hist), 0);
    assert_ptr_equal(channel_find(t, "news", 4), c);
    assert_ptr_equal(s_get(t, "news"), c);
    assert_int_equal(t->count, 1);
    /* prefix and case are different names */
    assert_null(channel_find(t, "new", 3));
    assert_null(channel_find(t, "News", 4));
}

static void test_many_channels_survive_growth(void **state)
{
    channel_table *t = *state;
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "chan-%d", i);
        s_get(t, name);
    }
    assert_int_equal(t->count, 5000);
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "chan-%d", i);
        channel *c = channel_find(t, name, strlen(name));
        assert_non_null(c);
        assert_string_equal(c->name, name);
    }
}

static void test_subscribers_summed_across_children(void **state)
{
    channel_table *t = *state;
    channel *c = s_get(t, "room");
    assert_int_equal(channel_set_subs(c, 0, 2), 0);
    assert_int_equal(channel_set_subs(c, 7, 3), 0);
    assert_int_equal(channel_set_subs(c, 3, 1), 0);
    assert_int_equal(c->subscribers, 6);
    assert_int_equal(c->nsubs, 3);
    assert_int_equal(channel_child_subs(c, 7), 3);
    assert_int_equal(channel_child_subs(c, 5), 0);
    /* a new count replaces the old one, it does not add */
    assert_int_equal(channel_set_subs(c, 7, 10), 0);
    assert_int_equal(c->subscribers, 13);
    assert_int_equal(c->nsubs, 3);
    /* 0 removes the child */
    assert_int_equal(channel_set_subs(c, 0, 0), 0);
    assert_int_equal(c->subscribers, 11);
    assert_int_equal(c->nsubs, 2);
    assert_int_equal(channel_child_subs(c, 0), 0);
    assert_int_equal(channel_child_subs(c, 3), 1);
    assert_int_equal(channel_child_subs(c, 7), 10);
    /* removing an absent child changes nothing */
    assert_int_equal(channel_set_subs(c, 42, 0), 0);
    assert_int_equal(c->subscribers, 11);
    assert_int_equal(c->nsubs, 2);
}

static void test_drop_child_everywhere(void **state)
{
    channel_table *t = *state;
    channel *a = s_get(t, "a"), *b = s_get(t, "b"), *c = s_get(t, "c");
    channel_set_subs(a, 1, 4);
    channel_set_subs(a, 2, 5);
    channel_set_subs(b, 1, 1);
    channel_set_subs(c, 2, 2);
    channel_table_drop_child(t, 1);
    assert_int_equal(a->subscribers, 5);
    assert_int_equal(a->nsubs, 1);
    assert_int_equal(channel_child_subs(a, 2), 5);
    assert_int_equal(b->subscribers, 0);
    assert_int_equal(b->nsubs, 0);
    assert_int_equal(c->subscribers, 2);
    channel_table_drop_child(t, 2);
    assert_int_equal(a->subscribers, 0);
    assert_int_equal(c->subscribers, 0);
}

static void test_tick_drops_only_unused_channels(void **state)
{
    channel_table *t = *state;
    s_get(t, "queried");                       /* history query, nothing else */
    channel_set_subs(s_get(t, "watched"), 0, 1);
    s_publish(s_get(t, "old"), "x", T0);
    s_publish(s_get(t, "fresh"), "y", T0 + 100 * SEC);
    assert_int_equal(t->count, 4);
    assert_int_equal(channel_table_messages(t), 2);

    assert_int_equal(channel_table_tick(t, T0 + 101 * SEC, 60 * SEC), 1);
    assert_int_equal(t->count, 3);
    assert_null(channel_find(t, "queried", 7));
    assert_non_null(channel_find(t, "watched", 7));
    assert_int_equal(channel_table_messages(t), 1);

    /* "old" lost its message but keeps its ids */
    channel *old = channel_find(t, "old", 3);
    assert_non_null(old);
    assert_int_equal(history_count(&old->hist), 0);
    assert_int_equal(history_last_id(&old->hist), 1);

    /* once the last subscriber leaves, a never-published channel goes */
    channel_set_subs(channel_find(t, "watched", 7), 0, 0);
    assert_int_equal(channel_table_tick(t, T0 + 102 * SEC, 60 * SEC), 0);
    assert_null(channel_find(t, "watched", 7));
    assert_int_equal(t->count, 2);
}

static void test_messages_counted_over_channels(void **state)
{
    channel_table *t = *state;
    assert_int_equal(channel_table_messages(t), 0);
    channel *a = s_get(t, "a"), *b = s_get(t, "b");
    s_publish(a, "1", T0);
    s_publish(a, "2", T0);
    s_publish(b, "3", T0);
    assert_int_equal(channel_table_messages(t), 3);
    assert_int_equal(history_last_id(&a->hist), 2);
    assert_int_equal(history_last_id(&b->hist), 1);   /* ids are per channel */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created_on_first_use, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_many_channels_survive_growth, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_subscribers_summed_across_children, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_drop_child_everywhere, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tick_drops_only_unused_channels, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_messages_counted_over_channels, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
