/* The Lua side of the Redis store: src/store/redis_lib.lua (embedded at
 * build time as sl_redis_lib) decides every check of a call atomically
 * with the formulas of src/core, on Redis server time, so the clocks of
 * sluice nodes never matter. A call carries many groups (one decision,
 * peek, refund, local-mode sync or heartbeat each), so one round trip and
 * one script entry serve every request a worker has ready. Loaded as a
 * Redis Function library (FUNCTION LOAD, its helpers defined once) or,
 * where FUNCTION is missing, as an EVALSHA script with the same body. This
 * file builds both sources and reads the library's reply: one string of
 * little-endian int64 fields (struct.pack), so neither side formats or
 * parses a number as text. */
#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <hiredis/hiredis.h>
#include <sluice/algo.h>
#include <sluice/batch-t.h>
#include <sluice/error.h>
#include "store/redis_int.h"

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *eval_src, *func_src;
static char eval_sha[41], func_name[32];

static void sha1_hex(const char *s, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_Digest(s, strlen(s), md, &len, EVP_sha1(), NULL);
	for (unsigned i = 0; i < 20 && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
}

/* The two sources are built once: the library is named after the body's
 * SHA1, so nodes running different versions never replace each other's. */
static void build(void)
{
	static const char eval_tail[] = "return main(KEYS, ARGV)\n";
	const char *body = (const char *)sl_redis_lib;
	char sha[41];
	size_t n;

	sha1_hex(body, sha);
	snprintf(func_name, sizeof(func_name), "sluice_%.12s", sha);
	n = strlen(body) + sizeof(eval_tail);
	eval_src = malloc(n);
	if (eval_src)
		snprintf(eval_src, n, "%s%s", body, eval_tail);
	n = strlen(body) + 2 * sizeof(func_name) + 64;
	func_src = malloc(n);
	if (func_src)
		snprintf(func_src, n, "#!lua name=%s\n%sredis.register_function('%s', main)\n",
		         func_name, body, func_name);
	if (eval_src)
		sha1_hex(eval_src, eval_sha);
}

int sl_redis_scripts(struct sl_redis_scripts *out)
{
	pthread_once(&once, build);
	if (!eval_src || !func_src)
		return SL_ENOMEM;
	out->eval_src = eval_src;
	out->func_src = func_src;
	out->sha = eval_sha;
	out->func = func_name;
	return 0;
}

void sl_redis_fill_limits(struct sl_check *ck)
{
	switch (ck->spec->algo) {
	case SL_ALGO_RATE:
	case SL_ALGO_QUOTA:
	case SL_ALGO_SLIDING:
	case SL_ALGO_CONCURRENCY:
		ck->res.limit = ck->spec->n;
		break;
	case SL_ALGO_UNLIMITED:
		ck->res.limit = SL_UNLIMITED;
		ck->res.remaining = SL_UNLIMITED;
		break;
	default:
		ck->res.limit = 0;
		ck->res.remaining = 0;
		break;
	}
}

/* Bounds of what the script can send: times are Redis TIME (s, us * 1000)
 * and the durations it computes are never negative. */
#define MAX_TIME_S (INT64_MAX / SL_NS_PER_SEC - 1) /* s: time in ns fits int64 */

int64_t sl_redis_field(const char *v, size_t k)
{
	uint64_t x;

	memcpy(&x, v + k * SL_REDIS_FIELD_BYTES, sizeof(x));
	return (int64_t)le64toh(x);
}

int sl_redis_reply_time(const redisReply *r, int64_t *t_s, int64_t *t_ns)
{
	if (r->type != REDIS_REPLY_STRING || r->len % SL_REDIS_FIELD_BYTES != 0 ||
	    r->len < SL_REDIS_HDR_FIELDS * SL_REDIS_FIELD_BYTES)
		return SL_EPROTO;
	*t_s = sl_redis_field(r->str, 0);
	*t_ns = sl_redis_field(r->str, 1);
	if (*t_s < 0 || *t_s > MAX_TIME_S || *t_ns < 0 || *t_ns >= SL_NS_PER_SEC)
		return SL_EPROTO;
	return 0;
}

size_t sl_redis_reply_fields(const redisReply *r)
{
	return r->len / SL_REDIS_FIELD_BYTES;
}

/* Result fields of one check: the quota's window is not its spec's. */
static size_t item_fields(const struct sl_check *ck)
{
	return SL_REDIS_ITEM_FIELDS + (ck->spec->algo == SL_ALGO_QUOTA);
}

size_t sl_redis_group_fields(char op, const struct sl_check *checks, size_t m)
{
	size_t n = 0;

	switch (op) {
	case 'H':
		return 1;
	case 'A':
		return m * SL_REDIS_RAW_FIELDS;
	default:
		for (size_t i = 0; i < m; i++)
			n += item_fields(&checks[i]);
		return op == 'S' ? n + m * SL_REDIS_RAW_FIELDS : n;
	}
}

int sl_redis_group_result(const char *v, size_t avail, char op, struct sl_check *checks, size_t m,
                          struct sl_redis_result *out, struct sl_redis_raw *raw)
{
	size_t need = sl_redis_group_fields(op, checks, m), items = op == 'A' ? 0 : m, f = 0;
	bool deny = false, delay = false;

	if (need > avail)
		return SL_EPROTO;
	out->status = 0;
	out->denied = m;
	out->delay = 0;
	for (size_t k = 0; k < need; k++)
		if (sl_redis_field(v, k) < 0)
			return SL_EPROTO;
	for (size_t i = 0; i < items; i++) {
		struct sl_check *ck = &checks[i];
		int64_t outcome = sl_redis_field(v, f), aux = sl_redis_field(v, f + 3);

		if (outcome > SL_REJECTED)
			return SL_EPROTO;
		ck->res.outcome = (uint8_t)outcome;
		ck->res.remaining = (uint64_t)sl_redis_field(v, f + 1);
		ck->res.reset_after = sl_redis_field(v, f + 2);
		ck->res.retry_after = outcome == SL_REJECTED ? aux : 0;
		ck->res.delay = outcome == SL_DELAYED ? aux : 0;
		if (ck->spec->algo == SL_ALGO_QUOTA)
			ck->res.window = sl_redis_field(v, f + 4);
		else if (ck->spec->algo == SL_ALGO_RATE || ck->spec->algo == SL_ALGO_SLIDING)
			ck->res.window = ck->spec->period;
		else
			ck->res.window = 0;
		f += item_fields(ck);
		sl_redis_fill_limits(ck);
		if (ck->res.outcome == SL_REJECTED && !deny) {
			deny = true;
			out->denied = i;
		}
		if (ck->res.outcome == SL_DELAYED)
			delay = true;
		if (ck->res.delay > out->delay)
			out->delay = ck->res.delay;
	}
	if (op == 'D' || op == 'S')
		out->status = deny ? 2 : delay ? 1 : 0;
	if (op == 'S' || op == 'A') {
		for (size_t i = 0; i < m; i++, f += SL_REDIS_RAW_FIELDS) {
			raw[i].rel = sl_redis_field(v, f);
			raw[i].v1 = (uint64_t)sl_redis_field(v, f + 1);
			raw[i].v2 = (uint64_t)sl_redis_field(v, f + 2);
		}
	}
	return (int)need;
}

int sl_redis_script_result(const redisReply *r, struct sl_check *checks, size_t m,
                           struct sl_redis_result *out)
{
	int64_t ts, tns;
	int n;

	if (sl_redis_reply_time(r, &ts, &tns) < 0 ||
	    sl_redis_reply_fields(r) != SL_REDIS_HDR_FIELDS + sl_redis_group_fields('D', checks, m))
		return SL_EPROTO;
	n = sl_redis_group_result(r->str + SL_REDIS_HDR_FIELDS * SL_REDIS_FIELD_BYTES,
	                          sl_redis_reply_fields(r) - SL_REDIS_HDR_FIELDS, 'D', checks, m,
	                          out, NULL);
	if (n < 0)
		return n;
	out->t_s = ts;
	out->t_ns = tns;
	out->time = ts * SL_NS_PER_SEC + tns;
	return 0;
}
