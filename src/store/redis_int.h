/* Private interface between the Redis store's files: redis.c (connections,
 * requests, timeouts), redis_cluster.c (slot hashing, CLUSTER SLOTS and
 * redirection parsing) and redis_scripts.c (the Lua decision script). Not
 * part of the store interface; nothing outside src/store/redis*.c includes
 * it. */
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

/* The decision script (see redis_scripts.c for its calling convention) and
 * its SHA1 in lower-case hex, NUL-terminated. */
extern const char sl_redis_script[];
void sl_redis_script_sha1(char out[41]);

/* Script operations, ARGV[1]. */
#define SL_REDIS_OP_DECIDE "D" /* all-or-nothing take */
#define SL_REDIS_OP_PEEK   "P" /* report, consume nothing */
#define SL_REDIS_OP_REFUND "R" /* give back, then report */

/* Reply layout: 4 header integers then SL_REDIS_ITEM_FIELDS per check. */
#define SL_REDIS_HDR_FIELDS  4 /* status, denied (-1: none), time s, time ns */
#define SL_REDIS_ITEM_FIELDS 6 /* outcome, remaining, reset_after, retry_after, delay, window */
#define SL_REDIS_ARG_FIELDS  9 /* algo n period interval burst queue calendar tz cost */

struct redisReply;
struct sl_check;

/* What one decision-script reply says about the call as a whole. */
struct sl_redis_result {
	int64_t status;    /* 0 ok, 1 delay, 2 deny */
	size_t denied;     /* status 2: index (within the call's checks) of the
	                    * first rejecting check */
	int64_t t_s, t_ns; /* server time of the evaluation (s, ns) */
	int64_t time;      /* the same in ns */
	int64_t delay;     /* ns: the largest delay of any check */
};

/* Set ck->res.limit (and remaining, for unlimited) from ck->spec. */
void sl_redis_fill_limits(struct sl_check *ck);

/* Interpret reply r of one script call over checks[0, m) (in argument
 * order): fills every check's res (limit from its spec) and *out. Returns
 * 0, or SL_EPROTO when r is not the reply the script sends (wrong shape or
 * type, a status other than 0-2, a deny naming no check of the call, a
 * time whose nanoseconds overflow int64, an outcome other than 0-2 or a
 * negative count or duration), in which case the checks' results are
 * unspecified. Borrows r and checks. Thread: any. */
int sl_redis_script_result(const struct redisReply *r, struct sl_check *checks, size_t m,
                           struct sl_redis_result *out);

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
