/* The HTTP server the daemon runs: one libuv loop per worker thread, each
 * with its own SO_REUSEPORT listeners (proxy, check, admin), connections
 * from a per-worker free list, and a per-worker upstream connection pool.
 * The daemon drives it from its main thread: create (binds everything, so
 * a port in use fails before any thread starts), start, swap policies on
 * reload, drain on shutdown. */
#ifndef SLUICE_NET_SERVER_H
#define SLUICE_NET_SERVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sluice/batch-t.h>
#include "policy/policy.h"
#include "store/store.h"

struct sl_server;

/* Build the server for policy p (a reference is taken) on store (borrowed;
 * it must outlive the server). workers 0 means one per core. Binds every
 * listener of every worker. Returns 0, or a negative code with a message
 * in err (cap bytes). Thread: the daemon's main thread. */
int sl_server_create(struct sl_server **out, struct sl_policy *p, struct sl_store *store, char *err,
                     size_t cap);

/* Start the worker threads. done(arg) runs on a worker thread when the last
 * worker has left its loop (after a drain or stop); the daemon uses it to
 * wake its own loop. Returns 0 or a negative code. */
int sl_server_start(struct sl_server *s, void (*done)(void *arg), void *arg);

/* Serve p (a reference is taken) from now on; requests in flight finish
 * with the policy they started with. Listener addresses are fixed at
 * create: a changed listener list is reported through err (returns 1) and
 * takes effect on restart. Thread: the main thread. */
int sl_server_set_policy(struct sl_server *s, struct sl_policy *p, char *err, size_t cap);

/* Stop accepting, close idle connections, let requests in flight finish;
 * each worker leaves its loop when it has none left. Thread: any. */
void sl_server_drain(struct sl_server *s);

/* Close every connection now (the drain deadline passed). Thread: any. */
void sl_server_stop(struct sl_server *s);

/* Join the worker threads (after done ran) and free everything. */
void sl_server_destroy(struct sl_server *s);

/* A store whose batches complete on the submitting loop (Redis) keeps
 * connections on each worker loop; detach(store, loop) runs on each worker
 * as it shuts down, from a timer callback (never inside a completion).
 * Call before sl_server_start. */
void sl_server_set_detach(struct sl_server *s, void (*detach)(struct sl_store *st, void *loop));

/* Count every decision into the usage history u (borrowed; it must
 * outlive the server), worker i into sl_usage_shard(u, i), and answer the
 * history endpoints from it. Call before sl_server_start. */
struct sl_usage;
void sl_server_set_usage(struct sl_server *s, struct sl_usage *u);

/* Number of worker threads. */
unsigned sl_server_workers(const struct sl_server *s);

/* The server's metrics, for the daemon's own series (config loads,
 * subsystem gauges): see metrics.h. Valid until sl_server_destroy. */
struct sl_metrics *sl_server_metrics(struct sl_server *s);
/* ---- takeover (daemon/takeover.c; docs/daemon.md "Upgrades and restarts") ---- */

/* A listening socket of one worker. */
struct sl_server_sock {
	int fd;
	unsigned index; /* listener slot: the same listener on every worker */
	uint8_t kind;   /* 1 proxy, 2 check, 3 admin */
	char name[64];
	struct sockaddr_storage addr;
	socklen_t addrlen; /* bytes */
};

/* The listening sockets of every worker (borrowed: the server owns the
 * fds) into out[0, cap); returns how many there are. Thread: main. */
size_t sl_server_sockets(const struct sl_server *s, struct sl_server_sock *out, size_t cap);

/* sl_server_create that takes over inherit[0, n): a listener whose address
 * is that of an inherited socket listens on it instead of binding (one per
 * worker; more of them than workers are spread over the workers, so no
 * accept queue is closed with connections in it); an inherited socket
 * whose address no listener has is closed. Every fd is owned by the
 * server from the call on, used or closed, also on failure. */
int sl_server_create_inherit(struct sl_server **out, struct sl_policy *p, struct sl_store *store,
                             const struct sl_server_sock *inherit, size_t n, char *err, size_t cap);

/* How a paused server gives its work away. Worker threads call these. */
struct sl_server_handoff {
	/* a worker stopped accepting and deciding (once per worker per pause) */
	void (*paused)(void *arg);
	/* an idle client connection: fd (owned by the callee from now on),
	 * its listener slot, and bytes it sent that were not decided yet
	 * (borrowed for the call) */
	void (*conn)(void *arg, unsigned index, int fd, const char *bytes, size_t n);
	/* concurrency slots given back once forwarding is on (checks borrowed) */
	void (*release)(void *arg, const struct sl_check *checks, size_t n);
	void *arg;
};

/* Pause: every worker stops accepting (its sockets stay open) and stops
 * deciding: no head is parsed any more; requests in flight go on, and a
 * connection that is between requests waits as it is. h (copied) is what
 * sl_server_handoff uses later. Thread: main. */
void sl_server_pause(struct sl_server *s, const struct sl_server_handoff *h);
/* Undo a pause: accept and decide again. Thread: main. */
void sl_server_resume(struct sl_server *s);
/* Whether the next pause forwards concurrency releases: from its pause on,
 * a worker gives them to h->release instead of the store (so the snapshot
 * saved after every worker paused has exactly the releases before, and
 * h->release exactly those after); a resume turns it off. Call before
 * sl_server_pause. Thread: main. */
void sl_server_forward_releases(struct sl_server *s, bool on);
/* After a pause, hand everything over: every worker closes its listening
 * sockets, gives each connection that is between requests to h->conn
 * (now, or once its request in flight ends) and leaves its loop when it
 * has none left, as after a drain. Thread: main. */
void sl_server_handoff(struct sl_server *s);
/* Serve a connection handed over from another process on listener slot
 * index, with bytes[0, n) already received (copied): a worker takes it
 * (round robin). fd is owned by the server from the call on. Returns 0 or
 * SL_ENOMEM/SL_EINVAL (fd closed). Thread: main, after sl_server_start. */
int sl_server_adopt(struct sl_server *s, unsigned index, int fd, const char *bytes, size_t n);

#endif
