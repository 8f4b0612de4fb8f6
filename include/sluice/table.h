/* The state table: a sharded, open-addressed hash table from 128-bit keys
 * to 16-byte limit states (struct sl_state). Entries are 32 bytes; the
 * table's memory is fixed at creation from a byte budget (like an nginx
 * limit_req zone), reserved lazily, and never grows past it. Expired states
 * (expires <= now) read as fresh and are reused in place; when a shard is
 * full the insert evicts, among a few slots of its probe window, an expired
 * state or else the one expiring soonest, and counts the eviction.
 *
 * Keys are 128-bit hashes of (limit id, key bytes) computed by the caller
 * with a seeded hash; the full 128 bits are stored and compared. */
#ifndef SLUICE_TABLE_H
#define SLUICE_TABLE_H

#include <stddef.h>
#include <stdint.h>
#include <sluice/algo-t.h>

struct sl_table; /* opaque */

struct sl_key128 {
	uint64_t lo, hi;
};

struct sl_table_stats {
	uint64_t capacity;  /* slots */
	uint64_t used;      /* occupied slots, expired ones included */
	uint64_t evictions; /* live states evicted because a shard was full */
	uint64_t bytes;     /* bytes reserved for slots */
};

/* Create a table whose slots fit in max_bytes (>= 64 KiB) split over
 * 2^shards_log2 shards. Returns 0 or SL_ENOMEM / SL_EINVAL. */
int sl_table_create(struct sl_table **out, uint64_t max_bytes, unsigned shards_log2);
void sl_table_destroy(struct sl_table *t);

/* Called with pointers to the states of keys[0..n), in the same order,
 * while every shard they live in is locked. Fresh or expired states read
 * as all zero. The callback may modify the states; it must not call back
 * into the table. */
typedef void (*sl_table_fn)(struct sl_state **states, size_t n, void *arg);

/* Atomically look up (claiming slots for absent keys) the states of up to
 * SL_TABLE_MAX_KEYS keys and run fn over them. Shards are locked in
 * ascending order, so concurrent calls never deadlock. Duplicate keys get
 * the same state pointer. Returns 0, or SL_EINVAL for n too large.
 * Thread: any. */
#define SL_TABLE_MAX_KEYS 32
int sl_table_update(struct sl_table *t, const struct sl_key128 *keys, size_t n, int64_t now,
		    sl_table_fn fn, void *arg);

/* Copy out the state of one key without claiming a slot: 0, or SL_ENOENT
 * when absent or expired. */
int sl_table_get(struct sl_table *t, struct sl_key128 key, int64_t now, struct sl_state *out);

void sl_table_stats(struct sl_table *t, struct sl_table_stats *out);

/* One live state copied out of the table. */
struct sl_table_entry {
	struct sl_key128 key;
	struct sl_state st;
};

/* A position of a walk over every slot: zero it to start. */
struct sl_table_cursor {
	uint64_t shard; /* index of the shard the walk is in */
	uint64_t slot;  /* index of the next slot of that shard */
};

/* Copy the live (unexpired at now) states of the next at most `slots`
 * slots at cursor c into out[0..slots), and advance c. Only that one shard
 * is locked, for no more than the copy of `slots` slots (a bounded,
 * memcpy-speed hold); nothing is called back. A chunk never spans two
 * shards. Sets *n to the entries copied. Returns SL_AGAIN while slots
 * remain, 0 once the walk is over (then *n may still be non-zero), or
 * SL_EINVAL for slots == 0. States that change during a walk are seen as
 * they were when their chunk was copied. Thread: any. */
int sl_table_scan(struct sl_table *t, struct sl_table_cursor *c, int64_t now,
                  struct sl_table_entry *out, size_t slots, size_t *n);

/* Call fn for every live (unexpired) state: for snapshots. Built on
 * sl_table_scan, so fn runs with no lock held (it may call back into the
 * table) and decisions keep running. */
typedef void (*sl_table_each_fn)(struct sl_key128 key, const struct sl_state *st, void *arg);
void sl_table_foreach(struct sl_table *t, int64_t now, sl_table_each_fn fn, void *arg);

#endif
