/* Seed 4 (per-plan per-minute rates enforced nginx-style with a burst and a
 * delay queue, daily quotas, per-API counters) on
 * examples/plans-daily-quota-burst-queue.yaml, end to end with an injected
 * clock: the 23-request burst (15 at once, 5 delayed, 3 rejected) and the
 * daily headers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "scenario.h"

#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z */

static struct scn *S;

static int setup(void **state)
{
	S = scn_open("examples/plans-daily-quota-burst-queue.yaml");
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

static const char MINUTE_BODY[] =
        "{\n"
        "  \"get\": \"\",\n"
        "  \"parameters\": [],\n"
        "  \"errors\": { \"rateLimit\": \"Too many requests. You have exceeded the limit of "
        "requests per minute of your subscription.\" },\n"
        "  \"results\": 0,\n"
        "  \"paging\": { \"current\": 1, \"total\": 1 },\n"
        "  \"response\": []\n"
        "}\n";

static void mega_burst_of_23_is_15_now_5_delayed_3_rejected(void **state)
{
	struct scn_req r = REQ("GET", "/weather/fixtures?live=all", "198.51.100.1", "key-bob");
	const int64_t t = (60 * SEC + 899) / 900; /* emission interval, rounded up: 66.67 ms */

	for (int i = 0; i < 15; i++) {
		assert_int_equal(scn_run(S, T0, &r), 200);
		assert_int_equal(S->delay, 0);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 900);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 14 - i);
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-limit"), 150000);
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 149999 - i);
	}
	for (int k = 1; k <= 5; k++) {
		assert_int_equal(scn_run(S, T0, &r), 200);
		assert_int_equal(S->delay, k * t); /* held T, 2T, ... 5T */
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 149985 - k);
	}
	for (int i = 0; i < 3; i++) {
		assert_int_equal(scn_run(S, T0, &r), 429);
		assert_int_equal(S->delay, 0);
		assert_true(scn_hdr_num(S, "Retry-After") >= 1);
		assert_string_equal(S->body, MINUTE_BODY);
		/* rejected requests do not count against the day */
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 149980);
	}
	/* the queue drains one slot per interval */
	assert_int_equal(scn_run(S, T0 + t, &r), 200);
	assert_int_equal(S->delay, 5 * t);
	assert_int_equal(scn_run(S, T0 + t, &r), 429);
}

static void each_api_has_its_own_counters(void **state)
{
	struct scn_req r = REQ("GET", "/weather/fixtures", "198.51.100.2", "key-bob");
	unsigned now = 0, delayed = 0, rejected = 0;

	for (int i = 0; i < 23; i++) {
		int st = scn_run(S, T0, &r);

		now += st == 200 && S->delay == 0;
		delayed += st == 200 && S->delay > 0;
		rejected += st == 429;
	}
	assert_int_equal(now, 15);
	assert_int_equal(delayed, 5);
	assert_int_equal(rejected, 3);
	r.target = "/stocks/games";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(S->delay, 0);
	assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 149999);
}

static void plans_set_the_rate(void **state)
{
	struct scn_req r = REQ("GET", "/weather/leagues", "198.51.100.3", "key-carol");

	/* custom: 1200/min, burst 20, queue 5 */
	assert_int_equal(scn_repeat(S, T0, &r, 20, 200), 20);
	assert_int_equal(S->delay, 0);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 1200);
	assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-limit"), 1500000);
	assert_int_equal(scn_repeat(S, T0, &r, 5, 200), 5);
	assert_int_equal(S->delay, 5 * (60 * SEC / 1200));
	assert_int_equal(scn_run(S, T0, &r), 429);

	/* free: 10/min, no queue */
	r.key = "key-alice";
	assert_int_equal(scn_repeat(S, T0, &r, 10, 200), 10);
	assert_int_equal(S->delay, 0);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 6); /* one interval: 6 s */
}

static void daily_quota_and_its_headers(void **state)
{
	/* free: 100/day; one request every 6 s stays inside 10/min */
	struct scn_req r = REQ("GET", "/weather/teams", "198.51.100.4", "key-alice");
	const int64_t noon = T0 + 12 * 3600 * SEC;

	for (int i = 0; i < 100; i++) {
		assert_int_equal(scn_run(S, noon + i * 6 * SEC, &r), 200);
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-limit"), 100);
		assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 99 - i);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 10);
	}
	assert_int_equal(scn_run(S, noon + 600 * SEC, &r), 429);
	assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 0);
	/* until midnight UTC */
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 12 * 3600 - 600);
	assert_non_null(strstr(S->body, "\"rateLimit\": \"Too many requests. You have reached the "
	                                "limit of requests per day of your subscription.\""));
	/* the quota is per API: another API of the account still has its 100 */
	r.target = "/stocks/teams";
	assert_int_equal(scn_run(S, noon + 600 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 99);
	/* the next day the weather quota is back */
	r.target = "/weather/teams";
	assert_int_equal(scn_run(S, T0 + 86400 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "x-ratelimit-requests-remaining"), 99);
}

static void key_is_required(void **state)
{
	struct scn_req r = REQ("GET", "/weather/fixtures", "198.51.100.5", NULL);

	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->body,
	                    "{\"error\":\"unauthorized\",\"message\":\"missing API key\"}");
	r.key = "key-nobody";
	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->body,
	                    "{\"error\":\"unauthorized\",\"message\":\"unknown API key\"}");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(mega_burst_of_23_is_15_now_5_delayed_3_rejected),
	        T(each_api_has_its_own_counters),
	        T(plans_set_the_rate),
	        T(daily_quota_and_its_headers),
	        T(key_is_required),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
