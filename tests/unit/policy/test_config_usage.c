/* The `usage:` section (src/policy/config-usage.c): defaults when absent
 * (on, usage.db beside the config, 10 s, 48 h / 90 d / 2 y), every key
 * read, a relative path made relative to the config file's directory,
 * and each bad value reported as file:line:col at its node. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/test_config_fixture.h"

#define H (3600 * SL_NS_PER_SEC)
#define D (86400 * SL_NS_PER_SEC)

static void absent_section_gives_the_defaults(void **state)
{
	struct sl_policy *p = NULL;
	char want[80];

	(void)state;
	assert_int_equal(load_text("limits: []\n", &p), 0);
	assert_true(p->usage.enabled);
	assert_int_equal(p->usage.flush_interval, 10 * SL_NS_PER_SEC);
	assert_int_equal(p->usage.keep_minutes, 48 * H);
	assert_int_equal(p->usage.keep_hours, 90 * D);
	assert_int_equal(p->usage.keep_days, 730 * D);
	assert_int_equal(p->usage.max_series, 16384);
	snprintf(want, sizeof(want), "/tmp/usage.db"); /* fixtures live in /tmp */
	assert_string_equal(p->usage.path, want);
	sl_policy_unref(p);
}

static void every_key_is_read(void **state)
{
	struct sl_policy *p = NULL;

	(void)state;
	assert_int_equal(load_text("usage:\n  enabled: false\n  path: hist/u.db\n"
	                           "  flush_interval: 250ms\n  max_series: 1000\n"
	                           "  retention: { minutes: 2h, hours: 7d, days: 30d }\n",
	                           &p),
	                 0);
	assert_false(p->usage.enabled);
	assert_string_equal(p->usage.path, "/tmp/hist/u.db");
	assert_int_equal(p->usage.flush_interval, 250 * 1000000LL);
	assert_int_equal(p->usage.max_series, 1000);
	assert_int_equal(p->usage.keep_minutes, 2 * H);
	assert_int_equal(p->usage.keep_hours, 7 * D);
	assert_int_equal(p->usage.keep_days, 30 * D);
	sl_policy_unref(p);
	assert_int_equal(load_text("usage:\n  path: /var/lib/sluice/u.db\n", &p), 0);
	assert_string_equal(p->usage.path, "/var/lib/sluice/u.db");
	sl_policy_unref(p);
	assert_int_equal(
	        load_text("store: { type: redis, url: \"redis://10.0.0.5:6380,10.0.0.6:6380\" }\n"
	                  "usage: { store: redis }\n",
	                  &p),
	        0);
	assert_true(p->usage.redis);
	assert_string_equal(p->usage.redis_url, "redis://10.0.0.5:6380"); /* the first seed */
	sl_policy_unref(p);
	assert_int_equal(load_text("usage: ~\n", &p), 0);
	assert_false(p->usage.redis);
	assert_true(p->usage.enabled);
	sl_policy_unref(p);
}

struct err_case {
	const char *yaml;
	const char *needle;
	const char *msg;
};

static const struct err_case cases[] = {
        {"usage: { flush: 1s }\n", "flush", "unknown key 'flush' in usage (expected one of"},
        {"usage: { flush_interval: 11s }\n", "11s", "between 100ms and 10s"},
        {"usage: { flush_interval: 50ms }\n", "50ms", "between 100ms and 10s"},
        {"usage: { flush_interval: often }\n", "often", "usage.flush_interval: bad duration"},
        {"usage: { enabled: maybe }\n", "maybe", "must be true or false"},
        {"usage: { max_series: 3 }\n", "3", "usage.max_series"},
        {"usage: { path: [a] }\n", "[a]", "usage.path must be a non-empty scalar"},
        {"usage: { retention: { minutes: 30s } }\n", "30s", "between 1m and 100 years"},
        {"usage: { retention: { hours: 30m } }\n", "30m", "between 1h and 100 years"},
        {"usage: { retention: { days: 5h } }\n", "5h", "between 1d and 100 years"},
        {"usage: { retention: { weeks: 5 } }\n", "weeks", "unknown key 'weeks' in usage.retention"},
        {"usage: { retention: { minutes: 100d } }\n", "{ minutes", "hours must be kept at least"},
        {"usage: [1]\n", "[1]", "usage must be a mapping"},
        {"usage: { store: mongo }\n", "mongo", "usage.store must be sqlite or redis, not 'mongo'"},
        {"usage: { store: redis }\n", "redis", "it needs store.type: redis"},
};

static void each_bad_value_is_reported_at_its_node(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sl_policy *p = (struct sl_policy *)1;
		size_t line, col;
		int rc = load_text(cases[i].yaml, &p);

		pos_of(cases[i].yaml, cases[i].needle, 1, &line, &col);
		if (rc != SL_ECONFIG || find_diag(line, col, cases[i].msg) < 0) {
			fprintf(stderr, "case %zu: want %zu:%zu: %s\n", i, line, col, cases[i].msg);
			dump_diag();
		}
		assert_int_equal(rc, SL_ECONFIG);
		assert_null(p);
		assert_true(find_diag(line, col, cases[i].msg) >= 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(absent_section_gives_the_defaults),
	        cmocka_unit_test(every_key_is_read),
	        cmocka_unit_test(each_bad_value_is_reported_at_its_node),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
