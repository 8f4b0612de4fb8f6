/* config-tls.c: listeners[].tls and listeners[].upstream_tls load into
 * contexts (paths relative to the config file's directory, verify on by
 * default), and every refusal names the file:line:col of the value it is
 * about: a missing file, a key that does not match its certificate, an
 * unknown key, a missing key, upstream_tls on an http:// upstream, a bad
 * SNI name. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "test_config_fixture.h"
#include "tls/cert_fixture.h"

static char dir[64], rel[64]; /* /tmp/sluice-cfgtls-XXXXXX and its name */
static char cert_a[128], key_a[128], key_b[128], cert_b[128];

static int setup(void **unused)
{
	snprintf(dir, sizeof(dir), "/tmp/sluice-cfgtls-XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(rel, sizeof(rel), "%s", dir + 5); /* relative to /tmp, the fixture's dir */
	snprintf(cert_a, sizeof(cert_a), "%s/a.pem", dir);
	snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
	snprintf(cert_b, sizeof(cert_b), "%s/b.pem", dir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
	make_cert(cert_a, key_a);
	make_cert(cert_b, key_b);
	return 0;
}

static int teardown(void **unused)
{
	unlink(cert_a);
	unlink(key_a);
	unlink(cert_b);
	unlink(key_b);
	rmdir(dir);
	return 0;
}

static char yaml[2048];

static const char *cfg(const char *upstream, const char *extra)
{
	snprintf(yaml, sizeof(yaml),
	         "listeners:\n"
	         "  - name: gateway\n"
	         "    listen: \"127.0.0.1:18080\"\n"
	         "    mode: proxy\n"
	         "    upstream: %s\n"
	         "%s"
	         "limits:\n"
	         "  - { name: ip, key: ip, rate: 10/min }\n",
	         upstream, extra);
	return yaml;
}

static void expect_error(const char *text, const char *at, const char *what)
{
	struct sl_policy *p = NULL;
	size_t line, col;
	int rc = load_text(text, &p);
	assert_true(rc < 0);
	assert_null(p);
	pos_of(text, at, 1, &line, &col);
	if (find_diag(line, col, what) < 0) {
		fprintf(stderr, "want %zu:%zu: %s\n", line, col, what);
		dump_diag();
		fail();
	}
}

static void tls_loads_a_context_with_paths_relative_to_the_config(void **unused)
{
	char extra[512];
	struct sl_policy *p = NULL;
	char want[160];
	snprintf(extra, sizeof(extra), "    tls: { cert: %s/a.pem, key: %s/a.key }\n", rel, rel);
	assert_int_equal(load_text(cfg("static", extra), &p), 0);
	assert_non_null(p->listeners[0].tls_ctx);
	snprintf(want, sizeof(want), "/tmp/%s/a.pem", rel);
	assert_string_equal(p->listeners[0].tls.cert, want);
	assert_null(p->listeners[0].up_tls_ctx);
	sl_policy_unref(p);
}

static void an_https_upstream_verifies_against_the_system_store_by_default(void **unused)
{
	struct sl_policy *p = NULL;
	char extra[512];
	assert_int_equal(load_text(cfg("\"https://localhost:8443\"", ""), &p), 0);
	assert_non_null(p->listeners[0].up_tls_ctx);
	assert_true(p->listeners[0].up_tls.verify);
	assert_null(p->listeners[0].up_tls.ca);
	assert_null(p->listeners[0].up_tls.sni);
	assert_null(p->listeners[0].tls_ctx);
	sl_policy_unref(p);
	snprintf(extra, sizeof(extra),
	         "    upstream_tls: { ca: %s, verify: false, sni: api.internal }\n", cert_a);
	assert_int_equal(load_text(cfg("\"https://10.0.0.1\"", extra), &p), 0);
	assert_false(p->listeners[0].up_tls.verify);
	assert_string_equal(p->listeners[0].up_tls.sni, "api.internal");
	assert_string_equal(p->listeners[0].up_tls.ca, cert_a);
	sl_policy_unref(p);
}

static void refusals_name_the_value_they_are_about(void **unused)
{
	char extra[512];
	snprintf(extra, sizeof(extra), "    tls: { cert: nope.pem, key: %s }\n", key_a);
	expect_error(cfg("static", extra), "nope.pem",
	             "listener tls: cert file '/tmp/nope.pem': No such file");
	snprintf(extra, sizeof(extra), "    tls: { cert: %s, key: %s }\n", cert_a, key_b);
	expect_error(cfg("static", extra), key_b, "does not match cert file");
	snprintf(extra, sizeof(extra), "    tls: { cert: %s, key: %s, ciphers: ALL }\n", cert_a,
	         key_a);
	expect_error(cfg("static", extra), "ciphers", "unknown key 'ciphers'");
	snprintf(extra, sizeof(extra), "    tls: { key: %s }\n", key_a);
	expect_error(cfg("static", extra), "{ key", "missing required key 'cert'");
	expect_error(cfg("static", "    tls: on\n"), "on\n", "expected a map");
	snprintf(extra, sizeof(extra), "    upstream_tls: { ca: %s }\n", cert_a);
	expect_error(cfg("\"http://127.0.0.1:9\"", extra), "{ ca",
	             "upstream_tls applies to an https:// upstream only");
	expect_error(cfg("\"https://127.0.0.1:9\"", "    upstream_tls: { ca: none.pem }\n"),
	             "none.pem", "upstream_tls: ca file '/tmp/none.pem'");
	expect_error(cfg("\"https://127.0.0.1:9\"", "    upstream_tls: { sni: \"a b\" }\n"),
	             "\"a b\"", "is not a host name");
	expect_error(cfg("\"https://127.0.0.1:9\"", "    upstream_tls: { verify: maybe }\n"),
	             "maybe", "upstream_tls.verify");
	expect_error(cfg("\"ftp://127.0.0.1:9\"", ""), "\"ftp", "https://host:port");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(tls_loads_a_context_with_paths_relative_to_the_config),
	        cmocka_unit_test(an_https_upstream_verifies_against_the_system_store_by_default),
	        cmocka_unit_test(refusals_name_the_value_they_are_about),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
