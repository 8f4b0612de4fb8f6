/* Private to src/usage: the counting table's helpers (count.c) that the
 * flusher and the database code (usage.c) use. */
#ifndef SLUICE_USAGE_USAGE_INT_H
#define SLUICE_USAGE_USAGE_INT_H

#include <stdbool.h>
#include <sluice/error.h>
#include "usage/usage.h"

#define USAGE_PREFIX "sluice:usage:"

struct sl_usage {
	struct sl_usage_conf conf; /* path owned */
	int64_t (*clock)(void);
	unsigned nshards;
	struct sl_usage_shard *shards;

	pthread_mutex_t db_mu; /* the connection, the statements, the stats */
	struct sqlite3 *db;    /* NULL with the Redis backend */
	struct sqlite3_stmt *upsert[SL_USAGE_NBUCKETS];
	struct redisContext *rds; /* usage.store: redis; (re)connected on use */
	char rhost[256];
	int rport;
	uint64_t tmp_seq;   /* names of temporary keys */
	int64_t last_prune; /* unix s */
	struct sl_usage_stats st;

	pthread_mutex_t run_mu; /* flusher thread control */
	pthread_cond_t run_cv;
	pthread_t thread;
	bool running, stop;
};

/* Seconds of each bucket, and the finest bucket whose retention reaches
 * back to since (usage.c). */
extern const int64_t usage_bucket_s[SL_USAGE_NBUCKETS];
unsigned usage_bucket_for(const struct sl_usage *u, int64_t since, int64_t now_s);

/* The Redis backend (redis.c), called under db_mu. open parses
 * conf.redis_url and connects (a failure is an error: like a database
 * that cannot open); write adds n swapped buffers; the queries answer as
 * their sl_usage_* counterparts. Retention is each key's EXPIREAT. */
int usage_redis_open(struct sl_usage *u, const char *url, char *err, size_t cap);
void usage_redis_close(struct sl_usage *u);
int usage_redis_write(struct sl_usage *u, struct sl_usage_buf *const *bufs, unsigned n);
int usage_redis_history(struct sl_usage *u, const char *account, unsigned bucket, int64_t from,
                        int64_t to, sl_usage_row_fn fn, void *arg);
int usage_redis_top(struct sl_usage *u, unsigned by, unsigned bucket, int64_t since, int64_t now_s,
                    unsigned n, sl_usage_row_fn fn, void *arg);
int usage_redis_rejected_by(struct sl_usage *u, unsigned bucket, int64_t since, int64_t now_s,
                            sl_usage_row_fn fn, void *arg);

/* Allocate both buffers of at least want slots. Returns 0 or SL_ENOMEM. */
int usage_shard_init(struct sl_usage_shard *s, uint32_t want);
void usage_shard_free(struct sl_usage_shard *s);
/* Make the other buffer active; returns the one the worker filled until
 * now (its used count in *fill), which the caller owns until it swaps
 * again. Thread: the flusher (flushes are serialised). */
struct sl_usage_buf *usage_shard_swap(struct sl_usage_shard *s, uint32_t *fill);
/* Empty b (only the slots it used). */
void usage_buf_clear(struct sl_usage_buf *b);

#endif
