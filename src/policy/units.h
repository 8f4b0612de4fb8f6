/* Parsers for the scalar forms of the config language: durations ("50ms",
 * "1.5m"), sizes ("64MB"), counts, rates ("300/min", "15/s", "N/1.5m"),
 * quota periods ("N/day") and time-zone offsets ("+02:00"). Private to the
 * policy layer; every function returns 0 or SL_EINVAL (malformed) or
 * SL_ERANGE (well-formed but out of range) and never allocates. */
#ifndef SLUICE_POLICY_UNITS_H
#define SLUICE_POLICY_UNITS_H

#include <stdint.h>

/* "<number><unit>", number a decimal with up to 9 fraction digits, unit one
 * of ns us ms s sec m min h d w. "0" alone is 0. Result in ns, > 0 unless
 * the text is zero; fractions of a ns are refused. */
int sl_parse_duration(const char *s, int64_t *ns);

/* "<integer>[unit]", unit (any case) B, K/KB/KiB, M/MB/MiB, G/GB/GiB, all
 * binary (KB = 1024 bytes, as nginx reads "16k"). No unit: bytes. */
int sl_parse_size(const char *s, uint64_t *bytes);

/* A decimal integer without sign, at most max. */
int sl_parse_uint(const char *s, uint64_t max, uint64_t *v);

/* A rate or quota value "N/period". period is a unit name meaning one of it
 * (s sec second, m min minute, h hr hour, d day, w wk week, month; plurals
 * too) or a duration ("1.5m", "10s"). calendar is the enum sl_calendar of a
 * bare hour/day/week/month unit, else 0; month has no period (0). */
struct sl_rate_text {
	uint64_t n;       /* units per period */
	int64_t period;   /* ns; 0 for month */
	uint8_t calendar; /* enum sl_calendar, or 0 */
};
int sl_parse_rate(const char *s, struct sl_rate_text *r);

/* "+HH:MM", "-HH:MM", "+HH", "Z", "UTC", or signed seconds; |offset| < 24 h. */
int sl_parse_tz_offset(const char *s, int32_t *seconds);

#endif
