/* Listen addresses (`listeners[].listen`, `admin.listen`): "IPv4:PORT",
 * "[IPv6]:PORT", "NAME:PORT", or "*:PORT" / ":PORT" for every IPv4
 * interface. A NAME is resolved with getaddrinfo and its first address is
 * the one bound: the loader resolves it to refuse a name that does not
 * resolve at file:line:col, and the server resolves it once more when it
 * binds at start (never on reload: listeners are not rebound). */
#ifndef SLUICE_POLICY_LISTEN_H
#define SLUICE_POLICY_LISTEN_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* Parse and resolve s into *ss (its length in *len). May block on DNS for
 * a NAME: call it at load or start, never on a worker loop. Returns 0;
 * SL_EINVAL when s is not of a form above or its port is not 1-65535;
 * SL_ENOENT when NAME does not resolve. On failure err (cap bytes, may be
 * 0) says why, without s itself. */
int sl_listen_resolve(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                      size_t cap);

/* Whether a resolved address is loopback (127.0.0.0/8, ::1, or v4-mapped
 * 127.0.0.0/8). */
bool sl_listen_is_loopback(const struct sockaddr_storage *ss);

#endif
