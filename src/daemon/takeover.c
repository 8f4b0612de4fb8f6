/* The takeover control socket (takeover.h, docs/daemon.md "Upgrades and
 * restarts"). The host side is a small state machine on the daemon's main
 * loop: one session at a time, each step bounded by SL_TK_STEP_TIMEOUT,
 * and every way out before STARTED undoes the pause. Only a peer of our
 * own uid (or root) is heard, and the socket file is mode 0600. The
 * client side is synchronous until it serves (poll(2) with a timeout per
 * answer), then reads the handed-over connections on its main loop. The
 * one decision to know: the host stops deciding before it saves, and the
 * client loads that save before it accepts, so exactly one process
 * decides at any time and every counter moves across. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <sluice/error.h>
#include "daemon/takeover.h"
#include "daemon/takeover_wire.h"
#include "net/clock.h"

enum {
	H_IDLE = 0, /* no session */
	H_HELLO,    /* connected; waiting for HELLO */
	H_SENT,     /* sockets sent; waiting for READY */
	H_PAUSING,  /* workers pausing; then save */
	H_SAVED,    /* saved; waiting for STARTED */
	H_COMMITTED,
};

struct sl_tk_qconn {
	int fd;
	uint16_t index;
	uint32_t n; /* bytes */
	char *bytes;
};

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void logf_(const char *fmt, ...)
{
	va_list ap;
	char line[512];

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	fprintf(stderr, "sluice: takeover: %s\n", line);
}

int sl_takeover_path(const struct sl_policy *p, char *out, size_t cap, char *err, size_t errcap)
{
	int n;

	if (p->server.control_socket)
		n = snprintf(out, cap, "%s", p->server.control_socket);
	else if (p->store.snapshot)
		n = snprintf(out, cap, "%s.ctl", p->store.snapshot);
	else
		n = snprintf(out, cap, "%s.ctl", p->path ? p->path : "sluice");
	if (n < 0 || (size_t)n >= cap || (size_t)n >= SL_TK_PATH_MAX - 8) {
		snprintf(err, errcap,
		         "control socket path \"%s\" is too long for a unix socket (at most %d "
		         "bytes): set server.control_socket",
		         out, SL_TK_PATH_MAX - 9);
		return SL_EINVAL;
	}
	return 0;
}

/* ---- messages on a SOCK_SEQPACKET socket ---- */

union cmsgbuf {
	char b[CMSG_SPACE(sizeof(int) * SL_TK_MAX_FDS)];
	struct cmsghdr align;
};

static int send_msg(int fd, const uint8_t *buf, size_t len, const int *fds, size_t nfds)
{
	struct iovec iov = {(void *)buf, len};
	union cmsgbuf u;
	struct msghdr mh;
	ssize_t n;

	if (len == 0) {
		errno = EMSGSIZE;
		return -1;
	}
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	if (nfds) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
		struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
		memcpy(CMSG_DATA(cm), fds, sizeof(int) * nfds);
	}
	do
		n = sendmsg(fd, &mh, MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	return n == (ssize_t)len ? 0 : -1;
}

/* One message into buf (SL_TK_MSG_MAX bytes) and its descriptors into
 * fds[SL_TK_MAX_FDS]. Returns its length, 0 at EOF, or -1 (errno; a
 * truncated message is EMSGSIZE and its descriptors are closed). */
static ssize_t recv_msg(int fd, uint8_t *buf, int *fds, size_t *nfds)
{
	struct iovec iov = {buf, SL_TK_MSG_MAX};
	union cmsgbuf u;
	struct msghdr mh;
	ssize_t n;

	*nfds = 0;
	memset(&mh, 0, sizeof(mh));
	mh.msg_iov = &iov;
	mh.msg_iovlen = 1;
	mh.msg_control = u.b;
	mh.msg_controllen = sizeof(u.b);
	do
		n = recvmsg(fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return -1;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
		if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		int got[SL_TK_MAX_FDS];
		if (k > SL_TK_MAX_FDS)
			k = SL_TK_MAX_FDS;
		memcpy(got, CMSG_DATA(cm), k * sizeof(int));
		for (size_t i = 0; i < k; i++) {
			if (*nfds < SL_TK_MAX_FDS)
				fds[(*nfds)++] = got[i];
			else
				close(got[i]);
		}
	}
	if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
		for (size_t i = 0; i < *nfds; i++)
			close(fds[i]);
		*nfds = 0;
		errno = EMSGSIZE;
		return -1;
	}
	return n;
}

static void close_fds(int *fds, size_t n)
{
	for (size_t i = 0; i < n; i++)
		close(fds[i]);
}

static int send_simple(int fd, uint8_t *buf, uint8_t type, const char *text)
{
	struct sl_tk_enc e;
	sl_tk_begin(&e, buf, SL_TK_MSG_MAX, type);
	if (text)
		sl_tk_text(&e, text, strlen(text));
	return send_msg(fd, buf, sl_tk_end(&e), NULL, 0);
}

static void no_done(struct sl_batch *b)
{
}

/* Give back count concurrency releases encoded in p[0, len) (RELEASE
 * entries) on a memory store st; any other store was released on by the
 * process that took the slots. Returns how many were applied. */
static uint64_t apply_releases(struct sl_store *st, const uint8_t *p, size_t len, size_t count)
{
	uint64_t done = 0;
	size_t off = 0;

	if (strcmp(st->ops->name, "memory") != 0)
		return 0;
	for (size_t i = 0; i < count; i++) {
		struct sl_tk_release r;
		struct sl_limit_spec spec;
		struct sl_check chk;
		struct sl_batch b;
		char name[SL_TK_NAME];
		size_t n = sl_tk_release_next(p + off, len - off, &r);

		if (n == 0)
			break;
		off += n;
		memset(&spec, 0, sizeof(spec));
		spec.algo = SL_ALGO_CONCURRENCY;
		spec.n = r.n;
		spec.period = r.period;
		memcpy(name, r.name, r.name_len);
		name[r.name_len] = 0;
		memset(&chk, 0, sizeof(chk));
		chk.spec = &spec;
		chk.limit_id = r.limit_id;
		chk.name = name;
		chk.key = (const char *)r.key;
		chk.key_len = r.key_len;
		chk.cost = r.cost;
		memset(&b, 0, sizeof(b));
		b.checks = &chk;
		b.n = 1;
		b.op = SL_OP_RELEASE;
		b.now = sl_clock_now();
		b.done = no_done;
		if (sl_store_submit(st, &b) == 0)
			done++;
	}
	return done;
}

/* ---- host ---- */

static void host_abort(struct sl_takeover_host *h, const char *why, bool tell);
static void flush(struct sl_takeover_host *h);

static void step_timeout(uv_timer_t *t)
{
	struct sl_takeover_host *h = t->data;
	host_abort(h, "the new process did not answer in time", true);
}

static void arm_step(struct sl_takeover_host *h)
{
	uv_timer_start(&h->timer, step_timeout, SL_TK_STEP_TIMEOUT, 0);
}

static void drop_queues(struct sl_takeover_host *h)
{
	uv_mutex_lock(&h->mu);
	for (size_t i = 0; i < h->nconns; i++) {
		close(h->conns[i].fd);
		free(h->conns[i].bytes);
	}
	h->nconns = 0;
	uv_mutex_unlock(&h->mu);
}

static void end_session(struct sl_takeover_host *h)
{
	if (!h->session)
		return;
	h->session = false;
	uv_poll_stop(&h->spoll);
	uv_close((uv_handle_t *)&h->spoll, NULL);
	close(h->sfd);
	h->sfd = -1;
}

/* Undo what the session did and serve on as before. */
static void host_abort(struct sl_takeover_host *h, const char *why, bool tell)
{
	uint8_t st = h->state;

	if (st == H_IDLE || st == H_COMMITTED)
		return;
	uv_timer_stop(&h->timer);
	if (tell && h->session)
		send_simple(h->sfd, h->buf, SL_TK_ABORT, why);
	end_session(h);
	h->state = H_IDLE;
	if (st >= H_PAUSING) {
		sl_server_resume(h->server);
		drop_queues(h);
		flush(h); /* releases forwarded meanwhile: our own store decides again */
	}
	if (st == H_SAVED) {
		if (h->snap_tmp[0])
			unlink(h->snap_tmp);
		if (h->snap &&
		    sl_snapshot_start(h->snap, h->store, h->snapshot_interval, stderr) < 0)
			logf_("could not restart the snapshot thread: snapshots on drain only");
	}
	logf_("takeover by pid %ld abandoned: %s; serving on", (long)h->peer, why);
}

void sl_takeover_host_abort(struct sl_takeover_host *h, const char *why)
{
	host_abort(h, why, true);
}

void sl_takeover_host_refuse(struct sl_takeover_host *h)
{
	h->refusing = true;
}

bool sl_takeover_host_busy(const struct sl_takeover_host *h)
{
	return h->state != H_IDLE && h->state != H_COMMITTED;
}

bool sl_takeover_host_committed(const struct sl_takeover_host *h)
{
	return h->state == H_COMMITTED;
}

static int send_socks(struct sl_takeover_host *h)
{
	size_t cap = 64 * 256, n;
	struct sl_server_sock *all = calloc(cap, sizeof(*all));
	int rc = 0;

	if (!all)
		return -1;
	n = sl_server_sockets(h->server, all, cap);
	if (n > cap)
		n = cap;
	for (size_t i = 0; i < n && rc == 0;) {
		struct sl_tk_enc e;
		int fds[SL_TK_MAX_FDS];
		size_t k = 0;
		sl_tk_begin(&e, h->buf, SL_TK_MSG_MAX, SL_TK_SOCKS);
		sl_tk_list(&e);
		while (i < n) {
			struct sl_tk_sock s;
			memset(&s, 0, sizeof(s));
			s.index = (uint16_t)all[i].index;
			s.kind = all[i].kind;
			s.addr = all[i].addr;
			s.addrlen = all[i].addrlen;
			snprintf(s.name, sizeof(s.name), "%s", all[i].name);
			if (!sl_tk_put_sock(&e, &s))
				break;
			fds[k++] = all[i++].fd;
		}
		rc = send_msg(h->sfd, h->buf, sl_tk_end(&e), fds, k);
	}
	if (rc == 0) {
		struct sl_tk_enc e;
		sl_tk_begin(&e, h->buf, SL_TK_MSG_MAX, SL_TK_SOCKS_END);
		sl_tk_u32(&e, (uint32_t)getpid());
		sl_tk_u16(&e, (uint16_t)sl_server_workers(h->server));
		sl_tk_u32(&e, (uint32_t)n);
		rc = send_msg(h->sfd, h->buf, sl_tk_end(&e), NULL, 0);
	}
	free(all);
	return rc;
}

/* Worker threads: the sinks of sl_server_pause. */
static void on_paused(void *arg)
{
	struct sl_takeover_host *h = arg;
	__atomic_add_fetch(&h->npaused, 1, __ATOMIC_ACQ_REL);
	uv_async_send(&h->async);
}

static void on_conn(void *arg, unsigned index, int fd, const char *bytes, size_t n)
{
	struct sl_takeover_host *h = arg;
	char *copy = n ? malloc(n) : NULL;

	uv_mutex_lock(&h->mu);
	if ((n && !copy) || n > SL_TK_MSG_MAX - 64) {
		uv_mutex_unlock(&h->mu);
		free(copy);
		close(fd);
		return;
	}
	if (h->nconns == h->capconns) {
		size_t nc = h->capconns ? h->capconns * 2 : 64;
		struct sl_tk_qconn *q = realloc(h->conns, nc * sizeof(*q));
		if (!q) {
			uv_mutex_unlock(&h->mu);
			free(copy);
			close(fd);
			return;
		}
		h->conns = q;
		h->capconns = nc;
	}
	if (n)
		memcpy(copy, bytes, n);
	h->conns[h->nconns++] = (struct sl_tk_qconn){fd, (uint16_t)index, (uint32_t)n, copy};
	uv_mutex_unlock(&h->mu);
	uv_async_send(&h->async);
}

#define REL_MAX (4u << 20) /* bytes of releases kept for the new process */

static void on_release(void *arg, const struct sl_check *checks, size_t n)
{
	struct sl_takeover_host *h = arg;

	uv_mutex_lock(&h->mu);
	for (size_t i = 0; i < n; i++) {
		const struct sl_check *c = &checks[i];
		size_t klen = c->key_len > 65535 ? 65535 : c->key_len;
		size_t nlen = c->name ? strnlen(c->name, SL_TK_NAME - 1) : 0;
		size_t need = 35 + klen + nlen;
		struct sl_tk_enc e;
		if (h->rel_len + need > h->rel_cap) {
			size_t nc = h->rel_cap ? h->rel_cap * 2 : 4096;
			while (nc < h->rel_len + need)
				nc *= 2;
			uint8_t *p = nc <= REL_MAX ? realloc(h->rel, nc) : NULL;
			if (!p) {
				h->rel_dropped++;
				continue;
			}
			h->rel = p;
			h->rel_cap = nc;
		}
		struct sl_tk_release r = {c->limit_id,
		                          c->cost,
		                          c->spec ? c->spec->n : 0,
		                          c->spec ? c->spec->period : 0,
		                          (const uint8_t *)c->key,
		                          (uint16_t)klen,
		                          c->name,
		                          (uint8_t)nlen};
		/* an encoder over the tail: entries only, no head */
		e.buf = h->rel + h->rel_len;
		e.cap = need;
		e.len = 0;
		e.overflow = false;
		e.count_at = 0;
		e.count = 0;
		if (sl_tk_put_release(&e, &r)) {
			h->rel_len += e.len;
			h->rel_count++;
		}
	}
	uv_mutex_unlock(&h->mu);
	uv_async_send(&h->async);
}

/* Send queued connections and releases to the new process (committed),
 * or close them (no session). Thread: main. */
static void flush(struct sl_takeover_host *h)
{
	struct sl_tk_qconn *q;
	size_t nq, rl, rc;
	uint8_t *rel;

	uv_mutex_lock(&h->mu);
	q = h->conns;
	nq = h->nconns;
	h->conns = NULL;
	h->nconns = h->capconns = 0;
	rel = h->rel;
	rl = h->rel_len;
	rc = h->rel_count;
	h->rel = NULL;
	h->rel_len = h->rel_cap = h->rel_count = 0;
	uv_mutex_unlock(&h->mu);

	bool live = h->session && h->state == H_COMMITTED;
	for (size_t i = 0; i < nq;) {
		struct sl_tk_enc e;
		int fds[SL_TK_MAX_FDS];
		size_t k = 0, first = i;
		sl_tk_begin(&e, h->buf, SL_TK_MSG_MAX, SL_TK_CONNS);
		sl_tk_list(&e);
		while (i < nq && sl_tk_put_conn(&e, q[i].index, q[i].bytes, q[i].n))
			fds[k++] = q[i++].fd;
		if (k == 0) { /* cannot be sent: closed */
			close(q[i].fd);
			free(q[i].bytes);
			i++;
			continue;
		}
		if (live && send_msg(h->sfd, h->buf, sl_tk_end(&e), fds, k) < 0) {
			logf_("handing connections to pid %ld: %s; closing them", (long)h->peer,
			      strerror(errno));
			live = false;
		}
		for (size_t j = first; j < i; j++) {
			close(q[j].fd);
			free(q[j].bytes);
		}
	}
	free(q);
	if (!live && rc) /* nobody to send them to: back into our own store */
		apply_releases(h->store, rel, rl, rc);
	/* releases: entries are self-delimiting (see takeover_wire.c) */
	for (size_t off = 0, done = 0; live && done < rc && off < rl;) {
		struct sl_tk_enc e;
		sl_tk_begin(&e, h->buf, SL_TK_MSG_MAX, SL_TK_RELEASE);
		sl_tk_list(&e);
		while (done < rc && off + 35 <= rl) {
			size_t klen = (size_t)rel[off + 32] | (size_t)rel[off + 33] << 8;
			size_t len = 34 + klen + 1 + rel[off + 34 + klen];
			if (e.len + len > SL_TK_MSG_MAX || e.count == 65535)
				break;
			sl_tk_bytes(&e, rel + off, len);
			e.count++;
			off += len;
			done++;
		}
		if (send_msg(h->sfd, h->buf, sl_tk_end(&e), NULL, 0) < 0)
			live = false;
	}
	free(rel);
}

/* The workers paused: nothing decides any more. Save and tell. */
static void save_and_tell(struct sl_takeover_host *h)
{
	const char *path = sl_memory_store_path(h->store);
	bool memory = strcmp(h->store->ops->name, "memory") == 0;
	struct sl_tk_enc e;
	char why[160];
	int rc = 0;

	h->snap_tmp[0] = 0;
	if (memory && path) {
		/* stops the periodic thread for good: the new process writes this
		 * file from now on, or the thread is restarted on abort */
		rc = h->snap ? sl_snapshot_finish(h->snap, sl_clock_now())
		             : sl_store_save(h->store, sl_clock_now());
	} else if (memory) {
		snprintf(h->snap_tmp, sizeof(h->snap_tmp), "%s.snap", h->path);
		path = h->snap_tmp;
		rc = sl_memory_store_save(h->store, path, sl_clock_now());
	}
	h->state = H_SAVED;
	if (rc < 0) {
		snprintf(why, sizeof(why), "the snapshot %s could not be saved: %s", path,
		         sl_strerror(rc));
		host_abort(h, why, true);
		return;
	}
	logf_("paused for pid %ld: %s%s", (long)h->peer, memory ? "counters saved to " : "",
	      memory ? path : "a shared store, nothing to save");
	sl_tk_begin(&e, h->buf, SL_TK_MSG_MAX, SL_TK_SAVED);
	sl_tk_u8(&e, memory ? 1 : 0);
	sl_tk_text(&e, memory ? path : "", memory ? strlen(path) : 0);
	if (send_msg(h->sfd, h->buf, sl_tk_end(&e), NULL, 0) < 0) {
		host_abort(h, "the new process went away", false);
		return;
	}
	arm_step(h);
}

static void async_cb(uv_async_t *a)
{
	struct sl_takeover_host *h = a->data;

	if (h->state == H_PAUSING &&
	    __atomic_load_n(&h->npaused, __ATOMIC_ACQUIRE) >= sl_server_workers(h->server))
		save_and_tell(h);
	if (h->state == H_COMMITTED || h->state == H_IDLE)
		flush(h);
}

static void commit(struct sl_takeover_host *h)
{
	uv_timer_stop(&h->timer);
	h->state = H_COMMITTED;
	sl_server_handoff(h->server);
	if (send_simple(h->sfd, h->buf, SL_TK_COMMIT, NULL) < 0)
		logf_("pid %ld went away as it took over", (long)h->peer);
	if (h->started) { /* no more sessions: the new process has its own socket */
		uv_poll_stop(&h->lpoll);
		uv_close((uv_handle_t *)&h->lpoll, NULL);
		close(h->lfd);
		h->lfd = -1;
		h->started = false;
	}
	if (h->snap_tmp[0])
		h->snap_tmp[0] = 0; /* the new process removes it once loaded */
	logf_("handed over to pid %ld after a pause of %.1f ms: draining the requests in "
	      "flight, then exiting",
	      (long)h->peer, (double)(uv_hrtime() - h->paused_at) / 1e6);
	h->committed(h->arg);
}

static void on_session(uv_poll_t *p, int status, int events)
{
	struct sl_takeover_host *h = p->data;
	struct sl_tk_msg *m;
	int fds[SL_TK_MAX_FDS];
	size_t nfds;
	ssize_t n;

	n = recv_msg(h->sfd, h->buf, fds, &nfds);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		if (h->state == H_COMMITTED)
			end_session(h);
		else
			host_abort(h, "the new process went away", false);
		return;
	}
	m = malloc(sizeof(*m));
	if (!m || sl_tk_parse(h->buf, (size_t)n, nfds, m) < 0 || nfds) {
		int v = sl_tk_version(h->buf, (size_t)n);
		char why[120];
		close_fds(fds, nfds);
		free(m);
		if (h->state == H_COMMITTED)
			return;
		if (v >= 0 && v != SL_TK_VERSION)
			snprintf(why, sizeof(why),
			         "it speaks takeover protocol version %d, this sluice version %d",
			         v, SL_TK_VERSION);
		else
			snprintf(why, sizeof(why), "a malformed message on the control socket");
		host_abort(h, why, true);
		return;
	}
	uint8_t type = m->type;
	if (type == SL_TK_ABORT) {
		char why[200];
		snprintf(why, sizeof(why), "it gave up: %.*s", (int)m->text_len, m->text);
		free(m);
		host_abort(h, why, false);
		return;
	}
	if (h->state == H_HELLO && type == SL_TK_HELLO) {
		if (m->pid)
			h->peer = (pid_t)m->pid;
		free(m);
		logf_("pid %ld asks to take over", (long)h->peer);
		if (send_socks(h) < 0) {
			host_abort(h, "the listening sockets could not be sent", false);
			return;
		}
		h->state = H_SENT;
		arm_step(h);
		return;
	}
	if (h->state == H_SENT && type == SL_TK_READY) {
		free(m);
		h->state = H_PAUSING;
		h->paused_at = uv_hrtime();
		__atomic_store_n(&h->npaused, 0, __ATOMIC_RELEASE);
		struct sl_server_handoff ho = {on_paused, on_conn, on_release, h};
		/* a memory store's releases go to the new process from each
		 * worker's pause on, so the save has exactly those before */
		sl_server_forward_releases(h->server, strcmp(h->store->ops->name, "memory") == 0);
		sl_server_pause(h->server, &ho);
		arm_step(h);
		return;
	}
	if (h->state == H_SAVED && type == SL_TK_STARTED) {
		free(m);
		commit(h);
		return;
	}
	free(m);
	if (h->state != H_COMMITTED)
		host_abort(h, "an unexpected message on the control socket", true);
}

static void on_accept(uv_poll_t *p, int status, int events)
{
	struct sl_takeover_host *h = p->data;
	struct ucred cr;
	socklen_t len = sizeof(cr);
	int fd = accept4(h->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);

	if (fd < 0)
		return;
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0 ||
	    (cr.uid != geteuid() && cr.uid != 0)) {
		logf_("refused a connection from uid %ld: only uid %ld or root may take over",
		      (long)cr.uid, (long)geteuid());
		close(fd);
		return;
	}
	if (h->state != H_IDLE || h->refusing) {
		send_simple(fd, h->buf, SL_TK_ABORT,
		            h->refusing ? "it is shutting down" : "another takeover is under way");
		close(fd);
		return;
	}
	struct timeval tv = {2, 0}; /* sends block at most this long */
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	h->sfd = fd;
	h->peer = cr.pid;
	if (uv_poll_init(h->loop, &h->spoll, fd) < 0) {
		close(fd);
		h->sfd = -1;
		return;
	}
	h->spoll.data = h;
	uv_poll_start(&h->spoll, UV_READABLE | UV_DISCONNECT, on_session);
	h->session = true;
	h->state = H_HELLO;
	/* the host speaks first, so a refusal (ABORT, close) is never a close
	 * with the client's hello unread, which would reset the connection
	 * and lose the reason */
	send_simple(fd, h->buf, SL_TK_WELCOME, NULL);
	arm_step(h);
}

int sl_takeover_host_start(struct sl_takeover_host *h, const char *path, char *err, size_t cap)
{
	struct sockaddr_un sa;
	char tmp[SL_TK_PATH_MAX];
	struct stat st;
	mode_t old;
	int fd;

	h->lfd = h->sfd = -1;
	h->state = H_IDLE;
	h->buf = malloc(SL_TK_MSG_MAX);
	if (!h->buf || uv_mutex_init(&h->mu) != 0) {
		free(h->buf);
		h->buf = NULL;
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	snprintf(h->path, sizeof(h->path), "%s", path);
	/* bound under a private name, then renamed over the path: a process
	 * taking over replaces its predecessor's socket file atomically */
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.%ld", path, (long)getpid()) >= sizeof(tmp) ||
	    strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, cap, "control socket %s: path too long", path);
		goto fail;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", tmp);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		goto fail_errno;
	unlink(tmp);
	old = umask(077); /* the file is created 0600: only our uid can connect */
	int rc = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (rc < 0 || chmod(tmp, 0600) < 0 || listen(fd, 4) < 0 || rename(tmp, path) < 0) {
		int e = errno;
		close(fd);
		unlink(tmp);
		errno = e;
		goto fail_errno;
	}
	if (stat(path, &st) == 0) {
		h->dev = st.st_dev;
		h->ino = st.st_ino;
	}
	h->lfd = fd;
	uv_poll_init(h->loop, &h->lpoll, fd);
	h->lpoll.data = h;
	uv_poll_start(&h->lpoll, UV_READABLE, on_accept);
	uv_timer_init(h->loop, &h->timer);
	h->timer.data = h;
	uv_async_init(h->loop, &h->async, async_cb);
	h->async.data = h;
	h->started = true;
	return 0;

fail_errno:
	snprintf(err, cap, "control socket %s: %s", path, strerror(errno));
fail:
	uv_mutex_destroy(&h->mu);
	free(h->buf);
	h->buf = NULL;
	return SL_EIO;
}

void sl_takeover_host_close(struct sl_takeover_host *h)
{
	struct stat st;

	if (!h->buf)
		return;
	flush(h);
	if (h->session && h->state == H_COMMITTED)
		send_simple(h->sfd, h->buf, SL_TK_BYE, NULL);
	if (h->state != H_COMMITTED)
		host_abort(h, "shutting down", true);
	end_session(h);
	if (h->started) {
		uv_poll_stop(&h->lpoll);
		uv_close((uv_handle_t *)&h->lpoll, NULL);
		close(h->lfd);
		h->started = false;
		if (stat(h->path, &st) == 0 && st.st_dev == h->dev && st.st_ino == h->ino)
			unlink(h->path);
	}
	if (!uv_is_closing((uv_handle_t *)&h->timer))
		uv_close((uv_handle_t *)&h->timer, NULL);
	if (!uv_is_closing((uv_handle_t *)&h->async))
		uv_close((uv_handle_t *)&h->async, NULL);
	free(h->rel);
	free(h->conns);
	uv_mutex_destroy(&h->mu);
	free(h->buf);
	h->buf = NULL;
}

void sl_takeover_notify_mainpid(void)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa;
	char msg[64];
	size_t len;
	int fd;

	if (!path || (path[0] != '/' && path[0] != '@') || strlen(path) >= sizeof(sa.sun_path))
		return;
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	len = strlen(path);
	memcpy(sa.sun_path, path, len);
	if (path[0] == '@')
		sa.sun_path[0] = 0; /* abstract namespace */
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return;
	int n = snprintf(msg, sizeof(msg), "MAINPID=%ld\n", (long)getpid());
	if (sendto(fd, msg, (size_t)n, MSG_NOSIGNAL, (struct sockaddr *)&sa,
	           (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)) < 0)
		logf_("NOTIFY_SOCKET %s: %s", path, strerror(errno));
	close(fd);
}

/* ---- client ---- */

/* Wait up to ms for the next message; 0 and *m filled, or -1 with err. */
static int client_recv(struct sl_takeover_client *c, int ms, struct sl_tk_msg *m, int *fds,
                       size_t *nfds, char *err, size_t cap)
{
	struct pollfd pfd = {c->fd, POLLIN, 0};
	int rc;
	ssize_t n;

	do
		rc = poll(&pfd, 1, ms);
	while (rc < 0 && errno == EINTR);
	if (rc == 0) {
		snprintf(err, cap, "no answer from the running sluice within %d ms (is it hung?)",
		         ms);
		return -1;
	}
	n = recv_msg(c->fd, c->buf, fds, nfds);
	if (n <= 0) {
		snprintf(err, cap, "the running sluice closed the control socket%s%s",
		         n < 0 ? ": " : "", n < 0 ? strerror(errno) : "");
		return -1;
	}
	if (sl_tk_parse(c->buf, (size_t)n, *nfds, m) < 0) {
		int v = sl_tk_version(c->buf, (size_t)n);
		close_fds(fds, *nfds);
		*nfds = 0;
		if (v >= 0 && v != SL_TK_VERSION)
			snprintf(err, cap,
			         "the running sluice speaks takeover protocol version %d, this one "
			         "%d: "
			         "restart it instead",
			         v, SL_TK_VERSION);
		else
			snprintf(err, cap, "a malformed message from the running sluice");
		return -1;
	}
	if (m->type == SL_TK_ABORT) {
		snprintf(err, cap, "the running sluice refused: %.*s", (int)m->text_len, m->text);
		return -1;
	}
	return 0;
}

int sl_takeover_connect(struct sl_takeover_client *c, const char *path, char *err, size_t cap)
{
	struct sockaddr_un sa;
	struct sl_tk_msg *m = NULL;
	size_t capsocks = 0;
	int fds[SL_TK_MAX_FDS];
	size_t nfds;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->buf = malloc(SL_TK_MSG_MAX);
	m = malloc(sizeof(*m));
	if (!c->buf || !m) {
		snprintf(err, cap, "out of memory");
		goto fail;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		snprintf(err, cap, "control socket %s: path too long", path);
		goto fail;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sun_family = AF_UNIX;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		snprintf(err, cap,
		         "cannot reach a running sluice on %s: %s (is one running with this "
		         "config? start it without --takeover)",
		         path, strerror(errno));
		goto fail;
	}
	struct timeval tv = {2, 0};
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (client_recv(c, SL_TK_ANSWER_MS, m, fds, &nfds, err, cap) < 0)
		goto fail;
	if (m->type != SL_TK_WELCOME) {
		close_fds(fds, nfds);
		snprintf(err, cap, "an unexpected message from the running sluice");
		goto fail;
	}
	struct sl_tk_enc e;
	sl_tk_begin(&e, c->buf, SL_TK_MSG_MAX, SL_TK_HELLO);
	sl_tk_u32(&e, (uint32_t)getpid());
	if (send_msg(c->fd, c->buf, sl_tk_end(&e), NULL, 0) < 0) {
		int e2 = errno;
		/* refused at once: its reason may be waiting to be read */
		if (client_recv(c, 500, m, fds, &nfds, err, cap) == 0) {
			close_fds(fds, nfds);
			snprintf(err, cap, "control socket %s: %s", path, strerror(e2));
		}
		goto fail;
	}
	for (;;) {
		if (client_recv(c, SL_TK_ANSWER_MS, m, fds, &nfds, err, cap) < 0)
			goto fail;
		if (m->type == SL_TK_SOCKS_END) {
			if (m->total != c->nsocks) {
				snprintf(err, cap, "the running sluice sent %zu of %u sockets",
				         c->nsocks, m->total);
				goto fail;
			}
			c->old_pid = (pid_t)m->pid;
			c->old_workers = m->workers;
			break;
		}
		if (m->type != SL_TK_SOCKS) {
			close_fds(fds, nfds);
			snprintf(err, cap, "an unexpected message from the running sluice");
			goto fail;
		}
		if (c->nsocks + m->n > capsocks) {
			size_t nc = capsocks ? capsocks * 2 : 64;
			while (nc < c->nsocks + m->n)
				nc *= 2;
			struct sl_server_sock *s = realloc(c->socks, nc * sizeof(*s));
			if (!s) {
				close_fds(fds, nfds);
				snprintf(err, cap, "out of memory");
				goto fail;
			}
			c->socks = s;
			capsocks = nc;
		}
		for (size_t i = 0; i < m->n; i++) {
			struct sl_server_sock *s = &c->socks[c->nsocks++];
			int type = 0;
			socklen_t tl = sizeof(type);
			memset(s, 0, sizeof(*s));
			s->fd = fds[i];
			s->index = m->socks[i].index;
			s->kind = m->socks[i].kind;
			s->addr = m->socks[i].addr;
			s->addrlen = m->socks[i].addrlen;
			snprintf(s->name, sizeof(s->name), "%s", m->socks[i].name);
			/* what was sent must be a listening TCP socket on that address */
			struct sockaddr_storage real;
			socklen_t rl = sizeof(real);
			int acc = 0;
			socklen_t al = sizeof(acc);
			if (getsockopt(s->fd, SOL_SOCKET, SO_TYPE, &type, &tl) != 0 ||
			    type != SOCK_STREAM ||
			    getsockopt(s->fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) != 0 || !acc ||
			    getsockname(s->fd, (struct sockaddr *)&real, &rl) != 0 ||
			    !sl_tk_addr_eq(&real, &s->addr)) {
				for (size_t j = i + 1; j < m->n; j++)
					close(fds[j]);
				snprintf(err, cap,
				         "socket %zu (%s) is not a listener on its address",
				         c->nsocks - 1, s->name);
				goto fail;
			}
		}
	}
	free(m);
	return 0;
fail:
	free(m);
	sl_takeover_client_close(c);
	return SL_EIO;
}

int sl_takeover_ready(struct sl_takeover_client *c, char *snap, size_t snapcap, char *err,
                      size_t cap)
{
	struct sl_tk_msg *m = malloc(sizeof(*m));
	int fds[SL_TK_MAX_FDS];
	size_t nfds;
	int rc = SL_EIO;

	if (!m) {
		snprintf(err, cap, "out of memory");
		return SL_ENOMEM;
	}
	if (send_simple(c->fd, c->buf, SL_TK_READY, NULL) < 0) {
		snprintf(err, cap, "the running sluice went away: %s", strerror(errno));
		goto out;
	}
	if (client_recv(c, SL_TK_SAVE_MS, m, fds, &nfds, err, cap) < 0)
		goto out;
	if (m->type != SL_TK_SAVED) {
		close_fds(fds, nfds);
		snprintf(err, cap, "an unexpected message from the running sluice");
		goto out;
	}
	if ((size_t)m->text_len >= snapcap) {
		snprintf(err, cap, "snapshot path too long");
		goto out;
	}
	memcpy(snap, m->text, m->text_len);
	snap[m->text_len] = 0;
	rc = 0;
out:
	free(m);
	return rc;
}

static void adopt_conns(struct sl_takeover_client *c, const struct sl_tk_msg *m, int *fds)
{
	for (size_t i = 0; i < m->n; i++) {
		unsigned idx = m->conns[i].index;
		if (idx >= c->nmap || c->map[idx] == UINT16_MAX) {
			close(fds[i]); /* its listener is gone from our config */
			continue;
		}
		if (sl_server_adopt(c->server, c->map[idx], fds[i], (const char *)m->conns[i].bytes,
		                    m->conns[i].len) == 0)
			c->adopted++;
	}
}

static void on_client(uv_poll_t *p, int status, int events)
{
	struct sl_takeover_client *c = p->data;
	struct sl_tk_msg *m = malloc(sizeof(*m));
	int fds[SL_TK_MAX_FDS];
	size_t nfds = 0;
	ssize_t n = recv_msg(c->fd, c->buf, fds, &nfds);

	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
		free(m);
		return;
	}
	if (n > 0 && m && sl_tk_parse(c->buf, (size_t)n, nfds, m) == 0) {
		if (m->type == SL_TK_CONNS) {
			adopt_conns(c, m, fds); /* the fds are the server's now */
			free(m);
			return;
		}
		if (m->type == SL_TK_RELEASE) {
			c->released += apply_releases(c->store, m->rel, m->rel_len, m->n);
			free(m);
			return;
		}
	}
	/* BYE, the end, or anything else: the old process is done with us */
	close_fds(fds, nfds);
	free(m);
	logf_("pid %ld finished (%llu connections and %llu releases taken over)", (long)c->old_pid,
	      (unsigned long long)c->adopted, (unsigned long long)c->released);
	sl_takeover_client_close(c);
}

int sl_takeover_started(struct sl_takeover_client *c, uv_loop_t *loop, struct sl_server *server,
                        struct sl_store *store, char *err, size_t cap)
{
	struct sl_tk_msg *m = malloc(sizeof(*m));
	struct sl_server_sock *ours = NULL;
	int fds[SL_TK_MAX_FDS];
	size_t nfds, nours;
	int rc = SL_EIO;

	c->server = server;
	c->store = store;
	nours = sl_server_sockets(server, NULL, 0);
	ours = calloc(nours ? nours : 1, sizeof(*ours));
	if (!m || !ours) {
		snprintf(err, cap, "out of memory");
		goto out;
	}
	nours = sl_server_sockets(server, ours, nours);
	for (size_t i = 0; i < c->nsocks; i++)
		if (c->socks[i].index + 1 > c->nmap)
			c->nmap = c->socks[i].index + 1;
	c->map = malloc((c->nmap ? c->nmap : 1) * sizeof(*c->map));
	if (!c->map) {
		snprintf(err, cap, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < c->nmap; i++)
		c->map[i] = UINT16_MAX;
	for (size_t i = 0; i < c->nsocks; i++) {
		unsigned best = UINT16_MAX;
		for (size_t j = 0; j < nours; j++)
			if (sl_tk_addr_eq(&ours[j].addr, &c->socks[i].addr) && ours[j].index < best)
				best = ours[j].index;
		if (c->map[c->socks[i].index] == UINT16_MAX)
			c->map[c->socks[i].index] = (uint16_t)best;
	}
	if (send_simple(c->fd, c->buf, SL_TK_STARTED, NULL) < 0) {
		snprintf(err, cap, "the running sluice went away: %s", strerror(errno));
		goto out;
	}
	if (client_recv(c, SL_TK_ANSWER_MS, m, fds, &nfds, err, cap) < 0)
		goto out;
	if (m->type != SL_TK_COMMIT) {
		close_fds(fds, nfds);
		snprintf(err, cap, "an unexpected message from the running sluice");
		goto out;
	}
	fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
	if (uv_poll_init(loop, &c->poll, c->fd) == 0) {
		c->poll.data = c;
		uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, on_client);
		c->polling = true;
	}
	rc = 0;
out:
	free(m);
	free(ours);
	return rc;
}

void sl_takeover_fail(struct sl_takeover_client *c, const char *why)
{
	if (c->fd >= 0 && c->buf)
		send_simple(c->fd, c->buf, SL_TK_ABORT, why);
	sl_takeover_client_close(c);
}

void sl_takeover_client_close(struct sl_takeover_client *c)
{
	if (c->polling) {
		uv_poll_stop(&c->poll);
		uv_close((uv_handle_t *)&c->poll, NULL);
		c->polling = false;
	}
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	for (size_t i = 0; !c->given && i < c->nsocks; i++)
		close(c->socks[i].fd);
	free(c->socks);
	c->socks = NULL;
	c->nsocks = 0;
	free(c->map);
	c->map = NULL;
	c->nmap = 0;
	free(c->buf);
	c->buf = NULL;
}
