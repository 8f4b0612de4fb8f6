/* libFuzzer target: arbitrary bytes as a memory store snapshot file,
 * through sl_memory_store_load (the loader every restart runs on a file
 * that may be truncated, damaged or not a snapshot at all).
 *
 * The first input byte is a mode: with its low bit set, the rest gets a
 * correct count and checksum written over it before loading (when it is
 * long enough to have a header), so the campaign also reaches the restore
 * of intact files with arbitrary entries, past the checksum a random input
 * never matches. Per input, into a fresh store:
 *   - the return is one of 0, SL_EPROTO, SL_EINVAL, SL_EIO, SL_ENOMEM;
 *   - a refused file restores nothing (all or nothing);
 *   - a loaded file saves, and the saved file loads back into another
 *     fresh store with no more states, and the same number when the table
 *     is far from full (near its load bound, eviction may differ with the
 *     order of inserts).
 * Anything else aborts (a finding).
 *
 * Build: make fuzz (build-fuzz/fuzz_snapshot)
 * Run:   ./scripts/fuzz-run.sh build-fuzz 30 (corpus: corpus/snapshot/) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sluice/error.h>
#include "store/store.h"
#define XXH_INLINE_ALL
#include <xxhash.h>

#define HDR   40 /* bytes: header of the format in src/store/memory.c */
#define ENTRY 32 /* bytes */
#define TAIL  8  /* bytes */
#define NOW   (1700000000LL * 1000000000LL)

static uint64_t states(struct sl_store *s)
{
	struct sl_store_stats st;
	s->ops->stats(s, &st);
	return st.states;
}

static void put_u64(unsigned char *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

/* Make buf[0..len) an intact file: version, entry size, count and
 * checksum right; len rounded down to whole entries. Returns the length. */
static size_t fix_up(unsigned char *buf, size_t len)
{
	if (len < HDR + TAIL)
		return len;
	size_t n = (len - HDR - TAIL) / ENTRY;
	memcpy(buf, "SLUICEST", 8);
	buf[8] = 1, buf[9] = buf[10] = buf[11] = 0;
	buf[12] = ENTRY, buf[13] = buf[14] = buf[15] = 0;
	put_u64(buf + 24, n);
	uint64_t body = XXH3_64bits(buf + HDR, n * ENTRY);
	put_u64(buf + HDR + n * ENTRY, XXH3_64bits_withSeed(buf, HDR, body));
	return HDR + n * ENTRY + TAIL;
}

static int write_file(const char *path, const unsigned char *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	size_t w = len ? fwrite(p, 1, len, f) : 0;
	return fclose(f) == 0 && w == len ? 0 : -1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char path[64], saved[80];
	struct sl_store *a, *b;

	if (size == 0)
		return 0;
	if (!path[0]) {
		snprintf(path, sizeof(path), "/tmp/fuzz-snapshot-%d.snap", (int)getpid());
		snprintf(saved, sizeof(saved), "%s.saved", path);
	}
	size_t len = size - 1;
	unsigned char *buf = malloc(len ? len : 1);
	if (!buf)
		abort();
	memcpy(buf, data + 1, len);
	if (data[0] & 1)
		len = fix_up(buf, len);
	if (write_file(path, buf, len) != 0)
		abort();
	free(buf);

	if (sl_memory_store_create(&a, 1 << 20, 1) != 0)
		abort();
	int rc = sl_memory_store_load(a, path, NOW);
	if (rc != 0 && rc != SL_EPROTO && rc != SL_EINVAL && rc != SL_EIO && rc != SL_ENOMEM)
		abort();
	if (rc != 0 && rc != SL_ENOMEM && states(a) != 0)
		abort(); /* a refused file restored something */
	if (rc == 0) {
		if (sl_memory_store_save(a, saved, NOW) != 0)
			abort();
		if (sl_memory_store_create(&b, 1 << 20, 2) != 0)
			abort();
		if (sl_memory_store_load(b, saved, NOW) != 0 || states(b) > states(a) ||
		    (states(a) < 4096 && states(b) != states(a)))
			abort();
		b->ops->destroy(b);
		unlink(saved);
	}
	a->ops->destroy(a);
	unlink(path);
	return 0;
}
