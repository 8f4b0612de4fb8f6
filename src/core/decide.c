/* sl_decide: one decision over several limits, all or nothing (DESIGN.md
 * section 3: a rejected request consumes nothing from any limit). Every
 * item is evaluated before any state is written, so a rejection leaves the
 * caller's table untouched; the caller's locks make the pair atomic. */
#include <stddef.h>
#include <stdint.h>
#include <sluice/algo.h>
#include <sluice/error.h>

/* The state item i starts from: the next state of the last earlier item
 * with the same state pointer (one key counted twice), else *state. Bounded
 * by n^2 pointer compares; n is small (SL_TABLE_MAX_KEYS). */
static const struct sl_state *base_state(const struct sl_decide_item *items, size_t i)
{
	for (size_t j = i; j-- > 0;)
		if (items[j].state == items[i].state)
			return &items[j].next;
	return items[i].state;
}

int sl_decide(struct sl_decide_item *items, size_t n, int64_t now, size_t *denied, int64_t *delay)
{
	size_t first = n;
	int64_t max_delay = 0; /* ns */

	for (size_t i = 0; i < n; i++) {
		struct sl_decide_item *it = &items[i];
		int o = sl_algo_eval(it->spec, base_state(items, i), now, it->cost, &it->next,
		                     &it->res);

		if (o == SL_REJECTED && first == n)
			first = i;
		if (o == SL_DELAYED && it->res.delay > max_delay)
			max_delay = it->res.delay;
	}
	if (denied)
		*denied = first;
	if (first < n) {
		struct sl_state unused;

		for (size_t i = 0; i < n; i++) {
			items[i].next = *items[i].state;
			if (items[i].res.outcome != SL_REJECTED)
				sl_algo_eval(items[i].spec, items[i].state, now, 0, &unused,
				             &items[i].res);
		}
		if (delay)
			*delay = 0;
		return SL_DENY;
	}
	for (size_t i = 0; i < n; i++)
		*items[i].state = items[i].next;
	if (delay)
		*delay = max_delay;
	return max_delay > 0 ? SL_DELAY : SL_OK;
}
