/* Loader section `accounts:` (DESIGN.md section 6: where the live account
 * store keeps its data, and the prefix of generated keys), and the compiler
 * of account overrides. The decision to know: an override is compiled with
 * the very parsers a limit's value goes through in YAML (build_spec in
 * config-limits.c), from a one-node YAML document made of the value's JSON
 * text, so "20000/min", 50 or {rate: 900/min, burst: 15} mean exactly what
 * they mean in the file. It runs once when an override is written (and at
 * load and reload of the store), never per request. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "policy/config-int.h"

void cfg_accounts(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"store", "path", "key_prefix", "compact_after", NULL};
	struct sl_accounts_conf *a = &c->p->account_store;
	yaml_node_t *v[4];

	a->line = (unsigned)n->start_mark.line + 1;
	a->col = (unsigned)n->start_mark.column + 1;
	a->store = SL_ACCOUNTS_SQLITE; /* the embedded default once the section is there */
	a->compact_after = SL_ACCOUNTS_COMPACT_AFTER;
	if (!cfg_is_null(n) && !cfg_fields(c, n, "accounts", keys, v))
		return;
	if (cfg_is_null(n))
		v[0] = v[1] = v[2] = v[3] = NULL;
	if (v[0]) {
		const char *s = cfg_scalar(c, v[0], "accounts.store");
		if (s && !strcmp(s, "sqlite"))
			a->store = SL_ACCOUNTS_SQLITE;
		else if (s && !strcmp(s, "redis"))
			a->store = SL_ACCOUNTS_REDIS;
		else if (s && !strcmp(s, "none"))
			a->store = SL_ACCOUNTS_NONE;
		else if (s)
			cfg_err(c, v[0],
			        "unknown accounts.store '%s' (expected sqlite, redis or none)", s);
	}
	if (v[1]) {
		if (a->store != SL_ACCOUNTS_SQLITE)
			cfg_err(c, v[1], "accounts.path applies to store: sqlite only");
		else
			a->path = cfg_relative(c, v[1], cfg_strdup(c, v[1], "accounts.path"));
	}
	if (v[2]) {
		const char *s = cfg_scalar(c, v[2], "accounts.key_prefix");
		bool ok = s != NULL && strlen(s) <= 32;
		for (const char *q = s; ok && *q; q++)
			ok = (*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') ||
			     (*q >= '0' && *q <= '9') || *q == '_' || *q == '-';
		if (s && !ok)
			cfg_err(c, v[2],
			        "accounts.key_prefix '%s': expected at most 32 letters, digits, "
			        "'_' "
			        "or '-'",
			        s);
		else if (s)
			a->key_prefix = strdup(s);
	}
	if (v[3]) {
		if (a->store != SL_ACCOUNTS_REDIS)
			cfg_err(c, v[3], "accounts.compact_after applies to store: redis only");
		else
			cfg_uint(c, v[3], "accounts.compact_after", 0, 1000000000,
			         &a->compact_after);
	}
	if (a->store == SL_ACCOUNTS_REDIS && c->p->store.type != SL_STORE_REDIS)
		cfg_err(c, v[0] ? v[0] : n,
		        "accounts.store: redis uses the store's Redis: set store.type: redis");
	else if (a->store == SL_ACCOUNTS_REDIS && c->p->store.cluster)
		/* the journal's keys are in several slots and its transactions
		 * span them: refused here rather than failing on every write */
		cfg_err(c, v[0] ? v[0] : n,
		        "accounts.store: redis needs a plain Redis, not a cluster (store.cluster: "
		        "true): the accounts journal's transactions span several keys");
	if (a->store == SL_ACCOUNTS_SQLITE && !a->path)
		a->path = cfg_relative(c, n, strdup("accounts.db"));
	if (!a->key_prefix)
		a->key_prefix = strdup("sk_live_");
	if (!a->key_prefix || (a->store == SL_ACCOUNTS_SQLITE && !a->path))
		cfg_err(c, n, "out of memory");
}

static const struct sl_limit *limit_named(const struct sl_policy *p, const char *name)
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

/* The counter id an override uses: the limit's own for the same
 * algorithm (DESIGN.md section 8: (name, algorithm, key parts)), so an
 * override keeps the usage the plan's value counted. */
static uint64_t override_id(const struct sl_limit *l, const struct sl_limit_spec *s)
{
	return cfg_limit_id(l, s);
}

int sl_policy_override(const struct sl_policy *p, const char *limit, const char *value_yaml,
                       size_t len, struct sl_live_override *out, char *err, size_t cap)
{
	const struct sl_limit *l = limit_named(p, limit);
	struct sl_diag diag;
	char where[SL_LIVE_LIMIT_MAX + 16];
	struct cfg c;
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *root;
	bool ok = false;

	if (cap > 0)
		err[0] = '\0';
	if (l == NULL)
		return SL_ENOENT;
	if (strlen(limit) >= sizeof(out->limit)) {
		snprintf(err, cap, "limit name '%s' is too long to override", limit);
		return SL_EINVAL;
	}
	snprintf(where, sizeof(where), "overrides.%s", limit);
	memset(&c, 0, sizeof(c));
	memset(&diag, 0, sizeof(diag));
	c.path = where;
	c.src = value_yaml;
	c.srclen = len;
	c.diag = &diag;
	c.p = (struct sl_policy *)p; /* read only: nothing here writes the policy */
	if (!yaml_parser_initialize(&parser)) {
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)value_yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {
		yaml_parser_delete(&parser);
		snprintf(err, cap, "%s: not a value", where);
		return SL_EINVAL;
	}
	c.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	memset(out, 0, sizeof(*out));
	if (root == NULL)
		cfg_err_at(&c, 1, 1, "empty value");
	else
		ok = cfg_override_spec(&c, l, root, &out->spec) && c.nerr == 0;
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	if (!ok) {
		/* "overrides.NAME:1:3: message" reads as "overrides.NAME: message" */
		const char *m = diag.n > 0 ? diag.msg[0] : "bad value";
		size_t wl = strlen(where);
		if (strncmp(m, where, wl) == 0 && m[wl] == ':') {
			const char *q = strchr(m + wl + 1, ':');
			q = q ? strchr(q + 1, ':') : NULL;
			if (q)
				m = q + 1;
			while (*m == ' ')
				m++;
		}
		snprintf(err, cap, "%s: %s", where, m);
		return SL_EINVAL;
	}
	memcpy(out->limit, limit, strlen(limit) + 1);
	out->limit_id = override_id(l, &out->spec);
	return 0;
}
