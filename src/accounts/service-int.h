/* Inside the accounts store: the state its thread owns, shared by
 * service.c (the operations, the thread, sqlite) and journal.c (store:
 * redis: the journal in Redis every node applies). Not for other layers:
 * accounts.h is the interface. */
#ifndef SLUICE_ACCOUNTS_SERVICE_INT_H
#define SLUICE_ACCOUNTS_SERVICE_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <pthread.h>
#include <sys/types.h>
#include <hiredis/hiredis.h>
#include <sqlite3.h>
#include "accounts/accounts.h"

struct sl_accounts {
	struct sl_account_src src; /* first: sl_accounts_of */
	struct sl_acx *idx;
	sqlite3 *db;
	char *path;
	dev_t dev;
	ino_t ino;
	char key_prefix[40];
	FILE *log;
	pthread_t thread;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct sl_acc_req *head, *tail;
	bool stop, running;
	int64_t load_cpu_ms; /* ms of CPU the start's load took */
	/* the index's counts as other threads may read them (set after each
	 * change by this store's thread) */
	_Atomic size_t pub_accounts, pub_keys;
	int64_t swept; /* ns (wall) up to which dead keys left the index */
	/* store: redis (journal.c) */
	bool redis;
	redisContext *rc;
	char rhost[256];
	int rport;
	long long applied;        /* journal entries applied to this node */
	long long base;           /* version of the journal's first kept entry */
	uint64_t compact_after;   /* entries; 0: the journal is never compacted */
	int64_t behind_logged;    /* ns (monotonic) of the last "behind" line */
	int64_t polled;           /* ns (monotonic) of the last look at the journal */
	struct sl_policy *policy; /* what replays compile against (a reference) */
};

/* service.c */
extern const char sl_acc_schema[]; /* the tables, CREATE ... IF NOT EXISTS */
bool sl_acc_exec(struct sl_accounts *a, const char *sql);
sqlite3_stmt *sl_acc_prep(struct sl_accounts *a, const char *sql); /* NULL: logged */
/* The index from the database (empty index), logging "loaded ... from". */
int sl_acc_load_all(struct sl_accounts *a, const struct sl_policy *p, int64_t now, const char *from,
                    char *err, size_t cap);
/* One operation (a write that lost the race for the journal runs again). */
void sl_acc_run(struct sl_accounts *a, struct sl_acc_req *r);
/* Answer r 503 store_unavailable with why. */
void sl_acc_unavailable(struct sl_acc_req *r, const char *why);

/* journal.c (store: redis) */
/* Connect, load the snapshot and replay the journal into a's (empty)
 * copy. 0, or a negative code with err written. */
int sl_acj_open(struct sl_accounts *a, const struct sl_policy *p, char *err, size_t cap);
/* Apply what the journal gained (1000 entries a pass at most) and compact
 * it when due: the entries applied. A running node whose place the journal
 * no longer holds takes the snapshot; at start that is -1 (the caller loads
 * it). Redis down: 0. */
long long sl_acj_catch_up(struct sl_accounts *a);
/* r's change as a journal entry (malloc'd JSON text; NULL: out of memory):
 * the operation, names, body, time, and for a new key its digest, id and
 * prefix, never the key. */
char *sl_acj_record(const struct sl_acc_req *r);
/* A journal entry (JSON text from Redis: untrusted) into r, with
 * r->replay set: 0, or SL_EINVAL (r cleared) for anything sluice did not
 * write: not an object, an unknown op, a field that does not fit, a time
 * out of range, a digest that is not 64 lowercase hex digits. */
int sl_acj_parse_record(const char *text, size_t len, struct sl_acc_req *r);
/* Append r's change if the journal did not move since this node caught up;
 * false with r answered (503), or with r->retry set (it moved). */
bool sl_acj_append(struct sl_accounts *a, struct sl_acc_req *r);

#endif
