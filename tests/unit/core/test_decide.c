/* sl_decide: all or nothing over several limits. Everything passing commits
 * every state; one rejection commits nothing, names the first rejecting
 * limit and shows the others as peeks; queued limits report the largest
 * delay; items sharing a state see each other's take. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S  SL_NS_PER_SEC
#define T0 (1709214310 * S) /* 2024-02-29 13:45:10 UTC */

static void decide_commits_every_state_when_all_pass(void **state)
{
	struct sl_limit_spec rate, quota;
	struct sl_state a = {0, 0}, b = {0, 0};
	struct sl_decide_item it[2] = {{.spec = &rate, .cost = 2, .state = &a},
	                               {.spec = &quota, .cost = 2, .state = &b}};
	size_t denied = 99;
	int64_t delay = 99;

	(void)state;
	assert_int_equal(sl_spec_rate(&rate, 10, S, 0, 0), SL_OK);
	assert_int_equal(sl_spec_quota(&quota, 100, SL_CAL_DAY, 0), SL_OK);
	assert_int_equal(sl_decide(it, 2, T0, &denied, &delay), SL_OK);
	assert_int_equal(denied, 2);
	assert_int_equal(delay, 0);
	assert_int_equal(a.expires, T0 + 2 * S / 10);
	assert_int_equal(b.v, 2);
	assert_memory_equal(&a, &it[0].next, sizeof(a));
	assert_int_equal(it[0].res.remaining, 8);
	assert_int_equal(it[1].res.remaining, 98);
}

/* Three limits; the last rejects: nothing changes anywhere. */
static void decide_commits_nothing_when_the_last_of_three_rejects(void **state)
{
	struct sl_limit_spec rate, quota, sliding;
	struct sl_state a = {0, 0}, b = {1709251200 * S, 5}, c = {0, 0};
	struct sl_state a0, b0, c0;
	struct sl_decide_item it[3] = {{.spec = &rate, .cost = 1, .state = &a},
	                               {.spec = &quota, .cost = 1, .state = &b},
	                               {.spec = &sliding, .cost = 1, .state = &c}};
	size_t denied = 99;
	int64_t delay = 99;

	(void)state;
	assert_int_equal(sl_spec_rate(&rate, 10, S, 0, 0), SL_OK);
	assert_int_equal(sl_spec_quota(&quota, 100, SL_CAL_DAY, 0), SL_OK);
	assert_int_equal(sl_spec_sliding(&sliding, 1, SL_NS_PER_MIN), SL_OK);
	c = (struct sl_state){(1709214300 / 60 + 2) * 60 * S, 1}; /* 1 of 1 used */
	a0 = a, b0 = b, c0 = c;
	assert_int_equal(sl_decide(it, 3, T0, &denied, &delay), SL_DENY);
	assert_int_equal(denied, 2);
	assert_int_equal(delay, 0);
	assert_memory_equal(&a, &a0, sizeof(a));
	assert_memory_equal(&b, &b0, sizeof(b));
	assert_memory_equal(&c, &c0, sizeof(c));
	for (int i = 0; i < 3; i++)
		assert_memory_equal(&it[i].next, it[i].state, sizeof(a));
	/* the others show what they still have, as peeks */
	assert_int_equal(it[0].res.outcome, SL_ALLOWED);
	assert_int_equal(it[0].res.remaining, 10);
	assert_int_equal(it[1].res.outcome, SL_ALLOWED);
	assert_int_equal(it[1].res.remaining, 95);
	assert_int_equal(it[2].res.outcome, SL_REJECTED);
	assert_int_equal(it[2].res.retry_after, 60 * S + 50 * S); /* next window, at its end */
}

static void decide_names_first_rejecting_item_and_keeps_other_rejections(void **state)
{
	struct sl_limit_spec deny, rate, conc;
	struct sl_state a = {0, 0}, b = {0, 0}, c = {T0 + S, 1};
	struct sl_decide_item it[3] = {{.spec = &rate, .cost = 11, .state = &b},
	                               {.spec = &deny, .cost = 1, .state = &a},
	                               {.spec = &conc, .cost = 1, .state = &c}};
	size_t denied = 99;

	(void)state;
	sl_spec_deny(&deny);
	assert_int_equal(sl_spec_rate(&rate, 10, S, 0, 0), SL_OK);
	assert_int_equal(sl_spec_concurrency(&conc, 1, 30 * S), SL_OK);
	assert_int_equal(sl_decide(it, 3, T0, &denied, NULL), SL_DENY);
	assert_int_equal(denied, 0);
	assert_int_equal(it[0].res.outcome, SL_REJECTED);
	assert_int_equal(it[1].res.outcome, SL_REJECTED);
	assert_int_equal(it[2].res.outcome, SL_REJECTED);
	assert_int_equal(it[2].res.retry_after, S); /* kept, not replaced by a peek */
	assert_int_equal(c.v, 1);
}

static void decide_reports_the_largest_delay(void **state)
{
	struct sl_limit_spec q1, q2, quota;
	struct sl_state a = {0, 0}, b = {0, 0}, c = {0, 0};
	struct sl_decide_item it[3] = {{.spec = &q1, .cost = 3, .state = &a},
	                               {.spec = &quota, .cost = 3, .state = &c},
	                               {.spec = &q2, .cost = 3, .state = &b}};
	int64_t delay = 0;
	size_t denied = 0;

	(void)state;
	assert_int_equal(sl_spec_rate(&q1, 10, S, 2, 5), SL_OK); /* delay 1 T = 100 ms */
	assert_int_equal(sl_spec_rate(&q2, 4, S, 1, 5), SL_OK);  /* delay 2 T = 500 ms */
	assert_int_equal(sl_spec_quota(&quota, 10, SL_CAL_HOUR, 0), SL_OK);
	assert_int_equal(sl_decide(it, 3, T0, &denied, &delay), SL_DELAY);
	assert_int_equal(delay, S / 2);
	assert_int_equal(denied, 3);
	assert_int_equal(it[0].res.delay, S / 10);
	assert_int_equal(a.expires, T0 + 3 * S / 10); /* committed */
	assert_int_equal(c.v, 3);
}

static void decide_items_sharing_a_state_see_each_others_take(void **state)
{
	struct sl_limit_spec quota;
	struct sl_state a = {0, 0};
	struct sl_decide_item it[2] = {{.spec = &quota, .cost = 1, .state = &a},
	                               {.spec = &quota, .cost = 1, .state = &a}};
	size_t denied;

	(void)state;
	assert_int_equal(sl_spec_quota(&quota, 1, SL_CAL_HOUR, 0), SL_OK);
	assert_int_equal(sl_decide(it, 2, T0, &denied, NULL), SL_DENY);
	assert_int_equal(denied, 1);
	assert_int_equal(a.v, 0);
	assert_int_equal(sl_spec_quota(&quota, 2, SL_CAL_HOUR, 0), SL_OK);
	assert_int_equal(sl_decide(it, 2, T0, NULL, NULL), SL_OK);
	assert_int_equal(a.v, 2);
}

static void decide_with_no_items_allows(void **state)
{
	size_t denied = 7;
	int64_t delay = 7;

	(void)state;
	assert_int_equal(sl_decide(NULL, 0, T0, &denied, &delay), SL_OK);
	assert_int_equal(denied, 0);
	assert_int_equal(delay, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(decide_commits_every_state_when_all_pass),
	        cmocka_unit_test(decide_commits_nothing_when_the_last_of_three_rejects),
	        cmocka_unit_test(decide_names_first_rejecting_item_and_keeps_other_rejections),
	        cmocka_unit_test(decide_reports_the_largest_delay),
	        cmocka_unit_test(decide_items_sharing_a_state_see_each_others_take),
	        cmocka_unit_test(decide_with_no_items_allows),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
