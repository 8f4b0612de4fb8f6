/* libFuzzer target: arbitrary bytes as what a Redis server sends back,
 * turned into redisReply trees by hiredis's own reader (so exactly the
 * trees the store sees), then every reply through the code that interprets
 * one: sl_redis_script_result (the decision script's reply, as on_result in
 * redis.c uses it, then on through sl_eval_finish and the rendering of
 * headers and body, the way a front end goes on with the batch),
 * sl_redis_slot_map (CLUSTER SLOTS) and sl_redis_parse_redirect
 * (MOVED/ASK errors). Findings: sanitizer reports, hangs, a denied index
 * outside the call, a slot map that names unknown nodes, a redirect with a
 * slot or port out of range.
 *
 * hiredis 0.14 (Debian's) has no bound on the element count of an array
 * header: "*300000000" makes it calloc 2.4 GB before any element arrives.
 * That is the library's (and a trusted server's) business, not the code
 * under test, so here arrays of more than MAX_ELEMENTS are refused the way
 * an allocation failure would be.
 *
 * Input: byte 0 picks how many of the policy's checks the script call
 * covers (the reply must be one string of little-endian int64 fields: 2,
 * then 4 per check, 5 for a quota); byte 1 the size of
 * the pieces the rest is fed to the reader in (1..32 bytes). Corpus:
 * tests/fuzz/corpus/redis_reply/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hiredis/hiredis.h>
#include <hiredis/read.h>
#include <sluice/error.h>
#include "http/http.h"
#include "policy/policy.h"
#include "store/redis_int.h"

/* One limit of each stateful algorithm, an unlimited one and an
 * entitlement (deny is decided without Redis but sits in the same batch),
 * every template variable, the IETF preset. */
static const char policy_yaml[] =
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
        "identify:\n"
        "  key: { from: [\"header:X-Api-Key\"], required: false }\n"
        "limits:\n"
        "  - { name: smooth, key: ip, rate: 60/min, burst: 3, queue: 2 }\n"
        "  - { name: hourly, key: ip, quota: 100/hour, message: \"{limit}/hour on {window}\" }\n"
        "  - { name: window, key: ip, sliding: 10/min }\n"
        "  - { name: inflight, key: ip, concurrency: 2 }\n"
        "  - { name: free, key: ip, rate: unlimited }\n"
        "responses:\n"
        "  preset: ietf\n"
        "  headers:\n"
        "    X-RateLimit-Limit: \"{limit}\"\n"
        "    X-RateLimit-Remaining: \"{remaining}\"\n"
        "    X-RateLimit-Reset: \"{reset}\"\n"
        "    X-Reset-After: \"{reset_after} {window} {window_seconds}\"\n"
        "    X-Hourly: \"{limits.hourly.remaining} {limits.hourly.reset}\"\n"
        "  rejected:\n"
        "    headers: { Retry-After: \"{retry_after}\", X-Denied-By: \"{denied_by}\" }\n"
        "    body: '{\"by\":\"{denied_by}\",\"retry\":{retry_after},\"m\":\"{message}\"}'\n";

#define NOW0      (1700000000LL * SL_NS_PER_SEC)
#define MAX_NODES 64 /* as redis.c keeps */

#define MAX_ELEMENTS 65536 /* elements of one array (CLUSTER SLOTS has <= 16384) */

static struct sl_policy *policy;
static redisReplyObjectFunctions fns; /* hiredis's own, with createArray bounded */
static void *(*create_array)(const redisReadTask *, int);
static struct sl_eval ev;

/* The node table of one CLUSTER SLOTS round (node_find_add in redis.c). */
static struct {
	char host[MAX_NODES][SL_REDIS_HOST_MAX];
	int port[MAX_NODES];
	unsigned n;
} nodes;

static unsigned node_add(void *arg, const char *host, int port)
{
	(void)arg;
	for (unsigned i = 0; i < nodes.n; i++)
		if (nodes.port[i] == port && strcmp(nodes.host[i], host) == 0)
			return i;
	if (nodes.n == MAX_NODES || strlen(host) >= SL_REDIS_HOST_MAX)
		return SL_REDIS_NO_NODE;
	snprintf(nodes.host[nodes.n], SL_REDIS_HOST_MAX, "%s", host);
	nodes.port[nodes.n] = port;
	return nodes.n++;
}

static void *bounded_array(const redisReadTask *t, int elements)
{
	return elements > MAX_ELEMENTS ? NULL : create_array(t, elements);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	static struct sl_diag diag;

	(void)argc;
	(void)argv;
	if (sl_policy_load_mem("fuzz.yaml", policy_yaml, sizeof(policy_yaml) - 1, &policy, &diag) !=
	    0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "fuzz_redis_reply: %s\n", diag.msg[i]);
		abort();
	}
	return 0;
}

static void emit(void *arg, struct sl_str name, struct sl_str value)
{
	sl_http_out_emit(arg, name, value);
}

/* The script's reply to a call over the first m checks of a decision. */
static void script_reply(const redisReply *r, size_t m)
{
	struct sl_request req = {.ip = {"192.0.2.7", 9}};
	struct sl_redis_result res;
	struct sl_http_out o;
	char out[8192], body[2048];
	const char *ctype;

	if (sl_eval_begin(&ev, policy, &req, NOW0) < 0 || ev.batch.n == 0)
		abort();
	if (m > ev.batch.n)
		m = ev.batch.n;
	ev.nchecks = ev.batch.n = m;
	if (sl_redis_script_result(r, ev.checks, m, &res) < 0)
		return;
	/* on_result and finish() in redis.c, for a batch of one run */
	if (res.status == 2) {
		if (res.denied >= m) {
			fprintf(stderr, "fuzz_redis_reply: denied %zu of %zu checks\n", res.denied,
			        m);
			abort();
		}
		ev.batch.status = SL_DENY;
		ev.batch.denied = res.denied;
		ev.batch.delay = 0;
	} else {
		ev.batch.status = res.delay > 0 ? SL_DELAY : SL_OK;
		ev.batch.denied = m;
		ev.batch.delay = res.delay;
	}
	ev.batch.time = res.time ? res.time : ev.batch.now;
	sl_eval_finish(&ev);
	sl_http_out_init(&o, out, sizeof(out));
	sl_http_out_status(&o, ev.decision.status, NULL);
	sl_render_headers(&ev, emit, &o);
	sl_render_body(&ev, body, sizeof(body), &ctype);
	sl_eval_release(&ev);
}

static void slots_reply(const redisReply *r)
{
	static uint8_t map[SL_REDIS_SLOTS];
	unsigned covered, seen = 0;

	nodes.n = 0;
	node_add(NULL, "127.0.0.1", 7000); /* the seed asked */
	covered = sl_redis_slot_map(r, nodes.host[0], node_add, NULL, map);
	for (unsigned s = 0; s < SL_REDIS_SLOTS; s++) {
		if (map[s] == SL_REDIS_NO_NODE)
			continue;
		seen++;
		if (map[s] >= nodes.n || nodes.port[map[s]] < 1 || nodes.port[map[s]] > 65535) {
			fprintf(stderr, "fuzz_redis_reply: slot %u -> node %u (port %d)\n", s,
			        map[s], map[s] < nodes.n ? nodes.port[map[s]] : -1);
			abort();
		}
	}
	if (seen != covered)
		abort();
}

static void redirect_reply(const redisReply *r)
{
	char host[SL_REDIS_HOST_MAX];
	unsigned slot = 0;
	int port = 0, kind;

	if (r->type != REDIS_REPLY_ERROR && r->type != REDIS_REPLY_STATUS &&
	    r->type != REDIS_REPLY_STRING)
		return;
	kind = sl_redis_parse_redirect(r->str, r->len, &slot, host, sizeof(host), &port);
	if (kind == 0)
		return;
	if ((kind != 1 && kind != 2) || slot >= SL_REDIS_SLOTS || port < 1 || port > 65535 ||
	    memchr(host, '\0', sizeof(host)) == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	redisReader *rd;
	size_t m, step, fed = 0;
	void *reply;

	if (size < 2)
		return 0;
	m = (size_t)data[0] % 6; /* 0..5: a call may cover no check at all */
	step = (size_t)data[1] % 32 + 1;
	data += 2;
	size -= 2;
	rd = redisReaderCreate();
	if (!rd)
		abort();
	if (!create_array) {
		fns = *rd->fn; /* the default functions the store's reader uses */
		create_array = fns.createArray;
		fns.createArray = bounded_array;
	}
	rd->fn = &fns;
	for (int replies = 0; replies < 16;) {
		if (redisReaderGetReply(rd, &reply) != REDIS_OK)
			break; /* a protocol error: the connection is dropped */
		if (!reply) {
			size_t n = size - fed < step ? size - fed : step;
			if (n == 0)
				break;
			if (redisReaderFeed(rd, (const char *)data + fed, n) != REDIS_OK)
				break;
			fed += n;
			continue;
		}
		script_reply(reply, m);
		slots_reply(reply);
		redirect_reply(reply);
		freeReplyObject(reply);
		replies++;
	}
	redisReaderFree(rd);
	return 0;
}
