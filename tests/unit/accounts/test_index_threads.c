/* Readers and the one writer of the account index at the same time (also
 * run under ThreadSanitizer): readers look keys up without pause while the
 * writer replaces accounts, removes and re-adds keys and grows the tables;
 * a reader never sees a torn account (name and plan always belong
 * together), and what the writer retires is freed only once no reader can
 * hold it (ASan would report a use after free). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "accounts/accounts.h"

#define READERS 3
#define NKEYS   512

static struct sl_acx *x;
static _Atomic int stop;
static _Atomic unsigned long hits[READERS]; /* lookups that found a key, per reader */
static uint8_t shas[NKEYS * 4][32];

static void *reader(void *arg)
{
	struct sl_live_account out;
	unsigned long i = (unsigned long)(uintptr_t)arg, me = i - 1;

	while (!atomic_load(&stop)) {
		i = (i * 1103515245u + 12345u) % NKEYS;
		if (sl_acx_by_key(x, shas[i], 0, &out) == 1) {
			char want[SL_LIVE_NAME_MAX + 2];
			/* the plan is written with the account: "p" + name */
			snprintf(want, sizeof(want), "p%s", out.name);
			if (strcmp(out.plan, want) != 0 && strncmp(out.plan, "q", 1) != 0)
				return (void *)1;
			atomic_fetch_add(&hits[me], 1);
		}
	}
	return (void *)0;
}

static void readers_see_whole_records_while_the_writer_churns(void **state)
{
	pthread_t t[READERS];
	char name[16], plan[20];

	(void)state;
	x = calloc(1, sizeof(*x));
	assert_int_equal(sl_acx_init(x), 0);
	for (unsigned i = 0; i < NKEYS * 4; i++)
		sl_acc_sha256((const char *)&i, sizeof(i), shas[i]);
	for (unsigned i = 0; i < NKEYS / 8; i++) {
		int n = snprintf(name, sizeof(name), "a%u", i);
		snprintf(plan, sizeof(plan), "p%s", name);
		assert_int_equal(sl_acx_put_account(x, name, (size_t)n, plan, false, NULL, 0), 0);
	}
	for (unsigned i = 0; i < NKEYS; i++) {
		int n = snprintf(name, sizeof(name), "a%u", i % (NKEYS / 8));
		assert_int_equal(sl_acx_put_key(x, shas[i], name, (size_t)n, INT64_MAX), 0);
	}
	for (uintptr_t r = 0; r < READERS; r++)
		assert_int_equal(pthread_create(&t[r], NULL, reader, (void *)(r + 1)), 0);
	/* at least 300 rounds, and on until every reader found keys a
	 * hundred times while the writer churned (bounded: 100000 rounds) */
	for (unsigned round = 0; round < 100000; round++) {
		bool all = round >= 300;
		for (int r = 0; r < READERS && all; r++)
			all = atomic_load(&hits[r]) >= 100;
		if (all)
			break;
		unsigned a = round % (NKEYS / 8);
		int n = snprintf(name, sizeof(name), "a%u", a);
		/* a plan change: "q..." for a moment, then back */
		snprintf(plan, sizeof(plan), "q%u", round);
		sl_acx_put_account(x, name, (size_t)n, plan, round % 2, NULL, 0);
		snprintf(plan, sizeof(plan), "p%s", name);
		sl_acx_put_account(x, name, (size_t)n, plan, false, NULL, 0);
		for (unsigned i = a; i < NKEYS; i += NKEYS / 8) {
			sl_acx_del_key(x, shas[i]);
			sl_acx_put_key(x, shas[i], name, (size_t)n, INT64_MAX);
		}
		/* growth: extra keys make the table rebuild now and then */
		int m = snprintf(name, sizeof(name), "a%u", 0u);
		sl_acx_put_key(x, shas[NKEYS + round % (NKEYS * 3)], name, (size_t)m, INT64_MAX);
		sl_acx_reclaim(x);
	}
	atomic_store(&stop, 1);
	for (int r = 0; r < READERS; r++) {
		void *rv;
		pthread_join(t[r], &rv);
		assert_int_equal((uintptr_t)rv, 0); /* 1: a torn record */
		assert_true(atomic_load(&hits[r]) >= 100);
	}
	sl_acx_reclaim(x);
	assert_int_equal(x->nretired, 0);
	sl_acx_destroy(x);
	free(x);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(readers_see_whole_records_while_the_writer_churns),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
