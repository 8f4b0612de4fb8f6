/* The server: worker threads, each running its own libuv loop with its own
 * SO_REUSEPORT listening sockets (the kernel spreads connections across
 * them), its own connection free list and upstream pools. Workers share
 * only the policy (refcounted, swapped through a mutex + uv_async on
 * reload), the store and the metrics.
 *
 * Everything is bound on the main thread before any worker starts, so a
 * port in use is a startup error, not a thread that dies later. */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include "net/clock.h"
#include "net/net-int.h"
#include "policy/listen.h"

int64_t sl_worker_now(struct sl_worker *w)
{
	if (!w->now_valid) {
		w->now = sl_clock_now();
		w->now_valid = true;
	}
	return w->now;
}

int64_t sl_worker_now_fresh(struct sl_worker *w)
{
	w->now = sl_clock_now();
	w->now_valid = true;
	return w->now;
}

static void pause_ack_maybe(struct sl_worker *w);

static void pass_cb(uv_prepare_t *h)
{
	struct sl_worker *w = h->data;
	w->now_valid = false;
	if (w->paused && !w->pause_acked)
		pause_ack_maybe(w);
}

static void pass_check_cb(uv_check_t *h)
{
	((struct sl_worker *)h->data)->now_valid = false;
}

/* SO_REUSEPORT lets any process of the same user bind the address too,
 * and the kernel would then split connections (and so counters) between
 * the two daemons without a word. Before binding, try the address once
 * without SO_REUSEPORT: that fails with EADDRINUSE when anything already
 * listens there. Returns 0 or an errno value. */
static int probe_free(const struct sockaddr_storage *ss, socklen_t len)
{
	int one = 1, rc = 0;
	int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ss->ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)ss, len) < 0)
		rc = errno;
	close(fd);
	return rc;
}

static void listener_closed_cb(uv_handle_t *h)
{
	struct sl_listener *l = h->data;
	if (l->fd >= 0)
		close(l->fd);
	l->fd = -1;
}

static void close_listener(struct sl_listener *l)
{
	if (l->closed)
		return;
	l->closed = true;
	l->polling = false;
	uv_close((uv_handle_t *)&l->poll, listener_closed_cb);
}

static void on_readable(uv_poll_t *h, int status, int events);

static void poll_on(struct sl_listener *l)
{
	if (l->closed || l->polling || l->w->accept_paused || l->w->draining || l->w->paused)
		return;
	if (uv_poll_start(&l->poll, UV_READABLE, on_readable) == 0)
		l->polling = true;
}

static void poll_off(struct sl_listener *l)
{
	if (!l->polling)
		return;
	uv_poll_stop(&l->poll);
	l->polling = false;
}

static void pause_done(uv_timer_t *t)
{
	struct sl_worker *w = t->data;
	w->accept_paused = false;
	for (size_t i = 0; i < w->nlisteners; i++)
		if (w->nconns < w->max_conns)
			poll_on(&w->listeners[i]);
}

/* Out of descriptors (EMFILE/ENFILE) or kernel memory: stop accepting on
 * every listener of this worker for SL_EMFILE_PAUSE ms (nginx does the
 * same), so the loop keeps serving the connections it has and signals
 * and drains still get through. One stderr line per 10 s at most. */
static void accept_pause(struct sl_worker *w, int err)
{
	struct sl_server *s = w->srv;
	int64_t now = sl_clock_now(), last;
	uint64_t n = __atomic_add_fetch(&s->emfile, 1, __ATOMIC_RELAXED);

	w->accept_paused = true;
	if (w->shard)
		sl_metrics_accept_paused(w->shard);
	for (size_t i = 0; i < w->nlisteners; i++)
		poll_off(&w->listeners[i]);
	uv_timer_start(&w->pause_timer, pause_done, SL_EMFILE_PAUSE, 0);
	last = __atomic_load_n(&s->emfile_logged, __ATOMIC_RELAXED);
	if (now - last >= 10 * 1000000000LL &&
	    __atomic_compare_exchange_n(&s->emfile_logged, &last, now, false, __ATOMIC_RELAXED,
	                                __ATOMIC_RELAXED)) {
		struct rlimit rl;
		uint64_t before = __atomic_exchange_n(&s->emfile_reported, n, __ATOMIC_RELAXED);
		getrlimit(RLIMIT_NOFILE, &rl);
		fprintf(stderr,
		        "sluice: accept: %s (open file limit %llu): accepting paused for %d ms "
		        "(%llu times since the last report)\n",
		        strerror(err), (unsigned long long)rl.rlim_cur, SL_EMFILE_PAUSE,
		        (unsigned long long)(n - before));
	}
}

/* Accept what is pending, at most SL_ACCEPT_BATCH per event so one busy
 * listener cannot starve the loop; at the connection cap polling stops
 * until a connection is freed (sl_worker_conn_freed). */
static void on_readable(uv_poll_t *h, int status, int events)
{
	struct sl_listener *l = h->data;
	struct sl_worker *w = l->w;

	if (w->draining || w->paused)
		return;
	if (status < 0) { /* a poll error: level-triggered, it would fire again at once */
		accept_pause(w, -status);
		return;
	}
	for (int i = 0; i < SL_ACCEPT_BATCH; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd;

		if (w->nconns >= w->max_conns) {
			poll_off(l);
			return;
		}
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EINTR:
			case ECONNABORTED:
			case EPROTO:
				continue;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				accept_pause(w, errno);
				return;
			case EAGAIN:
#if EWOULDBLOCK != EAGAIN
			case EWOULDBLOCK:
#endif
				return; /* nothing left */
			default:        /* unexpected: pause rather than spin on it */
				accept_pause(w, errno);
				return;
			}
		}
		if (len > sizeof(ss))
			memset(&ss, 0, sizeof(ss));
		if (sl_conn_accept(l, fd, &ss) < 0) {
			accept_pause(w, ENOMEM);
			return;
		}
	}
}

static bool same_addr(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		       memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

unsigned sl_listener_slot(const struct sl_listener *l)
{
	const struct sl_worker *w = l->w;
	unsigned idx = (unsigned)(l - w->listeners);

	for (unsigned j = 0; j < idx; j++)
		if (same_addr(&w->listeners[j].addr, &l->addr))
			return j;
	return idx;
}

/* An inherited socket (sl_server_create_inherit) listening on ss and not
 * used yet: its fd, now the listener's; -1 when there is none. */
static int take_inherited(struct sl_server *s, const struct sockaddr_storage *ss)
{
	for (size_t i = 0; i < s->ninherit; i++)
		if (!s->inherit_used[i] && same_addr(&s->inherit[i].addr, ss)) {
			int fd = s->inherit[i].fd;
			s->inherit_used[i] = true;
			fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
			return fd;
		}
	return -1;
}

/* Whether ss is the address of an inherited socket: then it is in use by
 * us, not by another process, and a fresh socket joins its SO_REUSEPORT
 * group. */
static bool inherited_addr(const struct sl_server *s, const struct sockaddr_storage *ss)
{
	for (size_t i = 0; i < s->ninherit; i++)
		if (same_addr(&s->inherit[i].addr, ss))
			return true;
	return false;
}

static int listen_on(struct sl_worker *w, struct sl_listener *l, char *err, size_t cap)
{
	struct sockaddr_storage ss;
	int fd, one = 1, rc;
	socklen_t slen;

	l->fd = -1;
	/* A host name is resolved once, by worker 0, so every worker binds the
	 * same address even when the name's answers rotate. */
	if (w->index > 0) {
		const struct sl_listener *first = &w->srv->workers[0].listeners[l - w->listeners];
		ss = first->addr;
		slen = first->addrlen;
	} else {
		char why[160];
		if (sl_listen_resolve(l->listen, &ss, &slen, why, sizeof(why)) < 0) {
			snprintf(err, cap, "listener %s: listen address \"%s\": %s", l->name,
			         l->listen, why);
			return SL_EINVAL;
		}
	}
	l->addr = ss;
	l->addrlen = slen;
	if ((fd = take_inherited(w->srv, &ss)) >= 0)
		goto have_fd;
	if (w->index == 0 && !inherited_addr(w->srv, &ss) && (rc = probe_free(&ss, slen)) != 0) {
		if (rc == EADDRINUSE)
			snprintf(err, cap,
			         "listener %s: %s is already in use by another process (is another "
			         "sluice running?)",
			         l->name, l->listen);
		else
			snprintf(err, cap, "listener %s on %s: %s", l->name, l->listen,
			         strerror(rc));
		return SL_EIO;
	}
	fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) < 0)
		goto fail_fd;
	if (ss.ss_family == AF_INET6)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, 1024) < 0)
		goto fail_fd;
have_fd:
	l->w = w;
	l->fd = fd;
	if ((rc = uv_poll_init(&w->loop, &l->poll, fd)) < 0) {
		snprintf(err, cap, "listener %s on %s: %s", l->name, l->listen, uv_strerror(rc));
		return SL_EIO;
	}
	l->poll.data = l;
	poll_on(l);
	return 0;
fail_fd:
	rc = errno;
	close(fd);
	errno = rc;
fail:
	snprintf(err, cap, "listener %s on %s: %s", l->name, l->listen, strerror(errno));
	return SL_EIO;
}

static void copy(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

static void worker_closed_cb(uv_handle_t *h)
{
}

static void admin_closed(struct sl_admin *a)
{
}

static void detach_cb(uv_timer_t *t)
{
	struct sl_worker *w = t->data;
	w->srv->detach(w->srv->store, &w->loop);
	uv_close((uv_handle_t *)t, worker_closed_cb);
}

void sl_worker_maybe_exit(struct sl_worker *w)
{
	if ((!w->draining && !w->handoff) || w->closed || w->nconns || w->nupconns)
		return;
	pthread_mutex_lock(&w->mu);
	w->closed = true;
	uv_close((uv_handle_t *)&w->async, worker_closed_cb);
	pthread_mutex_unlock(&w->mu);
	for (size_t i = 0; i < w->nlisteners; i++)
		close_listener(&w->listeners[i]);
	uv_close((uv_handle_t *)&w->pause_timer, worker_closed_cb);
	uv_close((uv_handle_t *)&w->trim_timer, worker_closed_cb);
	if (w->admin_on)
		sl_admin_close(&w->admin, admin_closed);
	uv_close((uv_handle_t *)&w->prep, worker_closed_cb);
	uv_close((uv_handle_t *)&w->check, worker_closed_cb);
	if (w->srv->detach) {
		uv_timer_init(&w->loop, &w->detach_timer);
		w->detach_timer.data = w;
		uv_timer_start(&w->detach_timer, detach_cb, 0, 0);
	}
}

void sl_worker_conn_freed(struct sl_worker *w)
{
	if (w->nconns < w->max_conns)
		for (size_t i = 0; i < w->nlisteners; i++)
			poll_on(&w->listeners[i]);
	sl_worker_maybe_exit(w);
}

/* After a burst of connections closed, the memory freed to malloc stays in
 * its arenas until trimmed: give it back once things are quiet. */
static void trim_cb(uv_timer_t *t)
{
	struct sl_worker *w = t->data;
	if (w->freed_since_trim >= SL_FREE_KEEP) {
		w->freed_since_trim = 0;
		malloc_trim(0);
	}
}

bool sl_worker_keep_conn(struct sl_worker *w)
{
	if (w->nfree < SL_FREE_KEEP)
		return true;
	w->freed_since_trim++;
	return false;
}

static void start_drain(struct sl_worker *w)
{
	struct sl_list *n, *next;
	if (w->draining)
		return;
	w->draining = true;
	for (size_t i = 0; i < w->nlisteners; i++)
		close_listener(&w->listeners[i]);
	/* a takeover that never completed: what waited is decided here */
	bool unpause = w->paused && !w->handoff;
	if (unpause)
		w->paused = w->fwd_release = false;
	for (n = w->active.next; n != &w->active; n = next) {
		struct sl_conn *c = sl_container(n, struct sl_conn, link);
		next = n->next;
		sl_conn_drain(c);
		if (unpause && !c->closing && c->phase == SL_PH_HEAD)
			sl_conn_process(c);
	}
	sl_upstream_close_idle(w);
	sl_worker_maybe_exit(w);
}

/* A paused worker tells the takeover it decides nothing any more once no
 * admin request is still reading its body: /v1/decide decides at the end
 * of the body, so one whose head came before the pause is let finish
 * (and counted in the snapshot) first. Checked again every loop pass. */
static void pause_ack_maybe(struct sl_worker *w)
{
	for (struct sl_list *n = w->active.next; n != &w->active; n = n->next) {
		struct sl_conn *c = sl_container(n, struct sl_conn, link);
		if (!c->closing && c->phase == SL_PH_ADMIN && !c->req_end)
			return;
	}
	w->pause_acked = true;
	w->srv->handoff.paused(w->srv->handoff.arg);
}

/* Takeover, on the worker (server.h): pause, resume, hand off. */
static void takeover_cmd(struct sl_worker *w, uint8_t cmd)
{
	struct sl_list *n, *next;

	if (w->draining || w->handoff)
		return;
	switch (cmd) {
	case SL_TKC_PAUSE:
		if (w->paused)
			break;
		w->paused = true;
		w->pause_acked = false;
		w->fwd_release = __atomic_load_n(&w->srv->fwd_release, __ATOMIC_ACQUIRE);
		for (size_t i = 0; i < w->nlisteners; i++)
			poll_off(&w->listeners[i]);
		pause_ack_maybe(w);
		break;
	case SL_TKC_RESUME:
		if (!w->paused)
			break;
		w->paused = false;
		w->fwd_release = false;
		if (w->nconns < w->max_conns)
			for (size_t i = 0; i < w->nlisteners; i++)
				poll_on(&w->listeners[i]);
		for (n = w->active.next; n != &w->active; n = next) {
			struct sl_conn *c = sl_container(n, struct sl_conn, link);
			next = n->next;
			if (!c->closing && c->phase == SL_PH_HEAD)
				sl_conn_process(c);
		}
		break;
	case SL_TKC_HANDOFF:
		if (!w->paused || !w->pause_acked)
			break;
		w->handoff = true;
		for (size_t i = 0; i < w->nlisteners; i++)
			close_listener(&w->listeners[i]);
		for (n = w->active.next; n != &w->active; n = next) {
			next = n->next;
			sl_conn_handoff(sl_container(n, struct sl_conn, link));
		}
		sl_upstream_close_idle(w);
		sl_worker_maybe_exit(w);
		break;
	default:
		break;
	}
}

static void adopt_all(struct sl_worker *w, struct sl_adopt *a)
{
	while (a) {
		struct sl_adopt *next = a->next;
		if (w->draining || w->handoff || a->index >= w->nlisteners ||
		    w->listeners[a->index].closed)
			close(a->fd);
		else
			sl_conn_adopt(&w->listeners[a->index], a->fd, a->bytes, a->n);
		free(a);
		a = next;
	}
}

static void async_cb(uv_async_t *h)
{
	struct sl_worker *w = h->data;
	struct sl_policy *p;
	bool drain, stop;
	uint8_t tk;
	struct sl_adopt *adopt;
	struct sl_list *n, *next;

	pthread_mutex_lock(&w->mu);
	p = w->next_policy;
	w->next_policy = NULL;
	drain = w->want_drain;
	stop = w->want_stop;
	tk = w->want_takeover;
	w->want_takeover = SL_TKC_NONE;
	adopt = w->adopt;
	w->adopt = NULL;
	pthread_mutex_unlock(&w->mu);
	if (p) {
		sl_policy_unref(w->policy);
		w->policy = p;
		sl_worker_tls_refresh(w);
	}
	if (tk && !drain && !stop)
		takeover_cmd(w, tk);
	adopt_all(w, adopt);
	if (drain || stop)
		start_drain(w);
	if (stop && !w->stopping) {
		w->stopping = true;
		for (n = w->active.next; n != &w->active; n = next) {
			next = n->next;
			sl_conn_close(sl_container(n, struct sl_conn, link));
		}
	}
}

/* The listener conf of w->policy named like l, or NULL. */
static const struct sl_listener_conf *conf_of(struct sl_worker *w, const struct sl_listener *l)
{
	for (size_t i = 0; i < w->policy->nlisteners; i++)
		if (w->policy->listeners[i].name && !strcmp(w->policy->listeners[i].name, l->name))
			return &w->policy->listeners[i];
	return NULL;
}

static void set_ctx(struct sl_tls_ctx **slot, struct sl_tls_ctx *x)
{
	if (!x || *slot == x)
		return; /* a listener that lost its tls in a reload keeps the old one */
	sl_tls_ctx_ref(x);
	sl_tls_ctx_unref(*slot);
	*slot = x;
}

void sl_worker_tls_refresh(struct sl_worker *w)
{
	for (size_t i = 0; i < w->nlisteners; i++) {
		struct sl_listener *l = &w->listeners[i];
		const struct sl_listener_conf *lc;
		if (l->kind == SL_LK_ADMIN || !(lc = conf_of(w, l)))
			continue;
		if (l->tls)
			set_ctx(&l->tls, lc->tls_ctx);
		if (l->up && l->up->tls) {
			/* a kept session is not resumed under a new CA */
			if (lc->up_tls_ctx && lc->up_tls_ctx != l->up->tls_ctx)
				sl_tls_session_drop(&l->up->tls_sess);
			set_ctx(&l->up->tls_ctx, lc->up_tls_ctx);
			copy(l->up->tls_host, sizeof(l->up->tls_host),
			     lc->up_tls.sni ? lc->up_tls.sni : l->up->host);
		}
	}
}

static int64_t admin_clock(void *arg)
{
	return sl_worker_now(arg);
}

static int worker_init(struct sl_server *s, struct sl_worker *w, unsigned index,
                       struct sl_policy *p, char *err, size_t cap)
{
	int rc;

	w->srv = s;
	w->index = index;
	sl_list_init(&w->active);
	sl_list_init(&w->free);
	pthread_mutex_init(&w->mu, NULL);
	if (uv_loop_init(&w->loop) < 0) {
		snprintf(err, cap, "uv_loop_init failed");
		return SL_ENOMEM;
	}
	w->loop_on = true;
	uv_async_init(&w->loop, &w->async, async_cb);
	w->async.data = w;
	uv_prepare_init(&w->loop, &w->prep);
	w->prep.data = w;
	uv_prepare_start(&w->prep, pass_cb);
	uv_check_init(&w->loop, &w->check);
	w->check.data = w;
	uv_check_start(&w->check, pass_check_cb);
	uv_timer_init(&w->loop, &w->pause_timer);
	w->pause_timer.data = w;
	uv_timer_init(&w->loop, &w->trim_timer);
	w->trim_timer.data = w;
	uv_timer_start(&w->trim_timer, trim_cb, SL_TRIM_INTERVAL, SL_TRIM_INTERVAL);
	uv_unref((uv_handle_t *)&w->trim_timer);
	sl_policy_ref(p);
	w->policy = p;
	w->max_conns = p->server.max_connections ? p->server.max_connections : 10000;
	w->rcap = (p->server.max_header_bytes ? p->server.max_header_bytes : 16384) + 4096;
	w->shard = s->metrics ? sl_metrics_shard(s->metrics, index) : NULL;

	for (size_t i = 0; i < p->nlisteners && w->nlisteners < SL_MAX_LISTENERS - 1; i++) {
		const struct sl_listener_conf *lc = &p->listeners[i];
		struct sl_listener *l = &w->listeners[w->nlisteners++];
		copy(l->name, sizeof(l->name), lc->name);
		copy(l->listen, sizeof(l->listen), lc->listen);
		l->kind = lc->mode == SL_MODE_CHECK ? SL_LK_CHECK : SL_LK_PROXY;
		if (lc->tls_ctx) {
			sl_tls_ctx_ref(lc->tls_ctx);
			l->tls = lc->tls_ctx;
		}
		if (l->kind == SL_LK_PROXY) {
			if (!lc->upstream || strcmp(lc->upstream, "static") == 0) {
				l->is_static = true;
			} else {
				struct sl_upstream *u = &w->upstreams[w->nupstreams];
				if ((rc = sl_upstream_parse(u, lc->upstream, err, cap)) < 0)
					return rc;
				w->nupstreams++;
				l->up = u;
				if (u->tls && lc->up_tls_ctx) {
					sl_tls_ctx_ref(lc->up_tls_ctx);
					u->tls_ctx = lc->up_tls_ctx;
					copy(u->tls_host, sizeof(u->tls_host),
					     lc->up_tls.sni ? lc->up_tls.sni : u->host);
				}
			}
		}
		if ((rc = listen_on(w, l, err, cap)) < 0)
			return rc;
	}
	if (p->admin.listen) {
		struct sl_listener *l = &w->listeners[w->nlisteners++];
		copy(l->name, sizeof(l->name), "admin");
		copy(l->listen, sizeof(l->listen), p->admin.listen);
		l->kind = SL_LK_ADMIN;
		if ((rc = listen_on(w, l, err, cap)) < 0)
			return rc;
		if (s->admin_on) {
			rc = sl_admin_init(&w->admin, &s->admin_g, index, &w->loop, s->store, p,
			                   admin_clock, w);
			if (rc < 0) {
				snprintf(err, cap, "admin: %s", sl_strerror(rc));
				return rc;
			}
			w->admin_on = true;
		}
	}
	return 0;
}

/* Raise the soft open-file limit to the hard one, then keep the
 * connection caps of all workers within it: a client connection is one
 * descriptor, two when it is proxied to an upstream, and the loops, the
 * store and the snapshot need a few of their own. When max_connections
 * (default 10,000 per worker) does not fit, it is lowered and the reason
 * left in err (the call still succeeds). */
static void clamp_connections(struct sl_server *s, const struct sl_policy *p, char *err, size_t cap)
{
	struct rlimit rl;
	uint64_t per = 1, budget, reserve, want;
	unsigned fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	if (rl.rlim_cur < rl.rlim_max) {
		struct rlimit up = {rl.rlim_max, rl.rlim_max};
		if (setrlimit(RLIMIT_NOFILE, &up) == 0)
			rl = up;
	}
	for (size_t i = 0; i < p->nlisteners; i++)
		if (p->listeners[i].mode == SL_MODE_PROXY && p->listeners[i].upstream &&
		    strcmp(p->listeners[i].upstream, "static") != 0)
			per = 2;
	reserve = 64 + (uint64_t)s->nworkers * (8 + SL_MAX_LISTENERS);
	if (rl.rlim_cur == RLIM_INFINITY)
		return;
	budget = rl.rlim_cur > reserve ? rl.rlim_cur - reserve : 0;
	want = (uint64_t)s->workers[0].max_conns * s->nworkers * per;
	if (want <= budget)
		return;
	fit = (unsigned)(budget / per / s->nworkers);
	if (fit == 0)
		fit = 1;
	snprintf(err, cap,
	         "max_connections %u per worker x %u workers needs %llu descriptors, the open "
	         "file limit is %llu: using %u per worker",
	         s->workers[0].max_conns, s->nworkers, (unsigned long long)(want + reserve),
	         (unsigned long long)rl.rlim_cur, fit);
	for (unsigned i = 0; i < s->nworkers; i++)
		s->workers[i].max_conns = fit;
}

/* Inherited sockets left over once every worker took its own: one whose
 * address a listener has is served too, by the workers in turn (closing
 * it would reset the connections queued on it); any other is closed. */
static int place_leftovers(struct sl_server *s, char *err, size_t cap)
{
	const struct sl_worker *w0 = &s->workers[0];
	unsigned next = 0;
	int rc;

	for (size_t i = 0; i < s->ninherit; i++) {
		size_t slot = w0->nlisteners;
		if (s->inherit_used[i])
			continue;
		s->inherit_used[i] = true;
		for (size_t j = 0; j < w0->nlisteners; j++)
			if (same_addr(&w0->listeners[j].addr, &s->inherit[i].addr))
				slot = j;
		struct sl_worker *w = &s->workers[next++ % s->nworkers];
		if (slot == w0->nlisteners || w->nlisteners >= SL_MAX_LSOCKS) {
			close(s->inherit[i].fd);
			continue;
		}
		struct sl_listener *l = &w->listeners[w->nlisteners++];
		*l = w->listeners[slot];
		l->fd = s->inherit[i].fd;
		l->polling = l->closed = false;
		fcntl(l->fd, F_SETFL, fcntl(l->fd, F_GETFL) | O_NONBLOCK);
		if ((rc = uv_poll_init(&w->loop, &l->poll, l->fd)) < 0) {
			snprintf(err, cap, "listener %s on %s: %s", l->name, l->listen,
			         uv_strerror(rc));
			return SL_EIO;
		}
		l->poll.data = l;
		poll_on(l);
	}
	return 0;
}

/* What the server itself holds, once its workers are gone. */
static void server_free(struct sl_server *s)
{
	if (s->admin_on)
		sl_admin_global_destroy(&s->admin_g);
	if (s->metrics)
		sl_metrics_destroy(s->metrics);
	sl_policy_unref(s->policy);
	free(s->workers);
	free(s);
}

static void close_any(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* Undo a start that failed part way: no thread ever ran on these loops,
 * so each is closed and run here until its handles are gone, then every
 * descriptor and reference the workers took is given back. Inherited
 * sockets are ours to close (the process that passed them keeps its
 * own copies). */
static void server_abandon(struct sl_server *s)
{
	for (unsigned i = 0; s->workers && i < s->nworkers; i++) {
		struct sl_worker *w = &s->workers[i];
		if (!w->loop_on)
			break;
		if (w->admin_on)
			sl_admin_close(&w->admin, admin_closed);
		uv_walk(&w->loop, close_any, NULL);
		uv_run(&w->loop, UV_RUN_DEFAULT);
		uv_loop_close(&w->loop);
		for (size_t j = 0; j < w->nlisteners; j++) {
			if (w->listeners[j].fd >= 0)
				close(w->listeners[j].fd);
			sl_tls_ctx_unref(w->listeners[j].tls);
		}
		for (size_t j = 0; j < w->nupstreams; j++)
			sl_tls_ctx_unref(w->upstreams[j].tls_ctx);
		if (w->policy)
			sl_policy_unref(w->policy);
		pthread_mutex_destroy(&w->mu);
	}
	for (size_t i = 0; i < s->ninherit; i++)
		if (!s->inherit_used[i])
			close(s->inherit[i].fd);
	free(s->inherit_used);
	server_free(s);
}

int sl_server_create(struct sl_server **out, struct sl_policy *p, struct sl_store *store, char *err,
                     size_t cap)
{
	return sl_server_create_inherit(out, p, store, NULL, 0, err, cap);
}

int sl_server_create_inherit(struct sl_server **out, struct sl_policy *p, struct sl_store *store,
                             const struct sl_server_sock *inherit, size_t ninherit, char *err,
                             size_t cap)
{
	struct sl_server *s = calloc(1, sizeof(*s));
	unsigned n = p->server.workers;
	int rc;

	*out = NULL;
	if (s && ninherit) {
		s->inherit = inherit;
		s->ninherit = ninherit;
		s->inherit_used = calloc(ninherit, sizeof(bool));
	}
	if (!s || (ninherit && !s->inherit_used)) {
		for (size_t i = 0; i < ninherit; i++)
			close(inherit[i].fd);
		free(s);
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	if (n == 0) {
		long cores = sysconf(_SC_NPROCESSORS_ONLN);
		n = cores > 0 ? (unsigned)cores : 1;
	}
	if (n > 256)
		n = 256;
	s->store = store;
	s->nworkers = n;
	sl_policy_ref(p);
	s->policy = p;
	s->workers = calloc(n, sizeof(*s->workers));
	s->metrics = sl_metrics_create(n);
	if (!s->workers || !s->metrics) {
		snprintf(err, cap, "out of memory");
		rc = SL_ENOMEM;
		goto fail;
	}
	if (p->admin.listen) {
		rc = sl_admin_global_init(&s->admin_g, p, n, s->metrics, store, err, cap);
		if (rc < 0)
			goto fail;
		s->admin_on = true;
	}
	for (unsigned i = 0; i < n; i++) {
		rc = worker_init(s, &s->workers[i], i, p, err, cap);
		if (rc < 0)
			goto fail;
	}
	if (ninherit && (rc = place_leftovers(s, err, cap)) < 0)
		goto fail;
	free(s->inherit_used);
	s->inherit_used = NULL;
	s->inherit = NULL;
	s->ninherit = 0;
	clamp_connections(s, p, err, cap);
	*out = s;
	return 0;
fail:
	server_abandon(s);
	return rc;
}

void sl_server_set_usage(struct sl_server *s, struct sl_usage *u)
{
	s->usage = u;
	s->admin_g.usage = u;
	for (unsigned i = 0; i < s->nworkers; i++)
		s->workers[i].ushard = sl_usage_shard(u, i);
}

void sl_server_set_detach(struct sl_server *s, void (*detach)(struct sl_store *st, void *loop))
{
	s->detach = detach;
}

unsigned sl_server_workers(const struct sl_server *s)
{
	return s->nworkers;
}

struct sl_metrics *sl_server_metrics(struct sl_server *s)
{
	return s->metrics;
}

static void worker_main(void *arg)
{
	struct sl_worker *w = arg;
	struct sl_server *s = w->srv;
	uv_run(&w->loop, UV_RUN_DEFAULT);
	/* The loop ends only once every connection is closed: one still
	 * counted here was lost (never freed) on some path. */
	assert(w->nconns == 0);
	if (__atomic_sub_fetch(&s->running, 1, __ATOMIC_ACQ_REL) == 0 && s->done)
		s->done(s->done_arg);
}

int sl_server_start(struct sl_server *s, void (*done)(void *arg), void *arg)
{
	s->done = done;
	s->done_arg = arg;
	s->running = s->nworkers;
	s->started = true;
	for (unsigned i = 0; i < s->nworkers; i++) {
		int rc = uv_thread_create(&s->workers[i].thread, worker_main, &s->workers[i]);
		if (rc < 0)
			return SL_ENOMEM;
	}
	return 0;
}

static bool same(const char *a, const char *b)
{
	return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

int sl_server_set_policy(struct sl_server *s, struct sl_policy *p, char *err, size_t cap)
{
	const struct sl_policy *o = s->policy;
	int changed = 0;

	if (o->nlisteners != p->nlisteners || !same(o->admin.listen, p->admin.listen)) {
		changed = 1;
	} else {
		for (size_t i = 0; i < p->nlisteners; i++) {
			const struct sl_listener_conf *a = &o->listeners[i], *b = &p->listeners[i];
			if (!same(a->name, b->name) || !same(a->listen, b->listen) ||
			    a->mode != b->mode || !same(a->upstream, b->upstream) ||
			    !a->tls_ctx != !b->tls_ctx)
				changed = 1;
		}
	}
	if (changed)
		snprintf(err, cap,
		         "listener or admin addresses (or tls on/off) changed: they take effect "
		         "on restart");
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sl_worker *w = &s->workers[i];
		sl_policy_ref(p);
		pthread_mutex_lock(&w->mu);
		if (w->next_policy)
			sl_policy_unref(w->next_policy);
		w->next_policy = p;
		if (!w->closed)
			uv_async_send(&w->async);
		pthread_mutex_unlock(&w->mu);
	}
	sl_policy_ref(p);
	sl_policy_unref(s->policy);
	s->policy = p;
	return changed;
}

static void command(struct sl_server *s, bool stop)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sl_worker *w = &s->workers[i];
		pthread_mutex_lock(&w->mu);
		w->want_drain = true;
		if (stop)
			w->want_stop = true;
		if (!w->closed)
			uv_async_send(&w->async);
		pthread_mutex_unlock(&w->mu);
	}
}

void sl_server_drain(struct sl_server *s)
{
	command(s, false);
}

void sl_server_stop(struct sl_server *s)
{
	command(s, true);
}

size_t sl_server_sockets(const struct sl_server *s, struct sl_server_sock *out, size_t cap)
{
	size_t k = 0;

	for (unsigned i = 0; i < s->nworkers; i++) {
		const struct sl_worker *w = &s->workers[i];
		for (size_t j = 0; j < w->nlisteners; j++) {
			const struct sl_listener *l = &w->listeners[j];
			if (l->fd < 0 || l->closed)
				continue;
			if (k < cap) {
				struct sl_server_sock *o = &out[k];
				o->fd = l->fd;
				o->index = (unsigned)j;
				o->kind = l->kind;
				copy(o->name, sizeof(o->name), l->name);
				o->addr = l->addr;
				o->addrlen = l->addrlen;
			}
			k++;
		}
	}
	return k;
}

static void takeover_command(struct sl_server *s, uint8_t cmd)
{
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sl_worker *w = &s->workers[i];
		pthread_mutex_lock(&w->mu);
		w->want_takeover = cmd;
		if (!w->closed)
			uv_async_send(&w->async);
		pthread_mutex_unlock(&w->mu);
	}
}

void sl_server_pause(struct sl_server *s, const struct sl_server_handoff *h)
{
	s->handoff = *h;
	takeover_command(s, SL_TKC_PAUSE);
}

void sl_server_resume(struct sl_server *s)
{
	sl_server_forward_releases(s, false);
	takeover_command(s, SL_TKC_RESUME);
}

void sl_server_forward_releases(struct sl_server *s, bool on)
{
	__atomic_store_n(&s->fwd_release, on, __ATOMIC_RELEASE);
}

void sl_server_handoff(struct sl_server *s)
{
	takeover_command(s, SL_TKC_HANDOFF);
}

int sl_server_adopt(struct sl_server *s, unsigned index, int fd, const char *bytes, size_t n)
{
	struct sl_worker *w = &s->workers[s->adopt_next++ % s->nworkers];
	struct sl_adopt *a;

	if (index >= w->nlisteners || n > w->rcap) {
		close(fd);
		return SL_EINVAL;
	}
	a = malloc(sizeof(*a) + n);
	if (!a) {
		close(fd);
		return SL_ENOMEM;
	}
	a->index = index;
	a->fd = fd;
	a->n = n;
	memcpy(a->bytes, bytes, n);
	pthread_mutex_lock(&w->mu);
	if (w->closed) {
		pthread_mutex_unlock(&w->mu);
		close(fd);
		free(a);
		return SL_EINVAL;
	}
	a->next = w->adopt;
	w->adopt = a;
	uv_async_send(&w->async);
	pthread_mutex_unlock(&w->mu);
	return 0;
}

void sl_server_destroy(struct sl_server *s)
{
	if (!s->started) { /* created, then the start failed further on */
		server_abandon(s);
		return;
	}
	for (unsigned i = 0; i < s->nworkers; i++) {
		struct sl_worker *w = &s->workers[i];
		uv_thread_join(&w->thread);
		/* the loop has no handles left: free the pooled connections */
		while (!sl_list_empty(&w->free)) {
			struct sl_conn *c = sl_container(w->free.next, struct sl_conn, link);
			sl_list_del(&c->link);
			free(c->rbuf);
			free(c->obuf);
			if (c->acall)
				sl_admin_call_reset(c->acall);
			free(c->acall);
			free(c->abody);
			free(c);
		}
		uv_loop_close(&w->loop);
		for (size_t j = 0; j < w->nlisteners; j++)
			sl_tls_ctx_unref(w->listeners[j].tls);
		for (size_t j = 0; j < w->nupstreams; j++) {
			sl_tls_session_drop(&w->upstreams[j].tls_sess);
			sl_tls_ctx_unref(w->upstreams[j].tls_ctx);
		}
		while (w->adopt) { /* handed over after this worker closed */
			struct sl_adopt *a = w->adopt;
			w->adopt = a->next;
			close(a->fd);
			free(a);
		}
		if (w->next_policy)
			sl_policy_unref(w->next_policy);
		sl_policy_unref(w->policy);
		pthread_mutex_destroy(&w->mu);
	}
	server_free(s);
}
