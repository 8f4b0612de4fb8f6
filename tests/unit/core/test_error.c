/* sl_strerror names every code and never returns NULL. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>
#include <sluice/error.h>

static void strerror_names_every_code(void **state)
{
	(void)state;
	for (int c = SL_ECONFIG; c <= SL_AGAIN; c++)
		assert_string_not_equal(sl_strerror(c), "unknown error");
	assert_string_equal(sl_strerror(12345), "unknown error");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(strerror_names_every_code),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
