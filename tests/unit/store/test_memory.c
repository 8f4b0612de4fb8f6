/* The memory store: batched decisions all or nothing across limits,
 * release, peek, key hashing, refusal of bad batches, stats, and the
 * snapshot file: round trip, expiry on load, and rejection of every damaged
 * file (each truncation, each flipped byte) without restoring anything; a
 * damaged file kept aside as PATH.corrupt[.N], never overwritten; the
 * store's own snapshot path; failed saves (no directory, file size limit
 * as a full disk) return SL_EIO with errno and keep the old file. Time is
 * injected; nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include <sluice/table.h>

#include "policy/policy-t.h"
#include "store/store.h"

#define T0   (1700000000LL * SL_NS_PER_SEC) /* a Tuesday, 22:13:20 UTC */
#define SIZE (1 << 20)                      /* bytes of table */
#define SEED 0x5eedULL

static int done_calls;

static void on_done(struct sl_batch *b)
{
	(void)b;
	done_calls++;
}

static struct sl_store *mk(uint64_t seed)
{
	struct sl_store *s = NULL;
	assert_int_equal(sl_memory_store_create(&s, SIZE, seed), 0);
	assert_non_null(s);
	assert_string_equal(s->ops->name, "memory");
	return s;
}

static void check(struct sl_check *c, const struct sl_limit_spec *spec, uint64_t id,
                  const char *key, uint64_t cost)
{
	memset(c, 0, sizeof(*c));
	c->spec = spec;
	c->limit_id = id;
	c->name = "t";
	c->key = key;
	c->key_len = (uint32_t)strlen(key);
	c->cost = cost;
}

/* Submit and check done() ran exactly once, inline. */
static int run(struct sl_store *s, struct sl_check *c, size_t n, uint8_t op, int64_t now,
               struct sl_batch *out)
{
	struct sl_batch b = {.checks = c, .n = n, .op = op, .now = now, .done = on_done};
	int before = done_calls;
	b.status = -100;
	assert_int_equal(sl_store_submit(s, &b), 0);
	assert_int_equal(done_calls, before + 1);
	assert_int_equal(b.time, now);
	if (out)
		*out = b;
	return b.status;
}

static void decide_counts_down_then_denies(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec rate;
	struct sl_check c;
	struct sl_batch b;

	assert_int_equal(sl_spec_rate(&rate, 3, SL_NS_PER_MIN, 0, 0), 0);
	for (uint64_t i = 0; i < 3; i++) {
		check(&c, &rate, 1, "203.0.113.7", 1);
		assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, &b), SL_OK);
		assert_int_equal(c.res.outcome, SL_ALLOWED);
		assert_int_equal(c.res.remaining, 2 - i);
		assert_int_equal(c.res.limit, 3);
	}
	check(&c, &rate, 1, "203.0.113.7", 1);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, &b), SL_DENY);
	assert_int_equal(b.denied, 0);
	assert_int_equal(c.res.outcome, SL_REJECTED);
	assert_true(c.res.retry_after > 0);
	/* One emission interval later one more passes. */
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0 + 20 * SL_NS_PER_SEC, &b), SL_OK);
	s->ops->destroy(s);
}

static uint64_t remaining(struct sl_store *s, const struct sl_limit_spec *spec, uint64_t id,
                          const char *key, int64_t now)
{
	struct sl_check c;
	check(&c, spec, id, key, 0);
	run(s, &c, 1, SL_OP_PEEK, now, NULL);
	return c.res.remaining;
}

static void decide_is_all_or_nothing_across_three_limits(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec ip, key, acct;
	struct sl_check c[3];
	struct sl_batch b;

	assert_int_equal(sl_spec_rate(&ip, 10, SL_NS_PER_MIN, 0, 0), 0);
	assert_int_equal(sl_spec_rate(&key, 5, SL_NS_PER_MIN, 0, 0), 0);
	assert_int_equal(sl_spec_quota(&acct, 3, SL_CAL_HOUR, 0), 0);
	for (int i = 0; i < 3; i++) {
		check(&c[0], &ip, 1, "198.51.100.1", 1);
		check(&c[1], &key, 2, "sk_live_a", 1);
		check(&c[2], &acct, 3, "acme", 1);
		assert_int_equal(run(s, c, 3, SL_OP_DECIDE, T0, &b), SL_OK);
	}
	assert_int_equal(c[0].res.remaining, 7);
	assert_int_equal(c[1].res.remaining, 2);
	assert_int_equal(c[2].res.remaining, 0);
	/* The account quota is spent: the decision is denied by check 2 and
	 * the ip and key limits keep what they had. */
	assert_int_equal(run(s, c, 3, SL_OP_DECIDE, T0, &b), SL_DENY);
	assert_int_equal(b.denied, 2);
	assert_int_equal(c[2].res.outcome, SL_REJECTED);
	assert_int_equal(c[0].res.remaining, 7); /* re-evaluated as a peek */
	assert_int_equal(remaining(s, &ip, 1, "198.51.100.1", T0), 7);
	assert_int_equal(remaining(s, &key, 2, "sk_live_a", T0), 2);
	/* Another ip and key on the same account: still denied, and the new
	 * counters stay untouched. */
	check(&c[0], &ip, 1, "198.51.100.2", 1);
	check(&c[1], &key, 2, "sk_live_b", 1);
	assert_int_equal(run(s, c, 3, SL_OP_DECIDE, T0, &b), SL_DENY);
	assert_int_equal(remaining(s, &ip, 1, "198.51.100.2", T0), 10);
	assert_int_equal(remaining(s, &key, 2, "sk_live_b", T0), 5);
	/* The next hour's window admits again. */
	assert_int_equal(run(s, c, 3, SL_OP_DECIDE, T0 + SL_NS_PER_HOUR, &b), SL_OK);
	s->ops->destroy(s);
}

static void queue_delay_is_reported(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec q;
	struct sl_check c;
	struct sl_batch b;
	int ok = 0, delayed = 0, denied = 0;

	/* seed 4 of DESIGN.md: 900/min, burst 15, queue 5, 23 at once */
	assert_int_equal(sl_spec_rate(&q, 900, SL_NS_PER_MIN, 15, 5), 0);
	for (int i = 0; i < 23; i++) {
		check(&c, &q, 9, "acme/route", 1);
		int st = run(s, &c, 1, SL_OP_DECIDE, T0, &b);
		ok += st == SL_OK;
		denied += st == SL_DENY;
		if (st == SL_DELAY) {
			delayed++;
			assert_true(b.delay > 0);
			assert_int_equal(b.delay, c.res.delay);
		}
	}
	assert_int_equal(ok, 15);
	assert_int_equal(delayed, 5);
	assert_int_equal(denied, 3);
	s->ops->destroy(s);
}

static void release_gives_back_concurrency_slots(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec conc;
	struct sl_check c;

	assert_int_equal(sl_spec_concurrency(&conc, 2, 60 * SL_NS_PER_SEC), 0);
	check(&c, &conc, 4, "k", 1);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_DENY);
	assert_int_equal(run(s, &c, 1, SL_OP_RELEASE, T0 + 1, NULL), SL_OK);
	assert_int_equal(c.res.remaining, 1);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0 + 2, NULL), SL_OK);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0 + 2, NULL), SL_DENY);
	/* Releasing more than was taken never goes below fresh. */
	for (int i = 0; i < 5; i++)
		run(s, &c, 1, SL_OP_RELEASE, T0 + 3, NULL);
	assert_int_equal(remaining(s, &conc, 4, "k", T0 + 3), 2);
	s->ops->destroy(s);
}

static void peek_consumes_nothing(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec rate, deny;
	struct sl_check c[2];
	struct sl_batch b;

	assert_int_equal(sl_spec_rate(&rate, 2, SL_NS_PER_MIN, 0, 0), 0);
	sl_spec_deny(&deny);
	for (int i = 0; i < 10; i++)
		assert_int_equal(remaining(s, &rate, 1, "x", T0), 2);
	check(&c[0], &rate, 1, "x", 1);
	assert_int_equal(run(s, c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	assert_int_equal(remaining(s, &rate, 1, "x", T0), 1);
	/* A deny limit reports its rejection on peek too. */
	check(&c[0], &rate, 1, "x", 0);
	check(&c[1], &deny, 2, "x", 0);
	assert_int_equal(run(s, c, 2, SL_OP_PEEK, T0, &b), SL_DENY);
	assert_int_equal(b.denied, 1);
	assert_int_equal(remaining(s, &rate, 1, "x", T0), 1);
	s->ops->destroy(s);
}

static void limit_id_and_every_key_byte_matter(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec rate;
	struct sl_check c;

	assert_int_equal(sl_spec_rate(&rate, 5, SL_NS_PER_MIN, 0, 0), 0);
	check(&c, &rate, 1, "ab", 1);
	run(s, &c, 1, SL_OP_DECIDE, T0, NULL);
	assert_int_equal(remaining(s, &rate, 1, "ab", T0), 4);
	assert_int_equal(remaining(s, &rate, 2, "ab", T0), 5);
	assert_int_equal(remaining(s, &rate, 1, "a", T0), 5);
	assert_int_equal(remaining(s, &rate, 1, "", T0), 5);
	/* Length counts: "ab" and "ab\0" are different keys. */
	check(&c, &rate, 1, "ab", 0);
	c.key = "ab\0";
	c.key_len = 3;
	run(s, &c, 1, SL_OP_PEEK, T0, NULL);
	assert_int_equal(c.res.remaining, 5);
	/* Another seed is another keyspace: nothing to compare across stores,
	 * but both work. */
	struct sl_store *s2 = mk(SEED + 1);
	assert_int_equal(remaining(s2, &rate, 1, "ab", T0), 5);
	s2->ops->destroy(s2);
	s->ops->destroy(s);
}

static void bad_batches_are_refused_up_front(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_limit_spec rate;
	struct sl_check c[SL_TABLE_MAX_KEYS + 1];
	int before = done_calls;

	assert_int_equal(sl_spec_rate(&rate, 5, SL_NS_PER_MIN, 0, 0), 0);
	for (int i = 0; i <= SL_TABLE_MAX_KEYS; i++)
		check(&c[i], &rate, 1, "k", 1);
	struct sl_batch b = {.checks = c, .n = SL_TABLE_MAX_KEYS + 1, .now = T0, .done = on_done};
	assert_int_equal(sl_store_submit(s, &b), SL_EINVAL);
	b.n = 1;
	b.op = 7;
	assert_int_equal(sl_store_submit(s, &b), SL_EINVAL);
	b.op = SL_OP_DECIDE;
	c[0].spec = NULL;
	assert_int_equal(sl_store_submit(s, &b), SL_EINVAL);
	assert_int_equal(done_calls, before);
	/* Exactly 32 is fine; an empty batch is a trivial success. */
	c[0].spec = &rate;
	assert_int_equal(run(s, c, SL_TABLE_MAX_KEYS, SL_OP_PEEK, T0, NULL), SL_OK);
	assert_int_equal(run(s, c, 0, SL_OP_DECIDE, T0, NULL), SL_OK);
	s->ops->destroy(s);
}

static void create_and_stats(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	struct sl_store_stats st;
	struct sl_limit_spec rate;
	struct sl_check c;
	char k[16];

	assert_int_equal(sl_memory_store_create(&s, 1000, SEED), SL_EINVAL);
	assert_null(s);
	s = mk(SEED);
	assert_int_equal(sl_spec_rate(&rate, 5, SL_NS_PER_MIN, 0, 0), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(k, sizeof(k), "key%d", i);
		check(&c, &rate, 1, k, 1);
		run(s, &c, 1, SL_OP_DECIDE, T0, NULL);
	}
	s->ops->stats(s, &st);
	assert_int_equal(st.states, 100);
	assert_int_equal(st.capacity, SIZE / 32);
	assert_int_equal(st.bytes, SIZE);
	assert_int_equal(st.evictions, 0);
	assert_int_equal(st.errors, 0);
	s->ops->destroy(s);
}

/* ---- a full store: eviction by loss, store.on_full ---- */

#define FLOOD_RPS    47000     /* one-hit client IPs a second (the flood) */
#define ABUSER_RPS   20        /* requests a second of each abuser */
#define FLOOD_SECS   20        /* simulated seconds */
#define FLOOD_BYTES  (1 << 20) /* store.memory: 1MB */
#define FLOOD_LIMITS 2

/* One decision of a single check at `now`; returns the status. */
static int decide1(struct sl_store *s, const struct sl_limit_spec *spec, uint64_t id,
                   const char *name, const char *key, int64_t now)
{
	struct sl_check c;
	check(&c, spec, id, key, 1);
	c.name = name;
	return run(s, &c, 1, SL_OP_DECIDE, now, NULL);
}

/* The flood, deterministic: FLOOD_RPS distinct one-hit IPs a
 * second, alternating between a route limited by `quota: 10/day` and one
 * limited by `rate: 10/hour` (so the table holds both kinds), and two
 * abusers at ABUSER_RPS, one on each route. Returns each abuser's admits
 * over FLOOD_SECS. The table churns ~40 times over. */
static void flood(struct sl_store *s, uint64_t admits[FLOOD_LIMITS])
{
	struct sl_limit_spec spec[FLOOD_LIMITS];
	const char *name[FLOOD_LIMITS] = {"daily", "hourly"};
	const int64_t step = SL_NS_PER_SEC / FLOOD_RPS;
	const long total = (long)FLOOD_RPS * FLOOD_SECS, every = FLOOD_RPS / ABUSER_RPS;
	char ip[32];

	assert_int_equal(sl_spec_quota(&spec[0], 10, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_rate(&spec[1], 10, SL_NS_PER_HOUR, 0, 0), 0);
	admits[0] = admits[1] = 0;
	for (long i = 0; i < total; i++) {
		int64_t now = T0 + i * step;
		int l = (int)(i & 1);
		snprintf(ip, sizeof(ip), "10.%ld.%ld.%ld", (i >> 16) & 255, (i >> 8) & 255,
		         i & 255);
		if (i >= 1 << 24)
			snprintf(ip, sizeof(ip), "11.%ld", i);
		decide1(s, &spec[l], (uint64_t)l + 1, name[l], ip, now);
		if (i % every == 0)
			for (int a = 0; a < FLOOD_LIMITS; a++)
				admits[a] += decide1(s, &spec[a], (uint64_t)a + 1, name[a],
				                     "203.0.113.66", now) == SL_OK;
	}
}

static void flood_of_new_keys_keeps_the_abusers_limits(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	uint64_t admits[FLOOD_LIMITS];

	assert_int_equal(sl_memory_store_create(&s, FLOOD_BYTES, SEED), 0);
	flood(s, admits);
	/* quota 10/day: 10 in the day. rate 10/hour, burst 10: 10 at once,
	 * then one per 360 s, none within 20 s. At most the limit + 1%. */
	assert_in_range(admits[0], 10, 10 * 101 / 100);
	assert_in_range(admits[1], 10, 10 * 101 / 100);
	s->ops->destroy(s);
}

static const struct sl_store_limit_stats *limit_named(const struct sl_store_stats *st,
                                                      const char *name)
{
	for (size_t i = 0; i < st->nlimits; i++)
		if (strcmp(st->limits[i].name, name) == 0)
			return &st->limits[i];
	return NULL;
}

static void flood_evictions_are_counted_per_limit(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	struct sl_store_stats st;
	uint64_t admits[FLOOD_LIMITS];

	assert_int_equal(sl_memory_store_create(&s, FLOOD_BYTES, SEED), 0);
	flood(s, admits);
	s->ops->stats(s, &st);
	const struct sl_store_limit_stats *d = limit_named(&st, "daily");
	const struct sl_store_limit_stats *h = limit_named(&st, "hourly");
	assert_non_null(d);
	assert_non_null(h);
	/* Every daily state holds a used unit: each eviction has usage. A
	 * one-hit hourly state (T = 360 s, read as 2^38 ns) holds < 1 unit
	 * after ~84 s, so within 20 s those evicted held usage too, but the
	 * store evicts daily and hourly states alike. */
	assert_true(d->evicted_usage > (uint64_t)FLOOD_RPS);
	assert_true(h->evicted_usage + h->evicted_idle > (uint64_t)FLOOD_RPS);
	assert_int_equal(st.evictions_usage + d->evicted_idle + h->evicted_idle, st.evictions);
	assert_int_equal(st.evictions_usage, d->evicted_usage + h->evicted_usage);
	assert_int_equal(st.full_denied + st.full_admitted, 0);
	assert_null(limit_named(&st, "other"));
	s->ops->destroy(s);
}

/* Fill a 64 KiB store (one shard, 1536 states at its bound) with n
 * distinct keys that each used 1 of `quota: 10/day` at T0, under mode;
 * returns how many were SL_OK, and the last denied batch in *denied. */
static int fill_quota(struct sl_store *s, const struct sl_limit_spec *q, int n,
                      struct sl_batch *denied, struct sl_check *dc)
{
	int ok = 0;
	char k[32];

	for (int i = 0; i < n; i++) {
		struct sl_batch b;
		snprintf(k, sizeof(k), "client-%d", i);
		check(dc, q, 7, k, 1);
		dc->name = "ip";
		if (run(s, dc, 1, SL_OP_DECIDE, T0, &b) == SL_OK)
			ok++;
		else if (denied)
			*denied = b;
	}
	return ok;
}

static void on_full_deny_new_rejects_new_keys_and_keeps_every_state(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	struct sl_store_stats st;
	struct sl_limit_spec q;
	struct sl_batch b = {0};
	struct sl_check c;
	int64_t start, end;

	assert_int_equal(sl_memory_store_create(&s, 64 * 1024, SEED), 0);
	assert_int_equal(sl_memory_store_set_on_full(s, SL_ON_FULL_DENY_NEW + 5), SL_EINVAL);
	assert_int_equal(sl_memory_store_set_on_full(s, SL_ON_FULL_DENY_NEW), 0);
	assert_int_equal(sl_spec_quota(&q, 10, SL_CAL_DAY, 0), 0);
	int ok = fill_quota(s, &q, 3000, &b, &c);
	s->ops->stats(s, &st);
	assert_true(ok >= 1536 && ok < 3000);
	assert_int_equal(st.evictions, 0); /* nothing that matters was lost */
	assert_int_equal(st.full_denied, (uint64_t)(3000 - ok));
	assert_int_equal(st.states, (uint64_t)ok);
	assert_int_equal(limit_named(&st, "ip")->full_denied, (uint64_t)(3000 - ok));
	/* What a denied client sees: rejected by its limit, nothing left,
	 * Retry-After = when the first candidate state's window ends. */
	sl_calendar_window(SL_CAL_DAY, 0, T0, &start, &end);
	assert_int_equal(b.status, SL_DENY);
	assert_int_equal(b.denied, 0);
	assert_int_equal(c.res.outcome, SL_REJECTED);
	assert_int_equal(c.res.remaining, 0);
	assert_int_equal(c.res.limit, 10);
	assert_int_equal(c.res.retry_after, end - T0);
	/* Every stored client still has its unit used. */
	check(&c, &q, 7, "client-0", 0);
	assert_int_equal(run(s, &c, 1, SL_OP_PEEK, T0, NULL), SL_OK);
	assert_int_equal(c.res.remaining, 9);
	/* A decision with a known key and a refused new one commits nothing. */
	struct sl_check two[2];
	check(&two[0], &q, 7, "client-0", 1);
	check(&two[1], &q, 7, "someone-new", 1);
	for (int i = 0; i < 200 && run(s, two, 2, SL_OP_DECIDE, T0, &b) == SL_OK; i++)
		two[1].key = i % 2 ? "someone-new" : "another-new"; /* until one is refused */
	assert_int_equal(b.status, SL_DENY);
	assert_int_equal(b.denied, 1);
	uint64_t left = two[0].res.remaining;
	check(&c, &q, 7, "client-0", 0);
	run(s, &c, 1, SL_OP_PEEK, T0, NULL);
	assert_int_equal(c.res.remaining, left);
	s->ops->destroy(s);
}

static void on_full_allow_new_admits_new_keys_unstored(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	struct sl_store_stats st;
	struct sl_limit_spec q;
	struct sl_check c;

	assert_int_equal(sl_memory_store_create(&s, 64 * 1024, SEED), 0);
	assert_int_equal(sl_memory_store_set_on_full(s, SL_ON_FULL_ALLOW_NEW), 0);
	assert_int_equal(sl_spec_quota(&q, 10, SL_CAL_DAY, 0), 0);
	assert_int_equal(fill_quota(s, &q, 3000, NULL, &c), 3000);
	s->ops->stats(s, &st);
	assert_int_equal(st.evictions, 0);
	assert_true(st.full_admitted > 0);
	assert_int_equal(st.states + st.full_admitted, 3000);
	assert_int_equal(limit_named(&st, "ip")->full_admitted, st.full_admitted);
	/* Fail open, as documented: an unstored key is never counted. */
	int passes = 0;
	for (int i = 0; i < 30; i++) {
		check(&c, &q, 7, "client-2999", 1);
		passes += run(s, &c, 1, SL_OP_DECIDE, T0, NULL) == SL_OK;
	}
	s->ops->stats(s, &st);
	assert_true(passes == 30 || passes == 10); /* unstored, or stored by luck */
	s->ops->destroy(s);
}

static void on_full_evict_evicts_the_least_loss(void **unused)
{
	(void)unused;
	struct sl_store *s = NULL;
	struct sl_store_stats st;
	struct sl_limit_spec q;
	struct sl_check c;

	assert_int_equal(sl_memory_store_create(&s, 64 * 1024, SEED), 0);
	assert_int_equal(sl_spec_quota(&q, 10, SL_CAL_DAY, 0), 0);
	/* One client at its limit, then a flood of one-hit ones. */
	for (int i = 0; i < 12; i++) {
		check(&c, &q, 7, "heavy", 1);
		c.name = "ip";
		run(s, &c, 1, SL_OP_DECIDE, T0, NULL);
	}
	assert_int_equal(fill_quota(s, &q, 20000, NULL, &c), 20000);
	check(&c, &q, 7, "heavy", 1);
	assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_DENY);
	s->ops->stats(s, &st);
	assert_true(st.evictions_usage >= 20000 - 1536);
	assert_int_equal(limit_named(&st, "ip")->evicted_usage, st.evictions_usage);
	s->ops->destroy(s);
}

/* The tag takes 16 bits of the 128-bit hash: (limit id, key) pairs stay
 * distinct, and the same pair under another spec (a reload that changed
 * the algorithm or period keeps the counter's id) is the same counter. */
static void tags_keep_counters_distinct_and_stable(void **unused)
{
	(void)unused;
	struct sl_store *s = mk(SEED);
	struct sl_store_stats st;
	struct sl_limit_spec q, r;
	struct sl_check c;
	char k[32];

	assert_int_equal(sl_spec_quota(&q, 1000, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_rate(&r, 1000, SL_NS_PER_MIN, 0, 0), 0);
	for (int i = 0; i < 20000; i++) {
		snprintf(k, sizeof(k), "%d", i);
		check(&c, &q, (uint64_t)(i % 4), k, 1);
		run(s, &c, 1, SL_OP_DECIDE, T0, NULL);
	}
	s->ops->stats(s, &st);
	assert_int_equal(st.states, 20000); /* 1 MiB holds them: no collision merged two */
	check(&c, &q, 1, "5", 0);
	run(s, &c, 1, SL_OP_PEEK, T0, NULL);
	assert_int_equal(c.res.remaining, 999);
	s->ops->destroy(s);
	(void)r;
}

/* ---- snapshot ---- */

static char snap[256];

static int setup_snap(void **unused)
{
	(void)unused;
	const char *dir = getenv("TMPDIR");
	snprintf(snap, sizeof(snap), "%s/sluice-test-memory-%d.snap", dir ? dir : "/tmp",
	         (int)getpid());
	return 0;
}

static int teardown_snap(void **unused)
{
	(void)unused;
	unlink(snap);
	return 0;
}

/* A store with 50 keys on a rate limit (live ~1 min) and 20 on an hourly
 * quota (live to the end of the hour). */
static struct sl_limit_spec snap_rate, snap_quota;

static struct sl_store *populated(void)
{
	struct sl_store *s = mk(SEED);
	struct sl_check c;
	char k[16];

	assert_int_equal(sl_spec_rate(&snap_rate, 10, SL_NS_PER_MIN, 0, 0), 0);
	assert_int_equal(sl_spec_quota(&snap_quota, 100, SL_CAL_HOUR, 0), 0);
	for (int i = 0; i < 50; i++) {
		snprintf(k, sizeof(k), "r%d", i);
		check(&c, &snap_rate, 1, k, (uint64_t)(i % 10) + 1);
		assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	}
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "q%d", i);
		check(&c, &snap_quota, 2, k, (uint64_t)i + 1);
		assert_int_equal(run(s, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	}
	return s;
}

static void snapshot_round_trip(void **unused)
{
	(void)unused;
	struct sl_store *a = populated(), *b = mk(SEED);
	struct sl_store_stats st;
	char k[16];

	assert_int_equal(sl_memory_store_save(a, snap, T0), 0);
	assert_int_equal(access(snap, R_OK), 0);
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	assert_int_not_equal(access(tmp, F_OK), 0);
	assert_int_equal(sl_memory_store_load(b, snap, T0), 0);
	b->ops->stats(b, &st);
	assert_int_equal(st.states, 70);
	for (int i = 0; i < 50; i++) {
		snprintf(k, sizeof(k), "r%d", i);
		assert_int_equal(remaining(b, &snap_rate, 1, k, T0), 10 - (i % 10 + 1));
	}
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "q%d", i);
		assert_int_equal(remaining(b, &snap_quota, 2, k, T0), 100 - (i + 1));
	}
	/* Loading two minutes later skips the rate states (expired) and keeps
	 * the quota states. */
	struct sl_store *c = mk(SEED);
	assert_int_equal(sl_memory_store_load(c, snap, T0 + 2 * SL_NS_PER_MIN), 0);
	c->ops->stats(c, &st);
	assert_int_equal(st.states, 20);
	assert_int_equal(remaining(c, &snap_quota, 2, "q3", T0 + 2 * SL_NS_PER_MIN), 96);
	/* Saving again over an existing file replaces it. */
	assert_int_equal(sl_memory_store_save(c, snap, T0 + 2 * SL_NS_PER_MIN), 0);
	struct sl_store *d = mk(SEED);
	assert_int_equal(sl_memory_store_load(d, snap, T0), 0);
	d->ops->stats(d, &st);
	assert_int_equal(st.states, 20);
	a->ops->destroy(a);
	b->ops->destroy(b);
	c->ops->destroy(c);
	d->ops->destroy(d);
}

static unsigned char *slurp(const char *path, long *len)
{
	FILE *f = fopen(path, "rb");
	assert_non_null(f);
	fseek(f, 0, SEEK_END);
	*len = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *p = malloc((size_t)*len);
	assert_non_null(p);
	assert_int_equal(fread(p, 1, (size_t)*len, f), (size_t)*len);
	fclose(f);
	return p;
}

static void spit(const char *path, const unsigned char *p, long len)
{
	FILE *f = fopen(path, "wb");
	assert_non_null(f);
	if (len > 0)
		assert_int_equal(fwrite(p, 1, (size_t)len, f), (size_t)len);
	fclose(f);
}

static uint64_t states_of(struct sl_store *s)
{
	struct sl_store_stats st;
	s->ops->stats(s, &st);
	return st.states;
}

/* Rewrite the saved file's version field and its trailer checksum. */
static void set_version(const char *path, uint32_t version)
{
	long len;
	unsigned char *p = slurp(path, &len);
	for (int i = 0; i < 4; i++)
		p[8 + i] = (unsigned char)(version >> (8 * i));
	uint64_t body = XXH3_64bits(p + 40, (size_t)(len - 48));
	uint64_t tail = XXH3_64bits_withSeed(p, 40, body);
	for (int i = 0; i < 8; i++)
		p[len - 8 + i] = (unsigned char)(tail >> (8 * i));
	spit(path, p, len);
	free(p);
}

/* Files written before eviction tags (version 1) still restore every
 * counter; a version from the future is refused. */
static void snapshot_version_1_still_restores(void **unused)
{
	(void)unused;
	struct sl_store *a = populated(), *b = mk(SEED), *c = mk(SEED);
	char k[16];

	assert_int_equal(sl_memory_store_save(a, snap, T0), 0);
	set_version(snap, 1);
	assert_int_equal(sl_memory_store_load(b, snap, T0), 0);
	assert_int_equal(states_of(b), 70);
	for (int i = 0; i < 20; i++) {
		snprintf(k, sizeof(k), "q%d", i);
		assert_int_equal(remaining(b, &snap_quota, 2, k, T0), 100 - (i + 1));
	}
	set_version(snap, 3);
	assert_int_equal(sl_memory_store_load(c, snap, T0), SL_EPROTO);
	assert_int_equal(states_of(c), 0);
	a->ops->destroy(a);
	b->ops->destroy(b);
	c->ops->destroy(c);
}

static void snapshot_rejects_damaged_files_restoring_nothing(void **unused)
{
	(void)unused;
	struct sl_store *a = populated(), *b = mk(SEED);
	long len;

	assert_int_equal(sl_memory_store_load(b, snap, T0), SL_ENOENT);
	assert_int_equal(sl_memory_store_save(a, snap, T0), 0);
	unsigned char *good = slurp(snap, &len);
	assert_int_equal(len, 40 + 70 * 32 + 8);

	/* Every truncation. */
	for (long n = 0; n < len; n++) {
		spit(snap, good, n);
		assert_int_equal(sl_memory_store_load(b, snap, T0), SL_EPROTO);
	}
	/* Every single flipped byte (header, entries, trailer). */
	unsigned char *bad = malloc((size_t)len);
	assert_non_null(bad);
	for (long i = 0; i < len; i++) {
		memcpy(bad, good, (size_t)len);
		bad[i] ^= 0x20;
		spit(snap, bad, len);
		assert_int_equal(sl_memory_store_load(b, snap, T0), SL_EPROTO);
	}
	/* Trailing garbage. */
	memcpy(bad, good, (size_t)len);
	spit(snap, good, len);
	FILE *f = fopen(snap, "ab");
	fputc('x', f);
	fclose(f);
	assert_int_equal(sl_memory_store_load(b, snap, T0), SL_EPROTO);
	assert_int_equal(states_of(b), 0);

	/* Intact, but another seed, into a store with states of its own: the
	 * two keyspaces cannot be merged. */
	spit(snap, good, len);
	struct sl_store *other = mk(SEED + 1);
	struct sl_check c;
	check(&c, &snap_rate, 9, "mine", 1);
	assert_int_equal(run(other, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	assert_int_equal(sl_memory_store_load(other, snap, T0), SL_EINVAL);
	assert_int_equal(states_of(other), 1);
	/* An empty store takes the file's seed over: a restart's random seed
	 * does not lose the snapshot, and the restored counts are found. */
	struct sl_store *fresh = mk(SEED + 2);
	assert_int_equal(sl_memory_store_load(fresh, snap, T0), 0);
	assert_int_equal(states_of(fresh), 70);
	assert_int_equal(remaining(fresh, &snap_rate, 1, "r3", T0), 10 - 4);
	fresh->ops->destroy(fresh);
	/* And the intact file still loads. */
	assert_int_equal(sl_memory_store_load(b, snap, T0), 0);
	assert_int_equal(states_of(b), 70);

	free(bad);
	free(good);
	other->ops->destroy(other);
	a->ops->destroy(a);
	b->ops->destroy(b);
}

static void snapshot_save_failures_leave_no_file(void **unused)
{
	(void)unused;
	struct sl_store *a = populated();
	char big[5000];

	assert_int_equal(sl_memory_store_save(a, "/nonexistent-dir/x/state.snap", T0), SL_EIO);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	assert_int_equal(sl_memory_store_save(a, big, T0), SL_EINVAL);
	/* A stale temp file of an interrupted save is replaced. */
	char tmp[512];
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	spit(tmp, (const unsigned char *)"junk", 4);
	assert_int_equal(sl_memory_store_save(a, snap, T0), 0);
	assert_int_not_equal(access(tmp, F_OK), 0);
	/* A directory where the file should go: rename fails, temp removed. */
	unlink(snap);
	char dirpath[300];
	snprintf(dirpath, sizeof(dirpath), "%s.d", snap);
	assert_int_equal(mkdir(dirpath, 0700), 0);
	char inner[400];
	snprintf(inner, sizeof(inner), "%s/sub", dirpath);
	assert_int_equal(mkdir(inner, 0700), 0);
	assert_int_equal(sl_memory_store_save(a, inner, T0), SL_EIO);
	snprintf(tmp, sizeof(tmp), "%s.tmp", inner);
	assert_int_not_equal(access(tmp, F_OK), 0);
	rmdir(inner);
	rmdir(dirpath);
	a->ops->destroy(a);
}

static int setup_open(void **unused)
{
	setup_snap(unused);
	char p[300];
	for (int i = 0; i < 4; i++) {
		snprintf(p, sizeof(p), i ? "%s.corrupt.%d" : "%s.corrupt", snap, i);
		unlink(p);
	}
	return 0;
}

static int teardown_open(void **unused)
{
	setup_open(unused);
	return teardown_snap(unused);
}

static struct sl_store *opened(uint64_t seed, const char *path)
{
	struct sl_store *s = NULL;
	assert_int_equal(sl_memory_store_open(&s, SIZE, seed, path), 0);
	return s;
}

static int same_file(const char *path, const unsigned char *p, long len)
{
	long n;
	unsigned char *q = slurp(path, &n);
	int same = n == len && memcmp(p, q, (size_t)len) == 0;
	free(q);
	return same;
}

/* The store saves to the path it was opened with (its own), whatever else
 * happens; without a path, or not being a memory store, nothing to save. */
static void store_saves_to_its_own_path(void **unused)
{
	(void)unused;
	struct sl_store *a = opened(SEED, snap), *plain = populated();
	char k[16];

	assert_string_equal(sl_memory_store_path(a), snap);
	assert_null(sl_memory_store_path(plain));
	struct sl_check c;
	for (int i = 0; i < 3; i++) {
		snprintf(k, sizeof(k), "q%d", i);
		check(&c, &snap_quota, 2, k, 5);
		assert_int_equal(run(a, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	}
	assert_int_equal(sl_store_save(plain, T0), 0); /* no path: no file */
	assert_int_not_equal(access(snap, F_OK), 0);
	assert_int_equal(sl_store_save(a, T0), 0);
	struct sl_store *b = opened(SEED + 9, snap);
	char aside[512];
	assert_int_equal(sl_memory_store_restore(b, T0, aside, sizeof(aside)), 0);
	assert_string_equal(aside, "");
	assert_int_equal(states_of(b), 3);
	assert_int_equal(remaining(b, &snap_quota, 2, "q1", T0), 95);
	/* restore without a file, without a path */
	unlink(snap);
	struct sl_store *e = opened(SEED, snap);
	assert_int_equal(sl_memory_store_restore(e, T0, aside, sizeof(aside)), SL_ENOENT);
	assert_int_equal(sl_memory_store_restore(plain, T0, aside, sizeof(aside)), SL_ENOENT);
	a->ops->destroy(a);
	b->ops->destroy(b);
	e->ops->destroy(e);
	plain->ops->destroy(plain);
}

/* A damaged file is renamed aside, the first free of PATH.corrupt,
 * PATH.corrupt.1, ..., never over an existing file; the store stays empty
 * and the next save writes PATH afresh. */
static void restore_keeps_damaged_files_aside_never_overwriting(void **unused)
{
	(void)unused;
	struct sl_store *a = populated();
	char aside[512], want[512];
	long len;

	assert_int_equal(sl_memory_store_save(a, snap, T0), 0);
	unsigned char *good = slurp(snap, &len);
	unsigned char *flip = malloc((size_t)len);
	assert_non_null(flip);
	memcpy(flip, good, (size_t)len);
	flip[100] ^= 1;
	const struct {
		const unsigned char *bytes;
		long len;
		int rc;
	} bad[] = {
	        {good, len / 2, SL_EPROTO},                             /* truncated */
	        {flip, len, SL_EPROTO},                                 /* checksum */
	        {(const unsigned char *)"NOTASNAPSHOT", 12, SL_EPROTO}, /* magic */
	};
	for (int i = 0; i < 3; i++) {
		spit(snap, bad[i].bytes, bad[i].len);
		struct sl_store *s = opened(SEED, snap);
		assert_int_equal(sl_memory_store_restore(s, T0, aside, sizeof(aside)), bad[i].rc);
		snprintf(want, sizeof(want), i ? "%s.corrupt.%d" : "%s.corrupt", snap, i);
		assert_string_equal(aside, want);
		assert_int_not_equal(access(snap, F_OK), 0); /* moved, not copied */
		assert_true(same_file(want, bad[i].bytes, bad[i].len));
		assert_int_equal(states_of(s), 0);
		/* the next save makes a new PATH and leaves every kept file */
		assert_int_equal(sl_store_save(s, T0), 0);
		for (int j = 0; j <= i; j++) {
			snprintf(want, sizeof(want), j ? "%s.corrupt.%d" : "%s.corrupt", snap, j);
			assert_true(same_file(want, bad[j].bytes, bad[j].len));
		}
		s->ops->destroy(s);
	}
	/* Another seed, into a store that holds states: kept aside too. */
	spit(snap, good, len);
	struct sl_store *other = opened(SEED + 1, snap);
	struct sl_check c;
	check(&c, &snap_rate, 9, "mine", 1);
	assert_int_equal(run(other, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	assert_int_equal(sl_memory_store_restore(other, T0, aside, sizeof(aside)), SL_EINVAL);
	snprintf(want, sizeof(want), "%s.corrupt.3", snap);
	assert_string_equal(aside, want);
	assert_true(same_file(want, good, len));
	assert_int_equal(states_of(other), 1);
	other->ops->destroy(other);
	/* When it cannot be moved (here: no room for the new name), aside is
	 * empty and the file is where it was. */
	spit(snap, good, len / 2);
	struct sl_store *s = opened(SEED, snap);
	assert_int_equal(sl_memory_store_restore(s, T0, aside, strlen(snap) + 4), SL_EPROTO);
	assert_string_equal(aside, "");
	assert_true(same_file(snap, good, len / 2));
	s->ops->destroy(s);
	/* Not a regular file: SL_EIO (not damage: nothing is moved). */
	unlink(snap);
	assert_int_equal(mkdir(snap, 0700), 0);
	s = opened(SEED, snap);
	assert_int_equal(sl_memory_store_restore(s, T0, aside, sizeof(aside)), SL_EIO);
	assert_int_equal(errno, EISDIR);
	assert_string_equal(aside, "");
	rmdir(snap);
	s->ops->destroy(s);
	free(flip);
	free(good);
	a->ops->destroy(a);
}

/* Failed saves say why through errno and leave the previous file intact:
 * a parent that is a regular file (fails for root too), a missing
 * directory, and a full disk (RLIMIT_FSIZE makes writes fail as ENOSPC
 * would, EFBIG). */
static void failed_saves_return_eio_with_errno_and_keep_the_old_file(void **unused)
{
	(void)unused;
	struct sl_store *a = populated();
	char path[400], tmp[420];
	long len;

	snprintf(path, sizeof(path), "%s/state.snap", snap); /* snap is a file */
	spit(snap, (const unsigned char *)"x", 1);
	errno = 0;
	assert_int_equal(sl_memory_store_save(a, path, T0), SL_EIO);
	assert_int_equal(errno, ENOTDIR);
	unlink(snap);
	errno = 0;
	assert_int_equal(sl_memory_store_save(a, path, T0), SL_EIO);
	assert_int_equal(errno, ENOENT);
	/* A file that does not fit: the old snapshot stays, no temp file. The
	 * store of 200 states needs 6448 bytes, over a 4096-byte file limit
	 * (soft only, so it can be put back), the old one of 1 state fits. */
	struct sl_store *small = opened(SEED, snap), *big = mk(SEED);
	struct sl_check c;
	char k[16];
	check(&c, &snap_quota, 2, "q0", 1);
	assert_int_equal(run(small, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	for (int i = 0; i < 200; i++) {
		snprintf(k, sizeof(k), "b%d", i);
		check(&c, &snap_quota, 2, k, 1);
		assert_int_equal(run(big, &c, 1, SL_OP_DECIDE, T0, NULL), SL_OK);
	}
	assert_int_equal(sl_store_save(small, T0), 0);
	unsigned char *old = slurp(snap, &len);
	struct rlimit was, lim;
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &was), 0);
	lim.rlim_cur = 4096; /* bytes */
	lim.rlim_max = was.rlim_max;
	void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	int rc_small = sl_store_save(small, T0);
	errno = 0;
	int rc_big = sl_memory_store_save(big, snap, T0);
	int err = errno;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &was), 0);
	signal(SIGXFSZ, prev);
	assert_int_equal(rc_small, 0);
	assert_int_equal(rc_big, SL_EIO);
	assert_int_equal(err, EFBIG);
	assert_true(same_file(snap, old, len));
	snprintf(tmp, sizeof(tmp), "%s.tmp", snap);
	assert_int_not_equal(access(tmp, F_OK), 0);
	free(old);
	big->ops->destroy(big);
	small->ops->destroy(small);
	a->ops->destroy(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(decide_counts_down_then_denies),
	        cmocka_unit_test(decide_is_all_or_nothing_across_three_limits),
	        cmocka_unit_test(queue_delay_is_reported),
	        cmocka_unit_test(release_gives_back_concurrency_slots),
	        cmocka_unit_test(peek_consumes_nothing),
	        cmocka_unit_test(limit_id_and_every_key_byte_matter),
	        cmocka_unit_test(bad_batches_are_refused_up_front),
	        cmocka_unit_test(create_and_stats),
	        cmocka_unit_test(flood_of_new_keys_keeps_the_abusers_limits),
	        cmocka_unit_test(flood_evictions_are_counted_per_limit),
	        cmocka_unit_test(on_full_deny_new_rejects_new_keys_and_keeps_every_state),
	        cmocka_unit_test(on_full_allow_new_admits_new_keys_unstored),
	        cmocka_unit_test(on_full_evict_evicts_the_least_loss),
	        cmocka_unit_test(tags_keep_counters_distinct_and_stable),
	        cmocka_unit_test_setup_teardown(snapshot_round_trip, setup_snap, teardown_snap),
	        cmocka_unit_test_setup_teardown(snapshot_version_1_still_restores, setup_snap,
	                                        teardown_snap),
	        cmocka_unit_test_setup_teardown(snapshot_rejects_damaged_files_restoring_nothing,
	                                        setup_snap, teardown_snap),
	        cmocka_unit_test_setup_teardown(snapshot_save_failures_leave_no_file, setup_snap,
	                                        teardown_snap),
	        cmocka_unit_test_setup_teardown(store_saves_to_its_own_path, setup_open,
	                                        teardown_open),
	        cmocka_unit_test_setup_teardown(restore_keeps_damaged_files_aside_never_overwriting,
	                                        setup_open, teardown_open),
	        cmocka_unit_test_setup_teardown(
	                failed_saves_return_eio_with_errno_and_keep_the_old_file, setup_open,
	                teardown_open),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
