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

struct sl_store_stats {
	uint64_t states;    /* live entries (memory) */
	uint64_t capacity;  /* slots (memory) */
	uint64_t evictions; /* memory */
	uint64_t errors;    /* backend errors (redis) */
	uint64_t bytes;
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

/* The memory store over a core state table of at most max_bytes (bytes).
 * seed keys the 128-bit hash of (limit_id, key). */
int sl_memory_store_create(struct sl_store **out, uint64_t max_bytes, uint64_t seed);

#endif
