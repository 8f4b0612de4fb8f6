/* Rendering: the rate-limit headers and the rejection / 401 bodies of a
 * decision, through the compiled templates of `responses` and a resolver
 * that reads the decision. Nothing allocates: values are formatted into
 * stack buffers and handed to the caller's emit callback.
 *
 * The one rule to know: a variable that has no value for this decision
 * (an unlimited limit's {limit}, {denied_by} when nothing denied,
 * {limits.NAME.*} when NAME did not apply) does not resolve, and a header
 * with an unresolved variable is left out rather than sent empty; in a JSON
 * body it renders as null. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sluice/error.h>
#include "policy/eval-int.h"
#include "policy/template.h"
#include "core/buf.h"

#define HDR_MAX 1024 /* bytes of one rendered header value */

struct rctx {
	const struct sl_eval *ev;
	int idx;           /* check of the unnamed variables, or -1 */
	bool rejected;     /* decision denied by a limit */
	bool unauthorized; /* 401 answer */
	bool suspended;    /* 403 of a suspended account */
	unsigned depth;    /* {message} nesting */
};

static long resolve(void *arg, const struct sl_tpl_ref *ref, char *buf, size_t cap);

static int64_t ceil_sec(int64_t ns)
{
	if (ns <= 0)
		return 0;
	return ns / SL_NS_PER_SEC + (ns % SL_NS_PER_SEC != 0);
}

static long put_str(char *buf, size_t cap, const char *s, size_t len)
{
	if (len > cap)
		return -1;
	memcpy(buf, s, len);
	return (long)len;
}

static long put_u64(char *buf, size_t cap, uint64_t v)
{
	char tmp[20];

	if (cap >= sizeof(tmp)) /* room for any u64: straight into buf */
		return (long)sl_fmt_u64(buf, v);
	return put_str(buf, cap, tmp, sl_fmt_u64(tmp, v));
}

/* ns the limit is stated over: the store's report, else the spec's. */
static int64_t window_ns(const struct sl_check *c)
{
	if (c->res.window > 0)
		return c->res.window;
	if (c->spec == NULL)
		return 0;
	switch (c->spec->algo) {
	case SL_ALGO_RATE:
	case SL_ALGO_SLIDING:
		return c->spec->period;
	case SL_ALGO_QUOTA:
		switch (c->spec->calendar) {
		case SL_CAL_HOUR:
			return SL_NS_PER_HOUR;
		case SL_CAL_DAY:
			return SL_NS_PER_DAY;
		case SL_CAL_WEEK:
			return 7 * SL_NS_PER_DAY;
		case SL_CAL_MONTH:
			return 30 * SL_NS_PER_DAY;
		}
		return 0;
	default:
		return 0;
	}
}

/* "1 minute", "2 hours", "90 seconds", "1 month". */
static long put_window(char *buf, size_t cap, const struct sl_check *c)
{
	static const struct {
		int64_t sec;
		const char *one, *many;
	} units[] = {
	        {7 * 86400, "week", "weeks"}, {86400, "day", "days"},   {3600, "hour", "hours"},
	        {60, "minute", "minutes"},    {1, "second", "seconds"},
	};
	int64_t sec;
	char tmp[48];
	int n;

	if (c->spec != NULL && c->spec->algo == SL_ALGO_QUOTA && c->spec->calendar == SL_CAL_MONTH)
		return put_str(buf, cap, "1 month", 7);
	sec = ceil_sec(window_ns(c));
	if (sec <= 0)
		return -1;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (sec % units[i].sec != 0)
			continue;
		int64_t k = sec / units[i].sec;

		n = snprintf(tmp, sizeof(tmp), "%" PRId64 " %s", k,
		             k == 1 ? units[i].one : units[i].many);
		return put_str(buf, cap, tmp, (size_t)n);
	}
	return -1;
}

static int find_named(const struct sl_eval *ev, const struct sl_tpl_ref *ref)
{
	for (size_t i = 0; i < ev->nchecks; i++) {
		const struct sl_limit *l = ev->limits[i];

		if (ref->name != NULL ? strcmp(l->name, ref->name) == 0
		                      : l->index == ref->limit_index)
			return (int)i;
	}
	return -1;
}

static long resolve(void *arg, const struct sl_tpl_ref *ref, char *buf, size_t cap);

/* Whether check c has numbers to show: unlimited has none; deny (an
 * entitlement) has no N and no window. */
static bool check_shown(const struct sl_check *c)
{
	return !sl_check_unlimited(c) && (c->spec == NULL || c->spec->algo != SL_ALGO_DENY);
}

/* A limit/remaining/reset field of check i, which check_shown. */
static long shown_field(const struct rctx *x, int i, unsigned field, char *buf, size_t cap)
{
	const struct sl_check *c = &x->ev->checks[i];

	switch (field) {
	case SL_TPL_LIMIT:
		return put_u64(buf, cap, c->res.limit);
	case SL_TPL_REMAINING:
		return put_u64(buf, cap, c->res.remaining);
	case SL_TPL_RESET: {
		int64_t now = x->ev->decision.now,
		        ra = c->res.reset_after > 0 ? c->res.reset_after : 0;

		int64_t at;

		/* a reset_after near INT64_MAX (a rate of 1 per century) must
		 * not wrap the sum: the reset saturates at the end of time */
		if (__builtin_add_overflow(now, ra, &at))
			at = INT64_MAX;
		return put_u64(buf, cap, (uint64_t)ceil_sec(at));
	}
	case SL_TPL_RESET_AFTER:
		return put_u64(buf, cap, (uint64_t)ceil_sec(c->res.reset_after));
	case SL_TPL_RETRY_AFTER: {
		int64_t s;

		/* only on a rejection, by the limit that rejected */
		if (!x->rejected || i != x->ev->decision.denied)
			return -1;
		s = ceil_sec(c->res.retry_after);
		return put_u64(buf, cap, (uint64_t)(s < 1 ? 1 : s));
	}
	case SL_TPL_WINDOW:
		return put_window(buf, cap, c);
	case SL_TPL_WINDOW_SECONDS: {
		int64_t w = ceil_sec(window_ns(c));

		return w > 0 ? put_u64(buf, cap, (uint64_t)w) : -1;
	}
	default:
		return -1;
	}
}

/* A limit/remaining/reset field of check i (-1: none). */
static long check_field(const struct rctx *x, int i, unsigned field, char *buf, size_t cap)
{
	if (i < 0 || !check_shown(&x->ev->checks[i]))
		return -1;
	return shown_field(x, i, field, buf, cap);
}

static const char *default_message(const struct rctx *x)
{
	if (x->unauthorized)
		return x->ev->decision.unauthorized_unknown ? "unknown API key" : "missing API key";
	if (x->ev->decision.status == 429)
		return "Rate limit exceeded";
	return "Request denied";
}

static long resolve(void *arg, const struct sl_tpl_ref *ref, char *buf, size_t cap)
{
	const struct rctx *x = arg;
	const struct sl_eval *ev = x->ev;

	switch (ref->var) {
	case SL_TPL_LIMIT:
	case SL_TPL_REMAINING:
	case SL_TPL_RESET:
	case SL_TPL_RESET_AFTER:
	case SL_TPL_RETRY_AFTER:
	case SL_TPL_WINDOW:
	case SL_TPL_WINDOW_SECONDS:
		return check_field(x, x->idx, ref->var, buf, cap);
	case SL_TPL_DENIED_BY:
		if (ev->decision.denied < 0)
			return -1;
		return put_str(buf, cap, ev->limits[ev->decision.denied]->name,
		               strlen(ev->limits[ev->decision.denied]->name));
	case SL_TPL_PLAN:
		if (ev->plan == NULL)
			return -1;
		return put_str(buf, cap, ev->plan->name, strlen(ev->plan->name));
	case SL_TPL_PLAN_TITLE: {
		const char *t;

		if (ev->plan == NULL)
			return -1;
		t = ev->plan->title != NULL ? ev->plan->title : ev->plan->name;
		return put_str(buf, cap, t, strlen(t));
	}
	case SL_TPL_ACCOUNT:
		if (ev->account_name.len == 0)
			return -1;
		return put_str(buf, cap, ev->account_name.p, ev->account_name.len);
	case SL_TPL_MESSAGE: {
		const struct sl_limit *l =
		        x->idx >= 0 && !x->unauthorized ? ev->limits[x->idx] : NULL;
		const char *m;

		if (l != NULL && l->message != NULL && x->depth == 0) {
			struct rctx inner = *x;

			inner.depth++;
			return sl_template_render(l->message, SL_TPL_TEXT, resolve, &inner, buf,
			                          cap);
		}
		if (x->depth > 0)
			return -1;
		m = default_message(x);
		return put_str(buf, cap, m, strlen(m));
	}
	case SL_TPL_NAMED: {
		int i = find_named(ev, ref);

		if (ref->field != SL_TPL_LIMIT && ref->field != SL_TPL_REMAINING &&
		    ref->field != SL_TPL_RESET)
			return -1;
		return check_field(x, i, ref->field, buf, cap);
	}
	default:
		return -1;
	}
}

static void ctx_init(struct rctx *x, const struct sl_eval *ev)
{
	x->ev = ev;
	x->idx = ev->decision.primary;
	x->rejected = ev->decision.denied >= 0;
	x->unauthorized = ev->decision.status == 401 && !x->rejected;
	x->suspended = ev->decision.suspended && ev->decision.status == 403 && !x->rejected;
	x->depth = 0;
}

/* ---- headers ---- */

static bool configured(const struct sl_header_tpl *h, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcasecmp(h[i].name, name) == 0)
			return true;
	return false;
}

/* Whether the preset header `name` yields to an explicit one. */
static bool overridden(const struct rctx *x, const char *name)
{
	const struct sl_responses *r = &x->ev->policy->responses;

	return configured(r->headers, r->nheaders, name) ||
	       (x->rejected && configured(r->rejected_headers, r->nrejected_headers, name));
}

/* The x-ratelimit preset, names with their lengths: no strlen per request. */
static const struct {
	const char *name;
	size_t len;
	unsigned var;
} xratelimit[] = {
        {"X-RateLimit-Limit", sizeof("X-RateLimit-Limit") - 1, SL_TPL_LIMIT},
        {"X-RateLimit-Remaining", sizeof("X-RateLimit-Remaining") - 1, SL_TPL_REMAINING},
        {"X-RateLimit-Reset", sizeof("X-RateLimit-Reset") - 1, SL_TPL_RESET},
        {"Retry-After", sizeof("Retry-After") - 1, SL_TPL_RETRY_AFTER},
};

/* Every field of the preset is a field of the primary check, which either
 * shows numbers or not (none, unlimited, deny): tested once here, not per
 * header as resolve() would. */
static void emit_xratelimit(const struct rctx *x, sl_header_emit_fn emit, void *arg)
{
	const struct sl_responses *r = &x->ev->policy->responses;
	bool any = r->nheaders > 0 || (x->rejected && r->nrejected_headers > 0);
	char buf[64];

	if (x->idx < 0 || !check_shown(&x->ev->checks[x->idx]))
		return;
	for (size_t i = 0; i < sizeof(xratelimit) / sizeof(xratelimit[0]); i++) {
		long n;

		if (any && overridden(x, xratelimit[i].name))
			continue;
		n = shown_field(x, x->idx, xratelimit[i].var, buf, sizeof(buf));
		if (n >= 0)
			emit(arg, (struct sl_str){xratelimit[i].name, xratelimit[i].len},
			     (struct sl_str){buf, (size_t)n});
	}
}

/* Retry-After of the denying check (the preset's field), unless a
 * configured header of that name replaces it. */
static void emit_retry_after(const struct rctx *x, sl_header_emit_fn emit, void *arg)
{
	const struct sl_responses *r = &x->ev->policy->responses;
	bool any = r->nheaders > 0 || r->nrejected_headers > 0;
	char buf[64];
	long n;

	if (x->idx < 0 || !check_shown(&x->ev->checks[x->idx]))
		return;
	if (any && overridden(x, "Retry-After"))
		return;
	n = shown_field(x, x->idx, SL_TPL_RETRY_AFTER, buf, sizeof(buf));
	if (n >= 0)
		emit(arg, (struct sl_str){"Retry-After", 11}, (struct sl_str){buf, (size_t)n});
}

/* An RFC 8941 sf-string: printable ASCII, '"' and '\' escaped, the rest
 * dropped (limit names are identifiers, so nothing is lost in practice). */
static void sb_sf_string(struct sl_buf *b, const char *s)
{
	sl_buf_put(b, "\"", 1);
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c < 0x20 || c > 0x7e)
			continue;
		if (c == '"' || c == '\\')
			sl_buf_put(b, "\\", 1);
		sl_buf_put(b, s, 1);
	}
	sl_buf_put(b, "\"", 1);
}

/* draft-ietf-httpapi-ratelimit-headers-10: one RateLimit-Policy and one
 * RateLimit field listing every matched limit with a finite quota. A
 * concurrency limit counts in-flight requests, not requests per window:
 * its item says qu="concurrent-requests" (the draft's quota unit) and has
 * no window. An item that does not fit in HDR_MAX is left out, never cut. */
static void emit_ietf(const struct rctx *x, sl_header_emit_fn emit, void *arg)
{
	const struct sl_eval *ev = x->ev;
	char pbuf[HDR_MAX], rbuf[HDR_MAX];
	struct sl_buf pol = {.p = pbuf, .cap = sizeof(pbuf)}, rl = {.p = rbuf, .cap = sizeof(rbuf)};

	for (size_t i = 0; i < ev->nchecks; i++) {
		const struct sl_check *c = &ev->checks[i];
		size_t plen = pol.len, rlen = rl.len;
		bool conc = c->spec != NULL && c->spec->algo == SL_ALGO_CONCURRENCY;
		int64_t w = conc ? 0 : ceil_sec(window_ns(c));

		if (sl_check_unlimited(c) || c->spec == NULL || c->spec->algo == SL_ALGO_DENY)
			continue;
		if (pol.len > 0)
			sl_buf_str(&pol, ", ");
		sb_sf_string(&pol, ev->limits[i]->name);
		sl_buf_str(&pol, ";q=");
		sl_buf_u64(&pol, c->res.limit);
		if (conc)
			sl_buf_str(&pol, ";qu=\"concurrent-requests\"");
		if (w > 0) {
			sl_buf_str(&pol, ";w=");
			sl_buf_u64(&pol, (uint64_t)w);
		}
		if (rl.len > 0)
			sl_buf_str(&rl, ", ");
		sb_sf_string(&rl, ev->limits[i]->name);
		sl_buf_str(&rl, ";r=");
		sl_buf_u64(&rl, c->res.remaining);
		sl_buf_str(&rl, ";t=");
		sl_buf_u64(&rl, (uint64_t)ceil_sec(c->res.reset_after));
		if (pol.full || rl.full) {
			pol.len = plen;
			rl.len = rlen;
			break;
		}
	}
	if (pol.len > 0 && !overridden(x, "RateLimit-Policy"))
		emit(arg, (struct sl_str){"RateLimit-Policy", 16}, (struct sl_str){pbuf, pol.len});
	if (rl.len > 0 && !overridden(x, "RateLimit"))
		emit(arg, (struct sl_str){"RateLimit", 9}, (struct sl_str){rbuf, rl.len});
}

static void emit_templates(const struct rctx *x, const struct sl_header_tpl *h, size_t n,
                           sl_header_emit_fn emit, void *arg)
{
	char buf[HDR_MAX];

	for (size_t i = 0; i < n; i++) {
		long len;

		if (h[i].value == NULL)
			continue;
		len = sl_template_render(h[i].value, SL_TPL_HEADER, resolve, (void *)x, buf,
		                         sizeof(buf));
		if (len >= 0)
			emit(arg, (struct sl_str){h[i].name, strlen(h[i].name)},
			     (struct sl_str){buf, (size_t)len});
	}
}

void sl_render_headers(const struct sl_eval *ev, sl_header_emit_fn emit, void *arg)
{
	const struct sl_responses *r = &ev->policy->responses;
	struct rctx x;
	bool xr;

	if (ev->decision.store_error)
		return;
	ctx_init(&x, ev);
	/* x-ratelimit is the default set when nothing else is configured. */
	xr = r->preset_xratelimit || (!r->preset_ietf && r->nheaders == 0);
	if (xr)
		emit_xratelimit(&x, emit, arg);
	if (r->preset_ietf) {
		emit_ietf(&x, emit, arg);
		/* RFC 9110 10.2.3 on a rejection, as the x-ratelimit preset
		 * sends it (and not twice when both presets are on) */
		if (x.rejected && !xr)
			emit_retry_after(&x, emit, arg);
	}
	emit_templates(&x, r->headers, r->nheaders, emit, arg);
	if (x.rejected)
		emit_templates(&x, r->rejected_headers, r->nrejected_headers, emit, arg);
}

bool sl_render_owns(const struct sl_policy *p, struct sl_str name)
{
	const struct sl_responses *r = &p->responses;

	if (name.len == 0)
		return false;
	/* what sl_render_headers emits on an allowed decision (Retry-After of
	 * the preset only comes with a denial, which is never forwarded) */
	if (r->preset_xratelimit || (!r->preset_ietf && r->nheaders == 0))
		for (size_t i = 0; i < sizeof(xratelimit) / sizeof(xratelimit[0]); i++)
			if (xratelimit[i].var != SL_TPL_RETRY_AFTER &&
			    name.len == xratelimit[i].len &&
			    strncasecmp(name.p, xratelimit[i].name, name.len) == 0)
				return true;
	if (r->preset_ietf &&
	    ((name.len == 16 && strncasecmp(name.p, "RateLimit-Policy", 16) == 0) ||
	     (name.len == 9 && strncasecmp(name.p, "RateLimit", 9) == 0)))
		return true;
	for (size_t i = 0; i < r->nheaders; i++)
		if (strlen(r->headers[i].name) == name.len &&
		    strncasecmp(name.p, r->headers[i].name, name.len) == 0)
			return true;
	return false;
}

/* ---- bodies ---- */

static void sb_json_var(struct sl_buf *b, const struct rctx *x, const char *key, unsigned var)
{
	struct sl_tpl_ref ref = {.var = var};
	char buf[HDR_MAX];
	long n = resolve((void *)x, &ref, buf, sizeof(buf));

	if (n < 0)
		return;
	sl_buf_str(b, ",\"");
	sl_buf_str(b, key);
	sl_buf_str(b, "\":");
	if (var == SL_TPL_MESSAGE || var == SL_TPL_DENIED_BY || var == SL_TPL_WINDOW)
		sl_buf_json_string(b, buf, (size_t)n);
	else
		sl_buf_put(b, buf, (size_t)n);
}

static long default_body(const struct rctx *x, char *buf, size_t cap)
{
	struct sl_buf b = {.p = buf, .cap = cap};
	int st = x->ev->decision.status;

	if (x->ev->decision.store_error && st == 503) {
		sl_buf_str(
		        &b,
		        "{\"error\":\"unavailable\",\"message\":\"rate limit store unavailable\"}");
	} else if (x->suspended) {
		sl_buf_str(&b, "{\"error\":\"account_suspended\"}");
	} else if (x->unauthorized) {
		sl_buf_str(&b, "{\"error\":\"unauthorized\"");
		sb_json_var(&b, x, "message", SL_TPL_MESSAGE);
		sl_buf_str(&b, "}");
	} else {
		sl_buf_str(&b, st == 429   ? "{\"error\":\"rate_limited\""
		               : st == 403 ? "{\"error\":\"forbidden\""
		                           : "{\"error\":\"denied\"");
		sb_json_var(&b, x, "message", SL_TPL_MESSAGE);
		sb_json_var(&b, x, "denied_by", SL_TPL_DENIED_BY);
		sb_json_var(&b, x, "limit", SL_TPL_LIMIT);
		sb_json_var(&b, x, "window", SL_TPL_WINDOW);
		sb_json_var(&b, x, "retry_after", SL_TPL_RETRY_AFTER);
		sl_buf_str(&b, "}");
	}
	return b.full ? -1 : (long)b.len;
}

long sl_render_body(const struct sl_eval *ev, char *buf, size_t cap, const char **content_type)
{
	const struct sl_responses *r = &ev->policy->responses;
	const struct sl_template *t = NULL;
	const char *ct = "application/json";
	struct rctx x;
	long n;

	ctx_init(&x, ev);
	if (ev->decision.store_error && ev->decision.status == 503) {
		t = NULL; /* the default "unavailable" body */
	} else if (x.rejected) {
		t = r->rejected_body;
		if (t != NULL && r->rejected_content_type != NULL)
			ct = r->rejected_content_type;
	} else if (x.suspended) {
		t = r->suspended_body;
	} else if (x.unauthorized) {
		t = r->unauthorized_body;
	} else {
		*content_type = NULL;
		return 0;
	}
	if (t != NULL) {
		unsigned mode = strstr(ct, "json") != NULL ? SL_TPL_JSON : SL_TPL_TEXT;

		n = sl_template_render(t, mode, resolve, &x, buf, cap);
		if (n >= 0) {
			*content_type = ct;
			return n;
		}
		/* a variable did not resolve: fall back to the default body */
	}
	*content_type = "application/json";
	return default_body(&x, buf, cap);
}

int64_t sl_check_window_ns(const struct sl_check *c)
{
	return window_ns(c);
}
