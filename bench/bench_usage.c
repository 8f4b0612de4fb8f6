/* Usage history benchmark: the bounds of docs/usage.md measured. Prints
 * "NAME VALUE" lines:
 *
 *   - count_ns: one sl_usage_count into a worker table (a hit on an
 *     existing series), the request path's whole cost, median of 5 runs.
 *   - table_bytes_per_worker: the memory of one worker's two tables at
 *     the default usage.max_series, whatever the number of accounts.
 *   - ACCOUNTS accounts active every minute for MINUTES minutes, counted
 *     through the real tables and flushed once a minute: flush_ms_per_minute
 *     (median; the flusher's work for ACCOUNTS cells), db_bytes,
 *     bytes_per_minute_row (file size / minute rows, the hour and day rows
 *     included in the size), and extrapolated_48h_gib for 100,000 accounts x
 *     2880 minutes at that row cost.
 *   - HIST_ACCOUNTS accounts with an hour row for each of 90 days (2160
 *     each): history_90d_ms, the median of 21 sl_usage_history calls for
 *     one account's 90 days of hours (2160 rows).
 * Environment: ACCOUNTS (100000), MINUTES (10), HIST_ACCOUNTS (200),
 * TMPDIR; REDIS_URL=redis://127.0.0.1:PORT runs the 100k part against the
 * Redis backend instead (an empty server: read its INFO memory after). The database is removed at the end unless KEEP=1 (its path is
 * printed, for an HTTP timing against a daemon). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <sluice/algo-t.h>
#include "usage/usage.h"

#define T0 1796169600LL /* s, a day boundary */

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static long env(const char *name, long dflt)
{
	const char *s = getenv(name);
	return s && *s ? strtol(s, NULL, 10) : dflt;
}

static off_t fsize(const char *p)
{
	struct stat st;
	char wal[700];
	off_t n = stat(p, &st) == 0 ? st.st_size : 0;

	snprintf(wal, sizeof(wal), "%s-wal", p);
	return n + (stat(wal, &st) == 0 ? st.st_size : 0);
}

static void rows(void *arg, const struct sl_usage_row *r)
{
	(void)r;
	(*(long *)arg)++;
}

static struct sl_usage_conf conf(const char *path, uint64_t series)
{
	return (struct sl_usage_conf){.enabled = true,
	                              .path = (char *)path,
	                              .max_series = series,
	                              .keep_minutes = 48LL * 3600 * SL_NS_PER_SEC,
	                              .keep_hours = 90LL * 86400 * SL_NS_PER_SEC,
	                              .keep_days = 730LL * 86400 * SL_NS_PER_SEC};
}

static void bench_count(const char *dir)
{
	char path[700], err[256];
	struct sl_usage_conf c;
	struct sl_usage *u;
	double runs[5];
	const long n = 5000000;

	snprintf(path, sizeof(path), "%s/count.db", dir);
	c = conf(path, 16384);
	if (sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		exit(1);
	}
	for (int r = 0; r < 5; r++) {
		double t = now_ms();
		for (long i = 0; i < n; i++)
			sl_usage_count(sl_usage_shard(u, 0), "bench", 5, "account",
			               SL_USAGE_ALLOWED, 1, T0 * SL_NS_PER_SEC);
		runs[r] = (now_ms() - t) * 1e6 / (double)n;
	}
	printf("count_ns %.1f\n", median(runs, 5));
	printf("table_bytes_per_worker %zu\n",
	       2 * (16384 * sizeof(struct sl_usage_cell) + 14336 * sizeof(uint32_t)));
	sl_usage_close(u);
	unlink(path);
}

int main(void)
{
	long accounts = env("ACCOUNTS", 100000), minutes = env("MINUTES", 10);
	long hist_accounts = env("HIST_ACCOUNTS", 200);
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char dir[400], path[600], err[256], name[32];
	struct sl_usage_conf c;
	struct sl_usage *u;
	double *flush = calloc((size_t)minutes, sizeof(double)), q[21];

	snprintf(dir, sizeof(dir), "%s/sluice-bench-usage-XXXXXX", tmp);
	if (mkdtemp(dir) == NULL)
		return 1;
	bench_count(dir);

	/* 100k accounts every minute, through one worker table big enough to
	 * hold them (max_series rounded up: 262144 slots, 229376 usable) */
	snprintf(path, sizeof(path), "%s/usage.db", dir);
	c = conf(path, 200000);
	if (getenv("REDIS_URL")) {
		c.redis = true;
		c.redis_url = getenv("REDIS_URL");
	}
	if (sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "%s\n", err);
		return 1;
	}
	for (long m = 0; m < minutes; m++) {
		int64_t t = (T0 + m * 60) * SL_NS_PER_SEC;
		for (long a = 0; a < accounts; a++) {
			int len = snprintf(name, sizeof(name), "account-%06ld", a);
			sl_usage_count(sl_usage_shard(u, 0), name, (size_t)len, "per-minute",
			               SL_USAGE_ALLOWED, 1, t);
		}
		double t0 = now_ms();
		sl_usage_flush(u, t + 59 * SL_NS_PER_SEC);
		flush[m] = now_ms() - t0;
	}
	struct sl_usage_stats st;
	sl_usage_stats(u, &st);
	sl_usage_close(u);
	off_t bytes = fsize(path);
	double per_row = (double)bytes / (double)(accounts * minutes);
	printf("flush_ms_per_minute %.0f\n", median(flush, (int)minutes));
	printf("dropped %llu\n", (unsigned long long)st.dropped);
	printf("db_bytes %lld\n", (long long)bytes);
	printf("bytes_per_minute_row %.1f\n", per_row);
	if (!c.redis)
		printf("extrapolated_48h_gib %.1f\n", per_row * 100000.0 * 2880 / (1 << 30));
	unlink(path);
	if (c.redis)
		return 0;

	/* 90 days of hours for HIST_ACCOUNTS accounts */
	snprintf(path, sizeof(path), "%s/hist.db", dir);
	c = conf(path, 4096);
	if (sl_usage_open(&u, &c, 1, NULL, err, sizeof(err)) < 0)
		return 1;
	const int64_t end = T0 + 90LL * 86400;
	for (int64_t h = 0; h < 90 * 24; h++) {
		for (long a = 0; a < hist_accounts; a++) {
			int len = snprintf(name, sizeof(name), "account-%06ld", a);
			sl_usage_count(sl_usage_shard(u, 0), name, (size_t)len, "hourly",
			               SL_USAGE_ALLOWED, 1, (T0 + h * 3600) * SL_NS_PER_SEC);
		}
		sl_usage_flush(u, (T0 + h * 3600) * SL_NS_PER_SEC);
	}
	for (int r = 0; r < 21; r++) {
		long n = 0;
		double t0 = now_ms();
		sl_usage_history(u, "account-000007", 14, SL_USAGE_HOUR, end - 90LL * 86400, end,
		                 rows, &n);
		q[r] = now_ms() - t0;
		if (n != 90 * 24) {
			fprintf(stderr, "history: %ld rows\n", n);
			return 1;
		}
	}
	printf("history_90d_rows %d\n", 90 * 24);
	printf("history_90d_ms %.2f\n", median(q, 21));
	sl_usage_close(u);
	if (getenv("KEEP") && strcmp(getenv("KEEP"), "1") == 0) {
		printf("kept %s\n", path);
	} else {
		unlink(path);
		rmdir(dir);
	}
	free(flush);
	return 0;
}
