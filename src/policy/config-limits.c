/* Loader sections `limits` and `routes`: each limit compiles to one
 * struct sl_limit_spec (or one per plan for a per-plan map) through the
 * core spec builders of <sluice/algo.h>. The decision a reader must know is
 * the limit_id, a counter's identity (DESIGN.md section 8): an XXH3 hash of
 * (limit name, algorithm, key descriptors) and nothing else, the same for
 * every plan of a per-plan limit. So a plan change, an override or an edit
 * of a limit's numbers (also through a reload) keeps what was used, and
 * only a new algorithm or new key descriptors start it fresh. One number
 * is identity too: a sliding window's period, whose windows are the grid
 * its two counts belong to (a count of one grid cannot be read in
 * another's). The core algorithms read a state under changed numbers
 * soundly (a rate limit's backlog is rescaled to the new interval, see
 * gcra.c). */
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include "policy/config-int.h"
#include "policy/normalize.h"
#include "policy/units.h"

enum {
	F_NAME,
	F_KEY,
	F_RATE,
	F_BURST,
	F_QUEUE,
	F_QUOTA,
	F_TZ,
	F_SLIDING,
	F_CONC,
	F_LEASE,
	F_STATUS,
	F_MESSAGE,
	F_COUNT
};
static const char *const limit_keys[] = {"name",   "key",       "rate",    "burst",       "queue",
                                         "quota",  "tz_offset", "sliding", "concurrency", "lease",
                                         "status", "message",   NULL};

static const struct {
	const char *name;
	uint8_t kind;
	bool before_key;
} desc_names[] = {
        {"ip", SL_DESC_IP, true},
        {"key", SL_DESC_KEY, false},
        {"account", SL_DESC_ACCOUNT, false},
        {"plan", SL_DESC_PLAN, false},
        {"route", SL_DESC_ROUTE, true},
        {"method", SL_DESC_METHOD, true},
        {"path", SL_DESC_PATH, true},
        {"host", SL_DESC_HOST, true},
        {"global", SL_DESC_GLOBAL, true},
};

static bool parse_desc(struct cfg *c, const yaml_node_t *n, struct sl_desc *d, bool *pre)
{
	const char *s = cfg_scalar(c, n, "key descriptor");
	if (!s)
		return false;
	for (size_t i = 0; i < sizeof(desc_names) / sizeof(desc_names[0]); i++) {
		if (!strcmp(s, desc_names[i].name)) {
			d->kind = desc_names[i].kind;
			*pre = desc_names[i].before_key;
			return true;
		}
	}
	const char *arg = NULL;
	if (!strncmp(s, "header:", 7))
		d->kind = SL_DESC_HEADER, arg = s + 7;
	else if (!strncmp(s, "query:", 6))
		d->kind = SL_DESC_QUERY, arg = s + 6;
	if (!arg) {
		cfg_err(c, n,
		        "unknown key descriptor '%s' (expected ip, key, account, plan, route, "
		        "method, path, host, header:NAME, query:NAME or global)",
		        s);
		return false;
	}
	if (!*arg || strpbrk(arg, " \t\r\n:")) {
		cfg_err(c, n, "key descriptor '%s': NAME must be a non-empty name", s);
		return false;
	}
	*pre = true;
	d->arg = strdup(arg);
	if (!d->arg) {
		cfg_err(c, n, "out of memory");
		return false;
	}
	return true;
}

static void parse_key(struct cfg *c, const yaml_node_t *n, struct sl_limit *l)
{
	bool pre_all = true, pre;
	if (cfg_is_seq(n)) {
		size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
		if (cnt == 0 || cnt > SL_MAX_KEY_PARTS) {
			cfg_err(c, n, "key must list 1 to %d descriptors", SL_MAX_KEY_PARTS);
			return;
		}
		for (size_t i = 0; i < cnt; i++) {
			yaml_node_t *it = cfg_node(c, n->data.sequence.items.start[i]);
			if (parse_desc(c, it, &l->key[l->nkey], &pre)) {
				l->nkey++;
				pre_all = pre_all && pre;
			}
		}
	} else if (parse_desc(c, n, &l->key[0], &pre)) {
		l->nkey = 1;
		pre_all = pre;
	}
	l->before_key = pre_all && l->nkey > 0;
}

uint64_t cfg_limit_id(const struct sl_limit *l, const struct sl_limit_spec *s)
{
	unsigned char buf[512];
	size_t n = 0;
#define PUT(ptr, len)                                                                              \
	do {                                                                                       \
		size_t len_ = (len);                                                               \
		if (n + len_ <= sizeof(buf)) {                                                     \
			memcpy(buf + n, (ptr), len_);                                              \
			n += len_;                                                                 \
		}                                                                                  \
	} while (0)
	PUT(l->name, strlen(l->name) + 1);
	for (unsigned i = 0; i < l->nkey; i++) {
		PUT(&l->key[i].kind, 1);
		if (l->key[i].arg)
			PUT(l->key[i].arg, strlen(l->key[i].arg));
		PUT("", 1);
	}
	PUT(&s->algo, sizeof(s->algo));
	if (s->algo == SL_ALGO_SLIDING)
		PUT(&s->period, sizeof(s->period));
#undef PUT
	uint64_t h = XXH3_64bits(buf, n);
	return h ? h : 1; /* 0 stays "no limit here" */
}

/* The node that applies to plan `plan` (NULL: not per-plan) from a value
 * that is a scalar or a per-plan map. */
static yaml_node_t *for_plan(struct cfg *c, yaml_node_t *n, const char *plan)
{
	if (!n || !cfg_is_map(n))
		return n;
	if (!plan)
		return NULL;
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(c, pr->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, plan))
			return cfg_node(c, pr->value);
	}
	return NULL;
}

static const char *const algo_field[] = {
        [F_RATE] = "rate", [F_QUOTA] = "quota", [F_SLIDING] = "sliding", [F_CONC] = "concurrency"};

/* Build the spec of algorithm field `f` from scalar vn (burst/queue nodes
 * already chosen for this plan). Returns false with an error. */
static bool build_spec(struct cfg *c, const struct sl_limit *l, int f, const yaml_node_t *vn,
                       const yaml_node_t *burst, const yaml_node_t *queue, int32_t tz,
                       int64_t lease, struct sl_limit_spec *s)
{
	const char *what = algo_field[f];
	const char *v = cfg_scalar(c, vn, what);
	if (!v)
		return false;
	memset(s, 0, sizeof(*s));
	if (!strcmp(v, "unlimited")) {
		sl_spec_unlimited(s);
		return true;
	}
	if (!strcmp(v, "deny")) {
		sl_spec_deny(s);
		return true;
	}
	if (f == F_CONC) {
		uint64_t n;
		if (!cfg_uint(c, vn, "concurrency (a slot count, unlimited or deny)", 1, UINT32_MAX,
		              &n))
			return false;
		if (sl_spec_concurrency(s, n, lease)) {
			cfg_err(c, vn, "concurrency %s is out of range", v);
			return false;
		}
		return true;
	}
	struct sl_rate_text r;
	int rc = sl_parse_rate(v, &r);
	if (rc) {
		if (f == F_QUOTA)
			cfg_err(c, vn,
			        "bad quota '%s' (expected N/hour, N/day, N/week, N/month, "
			        "unlimited "
			        "or deny)",
			        v);
		else
			cfg_err(c, vn,
			        "bad %s '%s' (expected N/period such as 300/min, 15/s, 100/hour, "
			        "1000/day, 10/1.5m, or unlimited or deny)",
			        what, v);
		return false;
	}
	if (r.n == 0) {
		cfg_err(c, vn, "%s '%s': N must be at least 1 (use deny to refuse everything)",
		        what, v);
		return false;
	}
	if (f == F_QUOTA) {
		if (!r.calendar) {
			cfg_err(c, vn,
			        "quota '%s': a quota counts in calendar windows: N/hour, N/day, "
			        "N/week or N/month (use rate or sliding for other periods)",
			        v);
			return false;
		}
		if (sl_spec_quota(s, r.n, r.calendar, tz)) {
			cfg_err(c, vn, "quota '%s' is out of range", v);
			return false;
		}
		return true;
	}
	if (r.calendar == SL_CAL_MONTH) {
		cfg_err(c, vn, "%s '%s': a month is a calendar window, only quota counts by month",
		        what, v);
		return false;
	}
	if (f == F_SLIDING) {
		if (r.n > UINT32_MAX || sl_spec_sliding(s, r.n, r.period)) {
			cfg_err(c, vn, "sliding '%s' is out of range (N below 2^32)", v);
			return false;
		}
		return true;
	}
	uint64_t b = 0, q = 0;
	if (burst && !cfg_uint(c, burst, "burst", 1, 1000000000, &b))
		return false;
	if (queue && !cfg_uint(c, queue, "queue", 0, 1000000000, &q))
		return false;
	if (sl_spec_rate(s, r.n, r.period, b, q)) {
		cfg_err(c, vn, "rate '%s' is out of range (interval under 1 ns or burst too large)",
		        v);
		return false;
	}
	(void)l;
	return true;
}

/* Check the plan names of per-plan map m (for field `what`); when `within`
 * is a map too, every plan of m must also be in it. */
static void check_plan_map(struct cfg *c, yaml_node_t *m, const char *what, yaml_node_t *within,
                           const char *within_what)
{
	for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(c, pr->key);
		const char *pl = cfg_scalar(c, k, "plan name");
		if (!pl)
			continue;
		if (cfg_plan_index(c->p, pl) < 0) {
			char known[160];
			size_t kl = 0;
			known[0] = '\0';
			for (size_t i = 0; i < c->p->nplans && kl < sizeof(known); i++)
				kl += (size_t)snprintf(known + kl, sizeof(known) - kl, "%s%s",
				                       i ? ", " : "", c->p->plans[i].name);
			cfg_err(c, k, "%s: unknown plan '%s' (plans: %s)", what, pl,
			        c->p->nplans ? known : "none declared");
			continue;
		}
		for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < pr; q++)
			if (cfg_node(c, q->key)->type == YAML_SCALAR_NODE &&
			    !strcmp((char *)cfg_node(c, q->key)->data.scalar.value, pl))
				cfg_err(c, k, "%s: plan '%s' given twice", what, pl);
		if (within && !for_plan(c, within, pl))
			cfg_err(c, k, "%s for plan '%s', which %s does not list", what, pl,
			        within_what);
	}
}

static bool name_taken(const struct sl_policy *p, const char *name, const struct sl_limit *self)
{
	for (size_t i = 0; i < p->nlimits; i++)
		if (&p->limits[i] != self && p->limits[i].name && !strcmp(p->limits[i].name, name))
			return true;
	for (size_t r = 0; r < p->nroutes; r++)
		for (size_t i = 0; i < p->routes[r].nlimits; i++)
			if (&p->routes[r].limits[i] != self && p->routes[r].limits[i].name &&
			    !strcmp(p->routes[r].limits[i].name, name))
				return true;
	return false;
}

static void parse_limit(struct cfg *c, yaml_node_t *n, struct sl_limit *l)
{
	yaml_node_t *v[F_COUNT];
	l->index = c->next_limit_index++;
	l->status = 0;
	l->line = (unsigned)n->start_mark.line + 1;
	l->col = (unsigned)n->start_mark.column + 1;
	if (!cfg_fields(c, n, "limit", limit_keys, v))
		return;
	if (!v[F_NAME]) {
		cfg_err(c, n, "limit: missing required key 'name'");
	} else if (cfg_name(c, v[F_NAME], "limit name", &l->name) && name_taken(c->p, l->name, l)) {
		cfg_err(c, v[F_NAME],
		        "duplicate limit name '%s' (names are unique across limits and routes)",
		        l->name);
	}
	const char *lname = l->name ? l->name : "?";
	if (!v[F_KEY])
		cfg_err(c, n,
		        "limit '%s': missing required key 'key' (e.g. ip, key, account, [account, "
		        "route])",
		        lname);
	else
		parse_key(c, v[F_KEY], l);

	int f = -1;
	static const int algos[] = {F_RATE, F_QUOTA, F_SLIDING, F_CONC};
	for (size_t i = 0; i < 4; i++) {
		if (!v[algos[i]])
			continue;
		if (f >= 0)
			cfg_err(c, v[algos[i]],
			        "limit '%s' has both %s and %s: one algorithm per limit", lname,
			        algo_field[f], algo_field[algos[i]]);
		else
			f = algos[i];
	}
	if (f < 0) {
		cfg_err(c, n, "limit '%s' needs one of rate, quota, sliding or concurrency", lname);
	}
	/* parameters that belong to one algorithm */
	if (v[F_BURST] && f != F_RATE)
		cfg_err(c, v[F_BURST], "burst applies to rate only");
	if (v[F_QUEUE] && f != F_RATE)
		cfg_err(c, v[F_QUEUE], "queue applies to rate only");
	if (v[F_TZ] && f != F_QUOTA)
		cfg_err(c, v[F_TZ], "tz_offset applies to quota only");
	if (v[F_LEASE] && f != F_CONC)
		cfg_err(c, v[F_LEASE], "lease applies to concurrency only");

	int32_t tz = 0;
	if (v[F_TZ]) {
		const char *s = cfg_scalar(c, v[F_TZ], "tz_offset");
		if (s && sl_parse_tz_offset(s, &tz))
			cfg_err(c, v[F_TZ],
			        "bad tz_offset '%s' (expected +HH:MM, -HH:MM or seconds east of "
			        "UTC)",
			        s);
	}
	int64_t lease = c->p->admin.lease_ttl;
	if (v[F_LEASE] && cfg_duration(c, v[F_LEASE], "lease", &lease) && lease <= 0)
		cfg_err(c, v[F_LEASE], "lease must be greater than zero");

	if (v[F_STATUS]) {
		uint64_t st;
		if (cfg_uint(c, v[F_STATUS], "status", 400, 599, &st))
			l->status = (int)st;
	}
	if (v[F_MESSAGE])
		l->message = cfg_template(c, v[F_MESSAGE], "message", true);
	if (f < 0 || !l->name)
		return;

	l->field_algo = f == F_RATE      ? SL_ALGO_RATE
	                : f == F_QUOTA   ? SL_ALGO_QUOTA
	                : f == F_SLIDING ? SL_ALGO_SLIDING
	                                 : SL_ALGO_CONCURRENCY;
	l->tz_offset = tz;
	l->lease = lease;
	yaml_node_t *val = v[f];
	if (cfg_is_map(v[F_BURST]) && !cfg_is_map(val))
		cfg_err(c, v[F_BURST], "burst is per plan but rate is not");
	if (cfg_is_map(v[F_QUEUE]) && !cfg_is_map(val))
		cfg_err(c, v[F_QUEUE], "queue is per plan but rate is not");
	if (!cfg_is_map(val)) {
		if (val->type != YAML_SCALAR_NODE) {
			cfg_err(c, val, "%s must be a value or a map of plan to value",
			        algo_field[f]);
			return;
		}
		yaml_node_t *b = cfg_is_map(v[F_BURST]) ? NULL : v[F_BURST];
		yaml_node_t *q = cfg_is_map(v[F_QUEUE]) ? NULL : v[F_QUEUE];
		if (build_spec(c, l, f, val, b, q, tz, lease, &l->spec))
			l->limit_id = cfg_limit_id(l, &l->spec);
		return;
	}
	/* per-plan map */
	l->per_plan = true;
	l->before_key = false; /* the plan is known only once the key is */
	check_plan_map(c, val, algo_field[f], NULL, NULL);
	if (cfg_is_map(v[F_BURST]))
		check_plan_map(c, v[F_BURST], "burst", val, "rate");
	if (cfg_is_map(v[F_QUEUE]))
		check_plan_map(c, v[F_QUEUE], "queue", val, "rate");
	size_t np = c->p->nplans;
	l->plan_spec = calloc(np ? np : 1, sizeof(*l->plan_spec));
	l->plan_limit_id = calloc(np ? np : 1, sizeof(*l->plan_limit_id));
	if (!l->plan_spec || !l->plan_limit_id) {
		cfg_err(c, val, "out of memory");
		return;
	}
	for (size_t i = 0; i < np; i++) {
		const char *pl = c->p->plans[i].name;
		yaml_node_t *pv = for_plan(c, val, pl);
		if (!pv)
			continue; /* plan absent: the limit is skipped for it (algo 0) */
		if (build_spec(c, l, f, pv, for_plan(c, v[F_BURST], pl),
		               for_plan(c, v[F_QUEUE], pl), tz, lease, &l->plan_spec[i]))
			l->plan_limit_id[i] = cfg_limit_id(l, &l->plan_spec[i]);
	}
}

void cfg_limits(struct cfg *c, const yaml_node_t *n, struct sl_limit **out, size_t *nout)
{
	if (!cfg_is_seq(n)) {
		cfg_err(c, n,
		        "limits must be a list of limits ({name, key, "
		        "rate|quota|sliding|concurrency})");
		return;
	}
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	*out = calloc(cnt ? cnt : 1, sizeof(**out));
	if (!*out) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, n->data.sequence.items.start[i]);
		struct sl_limit *l = &(*out)[(*nout)++];
		parse_limit(c, it, l);
	}
}

/* r->path: the first len bytes of p in canonical form (normalize.c), as
 * requests are compared; an exact path also without its trailing slash
 * unless `normalize.trailing_slash: strict`. */
static void route_path(struct cfg *c, const yaml_node_t *n, struct sl_route *r, const char *p,
                       size_t len)
{
	char *buf = malloc(len + 1);
	struct sl_str canon;
	int rc;

	if (buf == NULL) {
		cfg_err(c, n, "out of memory");
		return;
	}
	rc = sl_norm_path((struct sl_str){p, len}, buf, len, &canon, NULL);
	if (rc != 0) {
		cfg_err(c, n,
		        "match.path '%s': a '%%' must start an escape of two hex digits, and "
		        "%%00 is refused",
		        p);
		free(buf);
		return;
	}
	if (r->path_match == SL_PATH_EXACT)
		canon = sl_norm_match_path(canon, !c->p->normalize.strict_slash);
	if (canon.p != buf)
		memcpy(buf, canon.p, canon.len);
	buf[canon.len] = '\0';
	r->path = buf;
	r->path_len = canon.len;
}

static void parse_match(struct cfg *c, yaml_node_t *n, struct sl_route *r)
{
	static const char *const keys[] = {"method", "path", "query", NULL};
	yaml_node_t *v[3];
	if (!cfg_fields(c, n, "match", keys, v))
		return;
	if (v[0]) {
		const char *m = cfg_scalar(c, v[0], "match.method");
		if (m && strcmp(m, "*") != 0 && strcmp(m, "ANY") != 0) {
			bool ok = true;
			for (const char *p = m; *p; p++)
				if (!((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z')))
					ok = false;
			if (!ok)
				cfg_err(c, v[0], "bad method '%s' (expected e.g. GET, POST, or *)",
				        m);
			else if ((r->method = strdup(m)))
				for (char *p = r->method; *p; p++)
					if (*p >= 'a' && *p <= 'z')
						*p = (char)(*p - 'a' + 'A');
		}
	}
	if (v[1]) {
		const char *p = cfg_scalar(c, v[1], "match.path");
		if (p) {
			size_t len = strlen(p);
			char *star = strchr(p, '*');
			if (p[0] != '/' && strcmp(p, "*") != 0) {
				cfg_err(c, v[1], "match.path '%s' must start with '/'", p);
			} else if (star &&
			           (star != p + len - 1 || (len > 1 && p[len - 2] != '/'))) {
				cfg_err(c, v[1],
				        "match.path '%s': '*' is allowed only as a final \"/*\" "
				        "(prefix "
				        "match)",
				        p);
			} else if (!strcmp(p, "*") || !strcmp(p, "/*")) {
				r->path_match = SL_PATH_ANY;
			} else if (star) {
				r->path_match = SL_PATH_PREFIX;
				route_path(c, v[1], r, p, len - 1);
			} else {
				r->path_match = SL_PATH_EXACT;
				route_path(c, v[1], r, p, len);
			}
		}
	}
	if (v[2]) {
		if (!cfg_is_map(v[2]) ||
		    v[2]->data.mapping.pairs.top - v[2]->data.mapping.pairs.start != 1) {
			cfg_err(c, v[2],
			        "match.query must be a mapping of one parameter name to its value");
		} else {
			yaml_node_pair_t *pr = v[2]->data.mapping.pairs.start;
			yaml_node_t *qk = cfg_node(c, pr->key), *qv = cfg_node(c, pr->value);
			r->query_name = cfg_strdup(c, qk, "query parameter name");
			if (!cfg_is_null(qv))
				r->query_value = cfg_strdup(c, qv, "query parameter value");
		}
	}
}

void cfg_routes(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"name", "match", "cost", "limits", NULL};
	struct sl_policy *p = c->p;
	if (!cfg_is_seq(n)) {
		cfg_err(c, n, "routes must be a list of {name, match, cost, limits}");
		return;
	}
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	p->routes = calloc(cnt ? cnt : 1, sizeof(*p->routes));
	if (!p->routes) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *it = cfg_node(c, n->data.sequence.items.start[i]), *v[4];
		struct sl_route *r = &p->routes[p->nroutes++];
		r->cost = 1;
		if (!cfg_fields(c, it, "route", keys, v))
			continue;
		if (!v[0])
			cfg_err(c, it, "route: missing required key 'name'");
		else if (cfg_name(c, v[0], "route name", &r->name)) {
			for (size_t j = 0; j + 1 < p->nroutes; j++)
				if (p->routes[j].name && !strcmp(p->routes[j].name, r->name))
					cfg_err(c, v[0], "duplicate route name '%s'", r->name);
		}
		if (v[1] && !cfg_is_null(v[1]))
			parse_match(c, v[1], r);
		if (v[2])
			cfg_uint(c, v[2], "cost", 1, 1000000, &r->cost);
		if (v[3] && !cfg_is_null(v[3]))
			cfg_limits(c, v[3], &r->limits, &r->nlimits);
	}
}

/* ---- account overrides (sl_policy_override) ---- */

static int field_of(uint8_t algo)
{
	switch (algo) {
	case SL_ALGO_RATE:
		return F_RATE;
	case SL_ALGO_QUOTA:
		return F_QUOTA;
	case SL_ALGO_SLIDING:
		return F_SLIDING;
	default:
		return F_CONC;
	}
}

bool cfg_override_spec(struct cfg *c, const struct sl_limit *l, yaml_node_t *n,
                       struct sl_limit_spec *out)
{
	int f = field_of(l->field_algo);
	yaml_node_t *burst = NULL, *queue = NULL, *val = n;

	if (cfg_is_map(n)) {
		static const char *const keys[] = {"rate",  "quota", "sliding", "concurrency",
		                                   "burst", "queue", NULL};
		yaml_node_t *v[6];
		static const int fields[] = {F_RATE, F_QUOTA, F_SLIDING, F_CONC};
		if (!cfg_fields(c, n, "override", keys, v))
			return false;
		val = NULL;
		for (int i = 0; i < 4; i++) {
			if (!v[i])
				continue;
			if (fields[i] != f) {
				cfg_err(c, v[i],
				        "limit '%s' is a %s limit: its override gives %s (or a "
				        "plain "
				        "value), not %s",
				        l->name, algo_field[f], algo_field[f], keys[i]);
				return false;
			}
			val = v[i];
		}
		if (!val) {
			cfg_err(c, n, "override of '%s' needs %s", l->name, algo_field[f]);
			return false;
		}
		burst = v[4];
		queue = v[5];
		if ((burst || queue) && f != F_RATE) {
			cfg_err(c, burst ? burst : queue, "burst and queue apply to rate only");
			return false;
		}
	}
	if (!build_spec(c, l, f, val, burst, queue, l->tz_offset, l->lease, out))
		return false;
	return true;
}

/* `sluice validate` (DESIGN issue 8): a per-plan limit whose map leaves
 * out a plan that another per-plan map lists is skipped for that plan,
 * which is seldom meant (a custom plan added to some maps only). */
void cfg_warn_plan_maps(struct cfg *c)
{
	const struct sl_policy *p = c->p;
	size_t np = p->nplans;
	bool *listed = calloc(np ? np : 1, sizeof(*listed));
	if (!listed)
		return;
	for (size_t pass = 0; pass < 2; pass++) {
		for (size_t r = 0; r <= p->nroutes; r++) {
			const struct sl_limit *ls = r == 0 ? p->limits : p->routes[r - 1].limits;
			size_t n = r == 0 ? p->nlimits : p->routes[r - 1].nlimits;
			for (size_t i = 0; i < n; i++) {
				const struct sl_limit *l = &ls[i];
				if (!l->per_plan || !l->plan_spec || !l->name)
					continue;
				for (size_t k = 0; k < np; k++) {
					bool has = l->plan_spec[k].algo != 0;
					if (pass == 0 && has)
						listed[k] = true;
					else if (pass == 1 && !has && listed[k])
						cfg_warn_at(
						        c, l->line, l->col,
						        "limit '%s': plan '%s' is missing from its "
						        "per-plan map but other per-plan limits "
						        "list "
						        "it: the limit is skipped for that plan",
						        l->name, p->plans[k].name);
				}
			}
		}
	}
	free(listed);
}
