/* The usage tables under concurrency: worker threads count while the
 * flusher swaps and writes; after the last flush every decision is in the
 * database exactly once (none lost in a swap, none written twice). Also
 * built under ThreadSanitizer (make tsan). */
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
#include <sluice/algo-t.h>
#include "usage/usage.h"

#define T0       1796169600LL /* s */
#define WORKERS  3
#define PER      20000 /* decisions per worker */
#define ACCOUNTS 50

struct arg {
	struct sl_usage *u;
	unsigned w;
};

static atomic_int running;

static void *worker(void *p)
{
	struct arg *a = p;
	char name[16];

	for (int i = 0; i < PER; i++) {
		snprintf(name, sizeof(name), "acc%d", i % ACCOUNTS);
		sl_usage_count(sl_usage_shard(a->u, a->w), name, strlen(name), "hourly", i % 3, 1,
		               (T0 + i / 1000) * SL_NS_PER_SEC);
	}
	atomic_fetch_sub(&running, 1);
	return NULL;
}

static void total(void *arg, const struct sl_usage_row *r)
{
	*(uint64_t *)arg += r->allowed + r->delayed + r->rejected;
}

static void counts_survive_concurrent_swaps(void **state)
{
	char dir[] = "/tmp/sl-usage-thr-XXXXXX", path[64], err[256];
	struct sl_usage_conf c = {.max_series = 4096,
	                          .keep_minutes = 48LL * 3600 * SL_NS_PER_SEC,
	                          .keep_hours = 90LL * 86400 * SL_NS_PER_SEC,
	                          .keep_days = 730LL * 86400 * SL_NS_PER_SEC};
	struct sl_usage *u;
	pthread_t th[WORKERS];
	struct arg args[WORKERS];
	uint64_t sum = 0;
	unsigned flushes = 0;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/usage.db", dir);
	c.path = path;
	assert_int_equal(sl_usage_open(&u, &c, WORKERS, NULL, err, sizeof(err)), 0);
	atomic_store(&running, WORKERS);
	for (unsigned i = 0; i < WORKERS; i++) {
		args[i] = (struct arg){u, i};
		assert_int_equal(pthread_create(&th[i], NULL, worker, &args[i]), 0);
	}
	while (atomic_load(&running) > 0) {
		assert_int_equal(sl_usage_flush(u, (T0 + 100) * SL_NS_PER_SEC), 0);
		flushes++;
	}
	for (unsigned i = 0; i < WORKERS; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(sl_usage_flush(u, (T0 + 100) * SL_NS_PER_SEC), 0);
	for (int k = 0; k < ACCOUNTS; k++) {
		char name[16];
		snprintf(name, sizeof(name), "acc%d", k);
		assert_int_equal(sl_usage_history(u, name, strlen(name), SL_USAGE_MINUTE, T0,
		                                  T0 + 3600, total, &sum),
		                 0);
	}
	assert_int_equal(sum, (uint64_t)WORKERS * PER);
	print_message("%u flushes during the run\n", flushes);
	sl_usage_close(u);
	snprintf(err, sizeof(err), "rm -rf %s", dir);
	assert_int_equal(system(err), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(counts_survive_concurrent_swaps),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
