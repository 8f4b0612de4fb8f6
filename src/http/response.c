/* Writing HTTP heads into fixed buffers: status line, headers (including
 * the rate-limit headers sl_render_headers emits, through sl_http_out_emit)
 * and small bodies. A buffer never grows: a write that does not fit sets
 * `overflow` and the caller turns that into an error response or a close,
 * so no response can push a connection past its fixed memory. */
#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include "http/http.h"
#include "core/buf.h"

void sl_http_out_init(struct sl_http_out *o, char *buf, size_t cap)
{
	o->buf = buf;
	o->cap = cap;
	o->len = 0;
	o->overflow = false;
}

void sl_http_out_bytes(struct sl_http_out *o, const void *p, size_t n)
{
	if (o->overflow)
		return;
	if (n > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	if (n)
		memcpy(o->buf + o->len, p, n);
	o->len += n;
}

void sl_http_out_str(struct sl_http_out *o, const char *s)
{
	sl_http_out_bytes(o, s, strlen(s));
}

/* Reason phrases with their lengths, so the status line needs no strlen. */
struct reason {
	const char *p;
	size_t len;
};

#define R(s) ((struct reason){s, sizeof(s) - 1})

static struct reason reason_of(int status)
{
	switch (status) {
	case 100:
		return R("Continue");
	case 200:
		return R("OK");
	case 201:
		return R("Created");
	case 202:
		return R("Accepted");
	case 204:
		return R("No Content");
	case 206:
		return R("Partial Content");
	case 301:
		return R("Moved Permanently");
	case 302:
		return R("Found");
	case 304:
		return R("Not Modified");
	case 400:
		return R("Bad Request");
	case 401:
		return R("Unauthorized");
	case 402:
		return R("Payment Required");
	case 403:
		return R("Forbidden");
	case 404:
		return R("Not Found");
	case 405:
		return R("Method Not Allowed");
	case 408:
		return R("Request Timeout");
	case 409:
		return R("Conflict");
	case 413:
		return R("Content Too Large");
	case 414:
		return R("URI Too Long");
	case 429:
		return R("Too Many Requests");
	case 431:
		return R("Request Header Fields Too Large");
	case 500:
		return R("Internal Server Error");
	case 502:
		return R("Bad Gateway");
	case 503:
		return R("Service Unavailable");
	case 504:
		return R("Gateway Timeout");
	default:
		return R("Unknown");
	}
}

#undef R

const char *sl_http_reason(int status)
{
	return reason_of(status).p;
}

void sl_http_out_status(struct sl_http_out *o, int status, const char *reason)
{
	struct reason r;
	char *p;

	if (status < 100 || status > 999)
		status = 500;
	r = reason ? (struct reason){reason, strlen(reason)} : reason_of(status);
	if (o->overflow)
		return;
	if (r.len + 15 > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	p = o->buf + o->len;
	memcpy(p, "HTTP/1.1 ", 9);
	p[9] = (char)('0' + status / 100);
	p[10] = (char)('0' + status / 10 % 10);
	p[11] = (char)('0' + status % 10);
	p[12] = ' ';
	memcpy(p + 13, r.p, r.len);
	p[13 + r.len] = '\r';
	p[14 + r.len] = '\n';
	o->len += r.len + 15;
}

/* Bytes of x equal to the byte repeated in b: nonzero iff there is one
 * (the classic "has zero byte" test on x ^ b, exact as a yes/no). */
static inline uint64_t has_byte(uint64_t x, uint64_t b)
{
	uint64_t y = x ^ b;
	return (y - 0x0101010101010101ull) & ~y & 0x8080808080808080ull;
}

/* No CR or LF (nor ':' when colon) in s. Eight bytes a step: every
 * response carries several headers, and a byte loop or three memchr calls
 * per header showed in the profile. */
static bool clean(struct sl_str s, bool colon)
{
	const uint64_t cr = 0x0d0d0d0d0d0d0d0dull, lf = 0x0a0a0a0a0a0a0a0aull,
	               co = 0x3a3a3a3a3a3a3a3aull;
	uint64_t x = 0, bad = 0;
	size_t i = 0;

	if (s.len < 8) {
		memcpy(&x, s.p ? s.p : "", s.len); /* zero padding matches nothing */
		return !(has_byte(x, cr) | has_byte(x, lf) | (colon ? has_byte(x, co) : 0));
	}
	for (; i + 8 <= s.len; i += 8) {
		memcpy(&x, s.p + i, 8);
		bad |= has_byte(x, cr) | has_byte(x, lf) | (colon ? has_byte(x, co) : 0);
	}
	if (i < s.len) { /* the last 8 bytes, overlapping what was seen */
		memcpy(&x, s.p + s.len - 8, 8);
		bad |= has_byte(x, cr) | has_byte(x, lf) | (colon ? has_byte(x, co) : 0);
	}
	return bad == 0;
}

/* "name: value\r\n" without looking at the bytes: for callers that know
 * both are free of CR and LF (and the name of ':'). */
static void put_header(struct sl_http_out *o, struct sl_str name, struct sl_str value)
{
	char *p;

	if (o->overflow)
		return;
	if (name.len + value.len + 4 > o->cap - o->len) {
		o->overflow = true;
		return;
	}
	p = o->buf + o->len;
	memcpy(p, name.p, name.len);
	p += name.len;
	*p++ = ':';
	*p++ = ' ';
	if (value.len)
		memcpy(p, value.p, value.len);
	p += value.len;
	*p++ = '\r';
	*p++ = '\n';
	o->len = (size_t)(p - o->buf);
}

void sl_http_out_header(struct sl_http_out *o, struct sl_str name, struct sl_str value)
{
	if (name.len == 0 || !clean(name, true) || !clean(value, false))
		return;
	put_header(o, name, value);
}

void sl_http_out_header_c(struct sl_http_out *o, const char *name, const char *value)
{
	struct sl_str n = {name, strlen(name)}, v = {value, strlen(value)};
	sl_http_out_header(o, n, v);
}

/* name is a header name written in the code ("Content-Length"), never
 * input, and the value is digits: nothing to check per request. */
void sl_http_out_header_u64(struct sl_http_out *o, const char *name, uint64_t v)
{
	char num[24];
	struct sl_str n = {name, strlen(name)}, val = {num, sl_fmt_u64(num, v)};

	assert(n.len > 0 && clean(n, true));
	put_header(o, n, val);
}

/* Only sl_render_headers calls this, and everything it emits is already
 * known to hold no CR or LF, so the bytes are not scanned a second time:
 * - names: its preset names are literals in render.c; configured names
 *   passed cfg_http_token at load (an RFC 9110 token: no CR, LF or ':');
 * - preset values are digits, or RFC 8941 sf-strings that sb_sf_string
 *   limits to printable ASCII;
 * - template values: the loader refuses a line break in a header value's
 *   literal text, and sl_template_render in SL_TPL_HEADER mode refuses a
 *   variable whose value holds CR, LF or NUL.
 * Headers copied from an upstream or a client go through
 * sl_http_out_header, which keeps the check. Debug builds verify. */
void sl_http_out_emit(void *arg, struct sl_str name, struct sl_str value)
{
	assert(name.len > 0 && clean(name, true) && clean(value, false));
	put_header(arg, name, value);
}

bool sl_http_hop_by_hop(struct sl_str name)
{
	/* by length first: called for every header of every proxied request
	 * and response, and most headers are none of these */
	switch (name.len) {
	case 2:
		return sl_str_ieq(name, "te");
	case 6:
		return sl_str_ieq(name, "expect");
	case 7:
		return sl_str_ieq(name, "upgrade") || sl_str_ieq(name, "trailer");
	case 10:
		return sl_str_ieq(name, "connection") || sl_str_ieq(name, "keep-alive");
	case 16:
		return sl_str_ieq(name, "proxy-connection");
	case 18:
		return sl_str_ieq(name, "proxy-authenticate");
	case 19:
		return sl_str_ieq(name, "proxy-authorization");
	default:
		return false;
	}
}

void sl_http_out_simple(struct sl_http_out *o, int status, const char *content_type,
                        const char *body, size_t body_len, bool close)
{
	sl_http_out_status(o, status, NULL);
	if (content_type)
		sl_http_out_header_c(o, "Content-Type", content_type);
	sl_http_out_header_u64(o, "Content-Length", body_len);
	if (close)
		sl_http_out_header_c(o, "Connection", "close");
	sl_http_out_bytes(o, "\r\n", 2);
	sl_http_out_bytes(o, body, body_len);
}
