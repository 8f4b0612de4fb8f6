/* TLS over libuv with OpenSSL: contexts (loaded once per config) and a
 * stream that wraps a uv_tcp_t with an SSL object fed through a BIO pair.
 * The stream mirrors the libuv calls the connection code already makes
 * (read_start/read_stop, write, try-write), so the plain path keeps its
 * direct uv_* calls and a TLS connection differs by one branch per call.
 * Thread: a context may be shared by every thread; a stream belongs to the
 * loop of its TCP handle. */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <stddef.h>
#include <uv.h>
#include "tls/tls-t.h"

/* A server context for PEM files cert (chain) and key: TLS 1.2 and 1.3,
 * no compression, no renegotiation, server cipher preference, a session
 * cache and tickets, ALPN http/1.1. Returns 0 with *out (one reference),
 * or a negative SL_E* code with the reason in err (cap bytes): a file that
 * cannot be read, a PEM that does not parse, a key that does not match
 * the certificate. */
int sl_tls_server_ctx(struct sl_tls_ctx **out, const char *cert, const char *key, char *err,
                      size_t cap);

/* A client context trusting the PEM bundle ca (NULL: the system store);
 * verify false accepts any certificate (the connection is still
 * encrypted). ALPN http/1.1 is offered. Same returns as above. */
int sl_tls_client_ctx(struct sl_tls_ctx **out, const char *ca, bool verify, char *err, size_t cap);

void sl_tls_ctx_ref(struct sl_tls_ctx *x);
void sl_tls_ctx_unref(struct sl_tls_ctx *x); /* NULL is ignored */

/* A stream over tcp (initialised, on loop). host is NULL for the server
 * side (accept), else the client side connects to it: it is the SNI
 * (unless an IP literal) and the name verified; sess (client side, may be
 * NULL) is the slot the session to resume is taken from and the new one
 * the server issues is kept in; it must outlive the stream and belong to
 * the stream's thread. Returns NULL when out of memory. The stream owns an
 * idle handle: the owner closes it with sl_tls_close() and frees the
 * stream with sl_tls_free() only once done ran and the TCP handle is
 * closed. */
struct sl_tls *sl_tls_new(struct sl_tls_ctx *x, uv_loop_t *loop, uv_tcp_t *tcp, const char *host,
                          struct sl_tls_session **sess);

/* Forget the session kept in *sess (NULL is fine): its context changed, or
 * its owner goes away. */
void sl_tls_session_drop(struct sl_tls_session **sess);

/* Like uv_read_start / uv_read_stop on the TCP handle: read_cb gets
 * plaintext in buffers from alloc_cb (a 0-byte buffer gives UV_ENOBUFS),
 * UV_EOF at the peer's end, UV_EPROTO when the TLS session failed. The
 * handle passed to the callbacks is the TCP handle. Plaintext already
 * decrypted is delivered from the loop, never from inside this call. */
int sl_tls_read_start(struct sl_tls *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb);
void sl_tls_read_stop(struct sl_tls *t);

/* Like uv_write: bufs (at most 2) stay borrowed until cb runs, always from
 * the loop, with 0 or a negative UV error. Writes complete in order; at
 * most SL_TLS_WQ may be queued (else UV_ENOBUFS). */
#define SL_TLS_WQ 4
int sl_tls_write(struct sl_tls *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                 uv_write_cb cb);

/* Encrypt bufs and write them at once when the socket takes everything:
 * returns 1 and cb is never called. Otherwise the rest is queued like
 * sl_tls_write (returns 0, cb follows), or a negative UV error. */
int sl_tls_send(struct sl_tls *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                uv_write_cb cb);

/* Whether the session completed its handshake. */
bool sl_tls_established(const struct sl_tls *t);

/* Why the session failed ("certificate verify failed: ..."), or "". */
const char *sl_tls_error(const struct sl_tls *t);

/* Send close_notify when the socket takes it, drop what is queued (the
 * queued writes' callbacks run with UV_ECANCELED), close the idle handle;
 * done(arg) runs from its close callback. Call before uv_close on the TCP
 * handle, once. */
void sl_tls_close(struct sl_tls *t, void (*done)(void *arg), void *arg);

/* Free a closed stream (after done ran and the TCP handle closed). */
void sl_tls_free(struct sl_tls *t);

#endif
