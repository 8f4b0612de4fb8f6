/* The periodic snapshot thread and the exit save (snapshot.h). The thread
 * sleeps on a condition variable until the next save is due (start to
 * start: a save that overruns the interval is followed at once by the
 * next), so stopping it never waits for a full interval. It holds no lock
 * of its own while saving: only the store's one-chunk shard locks. The
 * loss bound after kill -9 is one interval plus one save's duration. */
#include <errno.h>
#include <string.h>
#include <uv.h>
#include <sluice/error.h>
#include "daemon/snapshot.h"
#include "net/clock.h"

enum sl_snap_log_what sl_snap_log_note(struct sl_snap_log *l, int rc, int64_t now)
{
	if (rc == 0) {
		bool was_failing = l->failures != 0;
		l->failures = 0;
		return was_failing ? SL_SNAP_RECOVERED : SL_SNAP_QUIET;
	}
	if (l->failures++ == 0) {
		l->logged = now;
		return SL_SNAP_FAILED;
	}
	if (now - l->logged >= SL_SNAP_LOG_EVERY) {
		l->logged = now;
		return SL_SNAP_STILL;
	}
	return SL_SNAP_QUIET;
}

/* The reason of a failed save: errno for SL_EIO (read right after it). */
static const char *why(int rc, char *buf, size_t cap)
{
	if (rc == SL_EIO && errno != 0)
		return strerror_r(errno, buf, cap);
	return sl_strerror(rc);
}

int sl_snapshot_tick(struct sl_snapshot *t, int64_t now)
{
	char buf[128];

	errno = 0;
	int rc = sl_store_save(t->store, now);
	const char *reason = why(rc, buf, sizeof(buf));

	if (rc == 0)
		t->saves++;
	switch (sl_snap_log_note(&t->log_state, rc, now)) {
	case SL_SNAP_FAILED:
		fprintf(t->log,
		        "sluice: snapshot %s not saved: %s; retrying every interval, "
		        "logging at most once a minute\n",
		        t->path, reason);
		break;
	case SL_SNAP_STILL:
		fprintf(t->log, "sluice: snapshot %s still failing (%llu attempts): %s\n", t->path,
		        (unsigned long long)t->log_state.failures, reason);
		break;
	case SL_SNAP_RECOVERED:
		fprintf(t->log, "sluice: snapshot %s saved again\n", t->path);
		break;
	default:
		break;
	}
	return rc;
}

int sl_snapshot_restore(struct sl_store *s, int64_t now, FILE *log)
{
	const char *path = sl_memory_store_path(s);
	char aside[4096], buf[128];

	if (!path)
		return 0;
	errno = 0;
	int rc = sl_memory_store_restore(s, now, aside, sizeof(aside));
	if (rc == 0 || rc == SL_ENOENT)
		return 0;
	if (rc != SL_EPROTO && rc != SL_EINVAL) {
		fprintf(log,
		        "sluice: snapshot %s cannot be read: %s; not starting, so that it is not "
		        "overwritten\n",
		        path, why(rc, buf, sizeof(buf)));
		return rc;
	}
	const char *damage = rc == SL_EPROTO ? "truncated, or bad magic, version or checksum"
	                                     : "written with another hash seed";
	if (!aside[0]) {
		fprintf(log,
		        "sluice: snapshot %s is damaged (%s) and could not be moved aside: %s; not "
		        "starting, so that it is not overwritten\n",
		        path, damage, strerror_r(errno, buf, sizeof(buf)));
		return SL_EIO;
	}
	fprintf(log,
	        "sluice: snapshot %s is damaged (%s); kept as %s; starting with empty counters\n",
	        path, damage, aside);
	return 0;
}

/* The thread: a save every t->interval until t->stop. Waits on t->cond
 * (uv_hrtime deadlines, so wall-clock jumps do not matter); t->mu is held
 * only while waiting, never while saving. */
static void run(void *arg)
{
	struct sl_snapshot *t = arg;
	uint64_t step = (uint64_t)t->interval, next = uv_hrtime() + step; /* ns */

	uv_mutex_lock(&t->mu);
	while (!t->stop) {
		uint64_t now = uv_hrtime();
		if (now < next) {
			(void)uv_cond_timedwait(&t->cond, &t->mu, next - now);
			continue;
		}
		uv_mutex_unlock(&t->mu);
		sl_snapshot_tick(t, sl_clock_now());
		uv_mutex_lock(&t->mu);
		next += step;
		now = uv_hrtime();
		if (next < now)
			next = now; /* overran: save again at once, do not catch up */
	}
	uv_mutex_unlock(&t->mu);
}

int sl_snapshot_start(struct sl_snapshot *t, struct sl_store *s, int64_t interval, FILE *log)
{
	memset(t, 0, sizeof(*t));
	t->store = s;
	t->path = sl_memory_store_path(s);
	t->interval = interval;
	t->log = log;
	if (!t->path || interval <= 0)
		return 0;
	if (uv_mutex_init(&t->mu) != 0)
		return SL_ENOMEM;
	if (uv_cond_init(&t->cond) != 0)
		goto fail_mutex;
	if (uv_thread_create(&t->thread, run, t) != 0)
		goto fail_cond;
	t->running = true;
	return 0;

fail_cond:
	uv_cond_destroy(&t->cond);
fail_mutex:
	uv_mutex_destroy(&t->mu);
	return SL_ENOMEM;
}

int sl_snapshot_finish(struct sl_snapshot *t, int64_t now)
{
	char buf[128];

	if (t->running) {
		uv_mutex_lock(&t->mu);
		t->stop = true;
		uv_cond_signal(&t->cond);
		uv_mutex_unlock(&t->mu);
		uv_thread_join(&t->thread);
		uv_cond_destroy(&t->cond);
		uv_mutex_destroy(&t->mu);
		t->running = false;
	}
	errno = 0;
	int rc = sl_store_save(t->store, now);
	if (rc < 0)
		fprintf(t->log,
		        "sluice: snapshot %s not saved: %s; the counters since the last good "
		        "snapshot are lost\n",
		        t->path ? t->path : "", why(rc, buf, sizeof(buf)));
	return rc;
}
