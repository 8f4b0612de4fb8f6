/* Types of the compiled policy: what one YAML file becomes after loading and
 * validation (config.c), read by identity, evaluation and the front ends.
 * A compiled policy is immutable and shared by every worker thread; a
 * reload builds a new one and swaps it in (refcounted). All strings are
 * NUL-terminated copies owned by the policy. */
#ifndef SLUICE_POLICY_T_H
#define SLUICE_POLICY_T_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sluice/algo-t.h>
#include "tls/tls-t.h"

/* A (pointer, length) view; not NUL-terminated unless stated. */
struct sl_str {
	const char *p;
	size_t len;
};

/* Descriptor kinds a limit key is built from (DESIGN.md section 4). */
enum sl_desc_kind {
	SL_DESC_IP = 1,
	SL_DESC_KEY,
	SL_DESC_ACCOUNT,
	SL_DESC_PLAN,
	SL_DESC_ROUTE,
	SL_DESC_METHOD,
	SL_DESC_PATH,
	SL_DESC_HOST,
	SL_DESC_HEADER, /* header:NAME */
	SL_DESC_QUERY,  /* query:NAME */
	SL_DESC_GLOBAL,
};

struct sl_desc {
	uint8_t kind; /* enum sl_desc_kind */
	char *arg;    /* NAME of header:NAME / query:NAME, else NULL */
};

#define SL_MAX_KEY_PARTS 4

struct sl_plan {
	char *name;
	char *title; /* defaults to name */
	unsigned index;
};

/* Template: compiled once at load (template.c); opaque here. */
struct sl_template;

struct sl_limit {
	char *name;
	unsigned index; /* unique in the policy: global limits 0..nlimits-1 in
	                 * order, then route limits in route order; what
	                 * sl_tpl_ref.limit_index of {limits.NAME.*} holds */
	struct sl_desc key[SL_MAX_KEY_PARTS];
	unsigned nkey;
	/* Evaluated and committed before the API key is looked up: every key
	 * part is ip, route, method, path, host, header, query or global. */
	bool before_key;
	/* Not per-plan: spec/limit_id. Per-plan: plan_spec[plan index], whose
	 * algo is 0 where the plan is absent from the map (limit skipped). */
	bool per_plan;
	struct sl_limit_spec spec;
	uint64_t limit_id;               /* counter identity: XXH3 of (name, algo, key parts
	                                  * [, sliding period]); never 0 (config-limits.c) */
	struct sl_limit_spec *plan_spec; /* [npolicy plans] or NULL */
	uint64_t *plan_limit_id;         /* [npolicy plans] or NULL */
	int status;                  /* rejection status, e.g. 403; 0: responses.rejected_status */
	struct sl_template *message; /* or NULL */
	unsigned line, col;          /* where it was declared */
	/* What an account override of this limit is compiled with
	 * (sl_policy_override): the algorithm its value field names
	 * (rate/quota/sliding/concurrency as enum sl_algo), and the
	 * tz_offset (s) and lease (ns) it was declared with. */
	uint8_t field_algo;
	int32_t tz_offset;
	int64_t lease;
};

enum sl_path_match {
	SL_PATH_ANY = 0,
	SL_PATH_EXACT,
	SL_PATH_PREFIX, /* "/x/" followed by "*": "/x/" and everything under it, and "/x" */
};

struct sl_route {
	char *name;
	char *method;       /* NULL: any */
	uint8_t path_match; /* enum sl_path_match */
	char *path;         /* exact path, or prefix without the '*' */
	size_t path_len;
	char *query_name; /* optional query match: name=value (value NULL: present) */
	char *query_value;
	uint64_t cost;           /* default 1 */
	struct sl_limit *limits; /* route limits, evaluated after global ones */
	size_t nlimits;
};

struct sl_account {
	char *name;
	unsigned plan; /* index into plans */
};

/* One API key, kept only as its SHA-256. */
struct sl_key_entry {
	uint8_t sha256[32];
	unsigned account; /* index into accounts */
};

struct sl_cidr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t bits;
	uint8_t addr[16];
};

enum sl_key_source_kind {
	SL_KEYSRC_HEADER = 1,
	SL_KEYSRC_BEARER,
	SL_KEYSRC_QUERY,
};

struct sl_key_source {
	uint8_t kind;
	char *name; /* header or query parameter name */
};

enum sl_listener_mode {
	SL_MODE_PROXY = 1,
	SL_MODE_CHECK,
};

struct sl_listener_conf {
	char *name;
	char *listen;   /* validated "IPv4:port" or "[IPv6]:port", port 1-65535 */
	uint8_t mode;   /* enum sl_listener_mode */
	char *upstream; /* "http[s]://host[:port][/]", "static", or NULL (check) */

	/* TLS (config-tls.c): `tls` cert/key paths and the context built from
	 * them (NULL: plain HTTP); `upstream_tls` and the context of an
	 * https:// upstream (else NULL) */
	struct sl_tls_server_conf tls;
	struct sl_tls_ctx *tls_ctx;
	struct sl_tls_client_conf up_tls;
	struct sl_tls_ctx *up_tls_ctx;
};

struct sl_header_tpl {
	char *name;
	struct sl_template *value;
};

struct sl_responses {
	bool preset_ietf;              /* RateLimit-Policy / RateLimit fields */
	bool preset_xratelimit;        /* X-RateLimit-Limit/Remaining/Reset, Retry-After; set by
	                                * the loader when `responses` gives neither preset
	                                * nor headers */
	struct sl_header_tpl *headers; /* on every decided response */
	size_t nheaders;
	int rejected_status; /* default 429 */
	struct sl_header_tpl *rejected_headers;
	size_t nrejected_headers;
	struct sl_template *rejected_body;     /* NULL: a default JSON body */
	char *rejected_content_type;           /* the loader fills "application/json" */
	struct sl_template *unauthorized_body; /* 401 body; NULL: default JSON */
	struct sl_template *suspended_body;    /* 403 of a suspended account; NULL: default */
	char *usage_path; /* gateway path answered with the caller's usage; NULL: off */
};

enum sl_store_kind {
	SL_STORE_MEMORY = 1,
	SL_STORE_REDIS,
};

/* store.on_full: a new key meets a memory store whose eviction candidates
 * all hold usage (docs/store-memory.md). */
enum sl_on_full {
	SL_ON_FULL_EVICT = 0, /* evict the one whose loss admits the least */
	SL_ON_FULL_DENY_NEW,  /* reject the new key's decision */
	SL_ON_FULL_ALLOW_NEW, /* admit it without keeping its state */
};

struct sl_store_conf {
	uint8_t type;              /* enum sl_store_kind */
	uint64_t memory;           /* bytes, memory store cap (default 64 MiB) */
	char *snapshot;            /* path or NULL; a relative one is made relative to
	                            * the config file's directory by the loader */
	int64_t snapshot_interval; /* ns between periodic snapshots, default
	                            * 1 s; 0 (`0`, `off`): on drain only */
	uint8_t on_full;           /* enum sl_on_full, memory only (default evict) */
	char *url;                 /* redis://host:port */
	bool cluster;
	bool on_error_deny; /* on_error: deny (default allow) */
	int64_t timeout;    /* ns, default 50 ms */
	unsigned pool;      /* connections per worker */
	bool local_cache;   /* over-limit cache */
	bool no_module;     /* store.module: false: the Lua library even where a
	                     * node has sluice's module (src/redismod) */
	uint8_t mode;       /* enum sl_redis_mode (store.mode, default exact) */
	int64_t sync;       /* ns between local mode's syncs, default 50 ms */
	uint32_t strict;    /* ppm, store.strict_below: local mode decides on
	                     * Redis when fewer remain (default 10%) */
};

enum sl_redis_mode {
	SL_REDIS_EXACT = 0, /* every decision on Redis */
	SL_REDIS_LOCAL,     /* node-local decisions, synced (docs/store-redis.md) */
};

enum sl_log_format {
	SL_LOG_TEXT = 0, /* key=value fields, one line per request */
	SL_LOG_JSON,     /* one JSON object per line */
};

#define SL_REDACT_MAX  16 /* access_log.redact_query names */
#define SL_REDACT_NAME 32 /* bytes per name incl. NUL */

struct sl_server_conf {
	unsigned workers;         /* 0: auto (cores); else 1..1024 */
	size_t max_header_bytes;  /* default 16 KiB; over: 431 */
	uint64_t max_body_bytes;  /* default 10 MiB; over: 413 */
	int64_t idle_timeout;     /* ns, default 60 s */
	int64_t header_timeout;   /* ns, default 10 s; over: 408 */
	int64_t upstream_timeout; /* ns, default 30 s; over: 504 */
	unsigned max_connections; /* per worker, default 10000 */
	int64_t drain_timeout;    /* ns, default 10 s */
	char *control_socket;     /* takeover socket (docs/daemon.md); NULL: derived */
	bool access_log;
	uint8_t access_log_format; /* enum sl_log_format */
	/* query parameters whose values the access log replaces by "redacted"
	 * (besides every query:NAME key source, always redacted) */
	char redact_query[SL_REDACT_MAX][SL_REDACT_NAME];
	unsigned nredact;
};

struct sl_admin_conf {
	char *listen;      /* default "127.0.0.1:9901"; NULL: no admin listener */
	char *token;       /* bearer token; required when listen is not loopback */
	int64_t lease_ttl; /* ns, default 60 s */
};

/* `usage:` (docs/usage.md): the per-account usage history. */
struct sl_usage_conf {
	bool enabled;           /* default true */
	char *path;             /* SQLite file; default usage.db beside the config */
	int64_t flush_interval; /* ns, default 10 s (100 ms .. 10 s) */
	uint64_t max_series;    /* (account, limit, minute) cells per worker buffer */
	int64_t keep_minutes;   /* ns, default 48 h */
	int64_t keep_hours;     /* ns, default 90 d */
	int64_t keep_days;      /* ns, default 2 years (730 d) */
	bool redis;             /* usage.store: redis (default sqlite) */
	char *redis_url;        /* with redis: the first of store.url, or localhost */
};

struct sl_identify_conf {
	struct sl_cidr *trusted; /* trusted_proxies */
	size_t ntrusted;
	struct sl_key_source *key_from;
	size_t nkey_from;
	bool key_required;   /* default true when any limit keys on key/account/plan
	                      * or is per-plan; key_from defaults to
	                      * [header:X-Api-Key, bearer] */
	uint8_t ipv6_prefix; /* bits of an IPv6 client address that make its
	                      * `ip` descriptor (ip.ipv6_prefix, 1..128; the
	                      * loader's default is 64; 0 reads as 128) */
};

/* `normalize` (docs/normalize.md): how the canonical form of a request is
 * compared, and whether it is what goes upstream. Zero is the default. */
struct sl_normalize_conf {
	bool case_sensitive; /* case: sensitive; default insensitive: route paths
	                      * and `path` keys compare letters case-blind */
	bool strict_slash;   /* trailing_slash: strict; default fold: "/x/" is "/x" */
	bool forward;        /* forward: canonical; default original: the proxy
	                      * forwards the client's bytes (but always a Host
	                      * from an absolute-form target, RFC 9112 3.2.2) */
};

enum sl_accounts_store_kind {
	SL_ACCOUNTS_NONE = 0, /* static accounts of identify.accounts only */
	SL_ACCOUNTS_SQLITE,
	SL_ACCOUNTS_REDIS,
};

/* `accounts:` (DESIGN.md section 6, config-accounts.c). */
#define SL_ACCOUNTS_COMPACT_AFTER 100000 /* journal entries (store: redis) */

struct sl_accounts_conf {
	uint8_t store;      /* enum sl_accounts_store_kind; absent section: none */
	char *path;         /* sqlite file, made relative to the config's directory */
	char *key_prefix;   /* generated keys start with it; default "sk_live_" */
	/* store: redis: the journal is compacted (a snapshot, then only its
	 * last tenth kept) once it holds this many entries; 0: never */
	uint64_t compact_after;
	unsigned line, col; /* where `accounts:` was declared, or 0 */
};

/* The live account store as evaluation sees it (policy.h); set by the
 * daemon on every policy before it is published, borrowed. */
struct sl_account_src;

struct sl_policy {
	char *path;           /* config file it was loaded from */
	uint64_t source_hash; /* XXH3-64 of the file's bytes as loaded (/metrics) */
	unsigned refs;        /* atomic */
	struct sl_server_conf server;
	struct sl_listener_conf *listeners;
	size_t nlisteners;
	struct sl_admin_conf admin;
	struct sl_store_conf store;
	struct sl_identify_conf identify;
	struct sl_plan *plans;
	size_t nplans;
	struct sl_account *accounts;
	size_t naccounts;
	struct sl_key_entry *keys; /* sorted by sha256 for bsearch */
	size_t nkeys;
	struct sl_limit *limits; /* global limits, evaluation order */
	size_t nlimits;
	struct sl_route *routes; /* first match wins */
	size_t nroutes;
	struct sl_responses responses;
	struct sl_normalize_conf normalize;
	struct sl_usage_conf usage;
	struct sl_accounts_conf account_store; /* `accounts:` */
	const struct sl_account_src *live;     /* NULL: no live account store */
};

#endif
