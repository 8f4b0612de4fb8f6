/* The peek answer of DESIGN.md section 7, shared by the admin endpoint
 * GET /v1/accounts/{account}/usage and the gateway's responses.usage_path:
 * every limit a peek found (sl_eval_peek_begin), rendered from the store's
 * cost-0 results. The numbers are those the rate-limit headers show, so a
 * client sees the same remaining/reset here as on its next response. */
#include <string.h>
#include "core/buf.h"
#include "policy/eval-int.h"

static int64_t ceil_sec(int64_t ns)
{
	if (ns <= 0)
		return 0;
	return ns / SL_NS_PER_SEC + (ns % SL_NS_PER_SEC != 0);
}

static void put_name(struct sl_buf *w, const char *s, size_t n)
{
	if (s == NULL)
		sl_buf_str(w, "null");
	else
		sl_buf_json_string(w, s, n);
}

static void put_limit(struct sl_buf *w, const struct sl_eval *ev, size_t i)
{
	const struct sl_check *c = &ev->checks[i];
	const char *name = ev->limits[i] != NULL ? ev->limits[i]->name : c->name;
	int64_t win = sl_check_window_ns(c); /* ns */

	sl_buf_str(w, "{\"name\":");
	put_name(w, name, name ? strlen(name) : 0);
	if (sl_check_unlimited(c)) {
		sl_buf_str(w, ",\"limit\":null,\"remaining\":null,\"reset\":null,"
		              "\"window_seconds\":null,\"unlimited\":true}");
		return;
	}
	sl_buf_str(w, ",\"limit\":");
	sl_buf_u64(w, c->res.limit);
	sl_buf_str(w, ",\"remaining\":");
	sl_buf_u64(w, c->res.remaining);
	sl_buf_str(w, ",\"reset\":");
	sl_buf_i64(w,
	           ceil_sec(ev->decision.now + (c->res.reset_after > 0 ? c->res.reset_after : 0)));
	sl_buf_str(w, ",\"window_seconds\":");
	if (win > 0)
		sl_buf_i64(w, ceil_sec(win));
	else
		sl_buf_str(w, "null");
	sl_buf_str(w, ",\"unlimited\":false}");
}

long sl_render_usage(const struct sl_eval *ev, char *buf, size_t cap)
{
	struct sl_buf w;

	sl_buf_init(&w, buf, cap);
	sl_buf_str(&w, "{\"account\":");
	put_name(&w, ev->account_name.len ? ev->account_name.p : NULL, ev->account_name.len);
	sl_buf_str(&w, ",\"plan\":");
	put_name(&w, ev->plan ? ev->plan->name : NULL, ev->plan ? strlen(ev->plan->name) : 0);
	sl_buf_str(&w, ",\"limits\":[");
	for (size_t i = 0; i < ev->nchecks; i++) {
		if (i > 0)
			sl_buf_put(&w, ",", 1);
		put_limit(&w, ev, i);
	}
	sl_buf_str(&w, "]}");
	return w.full ? -1 : (long)w.len;
}
