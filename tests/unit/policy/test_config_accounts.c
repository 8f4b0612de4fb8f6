/* The `accounts:` section, sha256: keys in identify.accounts, the per-plan
 * map warning of `sluice validate`, and account overrides compiled with
 * the limits' own parsers (src/policy/config-accounts.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <sluice/error.h>
#include "policy/test_config_fixture.h"

static const char plans_yaml[] = "plans: { free: {}, pro: {}, custom: {} }\n"
                                 "limits:\n"
                                 "  - name: hourly\n"
                                 "    key: account\n"
                                 "    quota: { free: 10/hour, pro: 100/hour, custom: 5/hour }\n"
                                 "  - name: tier\n"
                                 "    key: account\n"
                                 "    rate: { free: 1/s, pro: 10/s }\n"
                                 "  - name: daily\n"
                                 "    key: account\n"
                                 "    quota: { free: 100/day }\n";

static void plan_missing_from_some_maps_is_a_warning_at_the_limit(void **state)
{
	struct sl_policy *p = NULL;
	size_t line, col;

	(void)state;
	assert_int_equal(load_text(plans_yaml, &p), 0);
	assert_non_null(p);
	/* tier lacks custom; daily lacks pro and custom */
	assert_int_equal(fixture_diag.nwarn, 3);
	pos_of(plans_yaml, "name: tier", 1, &line, &col);
	assert_true(find_diag(line, col, "warning: limit 'tier': plan 'custom' is missing") >= 0);
	pos_of(plans_yaml, "name: daily", 1, &line, &col);
	assert_true(find_diag(line, col, "warning: limit 'daily': plan 'pro' is missing") >= 0);
	assert_true(find_diag(line, col, "warning: limit 'daily': plan 'custom' is missing") >= 0);
	sl_policy_unref(p);
}

static void plans_in_every_map_are_no_warning(void **state)
{
	struct sl_policy *p = NULL;

	(void)state;
	assert_int_equal(
	        load_text("plans: { free: {}, pro: {} }\n"
	                  "limits:\n"
	                  "  - { name: a, key: account, rate: { free: 1/s, pro: 2/s } }\n"
	                  "  - { name: b, key: account, quota: { free: 1/day, pro: 2/day } }\n"
	                  "  - { name: c, key: ip, rate: 5/s }\n",
	                  &p),
	        0);
	assert_int_equal(fixture_diag.nwarn, 0);
	sl_policy_unref(p);
}

static void accounts_section_defaults_and_errors(void **state)
{
	struct sl_policy *p = NULL;
	size_t line, col;
	static const char bad[] =
	        "accounts: { store: mysql, key_prefix: \"sk live\", colour: 1 }\n";

	(void)state;
	assert_int_equal(load_text("accounts: {}\n", &p), 0);
	assert_int_equal(p->account_store.store, SL_ACCOUNTS_SQLITE);
	assert_non_null(strstr(p->account_store.path, "/tmp/accounts.db"));
	assert_string_equal(p->account_store.key_prefix, "sk_live_");
	sl_policy_unref(p);
	assert_int_equal(load_text("listeners: []\n", &p), 0);
	assert_int_equal(p->account_store.store, SL_ACCOUNTS_NONE);
	sl_policy_unref(p);
	assert_int_equal(load_text("accounts: { path: data/acc.db }\n", &p), 0);
	assert_string_equal(p->account_store.path, "/tmp/data/acc.db");
	sl_policy_unref(p);

	assert_int_equal(load_text(bad, &p), SL_ECONFIG);
	pos_of(bad, "colour", 1, &line, &col);
	assert_true(find_diag(line, col, "unknown key 'colour' in accounts") >= 0);
	pos_of(bad, "mysql", 1, &line, &col);
	assert_true(find_diag(line, col, "unknown accounts.store 'mysql'") >= 0);
	pos_of(bad, "\"sk live\"", 1, &line, &col);
	assert_true(find_diag(line, col, "accounts.key_prefix 'sk live'") >= 0);
	assert_int_equal(load_text("accounts: { store: redis }\n", &p), SL_ECONFIG);
	assert_true(find_diag(1, 20, "set store.type: redis") >= 0);
	assert_int_equal(load_text("accounts: { store: none, path: x.db }\n", &p), SL_ECONFIG);
	assert_true(find_diag(1, 32, "accounts.path applies to store: sqlite only") >= 0);
}

static void compact_after_is_a_count_for_redis_only(void **state)
{
	static const char redis[] = "store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	                            "accounts: { store: redis, compact_after: 5000 }\n";
	static const char off[] = "store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	                          "accounts: { store: redis, compact_after: 0 }\n";
	static const char bad[] = "store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	                          "accounts: { store: redis, compact_after: lots }\n";
	static const char sqlite[] = "accounts: { store: sqlite, compact_after: 10 }\n";
	struct sl_policy *p = NULL;
	size_t line, col;

	(void)state;
	assert_int_equal(load_text("store: { type: redis, url: \"redis://127.0.0.1:6379\" "
	                           "}\naccounts: { store: redis }\n",
	                           &p),
	                 0);
	assert_int_equal(p->account_store.compact_after, SL_ACCOUNTS_COMPACT_AFTER);
	assert_int_equal(SL_ACCOUNTS_COMPACT_AFTER, 100000);
	sl_policy_unref(p);
	assert_int_equal(load_text(redis, &p), 0);
	assert_int_equal(p->account_store.compact_after, 5000);
	sl_policy_unref(p);
	assert_int_equal(load_text(off, &p), 0);
	assert_int_equal(p->account_store.compact_after, 0);
	sl_policy_unref(p);
	assert_int_equal(load_text(bad, &p), SL_ECONFIG);
	pos_of(bad, "lots", 1, &line, &col);
	assert_true(find_diag(line, col, "accounts.compact_after") >= 0);
	assert_int_equal(load_text(sqlite, &p), SL_ECONFIG);
	pos_of(sqlite, "10", 1, &line, &col);
	assert_true(find_diag(line, col, "accounts.compact_after applies to store: redis only") >=
	            0);
}

static void redis_accounts_refuse_a_cluster_and_bring_the_history(void **state)
{
	static const char cluster[] =
	        "store: { type: redis, url: \"redis://127.0.0.1:7000\", cluster: true }\n"
	        "accounts: { store: redis }\n";
	static const char plain[] = "store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	                            "accounts: { store: redis }\n";
	static const char keep_sqlite[] =
	        "store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	        "accounts: { store: redis }\n"
	        "usage: { store: sqlite }\n";
	struct sl_policy *p = NULL;
	size_t line, col;

	(void)state;
	assert_int_equal(load_text(cluster, &p), SL_ECONFIG);
	pos_of(cluster, "redis }", 1, &line, &col);
	assert_true(find_diag(line, col,
	                      "accounts.store: redis needs a plain Redis, not a cluster") >= 0);
	/* the usage history follows the accounts into Redis (DESIGN 7) ... */
	assert_int_equal(load_text(plain, &p), 0);
	assert_true(p->usage.redis);
	assert_string_equal(p->usage.redis_url, "redis://127.0.0.1:6379");
	sl_policy_unref(p);
	/* ... unless usage.store says otherwise */
	assert_int_equal(load_text(keep_sqlite, &p), 0);
	assert_false(p->usage.redis);
	sl_policy_unref(p);
	assert_int_equal(load_text("store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n"
	                           "accounts: { store: sqlite }\n",
	                           &p),
	                 0);
	assert_false(p->usage.redis);
	sl_policy_unref(p);
}

static void sha256_keys_are_digests_not_text(void **state)
{
	static const char yaml[] =
	        "plans: { free: {} }\n"
	        "identify:\n"
	        "  accounts:\n"
	        "    - account: a\n"
	        "      plan: free\n"
	        "      keys: "
	        "[\"sha256:9F86D081884C7D659A2FEAA0C55AD015A3BF4F1B2B0B822CD15D6C15B0F00A08\"]\n";
	static const char bad[] = "plans: { free: {} }\n"
	                          "identify:\n"
	                          "  accounts:\n"
	                          "    - { account: a, plan: free, keys: [\"sha256:abc\"] }\n";
	uint8_t want[32];
	struct sl_policy *p = NULL;
	size_t line, col;

	(void)state;
	assert_int_equal(load_text(yaml, &p), 0);
	assert_int_equal(p->nkeys, 1);
	SHA256((const unsigned char *)"test", 4, want);
	assert_memory_equal(p->keys[0].sha256, want, 32);
	sl_policy_unref(p);
	assert_int_equal(load_text(bad, &p), SL_ECONFIG);
	pos_of(bad, "\"sha256:abc\"", 1, &line, &col);
	assert_true(find_diag(line, col, "expected 64 hex digits after sha256:") >= 0);
}

static const char limits_yaml[] =
        "plans: { free: {}, pro: {} }\n"
        "limits:\n"
        "  - { name: hourly, key: account, quota: { free: 10/hour, pro: 100/hour } }\n"
        "  - { name: tier, key: account, rate: 10/min, burst: 5 }\n"
        "  - { name: slots, key: account, concurrency: 4, lease: 30s }\n"
        "  - { name: win, key: account, sliding: 100/min }\n";

struct ovr_case {
	const char *limit, *value;
	int rc;
	uint8_t algo;
	uint64_t n, burst, queue;
	const char *msg; /* substring of the error */
};

static const struct ovr_case ovr_cases[] = {
        {"hourly", "20000/hour", 0, SL_ALGO_QUOTA, 20000, 0, 0, NULL},
        {"hourly", "\"unlimited\"", 0, SL_ALGO_UNLIMITED, 0, 0, 0, NULL},
        {"hourly", "deny", 0, SL_ALGO_DENY, 0, 0, 0, NULL},
        {"hourly", "{\"quota\":\"5/day\"}", 0, SL_ALGO_QUOTA, 5, 0, 0, NULL},
        {"tier", "20000/min", 0, SL_ALGO_RATE, 20000, 20000, 0, NULL},
        {"tier", "{\"rate\":\"900/min\",\"burst\":15,\"queue\":5}", 0, SL_ALGO_RATE, 900, 15, 5,
         NULL},
        {"tier", "{rate: 900/min, burst: 15, queue: 5}", 0, SL_ALGO_RATE, 900, 15, 5, NULL},
        {"slots", "50", 0, SL_ALGO_CONCURRENCY, 50, 0, 0, NULL},
        {"win", "7/s", 0, SL_ALGO_SLIDING, 7, 0, 0, NULL},
        {"nope", "1/s", SL_ENOENT, 0, 0, 0, 0, NULL},
        {"hourly", "5/min", SL_EINVAL, 0, 0, 0, 0, "overrides.hourly: quota '5/min'"},
        {"tier", "fast", SL_EINVAL, 0, 0, 0, 0, "bad rate 'fast'"},
        {"tier", "{\"quota\":\"5/day\"}", SL_EINVAL, 0, 0, 0, 0, "is a rate limit"},
        {"tier", "{\"burst\":5}", SL_EINVAL, 0, 0, 0, 0, "needs rate"},
        {"tier", "{\"rate\":\"5/s\",\"colour\":1}", SL_EINVAL, 0, 0, 0, 0, "unknown key 'colour'"},
        {"slots", "1.5", SL_EINVAL, 0, 0, 0, 0, "concurrency"},
        {"slots", "{\"concurrency\":3,\"burst\":2}", SL_EINVAL, 0, 0, 0, 0, "rate only"},
        {"tier", "[1, 2]", SL_EINVAL, 0, 0, 0, 0, "overrides.tier"},
        {"tier", "{", SL_EINVAL, 0, 0, 0, 0, "not a value"},
};

static void overrides_compile_with_the_limits_parsers(void **state)
{
	struct sl_policy *p = NULL;

	(void)state;
	assert_int_equal(load_text(limits_yaml, &p), 0);
	for (size_t i = 0; i < sizeof(ovr_cases) / sizeof(ovr_cases[0]); i++) {
		const struct ovr_case *c = &ovr_cases[i];
		struct sl_live_override o;
		char err[256];
		int rc = sl_policy_override(p, c->limit, c->value, strlen(c->value), &o, err,
		                            sizeof(err));
		if (rc != c->rc)
			fail_msg("row %zu (%s: %s): rc %d, want %d (%s)", i, c->limit, c->value, rc,
			         c->rc, err);
		if (c->msg && !strstr(err, c->msg))
			fail_msg("row %zu: '%s' lacks '%s'", i, err, c->msg);
		if (rc != 0)
			continue;
		assert_string_equal(o.limit, c->limit);
		assert_int_equal(o.spec.algo, c->algo);
		if (c->n)
			assert_int_equal(o.spec.n, c->n);
		if (c->burst)
			assert_int_equal(o.spec.burst, c->burst);
		assert_int_equal(o.spec.queue, c->queue);
		assert_int_not_equal(o.limit_id, 0);
	}
	sl_policy_unref(p);
}

/* DESIGN.md section 8: the override of a limit counts on the limit's
 * counter (same algorithm), so moving to an override keeps usage. */
static void override_keeps_the_limits_counter(void **state)
{
	struct sl_policy *p = NULL;
	struct sl_live_override o;
	char err[128];

	(void)state;
	assert_int_equal(load_text(limits_yaml, &p), 0);
	assert_int_equal(sl_policy_override(p, "hourly", "7/hour", 6, &o, err, sizeof(err)), 0);
	assert_int_equal(o.limit_id, p->limits[0].plan_limit_id[0]);
	assert_int_equal(sl_policy_override(p, "tier", "9/s", 3, &o, err, sizeof(err)), 0);
	assert_int_equal(o.limit_id, p->limits[1].limit_id);
	assert_int_equal(sl_policy_override(p, "slots", "9", 1, &o, err, sizeof(err)), 0);
	assert_int_equal(o.limit_id, p->limits[2].limit_id);
	assert_int_equal(o.spec.period, 30 * SL_NS_PER_SEC); /* the limit's lease */
	sl_policy_unref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(plan_missing_from_some_maps_is_a_warning_at_the_limit),
	        cmocka_unit_test(plans_in_every_map_are_no_warning),
	        cmocka_unit_test(accounts_section_defaults_and_errors),
	        cmocka_unit_test(compact_after_is_a_count_for_redis_only),
	        cmocka_unit_test(redis_accounts_refuse_a_cluster_and_bring_the_history),
	        cmocka_unit_test(sha256_keys_are_digests_not_text),
	        cmocka_unit_test(overrides_compile_with_the_limits_parsers),
	        cmocka_unit_test(override_keeps_the_limits_counter),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
