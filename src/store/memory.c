/* The memory store: the store interface of store.h over one core state
 * table (src/core/table.c). Each check's (limit_id, key bytes) is hashed
 * with seeded XXH3-128 into a table key; a batch is one sl_table_update, so
 * a multi-limit decision is evaluated and committed (all or nothing) while
 * every shard it touches is locked, exact under any number of threads. It
 * completes inline: done() has run when submit returns.
 *
 * Eviction: each table key carries a tag (<sluice/table.h>) made from the
 * check's spec and a small index of its limit name, so a full table evicts
 * the state whose loss admits the fewest extra units and counts evictions
 * per limit. The name index comes from a map of limit ids filled on first
 * sight (one mutex-guarded registration per limit id, then one lock-free
 * probe per check). store.on_full decides what a new key gets when every
 * candidate matters (docs/store-memory.md).
 *
 * The snapshot file lets quotas survive restarts. Its keys are hashes, so
 * it carries the seed and is refused by a store with another seed:
 *
 *   header  40 bytes: magic "SLUICEST", u32 version (2; 1 is read too), u32 entry size
 *           (32), u64 seed, u64 count, u64 time saved (ns)
 *   entries count x 32 bytes: u64 key lo, u64 key hi, i64 expires, u64 v
 *   trailer u64: XXH3-64 of the header, seeded with XXH3-64 of the entries
 *
 * all little-endian. It is written to PATH.tmp, fsynced and renamed, so a
 * crash leaves the old file or the new one, never half of one. A save
 * copies a bounded chunk of one shard's slots at a time under that shard's
 * lock and writes with no lock held, so it never stalls decisions for
 * longer than one chunk's copy. */
#include <sluice/algo.h>
#include <sluice/error.h>
#include <sluice/table.h>

#include "policy/policy-t.h"
#include "store/store.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
/* Header-only XXH3: a decision hashes one short key per limit (8 to ~40
 * bytes), which through libxxhash is a PLT call into its generic entry
 * point. Inlined, the hash is specialised here. Same algorithm, same
 * output (XXH3 is frozen since 0.8.0), so snapshots stay compatible. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#define SNAP_MAGIC       "SLUICEST"
#define SNAP_VERSION     2 /* 2: the low 16 bits of key lo are an eviction tag */
#define SNAP_HDR_BYTES   40
#define SNAP_ENTRY_BYTES 32
#define SNAP_TAIL_BYTES  8
#define SNAP_CHUNK       256  /* entries buffered per read */
#define SNAP_SCAN_SLOTS  1024 /* slots copied per shard-lock hold (32 KiB) */
#define SNAP_ASIDE_MAX   1000 /* PATH.corrupt, .corrupt.1 .. .corrupt.999 */

#define SL_MEM_IDS     512 /* limit ids remembered with their name index (power of 2) */
#define SL_MEM_IDS_MAX 384 /* ids registered at most; later ones count as "other" */
#define SL_MEM_ID_MIX  0x9e3779b97f4a7c15ULL /* stored id = limit_id ^ this; 0 = empty */

/* One remembered limit id: `idx` is written before `id` is published. */
struct id_slot {
	_Atomic uint64_t id; /* limit_id ^ SL_MEM_ID_MIX, 0: empty */
	_Atomic uint8_t idx; /* name index, 0: "other" */
};

/* What a full table did to new keys, per name index (decisions only). */
struct full_counts {
	_Atomic uint64_t denied;   /* keys: rejected (on_full: deny_new) */
	_Atomic uint64_t admitted; /* keys: admitted unstored (on_full: allow_new) */
};

struct memory_store {
	struct sl_store base; /* first: the store handle callers see */
	struct sl_table *table;
	uint64_t seed;
	char *snap_path;         /* own snapshot file, or NULL */
	pthread_mutex_t save_mu; /* one save at a time (they share PATH.tmp) */
	_Atomic uint8_t on_full; /* enum sl_on_full */
	struct id_slot ids[SL_MEM_IDS];
	_Atomic unsigned nids;   /* ids registered */
	_Atomic unsigned nnames; /* names[0..nnames) are published; [0] = "other" */
	char names[SL_TABLE_LIMITS][SL_STORE_NAME];
	struct full_counts full[SL_TABLE_LIMITS];
	pthread_mutex_t reg_lock; /* serialises registrations */
};

/* splitmix64's finaliser: a bijection, so distinct limit ids give
 * distinct hash seeds for one store seed. */
static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

static inline unsigned id_home(uint64_t stored)
{
	return (unsigned)((stored * 0x9e3779b97f4a7c15ULL) >> 55) & (SL_MEM_IDS - 1);
}

/* The name index of c's limit, registering its id (and its name, if new)
 * on first sight: under reg_lock, no allocation (names are copied into
 * fixed slots, truncated to SL_STORE_NAME - 1 bytes). Unnamed checks, names
 * beyond SL_TABLE_LIMITS - 1 and ids beyond SL_MEM_IDS_MAX get 0. */
static unsigned register_limit(struct memory_store *m, const struct sl_check *c, uint64_t stored)
{
	const char *name = c->name ? c->name : "";
	unsigned idx = 0, h = id_home(stored);

	pthread_mutex_lock(&m->reg_lock);
	for (unsigned i = 0; i < SL_MEM_IDS; i++) {
		struct id_slot *e = &m->ids[(h + i) & (SL_MEM_IDS - 1)];
		uint64_t got = atomic_load_explicit(&e->id, memory_order_relaxed);
		if (got == stored) { /* another thread was first */
			idx = atomic_load_explicit(&e->idx, memory_order_relaxed);
			goto out;
		}
		if (got == 0)
			break;
	}
	unsigned nn = atomic_load_explicit(&m->nnames, memory_order_relaxed);
	if (*name != '\0') {
		for (idx = 1; idx < nn && strncmp(m->names[idx], name, SL_STORE_NAME - 1) != 0;
		     idx++)
			;
		if (idx == nn && nn < SL_TABLE_LIMITS) {
			snprintf(m->names[nn], SL_STORE_NAME, "%s", name);
			atomic_store_explicit(&m->nnames, nn + 1, memory_order_release);
		} else if (idx == nn) {
			idx = 0;
		}
	}
	if (stored == 0 || atomic_load_explicit(&m->nids, memory_order_relaxed) >= SL_MEM_IDS_MAX)
		goto out;
	for (unsigned i = 0; i < SL_MEM_IDS; i++) {
		struct id_slot *e = &m->ids[(h + i) & (SL_MEM_IDS - 1)];
		if (atomic_load_explicit(&e->id, memory_order_relaxed) == 0) {
			atomic_store_explicit(&e->idx, (uint8_t)idx, memory_order_relaxed);
			atomic_store_explicit(&e->id, stored, memory_order_release);
			atomic_fetch_add_explicit(&m->nids, 1, memory_order_relaxed);
			break;
		}
	}
out:
	pthread_mutex_unlock(&m->reg_lock);
	return idx;
}

/* The name index of c's limit: one probe of a small read-mostly map in the
 * common case. Thread: any. */
static inline unsigned limit_index(struct memory_store *m, const struct sl_check *c)
{
	uint64_t stored = c->limit_id ^ SL_MEM_ID_MIX;
	unsigned h = id_home(stored);
	struct id_slot *e = &m->ids[h];
	uint64_t got = atomic_load_explicit(&e->id, memory_order_acquire);

	if (__builtin_expect(got == stored && got != 0, 1)) /* its home: the common case */
		return atomic_load_explicit(&e->idx, memory_order_relaxed);
	for (unsigned i = 1; got != 0 && i < SL_MEM_IDS; i++) {
		e = &m->ids[(h + i) & (SL_MEM_IDS - 1)];
		got = atomic_load_explicit(&e->id, memory_order_acquire);
		if (got == stored && got != 0)
			return atomic_load_explicit(&e->idx, memory_order_relaxed);
	}
	if (atomic_load_explicit(&m->nids, memory_order_relaxed) >= SL_MEM_IDS_MAX)
		return 0;
	return register_limit(m, c, stored);
}

/* The table key of one check: XXH3-128 of the key bytes under a seed
 * derived from (store seed, limit_id), tagged with what the table needs to
 * judge an eviction (the tag replaces 16 bits of hash: 112 bits of
 * identity remain). No allocation. */
static inline struct sl_key128 check_key(struct memory_store *m, const struct sl_check *c)
{
	XXH128_hash_t h =
	        XXH3_128bits_withSeed(c->key, c->key_len, mix64(m->seed ^ mix64(c->limit_id)));
	struct sl_key128 k = {h.low64, h.high64};
	return sl_key_tagged(k, sl_tag_of(c->spec, limit_index(m, c)));
}

/* One submit's context for the table callback. */
struct mem_call {
	struct memory_store *m;
	struct sl_batch *b;
	struct sl_table_admit adm;
	const struct sl_key128 *keys;
	uint8_t on_full; /* enum sl_on_full, read once per submit */
};

/* on_full: deny_new and a key of the decision found the table full of
 * states that matter: reject the decision at the first such check, commit
 * nothing. The others report what they have (peeks); the refused check
 * reports nothing left and, as Retry-After, when the first candidate for
 * its slot stops mattering (>= 1 ns: 0 would mean "never"). */
static void deny_unstored(struct sl_state **st, struct mem_call *mc)
{
	struct sl_batch *b = mc->b;
	struct sl_state scratch;
	size_t first = b->n;

	for (size_t i = 0; i < b->n; i++) {
		struct sl_check *c = &b->checks[i];
		memset(&c->res, 0, sizeof(c->res));
		sl_algo_eval(c->spec, st[i], b->now, 0, &scratch, &c->res);
		if ((mc->adm.unstored >> i & 1) && first == b->n)
			first = i;
	}
	struct sl_result *r = &b->checks[first].res;
	int64_t wait = mc->adm.retry_at > b->now ? mc->adm.retry_at - b->now : 1;
	r->outcome = SL_REJECTED;
	r->remaining = 0;
	r->retry_after = wait;
	r->reset_after = wait;
	b->status = SL_DENY;
	b->denied = first;
	b->delay = 0;
}

static void run_decide(struct sl_state **st, struct sl_batch *b)
{
	struct sl_decide_item items[SL_TABLE_MAX_KEYS];
	size_t n = b->n;

	for (size_t i = 0; i < n; i++) {
		items[i].spec = b->checks[i].spec;
		items[i].cost = b->checks[i].cost;
		items[i].state = st[i];
	}
	b->denied = n;
	b->delay = 0;
	b->status = sl_decide(items, n, b->now, &b->denied, &b->delay);
	for (size_t i = 0; i < n; i++)
		b->checks[i].res = items[i].res;
}

/* Runs while every shard of the batch is locked. */
static void run_batch(struct sl_state **st, size_t n, void *arg)
{
	struct mem_call *mc = arg;
	struct sl_batch *b = mc->b;
	struct sl_state scratch;

	switch (b->op) {
	case SL_OP_DECIDE:
		if (mc->adm.unstored) {
			bool deny = mc->on_full == SL_ON_FULL_DENY_NEW;
			for (size_t i = 0; i < n; i++) {
				if (!(mc->adm.unstored >> i & 1))
					continue;
				struct full_counts *fc =
				        &mc->m->full[(mc->keys[i].lo & SL_TAG_MASK) >> 8];
				atomic_fetch_add_explicit(deny ? &fc->denied : &fc->admitted, 1,
				                          memory_order_relaxed);
			}
			if (deny) {
				deny_unstored(st, mc);
				return;
			}
		}
		/* allow_new: an unstored key decides on a fresh scratch state */
		run_decide(st, b);
		return;
	case SL_OP_RELEASE:
		/* Refund, then report what the limit has after the refund. */
		for (size_t i = 0; i < n; i++) {
			struct sl_check *c = &b->checks[i];
			sl_algo_refund(c->spec, st[i], b->now, c->cost);
			sl_algo_eval(c->spec, st[i], b->now, 0, &scratch, &c->res);
		}
		b->status = SL_OK;
		b->denied = n;
		b->delay = 0;
		return;
	default: /* SL_OP_PEEK: evaluate at cost 0, commit nothing */
		b->status = SL_OK;
		b->denied = n;
		b->delay = 0;
		for (size_t i = 0; i < n; i++) {
			struct sl_check *c = &b->checks[i];
			int o = sl_algo_eval(c->spec, st[i], b->now, 0, &scratch, &c->res);
			if (o == SL_REJECTED && b->status == SL_OK) {
				b->status = SL_DENY;
				b->denied = i;
			}
		}
		return;
	}
}

/* Refuses (SL_EINVAL, done() not called) a batch of more than
 * SL_TABLE_MAX_KEYS checks, an unknown op or a check without a spec.
 * Otherwise fills the batch and every check's res, calls done() once and
 * returns 0. Thread: any. Bounded work: n hashes and one table update. */
static int mem_submit(struct sl_store *s, struct sl_batch *b)
{
	struct memory_store *m = (struct memory_store *)s;
	struct sl_key128 keys[SL_TABLE_MAX_KEYS];
	struct mem_call mc = {.m = m, .b = b, .keys = keys};

	if (b->n > SL_TABLE_MAX_KEYS || b->op > SL_OP_PEEK || !b->done)
		return SL_EINVAL;
	for (size_t i = 0; i < b->n; i++) {
		if (!b->checks[i].spec || (!b->checks[i].key && b->checks[i].key_len))
			return SL_EINVAL;
		keys[i] = check_key(m, &b->checks[i]);
	}
	mc.on_full = atomic_load_explicit(&m->on_full, memory_order_relaxed);
	mc.adm.keep = mc.on_full != SL_ON_FULL_EVICT;
	int rc = sl_table_update_admit(m->table, keys, b->n, b->now, run_batch, &mc, &mc.adm);
	if (rc < 0)
		return rc;
	b->time = b->now;
	b->done(b);
	return 0;
}

/* states = occupied slots, expired ones included until reused: counting
 * only live ones would walk the whole table. limits[] lists the names with
 * any count, in registration order; past SL_STORE_STATS_LIMITS - 1 names
 * the rest are summed into a last entry "other". Thread: any. */
static void mem_stats(struct sl_store *s, struct sl_store_stats *out)
{
	struct memory_store *m = (struct memory_store *)s;
	struct sl_table_stats ts;
	unsigned nn = atomic_load_explicit(&m->nnames, memory_order_acquire);

	sl_table_stats(m->table, &ts);
	memset(out, 0, sizeof(*out));
	out->states = ts.used;
	out->capacity = ts.capacity;
	out->evictions = ts.evictions;
	out->evictions_usage = ts.evictions_usage;
	out->bytes = ts.bytes;
	for (unsigned i = 0; i < nn; i++) {
		struct sl_table_limit_stats ls;
		struct sl_store_limit_stats e;

		sl_table_limit_stats(m->table, i, &ls);
		e.name = m->names[i];
		e.evicted_usage = ls.evicted_usage;
		e.evicted_idle = ls.evicted_idle;
		e.full_denied = atomic_load_explicit(&m->full[i].denied, memory_order_relaxed);
		e.full_admitted = atomic_load_explicit(&m->full[i].admitted, memory_order_relaxed);
		out->full_denied += e.full_denied;
		out->full_admitted += e.full_admitted;
		if ((e.evicted_usage | e.evicted_idle | e.full_denied | e.full_admitted) == 0)
			continue;
		if (out->nlimits < SL_STORE_STATS_LIMITS) {
			out->limits[out->nlimits++] = e;
			continue;
		}
		struct sl_store_limit_stats *last = &out->limits[SL_STORE_STATS_LIMITS - 1];
		last->name = m->names[0];
		last->evicted_usage += e.evicted_usage;
		last->evicted_idle += e.evicted_idle;
		last->full_denied += e.full_denied;
		last->full_admitted += e.full_admitted;
	}
}

int sl_memory_store_set_on_full(struct sl_store *s, unsigned mode)
{
	struct memory_store *m = (struct memory_store *)s;

	if (mode > SL_ON_FULL_ALLOW_NEW)
		return SL_EINVAL;
	atomic_store_explicit(&m->on_full, (uint8_t)mode, memory_order_relaxed);
	return 0;
}

static void mem_destroy(struct sl_store *s)
{
	struct memory_store *m = (struct memory_store *)s;

	if (!m)
		return;
	sl_table_destroy(m->table);
	pthread_mutex_destroy(&m->save_mu);
	free(m->snap_path);
	pthread_mutex_destroy(&m->reg_lock);
	free(m);
}

static const struct sl_store_ops memory_ops = {
        .name = "memory",
        .submit = mem_submit,
        .stats = mem_stats,
        .destroy = mem_destroy,
};

/* Shards: as many as keep every shard at >= 4096 slots, at most 256, so
 * small tables stay one shard and large ones rarely contend. */
static unsigned pick_shards_log2(uint64_t max_bytes)
{
	unsigned l = 8;
	while (l > 0 && max_bytes / SNAP_ENTRY_BYTES / (1ULL << l) < 4096)
		l--;
	return l;
}

int sl_memory_store_create(struct sl_store **out, uint64_t max_bytes, uint64_t seed)
{
	struct memory_store *m;
	int rc;

	*out = NULL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return SL_ENOMEM;
	m->base.ops = &memory_ops;
	m->seed = seed;
	atomic_init(&m->on_full, SL_ON_FULL_EVICT);
	atomic_init(&m->nnames, 1);
	snprintf(m->names[0], SL_STORE_NAME, "other");
	rc = SL_ENOMEM;
	if (pthread_mutex_init(&m->save_mu, NULL) != 0)
		goto fail;
	if (pthread_mutex_init(&m->reg_lock, NULL) != 0)
		goto fail_save_mu;
	rc = sl_table_create(&m->table, max_bytes, pick_shards_log2(max_bytes));
	if (rc < 0)
		goto fail_lock;
	*out = &m->base;
	return 0;

fail_lock:
	pthread_mutex_destroy(&m->reg_lock);
fail_save_mu:
	pthread_mutex_destroy(&m->save_mu);
fail:
	free(m);
	return rc;
}

int sl_memory_store_open(struct sl_store **out, uint64_t max_bytes, uint64_t seed,
                         const char *snapshot)
{
	int rc = sl_memory_store_create(out, max_bytes, seed);

	if (rc < 0 || !snapshot)
		return rc;
	struct memory_store *m = (struct memory_store *)*out;
	m->snap_path = strdup(snapshot);
	if (!m->snap_path) {
		mem_destroy(*out);
		*out = NULL;
		return SL_ENOMEM;
	}
	return 0;
}

const char *sl_memory_store_path(const struct sl_store *s)
{
	if (!s || s->ops != &memory_ops)
		return NULL;
	return ((const struct memory_store *)s)->snap_path;
}

/* ---- snapshot ---- */

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
	uint32_t v = 0;
	for (int i = 0; i < 4; i++)
		v |= (uint32_t)p[i] << (8 * i);
	return v;
}

static uint64_t get_u64(const unsigned char *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static void put_hdr(unsigned char *h, uint64_t seed, uint64_t count, int64_t now)
{
	memcpy(h, SNAP_MAGIC, 8);
	put_u32(h + 8, SNAP_VERSION);
	put_u32(h + 12, SNAP_ENTRY_BYTES);
	put_u64(h + 16, seed);
	put_u64(h + 24, count);
	put_u64(h + 32, (uint64_t)now);
}

/* fsync the directory holding `path` so the rename itself is durable. */
static int sync_dir(const char *path)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(path, '/');
	size_t len = slash ? (size_t)(slash - path) : 0;

	if (!slash) {
		dir[0] = '.';
		len = 1;
	} else if (len == 0) {
		dir[0] = '/';
		len = 1;
	} else {
		if (len >= sizeof(dir))
			return SL_EINVAL;
		memcpy(dir, path, len);
	}
	dir[len] = '\0';
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return SL_EIO;
	int rc = fsync(fd) == 0 ? 0 : SL_EIO;
	close(fd);
	return rc;
}

/* Encode n entries into buf and append them to f and the digest. */
static int write_entries(FILE *f, XXH3_state_t *xs, const struct sl_table_entry *e, size_t n,
                         unsigned char *buf)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char *p = buf + i * SNAP_ENTRY_BYTES;
		put_u64(p, e[i].key.lo);
		put_u64(p + 8, e[i].key.hi);
		put_u64(p + 16, (uint64_t)e[i].st.expires);
		put_u64(p + 24, e[i].st.v);
	}
	if (n && (fwrite(buf, SNAP_ENTRY_BYTES, n, f) != n ||
	          XXH3_64bits_update(xs, buf, n * SNAP_ENTRY_BYTES)))
		return SL_EIO;
	return 0;
}

/* Copy the table chunk by chunk (one shard lock held per chunk, only
 * while copying) and write each chunk with no lock held. */
static int write_table(struct memory_store *m, FILE *f, XXH3_state_t *xs, int64_t now,
                       uint64_t *count)
{
	struct sl_table_cursor c = {0, 0};
	struct sl_table_entry *ents = malloc(SNAP_SCAN_SLOTS * sizeof(*ents));
	unsigned char *buf = malloc(SNAP_SCAN_SLOTS * SNAP_ENTRY_BYTES);
	size_t n;
	int rc = SL_ENOMEM, more;

	*count = 0;
	if (!ents || !buf)
		goto out;
	do {
		more = sl_table_scan(m->table, &c, now, ents, SNAP_SCAN_SLOTS, &n);
		rc = write_entries(f, xs, ents, n, buf);
		if (rc < 0)
			goto out;
		*count += n;
	} while (more == SL_AGAIN);
	rc = 0;
out:
	free(buf);
	free(ents);
	return rc;
}

static int save_locked(struct memory_store *m, const char *path, int64_t now)
{
	char tmp[PATH_MAX];
	unsigned char hdr[SNAP_HDR_BYTES], tail[SNAP_TAIL_BYTES];
	uint64_t count = 0;
	XXH3_state_t *xs;
	FILE *f;
	int rc = SL_EIO, err;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return SL_EINVAL;
	xs = XXH3_createState();
	if (!xs)
		return SL_ENOMEM;
	f = fopen(tmp, "wbx");
	if (!f && errno == EEXIST) {
		/* A stale temp file of an interrupted save. */
		unlink(tmp);
		f = fopen(tmp, "wbx");
	}
	if (!f)
		goto fail_state;
	put_hdr(hdr, m->seed, 0, now);
	if (fwrite(hdr, sizeof(hdr), 1, f) != 1 || XXH3_64bits_reset(xs))
		goto fail_file;
	rc = write_table(m, f, xs, now, &count);
	if (rc < 0)
		goto fail_file;
	rc = SL_EIO;
	put_hdr(hdr, m->seed, count, now);
	put_u64(tail, XXH3_64bits_withSeed(hdr, sizeof(hdr), XXH3_64bits_digest(xs)));
	if (fwrite(tail, sizeof(tail), 1, f) != 1 || fseek(f, 0, SEEK_SET) != 0 ||
	    fwrite(hdr, sizeof(hdr), 1, f) != 1 || fflush(f) != 0 || fsync(fileno(f)) != 0)
		goto fail_file;
	if (fclose(f) != 0) {
		f = NULL;
		goto fail_file;
	}
	f = NULL;
	if (rename(tmp, path) != 0)
		goto fail_file;
	XXH3_freeState(xs);
	return sync_dir(path);

fail_file:
	err = errno;
	if (f)
		fclose(f);
	unlink(tmp);
	errno = err;
fail_state:
	err = errno;
	XXH3_freeState(xs);
	errno = err;
	return rc;
}

int sl_memory_store_save(struct sl_store *s, const char *path, int64_t now)
{
	struct memory_store *m = (struct memory_store *)s;

	pthread_mutex_lock(&m->save_mu);
	int rc = save_locked(m, path, now);
	int err = errno;
	pthread_mutex_unlock(&m->save_mu);
	errno = err;
	return rc;
}

int sl_store_save(struct sl_store *s, int64_t now)
{
	const char *path = sl_memory_store_path(s);

	return path ? sl_memory_store_save(s, path, now) : 0;
}

/* Sets the state of a restored key (the table claims its slot). */
static void load_one(struct sl_state **st, size_t n, void *arg)
{
	(void)n;
	*st[0] = *(const struct sl_state *)arg;
}

/* Read `count` entries from f (positioned at the first one); with `m`
 * NULL only digest them, else restore the unexpired ones into m. */
/* The key of a restored entry. Version 1 files predate eviction tags:
 * their low 16 bits are hash bits, so read as a tag they could make a
 * state at its limit look idle; such a state gets the rate class at scale
 * 0, whose loss reads as large as its remaining life, until its next use
 * retags it. The name index of a version 2 tag was handed out by the
 * process that saved it, so it reads as "other" (0) until then. */
static struct sl_key128 restored_key(struct sl_key128 k, uint32_t version)
{
	if (version < 2)
		return sl_key_tagged(k, SL_TAG_RATE);
	k.lo &= ~(uint64_t)0xff00;
	return k;
}

static int read_entries(FILE *f, uint64_t count, XXH3_state_t *xs, struct memory_store *m,
                        int64_t now, uint32_t version)
{
	unsigned char buf[SNAP_CHUNK * SNAP_ENTRY_BYTES];

	while (count > 0) {
		size_t k = count < SNAP_CHUNK ? (size_t)count : SNAP_CHUNK;
		if (fread(buf, SNAP_ENTRY_BYTES, k, f) != k)
			return SL_EPROTO;
		if (xs && XXH3_64bits_update(xs, buf, k * SNAP_ENTRY_BYTES))
			return SL_ENOMEM;
		for (size_t i = 0; m && i < k; i++) {
			const unsigned char *e = buf + i * SNAP_ENTRY_BYTES;
			struct sl_key128 key = restored_key(
			        (struct sl_key128){get_u64(e), get_u64(e + 8)}, version);
			struct sl_state st = {(int64_t)get_u64(e + 16), get_u64(e + 24)};
			if (st.expires <= now)
				continue;
			int rc = sl_table_update(m->table, &key, 1, now, load_one, &st);
			if (rc < 0)
				return rc;
		}
		count -= k;
	}
	return 0;
}

int sl_memory_store_load(struct sl_store *s, const char *path, int64_t now)
{
	struct memory_store *m = (struct memory_store *)s;
	unsigned char hdr[SNAP_HDR_BYTES], tail[SNAP_TAIL_BYTES];
	struct stat sb;
	XXH3_state_t *xs = NULL;
	int rc;

	FILE *f = fopen(path, "rb");
	if (!f)
		return errno == ENOENT || errno == ENOTDIR ? SL_ENOENT : SL_EIO;
	rc = SL_EIO;
	if (fstat(fileno(f), &sb) != 0)
		goto out;
	if (!S_ISREG(sb.st_mode)) {
		errno = S_ISDIR(sb.st_mode) ? EISDIR : EINVAL;
		goto out;
	}
	rc = SL_EPROTO;
	if (fread(hdr, sizeof(hdr), 1, f) != 1 || memcmp(hdr, SNAP_MAGIC, 8) != 0 ||
	    get_u32(hdr + 8) < 1 || get_u32(hdr + 8) > SNAP_VERSION ||
	    get_u32(hdr + 12) != SNAP_ENTRY_BYTES)
		goto out;
	uint32_t version = get_u32(hdr + 8);
	uint64_t count = get_u64(hdr + 24);
	uint64_t body = (uint64_t)sb.st_size - SNAP_HDR_BYTES;
	if (body < SNAP_TAIL_BYTES || (body - SNAP_TAIL_BYTES) / SNAP_ENTRY_BYTES != count ||
	    (body - SNAP_TAIL_BYTES) % SNAP_ENTRY_BYTES != 0)
		goto out;
	/* Pass 1 checks the whole file, so a bad one restores nothing. */
	rc = SL_ENOMEM;
	xs = XXH3_createState();
	if (!xs || XXH3_64bits_reset(xs))
		goto out;
	rc = read_entries(f, count, xs, NULL, now, version);
	if (rc < 0)
		goto out;
	rc = SL_EPROTO;
	if (fread(tail, sizeof(tail), 1, f) != 1 ||
	    get_u64(tail) != XXH3_64bits_withSeed(hdr, sizeof(hdr), XXH3_64bits_digest(xs)))
		goto out;
	/* Intact. Its hashes were made under its seed: an empty store takes
	 * that seed over (a restart restores its snapshot with nothing else to
	 * keep), a store holding states of its own refuses the file. */
	if (get_u64(hdr + 16) != m->seed) {
		struct sl_table_stats ts;

		sl_table_stats(m->table, &ts);
		rc = SL_EINVAL;
		if (ts.used != 0)
			goto out;
		m->seed = get_u64(hdr + 16);
	}
	rc = SL_EIO;
	if (fseek(f, SNAP_HDR_BYTES, SEEK_SET) != 0)
		goto out;
	rc = read_entries(f, count, NULL, m, now, version);
out:
	XXH3_freeState(xs);
	fclose(f);
	return rc;
}

/* Rename the damaged file `path` to the first free PATH.corrupt[.N],
 * never replacing an existing file: 0 with its name in aside, or SL_EIO
 * (errno set). */
static int keep_aside(const char *path, char *aside, size_t cap)
{
	for (unsigned i = 0; i < SNAP_ASIDE_MAX; i++) {
		int w = i == 0 ? snprintf(aside, cap, "%s.corrupt", path)
		               : snprintf(aside, cap, "%s.corrupt.%u", path, i);
		if (w < 0 || (size_t)w >= cap) {
			errno = ENAMETOOLONG;
			return SL_EIO;
		}
		if (renameat2(AT_FDCWD, path, AT_FDCWD, aside, RENAME_NOREPLACE) == 0) {
			(void)sync_dir(path); /* moved either way */
			return 0;
		}
		if (errno == EEXIST)
			continue;
		if (errno != EINVAL && errno != ENOSYS)
			return SL_EIO;
		/* A file system without RENAME_NOREPLACE: link, then unlink. */
		if (link(path, aside) == 0)
			return unlink(path) == 0 ? 0 : SL_EIO;
		if (errno != EEXIST)
			return SL_EIO;
	}
	errno = EEXIST;
	return SL_EIO;
}

int sl_memory_store_restore(struct sl_store *s, int64_t now, char *aside, size_t cap)
{
	struct memory_store *m = (struct memory_store *)s;

	aside[0] = '\0';
	if (!m->snap_path)
		return SL_ENOENT;
	int rc = sl_memory_store_load(s, m->snap_path, now);
	if (rc != SL_EPROTO && rc != SL_EINVAL)
		return rc;
	if (keep_aside(m->snap_path, aside, cap) < 0)
		aside[0] = '\0';
	return rc;
}
