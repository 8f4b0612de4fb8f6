/* The in-memory account index (src/accounts/index.c): keys and accounts
 * found, replaced and removed; expiry and grace by the injected `now`;
 * growth through many rebuilds; reclamation of what readers cannot see;
 * lookups copy everything out (nothing points into the index). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "accounts/accounts.h"

static void sha_of(unsigned i, uint8_t sha[32])
{
	sl_acc_sha256((const char *)&i, sizeof(i), sha);
}

static void keys_find_their_account_until_removed(void **state)
{
	struct sl_acx *x = calloc(1, sizeof(*x));
	struct sl_live_account out;
	uint8_t k1[32], k2[32];

	(void)state;
	assert_int_equal(sl_acx_init(x), 0);
	sha_of(1, k1);
	sha_of(2, k2);
	assert_int_equal(sl_acx_put_key(x, k1, "acme", 4, INT64_MAX), SL_ENOENT);
	assert_int_equal(sl_acx_put_account(x, "acme", 4, "pro", false, NULL, 0), 0);
	assert_int_equal(sl_acx_put_key(x, k1, "acme", 4, INT64_MAX), 0);
	assert_int_equal(sl_acx_put_key(x, k2, "acme", 4, 1000), 0);
	assert_int_equal(sl_acx_by_key(x, k1, 5, &out), 1);
	assert_string_equal(out.name, "acme");
	assert_int_equal(out.name_len, 4);
	assert_string_equal(out.plan, "pro");
	assert_false(out.suspended);
	assert_int_equal(out.nover, 0);
	/* until is exclusive: the key is good before it, gone at it */
	assert_int_equal(sl_acx_by_key(x, k2, 999, &out), 1);
	assert_int_equal(sl_acx_by_key(x, k2, 1000, &out), 0);
	assert_int_equal(sl_acx_del_key(x, k1), 0);
	assert_int_equal(sl_acx_by_key(x, k1, 5, &out), 0);
	assert_int_equal(sl_acx_del_key(x, k1), SL_ENOENT);
	assert_int_equal(sl_acx_by_name(x, "acme", 4, &out), 1);
	assert_int_equal(sl_acx_by_name(x, "acm", 3, &out), 0);
	sl_acx_destroy(x);
	free(x);
}

static void account_changes_reach_every_key_at_once(void **state)
{
	struct sl_acx *x = calloc(1, sizeof(*x));
	struct sl_live_account out;
	struct sl_live_override ov[2];
	uint8_t k[32];

	(void)state;
	assert_int_equal(sl_acx_init(x), 0);
	sha_of(7, k);
	assert_int_equal(sl_acx_put_account(x, "a", 1, "free", false, NULL, 0), 0);
	assert_int_equal(sl_acx_put_key(x, k, "a", 1, INT64_MAX), 0);
	memset(ov, 0, sizeof(ov));
	snprintf(ov[0].limit, sizeof(ov[0].limit), "tier");
	ov[0].limit_id = 42;
	ov[0].spec.algo = 1;
	ov[0].spec.n = 20000;
	snprintf(ov[1].limit, sizeof(ov[1].limit), "hourly");
	ov[1].spec.algo = 5;
	assert_int_equal(sl_acx_put_account(x, "a", 1, "pro", true, ov, 2), 0);
	assert_int_equal(x->naccounts, 1);
	assert_int_equal(sl_acx_by_key(x, k, 0, &out), 1);
	assert_string_equal(out.plan, "pro");
	assert_true(out.suspended);
	assert_int_equal(out.nover, 2);
	assert_string_equal(out.over[0].limit, "tier");
	assert_int_equal(out.over[0].spec.n, 20000);
	assert_int_equal(out.over[0].limit_id, 42);
	assert_string_equal(out.over[1].limit, "hourly");
	/* deleting the account refuses its keys, which stay in the table
	 * until the writer removes them */
	assert_int_equal(sl_acx_del_account(x, "a", 1), 0);
	assert_int_equal(sl_acx_by_key(x, k, 0, &out), 0);
	assert_int_equal(sl_acx_by_name(x, "a", 1, &out), 0);
	assert_int_equal(sl_acx_del_account(x, "a", 1), SL_ENOENT);
	/* a new account of the same name is not reached by the old key */
	assert_int_equal(sl_acx_put_account(x, "a", 1, "free", false, NULL, 0), 0);
	assert_int_equal(sl_acx_by_key(x, k, 0, &out), 0);
	assert_int_equal(sl_acx_del_key(x, k), 0);
	sl_acx_destroy(x);
	free(x);
}

static void bounds_are_refused(void **state)
{
	struct sl_acx *x = calloc(1, sizeof(*x));
	char name[SL_LIVE_NAME_MAX + 2];
	struct sl_live_override ov[SL_LIVE_OVERRIDES + 1];

	(void)state;
	assert_int_equal(sl_acx_init(x), 0);
	memset(name, 'n', sizeof(name));
	memset(ov, 0, sizeof(ov));
	assert_int_equal(sl_acx_put_account(x, name, SL_LIVE_NAME_MAX + 1, "p", false, NULL, 0),
	                 SL_EINVAL);
	assert_int_equal(sl_acx_put_account(x, name, SL_LIVE_NAME_MAX, "p", false, NULL, 0), 0);
	assert_int_not_equal(sl_acx_put_account(x, "b", 1, "p", false, ov, SL_LIVE_OVERRIDES + 1),
	                     0);
	assert_int_equal(sl_acx_put_account(x, "", 0, "p", false, NULL, 0), SL_ENOMEM);
	sl_acx_destroy(x);
	free(x);
}

/* Many accounts and keys through every rebuild, with churn: removals
 * leave tombstones that later rebuilds drop; every live entry is found,
 * every removed one is not. */
static void growth_and_churn_keep_every_entry(void **state)
{
	struct sl_acx *x = calloc(1, sizeof(*x));
	struct sl_live_account out;
	enum { N = 20000 };
	char name[32];
	uint8_t k[32];

	(void)state;
	assert_int_equal(sl_acx_init(x), 0);
	for (unsigned i = 0; i < N; i++) {
		int n = snprintf(name, sizeof(name), "acct-%u", i / 2);
		if (i % 2 == 0)
			assert_int_equal(
			        sl_acx_put_account(x, name, (size_t)n, "free", false, NULL, 0), 0);
		sha_of(i, k);
		assert_int_equal(sl_acx_put_key(x, k, name, (size_t)n, INT64_MAX), 0);
	}
	assert_int_equal(x->nkeys, N);
	assert_int_equal(x->naccounts, N / 2);
	for (unsigned round = 0; round < 3; round++) {
		for (unsigned i = round; i < N; i += 3) {
			sha_of(i, k);
			sl_acx_del_key(x, k);
			int n = snprintf(name, sizeof(name), "acct-%u", i / 2);
			sl_acx_put_key(x, k, name, (size_t)n, INT64_MAX);
		}
		sl_acx_reclaim(x);
	}
	for (unsigned i = 0; i < N; i += 5) {
		sha_of(i, k);
		assert_int_equal(sl_acx_del_key(x, k), 0);
	}
	for (unsigned i = 0; i < N; i++) {
		sha_of(i, k);
		assert_int_equal(sl_acx_by_key(x, k, 0, &out), i % 5 != 0);
		if (i % 5 != 0) {
			snprintf(name, sizeof(name), "acct-%u", i / 2);
			assert_string_equal(out.name, name);
		}
	}
	assert_int_equal(x->nkeys, N - N / 5);
	/* no reader is inside: everything retired can go */
	sl_acx_reclaim(x);
	assert_int_equal(x->nretired, 0);
	assert_true(sl_acx_bytes(x) > 0);
	sl_acx_destroy(x);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(keys_find_their_account_until_removed),
	        cmocka_unit_test(account_changes_reach_every_key_at_once),
	        cmocka_unit_test(bounds_are_refused),
	        cmocka_unit_test(growth_and_churn_keep_every_entry),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
