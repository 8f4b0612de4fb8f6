/* The sharded state table: claim and lookup, full 128-bit key compare,
 * in-place reuse of expired states, eviction when a shard is at its load
 * bound (expired first, then the state expiring soonest), fixed capacity,
 * duplicate keys in one update, foreach, and the chunked scan under which a
 * snapshot never holds a shard lock for more than one bounded copy. Time is
 * injected; nothing sleeps.
 * Most cases use one shard of 2048 slots (64 KiB) so tests can place keys
 * on chosen home slots: home = (lo * cap) >> 64, i.e. lo = home << 53.
 * Eviction by loss: the low 16 bits of lo are the eviction tag (class,
 * scale, limit index), not identity; at() leaves them 0 (opaque: one unit
 * while live), tagged() sets them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include <sluice/table.h>

#define CAP     2048 /* slots of a 64 KiB one-shard table */
#define MAXUSED 1536 /* 3/4 of CAP */
#define NOW     1000000

static struct sl_key128 at(uint64_t home, uint64_t tag)
{
	struct sl_key128 k = {(home << 53) | ((tag << 16) & ((1ULL << 53) - 1)), tag};
	return k;
}

/* at() with the eviction tag of class `cls`, scale `e` and limit `idx`. */
static struct sl_key128 tagged(uint64_t home, uint64_t id, unsigned cls, unsigned e, unsigned idx)
{
	return sl_key_tagged(at(home, id), (uint16_t)(cls | e << 2 | idx << 8));
}

static struct sl_table *mk(void)
{
	struct sl_table *t = NULL;
	assert_int_equal(sl_table_create(&t, 64 * 1024, 0), 0);
	assert_non_null(t);
	return t;
}

/* Callback: record the pointers and what they read, then store `set`. */
struct rec {
	struct sl_state *ptr[SL_TABLE_MAX_KEYS];
	struct sl_state seen[SL_TABLE_MAX_KEYS];
	struct sl_state set;
	int write;
	size_t calls;
};

static void rec_fn(struct sl_state **st, size_t n, void *arg)
{
	struct rec *r = arg;
	r->calls++;
	for (size_t i = 0; i < n; i++) {
		r->ptr[i] = st[i];
		r->seen[i] = *st[i];
		if (r->write)
			*st[i] = r->set;
	}
}

static void put(struct sl_table *t, struct sl_key128 k, int64_t now, int64_t expires, uint64_t v)
{
	struct rec r = {.set = {expires, v}, .write = 1};
	assert_int_equal(sl_table_update(t, &k, 1, now, rec_fn, &r), 0);
	assert_int_equal(r.calls, 1);
}

static struct sl_state peek_fresh(struct sl_table *t, struct sl_key128 k, int64_t now)
{
	struct rec r = {0};
	assert_int_equal(sl_table_update(t, &k, 1, now, rec_fn, &r), 0);
	return r.seen[0];
}

static void stats(struct sl_table *t, struct sl_table_stats *s)
{
	sl_table_stats(t, s);
}

static void claim_then_lookup(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 a = at(7, 1);
	struct sl_state st;

	assert_int_equal(sl_table_get(t, a, NOW, &st), SL_ENOENT);
	struct sl_state fresh = peek_fresh(t, a, NOW);
	assert_int_equal(fresh.expires, 0);
	assert_int_equal(fresh.v, 0);
	put(t, a, NOW, NOW + 100, 7);
	assert_int_equal(sl_table_get(t, a, NOW, &st), 0);
	assert_int_equal(st.expires, NOW + 100);
	assert_int_equal(st.v, 7);
	struct sl_state again = peek_fresh(t, a, NOW + 1);
	assert_int_equal(again.v, 7);

	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 1);
	assert_int_equal(s.capacity, CAP);
	assert_int_equal(s.bytes, CAP * 32);
	assert_int_equal(s.evictions, 0);
	sl_table_destroy(t);
}

static void keys_sharing_low_64_bits_are_distinct(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 a = {0x1234, 1}, b = {0x1234, 2}, c = {0x1234, 0};
	struct sl_state st;

	put(t, a, NOW, NOW + 100, 1);
	put(t, b, NOW, NOW + 100, 2);
	assert_int_equal(sl_table_get(t, c, NOW, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, a, NOW, &st), 0);
	assert_int_equal(st.v, 1);
	assert_int_equal(sl_table_get(t, b, NOW, &st), 0);
	assert_int_equal(st.v, 2);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 2);
	sl_table_destroy(t);
}

static void zero_key_is_an_ordinary_key(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 z = {0, 0};
	struct sl_state st;

	assert_int_equal(sl_table_get(t, z, NOW, &st), SL_ENOENT);
	put(t, z, NOW, NOW + 5, 42);
	assert_int_equal(sl_table_get(t, z, NOW, &st), 0);
	assert_int_equal(st.v, 42);
	assert_int_equal(sl_table_get(t, at(0, 0x99), NOW, &st), SL_ENOENT);
	sl_table_destroy(t);
}

static void expired_state_reads_fresh_and_is_reused_in_place(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 a = at(100, 1), b = at(100, 2);
	struct sl_state st;

	put(t, a, NOW, NOW + 10, 3);
	assert_int_equal(sl_table_get(t, a, NOW + 9, &st), 0);
	/* expires <= now: gone for get, fresh for update */
	assert_int_equal(sl_table_get(t, a, NOW + 10, &st), SL_ENOENT);
	struct sl_state f = peek_fresh(t, a, NOW + 10);
	assert_int_equal(f.expires, 0);
	assert_int_equal(f.v, 0);

	/* Another key on the same chain takes the dead slot: no new slot used,
	 * no eviction counted. */
	put(t, a, NOW + 10, NOW + 20, 4);
	struct rec r = {.set = {NOW + 100, 9}, .write = 1};
	assert_int_equal(sl_table_update(t, &b, 1, NOW + 20, rec_fn, &r), 0);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 1);
	assert_int_equal(s.evictions, 0);
	assert_int_equal(sl_table_get(t, a, NOW + 20, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, b, NOW + 20, &st), 0);
	assert_int_equal(st.v, 9);
	sl_table_destroy(t);
}

/* Occupy homes 0 .. MAXUSED-1 with one key each, expiring at base + home. */
static void fill(struct sl_table *t, int64_t base)
{
	for (uint64_t h = 0; h < MAXUSED; h++)
		put(t, at(h, 1), NOW, base + (int64_t)h, h);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	assert_int_equal(s.evictions, 0);
}

static void full_shard_evicts_soonest_expiring_in_window(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;
	struct sl_table_stats s;

	fill(t, NOW + 1000);
	put(t, at(5, 1), NOW, NOW + 500, 5); /* soonest in slots 10..17 is 10 */
	put(t, at(12, 1), NOW, NOW + 600, 12);
	/* New key homed at 10: chain 10..(no empty within the probe bound):
	 * the victim is the soonest expiring of the first 8 slots, home 12. */
	put(t, at(10, 2), NOW, NOW + 5000, 77);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(sl_table_get(t, at(12, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, at(10, 2), NOW, &st), 0);
	assert_int_equal(st.v, 77);
	assert_int_equal(sl_table_get(t, at(5, 1), NOW, &st), 0);
	/* The soonest-expiring slot outside the first 8 of the chain is safe. */
	put(t, at(40, 1), NOW, NOW + 1, 40);
	put(t, at(20, 2), NOW, NOW + 5000, 78);
	assert_int_equal(sl_table_get(t, at(40, 1), NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(20, 1), NOW, &st), SL_ENOENT);
	stats(t, &s);
	assert_int_equal(s.evictions, 2);
	sl_table_destroy(t);
}

static void full_shard_reuses_expired_slot_before_evicting(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;
	struct sl_table_stats s;

	fill(t, NOW + 1000);
	put(t, at(50, 1), NOW, NOW + 2, 50); /* dies at NOW+2, far down the chain */
	put(t, at(30, 2), NOW + 2, NOW + 5000, 1);
	stats(t, &s);
	assert_int_equal(s.evictions, 0); /* a dead state is not an eviction */
	assert_int_equal(s.used, MAXUSED);
	assert_int_equal(sl_table_get(t, at(30, 2), NOW + 2, &st), 0);
	for (uint64_t h = 30; h < 38; h++)
		assert_int_equal(sl_table_get(t, at(h, 1), NOW + 2, &st), 0);
	sl_table_destroy(t);
}

static void full_shard_with_empty_home_drops_a_run_tail(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;
	struct sl_table_stats s;

	fill(t, NOW + 1000);
	/* Home MAXUSED is empty; slot MAXUSED-1 ends the run before it and is
	 * the only run tail in reach. Holding usage, it is kept: one candidate
	 * is too few to judge by, and the shard overshoots by one slot. */
	put(t, at(MAXUSED + 30, 2), NOW, NOW + 5000, 1);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED + 1);
	assert_int_equal(s.evictions, 0);
	assert_int_equal(sl_table_get(t, at(MAXUSED - 1, 1), NOW, &st), 0);
	/* Without usage (nothing used in its window), it is emptied, and the
	 * next eviction in place pays the overshoot back. */
	put(t, tagged(MAXUSED - 1, 1, SL_TAG_COUNT, 0, 0), NOW, NOW + 1000, 0);
	put(t, at(MAXUSED, 2), NOW, NOW + 5000, 1);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED + 1);
	assert_int_equal(s.evictions, 1);
	/* Evicts home 1530 in place (soonest of its path). The three tails
	 * near it (1534, MAXUSED, MAXUSED + 30) hold usage and are too few to
	 * pay the overshoot back with: it stays, within its cap. */
	put(t, at(1530, 2), NOW, NOW + 5000, 1);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED + 1);
	assert_int_equal(s.evictions, 2);
	assert_int_equal(sl_table_get(t, at(MAXUSED + 30, 2), NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(1530, 2), NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(1530, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, at(1534, 1), NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(MAXUSED - 1, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, at(MAXUSED, 2), NOW, &st), 0);
	/* Every other key still reachable (nothing else moved). */
	for (uint64_t h = 0; h < MAXUSED - 1; h++)
		if (h != 1530)
			assert_int_equal(sl_table_get(t, at(h, 1), NOW, &st), 0);
	sl_table_destroy(t);
}

/* xorshift64*: deterministic keys for the bound tests. */
static uint64_t rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1DULL;
}

static void never_grows_past_capacity_and_loses_no_key(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_table_stats s;
	struct sl_state st;
	enum { N = 40000 };
	uint64_t x = 88172645463325252ULL;

	for (int i = 0; i < N; i++) {
		struct sl_key128 k = {rnd(&x), rnd(&x)};
		put(t, k, NOW, NOW + 1000 + (int64_t)(rnd(&x) % 100000), (uint64_t)i);
	}
	stats(t, &s);
	assert_true(s.used <= s.capacity);
	assert_true(s.used <= MAXUSED + MAXUSED / 100); /* soft bound holds */
	assert_true(s.used >= MAXUSED - MAXUSED / 100);
	/* All states are live and distinct: each insert used a slot or evicted. */
	assert_int_equal(s.used + s.evictions, N);
	/* Exactly `used` keys are still found, each with its own value. */
	x = 88172645463325252ULL;
	uint64_t found = 0;
	for (int i = 0; i < N; i++) {
		struct sl_key128 k = {rnd(&x), rnd(&x)};
		(void)rnd(&x);
		if (sl_table_get(t, k, NOW, &st) == 0) {
			assert_int_equal(st.v, (uint64_t)i);
			found++;
		}
	}
	assert_int_equal(found, s.used);
	sl_table_destroy(t);
}

static void duplicate_keys_share_one_state(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 k[3] = {at(1, 1), at(2, 1), at(1, 1)};
	struct rec r = {0};

	assert_int_equal(sl_table_update(t, k, 3, NOW, rec_fn, &r), 0);
	assert_ptr_equal(r.ptr[0], r.ptr[2]);
	assert_ptr_not_equal(r.ptr[0], r.ptr[1]);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 2);
	sl_table_destroy(t);
}

static void incr_fn(struct sl_state **st, size_t n, void *arg)
{
	int64_t *exp = arg;
	for (size_t i = 0; i < n; i++) {
		st[i]->expires = *exp;
		st[i]->v++;
	}
}

static void keys_of_one_update_never_evict_each_other(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 k[SL_TABLE_MAX_KEYS];
	struct rec r = {0};
	struct sl_state st;

	fill(t, NOW + 1000);
	/* 32 new keys on one full chain: every one needs a victim, and the
	 * victims must not be slots given to earlier keys of the same call
	 * (a just-claimed slot reads as expired). */
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++)
		k[i] = at(3, 100 + i);
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS, NOW, rec_fn, &r), 0);
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++)
		for (unsigned j = i + 1; j < SL_TABLE_MAX_KEYS; j++)
			assert_ptr_not_equal(r.ptr[i], r.ptr[j]);
	int64_t exp = NOW + 9000;
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS, NOW, incr_fn, &exp), 0);
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++) {
		assert_int_equal(sl_table_get(t, k[i], NOW, &st), 0);
		assert_int_equal(st.v, 1);
	}
	/* Same when the chain is empty (home slot free) at the load bound. */
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++)
		k[i] = at(MAXUSED + 100, 500 + i);
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS, NOW, incr_fn, &exp), 0);
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++) {
		assert_int_equal(sl_table_get(t, k[i], NOW, &st), 0);
		assert_int_equal(st.v, 1);
	}
	sl_table_destroy(t);
}

struct each {
	uint64_t n, sum;
};

static void each_fn(struct sl_key128 key, const struct sl_state *st, void *arg)
{
	struct each *e = arg;
	assert_int_equal(key.hi, 1);
	e->n++;
	e->sum += st->v;
}

static void foreach_visits_live_states_only(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct each e = {0};

	for (uint64_t i = 0; i < 10; i++)
		put(t, at(i * 100, 1), NOW, NOW + 50, i + 1);
	put(t, at(5, 1), NOW, NOW + 10, 1000); /* expires before the walk */
	put(t, at(6, 1), NOW, 0, 2000);        /* never committed anything */
	sl_table_foreach(t, NOW + 10, each_fn, &e);
	assert_int_equal(e.n, 10);
	assert_int_equal(e.sum, 55);
	sl_table_destroy(t);
}

static int cmp_key(const void *a, const void *b)
{
	const struct sl_key128 *x = a, *y = b;
	if (x->hi != y->hi)
		return x->hi < y->hi ? -1 : 1;
	return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Every live state exactly once, expired ones never; each call covers at
 * most `slots` slots of one shard (the cursor says which), SL_AGAIN until
 * the last chunk. */
static void scan_copies_each_live_state_once_in_bounded_chunks(void **unused)
{
	(void)unused;
	enum { LIVE = 700, DEAD = 60, SLOTS = 1000, SHARD_CAP = (1 << 20) / 32 / 4 };
	struct sl_table *t = NULL;
	struct sl_key128 want[LIVE], got[LIVE + 1];
	struct sl_table_entry out[SLOTS];
	struct sl_table_cursor c = {0, 0};
	uint64_t x = 777, ngot = 0, calls = 0;
	size_t n;
	int rc;

	assert_int_equal(sl_table_create(&t, 1 << 20, 2), 0);
	for (unsigned i = 0; i < LIVE; i++) {
		want[i] = (struct sl_key128){rnd(&x), rnd(&x)};
		put(t, want[i], NOW, NOW + 100, i + 1);
	}
	for (unsigned i = 0; i < DEAD; i++)
		put(t, (struct sl_key128){rnd(&x), rnd(&x)}, NOW, NOW + 5, 1);
	do {
		struct sl_table_cursor before = c;
		rc = sl_table_scan(t, &c, NOW + 10, out, SLOTS, &n);
		calls++;
		assert_true(n <= SLOTS);
		if (c.shard == before.shard) { /* a chunk inside the shard */
			assert_int_equal(rc, SL_AGAIN);
			assert_int_equal(c.slot, before.slot + SLOTS);
		} else { /* the shard's last chunk: never into the next shard */
			assert_int_equal(c.shard, before.shard + 1);
			assert_int_equal(c.slot, 0);
			assert_true(SHARD_CAP - before.slot <= SLOTS);
			assert_int_equal(rc, c.shard < 4 ? SL_AGAIN : 0);
		}
		for (size_t i = 0; i < n; i++) {
			assert_true(ngot < LIVE);
			assert_int_equal(out[i].st.expires, NOW + 100);
			got[ngot++] = out[i].key;
		}
	} while (rc == SL_AGAIN);
	assert_int_equal(calls, 4 * ((SHARD_CAP + SLOTS - 1) / SLOTS));
	assert_int_equal(ngot, LIVE);
	qsort(want, LIVE, sizeof(want[0]), cmp_key);
	qsort(got, LIVE, sizeof(got[0]), cmp_key);
	assert_memory_equal(want, got, sizeof(want));
	/* Over: further calls copy nothing; a zero chunk is refused. */
	assert_int_equal(sl_table_scan(t, &c, NOW, out, SLOTS, &n), 0);
	assert_int_equal(n, 0);
	c = (struct sl_table_cursor){0, 0};
	assert_int_equal(sl_table_scan(t, &c, NOW, out, 0, &n), SL_EINVAL);
	sl_table_destroy(t);
}

/* The lock is released between chunks: a state written after its chunk
 * was copied is not in the walk, one written before is, and updates run
 * between two calls. */
static void scan_sees_each_chunk_as_it_was_when_copied(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_table_entry out[CAP / 2];
	struct sl_table_cursor c = {0, 0};
	size_t n;

	put(t, at(10, 1), NOW, NOW + 50, 1);
	put(t, at(1500, 2), NOW, NOW + 50, 2);
	assert_int_equal(sl_table_scan(t, &c, NOW, out, CAP / 2, &n), SL_AGAIN);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].st.v, 1);
	put(t, at(10, 1), NOW, NOW + 50, 11);   /* copied already */
	put(t, at(1500, 2), NOW, NOW + 50, 22); /* not yet */
	assert_int_equal(sl_table_scan(t, &c, NOW, out, CAP / 2, &n), 0);
	assert_int_equal(n, 1);
	assert_int_equal(out[0].key.hi, 2);
	assert_int_equal(out[0].st.v, 22);
	sl_table_destroy(t);
}

static void watchdog(int sig)
{
	(void)sig;
	static const char msg[] = "deadlock: a table lock is held across a callback\n";
	if (write(2, msg, sizeof(msg) - 1) < 0)
		_exit(2);
	_exit(1);
}

struct reenter {
	struct sl_table *t;
	uint64_t n;
};

static void reenter_fn(struct sl_key128 key, const struct sl_state *st, void *arg)
{
	struct reenter *r = arg;
	struct sl_state got;
	(void)st;
	/* the same (only) shard: would spin forever if foreach held its lock */
	assert_int_equal(sl_table_get(r->t, key, NOW, &got), 0);
	put(r->t, at(2000, 100 + r->n), NOW, NOW + 50, 1);
	r->n++;
}

/* A snapshot writes with no lock held: foreach's callback may call into
 * the table, even on the shard being walked. (A watchdog turns the
 * deadlock this was into a failure.) */
static void foreach_runs_the_callback_with_no_lock_held(void **unused)
{
	(void)unused;
	struct reenter r = {mk(), 0};

	for (uint64_t i = 0; i < 5; i++)
		put(r.t, at(i * 300, 1), NOW, NOW + 50, i);
	signal(SIGALRM, watchdog);
	alarm(20);
	sl_table_foreach(r.t, NOW, reenter_fn, &r);
	alarm(0);
	signal(SIGALRM, SIG_DFL);
	assert_true(r.n >= 5);
	sl_table_destroy(r.t);
}

static void create_refuses_bad_sizes(void **unused)
{
	(void)unused;
	struct sl_table *t = (struct sl_table *)1;
	assert_int_equal(sl_table_create(&t, 64 * 1024 - 1, 0), SL_EINVAL);
	assert_null(t);
	/* 64 KiB over 1024 shards leaves 2 slots a shard */
	assert_int_equal(sl_table_create(&t, 64 * 1024, 10), SL_EINVAL);
	assert_int_equal(sl_table_create(&t, 1ULL << 30, 40), SL_EINVAL);
	/* An address space reservation that cannot succeed. */
	assert_int_equal(sl_table_create(&t, 1ULL << 62, 0), SL_ENOMEM);
	assert_null(t);
}

static void update_refuses_too_many_keys(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 k[SL_TABLE_MAX_KEYS + 1];
	struct rec r = {0};
	for (unsigned i = 0; i <= SL_TABLE_MAX_KEYS; i++)
		k[i] = at(i, 1);
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS + 1, NOW, rec_fn, &r), SL_EINVAL);
	assert_int_equal(r.calls, 0);
	sl_table_destroy(t);
}

static void many_shards_one_update(void **unused)
{
	(void)unused;
	struct sl_table *t = NULL;
	struct sl_key128 k[SL_TABLE_MAX_KEYS];
	struct sl_table_stats s;
	struct sl_state st;
	uint64_t x = 12345;

	assert_int_equal(sl_table_create(&t, 1 << 20, 4), 0);
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++) {
		k[i].lo = rnd(&x);
		k[i].hi = rnd(&x);
	}
	k[7] = k[20]; /* a duplicate across the batch */
	int64_t exp = NOW + 100;
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS, NOW, incr_fn, &exp), 0);
	assert_int_equal(sl_table_update(t, k, SL_TABLE_MAX_KEYS, NOW, incr_fn, &exp), 0);
	for (unsigned i = 0; i < SL_TABLE_MAX_KEYS; i++) {
		assert_int_equal(sl_table_get(t, k[i], NOW, &st), 0);
		assert_int_equal(st.v, i == 7 || i == 20 ? 4 : 2);
	}
	sl_table_stats(t, &s);
	assert_int_equal(s.capacity, 16 * ((1 << 20) / 32 / 16));
	assert_int_equal(s.used, SL_TABLE_MAX_KEYS - 1);
	sl_table_destroy(t);
}

/* ---- eviction by loss, tags, admission control ---- */

/* Occupy homes 0 .. MAXUSED-1 with keys of class cls/scale e/limit idx,
 * expiring at base + home, each holding v. */
static void fill_tagged(struct sl_table *t, unsigned cls, unsigned e, unsigned idx, int64_t base,
                        uint64_t v)
{
	for (uint64_t h = 0; h < MAXUSED; h++)
		put(t, tagged(h, 1, cls, e, idx), NOW, base + (int64_t)h, v);
}

static struct sl_table_limit_stats limit_stats(struct sl_table *t, unsigned idx)
{
	struct sl_table_limit_stats ls;
	sl_table_limit_stats(t, idx, &ls);
	return ls;
}

static void full_shard_evicts_least_loss_not_soonest(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;

	/* Quotas that used 1 unit, and one at its limit (10) expiring first. */
	fill_tagged(t, SL_TAG_COUNT, 0, 1, NOW + 1000, 1);
	put(t, tagged(12, 1, SL_TAG_COUNT, 0, 1), NOW, NOW + 5, 10);
	put(t, tagged(10, 2, SL_TAG_COUNT, 0, 2), NOW, NOW + 5000, 1);
	/* Window 10..17: least loss is 1 unit, soonest of those is home 10. */
	assert_int_equal(sl_table_get(t, at(12, 1), NOW, &st), 0);
	assert_int_equal(st.v, 10);
	assert_int_equal(sl_table_get(t, at(10, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(sl_table_get(t, at(10, 2), NOW, &st), 0);
	assert_int_equal(limit_stats(t, 1).evicted_usage, 1);
	assert_int_equal(limit_stats(t, 1).evicted_idle, 0);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.evictions, 1);
	assert_int_equal(s.evictions_usage, 1);
	sl_table_destroy(t);
}

static void rate_loss_is_backlog_over_interval(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;

	/* T = 2^20 ns, backlog 2T: 2 units each; home 20: T = 2^10 ns with a
	 * backlog of 16T, 16 units, though it expires first. */
	fill_tagged(t, SL_TAG_RATE, 20, 1, NOW + (2 << 20), 0);
	put(t, tagged(20, 1, SL_TAG_RATE, 10, 1), NOW, NOW + (16 << 10), 0);
	put(t, tagged(20, 2, SL_TAG_RATE, 20, 1), NOW, NOW + 5000, 0);
	assert_int_equal(sl_table_get(t, at(20, 1), NOW, &st), 0);
	assert_int_equal(st.expires, NOW + (16 << 10));
	assert_int_equal(sl_table_get(t, at(21, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(limit_stats(t, 1).evicted_usage, 1);
	sl_table_destroy(t);
}

static void victim_without_usage_is_an_idle_eviction(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;

	fill_tagged(t, SL_TAG_COUNT, 0, 1, NOW + 1000, 1);
	/* Live, expiring last, but nothing used (a released concurrency slot,
	 * a sliding window of zeros): losing it admits nothing extra. */
	put(t, tagged(15, 1, SL_TAG_COUNT, 0, 3), NOW, NOW + 99999, 0);
	put(t, tagged(11, 2, SL_TAG_COUNT, 0, 2), NOW, NOW + 5000, 1);
	assert_int_equal(sl_table_get(t, at(15, 1), NOW, &st), SL_ENOENT);
	for (uint64_t h = 11; h < 15; h++)
		assert_int_equal(sl_table_get(t, at(h, 1), NOW, &st), 0);
	assert_int_equal(limit_stats(t, 3).evicted_idle, 1);
	assert_int_equal(limit_stats(t, 3).evicted_usage, 0);
	assert_int_equal(limit_stats(t, 1).evicted_usage, 0);
	sl_table_destroy(t);
}

static void sliding_loss_counts_both_windows(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;

	/* prev 3 + cur 0 (3 units) at home 30 vs prev 0 + cur 2 elsewhere. */
	fill_tagged(t, SL_TAG_SLIDING, 0, 1, NOW + 1000, 2);
	put(t, tagged(30, 1, SL_TAG_SLIDING, 0, 1), NOW, NOW + 5, 3ULL << 32);
	put(t, tagged(30, 2, SL_TAG_SLIDING, 0, 1), NOW, NOW + 5000, 1);
	assert_int_equal(sl_table_get(t, at(30, 1), NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(31, 1), NOW, &st), SL_ENOENT);
	sl_table_destroy(t);
}

struct scratch_rec {
	struct rec r;
	struct sl_table_admit *adm;
	uint32_t unstored_seen;
};

static void scratch_fn(struct sl_state **st, size_t n, void *arg)
{
	struct scratch_rec *sr = arg;
	sr->unstored_seen = sr->adm->unstored;
	rec_fn(st, n, &sr->r);
}

static void keep_refuses_a_slot_when_every_candidate_matters(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_table_admit adm = {.keep = true};
	struct scratch_rec sr = {.r = {.set = {NOW + 5000, 7}, .write = 1}, .adm = &adm};
	struct sl_key128 k = tagged(10, 2, SL_TAG_COUNT, 0, 2);
	struct sl_table_stats s;
	struct sl_state st;

	fill_tagged(t, SL_TAG_COUNT, 0, 1, NOW + 1000, 1);
	assert_int_equal(sl_table_update_admit(t, &k, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.r.calls, 1);
	assert_int_equal(sr.unstored_seen, 1);
	assert_int_equal(sr.r.seen[0].expires, 0); /* a fresh scratch state */
	assert_int_equal(sr.r.seen[0].v, 0);
	/* The first candidate to stop mattering: home 10's window ends first. */
	assert_int_equal(adm.retry_at, NOW + 1010);
	assert_int_equal(sl_table_get(t, k, NOW, &st), SL_ENOENT); /* dropped */
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	assert_int_equal(s.evictions, 0);
	assert_int_equal(s.unstored, 1);
	assert_int_equal(limit_stats(t, 2).unstored, 1);
	for (uint64_t h = 0; h < MAXUSED; h++)
		assert_int_equal(sl_table_get(t, at(h, 1), NOW, &st), 0);

	/* A candidate that does not matter is still evicted under keep. */
	put(t, tagged(13, 1, SL_TAG_COUNT, 0, 1), NOW, NOW + 1013, 0);
	sr.r.calls = 0;
	assert_int_equal(sl_table_update_admit(t, &k, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 0);
	assert_int_equal(adm.retry_at, INT64_MAX);
	assert_int_equal(sl_table_get(t, k, NOW, &st), 0);
	assert_int_equal(st.v, 7);
	assert_int_equal(limit_stats(t, 1).evicted_idle, 1);

	/* Without keep, the least loss is evicted and counted as usage. */
	struct sl_key128 k2 = tagged(20, 2, SL_TAG_COUNT, 0, 2);
	adm.keep = false;
	assert_int_equal(sl_table_update_admit(t, &k2, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 0);
	assert_int_equal(sl_table_get(t, k2, NOW, &st), 0);
	assert_int_equal(limit_stats(t, 1).evicted_usage, 1);
	sl_table_destroy(t);
}

/* Runs of three keys with an empty slot after each (homes i + i/3): a
 * tail every fourth slot, MAXUSED keys, the shard at its bound. */
static void fill_runs(struct sl_table *t, int64_t base, uint64_t v)
{
	for (uint64_t i = 0; i < MAXUSED; i++)
		put(t, tagged(i + i / 3, 1, SL_TAG_COUNT, 0, 1), NOW, base + (int64_t)i, v);
}

static void keep_with_empty_home_drops_only_a_tail_that_does_not_matter(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_table_admit adm = {.keep = true};
	struct scratch_rec sr = {.r = {.set = {NOW + 5000, 1}, .write = 1}, .adm = &adm};
	struct sl_key128 k = tagged(3, 2, SL_TAG_COUNT, 0, 2); /* home 3 is empty */
	struct sl_table_stats s;
	struct sl_state st;

	fill_runs(t, NOW + 1000, 1);
	/* The tails in reach (2, 6, 10, 14) all hold usage: refused. */
	assert_int_equal(sl_table_update_admit(t, &k, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 1);
	assert_int_equal(adm.retry_at, NOW + 1002); /* slot 2 holds key i = 2 */
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	assert_int_equal(sl_table_get(t, k, NOW, &st), SL_ENOENT);
	/* One of them without usage: it is emptied instead. */
	put(t, tagged(10, 1, SL_TAG_COUNT, 0, 1), NOW, NOW + 1000, 0);
	assert_int_equal(sl_table_update_admit(t, &k, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 0);
	assert_int_equal(sl_table_get(t, k, NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(10, 1), NOW, &st), SL_ENOENT);
	assert_int_equal(limit_stats(t, 1).evicted_idle, 1);
	/* Evict mode empties the tail with the least loss even if it matters. */
	struct sl_key128 k2 = tagged(7, 2, SL_TAG_COUNT, 0, 2); /* home 7 is empty */
	adm.keep = false;
	assert_int_equal(sl_table_update_admit(t, &k2, 1, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 0);
	assert_int_equal(sl_table_get(t, k2, NOW, &st), 0);
	assert_int_equal(sl_table_get(t, at(6, 1), NOW, &st), SL_ENOENT); /* i = 4: soonest */
	assert_int_equal(limit_stats(t, 1).evicted_usage, 1);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	sl_table_destroy(t);
}

static void keep_duplicates_share_one_scratch_state(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_table_admit adm = {.keep = true};
	struct scratch_rec sr = {.adm = &adm};
	struct sl_key128 k[3] = {tagged(40, 2, SL_TAG_COUNT, 0, 2), at(41, 1),
	                         tagged(40, 2, SL_TAG_COUNT, 0, 2)};
	struct sl_table_stats s;

	fill_tagged(t, SL_TAG_COUNT, 0, 1, NOW + 1000, 1);
	assert_int_equal(sl_table_update_admit(t, k, 3, NOW, scratch_fn, &sr, &adm), 0);
	assert_int_equal(sr.unstored_seen, 5); /* keys 0 and 2 */
	assert_ptr_equal(sr.r.ptr[0], sr.r.ptr[2]);
	assert_ptr_not_equal(sr.r.ptr[0], sr.r.ptr[1]);
	assert_int_equal(sr.r.seen[1].v, 1); /* key 1 is in the table */
	stats(t, &s);
	assert_int_equal(s.unstored, 1); /* one key, counted once */
	sl_table_destroy(t);
}

static void tag_is_not_identity_and_follows_the_caller(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;
	struct sl_key128 a = tagged(5, 3, SL_TAG_COUNT, 0, 1);
	struct sl_key128 b = tagged(5, 3, SL_TAG_RATE, 7, 9);

	put(t, a, NOW, NOW + 100, 3);
	assert_int_equal(sl_table_get(t, b, NOW, &st), 0);
	assert_int_equal(st.v, 3);
	assert_int_equal(peek_fresh(t, b, NOW).v, 3); /* same state, now tagged b */
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 1);
	/* The stored tag is b's: as a rate state of T = 2^7 ns with 100 ns of
	 * backlog it holds < 1 unit, so a full chain evicts it as idle, before
	 * any opaque state (one unit while live). */
	for (uint64_t h = 0; h < MAXUSED - 1; h++)
		put(t, at(h == 5 ? MAXUSED : h, 1), NOW, NOW + 1000, 1);
	stats(t, &s);
	assert_int_equal(s.used, MAXUSED);
	put(t, at(4, 2), NOW, NOW + 5000, 1);
	assert_int_equal(sl_table_get(t, a, NOW, &st), SL_ENOENT);
	assert_int_equal(limit_stats(t, 9).evicted_idle, 1);
	assert_int_equal(limit_stats(t, 1).evicted_idle, 0);
	sl_table_destroy(t);
}

static void identity_bits_beside_the_tag_are_compared(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_state st;
	struct sl_key128 a = {0x7ULL << 53, 5}, b = a, c = a, d = a;

	b.lo |= 1ULL << SL_TAG_BITS; /* the lowest identity bit of lo */
	c.hi ^= 1;
	d.lo |= SL_TAG_MASK; /* only the tag differs: the same key */
	put(t, a, NOW, NOW + 100, 1);
	put(t, b, NOW, NOW + 100, 2);
	put(t, c, NOW, NOW + 100, 3);
	assert_int_equal(sl_table_get(t, a, NOW, &st), 0);
	assert_int_equal(st.v, 1);
	assert_int_equal(sl_table_get(t, b, NOW, &st), 0);
	assert_int_equal(st.v, 2);
	assert_int_equal(sl_table_get(t, c, NOW, &st), 0);
	assert_int_equal(st.v, 3);
	assert_int_equal(sl_table_get(t, d, NOW, &st), 0);
	assert_int_equal(st.v, 1);
	/* A zero identity with a tag is the zero key, not an empty slot. */
	struct sl_key128 z = {0, 0}, zt = {0x0102, 0};
	put(t, zt, NOW, NOW + 100, 9);
	assert_int_equal(sl_table_get(t, z, NOW, &st), 0);
	assert_int_equal(st.v, 9);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 4);
	sl_table_destroy(t);
}

static void home_slot_ignores_the_tag(void **unused)
{
	(void)unused;
	struct sl_table *t = NULL;
	struct sl_state st;
	const uint64_t cap = 2050; /* not a power of two: tag bits could carry */

	assert_int_equal(sl_table_create(&t, cap * 32, 0), 0);
	/* Identity bits just below the boundary of home 700: with the tag
	 * multiplied in, tag 0xffff would land on home 701. */
	uint64_t q = (uint64_t)(((unsigned __int128)701 << 64) / cap);
	struct sl_key128 a = {q & ~SL_TAG_MASK, 1}, b = {q | SL_TAG_MASK, 1};
	assert_true((uint64_t)(((unsigned __int128)a.lo * cap) >> 64) !=
	            (uint64_t)(((unsigned __int128)b.lo * cap) >> 64));
	put(t, a, NOW, NOW + 100, 4);
	assert_int_equal(sl_table_get(t, b, NOW, &st), 0);
	assert_int_equal(st.v, 4);
	assert_int_equal(peek_fresh(t, b, NOW).v, 4);
	struct sl_table_stats s;
	stats(t, &s);
	assert_int_equal(s.used, 1);
	sl_table_destroy(t);
}

/* A deterministic flood of one-hit keys through a full table, with one
 * key at its limit written every `every` inserts: it must never be
 * evicted while one-hit keys are there to take instead. */
static void flood_of_one_hit_keys_never_evicts_a_key_at_its_limit(void **unused)
{
	(void)unused;
	struct sl_table *t = mk();
	struct sl_key128 abuser = tagged(0, 0xabu, SL_TAG_COUNT, 0, 5);
	struct sl_state st;
	uint64_t x = 42;

	put(t, abuser, NOW, NOW + 1000000, 10);
	for (int i = 0; i < 200000; i++) {
		struct sl_key128 k = {rnd(&x), rnd(&x)};
		put(t,
		    sl_key_tagged(k, sl_tag_of(&(struct sl_limit_spec){.algo = SL_ALGO_QUOTA}, 4)),
		    NOW, NOW + 1000000, 1);
		if (sl_table_get(t, abuser, NOW, &st) != 0)
			fail_msg("lost at %d", i);
	}
	assert_int_equal(sl_table_get(t, abuser, NOW, &st), 0);
	assert_int_equal(st.v, 10);
	assert_true(limit_stats(t, 4).evicted_usage > 100000);
	assert_int_equal(limit_stats(t, 5).evicted_usage, 0);
	sl_table_destroy(t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(claim_then_lookup),
	        cmocka_unit_test(keys_sharing_low_64_bits_are_distinct),
	        cmocka_unit_test(zero_key_is_an_ordinary_key),
	        cmocka_unit_test(expired_state_reads_fresh_and_is_reused_in_place),
	        cmocka_unit_test(full_shard_evicts_soonest_expiring_in_window),
	        cmocka_unit_test(full_shard_reuses_expired_slot_before_evicting),
	        cmocka_unit_test(full_shard_with_empty_home_drops_a_run_tail),
	        cmocka_unit_test(never_grows_past_capacity_and_loses_no_key),
	        cmocka_unit_test(duplicate_keys_share_one_state),
	        cmocka_unit_test(keys_of_one_update_never_evict_each_other),
	        cmocka_unit_test(foreach_visits_live_states_only),
	        cmocka_unit_test(scan_copies_each_live_state_once_in_bounded_chunks),
	        cmocka_unit_test(scan_sees_each_chunk_as_it_was_when_copied),
	        cmocka_unit_test(foreach_runs_the_callback_with_no_lock_held),
	        cmocka_unit_test(create_refuses_bad_sizes),
	        cmocka_unit_test(update_refuses_too_many_keys),
	        cmocka_unit_test(many_shards_one_update),
	        cmocka_unit_test(full_shard_evicts_least_loss_not_soonest),
	        cmocka_unit_test(rate_loss_is_backlog_over_interval),
	        cmocka_unit_test(victim_without_usage_is_an_idle_eviction),
	        cmocka_unit_test(sliding_loss_counts_both_windows),
	        cmocka_unit_test(keep_refuses_a_slot_when_every_candidate_matters),
	        cmocka_unit_test(keep_with_empty_home_drops_only_a_tail_that_does_not_matter),
	        cmocka_unit_test(keep_duplicates_share_one_scratch_state),
	        cmocka_unit_test(tag_is_not_identity_and_follows_the_caller),
	        cmocka_unit_test(identity_bits_beside_the_tag_are_compared),
	        cmocka_unit_test(home_slot_ignores_the_tag),
	        cmocka_unit_test(flood_of_one_hit_keys_never_evicts_a_key_at_its_limit),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
