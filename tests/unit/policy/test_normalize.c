/* Canonical form of a request (src/policy/normalize.c, and its use in
 * eval.c / identity.c): table-driven path and host cases (every spelling of
 * issue 10 item 6, the RFC 3986 section 5.2.4 / 5.4 dot-segment examples
 * that apply to an absolute path), refusals, buffer bounds, the no-copy
 * fast path; then through sl_eval_begin: every spelling matches the route
 * and keys the same counter, case and trailing-slash settings, Host
 * variants share a key, a key source given twice is refused, and IPv6
 * clients are keyed per identify.ip.ipv6_prefix. Config: the `normalize`
 * section, route paths made canonical at load, ipv6_prefix. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <setjmp.h>
#include <cmocka.h>
#include "eval_fixture.h"
#include "policy/normalize.h"
#include "policy/test_config_fixture.h"

static struct fixture F;
static struct sl_eval EV;

/* ---- the canonicaliser ---- */

struct path_case {
	const char *in;
	const char *want; /* NULL: refused with rc */
	int rc;
};

static const struct path_case path_cases[] = {
        /* already canonical: unchanged */
        {"/", "/", 0},
        {"/auth/login", "/auth/login", 0},
        {"/auth/login/", "/auth/login/", 0},
        {"/a%2Fb", "/a%2Fb", 0},
        {"/caf%C3%A9", "/caf%C3%A9", 0},
        {"/a/.b/..c/b.", "/a/.b/..c/b.", 0},
        {"/AUTH/login", "/AUTH/login", 0}, /* case is a matching rule, not a rewrite */
        {"*", "*", 0},                     /* OPTIONS *: not a path */
        {"", "", 0},
        /* issue 10 item 6 spellings of /auth/login */
        {"//auth/login", "/auth/login", 0},
        {"/./auth/login", "/auth/login", 0},
        {"/auth/%6cogin", "/auth/login", 0},
        {"/auth/%6Cogin", "/auth/login", 0},
        {"/auth//login", "/auth/login", 0},
        {"/auth/./login", "/auth/login", 0},
        {"/x/../auth/login", "/auth/login", 0},
        {"/%61uth/login", "/auth/login", 0},
        {"/auth/login%2f", "/auth/login%2F", 0}, /* %2F stays encoded, hex upper-cased */
        {"/auth/%2e/login", "/auth/login", 0},   /* %2E is '.', then a dot segment */
        {"/auth/x/%2e%2E/login", "/auth/login", 0},
        /* unreserved escapes decoded, others upper-cased */
        {"/%7euser", "/~user", 0},
        {"/%2d%2E%5f%7E%30%41%7a", "/-._~0Az", 0},
        {"/a%3fb%23c", "/a%3Fb%23c", 0},
        {"/caf%c3%a9", "/caf%C3%A9", 0},
        {"/a%20b", "/a%20b", 0},
        /* RFC 3986 5.2.4 and the 5.4 examples that reach an absolute path */
        {"/a/b/c/./../../g", "/a/g", 0},
        {"/a/b/c/g;x=1/./y", "/a/b/c/g;x=1/y", 0},
        {"/a/b/c/../../../g", "/g", 0},
        {"/a/b/c/../../../../g", "/g", 0}, /* above the root stays at the root */
        {"/a/b/c/.", "/a/b/c/", 0},
        {"/a/b/c/./", "/a/b/c/", 0},
        {"/a/b/c/..", "/a/b/", 0},
        {"/a/b/c/../", "/a/b/", 0},
        {"/a/b/c/../g", "/a/b/g", 0},
        {"/a/b/c/../..", "/a/", 0},
        {"/a/b/c/../../g", "/a/g", 0},
        {"/./g", "/g", 0},
        {"/../g", "/g", 0},
        {"/g.", "/g.", 0},
        {"/.g", "/.g", 0},
        {"/g..", "/g..", 0},
        {"/..g", "/..g", 0},
        {"/a/./../g", "/g", 0},
        {"/a/./g/.", "/a/g/", 0},
        {"/a/g/./h", "/a/g/h", 0},
        {"/a/g/../h", "/a/h", 0},
        {"/..", "/", 0},
        {"/.", "/", 0},
        {"//", "/", 0},
        {"///a///b///", "/a/b/", 0},
        {"/a//..//b", "/b", 0}, /* slashes merged first, as nginx merge_slashes */
        /* refused */
        {"/a%zz", NULL, SL_EINVAL},
        {"/a%4", NULL, SL_EINVAL},
        {"/a%", NULL, SL_EINVAL},
        {"/a%g1", NULL, SL_EINVAL},
        {"/a%00b", NULL, SL_EINVAL},
        {"/login%00.json", NULL, SL_EINVAL},
};

static void path_cases_are_canonical(void **state)
{
	char buf[256];

	for (size_t i = 0; i < sizeof(path_cases) / sizeof(path_cases[0]); i++) {
		const struct path_case *c = &path_cases[i];
		struct sl_str out = {NULL, 0};
		int rc = sl_norm_path(S(c->in), buf, sizeof(buf), &out, NULL);

		if (c->want == NULL) {
			if (rc != c->rc)
				fail_msg("'%s': rc %d, want %d", c->in, rc, c->rc);
			continue;
		}
		if (rc != 0 || out.len != strlen(c->want) || memcmp(out.p, c->want, out.len) != 0)
			fail_msg("'%s': rc %d '%.*s', want '%s'", c->in, rc, (int)out.len,
			         out.p ? out.p : "", c->want);
		/* idempotent: the canonical form is its own canonical form */
		struct sl_str again;
		char buf2[256];

		assert_int_equal(sl_norm_path(out, buf2, sizeof(buf2), &again, NULL), 0);
		assert_ptr_equal(again.p, out.p);
		assert_int_equal(again.len, out.len);
	}
}

static void canonical_path_is_not_copied(void **state)
{
	char buf[8];
	struct sl_str in = S("/v1/messages/batch%2F1?not-query"), out;

	in.len = 22; /* "/v1/messages/batch%2F1" */
	assert_int_equal(sl_norm_path(in, buf, sizeof(buf), &out, NULL), 0);
	assert_ptr_equal(out.p, in.p);
	assert_int_equal(out.len, in.len);
}

static void rewrite_that_does_not_fit_is_enomem(void **state)
{
	char buf[8];
	struct sl_str out;

	assert_int_equal(sl_norm_path(S("//abcdefghij"), buf, sizeof(buf), &out, NULL), SL_ENOMEM);
	assert_int_equal(sl_norm_path(S("//abcdefg"), buf, sizeof(buf), &out, NULL), 0);
	assert_int_equal(out.len, 8);
	assert_memory_equal(out.p, "/abcdefg", 8);
	assert_int_equal(sl_norm_path(S("/a%c3%a9"), buf, 6, &out, NULL), SL_ENOMEM);
}

static void upper_case_is_reported_for_case_blind_keys(void **state)
{
	char buf[64];
	struct sl_str out;
	bool up = true;

	assert_int_equal(sl_norm_path(S("/auth/login"), buf, sizeof(buf), &out, &up), 0);
	assert_false(up);
	assert_int_equal(sl_norm_path(S("/auth/Login"), buf, sizeof(buf), &out, &up), 0);
	assert_true(up);
	assert_int_equal(sl_norm_path(S("//auth/%4cogin"), buf, sizeof(buf), &out, &up), 0);
	assert_true(up); /* decoded 'L' */
	assert_int_equal(sl_norm_path(S("//auth/%6cogin"), buf, sizeof(buf), &out, &up), 0);
	assert_false(up);
	assert_int_equal(sl_norm_path(S("*"), buf, sizeof(buf), &out, &up), 0);
	assert_false(up);
}

static void match_path_folds_one_trailing_slash(void **state)
{
	struct sl_str s = sl_norm_match_path(S("/auth/login/"), true);

	assert_int_equal(s.len, 11);
	assert_int_equal(sl_norm_match_path(S("/auth/login/"), false).len, 12);
	assert_int_equal(sl_norm_match_path(S("/"), true).len, 1);
	assert_int_equal(sl_norm_match_path(S("/a"), true).len, 2);
}

struct host_case {
	const char *in, *want;
};

static const struct host_case host_cases[] = {
        {"a.example", "a.example"},
        {"a.example:8080", "a.example:8080"},
        {"127.0.0.1:8080", "127.0.0.1:8080"},
        {"", ""},
        {"A.Example", "a.example"},
        {"a.example:80", "a.example"},
        {"a.example:443", "a.example"},
        {"a.example:", "a.example"},
        {"a.example.", "a.example"},
        {"A.EXAMPLE.:80", "a.example"},
        {"a.example:0080", "a.example"},
        {"a.example:08080", "a.example:8080"},
        {"a.example:0", "a.example:0"},
        {"  a.example  ", "a.example"},
        {"[::1]", "[::1]"},
        {"[::1]:80", "[::1]"},
        {"[2001:DB8::1]:8080", "[2001:db8::1]:8080"},
        {"[2001:db8::1].", "[2001:db8::1]."}, /* not a name: left as it is */
        {"a.example:x80", "a.example:x80"},
};

static void host_cases_are_canonical(void **state)
{
	char buf[64];

	for (size_t i = 0; i < sizeof(host_cases) / sizeof(host_cases[0]); i++) {
		const struct host_case *c = &host_cases[i];
		struct sl_str out;
		int rc = sl_norm_host(S(c->in), buf, sizeof(buf), &out);

		if (rc != 0 || out.len != strlen(c->want) || memcmp(out.p, c->want, out.len) != 0)
			fail_msg("'%s': rc %d '%.*s', want '%s'", c->in, rc, (int)out.len, out.p,
			         c->want);
	}
	struct sl_str out, in = S("a.example:8080");

	assert_int_equal(sl_norm_host(in, buf, 4, &out), 0); /* canonical: no copy */
	assert_ptr_equal(out.p, in.p);
	assert_int_equal(sl_norm_host(S("A.EXAMPLE"), buf, 4, &out), SL_ENOMEM);
}

/* ---- against a literal reference, on random inputs ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (unsigned)(rng % n);
}

static int ref_hex(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* RFC 3986 6.2.2 spelled out: escapes, merged slashes, then the five
 * steps of 5.2.4 on an input and an output buffer. Returns the length,
 * or -1 for a refused path. */
static int ref_path(const char *in, char *out)
{
	char a[128], b[128];
	size_t n = 0, o = 0, len = strlen(in);

	for (size_t i = 0; i < len; i++) {
		if (in[i] == '%') {
			int hi = i + 2 < len ? ref_hex(in[i + 1]) : -1;
			int lo = i + 2 < len ? ref_hex(in[i + 2]) : -1;
			int v;

			if (hi < 0 || lo < 0 || (v = hi * 16 + lo) == 0)
				return -1;
			if (strchr("-._~", v) || (v >= 'A' && v <= 'Z') || (v >= 'a' && v <= 'z') ||
			    (v >= '0' && v <= '9'))
				a[n++] = (char)v;
			else
				n += (size_t)snprintf(a + n, 4, "%%%02X", v);
			i += 2;
		} else if (!(in[i] == '/' && n > 0 && a[n - 1] == '/')) {
			a[n++] = in[i];
		}
	}
	a[n] = '\0';
	char *p = a;
	while (*p) {
		if (!strncmp(p, "/./", 3)) {
			p += 2;
		} else if (!strcmp(p, "/.")) {
			p[1] = '\0';
		} else if (!strncmp(p, "/../", 4) || !strcmp(p, "/..")) {
			if (p[3] == '/')
				p += 3;
			else
				p[1] = '\0';
			while (o > 0 && b[o - 1] != '/')
				o--;
			if (o > 0)
				o--;
		} else {
			do
				b[o++] = *p++;
			while (*p && *p != '/');
		}
	}
	memcpy(out, b, o);
	out[o] = '\0';
	return (int)o;
}

static void paths_agree_with_the_rfc_steps(void **state)
{
	static const char alphabet[] = "/./.%2eEfF07aBz-~";
	char in[32], want[128], buf[128];

	for (int t = 0; t < 200000; t++) {
		size_t len = 1 + rnd(24);
		struct sl_str out;
		int wl, rc;

		in[0] = '/';
		for (size_t i = 1; i < len; i++)
			in[i] = alphabet[rnd(sizeof(alphabet) - 1)];
		in[len] = '\0';
		wl = ref_path(in, want);
		rc = sl_norm_path(S(in), buf, sizeof(buf), &out, NULL);
		if (wl < 0) {
			if (rc != SL_EINVAL)
				fail_msg("'%s': rc %d, want refused", in, rc);
			continue;
		}
		if (rc != 0 || out.len != (size_t)wl || memcmp(out.p, want, out.len) != 0)
			fail_msg("'%s': rc %d '%.*s', want '%s'", in, rc, (int)out.len, out.p,
			         want);
	}
}

/* The same rules as sl_norm_host, written plainly. */
static void ref_host(const char *in, char *out)
{
	size_t n = strlen(in), h = n, o = 0;
	const char *port = NULL;
	const char *c = strchr(in, ':');

	if (c != NULL && strchr(c + 1, ':') == NULL) {
		h = (size_t)(c - in);
		port = c + 1;
	}
	size_t hl = h;
	while (hl > 0 && in[hl - 1] == '.')
		hl--;
	for (size_t i = 0; i < hl; i++)
		out[o++] = (char)(in[i] >= 'A' && in[i] <= 'Z' ? in[i] + 32 : in[i]);
	if (port != NULL && *port) {
		bool digits = strspn(port, "0123456789") == strlen(port);
		const char *q = port;

		if (digits)
			while (q[0] == '0' && q[1])
				q++;
		if (!digits || (strcmp(q, "80") && strcmp(q, "443"))) {
			out[o++] = ':';
			memcpy(out + o, q, strlen(q));
			o += strlen(q);
		}
	}
	out[o] = '\0';
}

static void hosts_agree_with_the_plain_rules(void **state)
{
	static const char alphabet[] = "aZ.:084-3x";
	char in[32], want[64], buf[64];

	for (int t = 0; t < 200000; t++) {
		size_t len = 1 + rnd(20);
		struct sl_str out;

		for (size_t i = 0; i < len; i++)
			in[i] = alphabet[rnd(sizeof(alphabet) - 1)];
		in[len] = '\0';
		ref_host(in, want);
		assert_int_equal(sl_norm_host(S(in), buf, sizeof(buf), &out), 0);
		if (out.len != strlen(want) || memcmp(out.p, want, out.len) != 0)
			fail_msg("'%s': '%.*s', want '%s'", in, (int)out.len, out.p, want);
	}
}

/* ---- through sl_eval_begin ---- */

static const char *const spellings[] = {
        "/oauth/token",   "/oauth/token/",      "//oauth/token",   "/./oauth/token",
        "/oauth/%74oken", "/OAUTH/token",       "/oauth//token",   "/x/../oauth/token",
        "/oauth/token/.", "/%6F%61uth/TOKEN//", "/oauth/./token/", "/../oauth/token",
};

static void route_of(const char *path, const char *want)
{
	struct freq q;

	freq_init(&q, "POST", path, NULL);
	freq_peer(&q, "203.0.113.7");
	freq_header(&q, "X-Api-Key", "sk_bob");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	if (want == NULL ? EV.route != NULL : EV.route == NULL || strcmp(EV.route->name, want))
		fail_msg("'%s': route %s, want %s", path, EV.route ? EV.route->name : "none",
		         want ? want : "none");
}

static void every_spelling_matches_the_route(void **state)
{
	fx_init(&F);
	for (size_t i = 0; i < sizeof(spellings) / sizeof(spellings[0]); i++)
		route_of(spellings[i], "oauth");
	route_of("/oauth/token%2F", "any");
	route_of("/oauth/tokens", "any");
	route_of("/V1/Messages/x", "batch");
	route_of("/v1//messages", "batch");
	route_of("/v1/messages/../other", "any");
}

static void case_and_trailing_slash_settings(void **state)
{
	fx_init(&F);
	F.p.normalize.case_sensitive = true;
	route_of("/OAUTH/token", "any");
	route_of("/oauth/token/", "oauth");
	route_of("/oauth/%74oken", "oauth");
	F.p.normalize.case_sensitive = false;
	F.p.normalize.strict_slash = true;
	route_of("/oauth/token/", "any");
	route_of("/OAUTH/token", "oauth");
	route_of("//oauth/./token", "oauth");
}

static void canonical_forms_are_kept_for_the_proxy(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/a/./b//c/%7e", NULL);
	freq_peer(&q, "203.0.113.7");
	q.r.host = S("API.Example.:80");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	assert_int_equal(EV.path.len, 8);
	assert_memory_equal(EV.path.p, "/a/b/c/~", 8);
	assert_int_equal(EV.host.len, 11);
	assert_memory_equal(EV.host.p, "api.example", 11);
	/* trailing slash and case are kept for forwarding: matching rules only */
	freq_init(&q, "GET", "/A/", NULL);
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	assert_int_equal(EV.path.len, 3);
	assert_memory_equal(EV.path.p, "/A/", 3);
}

static void malformed_or_too_long_paths_are_refused(void **state)
{
	static char path[SL_EVAL_PATHBUF + 64];
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/a%zz", NULL);
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), SL_EINVAL);
	assert_int_equal(EV.batch.n, 0);
	freq_init(&q, "GET", "/a%00", NULL);
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), SL_EINVAL);

	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	freq_init(&q, "GET", path, NULL); /* canonical: no copy, no bound */
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	path[1] = '/'; /* now it needs a rewrite, longer than the buffer */
	freq_init(&q, "GET", path, NULL);
	freq_peer(&q, "203.0.113.7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), SL_ENOMEM);
}

/* The key bytes of the one check of a policy whose only limit is keyed
 * on `kind`. */
static void key_of(uint8_t kind, const char *path, const char *host, char *out, size_t *len)
{
	struct freq q;

	fx_init(&F);
	fx_limit(&F.limits[0], "k", 0, kind, true, 10, SL_NS_PER_MIN);
	F.p.nlimits = 1;
	F.p.nroutes = 0;
	F.p.identify.key_required = false;
	freq_init(&q, "GET", path, NULL);
	freq_peer(&q, "203.0.113.7");
	q.r.host = S(host);
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	assert_int_equal(EV.nchecks, 1);
	*len = EV.checks[0].key_len;
	memcpy(out, EV.checks[0].key, *len);
}

static void spellings_key_the_same_path_and_host(void **state)
{
	char want[256], got[256];
	size_t wl, gl;

	key_of(SL_DESC_PATH, "/auth/login", "a.example", want, &wl);
	for (size_t i = 0; i < 5; i++) {
		static const char *const p[] = {"/auth/login/", "//auth/login", "/./auth/login",
		                                "/auth/%6cogin", "/AUTH/login"};
		key_of(SL_DESC_PATH, p[i], "a.example", got, &gl);
		assert_int_equal(gl, wl);
		assert_memory_equal(got, want, wl);
	}
	key_of(SL_DESC_PATH, "/auth/logout", "a.example", got, &gl);
	assert_false(gl == wl && memcmp(got, want, wl) == 0);

	key_of(SL_DESC_HOST, "/", "a.example", want, &wl);
	for (size_t i = 0; i < 4; i++) {
		static const char *const h[] = {"A.EXAMPLE", "a.example:80", "a.example.",
		                                "A.Example.:80"};
		key_of(SL_DESC_HOST, "/", h[i], got, &gl);
		assert_int_equal(gl, wl);
		assert_memory_equal(got, want, wl);
	}
	key_of(SL_DESC_HOST, "/", "a.example:8080", got, &gl);
	assert_false(gl == wl && memcmp(got, want, wl) == 0);
}

static int begin_with(struct freq *q)
{
	freq_peer(q, "203.0.113.7");
	return sl_eval_begin(&EV, &F.p, &q->r, T0);
}

static void key_source_given_twice_is_refused(void **state)
{
	struct freq q;

	fx_init(&F);
	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_header(&q, "x-api-key", "sk_acme");
	assert_int_equal(begin_with(&q), SL_EINVAL);
	assert_int_equal(EV.batch.n, 0);

	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "X-Api-Key", "sk_bob");
	freq_header(&q, "X-Api-Key", "sk_bob"); /* even the same value: which is a guess */
	assert_int_equal(begin_with(&q), SL_EINVAL);

	freq_init(&q, "GET", "/x", NULL);
	freq_header(&q, "Authorization", "Bearer sk_bob");
	freq_header(&q, "Authorization", "Bearer sk_acme");
	assert_int_equal(begin_with(&q), SL_EINVAL);

	freq_init(&q, "GET", "/x", "key=sk_bob&page=2&key=sk_acme");
	assert_int_equal(begin_with(&q), SL_EINVAL);
	freq_init(&q, "GET", "/x", "k%65y=sk_bob&key=");
	assert_int_equal(begin_with(&q), SL_EINVAL);

	/* once each is fine, and a source after the one that answered is not read */
	freq_init(&q, "GET", "/x", "key=sk_bob&key=sk_acme");
	freq_header(&q, "X-Api-Key", "sk_bob");
	assert_int_equal(begin_with(&q), 0);
	assert_string_equal(EV.account->name, "bob");
	freq_init(&q, "GET", "/x", "key=sk_bob&keys=1");
	freq_header(&q, "X-Other", "1");
	freq_header(&q, "X-Other", "2");
	assert_int_equal(begin_with(&q), 0);
	assert_string_equal(EV.account->name, "bob");
}

static const char *ip_of(const char *peer, unsigned prefix)
{
	struct freq q;

	fx_init(&F);
	F.p.identify.ipv6_prefix = (uint8_t)prefix;
	F.p.identify.key_required = false;
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, peer);
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	return EV.ip;
}

static void ipv6_clients_are_keyed_per_prefix(void **state)
{
	assert_string_equal(ip_of("2001:db9:1:2::a", 64), "2001:db9:1:2::/64");
	assert_string_equal(ip_of("2001:db9:1:2:ffff:1:2:3", 64), "2001:db9:1:2::/64");
	assert_string_equal(ip_of("2001:db9:1:3::a", 64), "2001:db9:1:3::/64");
	assert_string_equal(ip_of("2001:db9:1:2::a", 48), "2001:db9:1::/48");
	assert_string_equal(ip_of("2001:db9:1:2::a", 56), "2001:db9:1::/56");
	assert_string_equal(ip_of("2001:db9:1:2ff::a", 60), "2001:db9:1:2f0::/60");
	assert_string_equal(ip_of("2001:db9:1:2::a", 128), "2001:db9:1:2::a");
	assert_string_equal(ip_of("2001:db9:1:2::a", 0), "2001:db9:1:2::a");
	assert_string_equal(ip_of("::1", 64), "::/64");
	assert_string_equal(ip_of("::ffff:203.0.113.7", 64), "203.0.113.7"); /* v4-mapped */
	assert_string_equal(ip_of("203.0.113.7", 64), "203.0.113.7");
}

static void trusted_proxy_walk_uses_full_addresses(void **state)
{
	struct freq q;

	/* 2001:db8::/32 is trusted in the fixture: the walk compares full
	 * addresses, and only the client found is cut to its prefix */
	fx_init(&F);
	F.p.identify.ipv6_prefix = 64;
	F.p.identify.key_required = false;
	freq_init(&q, "GET", "/x", NULL);
	freq_peer(&q, "2001:db8::1");
	freq_header(&q, "X-Forwarded-For", "2001:db9:aa:bb::5, 2001:db8::7");
	assert_int_equal(sl_eval_begin(&EV, &F.p, &q.r, T0), 0);
	assert_string_equal(EV.ip, "2001:db9:aa:bb::/64");
}

/* ---- config ---- */

static void normalize_section_loads(void **state)
{
	struct sl_policy *p;

	assert_int_equal(load_text("limits: [ { name: a, key: ip, rate: 1/s } ]\n", &p), 0);
	assert_false(p->normalize.case_sensitive);
	assert_false(p->normalize.strict_slash);
	assert_false(p->normalize.forward);
	assert_int_equal(p->identify.ipv6_prefix, 64);
	sl_policy_unref(p);

	assert_int_equal(load_text("normalize: { case: sensitive, trailing_slash: strict, forward: "
	                           "canonical }\nidentify: { ip: { ipv6_prefix: 56 } }\n",
	                           &p),
	                 0);
	assert_true(p->normalize.case_sensitive);
	assert_true(p->normalize.strict_slash);
	assert_true(p->normalize.forward);
	assert_int_equal(p->identify.ipv6_prefix, 56);
	sl_policy_unref(p);

	assert_int_equal(load_text("normalize: forward\n", &p), 0);
	assert_false(p->normalize.case_sensitive);
	assert_false(p->normalize.strict_slash);
	assert_true(p->normalize.forward);
	sl_policy_unref(p);
}

static void route_paths_are_made_canonical_at_load(void **state)
{
	static const char yaml[] = "routes:\n"
	                           "  - { name: a, match: { path: \"/auth/./%6cogin/\" } }\n"
	                           "  - { name: b, match: { path: \"//v1/x/*\" } }\n"
	                           "  - { name: c, match: { path: \"/\" } }\n";
	struct sl_policy *p;

	assert_int_equal(load_text(yaml, &p), 0);
	assert_string_equal(p->routes[0].path, "/auth/login");
	assert_int_equal(p->routes[0].path_len, 11);
	assert_string_equal(p->routes[1].path, "/v1/x/");
	assert_int_equal(p->routes[1].path_match, SL_PATH_PREFIX);
	assert_string_equal(p->routes[2].path, "/");
	sl_policy_unref(p);

	assert_int_equal(load_text("normalize: { trailing_slash: strict }\n"
	                           "routes: [ { name: a, match: { path: /a/ } } ]\n",
	                           &p),
	                 0);
	assert_string_equal(p->routes[0].path, "/a/");
	sl_policy_unref(p);
}

struct err_case {
	const char *yaml, *needle, *msg;
};

static const struct err_case errors[] = {
        {"normalize: { case: upper }\n", "upper",
         "normalize.case must be insensitive or sensitive"},
        {"normalize: { trailing_slash: yes }\n", "yes",
         "normalize.trailing_slash must be fold or strict"},
        {"normalize: { forward: true }\n", "true",
         "normalize.forward must be original or canonical"},
        {"normalize: { cases: sensitive }\n", "cases", "unknown key 'cases' in normalize"},
        {"normalize: backward\n", "backward", "or the word forward, not 'backward'"},
        {"identify: { ip: { ipv6_prefix: 129 } }\n", "129", "must be between 1 and 128"},
        {"identify: { ip: { ipv6_prefix: 0 } }\n", "0", "must be between 1 and 128"},
        {"routes: [ { name: a, match: { path: \"/a%zz\" } } ]\n", "\"/a%zz\"",
         "match.path '/a%zz': a '%' must start an escape"},
        {"routes: [ { name: a, match: { path: \"/a%00/*\" } } ]\n", "\"/a%00", "%00 is refused"},
};

static void normalize_errors_point_at_the_value(void **state)
{
	for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
		struct sl_policy *p = NULL;
		size_t line, col;

		assert_int_equal(load_text(errors[i].yaml, &p), SL_ECONFIG);
		pos_of(errors[i].yaml, errors[i].needle, 1, &line, &col);
		if (find_diag(line, col, errors[i].msg) < 0) {
			dump_diag();
			fail_msg("case %zu: no '%s' at %zu:%zu", i, errors[i].msg, line, col);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(path_cases_are_canonical),
	        cmocka_unit_test(canonical_path_is_not_copied),
	        cmocka_unit_test(rewrite_that_does_not_fit_is_enomem),
	        cmocka_unit_test(upper_case_is_reported_for_case_blind_keys),
	        cmocka_unit_test(match_path_folds_one_trailing_slash),
	        cmocka_unit_test(host_cases_are_canonical),
	        cmocka_unit_test(paths_agree_with_the_rfc_steps),
	        cmocka_unit_test(hosts_agree_with_the_plain_rules),
	        cmocka_unit_test(every_spelling_matches_the_route),
	        cmocka_unit_test(case_and_trailing_slash_settings),
	        cmocka_unit_test(canonical_forms_are_kept_for_the_proxy),
	        cmocka_unit_test(malformed_or_too_long_paths_are_refused),
	        cmocka_unit_test(spellings_key_the_same_path_and_host),
	        cmocka_unit_test(key_source_given_twice_is_refused),
	        cmocka_unit_test(ipv6_clients_are_keyed_per_prefix),
	        cmocka_unit_test(trusted_proxy_walk_uses_full_addresses),
	        cmocka_unit_test(normalize_section_loads),
	        cmocka_unit_test(route_paths_are_made_canonical_at_load),
	        cmocka_unit_test(normalize_errors_point_at_the_value),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
