/* Redis store benchmark: decisions per second through the Redis store
 * (one worker loop, many batches in flight, pipelined on one connection)
 * against the memory store, and against redis-benchmark calling a bare
 * GCRA Lua script by EVALSHA on the same redis-server, in one run. It
 * starts its own redis-server on a free loopback port and stops it by PID.
 * Prints one "NAME VALUE" line per figure. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
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
#include "store/store.h"

#define RUN_NS (2 * 1000000000LL) /* ns per timed run */
#define INFLIGHT 128              /* batches in flight */

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
	struct sl_check ck;
	char key[16];
};

static struct sl_store *store;
static uv_loop_t loop;
static struct slot slots[INFLIGHT];
static struct sl_limit_spec spec;
static uint64_t completed, errors, seq;
static int inline_store; /* memory store: done() runs inside submit */
static int64_t stop_at;

static void submit_one(struct slot *sl);

static void on_done(struct sl_batch *b)
{
	completed++;
	if (b->status < 0)
		errors++;
	if (!inline_store && mono_ns() < stop_at)
		submit_one(b->data);
}

static void submit_one(struct slot *sl)
{
	struct timespec ts;

	snprintf(sl->key, sizeof(sl->key), "k%llu", (unsigned long long)(seq++ % 10000));
	memset(&sl->ck, 0, sizeof(sl->ck));
	sl->ck.spec = &spec;
	sl->ck.limit_id = 42;
	sl->ck.name = "bench";
	sl->ck.key = sl->key;
	sl->ck.key_len = (uint32_t)strlen(sl->key);
	sl->ck.cost = 1;
	memset(&sl->b, 0, sizeof(sl->b));
	sl->b.checks = &sl->ck;
	sl->b.n = 1;
	sl->b.op = SL_OP_DECIDE;
	clock_gettime(CLOCK_REALTIME, &ts);
	sl->b.now = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
	sl->b.loop = &loop;
	sl->b.done = on_done;
	sl->b.data = sl;
	if (sl_store_submit(store, &sl->b) < 0)
		errors++;
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
	for (int i = 0; i < INFLIGHT; i++)
		submit_one(&slots[i]);
	while (mono_ns() < stop_at + 1000000000LL && uv_run(&loop, UV_RUN_ONCE))
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

int main(void)
{
	struct sl_store_conf conf;
	struct sl_store *mem = NULL, *red = NULL;
	char url[64], portbuf[16], cmd[512], line[256];
	int port = free_port();
	pid_t pid;
	redisContext *c = NULL;
	redisReply *r;
	FILE *p;
	double v;

	signal(SIGPIPE, SIG_IGN);
	snprintf(portbuf, sizeof(portbuf), "%d", port);
	pid = fork();
	if (pid == 0) {
		if (freopen("/dev/null", "w", stdout) == NULL)
			_exit(127);
		execlp("redis-server", "redis-server", "--port", portbuf, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--loglevel", "warning", (char *)NULL);
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
	uv_loop_init(&loop);
	/* 1e6 per second per key over 10000 keys: nearly every decision allowed */
	sl_spec_rate(&spec, 1000000, 1000000000LL, 0, 0);

	if (sl_memory_store_create(&mem, 64u << 20, 1) == 0) {
		inline_store = 1;
		printf("redis_bench_memory_store_decisions_per_sec %.0f\n", run(mem));
		inline_store = 0;
		mem->ops->destroy(mem);
	}

	memset(&conf, 0, sizeof(conf));
	snprintf(url, sizeof(url), "redis://127.0.0.1:%d", port);
	conf.type = SL_STORE_REDIS;
	conf.url = url;
	conf.timeout = 1000000000LL;
	conf.pool = 1;
	if (sl_redis_store_create(&red, &conf) == 0) {
		v = run(red);
		printf("redis_bench_redis_store_decisions_per_sec %.0f\n", v);
		printf("redis_bench_redis_store_errors %llu\n", (unsigned long long)errors);
		sl_redis_store_detach(red, &loop);
		red->ops->destroy(red);
		uv_run(&loop, UV_RUN_DEFAULT);
	}

	r = redisCommand(c, "SCRIPT LOAD %s", gcra_lua);
	if (r && r->type == REDIS_REPLY_STRING) {
		snprintf(cmd, sizeof(cmd),
			 "redis-benchmark -h 127.0.0.1 -p %d -c 50 -P 16 -n 400000 -r 10000 -q "
			 "EVALSHA %s 1 bk:__rand_int__ 1000 1000000 2>/dev/null",
			 port, r->str);
		double last = -1;

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
		if (last >= 0)
			printf("redis_bench_redis_benchmark_evalsha_gcra_per_sec %.0f\n", last);
	}
	if (r)
		freeReplyObject(r);
	redisFree(c);
	uv_loop_close(&loop);
out:
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return 0;
}
