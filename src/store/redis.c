/* The Redis store: decisions evaluated by one Lua library (redis_scripts.c)
 * on Redis or Redis Cluster, asynchronously on the submitting worker's
 * libuv loop. The store object is shared by all workers; each loop gets its
 * own worker (connections from redis_pool.c, slot map, timer, over-limit
 * cache), created lazily on its first submit and touched only by that
 * loop's thread, so the request path takes no lock. The commands a loop
 * pass queues go out together at its end, one call per node (cluster: per
 * slot), so Redis runs its entry and the library's setup once for many
 * decisions. Every request carries a deadline on one per-worker timer:
 * whatever Redis does (down, slow, restarted, failing over), done() runs
 * within conf->timeout. Design notes and the exactness bounds of cluster
 * and local mode: docs/store-redis.md. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>
#include <xxhash.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include "policy/policy-t.h"
#include "store/redis_int.h"
#include "store/store.h"

#include "store/redis_pool.h"

static _Atomic uint64_t store_ids = 1;
static _Thread_local struct {
	uint64_t id;
	void *loop;
	struct rs_worker *w;
} tls;

static void finish(struct rs_req *q, int status);
static void req_fail(struct rs_req *q, int err);
static void req_start(struct rs_req *q);
static void arm(struct rs_worker *w);
static void discover(struct rs_worker *w);
static void discover_soon(struct rs_worker *w);
static void on_timer(uv_timer_t *t);

static void count_error(struct rs_worker *w)
{
	if (w->s)
		atomic_fetch_add_explicit(&w->s->errors, 1, memory_order_relaxed);
}

/* ---- requests and commands ---- */

static void req_free_maybe(struct rs_req *q)
{
	if (q->finished && q->refs == 0)
		free(q);
}

static struct rs_cmd *cmd_new(struct rs_req *q, uint32_t run, char op, unsigned node)
{
	struct rs_cmd *cmd = calloc(1, sizeof(*cmd));

	if (!cmd)
		return NULL;
	cmd->q = q;
	cmd->run = run;
	cmd->op = op;
	cmd->node = (uint8_t)node;
	q->refs++;
	return cmd;
}

static void cmd_release(struct rs_cmd *cmd)
{
	struct rs_req *q = cmd->q;

	free(cmd);
	q->refs--;
	req_free_maybe(q);
}

static void flush_arm(struct rs_worker *w);

/* Queue cmd for its node's call of this loop pass (flush()). Returns 0,
 * or SL_EIO for a command that names no node. */
static int cmd_issue(struct rs_cmd *cmd)
{
	struct rs_worker *w = cmd->q->w;
	struct rs_node *n;

	if (cmd->node == NO_NODE || cmd->node >= w->nnodes)
		return SL_EIO;
	n = &w->nodes[cmd->node];
	cmd->qnext = NULL;
	if (n->qtail)
		n->qtail->qnext = cmd;
	else
		n->qhead = cmd;
	n->qtail = cmd;
	flush_arm(w);
	return 0;
}

static void on_call(redisAsyncContext *ac, void *r, void *priv);
static void cmd_fail(struct rs_cmd *cmd, int err);
static void retry_unsent(struct rs_cmd *cmd);

/* A queued command that found no connection to its node. */
static void cmd_no_conn(struct rs_cmd *cmd)
{
	struct rs_worker *w = cmd->q->w;

	if (w->cluster && !w->closing)
		retry_unsent(cmd);
	else
		cmd_fail(cmd, SL_EIO);
}

/* Send one call of node n made of commands from *list (those of the first
 * one's slot, within the call's bounds), leaving the others on *list.
 * Commands of finished requests are dropped; a command needing ASKING goes
 * alone. Any failure completes the call's commands through cmd_fail. */
static void call_send(struct rs_worker *w, struct rs_node *n, struct rs_cmd **list)
{
	struct rs_cmd *picked[CALL_CMDS], **pp = list, *cmd;
	struct rs_build cb;
	size_t np = 0, checks = 0, na;
	uint32_t slot = 0;
	bool asking = false, load = false, module;
	struct rs_conn *c = NULL;
	struct rs_call *call;

	while ((cmd = *pp) && np < CALL_CMDS) {
		size_t m = sl_redis_cmd_checks(cmd);

		if (cmd->q->finished) {
			*pp = cmd->qnext;
			cmd_release(cmd);
			continue;
		}
		if (np == 0) {
			slot = cmd->q->runs[cmd->run].slot;
			asking = cmd->asking;
		} else if ((w->cluster && cmd->q->runs[cmd->run].slot != slot) || asking ||
		           cmd->asking || checks + m > CALL_CHECKS) {
			pp = &cmd->qnext;
			continue;
		}
		*pp = cmd->qnext;
		picked[np++] = cmd;
		checks += m;
		load |= cmd->load;
		if (asking)
			break;
	}
	if (np == 0)
		return;
	c = sl_redis_conn_get(w, n);
	if (!c) {
		for (size_t k = 0; k < np; k++)
			cmd_no_conn(picked[k]);
		return;
	}
	sl_redis_build_start(w, &cb);
	for (size_t k = 0; k < np; k++)
		sl_redis_cmd_build(picked[k], &cb);
	module = n->module && !cb.lua;
	na = sl_redis_build_end(w, &cb, module);
	call = malloc(sizeof(*call) + np * sizeof(call->cmds[0]));
	if (!call || (asking && redisAsyncCommand(c->ac, NULL, NULL, "ASKING") != REDIS_OK) ||
	    (load && sl_redis_conn_load(c) < 0) ||
	    redisAsyncCommandArgv(c->ac, on_call, call, (int)na, w->argv, w->argl) != REDIS_OK) {
		free(call);
		for (size_t k = 0; k < np; k++)
			cmd_fail(picked[k], SL_EIO);
		return;
	}
	call->n = (uint32_t)np;
	for (size_t k = 0; k < np; k++) {
		picked[k]->asking = false;
		picked[k]->load = false;
		picked[k]->via_module = module;
		picked[k]->conn = c;
		picked[k]->gen = c->opens;
		call->cmds[k] = picked[k];
	}
	if (c->inflight++ == 0)
		c->progress = now_ms(w);
}

/* Send every queued command: per node, as few calls as the bounds and
 * (cluster) the slots allow. Callbacks that queue more commands meanwhile
 * leave them for the next pass. */
static void flush(struct rs_worker *w)
{
	for (unsigned i = 0; i < w->nnodes; i++) {
		struct rs_node *n = &w->nodes[i];
		struct rs_cmd *list = n->qhead;

		if (!list)
			continue;
		n->qhead = n->qtail = NULL;
		while (list)
			call_send(w, n, &list);
	}
}

static bool queued(const struct rs_worker *w)
{
	for (unsigned i = 0; i < w->nnodes; i++)
		if (w->nodes[i].qhead)
			return true;
	return false;
}

static void on_flush(struct rs_worker *w)
{
	flush(w);
	if (!queued(w) && w->flush_armed) {
		uv_check_stop(&w->fcheck);
		uv_prepare_stop(&w->fprep);
		w->flush_armed = false;
	}
}

static void on_fcheck(uv_check_t *h)
{
	on_flush(h->data);
}

static void on_fprep(uv_prepare_t *h)
{
	on_flush(h->data);
}

static void flush_arm(struct rs_worker *w)
{
	if (w->flush_armed || w->closing)
		return;
	uv_check_start(&w->fcheck, on_fcheck);
	uv_prepare_start(&w->fprep, on_fprep);
	w->flush_armed = true;
}

static void retry_later(struct rs_cmd *cmd, uint64_t delay);
static void retry_unsent(struct rs_cmd *cmd);

static unsigned run_node(struct rs_req *q, uint32_t run)
{
	return q->w->cluster ? q->w->slots[q->runs[run].slot] : 0;
}

/* Start one script call for run; 0 or SL_EIO/SL_ENOMEM. */
static int run_send(struct rs_req *q, uint32_t run, char op)
{
	struct rs_cmd *cmd = cmd_new(q, run, op, run_node(q, run));
	int rc;

	if (!cmd)
		return SL_ENOMEM;
	rc = cmd_issue(cmd);
	if (rc == NO_CONN && q->w->cluster && !q->w->closing) {
		retry_unsent(cmd);
		return 0;
	}
	if (rc != 0) {
		cmd_release(cmd);
		return rc < 0 ? rc : SL_EIO;
	}
	return 0;
}

static void pending_remove(struct rs_worker *w, struct rs_req *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		w->pend_head = q->next;
	if (q->next)
		q->next->prev = q->prev;
	else
		w->pend_tail = q->prev;
	q->prev = q->next = NULL;
}

static uint64_t cache_hash(const struct sl_check *ck)
{
	uint64_t h = XXH3_64bits_withSeed(ck->key, ck->key_len, ck->limit_id);

	return h ? h : 1;
}

/* Remember that check i of q was rejected: until the same cost could pass
 * (for rate with a queue: until it could pass delayed), measured from the
 * submit time, which is never after the server evaluated it. */
static void cache_record(struct rs_req *q, size_t i)
{
	struct rs_worker *w = q->w;
	const struct sl_check *ck = &q->b->checks[i];
	const struct sl_limit_spec *sp = ck->spec;
	int64_t hold = ck->res.retry_after; /* ns */
	struct rs_cache_ent *e;
	uint64_t h;

	if (!w->cache || ck->cost == 0)
		return;
	if (sp->algo == SL_ALGO_RATE) {
		__int128 q_ns = (__int128)sp->queue * sp->interval;

		hold = q_ns >= hold ? 0 : (int64_t)(hold - q_ns);
	} else if (sp->algo != SL_ALGO_QUOTA && sp->algo != SL_ALGO_SLIDING) {
		return;
	}
	if (hold <= 0)
		return;
	h = cache_hash(ck);
	e = &w->cache[h & (CACHE_SLOTS - 1)];
	e->h = h;
	e->cost = ck->cost;
	e->until = q->sent + (uint64_t)hold;
	e->reset_at = q->sent + (uint64_t)(ck->res.reset_after > 0 ? ck->res.reset_after : 0);
	e->res = ck->res;
}

/* Answer b from the over-limit cache when one of its checks is known to be
 * rejected now. The other checks report their limit with remaining unknown
 * (shown as the full limit): no round trip was made to learn it. */
static bool cache_answer(struct rs_worker *w, struct sl_batch *b, uint64_t now)
{
	for (size_t i = 0; i < b->n; i++) {
		const struct sl_check *ck = &b->checks[i];
		struct rs_cache_ent *e;
		uint64_t h;

		if (ck->cost == 0 || !sl_redis_stateful(ck->spec->algo))
			continue;
		h = cache_hash(ck);
		e = &w->cache[h & (CACHE_SLOTS - 1)];
		if (e->h != h || now >= e->until || ck->cost < e->cost)
			continue;
		for (size_t j = 0; j < b->n; j++) {
			memset(&b->checks[j].res, 0, sizeof(b->checks[j].res));
			sl_redis_fill_limits(&b->checks[j]);
			if (b->checks[j].res.limit != SL_UNLIMITED)
				b->checks[j].res.remaining = b->checks[j].res.limit;
			b->checks[j].res.window = b->checks[j].spec->period;
		}
		b->checks[i].res = e->res;
		b->checks[i].res.retry_after = (int64_t)(e->until - now);
		b->checks[i].res.reset_after = e->reset_at > now ? (int64_t)(e->reset_at - now) : 0;
		b->status = SL_DENY;
		b->denied = i;
		b->delay = 0;
		b->time = b->now;
		return true;
	}
	return false;
}

/* Complete q: the batch's status and done(). The request stays allocated
 * while commands still reference it. */
static void finish(struct rs_req *q, int status)
{
	struct rs_worker *w = q->w;
	struct sl_batch *b = q->b;

	if (q->finished)
		return;
	q->finished = true;
	pending_remove(w, q);
	if (status < 0)
		count_error(w);
	b->status = status;
	b->denied = status == SL_DENY ? q->denied : b->n;
	b->delay = status == SL_DELAY ? q->delay : 0;
	b->time = q->time ? q->time : b->now;
	q->b = NULL;
	arm(w);
	b->done(b);
	req_free_maybe(q);
}

/* Fail q with err. Runs a decision already committed are refunded, best
 * effort: the refunds are sent before done() and their replies ignored. */
static void req_fail(struct rs_req *q, int err)
{
	if (q->finished)
		return;
	if (err == SL_EIO)
		discover_soon(q->w);
	if (q->b->op == SL_OP_DECIDE && q->phase == PH_DECIDE && !q->ext) {
		for (uint32_t j = 0; j < q->nruns; j++)
			if (q->runs[j].committed)
				(void)run_send(q, j, SL_REDIS_OP_REFUND);
	}
	finish(q, err);
}

/* Cluster: re-read the slot map now, or after the gap since the last
 * round. Called on every failure, since failing requests complete before
 * any timer would run. */
static void discover_soon(struct rs_worker *w)
{
	if (!w->cluster || w->closing)
		return;
	if (!w->discovering && now_ms(w) >= w->last_discovery + DISCOVER_GAP)
		discover(w);
	else
		w->disc_pending = true;
	arm(w);
}

static void cmd_fail(struct rs_cmd *cmd, int err)
{
	struct rs_req *q = cmd->q;
	struct rs_worker *w = q->w;

	discover_soon(w);
	if (q->phase == PH_DECIDE) {
		q->refs++; /* keep q while failing it */
		cmd_release(cmd);
		req_fail(q, err);
		q->refs--;
		req_free_maybe(q);
		return;
	}
	if (q->b->op != SL_OP_DECIDE || q->ext) /* a local-mode sync must see its failure */
		q->err = err;
	else
		count_error(w); /* the decision stands; one report is stale */
	cmd_release(cmd);
	if (--q->outstanding == 0)
		finish(q, q->err ? q->err : q->status);
}

/* Resend cmd after delay ms. The list is kept in order of resend time. */
static void retry_later(struct rs_cmd *cmd, uint64_t delay)
{
	struct rs_worker *w = cmd->q->w;
	struct rs_cmd **pp = &w->retry_head;

	cmd->at = now_ms(w) + delay;
	while (*pp && (*pp)->at <= cmd->at)
		pp = &(*pp)->next;
	cmd->next = *pp;
	*pp = cmd;
	if (!cmd->next)
		w->retry_tail = cmd;
	arm(w);
}

/* Cluster: a command that reached no node (its node is down or backing
 * off, or the connection it was queued on never came up) is sent again
 * after a fresh slot map, as often as the batch deadline allows: after a
 * failover a worker whose map still names the dead master would otherwise
 * fail its first requests. Never for a command Redis may have run. */
static void retry_unsent(struct rs_cmd *cmd)
{
	discover_soon(cmd->q->w);
	retry_later(cmd, UNSENT_DELAY);
}

static void resend(struct rs_cmd *cmd)
{
	int rc = cmd_issue(cmd);

	if (rc == NO_CONN && cmd->q->w->cluster && !cmd->q->w->closing)
		retry_unsent(cmd);
	else if (rc != 0)
		cmd_fail(cmd, rc < 0 ? rc : SL_EIO);
}

static bool is_err(const redisReply *r, const char *prefix)
{
	size_t n = strlen(prefix);

	return r->len >= n && memcmp(r->str, prefix, n) == 0;
}

static void on_error_reply(struct rs_cmd *cmd, const redisReply *r)
{
	struct rs_worker *w = cmd->q->w;
	char host[SL_REDIS_HOST_MAX];
	unsigned slot, node;
	int port, kind;

	if (++cmd->tries > MAX_TRIES) {
		cmd_fail(cmd, SL_EIO);
		return;
	}
	if (cmd->via_module) {
		/* the module is gone, of another protocol, not granted to this
		 * user (ACL), or refused this call (a value of the text layout):
		 * the Lua library serves it */
		bool gone = is_err(r, "ERR unknown command") || is_err(r, "NOPERM") ||
		            is_err(r, "SLUICEPROTO another protocol");

		if (gone)
			w->nodes[cmd->node].module = false;
		if (gone || is_err(r, "SLUICEPROTO")) {
			cmd->no_module = true;
			resend(cmd);
			return;
		}
	}
	if (is_err(r, "ERR unknown command")) /* no FCALL: Redis before 7 */
		w->no_func = true;
	if (is_err(r, "NOSCRIPT") || is_err(r, "ERR Function not found") ||
	    is_err(r, "ERR unknown command")) {
		cmd->load = true;
		resend(cmd);
		return;
	}
	kind = sl_redis_parse_redirect(r->str, r->len, &slot, host, sizeof(host), &port);
	if (kind && w->cluster) {
		node = sl_redis_node_find_add(w, host, port);
		if (node == NO_NODE) {
			cmd_fail(cmd, SL_EIO);
			return;
		}
		if (kind == 1) { /* MOVED: the slot has a new owner */
			w->slots[slot] = (uint8_t)node;
			w->disc_pending = true;
			arm(w);
		} else {
			cmd->asking = true;
		}
		cmd->node = (uint8_t)node;
		resend(cmd);
		return;
	}
	if (is_err(r, "TRYAGAIN") || is_err(r, "LOADING") || is_err(r, "BUSY") ||
	    is_err(r, "CLUSTERDOWN") || is_err(r, "MASTERDOWN")) {
		if (w->cluster)
			w->disc_pending = true;
		retry_later(cmd, RETRY_DELAY);
		return;
	}
	cmd_fail(cmd, SL_EIO);
}

/* Every run of a decision has answered (runs go out together): all
 * committed, or the first rejecting run in check order decides, the
 * committed ones are refunded and done() runs once the refunds answered. */
static void decide_done(struct rs_req *q)
{
	struct sl_batch *b = q->b;
	uint32_t k;

	for (k = 0; k < q->nruns && !q->runs[k].rejected; k++)
		;
	if (k == q->nruns) {
		finish(q, q->delay > 0 ? SL_DELAY : SL_OK);
		return;
	}
	q->status = SL_DENY;
	q->denied = q->runs[k].first + q->runs[k].denied;
	q->delay = 0;
	if (b->checks[q->denied].res.outcome == SL_REJECTED)
		cache_record(q, q->denied);
	q->phase = PH_PARALLEL;
	q->outstanding = 1; /* held while sending */
	for (uint32_t j = 0; j < q->nruns; j++) {
		if (!q->runs[j].committed)
			continue;
		if (run_send(q, j, SL_REDIS_OP_REFUND) == 0)
			q->outstanding++;
		else
			count_error(q->w);
	}
	if (--q->outstanding == 0)
		finish(q, SL_DENY);
}

/* The n reply fields at v of cmd's groups, at server time (ts, tns). */
static void on_result(struct rs_cmd *cmd, const char *v, size_t n, int64_t ts, int64_t tns)
{
	struct rs_req *q = cmd->q;
	struct sl_batch *b = q->b;
	struct rs_run *run = &q->runs[cmd->run];
	struct sl_redis_ext *x = q->ext;
	struct sl_redis_result res;

	if (sl_redis_cmd_hb(cmd)) {
		x->hb_count = sl_redis_field(v, 0);
		v += SL_REDIS_FIELD_BYTES;
		n--;
	}
	if (sl_redis_group_result(v, n, cmd->op, b->checks + run->first, run->end - run->first,
	                          &res, x && x->raw ? x->raw + run->first : NULL) < 0) {
		cmd_fail(cmd, SL_EPROTO);
		return;
	}
	q->time = ts * SL_NS_PER_SEC + tns;
	if (q->phase == PH_PARALLEL) {
		cmd_release(cmd);
		if (--q->outstanding == 0)
			finish(q, q->err ? q->err : q->status);
		return;
	}
	if (res.status == 2) {
		run->rejected = true;
		run->denied = (uint32_t)res.denied;
	} else {
		run->committed = true;
		run->t_s = ts;
		run->t_ns = tns;
		if (res.delay > q->delay)
			q->delay = res.delay;
	}
	cmd_release(cmd);
	if (--q->outstanding == 0)
		decide_done(q);
}

/* One call's reply: each of its commands takes its groups' fields in
 * order; an error or a lost connection applies to every one of them. */
static void on_call(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rs_call *call = priv;
	struct rs_conn *c = ac->data;
	const redisReply *r = reply;
	size_t off = SL_REDIS_HDR_FIELDS;
	int64_t ts = 0, tns = 0;
	bool ok;

	if (c && c->ac == ac) {
		if (c->inflight)
			c->inflight--;
		c->progress = now_ms(c->w);
	}
	ok = r && r->type == REDIS_REPLY_STRING && sl_redis_reply_time(r, &ts, &tns) == 0;
	for (uint32_t k = 0; k < call->n; k++) {
		struct rs_cmd *cmd = call->cmds[k];
		size_t need;

		if (cmd->q->finished) {
			cmd_release(cmd);
			continue;
		}
		if (!r) {
			struct rs_conn *qc = cmd->conn;

			if (qc && cmd->q->w->cluster && !cmd->q->w->closing && qc->ups < cmd->gen) {
				cmd->conn = NULL; /* its connect failed: it was never sent */
				retry_unsent(cmd);
				continue;
			}
			cmd_fail(cmd, SL_EIO);
			continue;
		}
		if (r->type == REDIS_REPLY_ERROR) {
			on_error_reply(cmd, r);
			continue;
		}
		need = sl_redis_cmd_fields(cmd);
		if (!ok || off + need > sl_redis_reply_fields(r)) {
			ok = false;
			cmd_fail(cmd, SL_EPROTO);
			continue;
		}
		on_result(cmd, r->str + off * SL_REDIS_FIELD_BYTES, need, ts, tns);
		off += need;
	}
	free(call);
}

/* ---- cluster slot map ---- */

static void wait_push(struct rs_worker *w, struct rs_req *q)
{
	q->refs++;
	q->wnext = NULL;
	if (w->wait_tail)
		w->wait_tail->wnext = q;
	else
		w->wait_head = q;
	w->wait_tail = q;
}

static void resume_waiters(struct rs_worker *w)
{
	struct rs_req *q = w->wait_head;

	w->wait_head = w->wait_tail = NULL;
	while (q) {
		struct rs_req *next = q->wnext;

		q->refs--;
		if (q->finished)
			req_free_maybe(q);
		else
			req_start(q);
		q = next;
	}
}

static unsigned slot_node(void *arg, const char *host, int port)
{
	return sl_redis_node_find_add(arg, host, port);
}

/* Whether every connection of n is down and at least one failed: the node
 * is known unreachable (not merely unused). */
static bool node_down(const struct rs_worker *w, const struct rs_node *n)
{
	bool failed = false;

	for (unsigned k = 0; k < w->pool; k++) {
		if (n->conns[k].state != C_DOWN)
			return false;
		if (n->conns[k].backoff > 0)
			failed = true;
	}
	return failed;
}

void sl_redis_worker_arm(struct rs_worker *w)
{
	arm(w);
}

static void on_slots(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rs_node *from = priv;
	struct rs_conn *c = ac->data;
	struct rs_worker *w;
	const redisReply *r = reply;
	static _Thread_local uint8_t map[SL_REDIS_SLOTS];
	unsigned covered = 0;

	if (!c)
		return;
	w = c->w;
	if (c->ac == ac) {
		if (c->inflight)
			c->inflight--;
		c->progress = now_ms(w);
	}
	w->discovering = false;
	w->disc_conn = NULL;
	if (w->closing)
		return;
	if (!r || r->type != REDIS_REPLY_ARRAY) {
		w->disc_pending = true;
		arm(w);
		return;
	}
	covered = sl_redis_slot_map(r, from->addr.host, slot_node, w, map);
	for (unsigned s = 0; s < SL_REDIS_SLOTS; s++)
		if (map[s] != NO_NODE)
			w->slots[s] = map[s];
	if (covered == SL_REDIS_SLOTS) {
		w->have_map = true;
		w->disc_pending = false;
	} else {
		w->disc_pending = true; /* cluster not fully served: ask again later */
	}
	/* A master that stopped answering is still named until its replica
	 * takes over: ask again until the map names reachable nodes only, so
	 * a worker without traffic meanwhile does not meet the dead master
	 * with its next request. */
	for (unsigned s = 0; s < SL_REDIS_SLOTS && !w->disc_pending; s++)
		if (w->slots[s] != NO_NODE && node_down(w, &w->nodes[w->slots[s]]))
			w->disc_pending = true;
	if (w->have_map)
		resume_waiters(w);
	arm(w);
}

/* One CLUSTER SLOTS round on the next node that has (or can open) a
 * connection; nodes are tried in turn across rounds. */
static void discover(struct rs_worker *w)
{
	if (w->discovering || w->closing || !w->cluster)
		return;
	w->last_discovery = now_ms(w);
	w->disc_pending = false;
	for (unsigned k = 0; k < w->nnodes; k++) {
		struct rs_node *n = &w->nodes[w->disc_rr++ % w->nnodes];
		struct rs_conn *c = sl_redis_conn_get(w, n);

		if (!c)
			continue;
		if (redisAsyncCommand(c->ac, on_slots, n, "CLUSTER SLOTS") != REDIS_OK)
			continue;
		if (c->inflight++ == 0)
			c->progress = now_ms(w);
		w->discovering = true;
		w->disc_conn = c;
		return;
	}
	w->disc_pending = true; /* nobody reachable now: again after the gap */
}

/* ---- timer: deadlines, stuck connections, delayed resends, discovery ---- */

static void arm(struct rs_worker *w)
{
	uint64_t due = UINT64_MAX, now;

	if (w->closing)
		return;
	if (w->pend_head)
		due = w->pend_head->deadline;
	if (w->retry_head && w->retry_head->at < due)
		due = w->retry_head->at;
	if (w->disc_pending && !w->discovering && w->last_discovery + DISCOVER_GAP < due)
		due = w->last_discovery + DISCOVER_GAP;
	/* An unanswered CLUSTER SLOTS is dropped as stuck after the timeout
	 * even when no request is pending. */
	if (w->discovering && w->last_discovery + w->timeout < due)
		due = w->last_discovery + w->timeout;
	if (due == UINT64_MAX) {
		uv_timer_stop(&w->timer);
		return;
	}
	now = now_ms(w);
	/* never 0: a timer re-armed at 0 from its own callback would run again
	 * in the same libuv pass, forever */
	uv_timer_start(&w->timer, on_timer, due > now ? due - now : 1, 0);
}

static void on_timer(uv_timer_t *t)
{
	struct rs_worker *w = t->data;
	uint64_t now = now_ms(w);
	struct rs_cmd *due;

	while (w->pend_head && w->pend_head->deadline <= now)
		req_fail(w->pend_head, SL_ETIMEDOUT);
	/* A connection with commands older than the timeout, or still
	 * connecting after it, is stuck (server paused, packets dropped):
	 * drop it so later requests do not queue behind it. */
	for (unsigned i = 0; i < w->nnodes; i++) {
		for (unsigned k = 0; k < w->pool; k++) {
			struct rs_conn *c = &w->nodes[i].conns[k];

			if (c->state != C_DOWN && (c->inflight > 0 || c->state == C_CONNECTING) &&
			    now - c->progress >= w->timeout) {
				sl_redis_link_event(c, true, "no answer within store.timeout");
				sl_redis_conn_drop(c);
			}
		}
	}
	if (w->discovering && now - w->last_discovery >= w->timeout) {
		struct rs_conn *c = w->disc_conn;

		w->discovering = false; /* on_slots(NULL) would say the same */
		w->disc_conn = NULL;
		w->disc_pending = true;
		if (c && c->ac)
			sl_redis_conn_drop(c);
	}
	due = NULL;
	while (w->retry_head && w->retry_head->at <= now) {
		struct rs_cmd *cmd = w->retry_head;

		w->retry_head = cmd->next;
		if (!w->retry_head)
			w->retry_tail = NULL;
		cmd->next = due;
		due = cmd;
	}
	while (due) {
		struct rs_cmd *cmd = due;

		due = cmd->next;
		if (cmd->q->finished)
			cmd_release(cmd);
		else
			resend(cmd);
	}
	if (w->disc_pending && !w->discovering && now >= w->last_discovery + DISCOVER_GAP)
		discover(w);
	arm(w);
}

/* ---- batches ---- */

/* A batch without stateful checks (unlimited, deny) needs no round trip. */
static void decide_locally(struct sl_batch *b)
{
	struct sl_decide_item items[MAX_CHECKS];
	struct sl_state st[MAX_CHECKS];
	size_t denied = b->n;
	int64_t delay = 0;
	int rc;

	memset(st, 0, sizeof(st[0]) * b->n);
	for (size_t i = 0; i < b->n; i++) {
		items[i].spec = b->checks[i].spec;
		items[i].cost = b->op == SL_OP_DECIDE ? b->checks[i].cost : 0;
		items[i].state = &st[i];
	}
	rc = sl_decide(items, b->n, b->now, &denied, &delay);
	for (size_t i = 0; i < b->n; i++)
		b->checks[i].res = items[i].res;
	b->status = b->op == SL_OP_DECIDE ? rc : SL_OK;
	b->denied = b->op == SL_OP_DECIDE ? denied : b->n;
	b->delay = b->op == SL_OP_DECIDE ? delay : 0;
	b->time = b->now;
	b->done(b);
}

static struct rs_req *req_new(struct rs_worker *w, struct sl_batch *b)
{
	size_t keybytes = 0, nruns = 0, size;
	struct rs_req *q;
	char *p;
	int64_t cur_slot = -1;

	for (size_t i = 0; i < b->n; i++)
		if (sl_redis_stateful(b->checks[i].spec->algo))
			keybytes += KEY_PREFIX_LEN + b->checks[i].key_len;
	size = sizeof(*q) + (b->n + 1) * sizeof(struct rs_run) + b->n * 2 * sizeof(uint32_t) +
	       keybytes;
	q = calloc(1, size);
	if (!q)
		return NULL;
	q->w = w;
	q->b = b;
	q->runs = (struct rs_run *)(q + 1);
	q->koff = (uint32_t *)(q->runs + b->n + 1);
	q->klen = q->koff + b->n;
	q->kbuf = (char *)(q->klen + b->n);
	q->status = SL_OK;
	p = q->kbuf;
	for (size_t i = 0; i < b->n; i++) {
		const struct sl_check *ck = &b->checks[i];
		uint64_t tag;
		unsigned slot;

		if (!sl_redis_stateful(ck->spec->algo))
			continue;
		/* One key per descriptor value holds the states of all its
		 * limits (by limit id); the hash tag is a hash of the bytes,
		 * so they share a cluster slot and a decision one key. */
		tag = XXH3_64bits(ck->key, ck->key_len);
		snprintf(p, KEY_PREFIX_LEN + 1, "sl2:{%016llx}:", (unsigned long long)tag);
		memcpy(p + KEY_PREFIX_LEN, ck->key, ck->key_len);
		q->koff[i] = (uint32_t)(p - q->kbuf);
		q->klen[i] = KEY_PREFIX_LEN + ck->key_len;
		p += q->klen[i];
		if (!w->cluster)
			continue;
		slot = sl_redis_key_slot(q->kbuf + q->koff[i], q->klen[i]);
		if (cur_slot >= 0 && (unsigned)cur_slot != slot) {
			q->runs[nruns - 1].end = (uint32_t)i;
			nruns++;
			q->runs[nruns - 1].first = (uint32_t)i;
		} else if (cur_slot < 0) {
			nruns = 1;
		}
		cur_slot = slot;
		q->runs[nruns - 1].slot = slot;
	}
	if (nruns == 0)
		nruns = 1;
	q->runs[0].first = 0;
	q->runs[nruns - 1].end = (uint32_t)b->n;
	q->nruns = (uint32_t)nruns;
	return q;
}

static void req_start(struct rs_req *q)
{
	struct rs_worker *w = q->w;
	int rc;

	if (w->cluster && !w->have_map) {
		wait_push(w, q);
		if (!w->discovering && now_ms(w) >= w->last_discovery + DISCOVER_GAP)
			discover(w);
		else
			w->disc_pending = true;
		arm(w);
		return;
	}
	if (q->b->op == SL_OP_DECIDE && (!q->ext || q->ext->op != SL_REDIS_OP_ADD)) {
		/* every run at once (cluster: one call per slot, in parallel) */
		q->phase = PH_DECIDE;
		q->outstanding = 1; /* held while sending */
		for (uint32_t j = 0; j < q->nruns; j++) {
			rc = run_send(q, j, q->dop);
			if (rc < 0) {
				q->outstanding--;
				req_fail(q, rc);
				return;
			}
			q->outstanding++;
		}
		if (--q->outstanding == 0)
			decide_done(q);
		return;
	}
	q->phase = PH_PARALLEL;
	q->outstanding = 1;
	for (uint32_t j = 0; j < q->nruns; j++) {
		char op = q->ext                      ? SL_REDIS_OP_ADD
		          : q->b->op == SL_OP_RELEASE ? SL_REDIS_OP_REFUND
		                                      : SL_REDIS_OP_PEEK;

		rc = run_send(q, j, op);
		if (rc < 0)
			q->err = rc;
		else
			q->outstanding++;
	}
	if (--q->outstanding == 0)
		finish(q, q->err ? q->err : SL_OK);
}

static struct rs_worker *worker_new(struct rs_store *s, uv_loop_t *loop)
{
	struct rs_worker *w = calloc(1, sizeof(*w));

	if (!w)
		return NULL;
	w->argv = malloc(CALL_ARGS * sizeof(*w->argv));
	w->argl = malloc(CALL_ARGS * sizeof(*w->argl));
	w->nums = malloc(CALL_NUMS);
	w->xargv = malloc(CALL_XARGS * sizeof(*w->xargv));
	w->xargl = malloc(CALL_XARGS * sizeof(*w->xargl));
	w->prog = malloc(CALL_PROG);
	if (!w->argv || !w->argl || !w->nums || !w->xargv || !w->xargl || !w->prog ||
	    (s->local_cache && !(w->cache = calloc(CACHE_SLOTS, sizeof(*w->cache))))) {
		free(w->argv);
		free(w->argl);
		free(w->nums);
		free(w->xargv);
		free(w->xargl);
		free(w->prog);
		free(w);
		return NULL;
	}
	w->s = s;
	w->loop = loop;
	w->cluster = s->cluster;
	w->local_cache = s->local_cache;
	w->no_module = s->no_module;
	w->timeout = s->timeout;
	w->pool = s->pool;
	w->sc = s->sc;
	memset(w->slots, NO_NODE, sizeof(w->slots));
	for (unsigned i = 0; i < s->nseeds; i++)
		sl_redis_node_find_add(w, s->seeds[i].host, s->seeds[i].port);
	uv_timer_init(loop, &w->timer);
	w->timer.data = w;
	uv_check_init(loop, &w->fcheck);
	w->fcheck.data = w;
	uv_unref((uv_handle_t *)&w->fcheck);
	uv_prepare_init(loop, &w->fprep);
	w->fprep.data = w;
	uv_unref((uv_handle_t *)&w->fprep);
	w->open_handles = 3;
	return w;
}

static struct rs_worker *worker_get(struct rs_store *s, uv_loop_t *loop)
{
	struct rs_worker *w;

	if (tls.id == s->id && tls.loop == loop)
		return tls.w;
	pthread_mutex_lock(&s->lock);
	for (w = s->workers; w; w = w->next)
		if (w->loop == loop)
			break;
	if (!w && (w = worker_new(s, loop))) {
		w->next = s->workers;
		s->workers = w;
	}
	pthread_mutex_unlock(&s->lock);
	if (w) {
		tls.id = s->id;
		tls.loop = loop;
		tls.w = w;
	}
	return w;
}

static void worker_freed(uv_handle_t *h)
{
	struct rs_worker *w = h->data;

	if (--w->open_handles > 0)
		return;
	free(w->cache);
	free(w->argv);
	free(w->argl);
	free(w->nums);
	free(w->xargv);
	free(w->xargl);
	free(w->prog);
	free(w);
}

/* Fail everything pending on w, close its connections and timer. The
 * worker's memory goes in the timer's close callback, on w's loop. */
static void worker_close(struct rs_worker *w)
{
	if (tls.w == w)
		memset(&tls, 0, sizeof(tls));
	w->closing = true;
	while (w->pend_head)
		req_fail(w->pend_head, SL_EIO);
	while (w->retry_head) {
		struct rs_cmd *cmd = w->retry_head;

		w->retry_head = cmd->next;
		cmd_release(cmd);
	}
	w->retry_tail = NULL;
	resume_waiters(w); /* all finished by now: only releases them */
	for (unsigned i = 0; i < w->nnodes; i++) {
		struct rs_cmd *cmd = w->nodes[i].qhead;

		w->nodes[i].qhead = w->nodes[i].qtail = NULL;
		while (cmd) {
			struct rs_cmd *next = cmd->qnext;

			cmd_release(cmd);
			cmd = next;
		}
	}
	for (unsigned i = 0; i < w->nnodes; i++)
		for (unsigned k = 0; k < MAX_POOL; k++)
			if (w->nodes[i].conns[k].ac)
				sl_redis_conn_drop(&w->nodes[i].conns[k]);
	w->s = NULL;
	uv_timer_stop(&w->timer);
	uv_check_stop(&w->fcheck);
	uv_prepare_stop(&w->fprep);
	w->flush_armed = false;
	uv_close((uv_handle_t *)&w->timer, worker_freed);
	uv_close((uv_handle_t *)&w->fcheck, worker_freed);
	uv_close((uv_handle_t *)&w->fprep, worker_freed);
}

static int submit(struct rs_store *s, struct sl_batch *b, struct sl_redis_ext *x)
{
	struct rs_worker *w;
	struct rs_req *q;
	size_t nstate = 0;

	if (!b || !b->done || !b->loop || (b->n && !b->checks) || b->n > MAX_CHECKS)
		return SL_EINVAL;
	for (size_t i = 0; i < b->n; i++) {
		if (!b->checks[i].spec)
			return SL_EINVAL;
		nstate += sl_redis_stateful(b->checks[i].spec->algo);
	}
	if (nstate == 0 && !x) {
		decide_locally(b);
		return 0;
	}
	w = worker_get(s, b->loop);
	if (!w)
		return SL_ENOMEM;
	if (w->closing)
		return SL_EIO;
	if (b->op == SL_OP_DECIDE && !x && w->cache && cache_answer(w, b, uv_hrtime())) {
		b->done(b);
		return 0;
	}
	q = req_new(w, b);
	if (!q)
		return SL_ENOMEM;
	q->ext = x;
	q->dop = x && x->op == SL_REDIS_OP_STRICT ? SL_REDIS_OP_STRICT : SL_REDIS_OP_DECIDE;
	q->sent = uv_hrtime();
	uv_update_time(w->loop);
	q->deadline = now_ms(w) + w->timeout;
	q->prev = w->pend_tail;
	if (w->pend_tail)
		w->pend_tail->next = q;
	else
		w->pend_head = q;
	w->pend_tail = q;
	arm(w);
	req_start(q);
	return 0;
}

static int rs_submit(struct sl_store *base, struct sl_batch *b)
{
	return submit((struct rs_store *)base, b, NULL);
}

int sl_redis_submit_ext(struct sl_store *base, struct sl_batch *b, struct sl_redis_ext *x)
{
	if (!x || (x->op != SL_REDIS_OP_STRICT && x->op != SL_REDIS_OP_ADD) || !x->raw)
		return SL_EINVAL;
	if (x->op == SL_REDIS_OP_STRICT && b && b->op != SL_OP_DECIDE)
		return SL_EINVAL;
	return submit((struct rs_store *)base, b, x);
}

static void rs_stats(struct sl_store *base, struct sl_store_stats *out)
{
	struct rs_store *s = (struct rs_store *)base;

	memset(out, 0, sizeof(*out));
	out->errors = atomic_load_explicit(&s->errors, memory_order_relaxed);
}

static void rs_destroy(struct sl_store *base)
{
	struct rs_store *s = (struct rs_store *)base;

	if (!s)
		return;
	while (s->workers) {
		struct rs_worker *w = s->workers;

		s->workers = w->next;
		worker_close(w);
	}
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct sl_store_ops rs_ops = {
        .name = "redis",
        .submit = rs_submit,
        .stats = rs_stats,
        .destroy = rs_destroy,
};

int sl_redis_store_create(struct sl_store **out, const struct sl_store_conf *conf)
{
	struct rs_store *s;
	int n;

	if (!out || !conf)
		return SL_EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return SL_ENOMEM;
	n = sl_redis_parse_url(conf->url ? conf->url : "redis://127.0.0.1:6379", s->seeds,
	                       MAX_SEEDS);
	if (n < 0) {
		free(s);
		return SL_ECONFIG;
	}
	s->nseeds = (unsigned)n;
	s->base.ops = &rs_ops;
	s->cluster = conf->cluster;
	s->local_cache = conf->local_cache;
	s->no_module = conf->no_module;
	s->timeout = conf->timeout > 0 ? (uint64_t)((conf->timeout + 999999) / 1000000) : 50;
	s->pool = conf->pool == 0 ? 1 : conf->pool > MAX_POOL ? MAX_POOL : conf->pool;
	if (sl_redis_scripts(&s->sc) < 0) {
		free(s);
		return SL_ENOMEM;
	}
	s->id = atomic_fetch_add(&store_ids, 1);
	pthread_mutex_init(&s->lock, NULL);
	if (conf->mode == SL_REDIS_LOCAL) {
		if (conf->cluster || sl_redis_local_create(out, &s->base, conf) < 0) {
			rs_destroy(&s->base);
			return conf->cluster ? SL_ECONFIG : SL_ENOMEM;
		}
		return 0;
	}
	*out = &s->base;
	return 0;
}

void sl_redis_store_detach(struct sl_store *base, void *loop)
{
	struct rs_store *s = (struct rs_store *)base;
	struct rs_worker *w, **pp;

	if (sl_redis_is_local(base)) {
		sl_redis_local_detach(base, loop);
		return;
	}
	pthread_mutex_lock(&s->lock);
	for (pp = &s->workers; (w = *pp); pp = &w->next)
		if (w->loop == loop) {
			*pp = w->next;
			break;
		}
	pthread_mutex_unlock(&s->lock);
	if (w)
		worker_close(w);
}
