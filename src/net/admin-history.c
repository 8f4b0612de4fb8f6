/* The usage history's admin endpoints (DESIGN.md section 7, docs/usage.md):
 * GET /v1/accounts/{account}/usage/history, GET /v1/usage/top, the usage
 * series of /metrics, and the dashboard's embedded files. Each query
 * first flushes what the workers counted (sl_usage_flush), so an answer
 * includes every decision made before it; it runs on the worker's loop,
 * bounded by the series length (SERIES_MAX buckets) and n (TOP_MAX). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "net/admin-int.h"
#include "net/dashboard.h"
#include "policy/units.h"
#include "usage/usage.h"

#define SERIES_MAX 10000 /* buckets one history answer may hold */
#define TOP_MAX    1000  /* accounts one top answer may hold */
#define TOP_DFLT   10
#define PARAM_MAX  64 /* bytes of a decoded query parameter value */
#define BY_MAX     32 /* rejected_by entries kept per bucket */

static const char *const bucket_name[SL_USAGE_NBUCKETS] = {"minute", "hour", "day"};
static const char *const by_name[] = {"rejected", "allowed", "cost"};

/* ---- a growable JSON text, for answers past the fixed body ---- */

struct dyn {
	char *p;
	size_t len, cap;
	bool oom;
};

static void dput(struct dyn *d, const char *s, size_t n)
{
	if (d->oom)
		return;
	if (d->len + n + 1 > d->cap) {
		size_t cap = d->cap ? d->cap : 4096;
		char *p;

		while (cap < d->len + n + 1)
			cap *= 2;
		p = realloc(d->p, cap);
		if (p == NULL) {
			d->oom = true;
			return;
		}
		d->p = p;
		d->cap = cap;
	}
	memcpy(d->p + d->len, s, n);
	d->len += n;
}

static void dstr(struct dyn *d, const char *s)
{
	dput(d, s, strlen(s));
}

static void dint(struct dyn *d, int64_t v)
{
	char b[24];
	dput(d, b, sl_fmt_i64(b, v));
}

static void djson(struct dyn *d, const char *s)
{
	char tmp[2 * SL_USAGE_ACCOUNT * 6 + 8];
	struct sl_buf b = {.p = tmp, .cap = sizeof(tmp)};

	sl_buf_json_string(&b, s, strnlen(s, SL_USAGE_ACCOUNT));
	dput(d, tmp, b.len);
}

static void respond_dyn(struct sl_admin_resp *r, struct dyn *d)
{
	if (d->oom) {
		free(d->p);
		sl_admin_respond_error(r, 503, "out_of_memory", "the answer did not fit in memory");
		return;
	}
	sl_admin_respond_owned(r, 200, sl_admin_ct_json, d->p, d->len);
}

/* ---- query parameters ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Percent-decode [p, p+n) ('+' is a space) into out (cap bytes, NUL
 * added). Returns the length, or -1 when malformed, too long or NUL. */
static long pct_decode(const char *p, size_t n, char *out, size_t cap, bool plus)
{
	size_t o = 0;

	for (size_t i = 0; i < n; i++) {
		char c = p[i];

		if (c == '%') {
			int h, l;

			if (i + 2 >= n)
				return -1;
			h = hexval(p[i + 1]);
			l = hexval(p[i + 2]);
			if (h < 0 || l < 0 || (h == 0 && l == 0))
				return -1;
			c = (char)(h << 4 | l);
			i += 2;
		} else if (c == '+' && plus) {
			c = ' ';
		}
		if (o + 1 >= cap)
			return -1;
		out[o++] = c;
	}
	out[o] = '\0';
	return (long)o;
}

struct param {
	const char *name;
	char value[PARAM_MAX];
	bool set;
};

/* Split the query into the named params; an unknown, repeated or
 * malformed one is a 400 naming it (false returned, r filled). */
static bool parse_query(struct sl_admin_resp *r, struct sl_str q, struct param *ps, size_t nps)
{
	const char *p = q.p, *end = q.p + q.len;
	char msg[160];

	while (p != NULL && p < end) {
		const char *amp = memchr(p, '&', (size_t)(end - p));
		const char *e = amp ? amp : end;
		const char *eq = memchr(p, '=', (size_t)(e - p));
		const char *ne = eq ? eq : e;
		char name[PARAM_MAX];
		size_t i;

		if (e == p) {
			p = e + 1;
			continue;
		}
		if (pct_decode(p, (size_t)(ne - p), name, sizeof(name), true) < 0) {
			sl_admin_respond_error(r, 400, "bad_parameter",
			                       "a query parameter name is malformed");
			return false;
		}
		for (i = 0; i < nps && strcmp(ps[i].name, name) != 0; i++)
			;
		if (i == nps) {
			snprintf(msg, sizeof(msg), "unknown parameter '%.40s'", name);
			sl_admin_respond_error(r, 400, "bad_parameter", msg);
			return false;
		}
		if (ps[i].set) {
			snprintf(msg, sizeof(msg), "parameter '%s' is given twice", ps[i].name);
			sl_admin_respond_error(r, 400, "bad_parameter", msg);
			return false;
		}
		if (!eq ||
		    pct_decode(eq + 1, (size_t)(e - eq - 1), ps[i].value, PARAM_MAX, true) <= 0) {
			snprintf(msg, sizeof(msg), "parameter '%s' needs a value", ps[i].name);
			sl_admin_respond_error(r, 400, "bad_parameter", msg);
			return false;
		}
		ps[i].set = true;
		p = amp ? amp + 1 : end;
	}
	return true;
}

static bool bad_param(struct sl_admin_resp *r, const char *name, const char *expected)
{
	char msg[200];

	snprintf(msg, sizeof(msg), "parameter '%s': %s", name, expected);
	sl_admin_respond_error(r, 400, "bad_parameter", msg);
	return false;
}

static bool digits(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return n > 0;
}

static int64_t num(const char *s, size_t n)
{
	int64_t v = 0;
	for (size_t i = 0; i < n; i++)
		v = v * 10 + (s[i] - '0');
	return v;
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

/* Unix seconds (up to 12 digits) or RFC 3339 (2026-12-02T01:00:00Z, a
 * fraction and a +hh:mm offset allowed; 't'/'z' too). */
int sl_usage_parse_time(const char *s, int64_t *out)
{
	size_t n = strlen(s), i;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (digits(s, n)) {
		if (n > 12)
			return SL_ERANGE;
		*out = num(s, n);
		return 0;
	}
	if (n < 20 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
	    !digits(s + 8, 2) || (s[10] != 'T' && s[10] != 't') || !digits(s + 11, 2) ||
	    s[13] != ':' || !digits(s + 14, 2) || s[16] != ':' || !digits(s + 17, 2))
		return SL_EINVAL;
	int64_t y = num(s, 4), mo = num(s + 5, 2), d = num(s + 8, 2);
	int64_t h = num(s + 11, 2), mi = num(s + 14, 2), se = num(s + 17, 2), off = 0;
	if (mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
		return SL_EINVAL;
	if (mo == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
		return SL_EINVAL;
	i = 19;
	if (s[i] == '.') {
		size_t f = ++i;
		while (i < n && s[i] >= '0' && s[i] <= '9')
			i++;
		if (i == f)
			return SL_EINVAL;
	}
	if (i + 1 == n && (s[i] == 'Z' || s[i] == 'z')) {
		off = 0;
	} else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && digits(s + i + 1, 2) &&
	           s[i + 3] == ':' && digits(s + i + 4, 2)) {
		int64_t oh = num(s + i + 1, 2), om = num(s + i + 4, 2);
		if (oh > 23 || om > 59)
			return SL_EINVAL;
		off = (oh * 3600 + om * 60) * (s[i] == '+' ? 1 : -1);
	} else {
		return SL_EINVAL;
	}
	*out = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se > 59 ? 59 : se) - off;
	return *out < 0 ? SL_ERANGE : 0;
}

static struct sl_usage *usage_of(struct sl_admin *a, struct sl_admin_call *c)
{
	if (a->g->usage == NULL) {
		sl_admin_respond_error(&c->resp, 503, "usage_off",
		                       "the usage history is off (usage.enabled, or its database "
		                       "could not be opened: see the daemon's log)");
		return NULL;
	}
	return a->g->usage;
}

/* ---- GET /v1/accounts/{account}/usage/history ---- */

struct point {
	int64_t start;
	uint64_t allowed, delayed, rejected, cost;
	unsigned nby;
	struct {
		char limit[SL_USAGE_LIMIT];
		uint64_t n;
	} by[BY_MAX];
};

struct hist {
	struct point *pts;
	size_t npts;
	int64_t first, step; /* s */
};

static void hist_row(void *arg, const struct sl_usage_row *r)
{
	struct hist *h = arg;
	int64_t k = (r->start - h->first) / h->step;
	struct point *p;

	if (k < 0 || (size_t)k >= h->npts)
		return;
	p = &h->pts[k];
	p->allowed += r->allowed;
	p->delayed += r->delayed;
	p->rejected += r->rejected;
	p->cost += r->cost;
	if (r->rejected > 0 && r->limit != NULL && r->limit[0] != '\0' && p->nby < BY_MAX) {
		snprintf(p->by[p->nby].limit, SL_USAGE_LIMIT, "%s", r->limit);
		p->by[p->nby++].n = r->rejected;
	}
}

static void put_counts(struct dyn *d, uint64_t al, uint64_t de, uint64_t re, uint64_t co)
{
	dstr(d, "\"allowed\":");
	dint(d, (int64_t)al);
	dstr(d, ",\"delayed\":");
	dint(d, (int64_t)de);
	dstr(d, ",\"rejected\":");
	dint(d, (int64_t)re);
	dstr(d, ",\"cost\":");
	dint(d, (int64_t)co);
}

int sl_admin_usage_history(struct sl_admin *a, struct sl_admin_call *c,
                           const struct sl_admin_req *req)
{
	static const char pre[] = "/v1/accounts/";
	struct param ps[] = {{.name = "bucket"}, {.name = "from"}, {.name = "to"}};
	const char *seg = req->path.p + sizeof(pre) - 1;
	const char *slash = memchr(seg, '/', req->path.len - (sizeof(pre) - 1));
	char account[SL_USAGE_ACCOUNT];
	long alen = slash ? pct_decode(seg, (size_t)(slash - seg), account, sizeof(account), false)
	                  : -1;
	int64_t now = req->now / SL_NS_PER_SEC, from, to, step;
	unsigned bucket = SL_USAGE_MINUTE;
	struct sl_usage *u;
	struct hist h;
	struct dyn d = {0};

	if (alen <= 0) {
		sl_admin_respond_error(&c->resp, 400, "bad_account",
		                       "the account in the path is malformed or too long");
		return 0;
	}
	if (!parse_query(&c->resp, req->query, ps, 3))
		return 0;
	if (ps[0].set) {
		for (bucket = 0; bucket < SL_USAGE_NBUCKETS; bucket++)
			if (strcmp(ps[0].value, bucket_name[bucket]) == 0)
				break;
		if (bucket == SL_USAGE_NBUCKETS)
			return bad_param(&c->resp, "bucket", "expected minute, hour or day"), 0;
	}
	step = sl_usage_bucket_seconds(bucket);
	to = now;
	if (ps[2].set && sl_usage_parse_time(ps[2].value, &to) < 0)
		return bad_param(
		               &c->resp, "to",
		               "expected unix seconds or an RFC 3339 time (2026-12-02T01:00:00Z)"),
		       0;
	from = to - (bucket == SL_USAGE_MINUTE ? 3600
	             : bucket == SL_USAGE_HOUR ? 86400
	                                       : 30 * 86400);
	if (ps[1].set && sl_usage_parse_time(ps[1].value, &from) < 0)
		return bad_param(
		               &c->resp, "from",
		               "expected unix seconds or an RFC 3339 time (2026-12-02T01:00:00Z)"),
		       0;
	if (from > to)
		return bad_param(&c->resp, "from", "must not be after 'to'"), 0;
	h.first = from - from % step;
	h.step = step;
	if ((to - h.first) / step + 1 > SERIES_MAX)
		return bad_param(&c->resp, "from",
		                 "the range holds more than 10000 buckets: use a coarser bucket"),
		       0;
	if ((u = usage_of(a, c)) == NULL)
		return 0;
	h.npts = (size_t)((to - h.first) / step + 1);
	h.pts = calloc(h.npts, sizeof(*h.pts));
	if (h.pts == NULL) {
		sl_admin_respond_error(&c->resp, 503, "out_of_memory", "no memory for the series");
		return 0;
	}
	for (size_t i = 0; i < h.npts; i++)
		h.pts[i].start = h.first + (int64_t)i * step;
	sl_usage_flush(u, req->now);
	if (sl_usage_history(u, account, (size_t)alen, bucket, h.first, to, hist_row, &h) < 0) {
		free(h.pts);
		sl_admin_respond_error(&c->resp, 503, "usage_error", "the usage database failed");
		return 0;
	}
	dstr(&d, "{\"account\":");
	djson(&d, account);
	dstr(&d, ",\"bucket\":\"");
	dstr(&d, bucket_name[bucket]);
	dstr(&d, "\",\"from\":");
	dint(&d, h.first);
	dstr(&d, ",\"to\":");
	dint(&d, to);
	dstr(&d, ",\"series\":[");
	for (size_t i = 0; i < h.npts; i++) {
		const struct point *p = &h.pts[i];

		dstr(&d, i ? ",{\"start\":" : "{\"start\":");
		dint(&d, p->start);
		dstr(&d, ",");
		put_counts(&d, p->allowed, p->delayed, p->rejected, p->cost);
		dstr(&d, ",\"rejected_by\":{");
		for (unsigned k = 0; k < p->nby; k++) {
			if (k)
				dstr(&d, ",");
			djson(&d, p->by[k].limit);
			dstr(&d, ":");
			dint(&d, (int64_t)p->by[k].n);
		}
		dstr(&d, "}}");
	}
	dstr(&d, "]}");
	free(h.pts);
	respond_dyn(&c->resp, &d);
	return 0;
}

/* ---- GET /v1/usage/top ---- */

struct top {
	struct dyn *d;
	unsigned n;   /* accounts written */
	bool in_by;   /* inside an account's rejected_by object */
	unsigned nby; /* entries in it */
};

static void close_account(struct top *t)
{
	if (t->n > 0)
		dstr(t->d, "}}");
}

static void top_row(void *arg, const struct sl_usage_row *r)
{
	struct top *t = arg;

	if (r->limit == NULL) {
		close_account(t);
		dstr(t->d, t->n ? ",{\"account\":" : "{\"account\":");
		djson(t->d, r->account);
		dstr(t->d, ",");
		put_counts(t->d, r->allowed, r->delayed, r->rejected, r->cost);
		dstr(t->d, ",\"rejected_by\":{");
		t->n++;
		t->nby = 0;
		return;
	}
	if (r->limit[0] == '\0')
		return;
	if (t->nby++)
		dstr(t->d, ",");
	djson(t->d, r->limit);
	dstr(t->d, ":");
	dint(t->d, (int64_t)r->rejected);
}

static void fleet_row(void *arg, const struct sl_usage_row *r)
{
	struct top *t = arg;

	if (r->limit == NULL || r->limit[0] == '\0')
		return;
	if (t->nby++)
		dstr(t->d, ",");
	djson(t->d, r->limit);
	dstr(t->d, ":");
	dint(t->d, (int64_t)r->rejected);
}

int sl_admin_usage_top(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	struct param ps[] = {{.name = "by"}, {.name = "window"}, {.name = "n"}};
	int64_t now = req->now / SL_NS_PER_SEC, window = 3600 * SL_NS_PER_SEC;
	unsigned by = SL_USAGE_BY_REJECTED, n = TOP_DFLT;
	struct sl_usage *u;
	struct dyn d = {0};
	struct top t = {.d = &d};
	int rc;

	if (!parse_query(&c->resp, req->query, ps, 3))
		return 0;
	if (ps[0].set) {
		for (by = 0; by < 3 && strcmp(ps[0].value, by_name[by]) != 0; by++)
			;
		if (by == 3)
			return bad_param(&c->resp, "by", "expected rejected, allowed or cost"), 0;
	}
	if (ps[1].set && (sl_parse_duration(ps[1].value, &window) < 0 || window < SL_NS_PER_SEC ||
	                  window > 3660LL * 86400 * SL_NS_PER_SEC))
		return bad_param(&c->resp, "window",
		                 "expected a duration from 1s to 10 years (1h, 30m, 7d)"),
		       0;
	if (ps[2].set) {
		size_t len = strlen(ps[2].value);
		if (!digits(ps[2].value, len) || len > 4 || num(ps[2].value, len) < 1 ||
		    num(ps[2].value, len) > TOP_MAX)
			return bad_param(&c->resp, "n", "expected a count from 1 to 1000"), 0;
		n = (unsigned)num(ps[2].value, len);
	}
	if ((u = usage_of(a, c)) == NULL)
		return 0;
	sl_usage_flush(u, req->now);
	dstr(&d, "{\"by\":\"");
	dstr(&d, by_name[by]);
	dstr(&d, "\",\"window\":");
	dint(&d, window / SL_NS_PER_SEC);
	dstr(&d, ",\"accounts\":[");
	rc = sl_usage_top(u, by, now - window / SL_NS_PER_SEC, n, now, top_row, &t);
	close_account(&t);
	dstr(&d, "],\"rejected_by\":{");
	t.nby = 0;
	if (rc == 0)
		rc = sl_usage_rejected_by(u, now - window / SL_NS_PER_SEC, now, fleet_row, &t);
	dstr(&d, "}}");
	if (rc < 0) {
		free(d.p);
		sl_admin_respond_error(&c->resp, 503, "usage_error", "the usage database failed");
		return 0;
	}
	respond_dyn(&c->resp, &d);
	return 0;
}

/* ---- /metrics: the usage series ---- */

void sl_admin_usage_gauges(struct sl_admin *a)
{
	struct sl_usage_stats st;

	if (a->g->usage == NULL || a->g->metrics == NULL)
		return;
	sl_usage_stats(a->g->usage, &st);
	if (st.last_flush > 0) /* rendered as sluice_usage_flush_lag_seconds */
		sl_metrics_set_gauge(a->g->metrics, SL_GAUGE_USAGE_FLUSHED, st.last_flush);
}

size_t sl_admin_usage_metrics(struct sl_admin *a, char *buf, size_t cap, int64_t now)
{
	struct sl_usage_stats st;
	struct sl_buf b;
	char line[1024];

	if (a->g->usage == NULL || cap == 0)
		return 0;
	sl_usage_stats(a->g->usage, &st);
	snprintf(line, sizeof(line),
	         "# HELP sluice_usage_counted_total Decisions counted into the usage history.\n"
	         "# TYPE sluice_usage_counted_total counter\n"
	         "sluice_usage_counted_total %llu\n"
	         "# HELP sluice_usage_dropped_total Decisions the usage tables had no room for "
	         "(past usage.max_series, or a name too long).\n"
	         "# TYPE sluice_usage_dropped_total counter\n"
	         "sluice_usage_dropped_total %llu\n"
	         "# HELP sluice_usage_flushes_total Usage history flushes by result.\n"
	         "# TYPE sluice_usage_flushes_total counter\n"
	         "sluice_usage_flushes_total{result=\"ok\"} %llu\n"
	         "sluice_usage_flushes_total{result=\"failed\"} %llu\n"
	         "# HELP sluice_usage_table_fill Highest worker table fill at the last flush, "
	         "in series.\n"
	         "# TYPE sluice_usage_table_fill gauge\n"
	         "sluice_usage_table_fill %u\n"
	         "# HELP sluice_usage_table_capacity Series slots per worker table.\n"
	         "# TYPE sluice_usage_table_capacity gauge\n"
	         "sluice_usage_table_capacity %u\n",
	         (unsigned long long)st.counted, (unsigned long long)st.dropped,
	         (unsigned long long)st.flushes, (unsigned long long)st.flush_errors, st.fill_max,
	         st.cap);
	sl_buf_init(&b, buf, cap);
	sl_buf_str(&b, line);
	return b.full ? 0 : b.len;
}

/* ---- GET /dashboard ---- */

static const char *mime(const char *name)
{
	const char *dot = strrchr(name, '.');

	if (dot && strcmp(dot, ".html") == 0)
		return "text/html; charset=utf-8";
	if (dot && strcmp(dot, ".css") == 0)
		return "text/css; charset=utf-8";
	if (dot && strcmp(dot, ".js") == 0)
		return "text/javascript; charset=utf-8";
	if (dot && strcmp(dot, ".svg") == 0)
		return "image/svg+xml";
	return "application/octet-stream";
}

int sl_admin_dashboard(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	static const char pre[] = "/dashboard";
	const char *name = "index.html";
	size_t nlen = strlen(name);
	char *copy;

	(void)a;
	if (req->path.len > sizeof(pre)) { /* "/dashboard/<file>" */
		name = req->path.p + sizeof(pre);
		nlen = req->path.len - sizeof(pre);
	} else if (req->path.len == sizeof(pre)) { /* "/dashboard/" */
		nlen = strlen(name);
	}
	if (nlen == 9 && memcmp(name, "auth.json", 9) == 0) {
		/* whether the page must ask for the token (a 401 tells as much) */
		const struct sl_policy *p = req->policy;
		bool need = p != NULL && p->admin.token != NULL && p->admin.token[0] != '\0';

		sl_admin_respond_json(&c->resp, 200,
		                      need ? "{\"token_required\":true}"
		                           : "{\"token_required\":false}");
		sl_admin_add_extra(&c->resp, "Cache-Control", "no-store");
		return 0;
	}
	for (const struct sl_dash_file *f = sl_dash_files; f->name != NULL; f++) {
		if (strlen(f->name) != nlen || memcmp(f->name, name, nlen) != 0)
			continue;
		copy = malloc(f->len ? f->len : 1);
		if (copy == NULL) {
			sl_admin_respond_error(&c->resp, 503, "out_of_memory", "no memory");
			return 0;
		}
		memcpy(copy, f->bytes, f->len);
		sl_admin_respond_owned(&c->resp, 200, mime(f->name), copy, f->len);
		sl_admin_add_extra(
		        &c->resp, "Content-Security-Policy",
		        "default-src 'none'; script-src 'self'; style-src 'self'; "
		        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
		        "base-uri 'none'; form-action 'none'");
		sl_admin_add_extra(&c->resp, "X-Content-Type-Options", "nosniff");
		sl_admin_add_extra(&c->resp, "Cache-Control", "no-cache");
		sl_admin_add_extra(&c->resp, "Referrer-Policy", "no-referrer");
		return 0;
	}
	sl_admin_respond_error(&c->resp, 404, "not_found", "no such dashboard file");
	return 0;
}
