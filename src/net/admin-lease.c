/* Admin lease tables (see admin.h): a decision that takes concurrency
 * slots gets a lease in its worker's table until /v1/release or until
 * admin.lease_ttl passes, when that worker's sweep timer gives the slots
 * back. Also the per-worker admin state's init and close. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sluice/error.h>
#include "net/admin-int.h"

static void table_init(struct sl_lease_table *t, unsigned worker, uint32_t seed)
{
	pthread_mutex_init(&t->mu, NULL);
	t->worker = worker;
	t->next_gen = seed | 1u;
	t->nfree = SL_ADMIN_LEASES;
	for (unsigned i = 0; i < SL_ADMIN_LEASES; i++) {
		/* Pop order: slot 0 first. */
		t->freelist[i] = SL_ADMIN_LEASES - 1 - i;
		t->lease[i].table = t;
		t->lease[i].slot = i;
	}
}

/* Reserve a slot; NULL when full. Called with t->mu unlocked. */
struct lease *sl_lease_reserve(struct sl_lease_table *t)
{
	struct lease *l = NULL;

	pthread_mutex_lock(&t->mu);
	if (t->nfree > 0) {
		l = &t->lease[t->freelist[--t->nfree]];
		l->state = L_RESERVED;
		l->gen = t->next_gen;
		t->next_gen = t->next_gen * 1664525u + 1013904223u;
		if (t->next_gen == 0)
			t->next_gen = 1;
	}
	pthread_mutex_unlock(&t->mu);
	return l;
}

/* Return l to the free list; gives back its policy reference. */
void sl_lease_free(struct lease *l)
{
	struct sl_lease_table *t = l->table;
	struct sl_policy *p;

	pthread_mutex_lock(&t->mu);
	p = l->policy;
	l->policy = NULL;
	l->state = L_FREE;
	l->n = 0;
	l->waiter = NULL;
	t->freelist[t->nfree++] = l->slot;
	pthread_mutex_unlock(&t->mu);
	if (p != NULL)
		sl_policy_unref(p);
}

void sl_lease_id(const struct lease *l, char *out, size_t cap)
{
	snprintf(out, cap, "%u-%u-%08x", l->table->worker, l->slot, l->gen);
}

/* Parse "W-S-GGGGGGGG" (decimal, decimal, 8 lowercase hex digits) strictly. */
int sl_lease_parse_id(const char *s, unsigned *worker, unsigned *slot, uint32_t *gen)
{
	unsigned long long v[3] = {0, 0, 0};
	size_t digits;

	for (int i = 0; i < 3; i++) {
		for (digits = 0;; s++, digits++) {
			unsigned d;
			if (*s >= '0' && *s <= '9')
				d = (unsigned)(*s - '0');
			else if (i == 2 && *s >= 'a' && *s <= 'f')
				d = (unsigned)(*s - 'a' + 10);
			else
				break;
			if (digits >= 8)
				return SL_EINVAL;
			v[i] = v[i] * (i == 2 ? 16 : 10) + d;
		}
		if (digits == 0 || (i == 2 && digits != 8))
			return SL_EINVAL;
		if (i < 2 && *s++ != '-')
			return SL_EINVAL;
	}
	if (*s != '\0' || v[0] > 0xffffu || v[1] >= SL_ADMIN_LEASES)
		return SL_EINVAL;
	*worker = (unsigned)v[0];
	*slot = (unsigned)v[1];
	*gen = (uint32_t)v[2];
	return 0;
}

int sl_admin_global_init(struct sl_admin_global *g, const struct sl_policy *p, unsigned nworkers,
                         struct sl_metrics *metrics, struct sl_store *stats_store, char *err,
                         size_t cap)
{
	int rc;
	struct timespec ts;

	memset(g, 0, sizeof(*g));
	rc = sl_admin_conf_check(&p->admin, err, cap);
	if (rc < 0)
		goto fail;
	if (nworkers == 0) {
		rc = SL_EINVAL;
		goto fail;
	}
	g->tables = calloc(nworkers, sizeof(*g->tables));
	if (g->tables == NULL) {
		rc = SL_ENOMEM;
		goto fail;
	}
	clock_gettime(CLOCK_REALTIME, &ts);
	for (unsigned i = 0; i < nworkers; i++)
		table_init(&g->tables[i], i,
		           (uint32_t)(ts.tv_nsec ^ (ts.tv_sec << 11) ^ (i * 2654435761u)));
	g->nworkers = nworkers;
	g->metrics = metrics;
	g->stats_store = stats_store;
	return 0;
fail:
	return rc;
}

void sl_admin_global_destroy(struct sl_admin_global *g)
{
	if (g->tables == NULL)
		return;
	for (unsigned i = 0; i < g->nworkers; i++) {
		struct sl_lease_table *t = &g->tables[i];
		for (unsigned j = 0; j < SL_ADMIN_LEASES; j++)
			if (t->lease[j].policy != NULL) {
				sl_policy_unref(t->lease[j].policy);
				t->lease[j].policy = NULL;
			}
		pthread_mutex_destroy(&t->mu);
	}
	free(g->tables);
	g->tables = NULL;
	g->nworkers = 0;
}

/* ---- clock ---- */

int64_t sl_admin_now(struct sl_admin *a)
{
	struct timespec ts;

	if (a->clock != NULL)
		return a->clock(a->clock_arg);
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * SL_NS_PER_SEC + ts.tv_nsec;
}

/* ---- releasing ---- */

void sl_lease_release_respond(struct sl_admin_call *c, int status)
{
	if (status >= 0)
		sl_admin_respond_json(&c->resp, 200, "{\"released\":true}");
	else
		sl_admin_respond_error(
		        &c->resp, 503, "store_unavailable",
		        "the store did not take the release; the lease expires on its own");
}

/* Completion of a lease's release batch (on the releaser's loop). */
static void release_done(struct sl_batch *b)
{
	struct lease *l = b->data;
	struct sl_admin_call *c = l->waiter;
	bool async = l->waiter_async;
	int status = b->status;

	if (status < 0) {
		/* Keep the slots recorded; the sweep retries after a pause. */
		pthread_mutex_lock(&l->table->mu);
		l->state = L_HELD;
		l->expires = b->now + SL_NS_PER_SEC;
		l->waiter = NULL;
		pthread_mutex_unlock(&l->table->mu);
	} else {
		sl_lease_free(l);
	}
	if (c != NULL) {
		sl_lease_release_respond(c, status);
		c->kind = K_NONE;
		if (async)
			c->done(c);
		else
			c->rel_table = NULL; /* marks "completed inline" for the submitter */
	}
}

/* Submit the release of l (state already L_RELEASING) on a's loop. Returns
 * 0 (release_done ran or will run) or a negative code (l back to L_HELD). */
int sl_lease_release_submit(struct sl_admin *a, struct lease *l, int64_t now)
{
	int rc;

	memset(&l->batch, 0, sizeof(l->batch));
	l->batch.checks = l->checks;
	l->batch.n = l->n;
	l->batch.op = SL_OP_RELEASE;
	l->batch.now = now;
	l->batch.loop = a->loop;
	l->batch.done = release_done;
	l->batch.data = l;
	l->releaser = a;
	rc = sl_store_submit(a->store, &l->batch);
	if (rc < 0) {
		pthread_mutex_lock(&l->table->mu);
		l->state = L_HELD;
		l->expires = now + SL_NS_PER_SEC;
		l->waiter = NULL;
		pthread_mutex_unlock(&l->table->mu);
	}
	return rc;
}

unsigned sl_admin_sweep(struct sl_admin *a, int64_t now)
{
	struct sl_lease_table *t = &a->g->tables[a->worker];
	struct lease *due[SWEEP_MAX];
	unsigned n = 0;

	/* A lease is due one sweep period early: the store forgets a
	 * concurrency state lease_ttl after its last acquire, and a release
	 * that came after that would give back slots a newer holder took. */
	now += a->sweep_every;
	pthread_mutex_lock(&t->mu);
	for (unsigned i = 0; i < SL_ADMIN_LEASES && n < SWEEP_MAX; i++) {
		struct lease *l = &t->lease[i];
		if (l->state == L_HELD && l->expires <= now) {
			l->state = L_RELEASING;
			l->waiter = NULL;
			due[n++] = l;
		}
	}
	pthread_mutex_unlock(&t->mu);
	for (unsigned i = 0; i < n; i++)
		sl_lease_release_submit(a, due[i], now - a->sweep_every);
	return n;
}

static void sweep_cb(uv_timer_t *timer)
{
	struct sl_admin *a = timer->data;
	sl_admin_sweep(a, sl_admin_now(a));
}

int sl_admin_init(struct sl_admin *a, struct sl_admin_global *g, unsigned worker, uv_loop_t *loop,
                  struct sl_store *store, const struct sl_policy *p, int64_t (*clock)(void *),
                  void *clock_arg)
{
	int64_t every;
	int rc;

	memset(a, 0, sizeof(*a));
	if (worker >= g->nworkers)
		return SL_EINVAL;
	a->g = g;
	a->worker = worker;
	a->loop = loop;
	a->store = store;
	a->shard = g->metrics ? sl_metrics_shard(g->metrics, worker) : NULL;
	a->clock = clock;
	a->clock_arg = clock_arg;
	a->lease_ttl = p->admin.lease_ttl > 0 ? p->admin.lease_ttl : LEASE_TTL_DEFAULT;
	/* Sweep often enough that a lease outlives its TTL by at most an
	 * eighth of it (10 ms .. 250 ms). */
	every = a->lease_ttl / 8 / 1000000;
	if (every < 10)
		every = 10;
	if (every > 250)
		every = 250;
	rc = uv_timer_init(loop, &a->sweep);
	if (rc < 0)
		return SL_EIO;
	a->sweep.data = a;
	a->sweep_every = every * 1000000;
	uv_timer_start(&a->sweep, sweep_cb, (uint64_t)every, (uint64_t)every);
	uv_unref((uv_handle_t *)&a->sweep);
	return sl_admin_accounts_init(a);
}

static void sweep_closed(uv_handle_t *h)
{
	struct sl_admin *a = h->data;
	if (a->closed != NULL)
		a->closed(a);
}

void sl_admin_close(struct sl_admin *a, void (*closed)(struct sl_admin *a))
{
	struct sl_lease_table *t = &a->g->tables[a->worker];
	int64_t now = sl_admin_now(a);

	/* Everything held is due now. */
	pthread_mutex_lock(&t->mu);
	for (unsigned i = 0; i < SL_ADMIN_LEASES; i++)
		if (t->lease[i].state == L_HELD)
			t->lease[i].expires = now;
	pthread_mutex_unlock(&t->mu);
	while (sl_admin_sweep(a, now) == SWEEP_MAX)
		;
	a->closed = closed;
	sl_admin_accounts_close(a);
	uv_timer_stop(&a->sweep);
	uv_close((uv_handle_t *)&a->sweep, sweep_closed);
}
