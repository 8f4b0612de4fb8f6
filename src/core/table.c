/* The sharded state table of <sluice/table.h>: 2^k shards, each with its own
 * spinlock and its own fixed, open-addressed, linear-probing array of
 * 32-byte slots (128-bit key + 16-byte state), all reserved at creation
 * with one lazily backed mmap.
 *
 * The decision a reader must know: entries never move and are never
 * deleted by lookups. An expired state is reused in place, and when a shard
 * is at its load bound an insert overwrites a victim inside its own probe
 * chain: the one whose loss admits the fewest extra units (its key's tag
 * says how to read the state), so a flood of one-hit keys evicts one-hit
 * keys, never a client at its limit. So a pointer handed to the callback
 * stays valid for the whole update, and every lookup and insert looks at no
 * more than SL_PROBE_MAX slots. The only slot ever emptied is the tail of a
 * run (a slot whose successor is empty), which no other key's probe path
 * crosses. docs/store-memory.md has the longer design note. */
#include <sluice/error.h>
#include <sluice/table.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SL_PROBE_MAX         64  /* slots: longest probe path; > SL_TABLE_MAX_KEYS */
#define SL_VICTIM_WIN        8   /* slots: eviction candidates looked at per insert */
#define SL_TAILS             4   /* run tails compared when one must be emptied */
#define SL_SAMPLE_MIN        4   /* candidates needed to evict a state that matters */
#define SL_OVER_DEN          256 /* a shard overshoots its bound by at most cap / this */
#define SL_LOAD_NUM          3   /* a shard evicts rather than fill an empty slot */
#define SL_LOAD_DEN          4   /*   once used >= cap * NUM / DEN */
#define SL_SHARD_MIN         64  /* slots: smallest shard */
#define SL_SHARDS_LOG2_MAX   16
#define SL_SPIN_BEFORE_YIELD 128 /* busy polls of a held lock before sched_yield */
#define SL_CACHE_LINE        64  /* bytes */
#define SL_LOSS_FRAC         8   /* bits: losses are fixed point, units << 8 */
#define SL_LOSS_UNIT         (1ULL << SL_LOSS_FRAC) /* a loss of one unit */

/* The value an all-zero key is stored as: zero marks an empty slot. */
#define SL_ZERO_KEY_LO 0x9e3779b97f4a7c15ULL
#define SL_ZERO_KEY_HI 0xbf58476d1ce4e5b9ULL

struct slot {
	struct sl_key128 key; /* 0,0: empty */
	struct sl_state st;
};

_Static_assert(sizeof(struct slot) == 32, "slot is 32 bytes");

/* Per limit index: counted under a shard lock, read by stats (relaxed). */
struct limit_counts {
	_Atomic uint64_t evicted_usage, evicted_idle, unstored; /* states; keys */
};

struct shard {
	atomic_uint lock; /* 0 free, 1 held */
	uint32_t pad;
	uint64_t cap;       /* slots */
	uint64_t max_used;  /* slots: load bound above which inserts evict */
	uint64_t used;      /* slots holding a key, expired ones included */
	uint64_t evictions; /* live states overwritten or emptied */
	struct slot *slots;
	struct limit_counts *counts; /* the table's, per limit index */
} __attribute__((aligned(SL_CACHE_LINE)));

struct sl_table {
	struct shard *shards; /* 2^shards_log2, cache-line aligned */
	struct limit_counts counts[SL_TABLE_LIMITS];
	unsigned shards_log2;
	uint64_t cap;   /* slots per shard, the same for every shard */
	void *map;      /* the slot arrays of every shard, back to back */
	size_t map_len; /* bytes */
};

#define SL_HUGE_PAGE (2u << 20)  /* bytes: PMD huge page, x86-64 (arm64 with 4K pages) */
#define SL_HUGE_MIN  (64u << 20) /* bytes: smallest table that asks for huge pages */

/* Bytes actually mapped for `len` bytes of slots: big tables are rounded
 * up to whole huge pages, so the last page can be huge too. */
static size_t map_span(size_t len)
{
	if (len < SL_HUGE_MIN)
		return len;
	return (len + SL_HUGE_PAGE - 1) & ~(size_t)(SL_HUGE_PAGE - 1);
}

/* Reserve `len` zeroed bytes of slots, or NULL. Random probes over a large
 * table miss the TLB on nearly every access with 4 KiB pages, so a big
 * table is placed on a 2 MiB boundary and advised MADV_HUGEPAGE before
 * anything touches it (THP in "madvise" mode only backs advised ranges,
 * and only whole, aligned 2 MiB pages): every slot then sits in a huge
 * page. That costs at most one partly used huge page of extra RSS.
 * Advisory: if the kernel refuses, the table works on 4 KiB pages. */
static void *map_slots(size_t len)
{
	const int prot = PROT_READ | PROT_WRITE;
	const int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
	size_t span = map_span(len);

	if (span == len) {
		void *p = mmap(NULL, len, prot, flags, -1, 0);
		return p == MAP_FAILED ? NULL : p;
	}
	/* Over-reserve by one huge page, then trim to an aligned span. */
	char *raw = mmap(NULL, span + SL_HUGE_PAGE, prot, flags, -1, 0);
	if (raw == MAP_FAILED)
		return NULL;
	uintptr_t a = ((uintptr_t)raw + SL_HUGE_PAGE - 1) & ~(uintptr_t)(SL_HUGE_PAGE - 1);
	char *p = (char *)a;
	size_t head = (size_t)(p - raw), tail = SL_HUGE_PAGE - head;
	if (head)
		munmap(raw, head);
	if (tail)
		munmap(p + span, tail);
#ifdef MADV_HUGEPAGE
	(void)madvise(p, span, MADV_HUGEPAGE);
#endif
	return p;
}

static void shard_lock(struct shard *sh)
{
	for (;;) {
		if (!atomic_exchange_explicit(&sh->lock, 1, memory_order_acquire))
			return;
		unsigned spins = 0;
		while (atomic_load_explicit(&sh->lock, memory_order_relaxed)) {
			if (++spins == SL_SPIN_BEFORE_YIELD) {
				/* The holder may be descheduled (more threads than
				 * cores): give it the CPU instead of burning ours. */
				sched_yield();
				spins = 0;
			} else {
#if defined(__x86_64__) || defined(__i386__)
				__builtin_ia32_pause();
#endif
			}
		}
	}
}

static void shard_unlock(struct shard *sh)
{
	atomic_store_explicit(&sh->lock, 0, memory_order_release);
}

/* A key whose identity (all but the tag) is zero is stored as a fixed
 * other identity, keeping its tag: zero marks an empty slot. */
static __attribute__((noinline, cold)) struct sl_key128 zero_key(uint64_t tag)
{
	struct sl_key128 z = {(SL_ZERO_KEY_LO & ~SL_TAG_MASK) | tag, SL_ZERO_KEY_HI};
	return z;
}

/* The caller's key, read as two 8-byte loads: callers write the halves
 * separately (the tag goes into lo), and gcc otherwise copies the struct
 * with one 16-byte load, which cannot be forwarded from two stores (a
 * stall of ~10 ns on every decision, measured with perf). */
static inline struct sl_key128 load_key(const struct sl_key128 *p)
{
	struct sl_key128 k = {__atomic_load_n(&p->lo, __ATOMIC_RELAXED),
	                      __atomic_load_n(&p->hi, __ATOMIC_RELAXED)};
	return k;
}

/* Out of line and as a branch: a conditional update of both halves in
 * place gets vectorised by gcc into a 16-byte load of a key the caller
 * just wrote as two 8-byte halves, a store-forwarding stall. */
static inline struct sl_key128 norm_key(struct sl_key128 k)
{
	if (__builtin_expect(((k.lo & ~SL_TAG_MASK) | k.hi) == 0, 0))
		return zero_key(k.lo & SL_TAG_MASK);
	return k;
}

/* Same identity: the tag is not compared. */
static inline bool key_eq(struct sl_key128 a, struct sl_key128 b)
{
	return (((a.lo ^ b.lo) & ~SL_TAG_MASK) | (a.hi ^ b.hi)) == 0;
}

static inline bool slot_empty(const struct slot *s)
{
	return (s->key.lo | s->key.hi) == 0;
}

/* The shard comes from the top bits of `hi`, the slot from `lo`, so the two
 * choices use independent hash bits. */
static inline unsigned shard_of(const struct sl_table *t, struct sl_key128 k)
{
	if (t->shards_log2 == 0)
		return 0;
	return (unsigned)(k.hi >> (64 - t->shards_log2));
}

/* Multiply-shift range reduction: uniform over [0, cap) for any cap. The
 * tag is masked: its bits could carry into the product and move a key. */
static inline uint64_t home_in(uint64_t cap, struct sl_key128 k)
{
	return (uint64_t)(((unsigned __int128)(k.lo & ~SL_TAG_MASK) * cap) >> 64);
}

static inline uint64_t home_of(const struct shard *sh, struct sl_key128 k)
{
	return home_in(sh->cap, k);
}

static inline uint64_t next_idx(const struct shard *sh, uint64_t i)
{
	return ++i == sh->cap ? 0 : i;
}

int sl_table_create(struct sl_table **out, uint64_t max_bytes, unsigned shards_log2)
{
	struct sl_table *t = NULL;
	int rc = SL_EINVAL;

	*out = NULL;
	if (max_bytes < 64 * 1024 || shards_log2 > SL_SHARDS_LOG2_MAX)
		return SL_EINVAL;
	uint64_t nshards = 1ULL << shards_log2;
	/* An even slot count keeps every shard's array on its own cache lines. */
	uint64_t cap = (max_bytes / sizeof(struct slot) / nshards) & ~1ULL;
	if (cap < SL_SHARD_MIN)
		return SL_EINVAL;
	if (cap > (SIZE_MAX / sizeof(struct slot)) / nshards)
		return SL_ENOMEM;

	rc = SL_ENOMEM;
	t = calloc(1, sizeof(*t));
	if (!t)
		goto fail;
	t->shards_log2 = shards_log2;
	t->cap = cap;
	for (unsigned i = 0; i < SL_TABLE_LIMITS; i++) {
		atomic_init(&t->counts[i].evicted_usage, 0);
		atomic_init(&t->counts[i].evicted_idle, 0);
		atomic_init(&t->counts[i].unstored, 0);
	}
	t->shards = aligned_alloc(SL_CACHE_LINE, nshards * sizeof(struct shard));
	if (!t->shards)
		goto fail;
	memset(t->shards, 0, nshards * sizeof(struct shard));
	t->map_len = (size_t)(nshards * cap * sizeof(struct slot));
	/* Anonymous pages read as zero (empty) and are backed on first touch,
	 * so RSS grows with the slots actually used, never past map_len. */
	t->map = map_slots(t->map_len);
	if (!t->map)
		goto fail;
	for (uint64_t i = 0; i < nshards; i++) {
		struct shard *sh = &t->shards[i];
		atomic_init(&sh->lock, 0);
		sh->cap = cap;
		sh->max_used = cap * SL_LOAD_NUM / SL_LOAD_DEN;
		sh->slots = (struct slot *)t->map + i * cap;
		sh->counts = t->counts;
	}
	*out = t;
	return 0;

fail:
	if (t) {
		free(t->shards);
		free(t);
	}
	return rc;
}

void sl_table_destroy(struct sl_table *t)
{
	if (!t)
		return;
	if (t->map)
		munmap(t->map, map_span(t->map_len));
	free(t->shards);
	free(t);
}

/* Slots already handed out by the current update: never reused, evicted or
 * emptied by a later key of the same call. */
struct pins {
	struct slot *s[SL_TABLE_MAX_KEYS];
	size_t n;
};

static inline bool pinned(const struct pins *p, const struct slot *s)
{
	for (size_t i = 0; i < p->n; i++)
		if (p->s[i] == s)
			return true;
	return false;
}

static inline uint64_t sat_shl(uint64_t x, unsigned sh)
{
	return x > (UINT64_MAX >> sh) ? UINT64_MAX : x << sh;
}

static inline unsigned tag_of(const struct slot *s)
{
	return (unsigned)(s->key.lo & SL_TAG_MASK);
}

/* What dropping slot `s` at `now` would admit extra, in units << 8 (the
 * tag says how to read the state, <sluice/table.h>): 0 for a dead state.
 * A rate's scale is floor(log2 T), so its loss reads high by up to 2x. */
static inline uint64_t slot_loss(const struct slot *s, int64_t now)
{
	unsigned tag = tag_of(s);

	if (s->st.expires <= now)
		return 0;
	switch (tag & 3) {
	case SL_TAG_RATE: {
		uint64_t d = (uint64_t)s->st.expires - (uint64_t)now; /* ns, > 0 */
		unsigned e = (tag >> 2) & 63;
		return e >= SL_LOSS_FRAC ? d >> (e - SL_LOSS_FRAC) : sat_shl(d, SL_LOSS_FRAC - e);
	}
	case SL_TAG_COUNT:
		return sat_shl(s->st.v, SL_LOSS_FRAC);
	case SL_TAG_SLIDING:
		return sat_shl((s->st.v >> 32) + (s->st.v & 0xffffffffULL), SL_LOSS_FRAC);
	default:
		return SL_LOSS_UNIT;
	}
}

/* When slot `s` stops mattering (its loss falls below one unit): ns. */
static inline int64_t slot_free_at(const struct slot *s)
{
	unsigned tag = tag_of(s), e = (tag >> 2) & 63;

	if ((tag & 3) != SL_TAG_RATE)
		return s->st.expires;
	if (e >= 62 || s->st.expires < INT64_MIN + (INT64_C(1) << e))
		return s->st.expires;
	return s->st.expires - (INT64_C(1) << e);
}

/* A candidate seen while choosing a victim. */
struct pick {
	struct slot *s;  /* NULL: none yet */
	uint64_t loss;   /* units << 8 */
	int64_t free_at; /* ns: earliest time any candidate stops mattering */
	unsigned n;      /* candidates seen */
};

/* Consider `s`: least loss first, then the state expiring soonest. */
static inline void pick_add(struct pick *pk, struct slot *s, int64_t now)
{
	uint64_t l = slot_loss(s, now);
	int64_t f = slot_free_at(s);

	pk->n++;
	if (f < pk->free_at)
		pk->free_at = f;
	if (!pk->s || l < pk->loss || (l == pk->loss && s->st.expires < pk->s->st.expires)) {
		pk->s = s;
		pk->loss = l;
	}
}

/* Fold the candidates of `b` into `a`. */
static inline void pick_merge(struct pick *a, const struct pick *b)
{
	a->n += b->n;
	if (b->free_at < a->free_at)
		a->free_at = b->free_at;
	if (b->s && (!a->s || b->loss < a->loss ||
	             (b->loss == a->loss && b->s->st.expires < a->s->st.expires))) {
		a->s = b->s;
		a->loss = b->loss;
	}
}

/* Count the eviction of the live or dead state in `s` whose loss is
 * `loss`, under its limit index. */
static void count_eviction(struct shard *sh, const struct slot *s, uint64_t loss, int64_t now)
{
	struct limit_counts *c = &sh->counts[tag_of(s) >> 8];

	if (s->st.expires <= now)
		return;
	sh->evictions++;
	if (loss >= SL_LOSS_UNIT)
		atomic_fetch_add_explicit(&c->evicted_usage, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&c->evicted_idle, 1, memory_order_relaxed);
}

/* The best run tail near `start`: the one with the least loss among the
 * first SL_TAILS tails from `start` on, within SL_PROBE_MAX slots (a tail
 * is a slot whose successor is empty, so no probe path crosses it and
 * emptying it hides no key). `keep` and pinned slots are spared. */
static struct pick find_tail(struct shard *sh, uint64_t start, int64_t now, const struct pins *p,
                             const struct slot *keep)
{
	struct pick pk = {NULL, 0, INT64_MAX, 0};
	uint64_t i = start, probes = sh->cap < SL_PROBE_MAX ? sh->cap : SL_PROBE_MAX;
	unsigned tails = 0;

	for (uint64_t n = 0; n < probes && tails < SL_TAILS; n++) {
		uint64_t j = next_idx(sh, i);
		struct slot *s = &sh->slots[i];
		if (!slot_empty(s) && slot_empty(&sh->slots[j]) && s != keep && !pinned(p, s)) {
			tails++;
			pick_add(&pk, s, now);
		}
		i = j;
	}
	return pk;
}

/* Empty the tail `pk` found, counting its eviction. */
static void drop(struct shard *sh, const struct pick *pk, int64_t now)
{
	count_eviction(sh, pk->s, pk->loss, now);
	memset(pk->s, 0, sizeof(*pk->s));
	sh->used--;
}

static inline struct slot *claim(struct slot *s, struct sl_key128 k)
{
	s->key = k;
	memset(&s->st, 0, sizeof(s->st));
	return s;
}

/* The insert of absent key `k` into `sh` (locked) at its load bound, or
 * with a path of SL_PROBE_MAX slots and no empty one: the path is the n
 * slots from k's home, `empty` (at empty_idx) the empty slot ending it or
 * NULL. Takes a victim: the candidate with the least loss among the first
 * SL_VICTIM_WIN slots of the path and, with `empty`, the first SL_TAILS
 * nearby run tails. When that loss is >= 1 unit and adm->keep, evicts
 * nothing: returns NULL and lowers adm->retry_at. Otherwise NULL only if
 * every candidate is pinned, which SL_PROBE_MAX > SL_TABLE_MAX_KEYS rules
 * out. Out of line: the lookup of a present key never runs it. Bounded
 * work: SL_VICTIM_WIN losses and at most four tail searches of
 * SL_PROBE_MAX slots (a second span only when the first holds too few
 * tails; two more when it pays an overshoot back). */
static __attribute__((noinline)) struct slot *
insert_full(struct shard *sh, struct sl_key128 k, int64_t now, const struct pins *p,
            struct sl_table_admit *adm, struct slot *empty, uint64_t empty_idx, uint64_t n)
{
	uint64_t home = home_of(sh, k), i;
	bool keep = adm && adm->keep;

	/* The first SL_VICTIM_WIN unpinned slots of the path are candidates. */
	struct pick pk = {NULL, 0, INT64_MAX, 0};
	unsigned cands = 0;
	i = home;
	for (uint64_t m = 0; m < n && cands < SL_VICTIM_WIN; m++, i = next_idx(sh, i)) {
		struct slot *s = &sh->slots[i];
		if (!pinned(p, s)) {
			cands++;
			pick_add(&pk, s, now);
		}
	}
	/* With an empty slot ending the path, the tails of nearby runs are
	 * candidates too: emptying one and taking `empty` keeps the bound, and
	 * a short path alone would offer too few candidates. */
	struct pick tl = {NULL, 0, INT64_MAX, 0};
	if (empty) {
		uint64_t back = empty_idx == 0 ? sh->cap - 1 : empty_idx - 1;
		tl = find_tail(sh, back, now, p, NULL);
		if (pk.n + tl.n < SL_SAMPLE_MIN && sh->cap > 2 * SL_PROBE_MAX) {
			/* A long cluster: look one probe span further. */
			struct pick more =
			        find_tail(sh, (back + SL_PROBE_MAX) % sh->cap, now, p, NULL);
			pick_merge(&tl, &more);
		}
	}
	bool use_tail = tl.s && (!pk.s || tl.loss < pk.loss ||
	                         (tl.loss == pk.loss && tl.s->st.expires < pk.s->st.expires));
	const struct pick *best = use_tail ? &tl : &pk;
	if (!best->s) {
		if (!empty)
			return NULL;
		sh->used++; /* no candidate at all: overshoot, paid back later */
		return claim(empty, k);
	}
	if (best->loss >= SL_LOSS_UNIT && empty && pk.n + tl.n < SL_SAMPLE_MIN &&
	    sh->used < sh->max_used + sh->cap / SL_OVER_DEN) {
		/* Too few candidates to judge (a sparse stretch of the shard):
		 * overshoot the soft bound by one slot rather than drop a state
		 * that matters; a later eviction in place pays it back. The
		 * overshoot is capped, or long runs (few tails) would feed it. */
		sh->used++;
		return claim(empty, k);
	}
	/* keep refuses only when the shard is really full: a 64-slot path
	 * without an empty slot below the bound is a long cluster, not a full
	 * table, and refusing there would deny a client while room is left. */
	if (best->loss >= SL_LOSS_UNIT && keep && (empty || sh->used >= sh->max_used)) {
		int64_t f = pk.free_at < tl.free_at ? pk.free_at : tl.free_at;
		if (f < adm->retry_at)
			adm->retry_at = f;
		return NULL;
	}
	if (use_tail && tl.s == &sh->slots[empty_idx == 0 ? sh->cap - 1 : empty_idx - 1] && n > 0) {
		/* The tail ends k's own path: emptying it would hide `empty`
		 * from k's lookups, so it is the victim in place instead. */
		use_tail = false;
		pk = tl;
	}
	if (use_tail) {
		drop(sh, &tl, now);
		sh->used++;
		return claim(empty, k);
	}
	count_eviction(sh, pk.s, pk.loss, now);
	if (sh->used > sh->max_used) {
		/* Pay back an earlier overshoot of the load bound, with a tail
		 * that does not matter or (evict) the least of enough tails, or
		 * of any, once the overshoot reaches its cap. */
		struct pick back = find_tail(sh, home, now, p, pk.s);
		if (back.n < SL_SAMPLE_MIN && sh->cap > 2 * SL_PROBE_MAX) {
			struct pick more =
			        find_tail(sh, (home + SL_PROBE_MAX) % sh->cap, now, p, pk.s);
			pick_merge(&back, &more);
		}
		bool over = sh->used >= sh->max_used + sh->cap / SL_OVER_DEN;
		if (back.s &&
		    (back.loss < SL_LOSS_UNIT || (!keep && (back.n >= SL_SAMPLE_MIN || over))))
			drop(sh, &back, now);
	}
	return claim(pk.s, k);
}

/* Find or claim the slot of `k` in `sh` (locked). A found expired state and
 * a claimed slot read as all zero; a found key takes k's tag. An absent key
 * takes an expired slot of its path, else the empty slot ending it (below
 * the load bound), else what insert_full() picks. Bounded work:
 * SL_PROBE_MAX slots. */
static inline struct slot *resolve(struct shard *sh, struct sl_key128 k, int64_t now,
                                   const struct pins *p, struct sl_table_admit *adm)
{
	/* Scalars, not the struct: gcc otherwise assembles k in a vector
	 * register from two stack stores, a store-forwarding stall (~30% of
	 * a hot decision, measured). */
	const uint64_t klo = k.lo, khi = k.hi, kid = klo & ~SL_TAG_MASK;
	uint64_t i = (uint64_t)(((unsigned __int128)kid * sh->cap) >> 64), n;
	uint64_t probes = sh->cap < SL_PROBE_MAX ? sh->cap : SL_PROBE_MAX;
	struct slot *expired = NULL, *empty = NULL;
	uint64_t empty_idx = 0;

	for (n = 0; n < probes; n++, i = next_idx(sh, i)) {
		struct slot *s = &sh->slots[i];
		uint64_t slo = s->key.lo, shi = s->key.hi;
		if ((((slo & ~SL_TAG_MASK) ^ kid) | (shi ^ khi)) == 0) {
			s->key.lo = klo; /* the caller's tag */
			if (s->st.expires <= now)
				memset(&s->st, 0, sizeof(s->st));
			return s;
		}
		if ((slo | shi) == 0) {
			empty = s;
			empty_idx = i;
			break;
		}
		if (!expired && s->st.expires <= now && !pinned(p, s))
			expired = s;
	}
	/* Absent. Prefer a dead slot already on the probe path. */
	if (!expired && !(empty && sh->used < sh->max_used))
		return insert_full(sh, k, now, p, adm, empty, empty_idx, n);
	struct slot *s = expired;
	if (!s) {
		s = empty;
		sh->used++;
	}
	s->key.lo = klo;
	s->key.hi = khi;
	s->st.expires = 0;
	s->st.v = 0;
	return s;
}

/* Read-only lookup in `sh` (locked): the slot of `k`, or NULL. */
static struct slot *find(struct shard *sh, struct sl_key128 k)
{
	uint64_t i = home_of(sh, k);
	uint64_t probes = sh->cap < SL_PROBE_MAX ? sh->cap : SL_PROBE_MAX;

	for (uint64_t n = 0; n < probes; n++, i = next_idx(sh, i)) {
		struct slot *s = &sh->slots[i];
		if (key_eq(s->key, k))
			return s;
		if (slot_empty(s))
			return NULL;
	}
	return NULL;
}

/* Start the (likely) cache misses on the home slot of key `k` of shard
 * `sid` and on the line after it. At the 3/4 load bound 64% of keys sit in
 * their home slot, 88% within these two lines (measured over the
 * benchmark's 10M keys); the rest cost a second, serial miss. A third
 * prefetched line (93%) measured slower, not faster, on the cold bench.
 * The address comes from the table alone (every shard has the same cap,
 * arrays back to back), not from the shard's header, so a miss on the
 * header cannot delay it. Slots never move, so this is safe before
 * locking; prefetch never faults. */
static inline void prefetch_line(const void *p)
{
#if defined(__x86_64__) || defined(__i386__)
	/* As asm: gcc 12 at -O2 silently deleted this file's
	 * __builtin_prefetch calls after the eviction changes (with
	 * -fno-ipa-modref it kept them; cause not pinned down), costing the
	 * three-limit bench ~30%. An asm statement cannot be dropped. */
	__asm__ volatile("prefetcht0 %0" : : "m"(*(const char *)p));
#else
	__builtin_prefetch(p, 1, 3);
#endif
}

static inline void prefetch_home(const struct sl_table *t, unsigned sid, struct sl_key128 k)
{
	const struct slot *h =
	        (const struct slot *)t->map + (uint64_t)sid * t->cap + home_in(t->cap, k);
	prefetch_line(h);
	prefetch_line(h + 2);
}

/* Count key `k` as refused a slot under its limit index. */
static void count_unstored(struct sl_table *t, struct sl_key128 k)
{
	struct limit_counts *c = &t->counts[(k.lo & SL_TAG_MASK) >> 8];
	atomic_fetch_add_explicit(&c->unstored, 1, memory_order_relaxed);
}

/* sl_table_update of one key, the common case (one limit per decision):
 * one shard, nothing to sort or pin against. Same semantics. */
static int update_one(struct sl_table *t, struct sl_key128 key, int64_t now, sl_table_fn fn,
                      void *arg, struct sl_table_admit *adm)
{
	struct sl_key128 k = norm_key(key);
	unsigned sid = shard_of(t, k);
	struct shard *sh = &t->shards[sid];
	struct sl_state scratch;
	struct pins p;
	int rc = 0;

	prefetch_home(t, sid, k);
	shard_lock(sh);
	p.n = 0;
	struct slot *s = resolve(sh, k, now, &p, adm);
	if (s) {
		struct sl_state *st = &s->st;
		fn(&st, 1, arg);
	} else if (adm && adm->keep) {
		struct sl_state *st = &scratch;
		memset(&scratch, 0, sizeof(scratch));
		adm->unstored = 1;
		count_unstored(t, k);
		fn(&st, 1, arg);
	} else {
		rc = SL_EFULL;
	}
	shard_unlock(sh);
	return rc;
}

int sl_table_update(struct sl_table *t, const struct sl_key128 *keys, size_t n, int64_t now,
                    sl_table_fn fn, void *arg)
{
	return sl_table_update_admit(t, keys, n, now, fn, arg, NULL);
}

int sl_table_update_admit(struct sl_table *t, const struct sl_key128 *keys, size_t n, int64_t now,
                          sl_table_fn fn, void *arg, struct sl_table_admit *adm)
{
	struct sl_key128 k[SL_TABLE_MAX_KEYS];
	unsigned sid[SL_TABLE_MAX_KEYS];    /* shard of key i */
	unsigned locked[SL_TABLE_MAX_KEYS]; /* distinct shards, ascending */
	struct sl_state *states[SL_TABLE_MAX_KEYS];
	struct sl_state scratch[SL_TABLE_MAX_KEYS]; /* states of unstored keys */
	struct pins p;
	size_t nl = 0;
	int rc = 0;

	if (n > SL_TABLE_MAX_KEYS)
		return SL_EINVAL;
	if (adm) {
		adm->unstored = 0;
		adm->retry_at = INT64_MAX;
	}
	if (n == 1)
		return update_one(t, load_key(&keys[0]), now, fn, arg, adm);
	for (size_t i = 0; i < n; i++) {
		k[i] = norm_key(load_key(&keys[i]));
		sid[i] = shard_of(t, k[i]);
		/* Overlaps the keys' misses with each other and with the
		 * lock acquisition. */
		prefetch_home(t, sid[i], k[i]);
		/* Insertion sort into the distinct-shard list: n <= 32. The
		 * shift is done while scanning, not by memmove: a decision
		 * moves 0-2 entries, less than a library call costs (gcc
		 * turns a separate shift loop back into memmove). */
		bool dup = false;
		for (size_t m = 0; m < nl; m++)
			dup |= locked[m] == sid[i];
		if (dup)
			continue;
		size_t j = nl;
		while (j > 0 && locked[j - 1] > sid[i]) {
			locked[j] = locked[j - 1];
			j--;
		}
		locked[j] = sid[i];
		nl++;
	}
	for (size_t j = 0; j < nl; j++)
		shard_lock(&t->shards[locked[j]]);

	p.n = 0;
	for (size_t i = 0; i < n; i++) {
		/* A duplicate of a key already refused shares its scratch state. */
		size_t dup = i;
		for (size_t j = 0; adm && adm->unstored && j < i; j++)
			if ((adm->unstored >> j & 1) && key_eq(k[j], k[i])) {
				dup = j;
				break;
			}
		if (dup < i) {
			adm->unstored |= 1u << i;
			states[i] = states[dup];
			continue;
		}
		struct slot *s = resolve(&t->shards[sid[i]], k[i], now, &p, adm);
		if (!s && adm && adm->keep) {
			memset(&scratch[i], 0, sizeof(scratch[i]));
			adm->unstored |= 1u << i;
			count_unstored(t, k[i]);
			states[i] = &scratch[i];
			continue;
		}
		if (!s) {
			rc = SL_EFULL;
			break;
		}
		p.s[p.n++] = s;
		states[i] = &s->st;
	}
	if (rc == 0)
		fn(states, n, arg);

	for (size_t j = nl; j-- > 0;)
		shard_unlock(&t->shards[locked[j]]);
	return rc;
}

int sl_table_get(struct sl_table *t, struct sl_key128 key, int64_t now, struct sl_state *out)
{
	struct sl_key128 k = norm_key(key);
	struct shard *sh = &t->shards[shard_of(t, k)];
	int rc = SL_ENOENT;

	shard_lock(sh);
	struct slot *s = find(sh, k);
	if (s && s->st.expires > now) {
		*out = s->st;
		rc = 0;
	}
	shard_unlock(sh);
	return rc;
}

void sl_table_stats(struct sl_table *t, struct sl_table_stats *out)
{
	uint64_t nshards = 1ULL << t->shards_log2;

	memset(out, 0, sizeof(*out));
	for (uint64_t i = 0; i < nshards; i++) {
		struct shard *sh = &t->shards[i];
		shard_lock(sh);
		out->capacity += sh->cap;
		out->used += sh->used;
		out->evictions += sh->evictions;
		shard_unlock(sh);
	}
	for (unsigned i = 0; i < SL_TABLE_LIMITS; i++) {
		struct sl_table_limit_stats ls;
		sl_table_limit_stats(t, i, &ls);
		out->evictions_usage += ls.evicted_usage;
		out->unstored += ls.unstored;
	}
	out->bytes = t->map_len;
}

void sl_table_limit_stats(struct sl_table *t, unsigned idx, struct sl_table_limit_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (idx >= SL_TABLE_LIMITS)
		return;
	struct limit_counts *c = &t->counts[idx];
	out->evicted_usage = atomic_load_explicit(&c->evicted_usage, memory_order_relaxed);
	out->evicted_idle = atomic_load_explicit(&c->evicted_idle, memory_order_relaxed);
	out->unstored = atomic_load_explicit(&c->unstored, memory_order_relaxed);
}

int sl_table_scan(struct sl_table *t, struct sl_table_cursor *c, int64_t now,
                  struct sl_table_entry *out, size_t slots, size_t *n)
{
	uint64_t nshards = 1ULL << t->shards_log2;
	size_t k = 0;

	*n = 0;
	if (slots == 0)
		return SL_EINVAL;
	if (c->shard >= nshards)
		return 0;
	struct shard *sh = &t->shards[c->shard];
	uint64_t left = sh->cap > c->slot ? sh->cap - c->slot : 0;
	uint64_t end = sh->cap - left + (slots < left ? slots : left);
	shard_lock(sh);
	for (uint64_t j = c->slot; j < end; j++) {
		const struct slot *s = &sh->slots[j];
		if (!slot_empty(s) && s->st.expires > now) {
			out[k].key = s->key;
			out[k].st = s->st;
			k++;
		}
	}
	shard_unlock(sh);
	*n = k;
	c->slot = end;
	if (end == sh->cap) {
		c->shard++;
		c->slot = 0;
	}
	return c->shard < nshards ? SL_AGAIN : 0;
}

#define SL_FOREACH_SLOTS 256 /* slots copied per lock hold: 8 KiB of stack */

void sl_table_foreach(struct sl_table *t, int64_t now, sl_table_each_fn fn, void *arg)
{
	struct sl_table_entry buf[SL_FOREACH_SLOTS];
	struct sl_table_cursor c = {0, 0};
	size_t n;
	int rc;

	do {
		rc = sl_table_scan(t, &c, now, buf, SL_FOREACH_SLOTS, &n);
		for (size_t i = 0; i < n; i++)
			fn(buf[i].key, &buf[i].st, arg);
	} while (rc == SL_AGAIN);
}
