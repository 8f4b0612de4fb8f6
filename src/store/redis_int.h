/* Private interface between the Redis store's files: redis.c (requests,
 * batching, timeouts, cluster runs), redis_pool.c (connections, the libuv
 * adapter), redis_proto.c (call arguments), redis_cluster.c (slot hashing,
 * CLUSTER SLOTS and redirection parsing), redis_scripts.c (the Lua library
 * and its reply) and redis_local.c (mode: local); redis_pool.h holds the
 * worker types of the first three. Not part of the store interface;
 * nothing outside src/store/redis*.c includes it (but the unit tests and
 * the reply fuzzer). */
#ifndef SLUICE_STORE_REDIS_INT_H
#define SLUICE_STORE_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>

#define SL_REDIS_SLOTS    16384 /* Redis Cluster hash slots */
#define SL_REDIS_HOST_MAX 64    /* bytes, numeric host incl. NUL */

/* CRC16-CCITT (XMODEM: poly 0x1021, init 0) of len bytes. */
uint16_t sl_redis_crc16(const void *p, size_t len);

/* Cluster slot of a key: the CRC16 of its hash tag (the bytes between the
 * first '{' and the next '}', when non-empty) or of the whole key, mod
 * 16384. */
unsigned sl_redis_key_slot(const char *key, size_t len);

/* Parse a "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" error
 * reply of len bytes. Returns 1 for MOVED, 2 for ASK, 0 for anything else;
 * on 1 or 2 fills *slot, host (NUL-terminated, at most hostcap bytes) and
 * *port. */
int sl_redis_parse_redirect(const char *err, size_t len, unsigned *slot, char *host, size_t hostcap,
                            int *port);

/* Parse "redis://host:port[,host:port...]" (scheme optional, default port
 * 6379) into at most max seeds. Returns the count, or a negative SL_E*. Host
 * names are resolved here, once, to numeric addresses so that connecting
 * never blocks the event loop on DNS. */
struct sl_redis_addr {
	char host[SL_REDIS_HOST_MAX];
	int port;
};
int sl_redis_parse_url(const char *url, struct sl_redis_addr *out, unsigned max);

/* The decision library (src/store/redis_lib.lua, embedded by the build as
 * sl_redis_lib; calling convention above its main()) as a Function library
 * and as an EVAL script, the script's SHA1 (lower-case hex) and the
 * library's function name. Built once; 0 or SL_ENOMEM. The strings live as
 * long as the process. */
extern const unsigned char sl_redis_lib[];
struct sl_redis_scripts {
	const char *eval_src, *func_src, *sha, *func;
};
int sl_redis_scripts(struct sl_redis_scripts *out);

/* Group operations: the first argument of each group. */
#define SL_REDIS_OP_DECIDE 'D' /* all-or-nothing take */
#define SL_REDIS_OP_STRICT 'S' /* decide, then the raw states (local mode) */
#define SL_REDIS_OP_PEEK   'P' /* report, consume nothing */
#define SL_REDIS_OP_REFUND 'R' /* give back, then report */
#define SL_REDIS_OP_ADD    'A' /* take without a limit check, raw states (local mode) */
#define SL_REDIS_OP_HB     'H' /* node heartbeat: live node count (local mode) */

/* Reply layout: one string of little-endian int64 fields: 2 header fields
 * (server time s, ns), then per group the result of each check (D, P, R),
 * those and then SL_REDIS_RAW_FIELDS per check (S), SL_REDIS_RAW_FIELDS per
 * check (A) or one (H). A result is outcome, remaining, reset_after and one
 * field that is retry_after for a rejection, delay for a delay and 0
 * otherwise; a quota's adds its window (the others' window is their
 * spec's period, rate and sliding, or 0). */
#define SL_REDIS_FIELD_BYTES 8
#define SL_REDIS_HDR_FIELDS  2
#define SL_REDIS_ITEM_FIELDS 4 /* outcome, remaining, reset_after, retry_after or delay */
#define SL_REDIS_RAW_FIELDS  3 /* rel (expires - server time, ns; 0 fresh), v1, v2 */

struct redisReply;
struct sl_check;

/* What one group of a reply says about its checks as a whole. */
struct sl_redis_result {
	int64_t status;    /* 0 ok, 1 delay, 2 deny */
	size_t denied;     /* status 2: index (within the group's checks) of the
	                    * first rejecting check */
	int64_t t_s, t_ns; /* server time of the evaluation (s, ns) */
	int64_t time;      /* the same in ns */
	int64_t delay;     /* ns: the largest delay of any check */
};

/* A key's state after an S or A group, as the library holds it. */
struct sl_redis_raw {
	int64_t rel; /* ns: expires minus the call's server time; 0: fresh */
	uint64_t v1, v2;
};

/* Set ck->res.limit (and remaining, for unlimited) from ck->spec. */
void sl_redis_fill_limits(struct sl_check *ck);

/* Field k of the fields at v. */
int64_t sl_redis_field(const char *v, size_t k);

/* The server time heading reply r: 0, or SL_EPROTO when r is not a string
 * of whole fields whose first two are a time whose nanoseconds fit int64. */
int sl_redis_reply_time(const struct redisReply *r, int64_t *t_s, int64_t *t_ns);

/* Fields in reply r (a string that passed sl_redis_reply_time). */
size_t sl_redis_reply_fields(const struct redisReply *r);

/* Reply fields a group of op over checks[0, m) takes. */
size_t sl_redis_group_fields(char op, const struct sl_check *checks, size_t m);

/* Interpret the group of op over checks[0, m) at v (avail fields left):
 * fills every check's res (not for A) and out's status, denied and delay
 * (not its time), and raw[0, m) for S and A. Returns the fields used, or
 * SL_EPROTO when they are not what the library sends (too few, negative,
 * an outcome other than 0-2). Borrows everything. Thread: any. */
int sl_redis_group_result(const char *v, size_t avail, char op, struct sl_check *checks, size_t m,
                          struct sl_redis_result *out, struct sl_redis_raw *raw);

/* A whole reply of one D group over checks[0, m): the header and the group,
 * out's time included. 0 or SL_EPROTO (also for a reply of another size). */
int sl_redis_script_result(const struct redisReply *r, struct sl_check *checks, size_t m,
                           struct sl_redis_result *out);

/* Local mode's requests on the exact store (redis.c): op S decides b
 * (b->op SL_OP_DECIDE) and also reports the states after it, op A takes
 * every check's cost without a limit check (b->op ignored) and reports the
 * states; with hb_id it first registers that worker id as live for hb_ttl
 * and reports the live count. raw[b->n] and x are the caller's until
 * done(b). Returns as submit; b->time is the server time of the call. */
struct sl_redis_ext {
	char op;                  /* SL_REDIS_OP_STRICT or SL_REDIS_OP_ADD */
	struct sl_redis_raw *raw; /* [b->n]: out */
	const char *hb_id;        /* A only: heartbeat of this id, or NULL */
	uint64_t hb_ttl;          /* ms a heartbeat counts */
	int64_t hb_count;         /* out: workers alive within hb_ttl */
};
struct sl_store;
struct sl_batch;
int sl_redis_submit_ext(struct sl_store *s, struct sl_batch *b, struct sl_redis_ext *x);

/* Local mode (redis_local.c) over the exact store `exact` (taken: the
 * local store destroys it), with conf's sync and strict_below. 0 or
 * SL_ENOMEM. detach is sl_redis_store_detach's for a local store. */
struct sl_store_conf;
int sl_redis_local_create(struct sl_store **out, struct sl_store *exact,
                          const struct sl_store_conf *conf);
void sl_redis_local_detach(struct sl_store *s, void *loop);
#include <stdbool.h>
bool sl_redis_is_local(const struct sl_store *s);
/* Decisions made locally, sent to Redis as strict ones, and forwarded to
 * the exact store (concurrency, releases, peeks), since creation. */
void sl_redis_local_counts(const struct sl_store *s, uint64_t *local, uint64_t *strict,
                           uint64_t *forwarded);

/* The slot map a CLUSTER SLOTS reply r describes: map[slot] is the index
 * node(arg, host, port) gives the slot's master (SL_REDIS_NO_NODE where r
 * names none, or node() refused it). An empty or "?" host means from_host
 * (the node asked); a range whose port is outside 1-65535 is skipped, and
 * slot numbers outside 0-16383 are ignored. Returns the number of slots covered. Bounded work:
 * SL_REDIS_SLOTS plus one node() call per well-formed range. Thread: any. */
#define SL_REDIS_NO_NODE 0xff
typedef unsigned (*sl_redis_node_fn)(void *arg, const char *host, int port);
unsigned sl_redis_slot_map(const struct redisReply *r, const char *from_host, sl_redis_node_fn node,
                           void *arg, uint8_t map[SL_REDIS_SLOTS]);

#endif
