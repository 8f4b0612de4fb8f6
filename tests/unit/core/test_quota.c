/* quota and its calendar: window bounds checked against dates computed
 * independently (Python's datetime) for every calendar, month lengths
 * (Feb 28/29, century rules, 30/31 days, year end), Monday weeks, positive
 * and negative offsets; then counting, exact resets, boundaries, a clock
 * going backwards, huge limits and refunds. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S   SL_NS_PER_SEC
#define DAY (86400 * S)

#include "core/check.h"

struct cal_case {
	uint8_t cal;
	int32_t tz;      /* s east of UTC */
	int64_t now_s;   /* unix s */
	int64_t now_ns;  /* ns added to now_s (negative: just before) */
	int64_t start_s; /* unix s */
	int64_t end_s;   /* unix s */
};

static void calendar_windows_match_independent_dates(void **state)
{
	static const struct cal_case cases[] = {
	        /* hour: 2024-02-29 13:45:10 */
	        {SL_CAL_HOUR, 0, 1709214310, 0, 1709211600, 1709215200},
	        {SL_CAL_HOUR, 19800, 1709214310, 0, 1709213400, 1709217000}, /* +05:30 */
	        {SL_CAL_HOUR, -3600, 1709214310, 0, 1709211600, 1709215200},
	        {SL_CAL_HOUR, 0, 1709215200, 0, 1709215200, 1709218800},  /* at the boundary */
	        {SL_CAL_HOUR, 0, 1709215200, -1, 1709211600, 1709215200}, /* 1 ns before */
	        /* day */
	        {SL_CAL_DAY, 0, 1709214310, 0, 1709164800, 1709251200},
	        {SL_CAL_DAY, 3600, 1709214310, 0, 1709161200, 1709247600},
	        {SL_CAL_DAY, 3600, 1709249400, 0, 1709247600, 1709334000}, /* local Mar 1 */
	        {SL_CAL_DAY, -18000, 1709214310, 0, 1709182800, 1709269200},
	        {SL_CAL_DAY, -18000, 1709175600, 0, 1709096400, 1709182800}, /* local Feb 28 */
	        {SL_CAL_DAY, 0, 0, -1, -86400, 0},                           /* before the epoch */
	        /* week, Monday first: 2024-03-03 is a Sunday */
	        {SL_CAL_WEEK, 0, 1709467200, 0, 1708905600, 1709510400},
	        {SL_CAL_WEEK, 0, 1709510400, 0, 1709510400, 1710115200}, /* Monday 00:00 */
	        {SL_CAL_WEEK, 0, 1709510400, -1, 1708905600, 1709510400},
	        {SL_CAL_WEEK, 0, 0, 0, -259200, 345600}, /* 1970-01-01 Thu */
	        {SL_CAL_WEEK, 3600, 1709508600, 0, 1709506800, 1710111600},
	        {SL_CAL_WEEK, -3600, 1709512200, 0, 1708909200, 1709514000},
	        /* month */
	        {SL_CAL_MONTH, 0, 1707991200, 0, 1706745600, 1709251200}, /* Feb 2024: 29 d */
	        {SL_CAL_MONTH, 0, 1676455200, 0, 1675209600, 1677628800}, /* Feb 2023: 28 d */
	        {SL_CAL_MONTH, 0, 4106368800, 0, 4105123200, 4107542400}, /* Feb 2100: 28 d */
	        {SL_CAL_MONTH, 0, 950608800, 0, 949363200, 951868800},    /* Feb 2000: 29 d */
	        {SL_CAL_MONTH, 0, 1713175200, 0, 1711929600, 1714521600}, /* Apr: 30 d */
	        {SL_CAL_MONTH, 0, 1702634400, 0, 1701388800, 1704067200}, /* Dec -> Jan */
	        {SL_CAL_MONTH, 0, 1704067200, 0, 1704067200, 1706745600}, /* Jan: 31 d */
	        {SL_CAL_MONTH, 0, 1704067200, -1, 1701388800, 1704067200},
	        {SL_CAL_MONTH, 3600, 1704065400, 0, 1704063600, 1706742000}, /* local Jan 1 */
	        {SL_CAL_MONTH, 0, -1, 0, -2678400, 0},                       /* Dec 1969 */
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct cal_case *c = &cases[i];
		int64_t start, end;

		sl_calendar_window(c->cal, c->tz, c->now_s * S + c->now_ns, &start, &end);
		CHECK(i, start, c->start_s * S);
		CHECK(i, end, c->end_s * S);
	}
}

static void calendar_saturates_at_the_end_of_time(void **state)
{
	int64_t start, end;

	(void)state;
	sl_calendar_window(SL_CAL_MONTH, 86399, INT64_MAX, &start, &end);
	assert_true(start <= INT64_MAX && end == INT64_MAX);
	sl_calendar_window(SL_CAL_WEEK, -86399, INT64_MIN, &start, &end);
	assert_int_equal(start, INT64_MIN);
	assert_true(end > INT64_MIN);
}

static void quota_spec_refuses_bad_input(void **state)
{
	static const struct {
		uint64_t n;
		uint8_t cal;
		int32_t tz;
		int rc;
	} cases[] = {
	        {1, SL_CAL_HOUR, 0, SL_OK},          {UINT64_MAX, SL_CAL_MONTH, 0, SL_OK},
	        {0, SL_CAL_DAY, 0, SL_EINVAL},       {1, 0, 0, SL_EINVAL},
	        {1, SL_CAL_MONTH + 1, 0, SL_EINVAL}, {1, SL_CAL_DAY, 86399, SL_OK},
	        {1, SL_CAL_DAY, -86399, SL_OK},      {1, SL_CAL_DAY, 86400, SL_EINVAL},
	        {1, SL_CAL_DAY, -86400, SL_EINVAL},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sl_limit_spec s;

		CHECK(i, sl_spec_quota(&s, cases[i].n, cases[i].cal, cases[i].tz), cases[i].rc);
		if (cases[i].rc == SL_OK) {
			CHECK(i, s.algo, SL_ALGO_QUOTA);
			CHECK(i, s.n, cases[i].n);
		}
	}
}

/* 3/hour, 2024-02-29 13:45:10 UTC: the hour ends in 890 s. */
static void quota_nth_request_passes_and_next_fails_until_window_end(void **state)
{
	const int64_t now = 1709214310 * S, end = 1709215200 * S;
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_quota(&s, 3, SL_CAL_HOUR, 0), SL_OK);
	for (uint64_t k = 1; k <= 3; k++) {
		assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_ALLOWED);
		assert_int_equal(r.remaining, 3 - k);
		assert_int_equal(r.reset_after, 890 * S);
		assert_int_equal(r.window, 3600 * S);
		assert_int_equal(r.limit, 3);
		assert_int_equal(next.expires, end);
		assert_int_equal(next.v, k);
		st = next;
	}
	assert_int_equal((now + r.reset_after) % (3600 * S), 0);
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 890 * S);
	assert_int_equal(r.remaining, 0);
	assert_memory_equal(&next, &st, sizeof(st));
	/* one ns before the end: still the old window */
	assert_int_equal(sl_algo_eval(&s, &st, end - 1, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 1);
	/* at the end: a fresh window */
	assert_int_equal(sl_algo_eval(&s, &st, end, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 2);
	assert_int_equal(r.reset_after, 3600 * S);
	assert_int_equal(next.expires, end + 3600 * S);
	assert_int_equal(next.v, 1);
}

static void quota_rejects_costs_that_do_not_fit(void **state)
{
	const int64_t now = 1707991200 * S; /* 2024-02-15 10:00 UTC */
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_quota(&s, 10, SL_CAL_MONTH, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, now, 11, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0); /* more than N: never */
	assert_int_equal(r.remaining, 10);
	assert_int_equal(r.window, 29 * DAY);
	assert_int_equal(sl_algo_eval(&s, &st, now, 8, &next, &r), SL_ALLOWED);
	st = next;
	/* used 8 + cost 3 > 10: rejected; what is left (2) is still reported */
	assert_int_equal(sl_algo_eval(&s, &st, now, 3, &next, &r), SL_REJECTED);
	assert_int_equal(r.remaining, 2);
	assert_int_equal(r.retry_after, 1709251200 * S - now);
	assert_int_equal(sl_algo_eval(&s, &st, now, 2, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, now, UINT64_MAX, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	/* peek never rejects */
	assert_int_equal(sl_algo_eval(&s, &st, now, 0, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	assert_memory_equal(&next, &st, sizeof(st));
}

static void quota_clock_going_backwards_keeps_counting_the_stored_window(void **state)
{
	const int64_t h = 1709211600 * S; /* start of an hour */
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_quota(&s, 2, SL_CAL_HOUR, 0), SL_OK);
	for (int k = 0; k < 2; k++) {
		assert_int_equal(sl_algo_eval(&s, &st, h + 10 * S, 1, &next, &r), SL_ALLOWED);
		st = next;
	}
	/* back 100 s before the hour began: no fresh quota */
	assert_int_equal(sl_algo_eval(&s, &st, h - 100 * S, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 3700 * S);
	assert_int_equal(r.reset_after, 3700 * S);
	assert_int_equal(r.window, 3600 * S);
	sl_algo_eval(&s, &st, h - 100 * S, 0, &next, &r);
	assert_int_equal(r.remaining, 0);
}

static void quota_stale_state_from_an_old_window_reads_as_fresh(void **state)
{
	const int64_t now = 1709214310 * S;
	struct sl_limit_spec s;
	struct sl_state st = {now - 5 * DAY, 7}, next; /* ended days ago, full */
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_quota(&s, 7, SL_CAL_DAY, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 6);
	assert_int_equal(next.expires, 1709251200 * S);
	assert_int_equal(next.v, 1);
}

static void quota_huge_limits_never_overflow(void **state)
{
	const int64_t now = 1709214310 * S;
	const uint64_t big = UINT64_C(1) << 40;
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_quota(&s, big, SL_CAL_WEEK, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, now, big, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.window, 7 * DAY);

	assert_int_equal(sl_spec_quota(&s, UINT64_MAX, SL_CAL_DAY, 0), SL_OK);
	st = (struct sl_state){0, 0};
	assert_int_equal(sl_algo_eval(&s, &st, now, UINT64_MAX - 1, &next, &r), SL_ALLOWED);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, now, 2, &next, &r), SL_REJECTED);
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(next.v, UINT64_MAX);
	/* a corrupt count above N reads as nothing left, not a wrap */
	st = (struct sl_state){1709251200 * S, UINT64_MAX};
	assert_int_equal(sl_spec_quota(&s, 5, SL_CAL_DAY, 0), SL_OK);
	sl_algo_eval(&s, &st, now, 0, &next, &r);
	assert_int_equal(r.remaining, 0);
	assert_int_equal(sl_algo_eval(&s, &st, now, 1, &next, &r), SL_REJECTED);
}

static void quota_hourly_reset_is_a_whole_hour_for_whole_hour_offsets(void **state)
{
	static const int32_t tzs[] = {0, 3600, -3600, 5 * 3600, -11 * 3600, 14 * 3600};
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(tzs) / sizeof(tzs[0]); i++) {
		assert_int_equal(sl_spec_quota(&s, 5, SL_CAL_HOUR, tzs[i]), SL_OK);
		for (int64_t now = 1709214310 * S + 12345; now < 1709300000 * S;
		     now += 7777 * S + 777) {
			sl_algo_eval(&s, &st, now, 1, &next, &r);
			CHECK(i, (now + r.reset_after) % (3600 * S), 0);
			CHECK(i, r.reset_after > 0 && r.reset_after <= 3600 * S, 1);
		}
	}
}

static void quota_refund_never_goes_below_zero(void **state)
{
	const int64_t now = 1709214310 * S;
	struct sl_limit_spec s;
	struct sl_state st = {1709215200 * S, 3}, old = {now - 1, 3};

	(void)state;
	assert_int_equal(sl_spec_quota(&s, 5, SL_CAL_HOUR, 0), SL_OK);
	sl_algo_refund(&s, &st, now, 2);
	assert_int_equal(st.v, 1);
	assert_int_equal(st.expires, 1709215200 * S);
	sl_algo_refund(&s, &st, now, UINT64_MAX);
	assert_int_equal(st.v, 0);
	sl_algo_refund(&s, &old, now, 1); /* expired: untouched */
	assert_int_equal(old.v, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(calendar_windows_match_independent_dates),
	        cmocka_unit_test(calendar_saturates_at_the_end_of_time),
	        cmocka_unit_test(quota_spec_refuses_bad_input),
	        cmocka_unit_test(quota_nth_request_passes_and_next_fails_until_window_end),
	        cmocka_unit_test(quota_rejects_costs_that_do_not_fit),
	        cmocka_unit_test(quota_clock_going_backwards_keeps_counting_the_stored_window),
	        cmocka_unit_test(quota_stale_state_from_an_old_window_reads_as_fresh),
	        cmocka_unit_test(quota_huge_limits_never_overflow),
	        cmocka_unit_test(quota_hourly_reset_is_a_whole_hour_for_whole_hour_offsets),
	        cmocka_unit_test(quota_refund_never_goes_below_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
