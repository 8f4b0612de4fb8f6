/* libFuzzer target: arbitrary bytes as a config file through the loader
 * (sl_policy_load_mem: the same walk as sl_policy_load, without the file),
 * and every policy that loads through a few decisions with the memory
 * store and the rendering of their headers and bodies, so what the loader
 * accepts is also what the evaluator can run.
 *
 * Findings: sanitizer reports and leaks (every error path must free what it
 * built), a message not starting "fuzz.yaml:LINE:COL: ", a refused config
 * without an error message, an accepted one with anything but warnings. One input in seven loads
 * without a diag (errors are then only counted). The clock moves one day per input. Corpus:
 * tests/fuzz/corpus/config/ (the examples/ configs and error cases). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <sluice/error.h>
#include "http/http.h"
#include "policy/policy.h"
#include "store/store.h"

#define NAME "fuzz.yaml"

static struct sl_store *store;
static struct sl_diag diag;
static struct sl_eval ev;
static int64_t now = 1700000000LL * 1000000000LL; /* ns */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (sl_memory_store_create(&store, 1 << 20, 42) != 0)
		abort();
	return 0;
}

static void emit(void *arg, struct sl_str name, struct sl_str value)
{
	sl_http_out_emit(arg, name, value);
}

static void batch_done(struct sl_batch *b)
{
	(void)b;
}

/* "fuzz.yaml:LINE:COL: " with LINE, COL >= 1. */
static bool positioned(const char *m)
{
	const char *p = m + strlen(NAME);
	if (strncmp(m, NAME ":", strlen(NAME) + 1) != 0)
		return false;
	for (int field = 0; field < 2; field++) {
		const char *d = ++p;
		while (*p >= '0' && *p <= '9')
			p++;
		if (p == d || *d == '0' || *p != ':')
			return false;
	}
	return p[1] == ' ';
}

static void decide(const struct sl_policy *p, const struct sl_request *req)
{
	char out[8192], body[4096];
	struct sl_http_out o;
	const char *ctype;

	if (sl_eval_begin(&ev, p, req, now) < 0)
		return;
	ev.batch.done = batch_done;
	ev.batch.status = SL_OK;
	ev.batch.time = now;
	ev.batch.now = now;
	if (ev.batch.n && sl_store_submit(store, &ev.batch) < 0)
		return;
	sl_eval_finish(&ev);
	sl_http_out_init(&o, out, sizeof(out));
	sl_http_out_status(&o, ev.decision.status, NULL);
	sl_render_headers(&ev, emit, &o);
	sl_render_body(&ev, body, sizeof(body), &ctype);
	if (sl_eval_release(&ev) && sl_store_submit(store, &ev.batch) < 0)
		abort();
}

/* A few requests the examples' limits and routes see. */
static void traffic(const struct sl_policy *p)
{
	static const struct sl_header hdrs[] = {
	        {{"X-Api-Key", 9}, {"sk_live_abc", 11}},
	        {{"Authorization", 13}, {"Bearer sk_test_1", 16}},
	        {{"X-Client", 8}, {"c1", 2}},
	        {{"X-Forwarded-For", 15}, {"203.0.113.9", 11}},
	};
	struct sockaddr_in6 peer = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	struct sl_request req;

	memset(&req, 0, sizeof(req));
	req.method = (struct sl_str){"GET", 3};
	req.path = (struct sl_str){"/v1/messages/1", 14};
	req.query = (struct sl_str){"key=sk_q&page=2", 15};
	req.host = (struct sl_str){"api.example", 11};
	req.headers = hdrs;
	req.nheaders = sizeof(hdrs) / sizeof(hdrs[0]);
	req.peer = (const struct sockaddr *)&peer;
	for (int i = 0; i < 3; i++)
		decide(p, &req);
	req.method = (struct sl_str){"POST", 4};
	req.path = (struct sl_str){"/oauth/token", 12};
	req.nheaders = 0;
	decide(p, &req);
	/* /v1/decide style: descriptors given, the plan looked up */
	memset(&req, 0, sizeof(req));
	req.ip = (struct sl_str){"192.0.2.1", 9};
	req.account = (struct sl_str){"acme", 4};
	req.path = (struct sl_str){"/", 1};
	req.cost = 3;
	decide(p, &req);
	if (p->naccounts > 0 && p->accounts[0].name) {
		req.account = (struct sl_str){p->accounts[0].name, strlen(p->accounts[0].name)};
		decide(p, &req);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sl_diag *d = size % 7 == 0 ? NULL : &diag;
	struct sl_policy *p = NULL;
	int rc;

	now += 86400LL * 1000000000LL;
	if (now > 1700000000LL * 1000000000LL + 50000 * 86400LL * 1000000000LL)
		now = 1700000000LL * 1000000000LL; /* ~137 years on: start over */
	rc = sl_policy_load_mem(NAME, (const char *)data, size, &p, d);
	if (d) {
		for (size_t i = 0; i < d->n; i++) {
			if (!positioned(d->msg[i]) ||
			    memchr(d->msg[i], '\0', sizeof(d->msg[i])) == NULL) {
				fprintf(stderr, "fuzz_config: bad message: %.256s\n", d->msg[i]);
				abort();
			}
		}
		size_t warns = 0;
		for (size_t i = 0; i < d->n; i++)
			warns += strstr(d->msg[i], ": warning: ") != NULL;
		if (rc != 0 && d->n <= d->nwarn) {
			fprintf(stderr, "fuzz_config: refused without an error message\n");
			abort();
		}
		if (warns < d->nwarn || (rc == 0 && warns != d->n) ||
		    (rc == 0 && d->nwarn != d->n)) {
			fprintf(stderr,
			        "fuzz_config: accepted with an error, or warnings miscounted\n");
			abort();
		}
	}
	if (rc != 0) {
		if (p != NULL || rc != SL_ECONFIG)
			abort();
		return 0;
	}
	traffic(p);
	sl_policy_unref(p);
	return 0;
}
