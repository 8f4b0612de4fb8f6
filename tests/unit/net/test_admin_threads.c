/* Leases across workers: two worker threads, each with its own loop and
 * sl_admin over one shared global, store and metrics, decide concurrency
 * slots and release each other's leases (the id names the owner's table),
 * while a third thread scrapes /metrics. Afterwards every slot is back and
 * the counters add up. Runs under ThreadSanitizer too (name: _threads). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <cjson/cJSON.h>
#include <sluice/error.h>
#include "net/admin.h"
#include "net/metrics.h"

/* cmocka's assertions longjmp to the main thread; off it, fail loudly. */
#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

#define ROUNDS 1500 /* decisions per worker */
#define NOW0   (1700000000LL * SL_NS_PER_SEC)

static const char config_text[] =
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
        "admin: { listen: \"127.0.0.1:19901\", lease_ttl: 60s }\n"
        "identify:\n"
        "  key: { from: [\"header:X-Api-Key\"], required: false }\n"
        "  accounts:\n"
        "    - { account: acme, plan: pro, keys: [\"sk_acme\"] }\n"
        "plans: { pro: { title: Pro } }\n"
        "limits:\n"
        "  - { name: inflight, key: account, concurrency: { pro: 64 } }\n";

/* A bounded single-producer single-consumer queue of lease ids. */
#define QCAP 256
struct queue {
	pthread_mutex_t mu;
	char ids[QCAP][SL_ADMIN_LEASE_ID];
	unsigned head, tail;
	bool done;
};

static struct sl_policy *policy;
static struct sl_store *store;
static struct sl_metrics *metrics;
static struct sl_admin_global global;
static struct queue q[2]; /* q[i]: leases worker i issued, for the other to release */
static atomic_int granted, released, refused, scrapes;
static atomic_bool stop_scrape;
static pthread_barrier_t closing;

static int64_t fixed_clock(void *arg)
{
	(void)arg;
	return NOW0;
}

static int send_req(struct sl_admin *a, struct sl_admin_call *c, const char *path, const char *body)
{
	struct sl_admin_req r;

	memset(&r, 0, sizeof(r));
	r.method = (struct sl_str){"POST", 4};
	r.path = (struct sl_str){path, strlen(path)};
	r.body = (struct sl_str){body, strlen(body)};
	r.policy = policy;
	r.now = NOW0;
	CHECK((sl_admin_handle(a, c, &r)) == 0);
	return c->resp.status;
}

static bool pop(struct queue *qu, char *out, bool *done)
{
	bool got = false;

	pthread_mutex_lock(&qu->mu);
	if (qu->head != qu->tail) {
		memcpy(out, qu->ids[qu->head % QCAP], SL_ADMIN_LEASE_ID);
		qu->head++;
		got = true;
	}
	*done = qu->done && qu->head == qu->tail;
	pthread_mutex_unlock(&qu->mu);
	return got;
}

static bool push(struct queue *qu, const char *id)
{
	bool ok = false;

	pthread_mutex_lock(&qu->mu);
	if (qu->tail - qu->head < QCAP) {
		snprintf(qu->ids[qu->tail % QCAP], SL_ADMIN_LEASE_ID, "%s", id);
		qu->tail++;
		ok = true;
	}
	pthread_mutex_unlock(&qu->mu);
	return ok;
}

static void release_one(struct sl_admin *a, struct sl_admin_call *c, const char *id)
{
	char body[96];

	snprintf(body, sizeof(body), "{\"lease\":\"%s\"}", id);
	if (send_req(a, c, "/v1/release", body) != 200)
		fprintf(stderr, "release %s: %d %.*s\n", id, c->resp.status, (int)c->resp.len,
		        c->resp.body);
	CHECK(c->resp.status == 200);
	atomic_fetch_add(&released, 1);
}

static void closed(struct sl_admin *a)
{
	(void)a;
}

static void *worker(void *arg)
{
	unsigned me = (unsigned)(uintptr_t)arg, other = 1 - me;
	struct sl_admin_call *c = calloc(1, sizeof(*c));
	struct sl_admin a;
	uv_loop_t loop;
	char id[SL_ADMIN_LEASE_ID];
	bool done;
	int issued = 0;

	CHECK(c != NULL);
	CHECK((uv_loop_init(&loop)) == 0);
	CHECK((sl_admin_init(&a, &global, me, &loop, store, policy, fixed_clock, NULL)) == 0);
	while (issued < ROUNDS) {
		if (send_req(&a, c, "/v1/decide", "{\"account\":\"acme\"}") == 200) {
			cJSON *j = cJSON_ParseWithLength(c->resp.body, c->resp.len);
			const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "lease");
			CHECK(j != NULL);
			if (cJSON_IsString(l)) {
				atomic_fetch_add(&granted, 1);
				while (!push(&q[me], l->valuestring)) {
					if (pop(&q[other], id, &done))
						release_one(&a, c, id);
				}
				issued++;
			} else {
				atomic_fetch_add(&refused, 1);
			}
			cJSON_Delete(j);
		}
		/* Release what the other worker issued. */
		if (pop(&q[other], id, &done))
			release_one(&a, c, id);
	}
	pthread_mutex_lock(&q[me].mu);
	q[me].done = true;
	pthread_mutex_unlock(&q[me].mu);
	for (;;) {
		if (pop(&q[other], id, &done))
			release_one(&a, c, id);
		else if (done)
			break;
		else
			usleep(100);
	}
	/* Closing releases this worker's leases: only once the other worker
	 * is done with them. */
	pthread_barrier_wait(&closing);
	sl_admin_close(&a, closed);
	uv_run(&loop, UV_RUN_DEFAULT);
	CHECK((uv_loop_close(&loop)) == 0);
	free(c);
	return NULL;
}

static void *scraper(void *arg)
{
	static char buf[SL_ADMIN_BODY_MAX];

	(void)arg;
	while (!atomic_load(&stop_scrape)) {
		CHECK(sl_metrics_render(metrics, NULL, buf, sizeof(buf)) > 0);
		atomic_fetch_add(&scrapes, 1);
	}
	return NULL;
}

static void leases_cross_workers_and_all_come_back(void **state)
{
	char path[] = "/tmp/sluice-admin-threads-XXXXXX";
	struct sl_diag diag;
	pthread_t t[3];
	char err[256];
	FILE *fp;
	int fd;

	(void)state;
	fd = mkstemp(path);
	assert_true(fd >= 0);
	fp = fdopen(fd, "w");
	fputs(config_text, fp);
	fclose(fp);
	memset(&diag, 0, sizeof(diag));
	assert_int_equal(sl_policy_load(path, &policy, &diag), 0);
	unlink(path);
	assert_int_equal(sl_memory_store_create(&store, 1 << 20, 7), 0);
	metrics = sl_metrics_create(2);
	assert_non_null(metrics);
	assert_int_equal(sl_admin_global_init(&global, policy, 2, metrics, store, err, sizeof(err)),
	                 0);
	for (int i = 0; i < 2; i++)
		pthread_mutex_init(&q[i].mu, NULL);
	pthread_barrier_init(&closing, NULL, 2);

	pthread_create(&t[2], NULL, scraper, NULL);
	pthread_create(&t[0], NULL, worker, (void *)(uintptr_t)0);
	pthread_create(&t[1], NULL, worker, (void *)(uintptr_t)1);
	pthread_join(t[0], NULL);
	pthread_join(t[1], NULL);
	atomic_store(&stop_scrape, true);
	pthread_join(t[2], NULL);

	assert_int_equal(atomic_load(&granted), 2 * ROUNDS);
	assert_int_equal(atomic_load(&released), 2 * ROUNDS);
	/* Every slot is back: 64 decisions in a row are granted. */
	{
		struct sl_admin a;
		uv_loop_t loop;
		struct sl_admin_call *c = calloc(1, sizeof(*c));
		char buf[SL_ADMIN_BODY_MAX + 1];
		long n;
		char want[128];

		assert_int_equal(uv_loop_init(&loop), 0);
		assert_int_equal(
		        sl_admin_init(&a, &global, 0, &loop, store, policy, fixed_clock, NULL), 0);
		for (int i = 0; i < 64; i++) {
			assert_int_equal(send_req(&a, c, "/v1/decide", "{\"account\":\"acme\"}"),
			                 200);
			assert_non_null(strstr(c->resp.body, "\"allowed\":true"));
		}
		send_req(&a, c, "/v1/decide", "{\"account\":\"acme\"}");
		assert_non_null(strstr(c->resp.body, "\"allowed\":false"));
		n = sl_metrics_render(metrics, NULL, buf, sizeof(buf) - 1);
		assert_true(n > 0);
		buf[n] = '\0';
		snprintf(want, sizeof(want),
		         "sluice_decision_seconds_count{listener=\"admin\"} %d\n",
		         2 * ROUNDS + atomic_load(&refused) + 65);
		assert_non_null(strstr(buf, want));
		sl_admin_close(&a, closed);
		uv_run(&loop, UV_RUN_DEFAULT);
		assert_int_equal(uv_loop_close(&loop), 0);
		free(c);
	}
	assert_true(atomic_load(&scrapes) > 0);
	sl_admin_global_destroy(&global);
	sl_metrics_destroy(metrics);
	store->ops->destroy(store);
	sl_policy_unref(policy);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(leases_cross_workers_and_all_come_back),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
