/* The live account store (DESIGN.md section 6): accounts and API keys as
 * data, changed through the admin API, in force on every worker from the
 * next request.
 *
 *   sl_accounts_open()    open the durable store (sqlite, or the journal in
 *                         Redis), load it whole into the in-memory index,
 *                         start the accounts thread
 *   sl_accounts_src()     what the policy's evaluation looks keys up in
 *   sl_accounts_submit()  one admin operation, run on the accounts thread
 *
 * Reads on the request path go to the index only (index.c: lock-free,
 * allocation-free). Every write runs on the one accounts thread, which owns
 * the sqlite connection and is the index's single writer: a worker never
 * blocks on the disk. */
#ifndef SLUICE_ACCOUNTS_H
#define SLUICE_ACCOUNTS_H

#include <stdio.h>
#include <cjson/cJSON.h>
#include "accounts/accounts-t.h"

/* ---- the index (index.c) ---- */

/* Initialise x in place. Returns 0 or SL_ENOMEM. Thread: the writer. */
int sl_acx_init(struct sl_acx *x);
/* Free everything; no reader may be inside. */
void sl_acx_destroy(struct sl_acx *x);
/* Size the tables for naccounts / nkeys at once (a bulk load). */
int sl_acx_reserve(struct sl_acx *x, size_t naccounts, size_t nkeys);

/* Writer only (one thread). Each change is one atomic publication; what it
 * replaces is freed by sl_acx_reclaim once no reader can hold it. */
int sl_acx_put_account(struct sl_acx *x, const char *name, size_t len, const char *plan,
                       bool suspended, const struct sl_live_override *ov, unsigned nov);
/* Returns 0 or SL_ENOENT. The account's keys find nothing from now on. */
int sl_acx_del_account(struct sl_acx *x, const char *name, size_t len);
/* Key sha256 of account name (which must be in the index: else SL_ENOENT),
 * good until `until` (ns; INT64_MAX: for ever). Replaces a key of the same
 * digest. */
int sl_acx_put_key(struct sl_acx *x, const uint8_t sha256[32], const char *name, size_t len,
                   int64_t until);
int sl_acx_del_key(struct sl_acx *x, const uint8_t sha256[32]);
/* Free what no reader can see any more; returns how many things. */
size_t sl_acx_reclaim(struct sl_acx *x);
/* Bytes the index holds (tables, slabs, account records). */
size_t sl_acx_bytes(const struct sl_acx *x);

/* Readers: any thread, lock-free, allocation-free. 1 with *out filled, 0
 * when absent (a key past its `until` at now is absent). */
int sl_acx_by_key(struct sl_acx *x, const uint8_t sha256[32], int64_t now,
                  struct sl_live_account *out);
int sl_acx_by_name(struct sl_acx *x, const char *name, size_t len, struct sl_live_account *out);

/* ---- the store and its thread (service.c) ---- */

struct sl_accounts;

/* Open the store p->account_store names (sqlite: the file, created when
 * missing; redis: the journal at p->store.url, replayed), load it into a
 * fresh index, start the accounts thread. log
 * gets one line per notable event (plans no longer declared, etc.).
 * Returns 0, or a negative code with a message in err. Thread: main. */
int sl_accounts_open(struct sl_accounts **out, const struct sl_policy *p, FILE *log, char *err,
                     size_t cap);
/* Stop the thread, close the store, free the index. No reader may be
 * inside (the workers have stopped). */
void sl_accounts_close(struct sl_accounts *a);

const struct sl_account_src *sl_accounts_src(struct sl_accounts *a);
struct sl_accounts *sl_accounts_of(const struct sl_account_src *src);
/* CPU time (ms) the load at open took, the figure other load on the
 * machine does not inflate. */
int64_t sl_accounts_load_cpu_ms(const struct sl_accounts *a);
/* Keys and accounts in the index. Thread: the store's own (tests). */
void sl_accounts_counts(struct sl_accounts *a, size_t *naccounts, size_t *nkeys, size_t *bytes);
/* The same counts as of the store's last change or sweep. Thread: any. */
void sl_accounts_published(const struct sl_accounts *a, size_t *naccounts, size_t *nkeys);

/* A reload: check that every plan stored accounts use is declared in p
 * and recompile every override against p. Refuses (SL_ECONFIG, message in
 * err) a policy that drops a plan some stored account is on: the old
 * config keeps serving. Blocks until the accounts thread did it.
 * Thread: main. */
int sl_accounts_reload(struct sl_accounts *a, struct sl_policy *p, char *err, size_t cap);

enum sl_acc_op {
	SL_ACC_CREATE = 1, /* POST /v1/accounts */
	SL_ACC_GET,        /* GET /v1/accounts/{account} */
	SL_ACC_LIST,       /* GET /v1/accounts?plan=&after=&limit= */
	SL_ACC_PATCH,      /* PATCH /v1/accounts/{account} */
	SL_ACC_DELETE,     /* DELETE /v1/accounts/{account} */
	SL_ACC_KEY_ISSUE,  /* POST /v1/accounts/{account}/keys */
	SL_ACC_KEY_LIST,   /* GET /v1/accounts/{account}/keys */
	SL_ACC_KEY_GET,    /* GET /v1/keys/{id} */
	SL_ACC_KEY_ROTATE, /* POST /v1/keys/{id}/rotate */
	SL_ACC_KEY_REVOKE, /* DELETE /v1/keys/{id} */
};

#define SL_ACC_ID_MAX 64 /* bytes of a key id incl. NUL */

/* One operation. The caller fills the inputs; the accounts thread fills
 * status and out (a malloc'd JSON body, or NULL for 204) and then calls
 * done(r) on the accounts thread. */
struct sl_acc_req {
	int op; /* enum sl_acc_op */
	char account[SL_LIVE_NAME_MAX + 1];
	char id[SL_ACC_ID_MAX];
	cJSON *body;                      /* request object (owned), or NULL */
	char plan[SL_LIVE_PLAN_MAX + 1];  /* list filter, "" none */
	char after[SL_LIVE_NAME_MAX + 1]; /* list cursor, "" none */
	unsigned limit;                   /* list page size, 1..1000 */
	struct sl_policy *policy;         /* a reference, dropped by the caller */
	int64_t now;                      /* ns, unix timeline */
	int status;
	char *out;
	size_t outlen;
	void (*done)(struct sl_acc_req *r);
	void *arg;
	/* private: the queue, and (store: redis) the journal */
	struct sl_acc_req *next;
	bool replay;  /* applying another node's change from the journal */
	bool retry;   /* the journal moved under the write: run it again */
	bool has_gen; /* the key the operation made (journalled, never its text) */
	uint8_t gen_sha[32];
	char gen_id[SL_ACC_ID_MAX];
	char gen_prefix[16];
};

/* Queue r for the accounts thread. Returns 0, or SL_EIO when the thread
 * is gone (r untouched). Thread: any. */
int sl_accounts_submit(struct sl_accounts *a, struct sl_acc_req *r);
/* Free r->body and r->out. */
void sl_acc_req_clear(struct sl_acc_req *r);

/* ---- keys (keygen.c) ---- */

/* prefix + 32 base62 characters from getrandom into out (cap bytes incl.
 * NUL). Returns 0 or SL_EIO / SL_EINVAL. */
int sl_acc_new_key(const char *prefix, char *out, size_t cap);
/* "key_" + 20 base62 characters. */
int sl_acc_new_id(char *out, size_t cap);
void sl_acc_sha256(const char *s, size_t len, uint8_t out[32]);
/* RFC 3339 "2027-01-01T00:00:00Z" (also with fraction or +hh:mm) to unix
 * seconds, years 1970 to 2200 (so that ns fit an int64); 0 or SL_EINVAL. */
int sl_acc_parse_time(const char *s, int64_t *unix_s);
void sl_acc_format_time(int64_t unix_s, char out[32]);

#endif
