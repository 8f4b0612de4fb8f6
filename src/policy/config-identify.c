/* Loader sections that say who a request is: `plans`, and `identify` (the
 * trusted proxies, where the API key comes from, and the embedded accounts).
 * API keys never survive the load as text: each is hashed with SHA-256 the
 * moment it is read, and the table of hashes is sorted so identity.c finds
 * a key with bsearch over struct sl_key_entry. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/sha.h>
#include "policy/config-int.h"

void cfg_plans(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"title", NULL};
	struct sl_policy *p = c->p;
	if (!cfg_is_map(n)) {
		cfg_err(c, n, "plans must be a mapping of plan name to {title}");
		return;
	}
	size_t cnt = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
	p->plans = calloc(cnt ? cnt : 1, sizeof(*p->plans));
	if (!p->plans) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_pair_t *pr = &n->data.mapping.pairs.start[i];
		yaml_node_t *k = cfg_node(c, pr->key), *v = cfg_node(c, pr->value), *f[1];
		char *name;
		if (!cfg_name(c, k, "plan name", &name))
			continue;
		if (cfg_plan_index(p, name) >= 0) {
			cfg_err(c, k, "duplicate plan '%s'", name);
			free(name);
			continue;
		}
		struct sl_plan *pl = &p->plans[p->nplans];
		pl->name = name;
		pl->index = (unsigned)p->nplans++;
		if (!cfg_is_null(v) && cfg_fields(c, v, "plan", keys, f) && f[0])
			pl->title = cfg_strdup(c, f[0], "plan title");
		if (!pl->title) {
			pl->title = strdup(name);
			if (!pl->title)
				cfg_err(c, k, "out of memory");
		}
	}
}

/* "a.b.c.d[/n]" or "v6[/n]"; host bits must be zero. */
static bool parse_cidr(const char *s, struct sl_cidr *out)
{
	char buf[64];
	const char *slash = strchr(s, '/');
	size_t hl = slash ? (size_t)(slash - s) : strlen(s);
	if (hl == 0 || hl >= sizeof(buf))
		return false;
	memcpy(buf, s, hl);
	buf[hl] = '\0';
	memset(out, 0, sizeof(*out));
	unsigned maxbits;
	if (inet_pton(AF_INET, buf, out->addr) == 1) {
		out->family = AF_INET;
		maxbits = 32;
	} else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
		out->family = AF_INET6;
		maxbits = 128;
	} else {
		return false;
	}
	unsigned bits = maxbits;
	if (slash) {
		const char *b = slash + 1;
		if (!*b || strlen(b) > 3)
			return false;
		bits = 0;
		for (; *b; b++) {
			if (*b < '0' || *b > '9')
				return false;
			bits = bits * 10 + (unsigned)(*b - '0');
		}
		if (bits > maxbits)
			return false;
	}
	out->bits = (uint8_t)bits;
	for (unsigned i = bits; i < maxbits; i++)
		if (out->addr[i / 8] & (0x80 >> (i % 8)))
			return false;
	return true;
}

static void identify_ip(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"trusted_proxies", "ipv6_prefix", NULL};
	yaml_node_t *v[2];
	struct sl_identify_conf *id = &c->p->identify;
	uint64_t bits;
	if (!cfg_fields(c, n, "identify.ip", keys, v))
		return;
	if (v[1] && cfg_uint(c, v[1], "identify.ip.ipv6_prefix (bits)", 1, 128, &bits))
		id->ipv6_prefix = (uint8_t)bits;
	if (!v[0])
		return;
	if (!cfg_is_seq(v[0])) {
		cfg_err(c, v[0], "identify.ip.trusted_proxies must be a list of CIDRs");
		return;
	}
	size_t cnt = (size_t)(v[0]->data.sequence.items.top - v[0]->data.sequence.items.start);
	id->trusted = calloc(cnt ? cnt : 1, sizeof(*id->trusted));
	if (!id->trusted) {
		cfg_err(c, v[0], "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, v[0]->data.sequence.items.start[i]);
		const char *s = cfg_scalar(c, it, "trusted proxy");
		if (!s)
			continue;
		if (!parse_cidr(s, &id->trusted[id->ntrusted]))
			cfg_err(c, it,
			        "bad CIDR '%s' (expected an IPv4 or IPv6 address with an optional "
			        "/prefix and no host bits set, e.g. 10.0.0.0/8 or ::1/128)",
			        s);
		else
			id->ntrusted++;
	}
}

static void identify_key(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"from", "required", NULL};
	yaml_node_t *v[2];
	struct sl_identify_conf *id = &c->p->identify;
	if (!cfg_fields(c, n, "identify.key", keys, v))
		return;
	if (v[1] && cfg_bool(c, v[1], "identify.key.required", &id->key_required))
		c->key_required_set = true;
	if (!v[0])
		return;
	if (!cfg_is_seq(v[0])) {
		cfg_err(c, v[0],
		        "identify.key.from must be a list of \"header:NAME\", \"bearer\" or "
		        "\"query:NAME\"");
		return;
	}
	size_t cnt = (size_t)(v[0]->data.sequence.items.top - v[0]->data.sequence.items.start);
	id->key_from = calloc(cnt ? cnt : 1, sizeof(*id->key_from));
	if (!id->key_from) {
		cfg_err(c, v[0], "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, v[0]->data.sequence.items.start[i]);
		const char *s = cfg_scalar(c, it, "key source");
		if (!s)
			continue;
		struct sl_key_source *ks = &id->key_from[id->nkey_from];
		const char *arg = NULL;
		if (!strcmp(s, "bearer"))
			ks->kind = SL_KEYSRC_BEARER;
		else if (!strncmp(s, "header:", 7))
			ks->kind = SL_KEYSRC_HEADER, arg = s + 7;
		else if (!strncmp(s, "query:", 6))
			ks->kind = SL_KEYSRC_QUERY, arg = s + 6;
		else {
			cfg_err(c, it,
			        "unknown key source '%s' (expected \"header:NAME\", \"bearer\" or "
			        "\"query:NAME\")",
			        s);
			continue;
		}
		if (arg && !cfg_http_token(arg)) {
			cfg_err(c, it,
			        "key source '%s': NAME must be a non-empty header or query name",
			        s);
			continue;
		}
		if (arg && !(ks->name = strdup(arg))) {
			cfg_err(c, it, "out of memory");
			continue;
		}
		id->nkey_from++;
	}
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(((const struct sl_key_entry *)a)->sha256,
	              ((const struct sl_key_entry *)b)->sha256, 32);
}

static bool parse_sha256_hex(const char *s, uint8_t out[32])
{
	if (strlen(s) != 64)
		return false;
	for (int i = 0; i < 64; i++) {
		char ch = s[i];
		int v = ch >= '0' && ch <= '9'   ? ch - '0'
		        : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10
		        : ch >= 'A' && ch <= 'F' ? ch - 'A' + 10
		                                 : -1;
		if (v < 0)
			return false;
		if (i % 2 == 0)
			out[i / 2] = (uint8_t)(v << 4);
		else
			out[i / 2] |= (uint8_t)v;
	}
	return true;
}

static void identify_accounts(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"account", "plan", "keys", NULL};
	struct sl_policy *p = c->p;
	if (!cfg_is_seq(n)) {
		cfg_err(c, n, "identify.accounts must be a list of {account, plan, keys}");
		return;
	}
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	size_t nkeys = 0;
	p->accounts = calloc(cnt ? cnt : 1, sizeof(*p->accounts));
	if (!p->accounts) {
		cfg_err(c, n, "out of memory");
		return;
	}
	/* count keys first so the table is allocated once */
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, n->data.sequence.items.start[i]), *v[3];
		if (!cfg_is_map(it))
			continue;
		for (yaml_node_pair_t *pr = it->data.mapping.pairs.start;
		     pr < it->data.mapping.pairs.top; pr++) {
			yaml_node_t *k = cfg_node(c, pr->key), *kv = cfg_node(c, pr->value);
			if (k->type == YAML_SCALAR_NODE &&
			    !strcmp((char *)k->data.scalar.value, "keys") && cfg_is_seq(kv))
				nkeys += (size_t)(kv->data.sequence.items.top -
				                  kv->data.sequence.items.start);
		}
		(void)v;
	}
	p->keys = calloc(nkeys ? nkeys : 1, sizeof(*p->keys));
	if (!p->keys) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, n->data.sequence.items.start[i]), *v[3];
		if (!cfg_fields(c, it, "account", keys, v))
			continue;
		size_t ai = p->naccounts++;
		struct sl_account *a = &p->accounts[ai];
		if (!v[0])
			cfg_err(c, it, "account: missing required key 'account' (its name)");
		else if ((a->name = cfg_strdup(c, v[0], "account"))) {
			for (size_t j = 0; j < ai; j++)
				if (p->accounts[j].name && !strcmp(p->accounts[j].name, a->name))
					cfg_err(c, v[0], "duplicate account '%s'", a->name);
		}
		if (!v[1]) {
			cfg_err(c, it, "account: missing required key 'plan'");
		} else {
			const char *pl = cfg_scalar(c, v[1], "plan");
			int pi = pl ? cfg_plan_index(p, pl) : -1;
			if (pl && pi < 0)
				cfg_err(c, v[1], "unknown plan '%s' (declare it under plans:)", pl);
			a->plan = pi < 0 ? 0 : (unsigned)pi;
		}
		if (!v[2])
			continue;
		if (!cfg_is_seq(v[2])) {
			cfg_err(c, v[2], "account keys must be a list of strings");
			continue;
		}
		for (yaml_node_item_t *k = v[2]->data.sequence.items.start;
		     k < v[2]->data.sequence.items.top; k++) {
			yaml_node_t *kn = cfg_node(c, *k);
			const char *ks = cfg_scalar(c, kn, "API key");
			if (!ks)
				continue;
			struct sl_key_entry *e = &p->keys[p->nkeys];
			if (!strncmp(ks, "sha256:", 7)) {
				/* the key's digest, so no plaintext key sits in the file */
				if (!parse_sha256_hex(ks + 7, e->sha256)) {
					cfg_err(c, kn,
					        "API key 'sha256:...': expected 64 hex digits "
					        "after "
					        "sha256:");
					continue;
				}
			} else {
				SHA256((const unsigned char *)ks, strlen(ks), e->sha256);
			}
			e->account = (unsigned)ai;
			for (size_t j = 0; j < p->nkeys; j++)
				if (!memcmp(p->keys[j].sha256, e->sha256, 32))
					cfg_err(c, kn,
					        "API key listed twice (first for account '%s')",
					        p->accounts[p->keys[j].account].name
					                ? p->accounts[p->keys[j].account].name
					                : "?");
			p->nkeys++;
		}
	}
	qsort(p->keys, p->nkeys, sizeof(*p->keys), key_cmp);
}

void cfg_identify(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"ip", "key", "accounts", NULL};
	yaml_node_t *v[3] = {NULL, NULL, NULL};
	if (n && !cfg_is_null(n) && cfg_fields(c, n, "identify", keys, v)) {
		if (v[0] && !cfg_is_null(v[0]))
			identify_ip(c, v[0]);
		if (v[1] && !cfg_is_null(v[1]))
			identify_key(c, v[1]);
		if (v[2] && !cfg_is_null(v[2]))
			identify_accounts(c, v[2]);
	}
	struct sl_identify_conf *id = &c->p->identify;
	if (id->nkey_from == 0 && !id->key_from) {
		/* default: X-Api-Key header, then Authorization: Bearer */
		id->key_from = calloc(2, sizeof(*id->key_from));
		if (!id->key_from || !(id->key_from[0].name = strdup("X-Api-Key"))) {
			cfg_err(c, n, "out of memory");
			return;
		}
		id->key_from[0].kind = SL_KEYSRC_HEADER;
		id->key_from[1].kind = SL_KEYSRC_BEARER;
		id->nkey_from = 2;
	}
}

static bool keyed_on_identity(const struct sl_limit *l, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (l[i].per_plan)
			return true;
		for (unsigned k = 0; k < l[i].nkey; k++)
			if (l[i].key[k].kind == SL_DESC_KEY ||
			    l[i].key[k].kind == SL_DESC_ACCOUNT || l[i].key[k].kind == SL_DESC_PLAN)
				return true;
	}
	return false;
}

void cfg_identify_finish(struct cfg *c)
{
	struct sl_policy *p = c->p;
	if (c->key_required_set)
		return;
	bool need = keyed_on_identity(p->limits, p->nlimits);
	for (size_t r = 0; r < p->nroutes && !need; r++)
		need = keyed_on_identity(p->routes[r].limits, p->routes[r].nlimits);
	p->identify.key_required = need;
}
