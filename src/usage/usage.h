/* The usage history (DESIGN.md section 7, docs/usage.md): every decision
 * counted per account, per deciding limit, per minute, flushed by a
 * background thread into SQLite and rolled up to hours and days there.
 *
 *   sl_usage_open(conf, nworkers)   the database and one table per worker
 *   sl_usage_eval(shard, ev)        on the request path, by the worker
 *   sl_usage_start / sl_usage_close the flusher thread; close flushes last
 *   sl_usage_history / _top / _rejected_by   the admin queries
 *
 * Time: counting takes the decision's clock; flushing and queries take
 * `now` from the caller, so tests drive retention with a fake clock. */
#ifndef SLUICE_USAGE_USAGE_H
#define SLUICE_USAGE_USAGE_H

#include <stdbool.h>
#include <stddef.h>
#include "usage/usage-t.h"
#include "policy/policy-t.h"

struct sl_usage;
struct sl_eval;

/* Open the database at conf->path (created, WAL) and allocate nworkers
 * shards of conf->max_series cells (rounded up to a power of two) times
 * two. clock (ns, epoch-anchored) is what the flusher thread reads.
 * Returns 0, or a negative code with a message in err (cap bytes).
 * Thread: any (once). */
int sl_usage_open(struct sl_usage **out, const struct sl_usage_conf *conf, unsigned nworkers,
                  int64_t (*clock)(void), char *err, size_t cap);
/* Start the flusher: every conf->flush_interval, and early when a worker
 * table is half full. Returns 0 or SL_ENOMEM. */
int sl_usage_start(struct sl_usage *u);
/* Stop the flusher, flush what is counted, close the database, free u.
 * Call after every worker stopped counting. NULL is fine. */
void sl_usage_close(struct sl_usage *u);

/* Worker i's table (i < nworkers); only worker i counts into it. */
struct sl_usage_shard *sl_usage_shard(struct sl_usage *u, unsigned i);

/* Count one decision. account is a view (len bytes; "" for decisions
 * without an account); limit the deciding limit's name or NULL. A name
 * too long for the table, or a full table, counts the decision as
 * dropped instead. Bounded work: SL_USAGE_PROBES slots. No allocation.
 * Thread: the shard's worker. */
void sl_usage_count(struct sl_usage_shard *s, const char *account, size_t alen, const char *limit,
                    unsigned outcome, uint64_t cost, int64_t now_ns);
/* Count a finished evaluation (after sl_eval_finish): its account, its
 * deciding limit (the denying one, else the most restrictive), its outcome.
 * 401s, store errors and peeks are not counted. Thread: the shard's worker. */
void sl_usage_eval(struct sl_usage_shard *s, const struct sl_eval *ev);

/* Swap every worker's table and write what it held, adding each cell to
 * its minute, hour and day rows in one transaction; then drop rows past
 * their retention (at most once a minute of `now`). Returns 0 or
 * SL_EIO (the swapped counts are lost; counted in flush_errors).
 * Thread: any; flushes are serialised. */
int sl_usage_flush(struct sl_usage *u, int64_t now_ns);

typedef void (*sl_usage_row_fn)(void *arg, const struct sl_usage_row *r);

/* Rows of account (alen bytes) in bucket with from <= start <= to (unix
 * s), ordered by start then limit, one per (start, limit). Returns 0 or
 * SL_EIO. Thread: any. */
int sl_usage_history(struct sl_usage *u, const char *account, size_t alen, unsigned bucket,
                     int64_t from, int64_t to, sl_usage_row_fn fn, void *arg);
/* The n accounts with the most `by` (enum sl_usage_by) since `since`
 * (unix s), from the finest bucket still kept that far back. For each
 * account, one total row (limit NULL) and then one row per limit that
 * rejected it (rejected set). Returns 0 or SL_EIO. Thread: any. */
int sl_usage_top(struct sl_usage *u, unsigned by, int64_t since, unsigned n, int64_t now_s,
                 sl_usage_row_fn fn, void *arg);
/* Rejections by limit over every decision (accounts or none) since
 * `since`: one row per limit, rejected set, most first. Thread: any. */
int sl_usage_rejected_by(struct sl_usage *u, int64_t since, int64_t now_s, sl_usage_row_fn fn,
                         void *arg);

void sl_usage_stats(struct sl_usage *u, struct sl_usage_stats *st);

/* Seconds of bucket (60, 3600, 86400). */
int64_t sl_usage_bucket_seconds(unsigned bucket);

#endif
