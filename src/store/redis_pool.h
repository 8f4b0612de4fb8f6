/* The Redis store's workers, requests and connection pool: the types
 * redis.c (requests, batching, timeouts, cluster) and redis_pool.c (the
 * libuv adapter for hiredis, connections and their back-off) share. Private
 * to those two files. A worker and everything in it belong to one loop's
 * thread. */
#ifndef SLUICE_STORE_REDIS_POOL_H
#define SLUICE_STORE_REDIS_POOL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <hiredis/async.h>
#include <uv.h>
#include <sluice/algo.h>
#include <sluice/batch-t.h>
#include "store/redis_int.h"
#include "store/store.h"

#define MAX_SEEDS      8
#define MAX_NODES      64 /* cluster nodes a worker keeps */
#define MAX_POOL       8  /* connections per node per worker */
#define MAX_CHECKS     64 /* checks per batch */
#define MAX_TRIES      8  /* redirections and retries per command */
#define NO_NODE        SL_REDIS_NO_NODE
#define BACKOFF_MIN    20   /* ms, first reconnect delay */
#define BACKOFF_MAX    1000 /* ms, reconnect delay cap */
#define RETRY_DELAY    5    /* ms before resending after TRYAGAIN and the like */
#define UNSENT_DELAY   20   /* ms before resending a command no node received (cluster) */
#define NO_CONN        1    /* cmd_issue: no usable connection, nothing was sent */
#define DISCOVER_GAP   100  /* ms between two CLUSTER SLOTS rounds */
#define CACHE_SLOTS    1024 /* over-limit cache entries per worker (power of 2) */
#define KEY_PREFIX_LEN 23   /* "sl2:{" 16 hex "}:" */
#define NUM_LEN        24   /* bytes for one decimal argument */
#define SPEC_LEN       192  /* bytes for one spec argument (8 numbers) */
/* checks per call: one FCALL for many requests, short enough to leave
 * Redis to its other clients soon */
#define CALL_CHECKS 64
#define CALL_CMDS   64                        /* groups per call: several calls stay in flight */
#define SPEC_CACHE  64                        /* formatted specs kept per worker (power of 2) */
#define SPEC_PROBE  8                         /* slots a spec may take, from its hash one on */
#define CALL_XARGS  (CALL_CHECKS + CALL_CMDS) /* spec strings and heartbeat ids */
#define CALL_ARGS   (4 + CALL_CHECKS + CALL_CMDS + CALL_XARGS) /* argv entries per call */
#define CALL_NUMS   (CALL_CHECKS * SPEC_LEN + NUM_LEN)         /* bytes of spec strings, numkeys */
#define PROG_GROUP  18 /* program bytes of a group: op, m, commit time or heartbeat */
#define PROG_CHECK  12 /* program bytes of a check: spec, key, cost */
#define CALL_PROG   (2 * CALL_CMDS * PROG_GROUP + CALL_CHECKS * PROG_CHECK)
#define HB_KEY      "sl:nodes" /* local mode: sorted set of live workers */

struct rs_worker;

enum { C_DOWN = 0, C_CONNECTING, C_UP };

struct rs_conn {
	struct rs_worker *w;
	struct rs_node *node;
	redisAsyncContext *ac; /* NULL when down */
	uint8_t state;
	uint32_t inflight; /* commands awaiting a reply */
	uint64_t progress; /* ms (loop time): last reply, connect start, or first send */
	uint64_t retry_at; /* ms: no reconnect before */
	uint64_t backoff;  /* ms: last reconnect delay, 0 after a success */
	uint32_t opens;    /* connection attempts so far */
	uint32_t ups;      /* value of opens when a connect last succeeded */
};

struct rs_node {
	struct sl_redis_addr addr;
	struct rs_conn conns[MAX_POOL];
	unsigned rr;
	struct rs_cmd *qhead, *qtail; /* waiting for this loop pass's call */
	bool module;                  /* it runs SLUICE.CALL (src/redismod), as last probed */
};

/* One call to Redis: the groups of many commands in one FCALL/EVALSHA. */
struct rs_call {
	uint32_t n;
	struct rs_cmd *cmds[];
};

/* One script call. Holds a reference on its request while hiredis or the
 * retry list holds it. */
struct rs_cmd {
	struct rs_req *q;
	struct rs_cmd *next;  /* retry list */
	uint64_t at;          /* ms: resend time (retry list) */
	struct rs_cmd *qnext; /* its node's queue for the next call */
	uint32_t run;
	char op; /* group op: 'D', 'S', 'P', 'R', 'A' */
	uint8_t tries;
	uint8_t node;
	struct rs_conn *conn; /* the connection it was queued on, and its */
	uint32_t gen;         /* attempt number (opens) then */
	bool asking;          /* send ASKING first (one ASK redirection) */
	bool load;            /* send SCRIPT LOAD first (after NOSCRIPT) */
	bool via_module;      /* this attempt went to SLUICE.CALL */
	bool no_module;       /* the module refused it: the Lua library from now on */
};

/* A run: consecutive checks evaluated by one script call (cluster: whose
 * stateful keys share one slot; single Redis: the whole batch). */
struct rs_run {
	uint32_t first, end; /* checks [first, end) */
	uint32_t slot;
	bool committed, rejected;
	uint32_t denied;   /* rejected: index within the run */
	int64_t t_s, t_ns; /* server time of the commit */
};

enum { PH_DECIDE = 0, PH_PARALLEL };

struct rs_req {
	struct rs_worker *w;
	struct sl_batch *b;         /* borrowed until finish() */
	struct rs_req *prev, *next; /* pending list, by deadline */
	struct rs_req *wnext;       /* waiting for a slot map */
	uint64_t deadline;          /* ms, loop time */
	uint64_t sent;              /* ns, uv_hrtime at submit */
	uint32_t refs;              /* commands and list memberships alive */
	bool finished;
	uint8_t phase;
	char dop;                 /* group op of the decision: 'D', or 'S' (local mode) */
	struct sl_redis_ext *ext; /* local mode's extra request, or NULL */
	uint32_t nruns, outstanding;
	int status, err;
	size_t denied;
	int64_t delay, time; /* ns */
	struct rs_run *runs;
	uint32_t *koff, *klen; /* per check: key in kbuf (stateful checks only) */
	char *kbuf;
};

struct rs_cache_ent {
	uint64_t h;        /* hash of (limit_id, key); 0: empty */
	uint64_t cost;     /* units: requests at least this big are rejected */
	uint64_t until;    /* ns, uv_hrtime */
	uint64_t reset_at; /* ns, uv_hrtime */
	struct sl_result res;
};

struct rs_store;

struct rs_worker {
	struct rs_store *s; /* NULL once detached */
	uv_loop_t *loop;
	uv_timer_t timer;
	struct rs_worker *next; /* store's list */
	uv_check_t fcheck;      /* flush after the I/O callbacks of a pass */
	uv_prepare_t fprep;     /* flush before polling (submits from timers) */
	unsigned open_handles;  /* timer, fcheck, fprep not yet closed */
	bool closing, cluster, local_cache, flush_armed;
	bool no_func;     /* the server has no FUNCTION: EVALSHA the script */
	bool no_module;   /* never use the module (store.module: false) */
	uint64_t timeout; /* ms */
	unsigned pool;
	struct sl_redis_scripts sc;
	struct rs_node nodes[MAX_NODES];
	unsigned nnodes, disc_rr;
	bool have_map, discovering, disc_pending;
	struct rs_conn *disc_conn; /* carrying the CLUSTER SLOTS in flight */
	uint64_t last_discovery;   /* ms */
	uint8_t slots[SL_REDIS_SLOTS];
	struct rs_req *pend_head, *pend_tail;
	struct rs_req *wait_head, *wait_tail;
	struct rs_cmd *retry_head, *retry_tail;
	struct rs_cache_ent *cache; /* [CACHE_SLOTS] or NULL */
	struct {
		struct sl_limit_spec sp;
		uint64_t limit_id;
		char str[SPEC_LEN];
		size_t len;
	} specs[SPEC_CACHE]; /* formatted spec arguments, by content and id */
	/* scratch for one call: argv [CALL_ARGS], argl [CALL_ARGS], nums
	 * [CALL_NUMS], xargv and xargl [CALL_XARGS], prog [CALL_PROG] */
	const char **argv;
	size_t *argl;
	char *nums;
	const char **xargv;
	size_t *xargl;
	unsigned char *prog;
};

struct rs_store {
	struct sl_store base;
	struct sl_redis_addr seeds[MAX_SEEDS];
	unsigned nseeds;
	bool cluster, local_cache, no_module;
	uint64_t timeout; /* ms */
	unsigned pool;
	struct sl_redis_scripts sc;
	uint64_t id;
	pthread_mutex_t lock; /* workers list */
	struct rs_worker *workers;
	_Atomic uint64_t errors;
};

/* Checks with a state in Redis (a key): rate, quota, sliding, concurrency. */
static inline bool sl_redis_stateful(uint8_t algo)
{
	return algo >= SL_ALGO_RATE && algo <= SL_ALGO_CONCURRENCY;
}

static inline uint64_t now_ms(struct rs_worker *w)
{
	return uv_now(w->loop);
}

/* Open-or-reuse: a usable connection to node n, opening one whose back-off
 * has passed; NULL when every connection is down and backing off. Every new
 * connection pipelines the library's load ahead of its commands. */
struct rs_conn *sl_redis_conn_get(struct rs_worker *w, struct rs_node *n);
/* Queue the library's load (FUNCTION LOAD, or SCRIPT LOAD without
 * FUNCTION) on c. 0 or SL_EIO. */
int sl_redis_conn_load(struct rs_conn *c);
/* The operator's one line when the server at c's address stops answering
 * (down, why) or answers again: once per change for the whole process,
 * at most one line per 10 s per address (redis_pool.c). */
void sl_redis_link_event(const struct rs_conn *c, bool down, const char *why);

/* (Re)arm w's timer for what is due (redis.c): a connection going down in
 * cluster mode asks for a CLUSTER SLOTS round without waiting for a
 * request. Thread: w's loop. */
void sl_redis_worker_arm(struct rs_worker *w);

/* Drop c now: its pending commands complete with NULL replies. Not from
 * inside one of its own reply callbacks. */
void sl_redis_conn_drop(struct rs_conn *c);
/* The index of node host:port in w, added when new; SL_REDIS_NO_NODE when
 * the table is full or the host too long. */
unsigned sl_redis_node_find_add(struct rs_worker *w, const char *host, int port);

/* One call being built (redis_proto.c): keys go to w->argv from index 3,
 * the program to w->prog, spec strings and heartbeat ids to w->xargv. */
struct rs_build {
	size_t nk;                     /* keys so far */
	size_t nx;                     /* extra arguments so far */
	size_t plen;                   /* program bytes so far */
	size_t used;                   /* bytes of w->nums */
	uint16_t spec_arg[SPEC_CACHE]; /* ARGV index of a cached spec in this call, 0: none */
	bool lua;                      /* a group the module does not run: the Lua library */
};

/* Call arguments (redis_proto.c). build_start begins a call, cmd_build
 * adds cmd's groups (its keys, each distinct key of its run once, and its
 * program), build_end lays out w->argv: FCALL or EVALSHA, the function,
 * numkeys, the keys, the program, the extra arguments; it returns argc.
 * cmd_checks is the number of checks of cmd's run, cmd_hb whether cmd
 * carries a heartbeat, cmd_fields the reply fields its groups take. Valid
 * until the call is sent. */
void sl_redis_build_start(struct rs_worker *w, struct rs_build *cb);
void sl_redis_cmd_build(struct rs_cmd *cmd, struct rs_build *cb);
size_t sl_redis_build_end(struct rs_worker *w, struct rs_build *cb, bool module);
size_t sl_redis_cmd_checks(const struct rs_cmd *cmd);
bool sl_redis_cmd_hb(const struct rs_cmd *cmd);
size_t sl_redis_cmd_fields(const struct rs_cmd *cmd);

#endif
