/* The Redis store's call arguments: how a call's commands become one FCALL
 * of the library (src/store/redis_lib.lua, convention above its main()).
 * KEYS are the call's keys, each distinct key of a run once; ARGV[1] is the
 * program, little-endian binary: per group op and check count, then the
 * commit time (R) or heartbeat (H), then per check the ARGV index of its
 * spec string, the KEYS index of its key (0: none) and its cost; the rest
 * of ARGV are the spec strings (each once per call) and heartbeat ids.
 * Spec strings are formatted once per worker and copied into the call's
 * buffer, so a call's arguments stay valid until it is sent. Thread: the
 * worker's loop. */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include "redismod/rmcall-t.h"
#include "store/redis_pool.h"

static void put_u8(struct rs_worker *w, struct rs_build *cb, unsigned v)
{
	w->prog[cb->plen++] = (unsigned char)v;
}

static void put_u16(struct rs_worker *w, struct rs_build *cb, unsigned v)
{
	put_u8(w, cb, v & 0xff);
	put_u8(w, cb, (v >> 8) & 0xff);
}

static void put_i64(struct rs_worker *w, struct rs_build *cb, int64_t v)
{
	for (int i = 0; i < 8; i++)
		put_u8(w, cb, (unsigned)(((uint64_t)v >> (8 * i)) & 0xff));
}

/* An extra argument: its ARGV index (ARGV[1] is the program). */
static unsigned put_xarg(struct rs_worker *w, struct rs_build *cb, const char *s, size_t len)
{
	w->xargv[cb->nx] = s;
	w->xargl[cb->nx] = len;
	return (unsigned)(2 + cb->nx++);
}

/* The ARGV index of the spec string of (sp, id) in this call: formatted
 * once per content (specs are few and reused by every request), added to
 * a call once. The cache is probed over SPEC_PROBE slots from the hash's,
 * so a few specs sharing a slot do not evict each other (and go into a
 * call once per check); a miss takes a free slot, else one this call has
 * not used, else the hash's own. */
static unsigned spec_arg(struct rs_worker *w, struct rs_build *cb, const struct sl_limit_spec *sp,
                         uint64_t id)
{
	uint64_t h = XXH3_64bits_withSeed(sp, sizeof(*sp), id);
	unsigned h0 = (unsigned)(h & (SPEC_CACHE - 1)), i = SPEC_CACHE, free_i = SPEC_CACHE;
	unsigned idle_i = SPEC_CACHE;
	char *p;
	int k;

	for (unsigned j = 0; j < SPEC_PROBE; j++) {
		unsigned s = (h0 + j) & (SPEC_CACHE - 1);

		if (!w->specs[s].len) {
			if (free_i == SPEC_CACHE)
				free_i = s;
		} else if (w->specs[s].limit_id == id &&
		           memcmp(&w->specs[s].sp, sp, sizeof(*sp)) == 0) {
			i = s;
			break;
		} else if (idle_i == SPEC_CACHE && !cb->spec_arg[s]) {
			idle_i = s;
		}
	}
	if (i == SPEC_CACHE) {
		i = free_i != SPEC_CACHE ? free_i : idle_i != SPEC_CACHE ? idle_i : h0;
		k = snprintf(w->specs[i].str, SPEC_LEN, "%u %llu %lld %lld %llu %llu %u %d|%llx",
		             (unsigned)sp->algo, (unsigned long long)sp->n, (long long)sp->period,
		             (long long)sp->interval, (unsigned long long)sp->burst,
		             (unsigned long long)sp->queue, (unsigned)sp->calendar,
		             (int)sp->tz_offset, (unsigned long long)id);
		w->specs[i].sp = *sp;
		w->specs[i].limit_id = id;
		w->specs[i].len = (size_t)k;
		cb->spec_arg[i] = 0; /* this call's copy of the old one stays */
	}
	if (!cb->spec_arg[i]) {
		p = w->nums + cb->used;
		memcpy(p, w->specs[i].str, w->specs[i].len + 1);
		cb->used += w->specs[i].len + 1;
		cb->spec_arg[i] = (uint16_t)put_xarg(w, cb, p, w->specs[i].len);
	}
	return cb->spec_arg[i];
}

size_t sl_redis_cmd_checks(const struct rs_cmd *cmd)
{
	const struct rs_run *run = &cmd->q->runs[cmd->run];

	return run->end - run->first;
}

bool sl_redis_cmd_hb(const struct rs_cmd *cmd)
{
	return cmd->op == SL_REDIS_OP_ADD && cmd->q->ext && cmd->q->ext->hb_id;
}

/* Reply fields cmd's groups take. */
size_t sl_redis_cmd_fields(const struct rs_cmd *cmd)
{
	return (sl_redis_cmd_hb(cmd) ? 1 : 0) +
	       sl_redis_group_fields(cmd->op, cmd->q->b->checks + cmd->q->runs[cmd->run].first,
	                             sl_redis_cmd_checks(cmd));
}

static unsigned put_key(struct rs_worker *w, struct rs_build *cb, const char *k, size_t len)
{
	w->argv[3 + cb->nk] = k;
	w->argl[3 + cb->nk] = len;
	return (unsigned)++cb->nk;
}

void sl_redis_build_start(struct rs_worker *w, struct rs_build *cb)
{
	(void)w;
	memset(cb, 0, sizeof(*cb));
}

void sl_redis_cmd_build(struct rs_cmd *cmd, struct rs_build *cb)
{
	struct rs_req *q = cmd->q;
	struct rs_worker *w = q->w;
	struct rs_run *run = &q->runs[cmd->run];
	struct sl_batch *b = q->b;
	uint16_t kidx[MAX_CHECKS];

	if (sl_redis_cmd_hb(cmd)) {
		put_u8(w, cb, SL_REDIS_OP_HB);
		put_u8(w, cb, 0);
		put_u16(w, cb, put_key(w, cb, HB_KEY, strlen(HB_KEY)));
		put_u16(w, cb, put_xarg(w, cb, q->ext->hb_id, strlen(q->ext->hb_id)));
		put_i64(w, cb, (int64_t)q->ext->hb_ttl);
	}
	/* the module runs exact mode's decisions and peeks (a heartbeat
	 * comes with local mode's take, which it does not) */
	if (cmd->no_module || (cmd->op != SL_REDIS_OP_DECIDE && cmd->op != SL_REDIS_OP_PEEK))
		cb->lua = true;
	put_u8(w, cb, (unsigned char)cmd->op);
	put_u8(w, cb, run->end - run->first);
	if (cmd->op == SL_REDIS_OP_REFUND) {
		bool commit = b->op == SL_OP_DECIDE;

		put_i64(w, cb, commit ? run->t_s : 0);
		put_i64(w, cb, commit ? run->t_ns : 0);
	}
	for (uint32_t i = run->first; i < run->end; i++) {
		const struct sl_check *ck = &b->checks[i];
		unsigned key = 0;

		kidx[i - run->first] = 0;
		if (sl_redis_stateful(ck->spec->algo)) {
			/* a decision over several limits of one descriptor value
			 * names its key once */
			for (uint32_t j = run->first; j < i && !key; j++)
				if (kidx[j - run->first] && q->klen[j] == q->klen[i] &&
				    memcmp(q->kbuf + q->koff[j], q->kbuf + q->koff[i],
				           q->klen[i]) == 0)
					key = kidx[j - run->first];
			if (!key)
				key = put_key(w, cb, q->kbuf + q->koff[i], q->klen[i]);
			kidx[i - run->first] = (uint16_t)key;
		}
		put_u16(w, cb, spec_arg(w, cb, ck->spec, ck->limit_id));
		put_u16(w, cb, key);
		put_i64(w, cb, cmd->op == SL_REDIS_OP_PEEK ? 0 : (int64_t)ck->cost);
	}
}

size_t sl_redis_build_end(struct rs_worker *w, struct rs_build *cb, bool module)
{
	size_t na = 3 + cb->nk;
	int k;

	if (module) {
		w->argv[0] = "SLUICE.CALL";
		w->argv[1] = SL_RM_PROTO;
	} else {
		w->argv[0] = w->no_func ? "EVALSHA" : "FCALL";
		w->argv[1] = w->no_func ? w->sc.sha : w->sc.func;
	}
	w->argl[0] = strlen(w->argv[0]);
	w->argl[1] = strlen(w->argv[1]);
	k = snprintf(w->nums + cb->used, NUM_LEN, "%zu", cb->nk);
	w->argv[2] = w->nums + cb->used;
	w->argl[2] = (size_t)k;
	cb->used += (size_t)k + 1;
	w->argv[na] = (const char *)w->prog;
	w->argl[na++] = cb->plen;
	for (size_t i = 0; i < cb->nx; i++, na++) {
		w->argv[na] = w->xargv[i];
		w->argl[na] = w->xargl[i];
	}
	return na;
}
