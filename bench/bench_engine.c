/* Engine micro-benchmarks: decisions per second through the memory store's
 * submit path (hash, table update under the shard lock, sl_decide, done),
 * memory per state, and heap allocations per decision. Prints one
 * "NAME VALUE" line per figure; each throughput figure is the median of
 * RUNS timed runs of at least RUN_NS each.
 *
 * Allocations are counted by replacing malloc and friends in this program
 * with counting wrappers around glibc's own allocator (__libc_malloc ...),
 * so every heap allocation made by the store or libc during the measured
 * loop is seen. Memory is the growth of resident pages (/proc/self/statm)
 * over filling a table sized, as a user would, by a byte budget. */
#include <sluice/algo.h>
#include <sluice/error.h>
#include <sluice/table.h>

#include "store/store.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define RUNS                   5
#define RUN_NS                 (1100LL * 1000 * 1000) /* ns: each timed run lasts at least this */
#define CHUNK                  1024                   /* decisions between clock reads */
#define COLD_KEYS              10000000
#define THREE_KEYS             1000000
#define BYTES_BUDGET_PER_STATE 44 /* bytes: the user's memory budget per expected state */

/* ---- allocation counting ---- */

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static atomic_ulong allocs;

void *malloc(size_t n)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_malloc(n);
}

void *calloc(size_t n, size_t m)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_calloc(n, m);
}

void *realloc(void *p, size_t n)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_realloc(p, n);
}

void *aligned_alloc(size_t a, size_t n)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_memalign(a, n);
}

void *memalign(size_t a, size_t n)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	return __libc_memalign(a, n);
}

int posix_memalign(void **out, size_t a, size_t n)
{
	atomic_fetch_add_explicit(&allocs, 1, memory_order_relaxed);
	void *p = __libc_memalign(a, n);
	if (!p)
		return 12; /* ENOMEM */
	*out = p;
	return 0;
}

void free(void *p)
{
	__libc_free(p);
}

/* ---- helpers ---- */

static int64_t clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1DULL;
}

static inline uint64_t below(uint64_t *x, uint64_t n)
{
	return (uint64_t)(((unsigned __int128)rnd(x) * n) >> 64);
}

static long rss_bytes(void)
{
	long size = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &size, &res) != 2)
		res = -1;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

static void on_done(struct sl_batch *b)
{
	(void)b;
}

static int cmp_dbl(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_dbl);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static struct sl_store *mk_store(uint64_t bytes)
{
	struct sl_store *s = NULL;
	int rc = sl_memory_store_create(&s, bytes, 0x736c75696365ULL);
	if (rc < 0) {
		fprintf(stderr, "bench_engine: store: %s\n", sl_strerror(rc));
		exit(1);
	}
	return s;
}

/* A workload draws the keys of one decision into c[0..n). */
struct work {
	struct sl_store *s;
	const struct sl_limit_spec *spec[3];
	size_t n;      /* limits per decision */
	uint64_t keys; /* distinct keys drawn from (0: one key) */
	uint64_t seed; /* xorshift state */
	uint64_t decisions;
	uint64_t admitted;
	int64_t elapsed; /* ns */
};

/* Decide until RUN_NS have passed, reading the clock once per CHUNK
 * decisions as the daemon reads it once per loop pass. */
static void run_work(struct work *w)
{
	struct sl_check c[3];
	uint64_t kb[3];
	int64_t start = clock_ns(), now = start;

	memset(c, 0, sizeof(c));
	for (size_t i = 0; i < w->n; i++) {
		c[i].spec = w->spec[i];
		c[i].limit_id = i + 1;
		c[i].key = (const char *)&kb[i];
		c[i].key_len = sizeof(kb[i]);
		c[i].cost = 1;
	}
	w->decisions = w->admitted = 0;
	while (now - start < RUN_NS) {
		for (int j = 0; j < CHUNK; j++) {
			if (w->keys) {
				uint64_t k = below(&w->seed, w->keys);
				kb[0] = k;                         /* ip */
				kb[1] = k ^ 0x5555555555555555ULL; /* api key */
				kb[2] = k / 8;                     /* account */
			} else {
				kb[0] = kb[1] = kb[2] = 42;
			}
			struct sl_batch b = {.checks = c,
			                     .n = w->n,
			                     .op = SL_OP_DECIDE,
			                     .now = now,
			                     .done = on_done};
			sl_store_submit(w->s, &b);
			w->admitted += b.status == SL_OK;
		}
		w->decisions += CHUNK;
		now = clock_ns();
	}
	w->elapsed = now - start;
}

static double rate_of(const struct work *w)
{
	return (double)w->decisions * 1e9 / (double)w->elapsed;
}

/* Median decisions/s over RUNS runs; adds allocations seen to *alloc_n and
 * decisions to *dec_n. */
static double bench(struct work *w, uint64_t *alloc_n, uint64_t *dec_n)
{
	double r[RUNS];
	for (int i = 0; i < RUNS; i++) {
		unsigned long a0 = atomic_load(&allocs);
		run_work(w);
		*alloc_n += atomic_load(&allocs) - a0;
		*dec_n += w->decisions;
		r[i] = rate_of(w);
	}
	return median(r, RUNS);
}

static void *thread_main(void *arg)
{
	run_work(arg);
	return NULL;
}

int main(int argc, char **argv)
{
	struct sl_limit_spec hot, daily, ip, key, acct;
	uint64_t alloc_n = 0, dec_n = 0;
	/* "bench_engine NAME" (hot, cold, three, threads2): only that figure
	 * (cold: with the cold fill), to profile or compare one path alone. */
	const char *only = argc > 1 ? argv[1] : NULL;
#define RUN(name) (!only || strcmp(only, name) == 0)

	/* hot: never exhausted during the run, so every decision commits */
	sl_spec_rate(&hot, 1000000000, SL_NS_PER_MIN, 0, 0);
	/* cold: 100/day keeps each state live (TAT a day/100 ahead) for the
	 * whole benchmark, so states are counted, not reclaimed */
	sl_spec_rate(&daily, 100, SL_NS_PER_DAY, 0, 0);
	sl_spec_rate(&ip, 300, SL_NS_PER_MIN, 0, 0);
	sl_spec_rate(&key, 100, SL_NS_PER_MIN, 0, 0);
	sl_spec_quota(&acct, 1000000, SL_CAL_DAY, 0);

	/* One key, one GCRA limit, one thread. Creating the store allocates:
	 * if the counter missed that, it cannot vouch for the loops either. */
	unsigned long setup0 = atomic_load(&allocs);
	struct sl_store *s = mk_store(64 << 20);
	int counting = atomic_load(&allocs) > setup0;
	struct work w = {.s = s, .spec = {&hot}, .n = 1, .keys = 0, .seed = 1};
	if (RUN("hot")) {
		printf("hot_decisions_per_sec %.0f\n", bench(&w, &alloc_n, &dec_n));
		fflush(stdout);
	}
	s->ops->destroy(s);

	if (RUN("cold")) {
		/* Cold: a table budgeted for 10M states; fill it with 10M distinct
		 * keys (each key's first decision), measuring resident growth, then
		 * decide on keys drawn uniformly from the 10M. */
		long rss0 = rss_bytes();
		s = mk_store((uint64_t)COLD_KEYS * BYTES_BUDGET_PER_STATE);
		{
			struct sl_check c = {.spec = &daily, .limit_id = 1, .cost = 1};
			uint64_t kb;
			c.key = (const char *)&kb;
			c.key_len = sizeof(kb);
			int64_t t0 = clock_ns(), now = t0;
			for (uint64_t k = 0; k < COLD_KEYS; k++) {
				kb = k;
				if ((k & (CHUNK - 1)) == 0)
					now = clock_ns();
				struct sl_batch b = {.checks = &c,
				                     .n = 1,
				                     .op = SL_OP_DECIDE,
				                     .now = now,
				                     .done = on_done};
				sl_store_submit(s, &b);
			}
			int64_t t1 = clock_ns();
			long rss1 = rss_bytes();
			struct sl_store_stats st;
			s->ops->stats(s, &st);
			printf("cold_fill_decisions_per_sec %.0f\n",
			       (double)COLD_KEYS * 1e9 / (double)(t1 - t0));
			printf("states %llu\n", (unsigned long long)st.states);
			printf("table_bytes %llu\n", (unsigned long long)st.bytes);
			printf("evictions %llu\n", (unsigned long long)st.evictions);
			printf("bytes_per_state %.1f\n", (double)(rss1 - rss0) / (double)st.states);
			fflush(stdout);
		}
		/* Same limit id (run_work numbers limits from 1) and key bytes as the
		 * fill, so these decisions find the filled states. */
		w = (struct work){.s = s, .spec = {&daily}, .n = 1, .keys = COLD_KEYS, .seed = 2};
		printf("cold_decisions_per_sec %.0f\n", bench(&w, &alloc_n, &dec_n));
		fflush(stdout);
		s->ops->destroy(s);
	}

	if (RUN("three")) {
		/* Three limits per decision (ip, api key, account) over 1M keys. */
		s = mk_store((uint64_t)THREE_KEYS * 3 * BYTES_BUDGET_PER_STATE);
		w = (struct work){
		        .s = s, .spec = {&ip, &key, &acct}, .n = 3, .keys = THREE_KEYS, .seed = 3};
		printf("three_limit_decisions_per_sec %.0f\n", bench(&w, &alloc_n, &dec_n));
		fflush(stdout);
		s->ops->destroy(s);
	}

	if (RUN("threads2")) {
		/* Two threads, one shared store, 1M keys, one limit each decision. */
		s = mk_store((uint64_t)THREE_KEYS * BYTES_BUDGET_PER_STATE);
		double r2[RUNS];
		for (int i = 0; i < RUNS; i++) {
			struct work tw[2];
			pthread_t th[2];
			for (int t = 0; t < 2; t++) {
				tw[t] = (struct work){.s = s,
				                      .spec = {&daily},
				                      .n = 1,
				                      .keys = THREE_KEYS,
				                      .seed = 10 + t};
				pthread_create(&th[t], NULL, thread_main, &tw[t]);
			}
			for (int t = 0; t < 2; t++)
				pthread_join(th[t], NULL);
			r2[i] = rate_of(&tw[0]) + rate_of(&tw[1]);
		}
		printf("threads2_decisions_per_sec %.0f\n", median(r2, RUNS));
		s->ops->destroy(s);
	}

	if (!counting)
		fprintf(stderr, "bench_engine: malloc counter inactive, no allocation figure\n");
	else if (dec_n) /* threads2 alone counts no decisions */
		printf("allocations_per_decision %.6f\n", (double)alloc_n / (double)dec_n);
	return 0;
}
