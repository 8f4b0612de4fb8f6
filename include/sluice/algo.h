/* The rate-limiting algorithms of DESIGN.md section 3 as pure functions over
 * a 16-byte state: no I/O, no clock reads, no allocation. Every call takes
 * `now` (ns, see algo-t.h). Evaluation never writes the caller's state: it
 * writes the state that committing would produce, so a multi-limit decision
 * can evaluate everything first and commit all or nothing (sl_decide). */
#ifndef SLUICE_ALGO_H
#define SLUICE_ALGO_H

#include <stddef.h>
#include <sluice/algo-t.h>

/* Fill `s` for `rate: N/period` with burst B (0: default N) and queue Q.
 * interval = ceil(period / N) so no period ever admits more than N.
 * Returns 0, or SL_EINVAL when N is 0, the interval would be under 1 ns, or
 * B*T overflows.
 * Clarified: "under 1 ns" means the exact period/N is below 1 ns (N > period
 * in ns, or period <= 0); the overflow check covers (B+Q)*T, which must fit
 * in int64. `s` is written only on success. */
int sl_spec_rate(struct sl_limit_spec *s, uint64_t n, int64_t period, uint64_t burst,
		 uint64_t queue);
/* `quota: N/hour|day|week|month` in calendar windows at tz_offset seconds.
 * SL_EINVAL for N 0, an unknown calendar, or |tz_offset| >= 86400. */
int sl_spec_quota(struct sl_limit_spec *s, uint64_t n, uint8_t calendar, int32_t tz_offset);
/* `sliding: N/period`; N must be < 2^32 (counts are packed in 32 bits).
 * SL_EINVAL for N 0, N >= 2^32 or period <= 0. */
int sl_spec_sliding(struct sl_limit_spec *s, uint64_t n, int64_t period);
/* `concurrency: N`; slots held longer than lease_ttl (ns) are reclaimed.
 * SL_EINVAL for N 0 or lease_ttl <= 0. */
int sl_spec_concurrency(struct sl_limit_spec *s, uint64_t n, int64_t lease_ttl);
void sl_spec_unlimited(struct sl_limit_spec *s);
void sl_spec_deny(struct sl_limit_spec *s);

/* Evaluate taking `cost` units at `now` from state `st` (borrowed, not
 * written). Writes the state a commit would store to `next` (equal to `*st`
 * on rejection) and the result to `res`. Returns the outcome
 * (SL_ALLOWED, SL_DELAYED, SL_REJECTED). cost 0 is a peek: it reports the
 * current remaining/reset and never rejects (except SL_ALGO_DENY).
 * Clarified: res->retry_after is 0 on a rejection that no retry of the same
 * cost can ever pass (cost above B+Q, above N, SL_ALGO_DENY); renderers
 * round it up to >= 1 s. An unknown spec->algo is rejected like DENY.
 * Thread: any; the caller serialises access to the state. */
int sl_algo_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
		 uint64_t cost, struct sl_state *next, struct sl_result *res);

/* Give back `cost` units previously committed: a concurrency release, or
 * the refund of a commit that a later limit of the same decision rejected
 * (Redis Cluster). Never takes a state below fresh. */
void sl_algo_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
		    uint64_t cost);

/* The calendar window containing `now` for a quota: [*start, *end) in ns.
 * Ends past the int64 range saturate to INT64_MAX; an unknown calendar is
 * treated as SL_CAL_DAY. */
void sl_calendar_window(uint8_t calendar, int32_t tz_offset, int64_t now, int64_t *start,
			int64_t *end);

/* One limit of a multi-limit decision. The caller fills spec, cost and
 * state (pointer into its table, locked by the caller); sl_decide fills
 * next and res. */
struct sl_decide_item {
	const struct sl_limit_spec *spec;
	uint64_t cost;
	struct sl_state *state;
	struct sl_state next;
	struct sl_result res;
};

/* Decide all n items atomically (the caller holds whatever locks cover the
 * states). If no item rejects, every state is replaced by its next state and
 * the return is SL_OK, or SL_DELAY with *delay = the largest delay (ns).
 * If any item rejects, no state changes, *denied = index of the first
 * rejecting item, the other items' results are re-evaluated as peeks
 * (cost 0, showing what they still have), and the return is SL_DENY.
 * Clarified: items that themselves rejected keep their rejection result (so
 * a caller can take the largest retry_after); next equals *state for every
 * item on SL_DENY. *denied is n and *delay 0 when nothing rejects or
 * delays; either pointer may be NULL. Items sharing one state pointer are
 * evaluated in order, each on the previous one's next state. */
int sl_decide(struct sl_decide_item *items, size_t n, int64_t now, size_t *denied,
	      int64_t *delay);

/* Per-algorithm entry points with the contracts of sl_algo_eval and
 * sl_algo_refund; spec->algo must match. Callers normally use the
 * dispatchers above; these exist so each algorithm lives in its own file. */
int sl_gcra_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
		 uint64_t cost, struct sl_state *next, struct sl_result *res);
void sl_gcra_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
		    uint64_t cost);
int sl_quota_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
		  uint64_t cost, struct sl_state *next, struct sl_result *res);
void sl_quota_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
		     uint64_t cost);
int sl_sliding_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
		    uint64_t cost, struct sl_state *next, struct sl_result *res);
void sl_sliding_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
		       uint64_t cost);
int sl_concurrency_eval(const struct sl_limit_spec *spec, const struct sl_state *st,
			int64_t now, uint64_t cost, struct sl_state *next,
			struct sl_result *res);
void sl_concurrency_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
			   uint64_t cost);

#endif
