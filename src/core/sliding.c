/* sliding: the sliding-window counter. Windows are aligned to multiples of
 * the period; the state packs the previous and current windows' counts
 * (prev << 32 | cur) and expires at the start of window w+2, when both are
 * stale. The estimate at elapsed e into window w is
 * ceil(prev * (period - e) / period) + cur: rounding the weighted part up
 * means integer math never lets the estimate undercount, so at every
 * admission the estimate stays <= N. */
#include <stdint.h>
#include <sluice/algo.h>
#include "core/clamp.h"

#define LOW32 UINT64_C(0xffffffff)

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/* ceil(count * (p - e) / p): the part of a previous window's count still
 * inside the sliding window, rounded up. count < 2^32, p < 2^63. */
static uint64_t weighted(uint64_t count, int64_t p, int64_t e)
{
	unsigned __int128 x = (unsigned __int128)count * (uint64_t)(p - e);

	return (uint64_t)((x + (uint64_t)p - 1) / (uint64_t)p);
}

/* Smallest elapsed e' in a window whose previous count is `count` at which
 * weighted(count, p, e') <= k, for 0 <= k: e' = p - floor(k * p / count),
 * because count * (p - e') <= k * p is exactly the ceil condition. */
static int64_t pass_at(uint64_t count, int64_t p, uint64_t k)
{
	unsigned __int128 f;

	if (count <= k)
		return 0;
	f = (unsigned __int128)k * (uint64_t)p / count;
	return p - (int64_t)f;
}

/* Allowed iff estimate + c <= N; commit cur += c. remaining = N - estimate
 * (- c when allowed). reset_after = time until the estimate drains to 0.
 * retry_after = exact time until the same request passes if nothing else
 * arrives (later in this window as prev's weight falls, or in the next one
 * where cur becomes prev); 0 when c > N. A clock that went back before the
 * stored window is evaluated at that window's start (most conservative),
 * and the step back is added to reset_after and retry_after. */
int sl_sliding_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
                    uint64_t cost, struct sl_state *next, struct sl_result *res)
{
	int64_t p = spec->period;        /* ns */
	uint64_t n = spec->n;            /* units */
	uint64_t prev = 0, cur = 0, est; /* units */
	int64_t w, sw, e, left;          /* window index; ns */
	__int128 start, extra = 0;       /* ns */

	res->limit = n;
	res->window = p;
	if (p <= 0) { /* not built by sl_spec_sliding: fail closed */
		res->outcome = SL_REJECTED;
		return SL_REJECTED;
	}
	w = floor_div(now, p);
	if (st->expires > now) {
		sw = floor_div(st->expires, p) - 2;
		if (sw == w) {
			prev = st->v >> 32;
			cur = st->v & LOW32;
		} else if (sw == w - 1) {
			prev = st->v & LOW32;
		} else if (sw > w) {
			prev = st->v >> 32;
			cur = st->v & LOW32;
			extra = (__int128)sw * p - now;
			w = sw;
		}
	}
	start = (__int128)w * p;
	e = extra > 0 ? 0 : (int64_t)((__int128)now - start);
	left = p - e;
	est = weighted(prev, p, e) + cur;
	res->remaining = est < n ? n - est : 0;
	if (cost != 0 && (cost > n || est > n - cost)) {
		int64_t r = 0;

		if (cost <= n) {
			if (cur + cost <= n)
				r = pass_at(prev, p, n - cost - cur) - e;
			else
				r = left + pass_at(cur, p, n - cost);
		}
		res->outcome = SL_REJECTED;
		res->retry_after = r > 0 ? clamp64(r + extra) : 0;
		if (cur > 0)
			res->reset_after = clamp64(extra + left + (__int128)p);
		else if (prev > 0)
			res->reset_after = clamp64(extra + left);
		return SL_REJECTED;
	}
	if (cost != 0) {
		cur += cost;
		next->v = prev << 32 | cur;
		next->expires = clamp64(start + 2 * (__int128)p);
		res->remaining = n - est - cost;
	}
	if (cur > 0)
		res->reset_after = clamp64(extra + left + (__int128)p);
	else if (prev > 0)
		res->reset_after = clamp64(extra + left);
	res->outcome = SL_ALLOWED;
	return SL_ALLOWED;
}

/* Take cost units off the stored window's current count, never below
 * zero; an expired state is fresh and stays untouched. */
void sl_sliding_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
                       uint64_t cost)
{
	uint64_t cur = st->v & LOW32;

	if (st->expires <= now)
		return;
	cur = cur > cost ? cur - cost : 0;
	st->v = (st->v & ~LOW32) | cur;
}
