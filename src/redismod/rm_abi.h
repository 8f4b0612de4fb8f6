/* The part of the Redis module ABI (API version 1, Redis 7.0 and later)
 * that sluice's module uses, declared here from the documented interface:
 * redis-server passes a context whose first word is its GetApi function,
 * which returns each API function by name. Only module.c includes this. */
#ifndef SLUICE_REDISMOD_RM_ABI_H
#define SLUICE_REDISMOD_RM_ABI_H

#include <stddef.h>

#define RM_OK                                 0
#define RM_ERR                                1
#define RM_APIVER                             1
#define RM_READ                               (1 << 0)
#define RM_WRITE                              (1 << 1)
#define RM_KEY_EMPTY                          0
#define RM_KEY_STR                            1
#define RM_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED (1 << 1)
#define RM_NOTIFY_GENERIC                     (1 << 2) /* keyspace events: g */
#define RM_NOTIFY_STRING                      (1 << 3) /* $ */

typedef struct RedisModuleCtx RedisModuleCtx;
typedef struct RedisModuleKey RedisModuleKey;
typedef struct RedisModuleString RedisModuleString;
typedef int (*rm_cmd_fn)(RedisModuleCtx *ctx, RedisModuleString **argv, int argc);

/* The functions, fetched by name ("RedisModule_" + field name) at load. */
struct rm_api {
	void (*SetModuleAttribs)(RedisModuleCtx *ctx, const char *name, int ver, int apiver);
	int (*IsModuleNameBusy)(const char *name);
	int (*CreateCommand)(RedisModuleCtx *ctx, const char *name, rm_cmd_fn fn, const char *flags,
	                     int firstkey, int lastkey, int keystep);
	int (*IsKeysPositionRequest)(RedisModuleCtx *ctx);
	void (*KeyAtPos)(RedisModuleCtx *ctx, int pos);
	const char *(*StringPtrLen)(const RedisModuleString *s, size_t *len);
	RedisModuleKey *(*OpenKey)(RedisModuleCtx *ctx, RedisModuleString *name, int mode);
	void (*CloseKey)(RedisModuleKey *k);
	int (*KeyType)(RedisModuleKey *k);
	char *(*StringDMA)(RedisModuleKey *k, size_t *len, int mode);
	int (*StringTruncate)(RedisModuleKey *k, size_t len);
	int (*SetAbsExpire)(RedisModuleKey *k, long long ms);
	int (*DeleteKey)(RedisModuleKey *k);
	int (*Replicate)(RedisModuleCtx *ctx, const char *cmd, const char *fmt, ...);
	int (*ReplyWithStringBuffer)(RedisModuleCtx *ctx, const char *buf, size_t len);
	int (*ReplyWithError)(RedisModuleCtx *ctx, const char *err);
	int (*WrongArity)(RedisModuleCtx *ctx);
	void (*SetModuleOptions)(RedisModuleCtx *ctx, int options);
	int (*SignalModifiedKey)(RedisModuleCtx *ctx, RedisModuleString *name);
	int (*NotifyKeyspaceEvent)(RedisModuleCtx *ctx, int type, const char *event,
	                           RedisModuleString *key);
};

#endif
