/* The accounts thread: the one owner of the durable store (sqlite: one
 * file, WAL, synchronous=NORMAL: a commit is in the OS before it is
 * answered, so a crash of the process loses nothing, and no fsync per
 * commit keeps an issued key usable within milliseconds; a power loss may
 * lose the commits since the last checkpoint) and the one writer of the
 * in-memory index.
 * Admin operations arrive on a queue, run here one at a time, and hand
 * their answer back through the request's done().
 *
 * The decisions to know: (1) every write goes to the file first, in one
 * transaction, and reaches the index only once it committed, so an
 * acknowledged change survives kill -9 and a failed one changed nothing;
 * (2) a worker never touches sqlite: the request path reads the index,
 * which this thread updates with single atomic publications (index.c);
 * (3) before each write the file is checked to still be the one opened and
 * writable, so an operator's chmod or a removed file answers 503 at once
 * instead of writes that vanish at the next start.
 *
 * With store: redis the same operations run on an in-memory sqlite copy
 * that journal.c keeps level with the journal in Redis. */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <hiredis/hiredis.h>
#include <sqlite3.h>
#include <sluice/error.h>
#include "accounts/service-int.h"
#include "policy/units.h"

#define PAGE_MAX     1000  /* accounts per list page */
#define METADATA_MAX 16384 /* bytes of an account's metadata JSON */
#define TITLE_MAX    256   /* bytes */
#define LABEL_MAX    128   /* bytes */
#define OP_RELOAD    100   /* internal: sl_accounts_reload */

/* ---- lookups (any thread) ---- */

static int src_by_key(const struct sl_account_src *s, const uint8_t sha256[32], int64_t now,
                      struct sl_live_account *out)
{
	return sl_acx_by_key(((const struct sl_accounts *)s)->idx, sha256, now, out);
}

static int src_by_name(const struct sl_account_src *s, const char *name, size_t len,
                       struct sl_live_account *out)
{
	return sl_acx_by_name(((const struct sl_accounts *)s)->idx, name, len, out);
}

const struct sl_account_src *sl_accounts_src(struct sl_accounts *a)
{
	return &a->src;
}

struct sl_accounts *sl_accounts_of(const struct sl_account_src *src)
{
	return (struct sl_accounts *)src;
}

int64_t sl_accounts_load_cpu_ms(const struct sl_accounts *a)
{
	return a->load_cpu_ms;
}

void sl_accounts_published(const struct sl_accounts *a, size_t *naccounts, size_t *nkeys)
{
	*naccounts = atomic_load_explicit(&a->pub_accounts, memory_order_relaxed);
	*nkeys = atomic_load_explicit(&a->pub_keys, memory_order_relaxed);
}

static void publish_counts(struct sl_accounts *a)
{
	atomic_store_explicit(&a->pub_accounts, a->idx->naccounts, memory_order_relaxed);
	atomic_store_explicit(&a->pub_keys, a->idx->nkeys, memory_order_relaxed);
}

void sl_accounts_counts(struct sl_accounts *a, size_t *naccounts, size_t *nkeys, size_t *bytes)
{
	*naccounts = a->idx->naccounts;
	*nkeys = a->idx->nkeys;
	*bytes = sl_acx_bytes(a->idx);
}

/* ---- answers ---- */

static void answer_json(struct sl_acc_req *r, int status, cJSON *o)
{
	r->status = status;
	free(r->out);
	r->out = o ? cJSON_PrintUnformatted(o) : NULL;
	r->outlen = r->out ? strlen(r->out) : 0;
	if (o && !r->out)
		r->status = 500;
	cJSON_Delete(o);
}

static void answer_error(struct sl_acc_req *r, int status, const char *code, const char *field,
                         const char *msg)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "error", code);
	if (field)
		cJSON_AddStringToObject(o, "field", field);
	cJSON_AddStringToObject(o, "message", msg);
	answer_json(r, status, o);
}

static void bad(struct sl_acc_req *r, const char *field, const char *msg)
{
	answer_error(r, 400, "invalid", field, msg);
}

void sl_acc_unavailable(struct sl_acc_req *r, const char *why)
{
	answer_error(r, 503, "store_unavailable", NULL, why);
}

/* ---- sqlite ---- */

const char sl_acc_schema[] =
        "CREATE TABLE IF NOT EXISTS accounts(name TEXT PRIMARY KEY, plan TEXT NOT NULL,"
        " title TEXT NOT NULL, status TEXT NOT NULL, overrides TEXT NOT NULL,"
        " metadata TEXT NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS keys(id TEXT PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE,"
        " account TEXT NOT NULL, prefix TEXT NOT NULL, label TEXT, created INTEGER NOT NULL,"
        " expires INTEGER, revoked INTEGER NOT NULL DEFAULT 0, until INTEGER) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS keys_account ON keys(account);"
        /* the sweep finds the keys that died since its last pass */
        "CREATE INDEX IF NOT EXISTS keys_until ON keys(until) WHERE until IS NOT NULL;"
        "CREATE INDEX IF NOT EXISTS keys_expires ON keys(expires) WHERE expires IS NOT NULL;";

sqlite3_stmt *sl_acc_prep(struct sl_accounts *a, const char *sql)
{
	sqlite3_stmt *st = NULL;

	if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK) {
		if (a->log)
			fprintf(a->log, "sluice: accounts: %s: %s\n", sql, sqlite3_errmsg(a->db));
		return NULL;
	}
	return st;
}

bool sl_acc_exec(struct sl_accounts *a, const char *sql)
{
	char *msg = NULL;

	if (sqlite3_exec(a->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
		if (a->log)
			fprintf(a->log, "sluice: accounts: %s: %s\n", sql, msg ? msg : "?");
		sqlite3_free(msg);
		return false;
	}
	return true;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
	if (s)
		sqlite3_bind_text(st, i, s, -1, SQLITE_TRANSIENT);
	else
		sqlite3_bind_null(st, i);
}

/* Whether the file is still the one opened, and writable. */
static bool writable(struct sl_accounts *a)
{
	struct stat sb;

	if (a->redis)
		return true; /* the journal in Redis is the store; sqlite is memory */
	if (stat(a->path, &sb) != 0 || sb.st_dev != a->dev || sb.st_ino != a->ino)
		return false;
	return (sb.st_mode & 0222) != 0;
}

static bool begin_write(struct sl_accounts *a, struct sl_acc_req *r)
{
	if (!writable(a)) {
		sl_acc_unavailable(r,
		                   "the account store file is not writable (or was moved); changes "
		                   "are refused, lookups keep serving from memory");
		return false;
	}
	if (!sl_acc_exec(a, "BEGIN IMMEDIATE")) {
		sl_acc_unavailable(r, "the account store cannot start a transaction");
		return false;
	}
	return true;
}

static bool commit(struct sl_accounts *a, struct sl_acc_req *r)
{
	/* store: redis: the change is in force once it is in the journal */
	if (a->redis && !r->replay && !sl_acj_append(a, r)) {
		sl_acc_exec(a, "ROLLBACK");
		return false;
	}
	if (!sl_acc_exec(a, "COMMIT")) {
		sl_acc_exec(a, "ROLLBACK");
		sl_acc_unavailable(r, "the account store could not commit the change");
		return false;
	}
	return true;
}

static void rollback(struct sl_accounts *a)
{
	sl_acc_exec(a, "ROLLBACK");
}

/* ---- validation ---- */

static bool name_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > SL_LIVE_NAME_MAX)
		return false;
	for (const char *p = s; *p; p++) {
		char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_' || c == '-' || c == '.' || c == '@' || c == '+'))
			return false;
	}
	return true;
}

/* The body's members must all be in allowed (NULL-terminated); else 400
 * naming the first unknown one. */
static bool only_fields(struct sl_acc_req *r, const char *const *allowed)
{
	const cJSON *it;

	if (r->body == NULL)
		return true;
	cJSON_ArrayForEach(it, r->body)
	{
		bool ok = false;
		for (size_t i = 0; allowed[i]; i++)
			if (it->string && strcmp(it->string, allowed[i]) == 0)
				ok = true;
		if (!ok) {
			char msg[200];
			snprintf(msg, sizeof(msg), "unknown field '%.64s'",
			         it->string ? it->string : "");
			bad(r, it->string ? it->string : "", msg);
			return false;
		}
	}
	return true;
}

/* Field name of body as a string (NULL when absent or null). Returns false
 * with a 400 when it is present with another type, or longer than max. */
static bool str_field(struct sl_acc_req *r, const char *name, size_t max, const char **out)
{
	const cJSON *v = r->body ? cJSON_GetObjectItemCaseSensitive(r->body, name) : NULL;

	*out = NULL;
	if (v == NULL || cJSON_IsNull(v))
		return true;
	if (!cJSON_IsString(v)) {
		char msg[96];
		snprintf(msg, sizeof(msg), "%s must be a string", name);
		bad(r, name, msg);
		return false;
	}
	if (strlen(v->valuestring) > max) {
		char msg[96];
		snprintf(msg, sizeof(msg), "%s is longer than %zu bytes", name, max);
		bad(r, name, msg);
		return false;
	}
	*out = v->valuestring;
	return true;
}

static bool plan_ok(struct sl_acc_req *r, const char *plan)
{
	char msg[200];

	if (strlen(plan) <= SL_LIVE_PLAN_MAX &&
	    sl_policy_plan_index(r->policy, plan, strlen(plan)) >= 0)
		return true;
	snprintf(msg, sizeof(msg), "unknown plan '%.64s' (declare it under plans:)", plan);
	bad(r, "plan", msg);
	return false;
}

/* Compile the overrides object o (members limit: value) into ov; null
 * members are skipped. Returns the count, or -1 with a 400 written. */
static int compile_overrides(struct sl_acc_req *r, const struct sl_policy *p, const cJSON *o,
                             struct sl_live_override *ov)
{
	const cJSON *it;
	int n = 0;

	cJSON_ArrayForEach(it, o)
	{
		char field[SL_LIVE_LIMIT_MAX + 16], err[300];
		char *text;
		int rc;

		if (cJSON_IsNull(it))
			continue;
		snprintf(field, sizeof(field), "overrides.%.63s", it->string ? it->string : "");
		if (n == SL_LIVE_OVERRIDES) {
			if (r)
				bad(r, "overrides", "an account holds at most 8 overrides");
			return -1;
		}
		if (!cJSON_IsString(it) && !cJSON_IsNumber(it) && !cJSON_IsObject(it)) {
			if (r)
				bad(r, field,
				    "an override is a value the limit accepts: \"20000/min\", "
				    "\"unlimited\", 50, or {\"rate\":\"900/min\",\"burst\":15}");
			return -1;
		}
		text = cJSON_IsString(it) ? NULL : cJSON_PrintUnformatted(it);
		if (!cJSON_IsString(it) && text == NULL)
			return -1;
		rc = sl_policy_override(p, it->string, text ? text : it->valuestring,
		                        strlen(text ? text : it->valuestring), &ov[n], err,
		                        sizeof(err));
		free(text);
		if (rc == SL_ENOENT) {
			char msg[200];
			snprintf(msg, sizeof(msg), "unknown limit '%.64s'", it->string);
			if (r)
				bad(r, field, msg);
			return -1;
		}
		if (rc != 0) {
			if (r)
				bad(r, field, err);
			return -1;
		}
		n++;
	}
	return n;
}

static bool is_static(struct sl_acc_req *r)
{
	if (!sl_policy_static_account(r->policy, r->account, strlen(r->account)))
		return false;
	answer_error(r, 409, "static_account", "account",
	             "this account is declared in the config (identify.accounts): change it there");
	return true;
}

/* ---- rows to JSON ---- */

static cJSON *time_or_null(int64_t s, bool null)
{
	char buf[32];

	if (null)
		return cJSON_CreateNull();
	sl_acc_format_time(s, buf);
	return cJSON_CreateString(buf);
}

static cJSON *parse_or_empty(const unsigned char *text)
{
	cJSON *o = text ? cJSON_Parse((const char *)text) : NULL;
	return o ? o : cJSON_CreateObject();
}

/* columns: id, prefix, label, created, expires, revoked, until, account */
#define KEY_COLS "id, prefix, label, created, expires, revoked, until, account"

static cJSON *key_json(sqlite3_stmt *st, int64_t now)
{
	cJSON *k = cJSON_CreateObject();
	bool revoked = sqlite3_column_int(st, 5) != 0;

	cJSON_AddStringToObject(k, "id", (const char *)sqlite3_column_text(st, 0));
	cJSON_AddStringToObject(k, "account", (const char *)sqlite3_column_text(st, 7));
	cJSON_AddStringToObject(k, "prefix", (const char *)sqlite3_column_text(st, 1));
	if (sqlite3_column_type(st, 2) == SQLITE_NULL)
		cJSON_AddNullToObject(k, "label");
	else
		cJSON_AddStringToObject(k, "label", (const char *)sqlite3_column_text(st, 2));
	cJSON_AddItemToObject(k, "created", time_or_null(sqlite3_column_int64(st, 3), false));
	cJSON_AddItemToObject(k, "expires",
	                      time_or_null(sqlite3_column_int64(st, 4),
	                                   sqlite3_column_type(st, 4) == SQLITE_NULL));
	cJSON_AddBoolToObject(k, "revoked", revoked);
	if (revoked && sqlite3_column_type(st, 6) != SQLITE_NULL) {
		int64_t until = sqlite3_column_int64(st, 6);
		/* until what time a rotated key still works (its grace) */
		cJSON_AddItemToObject(k, "valid_until", time_or_null(until / SL_NS_PER_SEC, false));
		cJSON_AddBoolToObject(k, "active", until > now);
	} else {
		cJSON_AddBoolToObject(k, "active", !revoked);
	}
	return k;
}

static cJSON *keys_of(struct sl_accounts *a, const char *account, int64_t now)
{
	sqlite3_stmt *st = sl_acc_prep(a, "SELECT " KEY_COLS
	                                  " FROM keys WHERE account = ? ORDER BY created, id");
	cJSON *arr = cJSON_CreateArray();

	if (st == NULL)
		return arr;
	bind_text(st, 1, account);
	while (sqlite3_step(st) == SQLITE_ROW)
		cJSON_AddItemToArray(arr, key_json(st, now));
	sqlite3_finalize(st);
	return arr;
}

/* columns: name, plan, title, status, overrides, metadata, created */
#define ACC_COLS "name, plan, title, status, overrides, metadata, created"

static cJSON *account_json(sqlite3_stmt *st)
{
	cJSON *o = cJSON_CreateObject();

	cJSON_AddStringToObject(o, "account", (const char *)sqlite3_column_text(st, 0));
	cJSON_AddStringToObject(o, "plan", (const char *)sqlite3_column_text(st, 1));
	cJSON_AddStringToObject(o, "title", (const char *)sqlite3_column_text(st, 2));
	cJSON_AddStringToObject(o, "status", (const char *)sqlite3_column_text(st, 3));
	cJSON_AddItemToObject(o, "overrides", parse_or_empty(sqlite3_column_text(st, 4)));
	cJSON_AddItemToObject(o, "metadata", parse_or_empty(sqlite3_column_text(st, 5)));
	cJSON_AddItemToObject(o, "created", time_or_null(sqlite3_column_int64(st, 6), false));
	return o;
}

/* The account row (NULL when absent). */
static cJSON *load_account(struct sl_accounts *a, const char *name, bool with_keys, int64_t now)
{
	sqlite3_stmt *st = sl_acc_prep(a, "SELECT " ACC_COLS " FROM accounts WHERE name = ?");
	cJSON *o = NULL;

	if (st == NULL)
		return NULL;
	bind_text(st, 1, name);
	if (sqlite3_step(st) == SQLITE_ROW)
		o = account_json(st);
	sqlite3_finalize(st);
	if (o && with_keys)
		cJSON_AddItemToObject(o, "keys", keys_of(a, name, now));
	return o;
}

/* Open a write on the stored account r->account: refused (409) for a
 * config account, a transaction begun, the account loaded (without its
 * keys). NULL once it has answered (409, 503, or 404 rolled back). */
static cJSON *begin_account_write(struct sl_accounts *a, struct sl_acc_req *r)
{
	cJSON *acc;

	if (is_static(r) || !begin_write(a, r))
		return NULL;
	acc = load_account(a, r->account, false, r->now);
	if (acc == NULL) {
		rollback(a);
		answer_error(r, 404, "not_found", "account", "no such account");
	}
	return acc;
}

/* Publish account o (as account_json made it) into the index, its
 * overrides compiled against p. Returns 0 or a negative code. */
static int publish(struct sl_accounts *a, const struct sl_policy *p, const cJSON *o)
{
	const char *name = cJSON_GetObjectItem(o, "account")->valuestring;
	const char *plan = cJSON_GetObjectItem(o, "plan")->valuestring;
	const char *status = cJSON_GetObjectItem(o, "status")->valuestring;
	struct sl_live_override ov[SL_LIVE_OVERRIDES];
	int n = compile_overrides(NULL, p, cJSON_GetObjectItem(o, "overrides"), ov);

	if (n < 0) {
		if (a->log)
			fprintf(a->log,
			        "sluice: accounts: account '%s': an override no longer compiles "
			        "against the config; its overrides are not applied\n",
			        name);
		n = 0;
	}
	return sl_acx_put_account(a->idx, name, strlen(name), plan, !strcmp(status, "suspended"),
	                          ov, (unsigned)n);
}

/* ---- operations ---- */

/* After a committed account write: the account as stored now, into the
 * index (publish) and as the answer with `status`. */
static void publish_answer(struct sl_accounts *a, struct sl_acc_req *r, const char *name,
                           int status)
{
	cJSON *o = load_account(a, name, true, r->now);

	if (o == NULL || publish(a, r->policy, o) != 0) {
		cJSON_Delete(o);
		answer_error(r, 500, "internal", NULL, "written, but not loaded: restart to apply");
		return;
	}
	answer_json(r, status, o);
}

static void op_create(struct sl_accounts *a, struct sl_acc_req *r)
{
	static const char *const fields[] = {"account",  "plan",   "title", "overrides",
	                                     "metadata", "status", NULL};
	struct sl_live_override ov[SL_LIVE_OVERRIDES];
	const char *name, *plan, *title, *status;
	const cJSON *overrides, *meta;
	char *ovtext = NULL, *metatext = NULL;
	sqlite3_stmt *st;
	int rc;

	if (!only_fields(r, fields) || !str_field(r, "account", SL_LIVE_NAME_MAX, &name) ||
	    !str_field(r, "plan", SL_LIVE_PLAN_MAX, &plan) ||
	    !str_field(r, "title", TITLE_MAX, &title) || !str_field(r, "status", 16, &status))
		return;
	if (name == NULL)
		return bad(r, "account", "account (its name) is required");
	if (!name_ok(name))
		return bad(r, "account",
		           "account names are 1 to 128 letters, digits, '_', '-', '.', '@' or '+'");
	snprintf(r->account, sizeof(r->account), "%s", name);
	if (plan == NULL)
		return bad(r, "plan", "plan is required");
	if (!plan_ok(r, plan))
		return;
	if (status && strcmp(status, "active") && strcmp(status, "suspended"))
		return bad(r, "status", "status is \"active\" or \"suspended\"");
	overrides = cJSON_GetObjectItemCaseSensitive(r->body, "overrides");
	if (overrides && !cJSON_IsNull(overrides) && !cJSON_IsObject(overrides))
		return bad(r, "overrides", "overrides must be an object of limit name to value");
	if (overrides && cJSON_IsObject(overrides) &&
	    compile_overrides(r, r->policy, overrides, ov) < 0)
		return;
	meta = cJSON_GetObjectItemCaseSensitive(r->body, "metadata");
	if (meta && !cJSON_IsNull(meta) && !cJSON_IsObject(meta))
		return bad(r, "metadata", "metadata must be an object");
	if (is_static(r))
		return;
	/* overrides without their nulls */
	cJSON *clean = cJSON_CreateObject();
	const cJSON *it;
	if (overrides && cJSON_IsObject(overrides))
		cJSON_ArrayForEach(it, overrides) if (!cJSON_IsNull(it))
		        cJSON_AddItemToObject(clean, it->string, cJSON_Duplicate(it, true));
	ovtext = cJSON_PrintUnformatted(clean);
	cJSON_Delete(clean);
	metatext = meta && cJSON_IsObject(meta) ? cJSON_PrintUnformatted(meta) : strdup("{}");
	if (!ovtext || !metatext) {
		answer_error(r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	if (strlen(metatext) > METADATA_MAX) {
		bad(r, "metadata", "metadata is larger than 16 KiB");
		goto out;
	}
	if (!begin_write(a, r))
		goto out;
	st = sl_acc_prep(a, "INSERT INTO accounts(" ACC_COLS ") VALUES(?,?,?,?,?,?,?)");
	if (st == NULL) {
		rollback(a);
		sl_acc_unavailable(r, "the account store cannot prepare the write");
		goto out;
	}
	bind_text(st, 1, name);
	bind_text(st, 2, plan);
	bind_text(st, 3, title ? title : name);
	bind_text(st, 4, status ? status : "active");
	bind_text(st, 5, ovtext);
	bind_text(st, 6, metatext);
	sqlite3_bind_int64(st, 7, r->now / SL_NS_PER_SEC);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc == SQLITE_CONSTRAINT) {
		rollback(a);
		answer_error(r, 409, "exists", "account", "an account of that name exists");
		goto out;
	}
	if (rc != SQLITE_DONE) {
		rollback(a);
		sl_acc_unavailable(r, sqlite3_errmsg(a->db));
		goto out;
	}
	if (commit(a, r))
		publish_answer(a, r, name, 201);
out:
	free(ovtext);
	free(metatext);
}

/* A config (YAML) account as the API shows an account: its plan, active,
 * nothing to override, one entry per key (the config keeps only their
 * digests: no id or prefix), and "static": true. */
static cJSON *static_json(const struct sl_policy *p, size_t ai)
{
	const struct sl_account *acc = &p->accounts[ai];
	cJSON *o = cJSON_CreateObject(), *keys;

	cJSON_AddStringToObject(o, "account", acc->name);
	if (acc->plan < p->nplans)
		cJSON_AddStringToObject(o, "plan", p->plans[acc->plan].name);
	else
		cJSON_AddNullToObject(o, "plan");
	cJSON_AddStringToObject(o, "title", "");
	cJSON_AddStringToObject(o, "status", "active");
	cJSON_AddItemToObject(o, "overrides", cJSON_CreateObject());
	cJSON_AddItemToObject(o, "metadata", cJSON_CreateObject());
	keys = cJSON_AddArrayToObject(o, "keys");
	for (size_t i = 0; i < p->nkeys; i++) {
		if (p->keys[i].account != ai)
			continue;
		cJSON *k = cJSON_CreateObject();
		cJSON_AddNullToObject(k, "id");
		cJSON_AddStringToObject(k, "account", acc->name);
		cJSON_AddNullToObject(k, "prefix");
		cJSON_AddStringToObject(k, "label", "config");
		cJSON_AddNullToObject(k, "created");
		cJSON_AddNullToObject(k, "expires");
		cJSON_AddBoolToObject(k, "revoked", false);
		cJSON_AddBoolToObject(k, "static", true);
		cJSON_AddItemToArray(keys, k);
	}
	cJSON_AddNullToObject(o, "created");
	cJSON_AddBoolToObject(o, "static", true);
	return o;
}

static void op_get(struct sl_accounts *a, struct sl_acc_req *r)
{
	cJSON *o = load_account(a, r->account, true, r->now);

	if (o != NULL)
		return answer_json(r, 200, o);
	for (size_t i = 0; i < r->policy->naccounts; i++)
		if (!strcmp(r->policy->accounts[i].name, r->account))
			return answer_json(r, 200, static_json(r->policy, i));
	answer_error(r, 404, "not_found", "account", "no such account");
}

static int by_static_name(const void *x, const void *y, void *policy)
{
	const struct sl_policy *p = policy;

	return strcmp(p->accounts[*(const size_t *)x].name, p->accounts[*(const size_t *)y].name);
}

/* A page of accounts by name: the stored ones and the config's (which the
 * store cannot hold: a create of such a name is refused), merged. */
static void op_list(struct sl_accounts *a, struct sl_acc_req *r)
{
	const struct sl_policy *p = r->policy;
	sqlite3_stmt *st =
	        sl_acc_prep(a, r->plan[0] ? "SELECT " ACC_COLS " FROM accounts WHERE name > ? "
	                                    "AND plan = ? ORDER BY name LIMIT ?"
	                                  : "SELECT " ACC_COLS " FROM accounts WHERE name > ? "
	                                    "ORDER BY name LIMIT ?");
	size_t *sv = p->naccounts ? malloc(p->naccounts * sizeof(*sv)) : NULL;
	size_t ns = 0, si = 0;
	cJSON *o, *arr;
	unsigned n = 0;
	char last[SL_LIVE_NAME_MAX + 1] = "";
	bool more = false, row;

	if (st == NULL || (p->naccounts && sv == NULL)) {
		sqlite3_finalize(st);
		free(sv);
		return sl_acc_unavailable(r, "the account store cannot be read");
	}
	for (size_t i = 0; i < p->naccounts; i++) {
		const struct sl_account *acc = &p->accounts[i];
		if (strcmp(acc->name, r->after) > 0 &&
		    (!r->plan[0] ||
		     (acc->plan < p->nplans && !strcmp(p->plans[acc->plan].name, r->plan))))
			sv[ns++] = i;
	}
	if (ns > 1)
		qsort_r(sv, ns, sizeof(*sv), by_static_name, (void *)p);
	bind_text(st, 1, r->after);
	if (r->plan[0])
		bind_text(st, 2, r->plan);
	sqlite3_bind_int(st, r->plan[0] ? 3 : 2, (int)r->limit + 1);
	o = cJSON_CreateObject();
	arr = cJSON_AddArrayToObject(o, "accounts");
	row = sqlite3_step(st) == SQLITE_ROW;
	while (row || si < ns) {
		if (n == r->limit) {
			more = true;
			break;
		}
		cJSON *acc;
		if (si < ns && (!row || strcmp(p->accounts[sv[si]].name,
		                               (const char *)sqlite3_column_text(st, 0)) < 0)) {
			acc = static_json(p, sv[si]);
			snprintf(last, sizeof(last), "%s", p->accounts[sv[si++]].name);
		} else {
			acc = account_json(st);
			snprintf(last, sizeof(last), "%s",
			         (const char *)sqlite3_column_text(st, 0));
			cJSON_AddItemToObject(acc, "keys", keys_of(a, last, r->now));
			row = sqlite3_step(st) == SQLITE_ROW;
		}
		cJSON_AddItemToArray(arr, acc);
		n++;
	}
	sqlite3_finalize(st);
	free(sv);
	if (more)
		cJSON_AddStringToObject(o, "next", last);
	else
		cJSON_AddNullToObject(o, "next");
	answer_json(r, 200, o);
}

static void op_patch(struct sl_accounts *a, struct sl_acc_req *r)
{
	static const char *const fields[] = {"plan",     "title",  "overrides",
	                                     "metadata", "status", NULL};
	struct sl_live_override ov[SL_LIVE_OVERRIDES];
	const char *plan, *title, *status;
	const cJSON *overrides, *meta, *it;
	cJSON *cur = NULL, *merged = NULL;
	char *ovtext = NULL, *metatext = NULL;
	sqlite3_stmt *st;
	int rc;

	if (!only_fields(r, fields) || !str_field(r, "plan", SL_LIVE_PLAN_MAX, &plan) ||
	    !str_field(r, "title", TITLE_MAX, &title) || !str_field(r, "status", 16, &status))
		return;
	if (plan && !plan_ok(r, plan))
		return;
	if (status && strcmp(status, "active") && strcmp(status, "suspended"))
		return bad(r, "status", "status is \"active\" or \"suspended\"");
	overrides = cJSON_GetObjectItemCaseSensitive(r->body, "overrides");
	if (overrides && !cJSON_IsNull(overrides) && !cJSON_IsObject(overrides))
		return bad(r, "overrides",
		           "overrides must be an object of limit name to value (null removes one)");
	meta = cJSON_GetObjectItemCaseSensitive(r->body, "metadata");
	if (meta && !cJSON_IsNull(meta) && !cJSON_IsObject(meta))
		return bad(r, "metadata", "metadata must be an object");
	cur = begin_account_write(a, r);
	if (cur == NULL)
		return;
	merged = cJSON_Duplicate(cJSON_GetObjectItem(cur, "overrides"), true);
	if (overrides && cJSON_IsObject(overrides))
		cJSON_ArrayForEach(it, overrides)
		{
			cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
			if (!cJSON_IsNull(it))
				cJSON_AddItemToObject(merged, it->string,
				                      cJSON_Duplicate(it, true));
		}
	else if (overrides && cJSON_IsNull(overrides))
		cJSON_ArrayForEach(it, cJSON_GetObjectItem(cur, "overrides"))
		        cJSON_DeleteItemFromObjectCaseSensitive(merged, it->string);
	/* every override the account will hold must compile (the new ones
	 * name the field they came in; old ones failing means a reload
	 * changed the limit: they are reported the same way) */
	if (compile_overrides(r, r->policy, merged, ov) < 0) {
		rollback(a);
		goto out;
	}
	ovtext = cJSON_PrintUnformatted(merged);
	metatext = meta && cJSON_IsObject(meta)
	                   ? cJSON_PrintUnformatted(meta)
	                   : cJSON_PrintUnformatted(cJSON_GetObjectItem(cur, "metadata"));
	if (!ovtext || !metatext || strlen(metatext) > METADATA_MAX) {
		rollback(a);
		if (metatext && strlen(metatext) > METADATA_MAX)
			bad(r, "metadata", "metadata is larger than 16 KiB");
		else
			answer_error(r, 500, "internal", NULL, "out of memory");
		goto out;
	}
	st = sl_acc_prep(a, "UPDATE accounts SET plan = ?, title = ?, status = ?, overrides = ?, "
	                    "metadata = ? WHERE name = ?");
	if (st == NULL) {
		rollback(a);
		sl_acc_unavailable(r, "the account store cannot prepare the write");
		goto out;
	}
	bind_text(st, 1, plan ? plan : cJSON_GetObjectItem(cur, "plan")->valuestring);
	bind_text(st, 2, title ? title : cJSON_GetObjectItem(cur, "title")->valuestring);
	bind_text(st, 3, status ? status : cJSON_GetObjectItem(cur, "status")->valuestring);
	bind_text(st, 4, ovtext);
	bind_text(st, 5, metatext);
	bind_text(st, 6, r->account);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rollback(a);
		sl_acc_unavailable(r, sqlite3_errmsg(a->db));
		goto out;
	}
	if (commit(a, r))
		publish_answer(a, r, r->account, 200);
out:
	cJSON_Delete(cur);
	cJSON_Delete(merged);
	free(ovtext);
	free(metatext);
}

static void op_delete(struct sl_accounts *a, struct sl_acc_req *r)
{
	sqlite3_stmt *st;
	uint8_t(*shas)[32] = NULL;
	size_t n = 0, cap = 0;
	int rc;

	if (r->body && cJSON_GetArraySize(r->body) > 0)
		return bad(r, cJSON_GetArrayItem(r->body, 0)->string,
		           "DELETE takes no body fields");
	if (is_static(r))
		return;
	if (!begin_write(a, r))
		return;
	st = sl_acc_prep(a, "SELECT sha256 FROM keys WHERE account = ?");
	if (st == NULL) {
		rollback(a);
		return sl_acc_unavailable(r, "the account store cannot be read");
	}
	bind_text(st, 1, r->account);
	while (sqlite3_step(st) == SQLITE_ROW) {
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			void *ns = realloc(shas, nc * 32);
			if (!ns)
				break;
			shas = ns;
			cap = nc;
		}
		if (sqlite3_column_bytes(st, 0) == 32)
			memcpy(shas[n++], sqlite3_column_blob(st, 0), 32);
	}
	sqlite3_finalize(st);
	st = sl_acc_prep(a, "DELETE FROM accounts WHERE name = ?");
	rc = st ? (bind_text(st, 1, r->account), sqlite3_step(st)) : SQLITE_ERROR;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rollback(a);
		free(shas);
		return sl_acc_unavailable(r, sqlite3_errmsg(a->db));
	}
	if (sqlite3_changes(a->db) == 0) {
		rollback(a);
		free(shas);
		return answer_error(r, 404, "not_found", "account", "no such account");
	}
	st = sl_acc_prep(a, "DELETE FROM keys WHERE account = ?");
	rc = st ? (bind_text(st, 1, r->account), sqlite3_step(st)) : SQLITE_ERROR;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rollback(a);
		free(shas);
		return sl_acc_unavailable(r, sqlite3_errmsg(a->db));
	}
	if (!commit(a, r)) {
		free(shas);
		return;
	}
	for (size_t i = 0; i < n; i++)
		sl_acx_del_key(a->idx, shas[i]);
	sl_acx_del_account(a->idx, r->account, strlen(r->account));
	free(shas);
	answer_json(r, 204, NULL);
}

/* Insert a key for account (inside a transaction); *k gets its JSON with
 * "key" shown. Returns SQLITE_DONE or the error. */
static int insert_key(struct sl_accounts *a, struct sl_acc_req *r, const char *account,
                      const char *label, bool has_expires, int64_t expires, cJSON **k,
                      uint8_t sha[32], char id[SL_ACC_ID_MAX])
{
	char key[80], prefix[16];
	sqlite3_stmt *st;
	int rc;

	if (r->replay) {
		/* another node made this key: its digest, id and prefix */
		if (!r->has_gen)
			return SQLITE_ERROR;
		memcpy(sha, r->gen_sha, 32);
		snprintf(id, SL_ACC_ID_MAX, "%s", r->gen_id);
		snprintf(prefix, sizeof(prefix), "%s", r->gen_prefix);
		key[0] = '\0';
	} else {
		if (sl_acc_new_key(a->key_prefix, key, sizeof(key)) != 0 ||
		    sl_acc_new_id(id, SL_ACC_ID_MAX) != 0)
			return SQLITE_ERROR;
		sl_acc_sha256(key, strlen(key), sha);
		snprintf(prefix, sizeof(prefix), "%.12s", key);
		r->has_gen = true;
		memcpy(r->gen_sha, sha, 32);
		snprintf(r->gen_id, sizeof(r->gen_id), "%s", id);
		snprintf(r->gen_prefix, sizeof(r->gen_prefix), "%s", prefix);
	}
	st = sl_acc_prep(a,
	                 "INSERT INTO keys(id, sha256, account, prefix, label, created, expires) "
	                 "VALUES(?,?,?,?,?,?,?)");
	if (st == NULL)
		return SQLITE_ERROR;
	bind_text(st, 1, id);
	sqlite3_bind_blob(st, 2, sha, 32, SQLITE_TRANSIENT);
	bind_text(st, 3, account);
	bind_text(st, 4, prefix);
	bind_text(st, 5, label);
	sqlite3_bind_int64(st, 6, r->now / SL_NS_PER_SEC);
	if (has_expires)
		sqlite3_bind_int64(st, 7, expires);
	else
		sqlite3_bind_null(st, 7);
	rc = sqlite3_step(st);
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE)
		return rc;
	st = sl_acc_prep(a, "SELECT " KEY_COLS " FROM keys WHERE id = ?");
	if (st == NULL)
		return SQLITE_ERROR;
	bind_text(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		*k = key_json(st, r->now);
		if (key[0])
			cJSON_AddStringToObject(*k, "key", key);
	}
	sqlite3_finalize(st);
	memset(key, 0, sizeof(key));
	return *k ? SQLITE_DONE : SQLITE_ERROR;
}

static int64_t until_of(bool has_expires, int64_t expires)
{
	return has_expires ? expires * SL_NS_PER_SEC : INT64_MAX;
}

static void op_key_issue(struct sl_accounts *a, struct sl_acc_req *r)
{
	static const char *const fields[] = {"label", "expires", NULL};
	const char *label, *expires;
	int64_t exp = 0;
	cJSON *k = NULL, *acc;
	uint8_t sha[32];
	char id[SL_ACC_ID_MAX];
	int rc;

	if (!only_fields(r, fields) || !str_field(r, "label", LABEL_MAX, &label) ||
	    !str_field(r, "expires", 64, &expires))
		return;
	if (expires && sl_acc_parse_time(expires, &exp) != 0)
		return bad(r, "expires",
		           "expires is an RFC 3339 time such as \"2027-01-01T00:00:00Z\", or null");
	if (expires && exp * SL_NS_PER_SEC <= r->now)
		return bad(r, "expires", "expires is in the past");
	acc = begin_account_write(a, r);
	if (acc == NULL)
		return;
	cJSON_Delete(acc);
	rc = insert_key(a, r, r->account, label, expires != NULL, exp, &k, sha, id);
	if (rc != SQLITE_DONE) {
		rollback(a);
		cJSON_Delete(k);
		return sl_acc_unavailable(r, sqlite3_errmsg(a->db));
	}
	if (!commit(a, r)) {
		cJSON_Delete(k);
		return;
	}
	if (sl_acx_put_key(a->idx, sha, r->account, strlen(r->account),
	                   until_of(expires != NULL, exp)) != 0) {
		cJSON_Delete(k);
		return answer_error(r, 500, "internal", NULL,
		                    "written, but not loaded: restart to apply");
	}
	answer_json(r, 201, k);
}

static void op_key_list(struct sl_accounts *a, struct sl_acc_req *r)
{
	cJSON *acc = load_account(a, r->account, false, r->now), *o;

	if (acc == NULL)
		return answer_error(r, 404, "not_found", "account", "no such account");
	cJSON_Delete(acc);
	o = cJSON_CreateObject();
	cJSON_AddItemToObject(o, "keys", keys_of(a, r->account, r->now));
	answer_json(r, 200, o);
}

struct key_row {
	char account[SL_LIVE_NAME_MAX + 1];
	char label[LABEL_MAX + 1];
	bool has_label, has_expires, revoked;
	int64_t expires, until;
	uint8_t sha[32];
};

static int load_key(struct sl_accounts *a, const char *id, struct key_row *k, cJSON **json,
                    int64_t now)
{
	sqlite3_stmt *st = sl_acc_prep(a, "SELECT " KEY_COLS ", sha256 FROM keys WHERE id = ?");
	int rc = SL_ENOENT;

	if (st == NULL)
		return SL_EIO;
	bind_text(st, 1, id);
	if (sqlite3_step(st) == SQLITE_ROW) {
		memset(k, 0, sizeof(*k));
		snprintf(k->account, sizeof(k->account), "%s", sqlite3_column_text(st, 7));
		k->has_label = sqlite3_column_type(st, 2) != SQLITE_NULL;
		if (k->has_label)
			snprintf(k->label, sizeof(k->label), "%s", sqlite3_column_text(st, 2));
		k->has_expires = sqlite3_column_type(st, 4) != SQLITE_NULL;
		k->expires = sqlite3_column_int64(st, 4);
		k->revoked = sqlite3_column_int(st, 5) != 0;
		k->until = sqlite3_column_type(st, 6) == SQLITE_NULL ? INT64_MAX
		                                                     : sqlite3_column_int64(st, 6);
		if (sqlite3_column_bytes(st, 8) == 32)
			memcpy(k->sha, sqlite3_column_blob(st, 8), 32);
		if (json)
			*json = key_json(st, now);
		rc = 0;
	}
	sqlite3_finalize(st);
	return rc;
}

static void op_key_get(struct sl_accounts *a, struct sl_acc_req *r)
{
	struct key_row k;
	cJSON *j = NULL;

	if (load_key(a, r->id, &k, &j, r->now) != 0)
		return answer_error(r, 404, "not_found", "id", "no such key");
	answer_json(r, 200, j);
}

/* "24h", "90s", "0", or a number of seconds. */
static bool grace_of(struct sl_acc_req *r, int64_t *ns)
{
	const cJSON *g = r->body ? cJSON_GetObjectItemCaseSensitive(r->body, "grace") : NULL;

	*ns = 0;
	if (g == NULL || cJSON_IsNull(g))
		return true;
	if (cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble <= 366.0 * 86400) {
		*ns = (int64_t)(g->valuedouble * SL_NS_PER_SEC);
		return true;
	}
	if (cJSON_IsString(g) && sl_parse_duration(g->valuestring, ns) == 0 && *ns >= 0 &&
	    *ns <= 366 * SL_NS_PER_DAY)
		return true;
	bad(r, "grace", "grace is a duration such as \"24h\", \"30m\" or \"0\" (at most 366d)");
	return false;
}

static void op_key_rotate(struct sl_accounts *a, struct sl_acc_req *r)
{
	static const char *const fields[] = {"grace", NULL};
	struct key_row old;
	int64_t grace, until;
	cJSON *k = NULL;
	uint8_t sha[32];
	char id[SL_ACC_ID_MAX];
	sqlite3_stmt *st;
	int rc;

	if (!only_fields(r, fields) || !grace_of(r, &grace))
		return;
	if (!begin_write(a, r))
		return;
	rc = load_key(a, r->id, &old, NULL, r->now);
	if (rc != 0) {
		rollback(a);
		return answer_error(r, 404, "not_found", "id", "no such key");
	}
	if (old.revoked) {
		rollback(a);
		return answer_error(r, 409, "revoked", "id", "the key is revoked already");
	}
	rc = insert_key(a, r, old.account, old.has_label ? old.label : NULL, old.has_expires,
	                old.expires, &k, sha, id);
	until = r->now + grace;
	if (rc == SQLITE_DONE) {
		st = sl_acc_prep(a, "UPDATE keys SET revoked = 1, until = ? WHERE id = ?");
		rc = st ? (sqlite3_bind_int64(st, 1, until), bind_text(st, 2, r->id),
		           sqlite3_step(st))
		        : SQLITE_ERROR;
		sqlite3_finalize(st);
	}
	if (rc != SQLITE_DONE) {
		rollback(a);
		cJSON_Delete(k);
		return sl_acc_unavailable(r, sqlite3_errmsg(a->db));
	}
	if (!commit(a, r)) {
		cJSON_Delete(k);
		return;
	}
	sl_acx_put_key(a->idx, sha, old.account, strlen(old.account),
	               until_of(old.has_expires, old.expires));
	if (grace == 0) {
		sl_acx_del_key(a->idx, old.sha);
	} else {
		int64_t u = until_of(old.has_expires, old.expires);
		sl_acx_put_key(a->idx, old.sha, old.account, strlen(old.account),
		               until < u ? until : u);
	}
	cJSON_AddStringToObject(k, "replaces", r->id);
	answer_json(r, 201, k);
}

static void op_key_revoke(struct sl_accounts *a, struct sl_acc_req *r)
{
	struct key_row k;
	sqlite3_stmt *st;
	int rc;

	if (!begin_write(a, r))
		return;
	if (load_key(a, r->id, &k, NULL, r->now) != 0) {
		rollback(a);
		return answer_error(r, 404, "not_found", "id", "no such key");
	}
	st = sl_acc_prep(a, "UPDATE keys SET revoked = 1, until = ? WHERE id = ?");
	rc = st ? (sqlite3_bind_int64(st, 1, k.until < r->now ? k.until : r->now),
	           bind_text(st, 2, r->id), sqlite3_step(st))
	        : SQLITE_ERROR;
	sqlite3_finalize(st);
	if (rc != SQLITE_DONE) {
		rollback(a);
		return sl_acc_unavailable(r, sqlite3_errmsg(a->db));
	}
	if (!commit(a, r))
		return;
	sl_acx_del_key(a->idx, k.sha);
	answer_json(r, 204, NULL);
}

/* ---- load and reload ---- */

int sl_acc_load_all(struct sl_accounts *a, const struct sl_policy *p, int64_t now, const char *from,
                    char *err, size_t cap)
{
	sqlite3_stmt *st;
	size_t nacc = 0, nkeys = 0, missing_plan = 0;
	int rc = 0;
	struct timespec t0, t1, t2, c0, c2;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	sl_acc_exec(a, "BEGIN");
	st = sl_acc_prep(a, "SELECT (SELECT count(*) FROM accounts), (SELECT count(*) FROM keys)");
	if (st && sqlite3_step(st) == SQLITE_ROW) {
		nacc = (size_t)sqlite3_column_int64(st, 0);
		nkeys = (size_t)sqlite3_column_int64(st, 1);
	}
	sqlite3_finalize(st);
	if (sl_acx_reserve(a->idx, nacc, nkeys) != 0) {
		snprintf(err, cap, "out of memory for %zu accounts and %zu keys", nacc, nkeys);
		sl_acc_exec(a, "COMMIT");
		return SL_ENOMEM;
	}
	st = sl_acc_prep(a, "SELECT name, plan, status, overrides FROM accounts");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *name = (const char *)sqlite3_column_text(st, 0);
		const char *plan = (const char *)sqlite3_column_text(st, 1);
		const char *status = (const char *)sqlite3_column_text(st, 2);
		const char *ovt = (const char *)sqlite3_column_text(st, 3);
		struct sl_live_override ov[SL_LIVE_OVERRIDES];
		int n = 0;

		if (sl_policy_plan_index(p, plan, strlen(plan)) < 0)
			missing_plan++;
		if (ovt && strcmp(ovt, "{}") != 0) {
			cJSON *o = cJSON_Parse(ovt);
			n = o ? compile_overrides(NULL, p, o, ov) : -1;
			cJSON_Delete(o);
			if (n < 0) {
				if (a->log)
					fprintf(a->log,
					        "sluice: accounts: account '%s': its overrides do "
					        "not "
					        "compile against this config and are not applied\n",
					        name);
				n = 0;
			}
		}
		rc = sl_acx_put_account(a->idx, name, strlen(name), plan,
		                        status && !strcmp(status, "suspended"), ov, (unsigned)n);
		if (rc != 0)
			break;
	}
	sqlite3_finalize(st);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	st = rc ? NULL
	        : sl_acc_prep(
	                  a, "SELECT sha256, account, expires, until FROM keys WHERE until IS NULL "
	                     "OR until > ?");
	if (st)
		sqlite3_bind_int64(st, 1, now);
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *acc = (const char *)sqlite3_column_text(st, 1);
		bool has_exp = sqlite3_column_type(st, 2) != SQLITE_NULL;
		int64_t u = until_of(has_exp, sqlite3_column_int64(st, 2));
		if (sqlite3_column_type(st, 3) != SQLITE_NULL && sqlite3_column_int64(st, 3) < u)
			u = sqlite3_column_int64(st, 3);
		if (sqlite3_column_bytes(st, 0) != 32)
			continue;
		rc = sl_acx_put_key(a->idx, sqlite3_column_blob(st, 0), acc, strlen(acc), u);
		if (rc == SL_ENOENT)
			rc = 0; /* a key of a deleted account */
		if (rc != 0)
			break;
	}
	sqlite3_finalize(st);
	sl_acc_exec(a, "COMMIT");
	if (rc != 0) {
		snprintf(err, cap, "loading the account store: %s", sl_strerror(rc));
		return rc;
	}
	clock_gettime(CLOCK_MONOTONIC, &t2);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c2);
	a->load_cpu_ms = (c2.tv_sec - c0.tv_sec) * 1000 + (c2.tv_nsec - c0.tv_nsec) / 1000000;
	if (a->log)
		fprintf(a->log,
		        "sluice: accounts: loaded %zu accounts in %lld ms and %zu keys in %lld ms "
		        "(%lld ms of CPU) from %s\n",
		        a->idx->naccounts,
		        (long long)((t1.tv_sec - t0.tv_sec) * 1000 +
		                    (t1.tv_nsec - t0.tv_nsec) / 1000000),
		        a->idx->nkeys,
		        (long long)((t2.tv_sec - t1.tv_sec) * 1000 +
		                    (t2.tv_nsec - t1.tv_nsec) / 1000000),
		        (long long)a->load_cpu_ms, from);
	if (missing_plan && a->log)
		fprintf(a->log,
		        "sluice: accounts: %zu stored accounts are on plans the config does not "
		        "declare: they get no per-plan limits until moved (PATCH plan)\n",
		        missing_plan);
	return 0;
}

struct reload_wait {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void reload_done(struct sl_acc_req *r)
{
	struct reload_wait *w = r->arg;

	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void op_reload(struct sl_accounts *a, struct sl_acc_req *r)
{
	sqlite3_stmt *st = sl_acc_prep(a, "SELECT plan, count(*) FROM accounts GROUP BY plan");
	char msg[512];
	size_t used = 0;
	cJSON *o;

	msg[0] = '\0';
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		const char *plan = (const char *)sqlite3_column_text(st, 0);
		if (sl_policy_plan_index(r->policy, plan, strlen(plan)) < 0 && used < sizeof(msg))
			used += (size_t)snprintf(msg + used, sizeof(msg) - used,
			                         "%splan '%s' (%lld stored accounts)",
			                         used ? ", " : "", plan,
			                         sqlite3_column_int64(st, 1));
	}
	sqlite3_finalize(st);
	if (used) {
		r->status = 409;
		r->out = strdup(msg);
		return;
	}
	st = sl_acc_prep(a, "SELECT " ACC_COLS " FROM accounts WHERE overrides != '{}'");
	while (st && sqlite3_step(st) == SQLITE_ROW) {
		o = account_json(st);
		publish(a, r->policy, o);
		cJSON_Delete(o);
	}
	sqlite3_finalize(st);
	if (a->redis) {
		/* later replays compile against the new config */
		sl_policy_ref(r->policy);
		sl_policy_unref(a->policy);
		a->policy = r->policy;
		a->compact_after = r->policy->account_store.compact_after;
	}
	r->status = 200;
}

int sl_accounts_reload(struct sl_accounts *a, struct sl_policy *p, char *err, size_t cap)
{
	struct reload_wait w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
	struct sl_acc_req r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.op = OP_RELOAD;
	r.policy = p;
	r.done = reload_done;
	r.arg = &w;
	if (sl_accounts_submit(a, &r) != 0) {
		snprintf(err, cap, "the accounts thread is not running");
		return SL_EIO;
	}
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	rc = r.status == 200 ? 0 : SL_ECONFIG;
	if (rc)
		snprintf(err, cap,
		         "the new config drops %s: move those accounts first (PATCH plan); the old "
		         "config keeps serving",
		         r.out ? r.out : "plans in use");
	free(r.out);
	return rc;
}

/* ---- the thread ---- */

static void run_once(struct sl_accounts *a, struct sl_acc_req *r);

/* One operation; with store: redis, a write that lost the race for the
 * journal is run again on top of what won (a few times at most). */
void sl_acc_run(struct sl_accounts *a, struct sl_acc_req *r)
{
	for (int i = 0; i < 5; i++) {
		r->retry = false;
		r->has_gen = r->replay && r->has_gen;
		free(r->out);
		r->out = NULL;
		run_once(a, r);
		if (!r->retry)
			return;
		sl_acj_catch_up(a); /* what won the race, then this change again */
	}
}

static void run_once(struct sl_accounts *a, struct sl_acc_req *r)
{
	r->status = 500;
	r->out = NULL;
	switch (r->op) {
	case SL_ACC_CREATE:
		op_create(a, r);
		break;
	case SL_ACC_GET:
		op_get(a, r);
		break;
	case SL_ACC_LIST:
		op_list(a, r);
		break;
	case SL_ACC_PATCH:
		op_patch(a, r);
		break;
	case SL_ACC_DELETE:
		op_delete(a, r);
		break;
	case SL_ACC_KEY_ISSUE:
		op_key_issue(a, r);
		break;
	case SL_ACC_KEY_LIST:
		op_key_list(a, r);
		break;
	case SL_ACC_KEY_GET:
		op_key_get(a, r);
		break;
	case SL_ACC_KEY_ROTATE:
		op_key_rotate(a, r);
		break;
	case SL_ACC_KEY_REVOKE:
		op_key_revoke(a, r);
		break;
	case OP_RELOAD:
		op_reload(a, r);
		break;
	default:
		answer_error(r, 500, "internal", NULL, "unknown operation");
		break;
	}
}

/* Keys that expired or whose rotation grace ended since the last pass
 * leave the index (lookups already refuse them by their time; this gives
 * the memory back and makes sluice_keys_loaded true). Found through the
 * partial indexes on until and expires, so a pass costs what died since
 * the last one, not a scan. The rows stay: GET /v1/keys/{id} still shows
 * them. */
static void sweep(struct sl_accounts *a, int64_t now)
{
	sqlite3_stmt *st =
	        sl_acc_prep(a, "SELECT sha256 FROM keys WHERE until <= ?1 AND until > ?2 "
	                       "UNION ALL SELECT sha256 FROM keys WHERE expires <= ?3 AND "
	                       "expires > ?4");

	if (st == NULL)
		return;
	sqlite3_bind_int64(st, 1, now);
	sqlite3_bind_int64(st, 2, a->swept);
	sqlite3_bind_int64(st, 3, now / SL_NS_PER_SEC);
	sqlite3_bind_int64(st, 4, a->swept / SL_NS_PER_SEC);
	while (sqlite3_step(st) == SQLITE_ROW)
		if (sqlite3_column_bytes(st, 0) == 32)
			sl_acx_del_key(a->idx, sqlite3_column_blob(st, 0));
	sqlite3_finalize(st);
	a->swept = now - now % SL_NS_PER_SEC; /* whole seconds: expires is in seconds */
	publish_counts(a);
}

static void *thread_main(void *arg)
{
	struct sl_accounts *a = arg;

	pthread_mutex_lock(&a->mu);
	for (;;) {
		while (a->head == NULL && !a->stop) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_nsec += 100 * 1000000L; /* reclaim at least every 100 ms */
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			if (pthread_cond_timedwait(&a->cv, &a->mu, &ts) == ETIMEDOUT)
				break;
		}
		if (a->redis) {
			/* other nodes' changes: every 100 ms, however busy this
			 * thread is with its own node's requests */
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			int64_t t = (int64_t)now.tv_sec * SL_NS_PER_SEC + now.tv_nsec;
			if (t - a->polled >= 100 * 1000000LL) {
				a->polled = t;
				pthread_mutex_unlock(&a->mu);
				sl_acj_catch_up(a);
				publish_counts(a);
				pthread_mutex_lock(&a->mu);
			}
		}
		{
			struct timespec wall;
			clock_gettime(CLOCK_REALTIME, &wall);
			int64_t t = (int64_t)wall.tv_sec * SL_NS_PER_SEC + wall.tv_nsec;
			if (t - a->swept >= SL_NS_PER_SEC) {
				pthread_mutex_unlock(&a->mu);
				sweep(a, t);
				pthread_mutex_lock(&a->mu);
			}
		}
		if (a->head == NULL && !a->stop) {
			pthread_mutex_unlock(&a->mu);
			sl_acx_reclaim(a->idx);
			pthread_mutex_lock(&a->mu);
			continue;
		}
		if (a->head == NULL && a->stop)
			break;
		struct sl_acc_req *r = a->head;
		a->head = r->next;
		if (a->head == NULL)
			a->tail = NULL;
		pthread_mutex_unlock(&a->mu);
		sl_acc_run(a, r);
		publish_counts(a);
		sl_acx_reclaim(a->idx);
		r->done(r); /* r may be gone after this */
		pthread_mutex_lock(&a->mu);
	}
	a->running = false;
	pthread_mutex_unlock(&a->mu);
	return NULL;
}

int sl_accounts_submit(struct sl_accounts *a, struct sl_acc_req *r)
{
	pthread_mutex_lock(&a->mu);
	if (!a->running || a->stop) {
		pthread_mutex_unlock(&a->mu);
		return SL_EIO;
	}
	r->next = NULL;
	if (a->tail)
		a->tail->next = r;
	else
		a->head = r;
	a->tail = r;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	return 0;
}

void sl_acc_req_clear(struct sl_acc_req *r)
{
	cJSON_Delete(r->body);
	r->body = NULL;
	free(r->out);
	r->out = NULL;
}

int sl_accounts_open(struct sl_accounts **out, const struct sl_policy *p, FILE *log, char *err,
                     size_t cap)
{
	const struct sl_accounts_conf *c = &p->account_store;
	struct sl_accounts *a;
	struct stat sb;
	struct timespec ts;
	int rc = SL_EIO;

	*out = NULL;
	if (c->store != SL_ACCOUNTS_SQLITE && c->store != SL_ACCOUNTS_REDIS) {
		snprintf(err, cap, "accounts.store: none has no store to open");
		return SL_EINVAL;
	}
	a = calloc(1, sizeof(*a));
	if (a == NULL)
		return SL_ENOMEM;
	a->src.by_key = src_by_key;
	a->src.by_name = src_by_name;
	a->log = log;
	snprintf(a->key_prefix, sizeof(a->key_prefix), "%s",
	         c->key_prefix ? c->key_prefix : "sk_live_");
	pthread_mutex_init(&a->mu, NULL);
	pthread_cond_init(&a->cv, NULL);
	a->idx = calloc(1, sizeof(*a->idx));
	a->path = strdup(c->path ? c->path : "accounts.db");
	if (a->idx == NULL || a->path == NULL || sl_acx_init(a->idx) != 0) {
		snprintf(err, cap, "out of memory");
		free(a->idx);
		a->idx = NULL;
		rc = SL_ENOMEM;
		goto fail;
	}
	if (c->store == SL_ACCOUNTS_REDIS) {
		rc = sl_acj_open(a, p, err, cap);
		if (rc != 0)
			goto fail;
		goto start;
	}
	if (sqlite3_open_v2(a->path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
	    SQLITE_OK) {
		snprintf(err, cap, "accounts store %s: %s", a->path,
		         a->db ? sqlite3_errmsg(a->db) : "cannot open");
		goto fail;
	}
	sqlite3_busy_timeout(a->db, 2000);
	/* the load reads the whole file once: mapped, not copied through the
	 * page cache (at most 1 GiB of address space) */
	sl_acc_exec(a, "PRAGMA mmap_size=1073741824");
	if (!sl_acc_exec(a, "PRAGMA journal_mode=WAL") ||
	    !sl_acc_exec(a, "PRAGMA synchronous=NORMAL") || !sl_acc_exec(a, sl_acc_schema)) {
		snprintf(err, cap, "accounts store %s: %s", a->path, sqlite3_errmsg(a->db));
		goto fail;
	}
	if (stat(a->path, &sb) != 0) {
		snprintf(err, cap, "accounts store %s: %s", a->path, strerror(errno));
		goto fail;
	}
	a->dev = sb.st_dev;
	a->ino = sb.st_ino;
	clock_gettime(CLOCK_REALTIME, &ts);
	rc = sl_acc_load_all(a, p, (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec, a->path, err,
	                     cap);
	if (rc != 0)
		goto fail;
start:
	publish_counts(a);
	a->running = true;
	if (pthread_create(&a->thread, NULL, thread_main, a) != 0) {
		a->running = false;
		snprintf(err, cap, "cannot start the accounts thread");
		rc = SL_EIO;
		goto fail;
	}
	*out = a;
	return 0;
fail:
	if (a->rc)
		redisFree(a->rc);
	if (a->policy)
		sl_policy_unref(a->policy);
	if (a->db)
		sqlite3_close(a->db);
	if (a->idx) {
		sl_acx_destroy(a->idx);
		free(a->idx);
	}
	free(a->path);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a);
	return rc;
}

void sl_accounts_close(struct sl_accounts *a)
{
	if (a == NULL)
		return;
	pthread_mutex_lock(&a->mu);
	a->stop = true;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	pthread_join(a->thread, NULL);
	if (a->rc)
		redisFree(a->rc);
	if (a->policy)
		sl_policy_unref(a->policy);
	sqlite3_close(a->db);
	sl_acx_destroy(a->idx);
	free(a->idx);
	free(a->path);
	pthread_mutex_destroy(&a->mu);
	pthread_cond_destroy(&a->cv);
	free(a);
}
