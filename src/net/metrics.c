/* Decision metrics (see metrics.h). Each worker owns one cache-aligned
 * shard: an open-addressed table of (listener, limit, outcome) series and,
 * per listener, the decision latency histogram, responses and upstream
 * exchanges by status class and the upstream histogram. The owner is the only writer, so a count
 * is a relaxed load and store (no locked instruction); a new series is
 * filled first and published last with a release store, so a concurrent
 * scrape sees either nothing or a complete name. Scrapes allocate (they are
 * rare and off the hot path); counting never does. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/policy.h"
#include "net/metrics.h"

/* Upper bounds of the latency buckets, ns; +Inf is implicit. */
static const int64_t bucket_ns[SL_METRICS_BUCKETS] = {
        10000,   25000,   50000,    100000,   250000,   500000,    1000000,
        2500000, 5000000, 10000000, 25000000, 50000000, 100000000, 250000000,
};
static const char *const bucket_le[SL_METRICS_BUCKETS] = {
        "1e-05",  "2.5e-05", "5e-05", "0.0001", "0.00025", "0.0005", "0.001",
        "0.0025", "0.005",   "0.01",  "0.025",  "0.05",    "0.1",    "0.25",
};
/* Upstream response time buckets, ns: an upstream answers in ms to s. */
static const int64_t up_bucket_ns[SL_METRICS_UP_BUCKETS] = {
        1000000,   2500000,   5000000,    10000000,   25000000,   50000000,    100000000,
        250000000, 500000000, 1000000000, 2500000000, 5000000000, 10000000000, 30000000000,
};
static const char *const up_bucket_le[SL_METRICS_UP_BUCKETS] = {
        "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1",
        "0.25",  "0.5",    "1",     "2.5",  "5",     "10",   "30",
};
/* Status classes: index status/100 for 100..599, 0 for anything else. */
#define NCLASSES 6
static const char *const class_name[NCLASSES] = {"other", "1xx", "2xx", "3xx", "4xx", "5xx"};
/* Store failures by -code (include/sluice/error.h); 0: other. */
#define NSTORE_ERR 10
static const char *const store_err_name[NSTORE_ERR] = {
        "other", "nomem", "invalid", "range",    "noent",
        "full",  "io",    "timeout", "protocol", "config",
};
static const char *const gauge_name[SL_GAUGE_N] = {
        "sluice_usage_flush_lag_seconds",
        "sluice_accounts_loaded",
        "sluice_keys_loaded",
};
static const char *const gauge_help[SL_GAUGE_N] = {
        "Seconds since the usage history was last flushed to its storage.",
        "Accounts loaded (static and from the account store).",
        "API keys loaded (static and from the account store).",
};

static const char *const outcome_name[SL_METRIC_NOUTCOMES] = {
        "allowed", "delayed", "rejected", "unauthorized", "error",
};

struct series {
	_Atomic uint32_t used; /* 0 empty, 1 published */
	uint32_t hash;
	uint8_t outcome;
	char listener[SL_METRICS_NAME];
	char limit[SL_METRICS_NAME];
	_Atomic uint64_t count;
};

/* Everything counted per listener: decision latency, answered requests
 * by status class, upstream exchanges by status class and their latency. */
struct hist {
	_Atomic uint32_t used;
	char listener[SL_METRICS_NAME];
	_Atomic uint64_t bucket[SL_METRICS_BUCKETS + 1]; /* non-cumulative; last: +Inf */
	_Atomic uint64_t sum;                            /* ns */
	_Atomic uint64_t req[NCLASSES];                  /* responses by status class */
	_Atomic uint64_t up[NCLASSES];                   /* upstream answers; [0]: none came */
	_Atomic uint64_t up_bucket[SL_METRICS_UP_BUCKETS + 1];
	_Atomic uint64_t up_sum; /* ns */
};

struct sl_metrics_shard {
	struct series series[SL_METRICS_SERIES];
	struct hist hist[SL_METRICS_LISTENERS];
	_Atomic uint64_t overflow[SL_METRIC_NOUTCOMES]; /* series table full */
	_Atomic uint64_t hist_overflow;                 /* listeners beyond the cap */
	_Atomic uint64_t conn_open;                     /* client connections open */
	_Atomic uint64_t conn_accepted;                 /* client connections accepted */
	_Atomic uint64_t conn_pooled;                   /* on the worker's free list */
	_Atomic uint64_t accept_paused;                 /* accept ran out of descriptors */
	_Atomic uint64_t delayed;                       /* requests waiting in a queue delay */
	_Atomic uint64_t store_err[NSTORE_ERR];         /* decisions the store failed */
	struct hist *last; /* the listener counted last; the owner's only */
} __attribute__((aligned(64)));

/* Process-wide values set from any thread, rarely (loads, subsystems'
 * gauges): plain atomics, off the request path. */
struct sl_metrics {
	unsigned nshards;
	struct sl_metrics_shard *shards;
	_Atomic uint64_t loads, reload_ok, reload_failed;
	_Atomic bool last_ok;
	_Atomic uint64_t cfg_hash;
	_Atomic int64_t cfg_time; /* ns, unix */
	_Atomic int64_t gauge[SL_GAUGE_N];
	_Atomic uint32_t gauge_set; /* bit per gauge */
};

struct sl_metrics *sl_metrics_create(unsigned nshards)
{
	struct sl_metrics *m;

	if (nshards == 0)
		return NULL;
	m = calloc(1, sizeof(*m));
	if (m == NULL)
		goto fail;
	m->shards = aligned_alloc(64, sizeof(*m->shards) * nshards);
	if (m->shards == NULL)
		goto fail_m;
	memset(m->shards, 0, sizeof(*m->shards) * nshards);
	m->nshards = nshards;
	return m;
fail_m:
	free(m);
fail:
	return NULL;
}

void sl_metrics_destroy(struct sl_metrics *m)
{
	if (m == NULL)
		return;
	free(m->shards);
	free(m);
}

struct sl_metrics_shard *sl_metrics_shard(struct sl_metrics *m, unsigned i)
{
	return i < m->nshards ? &m->shards[i] : NULL;
}

/* Single-writer increment: readers only ever see whole values. */
static inline void bump(_Atomic uint64_t *c, uint64_t by)
{
	atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + by,
	                      memory_order_relaxed);
}

static uint32_t hash_name(uint32_t h, const char *s)
{
	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

static void copy_name(char *dst, const char *src)
{
	size_t n = strnlen(src, SL_METRICS_NAME - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

/* Names compare as truncated to SL_METRICS_NAME - 1 bytes. */
static bool name_eq(const char *stored, const char *s)
{
	return strncmp(stored, s, SL_METRICS_NAME - 1) == 0;
}

static void count_series(struct sl_metrics_shard *s, const char *listener, const char *limit,
                         unsigned outcome)
{
	uint32_t h = hash_name(hash_name(2166136261u, listener) ^ 0x9e3779b9u, limit);
	h = (h ^ outcome) * 16777619u;
	unsigned i = h & (SL_METRICS_SERIES - 1);

	for (unsigned probe = 0; probe < SL_METRICS_SERIES; probe++) {
		struct series *e = &s->series[(i + probe) & (SL_METRICS_SERIES - 1)];
		if (atomic_load_explicit(&e->used, memory_order_relaxed) == 0) {
			e->hash = h;
			e->outcome = (uint8_t)outcome;
			copy_name(e->listener, listener);
			copy_name(e->limit, limit);
			atomic_store_explicit(&e->count, 1, memory_order_relaxed);
			atomic_store_explicit(&e->used, 1, memory_order_release);
			return;
		}
		if (e->hash == h && e->outcome == outcome && name_eq(e->listener, listener) &&
		    name_eq(e->limit, limit)) {
			bump(&e->count, 1);
			return;
		}
	}
	bump(&s->overflow[outcome], 1);
}

/* The listener's entry, made on first use; NULL when the table is full
 * (counted in hist_overflow). The last entry found is tried first: a
 * worker's requests mostly come from one or two listeners. */
static struct hist *find_hist(struct sl_metrics_shard *s, const char *listener)
{
	if (s->last != NULL && name_eq(s->last->listener, listener))
		return s->last;
	for (unsigned i = 0; i < SL_METRICS_LISTENERS; i++) {
		struct hist *e = &s->hist[i];
		if (atomic_load_explicit(&e->used, memory_order_relaxed) == 0) {
			copy_name(e->listener, listener);
			atomic_store_explicit(&e->used, 1, memory_order_release);
			return s->last = e;
		}
		if (name_eq(e->listener, listener))
			return s->last = e;
	}
	bump(&s->hist_overflow, 1);
	return NULL;
}

static unsigned status_class(int status)
{
	return status >= 100 && status <= 599 ? (unsigned)status / 100 : 0;
}

void sl_metrics_request(struct sl_metrics_shard *s, const char *listener, int status)
{
	struct hist *hi;

	if (s == NULL)
		return;
	hi = find_hist(s, listener && *listener ? listener : "unknown");
	if (hi != NULL)
		bump(&hi->req[status_class(status)], 1);
}

void sl_metrics_upstream(struct sl_metrics_shard *s, const char *listener, int status,
                         int64_t latency_ns)
{
	struct hist *hi;
	unsigned b;

	if (s == NULL)
		return;
	hi = find_hist(s, listener && *listener ? listener : "unknown");
	if (hi == NULL)
		return;
	if (status == 0) {
		bump(&hi->up[0], 1);
		return;
	}
	bump(&hi->up[status_class(status) ? status_class(status) : 0], 1);
	if (latency_ns < 0)
		latency_ns = 0;
	for (b = 0; b < SL_METRICS_UP_BUCKETS && latency_ns > up_bucket_ns[b]; b++)
		;
	bump(&hi->up_bucket[b], 1);
	bump(&hi->up_sum, (uint64_t)latency_ns);
}

void sl_metrics_delayed(struct sl_metrics_shard *s, int delta)
{
	uint64_t v;

	if (s == NULL)
		return;
	v = atomic_load_explicit(&s->delayed, memory_order_relaxed);
	if (delta < 0 && v < (uint64_t)-delta)
		v = 0; /* never below zero, whatever a caller does */
	else
		v += (uint64_t)(int64_t)delta;
	atomic_store_explicit(&s->delayed, v, memory_order_relaxed);
}

void sl_metrics_config(struct sl_metrics *m, bool ok, uint64_t hash, int64_t unix_ns)
{
	if (m == NULL)
		return;
	if (atomic_fetch_add(&m->loads, 1) > 0)
		atomic_fetch_add(ok ? &m->reload_ok : &m->reload_failed, 1);
	atomic_store(&m->last_ok, ok);
	if (ok) {
		atomic_store(&m->cfg_hash, hash);
		atomic_store(&m->cfg_time, unix_ns);
	}
}

void sl_metrics_set_gauge(struct sl_metrics *m, unsigned gauge, int64_t value)
{
	if (m == NULL || gauge >= SL_GAUGE_N)
		return;
	atomic_store(&m->gauge[gauge], value);
	atomic_fetch_or(&m->gauge_set, 1u << gauge);
}

static void count_latency(struct sl_metrics_shard *s, const char *listener, int64_t ns)
{
	struct hist *hi = find_hist(s, listener);
	unsigned b;

	if (hi == NULL)
		return;
	if (ns < 0)
		ns = 0;
	for (b = 0; b < SL_METRICS_BUCKETS && ns > bucket_ns[b]; b++)
		;
	bump(&hi->bucket[b], 1);
	bump(&hi->sum, (uint64_t)ns);
}

void sl_metrics_decision(struct sl_metrics_shard *s, const char *listener, const char *limit,
                         unsigned outcome, int64_t latency_ns)
{
	if (s == NULL)
		return;
	if (listener == NULL || *listener == '\0')
		listener = "unknown";
	if (limit == NULL || *limit == '\0')
		limit = "none";
	if (outcome >= SL_METRIC_NOUTCOMES)
		outcome = SL_METRIC_ERROR;
	count_series(s, listener, limit, outcome);
	count_latency(s, listener, latency_ns);
}

unsigned sl_metrics_outcome(const struct sl_eval *ev)
{
	const struct sl_decision *d = &ev->decision;

	if (ev->batch.status < 0)
		return SL_METRIC_ERROR;
	if (d->status == 401)
		return SL_METRIC_UNAUTHORIZED;
	if (d->denied >= 0 || d->status != 200)
		return SL_METRIC_REJECTED;
	if (d->delay > 0)
		return SL_METRIC_DELAYED;
	return SL_METRIC_ALLOWED;
}

void sl_metrics_eval(struct sl_metrics_shard *s, const char *listener, const struct sl_eval *ev,
                     int64_t latency_ns)
{
	const struct sl_decision *d = &ev->decision;
	int idx = d->denied >= 0 ? d->denied : d->primary;
	unsigned outcome = sl_metrics_outcome(ev);
	const char *limit = NULL;

	/* A 401 is decided by the key, not by a limit. */
	if (outcome != SL_METRIC_UNAUTHORIZED && idx >= 0 && (size_t)idx < ev->nchecks &&
	    ev->limits[idx] != NULL)
		limit = ev->limits[idx]->name;
	if (s != NULL && ev->batch.status < 0) {
		unsigned k = (unsigned)-ev->batch.status;
		bump(&s->store_err[k < NSTORE_ERR ? k : 0], 1);
	}
	sl_metrics_decision(s, listener, limit, outcome, latency_ns);
}

/* ---- scrape ---- */

struct agg {
	const char *listener, *limit;
	unsigned outcome;
	uint64_t count;
};

static int agg_cmp(const void *a, const void *b)
{
	const struct agg *x = a, *y = b;
	int c = strcmp(x->listener, y->listener);
	if (c == 0)
		c = strcmp(x->limit, y->limit);
	if (c == 0)
		c = (int)x->outcome - (int)y->outcome;
	return c;
}

struct out {
	char *buf;
	size_t cap, len;
	bool overflow;
};

static void put(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (o->overflow)
		return;
	va_start(ap, fmt);
	n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->overflow = true;
	else
		o->len += (size_t)n;
}

/* A label value with \, " and newline escaped (text format 0.0.4). */
static void put_label(struct out *o, const char *v)
{
	char tmp[2 * SL_METRICS_NAME + 1];
	size_t j = 0;

	for (; *v != '\0' && j + 2 < sizeof(tmp); v++) {
		if (*v == '\\' || *v == '"') {
			tmp[j++] = '\\';
			tmp[j++] = *v;
		} else if (*v == '\n') {
			tmp[j++] = '\\';
			tmp[j++] = 'n';
		} else {
			tmp[j++] = *v;
		}
	}
	tmp[j] = '\0';
	put(o, "%s", tmp);
}

static void render_decisions(struct sl_metrics *m, struct out *o)
{
	size_t cap = (size_t)m->nshards * SL_METRICS_SERIES, n = 0;
	struct agg *a = malloc(sizeof(*a) * (cap ? cap : 1));
	uint64_t over[SL_METRIC_NOUTCOMES] = {0};

	put(o, "# HELP sluice_decisions_total Decisions by listener, deciding limit and outcome.\n"
	       "# TYPE sluice_decisions_total counter\n");
	if (a == NULL) {
		o->overflow = true;
		return;
	}
	for (unsigned i = 0; i < m->nshards; i++) {
		struct sl_metrics_shard *s = &m->shards[i];
		for (unsigned j = 0; j < SL_METRICS_SERIES; j++) {
			struct series *e = &s->series[j];
			if (atomic_load_explicit(&e->used, memory_order_acquire) == 0)
				continue;
			a[n].listener = e->listener;
			a[n].limit = e->limit;
			a[n].outcome = e->outcome;
			a[n].count = atomic_load_explicit(&e->count, memory_order_relaxed);
			n++;
		}
		for (unsigned k = 0; k < SL_METRIC_NOUTCOMES; k++)
			over[k] += atomic_load_explicit(&s->overflow[k], memory_order_relaxed);
	}
	qsort(a, n, sizeof(*a), agg_cmp);
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;
		uint64_t sum = a[i].count;
		while (j < n && agg_cmp(&a[i], &a[j]) == 0)
			sum += a[j++].count;
		put(o, "sluice_decisions_total{listener=\"");
		put_label(o, a[i].listener);
		put(o, "\",limit=\"");
		put_label(o, a[i].limit);
		put(o, "\",outcome=\"%s\"} %llu\n", outcome_name[a[i].outcome],
		    (unsigned long long)sum);
		i = j;
	}
	for (unsigned k = 0; k < SL_METRIC_NOUTCOMES; k++)
		if (over[k] != 0)
			put(o,
			    "sluice_decisions_total{listener=\"other\",limit=\"other\",outcome=\"%"
			    "s\"} "
			    "%llu\n",
			    outcome_name[k], (unsigned long long)over[k]);
	free(a);
}

static void render_latency(struct sl_metrics *m, struct out *o)
{
	/* Listener names seen in any shard, merged by name. */
	size_t cap = (size_t)m->nshards * SL_METRICS_LISTENERS, n = 0;
	const char **names = malloc(sizeof(*names) * (cap ? cap : 1));

	put(o, "# HELP sluice_decision_seconds Time from a request's arrival to its decision.\n"
	       "# TYPE sluice_decision_seconds histogram\n");
	if (names == NULL) {
		o->overflow = true;
		return;
	}
	for (unsigned i = 0; i < m->nshards; i++)
		for (unsigned j = 0; j < SL_METRICS_LISTENERS; j++) {
			struct hist *h = &m->shards[i].hist[j];
			size_t k;
			if (atomic_load_explicit(&h->used, memory_order_acquire) == 0)
				continue;
			for (k = 0; k < n && strcmp(names[k], h->listener) != 0; k++)
				;
			if (k == n)
				names[n++] = h->listener;
		}
	for (size_t k = 0; k < n; k++) {
		uint64_t b[SL_METRICS_BUCKETS + 1] = {0}, sum = 0, cum = 0;
		for (unsigned i = 0; i < m->nshards; i++)
			for (unsigned j = 0; j < SL_METRICS_LISTENERS; j++) {
				struct hist *h = &m->shards[i].hist[j];
				if (atomic_load_explicit(&h->used, memory_order_acquire) == 0 ||
				    strcmp(h->listener, names[k]) != 0)
					continue;
				for (unsigned x = 0; x <= SL_METRICS_BUCKETS; x++)
					b[x] += atomic_load_explicit(&h->bucket[x],
					                             memory_order_relaxed);
				sum += atomic_load_explicit(&h->sum, memory_order_relaxed);
			}
		/* A listener that only answered (admin, or requests refused
		 * before any decision) has no decision series, as before the
		 * per-listener request counts shared this table. */
		for (unsigned x = 0; x <= SL_METRICS_BUCKETS; x++)
			cum += b[x];
		if (cum == 0)
			continue;
		cum = 0;
		/* The workers keep counting while this reads: _count is the
		 * sum of the buckets read, so +Inf == _count always holds. */
		for (unsigned x = 0; x <= SL_METRICS_BUCKETS; x++) {
			cum += b[x];
			put(o, "sluice_decision_seconds_bucket{listener=\"");
			put_label(o, names[k]);
			put(o, "\",le=\"%s\"} %llu\n",
			    x < SL_METRICS_BUCKETS ? bucket_le[x] : "+Inf",
			    (unsigned long long)cum);
		}
		put(o, "sluice_decision_seconds_sum{listener=\"");
		put_label(o, names[k]);
		put(o, "\"} %llu.%09llu\n", (unsigned long long)(sum / SL_NS_PER_SEC),
		    (unsigned long long)(sum % SL_NS_PER_SEC));
		put(o, "sluice_decision_seconds_count{listener=\"");
		put_label(o, names[k]);
		put(o, "\"} %llu\n", (unsigned long long)cum);
	}
	free(names);
}

/* Per listener, summed over shards: responses and upstream exchanges by
 * status class and the upstream latency histogram. Listeners that never
 * talked to an upstream have no upstream series. */
struct lsum {
	uint64_t req[NCLASSES], up[NCLASSES], up_bucket[SL_METRICS_UP_BUCKETS + 1], up_sum;
};

static void sum_listener(struct sl_metrics *m, const char *name, struct lsum *t)
{
	memset(t, 0, sizeof(*t));
	for (unsigned i = 0; i < m->nshards; i++)
		for (unsigned j = 0; j < SL_METRICS_LISTENERS; j++) {
			struct hist *h = &m->shards[i].hist[j];
			if (atomic_load_explicit(&h->used, memory_order_acquire) == 0 ||
			    strcmp(h->listener, name) != 0)
				continue;
			for (unsigned k = 0; k < NCLASSES; k++) {
				t->req[k] += atomic_load_explicit(&h->req[k], memory_order_relaxed);
				t->up[k] += atomic_load_explicit(&h->up[k], memory_order_relaxed);
			}
			for (unsigned k = 0; k <= SL_METRICS_UP_BUCKETS; k++)
				t->up_bucket[k] += atomic_load_explicit(&h->up_bucket[k],
				                                        memory_order_relaxed);
			t->up_sum += atomic_load_explicit(&h->up_sum, memory_order_relaxed);
		}
}

/* Listener names seen in any shard, each once, into names (cap entries). */
static size_t listener_names(struct sl_metrics *m, const char **names, size_t cap)
{
	size_t n = 0;

	for (unsigned i = 0; i < m->nshards; i++)
		for (unsigned j = 0; j < SL_METRICS_LISTENERS; j++) {
			struct hist *h = &m->shards[i].hist[j];
			size_t k;
			if (atomic_load_explicit(&h->used, memory_order_acquire) == 0)
				continue;
			for (k = 0; k < n && strcmp(names[k], h->listener) != 0; k++)
				;
			if (k == n && n < cap)
				names[n++] = h->listener;
		}
	return n;
}

static void render_traffic(struct sl_metrics *m, struct out *o)
{
	size_t cap = (size_t)m->nshards * SL_METRICS_LISTENERS, n;
	const char **names = malloc(sizeof(*names) * (cap ? cap : 1));
	struct lsum *t = malloc(sizeof(*t) * (cap ? cap : 1));

	if (names == NULL || t == NULL) {
		free(names);
		free(t);
		o->overflow = true;
		return;
	}
	n = listener_names(m, names, cap);
	for (size_t k = 0; k < n; k++)
		sum_listener(m, names[k], &t[k]);
	put(o, "# HELP sluice_requests_total Responses sent, by listener and status class.\n"
	       "# TYPE sluice_requests_total counter\n");
	for (size_t k = 0; k < n; k++)
		for (unsigned c = 0; c < NCLASSES; c++) {
			if (c == 0 && t[k].req[0] == 0)
				continue;
			put(o, "sluice_requests_total{listener=\"");
			put_label(o, names[k]);
			put(o, "\",code=\"%s\"} %llu\n", class_name[c],
			    (unsigned long long)t[k].req[c]);
		}
	put(o, "# HELP sluice_upstream_responses_total Upstream exchanges, by listener and the "
	       "upstream's status class (code=\"none\": no response came).\n"
	       "# TYPE sluice_upstream_responses_total counter\n");
	for (size_t k = 0; k < n; k++) {
		uint64_t any = 0;
		for (unsigned c = 0; c < NCLASSES; c++)
			any += t[k].up[c];
		if (any == 0)
			continue;
		for (unsigned c = 0; c < NCLASSES; c++) {
			put(o, "sluice_upstream_responses_total{listener=\"");
			put_label(o, names[k]);
			put(o, "\",code=\"%s\"} %llu\n", c == 0 ? "none" : class_name[c],
			    (unsigned long long)t[k].up[c]);
		}
	}
	put(o, "# HELP sluice_upstream_seconds Time from sending a request upstream to its "
	       "response head.\n"
	       "# TYPE sluice_upstream_seconds histogram\n");
	for (size_t k = 0; k < n; k++) {
		uint64_t cum = 0, any = 0;
		for (unsigned x = 0; x <= SL_METRICS_UP_BUCKETS; x++)
			any += t[k].up_bucket[x];
		if (any == 0)
			continue;
		for (unsigned x = 0; x <= SL_METRICS_UP_BUCKETS; x++) {
			cum += t[k].up_bucket[x];
			put(o, "sluice_upstream_seconds_bucket{listener=\"");
			put_label(o, names[k]);
			put(o, "\",le=\"%s\"} %llu\n",
			    x < SL_METRICS_UP_BUCKETS ? up_bucket_le[x] : "+Inf",
			    (unsigned long long)cum);
		}
		put(o, "sluice_upstream_seconds_sum{listener=\"");
		put_label(o, names[k]);
		put(o, "\"} %llu.%09llu\n", (unsigned long long)(t[k].up_sum / SL_NS_PER_SEC),
		    (unsigned long long)(t[k].up_sum % SL_NS_PER_SEC));
		put(o, "sluice_upstream_seconds_count{listener=\"");
		put_label(o, names[k]);
		put(o, "\"} %llu\n", (unsigned long long)cum);
	}
	free(names);
	free(t);
}

/* Queue delays in flight and store failures by kind, summed over shards. */
static void render_worker_state(struct sl_metrics *m, struct out *o)
{
	uint64_t delayed = 0, err[NSTORE_ERR] = {0};

	for (unsigned i = 0; i < m->nshards; i++) {
		struct sl_metrics_shard *s = &m->shards[i];
		delayed += atomic_load_explicit(&s->delayed, memory_order_relaxed);
		for (unsigned k = 0; k < NSTORE_ERR; k++)
			err[k] += atomic_load_explicit(&s->store_err[k], memory_order_relaxed);
	}
	put(o,
	    "# HELP sluice_requests_delayed Requests waiting in a queue delay (rate queue) now.\n"
	    "# TYPE sluice_requests_delayed gauge\n"
	    "sluice_requests_delayed %llu\n",
	    (unsigned long long)delayed);
	put(o, "# HELP sluice_store_decision_errors_total Decisions whose store call failed, by "
	       "kind (answered per store.on_error).\n"
	       "# TYPE sluice_store_decision_errors_total counter\n");
	for (unsigned k = 0; k < NSTORE_ERR; k++) {
		bool common = k == (unsigned)-SL_ETIMEDOUT || k == (unsigned)-SL_EIO ||
		              k == (unsigned)-SL_EPROTO;
		if (err[k] == 0 && !common)
			continue;
		put(o, "sluice_store_decision_errors_total{kind=\"%s\"} %llu\n", store_err_name[k],
		    (unsigned long long)err[k]);
	}
}

/* Build, config and the gauges of other subsystems. */
static void render_process(struct sl_metrics *m, struct out *o)
{
	uint32_t set = atomic_load(&m->gauge_set);
	int64_t t = atomic_load(&m->cfg_time);

	put(o, "# HELP sluice_build_info The running build (value 1).\n"
	       "# TYPE sluice_build_info gauge\n"
	       "sluice_build_info{version=\"" SLUICE_VERSION "\"} 1\n");
	put(o,
	    "# HELP sluice_config_reloads_total Config reloads (SIGHUP), by result; a failed "
	    "one leaves the old config serving.\n"
	    "# TYPE sluice_config_reloads_total counter\n"
	    "sluice_config_reloads_total{result=\"ok\"} %llu\n"
	    "sluice_config_reloads_total{result=\"failed\"} %llu\n"
	    "# HELP sluice_config_last_reload_successful Whether the last load of the config "
	    "succeeded.\n"
	    "# TYPE sluice_config_last_reload_successful gauge\n"
	    "sluice_config_last_reload_successful %d\n",
	    (unsigned long long)atomic_load(&m->reload_ok),
	    (unsigned long long)atomic_load(&m->reload_failed),
	    atomic_load(&m->loads) == 0 || atomic_load(&m->last_ok) ? 1 : 0);
	if (atomic_load(&m->loads) > 0 && t > 0)
		put(o,
		    "# HELP sluice_config_loaded_timestamp_seconds When the config in force was "
		    "loaded (unix seconds).\n"
		    "# TYPE sluice_config_loaded_timestamp_seconds gauge\n"
		    "sluice_config_loaded_timestamp_seconds %lld.%03lld\n"
		    "# HELP sluice_config_info The config in force: hash is XXH3-64 of its bytes "
		    "(value 1).\n"
		    "# TYPE sluice_config_info gauge\n"
		    "sluice_config_info{hash=\"%016llx\"} 1\n",
		    (long long)(t / SL_NS_PER_SEC), (long long)(t % SL_NS_PER_SEC / 1000000),
		    (unsigned long long)atomic_load(&m->cfg_hash));
	for (unsigned g = 0; g < SL_GAUGE_N; g++) {
		int64_t v;
		if (!(set >> g & 1))
			continue;
		v = atomic_load(&m->gauge[g]);
		put(o, "# HELP %s %s\n# TYPE %s gauge\n", gauge_name[g], gauge_help[g],
		    gauge_name[g]);
		if (g == SL_GAUGE_USAGE_FLUSHED) {
			/* the lag as of this scrape: it keeps growing when
			 * flushes stop, which is what an alert wants */
			struct timespec ts;
			int64_t now, lag;

			clock_gettime(CLOCK_REALTIME, &ts);
			now = (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
			lag = now > v ? now - v : 0;
			put(o, "%s %lld.%09lld\n", gauge_name[g], (long long)(lag / SL_NS_PER_SEC),
			    (long long)(lag % SL_NS_PER_SEC));
		} else {
			put(o, "%s %lld\n", gauge_name[g], (long long)v);
		}
	}
}

void sl_metrics_conns(struct sl_metrics_shard *s, unsigned open, uint64_t accepted, unsigned pooled)
{
	atomic_store_explicit(&s->conn_open, open, memory_order_relaxed);
	atomic_store_explicit(&s->conn_accepted, accepted, memory_order_relaxed);
	atomic_store_explicit(&s->conn_pooled, pooled, memory_order_relaxed);
}

void sl_metrics_accept_paused(struct sl_metrics_shard *s)
{
	bump(&s->accept_paused, 1);
}

static void render_conns(struct sl_metrics *m, struct out *o)
{
	uint64_t v[4] = {0, 0, 0, 0};

	for (unsigned i = 0; i < m->nshards; i++) {
		struct sl_metrics_shard *s = &m->shards[i];
		v[0] += atomic_load_explicit(&s->conn_open, memory_order_relaxed);
		v[1] += atomic_load_explicit(&s->conn_accepted, memory_order_relaxed);
		v[2] += atomic_load_explicit(&s->conn_pooled, memory_order_relaxed);
		v[3] += atomic_load_explicit(&s->accept_paused, memory_order_relaxed);
	}
	put(o,
	    "# HELP sluice_connections_open Client connections open.\n"
	    "# TYPE sluice_connections_open gauge\n"
	    "sluice_connections_open %llu\n"
	    "# HELP sluice_connections_accepted_total Client connections accepted.\n"
	    "# TYPE sluice_connections_accepted_total counter\n"
	    "sluice_connections_accepted_total %llu\n"
	    "# HELP sluice_connections_pooled Closed connections kept for reuse.\n"
	    "# TYPE sluice_connections_pooled gauge\n"
	    "sluice_connections_pooled %llu\n"
	    "# HELP sluice_accept_paused_total Times accepting paused: out of file descriptors.\n"
	    "# TYPE sluice_accept_paused_total counter\n"
	    "sluice_accept_paused_total %llu\n",
	    (unsigned long long)v[0], (unsigned long long)v[1], (unsigned long long)v[2],
	    (unsigned long long)v[3]);
}

/* A full memory store, per limit: evictions of live states (kind="usage":
 * the state held >= 1 unit, which its client gets back; kind="idle": less)
 * and new keys it kept no state for (store.on_full: action="denied" or
 * "admitted"). Series of a limit appear with its first count; the total
 * of every eviction, whatever its limit, is sluice_store_evicted_total. */
static void render_store_full(struct out *o, const struct sl_store_stats *st)
{
	static const char *const kind[2] = {"usage", "idle"};
	static const char *const action[2] = {"denied", "admitted"};

	put(o,
	    "# HELP sluice_store_evictions_total Live states evicted from a full store, by limit "
	    "and kind (usage: the state held at least one unit, now given back).\n"
	    "# TYPE sluice_store_evictions_total counter\n");
	for (size_t i = 0; i < st->nlimits; i++) {
		const struct sl_store_limit_stats *l = &st->limits[i];
		uint64_t v[2] = {l->evicted_usage, l->evicted_idle};
		for (int k = 0; k < 2; k++) {
			put(o, "sluice_store_evictions_total{limit=\"");
			put_label(o, l->name);
			put(o, "\",kind=\"%s\"} %llu\n", kind[k], (unsigned long long)v[k]);
		}
	}
	put(o,
	    "# HELP sluice_store_evicted_total Live states evicted from a full store, all limits.\n"
	    "# TYPE sluice_store_evicted_total counter\n"
	    "sluice_store_evicted_total %llu\n"
	    "# HELP sluice_store_usage_evictions_total Evicted states that held at least one "
	    "unit, all limits.\n"
	    "# TYPE sluice_store_usage_evictions_total counter\n"
	    "sluice_store_usage_evictions_total %llu\n",
	    (unsigned long long)st->evictions, (unsigned long long)st->evictions_usage);
	put(o, "# HELP sluice_store_unstored_total New keys a full store kept no state for "
	       "(store.on_full), by limit and action.\n"
	       "# TYPE sluice_store_unstored_total counter\n");
	for (size_t i = 0; i < st->nlimits; i++) {
		const struct sl_store_limit_stats *l = &st->limits[i];
		uint64_t v[2] = {l->full_denied, l->full_admitted};
		for (int k = 0; k < 2; k++) {
			if (v[k] == 0)
				continue;
			put(o, "sluice_store_unstored_total{limit=\"");
			put_label(o, l->name);
			put(o, "\",action=\"%s\"} %llu\n", action[k], (unsigned long long)v[k]);
		}
	}
}

long sl_metrics_render(struct sl_metrics *m, const struct sl_store_stats *st, char *buf, size_t cap)
{
	struct out o = {buf, cap, 0, cap == 0};

	if (m != NULL) {
		render_process(m, &o);
		render_decisions(m, &o);
		render_latency(m, &o);
		render_traffic(m, &o);
		render_worker_state(m, &o);
		render_conns(m, &o);
	}
	if (st != NULL) {
		put(&o,
		    "# HELP sluice_store_states Live limit states in the store.\n"
		    "# TYPE sluice_store_states gauge\n"
		    "sluice_store_states %llu\n"
		    "# HELP sluice_store_capacity State slots of the store.\n"
		    "# TYPE sluice_store_capacity gauge\n"
		    "sluice_store_capacity %llu\n"
		    "# HELP sluice_store_errors_total Store backend failures.\n"
		    "# TYPE sluice_store_errors_total counter\n"
		    "sluice_store_errors_total %llu\n",
		    (unsigned long long)st->states, (unsigned long long)st->capacity,
		    (unsigned long long)st->errors);
		render_store_full(&o, st);
	}
	return o.overflow ? -1 : (long)o.len;
}
