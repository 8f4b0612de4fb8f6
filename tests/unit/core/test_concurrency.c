/* concurrency slots: acquire up to N, the N+1-th waits 1 s (never past the
 * lease lapse), release never
 * goes below zero, leases lapse exactly at last acquire + ttl, a clock
 * step back cannot shorten a lease, and costs above N never fit. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S   SL_NS_PER_SEC
#define TTL (30 * S)
#define T0  1000000000000LL

static void concurrency_admits_n_then_rejects_for_one_second(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 3, TTL), SL_OK);
	for (uint64_t k = 1; k <= 3; k++) {
		assert_int_equal(sl_algo_eval(&s, &st, T0 + (int64_t)k, 1, &next, &r), SL_ALLOWED);
		assert_int_equal(r.remaining, 3 - k);
		assert_int_equal(r.limit, 3);
		assert_int_equal(r.window, 0);
		assert_int_equal(r.reset_after, TTL);
		assert_int_equal(next.v, k);
		assert_int_equal(next.expires, T0 + (int64_t)k + TTL);
		st = next;
	}
	assert_int_equal(sl_algo_eval(&s, &st, T0 + 4, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, S);
	assert_int_equal(r.remaining, 0);
	assert_memory_equal(&next, &st, sizeof(st));
	assert_int_equal(sl_algo_eval(&s, &st, T0 + 4, 0, &next, &r), SL_ALLOWED); /* peek */
	assert_int_equal(r.remaining, 0);
	/* a release frees exactly one slot */
	sl_algo_refund(&s, &st, T0 + 5, 1);
	assert_int_equal(st.v, 2);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + 5, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + 5, 2, &next, &r), SL_REJECTED);
}

static void concurrency_lease_lapses_exactly_at_ttl(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 2, TTL), SL_OK);
	sl_algo_eval(&s, &st, T0, 2, &next, &r);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, T0 + TTL - 1, 1, &next, &r), SL_REJECTED);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + TTL, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 1);
	assert_int_equal(next.v, 1);
}

static void concurrency_clock_step_back_keeps_the_lease(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 3, TTL), SL_OK);
	sl_algo_eval(&s, &st, T0, 1, &next, &r);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, T0 - 10 * S, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(next.expires, T0 + TTL); /* not T0 - 10 s + TTL */
	assert_int_equal(next.v, 2);
	assert_int_equal(r.reset_after, TTL + 10 * S);
}

static void concurrency_release_never_goes_below_zero(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {T0 + TTL, 2}, old = {T0, 2};

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 3, TTL), SL_OK);
	sl_algo_refund(&s, &st, T0, 5);
	assert_int_equal(st.v, 0);
	assert_int_equal(st.expires, 0); /* all zero: reclaimable */
	sl_algo_refund(&s, &st, T0, 1);
	assert_int_equal(st.v, 0);
	sl_algo_refund(&s, &old, T0, 1); /* lapsed lease: untouched */
	assert_int_equal(old.v, 2);
}

static void concurrency_rejects_cost_above_slots_with_no_retry(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 3, TTL), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 4, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	assert_int_equal(sl_algo_eval(&s, &st, T0, UINT64_MAX, &next, &r), SL_REJECTED);
	assert_int_equal(sl_spec_concurrency(&s, UINT64_MAX, INT64_MAX), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, INT64_MAX - 1, UINT64_MAX, &next, &r), SL_ALLOWED);
	assert_int_equal(next.expires, INT64_MAX); /* saturated */
	assert_int_equal(r.remaining, 0);
}

/* The 1 s guess is for slots a response frees; the lapse frees them all,
 * so a retry is never advised past it. reset_after is that lapse: what a
 * caller that never releases (the check listener) must wait. */
static void concurrency_retry_never_later_than_the_lease_lapse(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 2, TTL), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 2, &next, &r), SL_ALLOWED);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, T0 + 10 * S, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, S);
	assert_int_equal(r.reset_after, TTL - 10 * S);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + TTL - S / 4, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, S / 4);
	assert_int_equal(r.reset_after, S / 4);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + TTL - 1, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 1);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + TTL, 1, &next, &r), SL_ALLOWED);
}

static void concurrency_spec_refuses_bad_input(void **state)
{
	struct sl_limit_spec s;

	(void)state;
	assert_int_equal(sl_spec_concurrency(&s, 0, TTL), SL_EINVAL);
	assert_int_equal(sl_spec_concurrency(&s, 1, 0), SL_EINVAL);
	assert_int_equal(sl_spec_concurrency(&s, 1, -1), SL_EINVAL);
	assert_int_equal(sl_spec_concurrency(&s, 1, 1), SL_OK);
	assert_int_equal(s.algo, SL_ALGO_CONCURRENCY);
	assert_int_equal(s.period, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(concurrency_admits_n_then_rejects_for_one_second),
	        cmocka_unit_test(concurrency_lease_lapses_exactly_at_ttl),
	        cmocka_unit_test(concurrency_clock_step_back_keeps_the_lease),
	        cmocka_unit_test(concurrency_release_never_goes_below_zero),
	        cmocka_unit_test(concurrency_rejects_cost_above_slots_with_no_retry),
	        cmocka_unit_test(concurrency_retry_never_later_than_the_lease_lapse),
	        cmocka_unit_test(concurrency_spec_refuses_bad_input),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
