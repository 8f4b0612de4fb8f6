/* Private interface between identity.c, eval.c and render.c (and their unit
 * tests): request parsing helpers that never allocate and never copy more
 * than their caller's buffer. Not for other layers: they use policy.h. */
#ifndef SLUICE_EVAL_INT_H
#define SLUICE_EVAL_INT_H

#include "policy/policy.h"

/* An address in binary form; v4-mapped IPv6 is stored as AF_INET. */
struct sl_ipaddr {
	uint8_t family; /* AF_INET or AF_INET6 */
	uint8_t addr[16];
};

/* Longest API key considered (bytes); longer ones are unknown keys. */
#define SL_KEY_MAX 512

/* Parse "1.2.3.4", "1.2.3.4:80", "::1", "[::1]", "[::1]:80" (surrounding
 * blanks allowed). Returns 0 or SL_EINVAL. */
int sl_ip_parse(struct sl_str s, struct sl_ipaddr *out);
/* From a socket address (AF_INET / AF_INET6). Returns 0 or SL_EINVAL. */
int sl_ip_from_sockaddr(const struct sockaddr *sa, struct sl_ipaddr *out);
/* Canonical text (inet_ntop) into buf (>= 46 bytes), NUL-terminated. */
void sl_ip_format(const struct sl_ipaddr *a, char *buf, size_t cap);
bool sl_cidr_contains(const struct sl_cidr *c, const struct sl_ipaddr *a);
bool sl_ip_trusted(const struct sl_policy *p, const struct sl_ipaddr *a);

/* The client address of req per identify.trusted_proxies (see identity.c).
 * Returns 0, or SL_EINVAL when there is no usable address. */
int sl_client_ip(const struct sl_policy *p, const struct sl_request *req, struct sl_ipaddr *out);

/* First header named name (case-insensitive), value trimmed of blanks. */
bool sl_req_header(const struct sl_request *req, const char *name, size_t name_len,
                   struct sl_str *out);

/* Value of query parameter name (names compared after percent-decoding),
 * percent-decoded ('+' is a space) into out. Returns its length, -1 when
 * absent, -2 when it does not fit in cap bytes. */
long sl_query_param(struct sl_str query, const char *name, size_t name_len, char *out, size_t cap);

/* The first route of p matching req, or NULL. req->path is the canonical
 * match form (eval.c normalize(); docs/normalize.md). */
const struct sl_route *sl_route_match(const struct sl_policy *p, const struct sl_request *req);

/* Fill ev's descriptors (ip, key, account, plan, route, account_name,
 * key_state) from req, whose path and host are already canonical. Resets
 * ev's scratch. Returns 0 (missing descriptors are not errors), or
 * SL_EINVAL when a key source it reads is given twice. */
int sl_identify(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req);

/* Whether a decided check has no numbers to show (an unlimited limit). */
static inline bool sl_check_unlimited(const struct sl_check *c)
{
	return c->res.limit == SL_UNLIMITED || c->res.remaining == SL_UNLIMITED ||
	       (c->spec != NULL && c->spec->algo == SL_ALGO_UNLIMITED);
}

/* ns a decided check's limit is stated over (its {window}); 0: none
 * (concurrency, unlimited, deny). render.c. */
int64_t sl_check_window_ns(const struct sl_check *c);

#endif
