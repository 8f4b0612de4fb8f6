/* Private to the admin front end (admin.c routing, admin-resp.c answers,
 * admin-lease.c lease tables, admin-decide.c /v1/decide and /v1/release,
 * and the endpoint files that add routes): what they share. Other layers
 * use admin.h. */
#ifndef SLUICE_NET_ADMIN_INT_H
#define SLUICE_NET_ADMIN_INT_H

#include <pthread.h>
#include <cjson/cJSON.h>
#include "net/admin.h"
#include "core/buf.h"
#include "usage/usage.h"

#define LEASE_TTL_DEFAULT (60 * SL_NS_PER_SEC)
#define SWEEP_MAX         64            /* leases released per sweep pass */
#define COST_MAX          1000000000ULL /* units; a larger cost is refused */

/* call->kind: what the call waits for; K_NONE once its response is ready. */
enum { K_NONE = 0, K_DECIDE, K_DECIDE_ASYNC, K_RELEASE, K_ACCOUNTS };

enum lease_state {
	L_FREE = 0,
	L_RESERVED,  /* a decision is in the store */
	L_HELD,      /* slots taken; released by /v1/release or the sweep */
	L_RELEASING, /* release batch in the store */
};

struct lease {
	uint8_t state;            /* enum lease_state */
	uint32_t gen;             /* part of the id; changes at every reuse */
	int64_t expires;          /* ns */
	struct sl_policy *policy; /* reference held while L_HELD/L_RELEASING */
	struct sl_lease_table *table;
	unsigned slot;
	size_t n;
	struct sl_check checks[SL_ADMIN_LEASE_KEYS];
	char keybuf[SL_ADMIN_LEASE_KEYBUF];
	struct sl_batch batch;
	struct sl_admin_call *waiter; /* /v1/release waiting for the store, or NULL */
	bool waiter_async;
	struct sl_admin *releaser; /* the admin that submitted the release */
};

struct sl_lease_table {
	pthread_mutex_t mu;
	unsigned worker;
	uint32_t next_gen;
	unsigned nfree;
	unsigned freelist[SL_ADMIN_LEASES];
	struct lease lease[SL_ADMIN_LEASES];
};

/* ---- answers (admin-resp.c) ---- */

extern const char sl_admin_ct_json[];
extern const char sl_admin_ct_prom[];

void sl_admin_jw_cstr(struct sl_buf *w, const char *s);
/* body (a NUL-terminated JSON text) as the response; cut at the buffer. */
void sl_admin_respond_json(struct sl_admin_resp *r, int status, const char *body);
/* {"error":"<code>","message":"<msg>"} */
void sl_admin_respond_error(struct sl_admin_resp *r, int status, const char *code, const char *msg);
/* A body of any size: r takes p (malloc'd, len bytes) and frees it with
 * sl_admin_call_reset. content_type is a static string. */
void sl_admin_respond_owned(struct sl_admin_resp *r, int status, const char *content_type, char *p,
                            size_t len);
void sl_admin_add_extra(struct sl_admin_resp *r, const char *name, const char *value);
/* The request body as a JSON object, or NULL with a 400 bad_json written. */
cJSON *sl_admin_parse_object(struct sl_admin_resp *r, const struct sl_admin_req *req);

/* ---- leases and the clock (admin-lease.c) ---- */

int64_t sl_admin_now(struct sl_admin *a);
struct lease *sl_lease_reserve(struct sl_lease_table *t); /* NULL when full */
void sl_lease_free(struct lease *l); /* back to the free list; drops its policy */
void sl_lease_id(const struct lease *l, char *out, size_t cap);
int sl_lease_parse_id(const char *s, unsigned *worker, unsigned *slot, uint32_t *gen);
void sl_lease_release_respond(struct sl_admin_call *c, int status);
/* Submit the release of l (state already L_RELEASING) on a's loop. Returns
 * 0 (its completion ran or will run) or a negative code (l back to L_HELD). */
int sl_lease_release_submit(struct sl_admin *a, struct lease *l, int64_t now);

/* ---- endpoints ---- */

/* A handler answers one request: 0 with c->resp filled, or SL_AGAIN
 * (c->done runs later). Routing (admin.c) checked the token first. */
typedef int (*sl_admin_handler_fn)(struct sl_admin *a, struct sl_admin_call *c,
                                   const struct sl_admin_req *req);

int sl_admin_decide(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);

/* Submit c->ev.batch (prepared by sl_eval_begin or a peek) with done as
 * its completion: complete(c) fills the answer, inline when the store
 * answers at once or refuses, or there is nothing to ask. Returns 0 (the
 * answer is ready) or SL_AGAIN (c->done owed: done() calls complete and
 * then c->done when c->kind was K_DECIDE_ASYNC). */
int sl_admin_submit(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req,
                    void (*done)(struct sl_batch *), void (*complete)(struct sl_admin_call *));
int sl_admin_release(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);
/* admin-accounts.c: /v1/accounts..., /v1/keys... (DESIGN.md section 6) */
int sl_admin_accounts(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);
int sl_admin_keys(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);
/* The mailbox answers of the accounts thread come back through (on a's
 * loop): made by sl_admin_init, closed by sl_admin_close. */
int sl_admin_accounts_init(struct sl_admin *a);
void sl_admin_accounts_close(struct sl_admin *a);
/* GET /v1/accounts/{account}/usage (admin-usage.c) */
int sl_admin_usage(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);

/* admin-history.c: the usage history (GET only), the dashboard's files
 * (public: they hold no data; the page sends the token with each fetch),
 * and the usage series appended to /metrics (returns the bytes written
 * into buf, 0 when off or when they do not fit). */
int sl_admin_usage_history(struct sl_admin *a, struct sl_admin_call *c,
                           const struct sl_admin_req *req);
int sl_admin_usage_top(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);
int sl_admin_dashboard(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req);
size_t sl_admin_usage_metrics(struct sl_admin *a, char *buf, size_t cap, int64_t now);
/* Before a scrape: the time of the last usage flush into the metrics'
 * SL_GAUGE_USAGE_FLUSHED (sluice_usage_flush_lag_seconds). */
void sl_admin_usage_gauges(struct sl_admin *a);
/* Unix seconds or RFC 3339 text to unix seconds. 0, SL_EINVAL, SL_ERANGE. */
int sl_usage_parse_time(const char *s, int64_t *out);

#endif
