/*
 * test_broker_history.c — unit tests for pushbrokerd/history.c: id
 * assignment, count and age trimming, and "messages after id" queries.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "history.h"

#define SEC 1000000ull
#define T0  (1700000000ull * SEC)    /* a plausible publish time */

static const history_limits s_big = { 1000, 0 };

static const history_msg *s_add(history *h, const char *data, uint64_t t,
                                 const history_limits *lim)
{
    return history_append(h, "", 0, data, strlen(data), t, lim);
}

static void test_empty(void **state)
{
    (void)state;
    history h;
    history_init(&h);
    assert_int_equal(history_last_id(&h), 0);
    assert_int_equal(history_oldest_id(&h), 1);
    assert_int_equal(history_count(&h), 0);
    assert_null(history_get(&h, 0));
    assert_null(history_get(&h, 1));
    history_view v = history_after(&h, 0, 100);
    assert_int_equal(v.count, 0);
    assert_int_equal(v.last_id, 0);
    assert_int_equal(v.oldest_id, 1);
    history_free(&h);
}

static void test_ids_start_at_one_and_increase(void **state)
{
    (void)state;
    history h;
    history_init(&h);
    for (uint64_t i = 1; i <= 5; i++) {
        const history_msg *m = s_add(&h, "x", T0 + i, &s_big);
        assert_non_null(m);
        assert_int_equal(m->id, i);
        assert_int_equal(m->time_us, T0 + i);
        assert_int_equal(history_last_id(&h), i);
    }
    assert_int_equal(history_count(&h), 5);
    assert_int_equal(history_oldest_id(&h), 1);
    history_free(&h);
}

static void test_message_keeps_binary_data_and_event(void **state)
{
    (void)state;
    history h;
    history_init(&h);
    static const char bin[] = { 'a', '\0', 'b', '\xff', '\0' };
    const history_msg *m = history_append(&h, "update", 6, bin, sizeof bin, T0, &s_big);
    assert_non_null(m);
    assert_int_equal(m->data_len, sizeof bin);
    assert_memory_equal(m->data, bin, sizeof bin);
    assert_int_equal(m->event_len, 6);
    assert_string_equal(m->event, "update");
    m = history_append(&h, NULL, 0, NULL, 0, T0, &s_big);
    assert_non_null(m);
    assert_int_equal(m->data_len, 0);
    assert_string_equal(m->event, "");
    assert_int_equal(m->id, 2);
    history_free(&h);
}

static void test_count_trim(void **state)
{
    (void)state;
    history h;
    history_limits lim = { 3, 0 };
    history_init(&h);
    for (int i = 1; i <= 5; i++) {
        char d[24];
        snprintf(d, sizeof d, "m%d", i);
        assert_non_null(s_add(&h, d, T0, &lim));
    }
    assert_int_equal(history_count(&h), 3);
    assert_int_equal(history_oldest_id(&h), 3);
    assert_int_equal(history_last_id(&h), 5);
    assert_null(history_get(&h, 2));
    assert_string_equal(history_get(&h, 3)->data, "m3");
    assert_string_equal(history_get(&h, 5)->data, "m5");
    assert_null(history_get(&h, 6));
    history_free(&h);
}

/* Crosses the ring's growth steps and wraps it many times. */
static void test_count_trim_wraps_ring(void **state)
{
    (void)state;
    history h;
    history_limits lim = { 37, 0 };
    history_init(&h);
    for (int i = 1; i <= 500; i++) {
        char d[24];
        snprintf(d, sizeof d, "%d", i);
        assert_non_null(s_add(&h, d, T0, &lim));
        assert_int_equal(history_count(&h), i < 37 ? i : 37);
    }
    assert_int_equal(history_oldest_id(&h), 464);
    for (uint64_t id = 464; id <= 500; id++) {
        char d[24];
        snprintf(d, sizeof d, "%llu", (unsigned long long)id);
        const history_msg *m = history_get(&h, id);
        assert_non_null(m);
        assert_int_equal(m->id, id);
        assert_string_equal(m->data, d);
    }
    history_free(&h);
}

static void test_count_limit_one(void **state)
{
    (void)state;
    history h;
    history_limits lim = { 1, 0 };
    history_init(&h);
    s_add(&h, "a", T0, &lim);
    const history_msg *m = s_add(&h, "b", T0, &lim);
    assert_int_equal(m->id, 2);
    assert_int_equal(history_count(&h), 1);
    assert_int_equal(history_oldest_id(&h), 2);
    assert_string_equal(history_get(&h, 2)->data, "b");
    history_free(&h);
}

static void test_age_trim_on_append(void **state)
{
    (void)state;
    history h;
    history_limits lim = { 100, 10 * SEC };
    history_init(&h);
    s_add(&h, "a", T0, &lim);
    s_add(&h, "b", T0 + 5 * SEC, &lim);
    assert_int_equal(history_count(&h), 2);
    /* cutoff T0 + 2 s: "a" goes, "b" stays */
    const history_msg *m = s_add(&h, "c", T0 + 12 * SEC, &lim);
    assert_int_equal(m->id, 3);
    assert_int_equal(history_count(&h), 2);
    assert_int_equal(history_oldest_id(&h), 2);
    /* exactly max_age old is not yet too old */
    s_add(&h, "d", T0 + 15 * SEC, &lim);
    assert_int_equal(history_oldest_id(&h), 2);
    history_free(&h);
}

static void test_age_trim_tick_keeps_last_id(void **state)
{
    (void)state;
    history h;
    history_limits lim = { 100, 10 * SEC };
    history_init(&h);
    s_add(&h, "a", T0, &lim);
    s_add(&h, "b", T0 + 1 * SEC, &lim);
    s_add(&h, "c", T0 + 2 * SEC, &lim);
    assert_int_equal(history_trim_age(&h, T0 + 10 * SEC, 10 * SEC), 0);
    assert_int_equal(history_trim_age(&h, T0 + 11 * SEC + 1, 10 * SEC), 2);
    assert_int_equal(history_oldest_id(&h), 3);
    assert_int_equal(history_trim_age(&h, T0 + 60 * SEC, 10 * SEC), 1);
    assert_int_equal(history_count(&h), 0);
    assert_int_equal(history_last_id(&h), 3);
    assert_int_equal(history_oldest_id(&h), 4);
    history_view v = history_after(&h, 0, 100);
    assert_int_equal(v.count, 0);
    assert_int_equal(v.last_id, 3);
    assert_int_equal(v.oldest_id, 4);
    /* ids keep counting after everything expired */
    assert_int_equal(s_add(&h, "d", T0 + 61 * SEC, &lim)->id, 4);
    history_free(&h);
}

static void test_age_zero_means_unlimited(void **state)
{
    (void)state;
    history h;
    history_init(&h);
    s_add(&h, "a", 1, &s_big);
    s_add(&h, "b", T0, &s_big);
    assert_int_equal(history_trim_age(&h, T0 * 2, 0), 0);
    assert_int_equal(history_count(&h), 2);
    history_free(&h);
}

/* Ten messages, the first four trimmed away: retained ids 5..10. */
static void s_fill(history *h)
{
    history_limits lim = { 6, 0 };
    history_init(h);
    for (int i = 1; i <= 10; i++) {
        char d[24];
        snprintf(d, sizeof d, "m%d", i);
        s_add(h, d, T0 + (uint64_t)i, &lim);
    }
}

static void s_expect(const history *h, history_view v, uint64_t first, size_t count)
{
    assert_int_equal(v.last_id, 10);
    assert_int_equal(v.oldest_id, 5);
    assert_int_equal(v.count, count);
    if (count)
        assert_int_equal(v.first_id, first);
    for (size_t i = 0; i < count; i++)
        assert_int_equal(history_get(h, v.first_id + i)->id, first + i);
}

static void test_after_zero(void **state)
{
    (void)state;
    history h;
    s_fill(&h);
    s_expect(&h, history_after(&h, 0, 1000), 5, 6);
    history_free(&h);
}

static void test_after_last(void **state)
{
    (void)state;
    history h;
    s_fill(&h);
    history_view v = history_after(&h, 10, 1000);
    s_expect(&h, v, 0, 0);
    assert_int_equal(v.first_id, 11);
    s_expect(&h, history_after(&h, 9, 1000), 10, 1);
    history_free(&h);
}

static void test_after_older_than_oldest(void **state)
{
    (void)state;
    history h;
    s_fill(&h);
    s_expect(&h, history_after(&h, 2, 1000), 5, 6);
    s_expect(&h, history_after(&h, 4, 1000), 5, 6);   /* no gap: next is 5 */
    s_expect(&h, history_after(&h, 5, 1000), 6, 5);
    history_free(&h);
}

static void test_after_beyond_last(void **state)
{
    (void)state;
    history h;
    s_fill(&h);
    s_expect(&h, history_after(&h, 11, 1000), 0, 0);
    s_expect(&h, history_after(&h, UINT64_MAX, 1000), 0, 0);
    history_free(&h);
}

static void test_after_limit_returns_oldest_first(void **state)
{
    (void)state;
    history h;
    s_fill(&h);
    s_expect(&h, history_after(&h, 0, 2), 5, 2);
    s_expect(&h, history_after(&h, 6, 2), 7, 2);
    s_expect(&h, history_after(&h, 6, 0), 0, 0);
    assert_string_equal(history_get(&h, 7)->data, "m7");
    history_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_ids_start_at_one_and_increase),
        cmocka_unit_test(test_message_keeps_binary_data_and_event),
        cmocka_unit_test(test_count_trim),
        cmocka_unit_test(test_count_trim_wraps_ring),
        cmocka_unit_test(test_count_limit_one),
        cmocka_unit_test(test_age_trim_on_append),
        cmocka_unit_test(test_age_trim_tick_keeps_last_id),
        cmocka_unit_test(test_age_zero_means_unlimited),
        cmocka_unit_test(test_after_zero),
        cmocka_unit_test(test_after_last),
        cmocka_unit_test(test_after_older_than_oldest),
        cmocka_unit_test(test_after_beyond_last),
        cmocka_unit_test(test_after_limit_returns_oldest_first),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
