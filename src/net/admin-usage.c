/* GET /v1/accounts/{account}/usage (DESIGN.md section 7): every limit that
 * applies to an account, with what it has left, consuming nothing. The
 * account is found by the identity lookup every request uses
 * (sl_identify), so static YAML accounts and live ones answer alike; the
 * store sees an SL_OP_PEEK batch, which commits nothing in either backend
 * and takes no concurrency slot. Limits keyed by what only a request has
 * (ip, key, route, path, header...) are not shown: docs/usage.md. */
#include <string.h>
#include <sluice/error.h>
#include "net/admin-int.h"

#define ACCOUNT_MAX 256 /* bytes of a decoded account name */

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* The third segment of /v1/accounts/{account}/usage, percent-decoded into
 * out (cap bytes). Returns its length, or -1 for a bad escape, a NUL or a
 * name longer than cap. Routing guaranteed the shape. */
static long account_segment(struct sl_str path, char *out, size_t cap)
{
	static const char pre[] = "/v1/accounts/";
	const char *p = path.p + sizeof(pre) - 1, *end = path.p + path.len;
	size_t n = 0;

	while (p < end && *p != '/') {
		char ch = *p++;

		if (ch == '%') {
			int hi, lo;

			if (end - p < 2 || (hi = hexval(p[0])) < 0 || (lo = hexval(p[1])) < 0)
				return -1;
			ch = (char)(hi << 4 | lo);
			p += 2;
		}
		if (ch == '\0' || n == cap)
			return -1;
		out[n++] = ch;
	}
	return (long)n;
}

static void usage_complete(struct sl_admin_call *c)
{
	struct sl_eval *ev = &c->ev;
	long n;

	sl_eval_finish(ev);
	if (ev->decision.store_error) {
		sl_admin_respond_error(&c->resp, 503, "store_unavailable",
		                       "the counter store did not answer");
		return;
	}
	n = sl_render_usage(ev, c->resp.body, sizeof(c->resp.body));
	if (n < 0) {
		sl_admin_respond_error(&c->resp, 500, "too_large",
		                       "the usage does not fit the response");
		return;
	}
	c->resp.status = 200;
	c->resp.content_type = sl_admin_ct_json;
	c->resp.len = (size_t)n;
}

static void usage_done(struct sl_batch *b)
{
	struct sl_admin_call *c = b->data;
	bool async = c->kind == K_DECIDE_ASYNC;

	usage_complete(c);
	c->kind = K_NONE;
	if (async)
		c->done(c);
}

int sl_admin_usage(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	char name[ACCOUNT_MAX];
	struct sl_request r;
	long n;
	int rc;

	if (req->policy == NULL) {
		sl_admin_respond_error(&c->resp, 503, "no_policy", "no policy loaded");
		return 0;
	}
	n = account_segment(req->path, name, sizeof(name));
	if (n <= 0) {
		sl_admin_respond_error(
		        &c->resp, 400, "bad_account",
		        "the account in the path is empty, too long or badly escaped");
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.method = (struct sl_str){"GET", 3};
	r.path = (struct sl_str){"/", 1};
	r.account = (struct sl_str){name, (size_t)n};
	rc = sl_eval_peek_begin(&c->ev, req->policy, &r, req->now, SL_PEEK_ACCOUNT);
	if (rc < 0) {
		sl_admin_respond_error(&c->resp, 400, "bad_request",
		                       "the account cannot be evaluated");
		return 0;
	}
	if (c->ev.account == NULL && !c->ev.live_found) { /* neither static nor live */
		sl_admin_respond_error(&c->resp, 404, "unknown_account", "no such account");
		return 0;
	}
	c->ev.batch.time = req->now;
	return sl_admin_submit(a, c, req, usage_done, usage_complete);
}
