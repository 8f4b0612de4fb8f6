/* The per-worker shards under real threads: two workers count requests,
 * upstream exchanges, delays and decisions into their own shards while a
 * third thread scrapes, and a fourth sets the process-wide values. Every
 * scrape must render (no torn names), counters seen by successive scrapes
 * never go back, and the final sums are exact. Built under TSan too. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "net/metrics.h"

#define PER_WORKER 20000

static struct sl_metrics *M;
static atomic_bool stop;

static void *worker(void *arg)
{
	struct sl_metrics_shard *s = sl_metrics_shard(M, (unsigned)(uintptr_t)arg);

	for (int i = 0; i < PER_WORKER; i++) {
		sl_metrics_request(s, (i & 1) ? "gateway" : "auth", 200 + (i % 3) * 100);
		sl_metrics_upstream(s, "gateway", i % 7 ? 200 : 0, 1000000);
		sl_metrics_delayed(s, 1);
		sl_metrics_delayed(s, -1);
		sl_metrics_decision(s, "gateway", "hourly", SL_METRIC_ALLOWED, 1000);
	}
	return NULL;
}

static void *setter(void *arg)
{
	(void)arg;
	for (int64_t i = 0; !atomic_load(&stop); i++) {
		sl_metrics_set_gauge(M, SL_GAUGE_ACCOUNTS, i);
		sl_metrics_config(M, i % 2 == 0, (uint64_t)i, 1700000000LL * 1000000000LL);
	}
	return NULL;
}

static double sample(const char *text, const char *series)
{
	const char *p = strstr(text, series);
	return p ? strtod(p + strlen(series), NULL) : -1;
}

static void shards_count_exactly_while_scraped(void **unused)
{
	(void)unused;
	static char buf[1 << 20];
	pthread_t w[2], set;
	double last = 0;

	M = sl_metrics_create(2);
	assert_non_null(M);
	atomic_store(&stop, false);
	pthread_create(&set, NULL, setter, NULL);
	for (uintptr_t i = 0; i < 2; i++)
		pthread_create(&w[i], NULL, worker, (void *)i);
	for (int k = 0; k < 50; k++) {
		long n = sl_metrics_render(M, NULL, buf, sizeof(buf) - 1);
		double v;

		assert_true(n > 0);
		buf[n] = '\0';
		v = sample(buf, "sluice_upstream_seconds_count{listener=\"gateway\"} ");
		if (v >= 0) {
			assert_true(v >= last);
			last = v;
		}
	}
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	atomic_store(&stop, true);
	pthread_join(set, NULL);
	assert_true(sl_metrics_render(M, NULL, buf, sizeof(buf) - 1) > 0);
	/* per worker: 10000 on each listener, classes 2xx/3xx/4xx in turn */
	double total = 0;
	const char *lst[] = {"gateway", "auth"}, *cls[] = {"2xx", "3xx", "4xx"};
	for (int l = 0; l < 2; l++)
		for (int c = 0; c < 3; c++) {
			char series[96];
			snprintf(series, sizeof(series),
			         "sluice_requests_total{listener=\"%s\",code=\"%s\"} ", lst[l],
			         cls[c]);
			total += sample(buf, series);
		}
	assert_true(total == 2.0 * PER_WORKER);
	/* i % 7 == 0 had no upstream answer: 2858 of 20000 per worker */
	assert_true(
	        sample(buf,
	               "sluice_upstream_responses_total{listener=\"gateway\",code=\"none\"} ") ==
	        2 * 2858);
	assert_true(sample(buf, "sluice_upstream_seconds_count{listener=\"gateway\"} ") ==
	            2.0 * (PER_WORKER - 2858));
	assert_true(sample(buf, "\nsluice_requests_delayed ") == 0);
	assert_true(sample(buf, "sluice_decisions_total{listener=\"gateway\",limit=\"hourly\","
	                        "outcome=\"allowed\"} ") == 2.0 * PER_WORKER);
	sl_metrics_destroy(M);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(shards_count_exactly_while_scraped),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
