/* Config errors (src/policy/config*.c): each kind of mistake is reported as
 * "file:line:col: message" at the offending node, and every error of a file
 * is reported in one load. Fixtures are written to a temp file; positions
 * are the 1-based line and column of a needle in the fixture text. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sluice/error.h>
#include "policy/test_config_fixture.h"

struct err_case {
	const char *yaml;
	const char *needle; /* where the error must point */
	int nth;            /* occurrence of needle (0 means 1) */
	const char *msg;    /* substring of the message */
};

static const struct err_case cases[] = {
        /* unknown keys, with what was expected */
        {"serverr: {}\n", "serverr", 0,
         "unknown key 'serverr' in the top level (expected one of: server, listeners"},
        {"limits:\n  - { name: a, key: ip, rate: 1/s, brust: 3 }\n", "brust", 0,
         "unknown key 'brust' in limit (expected one of: name, key, rate, burst, queue"},
        {"store: { type: memory, pools: 3 }\n", "pools", 0, "unknown key 'pools' in store"},
        /* wrong types */
        {"limits: 5\n", "5", 0, "limits must be a list"},
        {"server: { workers: [1] }\n", "[1]", 0,
         "server.workers must be a non-empty scalar, not a list"},
        {"server: [1]\n", "[1]", 0, "server must be a mapping, not a list"},
        {"server: { access_log: maybe }\n", "maybe", 0, "must be true or false"},
        {"server: { workers: 0 }\n", "0", 0,
         "server.workers (auto or a count) must be between 1 and 1024"},
        /* units */
        {"limits:\n  - { name: a, key: ip, rate: 300/mn }\n", "300/mn", 0, "bad rate '300/mn'"},
        {"limits:\n  - { name: a, key: ip, rate: 0/min }\n", "0/min", 0, "N must be at least 1"},
        {"limits:\n  - { name: a, key: ip, rate: 5/month }\n", "5/month", 0,
         "only quota counts by month"},
        {"limits:\n  - { name: a, key: ip, quota: 5/90m }\n", "5/90m", 0, "calendar windows"},
        {"limits:\n  - { name: a, key: ip, sliding: soon }\n", "soon", 0, "bad sliding 'soon'"},
        {"limits:\n  - { name: a, key: ip, concurrency: 1.5 }\n", "1.5", 0,
         "concurrency (a slot count"},
        {"limits:\n  - { name: a, key: ip, quota: 5/day, tz_offset: \"+25:00\" }\n", "\"+25", 0,
         "bad tz_offset"},
        {"admin: { lease_ttl: 10 }\n", "10", 0, "admin.lease_ttl: bad duration '10'"},
        {"store: { type: memory, memory: 64XB }\n", "64XB", 0, "store.memory: bad size '64XB'"},
        {"store: { type: redis, url: \"redis://h:1\", timeout: 1.5x }\n", "1.5x", 0,
         "bad duration"},
        /* plans */
        {"plans: { free: {} }\nlimits:\n  - { name: a, key: account, rate: { free: 1/s, gold: 2/s "
         "} }\n",
         "gold", 0, "rate: unknown plan 'gold' (plans: free)"},
        {"plans: { free: {} }\nlimits:\n  - { name: a, key: key, rate: { free: 1/s }, burst: { "
         "pro: 2 } }\n",
         "pro", 0, "burst: unknown plan 'pro'"},
        {"plans: { free: {}, pro: {} }\nlimits:\n  - { name: a, key: key, rate: { free: 1/s }, "
         "burst: { pro: 2 } }\n",
         "pro: 2", 0, "burst for plan 'pro', which rate does not list"},
        {"plans: { free: {} }\nidentify:\n  accounts: [ { account: a, plan: gold, keys: [k] } ]\n",
         "gold", 0, "unknown plan 'gold'"},
        /* templates */
        {"limits:\n  - { name: a, key: ip, rate: 1/s }\nresponses:\n  headers: { X-A: "
         "\"{limits.ghost.remaining}\" }\n",
         "{limits.ghost", 0, "template names limit 'ghost', which does not exist"},
        {"responses:\n  headers: { X-A: \"{remainin}\" }\n", "{remainin}", 0,
         "unknown template variable {remainin}"},
        {"responses:\n  headers: { X-A: '{limit} / {remainin}' }\n", "{remainin}", 0,
         "unknown template variable"},
        {"responses:\n  rejected: { body: \"a\\\"b {nope}\" }\n", "{nope}", 0,
         "unknown template variable {nope}"},
        {"responses:\n  rejected:\n    body: |\n      {\n        \"a\": {bogus}\n      }\n",
         "{bogus}", 0, "unknown template variable {bogus}"},
        {"limits:\n  - { name: a, key: ip, rate: 1/s, message: \"see {message}\" }\n", "{message}",
         0, "cannot contain {message}"},
        /* limits */
        {"limits:\n  - { name: a, key: ip, rate: 1/s }\n  - { name: a, key: ip, rate: 2/s }\n",
         "a, key", 2, "duplicate limit name 'a'"},
        {"limits:\n  - { name: a, key: ip, rate: 1/s }\nroutes:\n  - { name: r, limits: [ { name: "
         "a, key: ip, rate: 2/s } ] }\n",
         "a, key: ip, rate: 2/s", 0, "duplicate limit name 'a'"},
        {"limits:\n  - { name: a, key: ip }\n", "{ name: a", 0,
         "limit 'a' needs one of rate, quota, sliding or concurrency"},
        {"limits:\n  - { name: a, key: ip, rate: 1/s, sliding: 5/min }\n", "5/min", 0,
         "limit 'a' has both rate and sliding"},
        {"limits:\n  - { name: a, key: [ip, cookie], rate: 1/s }\n", "cookie", 0,
         "unknown key descriptor 'cookie'"},
        {"limits:\n  - { name: a, key: ip, quota: 5/day, burst: 2 }\n", "2 }", 0,
         "burst applies to rate only"},
        {"limits:\n  - { name: a, key: ip, rate: 1/s, status: 200 }\n", "200", 0,
         "status must be between 400 and 599"},
        {"limits:\n  - { name: \"a b\", key: ip, rate: 1/s }\n", "\"a b\"", 0, "limit name 'a b'"},
        /* identify */
        {"identify:\n  ip: { trusted_proxies: [\"10.0.0.1/8\"] }\n", "\"10.0.0.1/8\"", 0,
         "bad CIDR '10.0.0.1/8'"},
        {"identify:\n  ip: { trusted_proxies: [\"::1/129\"] }\n", "\"::1/129\"", 0, "bad CIDR"},
        {"identify:\n  ip: { trusted_proxies: [\"1.2.3\"] }\n", "\"1.2.3\"", 0, "bad CIDR"},
        {"identify:\n  key: { from: [\"cookie:sid\"] }\n", "\"cookie:sid\"", 0,
         "unknown key source 'cookie:sid'"},
        {"identify:\n  accounts:\n    - { account: a, plan: p, keys: [k1] }\n    - { account: b, "
         "plan: p, keys: [k1] }\nplans: { p: {} }\n",
         "k1", 2, "API key listed twice (first for account 'a')"},
        /* listeners, admin, store */
        {"listeners:\n  - { name: g, listen: \"no-such-host.invalid:80\", mode: check }\n",
         "\"no-such", 0,
         "listen address 'no-such-host.invalid:80': host 'no-such-host.invalid' does not "
         "resolve"},
        {"listeners:\n  - { name: g, listen: \"local_host:80\", mode: check }\n", "\"local_", 0,
         "bad listen address 'local_host:80': 'local_host' is not an IP address or a host name"},
        {"listeners:\n  - { name: g, listen: \"300.1.1.1:80\", mode: check }\n", "\"300", 0,
         "'300.1.1.1' is not an IPv4 address"},
        {"listeners:\n  - { name: g, listen: \"::1:80\", mode: check }\n", "\"::1", 0,
         "an IPv6 address goes in brackets"},
        {"admin: { listen: \"no-such-host.invalid:9901\" }\n", "\"no-such", 0,
         "host 'no-such-host.invalid' does not resolve"},
        {"listeners:\n  - { name: g, listen: \"127.0.0.1:0\", mode: check }\n", "\"127", 0,
         "bad listen address"},
        {"listeners:\n  - { name: g, listen: \"[::1]:8080\", mode: proxy, upstream: \"ftp://x\" "
         "}\n",
         "\"ftp", 0, "bad upstream 'ftp://x'"},
        {"listeners:\n  - { listen: \"127.0.0.1:80\", mode: check }\n", "{ listen", 0,
         "missing required key 'name'"},
        {"listeners:\n  - { name: g, listen: \"127.0.0.1:80\", mode: proxy }\n", "{ name", 0,
         "mode proxy needs 'upstream'"},
        {"listeners:\n  - { name: g, listen: \"127.0.0.1:80\", mode: fast }\n", "fast", 0,
         "unknown mode 'fast'"},
        {"admin: { listen: \"0.0.0.0:9901\" }\n", "\"0.0.0.0", 0, "set admin.token"},
        {"store: { type: redis }\n", "{ type", 0, "type redis needs 'url'"},
        {"store: { type: memory, url: \"redis://x:1\" }\n", "\"redis", 0,
         "store.url applies to type: redis only"},
        {"store: { type: etcd }\n", "etcd", 0, "unknown store.type 'etcd'"},
        {"store: { type: memory, snapshot_interval: 5ms }\n", "5ms", 0,
         "store.snapshot_interval must be at least 10ms, or 0 or off"},
        {"store: { type: memory, snapshot_interval: soon }\n", "soon", 0,
         "store.snapshot_interval: bad duration 'soon'"},
        {"store: { type: redis, url: \"redis://h:1\", snapshot_interval: 1s }\n", "1s", 0,
         "store.snapshot_interval applies to type: memory only"},
        {"store: { type: memory, on_full: drop_old }\n", "drop_old", 0,
         "store.on_full must be evict, deny_new or allow_new, not 'drop_old'"},
        {"store: { type: redis, url: \"redis://h:1\", on_full: deny_new }\n", "deny_new", 0,
         "store.on_full applies to type: memory only"},
        {"store: { type: redis, url: \"redis://h:1\", mode: fast }\n", "fast", 0,
         "store.mode must be exact or local, not 'fast'"},
        {"store: { type: redis, url: \"redis://h:1\", mode: local, strict_below: 10 }\n", "10 ", 0,
         "store.strict_below must be a percentage from 0% to 100%, not '10'"},
        {"store: { type: redis, url: \"redis://h:1\", mode: local, strict_below: 150% }\n", "150%",
         0, "store.strict_below must be a percentage from 0% to 100%"},
        {"store: { type: redis, url: \"redis://h:1\", mode: local, sync: 0ms }\n", "0ms", 0,
         "store.sync must be between 1ms and 60s"},
        {"store: { type: redis, url: \"redis://h:1\", sync: 50ms }\n", "50ms", 0,
         "store.sync applies to mode: local only"},
        {"store: { type: redis, url: \"redis://h:1\", cluster: true, mode: local }\n", "local", 0,
         "store.mode: local needs a single Redis (cluster: false)"},
        {"store: { type: memory, mode: local }\n", "local", 0,
         "store.mode applies to type: redis only"},
        {"store: { type: redis, url: \"redis://h:1\", module: maybe }\n", "maybe", 0,
         "store.module must be true or false, not 'maybe'"},
        {"store: { type: memory, module: false }\n", "false", 0,
         "store.module applies to type: redis only"},
        /* routes, responses */
        {"routes:\n  - { name: r, match: { path: \"/a/*/b\" } }\n", "\"/a/*/b\"", 0,
         "'*' is allowed only as a final"},
        {"routes:\n  - { name: r, match: { path: \"a\" } }\n", "\"a\"", 0, "must start with '/'"},
        {"routes:\n  - { name: r, cost: 0 }\n", "0", 0, "cost must be between 1"},
        {"routes:\n  - { match: { path: /a } }\n", "{ match", 0,
         "route: missing required key 'name'"},
        {"responses: { preset: ietff }\n", "ietff", 0, "unknown preset 'ietff'"},
        {"responses:\n  headers: { \"Bad Name\": x }\n", "\"Bad Name\"", 0,
         "bad header name 'Bad Name'"},
        /* YAML itself */
        {"limits: [ { name: a\n", "", -1, "YAML syntax error"},
        {"a: 1\n---\nb: 2\n", "b: 2", 0, "one YAML document"},
};

static void each_error_kind_is_reported_at_its_node(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct err_case *e = &cases[i];
		struct sl_policy *p = (struct sl_policy *)1;
		int rc = load_text(e->yaml, &p);
		size_t line, col;
		if (e->nth < 0) {
			/* syntax errors: any position, but a position */
			bool found = false;
			for (size_t k = 0; k < fixture_diag.n; k++)
				found = found || (strstr(fixture_diag.msg[k], e->msg) &&
				                  !strncmp(fixture_diag.msg[k], fixture_path,
				                           strlen(fixture_path)));
			assert_true(found);
			assert_int_equal(rc, SL_ECONFIG);
			continue;
		}
		pos_of(e->yaml, e->needle, e->nth ? e->nth : 1, &line, &col);
		if (rc != SL_ECONFIG || find_diag(line, col, e->msg) < 0) {
			fprintf(stderr, "case %zu: want %zu:%zu: %s\n", i, line, col, e->msg);
			dump_diag();
		}
		assert_int_equal(rc, SL_ECONFIG);
		assert_null(p);
		assert_true(find_diag(line, col, e->msg) >= 0);
	}
}

static void syntax_error_points_at_the_problem(void **state)
{
	(void)state;
	struct sl_policy *p;
	/* an unclosed flow mapping: libyaml notices on line 3 */
	assert_int_equal(load_text("limits:\n  - { name: a, key: ip\nroutes: []\n", &p),
	                 SL_ECONFIG);
	assert_int_equal(fixture_diag.n, 1);
	assert_non_null(strstr(fixture_diag.msg[0], "YAML syntax error"));
	char want[96];
	snprintf(want, sizeof(want), "%s:3:", fixture_path);
	if (strncmp(fixture_diag.msg[0], want, strlen(want)))
		dump_diag();
	assert_int_equal(strncmp(fixture_diag.msg[0], want, strlen(want)), 0);
}

static const char many[] =
        "server: { workers: many }\n"                                           /* 1 */
        "listeners:\n"                                                          /* 2 */
        "  - { name: g, listen: \"nowhere\", mode: proxy, upstream: static }\n" /* 3 */
        "plans: { free: {} }\n"                                                 /* 4 */
        "limits:\n"                                                             /* 5 */
        "  - { name: a, key: ip, rate: 10/fortnight }\n"                        /* 6 */
        "  - { name: b, key: ip, rate: { gold: 1/s } }\n"                       /* 7 */
        "  - { name: a, key: ip, quota: 5/day, sliding: 1/s }\n"                /* 8 */
        "responses:\n"                                                          /* 9 */
        "  headers: { X-T: \"{limits.zzz.limit}\", X-U: \"{nope}\" }\n"         /* 10 */
        "  bogus: 1\n";                                                         /* 11 */

static void every_error_of_a_file_is_reported_in_order(void **state)
{
	(void)state;
	struct sl_policy *p;
	assert_int_equal(load_text(many, &p), SL_ECONFIG);
	static const struct {
		const char *needle;
		int nth;
		const char *msg;
	} want[] = {
	        {"many", 1, "server.workers"},
	        {"\"nowhere\"", 1, "bad listen address"},
	        {"10/fortnight", 1, "bad rate"},
	        {"gold", 1, "unknown plan 'gold'"},
	        {"a, key: ip, quota", 1, "duplicate limit name 'a'"},
	        {"{limits.zzz", 1, "names limit 'zzz'"},
	        {"{nope}", 1, "unknown template variable {nope}"},
	        {"bogus", 1, "unknown key 'bogus' in responses"},
	};
	size_t found = 0;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		size_t line, col;
		pos_of(many, want[i].needle, want[i].nth, &line, &col);
		int k = find_diag(line, col, want[i].msg);
		if (k < 0) {
			fprintf(stderr, "missing %zu:%zu: %s\n", line, col, want[i].msg);
			dump_diag();
		}
		assert_true(k >= 0);
		found++;
	}
	/* plus "has both quota and sliding" on line 8 */
	size_t line, col;
	pos_of(many, "1/s }\n", 1, &line, &col);
	assert_int_equal(line, 8);
	assert_true(find_diag(line, col, "has both quota and sliding") >= 0);
	assert_int_equal(fixture_diag.n, found + 1);
	/* sorted by position */
	for (size_t i = 1; i < fixture_diag.n; i++) {
		size_t l0 = strtoul(fixture_diag.msg[i - 1] + strlen(fixture_path) + 1, NULL, 10);
		size_t l1 = strtoul(fixture_diag.msg[i] + strlen(fixture_path) + 1, NULL, 10);
		assert_true(l0 <= l1);
	}
}

static void missing_file_is_an_error(void **state)
{
	(void)state;
	struct sl_policy *p;
	struct sl_diag d;
	assert_int_equal(sl_policy_load("/nonexistent/sluice.yaml", &p, &d), SL_ECONFIG);
	assert_int_equal(d.n, 1);
	assert_non_null(strstr(d.msg[0], "/nonexistent/sluice.yaml:1:1: cannot open"));
}

static void diag_list_is_bounded(void **state)
{
	(void)state;
	/* 100 bad limits: the list stops at SL_DIAG_MAX with a last note */
	static char big[100 * 64 + 16];
	size_t n = (size_t)snprintf(big, sizeof(big), "limits:\n");
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n,
		                      "  - { name: l%d, key: ip, rate: x }\n", i);
	struct sl_policy *p;
	assert_int_equal(load_text(big, &p), SL_ECONFIG);
	assert_int_equal(fixture_diag.n, SL_DIAG_MAX);
	assert_non_null(strstr(fixture_diag.msg[SL_DIAG_MAX - 1], "too many errors"));
}

/* A check listener never sees the response, so concurrency slots taken
 * through one are never released: validate says so at each such limit,
 * as a warning that does not fail the load. */
static const char check_only[] = "listeners:\n"
                                 "  - { name: auth, listen: \"127.0.0.1:18081\", mode: check }\n"
                                 "plans: { free: {}, pro: {} }\n"
                                 "identify: { key: { required: false } }\n"
                                 "limits:\n"
                                 "  - { name: ip, key: ip, rate: 10/min }\n"
                                 "  - { name: inflight, key: ip, concurrency: 2, lease: 2s }\n"
                                 "  - { name: perplan, key: key, concurrency: { pro: 3 } }\n"
                                 "routes:\n"
                                 "  - name: up\n"
                                 "    match: { path: /upload }\n"
                                 "    limits: [ { name: uploads, key: ip, concurrency: 1 } ]\n";

static void check_only_concurrency_is_a_warning_at_the_limit(void **state)
{
	static const char *const names[] = {"{ name: inflight", "{ name: perplan",
	                                    "{ name: uploads"};
	struct sl_policy *p = NULL;

	(void)state;
	if (load_text(check_only, &p) != 0)
		dump_diag();
	assert_non_null(p);
	assert_int_equal(fixture_diag.n, 3);
	assert_int_equal(fixture_diag.nwarn, 3);
	for (size_t i = 0; i < 3; i++) {
		size_t line, col;
		pos_of(check_only, names[i], 1, &line, &col);
		if (find_diag(line, col, "warning: concurrency limit '") != (int)i) {
			fprintf(stderr, "missing %zu:%zu: %s\n", line, col, names[i]);
			dump_diag();
		}
		assert_int_equal(find_diag(line, col, "warning: concurrency limit '"), (int)i);
		assert_non_null(strstr(fixture_diag.msg[i], "only through check listeners"));
	}
	sl_policy_unref(p);
}

static void concurrency_with_a_proxy_listener_is_no_warning(void **state)
{
	char yaml[sizeof(check_only) + 128];
	struct sl_policy *p = NULL;

	(void)state;
	snprintf(yaml, sizeof(yaml), "%s",
	         "listeners:\n"
	         "  - { name: gw, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n");
	snprintf(yaml + strlen(yaml), sizeof(yaml) - strlen(yaml), "%s",
	         strstr(check_only, "  - { name: auth"));
	assert_int_equal(load_text(yaml, &p), 0);
	assert_int_equal(fixture_diag.n, 0);
	assert_int_equal(fixture_diag.nwarn, 0);
	sl_policy_unref(p);
}

/* With errors the warnings are listed too, all in file order. */
static void warnings_sort_among_errors(void **state)
{
	static const char yaml[] = "listeners:\n"
	                           "  - { name: auth, listen: \"127.0.0.1:18081\", mode: check }\n"
	                           "limits:\n"
	                           "  - { name: inflight, key: ip, concurrency: 2 }\n"
	                           "  - { name: bad, key: ip, rate: 5/fortnight }\n";
	struct sl_policy *p = NULL;
	size_t line, col;

	(void)state;
	assert_int_equal(load_text(yaml, &p), SL_ECONFIG);
	assert_null(p);
	assert_int_equal(fixture_diag.n, 2);
	assert_int_equal(fixture_diag.nwarn, 1);
	pos_of(yaml, "{ name: inflight", 1, &line, &col);
	assert_int_equal(find_diag(line, col, "warning: concurrency limit 'inflight'"), 0);
	pos_of(yaml, "5/fortnight", 1, &line, &col);
	assert_int_equal(find_diag(line, col, "bad rate"), 1);
	assert_null(strstr(fixture_diag.msg[1], "warning:"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(each_error_kind_is_reported_at_its_node),
	        cmocka_unit_test(syntax_error_points_at_the_problem),
	        cmocka_unit_test(every_error_of_a_file_is_reported_in_order),
	        cmocka_unit_test(missing_file_is_an_error),
	        cmocka_unit_test(diag_list_is_bounded),
	        cmocka_unit_test(check_only_concurrency_is_a_warning_at_the_limit),
	        cmocka_unit_test(concurrency_with_a_proxy_listener_is_no_warning),
	        cmocka_unit_test(warnings_sort_among_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
