/* The store-full log of evictlog.h. Libraries never print: the memory store
 * only counts, and this timer on the main loop turns the counts into at
 * most one stderr line per SL_EVICTLOG_EVERY, so a flood that evicts
 * thousands of states a second costs one line, not thousands. The line
 * reports what changed since the previous line, per limit. */
#include <stdio.h>
#include <string.h>
#include "daemon/evictlog.h"

static struct sl_evictlog_seen *seen_of(struct sl_evictlog *l, const char *name)
{
	for (size_t i = 0; i < l->nseen; i++)
		if (l->seen[i].name == name || strcmp(l->seen[i].name, name) == 0)
			return &l->seen[i];
	if (l->nseen == SL_STORE_STATS_LIMITS)
		return NULL;
	struct sl_evictlog_seen *s = &l->seen[l->nseen++];
	memset(s, 0, sizeof(*s));
	s->name = name;
	return s;
}

/* Append " name n," style items of one kind to buf; returns the new length. */
static size_t put_kind(char *buf, size_t len, size_t cap, const char *title,
                       const struct sl_store_stats *st, const uint64_t *delta)
{
	bool any = false;

	for (size_t i = 0; i < st->nlimits; i++)
		any |= delta[i] != 0;
	if (!any || len >= cap)
		return len;
	int n = snprintf(buf + len, cap - len, "%s%s", len ? "; " : "", title);
	len = n < 0 ? cap : len + (size_t)n;
	const char *sep = " ";
	for (size_t i = 0; i < st->nlimits && len < cap; i++) {
		if (delta[i] == 0)
			continue;
		n = snprintf(buf + len, cap - len, "%s%s %llu", sep, st->limits[i].name,
		             (unsigned long long)delta[i]);
		len = n < 0 ? cap : len + (size_t)n;
		sep = ", ";
	}
	return len < cap ? len : cap - 1;
}

size_t sl_evictlog_line(struct sl_evictlog *l, const struct sl_store_stats *st, char *buf,
                        size_t cap)
{
	uint64_t usage[SL_STORE_STATS_LIMITS], denied[SL_STORE_STATS_LIMITS],
	        admitted[SL_STORE_STATS_LIMITS];
	struct sl_evictlog_seen *s[SL_STORE_STATS_LIMITS];
	bool any = false;
	size_t len = 0;

	if (cap == 0)
		return 0;
	buf[0] = '\0';
	for (size_t i = 0; i < st->nlimits && i < SL_STORE_STATS_LIMITS; i++) {
		const struct sl_store_limit_stats *e = &st->limits[i];
		s[i] = seen_of(l, e->name);
		struct sl_evictlog_seen z = {0};
		const struct sl_evictlog_seen *b = s[i] ? s[i] : &z;
		usage[i] = e->evicted_usage - b->usage;
		denied[i] = e->full_denied - b->denied;
		admitted[i] = e->full_admitted - b->admitted;
		any |= (usage[i] | denied[i] | admitted[i]) != 0;
	}
	if (!any)
		return 0;
	int n = snprintf(buf, cap, "sluice: store full: ");
	size_t head = n < 0 ? 0 : (size_t)n;
	len = put_kind(buf + head, 0, cap - head, "evicted states with usage", st, usage);
	len = put_kind(buf + head, len, cap - head, "new keys denied (on_full: deny_new)", st,
	               denied);
	len = put_kind(buf + head, len, cap - head,
	               "new keys admitted unstored (on_full: allow_new)", st, admitted);
	for (size_t i = 0; i < st->nlimits && i < SL_STORE_STATS_LIMITS; i++)
		if (s[i]) {
			s[i]->usage = st->limits[i].evicted_usage;
			s[i]->denied = st->limits[i].full_denied;
			s[i]->admitted = st->limits[i].full_admitted;
		}
	return head + len;
}

static void on_poll(uv_timer_t *t)
{
	struct sl_evictlog *l = t->data;
	struct sl_store_stats st;
	char line[1024];
	uint64_t now = uv_now(t->loop);

	if (l->logged && now - l->last < SL_EVICTLOG_EVERY)
		return;
	if (!l->store->ops->stats)
		return;
	memset(&st, 0, sizeof(st));
	l->store->ops->stats(l->store, &st);
	if (sl_evictlog_line(l, &st, line, sizeof(line)) == 0)
		return;
	if (l->logged)
		fprintf(stderr, "%s (in the last %llu s)\n", line,
		        (unsigned long long)((now - l->last) / 1000));
	else
		fprintf(stderr, "%s (since start; is store.memory too small?)\n", line);
	l->logged = true;
	l->last = now;
}

int sl_evictlog_start(struct sl_evictlog *l, uv_loop_t *loop, struct sl_store *store)
{
	int rc;

	memset(l, 0, sizeof(*l));
	l->store = store;
	rc = uv_timer_init(loop, &l->timer);
	if (rc < 0)
		return rc;
	l->timer.data = l;
	return uv_timer_start(&l->timer, on_poll, SL_EVICTLOG_POLL, SL_EVICTLOG_POLL);
}
