/* Scalar unit parsers of the config language (see units.h). Numbers are
 * parsed digit by digit into 128-bit integers, never through floating
 * point, so "1.5m" is exactly 90 s and every overflow is caught rather than
 * wrapped. */
#include <stdbool.h>
#include <string.h>
#include <strings.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/units.h"

typedef unsigned __int128 u128;

/* Parse "<digits>[.<digits>]" at *s: integer part into *ip, fraction as
 * *fp / 10^*fd. Advances *s. Returns 0, or SL_EINVAL/SL_ERANGE. */
static int parse_decimal(const char **s, u128 *ip, u128 *fp, unsigned *fd, bool allow_frac)
{
	const char *p = *s;
	u128 v = 0;
	if (*p < '0' || *p > '9')
		return SL_EINVAL;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (u128)(*p - '0');
		if (v > (u128)UINT64_MAX)
			return SL_ERANGE;
		p++;
	}
	*ip = v;
	*fp = 0;
	*fd = 0;
	if (*p == '.' && allow_frac) {
		p++;
		if (*p < '0' || *p > '9')
			return SL_EINVAL;
		while (*p >= '0' && *p <= '9') {
			if (*fd == 9)
				return SL_EINVAL; /* below a nanosecond */
			*fp = *fp * 10 + (u128)(*p - '0');
			(*fd)++;
			p++;
		}
	}
	*s = p;
	return 0;
}

static const struct {
	const char *name;
	int64_t ns;
} dur_units[] = {
        {"ns", 1},
        {"us", 1000},
        {"ms", 1000000},
        {"s", SL_NS_PER_SEC},
        {"sec", SL_NS_PER_SEC},
        {"m", SL_NS_PER_MIN},
        {"min", SL_NS_PER_MIN},
        {"h", SL_NS_PER_HOUR},
        {"d", SL_NS_PER_DAY},
        {"w", 7 * SL_NS_PER_DAY},
};

/* ip + fp/10^fd units of `unit` ns, exactly; refuses fractions of a ns. */
static int scale(u128 ip, u128 fp, unsigned fd, int64_t unit, int64_t *out)
{
	u128 pow = 1;
	for (unsigned i = 0; i < fd; i++)
		pow *= 10;
	u128 frac = fp * (u128)unit;
	if (frac % pow)
		return SL_EINVAL;
	u128 v = ip * (u128)unit + frac / pow;
	if (v > (u128)INT64_MAX)
		return SL_ERANGE;
	*out = (int64_t)v;
	return 0;
}

int sl_parse_duration(const char *s, int64_t *ns)
{
	u128 ip, fp;
	unsigned fd;
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return 0;
	}
	int rc = parse_decimal(&s, &ip, &fp, &fd, true);
	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(dur_units) / sizeof(dur_units[0]); i++)
		if (strcmp(s, dur_units[i].name) == 0)
			return scale(ip, fp, fd, dur_units[i].ns, ns);
	return SL_EINVAL;
}

int sl_parse_size(const char *s, uint64_t *bytes)
{
	static const struct {
		const char *name;
		unsigned shift;
	} units[] = {
	        {"", 0},    {"b", 0},    {"k", 10}, {"kb", 10}, {"kib", 10}, {"m", 20},
	        {"mb", 20}, {"mib", 20}, {"g", 30}, {"gb", 30}, {"gib", 30},
	};
	u128 ip, fp;
	unsigned fd;
	int rc = parse_decimal(&s, &ip, &fp, &fd, false);
	if (rc)
		return rc;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcasecmp(s, units[i].name) == 0) {
			u128 v = ip << units[i].shift;
			if (v > (u128)UINT64_MAX)
				return SL_ERANGE;
			*bytes = (uint64_t)v;
			return 0;
		}
	}
	return SL_EINVAL;
}

int sl_parse_uint(const char *s, uint64_t max, uint64_t *v)
{
	u128 ip, fp;
	unsigned fd;
	int rc = parse_decimal(&s, &ip, &fp, &fd, false);
	if (rc)
		return rc;
	if (*s)
		return SL_EINVAL;
	if (ip > (u128)max)
		return SL_ERANGE;
	*v = (uint64_t)ip;
	return 0;
}

/* A bare period name: one unit of it. */
static int period_name(const char *s, int64_t *period, uint8_t *calendar)
{
	static const struct {
		const char *name;
		int64_t ns;
		uint8_t cal;
	} names[] = {
	        {"s", SL_NS_PER_SEC, 0},
	        {"sec", SL_NS_PER_SEC, 0},
	        {"second", SL_NS_PER_SEC, 0},
	        {"m", SL_NS_PER_MIN, 0},
	        {"min", SL_NS_PER_MIN, 0},
	        {"minute", SL_NS_PER_MIN, 0},
	        {"h", SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"hr", SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"hour", SL_NS_PER_HOUR, SL_CAL_HOUR},
	        {"d", SL_NS_PER_DAY, SL_CAL_DAY},
	        {"day", SL_NS_PER_DAY, SL_CAL_DAY},
	        {"w", 7 * SL_NS_PER_DAY, SL_CAL_WEEK},
	        {"wk", 7 * SL_NS_PER_DAY, SL_CAL_WEEK},
	        {"week", 7 * SL_NS_PER_DAY, SL_CAL_WEEK},
	        {"month", 0, SL_CAL_MONTH},
	};
	char buf[16];
	size_t len = strlen(s);
	if (len == 0 || len >= sizeof(buf))
		return SL_EINVAL;
	memcpy(buf, s, len + 1);
	/* plurals: "secs", "minutes", "hours", "days", "weeks", "months" */
	if (len > 2 && buf[len - 1] == 's' && strcmp(buf, "ms") != 0)
		buf[len - 1] = '\0';
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		if (strcmp(buf, names[i].name) == 0) {
			*period = names[i].ns;
			*calendar = names[i].cal;
			return 0;
		}
	}
	return SL_EINVAL;
}

int sl_parse_rate(const char *s, struct sl_rate_text *r)
{
	u128 ip, fp;
	unsigned fd;
	int rc = parse_decimal(&s, &ip, &fp, &fd, false);
	if (rc)
		return rc;
	while (*s == ' ')
		s++;
	if (*s != '/')
		return SL_EINVAL;
	s++;
	while (*s == ' ')
		s++;
	r->n = (uint64_t)ip;
	r->calendar = 0;
	if (*s >= '0' && *s <= '9') {
		rc = sl_parse_duration(s, &r->period);
		if (rc)
			return rc;
		if (r->period == 0)
			return SL_ERANGE;
		return 0;
	}
	return period_name(s, &r->period, &r->calendar);
}

int sl_parse_tz_offset(const char *s, int32_t *seconds)
{
	if (strcmp(s, "Z") == 0 || strcasecmp(s, "UTC") == 0) {
		*seconds = 0;
		return 0;
	}
	int sign = 1;
	const char *p = s;
	if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		p++;
	}
	if (!strchr(p, ':') && (strlen(p) != 2 || p == s)) {
		/* plain seconds, optionally signed */
		uint64_t v;
		int rc = sl_parse_uint(p, 86400, &v);
		if (rc)
			return rc;
		if (v >= 86400)
			return SL_ERANGE;
		*seconds = sign * (int32_t)v;
		return 0;
	}
	if (p == s)
		return SL_EINVAL; /* "HH:MM" needs its sign */
	if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
		return SL_EINVAL;
	int h = (p[0] - '0') * 10 + (p[1] - '0'), m = 0;
	p += 2;
	if (*p == ':') {
		p++;
		if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9' || p[2])
			return SL_EINVAL;
		m = (p[0] - '0') * 10 + (p[1] - '0');
	} else if (*p) {
		return SL_EINVAL;
	}
	if (h > 23 || m > 59)
		return SL_ERANGE;
	*seconds = sign * (h * 3600 + m * 60);
	return 0;
}
