/* The daemon's main thread: load the config, create the store and the
 * server, then sit in a small libuv loop of its own that handles signals.
 * Workers never see a signal: SIGHUP becomes a new policy swapped into
 * every worker (the store, and so every counter, is kept; the loader keeps
 * limit ids of unchanged limits stable), SIGTERM/SIGINT become a drain with
 * a deadline, then the memory store snapshot is saved. The store is made
 * once, from the config read at start, and saves to its own snapshot path
 * (periodically too: snapshot.c); a reload never changes it, it reports
 * the store settings it cannot apply as deferred to restart. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>
#include <uv.h>
#include "accounts/accounts.h"
#include "daemon/evictlog.h"
#include "daemon/serve.h"
#include "daemon/snapshot.h"
#include "daemon/takeover.h"
#include "net/clock.h"
#include "net/metrics.h"
#include "net/server.h"
#include "policy/policy.h"
#include "store/store.h"
#include "usage/usage.h"
#include <sluice/error.h>
#include "daemon/commands.h" /* usage texts */

struct daemon {
	const char *path;
	uv_loop_t loop;
	uv_signal_t sighup, sigterm, sigint, sigusr2;
	uv_process_t child; /* SIGUSR2: the `serve --takeover` we started */
	bool child_running;
	char exe[4096]; /* our binary's path at start: an upgrade replaces the file */
	uv_async_t workers_done;
	uv_timer_t deadline;
	struct sl_policy *policy;
	struct sl_policy *boot; /* the policy the store was made from (a ref) */
	struct sl_store *store;
	struct sl_snapshot snap;
	struct sl_server *server;
	struct sl_usage *usage; /* NULL: history off */
	bool draining;
	bool takeover;                 /* --takeover: start from a running sluice */
	struct sl_takeover_host tk;    /* our control socket */
	bool tk_on;                    /* tk was started */
	struct sl_takeover_client tkc; /* --takeover: the session with the old one */
	char tk_path[SL_TK_PATH_MAX];
	struct sl_evictlog evictlog;  /* store-full log line, at most one per 10 s */
	struct sl_accounts *accounts; /* the live account store, or NULL */
};

static void print_diag(const struct sl_diag *d)
{
	for (size_t i = 0; i < d->n && i < SL_DIAG_MAX; i++)
		fprintf(stderr, "%s\n", d->msg[i]);
}

static void log_msg(const char *what)
{
	fprintf(stderr, "sluice: %s\n", what);
}

/* A random hash seed: a snapshot loaded at start brings its own (the
 * memory store adopts the seed of a snapshot loaded into it while empty). */
static uint64_t store_seed(void)
{
	uint64_t seed = 0;

	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		seed = (uint64_t)sl_clock_now() ^ (uint64_t)getpid() << 32;
	return seed;
}

static bool same_str(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

/* Only store.on_error applies at once: the store was built from `run`. */
static void report_store_changes(const struct sl_store_conf *run, const struct sl_store_conf *p)
{
	const char *what[16];
	size_t n = 0;

	if (run->type != p->type)
		what[n++] = "type";
	if (run->memory != p->memory)
		what[n++] = "memory";
	if (!same_str(run->snapshot, p->snapshot))
		what[n++] = "snapshot";
	if (run->snapshot_interval != p->snapshot_interval)
		what[n++] = "snapshot_interval";
	if (!same_str(run->url, p->url))
		what[n++] = "url";
	if (run->cluster != p->cluster)
		what[n++] = "cluster";
	if (run->timeout != p->timeout)
		what[n++] = "timeout";
	if (run->pool != p->pool)
		what[n++] = "pool";
	if (run->local_cache != p->local_cache)
		what[n++] = "local_cache";
	if (run->no_module != p->no_module)
		what[n++] = "module";
	if (run->mode != p->mode)
		what[n++] = "mode";
	if (run->sync != p->sync)
		what[n++] = "sync";
	if (run->strict != p->strict)
		what[n++] = "strict_below";
	for (size_t i = 0; i < n; i++)
		fprintf(stderr, "sluice: reload: store.%s change takes effect on restart\n",
		        what[i]);
}

/* Server settings read once at start (the workers and their connection
 * tables are sized by them). */
static void report_server_changes(const struct sl_server_conf *run, const struct sl_server_conf *p)
{
	if (run->workers != p->workers)
		fprintf(stderr, "sluice: reload: server.workers change takes effect on restart\n");
	if (run->max_connections != p->max_connections)
		fprintf(stderr,
		        "sluice: reload: server.max_connections change takes effect on restart\n");
}

/* /metrics of a config load: the result, and for a policy in force its
 * hash, load time and what it holds. */
static void config_metrics(struct daemon *d, bool ok, const struct sl_policy *p)
{
	struct sl_metrics *m = sl_server_metrics(d->server);

	sl_metrics_config(m, ok, p ? p->source_hash : 0, sl_clock_now());
	if (p == NULL)
		return;
	sl_metrics_set_gauge(m, SL_GAUGE_ACCOUNTS, (int64_t)p->naccounts);
	sl_metrics_set_gauge(m, SL_GAUGE_KEYS, (int64_t)p->nkeys);
}

static void on_reload(uv_signal_t *h, int sig)
{
	struct daemon *d = h->data;
	struct sl_policy *p = NULL;
	struct sl_diag *diag;
	char err[256];

	if (d->draining)
		return;
	diag = calloc(1, sizeof(*diag));
	if (!diag) {
		log_msg("reload: out of memory; the old config keeps serving");
		return;
	}
	if (sl_policy_load(d->path, &p, diag) < 0) {
		print_diag(diag);
		fprintf(stderr,
		        "sluice: reload of %s failed (%zu errors); the old config keeps serving\n",
		        d->path, diag->n);
		free(diag);
		config_metrics(d, false, NULL);
		return;
	}
	print_diag(diag); /* its warnings */
	free(diag);
	if (d->accounts != NULL) {
		/* the store is kept; the new policy must still declare every
		 * plan a stored account is on, and overrides are recompiled */
		if (p->account_store.store != d->boot->account_store.store ||
		    !same_str(p->account_store.path, d->boot->account_store.path))
			log_msg("reload: accounts.store/path changes take effect on restart");
		if (sl_accounts_reload(d->accounts, p, err, sizeof(err)) != 0) {
			fprintf(stderr, "sluice: reload of %s refused: %s\n", d->path, err);
			sl_policy_unref(p);
			return;
		}
		p->live = sl_accounts_src(d->accounts);
	} else if (p->account_store.store != SL_ACCOUNTS_NONE) {
		log_msg("reload: the accounts: section takes effect on restart");
	}
	report_store_changes(&d->boot->store, &p->store);
	report_server_changes(&d->boot->server, &p->server);
	if (d->boot->usage.enabled != p->usage.enabled ||
	    !same_str(d->boot->usage.path, p->usage.path) ||
	    d->boot->usage.flush_interval != p->usage.flush_interval ||
	    d->boot->usage.max_series != p->usage.max_series ||
	    d->boot->usage.keep_minutes != p->usage.keep_minutes ||
	    d->boot->usage.keep_hours != p->usage.keep_hours ||
	    d->boot->usage.keep_days != p->usage.keep_days)
		log_msg("reload: usage changes take effect on restart");
	err[0] = 0;
	if (sl_server_set_policy(d->server, p, err, sizeof(err)) != 0)
		fprintf(stderr, "sluice: reload: %s\n", err);
	if (strcmp(d->store->ops->name, "memory") == 0)
		sl_memory_store_set_on_full(d->store, p->store.on_full);
	sl_policy_unref(d->policy);
	d->policy = p;
	config_metrics(d, true, p);
	fprintf(stderr, "sluice: reloaded %s\n", d->path);
}

static void on_deadline(uv_timer_t *t)
{
	struct daemon *d = t->data;
	log_msg("drain deadline passed: closing the remaining connections");
	sl_server_stop(d->server);
}

static void on_term(uv_signal_t *h, int sig)
{
	struct daemon *d = h->data;
	int64_t ns = d->policy->server.drain_timeout;
	if (d->draining) {
		if (sig == SIGINT)
			sl_server_stop(d->server); /* a second Ctrl-C: stop now */
		return;
	}
	if (d->tk_on && sl_takeover_host_busy(&d->tk))
		sl_takeover_host_abort(&d->tk, sig == SIGINT ? "SIGINT" : "SIGTERM");
	if (d->tk_on)
		sl_takeover_host_refuse(&d->tk);
	d->draining = true;
	fprintf(stderr, "sluice: %s: draining\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
	sl_server_drain(d->server);
	uv_timer_start(&d->deadline, on_deadline, ns > 0 ? (uint64_t)(ns / 1000000) : 0, 0);
}

/* A takeover is committed: the new process accepts and decides. Drain
 * what is in flight within drain_timeout, then exit without saving. */
static void handed_over(void *arg)
{
	struct daemon *d = arg;
	int64_t ns = d->policy->server.drain_timeout;

	d->draining = true;
	uv_timer_start(&d->deadline, on_deadline, ns > 0 ? (uint64_t)(ns / 1000000) : 0, 0);
}

/* The new process's side of --takeover, from the received sockets to the
 * loaded snapshot (takeover.h). Returns 0, or 1 after telling the old
 * process why (it serves on). */
static int take_over_counters(struct daemon *d)
{
	char snap[4096], tmp[SL_TK_PATH_MAX + 8], why[512];
	bool memory = strcmp(d->store->ops->name, "memory") == 0;
	/* tests/e2e/test_takeover.py stops here to kill -9 us mid-handover */
	const char *stall = getenv("SLUICE_TAKEOVER_TEST_STALL");
	int rc;

	if (stall && strcmp(stall, "ready") == 0)
		sleep(30);
	if (sl_takeover_ready(&d->tkc, snap, sizeof(snap), why, sizeof(why)) < 0)
		goto fail;
	if (stall && strcmp(stall, "saved") == 0)
		sleep(30);
	if (snap[0] && memory) {
		rc = sl_memory_store_load(d->store, snap, sl_clock_now());
		if (rc < 0 && rc != SL_ENOENT) {
			snprintf(why, sizeof(why), "the snapshot %.300s could not be loaded: %s",
			         snap, sl_strerror(rc));
			goto fail;
		}
		snprintf(tmp, sizeof(tmp), "%s.snap", d->tk_path);
		if (strcmp(snap, tmp) == 0)
			unlink(tmp);
		fprintf(stderr, "sluice: takeover: counters loaded from %s\n", snap);
	} else if (snap[0] || memory) {
		fprintf(stderr,
		        "sluice: takeover: the running sluice has a %s store and this one a %s "
		        "store: counters are not carried over\n",
		        snap[0] ? "memory" : "shared", memory ? "memory" : "shared");
	}
	return 0;
fail:
	fprintf(stderr, "sluice: takeover: %s; the running sluice serves on\n", why);
	sl_takeover_fail(&d->tkc, why);
	return 1;
}

static void child_exit(uv_process_t *p, int64_t status, int sig)
{
	struct daemon *d = p->data;
	d->child_running = false;
	if (status != 0 || sig != 0)
		fprintf(stderr,
		        "sluice: SIGUSR2: the takeover process %d exited with status %lld%s%s; "
		        "serving on\n",
		        p->pid, (long long)status, sig ? ", signal " : "",
		        sig ? strsignal(sig) : "");
	uv_close((uv_handle_t *)p, NULL);
}

/* SIGUSR2 (nginx's binary upgrade): start `EXE serve -c FILE --takeover`
 * from the binary's path as it is now on disk, as our child, so under
 * systemd it runs in the service's cgroup and tells systemd it is the
 * main process once it serves (sl_takeover_notify_mainpid). */
static void on_upgrade(uv_signal_t *h, int sig)
{
	struct daemon *d = h->data;
	char *args[] = {d->exe, "serve", "-c", (char *)d->path, "--takeover", NULL};
	uv_process_options_t o;
	uv_stdio_container_t io[3];
	int rc;

	if (d->draining || d->child_running || !d->tk_on || sl_takeover_host_busy(&d->tk)) {
		log_msg("SIGUSR2: ignored: a takeover or a drain is under way, or there is no "
		        "control socket");
		return;
	}
	memset(&o, 0, sizeof(o));
	io[0].flags = UV_IGNORE;
	io[1].flags = io[2].flags = UV_INHERIT_FD;
	io[1].data.fd = 1;
	io[2].data.fd = 2;
	o.file = d->exe;
	o.args = args;
	o.stdio = io;
	o.stdio_count = 3;
	o.exit_cb = child_exit;
	d->child.data = d;
	if ((rc = uv_spawn(&d->loop, &d->child, &o)) < 0) {
		fprintf(stderr, "sluice: SIGUSR2: cannot start %s: %s\n", d->exe, uv_strerror(rc));
		return;
	}
	d->child_running = true;
	fprintf(stderr, "sluice: SIGUSR2: started pid %d to take over\n", d->child.pid);
}

static void workers_done_cb(uv_async_t *h)
{
	struct daemon *d = h->data;
	uv_stop(&d->loop);
}

static void wake_main(void *arg)
{
	struct daemon *d = arg;
	uv_async_send(&d->workers_done);
}

static void close_walk(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

int sl_cmd_serve(int argc, char **argv)
{
	struct daemon d;
	struct sl_diag *diag;
	char err[512];
	int rc, status = 1;

	memset(&d, 0, sizeof(d));
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			sl_usage_serve(stdout);
			return 0;
		} else if (strcmp(argv[i], "-c") == 0 || strcmp(argv[i], "--config") == 0) {
			if (i + 1 >= argc)
				return sl_usage_error(sl_usage_serve, "serve",
				                      "option %s needs a FILE", argv[i]);
			d.path = argv[++i];
		} else if (strncmp(argv[i], "--config=", 9) == 0) {
			d.path = argv[i] + 9;
		} else if (strcmp(argv[i], "--takeover") == 0) {
			d.takeover = true;
		} else {
			return sl_usage_error(sl_usage_serve, "serve", "%s '%s'",
			                      argv[i][0] == '-' ? "unknown option"
			                                        : "unexpected argument",
			                      argv[i]);
		}
	}
	if (!d.path)
		return sl_usage_error(sl_usage_serve, "serve", "%s",
		                      "a config is required: -c FILE");
	signal(SIGPIPE, SIG_IGN);
	setvbuf(stdout, NULL, _IOLBF, 0);
	sl_clock_init();

	diag = calloc(1, sizeof(*diag));
	if (!diag)
		return 1;
	if (sl_policy_load(d.path, &d.policy, diag) < 0) {
		print_diag(diag);
		free(diag);
		return 1;
	}
	print_diag(diag); /* its warnings */
	free(diag);
	if (sl_takeover_path(d.policy, d.tk_path, sizeof(d.tk_path), err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		goto out_policy;
	}
	if (d.takeover && sl_takeover_connect(&d.tkc, d.tk_path, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice: takeover: %s\n", err);
		goto out_policy;
	}

	if (d.policy->store.type == SL_STORE_REDIS) {
		rc = sl_redis_store_create(&d.store, &d.policy->store);
		if (rc < 0) {
			fprintf(stderr, "sluice: redis store %s: %s\n",
			        d.policy->store.url ? d.policy->store.url : "", sl_strerror(rc));
			goto out_policy;
		}
		goto store_ready;
	}
	rc = sl_memory_store_open(&d.store,
	                          d.policy->store.memory ? d.policy->store.memory : 64u << 20,
	                          store_seed(), d.policy->store.snapshot);
	if (rc < 0) {
		fprintf(stderr, "sluice: memory store: %s\n", sl_strerror(rc));
		goto out_policy;
	}
	sl_memory_store_set_on_full(d.store, d.policy->store.on_full);
	/* taking over, the counters come from the running process's save */
	if (!d.takeover && sl_snapshot_restore(d.store, sl_clock_now(), stderr) < 0)
		goto out_store;
store_ready:
	if (d.policy->account_store.store != SL_ACCOUNTS_NONE) {
		err[0] = 0;
		rc = sl_accounts_open(&d.accounts, d.policy, stderr, err, sizeof(err));
		if (rc < 0) {
			fprintf(stderr, "sluice: %s\n", err);
			goto out_store;
		}
		d.policy->live = sl_accounts_src(d.accounts);
	}
	d.boot = d.policy;
	sl_policy_ref(d.boot);
	err[0] = 0;
	if (d.takeover) {
		rc = sl_server_create_inherit(&d.server, d.policy, d.store, d.tkc.socks,
		                              d.tkc.nsocks, err, sizeof(err));
		d.tkc.given = true;
	} else {
		rc = sl_server_create(&d.server, d.policy, d.store, err, sizeof(err));
	}
	if (rc < 0) {
		fprintf(stderr, "sluice: %s\n", err);
		if (d.takeover)
			sl_takeover_fail(&d.tkc, err);
		goto out_store;
	}
	if (err[0]) /* created, with a note (connection caps lowered) */
		fprintf(stderr, "sluice: %s\n", err);
	if (d.policy->store.type == SL_STORE_REDIS)
		sl_server_set_detach(d.server, sl_redis_store_detach);
	if (d.takeover && take_over_counters(&d) != 0) {
		sl_server_destroy(d.server); /* never started: undone */
		goto out_store;
	}
	if (d.policy->usage.enabled) {
		/* A history that cannot open is logged, and the gateway serves
		 * without it: counting is never worth refusing traffic. */
		err[0] = 0;
		if (sl_usage_open(&d.usage, &d.policy->usage, sl_server_workers(d.server),
		                  sl_clock_now, err, sizeof(err)) < 0)
			fprintf(stderr, "sluice: %s: usage history off\n", err);
		else
			sl_server_set_usage(d.server, d.usage);
	}
	config_metrics(&d, true, d.policy);

	uv_loop_init(&d.loop);
	uv_signal_init(&d.loop, &d.sighup);
	uv_signal_init(&d.loop, &d.sigterm);
	uv_signal_init(&d.loop, &d.sigint);
	uv_signal_init(&d.loop, &d.sigusr2);
	uv_async_init(&d.loop, &d.workers_done, workers_done_cb);
	uv_timer_init(&d.loop, &d.deadline);
	d.sighup.data = d.sigterm.data = d.sigint.data = d.workers_done.data = d.deadline.data = &d;
	d.sigusr2.data = &d;
	{
		ssize_t n = readlink("/proc/self/exe", d.exe, sizeof(d.exe) - 1);
		d.exe[n > 0 ? n : 0] = 0;
		/* an upgrade that replaced the file leaves " (deleted)" on the link */
		char *del = strstr(d.exe, " (deleted)");
		if (del && del[10] == 0)
			*del = 0;
	}
	uv_signal_start(&d.sigusr2, on_upgrade, SIGUSR2);
	uv_signal_start(&d.sighup, on_reload, SIGHUP);
	uv_signal_start(&d.sigterm, on_term, SIGTERM);
	uv_signal_start(&d.sigint, on_term, SIGINT);
	sl_evictlog_start(&d.evictlog, &d.loop, d.store);
	if (d.takeover &&
	    sl_takeover_started(&d.tkc, &d.loop, d.server, d.store, err, sizeof(err)) < 0) {
		fprintf(stderr, "sluice: takeover: %s; the running sluice serves on\n", err);
		sl_takeover_fail(&d.tkc, err);
		_exit(1);
	}

	if (sl_server_start(d.server, wake_main, &d) < 0) {
		log_msg("could not start the worker threads");
		_exit(1);
	}
	if (d.usage && sl_usage_start(d.usage) < 0)
		log_msg("could not start the usage flusher: history flushed on queries and at "
		        "exit");
	if (sl_snapshot_start(&d.snap, d.store, d.boot->store.snapshot_interval, stderr) < 0)
		log_msg("could not start the snapshot thread: snapshots on drain only");
	d.tk.loop = &d.loop;
	d.tk.server = d.server;
	d.tk.store = d.store;
	d.tk.snap = &d.snap;
	d.tk.snapshot_interval = d.boot->store.snapshot_interval;
	d.tk.committed = handed_over;
	d.tk.arg = &d;
	if (sl_takeover_host_start(&d.tk, d.tk_path, err, sizeof(err)) < 0)
		fprintf(stderr,
		        "sluice: %s: `serve --takeover` cannot take over from this process\n", err);
	else
		d.tk_on = true;
	if (d.takeover) {
		sl_takeover_notify_mainpid();
		fprintf(stderr, "sluice: serving %s with %u workers, taken over from pid %ld\n",
		        d.path, sl_server_workers(d.server), (long)d.tkc.old_pid);
	} else
		fprintf(stderr, "sluice: serving %s with %u workers\n", d.path,
		        sl_server_workers(d.server));
	uv_run(&d.loop, UV_RUN_DEFAULT);

	/* every worker left its loop */
	sl_server_destroy(d.server);
	sl_usage_close(d.usage); /* the last flush */
	bool handed = d.tk_on && sl_takeover_host_committed(&d.tk);
	if (d.tk_on)
		sl_takeover_host_close(&d.tk);
	if (d.takeover)
		sl_takeover_client_close(&d.tkc);
	sl_accounts_close(d.accounts); /* no reader is left */
	d.accounts = NULL;
	uv_walk(&d.loop, close_walk, NULL);
	uv_run(&d.loop, UV_RUN_DEFAULT);
	uv_loop_close(&d.loop);
	/* handed over: the snapshot was saved for the new process, which
	 * writes that file from now on */
	status = handed ? 0 : sl_snapshot_finish(&d.snap, sl_clock_now()) < 0 ? 1 : 0;
	fprintf(stderr, "sluice: stopped\n");
out_store:
	sl_accounts_close(d.accounts);
	d.store->ops->destroy(d.store);
out_policy:
	if (d.boot)
		sl_policy_unref(d.boot);
	sl_policy_unref(d.policy);
	return status;
}
