/* The Redis store on a real 3-master, 3-replica Redis Cluster started here:
 * a decision whose keys live on different shards is evaluated shard by
 * shard and refunds earlier commits when a later limit rejects; a slot in
 * migration answers ASK and, once moved, MOVED, and both are followed; a
 * killed master fails requests within the timeout until its replica takes
 * over, then decisions resume with the replicated counts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include "policy/policy-t.h"
#include "store/redis_int.h"
#include "test_redis_util.h"

#define NNODES 6
static int ports[NNODES];
static pid_t pids[NNODES];
static char dir[64];

static int cluster_ok(int port)
{
	redisReply *r = tr_cmd(port, "CLUSTER INFO");
	int ok = r && r->type == REDIS_REPLY_STRING && strstr(r->str, "cluster_state:ok");

	if (r)
		freeReplyObject(r);
	return ok;
}

/* A master, or a replica whose initial sync is done (a failover to a
 * replica that never synced would lose every count). */
static int replica_synced(int port)
{
	redisReply *r = tr_cmd(port, "INFO replication");
	int ok = r && r->type == REDIS_REPLY_STRING &&
	         (strstr(r->str, "role:master") || strstr(r->str, "master_link_status:up"));

	if (r)
		freeReplyObject(r);
	return ok;
}

static bool with_module; /* the nodes load sluice's module (src/redismod) */

static int setup(void **state)
{
	char cmd[512];
	int len;

	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/sluice-rc-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	for (int i = 0; i < NNODES; i++) {
		char conf[32];
		const char *extra[] = {"--cluster-enabled",
		                       "yes",
		                       "--cluster-config-file",
		                       conf,
		                       "--cluster-node-timeout",
		                       "1000",
		                       "--cluster-replica-validity-factor",
		                       "0",
		                       with_module ? "--loadmodule" : NULL,
		                       SLUICE_REDIS_MODULE,
		                       NULL};

		ports[i] = tr_free_cluster_port();
		snprintf(conf, sizeof(conf), "nodes-%d.conf", ports[i]);
		pids[i] = tr_start_redis(ports[i], dir, extra);
		if (pids[i] <= 0) {
			print_error("redis-server on port %d did not start\n", ports[i]);
			return -1;
		}
	}
	len = snprintf(cmd, sizeof(cmd), "redis-cli --cluster create");
	for (int i = 0; i < NNODES; i++)
		len += snprintf(cmd + len, sizeof(cmd) - (size_t)len, " 127.0.0.1:%d", ports[i]);
	snprintf(cmd + len, sizeof(cmd) - (size_t)len,
	         " --cluster-replicas 1 --cluster-yes >/dev/null 2>&1");
	if (system(cmd) != 0) {
		print_error("%s: failed\n", cmd);
		return -1;
	}
	for (int t = 0; t < 400; t++) {
		int ok = 1;

		for (int i = 0; i < NNODES; i++)
			ok &= cluster_ok(ports[i]) && replica_synced(ports[i]);
		if (ok)
			return 0;
		tr_sleep_ms(50);
	}
	print_error("cluster not ok with synced replicas after 20 s\n");
	return -1;
}

static int setup_module(void **state)
{
	with_module = true;
	return setup(state);
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	for (int i = 0; i < NNODES; i++)
		tr_stop_redis(pids[i]);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static struct sl_store *make_store(int64_t timeout_ns)
{
	struct sl_store_conf conf;
	struct sl_store *s = NULL;
	char url[96];

	memset(&conf, 0, sizeof(conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d,127.0.0.1:%d", ports[0], ports[1]);
	conf.type = SL_STORE_REDIS;
	conf.url = url;
	conf.cluster = true;
	conf.timeout = timeout_ns;
	conf.pool = 1;
	assert_int_equal(sl_redis_store_create(&s, &conf), 0);
	return s;
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

/* The slot the store puts (limit_id, key) in: see req_new() in redis.c. */
static unsigned slot_of(uint64_t id, const char *key)
{
	char buf[128];
	int n = snprintf(buf, sizeof(buf), "sl:{%016llx}:%016llx:%s",
	                 (unsigned long long)XXH3_64bits(key, strlen(key)), (unsigned long long)id,
	                 key);

	return sl_redis_key_slot(buf, (size_t)n);
}

/* Index of the master serving slot, its node id in id (41 bytes). */
static int owner_of(unsigned slot, char *id)
{
	for (int i = 0; i < NNODES; i++) {
		redisReply *r;
		int mine = 0;

		if (pids[i] <= 0)
			continue;
		r = tr_cmd(ports[i], "CLUSTER NODES");
		if (!r || r->type != REDIS_REPLY_STRING) {
			if (r)
				freeReplyObject(r);
			continue;
		}
		for (char *line = r->str; line && *line;) {
			char *nl = strchr(line, '\n');
			char nid[64], addr[64], flags[64];

			if (nl)
				*nl = '\0';
			if (sscanf(line, "%63s %63s %63s", nid, addr, flags) == 3 &&
			    strstr(flags, "myself") && strstr(flags, "master")) {
				/* slot ranges are the fields after the 8th */
				char *p = line;

				for (int f = 0; f < 8 && p; f++) {
					p = strchr(p, ' ');
					if (p)
						p++;
				}
				while (p && *p) {
					unsigned a, b;
					int used = 0;

					if (sscanf(p, "%u-%u%n", &a, &b, &used) == 2) {
					} else if (sscanf(p, "%u%n", &a, &used) == 1) {
						b = a;
					} else {
						break;
					}
					if (slot >= a && slot <= b) {
						mine = 1;
						memcpy(id, nid, 40);
						id[40] = 0;
					}
					p = strchr(p, ' ');
					if (p)
						p++;
				}
			}
			line = nl ? nl + 1 : NULL;
		}
		freeReplyObject(r);
		if (mine)
			return i;
	}
	return -1;
}

static void node_id(int i, char *id)
{
	redisReply *r = tr_cmd(ports[i], "CLUSTER MYID");

	assert_non_null(r);
	snprintf(id, 41, "%s", r->str);
	freeReplyObject(r);
}

static void decision_across_shards_refunds_earlier_commits(void **state)
{
	struct sl_limit_spec big, small;
	struct sl_check ck[2];
	struct sl_batch b;
	uv_loop_t loop;
	struct sl_store *s;
	char k2[16] = "u0", id[48];
	int o1, o2;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(500 * 1000000LL);
	assert_int_equal(sl_spec_quota(&big, 10, SL_CAL_DAY, 0), 0);
	assert_int_equal(sl_spec_quota(&small, 1, SL_CAL_DAY, 0), 0);
	o1 = owner_of(slot_of(8001, "u1"), id);
	for (int i = 2; i < 100; i++) { /* a key served by another master */
		snprintf(k2, sizeof(k2), "u%d", i);
		o2 = owner_of(slot_of(8002, k2), id);
		if (o2 != o1)
			break;
	}
	assert_int_not_equal(o1, o2);
	check_init(&ck[0], &big, 8001, "u1", 1);
	check_init(&ck[1], &small, 8002, k2, 1);
	assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 9);
	for (int i = 0; i < 10; i++) {
		assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, &b, NULL), SL_DENY);
		assert_int_equal(b.denied, 1);
		assert_int_equal(ck[0].res.remaining, 9); /* committed, then refunded */
	}
	assert_int_equal(tr_run(s, &loop, ck, 1, SL_OP_PEEK, NULL, NULL), SL_OK);
	assert_int_equal(ck[0].res.remaining, 9);
	/* Limits of one descriptor value share a slot: one exact script. */
	check_init(&ck[0], &big, 8003, "acct", 1);
	check_init(&ck[1], &small, 8004, "acct", 1);
	assert_int_equal(slot_of(8003, "acct"), slot_of(8004, "acct"));
	assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(tr_run(s, &loop, ck, 2, SL_OP_DECIDE, NULL, NULL), SL_DENY);
	assert_int_equal(ck[0].res.remaining, 9);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

static void ask_during_migration_and_moved_after(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	uv_loop_t loop;
	struct sl_store *s;
	char src_id[48], dst_id[48];
	unsigned slot = slot_of(9001, "mig");
	int src, dst = -1;
	redisReply *r;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(500 * 1000000LL);
	assert_int_equal(sl_spec_quota(&q, 100, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 9001, "mig", 1);
	src = owner_of(slot, src_id);
	assert_true(src >= 0);
	/* Pick another master: the owner of a slot far away, else of slot 0. */
	for (unsigned probe = 0; probe < SL_REDIS_SLOTS && dst < 0; probe += 1000) {
		char tmp[48];
		int o = owner_of(probe, tmp);

		if (o >= 0 && o != src)
			dst = o;
	}
	assert_true(dst >= 0);
	node_id(dst, dst_id);
	/* Warm the worker's slot map while the slot is still at src. */
	{
		struct sl_limit_spec other;
		struct sl_check ok;

		assert_int_equal(sl_spec_quota(&other, 100, SL_CAL_DAY, 0), 0);
		check_init(&ok, &other, 9002, "warm", 1);
		assert_int_equal(tr_run(s, &loop, &ok, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	}
	r = tr_cmd(ports[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, src_id);
	assert_true(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	r = tr_cmd(ports[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, dst_id);
	assert_true(r && r->type == REDIS_REPLY_STATUS);
	freeReplyObject(r);
	/* The key does not exist at src: src answers ASK, dst takes it. */
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck.res.remaining, 99);
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck.res.remaining, 98);
	/* Finish the move everywhere: the worker's map is stale, src answers
	 * MOVED, and the state created at dst during the move is found. */
	for (int i = 0; i < NNODES; i++) {
		r = tr_cmd(ports[i], "CLUSTER SETSLOT %u NODE %s", slot, dst_id);
		if (r)
			freeReplyObject(r);
	}
	assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck.res.remaining, 97);
	assert_int_equal(owner_of(slot, src_id), dst);
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* Whether the master at port has a replica that acknowledged its whole
 * replication stream, within ms. */
static bool replica_caught_up(int port, int ms)
{
	int64_t t0 = tr_now_ms();

	while (tr_now_ms() - t0 < ms) {
		redisReply *r = tr_cmd(port, "INFO replication");
		long long master = -1, acked = -2;
		const char *p;

		if (r != NULL && r->type == REDIS_REPLY_STRING) {
			if ((p = strstr(r->str, "master_repl_offset:")) != NULL)
				master = strtoll(p + 19, NULL, 10);
			if ((p = strstr(r->str, "slave0:")) != NULL && (p = strstr(p, "offset=")))
				acked = strtoll(p + 7, NULL, 10);
		}
		if (r)
			freeReplyObject(r);
		if (master >= 0 && acked >= master)
			return true;
		tr_sleep_ms(10);
	}
	return false;
}

static void master_failover_errors_within_timeout_then_recovers(void **state)
{
	struct sl_limit_spec q;
	struct sl_check ck;
	uv_loop_t loop;
	struct sl_store *s;
	char id[48];
	int owner, rc = 0, ok = 0, failed = 0;
	int64_t ms, t0;

	(void)state;
	uv_loop_init(&loop);
	s = make_store(200 * 1000000LL);
	assert_int_equal(sl_spec_quota(&q, 1000, SL_CAL_DAY, 0), 0);
	check_init(&ck, &q, 10001, "fo", 1);
	for (int i = 0; i < 5; i++)
		assert_int_equal(tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, NULL), SL_OK);
	assert_int_equal(ck.res.remaining, 995);
	owner = owner_of(slot_of(10001, "fo"), id);
	assert_true(owner >= 0);
	/* the replica has the last write before its master dies: WAIT on a
	 * connection of our own would not do (it waits only for that
	 * connection's writes), so wait until the master's replication offset
	 * is acknowledged by its replica */
	assert_true(replica_caught_up(ports[owner], 5000));
	tr_stop_redis(pids[owner]);
	pids[owner] = -1;
	t0 = tr_now_ms();
	while (!ok && tr_now_ms() - t0 < 20000) {
		rc = tr_run(s, &loop, &ck, 1, SL_OP_DECIDE, NULL, &ms);
		assert_true(rc == SL_OK || rc == SL_EIO || rc == SL_ETIMEDOUT);
		assert_true(ms <= 200 + 100);
		ok = rc == SL_OK;
		if (!ok) {
			failed++;
			tr_sleep_ms(20);
		}
	}
	print_message("failover: %d failed decisions, %lld ms, last %d\n", failed,
	              (long long)(tr_now_ms() - t0), rc);
	if (!ok) {
		for (int i = 0; i < NNODES; i++) {
			redisReply *r = pids[i] > 0 ? tr_cmd(ports[i], "CLUSTER NODES") : NULL;

			if (r) {
				print_message("%s\n", r->str);
				freeReplyObject(r);
				break;
			}
		}
	}
	assert_true(ok);
	assert_true(failed > 0);
	assert_int_equal(ck.res.remaining, 994); /* the replica had the counts */
	tr_free_store(s, &loop);
	uv_loop_close(&loop);
}

/* (module group, last) the decisions above went to SLUICE.CALL on the
 * shards: Redis Cluster found their keys through the module's getkeys. */
static void module_decided_on_the_shards(void **state)
{
	long long n = 0;

	(void)state;
	for (int i = 0; i < NNODES; i++) {
		redisReply *r = tr_cmd(ports[i], "INFO commandstats");
		const char *p;

		if (r && r->type == REDIS_REPLY_STRING &&
		    (p = strstr(r->str, "cmdstat_sluice.call:calls=")) != NULL)
			n += strtoll(p + 26, NULL, 10);
		if (r)
			freeReplyObject(r);
	}
	print_message("sluice.call on the shards: %lld\n", n);
	assert_true(n >= 5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(decision_across_shards_refunds_earlier_commits),
	        cmocka_unit_test(ask_during_migration_and_moved_after),
	        cmocka_unit_test(master_failover_errors_within_timeout_then_recovers),
	};

	const struct CMUnitTest module_tests[] = {
	        cmocka_unit_test(decision_across_shards_refunds_earlier_commits),
	        cmocka_unit_test(ask_during_migration_and_moved_after),
	        cmocka_unit_test(master_failover_errors_within_timeout_then_recovers),
	        cmocka_unit_test(module_decided_on_the_shards),
	};
	int failed;

	signal(SIGPIPE, SIG_IGN);
	failed = cmocka_run_group_tests_name("library", tests, setup, teardown);
	return failed + cmocka_run_group_tests_name("module", module_tests, setup_module, teardown);
}
