/* Request heads the parser refuses or reads specially (src/http/parse.c),
 * RFC 9112 rules llhttp leaves to its user: whitespace between a field
 * name and its colon, Host missing on HTTP/1.1 or given twice, a Host that
 * is not host[:port], and an absolute-form target whose authority becomes
 * the host (and must be forwarded as Host). Responses keep llhttp's
 * leniency: the proxy rewrites their names without the blanks. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <setjmp.h>
#include <cmocka.h>
#include "http/http.h"

static struct sl_http_parser HP;

/* Parse one whole head; returns the event, and the error status in *st. */
static int head(const char *bytes, bool response, int *st)
{
	size_t used;
	int ev;

	sl_http_init(&HP, response, 16384, 0);
	ev = sl_http_parse(&HP, bytes, strlen(bytes), &used);
	*st = HP.error_status;
	return ev;
}

struct head_case {
	const char *bytes;
	int status; /* 0: accepted (SL_HTTP_HEAD), else the refusal */
};

static const struct head_case cases[] = {
        {"GET / HTTP/1.1\r\nHost: a\r\n\r\n", 0},
        {"GET / HTTP/1.0\r\n\r\n", 0}, /* Host is required from 1.1 on */
        /* an empty host name once canonical: an http URI with an empty
         * host is invalid (RFC 9110 4.2.1), and a host key would skip it */
        {"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: .\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: []:80\r\n\r\n", 400},
        {"GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a.\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nHost: a.example:80 \r\n\r\n", 0},
        {"GET / HTTP/1.1\r\nhOsT: a\r\nX-Api-Key: k\r\n\r\n", 0},
        /* RFC 9112 5.1: no whitespace between name and colon */
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key : k\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nX-Api-Key\t: k\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nX  : a\r\n\r\n", 400},
        /* RFC 9112 3.2: exactly one Host on 1.1 */
        {"GET / HTTP/1.1\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nX-Host: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
        {"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400},
        {"GET http://a/x HTTP/1.1\r\n\r\n", 400}, /* absolute-form needs a Host too */
        /* a Host that is not host[:port] */
        {"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: a\\b\r\n\r\n", 400},
        {"GET / HTTP/1.1\r\nHost: \xc3\xa9.example\r\n\r\n", 400},
        {"GET http://u@a/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        {"GET http://a b/x HTTP/1.1\r\nHost: a\r\n\r\n", 400},
};

static void request_heads_follow_rfc_9112(void **state)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int st, ev = head(cases[i].bytes, false, &st);

		if (cases[i].status == 0 && ev != SL_HTTP_HEAD)
			fail_msg("case %zu: event %d status %d, want a head", i, ev, st);
		if (cases[i].status != 0 && (ev != SL_HTTP_ERR || st != cases[i].status))
			fail_msg("case %zu: event %d status %d, want %d", i, ev, st,
			         cases[i].status);
	}
}

static void absolute_form_authority_is_the_host(void **state)
{
	int st;

	assert_int_equal(
	        head("GET http://A.example:80/x?q=1 HTTP/1.1\r\nHost: other\r\n\r\n", false, &st),
	        SL_HTTP_HEAD);
	assert_true(HP.msg.absolute);
	assert_int_equal(HP.msg.host.len, 12);
	assert_memory_equal(HP.msg.host.p, "A.example:80", 12);
	assert_int_equal(HP.msg.path.len, 2);
	assert_memory_equal(HP.msg.path.p, "/x", 2);

	assert_int_equal(head("GET /x HTTP/1.1\r\nHost: b.example\r\n\r\n", false, &st),
	                 SL_HTTP_HEAD);
	assert_false(HP.msg.absolute);
	assert_int_equal(HP.msg.host.len, 9);
	assert_memory_equal(HP.msg.host.p, "b.example", 9);
}

static void expect_is_still_found(void **state)
{
	int st;

	assert_int_equal(head("POST / HTTP/1.1\r\nExpect: 100-continue\r\nHost: a\r\n"
	                      "Content-Length: 1\r\n\r\n",
	                      false, &st),
	                 SL_HTTP_HEAD);
	assert_true(HP.msg.expect_continue);
}

static void responses_are_not_held_to_request_rules(void **state)
{
	int st;

	assert_int_equal(head("HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 0\r\n\r\n", true, &st),
	                 SL_HTTP_HEAD);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(request_heads_follow_rfc_9112),
	        cmocka_unit_test(absolute_form_authority_is_the_host),
	        cmocka_unit_test(expect_is_still_found),
	        cmocka_unit_test(responses_are_not_held_to_request_rules),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
