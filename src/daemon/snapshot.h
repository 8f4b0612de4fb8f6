/* The memory store's periodic snapshot (DESIGN §8): one background thread
 * saves the store to its own snapshot file every store.snapshot_interval,
 * and the final save at exit. The store copies a bounded chunk of one
 * shard at a time and writes with no lock held, so workers keep deciding.
 * Failures are logged without flooding: the first, then at most one line
 * a minute while they last, then one line when a save works again. */
#ifndef SLUICE_DAEMON_SNAPSHOT_H
#define SLUICE_DAEMON_SNAPSHOT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <uv.h>
#include "store/store.h"

#define SL_SNAP_LOG_EVERY (60 * 1000000000LL) /* ns between lines of one outage */

/* What sl_snap_log_note says to log after a save. */
enum sl_snap_log_what {
	SL_SNAP_QUIET = 0,
	SL_SNAP_FAILED,    /* the first failure of an outage */
	SL_SNAP_STILL,     /* the outage goes on (SL_SNAP_LOG_EVERY since the last line) */
	SL_SNAP_RECOVERED, /* a save worked after failures */
};

/* The log state of the periodic saves. Zero it to start. */
struct sl_snap_log {
	int64_t logged;    /* ns: time of the last failure line */
	uint64_t failures; /* failed saves since the last one that worked */
};

/* Record a save that returned rc at now and say what to log. Pure: the
 * caller passes the time (tests step it). */
enum sl_snap_log_what sl_snap_log_note(struct sl_snap_log *l, int rc, int64_t now);

struct sl_snapshot {
	struct sl_store *store;
	const char *path;             /* the store's own snapshot path (log lines) */
	int64_t interval;             /* ns; 0: no thread */
	FILE *log;                    /* where lines go (stderr in the daemon) */
	struct sl_snap_log log_state; /* the thread's */
	uint64_t saves;               /* periodic saves that worked */
	uv_thread_t thread;
	uv_mutex_t mu;
	uv_cond_t cond;
	bool stop;    /* under mu */
	bool running; /* a thread was started */
};

/* Initialise t in place for store s and start the thread when s has a
 * snapshot path (a memory store opened with one) and interval > 0 (ns).
 * The store must outlive sl_snapshot_finish. Returns 0, or SL_ENOMEM when
 * the thread could not be started (nothing to undo). Thread: main. */
int sl_snapshot_start(struct sl_snapshot *t, struct sl_store *s, int64_t interval, FILE *log);

/* One periodic save at now (ns) with its log line, if any: what the thread
 * runs every interval. Returns the save's code. Thread: the snapshot
 * thread, or the caller when none runs (tests). */
int sl_snapshot_tick(struct sl_snapshot *t, int64_t now);

/* Restore store s from its own snapshot at now (ns) before it serves,
 * logging to log what a person must know: a damaged file is kept aside
 * (sl_memory_store_restore) and the daemon starts with empty counters.
 * Returns 0 to go on (restored, no file, kept aside, or no snapshot), or a
 * negative code when the daemon must not start because the file could
 * neither be read nor moved away, and the first save would overwrite it.
 * Thread: main, before the workers start. */
int sl_snapshot_restore(struct sl_store *s, int64_t now, FILE *log);

/* Stop and join the thread (a save under way completes first), then write
 * the final snapshot at now (ns). A failure is logged, always. Returns the
 * save's code: 0 also for a store without a snapshot. Thread: main, once. */
int sl_snapshot_finish(struct sl_snapshot *t, int64_t now);

#endif
