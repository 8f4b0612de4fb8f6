/* Evaluation: which checks a request gets (order, per-plan skip, 401
 * before-key semantics, cost, key bytes) and the decision sl_eval_finish
 * makes from the store's answer, filled in by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include "eval_fixture.h"

static struct fixture F;
static struct sl_eval EV;

static void begin(struct freq *q)
{
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q->r, T0), 0);
	assert_ptr_equal(EV.batch.checks, EV.checks);
	assert_int_equal(EV.batch.n, EV.nchecks);
	assert_int_equal(EV.batch.op, SL_OP_DECIDE);
	assert_int_equal(EV.batch.now, T0);
}

static void names_are(const char *want)
{
	char got[256] = "";

	for (size_t i = 0; i < EV.nchecks; i++) {
		if (i)
			strncat(got, ",", sizeof(got) - strlen(got) - 1);
		strncat(got, EV.checks[i].name, sizeof(got) - strlen(got) - 1);
	}
	assert_string_equal(got, want);
}

static void allow_all(void)
{
	for (size_t i = 0; i < EV.nchecks; i++) {
		const struct sl_limit_spec *s = EV.checks[i].spec;

		EV.checks[i].res = (struct sl_result){.outcome = SL_ALLOWED,
		                                      .limit = s->n,
		                                      .remaining = s->n - 1,
		                                      .reset_after = s->interval,
		                                      .window = s->period};
	}
	EV.batch.status = SL_OK;
}

static void valid_key_gets_every_limit_in_order(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "POST", "/v1/messages/batch", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_acme");
	begin(&q);
	names_are("ip,key,tier,batch");
	assert_int_equal(EV.pending_status, 0);
	assert_ptr_equal(EV.checks[2].spec, &F.tier_spec[PLAN_RESELLER]);
	assert_int_equal(EV.checks[2].limit_id, 2002);
	assert_int_equal(EV.checks[0].limit_id, 1000);
	/* the API key is counted by its SHA-256, never its text */
	uint8_t sha[32];

	fx_sha256("sk_acme", sha);
	assert_int_equal(EV.checks[1].key_len, 3 + 32);
	assert_memory_equal(EV.checks[1].key, "\x02\x00\x20", 3);
	assert_memory_equal(EV.checks[1].key + 3, sha, 32);
	assert_memory_equal(EV.checks[0].key,
	                    "\x01\x00\x0b"
	                    "203.0.113.7",
	                    14);
	for (size_t i = 0; i < EV.nchecks; i++)
		assert_int_equal(EV.checks[i].cost, 1);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_int_equal(EV.decision.denied, -1);
}

static void plan_missing_from_map_skips_the_limit(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_fred"); /* plan free: not in the tier map */
	begin(&q);
	names_are("ip,key");
	assert_int_equal(EV.pending_status, 0);
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_bob");
	begin(&q);
	names_are("ip,key,tier");
	assert_ptr_equal(EV.checks[2].spec, &F.tier_spec[PLAN_STANDARD]);
	assert_int_equal(EV.checks[2].limit_id, 2001);
}

static void missing_key_is_401_and_before_key_limits_still_apply(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "POST", "/oauth/token", NULL);
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	names_are("ip,oauth");
	assert_int_equal(EV.pending_status, 401);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 401);
	assert_false(EV.decision.unauthorized_unknown);
	assert_int_equal(EV.decision.denied, -1);

	/* the per-IP limit denies first: its 429, not 401 */
	begin(&q);
	allow_all();
	EV.batch.status = SL_DENY;
	EV.batch.denied = 1;
	EV.checks[1].res.outcome = SL_REJECTED;
	assert_int_equal(sl_eval_finish(&EV), 429);
	assert_int_equal(EV.decision.denied, 1);
	assert_int_equal(EV.decision.primary, 1);
}

static void unknown_key_is_401_unknown(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "Authorization", "Bearer sk_guess");
	begin(&q);
	names_are("ip");
	assert_int_equal(EV.pending_status, 401);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 401);
	assert_true(EV.decision.unauthorized_unknown);
	assert_int_equal(EV.decision.primary, 0);
}

static void key_not_required_skips_identity_limits(void **state)
{
	struct freq q;

	fx_init(&F);
	F.p.identify.key_required = false;
	freq_init(&q, "POST", "/v1/messages/batch", NULL);
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	names_are("ip");
	assert_int_equal(EV.pending_status, 0);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 200);
}

static void unknown_key_is_401_even_when_not_required(void **state)
{
	struct freq q;

	fx_init(&F);
	F.p.identify.key_required = false;
	freq_init(&q, "POST", "/v1/messages/batch", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_unknown");
	begin(&q);
	names_are("ip");
	assert_int_equal(EV.pending_status, 401);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 401);
	assert_true(EV.decision.unauthorized_unknown);
}

static void no_limit_needs_the_key_means_no_401(void **state)
{
	struct freq q;

	fx_init(&F);
	F.p.nlimits = 1; /* only the per-IP limit */
	freq_init(&q, "POST", "/oauth/token", NULL);
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	names_are("ip,oauth");
	assert_int_equal(EV.pending_status, 0);
}

static void decide_named_account_needs_no_key(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	q.r.ip = S("198.51.100.1");
	q.r.account = S("bob");
	begin(&q);
	names_are("ip,tier"); /* the key limit has no key to count */
	assert_int_equal(EV.pending_status, 0);
	assert_ptr_equal(EV.checks[1].spec, &F.tier_spec[PLAN_STANDARD]);
}

static void cost_from_request_route_or_default(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/search", "mode=deep");
	freq_header(&q, "X-Api-Key", "sk_bob");
	begin(&q);
	assert_int_equal(EV.cost, 5);
	assert_int_equal(EV.checks[0].cost, 5);
	q.r.cost = 7;
	begin(&q);
	assert_int_equal(EV.cost, 7);
	freq_init(&q, "GET", "/other", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	begin(&q);
	assert_int_equal(EV.cost, 2); /* route "any" */
	F.p.nroutes = 2;
	begin(&q);
	assert_null(EV.route);
	assert_int_equal(EV.cost, 1);
}

static void key_bytes_are_unambiguous(void **state)
{
	struct freq q;
	char a[64], b[64];
	size_t alen, blen;

	fx_init(&F);
	F.p.identify.key_required = false;
	F.limits[0].key[0] = (struct sl_desc){SL_DESC_HEADER, "X-A"};
	F.limits[0].key[1] = (struct sl_desc){SL_DESC_HEADER, "X-B"};
	F.limits[0].nkey = 2;
	F.p.nlimits = 1;
	F.p.nroutes = 0;

	freq_init(&q, "GET", "/", NULL);
	freq_header(&q, "X-A", "ab");
	freq_header(&q, "X-B", "c");
	begin(&q);
	assert_int_equal(EV.nchecks, 1);
	alen = EV.checks[0].key_len;
	memcpy(a, EV.checks[0].key, alen);
	freq_init(&q, "GET", "/", NULL);
	freq_header(&q, "X-A", "a");
	freq_header(&q, "X-B", "bc");
	begin(&q);
	blen = EV.checks[0].key_len;
	memcpy(b, EV.checks[0].key, blen);
	assert_int_equal(alen, blen);
	assert_memory_not_equal(a, b, alen);

	/* a missing header skips the limit (key not required) */
	freq_init(&q, "GET", "/", NULL);
	freq_header(&q, "X-A", "a");
	begin(&q);
	assert_int_equal(EV.nchecks, 0);
	assert_int_equal(EV.keyused, 0);
}

static void descriptor_kinds_build_keys(void **state)
{
	struct freq q;

	fx_init(&F);
	F.limits[0].key[0] = (struct sl_desc){SL_DESC_QUERY, "tenant"};
	F.limits[0].key[1] = (struct sl_desc){SL_DESC_ROUTE, NULL};
	F.limits[0].key[2] = (struct sl_desc){SL_DESC_METHOD, NULL};
	F.limits[0].key[3] = (struct sl_desc){SL_DESC_PLAN, NULL};
	F.limits[0].nkey = 4;
	F.limits[1].key[0] = (struct sl_desc){SL_DESC_GLOBAL, NULL};
	F.limits[1].key[1] = (struct sl_desc){SL_DESC_HOST, NULL};
	F.limits[1].nkey = 2;
	freq_init(&q, "GET", "/x", "tenant=a%2Fb");
	q.r.host = S("api.example");
	freq_header(&q, "X-Api-Key", "sk_bob");
	begin(&q);
	names_are("ip,key,tier");
	static const char want0[] = "\x0a\x00\x03"
	                            "a/b"
	                            "\x05\x00\x03"
	                            "any"
	                            "\x06\x00\x03"
	                            "GET"
	                            "\x04\x00\x08"
	                            "standard";
	assert_int_equal(EV.checks[0].key_len, sizeof(want0) - 1);
	assert_memory_equal(EV.checks[0].key, want0, sizeof(want0) - 1);
	static const char want1[] = "\x0b\x00\x00"
	                            "\x08\x00\x0b"
	                            "api.example";
	assert_int_equal(EV.checks[1].key_len, sizeof(want1) - 1);
	assert_memory_equal(EV.checks[1].key, want1, sizeof(want1) - 1);
	/* the account by its name */
	assert_int_equal(EV.checks[2].key_len, 3 + 3);
	assert_memory_equal(EV.checks[2].key,
	                    "\x03\x00\x03"
	                    "bob",
	                    6);
}

static void oversized_key_bytes_refused(void **state)
{
	struct freq q;
	static char big[SL_EVAL_KEYBUF];

	fx_init(&F);
	F.limits[0].key[0] = (struct sl_desc){SL_DESC_HEADER, "X-Big"};
	memset(big, 'x', sizeof(big) - 1);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Big", big);
	freq_header(&q, "X-Api-Key", "sk_bob");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), SL_ENOMEM);
	assert_int_equal(EV.batch.n, 0);
}

static void too_many_checks_refused(void **state)
{
	static struct sl_limit many[SL_EVAL_MAX_CHECKS + 1];
	struct freq q;

	fx_init(&F);
	for (unsigned i = 0; i < SL_EVAL_MAX_CHECKS + 1; i++)
		fx_limit(&many[i], "g", i, SL_DESC_GLOBAL, true, 10, SL_NS_PER_SEC);
	F.p.limits = many;
	F.p.nlimits = SL_EVAL_MAX_CHECKS;
	F.p.nroutes = 0;
	freq_init(&q, "GET", "/x", NULL);
	begin(&q);
	assert_int_equal(EV.nchecks, SL_EVAL_MAX_CHECKS);
	F.p.nlimits = SL_EVAL_MAX_CHECKS + 1;
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), SL_ENOMEM);
}

static void denial_status_delay_and_primary(void **state)
{
	struct freq q;
	struct sl_limit_spec deny = {.algo = SL_ALGO_DENY};

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	allow_all();
	EV.batch.status = SL_DELAY;
	EV.batch.delay = 250 * 1000000LL;
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_int_equal(EV.decision.delay, 250 * 1000000LL);

	/* an entitlement: its own status */
	F.limits[1].status = 403;
	F.limits[1].spec = deny;
	begin(&q);
	allow_all();
	EV.batch.status = SL_DENY;
	EV.batch.denied = 1;
	assert_int_equal(sl_eval_finish(&EV), 403);
	assert_int_equal(EV.decision.denied, 1);
	assert_int_equal(EV.decision.primary, 1);
	assert_int_equal(EV.decision.delay, 0);

	/* `rejected: status` changes the default 429 */
	F.limits[1].status = 429;
	F.p.responses.rejected_status = 503;
	begin(&q);
	allow_all();
	EV.batch.status = SL_DENY;
	EV.batch.denied = 0;
	assert_int_equal(sl_eval_finish(&EV), 503);
}

static void most_restrictive_fewest_remaining_then_smaller_limit(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	names_are("ip,key,tier");
	fx_result(&EV, "ip", 300, 40, SL_NS_PER_SEC, SL_NS_PER_MIN);
	fx_result(&EV, "key", 100, 41, SL_NS_PER_SEC, SL_NS_PER_MIN);
	fx_result(&EV, "tier", 1000, 999, SL_NS_PER_SEC, SL_NS_PER_MIN);
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_int_equal(EV.decision.primary, 0);
	fx_result(&EV, "key", 100, 40, SL_NS_PER_SEC, SL_NS_PER_MIN); /* tie: smaller limit */
	sl_eval_finish(&EV);
	assert_int_equal(EV.decision.primary, 1);
	fx_result(&EV, "ip", 100, 40, SL_NS_PER_SEC, SL_NS_PER_MIN); /* full tie: first */
	sl_eval_finish(&EV);
	assert_int_equal(EV.decision.primary, 0);

	/* unlimited is never primary unless all are */
	fx_result(&EV, "ip", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	fx_result(&EV, "key", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	sl_eval_finish(&EV);
	assert_int_equal(EV.decision.primary, 2);
	fx_result(&EV, "tier", SL_UNLIMITED, SL_UNLIMITED, 0, 0);
	sl_eval_finish(&EV);
	assert_int_equal(EV.decision.primary, 0);
}

static void store_failure_follows_on_error(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	EV.batch.status = SL_EIO;
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_true(EV.decision.store_error);
	assert_int_equal(EV.decision.primary, -1);
	F.p.store.on_error_deny = true;
	assert_int_equal(sl_eval_finish(&EV), 503);
	assert_true(EV.decision.store_error);
	assert_int_equal(EV.decision.denied, -1);

	/* a missing key stays a 401 when the store fails open */
	F.p.store.on_error_deny = false;
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	begin(&q);
	EV.batch.status = SL_ETIMEDOUT;
	assert_int_equal(sl_eval_finish(&EV), 401);
}

static void no_checks_is_200(void **state)
{
	struct freq q;

	fx_init(&F);
	F.p.nlimits = 0;
	F.p.nroutes = 0;
	freq_init(&q, "GET", "/x", NULL);
	begin(&q);
	assert_int_equal(EV.nchecks, 0);
	assert_int_equal(sl_eval_finish(&EV), 200);
	assert_int_equal(EV.decision.primary, -1);
}

static void release_keeps_only_concurrency_slots(void **state)
{
	struct freq q;
	struct sl_limit_spec conc = {.algo = SL_ALGO_CONCURRENCY, .n = 5, .period = SL_NS_PER_MIN};

	fx_init(&F);
	F.limits[1].spec = conc;
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_peer(&q, "203.0.113.7");
	q.r.cost = 3;
	begin(&q);
	/* a request holds one slot whatever its cost */
	assert_int_equal(EV.checks[0].cost, 3);
	assert_int_equal(EV.checks[1].cost, 1);
	allow_all();
	sl_eval_finish(&EV);
	assert_int_equal(sl_eval_release(&EV), 1);
	assert_int_equal(EV.batch.op, SL_OP_RELEASE);
	assert_int_equal(EV.batch.n, 1);
	assert_string_equal(EV.checks[0].name, "key");

	/* a denied request took nothing */
	begin(&q);
	allow_all();
	EV.batch.status = SL_DENY;
	EV.batch.denied = 0;
	sl_eval_finish(&EV);
	assert_int_equal(sl_eval_release(&EV), 0);
	assert_int_equal(EV.batch.n, 0);
}

/* Nobody releases a check listener's slots: its 429 waits for the lease
 * lapse (reset_after), not the 1 s guess made for proxied responses. */
static void unreleased_concurrency_denial_retries_at_the_lease_lapse(void **state)
{
	struct freq q;
	struct sl_limit_spec conc = {
	        .algo = SL_ALGO_CONCURRENCY, .n = 1, .period = 2 * SL_NS_PER_SEC};
	const int64_t lapse = 1700 * 1000000LL; /* ns: the state expires in 1.7 s */

	fx_init(&F);
	F.limits[1].spec = conc;
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_peer(&q, "203.0.113.7");
	for (int unreleased = 0; unreleased < 2; unreleased++) {
		q.r.unreleased = unreleased;
		begin(&q);
		assert_int_equal(EV.unreleased, unreleased);
		allow_all();
		EV.checks[1].res = (struct sl_result){.outcome = SL_REJECTED,
		                                      .limit = 1,
		                                      .reset_after = lapse,
		                                      .retry_after = SL_NS_PER_SEC};
		EV.batch.status = SL_DENY;
		EV.batch.denied = 1;
		assert_int_equal(sl_eval_finish(&EV), 429);
		assert_int_equal(EV.checks[1].res.retry_after, unreleased ? lapse : SL_NS_PER_SEC);
	}
	/* a cost that never fits stays "no retry"; other algorithms untouched */
	begin(&q);
	allow_all();
	EV.checks[1].res =
	        (struct sl_result){.outcome = SL_REJECTED, .limit = 1, .reset_after = lapse};
	EV.batch.status = SL_DENY;
	EV.batch.denied = 1;
	sl_eval_finish(&EV);
	assert_int_equal(EV.checks[1].res.retry_after, 0);
	begin(&q);
	allow_all();
	EV.checks[0].res.outcome = SL_REJECTED;
	EV.checks[0].res.retry_after = 5;
	EV.checks[0].res.reset_after = 60 * SL_NS_PER_SEC;
	EV.batch.status = SL_DENY;
	EV.batch.denied = 0;
	sl_eval_finish(&EV);
	assert_int_equal(EV.checks[0].res.retry_after, 5);
}

/* ---- peeks (sl_eval_peek_begin, sl_render_usage) ---- */

static void peek(struct freq *q, unsigned have)
{
	assert_int_equal(sl_eval_peek_begin(&EV, &F.p, &q->r, T0, have), 0);
	assert_int_equal(EV.batch.op, SL_OP_PEEK);
	assert_int_equal(EV.batch.n, EV.nchecks);
	for (size_t i = 0; i < EV.nchecks; i++)
		assert_int_equal(EV.checks[i].cost, 0);
}

static void account_peek_has_only_account_plan_and_global_limits(void **state)
{
	struct freq q;

	fx_init(&F);
	/* a route limit keyed by account (batch) is not shown: no request */
	freq_init(&q, "GET", "/", NULL);
	q.r.account = S("acme");
	peek(&q, SL_PEEK_ACCOUNT);
	names_are("tier");
	assert_ptr_equal(EV.account, &F.accounts[0]);
	assert_ptr_equal(EV.plan, &F.plans[PLAN_RESELLER]);
	assert_null(EV.route);
	assert_int_equal(EV.pending_status, 0);
	/* fred's plan (free) is not in the tier map: nothing applies */
	q.r.account = S("fred");
	peek(&q, SL_PEEK_ACCOUNT);
	assert_int_equal(EV.nchecks, 0);
	/* an unknown account: no account found (the endpoint answers 404) */
	q.r.account = S("nobody");
	peek(&q, SL_PEEK_ACCOUNT);
	assert_null(EV.account);
}

static void caller_peek_adds_ip_and_key_and_never_a_route(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "POST", "/v1/messages/batch", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_acme");
	peek(&q, SL_PEEK_CALLER);
	names_are("ip,key,tier");
	assert_null(EV.route);
	/* the same request decided normally has the route limit and cost 1 */
	begin(&q);
	names_are("ip,key,tier,batch");
	assert_int_equal(EV.checks[0].cost, 1);
}

static void caller_peek_without_key_is_no_401_and_unknown_key_is(void **state)
{
	struct freq q;

	fx_init(&F); /* key_required: a decision would be 401 */
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	peek(&q, SL_PEEK_CALLER);
	names_are("ip");
	assert_int_equal(EV.pending_status, 0);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 200);

	freq_header(&q, "X-Api-Key", "sk_nope");
	peek(&q, SL_PEEK_CALLER);
	names_are("ip");
	assert_int_equal(EV.pending_status, 401);
	allow_all();
	assert_int_equal(sl_eval_finish(&EV), 401);
	assert_true(EV.decision.unauthorized_unknown);
}

static void usage_renders_every_field_and_unlimited(void **state)
{
	struct freq q;
	char buf[1024];
	long n;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_acme");
	peek(&q, SL_PEEK_CALLER);
	allow_all();
	EV.checks[0].res.remaining = 300;
	EV.checks[0].res.reset_after = 0; /* fresh */
	EV.checks[1].res.remaining = 42;
	EV.checks[1].res.reset_after = SL_NS_PER_SEC / 2; /* rounds up */
	EV.checks[2].res.limit = SL_UNLIMITED;
	EV.checks[2].res.remaining = SL_UNLIMITED;
	assert_int_equal(sl_eval_finish(&EV), 200);
	n = sl_render_usage(&EV, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_string_equal(buf,
	                    "{\"account\":\"acme\",\"plan\":\"reseller\",\"limits\":["
	                    "{\"name\":\"ip\",\"limit\":300,\"remaining\":300,\"reset\":1700000000,"
	                    "\"window_seconds\":60,\"unlimited\":false},"
	                    "{\"name\":\"key\",\"limit\":100,\"remaining\":42,\"reset\":1700000001,"
	                    "\"window_seconds\":60,\"unlimited\":false},"
	                    "{\"name\":\"tier\",\"limit\":null,\"remaining\":null,\"reset\":null,"
	                    "\"window_seconds\":null,\"unlimited\":true}]}");
	/* a buffer too small is -1, never a cut JSON */
	assert_int_equal(sl_render_usage(&EV, buf, 40), -1);
	/* no account, no plan: nulls */
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "203.0.113.7");
	peek(&q, SL_PEEK_CALLER);
	allow_all();
	sl_eval_finish(&EV);
	n = sl_render_usage(&EV, buf, sizeof(buf));
	assert_true(n > 0);
	buf[n] = '\0';
	assert_non_null(
	        strstr(buf, "{\"account\":null,\"plan\":null,\"limits\":[{\"name\":\"ip\""));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(valid_key_gets_every_limit_in_order),
	        cmocka_unit_test(account_peek_has_only_account_plan_and_global_limits),
	        cmocka_unit_test(caller_peek_adds_ip_and_key_and_never_a_route),
	        cmocka_unit_test(caller_peek_without_key_is_no_401_and_unknown_key_is),
	        cmocka_unit_test(usage_renders_every_field_and_unlimited),
	        cmocka_unit_test(plan_missing_from_map_skips_the_limit),
	        cmocka_unit_test(missing_key_is_401_and_before_key_limits_still_apply),
	        cmocka_unit_test(unknown_key_is_401_unknown),
	        cmocka_unit_test(key_not_required_skips_identity_limits),
	        cmocka_unit_test(unknown_key_is_401_even_when_not_required),
	        cmocka_unit_test(no_limit_needs_the_key_means_no_401),
	        cmocka_unit_test(decide_named_account_needs_no_key),
	        cmocka_unit_test(cost_from_request_route_or_default),
	        cmocka_unit_test(key_bytes_are_unambiguous),
	        cmocka_unit_test(descriptor_kinds_build_keys),
	        cmocka_unit_test(oversized_key_bytes_refused),
	        cmocka_unit_test(too_many_checks_refused),
	        cmocka_unit_test(denial_status_delay_and_primary),
	        cmocka_unit_test(most_restrictive_fewest_remaining_then_smaller_limit),
	        cmocka_unit_test(store_failure_follows_on_error),
	        cmocka_unit_test(no_checks_is_200),
	        cmocka_unit_test(release_keeps_only_concurrency_slots),
	        cmocka_unit_test(unreleased_concurrency_denial_retries_at_the_lease_lapse),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
