/* Admin answers: the JSON responses every endpoint writes into the call's
 * body buffer, and bodies larger than it (account pages, the dashboard). */
#include <stdlib.h>
#include <string.h>
#include "net/admin-int.h"

const char sl_admin_ct_json[] = "application/json";
const char sl_admin_ct_prom[] = "text/plain; version=0.0.4; charset=utf-8";

void sl_admin_jw_cstr(struct sl_buf *w, const char *s)
{
	sl_buf_json_string(w, s, strlen(s));
}

void sl_admin_respond_json(struct sl_admin_resp *r, int status, const char *body)
{
	size_t n = strlen(body);

	if (n > sizeof(r->body))
		n = sizeof(r->body);
	r->status = status;
	r->content_type = sl_admin_ct_json;
	memcpy(r->body, body, n);
	r->len = n;
}

void sl_admin_respond_error(struct sl_admin_resp *r, int status, const char *code, const char *msg)
{
	struct sl_buf w = {.p = r->body, .cap = sizeof(r->body)};

	sl_buf_str(&w, "{\"error\":");
	sl_admin_jw_cstr(&w, code);
	sl_buf_str(&w, ",\"message\":");
	sl_admin_jw_cstr(&w, msg);
	sl_buf_str(&w, "}");
	r->status = status;
	r->content_type = sl_admin_ct_json;
	r->len = w.full ? 0 : w.len;
}

void sl_admin_respond_owned(struct sl_admin_resp *r, int status, const char *content_type, char *p,
                            size_t len)
{
	free(r->heap);
	r->heap = p;
	r->status = status;
	r->content_type = content_type;
	r->len = len;
}

void sl_admin_add_extra(struct sl_admin_resp *r, const char *name, const char *value)
{
	if (r->nextra >= SL_ADMIN_MAX_EXTRA)
		return;
	r->extra[r->nextra].name = (struct sl_str){name, strlen(name)};
	r->extra[r->nextra].value = (struct sl_str){value, strlen(value)};
	r->nextra++;
}

cJSON *sl_admin_parse_object(struct sl_admin_resp *r, const struct sl_admin_req *req)
{
	cJSON *root = cJSON_ParseWithLength(req->body.p ? req->body.p : "", req->body.len);

	if (root == NULL || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		sl_admin_respond_error(r, 400, "bad_json", "the body must be a JSON object");
		return NULL;
	}
	return root;
}

const char *sl_admin_resp_data(const struct sl_admin_resp *r)
{
	return r->heap != NULL ? r->heap : r->body;
}

void sl_admin_call_reset(struct sl_admin_call *c)
{
	free(c->resp.heap);
	c->resp.heap = NULL;
}
