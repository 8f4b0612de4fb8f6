/* Response templates: "{var}" strings compiled once at load time into
 * literal and variable segments, rendered per request into a caller's
 * buffer with no allocation. Values rendered into JSON bodies are
 * JSON-escaped; header values containing CR or LF are refused. */
#ifndef SLUICE_TEMPLATE_H
#define SLUICE_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>

enum sl_tpl_var {
	SL_TPL_LIMIT = 1,
	SL_TPL_REMAINING,
	SL_TPL_RESET,
	SL_TPL_RESET_AFTER,
	SL_TPL_RETRY_AFTER,
	SL_TPL_WINDOW,
	SL_TPL_WINDOW_SECONDS,
	SL_TPL_DENIED_BY,
	SL_TPL_PLAN,
	SL_TPL_PLAN_TITLE,
	SL_TPL_ACCOUNT,
	SL_TPL_MESSAGE,
	SL_TPL_NAMED, /* {limits.NAME.limit|remaining|reset} */
};

/* One variable reference in a template. */
struct sl_tpl_ref {
	unsigned var;         /* enum sl_tpl_var */
	unsigned field;       /* SL_TPL_NAMED: SL_TPL_LIMIT, _REMAINING or _RESET */
	const char *name;     /* SL_TPL_NAMED: the limit name (NUL-terminated) */
	unsigned limit_index; /* SL_TPL_NAMED: resolved by the loader to the
	                       * named limit's sl_limit.index (global limits
	                       * first, then route limits in route order) */
	unsigned offset;      /* bytes into the source where the '{' is */
};

struct sl_template;

/* Syntax: "{name}" is a variable when name is a known variable; "{{" is a
 * literal '{' (and "{{name}}" the literal text "{name}"). Any other '{' or
 * '}' is literal, so JSON bodies such as {"a":{"b":{limit}}} need no
 * escaping. An identifier in braces that is not a known variable is an
 * error.
 *
 * Compile src. On error returns NULL and writes a message and the 0-based
 * byte offset of the problem into err/err_off (e.g. unknown variable).
 * Named-limit references are left for the loader to resolve through
 * sl_template_refs(). */
struct sl_template *sl_template_compile(const char *src, char *err, size_t errcap, size_t *err_off);
void sl_template_free(struct sl_template *t);

/* The variable references of t, for the loader to check and resolve. */
struct sl_tpl_ref *sl_template_refs(struct sl_template *t, size_t *n);

/* Resolve one reference: write its value (unescaped) into buf (cap bytes)
 * and return its length, or -1 when it does not resolve here. */
typedef long (*sl_tpl_resolve_fn)(void *arg, const struct sl_tpl_ref *ref, char *buf, size_t cap);

enum sl_tpl_mode {
	SL_TPL_TEXT = 0,   /* as is */
	SL_TPL_JSON = 1,   /* values JSON-escaped; no value: null ("{v}" too) */
	SL_TPL_HEADER = 2, /* values with CR or LF make the render fail */
};

/* Render t into out (cap bytes, not NUL-terminated). Returns the length,
 * or -1 when a variable does not resolve (TEXT, HEADER), a header value
 * holds CR/LF, or the output does not fit. In JSON mode a variable without
 * a value renders as null, and a quoted "{var}" as a bare null, so a body
 * keeps its shape and stays valid JSON. */
long sl_template_render(const struct sl_template *t, unsigned mode, sl_tpl_resolve_fn resolve,
                        void *arg, char *out, size_t cap);

#endif
