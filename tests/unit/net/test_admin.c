/* The admin handler without sockets: a real policy loaded from YAML, the
 * memory store, and requests handed to sl_admin_handle directly with a
 * test-controlled `now`. Covers JSON parsing and refusal, the decide answer,
 * leases (release, double release, forged ids, TTL sweep, a full table),
 * the bearer token, routing and the metrics exposition. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <sluice/error.h>
#include "net/admin.h"
#include "net/metrics.h"

#define NOW0 (1700000000LL * SL_NS_PER_SEC) /* ns: a fixed start time */

static const char config_text[] =
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
        "admin: { listen: \"127.0.0.1:19901\", lease_ttl: 2s }\n"
        "identify:\n"
        "  key: { from: [\"header:X-Api-Key\"], required: false }\n"
        "  accounts:\n"
        "    - { account: acme, plan: pro, keys: [\"sk_acme\"] }\n"
        "    - { account: tiny, plan: free, keys: [\"sk_tiny\"] }\n"
        "    - { account: big, plan: huge, keys: [\"sk_big\"] }\n"
        "plans: { free: { title: Free }, pro: { title: Pro }, huge: { title: Huge } }\n"
        "limits:\n"
        "  - { name: hourly, key: account, quota: { free: 2/hour, pro: 100/hour, huge: unlimited } "
        "}\n"
        "  - { name: inflight, key: account, concurrency: { free: 5, pro: 2, huge: 5000 } }\n"
        "responses:\n"
        "  rejected:\n"
        "    headers: { Retry-After: \"{retry_after}\", X-RateLimit-DeniedBy: \"{denied_by}\" }\n"
        "    body: '{\"error\":\"limited\",\"by\":\"{denied_by}\"}'\n";

struct fx {
	char path[64];
	struct sl_policy *p;
	struct sl_store *store;
	struct sl_metrics *m;
	struct sl_admin_global g;
	struct sl_admin a;
	uv_loop_t loop;
	struct sl_admin_call call;
	int64_t now;
	struct sl_header hdr[2];
	size_t nhdr;
};

static int64_t fx_clock(void *arg)
{
	return ((struct fx *)arg)->now;
}

static int load(struct fx *f, const char *text)
{
	struct sl_diag diag;
	FILE *fp;
	int fd;

	snprintf(f->path, sizeof(f->path), "/tmp/sluice-admin-test-XXXXXX");
	fd = mkstemp(f->path);
	if (fd < 0)
		return -1;
	fp = fdopen(fd, "w");
	fputs(text, fp);
	fclose(fp);
	memset(&diag, 0, sizeof(diag));
	if (sl_policy_load(f->path, &f->p, &diag) != 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msg[i]);
		return -1;
	}
	return 0;
}

static int setup_with(void **state, const char *text)
{
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];

	assert_non_null(f);
	assert_int_equal(load(f, text), 0);
	assert_int_equal(sl_memory_store_create(&f->store, 1 << 20, 42), 0);
	f->m = sl_metrics_create(2);
	assert_non_null(f->m);
	assert_int_equal(sl_admin_global_init(&f->g, f->p, 2, f->m, f->store, err, sizeof(err)), 0);
	assert_int_equal(uv_loop_init(&f->loop), 0);
	f->now = NOW0;
	assert_int_equal(sl_admin_init(&f->a, &f->g, 1, &f->loop, f->store, f->p, fx_clock, f), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_with(state, config_text);
}

static void closed(struct sl_admin *a)
{
	(void)a;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	sl_admin_close(&f->a, closed);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(uv_loop_close(&f->loop), 0);
	sl_admin_global_destroy(&f->g);
	sl_metrics_destroy(f->m);
	f->store->ops->destroy(f->store);
	sl_policy_unref(f->p);
	unlink(f->path);
	free(f);
	return 0;
}

/* Send one request; returns the HTTP status; the body is NUL-terminated
 * in a static buffer through *body. */
static int send_req(struct fx *f, const char *method, const char *path, const char *body,
                    const char **out)
{
	static char copy[SL_ADMIN_BODY_MAX + 1];
	struct sl_admin_req r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.method = (struct sl_str){method, strlen(method)};
	r.path = (struct sl_str){path, strlen(path)};
	r.body = (struct sl_str){body, body ? strlen(body) : 0};
	r.headers = f->hdr;
	r.nheaders = f->nhdr;
	r.policy = f->p;
	r.now = f->now;
	rc = sl_admin_handle(&f->a, &f->call, &r);
	assert_int_equal(rc, 0); /* the memory store completes inline */
	memcpy(copy, f->call.resp.body, f->call.resp.len);
	copy[f->call.resp.len] = '\0';
	if (out)
		*out = copy;
	return f->call.resp.status;
}

static cJSON *decide(struct fx *f, const char *body)
{
	const char *out;
	cJSON *j;

	assert_int_equal(send_req(f, "POST", "/v1/decide", body, &out), 200);
	j = cJSON_Parse(out);
	assert_non_null(j);
	return j;
}

static bool jtrue(const cJSON *j, const char *name)
{
	return cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, name));
}

static const char *jstr(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static double jnum(const cJSON *j, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);
	assert_true(cJSON_IsNumber(v));
	return v->valuedouble;
}

static const cJSON *jlimit(const cJSON *j, const char *name)
{
	const cJSON *l, *e;

	l = cJSON_GetObjectItemCaseSensitive(j, "limits");
	cJSON_ArrayForEach(e, l)
	{
		const char *n = jstr(e, "name");
		if (n && strcmp(n, name) == 0)
			return e;
	}
	return NULL;
}

static void decide_refuses_malformed_json(void **state)
{
	struct fx *f = *state;
	static const char *const bad[] = {
	        "",
	        "{",
	        "[]",
	        "\"x\"",
	        "{\"ip\":1}",
	        "{\"account\":true}",
	        "{\"cost\":-1}",
	        "{\"cost\":0.5}",
	        "{\"cost\":\"1\"}",
	        "{\"headers\":[1]}",
	        "{\"headers\":{\"a\":2}}",
	        "{\"ip\":\"10.0.0.300\"}",
	        "{\"ip\":\"[::1]\"}",
	        "{\"ip\":\"1.2.3.4:80\"}",
	};
	const char *out;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cJSON *j;
		assert_int_equal(send_req(f, "POST", "/v1/decide", bad[i], &out), 400);
		assert_string_equal(f->call.resp.content_type, "application/json");
		j = cJSON_Parse(out);
		assert_non_null(j);
		assert_non_null(jstr(j, "error"));
		cJSON_Delete(j);
	}
}

static void decide_looks_up_the_plan_and_issues_a_lease(void **state)
{
	struct fx *f = *state;
	cJSON *j = decide(f, "{\"account\":\"acme\",\"method\":\"GET\",\"path\":\"/a?b=c\"}");
	const cJSON *h;

	assert_true(jtrue(j, "allowed"));
	assert_int_equal((int)jnum(j, "status"), 200);
	assert_int_equal((int)jnum(j, "delay_ms"), 0);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "denied_by")));
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "body")));
	assert_non_null(jstr(j, "lease"));
	h = jlimit(j, "hourly");
	assert_non_null(h);
	assert_int_equal((int)jnum(h, "limit"), 100);
	assert_int_equal((int)jnum(h, "remaining"), 99);
	assert_int_equal((int64_t)jnum(h, "reset") % 3600, 0);
	h = jlimit(j, "inflight");
	assert_int_equal((int)jnum(h, "limit"), 2);
	assert_int_equal((int)jnum(h, "remaining"), 1);
	cJSON_Delete(j);
}

static void unlimited_limit_reports_nulls(void **state)
{
	struct fx *f = *state;
	cJSON *j = decide(f, "{\"account\":\"big\"}");
	const cJSON *h = jlimit(j, "hourly");

	assert_true(jtrue(j, "allowed"));
	assert_non_null(h);
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(h, "limit")));
	assert_true(jtrue(h, "unlimited"));
	cJSON_Delete(j);
}

static void rejection_names_the_limit_and_renders_the_body(void **state)
{
	struct fx *f = *state;
	cJSON *j;
	const cJSON *hd;

	cJSON_Delete(decide(f, "{\"account\":\"acme\"}"));
	cJSON_Delete(decide(f, "{\"account\":\"acme\"}"));
	j = decide(f, "{\"account\":\"acme\"}");
	assert_false(jtrue(j, "allowed"));
	assert_int_equal((int)jnum(j, "status"), 429);
	assert_string_equal(jstr(j, "denied_by"), "inflight");
	assert_true(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "lease")));
	assert_string_equal(jstr(j, "body"), "{\"error\":\"limited\",\"by\":\"inflight\"}");
	hd = cJSON_GetObjectItemCaseSensitive(j, "headers");
	assert_string_equal(jstr(hd, "X-RateLimit-DeniedBy"), "inflight");
	cJSON_Delete(j);
}

static void release_frees_once_and_refuses_forged_ids(void **state)
{
	struct fx *f = *state;
	cJSON *a = decide(f, "{\"account\":\"acme\"}");
	cJSON *b = decide(f, "{\"account\":\"acme\"}");
	cJSON *c;
	char body[128];
	const char *out;
	static const char *const forged[] = {
	        "{\"lease\":\"\"}",
	        "{\"lease\":\"1-0\"}",
	        "{\"lease\":\"9-0-00000001\"}",
	        "{\"lease\":\"1-5000-00000001\"}",
	        "{\"lease\":\"1-0-0000000g\"}",
	        "{\"lease\":\"1-0-000000001\"}",
	        "{\"lease\":\"-1-0-00000001\"}",
	};

	snprintf(body, sizeof(body), "{\"lease\":\"%s\"}", jstr(a, "lease"));
	assert_int_equal(send_req(f, "POST", "/v1/release", body, &out), 200);
	assert_int_equal(send_req(f, "POST", "/v1/release", body, &out), 404);
	for (size_t i = 0; i < sizeof(forged) / sizeof(forged[0]); i++)
		assert_int_equal(send_req(f, "POST", "/v1/release", forged[i], &out), 404);
	assert_int_equal(send_req(f, "POST", "/v1/release", "{\"lease\":3}", &out), 400);
	c = decide(f, "{\"account\":\"acme\"}");
	assert_true(jtrue(c, "allowed"));
	cJSON_Delete(a);
	cJSON_Delete(b);
	cJSON_Delete(c);
}

static void sweep_releases_expired_leases(void **state)
{
	struct fx *f = *state;
	cJSON *a = decide(f, "{\"account\":\"acme\"}");
	cJSON *b = decide(f, "{\"account\":\"acme\"}");
	char body[128];
	const char *out;

	assert_int_equal(sl_admin_sweep(&f->a, f->now + SL_NS_PER_SEC), 0);
	assert_int_equal(sl_admin_sweep(&f->a, f->now + 2 * SL_NS_PER_SEC), 2);
	snprintf(body, sizeof(body), "{\"lease\":\"%s\"}", jstr(b, "lease"));
	assert_int_equal(send_req(f, "POST", "/v1/release", body, &out), 404);
	cJSON_Delete(a);
	cJSON_Delete(b);
}

static void full_lease_table_refuses_with_503(void **state)
{
	struct fx *f = *state;
	const char *out;

	for (int i = 0; i < SL_ADMIN_LEASES; i++) {
		cJSON *j = decide(f, "{\"account\":\"big\"}");
		assert_true(jtrue(j, "allowed"));
		cJSON_Delete(j);
	}
	assert_int_equal(send_req(f, "POST", "/v1/decide", "{\"account\":\"big\"}", &out), 503);
	/* After the TTL the sweep empties the table, a bounded batch per pass. */
	f->now += 3 * SL_NS_PER_SEC;
	while (sl_admin_sweep(&f->a, f->now) > 0)
		;
	cJSON_Delete(decide(f, "{\"account\":\"big\"}"));
}

static void routing_and_methods(void **state)
{
	struct fx *f = *state;
	const char *out;

	assert_int_equal(send_req(f, "GET", "/healthz", NULL, &out), 200);
	assert_int_equal(send_req(f, "GET", "/nope", NULL, &out), 404);
	assert_int_equal(send_req(f, "GET", "/v1/decide", NULL, &out), 405);
	assert_int_equal(f->call.resp.nextra, 1);
	assert_int_equal(send_req(f, "DELETE", "/metrics", NULL, &out), 405);
}

static void metrics_render_the_decisions(void **state)
{
	struct fx *f = *state;
	const char *out;

	cJSON_Delete(decide(f, "{\"account\":\"tiny\"}"));
	cJSON_Delete(decide(f, "{\"account\":\"tiny\"}"));
	cJSON_Delete(decide(f, "{\"account\":\"tiny\"}"));
	assert_int_equal(send_req(f, "GET", "/metrics", NULL, &out), 200);
	assert_non_null(strstr(out, "sluice_decisions_total{listener=\"admin\",limit=\"hourly\","
	                            "outcome=\"rejected\"} 1\n"));
	assert_non_null(
	        strstr(out, "sluice_decision_seconds_bucket{listener=\"admin\",le=\"+Inf\"} 3\n"));
	assert_non_null(strstr(out, "sluice_decision_seconds_count{listener=\"admin\"} 3\n"));
	assert_non_null(strstr(out, "sluice_store_states "));
	assert_non_null(strstr(out, "sluice_store_evicted_total 0\n"));
	assert_non_null(strstr(out, "sluice_store_errors_total 0\n"));
}

static void metrics_merge_shards_and_escape_labels(void **state)
{
	struct sl_metrics *m = sl_metrics_create(3);
	char buf[8192];
	long n;

	(void)state;
	sl_metrics_decision(sl_metrics_shard(m, 0), "gw", "ip", SL_METRIC_ALLOWED, 5000);
	sl_metrics_decision(sl_metrics_shard(m, 2), "gw", "ip", SL_METRIC_ALLOWED, 30000000);
	sl_metrics_decision(sl_metrics_shard(m, 1), "g\"w", NULL, SL_METRIC_ERROR, 1);
	n = sl_metrics_render(m, NULL, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(strstr(
	        buf,
	        "sluice_decisions_total{listener=\"gw\",limit=\"ip\",outcome=\"allowed\"} 2\n"));
	assert_non_null(strstr(buf, "listener=\"g\\\"w\",limit=\"none\",outcome=\"error\"} 1\n"));
	assert_non_null(
	        strstr(buf, "sluice_decision_seconds_bucket{listener=\"gw\",le=\"1e-05\"} 1\n"));
	assert_non_null(
	        strstr(buf, "sluice_decision_seconds_bucket{listener=\"gw\",le=\"0.025\"} 1\n"));
	assert_non_null(
	        strstr(buf, "sluice_decision_seconds_bucket{listener=\"gw\",le=\"0.05\"} 2\n"));
	assert_non_null(strstr(buf, "sluice_decision_seconds_sum{listener=\"gw\"} 0.030005000\n"));
	assert_int_equal(sl_metrics_render(m, NULL, buf, 100), -1);
	sl_metrics_destroy(m);
}

static void metrics_overflow_counts_into_other(void **state)
{
	struct sl_metrics *m = sl_metrics_create(1);
	static char buf[SL_ADMIN_BODY_MAX];
	char name[32];
	long n;

	(void)state;
	for (int i = 0; i < SL_METRICS_SERIES + 10; i++) {
		snprintf(name, sizeof(name), "l%d", i);
		sl_metrics_decision(sl_metrics_shard(m, 0), "gw", name, SL_METRIC_ALLOWED, 1);
	}
	n = sl_metrics_render(m, NULL, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(
	        strstr(buf, "{listener=\"other\",limit=\"other\",outcome=\"allowed\"} 10\n"));
	sl_metrics_destroy(m);
}

/* ---- the asynchronous path: a store that completes on a later loop pass ---- */

struct defer_store {
	struct sl_store base;
	struct sl_store *inner;
	uv_timer_t timer;
	struct sl_batch *pending[16];
	size_t n;
};

static void defer_flush(uv_timer_t *t)
{
	struct defer_store *d = t->data;
	size_t n = d->n;

	d->n = 0;
	for (size_t i = 0; i < n; i++)
		assert_int_equal(d->inner->ops->submit(d->inner, d->pending[i]), 0);
}

static int defer_submit(struct sl_store *s, struct sl_batch *b)
{
	struct defer_store *d = (struct defer_store *)s;

	if (d->n == 16)
		return SL_EFULL;
	d->pending[d->n++] = b;
	uv_timer_start(&d->timer, defer_flush, 0, 0);
	return 0;
}

static void defer_stats(struct sl_store *s, struct sl_store_stats *out)
{
	struct defer_store *d = (struct defer_store *)s;
	d->inner->ops->stats(d->inner, out);
}

static const struct sl_store_ops defer_ops = {"defer", defer_submit, defer_stats, NULL};

static int calls_done;

static void call_done(struct sl_admin_call *c)
{
	(void)c;
	calls_done++;
}

/* Send one request that must complete later; run the loop until it has. */
static int send_async(struct fx *f, const char *path, const char *body, const char **out)
{
	static char copy[SL_ADMIN_BODY_MAX + 1];
	struct sl_admin_req r;

	memset(&r, 0, sizeof(r));
	r.method = (struct sl_str){"POST", 4};
	r.path = (struct sl_str){path, strlen(path)};
	r.body = (struct sl_str){body, strlen(body)};
	r.policy = f->p;
	r.now = f->now;
	calls_done = 0;
	f->call.done = call_done;
	assert_int_equal(sl_admin_handle(&f->a, &f->call, &r), SL_AGAIN);
	assert_int_equal(calls_done, 0);
	uv_run(&f->loop, UV_RUN_DEFAULT);
	assert_int_equal(calls_done, 1);
	memcpy(copy, f->call.resp.body, f->call.resp.len);
	copy[f->call.resp.len] = '\0';
	*out = copy;
	return f->call.resp.status;
}

static void async_store_completes_decide_and_release_later(void **state)
{
	struct fx *f = *state;
	struct defer_store d;
	const char *out;
	char id[SL_ADMIN_LEASE_ID], body[128];
	cJSON *j;

	memset(&d, 0, sizeof(d));
	d.base.ops = &defer_ops;
	d.inner = f->store;
	assert_int_equal(uv_timer_init(&f->loop, &d.timer), 0);
	d.timer.data = &d;
	f->a.store = &d.base;

	assert_int_equal(send_async(f, "/v1/decide", "{\"account\":\"acme\"}", &out), 200);
	j = cJSON_Parse(out);
	assert_true(jtrue(j, "allowed"));
	snprintf(id, sizeof(id), "%s", jstr(j, "lease"));
	cJSON_Delete(j);
	snprintf(body, sizeof(body), "{\"lease\":\"%s\"}", id);
	assert_int_equal(send_async(f, "/v1/release", body, &out), 200);
	/* Unknown now: answered at once, no store round trip. */
	assert_int_equal(send_req(f, "POST", "/v1/release", body, &out), 404);
	/* Two in flight at once, both complete. */
	{
		struct sl_admin_call *c2 = calloc(1, sizeof(*c2));
		struct sl_admin_req r;
		memset(&r, 0, sizeof(r));
		r.method = (struct sl_str){"POST", 4};
		r.path = (struct sl_str){"/v1/decide", 10};
		r.body = (struct sl_str){"{\"account\":\"acme\"}", 18};
		r.policy = f->p;
		r.now = f->now;
		calls_done = 0;
		f->call.done = call_done;
		c2->done = call_done;
		assert_int_equal(sl_admin_handle(&f->a, &f->call, &r), SL_AGAIN);
		assert_int_equal(sl_admin_handle(&f->a, c2, &r), SL_AGAIN);
		uv_run(&f->loop, UV_RUN_DEFAULT);
		assert_int_equal(calls_done, 2);
		assert_non_null(strstr(f->call.resp.body, "\"allowed\":true"));
		assert_non_null(strstr(c2->resp.body, "\"allowed\":true"));
		free(c2);
	}
	/* The close releases the two held leases through the deferred store. */
	f->a.store = f->store;
	uv_close((uv_handle_t *)&d.timer, NULL);
	uv_run(&f->loop, UV_RUN_DEFAULT);
}

static const char token_config[] =
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
        "admin: { listen: \"127.0.0.1:19901\", token: \"tok\" }\n"
        "limits:\n"
        "  - { name: ip, key: ip, rate: 10/min }\n";

static int setup_token(void **state)
{
	return setup_with(state, token_config);
}

static void token_guards_everything_but_healthz(void **state)
{
	struct fx *f = *state;
	const char *out;

	assert_int_equal(send_req(f, "POST", "/v1/decide", "{}", &out), 401);
	assert_int_equal(f->call.resp.nextra, 1);
	assert_int_equal(send_req(f, "GET", "/metrics", NULL, &out), 401);
	assert_int_equal(send_req(f, "GET", "/healthz", NULL, &out), 200);
	f->hdr[0].name = (struct sl_str){"authorization", 13};
	f->hdr[0].value = (struct sl_str){"Bearer tok2", 11};
	f->nhdr = 1;
	assert_int_equal(send_req(f, "GET", "/metrics", NULL, &out), 401);
	f->hdr[0].value = (struct sl_str){"Bearer to", 9};
	assert_int_equal(send_req(f, "GET", "/metrics", NULL, &out), 401);
	f->hdr[0].value = (struct sl_str){"Bearer tok", 10};
	assert_int_equal(send_req(f, "GET", "/metrics", NULL, &out), 200);
	assert_int_equal(send_req(f, "POST", "/v1/decide", "{\"ip\":\"192.0.2.1\"}", &out), 200);
}

static void conf_check_requires_token_off_loopback(void **state)
{
	struct sl_admin_conf c = {0};
	char err[256];

	(void)state;
	c.listen = "127.0.0.1:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), 0);
	c.listen = "[::1]:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), 0);
	c.listen = "localhost:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), 0);
	c.listen = "0.0.0.0:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), SL_ECONFIG);
	assert_non_null(strstr(err, "admin.token"));
	c.listen = "[::]:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), SL_ECONFIG);
	c.listen = "127.0.0.1.evil:9901";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), SL_ECONFIG);
	c.token = "t";
	assert_int_equal(sl_admin_conf_check(&c, err, sizeof(err)), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(decide_refuses_malformed_json, setup, teardown),
	        cmocka_unit_test_setup_teardown(decide_looks_up_the_plan_and_issues_a_lease, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(unlimited_limit_reports_nulls, setup, teardown),
	        cmocka_unit_test_setup_teardown(rejection_names_the_limit_and_renders_the_body,
	                                        setup, teardown),
	        cmocka_unit_test_setup_teardown(release_frees_once_and_refuses_forged_ids, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(sweep_releases_expired_leases, setup, teardown),
	        cmocka_unit_test_setup_teardown(full_lease_table_refuses_with_503, setup, teardown),
	        cmocka_unit_test_setup_teardown(routing_and_methods, setup, teardown),
	        cmocka_unit_test_setup_teardown(metrics_render_the_decisions, setup, teardown),
	        cmocka_unit_test_setup_teardown(async_store_completes_decide_and_release_later,
	                                        setup, teardown),
	        cmocka_unit_test(metrics_merge_shards_and_escape_labels),
	        cmocka_unit_test(metrics_overflow_counts_into_other),
	        cmocka_unit_test_setup_teardown(token_guards_everything_but_healthz, setup_token,
	                                        teardown),
	        cmocka_unit_test(conf_check_requires_token_off_loopback),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
