/* The store part of /metrics: per-limit eviction series of a full memory
 * store (kind usage / idle), the totals, the unstored series of
 * store.on_full, and label escaping of limit names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "net/metrics.h"

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

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(store_evictions_are_rendered_per_limit_and_kind),
	        cmocka_unit_test(an_empty_store_has_totals_and_no_limit_series),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
