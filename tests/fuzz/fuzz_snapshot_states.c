/* libFuzzer target: arbitrary bytes as a memory-store snapshot file (format
 * in src/store/memory.c) through sl_memory_store_load, then, when the file
 * was taken, decisions, peeks and releases over the restored states (the
 * fuzzer controls every state's expiry and value: the corpus comes from
 * real saves, so its keys are those of the checks run here, and every
 * algorithm meets states it never wrote), and a save and reload of the
 * result, which must succeed and restore no more states than there were.
 * fuzz_snapshot is about the loader itself (all or nothing); this one is
 * about what the algorithms do with whatever it restores.
 *
 * A snapshot is checksummed, so random bytes rarely get past the trailer.
 * Byte 0 of the input selects:
 *   bit 0   "fix" mode: magic, version and entry size are forced, the count
 *           is set from the length and the trailer recomputed over the
 *           fuzzed header and entries, so the entries themselves are loaded;
 *   bits 1-3 when the load happens, relative to the corpus' save time (so
 *           the same entries are live, expired, or far in the past);
 *   bit 4   the store already holds a state (a file with another seed is
 *           then refused, SL_EINVAL).
 * The rest is the file. The seed corpus comes from real saves of a store
 * that ran the checks below: FUZZ_SNAPSHOT_SEEDS=DIR ./fuzz_snapshot_states
 * -runs=0 writes it (tests/fuzz/corpus/snapshot_states/). The file is written to a memfd,
 * so a campaign does no disk I/O for loads. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include <sluice/batch-t.h>
#include "store/store.h"
#define XXH_INLINE_ALL
#include <xxhash.h>

#define HDR   40 /* bytes: header */
#define ENTRY 32 /* bytes: one entry */
#define TAIL  8  /* bytes: trailer */
#define SEED  42
#define T0    (1700000000LL * SL_NS_PER_SEC) /* ns: when the corpus was saved */
#define NCHK  8

static struct sl_limit_spec specs[4];
static struct sl_check checks[NCHK];
static const char *const keys[NCHK] = {"ip:192.0.2.1", "ip:192.0.2.2", "acct:acme",    "acct:tiny",
                                       "k:sk_a",       "k:sk_b",       "route:/login", ""};
static int memfd = -1;
static char memfd_path[64], save_path[64];
static unsigned char *buf;
static size_t bufcap;

/* Load times, ns after T0: before the save, at it, within every window,
 * after most expiries, and far ahead. */
static const int64_t offsets[8] = {-SL_NS_PER_HOUR,
                                   0,
                                   1,
                                   SL_NS_PER_SEC,
                                   90 * SL_NS_PER_SEC,
                                   SL_NS_PER_HOUR,
                                   SL_NS_PER_DAY,
                                   40 * 365 * SL_NS_PER_DAY};

static void done_cb(struct sl_batch *b)
{
	(void)b;
}

/* One batch over checks[from, to) with op at now. Returns the status. */
static int submit(struct sl_store *s, size_t from, size_t to, uint8_t op, uint64_t cost,
                  int64_t now)
{
	struct sl_batch b;

	for (size_t i = from; i < to; i++) {
		checks[i].cost = cost;
		memset(&checks[i].res, 0, sizeof(checks[i].res));
	}
	memset(&b, 0, sizeof(b));
	b.checks = checks + from;
	b.n = to - from;
	b.op = op;
	b.now = now;
	b.done = done_cb;
	if (sl_store_submit(s, &b) != 0)
		abort();
	for (size_t i = from; i < to; i++) {
		const struct sl_result *r = &checks[i].res;
		if (r->outcome > SL_REJECTED || r->reset_after < 0 || r->retry_after < 0 ||
		    r->delay < 0 || (r->remaining > r->limit && r->limit != SL_UNLIMITED)) {
			fprintf(stderr,
			        "fuzz_snapshot_states: check %zu algo %u: outcome %u remaining "
			        "%llu of "
			        "%llu reset_after %lld retry_after %lld delay %lld\n",
			        i, checks[i].spec->algo, r->outcome,
			        (unsigned long long)r->remaining, (unsigned long long)r->limit,
			        (long long)r->reset_after, (long long)r->retry_after,
			        (long long)r->delay);
			abort();
		}
	}
	return b.status;
}

/* The traffic the corpus was made of, and what runs over restored states. */
static void traffic(struct sl_store *s, int64_t now)
{
	for (size_t i = 0; i < NCHK; i++) {
		submit(s, i, i + 1, SL_OP_PEEK, 0, now);
		submit(s, i, i + 1, SL_OP_DECIDE, 1, now);
		submit(s, i, i + 1, SL_OP_DECIDE, 3, now);
	}
	submit(s, 0, NCHK, SL_OP_DECIDE, 1, now); /* all or nothing */
	for (size_t i = 0; i < NCHK; i++)
		if (checks[i].spec->algo == SL_ALGO_CONCURRENCY)
			submit(s, i, i + 1, SL_OP_RELEASE, 1, now);
}

static uint64_t used(struct sl_store *s)
{
	struct sl_store_stats st;

	s->ops->stats(s, &st);
	return st.states;
}

static void write_seed(const char *dir, const char *name, uint8_t mode, const char *from)
{
	char path[512];
	FILE *in = fopen(from, "rb"), *out;
	int c;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	out = fopen(path, "wb");
	if (!in || !out)
		abort();
	fputc(mode, out);
	while ((c = fgetc(in)) != EOF)
		fputc(c, out);
	fclose(in);
	fclose(out);
}

/* Real saves: an empty store, one after a little traffic, one after a lot
 * (rate and concurrency slots full, quota used), one after releases. */
static void make_seeds(const char *dir)
{
	struct sl_store *s;

	if (sl_memory_store_create(&s, 1 << 20, SEED) != 0)
		abort();
	if (sl_memory_store_save(s, save_path, T0) != 0)
		abort();
	write_seed(dir, "empty", 0x02, save_path);
	submit(s, 0, 2, SL_OP_DECIDE, 1, T0 - SL_NS_PER_SEC);
	if (sl_memory_store_save(s, save_path, T0) != 0)
		abort();
	write_seed(dir, "two_states", 0x02, save_path);
	write_seed(dir, "two_states_fix", 0x03, save_path);
	for (int k = 0; k < 6; k++)
		traffic(s, T0 - 10 * SL_NS_PER_SEC + k);
	if (sl_memory_store_save(s, save_path, T0) != 0)
		abort();
	write_seed(dir, "busy", 0x04, save_path);
	write_seed(dir, "busy_fix_later", 0x09, save_path);
	write_seed(dir, "busy_fix_occupied", 0x13, save_path);
	write_seed(dir, "busy_far_future", 0x0e, save_path);
	s->ops->destroy(s);
	unlink(save_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	const char *seeds = getenv("FUZZ_SNAPSHOT_SEEDS");

	(void)argc;
	(void)argv;
	if (sl_spec_rate(&specs[0], 10, SL_NS_PER_MIN, 3, 2) != 0 ||
	    sl_spec_quota(&specs[1], 100, SL_CAL_HOUR, 0) != 0 ||
	    sl_spec_sliding(&specs[2], 5, SL_NS_PER_MIN) != 0 ||
	    sl_spec_concurrency(&specs[3], 2, 30 * SL_NS_PER_SEC) != 0)
		abort();
	for (size_t i = 0; i < NCHK; i++) {
		checks[i].spec = &specs[i % 4];
		checks[i].limit_id = 1000 + i % 4;
		checks[i].key = keys[i];
		checks[i].key_len = (uint32_t)strlen(keys[i]);
	}
	memfd = memfd_create("fuzz_snapshot_states", 0);
	if (memfd < 0)
		abort();
	snprintf(memfd_path, sizeof(memfd_path), "/proc/self/fd/%d", memfd);
	snprintf(save_path, sizeof(save_path), "/dev/shm/fuzz-snapshot-states-%d.snap",
	         (int)getpid());
	if (seeds)
		make_seeds(seeds);
	return 0;
}

static void put_u32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* The fix mode: a well-formed file around the fuzzed header and entries. */
static size_t fix(const uint8_t *data, size_t size)
{
	size_t count, len;

	if (size < HDR)
		return 0;
	count = (size - HDR) / ENTRY;
	len = HDR + count * ENTRY;
	if (len + TAIL > bufcap) {
		free(buf);
		bufcap = len + TAIL;
		if ((buf = malloc(bufcap)) == NULL)
			abort();
	}
	memcpy(buf, data, len);
	memcpy(buf, "SLUICEST", 8);
	put_u32(buf + 8, 1);
	put_u32(buf + 12, ENTRY);
	put_u64(buf + 24, count);
	put_u64(buf + len, XXH3_64bits_withSeed(buf, HDR, XXH3_64bits(buf + HDR, len - HDR)));
	return len + TAIL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_store *s, *again;
	const uint8_t *file;
	size_t len;
	int64_t now;
	uint64_t n;
	int rc;

	if (size < 1)
		return 0;
	now = T0 + offsets[(data[0] >> 1) & 7];
	if (data[0] & 1) {
		len = fix(data + 1, size - 1);
		file = buf;
		if (len == 0)
			return 0;
	} else {
		file = data + 1;
		len = size - 1;
	}
	if (ftruncate(memfd, 0) != 0 || pwrite(memfd, file, len, 0) != (ssize_t)len)
		abort();
	if (sl_memory_store_create(&s, 1 << 20, SEED + 1) != 0)
		abort();
	if (data[0] & 0x10)
		submit(s, 0, 1, SL_OP_DECIDE, 1, now);
	rc = sl_memory_store_load(s, memfd_path, now);
	if (rc != 0 && rc != SL_EPROTO && rc != SL_EINVAL) {
		fprintf(stderr, "fuzz_snapshot_states: load returned %d (%s)\n", rc,
		        sl_strerror(rc));
		abort();
	}
	if (rc == 0) {
		traffic(s, now);
		n = used(s);
		/* What was restored and decided survives a save and a load. */
		if (sl_memory_store_save(s, save_path, now) != 0)
			abort();
		if (sl_memory_store_create(&again, 1 << 20, SEED + 2) != 0)
			abort();
		rc = sl_memory_store_load(again, save_path, now);
		if (rc != 0 || used(again) > n) {
			fprintf(stderr, "fuzz_snapshot_states: reload: %d, %llu states of %llu\n",
			        rc, (unsigned long long)used(again), (unsigned long long)n);
			abort();
		}
		again->ops->destroy(again);
		unlink(save_path);
	}
	s->ops->destroy(s);
	return 0;
}
