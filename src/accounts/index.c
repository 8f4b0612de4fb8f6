/* The in-memory account index: API keys by SHA-256 and accounts by name,
 * in two open-addressed tables of pointers, read lock-free by every
 * worker and changed by one writer thread.
 *
 * The decision to know: readers never lock and never write a shared line.
 * A reader announces the global epoch in its own slot (one cache line per
 * thread) for the few loads of a lookup and copies what it needs out; the
 * writer publishes each change with one atomic pointer store (a record
 * replaced, a table grown), tags what it unlinked with the epoch, bumps
 * the epoch, and frees a thing only once no slot announces an epoch at or
 * below its tag. Nothing a lookup returns points into the index, so an
 * evaluation may outlive the read section by any amount. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>
#include <sluice/error.h>
#include "accounts/accounts.h"

#define SLAB_CHUNK 4096 /* records per chunk */

enum { R_KEY = 1, R_CELL, R_ACCOUNT, R_TABLE };

static struct sl_acx_key tomb_key;
static struct sl_acx_cell tomb_cell;
#define TOMB_KEY  ((void *)&tomb_key)
#define TOMB_CELL ((void *)&tomb_cell)

/* ---- reader slots ---- */

static _Atomic unsigned next_tid;
static __thread unsigned my_tid; /* 1-based; 0: not assigned yet */

static unsigned tid(void)
{
	if (my_tid == 0)
		my_tid = atomic_fetch_add(&next_tid, 1) + 1;
	return my_tid - 1;
}

/* Enter a read section: returns the slot to leave with (NULL: the shared
 * slow counter was taken instead). */
static struct sl_acx_reader *enter(struct sl_acx *x)
{
	unsigned t = tid();

	if (t < SL_ACX_READERS) {
		struct sl_acx_reader *r = &x->readers[t];
		atomic_store(&r->epoch, atomic_load(&x->epoch));
		return r;
	}
	atomic_fetch_add(&x->slow_readers, 1);
	return NULL;
}

static void leave(struct sl_acx *x, struct sl_acx_reader *r)
{
	if (r != NULL)
		atomic_store_explicit(&r->epoch, 0, memory_order_release);
	else
		atomic_fetch_sub(&x->slow_readers, 1);
}

/* ---- slabs ---- */

static void slab_init(struct sl_acx_slab *s, size_t size)
{
	memset(s, 0, sizeof(*s));
	s->size = size;
}

static void *slab_alloc(struct sl_acx_slab *s)
{
	void *p;

	if (s->free != NULL) {
		p = s->free;
		memcpy(&s->free, p, sizeof(void *));
		return p;
	}
	if (s->left == 0) {
		if (s->nchunks == s->capchunks) {
			size_t cap = s->capchunks ? s->capchunks * 2 : 16;
			void **nc = realloc(s->chunks, cap * sizeof(*nc));
			if (nc == NULL)
				return NULL;
			s->chunks = nc;
			s->capchunks = cap;
		}
		s->cur = malloc(s->size * SLAB_CHUNK);
		if (s->cur == NULL)
			return NULL;
		s->chunks[s->nchunks++] = s->cur;
		s->left = SLAB_CHUNK;
	}
	p = s->cur;
	s->cur += s->size;
	s->left--;
	return p;
}

static void slab_free(struct sl_acx_slab *s, void *p)
{
	memcpy(p, &s->free, sizeof(void *));
	s->free = p;
}

static void slab_destroy(struct sl_acx_slab *s)
{
	for (size_t i = 0; i < s->nchunks; i++)
		free(s->chunks[i]);
	free(s->chunks);
	memset(s, 0, sizeof(*s));
}

/* ---- retirement ---- */

static void free_now(struct sl_acx *x, void *p, uint8_t kind)
{
	switch (kind) {
	case R_KEY:
		slab_free(&x->key_slab, p);
		break;
	case R_CELL:
		slab_free(&x->cell_slab, p);
		break;
	default:
		free(p);
		break;
	}
}

/* Unlinked p: free it once no reader can hold it. On no memory for the
 * list, wait for the readers now (bounded: a read section is a few loads). */
static void retire(struct sl_acx *x, void *p, uint8_t kind)
{
	if (p == NULL)
		return;
	if (x->nretired == x->capretired) {
		size_t cap = x->capretired ? x->capretired * 2 : 64;
		struct sl_acx_retired *nr = realloc(x->retired, cap * sizeof(*nr));
		if (nr == NULL) {
			uint64_t e = atomic_fetch_add(&x->epoch, 1);
			for (;;) {
				bool busy = atomic_load(&x->slow_readers) != 0;
				for (unsigned i = 0; i < SL_ACX_READERS && !busy; i++) {
					uint64_t re = atomic_load(&x->readers[i].epoch);
					busy = re != 0 && re <= e;
				}
				if (!busy)
					break;
			}
			free_now(x, p, kind);
			return;
		}
		x->retired = nr;
		x->capretired = cap;
	}
	x->retired[x->nretired++] =
	        (struct sl_acx_retired){p, kind, atomic_fetch_add(&x->epoch, 1)};
}

size_t sl_acx_reclaim(struct sl_acx *x)
{
	uint64_t oldest = UINT64_MAX;
	size_t freed = 0, n = 0;

	if (x->nretired == 0 || atomic_load(&x->slow_readers) != 0)
		return 0;
	for (unsigned i = 0; i < SL_ACX_READERS; i++) {
		uint64_t e = atomic_load(&x->readers[i].epoch);
		if (e != 0 && e < oldest)
			oldest = e;
	}
	for (size_t i = 0; i < x->nretired; i++) {
		if (x->retired[i].epoch < oldest) {
			free_now(x, x->retired[i].p, x->retired[i].kind);
			freed++;
		} else {
			x->retired[n++] = x->retired[i];
		}
	}
	x->nretired = n;
	return freed;
}

/* ---- tables ---- */

static struct sl_acx_table *table_new(size_t cap)
{
	struct sl_acx_table *t = calloc(1, sizeof(*t) + cap * sizeof(t->slot[0]));
	if (t != NULL)
		t->mask = cap - 1;
	return t;
}

static size_t cap_for(size_t n)
{
	size_t cap = 16;
	while (cap * 7 / 10 < n + 1)
		cap *= 2;
	return cap;
}

static uint64_t key_hash(const uint8_t sha[32])
{
	uint64_t h;
	memcpy(&h, sha, sizeof(h)); /* a SHA-256 is uniform already */
	return h;
}

static uint64_t name_hash(const struct sl_acx *x, const char *name, size_t len)
{
	return XXH3_64bits_withSeed(name, len, x->seed);
}

static size_t acc_head(unsigned nover)
{
	size_t head = sizeof(struct sl_acx_account) + nover * sizeof(struct sl_live_override);
	return (head + 7) & ~(size_t)7;
}

/* "name\0plan\0" of a, after its overrides */
static const char *acc_text(const struct sl_acx_account *a)
{
	return (const char *)a + acc_head(a->nover);
}

static size_t acc_size(const struct sl_acx_account *a)
{
	return acc_head(a->nover) + a->name_len + a->plan_len + 2;
}

static const char *cell_name(struct sl_acx_cell *c, size_t *len)
{
	const struct sl_acx_account *a = atomic_load_explicit(&c->cur, memory_order_acquire);
	if (a == NULL)
		return NULL;
	*len = a->name_len;
	return acc_text(a);
}

/* Rebuild table *which (keys or names) with room for `want` live entries;
 * the old table is retired. Returns 0 or SL_ENOMEM (old table kept). */
static int rebuild(struct sl_acx *x, bool keys, size_t want)
{
	_Atomic(struct sl_acx_table *) *tp = keys ? &x->keys : &x->names;
	struct sl_acx_table *old = atomic_load(tp), *t = table_new(cap_for(want));

	if (t == NULL)
		return SL_ENOMEM;
	for (size_t i = 0; old != NULL && i <= old->mask; i++) {
		void *p = atomic_load_explicit(&old->slot[i], memory_order_relaxed);
		uint64_t h;
		if (p == NULL || p == TOMB_KEY || p == TOMB_CELL)
			continue;
		if (keys) {
			h = key_hash(((struct sl_acx_key *)p)->sha256);
		} else {
			size_t len = 0;
			const char *nm = cell_name(p, &len);
			h = name_hash(x, nm, len);
		}
		for (size_t j = h & t->mask;; j = (j + 1) & t->mask)
			if (atomic_load_explicit(&t->slot[j], memory_order_relaxed) == NULL) {
				atomic_store_explicit(&t->slot[j], p, memory_order_relaxed);
				break;
			}
	}
	atomic_store_explicit(tp, t, memory_order_release);
	if (keys)
		x->keys_used = x->nkeys;
	else
		x->names_used = x->naccounts;
	retire(x, old, R_TABLE);
	return 0;
}

/* Room for one more entry in table keys/names. */
static int make_room(struct sl_acx *x, bool keys)
{
	struct sl_acx_table *t = atomic_load(keys ? &x->keys : &x->names);
	size_t used = keys ? x->keys_used : x->names_used;
	size_t live = keys ? x->nkeys : x->naccounts;

	if ((used + 1) * 10 <= (t->mask + 1) * 7)
		return 0;
	return rebuild(x, keys, live * 2 > used ? live * 2 : live + 1);
}

/* Slot index of sha in t, or -1; *free_at the first reusable slot. */
static long find_key(struct sl_acx_table *t, const uint8_t sha[32], long *free_at)
{
	*free_at = -1;
	for (size_t i = key_hash(sha) & t->mask;; i = (i + 1) & t->mask) {
		struct sl_acx_key *k = atomic_load_explicit(&t->slot[i], memory_order_acquire);
		if (k == NULL) {
			if (*free_at < 0)
				*free_at = (long)i;
			return -1;
		}
		if (k == TOMB_KEY) {
			if (*free_at < 0)
				*free_at = (long)i;
			continue;
		}
		if (memcmp(k->sha256, sha, 32) == 0)
			return (long)i;
	}
}

static long find_name(struct sl_acx *x, struct sl_acx_table *t, const char *name, size_t len,
                      long *free_at)
{
	*free_at = -1;
	for (size_t i = name_hash(x, name, len) & t->mask;; i = (i + 1) & t->mask) {
		struct sl_acx_cell *c = atomic_load_explicit(&t->slot[i], memory_order_acquire);
		size_t n = 0;
		const char *nm;
		if (c == NULL) {
			if (*free_at < 0)
				*free_at = (long)i;
			return -1;
		}
		if (c == TOMB_CELL) {
			if (*free_at < 0)
				*free_at = (long)i;
			continue;
		}
		nm = cell_name(c, &n);
		if (nm != NULL && n == len && memcmp(nm, name, len) == 0)
			return (long)i;
	}
}

/* ---- life ---- */

int sl_acx_init(struct sl_acx *x)
{
	struct sl_acx_table *k, *n;

	memset(x, 0, sizeof(*x));
	atomic_init(&x->epoch, 1);
	if (getrandom(&x->seed, sizeof(x->seed), 0) != sizeof(x->seed))
		x->seed = (uint64_t)(uintptr_t)x * 0x9e3779b97f4a7c15ull;
	slab_init(&x->key_slab, sizeof(struct sl_acx_key));
	slab_init(&x->cell_slab, sizeof(struct sl_acx_cell));
	k = table_new(16);
	n = table_new(16);
	if (k == NULL || n == NULL) {
		free(k);
		free(n);
		return SL_ENOMEM;
	}
	atomic_init(&x->keys, k);
	atomic_init(&x->names, n);
	return 0;
}

int sl_acx_reserve(struct sl_acx *x, size_t naccounts, size_t nkeys)
{
	struct sl_acx_table *k = atomic_load(&x->keys), *n = atomic_load(&x->names);
	int rc = 0;

	if (cap_for(nkeys) > k->mask + 1)
		rc = rebuild(x, true, nkeys);
	if (rc == 0 && cap_for(naccounts) > n->mask + 1)
		rc = rebuild(x, false, naccounts);
	return rc;
}

void sl_acx_destroy(struct sl_acx *x)
{
	struct sl_acx_table *n = atomic_load(&x->names);

	/* no reader is left: free everything */
	for (size_t i = 0; i < x->nretired; i++)
		free_now(x, x->retired[i].p, x->retired[i].kind);
	free(x->retired);
	for (size_t i = 0; n != NULL && i <= n->mask; i++) {
		struct sl_acx_cell *c = atomic_load(&n->slot[i]);
		if (c != NULL && c != TOMB_CELL)
			free(atomic_load(&c->cur));
	}
	free(atomic_load(&x->keys));
	free(n);
	slab_destroy(&x->key_slab);
	slab_destroy(&x->cell_slab);
}

/* ---- writer ---- */

static struct sl_acx_account *account_new(const char *name, size_t len, const char *plan,
                                          bool suspended, const struct sl_live_override *ov,
                                          unsigned nov, size_t *bytes)
{
	size_t plen = strlen(plan), head = acc_head(nov);
	struct sl_acx_account *a;

	if (len > SL_LIVE_NAME_MAX || plen > SL_LIVE_PLAN_MAX || nov > SL_LIVE_OVERRIDES)
		return NULL;
	*bytes = head + len + plen + 2;
	a = malloc(*bytes);
	if (a == NULL)
		return NULL;
	a->name_len = (uint8_t)len;
	a->plan_len = (uint8_t)plen;
	a->nover = (uint8_t)nov;
	a->suspended = suspended;
	a->over = nov ? (struct sl_live_override *)(a + 1) : NULL;
	if (nov)
		memcpy(a->over, ov, nov * sizeof(*ov));
	char *text = (char *)a + head;
	memcpy(text, name, len);
	text[len] = '\0';
	memcpy(text + len + 1, plan, plen + 1);
	return a;
}

int sl_acx_put_account(struct sl_acx *x, const char *name, size_t len, const char *plan,
                       bool suspended, const struct sl_live_override *ov, unsigned nov)
{
	struct sl_acx_table *t;
	struct sl_acx_account *a, *old;
	struct sl_acx_cell *c;
	size_t bytes;
	long at, fr;

	if (len == 0 || make_room(x, false) != 0)
		return SL_ENOMEM;
	a = account_new(name, len, plan, suspended, ov, nov, &bytes);
	if (a == NULL)
		return len > SL_LIVE_NAME_MAX ? SL_EINVAL : SL_ENOMEM;
	t = atomic_load(&x->names);
	at = find_name(x, t, name, len, &fr);
	if (at >= 0) {
		c = atomic_load(&t->slot[at]);
		old = atomic_load(&c->cur);
		atomic_store_explicit(&c->cur, a, memory_order_release);
		x->account_bytes += bytes;
		x->account_bytes -= old ? acc_size(old) : 0;
		retire(x, old, R_ACCOUNT);
		return 0;
	}
	c = slab_alloc(&x->cell_slab);
	if (c == NULL) {
		free(a);
		return SL_ENOMEM;
	}
	c->nkeys = 0;
	c->dead = false;
	atomic_init(&c->cur, a);
	if (atomic_load(&t->slot[fr]) == NULL)
		x->names_used++;
	atomic_store_explicit(&t->slot[fr], c, memory_order_release);
	x->naccounts++;
	x->account_bytes += bytes;
	return 0;
}

static void cell_maybe_free(struct sl_acx *x, struct sl_acx_cell *c)
{
	if (c->dead && c->nkeys == 0)
		retire(x, c, R_CELL);
}

int sl_acx_del_account(struct sl_acx *x, const char *name, size_t len)
{
	struct sl_acx_table *t = atomic_load(&x->names);
	struct sl_acx_cell *c;
	struct sl_acx_account *old;
	long at, fr;

	at = find_name(x, t, name, len, &fr);
	if (at < 0)
		return SL_ENOENT;
	c = atomic_load(&t->slot[at]);
	atomic_store_explicit(&t->slot[at], TOMB_CELL, memory_order_release);
	old = atomic_load(&c->cur);
	atomic_store_explicit(&c->cur, NULL, memory_order_release);
	x->account_bytes -= old ? acc_size(old) : 0;
	retire(x, old, R_ACCOUNT);
	c->dead = true;
	x->naccounts--;
	cell_maybe_free(x, c);
	return 0;
}

int sl_acx_put_key(struct sl_acx *x, const uint8_t sha256[32], const char *name, size_t len,
                   int64_t until)
{
	struct sl_acx_table *t, *nt = atomic_load(&x->names);
	struct sl_acx_key *k, *old = NULL;
	struct sl_acx_cell *c;
	long at, fr;

	at = find_name(x, nt, name, len, &fr);
	if (at < 0)
		return SL_ENOENT;
	c = atomic_load(&nt->slot[at]);
	if (make_room(x, true) != 0)
		return SL_ENOMEM;
	k = slab_alloc(&x->key_slab);
	if (k == NULL)
		return SL_ENOMEM;
	memcpy(k->sha256, sha256, 32);
	k->cell = c;
	k->until = until;
	t = atomic_load(&x->keys);
	at = find_key(t, sha256, &fr);
	if (at >= 0) {
		old = atomic_load(&t->slot[at]);
		fr = at;
	} else {
		if (atomic_load(&t->slot[fr]) == NULL)
			x->keys_used++;
		x->nkeys++;
	}
	c->nkeys++;
	atomic_store_explicit(&t->slot[fr], k, memory_order_release);
	if (old != NULL) {
		old->cell->nkeys--;
		cell_maybe_free(x, old->cell);
		retire(x, old, R_KEY);
	}
	return 0;
}

int sl_acx_del_key(struct sl_acx *x, const uint8_t sha256[32])
{
	struct sl_acx_table *t = atomic_load(&x->keys);
	struct sl_acx_key *k;
	long at, fr;

	at = find_key(t, sha256, &fr);
	if (at < 0)
		return SL_ENOENT;
	k = atomic_load(&t->slot[at]);
	atomic_store_explicit(&t->slot[at], TOMB_KEY, memory_order_release);
	x->nkeys--;
	k->cell->nkeys--;
	cell_maybe_free(x, k->cell);
	retire(x, k, R_KEY);
	return 0;
}

/* ---- readers ---- */

static void copy_out(const struct sl_acx_account *a, struct sl_live_account *out)
{
	const char *text = acc_text(a);

	memcpy(out->name, text, a->name_len);
	out->name[a->name_len] = '\0';
	out->name_len = a->name_len;
	memcpy(out->plan, text + a->name_len + 1, (size_t)a->plan_len + 1);
	out->suspended = a->suspended;
	out->nover = a->nover;
	if (a->nover)
		memcpy(out->over, a->over, a->nover * sizeof(*a->over));
}

int sl_acx_by_key(struct sl_acx *x, const uint8_t sha256[32], int64_t now,
                  struct sl_live_account *out)
{
	struct sl_acx_reader *r = enter(x);
	struct sl_acx_table *t = atomic_load_explicit(&x->keys, memory_order_acquire);
	int found = 0;
	long fr, at = find_key(t, sha256, &fr);

	if (at >= 0) {
		struct sl_acx_key *k = atomic_load_explicit(&t->slot[at], memory_order_acquire);
		if (k != TOMB_KEY && k != NULL && k->until > now) {
			struct sl_acx_account *a =
			        atomic_load_explicit(&k->cell->cur, memory_order_acquire);
			if (a != NULL) {
				copy_out(a, out);
				found = 1;
			}
		}
	}
	leave(x, r);
	return found;
}

int sl_acx_by_name(struct sl_acx *x, const char *name, size_t len, struct sl_live_account *out)
{
	struct sl_acx_reader *r = enter(x);
	struct sl_acx_table *t = atomic_load_explicit(&x->names, memory_order_acquire);
	int found = 0;
	long fr, at = find_name(x, t, name, len, &fr);

	if (at >= 0) {
		struct sl_acx_cell *c = atomic_load_explicit(&t->slot[at], memory_order_acquire);
		struct sl_acx_account *a;
		if (c != TOMB_CELL && c != NULL &&
		    (a = atomic_load_explicit(&c->cur, memory_order_acquire)) != NULL) {
			copy_out(a, out);
			found = 1;
		}
	}
	leave(x, r);
	return found;
}

size_t sl_acx_bytes(const struct sl_acx *x)
{
	struct sl_acx_table *k = atomic_load(&((struct sl_acx *)x)->keys);
	struct sl_acx_table *n = atomic_load(&((struct sl_acx *)x)->names);

	return (k->mask + 1 + n->mask + 1) * sizeof(void *) +
	       x->key_slab.nchunks * SLAB_CHUNK * x->key_slab.size +
	       x->cell_slab.nchunks * SLAB_CHUNK * x->cell_slab.size + x->account_bytes;
}
