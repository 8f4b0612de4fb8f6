/* Rendering: preset and template headers, omission of unresolved headers,
 * CR/LF refusal, IETF fields, rejection and 401 bodies with JSON escaping.
 * Decisions are made by hand: store results are filled into the checks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <cmocka.h>
#include "eval_fixture.h"
#include "policy/template.h"

static struct fixture F;
static struct sl_eval EV;
static char HDRS[4096];
static struct sl_template *TPL[16];
static size_t NTPL;
static struct sl_header_tpl H[8], RH[8];

static struct sl_template *tpl(const char *src)
{
	char err[128];
	size_t off;
	struct sl_template *t = sl_template_compile(src, err, sizeof(err), &off);

	if (t == NULL)
		fail_msg("template '%s': %s at %zu", src, err, off);
	TPL[NTPL++] = t;
	return t;
}

static int teardown(void **state)
{
	for (size_t i = 0; i < NTPL; i++)
		sl_template_free(TPL[i]);
	NTPL = 0;
	return 0;
}

static void collect(void *arg, struct sl_str name, struct sl_str value)
{
	size_t n = strlen(HDRS);

	snprintf(HDRS + n, sizeof(HDRS) - n, "%.*s: %.*s\n", (int)name.len, name.p, (int)value.len,
	         value.p);
}

static const char *headers(void)
{
	HDRS[0] = '\0';
	sl_render_headers(&EV, collect, NULL);
	return HDRS;
}

static void header(const char *name, const char *value)
{
	H[F.p.responses.nheaders++] = (struct sl_header_tpl){(char *)name, tpl(value)};
	F.p.responses.headers = H;
}

static void rejected_header(const char *name, const char *value)
{
	RH[F.p.responses.nrejected_headers++] = (struct sl_header_tpl){(char *)name, tpl(value)};
	F.p.responses.rejected_headers = RH;
}

/* A request from 203.0.113.7 with key sk_bob (standard) to /x: checks ip,
 * key, tier. Results: ip 300/min 250 left, key 100/min 42 left (the most
 * restrictive), tier 1000/min 990 left. */
static void decide_200(void)
{
	struct freq q;

	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_bob");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	fx_result(&EV, "ip", 300, 250, 10 * SL_NS_PER_SEC, SL_NS_PER_MIN);
	fx_result(&EV, "key", 100, 42, 34 * SL_NS_PER_SEC + 1, SL_NS_PER_MIN);
	fx_result(&EV, "tier", 1000, 990, 600 * 1000000LL, SL_NS_PER_MIN);
	EV.batch.status = SL_OK;
	assert_int_equal(sl_eval_finish(&EV), 200);
}

/* The same request denied by `key` (retry after 1.2 s). */
static void decide_429(void)
{
	decide_200();
	EV.checks[1].res.outcome = SL_REJECTED;
	EV.checks[1].res.remaining = 0;
	EV.checks[1].res.retry_after = 1200 * 1000000LL;
	EV.batch.status = SL_DENY;
	EV.batch.denied = 1;
	assert_int_equal(sl_eval_finish(&EV), 429);
}

static void xratelimit_default_on_200(void **state)
{
	fx_init(&F);
	decide_200();
	/* reset: now + 34 s + 1 ns, rounded up */
	assert_string_equal(headers(), "X-RateLimit-Limit: 100\n"
	                               "X-RateLimit-Remaining: 42\n"
	                               "X-RateLimit-Reset: 1700000035\n");
}

static void xratelimit_on_429_adds_retry_after(void **state)
{
	fx_init(&F);
	F.p.responses.preset_xratelimit = true;
	rejected_header("X-RateLimit-DeniedBy", "{denied_by}");
	decide_429();
	assert_string_equal(headers(), "X-RateLimit-Limit: 100\n"
	                               "X-RateLimit-Remaining: 0\n"
	                               "X-RateLimit-Reset: 1700000035\n"
	                               "Retry-After: 2\n"
	                               "X-RateLimit-DeniedBy: key\n");
}

static void retry_after_is_at_least_one_second(void **state)
{
	fx_init(&F);
	F.p.responses.preset_xratelimit = true;
	decide_429();
	EV.checks[1].res.retry_after = 0;
	assert_non_null(strstr(headers(), "Retry-After: 1\n"));
	EV.checks[1].res.retry_after = 3 * SL_NS_PER_SEC;
	assert_non_null(strstr(headers(), "Retry-After: 3\n"));
}

static void seed1_headers_and_unresolved_omission(void **state)
{
	fx_init(&F);
	header("X-RateLimit-Limit", "{limit}");
	header("X-RateLimit-Remaining", "{remaining}");
	header("X-RateLimit-Reset", "{reset}");
	header("X-RateLimit-Tier-Remaining", "{limits.tier.remaining}");
	header("X-Denied", "{denied_by}");
	rejected_header("X-RateLimit-DeniedBy", "{denied_by}");
	decide_200();
	assert_string_equal(headers(), "X-RateLimit-Limit: 100\n"
	                               "X-RateLimit-Remaining: 42\n"
	                               "X-RateLimit-Reset: 1700000035\n"
	                               "X-RateLimit-Tier-Remaining: 990\n");
	decide_429();
	assert_string_equal(headers(), "X-RateLimit-Limit: 100\n"
	                               "X-RateLimit-Remaining: 0\n"
	                               "X-RateLimit-Reset: 1700000035\n"
	                               "X-RateLimit-Tier-Remaining: 990\n"
	                               "X-Denied: key\n"
	                               "X-RateLimit-DeniedBy: key\n");

	/* plan free: the tier limit does not apply, so its header is omitted */
	struct freq q;

	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_fred");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	fx_result(&EV, "key", 100, 99, SL_NS_PER_SEC, SL_NS_PER_MIN);
	sl_eval_finish(&EV);
	assert_string_equal(headers(), "X-RateLimit-Limit: 100\n"
	                               "X-RateLimit-Remaining: 99\n"
	                               "X-RateLimit-Reset: 1700000001\n");
}

static void explicit_header_replaces_preset_one(void **state)
{
	fx_init(&F);
	F.p.responses.preset_xratelimit = true;
	header("x-ratelimit-limit", "{limits.ip.limit}");
	decide_200();
	assert_string_equal(headers(), "X-RateLimit-Remaining: 42\n"
	                               "X-RateLimit-Reset: 1700000035\n"
	                               "x-ratelimit-limit: 300\n");
}

static void unlimited_values_do_not_resolve(void **state)
{
	fx_init(&F);
	header("X-Limit", "{limit}");
	header("X-Tier", "{limits.tier.limit}");
	header("X-Plan", "{plan_title}");
	decide_200();
	fx_result(&EV, "ip", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	fx_result(&EV, "key", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	fx_result(&EV, "tier", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	sl_eval_finish(&EV);
	assert_string_equal(headers(), "X-Plan: Standard\n");
}

static void header_values_never_carry_crlf(void **state)
{
	struct freq q;

	fx_init(&F);
	header("X-Account", "{account}");
	header("X-Plan", "plan={plan}");
	F.plans[PLAN_STANDARD].name = "std\r\nSet-Cookie: x=1";
	freq_init(&q, "GET", "/x", NULL);
	q.r.ip = S("198.51.100.1");
	q.r.account = S("evil\nX-Injected: 1");
	q.r.plan = S("std\r\nSet-Cookie: x=1");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	sl_eval_finish(&EV);
	assert_string_equal(headers(), "");
	/* the same values are fine (escaped) in a JSON body */
	static char body[256];
	const char *ct;

	F.p.responses.rejected_body = tpl("{\"account\":\"{account}\",\"plan\":\"{plan}\"}");
	EV.batch.status = SL_DENY;
	EV.batch.denied = 0;
	sl_eval_finish(&EV);
	long n = sl_render_body(&EV, body, sizeof(body), &ct);
	assert_true(n > 0);
	body[n] = '\0';
	assert_string_equal(
	        body, "{\"account\":\"evil\\u000aX-Injected: 1\",\"plan\":\"std\\u000d\\u000aSet-"
	              "Cookie: x=1\"}");
}

static void ietf_preset_fields(void **state)
{
	fx_init(&F);
	F.p.responses.preset_ietf = true;
	decide_200();
	fx_result(&EV, "ip", 100, 87, 1846 * SL_NS_PER_SEC + 5, SL_NS_PER_HOUR);
	fx_result(&EV, "key", 1000, 934, 40000 * SL_NS_PER_SEC, SL_NS_PER_DAY);
	fx_result(&EV, "tier", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	F.limits[0].name = "hourly";
	F.limits[1].name = "daily";
	sl_eval_finish(&EV);
	assert_string_equal(headers(),
	                    "RateLimit-Policy: \"hourly\";q=100;w=3600, \"daily\";q=1000;w=86400\n"
	                    "RateLimit: \"hourly\";r=87;t=1847, \"daily\";r=934;t=40000\n");

	/* combined with x-ratelimit and explicit headers */
	F.p.responses.preset_xratelimit = true;
	header("X-Daily-Remaining", "{limits.daily.remaining}");
	assert_string_equal(headers(),
	                    "X-RateLimit-Limit: 100\n"
	                    "X-RateLimit-Remaining: 87\n"
	                    "X-RateLimit-Reset: 1700001847\n"
	                    "RateLimit-Policy: \"hourly\";q=100;w=3600, \"daily\";q=1000;w=86400\n"
	                    "RateLimit: \"hourly\";r=87;t=1847, \"daily\";r=934;t=40000\n"
	                    "X-Daily-Remaining: 934\n");
}

/* draft -10: a 429 under the ietf preset alone carries Retry-After too
 * (once, also with both presets), and a concurrency limit is advertised in
 * its own quota unit, without a window. */
static void ietf_preset_retry_after_and_concurrency_unit(void **state)
{
	struct sl_limit_spec conc = {.algo = SL_ALGO_CONCURRENCY, .n = 5, .period = SL_NS_PER_MIN};

	fx_init(&F);
	F.p.responses.preset_ietf = true;
	decide_429();
	assert_non_null(strstr(headers(), "Retry-After: 2\n"));
	F.p.responses.preset_xratelimit = true;
	{
		const char *h = headers(), *first = strstr(h, "Retry-After:");

		assert_non_null(first);
		assert_null(strstr(first + 1, "Retry-After:"));
	}
	/* a configured Retry-After replaces the preset's */
	F.p.responses.preset_xratelimit = false;
	rejected_header("Retry-After", "{retry_after}0");
	assert_non_null(strstr(headers(), "Retry-After: 20\n"));
	assert_null(strstr(headers(), "Retry-After: 2\n"));

	fx_init(&F);
	F.p.responses.preset_ietf = true;
	F.limits[0].spec = conc;
	decide_200();
	fx_result(&EV, "ip", 5, 4, 0, 0);
	sl_eval_finish(&EV);
	assert_non_null(strstr(headers(), "\"ip\";q=5;qu=\"concurrent-requests\", "));
}

/* A reset_after near INT64_MAX (a rate of 1 per century, a queue that
 * far) must not wrap now + reset_after: {reset} saturates (found by
 * fuzz_config; UBSan flagged the signed overflow). */
static void reset_saturates_instead_of_wrapping(void **state)
{
	fx_init(&F);
	header("X-Reset", "{reset}");
	decide_200();
	fx_result(&EV, "key", 100, 1, INT64_MAX, SL_NS_PER_MIN);
	sl_eval_finish(&EV);
	assert_string_equal(headers(), "X-Reset: 9223372037\n");
}

static void window_and_time_variables(void **state)
{
	static const struct {
		int64_t window;
		const char *text;
	} cases[] = {
	        {SL_NS_PER_MIN, "1 minute"},     {SL_NS_PER_HOUR, "1 hour"},
	        {SL_NS_PER_DAY, "1 day"},        {90 * SL_NS_PER_SEC, "90 seconds"},
	        {2 * SL_NS_PER_HOUR, "2 hours"}, {SL_NS_PER_SEC, "1 second"},
	        {7 * SL_NS_PER_DAY, "1 week"},   {120 * SL_NS_PER_SEC, "2 minutes"},
	};
	char want[128];

	fx_init(&F);
	header("X-W", "{window} ({window_seconds}s) {reset_after}");
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		decide_200();
		fx_result(&EV, "key", 100, 42, 1500 * 1000000LL, cases[i].window);
		sl_eval_finish(&EV);
		snprintf(want, sizeof(want), "X-W: %s (%llds) 2\n", cases[i].text,
		         (long long)(cases[i].window / SL_NS_PER_SEC));
		assert_string_equal(headers(), want);
	}
}

static void quota_reset_is_on_the_window_boundary(void **state)
{
	struct sl_limit_spec hourly = {.algo = SL_ALGO_QUOTA, .calendar = SL_CAL_HOUR, .n = 100};

	fx_init(&F);
	header("X-Reset", "{reset}");
	header("X-W", "{window}");
	F.limits[1].spec = hourly;
	decide_200();
	/* T0 = 1700000000 s = 22:13:20 UTC; the hour ends at 1700002800 */
	fx_result(&EV, "key", 100, 5, 2800 * SL_NS_PER_SEC, 0);
	sl_eval_finish(&EV);
	assert_string_equal(headers(), "X-Reset: 1700002800\nX-W: 1 hour\n");
	assert_int_equal(1700002800 % 3600, 0);
}

static void message_variable_renders_the_limit_message(void **state)
{
	static char body[512];
	const char *ct;
	long n;

	fx_init(&F);
	F.limits[1].message = tpl("Hourly limit reached: {limit} requests/hour on {plan_title} "
	                          "plan \"{plan}\"");
	F.p.responses.rejected_body =
	        tpl("{\"error\":\"rate_limit_exceeded\",\"message\":\"{message}\","
	            "\"retry_after\":{retry_after},\"plan\":\"{plan}\","
	            "\"limit_hour\":{limits.key.limit},\"limit_day\":{limits.tier.limit}}");
	header("X-Msg", "{message}");
	decide_429();
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	assert_true(n > 0);
	body[n] = '\0';
	assert_string_equal(ct, "application/json");
	assert_string_equal(body, "{\"error\":\"rate_limit_exceeded\",\"message\":\"Hourly limit "
	                          "reached: 100 requests/hour on Standard plan \\\"standard\\\"\","
	                          "\"retry_after\":2,\"plan\":\"standard\",\"limit_hour\":100,"
	                          "\"limit_day\":1000}");
	assert_string_equal(headers(), "X-Msg: Hourly limit reached: 100 requests/hour on "
	                               "Standard plan \"standard\"\n");
	/* too small a buffer */
	assert_int_equal(sl_render_body(&EV, body, 20, &ct), -1);
}

static void default_rejection_body(void **state)
{
	static char body[512];
	const char *ct;
	long n;

	fx_init(&F);
	decide_429();
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	assert_true(n > 0);
	body[n] = '\0';
	assert_string_equal(ct, "application/json");
	assert_string_equal(body, "{\"error\":\"rate_limited\",\"message\":\"Rate limit exceeded\","
	                          "\"denied_by\":\"key\",\"limit\":100,\"window\":\"1 minute\","
	                          "\"retry_after\":2}");
	/* in a JSON body a variable with no value is null */
	F.p.responses.rejected_body = tpl("{\"x\":{limits.nope.limit},\"y\":{limit}}");
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(body, "{\"x\":null,\"y\":100}");
	/* a text body that does not resolve falls back to the default */
	F.p.responses.rejected_content_type = "text/plain";
	F.p.responses.rejected_body = tpl("over {limits.nope.limit}");
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(ct, "application/json");
	assert_non_null(strstr(body, "\"error\":\"rate_limited\""));
	/* a 200 has no body */
	decide_200();
	assert_int_equal(sl_render_body(&EV, body, sizeof(body), &ct), 0);
	assert_null(ct);
}

static void seed3_rate_limited_body(void **state)
{
	static char body[512];
	const char *ct;
	long n;

	fx_init(&F);
	F.p.responses.rejected_body = tpl("{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":"
	                                  "\"Rate limit exceeded. Retry after {retry_after} "
	                                  "seconds.\",\"retryAfter\":{retry_after}}}");
	decide_429();
	EV.checks[1].res.retry_after = 29 * SL_NS_PER_SEC + 1;
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	assert_true(n > 0);
	body[n] = '\0';
	assert_string_equal(body, "{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":\"Rate limit "
	                          "exceeded. Retry after 30 seconds.\",\"retryAfter\":30}}");
}

static void entitlement_denial_has_no_retry_after(void **state)
{
	static char body[512];
	const char *ct;
	long n;
	struct sl_limit_spec deny = {.algo = SL_ALGO_DENY};

	fx_init(&F);
	F.p.responses.preset_xratelimit = true;
	F.limits[1].spec = deny;
	F.limits[1].status = 403;
	F.limits[1].message = tpl("API access requires the VIP plan");
	decide_200();
	EV.checks[1].res = (struct sl_result){.outcome = SL_REJECTED};
	EV.batch.status = SL_DENY;
	EV.batch.denied = 1;
	assert_int_equal(sl_eval_finish(&EV), 403);
	assert_null(strstr(headers(), "Retry-After"));
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(body, "{\"error\":\"forbidden\",\"message\":\"API access requires the "
	                          "VIP plan\",\"denied_by\":\"key\"}");
}

static void unauthorized_bodies(void **state)
{
	static char body[256];
	const char *ct;
	long n;
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	fx_result(&EV, "ip", 300, 299, SL_NS_PER_SEC, SL_NS_PER_MIN);
	assert_int_equal(sl_eval_finish(&EV), 401);
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(ct, "application/json");
	assert_string_equal(body, "{\"error\":\"unauthorized\",\"message\":\"missing API key\"}");
	/* the per-IP headers still go out with the 401 */
	assert_string_equal(headers(), "X-RateLimit-Limit: 300\n"
	                               "X-RateLimit-Remaining: 299\n"
	                               "X-RateLimit-Reset: 1700000001\n");

	freq_header(&q, "X-Api-Key", "sk_wrong");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	fx_result(&EV, "ip", 300, 298, SL_NS_PER_SEC, SL_NS_PER_MIN);
	assert_int_equal(sl_eval_finish(&EV), 401);
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(body, "{\"error\":\"unauthorized\",\"message\":\"unknown API key\"}");

	F.p.responses.unauthorized_body = tpl("{\"code\":401,\"detail\":\"{message}\"}");
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(body, "{\"code\":401,\"detail\":\"unknown API key\"}");
}

static void store_failure_renders_no_rate_limit_headers(void **state)
{
	static char body[256];
	const char *ct;
	long n;

	fx_init(&F);
	decide_200();
	EV.batch.status = SL_EIO;
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_string_equal(headers(), "");
	assert_int_equal(sl_render_body(&EV, body, sizeof(body), &ct), 0);
	F.p.store.on_error_deny = true;
	assert_int_equal(sl_eval_finish(&EV), 503);
	assert_string_equal(headers(), "");
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(
	        body, "{\"error\":\"unavailable\",\"message\":\"rate limit store unavailable\"}");
}

static void text_body_is_not_json_escaped(void **state)
{
	static char body[256];
	const char *ct;
	long n;

	fx_init(&F);
	F.p.responses.rejected_content_type = "text/plain";
	F.p.responses.rejected_body = tpl("slow down: \"{denied_by}\" {retry_after}s");
	decide_429();
	n = sl_render_body(&EV, body, sizeof(body), &ct);
	body[n] = '\0';
	assert_string_equal(ct, "text/plain");
	assert_string_equal(body, "slow down: \"key\" 2s");
}

static bool owns(const char *name)
{
	return sl_render_owns(&F.p, S(name));
}

static void rendered_names_are_owned_for_upstream_replacement(void **state)
{
	/* default x-ratelimit set: its three fields; Retry-After only ever
	 * comes with a denial, which is not forwarded */
	fx_init(&F);
	assert_true(owns("X-RateLimit-Limit"));
	assert_true(owns("x-ratelimit-remaining"));
	assert_true(owns("X-RATELIMIT-RESET"));
	assert_false(owns("Retry-After"));
	assert_false(owns("X-RateLimit-Limit-Extra"));
	assert_false(owns("RateLimit"));
	assert_false(owns("Content-Type"));
	assert_false(owns(""));

	/* explicit headers only: the preset is off, the configured names are owned */
	fx_init(&F);
	header("X-RateLimit-Tier-Remaining", "{limits.tier.remaining}");
	header("Retry-After", "{retry_after}");
	assert_true(owns("x-ratelimit-tier-remaining"));
	assert_true(owns("retry-after"));
	assert_false(owns("X-RateLimit-Limit"));

	fx_init(&F);
	F.p.responses.preset_ietf = true;
	assert_true(owns("RateLimit-Policy"));
	assert_true(owns("ratelimit"));
	assert_false(owns("X-RateLimit-Limit"));
	F.p.responses.preset_xratelimit = true;
	assert_true(owns("X-RateLimit-Limit"));
}

#define T(f) cmocka_unit_test_teardown(f, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(xratelimit_default_on_200),
	        T(xratelimit_on_429_adds_retry_after),
	        T(retry_after_is_at_least_one_second),
	        T(seed1_headers_and_unresolved_omission),
	        T(explicit_header_replaces_preset_one),
	        T(unlimited_values_do_not_resolve),
	        T(header_values_never_carry_crlf),
	        T(ietf_preset_fields),
	        T(ietf_preset_retry_after_and_concurrency_unit),
	        T(reset_saturates_instead_of_wrapping),
	        T(window_and_time_variables),
	        T(quota_reset_is_on_the_window_boundary),
	        T(message_variable_renders_the_limit_message),
	        T(default_rejection_body),
	        T(seed3_rate_limited_body),
	        T(entitlement_denial_has_no_retry_after),
	        T(unauthorized_bodies),
	        T(store_failure_renders_no_rate_limit_headers),
	        T(text_body_is_not_json_escaped),
	        T(rendered_names_are_owned_for_upstream_replacement),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
