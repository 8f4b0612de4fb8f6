/* Listen addresses (src/policy/listen.c): IP literals parse without the
 * resolver, "*" and an empty host mean every IPv4 interface, a host name
 * resolves to its first address (localhost, from /etc/hosts, to loopback),
 * and malformed forms are refused as SL_EINVAL with a reason while a name
 * that does not resolve is SL_ENOENT. Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <sluice/error.h>
#include "policy/listen.h"

static void literals_parse_to_their_address_and_port(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int family;
		const char *addr; /* inet_ntop form */
		unsigned port;
		bool loopback;
	} ok[] = {
	        {"127.0.0.1:8080", AF_INET, "127.0.0.1", 8080, true},
	        {"127.1.2.3:1", AF_INET, "127.1.2.3", 1, true},
	        {"10.0.0.5:65535", AF_INET, "10.0.0.5", 65535, false},
	        {"0.0.0.0:80", AF_INET, "0.0.0.0", 80, false},
	        {"*:8080", AF_INET, "0.0.0.0", 8080, false},
	        {":8080", AF_INET, "0.0.0.0", 8080, false},
	        {"[::1]:9901", AF_INET6, "::1", 9901, true},
	        {"[::]:443", AF_INET6, "::", 443, false},
	        {"[::ffff:127.0.0.1]:80", AF_INET6, "::ffff:127.0.0.1", 80, true},
	        {"[2001:db8::1]:8443", AF_INET6, "2001:db8::1", 8443, false},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char err[128] = "", text[64];
		const void *a;
		unsigned port;

		assert_int_equal(sl_listen_resolve(ok[i].s, &ss, &len, err, sizeof(err)), 0);
		assert_int_equal(ss.ss_family, ok[i].family);
		if (ok[i].family == AF_INET) {
			assert_int_equal(len, sizeof(struct sockaddr_in));
			a = &((struct sockaddr_in *)&ss)->sin_addr;
			port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		} else {
			assert_int_equal(len, sizeof(struct sockaddr_in6));
			a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
			port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
		}
		assert_non_null(inet_ntop(ok[i].family, a, text, sizeof(text)));
		assert_string_equal(text, ok[i].addr);
		assert_int_equal(port, ok[i].port);
		assert_int_equal(sl_listen_is_loopback(&ss), ok[i].loopback);
	}
}

static void localhost_resolves_to_loopback(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char err[128] = "";

	assert_int_equal(sl_listen_resolve("localhost:8080", &ss, &len, err, sizeof(err)), 0);
	assert_true(ss.ss_family == AF_INET || ss.ss_family == AF_INET6);
	assert_true(sl_listen_is_loopback(&ss));
	if (ss.ss_family == AF_INET)
		assert_int_equal(ntohs(((struct sockaddr_in *)&ss)->sin_port), 8080);
	else
		assert_int_equal(ntohs(((struct sockaddr_in6 *)&ss)->sin6_port), 8080);
}

static void malformed_forms_are_refused_with_a_reason(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		const char *why;
	} bad[] = {
	        {"127.0.0.1", "no :PORT"},
	        {"nowhere", "no :PORT"},
	        {"127.0.0.1:0", "port must be a number 1-65535"},
	        {"127.0.0.1:65536", "port must be a number 1-65535"},
	        {"127.0.0.1:80x", "port must be a number 1-65535"},
	        {"127.0.0.1:", "port must be a number 1-65535"},
	        {"127.0.0.1:-1", "port must be a number 1-65535"},
	        {"[::1]", "expected [IPv6]:PORT"},
	        {"[::1:80", "expected [IPv6]:PORT"},
	        {"[127.0.0.1]:80", "is not an IPv6 address"},
	        {"::1:80", "goes in brackets"},
	        {"300.1.1.1:80", "'300.1.1.1' is not an IPv4 address"},
	        {"1.2.3:80", "'1.2.3' is not an IPv4 address"},
	        {"local_host:80", "not an IP address or a host name"},
	        {"-lead.example:80", "not an IP address or a host name"},
	        {"trail-.example:80", "not an IP address or a host name"},
	        {"a..b:80", "not an IP address or a host name"},
	        {"sp ace:80", "not an IP address or a host name"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sockaddr_storage ss;
		socklen_t len = 0;
		char err[128] = "";

		assert_int_equal(sl_listen_resolve(bad[i].s, &ss, &len, err, sizeof(err)),
		                 SL_EINVAL);
		if (strstr(err, bad[i].why) == NULL)
			fail_msg("%s: got \"%s\", want \"%s\"", bad[i].s, err, bad[i].why);
		/* err may be omitted */
		assert_int_equal(sl_listen_resolve(bad[i].s, &ss, &len, NULL, 0), SL_EINVAL);
	}
}

static void a_name_that_does_not_resolve_is_enoent(void **state)
{
	(void)state;
	struct sockaddr_storage ss;
	socklen_t len = 0;
	char err[128] = "";

	/* RFC 6761: .invalid never resolves */
	assert_int_equal(sl_listen_resolve("no-such-host.invalid:80", &ss, &len, err, sizeof(err)),
	                 SL_ENOENT);
	assert_non_null(strstr(err, "host 'no-such-host.invalid' does not resolve"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(literals_parse_to_their_address_and_port),
	        cmocka_unit_test(localhost_resolves_to_loopback),
	        cmocka_unit_test(malformed_forms_are_refused_with_a_reason),
	        cmocka_unit_test(a_name_that_does_not_resolve_is_enoent),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
