/* Typed readers over libyaml document nodes for the loader, and the
 * diagnostics they produce. Positions are libyaml marks made 1-based; for
 * an error inside a template the byte offset is mapped back to the source
 * (quotes, escapes and block-scalar indentation accounted for), so the
 * column points at the offending '{'. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "policy/config-int.h"
#include "policy/units.h"

static void vreport(struct cfg *c, bool warn, size_t line, size_t col, const char *fmt, va_list ap)
{
	struct sl_diag *d = c->diag;
	if (!warn)
		c->nerr++;
	if (!d)
		return;
	if (d->n >= SL_DIAG_MAX)
		return;
	c->pos[d->n][0] = line;
	c->pos[d->n][1] = col;
	if (d->n == SL_DIAG_MAX - 1) {
		c->pos[d->n][0] = (size_t)-1; /* stays last */
		snprintf(d->msg[d->n++], sizeof(d->msg[0]),
		         "%s:%zu:%zu: too many errors, stopping here", c->path, line, col);
		return;
	}
	char *m = d->msg[d->n++];
	int k = snprintf(m, sizeof(d->msg[0]), "%s:%zu:%zu: %s", c->path, line, col,
	                 warn ? "warning: " : "");
	d->nwarn += warn;
	if (k >= 0 && (size_t)k < sizeof(d->msg[0]))
		vsnprintf(m + k, sizeof(d->msg[0]) - (size_t)k, fmt, ap);
}

void cfg_sort_diag(struct cfg *c)
{
	struct sl_diag *d = c->diag;
	if (!d)
		return;
	/* insertion sort by position; at most SL_DIAG_MAX entries, stable */
	for (size_t i = 1; i < d->n; i++) {
		char m[sizeof(d->msg[0])];
		size_t l = c->pos[i][0], col = c->pos[i][1], j = i;
		memcpy(m, d->msg[i], sizeof(m));
		while (j > 0 && (c->pos[j - 1][0] > l ||
		                 (c->pos[j - 1][0] == l && c->pos[j - 1][1] > col))) {
			memcpy(d->msg[j], d->msg[j - 1], sizeof(m));
			c->pos[j][0] = c->pos[j - 1][0];
			c->pos[j][1] = c->pos[j - 1][1];
			j--;
		}
		memcpy(d->msg[j], m, sizeof(m));
		c->pos[j][0] = l;
		c->pos[j][1] = col;
	}
}

void cfg_err_at(struct cfg *c, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(c, false, line, col, fmt, ap);
	va_end(ap);
}

void cfg_warn_at(struct cfg *c, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(c, true, line, col, fmt, ap);
	va_end(ap);
}

void cfg_err(struct cfg *c, const yaml_node_t *n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	size_t line = n ? n->start_mark.line + 1 : 1, col = n ? n->start_mark.column + 1 : 1;
	vreport(c, false, line, col, fmt, ap);
	va_end(ap);
}

/* Map byte `off` of scalar n's value to a 1-based source line and column. */
static void scalar_pos(struct cfg *c, const yaml_node_t *n, size_t off, size_t *line, size_t *col)
{
	const char *val = (const char *)n->data.scalar.value;
	size_t idx = n->start_mark.index;
	*line = n->start_mark.line + 1;
	*col = n->start_mark.column + 1;
	switch (n->data.scalar.style) {
	case YAML_LITERAL_SCALAR_STYLE:
	case YAML_FOLDED_SCALAR_STYLE: {
		/* content starts on the line after the indicator; find its indent */
		while (idx < c->srclen && c->src[idx] != '\n')
			idx++;
		size_t indent = 0;
		while (idx + 1 + indent < c->srclen && c->src[idx + 1 + indent] == ' ')
			indent++;
		size_t l = 1, linestart = 0;
		for (size_t i = 0; i < off && val[i]; i++)
			if (val[i] == '\n') {
				l++;
				linestart = i + 1;
			}
		*line += l;
		*col = indent + (off - linestart) + 1;
		return;
	}
	case YAML_SINGLE_QUOTED_SCALAR_STYLE:
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE: {
		bool dq = n->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
		size_t s = idx + 1, v = 0;
		while (v < off && s < c->srclen && c->src[s] != '\n') {
			if (dq && c->src[s] == '\\')
				s += 2;
			else if (!dq && c->src[s] == '\'' && s + 1 < c->srclen &&
			         c->src[s + 1] == '\'')
				s += 2;
			else
				s++;
			v++;
		}
		*col += 1 + (s - idx - 1);
		return;
	}
	default:
		*col += off;
		return;
	}
}

void cfg_err_in_scalar(struct cfg *c, const yaml_node_t *n, size_t off, const char *fmt, ...)
{
	size_t line, col;
	scalar_pos(c, n, off, &line, &col);
	va_list ap;
	va_start(ap, fmt);
	vreport(c, false, line, col, fmt, ap);
	va_end(ap);
}

yaml_node_t *cfg_node(struct cfg *c, int id)
{
	return yaml_document_get_node(c->doc, id);
}

bool cfg_is_map(const yaml_node_t *n)
{
	return n && n->type == YAML_MAPPING_NODE;
}

bool cfg_is_seq(const yaml_node_t *n)
{
	return n && n->type == YAML_SEQUENCE_NODE;
}

bool cfg_is_null(const yaml_node_t *n)
{
	if (!n)
		return true;
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *v = (const char *)n->data.scalar.value;
	return !*v || strcmp(v, "~") == 0 || strcmp(v, "null") == 0;
}

static const char *type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return cfg_is_null(n) ? "empty" : "a scalar";
	}
}

bool cfg_fields(struct cfg *c, const yaml_node_t *n, const char *what, const char *const *allowed,
                yaml_node_t **out)
{
	size_t nallowed = 0;
	while (allowed[nallowed])
		out[nallowed++] = NULL;
	if (!cfg_is_map(n)) {
		cfg_err(c, n, "%s must be a mapping, not %s", what, type_name(n));
		return false;
	}
	for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top;
	     pr++) {
		yaml_node_t *k = cfg_node(c, pr->key), *v = cfg_node(c, pr->value);
		if (!k || k->type != YAML_SCALAR_NODE) {
			cfg_err(c, k, "keys of %s must be scalars", what);
			continue;
		}
		const char *ks = (const char *)k->data.scalar.value;
		size_t i;
		for (i = 0; i < nallowed; i++)
			if (strcmp(ks, allowed[i]) == 0)
				break;
		if (i == nallowed) {
			char exp[200];
			size_t el = 0;
			exp[0] = '\0';
			for (size_t j = 0; j < nallowed && el < sizeof(exp); j++)
				el += (size_t)snprintf(exp + el, sizeof(exp) - el, "%s%s",
				                       j ? ", " : "", allowed[j]);
			cfg_err(c, k, "unknown key '%s' in %s (expected one of: %s)", ks, what,
			        exp);
			continue;
		}
		if (out[i]) {
			cfg_err(c, k, "duplicate key '%s' in %s", ks, what);
			continue;
		}
		out[i] = v;
	}
	return true;
}

const char *cfg_scalar(struct cfg *c, const yaml_node_t *n, const char *what)
{
	if (!n || n->type != YAML_SCALAR_NODE || cfg_is_null(n)) {
		cfg_err(c, n, "%s must be a non-empty scalar, not %s", what,
		        n ? type_name(n) : "missing");
		return NULL;
	}
	return (const char *)n->data.scalar.value;
}

char *cfg_strdup(struct cfg *c, const yaml_node_t *n, const char *what)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return NULL;
	char *d = strdup(s);
	if (!d)
		cfg_err(c, n, "out of memory");
	return d;
}

bool cfg_bool(struct cfg *c, const yaml_node_t *n, const char *what, bool *out)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return false;
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on")) {
		*out = true;
		return true;
	}
	if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off")) {
		*out = false;
		return true;
	}
	cfg_err(c, n, "%s must be true or false, not '%s'", what, s);
	return false;
}

bool cfg_uint(struct cfg *c, const yaml_node_t *n, const char *what, uint64_t min, uint64_t max,
              uint64_t *out)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return false;
	uint64_t v;
	int rc = sl_parse_uint(s, max, &v);
	if (rc == SL_EINVAL) {
		cfg_err(c, n, "%s must be a whole number, not '%s'", what, s);
		return false;
	}
	if (rc || v < min) {
		cfg_err(c, n, "%s must be between %llu and %llu, not %s", what,
		        (unsigned long long)min, (unsigned long long)max, s);
		return false;
	}
	*out = v;
	return true;
}

bool cfg_duration(struct cfg *c, const yaml_node_t *n, const char *what, int64_t *out)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return false;
	int rc = sl_parse_duration(s, out);
	if (rc == SL_ERANGE) {
		cfg_err(c, n, "%s: duration '%s' is out of range", what, s);
		return false;
	}
	if (rc) {
		cfg_err(c, n,
		        "%s: bad duration '%s' (expected a number and a unit: ns, us, ms, s, m, h, "
		        "d or w, e.g. 50ms, 1.5m, 10s)",
		        what, s);
		return false;
	}
	return true;
}

bool cfg_size(struct cfg *c, const yaml_node_t *n, const char *what, uint64_t *out)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return false;
	int rc = sl_parse_size(s, out);
	if (rc) {
		cfg_err(c, n,
		        "%s: bad size '%s' (expected bytes or a number with KB, MB or GB, e.g. "
		        "64MB)",
		        what, s);
		return false;
	}
	return true;
}

bool cfg_name(struct cfg *c, const yaml_node_t *n, const char *what, char **out)
{
	const char *s = cfg_scalar(c, n, what);
	if (!s)
		return false;
	for (const char *p = s; *p; p++) {
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '_' || *p == '-')) {
			cfg_err(c, n, "%s '%s': use letters, digits, '_' and '-' only", what, s);
			return false;
		}
	}
	*out = strdup(s);
	if (!*out) {
		cfg_err(c, n, "out of memory");
		return false;
	}
	return true;
}

bool cfg_http_token(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 127 || strchr("\"(),/:;<=>?@[\\]{}", *s))
			return false;
	return true;
}

int cfg_plan_index(const struct sl_policy *p, const char *name)
{
	for (size_t i = 0; i < p->nplans; i++)
		if (p->plans[i].name && strcmp(p->plans[i].name, name) == 0)
			return (int)i;
	return -1;
}

struct sl_template *cfg_template(struct cfg *c, const yaml_node_t *n, const char *what,
                                 bool in_message)
{
	if (!n || n->type != YAML_SCALAR_NODE) {
		cfg_err(c, n, "%s must be a string, not %s", what, n ? type_name(n) : "missing");
		return NULL;
	}
	char err[200];
	size_t off = 0;
	struct sl_template *t =
	        sl_template_compile((const char *)n->data.scalar.value, err, sizeof(err), &off);
	if (!t) {
		cfg_err_in_scalar(c, n, off, "%s: %s", what, err);
		return NULL;
	}
	if (c->ntpls == c->captpls) {
		size_t cap = c->captpls ? c->captpls * 2 : 16;
		struct cfg_tpl *nt = realloc(c->tpls, cap * sizeof(*nt));
		if (!nt) {
			cfg_err(c, n, "out of memory");
			sl_template_free(t);
			return NULL;
		}
		c->tpls = nt;
		c->captpls = cap;
	}
	c->tpls[c->ntpls++] = (struct cfg_tpl){.t = t, .node = n, .in_message = in_message};
	return t;
}
