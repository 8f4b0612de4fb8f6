/* API keys and key ids: random text from the OS CSPRNG (getrandom), and
 * the RFC 3339 times the admin API speaks. A base62 character is drawn by
 * rejection (bytes of 248 and above are dropped) so every character is
 * equally likely: 32 of them carry 190 bits. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <openssl/sha.h>
#include <sluice/error.h>
#include "accounts/accounts.h"

static const char b62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

static int random62(char *out, size_t n)
{
	uint8_t buf[64];
	size_t have = 0, used = 0;

	while (n > 0) {
		if (used == have) {
			ssize_t r = getrandom(buf, sizeof(buf), 0);
			if (r <= 0)
				return SL_EIO;
			have = (size_t)r;
			used = 0;
		}
		uint8_t b = buf[used++];
		if (b >= 248)
			continue;
		*out++ = b62[b % 62];
		n--;
	}
	return 0;
}

int sl_acc_new_key(const char *prefix, char *out, size_t cap)
{
	size_t pl = strlen(prefix);

	if (pl + 32 + 1 > cap)
		return SL_EINVAL;
	memcpy(out, prefix, pl);
	out[pl + 32] = '\0';
	return random62(out + pl, 32);
}

int sl_acc_new_id(char *out, size_t cap)
{
	if (cap < 4 + 20 + 1)
		return SL_EINVAL;
	memcpy(out, "key_", 4);
	out[24] = '\0';
	return random62(out + 4, 20);
}

void sl_acc_sha256(const char *s, size_t len, uint8_t out[32])
{
	SHA256((const unsigned char *)s, len, out);
}

static int digits(const char **p, int n, int *v)
{
	*v = 0;
	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return -1;
		*v = *v * 10 + (c - '0');
	}
	*p += n;
	return 0;
}

int sl_acc_parse_time(const char *s, int64_t *unix_s)
{
	struct tm tm;
	int y, mo, d, h, mi, se, oh = 0, om = 0, sign = 0;
	const char *p = s;

	memset(&tm, 0, sizeof(tm));
	if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
	    digits(&p, 2, &d) || (*p != 'T' && *p != 't') || !++p || digits(&p, 2, &h) ||
	    *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' || digits(&p, 2, &se))
		return SL_EINVAL;
	if (*p == '.') {
		p++;
		if (*p < '0' || *p > '9')
			return SL_EINVAL;
		while (*p >= '0' && *p <= '9')
			p++;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p++ == '+' ? 1 : -1;
		if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
			return SL_EINVAL;
	} else {
		return SL_EINVAL;
	}
	if (*p != '\0' || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 ||
	    y < 1970 || y > 2200)
		return SL_EINVAL;
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	time_t t = timegm(&tm);
	/* timegm normalises Feb 30 to Mar 2: refuse dates that moved */
	struct tm back;
	gmtime_r(&t, &back);
	if (back.tm_mday != d || back.tm_mon != mo - 1)
		return SL_EINVAL;
	*unix_s = (int64_t)t - sign * (oh * 3600 + om * 60);
	return 0;
}

void sl_acc_format_time(int64_t unix_s, char out[32])
{
	time_t t = (time_t)unix_s;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}
