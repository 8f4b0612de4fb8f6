/* Seed 3 (per-key tiers with bursts and concurrency caps, stricter
 * per-endpoint limits, RATE_LIMITED bodies) on
 * examples/tiers-burst-concurrency-endpoints.yaml, end to end with an
 * injected clock. */
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
	S = scn_open("examples/tiers-burst-concurrency-endpoints.yaml");
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

/* Requests at one instant, each response ending before the next starts,
 * until the first non-200; returns how many passed. */
static unsigned burst(struct scn_req *r, int64_t now, unsigned max)
{
	unsigned n = 0;

	while (n < max && scn_run(S, now, r) == 200) {
		scn_release(S, now);
		n++;
	}
	return n;
}

static void burst_sizes_per_tier(void **state)
{
	static const struct {
		const char *key;
		unsigned burst, per_min;
	} tiers[] = {
	        {"key_test_free", 10, 60},
	        {"key_live_starter", 50, 600},
	        {"key_live_pro", 200, 6000},
	        {"key_live_enterprise", 2000, 60000},
	};

	for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
		struct scn_req r = REQ("POST", "/v1/messages", "198.51.100.1", tiers[i].key);
		int64_t interval = 60 * SEC / tiers[i].per_min;

		assert_int_equal(burst(&r, T0, 5000), tiers[i].burst);
		assert_int_equal(S->status, 429);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), tiers[i].per_min);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
		assert_int_equal(scn_hdr_num(S, "Retry-After"), 1);
		assert_string_equal(S->body, "{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":"
		                             "\"Rate limit exceeded. Retry after 1 seconds.\","
		                             "\"retryAfter\":1}}");
		/* then N per minute, smoothly: one per interval */
		assert_int_equal(burst(&r, T0 + interval, 10), 1);
		assert_int_equal(burst(&r, T0 + 3 * interval, 10), 2);
	}
}

static void retry_after_in_the_body_is_the_wait(void **state)
{
	/* a free key that spent its burst at T0 and waits: 30 s later it has
	 * 30 units back; spending 40 at once leaves a 10 s wait */
	struct scn_req r = REQ("GET", "/v1/channels", "198.51.100.2", "key_test_free");

	assert_int_equal(burst(&r, T0, 100), 10);
	r.cost = 10;
	assert_int_equal(scn_run(S, T0 + 30 * SEC, &r), 200);
	scn_release(S, T0 + 30 * SEC);
	r.cost = 1;
	assert_int_equal(burst(&r, T0 + 30 * SEC, 100), 0);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 1);
	r.cost = 5;
	assert_int_equal(scn_run(S, T0 + 30 * SEC, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 5);
	assert_string_equal(S->body, "{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":"
	                             "\"Rate limit exceeded. Retry after 5 seconds.\","
	                             "\"retryAfter\":5}}");
}

static void concurrency_caps_in_flight_requests(void **state)
{
	static const struct {
		const char *key;
		unsigned cap;
	} tiers[] = {
	        {"key_test_free", 5},
	        {"key_live_starter", 25},
	        {"key_live_pro", 100},
	};

	for (size_t i = 0; i < sizeof(tiers) / sizeof(tiers[0]); i++) {
		struct scn_req r = REQ("GET", "/v1/channels", "198.51.100.3", tiers[i].key);
		unsigned ok = 0;

		/* responses that have not ended hold their slots */
		while (ok < 1000 && scn_run(S, T0, &r) == 200)
			ok++;
		assert_int_equal(ok, tiers[i].cap);
		assert_int_equal(S->status, 429);
		assert_int_equal(scn_remaining(S, "concurrent"), 0);
		/* one response ends: one more may start */
		assert_int_equal(scn_end(S, T0 + 1 * SEC, &r), 1);
		assert_int_equal(scn_run(S, T0 + 1 * SEC, &r), 200);
		assert_int_equal(scn_run(S, T0 + 1 * SEC, &r), 429);
	}
}

static void headers_speak_for_the_rate_not_the_slots(void **state)
{
	/* pro: 199 of the 200 burst left vs 99 of 100 slots: the slots have
	 * no window, so X-RateLimit-* report the per-minute rate */
	struct scn_req r = REQ("GET", "/v1/channels", "198.51.100.9", "key_live_pro");

	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 6000);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 199);
	scn_release(S, T0);
}

static void oauth_token_31st_per_ip(void **state)
{
	struct scn_req r = REQ("POST", "/oauth/token", "198.51.100.4", NULL);

	for (int i = 0; i < 30; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 30);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 2); /* one interval: 2 s */
	assert_string_equal(S->body, "{\"error\":{\"code\":\"RATE_LIMITED\",\"message\":"
	                             "\"Rate limit exceeded. Retry after 2 seconds.\","
	                             "\"retryAfter\":2}}");
	/* per IP: another address still has its 30 */
	r.ip = "198.51.100.5";
	assert_int_equal(scn_run(S, T0, &r), 200);
	/* and only POST /oauth/token is limited so */
	r.ip = "198.51.100.4";
	r.method = "GET";
	assert_int_equal(scn_run(S, T0, &r), 200);
}

static void batch_and_transactional_11th_per_key(void **state)
{
	static const char *paths[] = {"/v1/messages/batch", "/v1/messages/transactional"};

	for (size_t i = 0; i < 2; i++) {
		struct scn_req r = REQ("POST", paths[i], "198.51.100.6", "key_live_pro");
		long long before;

		assert_int_equal(burst(&r, T0, 100), 10);
		assert_int_equal(S->status, 429);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 10);
		before = scn_remaining(S, "rate");
		/* the denied endpoint call consumed nothing from the key's rate */
		assert_int_equal(scn_run(S, T0, &r), 429);
		assert_int_equal(scn_remaining(S, "rate"), before);
		/* other endpoints of the same key still pass */
		r.target = "/v1/messages";
		assert_int_equal(scn_run(S, T0, &r), 200);
		scn_release(S, T0);
	}
	/* one batch call = one unit of the key's rate, whatever it carries */
	struct scn_req r = REQ("POST", "/v1/messages/batch", "198.51.100.7", "key_live_starter");

	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_remaining(S, "rate"), 49);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(burst_sizes_per_tier),
	        T(retry_after_in_the_body_is_the_wait),
	        T(concurrency_caps_in_flight_requests),
	        T(headers_speak_for_the_rate_not_the_slots),
	        T(oauth_token_31st_per_ip),
	        T(batch_and_transactional_11th_per_key),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
