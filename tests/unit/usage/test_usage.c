/* The usage history: counting per (account, limit, minute) in a worker
 * table, the flush into minute, hour and day rows (the roll-up), the
 * bound of a full table (dropped and counted, never grown), names too long
 * to keep, retention of each bucket driven by an injected clock, top
 * accounts and rejections by limit, and the mapping of a finished
 * evaluation to an outcome. Nothing sleeps: every call takes `now`. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/policy.h"
#include "usage/usage.h"

#define T0    (1796169600LL) /* s: 2026-12-02 00:00:00 UTC, a day boundary */
#define NS(s) ((int64_t)(s)*SL_NS_PER_SEC)
#define HOUR  3600
#define DAY   86400

struct fix {
	char dir[64];
	char path[96];
	struct sl_usage *u;
	struct sl_usage_conf conf;
};

static int setup_n(void **state, uint64_t max_series)
{
	struct fix *f = calloc(1, sizeof(*f));
	char err[256];

	snprintf(f->dir, sizeof(f->dir), "/tmp/sl-usage-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/usage.db", f->dir);
	f->conf = (struct sl_usage_conf){
	        .enabled = true,
	        .path = f->path,
	        .flush_interval = NS(10),
	        .max_series = max_series,
	        .keep_minutes = NS(48 * HOUR),
	        .keep_hours = NS(90 * DAY),
	        .keep_days = NS(730 * DAY),
	};
	assert_int_equal(sl_usage_open(&f->u, &f->conf, 2, NULL, err, sizeof(err)), 0);
	*state = f;
	return 0;
}

static int setup(void **state)
{
	return setup_n(state, 1024);
}

static int setup_small(void **state)
{
	return setup_n(state, 64);
}

static int teardown(void **state)
{
	struct fix *f = *state;
	char p[128];

	sl_usage_close(f->u);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s-wal", f->path);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", f->path);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* Sums of a history query, and the rows seen. */
struct sums {
	uint64_t allowed, delayed, rejected, cost;
	uint64_t by_hourly, by_ip;
	unsigned rows;
	int64_t first, last;
};

static void add_row(void *arg, const struct sl_usage_row *r)
{
	struct sums *s = arg;

	if (s->rows == 0)
		s->first = r->start;
	s->last = r->start;
	s->rows++;
	s->allowed += r->allowed;
	s->delayed += r->delayed;
	s->rejected += r->rejected;
	s->cost += r->cost;
	if (r->limit && strcmp(r->limit, "hourly") == 0)
		s->by_hourly += r->rejected;
	if (r->limit && strcmp(r->limit, "ip") == 0)
		s->by_ip += r->rejected;
}

static struct sums hist(struct fix *f, const char *acc, unsigned bucket, int64_t from, int64_t to)
{
	struct sums s = {0};

	assert_int_equal(sl_usage_history(f->u, acc, strlen(acc), bucket, from, to, add_row, &s),
	                 0);
	return s;
}

static void count(struct fix *f, unsigned w, const char *acc, const char *lim, unsigned o,
                  uint64_t cost, int64_t t)
{
	sl_usage_count(sl_usage_shard(f->u, w), acc, strlen(acc), lim, o, cost, NS(t));
}

static void flush_rolls_minutes_up_to_hours_and_days(void **state)
{
	struct fix *f = *state;
	struct sums s;

	/* two workers, three minutes of one hour, one minute of the next hour */
	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 2, T0 + 5);
	count(f, 1, "acme", "hourly", SL_USAGE_ALLOWED, 3, T0 + 59);
	count(f, 0, "acme", "hourly", SL_USAGE_DELAYED, 1, T0 + 61);
	count(f, 1, "acme", "hourly", SL_USAGE_REJECTED, 7, T0 + 125);
	count(f, 0, "acme", "ip", SL_USAGE_REJECTED, 1, T0 + 125);
	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + HOUR + 1);
	count(f, 0, "other", NULL, SL_USAGE_ALLOWED, 1, T0 + 1);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + HOUR + 2)), 0);

	s = hist(f, "acme", SL_USAGE_MINUTE, T0, T0 + 2 * HOUR);
	assert_int_equal(s.rows,
	                 5); /* (0,hourly) (60,hourly) (120,hourly) (120,ip) (3600,hourly) */
	assert_int_equal(s.allowed, 3);
	assert_int_equal(s.delayed, 1);
	assert_int_equal(s.rejected, 2);
	assert_int_equal(s.cost, 2 + 3 + 1 + 1); /* rejected decisions admit nothing */
	assert_int_equal(s.by_hourly, 1);
	assert_int_equal(s.by_ip, 1);

	s = hist(f, "acme", SL_USAGE_HOUR, T0, T0 + 2 * HOUR);
	assert_int_equal(s.rows, 3); /* hour 0: hourly, ip; hour 1: hourly */
	assert_int_equal(s.first, T0);
	assert_int_equal(s.last, T0 + HOUR);
	assert_int_equal(s.allowed + s.delayed + s.rejected, 6);

	s = hist(f, "acme", SL_USAGE_DAY, T0, T0 + DAY);
	assert_int_equal(s.rows, 2);
	assert_int_equal(s.allowed + s.delayed + s.rejected, 6);
	assert_int_equal(s.cost, 7);

	s = hist(f, "other", SL_USAGE_DAY, T0, T0 + DAY);
	assert_int_equal(s.allowed, 1);
	s = hist(f, "nobody", SL_USAGE_DAY, T0, T0 + DAY);
	assert_int_equal(s.rows, 0);
}

static void flushes_add_to_rows_already_written(void **state)
{
	struct fix *f = *state;
	struct sums s;

	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 10; i++)
			count(f, (unsigned)i & 1, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 10);
		assert_int_equal(sl_usage_flush(f->u, NS(T0 + 20 + round)), 0);
	}
	/* a flush with nothing counted writes nothing and changes nothing */
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 30)), 0);
	s = hist(f, "acme", SL_USAGE_MINUTE, T0, T0 + 60);
	assert_int_equal(s.rows, 1);
	assert_int_equal(s.allowed, 30);
	s = hist(f, "acme", SL_USAGE_DAY, T0, T0);
	assert_int_equal(s.allowed, 30);
}

static void full_table_drops_and_counts_instead_of_growing(void **state)
{
	struct fix *f = *state;
	struct sl_usage_stats st;
	char name[16];
	unsigned n = 0;

	/* 64 slots, refused past 56 used: 100 accounts in one minute */
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "acc%d", i);
		count(f, 0, name, "hourly", SL_USAGE_ALLOWED, 1, T0);
	}
	/* an existing series still counts when the table is full */
	count(f, 0, "acc0", "hourly", SL_USAGE_ALLOWED, 1, T0);
	sl_usage_stats(f->u, &st);
	assert_int_equal(st.cap, 64);
	assert_int_equal(st.counted + st.dropped, 101);
	assert_true(st.dropped >= 100 - 56);
	assert_true(st.counted <= 57);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 1)), 0);
	for (int i = 0; i < 100; i++) {
		snprintf(name, sizeof(name), "acc%d", i);
		n += hist(f, name, SL_USAGE_MINUTE, T0, T0).allowed;
	}
	assert_int_equal(n, st.counted);
	/* after the flush the table has room again */
	count(f, 0, "late", "hourly", SL_USAGE_ALLOWED, 1, T0 + 2);
	sl_usage_stats(f->u, &st);
	assert_int_equal(st.counted, n + 1);
}

static void names_too_long_are_dropped_not_truncated(void **state)
{
	struct fix *f = *state;
	struct sl_usage_stats st;
	char acc[SL_USAGE_ACCOUNT + 4], lim[SL_USAGE_LIMIT + 4];

	memset(acc, 'a', sizeof(acc) - 1);
	acc[sizeof(acc) - 1] = '\0';
	memset(lim, 'l', sizeof(lim) - 1);
	lim[sizeof(lim) - 1] = '\0';
	count(f, 0, acc, "hourly", SL_USAGE_ALLOWED, 1, T0);
	count(f, 0, "acme", lim, SL_USAGE_ALLOWED, 1, T0);
	acc[SL_USAGE_ACCOUNT - 1] = '\0'; /* the longest kept: 95 bytes */
	count(f, 0, acc, "hourly", SL_USAGE_ALLOWED, 1, T0);
	sl_usage_stats(f->u, &st);
	assert_int_equal(st.dropped, 2);
	assert_int_equal(st.counted, 1);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 1)), 0);
	assert_int_equal(hist(f, acc, SL_USAGE_MINUTE, T0, T0).allowed, 1);
}

static void retention_drops_each_bucket_after_its_time(void **state)
{
	struct fix *f = *state;

	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 30);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 60)), 0);
	/* 47 h later: every bucket still there */
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 47 * HOUR)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, T0 + DAY).allowed, 1);
	/* 49 h: the minute is gone, its hour and day are kept */
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 49 * HOUR)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, T0 + DAY).rows, 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_HOUR, T0, T0 + DAY).allowed, 1);
	assert_int_equal(hist(f, "acme", SL_USAGE_DAY, T0, T0 + DAY).allowed, 1);
	/* 89 days: the hour is kept; 91 days: gone, the day kept */
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 89 * DAY)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_HOUR, T0, T0 + DAY).allowed, 1);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 91 * DAY)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_HOUR, T0, T0 + DAY).rows, 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_DAY, T0, T0 + DAY).allowed, 1);
	/* 2 years and 2 days: the day is gone too */
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 732 * DAY)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_DAY, T0, T0 + DAY).rows, 0);
}

static void retention_passes_run_at_most_once_a_minute(void **state)
{
	struct fix *f = *state;
	const int64_t x = T0 + 49 * HOUR; /* s */

	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0);
	assert_int_equal(sl_usage_flush(f->u, NS(x)), 0); /* a pass: T0's minute goes */
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, x).rows, 0);
	/* a minute already past retention, written 20 s after that pass, is
	 * kept until the next pass, a minute of `now` later */
	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0 + 60);
	assert_int_equal(sl_usage_flush(f->u, NS(x + 20)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, x).allowed, 1);
	assert_int_equal(sl_usage_flush(f->u, NS(x + 59)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, x).allowed, 1);
	assert_int_equal(sl_usage_flush(f->u, NS(x + 60)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, x).rows, 0);
	/* its hour and day rows stay */
	assert_int_equal(hist(f, "acme", SL_USAGE_HOUR, T0, x).allowed, 2);
}

struct toprows {
	char acc[8][32];
	uint64_t val[8];
	unsigned n;
	uint64_t by_hourly[8];
};

static void top_row(void *arg, const struct sl_usage_row *r)
{
	struct toprows *t = arg;

	if (r->limit == NULL) {
		snprintf(t->acc[t->n], sizeof(t->acc[0]), "%s", r->account);
		t->val[t->n] = r->rejected * 1000000 + r->allowed;
		t->n++;
	} else if (strcmp(r->limit, "hourly") == 0) {
		t->by_hourly[t->n - 1] = r->rejected;
	}
}

static void top_orders_accounts_and_names_their_rejecting_limits(void **state)
{
	struct fix *f = *state;
	struct toprows t = {0};
	struct sums fleet = {0};

	for (int i = 0; i < 5; i++)
		count(f, 0, "b", "hourly", SL_USAGE_REJECTED, 1, T0 + 10);
	for (int i = 0; i < 2; i++)
		count(f, 1, "a", "ip", SL_USAGE_REJECTED, 1, T0 + 70);
	for (int i = 0; i < 9; i++)
		count(f, 0, "c", "hourly", SL_USAGE_ALLOWED, 1, T0 + 10);
	count(f, 0, "", "ip", SL_USAGE_REJECTED, 1, T0 + 10); /* no account */
	count(f, 0, "old", "hourly", SL_USAGE_REJECTED, 1, T0 - 2 * HOUR);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 100)), 0);

	assert_int_equal(sl_usage_top(f->u, SL_USAGE_BY_REJECTED, T0 + 100 - HOUR, 10, T0 + 100,
	                              top_row, &t),
	                 0);
	assert_int_equal(t.n, 3); /* "" never listed, "old" out of the window */
	assert_string_equal(t.acc[0], "b");
	assert_string_equal(t.acc[1], "a");
	assert_string_equal(t.acc[2], "c");
	assert_int_equal(t.by_hourly[0], 5);
	assert_int_equal(t.val[1], 2000000);

	memset(&t, 0, sizeof(t));
	assert_int_equal(
	        sl_usage_top(f->u, SL_USAGE_BY_ALLOWED, T0 + 100 - HOUR, 1, T0 + 100, top_row, &t),
	        0);
	assert_int_equal(t.n, 1);
	assert_string_equal(t.acc[0], "c");

	assert_int_equal(sl_usage_rejected_by(f->u, T0 + 100 - HOUR, T0 + 100, add_row, &fleet), 0);
	assert_int_equal(fleet.by_hourly, 5);
	assert_int_equal(fleet.by_ip, 3); /* includes the decision without an account */
	assert_int_equal(sl_usage_top(f->u, 7, T0, 1, T0, top_row, &t), SL_EINVAL);
}

static void eval_outcomes_map_to_counts(void **state)
{
	struct fix *f = *state;
	static struct sl_eval ev; /* large */
	struct sl_limit lim = {.name = "hourly"};
	struct sums s;

	memset(&ev, 0, sizeof(ev));
	ev.account_name = (struct sl_str){"acme", 4};
	ev.nchecks = 1;
	ev.limits[0] = &lim;
	ev.cost = 3;
	ev.decision =
	        (struct sl_decision){.status = 200, .denied = -1, .primary = 0, .now = NS(T0)};
	sl_usage_eval(sl_usage_shard(f->u, 0), &ev);
	ev.decision.delay = 5;
	sl_usage_eval(sl_usage_shard(f->u, 0), &ev);
	ev.decision = (struct sl_decision){.status = 429, .denied = 0, .primary = 0, .now = NS(T0)};
	sl_usage_eval(sl_usage_shard(f->u, 0), &ev);
	ev.decision =
	        (struct sl_decision){.status = 401, .denied = -1, .primary = -1, .now = NS(T0)};
	sl_usage_eval(sl_usage_shard(f->u, 0), &ev); /* not counted */
	ev.decision = (struct sl_decision){.status = 503, .denied = -1, .store_error = true};
	sl_usage_eval(sl_usage_shard(f->u, 0), &ev); /* not counted */
	sl_usage_eval(NULL, &ev);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 1)), 0);
	s = hist(f, "acme", SL_USAGE_MINUTE, T0, T0);
	assert_int_equal(s.allowed, 1);
	assert_int_equal(s.delayed, 1);
	assert_int_equal(s.rejected, 1);
	assert_int_equal(s.by_hourly, 1);
	assert_int_equal(s.cost, 6);
}

static void reopen_keeps_flushed_rows(void **state)
{
	struct fix *f = *state;
	char err[256];

	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0);
	assert_int_equal(sl_usage_flush(f->u, NS(T0 + 1)), 0);
	count(f, 0, "acme", "hourly", SL_USAGE_ALLOWED, 1, T0);
	sl_usage_close(f->u); /* no clock: counts since the last flush are not written */
	assert_int_equal(sl_usage_open(&f->u, &f->conf, 1, NULL, err, sizeof(err)), 0);
	assert_int_equal(hist(f, "acme", SL_USAGE_MINUTE, T0, T0).allowed, 1);
}

static void open_fails_with_a_message_for_a_bad_path(void **state)
{
	struct sl_usage_conf c = {.path = "/nonexistent-dir/x/usage.db", .max_series = 64};
	struct sl_usage *u = NULL;
	char err[256] = "";

	(void)state;
	assert_int_equal(sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)), SL_EIO);
	assert_null(u);
	assert_non_null(strstr(err, "/nonexistent-dir/x/usage.db"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(flush_rolls_minutes_up_to_hours_and_days, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(flushes_add_to_rows_already_written, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(full_table_drops_and_counts_instead_of_growing,
	                                        setup_small, teardown),
	        cmocka_unit_test_setup_teardown(names_too_long_are_dropped_not_truncated, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(retention_drops_each_bucket_after_its_time, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(retention_passes_run_at_most_once_a_minute, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                top_orders_accounts_and_names_their_rejecting_limits, setup, teardown),
	        cmocka_unit_test_setup_teardown(eval_outcomes_map_to_counts, setup, teardown),
	        cmocka_unit_test_setup_teardown(reopen_keeps_flushed_rows, setup, teardown),
	        cmocka_unit_test(open_fails_with_a_message_for_a_bad_path),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
