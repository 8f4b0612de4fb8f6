/* libFuzzer target: arbitrary bytes as what a client controls in the usage
 * history endpoints, through sl_admin_handle() with a real policy and a
 * real usage database (a temp SQLite file):
 *
 *   the input up to its first '\n' is the {account} path segment, the rest
 *   the query string, of GET /v1/accounts/{account}/usage/history?...;
 *   the whole input is the query of GET /v1/usage/top?...; the whole input
 *   is the file name of GET /dashboard/...; and, NUL-terminated, the text
 *   given to sl_usage_parse_time (the from= / to= parser).
 *
 * Every answer must be 200, 400, 404 or 503 with a body within its length
 * that is JSON (the dashboard's files excepted); anything else aborts.
 * A few decisions are counted before each input so the queries find rows.
 * Run: ./scripts/fuzz-run.sh build-fuzz 30 (corpus: corpus/usage_query/). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include <sluice/algo-t.h>
#include "net/admin-int.h"
#include "policy/policy.h"
#include "store/store.h"
#include "usage/usage.h"

static const char policy_yaml[] = "admin: { listen: \"127.0.0.1:19901\" }\n"
                                  "limits:\n  - { name: hourly, key: account, rate: 5/hour }\n";

static struct {
	struct sl_policy *p;
	struct sl_store *store;
	struct sl_metrics *m;
	struct sl_usage *u;
	struct sl_admin_global g;
	struct sl_admin a;
	uv_loop_t loop;
	struct sl_admin_call call;
	int64_t now;
} fz;

#define NOW0 (1796169600LL * SL_NS_PER_SEC)

static char dbpath[64]; /* removed at exit, with its -wal and -shm */

static void remove_db(void)
{
	char p[96];

	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
}

static void fz_done(struct sl_admin_call *c)
{
	(void)c;
	abort(); /* these endpoints answer inline */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/sluice-fuzz-usage-XXXXXX", err[256] = "";
	struct sl_usage_conf uc;
	struct sl_diag diag;
	FILE *fp;
	int fd;

	(void)argc;
	(void)argv;
	fd = mkstemp(path);
	if (fd < 0 || (fp = fdopen(fd, "w")) == NULL)
		abort();
	fputs(policy_yaml, fp);
	fclose(fp);
	memset(&diag, 0, sizeof(diag));
	if (sl_policy_load(path, &fz.p, &diag) != 0)
		abort();
	unlink(path);
	snprintf(dbpath, sizeof(dbpath), "%s.db", path);
	atexit(remove_db);
	uc = fz.p->usage;
	uc.path = dbpath;
	if (sl_usage_open(&fz.u, &uc, 1, NULL, err, sizeof(err)) != 0 ||
	    (fz.m = sl_metrics_create(1)) == NULL || uv_loop_init(&fz.loop) != 0 ||
	    sl_memory_store_create(&fz.store, 1 << 20, 42) != 0 ||
	    sl_admin_global_init(&fz.g, fz.p, 1, fz.m, fz.store, err, sizeof(err)) != 0) {
		fprintf(stderr, "fuzz_usage_query: setup failed %s\n", err);
		abort();
	}
	fz.g.usage = fz.u;
	fz.now = NOW0;
	if (sl_admin_init(&fz.a, &fz.g, 0, &fz.loop, fz.store, fz.p, NULL, NULL) != 0)
		abort();
	fz.call.done = fz_done;
	return 0;
}

static void get(const char *path, size_t plen, const char *query, size_t qlen, bool json)
{
	struct sl_admin_resp *r = &fz.call.resp;
	struct sl_admin_req req;
	int rc;

	memset(&req, 0, sizeof(req));
	req.method = (struct sl_str){"GET", 3};
	req.path = (struct sl_str){path, plen};
	req.query = (struct sl_str){query, qlen};
	req.policy = fz.p;
	req.now = fz.now;
	rc = sl_admin_handle(&fz.a, &fz.call, &req);
	if (rc != 0 ||
	    (r->status != 200 && r->status != 400 && r->status != 404 && r->status != 503) ||
	    (r->heap == NULL && r->len > sizeof(r->body))) {
		fprintf(stderr, "fuzz_usage_query: %.*s: rc %d status %d\n", (int)plen, path, rc,
		        r->status);
		abort();
	}
	if (json || r->status != 200) {
		cJSON *j = cJSON_ParseWithLength(sl_admin_resp_data(r), r->len);
		if (j == NULL) {
			fprintf(stderr, "fuzz_usage_query: %.*s: %d, not JSON: %.*s\n", (int)plen,
			        path, r->status, (int)(r->len > 300 ? 300 : r->len),
			        sl_admin_resp_data(r));
			abort();
		}
		cJSON_Delete(j);
	}
	sl_admin_call_reset(&fz.call);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const char *nl = memchr(in, '\n', size);
	size_t seg = nl ? (size_t)(nl - in) : size;
	char path[8300], text[64];
	int64_t t;
	int n;

	if (size > 8000)
		return 0;
	fz.now += 61 * SL_NS_PER_SEC;
	sl_usage_count(sl_usage_shard(fz.u, 0), "acme", 4, "hourly", SL_USAGE_REJECTED, 1, fz.now);
	sl_usage_count(sl_usage_shard(fz.u, 0), in, seg < 90 ? seg : 90, "hourly", SL_USAGE_ALLOWED,
	               1, fz.now);

	n = snprintf(path, sizeof(path), "/v1/accounts/%.*s/usage/history", (int)seg, in);
	get(path, (size_t)n, nl ? nl + 1 : "", nl ? size - seg - 1 : 0, true);
	get("/v1/usage/top", 13, in, size, true);
	n = snprintf(path, sizeof(path), "/dashboard/%.*s", (int)size, in);
	get(path, (size_t)n, "", 0, false);

	n = snprintf(text, sizeof(text), "%.*s", (int)(size < 63 ? size : 63), in);
	(void)n;
	if (sl_usage_parse_time(text, &t) == 0 && t < 0)
		abort();
	return 0;
}
