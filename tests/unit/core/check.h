/* Table-driven algorithm tests: CHECK(i, got, want) fails the test naming
 * the table row i and the expression when got != want. Include after
 * <cmocka.h>. */
#ifndef SLUICE_TEST_CHECK_H
#define SLUICE_TEST_CHECK_H

#define CHECK(i, got, want)                                                                        \
	do {                                                                                       \
		if ((long long)(got) != (long long)(want))                                         \
			fail_msg("row %zu: %s = %lld, want %lld", (size_t)(i), #got,              \
			         (long long)(got), (long long)(want));                             \
	} while (0)

#endif
