/* The Redis store's reply interpretation without a server: RESP bytes made
 * into replies by hiredis's own reader, then through sl_redis_script_result
 * (the decision script's reply) and sl_redis_slot_map (CLUSTER SLOTS). A
 * reply the script cannot send is a protocol error, never an index outside
 * the batch or an overflow; a slot map is built in bounded time and names
 * only usable nodes. Regressions found by tests/fuzz/fuzz_redis_reply.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>
#include <hiredis/hiredis.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include <sluice/batch-t.h>
#include "store/redis_int.h"

/* The one reply in resp[0, len) (parsed by hiredis), or NULL. */
static redisReply *parse_len(const char *resp, size_t len)
{
	redisReader *rd = redisReaderCreate();
	void *r = NULL;

	assert_non_null(rd);
	assert_int_equal(redisReaderFeed(rd, resp, len), REDIS_OK);
	assert_int_equal(redisReaderGetReply(rd, &r), REDIS_OK);
	redisReaderFree(rd);
	return r;
}

static redisReply *parse(const char *resp)
{
	return parse_len(resp, strlen(resp));
}

/* The library's reply of fields v[0, n): one bulk string of little-endian
 * int64s. */
static redisReply *fields(const long long *v, size_t n)
{
	char buf[1024];
	int k = snprintf(buf, sizeof(buf), "$%zu\r\n", n * 8);

	assert_true(n * 8 + (size_t)k + 2 <= sizeof(buf));
	for (size_t i = 0; i < n; i++)
		for (int b = 0; b < 8; b++)
			buf[k++] = (char)(((unsigned long long)v[i] >> (8 * b)) & 0xff);
	buf[k++] = '\r';
	buf[k++] = '\n';
	return parse_len(buf, (size_t)k);
}

/* A reply of the 2 header fields and one D group of two checks (a rate
 * and a concurrency limit: 4 fields each; the second's last field is its
 * retry_after when it is rejected). */
static redisReply *script(long long ts, long long tns, long long outcome0, long long outcome1)
{
	const long long v[] = {ts,       tns, outcome0,      4,           6000000000LL, 0,
	                       outcome1, 0,   30000000000LL, 1000000000LL};

	return fields(v, sizeof(v) / sizeof(v[0]));
}

static struct sl_limit_spec specs[2];
static struct sl_check checks[2];

static int setup(void **state)
{
	(void)state;
	assert_int_equal(sl_spec_rate(&specs[0], 10, SL_NS_PER_MIN, 0, 0), SL_OK);
	assert_int_equal(sl_spec_concurrency(&specs[1], 2, 30 * SL_NS_PER_SEC), SL_OK);
	memset(checks, 0, sizeof(checks));
	checks[0].spec = &specs[0];
	checks[1].spec = &specs[1];
	return 0;
}

static void script_result_reads_a_denial(void **state)
{
	struct sl_redis_result res;
	redisReply *r = script(1700000000, 5, SL_ALLOWED, SL_REJECTED);

	(void)state;
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), 0);
	assert_int_equal(res.status, 2);
	assert_int_equal(res.denied, 1);
	assert_int_equal(res.time, 1700000000LL * SL_NS_PER_SEC + 5);
	assert_int_equal(checks[0].res.remaining, 4);
	assert_int_equal(checks[0].res.limit, 10);
	assert_int_equal(checks[1].res.outcome, SL_REJECTED);
	assert_int_equal(checks[1].res.retry_after, SL_NS_PER_SEC);
	assert_int_equal(checks[1].res.limit, 2);
	/* windows not sent: a rate's is its period, a concurrency's none */
	assert_int_equal(checks[0].res.window, SL_NS_PER_MIN);
	assert_int_equal(checks[1].res.window, 0);
	assert_int_equal(checks[0].res.delay, 0);
	freeReplyObject(r);
}

/* A quota's result carries its window (a month's length varies); the
 * fourth field of a delayed check is its delay, not a retry. */
static void results_carry_quota_window_and_delay(void **state)
{
	struct sl_limit_spec q, rt;
	struct sl_check ck[2];
	struct sl_redis_result res;
	const long long v[] = {1700000000, 0, SL_DELAYED,      0, 2000000000LL,      500000000LL,
	                       SL_ALLOWED, 6, 3600000000000LL, 0, 2678400000000000LL};
	redisReply *r = fields(v, sizeof(v) / sizeof(v[0]));

	(void)state;
	assert_int_equal(sl_spec_rate(&rt, 10, SL_NS_PER_SEC, 2, 2), SL_OK);
	assert_int_equal(sl_spec_quota(&q, 9, SL_CAL_MONTH, 0), SL_OK);
	memset(ck, 0, sizeof(ck));
	ck[0].spec = &rt;
	ck[1].spec = &q;
	assert_int_equal(sl_redis_script_result(r, ck, 2, &res), 0);
	assert_int_equal(res.status, 1);
	assert_int_equal(res.delay, 500000000LL);
	assert_int_equal(ck[0].res.delay, 500000000LL);
	assert_int_equal(ck[0].res.retry_after, 0);
	assert_int_equal(ck[0].res.window, SL_NS_PER_SEC);
	assert_int_equal(ck[1].res.remaining, 6);
	assert_int_equal(ck[1].res.window, 2678400000000000LL);
	freeReplyObject(r);
	/* without the quota's fifth field the reply is short */
	r = fields(v, sizeof(v) / sizeof(v[0]) - 1);
	assert_int_equal(sl_redis_script_result(r, ck, 2, &res), SL_EPROTO);
	freeReplyObject(r);
}

/* The denied index comes from the outcomes: the first rejected check, so
 * it can never name a check outside the call. */
static void script_result_denies_at_the_first_rejection(void **state)
{
	struct sl_redis_result res;
	redisReply *r = script(1700000000, 0, SL_REJECTED, SL_REJECTED);

	(void)state;
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), 0);
	assert_int_equal(res.status, 2);
	assert_int_equal(res.denied, 0);
	freeReplyObject(r);
	r = script(1700000000, 0, SL_DELAYED, SL_ALLOWED);
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), 0);
	assert_int_equal(res.status, 1);
	assert_int_equal(res.denied, 2);
	freeReplyObject(r);
	/* a reply for three checks is not one for two */
	assert_int_equal(sl_redis_script_result(r = script(1700000000, 0, 0, 0), checks, 1, &res),
	                 SL_EPROTO);
	freeReplyObject(r);
}

/* time s * 1e9 + ns was computed in int64: undefined behaviour. */
static void script_result_refuses_a_time_beyond_int64(void **state)
{
	struct sl_redis_result res;
	redisReply *r;

	(void)state;
	r = script(9700000000LL, 0, SL_ALLOWED, SL_ALLOWED);
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), SL_EPROTO);
	freeReplyObject(r);
	r = script(1700000000, SL_NS_PER_SEC, SL_ALLOWED, SL_ALLOWED);
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), SL_EPROTO);
	freeReplyObject(r);
	r = script(-1, 0, SL_ALLOWED, SL_ALLOWED);
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), SL_EPROTO);
	freeReplyObject(r);
}

static void script_result_refuses_values_no_evaluation_makes(void **state)
{
	struct sl_redis_result res;
	redisReply *r = script(1700000000, 0, 3, SL_ALLOWED);

	(void)state;
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), SL_EPROTO);
	freeReplyObject(r);
	{
		const long long v[] = {1700000000,    0, 0, -4, 6000000000LL, 0, 0, 0,
		                       30000000000LL, 0};

		r = fields(v, sizeof(v) / sizeof(v[0]));
	}
	assert_int_equal(sl_redis_script_result(r, checks, 2, &res), SL_EPROTO);
	freeReplyObject(r);
	/* not whole fields, an array (the text-era reply), an integer */
	r = parse("$15\r\n123456781234567\r\n");
	assert_int_equal(sl_redis_script_result(r, checks, 0, &res), SL_EPROTO);
	freeReplyObject(r);
	r = parse("*2\r\n:1700000000\r\n:0\r\n");
	assert_int_equal(sl_redis_script_result(r, checks, 0, &res), SL_EPROTO);
	freeReplyObject(r);
	r = parse(":1\r\n");
	assert_int_equal(sl_redis_script_result(r, checks, 0, &res), SL_EPROTO);
	freeReplyObject(r);
}

/* Groups of one call: each takes its own fields; raw states of S and A. */
static void group_results_split_one_call(void **state)
{
	struct sl_redis_result res;
	struct sl_redis_raw raw[2];
	int64_t ts, tns;
	/* A over two checks (3 raw fields each), then S over one: its result
	 * (4 fields) and its raw state */
	const long long v[] = {1700000000,   0,       7, 0, 0, 0, 9, 0, 0, 4, 6000000000LL, 0,
	                       6000000000LL, 6000000, 0};
	redisReply *r = fields(v, sizeof(v) / sizeof(v[0]));
	const char *f = r->str;

	(void)state;
	assert_int_equal(sl_redis_reply_time(r, &ts, &tns), 0);
	assert_int_equal(sl_redis_reply_fields(r), 15);
	assert_int_equal(sl_redis_group_result(f + 2 * 8, 13, 'A', checks, 2, &res, raw), 6);
	assert_int_equal(raw[0].rel, 7);
	assert_int_equal(raw[1].v1, 9);
	assert_int_equal(sl_redis_group_result(f + 8 * 8, 7, 'S', checks, 1, &res, raw), 7);
	assert_int_equal(raw[0].rel, 6000000000LL);
	assert_int_equal(raw[0].v1, 6000000);
	assert_int_equal(checks[0].res.remaining, 4);
	assert_int_equal(sl_redis_group_result(f + 8 * 8, 6, 'S', checks, 1, &res, raw), SL_EPROTO);
	freeReplyObject(r);
}

static unsigned node_count;

static unsigned node_of(void *arg, const char *host, int port)
{
	(void)arg;
	(void)host;
	(void)port;
	return node_count++;
}

static void slot_map_reads_three_masters(void **state)
{
	static uint8_t map[SL_REDIS_SLOTS];
	redisReply *r = parse("*3\r\n"
	                      "*3\r\n:0\r\n:5460\r\n*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n"
	                      "*3\r\n:5461\r\n:10922\r\n*2\r\n$1\r\n?\r\n:7001\r\n"
	                      "*3\r\n:10923\r\n:16383\r\n*2\r\n$0\r\n\r\n:7002\r\n");

	(void)state;
	node_count = 0;
	assert_int_equal(sl_redis_slot_map(r, "127.0.0.1", node_of, NULL, map), SL_REDIS_SLOTS);
	assert_int_equal(map[0], 0);
	assert_int_equal(map[5461], 1);
	assert_int_equal(map[16383], 2);
	freeReplyObject(r);
}

/* The range loop started at the reply's first slot: from -2^63 it ran for
 * 2^63 steps on the event loop. */
static void slot_map_clamps_a_range_from_far_below_zero(void **state)
{
	static uint8_t map[SL_REDIS_SLOTS];
	redisReply *r = parse("*1\r\n*3\r\n:-9223372036854775808\r\n:99\r\n"
	                      "*2\r\n$9\r\n127.0.0.1\r\n:7000\r\n");

	(void)state;
	node_count = 0;
	assert_int_equal(sl_redis_slot_map(r, "127.0.0.1", node_of, NULL, map), 100);
	assert_int_equal(map[99], 0);
	assert_int_equal(map[100], SL_REDIS_NO_NODE);
	freeReplyObject(r);
}

/* The port went through (int) into the node table: 2^32 + 7000 was 7000,
 * 872197001 and -1 became nodes nothing can connect to. */
static void slot_map_skips_ports_out_of_range(void **state)
{
	static uint8_t map[SL_REDIS_SLOTS];
	redisReply *r = parse("*3\r\n"
	                      "*3\r\n:0\r\n:10\r\n*2\r\n$9\r\n127.0.0.1\r\n:4294974296\r\n"
	                      "*3\r\n:11\r\n:20\r\n*2\r\n$9\r\n127.0.0.1\r\n:-1\r\n"
	                      "*3\r\n:21\r\n:30\r\n*2\r\n$9\r\n127.0.0.1\r\n:0\r\n");

	(void)state;
	node_count = 0;
	assert_int_equal(sl_redis_slot_map(r, "127.0.0.1", node_of, NULL, map), 0);
	assert_int_equal(node_count, 0);
	freeReplyObject(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(script_result_reads_a_denial, setup),
	        cmocka_unit_test_setup(script_result_denies_at_the_first_rejection, setup),
	        cmocka_unit_test_setup(group_results_split_one_call, setup),
	        cmocka_unit_test(results_carry_quota_window_and_delay),
	        cmocka_unit_test_setup(script_result_refuses_a_time_beyond_int64, setup),
	        cmocka_unit_test_setup(script_result_refuses_values_no_evaluation_makes, setup),
	        cmocka_unit_test(slot_map_reads_three_masters),
	        cmocka_unit_test(slot_map_clamps_a_range_from_far_below_zero),
	        cmocka_unit_test(slot_map_skips_ports_out_of_range),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
