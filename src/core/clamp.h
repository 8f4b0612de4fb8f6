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

#endif
