/* rate (GCRA): spec building, every formula of DESIGN.md section 3 against
 * hand-computed tables, the seed-4 burst queue, off-by-one boundaries,
 * overflow-sized inputs and refunds. Time is injected; nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S  SL_NS_PER_SEC
#define T1 100000000LL     /* ns: T of 10/s */
#define T0 1000000000000LL /* ns: an arbitrary start time */

#include "core/check.h"

/* One request; its expected result. The state carries over between steps. */
struct step {
	int64_t now;   /* ns */
	uint64_t cost; /* units */
	int outcome;
	uint64_t remaining;  /* units */
	int64_t reset_after; /* ns */
	int64_t retry_after; /* ns */
	int64_t delay;       /* ns */
};

static void run_steps(const struct sl_limit_spec *spec, const struct step *steps, size_t n)
{
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	for (size_t i = 0; i < n; i++) {
		const struct step *s = &steps[i];
		struct sl_state before = st;
		int o = sl_algo_eval(spec, &st, s->now, s->cost, &next, &r);

		CHECK(i, o, s->outcome);
		CHECK(i, r.outcome, s->outcome);
		CHECK(i, r.remaining, s->remaining);
		CHECK(i, r.reset_after, s->reset_after);
		CHECK(i, r.retry_after, s->retry_after);
		CHECK(i, r.delay, s->delay);
		CHECK(i, r.limit, spec->n);
		CHECK(i, r.window, spec->period);
		/* evaluation never writes the caller's state */
		CHECK(i, st.expires, before.expires);
		if (o == SL_REJECTED || s->cost == 0) {
			CHECK(i, next.expires, st.expires);
			CHECK(i, next.v, st.v);
		} else {
			CHECK(i, next.expires, s->now + s->reset_after); /* expires = TAT */
			CHECK(i, next.v, (uint64_t)spec->interval); /* the T it was committed under */
		}
		st = next;
	}
}

struct spec_case {
	uint64_t n;
	int64_t period;
	uint64_t burst, queue;
	int rc;
	int64_t interval;
	uint64_t want_burst;
};

static void gcra_spec_validates_and_rounds_interval_up(void **state)
{
	static const struct spec_case cases[] = {
	        {900, SL_NS_PER_MIN, 15, 5, SL_OK, 66666667, 15},
	        {10, S, 0, 0, SL_OK, T1, 10},              /* burst 0: default N */
	        {3, 10, 0, 0, SL_OK, 4, 3},                /* ceil(10/3) */
	        {10, 10, 0, 0, SL_OK, 1, 10},              /* exactly 1 ns */
	        {11, 10, 0, 0, SL_EINVAL, 0, 0},           /* under 1 ns */
	        {0, S, 0, 0, SL_EINVAL, 0, 0},             /* N = 0 */
	        {10, 0, 0, 0, SL_EINVAL, 0, 0},            /* empty period */
	        {10, -S, 0, 0, SL_EINVAL, 0, 0},           /* negative period */
	        {1, INT64_MAX, 1, 0, SL_OK, INT64_MAX, 1}, /* B*T == INT64_MAX */
	        {1, INT64_MAX, 2, 0, SL_EINVAL, 0, 0},     /* B*T overflows */
	        {1, INT64_MAX, 1, 1, SL_EINVAL, 0, 0},     /* (B+Q)*T overflows */
	        {1, 1, UINT64_MAX, 1, SL_EINVAL, 0, 0},    /* B+Q overflows */
	        {1, 1, UINT64_MAX, 0, SL_EINVAL, 0, 0},    /* B*T past int64 */
	        {UINT64_C(1) << 40, SL_NS_PER_DAY, 0, 0, SL_OK, 79, UINT64_C(1) << 40},
	        {UINT64_C(1) << 40, SL_NS_PER_MIN, 0, 0, SL_EINVAL, 0, 0},
	};
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct spec_case *c = &cases[i];
		struct sl_limit_spec s;

		memset(&s, 0xa5, sizeof(s));
		CHECK(i, sl_spec_rate(&s, c->n, c->period, c->burst, c->queue), c->rc);
		if (c->rc != SL_OK)
			continue;
		CHECK(i, s.algo, SL_ALGO_RATE);
		CHECK(i, s.interval, c->interval);
		CHECK(i, s.burst, c->want_burst);
		CHECK(i, s.queue, c->queue);
		CHECK(i, s.n, c->n);
		CHECK(i, s.period, c->period);
	}
}

/* 10/s, B = N = 10, T = 100 ms. */
static void gcra_nth_request_passes_and_next_fails_at_same_instant(void **state)
{
	static const struct step steps[] = {
	        {T0, 1, SL_ALLOWED, 9, T1, 0, 0},
	        {T0, 8, SL_ALLOWED, 1, 9 * T1, 0, 0},
	        {T0, 1, SL_ALLOWED, 0, 10 * T1, 0, 0},              /* the N-th unit */
	        {T0, 1, SL_REJECTED, 0, 10 * T1, T1, 0},            /* N+1: wait one T */
	        {T0 + T1 - 1, 1, SL_REJECTED, 0, 9 * T1 + 1, 1, 0}, /* 1 ns early */
	        {T0 + T1, 1, SL_ALLOWED, 0, 10 * T1, 0, 0},         /* exactly on time */
	        {T0 + T1, 0, SL_ALLOWED, 0, 10 * T1, 0, 0},         /* peek when empty */
	        {T0 + 11 * T1, 10, SL_ALLOWED, 0, 10 * T1, 0, 0},   /* idle: full again */
	        {T0 + 11 * T1, 11, SL_REJECTED, 0, 10 * T1, 0, 0},  /* > B: never */
	};
	struct sl_limit_spec s;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 0, 0), SL_OK);
	run_steps(&s, steps, sizeof(steps) / sizeof(steps[0]));
}

/* 10/s with burst 3: capacity smaller than N. */
static void gcra_small_burst_refills_one_interval_at_a_time(void **state)
{
	static const struct step steps[] = {
	        {T0, 3, SL_ALLOWED, 0, 3 * T1, 0, 0},
	        {T0, 1, SL_REJECTED, 0, 3 * T1, T1, 0},
	        {T0 + T1 / 2, 1, SL_REJECTED, 0, 5 * T1 / 2, T1 / 2, 0},
	        {T0 + T1, 1, SL_ALLOWED, 0, 3 * T1, 0, 0},
	        {T0 + 4 * T1, 0, SL_ALLOWED, 3, 0, 0, 0},  /* drained: peek says 3 */
	        {T0 + 4 * T1, 4, SL_REJECTED, 0, 0, 0, 0}, /* cost > burst: never */
	        {T0 + 4 * T1, 2, SL_ALLOWED, 1, 2 * T1, 0, 0},
	};
	struct sl_limit_spec s;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 3, 0), SL_OK);
	run_steps(&s, steps, sizeof(steps) / sizeof(steps[0]));
}

static void gcra_rejects_when_cost_exceeds_burst(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 5, 2), SL_OK);
	/* cost in (B, B+Q]: fits only through the queue */
	assert_int_equal(sl_algo_eval(&s, &st, T0, 6, &next, &r), SL_DELAYED);
	assert_int_equal(r.delay, T1);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 7, &next, &r), SL_DELAYED);
	assert_int_equal(r.delay, 2 * T1);
	/* cost > B+Q: never fits, retry_after 0 and nothing changes */
	assert_int_equal(sl_algo_eval(&s, &st, T0, 8, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	assert_int_equal(r.remaining, 0);
	assert_memory_equal(&next, &st, sizeof(st));
}

/* Seed 4: rate 900/min, burst 15, queue 5; 23 requests at one instant. */
static void gcra_seed4_burst_queue_passes_15_delays_5_rejects_3(void **state)
{
	const int64_t t = 66666667; /* ns: ceil(60 s / 900) */
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;
	int allowed = 0, delayed = 0, rejected = 0;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 900, SL_NS_PER_MIN, 15, 5), SL_OK);
	assert_int_equal(s.interval, t);
	for (int k = 1; k <= 23; k++) {
		int o = sl_algo_eval(&s, &st, T0, 1, &next, &r);

		assert_int_equal(r.limit, 900); /* N, not B */
		if (k <= 15) {
			assert_int_equal(o, SL_ALLOWED);
			assert_int_equal(r.remaining, 15 - k);
			assert_int_equal(r.reset_after, k * t);
			assert_int_equal(r.delay, 0);
			allowed++;
		} else if (k <= 20) {
			assert_int_equal(o, SL_DELAYED);
			assert_int_equal(r.delay, (k - 15) * t); /* T, 2T, .. 5T exactly */
			assert_int_equal(r.remaining, 0);
			assert_int_equal(r.reset_after, k * t);
			delayed++;
		} else {
			assert_int_equal(o, SL_REJECTED);
			assert_int_equal(r.retry_after, 6 * t);
			assert_int_equal(r.reset_after, 20 * t);
			assert_int_equal(r.remaining, 0);
			assert_memory_equal(&next, &st, sizeof(st));
			rejected++;
		}
		st = next;
	}
	assert_int_equal(allowed, 15);
	assert_int_equal(delayed, 5);
	assert_int_equal(rejected, 3);
	assert_int_equal(st.expires, T0 + 20 * t);
	assert_int_equal(st.v, (uint64_t)t);
	/* one T later the queue has one free place again */
	assert_int_equal(sl_algo_eval(&s, &st, T0 + t, 1, &next, &r), SL_DELAYED);
	assert_int_equal(r.delay, 5 * t);
	assert_int_equal(sl_algo_eval(&s, &st, T0 + t - 1, 1, &next, &r), SL_REJECTED);
}

static void gcra_peek_never_rejects_nor_changes_state(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {T0 + 25 * T1, 0}, next; /* 10 + 5 queued, 10 T ahead */
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 10, 20), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 0, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	assert_int_equal(r.reset_after, 25 * T1);
	assert_int_equal(r.delay, 0);
	assert_memory_equal(&next, &st, sizeof(st));
	st.expires = T0 + 3 * T1;
	assert_int_equal(sl_algo_eval(&s, &st, T0, 0, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 7);
}

static void gcra_clock_going_backwards_does_not_grant_capacity(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 0, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 10, &next, &r), SL_ALLOWED);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, T0 - S, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, S + T1);
	assert_memory_equal(&next, &st, sizeof(st));
	assert_int_equal(sl_algo_eval(&s, &st, T0 - S, 0, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
}

static void gcra_huge_limits_and_costs_never_overflow(void **state)
{
	const uint64_t big = UINT64_C(1) << 40;
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, big, SL_NS_PER_DAY, 0, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, UINT64_MAX, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 0);
	assert_int_equal(sl_algo_eval(&s, &st, T0, UINT64_MAX - 1, &next, &r), SL_REJECTED);
	assert_int_equal(sl_algo_eval(&s, &st, T0, big, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	assert_int_equal(r.reset_after, (int64_t)big * 79);
	st = next;
	assert_int_equal(sl_algo_eval(&s, &st, T0, 1, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, 79);

	/* B*T == INT64_MAX: the largest spec the builder accepts */
	assert_int_equal(sl_spec_rate(&s, 1, 1, INT64_MAX, 0), SL_OK);
	st = (struct sl_state){0, 0};
	assert_int_equal(sl_algo_eval(&s, &st, 0, INT64_MAX, &next, &r), SL_ALLOWED);
	assert_int_equal(next.expires, INT64_MAX);
	assert_int_equal(sl_algo_eval(&s, &st, 0, (uint64_t)INT64_MAX + 1, &next, &r), SL_REJECTED);
	/* the widest backlog int64 can hold, at the earliest time */
	st = (struct sl_state){INT64_MAX, 0};
	assert_int_equal(sl_algo_eval(&s, &st, INT64_MIN, 0, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 0);
	assert_int_equal(r.reset_after, INT64_MAX); /* saturated */
	assert_int_equal(sl_algo_eval(&s, &st, INT64_MIN, INT64_MAX, &next, &r), SL_REJECTED);
	assert_int_equal(r.retry_after, INT64_MAX); /* 2^64 - 1 ns, saturated */

	/* a TAT past the end of time saturates instead of wrapping */
	assert_int_equal(sl_spec_rate(&s, 10, S, 0, 0), SL_OK);
	st = (struct sl_state){0, 0};
	assert_int_equal(sl_algo_eval(&s, &st, INT64_MAX - 10, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(next.expires, INT64_MAX);
	assert_int_equal(r.reset_after, T1);
}

static void gcra_refund_gives_back_intervals_but_never_past_fresh(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next, fresh = {0, 0};
	struct sl_result r;

	(void)state;
	assert_int_equal(sl_spec_rate(&s, 10, S, 0, 0), SL_OK);
	assert_int_equal(sl_algo_eval(&s, &st, T0, 5, &next, &r), SL_ALLOWED);
	st = next;
	sl_algo_refund(&s, &st, T0, 2);
	assert_int_equal(st.expires, T0 + 3 * T1);
	sl_algo_eval(&s, &st, T0, 0, &next, &r);
	assert_int_equal(r.remaining, 7);
	sl_algo_refund(&s, &st, T0, UINT64_MAX);
	assert_int_equal(st.expires, T0); /* never below now */
	sl_algo_eval(&s, &st, T0, 0, &next, &r);
	assert_int_equal(r.remaining, 10);
	assert_int_equal(r.reset_after, 0);
	sl_algo_refund(&s, &fresh, T0, 3);
	assert_int_equal(fresh.expires, 0);
	assert_int_equal(fresh.v, 0);
}

/* DESIGN.md section 8: the counter outlives a change of the limit's
 * numbers, keeping the units used. 6 of 30/hour moved to 100/hour is 6
 * used of 100 (94 left), not the 20 the raw backlog would read as; moved
 * back it is 6 of 30 again. A refund under the new numbers rescales too;
 * a state written before T was kept (v = 0) reads as it is. */
static void gcra_numbers_change_keeps_units_used(void **state)
{
	struct sl_limit_spec a, b, c;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;
	const int64_t H = 3600 * S;

	(void)state;
	assert_int_equal(sl_spec_rate(&a, 30, H, 0, 0), SL_OK);
	assert_int_equal(sl_spec_rate(&b, 100, H, 0, 0), SL_OK);
	assert_int_equal(sl_spec_rate(&c, 30, H, 60, 0), SL_OK); /* burst raised */
	for (int i = 0; i < 6; i++) {
		assert_int_equal(sl_algo_eval(&a, &st, T0, 1, &next, &r), SL_ALLOWED);
		st = next;
	}
	assert_int_equal(r.remaining, 24);
	assert_int_equal(st.v, (uint64_t)a.interval);
	sl_algo_eval(&b, &st, T0, 0, &next, &r); /* peek under 100/hour */
	assert_int_equal(r.remaining, 94);
	assert_int_equal(sl_algo_eval(&b, &st, T0, 1, &next, &r), SL_ALLOWED);
	assert_int_equal(r.remaining, 93);
	assert_int_equal(next.v, (uint64_t)b.interval);
	assert_int_equal(next.expires, T0 + 7 * b.interval);
	st = next;
	sl_algo_eval(&a, &st, T0, 0, &next, &r); /* and back: 7 of 30 */
	assert_int_equal(r.remaining, 23);
	sl_algo_eval(&c, &st, T0, 0, &next, &r); /* burst 60: 7 of 60 */
	assert_int_equal(r.remaining, 53);
	sl_algo_refund(&a, &st, T0, 2); /* refund under 30/hour: 5 used */
	assert_int_equal(st.v, (uint64_t)a.interval);
	assert_int_equal(st.expires, T0 + 5 * a.interval);
	/* an old state without T: the backlog as it stands */
	st = (struct sl_state){T0 + 3 * b.interval, 0};
	sl_algo_eval(&a, &st, T0, 0, &next, &r);
	assert_int_equal(r.remaining, 29); /* 3 T of 100/hour < 1 T of 30/hour */
	/* extreme intervals never overflow */
	st = (struct sl_state){INT64_MAX, 1};
	assert_int_equal(sl_spec_rate(&c, 1, INT64_MAX / 2, 0, 0), SL_OK);
	sl_algo_eval(&c, &st, 0, 0, &next, &r);
	assert_int_equal(r.remaining, 0);
}

static void unlimited_and_deny_report_their_fixed_answers(void **state)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;

	(void)state;
	sl_spec_unlimited(&s);
	assert_int_equal(sl_algo_eval(&s, &st, T0, UINT64_MAX, &next, &r), SL_ALLOWED);
	assert_true(r.limit == SL_UNLIMITED && r.remaining == SL_UNLIMITED);
	assert_int_equal(r.window, 0);
	assert_memory_equal(&next, &st, sizeof(st));
	sl_spec_deny(&s);
	for (uint64_t c = 0; c < 3; c++) {
		assert_int_equal(sl_algo_eval(&s, &st, T0, c, &next, &r), SL_REJECTED);
		assert_int_equal(r.retry_after, 0);
		assert_int_equal(r.remaining, 0);
		assert_memory_equal(&next, &st, sizeof(st));
	}
	memset(&s, 0, sizeof(s)); /* algo 0: unknown, fails closed */
	assert_int_equal(sl_algo_eval(&s, &st, T0, 1, &next, &r), SL_REJECTED);
	sl_algo_refund(&s, &st, T0, 1);
	assert_int_equal(st.expires, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(gcra_spec_validates_and_rounds_interval_up),
	        cmocka_unit_test(gcra_nth_request_passes_and_next_fails_at_same_instant),
	        cmocka_unit_test(gcra_small_burst_refills_one_interval_at_a_time),
	        cmocka_unit_test(gcra_rejects_when_cost_exceeds_burst),
	        cmocka_unit_test(gcra_seed4_burst_queue_passes_15_delays_5_rejects_3),
	        cmocka_unit_test(gcra_peek_never_rejects_nor_changes_state),
	        cmocka_unit_test(gcra_clock_going_backwards_does_not_grant_capacity),
	        cmocka_unit_test(gcra_huge_limits_and_costs_never_overflow),
	        cmocka_unit_test(gcra_refund_gives_back_intervals_but_never_past_fresh),
	        cmocka_unit_test(gcra_numbers_change_keeps_units_used),
	        cmocka_unit_test(unlimited_and_deny_report_their_fixed_answers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
