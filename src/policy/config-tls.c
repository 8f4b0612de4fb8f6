/* Config of TLS on listeners and to upstreams: `listeners[].tls: {cert,
 * key}` and `listeners[].upstream_tls: {ca, verify, sni}`. The contexts are
 * built here, at load, so a certificate that cannot be read, a key that
 * does not match it or a CA bundle without certificates is reported at its
 * file:line:col by `sluice validate` and refused by a reload, and a reload
 * re-reads the files (a renewed certificate at the same path is picked up
 * by the handshakes after it). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "policy/config-int.h"
#include "tls/tls.h"

static char *path_of(struct cfg *c, const yaml_node_t *n, const char *what)
{
	return cfg_relative(c, n, cfg_strdup(c, n, what));
}

static bool valid_sni(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > 253)
		return false;
	for (const char *p = s; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-' || *p == '.'))
			return false;
	return true;
}

static void server_tls(struct cfg *c, const yaml_node_t *n, struct sl_listener_conf *l)
{
	static const char *const keys[] = {"cert", "key", NULL};
	yaml_node_t *v[2];
	char err[256];

	if (!cfg_is_map(n)) {
		cfg_err(c, n, "listener tls: expected a map {cert: FILE.pem, key: FILE.pem}");
		return;
	}
	if (!cfg_fields(c, n, "listener tls", keys, v))
		return;
	if (!v[0])
		cfg_err(c, n, "listener tls: missing required key 'cert' (PEM certificate chain)");
	else
		l->tls.cert = path_of(c, v[0], "tls.cert");
	if (!v[1])
		cfg_err(c, n, "listener tls: missing required key 'key' (PEM private key)");
	else
		l->tls.key = path_of(c, v[1], "tls.key");
	if (!l->tls.cert || !l->tls.key)
		return;
	if (sl_tls_server_ctx(&l->tls_ctx, l->tls.cert, l->tls.key, err, sizeof(err)) < 0)
		/* point at the file the message is about */
		cfg_err(c, strncmp(err, "key", 3) == 0 ? v[1] : v[0], "listener tls: %s", err);
}

/* Returns the node errors about the CA are reported at. */
static const yaml_node_t *client_tls(struct cfg *c, const yaml_node_t *n,
                                     struct sl_listener_conf *l)
{
	static const char *const keys[] = {"ca", "verify", "sni", NULL};
	yaml_node_t *v[3] = {NULL, NULL, NULL};

	if (n && !cfg_is_map(n)) {
		cfg_err(c, n,
		        "upstream_tls: expected a map {ca: FILE.pem, verify: true, sni: NAME}");
		return n;
	}
	if (n && !cfg_fields(c, n, "upstream_tls", keys, v))
		return n;
	if (v[0])
		l->up_tls.ca = path_of(c, v[0], "upstream_tls.ca");
	if (v[1])
		cfg_bool(c, v[1], "upstream_tls.verify", &l->up_tls.verify);
	if (v[2] && (l->up_tls.sni = cfg_strdup(c, v[2], "upstream_tls.sni")) &&
	    !valid_sni(l->up_tls.sni))
		cfg_err(c, v[2], "upstream_tls.sni: '%s' is not a host name", l->up_tls.sni);
	return v[0] ? v[0] : n;
}

void cfg_listener_tls(struct cfg *c, const yaml_node_t *item, const yaml_node_t *tls,
                      const yaml_node_t *up, struct sl_listener_conf *l)
{
	bool https = l->upstream && strncmp(l->upstream, "https://", 8) == 0;
	char err[256];

	if (tls)
		server_tls(c, tls, l);
	l->up_tls.verify = true;
	if (up && !https) {
		cfg_err(c, up, "upstream_tls applies to an https:// upstream only");
		return;
	}
	if (!https)
		return;
	size_t nerr = c->nerr;
	const yaml_node_t *at = client_tls(c, up, l);
	if (c->nerr != nerr)
		return; /* a bad value above: no context to build */
	if (sl_tls_client_ctx(&l->up_tls_ctx, l->up_tls.ca, l->up_tls.verify, err, sizeof(err)) < 0)
		cfg_err(c, at ? at : item, "upstream_tls: %s", err);
}

void cfg_tls_free(struct sl_listener_conf *l)
{
	free(l->tls.cert);
	free(l->tls.key);
	sl_tls_ctx_unref(l->tls_ctx);
	free(l->up_tls.ca);
	free(l->up_tls.sni);
	sl_tls_ctx_unref(l->up_tls_ctx);
}
