/* The store-full log line (src/daemon/evictlog.c, compiled in here: the
 * daemon's files are not a library): nothing to say without new counts,
 * one line naming each limit with what changed since the previous line,
 * and every kind of count. The 10 s spacing is the timer's (on_poll). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "daemon/evictlog.h"

static void line_reports_changes_per_limit_since_the_last_line(void **unused)
{
	(void)unused;
	struct sl_evictlog l;
	struct sl_store_stats st;
	char buf[512];

	memset(&l, 0, sizeof(l));
	memset(&st, 0, sizeof(st));
	assert_int_equal(sl_evictlog_line(&l, &st, buf, sizeof(buf)), 0);
	st.limits[0] =
	        (struct sl_store_limit_stats){.name = "ip", .evicted_usage = 5, .evicted_idle = 9};
	st.limits[1] = (struct sl_store_limit_stats){.name = "daily", .evicted_usage = 2};
	st.nlimits = 2;
	assert_true(sl_evictlog_line(&l, &st, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "sluice: store full: evicted states with usage ip 5, daily 2");
	/* Same counts: nothing new. Idle evictions alone are not logged. */
	st.limits[0].evicted_idle = 100;
	assert_int_equal(sl_evictlog_line(&l, &st, buf, sizeof(buf)), 0);
	/* Deltas, not totals; denied and admitted keys get their own part. */
	st.limits[1].evicted_usage = 7;
	st.limits[0].full_denied = 3;
	st.limits[1].full_admitted = 1;
	assert_true(sl_evictlog_line(&l, &st, buf, sizeof(buf)) > 0);
	assert_string_equal(buf, "sluice: store full: evicted states with usage daily 5; new keys "
	                         "denied (on_full: deny_new) ip 3; new keys admitted unstored "
	                         "(on_full: allow_new) daily 1");
	/* A small buffer truncates, never overflows. */
	st.limits[0].evicted_usage = 50;
	size_t n = sl_evictlog_line(&l, &st, buf, 24);
	assert_true(n < 24);
	assert_int_equal(strlen(buf), n);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(line_reports_changes_per_limit_since_the_last_line),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
