/* The store-full log: a timer on the daemon's main loop that reads the
 * store's per-limit eviction counts once a second and, when states with
 * usage were evicted (or new keys were denied or admitted unstored under
 * store.on_full), writes one line to stderr summarising the counts per
 * limit since the last line: at most one line per SL_EVICTLOG_EVERY. */
#ifndef SLUICE_DAEMON_EVICTLOG_H
#define SLUICE_DAEMON_EVICTLOG_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "store/store.h"

#define SL_EVICTLOG_EVERY 10000 /* ms: shortest time between two lines */
#define SL_EVICTLOG_POLL  1000  /* ms: how often the counts are read */

/* Counts of one limit when the last line was written. */
struct sl_evictlog_seen {
	const char *name;                 /* the store's copy (stable while the store lives) */
	uint64_t usage, denied, admitted; /* states; keys */
};

struct sl_evictlog {
	uv_timer_t timer; /* closed by the loop's owner (uv_close) */
	struct sl_store *store;
	uint64_t last; /* ms (uv_now) of the last line */
	bool logged;   /* a line was written */
	struct sl_evictlog_seen seen[SL_STORE_STATS_LIMITS];
	size_t nseen;
};

/* Start polling `store` (borrowed; must outlive the loop's run) on `loop`
 * with l (caller-owned, zeroed here). Returns 0 or a negative libuv code.
 * Thread: the loop's. */
int sl_evictlog_start(struct sl_evictlog *l, uv_loop_t *loop, struct sl_store *store);

/* Format the line for `st` against l's counts into buf (cap bytes) and
 * remember st's counts: the line's length, or 0 when nothing new is to be
 * said (then l is unchanged). Exposed so the format is testable without a
 * loop. */
size_t sl_evictlog_line(struct sl_evictlog *l, const struct sl_store_stats *st, char *buf,
                        size_t cap);

#endif
