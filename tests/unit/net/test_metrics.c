/* The store part of /metrics: per-limit eviction series of a full memory
 * store (kind usage / idle), the totals, the unstored series of
 * store.on_full, and label escaping of limit names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cmocka.h>

#include <sluice/error.h>
#include "net/metrics.h"
#include "policy/policy.h"

static char out[16384];

static void render(const struct sl_store_stats *st)
{
	long n = sl_metrics_render(NULL, st, out, sizeof(out) - 1);
	assert_true(n > 0);
	out[n] = '\0';
}

static void store_evictions_are_rendered_per_limit_and_kind(void **unused)
{
	(void)unused;
	struct sl_store_stats st;

	memset(&st, 0, sizeof(st));
	st.evictions = 12;
	st.evictions_usage = 9;
	st.limits[0] =
	        (struct sl_store_limit_stats){.name = "ip", .evicted_usage = 7, .evicted_idle = 3};
	st.limits[1] = (struct sl_store_limit_stats){
	        .name = "da\"ily", .evicted_usage = 2, .full_denied = 5};
	st.nlimits = 2;
	render(&st);
	assert_non_null(strstr(out, "# TYPE sluice_store_evictions_total counter\n"));
	assert_non_null(
	        strstr(out, "sluice_store_evictions_total{limit=\"ip\",kind=\"usage\"} 7\n"));
	assert_non_null(
	        strstr(out, "sluice_store_evictions_total{limit=\"ip\",kind=\"idle\"} 3\n"));
	assert_non_null(strstr(
	        out, "sluice_store_evictions_total{limit=\"da\\\"ily\",kind=\"usage\"} 2\n"));
	assert_non_null(strstr(out, "sluice_store_evicted_total 12\n"));
	assert_non_null(strstr(out, "sluice_store_usage_evictions_total 9\n"));
	assert_non_null(strstr(
	        out, "sluice_store_unstored_total{limit=\"da\\\"ily\",action=\"denied\"} 5\n"));
	assert_null(strstr(out, "action=\"admitted\""));
}

static void an_empty_store_has_totals_and_no_limit_series(void **unused)
{
	(void)unused;
	struct sl_store_stats st;

	memset(&st, 0, sizeof(st));
	render(&st);
	assert_non_null(strstr(out, "sluice_store_evicted_total 0\n"));
	assert_non_null(strstr(out, "sluice_store_usage_evictions_total 0\n"));
	assert_null(strstr(out, "sluice_store_evictions_total{"));
	assert_null(strstr(out, "sluice_store_unstored_total{"));
}

static char big[1 << 20];

static const char *render_m(struct sl_metrics *m)
{
	long n = sl_metrics_render(m, NULL, big, sizeof(big) - 1);
	assert_true(n > 0);
	big[n] = '\0';
	return big;
}

static void requests_are_counted_by_listener_and_status_class(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(2);
	struct sl_metrics_shard *a = sl_metrics_shard(m, 0), *b = sl_metrics_shard(m, 1);

	sl_metrics_request(a, "gateway", 200);
	sl_metrics_request(a, "gateway", 204);
	sl_metrics_request(b, "gateway", 201);
	sl_metrics_request(a, "admin", 404);
	sl_metrics_request(b, "gateway", 503);
	sl_metrics_request(a, "gateway", 0);   /* never answered properly */
	sl_metrics_request(a, "gateway", 700); /* out of range */
	sl_metrics_request(a, NULL, 200);
	render_m(m);
	assert_non_null(
	        strstr(big, "sluice_requests_total{listener=\"gateway\",code=\"2xx\"} 3\n"));
	assert_non_null(
	        strstr(big, "sluice_requests_total{listener=\"gateway\",code=\"5xx\"} 1\n"));
	assert_non_null(
	        strstr(big, "sluice_requests_total{listener=\"gateway\",code=\"other\"} 2\n"));
	assert_non_null(strstr(big, "sluice_requests_total{listener=\"admin\",code=\"4xx\"} 1\n"));
	assert_null(strstr(big, "sluice_requests_total{listener=\"admin\",code=\"other\"}"));
	assert_non_null(
	        strstr(big, "sluice_requests_total{listener=\"unknown\",code=\"2xx\"} 1\n"));
	/* no decision histogram for a listener that decided nothing */
	assert_null(strstr(big, "sluice_decision_seconds_count{listener=\"admin\"}"));
	/* no upstream series for listeners that never had an upstream */
	assert_null(strstr(big, "sluice_upstream_seconds_bucket{"));
	assert_null(strstr(big, "sluice_upstream_responses_total{"));
	sl_metrics_destroy(m);
}

static void upstream_histogram_is_cumulative_and_failures_have_no_latency(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(1);
	struct sl_metrics_shard *s = sl_metrics_shard(m, 0);

	sl_metrics_upstream(s, "gw", 200, 500000);      /* 0.5 ms: le 0.001 */
	sl_metrics_upstream(s, "gw", 302, 3000000);     /* 3 ms: le 0.005 */
	sl_metrics_upstream(s, "gw", 500, 60000000000); /* 60 s: +Inf only */
	sl_metrics_upstream(s, "gw", 0, 123);           /* no answer */
	render_m(m);
	assert_non_null(
	        strstr(big, "sluice_upstream_seconds_bucket{listener=\"gw\",le=\"0.001\"} 1\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_seconds_bucket{listener=\"gw\",le=\"0.0025\"} 1\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_seconds_bucket{listener=\"gw\",le=\"0.005\"} 2\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_seconds_bucket{listener=\"gw\",le=\"30\"} 2\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_seconds_bucket{listener=\"gw\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(big, "sluice_upstream_seconds_count{listener=\"gw\"} 3\n"));
	assert_non_null(strstr(big, "sluice_upstream_seconds_sum{listener=\"gw\"} 60.003500000\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_responses_total{listener=\"gw\",code=\"none\"} 1\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_responses_total{listener=\"gw\",code=\"3xx\"} 1\n"));
	assert_non_null(
	        strstr(big, "sluice_upstream_responses_total{listener=\"gw\",code=\"5xx\"} 1\n"));
	sl_metrics_destroy(m);
}

static void delayed_gauge_sums_shards_and_never_goes_below_zero(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(2);

	sl_metrics_delayed(sl_metrics_shard(m, 0), 1);
	sl_metrics_delayed(sl_metrics_shard(m, 0), 1);
	sl_metrics_delayed(sl_metrics_shard(m, 1), 1);
	sl_metrics_delayed(sl_metrics_shard(m, 1), -1);
	sl_metrics_delayed(sl_metrics_shard(m, 1), -1); /* a stray -1 */
	render_m(m);
	assert_non_null(strstr(big, "\nsluice_requests_delayed 2\n"));
	sl_metrics_delayed(NULL, 1); /* no shard: ignored */
	sl_metrics_destroy(m);
}

static void config_loads_count_reloads_and_keep_the_good_hash(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(1);

	render_m(m);
	assert_non_null(strstr(big, "sluice_config_reloads_total{result=\"ok\"} 0\n"));
	assert_null(strstr(big, "sluice_config_info{"));
	sl_metrics_config(m, true, 0xabcULL, 1700000000123456789LL); /* start-up */
	render_m(m);
	assert_non_null(strstr(big, "sluice_config_reloads_total{result=\"ok\"} 0\n"));
	assert_non_null(strstr(big, "sluice_config_info{hash=\"0000000000000abc\"} 1\n"));
	assert_non_null(strstr(big, "sluice_config_loaded_timestamp_seconds 1700000000.123\n"));
	assert_non_null(strstr(big, "sluice_config_last_reload_successful 1\n"));
	sl_metrics_config(m, false, 0, 1700000100000000000LL);
	render_m(m);
	assert_non_null(strstr(big, "sluice_config_reloads_total{result=\"failed\"} 1\n"));
	assert_non_null(strstr(big, "sluice_config_last_reload_successful 0\n"));
	assert_non_null(strstr(big, "sluice_config_info{hash=\"0000000000000abc\"} 1\n"));
	sl_metrics_config(m, true, 0xdefULL, 1700000200000000000LL);
	render_m(m);
	assert_non_null(strstr(big, "sluice_config_reloads_total{result=\"ok\"} 1\n"));
	assert_non_null(strstr(big, "sluice_config_info{hash=\"0000000000000def\"} 1\n"));
	assert_non_null(strstr(big, "sluice_config_loaded_timestamp_seconds 1700000200.000\n"));
	assert_non_null(strstr(big, "sluice_build_info{version=\"" SLUICE_VERSION "\"} 1\n"));
	sl_metrics_destroy(m);
}

static void gauges_appear_once_set_and_the_flush_lag_grows(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(1);
	struct timespec ts;
	double lag;
	const char *p;

	render_m(m);
	assert_null(strstr(big, "sluice_accounts_loaded"));
	assert_null(strstr(big, "sluice_usage_flush_lag_seconds"));
	sl_metrics_set_gauge(m, SL_GAUGE_ACCOUNTS, 42);
	sl_metrics_set_gauge(m, SL_GAUGE_KEYS, 7);
	sl_metrics_set_gauge(m, SL_GAUGE_N, 1); /* out of range: ignored */
	clock_gettime(CLOCK_REALTIME, &ts);
	sl_metrics_set_gauge(m, SL_GAUGE_USAGE_FLUSHED,
	                     (int64_t)(ts.tv_sec - 5) * 1000000000LL + ts.tv_nsec);
	render_m(m);
	assert_non_null(
	        strstr(big, "# TYPE sluice_accounts_loaded gauge\nsluice_accounts_loaded 42\n"));
	assert_non_null(strstr(big, "\nsluice_keys_loaded 7\n"));
	p = strstr(big, "\nsluice_usage_flush_lag_seconds ");
	assert_non_null(p);
	lag = strtod(p + strlen("\nsluice_usage_flush_lag_seconds "), NULL);
	assert_true(lag >= 5.0 && lag < 65.0);
	sl_metrics_destroy(m);
}

static void store_failures_are_counted_by_kind(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(1);
	struct sl_metrics_shard *s = sl_metrics_shard(m, 0);
	static struct sl_eval ev;

	memset(&ev, 0, sizeof(ev));
	ev.decision.denied = -1;
	ev.decision.primary = -1;
	ev.batch.status = SL_ETIMEDOUT;
	sl_metrics_eval(s, "gw", &ev, 1000);
	sl_metrics_eval(s, "gw", &ev, 1000);
	ev.batch.status = SL_EFULL;
	sl_metrics_eval(s, "gw", &ev, 1000);
	ev.batch.status = -77; /* not a known code */
	sl_metrics_eval(s, "gw", &ev, 1000);
	render_m(m);
	assert_non_null(strstr(big, "sluice_store_decision_errors_total{kind=\"timeout\"} 2\n"));
	assert_non_null(strstr(big, "sluice_store_decision_errors_total{kind=\"io\"} 0\n"));
	assert_non_null(strstr(big, "sluice_store_decision_errors_total{kind=\"full\"} 1\n"));
	assert_non_null(strstr(big, "sluice_store_decision_errors_total{kind=\"other\"} 1\n"));
	assert_null(strstr(big, "kind=\"nomem\""));
	assert_non_null(strstr(
	        big,
	        "sluice_decisions_total{listener=\"gw\",limit=\"none\",outcome=\"error\"} 4\n"));
	sl_metrics_destroy(m);
}

static void a_listener_table_that_is_full_counts_overflow_not_garbage(void **unused)
{
	(void)unused;
	struct sl_metrics *m = sl_metrics_create(1);
	struct sl_metrics_shard *s = sl_metrics_shard(m, 0);
	char name[32];

	for (int i = 0; i < SL_METRICS_LISTENERS + 5; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		sl_metrics_request(s, name, 200);
	}
	sl_metrics_request(s, "l0", 200); /* cached entry is another: found by scan */
	render_m(m);
	assert_non_null(strstr(big, "sluice_requests_total{listener=\"l0\",code=\"2xx\"} 2\n"));
	snprintf(name, sizeof(name), "l%d", SL_METRICS_LISTENERS - 1);
	assert_non_null(strstr(big, name));
	snprintf(name, sizeof(name), "\"l%d\"", SL_METRICS_LISTENERS);
	assert_null(strstr(big, name));
	sl_metrics_destroy(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(store_evictions_are_rendered_per_limit_and_kind),
	        cmocka_unit_test(an_empty_store_has_totals_and_no_limit_series),
	        cmocka_unit_test(requests_are_counted_by_listener_and_status_class),
	        cmocka_unit_test(upstream_histogram_is_cumulative_and_failures_have_no_latency),
	        cmocka_unit_test(delayed_gauge_sums_shards_and_never_goes_below_zero),
	        cmocka_unit_test(config_loads_count_reloads_and_keep_the_good_hash),
	        cmocka_unit_test(gauges_appear_once_set_and_the_flush_lag_grows),
	        cmocka_unit_test(store_failures_are_counted_by_kind),
	        cmocka_unit_test(a_listener_table_that_is_full_counts_overflow_not_garbage),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
