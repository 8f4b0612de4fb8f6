/* Identity: turns a request into the descriptors limits are keyed on — the
 * client address, the API key and the account and plan it belongs to, and
 * the matched route. Everything is a view into the request or the policy,
 * or a bounded copy into the sl_eval's scratch: nothing allocates per
 * request (the SHA-256 context is created once per thread).
 *
 * The one decision to know: X-Forwarded-For is read only when the peer is a
 * trusted proxy, and then from the right: every address a trusted proxy
 * appended is skipped, and the first untrusted one is the client. Anything
 * to its left was written by the client and is never believed. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/evp.h>
#include <sluice/error.h>
#include "policy/eval-int.h"
#include "policy/normalize.h"

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

static struct sl_str trim(struct sl_str s)
{
	while (s.len > 0 && is_blank(s.p[0])) {
		s.p++;
		s.len--;
	}
	while (s.len > 0 && is_blank(s.p[s.len - 1]))
		s.len--;
	return s;
}

/* ---- addresses ---- */

static void normalize_mapped(struct sl_ipaddr *a)
{
	static const uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

	if (a->family == AF_INET6 && memcmp(a->addr, prefix, 12) == 0) {
		memmove(a->addr, a->addr + 12, 4);
		memset(a->addr + 4, 0, 12);
		a->family = AF_INET;
	}
}

int sl_ip_parse(struct sl_str s, struct sl_ipaddr *out)
{
	char buf[64];
	const char *colon;

	s = trim(s);
	if (s.len == 0)
		return SL_EINVAL;
	if (s.p[0] == '[') {
		const char *end = memchr(s.p, ']', s.len);

		if (end == NULL)
			return SL_EINVAL;
		/* after ']' only ":port" may follow */
		if ((size_t)(end + 1 - s.p) < s.len && end[1] != ':')
			return SL_EINVAL;
		s.len = (size_t)(end - s.p) - 1;
		s.p++;
	} else if ((colon = memchr(s.p, ':', s.len)) != NULL &&
	           memchr(colon + 1, ':', s.len - (size_t)(colon + 1 - s.p)) == NULL) {
		s.len = (size_t)(colon - s.p); /* "a.b.c.d:port" */
	}
	if (s.len == 0 || s.len >= sizeof(buf))
		return SL_EINVAL;
	memcpy(buf, s.p, s.len);
	buf[s.len] = '\0';
	memset(out, 0, sizeof(*out));
	if (memchr(buf, ':', s.len) == NULL) {
		if (inet_pton(AF_INET, buf, out->addr) != 1)
			return SL_EINVAL;
		out->family = AF_INET;
	} else {
		if (inet_pton(AF_INET6, buf, out->addr) != 1)
			return SL_EINVAL;
		out->family = AF_INET6;
		normalize_mapped(out);
	}
	return 0;
}

int sl_ip_from_sockaddr(const struct sockaddr *sa, struct sl_ipaddr *out)
{
	memset(out, 0, sizeof(*out));
	if (sa == NULL)
		return SL_EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		out->family = AF_INET;
		memcpy(out->addr, &in->sin_addr, 4);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		out->family = AF_INET6;
		memcpy(out->addr, &in6->sin6_addr, 16);
		normalize_mapped(out);
		return 0;
	}
	return SL_EINVAL;
}

void sl_ip_format(const struct sl_ipaddr *a, char *buf, size_t cap)
{
	if (cap == 0)
		return;
	buf[0] = '\0';
	if (a->family == AF_INET && cap >= 16) {
		/* what inet_ntop writes, without its sprintf (once per request) */
		char *p = buf;

		for (int i = 0; i < 4; i++) {
			unsigned v = a->addr[i];

			if (v >= 100)
				*p++ = (char)('0' + v / 100);
			if (v >= 10)
				*p++ = (char)('0' + v / 10 % 10);
			*p++ = (char)('0' + v % 10);
			*p++ = i < 3 ? '.' : '\0';
		}
		return;
	}
	if (inet_ntop(a->family == AF_INET ? AF_INET : AF_INET6, a->addr, buf, (socklen_t)cap) ==
	    NULL)
		buf[0] = '\0';
}

bool sl_cidr_contains(const struct sl_cidr *c, const struct sl_ipaddr *a)
{
	unsigned bits = c->bits, full = bits / 8, rest = bits % 8;
	unsigned max = c->family == AF_INET ? 32 : 128;

	if (c->family != a->family || bits > max)
		return false;
	if (memcmp(c->addr, a->addr, full) != 0)
		return false;
	if (rest != 0) {
		uint8_t mask = (uint8_t)(0xff << (8 - rest));

		if ((c->addr[full] & mask) != (a->addr[full] & mask))
			return false;
	}
	return true;
}

bool sl_ip_trusted(const struct sl_policy *p, const struct sl_ipaddr *a)
{
	for (size_t i = 0; i < p->identify.ntrusted; i++)
		if (sl_cidr_contains(&p->identify.trusted[i], a))
			return true;
	return false;
}

static bool name_eq(struct sl_str a, const char *b, size_t blen)
{
	return a.len == blen && strncasecmp(a.p, b, blen) == 0;
}

bool sl_req_header(const struct sl_request *req, const char *name, size_t name_len,
                   struct sl_str *out)
{
	for (size_t i = 0; i < req->nheaders; i++) {
		if (name_eq(req->headers[i].name, name, name_len)) {
			*out = trim(req->headers[i].value);
			return true;
		}
	}
	return false;
}

/* name_eq with '_' and '-' the same: CGI-style upstreams (WSGI, PHP-FPM,
 * Rack) read both X-Api-Key and X_Api_Key as HTTP_X_API_KEY. */
static bool name_eq_dash(struct sl_str a, const char *b, size_t blen)
{
	if (a.len != blen)
		return false;
	for (size_t i = 0; i < blen; i++) {
		unsigned char x = (unsigned char)a.p[i], y = (unsigned char)b[i];
		if (x == '_')
			x = '-';
		if (y == '_')
			y = '-';
		if (x != y && (x | 0x20) != (y | 0x20))
			return false;
		if (x != y && !((x | 0x20) >= 'a' && (x | 0x20) <= 'z'))
			return false;
	}
	return true;
}

/* Like sl_req_header, and *twice set when another header of that name
 * follows the first. A name spelled with '_' for '-' is the same name (an
 * upstream may read either as the key, so one counted and the other
 * forwarded would let a key through uncounted). Scans every header. */
static bool req_header_once(const struct sl_request *req, const char *name, size_t name_len,
                            struct sl_str *out, bool *twice)
{
	bool found = false;

	*twice = false;
	for (size_t i = 0; i < req->nheaders; i++) {
		if (!name_eq_dash(req->headers[i].name, name, name_len))
			continue;
		if (found) {
			*twice = true;
			return true;
		}
		*out = trim(req->headers[i].value);
		found = true;
	}
	return found;
}

/* Walk the X-Forwarded-For list (every such header, in order, as one list)
 * from the right. Returns true with *out set when the list held at least
 * one address: the first untrusted one, or when a trusted proxy wrote
 * something that is not an address, or every address is trusted, the last
 * good address walked (the left-most trusted one). */
static bool xff_client(const struct sl_policy *p, const struct sl_request *req,
                       struct sl_ipaddr *out)
{
	static const char xff[] = "X-Forwarded-For";
	bool found = false;

	for (size_t h = req->nheaders; h-- > 0;) {
		struct sl_str v = req->headers[h].value;
		size_t end = v.len;

		if (!name_eq(req->headers[h].name, xff, sizeof(xff) - 1))
			continue;
		for (;;) {
			size_t start = end;
			struct sl_ipaddr a;
			struct sl_str elt;

			while (start > 0 && v.p[start - 1] != ',')
				start--;
			elt = trim((struct sl_str){v.p + start, end - start});
			if (elt.len > 0) {
				if (sl_ip_parse(elt, &a) != 0)
					return found;
				*out = a;
				found = true;
				if (!sl_ip_trusted(p, &a))
					return true;
			}
			if (start == 0)
				break;
			end = start - 1;
		}
	}
	return found;
}

int sl_client_ip(const struct sl_policy *p, const struct sl_request *req, struct sl_ipaddr *out)
{
	struct sl_str v;

	if (req->ip.len > 0)
		return sl_ip_parse(req->ip, out);
	if (sl_ip_from_sockaddr(req->peer, out) != 0)
		return SL_EINVAL;
	if (!sl_ip_trusted(p, out))
		return 0;
	if (xff_client(p, req, out))
		return 0;
	if (sl_req_header(req, "X-Real-IP", 9, &v)) {
		struct sl_ipaddr a;

		if (sl_ip_parse(v, &a) == 0)
			*out = a;
	}
	return 0;
}

/* ---- query strings ---- */

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one byte of a form-encoded component at s[*i], advancing *i.
 * A '%' not followed by two hex digits is literal (WHATWG URL parsing). */
static char decode_at(const char *s, size_t len, size_t *i)
{
	char c = s[*i];

	if (c == '+') {
		(*i)++;
		return ' ';
	}
	if (c == '%' && *i + 2 < len) {
		int hi = hexval(s[*i + 1]), lo = hexval(s[*i + 2]);

		if (hi >= 0 && lo >= 0) {
			*i += 3;
			return (char)(hi << 4 | lo);
		}
	}
	(*i)++;
	return c;
}

static bool decoded_eq(const char *s, size_t len, const char *name, size_t name_len)
{
	size_t i = 0, j = 0;

	while (i < len) {
		if (j == name_len || decode_at(s, len, &i) != name[j])
			return false;
		j++;
	}
	return j == name_len;
}

/* The first parameter named name at or after byte *pos of query: its
 * value (NULL for a bare name) and *pos just past it. Returns false when
 * there is none. */
static bool find_param(struct sl_str query, const char *name, size_t name_len, size_t *pos,
                       const char **val, size_t *vlen)
{
	while (*pos < query.len) {
		const char *seg = query.p + *pos;
		const char *amp = memchr(seg, '&', query.len - *pos);
		size_t seg_len = amp ? (size_t)(amp - seg) : query.len - *pos;
		const char *eq = memchr(seg, '=', seg_len);
		size_t nlen = eq ? (size_t)(eq - seg) : seg_len;

		*pos += seg_len + 1;
		if (seg_len == 0 || !decoded_eq(seg, nlen, name, name_len))
			continue;
		*val = eq ? eq + 1 : NULL;
		*vlen = eq ? seg_len - nlen - 1 : 0;
		return true;
	}
	return false;
}

long sl_query_param(struct sl_str query, const char *name, size_t name_len, char *out, size_t cap)
{
	size_t pos = 0, vlen, i = 0, o = 0;
	const char *val;

	if (!find_param(query, name, name_len, &pos, &val, &vlen))
		return -1;
	if (val == NULL)
		return 0;
	while (i < vlen) {
		char c = decode_at(val, vlen, &i);

		if (o == cap)
			return -2;
		out[o++] = c;
	}
	return (long)o;
}

/* Whether query names parameter name twice or more. */
static bool query_param_twice(struct sl_str query, const char *name, size_t name_len)
{
	size_t pos = 0, vlen;
	const char *val;

	return find_param(query, name, name_len, &pos, &val, &vlen) &&
	       find_param(query, name, name_len, &pos, &val, &vlen);
}

/* ---- API keys ---- */

static pthread_key_t md_key;
static pthread_once_t md_once = PTHREAD_ONCE_INIT;
static EVP_MD *md_sha256;

static void md_ctx_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void md_init(void)
{
	if (pthread_key_create(&md_key, md_ctx_free) != 0)
		return;
	md_sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

/* SHA-256 of data. The digest and one context per thread are set up on
 * first use and reused, so hashing a key does not allocate per request.
 * Returns 0 or SL_ENOMEM. */
static int sha256(const void *data, size_t len, uint8_t out[32])
{
	EVP_MD_CTX *ctx;
	unsigned int n = 0;

	pthread_once(&md_once, md_init);
	if (md_sha256 == NULL)
		return SL_ENOMEM;
	ctx = pthread_getspecific(md_key);
	if (ctx == NULL) {
		ctx = EVP_MD_CTX_new();
		if (ctx == NULL)
			return SL_ENOMEM;
		if (pthread_setspecific(md_key, ctx) != 0) {
			EVP_MD_CTX_free(ctx);
			return SL_ENOMEM;
		}
	}
	if (EVP_DigestInit_ex(ctx, md_sha256, NULL) != 1 || EVP_DigestUpdate(ctx, data, len) != 1 ||
	    EVP_DigestFinal_ex(ctx, out, &n) != 1 || n != 32)
		return SL_ENOMEM;
	return 0;
}

/* Per-thread cache of recent keys' digests: SHA-256 of a short key costs
 * more than the rest of the evaluation, and a gateway sees the same keys
 * again and again. A fixed direct-mapped table (no allocation, nothing to
 * evict), keyed by the raw key bytes compared exactly (in constant time:
 * a hit must not tell a client how much of another key it guessed). It
 * maps bytes to their digest, which no policy changes, so a reload does
 * not invalidate it: the account is still looked up in the current
 * policy's key table. Longer keys are hashed every time. */
#define KEYCACHE_SLOTS 64 /* power of two */
#define KEYCACHE_KEY   64 /* bytes */

struct keycache_slot {
	uint8_t len; /* 0: empty */
	uint8_t key[KEYCACHE_KEY];
	uint8_t sha256[32];
};

static __thread struct keycache_slot keycache[KEYCACHE_SLOTS];

static bool ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
	uint8_t d = 0;

	for (size_t i = 0; i < n; i++)
		d |= a[i] ^ b[i];
	return d == 0;
}

static int sha256_cached(const void *data, size_t len, uint8_t out[32])
{
	const uint8_t *k = data;
	struct keycache_slot *s;
	uint32_t h = 2166136261u; /* FNV-1a: picks the slot, nothing more */
	int rc;

	if (len == 0 || len > KEYCACHE_KEY)
		return sha256(data, len, out);
	for (size_t i = 0; i < len; i++)
		h = (h ^ k[i]) * 16777619u;
	s = &keycache[(h ^ (h >> 16)) & (KEYCACHE_SLOTS - 1)];
	if (s->len == len && ct_equal(s->key, k, len)) {
		memcpy(out, s->sha256, 32);
		return 0;
	}
	rc = sha256(data, len, out);
	if (rc == 0) {
		s->len = (uint8_t)len;
		memcpy(s->key, k, len);
		memcpy(s->sha256, out, 32);
	}
	return rc;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, ((const struct sl_key_entry *)b)->sha256, 32);
}

/* "Bearer <token>": scheme case-insensitive, then one or more blanks. */
static bool bearer_token(struct sl_str auth, struct sl_str *out)
{
	size_t i = 6;

	if (auth.len <= 6 || strncasecmp(auth.p, "Bearer", 6) != 0 || !is_blank(auth.p[6]))
		return false;
	while (i < auth.len && is_blank(auth.p[i]))
		i++;
	*out = trim((struct sl_str){auth.p + i, auth.len - i});
	return out->len > 0;
}

/* The key from the configured sources, in order; the first non-empty one
 * wins. Query values are decoded into the scratch area. Returns 1 with
 * *out set, 0 when no source has a key, SL_EINVAL when a source it reads
 * is given twice (two X-Api-Key headers, two Authorization headers, two
 * key= parameters): which one counts would be a guess, and an upstream
 * that guessed the other way would be keyed on a value never counted. */
static int find_key(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req,
                    struct sl_str *out)
{
	if (req->key.len > 0) {
		*out = req->key;
		return 1;
	}
	for (size_t i = 0; i < p->identify.nkey_from; i++) {
		const struct sl_key_source *src = &p->identify.key_from[i];
		struct sl_str v;
		bool twice;
		long n;

		switch (src->kind) {
		case SL_KEYSRC_HEADER:
			if (req_header_once(req, src->name, strlen(src->name), &v, &twice)) {
				if (twice)
					return SL_EINVAL;
				if (v.len > 0) {
					*out = v;
					return 1;
				}
			}
			break;
		case SL_KEYSRC_BEARER:
			if (req_header_once(req, "Authorization", 13, &v, &twice)) {
				if (twice)
					return SL_EINVAL;
				if (bearer_token(v, out))
					return 1;
			}
			break;
		case SL_KEYSRC_QUERY: {
			char *buf = ev->scratch + ev->scratchused;
			size_t cap = sizeof(ev->scratch) - ev->scratchused;

			n = sl_query_param(req->query, src->name, strlen(src->name), buf,
			                   cap < SL_KEY_MAX + 1 ? cap : SL_KEY_MAX + 1);
			if (n != -1 && query_param_twice(req->query, src->name, strlen(src->name)))
				return SL_EINVAL;
			if (n > 0) {
				*out = (struct sl_str){buf, (size_t)n};
				return 1;
			}
			if (n == -2) { /* too long: certainly unknown */
				*out = (struct sl_str){buf, SL_KEY_MAX + 1};
				return 1;
			}
			break;
		}
		default:
			break;
		}
	}
	return 0;
}

static const struct sl_account *account_by_name(const struct sl_policy *p, struct sl_str name)
{
	/* Only /v1/decide names an account; a linear scan keeps the policy
	 * free of a second index. */
	for (size_t i = 0; i < p->naccounts; i++)
		if (strlen(p->accounts[i].name) == name.len &&
		    memcmp(p->accounts[i].name, name.p, name.len) == 0)
			return &p->accounts[i];
	return NULL;
}

static const struct sl_plan *plan_by_name(const struct sl_policy *p, struct sl_str name)
{
	for (size_t i = 0; i < p->nplans; i++)
		if (strlen(p->plans[i].name) == name.len &&
		    memcmp(p->plans[i].name, name.p, name.len) == 0)
			return &p->plans[i];
	return NULL;
}

int sl_policy_plan_index(const struct sl_policy *p, const char *name, size_t len)
{
	const struct sl_plan *pl = plan_by_name(p, (struct sl_str){name, len});

	return pl != NULL ? (int)pl->index : -1;
}

bool sl_policy_static_account(const struct sl_policy *p, const char *name, size_t len)
{
	return account_by_name(p, (struct sl_str){name, len}) != NULL;
}

static const struct sl_plan *plan_of(const struct sl_policy *p, const struct sl_account *a)
{
	return a->plan < p->nplans ? &p->plans[a->plan] : NULL;
}

/* Copy s into scratch; returns the copy, or len 0 when it does not fit. */
static struct sl_str scratch_copy(struct sl_eval *ev, struct sl_str s)
{
	struct sl_str r = {NULL, 0};

	if (s.len > sizeof(ev->scratch) - ev->scratchused)
		return r;
	r.p = ev->scratch + ev->scratchused;
	r.len = s.len;
	if (r.p != s.p)
		memmove(ev->scratch + ev->scratchused, s.p, s.len);
	ev->scratchused += s.len;
	return r;
}

/* The live store found ev->live: it speaks for the account. Its plan is
 * looked up by name in this policy (a reload may have renumbered plans or
 * dropped one: then no plan, and per-plan limits do not apply). */
static void use_live(struct sl_eval *ev, const struct sl_policy *p)
{
	ev->live_found = true;
	ev->key_state = SL_KEY_KNOWN;
	ev->plan = plan_by_name(p, (struct sl_str){ev->live.plan, strlen(ev->live.plan)});
	ev->account_name = (struct sl_str){ev->live.name, ev->live.name_len};
}

static int identify_key(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req)
{
	struct sl_str key;
	int found = find_key(ev, p, req, &key);

	if (found <= 0)
		return found;
	ev->key_state = SL_KEY_UNKNOWN;
	if (key.len > SL_KEY_MAX)
		return 0;
	ev->key = scratch_copy(ev, key);
	if (sha256_cached(key.p, key.len, ev->key_sha256) != 0)
		return SL_ENOMEM;
	if (p->nkeys > 0) {
		const struct sl_key_entry *e =
		        bsearch(ev->key_sha256, p->keys, p->nkeys, sizeof(*p->keys), key_cmp);

		if (e != NULL && e->account < p->naccounts) {
			ev->key_state = SL_KEY_KNOWN;
			ev->account = &p->accounts[e->account];
			ev->plan = plan_of(p, ev->account);
			return 0;
		}
	}
	if (p->live != NULL &&
	    p->live->by_key(p->live, ev->key_sha256, ev->decision.now, &ev->live) == 1)
		use_live(ev, p);
	return 0;
}

/* ---- routes ---- */

/* req->path is canonical and r->path was made canonical at load
 * (normalize.c), so a byte compare (letters case-blind unless `case:
 * sensitive`) is the whole of RFC 3986 equivalence. */
static bool route_matches(const struct sl_route *r, const struct sl_request *req, bool icase)
{
	if (r->method != NULL && !name_eq(req->method, r->method, strlen(r->method)))
		return false;
	switch (r->path_match) {
	case SL_PATH_ANY:
		break;
	case SL_PATH_EXACT:
		if (req->path.len != r->path_len ||
		    !sl_norm_eq(req->path.p, r->path, r->path_len, icase))
			return false;
		break;
	case SL_PATH_PREFIX:
		if (req->path.len >= r->path_len &&
		    sl_norm_eq(req->path.p, r->path, r->path_len, icase))
			break;
		/* a "/x/" prefix route also matches "/x" itself */
		if (r->path_len > 1 && r->path[r->path_len - 1] == '/' &&
		    req->path.len == r->path_len - 1 &&
		    sl_norm_eq(req->path.p, r->path, r->path_len - 1, icase))
			break;
		return false;
	default:
		return false;
	}
	if (r->query_name != NULL) {
		char buf[256];
		long n = sl_query_param(req->query, r->query_name, strlen(r->query_name), buf,
		                        sizeof(buf));

		if (n < 0)
			return false;
		if (r->query_value != NULL &&
		    (strlen(r->query_value) != (size_t)n || memcmp(r->query_value, buf, (size_t)n)))
			return false;
	}
	return true;
}

const struct sl_route *sl_route_match(const struct sl_policy *p, const struct sl_request *req)
{
	bool icase = !p->normalize.case_sensitive;

	for (size_t i = 0; i < p->nroutes; i++)
		if (route_matches(&p->routes[i], req, icase))
			return &p->routes[i];
	return NULL;
}

/* ---- all descriptors ---- */

/* The `ip` descriptor: IPv4 as it is; IPv6 cut to identify.ip.ipv6_prefix
 * bits and written "net::/bits" (one household or host gets a /64 and
 * picks any address in it, so per-/128 counting would not limit it). */
static void ip_key(const struct sl_policy *p, struct sl_ipaddr *a, char *buf, size_t cap)
{
	unsigned bits = p->identify.ipv6_prefix;
	size_t n;

	if (a->family != AF_INET6 || bits == 0 || bits >= 128) {
		sl_ip_format(a, buf, cap);
		return;
	}
	for (unsigned i = 0; i < 16; i++) {
		unsigned keep = bits >= 8 * (i + 1) ? 8 : bits > 8 * i ? bits - 8 * i : 0;

		a->addr[i] &= (uint8_t)(0xff00u >> keep);
	}
	sl_ip_format(a, buf, cap);
	n = strlen(buf);
	if (n + 5 <= cap) {
		buf[n++] = '/';
		if (bits >= 100)
			buf[n++] = (char)('0' + bits / 100);
		if (bits >= 10)
			buf[n++] = (char)('0' + bits / 10 % 10);
		buf[n++] = (char)('0' + bits % 10);
		buf[n] = '\0';
	}
}

int sl_identify(struct sl_eval *ev, const struct sl_policy *p, const struct sl_request *req)
{
	struct sl_ipaddr ip;
	int rc;

	ev->ip[0] = '\0';
	ev->key = (struct sl_str){NULL, 0};
	ev->account = NULL;
	ev->plan = NULL;
	ev->route = NULL;
	ev->account_name = (struct sl_str){NULL, 0};
	ev->key_state = SL_KEY_NONE;
	ev->scratchused = 0;
	ev->live_found = false;
	ev->live.nover = 0;
	ev->live.suspended = false;

	if (sl_client_ip(p, req, &ip) == 0)
		ip_key(p, &ip, ev->ip, sizeof(ev->ip));

	rc = identify_key(ev, p, req);
	if (rc != 0)
		return rc;
	/* /v1/decide: an account named directly, when no key identified one. */
	if (ev->account == NULL && !ev->live_found && req->account.len > 0) {
		ev->account = account_by_name(p, req->account);
		if (ev->account != NULL) {
			ev->plan = plan_of(p, ev->account);
		} else if (p->live != NULL && p->live->by_name(p->live, req->account.p,
		                                               req->account.len, &ev->live) == 1) {
			uint8_t ks = ev->key_state;

			use_live(ev, p);
			ev->key_state = ks;
		} else {
			ev->account_name = scratch_copy(ev, req->account);
		}
	}
	if (ev->account != NULL)
		ev->account_name = (struct sl_str){ev->account->name, strlen(ev->account->name)};
	if (req->plan.len > 0 && ev->account_name.len > 0) {
		const struct sl_plan *pl = plan_by_name(p, req->plan);

		if (pl != NULL)
			ev->plan = pl;
	}
	ev->route = sl_route_match(p, req);
	return 0;
}
