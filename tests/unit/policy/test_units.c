/* Unit parsers of the config language (src/policy/units.c): every accepted
 * form of durations, sizes, counts, rates and tz offsets, and the refusals
 * (malformed vs out of range). Table-driven. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/units.h"

#define MS  1000000LL
#define SEC SL_NS_PER_SEC

static void durations_parse_every_unit(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		int64_t ns;
	} ok[] = {
	        {"0", 0},
	        {"1ns", 1},
	        {"5us", 5000},
	        {"50ms", 50 * MS},
	        {"10s", 10 * SEC},
	        {"10sec", 10 * SEC},
	        {"1.5m", 90 * SEC},
	        {"2min", 120 * SEC},
	        {"2h", 2 * SL_NS_PER_HOUR},
	        {"1d", SL_NS_PER_DAY},
	        {"1w", 7 * SL_NS_PER_DAY},
	        {"0.5s", 500 * MS},
	        {"1.000000001s", SEC + 1},
	        {"0ms", 0},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int64_t v = -1;
		assert_int_equal(sl_parse_duration(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].ns);
	}
}

static void durations_refuse_bad_forms(void **state)
{
	(void)state;
	static const char *bad[] = {"",      "10",  "s",     "10 s",          "-1s",
	                            "1.5",   "1.x", "10sx",  "1.0000000001s", "1.5ns",
	                            "1e3ms", "10S", "1month"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int64_t v;
		assert_int_equal(sl_parse_duration(bad[i], &v), SL_EINVAL);
	}
	int64_t v;
	assert_int_equal(sl_parse_duration("9999999999999w", &v), SL_ERANGE);
	assert_int_equal(sl_parse_duration("99999999999999999999s", &v), SL_ERANGE);
}

static void sizes_are_binary_and_case_blind(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t b;
	} ok[] = {
	        {"0", 0},          {"512", 512},        {"512B", 512},        {"16KB", 16 << 10},
	        {"16k", 16 << 10}, {"16KiB", 16 << 10}, {"64MB", 64 << 20},   {"64mb", 64 << 20},
	        {"1M", 1 << 20},   {"2GB", 2ull << 30}, {"1GiB", 1ull << 30},
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		uint64_t v = 1;
		assert_int_equal(sl_parse_size(ok[i].s, &v), 0);
		assert_int_equal(v, ok[i].b);
	}
	uint64_t v;
	assert_int_equal(sl_parse_size("64 MB", &v), SL_EINVAL);
	assert_int_equal(sl_parse_size("1.5MB", &v), SL_EINVAL);
	assert_int_equal(sl_parse_size("MB", &v), SL_EINVAL);
	assert_int_equal(sl_parse_size("64TB", &v), SL_EINVAL);
	assert_int_equal(sl_parse_size("99999999999999GB", &v), SL_ERANGE);
}

static void counts_have_bounds(void **state)
{
	(void)state;
	uint64_t v;
	assert_int_equal(sl_parse_uint("42", 100, &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(sl_parse_uint("101", 100, &v), SL_ERANGE);
	assert_int_equal(sl_parse_uint("-1", 100, &v), SL_EINVAL);
	assert_int_equal(sl_parse_uint("4x", 100, &v), SL_EINVAL);
	assert_int_equal(sl_parse_uint("", 100, &v), SL_EINVAL);
	assert_int_equal(sl_parse_uint("18446744073709551615", UINT64_MAX, &v), 0);
	assert_true(v == UINT64_MAX);
	assert_int_equal(sl_parse_uint("18446744073709551616", UINT64_MAX, &v), SL_ERANGE);
}

static void rates_parse_every_period(void **state)
{
	(void)state;
	static const struct {
		const char *s;
		uint64_t n;
		int64_t period;
		uint8_t cal;
	} ok[] = {
	        {"300/min", 300, 60 * SEC, 0},
	        {"300/minute", 300, 60 * SEC, 0},
	        {"300/m", 300, 60 * SEC, 0},
	        {"15/s", 15, SEC, 0},
	        {"15/sec", 15, SEC, 0},
	        {"15/second", 15, SEC, 0},
	        {"15/secs", 15, SEC, 0},
	        {"100/hour", 100, SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"100/h", 100, SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"100/hours", 100, SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"1000/day", 1000, SL_NS_PER_DAY, SL_CAL_DAY},
	        {"1000/d", 1000, SL_NS_PER_DAY, SL_CAL_DAY},
	        {"7/week", 7, 7 * SL_NS_PER_DAY, SL_CAL_WEEK},
	        {"30/month", 30, 0, SL_CAL_MONTH},
	        {"10/1.5m", 10, 90 * SEC, 0},
	        {"10/10s", 10, 10 * SEC, 0},
	        {"10/1h", 10, SL_NS_PER_HOUR, 0}, /* a duration, not the calendar hour */
	        {"5 / min", 5, 60 * SEC, 0},
	        {"0/min", 0, 60 * SEC, 0}, /* N = 0 is refused by the loader, with a message */
	};
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		struct sl_rate_text r;
		assert_int_equal(sl_parse_rate(ok[i].s, &r), 0);
		assert_int_equal(r.n, ok[i].n);
		assert_int_equal(r.period, ok[i].period);
		assert_int_equal(r.calendar, ok[i].cal);
	}
}

static void rates_refuse_bad_forms(void **state)
{
	(void)state;
	static const char *bad[] = {"300",       "/min",     "300/",   "300/fortnight",
	                            "300/0",     "1.5/min",  "-3/min", "300/min/",
	                            "unlimited", "300//min", "300/ms", "x/min"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sl_rate_text r;
		int rc = sl_parse_rate(bad[i], &r);
		assert_true(rc == SL_EINVAL || rc == SL_ERANGE);
	}
}

static void tz_offsets(void **state)
{
	(void)state;
	int32_t s;
	assert_int_equal(sl_parse_tz_offset("+02:00", &s), 0);
	assert_int_equal(s, 7200);
	assert_int_equal(sl_parse_tz_offset("-05:30", &s), 0);
	assert_int_equal(s, -(5 * 3600 + 1800));
	assert_int_equal(sl_parse_tz_offset("+09", &s), 0);
	assert_int_equal(s, 9 * 3600);
	assert_int_equal(sl_parse_tz_offset("Z", &s), 0);
	assert_int_equal(s, 0);
	assert_int_equal(sl_parse_tz_offset("UTC", &s), 0);
	assert_int_equal(sl_parse_tz_offset("3600", &s), 0);
	assert_int_equal(s, 3600);
	assert_int_equal(sl_parse_tz_offset("-3600", &s), 0);
	assert_int_equal(s, -3600);
	assert_int_equal(sl_parse_tz_offset("+24:00", &s), SL_ERANGE);
	assert_int_equal(sl_parse_tz_offset("+02:60", &s), SL_ERANGE);
	assert_int_equal(sl_parse_tz_offset("86400", &s), SL_ERANGE);
	assert_int_equal(sl_parse_tz_offset("02:00", &s), SL_EINVAL);
	assert_int_equal(sl_parse_tz_offset("+2:00", &s), SL_EINVAL);
	assert_int_equal(sl_parse_tz_offset("+02:0", &s), SL_EINVAL);
	assert_int_equal(sl_parse_tz_offset("east", &s), SL_EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(durations_parse_every_unit),
	        cmocka_unit_test(durations_refuse_bad_forms),
	        cmocka_unit_test(sizes_are_binary_and_case_blind),
	        cmocka_unit_test(counts_have_bounds),
	        cmocka_unit_test(rates_parse_every_period),
	        cmocka_unit_test(rates_refuse_bad_forms),
	        cmocka_unit_test(tz_offsets),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
