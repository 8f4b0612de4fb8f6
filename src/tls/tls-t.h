/* Types of the TLS layer that other layers name: the settings a listener
 * or an upstream is configured with, and the opaque context and stream
 * handles. The config loader (policy) builds contexts from these settings,
 * so a missing file or a key that does not match its certificate is a
 * config error at load time, and a reload builds fresh contexts. */
#ifndef SLUICE_TLS_T_H
#define SLUICE_TLS_T_H

#include <stdbool.h>

/* A loaded SSL_CTX (server: certificate + key; client: trust store and
 * verification mode). Refcounted, shared by every worker thread. */
struct sl_tls_ctx;

/* One TLS session over a libuv TCP handle (tls.c). */
struct sl_tls;

/* A client session kept for resumption (an SSL_SESSION): one slot per
 * upstream and worker, so a new connection to an upstream resumes instead
 * of a full handshake. */
struct sl_tls_session;

/* listeners[].tls */
struct sl_tls_server_conf {
	char *cert; /* PEM chain path, made relative to the config file's dir */
	char *key;  /* PEM private key path, likewise */
};

/* listeners[].upstream_tls */
struct sl_tls_client_conf {
	char *ca;    /* PEM CA bundle path; NULL: the system store */
	bool verify; /* default true: chain and host name are checked */
	char *sni;   /* server name sent and verified; NULL: the upstream host */
};

#endif
