/* Generated keys and ids (src/accounts/keygen.c): the shape DESIGN.md
 * section 6 names, every base62 character reachable, no repeats; RFC 3339
 * times parsed and refused exactly. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <sluice/error.h>
#include "accounts/accounts.h"

static void keys_are_prefix_and_32_base62(void **state)
{
	char k[64], prev[64] = "";
	unsigned seen[128] = {0};

	(void)state;
	for (int i = 0; i < 2000; i++) {
		assert_int_equal(sl_acc_new_key("sk_live_", k, sizeof(k)), 0);
		assert_int_equal(strlen(k), 8 + 32);
		assert_memory_equal(k, "sk_live_", 8);
		for (int j = 8; j < 40; j++) {
			char c = k[j];
			assert_true((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
			            (c >= 'A' && c <= 'Z'));
			seen[(unsigned char)c]++;
		}
		assert_string_not_equal(k, prev);
		snprintf(prev, sizeof(prev), "%s", k);
	}
	/* 64000 draws: each of the 62 characters about 1032 times */
	for (int c = 0; c < 128; c++)
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
			assert_true(seen[c] > 800 && seen[c] < 1300);
	assert_int_equal(sl_acc_new_key("sk_live_", k, 40), SL_EINVAL);
	assert_int_equal(sl_acc_new_id(k, sizeof(k)), 0);
	assert_int_equal(strlen(k), 24);
	assert_memory_equal(k, "key_", 4);
}

static const struct {
	const char *s;
	int rc;
	int64_t t;
} times[] = {
        {"2027-01-01T00:00:00Z", 0, 1798761600},
        {"2027-01-01t00:00:00z", 0, 1798761600},
        {"2027-01-01T01:00:00+01:00", 0, 1798761600},
        {"2026-12-31T19:00:00-05:00", 0, 1798761600},
        {"2027-01-01T00:00:00.123Z", 0, 1798761600},
        {"2028-02-29T00:00:00Z", 0, 1835395200},
        {"2027-02-29T00:00:00Z", SL_EINVAL, 0},
        {"2027-13-01T00:00:00Z", SL_EINVAL, 0},
        {"2027-01-01 00:00:00Z", SL_EINVAL, 0},
        {"2027-01-01T00:00:00", SL_EINVAL, 0},
        {"2027-01-01T00:00:00Zjunk", SL_EINVAL, 0},
        {"2027-01-01T24:00:00Z", SL_EINVAL, 0},
        {"2027-01-01T00:00:00.Z", SL_EINVAL, 0},
        {"4054-01-01T00:00:00Z", SL_EINVAL, 0}, /* ns would not fit an int64 */
        {"tomorrow", SL_EINVAL, 0},
        {"", SL_EINVAL, 0},
};

static void rfc3339_times(void **state)
{
	char buf[32];

	(void)state;
	for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
		int64_t t = 0;
		int rc = sl_acc_parse_time(times[i].s, &t);
		if (rc != times[i].rc || (rc == 0 && t != times[i].t))
			fail_msg("row %zu '%s': rc %d t %lld", i, times[i].s, rc, (long long)t);
	}
	sl_acc_format_time(1798761600, buf);
	assert_string_equal(buf, "2027-01-01T00:00:00Z");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(keys_are_prefix_and_32_base62),
	        cmocka_unit_test(rfc3339_times),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
