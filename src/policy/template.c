/* Response templates: a "{var}" string compiled at load time into segments
 * (a literal run followed by at most one variable reference) and rendered
 * per request straight into the caller's buffer. The design decision: the
 * resolver writes a value in place at the end of the output and escaping
 * (JSON) expands it backwards in the same buffer, so rendering needs no
 * scratch memory at all. Only "{{" is an escape: '}' is always literal, so
 * a JSON body closing nested objects right after a variable
 * ({"e":{"retryAfter":{retry_after}}}) is written as it reads. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include "policy/template.h"

struct tpl_seg {
	size_t off, len; /* literal bytes in text */
	int ref;         /* index into refs, or -1 */
};

struct sl_template {
	char *text; /* literal bytes of every segment, back to back */
	struct tpl_seg *segs;
	size_t nsegs;
	struct sl_tpl_ref *refs;
	size_t nrefs;
};

static const struct {
	const char *name;
	unsigned var;
} vars[] = {
        {"limit", SL_TPL_LIMIT},
        {"remaining", SL_TPL_REMAINING},
        {"reset", SL_TPL_RESET},
        {"reset_after", SL_TPL_RESET_AFTER},
        {"retry_after", SL_TPL_RETRY_AFTER},
        {"window", SL_TPL_WINDOW},
        {"window_seconds", SL_TPL_WINDOW_SECONDS},
        {"denied_by", SL_TPL_DENIED_BY},
        {"plan", SL_TPL_PLAN},
        {"plan_title", SL_TPL_PLAN_TITLE},
        {"account", SL_TPL_ACCOUNT},
        {"message", SL_TPL_MESSAGE},
};

static int ident_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static int ident_char(char ch)
{
	return ident_start(ch) || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
}

void sl_template_free(struct sl_template *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nrefs; i++)
		free((char *)t->refs[i].name);
	free(t->refs);
	free(t->segs);
	free(t->text);
	free(t);
}

static void set_err(char *err, size_t errcap, size_t *err_off, size_t off, const char *msg,
                    const char *name, size_t nlen)
{
	if (err && errcap)
		snprintf(err, errcap, msg, (int)nlen, name);
	if (err_off)
		*err_off = off;
}

/* Fill ref from the identifier name[0..len) found at offset off. Returns 0,
 * or -1 with err set. */
static int parse_var(struct sl_tpl_ref *ref, const char *name, size_t len, size_t off, char *err,
                     size_t errcap, size_t *err_off)
{
	memset(ref, 0, sizeof(*ref));
	ref->offset = (unsigned)off;
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		if (strlen(vars[i].name) == len && memcmp(vars[i].name, name, len) == 0) {
			ref->var = vars[i].var;
			return 0;
		}
	}
	if (len > 7 && memcmp(name, "limits.", 7) == 0) {
		const char *ln = name + 7, *end = name + len;
		const char *dot = memchr(ln, '.', (size_t)(end - ln));
		if (!dot || dot == ln) {
			set_err(err, errcap, err_off, off,
			        "bad template variable {%.*s}: expected {limits.NAME.limit}, "
			        "{limits.NAME.remaining} or {limits.NAME.reset}",
			        name, len);
			return -1;
		}
		const char *field = dot + 1;
		size_t flen = (size_t)(end - field);
		if (flen == 5 && memcmp(field, "limit", 5) == 0)
			ref->field = SL_TPL_LIMIT;
		else if (flen == 9 && memcmp(field, "remaining", 9) == 0)
			ref->field = SL_TPL_REMAINING;
		else if (flen == 5 && memcmp(field, "reset", 5) == 0)
			ref->field = SL_TPL_RESET;
		else {
			set_err(err, errcap, err_off, off,
			        "bad template variable {%.*s}: the field after the limit name "
			        "must be limit, remaining or reset",
			        name, len);
			return -1;
		}
		char *n = strndup(ln, (size_t)(dot - ln));
		if (!n) {
			set_err(err, errcap, err_off, off, "out of memory%.*s", "", 0);
			return -1;
		}
		ref->var = SL_TPL_NAMED;
		ref->name = n;
		return 0;
	}
	set_err(err, errcap, err_off, off,
	        "unknown template variable {%.*s} (known: limit remaining reset reset_after "
	        "retry_after window window_seconds denied_by plan plan_title account message "
	        "limits.NAME.limit|remaining|reset)",
	        name, len);
	return -1;
}

struct sl_template *sl_template_compile(const char *src, char *err, size_t errcap, size_t *err_off)
{
	size_t len = strlen(src);
	/* A variable takes at least 3 source bytes, so these bounds hold. */
	size_t maxrefs = len / 3 + 1;
	struct sl_template *t = calloc(1, sizeof(*t));
	if (!t)
		goto nomem;
	t->text = malloc(len + 1);
	t->segs = calloc(maxrefs + 1, sizeof(*t->segs));
	t->refs = calloc(maxrefs, sizeof(*t->refs));
	if (!t->text || !t->segs || !t->refs)
		goto nomem;

	size_t tl = 0, seg_start = 0, i = 0;
	while (i < len) {
		char ch = src[i];
		if (ch != '{') {
			t->text[tl++] = ch;
			i++;
			continue;
		}
		if (src[i + 1] == '{') {
			/* "{{" is '{'; "{{name}}" is the literal "{name}". */
			t->text[tl++] = '{';
			i += 2;
			size_t j = i;
			while (j < len && ident_char(src[j]))
				j++;
			if (j > i && src[j] == '}' && src[j + 1] == '}') {
				memcpy(t->text + tl, src + i, j - i);
				tl += j - i;
				t->text[tl++] = '}';
				i = j + 2;
			}
			continue;
		}
		size_t j = i + 1;
		while (j < len && ident_char(src[j]))
			j++;
		if (!ident_start(src[i + 1]) || src[j] != '}') {
			t->text[tl++] = ch; /* not a variable: a literal brace */
			i++;
			continue;
		}
		struct sl_tpl_ref *ref = &t->refs[t->nrefs];
		if (parse_var(ref, src + i + 1, j - i - 1, i, err, errcap, err_off) < 0)
			goto fail;
		struct tpl_seg *s = &t->segs[t->nsegs++];
		s->off = seg_start;
		s->len = tl - seg_start;
		s->ref = (int)t->nrefs++;
		seg_start = tl;
		i = j + 1;
	}
	if (tl > seg_start || t->nsegs == 0) {
		struct tpl_seg *s = &t->segs[t->nsegs++];
		s->off = seg_start;
		s->len = tl - seg_start;
		s->ref = -1;
	}
	t->text[tl] = '\0';
	return t;
nomem:
	set_err(err, errcap, err_off, 0, "out of memory%.*s", "", 0);
fail:
	sl_template_free(t);
	return NULL;
}

struct sl_tpl_ref *sl_template_refs(struct sl_template *t, size_t *n)
{
	*n = t ? t->nrefs : 0;
	return t ? t->refs : NULL;
}

/* Bytes the JSON escape of v[0..len) adds. */
static size_t json_extra(const unsigned char *v, size_t len)
{
	size_t extra = 0;
	for (size_t i = 0; i < len; i++) {
		if (v[i] == '"' || v[i] == '\\')
			extra += 1;
		else if (v[i] < 0x20)
			extra += 5; /* \u00XX */
	}
	return extra;
}

/* Escape v[0..len) in place, growing it by `extra` bytes (already known to
 * fit): walk backwards so nothing is overwritten before it is read. */
static void json_expand(unsigned char *v, size_t len, size_t extra)
{
	static const char hex[] = "0123456789abcdef";
	size_t w = len + extra;
	for (size_t r = len; r-- > 0;) {
		unsigned char ch = v[r];
		if (ch == '"' || ch == '\\') {
			v[--w] = ch;
			v[--w] = '\\';
		} else if (ch < 0x20) {
			v[--w] = (unsigned char)hex[ch & 0xf];
			v[--w] = (unsigned char)hex[ch >> 4];
			v[--w] = '0';
			v[--w] = '0';
			v[--w] = 'u';
			v[--w] = '\\';
		} else {
			v[--w] = ch;
		}
	}
}

long sl_template_render(const struct sl_template *t, unsigned mode, sl_tpl_resolve_fn resolve,
                        void *arg, char *out, size_t cap)
{
	size_t n = 0;
	bool skip_quote = false; /* drop the '"' that closed a nulled "{var}" */
	for (size_t i = 0; i < t->nsegs; i++) {
		const struct tpl_seg *s = &t->segs[i];
		const char *lit = t->text + s->off;
		size_t len = s->len;
		if (skip_quote && len > 0 && lit[0] == '"') {
			lit++;
			len--;
		}
		skip_quote = false;
		if (len > cap - n)
			return -1;
		memcpy(out + n, lit, len);
		n += len;
		if (s->ref < 0)
			continue;
		long v = resolve(arg, &t->refs[s->ref], out + n, cap - n);
		if (v < 0 && mode == SL_TPL_JSON) {
			/* No value: JSON null, keeping the body's shape. A quoted
			 * "{var}" becomes a bare null rather than the string "null". */
			const struct tpl_seg *next = i + 1 < t->nsegs ? &t->segs[i + 1] : NULL;
			if (n > 0 && out[n - 1] == '"' && next != NULL && next->len > 0 &&
			    t->text[next->off] == '"') {
				n--;
				skip_quote = true;
			}
			if (4 > cap - n)
				return -1;
			memcpy(out + n, "null", 4);
			n += 4;
			continue;
		}
		if (v < 0 || (size_t)v > cap - n)
			return -1;
		unsigned char *val = (unsigned char *)out + n;
		if (mode == SL_TPL_HEADER) {
			for (long k = 0; k < v; k++)
				if (val[k] == '\r' || val[k] == '\n' || val[k] == '\0')
					return -1;
		} else if (mode == SL_TPL_JSON) {
			size_t extra = json_extra(val, (size_t)v);
			if (extra > cap - n - (size_t)v)
				return -1;
			json_expand(val, (size_t)v, extra);
			v += (long)extra;
		}
		n += (size_t)v;
	}
	return (long)n;
}
