/* Seed 2 (partner API: 300 requests per minute per client IP, headers on
 * every response, 429 with Retry-After and an explanatory JSON body) on
 * examples/per-ip-partner-api.yaml (GCRA with a full minute of burst, so
 * every 429 says "Retry-After: 60"), end to end with an injected clock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "scenario.h"

#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z, a minute boundary */

static struct scn *S;

static int setup(void **state)
{
	S = scn_open("examples/per-ip-partner-api.yaml");
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

static void every_response_carries_the_three_headers(void **state)
{
	struct scn_req r = REQ("GET", "/v1/balances", "198.51.100.1", NULL);

	for (int i = 0; i < 59; i++)
		assert_int_equal(scn_run(S, T0 + 10 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 300);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 241);
	assert_non_null(scn_hdr(S, "X-RateLimit-Reset"));
	assert_true(scn_hdr_num(S, "X-RateLimit-Reset") > 1767225600 + 10);
	assert_null(scn_hdr(S, "Retry-After"));
	assert_int_equal(S->body_len, 0);
}

static void the_301st_request_in_a_minute_is_429_with_the_body(void **state)
{
	struct scn_req r = REQ("POST", "/v1/exchange", "198.51.100.2", NULL);
	static const char want[] =
	        "{\n"
	        "  \"error\": \"Rate limit exceeded\",\n"
	        "  \"message\": \"You have exceeded the maximum number of requests allowed (300 "
	        "requests/min). Please try again later.\",\n"
	        "  \"retry_after\": 60,\n"
	        "  \"limit\": 300,\n"
	        "  \"window\": \"1 minute\"\n"
	        "}\n";

	assert_int_equal(scn_repeat(S, T0, &r, 300, 200), 300);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 60);
	assert_string_equal(S->ctype, "application/json");
	assert_string_equal(S->body, want);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 300);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset"), 1767225600 + 60);

	/* smooth refill: one request per 200 ms, and every 429 still says 60 */
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 200);
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 60);
	assert_string_equal(S->body, want);
	assert_int_equal(scn_run(S, T0 + 30 * SEC, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 148);

	/* Retry-After is authoritative: waiting it out gives the full 300 */
	assert_int_equal(scn_run(S, T0 + 30 * SEC, &r), 200);
	r.ip = "198.51.100.3";
	assert_int_equal(scn_repeat(S, T0 + 30 * SEC, &r, 300, 200), 300);
	assert_int_equal(scn_run(S, T0 + 30 * SEC, &r), 429);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 60);
	assert_int_equal(scn_repeat(S, T0 + 90 * SEC, &r, 300, 200), 300);
	assert_int_equal(scn_run(S, T0 + 90 * SEC, &r), 429);
}

static void a_denied_request_does_not_count(void **state)
{
	struct scn_req r = REQ("GET", "/v1/balances", "198.51.100.4", NULL);

	assert_int_equal(scn_repeat(S, T0, &r, 300, 200), 300);
	assert_int_equal(scn_repeat(S, T0, &r, 50, 429), 50);
	/* other addresses keep their own 300 */
	r.ip = "2001:db8::4";
	assert_int_equal(scn_repeat(S, T0, &r, 300, 200), 300);
	assert_int_equal(scn_run(S, T0, &r), 429);
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(every_response_carries_the_three_headers),
	        T(the_301st_request_in_a_minute_is_429_with_the_body),
	        T(a_denied_request_does_not_count),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
