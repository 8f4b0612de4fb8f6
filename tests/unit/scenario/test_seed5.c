/* Seed 5 (hourly and daily quotas per account, not per key; plan
 * entitlements; stricter per-IP limits on auth endpoints) on
 * examples/hourly-daily-per-account.yaml, end to end with an injected
 * clock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "scenario.h"

#define T0S 1767225600LL /* 2026-01-01T00:00:00Z, s */
#define T0  (T0S * SEC)

static struct scn *S;

static int setup(void **state)
{
	S = scn_open("examples/hourly-daily-per-account.yaml");
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

static void vip_101st_request_in_an_hour(void **state)
{
	struct scn_req r = REQ("POST", "/v1/images/generate", "198.51.100.1", "gen_vip_1001");
	const int64_t start = T0 + 600 * SEC; /* 00:10 */

	for (int i = 0; i < 100; i++) {
		assert_int_equal(scn_run(S, start + i * SEC, &r), 200);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit-Hour"), 100);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 99 - i);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit-Day"), 1000);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Day"), 999 - i);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset-Hour"), T0S + 3600);
	}
	assert_int_equal(scn_run(S, start + 153 * SEC, &r), 429);
	/* 00:12:33 -> 01:00:00 is 2847 s */
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 2847);
	assert_string_equal(S->ctype, "application/json");
	assert_string_equal(S->body,
	                    "{\"error\":\"rate_limit_exceeded\",\"message\":\"Hourly limit "
	                    "reached: 100 requests/hour on VIP plan\",\"retry_after\":2847,"
	                    "\"plan\":\"vip\",\"limit_hour\":100,\"limit_day\":1000}");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 0);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Day"), 900);

	/* the hour resets on the boundary, not an hour after the first call */
	assert_int_equal(scn_run(S, T0 + 3600 * SEC - 1, &r), 429);
	assert_int_equal(scn_run(S, T0 + 3600 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 99);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Day"), 899);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset-Hour"), T0S + 7200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset-Hour") % 3600, 0);
}

static void vip_daily_limit_of_1000(void **state)
{
	struct scn_req r = REQ("POST", "/v1/images/generate", "198.51.100.2", "gen_vip_1001");

	/* 100 an hour for ten hours */
	for (int h = 0; h < 10; h++)
		for (int i = 0; i < 100; i++)
			assert_int_equal(scn_run(S, T0 + (h * 3600 + i) * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Day"), 0);
	/* 10:00: the hour is fresh, the day is spent */
	assert_int_equal(scn_run(S, T0 + 10 * 3600 * SEC, &r), 429);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 100);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 14 * 3600);
	assert_string_equal(S->body,
	                    "{\"error\":\"rate_limit_exceeded\",\"message\":\"Daily limit "
	                    "reached: 1000 requests/day on VIP plan\",\"retry_after\":50400,"
	                    "\"plan\":\"vip\",\"limit_hour\":100,\"limit_day\":1000}");
	/* midnight UTC: both back */
	assert_int_equal(scn_run(S, T0 + 86400 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Day"), 999);
}

static void limits_are_per_account_not_per_key(void **state)
{
	/* the bot asks /v1/decide with the account; the API uses the key */
	struct scn_req api = REQ("POST", "/v1/images/generate", "198.51.100.3", "gen_vip_1001");
	struct scn_req bot = REQ("POST", "/v1/images/generate", "10.0.0.9", NULL);

	bot.account = "user-1001";
	assert_int_equal(scn_repeat(S, T0, &api, 60, 200), 60);
	assert_int_equal(scn_repeat(S, T0, &bot, 40, 200), 40);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 0);
	assert_int_equal(scn_run(S, T0, &api), 429);
	assert_int_equal(scn_run(S, T0, &bot), 429);
	assert_non_null(strstr(S->body, "Hourly limit reached: 100 requests/hour on VIP plan"));
}

static void elite_is_unlimited(void **state)
{
	struct scn_req r = REQ("POST", "/v1/images/generate", "198.51.100.4", "gen_elite_1003");

	assert_int_equal(scn_repeat(S, T0, &r, 5000, 200), 5000);
	/* nothing to count down: the numeric headers are left out */
	assert_null(scn_hdr(S, "X-RateLimit-Limit-Hour"));
	assert_null(scn_hdr(S, "X-RateLimit-Remaining-Day"));
	assert_null(scn_hdr(S, "X-RateLimit-Reset-Hour"));
}

static void api_access_is_an_entitlement(void **state)
{
	struct scn_req r = REQ("POST", "/v1/images/generate", "198.51.100.5", "gen_basic_1002");

	assert_int_equal(scn_run(S, T0, &r), 403);
	assert_null(scn_hdr(S, "Retry-After")); /* waiting will not help */
	assert_string_equal(S->body,
	                    "{\"error\":\"rate_limit_exceeded\",\"message\":\"API access "
	                    "requires the VIP plan\",\"retry_after\":null,\"plan\":\"basic\","
	                    "\"limit_hour\":30,\"limit_day\":200}");
	/* the refusal spent nothing of the basic plan's hour */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 30);
	/* the same account outside the API (e.g. through the bot) is counted */
	r.target = "/bot/generate";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining-Hour"), 29);
	assert_int_equal(scn_repeat(S, T0, &r, 29, 200), 29);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_non_null(strstr(S->body, "Hourly limit reached: 30 requests/hour on Basic plan"));
	/* over the hour too, the API still says 403: retrying after the
	 * hour would only meet the entitlement */
	r.target = "/v1/images/generate";
	assert_int_equal(scn_run(S, T0, &r), 403);
	assert_non_null(strstr(S->body, "API access requires the VIP plan"));
}

static void auth_endpoints_per_ip(void **state)
{
	struct scn_req r = REQ("POST", "/auth/login", "198.51.100.6", NULL);

	assert_int_equal(scn_repeat(S, T0, &r, 10, 200), 10);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 6);
	r.ip = "198.51.100.7";
	assert_int_equal(scn_run(S, T0, &r), 200);

	r.target = "/auth/register";
	assert_int_equal(scn_repeat(S, T0, &r, 10, 200), 10);
	assert_int_equal(scn_run(S, T0, &r), 429);

	r.target = "/auth/forgot-password";
	assert_int_equal(scn_repeat(S, T0, &r, 3, 200), 3);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 1200); /* 3/hour: one per 20 min */
	assert_int_equal(scn_run(S, T0 + 1200 * SEC, &r), 200);
	assert_int_equal(scn_run(S, T0 + 1200 * SEC, &r), 429);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(vip_101st_request_in_an_hour),       T(vip_daily_limit_of_1000),
	        T(limits_are_per_account_not_per_key), T(elite_is_unlimited),
	        T(api_access_is_an_entitlement),       T(auth_endpoints_per_ip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
