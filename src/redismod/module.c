/* sluice's Redis module (docs/store-redis.md, "The module"): the command
 * SLUICE.CALL proto numkeys key... program arg..., the arguments of the
 * Lua library's FCALL after the function name (proto: SL_RM_PROTO), run in
 * C by call.c with src/core's algorithms. Loaded with
 *   redis-server --loadmodule /usr/lib/sluice/sluice_redis.so
 * The store finds it per node (COMMAND INFO) and falls back to the Lua
 * library where it is missing or refuses a call. Each write is replicated
 * as the SET (or DEL) it amounts to, with an absolute deadline, so
 * replicas and the AOF hold the same values whatever their clocks. */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "redismod/call.h"
#include "redismod/rm_abi.h"

#define NAME "sluice"
#define CMD  "sluice.call"

static struct rm_api rm;

struct ctx {
	RedisModuleCtx *ctx;
	RedisModuleString **names;
	RedisModuleKey *open[SL_RM_MAX_KEYS];
	size_t nk;
};

static RedisModuleKey *key_of(struct ctx *c, size_t k)
{
	if (!c->open[k])
		c->open[k] = rm.OpenKey(c->ctx, c->names[k], RM_READ | RM_WRITE);
	return c->open[k];
}

static int io_get(void *u, size_t k, const unsigned char **v, size_t *len)
{
	RedisModuleKey *key = key_of(u, k);
	int t = rm.KeyType(key);

	*v = NULL;
	*len = 0;
	if (t == RM_KEY_EMPTY)
		return 0;
	if (t != RM_KEY_STR)
		return -1;
	*v = (const unsigned char *)rm.StringDMA(key, len, RM_READ);
	return *v ? 0 : -1;
}

static int io_put(void *u, size_t k, const unsigned char *v, size_t len, int64_t dl, bool keep)
{
	struct ctx *c = u;
	RedisModuleKey *key = key_of(c, k);
	size_t have;
	char *p;

	/* in place when the length holds: the TTL stays, nothing is freed */
	p = rm.StringDMA(key, &have, RM_WRITE);
	if (!p || have != len) {
		if (rm.StringTruncate(key, len) != RM_OK)
			return -1;
		p = rm.StringDMA(key, &have, RM_WRITE);
		if (!p || have != len)
			return -1;
	}
	memcpy(p, v, len);
	if (!keep && rm.SetAbsExpire(key, dl) != RM_OK)
		return -1;
	/* what the library's SET would signal and notify */
	rm.SignalModifiedKey(c->ctx, c->names[k]);
	rm.NotifyKeyspaceEvent(c->ctx, RM_NOTIFY_STRING, "set", c->names[k]);
	return rm.Replicate(c->ctx, "SET", "sbcl", c->names[k], (const char *)v, len, "PXAT",
	                    (long long)dl) == RM_OK
	               ? 0
	               : -1;
}

static int io_del(void *u, size_t k)
{
	struct ctx *c = u;

	if (rm.DeleteKey(key_of(c, k)) != RM_OK)
		return -1;
	rm.SignalModifiedKey(c->ctx, c->names[k]);
	rm.NotifyKeyspaceEvent(c->ctx, RM_NOTIFY_GENERIC, "del", c->names[k]);
	return rm.Replicate(c->ctx, "DEL", "s", c->names[k]) == RM_OK ? 0 : -1;
}

static int64_t wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* argv: SLUICE.CALL proto numkeys key... program arg... */
static int cmd_call(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
	static struct sl_rm_str keys[SL_RM_MAX_KEYS], args[SL_RM_MAX_SPECS + 2];
	static struct ctx c;
	struct sl_rm_io io = {.u = &c, .get = io_get, .put = io_put, .del = io_del};
	const unsigned char *out;
	const char *p, *err;
	size_t len, outlen;
	long long nk = 0;
	int rc;

	if (argc >= 3) {
		p = rm.StringPtrLen(argv[2], &len);
		for (size_t i = 0; i < len && nk <= SL_RM_MAX_KEYS; i++)
			nk = p[i] >= '0' && p[i] <= '9' ? nk * 10 + (p[i] - '0')
			                                : SL_RM_MAX_KEYS + 1;
		if (len == 0)
			nk = SL_RM_MAX_KEYS + 1;
	}
	if (rm.IsKeysPositionRequest(ctx)) {
		/* (Redis Cluster asks where the keys are before it runs a call) */
		for (int i = 0; nk <= SL_RM_MAX_KEYS && i < nk && 3 + i < argc; i++)
			rm.KeyAtPos(ctx, 3 + i);
		return RM_OK;
	}
	if (argc < 4)
		return rm.WrongArity(ctx);
	if (nk > SL_RM_MAX_KEYS || nk > argc - 4)
		return rm.ReplyWithError(ctx, "SLUICEPROTO bad numkeys");
	p = rm.StringPtrLen(argv[1], &len);
	if (len != strlen(SL_RM_PROTO) || memcmp(p, SL_RM_PROTO, len) != 0)
		return rm.ReplyWithError(ctx, "SLUICEPROTO another protocol");
	if ((size_t)argc - 3 - (size_t)nk > SL_RM_MAX_SPECS + 1)
		return rm.ReplyWithError(ctx, "SLUICEPROTO too many arguments");
	for (int i = 0; i < nk; i++)
		keys[i].p = rm.StringPtrLen(argv[3 + i], &keys[i].len);
	for (int i = 3 + (int)nk; i < argc; i++)
		args[i - 3 - nk].p = rm.StringPtrLen(argv[i], &args[i - 3 - nk].len);
	c.ctx = ctx;
	c.names = argv + 3;
	c.nk = (size_t)nk;
	memset(c.open, 0, (size_t)nk * sizeof(c.open[0]));
	rc = sl_rm_run(&io, wall_ns(), keys, (size_t)nk, args, (size_t)(argc - 3 - nk), &out,
	               &outlen, &err);
	for (size_t i = 0; i < c.nk; i++)
		if (c.open[i])
			rm.CloseKey(c.open[i]);
	if (rc != 0)
		return rm.ReplyWithError(ctx, err);
	return rm.ReplyWithStringBuffer(ctx, (const char *)out, outlen);
}

#define API(name)                                                                                  \
	do {                                                                                       \
		if (get_api("RedisModule_" #name, (void *)&rm.name) != RM_OK)                      \
			return RM_ERR;                                                             \
	} while (0)

__attribute__((visibility("default"))) int RedisModule_OnLoad(RedisModuleCtx *ctx,
                                                              RedisModuleString **argv, int argc);

int RedisModule_OnLoad(RedisModuleCtx *ctx, RedisModuleString **argv, int argc)
{
	int (*get_api)(const char *, void *);

	(void)argv;
	(void)argc;
	/* the context's first word is the server's GetApi */
	memcpy(&get_api, (void *)ctx, sizeof(get_api));
	API(SetModuleAttribs);
	API(IsModuleNameBusy);
	API(CreateCommand);
	API(IsKeysPositionRequest);
	API(KeyAtPos);
	API(StringPtrLen);
	API(OpenKey);
	API(CloseKey);
	API(KeyType);
	API(StringDMA);
	API(StringTruncate);
	API(SetAbsExpire);
	API(DeleteKey);
	API(Replicate);
	API(ReplyWithStringBuffer);
	API(ReplyWithError);
	API(WrongArity);
	API(SetModuleOptions);
	API(SignalModifiedKey);
	API(NotifyKeyspaceEvent);
	if (rm.IsModuleNameBusy(NAME))
		return RM_ERR;
	rm.SetModuleAttribs(ctx, NAME, 1, RM_APIVER);
	/* a key opened for writing is not "modified" (WATCH, client-side
	 * caching) unless it was written: peeks and denials write nothing */
	rm.SetModuleOptions(ctx, RM_OPTION_NO_IMPLICIT_SIGNAL_MODIFIED);
	return rm.CreateCommand(ctx, CMD, cmd_call, "write deny-oom getkeys-api", 0, 0, 0);
}
