/* The request-path half of the usage history: a worker's open-addressed
 * table of (account, limit, minute) cells. An add is a hash, a short probe
 * and four integer adds under the worker's own mutex, which only the
 * flusher also takes, for the two stores of a swap; so workers never wait
 * for each other and never allocate. A table past 7/8 full, or a name too
 * long to keep, counts the decision in `dropped` instead (docs/usage.md):
 * memory stays bounded whatever the number of accounts, and the flusher
 * empties a table early once it is half full. */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <sluice/algo-t.h>
#include "usage/usage-int.h"
#include "policy/policy.h"

int usage_shard_init(struct sl_usage_shard *s, uint32_t want)
{
	uint32_t cap = 64;

	memset(s, 0, sizeof(*s));
	while (cap < want && cap < (1u << 30))
		cap <<= 1;
	s->cap = cap;
	s->limit = cap - cap / 8;
	for (int i = 0; i < 2; i++) {
		s->buf[i].cells = calloc(cap, sizeof(*s->buf[i].cells));
		s->buf[i].order = calloc(s->limit, sizeof(*s->buf[i].order));
		if (s->buf[i].cells == NULL || s->buf[i].order == NULL)
			goto fail;
	}
	if (pthread_mutex_init(&s->mu, NULL) != 0)
		goto fail;
	return 0;
fail:
	for (int i = 0; i < 2; i++) {
		free(s->buf[i].cells);
		free(s->buf[i].order);
	}
	return SL_ENOMEM;
}

void usage_shard_free(struct sl_usage_shard *s)
{
	for (int i = 0; i < 2; i++) {
		free(s->buf[i].cells);
		free(s->buf[i].order);
	}
	pthread_mutex_destroy(&s->mu);
}

static inline void bump(_Atomic uint64_t *c)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
	                      memory_order_relaxed);
}

void sl_usage_count(struct sl_usage_shard *s, const char *account, size_t alen, const char *limit,
                    unsigned outcome, uint64_t cost, int64_t now_ns)
{
	size_t llen = limit ? strlen(limit) : 0;
	int64_t minute = now_ns / SL_NS_PER_SEC;
	struct sl_usage_buf *b;
	uint64_t h;
	uint32_t i;

	if (s == NULL)
		return;
	if (alen >= SL_USAGE_ACCOUNT || llen >= SL_USAGE_LIMIT || outcome > SL_USAGE_REJECTED) {
		bump(&s->dropped);
		return;
	}
	minute -= minute % 60;
	h = XXH3_64bits_withSeed(account, alen, (uint64_t)minute);
	h = XXH3_64bits_withSeed(limit ? limit : "", llen, h) | 1; /* 0 marks empty */
	pthread_mutex_lock(&s->mu);
	b = &s->buf[s->active];
	i = (uint32_t)h & (s->cap - 1);
	for (unsigned probe = 0; probe < SL_USAGE_PROBES; probe++, i = (i + 1) & (s->cap - 1)) {
		struct sl_usage_cell *c = &b->cells[i];

		if (c->hash == 0) {
			if (b->used >= s->limit)
				break;
			c->hash = h;
			c->minute = minute;
			memcpy(c->account, account, alen);
			c->account[alen] = '\0';
			memcpy(c->limit, limit ? limit : "", llen);
			c->limit[llen] = '\0';
			b->order[b->used++] = i;
			atomic_store_explicit(&s->fill, b->used, memory_order_relaxed);
		} else if (c->hash != h || c->minute != minute ||
		           strncmp(c->account, account, alen) != 0 || c->account[alen] != '\0' ||
		           strcmp(c->limit, limit ? limit : "") != 0) {
			continue;
		}
		if (outcome == SL_USAGE_ALLOWED)
			c->allowed++;
		else if (outcome == SL_USAGE_DELAYED)
			c->delayed++;
		else
			c->rejected++;
		if (outcome != SL_USAGE_REJECTED)
			c->cost += cost;
		pthread_mutex_unlock(&s->mu);
		bump(&s->counted);
		return;
	}
	pthread_mutex_unlock(&s->mu);
	bump(&s->dropped);
}

struct sl_usage_buf *usage_shard_swap(struct sl_usage_shard *s, uint32_t *fill)
{
	struct sl_usage_buf *old;

	pthread_mutex_lock(&s->mu);
	old = &s->buf[s->active];
	s->active ^= 1;
	atomic_store_explicit(&s->fill, 0, memory_order_relaxed);
	pthread_mutex_unlock(&s->mu);
	*fill = old->used;
	return old;
}

void usage_buf_clear(struct sl_usage_buf *b)
{
	for (uint32_t k = 0; k < b->used; k++)
		memset(&b->cells[b->order[k]], 0, sizeof(b->cells[0]));
	b->used = 0;
}

void sl_usage_eval(struct sl_usage_shard *s, const struct sl_eval *ev)
{
	const struct sl_decision *d = &ev->decision;
	int idx = d->denied >= 0 ? d->denied : d->primary;
	const char *limit = NULL;
	unsigned outcome;

	if (s == NULL || ev->batch.op == SL_OP_PEEK || ev->batch.status < 0 || d->store_error ||
	    d->status == 401)
		return; /* a peek decides nothing */
	if (d->denied >= 0 || d->status != 200)
		outcome = SL_USAGE_REJECTED;
	else if (d->delay > 0)
		outcome = SL_USAGE_DELAYED;
	else
		outcome = SL_USAGE_ALLOWED;
	if (idx >= 0 && (size_t)idx < ev->nchecks && ev->limits[idx] != NULL)
		limit = ev->limits[idx]->name;
	sl_usage_count(s, ev->account_name.p ? ev->account_name.p : "", ev->account_name.len, limit,
	               outcome, ev->cost, d->now);
}
