/* Client connections: read, parse, decide, answer or hand to the proxy,
 * then the next (pipelined) request. A connection comes from its worker's
 * free list with fixed buffers and goes back there; nothing is allocated
 * per request.
 *
 * The one rule that keeps views valid: bytes in the read buffer move only
 * in alloc_cb (compaction), and the buffer is compacted past a head only
 * when nobody needs that head any more. Reading is stopped while a
 * decision, a delay or a write that points into the buffer is in flight,
 * so responses go out in request order and the client is back-pressured.
 * On a TLS listener the same calls go through the connection's struct
 * sl_tls (src/tls), which keeps libuv's contract (sl_io_* in net-int.h). */
#include <assert.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include "net/net-int.h"

enum {
	T_NONE = 0,
	T_IDLE,   /* keep-alive idle: close quietly */
	T_FIRST,  /* accepted, no byte yet after header_timeout: close quietly */
	T_HEADER, /* head not complete in time: 408 */
	T_BODY,   /* body or write stalled: close */
	T_DELAY,  /* queued decision: proceed */
};

#define BODY_MAX (SL_OUT_CAP / 2) /* bytes of a locally rendered body */

static void process(struct sl_conn *c);
static void finish_maybe(struct sl_conn *c);

static uint64_t ms_ceil(int64_t ns)
{
	return ns <= 0 ? 0 : (uint64_t)((ns + 999999) / 1000000);
}

static void timer_cb(uv_timer_t *t);

/* The connection's one timer, re-armed lazily: a keep-alive request moves
 * the deadline (idle -> header -> body -> idle) several times, and all but
 * the delay are seconds away, so arm() only stores the new deadline and
 * restarts the uv timer when it must fire earlier than it is set to;
 * timer_cb re-arms for what is left when it fires early. */
static void arm(struct sl_conn *c, uint8_t what, int64_t ns)
{
	uint64_t ms = ms_ceil(ns) ? ms_ceil(ns) : 1;
	uint64_t due = uv_now(&c->w->loop) + ms;

	c->timer_what = what;
	c->deadline = due;
	if (!uv_is_active((uv_handle_t *)&c->timer) || c->timer_due > due) {
		uv_timer_start(&c->timer, timer_cb, ms, 0);
		c->timer_due = due;
	}
}

static void disarm(struct sl_conn *c)
{
	c->timer_what = T_NONE; /* a timer still set fires as a no-op */
}

/* ---- closing and freeing ---- */

/* A store batch or admin call that pointed at c completed. Every
 * completion runs exactly once per submit; a second one (the bug behind a
 * connection that was never freed) trips this in debug builds. */
static void pending_done(struct sl_conn *c)
{
	assert(c->store_pending > 0);
	c->store_pending--;
}

static void free_if_done(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	if (!c->closing || c->handles || c->store_pending)
		return;
	if (c->policy) {
		sl_policy_unref(c->policy);
		c->policy = NULL;
	}
	sl_tls_free(c->tls);
	c->tls = NULL;
	sl_list_del(&c->link);
	if (sl_worker_keep_conn(w)) {
		sl_list_add(&w->free, &c->link);
		w->nfree++;
	} else {
		free(c->rbuf);
		free(c->obuf);
		if (c->acall)
			sl_admin_call_reset(c->acall);
		free(c->acall);
		free(c->abody);
		free(c);
	}
	w->nconns--;
	if (w->shard)
		sl_metrics_conns(w->shard, w->nconns, w->accepted, w->nfree);
	sl_worker_conn_freed(w);
}

static void closed_cb(uv_handle_t *h)
{
	struct sl_conn *c = h->data;
	c->handles--;
	free_if_done(c);
}

static void tls_closed(void *arg)
{
	struct sl_conn *c = arg;
	c->handles--;
	free_if_done(c);
}

static void release_done(struct sl_batch *b)
{
	struct sl_conn *c = b->data;
	pending_done(c);
	if (c->closing)
		free_if_done(c);
	else if (!(c->w->handoff && sl_conn_handoff(c))) /* a Redis release ended */
		process(c);
}

/* Give back the concurrency slots the decision took (proxy only). */
static void release(struct sl_conn *c)
{
	if (!c->release_pending)
		return;
	c->release_pending = false;
	if (sl_eval_release(&c->ev) == 0)
		return;
	if (c->w->fwd_release) { /* paused for a takeover: its store decides now */
		c->w->srv->handoff.release(c->w->srv->handoff.arg, c->ev.batch.checks,
		                           c->ev.batch.n);
		return;
	}
	c->ev.batch.now = sl_worker_now(c->w);
	c->ev.batch.loop = &c->w->loop;
	c->ev.batch.done = release_done;
	c->ev.batch.data = c;
	c->store_pending++;
	if (sl_store_submit(c->w->srv->store, &c->ev.batch) < 0)
		pending_done(c);
}

void sl_conn_close(struct sl_conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->phase == SL_PH_DELAY && c->timer_what == T_DELAY)
		sl_metrics_delayed(c->w->shard, -1); /* closed while queued */
	if (c->up)
		sl_proxy_abort(c);
	release(c);
	disarm(c);
	if (c->tls) {
		c->handles++; /* its idle handle */
		sl_tls_close(c->tls, tls_closed, c);
	}
	uv_close((uv_handle_t *)&c->timer, closed_cb);
	uv_close((uv_handle_t *)&c->tcp, closed_cb);
}

/* ---- writing ---- */

static void write_cb(uv_write_t *req, int status);

static void write2(struct sl_conn *c, const char *a, size_t na, const char *b, size_t nb,
                   uv_write_cb cb)
{
	uv_buf_t bufs[2] = {uv_buf_init((char *)a, (unsigned)na),
	                    uv_buf_init((char *)b, (unsigned)nb)};
	c->writing = true;
	c->bytes_out += na + nb;
	c->wreq.data = c;
	if (sl_io_write(&c->tcp, c->tls, &c->wreq, bufs, nb ? 2 : 1, cb ? cb : write_cb) < 0) {
		c->writing = false;
		sl_conn_close(c);
	}
}

void sl_conn_write(struct sl_conn *c, const char *p, size_t n, uv_write_cb cb)
{
	write2(c, p, n, NULL, 0, cb);
}

int sl_conn_send(struct sl_conn *c, const char *a, size_t na, const char *b, size_t nb,
                 uv_write_cb cb)
{
	uv_buf_t bufs[2];
	unsigned nbufs = 0, i = 0;
	size_t done;
	int n;

	if (na)
		bufs[nbufs++] = uv_buf_init((char *)a, (unsigned)na);
	if (nb)
		bufs[nbufs++] = uv_buf_init((char *)b, (unsigned)nb);
	if (nbufs == 0)
		return 1;
	if (c->tls) { /* all encrypted and out at once, or the rest queued */
		c->wreq.data = c;
		n = sl_tls_send(c->tls, &c->wreq, bufs, nbufs, cb);
		if (n < 0) {
			sl_conn_close(c);
			return -1;
		}
		c->bytes_out += na + nb;
		if (n == 0)
			c->writing = true;
		return n;
	}
	n = uv_try_write((uv_stream_t *)&c->tcp, bufs, nbufs);
	if (n < 0 && n != UV_EAGAIN) {
		sl_conn_close(c); /* what the write callback would have done */
		return -1;
	}
	c->bytes_out += na + nb;
	done = n > 0 ? (size_t)n : 0;
	if (done == na + nb)
		return 1;
	/* the rest (a full socket buffer, or a write already queued) */
	while (i < nbufs && done >= bufs[i].len)
		done -= bufs[i++].len;
	bufs[i].base += done;
	bufs[i].len -= done;
	c->writing = true;
	c->wreq.data = c;
	if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs + i, nbufs - i, cb) < 0) {
		c->writing = false;
		sl_conn_close(c);
		return -1;
	}
	return 0;
}

/* A local response is out. The request ends once its body is in; the
 * caller goes on with process(). */
static void written(struct sl_conn *c)
{
	c->resp_done = true;
	if (c->close_after) {
		sl_metrics_request(c->w->shard, c->l->name, c->status);
		if ((c->policy ? c->policy : c->w->policy)->server.access_log)
			sl_access_log(c);
		sl_conn_close(c);
		return;
	}
	finish_maybe(c);
}

static void write_cb(uv_write_t *req, int status)
{
	struct sl_conn *c = req->data;
	c->writing = false;
	if (status < 0 || c->closing) {
		sl_conn_close(c);
		return;
	}
	written(c);
	if (!c->closing)
		process(c);
}

static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

static void continue_cb(uv_write_t *req, int status)
{
	free(req);
}

/* Tell a client that waits on Expect: 100-continue to send its body. */
void sl_conn_send_continue(struct sl_conn *c)
{
	uv_write_t *req;
	if (!c->expect_continue)
		return;
	c->expect_continue = false;
	req = malloc(sizeof(*req)); /* once per Expect request; rare */
	if (!req)
		return;
	uv_buf_t b = uv_buf_init((char *)continue_100, sizeof(continue_100) - 1);
	if (sl_io_write(&c->tcp, c->tls, req, &b, 1, continue_cb) < 0)
		free(req);
}

/* Compose a complete local response in c->out: status line, the policy's
 * rate-limit headers (when decided), the body. */
static void respond(struct sl_conn *c, int status, const char *ctype, const char *body, size_t blen,
                    bool decided)
{
	struct sl_http_out *o = &c->out;
	bool close = !c->keep_alive || c->close_after || c->w->draining ||
	             (c->expect_continue && !c->req_end) || status == 400 || status == 408 ||
	             status == 413 || status == 431;

	sl_http_out_init(o, c->obuf, SL_OUT_CAP - BODY_MAX);
	sl_http_out_status(o, status, NULL);
	if (decided)
		sl_render_headers(&c->ev, sl_http_out_emit, o);
	if (ctype)
		sl_http_out_header_c(o, "Content-Type", ctype);
	sl_http_out_header_u64(o, "Content-Length", blen);
	if (close)
		sl_http_out_header_c(o, "Connection", "close");
	sl_http_out_bytes(o, "\r\n", 2);
	if (o->overflow) {
		sl_http_out_init(o, c->obuf, SL_OUT_CAP - BODY_MAX);
		sl_http_out_simple(o, 500, NULL, NULL, 0, true);
		close = true;
		blen = 0;
		status = 500;
	}
	if (blen && !c->head_method) {                 /* HEAD: Content-Length without the body */
		memmove(c->obuf + o->len, body, blen); /* body may sit in obuf's tail */
		o->len += blen;
	}
	c->status = status;
	c->expect_continue = false;
	if (close) {
		c->keep_alive = false;
		c->close_after = true;
	}
	c->phase = SL_PH_LOCAL;
	arm(c, T_BODY,
	    c->policy ? c->policy->server.idle_timeout : c->w->policy->server.idle_timeout);
	/* Usually the whole response fits in the socket buffer: one write
	 * system call, and the request goes on without a loop pass. Every
	 * caller runs process() (or closes) after this. */
	if (sl_conn_send(c, c->obuf, o->len, NULL, 0, write_cb) == 1)
		written(c);
}

void sl_conn_answer_error(struct sl_conn *c, int status, bool close)
{
	char body[128];
	int n = snprintf(body, sizeof(body), "{\"error\":{\"status\":%d,\"message\":\"%s\"}}",
	                 status, sl_http_reason(status));
	if (close)
		c->close_after = true;
	c->req_end = c->req_end || close; /* nothing more is read after a fatal error */
	respond(c, status, "application/json", body, (size_t)n, false);
}

/* ---- the request ---- */

static void proceed(struct sl_conn *c)
{
	static const char ok[] = "{\"ok\":true}";
	if (c->l->kind == SL_LK_CHECK) {
		respond(c, 200, NULL, NULL, 0, true);
	} else if (c->l->is_static || !c->l->up) {
		respond(c, 200, "application/json", ok, sizeof(ok) - 1, true);
	} else {
		c->phase = SL_PH_PROXY;
		disarm(c);
		sl_proxy_start(c);
	}
}

static void reject(struct sl_conn *c)
{
	const char *ctype = NULL;
	char *body = c->obuf + SL_OUT_CAP - BODY_MAX;
	long n = sl_render_body(&c->ev, body, BODY_MAX, &ctype);
	if (n < 0)
		n = 0;
	respond(c, c->ev.decision.status, n ? ctype : NULL, body, (size_t)n, true);
}

static void decide_done(struct sl_batch *b)
{
	struct sl_conn *c = b->data;
	struct sl_worker *w = c->w;
	int status;

	pending_done(c);
	if (c->closing) {
		free_if_done(c);
		return;
	}
	status = sl_eval_finish(&c->ev);
	c->decided = true;
	if (w->shard)
		sl_metrics_eval(w->shard, c->l->name, &c->ev, (int64_t)(uv_hrtime() - c->t_decide));
	if (w->ushard)
		sl_usage_eval(w->ushard, &c->ev);
	if (status == 200) {
		c->release_pending = c->l->kind == SL_LK_PROXY;
		if (c->ev.decision.delay > 0) {
			c->phase = SL_PH_DELAY;
			sl_metrics_delayed(w->shard, 1);
			arm(c, T_DELAY, c->ev.decision.delay);
			return;
		}
		proceed(c);
	} else {
		reject(c);
	}
	if (!c->in_decide && !c->closing)
		process(c); /* the store answered later: go on with the body */
}

/* responses.usage_path (DESIGN.md section 7): the caller's own usage, as
 * identified (ip, key, account), from a peek: nothing consumed, no slot
 * taken, the usual rate-limit headers. An unknown key is the usual 401; a
 * store failure is 503 whatever store.on_error says (no numbers to show). */
static void usage_done(struct sl_batch *b)
{
	struct sl_conn *c = b->data;
	char *body = c->obuf + SL_OUT_CAP - BODY_MAX;
	int status;
	long n;

	pending_done(c);
	if (c->closing) {
		free_if_done(c);
		return;
	}
	status = sl_eval_finish(&c->ev);
	c->decided = true;
	if (c->ev.decision.store_error) {
		/* nothing to show whatever store.on_error says: no numbers */
		sl_conn_answer_error(c, 503, false);
	} else if (status == 401 || status == 403) {
		reject(c); /* an unknown key, a suspended account: as on any path */
	} else {
		n = sl_render_usage(&c->ev, body, BODY_MAX);
		if (n < 0)
			sl_conn_answer_error(c, 500, false);
		else
			respond(c, 200, "application/json", body, (size_t)n, true);
	}
	if (!c->in_decide && !c->closing)
		process(c);
}

static bool is_usage_path(const struct sl_policy *p, const struct sl_request *req)
{
	const char *u = p->responses.usage_path;

	return u != NULL && req->path.len == strlen(u) &&
	       memcmp(req->path.p, u, req->path.len) == 0;
}

static void decide(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	struct sl_request req;
	int64_t now = sl_worker_now_fresh(w);
	bool submitted_nothing, peek;
	int rc;

	c->phase = SL_PH_DECIDE;
	if (c->policy)
		sl_policy_unref(c->policy);
	c->policy = w->policy;
	sl_policy_ref(c->policy);
	sl_http_request_view(&c->hp.msg, (const struct sockaddr *)&c->peer, &req);
	if (c->l->kind == SL_LK_CHECK)
		sl_http_forward_auth(&c->hp.msg, &req);
	peek = is_usage_path(c->policy, &req);
	rc = peek ? sl_eval_peek_begin(&c->ev, c->policy, &req, now, SL_PEEK_CALLER)
	          : sl_eval_begin(&c->ev, c->policy, &req, now);
	if (rc < 0) {
		sl_conn_answer_error(c, rc == SL_ENOMEM ? 431 : 400, true);
		return;
	}
	submitted_nothing = c->ev.batch.n == 0;
	c->ev.batch.loop = &w->loop;
	c->ev.batch.done = peek ? usage_done : decide_done;
	c->ev.batch.data = c;
	c->ev.batch.now = now;
	c->store_pending++;
	c->in_decide = true;
	/* Whether done() still has to run is decided before submitting: an
	 * inline completion may answer, close and release() the connection,
	 * which reuses ev.batch (n becomes 0). Reading the batch afterwards ran
	 * decide_done() a second time on a closed connection, and the
	 * underflowed store_pending kept it from ever being freed. */
	rc = c->ev.batch.n ? sl_store_submit(w->srv->store, &c->ev.batch) : SL_OK;
	if (rc < 0 || submitted_nothing) {
		c->ev.batch.status = rc;
		c->ev.batch.time = now;
		c->ev.batch.done(&c->ev.batch);
	}
	c->in_decide = false;
}

/* ---- admin ---- */

static void admin_send(struct sl_conn *c)
{
	struct sl_admin_resp *r = &c->acall->resp;
	struct sl_http_out *o = &c->out;
	bool close = !c->keep_alive || c->w->draining;

	sl_http_out_init(o, c->obuf, SL_OUT_CAP);
	sl_http_out_status(o, r->status, NULL);
	if (r->content_type)
		sl_http_out_header_c(o, "Content-Type", r->content_type);
	for (size_t i = 0; i < r->nextra && i < SL_ADMIN_MAX_EXTRA; i++)
		sl_http_out_header(o, r->extra[i].name, r->extra[i].value);
	sl_http_out_header_u64(o, "Content-Length", r->len);
	if (close) {
		sl_http_out_header_c(o, "Connection", "close");
		c->close_after = true;
	}
	sl_http_out_bytes(o, "\r\n", 2);
	c->status = r->status;
	c->phase = SL_PH_LOCAL;
	write2(c, c->obuf, o->len, sl_admin_resp_data(r), c->head_method ? 0 : r->len, NULL);
}

static void admin_done(struct sl_admin_call *call)
{
	struct sl_conn *c = call->data;
	pending_done(c);
	if (c->closing) {
		free_if_done(c);
		return;
	}
	admin_send(c);
}

static void admin_dispatch(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	struct sl_http_msg *m = &c->hp.msg;
	struct sl_admin_req r;
	int rc;

	if (!w->admin_on) {
		/* no admin front end: answer the health check only */
		static const char ok[] = "ok\n";
		bool health = sl_str_ieq(m->path, "/healthz");
		respond(c, health ? 200 : 404, "text/plain", health ? ok : "not found\n",
		        health ? 3 : 10, false);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.method = m->method;
	r.path = m->path;
	r.query = m->query;
	r.headers = m->headers;
	r.nheaders = m->nheaders;
	r.body.p = c->abody;
	r.body.len = c->hp.sink_len;
	r.policy = w->policy;
	r.now = sl_worker_now(w);
	c->acall->done = admin_done;
	c->acall->data = c;
	c->store_pending++;
	rc = sl_admin_handle(&w->admin, c->acall, &r);
	if (rc != SL_AGAIN)
		admin_done(c->acall);
}

/* ---- parsing ---- */

static void on_head(struct sl_conn *c)
{
	struct sl_http_msg *m = &c->hp.msg;
	struct sl_worker *w = c->w;

	disarm(c);
	c->t_start = sl_worker_now(w);
	c->t_decide = uv_hrtime();
	c->keep_alive = m->keep_alive && !w->draining;
	c->expect_continue = m->expect_continue && m->has_body;
	c->req_end = false;
	c->resp_done = false;
	c->close_after = false;
	c->status = 0;
	c->bytes_out = 0;
	c->up_ns = 0;
	c->decided = false;
	c->head_method = m->method.len == 4 && memcmp(m->method.p, "HEAD", 4) == 0;
	{
		/* "METHOD target" (at most 200 bytes of it) for the access log */
		size_t ml = m->method.len < 32 ? m->method.len : 32;
		size_t ul = m->url.len > 200 ? 200 : m->url.len;
		memcpy(c->logline, m->method.p, ml);
		c->logline[ml] = ' ';
		memcpy(c->logline + ml + 1, m->url.p, ul);
		c->logline[ml + 1 + ul] = 0;
	}
	if (c->l->kind == SL_LK_ADMIN) {
		c->phase = SL_PH_ADMIN;
		arm(c, T_BODY, w->policy->server.idle_timeout);
		sl_conn_send_continue(c);
		return; /* dispatched at the end of the body */
	}
	decide(c);
}

/* Move unparsed bytes (and a head still needed) to the front. */
static void compact(struct sl_conn *c)
{
	size_t keep = c->rpos;
	if ((c->phase == SL_PH_HEAD && c->hp.state == SL_HTTP_IN_HEAD) || c->phase == SL_PH_ADMIN)
		keep = c->head_start;
	if (keep == 0)
		return;
	memmove(c->rbuf, c->rbuf + keep, c->rlen - keep);
	c->rlen -= keep;
	c->rpos -= keep;
	c->head_start = c->head_start >= keep ? c->head_start - keep : 0;
	if (c->hp.state == SL_HTTP_IN_HEAD || c->phase == SL_PH_ADMIN)
		sl_http_rebase(&c->hp, keep);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
	struct sl_conn *c = h->data;
	compact(c);
	buf->base = c->rbuf + c->rlen;
	buf->len = c->rcap - c->rlen;
}

/* Whether the socket should be polled for reading. Reading stays on while a
 * response is in flight (its bytes are in obuf or the upstream's buffer,
 * never in rbuf) and what arrives meanwhile is only buffered, not parsed,
 * until that response is out: so a keep-alive exchange costs no
 * uv_read_stop/uv_read_start (two epoll_ctl calls) per request, and a
 * pipelining client is still back-pressured once rbuf is full. Reading is
 * off while a store batch or a delay holds views into rbuf, and while
 * request body bytes from rbuf are in flight to the upstream. */
static bool want_read(struct sl_conn *c)
{
	if (c->closing || c->peer_eof)
		return false;
	switch (c->phase) {
	case SL_PH_HEAD:
		return !c->store_pending && !c->writing && !c->w->paused;
	case SL_PH_LOCAL:
		return true; /* the body is discarded, then the next one waits */
	case SL_PH_ADMIN:
		return !c->req_end;
	case SL_PH_PROXY:
		/* a head in flight to the upstream is a copy (its hbuf): only
		 * body bytes written from rbuf stop reading */
		return c->up && !(c->body_inflight && c->up->head_written);
	default:
		return false;
	}
}

void sl_conn_update_read(struct sl_conn *c)
{
	bool want = want_read(c);
	if (want && c->rlen == c->rcap) {
		compact(c);
		if (c->rlen == c->rcap)
			want = false;
	}
	if (want && !c->reading) {
		if (sl_io_read_start(&c->tcp, c->tls, alloc_cb, read_cb) == 0)
			c->reading = true;
	} else if (!want && c->reading) {
		sl_io_read_stop(&c->tcp, c->tls);
		c->reading = false;
	}
}

/* The request ended and its response is out: log, and go on with the next
 * one (or close). */
void sl_conn_request_done(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	sl_metrics_request(w->shard, c->l->name, c->status);
	if (c->policy && c->policy->server.access_log)
		sl_access_log(c);
	c->decided = false; /* a head that fails to parse next has no decision */
	c->head_method = false;
	c->logline[0] = 0;
	release(c);
	if (!c->keep_alive || c->close_after || w->draining) {
		sl_conn_close(c);
		return;
	}
	c->phase = SL_PH_HEAD;
	c->req_end = c->resp_done = false;
	if (w->handoff && sl_conn_handoff(c))
		return;
	arm(c, T_IDLE, w->policy->server.idle_timeout);
}

static void finish_maybe(struct sl_conn *c)
{
	if (c->req_end && c->resp_done && !c->up && c->phase != SL_PH_HEAD)
		sl_conn_request_done(c);
}

static void process(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	size_t used;
	int ev;

	while (!c->closing) {
		if (c->phase == SL_PH_HEAD) {
			if (c->store_pending || c->writing || w->paused)
				break; /* paused: a takeover decides what comes next */
			if (c->hp.state == SL_HTTP_IDLE) {
				if (c->rpos == c->rlen) {
					if (w->draining) {
						sl_conn_close(c);
						return;
					}
					break;
				}
				c->head_start = c->rpos;
				arm(c, T_HEADER, w->policy->server.header_timeout);
			}
			c->hp.max_head = w->policy->server.max_header_bytes;
			if (c->hp.max_head == 0 || c->hp.max_head > c->rcap)
				c->hp.max_head = c->rcap;
			c->hp.max_body = w->policy->server.max_body_bytes;
			ev = sl_http_parse(&c->hp, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
			c->rpos += used;
			if (ev == SL_HTTP_ERR) {
				sl_conn_answer_error(c, c->hp.error_status, true);
				return;
			}
			if (ev == SL_HTTP_HEAD) {
				on_head(c);
				continue;
			}
			if (c->head_start == 0 && c->rlen == c->rcap) {
				sl_conn_answer_error(c, 431, true);
				return;
			}
			break;
		}
		if (c->phase == SL_PH_DECIDE || c->phase == SL_PH_DELAY || c->req_end)
			break;
		if (c->phase == SL_PH_PROXY && (c->body_inflight || !c->up))
			break;
		/* body bytes of the current request */
		ev = sl_http_parse(&c->hp, c->rbuf + c->rpos, c->rlen - c->rpos, &used);
		const char *p = c->rbuf + c->rpos;
		c->rpos += used;
		if (ev == SL_HTTP_ERR) {
			if (c->phase == SL_PH_PROXY && c->up && !c->up->resp_head) {
				sl_proxy_abort(c);
				c->phase = SL_PH_LOCAL;
				sl_conn_answer_error(c, c->hp.error_status, true);
			} else if (c->phase == SL_PH_ADMIN) {
				c->phase = SL_PH_LOCAL;
				sl_conn_answer_error(c, c->hp.error_status, true);
			} else if (c->writing) {
				c->req_end = true;
				c->close_after = true;
			} else {
				sl_conn_close(c);
			}
			return;
		}
		if (c->phase != SL_PH_PROXY)
			arm(c, T_BODY, w->policy->server.idle_timeout);
		if (ev == SL_HTTP_END)
			c->req_end = true;
		if (c->phase == SL_PH_PROXY) {
			if (used || ev == SL_HTTP_END)
				sl_proxy_body(c, p, used, ev == SL_HTTP_END);
			if (ev == SL_HTTP_END || used == 0)
				break;
			continue;
		}
		if (c->phase == SL_PH_ADMIN) {
			if (ev == SL_HTTP_END) {
				admin_dispatch(c);
				continue; /* answered at once: on with the next request */
			}
			if (c->head_start == 0 && c->rlen == c->rcap) {
				c->phase = SL_PH_LOCAL;
				sl_conn_answer_error(c, 413, true);
				return;
			}
			break;
		}
		/* SL_PH_LOCAL: the body is discarded */
		if (ev == SL_HTTP_END) {
			finish_maybe(c);
			continue;
		}
		break;
	}
	if (!c->closing)
		sl_conn_update_read(c);
}

void sl_conn_process(struct sl_conn *c)
{
	process(c);
}

/* EOF or a read error: between requests that is the normal end; mid-request
 * or mid-response nobody is left to answer (a proxied exchange is dropped
 * and its concurrency slots given back). */
static void peer_gone(struct sl_conn *c)
{
	sl_conn_close(c);
}

static void read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct sl_conn *c = s->data;
	if (nread > 0) {
		c->rlen += (size_t)nread;
		process(c);
		return;
	}
	if (nread == 0)
		return;
	if (nread == UV_EOF && c->phase == SL_PH_LOCAL && c->req_end && !c->resp_done) {
		/* The whole request is in and its answer is being written: a
		 * client that half-closed after sending still gets it (reading
		 * used to be off here). Close once it is out. */
		c->peer_eof = true;
		c->keep_alive = false;
		sl_io_read_stop(&c->tcp, c->tls);
		c->reading = false;
		return;
	}
	if (nread == UV_ENOBUFS) {
		sl_io_read_stop(&c->tcp, c->tls);
		c->reading = false;
		process(c);
		return;
	}
	peer_gone(c);
}

static void timer_cb(uv_timer_t *t)
{
	struct sl_conn *c = t->data;
	uint8_t what = c->timer_what;
	uint64_t now = uv_now(&c->w->loop);

	if (what != T_NONE && now < c->deadline) {
		uv_timer_start(&c->timer, timer_cb, c->deadline - now, 0);
		c->timer_due = c->deadline;
		return;
	}
	if (c->w->paused && c->phase == SL_PH_HEAD &&
	    (what == T_IDLE || what == T_FIRST || what == T_HEADER)) {
		/* a takeover's pause (bounded) holds it unread: the client is not
		 * the slow one; look again in a second */
		arm(c, what, 1000000000LL);
		return;
	}
	c->timer_what = T_NONE;
	switch (what) {
	case T_IDLE:
	case T_FIRST:
		sl_conn_close(c);
		break;
	case T_HEADER:
		if (c->writing) {
			sl_conn_close(c);
			break;
		}
		c->req_end = true;
		c->keep_alive = false;
		sl_conn_answer_error(c, 408, true);
		break;
	case T_BODY:
		sl_conn_close(c);
		break;
	case T_DELAY:
		sl_metrics_delayed(c->w->shard, -1);
		proceed(c);
		if (!c->closing)
			process(c);
		break;
	default:
		break;
	}
}

void sl_conn_drain(struct sl_conn *c)
{
	c->keep_alive = false;
	if (c->phase == SL_PH_HEAD && c->hp.state == SL_HTTP_IDLE && !c->writing &&
	    !c->store_pending)
		sl_conn_close(c);
}

bool sl_conn_handoff(struct sl_conn *c)
{
	struct sl_worker *w = c->w;
	size_t from;
	uv_os_fd_t fd;
	int dup;

	if (c->closing || c->phase != SL_PH_HEAD || c->writing || c->store_pending || c->up ||
	    c->peer_eof || !c->keep_alive || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
		return false;
	/* A TLS session cannot move to another process (its keys and sequence
	 * numbers live here): an idle one is closed with close_notify, as any
	 * idle keep-alive connection may be, and its client reconnects to the
	 * new process. */
	if (c->tls != NULL) {
		sl_conn_close(c);
		return true;
	}
	/* a head in progress is sent whole and parsed again over there */
	from = c->hp.state == SL_HTTP_IDLE ? c->rpos : c->head_start;
	dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (dup < 0)
		return false;
	w->srv->handoff.conn(w->srv->handoff.arg, sl_listener_slot(c->l), dup, c->rbuf + from,
	                     c->rlen - from);
	sl_conn_close(c); /* the socket stays open: the other process holds it */
	return true;
}

static int accept_conn(struct sl_listener *l, int fd, const struct sockaddr_storage *peer,
                       struct sl_conn **out);

int sl_conn_adopt(struct sl_listener *l, int fd, const char *bytes, size_t n)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);
	struct sl_conn *c = NULL;
	int rc;

	memset(&peer, 0, sizeof(peer));
	if (getpeername(fd, (struct sockaddr *)&peer, &len) != 0 || len > sizeof(peer))
		memset(&peer, 0, sizeof(peer));
	rc = accept_conn(l, fd, &peer, &c);
	if (rc < 0 || !c || c->closing)
		return rc;
	if (n > c->rcap) {
		sl_conn_close(c);
		return SL_EINVAL;
	}
	memcpy(c->rbuf, bytes, n);
	c->rlen = n;
	if (n)
		process(c);
	return 0;
}

int sl_conn_accept(struct sl_listener *l, int fd, const struct sockaddr_storage *peer)
{
	struct sl_conn *c;
	return accept_conn(l, fd, peer, &c);
}

/* Take a connection from the free list (or allocate one) for the socket
 * fd that on_readable accepted; *out is it (NULL on failure). */
static int accept_conn(struct sl_listener *l, int fd, const struct sockaddr_storage *peer,
                       struct sl_conn **out)
{
	struct sl_worker *w = l->w;
	struct sl_conn *c;

	*out = NULL;

	if (!sl_list_empty(&w->free)) {
		c = sl_container(w->free.next, struct sl_conn, link);
		sl_list_del(&c->link);
		w->nfree--;
	} else {
		c = calloc(1, sizeof(*c));
		if (!c)
			goto fail;
		c->rcap = w->rcap;
		c->rbuf = malloc(c->rcap);
		c->obuf = malloc(SL_OUT_CAP);
		if (!c->rbuf || !c->obuf) {
			free(c->rbuf);
			free(c->obuf);
			free(c);
			goto fail;
		}
		sl_list_init(&c->link);
	}
	c->w = w;
	c->l = l;
	c->phase = SL_PH_HEAD;
	c->closing = c->close_after = c->writing = c->reading = false;
	c->req_end = c->resp_done = c->body_inflight = c->release_pending = false;
	c->peer_eof = false;
	c->decided = false;
	c->head_method = false;
	c->logline[0] = 0;
	c->up_ns = 0;
	c->store_pending = 0;
	c->rlen = c->rpos = c->head_start = 0;
	c->up = NULL;
	c->tls = NULL;
	c->keep_alive = true;
	c->expect_continue = false;
	sl_http_init(&c->hp, false, w->policy->server.max_header_bytes,
	             w->policy->server.max_body_bytes);
	if (l->kind == SL_LK_ADMIN) {
		if (!c->acall)
			c->acall = calloc(1, sizeof(*c->acall));
		if (!c->abody)
			c->abody = malloc(SL_ADMIN_BODY_MAX);
		c->hp.sink = c->abody;
		c->hp.sink_cap = c->abody ? SL_ADMIN_BODY_MAX : 0;
	}
	uv_tcp_init(&w->loop, &c->tcp);
	uv_timer_init(&w->loop, &c->timer);
	c->tcp.data = c;
	c->timer.data = c;
	c->handles = 2;
	sl_list_add(&w->active, &c->link);
	w->nconns++;
	w->accepted++;
	if (w->shard)
		sl_metrics_conns(w->shard, w->nconns, w->accepted, w->nfree);
	*out = c;
	if (uv_tcp_open(&c->tcp, fd) < 0) {
		close(fd);
		sl_conn_close(c);
		return 0;
	}
	if (l->kind == SL_LK_ADMIN && (!c->acall || !c->abody)) {
		sl_conn_close(c);
		return 0;
	}
	if (l->tls && !(c->tls = sl_tls_new(l->tls, &w->loop, &c->tcp, NULL, NULL))) {
		sl_conn_close(c); /* out of memory: this connection is shed */
		return 0;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->peer = *peer;
	c->peer_ip[0] = 0;
	if (c->peer.ss_family == AF_INET6)
		uv_ip6_name((struct sockaddr_in6 *)&c->peer, c->peer_ip, sizeof(c->peer_ip));
	else if (c->peer.ss_family == AF_INET)
		uv_ip4_name((struct sockaddr_in *)&c->peer, c->peer_ip, sizeof(c->peer_ip));
	/* Nothing has arrived yet: a connection that never sends a byte is
	 * held for header_timeout, not idle_timeout. */
	arm(c, T_FIRST, w->policy->server.header_timeout);
	sl_conn_update_read(c);
	return 0;

fail:
	close(fd);
	return SL_ENOMEM;
}
