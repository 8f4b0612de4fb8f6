/* The response parser as the proxy uses it (sl_http_init(hp, true, ...)):
 * a 1xx, 204 or 304 response ends at its head whatever Content-Length or
 * Transfer-Encoding say, so the next response is not eaten as its body; a
 * status outside 100-599 and every other malformed response fail with 502.
 * Regressions found by tests/fuzz/fuzz_http_response.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "http/http.h"

static struct sl_http_parser hp;

/* Events of parsing all of s in one buffer: each is its kind, then for
 * HEAD the status, for NEED/END the raw bytes consumed ("H200 B2 E0"). */
static void events(const char *s, char *out, size_t cap)
{
	size_t len = strlen(s), pos = 0, o = 0;

	sl_http_init(&hp, true, 65536, 0);
	out[0] = '\0';
	for (int guard = 0; guard < 64; guard++) {
		size_t used = 0;
		int ev = sl_http_parse(&hp, s + pos, len - pos, &used);

		pos += used;
		if (ev == SL_HTTP_HEAD)
			o += (size_t)snprintf(out + o, cap - o, "H%d ", hp.msg.status);
		else if (ev == SL_HTTP_END)
			o += (size_t)snprintf(out + o, cap - o, "E%zu ", used);
		else if (ev == SL_HTTP_ERR)
			o += (size_t)snprintf(out + o, cap - o, "X%d ", hp.error_status);
		else if (used)
			o += (size_t)snprintf(out + o, cap - o, "B%zu ", used);
		if (ev == SL_HTTP_ERR || (ev == SL_HTTP_NEED && pos == len && !used))
			break;
	}
}

static void response_304_with_content_length_ends_at_its_head(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\nETag: \"x\"\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	       ev, sizeof(ev));
	assert_string_equal(ev, "H304 E0 H200 E2 ");
	assert_false(hp.msg.has_body && hp.msg.status == 304);
}

static void response_1xx_with_a_chunked_body_is_only_a_head(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 100 Continue\r\nTransfer-Encoding: chunked\r\n\r\n"
	       "HTTP/1.1 103 Early Hints\r\nContent-Length: 5\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi",
	       ev, sizeof(ev));
	assert_string_equal(ev, "H100 E0 H103 E0 H200 E2 ");
}

static void response_204_and_101_without_upgrade_have_no_body(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
	       "HTTP/1.1 101 Switching\r\nTransfer-Encoding: chunked\r\n\r\n"
	       "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	       ev, sizeof(ev));
	assert_string_equal(ev, "H204 E0 H101 E0 H200 E0 ");
}

static void response_status_outside_100_to_599_is_502(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 00 Continue\r\n\r\n", ev, sizeof(ev));
	assert_string_equal(ev, "X502 ");
	events("HTTP/1.1 999 Nine\r\nContent-Length: 0\r\n\r\n", ev, sizeof(ev));
	assert_string_equal(ev, "X502 ");
	events("HTTP/1.1 099 Low\r\n\r\n", ev, sizeof(ev));
	assert_string_equal(ev, "X502 ");
}

/* obs-fold breaks the contiguity of a header value: that was a 400. */
static void malformed_response_is_502_not_400(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 0\r\n\r\n", ev, sizeof(ev));
	assert_string_equal(ev, "X502 ");
}

/* Unchanged: a HEAD response and an ordinary chunked body. */
static void head_response_and_chunked_body_as_before(void **state)
{
	char ev[256];

	(void)state;
	events("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", ev,
	       sizeof(ev));
	assert_string_equal(ev, "H200 E15 ");
	assert_true(hp.msg.keep_alive);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(response_304_with_content_length_ends_at_its_head),
	        cmocka_unit_test(response_1xx_with_a_chunked_body_is_only_a_head),
	        cmocka_unit_test(response_204_and_101_without_upgrade_have_no_body),
	        cmocka_unit_test(response_status_outside_100_to_599_is_502),
	        cmocka_unit_test(malformed_response_is_502_not_400),
	        cmocka_unit_test(head_response_and_chunked_body_as_before),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
