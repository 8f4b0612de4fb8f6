/* Number formatting and JSON string escaping for struct sl_buf (buf.h):
 * the hand-rolled decimal conversion keeps snprintf off the per-request
 * paths that render headers and bodies. */
#include "core/buf.h"

size_t sl_fmt_u64(char *out, uint64_t v)
{
	char tmp[20];
	size_t n = 0;

	do {
		tmp[sizeof(tmp) - ++n] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	memcpy(out, tmp + sizeof(tmp) - n, n);
	return n;
}

size_t sl_fmt_i64(char *out, int64_t v)
{
	if (v >= 0)
		return sl_fmt_u64(out, (uint64_t)v);
	out[0] = '-';
	/* -(v + 1) + 1 avoids overflowing on INT64_MIN */
	return 1 + sl_fmt_u64(out + 1, (uint64_t)(-(v + 1)) + 1);
}

void sl_buf_u64(struct sl_buf *b, uint64_t v)
{
	char tmp[20];

	sl_buf_put(b, tmp, sl_fmt_u64(tmp, v));
}

void sl_buf_i64(struct sl_buf *b, int64_t v)
{
	char tmp[21];

	sl_buf_put(b, tmp, sl_fmt_i64(tmp, v));
}

void sl_buf_json_string(struct sl_buf *b, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	size_t run = 0; /* bytes of s[i - run .. i) that need no escaping */

	sl_buf_put(b, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c != '"' && c != '\\' && c >= 0x20) {
			run++;
			continue;
		}
		sl_buf_put(b, s + i - run, run);
		run = 0;
		if (c == '"' || c == '\\') {
			char e[2] = {'\\', (char)c};

			sl_buf_put(b, e, 2);
		} else {
			char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};

			sl_buf_put(b, e, 6);
		}
	}
	sl_buf_put(b, s + n - run, run);
	sl_buf_put(b, "\"", 1);
}
