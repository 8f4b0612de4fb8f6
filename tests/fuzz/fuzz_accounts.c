/* libFuzzer target: arbitrary bytes as what the account admin API reads
 * from a client (DESIGN.md section 6), through the accounts thread with a
 * real policy and a real sqlite file:
 *   1. the input as the JSON body of create, patch, key issue and rotate
 *      (when it parses as an object), each answer checked: a known status
 *      and, unless 204, a body that parses as JSON;
 *   2. the input as an override value of each limit (sl_policy_override)
 *      and as an RFC 3339 time (sl_acc_parse_time): no crash, and a
 *      compiled override has a known algorithm.
 * Every EPOCH inputs the store starts over, so the file stays small.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug
 *        -DSLUICE_FUZZ=ON -DSLUICE_SANITIZE="address;undefined"
 *        cmake --build build-fuzz --target fuzz_accounts
 * Run:   ./scripts/fuzz-run.sh build-fuzz 30 (corpus: corpus/accounts/) */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cjson/cJSON.h>
#include "accounts/accounts.h"

#define EPOCH 2000

static const char yaml_fmt[] =
        "plans: { free: {}, pro: {} }\n"
        "accounts: { store: sqlite, path: \"%s\" }\n"
        "identify:\n"
        "  accounts: [ { account: staticco, plan: free, keys: [k1] } ]\n"
        "limits:\n"
        "  - { name: hourly, key: account, quota: { free: 10/hour, pro: 100/hour } }\n"
        "  - { name: tier, key: account, rate: 10/min, burst: 5 }\n"
        "  - { name: slots, key: account, concurrency: 4 }\n"
        "  - { name: win, key: account, sliding: 100/min }\n";

static const char *const limits[] = {"hourly", "tier", "slots", "win", "nope"};

static struct sl_policy *policy;
static struct sl_accounts *acc;
static char path[256];
static unsigned inputs;

struct waiter {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
};

static void done(struct sl_acc_req *r)
{
	struct waiter *w = r->arg;
	pthread_mutex_lock(&w->mu);
	w->done = true;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

static void run(int op, const char *account, const char *id, cJSON *body)
{
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
	struct sl_acc_req r;

	memset(&r, 0, sizeof(r));
	r.op = op;
	snprintf(r.account, sizeof(r.account), "%s", account);
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.body = body;
	r.policy = policy;
	r.now = 1796000000LL * 1000000000LL;
	r.limit = 10;
	r.done = done;
	r.arg = &w;
	if (sl_accounts_submit(acc, &r) != 0)
		abort();
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	switch (r.status) {
	case 200:
	case 201:
	case 204:
	case 400:
	case 404:
	case 409:
	case 503:
		break;
	default:
		fprintf(stderr, "status %d: %s\n", r.status, r.out ? r.out : "");
		abort();
	}
	if (r.status != 204) {
		cJSON *o = r.out ? cJSON_Parse(r.out) : NULL;
		if (o == NULL)
			abort();
		cJSON_Delete(o);
	}
	sl_acc_req_clear(&r);
}

static void open_store(void)
{
	char yaml[1024], err[256];
	struct sl_diag diag;

	if (acc) {
		sl_accounts_close(acc);
		sl_policy_unref(policy);
		unlink(path);
	}
	snprintf(path, sizeof(path), "/tmp/fuzz-accounts-%d.db", (int)getpid());
	unlink(path);
	snprintf(yaml, sizeof(yaml), yaml_fmt, path);
	if (sl_policy_load_mem("fuzz.yaml", yaml, strlen(yaml), &policy, &diag) != 0 ||
	    sl_accounts_open(&acc, policy, NULL, err, sizeof(err)) != 0)
		abort();
	cJSON *b = cJSON_Parse("{\"account\":\"fz\",\"plan\":\"free\"}");
	run(SL_ACC_CREATE, "", "", b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct sl_live_override o;
	char err[256];
	int64_t t;

	if (text == NULL)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (acc == NULL || ++inputs % EPOCH == 0)
		open_store();
	for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++)
		if (sl_policy_override(policy, limits[i], text, size, &o, err, sizeof(err)) == 0 &&
		    (o.spec.algo < 1 || o.spec.algo > 6))
			abort();
	(void)sl_acc_parse_time(text, &t);
	static const int ops[] = {SL_ACC_CREATE, SL_ACC_PATCH, SL_ACC_KEY_ISSUE, SL_ACC_KEY_ROTATE};
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		cJSON *b = cJSON_ParseWithLength(text, size);
		if (b == NULL || !cJSON_IsObject(b)) {
			cJSON_Delete(b);
			break;
		}
		run(ops[i], "fz", "key_none", b);
	}
	free(text);
	return 0;
}
