/* Loader section `normalize` (docs/normalize.md): how the canonical form of
 * a request's path is compared, and whether the proxy forwards it. Every
 * setting is one of two words, and the section may be the single word
 * `forward` (the canonical form goes upstream, comparisons as default).
 * Read before `routes`, whose paths are made canonical the same way. */
#include <string.h>
#include "policy/config-int.h"

/* A setting that is one of two words: *out is true for `yes`, false for
 * `no`; anything else is reported. */
static void choice(struct cfg *c, const yaml_node_t *n, const char *what, const char *yes,
                   const char *no, bool *out)
{
	const char *s;

	if (n == NULL || (s = cfg_scalar(c, n, what)) == NULL)
		return;
	if (strcmp(s, yes) == 0)
		*out = true;
	else if (strcmp(s, no) == 0)
		*out = false;
	else
		cfg_err(c, n, "%s must be %s or %s, not '%s'", what, no, yes, s);
}

void cfg_normalize(struct cfg *c, const yaml_node_t *n)
{
	static const char *const keys[] = {"case", "trailing_slash", "forward", NULL};
	struct sl_normalize_conf *nc = &c->p->normalize;
	yaml_node_t *v[3];

	if (n->type == YAML_SCALAR_NODE) {
		const char *s = cfg_scalar(c, n, "normalize");

		if (s && strcmp(s, "forward") == 0)
			nc->forward = true;
		else if (s)
			cfg_err(c, n,
			        "normalize must be a mapping {case, trailing_slash, forward} or "
			        "the "
			        "word forward, not '%s'",
			        s);
		return;
	}
	if (!cfg_fields(c, n, "normalize", keys, v))
		return;
	choice(c, v[0], "normalize.case", "sensitive", "insensitive", &nc->case_sensitive);
	choice(c, v[1], "normalize.trailing_slash", "strict", "fold", &nc->strict_slash);
	choice(c, v[2], "normalize.forward", "canonical", "original", &nc->forward);
}
