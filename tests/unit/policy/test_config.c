/* Config loading (src/policy/config*.c): a full config compiles into the
 * expected structures (server, listeners, admin, store, identify with
 * hashed sorted keys, plans, limits with specs and per-plan variants,
 * routes, responses and resolved templates); limit ids are stable across
 * reloads and change with the limit; every example in examples/ loads. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <arpa/inet.h>
#include <cmocka.h>
#include <openssl/sha.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/template.h"
#include "policy/test_config_fixture.h"

static const char full[] =
        "server:\n"
        "  workers: 4\n"
        "  max_header_bytes: 32KB\n"
        "  max_body_bytes: 1MB\n"
        "  idle_timeout: 1.5m\n"
        "  header_timeout: 5s\n"
        "  upstream_timeout: 2s\n"
        "  drain_timeout: 250ms\n"
        "  max_connections: 500\n"
        "  access_log: true\n"
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:8080\", mode: proxy, upstream: "
        "\"http://127.0.0.1:9000\" }\n"
        "  - { name: auth, listen: \"[::1]:8081\", mode: check }\n"
        "admin: { listen: \"0.0.0.0:9901\", token: s3cret, lease_ttl: 30s }\n"
        "store: { type: redis, url: \"redis://127.0.0.1:6379\", cluster: true, on_error: deny,\n"
        "         timeout: 20ms, pool: 8, local_cache: true,\n"
        "         module: false }\n"
        "identify:\n"
        "  ip: { trusted_proxies: [\"127.0.0.0/8\", \"10.0.0.0/8\", \"fd00::/8\", \"192.0.2.1\"] "
        "}\n"
        "  key: { from: [\"header:X-Api-Key\", bearer, \"query:key\"], required: true }\n"
        "  accounts:\n"
        "    - { account: acme, plan: pro, keys: [\"sk_a1\", \"sk_a2\"] }\n"
        "    - { account: solo, plan: free, keys: [\"sk_s1\"] }\n"
        "plans:\n"
        "  free: { title: Free }\n"
        "  pro: { title: \"Pro plan\" }\n"
        "  elite:\n"
        "limits:\n"
        "  - { name: ip, key: ip, rate: 300/min }\n"
        "  - { name: smooth, key: [account, route], rate: 900/min, burst: 15, queue: 5 }\n"
        "  - name: tier\n"
        "    key: account\n"
        "    rate: { free: 60/min, pro: 6000/min }\n"
        "    burst: { free: 10, pro: 200 }\n"
        "  - { name: hourly, key: account, quota: { free: 5/hour, pro: 100/hour, elite: unlimited "
        "},\n"
        "      tz_offset: \"+02:00\", message: \"Hourly limit reached: {limit} on {plan_title}\" "
        "}\n"
        "  - { name: window, key: [ip, \"header:X-Client\"], sliding: 100/1.5m }\n"
        "  - { name: inflight, key: key, concurrency: { free: 5, pro: 100 }, lease: 10s }\n"
        "  - { name: api, key: account, rate: { free: deny }, status: 403, message: \"VIP only\" "
        "}\n"
        "routes:\n"
        "  - name: oauth\n"
        "    match: { method: post, path: /oauth/token }\n"
        "    limits: [ { name: oauth, key: ip, rate: 30/min } ]\n"
        "  - name: batch\n"
        "    match: { path: \"/v1/messages/*\", query: { mode: bulk } }\n"
        "    cost: 3\n"
        "  - { name: all, match: { path: \"/*\" } }\n"
        "responses:\n"
        "  preset: [ietf, x-ratelimit]\n"
        "  headers:\n"
        "    X-RateLimit-Limit: \"{limit}\"\n"
        "    X-RateLimit-Tier-Remaining: \"{limits.tier.remaining}\"\n"
        "    X-OAuth: \"{limits.oauth.reset}\"\n"
        "  rejected:\n"
        "    status: 429\n"
        "    headers: { Retry-After: \"{retry_after}\", X-RateLimit-DeniedBy: \"{denied_by}\" }\n"
        "    body: '{\"error\":{\"code\":\"RATE_LIMITED\",\"retryAfter\":{retry_after}}}'\n"
        "    content_type: application/problem+json\n"
        "  unauthorized: { body: '{\"error\":\"unauthorized\"}' }\n";

static struct sl_policy *P;

static int setup(void **state)
{
	(void)state;
	int rc = load_text(full, &P);
	if (rc)
		dump_diag();
	return rc;
}

static int teardown(void **state)
{
	(void)state;
	sl_policy_unref(P);
	return 0;
}

static void server_listeners_admin_store(void **state)
{
	(void)state;
	assert_int_equal(P->server.workers, 4);
	assert_int_equal(P->server.max_header_bytes, 32 << 10);
	assert_int_equal(P->server.max_body_bytes, 1 << 20);
	assert_int_equal(P->server.idle_timeout, 90 * SL_NS_PER_SEC);
	assert_int_equal(P->server.header_timeout, 5 * SL_NS_PER_SEC);
	assert_int_equal(P->server.upstream_timeout, 2 * SL_NS_PER_SEC);
	assert_int_equal(P->server.drain_timeout, 250000000);
	assert_int_equal(P->server.max_connections, 500);
	assert_true(P->server.access_log);
	assert_int_equal(P->nlisteners, 2);
	assert_string_equal(P->listeners[0].name, "gateway");
	assert_int_equal(P->listeners[0].mode, SL_MODE_PROXY);
	assert_string_equal(P->listeners[0].upstream, "http://127.0.0.1:9000");
	assert_string_equal(P->listeners[1].listen, "[::1]:8081");
	assert_int_equal(P->listeners[1].mode, SL_MODE_CHECK);
	assert_null(P->listeners[1].upstream);
	assert_string_equal(P->admin.listen, "0.0.0.0:9901");
	assert_string_equal(P->admin.token, "s3cret");
	assert_int_equal(P->admin.lease_ttl, 30 * SL_NS_PER_SEC);
	assert_int_equal(P->store.type, SL_STORE_REDIS);
	assert_string_equal(P->store.url, "redis://127.0.0.1:6379");
	assert_true(P->store.cluster && P->store.on_error_deny && P->store.local_cache);
	assert_true(P->store.no_module);
	assert_int_equal(P->store.timeout, 20000000);
	assert_int_equal(P->store.pool, 8);
}

static void identify_and_plans(void **state)
{
	(void)state;
	const struct sl_identify_conf *id = &P->identify;
	assert_int_equal(id->ntrusted, 4);
	assert_int_equal(id->trusted[0].family, AF_INET);
	assert_int_equal(id->trusted[0].bits, 8);
	assert_int_equal(id->trusted[0].addr[0], 127);
	assert_int_equal(id->trusted[2].family, AF_INET6);
	assert_int_equal(id->trusted[2].bits, 8);
	assert_int_equal(id->trusted[2].addr[0], 0xfd);
	assert_int_equal(id->trusted[3].bits, 32);
	assert_int_equal(id->nkey_from, 3);
	assert_int_equal(id->key_from[0].kind, SL_KEYSRC_HEADER);
	assert_string_equal(id->key_from[0].name, "X-Api-Key");
	assert_int_equal(id->key_from[1].kind, SL_KEYSRC_BEARER);
	assert_int_equal(id->key_from[2].kind, SL_KEYSRC_QUERY);
	assert_string_equal(id->key_from[2].name, "key");
	assert_true(id->key_required);

	assert_int_equal(P->nplans, 3);
	assert_string_equal(P->plans[0].name, "free");
	assert_string_equal(P->plans[1].title, "Pro plan");
	assert_string_equal(P->plans[2].title, "elite"); /* defaults to the name */
	assert_int_equal(P->plans[2].index, 2);

	assert_int_equal(P->naccounts, 2);
	assert_string_equal(P->accounts[0].name, "acme");
	assert_int_equal(P->accounts[0].plan, 1);
	assert_int_equal(P->nkeys, 3);
	for (size_t i = 1; i < P->nkeys; i++)
		assert_true(memcmp(P->keys[i - 1].sha256, P->keys[i].sha256, 32) < 0);
	/* a key is found by the SHA-256 of its bytes */
	uint8_t h[32];
	SHA256((const unsigned char *)"sk_s1", 5, h);
	size_t found = 99;
	for (size_t i = 0; i < P->nkeys; i++)
		if (!memcmp(P->keys[i].sha256, h, 32))
			found = i;
	assert_true(found < P->nkeys);
	assert_int_equal(P->keys[found].account, 1);
}

static void limits_compile_to_specs(void **state)
{
	(void)state;
	assert_int_equal(P->nlimits, 7);
	const struct sl_limit *l = P->limits;
	/* ip: plain rate, evaluated before the key */
	assert_string_equal(l[0].name, "ip");
	assert_int_equal(l[0].index, 0);
	assert_int_equal(l[0].nkey, 1);
	assert_int_equal(l[0].key[0].kind, SL_DESC_IP);
	assert_true(l[0].before_key);
	assert_false(l[0].per_plan);
	assert_int_equal(l[0].spec.algo, SL_ALGO_RATE);
	assert_int_equal(l[0].spec.n, 300);
	assert_int_equal(l[0].spec.period, SL_NS_PER_MIN);
	assert_int_equal(l[0].spec.burst, 300);
	assert_int_equal(l[0].status, 0);
	assert_true(l[0].limit_id != 0);
	/* smooth: burst + queue, [account, route] */
	assert_int_equal(l[1].nkey, 2);
	assert_int_equal(l[1].key[1].kind, SL_DESC_ROUTE);
	assert_false(l[1].before_key);
	assert_int_equal(l[1].spec.burst, 15);
	assert_int_equal(l[1].spec.queue, 5);
	/* tier: per plan, elite absent */
	assert_true(l[2].per_plan);
	assert_int_equal(l[2].plan_spec[0].algo, SL_ALGO_RATE);
	assert_int_equal(l[2].plan_spec[0].n, 60);
	assert_int_equal(l[2].plan_spec[0].burst, 10);
	assert_int_equal(l[2].plan_spec[1].n, 6000);
	assert_int_equal(l[2].plan_spec[1].burst, 200);
	assert_int_equal(l[2].plan_spec[2].algo, 0);
	assert_int_equal(l[2].plan_limit_id[2], 0);
	/* one counter whatever the plan: a plan change keeps what was used */
	assert_true(l[2].plan_limit_id[0] && l[2].plan_limit_id[0] == l[2].plan_limit_id[1]);
	/* hourly: calendar quota with tz, unlimited for elite, message */
	assert_int_equal(l[3].plan_spec[0].algo, SL_ALGO_QUOTA);
	assert_int_equal(l[3].plan_spec[0].calendar, SL_CAL_HOUR);
	assert_int_equal(l[3].plan_spec[0].tz_offset, 7200);
	assert_int_equal(l[3].plan_spec[1].n, 100);
	assert_int_equal(l[3].plan_spec[2].algo, SL_ALGO_UNLIMITED);
	assert_non_null(l[3].message);
	/* window: sliding over 90 s keyed on ip + header */
	assert_int_equal(l[4].spec.algo, SL_ALGO_SLIDING);
	assert_int_equal(l[4].spec.n, 100);
	assert_int_equal(l[4].spec.period, 90 * SL_NS_PER_SEC);
	assert_int_equal(l[4].key[1].kind, SL_DESC_HEADER);
	assert_string_equal(l[4].key[1].arg, "X-Client");
	assert_true(l[4].before_key);
	/* inflight: concurrency with its own lease */
	assert_int_equal(l[5].plan_spec[0].algo, SL_ALGO_CONCURRENCY);
	assert_int_equal(l[5].plan_spec[0].n, 5);
	assert_int_equal(l[5].plan_spec[0].period, 10 * SL_NS_PER_SEC);
	/* api: entitlement */
	assert_int_equal(l[6].plan_spec[0].algo, SL_ALGO_DENY);
	assert_int_equal(l[6].plan_spec[1].algo, 0);
	assert_int_equal(l[6].status, 403);
}

static void routes_match_and_own_limits(void **state)
{
	(void)state;
	assert_int_equal(P->nroutes, 3);
	const struct sl_route *r = P->routes;
	assert_string_equal(r[0].name, "oauth");
	assert_string_equal(r[0].method, "POST");
	assert_int_equal(r[0].path_match, SL_PATH_EXACT);
	assert_string_equal(r[0].path, "/oauth/token");
	assert_int_equal(r[0].path_len, 12);
	assert_int_equal(r[0].cost, 1);
	assert_int_equal(r[0].nlimits, 1);
	assert_string_equal(r[0].limits[0].name, "oauth");
	assert_int_equal(r[0].limits[0].index, 7); /* after the 7 global limits */
	assert_null(r[1].method);
	assert_int_equal(r[1].path_match, SL_PATH_PREFIX);
	assert_string_equal(r[1].path, "/v1/messages/");
	assert_string_equal(r[1].query_name, "mode");
	assert_string_equal(r[1].query_value, "bulk");
	assert_int_equal(r[1].cost, 3);
	assert_int_equal(r[2].path_match, SL_PATH_ANY);
}

static void responses_and_named_refs(void **state)
{
	(void)state;
	const struct sl_responses *rs = &P->responses;
	assert_true(rs->preset_ietf && rs->preset_xratelimit);
	assert_int_equal(rs->nheaders, 3);
	assert_string_equal(rs->headers[1].name, "X-RateLimit-Tier-Remaining");
	size_t n;
	struct sl_tpl_ref *ref = sl_template_refs(rs->headers[1].value, &n);
	assert_int_equal(n, 1);
	assert_int_equal(ref->var, SL_TPL_NAMED);
	assert_int_equal(ref->limit_index, 2); /* tier */
	ref = sl_template_refs(rs->headers[2].value, &n);
	assert_int_equal(ref->limit_index, 7); /* oauth, a route limit */
	assert_int_equal(rs->rejected_status, 429);
	assert_int_equal(rs->nrejected_headers, 2);
	assert_string_equal(rs->rejected_headers[1].name, "X-RateLimit-DeniedBy");
	assert_non_null(rs->rejected_body);
	assert_string_equal(rs->rejected_content_type, "application/problem+json");
	assert_non_null(rs->unauthorized_body);
}

static void store_on_full_modes(void **state)
{
	(void)state;
	static const char *const text[] = {"evict", "deny_new", "allow_new"};
	static const uint8_t want[] = {SL_ON_FULL_EVICT, SL_ON_FULL_DENY_NEW, SL_ON_FULL_ALLOW_NEW};
	char yaml[128];

	for (int i = 0; i < 3; i++) {
		struct sl_policy *p;
		snprintf(yaml, sizeof(yaml), "store: { type: memory, memory: 1MB, on_full: %s }\n",
		         text[i]);
		int rc = load_text(yaml, &p);
		if (rc)
			dump_diag();
		assert_int_equal(rc, 0);
		assert_int_equal(p->store.on_full, want[i]);
		assert_int_equal(p->store.memory, 1 << 20);
		sl_policy_unref(p);
	}
}

static void store_local_mode(void **state)
{
	(void)state;
	struct sl_policy *p;
	int rc = load_text("store: { type: redis, url: \"redis://127.0.0.1:6379\", mode: local, "
	                   "sync: 20ms, strict_below: 2.5% }\n",
	                   &p);
	if (rc)
		dump_diag();
	assert_int_equal(rc, 0);
	assert_int_equal(p->store.mode, SL_REDIS_LOCAL);
	assert_int_equal(p->store.sync, 20 * 1000000LL);
	assert_int_equal(p->store.strict, 25000);
	sl_policy_unref(p);
	rc = load_text("store: { type: redis, url: \"redis://127.0.0.1:6379\" }\n", &p);
	assert_int_equal(rc, 0);
	assert_int_equal(p->store.mode, SL_REDIS_EXACT);
	assert_int_equal(p->store.sync, 50 * 1000000LL);
	assert_int_equal(p->store.strict, 100000);
	sl_policy_unref(p);
}

static void defaults_of_a_minimal_config(void **state)
{
	(void)state;
	struct sl_policy *p;
	int rc = load_text("limits:\n  - { name: ip, key: ip, rate: 10/s }\n", &p);
	if (rc)
		dump_diag();
	assert_int_equal(rc, 0);
	assert_int_equal(p->server.workers, 0);
	assert_int_equal(p->server.max_header_bytes, 16 << 10);
	assert_int_equal(p->server.max_connections, 10000);
	assert_string_equal(p->admin.listen, "127.0.0.1:9901");
	assert_int_equal(p->admin.lease_ttl, 60 * SL_NS_PER_SEC);
	assert_int_equal(p->store.type, SL_STORE_MEMORY);
	assert_int_equal(p->store.memory, 64 << 20);
	assert_int_equal(p->store.on_full, SL_ON_FULL_EVICT);
	assert_int_equal(p->store.timeout, 50000000);
	assert_int_equal(p->store.snapshot_interval, SL_NS_PER_SEC);
	assert_null(p->store.snapshot);
	assert_int_equal(p->nlisteners, 0);
	assert_int_equal(p->identify.nkey_from, 2); /* X-Api-Key, then bearer */
	assert_false(p->identify.key_required);     /* nothing keys on key/account/plan */
	assert_true(p->responses.preset_xratelimit);
	assert_false(p->responses.preset_ietf);
	assert_int_equal(p->responses.rejected_status, 429);
	assert_string_equal(p->responses.rejected_content_type, "application/json");
	sl_policy_ref(p);
	sl_policy_unref(p);
	sl_policy_unref(p);
}

/* store.snapshot_interval: a duration, 0 or off; store.snapshot relative
 * to the config file's directory (DESIGN §8), absolute kept as is. */
static void snapshot_interval_and_path_relative_to_the_config(void **state)
{
	(void)state;
	static const struct {
		const char *yaml;
		int64_t interval; /* ns */
		const char *snap; /* NULL: absolute, as written */
	} cases[] = {
	        {"store: { snapshot: state.snap, snapshot_interval: 250ms }\n", 250000000,
	         "state.snap"},
	        {"store: { snapshot: sub/s.snap, snapshot_interval: 0 }\n", 0, "sub/s.snap"},
	        {"store: { snapshot: s.snap, snapshot_interval: off }\n", 0, "s.snap"},
	        {"store: { snapshot: /var/lib/x.snap, snapshot_interval: 2m }\n", 2 * SL_NS_PER_MIN,
	         NULL},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sl_policy *p;
		int rc = load_text(cases[i].yaml, &p);
		if (rc)
			dump_diag();
		assert_int_equal(rc, 0);
		assert_int_equal(p->store.snapshot_interval, cases[i].interval);
		char want[128];
		if (cases[i].snap) /* fixture files are /tmp/sluice-cfg-XXXXXX */
			snprintf(want, sizeof(want), "/tmp/%s", cases[i].snap);
		else
			snprintf(want, sizeof(want), "/var/lib/x.snap");
		assert_string_equal(p->store.snapshot, want);
		sl_policy_unref(p);
	}
	/* A config named without a directory: the path stays relative (the
	 * working directory is the config's). */
	char cwd[4096], name[64];
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	assert_int_equal(chdir("/tmp"), 0);
	snprintf(name, sizeof(name), "sluice-cfg-rel-%d.yaml", (int)getpid());
	FILE *f = fopen(name, "w");
	assert_non_null(f);
	fputs("store: { snapshot: here.snap }\n", f);
	fclose(f);
	struct sl_policy *p;
	struct sl_diag d;
	assert_int_equal(sl_policy_load(name, &p, &d), 0);
	assert_string_equal(p->store.snapshot, "here.snap");
	sl_policy_unref(p);
	unlink(name);
	assert_int_equal(chdir(cwd), 0);
}

static uint64_t id_of(const char *yaml, size_t limit)
{
	struct sl_policy *p;
	if (load_text(yaml, &p)) {
		dump_diag();
		fail();
	}
	uint64_t id = p->limits[limit].limit_id;
	sl_policy_unref(p);
	return id;
}

/* DESIGN.md section 8: a counter belongs to (limit name, descriptor
 * values); only the algorithm or the key descriptors (and a sliding
 * window's period, its grid) start a limit fresh. */
static void limit_ids_are_name_algorithm_and_key(void **state)
{
	(void)state;
	const char *a = "limits:\n  - { name: x, key: ip, rate: 10/s }\n  - { name: y, key: ip, "
	                "rate: 5/s }\n";
	const char *b = "limits:\n  - { name: x, key: ip, rate: 10/s }\n  - { name: y, key: ip, "
	                "rate: 6/s }\n";
	const char *c = "limits:\n  - { name: x, key: ip, rate: 10/s, burst: 20, queue: 3 }\n"
	                "  - { name: y, key: ip, rate: 5/s }\n";
	const char *d = "limits:\n  - { name: x, key: key, rate: 10/s }\n  - { name: y, key: ip, "
	                "rate: 5/s }\n";
	const char *e = "limits:\n  - { name: z, key: ip, rate: 10/s }\n  - { name: y, key: ip, "
	                "rate: 5/s }\n";
	const char *f = "limits:\n  - { name: x, key: ip, quota: 10/day }\n";
	const char *g = "limits:\n  - { name: x, key: ip, quota: 500/day }\n";
	const char *h = "limits:\n  - { name: x, key: ip, sliding: 10/min }\n";
	const char *i = "limits:\n  - { name: x, key: ip, sliding: 99/min }\n";
	const char *j = "limits:\n  - { name: x, key: ip, sliding: 10/hour }\n";
	const char *k = "limits:\n  - { name: x, key: [ip, route], rate: 10/s }\n";
	assert_true(id_of(a, 0) == id_of(a, 0));
	assert_true(id_of(a, 0) == id_of(b, 0));
	assert_true(id_of(a, 1) == id_of(b, 1)); /* rate edited: kept */
	assert_true(id_of(a, 0) == id_of(c, 0)); /* burst, queue: kept */
	assert_true(id_of(f, 0) == id_of(g, 0)); /* quota numbers: kept */
	assert_true(id_of(h, 0) == id_of(i, 0)); /* sliding N: kept */
	assert_true(id_of(h, 0) != id_of(j, 0)); /* sliding period: its grid */
	assert_true(id_of(a, 0) != id_of(d, 0)); /* key */
	assert_true(id_of(a, 0) != id_of(k, 0)); /* key parts */
	assert_true(id_of(a, 0) != id_of(e, 0)); /* name */
	assert_true(id_of(a, 0) != id_of(f, 0)); /* algorithm */
	assert_true(id_of(f, 0) != id_of(h, 0));
}

static void every_example_loads(void **state)
{
	(void)state;
	static const char *examples[] = {
	        "quickstart.yaml",
	        "three-layer-ip-key-tier.yaml",
	        "per-ip-partner-api.yaml",
	        "tiers-burst-concurrency-endpoints.yaml",
	        "plans-daily-quota-burst-queue.yaml",
	        "hourly-daily-per-account.yaml",
	};
	const char *src = getenv("SLUICE_SRC");
	if (!src)
		src = ".";
	for (size_t i = 0; i < sizeof(examples) / sizeof(examples[0]); i++) {
		char path[512];
		snprintf(path, sizeof(path), "%s/examples/%s", src, examples[i]);
		struct sl_policy *p = NULL;
		struct sl_diag d;
		int rc = sl_policy_load(path, &p, &d);
		for (size_t k = 0; k < d.n; k++)
			fprintf(stderr, "%s\n", d.msg[k]);
		assert_int_equal(rc, 0);
		assert_non_null(p);
		assert_true(p->nlisteners >= 2);
		assert_non_null(p->admin.listen);
		sl_policy_unref(p);
	}
}

static void seed_examples_compile_as_documented(void **state)
{
	(void)state;
	const char *src = getenv("SLUICE_SRC");
	char path[512];
	struct sl_policy *p;
	struct sl_diag d;
	/* seed 4: mega is 900/min with burst 15 and queue 5; custom 1.5M/day */
	snprintf(path, sizeof(path), "%s/examples/plans-daily-quota-burst-queue.yaml",
	         src ? src : ".");
	assert_int_equal(sl_policy_load(path, &p, &d), 0);
	int mega = -1, custom = -1;
	for (size_t i = 0; i < p->nplans; i++) {
		if (!strcmp(p->plans[i].name, "mega"))
			mega = (int)i;
		if (!strcmp(p->plans[i].name, "custom"))
			custom = (int)i;
	}
	assert_true(mega >= 0 && custom >= 0);
	assert_int_equal(p->limits[0].plan_spec[mega].n, 900);
	assert_int_equal(p->limits[0].plan_spec[mega].burst, 15);
	assert_int_equal(p->limits[0].plan_spec[mega].queue, 5);
	assert_int_equal(p->limits[1].plan_spec[custom].n, 1500000);
	assert_int_equal(p->limits[1].plan_spec[custom].calendar, SL_CAL_DAY);
	sl_policy_unref(p);
	/* seed 5: elite unlimited, api entitlement denies starter with 403 */
	snprintf(path, sizeof(path), "%s/examples/hourly-daily-per-account.yaml", src ? src : ".");
	assert_int_equal(sl_policy_load(path, &p, &d), 0);
	assert_int_equal(p->limits[0].plan_spec[4].algo, SL_ALGO_UNLIMITED);
	const struct sl_route *api = &p->routes[p->nroutes - 1];
	assert_string_equal(api->limits[0].name, "api-access");
	assert_int_equal(api->limits[0].status, 403);
	assert_int_equal(api->limits[0].plan_spec[0].algo, SL_ALGO_DENY);
	assert_int_equal(api->limits[0].plan_spec[3].algo, 0); /* vip: allowed */
	sl_policy_unref(p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(server_listeners_admin_store),
	        cmocka_unit_test(identify_and_plans),
	        cmocka_unit_test(limits_compile_to_specs),
	        cmocka_unit_test(routes_match_and_own_limits),
	        cmocka_unit_test(responses_and_named_refs),
	};
	const struct CMUnitTest more[] = {
	        cmocka_unit_test(defaults_of_a_minimal_config),
	        cmocka_unit_test(snapshot_interval_and_path_relative_to_the_config),
	        cmocka_unit_test(store_on_full_modes),
	        cmocka_unit_test(store_local_mode),
	        cmocka_unit_test(limit_ids_are_name_algorithm_and_key),
	        cmocka_unit_test(every_example_loads),
	        cmocka_unit_test(seed_examples_compile_as_documented),
	};
	int f = cmocka_run_group_tests_name("full config", tests, setup, teardown);
	return f + cmocka_run_group_tests_name("loading", more, NULL, NULL);
}
