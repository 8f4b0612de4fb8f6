/* Decision metrics: per-worker counters that only their worker writes, so
 * counting is a plain relaxed load+store with no locked instruction; a
 * scrape (/metrics) sums every shard while the workers keep counting.
 * Series are (listener, limit, outcome) triples interned into a fixed-size
 * table per shard; names are copied (a reload may free the policy's), and
 * a shard that is full counts into one overflow series (limit="other").
 * Per listener a shard also counts responses and upstream exchanges by
 * status class and upstream latency; process-wide values (config loads,
 * gauges other subsystems set) are plain atomics, written rarely. */
#ifndef SLUICE_NET_METRICS_H
#define SLUICE_NET_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "store/store.h"

struct sl_eval;

enum sl_metrics_outcome {
	SL_METRIC_ALLOWED = 0,
	SL_METRIC_DELAYED,
	SL_METRIC_REJECTED,     /* denied by a limit (429, or a limit's status like 403) */
	SL_METRIC_UNAUTHORIZED, /* 401: key missing or unknown */
	SL_METRIC_ERROR,        /* store failure (answered per store.on_error) */
	SL_METRIC_NOUTCOMES
};

#define SL_METRICS_SERIES     256 /* (listener, limit, outcome) series per shard */
#define SL_METRICS_LISTENERS  16  /* histograms (one per listener) per shard */
#define SL_METRICS_NAME       64  /* bytes per interned name incl. NUL */
#define SL_METRICS_BUCKETS    14  /* latency histogram buckets, +Inf excluded */
#define SL_METRICS_UP_BUCKETS 14  /* upstream latency buckets, +Inf excluded */

struct sl_metrics;
struct sl_metrics_shard;

/* Create metrics for nshards workers. Returns NULL when out of memory. */
struct sl_metrics *sl_metrics_create(unsigned nshards);
void sl_metrics_destroy(struct sl_metrics *m);
/* Worker i's shard (i < nshards). Only worker i may count into it. */
struct sl_metrics_shard *sl_metrics_shard(struct sl_metrics *m, unsigned i);

/* Count one decision on listener `listener` (name), its deciding limit
 * `limit` (the denying one, else the most restrictive; NULL or "": none),
 * outcome (enum sl_metrics_outcome) and latency (ns, from the request's
 * arrival to the decision). Names are copied on first use. Bounded work:
 * one hash probe sequence over SL_METRICS_SERIES. Thread: the shard's
 * worker only. */
void sl_metrics_decision(struct sl_metrics_shard *s, const char *listener, const char *limit,
                         unsigned outcome, int64_t latency_ns);

/* The same, deriving limit and outcome from a finished evaluation
 * (after sl_eval_finish); a 401 counts under limit="none". latency_ns
 * should come from a fresh monotonic read (uv_hrtime()), not a clock
 * cached per loop pass, or every inline decision measures 0. */
void sl_metrics_eval(struct sl_metrics_shard *s, const char *listener, const struct sl_eval *ev,
                     int64_t latency_ns);

/* Worker gauges of its client connections: open, accepted since start,
 * kept on the free list. Thread: the shard's worker only. */
void sl_metrics_conns(struct sl_metrics_shard *s, unsigned open, uint64_t accepted,
                      unsigned pooled);
/* Count one pause of accepting for want of file descriptors. */
void sl_metrics_accept_paused(struct sl_metrics_shard *s);

/* One answered request on listener `listener`: its status (100..599; any
 * other is counted as code="other"). Called once per response, when it is
 * out. Bounded work: one name compare when the listener is the last one
 * counted, else a scan of SL_METRICS_LISTENERS names. Thread: the shard's
 * worker only. */
void sl_metrics_request(struct sl_metrics_shard *s, const char *listener, int status);
/* One upstream exchange of listener `listener`: the upstream's response
 * status and the time to its response head (ns), or status 0 when no
 * response came (connect error, reset, timeout; latency not counted).
 * Thread: the shard's worker only. */
void sl_metrics_upstream(struct sl_metrics_shard *s, const char *listener, int status,
                         int64_t latency_ns);
/* Requests held in a queue delay right now: +1 when one starts waiting,
 * -1 when it proceeds or its connection closes. Thread: the shard's
 * worker only. */
void sl_metrics_delayed(struct sl_metrics_shard *s, int delta);

/* A config load: ok (the policy in force is now the one hashed `hash`,
 * loaded at unix_ns) or failed (the old one keeps serving). The first
 * call is the start-up load; later ones count as reloads. Thread: any. */
void sl_metrics_config(struct sl_metrics *m, bool ok, uint64_t hash, int64_t unix_ns);

/* Process gauges other subsystems own and set; a gauge never set is not
 * rendered (no misleading 0). Thread: any. */
enum sl_metrics_gauge {
	SL_GAUGE_USAGE_FLUSHED = 0, /* unix ns of the last usage flush; rendered as the lag */
	SL_GAUGE_ACCOUNTS,          /* accounts loaded (static + store) */
	SL_GAUGE_KEYS,              /* API keys loaded */
	SL_GAUGE_N
};
void sl_metrics_set_gauge(struct sl_metrics *m, unsigned gauge, int64_t value);

/* Outcome of a finished evaluation (enum sl_metrics_outcome). */
unsigned sl_metrics_outcome(const struct sl_eval *ev);

/* Render the Prometheus text exposition (format 0.0.4) of every shard plus
 * the store's stats (st may be NULL) into buf (cap bytes). Returns the
 * length, or -1 when it does not fit. Thread: any; concurrent with counting
 * (each value is read atomically; a scrape is not a global snapshot). */
long sl_metrics_render(struct sl_metrics *m, const struct sl_store_stats *st, char *buf,
                       size_t cap);

#endif
