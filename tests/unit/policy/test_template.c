/* Response templates (src/policy/template.c): compile errors with offsets,
 * brace escaping, rendering in text, JSON and header modes, unresolved
 * variables and buffer bounds. A fake resolver answers fixed values. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include "policy/template.h"

/* Resolves every variable from a fixed table; {account} never resolves. */
static long resolve(void *arg, const struct sl_tpl_ref *ref, char *buf, size_t cap)
{
	const char *v;
	char tmp[64];
	(void)arg;
	switch (ref->var) {
	case SL_TPL_LIMIT:
		v = "300";
		break;
	case SL_TPL_REMAINING:
		v = "7";
		break;
	case SL_TPL_RETRY_AFTER:
		v = "60";
		break;
	case SL_TPL_WINDOW:
		v = "1 minute";
		break;
	case SL_TPL_PLAN_TITLE:
		v = "V\"I\\P\n\x01";
		break; /* needs JSON escaping */
	case SL_TPL_MESSAGE:
		v = "bad\r\nInjected: 1";
		break;
	case SL_TPL_NAMED:
		snprintf(tmp, sizeof(tmp), "%s.%u.%u", ref->name, ref->field, ref->limit_index);
		v = tmp;
		break;
	case SL_TPL_ACCOUNT:
		return -1;
	default:
		v = "x";
		break;
	}
	size_t n = strlen(v);
	if (n > cap)
		return -1;
	memcpy(buf, v, n);
	return (long)n;
}

static char out[512];

static long render(const char *src, unsigned mode, size_t cap)
{
	struct sl_template *t = sl_template_compile(src, NULL, 0, NULL);
	assert_non_null(t);
	long n = sl_template_render(t, mode, resolve, NULL, out, cap);
	if (n >= 0)
		out[n] = '\0';
	sl_template_free(t);
	return n;
}

static void renders_literals_and_variables(void **state)
{
	(void)state;
	assert_int_equal(render("", SL_TPL_TEXT, sizeof(out)), 0);
	assert_int_equal(render("plain", SL_TPL_TEXT, sizeof(out)), 5);
	assert_string_equal(out, "plain");
	assert_true(render("{limit}", SL_TPL_TEXT, sizeof(out)) > 0);
	assert_string_equal(out, "300");
	render("You have exceeded the maximum number of requests allowed ({limit} requests/min).",
	       SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "You have exceeded the maximum number of requests allowed (300 "
	                         "requests/min).");
	render("{limit}{remaining}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "3007");
}

static void json_braces_need_no_escaping(void **state)
{
	(void)state;
	/* DESIGN.md section 4: the body is written as it reads */
	render("{\"error\":{\"code\":\"RATE_LIMITED\",\"retryAfter\":{retry_after}}}", SL_TPL_JSON,
	       sizeof(out));
	assert_string_equal(out, "{\"error\":{\"code\":\"RATE_LIMITED\",\"retryAfter\":60}}");
	render("{ }{}{1}{ limit}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "{ }{}{1}{ limit}");
}

static void double_braces_are_literal(void **state)
{
	(void)state;
	render("{{limit}}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "{limit}");
	render("{{limit} is {limit}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "{limit} is 300");
	render("a{{b", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "a{b");
	render("}}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "}}");
	/* an unknown name inside {{ }} is text, not an error */
	render("{{nope}}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "{nope}");
}

static void json_mode_escapes_values_only(void **state)
{
	(void)state;
	render("\"{plan_title}\"", SL_TPL_JSON, sizeof(out));
	assert_string_equal(out, "\"V\\\"I\\\\P\\u000a\\u0001\"");
	/* text mode leaves the value alone */
	render("{plan_title}", SL_TPL_TEXT, sizeof(out));
	assert_string_equal(out, "V\"I\\P\n\x01");
}

static void json_escape_respects_capacity(void **state)
{
	(void)state;
	/* raw value is 7 bytes, escaped 19: fits exactly at 21 with the quotes */
	assert_int_equal(render("\"{plan_title}\"", SL_TPL_JSON, 21), 21);
	assert_int_equal(render("\"{plan_title}\"", SL_TPL_JSON, 20), -1);
}

static void header_mode_refuses_line_breaks(void **state)
{
	(void)state;
	assert_int_equal(render("{message}", SL_TPL_HEADER, sizeof(out)), -1);
	assert_int_equal(render("{message}", SL_TPL_TEXT, sizeof(out)), 16);
	assert_int_equal(render("{limit}", SL_TPL_HEADER, sizeof(out)), 3);
}

static void unresolved_variable_fails_render(void **state)
{
	(void)state;
	assert_int_equal(render("acct={account}", SL_TPL_TEXT, sizeof(out)), -1);
	assert_int_equal(render("{limit} {account}", SL_TPL_HEADER, sizeof(out)), -1);
}

static void json_unresolved_is_null_and_unquoted(void **state)
{
	(void)state;
	assert_int_equal(render("{\"a\":{account},\"b\":\"{account}\",\"c\":\"x{account}\"}",
				SL_TPL_JSON, sizeof(out)),
			 strlen("{\"a\":null,\"b\":null,\"c\":\"xnull\"}"));
	assert_string_equal(out, "{\"a\":null,\"b\":null,\"c\":\"xnull\"}");
	assert_int_equal(render("\"{account}\"", SL_TPL_JSON, sizeof(out)), 4);
	assert_string_equal(out, "null");
	assert_int_equal(render("{account}", SL_TPL_JSON, 3), -1);
}

static void output_bounds_hold(void **state)
{
	(void)state;
	assert_int_equal(render("abcdef", SL_TPL_TEXT, 5), -1);
	assert_int_equal(render("abcde", SL_TPL_TEXT, 5), 5);
	assert_int_equal(render("ab{limit}", SL_TPL_TEXT, 4), -1);
	assert_int_equal(render("ab{limit}", SL_TPL_TEXT, 5), 5);
}

static void unknown_variable_reports_offset(void **state)
{
	(void)state;
	char err[256];
	size_t off = 99;
	assert_null(sl_template_compile("Retry in {retry_afer} s", err, sizeof(err), &off));
	assert_int_equal(off, 9);
	assert_non_null(strstr(err, "{retry_afer}"));
	assert_null(sl_template_compile("{limits.tier.used}", err, sizeof(err), &off));
	assert_int_equal(off, 0);
	assert_non_null(strstr(err, "limit, remaining or reset"));
	assert_null(sl_template_compile("x {limits.tier}", err, sizeof(err), &off));
	assert_int_equal(off, 2);
	assert_null(sl_template_compile("ab{limits..limit}", err, sizeof(err), &off));
	assert_int_equal(off, 2);
}

static void named_refs_are_listed_for_the_loader(void **state)
{
	(void)state;
	struct sl_template *t = sl_template_compile(
	        "{limit} {limits.tier.remaining} {limits.daily-q.reset} {limits.a.limit}", NULL, 0,
	        NULL);
	assert_non_null(t);
	size_t n;
	struct sl_tpl_ref *r = sl_template_refs(t, &n);
	assert_int_equal(n, 4);
	assert_int_equal(r[0].var, SL_TPL_LIMIT);
	assert_int_equal(r[1].var, SL_TPL_NAMED);
	assert_string_equal(r[1].name, "tier");
	assert_int_equal(r[1].field, SL_TPL_REMAINING);
	assert_int_equal(r[1].offset, 8);
	assert_string_equal(r[2].name, "daily-q");
	assert_int_equal(r[2].field, SL_TPL_RESET);
	assert_int_equal(r[3].field, SL_TPL_LIMIT);
	r[1].limit_index = 5;
	long len = sl_template_render(t, SL_TPL_TEXT, resolve, NULL, out, sizeof(out));
	assert_true(len > 0);
	out[len] = '\0';
	assert_non_null(strstr(out, "tier.2.5"));
	sl_template_free(t);
}

static void every_documented_variable_compiles(void **state)
{
	(void)state;
	static const char *vars[] = {"limit",       "remaining",  "reset",          "reset_after",
	                             "retry_after", "window",     "window_seconds", "denied_by",
	                             "plan",        "plan_title", "account",        "message"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		char src[64];
		snprintf(src, sizeof(src), "{%s}", vars[i]);
		struct sl_template *t = sl_template_compile(src, NULL, 0, NULL);
		assert_non_null(t);
		size_t n;
		struct sl_tpl_ref *r = sl_template_refs(t, &n);
		assert_int_equal(n, 1);
		assert_int_equal(r[0].var, i + 1);
		sl_template_free(t);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(renders_literals_and_variables),
	        cmocka_unit_test(json_braces_need_no_escaping),
	        cmocka_unit_test(double_braces_are_literal),
	        cmocka_unit_test(json_mode_escapes_values_only),
	        cmocka_unit_test(json_escape_respects_capacity),
	        cmocka_unit_test(header_mode_refuses_line_breaks),
	        cmocka_unit_test(unresolved_variable_fails_render),
	        cmocka_unit_test(json_unresolved_is_null_and_unquoted),
	        cmocka_unit_test(output_bounds_hold),
	        cmocka_unit_test(unknown_variable_reports_offset),
	        cmocka_unit_test(named_refs_are_listed_for_the_loader),
	        cmocka_unit_test(every_documented_variable_compiles),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
