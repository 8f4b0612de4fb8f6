/* Seed 1 (three layers: per-IP 300/min applied before key validation,
 * per-key 100/min, per-tier aggregate), end to end through the loader, the
 * evaluation, the memory store and rendering, with an injected clock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "scenario.h"

static const char CONFIG[] =
	"identify:\n"
	"  key: { from: [\"header:X-Api-Key\", \"bearer\"], required: true }\n"
	"  accounts:\n"
	"    - { account: acme, plan: reseller, keys: [sk_acme_1, sk_acme_2, sk_acme_3, sk_acme_4] }\n"
	"    - { account: bob, plan: standard, keys: [sk_bob_1, sk_bob_2] }\n"
	"plans:\n"
	"  standard: { title: Standard }\n"
	"  reseller: { title: Reseller }\n"
	"  agency: { title: Agency }\n"
	"limits:\n"
	"  - { name: ip,   key: ip,      rate: 300/min }\n"
	"  - { name: key,  key: key,     rate: 100/min }\n"
	"  - { name: tier, key: account, rate: { standard: 150/min, reseller: 5000/min, agency: 20000/min } }\n"
	"responses:\n"
	"  headers:\n"
	"    X-RateLimit-Limit: \"{limit}\"\n"
	"    X-RateLimit-Remaining: \"{remaining}\"\n"
	"    X-RateLimit-Reset: \"{reset}\"\n"
	"    X-RateLimit-Tier-Remaining: \"{limits.tier.remaining}\"\n"
	"  rejected:\n"
	"    headers: { X-RateLimit-DeniedBy: \"{denied_by}\" }\n";

#define T0 (1767225600LL * SEC) /* 2026-01-01T00:00:00Z */

static struct scn *S;

static int setup(void **state)
{
	S = scn_open_yaml(CONFIG);
	return S == NULL;
}

static int teardown(void **state)
{
	scn_close(S);
	return 0;
}

static void ip_layer_301st_request_is_denied_by_ip(void **state)
{
	static const char *keys[] = {"sk_acme_1", "sk_acme_2", "sk_acme_3", "sk_acme_4"};
	struct scn_req r = REQ("GET", "/v1/orders", "198.51.100.1", NULL);

	/* 300 requests at once spread over four keys of one account */
	for (int i = 0; i < 300; i++) {
		r.key = keys[i % 4];
		assert_int_equal(scn_run(S, T0, &r), 200);
	}
	r.key = keys[0];
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 300);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
	/* another IP behind the same keys is unaffected */
	r.ip = "198.51.100.2";
	assert_int_equal(scn_run(S, T0, &r), 200);
	/* one emission interval (200 ms) later the first IP passes once more */
	r.ip = "198.51.100.1";
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 200);
	assert_int_equal(scn_run(S, T0 + 200 * MS, &r), 429);
}

static void key_layer_101st_request_is_denied_by_key(void **state)
{
	struct scn_req r = REQ("GET", "/v1/orders", "198.51.100.10", "sk_acme_1");

	for (int i = 0; i < 100; i++) {
		assert_int_equal(scn_run(S, T0, &r), 200);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 100);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 99 - i);
		assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 4999 - i);
	}
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "key");
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 0);
	/* the tier header still shows what the account has left */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 4900);
	/* Reset: the key's counter is fully back 60 s from now */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Reset"), 1767225600 + 60);

	/* a second key of the same account has its own counter */
	r.key = "sk_acme_2";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Remaining"), 99);
	/* and one key's emission interval later the first key passes again */
	r.key = "sk_acme_1";
	assert_int_equal(scn_run(S, T0 + 600 * MS, &r), 200);
}

static void tier_layer_denies_the_account_across_keys(void **state)
{
	struct scn_req r = REQ("GET", "/v1/orders", "198.51.100.20", "sk_bob_1");

	for (int i = 0; i < 100; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	r.key = "sk_bob_2";
	r.ip = "198.51.100.21";
	for (int i = 0; i < 50; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Tier-Remaining"), 0);
	/* most restrictive: the tier (0 left) over the key (50 left) */
	assert_int_equal(scn_hdr_num(S, "X-RateLimit-Limit"), 150);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "tier");
}

static void denied_request_consumes_nothing_in_any_layer(void **state)
{
	struct scn_req r = REQ("GET", "/v1/orders", "198.51.100.30", "sk_acme_3");

	for (int i = 0; i < 100; i++)
		assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_remaining(S, "ip"), 200);
	assert_int_equal(scn_remaining(S, "tier"), 4900);
	/* ten denials by the key layer */
	for (int i = 0; i < 10; i++) {
		assert_int_equal(scn_run(S, T0, &r), 429);
		assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "key");
		assert_int_equal(scn_remaining(S, "ip"), 200);
		assert_int_equal(scn_remaining(S, "tier"), 4900);
	}
	/* the next allowed request from that IP/account sees 199 / 4899 */
	r.key = "sk_acme_4";
	assert_int_equal(scn_run(S, T0, &r), 200);
	assert_int_equal(scn_remaining(S, "ip"), 199);
	assert_int_equal(scn_remaining(S, "tier"), 4899);
	assert_int_equal(scn_remaining(S, "key"), 99);
}

static void missing_or_unknown_key_is_401_and_counts_against_the_ip(void **state)
{
	struct scn_req r = REQ("GET", "/v1/orders", "198.51.100.40", NULL);

	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->ctype, "application/json");
	assert_string_equal(S->body, "{\"error\":\"unauthorized\",\"message\":\"missing API key\"}");
	r.key = "sk_guess_0001";
	assert_int_equal(scn_run(S, T0, &r), 401);
	assert_string_equal(S->body, "{\"error\":\"unauthorized\",\"message\":\"unknown API key\"}");
	/* key enumeration is bounded by the per-IP limit: 298 more guesses,
	 * then 429 from the ip layer */
	assert_int_equal(scn_repeat(S, T0, &r, 298, 401), 298);
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
	/* and a valid key from that IP is held to it too */
	r.key = "sk_bob_1";
	assert_int_equal(scn_run(S, T0, &r), 429);
	assert_string_equal(scn_hdr(S, "X-RateLimit-DeniedBy"), "ip");
}

#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)

int main(void)
{
	const struct CMUnitTest tests[] = {
		T(ip_layer_301st_request_is_denied_by_ip),
		T(key_layer_101st_request_is_denied_by_key),
		T(tier_layer_denies_the_account_across_keys),
		T(denied_request_consumes_nothing_in_any_layer),
		T(missing_or_unknown_key_is_401_and_counts_against_the_ip),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
