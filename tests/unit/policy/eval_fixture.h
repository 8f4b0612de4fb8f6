/* A hand-built compiled policy for the policy unit tests (identity, eval,
 * render), shaped like seed 1 plus a few routes, so these tests do not
 * depend on the YAML loader. Also request builders and a fake store that
 * fills check results by hand. Header-only: each test includes it once. */
#ifndef SLUICE_TEST_EVAL_FIXTURE_H
#define SLUICE_TEST_EVAL_FIXTURE_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <sluice/error.h>
#include "policy/eval-int.h"

#define T0 (1700000000LL * SL_NS_PER_SEC) /* a fixed "now" (ns since the epoch) */

enum { PLAN_STANDARD, PLAN_RESELLER, PLAN_FREE, NPLANS };

struct fixture {
	struct sl_policy p;
	struct sl_plan plans[NPLANS];
	struct sl_account accounts[3];
	struct sl_key_entry keys[4];
	struct sl_cidr trusted[3];
	struct sl_key_source key_from[3];
	struct sl_limit limits[4];
	struct sl_limit_spec tier_spec[NPLANS];
	uint64_t tier_id[NPLANS];
	struct sl_route routes[4];
	struct sl_limit oauth_limits[1];
	struct sl_limit batch_limits[1];
};

static inline struct sl_str S(const char *s) {
	return (struct sl_str){s, strlen(s)};
}

static inline void
fx_sha256(const char *key, uint8_t out[32])
{
	unsigned n = 32;

	EVP_Digest(key, strlen(key), out, &n, EVP_sha256(), NULL);
}

static inline int fx_key_cmp(const void *a, const void *b)
{
	return memcmp(((const struct sl_key_entry *)a)->sha256,
	              ((const struct sl_key_entry *)b)->sha256, 32);
}

static inline void fx_rate(struct sl_limit_spec *s, uint64_t n, int64_t period)
{
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_RATE;
	s->n = n;
	s->period = period;
	s->interval = (period + (int64_t)n - 1) / (int64_t)n;
	s->burst = n;
}

static inline void fx_cidr(struct sl_cidr *c, const char *addr, unsigned bits)
{
	memset(c, 0, sizeof(*c));
	if (strchr(addr, ':')) {
		c->family = AF_INET6;
		inet_pton(AF_INET6, addr, c->addr);
	} else {
		c->family = AF_INET;
		inet_pton(AF_INET, addr, c->addr);
	}
	c->bits = (uint8_t)bits;
}

static inline void fx_limit(struct sl_limit *l, const char *name, unsigned index, uint8_t kind,
                            bool before_key, uint64_t n, int64_t period)
{
	memset(l, 0, sizeof(*l));
	l->name = (char *)name;
	l->index = index;
	l->key[0].kind = kind;
	l->nkey = 1;
	l->before_key = before_key;
	if (n > 0)
		fx_rate(&l->spec, n, period);
	l->limit_id = 1000 + index;
	l->status = 429;
}

/* Seed-1 shaped policy:
 *   trusted 10.0.0.0/8, 192.168.1.0/24, 2001:db8::/32
 *   key from header:X-Api-Key, bearer, query:key; required
 *   plans standard, reseller ("Reseller"), free; accounts acme (reseller:
 *   sk_acme, sk_acme2), bob (standard: sk_bob), fred (free: sk_fred)
 *   limits ip 300/min (before key), key 100/min, tier {standard 1000/min,
 *   reseller 5000/min}
 *   routes oauth (POST /oauth/token, ip 30/min), batch (prefix /v1/messages/, cost
 *   1, account 10/min), search (GET /search?mode=deep), any (all, cost 2) */
static inline void fx_init(struct fixture *f)
{
	static const char *keys[] = {"sk_acme", "sk_acme2", "sk_bob", "sk_fred"};
	static const unsigned key_account[] = {0, 0, 1, 2};
	struct sl_policy *p = &f->p;

	memset(f, 0, sizeof(*f));
	f->plans[PLAN_STANDARD] = (struct sl_plan){"standard", "Standard", PLAN_STANDARD};
	f->plans[PLAN_RESELLER] = (struct sl_plan){"reseller", "Reseller", PLAN_RESELLER};
	f->plans[PLAN_FREE] = (struct sl_plan){"free", "Free", PLAN_FREE};
	f->accounts[0] = (struct sl_account){"acme", PLAN_RESELLER};
	f->accounts[1] = (struct sl_account){"bob", PLAN_STANDARD};
	f->accounts[2] = (struct sl_account){"fred", PLAN_FREE};
	for (unsigned i = 0; i < 4; i++) {
		fx_sha256(keys[i], f->keys[i].sha256);
		f->keys[i].account = key_account[i];
	}
	qsort(f->keys, 4, sizeof(f->keys[0]), fx_key_cmp);
	fx_cidr(&f->trusted[0], "10.0.0.0", 8);
	fx_cidr(&f->trusted[1], "192.168.1.0", 24);
	fx_cidr(&f->trusted[2], "2001:db8::", 32);
	f->key_from[0] = (struct sl_key_source){SL_KEYSRC_HEADER, "X-Api-Key"};
	f->key_from[1] = (struct sl_key_source){SL_KEYSRC_BEARER, NULL};
	f->key_from[2] = (struct sl_key_source){SL_KEYSRC_QUERY, "key"};

	fx_limit(&f->limits[0], "ip", 0, SL_DESC_IP, true, 300, SL_NS_PER_MIN);
	fx_limit(&f->limits[1], "key", 1, SL_DESC_KEY, false, 100, SL_NS_PER_MIN);
	fx_limit(&f->limits[2], "tier", 2, SL_DESC_ACCOUNT, false, 0, 0);
	f->limits[2].per_plan = true;
	memset(&f->limits[2].spec, 0, sizeof(f->limits[2].spec));
	fx_rate(&f->tier_spec[PLAN_STANDARD], 1000, SL_NS_PER_MIN);
	fx_rate(&f->tier_spec[PLAN_RESELLER], 5000, SL_NS_PER_MIN);
	f->tier_id[PLAN_STANDARD] = 2001;
	f->tier_id[PLAN_RESELLER] = 2002;
	f->limits[2].plan_spec = f->tier_spec;
	f->limits[2].plan_limit_id = f->tier_id;

	fx_limit(&f->oauth_limits[0], "oauth", 3, SL_DESC_IP, true, 30, SL_NS_PER_MIN);
	fx_limit(&f->batch_limits[0], "batch", 4, SL_DESC_ACCOUNT, false, 10, SL_NS_PER_MIN);
	f->routes[0] = (struct sl_route){.name = "oauth",
	                                 .method = "POST",
	                                 .path_match = SL_PATH_EXACT,
	                                 .path = "/oauth/token",
	                                 .path_len = 12,
	                                 .cost = 1,
	                                 .limits = f->oauth_limits,
	                                 .nlimits = 1};
	f->routes[1] = (struct sl_route){.name = "batch",
	                                 .path_match = SL_PATH_PREFIX,
	                                 .path = "/v1/messages/",
	                                 .path_len = 13,
	                                 .cost = 1,
	                                 .limits = f->batch_limits,
	                                 .nlimits = 1};
	f->routes[2] = (struct sl_route){.name = "search",
	                                 .method = "GET",
	                                 .path_match = SL_PATH_EXACT,
	                                 .path = "/search",
	                                 .path_len = 7,
	                                 .query_name = "mode",
	                                 .query_value = "deep",
	                                 .cost = 5};
	f->routes[3] = (struct sl_route){.name = "any", .path_match = SL_PATH_ANY, .cost = 2};

	p->plans = f->plans;
	p->nplans = NPLANS;
	p->accounts = f->accounts;
	p->naccounts = 3;
	p->keys = f->keys;
	p->nkeys = 4;
	p->identify.trusted = f->trusted;
	p->identify.ntrusted = 3;
	p->identify.key_from = f->key_from;
	p->identify.nkey_from = 3;
	p->identify.key_required = true;
	p->limits = f->limits;
	p->nlimits = 3;
	p->routes = f->routes;
	p->nroutes = 4;
	p->responses.rejected_status = 429;
}

/* A request under construction: up to 8 headers, a peer address. */
struct freq {
	struct sl_request r;
	struct sl_header h[8];
	struct sockaddr_storage ss;
};

static inline void freq_init(struct freq *q, const char *method, const char *path,
                             const char *query)
{
	memset(q, 0, sizeof(*q));
	q->r.method = S(method);
	q->r.path = S(path);
	q->r.query = S(query ? query : "");
	q->r.headers = q->h;
}

static inline void freq_peer(struct freq *q, const char *addr)
{
	memset(&q->ss, 0, sizeof(q->ss));
	if (strchr(addr, ':')) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&q->ss;

		a->sin6_family = AF_INET6;
		inet_pton(AF_INET6, addr, &a->sin6_addr);
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&q->ss;

		a->sin_family = AF_INET;
		inet_pton(AF_INET, addr, &a->sin_addr);
	}
	q->r.peer = (const struct sockaddr *)&q->ss;
}

static inline void freq_header(struct freq *q, const char *name, const char *value)
{
	q->h[q->r.nheaders++] = (struct sl_header){S(name), S(value)};
}

/* Index of the check from limit `name`, or -1. */
static inline int fx_check(const struct sl_eval *ev, const char *name)
{
	for (size_t i = 0; i < ev->nchecks; i++)
		if (strcmp(ev->checks[i].name, name) == 0)
			return (int)i;
	return -1;
}

/* Fill every check's result as an allowing store would, remaining given. */
static inline void fx_result(struct sl_eval *ev, const char *name, uint64_t limit,
                             uint64_t remaining, int64_t reset_after, int64_t window)
{
	int i = fx_check(ev, name);

	if (i < 0)
		return;
	ev->checks[i].res = (struct sl_result){.outcome = SL_ALLOWED,
	                                       .limit = limit,
	                                       .remaining = remaining,
	                                       .reset_after = reset_after,
	                                       .window = window};
}

#endif
