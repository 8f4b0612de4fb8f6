/* libFuzzer target: arbitrary bytes as one entry of the accounts journal
 * (accounts.store: redis), which every node reads from Redis, where any
 * client that reaches it can write (src/accounts/journal.c). The parser
 * must never crash or overflow, and what it accepts must be a change the
 * accounts thread can run: a known op, fields that fit with their NUL, a
 * time far from overflow, a digest only with its id and prefix. Accepted
 * input is written back as a node writes it (sl_acj_record) and parsed
 * again: the same request.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=Debug
 *        -DSLUICE_FUZZ=ON -DSLUICE_SANITIZE="address;undefined"
 *        cmake --build build-fuzz --target fuzz_journal_record
 * Run:   ./scripts/fuzz-run.sh build-fuzz 30 (corpus: corpus/journal_record/) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cjson/cJSON.h>
#include "accounts/service-int.h"

/* The same JSON text: cJSON_Compare finds a duplicated member's first
 * copy on the other side, so it calls equal objects with one different. */
static bool same_body(const cJSON *a, const cJSON *b)
{
	char *x, *y;
	bool same;

	if (a == NULL || b == NULL)
		return a == b;
	x = cJSON_PrintUnformatted(a);
	y = cJSON_PrintUnformatted(b);
	same = x && y && strcmp(x, y) == 0;
	free(x);
	free(y);
	return same;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_acc_req r, r2;
	char *text;

	if (sl_acj_parse_record((const char *)data, size, &r) != 0) {
		if (r.body != NULL || r.out != NULL)
			abort(); /* a refusal leaves nothing to free */
		return 0;
	}
	if (!r.replay || r.op < SL_ACC_CREATE || r.op > SL_ACC_KEY_REVOKE || r.now <= 0 ||
	    r.now >= (1LL << 62) || memchr(r.account, 0, sizeof(r.account)) == NULL ||
	    memchr(r.id, 0, sizeof(r.id)) == NULL ||
	    memchr(r.gen_id, 0, sizeof(r.gen_id)) == NULL ||
	    memchr(r.gen_prefix, 0, sizeof(r.gen_prefix)) == NULL)
		abort();
	text = sl_acj_record(&r); /* what a node writes */
	if (text == NULL || sl_acj_parse_record(text, strlen(text), &r2) != 0)
		abort();
	if (r2.op != r.op || r2.now != r.now || strcmp(r2.account, r.account) ||
	    strcmp(r2.id, r.id) || r2.has_gen != r.has_gen ||
	    (r.has_gen && (memcmp(r2.gen_sha, r.gen_sha, 32) || strcmp(r2.gen_id, r.gen_id) ||
	                   strcmp(r2.gen_prefix, r.gen_prefix))) ||
	    !same_body(r.body, r2.body))
		abort();
	free(text);
	sl_acc_req_clear(&r);
	sl_acc_req_clear(&r2);
	return 0;
}
