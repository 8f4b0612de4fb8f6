/* Snapshot stall benchmark: what a worker sees while the memory store's
 * snapshot of 10M states is written. Prints "NAME VALUE" lines:
 *
 *   - scan_hold_*: the time of each sl_table_scan call of the snapshot's
 *     chunk size (one shard lock acquired, a bounded chunk of slots copied,
 *     released) over a table of 10M states: the longest a decision on that
 *     shard can wait for the snapshot. shard_hold_*: the same for a whole
 *     shard at once, what holding the lock per shard would cost at the
 *     least (the old save also wrote while holding it).
 *   - idle_ / save_decision_*: the latency of single-limit decisions on
 *     uniformly drawn keys of the 10M, on a second thread, with no save
 *     running and while sl_memory_store_save runs on the main thread.
 *
 * The machine's other load shows in the max figures (a preempted thread),
 * so the p99 and p99.9 figures are the ones to compare; *_cpu_max is the
 * longest hold in this thread's CPU time, preemption left out. The file goes to $TMPDIR (or
 * /tmp) and is removed. "bench_snapshot scan" or "... save": one part. */
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

#define STATES      10000000
#define BYTES_PER   44                     /* bytes of table budget per state, as bench_engine */
#define SCAN_SLOTS  1024                   /* slots per lock hold: memory.c's SNAP_SCAN_SLOTS */
#define SHARDS_LOG2 8                      /* what the memory store picks for this budget */
#define IDLE_NS     (1000LL * 1000 * 1000) /* ns of decisions without a save */
#define MAX_SAMPLES (64u << 20)
#define CHUNK       1024 /* fill decisions between clock reads */

static int64_t clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* CPU time of this thread: a hold's own cost, without the time the thread
 * was preempted (the machine's other load) while holding the lock. */
static int64_t cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int64_t wall_ns(void)
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

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Latencies (ns) of one run, sorted by report(). */
struct samples {
	uint32_t *v;
	size_t n;
};

static void report(const char *name, struct samples *s)
{
	if (s->n == 0) {
		printf("%s_count 0\n", name);
		return;
	}
	qsort(s->v, s->n, sizeof(*s->v), cmp_u32);
	printf("%s_count %zu\n", name, s->n);
	printf("%s_p50_us %.2f\n", name, s->v[s->n / 2] / 1e3);
	printf("%s_p99_us %.2f\n", name, s->v[(size_t)((double)s->n * 0.99)] / 1e3);
	printf("%s_p999_us %.2f\n", name, s->v[(size_t)((double)s->n * 0.999)] / 1e3);
	printf("%s_max_us %.2f\n", name, s->v[s->n - 1] / 1e3);
	/* slower than 100 us / 1 ms, per million: a stall shows here even
	 * when preemption by other load sets the max */
	size_t over100 = 0, over1000 = 0;
	for (size_t i = 0; i < s->n; i++) {
		over100 += s->v[i] > 100000;
		over1000 += s->v[i] > 1000000;
	}
	printf("%s_over_100us_per_million %.1f\n", name, (double)over100 * 1e6 / (double)s->n);
	printf("%s_over_1ms_per_million %.1f\n", name, (double)over1000 * 1e6 / (double)s->n);
	fflush(stdout);
}

static void add(struct samples *s, int64_t ns)
{
	if (s->n < MAX_SAMPLES)
		s->v[s->n++] = ns > UINT32_MAX ? UINT32_MAX : (uint32_t)ns;
}

/* ---- scan: the lock hold itself ---- */

static void set_state(struct sl_state **st, size_t n, void *arg)
{
	(void)n;
	st[0]->expires = *(const int64_t *)arg;
	st[0]->v = 1;
}

static void scan_part(struct samples *s)
{
	struct sl_table *t;
	int64_t expires = wall_ns() + 86400LL * 1000000000LL;
	uint64_t x = 7;

	if (sl_table_create(&t, (uint64_t)STATES * BYTES_PER, SHARDS_LOG2) < 0) {
		fprintf(stderr, "bench_snapshot: table\n");
		exit(1);
	}
	for (uint64_t i = 0; i < STATES; i++) {
		struct sl_key128 k = {rnd(&x), rnd(&x)};
		sl_table_update(t, &k, 1, 0, set_state, &expires);
	}
	struct sl_table_entry *buf = malloc(SCAN_SLOTS * sizeof(*buf));
	struct sl_table_cursor c = {0, 0};
	uint64_t live = 0;
	size_t n;
	int rc;
	int64_t t0 = clock_ns(), cpu_max = 0;
	do {
		int64_t a = clock_ns(), ca = cpu_ns();
		rc = sl_table_scan(t, &c, 0, buf, SCAN_SLOTS, &n);
		int64_t cd = cpu_ns() - ca;
		add(s, clock_ns() - a);
		cpu_max = cd > cpu_max ? cd : cpu_max;
		live += n;
	} while (rc == SL_AGAIN);
	printf("scan_states %llu\n", (unsigned long long)live);
	printf("scan_total_ms %.1f\n", (double)(clock_ns() - t0) / 1e6);
	report("scan_hold", s);
	printf("scan_hold_cpu_max_us %.2f\n", (double)cpu_max / 1e3);
	free(buf);

	/* A whole shard per lock hold (the old save's granularity). */
	struct sl_table_stats ts;
	sl_table_stats(t, &ts);
	size_t cap = (size_t)(ts.capacity >> SHARDS_LOG2);
	buf = malloc(cap * sizeof(*buf));
	s->n = 0;
	c = (struct sl_table_cursor){0, 0};
	cpu_max = 0;
	do {
		int64_t a = clock_ns(), ca = cpu_ns();
		rc = sl_table_scan(t, &c, 0, buf, cap, &n);
		int64_t cd = cpu_ns() - ca;
		add(s, clock_ns() - a);
		cpu_max = cd > cpu_max ? cd : cpu_max;
	} while (rc == SL_AGAIN);
	printf("shard_slots %zu\n", cap);
	report("shard_hold", s);
	printf("shard_hold_cpu_max_us %.2f\n", (double)cpu_max / 1e3);
	free(buf);
	sl_table_destroy(t);
}

/* ---- save: decisions on another thread while the store saves ---- */

struct prober {
	struct sl_store *s;
	const struct sl_limit_spec *spec;
	atomic_int phase; /* 0 idle run, 2 during save, 3 stop */
	struct samples idle, during;
};

static void on_done(struct sl_batch *b)
{
	(void)b;
}

static void *probe(void *arg)
{
	struct prober *p = arg;
	struct sl_check c = {.spec = p->spec, .limit_id = 1, .cost = 1};
	uint64_t kb, x = 99;
	int ph;

	c.key = (const char *)&kb;
	c.key_len = sizeof(kb);
	while ((ph = atomic_load(&p->phase)) != 3) {
		kb = rnd(&x) % STATES;
		struct sl_batch b = {.checks = &c,
		                     .n = 1,
		                     .op = SL_OP_DECIDE,
		                     .now = wall_ns(),
		                     .done = on_done};
		int64_t a = clock_ns();
		sl_store_submit(p->s, &b);
		int64_t d = clock_ns() - a;
		if (ph == 0)
			add(&p->idle, d);
		else if (ph == 2)
			add(&p->during, d);
	}
	return NULL;
}

static void save_part(uint32_t *mem_a, uint32_t *mem_b)
{
	struct sl_limit_spec daily;
	struct sl_store *s;
	char path[512];
	const char *dir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";

	snprintf(path, sizeof(path), "%s/bench_snapshot.%d.snap", dir, (int)getpid());
	sl_spec_rate(&daily, 100, SL_NS_PER_DAY, 0, 0);
	if (sl_memory_store_create(&s, (uint64_t)STATES * BYTES_PER, 0x736c75696365ULL) < 0) {
		fprintf(stderr, "bench_snapshot: store\n");
		exit(1);
	}
	struct sl_check c = {.spec = &daily, .limit_id = 1, .cost = 1};
	uint64_t kb;
	int64_t now = wall_ns();
	c.key = (const char *)&kb;
	c.key_len = sizeof(kb);
	for (uint64_t k = 0; k < STATES; k++) {
		kb = k;
		if ((k & (CHUNK - 1)) == 0)
			now = wall_ns();
		struct sl_batch b = {
		        .checks = &c, .n = 1, .op = SL_OP_DECIDE, .now = now, .done = on_done};
		sl_store_submit(s, &b);
	}
	struct sl_store_stats st;
	s->ops->stats(s, &st);
	printf("save_states %llu\n", (unsigned long long)st.states);

	struct prober p = {.s = s, .spec = &daily, .idle = {mem_a, 0}, .during = {mem_b, 0}};
	atomic_init(&p.phase, 0);
	pthread_t th;
	pthread_create(&th, NULL, probe, &p);
	usleep((useconds_t)(IDLE_NS / 1000));
	atomic_store(&p.phase, 2);
	int64_t t0 = clock_ns();
	int rc = sl_memory_store_save(s, path, wall_ns());
	int64_t t1 = clock_ns();
	atomic_store(&p.phase, 3);
	pthread_join(th, NULL);
	if (rc < 0)
		fprintf(stderr, "bench_snapshot: save: %s\n", sl_strerror(rc));
	printf("save_ms %.1f\n", (double)(t1 - t0) / 1e6);
	/* how much work the other thread got done: a stalled prober does less */
	printf("idle_decisions_per_sec %.0f\n", (double)p.idle.n * 1e9 / (double)IDLE_NS);
	printf("save_decisions_per_sec %.0f\n", (double)p.during.n * 1e9 / (double)(t1 - t0));
	report("idle_decision", &p.idle);
	report("save_decision", &p.during);
	unlink(path);
	s->ops->destroy(s);
}

int main(int argc, char **argv)
{
	const char *only = argc > 1 ? argv[1] : NULL;
	uint32_t *a = malloc(MAX_SAMPLES * sizeof(uint32_t));
	uint32_t *b = malloc(MAX_SAMPLES * sizeof(uint32_t));

	if (!a || !b)
		return 1;
	if (!only || strcmp(only, "scan") == 0) {
		struct samples s = {a, 0};
		scan_part(&s);
	}
	if (!only || strcmp(only, "save") == 0)
		save_part(a, b);
	free(a);
	free(b);
	return 0;
}
