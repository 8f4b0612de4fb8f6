/* Property tests: random arrivals on a simulated clock, checked against
 * bounds and independent models rather than against the code's own
 * formulas. Each property runs over many seeds of an xorshift PRNG; a
 * failure prints the seed, and SLUICE_SEED=<n> reruns just that seed.
 *   rate:        any interval [a, b] of pass times admits at most
 *                B + (b - a)/T units; retry_after is exact to the ns.
 *   quota:       at most N per calendar window, rejections only when full;
 *                calendar windows tile time with the right lengths.
 *   sliding:     decisions equal a model rebuilt from the admission log;
 *                any interval of one period admits at most
 *                N + floor(prev * e / period) <= 2N - 1 units (prev: the
 *                previous aligned window's count, e: elapsed in the current).
 *   concurrency: never more than N in flight.
 *   decide:      all or nothing over random limit sets. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#define S      SL_NS_PER_SEC
#define SEEDS  40
#define MAXLOG 60000

static uint64_t rng;    /* xorshift64* state */
static uint64_t nseeds; /* seeds run by the last for_seeds */
static uint64_t seed;   /* the seed being run, for failure messages */

#define PROP(cond)                                                                                 \
	do {                                                                                       \
		if (!(cond))                                                                       \
			fail_msg("seed %llu: %s (rerun with SLUICE_SEED=%llu)",                    \
			         (unsigned long long)seed, #cond, (unsigned long long)seed);       \
	} while (0)

static uint64_t next_u64(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * UINT64_C(2685821657736338717);
}

/* Uniform-enough in [lo, hi]. */
static uint64_t between(uint64_t lo, uint64_t hi)
{
	return lo + next_u64() % (hi - lo + 1);
}

/* Runs fn once per seed: the SLUICE_SEED one alone, or SEEDS fixed ones. */
static void for_seeds(void (*fn)(void))
{
	const char *env = getenv("SLUICE_SEED");
	uint64_t first = 1, count = SEEDS;

	if (env) {
		first = strtoull(env, NULL, 10);
		count = 1;
	}
	nseeds = count;
	for (uint64_t i = 0; i < count; i++) {
		seed = first + i;
		rng = seed * UINT64_C(0x9e3779b97f4a7c15) | 1;
		fn();
	}
}

/* Outcomes over all seeds of a property, so a property that never reaches
 * the interesting cases (delays, rejections) fails instead of passing. */
static uint64_t seen[3];

/* Over the fixed seeds, both interesting outcomes must have occurred often;
 * a single SLUICE_SEED rerun only checks the property itself. */
static void nonvacuous(uint64_t a, uint64_t b)
{
	if (nseeds > 1)
		assert_true(a > 10 * nseeds && b > 10 * nseeds);
}

static int64_t pass_t[MAXLOG];  /* ns */
static uint64_t pass_c[MAXLOG]; /* units */

/* ---- rate ---- */

static void gcra_once(void)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next, probe;
	struct sl_result r;
	uint64_t n = between(1, 100), b, q;
	int64_t period = (int64_t)between(S / 1000, 60 * S), now, end, t;
	size_t np = 0;

	b = between(1, 2 * n);
	q = between(0, 1) ? between(1, n) : 0;
	PROP(sl_spec_rate(&s, n, period, b, q) == SL_OK);
	t = s.interval;
	now = (int64_t)between(0, (uint64_t)1 << 60);
	end = now + 2 * 3600 * S;
	/* about 1.5 arrivals per interval T, with bursts and rare idle spells */
	for (int i = 0; i < 20000 || now < end; i++) {
		uint64_t c, roll = between(0, 99);
		int o;

		if (np == MAXLOG)
			break;
		if (roll < 45)
			; /* same instant: a burst */
		else if (roll < 99)
			now += (int64_t)between(0, (uint64_t)t * 2);
		else
			now += (int64_t)between(0, (uint64_t)t * b * 4);
		roll = between(0, 99);
		c = roll < 5 ? 0 : roll < 8 ? b + q + between(1, 3) : between(1, b);
		o = sl_algo_eval(&s, &st, now, c, &next, &r);
		seen[o]++;
		PROP(r.remaining <= b);
		if (c == 0) {
			PROP(o == SL_ALLOWED);
			continue;
		}
		if (c > b + q)
			PROP(o == SL_REJECTED && r.retry_after == 0);
		if (o == SL_REJECTED) {
			PROP(next.expires == st.expires);
			if (r.retry_after > 0) {
				int64_t ra = r.retry_after; /* ns */

				PROP(sl_algo_eval(&s, &st, now + ra, c, &probe, &r) == SL_ALLOWED);
				PROP(sl_algo_eval(&s, &st, now + ra - 1, c, &probe, &r) !=
				     SL_ALLOWED);
			}
			continue;
		}
		pass_t[np] = now + (o == SL_DELAYED ? r.delay : 0);
		pass_c[np] = c;
		np++;
		st = next;
	}
	/* For every pair j <= k: units(j..k) * T <= (p_k - p_j) + B * T. With
	 * C the running sum, that is C_k*T - p_k + max_j(p_j - C_{j-1}*T) <= B*T. */
	{
		__int128 cum = 0, best = 0, bt = (__int128)b * t;

		for (size_t k = 0; k < np; k++) {
			__int128 cand = pass_t[k] - cum * t;

			if (k > 0)
				PROP(pass_t[k] >= pass_t[k - 1]);
			if (k == 0 || cand > best)
				best = cand;
			cum += pass_c[k];
			PROP(cum * t - pass_t[k] + best <= bt);
		}
	}
}

static void gcra_never_admits_more_than_burst_plus_elapsed_intervals(void **state)
{
	(void)state;
	memset(seen, 0, sizeof(seen));
	for_seeds(gcra_once);
	nonvacuous(seen[SL_DELAYED], seen[SL_REJECTED]);
}

/* ---- calendar and quota ---- */

static const int64_t cal_len[] = {0, 3600 * S, 86400 * S, 7 * 86400 * S, 30 * 86400 * S};

static int64_t floor_div(int64_t a, int64_t b)
{
	return a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
}

static void calendar_once(void)
{
	for (int i = 0; i < 200; i++) {
		uint8_t cal = (uint8_t)between(SL_CAL_HOUR, SL_CAL_MONTH);
		int32_t tz = (int32_t)between(0, 2 * 86399) - 86399;
		int64_t now = ((int64_t)between(0, 12000000000ULL) - 4000000000LL) * S +
		              (int64_t)between(0, S - 1); /* ns: about 1843 to 2223 */
		int64_t st, en, st2, en2, len, local;

		if (between(0, 1))
			tz = tz / 3600 * 3600;
		sl_calendar_window(cal, tz, now, &st, &en);
		len = en - st;
		local = st + (int64_t)tz * S;
		PROP(st <= now && now < en);
		sl_calendar_window(cal, tz, st, &st2, &en2);
		PROP(st2 == st && en2 == en);
		sl_calendar_window(cal, tz, st - 1, &st2, &en2);
		PROP(en2 == st);
		switch (cal) {
		case SL_CAL_HOUR:
			PROP(len == 3600 * S && local % (3600 * S) == 0);
			PROP(st == floor_div(now + (int64_t)tz * S, 3600 * S) * 3600 * S -
			                   (int64_t)tz * S);
			break;
		case SL_CAL_DAY:
			PROP(len == 86400 * S);
			PROP(st == floor_div(now + (int64_t)tz * S, 86400 * S) * 86400 * S -
			                   (int64_t)tz * S);
			break;
		case SL_CAL_WEEK:
			PROP(len == 7 * 86400 * S);
			/* 1970-01-05 (day 4) was a Monday */
			PROP(((floor_div(local, 86400 * S) - 4) % 7 + 7) % 7 == 0);
			break;
		default: {
			int64_t year = 0, s3 = st;

			PROP(len >= 28 * 86400 * S && len <= 31 * 86400 * S);
			PROP(local % (86400 * S) == 0);
			/* twelve months from here add up to 365 or 366 days */
			for (int m = 0; m < 12; m++) {
				sl_calendar_window(cal, tz, s3, &st2, &en2);
				year += en2 - st2;
				s3 = en2;
			}
			PROP(year == 365 * 86400 * S || year == 366 * 86400 * S);
		}
		}
	}
}

static void calendar_windows_tile_time_with_calendar_lengths(void **state)
{
	(void)state;
	for_seeds(calendar_once);
}

static void quota_once(void)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;
	uint8_t cal = (uint8_t)between(SL_CAL_HOUR, SL_CAL_MONTH);
	int32_t tz = (int32_t)between(0, 2 * 86399) - 86399;
	uint64_t n = between(1, 40), used = 0;
	int64_t now = (int64_t)between(0, 3000000000ULL) * S, cur_start = INT64_MIN, end;
	int64_t mean = cal_len[cal] / (int64_t)n; /* ns: about N arrivals per window */

	PROP(sl_spec_quota(&s, n, cal, tz) == SL_OK);
	end = now + 8 * cal_len[cal];
	while (now < end) {
		int64_t ws, we;
		uint64_t c = between(0, 99) < 5 ? n + 1 : between(0, 3);
		int o;

		now += between(0, 3) ? (int64_t)between(0, (uint64_t)mean) : 0;
		sl_calendar_window(cal, tz, now, &ws, &we);
		if (ws != cur_start) {
			cur_start = ws;
			used = 0;
		}
		o = sl_algo_eval(&s, &st, now, c, &next, &r);
		seen[o]++;
		PROP(r.reset_after == we - now);
		PROP(r.window == we - ws);
		if (o == SL_ALLOWED) {
			used += c;
			PROP(used <= n);
			PROP(r.remaining == n - used);
			st = next;
		} else {
			PROP(o == SL_REJECTED);
			PROP(used + c > n); /* only rejected when it does not fit */
			PROP(r.retry_after == (c > n ? 0 : we - now));
		}
	}
}

static void quota_never_admits_more_than_n_per_calendar_window(void **state)
{
	(void)state;
	memset(seen, 0, sizeof(seen));
	for_seeds(quota_once);
	nonvacuous(seen[SL_ALLOWED], seen[SL_REJECTED]);
}

/* ---- sliding ---- */

static void sliding_once(void)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next, probe;
	struct sl_result r;
	uint64_t n = between(1, 30);
	int64_t p = (int64_t)between(S, 60 * S);
	int64_t now = (int64_t)between(0, (uint64_t)1 << 61), end = now + 3 * 3600 * S;
	size_t np = 0, lo = 0;

	PROP(sl_spec_sliding(&s, n, p) == SL_OK);
	while (now < end && np < MAXLOG) {
		uint64_t c = between(0, 99) < 5 ? between(0, n + 2) : 1, cur = 0, prev = 0, est;
		int64_t w, e;
		int o;

		now += between(0, 2) ? (int64_t)between(0, (uint64_t)(2 * p) / n) : 0;
		w = floor_div(now, p);
		e = now - w * p;
		/* the model: counts of the current and previous aligned windows */
		for (size_t k = np; k-- > 0;) {
			int64_t wk = floor_div(pass_t[k], p);

			if (wk == w)
				cur += pass_c[k];
			else if (wk == w - 1)
				prev += pass_c[k];
			else
				break;
		}
		est = (uint64_t)(((unsigned __int128)prev * (uint64_t)(p - e) + (uint64_t)p - 1) /
		                 (uint64_t)p) +
		      cur;
		o = sl_algo_eval(&s, &st, now, c, &next, &r);
		seen[o]++;
		if (c == 0 || est + c <= n) {
			PROP(o == SL_ALLOWED);
			PROP(r.remaining == n - est - c);
		} else {
			PROP(o == SL_REJECTED);
			PROP(next.v == st.v && next.expires == st.expires);
			PROP((r.retry_after == 0) == (c > n));
			if (r.retry_after > 0) {
				int64_t ra = r.retry_after; /* ns */

				PROP(sl_algo_eval(&s, &st, now + ra, c, &probe, &r) == SL_ALLOWED);
				PROP(sl_algo_eval(&s, &st, now + ra - 1, c, &probe, &r) ==
				     SL_REJECTED);
			}
			continue;
		}
		st = next;
		if (c == 0)
			continue;
		pass_t[np] = now;
		pass_c[np] = c;
		np++;
		PROP(cur + c <= n); /* aligned window bound */
		/* interval bound over (now - p, now] */
		{
			uint64_t in = 0;

			while (pass_t[lo] <= now - p)
				lo++;
			for (size_t k = lo; k < np; k++)
				in += pass_c[k];
			PROP(in <=
			     n + (uint64_t)(((unsigned __int128)prev * (uint64_t)e) / (uint64_t)p));
			PROP(in <= 2 * n - 1 || n == 1);
		}
	}
}

static void sliding_matches_model_and_interval_bound(void **state)
{
	(void)state;
	memset(seen, 0, sizeof(seen));
	for_seeds(sliding_once);
	nonvacuous(seen[SL_ALLOWED], seen[SL_REJECTED]);
}

/* ---- concurrency ---- */

static void concurrency_once(void)
{
	struct sl_limit_spec s;
	struct sl_state st = {0, 0}, next;
	struct sl_result r;
	uint64_t n = between(1, 20), held = 0;
	int64_t ttl = (int64_t)between(S, 10 * S), now = (int64_t)between(0, (uint64_t)1 << 60);
	int64_t lapse = INT64_MIN;

	PROP(sl_spec_concurrency(&s, n, ttl) == SL_OK);
	for (int i = 0; i < 20000; i++) {
		now += between(0, 3) ? (int64_t)between(0, S / 10) : (int64_t)between(0, 2 * ttl);
		if (now >= lapse)
			held = 0; /* leases lapsed: slots reclaimed */
		if (between(0, 2) == 0 && held > 0) {
			uint64_t c = between(1, held);

			sl_algo_refund(&s, &st, now, c);
			held -= c;
			PROP(st.v == held);
			continue;
		}
		{
			uint64_t c = between(0, 99) < 5 ? n + 1 : between(0, 2);
			int o = sl_algo_eval(&s, &st, now, c, &next, &r);

			seen[o]++;
			if (c == 0 || held + c <= n) {
				PROP(o == SL_ALLOWED);
				held += c;
				if (c > 0)
					lapse = now + ttl;
				st = next;
			} else {
				PROP(o == SL_REJECTED);
				/* 1 s, never past the lapse of the leases */
				PROP(c > n || r.reset_after == lapse - now);
				PROP(r.retry_after == (c > n             ? 0
				                       : lapse - now < S ? lapse - now
				                                         : S));
			}
			PROP(held <= n);
			PROP(r.remaining == n - held);
		}
	}
}

static void concurrency_never_exceeds_n_in_flight(void **state)
{
	(void)state;
	memset(seen, 0, sizeof(seen));
	for_seeds(concurrency_once);
	nonvacuous(seen[SL_ALLOWED], seen[SL_REJECTED]);
}

/* ---- decide ---- */

static void random_spec(struct sl_limit_spec *s)
{
	switch (between(0, 4)) {
	case 0:
		PROP(sl_spec_rate(s, between(1, 10), S, 0, between(0, 3)) == SL_OK);
		break;
	case 1:
		PROP(sl_spec_quota(s, between(1, 10), SL_CAL_HOUR, 0) == SL_OK);
		break;
	case 2:
		PROP(sl_spec_sliding(s, between(1, 10), S) == SL_OK);
		break;
	case 3:
		PROP(sl_spec_concurrency(s, between(1, 10), S) == SL_OK);
		break;
	default:
		if (between(0, 3))
			sl_spec_unlimited(s);
		else
			sl_spec_deny(s);
	}
}

static void decide_once(void)
{
	struct sl_limit_spec specs[4];
	struct sl_state states[4] = {{0, 0}};
	int64_t now = (int64_t)between(1, 1000) * S;

	for (int i = 0; i < 4; i++)
		random_spec(&specs[i]);
	for (int round = 0; round < 300; round++) {
		struct sl_decide_item it[4];
		struct sl_state before[4], nx;
		struct sl_result r;
		size_t denied;
		int64_t delay, want_delay = 0;
		int any_rej = 0, rc;
		size_t first = 4;

		now += (int64_t)between(0, S / 5);
		for (int i = 0; i < 4; i++) {
			it[i] = (struct sl_decide_item){
			        .spec = &specs[i], .cost = between(0, 3), .state = &states[i]};
			before[i] = states[i];
			/* each limit alone, on its own state, as a reference */
			if (sl_algo_eval(&specs[i], &states[i], now, it[i].cost, &nx, &r) ==
			    SL_REJECTED) {
				any_rej = 1;
				if (first == 4)
					first = (size_t)i;
			} else if (r.delay > want_delay) {
				want_delay = r.delay;
			}
		}
		rc = sl_decide(it, 4, now, &denied, &delay);
		if (any_rej) {
			PROP(rc == SL_DENY && denied == first && delay == 0);
			PROP(memcmp(before, states, sizeof(states)) == 0);
		} else {
			PROP(rc == (want_delay > 0 ? SL_DELAY : SL_OK));
			PROP(delay == want_delay && denied == 4);
			for (int i = 0; i < 4; i++)
				PROP(memcmp(&states[i], &it[i].next, sizeof(nx)) == 0);
		}
	}
}

static void decide_is_all_or_nothing_over_random_limits(void **state)
{
	(void)state;
	for_seeds(decide_once);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(gcra_never_admits_more_than_burst_plus_elapsed_intervals),
	        cmocka_unit_test(calendar_windows_tile_time_with_calendar_lengths),
	        cmocka_unit_test(quota_never_admits_more_than_n_per_calendar_window),
	        cmocka_unit_test(sliding_matches_model_and_interval_bound),
	        cmocka_unit_test(concurrency_never_exceeds_n_in_flight),
	        cmocka_unit_test(decide_is_all_or_nothing_over_random_limits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
