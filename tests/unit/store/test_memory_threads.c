/* Two threads deciding through one memory store on shared keys: the
 * limits are exact under concurrency. With the clock held still, a quota of
 * N and a 100/min rate admit exactly N and exactly 100 in total, however
 * the threads interleave, and a three-limit decision never over-admits on
 * any limit. Snapshots saved while both threads decide (the save copies a
 * chunk of one shard under its lock and writes unlocked) all succeed, each
 * restores a consistent count, and the final one the exact total. Built
 * under ThreadSanitizer by `make tsan-run`. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#include "store/store.h"

#define T0      (1700000000LL * SL_NS_PER_SEC)
#define THREADS 2
#define TRIES   3000 /* decisions per thread */
#define QUOTA_N 1234

static struct sl_store *store;
static struct sl_limit_spec quota, rate, wide;
static atomic_ulong admitted;

static void on_done(struct sl_batch *b)
{
	if (b->status == SL_OK)
		atomic_fetch_add(&admitted, 1);
}

static void fill(struct sl_check *c, const struct sl_limit_spec *spec, uint64_t id, const char *key)
{
	memset(c, 0, sizeof(*c));
	c->spec = spec;
	c->limit_id = id;
	c->key = key;
	c->key_len = (uint32_t)strlen(key);
	c->cost = 1;
}

struct job {
	int three; /* 1: ip + key + account per decision; 0: the quota alone */
	unsigned id;
};

static void *worker(void *arg)
{
	struct job *j = arg;
	struct sl_check c[3];
	static const char *ips[] = {"10.0.0.1", "10.0.0.2", "10.0.0.3"};

	for (unsigned i = 0; i < TRIES; i++) {
		size_t n = 1;
		if (j->three) {
			fill(&c[0], &wide, 1, ips[(i + j->id) % 3]);
			fill(&c[1], &rate, 2, "sk_shared");
			fill(&c[2], &quota, 3, "acme");
			n = 3;
		} else {
			fill(&c[0], &quota, 3, "acme");
		}
		struct sl_batch b = {
		        .checks = c, .n = n, .op = SL_OP_DECIDE, .now = T0, .done = on_done};
		if (sl_store_submit(store, &b) != 0)
			abort();
	}
	return NULL;
}

static void run_threads(int three)
{
	pthread_t th[THREADS];
	struct job jobs[THREADS];

	atomic_store(&admitted, 0);
	assert_int_equal(sl_memory_store_create(&store, 1 << 20, 77), 0);
	for (unsigned i = 0; i < THREADS; i++) {
		jobs[i].three = three;
		jobs[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
	}
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
}

static void shared_quota_admits_exactly_n(void **unused)
{
	(void)unused;
	assert_int_equal(sl_spec_quota(&quota, QUOTA_N, SL_CAL_DAY, 0), 0);
	run_threads(0);
	assert_int_equal(atomic_load(&admitted), QUOTA_N);
	store->ops->destroy(store);
}

static void shared_rate_in_three_limit_decisions_admits_exactly_100(void **unused)
{
	(void)unused;
	assert_int_equal(sl_spec_quota(&quota, QUOTA_N, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_rate(&rate, 100, SL_NS_PER_MIN, 0, 0), 0);
	assert_int_equal(sl_spec_rate(&wide, 1000000, SL_NS_PER_MIN, 0, 0), 0);
	run_threads(1);
	assert_int_equal(atomic_load(&admitted), 100);
	/* Rejected decisions consumed nothing: the quota saw exactly 100. */
	struct sl_check c;
	fill(&c, &quota, 3, "acme");
	c.cost = 0;
	struct sl_batch b = {.checks = &c, .n = 1, .op = SL_OP_PEEK, .now = T0, .done = on_done};
	assert_int_equal(sl_store_submit(store, &b), 0);
	assert_int_equal(c.res.remaining, QUOTA_N - 100);
	store->ops->destroy(store);
}

#define SAVES 10
static char snap[256];
static atomic_int saves_failed;

static void *saver(void *arg)
{
	(void)arg;
	for (int i = 0; i < SAVES; i++)
		if (sl_memory_store_save(store, snap, T0) != 0)
			atomic_fetch_add(&saves_failed, 1);
	return NULL;
}

static void on_peek(struct sl_batch *b)
{
	(void)b;
}

static uint64_t restored_used(void)
{
	struct sl_store *s;
	struct sl_check c;

	assert_int_equal(sl_memory_store_create(&s, 1 << 20, 77), 0);
	assert_int_equal(sl_memory_store_load(s, snap, T0), 0);
	fill(&c, &quota, 3, "acme");
	c.cost = 0;
	struct sl_batch b = {.checks = &c, .n = 1, .op = SL_OP_PEEK, .now = T0, .done = on_peek};
	assert_int_equal(sl_store_submit(s, &b), 0);
	s->ops->destroy(s);
	return QUOTA_N - c.res.remaining;
}

static void snapshots_saved_while_deciding_restore_consistent_counts(void **unused)
{
	(void)unused;
	pthread_t th[THREADS], sv;
	struct job jobs[THREADS];
	const char *dir = getenv("TMPDIR");

	snprintf(snap, sizeof(snap), "%s/sluice-test-memthreads-%d.snap", dir ? dir : "/tmp",
	         (int)getpid());
	assert_int_equal(sl_spec_quota(&quota, QUOTA_N, SL_CAL_DAY, 0), 0);
	atomic_store(&admitted, 0);
	atomic_store(&saves_failed, 0);
	assert_int_equal(sl_memory_store_create(&store, 1 << 20, 77), 0);
	for (unsigned i = 0; i < THREADS; i++) {
		jobs[i].three = 0;
		jobs[i].id = i;
		assert_int_equal(pthread_create(&th[i], NULL, worker, &jobs[i]), 0);
	}
	assert_int_equal(pthread_create(&sv, NULL, saver, NULL), 0);
	pthread_join(sv, NULL);
	assert_int_equal(atomic_load(&saves_failed), 0);
	uint64_t mid = restored_used(); /* some moment of the run */
	for (unsigned i = 0; i < THREADS; i++)
		pthread_join(th[i], NULL);
	assert_true(mid <= QUOTA_N);
	assert_int_equal(atomic_load(&admitted), QUOTA_N);
	assert_int_equal(sl_memory_store_save(store, snap, T0), 0);
	assert_int_equal(restored_used(), QUOTA_N);
	unlink(snap);
	store->ops->destroy(store);
}

/* A full store under concurrency: each thread floods distinct one-hit keys
 * under its own limit name (first sight of each name races with the
 * other thread's), while a third reads the per-limit stats; one client at
 * its limit on a shared key is never evicted, and every eviction is
 * counted once. */
struct flood_arg {
	int t;
	uint64_t admitted_heavy;
};

static void *flooder(void *arg)
{
	struct flood_arg *fa = arg;
	static const char *const names[THREADS] = {"a", "b"};
	char key[32];

	for (int i = 0; i < 20 * TRIES; i++) {
		struct sl_check c;
		snprintf(key, sizeof(key), "%d-%d", fa->t, i);
		fill(&c, &quota, 10 + (uint64_t)fa->t, key);
		c.name = names[fa->t];
		struct sl_batch b = {.checks = &c, .n = 1, .now = T0, .done = on_done};
		assert_int_equal(sl_store_submit(store, &b), 0);
		if (i % 100 == 0) {
			fill(&c, &quota, 99, "heavy");
			c.name = "heavy";
			struct sl_batch h = {.checks = &c, .n = 1, .now = T0, .done = on_done};
			assert_int_equal(sl_store_submit(store, &h), 0);
			fa->admitted_heavy += h.status == SL_OK;
		}
	}
	return NULL;
}

static atomic_int flooding;

static void *stats_reader(void *arg)
{
	(void)arg;
	while (atomic_load(&flooding)) {
		struct sl_store_stats st;
		store->ops->stats(store, &st);
		for (size_t i = 0; i < st.nlimits; i++)
			assert_non_null(st.limits[i].name);
	}
	return NULL;
}

static void full_store_keeps_a_client_at_its_limit_under_threads(void **unused)
{
	(void)unused;
	struct flood_arg fa[THREADS];
	pthread_t th[THREADS], rd;
	struct sl_store_stats st;

	assert_int_equal(sl_memory_store_create(&store, 64 * 1024, 7), 0);
	assert_int_equal(sl_spec_quota(&quota, 10, SL_CAL_DAY, 0), 0);
	atomic_store(&flooding, 1);
	pthread_create(&rd, NULL, stats_reader, NULL);
	for (int t = 0; t < THREADS; t++) {
		fa[t] = (struct flood_arg){.t = t};
		pthread_create(&th[t], NULL, flooder, &fa[t]);
	}
	for (int t = 0; t < THREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&flooding, 0);
	pthread_join(rd, NULL);
	assert_int_equal(fa[0].admitted_heavy + fa[1].admitted_heavy, 10);
	store->ops->stats(store, &st);
	uint64_t usage = 0;
	for (size_t i = 0; i < st.nlimits; i++) {
		usage += st.limits[i].evicted_usage;
		assert_true(strcmp(st.limits[i].name, "heavy") != 0);
	}
	assert_true(usage > 0);
	assert_int_equal(usage, st.evictions_usage);
	store->ops->destroy(store);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(shared_quota_admits_exactly_n),
	        cmocka_unit_test(shared_rate_in_three_limit_decisions_admits_exactly_100),
	        cmocka_unit_test(snapshots_saved_while_deciding_restore_consistent_counts),
	        cmocka_unit_test(full_store_keeps_a_client_at_its_limit_under_threads),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
