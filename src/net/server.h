/* The HTTP server the daemon runs: one libuv loop per worker thread, each
 * with its own SO_REUSEPORT listeners (proxy, check, admin), connections
 * from a per-worker free list, and a per-worker upstream connection pool.
 * The daemon drives it from its main thread: create (binds everything, so
 * a port in use fails before any thread starts), start, swap policies on
 * reload, drain on shutdown. */
#ifndef SLUICE_NET_SERVER_H
#define SLUICE_NET_SERVER_H

#include <stdint.h>
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

/* Number of worker threads. */
unsigned sl_server_workers(const struct sl_server *s);

/* The server's metrics, for the daemon's own series (config loads,
 * subsystem gauges): see metrics.h. Valid until sl_server_destroy. */
struct sl_metrics *sl_server_metrics(struct sl_server *s);

#endif
