/* sliding window counter: hand-computed estimates (10/min), the upward
 * rounding of the previous window's weight, exact retry_after to the
 * nanosecond, window boundaries, state packing, a clock going backwards,
 * 32-bit counts at their limit and refunds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S  SL_NS_PER_SEC
#define P  SL_NS_PER_MIN
#define W0 (1709211600 * S) /* ns: start of an aligned window */

#include "core/check.h"

struct step {
	int64_t now;   /* ns */
	uint64_t cost; /* units */
	int outcome;
	uint64_t remaining;  /* units */
	int64_t reset_after; /* ns */
	int64_t retry_after; /* ns */
};

static void sliding_estimates_match_hand_computed_table(void **state)
{
	static const struct step steps[] = {
	        {W0, 10, SL_ALLOWED, 0, 120 * S, 0},
	        /* cur 10: wait for the next window, until ceil(10*(60-e)/60) <= 9: e = 6 s */
	        {W0 + 10 * S, 1, SL_REJECTED, 0, 110 * S, 56 * S},
	        /* 1 ns early: ceil(10 * (54 s + 1 ns) / 60 s) = 10 */
	        {W0 + 66 * S - 1, 1, SL_REJECTED, 0, 54 * S + 1, 1},
	        {W0 + 66 * S, 1, SL_ALLOWED, 0, 114 * S, 0}, /* 9 + 1 */
	        /* e = 15 s: ceil(7.5) = 8, + cur 1 = 9 */
	        {W0 + 75 * S, 0, SL_ALLOWED, 1, 105 * S, 0},
	        /* cost 2: need ceil(10*(60-e)/60) <= 7, so e = 18 s, 3 s from now */
	        {W0 + 75 * S, 2, SL_REJECTED, 1, 105 * S, 3 * S},
	        {W0 + 78 * S, 2, SL_ALLOWED, 0, 102 * S, 0},
	        /* window 2, last ns: prev 3 weighs ceil(3 ns / 60 s) = 1 */
	        {W0 + 180 * S - 1, 0, SL_ALLOWED, 9, 1, 0},
	        /* window 3: both counts stale, fresh */
	        {W0 + 180 * S, 0, SL_ALLOWED, 10, 0, 0},
	};
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		const struct step *x = &steps[i];
		int o = sl_algo_eval(&s, &st, x->now, x->cost, &next, &r);

		CHECK(i, o, x->outcome);
		CHECK(i, r.remaining, x->remaining);
		CHECK(i, r.reset_after, x->reset_after);
		CHECK(i, r.retry_after, x->retry_after);
		CHECK(i, r.limit, 10);
		CHECK(i, r.window, P);
		if (o == SL_REJECTED || x->cost == 0)
			assert_memory_equal(&next, &st, sizeof(st));
		st = next;
	}
}

static void sliding_state_packs_counts_and_expires_two_windows_on(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	sl_algo_eval(&s, &st, W0 + 5 * S, 4, &next, &r);
	assert_int_equal(next.expires, W0 + 2 * P);
	assert_int_equal(next.v, 4);
	st = next;
	sl_algo_eval(&s, &st, W0 + P + 30 * S, 2, &next, &r); /* ceil(4 * 0.5) = 2 */
	assert_int_equal(r.remaining, 6);
	assert_int_equal(next.expires, W0 + 3 * P);
	assert_int_equal(next.v, (UINT64_C(4) << 32) | 2);
}

static void sliding_rounds_previous_weight_up(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {W0 + 2 * P, 3}, next; /* cur 3 in window 0 */
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	/* 3 * 30/60 = 1.5 counts as 2: 8 left, not 9 */
	sl_algo_eval(&s, &st, W0 + P + 30 * S, 0, &next, &r);
	assert_int_equal(r.remaining, 8);
	assert_int_equal(sl_algo_eval(&s, &st, W0 + P + 30 * S, 9, &next, &r), SL_REJECTED);
	assert_int_equal(sl_algo_eval(&s, &st, W0 + P + 30 * S, 8, &next, &r), SL_ALLOWED);
}

static void sliding_spec_refuses_bad_input(void **state)
{
	static const struct {
		uint64_t n;
		int64_t period;
		int rc;
	} cases[] = {
	        {1, 1, SL_OK},
	        {(UINT64_C(1) << 32) - 1, P, SL_OK},
	        {UINT64_C(1) << 32, P, SL_EINVAL},
	        {UINT64_MAX, P, SL_EINVAL},
	        {0, P, SL_EINVAL},
	        {10, 0, SL_EINVAL},
	        {10, -P, SL_EINVAL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sl_limit_spec s;

		CHECK(i, sl_spec_sliding(&s, cases[i].n, cases[i].period), cases[i].rc);
	}
}

static void sliding_rejects_cost_above_limit_with_no_retry(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, W0, 11, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	assert_int_equal(r.remaining, 10);
	assert_int_equal(sl_algo_eval(&s, &st, W0, UINT64_MAX, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	assert_int_equal(sl_algo_eval(&s, &st, W0, 10, &next, &r), SL_ALLOWED);
}

static void sliding_full_32_bit_counts_do_not_overflow(void **state)
{
	const uint64_t n = (UINT64_C(1) << 32) - 1;
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next, probe;
	struct sl_result r;
	int64_t t, retry;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, n, P), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, W0, n, &next, &r), SL_ALLOWED);
	assert_int_equal(next.v, n);
	st = next;
	t = W0 + P; /* prev = n at full weight */
	assert_int_equal(sl_algo_eval(&s, &st, t, 1, &next, &r), SL_REJECTED);
	retry = r.retry_after;
	assert_true(retry > 0 && retry < P);
	assert_int_equal(sl_algo_eval(&s, &st, t + retry - 1, 1, &probe, &r), SL_REJECTED);
	assert_int_equal(sl_algo_eval(&s, &st, t + retry, 1, &probe, &r), SL_ALLOWED);
	assert_int_equal(probe.v, (n << 32) | 1);
}

static void sliding_clock_going_backwards_counts_into_stored_window(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {W0 + 7 * P, 10}, next; /* cur 10 in window 5 */
	struct sl_result r;
	const int64_t now = W0 + 3 * P + 20 * S;

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_REJECTED);
	/* 100 s back to window 5's start, its 60 s, then 6 s into window 6 */
	assert_int_equal(r.retry_after, 166 * S);
	assert_int_equal(sl_algo_eval(&s, &st, now + 166 * S, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(sl_algo_eval(&s, &st, now + 166 * S - 1, 1, &next, &r), SL_REJECTED);
}

static void sliding_refund_decrements_current_count_only(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {W0 + 2 * P, (UINT64_C(4) << 32) | 3}, old = {W0, 5};

	(void)state;
	assert_int_equal(sl_spec_sliding(&s, 10, P), SL_OK);
	sl_algo_refund(&s, &st, W0 + 10 * S, 2);
	assert_int_equal(st.v, (UINT64_C(4) << 32) | 1);
	sl_algo_refund(&s, &st, W0 + 10 * S, UINT64_MAX);
	assert_int_equal(st.v, UINT64_C(4) << 32);
	assert_int_equal(st.expires, W0 + 2 * P);
	sl_algo_refund(&s, &old, W0, 1); /* expired: untouched */
	assert_int_equal(old.v, 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(sliding_estimates_match_hand_computed_table),
	        cmocka_unit_test(sliding_state_packs_counts_and_expires_two_windows_on),
	        cmocka_unit_test(sliding_rounds_previous_weight_up),
	        cmocka_unit_test(sliding_spec_refuses_bad_input),
	        cmocka_unit_test(sliding_rejects_cost_above_limit_with_no_retry),
	        cmocka_unit_test(sliding_full_32_bit_counts_do_not_overflow),
	        cmocka_unit_test(sliding_clock_going_backwards_counts_into_stored_window),
	        cmocka_unit_test(sliding_refund_decrements_current_count_only),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
