/* The admin front end (see admin.h): routing and the bearer token, the
 * config check, /metrics and /healthz. The endpoints live beside it:
 * admin-decide.c (/v1/decide, /v1/release), admin-lease.c (lease tables),
 * admin-resp.c (JSON answers). Requests arrive as views the server parsed;
 * answers are written into the call's body buffer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sluice/error.h>
#include "accounts/accounts.h"
#include "net/admin-int.h"
#include "policy/listen.h"

/* ---- config check ---- */

/* Loopback as bound: the address the listener will bind (a name resolved
 * as the server resolves it), not the spelling. One that does not parse
 * or resolve is not loopback. */
static bool host_is_loopback(const char *listen)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return sl_listen_resolve(listen, &ss, &len, NULL, 0) == 0 && sl_listen_is_loopback(&ss);
}

int sl_admin_conf_check(const struct sl_admin_conf *c, char *err, size_t cap)
{
	if (c->listen == NULL)
		return 0;
	if (!host_is_loopback(c->listen) && (c->token == NULL || c->token[0] == '\0')) {
		if (cap > 0)
			snprintf(err, cap,
			         "admin.listen %s is not a loopback address: set admin.token",
			         c->listen);
		return SL_ECONFIG;
	}
	return 0;
}

/* ---- routing ---- */

static bool str_is(struct sl_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

static const struct sl_header *find_header(const struct sl_admin_req *req, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->nheaders; i++)
		if (req->headers[i].name.len == n &&
		    strncasecmp(req->headers[i].name.p, name, n) == 0)
			return &req->headers[i];
	return NULL;
}

/* Constant-time in the presented token's length. */
static bool token_ok(const struct sl_admin_req *req, const char *token)
{
	const struct sl_header *h = find_header(req, "Authorization");
	size_t tlen = strlen(token), i;
	const char *v;
	size_t vlen;
	unsigned diff;

	if (h == NULL)
		return false;
	v = h->value.p;
	vlen = h->value.len;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	if (vlen < 7 || strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	v += 7;
	vlen -= 7;
	while (vlen > 0 && *v == ' ')
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	diff = (unsigned)(vlen ^ tlen);
	for (i = 0; i < vlen; i++)
		diff |= (unsigned char)v[i] ^ (unsigned char)token[i % (tlen ? tlen : 1)];
	return diff == 0 && tlen > 0;
}

static int handle_metrics(struct sl_admin *a, struct sl_admin_call *c,
                          const struct sl_admin_req *req)
{
	struct sl_store_stats st;
	struct sl_store *s = a->g->stats_store ? a->g->stats_store : a->store;
	long n;

	memset(&st, 0, sizeof(st));
	if (s != NULL && s->ops->stats != NULL)
		s->ops->stats(s, &st);
	sl_admin_usage_gauges(a);
	if (req->policy != NULL) {
		/* static accounts and keys, and what the live store holds now
		 * (it changes without a reload; expired keys leave it) */
		size_t na = 0, nk = 0;
		if (req->policy->live != NULL)
			sl_accounts_published(sl_accounts_of(req->policy->live), &na, &nk);
		sl_metrics_set_gauge(a->g->metrics, SL_GAUGE_ACCOUNTS,
		                     (int64_t)(req->policy->naccounts + na));
		sl_metrics_set_gauge(a->g->metrics, SL_GAUGE_KEYS,
		                     (int64_t)(req->policy->nkeys + nk));
	}
	n = sl_metrics_render(a->g->metrics, s ? &st : NULL, c->resp.body, sizeof(c->resp.body));
	if (n >= 0 && a->g->usage != NULL) {
		size_t u = sl_admin_usage_metrics(a, c->resp.body + n,
		                                  sizeof(c->resp.body) - (size_t)n, req->now);
		n = u > 0 ? n + (long)u : -1; /* 0: they did not fit */
	}
	if (n < 0) {
		/* Many series: once more into a heap buffer (scrapes are rare). */
		size_t cap = (size_t)SL_ADMIN_BODY_MAX * 32;
		char *big = malloc(cap);

		n = big ? sl_metrics_render(a->g->metrics, s ? &st : NULL, big, cap) : -1;
		if (n >= 0)
			n += (long)sl_admin_usage_metrics(a, big + n, cap - (size_t)n, req->now);
		if (n < 0) {
			free(big);
			sl_admin_respond_error(&c->resp, 500, "too_large",
			                       "the metrics do not fit the response");
			return 0;
		}
		sl_admin_respond_owned(&c->resp, 200, sl_admin_ct_prom, big, (size_t)n);
		return 0;
	}
	c->resp.status = 200;
	c->resp.content_type = sl_admin_ct_prom;
	c->resp.len = (size_t)n;
	return 0;
}

/* Endpoints behind the token, first match wins. methods: NULL takes any
 * (the handler answers 405 itself), else a list like "GET HEAD"; allow is
 * the Allow header a 405 sends and hint its message. Paths are patterns
 * (route_hit); a prefix route matches everything under its path too
 * ("/v1/accounts" takes "/v1/accounts/acme/keys"). */
struct route {
	const char *path;
	bool prefix;
	const char *methods;
	const char *allow;
	const char *hint; /* the 405 message */
	sl_admin_handler_fn fn;
};

static const struct route routes[] = {
        {"/v1/accounts/*/usage/history", false, "GET HEAD", "GET, HEAD", "use GET",
         sl_admin_usage_history},
        {"/v1/usage/top", false, "GET HEAD", "GET, HEAD", "use GET", sl_admin_usage_top},
        {"/v1/accounts/*/usage", false, "GET HEAD", "GET, HEAD", "use GET", sl_admin_usage},
        {"/metrics", false, "GET HEAD", "GET, HEAD", "use GET", handle_metrics},
        {"/v1/decide", false, "POST", "POST", "use POST", sl_admin_decide},
        {"/v1/release", false, "POST", "POST", "use POST", sl_admin_release},
        /* accounts and keys last: other /v1/accounts/... routes go above */
        {"/v1/accounts", true, NULL, NULL, NULL, sl_admin_accounts},
        {"/v1/keys", true, NULL, NULL, NULL, sl_admin_keys},
};

/* path matches pattern segment by segment, a "*" segment matching any one
 * non-empty segment; with prefix, deeper paths match too
 * (pattern "/v1/accounts/<*>/usage" written with a bare star takes
 * "/v1/accounts/acme/usage/history"). */
static bool route_hit(struct sl_str path, const char *pattern, bool prefix)
{
	const char *p = path.p, *end = path.p + path.len, *q = pattern;

	while (*q != '\0') {
		if (*q == '*' && (q[1] == '/' || q[1] == '\0')) {
			const char *seg = p;

			while (p < end && *p != '/')
				p++;
			if (p == seg)
				return false;
			q++;
			continue;
		}
		if (p == end || *p != *q)
			return false;
		p++, q++;
	}
	return p == end || (prefix && *p == '/');
}

/* method is one of the space-separated names in list */
static bool method_in(struct sl_str method, const char *list)
{
	const char *p = list;

	while (*p != '\0') {
		size_t n = strcspn(p, " ");

		if (method.len == n && memcmp(method.p, p, n) == 0)
			return true;
		p += n;
		while (*p == ' ')
			p++;
	}
	return false;
}

int sl_admin_handle(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	const struct sl_policy *p = req->policy;
	bool get = str_is(req->method, "GET") || str_is(req->method, "HEAD");

	c->admin = a;
	c->policy = p;
	c->start = uv_hrtime();
	c->kind = K_NONE;
	c->rel_table = NULL;
	c->resp.status = 500;
	c->resp.content_type = sl_admin_ct_json;
	c->resp.nextra = 0;
	c->resp.len = 0;
	sl_admin_call_reset(c);
	if (p != NULL)
		a->lease_ttl = p->admin.lease_ttl > 0 ? p->admin.lease_ttl : LEASE_TTL_DEFAULT;

	if (str_is(req->path, "/healthz")) {
		if (!get) {
			sl_admin_add_extra(&c->resp, "Allow", "GET, HEAD");
			sl_admin_respond_error(&c->resp, 405, "method_not_allowed", "use GET");
			return 0;
		}
		sl_admin_respond_json(&c->resp, 200, "{\"status\":\"ok\"}");
		return 0;
	}
	/* The dashboard's page and scripts hold no data: a browser loads them
	 * without a token, and the page sends it with each fetch (docs/usage.md). */
	if (route_hit(req->path, "/dashboard", true)) {
		if (!get) {
			sl_admin_add_extra(&c->resp, "Allow", "GET, HEAD");
			sl_admin_respond_error(&c->resp, 405, "method_not_allowed", "use GET");
			return 0;
		}
		return sl_admin_dashboard(a, c, req);
	}
	if (p != NULL && p->admin.token != NULL && p->admin.token[0] != '\0' &&
	    !token_ok(req, p->admin.token)) {
		sl_admin_add_extra(&c->resp, "WWW-Authenticate", "Bearer realm=\"sluice-admin\"");
		sl_admin_respond_error(&c->resp, 401, "unauthorized",
		                       "a valid bearer token is required");
		return 0;
	}
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		const struct route *rt = &routes[i];
		bool hit = route_hit(req->path, rt->path, rt->prefix);

		if (!hit)
			continue;
		if (rt->methods != NULL && !method_in(req->method, rt->methods)) {
			sl_admin_add_extra(&c->resp, "Allow", rt->allow);
			sl_admin_respond_error(&c->resp, 405, "method_not_allowed", rt->hint);
			return 0;
		}
		return rt->fn(a, c, req);
	}
	sl_admin_respond_error(&c->resp, 404, "not_found", "no such admin endpoint");
	return 0;
}
