/* Lifetime of a compiled policy: shared by every worker thread through an
 * atomic reference count; the last sl_policy_unref frees it. Freeing walks
 * the whole structure and tolerates any field left NULL or zero, so the
 * loader can free a half-built policy after errors with the same code. */
#include <stdlib.h>
#include "policy/config-int.h"

void sl_policy_ref(struct sl_policy *p)
{
	__atomic_fetch_add(&p->refs, 1, __ATOMIC_RELAXED);
}

void sl_policy_unref(struct sl_policy *p)
{
	if (p && __atomic_sub_fetch(&p->refs, 1, __ATOMIC_ACQ_REL) == 0)
		sl_policy_free(p);
}

static void free_limits(struct sl_limit *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(l[i].name);
		for (unsigned k = 0; k < SL_MAX_KEY_PARTS; k++)
			free(l[i].key[k].arg);
		free(l[i].plan_spec);
		free(l[i].plan_limit_id);
		sl_template_free(l[i].message);
	}
	free(l);
}

static void free_headers(struct sl_header_tpl *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(h[i].name);
		sl_template_free(h[i].value);
	}
	free(h);
}

void sl_policy_free(struct sl_policy *p)
{
	if (!p)
		return;
	free(p->path);
	for (size_t i = 0; i < p->nlisteners; i++) {
		free(p->listeners[i].name);
		free(p->listeners[i].listen);
		free(p->listeners[i].upstream);
		cfg_tls_free(&p->listeners[i]);
	}
	free(p->listeners);
	free(p->admin.listen);
	free(p->admin.token);
	free(p->store.snapshot);
	free(p->server.control_socket);
	free(p->store.url);
	free(p->identify.trusted);
	for (size_t i = 0; i < p->identify.nkey_from; i++)
		free(p->identify.key_from[i].name);
	free(p->identify.key_from);
	for (size_t i = 0; i < p->nplans; i++) {
		free(p->plans[i].name);
		free(p->plans[i].title);
	}
	free(p->plans);
	for (size_t i = 0; i < p->naccounts; i++)
		free(p->accounts[i].name);
	free(p->accounts);
	free(p->keys);
	free_limits(p->limits, p->nlimits);
	for (size_t r = 0; r < p->nroutes; r++) {
		free(p->routes[r].name);
		free(p->routes[r].method);
		free(p->routes[r].path);
		free(p->routes[r].query_name);
		free(p->routes[r].query_value);
		free_limits(p->routes[r].limits, p->routes[r].nlimits);
	}
	free(p->routes);
	free_headers(p->responses.headers, p->responses.nheaders);
	free_headers(p->responses.rejected_headers, p->responses.nrejected_headers);
	sl_template_free(p->responses.rejected_body);
	free(p->responses.rejected_content_type);
	sl_template_free(p->responses.unauthorized_body);
	free(p->usage.path);
	free(p->usage.redis_url);
	sl_template_free(p->responses.suspended_body);
	free(p->account_store.path);
	free(p->account_store.key_prefix);
	free(p->responses.usage_path);
	free(p);
}
