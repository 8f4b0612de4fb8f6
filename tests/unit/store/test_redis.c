/* The Redis store against one real redis-server started here: every
 * decision, release and peek matches the core algorithms (sl_decide and
 * sl_algo_refund replayed at the server time the script reports), a
 * multi-limit decision is all or nothing, NOSCRIPT after SCRIPT FLUSH is
 * reloaded, a killed, paused or restarted server yields errors within the
 * timeout and then recovers, the over-limit cache answers locally, and two
 * worker loops on two threads share one store and admit exactly the limit. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <strings.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include "policy/policy-t.h"
#include "test_redis_util.h"

static int port;
static pid_t pid;
static bool lua_only; /* make_store: store.module: false */
static const char *const module_args[] = {"--loadmodule", SLUICE_REDIS_MODULE, NULL};
static const char *const *server_args; /* of the group's server: NULL or module_args */

static struct sl_store *make_store(int64_t timeout_ns, bool cache)
{
	struct sl_store_conf conf;
	struct sl_store *s = NULL;
	char url[64];

	memset(&conf, 0, sizeof(conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	conf.type = SL_STORE_REDIS;
	conf.url = url;
	conf.timeout = timeout_ns;
	conf.pool = 1;
	conf.local_cache = cache;
	conf.no_module = lua_only;
	assert_int_equal(sl_redis_store_create(&s, &conf), 0);
	return s;
}

static int setup(void **state)
{
	(void)state;
	port = tr_free_port();
	server_args = NULL;
	pid = tr_start_redis(port, NULL, server_args);
	return pid > 0 ? 0 : -1;
}

static int setup_module(void **state)
{
	(void)state;
	server_args = module_args;
	port = tr_free_port();
	pid = tr_start_redis(port, NULL, server_args);
	return pid > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tr_stop_redis(pid);
	return 0;
}

static void check_init(struct sl_check *c, const struct sl_limit_spec *sp, uint64_t id,
                       const char *key, uint64_t cost)
{
	memset(c, 0, sizeof(*c));
	c->spec = sp;
	c->limit_id = id;
	c->name = "t";
	c->key = key;
	c->key_len = (uint32_t)strlen(key);
	c->cost = cost;
}

/* ---- differential test against the core ---- */

#define NSPECS  14
#define NMIRROR 256

struct mirror {
	uint64_t id;
	char key[8];
	struct sl_state st;
};

static struct mirror mir[NMIRROR];
static size_t nmir;

static struct sl_state *mirror_state(uint64_t id, const char *key)
{
	for (size_t i = 0; i < nmir; i++)
		if (mir[i].id == id && strcmp(mir[i].key, key) == 0)
			return &mir[i].st;
	assert_true(nmir < NMIRROR);
	mir[nmir].id = id;
	snprintf(mir[nmir].key, sizeof(mir[nmir].key), "%s", key);
	memset(&mir[nmir].st, 0, sizeof(mir[nmir].st));
	return &mir[nmir++].st;
}

static void build_specs(struct sl_limit_spec *sp)
{
	assert_int_equal(sl_spec_rate(&sp[0], 5, 200 * 1000000LL, 0, 0), 0);
	assert_int_equal(sl_spec_rate(&sp[1], 3, 300 * 1000000LL, 2, 2), 0);
	assert_int_equal(sl_spec_rate(&sp[2], 7, SL_NS_PER_SEC, 10, 0), 0); /* T not a whole ms */
	assert_int_equal(sl_spec_quota(&sp[3], 7, SL_CAL_HOUR, 0), 0);
	assert_int_equal(sl_spec_quota(&sp[4], 9, SL_CAL_DAY, 3600), 0);
	assert_int_equal(sl_spec_quota(&sp[5], 11, SL_CAL_WEEK, -18000), 0);
	assert_int_equal(sl_spec_quota(&sp[6], 13, SL_CAL_MONTH, 19800), 0);
	assert_int_equal(sl_spec_sliding(&sp[7], 6, 250 * 1000000LL), 0);
	assert_int_equal(sl_spec_sliding(&sp[8], 4, SL_NS_PER_SEC), 0);
	assert_int_equal(sl_spec_sliding(&sp[9], 5, 333333333LL), 0);
	assert_int_equal(sl_spec_concurrency(&sp[10], 3, 300 * 1000000LL), 0);
	assert_int_equal(sl_spec_concurrency(&sp[11], 2, 5 * SL_NS_PER_SEC), 0);
	sl_spec_unlimited(&sp[12]);
	sl_spec_deny(&sp[13]);
}

static void assert_res_equal(const struct sl_result *got, const struct sl_result *want, size_t i)
{
	if (got->outcome != want->outcome || got->limit != want->limit ||
	    got->remaining != want->remaining || got->reset_after != want->reset_after ||
	    got->retry_after != want->retry_after || got->delay != want->delay ||
	    got->window != want->window) {
		print_error(
		        "check %zu: redis {o %u l %llu r %llu reset %lld retry %lld d %lld w %lld}"
		        " core {o %u l %llu r %llu reset %lld retry %lld d %lld w %lld}\n",
		        i, got->outcome, (unsigned long long)got->limit,
		        (unsigned long long)got->remaining, (long long)got->reset_after,
		        (long long)got->retry_after, (long long)got->delay, (long long)got->window,
		        want->outcome, (unsigned long long)want->limit,
		        (unsigned long long)want->remaining, (long long)want->reset_after,
		        (long long)want->retry_after, (long long)want->delay,
		        (long long)want->window);
		fail();
	}
}

/* own_keys: every limit on a key of its own (the rate limits, one counter,
 * share one), so most values hold one state: the library's path that
 * decides a single check straight from such a value. */
static void match_core(bool own_keys, bool alternate)
{
	struct sl_limit_spec sp[NSPECS];
	static const char *keys[] = {"a", "b", "c"};
	static const char *own[NSPECS] = {"r",  "r",  "r",  "q3",  "q4",  "q5",  "q6",
	                                  "s7", "s8", "s9", "c10", "c11", "u12", "d13"};
	uv_loop_t loop;
	struct sl_store *s, *s2 = NULL;
	unsigned seed = 12345;
	unsigned counts[3] = {0, 0, 0}, outcomes[3] = {0, 0, 0};

	build_specs(sp);
	uv_loop_init(&loop);
	freeReplyObject(tr_cmd(port, "FLUSHALL")); /* the mirror starts fresh too */
	s = make_store(2 * SL_NS_PER_SEC, false);
	if (alternate) {
		lua_only = true;
		s2 = make_store(2 * SL_NS_PER_SEC, false);
		lua_only = false;
	}
	nmir = 0;
	for (int round = 0; round < 600; round++) {
		struct sl_check ck[4];
		struct sl_decide_item items[4];
		struct sl_batch b = {0};
		size_t n = own_keys && rand_r(&seed) % 4 ? 1 : 1 + (size_t)(rand_r(&seed) % 4),
		       denied = 0;
		uint8_t op;
		int64_t delay = 0;
		int rc, want;
		unsigned r = (unsigned)rand_r(&seed) % 10;

		op = r < 7 ? SL_OP_DECIDE : r < 9 ? SL_OP_RELEASE : SL_OP_PEEK;
		for (size_t i = 0; i < n; i++) {
			unsigned k = (unsigned)rand_r(&seed) % (NSPECS * 8);
			unsigned si =
			        k < NSPECS * 7 ? k % (NSPECS - 1) : NSPECS - 1; /* deny: rare */
			uint64_t cost = (unsigned)rand_r(&seed) % 8 == 0
			                        ? 0
			                        : 1 + (unsigned)rand_r(&seed) % 3 / 2;

			/* the three rate specs share one counter (one limit whose
			 * numbers change): its backlog is rescaled to each T */
			check_init(&ck[i], &sp[si], si <= 2 ? 1000 : 1000 + si,
			           own_keys ? own[si] : keys[rand_r(&seed) % 3], cost);
		}
		rc = tr_run(s2 && rand_r(&seed) % 2 ? s2 : s, &loop, ck, n, op, &b, NULL);
		assert_true(rc >= 0);
		counts[op]++;
		if (op == SL_OP_DECIDE)
			outcomes[rc]++;
		for (size_t i = 0; i < n; i++) {
			items[i].spec = ck[i].spec;
			items[i].cost = op == SL_OP_DECIDE ? ck[i].cost : 0;
			items[i].state = mirror_state(ck[i].limit_id, ck[i].key);
		}
		if (op == SL_OP_DECIDE) {
			want = sl_decide(items, n, b.time, &denied, &delay);
			assert_int_equal(rc, want);
			if (want == SL_DENY)
				assert_int_equal(b.denied, denied);
			if (want == SL_DELAY)
				assert_int_equal(b.delay, delay);
		} else {
			struct sl_state unused;

			assert_int_equal(rc, SL_OK);
			if (op == SL_OP_RELEASE)
				for (size_t i = 0; i < n; i++)
					sl_algo_refund(ck[i].spec, items[i].state, b.time,
					               ck[i].cost);
			for (size_t i = 0; i < n; i++)
				sl_algo_eval(ck[i].spec, items[i].state, b.time, 0, &unused,
				             &items[i].res);
		}
		for (size_t i = 0; i < n; i++)
			assert_res_equal(&ck[i].res, &items[i].res, i);
		if (rand_r(&seed) % 3 == 0)
			tr_sleep_ms((int)(rand_r(&seed) % 25));
	}
	print_message("decide %u (ok %u delay %u deny %u) release %u peek %u\n", counts[0],
	              outcomes[0], outcomes[1], outcomes[2], counts[1], counts[2]);
	assert_true(outcomes[0] > 50 && outcomes[1] > 5 && outcomes[2] > 50);
	tr_free_store(s, &loop);
	if (s2)
		tr_free_store(s2, &loop);
	uv_loop_close(&loop);
}

static void decisions_match_core_algorithms(void **state)
{
	(void)state;
	match_core(false, false);
}

static void single_state_decisions_match_core_algorithms(void **state)
{
	(void)state;
	match_core(true, false);
}

/* ---- the module (src/redismod) ---- */

/* Calls of command cmd so far (INFO commandstats). */
static long long cmd_calls(const char *cmd)
{
	redisReply *r = tr_cmd(port, "INFO commandstats");
	char pat[64];
	const char *p;
	long long n = 0;

	assert_non_null(r);
	snprintf(pat, sizeof(pat), "cmdstat_%s:calls=", cmd);
	p = r->type == REDIS_REPLY_STRING ? strstr(r->str, pat) : NULL;
	if (p)
		n = strtoll(p + strlen(pat), NULL, 10);
	freeReplyObject(r);
	return n;
}

/* Exact mode's decisions and peeks went to the module, releases (refunds
 * with a commit time) to the library, on the same values. */
static void module_decides_like_the_core(void **state)
{
	long long m0 = cmd_calls("sluice.call"), f0 = cmd_calls("fcall");

	(void)state;
	match_core(false, false);
	match_core(true, false);
	print_message("sluice.call %lld fcall %lld\n", cmd_calls("sluice.call") - m0,
	              cmd_calls("fcall") - f0);
	assert_true(cmd_calls("sluice.call") - m0 > 500);
	assert_true(cmd_calls("fcall") - f0 > 100);
}

/* Two stores on one server, one with store.module: false, take turns at
 * random on the same keys: the module and the library read each other's
 * values. */
static void module_and_library_share_values(void **state)
{
	(void)state;
	match_core(false, true);
}

/* A value the module does not read (the text layout of the library before
 * this one) goes to the library, which rewrites it in the binary layout;
 * then the module decides on it again. */
static void text_value_goes_to_the_library(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck[1];
	uv_loop_t loop;
	struct sl_store *s;
	redisReply *r;
	long long m0;
	char key[64], val[128];

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&q, 10, SL_CAL_DAY, 0), 0);
	check_init(&ck[0], &q, 0x2301, "textval", 1);
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 9);
	/* the same state (4 used) in the text layout */
	r = tr_cmd(port, "KEYS sl2:*textval");
	assert_true(r && r->type == REDIS_REPLY_ARRAY && r->elements == 1);
	snprintf(key, sizeof(key), "%s", r->element[0]->str);
	freeReplyObject(r);
	snprintf(val, sizeof(val), "2301 %lld 4 0",
	         (long long)((tr_wall_ns() / SL_NS_PER_DAY + 1) * SL_NS_PER_DAY));
	freeReplyObject(tr_cmd(port, "SET %s %s PX 86400000", key, val));
	m0 = cmd_calls("fcall");
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 5);
	assert_true(cmd_calls("fcall") > m0);
	m0 = cmd_calls("sluice.call");
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 4);
	assert_true(cmd_calls("sluice.call") > m0);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* ---- all or nothing ---- */

static void rejected_decision_consumes_nothing(void **state)
{
	struct sl_limit_spec big, small;
	struct sl_check ck[2];
	uv_loop_t loop;
	struct sl_store *s;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&big, 10, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_quota(&small, 1, SL_CAL_DAY, 0), 0);
	check_init(&ck[0], &big, 2001, "acct", 1);
	check_init(&ck[1], &small, 2002, "acct", 1);
	assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 9);
	for (int i = 0; i < 5; i++) {
		struct sl_batch b;

		assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, &b, NULL), SL_DENY);
		assert_int_equal(b.denied, 1);
		assert_int_equal(ck[0].res.remaining, 9); /* peek: nothing taken */
		assert_int_equal(ck[1].res.outcome, SL_REJECTED);
	}
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_PEEK, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 9);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* Decide a[na] and b[nb] as two batches submitted before the loop runs
 * (so one call carries both), and run the loop until both are done. */
static void decide_together(struct sl_store *s, uv_loop_t *loop, struct tr_batch *ta,
                            struct sl_check *a, size_t na, struct tr_batch *tb, struct sl_check *b,
                            size_t nb)
{
	int64_t t0;

	memset(ta, 0, sizeof(*ta));
	memset(tb, 0, sizeof(*tb));
	ta->b = (struct sl_batch){.checks = a,
	                          .n = na,
	                          .op = SL_OP_DECIDE,
	                          .now = tr_wall_ns(),
	                          .loop = loop,
	                          .done = tr_done,
	                          .data = ta};
	tb->b = (struct sl_batch){.checks = b,
	                          .n = nb,
	                          .op = SL_OP_DECIDE,
	                          .now = tr_wall_ns(),
	                          .loop = loop,
	                          .done = tr_done,
	                          .data = tb};
	assert_int_equal(sl_store_submit(s, &ta->b), 0);
	assert_int_equal(sl_store_submit(s, &tb->b), 0);
	t0 = tr_now_ms();
	while ((!ta->done || !tb->done) && tr_now_ms() - t0 < 10000)
		uv_run(loop, UV_RUN_ONCE);
}

/* Decisions a worker has ready go out as groups of one call: a denied
 * group's passing checks (the last one too) are undone before the next
 * group reads the same key, and only what committed is stored. */
static void denied_group_leaves_nothing_for_the_next_one(void **state)
{
	struct sl_limit_spec big, small;
	struct sl_check a[2], b[1];
	struct tr_batch ta, tb;
	uv_loop_t loop;
	struct sl_store *s;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&big, 10, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_quota(&small, 1, SL_CAL_DAY, 0), 0);
	check_init(&a[0], &small, 2102, "acct2", 1);
	assert_int_equal(tr_run(s, &loop, a, 1, SL_OP_DECIDE, NULL, NULL), SL_OK); /* small spent */
	check_init(&a[0], &small, 2102, "acct2", 1);
	check_init(&a[1], &big, 2101, "acct2", 1);
	check_init(&b[0], &big, 2101, "acct2", 1);
	/* both before the loop runs: one call, two groups */
	decide_together(s, &loop, &ta, a, 2, &tb, b, 1);
	assert_int_equal(ta.b.status, SL_DENY);
	assert_int_equal(ta.b.denied, 0);
	assert_int_equal(a[1].res.remaining, 10); /* reported as a peek */
	assert_int_equal(tb.b.status, SL_OK);
	assert_int_equal(b[0].res.remaining, 9);
	assert_int_equal(tr_run(s, &loop, b, 1, SL_OP_PEEK, NULL, NULL), SL_OK);
	assert_int_equal(b[0].res.remaining, 9);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* A quota's counter outlives a change of its zone (the limit id stays),
 * so a state may end off the new calendar's boundaries; its window is
 * then what the core computes from that end (here 30 min: the UTC day's
 * end falls 30 min into a +00:30 day), not the calendar's fixed length.
 * Both the single-check path and a group of two. */
static void quota_window_follows_a_changed_zone(void **state)
{
	struct sl_limit_spec utc, plus30, other;
	struct sl_check ck[2];
	uv_loop_t loop;
	struct sl_store *s;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&utc, 9, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_quota(&plus30, 9, SL_CAL_DAY, 1800), 0);
	assert_int_equal(sl_spec_quota(&other, 5, SL_CAL_HOUR, 0), 0);
	check_init(&ck[0], &utc, 2201, "zone", 1);
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.window, 86400 * SL_NS_PER_SEC);
	check_init(&ck[0], &plus30, 2201, "zone", 1);
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 7);
	assert_int_equal(ck[0].res.window, 1800 * SL_NS_PER_SEC);
	check_init(&ck[0], &plus30, 2201, "zone", 1);
	check_init(&ck[1], &other, 2202, "zone", 1);
	assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 6);
	assert_int_equal(ck[0].res.window, 1800 * SL_NS_PER_SEC);
	assert_int_equal(ck[1].res.window, 3600 * SL_NS_PER_SEC);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* Each spec string goes once into a call however many checks use it:
 * twelve specs, checked by two decisions submitted together (one call),
 * make an FCALL of its function, numkeys, two keys (one per decision),
 * the program and twelve spec strings (SLOWLOG keeps a call's arguments).
 * A direct-mapped spec cache of 16 let two specs of one slot evict each
 * other, sending one string per check. */
static void each_spec_goes_once_into_a_call(void **state)
{
	struct sl_limit_spec sp[12];
	struct sl_check a[12], b[12];
	struct tr_batch ta, tb;
	uv_loop_t loop;
	struct sl_store *s;
	redisReply *r, *e = NULL;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	for (int i = 0; i < 12; i++) {
		assert_int_equal(sl_spec_rate(&sp[i], (uint64_t)(100 + i), SL_NS_PER_SEC, 0, 0), 0);
		check_init(&a[i], &sp[i], (uint64_t)(3000 + i), "specs-a", 1);
		check_init(&b[i], &sp[i], (uint64_t)(3000 + i), "specs-b", 1);
	}
	assert_int_equal(tr_run(s, &loop, a, 1, SL_OP_DECIDE, NULL, NULL), SL_OK); /* loaded */
	freeReplyObject(tr_cmd(port, "CONFIG SET slowlog-log-slower-than 0"));
	freeReplyObject(tr_cmd(port, "SLOWLOG RESET"));
	decide_together(s, &loop, &ta, a, 12, &tb, b, 12);
	assert_int_equal(ta.b.status, SL_OK);
	assert_int_equal(tb.b.status, SL_OK);
	freeReplyObject(tr_cmd(port, "CONFIG SET slowlog-log-slower-than 10000"));
	r = tr_cmd(port, "SLOWLOG GET 100");
	assert_non_null(r);
	for (size_t i = 0; i < r->elements; i++) {
		redisReply *argv = r->element[i]->element[3];

		if (argv->elements > 0 && strcasecmp(argv->element[0]->str, "FCALL") == 0)
			e = argv;
	}
	assert_non_null(e);
	if (e->elements != 3 + 2 + 1 + 12)
		print_error("FCALL of %zu arguments, not 18\n", e->elements);
	assert_int_equal(e->elements, 18);
	freeReplyObject(r);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* ---- NOSCRIPT ---- */

static void script_flush_is_reloaded(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	uv_loop_t loop;
	struct sl_store *s;
	redisReply *r;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&q, 100, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 3001, "flush", 1);
	for (int round = 0; round < 3; round++) {
		assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
		/* the library is gone as after a restart without persistence */
		r = tr_cmd(port, round == 1 ? "SCRIPT FLUSH" : "FUNCTION FLUSH");
		assert_non_null(r);
		freeReplyObject(r);
		assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
		assert_int_equal(ck.res.remaining, 100 - 2 * (round + 1));
	}
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* A server without FUNCTION/FCALL (Redis before 7, here renamed away):
 * the store falls back to SCRIPT LOAD + EVALSHA on its own, NOSCRIPT
 * included, and decides the same. */
static void server_without_functions_gets_evalsha(void **state)
{
	static const char *const extra[] = {
	        "--rename-command", "FUNCTION", "", "--rename-command", "FCALL", "", NULL};
	struct sl_store_conf conf;
	struct sl_limit_spec q;
	struct sl_check ck;
	struct sl_store *s;
	uv_loop_t loop;
	char url[64];
	int p2 = tr_free_port();
	pid_t pid2 = tr_start_redis(p2, NULL, extra);
	redisReply *r;

	(void)state;
	assert_true(pid2 > 0);
	uv_loop_init(&loop);
	memset(&conf, 0, sizeof(conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", p2);
	conf.type = SL_STORE_REDIS;
	conf.url = url;
	conf.timeout = SL_NS_PER_SEC;
	conf.pool = 1;
	assert_int_equal(sl_redis_store_create(&s, &conf), 0);
	assert_int_equal(sl_spec_quota(&q, 10, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 12; i++) {
		check_init(&ck, &q, 3002, "old", 1);
		assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL),
		                 i < 10 ? SL_OK : SL_DENY);
		if (i == 4) {
			r = tr_cmd(p2, "SCRIPT FLUSH");
			assert_non_null(r);
			freeReplyObject(r);
		}
	}
	r = tr_cmd(p2, "INFO commandstats");
	assert_non_null(r);
	assert_non_null(strstr(r->str, "cmdstat_evalsha:"));
	freeReplyObject(r);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
	tr_stop_redis(pid2);
}

/* ---- faults ---- */

static void killed_server_errors_within_timeout_then_recovers(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	struct sl_store_stats st;
	uv_loop_t loop;
	struct sl_store *s;
	int64_t ms;
	int rc, ok = 0;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(100 * 1000000LL, false);
	assert_int_equal(sl_spec_quota(&q, 1000000, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 4001, "kill", 1);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	tr_stop_redis(pid);
	pid = -1;
	for (int i = 0; i < 30; i++) {
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		assert_true(rc == SL_EIO || rc == SL_ETIMEDOUT);
		assert_true(ms <= 100 + 50);
		tr_sleep_ms(10);
	}
	s->ops->stats(s, &st);
	assert_true(st.errors >= 30);
	pid = tr_start_redis(port, NULL, server_args);
	assert_true(pid > 0);
	for (int i = 0; i < 300 && !ok; i++) {
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		assert_true(rc == SL_OK || rc == SL_EIO || rc == SL_ETIMEDOUT);
		assert_true(ms <= 150);
		ok = rc == SL_OK;
		if (!ok)
			tr_sleep_ms(10);
	}
	assert_true(ok); /* reconnected by itself, within the back-off cap */
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

static void paused_server_times_out_then_recovers(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	uv_loop_t loop;
	struct sl_store *s;
	int64_t ms;
	int rc, ok = 0;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(80 * 1000000LL, false);
	assert_int_equal(sl_spec_quota(&q, 1000000, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 5001, "pause", 1);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	kill(pid, SIGSTOP);
	for (int i = 0; i < 10; i++) {
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		assert_true(rc == SL_ETIMEDOUT || rc == SL_EIO);
		assert_true(ms <= 80 + 50);
	}
	kill(pid, SIGCONT);
	for (int i = 0; i < 300 && !ok; i++) {
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		ok = rc == SL_OK;
		if (!ok)
			tr_sleep_ms(10);
	}
	assert_true(ok);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* ---- over-limit cache ---- */

static void local_cache_answers_known_rejections(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	struct sl_batch b;
	uv_loop_t loop;
	struct sl_store *s;
	int64_t ms;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(100 * 1000000LL, true);
	assert_int_equal(sl_spec_quota(&q, 2, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 6001, "cache", 1);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_DENY);
	/* With the server paused, a known rejection is still answered at once. */
	kill(pid, SIGSTOP);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, &b, &ms), SL_DENY);
	assert_true(ms < 20);
	assert_int_equal(b.denied, 0);
	assert_true(ck.res.retry_after > 0);
	/* Another key is not cached: it needs the server and times out. */
	check_init(&ck, &q, 6001, "other", 1);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_ETIMEDOUT);
	kill(pid, SIGCONT);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* ---- two worker loops on two threads ---- */

struct worker_arg {
	struct sl_store *s;
	const struct sl_limit_spec *sp;
	int allowed, errors;
};

static void *worker_main(void *p)
{
	struct worker_arg *a = p;
	uv_loop_t loop;

	uv_loop_init(&loop);
	for (int i = 0; i < 300; i++) {
		struct sl_check ck;
		int rc;

		check_init(&ck, a->sp, 7001, "shared", 1);
		rc = tr_run(a->s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL);
		if (rc == SL_OK)
			a->allowed++;
		else if (rc != SL_DENY)
			a->errors++;
	}
	sl_redis_store_detach(a->s, &loop);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return NULL;
}

static void two_worker_threads_admit_exactly_the_limit(void **state)
{
	struct sl_limit_spec q;
	struct worker_arg a[2];
	pthread_t th[2];
	struct sl_store *s;

	(void)state;
	s = make_store(SL_NS_PER_SEC, false);
	assert_int_equal(sl_spec_quota(&q, 250, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 2; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].s = s;
		a[i].sp = &q;
		assert_int_equal(pthread_create(&th[i], NULL, worker_main, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(a[0].errors + a[1].errors, 0);
	assert_int_equal(a[0].allowed + a[1].allowed, 250);
	s->ops->destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(decisions_match_core_algorithms),
	        cmocka_unit_test(single_state_decisions_match_core_algorithms),
	        cmocka_unit_test(rejected_decision_consumes_nothing),
	        cmocka_unit_test(denied_group_leaves_nothing_for_the_next_one),
	        cmocka_unit_test(each_spec_goes_once_into_a_call),
	        cmocka_unit_test(quota_window_follows_a_changed_zone),
	        cmocka_unit_test(script_flush_is_reloaded),
	        cmocka_unit_test(server_without_functions_gets_evalsha),
	        cmocka_unit_test(local_cache_answers_known_rejections),
	        cmocka_unit_test(two_worker_threads_admit_exactly_the_limit),
	        cmocka_unit_test(paused_server_times_out_then_recovers),
	        cmocka_unit_test(killed_server_errors_within_timeout_then_recovers),
	};

	/* the same store on a server with sluice's module */
	const struct CMUnitTest module_tests[] = {
	        cmocka_unit_test(module_decides_like_the_core),
	        cmocka_unit_test(module_and_library_share_values),
	        cmocka_unit_test(text_value_goes_to_the_library),
	        cmocka_unit_test(rejected_decision_consumes_nothing),
	        cmocka_unit_test(denied_group_leaves_nothing_for_the_next_one),
	        cmocka_unit_test(quota_window_follows_a_changed_zone),
	        cmocka_unit_test(local_cache_answers_known_rejections),
	        cmocka_unit_test(two_worker_threads_admit_exactly_the_limit),
	        cmocka_unit_test(killed_server_errors_within_timeout_then_recovers),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name("library", tests, setup, teardown);
	return failed + cmocka_run_group_tests_name("module", module_tests, setup_module, teardown);
}
