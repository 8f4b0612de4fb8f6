/* The usage history in Redis (usage.store: redis): the store's Redis, so
 * every node that shares it writes into and answers from one history.
 * Per bucket (m, h, d) and bucket start, with a key's EXPIREAT at the end
 * of its retention (so Redis does the pruning):
 *
 *   sluice:usage:<b>:<start>:<account>   hash  a:<limit> d:<limit> r:<limit> c:<limit>
 *   sluice:usage:z<k>:<b>:<start>        zset  account -> allowed|delayed|rejected|cost (k: a d r
 * c) sluice:usage:zl:<b>:<start>          zset  limit -> rejected, every decision
 *
 * A flush is one pipeline of HINCRBY/ZINCRBY/EXPIREAT per cell and bucket;
 * a history query one HGETALL per bucket (pipelined); top a ZUNIONSTORE of
 * the window's sets into short-lived keys. One blocking hiredis connection
 * under the caller's db_mu, reconnected on the next call after an error;
 * Redis Cluster is not supported here (one node). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <sluice/algo-t.h>
#include "usage/usage-int.h"

#define TIMEOUT_MS 2000 /* ms per Redis call */
#define TMP_TTL    30   /* s a top query's union keys live */
#define MAX_LIMITS 32   /* limits per bucket one history row reports */

static const char bch[SL_USAGE_NBUCKETS] = {'m', 'h', 'd'};
static const char kch[4] = {'a', 'd', 'r', 'c'};

static int connect_now(struct sl_usage *u)
{
	struct timeval tv = {TIMEOUT_MS / 1000, (TIMEOUT_MS % 1000) * 1000};

	if (u->rds != NULL && u->rds->err == 0)
		return 0;
	if (u->rds != NULL)
		redisFree(u->rds);
	u->rds = redisConnectWithTimeout(u->rhost, u->rport, tv);
	if (u->rds == NULL || u->rds->err) {
		if (u->rds)
			redisFree(u->rds);
		u->rds = NULL;
		return SL_EIO;
	}
	redisSetTimeout(u->rds, tv);
	return 0;
}

int usage_redis_open(struct sl_usage *u, const char *url, char *err, size_t cap)
{
	const char *p = url ? url : "redis://127.0.0.1:6379";
	const char *colon, *end;
	size_t hl;

	if (strncmp(p, "redis://", 8) == 0)
		p += 8;
	end = p + strcspn(p, "/,");
	colon = memchr(p, ':', (size_t)(end - p));
	hl = (size_t)((colon ? colon : end) - p);
	if (hl == 0 || hl >= sizeof(u->rhost)) {
		snprintf(err, cap, "usage: bad Redis address '%s'", url ? url : "");
		return SL_ECONFIG;
	}
	memcpy(u->rhost, p, hl);
	u->rhost[hl] = '\0';
	u->rport = colon ? (int)strtol(colon + 1, NULL, 10) : 6379;
	if (u->rport <= 0 || u->rport > 65535) {
		snprintf(err, cap, "usage: bad Redis port in '%s'", url);
		return SL_ECONFIG;
	}
	if (connect_now(u) < 0) {
		snprintf(err, cap, "usage: Redis %s:%d: cannot connect", u->rhost, u->rport);
		return SL_EIO;
	}
	return 0;
}

void usage_redis_close(struct sl_usage *u)
{
	if (u->rds != NULL)
		redisFree(u->rds);
	u->rds = NULL;
}

/* Read n queued replies; false if any failed (the connection is dropped). */
static bool drain(struct sl_usage *u, size_t n)
{
	bool ok = true;

	for (size_t i = 0; i < n; i++) {
		redisReply *r = NULL;

		if (redisGetReply(u->rds, (void **)&r) != REDIS_OK) {
			usage_redis_close(u);
			return false;
		}
		if (r->type == REDIS_REPLY_ERROR)
			ok = false;
		freeReplyObject(r);
	}
	return ok;
}

static int64_t keep_s(const struct sl_usage *u, unsigned b)
{
	int64_t k = b == SL_USAGE_MINUTE ? u->conf.keep_minutes
	            : b == SL_USAGE_HOUR ? u->conf.keep_hours
	                                 : u->conf.keep_days;
	return k / SL_NS_PER_SEC + usage_bucket_s[b];
}

int usage_redis_write(struct sl_usage *u, struct sl_usage_buf *const *bufs, unsigned n)
{
	size_t queued = 0;
	bool ok = true;

	if (connect_now(u) < 0)
		return SL_EIO;
	for (unsigned i = 0; i < n; i++) {
		for (uint32_t k = 0; k < bufs[i]->used; k++) {
			const struct sl_usage_cell *c = &bufs[i]->cells[bufs[i]->order[k]];
			const uint64_t v[4] = {c->allowed, c->delayed, c->rejected, c->cost};
			size_t al = strlen(c->account), ll = strlen(c->limit);

			for (unsigned b = 0; b < SL_USAGE_NBUCKETS; b++) {
				int64_t start = c->minute - c->minute % usage_bucket_s[b];
				long long at = (long long)(start + keep_s(u, b));
				char key[256], field[SL_USAGE_LIMIT + 2];

				int kl = snprintf(key, sizeof(key), USAGE_PREFIX "%c:%lld:", bch[b],
				                  (long long)start);
				memcpy(key + kl, c->account, al);
				for (unsigned f = 0; f < 4; f++) {
					if (v[f] == 0)
						continue;
					field[0] = kch[f];
					field[1] = ':';
					memcpy(field + 2, c->limit, ll);
					redisAppendCommand(u->rds, "HINCRBY %b %b %llu", key,
					                   (size_t)kl + al, field, ll + 2,
					                   (unsigned long long)v[f]);
					queued++;
				}
				redisAppendCommand(u->rds, "EXPIREAT %b %lld", key, (size_t)kl + al,
				                   at);
				queued++;
				for (unsigned f = 0; al > 0 && f < 4; f++) {
					char z[96]; /* hiredis formats no %c: names made here */

					snprintf(z, sizeof(z), USAGE_PREFIX "z%c:%c:%lld", kch[f],
					         bch[b], (long long)start);
					redisAppendCommand(u->rds, "ZINCRBY %s %llu %b", z,
					                   (unsigned long long)v[f], c->account,
					                   al);
					redisAppendCommand(u->rds, "EXPIREAT %s %lld", z, at);
					queued += 2;
				}
				if (c->rejected > 0 && ll > 0) {
					char z[96];

					snprintf(z, sizeof(z), USAGE_PREFIX "zl:%c:%lld", bch[b],
					         (long long)start);
					redisAppendCommand(u->rds, "ZINCRBY %s %llu %b", z,
					                   (unsigned long long)c->rejected,
					                   c->limit, ll);
					redisAppendCommand(u->rds, "EXPIREAT %s %lld", z, at);
					queued += 2;
				}
			}
			if (queued > 4096) { /* bound what sits in the output buffer */
				ok = drain(u, queued) && ok;
				queued = 0;
				if (u->rds == NULL)
					return SL_EIO;
			}
		}
	}
	ok = drain(u, queued) && ok;
	return ok ? 0 : SL_EIO;
}

struct lim_counts {
	char name[SL_USAGE_LIMIT];
	uint64_t v[4];
};

/* Fold one bucket's hash reply into per-limit counts; returns how many. */
static unsigned fold(const redisReply *r, struct lim_counts *out, unsigned cap)
{
	unsigned n = 0;

	if (r->type != REDIS_REPLY_ARRAY)
		return 0;
	for (size_t i = 0; i + 1 < r->elements; i += 2) {
		const redisReply *f = r->element[i], *val = r->element[i + 1];
		const char *kp;
		unsigned kind, j;

		if (f->type != REDIS_REPLY_STRING || f->len < 2 || f->str[1] != ':' ||
		    (kp = memchr(kch, f->str[0], 4)) == NULL || f->len - 2 >= SL_USAGE_LIMIT)
			continue;
		kind = (unsigned)(kp - kch);
		for (j = 0; j < n; j++)
			if (strlen(out[j].name) == f->len - 2 &&
			    memcmp(out[j].name, f->str + 2, f->len - 2) == 0)
				break;
		if (j == n) {
			if (n == cap)
				continue;
			memset(&out[n], 0, sizeof(out[n]));
			memcpy(out[n].name, f->str + 2, f->len - 2);
			n++;
		}
		out[j].v[kind] += val->str ? strtoull(val->str, NULL, 10) : 0;
	}
	return n;
}

int usage_redis_history(struct sl_usage *u, const char *account, unsigned bucket, int64_t from,
                        int64_t to, sl_usage_row_fn fn, void *arg)
{
	int64_t step = usage_bucket_s[bucket], first = from - from % step;
	size_t al = strlen(account), nb;
	struct lim_counts lc[MAX_LIMITS];
	int rc = 0;

	if (to < first || connect_now(u) < 0)
		return to < first ? 0 : SL_EIO;
	nb = (size_t)((to - first) / step + 1);
	for (size_t i = 0; i < nb; i++) {
		char key[256];
		int kl = snprintf(key, sizeof(key), USAGE_PREFIX "%c:%lld:", bch[bucket],
		                  (long long)(first + (int64_t)i * step));

		memcpy(key + kl, account, al);
		redisAppendCommand(u->rds, "HGETALL %b", key, (size_t)kl + al);
	}
	for (size_t i = 0; i < nb; i++) {
		redisReply *r = NULL;

		if (redisGetReply(u->rds, (void **)&r) != REDIS_OK) {
			usage_redis_close(u);
			return SL_EIO;
		}
		if (r->type == REDIS_REPLY_ERROR)
			rc = SL_EIO;
		unsigned n = fold(r, lc, MAX_LIMITS);
		for (unsigned k = 0; k < n && rc == 0; k++) {
			struct sl_usage_row row = {.account = account,
			                           .limit = lc[k].name,
			                           .start = first + (int64_t)i * step,
			                           .allowed = lc[k].v[0],
			                           .delayed = lc[k].v[1],
			                           .rejected = lc[k].v[2],
			                           .cost = lc[k].v[3]};
			fn(arg, &row);
		}
		freeReplyObject(r);
	}
	return rc;
}

/* ZUNIONSTORE dst over the window's sets of kind (a, d, r, c or 'l'). */
static void union_cmd(struct sl_usage *u, const char *dst, char kind, unsigned b, int64_t since,
                      int64_t now_s)
{
	int64_t step = usage_bucket_s[b];
	size_t nkeys = (size_t)((now_s - since) / step + 1), argc = 0;
	const char **argv = calloc(nkeys + 3, sizeof(*argv));
	char **keys = calloc(nkeys, sizeof(*keys));
	char nbuf[24];

	if (argv == NULL || keys == NULL) {
		free(argv);
		free(keys);
		redisAppendCommand(u->rds, "DEL %s", dst); /* keeps the reply count */
		return;
	}
	snprintf(nbuf, sizeof(nbuf), "%zu", nkeys);
	argv[argc++] = "ZUNIONSTORE";
	argv[argc++] = dst;
	argv[argc++] = nbuf;
	for (size_t i = 0; i < nkeys; i++) {
		keys[i] = malloc(96);
		if (keys[i] == NULL)
			keys[i] = strdup(USAGE_PREFIX "none");
		else if (kind == 'l')
			snprintf(keys[i], 96, USAGE_PREFIX "zl:%c:%lld", bch[b],
			         (long long)(since + (int64_t)i * step));
		else
			snprintf(keys[i], 96, USAGE_PREFIX "z%c:%c:%lld", kind, bch[b],
			         (long long)(since + (int64_t)i * step));
		argv[argc++] = keys[i] ? keys[i] : USAGE_PREFIX "none";
	}
	redisAppendCommandArgv(u->rds, (int)argc, argv, NULL);
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	free(argv);
}

static redisReply *call(struct sl_usage *u)
{
	redisReply *r = NULL;

	if (redisGetReply(u->rds, (void **)&r) != REDIS_OK) {
		usage_redis_close(u);
		return NULL;
	}
	return r;
}

struct member {
	char *name;
	double score;
};

static int member_cmp(const void *a, const void *b)
{
	const struct member *x = a, *y = b;

	if (x->score != y->score)
		return x->score > y->score ? -1 : 1;
	return strcmp(x->name, y->name);
}

int usage_redis_top(struct sl_usage *u, unsigned by, unsigned bucket, int64_t since, int64_t now_s,
                    unsigned n, sl_usage_row_fn fn, void *arg)
{
	static const unsigned by_kind[] = {2, 0, 3}; /* rejected, allowed, cost */
	char tmp[4][96];
	struct member *m = NULL;
	size_t nm = 0, nall;
	redisReply *r;
	int rc = 0;

	if (connect_now(u) < 0)
		return SL_EIO;
	u->tmp_seq++;
	for (unsigned k = 0; k < 4; k++) {
		snprintf(tmp[k], sizeof(tmp[k]), USAGE_PREFIX "tmp:%d:%llu:%c", (int)getpid(),
		         (unsigned long long)u->tmp_seq, kch[k]);
		union_cmd(u, tmp[k], kch[k], bucket, since, now_s);
		redisAppendCommand(u->rds, "EXPIRE %s %d", tmp[k], TMP_TTL);
	}
	if (!drain(u, 8))
		return SL_EIO;
	/* the n best and every member tied with the n-th, then sorted by
	 * (score, name) so ties go by name as the SQLite backend orders them */
	r = redisCommand(u->rds, "ZREVRANGE %s %u %u WITHSCORES", tmp[by_kind[by]], n - 1, n - 1);
	if (r == NULL) {
		usage_redis_close(u);
		return SL_EIO;
	}
	double cut = r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[1]->str
	                     ? strtod(r->element[1]->str, NULL)
	                     : 0;
	freeReplyObject(r);
	r = redisCommand(u->rds, "ZREVRANGEBYSCORE %s +inf %.17g WITHSCORES", tmp[by_kind[by]],
	                 cut);
	if (r == NULL) {
		usage_redis_close(u);
		return SL_EIO;
	}
	if (r->type == REDIS_REPLY_ARRAY && r->elements > 0) {
		m = calloc(r->elements / 2, sizeof(*m));
		for (size_t i = 0; m && i + 1 < r->elements; i += 2) {
			m[nm].name = strndup(r->element[i]->str, r->element[i]->len);
			m[nm].score = strtod(r->element[i + 1]->str, NULL);
			if (m[nm].name)
				nm++;
		}
	}
	freeReplyObject(r);
	if (nm > 0)
		qsort(m, nm, sizeof(*m), member_cmp);
	nall = nm;
	if (nm > n)
		nm = n;
	for (size_t i = 0; i < nm && rc == 0; i++) {
		uint64_t v[4] = {0};
		struct lim_counts lc[MAX_LIMITS], total[MAX_LIMITS];
		unsigned nt = 0;
		int64_t step = usage_bucket_s[bucket];
		size_t nb = (size_t)((now_s - since) / step + 1);

		for (unsigned k = 0; k < 4; k++)
			redisAppendCommand(u->rds, "ZSCORE %s %s", tmp[k], m[i].name);
		for (unsigned k = 0; k < 4; k++) {
			if ((r = call(u)) == NULL) {
				rc = SL_EIO;
				break;
			}
			v[k] = r->str ? strtoull(r->str, NULL, 10) : 0;
			freeReplyObject(r);
		}
		if (rc < 0)
			break;
		struct sl_usage_row row = {.account = m[i].name,
		                           .allowed = v[0],
		                           .delayed = v[1],
		                           .rejected = v[2],
		                           .cost = v[3]};
		fn(arg, &row);
		/* rejected_by: the account's hashes over the window */
		for (size_t b = 0; b < nb; b++) {
			char key[256];
			int kl = snprintf(key, sizeof(key), USAGE_PREFIX "%c:%lld:", bch[bucket],
			                  (long long)(since + (int64_t)b * step));
			size_t al = strlen(m[i].name);

			if ((size_t)kl + al >= sizeof(key))
				al = sizeof(key) - (size_t)kl - 1;
			memcpy(key + kl, m[i].name, al);
			redisAppendCommand(u->rds, "HGETALL %b", key, (size_t)kl + al);
		}
		for (size_t b = 0; b < nb; b++) {
			if ((r = call(u)) == NULL) {
				rc = SL_EIO;
				break;
			}
			unsigned nl = fold(r, lc, MAX_LIMITS);
			for (unsigned k = 0; k < nl; k++) {
				unsigned j;
				for (j = 0; j < nt && strcmp(total[j].name, lc[k].name) != 0; j++)
					;
				if (j == nt) {
					if (nt == MAX_LIMITS)
						continue;
					memcpy(&total[nt++], &lc[k], sizeof(lc[k]));
					total[j].v[2] = 0;
				}
				total[j].v[2] += lc[k].v[2];
			}
			freeReplyObject(r);
		}
		for (unsigned j = 0; rc == 0 && j < nt; j++) {
			if (total[j].v[2] == 0)
				continue;
			struct sl_usage_row l = {.account = m[i].name,
			                         .limit = total[j].name,
			                         .rejected = total[j].v[2]};
			fn(arg, &l);
		}
	}
	for (size_t i = 0; i < nall; i++)
		free(m[i].name);
	free(m);
	return rc;
}

int usage_redis_rejected_by(struct sl_usage *u, unsigned bucket, int64_t since, int64_t now_s,
                            sl_usage_row_fn fn, void *arg)
{
	char tmp[96];
	redisReply *r;

	if (connect_now(u) < 0)
		return SL_EIO;
	u->tmp_seq++;
	snprintf(tmp, sizeof(tmp), USAGE_PREFIX "tmp:%d:%llu:l", (int)getpid(),
	         (unsigned long long)u->tmp_seq);
	union_cmd(u, tmp, 'l', bucket, since, now_s);
	redisAppendCommand(u->rds, "EXPIRE %s %d", tmp, TMP_TTL);
	if (!drain(u, 2))
		return SL_EIO;
	r = redisCommand(u->rds, "ZREVRANGE %s 0 -1 WITHSCORES", tmp);
	if (r == NULL) {
		usage_redis_close(u);
		return SL_EIO;
	}
	for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
		char name[SL_USAGE_LIMIT];
		struct sl_usage_row row = {.account = "", .limit = name};

		snprintf(name, sizeof(name), "%.*s", (int)r->element[i]->len, r->element[i]->str);
		row.rejected = strtoull(r->element[i + 1]->str, NULL, 10);
		fn(arg, &row);
	}
	freeReplyObject(r);
	return 0;
}
