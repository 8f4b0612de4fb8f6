/* TLS over libuv: an SSL object whose only I/O is a BIO pair. The network
 * half of the pair is filled straight from the socket (the read buffer
 * libuv fills is the pair's own ring, BIO_nwrite0) and drained straight to
 * it (BIO_nread0, then uv_try_write; uv_write for what the socket does not
 * take), so ciphertext is never copied and a connection's memory is the
 * two fixed rings. One function, pump(), moves everything that can move:
 * handshake, queued plaintext into records, records onto the socket,
 * records into plaintext for the reader. It runs callbacks into the owner
 * only from loop callbacks (a socket read, a write completion, the idle
 * "kick"), never from inside a call the owner made, which is the libuv
 * contract the connection code was written against. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <sluice/error.h>
#include "tls/tls.h"

#define RING_IN  20480 /* bytes: one full record (16 KiB + 2 KiB overhead) and change */
#define RING_OUT 32768 /* bytes: ciphertext waiting for the socket */
#define READ_MAX 65536 /* bytes asked of the owner's alloc callback */

/* Mozilla "intermediate" TLS 1.2 suites (forward secret AEAD only); TLS
 * 1.3 suites are OpenSSL's defaults. */
#define CIPHERS_12                                                                                 \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"                               \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"                               \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

static const unsigned char alpn_h1[] = "\x08http/1.1";

struct sl_tls_ctx {
	SSL_CTX *ctx;
	unsigned refs; /* atomic */
	bool server;
	bool verify;
};

struct wq {
	uv_write_t *req;
	uv_write_cb cb;
	uv_buf_t bufs[2];
	unsigned nbufs, i; /* i: the buffer being encrypted */
};

struct sl_tls {
	SSL *ssl;
	BIO *net; /* the network half of the pair */
	uv_loop_t *loop;
	uv_tcp_t *tcp;
	void *udata; /* the owner's tcp->data; tcp->data is this stream meanwhile */
	uv_idle_t kick;
	uv_write_t cw; /* ciphertext in flight */
	size_t cw_len; /* bytes of it */
	bool cw_busy;
	struct wq q[SL_TLS_WQ]; /* ring of queued writes */
	unsigned qhead, qn;
	unsigned nenc; /* leading queued writes whose plaintext is all in records */
	uv_alloc_cb ualloc;
	uv_read_cb uread;
	bool ureading; /* the owner reads */
	bool treading; /* the TCP handle reads */
	bool in_pump, again;
	bool fresh_in; /* ciphertext arrived that SSL_read has not seen */
	bool rd_wait;  /* SSL_read must write first and the out ring is full: cw_cb resumes */
	bool eof;      /* the TCP side ended (eof_err: UV_EOF or the read error) */
	bool eof_told;
	int eof_err;
	bool failed, fail_told;
	bool io_dead; /* a socket write failed: nothing more goes out */
	bool closing;
	void (*done)(void *arg);
	void *done_arg;
	char err[200];
};

/* ---- contexts ---- */

static int no_passphrase(char *buf, int size, int rw, void *u)
{
	return 0; /* an encrypted key is refused, never prompted for */
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned inlen, void *arg)
{
	unsigned char *sel;
	if (SSL_select_next_proto(&sel, outlen, alpn_h1, sizeof(alpn_h1) - 1, in, inlen) !=
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_ALERT_FATAL; /* RFC 7301: no_application_protocol */
	*out = sel;
	return SSL_TLSEXT_ERR_OK;
}

static void ssl_reason(char *err, size_t cap, const char *what)
{
	unsigned long e = ERR_peek_last_error();
	char buf[160];
	ERR_error_string_n(e, buf, sizeof(buf));
	snprintf(err, cap, "%s (%s)", what,
	         e ? (ERR_reason_error_string(e) ? ERR_reason_error_string(e) : buf) : "unknown");
	ERR_clear_error();
}

/* A regular file that can be opened: a FIFO or a device (/dev/stdin, say)
 * would block or never end the PEM reader. */
static bool readable(const char *what, const char *path, char *err, size_t cap)
{
	struct stat st;
	FILE *f;
	if (stat(path, &st) != 0) {
		snprintf(err, cap, "%s file '%s': %s", what, path, strerror(errno));
		return false;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(err, cap, "%s file '%s': not a regular file", what, path);
		return false;
	}
	if (!(f = fopen(path, "rb"))) {
		snprintf(err, cap, "%s file '%s': %s", what, path, strerror(errno));
		return false;
	}
	fclose(f);
	return true;
}

/* The ex_data slot of an SSL that holds its struct sl_tls_session **. */
static int sess_idx = -1;
static pthread_once_t sess_once = PTHREAD_ONCE_INIT;

static void sess_init(void)
{
	sess_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* A client session the server issued (TLS 1.3: after the handshake, in a
 * NewSessionTicket): it replaces the one kept in the stream's slot. Runs
 * on the stream's thread. Returns 1: the reference is kept. */
static int new_session(SSL *ssl, SSL_SESSION *s)
{
	struct sl_tls_session **slot = sess_idx >= 0 ? SSL_get_ex_data(ssl, sess_idx) : NULL;
	if (!slot)
		return 0;
	SSL_SESSION_free((SSL_SESSION *)*slot);
	*slot = (struct sl_tls_session *)s;
	return 1;
}

void sl_tls_session_drop(struct sl_tls_session **sess)
{
	if (!sess || !*sess)
		return;
	SSL_SESSION_free((SSL_SESSION *)*sess);
	*sess = NULL;
}

static struct sl_tls_ctx *ctx_new(bool server)
{
	struct sl_tls_ctx *x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (!x->ctx) {
		free(x);
		return NULL;
	}
	x->refs = 1;
	x->server = server;
	SSL_CTX_set_min_proto_version(x->ctx, TLS1_2_VERSION);
	SSL_CTX_set_options(x->ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	SSL_CTX_set_mode(x->ctx,
	                 SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_cipher_list(x->ctx, CIPHERS_12);
	SSL_CTX_set_default_passwd_cb(x->ctx, no_passphrase);
	return x;
}

int sl_tls_server_ctx(struct sl_tls_ctx **out, const char *cert, const char *key, char *err,
                      size_t cap)
{
	struct sl_tls_ctx *x;
	char why[160];

	*out = NULL;
	ERR_clear_error();
	if (!readable("cert", cert, err, cap) || !readable("key", key, err, cap))
		return SL_EINVAL;
	if (!(x = ctx_new(true))) {
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	SSL_CTX_set_options(x->ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	SSL_CTX_set_session_id_context(x->ctx, (const unsigned char *)"sluice", 6);
	SSL_CTX_set_session_cache_mode(x->ctx, SSL_SESS_CACHE_SERVER);
	SSL_CTX_set_alpn_select_cb(x->ctx, select_alpn, NULL);
	if (SSL_CTX_use_certificate_chain_file(x->ctx, cert) != 1) {
		snprintf(why, sizeof(why), "cert file '%s': not a PEM certificate chain", cert);
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(x->ctx, key, SSL_FILETYPE_PEM) != 1) {
		unsigned long e = ERR_peek_last_error();
		if (ERR_GET_REASON(e) == X509_R_KEY_VALUES_MISMATCH ||
		    ERR_GET_REASON(e) == SSL_R_PRIVATE_KEY_MISMATCH)
			snprintf(why, sizeof(why), "key file '%s' does not match cert file '%s'",
			         key, cert);
		else
			snprintf(why, sizeof(why),
			         "key file '%s': not an unencrypted PEM private key", key);
		goto fail;
	}
	if (SSL_CTX_check_private_key(x->ctx) != 1) {
		snprintf(why, sizeof(why), "key file '%s' does not match cert file '%s'", key,
		         cert);
		goto fail;
	}
	*out = x;
	return 0;
fail:
	ssl_reason(err, cap, why);
	sl_tls_ctx_unref(x);
	return SL_EINVAL;
}

int sl_tls_client_ctx(struct sl_tls_ctx **out, const char *ca, bool verify, char *err, size_t cap)
{
	struct sl_tls_ctx *x;

	*out = NULL;
	ERR_clear_error();
	if (ca && !readable("ca", ca, err, cap))
		return SL_EINVAL;
	if (!(x = ctx_new(false))) {
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	x->verify = verify;
	pthread_once(&sess_once, sess_init);
	SSL_CTX_set_session_cache_mode(x->ctx,
	                               SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(x->ctx, new_session);
	SSL_CTX_set_alpn_protos(x->ctx, alpn_h1, sizeof(alpn_h1) - 1);
	SSL_CTX_set_verify(x->ctx, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	if (ca ? SSL_CTX_load_verify_locations(x->ctx, ca, NULL) != 1
	       : SSL_CTX_set_default_verify_paths(x->ctx) != 1) {
		char why[160];
		snprintf(why, sizeof(why), "ca file '%s': no PEM certificate in it",
		         ca ? ca : "(system store)");
		ssl_reason(err, cap, why);
		sl_tls_ctx_unref(x);
		return SL_EINVAL;
	}
	*out = x;
	return 0;
}

void sl_tls_ctx_ref(struct sl_tls_ctx *x)
{
	__atomic_add_fetch(&x->refs, 1, __ATOMIC_RELAXED);
}

void sl_tls_ctx_unref(struct sl_tls_ctx *x)
{
	if (!x || __atomic_sub_fetch(&x->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	SSL_CTX_free(x->ctx); /* SSL objects still alive hold their own reference */
	free(x);
}

/* ---- the stream ---- */

static void pump(struct sl_tls *t, bool deliver);

static bool out_pending(struct sl_tls *t)
{
	return t->cw_busy || BIO_ctrl_pending(t->net) > 0;
}

static void fail_msg(struct sl_tls *t, const char *fmt, const char *arg)
{
	if (!t->failed)
		snprintf(t->err, sizeof(t->err), fmt, arg);
	t->failed = true;
}

/* Plain HTTP sent to a TLS port: tell the client in its own protocol
 * (nginx does the same) before the connection is dropped. */
static void plain_http_answer(struct sl_tls *t)
{
	static const char body[] = "{\"error\":{\"status\":400,\"message\":\"plain HTTP request "
	                           "sent to a TLS port\"}}";
	char head[160];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
	                 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
	                 sizeof(body) - 1);
	uv_buf_t b[2] = {uv_buf_init(head, (unsigned)n),
	                 uv_buf_init((char *)body, sizeof(body) - 1)};
	(void)uv_try_write((uv_stream_t *)t->tcp, b, 2); /* best effort: it is going away */
}

static void fail_ssl(struct sl_tls *t, int ssl_err)
{
	unsigned long e = ERR_peek_last_error();
	long v = SSL_get_verify_result(t->ssl);

	if (t->failed)
		goto out;
	if (v != X509_V_OK && !SSL_is_server(t->ssl)) {
		snprintf(t->err, sizeof(t->err), "certificate verify failed: %s",
		         X509_verify_cert_error_string(v));
	} else if (e) {
		const char *r = ERR_reason_error_string(e);
		snprintf(t->err, sizeof(t->err), "%s", r ? r : "TLS error");
		if (SSL_is_server(t->ssl) && ERR_GET_REASON(e) == SSL_R_HTTP_REQUEST)
			plain_http_answer(t);
	} else if (ssl_err == SSL_ERROR_SYSCALL || ssl_err == SSL_ERROR_ZERO_RETURN) {
		snprintf(t->err, sizeof(t->err), "connection closed during the TLS handshake");
	} else {
		snprintf(t->err, sizeof(t->err), "TLS error %d", ssl_err);
	}
	t->failed = true;
out:
	ERR_clear_error();
}

static void cw_cb(uv_write_t *req, int status)
{
	struct sl_tls *t = req->data;
	char *p;
	if (t->closing)
		return; /* cancelled by the close: the stream is going away */
	t->cw_busy = false;
	t->rd_wait = false;
	if (status < 0) {
		t->io_dead = true;
		fail_msg(t, "write: %s", uv_strerror(status));
	} else {
		BIO_nread(t->net, &p, (int)t->cw_len);
	}
	pump(t, true);
}

/* Ciphertext onto the socket: what it takes at once, the rest with one
 * uv_write (cw) whose completion pumps again. After a failure the alert
 * that says why still goes out. */
static void flush(struct sl_tls *t)
{
	while (!t->cw_busy && !t->io_dead) {
		char *p;
		int n = BIO_nread0(t->net, &p), w;
		uv_buf_t b;
		if (n <= 0)
			return;
		b = uv_buf_init(p, (unsigned)n);
		w = uv_try_write((uv_stream_t *)t->tcp, &b, 1);
		if (w > 0) {
			BIO_nread(t->net, &p, w);
			if (w == n)
				continue;
			b.base += w;
			b.len -= (size_t)w;
		} else if (w != UV_EAGAIN) {
			t->io_dead = true;
			fail_msg(t, "write: %s", uv_strerror(w));
			return;
		}
		t->cw.data = t;
		if ((w = uv_write(&t->cw, (uv_stream_t *)t->tcp, &b, 1, cw_cb)) < 0) {
			t->io_dead = true;
			fail_msg(t, "write: %s", uv_strerror(w));
			return;
		}
		t->cw_busy = true;
		t->cw_len = b.len;
	}
}

static void handshake(struct sl_tls *t)
{
	int r = SSL_do_handshake(t->ssl), e;
	if (r == 1)
		return;
	e = SSL_get_error(t->ssl, r);
	if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
		if (t->eof && e == SSL_ERROR_WANT_READ)
			fail_msg(t, "%s", "connection closed during the TLS handshake");
		return;
	}
	fail_ssl(t, e);
}

/* Queued plaintext into records, in order, as far as the out ring takes. */
static void encrypt(struct sl_tls *t)
{
	while (t->nenc < t->qn && !t->failed) {
		struct wq *e = &t->q[(t->qhead + t->nenc) % SL_TLS_WQ];
		while (e->i < e->nbufs) {
			uv_buf_t *b = &e->bufs[e->i];
			int n, err;
			if (b->len == 0) {
				e->i++;
				continue;
			}
			n = SSL_write(t->ssl, b->base,
			              b->len > INT32_MAX ? INT32_MAX : (int)b->len);
			if (n > 0) {
				b->base += n;
				b->len -= (size_t)n;
				continue;
			}
			err = SSL_get_error(t->ssl, n);
			if (err == SSL_ERROR_WANT_WRITE) {
				flush(t);
				if (t->cw_busy || t->failed)
					return; /* cw_cb pumps again */
				continue;
			}
			if (err == SSL_ERROR_WANT_READ)
				return;
			fail_ssl(t, err);
			return;
		}
		t->nenc++;
	}
}

static void user_read(struct sl_tls *t, ssize_t n, const uv_buf_t *b)
{
	t->tcp->data = t->udata;
	t->uread((uv_stream_t *)t->tcp, n, b);
	if (!t->closing)
		t->tcp->data = t;
}

/* Records into plaintext for the owner while it reads. */
static void decrypt(struct sl_tls *t)
{
	while (t->ureading && !t->closing && !t->failed) {
		uv_buf_t b = uv_buf_init(NULL, 0);
		int n, err;

		t->tcp->data = t->udata;
		t->ualloc((uv_handle_t *)t->tcp, READ_MAX, &b);
		if (!t->closing)
			t->tcp->data = t;
		if (b.len == 0 || !b.base) {
			/* back to the loop, as libuv does: an owner that keeps
			 * reading without room is retried from the kick, never
			 * spun on here */
			user_read(t, UV_ENOBUFS, &b);
			return;
		}
		n = SSL_read(t->ssl, b.base, b.len > INT32_MAX ? INT32_MAX : (int)b.len);
		if (n > 0) {
			user_read(t, n, &b);
			continue;
		}
		err = SSL_get_error(t->ssl, n);
		if (err == SSL_ERROR_WANT_READ) {
			t->fresh_in = false;
			if (t->eof && !t->eof_told) {
				t->eof_told = true;
				user_read(t, t->eof_err, &b);
			}
			return;
		}
		if (err == SSL_ERROR_ZERO_RETURN) { /* close_notify */
			t->fresh_in = false;
			t->eof = t->eof_told = true;
			user_read(t, UV_EOF, &b);
			return;
		}
		if (err == SSL_ERROR_WANT_WRITE) {
			flush(t);
			if (t->cw_busy)
				t->rd_wait = true;
			if (t->cw_busy || t->failed)
				return;
			continue;
		}
		fail_ssl(t, err);
	}
}

/* Writes whose records are all on the socket complete, in order; after a
 * failure every queued one completes with UV_EPROTO. */
static void complete(struct sl_tls *t)
{
	while (t->qn && !t->closing && (t->failed || (t->nenc && !out_pending(t)))) {
		struct wq e = t->q[t->qhead];
		t->qhead = (t->qhead + 1) % SL_TLS_WQ;
		t->qn--;
		if (t->nenc)
			t->nenc--;
		e.cb(e.req, t->failed ? UV_EPROTO : 0);
	}
}

static void t_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sl_tls *t = h->data;
	char *p = NULL;
	int n = BIO_nwrite0(t->net, &p);
	*buf = n > 0 ? uv_buf_init(p, (unsigned)n) : uv_buf_init(NULL, 0);
}

static void t_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct sl_tls *t = s->data;
	char *p;
	if (nread == 0)
		return;
	if (nread > 0) {
		BIO_nwrite(t->net, &p, (int)nread);
		t->fresh_in = true;
	} else {
		uv_read_stop(s);
		t->treading = false;
		if (nread != UV_ENOBUFS) {
			t->eof = true;
			t->eof_err = (int)nread;
			t->fresh_in = true;
		}
	}
	pump(t, true);
}

static void kick_cb(uv_idle_t *h)
{
	struct sl_tls *t = h->data;
	uv_idle_stop(h);
	pump(t, true);
}

static bool deliverable(struct sl_tls *t)
{
	if (t->qn && (t->failed || (t->nenc && !out_pending(t))))
		return true;
	if (!t->ureading)
		return false;
	if (t->failed)
		return !t->fail_told;
	if (!SSL_is_init_finished(t->ssl) || t->rd_wait)
		return false;
	return SSL_pending(t->ssl) > 0 || t->fresh_in || (t->eof && !t->eof_told);
}

static void update_reading(struct sl_tls *t)
{
	bool want = !t->failed && !t->eof && (t->ureading || !SSL_is_init_finished(t->ssl)) &&
	            BIO_ctrl_get_write_guarantee(t->net) > 0;
	if (want && !t->treading) {
		if (uv_read_start((uv_stream_t *)t->tcp, t_alloc, t_read) == 0)
			t->treading = true;
	} else if (!want && t->treading) {
		uv_read_stop((uv_stream_t *)t->tcp);
		t->treading = false;
	}
}

/* Move everything that can move. With deliver, the owner's callbacks run
 * (plaintext, end, failure, write completions); without, only the
 * handshake, encryption and the socket move, and anything due to the
 * owner is left to the kick. Re-entry from a callback is folded into the
 * running pass. */
static void pump(struct sl_tls *t, bool deliver)
{
	if (t->in_pump) {
		t->again = true;
		return;
	}
	t->in_pump = true;
	ERR_clear_error();
	do {
		t->again = false;
		if (!t->failed && !SSL_is_init_finished(t->ssl))
			handshake(t);
		if (!t->failed && SSL_is_init_finished(t->ssl))
			encrypt(t);
		flush(t);
		if (!deliver)
			break;
		decrypt(t);
		flush(t);
		if (t->failed && t->ureading && !t->fail_told && !t->closing) {
			uv_buf_t b = uv_buf_init(NULL, 0);
			t->fail_told = true;
			user_read(t, UV_EPROTO, &b);
		}
		complete(t);
	} while (t->again && !t->closing);
	t->in_pump = false;
	if (t->closing)
		return;
	update_reading(t);
	if (deliverable(t))
		uv_idle_start(&t->kick, kick_cb);
}

struct sl_tls *sl_tls_new(struct sl_tls_ctx *x, uv_loop_t *loop, uv_tcp_t *tcp, const char *host,
                          struct sl_tls_session **sess)
{
	struct sl_tls *t = calloc(1, sizeof(*t));
	BIO *in = NULL;

	if (!t)
		return NULL;
	t->ssl = SSL_new(x->ctx);
	if (!t->ssl || BIO_new_bio_pair(&in, RING_OUT, &t->net, RING_IN) != 1)
		goto fail;
	SSL_set_bio(t->ssl, in, in);
	if (host) {
		unsigned char ip[16];
		bool literal =
		        inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
		SSL_set_connect_state(t->ssl);
		if (!literal)
			SSL_set_tlsext_host_name(t->ssl, host);
		if (sess && sess_idx >= 0) {
			SSL_set_ex_data(t->ssl, sess_idx, sess);
			if (*sess) /* a stale one is only a full handshake */
				SSL_set_session(t->ssl, (SSL_SESSION *)*sess);
		}
		if (x->verify &&
		    (literal ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host)
		             : SSL_set1_host(t->ssl, host)) != 1)
			goto fail;
	} else {
		SSL_set_accept_state(t->ssl);
	}
	t->loop = loop;
	t->tcp = tcp;
	t->udata = tcp->data;
	tcp->data = t;
	uv_idle_init(loop, &t->kick);
	t->kick.data = t;
	return t;
fail:
	ERR_clear_error();
	SSL_free(t->ssl); /* frees in */
	BIO_free(t->net);
	free(t);
	return NULL;
}

int sl_tls_read_start(struct sl_tls *t, uv_alloc_cb alloc_cb, uv_read_cb read_cb)
{
	if (t->closing)
		return UV_EINVAL;
	t->ualloc = alloc_cb;
	t->uread = read_cb;
	t->ureading = true;
	pump(t, false);
	return 0;
}

void sl_tls_read_stop(struct sl_tls *t)
{
	t->ureading = false;
	if (!t->closing && !t->in_pump)
		update_reading(t);
}

int sl_tls_write(struct sl_tls *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                 uv_write_cb cb)
{
	struct wq *e;
	if (t->closing)
		return UV_ECANCELED;
	if (t->failed)
		return UV_EPROTO;
	if (t->qn == SL_TLS_WQ || nbufs > 2)
		return UV_ENOBUFS;
	e = &t->q[(t->qhead + t->qn) % SL_TLS_WQ];
	e->req = req;
	e->cb = cb;
	e->nbufs = nbufs;
	e->i = 0;
	for (unsigned i = 0; i < nbufs; i++)
		e->bufs[i] = bufs[i];
	t->qn++;
	pump(t, false);
	return 0;
}

int sl_tls_send(struct sl_tls *t, uv_write_t *req, const uv_buf_t bufs[], unsigned nbufs,
                uv_write_cb cb)
{
	bool alone = t->qn == 0 && !t->in_pump;
	int rc = sl_tls_write(t, req, bufs, nbufs, cb);
	if (rc < 0)
		return rc;
	if (alone && t->qn == 1 && t->nenc == 1 && !out_pending(t) && !t->failed) {
		t->qn = 0;
		t->nenc = 0;
		t->qhead = (t->qhead + 1) % SL_TLS_WQ;
		return 1;
	}
	return 0;
}

bool sl_tls_established(const struct sl_tls *t)
{
	return SSL_is_init_finished(t->ssl);
}

const char *sl_tls_error(const struct sl_tls *t)
{
	return t->err;
}

static void kick_closed(uv_handle_t *h)
{
	struct sl_tls *t = h->data;
	while (t->qn) {
		struct wq e = t->q[t->qhead];
		t->qhead = (t->qhead + 1) % SL_TLS_WQ;
		t->qn--;
		e.cb(e.req, UV_ECANCELED);
	}
	if (t->done)
		t->done(t->done_arg);
}

void sl_tls_close(struct sl_tls *t, void (*done)(void *arg), void *arg)
{
	if (t->closing)
		return;
	if (!t->failed && !t->cw_busy && SSL_is_init_finished(t->ssl)) {
		char *p;
		int n;
		ERR_clear_error();
		SSL_shutdown(t->ssl); /* close_notify into the out ring */
		ERR_clear_error();
		while ((n = BIO_nread0(t->net, &p)) > 0) {
			uv_buf_t b = uv_buf_init(p, (unsigned)n);
			int w = uv_try_write((uv_stream_t *)t->tcp, &b, 1);
			if (w <= 0)
				break;
			BIO_nread(t->net, &p, w);
		}
	}
	t->closing = true;
	t->tcp->data = t->udata;
	t->done = done;
	t->done_arg = arg;
	uv_close((uv_handle_t *)&t->kick, kick_closed);
}

void sl_tls_free(struct sl_tls *t)
{
	if (!t)
		return;
	SSL_free(t->ssl);
	BIO_free(t->net);
	free(t);
}
