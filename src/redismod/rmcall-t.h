/* Types of sluice's Redis module interpreter (call.c): one call's keys,
 * program and extra arguments in, the reply and the key writes out, the
 * same calling convention as the Lua library (src/store/redis_lib.lua,
 * above its main()) for the groups of exact mode (D decide, P peek). The
 * key access is the caller's (module.c: the module API; the fuzz target
 * and tests: memory). */
#ifndef SLUICE_REDISMOD_RMCALL_T_H
#define SLUICE_REDISMOD_RMCALL_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The protocol the client and this module agree on: the first argument
 * of SLUICE.CALL. A module of another one answers SLUICEPROTO, and the
 * client goes back to the Lua library. */
#define SL_RM_PROTO "3"

#define SL_RM_MAX_KEYS    1024 /* keys per call */
#define SL_RM_MAX_CHECKS  4096 /* checks per call */
#define SL_RM_MAX_ENTRIES 8192 /* entries (limit states) of all values of a call */
#define SL_RM_MAX_SPECS   1024 /* distinct spec arguments per call */

struct sl_rm_str {
	const char *p;
	size_t len;
};

struct sl_rm_io {
	void *u;
	/* The value of key k (an index into the call's keys): *v NULL when
	 * the key is missing; a nonzero return when it holds no string. */
	int (*get)(void *u, size_t k, const unsigned char **v, size_t *len);
	/* Store len bytes as key k's value with deadline dl (ms since the
	 * epoch), which the key already has when keep. 0 or nonzero. */
	int (*put)(void *u, size_t k, const unsigned char *v, size_t len, int64_t dl, bool keep);
	/* Delete key k. */
	int (*del)(void *u, size_t k);
};

#endif
