/* libFuzzer target: arbitrary bytes as the JSON body of the admin
 * listener's POST /v1/decide and POST /v1/release, through the public entry
 * point sl_admin_handle() with a real compiled policy and the memory store
 * (which completes inline, so every call must return 0).
 *
 * Per input:
 *   1. POST /v1/decide with the input as the body;
 *   2. POST /v1/release with the input as the body;
 *   3. if step 1 issued a lease, POST /v1/release {"lease":"<id>"}, which
 *      must answer 200;
 *   4. GET /v1/accounts/<input>/usage twice: the same answer (peek_twice).
 * Every answer must have a known status, a length within the body buffer
 * and a body that parses as JSON; anything else aborts (a finding).
 *
 * The clock moves one day per input and the lease sweep runs, so quotas,
 * rates and concurrency slots left by earlier inputs do not pile up and an
 * input behaves (nearly) the same wherever it runs in the campaign; every
 * EPOCH_INPUTS inputs the store and the admin state start over.
 *
 * Build: CC=clang cmake -S . -B build-fuzz-admin -DCMAKE_BUILD_TYPE=Debug
 *        -DSLUICE_FUZZ=ON -DSLUICE_SANITIZE="address;undefined"
 *        cmake --build build-fuzz-admin --target fuzz_admin_decide
 * Run:   ./scripts/fuzz-run.sh build-fuzz-admin 30 (corpus: corpus/admin_decide/) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <sluice/algo-t.h>
#include "net/admin.h"
#include "net/metrics.h"
#include "policy/policy.h"
#include "store/store.h"

/* Small, but with one limit of each algorithm, per-plan maps (including
 * unlimited and deny), routes with their own limits and a cost, header and
 * method/path descriptors, templates with named limits, and the IETF preset,
 * so that decisions reach most of the rendering code. */
static const char policy_yaml[] =
	"listeners:\n"
	"  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
	"admin: { listen: \"127.0.0.1:19901\", lease_ttl: 2s }\n"
	"identify:\n"
	"  key: { from: [\"header:X-Api-Key\", \"bearer\"], required: false }\n"
	"  accounts:\n"
	"    - { account: acme, plan: pro, keys: [\"sk_acme\"] }\n"
	"    - { account: tiny, plan: free, keys: [\"sk_tiny\"] }\n"
	"    - { account: big, plan: elite, keys: [\"sk_big\"] }\n"
	"plans: { free: { title: Free }, pro: { title: \"Pro \\\"plus\\\"\" }, elite: { title: Elite } }\n"
	"limits:\n"
	"  - { name: ip, key: ip, rate: 5/min }\n"
	"  - { name: smooth, key: [account, route], rate: 60/min, burst: 3, queue: 2 }\n"
	"  - name: hourly\n"
	"    key: account\n"
	"    quota: { free: 2/hour, pro: 100/hour, elite: unlimited }\n"
	"    message: \"Hourly limit reached: {limit} requests/hour on {plan_title} plan\"\n"
	"  - { name: window, key: \"header:X-Client\", sliding: 3/min }\n"
	"  - { name: inflight, key: account, concurrency: { free: 1, pro: 2, elite: 5000 } }\n"
	"routes:\n"
	"  - name: login\n"
	"    match: { method: POST, path: /login }\n"
	"    limits: [ { name: login, key: ip, rate: 2/min } ]\n"
	"  - name: api\n"
	"    match: { path: \"/v1/*\" }\n"
	"    cost: 2\n"
	"    limits:\n"
	"      - { name: entitled, key: account, rate: { free: deny }, status: 403, message: \"VIP only\" }\n"
	"responses:\n"
	"  preset: ietf\n"
	"  headers:\n"
	"    X-RateLimit-Limit: \"{limit}\"\n"
	"    X-RateLimit-Remaining: \"{remaining}\"\n"
	"    X-RateLimit-Reset: \"{reset}\"\n"
	"    X-Hourly-Remaining: \"{limits.hourly.remaining}\"\n"
	"    X-Account: \"{account} on {plan_title}\"\n"
	"  rejected:\n"
	"    status: 429\n"
	"    headers: { Retry-After: \"{retry_after}\", X-RateLimit-DeniedBy: \"{denied_by}\" }\n"
	"    body: '{\"error\":\"limited\",\"by\":\"{denied_by}\",\"message\":\"{message}\","
	"\"plan\":\"{plan_title}\",\"account\":\"{account}\",\"retry_after\":{retry_after}}'\n";

static struct {
	struct sl_policy *p;
	struct sl_store *store;
	struct sl_metrics *m;
	struct sl_admin_global g;
	struct sl_admin a;
	uv_loop_t loop;
	struct sl_admin_call call;
	int64_t now;
	unsigned epoch; /* inputs run since fz_start() */
} fz;

#define NOW0 (1700000000LL * SL_NS_PER_SEC)
/* The clock moves a day per input; after this many inputs (about 27 years)
 * everything starts over, long before int64 nanoseconds would overflow. */
#define EPOCH_INPUTS 10000

static bool verbose; /* FUZZ_ADMIN_VERBOSE=1: print every answer (reproducers) */

static int64_t fz_clock(void *arg)
{
	(void)arg;
	return fz.now;
}

static void fz_done(struct sl_admin_call *c)
{
	/* The memory store completes inline: an async completion is a bug. */
	(void)c;
	fprintf(stderr, "fuzz_admin_decide: done() ran, the memory store should be inline\n");
	abort();
}

static void fz_closed(struct sl_admin *a)
{
	(void)a;
}

/* A fresh store, lease table and admin at the start time. */
static void fz_start(void)
{
	char err[256] = "";

	if (sl_memory_store_create(&fz.store, 1 << 20, 42) != 0 ||
	    sl_admin_global_init(&fz.g, fz.p, 1, fz.m, fz.store, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_admin_decide: setup failed %s\n", err);
		abort();
	}
	fz.now = NOW0;
	fz.epoch = 0;
	if (sl_admin_init(&fz.a, &fz.g, 0, &fz.loop, fz.store, fz.p, fz_clock, NULL) != 0) {
		fprintf(stderr, "fuzz_admin_decide: sl_admin_init failed\n");
		abort();
	}
}

static void fz_stop(void)
{
	sl_admin_close(&fz.a, fz_closed);
	uv_run(&fz.loop, UV_RUN_DEFAULT);
	sl_admin_global_destroy(&fz.g);
	fz.store->ops->destroy(fz.store);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/sluice-fuzz-admin-XXXXXX";
	struct sl_diag diag;
	FILE *fp;
	int fd;

	(void)argc;
	(void)argv;
	fd = mkstemp(path);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL) {
		perror("fuzz_admin_decide: temp file");
		abort();
	}
	fputs(policy_yaml, fp);
	fclose(fp);
	memset(&diag, 0, sizeof(diag));
	if (sl_policy_load(path, &fz.p, &diag) != 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "fuzz_admin_decide: %s\n", diag.msg[i]);
		unlink(path);
		abort();
	}
	unlink(path);
	if ((fz.m = sl_metrics_create(1)) == NULL || uv_loop_init(&fz.loop) != 0) {
		fprintf(stderr, "fuzz_admin_decide: setup failed\n");
		abort();
	}
	fz_start();
	fz.call.done = fz_done;
	verbose = getenv("FUZZ_ADMIN_VERBOSE") != NULL;
	return 0;
}

static bool status_known(int s)
{
	return s == 200 || s == 400 || s == 401 || s == 403 || s == 404 || s == 429 ||
	       s == 503;
}

/* One request; returns the response status after checking the answer. */
static int request(const char *method, const char *path, const uint8_t *body, size_t len)
{
	struct sl_admin_resp *r = &fz.call.resp;
	struct sl_admin_req req;
	cJSON *j;
	int rc;

	memset(&req, 0, sizeof(req));
	req.method = (struct sl_str){method, strlen(method)};
	req.path = (struct sl_str){path, strlen(path)};
	req.body = (struct sl_str){(const char *)body, len};
	req.policy = fz.p;
	req.now = fz.now;
	rc = sl_admin_handle(&fz.a, &fz.call, &req);
	if (rc != 0 || !status_known(r->status) || r->len > sizeof(r->body) ||
	    r->content_type == NULL) {
		fprintf(stderr, "fuzz_admin_decide: %s: rc %d status %d len %zu\n", path, rc,
			r->status, r->len);
		abort();
	}
	j = cJSON_ParseWithLength(r->body, r->len);
	if (j == NULL) {
		fprintf(stderr, "fuzz_admin_decide: %s answered %d with a body that is not JSON: %.*s\n",
			path, r->status, (int)r->len, r->body);
		abort();
	}
	cJSON_Delete(j);
	if (verbose)
		fprintf(stderr, "%s -> %d %.*s\n", path, r->status, (int)r->len, r->body);
	return r->status;
}

static int post(const char *path, const uint8_t *body, size_t len)
{
	return request("POST", path, body, len);
}

/* 4. GET /v1/accounts/<input>/usage (the input as the raw path segment,
 * when it is one): 200, 400 or 404 with JSON, and a second peek at the
 * same time answers byte for byte the same, because a peek consumes
 * nothing. */
static void peek_twice(const uint8_t *data, size_t size)
{
	static char first[SL_ADMIN_BODY_MAX];
	struct sl_admin_resp *r = &fz.call.resp;
	char path[400];
	size_t flen;
	int a, b;

	if (size == 0 || size > 300 || memchr(data, '/', size) || memchr(data, '\0', size))
		return;
	snprintf(path, sizeof(path), "/v1/accounts/%.*s/usage", (int)size, (const char *)data);
	a = request("GET", path, NULL, 0);
	if (a != 200 && a != 400 && a != 404) {
		fprintf(stderr, "fuzz_admin_decide: %s answered %d\n", path, a);
		abort();
	}
	flen = r->len;
	memcpy(first, r->body, flen);
	b = request("GET", path, NULL, 0);
	if (b != a || r->len != flen || memcmp(first, r->body, flen) != 0) {
		fprintf(stderr, "fuzz_admin_decide: %s: a second peek differs\n", path);
		abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char lease[SL_ADMIN_LEASE_ID + 32];
	bool released;
	int status;

	if (++fz.epoch > EPOCH_INPUTS) {
		fz_stop();
		fz_start();
	}
	fz.now += SL_NS_PER_DAY;
	sl_admin_sweep(&fz.a, fz.now);

	status = post("/v1/decide", data, size);
	lease[0] = '\0';
	if (status == 200) {
		cJSON *j = cJSON_ParseWithLength(fz.call.resp.body, fz.call.resp.len);
		const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "lease");
		const cJSON *h;

		/* DESIGN.md section 4: header values never contain CR or LF. */
		cJSON_ArrayForEach(h, cJSON_GetObjectItemCaseSensitive(j, "headers"))
		{
			if (!cJSON_IsString(h) || strpbrk(h->valuestring, "\r\n") != NULL ||
			    strpbrk(h->string, "\r\n: ") != NULL) {
				fprintf(stderr, "fuzz_admin_decide: bad rendered header %s\n",
					h->string);
				abort();
			}
		}
		if (cJSON_IsString(l) && strlen(l->valuestring) < SL_ADMIN_LEASE_ID)
			snprintf(lease, sizeof(lease), "{\"lease\":\"%s\"}", l->valuestring);
		cJSON_Delete(j);
	}

	released = post("/v1/release", data, size) == 200;

	if (lease[0] != '\0') {
		status = post("/v1/release", (const uint8_t *)lease, strlen(lease));
		/* Step 2 can have released it only if the input named that very
		 * lease; otherwise the lease is still held and must go now. */
		if (status != 200 && !(released && status == 404)) {
			fprintf(stderr, "fuzz_admin_decide: releasing %s answered %d\n", lease,
				status);
			abort();
		}
	}
	peek_twice(data, size);
	return 0;
}
