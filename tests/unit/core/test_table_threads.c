/* Concurrent sl_table_update: threads hammer one small set of keys with
 * multi-key updates (keys spread over shards, overlapping between threads,
 * duplicates inside one update) while a reader walks and reads the table.
 * Every increment must land exactly once: the per-key totals are exact.
 * Built under ThreadSanitizer by `make tsan-run` (name contains _threads). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/error.h>
#include <sluice/table.h>

#define THREADS 3
#define ITERS   20000
#define NKEYS   8
#define PER     3 /* keys per update */
#define NOW     1000

static struct sl_table *tab;
static struct sl_key128 keys[NKEYS];
static atomic_int writers_left;

static void incr(struct sl_state **st, size_t n, void *arg)
{
	(void)arg;
	for (size_t i = 0; i < n; i++) {
		st[i]->expires = INT64_MAX;
		st[i]->v++;
	}
}

/* The keys of update `it` of thread `id`; may repeat a key. */
static void pick(unsigned id, unsigned it, struct sl_key128 *out, unsigned *idx)
{
	idx[0] = (it + id) % NKEYS;
	idx[1] = (it * 5 + 3) % NKEYS;
	idx[2] = (it / 3 + id * 7) % NKEYS;
	for (unsigned j = 0; j < PER; j++)
		out[j] = keys[idx[j]];
}

static void *writer(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg;
	struct sl_key128 k[PER];
	unsigned idx[PER];
	for (unsigned it = 0; it < ITERS; it++) {
		pick(id, it, k, idx);
		if (sl_table_update(tab, k, PER, NOW, incr, NULL) != 0)
			abort();
	}
	atomic_fetch_sub(&writers_left, 1);
	return NULL;
}

static void each(struct sl_key128 key, const struct sl_state *st, void *arg)
{
	(void)key;
	*(uint64_t *)arg += st->v;
}

static void *reader(void *arg)
{
	(void)arg;
	uint64_t last = 0;
	while (atomic_load(&writers_left) > 0) {
		struct sl_state st;
		uint64_t sum = 0;
		(void)sl_table_get(tab, keys[0], NOW, &st);
		sl_table_foreach(tab, NOW, each, &sum);
		/* Totals only grow. */
		if (sum < last)
			abort();
		last = sum;
	}
	return NULL;
}

static void concurrent_multi_key_updates_are_exact(void **unused)
{
	(void)unused;
	pthread_t th[THREADS + 1];
	uint64_t want[NKEYS] = {0};

	/* 64 KiB over 2 shards: keys land in both shards. */
	assert_int_equal(sl_table_create(&tab, 1 << 16, 1), 0);
	for (unsigned i = 0; i < NKEYS; i++) {
		keys[i].lo = 0x9E3779B97F4A7C15ULL * (i + 1);
		keys[i].hi = (uint64_t)i << 63 | i;
	}
	for (unsigned id = 0; id < THREADS; id++)
		for (unsigned it = 0; it < ITERS; it++) {
			struct sl_key128 k[PER];
			unsigned idx[PER];
			pick(id, it, k, idx);
			for (unsigned j = 0; j < PER; j++)
				want[idx[j]]++;
		}

	atomic_store(&writers_left, THREADS);
	for (unsigned id = 0; id < THREADS; id++)
		assert_int_equal(pthread_create(&th[id], NULL, writer, (void *)(uintptr_t)id), 0);
	assert_int_equal(pthread_create(&th[THREADS], NULL, reader, NULL), 0);
	for (unsigned id = 0; id <= THREADS; id++)
		pthread_join(th[id], NULL);

	uint64_t total = 0;
	for (unsigned i = 0; i < NKEYS; i++) {
		struct sl_state st;
		assert_int_equal(sl_table_get(tab, keys[i], NOW, &st), 0);
		assert_int_equal(st.v, want[i]);
		total += st.v;
	}
	assert_int_equal(total, (uint64_t)THREADS * ITERS * PER);
	struct sl_table_stats s;
	sl_table_stats(tab, &s);
	assert_int_equal(s.used, NKEYS);
	assert_int_equal(s.evictions, 0);
	sl_table_destroy(tab);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(concurrent_multi_key_updates_are_exact),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
