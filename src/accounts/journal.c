/* The accounts of store: redis are a journal in the store's Redis: a list
 * (sluice:accounts:log) of every change as it was made (operation, names,
 * body, time, and for a new key its digest, id and prefix, never its
 * text) and a counter (sluice:accounts:ver) of its length. Each node
 * applies the journal, in order, to an sqlite database in memory and to
 * its index, with the very operations of the sqlite store (service.c): at
 * start the snapshot and what follows it, then whatever was added, polled
 * every 100 ms. A write is validated
 * against this node's copy, appended only if the journal did not move
 * meanwhile (WATCH/MULTI), and otherwise run again on top of what won. */

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <cjson/cJSON.h>
#include <sluice/error.h>
#include "accounts/service-int.h"
#include "policy/units.h"

#define J_LOG  "sluice:accounts:log"
#define J_VER  "sluice:accounts:ver"
#define J_BASE "sluice:accounts:base" /* version of the log's first element */
#define J_SNAP "sluice:accounts:snap" /* the accounts up to some version >= base */

static bool redis_ok(struct sl_accounts *a)
{
	struct timeval tv = {1, 0};

	if (a->rc != NULL && a->rc->err == 0)
		return true;
	if (a->rc != NULL)
		redisFree(a->rc);
	a->rc = redisConnectWithTimeout(a->rhost, a->rport, tv);
	if (a->rc == NULL || a->rc->err) {
		if (a->rc) {
			redisFree(a->rc);
			a->rc = NULL;
		}
		return false;
	}
	redisSetTimeout(a->rc, tv);
	return true;
}

/* The reply, or NULL for an error reply or when Redis is unreachable (the
 * connection is dropped after an I/O error, and made again next time). */
static redisReply *vcmd(struct sl_accounts *a, const char *fmt, va_list ap)
{
	redisReply *rep;

	if (!redis_ok(a))
		return NULL;
	rep = redisvCommand(a->rc, fmt, ap);
	if (rep == NULL || rep->type == REDIS_REPLY_ERROR) {
		if (rep)
			freeReplyObject(rep);
		else {
			redisFree(a->rc); /* the connection is unusable after an I/O error */
			a->rc = NULL;
		}
		return NULL;
	}
	return rep;
}

static redisReply *cmd(struct sl_accounts *a, const char *fmt, ...)
{
	va_list ap;
	redisReply *rep;

	va_start(ap, fmt);
	rep = vcmd(a, fmt, ap);
	va_end(ap);
	return rep;
}

/* A command whose reply only says it worked (+OK, QUEUED). */
static bool ok_cmd(struct sl_accounts *a, const char *fmt, ...)
{
	va_list ap;
	redisReply *rep;

	va_start(ap, fmt);
	rep = vcmd(a, fmt, ap);
	va_end(ap);
	if (rep != NULL)
		freeReplyObject(rep);
	return rep != NULL;
}

/* The integer of rep (freed here): -1 when there is none (Redis down). */
static long long reply_int(redisReply *rep)
{
	long long v = 0; /* nil: no journal yet */

	if (rep == NULL)
		return -1;
	if (rep->type == REDIS_REPLY_INTEGER)
		v = rep->integer;
	else if (rep->type == REDIS_REPLY_STRING)
		v = strtoll(rep->str, NULL, 10);
	freeReplyObject(rep);
	return v;
}

char *sl_acj_record(const struct sl_acc_req *r)
{
	cJSON *o = cJSON_CreateObject();
	char hex[65], *text;

	cJSON_AddNumberToObject(o, "op", r->op);
	cJSON_AddStringToObject(o, "account", r->account);
	cJSON_AddStringToObject(o, "id", r->id);
	/* ns as text: a double would round them */
	char now[24];
	snprintf(now, sizeof(now), "%lld", (long long)r->now);
	cJSON_AddStringToObject(o, "now", now);
	if (r->body)
		cJSON_AddItemToObject(o, "body", cJSON_Duplicate(r->body, true));
	if (r->has_gen) {
		for (int i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", r->gen_sha[i]);
		cJSON_AddStringToObject(o, "sha256", hex);
		cJSON_AddStringToObject(o, "key_id", r->gen_id);
		cJSON_AddStringToObject(o, "prefix", r->gen_prefix);
	}
	text = cJSON_PrintUnformatted(o);
	cJSON_Delete(o);
	return text;
}

/* Append r to the journal if nobody else did since this node last caught
 * up. False with the answer written: 503 (Redis down), or r->retry set
 * (the journal moved: the caller rolls back, catches up and runs r again). */
bool sl_acj_append(struct sl_accounts *a, struct sl_acc_req *r)
{
	char *rec;
	redisReply *rep;
	long long ver;

	if (a->applied < a->base) {
		/* run() catches up (takes the snapshot) and runs r again */
		r->retry = true;
		sl_acc_unavailable(r, "the journal was compacted past this node while it was away "
		                      "and its snapshot could not be taken: try again");
		return false;
	}
	rec = sl_acj_record(r);
	if (rec == NULL || (rep = cmd(a, "WATCH %s", J_VER)) == NULL) {
		free(rec);
		sl_acc_unavailable(r,
		                   "the account store (Redis) is unreachable: changes are refused, "
		                   "lookups keep serving from memory");
		return false;
	}
	freeReplyObject(rep);
	ver = reply_int(cmd(a, "GET %s", J_VER));
	if (ver < 0)
		goto down;
	if (ver != a->applied) {
		rep = cmd(a, "UNWATCH");
		if (rep)
			freeReplyObject(rep);
		free(rec);
		r->retry = true;
		sl_acc_unavailable(r, "the account store kept changing; try again");
		return false;
	}
	rep = cmd(a, "MULTI");
	if (rep == NULL)
		goto down;
	freeReplyObject(rep);
	rep = cmd(a, "RPUSH %s %s", J_LOG, rec);
	if (rep == NULL)
		goto down;
	freeReplyObject(rep);
	rep = cmd(a, "INCR %s", J_VER);
	if (rep == NULL)
		goto down;
	freeReplyObject(rep);
	rep = cmd(a, "EXEC");
	free(rec);
	rec = NULL;
	if (rep == NULL) {
		sl_acc_unavailable(r, "the account store (Redis) failed the change");
		return false;
	}
	if (rep->type == REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		r->retry = true;
		sl_acc_unavailable(r, "the account store kept changing; try again");
		return false;
	}
	freeReplyObject(rep);
	a->applied++;
	return true;
down:
	free(rec);
	sl_acc_unavailable(r,
	                   "the account store (Redis) is unreachable: changes are refused, lookups "
	                   "keep serving from memory");
	return false;
}

static int unhex(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* A string field of o into out (cap bytes): absent is ""; false when it is
 * not a string or does not fit (cut short, it would name another account). */
static bool text_field(const cJSON *o, const char *name, char *out, size_t cap)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
	const char *t = cJSON_GetStringValue(v);

	if (v == NULL) {
		out[0] = '\0';
		return true;
	}
	if (t == NULL || strlen(t) >= cap)
		return false;
	memcpy(out, t, strlen(t) + 1);
	return true;
}

int sl_acj_parse_record(const char *text, size_t len, struct sl_acc_req *r)
{
	cJSON *o = cJSON_ParseWithLength(text, len);
	const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
	const char *now = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "now"));
	const char *sha = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(o, "sha256"));
	char *end = NULL;
	bool ok;

	memset(r, 0, sizeof(*r));
	r->replay = true;
	ok = cJSON_IsObject(o) && cJSON_IsNumber(op) && op->valuedouble >= SL_ACC_CREATE &&
	     op->valuedouble <= SL_ACC_KEY_REVOKE && op->valuedouble == (int)op->valuedouble &&
	     text_field(o, "account", r->account, sizeof(r->account)) &&
	     text_field(o, "id", r->id, sizeof(r->id)) && now != NULL && now[0] >= '0' &&
	     now[0] <= '9';
	if (ok) {
		r->op = (int)op->valuedouble;
		errno = 0;
		long long t = strtoll(now, &end, 10);
		/* ns since the epoch, before 2116: times stay far from overflow */
		ok = errno == 0 && *end == '\0' && t > 0 && t < (1LL << 62);
		r->now = t;
	}
	if (ok && sha != NULL) {
		ok = strlen(sha) == 64 && text_field(o, "key_id", r->gen_id, sizeof(r->gen_id)) &&
		     text_field(o, "prefix", r->gen_prefix, sizeof(r->gen_prefix));
		for (int i = 0; ok && i < 32; i++) {
			int hi = unhex(sha[2 * i]), lo = unhex(sha[2 * i + 1]);
			ok = hi >= 0 && lo >= 0;
			r->gen_sha[i] = (uint8_t)((hi & 15) << 4 | (lo & 15));
		}
		r->has_gen = ok;
	}
	if (ok)
		r->body = cJSON_DetachItemFromObject(o, "body");
	cJSON_Delete(o);
	if (!ok)
		sl_acc_req_clear(r);
	return ok ? 0 : SL_EINVAL;
}

/* One journal entry applied to this node's copy. An entry that is not one
 * sluice wrote (a hand-edited or damaged list) is skipped, and said. */
static void replay(struct sl_accounts *a, const char *text, size_t len)
{
	struct sl_acc_req r;

	if (sl_acj_parse_record(text, len, &r) != 0) {
		if (a->log)
			fprintf(a->log,
			        "sluice: accounts: journal entry %lld is not a change sluice "
			        "wrote: "
			        "skipped\n",
			        a->applied);
		return;
	}
	r.policy = a->policy;
	sl_acc_run(a, &r);
	sl_acc_req_clear(&r);
}

/* The journal's entries from version ARGV[1] on (1000 at most), with its
 * base and version, read at one instant: a compaction between a read of
 * the base and the LRANGE would shift the list under it. {base, ver} only
 * when there is nothing to read or the node is behind the base. */
static const char range_lua[] = "local b = tonumber(redis.call('GET', KEYS[2]) or '0') "
                                "local v = tonumber(redis.call('GET', KEYS[3]) or '0') "
                                "local from = tonumber(ARGV[1]) "
                                "local to = math.min(v - 1, from + 999) "
                                "if from < b or to < from then return {b, v} end "
                                "return {b, v, redis.call('LRANGE', KEYS[1], from - b, to - b)}";

/* Whether a line about the journal being out of step may be said now (at
 * most once a minute: the condition is looked at every poll). */
static bool minutely(struct sl_accounts *a)
{
	struct timespec ts;
	int64_t t;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	t = (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
	if (a->behind_logged && t - a->behind_logged < 60 * SL_NS_PER_SEC)
		return false;
	a->behind_logged = t;
	return true;
}

static void compact(struct sl_accounts *a);
static void reseed(struct sl_accounts *a);
static void resync(struct sl_accounts *a);

/* Apply what the journal holds beyond this node's copy (bounded: at most
 * 1000 entries a pass, the rest on the next), then compact the journal
 * when it is long and this node is level with it. Redis down: nothing,
 * the copy keeps serving. A running node the journal was compacted past
 * takes the snapshot. Returns the entries applied, or, at start, -1 when
 * the journal was compacted past the snapshot just loaded. */
long long sl_acj_catch_up(struct sl_accounts *a)
{
	char from[24];
	redisReply *rep;
	long long ver, done = 0;

	snprintf(from, sizeof(from), "%lld", a->applied);
	rep = cmd(a, "EVAL %s 3 %s %s %s %s", range_lua, J_LOG, J_BASE, J_VER, from);
	if (rep == NULL)
		return 0;
	if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 2 ||
	    rep->element[0]->type != REDIS_REPLY_INTEGER ||
	    rep->element[1]->type != REDIS_REPLY_INTEGER) {
		freeReplyObject(rep);
		return 0;
	}
	a->base = rep->element[0]->integer;
	ver = rep->element[1]->integer;
	if (a->applied < a->base) {
		freeReplyObject(rep);
		if (!a->running)
			return -1; /* at start: the caller loads the snapshot again */
		resync(a);
		return 0;
	}
	if (rep->elements > 2 && rep->element[2]->type == REDIS_REPLY_ARRAY) {
		redisReply *l = rep->element[2];
		for (size_t i = 0; i < l->elements; i++) {
			if (l->element[i]->type == REDIS_REPLY_STRING)
				replay(a, l->element[i]->str, l->element[i]->len);
			a->applied++;
			done++;
		}
	}
	freeReplyObject(rep);
	if (a->compact_after && a->applied == ver && (uint64_t)(ver - a->base) >= a->compact_after)
		compact(a);
	else if (ver == 0 && a->base == 0 && a->applied > 0 && a->running)
		reseed(a);
	else if (ver < a->applied && a->base > 0 && a->running)
		resync(a); /* it lost entries this node has: the journal's state wins */
	else if (ver < a->applied && a->running && a->log && minutely(a))
		fprintf(a->log,
		        "sluice: accounts: the journal in Redis holds %lld entries, fewer than "
		        "this node applied (%lld), and no snapshot: changes here are refused "
		        "until this node is restarted\n",
		        ver, a->applied);
	return done;
}

/* The snapshot: SNAP_MAGIC, the version it holds (u64 little-endian: every
 * entry below it is in it), an sqlite database of this node's copy. */
#define SNAP_MAGIC   "SLACCSN1"
#define SNAP_HDR     16
#define SNAP_MIN_AGE (60 * SL_NS_PER_SEC) /* an entry is kept at least this long */

/* Whether the entry just below version v was made less than
 * SNAP_MIN_AGE ago (by its own "now"), or cannot be read. */
static bool young(struct sl_accounts *a, long long v)
{
	redisReply *rep = cmd(a, "LINDEX %s %lld", J_LOG, v - 1 - a->base);
	struct timespec ts;
	bool y = true;

	if (rep == NULL)
		return true;
	if (rep->type == REDIS_REPLY_STRING) {
		cJSON *o = cJSON_ParseWithLength(rep->str, rep->len);
		const char *t = cJSON_GetStringValue(cJSON_GetObjectItem(o, "now"));
		clock_gettime(CLOCK_REALTIME, &ts);
		y = t && strtoll(t, NULL, 10) >
		                 (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec - SNAP_MIN_AGE;
		cJSON_Delete(o);
	}
	freeReplyObject(rep);
	return y;
}

/* Write this node's copy as the snapshot and keep only the last tenth of
 * the journal, and never an entry younger than SNAP_MIN_AGE, in one
 * transaction that fails if the journal moved (a new entry, another
 * node's compaction) since this node caught up. A running node is a poll
 * behind, so it finds its next entry in what is kept unless it could not
 * reach Redis for SNAP_MIN_AGE (then it says so and must be restarted); a
 * node that starts loads the snapshot and replays from there. */
/* This node's copy as the snapshot's bytes: SNAP_MAGIC, the version it
 * holds (a->applied), the database. NULL when out of memory. */
static char *snapshot_blob(struct sl_accounts *a, size_t *len)
{
	sqlite3_int64 n = 0;
	unsigned char *db = sqlite3_serialize(a->db, "main", &n, 0);
	char *blob = db ? malloc(SNAP_HDR + (size_t)n) : NULL;

	if (blob != NULL) {
		memcpy(blob, SNAP_MAGIC, 8);
		for (int i = 0; i < 8; i++)
			blob[8 + i] = (char)((uint64_t)a->applied >> (8 * i));
		memcpy(blob + SNAP_HDR, db, (size_t)n);
		*len = SNAP_HDR + (size_t)n;
	}
	sqlite3_free(db);
	return blob;
}

/* EXEC of a transaction: whether it ran (nil: a watched key moved). A
 * failure on the way may leave the connection inside MULTI: it is closed. */
static bool exec_ok(struct sl_accounts *a, bool queued)
{
	redisReply *rep = queued ? cmd(a, "EXEC") : NULL;
	bool ran = rep != NULL && rep->type == REDIS_REPLY_ARRAY;

	if (rep)
		freeReplyObject(rep);
	if (!queued && a->rc) {
		redisFree(a->rc);
		a->rc = NULL;
	}
	return ran;
}

static void compact(struct sl_accounts *a)
{
	long long keep = (long long)(a->compact_after / 10), nbase = a->applied - keep;
	size_t len = 0;
	char *blob;
	bool queued;

	if (nbase <= a->base || young(a, nbase) || (blob = snapshot_blob(a, &len)) == NULL)
		return;
	if (!ok_cmd(a, "WATCH %s %s", J_VER, J_BASE)) {
		free(blob);
		return;
	}
	if (reply_int(cmd(a, "GET %s", J_VER)) != a->applied ||
	    reply_int(cmd(a, "GET %s", J_BASE)) != a->base) {
		ok_cmd(a, "UNWATCH");
		free(blob);
		return;
	}
	queued = ok_cmd(a, "MULTI") && ok_cmd(a, "SET %s %b", J_SNAP, blob, len) &&
	         ok_cmd(a, "LTRIM %s %lld -1", J_LOG, nbase - a->base) &&
	         ok_cmd(a, "SET %s %lld", J_BASE, nbase);
	free(blob);
	if (!exec_ok(a, queued))
		return;
	if (a->log)
		fprintf(a->log,
		        "sluice: accounts: journal compacted at %lld entries: a snapshot of %zu "
		        "bytes (%zu accounts, %zu keys), the last %lld entries kept\n",
		        a->applied, len, a->idx->naccounts, a->idx->nkeys, keep);
	a->base = nbase;
}

/* Redis holds no journal at all (no version, base, snapshot or list) while
 * this node applied some: Redis lost it (restarted empty, flushed). The
 * node's copy is then the best there is: it becomes the snapshot at the
 * version the node had, in a transaction that fails if anything of the
 * journal appeared meanwhile (another node won: this one takes its
 * snapshot on its next look, or goes on from it if they were level).
 * Changes made after this node's last look are lost, as they were. */
static void reseed(struct sl_accounts *a)
{
	size_t len = 0;
	char *blob;
	bool queued;

	if (!ok_cmd(a, "WATCH %s %s %s %s", J_VER, J_BASE, J_SNAP, J_LOG))
		return;
	if (reply_int(cmd(a, "EXISTS %s %s %s %s", J_VER, J_BASE, J_SNAP, J_LOG)) != 0 ||
	    (blob = snapshot_blob(a, &len)) == NULL) {
		ok_cmd(a, "UNWATCH");
		return;
	}
	queued = ok_cmd(a, "MULTI") && ok_cmd(a, "SET %s %b", J_SNAP, blob, len) &&
	         ok_cmd(a, "SET %s %lld", J_BASE, a->applied) &&
	         ok_cmd(a, "SET %s %lld", J_VER, a->applied);
	free(blob);
	if (!exec_ok(a, queued))
		return;
	a->base = a->applied;
	if (a->log)
		fprintf(a->log,
		        "sluice: accounts: the journal was gone from Redis (it lost its data): "
		        "this node's copy (%zu accounts, %zu keys, %lld entries) is its snapshot "
		        "now\n",
		        a->idx->naccounts, a->idx->nkeys, a->applied);
}

/* The shas, or names, a query yields leave the index. */
static void unindex(struct sl_accounts *a, const char *sql, int64_t now, bool keys)
{
	sqlite3_stmt *st = sl_acc_prep(a, sql);

	if (st && keys)
		sqlite3_bind_int64(st, 1, now);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		if (keys && sqlite3_column_bytes(st, 0) == 32)
			sl_acx_del_key(a->idx, sqlite3_column_blob(st, 0));
		else if (!keys)
			sl_acx_del_account(a->idx, (const char *)sqlite3_column_text(st, 0),
			                   (size_t)sqlite3_column_bytes(st, 0));
	}
	sqlite3_finalize(st);
}

/* The snapshot, if the journal was ever compacted, becomes this node's
 * copy: at start (an empty copy), or on a running node the journal was
 * compacted past. Its rows replace the copy's, and the index changes with
 * no moment in which a key both hold is missing: what only the copy has
 * (and keys the snapshot holds dead) leaves it, then everything the
 * snapshot has is put over it. Returns the version the snapshot holds,
 * 0 with none, -1 with err written (the copy unchanged but for the index's
 * removals). */
static long long from_snapshot(struct sl_accounts *a, const struct sl_policy *p, char *err,
                               size_t cap)
{
	redisReply *rep = cmd(a, "GET %s", J_SNAP);
	unsigned char *buf;
	uint64_t ver = 0;
	struct timespec ts;
	int64_t now;
	size_t n;

	if (rep == NULL) {
		snprintf(err, cap, "accounts.store: redis: cannot read %s from %s:%d", J_SNAP,
		         a->rhost, a->rport);
		return -1;
	}
	if (rep->type == REDIS_REPLY_NIL) {
		freeReplyObject(rep);
		return 0;
	}
	if (rep->type != REDIS_REPLY_STRING || rep->len <= SNAP_HDR ||
	    memcmp(rep->str, SNAP_MAGIC, 8) != 0) {
		freeReplyObject(rep);
		snprintf(err, cap,
		         "accounts.store: redis: %s on %s:%d is not a snapshot of sluice's", J_SNAP,
		         a->rhost, a->rport);
		return -1;
	}
	for (int i = 0; i < 8; i++)
		ver |= (uint64_t)(unsigned char)rep->str[8 + i] << (8 * i);
	if (ver == 0 || ver >= (1ULL << 62)) { /* written by sluice: 0 < applied < 2^62 */
		freeReplyObject(rep);
		snprintf(err, cap,
		         "accounts.store: redis: %s on %s:%d holds version %llu: not a "
		         "snapshot of sluice's",
		         J_SNAP, a->rhost, a->rport, (unsigned long long)ver);
		return -1;
	}
	n = rep->len - SNAP_HDR;
	buf = sqlite3_malloc64(n);
	if (buf == NULL) {
		freeReplyObject(rep);
		snprintf(err, cap, "out of memory for the accounts snapshot (%zu bytes)", n);
		return -1;
	}
	memcpy(buf, rep->str + SNAP_HDR, n);
	freeReplyObject(rep);
	if (!sl_acc_exec(a, "ATTACH ':memory:' AS snap")) {
		sqlite3_free(buf);
		snprintf(err, cap, "accounts: cannot attach the snapshot: %s",
		         sqlite3_errmsg(a->db));
		return -1;
	}
	if (sqlite3_deserialize(a->db, "snap", buf, (sqlite3_int64)n, (sqlite3_int64)n,
	                        SQLITE_DESERIALIZE_FREEONCLOSE | SQLITE_DESERIALIZE_RESIZEABLE) !=
	            SQLITE_OK ||
	    !sl_acc_exec(a, "SELECT count(*) FROM snap.accounts; SELECT count(*) FROM snap.keys")) {
		snprintf(err, cap,
		         "accounts.store: redis: the snapshot in %s is not a database: %s", J_SNAP,
		         sqlite3_errmsg(a->db));
		sl_acc_exec(a, "DETACH snap");
		return -1;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	now = (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
	unindex(a,
	        "SELECT sha256 FROM main.keys WHERE sha256 NOT IN (SELECT sha256 FROM snap.keys) "
	        "UNION ALL SELECT sha256 FROM snap.keys WHERE until IS NOT NULL AND until <= ?1",
	        now, true);
	unindex(a,
	        "SELECT name FROM main.accounts WHERE name NOT IN (SELECT name FROM snap.accounts)",
	        now, false);
	if (!sl_acc_exec(a, "BEGIN; DELETE FROM main.keys; DELETE FROM main.accounts; "
	                    "INSERT INTO main.accounts SELECT * FROM snap.accounts; "
	                    "INSERT INTO main.keys SELECT * FROM snap.keys; COMMIT")) {
		snprintf(err, cap, "accounts.store: redis: the snapshot in %s does not fit: %s",
		         J_SNAP, sqlite3_errmsg(a->db));
		sl_acc_exec(a, "ROLLBACK");
		sl_acc_exec(a, "DETACH snap");
		return -1;
	}
	sl_acc_exec(a, "DETACH snap");
	if (sl_acc_load_all(a, p, now, "the journal's snapshot", err, cap) != 0)
		return -1;
	return (long long)ver;
}

/* A running node whose place the journal no longer holds: compacted past
 * it (it could not reach Redis while others compacted), or behind it (Redis
 * lost entries this node had, and another node's copy was made the
 * snapshot): it takes the snapshot and goes on from there. */
static void resync(struct sl_accounts *a)
{
	char err[256] = "";
	long long v = from_snapshot(a, a->policy, err, sizeof(err));

	if (v <= 0) {
		/* tried again every poll; said once a minute */
		if (a->log && minutely(a))
			fprintf(a->log,
			        "sluice: accounts: the journal no longer holds this node's place "
			        "(compacted past it, or lost) and its snapshot cannot be taken: "
			        "%s\n",
			        v < 0 ? err : "there is none");
		return;
	}
	if (a->log)
		fprintf(a->log,
		        "sluice: accounts: the journal no longer holds this node's place (it had "
		        "applied %lld entries: compacted past them, or lost): it took the "
		        "snapshot of %lld and goes on from there\n",
		        a->applied, v);
	a->applied = v;
}

int sl_acj_open(struct sl_accounts *a, const struct sl_policy *p, char *err, size_t cap)
{
	const char *url = p->store.url ? p->store.url : "redis://127.0.0.1:6379";
	const char *h = strncmp(url, "redis://", 8) == 0 ? url + 8 : url;
	const char *colon = strrchr(h, ':'), *slash;
	size_t hl;

	if (strchr(h, '@') != NULL) {
		snprintf(err, cap,
		         "accounts.store: redis: a URL with credentials is not supported");
		return SL_EINVAL;
	}
	hl = colon ? (size_t)(colon - h) : strcspn(h, "/");
	if (hl == 0 || hl >= sizeof(a->rhost)) {
		snprintf(err, cap, "accounts.store: redis: bad store.url '%s'", url);
		return SL_EINVAL;
	}
	memcpy(a->rhost, h, hl);
	a->rhost[hl] = '\0';
	a->rport = colon ? (int)strtol(colon + 1, NULL, 10) : 6379;
	slash = colon ? strchr(colon, '/') : NULL;
	(void)slash;
	if (sqlite3_open_v2(":memory:", &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	            SQLITE_OK ||
	    !sl_acc_exec(a, sl_acc_schema)) {
		snprintf(err, cap, "accounts: cannot make the in-memory copy");
		return SL_ENOMEM;
	}
	a->redis = true;
	sl_policy_ref((struct sl_policy *)p);
	a->policy = (struct sl_policy *)p;
	if (!redis_ok(a)) {
		snprintf(err, cap, "accounts.store: redis: cannot reach %s:%d", a->rhost, a->rport);
		return SL_EIO;
	}
	a->compact_after = p->account_store.compact_after;
	/* the snapshot, then the journal from it on; a compaction by another
	 * node in between moves the base past the snapshot: load the new one */
	for (int tries = 0;; tries++) {
		long long v = from_snapshot(a, p, err, cap), got;
		if (v < 0)
			return SL_EIO;
		a->applied = v;
		while ((got = sl_acj_catch_up(a)) > 0)
			;
		if (got == 0)
			break;
		if (tries == 3) {
			snprintf(err, cap,
			         "accounts.store: redis: the journal kept being compacted "
			         "past its snapshot");
			return SL_EIO;
		}
	}
	if (a->log)
		fprintf(a->log,
		        "sluice: accounts: %lld journal entries from %s:%d: %zu accounts, %zu "
		        "keys\n",
		        a->applied, a->rhost, a->rport, a->idx->naccounts, a->idx->nkeys);
	return 0;
}
