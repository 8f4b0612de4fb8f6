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

static void pass_cb(uv_prepare_t *h)
{
	((struct sl_worker *)h->data)->now_valid = false;
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
	if (l->closed || l->polling || l->w->accept_paused || l->w->draining)
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

	if (w->draining)
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
	if (w->index == 0 && (rc = probe_free(&ss, slen)) != 0) {
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
	if (!w->draining || w->closed || w->nconns || w->nupconns)
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
	for (n = w->active.next; n != &w->active; n = next) {
		next = n->next;
		sl_conn_drain(sl_container(n, struct sl_conn, link));
	}
	sl_upstream_close_idle(w);
	sl_worker_maybe_exit(w);
}

static void async_cb(uv_async_t *h)
{
	struct sl_worker *w = h->data;
	struct sl_policy *p;
	bool drain, stop;
	struct sl_list *n, *next;

	pthread_mutex_lock(&w->mu);
	p = w->next_policy;
	w->next_policy = NULL;
	drain = w->want_drain;
	stop = w->want_stop;
	pthread_mutex_unlock(&w->mu);
	if (p) {
		sl_policy_unref(w->policy);
		w->policy = p;
		sl_worker_tls_refresh(w);
	}
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

int sl_server_create(struct sl_server **out, struct sl_policy *p, struct sl_store *store, char *err,
                     size_t cap)
{
	struct sl_server *s = calloc(1, sizeof(*s));
	unsigned n = p->server.workers;
	int rc;

	*out = NULL;
	if (!s) {
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
	clamp_connections(s, p, err, cap);
	*out = s;
	return 0;
fail:
	/* startup failure: the process exits; loops are left to the OS */
	return rc;
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

void sl_server_destroy(struct sl_server *s)
{
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
		if (w->next_policy)
			sl_policy_unref(w->next_policy);
		sl_policy_unref(w->policy);
		pthread_mutex_destroy(&w->mu);
	}
	if (s->admin_on)
		sl_admin_global_destroy(&s->admin_g);
	if (s->metrics)
		sl_metrics_destroy(s->metrics);
	sl_policy_unref(s->policy);
	free(s->workers);
	free(s);
}
