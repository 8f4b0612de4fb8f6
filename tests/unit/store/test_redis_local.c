/* The Redis store's local mode against one real redis-server started
 * here: a fresh counter is read from Redis once, then decided on the
 * worker; what it admitted reaches Redis within a sync interval; near the
 * limit decisions go to Redis, so one node admits exactly the limit and
 * two nodes stay within the documented bound; with Redis stopped the node
 * keeps deciding (on its share) and sends what it admitted once Redis is
 * back; rate and sliding limits sync the same way. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include "policy/policy-t.h"
#include "store/redis_int.h"
#include "test_redis_util.h"

static int port;
static pid_t pid;

static struct sl_store *make_local(int64_t sync_ns, uint32_t strict_ppm)
{
	struct sl_store_conf conf;
	struct sl_store *s = NULL;
	char url[64];

	memset(&conf, 0, sizeof(conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	conf.type = SL_STORE_REDIS;
	conf.url = url;
	conf.timeout = 200 * 1000000LL;
	conf.pool = 1;
	conf.mode = SL_REDIS_LOCAL;
	conf.sync = sync_ns;
	conf.strict = strict_ppm;
	assert_int_equal(sl_redis_store_create(&s, &conf), 0);
	assert_true(sl_redis_is_local(s));
	return s;
}

static int setup(void **state)
{
	(void)state;
	port = tr_free_port();
	pid = tr_start_redis(port, NULL, NULL);
	return pid > 0 ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	tr_stop_redis(pid);
	return 0;
}

static void check_init(struct sl_check *c, const struct sl_limit_spec *sp, uint64_t id,
                       const char *key)
{
	memset(c, 0, sizeof(*c));
	c->spec = sp;
	c->limit_id = id;
	c->name = "t";
	c->key = key;
	c->key_len = (uint32_t)strlen(key);
	c->cost = 1;
}

/* v1 of limit id's entry in the Redis key of `key` (a version byte 3 and
 * a deadline, then 32-byte entries: the id's low 53 bits, expiry before the
 * deadline, v1, v2, little-endian int64s), 0 when there is none. */
static uint64_t le(const unsigned char *p, int n)
{
	uint64_t v = 0;

	for (int b = n - 1; b >= 0; b--)
		v = v << 8 | p[b];
	return v;
}

static uint64_t redis_v1(uint64_t id, const char *key)
{
	char name[128];
	redisReply *r;
	uint64_t v = 0;

	snprintf(name, sizeof(name), "sl2:{%016llx}:%s",
	         (unsigned long long)XXH3_64bits(key, strlen(key)), key);
	r = tr_cmd(port, "GET %s", name);
	if (r && r->type == REDIS_REPLY_STRING && r->len >= 9 && r->str[0] == 3) {
		for (size_t off = 9; off + 32 <= r->len; off += 32) {
			const unsigned char *e = (const unsigned char *)r->str + off;

			if (le(e, 8) == (id & ((1ULL << 53) - 1)))
				v = le(e + 16, 8);
		}
	}
	if (r)
		freeReplyObject(r);
	return v;
}

/* Let the loop run for ms (syncs, strict answers). */
static void spin(uv_loop_t *loop, int ms)
{
	int64_t t0 = tr_now_ms();

	while (tr_now_ms() - t0 < ms) {
		uv_run(loop, UV_RUN_NOWAIT);
		tr_sleep_ms(1);
	}
}

static void fresh_counter_is_read_once_then_decided_here(void **state)
{
	struct sl_limit_spec q;
	struct sl_store *s;
	struct sl_check ck;
	uv_loop_t loop;
	uint64_t local, strict, fwd;

	(void)state;
	uv_loop_init(&loop);
	s = make_local(20 * 1000000LL, 100000);
	assert_int_equal(sl_spec_quota(&q, 1000, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 101; i++) {
		check_init(&ck, &q, 0x51, "alpha");
		assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
		if (i == 100)
			assert_int_equal(ck.res.remaining, 1000 - 101);
	}
	sl_redis_local_counts(s, &local, &strict, &fwd);
	assert_int_equal(strict, 1);
	assert_int_equal(local, 100);
	spin(&loop, 80);
	assert_int_equal(redis_v1(0x51, "alpha"), 101);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

static void one_node_admits_exactly_the_limit(void **state)
{
	struct sl_limit_spec q;
	struct sl_store *s;
	struct sl_check ck;
	uv_loop_t loop;
	uint64_t local, strict, fwd;
	int allowed = 0;

	(void)state;
	uv_loop_init(&loop);
	s = make_local(20 * 1000000LL, 100000);
	assert_int_equal(sl_spec_quota(&q, 100, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 130; i++) {
		int rc;

		check_init(&ck, &q, 0x52, "beta");
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL);
		assert_true(rc == SL_OK || rc == SL_DENY);
		allowed += rc == SL_OK;
	}
	assert_int_equal(allowed, 100);
	sl_redis_local_counts(s, &local, &strict, &fwd);
	assert_true(strict >= 10); /* the last 10% went to Redis */
	spin(&loop, 80);
	assert_int_equal(redis_v1(0x52, "beta"), 100);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* Two nodes (two stores, each its own worker) take turns on one counter
 * with a sync of 10 ms, one request per ms: a node sees the other's units
 * at most 2 syncs + a round trip late (about 11 units here), fewer than
 * strict_below (50), so the bound of docs/store-redis.md is 0 and only the
 * scheduling of this loaded test machine can add a few. */
static void two_nodes_stay_within_the_bound(void **state)
{
	struct sl_limit_spec q;
	struct sl_store *s[2];
	struct sl_check ck;
	uv_loop_t loop;
	int allowed = 0;

	(void)state;
	uv_loop_init(&loop);
	s[0] = make_local(10 * 1000000LL, 100000);
	s[1] = make_local(10 * 1000000LL, 100000);
	assert_int_equal(sl_spec_quota(&q, 500, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 800; i++) {
		int rc;

		check_init(&ck, &q, 0x53, "gamma");
		rc = tr_run(s[i % 2], &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL);
		assert_true(rc == SL_OK || rc == SL_DENY);
		allowed += rc == SL_OK;
		spin(&loop, 1);
	}
	/* bound: each node admits locally at most what the other admitted in
	 * one staleness window beyond the last strict_below (50 units) */
	assert_true(allowed >= 500);
	assert_true(allowed <= 500 + 5);
	spin(&loop, 60);
	assert_int_equal(redis_v1(0x53, "gamma"), (uint64_t)allowed);
	tr_free_store(s[0], &loop);
	tr_free_store(s[1], &loop);
	uv_loop_close(&loop);
}

static void stopped_redis_keeps_deciding_then_catches_up(void **state)
{
	struct sl_limit_spec q;
	struct sl_store *s;
	struct sl_check ck;
	uv_loop_t loop;
	int allowed = 0;
	int64_t ms;

	(void)state;
	uv_loop_init(&loop);
	s = make_local(20 * 1000000LL, 100000);
	assert_int_equal(sl_spec_quota(&q, 1000, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 0x54, "delta");
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	spin(&loop, 50);
	kill(pid, SIGSTOP);
	spin(&loop, 100);
	for (int i = 0; i < 50; i++) {
		int rc;

		check_init(&ck, &q, 0x54, "delta");
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		assert_true(rc == SL_OK);
		/* the first one's state is stale: it waits for the timeout
		 * (200 ms), then every decision is made here */
		assert_true(ms < (i == 0 ? 2000 : 150));
		allowed++;
	}
	kill(pid, SIGCONT);
	for (int i = 0; i < 60 && redis_v1(0x54, "delta") != 1 + (uint64_t)allowed; i++)
		spin(&loop, 50); /* bounded: 3 s */
	assert_int_equal(redis_v1(0x54, "delta"), 1 + (uint64_t)allowed);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

static void rate_and_sliding_limits_sync_too(void **state)
{
	struct sl_limit_spec r, w;
	struct sl_store *s;
	struct sl_check ck[2];
	uv_loop_t loop;
	uint64_t local, strict, fwd;
	int64_t t = 600000000LL; /* ns: T of 100/min */

	(void)state;
	uv_loop_init(&loop);
	s = make_local(20 * 1000000LL, 100000);
	assert_int_equal(sl_spec_rate(&r, 100, SL_NS_PER_MIN, 0, 0), 0);
	assert_int_equal(sl_spec_sliding(&w, 1000, SL_NS_PER_MIN), 0);
	for (int i = 0; i < 40; i++) {
		check_init(&ck[0], &r, 0x55, "eps");
		check_init(&ck[1], &w, 0x56, "eps");
		assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_OK);
	}
	sl_redis_local_counts(s, &local, &strict, &fwd);
	assert_int_equal(strict, 1);
	spin(&loop, 80);
	/* GCRA state: v1 is T, the TAT is 40 T ahead (checked via a peek) */
	assert_int_equal(redis_v1(0x55, "eps"), (uint64_t)t);
	{
		struct sl_store *e;
		struct sl_store_conf conf;
		char url[64];
		struct sl_check pk;

		memset(&conf, 0, sizeof(conf));
		snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
		conf.type = SL_STORE_REDIS;
		conf.url = url;
		conf.timeout = 200 * 1000000LL;
		conf.pool = 1;
		assert_int_equal(sl_redis_store_create(&e, &conf), 0);
		check_init(&pk, &r, 0x55, "eps");
		assert_int_equal(tr_run(e, &loop, &pk, 1, SL_OP_PEEK, NULL, NULL), SL_OK);
		assert_true(pk.res.remaining >= 59 && pk.res.remaining <= 60);
		check_init(&pk, &w, 0x56, "eps");
		assert_int_equal(tr_run(e, &loop, &pk, 1, SL_OP_PEEK, NULL, NULL), SL_OK);
		assert_true(pk.res.remaining >= 1000 - 40);
		tr_free_store(e, &loop);
	}
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* Two worker loops on two threads share one local store: each gets its own
 * table (two of the K workers of the bound), and together they admit the
 * limit, within the bound, paced at one request per ms each. */
struct thread_arg {
	struct sl_store *s;
	const struct sl_limit_spec *sp;
	int allowed, errors;
};

static void *thread_main(void *p)
{
	struct thread_arg *a = p;
	uv_loop_t loop;

	uv_loop_init(&loop);
	for (int i = 0; i < 400; i++) {
		struct sl_check ck;
		int rc;

		check_init(&ck, a->sp, 0x57, "zeta");
		rc = tr_run(a->s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL);
		if (rc == SL_OK)
			a->allowed++;
		else if (rc != SL_DENY)
			a->errors++;
		spin(&loop, 1);
	}
	sl_redis_store_detach(a->s, &loop);
	uv_run(&loop, UV_RUN_DEFAULT);
	uv_loop_close(&loop);
	return NULL;
}

static void two_worker_threads_share_one_local_store(void **state)
{
	struct sl_limit_spec q;
	struct thread_arg a[2];
	pthread_t th[2];
	struct sl_store *s;

	(void)state;
	s = make_local(10 * 1000000LL, 100000);
	assert_int_equal(sl_spec_quota(&q, 300, SL_CAL_DAY, 0), 0);
	for (int i = 0; i < 2; i++) {
		memset(&a[i], 0, sizeof(a[i]));
		a[i].s = s;
		a[i].sp = &q;
		assert_int_equal(pthread_create(&th[i], NULL, thread_main, &a[i]), 0);
	}
	for (int i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	assert_int_equal(a[0].errors + a[1].errors, 0);
	assert_true(a[0].allowed + a[1].allowed >= 300);
	assert_true(a[0].allowed + a[1].allowed <= 300 + 5);
	s->ops->destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(fresh_counter_is_read_once_then_decided_here),
	        cmocka_unit_test(one_node_admits_exactly_the_limit),
	        cmocka_unit_test(two_nodes_stay_within_the_bound),
	        cmocka_unit_test(rate_and_sliding_limits_sync_too),
	        cmocka_unit_test(two_worker_threads_share_one_local_store),
	        cmocka_unit_test(stopped_redis_keeps_deciding_then_catches_up),
	};

	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, setup, teardown);
}
