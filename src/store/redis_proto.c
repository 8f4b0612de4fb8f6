/* The Redis store's call arguments: the ARGV part each command's groups
 * add to a call (op, check count, commit time, spec strings with the
 * limit id, costs; the heartbeat's id and TTL) and how many reply elements
 * they take back. The spec strings are formatted once per worker and
 * copied into the call's number buffer, so a call's arguments stay valid
 * until it is sent. Thread: the worker's loop. */
#include <stdio.h>
#include <string.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include "store/redis_pool.h"

const char *sl_redis_put_num(struct rs_worker *w, size_t *used, int64_t v, size_t *len)
{
	char *p = w->nums + *used;
	int k = snprintf(p, NUM_LEN, "%lld", (long long)v);

	*len = (size_t)k;
	*used += (size_t)k + 1;
	return p;
}

/* The spec argument of (sp, id), copied into the call's numbers: formatted
 * once per content (specs are few and reused by every request), so this is
 * one hash, one compare and one copy. */
const char *sl_redis_put_spec(struct rs_worker *w, size_t *used, const struct sl_limit_spec *sp,
                              uint64_t id, size_t *len)
{
	uint64_t h = XXH3_64bits_withSeed(sp, sizeof(*sp), id);
	unsigned i = (unsigned)(h & (SPEC_CACHE - 1));
	char *p = w->specs[i].str;
	int k;

	if (!w->specs[i].len || w->specs[i].limit_id != id ||
	    memcmp(&w->specs[i].sp, sp, sizeof(*sp)) != 0) {
		k = snprintf(p, SPEC_LEN, "%u %llu %lld %lld %llu %llu %u %d|%llx",
		             (unsigned)sp->algo, (unsigned long long)sp->n, (long long)sp->period,
		             (long long)sp->interval, (unsigned long long)sp->burst,
		             (unsigned long long)sp->queue, (unsigned)sp->calendar,
		             (int)sp->tz_offset, (unsigned long long)id);
		w->specs[i].sp = *sp;
		w->specs[i].limit_id = id;
		w->specs[i].len = (size_t)k;
	}
	*len = w->specs[i].len;
	memcpy(w->nums + *used, p, *len + 1);
	p = w->nums + *used;
	*used += *len + 1;
	return p;
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

/* Reply elements cmd's groups take. */
size_t sl_redis_cmd_fields(const struct rs_cmd *cmd)
{
	return (sl_redis_cmd_hb(cmd) ? 1 : 0) +
	       sl_redis_group_fields(cmd->op, sl_redis_cmd_checks(cmd));
}

/* Arguments cmd's groups add to a call: keys into argv[*nk...] is done by
 * the caller; this appends the ARGV part at argv[*na]. */
void sl_redis_cmd_args(struct rs_cmd *cmd, size_t *na, size_t *used)
{
	struct rs_req *q = cmd->q;
	struct rs_worker *w = q->w;
	struct rs_run *run = &q->runs[cmd->run];
	struct sl_batch *b = q->b;
	size_t m = run->end - run->first;
	static const char ops[] = "DSPRAH";
	const char *opc = strchr(ops, cmd->op);

	if (sl_redis_cmd_hb(cmd)) {
		w->argv[*na] = "H";
		w->argl[(*na)++] = 1;
		w->argv[*na] = "1";
		w->argl[(*na)++] = 1;
		w->argv[*na] = q->ext->hb_id;
		w->argl[(*na)++] = strlen(q->ext->hb_id);
		w->argv[*na] = sl_redis_put_num(w, used, (int64_t)q->ext->hb_ttl, &w->argl[*na]);
		(*na)++;
	}
	w->argv[*na] = opc ? opc : "P";
	w->argl[(*na)++] = 1;
	w->argv[*na] = sl_redis_put_num(w, used, (int64_t)m, &w->argl[*na]);
	(*na)++;
	if (cmd->op == SL_REDIS_OP_REFUND) {
		bool commit = b->op == SL_OP_DECIDE;

		w->argv[*na] = sl_redis_put_num(w, used, commit ? run->t_s : 0, &w->argl[*na]);
		(*na)++;
		w->argv[*na] = sl_redis_put_num(w, used, commit ? run->t_ns : 0, &w->argl[*na]);
		(*na)++;
	}
	for (uint32_t i = run->first; i < run->end; i++) {
		const struct sl_check *ck = &b->checks[i];
		uint64_t cost = cmd->op == SL_REDIS_OP_PEEK ? 0 : ck->cost;

		w->argv[*na] = sl_redis_put_spec(w, used, ck->spec, ck->limit_id, &w->argl[*na]);
		(*na)++;
		w->argv[*na] = sl_redis_put_num(w, used, (int64_t)cost, &w->argl[*na]);
		(*na)++;
	}
}
