/* libFuzzer target: one SLUICE.CALL of sluice's Redis module (call.c) on
 * arbitrary bytes: any client of a Redis server can send the command, so
 * its keys, program, spec strings and the values it reads are all
 * untrusted. The input is length-prefixed fields:
 *   u8 keys (mod 8), per key: u8 length + name, u16 length + value
 *   (0xffff: no key); u16 length + program; then until the end u8 length
 *   + one more argument (spec strings).
 * The call runs twice (at two times), the second on what the first wrote:
 * a reply must be whole int64 fields, every value written must be of the
 * binary layout, and an error must write nothing but what already ran.
 * Seeds: tests/fuzz/corpus/redis_module/, calls taken from a real bench
 * run (MONITOR) in this format. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "redismod/call.h"

#define NK 8

struct mem {
	unsigned char *v[NK];
	size_t len[NK];
	bool have[NK];
};

static int m_get(void *u, size_t k, const unsigned char **v, size_t *len)
{
	struct mem *m = u;

	*v = m->have[k] ? m->v[k] : NULL;
	*len = m->have[k] ? m->len[k] : 0;
	if (*v == NULL && m->have[k])
		*v = (const unsigned char *)"";
	return 0;
}

static int m_put(void *u, size_t k, const unsigned char *v, size_t len, int64_t dl, bool keep)
{
	struct mem *m = u;
	unsigned char *c = malloc(len ? len : 1);

	(void)keep;
	if (!c)
		return -1;
	if (len < 9 || v[0] != 3 || (len - 9) % 32 != 0 || dl < 0)
		abort(); /* only the binary layout is ever written */
	memcpy(c, v, len);
	free(m->v[k]);
	m->v[k] = c;
	m->len[k] = len;
	m->have[k] = true;
	return 0;
}

static int m_del(void *u, size_t k)
{
	struct mem *m = u;

	free(m->v[k]);
	m->v[k] = NULL;
	m->len[k] = 0;
	m->have[k] = false;
	return 0;
}

struct in {
	const uint8_t *p;
	size_t n, at;
};

static bool take(struct in *in, size_t n, const uint8_t **out)
{
	if (in->n - in->at < n)
		return false;
	*out = in->p + in->at;
	in->at += n;
	return true;
}

static bool len_of(struct in *in, size_t bytes, size_t *len)
{
	const uint8_t *b;

	if (!take(in, bytes, &b))
		return false;
	*len = bytes == 1 ? b[0] : (size_t)(b[0] | b[1] << 8);
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = {data, size, 0};
	struct sl_rm_str keys[NK], args[64];
	struct sl_rm_io io;
	struct mem m;
	const uint8_t *b;
	const unsigned char *out;
	const char *err;
	size_t nk, na = 1, len, outlen;

	memset(&m, 0, sizeof(m));
	io = (struct sl_rm_io){.u = &m, .get = m_get, .put = m_put, .del = m_del};
	if (!take(&in, 1, &b))
		return 0;
	nk = b[0] % NK;
	for (size_t i = 0; i < nk; i++) {
		if (!len_of(&in, 1, &len) || !take(&in, len, &b))
			goto out;
		keys[i] = (struct sl_rm_str){(const char *)b, len};
		if (!len_of(&in, 2, &len))
			goto out;
		if (len == 0xffff)
			continue;
		if (!take(&in, len, &b))
			goto out;
		m.v[i] = malloc(len ? len : 1);
		if (!m.v[i])
			goto out;
		memcpy(m.v[i], b, len);
		m.len[i] = len;
		m.have[i] = true;
	}
	if (!len_of(&in, 2, &len) || !take(&in, len, &b))
		goto out;
	args[0] = (struct sl_rm_str){(const char *)b, len};
	while (na < 64 && len_of(&in, 1, &len) && take(&in, len, &b))
		args[na++] = (struct sl_rm_str){(const char *)b, len};
	for (int round = 0; round < 2; round++) {
		int64_t now = 1796196955000000000LL + round * 1500000000LL;

		if (sl_rm_run(&io, now, keys, nk, args, na, &out, &outlen, &err) == 0) {
			if (outlen < 16 || outlen % 8 != 0)
				abort();
		} else if (!err || strncmp(err, "SLUICEPROTO", 11) != 0) {
			abort();
		}
	}
out:
	for (size_t i = 0; i < NK; i++)
		free(m.v[i]);
	return 0;
}
