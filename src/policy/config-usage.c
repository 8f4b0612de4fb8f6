/* The `usage:` section (docs/usage.md): where the per-account usage history
 * is kept and for how long. Every key is optional; absent, the history is
 * on, in usage.db beside the config file, flushed every 10 s, minutes kept
 * 48 h, hours 90 days, days 2 years. A relative path is relative to the
 * config file's directory, like every other file the config names.
 * `store: redis` keeps the history in the store's Redis (the first address
 * of store.url), shared by every node that uses it. */
#include <stdlib.h>
#include <string.h>
#include <sluice/algo-t.h>
#include "policy/config-int.h"

#define FLUSH_MIN       (100 * 1000000LL)       /* ns */
#define FLUSH_MAX       (10 * SL_NS_PER_SEC)    /* ns: a crash loses at most this */
#define MINUTE_NS       (60 * SL_NS_PER_SEC)    /* ns */
#define HOUR_NS         (3600 * SL_NS_PER_SEC)  /* ns */
#define DAY_NS          (86400 * SL_NS_PER_SEC) /* ns */
#define MAX_SERIES_MIN  64                      /* cells per worker buffer */
#define MAX_SERIES_MAX  (1u << 22)              /* cells: 4 Mi, ~700 MiB per worker */
#define MAX_SERIES_DFLT 16384                   /* cells: ~2.7 MiB per buffer */
#define KEEP_LIMIT_NS   (100LL * 365 * DAY_NS)  /* ns: a century */

static void keep(struct cfg *c, const yaml_node_t *n, const char *what, int64_t unit, int64_t *out)
{
	int64_t v;

	if (n == NULL || !cfg_duration(c, n, what, &v))
		return;
	if (v < unit || v > KEEP_LIMIT_NS) {
		cfg_err(c, n, "%s must be between %s and 100 years", what,
		        unit == MINUTE_NS ? "1m"
		        : unit == HOUR_NS ? "1h"
		                          : "1d");
		return;
	}
	*out = v;
}

static void retention(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"minutes", "hours", "days", NULL};
	struct sl_usage_conf *u = &c->p->usage;
	yaml_node_t *v[3];

	if (!cfg_fields(c, n, "usage.retention", keys, v))
		return;
	keep(c, v[0], "usage.retention.minutes", MINUTE_NS, &u->keep_minutes);
	keep(c, v[1], "usage.retention.hours", HOUR_NS, &u->keep_hours);
	keep(c, v[2], "usage.retention.days", DAY_NS, &u->keep_days);
}

void cfg_usage(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {
	        "enabled", "path", "flush_interval", "max_series", "retention", "store", NULL};
	struct sl_usage_conf *u = &c->p->usage;
	yaml_node_t *v[6] = {NULL};
	const yaml_node_t *pathnode = n;

	u->enabled = true;
	u->flush_interval = FLUSH_MAX;
	u->max_series = MAX_SERIES_DFLT;
	u->keep_minutes = 48 * HOUR_NS;
	u->keep_hours = 90 * DAY_NS;
	u->keep_days = 730 * DAY_NS;
	if (n != NULL && cfg_fields(c, n, "usage", keys, v)) {
		if (v[0])
			cfg_bool(c, v[0], "usage.enabled", &u->enabled);
		if (v[1]) {
			u->path = cfg_strdup(c, v[1], "usage.path");
			pathnode = v[1];
		}
		if (v[2] && cfg_duration(c, v[2], "usage.flush_interval", &u->flush_interval) &&
		    (u->flush_interval < FLUSH_MIN || u->flush_interval > FLUSH_MAX))
			cfg_err(c, v[2], "usage.flush_interval must be between 100ms and 10s");
		if (v[3])
			cfg_uint(c, v[3], "usage.max_series", MAX_SERIES_MIN, MAX_SERIES_MAX,
			         &u->max_series);
		if (v[4] && !cfg_is_null(v[4]))
			retention(c, v[4]);
		if (v[5]) {
			const char *s = cfg_scalar(c, v[5], "usage.store");
			if (s && strcmp(s, "redis") == 0 && c->p->store.type != SL_STORE_REDIS)
				cfg_err(c, v[5],
				        "usage.store: redis keeps the history in the store's "
				        "Redis: it "
				        "needs store.type: redis");
			else if (s && strcmp(s, "redis") == 0)
				u->redis = true;
			else if (s && strcmp(s, "sqlite") != 0)
				cfg_err(c, v[5], "usage.store must be sqlite or redis, not '%s'",
				        s);
		}
	}
	if (v[5] == NULL && c->p->account_store.store == SL_ACCOUNTS_REDIS)
		u->redis = true; /* with the accounts: any node answers for the fleet (DESIGN 7) */
	if (u->redis) {
		/* the store's Redis: its first seed (DESIGN 7) */
		const char *url = c->p->store.url ? c->p->store.url : "redis://127.0.0.1:6379";
		u->redis_url = strndup(url, strcspn(url, ","));
		if (u->redis_url == NULL)
			cfg_err(c, v[5], "out of memory");
	}
	if (u->keep_hours < u->keep_minutes || u->keep_days < u->keep_hours)
		cfg_err(c, v[4] ? v[4] : n,
		        "usage.retention: hours must be kept at least as long as minutes, and "
		        "days at least as long as hours");
	if (u->path == NULL)
		u->path = strdup("usage.db");
	if (u->path == NULL) {
		cfg_err(c, n, "out of memory");
		return;
	}
	u->path = cfg_relative(c, pathnode, u->path);
}
