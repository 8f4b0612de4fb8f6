/* The access log: one line per request on stdout, written with one stdio
 * call so lines of different workers never interleave. Two formats of the
 * same fields (server.access_log.format): `text`, space-separated
 * key=value pairs an operator can grep, and `json`, one object per line.
 *
 * The decision a reader must know: API keys are never printed. Only the
 * method and target are taken from the request (no header is logged), and
 * in the target's query the values of every `query:NAME` key source and of
 * the names in access_log.redact_query are replaced by "redacted". */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include "net/net-int.h"

#define LOG_LINE 1024 /* bytes of one line; longer fields are cut */

struct line {
	char *p;
	size_t len, cap; /* bytes */
};

static void put(struct line *l, const char *s, size_t n)
{
	if (n > l->cap - l->len)
		n = l->cap - l->len;
	memcpy(l->p + l->len, s, n);
	l->len += n;
}

static void puts_(struct line *l, const char *s)
{
	put(l, s, strlen(s));
}

static void put_u64(struct line *l, uint64_t v)
{
	char d[24];
	size_t i = sizeof(d);
	do {
		d[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	put(l, d + i, sizeof(d) - i);
}

/* ns as milliseconds with three decimals. */
static void put_ms(struct line *l, uint64_t ns)
{
	char f[4];
	uint64_t us = ns / 1000;
	put_u64(l, us / 1000);
	f[0] = '.';
	f[1] = (char)('0' + us / 100 % 10);
	f[2] = (char)('0' + us / 10 % 10);
	f[3] = (char)('0' + us % 10);
	put(l, f, 4);
}

/* A value, quoted and escaped for both formats (JSON string rules, which
 * a text reader also understands): quote, backslash and bytes outside
 * printable ASCII as \u00XX. */
static void put_quoted(struct line *l, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	put(l, "\"", 1);
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (ch == '"' || ch == '\\') {
			char e[2] = {'\\', (char)ch};
			put(l, e, 2);
		} else if (ch < 0x20 || ch > 0x7e) {
			char e[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
			put(l, e, 6);
		} else {
			put(l, (const char *)&ch, 1);
		}
	}
	put(l, "\"", 1);
}

/* Whether the value of query parameter `name` (n raw bytes) is hidden.
 * Names are compared case-blind, and a name with a percent escape or a
 * '+' is always hidden: the key lookup decodes names, so "%61pikey"
 * carries the key of "apikey". */
static bool redacted_name(const struct sl_policy *p, const char *name, size_t n)
{
	const struct sl_server_conf *s = &p->server;
	if (memchr(name, '%', n) || memchr(name, '+', n))
		return true;
	for (unsigned i = 0; i < s->nredact; i++)
		if (strlen(s->redact_query[i]) == n &&
		    strncasecmp(s->redact_query[i], name, n) == 0)
			return true;
	for (size_t i = 0; i < p->identify.nkey_from; i++) {
		const struct sl_key_source *k = &p->identify.key_from[i];
		if (k->kind == SL_KEYSRC_QUERY && k->name && strlen(k->name) == n &&
		    strncasecmp(k->name, name, n) == 0)
			return true;
	}
	return false;
}

/* The target `t` (n bytes) with the values of redacted query parameters
 * replaced, into out (cap bytes). Returns the length. */
static size_t redact(const struct sl_policy *p, const char *t, size_t n, char *out, size_t cap)
{
	const char *q = memchr(t, '?', n), *end = t + n;
	struct line o = {out, 0, cap};

	if (!q) {
		put(&o, t, n);
		return o.len;
	}
	put(&o, t, (size_t)(q - t) + 1);
	for (const char *a = q + 1; a <= end;) {
		const char *amp = memchr(a, '&', (size_t)(end - a));
		const char *e = amp ? amp : end;
		const char *eq = memchr(a, '=', (size_t)(e - a));
		if (eq && redacted_name(p, a, (size_t)(eq - a))) {
			put(&o, a, (size_t)(eq - a) + 1);
			puts_(&o, "redacted");
		} else {
			put(&o, a, (size_t)(e - a));
		}
		if (!amp)
			break;
		put(&o, "&", 1);
		a = amp + 1;
	}
	return o.len;
}

/* RFC 3339 UTC with milliseconds, from ns since the epoch. */
static void put_time(struct line *l, int64_t ns)
{
	char b[32];
	struct tm tm;
	time_t secs = (time_t)(ns / 1000000000);
	int ms = (int)(ns / 1000000 % 1000);

	gmtime_r(&secs, &tm);
	size_t n = strftime(b, sizeof(b), "%Y-%m-%dT%H:%M:%S", &tm);
	b[n++] = '.';
	b[n++] = (char)('0' + ms / 100);
	b[n++] = (char)('0' + ms / 10 % 10);
	b[n++] = (char)('0' + ms % 10);
	b[n++] = 'Z';
	put(l, b, n);
}

/* One field: ` name=value` (text) or `,"name":value` (json). A value given
 * as a string is quoted in JSON, and in text when it holds a space or a
 * quote; NULL is "-" in text and null in JSON. */
static void field_str(struct line *l, bool json, const char *name, const char *v, size_t n)
{
	if (json) {
		put(l, ",\"", 2);
		puts_(l, name);
		put(l, "\":", 2);
		if (v)
			put_quoted(l, v, n);
		else
			puts_(l, "null");
		return;
	}
	put(l, " ", 1);
	puts_(l, name);
	put(l, "=", 1);
	if (!v) {
		put(l, "-", 1);
		return;
	}
	bool plain = n > 0;
	for (size_t i = 0; i < n && plain; i++)
		plain = v[i] > 0x20 && v[i] < 0x7f && v[i] != '"' && v[i] != '\\';
	if (plain)
		put(l, v, n);
	else
		put_quoted(l, v, n);
}

static void field_num(struct line *l, bool json, const char *name, uint64_t v)
{
	put(l, json ? ",\"" : " ", json ? 2 : 1);
	puts_(l, name);
	put(l, json ? "\":" : "=", json ? 2 : 1);
	put_u64(l, v);
}

static void field_ms(struct line *l, bool json, const char *name, uint64_t ns, bool have)
{
	put(l, json ? ",\"" : " ", json ? 2 : 1);
	puts_(l, name);
	put(l, json ? "\":" : "=", json ? 2 : 1);
	if (have)
		put_ms(l, ns);
	else
		puts_(l, json ? "null" : "-");
}

void sl_access_log(struct sl_conn *c)
{
	const struct sl_policy *p = c->policy ? c->policy : c->w->policy;
	bool json = p->server.access_log_format == SL_LOG_JSON;
	char buf[LOG_LINE], target[SL_LOGLINE + 64];
	struct line l = {buf, 0, sizeof(buf) - 1};
	const struct sl_eval *ev = c->decided ? &c->ev : NULL;
	const char *sp = strchr(c->logline, ' ');
	size_t mlen = sp ? (size_t)(sp - c->logline) : strlen(c->logline);
	const char *url = sp ? sp + 1 : "";
	size_t tlen = redact(p, url, strlen(url), target, sizeof(target));
	uint64_t total = uv_hrtime() - c->t_decide;

	if (json) {
		puts_(&l, "{\"ts\":\"");
		put_time(&l, sl_worker_now(c->w));
		put(&l, "\"", 1);
	} else {
		put_time(&l, sl_worker_now(c->w));
	}
	const char *client = ev && ev->ip[0] ? ev->ip : c->peer_ip;
	field_str(&l, json, "client", client[0] ? client : NULL, strlen(client));
	field_str(&l, json, "listener", c->l->name, strlen(c->l->name));
	field_str(&l, json, "method", mlen ? c->logline : NULL, mlen);
	field_str(&l, json, "target", mlen ? target : NULL, tlen);
	field_num(&l, json, "status", (uint64_t)c->status);
	if (ev && ev->account_name.len)
		field_str(&l, json, "account", ev->account_name.p, ev->account_name.len);
	else
		field_str(&l, json, "account", NULL, 0);
	if (ev && ev->route)
		field_str(&l, json, "route", ev->route->name, strlen(ev->route->name));
	else
		field_str(&l, json, "route", NULL, 0);
	int prim = ev ? ev->decision.primary : -1;
	if (prim >= 0 && (size_t)prim < ev->nchecks && ev->limits[prim]) {
		const struct sl_result *r = &ev->checks[prim].res;
		field_str(&l, json, "limit", ev->limits[prim]->name,
		          strlen(ev->limits[prim]->name));
		if (r->remaining == SL_UNLIMITED)
			field_str(&l, json, "remaining", "unlimited", 9);
		else
			field_num(&l, json, "remaining", r->remaining);
	} else {
		field_str(&l, json, "limit", NULL, 0);
		field_str(&l, json, "remaining", NULL, 0);
	}
	field_num(&l, json, "bytes", c->bytes_out);
	field_ms(&l, json, "upstream_ms", c->up_ns, c->up_ns > 0);
	field_ms(&l, json, "total_ms", total, mlen > 0); /* no head parsed: no start time */
	if (json)
		put(&l, "}", 1);
	l.cap++; /* the byte kept for the newline */
	put(&l, "\n", 1);
	fwrite(buf, 1, l.len, stdout);
}
