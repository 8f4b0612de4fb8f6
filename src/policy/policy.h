/* Policy: load and validate a config into an immutable compiled policy, and
 * evaluate requests against it. The front ends use this header only:
 *
 *   sl_eval_begin(ev, policy, req)   descriptors + the batch of checks
 *   sl_store_submit(store, &ev->batch) ... done ->
 *   sl_eval_finish(ev)                the decision (status, delay, limits)
 *   sl_render_headers / sl_render_body
 *
 * struct sl_eval is caller-allocated (per connection, reused per request)
 * and holds every per-request buffer: evaluation never allocates. */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include <sys/socket.h>
#include "policy/policy-t.h"
#include <sluice/batch-t.h>

/* ---- loading (config.c) ---- */

/* Diagnostics: every error of a load, each "file:line:col: message", and
 * its warnings, "file:line:col: warning: message", in file order. Warnings
 * never fail a load: a loaded policy's diag holds only warnings. */
#define SL_DIAG_MAX 64
struct sl_diag {
	size_t n;
	size_t nwarn; /* how many of the n are warnings */
	char msg[SL_DIAG_MAX][256];
};

/* Load and validate path. On success *out holds a policy with one
 * reference (and diag holds its warnings, if any); on failure returns
 * SL_ECONFIG with every error in diag (and *out NULL). Thread: any; blocks on file I/O. */
int sl_policy_load(const char *path, struct sl_policy **out, struct sl_diag *diag);
/* The same over len bytes at text (copied; need not end in NUL), with
 * `name` standing for the file in messages and as the policy's path
 * (tests, fuzzing). Thread: any. */
int sl_policy_load_mem(const char *name, const char *text, size_t len, struct sl_policy **out,
                       struct sl_diag *diag);
void sl_policy_ref(struct sl_policy *p);
void sl_policy_unref(struct sl_policy *p); /* frees at zero */

/* ---- live accounts (DESIGN.md section 6; the store is src/accounts) ---- */

#define SL_LIVE_NAME_MAX  128 /* bytes of an account name */
#define SL_LIVE_PLAN_MAX  64  /* bytes of a plan name */
#define SL_LIVE_LIMIT_MAX 64  /* bytes of an overridden limit's name */
#define SL_LIVE_OVERRIDES 8   /* overrides one account may hold */

/* One account override compiled against a policy: the spec that replaces
 * the named limit's for that account, and the counter id it uses. */
struct sl_live_override {
	char limit[SL_LIVE_LIMIT_MAX]; /* NUL-terminated limit name */
	uint64_t limit_id;
	struct sl_limit_spec spec;
};

/* An account of the live store as a lookup copies it into the sl_eval:
 * nothing in it points into the store, so it stays valid for as long as
 * the evaluation does (store completions, delays, rendering later). */
struct sl_live_account {
	char name[SL_LIVE_NAME_MAX + 1]; /* NUL-terminated */
	size_t name_len;
	char plan[SL_LIVE_PLAN_MAX + 1]; /* plan name, resolved in the policy per request */
	bool suspended;
	unsigned nover;
	struct sl_live_override over[SL_LIVE_OVERRIDES];
};

/* The live store's lookups. Both are allocation-free, take no lock shared
 * between threads, and may be called from any thread. Returns 1 with *out
 * filled, 0 when there is no such (valid) key or account: a key expired or
 * revoked past its grace at `now` (ns, unix timeline) is not found. */
struct sl_account_src {
	int (*by_key)(const struct sl_account_src *s, const uint8_t sha256[32], int64_t now,
	              struct sl_live_account *out);
	int (*by_name)(const struct sl_account_src *s, const char *name, size_t len,
	               struct sl_live_account *out);
};

/* Compile an override of limit `limit` in p from value_yaml (len bytes,
 * YAML or JSON text: "20000/min", "unlimited", 50, {rate: 900/min, burst:
 * 15, queue: 5}) with the limit's own value parsers. Returns 0 with *out
 * filled, SL_ENOENT when p has no such limit, SL_EINVAL with a message in
 * err (cap bytes) when the value is not one the limit accepts. Thread: any. */
int sl_policy_override(const struct sl_policy *p, const char *limit, const char *value_yaml,
                       size_t len, struct sl_live_override *out, char *err, size_t cap);
/* Plan index by name in p, or -1. Thread: any. */
int sl_policy_plan_index(const struct sl_policy *p, const char *name, size_t len);
/* Whether name is an account of identify.accounts. Thread: any. */
bool sl_policy_static_account(const struct sl_policy *p, const char *name, size_t len);

/* ---- evaluation (identity.c, eval.c) ---- */

struct sl_header {
	struct sl_str name, value;
};

/* A request as the front ends see it; every view is borrowed until
 * sl_eval_begin returns (descriptors are copied into the sl_eval). */
struct sl_request {
	struct sl_str method;
	struct sl_str path;  /* without the query */
	struct sl_str query; /* without the '?' */
	struct sl_str host;
	const struct sl_header *headers;
	size_t nheaders;
	const struct sockaddr *peer; /* NULL when ip is given */
	/* /v1/decide: descriptors given directly (len 0: not given). */
	struct sl_str ip, key, account, plan;
	uint64_t cost; /* 0: the route's cost */
	/* The caller never releases the concurrency slots this decision takes
	 * (the check listener answers before the request it decides for is
	 * served, and never learns when that ends): they free only when their
	 * leases lapse, so a concurrency rejection's retry_after says when. */
	bool unreleased;
};

#define SL_EVAL_MAX_CHECKS 24
#define SL_EVAL_KEYBUF     2048 /* bytes of descriptor keys per request */
#define SL_EVAL_PATHBUF    2048 /* bytes of a path that must be rewritten to be canonical */
#define SL_EVAL_HOSTBUF    272  /* bytes of a rewritten Host: a DNS name, ':', a port */

/* The decision for one request, after sl_eval_finish. */
struct sl_decision {
	int status;    /* 200, 401, 403, 429 (or the limit's status) */
	int64_t delay; /* ns to hold the request before answering/forwarding */
	int denied;    /* index into checks of the denying limit, or -1 */
	int primary;   /* most restrictive matched limit (denying one when denied), or -1 */
	int64_t now;   /* ns the decision was made at */
	bool unauthorized_unknown; /* 401 because the key is unknown (vs missing) */
	/* Added by eval.c: */
	bool store_error; /* the store failed; status is 503 (on_error: deny) or
	                   * 200/401 without rate-limit headers (on_error: allow) */
	bool suspended;   /* 403: the key's account is suspended (responses.suspended) */
};

/* What identity.c found out about the API key (struct sl_eval.key_state). */
enum sl_key_state {
	SL_KEY_NONE = 0, /* no key in any configured source */
	SL_KEY_UNKNOWN,  /* a key was presented but is not in policy->keys */
	SL_KEY_KNOWN,    /* a key of policy->keys: account and plan set from it */
};

struct sl_eval {
	const struct sl_policy *policy;
	/* descriptors */
	char ip[48]; /* text form, "" if none */
	struct sl_str key;
	const struct sl_account *account; /* NULL: none */
	const struct sl_plan *plan;       /* NULL: none */
	const struct sl_route *route;     /* NULL: no route matched */
	uint64_t cost;
	bool unreleased; /* req->unreleased: nobody releases the slots taken */
	/* checks, in evaluation order, and the limit each came from */
	struct sl_check checks[SL_EVAL_MAX_CHECKS];
	const struct sl_limit *limits[SL_EVAL_MAX_CHECKS];
	size_t nchecks;
	struct sl_batch batch; /* points at checks; caller sets loop/done/data */
	int pending_status;    /* 401 decided before the store (key missing/unknown) */
	struct sl_decision decision;
	char keybuf[SL_EVAL_KEYBUF];
	size_t keyused;
	char scratch[1024]; /* request copies the decision needs (key text etc.) */
	size_t scratchused;
	/* Added by identity.c / eval.c: */
	struct sl_str account_name; /* {account}: the policy's name or a copy of
	                             * req->account; len 0: no account */
	uint8_t key_state;          /* enum sl_key_state */
	uint8_t key_sha256[32];     /* SHA-256 of key when key_state != SL_KEY_NONE */
	/* Added by normalize (eval.c, docs/normalize.md): the canonical path and
	 * host of the request, views into the request when it was canonical
	 * already, else into pathbuf / hostbuf. Valid while the request's bytes
	 * are; the proxy forwards them under `normalize.forward: canonical`. */
	struct sl_str path, host;
	bool path_upper; /* path has an ASCII upper-case letter */
	char pathbuf[SL_EVAL_PATHBUF];
	char hostbuf[SL_EVAL_HOSTBUF];
	/* Added by identity.c for the live account store: the account a key
	 * (or /v1/decide's account) found there, copied; account_name and
	 * the overrides' specs point into it. */
	bool live_found;
	struct sl_live_account live;
};

/* Identify the request and prepare ev->batch (op SL_OP_DECIDE, possibly
 * with zero checks). The path and host are put in canonical form first
 * (ev->path, ev->host; docs/normalize.md) and every match and key uses
 * them. `now` is the caller's clock (ns). Returns 0, or a negative code
 * when the request cannot be evaluated: SL_ENOMEM when key bytes exceed
 * SL_EVAL_KEYBUF or a path to rewrite exceeds SL_EVAL_PATHBUF (answer
 * 431), SL_EINVAL for a malformed path (a bad or NUL escape) or a key
 * source (header, Authorization, query parameter) given twice (answer
 * 400). Thread: any. */
int sl_eval_begin(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req,
                  int64_t now);

/* Descriptors a peek has, for sl_eval_peek_begin's `have` (a bit per enum
 * sl_desc_kind): an account named by the operator (its plan, and global
 * counters), and a caller as identified (its ip and key too). */
#define SL_PEEK_ACCOUNT (1u << SL_DESC_ACCOUNT | 1u << SL_DESC_PLAN | 1u << SL_DESC_GLOBAL)
#define SL_PEEK_CALLER  (SL_PEEK_ACCOUNT | 1u << SL_DESC_IP | 1u << SL_DESC_KEY)

/* Like sl_eval_begin, for a peek (DESIGN.md section 7): ev->batch is an
 * SL_OP_PEEK batch at cost 0 of every global limit whose key parts are
 * all in `have` (route limits and limits keyed by path, method, host,
 * header or query are left out: a peek is no request on a route). An
 * unknown key is pending 401 with only the before-key limits; a missing
 * key is no error. Nothing is consumed and no slot taken whatever the
 * store answers. Returns 0 or the codes of sl_eval_begin. Thread: any. */
int sl_eval_peek_begin(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req,
                       int64_t now, unsigned have);

/* The peek answer {"account","plan","limits":[{"name","limit","remaining",
 * "reset","window_seconds","unlimited"}]} of a finished peek (or decision)
 * into buf (cap bytes). Returns the length, or -1 when it does not fit.
 * Thread: the owner of ev. */
long sl_render_usage(const struct sl_eval *ev, char *buf, size_t cap);

/* After the batch completed: compute ev->decision from the batch status,
 * the pending 401 and the limits' statuses; returns ev->decision.status. A
 * store failure (status < 0) follows store.on_error. A concurrency limit
 * that denies an unreleased request gets retry_after = its reset_after
 * (the lapse of its leases), not the short guess made for released slots. */
int sl_eval_finish(struct sl_eval *ev);

/* Render the response headers the policy sends for this decision (the
 * `responses.headers`, presets, and on rejection the rejected headers).
 * emit() is called once per header, with views valid only during the call.
 * Headers whose variables do not all resolve are left out. */
typedef void (*sl_header_emit_fn)(void *arg, struct sl_str name, struct sl_str value);
void sl_render_headers(const struct sl_eval *ev, sl_header_emit_fn emit, void *arg);

/* Whether a response header named `name` (case-insensitive) is one the
 * policy renders on an allowed, forwarded response: the x-ratelimit and
 * ietf preset fields in use and every `responses.headers` name. The proxy
 * drops an upstream's header of such a name so that only sluice's goes
 * out, even when sluice leaves it out for this response. Thread: any. */
bool sl_render_owns(const struct sl_policy *p, struct sl_str name);

/* Render the body of a rejection or 401 into buf (cap bytes). Returns the
 * length, or -1 when it does not fit. Sets *content_type. */
long sl_render_body(const struct sl_eval *ev, char *buf, size_t cap, const char **content_type);

/* After the response (and after rendering): turn ev->batch into the
 * SL_OP_RELEASE batch of the concurrency slots this decision took, for the
 * caller to submit when the proxied response ends. Returns the number of
 * checks to release (0: nothing to submit). The checks array is compacted,
 * so the decision must not be rendered afterwards. Thread: the owner of ev. */
size_t sl_eval_release(struct sl_eval *ev);

#endif
