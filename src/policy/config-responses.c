/* Loader section `responses` (headers on every decided response, the
 * rejection and the 401) and the final pass over every template of the
 * file: {limits.NAME.*} references are resolved to the named limit's
 * sl_limit.index here, after all limits and routes are known, because a
 * template may name a limit declared further down. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "policy/config-int.h"

static void header_map(struct cfg *c, yaml_node_t *n, const char *what, struct sl_header_tpl **out,
                       size_t *nout)
{
	if (!cfg_is_map(n)) {
		cfg_err(c, n, "%s must be a mapping of header name to template", what);
		return;
	}
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	*out = calloc(cnt ? cnt : 1, sizeof(**out));
	if (!*out) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
		yaml_node_t *k = cfg_node(c, pr->key), *v = cfg_node(c, pr->value);
		const char *name = cfg_scalar(c, k, "header name");
		if (!name)
			continue;
		if (!cfg_http_token(name)) {
			cfg_err(c, k, "bad header name '%s'", name);
			continue;
		}
		for (size_t j = 0; j < *nout; j++)
			if (!strcasecmp((*out)[j].name, name))
				cfg_err(c, k, "header '%s' given twice in %s", name, what);
		if (v->type == YAML_SCALAR_NODE &&
		    strpbrk((const char *)v->data.scalar.value, "\r\n")) {
			cfg_err(c, v, "header '%s': a header value cannot contain a line break",
			        name);
			continue;
		}
		struct sl_template *t = cfg_template(c, v, "header value", false);
		if (!t)
			continue;
		struct sl_header_tpl *h = &(*out)[(*nout)++];
		h->value = t;
		if (!(h->name = strdup(name)))
			cfg_err(c, k, "out of memory");
	}
}

static void preset(struct cfg *c, yaml_node_t *n)
{
	struct sl_responses *r = &c->p->responses;
	const char *s = cfg_scalar(c, n, "preset");
	if (!s)
		return;
	if (!strcmp(s, "ietf"))
		r->preset_ietf = true;
	else if (!strcmp(s, "x-ratelimit"))
		r->preset_xratelimit = true;
	else if (strcmp(s, "none") != 0)
		cfg_err(c, n, "unknown preset '%s' (expected ietf, x-ratelimit or none)", s);
}

/* responses.usage_path: an origin-form path ("/rate_limit"), compared
 * byte for byte with the request's path (without its query). */
static void usage_path(struct cfg *c, yaml_node_t *n)
{
	char *s = cfg_strdup(c, n, "usage_path");

	if (s == NULL)
		return;
	if (s[0] != '/' || strpbrk(s, "?# \t\r\n") != NULL) {
		cfg_err(c, n, "usage_path must be a path starting with '/' (no query, no blanks)");
		free(s);
		return;
	}
	c->p->responses.usage_path = s;
}

void cfg_responses(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"preset",     "headers",   "rejected", "unauthorized",
	                                   "usage_path", "suspended", NULL};
	static const char *const rkeys[] = {"status", "headers", "body", "content_type", NULL};
	static const char *const ukeys[] = {"body", NULL};
	yaml_node_t *v[6], *rv[4], *uv[1];
	struct sl_responses *r = &c->p->responses;
	if (!cfg_fields(c, n, "responses", keys, v))
		return;
	if (cfg_is_seq(v[0])) {
		for (yaml_node_item_t *it = v[0]->data.sequence.items.start;
		     it < v[0]->data.sequence.items.top; it++)
			preset(c, cfg_node(c, *it));
	} else if (v[0]) {
		preset(c, v[0]);
	} else if (!v[1]) {
		r->preset_xratelimit = true; /* the default when nothing is said */
	}
	if (v[1] && !cfg_is_null(v[1]))
		header_map(c, v[1], "responses.headers", &r->headers, &r->nheaders);
	if (v[2] && !cfg_is_null(v[2]) && cfg_fields(c, v[2], "responses.rejected", rkeys, rv)) {
		uint64_t st;
		if (rv[0] && cfg_uint(c, rv[0], "rejected.status", 400, 599, &st))
			r->rejected_status = (int)st;
		if (rv[1] && !cfg_is_null(rv[1]))
			header_map(c, rv[1], "responses.rejected.headers", &r->rejected_headers,
			           &r->nrejected_headers);
		if (rv[2])
			r->rejected_body = cfg_template(c, rv[2], "rejected.body", false);
		if (rv[3]) {
			free(r->rejected_content_type);
			r->rejected_content_type = cfg_strdup(c, rv[3], "rejected.content_type");
			if (r->rejected_content_type && strpbrk(r->rejected_content_type, "\r\n"))
				cfg_err(c, rv[3], "content_type cannot contain a line break");
		}
	}
	/* unauthorized and suspended: a body template, written as the value
	 * itself (DESIGN 6: `responses.suspended` is a template) or as
	 * {body: ...} */
	if (v[3] && v[3]->type == YAML_SCALAR_NODE && !cfg_is_null(v[3]))
		r->unauthorized_body = cfg_template(c, v[3], "responses.unauthorized", false);
	else if (v[3] && !cfg_is_null(v[3]) &&
	         cfg_fields(c, v[3], "responses.unauthorized", ukeys, uv) && uv[0])
		r->unauthorized_body = cfg_template(c, uv[0], "unauthorized.body", false);
	if (v[4] && !cfg_is_null(v[4]))
		usage_path(c, v[4]);
	if (v[5] && v[5]->type == YAML_SCALAR_NODE && !cfg_is_null(v[5]))
		r->suspended_body = cfg_template(c, v[5], "responses.suspended", false);
	else if (v[5] && !cfg_is_null(v[5]) &&
	         cfg_fields(c, v[5], "responses.suspended", ukeys, uv) && uv[0])
		r->suspended_body = cfg_template(c, uv[0], "suspended.body", false);
}

static const struct sl_limit *find_limit(const struct sl_policy *p, const char *name)
{
	for (size_t i = 0; i < p->nlimits; i++)
		if (p->limits[i].name && !strcmp(p->limits[i].name, name))
			return &p->limits[i];
	for (size_t r = 0; r < p->nroutes; r++)
		for (size_t i = 0; i < p->routes[r].nlimits; i++)
			if (p->routes[r].limits[i].name &&
			    !strcmp(p->routes[r].limits[i].name, name))
				return &p->routes[r].limits[i];
	return NULL;
}

void cfg_resolve_templates(struct cfg *c)
{
	for (size_t i = 0; i < c->ntpls; i++) {
		size_t n;
		struct sl_tpl_ref *refs = sl_template_refs(c->tpls[i].t, &n);
		for (size_t k = 0; k < n; k++) {
			struct sl_tpl_ref *ref = &refs[k];
			if (ref->var == SL_TPL_MESSAGE && c->tpls[i].in_message) {
				cfg_err_in_scalar(c, c->tpls[i].node, ref->offset,
				                  "a limit message cannot contain {message}");
			} else if (ref->var == SL_TPL_NAMED) {
				const struct sl_limit *l = find_limit(c->p, ref->name);
				if (l)
					ref->limit_index = l->index;
				else
					cfg_err_in_scalar(
					        c, c->tpls[i].node, ref->offset,
					        "template names limit '%s', which does not "
					        "exist",
					        ref->name);
			}
		}
	}
}
