/* rate: the generic cell rate algorithm with burst B and queue Q (DESIGN.md
 * section 3). The state is one timestamp, the theoretical arrival time TAT
 * (stored as `expires`, since the state is fresh once TAT <= now). All
 * arithmetic is in __int128: cost * T and TAT - now are each below 2^127
 * for any uint64 cost and int64 times, so no input can overflow or wrap;
 * values stored or reported back saturate to the int64 range.
 *
 * The state also keeps, in `v`, the interval T it was committed under, so
 * it stays meaningful when the limit's numbers change under it (a plan
 * change, an override, an edited rate: DESIGN.md section 8 keeps the
 * counter). The backlog TAT - now is so many units of T; read under a new
 * interval T' it is first rescaled to (TAT - now) * T' / T, which keeps the
 * units used (6 of 30/hour moved to 100/hour is 6 of 100, not 20). A state
 * with v = 0 predates this and is read as it is. */
#include <stdint.h>
#include <sluice/algo.h>
#include "core/clamp.h"

/* new_tat = max(TAT, now) + c*T, d = new_tat - now:
 *   d <= B*T       allowed, remaining floor((B*T - d) / T), reset_after d;
 *   d <= (B+Q)*T   delayed by d - B*T, committed, remaining 0;
 *   otherwise      rejected, state unchanged, remaining 0,
 *                  retry_after d - B*T (when it would pass undelayed),
 *                  reset_after max(TAT - now, 0) (nothing was committed).
 * A cost above B+Q can never fit: rejected with retry_after 0 ("never").
 * cost 0 peeks: allowed, remaining from the current backlog. */
/* The backlog of st at now, in ns of interval t: TAT - now (>= 0),
 * rescaled from the interval it was committed under. */
static __int128 backlog(const struct sl_state *st, int64_t now, __int128 t)
{
	__int128 wait;

	if (st->expires <= now)
		return 0;
	wait = (__int128)st->expires - now;
	if (st->v != 0 && st->v <= INT64_MAX && (__int128)st->v != t && t > 0)
		wait = wait * t / (__int128)st->v; /* < 2^63 * 2^63: fits */
	return wait;
}

int sl_gcra_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
                 uint64_t cost, struct sl_state *next, struct sl_result *res)
{
	__int128 t = spec->interval;             /* ns */
	__int128 bt = (__int128)spec->burst * t; /* ns of burst capacity */
	uint64_t bq;                             /* units, saturated */
	__int128 wait = 0, d, bqt;               /* ns */

	if (__builtin_add_overflow(spec->burst, spec->queue, &bq))
		bq = UINT64_MAX;
	bqt = (__int128)bq * t;
	wait = backlog(st, now, t);
	res->limit = spec->n;
	res->window = spec->period;
	if (t <= 0) { /* not built by sl_spec_rate: fail closed */
		res->outcome = SL_REJECTED;
		return SL_REJECTED;
	}
	if (cost == 0) {
		res->outcome = SL_ALLOWED;
		res->remaining = wait <= bt ? div128(bt - wait, t) : 0;
		res->reset_after = clamp64(wait);
		return SL_ALLOWED;
	}
	res->reset_after = clamp64(wait);
	if (cost > bq) {
		res->outcome = SL_REJECTED;
		return SL_REJECTED;
	}
	d = wait + (__int128)cost * t;
	if (d > bqt) {
		res->outcome = SL_REJECTED;
		res->retry_after = clamp64(d - bt);
		return SL_REJECTED;
	}
	next->expires = clamp64((__int128)now + d);
	next->v = (uint64_t)spec->interval;
	res->reset_after = clamp64(d);
	if (d <= bt) {
		res->outcome = SL_ALLOWED;
		res->remaining = div128(bt - d, t);
		return SL_ALLOWED;
	}
	res->outcome = SL_DELAYED;
	res->delay = clamp64(d - bt);
	return SL_DELAYED;
}

/* Move TAT back by cost*T, but never below now: a refund can restore at
 * most a fresh bucket. The backlog is rescaled to the current T first. */
void sl_gcra_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
                    uint64_t cost)
{
	__int128 wait;

	if (st->expires <= now || spec->interval <= 0)
		return;
	wait = backlog(st, now, spec->interval) - (__int128)cost * spec->interval;
	st->expires = wait <= 0 ? now : clamp64((__int128)now + wait);
	st->v = (uint64_t)spec->interval;
}
