/* Private to the loader (config*.c): the state of one load and the helpers
 * that read typed values out of libyaml document nodes. Every helper that
 * refuses a value records a "file:line:col: message" diagnostic at the
 * offending node and lets the walk continue, so one run reports every
 * error of the file. */
#ifndef SLUICE_POLICY_CONFIG_INT_H
#define SLUICE_POLICY_CONFIG_INT_H

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>
#include "policy/policy.h"
#include "policy/template.h"

/* A template whose named-limit references are resolved once every limit is
 * known (templates may name limits declared later). */
struct cfg_tpl {
	struct sl_template *t;
	const yaml_node_t *node; /* the scalar it came from, for positions */
	bool in_message;         /* a limit message: {message} is refused */
};

struct cfg {
	const char *path;
	const char *src; /* the file's bytes (for positions inside scalars) */
	size_t srclen;
	yaml_document_t *doc;
	struct sl_diag *diag;
	size_t nerr;
	size_t pos[SL_DIAG_MAX][2]; /* line, col of each diag message, for sorting */
	struct sl_policy *p;
	bool key_required_set;     /* identify.key.required was given */
	unsigned next_limit_index; /* sl_limit.index across globals and routes */
	struct cfg_tpl *tpls;
	size_t ntpls, captpls;
};

/* Record an error at node n (NULL: line 1, column 1). */
void cfg_err(struct cfg *c, const yaml_node_t *n, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
void cfg_err_at(struct cfg *c, size_t line, size_t col, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Record a warning ("warning: " is prepended): reported, never fatal. */
void cfg_warn_at(struct cfg *c, size_t line, size_t col, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* Order the diagnostics by line and column (they are found out of order). */
void cfg_sort_diag(struct cfg *c);

yaml_node_t *cfg_node(struct cfg *c, int id);
bool cfg_is_map(const yaml_node_t *n);
bool cfg_is_seq(const yaml_node_t *n);
bool cfg_is_null(const yaml_node_t *n); /* plain "", "~" or "null" */

/* Split mapping n (named `what` in messages) into its values by key: out[i]
 * is the value of allowed[i] or NULL. Unknown and duplicate keys are
 * reported (listing the expected ones). allowed ends with NULL. Returns
 * false (with an error) when n is not a mapping. */
bool cfg_fields(struct cfg *c, const yaml_node_t *n, const char *what, const char *const *allowed,
                yaml_node_t **out);

/* The scalar text of n, or NULL with an error when n is not a non-empty
 * scalar. */
const char *cfg_scalar(struct cfg *c, const yaml_node_t *n, const char *what);
/* strdup of cfg_scalar (NULL on error or no memory, reported). */
char *cfg_strdup(struct cfg *c, const yaml_node_t *n, const char *what);
bool cfg_bool(struct cfg *c, const yaml_node_t *n, const char *what, bool *out);
bool cfg_uint(struct cfg *c, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
              uint64_t *out);
bool cfg_duration(struct cfg *c, const yaml_node_t *n, const char *what, int64_t *out);
bool cfg_size(struct cfg *c, const yaml_node_t *n, const char *what, uint64_t *out);
/* Names of plans, limits, routes, listeners: [A-Za-z0-9_-]+. */
bool cfg_name(struct cfg *c, const yaml_node_t *n, const char *what, char **out);
/* s is a non-empty RFC 9110 token (header and parameter names). */
bool cfg_http_token(const char *s);

/* Compile a template scalar; on error reports at the byte offset inside
 * the scalar. Queued for named-limit resolution. */
struct sl_template *cfg_template(struct cfg *c, const yaml_node_t *n, const char *what,
                                 bool in_message);
/* Report an error at byte `off` of scalar n's value. */
void cfg_err_in_scalar(struct cfg *c, const yaml_node_t *n, size_t off, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));

/* `path` (owned, may be NULL) made relative to the config file's
 * directory when it is relative; NULL (reported) when out of memory. */
char *cfg_relative(struct cfg *c, const yaml_node_t *n, char *path);

/* config-tls.c: a listener's `tls` (tls, may be NULL) and `upstream_tls`
 * (up, may be NULL) under listener node item, after its upstream is
 * known; builds the contexts. cfg_tls_free undoes it. */
void cfg_listener_tls(struct cfg *c, const yaml_node_t *item, const yaml_node_t *tls,
                      const yaml_node_t *up, struct sl_listener_conf *l);
void cfg_tls_free(struct sl_listener_conf *l);

/* Plan index by name, or -1. */
int cfg_plan_index(const struct sl_policy *p, const char *name);

/* Sections (config-*.c). */
void cfg_server(struct cfg *c, const yaml_node_t *n);
void cfg_listeners(struct cfg *c, const yaml_node_t *n);
void cfg_admin(struct cfg *c, const yaml_node_t *n);
void cfg_store(struct cfg *c, const yaml_node_t *n);
void cfg_plans(struct cfg *c, const yaml_node_t *n);
void cfg_identify(struct cfg *c, const yaml_node_t *n); /* n may be NULL */
/* After limits and routes: defaults that depend on them (key.required). */
void cfg_identify_finish(struct cfg *c);
void cfg_limits(struct cfg *c, const yaml_node_t *n, struct sl_limit **out, size_t *nout);
void cfg_routes(struct cfg *c, const yaml_node_t *n); /* after cfg_normalize */
void cfg_normalize(struct cfg *c, const yaml_node_t *n);
void cfg_responses(struct cfg *c, const yaml_node_t *n);
void cfg_usage(struct cfg *c, const yaml_node_t *n); /* n may be NULL: the defaults */
/* After every limit is known: resolve {limits.NAME.*} in queued templates. */
void cfg_resolve_templates(struct cfg *c);

/* config-limits.c: the counter id of limit l with spec s (DESIGN.md 8) */
uint64_t cfg_limit_id(const struct sl_limit *l, const struct sl_limit_spec *s);
/* Compile node n (a value or a {rate|quota|sliding|concurrency, burst,
 * queue} map) as an override of l into *out; false with an error. */
bool cfg_override_spec(struct cfg *c, const struct sl_limit *l, yaml_node_t *n,
                       struct sl_limit_spec *out);
/* Warn of per-plan maps that leave out a plan other maps list. */
void cfg_warn_plan_maps(struct cfg *c);
void cfg_accounts(struct cfg *c, const yaml_node_t *n);

/* policy.c */
void sl_policy_free(struct sl_policy *p);

#endif
