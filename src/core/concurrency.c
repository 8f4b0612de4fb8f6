/* concurrency: N in-flight slots per key. The state counts slots in use and
 * expires one lease ttl after the last acquire, so a client that never
 * releases (crash, lost connection) gets its slots back after the ttl; the
 * reclaim is all at once, which is the price of a 16-byte state. */
#include <stdint.h>
#include <sluice/algo.h>
#include "core/clamp.h"

/* Allowed iff in_use + c <= N; commit in_use += c, expires = now + ttl
 * (never earlier than the stored expiry, so a clock step back cannot
 * shorten a lease). remaining = N - in_use after. reset_after = time
 * until the leases lapse, when every slot is free for sure. A rejection
 * reports retry_after 1 s, because a slot frees when some response ends,
 * which no state here predicts, but never later than that lapse; it is 0
 * when c > N (never fits). A caller that never releases (the check
 * listener) uses reset_after instead: nothing frees a slot sooner. */
int sl_concurrency_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
                        uint64_t cost, struct sl_state *next, struct sl_result *res)
{
	uint64_t used = 0; /* slots */
	uint64_t n = spec->n;
	int64_t exp; /* ns */

	if (st->expires > now) {
		used = st->v;
		res->reset_after = clamp64((__int128)st->expires - now);
	}
	res->limit = n;
	res->remaining = used < n ? n - used : 0;
	if (cost == 0) {
		res->outcome = SL_ALLOWED;
		return SL_ALLOWED;
	}
	if (cost > n || used > n - cost) {
		res->outcome = SL_REJECTED;
		if (cost <= n)
			res->retry_after =
			        res->reset_after < SL_NS_PER_SEC ? res->reset_after : SL_NS_PER_SEC;
		return SL_REJECTED;
	}
	exp = clamp64((__int128)now + spec->period);
	if (st->expires > exp)
		exp = st->expires;
	next->expires = exp;
	next->v = used + cost;
	res->remaining = n - used - cost;
	res->reset_after = clamp64((__int128)exp - now);
	res->outcome = SL_ALLOWED;
	return SL_ALLOWED;
}

/* Release cost slots, never below zero; when none are left the state
 * becomes all zero (fresh) so the table can reclaim it. */
void sl_concurrency_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
                           uint64_t cost)
{
	if (st->expires <= now)
		return;
	st->v = st->v > cost ? st->v - cost : 0;
	if (st->v == 0)
		st->expires = 0;
}
