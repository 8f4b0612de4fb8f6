/* Config loader: reads one YAML file with libyaml's document API (which
 * keeps a line/column mark on every node) and compiles DESIGN.md section 4
 * into a struct sl_policy. The walk never stops at the first problem: every
 * error is recorded as "file:line:col: message" and the walk goes on, so a
 * user fixes a file in one round. Sections are visited in dependency order
 * (plans before accounts and limits, limits before the templates that name
 * them), not in file order. This file holds the walk and the small
 * sections (server, listeners, admin, store); identify/plans, limits/routes
 * and responses have files of their own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>
#include <xxhash.h>
#include <sluice/algo-t.h>
#include <sluice/error.h>
#include "policy/config-int.h"
#include "policy/listen.h"

#define MAX_CONFIG_BYTES (16u << 20) /* bytes; a config is text, not data */

static void add_redact(struct sl_server_conf *s, const char *name)
{
	size_t len = strlen(name);
	if (s->nredact >= SL_REDACT_MAX || len >= SL_REDACT_NAME)
		return;
	memcpy(s->redact_query[s->nredact++], name, len + 1);
}

/* server.access_log: true | false | { format: text|json, redact_query: [..] }.
 * The default redactions are the usual names API keys and tokens travel
 * under in query strings. */
static void access_log(struct cfg *c, const yaml_node_t *n, struct sl_server_conf *s)
{
	static const char *const keys[] = {"format", "redact_query", NULL};
	static const char *const dflt[] = {"key",          "api_key", "apikey", "token",
	                                   "access_token", "secret",  NULL};
	yaml_node_t *v[3];

	if (!cfg_is_map(n)) {
		cfg_bool(c, n, "server.access_log (true, false or a map)", &s->access_log);
		for (int i = 0; dflt[i]; i++)
			add_redact(s, dflt[i]);
		return;
	}
	if (!cfg_fields(c, n, "server.access_log", keys, v))
		return;
	s->access_log = true;
	if (v[0]) {
		const char *f = cfg_scalar(c, v[0], "server.access_log.format");
		if (f && strcmp(f, "text") == 0)
			s->access_log_format = SL_LOG_TEXT;
		else if (f && strcmp(f, "json") == 0)
			s->access_log_format = SL_LOG_JSON;
		else if (f)
			cfg_err(c, v[0],
			        "server.access_log.format: expected text or json, got '%s'", f);
	}
	if (!v[1]) {
		for (int i = 0; dflt[i]; i++)
			add_redact(s, dflt[i]);
		return;
	}
	if (!cfg_is_seq(v[1])) {
		cfg_err(c, v[1],
		        "server.access_log.redact_query: expected a list of query parameter "
		        "names");
		return;
	}
	for (yaml_node_item_t *it = v[1]->data.sequence.items.start;
	     it < v[1]->data.sequence.items.top; it++) {
		yaml_node_t *e = cfg_node(c, *it);
		const char *name =
		        e ? cfg_scalar(c, e, "server.access_log.redact_query entry") : NULL;
		if (!name)
			continue;
		if (!name[0] || strlen(name) >= SL_REDACT_NAME)
			cfg_err(c, e, "server.access_log.redact_query: a name of 1 to %d bytes",
			        SL_REDACT_NAME - 1);
		else if (s->nredact >= SL_REDACT_MAX)
			cfg_err(c, e, "server.access_log.redact_query: at most %d names",
			        SL_REDACT_MAX);
		else
			add_redact(s, name);
	}
}

void cfg_server(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"workers",
	                                   "max_header_bytes",
	                                   "max_body_bytes",
	                                   "idle_timeout",
	                                   "header_timeout",
	                                   "upstream_timeout",
	                                   "drain_timeout",
	                                   "max_connections",
	                                   "access_log",
	                                   "control_socket",
	                                   NULL};
	yaml_node_t *v[11];
	struct sl_server_conf *s = &c->p->server;
	if (!cfg_fields(c, n, "server", keys, v))
		return;
	if (v[0]) {
		const char *w = cfg_scalar(c, v[0], "server.workers");
		uint64_t u;
		if (w && strcmp(w, "auto") == 0)
			s->workers = 0;
		else if (w && cfg_uint(c, v[0], "server.workers (auto or a count)", 1, 1024, &u))
			s->workers = (unsigned)u;
	}
	uint64_t u;
	if (v[1] && cfg_size(c, v[1], "server.max_header_bytes", &u)) {
		if (u < 1024 || u > (1u << 20))
			cfg_err(c, v[1], "server.max_header_bytes must be between 1KB and 1MB");
		else
			s->max_header_bytes = (size_t)u;
	}
	if (v[2])
		cfg_size(c, v[2], "server.max_body_bytes", &s->max_body_bytes);
	int64_t *durs[] = {&s->idle_timeout, &s->header_timeout, &s->upstream_timeout,
	                   &s->drain_timeout};
	for (int i = 0; i < 4; i++) {
		char what[40];
		snprintf(what, sizeof(what), "server.%s", keys[3 + i]);
		if (v[3 + i] && cfg_duration(c, v[3 + i], what, durs[i]) && *durs[i] <= 0) {
			cfg_err(c, v[3 + i], "%s must be greater than zero", what);
		}
	}
	if (v[7] && cfg_uint(c, v[7], "server.max_connections", 1, 1000000, &u))
		s->max_connections = (unsigned)u;
	if (v[8])
		access_log(c, v[8], s);
	if (v[9])
		s->control_socket =
		        cfg_relative(c, v[9], cfg_strdup(c, v[9], "server.control_socket"));
}

/* A listen address the loader checks as the server will bind it
 * (policy/listen.h): a host name that does not resolve is refused here, at
 * its node, so `sluice validate` catches it. *loopback (may be NULL) tells
 * whether it resolved to a loopback address. */
static bool check_listen(struct cfg *c, const yaml_node_t *n, const char *s, const char *forms,
                         bool *loopback)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char why[160];
	int rc = sl_listen_resolve(s, &ss, &len, why, sizeof(why));

	if (rc == SL_ENOENT) {
		cfg_err(c, n, "listen address '%s': %s", s, why);
		return false;
	}
	if (rc < 0) {
		cfg_err(c, n, "bad listen address '%s': %s (expected %s)", s, why, forms);
		return false;
	}
	if (loopback)
		*loopback = sl_listen_is_loopback(&ss);
	return true;
}

/* "http[s]://host[:port][/]": a host name or IP literal; no path. */
static bool valid_upstream(const char *s)
{
	size_t scheme = strncmp(s, "http://", 7) == 0 ? 7 : strncmp(s, "https://", 8) == 0 ? 8 : 0;
	if (!scheme)
		return false;
	const char *h = s + scheme, *end = h + strlen(h);
	if (end > h && end[-1] == '/')
		end--;
	if (end == h)
		return false;
	const char *port = NULL;
	if (*h == '[') {
		const char *rb = memchr(h, ']', (size_t)(end - h));
		if (!rb || rb == h + 1)
			return false;
		if (rb + 1 < end) {
			if (rb[1] != ':')
				return false;
			port = rb + 2;
		}
	} else {
		for (const char *p = h; p < end; p++) {
			if (*p == ':') {
				port = p + 1;
				if (p == h)
					return false;
				break;
			}
			if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.' || *p == '_'))
				return false;
		}
	}
	if (port) {
		long v = 0;
		if (port == end)
			return false;
		for (const char *p = port; p < end; p++) {
			if (*p < '0' || *p > '9')
				return false;
			v = v * 10 + (*p - '0');
			if (v > 65535)
				return false;
		}
		if (v == 0)
			return false;
	}
	return true;
}

void cfg_listeners(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"name", "listen",       "mode", "upstream",
	                                   "tls",  "upstream_tls", NULL};
	if (!cfg_is_seq(n)) {
		cfg_err(c, n, "listeners must be a list of {name, listen, mode, upstream}");
		return;
	}
	size_t cnt = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
	struct sl_policy *p = c->p;
	p->listeners = calloc(cnt ? cnt : 1, sizeof(*p->listeners));
	if (!p->listeners) {
		cfg_err(c, n, "out of memory");
		return;
	}
	for (size_t i = 0; i < cnt; i++) {
		yaml_node_t *item = cfg_node(c, n->data.sequence.items.start[i]), *v[6];
		struct sl_listener_conf *l = &p->listeners[p->nlisteners++];
		if (!cfg_fields(c, item, "listener", keys, v))
			continue;
		if (!v[0])
			cfg_err(c, item, "listener: missing required key 'name'");
		else if (cfg_name(c, v[0], "listener name", &l->name)) {
			for (size_t j = 0; j + 1 < p->nlisteners; j++)
				if (p->listeners[j].name && !strcmp(p->listeners[j].name, l->name))
					cfg_err(c, v[0], "duplicate listener name '%s'", l->name);
		}
		if (!v[1])
			cfg_err(c, item, "listener: missing required key 'listen'");
		else if ((l->listen = cfg_strdup(c, v[1], "listen")))
			check_listen(c, v[1], l->listen,
			             "IPv4:PORT, [IPv6]:PORT or HOST:PORT, port 1-65535, e.g. "
			             "127.0.0.1:8080 or localhost:8080",
			             NULL);
		const char *mode = NULL;
		if (!v[2])
			cfg_err(c, item, "listener: missing required key 'mode' (proxy or check)");
		else if ((mode = cfg_scalar(c, v[2], "mode"))) {
			if (!strcmp(mode, "proxy"))
				l->mode = SL_MODE_PROXY;
			else if (!strcmp(mode, "check"))
				l->mode = SL_MODE_CHECK;
			else
				cfg_err(c, v[2], "unknown mode '%s' (expected proxy or check)",
				        mode);
		}
		if (v[3]) {
			if ((l->upstream = cfg_strdup(c, v[3], "upstream")) &&
			    strcmp(l->upstream, "static") != 0 && !valid_upstream(l->upstream))
				cfg_err(c, v[3],
				        "bad upstream '%s' (expected \"http://host:port\", "
				        "\"https://host:port\" or \"static\")",
				        l->upstream);
			if (l->mode == SL_MODE_CHECK)
				cfg_err(c, v[3], "upstream applies to mode: proxy only");
		} else if (l->mode == SL_MODE_PROXY) {
			cfg_err(c, item,
			        "listener: mode proxy needs 'upstream' (\"http://host:port\" or "
			        "\"static\")");
		}
		cfg_listener_tls(c, item, v[4], v[5], l); /* config-tls.c */
	}
}

void cfg_admin(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"listen", "token", "lease_ttl", NULL};
	yaml_node_t *v[3];
	struct sl_admin_conf *a = &c->p->admin;
	bool loopback = true; /* the default 127.0.0.1:9901 */
	if (!cfg_fields(c, n, "admin", keys, v))
		return;
	if (v[0]) {
		const char *s = cfg_scalar(c, v[0], "admin.listen");
		if (s && !strcmp(s, "off")) {
			free(a->listen);
			a->listen = NULL;
		} else if (s) {
			free(a->listen);
			a->listen = cfg_strdup(c, v[0], "admin.listen");
			if (a->listen &&
			    !check_listen(c, v[0], a->listen,
			                  "IPv4:PORT, [IPv6]:PORT, HOST:PORT or off", &loopback))
				loopback = true; /* already refused: no second error */
		}
	}
	if (v[1])
		a->token = cfg_strdup(c, v[1], "admin.token");
	if (a->listen && !a->token && !loopback)
		cfg_err(c, v[0], "admin.listen is not loopback: set admin.token");
	if (v[2] && cfg_duration(c, v[2], "admin.lease_ttl", &a->lease_ttl) && a->lease_ttl <= 0)
		cfg_err(c, v[2], "admin.lease_ttl must be greater than zero");
}

#define SNAPSHOT_INTERVAL_MIN (10 * 1000000LL) /* ns */

/* `path` (owned, may be NULL) made relative to the directory of the config
 * file when it is relative (DESIGN §8): "state.snap" in /etc/sluice.yaml is
 * /etc/state.snap, whatever the working directory. */
char *cfg_relative(struct cfg *c, const yaml_node_t *n, char *path)
{
	const char *slash = strrchr(c->path, '/');

	if (!path || path[0] == '/' || !slash)
		return path;
	size_t dir = (size_t)(slash - c->path) + 1, len = strlen(path);
	char *out = malloc(dir + len + 1);
	if (!out) {
		cfg_err(c, n, "out of memory");
		free(path);
		return NULL;
	}
	memcpy(out, c->path, dir);
	memcpy(out + dir, path, len + 1);
	free(path);
	return out;
}

/* store.mode, sync, strict_below (docs/store-redis.md). */
static void cfg_store_redis_mode(struct cfg *c, yaml_node_t *mode, yaml_node_t *sync,
                                 yaml_node_t *strict, struct sl_store_conf *s)
{
	if (mode) {
		const char *m = cfg_scalar(c, mode, "store.mode");

		if (m && !strcmp(m, "exact"))
			s->mode = SL_REDIS_EXACT;
		else if (m && !strcmp(m, "local"))
			s->mode = SL_REDIS_LOCAL;
		else if (m)
			cfg_err(c, mode, "store.mode must be exact or local, not '%s'", m);
	}
	if (sync && cfg_duration(c, sync, "store.sync", &s->sync) &&
	    (s->sync < 1000000 || s->sync > 60 * SL_NS_PER_SEC))
		cfg_err(c, sync, "store.sync must be between 1ms and 60s");
	if (strict) {
		const char *t = cfg_scalar(c, strict, "store.strict_below");
		char *end = NULL;
		double pct = t ? strtod(t, &end) : -1;

		if (t && (end == t || !end || strcmp(end, "%") != 0 || !(pct >= 0 && pct <= 100)))
			cfg_err(c, strict,
			        "store.strict_below must be a percentage from 0%% to 100%%, not "
			        "'%s'",
			        t);
		else if (t)
			s->strict = (uint32_t)(pct * 10000.0 + 0.5);
	}
	if ((sync || strict) && s->mode != SL_REDIS_LOCAL)
		cfg_err(c, sync ? sync : strict, "store.%s applies to mode: local only",
		        sync ? "sync" : "strict_below");
	if (s->mode == SL_REDIS_LOCAL && s->cluster)
		cfg_err(c, mode, "store.mode: local needs a single Redis (cluster: false)");
}

void cfg_store(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {
	        "type",     "memory",  "snapshot", "url",          "cluster",
	        "on_error", "timeout", "pool",     "local_cache",  "snapshot_interval",
	        "on_full",  "mode",    "sync",     "strict_below", "module",
	        NULL};
	yaml_node_t *v[16];
	struct sl_store_conf *s = &c->p->store;
	if (!cfg_fields(c, n, "store", keys, v))
		return;
	if (v[0]) {
		const char *t = cfg_scalar(c, v[0], "store.type");
		if (t && !strcmp(t, "memory"))
			s->type = SL_STORE_MEMORY;
		else if (t && !strcmp(t, "redis"))
			s->type = SL_STORE_REDIS;
		else if (t)
			cfg_err(c, v[0], "unknown store.type '%s' (expected memory or redis)", t);
	}
	/* keys that belong to the other type */
	static const int memory_only[] = {1, 2, 9, 10},
	                 redis_only[] = {3, 4, 5, 6, 7, 8, 11, 12, 13, 14};
	if (s->type == SL_STORE_MEMORY)
		for (size_t i = 0; i < sizeof(redis_only) / sizeof(redis_only[0]); i++)
			if (v[redis_only[i]])
				cfg_err(c, v[redis_only[i]], "store.%s applies to type: redis only",
				        keys[redis_only[i]]);
	if (s->type == SL_STORE_REDIS)
		for (size_t i = 0; i < sizeof(memory_only) / sizeof(memory_only[0]); i++)
			if (v[memory_only[i]])
				cfg_err(c, v[memory_only[i]],
				        "store.%s applies to type: memory only",
				        keys[memory_only[i]]);
	if (v[1] && cfg_size(c, v[1], "store.memory", &s->memory) && s->memory < (1u << 20))
		cfg_err(c, v[1], "store.memory must be at least 1MB");
	if (v[2])
		s->snapshot = cfg_relative(c, v[2], cfg_strdup(c, v[2], "store.snapshot"));
	if (v[9]) {
		const char *t = cfg_scalar(c, v[9], "store.snapshot_interval");
		if (t && !strcmp(t, "off"))
			s->snapshot_interval = 0;
		else if (t &&
		         cfg_duration(c, v[9], "store.snapshot_interval", &s->snapshot_interval) &&
		         s->snapshot_interval != 0 && s->snapshot_interval < SNAPSHOT_INTERVAL_MIN)
			cfg_err(c, v[9],
			        "store.snapshot_interval must be at least 10ms, or 0 or off");
	}
	if (v[3]) {
		s->url = cfg_strdup(c, v[3], "store.url");
		if (s->url && strncmp(s->url, "redis://", 8) != 0)
			cfg_err(c, v[3], "store.url must start with redis://, not '%s'", s->url);
	} else if (s->type == SL_STORE_REDIS) {
		cfg_err(c, n, "store: type redis needs 'url' (redis://host:port)");
	}
	if (v[4])
		cfg_bool(c, v[4], "store.cluster", &s->cluster);
	if (v[5]) {
		const char *e = cfg_scalar(c, v[5], "store.on_error");
		if (e && !strcmp(e, "deny"))
			s->on_error_deny = true;
		else if (e && strcmp(e, "allow") != 0)
			cfg_err(c, v[5], "store.on_error must be allow or deny, not '%s'", e);
	}
	if (v[6] && cfg_duration(c, v[6], "store.timeout", &s->timeout) && s->timeout <= 0)
		cfg_err(c, v[6], "store.timeout must be greater than zero");
	uint64_t u;
	if (v[7] && cfg_uint(c, v[7], "store.pool", 1, 256, &u))
		s->pool = (unsigned)u;
	if (v[8])
		cfg_bool(c, v[8], "store.local_cache", &s->local_cache);
	if (v[14]) {
		bool use = true;
		if (cfg_bool(c, v[14], "store.module", &use))
			s->no_module = !use;
	}
	if (v[10]) {
		const char *f = cfg_scalar(c, v[10], "store.on_full");
		if (f && !strcmp(f, "evict"))
			s->on_full = SL_ON_FULL_EVICT;
		else if (f && !strcmp(f, "deny_new"))
			s->on_full = SL_ON_FULL_DENY_NEW;
		else if (f && !strcmp(f, "allow_new"))
			s->on_full = SL_ON_FULL_ALLOW_NEW;
		else if (f)
			cfg_err(c, v[10],
			        "store.on_full must be evict, deny_new or allow_new, not '%s'", f);
	}
	cfg_store_redis_mode(c, v[11], v[12], v[13], s);
}

static void defaults(struct sl_policy *p)
{
	p->server.max_header_bytes = 16 << 10;
	p->server.max_body_bytes = 10 << 20;
	p->server.idle_timeout = 60 * SL_NS_PER_SEC;
	p->server.header_timeout = 10 * SL_NS_PER_SEC;
	p->server.upstream_timeout = 30 * SL_NS_PER_SEC;
	p->server.drain_timeout = 10 * SL_NS_PER_SEC;
	p->server.max_connections = 10000;
	p->admin.lease_ttl = 60 * SL_NS_PER_SEC;
	p->identify.ipv6_prefix = 64;
	p->store.type = SL_STORE_MEMORY;
	p->store.memory = 64 << 20;
	p->store.snapshot_interval = SL_NS_PER_SEC;
	p->store.timeout = 50 * 1000000LL;
	p->store.pool = 4;
	p->store.sync = 50 * 1000000LL;
	p->store.strict = 100000; /* 10% */
	p->responses.rejected_status = 429;
}

static bool has_concurrency(const struct sl_limit *l, size_t nplans)
{
	if (l->spec.algo == SL_ALGO_CONCURRENCY)
		return true;
	for (size_t i = 0; l->plan_spec && i < nplans; i++)
		if (l->plan_spec[i].algo == SL_ALGO_CONCURRENCY)
			return true;
	return false;
}

static void warn_unreleased(struct cfg *c, const struct sl_limit *l, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (l[i].name && has_concurrency(&l[i], c->p->nplans))
			cfg_warn_at(c, l[i].line, l[i].col,
			            "concurrency limit '%s' is reached only through check "
			            "listeners, which never see the response: its slots free "
			            "only when their lease lapses",
			            l[i].name);
}

/* A check listener cannot release the slots it takes (docs/policy.md): say
 * so for every concurrency limit when no proxy listener could. */
static void warn_check_only_concurrency(struct cfg *c)
{
	const struct sl_policy *p = c->p;

	if (p->nlisteners == 0)
		return;
	for (size_t i = 0; i < p->nlisteners; i++)
		if (p->listeners[i].mode != SL_MODE_CHECK)
			return;
	warn_unreleased(c, p->limits, p->nlimits);
	for (size_t r = 0; r < p->nroutes; r++)
		warn_unreleased(c, p->routes[r].limits, p->routes[r].nlimits);
}

static void walk(struct cfg *c, yaml_node_t *root)
{
	static const char *const keys[] = {
	        "server", "listeners", "admin",     "store", "identify", "plans", "limits",
	        "routes", "responses", "normalize", "usage", "accounts", NULL};
	yaml_node_t *v[12];
	if (!cfg_fields(c, root, "the top level", keys, v))
		return;
	if (v[0])
		cfg_server(c, v[0]);
	if (v[1])
		cfg_listeners(c, v[1]);
	if (v[2] && !cfg_is_null(v[2]))
		cfg_admin(c, v[2]);
	if (v[3])
		cfg_store(c, v[3]);
	if (v[5] && !cfg_is_null(v[5]))
		cfg_plans(c, v[5]);
	cfg_identify(c, v[4]); /* also when absent: key defaults */
	if (v[6] && !cfg_is_null(v[6]))
		cfg_limits(c, v[6], &c->p->limits, &c->p->nlimits);
	if (v[9] && !cfg_is_null(v[9]))
		cfg_normalize(c, v[9]); /* before routes: their paths are made canonical */
	if (v[7] && !cfg_is_null(v[7]))
		cfg_routes(c, v[7]);
	cfg_identify_finish(c);
	if (v[8] && !cfg_is_null(v[8]))
		cfg_responses(c, v[8]);
	else
		c->p->responses.preset_xratelimit = true;
	cfg_resolve_templates(c);
	warn_check_only_concurrency(c);
	if (v[11])
		cfg_accounts(c, v[11]); /* before usage: its history follows accounts.store */
	cfg_usage(c, v[10] && !cfg_is_null(v[10]) ? v[10] : NULL); /* also when absent: path */
	cfg_warn_plan_maps(c);
}

static char *read_file(const char *path, size_t *len, struct cfg *c)
{
	FILE *f = fopen(path, "rb");
	if (!f) {
		cfg_err_at(c, 1, 1, "cannot open: %s", strerror(errno));
		return NULL;
	}
	size_t cap = 8192, n = 0;
	char *buf = malloc(cap);
	while (buf) {
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
		if (n == cap) {
			if (cap >= MAX_CONFIG_BYTES) {
				cfg_err_at(c, 1, 1, "file larger than %u bytes", MAX_CONFIG_BYTES);
				free(buf);
				buf = NULL;
				break;
			}
			char *nb = realloc(buf, cap * 2);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap *= 2;
		}
	}
	if (!buf && c->nerr == 0)
		cfg_err_at(c, 1, 1, "out of memory");
	else if (buf && ferror(f)) {
		cfg_err_at(c, 1, 1, "read error: %s", strerror(errno));
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* Wipe every scalar in the document: API keys are plaintext in there. */
static void wipe_document(yaml_document_t *doc)
{
	for (yaml_node_t *n = doc->nodes.start; n && n < doc->nodes.top; n++)
		if (n->type == YAML_SCALAR_NODE)
			OPENSSL_cleanse(n->data.scalar.value, n->data.scalar.length);
}

/* The load itself over src (srclen bytes, NULL when reading failed with
 * the error already recorded), which it wipes and frees. */
static int load(struct cfg *c, char *src, struct sl_policy **out)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	bool have_doc = false;

	if (!src || !c->p->path)
		goto done;
	c->src = src;
	c->p->source_hash = XXH3_64bits(src, c->srclen);
	if (!yaml_parser_initialize(&parser)) {
		cfg_err_at(c, 1, 1, "out of memory");
		goto done;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)src, c->srclen);
	if (!yaml_parser_load(&parser, &doc)) {
		cfg_err_at(c, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		           "YAML syntax error: %s%s%s", parser.problem ? parser.problem : "invalid",
		           parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		goto done;
	}
	have_doc = true;
	c->doc = &doc;
	yaml_node_t *root = yaml_document_get_root_node(&doc);
	if (!root) {
		cfg_err_at(c, 1, 1, "empty config");
	} else {
		yaml_document_t next;
		if (yaml_parser_load(&parser, &next)) {
			yaml_node_t *r2 = yaml_document_get_root_node(&next);
			if (r2)
				cfg_err(c, r2, "a config holds one YAML document; remove this one");
			wipe_document(&next);
			yaml_document_delete(&next);
		} else {
			cfg_err_at(c, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
			           "YAML syntax error: %s%s%s",
			           parser.problem ? parser.problem : "invalid",
			           parser.context ? " " : "", parser.context ? parser.context : "");
		}
		walk(c, root);
	}
	yaml_parser_delete(&parser);
done:
	if (have_doc) {
		wipe_document(&doc);
		yaml_document_delete(&doc);
	}
	if (src) {
		OPENSSL_cleanse(src, c->srclen);
		free(src);
	}
	free(c->tpls);
	cfg_sort_diag(c);
	if (c->nerr) {
		sl_policy_free(c->p);
		return SL_ECONFIG;
	}
	*out = c->p;
	return 0;
}

/* A fresh policy with the defaults in c->p, or false (error recorded). */
static bool start(struct cfg *c, const char *path, struct sl_policy **out, struct sl_diag *diag)
{
	*out = NULL;
	if (diag)
		diag->n = diag->nwarn = 0;
	c->p = calloc(1, sizeof(*c->p));
	if (!c->p) {
		cfg_err_at(c, 1, 1, "out of memory");
		return false;
	}
	c->p->refs = 1;
	defaults(c->p);
	c->p->path = strdup(path);
	c->p->admin.listen = strdup("127.0.0.1:9901"); /* admin.listen default */
	c->p->responses.rejected_content_type = strdup("application/json");
	if (!c->p->path || !c->p->admin.listen || !c->p->responses.rejected_content_type)
		cfg_err_at(c, 1, 1, "out of memory");
	return true;
}

int sl_policy_load(const char *path, struct sl_policy **out, struct sl_diag *diag)
{
	struct cfg c = {.path = path, .diag = diag};

	if (!start(&c, path, out, diag))
		return SL_ECONFIG;
	return load(&c, read_file(path, &c.srclen, &c), out);
}

int sl_policy_load_mem(const char *name, const char *text, size_t len, struct sl_policy **out,
                       struct sl_diag *diag)
{
	struct cfg c = {.path = name, .diag = diag};
	char *src;

	if (!start(&c, name, out, diag))
		return SL_ECONFIG;
	if (len > MAX_CONFIG_BYTES) {
		cfg_err_at(&c, 1, 1, "file larger than %u bytes", MAX_CONFIG_BYTES);
		src = NULL;
	} else if ((src = malloc(len ? len : 1)) == NULL) {
		cfg_err_at(&c, 1, 1, "out of memory");
	} else {
		memcpy(src, text, len);
		c.srclen = len;
	}
	return load(&c, src, out);
}
