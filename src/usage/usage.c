/* The usage history's storage (usage.h): one SQLite database in WAL mode,
 * three tables of the same shape (minute, hour, day buckets), each row one
 * (account, deciding limit, bucket start). The roll-up is done at write
 * time: a flush adds each minute cell to its minute, hour and day rows in
 * one transaction, so an hour row is always the sum of its minutes and a
 * query reads exactly one table. Retention is a range delete per table on
 * the start index, at most once a minute. One connection serves the
 * flusher and the admin queries, under one mutex: the admin path is not
 * the hot path, and a WAL commit never loses a flushed row to kill -9. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sqlite3.h>
#include <sluice/algo-t.h>
#include "usage/usage-int.h"

#define PRUNE_EVERY 60   /* s of `now` between retention passes */
#define TICK_MS     100  /* ms: the flusher looks at the fill this often */
#define BUSY_MS     5000 /* ms a statement waits for a lock held elsewhere */

static const char *const table[SL_USAGE_NBUCKETS] = {"usage_minute", "usage_hour", "usage_day"};
const int64_t usage_bucket_s[SL_USAGE_NBUCKETS] = {60, 3600, 86400};
#define bucket_s usage_bucket_s

int64_t sl_usage_bucket_seconds(unsigned bucket)
{
	return bucket < SL_USAGE_NBUCKETS ? bucket_s[bucket] : 60;
}

static int exec(struct sl_usage *u, const char *sql, char *err, size_t cap)
{
	char *msg = NULL;

	if (sqlite3_exec(u->db, sql, NULL, NULL, &msg) == SQLITE_OK)
		return 0;
	if (cap > 0)
		snprintf(err, cap, "usage %s: %s", u->conf.path, msg ? msg : "error");
	sqlite3_free(msg);
	return SL_EIO;
}

static int schema(struct sl_usage *u, char *err, size_t cap)
{
	char sql[1024];

	if (exec(u, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;", err, cap) < 0)
		return SL_EIO;
	for (int b = 0; b < SL_USAGE_NBUCKETS; b++) {
		snprintf(sql, sizeof(sql),
		         "CREATE TABLE IF NOT EXISTS %s(account TEXT NOT NULL, lim TEXT NOT NULL,"
		         " start INTEGER NOT NULL, allowed INTEGER NOT NULL, delayed INTEGER NOT "
		         "NULL, rejected INTEGER NOT NULL, cost INTEGER NOT NULL,"
		         " PRIMARY KEY(account, start, lim)) WITHOUT ROWID;"
		         "CREATE INDEX IF NOT EXISTS %s_start ON %s(start);",
		         table[b], table[b], table[b]);
		if (exec(u, sql, err, cap) < 0)
			return SL_EIO;
		snprintf(sql, sizeof(sql),
		         "INSERT INTO %s(account, lim, start, allowed, delayed, rejected, cost)"
		         " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(account, start, lim) DO "
		         "UPDATE SET allowed = allowed + excluded.allowed, delayed = delayed + "
		         "excluded.delayed, rejected = rejected + excluded.rejected, cost = cost + "
		         "excluded.cost",
		         table[b]);
		if (sqlite3_prepare_v2(u->db, sql, -1, &u->upsert[b], NULL) != SQLITE_OK) {
			snprintf(err, cap, "usage %s: %s", u->conf.path, sqlite3_errmsg(u->db));
			return SL_EIO;
		}
	}
	return 0;
}

int sl_usage_open(struct sl_usage **out, const struct sl_usage_conf *conf, unsigned nworkers,
                  int64_t (*clock)(void), char *err, size_t cap)
{
	struct sl_usage *u = calloc(1, sizeof(*u));
	unsigned made = 0;
	int ret = SL_EIO;

	*out = NULL;
	if (u == NULL || nworkers == 0 || (conf->path == NULL && !conf->redis))
		goto fail_nomem;
	u->conf = *conf;
	u->conf.path = strdup(conf->path ? conf->path : "");
	u->clock = clock;
	u->shards = aligned_alloc(64, sizeof(*u->shards) * nworkers);
	if (u->conf.path == NULL || u->shards == NULL)
		goto fail_free;
	for (; made < nworkers; made++)
		if (usage_shard_init(&u->shards[made], (uint32_t)conf->max_series) < 0)
			goto fail_shards;
	u->nshards = nworkers;
	u->st.cap = u->shards[0].cap;
	pthread_mutex_init(&u->db_mu, NULL);
	pthread_mutex_init(&u->run_mu, NULL);
	pthread_cond_init(&u->run_cv, NULL);
	if (u->conf.redis) {
		u->conf.redis_url = NULL; /* borrowed from conf only during open */
		if ((ret = usage_redis_open(u, conf->redis_url, err, cap)) < 0)
			goto fail_db;
		*out = u;
		return 0;
	}
	if (sqlite3_open_v2(u->conf.path, &u->db,
	                    SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
	                    NULL) != SQLITE_OK) {
		snprintf(err, cap, "usage %s: %s", u->conf.path,
		         u->db ? sqlite3_errmsg(u->db) : "out of memory");
		goto fail_db;
	}
	sqlite3_busy_timeout(u->db, BUSY_MS);
	if (schema(u, err, cap) < 0)
		goto fail_db;
	*out = u;
	return 0;
fail_db:
	for (int b = 0; b < SL_USAGE_NBUCKETS; b++)
		sqlite3_finalize(u->upsert[b]);
	sqlite3_close(u->db);
	usage_redis_close(u);
	pthread_cond_destroy(&u->run_cv);
	pthread_mutex_destroy(&u->run_mu);
	pthread_mutex_destroy(&u->db_mu);
	free(u->conf.path);
	for (unsigned i = 0; i < made; i++)
		usage_shard_free(&u->shards[i]);
	free(u->shards);
	free(u);
	return ret;
fail_shards:
	while (made-- > 0)
		usage_shard_free(&u->shards[made]);
fail_free:
	free(u->shards);
	free(u->conf.path);
	free(u);
fail_nomem:
	snprintf(err, cap, "usage: out of memory");
	return SL_ENOMEM;
}

struct sl_usage_shard *sl_usage_shard(struct sl_usage *u, unsigned i)
{
	return u != NULL && i < u->nshards ? &u->shards[i] : NULL;
}

static bool put_cell(struct sl_usage *u, const struct sl_usage_cell *c)
{
	for (int b = 0; b < SL_USAGE_NBUCKETS; b++) {
		sqlite3_stmt *s = u->upsert[b];
		int64_t start = c->minute - c->minute % bucket_s[b];

		sqlite3_bind_text(s, 1, c->account, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 2, c->limit, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 3, start);
		sqlite3_bind_int64(s, 4, (sqlite3_int64)c->allowed);
		sqlite3_bind_int64(s, 5, (sqlite3_int64)c->delayed);
		sqlite3_bind_int64(s, 6, (sqlite3_int64)c->rejected);
		sqlite3_bind_int64(s, 7, (sqlite3_int64)c->cost);
		int rc = sqlite3_step(s);
		sqlite3_reset(s);
		if (rc != SQLITE_DONE)
			return false;
	}
	return true;
}

static void prune(struct sl_usage *u, int64_t now_s)
{
	const int64_t keep[SL_USAGE_NBUCKETS] = {u->conf.keep_minutes, u->conf.keep_hours,
	                                         u->conf.keep_days};
	char sql[160];

	for (int b = 0; b < SL_USAGE_NBUCKETS; b++) {
		/* a bucket is kept while any of it is inside the retention */
		int64_t cut = now_s - keep[b] / SL_NS_PER_SEC - bucket_s[b];

		snprintf(sql, sizeof(sql), "DELETE FROM %s WHERE start <= %lld", table[b],
		         (long long)cut);
		sqlite3_exec(u->db, sql, NULL, NULL, NULL);
	}
	u->last_prune = now_s;
}

static int flush_redis(struct sl_usage *u, int64_t now_ns)
{
	struct sl_usage_buf *bufs[256] = {NULL}; /* the server runs at most 256 workers */
	uint32_t fill_max = 0, cells = 0;
	unsigned n = u->nshards < 256 ? u->nshards : 256;
	int rc;

	for (unsigned i = 0; i < n; i++) {
		uint32_t fill;

		bufs[i] = usage_shard_swap(&u->shards[i], &fill);
		fill_max = fill > fill_max ? fill : fill_max;
		cells += fill;
	}
	rc = usage_redis_write(u, bufs, n);
	for (unsigned i = 0; i < n; i++)
		usage_buf_clear(bufs[i]);
	u->st.fill_max = fill_max;
	if (rc < 0) {
		u->st.flush_errors++;
	} else {
		u->st.flushes++;
		u->st.rows += cells;
		u->st.last_flush = now_ns;
	}
	return rc;
}

int sl_usage_flush(struct sl_usage *u, int64_t now_ns)
{
	int64_t now_s = now_ns / SL_NS_PER_SEC;
	uint32_t fill_max = 0;
	bool ok;

	pthread_mutex_lock(&u->db_mu);
	if (u->conf.redis) {
		int rc = flush_redis(u, now_ns);
		pthread_mutex_unlock(&u->db_mu);
		return rc;
	}
	ok = sqlite3_exec(u->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
	for (unsigned i = 0; i < u->nshards; i++) {
		uint32_t fill;
		struct sl_usage_buf *b = usage_shard_swap(&u->shards[i], &fill);

		if (fill > fill_max)
			fill_max = fill;
		for (uint32_t k = 0; ok && k < b->used; k++)
			ok = put_cell(u, &b->cells[b->order[k]]);
		u->st.rows += ok ? b->used : 0;
		usage_buf_clear(b);
	}
	u->st.fill_max = fill_max;
	if (ok)
		ok = sqlite3_exec(u->db, "COMMIT", NULL, NULL, NULL) == SQLITE_OK;
	if (!ok) {
		sqlite3_exec(u->db, "ROLLBACK", NULL, NULL, NULL);
		u->st.flush_errors++;
	} else {
		u->st.flushes++;
		u->st.last_flush = now_ns;
	}
	if (now_s - u->last_prune >= PRUNE_EVERY || now_s < u->last_prune)
		prune(u, now_s);
	pthread_mutex_unlock(&u->db_mu);
	return ok ? 0 : SL_EIO;
}

static bool half_full(struct sl_usage *u)
{
	for (unsigned i = 0; i < u->nshards; i++)
		if (atomic_load_explicit(&u->shards[i].fill, memory_order_relaxed) >=
		    u->shards[i].cap / 2)
			return true;
	return false;
}

static void *flusher(void *arg)
{
	struct sl_usage *u = arg;
	int64_t last = u->clock();

	pthread_mutex_lock(&u->run_mu);
	while (!u->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += TICK_MS * 1000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&u->run_cv, &u->run_mu, &ts);
		if (u->stop)
			break;
		int64_t now = u->clock();
		if (now - last < u->conf.flush_interval && !half_full(u))
			continue;
		pthread_mutex_unlock(&u->run_mu);
		sl_usage_flush(u, now);
		last = now;
		pthread_mutex_lock(&u->run_mu);
	}
	pthread_mutex_unlock(&u->run_mu);
	return NULL;
}

int sl_usage_start(struct sl_usage *u)
{
	if (pthread_create(&u->thread, NULL, flusher, u) != 0)
		return SL_ENOMEM;
	u->running = true;
	return 0;
}

void sl_usage_close(struct sl_usage *u)
{
	if (u == NULL)
		return;
	if (u->running) {
		pthread_mutex_lock(&u->run_mu);
		u->stop = true;
		pthread_cond_signal(&u->run_cv);
		pthread_mutex_unlock(&u->run_mu);
		pthread_join(u->thread, NULL);
	}
	if (u->clock != NULL)
		sl_usage_flush(u, u->clock());
	for (int b = 0; b < SL_USAGE_NBUCKETS; b++)
		sqlite3_finalize(u->upsert[b]);
	sqlite3_close(u->db);
	usage_redis_close(u);
	pthread_cond_destroy(&u->run_cv);
	pthread_mutex_destroy(&u->run_mu);
	pthread_mutex_destroy(&u->db_mu);
	for (unsigned i = 0; i < u->nshards; i++)
		usage_shard_free(&u->shards[i]);
	free(u->shards);
	free(u->conf.path);
	free(u);
}

void sl_usage_stats(struct sl_usage *u, struct sl_usage_stats *st)
{
	pthread_mutex_lock(&u->db_mu);
	*st = u->st;
	pthread_mutex_unlock(&u->db_mu);
	st->counted = st->dropped = 0;
	for (unsigned i = 0; i < u->nshards; i++) {
		st->counted += atomic_load_explicit(&u->shards[i].counted, memory_order_relaxed);
		st->dropped += atomic_load_explicit(&u->shards[i].dropped, memory_order_relaxed);
	}
}

/* ---- queries ---- */

/* A history row: start, lim, allowed, delayed, rejected, cost. */
static void emit(sqlite3_stmt *s, const char *account, sl_usage_row_fn fn, void *arg)
{
	struct sl_usage_row r = {.account = account};

	r.start = sqlite3_column_int64(s, 0);
	r.limit = (const char *)sqlite3_column_text(s, 1);
	r.allowed = (uint64_t)sqlite3_column_int64(s, 2);
	r.delayed = (uint64_t)sqlite3_column_int64(s, 3);
	r.rejected = (uint64_t)sqlite3_column_int64(s, 4);
	r.cost = (uint64_t)sqlite3_column_int64(s, 5);
	fn(arg, &r);
}

int sl_usage_history(struct sl_usage *u, const char *account, size_t alen, unsigned bucket,
                     int64_t from, int64_t to, sl_usage_row_fn fn, void *arg)
{
	char sql[256], name[SL_USAGE_ACCOUNT];
	sqlite3_stmt *s = NULL;
	int rc = 0, step;

	if (bucket >= SL_USAGE_NBUCKETS)
		return SL_EINVAL;
	if (alen >= sizeof(name))
		return 0; /* never counted: no rows */
	memcpy(name, account, alen);
	name[alen] = '\0';
	if (u->conf.redis) {
		pthread_mutex_lock(&u->db_mu);
		rc = usage_redis_history(u, name, bucket, from, to, fn, arg);
		pthread_mutex_unlock(&u->db_mu);
		return rc;
	}
	snprintf(sql, sizeof(sql),
	         "SELECT start, lim, allowed, delayed, rejected, cost FROM %s WHERE account = ?1"
	         " AND start >= ?2 AND start <= ?3 ORDER BY start, lim",
	         table[bucket]);
	pthread_mutex_lock(&u->db_mu);
	if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK)
		rc = SL_EIO;
	if (rc == 0) {
		sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_int64(s, 2, from);
		sqlite3_bind_int64(s, 3, to);
		while ((step = sqlite3_step(s)) == SQLITE_ROW)
			emit(s, name, fn, arg);
		if (step != SQLITE_DONE)
			rc = SL_EIO;
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(&u->db_mu);
	return rc;
}

/* The finest bucket whose retention reaches back to since. */
unsigned usage_bucket_for(const struct sl_usage *u, int64_t since, int64_t now_s)
{
	int64_t back = now_s - since; /* s */

	if (back <= u->conf.keep_minutes / SL_NS_PER_SEC)
		return SL_USAGE_MINUTE;
	if (back <= u->conf.keep_hours / SL_NS_PER_SEC)
		return SL_USAGE_HOUR;
	return SL_USAGE_DAY;
}

int sl_usage_top(struct sl_usage *u, unsigned by, int64_t since, unsigned n, int64_t now_s,
                 sl_usage_row_fn fn, void *arg)
{
	static const char *const col[] = {"r", "a", "c"};
	unsigned b = usage_bucket_for(u, since, now_s);
	char sql[1024];
	sqlite3_stmt *s = NULL;
	int rc = 0, step;

	if (by > SL_USAGE_BY_COST)
		return SL_EINVAL;
	since -= since % bucket_s[b]; /* the bucket holding since counts whole */
	if (u->conf.redis) {
		pthread_mutex_lock(&u->db_mu);
		rc = usage_redis_top(u, by, b, since, now_s, n, fn, arg);
		pthread_mutex_unlock(&u->db_mu);
		return rc;
	}
	snprintf(sql, sizeof(sql),
	         "WITH top AS (SELECT account, SUM(allowed) a, SUM(delayed) d, SUM(rejected) r,"
	         " SUM(cost) c FROM %s WHERE start >= ?1 AND account <> '' GROUP BY account"
	         " ORDER BY %s DESC, account LIMIT ?2)"
	         " SELECT top.account, top.a, top.d, top.r, top.c, x.lim, SUM(x.rejected)"
	         " FROM top LEFT JOIN %s x ON x.account = top.account AND x.start >= ?1"
	         " AND x.rejected > 0 GROUP BY top.account, x.lim ORDER BY top.%s DESC,"
	         " top.account, x.lim",
	         table[b], col[by], table[b], col[by]);
	pthread_mutex_lock(&u->db_mu);
	if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK)
		rc = SL_EIO;
	if (rc == 0) {
		char last[SL_USAGE_ACCOUNT] = "";
		bool any = false;

		sqlite3_bind_int64(s, 1, since);
		sqlite3_bind_int64(s, 2, n);
		while ((step = sqlite3_step(s)) == SQLITE_ROW) {
			struct sl_usage_row r = {0};
			const char *acc = (const char *)sqlite3_column_text(s, 0);

			r.account = acc;
			if (!any || strcmp(acc, last) != 0) {
				r.allowed = (uint64_t)sqlite3_column_int64(s, 1);
				r.delayed = (uint64_t)sqlite3_column_int64(s, 2);
				r.rejected = (uint64_t)sqlite3_column_int64(s, 3);
				r.cost = (uint64_t)sqlite3_column_int64(s, 4);
				fn(arg, &r);
				snprintf(last, sizeof(last), "%s", acc);
				any = true;
			}
			if (sqlite3_column_type(s, 5) != SQLITE_NULL) {
				struct sl_usage_row l = {.account = r.account};

				l.limit = (const char *)sqlite3_column_text(s, 5);
				l.rejected = (uint64_t)sqlite3_column_int64(s, 6);
				fn(arg, &l);
			}
		}
		if (step != SQLITE_DONE)
			rc = SL_EIO;
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(&u->db_mu);
	return rc;
}

int sl_usage_rejected_by(struct sl_usage *u, int64_t since, int64_t now_s, sl_usage_row_fn fn,
                         void *arg)
{
	unsigned b = usage_bucket_for(u, since, now_s);
	char sql[256];
	sqlite3_stmt *s = NULL;
	int rc = 0, step;

	since -= since % bucket_s[b];
	if (u->conf.redis) {
		pthread_mutex_lock(&u->db_mu);
		rc = usage_redis_rejected_by(u, b, since, now_s, fn, arg);
		pthread_mutex_unlock(&u->db_mu);
		return rc;
	}
	snprintf(sql, sizeof(sql),
	         "SELECT lim, SUM(rejected) n FROM %s WHERE start >= ?1 AND rejected > 0"
	         " GROUP BY lim ORDER BY n DESC, lim",
	         table[b]);
	pthread_mutex_lock(&u->db_mu);
	if (sqlite3_prepare_v2(u->db, sql, -1, &s, NULL) != SQLITE_OK)
		rc = SL_EIO;
	if (rc == 0) {
		sqlite3_bind_int64(s, 1, since);
		while ((step = sqlite3_step(s)) == SQLITE_ROW) {
			struct sl_usage_row r = {.account = ""};

			r.limit = (const char *)sqlite3_column_text(s, 0);
			r.rejected = (uint64_t)sqlite3_column_int64(s, 1);
			fn(arg, &r);
		}
		if (step != SQLITE_DONE)
			rc = SL_EIO;
	}
	sqlite3_finalize(s);
	pthread_mutex_unlock(&u->db_mu);
	return rc;
}
