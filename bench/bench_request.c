/* Request-path micro-benchmark: one request head through the HTTP parser
 * (sl_http_parse), the descriptor view and sl_eval_begin (canonical path
 * and host, identity, route match, key bytes) under a small policy, with no
 * store and no sockets: the part of a decision that request normalisation
 * adds to. Prints "NAME VALUE" lines, ns per request, each the median of
 * RUNS timed runs; with ITERS=n in the environment it instead runs n
 * iterations of one case, CASE=canonical (default) or rewrite, for
 * callgrind instruction counts.
 *
 * Cases: a request that is already canonical (the common one), and one
 * whose path and Host must be rewritten. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include "http/http.h"
#include "policy/policy.h"

#define RUNS   5
#define RUN_NS (300LL * 1000 * 1000) /* ns: each timed run lasts at least this */
#define CHUNK  1024                  /* requests between clock reads */

static const char policy_yaml[] =
        "identify:\n"
        "  ip: { trusted_proxies: [\"10.0.0.0/8\"] }\n"
        "  accounts:\n"
        "    - { account: acme, plan: pro, keys: [\"sk_acme\"] }\n"
        "plans: { pro: { title: Pro } }\n"
        "limits:\n"
        "  - { name: ip, key: ip, rate: 300/min }\n"
        "  - { name: key, key: key, rate: 100/min }\n"
        "  - { name: tier, key: account, rate: { pro: 1000/min } }\n"
        "routes:\n"
        "  - { name: login, match: { method: POST, path: /auth/login } }\n"
        "  - { name: search, match: { path: /v1/search, query: { mode: deep } } }\n"
        "  - name: messages\n"
        "    match: { path: \"/v1/messages/*\" }\n"
        "    limits: [ { name: per_path, key: [account, path, host], rate: 60/min } ]\n";

static const char canonical_head[] = "GET /v1/messages/abc123?page=2 HTTP/1.1\r\n"
                                     "Host: api.example.com\r\n"
                                     "User-Agent: bench/1.0\r\n"
                                     "Accept: */*\r\n"
                                     "Accept-Encoding: gzip\r\n"
                                     "X-Api-Key: sk_acme\r\n"
                                     "\r\n";

static const char rewrite_head[] = "GET /v1//messages/./%61bc123/?page=2 HTTP/1.1\r\n"
                                   "Host: API.Example.com.:80\r\n"
                                   "User-Agent: bench/1.0\r\n"
                                   "Accept: */*\r\n"
                                   "Accept-Encoding: gzip\r\n"
                                   "X-Api-Key: sk_acme\r\n"
                                   "\r\n";

static struct sl_policy *policy;
static struct sl_http_parser hp;
static struct sl_eval ev;
static struct sockaddr_in peer;

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* One request: parse the head, view it, begin its evaluation. */
static void one(const char *head, size_t len)
{
	struct sl_request req;
	size_t used;

	sl_http_reset(&hp);
	if (sl_http_parse(&hp, head, len, &used) != SL_HTTP_HEAD)
		abort();
	sl_http_request_view(&hp.msg, (const struct sockaddr *)&peer, &req);
	if (sl_eval_begin(&ev, policy, &req, 1700000000LL * 1000000000LL) != 0 || ev.nchecks < 3)
		abort();
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double ns_per_request(const char *head)
{
	size_t len = strlen(head);
	double r[RUNS];

	for (int run = 0; run < RUNS; run++) {
		int64_t t0 = now_ns(), t;
		uint64_t n = 0;

		do {
			for (int i = 0; i < CHUNK; i++)
				one(head, len);
			n += CHUNK;
			t = now_ns() - t0;
		} while (t < RUN_NS);
		r[run] = (double)t / (double)n;
	}
	qsort(r, RUNS, sizeof(r[0]), cmp_double);
	return r[RUNS / 2];
}

int main(void)
{
	char path[] = "/tmp/sluice-bench-request-XXXXXX";
	struct sl_diag diag;
	const char *iters = getenv("ITERS");
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, policy_yaml, sizeof(policy_yaml) - 1) < 0)
		return 1;
	close(fd);
	if (sl_policy_load(path, &policy, &diag) != 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msg[i]);
		unlink(path);
		return 1;
	}
	unlink(path);
	peer.sin_family = AF_INET;
	peer.sin_addr.s_addr = htonl(0xcb007107); /* 203.0.113.7 */
	sl_http_init(&hp, false, 16384, 0);
	if (iters != NULL) {
		long n = strtol(iters, NULL, 10);
		const char *c = getenv("CASE");
		const char *head = c && strcmp(c, "rewrite") == 0 ? rewrite_head : canonical_head;

		for (long i = 0; i < n; i++)
			one(head, strlen(head));
		return 0;
	}
	printf("request_canonical_ns %.1f\n", ns_per_request(canonical_head));
	printf("request_rewrite_ns %.1f\n", ns_per_request(rewrite_head));
	sl_policy_unref(policy);
	return 0;
}
