/* Canonical path and host (docs/normalize.md): RFC 3986 section 6.2.2
 * syntax-based normalisation of the path, and a Host lower-cased without
 * its default port or trailing dot, so that `/auth/%6cogin`, `//auth/login`
 * and `/./auth/login` are all `/auth/login`, and `A.example.:80` is
 * `a.example`.
 *
 * The one decision to know: a first pass only looks, eight bytes at a
 * time. Most requests are already canonical, and for them the result is
 * the input view itself: no copy, one read of the bytes. Only a path that
 * needs a rewrite is written
 * into the caller's bounded buffer, escapes first, then merged slashes and
 * dot segments in place (the output never overtakes the input). */
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sluice/error.h>
#include "policy/normalize.h"

static const char hex_upper[] = "0123456789ABCDEF";

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* RFC 3986 section 2.3. */
static bool unreserved(unsigned v)
{
	return (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') || (v >= '0' && v <= '9') ||
	       v == '-' || v == '.' || v == '_' || v == '~';
}

/* Whether a dot segment ("." or "..") starts at p[i] (just after a '/'). */
static bool dot_segment(const char *p, size_t n, size_t i)
{
	if (i >= n || p[i] != '.')
		return false;
	if (i + 1 == n || p[i + 1] == '/')
		return true;
	return p[i + 1] == '.' && (i + 2 == n || p[i + 2] == '/');
}

/* Byte classes the look-only passes stop at. */
enum { C_UPPER = 1, C_SLASH = 2, C_PCT = 4, C_COLON = 8 };
static const uint8_t cls[256] = {
        ['A' ... 'Z'] = C_UPPER,
        ['/'] = C_SLASH,
        ['%'] = C_PCT,
        [':'] = C_COLON,
};

/* The look-only passes read eight bytes at a time (a path and a host are
 * read on every request, and few of their bytes matter): a mask with the
 * high bit of each byte that is the one wanted, exact, without carries
 * between bytes. */
#define ONES  0x0101010101010101ull
#define HIGHS 0x8080808080808080ull

static inline uint64_t bytes_eq(uint64_t v, uint8_t c)
{
	uint64_t x = v ^ (ONES * c);

	return ~(((x & ~HIGHS) + ~HIGHS) | x | ~HIGHS);
}

/* ASCII 'A'..'Z': the low seven bits at least 'A' and not above 'Z', and
 * the high bit clear. */
static inline uint64_t bytes_upper(uint64_t v)
{
	uint64_t w = v & ~HIGHS;

	return (w + ONES * (0x80 - 'A')) & ~(w + ONES * (0x80 - 'Z' - 1)) & ~v & HIGHS;
}

/* Index of the first byte (in memory order) whose high bit is set in m != 0;
 * m without that byte; the word of the bytes after each byte of v (the
 * last one reads as NUL). */
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define FIRST_BYTE(m) ((size_t)__builtin_ctzll(m) >> 3)
#define DROP_FIRST(m) ((m) & ((m)-1))
#define SHIFT_NEXT(v) ((v) >> 8)
#else
#define FIRST_BYTE(m) ((size_t)__builtin_clzll(m) >> 3)
#define DROP_FIRST(m) ((m) & ~(0x8000000000000000ull >> __builtin_clzll(m)))
#define SHIFT_NEXT(v) ((v) << 8)
#endif

/* p[j] is '/' or '%': whether what starts there is canonical. A
 * canonical escape is '%' and two upper-case hex digits of a byte that is
 * neither NUL nor unreserved; anything else about a '%' means a rewrite
 * (or a refusal, which the rewrite pass reports). */
static bool special_ok(const char *p, size_t n, size_t j)
{
	int hi, lo;

	if (p[j] == '/')
		return !(j + 1 < n && (p[j + 1] == '/' || dot_segment(p, n, j + 1)));
	if (j + 2 >= n)
		return false;
	hi = hexval(p[j + 1]);
	lo = hexval(p[j + 2]);
	if (hi < 0 || lo < 0 || p[j + 1] >= 'a' || p[j + 2] >= 'a')
		return false;
	return (hi | lo) != 0 && !unreserved((unsigned)(hi << 4 | lo));
}

/* The look-only pass: true when sl_norm_path would return p unchanged.
 * Words of eight bytes (the last one overlapping the one before, so no
 * byte-wise tail): only a '%', or a '/' followed by '/' or '.', is looked
 * at closely; the hex digits of an escape are never either. *upper: p has
 * an ASCII upper-case letter (meaningful when true is returned). */
static bool path_canonical(const char *p, size_t n, bool *upper)
{
	uint64_t up = 0;

	if (n < 8) {
		for (size_t i = 0; i < n; i++) {
			unsigned k = cls[(uint8_t)p[i]];

			up |= k & C_UPPER;
			if ((k & (C_SLASH | C_PCT)) && !special_ok(p, n, i))
				return false;
		}
		*upper = up != 0;
		return true;
	}
	for (size_t i = 0;; i += 8) {
		uint64_t v, next, m;

		if (i + 8 > n)
			i = n - 8;
		memcpy(&v, p + i, 8);
		if (i + 8 < n)
			memcpy(&next, p + i + 1, 8);
		else
			next = SHIFT_NEXT(v);
		m = (bytes_eq(v, '/') & (bytes_eq(next, '/') | bytes_eq(next, '.'))) |
		    bytes_eq(v, '%');
		up |= bytes_upper(v);
		for (; m != 0; m = DROP_FIRST(m))
			if (!special_ok(p, n, i + FIRST_BYTE(m)))
				return false;
		if (i + 8 >= n)
			break;
	}
	*upper = up != 0;
	return true;
}

int sl_norm_path(struct sl_str in, char *buf, size_t cap, struct sl_str *out, bool *upper)
{
	size_t n = 0, o = 0, i;
	bool up = false;

	*out = in;
	if (in.len == 0 || in.p[0] != '/') {
		for (i = 0; i < in.len && !up; i++)
			up = cls[(uint8_t)in.p[i]] & C_UPPER;
		if (upper)
			*upper = up;
		return 0;
	}
	if (path_canonical(in.p, in.len, &up)) {
		if (upper)
			*upper = up;
		return 0;
	}
	/* pass 1: escapes and merged slashes, into buf */
	for (i = 0; i < in.len; i++) {
		char c = in.p[i];

		if (c == '%') {
			int hi = i + 2 < in.len ? hexval(in.p[i + 1]) : -1;
			int lo = i + 2 < in.len ? hexval(in.p[i + 2]) : -1;
			unsigned v;

			if (hi < 0 || lo < 0)
				return SL_EINVAL;
			v = (unsigned)(hi << 4 | lo);
			if (v == 0)
				return SL_EINVAL;
			i += 2;
			if (unreserved(v)) {
				if (n == cap)
					return SL_ENOMEM;
				buf[n++] = (char)v;
				continue;
			}
			if (cap - n < 3)
				return SL_ENOMEM;
			buf[n++] = '%';
			buf[n++] = hex_upper[v >> 4];
			buf[n++] = hex_upper[v & 15];
			continue;
		}
		if (c == '/' && n > 0 && buf[n - 1] == '/')
			continue; /* merged slashes (no escape decodes to '/') */
		if (n == cap)
			return SL_ENOMEM;
		buf[n++] = c;
	}
	/* pass 2, in place: buf[i] is always a '/', and o <= i */
	i = 0;
	while (i < n) {
		size_t s, j, len;
		bool last;

		s = i + 1;
		for (j = s; j < n && buf[j] != '/'; j++)
			;
		len = j - s;
		last = j == n;
		if (len == 1 && buf[s] == '.') {
			if (last)
				buf[o++] = '/'; /* "/a/." is "/a/" */
		} else if (len == 2 && buf[s] == '.' && buf[s + 1] == '.') {
			while (o > 0 && buf[o - 1] != '/')
				o--;
			if (o > 0)
				o--; /* the last "/segment" is gone; at the root, nothing is */
			if (last)
				buf[o++] = '/';
		} else {
			buf[o++] = '/';
			memmove(buf + o, buf + s, len);
			o += len;
		}
		i = j;
	}
	if (o == 0)
		buf[o++] = '/';
	*out = (struct sl_str){buf, o};
	for (i = 0; i < o && !up; i++)
		up = cls[(uint8_t)buf[i]] & C_UPPER;
	if (upper)
		*upper = up;
	return 0;
}

struct sl_str sl_norm_match_path(struct sl_str canon, bool fold_slash)
{
	if (fold_slash && canon.len > 1 && canon.p[canon.len - 1] == '/')
		canon.len--;
	return canon;
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

int sl_norm_host(struct sl_str in, char *buf, size_t cap, struct sl_str *out)
{
	const char *p, *port = NULL;
	size_t n, hlen, hl, plen = 0, pz = 0, need, o = 0;
	bool drop_port = false, upper = false;

	while (in.len > 0 && is_blank(in.p[0])) {
		in.p++;
		in.len--;
	}
	while (in.len > 0 && is_blank(in.p[in.len - 1]))
		in.len--;
	*out = in;
	p = in.p;
	n = hlen = in.len;
	if (n == 0)
		return 0;
	/* the usual Host, "api.example.com", is read once and left as it is
	 * (words of eight bytes, the last overlapping) */
	{
		uint64_t seen = 0, v;

		if (n < 8) {
			for (size_t i = 0; i < n; i++)
				seen |= cls[(uint8_t)p[i]] & (C_UPPER | C_COLON);
		} else {
			for (size_t i = 0;; i += 8) {
				if (i + 8 > n)
					i = n - 8;
				memcpy(&v, p + i, 8);
				seen |= bytes_upper(v) | bytes_eq(v, ':');
				if (i + 8 >= n)
					break;
			}
		}
		if (seen == 0 && p[n - 1] != '.')
			return 0;
	}
	if (p[0] == '[') {
		const char *rb = memchr(p, ']', n);

		if (rb != NULL && (size_t)(rb - p) + 1 < n && rb[1] == ':') {
			hlen = (size_t)(rb - p) + 1;
			port = rb + 2;
		}
	} else {
		const char *c = memchr(p, ':', n);

		/* one colon: name:port; more is not a name, leave it whole */
		if (c != NULL && memchr(c + 1, ':', n - (size_t)(c + 1 - p)) == NULL) {
			hlen = (size_t)(c - p);
			port = c + 1;
		}
	}
	hl = hlen;
	if (p[0] != '[')
		while (hl > 0 && p[hl - 1] == '.')
			hl--;
	for (size_t i = 0; i < hl; i++)
		if (p[i] >= 'A' && p[i] <= 'Z')
			upper = true;
	if (port != NULL) {
		bool digits = true;

		plen = n - (size_t)(port - p);
		for (size_t i = 0; i < plen; i++)
			digits = digits && is_digit(port[i]);
		if (plen == 0) {
			drop_port = true;
		} else if (digits) {
			while (pz + 1 < plen && port[pz] == '0')
				pz++;
			drop_port = (plen - pz == 2 && memcmp(port + pz, "80", 2) == 0) ||
			            (plen - pz == 3 && memcmp(port + pz, "443", 3) == 0);
		}
	}
	if (hl == hlen && !upper && !drop_port && pz == 0)
		return 0;
	need = hl + (port == NULL || drop_port ? 0 : 1 + plen - pz);
	if (need > cap)
		return SL_ENOMEM;
	for (size_t i = 0; i < hl; i++) {
		char c = p[i];

		buf[o++] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
	}
	if (port != NULL && !drop_port) {
		buf[o++] = ':';
		memcpy(buf + o, port + pz, plen - pz);
		o += plen - pz;
	}
	*out = (struct sl_str){buf, o};
	return 0;
}

bool sl_norm_eq(const char *a, const char *b, size_t n, bool icase)
{
	if (n == 0)
		return true;
	return icase ? strncasecmp(a, b, n) == 0 : memcmp(a, b, n) == 0;
}
