/* Helpers shared by the Redis store tests: start and stop real redis-server
 * processes on free loopback ports, talk to them synchronously (hiredis),
 * and run one batch through a store on a uv loop until it completes. Each
 * test starts its own servers and kills them by PID; nothing relies on a
 * system Redis. */
#ifndef SLUICE_TEST_REDIS_UTIL_H
#define SLUICE_TEST_REDIS_UTIL_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <hiredis/hiredis.h>
#include <uv.h>
#include <sluice/error.h>
#include "store/store.h"

static inline int64_t tr_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void tr_sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* A port nobody listens on now (the kernel's pick for port 0). */
static inline int tr_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0)
		abort();
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static inline int tr_port_bindable(int port)
{
	struct sockaddr_in a;
	int fd = socket(AF_INET, SOCK_STREAM, 0), ok;

	memset(&a, 0, sizeof(a));
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	a.sin_port = htons((uint16_t)port);
	ok = fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

/* A port for a cluster node: it and its bus port (port + 10000) free. */
static inline int tr_free_cluster_port(void)
{
	static unsigned seed;

	if (!seed)
		seed = (unsigned)getpid() ^ (unsigned)time(NULL);
	for (int i = 0; i < 1000; i++) {
		int p = 20000 + (int)(rand_r(&seed) % 20000);

		if (tr_port_bindable(p) && tr_port_bindable(p + 10000))
			return p;
	}
	abort();
}

static inline redisContext *tr_connect(int port)
{
	struct timeval tv = {1, 0};
	redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);

	if (c && c->err) {
		redisFree(c);
		return NULL;
	}
	if (c)
		redisSetTimeout(c, tv);
	return c;
}

/* Run a command on port synchronously; returns the reply (caller frees) or
 * NULL. */
static inline redisReply *tr_cmd(int port, const char *fmt, ...)
{
	redisContext *c = tr_connect(port);
	redisReply *r;
	va_list ap;

	if (!c)
		return NULL;
	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	redisFree(c);
	return r;
}

static inline int tr_ping(int port)
{
	redisReply *r = tr_cmd(port, "PING");
	int ok = r && r->type == REDIS_REPLY_STATUS;

	if (r)
		freeReplyObject(r);
	return ok;
}

/* Start redis-server on port with extra arguments (NULL-terminated array,
 * may be NULL); dir is its working directory (cluster config lives there).
 * Waits up to 5 s for PING. Returns the PID or -1. */
static inline pid_t tr_start_redis(int port, const char *dir, const char *const *extra)
{
	char portbuf[16];
	const char *argv[40];
	int argc = 0;
	pid_t pid;

	snprintf(portbuf, sizeof(portbuf), "%d", port);
	argv[argc++] = "redis-server";
	argv[argc++] = "--port";
	argv[argc++] = portbuf;
	argv[argc++] = "--bind";
	argv[argc++] = "127.0.0.1";
	argv[argc++] = "--save";
	argv[argc++] = "";
	argv[argc++] = "--appendonly";
	argv[argc++] = "no";
	argv[argc++] = "--loglevel";
	argv[argc++] = "warning";
	for (int i = 0; extra && extra[i] && argc < 38; i++)
		argv[argc++] = extra[i];
	argv[argc] = NULL;
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int devnull = open("/dev/null", 0x0001 /* O_WRONLY */);

		if (dir && chdir(dir) != 0)
			_exit(126);
		if (devnull >= 0) {
			dup2(devnull, 1);
			dup2(devnull, 2);
		}
		execvp("redis-server", (char *const *)argv);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (tr_ping(port))
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return -1;
		tr_sleep_ms(20);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

/* Detach s from the loop it ran on, destroy it, and run the loop until its
 * handles have closed (every store test ends a store this way). */
static inline void tr_free_store(struct sl_store *s, uv_loop_t *loop)
{
	sl_redis_store_detach(s, loop);
	s->ops->destroy(s);
	uv_run(loop, UV_RUN_DEFAULT);
}

static inline void tr_stop_redis(pid_t pid)
{
	if (pid <= 0)
		return;
	kill(pid, SIGCONT);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* One batch run to completion on loop (bounded: 10 s of loop passes). */
struct tr_batch {
	struct sl_batch b;
	int done;
};

static inline void tr_done(struct sl_batch *b)
{
	((struct tr_batch *)b->data)->done++;
}

static inline int64_t tr_wall_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Submit checks[0..n) with op and wait; returns the batch status, or the
 * submit error. *elapsed_ms gets the wall time it took when not NULL. */
static inline int tr_run(struct sl_store *s, uv_loop_t *loop, struct sl_check *checks, size_t n,
			 uint8_t op, struct sl_batch *out, int64_t *elapsed_ms)
{
	struct tr_batch t;
	int64_t t0 = tr_now_ms();
	int rc;

	memset(&t, 0, sizeof(t));
	t.b.checks = checks;
	t.b.n = n;
	t.b.op = op;
	t.b.now = tr_wall_ns();
	t.b.loop = loop;
	t.b.done = tr_done;
	t.b.data = &t;
	rc = sl_store_submit(s, &t.b);
	if (rc < 0)
		return rc;
	while (!t.done && tr_now_ms() - t0 < 10000)
		uv_run(loop, UV_RUN_ONCE);
	if (elapsed_ms)
		*elapsed_ms = tr_now_ms() - t0;
	if (out)
		*out = t.b;
	return t.done == 1 ? t.b.status : -1000;
}

#endif
