/* The store interface: one ops table, two backends (memory.c, redis.c).
 * Callers submit a batch of checks (one multi-limit decision, or releases)
 * and get a completion through the batch's `done` callback. The memory
 * store completes inline, before submit returns; the Redis store completes
 * later on the submitting thread's event loop. Callers never know which. */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <sluice/batch-t.h>

struct sl_store;

#define SL_STORE_NAME         64 /* bytes of a limit name kept for stats, NUL included */
#define SL_STORE_STATS_LIMITS 64 /* per-limit entries in one stats read */

/* What a full memory store did, for one limit name. */
struct sl_store_limit_stats {
	const char *name;       /* the store's copy; valid while the store lives */
	uint64_t evicted_usage; /* states evicted with a loss >= 1 unit */
	uint64_t evicted_idle;  /* live states evicted with a loss < 1 unit */
	uint64_t full_denied;   /* new keys rejected (on_full: deny_new) */
	uint64_t full_admitted; /* new keys admitted unstored (on_full: allow_new) */
};

struct sl_store_stats {
	uint64_t states;          /* live entries (memory) */
	uint64_t capacity;        /* slots (memory) */
	uint64_t evictions;       /* live states evicted (memory) */
	uint64_t evictions_usage; /* of those, states whose loss was >= 1 unit */
	uint64_t full_denied;     /* decisions' new keys rejected, store full */
	uint64_t full_admitted;   /* decisions' new keys admitted unstored */
	uint64_t errors;          /* backend errors (redis) */
	uint64_t bytes;
	/* memory: the limits with any count above ("other": unnamed checks) */
	struct sl_store_limit_stats limits[SL_STORE_STATS_LIMITS];
	size_t nlimits;
};

struct sl_store_ops {
	const char *name;
	/* Submit b. Returns 0 when done() has been or will be called exactly
	 * once; a negative code when refused up front (done() never runs).
	 * Thread: any thread that owns b->loop. */
	int (*submit)(struct sl_store *s, struct sl_batch *b);
	void (*stats)(struct sl_store *s, struct sl_store_stats *out);
	void (*destroy)(struct sl_store *s);
};

struct sl_store {
	const struct sl_store_ops *ops;
};

static inline int sl_store_submit(struct sl_store *s, struct sl_batch *b)
{
	return s->ops->submit(s, b);
}

/* Write s's state at `now` where s itself was told to at creation: a
 * memory store opened with a snapshot path saves to it
 * (sl_memory_store_save); any other store has nothing to save and returns
 * 0. So what is saved, and where, follows the running store, never a
 * reloaded config. On SL_EIO errno tells why (ENOSPC, EACCES, ENOTDIR...).
 * Thread: any; saves of one store are serialised. */
int sl_store_save(struct sl_store *s, int64_t now);

/* The memory store over a core state table of at most max_bytes (bytes).
 * seed keys the 128-bit hash of (limit_id, key). */
int sl_memory_store_create(struct sl_store **out, uint64_t max_bytes, uint64_t seed);

/* sl_memory_store_create with the store's own snapshot file `snapshot`
 * (copied; NULL: none): sl_store_save writes it, sl_memory_store_restore
 * reads it. A reloaded config never changes where a running store saves.
 * Returns 0, SL_ENOMEM or SL_EINVAL. */
int sl_memory_store_open(struct sl_store **out, uint64_t max_bytes, uint64_t seed,
                         const char *snapshot);

/* The snapshot path s was opened with; NULL for none or for a store that
 * is not a memory store. Borrowed until s is destroyed. */
const char *sl_memory_store_path(const struct sl_store *s);

/* Restore s from its own snapshot at `now` (sl_memory_store_load), keeping
 * a damaged file: one that fails with SL_EPROTO (truncated, bad magic or
 * checksum) or SL_EINVAL (another seed) is renamed to PATH.corrupt, or
 * PATH.corrupt.N (N = 1, 2, ...) when that exists, never over an existing
 * file, and its new name is written to aside; the load's code is returned
 * and s is left empty. If the file could not be moved, aside is "" (errno
 * says why): the caller must not let it be overwritten. Other returns as
 * load: 0, SL_ENOENT (no path, no file, or a parent that is no
 * directory), SL_EIO (unreadable or not a regular file; errno says why),
 * SL_ENOMEM. aside is always a string (cap >= 1). Call before any
 * decision is submitted. */
int sl_memory_store_restore(struct sl_store *s, int64_t now, char *aside, size_t cap);
/* What a memory store does with a new key when every eviction candidate
 * holds usage (mode: enum sl_on_full of policy-t.h, default evict): evict
 * the least of them; deny_new: reject the decision (SL_DENY at that check,
 * remaining 0, retry_after until a candidate stops mattering); allow_new:
 * decide it on a fresh state that is not kept. 0 or SL_EINVAL. Takes
 * effect from the next submit. Thread: any. */
int sl_memory_store_set_on_full(struct sl_store *s, unsigned mode);

/* Snapshot of a memory store (format in memory.c): save writes every live
 * state at `now` to path.tmp and renames it over `path`: 0, SL_EIO (errno
 * tells why), SL_ENOMEM, or SL_EINVAL for a path too long. A failed save
 * leaves the previous file as it was. load restores the states of `path` that
 * are still live at `now` into the store, all or nothing: 0, SL_ENOENT (no
 * file), SL_EPROTO (bad magic, version, size or checksum: damaged or not a
 * snapshot), SL_EINVAL (intact, but written with another seed), SL_EIO,
 * SL_ENOMEM. `s` must be a memory store. Thread: any; concurrent decisions
 * keep running: save holds one shard's lock at a time, only while it copies
 * a bounded chunk of its slots (sl_table_scan), never while it writes. */
int sl_memory_store_save(struct sl_store *s, const char *path, int64_t now);
/* Load restores the file's unexpired states. A store that is still empty
 * takes the file's hash seed over (so a restart with a fresh random seed
 * keeps its snapshot); one that already holds states refuses a file of
 * another seed with SL_EINVAL. Call it before any decision is submitted. */
int sl_memory_store_load(struct sl_store *s, const char *path, int64_t now);

/* The Redis store (redis.c, docs/store-redis.md) on conf->url
 * ("redis://host:port", a comma-separated seed list for a cluster),
 * conf->cluster, conf->timeout (ns; every batch completes within it),
 * conf->pool (connections per worker and node) and conf->local_cache.
 * conf->on_error_deny is the caller's: a failed batch completes with
 * status SL_EIO or SL_ETIMEDOUT and the caller applies on_error. Batches
 * complete later, on b->loop, which must be a uv_loop_t run by the
 * submitting thread; each loop gets its own connections on first use.
 * Returns 0, SL_ECONFIG for a bad url, or SL_ENOMEM. */
struct sl_store_conf;
int sl_redis_store_create(struct sl_store **out, const struct sl_store_conf *conf);

/* Release loop's connections and timer: batches pending on it complete with
 * SL_EIO. Thread: the one running loop, outside any done() callback; the
 * loop must run again (e.g. uv_run until idle) for the close callbacks that
 * free the memory. destroy() detaches loops still attached, which is safe
 * only once no thread runs them. */
void sl_redis_store_detach(struct sl_store *s, void *loop);

#endif
