/* Account store benchmark (issue 8 targets). Prints "NAME VALUE" lines:
 *
 *   - accounts_gen_ms: writing the sqlite file of ACCOUNTS accounts and
 *     KEYS keys (one transaction; setup, not a target).
 *   - accounts_load_ms: sl_accounts_open on that file: the whole store read
 *     into the in-memory index, what a daemon start waits for (target
 *     <= 3000 ms); accounts_load_cpu_ms: the CPU time of that load (what
 *     other processes on a shared machine do not inflate).
 *   - accounts_index_bytes_per_key: the index's own count (tables, slabs,
 *     account records) / keys; accounts_heap_bytes_per_key: what the
 *     allocator handed out across the open (mallinfo2 uordblks + hblkhd after -
 *     before, sqlite's page cache included) / keys (target <= 150).
 *   - accounts_lookup_hit_ns / _miss_ns: one sl_acx_by_key (a present key
 *     of the 2M drawn at random / an absent one), median of RUNS runs.
 *   - accounts_issue_to_use_*_us: from submitting a key issue (the admin
 *     API's operation: sqlite commit with fsync, then the index) until
 *     every one of WORKERS reader threads, spinning on lookups as a worker
 *     would on requests, found the key: median and max of ISSUES issues
 *     (target <= 10 ms).
 * The file goes to $TMPDIR (or /tmp) and is removed; with
 * BENCH_ACCOUNTS_KEEP=FILE it is written there and kept (for
 * bench/http_bench.sh ACCOUNTS_DB=FILE: the HTTP ratio with the store
 * loaded). */
#include <malloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sqlite3.h>
#include <sluice/error.h>
#include "accounts/accounts.h"

#define ACCOUNTS 1000000
#define KEYS     2000000
#define LOOKUPS  2000000
#define RUNS     5
#define WORKERS  4
#define ISSUES   50

static int64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t unix_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
	return x < y ? -1 : x > y;
}

static void key_text(unsigned i, char *buf, size_t cap)
{
	snprintf(buf, cap, "sk_bench_%08u_0123456789abcdefghij", i);
}

static int generate(const char *path)
{
	sqlite3 *db;
	sqlite3_stmt *a, *k;
	char name[32], id[32], key[64];
	uint8_t sha[32];

	if (sqlite3_open(path, &db) != SQLITE_OK)
		return -1;
	sqlite3_exec(db,
	             "PRAGMA journal_mode=WAL;"
	             "CREATE TABLE accounts(name TEXT PRIMARY KEY, plan TEXT NOT NULL,"
	             " title TEXT NOT NULL, status TEXT NOT NULL, overrides TEXT NOT NULL,"
	             " metadata TEXT NOT NULL, created INTEGER NOT NULL) WITHOUT ROWID;"
	             "CREATE TABLE keys(id TEXT PRIMARY KEY, sha256 BLOB NOT NULL UNIQUE,"
	             " account TEXT NOT NULL, prefix TEXT NOT NULL, label TEXT, created INTEGER "
	             "NOT NULL, expires INTEGER, revoked INTEGER NOT NULL DEFAULT 0, until "
	             "INTEGER) WITHOUT ROWID;"
	             "CREATE INDEX keys_account ON keys(account);"
	             "BEGIN",
	             NULL, NULL, NULL);
	sqlite3_prepare_v2(db, "INSERT INTO accounts VALUES(?,?,?,'active','{}','{}',0)", -1, &a,
	                   NULL);
	sqlite3_prepare_v2(db,
	                   "INSERT INTO keys(id,sha256,account,prefix,created) "
	                   "VALUES(?,?,?,?,0)",
	                   -1, &k, NULL);
	for (unsigned i = 0; i < ACCOUNTS; i++) {
		snprintf(name, sizeof(name), "customer-%07u", i);
		sqlite3_bind_text(a, 1, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(a, 2, i % 4 ? "basic" : "pro", -1, SQLITE_STATIC);
		sqlite3_bind_text(a, 3, name, -1, SQLITE_STATIC);
		if (sqlite3_step(a) != SQLITE_DONE)
			return -1;
		sqlite3_reset(a);
	}
	for (unsigned i = 0; i < KEYS; i++) {
		snprintf(name, sizeof(name), "customer-%07u", i % ACCOUNTS);
		snprintf(id, sizeof(id), "key_%08u", i);
		key_text(i, key, sizeof(key));
		sl_acc_sha256(key, strlen(key), sha);
		sqlite3_bind_text(k, 1, id, -1, SQLITE_STATIC);
		sqlite3_bind_blob(k, 2, sha, 32, SQLITE_STATIC);
		sqlite3_bind_text(k, 3, name, -1, SQLITE_STATIC);
		sqlite3_bind_text(k, 4, "sk_bench_000", -1, SQLITE_STATIC);
		if (sqlite3_step(k) != SQLITE_DONE)
			return -1;
		sqlite3_reset(k);
	}
	sqlite3_finalize(a);
	sqlite3_finalize(k);
	sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	sqlite3_close(db);
	return 0;
}

/* ---- issue to first use on every worker ---- */

static const struct sl_account_src *bench_src;
static _Atomic int phase; /* 2: stop */
static uint8_t target[32];
static _Atomic int64_t t_found[WORKERS];
static _Atomic int found_count;

struct issued {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static _Atomic unsigned round_no; /* the issue being looked for; 0 none */

static void *worker(void *arg)
{
	unsigned w = (unsigned)(uintptr_t)arg, seen = 0;
	struct sl_live_account out;

	while (atomic_load(&phase) != 2) {
		unsigned r = atomic_load(&round_no);
		if (r == 0 || r == seen) {
			sched_yield();
			continue;
		}
		/* a worker looks up whatever keys its requests carry: here the
		 * one being issued, every time, as fast as it can */
		uint8_t sha[32];
		memcpy(sha, target, 32);
		if (bench_src->by_key(bench_src, sha, 0, &out) == 1) {
			atomic_store(&t_found[w], now_ns());
			seen = r;
			atomic_fetch_add(&found_count, 1);
		}
	}
	return NULL;
}

static void issued_done(struct sl_acc_req *r)
{
	struct issued *is = r->arg;
	pthread_mutex_lock(&is->mu);
	is->done = true;
	pthread_cond_signal(&is->cv);
	pthread_mutex_unlock(&is->mu);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	char path[512], yaml[1024], err[256];
	struct sl_policy *p = NULL;
	struct sl_diag diag;
	struct sl_accounts *acc = NULL;
	int64_t t0, samples[RUNS], miss[RUNS];
	struct mallinfo2 m0, m1;
	size_t nacc, nkeys, bytes;

	const char *keep = getenv("BENCH_ACCOUNTS_KEEP");
	if (keep != NULL)
		snprintf(path, sizeof(path), "%s", keep);
	else
		snprintf(path, sizeof(path), "%s/bench-accounts-%d.db", tmp, (int)getpid());
	unlink(path);
	t0 = now_ns();
	if (generate(path) != 0) {
		fprintf(stderr, "bench_accounts: cannot write %s\n", path);
		return 1;
	}
	printf("accounts_gen_ms %lld\n", (long long)((now_ns() - t0) / 1000000));
	snprintf(yaml, sizeof(yaml),
	         "plans: { basic: {}, pro: {} }\n"
	         "accounts: { store: sqlite, path: \"%s\" }\n"
	         "limits:\n  - { name: hourly, key: account, quota: { basic: 30/hour, pro: "
	         "100/hour } }\n",
	         path);
	if (sl_policy_load_mem("bench.yaml", yaml, strlen(yaml), &p, &diag) != 0) {
		fprintf(stderr, "bench_accounts: %s\n", diag.n ? diag.msg[0] : "config");
		return 1;
	}
	m0 = mallinfo2();
	t0 = now_ns();
	if (sl_accounts_open(&acc, p, stderr, err, sizeof(err)) != 0) {
		fprintf(stderr, "bench_accounts: %s\n", err);
		return 1;
	}
	printf("accounts_load_ms %lld\n", (long long)((now_ns() - t0) / 1000000));
	printf("accounts_load_cpu_ms %lld\n", (long long)sl_accounts_load_cpu_ms(acc));
	m1 = mallinfo2();
	sl_accounts_counts(acc, &nacc, &nkeys, &bytes);
	printf("accounts_loaded_accounts %zu\naccounts_loaded_keys %zu\n", nacc, nkeys);
	printf("accounts_index_bytes_per_key %.1f\n", (double)bytes / (double)nkeys);
	printf("accounts_heap_bytes_per_key %.1f\n",
	       (double)((m1.uordblks + m1.hblkhd) - (m0.uordblks + m0.hblkhd)) / (double)nkeys);

	/* lookups: the index is reached through the policy's source, as the
	 * request path does */
	const struct sl_account_src *src = sl_accounts_src(acc);
	uint8_t(*shas)[32] = malloc((size_t)LOOKUPS * 32);
	struct sl_live_account out;
	unsigned seed = 12345;
	char key[64];
	for (unsigned i = 0; i < LOOKUPS; i++) {
		seed = seed * 1103515245u + 12345u;
		key_text(seed % KEYS, key, sizeof(key));
		sl_acc_sha256(key, strlen(key), shas[i]);
	}
	for (int r = 0; r < RUNS; r++) {
		unsigned hits = 0;
		t0 = now_ns();
		for (unsigned i = 0; i < LOOKUPS; i++)
			hits += (unsigned)src->by_key(src, shas[i], 0, &out);
		samples[r] = (now_ns() - t0) / LOOKUPS;
		if (hits != LOOKUPS)
			fprintf(stderr, "bench_accounts: %u of %u found\n", hits, LOOKUPS);
		for (unsigned i = 0; i < LOOKUPS; i++)
			shas[i][0] ^= 0x5a, shas[i][31] ^= 0xa5;
		t0 = now_ns();
		for (unsigned i = 0; i < LOOKUPS; i++)
			hits += (unsigned)src->by_key(src, shas[i], 0, &out);
		miss[r] = (now_ns() - t0) / LOOKUPS;
		for (unsigned i = 0; i < LOOKUPS; i++)
			shas[i][0] ^= 0x5a, shas[i][31] ^= 0xa5;
	}
	qsort(samples, RUNS, sizeof(samples[0]), cmp_i64);
	qsort(miss, RUNS, sizeof(miss[0]), cmp_i64);
	printf("accounts_lookup_hit_ns %lld\naccounts_lookup_miss_ns %lld\n",
	       (long long)samples[RUNS / 2], (long long)miss[RUNS / 2]);
	free(shas);

	/* issue to first use on every worker */
	pthread_t th[WORKERS];
	int64_t lat[ISSUES];
	cJSON *acct = cJSON_CreateObject();
	cJSON_AddStringToObject(acct, "account", "bench-issuer");
	cJSON_AddStringToObject(acct, "plan", "pro");
	struct issued is = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
	struct sl_acc_req req;
	memset(&req, 0, sizeof(req));
	req.op = SL_ACC_CREATE;
	req.body = acct;
	req.policy = p;
	req.now = unix_ns();
	req.done = issued_done;
	req.arg = &is;
	sl_accounts_submit(acc, &req);
	pthread_mutex_lock(&is.mu);
	while (!is.done)
		pthread_cond_wait(&is.cv, &is.mu);
	pthread_mutex_unlock(&is.mu);
	sl_acc_req_clear(&req);
	bench_src = src;
	for (uintptr_t w = 0; w < WORKERS; w++)
		pthread_create(&th[w], NULL, worker, (void *)w);
	for (int n = 0; n < ISSUES; n++) {
		memset(&req, 0, sizeof(req));
		is.done = false;
		req.op = SL_ACC_KEY_ISSUE;
		snprintf(req.account, sizeof(req.account), "bench-issuer");
		req.body = cJSON_CreateObject();
		req.policy = p;
		req.now = unix_ns();
		req.done = issued_done;
		req.arg = &is;
		atomic_store(&found_count, 0);
		int64_t start = now_ns();
		sl_accounts_submit(acc, &req);
		pthread_mutex_lock(&is.mu);
		while (!is.done)
			pthread_cond_wait(&is.cv, &is.mu);
		pthread_mutex_unlock(&is.mu);
		/* the workers learn the key as a client would send it: from the
		 * answer; they then look it up until found */
		cJSON *o = cJSON_Parse(req.out);
		const char *k = cJSON_GetStringValue(cJSON_GetObjectItem(o, "key"));
		sl_acc_sha256(k, strlen(k), target);
		cJSON_Delete(o);
		atomic_store(&round_no, (unsigned)n + 1);
		while (atomic_load(&found_count) < WORKERS)
			sched_yield();
		atomic_store(&round_no, 0);
		int64_t last = 0;
		for (int w = 0; w < WORKERS; w++)
			if (atomic_load(&t_found[w]) > last)
				last = atomic_load(&t_found[w]);
		lat[n] = last - start;
		sl_acc_req_clear(&req);
		usleep(1000);
	}
	atomic_store(&phase, 2);
	for (int w = 0; w < WORKERS; w++)
		pthread_join(th[w], NULL);
	qsort(lat, ISSUES, sizeof(lat[0]), cmp_i64);
	printf("accounts_issue_to_use_median_us %lld\naccounts_issue_to_use_max_us %lld\n",
	       (long long)lat[ISSUES / 2] / 1000, (long long)lat[ISSUES - 1] / 1000);
	sl_accounts_close(acc);
	sl_policy_unref(p);
	if (keep != NULL)
		return 0;
	unlink(path);
	snprintf(yaml, sizeof(yaml), "%s-wal", path);
	unlink(yaml);
	snprintf(yaml, sizeof(yaml), "%s-shm", path);
	unlink(yaml);
	return 0;
}
