/* Identity: client address through trusted proxies, API key sources and
 * lookup, /v1/decide descriptors, route matching. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>
#include "eval_fixture.h"

static struct fixture F;
static struct sl_eval EV;

static const char *client_ip(struct freq *q)
{
	assert_int_equal(sl_identify(&EV, &F.p, &q->r), 0);
	return EV.ip;
}

static void peer_address_is_the_client_without_proxies(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "203.0.113.7");
	assert_string_equal(client_ip(&q), "203.0.113.7");
	freq_peer(&q, "2001:db9::1");
	assert_string_equal(client_ip(&q), "2001:db9::1");
}

static void v4_mapped_v6_peer_reads_as_v4(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "::ffff:203.0.113.9");
	assert_string_equal(client_ip(&q), "203.0.113.9");
	/* and a mapped trusted proxy is trusted */
	freq_peer(&q, "::ffff:10.1.2.3");
	freq_header(&q, "X-Forwarded-For", "198.51.100.1");
	assert_string_equal(client_ip(&q), "198.51.100.1");
}

static void untrusted_peer_forwarded_for_is_ignored(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Forwarded-For", "1.2.3.4");
	freq_header(&q, "X-Real-IP", "5.6.7.8");
	assert_string_equal(client_ip(&q), "203.0.113.7");
}

static void trusted_chain_takes_rightmost_untrusted(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "10.0.0.1");
	/* the client forged 6.6.6.6; 198.51.100.4 is what our first proxy saw */
	freq_header(&q, "x-forwarded-for", "6.6.6.6, 198.51.100.4 ,10.9.9.9,192.168.1.20");
	assert_string_equal(client_ip(&q), "198.51.100.4");
}

static void forwarded_for_headers_join_in_order(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "10.0.0.1");
	freq_header(&q, "X-Forwarded-For", "6.6.6.6, 198.51.100.4");
	freq_header(&q, "X-Forwarded-For", "10.2.2.2");
	assert_string_equal(client_ip(&q), "198.51.100.4");
}

static void all_trusted_chain_takes_leftmost(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "10.0.0.1");
	freq_header(&q, "X-Forwarded-For", "10.3.3.3, 10.4.4.4");
	assert_string_equal(client_ip(&q), "10.3.3.3");
}

static void garbage_in_chain_stops_at_last_good_address(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "10.0.0.1");
	freq_header(&q, "X-Forwarded-For", "1.1.1.1, unknown, 10.5.5.5");
	assert_string_equal(client_ip(&q), "10.5.5.5");
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "10.0.0.1");
	freq_header(&q, "X-Forwarded-For", "garbage");
	assert_string_equal(client_ip(&q), "10.0.0.1");
}

static void forwarded_for_with_ports_and_ipv6(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "2001:db8::5");
	freq_header(&q, "X-Forwarded-For", "[2001:db9::abcd]:4711, 192.168.1.1:8080");
	assert_string_equal(client_ip(&q), "2001:db9::abcd");
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "2001:db8::5");
	freq_header(&q, "X-Forwarded-For", "2001:DB9:0:0::1");
	assert_string_equal(client_ip(&q), "2001:db9::1");
}

static void real_ip_used_from_trusted_peer_without_forwarded_for(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	freq_peer(&q, "192.168.1.254");
	freq_header(&q, "X-Real-IP", " 198.51.100.77 ");
	assert_string_equal(client_ip(&q), "198.51.100.77");
}

static void cidr_edges(void **state)
{
	struct sl_cidr c;
	struct sl_ipaddr a;

	fx_cidr(&c, "192.168.1.0", 24);
	assert_int_equal(sl_ip_parse(S("192.168.1.0"), &a), 0);
	assert_true(sl_cidr_contains(&c, &a));
	assert_int_equal(sl_ip_parse(S("192.168.1.255"), &a), 0);
	assert_true(sl_cidr_contains(&c, &a));
	assert_int_equal(sl_ip_parse(S("192.168.2.0"), &a), 0);
	assert_false(sl_cidr_contains(&c, &a));
	assert_int_equal(sl_ip_parse(S("192.168.0.255"), &a), 0);
	assert_false(sl_cidr_contains(&c, &a));

	fx_cidr(&c, "10.0.0.0", 9); /* odd prefix: 10.0.0.0 - 10.127.255.255 */
	assert_int_equal(sl_ip_parse(S("10.127.255.255"), &a), 0);
	assert_true(sl_cidr_contains(&c, &a));
	assert_int_equal(sl_ip_parse(S("10.128.0.0"), &a), 0);
	assert_false(sl_cidr_contains(&c, &a));

	fx_cidr(&c, "0.0.0.0", 0);
	assert_true(sl_cidr_contains(&c, &a));
	fx_cidr(&c, "10.128.0.0", 32);
	assert_true(sl_cidr_contains(&c, &a));
	fx_cidr(&c, "10.128.0.1", 32);
	assert_false(sl_cidr_contains(&c, &a));

	fx_cidr(&c, "2001:db8::", 33);
	assert_int_equal(sl_ip_parse(S("2001:db8:7fff:ffff::1"), &a), 0);
	assert_true(sl_cidr_contains(&c, &a));
	assert_int_equal(sl_ip_parse(S("2001:db8:8000::"), &a), 0);
	assert_false(sl_cidr_contains(&c, &a));
	fx_cidr(&c, "::1", 128);
	assert_int_equal(sl_ip_parse(S("[::1]"), &a), 0);
	assert_true(sl_cidr_contains(&c, &a));
	/* families never mix */
	fx_cidr(&c, "::", 0);
	assert_int_equal(sl_ip_parse(S("1.2.3.4"), &a), 0);
	assert_false(sl_cidr_contains(&c, &a));
}

static void ip_parse_refuses_garbage(void **state)
{
	struct sl_ipaddr a;

	assert_int_equal(sl_ip_parse(S(""), &a), SL_EINVAL);
	assert_int_equal(sl_ip_parse(S("1.2.3"), &a), SL_EINVAL);
	assert_int_equal(sl_ip_parse(S("1.2.3.256"), &a), SL_EINVAL);
	assert_int_equal(sl_ip_parse(S("[::1"), &a), SL_EINVAL);
	assert_int_equal(sl_ip_parse(S("[::1]x"), &a), SL_EINVAL);
	assert_int_equal(sl_ip_parse(S("::g"), &a), SL_EINVAL);
	assert_int_equal(
	        sl_ip_parse(S("1111:2222:3333:4444:5555:6666:7777:8888:9999:aaaa:bbbb:cccc"), &a),
	        SL_EINVAL);
}

static void decide_ip_given_directly(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	q.r.ip = S("::ffff:198.51.100.3");
	assert_string_equal(client_ip(&q), "198.51.100.3");
}

/* ---- keys ---- */

static void key_sources_follow_configured_order(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", "key=sk_fred");
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "Authorization", "Bearer sk_bob");
	freq_header(&q, "x-api-KEY", "sk_acme");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_KNOWN);
	assert_string_equal(EV.account->name, "acme");
	assert_string_equal(EV.plan->name, "reseller");
	assert_memory_equal(EV.key.p, "sk_acme", 7);

	/* reversed order: query first */
	F.key_from[0] = (struct sl_key_source){SL_KEYSRC_QUERY, "key"};
	F.key_from[2] = (struct sl_key_source){SL_KEYSRC_HEADER, "X-Api-Key"};
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_string_equal(EV.account->name, "fred");

	/* an empty header value does not count: the next source is used */
	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "  ");
	freq_header(&q, "Authorization", "Bearer sk_bob");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_string_equal(EV.account->name, "bob");
	assert_string_equal(EV.account_name.p, "bob");
}

static void bearer_parsing(void **state)
{
	static const struct {
		const char *auth;
		int state;
	} cases[] = {
	        {"Bearer sk_bob", SL_KEY_KNOWN},
	        {"bearer sk_bob", SL_KEY_KNOWN},
	        {"BEARER   sk_bob  ", SL_KEY_KNOWN},
	        {"Bearer\tsk_bob", SL_KEY_KNOWN},
	        {"Bearer sk_nope", SL_KEY_UNKNOWN},
	        {"Bearer", SL_KEY_NONE},
	        {"Bearer ", SL_KEY_NONE},
	        {"Bearersk_bob", SL_KEY_NONE},
	        {"Basic c2tfYm9i", SL_KEY_NONE},
	        {"Token sk_bob", SL_KEY_NONE},
	};
	struct freq q;

	fx_init(&F);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		freq_init(&q, "GET", "/", NULL);
		freq_header(&q, "authorization", cases[i].auth);
		assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
		assert_int_equal(EV.key_state, cases[i].state);
		if (cases[i].state == SL_KEY_KNOWN)
			assert_string_equal(EV.account->name, "bob");
	}
}

static void query_values_are_percent_decoded(void **state)
{
	char buf[64];

	assert_int_equal(sl_query_param(S("a=1&key=sk%5Fbob&b=2"), "key", 3, buf, sizeof(buf)), 6);
	assert_memory_equal(buf, "sk_bob", 6);
	assert_int_equal(sl_query_param(S("k%65y=x+y%20z"), "key", 3, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "x y z", 5);
	/* malformed escapes are literal */
	assert_int_equal(sl_query_param(S("key=%zz%4"), "key", 3, buf, sizeof(buf)), 5);
	assert_memory_equal(buf, "%zz%4", 5);
	assert_int_equal(sl_query_param(S("keys=1&akey=2"), "key", 3, buf, sizeof(buf)), -1);
	assert_int_equal(sl_query_param(S("&&key&"), "key", 3, buf, sizeof(buf)), 0);
	assert_int_equal(sl_query_param(S("key=0123456789"), "key", 3, buf, 4), -2);
	assert_int_equal(sl_query_param(S(""), "key", 3, buf, sizeof(buf)), -1);

	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", "x=1&key=sk%5ffred");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_KNOWN);
	assert_string_equal(EV.account->name, "fred");
}

static void missing_and_unknown_keys(void **state)
{
	struct freq q;
	char longkey[SL_KEY_MAX + 10];

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_NONE);
	assert_null(EV.account);
	assert_null(EV.plan);
	assert_int_equal(EV.account_name.len, 0);

	freq_header(&q, "X-Api-Key", "sk_ACME");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_UNKNOWN);
	assert_null(EV.account);

	memset(longkey, 'a', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	freq_init(&q, "GET", "/", NULL);
	freq_header(&q, "X-Api-Key", longkey);
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_UNKNOWN);
}

static void decide_account_and_plan_given(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/", NULL);
	q.r.account = S("bob");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_string_equal(EV.account->name, "bob");
	assert_string_equal(EV.plan->name, "standard");

	q.r.plan = S("reseller");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_string_equal(EV.plan->name, "reseller");

	/* an account the key store does not know, with its plan */
	q.r.account = S("chatbot-42");
	q.r.plan = S("free");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_null(EV.account);
	assert_int_equal(EV.account_name.len, 10);
	assert_memory_equal(EV.account_name.p, "chatbot-42", 10);
	assert_string_equal(EV.plan->name, "free");

	/* key given directly wins over the named account */
	q.r.key = S("sk_acme2");
	q.r.plan = S("");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_string_equal(EV.account->name, "acme");
	assert_string_equal(EV.plan->name, "reseller");
}

/* ---- routes ---- */

static const char *route_of(const char *method, const char *path, const char *query)
{
	struct freq q;
	const struct sl_route *r;

	freq_init(&q, method, path, query);
	r = sl_route_match(&F.p, &q.r);
	return r ? r->name : "(none)";
}

static void routes_first_match_prefix_and_query(void **state)
{
	fx_init(&F);
	assert_string_equal(route_of("POST", "/oauth/token", NULL), "oauth");
	assert_string_equal(route_of("GET", "/oauth/token", NULL), "any");
	assert_string_equal(route_of("POST", "/oauth/token/", NULL), "any");
	assert_string_equal(route_of("POST", "/v1/messages/batch", NULL), "batch");
	assert_string_equal(route_of("GET", "/v1/messages/", NULL), "batch");
	assert_string_equal(route_of("GET", "/v1/messages", NULL), "batch");
	assert_string_equal(route_of("GET", "/v1/messagesx", NULL), "any");
	assert_string_equal(route_of("GET", "/search", "q=1&mode=deep"), "search");
	assert_string_equal(route_of("GET", "/search", "mode=shallow"), "any");
	assert_string_equal(route_of("GET", "/search", NULL), "any");
	F.p.nroutes = 3;
	assert_string_equal(route_of("GET", "/elsewhere", NULL), "(none)");
	/* the earlier route wins when two match */
	F.routes[2] = (struct sl_route){
	        .name = "shadow", .path_match = SL_PATH_PREFIX, .path = "/", .path_len = 1};
	assert_string_equal(route_of("POST", "/oauth/token", NULL), "oauth");
	assert_string_equal(route_of("GET", "/v2/x", NULL), "shadow");
}

/* The per-thread digest cache (identity.c) must be invisible: a key seen
 * before, evicted by others, of cacheable length or not, gets the digest
 * and account it got the first time. */
static void repeated_keys_identify_the_same(void **state)
{
	static const char *known[] = {"sk_bob", "sk_acme", "sk_fred"};
	uint8_t first[3][32];
	char key[SL_KEY_MAX];
	struct freq q;

	fx_init(&F);
	for (size_t k = 0; k < 3; k++) {
		freq_init(&q, "GET", "/", NULL);
		freq_header(&q, "X-Api-Key", known[k]);
		assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
		assert_int_equal(EV.key_state, SL_KEY_KNOWN);
		memcpy(first[k], EV.key_sha256, 32);
	}
	for (int round = 0; round < 3; round++) {
		/* unknown keys of every length around the cache's limit */
		for (size_t i = 1; i < 200; i++) {
			memset(key, 'a' + (int)(i % 26), i);
			key[i] = 0;
			freq_init(&q, "GET", "/", NULL);
			freq_header(&q, "X-Api-Key", key);
			assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
			assert_int_equal(EV.key_state, SL_KEY_UNKNOWN);
		}
		for (size_t k = 0; k < 3; k++) {
			freq_init(&q, "GET", "/", NULL);
			freq_header(&q, "X-Api-Key", known[k]);
			assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
			assert_int_equal(EV.key_state, SL_KEY_KNOWN);
			assert_memory_equal(EV.key_sha256, first[k], 32);
		}
	}
	/* same length, one byte apart: never confused */
	freq_init(&q, "GET", "/", NULL);
	freq_header(&q, "X-Api-Key", "sk_bog");
	assert_int_equal(sl_identify(&EV, &F.p, &q.r), 0);
	assert_int_equal(EV.key_state, SL_KEY_UNKNOWN);
	assert_memory_not_equal(EV.key_sha256, first[0], 32);
}

/* The hand-rolled IPv4 text is inet_ntop's. */
static void ipv4_text_matches_inet_ntop(void **state)
{
	static const uint8_t addrs[][4] = {{0, 0, 0, 0},     {255, 255, 255, 255}, {10, 0, 9, 100},
	                                   {1, 22, 133, 99}, {203, 0, 113, 7},     {100, 10, 1, 0}};
	struct sl_ipaddr a;
	char got[64], want[64];

	for (size_t i = 0; i < sizeof(addrs) / sizeof(addrs[0]); i++) {
		memset(&a, 0, sizeof(a));
		a.family = AF_INET;
		memcpy(a.addr, addrs[i], 4);
		sl_ip_format(&a, got, sizeof(got));
		assert_non_null(inet_ntop(AF_INET, addrs[i], want, sizeof(want)));
		assert_string_equal(got, want);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(peer_address_is_the_client_without_proxies),
	        cmocka_unit_test(v4_mapped_v6_peer_reads_as_v4),
	        cmocka_unit_test(untrusted_peer_forwarded_for_is_ignored),
	        cmocka_unit_test(trusted_chain_takes_rightmost_untrusted),
	        cmocka_unit_test(forwarded_for_headers_join_in_order),
	        cmocka_unit_test(all_trusted_chain_takes_leftmost),
	        cmocka_unit_test(garbage_in_chain_stops_at_last_good_address),
	        cmocka_unit_test(forwarded_for_with_ports_and_ipv6),
	        cmocka_unit_test(real_ip_used_from_trusted_peer_without_forwarded_for),
	        cmocka_unit_test(cidr_edges),
	        cmocka_unit_test(ip_parse_refuses_garbage),
	        cmocka_unit_test(decide_ip_given_directly),
	        cmocka_unit_test(key_sources_follow_configured_order),
	        cmocka_unit_test(bearer_parsing),
	        cmocka_unit_test(query_values_are_percent_decoded),
	        cmocka_unit_test(missing_and_unknown_keys),
	        cmocka_unit_test(repeated_keys_identify_the_same),
	        cmocka_unit_test(ipv4_text_matches_inet_ntop),
	        cmocka_unit_test(decide_account_and_plan_given),
	        cmocka_unit_test(routes_first_match_prefix_and_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
