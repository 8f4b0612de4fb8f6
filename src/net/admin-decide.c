/* POST /v1/decide and POST /v1/release (DESIGN.md section 5): a decision
 * over the policy and the store for an internal caller, rendered as JSON.
 * A decision that may take concurrency slots reserves a lease slot before
 * it reaches the store, so an allowed decision always has somewhere to
 * record its slots and a full table refuses (503) rather than leaking. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "net/admin-int.h"

/* ---- /v1/decide ---- */

static struct sl_str jstr(const cJSON *o, const char *name, int *bad)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	if (v == NULL || cJSON_IsNull(v))
		return (struct sl_str){NULL, 0};
	if (!cJSON_IsString(v)) {
		*bad = 1;
		return (struct sl_str){NULL, 0};
	}
	return (struct sl_str){v->valuestring, strlen(v->valuestring)};
}

/* A textual IPv4 or IPv6 address (no port, no brackets); an empty string
 * counts as "not given". Refusing junk keeps a typo from silently skipping
 * every ip-keyed limit. */
static bool ip_valid(struct sl_str ip)
{
	char buf[INET6_ADDRSTRLEN];
	unsigned char out[sizeof(struct in6_addr)];

	if (ip.len == 0)
		return true;
	if (ip.len >= sizeof(buf))
		return false;
	memcpy(buf, ip.p, ip.len);
	buf[ip.len] = '\0';
	return inet_pton(AF_INET, buf, out) == 1 || inet_pton(AF_INET6, buf, out) == 1;
}

static long ceil_div(int64_t a, int64_t b)
{
	if (a <= 0)
		return 0;
	return (long)((a + b - 1) / b);
}

struct hdr_out {
	struct sl_buf *w;
	bool first;
};

static void emit_header(void *arg, struct sl_str name, struct sl_str value)
{
	struct hdr_out *h = arg;
	if (!h->first)
		sl_buf_put(h->w, ",", 1);
	h->first = false;
	sl_buf_json_string(h->w, name.p, name.len);
	sl_buf_put(h->w, ":", 1);
	sl_buf_json_string(h->w, value.p, value.len);
}

/* The decide answer of DESIGN.md section 5 from a finished evaluation. */
static void render_decision(struct sl_admin_call *c, const char *lease)
{
	const struct sl_eval *ev = &c->ev;
	const struct sl_decision *d = &ev->decision;
	struct sl_buf w = {.p = c->resp.body, .cap = sizeof(c->resp.body)};
	struct hdr_out ho = {&w, true};
	char body[8192];
	long blen = -1;
	const char *bct = NULL;
	long retry = 0;

	if (d->denied >= 0 && (size_t)d->denied < ev->nchecks) {
		int64_t ra = ev->checks[d->denied].res.retry_after;
		retry = ceil_div(ra, SL_NS_PER_SEC);
		if (retry < 1) /* >= 1 on a rejection (DESIGN 4), as Retry-After renders it */
			retry = 1;
	}
	if (d->status != 200)
		blen = sl_render_body(ev, body, sizeof(body), &bct);

	sl_buf_str(&w, "{\"allowed\":");
	sl_buf_str(&w, d->status == 200 ? "true" : "false");
	sl_buf_str(&w, ",\"status\":");
	sl_buf_i64(&w, d->status);
	sl_buf_str(&w, ",\"delay_ms\":");
	sl_buf_i64(&w, d->status == 200 ? ceil_div(d->delay, 1000000) : 0);
	sl_buf_str(&w, ",\"denied_by\":");
	if (d->denied >= 0 && (size_t)d->denied < ev->nchecks && ev->limits[d->denied] != NULL)
		sl_admin_jw_cstr(&w, ev->limits[d->denied]->name);
	else
		sl_buf_str(&w, "null");
	sl_buf_str(&w, ",\"retry_after\":");
	sl_buf_i64(&w, retry);
	sl_buf_str(&w, ",\"lease\":");
	if (lease != NULL)
		sl_admin_jw_cstr(&w, lease);
	else
		sl_buf_str(&w, "null");
	sl_buf_str(&w, ",\"headers\":{");
	sl_render_headers(ev, emit_header, &ho);
	sl_buf_str(&w, "},\"body\":");
	if (blen >= 0)
		sl_buf_json_string(&w, body, (size_t)blen);
	else
		sl_buf_str(&w, "null");
	sl_buf_str(&w, ",\"limits\":[");
	for (size_t i = 0; i < ev->nchecks; i++) {
		const struct sl_result *r = &ev->checks[i].res;
		int64_t at;
		if (i > 0)
			sl_buf_put(&w, ",", 1);
		sl_buf_str(&w, "{\"name\":");
		sl_admin_jw_cstr(&w, ev->limits[i] ? ev->limits[i]->name : ev->checks[i].name);
		if (r->limit == SL_UNLIMITED) {
			sl_buf_str(&w, ",\"limit\":null,\"remaining\":null,\"reset\":null,"
			               "\"unlimited\":true}");
			continue;
		}
		sl_buf_str(&w, ",\"limit\":");
		sl_buf_u64(&w, r->limit);
		sl_buf_str(&w, ",\"remaining\":");
		sl_buf_u64(&w, r->remaining);
		sl_buf_str(&w, ",\"reset\":");
		if (__builtin_add_overflow(d->now, r->reset_after > 0 ? r->reset_after : 0, &at))
			at = INT64_MAX; /* saturates, as the headers' {reset} */
		sl_buf_i64(&w, ceil_div(at, SL_NS_PER_SEC));
		sl_buf_str(&w, "}");
	}
	sl_buf_str(&w, "]}");
	if (w.full) {
		sl_admin_respond_error(&c->resp, 500, "too_large",
		                       "the decision does not fit the response");
		return;
	}
	c->resp.status = 200;
	c->resp.content_type = sl_admin_ct_json;
	c->resp.len = w.len;
}

static bool is_concurrency(const struct sl_check *ck)
{
	return ck->spec != NULL && ck->spec->algo == SL_ALGO_CONCURRENCY;
}

/* The lease slot reserved for this call's decision, found by the id the
 * call keeps (rel_table/rel_slot double as "reserved lease" for decide). */
static struct lease *call_lease(struct sl_admin_call *c)
{
	return c->rel_table ? &c->rel_table->lease[c->rel_slot] : NULL;
}

static void decide_complete(struct sl_admin_call *c)
{
	struct sl_admin *a = c->admin;
	struct sl_eval *ev = &c->ev;
	struct lease *l = call_lease(c);
	char id[SL_ADMIN_LEASE_ID];
	const char *lease = NULL;

	sl_eval_finish(ev);
	if (l != NULL) {
		bool took = ev->decision.status == 200 && ev->batch.status >= 0 &&
		            ev->batch.status != SL_DENY;
		if (took) {
			size_t used = 0;
			l->n = 0;
			for (size_t i = 0; i < ev->nchecks; i++) {
				const struct sl_check *ck = &ev->checks[i];
				if (!is_concurrency(ck))
					continue;
				/* Sizes were checked before the reservation. */
				l->checks[l->n] = *ck;
				memcpy(l->keybuf + used, ck->key, ck->key_len);
				l->checks[l->n].key = l->keybuf + used;
				used += ck->key_len;
				l->n++;
			}
			sl_policy_ref((struct sl_policy *)c->policy);
			pthread_mutex_lock(&l->table->mu);
			l->policy = (struct sl_policy *)c->policy;
			l->expires = ev->decision.now + a->lease_ttl;
			l->state = L_HELD;
			pthread_mutex_unlock(&l->table->mu);
			sl_lease_id(l, id, sizeof(id));
			lease = id;
		} else {
			sl_lease_free(l);
		}
		c->rel_table = NULL;
	}
	render_decision(c, lease);
	if (ev->batch.op != SL_OP_PEEK) { /* a peek decides nothing */
		sl_metrics_eval(a->shard, "admin", ev, (int64_t)(uv_hrtime() - c->start));
		if (a->g->usage)
			sl_usage_eval(sl_usage_shard(a->g->usage, a->worker), ev);
	}
}

int sl_admin_submit(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req,
                    void (*done)(struct sl_batch *), void (*complete)(struct sl_admin_call *))
{
	/* Whether complete() runs here is decided before submitting: an inline
	 * completion has run done() by the time submit returns, and the batch
	 * is not to be read after it (the lesson of the connection leak). */
	bool nothing = c->ev.batch.n == 0;
	int rc;

	c->kind = K_DECIDE;
	c->ev.batch.loop = a->loop;
	c->ev.batch.done = done;
	c->ev.batch.data = c;
	rc = nothing ? SL_OK : sl_store_submit(a->store, &c->ev.batch);
	if (rc < 0 || nothing) {
		/* nothing to ask, or refused up front: the policy's on_error decides */
		c->ev.batch.status = rc;
		c->ev.batch.time = req->now;
		complete(c);
		c->kind = K_NONE;
		return 0;
	}
	if (c->kind == K_NONE)
		return 0;         /* completed inline (memory store) */
	c->kind = K_DECIDE_ASYNC; /* done() now owed */
	return SL_AGAIN;
}

static void decide_done(struct sl_batch *b)
{
	struct sl_admin_call *c = b->data;
	bool async = c->kind == K_DECIDE_ASYNC;

	decide_complete(c);
	c->kind = K_NONE;
	if (async)
		c->done(c);
}

/* Reserve a lease for the concurrency checks of c->ev, if any. Returns 0
 * (reserved or none needed) or an error response was written (-1). */
static int reserve_lease(struct sl_admin *a, struct sl_admin_call *c)
{
	size_t n = 0, bytes = 0;
	struct lease *l;

	c->rel_table = NULL;
	for (size_t i = 0; i < c->ev.nchecks; i++)
		if (is_concurrency(&c->ev.checks[i])) {
			n++;
			bytes += c->ev.checks[i].key_len;
		}
	if (n == 0)
		return 0;
	if (n > SL_ADMIN_LEASE_KEYS || bytes > SL_ADMIN_LEASE_KEYBUF) {
		sl_admin_respond_error(&c->resp, 503, "lease_too_large",
		                       "the decision's concurrency keys do not fit a lease");
		return -1;
	}
	l = sl_lease_reserve(&a->g->tables[a->worker]);
	if (l == NULL) {
		sl_admin_respond_error(&c->resp, 503, "leases_full", "the lease table is full");
		return -1;
	}
	c->rel_table = l->table;
	c->rel_slot = l->slot;
	return 0;
}

/* The first member of o that /v1/decide does not know, or NULL: a typo
 * ("acount") silently dropped would decide for nobody. */
static const char *unknown_field(const cJSON *o)
{
	static const char *const known[] = {"ip",   "key",  "account", "plan", "method",
	                                    "path", "host", "headers", "cost", NULL};
	const cJSON *e;

	cJSON_ArrayForEach(e, o)
	{
		size_t i = 0;

		while (known[i] != NULL && strcmp(known[i], e->string) != 0)
			i++;
		if (known[i] == NULL)
			return e->string;
	}
	return NULL;
}

static bool plan_known(const struct sl_policy *p, struct sl_str name)
{
	for (size_t i = 0; i < p->nplans; i++)
		if (strlen(p->plans[i].name) == name.len &&
		    memcmp(p->plans[i].name, name.p, name.len) == 0)
			return true;
	return false;
}

/* Whether accounts are data the policy knows (static accounts or keys),
 * so that a name it does not know is a caller's mistake rather than a
 * free-form account descriptor (docs/admin.md). */
static bool accounts_known(const struct sl_policy *p)
{
	return p->naccounts > 0 || p->nkeys > 0 || p->live != NULL;
}

static void respond_unknown_field(struct sl_admin_resp *resp, const char *name)
{
	char msg[160];

	snprintf(msg, sizeof(msg),
	         "unknown field \"%.64s\" (expected ip, key, account, plan, "
	         "method, path, host, headers, cost)",
	         name);
	sl_admin_respond_error(resp, 400, "unknown_field", msg);
}

int sl_admin_decide(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	struct sl_header hdrs[SL_ADMIN_MAX_HEADERS];
	struct sl_request r;
	const cJSON *h, *cost;
	const char *unknown;
	bool peek = false;
	cJSON *root;
	int bad = 0, rc;

	if (req->policy == NULL) {
		sl_admin_respond_error(&c->resp, 503, "no_policy", "no policy loaded");
		return 0;
	}
	root = sl_admin_parse_object(&c->resp, req);
	if (root == NULL)
		return 0;
	unknown = unknown_field(root);
	if (unknown != NULL) {
		respond_unknown_field(&c->resp, unknown);
		cJSON_Delete(root);
		return 0;
	}
	memset(&r, 0, sizeof(r));
	r.ip = jstr(root, "ip", &bad);
	r.key = jstr(root, "key", &bad);
	r.account = jstr(root, "account", &bad);
	r.plan = jstr(root, "plan", &bad);
	r.method = jstr(root, "method", &bad);
	r.path = jstr(root, "path", &bad);
	r.host = jstr(root, "host", &bad);
	if (bad) {
		cJSON_Delete(root);
		sl_admin_respond_error(
		        &c->resp, 400, "bad_field",
		        "ip, key, account, plan, method, path and host must be strings");
		return 0;
	}
	if (r.ip.p != NULL && !ip_valid(r.ip)) {
		cJSON_Delete(root);
		sl_admin_respond_error(&c->resp, 400, "bad_field",
		                       "ip must be an IPv4 or IPv6 address");
		return 0;
	}
	if (r.path.p != NULL) {
		const char *q = memchr(r.path.p, '?', r.path.len);
		if (q != NULL) {
			r.query = (struct sl_str){q + 1, r.path.len - (size_t)(q + 1 - r.path.p)};
			r.path.len = (size_t)(q - r.path.p);
		}
	}
	h = cJSON_GetObjectItemCaseSensitive(root, "headers");
	if (h != NULL && !cJSON_IsNull(h)) {
		const cJSON *e;
		if (!cJSON_IsObject(h)) {
			cJSON_Delete(root);
			sl_admin_respond_error(&c->resp, 400, "bad_field",
			                       "headers must be an object");
			return 0;
		}
		cJSON_ArrayForEach(e, h)
		{
			if (!cJSON_IsString(e) || r.nheaders >= SL_ADMIN_MAX_HEADERS) {
				cJSON_Delete(root);
				sl_admin_respond_error(
				        &c->resp, 400, "bad_field",
				        "headers must map names to strings (at most 64)");
				return 0;
			}
			hdrs[r.nheaders].name = (struct sl_str){e->string, strlen(e->string)};
			hdrs[r.nheaders].value =
			        (struct sl_str){e->valuestring, strlen(e->valuestring)};
			r.nheaders++;
		}
		r.headers = hdrs;
	}
	cost = cJSON_GetObjectItemCaseSensitive(root, "cost");
	if (cost != NULL && !cJSON_IsNull(cost)) {
		double v = cJSON_IsNumber(cost) ? cost->valuedouble : -1;
		if (!(v >= 0 && v <= (double)COST_MAX) || v != (double)(uint64_t)v) {
			cJSON_Delete(root);
			sl_admin_respond_error(&c->resp, 400, "bad_field",
			                       "cost must be a whole number from 0 to 1000000000");
			return 0;
		}
		r.cost = (uint64_t)v;
		peek = r.cost == 0; /* an explicit 0: a peek (DESIGN.md section 7) */
	}
	if (r.plan.len > 0 && !plan_known(req->policy, r.plan)) {
		cJSON_Delete(root);
		sl_admin_respond_error(&c->resp, 400, "unknown_plan",
		                       "plan names no configured plan");
		return 0;
	}
	rc = sl_eval_begin(&c->ev, req->policy, &r, req->now);
	cJSON_Delete(root);
	if (rc < 0) {
		sl_admin_respond_error(&c->resp, 400, "bad_request",
		                       rc == SL_ENOMEM ? "the request's descriptors are too large"
		                                       : "the request cannot be evaluated");
		return 0;
	}
	if (r.account.len > 0 && c->ev.account == NULL && !c->ev.live_found &&
	    accounts_known(req->policy) && c->ev.key_state != SL_KEY_KNOWN) {
		sl_admin_respond_error(&c->resp, 404, "unknown_account",
		                       "account names no known account");
		return 0;
	}
	if (peek) {
		/* Same checks, same rendering; the store commits nothing and no
		 * lease is reserved because no slot is taken. */
		c->ev.batch.op = SL_OP_PEEK;
		for (size_t i = 0; i < c->ev.nchecks; i++)
			c->ev.checks[i].cost = 0;
	} else if (reserve_lease(a, c) < 0) {
		return 0;
	}

	return sl_admin_submit(a, c, req, decide_done, decide_complete);
}

/* ---- /v1/release ---- */

int sl_admin_release(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	cJSON *root;
	const cJSON *id;
	unsigned worker, slot;
	uint32_t gen;
	struct sl_lease_table *t;
	struct lease *l;
	bool found = false;
	int rc;

	root = sl_admin_parse_object(&c->resp, req);
	if (root == NULL)
		return 0;
	id = cJSON_GetObjectItemCaseSensitive(root, "lease");
	if (!cJSON_IsString(id)) {
		cJSON_Delete(root);
		sl_admin_respond_error(&c->resp, 400, "bad_field", "lease must be a string");
		return 0;
	}
	rc = sl_lease_parse_id(id->valuestring, &worker, &slot, &gen);
	cJSON_Delete(root);
	if (rc < 0 || worker >= a->g->nworkers) {
		sl_admin_respond_error(&c->resp, 404, "unknown_lease", "no such lease");
		return 0;
	}
	t = &a->g->tables[worker];
	l = &t->lease[slot];
	pthread_mutex_lock(&t->mu);
	if (l->state == L_HELD && l->gen == gen) {
		l->state = L_RELEASING;
		l->waiter = c;
		l->waiter_async = false;
		found = true;
	}
	pthread_mutex_unlock(&t->mu);
	if (!found) {
		sl_admin_respond_error(&c->resp, 404, "unknown_lease",
		                       "no such lease (released, expired or never issued)");
		return 0;
	}
	c->kind = K_RELEASE;
	c->rel_table = t; /* cleared by release_done when it completes inline */
	c->rel_slot = slot;
	rc = sl_lease_release_submit(a, l, req->now);
	if (rc < 0) {
		c->kind = K_NONE;
		c->rel_table = NULL;
		sl_lease_release_respond(c, rc);
		return 0;
	}
	if (c->rel_table == NULL)
		return 0; /* completed inline */
	/* Still in the store: from now on release_done owes c->done(). The
	 * table lock orders this with a completion on another thread; a
	 * completion can only run on this loop, so no race in practice. */
	pthread_mutex_lock(&t->mu);
	l->waiter_async = true;
	pthread_mutex_unlock(&t->mu);
	c->rel_table = NULL;
	return SL_AGAIN;
}
