/* Command-line override values (jsonvalue.c) become the JSON the admin API
 * takes, written the way the config writes them. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "daemon/jsonvalue.h"

static void expect(const char *in, const char *want)
{
	cJSON *v = sl_cli_value(in);
	char *s;

	assert_non_null(v);
	s = cJSON_PrintUnformatted(v);
	assert_string_equal(s, want);
	free(s);
	cJSON_Delete(v);
}

static void values_as_the_config_writes_them(void **state)
{
	(void)state;
	expect("20000/min", "\"20000/min\"");
	expect("unlimited", "\"unlimited\"");
	expect("50", "50");
	expect("-3", "-3");
	expect("007", "7");
	expect("'50'", "\"50\""); /* quoted: a string */
	expect("", "null");       /* LIMIT= removes an override */
	expect("null", "null");
	expect("~", "null");
	expect("true", "true");
	expect("{rate: 900/min, burst: 15, queue: 5}",
	       "{\"rate\":\"900/min\",\"burst\":15,\"queue\":5}");
	expect("{\"rate\": \"1/s\"}", "{\"rate\":\"1/s\"}"); /* JSON is YAML */
	expect("[1, a]", "[1,\"a\"]");
	expect("9007199254740993", "\"9007199254740993\""); /* past 2^53: kept exact */
	expect("1.5", "\"1.5\"");
}

static void junk_is_refused(void **state)
{
	(void)state;
	assert_null(sl_cli_value("{rate: 1/s"));
	assert_null(sl_cli_value("[1, 2"));
	assert_null(sl_cli_value("a: b: c"));
	assert_null(sl_cli_value("{[1]: 2}")); /* a non-scalar key */
	/* deep nesting is bounded */
	char deep[200];
	memset(deep, '[', 100);
	memset(deep + 100, ']', 100);
	deep[199] = '\0';
	deep[99] = '1';
	assert_null(sl_cli_value(deep));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(values_as_the_config_writes_them),
	        cmocka_unit_test(junk_is_refused),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
