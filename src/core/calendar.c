/* Calendar windows for quotas: hour, day, week (Monday start) and month at a
 * fixed offset east of UTC. Months use days-from-civil arithmetic on the
 * proleptic Gregorian calendar (400-year eras of 146097 days), so leap
 * years come out exact without any libc time function or table. Work is in
 * __int128 nanoseconds so no `now` near the int64 limits can overflow. */
#include <stdint.h>
#include <sluice/algo.h>
#include "core/clamp.h"

static int64_t floor_div(__int128 a, int64_t b)
{
	__int128 q = a / b;

	if ((a % b != 0) && ((a < 0) != (b < 0)))
		q--;
	return (int64_t)q;
}

/* Days since 1970-01-01 of civil date y-m-d (m 1..12, d 1..31). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	if (m <= 2)
		y--;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);                       /* [0, 399] */
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1; /* [0, 365], March first */
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;           /* [0, 146096] */
	return era * 146097 + (int64_t)doe - 719468;
}

/* Inverse of days_from_civil: year and month (1..12) of day z. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m)
{
	int64_t era;
	unsigned doe, yoe, doy, mp;

	z += 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = (unsigned)(z - era * 146097);
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*m = mp < 10 ? mp + 3 : mp - 9;
	*y = (int64_t)yoe + era * 400 + (*m <= 2);
}

void sl_calendar_window(uint8_t calendar, int32_t tz_offset, int64_t now, int64_t *start,
                        int64_t *end)
{
	__int128 tz = (__int128)tz_offset * SL_NS_PER_SEC; /* ns */
	__int128 local = (__int128)now + tz;               /* ns, local wall time */
	__int128 s, e;                                     /* ns, local */
	int64_t day, y;
	unsigned m;

	switch (calendar) {
	case SL_CAL_HOUR:
		s = (__int128)floor_div(local, SL_NS_PER_HOUR) * SL_NS_PER_HOUR;
		e = s + SL_NS_PER_HOUR;
		break;
	case SL_CAL_WEEK:
		/* 1970-01-01 was a Thursday: Monday-based weekday is (day + 3) mod 7 */
		day = floor_div(local, SL_NS_PER_DAY);
		day -= ((day + 3) % 7 + 7) % 7;
		s = (__int128)day * SL_NS_PER_DAY;
		e = s + 7 * SL_NS_PER_DAY;
		break;
	case SL_CAL_MONTH:
		civil_from_days(floor_div(local, SL_NS_PER_DAY), &y, &m);
		s = (__int128)days_from_civil(y, m, 1) * SL_NS_PER_DAY;
		e = (__int128)(m == 12 ? days_from_civil(y + 1, 1, 1)
		                       : days_from_civil(y, m + 1, 1)) *
		    SL_NS_PER_DAY;
		break;
	default: /* SL_CAL_DAY and unknown */
		s = (__int128)floor_div(local, SL_NS_PER_DAY) * SL_NS_PER_DAY;
		e = s + SL_NS_PER_DAY;
		break;
	}
	*start = clamp64(s - tz);
	*end = clamp64(e - tz);
}
