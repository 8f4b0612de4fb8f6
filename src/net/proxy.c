/* The proxy listener's upstream side: a keep-alive connection pool per
 * worker and upstream, the forwarded request head (hop-by-hop headers
 * dropped, X-Forwarded-For added), and both bodies streamed raw.
 *
 * Streaming without buffering: request body bytes are written to the
 * upstream straight from the client's read buffer and the client is not
 * read again until that write completes; response bytes go to the client
 * straight from the upstream connection's read buffer, with the upstream
 * paused the same way. So memory per exchange is the two fixed buffers,
 * whatever the body sizes, and a slow side slows the other down. An
 * https:// upstream connection runs the same code over a TLS stream
 * (src/tls): the head waits in it for the handshake, and a failed
 * handshake or verification is a 502 with a rate-limited log line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "net/net-int.h"

#define UP_RCAP        65536 /* bytes: upstream read buffer */
#define UP_IDLE_MAX    64    /* idle connections kept per upstream and worker */
#define UP_IDLE_TTL_MS 30000 /* ms an idle pooled connection is kept */

static void up_process(struct sl_upconn *up);
static void up_fail(struct sl_upconn *up, int status);
static void start(struct sl_conn *c, struct sl_upconn *up);
static void up_read_update(struct sl_upconn *up);

int sl_upstream_parse(struct sl_upstream *u, const char *url, char *err, size_t cap)
{
	const char *p, *host, *colon, *end;
	size_t hlen;
	long port = 80;

	memset(u, 0, sizeof(*u));
	sl_list_init(&u->idle);
	if (strncmp(url, "https://", 8) == 0) {
		u->tls = true;
		port = 443;
		p = url + 8;
	} else if (strncmp(url, "http://", 7) == 0) {
		p = url + 7;
	} else {
		snprintf(err, cap, "upstream %s: only http:// and https://host:port are supported",
		         url);
		return SL_EINVAL;
	}
	end = p + strcspn(p, "/");
	if (*p == '[') {
		host = p + 1;
		colon = memchr(p, ']', (size_t)(end - p));
		if (!colon)
			goto bad;
		hlen = (size_t)(colon - host);
		colon = colon + 1 < end && colon[1] == ':' ? colon + 1 : NULL;
	} else {
		host = p;
		colon = memchr(p, ':', (size_t)(end - p));
		hlen = (size_t)((colon ? colon : end) - host);
	}
	if (colon) {
		char *e;
		port = strtol(colon + 1, &e, 10);
		if (e != end || port <= 0 || port > 65535)
			goto bad;
	}
	if (hlen == 0 || hlen >= sizeof(u->host))
		goto bad;
	memcpy(u->host, host, hlen);
	u->host[hlen] = 0;
	u->port = (int)port;
	if (uv_ip4_addr(u->host, u->port, (struct sockaddr_in *)&u->addr) == 0 ||
	    uv_ip6_addr(u->host, u->port, (struct sockaddr_in6 *)&u->addr) == 0)
		return 0;
	if (strcmp(u->host, "localhost") == 0)
		return uv_ip4_addr("127.0.0.1", u->port, (struct sockaddr_in *)&u->addr);
	{
		/* a name: resolve once at startup (the main thread may block) */
		uv_loop_t loop;
		uv_getaddrinfo_t req;
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
		char ps[8];
		int rc;
		snprintf(ps, sizeof(ps), "%d", u->port);
		uv_loop_init(&loop);
		rc = uv_getaddrinfo(&loop, &req, NULL, u->host, ps, &hints);
		if (rc == 0) {
			memcpy(&u->addr, req.addrinfo->ai_addr, req.addrinfo->ai_addrlen);
			uv_freeaddrinfo(req.addrinfo);
		}
		uv_loop_close(&loop);
		if (rc != 0) {
			snprintf(err, cap, "upstream %s: %s", url, uv_strerror(rc));
			return SL_EINVAL;
		}
		return 0;
	}
bad:
	snprintf(err, cap, "upstream %s: expected http[s]://host:port", url);
	return SL_EINVAL;
}

/* ---- upstream connections ---- */

static void up_gone(struct sl_upconn *up)
{
	struct sl_worker *w = up->w;
	if (--up->timers_open)
		return;
	w->nupconns--;
	sl_tls_free(up->tls);
	free(up->rbuf);
	free(up->hbuf);
	free(up);
	sl_worker_maybe_exit(w);
}

static void up_closed(uv_handle_t *h)
{
	up_gone(h->data);
}

static void up_tls_closed(void *arg)
{
	up_gone(arg);
}

static void up_close(struct sl_upconn *up)
{
	if (up->state == SL_UP_CLOSING)
		return;
	if (up->state == SL_UP_IDLE) {
		sl_list_del(&up->link);
		up->pool->nidle--;
	}
	up->state = SL_UP_CLOSING;
	up->c = NULL;
	if (up->tls)
		sl_tls_close(up->tls, up_tls_closed, up);
	uv_close((uv_handle_t *)&up->timer, up_closed);
	uv_close((uv_handle_t *)&up->tcp, up_closed);
}

static void up_timer_cb(uv_timer_t *t)
{
	struct sl_upconn *up = t->data;
	uint64_t now = uv_now(&up->w->loop);
	if (up->deadline == 0)
		return; /* stopped */
	if (now < up->deadline) {
		/* moved later since it was set: wait for the rest */
		uv_timer_start(&up->timer, up_timer_cb, up->deadline - now, 0);
		up->timer_due = up->deadline;
		return;
	}
	up->deadline = 0;
	if (up->state == SL_UP_IDLE || !up->c)
		up_close(up);
	else
		up_fail(up, 504);
}

/* Like the client's timer (conn.c): a new deadline only restarts the uv
 * timer when it is earlier than the one set; the upstream timeout moves on
 * every read, the pool's idle TTL on every exchange. */
static void up_timer(struct sl_upconn *up, uint64_t ms)
{
	uint64_t due = uv_now(&up->w->loop) + ms;
	up->deadline = due;
	if (!uv_is_active((uv_handle_t *)&up->timer) || up->timer_due > due) {
		uv_timer_start(&up->timer, up_timer_cb, ms, 0);
		up->timer_due = due;
	}
}

static void up_arm(struct sl_upconn *up)
{
	int64_t ns = up->c && up->c->policy ? up->c->policy->server.upstream_timeout
	                                    : 30 * SL_NS_PER_SEC;
	uint64_t ms = ns > 0 ? (uint64_t)((ns + 999999) / 1000000) : 30000;
	up_timer(up, ms);
}

static struct sl_upconn *up_new(struct sl_worker *w, struct sl_upstream *u)
{
	struct sl_upconn *up = calloc(1, sizeof(*up));
	if (!up)
		return NULL;
	up->rbuf = malloc(UP_RCAP);
	up->hbuf = malloc(SL_OUT_CAP);
	if (!up->rbuf || !up->hbuf) {
		free(up->rbuf);
		free(up->hbuf);
		free(up);
		return NULL;
	}
	up->rcap = UP_RCAP;
	up->w = w;
	up->pool = u;
	sl_list_init(&up->link);
	uv_tcp_init(&w->loop, &up->tcp);
	uv_timer_init(&w->loop, &up->timer);
	up->tcp.data = up->timer.data = up;
	up->timers_open = 2;
	up->state = SL_UP_CONNECTING;
	w->nupconns++;
	if (u->tls) {
		if (u->tls_ctx)
			up->tls = sl_tls_new(u->tls_ctx, &w->loop, &up->tcp, u->tls_host,
			                     &u->tls_sess);
		if (!up->tls) {
			up_close(up);
			return NULL;
		}
		up->timers_open++; /* its idle handle */
	}
	return up;
}

static void up_alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sl_upconn *up = h->data;
	/* a head in progress stays (its views point into rbuf); the rest of
	 * what was parsed is dropped */
	size_t keep = up->hp.state == SL_HTTP_IN_HEAD ? up->head_start : up->rpos;
	if (keep) {
		memmove(up->rbuf, up->rbuf + keep, up->rlen - keep);
		up->rlen -= keep;
		up->rpos -= keep;
		up->head_start = up->head_start >= keep ? up->head_start - keep : 0;
		if (up->hp.state == SL_HTTP_IN_HEAD)
			sl_http_rebase(&up->hp, keep);
	}
	buf->base = up->rbuf + up->rlen;
	buf->len = up->rcap - up->rlen;
}

static void up_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct sl_upconn *up = s->data;
	if (nread == 0)
		return;
	if (up->state == SL_UP_IDLE || !up->c) {
		up_close(up); /* data or EOF on an idle connection: drop it */
		return;
	}
	if (nread > 0) {
		up->rlen += (size_t)nread;
		up->got_bytes = true;
		up_arm(up);
		up_process(up);
		return;
	}
	if (nread == UV_ENOBUFS) {
		up_fail(up, 502); /* a head larger than the buffer */
		return;
	}
	/* EOF: completes a response delimited by the close, else a failure */
	if (nread == UV_EOF && up->hp.state == SL_HTTP_IN_BODY && up->rpos == up->rlen &&
	    sl_http_finish(&up->hp) == SL_HTTP_END) {
		up->resp_end = true;
		up->keep = false;
		sl_io_read_stop(&up->tcp, up->tls);
		up->reading = false;
		up_process(up);
		return;
	}
	up_fail(up, 502);
}

static void up_read_update(struct sl_upconn *up)
{
	bool want = up->state == SL_UP_IDLE ||
	            (up->state == SL_UP_BUSY && up->c && !up->to_client && !up->resp_end);
	if (want && up->rlen == up->rcap && up->hp.state != SL_HTTP_IN_HEAD && up->rpos > 0) {
		memmove(up->rbuf, up->rbuf + up->rpos, up->rlen - up->rpos);
		up->rlen -= up->rpos;
		up->rpos = 0;
	}
	if (up->rlen == up->rcap)
		want = false; /* unparsed bytes fill the buffer: parse first */
	if (want && !up->reading) {
		if (sl_io_read_start(&up->tcp, up->tls, up_alloc_cb, up_read_cb) == 0)
			up->reading = true;
	} else if (!want && up->reading) {
		sl_io_read_stop(&up->tcp, up->tls);
		up->reading = false;
	}
}

/* Back to the pool, or closed when the pool is full. */
static void up_put(struct sl_upconn *up)
{
	struct sl_upstream *u = up->pool;
	if (u->nidle >= UP_IDLE_MAX || up->w->draining || up->rpos != up->rlen) {
		up_close(up);
		return;
	}
	up->c = NULL;
	up->state = SL_UP_IDLE;
	up->reused = true;
	up->rlen = up->rpos = 0;
	sl_list_add(&u->idle, &up->link);
	u->nidle++;
	up_timer(up, UP_IDLE_TTL_MS);
	up_read_update(up);
}

void sl_upstream_close_idle(struct sl_worker *w)
{
	for (size_t i = 0; i < w->nupstreams; i++) {
		struct sl_upstream *u = &w->upstreams[i];
		while (!sl_list_empty(&u->idle))
			up_close(sl_container(u->idle.next, struct sl_upconn, link));
	}
}

/* ---- the exchange ---- */

static void detach(struct sl_upconn *up)
{
	struct sl_conn *c = up->c;
	if (c)
		c->up = NULL;
	up->c = NULL;
}

/* The response went out completely: the request is done. */
static void exchange_end(struct sl_upconn *up)
{
	struct sl_conn *c = up->c;
	bool reuse = up->keep && up->hp.msg.keep_alive && c->req_end && !c->body_inflight;
	up->deadline = 0; /* up_put sets the idle TTL; a closed one stops */
	detach(up);
	if (reuse)
		up_put(up);
	else
		up_close(up);
	c->resp_done = true;
	if (!c->req_end)
		c->close_after = true; /* the upstream answered before the body ended */
	sl_conn_request_done(c);
	if (!c->closing)
		sl_conn_process(c);
}

static void client_wrote_cb(uv_write_t *req, int status)
{
	struct sl_conn *c = req->data;
	struct sl_upconn *up = c->up;
	c->writing = false;
	if (!up || c->closing)
		return;
	up->to_client = false;
	if (status < 0) {
		sl_conn_close(c); /* aborts the upstream side */
		return;
	}
	if (up->resp_end) {
		exchange_end(up);
		return;
	}
	up_arm(up);
	up_process(up);
}

static void head_to_client(struct sl_upconn *up)
{
	struct sl_conn *c = up->c;
	struct sl_http_msg *m = &up->hp.msg;
	struct sl_http_out *o = &c->out;
	bool eof_body = m->has_body && !m->chunked && !m->has_length;

	if (eof_body || !m->keep_alive)
		up->keep = false;
	if (eof_body)
		c->close_after = true;
	sl_http_out_init(o, c->obuf, SL_OUT_CAP);
	sl_http_out_status(o, m->status, NULL);
	/* A header named like one sluice renders is sluice's: the upstream's
	 * own X-RateLimit-Limit would contradict it (two values, or one from
	 * an upstream that does not see the whole fleet's counts). */
	for (size_t i = 0; i < m->nheaders; i++)
		if (!sl_http_hop_by_hop(m->headers[i].name) &&
		    !(c->policy && sl_render_owns(c->policy, m->headers[i].name)))
			sl_http_out_header(o, m->headers[i].name, m->headers[i].value);
	sl_render_headers(&c->ev, sl_http_out_emit, o);
	if (!c->keep_alive || c->close_after || c->w->draining) {
		sl_http_out_header_c(o, "Connection", "close");
		c->keep_alive = false;
	}
	sl_http_out_bytes(o, "\r\n", 2);
	if (o->overflow) {
		up_fail(up, 502);
		return;
	}
	c->status = m->status;
	c->up_ns = uv_hrtime() - c->t_up;
	sl_metrics_upstream(c->w->shard, c->l->name, m->status, (int64_t)c->up_ns);
	up->resp_head = true;
	up->head_pending = true; /* goes out with the first body bytes */
}

/* Response bytes [p, p+n) of rbuf to the client, after the head composed
 * in c->obuf when it is still pending: one write system call for a small
 * response. Returns 1 when everything went out at once, 0 when a write is
 * in flight (to_client, client_wrote_cb follows), -1 when the client
 * failed (it is closing and the upstream side was dropped). */
static int to_client(struct sl_upconn *up, const char *p, size_t n)
{
	struct sl_conn *c = up->c;
	size_t hn = up->head_pending ? c->out.len : 0;
	int rc;

	up->head_pending = false;
	rc = sl_conn_send(c, c->obuf, hn, p, n, client_wrote_cb);
	if (rc == 0)
		up->to_client = true;
	return rc;
}

static void up_process(struct sl_upconn *up)
{
	size_t used;
	int ev;

	while (up->c && !up->to_client && !up->c->writing && !up->resp_end) {
		const char *p = up->rbuf + up->rpos;
		if (up->rpos == up->rlen && up->hp.state != SL_HTTP_IN_BODY)
			break;
		if (up->hp.state == SL_HTTP_IDLE)
			up->head_start = up->rpos;
		bool in_head = up->hp.state != SL_HTTP_IN_BODY;
		ev = sl_http_parse(&up->hp, p, up->rlen - up->rpos, &used);
		up->rpos += used;
		if (ev == SL_HTTP_ERR) {
			up_fail(up, 502);
			return;
		}
		if (in_head && ev != SL_HTTP_HEAD) {
			/* Part of a head that the next read completes: it stays in
			 * rbuf for the head's views, and is never forwarded raw
			 * (it went to the client ahead of the composed head). */
			if (used)
				continue;
			break;
		}
		if (ev == SL_HTTP_HEAD) {
			if (up->hp.msg.status / 100 == 1) {
				up->skip_1xx = true; /* 100 Continue etc.: not forwarded */
				continue;
			}
			head_to_client(up);
			continue;
		}
		if (ev == SL_HTTP_END && up->skip_1xx) {
			up->skip_1xx = false;
			continue;
		}
		if (ev == SL_HTTP_END)
			up->resp_end = true;
		if (used || up->head_pending) {
			int rc = to_client(up, p, used);
			if (rc < 0)
				return;
			if (rc == 0)
				continue; /* client_wrote_cb goes on */
		}
		if (up->resp_end) {
			exchange_end(up);
			return;
		}
		if (used)
			continue;
		break;
	}
	if (up->c && up->hp.state == SL_HTTP_IN_HEAD && up->head_start == 0 &&
	    up->rlen == up->rcap) {
		/* A response head as large as the whole buffer: no read can
		 * complete it (reading stops on a full buffer), so it would
		 * only stall until upstream_timeout. */
		up_fail(up, 502);
		return;
	}
	if (up->c || up->state == SL_UP_IDLE)
		up_read_update(up);
}

/* A TLS session to the upstream failed (verification, handshake): one
 * stderr line per upstream and worker per second at most, with the count
 * of those left out since the last one. */
static void tls_log(struct sl_upconn *up, int status)
{
	struct sl_upstream *u = up->pool;
	int64_t now = sl_worker_now(up->w);
	const char *why = up->tls ? sl_tls_error(up->tls) : "";

	if (!why[0])
		return;
	if (u->tls_logged && now - u->tls_logged < SL_NS_PER_SEC) {
		u->tls_quiet++;
		return;
	}
	bool v6 = strchr(u->host, ':') != NULL;
	fprintf(stderr, "sluice: upstream https://%s%s%s:%d (name %s): TLS: %s; answered %d",
	        v6 ? "[" : "", u->host, v6 ? "]" : "", u->port, u->tls_host, why, status);
	if (u->tls_quiet)
		fprintf(stderr, " (%u more since the last report)", u->tls_quiet);
	fputc('\n', stderr);
	u->tls_logged = now;
	u->tls_quiet = 0;
}

static void up_fail(struct sl_upconn *up, int status)
{
	struct sl_conn *c = up->c;
	bool head_sent = up->resp_head; /* composed for the client, sent or not */
	if (up->tls && c)
		tls_log(up, status);
	if (c && up->reused && !up->got_bytes && !head_sent && !c->hp.msg.has_body && !c->retried) {
		/* a pooled connection the upstream had closed: once more, fresh */
		struct sl_upconn *n = up_new(up->w, up->pool);
		if (n) {
			memcpy(n->hbuf, up->hbuf, up->hout.len);
			sl_http_out_init(&n->hout, n->hbuf, SL_OUT_CAP);
			n->hout.len = up->hout.len;
			c->retried = true;
			detach(up);
			up_close(up);
			c->body_inflight = true;
			start(c, n);
			return;
		}
	}
	detach(up);
	up_close(up);
	if (!c)
		return;
	if (!head_sent)
		sl_metrics_upstream(c->w->shard, c->l->name, 0, 0); /* no answer came */
	if (head_sent || c->writing) {
		sl_conn_close(c); /* the response is cut: nothing else to say */
		return;
	}
	c->phase = SL_PH_LOCAL;
	c->body_inflight = false;
	sl_conn_answer_error(c, status, !c->req_end);
	if (!c->closing)
		sl_conn_process(c);
}

static void head_cb(uv_write_t *req, int status)
{
	struct sl_upconn *up = req->data;
	struct sl_conn *c = up->c;
	if (!c)
		return;
	if (status < 0) {
		up_fail(up, 502);
		return;
	}
	up->head_written = true;
	c->body_inflight = false;
	sl_conn_process(c);
}

/* Send the request head. When the socket takes it at once (the usual
 * case) the client's body may follow right away: returns true, and the
 * caller makes sure the client connection is processed (it always is when
 * this runs inside a decision). Otherwise head_cb does that later. */
static bool write_head(struct sl_upconn *up)
{
	uv_buf_t b = uv_buf_init(up->hbuf, (unsigned)up->hout.len);
	int n;

	up->state = SL_UP_BUSY;
	up->wreq.data = up;
	up_read_update(up);
	if (up->tls) { /* queued until the handshake is done: head_cb follows */
		n = sl_tls_send(up->tls, &up->wreq, &b, 1, head_cb);
		if (n < 0)
			up_fail(up, 502);
		if (n != 1)
			return false;
		up->head_written = true;
		up->c->body_inflight = false;
		return true;
	}
	n = uv_try_write((uv_stream_t *)&up->tcp, &b, 1);
	if (n == (int)b.len) {
		up->head_written = true;
		up->c->body_inflight = false;
		return true;
	}
	if (n < 0 && n != UV_EAGAIN) {
		up_fail(up, 502);
		return false;
	}
	if (n > 0) {
		b.base += n;
		b.len -= (size_t)n;
	}
	if (uv_write(&up->wreq, (uv_stream_t *)&up->tcp, &b, 1, head_cb) < 0)
		up_fail(up, 502);
	return false;
}

static void connect_cb(uv_connect_t *req, int status)
{
	struct sl_upconn *up = req->data;
	if (up->state == SL_UP_CLOSING)
		return;
	if (status < 0 || !up->c) {
		up_fail(up, 502);
		return;
	}
	uv_tcp_nodelay(&up->tcp, 1);
	if (write_head(up) && up->c)
		sl_conn_process(up->c);
}

/* Connect a new connection for c (head already in up->hbuf). */
static int up_connect(struct sl_upconn *up)
{
	up->creq.data = up;
	return uv_tcp_connect(&up->creq, &up->tcp, (const struct sockaddr *)&up->pool->addr,
	                      connect_cb);
}

/* The request head for the upstream. The target and Host are the client's
 * bytes, or under `normalize.forward: canonical` the canonical path and
 * host the decision was made on (docs/normalize.md). An absolute-form
 * target goes out in origin-form with its authority as the only Host
 * (RFC 9112 section 3.2.2: the received Host is ignored and replaced), so
 * the upstream serves the host the request was counted for. */
static void build_head(struct sl_conn *c, struct sl_http_out *o)
{
	struct sl_http_msg *m = &c->hp.msg;
	const struct sl_str *xff = NULL;
	bool canon = c->policy && c->policy->normalize.forward;
	bool own_host = canon || m->absolute;

	sl_http_out_bytes(o, m->method.p, m->method.len);
	sl_http_out_bytes(o, " ", 1);
	if (canon) {
		sl_http_out_bytes(o, c->ev.path.p, c->ev.path.len);
		if (m->query.len) {
			sl_http_out_bytes(o, "?", 1);
			sl_http_out_bytes(o, m->query.p, m->query.len);
		}
	} else if (m->url.len && m->url.p[0] == '/') {
		sl_http_out_bytes(o, m->url.p, m->url.len);
	} else {
		sl_http_out_bytes(o, m->path.p, m->path.len);
		if (m->query.len) {
			sl_http_out_bytes(o, "?", 1);
			sl_http_out_bytes(o, m->query.p, m->query.len);
		}
	}
	sl_http_out_str(o, " HTTP/1.1\r\n");
	if (own_host && (m->absolute || m->host.len))
		sl_http_out_header(o, (struct sl_str){"Host", 4}, canon ? c->ev.host : m->host);
	for (size_t i = 0; i < m->nheaders; i++) {
		const struct sl_header *h = &m->headers[i];
		if (sl_http_hop_by_hop(h->name))
			continue;
		if (h->name.len == 15 && sl_str_ieq(h->name, "x-forwarded-for")) {
			xff = &h->value;
			continue;
		}
		if (own_host && h->name.len == 4 && sl_str_ieq(h->name, "host"))
			continue;
		sl_http_out_header(o, h->name, h->value);
	}
	sl_http_out_str(o, "X-Forwarded-For: ");
	if (xff && xff->len) {
		sl_http_out_bytes(o, xff->p, xff->len);
		sl_http_out_str(o, ", ");
	}
	sl_http_out_str(o, c->peer_ip[0] ? c->peer_ip : "unknown");
	sl_http_out_str(o, "\r\n\r\n");
}

static void start(struct sl_conn *c, struct sl_upconn *up)
{
	up->c = c;
	c->up = up;
	up->head_written = up->got_bytes = up->resp_head = up->resp_end = false;
	up->to_client = up->skip_1xx = up->head_pending = false;
	up->keep = true;
	up->rlen = up->rpos = 0;
	sl_http_init(&up->hp, true, UP_RCAP, 0);
	up->hp.skip_body = sl_str_ieq(c->hp.msg.method, "HEAD");
	up_arm(up);
	if (up->state == SL_UP_IDLE) {
		sl_list_del(&up->link);
		up->pool->nidle--;
		(void)write_head(up); /* inside a decision: process() follows */
	} else if (up_connect(up) < 0) {
		up_fail(up, 502);
	}
}

void sl_proxy_start(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	struct sl_upstream *u = c->l->up;
	struct sl_upconn *up;

	if (!sl_list_empty(&u->idle))
		up = sl_container(u->idle.next, struct sl_upconn, link);
	else
		up = up_new(w, u);
	if (!up) {
		c->phase = SL_PH_LOCAL;
		sl_conn_answer_error(c, 503, true);
		return;
	}
	sl_http_out_init(&up->hout, up->hbuf, SL_OUT_CAP);
	build_head(c, &up->hout);
	if (up->hout.overflow) {
		if (up->state != SL_UP_IDLE)
			up_close(up);
		c->phase = SL_PH_LOCAL;
		sl_conn_answer_error(c, 431, true);
		return;
	}
	c->body_inflight = true; /* no body is read before the head is written */
	c->retried = false;
	c->t_up = uv_hrtime();
	sl_conn_send_continue(c); /* a client may wait for it before the body */
	start(c, up);
}

static void body_cb(uv_write_t *req, int status)
{
	struct sl_upconn *up = req->data;
	struct sl_conn *c = up->c;
	if (!c)
		return;
	c->body_inflight = false;
	if (status < 0) {
		up_fail(up, 502);
		return;
	}
	if (up->resp_end && !up->to_client) {
		exchange_end(up);
		return;
	}
	sl_conn_process(c);
}

void sl_proxy_body(struct sl_conn *c, const char *p, size_t n, bool end)
{
	struct sl_upconn *up = c->up;
	uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
	if (!up || n == 0)
		return;
	c->body_inflight = true;
	up->breq.data = up;
	if (sl_io_write(&up->tcp, up->tls, &up->breq, &b, 1, body_cb) < 0) {
		c->body_inflight = false;
		up_fail(up, 502);
	}
}

void sl_proxy_abort(struct sl_conn *c)
{
	struct sl_upconn *up = c->up;
	if (!up)
		return;
	detach(up);
	up_close(up);
}
