/* The admin front end (see admin.h): routing, the bearer token, /v1/decide
 * and /v1/release over the policy and the store, /metrics and /healthz.
 * Requests arrive as views the server parsed; answers are written into the
 * call's fixed body buffer by a small JSON writer (no allocation except
 * cJSON's parse of the request body). A decision that may take concurrency
 * slots reserves a lease slot before it reaches the store, so an allowed
 * decision always has somewhere to record its slots and a full table
 * refuses (503) rather than leaking. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <sluice/error.h>
#include "net/admin.h"
#include "policy/listen.h"
#include "core/buf.h"

#define LEASE_TTL_DEFAULT (60 * SL_NS_PER_SEC)
#define SWEEP_MAX         64            /* leases released per sweep pass */
#define COST_MAX          1000000000ULL /* units; a larger cost is refused */

/* call->kind: what the call waits for; K_NONE once its response is ready. */
enum { K_NONE = 0, K_DECIDE, K_DECIDE_ASYNC, K_RELEASE };

enum lease_state {
	L_FREE = 0,
	L_RESERVED,  /* a decision is in the store */
	L_HELD,      /* slots taken; released by /v1/release or the sweep */
	L_RELEASING, /* release batch in the store */
};

struct lease {
	uint8_t state;            /* enum lease_state */
	uint32_t gen;             /* part of the id; changes at every reuse */
	int64_t expires;          /* ns */
	struct sl_policy *policy; /* reference held while L_HELD/L_RELEASING */
	struct sl_lease_table *table;
	unsigned slot;
	size_t n;
	struct sl_check checks[SL_ADMIN_LEASE_KEYS];
	char keybuf[SL_ADMIN_LEASE_KEYBUF];
	struct sl_batch batch;
	struct sl_admin_call *waiter; /* /v1/release waiting for the store, or NULL */
	bool waiter_async;
	struct sl_admin *releaser; /* the admin that submitted the release */
};

struct sl_lease_table {
	pthread_mutex_t mu;
	unsigned worker;
	uint32_t next_gen;
	unsigned nfree;
	unsigned freelist[SL_ADMIN_LEASES];
	struct lease lease[SL_ADMIN_LEASES];
};

/* ---- JSON writer into the response body: struct sl_buf (core/buf.h) ---- */

static void jw_cstr(struct sl_buf *w, const char *s)
{
	sl_buf_json_string(w, s, strlen(s));
}

/* ---- responses ---- */

static const char ct_json[] = "application/json";
static const char ct_prom[] = "text/plain; version=0.0.4; charset=utf-8";

static void respond_json(struct sl_admin_resp *r, int status, const char *body)
{
	size_t n = strlen(body);
	if (n > sizeof(r->body))
		n = sizeof(r->body);
	r->status = status;
	r->content_type = ct_json;
	memcpy(r->body, body, n);
	r->len = n;
}

/* {"error":"<code>","message":"<msg>"} */
static void respond_error(struct sl_admin_resp *r, int status, const char *code, const char *msg)
{
	struct sl_buf w = {.p = r->body, .cap = sizeof(r->body)};
	sl_buf_str(&w, "{\"error\":");
	jw_cstr(&w, code);
	sl_buf_str(&w, ",\"message\":");
	jw_cstr(&w, msg);
	sl_buf_str(&w, "}");
	r->status = status;
	r->content_type = ct_json;
	r->len = w.full ? 0 : w.len;
}

static void add_extra(struct sl_admin_resp *r, const char *name, const char *value)
{
	if (r->nextra >= SL_ADMIN_MAX_EXTRA)
		return;
	r->extra[r->nextra].name = (struct sl_str){name, strlen(name)};
	r->extra[r->nextra].value = (struct sl_str){value, strlen(value)};
	r->nextra++;
}

/* ---- config check ---- */

/* Loopback as bound: the address the listener will bind (a name resolved
 * as the server resolves it), not the spelling. One that does not parse
 * or resolve is not loopback. */
static bool host_is_loopback(const char *listen)
{
	struct sockaddr_storage ss;
	socklen_t len;

	return sl_listen_resolve(listen, &ss, &len, NULL, 0) == 0 && sl_listen_is_loopback(&ss);
}

int sl_admin_conf_check(const struct sl_admin_conf *c, char *err, size_t cap)
{
	if (c->listen == NULL)
		return 0;
	if (!host_is_loopback(c->listen) && (c->token == NULL || c->token[0] == '\0')) {
		if (cap > 0)
			snprintf(err, cap,
			         "admin.listen %s is not a loopback address: set admin.token",
			         c->listen);
		return SL_ECONFIG;
	}
	return 0;
}

/* ---- lease tables ---- */

static void table_init(struct sl_lease_table *t, unsigned worker, uint32_t seed)
{
	pthread_mutex_init(&t->mu, NULL);
	t->worker = worker;
	t->next_gen = seed | 1u;
	t->nfree = SL_ADMIN_LEASES;
	for (unsigned i = 0; i < SL_ADMIN_LEASES; i++) {
		/* Pop order: slot 0 first. */
		t->freelist[i] = SL_ADMIN_LEASES - 1 - i;
		t->lease[i].table = t;
		t->lease[i].slot = i;
	}
}

/* Reserve a slot; NULL when full. Called with t->mu unlocked. */
static struct lease *lease_reserve(struct sl_lease_table *t)
{
	struct lease *l = NULL;

	pthread_mutex_lock(&t->mu);
	if (t->nfree > 0) {
		l = &t->lease[t->freelist[--t->nfree]];
		l->state = L_RESERVED;
		l->gen = t->next_gen;
		t->next_gen = t->next_gen * 1664525u + 1013904223u;
		if (t->next_gen == 0)
			t->next_gen = 1;
	}
	pthread_mutex_unlock(&t->mu);
	return l;
}

/* Return l to the free list; gives back its policy reference. */
static void lease_free(struct lease *l)
{
	struct sl_lease_table *t = l->table;
	struct sl_policy *p;

	pthread_mutex_lock(&t->mu);
	p = l->policy;
	l->policy = NULL;
	l->state = L_FREE;
	l->n = 0;
	l->waiter = NULL;
	t->freelist[t->nfree++] = l->slot;
	pthread_mutex_unlock(&t->mu);
	if (p != NULL)
		sl_policy_unref(p);
}

static void lease_id(const struct lease *l, char *out, size_t cap)
{
	snprintf(out, cap, "%u-%u-%08x", l->table->worker, l->slot, l->gen);
}

/* Parse "W-S-GGGGGGGG" (decimal, decimal, 8 lowercase hex digits) strictly. */
static int parse_lease_id(const char *s, unsigned *worker, unsigned *slot, uint32_t *gen)
{
	unsigned long long v[3] = {0, 0, 0};
	size_t digits;

	for (int i = 0; i < 3; i++) {
		for (digits = 0;; s++, digits++) {
			unsigned d;
			if (*s >= '0' && *s <= '9')
				d = (unsigned)(*s - '0');
			else if (i == 2 && *s >= 'a' && *s <= 'f')
				d = (unsigned)(*s - 'a' + 10);
			else
				break;
			if (digits >= 8)
				return SL_EINVAL;
			v[i] = v[i] * (i == 2 ? 16 : 10) + d;
		}
		if (digits == 0 || (i == 2 && digits != 8))
			return SL_EINVAL;
		if (i < 2 && *s++ != '-')
			return SL_EINVAL;
	}
	if (*s != '\0' || v[0] > 0xffffu || v[1] >= SL_ADMIN_LEASES)
		return SL_EINVAL;
	*worker = (unsigned)v[0];
	*slot = (unsigned)v[1];
	*gen = (uint32_t)v[2];
	return 0;
}

int sl_admin_global_init(struct sl_admin_global *g, const struct sl_policy *p, unsigned nworkers,
                         struct sl_metrics *metrics, struct sl_store *stats_store, char *err,
                         size_t cap)
{
	int rc;
	struct timespec ts;

	memset(g, 0, sizeof(*g));
	rc = sl_admin_conf_check(&p->admin, err, cap);
	if (rc < 0)
		goto fail;
	if (nworkers == 0) {
		rc = SL_EINVAL;
		goto fail;
	}
	g->tables = calloc(nworkers, sizeof(*g->tables));
	if (g->tables == NULL) {
		rc = SL_ENOMEM;
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	for (unsigned i = 0; i < nworkers; i++)
		table_init(&g->tables[i], i,
		           (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 11) ^ (i * 2654435761u)));
	g->nworkers = nworkers;
	g->metrics = metrics;
	g->stats_store = stats_store;
	return 0;
fail:
	return rc;
}

void sl_admin_global_destroy(struct sl_admin_global *g)
{
	if (g->tables == NULL)
		return;
	for (unsigned i = 0; i < g->nworkers; i++) {
		struct sl_lease_table *t = &g->tables[i];
		for (unsigned j = 0; j < SL_ADMIN_LEASES; j++)
			if (t->lease[j].policy != NULL) {
				sl_policy_unref(t->lease[j].policy);
				t->lease[j].policy = NULL;
			}
		pthread_mutex_destroy(&t->mu);
	}
	free(g->tables);
	g->tables = NULL;
	g->nworkers = 0;
}

/* ---- clock ---- */

static int64_t admin_now(struct sl_admin *a)
{
	struct timespec ts;

	if (a->clock != NULL)
		return a->clock(a->clock_arg);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
}

/* ---- releasing ---- */

static void release_respond(struct sl_admin_call *c, int status)
{
	if (status >= 0)
		respond_json(&c->resp, 200, "{\"released\":true}");
	else
		respond_error(&c->resp, 503, "store_unavailable",
		              "the store did not take the release; the lease expires on its own");
}

/* Completion of a lease's release batch (on the releaser's loop). */
static void release_done(struct sl_batch *b)
{
	struct lease *l = b->data;
	struct sl_admin_call *c = l->waiter;
	bool async = l->waiter_async;
	int status = b->status;

	if (status < 0) {
		/* Keep the slots recorded; the sweep retries after a pause. */
		pthread_mutex_lock(&l->table->mu);
		l->state = L_HELD;
		l->expires = b->now + SL_NS_PER_SEC;
		l->waiter = NULL;
		pthread_mutex_unlock(&l->table->mu);
	} else {
		lease_free(l);
	}
	if (c != NULL) {
		release_respond(c, status);
		c->kind = K_NONE;
		if (async)
			c->done(c);
		else
			c->rel_table = NULL; /* marks "completed inline" for the submitter */
	}
}

/* Submit the release of l (state already L_RELEASING) on a's loop. Returns
 * 0 (release_done ran or will run) or a negative code (l back to L_HELD). */
static int release_submit(struct sl_admin *a, struct lease *l, int64_t now)
{
	int rc;

	memset(&l->batch, 0, sizeof(l->batch));
	l->batch.checks = l->checks;
	l->batch.n = l->n;
	l->batch.op = SL_OP_RELEASE;
	l->batch.now = now;
	l->batch.loop = a->loop;
	l->batch.done = release_done;
	l->batch.data = l;
	l->releaser = a;
	rc = sl_store_submit(a->store, &l->batch);
	if (rc < 0) {
		pthread_mutex_lock(&l->table->mu);
		l->state = L_HELD;
		l->expires = now + SL_NS_PER_SEC;
		l->waiter = NULL;
		pthread_mutex_unlock(&l->table->mu);
	}
	return rc;
}

unsigned sl_admin_sweep(struct sl_admin *a, int64_t now)
{
	struct sl_lease_table *t = &a->g->tables[a->worker];
	struct lease *due[SWEEP_MAX];
	unsigned n = 0;

	/* A lease is due one sweep period early: the store forgets a
	 * concurrency state lease_ttl after its last acquire, and a release
	 * that came after that would give back slots a newer holder took. */
	now += a->sweep_every;
	pthread_mutex_lock(&t->mu);
	for (unsigned i = 0; i < SL_ADMIN_LEASES && n < SWEEP_MAX; i++) {
		struct lease *l = &t->lease[i];
		if (l->state == L_HELD && l->expires <= now) {
			l->state = L_RELEASING;
			l->waiter = NULL;
			due[n++] = l;
		}
	}
	pthread_mutex_unlock(&t->mu);
	for (unsigned i = 0; i < n; i++)
		release_submit(a, due[i], now - a->sweep_every);
	return n;
}

static void sweep_cb(uv_timer_t *timer)
{
	struct sl_admin *a = timer->data;
	sl_admin_sweep(a, admin_now(a));
}

int sl_admin_init(struct sl_admin *a, struct sl_admin_global *g, unsigned worker, uv_loop_t *loop,
                  struct sl_store *store, const struct sl_policy *p, int64_t (*clock)(void *),
                  void *clock_arg)
{
	int64_t every;
	int rc;

	memset(a, 0, sizeof(*a));
	if (worker >= g->nworkers)
		return SL_EINVAL;
	a->g = g;
	a->worker = worker;
	a->loop = loop;
	a->store = store;
	a->shard = g->metrics ? sl_metrics_shard(g->metrics, worker) : NULL;
	a->clock = clock;
	a->clock_arg = clock_arg;
	a->lease_ttl = p->admin.lease_ttl > 0 ? p->admin.lease_ttl : LEASE_TTL_DEFAULT;
	/* Sweep often enough that a lease outlives its TTL by at most an
	 * eighth of it (10 ms .. 250 ms). */
	every = a->lease_ttl / 8 / 1000000;
	if (every < 10)
		every = 10;
	if (every > 250)
		every = 250;
	rc = uv_timer_init(loop, &a->sweep);
	if (rc < 0)
		return SL_EIO;
	a->sweep.data = a;
	a->sweep_every = every * 1000000;
	uv_timer_start(&a->sweep, sweep_cb, (uint64_t)every, (uint64_t)every);
	uv_unref((uv_handle_t *)&a->sweep);
	return 0;
}

static void sweep_closed(uv_handle_t *h)
{
	struct sl_admin *a = h->data;
	if (a->closed != NULL)
		a->closed(a);
}

void sl_admin_close(struct sl_admin *a, void (*closed)(struct sl_admin *a))
{
	struct sl_lease_table *t = &a->g->tables[a->worker];
	int64_t now = admin_now(a);

	/* Everything held is due now. */
	pthread_mutex_lock(&t->mu);
	for (unsigned i = 0; i < SL_ADMIN_LEASES; i++)
		if (t->lease[i].state == L_HELD)
			t->lease[i].expires = now;
	pthread_mutex_unlock(&t->mu);
	while (sl_admin_sweep(a, now) == SWEEP_MAX)
		;
	a->closed = closed;
	uv_timer_stop(&a->sweep);
	uv_close((uv_handle_t *)&a->sweep, sweep_closed);
}

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
		if (ra > 0 && retry < 1)
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
		jw_cstr(&w, ev->limits[d->denied]->name);
	else
		sl_buf_str(&w, "null");
	sl_buf_str(&w, ",\"retry_after\":");
	sl_buf_i64(&w, retry);
	sl_buf_str(&w, ",\"lease\":");
	if (lease != NULL)
		jw_cstr(&w, lease);
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
		if (i > 0)
			sl_buf_put(&w, ",", 1);
		sl_buf_str(&w, "{\"name\":");
		jw_cstr(&w, ev->limits[i] ? ev->limits[i]->name : ev->checks[i].name);
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
		sl_buf_i64(&w, ceil_div(d->now + (r->reset_after > 0 ? r->reset_after : 0),
		                        SL_NS_PER_SEC));
		sl_buf_str(&w, "}");
	}
	sl_buf_str(&w, "]}");
	if (w.full) {
		respond_error(&c->resp, 500, "too_large", "the decision does not fit the response");
		return;
	}
	c->resp.status = 200;
	c->resp.content_type = ct_json;
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
			lease_id(l, id, sizeof(id));
			lease = id;
		} else {
			lease_free(l);
		}
		c->rel_table = NULL;
	}
	render_decision(c, lease);
	sl_metrics_eval(a->shard, "admin", ev, (int64_t)(uv_hrtime() - c->start));
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
		respond_error(&c->resp, 503, "lease_too_large",
		              "the decision's concurrency keys do not fit a lease");
		return -1;
	}
	l = lease_reserve(&a->g->tables[a->worker]);
	if (l == NULL) {
		respond_error(&c->resp, 503, "leases_full", "the lease table is full");
		return -1;
	}
	c->rel_table = l->table;
	c->rel_slot = l->slot;
	return 0;
}

static int handle_decide(struct sl_admin *a, struct sl_admin_call *c,
                         const struct sl_admin_req *req)
{
	struct sl_header hdrs[SL_ADMIN_MAX_HEADERS];
	struct sl_request r;
	const cJSON *h, *cost;
	cJSON *root;
	int bad = 0, rc;

	if (req->policy == NULL) {
		respond_error(&c->resp, 503, "no_policy", "no policy loaded");
		return 0;
	}
	root = cJSON_ParseWithLength(req->body.p ? req->body.p : "", req->body.len);
	if (root == NULL || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		respond_error(&c->resp, 400, "bad_json", "the body must be a JSON object");
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
		respond_error(&c->resp, 400, "bad_field",
		              "ip, key, account, plan, method, path and host must be strings");
		return 0;
	}
	if (r.ip.p != NULL && !ip_valid(r.ip)) {
		cJSON_Delete(root);
		respond_error(&c->resp, 400, "bad_field", "ip must be an IPv4 or IPv6 address");
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
			respond_error(&c->resp, 400, "bad_field", "headers must be an object");
			return 0;
		}
		cJSON_ArrayForEach(e, h)
		{
			if (!cJSON_IsString(e) || r.nheaders >= SL_ADMIN_MAX_HEADERS) {
				cJSON_Delete(root);
				respond_error(&c->resp, 400, "bad_field",
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
			respond_error(&c->resp, 400, "bad_field",
			              "cost must be a whole number from 0 to 1000000000");
			return 0;
		}
		r.cost = (uint64_t)v;
	}
	rc = sl_eval_begin(&c->ev, req->policy, &r, req->now);
	cJSON_Delete(root);
	if (rc < 0) {
		respond_error(&c->resp, 400, "bad_request",
		              rc == SL_ENOMEM ? "the request's descriptors are too large"
		                              : "the request cannot be evaluated");
		return 0;
	}
	if (reserve_lease(a, c) < 0)
		return 0;

	c->kind = K_DECIDE;
	if (c->ev.batch.n == 0) {
		c->ev.batch.status = SL_OK;
		c->ev.batch.time = req->now;
		decide_complete(c);
		c->kind = K_NONE;
		return 0;
	}
	c->ev.batch.loop = a->loop;
	c->ev.batch.done = decide_done;
	c->ev.batch.data = c;
	rc = sl_store_submit(a->store, &c->ev.batch);
	if (rc < 0) {
		/* Refused up front: the policy's on_error decides. */
		c->ev.batch.status = rc;
		c->ev.batch.time = req->now;
		decide_complete(c);
		c->kind = K_NONE;
		return 0;
	}
	if (c->kind == K_NONE)
		return 0;         /* completed inline (memory store) */
	c->kind = K_DECIDE_ASYNC; /* done() now owed */
	return SL_AGAIN;
}

/* ---- /v1/release ---- */

static int handle_release(struct sl_admin *a, struct sl_admin_call *c,
                          const struct sl_admin_req *req)
{
	cJSON *root;
	const cJSON *id;
	unsigned worker, slot;
	uint32_t gen;
	struct sl_lease_table *t;
	struct lease *l;
	bool found = false;
	int rc;

	root = cJSON_ParseWithLength(req->body.p ? req->body.p : "", req->body.len);
	if (root == NULL || !cJSON_IsObject(root)) {
		cJSON_Delete(root);
		respond_error(&c->resp, 400, "bad_json", "the body must be a JSON object");
		return 0;
	}
	id = cJSON_GetObjectItemCaseSensitive(root, "lease");
	if (!cJSON_IsString(id)) {
		cJSON_Delete(root);
		respond_error(&c->resp, 400, "bad_field", "lease must be a string");
		return 0;
	}
	rc = parse_lease_id(id->valuestring, &worker, &slot, &gen);
	cJSON_Delete(root);
	if (rc < 0 || worker >= a->g->nworkers) {
		respond_error(&c->resp, 404, "unknown_lease", "no such lease");
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
		respond_error(&c->resp, 404, "unknown_lease",
		              "no such lease (released, expired or never issued)");
		return 0;
	}
	c->kind = K_RELEASE;
	c->rel_table = t; /* cleared by release_done when it completes inline */
	c->rel_slot = slot;
	rc = release_submit(a, l, req->now);
	if (rc < 0) {
		c->kind = K_NONE;
		c->rel_table = NULL;
		release_respond(c, rc);
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

/* ---- routing ---- */

static bool str_is(struct sl_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

static const struct sl_header *find_header(const struct sl_admin_req *req, const char *name)
{
	size_t n = strlen(name);
	for (size_t i = 0; i < req->nheaders; i++)
		if (req->headers[i].name.len == n &&
		    strncasecmp(req->headers[i].name.p, name, n) == 0)
			return &req->headers[i];
	return NULL;
}

/* Constant-time in the presented token's length. */
static bool token_ok(const struct sl_admin_req *req, const char *token)
{
	const struct sl_header *h = find_header(req, "Authorization");
	size_t tlen = strlen(token), i;
	const char *v;
	size_t vlen;
	unsigned diff;

	if (h == NULL)
		return false;
	v = h->value.p;
	vlen = h->value.len;
	while (vlen > 0 && (*v == ' ' || *v == '\t'))
		v++, vlen--;
	if (vlen < 7 || strncasecmp(v, "Bearer ", 7) != 0)
		return false;
	v += 7;
	vlen -= 7;
	while (vlen > 0 && *v == ' ')
		v++, vlen--;
	while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
		vlen--;
	diff = (unsigned)(vlen ^ tlen);
	for (i = 0; i < vlen; i++)
		diff |= (unsigned char)v[i] ^ (unsigned char)token[i % (tlen ? tlen : 1)];
	return diff == 0 && tlen > 0;
}

static void handle_metrics(struct sl_admin *a, struct sl_admin_call *c)
{
	struct sl_store_stats st;
	struct sl_store *s = a->g->stats_store ? a->g->stats_store : a->store;
	long n;

	memset(&st, 0, sizeof(st));
	if (s != NULL && s->ops->stats != NULL)
		s->ops->stats(s, &st);
	n = sl_metrics_render(a->g->metrics, s ? &st : NULL, c->resp.body, sizeof(c->resp.body));
	if (n < 0) {
		respond_error(&c->resp, 500, "too_large", "the metrics do not fit the response");
		return;
	}
	c->resp.status = 200;
	c->resp.content_type = ct_prom;
	c->resp.len = (size_t)n;
}

int sl_admin_handle(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	const struct sl_policy *p = req->policy;
	bool get = str_is(req->method, "GET") || str_is(req->method, "HEAD");
	bool post = str_is(req->method, "POST");

	c->admin = a;
	c->policy = p;
	c->start = uv_hrtime();
	c->kind = K_NONE;
	c->rel_table = NULL;
	c->resp.status = 500;
	c->resp.content_type = ct_json;
	c->resp.nextra = 0;
	c->resp.len = 0;
	if (p != NULL)
		a->lease_ttl = p->admin.lease_ttl > 0 ? p->admin.lease_ttl : LEASE_TTL_DEFAULT;

	if (str_is(req->path, "/healthz")) {
		if (!get) {
			add_extra(&c->resp, "Allow", "GET, HEAD");
			respond_error(&c->resp, 405, "method_not_allowed", "use GET");
			return 0;
		}
		respond_json(&c->resp, 200, "{\"status\":\"ok\"}");
		return 0;
	}
	if (p != NULL && p->admin.token != NULL && p->admin.token[0] != '\0' &&
	    !token_ok(req, p->admin.token)) {
		add_extra(&c->resp, "WWW-Authenticate", "Bearer realm=\"sluice-admin\"");
		respond_error(&c->resp, 401, "unauthorized", "a valid bearer token is required");
		return 0;
	}
	if (str_is(req->path, "/metrics")) {
		if (!get) {
			add_extra(&c->resp, "Allow", "GET, HEAD");
			respond_error(&c->resp, 405, "method_not_allowed", "use GET");
			return 0;
		}
		handle_metrics(a, c);
		return 0;
	}
	if (str_is(req->path, "/v1/decide") || str_is(req->path, "/v1/release")) {
		if (!post) {
			add_extra(&c->resp, "Allow", "POST");
			respond_error(&c->resp, 405, "method_not_allowed", "use POST");
			return 0;
		}
		if (str_is(req->path, "/v1/decide"))
			return handle_decide(a, c, req);
		return handle_release(a, c, req);
	}
	respond_error(&c->resp, 404, "not_found", "no such admin endpoint");
	return 0;
}
