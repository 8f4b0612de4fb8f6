/* The daemon's snapshot module (src/daemon/snapshot.c): the log policy of
 * failed periodic saves (first failure, then once a minute, then one line
 * on recovery), a periodic save's outcome and lines with the clock
 * injected, the exit save (a failure is logged and returned, a store with
 * no snapshot of its own has nothing to save, a Redis store included),
 * the restore at start (damage kept aside and logged, an unreadable file
 * refuses the start), and a thread that is stopped while it waits. Log
 * lines go to a temp file. Nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>
#include <sluice/algo.h>
#include <sluice/error.h>

#include "daemon/snapshot.h"
#include "policy/policy-t.h"
#include "store/store.h"

#define T0  (1700000000LL * SL_NS_PER_SEC)
#define SEC SL_NS_PER_SEC

static char dir[200], blocker[256], path[300];
static FILE *logfile;

static int setup(void **unused)
{
	(void)unused;
	const char *tmp = getenv("TMPDIR");
	snprintf(dir, sizeof(dir), "%s/sluice-test-snapshot-%d", tmp ? tmp : "/tmp", (int)getpid());
	assert_int_equal(mkdir(dir, 0700), 0);
	snprintf(blocker, sizeof(blocker), "%s/blocker", dir);
	snprintf(path, sizeof(path), "%s/state.snap", blocker);
	logfile = tmpfile();
	assert_non_null(logfile);
	return 0;
}

static void rm(const char *p)
{
	struct stat sb;
	if (lstat(p, &sb) != 0)
		return;
	if (S_ISDIR(sb.st_mode))
		rmdir(p);
	else
		unlink(p);
}

static int teardown(void **unused)
{
	(void)unused;
	char p[400];
	const char *names[] = {"state.snap", "state.snap.tmp", "state.snap.corrupt"};
	for (size_t i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", blocker, names[i]);
		rm(p);
	}
	rm(blocker);
	rmdir(dir);
	fclose(logfile);
	return 0;
}

/* The log so far as a string (static buffer). */
static const char *logged(void)
{
	static char buf[8192];
	fflush(logfile);
	long end = ftell(logfile);
	rewind(logfile);
	size_t n = fread(buf, 1, sizeof(buf) - 1, logfile);
	buf[n] = '\0';
	fseek(logfile, end, SEEK_SET);
	return buf;
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		n++;
	return n;
}

static void block(void)
{
	FILE *f = fopen(blocker, "w"); /* a file where the directory should be */
	assert_non_null(f);
	fclose(f);
}

static void unblock(void)
{
	assert_int_equal(unlink(blocker), 0);
	assert_int_equal(mkdir(blocker, 0700), 0);
}

static struct sl_store *opened(const char *snapshot)
{
	struct sl_store *s = NULL;
	assert_int_equal(sl_memory_store_open(&s, 1 << 20, 42, snapshot), 0);
	return s;
}

static void log_note_first_failure_then_once_a_minute_then_recovery(void **unused)
{
	(void)unused;
	static const struct {
		int64_t at; /* ns after T0 */
		int rc;
		enum sl_snap_log_what want;
	} steps[] = {
	        {0, 0, SL_SNAP_QUIET},
	        {1 * SEC, SL_EIO, SL_SNAP_FAILED},
	        {2 * SEC, SL_EIO, SL_SNAP_QUIET},
	        {60 * SEC, SL_EIO, SL_SNAP_QUIET}, /* 59 s after the line */
	        {61 * SEC, SL_EIO, SL_SNAP_STILL},
	        {62 * SEC, SL_ENOMEM, SL_SNAP_QUIET},
	        {121 * SEC, SL_EIO, SL_SNAP_STILL},
	        {122 * SEC, 0, SL_SNAP_RECOVERED},
	        {123 * SEC, 0, SL_SNAP_QUIET},
	        {124 * SEC, SL_EIO, SL_SNAP_FAILED}, /* a new outage */
	        {125 * SEC, SL_EIO, SL_SNAP_QUIET},
	};
	struct sl_snap_log l = {0};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		enum sl_snap_log_what got = sl_snap_log_note(&l, steps[i].rc, T0 + steps[i].at);
		if (got != steps[i].want)
			fail_msg("step %zu: %d, want %d", i, got, steps[i].want);
	}
	assert_int_equal(l.failures, 2);
}

/* Ticks one second apart, the thread's work with the clock stepped: one
 * line for the outage's first minute, one more after it, one on recovery. */
static void ticks_log_a_failing_outage_rate_limited_and_its_end_once(void **unused)
{
	(void)unused;
	struct sl_store *s = opened(path);
	struct sl_snapshot t;

	block();
	assert_int_equal(sl_snapshot_start(&t, s, 0, logfile), 0); /* no thread */
	assert_false(t.running);
	for (int i = 0; i < 70; i++)
		assert_int_equal(sl_snapshot_tick(&t, T0 + i * SEC), SL_EIO);
	const char *l = logged();
	assert_int_equal(count(l, "not saved: Not a directory"), 1);
	assert_int_equal(count(l, "still failing (61 attempts): Not a directory"), 1);
	assert_non_null(strstr(l, path));
	unblock();
	assert_int_equal(sl_snapshot_tick(&t, T0 + 70 * SEC), 0);
	assert_int_equal(sl_snapshot_tick(&t, T0 + 71 * SEC), 0);
	l = logged();
	assert_int_equal(count(l, "saved again"), 1);
	assert_int_equal(count(l, "sluice: snapshot"), 3);
	assert_int_equal(t.saves, 2);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(sl_snapshot_finish(&t, T0 + 72 * SEC), 0);
	s->ops->destroy(s);
}

static void finish_logs_and_returns_a_failed_exit_save(void **unused)
{
	(void)unused;
	struct sl_store *s = opened(path);
	struct sl_snapshot t;

	block();
	assert_int_equal(sl_snapshot_start(&t, s, SEC, logfile), 0);
	assert_true(t.running);
	assert_int_equal(sl_snapshot_finish(&t, T0), SL_EIO);
	assert_int_equal(count(logged(), "not saved: Not a directory; the counters"), 1);
	s->ops->destroy(s);
}

/* A thread waiting for an interval of an hour stops at once, and the
 * final save is written. (A stop that waited would time the test out.) */
static void finish_stops_a_waiting_thread_and_saves(void **unused)
{
	(void)unused;
	assert_int_equal(mkdir(blocker, 0700), 0);
	struct sl_store *s = opened(path);
	struct sl_snapshot t;

	assert_int_equal(sl_snapshot_start(&t, s, 3600 * SEC, logfile), 0);
	assert_true(t.running);
	assert_int_equal(sl_snapshot_finish(&t, T0), 0);
	assert_false(t.running);
	assert_int_equal(access(path, F_OK), 0);
	assert_string_equal(logged(), "");
	s->ops->destroy(s);
}

/* What a store saves follows the store, never the config: a memory store
 * without a path and a Redis store have nothing to save, start no thread,
 * and exit 0 however the config changed. */
static void stores_without_a_snapshot_save_nothing(void **unused)
{
	(void)unused;
	struct sl_store_conf rc = {.type = SL_STORE_REDIS,
	                           .url = "redis://127.0.0.1:1",
	                           .timeout = 50000000,
	                           .pool = 1};
	struct sl_store *stores[2] = {opened(NULL), NULL};
	struct sl_snapshot t;

	assert_int_equal(sl_redis_store_create(&stores[1], &rc), 0);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(sl_snapshot_restore(stores[i], T0, logfile), 0);
		assert_int_equal(sl_snapshot_start(&t, stores[i], SEC, logfile), 0);
		assert_false(t.running);
		assert_int_equal(sl_snapshot_tick(&t, T0), 0);
		assert_int_equal(sl_snapshot_finish(&t, T0), 0);
		stores[i]->ops->destroy(stores[i]);
	}
	assert_string_equal(logged(), "");
}

static void restore_keeps_damage_aside_and_refuses_an_unreadable_file(void **unused)
{
	(void)unused;
	char aside[400];

	assert_int_equal(mkdir(blocker, 0700), 0);
	FILE *f = fopen(path, "w");
	assert_non_null(f);
	fputs("not a snapshot", f);
	fclose(f);
	struct sl_store *s = opened(path);
	assert_int_equal(sl_snapshot_restore(s, T0, logfile), 0);
	snprintf(aside, sizeof(aside), "%s.corrupt", path);
	char want[1200];
	snprintf(want, sizeof(want),
	         "sluice: snapshot %s is damaged (truncated, or bad magic, version or checksum); "
	         "kept as %s; starting with empty counters\n",
	         path, aside);
	assert_string_equal(logged(), want);
	assert_int_equal(access(aside, F_OK), 0);
	assert_int_not_equal(access(path, F_OK), 0);
	/* No file: nothing to say. A directory in its place: do not start. */
	assert_int_equal(sl_snapshot_restore(s, T0, logfile), 0);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_true(sl_snapshot_restore(s, T0, logfile) < 0);
	assert_non_null(strstr(logged(), "cannot be read: Is a directory; not starting"));
	rmdir(path);
	s->ops->destroy(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(log_note_first_failure_then_once_a_minute_then_recovery),
	        cmocka_unit_test_setup_teardown(
	                ticks_log_a_failing_outage_rate_limited_and_its_end_once, setup, teardown),
	        cmocka_unit_test_setup_teardown(finish_logs_and_returns_a_failed_exit_save, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(finish_stops_a_waiting_thread_and_saves, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(stores_without_a_snapshot_save_nothing, setup,
	                                        teardown),
	        cmocka_unit_test_setup_teardown(
	                restore_keeps_damage_aside_and_refuses_an_unreadable_file, setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
