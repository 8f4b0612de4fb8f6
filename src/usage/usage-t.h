/* Types of the usage history (usage.h) that other modules embed or read:
 * the per-worker counting table and the rows queries hand back. Counting
 * happens in a fixed-capacity open-addressed table per worker, two of
 * them per worker: the worker adds into the active one, the flusher swaps
 * them and writes the idle one out, so the request path never allocates
 * and never takes a lock another worker takes. */
#ifndef SLUICE_USAGE_USAGE_T_H
#define SLUICE_USAGE_USAGE_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#define SL_USAGE_ACCOUNT 96 /* bytes of an account name kept, incl. NUL */
#define SL_USAGE_LIMIT   64 /* bytes of a limit name kept, incl. NUL */
#define SL_USAGE_PROBES  32 /* slots one add probes before it gives up */

enum sl_usage_outcome {
	SL_USAGE_ALLOWED = 0,
	SL_USAGE_DELAYED,
	SL_USAGE_REJECTED,
};

enum sl_usage_bucket { SL_USAGE_MINUTE = 0, SL_USAGE_HOUR, SL_USAGE_DAY, SL_USAGE_NBUCKETS };

enum sl_usage_by {
	SL_USAGE_BY_REJECTED = 0,
	SL_USAGE_BY_ALLOWED,
	SL_USAGE_BY_COST,
};

/* One (account, deciding limit, minute) series of one worker. */
struct sl_usage_cell {
	uint64_t hash;                       /* of (account, limit, minute); 0: empty slot */
	int64_t minute;                      /* unix s, a multiple of 60 */
	uint64_t allowed, delayed, rejected; /* decisions */
	uint64_t cost;                       /* units admitted (allowed + delayed decisions) */
	char account[SL_USAGE_ACCOUNT];
	char limit[SL_USAGE_LIMIT]; /* "" when no limit decided */
};

struct sl_usage_buf {
	struct sl_usage_cell *cells; /* [cap] */
	uint32_t *order;             /* [cap]: used slots in fill order */
	uint32_t used;
};

/* A worker's counting table. mu is taken by its worker for each add and by
 * the flusher for the swap only (two stores), never by another worker. */
struct sl_usage_shard {
	pthread_mutex_t mu;
	unsigned active; /* index into buf */
	struct sl_usage_buf buf[2];
	uint32_t cap;             /* slots per buffer, a power of two */
	uint32_t limit;           /* used slots past which a new series is dropped */
	_Atomic uint32_t fill;    /* used slots of the active buffer (flusher reads) */
	_Atomic uint64_t dropped; /* decisions not counted: table full or names too long */
	_Atomic uint64_t counted; /* decisions counted */
} __attribute__((aligned(64)));

/* One stored row as a query hands it back (views valid during the call). */
struct sl_usage_row {
	const char *account;
	const char *limit; /* NULL: the row is an account total (top) */
	int64_t start;     /* unix s */
	uint64_t allowed, delayed, rejected, cost;
};

/* What /metrics reports. */
struct sl_usage_stats {
	uint64_t counted;      /* decisions counted into the tables */
	uint64_t dropped;      /* decisions the tables had no room for */
	uint64_t flushes;      /* flushes written */
	uint64_t flush_errors; /* flushes that failed (their counts are lost) */
	uint64_t rows;         /* cells written */
	int64_t last_flush;    /* ns, clock of the last successful flush; 0: none */
	uint32_t fill_max;     /* highest fill of any worker table at its last swap */
	uint32_t cap;          /* slots per worker buffer */
};

#endif
