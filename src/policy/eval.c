/* Evaluation: turns an identified request into one batch of checks for the
 * store (global limits in order, then the matched route's), and the store's
 * answer into a decision. All buffers live in the caller's sl_eval.
 *
 * The one decision to know (DESIGN.md section 3): with a valid key, every
 * applicable limit goes into one all-or-nothing batch, so a denied request
 * consumes nothing anywhere. When a key is required but missing or unknown,
 * the batch holds only the `before_key` limits (ip/route-only) and the
 * answer is 401 unless one of them denies: they stay consumed, which is
 * what bounds key enumeration by the per-IP limit. */
#include <string.h>
#include <sluice/error.h>
#include "policy/eval-int.h"
#include "policy/normalize.h"

/* Key bytes of one check: per part, 1 byte kind, 2 bytes big-endian length,
 * then the value. Lengths make the encoding unambiguous whatever the bytes. */
#define PART_HDR 3

static bool needs_identity(const struct sl_limit *l)
{
	if (l->per_plan)
		return true;
	for (unsigned i = 0; i < l->nkey && i < SL_MAX_KEY_PARTS; i++) {
		uint8_t k = l->key[i].kind;

		if (k == SL_DESC_KEY || k == SL_DESC_ACCOUNT || k == SL_DESC_PLAN)
			return true;
	}
	return false;
}

/* Append one part. Returns 1 when written, 0 when the descriptor is
 * missing, SL_ENOMEM when keybuf is full. */
static int put_part(struct sl_eval *ev, const struct sl_request *req, const struct sl_desc *d)
{
	char *hdr = ev->keybuf + ev->keyused;
	size_t room = sizeof(ev->keybuf) - ev->keyused;
	struct sl_str v = {NULL, 0};
	size_t len;

	if (room < PART_HDR)
		return SL_ENOMEM;
	room -= PART_HDR;
	switch (d->kind) {
	case SL_DESC_IP:
		v = (struct sl_str){ev->ip, strlen(ev->ip)};
		if (v.len == 0)
			return 0;
		break;
	case SL_DESC_KEY:
		/* Without an embedded key store (no accounts configured) every
		 * presented key is counted as itself, by its hash. */
		if (ev->key_state != SL_KEY_KNOWN &&
		    !(ev->key_state == SL_KEY_UNKNOWN && ev->policy->nkeys == 0 &&
		      ev->policy->live == NULL))
			return 0;
		v = (struct sl_str){(const char *)ev->key_sha256, sizeof(ev->key_sha256)};
		break;
	case SL_DESC_ACCOUNT:
		if (ev->account_name.len == 0)
			return 0;
		v = ev->account_name;
		break;
	case SL_DESC_PLAN:
		if (ev->plan == NULL)
			return 0;
		v = (struct sl_str){ev->plan->name, strlen(ev->plan->name)};
		break;
	case SL_DESC_ROUTE:
		if (ev->route == NULL)
			return 0;
		v = (struct sl_str){ev->route->name, strlen(ev->route->name)};
		break;
	case SL_DESC_METHOD:
		v = req->method;
		break;
	case SL_DESC_PATH:
		v = req->path; /* canonical, trailing slash folded (normalize) */
		break;
	case SL_DESC_HOST:
		if (req->host.len == 0)
			return 0;
		v = req->host;
		break;
	case SL_DESC_HEADER:
		if (d->arg == NULL || !sl_req_header(req, d->arg, strlen(d->arg), &v))
			return 0;
		break;
	case SL_DESC_QUERY: {
		long n;

		if (d->arg == NULL)
			return 0;
		n = sl_query_param(req->query, d->arg, strlen(d->arg), hdr + PART_HDR,
		                   room < 0xffff ? room : 0xffff);
		if (n == -1)
			return 0;
		if (n < 0)
			return SL_ENOMEM;
		len = (size_t)n;
		goto header;
	}
	case SL_DESC_GLOBAL:
		break;
	default:
		return 0;
	}
	if (v.len > room || v.len > 0xffff)
		return SL_ENOMEM;
	if (v.len > 0)
		memcpy(hdr + PART_HDR, v.p, v.len);
	if (d->kind == SL_DESC_PATH && ev->path_upper && !ev->policy->normalize.case_sensitive)
		for (size_t i = 0; i < v.len; i++) {
			char *ch = hdr + PART_HDR + i;

			if (*ch >= 'A' && *ch <= 'Z')
				*ch = (char)(*ch - 'A' + 'a');
		}
	len = v.len;
header:
	hdr[0] = (char)d->kind;
	hdr[1] = (char)(len >> 8);
	hdr[2] = (char)(len & 0xff);
	ev->keyused += PART_HDR + len;
	return 1;
}

/* The live account's override of limit l, or NULL. An account holds at
 * most SL_LIVE_OVERRIDES of them: a short scan of names. */
static const struct sl_live_override *live_override(const struct sl_eval *ev,
                                                    const struct sl_limit *l)
{
	if (!ev->live_found)
		return NULL;
	for (unsigned i = 0; i < ev->live.nover && i < SL_LIVE_OVERRIDES; i++)
		if (strcmp(ev->live.over[i].limit, l->name) == 0)
			return &ev->live.over[i];
	return NULL;
}

/* Add the check of limit l, unless it does not apply. Returns 0 or
 * SL_ENOMEM (too many checks or key bytes). */
static int add_limit(struct sl_eval *ev, const struct sl_request *req, const struct sl_limit *l)
{
	const struct sl_limit_spec *spec = &l->spec;
	uint64_t limit_id = l->limit_id;
	size_t start = ev->keyused;
	struct sl_check *c;

	const struct sl_live_override *o = live_override(ev, l);

	if (o != NULL) {
		/* the account's own value, whatever its plan says */
		spec = &o->spec;
		limit_id = o->limit_id;
	} else if (l->per_plan) {
		if (ev->plan == NULL || l->plan_spec == NULL)
			return 0;
		spec = &l->plan_spec[ev->plan->index];
		if (spec->algo == 0)
			return 0; /* plan absent from the map */
		if (l->plan_limit_id != NULL)
			limit_id = l->plan_limit_id[ev->plan->index];
	}
	if (ev->nchecks == SL_EVAL_MAX_CHECKS)
		return SL_ENOMEM;
	for (unsigned i = 0; i < l->nkey && i < SL_MAX_KEY_PARTS; i++) {
		int rc = put_part(ev, req, &l->key[i]);

		if (rc <= 0) {
			ev->keyused = start;
			return rc; /* 0: a descriptor is missing, the limit is skipped */
		}
	}
	c = &ev->checks[ev->nchecks];
	memset(c, 0, sizeof(*c));
	c->spec = spec;
	c->limit_id = limit_id;
	c->name = l->name;
	c->key = ev->keybuf + start;
	c->key_len = (uint32_t)(ev->keyused - start);
	/* a request holds one in-flight slot whatever its cost */
	c->cost = spec->algo == SL_ALGO_CONCURRENCY ? 1 : ev->cost;
	ev->limits[ev->nchecks++] = l;
	return 0;
}

/* Call fn for every limit that applies to the route: global, then route. */
#define FOR_EACH_LIMIT(ev, p, l, body)                                                             \
	do {                                                                                       \
		for (size_t i_ = 0; i_ < (p)->nlimits; i_++) {                                     \
			const struct sl_limit *l = &(p)->limits[i_];                               \
			body;                                                                      \
		}                                                                                  \
		if ((ev)->route != NULL)                                                           \
			for (size_t i_ = 0; i_ < (ev)->route->nlimits; i_++) {                     \
				const struct sl_limit *l = &(ev)->route->limits[i_];               \
				body;                                                              \
			}                                                                          \
	} while (0)

/* The request every match and key sees (docs/normalize.md): *cr is req
 * with its path and host in canonical form, the path as route matching
 * compares it (trailing slash folded unless `trailing_slash: strict`).
 * ev->path / ev->host keep the canonical forms for the proxy. Bounded by
 * the lengths of the path and host; copies only what must change. */
static int normalize(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req,
                     struct sl_request *cr)
{
	int rc;

	*cr = *req;
	ev->path = req->path;
	ev->host = req->host;
	rc = sl_norm_path(req->path, ev->pathbuf, sizeof(ev->pathbuf), &ev->path, &ev->path_upper);
	if (rc == 0)
		rc = sl_norm_host(req->host, ev->hostbuf, sizeof(ev->hostbuf), &ev->host);
	if (rc != 0)
		return rc;
	cr->path = sl_norm_match_path(ev->path, !p->normalize.strict_slash);
	cr->host = ev->host;
	return 0;
}

static void eval_reset(struct sl_eval *ev, const struct sl_policy *p, int64_t now)
{
	ev->policy = p;
	ev->nchecks = 0;
	ev->keyused = 0;
	ev->pending_status = 0;
	memset(&ev->decision, 0, sizeof(ev->decision));
	ev->decision.denied = -1;
	ev->decision.primary = -1;
	ev->decision.now = now;
	ev->batch.checks = ev->checks;
	ev->batch.n = 0;
	ev->batch.op = SL_OP_DECIDE;
	ev->batch.now = now;
	ev->batch.status = SL_OK;
	ev->batch.denied = 0;
	ev->batch.delay = 0;
	ev->batch.time = now;
	ev->unreleased = false;
}

/* A caller whose account is suspended (403; when `suspended` counts: an
 * operator's peek by account name still sees it), or who presented a key
 * neither the config nor the live store knows (401; expired and revoked
 * keys are unknown): it gets only its before-key limits, counted (a denial
 * among them answers first), the others untouched. */
static bool refused_caller(struct sl_eval *ev, const struct sl_policy *p, bool suspended)
{
	if (suspended && ev->live_found && ev->live.suspended) {
		ev->pending_status = 403;
		ev->decision.suspended = true;
		return true;
	}
	if (ev->key_state == SL_KEY_UNKNOWN && (p->nkeys > 0 || p->live != NULL) &&
	    ev->account_name.len == 0) {
		ev->pending_status = 401;
		ev->decision.unauthorized_unknown = true;
		return true;
	}
	return false;
}

int sl_eval_begin(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *raw,
                  int64_t now)
{
	struct sl_request canon;
	const struct sl_request *req = &canon;
	bool pending = false;
	int rc = 0;

	eval_reset(ev, p, now);
	rc = normalize(ev, p, raw, &canon);
	if (rc == 0)
		rc = sl_identify(ev, p, req);
	if (rc != 0)
		return rc;
	ev->cost = req->cost;
	ev->unreleased = req->unreleased;
	if (ev->cost == 0)
		ev->cost = ev->route != NULL && ev->route->cost > 0 ? ev->route->cost : 1;

	/* A presented key the key store does not know is always 401 (with or
	 * without `required`: skipping its limits instead would let a bad key
	 * dodge every per-key limit). A missing key is 401 when required and
	 * some limit needs it. Either way the before-key limits still apply
	 * and a denial among them answers first. */
	if (refused_caller(ev, p, true)) {
		pending = true;
	} else if (p->identify.key_required && ev->account_name.len == 0) {
		FOR_EACH_LIMIT(ev, p, l, {
			if (needs_identity(l))
				pending = true;
		});
	}
	if (pending && ev->pending_status == 0) {
		ev->pending_status = 401;
		ev->decision.unauthorized_unknown = ev->key_state == SL_KEY_UNKNOWN;
	}
	FOR_EACH_LIMIT(ev, p, l, {
		if (pending && !l->before_key)
			continue;
		rc = add_limit(ev, req, l);
		if (rc != 0)
			goto fail;
	});
	ev->batch.n = ev->nchecks;
	return 0;
fail:
	ev->nchecks = 0;
	ev->batch.n = 0;
	return rc;
}

/* Whether every key part of l is a descriptor in `have` (a bit per enum
 * sl_desc_kind); a per-plan limit needs the plan too. */
static bool keyed_within(const struct sl_limit *l, unsigned have)
{
	if (l->per_plan && !(have >> SL_DESC_PLAN & 1))
		return false;
	for (unsigned i = 0; i < l->nkey && i < SL_MAX_KEY_PARTS; i++)
		if (!(have >> l->key[i].kind & 1))
			return false;
	return true;
}

int sl_eval_peek_begin(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *raw,
                       int64_t now, unsigned have)
{
	struct sl_request canon;
	bool pending;
	int rc;

	eval_reset(ev, p, now);
	ev->batch.op = SL_OP_PEEK;
	rc = normalize(ev, p, raw, &canon);
	if (rc == 0)
		rc = sl_identify(ev, p, &canon);
	if (rc != 0)
		return rc;
	ev->route = NULL; /* route limits belong to requests on the route */
	ev->cost = 0;
	/* As in sl_eval_begin: an unknown key (the config's or the live
	 * store's: expired and revoked keys are unknown) is 401 and sees only
	 * the before-key limits; a caller whose account is suspended is 403
	 * (an operator's peek by account name still sees it); a missing key is
	 * not an error for a peek. */
	pending = refused_caller(ev, p, have == SL_PEEK_CALLER);
	for (size_t i = 0; i < p->nlimits; i++) {
		const struct sl_limit *l = &p->limits[i];

		if ((pending && !l->before_key) || !keyed_within(l, have))
			continue;
		rc = add_limit(ev, &canon, l);
		if (rc != 0) {
			ev->nchecks = 0;
			ev->batch.n = 0;
			return rc;
		}
	}
	for (size_t i = 0; i < ev->nchecks; i++)
		ev->checks[i].cost = 0;
	ev->batch.n = ev->nchecks;
	return 0;
}

static int deny_status(const struct sl_policy *p, const struct sl_limit *l)
{
	int st = l != NULL ? l->status : 0;

	if (st == 0 || st == 429)
		st = p->responses.rejected_status > 0 ? p->responses.rejected_status : 429;
	return st;
}

/* Which limits may speak for "requests per window" in X-RateLimit-*:
 * windowed ones (rate, quota, sliding) first, then concurrency slots (no
 * window, so only when nothing windowed applies), unlimited last. */
static int primary_class(const struct sl_check *c)
{
	if (sl_check_unlimited(c))
		return 2;
	if (c->spec != NULL && c->spec->algo == SL_ALGO_CONCURRENCY)
		return 1;
	return 0;
}

/* The most restrictive matched limit (DESIGN.md section 4): fewest units
 * remaining, ties to the smaller limit, within the best class above. */
static int most_restrictive(const struct sl_eval *ev)
{
	int best = -1;

	for (size_t i = 0; i < ev->nchecks; i++) {
		const struct sl_check *c = &ev->checks[i], *b;
		int cc, bc;

		if (best < 0) {
			best = (int)i;
			continue;
		}
		b = &ev->checks[best];
		cc = primary_class(c);
		bc = primary_class(b);
		if (cc != bc) {
			if (cc < bc)
				best = (int)i;
			continue;
		}
		if (c->res.remaining < b->res.remaining ||
		    (c->res.remaining == b->res.remaining && c->res.limit < b->res.limit))
			best = (int)i;
	}
	return best;
}

int sl_eval_finish(struct sl_eval *ev)
{
	struct sl_decision *d = &ev->decision;
	const struct sl_batch *b = &ev->batch;
	const struct sl_policy *p = ev->policy;

	d->status = ev->pending_status ? ev->pending_status : 200;
	d->delay = 0;
	d->denied = -1;
	d->primary = -1;
	d->store_error = false;
	d->now = b->time != 0 ? b->time : b->now;
	if (ev->nchecks == 0)
		return d->status;
	if (b->status < 0) {
		/* Store failure: on_error deny answers 503 (the client can
		 * retry; 429 would blame it); allow lets the request through
		 * (or on to its 401) with no rate-limit headers. */
		d->store_error = true;
		if (p->store.on_error_deny)
			d->status = 503;
		return d->status;
	}
	if (b->status == SL_DENY) {
		size_t which = b->denied;

		/* An entitlement (`deny`) outranks a temporary denial: retrying
		 * after the 429 would only meet the 403. */
		for (size_t i = 0; i < ev->nchecks; i++) {
			if (ev->checks[i].spec != NULL &&
			    ev->checks[i].spec->algo == SL_ALGO_DENY) {
				which = i;
				break;
			}
		}
		if (which < ev->nchecks) {
			struct sl_check *c = &ev->checks[which];

			d->denied = (int)which;
			d->primary = d->denied;
			d->status = deny_status(p, ev->limits[which]);
			/* Nobody will release these slots: they free when the
			 * leases lapse, which is what reset_after measures. */
			if (ev->unreleased && c->spec != NULL &&
			    c->spec->algo == SL_ALGO_CONCURRENCY && c->res.retry_after > 0 &&
			    c->res.reset_after > c->res.retry_after)
				c->res.retry_after = c->res.reset_after;
		} else {
			d->status = deny_status(p, NULL);
		}
		return d->status;
	}
	if (b->status == SL_DELAY && b->delay > 0)
		d->delay = b->delay;
	d->primary = most_restrictive(ev);
	return d->status;
}

size_t sl_eval_release(struct sl_eval *ev)
{
	size_t n = 0;

	ev->batch.n = 0;
	if (ev->decision.denied >= 0 || ev->decision.store_error) {
		ev->nchecks = 0;
		return 0;
	}
	for (size_t i = 0; i < ev->nchecks; i++) {
		if (ev->checks[i].spec == NULL || ev->checks[i].spec->algo != SL_ALGO_CONCURRENCY)
			continue;
		if (n != i) {
			ev->checks[n] = ev->checks[i];
			ev->limits[n] = ev->limits[i];
		}
		n++;
	}
	ev->nchecks = n;
	ev->batch.checks = ev->checks;
	ev->batch.n = n;
	ev->batch.op = SL_OP_RELEASE;
	ev->decision.primary = -1;
	return n;
}
