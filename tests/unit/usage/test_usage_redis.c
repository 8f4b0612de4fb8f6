/* The usage history in Redis (usage.store: redis) against a real
 * redis-server started here: the same roll-up into minute, hour and day
 * rows as SQLite, two handles (two nodes) writing into one history that
 * either answers whole, top ordering with ties by name, rejections by
 * limit, retention as each key's EXPIREAT, and a server that is gone
 * failing a flush and a query with SL_EIO, then recovering when it is
 * back. Bucket starts are in December 2026 (the keys' expiry is real time). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <sluice/algo-t.h>
#include "store/test_redis_util.h"
#include "usage/usage.h"

#define T0    (1796169600LL) /* s: 2026-12-02 00:00:00 UTC */
#define NS(s) ((int64_t)(s)*SL_NS_PER_SEC)

static int port;
static pid_t pid;
static char url[64];

static struct sl_usage *open_one(unsigned workers)
{
	struct sl_usage_conf c = {.enabled = true,
	                          .redis = true,
	                          .redis_url = url,
	                          .max_series = 1024,
	                          .keep_minutes = NS(48 * 3600),
	                          .keep_hours = NS(90 * 86400),
	                          .keep_days = NS(730 * 86400)};
	struct sl_usage *u = NULL;
	char err[256];

	assert_int_equal(sl_usage_open(&u, &c, workers, NULL, err, sizeof(err)), 0);
	return u;
}

static int setup(void **state)
{
	(void)state;
	port = tr_free_port();
	pid = tr_start_redis(port, NULL, NULL);
	assert_true(pid > 0);
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	tr_stop_redis(pid);
	return 0;
}

static int flush_db(void **state)
{
	redisReply *r = tr_cmd(port, "FLUSHALL");
	(void)state;
	freeReplyObject(r);
	return 0;
}

struct sums {
	uint64_t allowed, delayed, rejected, cost, by_hourly;
	unsigned rows;
};

static void add_row(void *arg, const struct sl_usage_row *r)
{
	struct sums *s = arg;

	s->rows++;
	s->allowed += r->allowed;
	s->delayed += r->delayed;
	s->rejected += r->rejected;
	s->cost += r->cost;
	if (r->limit && strcmp(r->limit, "hourly") == 0)
		s->by_hourly += r->rejected;
}

static struct sums hist(struct sl_usage *u, const char *acc, unsigned b, int64_t from, int64_t to)
{
	struct sums s = {0};

	assert_int_equal(sl_usage_history(u, acc, strlen(acc), b, from, to, add_row, &s), 0);
	return s;
}

static void count(struct sl_usage *u, unsigned w, const char *acc, const char *lim, unsigned o,
                  uint64_t cost, int64_t t)
{
	sl_usage_count(sl_usage_shard(u, w), acc, strlen(acc), lim, o, cost, NS(t));
}

static void two_nodes_write_one_history_rolled_up(void **state)
{
	struct sl_usage *a = open_one(2), *b = open_one(1);
	struct sums s;

	(void)state;
	count(a, 0, "acme", "hourly", SL_USAGE_ALLOWED, 2, T0 + 5);
	count(a, 1, "acme", "hourly", SL_USAGE_DELAYED, 1, T0 + 70);
	count(b, 0, "acme", "hourly", SL_USAGE_REJECTED, 9, T0 + 75);
	count(b, 0, "acme", "ip", SL_USAGE_ALLOWED, 1, T0 + 3601);
	assert_int_equal(sl_usage_flush(a, NS(T0 + 3700)), 0);
	assert_int_equal(sl_usage_flush(b, NS(T0 + 3700)), 0);
	for (int n = 0; n < 2; n++) {
		struct sl_usage *u = n ? b : a;

		s = hist(u, "acme", SL_USAGE_MINUTE, T0, T0 + 7200);
		assert_int_equal(s.rows, 3); /* (0,hourly) (60,hourly) (3600,ip) */
		assert_int_equal(s.allowed, 2);
		assert_int_equal(s.delayed, 1);
		assert_int_equal(s.rejected, 1);
		assert_int_equal(s.by_hourly, 1);
		assert_int_equal(s.cost, 4);
		s = hist(u, "acme", SL_USAGE_HOUR, T0, T0 + 7200);
		assert_int_equal(s.rows, 2);
		assert_int_equal(s.allowed + s.delayed + s.rejected, 4);
		s = hist(u, "acme", SL_USAGE_DAY, T0, T0);
		assert_int_equal(s.rows, 2); /* hourly and ip rows of the day */
		assert_int_equal(s.allowed + s.delayed + s.rejected, 4);
	}
	assert_int_equal(hist(a, "nobody", SL_USAGE_DAY, T0, T0).rows, 0);
	sl_usage_close(a);
	sl_usage_close(b);
}

struct toprows {
	char acc[8][32];
	uint64_t rejected[8], allowed[8], by_hourly[8];
	unsigned n;
};

static void top_row(void *arg, const struct sl_usage_row *r)
{
	struct toprows *t = arg;

	if (r->limit == NULL) {
		snprintf(t->acc[t->n], sizeof(t->acc[0]), "%s", r->account);
		t->rejected[t->n] = r->rejected;
		t->allowed[t->n] = r->allowed;
		t->n++;
	} else if (strcmp(r->limit, "hourly") == 0) {
		t->by_hourly[t->n - 1] = r->rejected;
	}
}

static void top_and_rejected_by_match_the_sqlite_order(void **state)
{
	struct sl_usage *u = open_one(1);
	struct toprows t = {0};
	struct sums fleet = {0};
	const int64_t now = T0 + 100;

	(void)state;
	for (int i = 0; i < 5; i++)
		count(u, 0, "b", "hourly", SL_USAGE_REJECTED, 1, T0 + 10);
	for (int i = 0; i < 2; i++)
		count(u, 0, "a", "ip", SL_USAGE_REJECTED, 1, T0 + 70);
	for (int i = 0; i < 3; i++) {
		count(u, 0, "c", "hourly", SL_USAGE_ALLOWED, 1, T0 + 10);
		count(u, 0, "d", "hourly", SL_USAGE_ALLOWED, 1, T0 + 10);
	}
	count(u, 0, "", "ip", SL_USAGE_REJECTED, 1, T0 + 10);
	assert_int_equal(sl_usage_flush(u, NS(now)), 0);

	assert_int_equal(sl_usage_top(u, SL_USAGE_BY_REJECTED, now - 3600, 10, now, top_row, &t),
	                 0);
	assert_int_equal(t.n, 4); /* "" is never an account */
	assert_string_equal(t.acc[0], "b");
	assert_int_equal(t.by_hourly[0], 5);
	assert_string_equal(t.acc[1], "a");
	assert_int_equal(t.rejected[1], 2);
	assert_string_equal(t.acc[2], "c"); /* 0 rejected: ties by name */
	assert_string_equal(t.acc[3], "d");
	memset(&t, 0, sizeof(t));
	assert_int_equal(sl_usage_top(u, SL_USAGE_BY_ALLOWED, now - 3600, 1, now, top_row, &t), 0);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.acc[0], "c"); /* c and d tie at 3: the first name */
	assert_int_equal(t.allowed[0], 3);
	assert_int_equal(sl_usage_rejected_by(u, now - 3600, now, add_row, &fleet), 0);
	assert_int_equal(fleet.by_hourly, 5);
	assert_int_equal(fleet.rejected, 8);
	sl_usage_close(u);
}

static void keys_expire_at_the_end_of_their_retention(void **state)
{
	struct sl_usage *u = open_one(1);
	redisReply *r;

	(void)state;
	count(u, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 5);
	assert_int_equal(sl_usage_flush(u, NS(T0 + 10)), 0);
	r = tr_cmd(port, "EXPIRETIME sluice:usage:m:%lld:acme", (long long)T0);
	assert_int_equal(r->integer, T0 + 48 * 3600 + 60);
	freeReplyObject(r);
	r = tr_cmd(port, "EXPIRETIME sluice:usage:h:%lld:acme", (long long)T0);
	assert_int_equal(r->integer, T0 + 90LL * 86400 + 3600);
	freeReplyObject(r);
	r = tr_cmd(port, "EXPIRETIME sluice:usage:d:%lld:acme", (long long)T0);
	assert_int_equal(r->integer, T0 + 730LL * 86400 + 86400);
	freeReplyObject(r);
	r = tr_cmd(port, "EXPIRETIME sluice:usage:zr:m:%lld", (long long)T0);
	assert_int_equal(r->integer, T0 + 48 * 3600 + 60);
	freeReplyObject(r);
	sl_usage_close(u);
}

static void a_server_gone_fails_then_recovers(void **state)
{
	struct sl_usage *u = open_one(1);
	struct sl_usage_stats st;
	struct sums s = {0};

	(void)state;
	tr_stop_redis(pid);
	count(u, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 5);
	assert_int_equal(sl_usage_flush(u, NS(T0 + 10)), SL_EIO);
	assert_int_equal(sl_usage_history(u, "acme", 4, SL_USAGE_MINUTE, T0, T0, add_row, &s),
	                 SL_EIO);
	sl_usage_stats(u, &st);
	assert_int_equal(st.flush_errors, 1);
	pid = tr_start_redis(port, NULL, NULL);
	assert_true(pid > 0);
	count(u, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 6);
	assert_int_equal(sl_usage_flush(u, NS(T0 + 11)), 0);
	assert_int_equal(hist(u, "acme", SL_USAGE_MINUTE, T0, T0).allowed, 1); /* the first lost */
	sl_usage_close(u);
}

static void open_refuses_an_unreachable_or_bad_address(void **state)
{
	struct sl_usage_conf c = {
	        .redis = true, .redis_url = "redis://127.0.0.1:1", .max_series = 64};
	struct sl_usage *u = NULL;
	char err[256] = "";

	(void)state;
	assert_int_equal(sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)), SL_EIO);
	assert_null(u);
	assert_non_null(strstr(err, "127.0.0.1:1"));
	c.redis_url = "redis://:99";
	assert_int_equal(sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)), SL_ECONFIG);
	assert_null(u);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup(two_nodes_write_one_history_rolled_up, flush_db),
	        cmocka_unit_test_setup(top_and_rejected_by_match_the_sqlite_order, flush_db),
	        cmocka_unit_test_setup(keys_expire_at_the_end_of_their_retention, flush_db),
	        cmocka_unit_test_setup(a_server_gone_fails_then_recovers, flush_db),
	        cmocka_unit_test(open_refuses_an_unreachable_or_bad_address),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
