/* quota: N units per calendar window (hour, day, week, month) at a fixed
 * UTC offset. The state is the end of the window it counts in (`expires`)
 * and the units used there. A state whose window has not ended is always
 * counted into, even when the clock has gone back into an earlier window:
 * going back in time must never grant a fresh quota. */
#include <stdint.h>
#include <sluice/algo.h>
#include "core/clamp.h"

/* Window: the stored one while it lasts (expires > now), else the calendar
 * window containing now with 0 used. remaining = N - used (not 0) on a
 * rejection too: it is what a smaller request could still take.
 * reset_after = end - now, exactly the window end. Rejected when
 * used + c > N with retry_after = end - now, or retry_after 0 when c > N
 * (no window can ever hold it). res->window = length of the window. */
int sl_quota_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
                  uint64_t cost, struct sl_state *next, struct sl_result *res)
{
	int64_t start, end; /* ns */
	uint64_t used = 0;  /* units */
	uint64_t n = spec->n;

	if (st->expires > now) {
		int64_t ignored;

		end = st->expires;
		used = st->v;
		sl_calendar_window(spec->calendar, spec->tz_offset, end - 1, &start, &ignored);
	} else {
		sl_calendar_window(spec->calendar, spec->tz_offset, now, &start, &end);
	}
	res->limit = n;
	res->window = clamp64((__int128)end - start);
	res->remaining = used < n ? n - used : 0;
	res->reset_after = clamp64((__int128)end - now);
	if (cost == 0) {
		res->outcome = SL_ALLOWED;
		return SL_ALLOWED;
	}
	if (cost > n || used > n - cost) {
		res->outcome = SL_REJECTED;
		res->retry_after = cost > n ? 0 : res->reset_after;
		return SL_REJECTED;
	}
	next->expires = end;
	next->v = used + cost;
	res->remaining = n - used - cost;
	res->outcome = SL_ALLOWED;
	return SL_ALLOWED;
}

/* Take cost units off the stored window's count, never below zero; an
 * expired state is already fresh and stays untouched. */
void sl_quota_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
                     uint64_t cost)
{
	if (st->expires <= now)
		return;
	st->v = st->v > cost ? st->v - cost : 0;
}
