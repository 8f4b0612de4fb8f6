/* Redis store benchmark, one run on one redis-server it starts itself (a
 * free loopback port, stopped by PID): decisions per second of sluice's
 * exact mode with 1 and 3 limits per decision (one worker loop, many
 * decisions in flight, so each loop pass sends one call), of a 9-line GCRA
 * script driven by redis-benchmark (EVALSHA, 50 clients, pipeline 16), of
 * envoyproxy/ratelimit's pattern (INCRBY + EXPIRE, pipelined) and of local
 * mode; and for each the Redis CPU per decision from INFO commandstats
 * (usec of the top-level commands over the decisions they served). The
 * server loads sluice's module (src/redismod; BENCH_REDIS_MODULE, default
 * sluice_redis.so beside this binary) when it is there: exact mode runs once on the Lua
 * library (store.module: false) and once on the module (exact1_module,
 * exact3_module). Prints one "NAME VALUE" line per figure, and the
 * same-run ratios. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <uv.h>
#include <sluice/algo.h>
#include <sluice/error.h>
#include "policy/policy-t.h"
#include "store/redis_int.h"
#include "store/store.h"

#define RUN_NS     (2 * 1000000000LL) /* ns per timed run */
#define INFLIGHT   256                /* batches in flight */
#define KEYS       10000              /* distinct counters (exact, INCR) */
#define LOCAL_KEYS 1000               /* distinct counters (local mode) */
#define PIPE       128                /* INCRBY+EXPIRE pairs per round trip */

static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		exit(1);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

struct slot {
	struct sl_batch b;
	struct sl_check ck[3];
	char key[24];
	int busy;
};

static struct sl_store *store;
static uv_loop_t loop;
static struct slot slots[INFLIGHT];
static struct sl_limit_spec specs[3];
static size_t nchecks = 1;
static uint64_t completed, errors, seq, nkeys = KEYS;
static uint64_t count_n; /* BENCH_DECISIONS: stop after this many submits, not on time */
static int inline_store; /* memory store: done() runs inside submit */
static int polled;       /* local mode: the driver resubmits, not done() */
static int64_t stop_at;

static void submit_one(struct slot *sl);

static void on_done(struct sl_batch *b)
{
	struct slot *sl = b->data;

	completed++;
	if (b->status < 0)
		errors++;
	sl->busy = 0;
	if (!inline_store && !polled && (count_n ? seq < count_n : mono_ns() < stop_at))
		submit_one(sl);
}

static void submit_one(struct slot *sl)
{
	struct timespec ts;

	snprintf(sl->key, sizeof(sl->key), "k%llu", (unsigned long long)(seq++ % nkeys));
	for (size_t i = 0; i < nchecks; i++) {
		memset(&sl->ck[i], 0, sizeof(sl->ck[i]));
		sl->ck[i].spec = &specs[i];
		sl->ck[i].limit_id = 42 + i;
		sl->ck[i].name = "bench";
		sl->ck[i].key = sl->key;
		sl->ck[i].key_len = (uint32_t)strlen(sl->key);
		sl->ck[i].cost = 1;
	}
	memset(&sl->b, 0, sizeof(sl->b));
	sl->b.checks = sl->ck;
	sl->b.n = nchecks;
	sl->b.op = SL_OP_DECIDE;
	clock_gettime(CLOCK_REALTIME, &ts);
	sl->b.now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	sl->b.loop = &loop;
	sl->b.done = on_done;
	sl->b.data = sl;
	sl->busy = 1;
	if (sl_store_submit(store, &sl->b) < 0) {
		errors++;
		sl->busy = 0;
	}
}

/* Decisions per second of s over one timed run with INFLIGHT in flight. */
static double run(struct sl_store *s)
{
	int64_t t0;

	store = s;
	completed = errors = 0;
	t0 = mono_ns();
	stop_at = t0 + RUN_NS;
	if (inline_store) {
		while (mono_ns() < stop_at)
			for (int i = 0; i < 1000; i++)
				submit_one(&slots[0]);
		return (double)completed * 1e9 / (double)(mono_ns() - t0);
	}
	if (polled) {
		/* decisions mostly complete inside submit; the loop runs
		 * between rounds for syncs and the decisions sent to Redis */
		while (mono_ns() < stop_at) {
			for (int i = 0; i < 4096; i++) {
				struct slot *sl = &slots[i % INFLIGHT];

				if (!sl->busy)
					submit_one(sl);
			}
			uv_run(&loop, UV_RUN_NOWAIT);
		}
		while (uv_run(&loop, UV_RUN_NOWAIT) && mono_ns() < stop_at + 1000000000LL)
			;
		return (double)completed * 1e9 / (double)(mono_ns() - t0);
	}
	for (int i = 0; i < INFLIGHT && (!count_n || seq < count_n); i++)
		submit_one(&slots[i]);
	while ((count_n ? completed < count_n : mono_ns() < stop_at + 1000000000LL) &&
	       uv_run(&loop, UV_RUN_ONCE))
		;
	return (double)completed * 1e9 / (double)(mono_ns() - t0);
}

static const char gcra_lua[] =
        "local t = redis.call('TIME')\n"
        "local now = tonumber(t[1]) * 1000000 + tonumber(t[2])\n"
        "local T, B = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
        "local tat = tonumber(redis.call('GET', KEYS[1]) or now)\n"
        "if tat < now then tat = now end\n"
        "local n = tat + T\n"
        "if n - now > B * T then return 0 end\n"
        "redis.call('SET', KEYS[1], n, 'PX', math.floor((n - now) / 1000) + 1)\n"
        "return 1\n";

static void reset_stats(redisContext *c)
{
	redisReply *r = redisCommand(c, "CONFIG RESETSTAT");

	if (r)
		freeReplyObject(r);
}

/* usec Redis spent in the top-level commands named (cmdstat_<name>). */
static double cmd_usec(redisContext *c, const char *const *names)
{
	redisReply *r = redisCommand(c, "INFO commandstats");
	double total = 0;

	if (!r)
		return 0;
	if (r->type == REDIS_REPLY_STRING) {
		for (size_t i = 0; names[i]; i++) {
			char pat[64];
			const char *p, *u;

			snprintf(pat, sizeof(pat), "cmdstat_%s:", names[i]);
			p = strstr(r->str, pat);
			if (p && (u = strstr(p, "usec=")))
				total += strtod(u + 5, NULL);
		}
	}
	freeReplyObject(r);
	return total;
}

/* CPU seconds of Redis' main thread (INFO cpu), in usec. */
static double cpu_usec(redisContext *c)
{
	redisReply *r = redisCommand(c, "INFO cpu");
	double t = 0;

	if (r && r->type == REDIS_REPLY_STRING) {
		const char *u = strstr(r->str, "used_cpu_user_main_thread:");
		const char *s = strstr(r->str, "used_cpu_sys_main_thread:");

		if (u && s)
			t = (strtod(u + 26, NULL) + strtod(s + 25, NULL)) * 1e6;
	}
	if (r)
		freeReplyObject(r);
	return t;
}

static const char *const script_cmds[] = {"fcall", "evalsha", "eval", "sluice.call", NULL};
static const char *const incr_cmds[] = {"incrby", "expire", NULL};

/* envoyproxy/ratelimit's per-decision Redis work: INCRBY then EXPIRE of a
 * window key, pipelined PIPE pairs per round trip on one connection. */
static double incr_expire(int port, uint64_t *pairs)
{
	redisContext *c = redisConnect("127.0.0.1", port);
	int64_t t0 = mono_ns(), stop = t0 + RUN_NS;
	uint64_t n = 0;

	if (!c || c->err) {
		if (c)
			redisFree(c);
		return 0;
	}
	while (mono_ns() < stop) {
		for (int i = 0; i < PIPE; i++) {
			char key[32];

			snprintf(key, sizeof(key), "rl:k%llu", (unsigned long long)(seq++ % KEYS));
			redisAppendCommand(c, "INCRBY %s 1", key);
			redisAppendCommand(c, "EXPIRE %s 60", key);
		}
		for (int i = 0; i < 2 * PIPE; i++) {
			void *r = NULL;

			if (redisGetReply(c, &r) != REDIS_OK) {
				redisFree(c);
				return 0;
			}
			freeReplyObject(r);
		}
		n += PIPE;
	}
	redisFree(c);
	*pairs = n;
	return (double)n * 1e9 / (double)(mono_ns() - t0);
}

/* One timed run of a Redis store: decisions/s and Redis usec per decision. */
static double last_usec; /* Redis usec per decision of the last store_run */

static double store_run(redisContext *c, struct sl_store *s, const char *name)
{
	double v, usec, cpu0;

	reset_stats(c);
	cpu0 = cpu_usec(c);
	v = run(s);
	usec = cmd_usec(c, script_cmds);
	printf("redis_cpu_usec_per_decision_%s %.4f\n", name,
	       completed ? (cpu_usec(c) - cpu0) / (double)completed : 0.0);
	printf("redis_%s_decisions_per_sec %.0f\n", name, v);
	printf("redis_usec_per_decision_%s %.4f\n", name,
	       completed ? usec / (double)completed : 0.0);
	printf("redis_%s_errors %llu\n", name, (unsigned long long)errors);
	if (getenv("BENCH_DEBUG")) {
		redisReply *r = redisCommand(c, "INFO commandstats");

		if (r && r->type == REDIS_REPLY_STRING)
			fprintf(stderr, "%s\n", r->str);
		if (r)
			freeReplyObject(r);
	}
	fflush(stdout);
	last_usec = completed ? usec / (double)completed : 0.0;
	return v;
}

static char url[64];

/* name in the directory of this executable (static storage), or NULL. */
static const char *beside_exe(const char *name)
{
	static char path[4096];
	ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
	char *slash;

	if (n <= 0)
		return NULL;
	path[n] = '\0';
	slash = strrchr(path, '/');
	if (!slash || (size_t)(slash + 1 - path) + strlen(name) + 1 > sizeof(path))
		return NULL;
	memcpy(slash + 1, name, strlen(name) + 1);
	return path;
}

/* The loop, the three limits and a one-connection Redis store config for
 * port (timeout in ns). 1e6 per second (per day, per minute) per key over
 * 10000 keys: nearly every decision allowed. */
static void setup(struct sl_store_conf *conf, int port, int64_t timeout)
{
	uv_loop_init(&loop);
	sl_spec_rate(&specs[0], 1000000, 1000000000LL, 0, 0);
	sl_spec_quota(&specs[1], 1000000000, SL_CAL_DAY, 0);
	sl_spec_sliding(&specs[2], 1000000000, 60 * 1000000000LL);
	memset(conf, 0, sizeof(*conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	conf->type = SL_STORE_REDIS;
	conf->url = url;
	conf->timeout = timeout;
	conf->pool = 1;
}

/* Detach the loop from Redis store s and destroy it. */
static void store_free(struct sl_store *s)
{
	sl_redis_store_detach(s, &loop);
	s->ops->destroy(s);
	uv_run(&loop, UV_RUN_DEFAULT);
}

int main(void)
{
	struct sl_store_conf conf;
	struct sl_store *mem = NULL, *red = NULL;
	char portbuf[16], cmd[512], line[256];
	int port = free_port();
	pid_t pid;
	redisContext *c = NULL;
	redisReply *r;
	FILE *p;
	double v, cpu0, exact1 = 0, exact3 = 0, gcra = 0, u_exact1 = 0, u_local = 0;
	double mod1 = 0, mod3 = 0;
	const char *module = getenv("BENCH_REDIS_MODULE") ? getenv("BENCH_REDIS_MODULE")
	                                                  : beside_exe("sluice_redis.so");
	bool have_module = module && access(module, R_OK) == 0;
	uint64_t pairs = 0;

	signal(SIGPIPE, SIG_IGN);
	if (getenv("BENCH_REDIS_PORT")) {
		/* bench/redis_instr.sh: one exact run of BENCH_DECISIONS decisions
		 * against its server (under callgrind), nothing else */
		port = (int)strtol(getenv("BENCH_REDIS_PORT"), NULL, 10);
		count_n = getenv("BENCH_DECISIONS") ? strtoull(getenv("BENCH_DECISIONS"), NULL, 10)
		                                    : 10000;
		nchecks = getenv("BENCH_ONLY_EXACT") &&
		                          strtol(getenv("BENCH_ONLY_EXACT"), NULL, 10) == 3
		                  ? 3
		                  : 1;
		setup(&conf, port, 60 * 1000000000LL); /* a server under valgrind is slow */
		/* BENCH_MODULE=0: the Lua library even where the server has the module */
		conf.no_module = getenv("BENCH_MODULE") && strcmp(getenv("BENCH_MODULE"), "0") == 0;
		if (sl_redis_store_create(&red, &conf) != 0)
			return 1;
		run(red);
		printf("redis_count_completed %llu\nredis_count_errors %llu\n",
		       (unsigned long long)completed, (unsigned long long)errors);
		store_free(red);
		uv_loop_close(&loop);
		return errors ? 1 : 0;
	}
	if (!have_module)
		fprintf(stderr, "bench_redis: no module at %s: the *_module figures are left out\n",
		        module ? module : "(unknown)");
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	pid = fork();
	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		if (have_module)
			execlp("redis-server", "redis-server", "--port", portbuf, "--bind",
			       "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel",
			       "warning", "--loadmodule", module, (char *)NULL);
		else
			execlp("redis-server", "redis-server", "--port", portbuf, "--bind",
			       "127.0.0.1", "--save", "", "--appendonly", "no", "--loglevel",
			       "warning", (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 100 && !c; i++) {
		usleep(20000);
		c = redisConnect("127.0.0.1", port);
		if (c && c->err) {
			redisFree(c);
			c = NULL;
		}
	}
	if (!c)
		goto out;
	setup(&conf, port, 1000000000LL);

	if (sl_memory_store_create(&mem, 64u << 20, 1) == 0) {
		inline_store = 1;
		printf("redis_bench_memory_store_decisions_per_sec %.0f\n", run(mem));
		inline_store = 0;
		mem->ops->destroy(mem);
	}

	if (getenv("BENCH_ONLY_EXACT")) { /* profiling: the exact runs only */
		if (sl_redis_store_create(&red, &conf) == 0) {
			nchecks = (size_t)strtol(getenv("BENCH_ONLY_EXACT"), NULL, 10) == 3 ? 3 : 1;
			store_run(c, red, nchecks == 3 ? "exact3" : "exact1");
			store_free(red);
		}
		goto done;
	}
	conf.no_module = true; /* the Lua library */
	if (sl_redis_store_create(&red, &conf) == 0) {
		nchecks = 1;
		exact1 = store_run(c, red, "exact1");
		u_exact1 = last_usec;
		nchecks = 3;
		exact3 = store_run(c, red, "exact3");
		nchecks = 1;
		store_free(red);
	}
	conf.no_module = false;
	if (have_module && sl_redis_store_create(&red, &conf) == 0) {
		nchecks = 1;
		mod1 = store_run(c, red, "exact1_module");
		nchecks = 3;
		mod3 = store_run(c, red, "exact3_module");
		nchecks = 1;
		store_free(red);
	}

	r = redisCommand(c, "SCRIPT LOAD %s", gcra_lua);
	if (r && r->type == REDIS_REPLY_STRING) {
		double last = -1;

		reset_stats(c);
		cpu0 = cpu_usec(c);
		snprintf(cmd, sizeof(cmd),
		         "redis-benchmark -h 127.0.0.1 -p %d -c 50 -P 16 -n 400000 -r 10000 -q "
		         "EVALSHA %s 1 bk:__rand_int__ 1000 1000000 2>/dev/null",
		         port, r->str);
		p = popen(cmd, "r");
		/* -q prints progress with \r, then the final "NAME: N requests
		 * per second" line: keep the last figure followed by "requests" */
		while (p && fgets(line, sizeof(line), p)) {
			char *rps = strrchr(line, ':');

			if (rps && strstr(rps, "requests per second") &&
			    sscanf(rps + 1, "%lf", &v) == 1)
				last = v;
		}
		if (p)
			pclose(p);
		if (last >= 0) {
			gcra = last;
			printf("redis_gcra_evalsha_per_sec %.0f\n", last);
			printf("redis_usec_per_decision_gcra_evalsha %.4f\n",
			       cmd_usec(c, script_cmds) / 400000.0);
			printf("redis_cpu_usec_per_decision_gcra_evalsha %.4f\n",
			       (cpu_usec(c) - cpu0) / 400000.0);
		}
	}
	if (r)
		freeReplyObject(r);

	reset_stats(c);
	cpu0 = cpu_usec(c);
	v = incr_expire(port, &pairs);
	printf("redis_incr_expire_per_sec %.0f\n", v);
	printf("redis_usec_per_decision_incr_expire %.4f\n",
	       pairs ? cmd_usec(c, incr_cmds) / (double)pairs : 0.0);
	printf("redis_cpu_usec_per_decision_incr_expire %.4f\n",
	       pairs ? (cpu_usec(c) - cpu0) / (double)pairs : 0.0);

	conf.mode = SL_REDIS_LOCAL;
	conf.sync = 50 * 1000000LL;
	conf.strict = 100000;
	if (sl_redis_store_create(&red, &conf) == 0) {
		polled = 1;
		nkeys = LOCAL_KEYS;
		store_run(c, red, "local");
		if (getenv("BENCH_DEBUG")) {
			uint64_t l, st, f;

			sl_redis_local_counts(red, &l, &st, &f);
			fprintf(stderr, "local %llu strict %llu forwarded %llu\n",
			        (unsigned long long)l, (unsigned long long)st,
			        (unsigned long long)f);
		}
		nkeys = KEYS;
		u_local = last_usec;
		polled = 0;
		store_free(red);
	}
	if (gcra > 0) {
		printf("redis_exact1_over_gcra_ratio %.2f\n", exact1 / gcra);
		printf("redis_exact3_over_gcra_ratio %.2f\n", exact3 / gcra);
		if (have_module) {
			printf("redis_exact1_module_over_gcra_ratio %.2f\n", mod1 / gcra);
			printf("redis_exact3_module_over_gcra_ratio %.2f\n", mod3 / gcra);
		}
	}
	if (u_exact1 > 0)
		printf("redis_local_over_exact1_usec_ratio %.4f\n", u_local / u_exact1);
done:
	redisFree(c);
	uv_loop_close(&loop);
out:
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 0;
}
