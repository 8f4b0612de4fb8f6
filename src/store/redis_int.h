/* Private interface between the Redis store's files: redis.c (connections,
 * requests, timeouts), redis_cluster.c (slot hashing, CLUSTER SLOTS and
 * redirection parsing) and redis_scripts.c (the Lua decision script). Not
 * part of the store interface; nothing outside src/store/redis*.c includes
 * it. */
#ifndef SLUICE_STORE_REDIS_INT_H
#define SLUICE_STORE_REDIS_INT_H

#include <stddef.h>
#include <stdint.h>

#define SL_REDIS_SLOTS 16384 /* Redis Cluster hash slots */
#define SL_REDIS_HOST_MAX 64 /* bytes, numeric host incl. NUL */

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
int sl_redis_parse_redirect(const char *err, size_t len, unsigned *slot, char *host,
			    size_t hostcap, int *port);

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
#define SL_REDIS_OP_PEEK "P"   /* report, consume nothing */
#define SL_REDIS_OP_REFUND "R" /* give back, then report */

/* Reply layout: 4 header integers then SL_REDIS_ITEM_FIELDS per check. */
#define SL_REDIS_HDR_FIELDS 4  /* status, denied (-1: none), time s, time ns */
#define SL_REDIS_ITEM_FIELDS 6 /* outcome, remaining, reset_after, retry_after, delay, window */
#define SL_REDIS_ARG_FIELDS 9  /* algo n period interval burst queue calendar tz cost */

#endif
