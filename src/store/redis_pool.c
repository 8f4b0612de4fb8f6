/* The Redis store's connection pool: a libuv adapter for hiredis async
 * contexts and, per worker and node, up to `pool` connections that open on
 * demand, pipeline the decision library's load ahead of their first
 * command and back off 20 ms -> 1 s after a failure, so a dead server costs
 * one failed connect per back-off, not one per request. Thread: the
 * worker's loop only. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <uv.h>
#include <sluice/error.h>
#include "store/redis_pool.h"

/* ---- libuv glue for hiredis ----
 * Our own adapter rather than hiredis' libuv.h: that one drops poll errors
 * (a refused connect would never complete) and keeps the loop alive. Here a
 * poll error is handed to hiredis as readable, which makes it notice the
 * socket error and disconnect, and the poll handle is unreferenced: only
 * pending requests (their timer) keep a loop running. */
struct rs_ev {
	uv_poll_t poll;
	redisAsyncContext *ac;
	int events;
};

static void ev_on_poll(uv_poll_t *h, int status, int events)
{
	struct rs_ev *e = h->data;

	if (status < 0) {
		if (e->ac)
			redisAsyncHandleRead(e->ac);
		return;
	}
	if (e->ac && (events & UV_READABLE))
		redisAsyncHandleRead(e->ac);
	if (e->ac && (events & UV_WRITABLE))
		redisAsyncHandleWrite(e->ac);
}

static void ev_update(struct rs_ev *e)
{
	if (e->events)
		uv_poll_start(&e->poll, e->events, ev_on_poll);
	else
		uv_poll_stop(&e->poll);
}

static void ev_add_read(void *p)
{
	((struct rs_ev *)p)->events |= UV_READABLE;
	ev_update(p);
}

static void ev_del_read(void *p)
{
	((struct rs_ev *)p)->events &= ~UV_READABLE;
	ev_update(p);
}

static void ev_add_write(void *p)
{
	((struct rs_ev *)p)->events |= UV_WRITABLE;
	ev_update(p);
}

static void ev_del_write(void *p)
{
	((struct rs_ev *)p)->events &= ~UV_WRITABLE;
	ev_update(p);
}

static void ev_closed(uv_handle_t *h)
{
	free(h->data);
}

static void ev_cleanup(void *p)
{
	struct rs_ev *e = p;

	e->ac = NULL;
	uv_close((uv_handle_t *)&e->poll, ev_closed);
}

static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
	struct rs_ev *e = calloc(1, sizeof(*e));

	if (!e)
		return SL_ENOMEM;
	if (uv_poll_init(loop, &e->poll, ac->c.fd) != 0) {
		free(e);
		return SL_EIO;
	}
	uv_unref((uv_handle_t *)&e->poll);
	e->poll.data = e;
	e->ac = ac;
	ac->ev.data = e;
	ac->ev.addRead = ev_add_read;
	ac->ev.delRead = ev_del_read;
	ac->ev.addWrite = ev_add_write;
	ac->ev.delWrite = ev_del_write;
	ac->ev.cleanup = ev_cleanup;
	return 0;
}

/* ---- the operator's view: connection lost / restored ----
 * One line when a Redis server stops answering and one when it answers
 * again, for the whole process: every worker and pooled connection sees
 * the same outage, so the state is kept per address under a mutex (taken
 * only on connects and disconnects, never per command). A server that
 * flaps logs at most LINK_BURST lines per LINK_WINDOW seconds; the changes
 * held back are counted in the next line. */
#define LINK_WINDOW 10
#define LINK_BURST  4
#define LINK_MAX    64

static struct link_state {
	char addr[80];
	bool down;
	time_t since;         /* s: the last change */
	time_t window;        /* s: start of the current log window */
	unsigned lines, held; /* lines in the window; changes not logged */
} links[LINK_MAX];
static size_t nlinks;
static pthread_mutex_t links_mu = PTHREAD_MUTEX_INITIALIZER;

void sl_redis_link_event(const struct rs_conn *c, bool down, const char *why)
{
	char addr[80];
	struct link_state *l = NULL;
	time_t now = time(NULL);
	long long lasted;

	if (c->w->closing)
		return; /* our own shutdown */
	snprintf(addr, sizeof(addr), "%s:%d", c->node->addr.host, c->node->addr.port);
	pthread_mutex_lock(&links_mu);
	for (size_t i = 0; i < nlinks; i++)
		if (strcmp(links[i].addr, addr) == 0)
			l = &links[i];
	if (l == NULL && nlinks < LINK_MAX) {
		l = &links[nlinks++];
		snprintf(l->addr, sizeof(l->addr), "%s", addr);
		l->since = now;
		l->down = false; /* first sight: up until it fails */
	}
	if (l == NULL || l->down == down) {
		pthread_mutex_unlock(&links_mu);
		return;
	}
	lasted = (long long)(now - l->since);
	l->down = down;
	l->since = now;
	if (now - l->window >= LINK_WINDOW) {
		l->window = now;
		l->lines = 0;
	}
	if (l->lines >= LINK_BURST) {
		l->held++;
		pthread_mutex_unlock(&links_mu);
		return;
	}
	l->lines++;
	if (down)
		fprintf(stderr, "sluice: store: redis %s connection lost: %s", addr,
		        why && why[0] ? why : "closed");
	else
		fprintf(stderr, "sluice: store: redis %s connection restored after %llds", addr,
		        lasted);
	if (l->held)
		fprintf(stderr, " (%u changes not logged before this one)", l->held);
	fputc('\n', stderr);
	l->held = 0;
	pthread_mutex_unlock(&links_mu);
}

/* ---- connections ---- */

static void conn_down(struct rs_conn *c)
{
	struct rs_worker *w = c->w;

	c->ac = NULL;
	c->state = C_DOWN;
	c->inflight = 0;
	c->backoff = c->backoff ? c->backoff * 2 : BACKOFF_MIN;
	if (c->backoff > BACKOFF_MAX)
		c->backoff = BACKOFF_MAX;
	c->retry_at = now_ms(w) + c->backoff;
	if (w->cluster && !w->closing) {
		w->disc_pending = true;
		sl_redis_worker_arm(w); /* rediscover even with no request pending */
	}
}

/* Drop a connection now: its pending commands complete with NULL replies.
 * Not to be called from inside one of its own reply callbacks. */
void sl_redis_conn_drop(struct rs_conn *c)
{
	redisAsyncContext *ac = c->ac;

	conn_down(c);
	if (ac)
		redisAsyncFree(ac);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
	struct rs_conn *c = ac->data;

	if (!c || c->ac != ac)
		return;
	if (status != REDIS_OK) {
		sl_redis_link_event(c, true, ac->errstr);
		conn_down(c); /* hiredis frees the context after this returns */
		return;
	}
	c->state = C_UP;
	c->ups = c->opens;
	c->backoff = 0;
	c->progress = now_ms(c->w);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
	struct rs_conn *c = ac->data;

	if (c && c->ac == ac) {
		if (status != REDIS_OK)
			sl_redis_link_event(c, true, ac->errstr);
		conn_down(c);
	}
}

/* The connection a set-up reply (load, probe) arrived on, its command
 * counted off; NULL when it is no longer that connection's. */
static struct rs_conn *answered(redisAsyncContext *ac)
{
	struct rs_conn *c = ac->data;

	if (!c || c->ac != ac)
		return NULL;
	if (c->inflight)
		c->inflight--;
	c->progress = now_ms(c->w);
	return c;
}

static void on_load(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rs_conn *c = answered(ac);
	const redisReply *r = reply;

	(void)priv;
	if (c) {
		/* answering again: a TCP connect alone does not say so (a
		 * paused server's kernel still accepts) */
		if (r != NULL)
			sl_redis_link_event(c, false, NULL);
		/* Redis before 7.0: the commands behind this one fail the same
		 * way and are resent as EVALSHA after a SCRIPT LOAD. */
		if (r && r->type == REDIS_REPLY_ERROR && r->len >= 19 &&
		    memcmp(r->str, "ERR unknown command", 19) == 0)
			c->w->no_func = true;
	}
}

/* COMMAND INFO sluice.call: one entry, an array when the node has the
 * module, nil (or an error: COMMAND renamed) when not. */
static void on_probe(redisAsyncContext *ac, void *reply, void *priv)
{
	struct rs_conn *c = answered(ac);
	const redisReply *r = reply;

	(void)priv;
	if (c && r)
		c->node->module = r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
		                  r->element[0]->type == REDIS_REPLY_ARRAY;
}

/* Queue the library's load on c: pipelined ahead of the commands that
 * follow it on the same connection, so they never miss it on a fresh or
 * restarted server. FUNCTION LOAD REPLACE is idempotent; a server without
 * FUNCTION gets SCRIPT LOAD. */
int sl_redis_conn_load(struct rs_conn *c)
{
	struct rs_worker *w = c->w;
	int rc;

	if (w->no_func)
		rc = redisAsyncCommand(c->ac, on_load, NULL, "SCRIPT LOAD %s", w->sc.eval_src);
	else
		rc = redisAsyncCommand(c->ac, on_load, NULL, "FUNCTION LOAD REPLACE %s",
		                       w->sc.func_src);
	if (rc != REDIS_OK)
		return SL_EIO;
	if (c->inflight++ == 0)
		c->progress = now_ms(w);
	/* and whether the node has sluice's module (src/redismod) */
	if (!w->no_module) {
		if (redisAsyncCommand(c->ac, on_probe, NULL, "COMMAND INFO sluice.call") !=
		    REDIS_OK)
			return SL_EIO;
		c->inflight++;
	}
	return 0;
}

static int conn_open(struct rs_conn *c)
{
	struct rs_worker *w = c->w;
	redisAsyncContext *ac = redisAsyncConnect(c->node->addr.host, c->node->addr.port);

	if (!ac || ac->err || ev_attach(ac, w->loop) < 0) {
		sl_redis_link_event(c, true, ac && ac->err ? ac->errstr : "cannot connect");
		if (ac)
			redisAsyncFree(ac);
		conn_down(c);
		return SL_EIO;
	}
	ac->data = c;
	redisAsyncSetConnectCallback(ac, on_connect);
	redisAsyncSetDisconnectCallback(ac, on_disconnect);
	c->ac = ac;
	c->opens++;
	c->state = C_CONNECTING;
	c->inflight = 0;
	c->progress = now_ms(w);
	if (sl_redis_conn_load(c) < 0) {
		sl_redis_conn_drop(c);
		return SL_EIO;
	}
	return 0;
}

/* A usable connection to node n, opening one whose back-off has passed;
 * NULL when every connection is down and backing off. */
struct rs_conn *sl_redis_conn_get(struct rs_worker *w, struct rs_node *n)
{
	uint64_t now = now_ms(w);

	if (w->closing)
		return NULL;
	for (unsigned k = 0; k < w->pool; k++) {
		struct rs_conn *c = &n->conns[(n->rr + k) % w->pool];

		if (c->state != C_DOWN) {
			n->rr = (n->rr + k + 1) % w->pool;
			return c;
		}
	}
	for (unsigned k = 0; k < w->pool; k++) {
		struct rs_conn *c = &n->conns[(n->rr + k) % w->pool];

		if (now >= c->retry_at && conn_open(c) == 0)
			return c;
	}
	return NULL;
}

unsigned sl_redis_node_find_add(struct rs_worker *w, const char *host, int port)
{
	struct rs_node *n;

	for (unsigned i = 0; i < w->nnodes; i++)
		if (w->nodes[i].addr.port == port && strcmp(w->nodes[i].addr.host, host) == 0)
			return i;
	if (w->nnodes == MAX_NODES || strlen(host) >= SL_REDIS_HOST_MAX)
		return NO_NODE;
	n = &w->nodes[w->nnodes];
	memset(n, 0, sizeof(*n));
	snprintf(n->addr.host, sizeof(n->addr.host), "%s", host);
	n->addr.port = port;
	for (unsigned k = 0; k < MAX_POOL; k++) {
		n->conns[k].w = w;
		n->conns[k].node = n;
	}
	return w->nnodes++;
}
