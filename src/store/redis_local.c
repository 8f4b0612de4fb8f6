/* The Redis store's local mode (store.mode: local, DESIGN.md section 9):
 * each worker decides rate, quota and sliding limits from its own table of
 * states, the fleet's state as last seen plus what it admitted since, and
 * once per `sync` sends what it admitted to Redis in one call (op A),
 * getting the fleet's states back. A decision that would leave fewer than
 * strict_below of a limit, or meets a state not refreshed within two sync
 * intervals, goes to Redis synchronously (op S, with this worker's unsent
 * units in the same call), so the over-admission stays bounded by what the
 * other workers admit within one staleness window (docs/store-redis.md has
 * the formula). When Redis fails, decisions stay local with every cost
 * counted `nodes` times (a per-worker share of what was left) and the units
 * are sent once Redis answers again. Concurrency, releases and batches the
 * table cannot hold go to the exact store unchanged. Thread: each worker's
 * table is touched only by its loop's thread, like redis.c's workers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include "policy/policy-t.h"
#include "store/redis_int.h"
#include "store/store.h"

#define LC_SLOTS     32768 /* entries per worker (power of 2): about 8 MB */
#define LC_PROBE     16    /* slots probed per lookup */
#define LC_KEY_MAX   120   /* bytes of a key held locally; longer: exact */
#define LC_BATCH     64    /* checks per sync request (MAX_CHECKS of redis.c) */
#define LC_SYNC_REQS 64    /* sync requests per round: 4096 entries */
#define LC_CHECKS    64    /* checks per decision */

struct lc_ent {
	uint64_t h; /* hash of (limit_id, key); 0: empty */
	uint64_t limit_id;
	struct sl_limit_spec spec; /* copied: syncs outlive the policy's */
	struct sl_state st;        /* fleet as last seen + what this worker took */
	uint64_t pending;          /* units admitted here, not sent yet */
	uint64_t sending;          /* units in requests not answered yet */
	int64_t seen;              /* ns, local clock: last refresh; 0 never */
	int64_t used;              /* ns, local clock: last decision */
	uint32_t holds;            /* requests that reference the entry */
	bool dirty;                /* on the worker's dirty list */
	uint32_t key_len;
	char key[LC_KEY_MAX];
};

struct lc_worker;

/* One request of a sync round, or the unsent units of a strict decision. */
struct lc_sync {
	struct lc_worker *w;
	struct sl_batch b;
	struct sl_redis_ext x;
	struct sl_check ck[LC_BATCH];
	struct sl_redis_raw raw[LC_BATCH];
	uint32_t ent[LC_BATCH];
	uint64_t cost[LC_BATCH];
	bool round; /* part of the periodic round */
	bool heap;  /* a strict decision's own: freed when answered */
	bool busy;
};

/* A decision sent to Redis (op S): the caller's batch waits for it. */
struct lc_strict {
	struct lc_worker *w;
	struct sl_batch *user;
	struct sl_batch b;
	struct sl_redis_ext x;
	struct sl_redis_raw raw[LC_CHECKS];
	uint32_t ent[LC_CHECKS];
};

struct lc_store;

struct lc_worker {
	struct lc_store *s; /* NULL once detached */
	uv_loop_t *loop;
	uv_timer_t timer; /* sync rounds */
	struct lc_worker *next;
	struct lc_ent *ents; /* [LC_SLOTS] */
	uint32_t *dirty;     /* [LC_SLOTS]: entries touched since their last sync */
	uint32_t ndirty;
	struct lc_sync *syncs; /* [LC_SYNC_REQS] */
	unsigned round_left;   /* round requests not answered yet */
	int64_t clk_off;       /* ns: b->now minus CLOCK_MONOTONIC */
	uint64_t nodes;        /* live workers of the fleet (heartbeat), >= 1 */
	bool degraded;         /* the last call to Redis failed */
	bool closing;
	bool timer_ref; /* the timer keeps the loop alive: entries to sync */
	char id[48];
};

struct lc_store {
	struct sl_store base;
	struct sl_store *exact; /* the exact store, on the same Redis */
	int64_t sync;           /* ns */
	int64_t stale;          /* ns: a state older than this is refreshed first */
	uint32_t strict_below;  /* ppm */
	uint64_t id;
	pthread_mutex_t lock;
	struct lc_worker *workers;
	_Atomic uint64_t local, strict, forwarded, sync_errors;
};

static _Atomic uint64_t lc_ids = 1;
static _Thread_local struct {
	uint64_t id;
	void *loop;
	struct lc_worker *w;
} tls;

static int64_t mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
}

static int64_t local_now(const struct lc_worker *w)
{
	return mono() + w->clk_off;
}

static bool local_algo(uint8_t a)
{
	return a == SL_ALGO_RATE || a == SL_ALGO_QUOTA || a == SL_ALGO_SLIDING;
}

static int64_t sat_add(int64_t a, __int128 b)
{
	__int128 x = (__int128)a + b;

	return x > INT64_MAX ? INT64_MAX : x < INT64_MIN ? INT64_MIN : (int64_t)x;
}

static int64_t floor_div(int64_t a, int64_t b)
{
	int64_t q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return q;
}

/* Take c units of st at now without a limit check, as op A does in the
 * library: GCRA moves the (rescaled) TAT on, quota and sliding count. */
static void take(const struct sl_limit_spec *sp, struct sl_state *st, int64_t now, uint64_t c)
{
	if (c == 0)
		return;
	if (sp->algo == SL_ALGO_RATE) {
		__int128 wait = st->expires > now ? (__int128)st->expires - now : 0;
		int64_t t = sp->interval;

		if (wait > 0 && st->v > 0 && st->v != (uint64_t)t)
			wait = wait * t / (__int128)st->v;
		st->expires = sat_add(now, wait + (__int128)c * t);
		st->v = (uint64_t)t;
	} else if (sp->algo == SL_ALGO_QUOTA) {
		if (st->expires <= now) {
			int64_t a, b;

			sl_calendar_window(sp->calendar, sp->tz_offset, now, &a, &b);
			st->expires = b;
			st->v = 0;
		}
		st->v += c;
	} else if (sp->algo == SL_ALGO_SLIDING && sp->period > 0) {
		int64_t p = sp->period, w = floor_div(now, p);
		uint64_t prev = 0, cur = 0;

		if (st->expires > now) {
			int64_t sw = floor_div(st->expires, p) - 2;

			if (sw >= w) {
				prev = st->v >> 32;
				cur = st->v & 0xffffffffu;
				w = sw;
			} else if (sw == w - 1) {
				prev = st->v & 0xffffffffu;
			}
		}
		cur += c;
		if (cur > 0xffffffffu)
			cur = 0xffffffffu;
		st->v = prev << 32 | cur;
		st->expires = sat_add(0, ((__int128)w + 2) * p);
	}
}

/* The fleet's state r (relative to Redis' time at the call) on this
 * worker's clock at now. Sliding windows are matched by index, quota
 * windows snap to this worker's calendar boundary, so clock skew between
 * a node and Redis never shifts a window. */
static void from_raw(const struct sl_limit_spec *sp, const struct sl_redis_raw *r, int64_t now,
                     struct sl_state *st)
{
	st->expires = 0;
	st->v = 0;
	if (r->rel <= 0)
		return;
	if (sp->algo == SL_ALGO_RATE) {
		st->expires = sat_add(now, r->rel);
		st->v = r->v1;
	} else if (sp->algo == SL_ALGO_QUOTA) {
		int64_t a, b, e = sat_add(now, r->rel);

		sl_calendar_window(sp->calendar, sp->tz_offset, now, &a, &b);
		st->expires = (e > b ? e - b : b - e) < 2 * SL_NS_PER_SEC ? b : e;
		st->v = r->v1;
	} else if (sp->algo == SL_ALGO_SLIDING && sp->period > 0) {
		int64_t p = sp->period, k = r->rel / p + (r->rel % p != 0);
		uint64_t prev = r->v1 > 0xffffffffu ? 0xffffffffu : r->v1;
		uint64_t cur = r->v2 > 0xffffffffu ? 0xffffffffu : r->v2;

		st->expires = sat_add(0, ((__int128)floor_div(now, p) + k) * p);
		st->v = prev << 32 | cur;
	}
}

/* ---- the table ---- */

static uint64_t ent_hash(const struct sl_check *ck)
{
	uint64_t h = XXH3_64bits_withSeed(ck->key, ck->key_len, ck->limit_id);

	return h ? h : 1;
}

static void mark_dirty(struct lc_worker *w, uint32_t i)
{
	if (!w->ents[i].dirty) {
		w->ents[i].dirty = true;
		w->dirty[w->ndirty++] = i;
	}
	if (!w->timer_ref && !w->closing) { /* unsent work keeps the loop alive */
		uv_ref((uv_handle_t *)&w->timer);
		w->timer_ref = true;
	}
}

/* Field by field: padding bytes of a copied spec need not match. */
static bool spec_eq(const struct sl_limit_spec *a, const struct sl_limit_spec *b)
{
	return a->algo == b->algo && a->calendar == b->calendar && a->tz_offset == b->tz_offset &&
	       a->n == b->n && a->period == b->period && a->interval == b->interval &&
	       a->burst == b->burst && a->queue == b->queue;
}

/* The entry of ck, made on first use: a free slot, else the least recently
 * used one that holds nothing unsent. Returns its index, or -1 when the
 * probe window is all in use (the decision goes exact). */
static int64_t ent_get(struct lc_worker *w, const struct sl_check *ck)
{
	uint64_t h = ent_hash(ck);
	int64_t victim = -1;

	if (ck->key_len > LC_KEY_MAX)
		return -1;
	for (unsigned k = 0; k < LC_PROBE; k++) {
		uint32_t i = (uint32_t)((h + k) & (LC_SLOTS - 1));
		struct lc_ent *e = &w->ents[i];

		if (e->h == h && e->limit_id == ck->limit_id && e->key_len == ck->key_len &&
		    memcmp(e->key, ck->key, ck->key_len) == 0) {
			if (!spec_eq(&e->spec, ck->spec)) {
				e->spec = *ck->spec; /* the limit's numbers changed */
				e->seen = 0;
			}
			return i;
		}
		if (e->h == 0) {
			victim = i;
			break;
		}
		if (e->pending == 0 && e->sending == 0 && e->holds == 0 && !e->dirty &&
		    (victim < 0 || e->used < w->ents[victim].used))
			victim = i;
	}
	if (victim < 0)
		return -1;
	{
		struct lc_ent *e = &w->ents[victim];

		memset(e, 0, sizeof(*e));
		e->h = h;
		e->limit_id = ck->limit_id;
		e->spec = *ck->spec;
		e->key_len = ck->key_len;
		memcpy(e->key, ck->key, ck->key_len);
	}
	return victim;
}

/* The entry of ck if the table has it, else -1. */
static int64_t ent_find(struct lc_worker *w, const struct sl_check *ck)
{
	uint64_t h = ent_hash(ck);

	for (unsigned k = 0; k < LC_PROBE; k++) {
		uint32_t i = (uint32_t)((h + k) & (LC_SLOTS - 1));
		struct lc_ent *e = &w->ents[i];

		if (e->h == 0)
			return -1;
		if (e->h == h && e->limit_id == ck->limit_id && e->key_len == ck->key_len &&
		    memcmp(e->key, ck->key, ck->key_len) == 0)
			return i;
	}
	return -1;
}

/* A refreshed state: the fleet's r plus what this worker admitted since
 * the request left (the entry's pending units). */
static void ent_refresh(struct lc_worker *w, struct lc_ent *e, const struct sl_redis_raw *r,
                        int64_t now)
{
	from_raw(&e->spec, r, now, &e->st);
	take(&e->spec, &e->st, now, e->pending * (w->degraded ? w->nodes : 1));
	e->seen = now;
}

/* ---- syncs ---- */

static void on_sync_done(struct sl_batch *b)
{
	struct lc_sync *y = b->data;
	struct lc_worker *w = y->w;
	int64_t now = local_now(w);
	bool ok = b->status >= 0;

	y->busy = false;
	if (!ok && w->s)
		atomic_fetch_add_explicit(&w->s->sync_errors, 1, memory_order_relaxed);
	if (ok && w->degraded) {
		w->degraded = false; /* caught up: every entry refreshed from here on */
		for (uint32_t i = 0; i < LC_SLOTS; i++)
			if (w->ents[i].h)
				w->ents[i].seen = 0;
	} else if (!ok) {
		w->degraded = true;
	}
	if (ok && y->x.hb_id && y->x.hb_count > 0)
		w->nodes = (uint64_t)y->x.hb_count;
	for (size_t k = 0; k < b->n; k++) {
		struct lc_ent *e = &w->ents[y->ent[k]];

		e->holds--;
		e->sending -= y->cost[k];
		if (ok) {
			ent_refresh(w, e, &y->raw[k], now);
			/* one more read next round: the other nodes' last units
			 * arrive after ours, and an idle entry is not read again */
			if (y->cost[k] > 0)
				mark_dirty(w, y->ent[k]);
		} else {
			e->pending += y->cost[k];
			mark_dirty(w, y->ent[k]);
		}
	}
	if (y->round && w->round_left > 0)
		w->round_left--;
	if (y->heap)
		free(y);
}

/* Send entries idx[0, n) as one A request on y: every unsent unit, and a
 * fresh read of each state. 0, or the submit's error (nothing changed). */
static int sync_send(struct lc_worker *w, struct lc_sync *y, const uint32_t *idx, size_t n, bool hb)
{
	int rc;

	memset(&y->b, 0, sizeof(y->b));
	memset(&y->x, 0, sizeof(y->x));
	y->w = w;
	for (size_t k = 0; k < n; k++) {
		struct lc_ent *e = &w->ents[idx[k]];
		struct sl_check *ck = &y->ck[k];

		memset(ck, 0, sizeof(*ck));
		ck->spec = &e->spec;
		ck->limit_id = e->limit_id;
		ck->name = "local";
		ck->key = e->key;
		ck->key_len = e->key_len;
		ck->cost = e->pending;
		y->ent[k] = idx[k];
		y->cost[k] = e->pending;
	}
	y->b.checks = y->ck;
	y->b.n = n;
	y->b.op = SL_OP_DECIDE;
	y->b.now = local_now(w);
	y->b.loop = w->loop;
	y->b.done = on_sync_done;
	y->b.data = y;
	y->x.op = SL_REDIS_OP_ADD;
	y->x.raw = y->raw;
	if (hb) {
		y->x.hb_id = w->id;
		y->x.hb_ttl = (uint64_t)(3 * w->s->sync / 1000000) + 1000;
	}
	for (size_t k = 0; k < n; k++) {
		struct lc_ent *e = &w->ents[idx[k]];

		e->sending += e->pending;
		e->pending = 0;
		e->holds++;
	}
	y->busy = true;
	rc = sl_redis_submit_ext(w->s->exact, &y->b, &y->x);
	if (rc < 0) {
		y->busy = false;
		for (size_t k = 0; k < n; k++) {
			struct lc_ent *e = &w->ents[idx[k]];

			e->pending += y->cost[k];
			e->sending -= y->cost[k];
			e->holds--;
		}
	}
	return rc;
}

/* One sync round: the dirty entries (touched since their last sync), at
 * most LC_SYNC_REQS * LC_BATCH of them; the rest wait for the next round.
 * The first request carries the heartbeat. */
static void on_sync_timer(uv_timer_t *t)
{
	struct lc_worker *w = t->data;
	uint32_t idx[LC_BATCH];
	unsigned r = 0;

	if (w->closing || !w->s || w->round_left > 0)
		return;
	if (w->ndirty == 0 && w->timer_ref) {
		uv_unref((uv_handle_t *)&w->timer);
		w->timer_ref = false;
	}
	while (r < LC_SYNC_REQS && (w->ndirty > 0 || r == 0)) {
		size_t n = 0;

		while (n < LC_BATCH && w->ndirty > 0) {
			uint32_t i = w->dirty[--w->ndirty];

			w->ents[i].dirty = false;
			idx[n++] = i;
		}
		w->syncs[r].round = true;
		if (sync_send(w, &w->syncs[r], idx, n, r == 0) < 0) {
			for (size_t k = 0; k < n; k++)
				mark_dirty(w, idx[k]);
			w->degraded = true;
			break;
		}
		w->round_left++;
		r++;
	}
}

/* ---- decisions ---- */

static void on_strict_done(struct sl_batch *ib);

/* Evaluate b on the worker's states at now. mult counts every cost that
 * many times (degraded: a per-worker share). *strict is set when an
 * admission would leave fewer than strict_below of a limit. On SL_OK or
 * SL_DELAY with !*strict the states and pending units are committed. */
static int decide_here(struct lc_worker *w, struct sl_batch *b, const int64_t *ent, uint64_t mult,
                       bool check_strict, bool *strict, size_t *denied, int64_t *delay)
{
	struct sl_decide_item items[LC_CHECKS];
	struct sl_state tmp[LC_CHECKS], none[LC_CHECKS];
	int rc;

	*strict = false;
	for (size_t i = 0; i < b->n; i++) {
		items[i].spec = b->checks[i].spec;
		items[i].cost = b->checks[i].cost * mult;
		items[i].state = &none[i];
		memset(&none[i], 0, sizeof(none[i]));
		if (ent[i] < 0)
			continue;
		tmp[i] = w->ents[ent[i]].st;
		items[i].state = &tmp[i];
		for (size_t j = 0; j < i; j++)
			if (ent[j] == ent[i])
				items[i].state = items[j].state; /* one counter twice */
	}
	rc = sl_decide(items, b->n, b->now, denied, delay);
	if (rc == SL_DENY)
		for (size_t i = 0; i < b->n; i++)
			if (ent[i] >= 0) /* read again next round: denials stay local */
				mark_dirty(w, (uint32_t)ent[i]);
	for (size_t i = 0; i < b->n && rc != SL_DENY && check_strict; i++) {
		uint64_t n = b->checks[i].spec->n;
		uint64_t thr =
		        n < (UINT64_C(1) << 43) /* n * 1e6 fits: no 128-bit division */
		                ? (n * w->s->strict_below + 999999) / 1000000
		                : (uint64_t)(((unsigned __int128)n * w->s->strict_below + 999999) /
		                             1000000);

		if (ent[i] >= 0 && items[i].res.remaining < thr)
			*strict = true;
	}
	for (size_t i = 0; i < b->n; i++)
		b->checks[i].res = items[i].res;
	if (rc == SL_DENY || *strict)
		return rc;
	for (size_t i = 0; i < b->n; i++) {
		struct lc_ent *e;

		if (ent[i] < 0)
			continue;
		e = &w->ents[ent[i]];
		e->st = *items[i].state;
		e->pending += b->checks[i].cost;
		e->used = b->now;
		mark_dirty(w, (uint32_t)ent[i]);
	}
	return rc;
}

static void finish_local(struct sl_batch *b, int rc, size_t denied, int64_t delay)
{
	b->status = rc;
	b->denied = rc == SL_DENY ? denied : b->n;
	b->delay = rc == SL_DELAY ? delay : 0;
	b->time = b->now;
	b->done(b);
}

/* Send b to Redis as op S, with the entries' unsent units ahead of it in
 * the same call. Returns 0 (done() will run) or a negative code. */
static int go_strict(struct lc_worker *w, struct sl_batch *b, const int64_t *ent)
{
	struct lc_strict *z = calloc(1, sizeof(*z));
	struct lc_sync *y = NULL;
	uint32_t idx[LC_BATCH];
	size_t n = 0;
	int rc;

	if (!z)
		return SL_ENOMEM;
	for (size_t i = 0; i < b->n; i++) {
		if (ent[i] < 0)
			continue;
		if (w->ents[ent[i]].pending > 0 && n < LC_BATCH) {
			bool dup = false;

			for (size_t k = 0; k < n; k++)
				dup |= idx[k] == (uint32_t)ent[i];
			if (!dup)
				idx[n++] = (uint32_t)ent[i];
		}
	}
	/* this worker's unsent units go ahead of the decision, in its call */
	if (n > 0 && (y = calloc(1, sizeof(*y)))) {
		y->heap = true;
		if (sync_send(w, y, idx, n, false) < 0)
			free(y); /* the S below fails the same way */
	}
	z->w = w;
	z->user = b;
	z->b = *b;
	z->b.done = on_strict_done;
	z->b.data = z;
	z->x.op = SL_REDIS_OP_STRICT;
	z->x.raw = z->raw;
	for (size_t i = 0; i < b->n; i++) {
		z->ent[i] = ent[i] < 0 ? UINT32_MAX : (uint32_t)ent[i];
		if (ent[i] >= 0)
			w->ents[ent[i]].holds++;
	}
	atomic_fetch_add_explicit(&w->s->strict, 1, memory_order_relaxed);
	rc = sl_redis_submit_ext(w->s->exact, &z->b, &z->x);
	if (rc < 0) {
		for (size_t i = 0; i < b->n; i++)
			if (ent[i] >= 0)
				w->ents[ent[i]].holds--;
		free(z);
	}
	return rc;
}

/* A strict decision's answer: Redis decided, its states replace ours. On
 * failure the worker is degraded and the batch is decided here, on its
 * share. */
static void on_strict_done(struct sl_batch *ib)
{
	struct lc_strict *z = ib->data;
	struct lc_worker *w = z->w;
	struct sl_batch *b = z->user;
	int64_t ent[LC_CHECKS], now = local_now(w);
	size_t denied = b->n;
	int64_t delay = 0;
	bool strict;
	int rc;

	for (size_t i = 0; i < b->n; i++) {
		ent[i] = z->ent[i] == UINT32_MAX ? -1 : (int64_t)z->ent[i];
		if (ent[i] >= 0)
			w->ents[ent[i]].holds--;
	}
	if (ib->status >= 0 || w->closing || !w->s) {
		b->status = ib->status;
		b->denied = ib->denied;
		b->delay = ib->delay;
		b->time = ib->time;
		for (size_t i = 0; i < b->n && ib->status >= 0; i++) {
			struct lc_ent *e;

			if (ent[i] < 0)
				continue;
			e = &w->ents[ent[i]];
			ent_refresh(w, e, &z->raw[i], now);
			e->used = now;
		}
		free(z);
		b->done(b);
		return;
	}
	free(z);
	w->degraded = true;
	rc = decide_here(w, b, ent, w->nodes, false, &strict, &denied, &delay);
	finish_local(b, rc, denied, delay);
}

static struct lc_worker *worker_get(struct lc_store *s, uv_loop_t *loop);

static int lc_submit(struct sl_store *base, struct sl_batch *b)
{
	struct lc_store *s = (struct lc_store *)base;
	struct lc_worker *w;
	int64_t ent[LC_CHECKS];
	size_t denied = 0;
	int64_t delay = 0;
	bool strict = false, fresh = true;
	int rc;

	if (!b || !b->done || !b->loop || (b->n && !b->checks) || b->n > LC_CHECKS)
		return SL_EINVAL;
	for (size_t i = 0; i < b->n; i++)
		if (!b->checks[i].spec)
			return SL_EINVAL;
	w = worker_get(s, b->loop);
	if (!w)
		return SL_ENOMEM;
	if (w->closing)
		return SL_EIO;
	w->clk_off = b->now - mono();
	if (b->op != SL_OP_DECIDE)
		goto exact;
	for (size_t i = 0; i < b->n; i++) {
		uint8_t a = b->checks[i].spec->algo;

		ent[i] = -1;
		if (a == SL_ALGO_CONCURRENCY)
			goto exact;
		if (!local_algo(a))
			continue;
		ent[i] = ent_get(w, &b->checks[i]);
		if (ent[i] < 0)
			goto exact;
		if (w->ents[ent[i]].seen == 0 || b->now - w->ents[ent[i]].seen > s->stale)
			fresh = false;
	}
	if (w->degraded) {
		rc = decide_here(w, b, ent, w->nodes, false, &strict, &denied, &delay);
		atomic_fetch_add_explicit(&s->local, 1, memory_order_relaxed);
		finish_local(b, rc, denied, delay);
		return 0;
	}
	if (fresh) {
		rc = decide_here(w, b, ent, 1, true, &strict, &denied, &delay);
		if (!strict) {
			atomic_fetch_add_explicit(&s->local, 1, memory_order_relaxed);
			finish_local(b, rc, denied, delay);
			return 0;
		}
	}
	rc = go_strict(w, b, ent);
	if (rc == 0)
		return 0;
	w->degraded = true;
	rc = decide_here(w, b, ent, w->nodes, false, &strict, &denied, &delay);
	finish_local(b, rc, denied, delay);
	return 0;
exact:
	/* a concurrency limit, a release or peek, or a key the table cannot
	 * hold: the exact store decides; the local states it touches are read
	 * again before their next local decision */
	for (size_t i = 0; i < b->n && b->op == SL_OP_DECIDE; i++) {
		int64_t k = local_algo(b->checks[i].spec->algo) ? ent_find(w, &b->checks[i]) : -1;

		if (k >= 0)
			w->ents[k].seen = 0;
	}
	atomic_fetch_add_explicit(&s->forwarded, 1, memory_order_relaxed);
	return sl_store_submit(s->exact, b);
}

/* ---- workers and the store ---- */

static struct lc_worker *worker_new(struct lc_store *s, uv_loop_t *loop)
{
	struct lc_worker *w = calloc(1, sizeof(*w));
	char host[32] = "";

	if (!w)
		return NULL;
	w->ents = calloc(LC_SLOTS, sizeof(*w->ents));
	w->dirty = calloc(LC_SLOTS, sizeof(*w->dirty));
	w->syncs = calloc(LC_SYNC_REQS, sizeof(*w->syncs));
	if (!w->ents || !w->dirty || !w->syncs) {
		free(w->ents);
		free(w->dirty);
		free(w->syncs);
		free(w);
		return NULL;
	}
	gethostname(host, sizeof(host) - 1);
	snprintf(w->id, sizeof(w->id), "%.31s:%ld:%p", host, (long)getpid(), (void *)w);
	w->s = s;
	w->loop = loop;
	w->nodes = 1;
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	uv_unref((uv_handle_t *)&w->timer);
	uv_timer_start(&w->timer, on_sync_timer, (uint64_t)(s->sync / 1000000),
	               (uint64_t)(s->sync / 1000000));
	return w;
}

static struct lc_worker *worker_get(struct lc_store *s, uv_loop_t *loop)
{
	struct lc_worker *w;

	if (tls.id == s->id && tls.loop == loop)
		return tls.w;
	pthread_mutex_lock(&s->lock);
	for (w = s->workers; w; w = w->next)
		if (w->loop == loop)
			break;
	if (!w && (w = worker_new(s, loop))) {
		w->next = s->workers;
		s->workers = w;
	}
	pthread_mutex_unlock(&s->lock);
	if (w) {
		tls.id = s->id;
		tls.loop = loop;
		tls.w = w;
	}
	return w;
}

static void worker_freed(uv_handle_t *h)
{
	struct lc_worker *w = h->data;

	free(w->ents);
	free(w->dirty);
	free(w->syncs);
	free(w);
}

/* The exact store's requests of w's loop complete (with SL_EIO) inside its
 * detach, so nothing references w once its timer is closed. */
static void worker_close(struct lc_worker *w)
{
	if (tls.w == w)
		memset(&tls, 0, sizeof(tls));
	w->closing = true;
	if (w->s)
		sl_redis_store_detach(w->s->exact, w->loop);
	w->s = NULL;
	uv_timer_stop(&w->timer);
	uv_close((uv_handle_t *)&w->timer, worker_freed);
}

static void lc_stats(struct sl_store *base, struct sl_store_stats *out)
{
	struct lc_store *s = (struct lc_store *)base;

	s->exact->ops->stats(s->exact, out);
	out->errors += atomic_load_explicit(&s->sync_errors, memory_order_relaxed);
}

static void lc_destroy(struct sl_store *base)
{
	struct lc_store *s = (struct lc_store *)base;

	if (!s)
		return;
	while (s->workers) {
		struct lc_worker *w = s->workers;

		s->workers = w->next;
		worker_close(w);
	}
	s->exact->ops->destroy(s->exact);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct sl_store_ops lc_ops = {
        .name = "redis-local",
        .submit = lc_submit,
        .stats = lc_stats,
        .destroy = lc_destroy,
};

bool sl_redis_is_local(const struct sl_store *s)
{
	return s && s->ops == &lc_ops;
}

int sl_redis_local_create(struct sl_store **out, struct sl_store *exact,
                          const struct sl_store_conf *conf)
{
	struct lc_store *s = calloc(1, sizeof(*s));

	if (!s)
		return SL_ENOMEM;
	s->base.ops = &lc_ops;
	s->exact = exact;
	s->sync = conf->sync >= 1000000 ? conf->sync : 50 * 1000000LL;
	s->stale = 2 * s->sync + (conf->timeout > 0 ? conf->timeout : 50 * 1000000LL);
	s->strict_below = conf->strict > 1000000 ? 1000000 : conf->strict;
	s->id = atomic_fetch_add(&lc_ids, 1);
	pthread_mutex_init(&s->lock, NULL);
	*out = &s->base;
	return 0;
}

void sl_redis_local_detach(struct sl_store *base, void *loop)
{
	struct lc_store *s = (struct lc_store *)base;
	struct lc_worker *w, **pp;

	pthread_mutex_lock(&s->lock);
	for (pp = &s->workers; (w = *pp); pp = &w->next)
		if (w->loop == loop) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	if (w)
		worker_close(w);
	else
		sl_redis_store_detach(s->exact, loop);
}

void sl_redis_local_counts(const struct sl_store *base, uint64_t *local, uint64_t *strict,
                           uint64_t *forwarded)
{
	struct lc_store *s = (struct lc_store *)base;

	*local = atomic_load_explicit(&s->local, memory_order_relaxed);
	*strict = atomic_load_explicit(&s->strict, memory_order_relaxed);
	*forwarded = atomic_load_explicit(&s->forwarded, memory_order_relaxed);
}
