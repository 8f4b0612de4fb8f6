/* The admin front end of DESIGN.md section 5, independent of sockets:
 * POST /v1/decide, POST /v1/release, GET /metrics, GET /healthz. The server
 * parses an admin-listener request, hands it to sl_admin_handle() and writes
 * back the response it gets. A decision goes through the store, which may
 * complete later (Redis), so a call either finishes inline (return 0) or
 * returns SL_AGAIN and finishes through call->done on the same loop.
 *
 * Leases: a decision that takes concurrency slots returns a lease id; the
 * lease lives in the lease table of the worker that decided it, until
 * /v1/release (on any worker: the id names the table) or until admin.lease_ttl
 * passes, when that worker's sweep timer gives the slots back. Tables have a
 * fixed capacity and a mutex each; the admin path is not the hot path.
 *
 * With admin.token set, every endpoint but /healthz (probes) requires
 * "Authorization: Bearer <token>"; otherwise 401 with WWW-Authenticate. */
#ifndef SLUICE_NET_ADMIN_H
#define SLUICE_NET_ADMIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>
#include "policy/policy.h"
#include "store/store.h"
#include "net/metrics.h"

#define SL_ADMIN_BODY_MAX     65536 /* bytes: response body cap (metrics is the largest) */
#define SL_ADMIN_LEASES       1024  /* leases per worker table */
#define SL_ADMIN_LEASE_KEYS   4     /* concurrency checks one lease can hold */
#define SL_ADMIN_LEASE_KEYBUF 768   /* bytes of descriptor keys one lease can hold */
#define SL_ADMIN_MAX_HEADERS  64    /* "headers" entries accepted by /v1/decide */
#define SL_ADMIN_LEASE_ID     40    /* bytes, lease id text incl. NUL */

/* One admin request as the server parsed it. Every view is borrowed until
 * sl_admin_handle returns (also when it returns SL_AGAIN). */
struct sl_admin_req {
	struct sl_str method;
	struct sl_str path;  /* without the query */
	struct sl_str query; /* without the '?' */
	const struct sl_header *headers;
	size_t nheaders;
	struct sl_str body;
	/* The policy the worker serves now (borrowed for the call; a lease
	 * taken by the call keeps its own reference). */
	const struct sl_policy *policy;
	int64_t now; /* ns, the worker's clock for this loop pass */
};

#define SL_ADMIN_MAX_EXTRA 4 /* the dashboard's security headers */

/* What to send back. The server adds Content-Length/Connection itself. */
struct sl_admin_resp {
	int status;
	const char *content_type;                   /* static string */
	struct sl_header extra[SL_ADMIN_MAX_EXTRA]; /* e.g. WWW-Authenticate; static views */
	size_t nextra;
	size_t len; /* bytes of body */
	char *heap; /* a malloc'd body used instead of body[] (large answers) */
	char body[SL_ADMIN_BODY_MAX];
};

/* The bytes to send: r->heap when set, else r->body. */
const char *sl_admin_resp_data(const struct sl_admin_resp *r);

struct sl_admin_call;
typedef void (*sl_admin_done_fn)(struct sl_admin_call *c);

struct sl_lease_table;
struct sl_usage;
struct sl_admin_mailbox;

/* One admin request in flight. Caller-allocated (per connection or per
 * request); it must stay allocated until sl_admin_handle returned 0 or
 * done() ran, even if the client went away meanwhile. */
struct sl_admin_call {
	sl_admin_done_fn done; /* set by the caller; runs only after SL_AGAIN */
	void *data;            /* caller's */
	struct sl_admin_resp resp;

	/* private */
	struct sl_admin *admin;
	const struct sl_policy *policy;
	uint64_t start; /* uv_hrtime() at entry, ns */
	int kind;
	struct sl_lease_table *rel_table; /* /v1/release: table and slot */
	unsigned rel_slot;
	struct sl_eval ev;
};

/* Process-wide admin state: every worker's lease table and the metrics.
 * Created once before the workers start. */
struct sl_admin_global {
	unsigned nworkers;
	struct sl_lease_table *tables; /* [nworkers] */
	struct sl_metrics *metrics;    /* borrowed; outlives the global */
	struct sl_store *stats_store;  /* store whose stats /metrics reports; borrowed */
	struct sl_usage *usage;        /* usage history or NULL (off); borrowed */
};

/* Per worker: lives on that worker's loop. */
struct sl_admin {
	struct sl_admin_global *g;
	unsigned worker;
	uv_loop_t *loop;
	struct sl_store *store; /* the store this worker submits to; borrowed */
	struct sl_metrics_shard *shard;
	uv_timer_t sweep;            /* lease expiry */
	int64_t (*clock)(void *arg); /* ns on the epoch-anchored timeline; NULL: CLOCK_REALTIME */
	void *clock_arg;
	int64_t lease_ttl;   /* ns, from the policy at init; updated by sl_admin_handle */
	int64_t sweep_every; /* ns, sweep timer period */
	void (*closed)(struct sl_admin *a);
	struct sl_admin_mailbox *mailbox; /* accounts thread answers (admin-accounts.c) */
};

/* Refuse an admin config the daemon must not start with: a token is
 * required when admin.listen is not a loopback address. Returns 0 or
 * SL_ECONFIG with a message in err (cap bytes). Call at startup and on
 * every reload (a refused reload keeps the old policy). Thread: any. */
int sl_admin_conf_check(const struct sl_admin_conf *c, char *err, size_t cap);

/* Initialise g for nworkers workers (allocates the lease tables). Checks
 * p->admin with sl_admin_conf_check first. metrics and stats_store are
 * borrowed. Returns 0, SL_ECONFIG (err filled) or SL_ENOMEM. */
int sl_admin_global_init(struct sl_admin_global *g, const struct sl_policy *p, unsigned nworkers,
                         struct sl_metrics *metrics, struct sl_store *stats_store, char *err,
                         size_t cap);
/* After every worker's sl_admin was closed: frees the tables and drops the
 * policy references leases still hold (their slots are not given back). */
void sl_admin_global_destroy(struct sl_admin_global *g);

/* Initialise worker `worker`'s admin on loop (its thread) and start the
 * lease sweep timer (unreferenced: it never keeps the loop alive). clock
 * may be NULL. Returns 0 or a negative code. Thread: the loop's. */
int sl_admin_init(struct sl_admin *a, struct sl_admin_global *g, unsigned worker, uv_loop_t *loop,
                  struct sl_store *store, const struct sl_policy *p, int64_t (*clock)(void *),
                  void *clock_arg);

/* Release every lease of this worker (store releases are submitted; a
 * graceful shutdown), then close the timer; closed(a) runs from the close
 * callback, after which a may be freed. Thread: the loop's. */
void sl_admin_close(struct sl_admin *a, void (*closed)(struct sl_admin *a));

/* Handle one admin request. Returns 0 with c->resp filled, or SL_AGAIN:
 * c->done(c) runs later on a's loop with c->resp filled. Never fails
 * otherwise (errors are responses: 400, 401, 404, 405, 503). Thread: a's
 * loop. */
int sl_admin_handle(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);

/* Free what a call's last response allocated; the server calls it before
 * freeing a call (sl_admin_handle calls it at the start of each call). */
void sl_admin_call_reset(struct sl_admin_call *c);

/* Release this worker's leases that expire by now + one sweep period (the
 * timer does this; early by at most a period, never after the store would
 * forget the slots). At most 64 per call; returns the number released.
 * Thread: a's loop. */
unsigned sl_admin_sweep(struct sl_admin *a, int64_t now);

#endif
