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

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sluice/algo-t.h>

struct sl_table; /* opaque */

struct sl_key128 {
	uint64_t lo, hi;
};

/* Eviction tags: the low 16 bits of a key's `lo`, set by the caller, tell
 * the table what losing the state would cost:
 *   bits 0-1   class (enum sl_tag_class)
 *   bits 2-7   scale: floor(log2 T) of a rate's emission interval T (ns)
 *   bits 8-15  limit index (0: unattributed), for per-limit counts
 * The loss of a live state, in units a client would get back if it were
 * dropped: rate (expires - now) / 2^scale, count v, sliding prev + cur,
 * opaque one unit. Lookups, placement and compares ignore the tag; every
 * update stores the caller's tag over the old one. */
#define SL_TAG_BITS     16
#define SL_TAG_MASK     0xffffULL
#define SL_TABLE_LIMITS 256 /* limit indexes a tag can name */

enum sl_tag_class {
	SL_TAG_OPAQUE = 0,  /* unknown: one unit while live (untagged keys) */
	SL_TAG_RATE = 1,    /* GCRA: expires = TAT */
	SL_TAG_COUNT = 2,   /* quota, concurrency: v = units used */
	SL_TAG_SLIDING = 3, /* v = prev << 32 | cur */
};

/* The tag of a state of limit `spec` whose name has index limit_idx
 * (0..SL_TABLE_LIMITS-1, 0 for none). Pure; a few instructions. */
static inline uint16_t sl_tag_of(const struct sl_limit_spec *spec, unsigned limit_idx)
{
	unsigned cls = SL_TAG_OPAQUE, scale = 0;

	switch (spec->algo) {
	case SL_ALGO_RATE:
		cls = SL_TAG_RATE;
		if (spec->interval > 0)
			scale = 63u - (unsigned)__builtin_clzll((uint64_t)spec->interval);
		break;
	case SL_ALGO_QUOTA:
	case SL_ALGO_CONCURRENCY:
		cls = SL_TAG_COUNT;
		break;
	case SL_ALGO_SLIDING:
		cls = SL_TAG_SLIDING;
		break;
	default:
		break;
	}
	return (uint16_t)(cls | scale << 2 | (limit_idx & (SL_TABLE_LIMITS - 1)) << 8);
}

/* k with its tag replaced by `tag`. */
static inline struct sl_key128 sl_key_tagged(struct sl_key128 k, uint16_t tag)
{
	k.lo = (k.lo & ~SL_TAG_MASK) | tag;
	return k;
}

struct sl_table_stats {
	uint64_t capacity;        /* slots */
	uint64_t used;            /* occupied slots, expired ones included */
	uint64_t evictions;       /* live states evicted because a shard was full */
	uint64_t evictions_usage; /* of those, states whose loss was >= 1 unit */
	uint64_t unstored;        /* new keys refused a slot (sl_table_admit.keep) */
	uint64_t bytes;           /* bytes reserved for slots */
};

/* Counts of one limit index (the tag's bits 8-15). */
struct sl_table_limit_stats {
	uint64_t evicted_usage; /* states evicted with a loss >= 1 unit */
	uint64_t evicted_idle;  /* live states evicted with a loss < 1 unit */
	uint64_t unstored;      /* new keys refused a slot (keep) */
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

/* Admission control of one update (sl_table_update_admit). A candidate
 * "matters" when its loss is >= 1 unit. */
struct sl_table_admit {
	/* in: when every eviction candidate of an absent key matters, keep
	 * them all and give the key no slot (store.on_full deny_new and
	 * allow_new); false: evict the one with the least loss (evict) */
	bool keep;
	/* out, set before fn runs: bit i set when key i got no slot; its
	 * state pointer is then a zeroed scratch state, dropped after fn */
	uint32_t unstored;
	/* out: ns, the earliest time a candidate of an unstored key stops
	 * mattering (INT64_MAX when unstored is 0) */
	int64_t retry_at;
};

/* sl_table_update with admission control: adm (borrowed for the call;
 * NULL = sl_table_update) says whether a key may evict a state that
 * matters, and reports the keys that got no slot. Thread: any. */
int sl_table_update_admit(struct sl_table *t, const struct sl_key128 *keys, size_t n, int64_t now,
                          sl_table_fn fn, void *arg, struct sl_table_admit *adm);

/* Copy out the state of one key without claiming a slot: 0, or SL_ENOENT
 * when absent or expired. */
int sl_table_get(struct sl_table *t, struct sl_key128 key, int64_t now, struct sl_state *out);

void sl_table_stats(struct sl_table *t, struct sl_table_stats *out);
/* The counts of limit index idx (< SL_TABLE_LIMITS; others read zero).
 * Thread: any (relaxed reads of counters the shards keep adding to). */
void sl_table_limit_stats(struct sl_table *t, unsigned idx, struct sl_table_limit_stats *out);

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
