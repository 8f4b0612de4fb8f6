/* A small blocking HTTP/1.1 client for the admin API of a running daemon,
 * for the `sluice accounts` / `sluice keys` commands (adminclient.c). One
 * request per connection (Connection: close), bounded in time and size. */
#ifndef SLUICE_DAEMON_ADMINCLIENT_H
#define SLUICE_DAEMON_ADMINCLIENT_H

#include <stddef.h>
#include <sys/socket.h>

struct sl_admin_target {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char hostport[300]; /* for the Host header and messages */
	char token[512];    /* bearer token, "" for none */
	int timeout_ms;     /* connect, and each read/write */
};

struct sl_admin_reply {
	int status;
	char *body; /* malloc'd, NUL-terminated; the caller frees it */
	size_t len;
};

/* The admin listener of the config at path (admin.listen, resolved) and
 * the token: $SLUICE_ADMIN_TOKEN, else the config's admin.token. `url`
 * (http://HOST:PORT, may be NULL) replaces the address. Returns 0, or -1
 * with a message in err. */
int sl_admin_target_init(struct sl_admin_target *t, const char *config, const char *url,
                         char *err, size_t cap);

/* METHOD path (with its query) and an optional JSON body. Returns 0 with
 * out filled (any HTTP status), or -1 with a message in err (connect,
 * timeout, a malformed response). */
int sl_admin_request(const struct sl_admin_target *t, const char *method, const char *path,
                     const char *body, struct sl_admin_reply *out, char *err, size_t cap);

#endif
