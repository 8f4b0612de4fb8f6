/* struct sl_buf: bounded appends, number formatting at the edges, JSON
 * string escaping. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include "core/buf.h"

static void appends_stop_at_capacity_and_mark_full(void **state)
{
	char mem[8];
	struct sl_buf b;

	(void)state;
	sl_buf_init(&b, mem, sizeof(mem));
	sl_buf_str(&b, "abcde");
	assert_false(b.full);
	sl_buf_str(&b, "fgh");
	assert_int_equal(b.len, 8);
	assert_false(b.full);
	sl_buf_str(&b, "i"); /* one byte over: dropped whole */
	assert_true(b.full);
	assert_int_equal(b.len, 8);
	assert_memory_equal(mem, "abcdefgh", 8);
	sl_buf_str(&b, ""); /* stays full */
	assert_true(b.full);
}

static void numbers_format_at_their_extremes(void **state)
{
	char out[21];
	struct {
		int64_t v;
		const char *text;
	} cases[] = {
	        {0, "0"}, {7, "7"}, {10, "10"}, {-1, "-1"}, {1795400028, "1795400028"},
	        {INT64_MAX, "9223372036854775807"}, {INT64_MIN, "-9223372036854775808"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = sl_fmt_i64(out, cases[i].v);

		assert_int_equal(n, strlen(cases[i].text));
		assert_memory_equal(out, cases[i].text, n);
	}
	assert_int_equal(sl_fmt_u64(out, UINT64_MAX), 20);
	assert_memory_equal(out, "18446744073709551615", 20);
}

static void json_strings_escape_quotes_backslashes_and_controls(void **state)
{
	char mem[128];
	struct sl_buf b;
	const char in[] = "a\"b\\c\nd\x01\x7f\xc3\xa9";

	(void)state;
	sl_buf_init(&b, mem, sizeof(mem));
	sl_buf_json_string(&b, in, sizeof(in) - 1);
	assert_false(b.full);
	const char want[] = "\"a\\\"b\\\\c\\u000ad\\u0001\x7f\xc3\xa9\"";
	assert_int_equal(b.len, sizeof(want) - 1);
	assert_memory_equal(mem, want, b.len);

	sl_buf_init(&b, mem, 5); /* "\"abc\"" needs 5, "\"abcd\"" 6 */
	sl_buf_json_string(&b, "abcd", 4);
	assert_true(b.full);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(appends_stop_at_capacity_and_mark_full),
	        cmocka_unit_test(numbers_format_at_their_extremes),
	        cmocka_unit_test(json_strings_escape_quotes_backslashes_and_controls),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
