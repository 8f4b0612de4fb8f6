/* Types of the rate-limiting algorithms (DESIGN.md section 3): the compiled
 * parameters of one limit, the 16-byte state kept per (limit, key), and the
 * result of one decision. Types only, so other headers include it cheaply.
 *
 * Time: every `now` is integer nanoseconds on one timeline that never goes
 * backwards and is anchored to the Unix epoch (the daemon's clock is
 * wall-clock at start plus monotonic elapsed time; tests inject it). So
 * calendar windows are exact and `now + reset_after` is a Unix time. */
#ifndef SLUICE_ALGO_T_H
#define SLUICE_ALGO_T_H

#include <stdint.h>

#define SL_NS_PER_SEC  1000000000LL
#define SL_NS_PER_MIN  (60 * SL_NS_PER_SEC)
#define SL_NS_PER_HOUR (3600 * SL_NS_PER_SEC)
#define SL_NS_PER_DAY  (86400 * SL_NS_PER_SEC)
#define SL_UNLIMITED   UINT64_MAX /* limit/remaining of an unlimited limit */

enum sl_algo {
	SL_ALGO_RATE = 1,    /* GCRA with burst B and optional queue Q */
	SL_ALGO_QUOTA,       /* fixed calendar window */
	SL_ALGO_SLIDING,     /* sliding-window counter */
	SL_ALGO_CONCURRENCY, /* in-flight slots */
	SL_ALGO_UNLIMITED,   /* always allowed */
	SL_ALGO_DENY,        /* always rejected (entitlements) */
};

enum sl_calendar {
	SL_CAL_HOUR = 1,
	SL_CAL_DAY,
	SL_CAL_WEEK, /* weeks start on Monday */
	SL_CAL_MONTH,
};

enum sl_outcome {
	SL_ALLOWED = 0,
	SL_DELAYED = 1,
	SL_REJECTED = 2,
};

/* Compiled parameters of one limit for one plan. Immutable once built. */
struct sl_limit_spec {
	uint8_t algo;      /* enum sl_algo */
	uint8_t calendar;  /* enum sl_calendar; quota only */
	int32_t tz_offset; /* seconds east of UTC; quota only */
	uint64_t n;        /* N of N/period, or concurrency slots */
	int64_t period;    /* ns: rate and sliding period; concurrency lease ttl */
	int64_t interval;  /* ns: T = ceil(period / N); rate only */
	uint64_t burst;    /* B, units (default N); rate only */
	uint64_t queue;    /* Q, units (default 0); rate only */
};

/* State of one (limit, key). All zero is the fresh state. `expires` is the
 * time at or after which the state is equivalent to fresh, for every
 * algorithm, so a table can reclaim it without knowing the algorithm:
 *   rate:        expires = TAT, v = the interval T (ns) it was committed
 *                under (0: unknown); see gcra.c
 *   quota:       expires = end of the current window (ns), v = used units
 *   sliding:     expires = start of window w+2 where w is the current
 *                window index, v = (previous count << 32) | current count
 *   concurrency: expires = last acquire + lease ttl, v = slots in use */
struct sl_state {
	int64_t expires; /* ns */
	uint64_t v;
};

/* Outcome of one limit for one request. */
struct sl_result {
	uint8_t outcome;     /* enum sl_outcome */
	uint64_t limit;      /* N, or SL_UNLIMITED */
	uint64_t remaining;  /* units left after this request, or SL_UNLIMITED */
	int64_t reset_after; /* ns until fully reset (rate) or window end (quota) */
	int64_t retry_after; /* ns; > 0 only when rejected and a retry can pass */
	int64_t delay;       /* ns; > 0 only when delayed */
	int64_t window;      /* ns: the period the limit is stated over (0: none) */
};

#endif
