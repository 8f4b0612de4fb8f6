/* Seed 1 (three layers: per-IP 300/min applied before key validation,
 * per-key 100/min, per-tier aggregate) on examples/three-layer-ip-key-tier.yaml,
 * end to end through the loader, the evaluation, the memory store and
 * rendering, with an injected clock. */
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
	S = scn_open("examples/three-layer-ip-key-tier.yaml");
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

static void ip_layer_301st_request_is_denied_by_ip(void **state)
{
	static const char *keys[] = {"sk_live_acme_1", "sk_live_acme_2", "sk_live_smallshop"};
	struct scn_req r = REQ("GET", "/api/v2/orders", "198.51.100.1", NULL);

	/* 300 requests at once from one IP, spread over three keys (100 each) */
	for (int i = 0; i < 300; i++) {
		r.key = keys[i % 3];
		assert_int_equal(scn_run(S, T0, &r), 200);
	}
	r.key = "sk_live_bigagency"; /* a fresh key: only the IP is spent */
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 300);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 1); /* one interval: 200 ms */
	assert_string_equal(S->body,
	                    "{\"error\":\"rate_limited\",\"denied_by\":\"ip\",\"retry_after\":1}");
	/* the same key from another IP is unaffected */
	r.ip = "198.51.100.2";
	assert_int_equal(scn_run(S, T0, &r), 200);
	/* one emission interval (200 ms) later the first IP passes once more */
	r.ip = "198.51.100.1";
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 200);
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 429);
}

static void key_layer_101st_request_is_denied_by_key(void **state)
{
	struct scn_req r = REQ("GET", "/api/v2/orders", "198.51.100.10", "sk_live_acme_1");

	for (int i = 0; i < 100; i++) {
		assert_int_equal(scn_run(S, T0, &r), 200);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 100);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 99 - i);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 2999 - i);
		assert_null(scn_hdr(S, "X-RateLimit-DeniedBy"));
	}
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "key");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 100);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
	/* the tier header still shows what the account has left */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 2900);
	/* Reset: the key's counter is fully back 60 s from now */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset"), 1767225600 + 60);
	assert_int_equal(scn_hdr_num(S, "Retry-After"), 1); /* one interval: 600 ms */

	/* the account's second key has its own counter */
	r.key = "sk_live_acme_2";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 99);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 2899);
	/* one key interval (600 ms) later the first key passes once more */
	r.key = "sk_live_acme_1";
	assert_int_equal(scn_run(S, T0 + 600 * MS, &r), 200);
	assert_int_equal(scn_run(S, T0 + 600 * MS, &r), 429);
}

static void tier_layer_denies_the_account_across_callers(void **state)
{
	/* smallshop (standard, 1000/min) has one key; the tier is shared with
	 * internal callers naming the account (/v1/decide), so 100 by key plus
	 * 900 by account spend it, from many addresses. */
	struct scn_req r = REQ("GET", "/api/v2/orders", "198.51.100.20", "sk_live_smallshop");
	char ip[32];

	for (int i = 0; i < 100; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	r.key = NULL;
	r.account = "smallshop";
	for (int i = 0; i < 900; i++) {
		snprintf(ip, sizeof(ip), "203.0.113.%d", i / 250);
		r.ip = ip;
		assert_int_equal(scn_run(S, T0, &r), 200);
	}
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 0);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 1000); /* most restrictive */
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "tier");
	/* one tier interval (60 ms) later the account passes once more */
	assert_int_equal(scn_run(S, T0 + 60 * MS, &r), 200);
	assert_int_equal(scn_run(S, T0 + 60 * MS, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "tier");
}

static void denied_request_consumes_nothing_in_any_layer(void **state)
{
	struct scn_req r = REQ("GET", "/api/v2/orders", "198.51.100.30", "sk_live_acme_1");

	for (int i = 0; i < 100; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_remaining(S, "ip"), 200);
	assert_int_equal(scn_remaining(S, "tier"), 2900);
	/* ten denials by the key layer */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(scn_run(S, T0, &r), 429);
		assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "key");
		assert_int_equal(scn_remaining(S, "ip"), 200);
		assert_int_equal(scn_remaining(S, "tier"), 2900);
	}
	/* the next allowed request from that IP and account sees 199 / 2899 */
	r.key = "sk_live_acme_2";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_remaining(S, "ip"), 199);
	assert_int_equal(scn_remaining(S, "tier"), 2899);
	assert_int_equal(scn_remaining(S, "key"), 99);
}

static void missing_or_unknown_key_is_401_and_counts_against_the_ip(void **state)
{
	struct scn_req r = REQ("GET", "/api/v2/orders", "198.51.100.40", NULL);

	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->ctype, "application/json");
	assert_string_equal(S->body,
	                    "{\"error\":\"unauthorized\",\"message\":\"missing API key\"}");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 299);
	r.key = "sk_live_guess_0001";
	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->body,
	                    "{\"error\":\"unauthorized\",\"message\":\"unknown API key\"}");
	/* key enumeration is bounded by the per-IP limit: 298 more guesses,
	 * then 429 from the ip layer */
	assert_int_equal(scn_repeat(S, T0, &r, 298, 401), 298);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
	/* and a valid key from that IP is held to it too */
	r.key = "sk_live_acme_1";
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
	        T(ip_layer_301st_request_is_denied_by_ip),
	        T(key_layer_101st_request_is_denied_by_key),
	        T(tier_layer_denies_the_account_across_callers),
	        T(denied_request_consumes_nothing_in_any_layer),
	        T(missing_or_unknown_key_is_401_and_counts_against_the_ip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
