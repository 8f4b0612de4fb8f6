/* Saturation from the algorithms' __int128 intermediate arithmetic back to
 * the int64 nanoseconds they store and report. Private to src/core. */
#ifndef SLUICE_CORE_CLAMP_H
#define SLUICE_CORE_CLAMP_H

#include <stdint.h>

static inline int64_t clamp64(__int128 v)
{
	if (v > INT64_MAX)
		return INT64_MAX;
	if (v < INT64_MIN)
		return INT64_MIN;
	return (int64_t)v;
}

/* a / b for 0 <= a, 0 < b: a 64-bit division when both fit (always, for
 * specs built by sl_spec_*, which refuse capacities past 64 bits), the
 * 128-bit library call only otherwise. */
static inline uint64_t div128(__int128 a, __int128 b)
{
	if (a <= UINT64_MAX && b <= UINT64_MAX)
		return (uint64_t)a / (uint64_t)b;
	return (uint64_t)(a / b);
}

#endif
