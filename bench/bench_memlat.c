/* Memory latency yardstick for the cold engine benchmark: a dependent
 * pointer chase (each load's address comes from the previous load) over a
 * random cyclic permutation of the 64-byte lines of a region, so neither
 * the prefetchers nor out-of-order execution can overlap two loads. The
 * time per hop is the latency of one random access of that region size:
 * L1/L2/L3 for small regions, DRAM (plus any TLB walk) for large ones.
 *
 * The region is mmapped, 2 MiB aligned, and advised MADV_HUGEPAGE (or
 * MADV_NOHUGEPAGE with argument "nohuge") before first touch, like the
 * state table. Prints "memlat_ns_<size> VALUE" lines and, for the 440 MB
 * region (the cold table's size), the AnonHugePages actually granted.
 *
 * "memlat_pair_ns_<size>" chases, over the big region, pairs of lines in
 * one 4 KiB page (see link_pairs): the page walk's share of a miss.
 *
 * A second figure, "memlat2_ns_<size>", chases two independent chains at
 * once: the time per hop of each shows how much two misses overlap (the
 * memory-level parallelism one core gets).
 *
 * Usage: bench_memlat [nohuge]. Built with the other benchmarks, so
 * `make bench` runs it too (about 40 s). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define LINE  64
#define HUGE2 (2u << 20)
#define HOPS  (20u * 1000 * 1000)

static int64_t clock_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static uint64_t rnd(uint64_t *x)
{
	*x ^= *x >> 12;
	*x ^= *x << 25;
	*x ^= *x >> 27;
	return *x * 0x2545F4914F6CDD1DULL;
}

static long anon_huge_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Map `len` bytes 2 MiB aligned, advised before first touch. */
static void *map_region(size_t len, int huge, void **base, size_t *base_len)
{
	*base_len = len + HUGE2;
	char *p = mmap(NULL, *base_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	*base = p;
	char *a = (char *)(((uintptr_t)p + HUGE2 - 1) & ~(uintptr_t)(HUGE2 - 1));
	(void)madvise(a, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return a;
}

/* Link the lines of [a, a+len) into one random cycle (Sattolo). */
static void link_cycle(char *a, size_t len, uint64_t seed)
{
	size_t n = len / LINE;
	uint32_t *perm = malloc(n * sizeof(*perm));
	if (!perm) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rnd(&seed) % i);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < n; i++)
		*(void **)(a + (size_t)perm[i] * LINE) = a + (size_t)perm[(i + 1) % n] * LINE;
	free(perm);
}

/* Link the lines of [a, a+len) into one cycle that visits 4 KiB pages in
 * random order and, in each page, two lines (0 and 32) back to back: the
 * second hop of each pair misses the caches but hits the TLB, so the
 * difference from a fully random chase is the page walk's cost. */
static void link_pairs(char *a, size_t len, uint64_t seed)
{
	size_t n = len / 4096;
	uint32_t *perm = malloc(n * sizeof(*perm));
	if (!perm) {
		perror("malloc");
		exit(1);
	}
	for (size_t i = 0; i < n; i++)
		perm[i] = (uint32_t)i;
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(rnd(&seed) % i);
		uint32_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
	for (size_t i = 0; i < n; i++) {
		char *pg = a + (size_t)perm[i] * 4096, *nx = a + (size_t)perm[(i + 1) % n] * 4096;
		*(void **)pg = pg + 32 * LINE;
		*(void **)(pg + 32 * LINE) = nx;
	}
	free(perm);
}

static double chase1(char *a, uint32_t hops)
{
	void **p = (void **)a;
	for (uint32_t i = 0; i < hops / 4; i++) /* warm */
		p = *p;
	int64_t t0 = clock_ns();
	for (uint32_t i = 0; i < hops; i++)
		p = *p;
	int64_t t1 = clock_ns();
	__asm__ volatile("" : : "r"(p));
	return (double)(t1 - t0) / hops;
}

static double chase2(char *a, size_t len, uint32_t hops)
{
	void **p = (void **)a, **q = (void **)(a + (len / LINE / 2) * LINE);
	for (uint32_t i = 0; i < hops / 4; i++) {
		p = *p;
		q = *q;
	}
	int64_t t0 = clock_ns();
	for (uint32_t i = 0; i < hops; i++) {
		p = *p;
		q = *q;
	}
	int64_t t1 = clock_ns();
	__asm__ volatile("" : : "r"(p), "r"(q));
	return (double)(t1 - t0) / hops;
}

int main(int argc, char **argv)
{
	int huge = !(argc > 1 && strcmp(argv[1], "nohuge") == 0);
	static const size_t sizes[] = {32u << 10, 512u << 10, 8u << 20, 64u << 20, 439992320};

	printf("memlat_pages %s\n", huge ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE");
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t len = sizes[s] & ~(size_t)(LINE - 1);
		void *base;
		size_t base_len;
		char *a = map_region(len, huge, &base, &base_len);
		link_cycle(a, len, 0x9e3779b97f4a7c15ULL + s);
		uint32_t hops = len < (8u << 20) ? HOPS * 5 : HOPS;
		double one = chase1(a, hops);
		double two = chase2(a, len, hops);
		printf("memlat_ns_%zu %.1f\n", len, one);
		printf("memlat2_ns_%zu %.1f\n", len, two);
		if (len > (256u << 20)) {
			printf("anon_huge_kb_%zu %ld\n", len, anon_huge_kb());
			link_pairs(a, len, 0x1234567ULL);
			printf("memlat_pair_ns_%zu %.1f\n", len, chase1(a, HOPS));
		}
		fflush(stdout);
		munmap(base, base_len);
	}
	return 0;
}
