/* One SLUICE.CALL: the decide (D) and peek (P) groups of exact mode, run
 * with the algorithms of src/core (sl_decide, sl_algo_eval) on the values
 * the Lua library keeps (src/store/redis_lib.lua), so either may serve any
 * call on the same keys. A value is a version byte (3), the key's TTL
 * deadline (ms since the epoch) and per limit 32 bytes: the low 53 bits
 * of its id, its expiry as ns before the deadline, and its two numbers
 * (x, y: a sliding limit's previous and current counts, else the state's
 * v and 0), all int64 little-endian. Anything else in a call (another
 * group, a value of the text layout, a spec the core would not build) is
 * refused before a key is written, and the client sends that call to the
 * Lua library instead. State is static: Redis runs one command at a time
 * on its main thread. */
#include <endian.h>
#include <string.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include "redismod/call.h"

#define VER        3
#define HDR        9  /* version, deadline */
#define ENT        32 /* id, d, x, y */
#define ID_MASK    ((1ULL << 53) - 1)
#define KEEP_MIN   1000                 /* ms a key outlives its last state, at least */
#define DROP_AFTER (60 * SL_NS_PER_SEC) /* ns: an entry expired this long is dropped */
#define MAX_FIELDS (2 + 5 * SL_RM_MAX_CHECKS)
#define MAX_VALUE  (HDR + ENT * SL_RM_MAX_ENTRIES)
#define MAX_DL     ((1LL << 62) / 1000000) /* ms: a deadline read */
#define MAX_D      (1LL << 61)             /* ns: an entry's distance to it */
#define OP_D       'D'
#define OP_P       'P'

struct ent {
	uint64_t id;     /* low 53 bits */
	int64_t expires; /* ns since the epoch */
	int64_t x, y;
	int32_t next; /* the key's next entry, -1: last */
	bool conv;    /* st holds the state (x, y converted for algo) */
	uint8_t algo;
	struct sl_state st;
};

struct key {
	int32_t canon; /* the first key of the call with this name */
	bool loaded, had, dirty;
	int64_t dl;         /* the value's deadline (ms), when had */
	int32_t head, tail; /* entries, -1: none */
};

struct spec {
	bool ok;
	uint64_t id;
	struct sl_limit_spec sp;
};

static struct key keys[SL_RM_MAX_KEYS];
static struct ent ents[SL_RM_MAX_ENTRIES];
static size_t nents;
static struct spec specs[SL_RM_MAX_SPECS + 1];
static struct sl_decide_item items[SL_RM_MAX_CHECKS];
static struct sl_state scratch[SL_RM_MAX_CHECKS];
static int32_t item_ent[SL_RM_MAX_CHECKS];
static int32_t item_key[SL_RM_MAX_CHECKS];
static const struct spec *item_spec[SL_RM_MAX_CHECKS];
static uint64_t fields[MAX_FIELDS];
static size_t nfields;
static unsigned char vbuf[MAX_VALUE];

static uint64_t get_le(const unsigned char *p, size_t n)
{
	uint64_t v = 0;

	for (size_t i = n; i-- > 0;)
		v = (v << 8) | p[i];
	return v;
}

static void put_le64(unsigned char *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* ---- arguments ---- */

struct rd {
	const unsigned char *p;
	size_t n, at;
};

static bool rd_take(struct rd *r, size_t n, uint64_t *v)
{
	if (r->n - r->at < n)
		return false;
	*v = get_le(r->p + r->at, n);
	r->at += n;
	return true;
}

/* A decimal integer of s from *i up to the byte stop, which it passes:
 * its magnitude and sign. */
static bool digits(const struct sl_rm_str *s, size_t *i, char stop, uint64_t *v, bool *neg)
{
	size_t d = 0;

	*v = 0;
	*neg = *i < s->len && s->p[*i] == '-';
	if (*neg)
		(*i)++;
	for (; *i < s->len && s->p[*i] != stop; (*i)++, d++) {
		unsigned c = (unsigned)((unsigned char)s->p[*i] - '0');

		if (c > 9 || *v > (UINT64_MAX - c) / 10)
			return false;
		*v = *v * 10 + c;
	}
	if (d == 0 || *i >= s->len)
		return false;
	(*i)++;
	return true;
}

static bool unum(const struct sl_rm_str *s, size_t *i, char stop, uint64_t *out)
{
	bool neg;

	return digits(s, i, stop, out, &neg) && !neg;
}

static bool snum(const struct sl_rm_str *s, size_t *i, char stop, int64_t *out)
{
	uint64_t v;
	bool neg;

	if (!digits(s, i, stop, &v, &neg) || v > (uint64_t)INT64_MAX)
		return false;
	*out = neg ? -(int64_t)v : (int64_t)v;
	return true;
}

/* "algo n period interval burst queue calendar tz|limit id hex", as the
 * client formats it (src/store/redis_proto.c); built again with the core's
 * constructor and refused unless every field agrees, so the algorithms
 * only ever see a spec they made. */
static bool parse_spec(const struct sl_rm_str *s, struct spec *out)
{
	int64_t period, interval, tz;
	uint64_t algo, n, burst, queue, cal, id = 0;
	struct sl_limit_spec sp;
	size_t i = 0, digits = 0;
	int rc;

	if (!unum(s, &i, ' ', &algo) || !unum(s, &i, ' ', &n) || !snum(s, &i, ' ', &period) ||
	    !snum(s, &i, ' ', &interval) || !unum(s, &i, ' ', &burst) ||
	    !unum(s, &i, ' ', &queue) || !unum(s, &i, ' ', &cal) || !snum(s, &i, '|', &tz))
		return false;
	for (; i < s->len; i++, digits++) {
		char c = s->p[i];
		unsigned d = c >= '0' && c <= '9'   ? (unsigned)(c - '0')
		             : c >= 'a' && c <= 'f' ? (unsigned)(c - 'a' + 10)
		                                    : 16;

		if (d == 16 || digits == 16)
			return false;
		id = (id << 4) | d;
	}
	if (digits == 0 || cal > 255 || tz < INT32_MIN || tz > INT32_MAX)
		return false;
	memset(&sp, 0, sizeof(sp));
	switch (algo) {
	case SL_ALGO_RATE:
		rc = sl_spec_rate(&sp, n, period, burst, queue);
		break;
	case SL_ALGO_QUOTA:
		rc = sl_spec_quota(&sp, n, (uint8_t)cal, (int32_t)tz);
		break;
	case SL_ALGO_SLIDING:
		rc = sl_spec_sliding(&sp, n, period);
		break;
	case SL_ALGO_CONCURRENCY:
		rc = sl_spec_concurrency(&sp, n, period);
		break;
	case SL_ALGO_UNLIMITED:
		sl_spec_unlimited(&sp);
		rc = 0;
		break;
	default: /* the library denies any other algorithm */
		sl_spec_deny(&sp);
		rc = 0;
		break;
	}
	if (rc != 0)
		return false;
	if (algo >= SL_ALGO_RATE && algo <= SL_ALGO_CONCURRENCY &&
	    (sp.n != n || sp.period != period || sp.interval != interval || sp.burst != burst ||
	     sp.queue != queue || sp.calendar != cal || sp.tz_offset != tz))
		return false;
	out->ok = true;
	out->id = id & ID_MASK;
	out->sp = sp;
	return true;
}

static bool stateful(uint8_t algo)
{
	return algo >= SL_ALGO_RATE && algo <= SL_ALGO_CONCURRENCY;
}

/* ---- values ---- */

static int32_t ent_add(struct key *k, uint64_t id, int64_t expires, int64_t x, int64_t y)
{
	struct ent *e;

	if (nents >= SL_RM_MAX_ENTRIES)
		return -1;
	e = &ents[nents];
	memset(e, 0, sizeof(*e));
	e->id = id;
	e->expires = expires;
	e->x = x;
	e->y = y;
	e->next = -1;
	if (k->tail >= 0)
		ents[k->tail].next = (int32_t)nents;
	else
		k->head = (int32_t)nents;
	k->tail = (int32_t)nents;
	return (int32_t)nents++;
}

static const char *load(const struct sl_rm_io *io, struct key *k, size_t ki)
{
	const unsigned char *v;
	size_t len;

	k->loaded = true;
	if (io->get(io->u, ki, &v, &len) != 0)
		return "SLUICEPROTO a key holds no string";
	if (!v)
		return NULL;
	if (len < HDR || v[0] != VER || (len - HDR) % ENT != 0)
		return "SLUICEPROTO a value of another layout";
	k->had = true;
	k->dl = (int64_t)get_le(v + 1, 8);
	/* (bounds that keep every expiry and the arithmetic on it in int64:
	 * any client may write a key) */
	if (k->dl < 0 || k->dl > MAX_DL)
		return "SLUICEPROTO a value of another layout";
	for (size_t o = HDR; o < len; o += ENT) {
		int64_t d = (int64_t)get_le(v + o + 8, 8);

		if (d < -MAX_D || d > MAX_D)
			return "SLUICEPROTO a value of another layout";
		if (ent_add(k, get_le(v + o, 8) & ID_MASK, k->dl * 1000000 - d,
		            (int64_t)get_le(v + o + 16, 8), (int64_t)get_le(v + o + 24, 8)) < 0)
			return "SLUICEPROTO too many limit states";
	}
	return NULL;
}

/* The state of entry e for algo (converted once). */
static struct sl_state *ent_state(struct ent *e, uint8_t algo)
{
	if (!e->conv) {
		uint64_t x = (uint64_t)e->x, y = (uint64_t)e->y;

		e->conv = true;
		e->algo = algo;
		e->st.expires = e->expires;
		if (algo == SL_ALGO_SLIDING)
			e->st.v = ((x > 0xffffffffu ? 0xffffffffu : x) << 32) |
			          (y > 0xffffffffu ? 0xffffffffu : y);
		else
			e->st.v = x;
	}
	return &e->st;
}

/* Entry index of limit id in key k, added fresh when missing and add. */
static int32_t ent_find(struct key *k, uint64_t id, bool add)
{
	for (int32_t i = k->head; i >= 0; i = ents[i].next)
		if (ents[i].id == id)
			return i;
	return add ? ent_add(k, id, 0, 0, 0) : -1;
}

/* Write key ki (canonical) as the library's store() does: entries expired
 * for DROP_AFTER go, a key with no live state is deleted, and the deadline
 * is kept when it covers the last expiry, else set past it by a quarter of
 * the time to it (at least KEEP_MIN). */
static int store(const struct sl_rm_io *io, struct key *k, size_t ki, int64_t now)
{
	int64_t mx = 0, need, dl;
	size_t len = HDR;
	bool keep;

	for (int32_t i = k->head; i >= 0; i = ents[i].next) {
		struct ent *e = &ents[i];

		if (e->conv) {
			e->expires = e->st.expires;
			if (e->algo == SL_ALGO_SLIDING) {
				e->x = (int64_t)(e->st.v >> 32);
				e->y = (int64_t)(e->st.v & 0xffffffffu);
			} else {
				e->x = (int64_t)e->st.v;
				e->y = 0;
			}
		}
		if (e->expires - now > mx)
			mx = e->expires - now;
	}
	if (mx <= 0)
		return k->had ? io->del(io->u, ki) : 0;
	need = (now + mx + 999999) / 1000000;
	keep = k->had && k->dl >= need;
	dl = keep ? k->dl : need + (mx / 4000000 > KEEP_MIN ? mx / 4000000 : KEEP_MIN);
	vbuf[0] = VER;
	put_le64(vbuf + 1, (uint64_t)dl);
	for (int32_t i = k->head; i >= 0; i = ents[i].next) {
		struct ent *e = &ents[i];

		if (e->expires <= now - DROP_AFTER)
			continue;
		put_le64(vbuf + len, e->id);
		put_le64(vbuf + len + 8, (uint64_t)(dl * 1000000 - e->expires));
		put_le64(vbuf + len + 16, (uint64_t)e->x);
		put_le64(vbuf + len + 24, (uint64_t)e->y);
		len += ENT;
	}
	return io->put(io->u, ki, vbuf, len, dl, keep);
}

/* ---- groups ---- */

static void put_result(const struct spec *s, const struct sl_result *res)
{
	uint8_t a = s->sp.algo;

	if (!stateful(a)) {
		/* the library's unlimited and deny: outcome only */
		fields[nfields++] = a == SL_ALGO_UNLIMITED ? SL_ALLOWED : SL_REJECTED;
		fields[nfields++] = 0;
		fields[nfields++] = 0;
		fields[nfields++] = 0;
		return;
	}
	fields[nfields++] = res->outcome;
	fields[nfields++] = res->remaining;
	fields[nfields++] = (uint64_t)res->reset_after;
	fields[nfields++] = (uint64_t)(res->outcome == SL_REJECTED ? res->retry_after : res->delay);
	if (a == SL_ALGO_QUOTA)
		fields[nfields++] = (uint64_t)res->window;
}

/* Check i of a group: its spec and key (canonical), or an error. */
static const char *check(struct rd *r, const struct sl_rm_str *argv, size_t na, size_t nk,
                         const struct spec **sp, int32_t *key, uint64_t *cost)
{
	uint64_t si, kx, c;

	if (!rd_take(r, 2, &si) || !rd_take(r, 2, &kx) || !rd_take(r, 8, &c))
		return "SLUICEPROTO a short program";
	/* ARGV[si], si >= 2: argv[si - 1] */
	if (si < 2 || si > na || si > SL_RM_MAX_SPECS || kx > nk)
		return "SLUICEPROTO an argument out of range";
	if (!specs[si].ok && !parse_spec(&argv[si - 1], &specs[si]))
		return "SLUICEPROTO a bad spec";
	*sp = &specs[si];
	if (stateful(specs[si].sp.algo) && kx == 0)
		return "SLUICEPROTO a limit with no key";
	*key = kx ? keys[kx - 1].canon : -1;
	*cost = (int64_t)c < 0 ? 0 : c;
	return NULL;
}

static const char *group(const struct sl_rm_io *io, struct rd *r, const struct sl_rm_str *argv,
                         size_t na, size_t nk, int64_t now)
{
	uint64_t op, m, cost;
	const struct spec *sp;
	const char *err;
	int32_t key;

	if (!rd_take(r, 1, &op) || !rd_take(r, 1, &m))
		return "SLUICEPROTO a short program";
	if (op != OP_D && op != OP_P)
		return "SLUICEPROTO a group this module does not run";
	if (nfields + 5 * m > MAX_FIELDS)
		return "SLUICEPROTO too many checks";
	for (size_t i = 0; i < m; i++) {
		struct key *k;
		struct sl_state *st = &scratch[i];

		if ((err = check(r, argv, na, nk, &sp, &key, &cost)) != NULL)
			return err;
		item_ent[i] = -1;
		item_key[i] = key;
		memset(st, 0, sizeof(*st));
		if (stateful(sp->sp.algo)) {
			k = &keys[key];
			if (!k->loaded && (err = load(io, k, (size_t)key)) != NULL)
				return err;
			item_ent[i] = ent_find(k, sp->id, op == OP_D);
			if (op == OP_D && item_ent[i] < 0)
				return "SLUICEPROTO too many limit states";
			if (item_ent[i] >= 0)
				st = ent_state(&ents[item_ent[i]], sp->sp.algo);
		}
		item_spec[i] = sp;
		items[i].spec = &sp->sp;
		items[i].cost = op == OP_D ? cost : 0;
		items[i].state = st;
		if (op == OP_P) {
			struct sl_state unused;

			sl_algo_eval(&sp->sp, st, now, 0, &unused, &items[i].res);
			put_result(sp, &items[i].res);
		}
	}
	if (op == OP_D) {
		size_t denied;
		int rc = sl_decide(items, m, now, &denied, NULL);

		for (size_t i = 0; i < m; i++) {
			put_result(item_spec[i], &items[i].res);
			if (rc != SL_DENY && item_ent[i] >= 0)
				keys[item_key[i]].dirty = true;
		}
	}
	return NULL;
}

int sl_rm_run(const struct sl_rm_io *io, int64_t now, const struct sl_rm_str *key_names, size_t nk,
              const struct sl_rm_str *argv, size_t na, const unsigned char **out, size_t *outlen,
              const char **err)
{
	struct rd r;

	*err = NULL;
	if (nk > SL_RM_MAX_KEYS || na < 1 || now < 0) {
		*err = "SLUICEPROTO too many keys";
		return -1;
	}
	for (size_t i = 0; i < nk; i++) {
		keys[i] = (struct key){.canon = (int32_t)i, .head = -1, .tail = -1};
		/* a key named twice in a call is one value: the same key's
		 * first occurrence (few keys, short names) */
		for (size_t j = 0; j < i; j++)
			if (key_names[j].len == key_names[i].len &&
			    memcmp(key_names[j].p, key_names[i].p, key_names[i].len) == 0) {
				keys[i].canon = (int32_t)j;
				break;
			}
	}
	for (size_t i = 0; i <= SL_RM_MAX_SPECS && i <= na; i++)
		specs[i].ok = false;
	nents = 0;
	nfields = 0;
	fields[nfields++] = (uint64_t)(now / SL_NS_PER_SEC);
	fields[nfields++] = (uint64_t)(now % SL_NS_PER_SEC);
	r = (struct rd){.p = (const unsigned char *)argv[0].p, .n = argv[0].len, .at = 0};
	while (r.at < r.n)
		if ((*err = group(io, &r, argv, na, nk, now)) != NULL)
			return -1;
	for (size_t i = 0; i < nk; i++)
		if (keys[i].canon == (int32_t)i && keys[i].dirty &&
		    store(io, &keys[i], i, now) != 0) {
			*err = "SLUICEPROTO a key could not be written";
			return -1;
		}
	for (size_t i = 0; i < nfields; i++)
		put_le64(vbuf + 8 * i, fields[i]);
	*out = vbuf;
	*outlen = 8 * nfields;
	return 0;
}
