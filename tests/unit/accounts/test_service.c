/* The accounts thread over a real sqlite file (src/accounts/service.c):
 * every operation's answer, and the index a worker reads agreeing with the
 * file after each one: create, issue, patch (plan, suspension, overrides
 * merged and removed), rotate with grace (time injected through r->now and
 * the lookup's now), revoke, delete; a store that became unwritable answers
 * 503 and changes neither the file nor the index; a reopen loads exactly
 * what was answered. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "accounts/accounts.h"

#define T0 (1800000000LL * 1000000000LL) /* ns: the injected clock */

static char dbpath[64];
static struct sl_policy *policy;

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

/* Run one operation; returns the status, *out the parsed answer (or NULL). */
static int op(struct sl_accounts *a, int code, const char *account, const char *id,
              const char *body, int64_t now, cJSON **out)
{
	struct waiter w = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false};
	struct sl_acc_req r;
	int status;

	memset(&r, 0, sizeof(r));
	r.op = code;
	snprintf(r.account, sizeof(r.account), "%s", account);
	snprintf(r.id, sizeof(r.id), "%s", id);
	r.body = body ? cJSON_Parse(body) : NULL;
	r.policy = policy;
	r.now = now;
	r.limit = 100;
	r.done = done;
	r.arg = &w;
	assert_int_equal(sl_accounts_submit(a, &r), 0);
	pthread_mutex_lock(&w.mu);
	while (!w.done)
		pthread_cond_wait(&w.cv, &w.mu);
	pthread_mutex_unlock(&w.mu);
	status = r.status;
	if (out)
		*out = r.out ? cJSON_Parse(r.out) : NULL;
	sl_acc_req_clear(&r);
	return status;
}

static const char *str(const cJSON *o, const char *name)
{
	return cJSON_GetStringValue(cJSON_GetObjectItem(o, name));
}

static int lookup(struct sl_accounts *a, const char *key, int64_t now, struct sl_live_account *out)
{
	const struct sl_account_src *s = sl_accounts_src(a);
	uint8_t sha[32];

	sl_acc_sha256(key, strlen(key), sha);
	return s->by_key(s, sha, now, out);
}

static int setup(void **state)
{
	static const char fmt[] =
	        "plans: { free: {}, pro: {} }\n"
	        "accounts: { store: sqlite, path: \"%s\", key_prefix: sk_t_ }\n"
	        "identify: { accounts: [ { account: yamlco, plan: free, keys: [k1] } ] }\n"
	        "limits:\n"
	        "  - { name: hourly, key: account, quota: { free: 10/hour, pro: 100/hour } }\n"
	        "  - { name: tier, key: account, rate: 10/min }\n";
	char yaml[512];
	struct sl_diag diag;

	(void)state;
	snprintf(dbpath, sizeof(dbpath), "/tmp/sluice-acc-test-%d.db", (int)getpid());
	unlink(dbpath);
	snprintf(yaml, sizeof(yaml), fmt, dbpath);
	assert_int_equal(sl_policy_load_mem("t.yaml", yaml, strlen(yaml), &policy, &diag), 0);
	return 0;
}

static int teardown(void **state)
{
	char p[80];

	(void)state;
	sl_policy_unref(policy);
	unlink(dbpath);
	snprintf(p, sizeof(p), "%s-wal", dbpath);
	unlink(p);
	snprintf(p, sizeof(p), "%s-shm", dbpath);
	unlink(p);
	return 0;
}

static void operations_keep_the_file_and_the_index_in_step(void **state)
{
	struct sl_accounts *a;
	struct sl_live_account live;
	char err[256], key[80], key2[80], id[SL_ACC_ID_MAX], id2[SL_ACC_ID_MAX];
	cJSON *o;

	(void)state;
	assert_int_equal(sl_accounts_open(&a, policy, NULL, err, sizeof(err)), 0);
	assert_int_equal(
	        op(a, SL_ACC_CREATE, "", "", "{\"account\":\"acme\",\"plan\":\"free\"}", T0, &o),
	        201);
	assert_string_equal(str(o, "status"), "active");
	cJSON_Delete(o);
	assert_int_equal(
	        op(a, SL_ACC_CREATE, "", "", "{\"account\":\"acme\",\"plan\":\"pro\"}", T0, NULL),
	        409);
	assert_int_equal(
	        op(a, SL_ACC_CREATE, "", "", "{\"account\":\"yamlco\",\"plan\":\"pro\"}", T0, NULL),
	        409);
	assert_int_equal(op(a, SL_ACC_KEY_ISSUE, "acme", "", "{\"label\":\"ci\"}", T0, &o), 201);
	snprintf(key, sizeof(key), "%s", str(o, "key"));
	snprintf(id, sizeof(id), "%s", str(o, "id"));
	assert_memory_equal(key, "sk_t_", 5);
	cJSON_Delete(o);
	assert_int_equal(lookup(a, key, T0, &live), 1);
	assert_string_equal(live.name, "acme");
	assert_string_equal(live.plan, "free");

	/* a patch: plan, suspension and an override, all at once */
	assert_int_equal(op(a, SL_ACC_PATCH, "acme", "",
	                    "{\"plan\":\"pro\",\"status\":\"suspended\","
	                    "\"overrides\":{\"tier\":\"20000/min\"}}",
	                    T0, NULL),
	                 200);
	assert_int_equal(lookup(a, key, T0, &live), 1);
	assert_string_equal(live.plan, "pro");
	assert_true(live.suspended);
	assert_int_equal(live.nover, 1);
	assert_string_equal(live.over[0].limit, "tier");
	assert_int_equal(live.over[0].spec.n, 20000);
	/* a bad patch changes nothing */
	assert_int_equal(op(a, SL_ACC_PATCH, "acme", "",
	                    "{\"plan\":\"free\",\"overrides\":{\"hourly\":\"oops\"}}", T0, &o),
	                 400);
	assert_string_equal(str(o, "field"), "overrides.hourly");
	cJSON_Delete(o);
	assert_int_equal(lookup(a, key, T0, &live), 1);
	assert_string_equal(live.plan, "pro");
	assert_int_equal(op(a, SL_ACC_PATCH, "acme", "",
	                    "{\"status\":\"active\",\"overrides\":{\"tier\":null}}", T0, NULL),
	                 200);
	assert_int_equal(lookup(a, key, T0, &live), 1);
	assert_false(live.suspended);
	assert_int_equal(live.nover, 0);

	/* rotate with a 60 s grace: the old key works until T0 + 60 s */
	assert_int_equal(op(a, SL_ACC_KEY_ROTATE, "", id, "{\"grace\":\"60s\"}", T0, &o), 201);
	snprintf(key2, sizeof(key2), "%s", str(o, "key"));
	snprintf(id2, sizeof(id2), "%s", str(o, "id"));
	cJSON_Delete(o);
	assert_int_equal(lookup(a, key2, T0, &live), 1);
	assert_int_equal(lookup(a, key, T0 + 59 * 1000000000LL, &live), 1);
	assert_int_equal(lookup(a, key, T0 + 60 * 1000000000LL, &live), 0);

	/* an unwritable file: 503, nothing changes */
	assert_int_equal(chmod(dbpath, 0444), 0);
	assert_int_equal(op(a, SL_ACC_PATCH, "acme", "", "{\"plan\":\"free\"}", T0, &o), 503);
	assert_string_equal(str(o, "error"), "store_unavailable");
	cJSON_Delete(o);
	assert_int_equal(op(a, SL_ACC_DELETE, "acme", "", NULL, T0, NULL), 503);
	assert_int_equal(lookup(a, key2, T0, &live), 1);
	assert_string_equal(live.plan, "pro");
	assert_int_equal(chmod(dbpath, 0644), 0);

	/* reopen: exactly what was answered */
	sl_accounts_close(a);
	assert_int_equal(sl_accounts_open(&a, policy, NULL, err, sizeof(err)), 0);
	assert_int_equal(lookup(a, key2, T0, &live), 1);
	assert_string_equal(live.plan, "pro");
	assert_int_equal(op(a, SL_ACC_GET, "acme", "", NULL, T0, &o), 200);
	assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItem(o, "keys")), 2);
	cJSON_Delete(o);

	/* revoke, then delete: both from the next lookup */
	assert_int_equal(op(a, SL_ACC_KEY_REVOKE, "", id2, NULL, T0, NULL), 204);
	assert_int_equal(lookup(a, key2, T0, &live), 0);
	assert_int_equal(op(a, SL_ACC_KEY_REVOKE, "", "key_none", NULL, T0, NULL), 404);
	assert_int_equal(op(a, SL_ACC_KEY_ISSUE, "acme", "", NULL, T0, &o), 201);
	snprintf(key, sizeof(key), "%s", str(o, "key"));
	cJSON_Delete(o);
	assert_int_equal(lookup(a, key, T0, &live), 1);
	assert_int_equal(op(a, SL_ACC_DELETE, "acme", "", NULL, T0, NULL), 204);
	assert_int_equal(lookup(a, key, T0, &live), 0);
	assert_int_equal(lookup(a, key2, T0, &live), 0);
	assert_int_equal(op(a, SL_ACC_GET, "acme", "", NULL, T0, NULL), 404);
	sl_accounts_close(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test_setup_teardown(operations_keep_the_file_and_the_index_in_step,
	                                        setup, teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
