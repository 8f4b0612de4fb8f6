/* libFuzzer target: arbitrary bytes as what a client sends on one
 * connection, through the HTTP parser the way the server drives it (bytes
 * arrive in pieces, the buffer is compacted between messages and in the
 * middle of a head, views are rebased), then every complete head through
 * descriptor extraction (sl_http_request_view, the forward-auth rewrite,
 * sl_eval_begin) and, with the memory store, a full decision and its
 * rendered headers and body. The same bytes also go through the response
 * parser. Findings: sanitizer reports, and views that leave the buffer.
 *
 * The first input byte picks the read size (1..64 bytes per read), so both
 * byte-at-a-time heads and whole pipelines are covered. The clock moves one
 * day per input so counters left by earlier inputs do not matter.
 *
 * Build: CC=clang cmake -S . -B build-fuzz -DSLUICE_FUZZ=ON ...; corpus:
 * tests/fuzz/corpus/http_request/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sluice/error.h>
#include "http/http.h"
#include "policy/policy.h"
#include "store/store.h"

#define BUF 4096 /* bytes: the "connection" read buffer */

static const char policy_yaml[] =
        "listeners:\n"
        "  - { name: gateway, listen: \"127.0.0.1:18080\", mode: proxy, upstream: static }\n"
        "identify:\n"
        "  ip: { trusted_proxies: [\"127.0.0.0/8\", \"::1/128\"] }\n"
        "  key: { from: [\"header:X-Api-Key\", \"bearer\", \"query:key\"], required: false }\n"
        "  accounts:\n"
        "    - { account: acme, plan: pro, keys: [\"sk_acme\"] }\n"
        "    - { account: tiny, plan: free, keys: [\"sk_tiny\"] }\n"
        "plans: { free: { title: Free }, pro: { title: Pro } }\n"
        "limits:\n"
        "  - { name: ip, key: ip, rate: 5/min }\n"
        "  - { name: smooth, key: [account, route], rate: 60/min, burst: 3, queue: 2 }\n"
        "  - { name: hourly, key: account, quota: { free: 2/hour, pro: 100/hour } }\n"
        "  - { name: hdr, key: [\"header:X-Client\", \"query:page\", host, path], sliding: 3/min "
        "}\n"
        "  - { name: inflight, key: key, concurrency: { free: 1, pro: 2 } }\n"
        "routes:\n"
        "  - name: login\n"
        "    match: { method: POST, path: /login }\n"
        "    limits: [ { name: login, key: ip, rate: 2/min } ]\n"
        "  - name: api\n"
        "    match: { path: \"/v1/*\" }\n"
        "    cost: 2\n"
        "responses:\n"
        "  preset: ietf\n"
        "  headers: { X-RateLimit-Limit: \"{limit}\", X-Who: \"{account} {plan_title}\" }\n";

static struct sl_policy *policy;
static struct sl_store *store;
static int64_t now = 1700000000LL * 1000000000LL;

static void setup(void)
{
	char path[] = "/tmp/sluice-fuzz-http-XXXXXX";
	struct sl_diag *d = calloc(1, sizeof(*d));
	int fd = mkstemp(path);
	if (fd < 0 || !d || write(fd, policy_yaml, sizeof(policy_yaml) - 1) < 0)
		abort();
	close(fd);
	if (sl_policy_load(path, &policy, d) < 0) {
		for (size_t i = 0; i < d->n; i++)
			fprintf(stderr, "%s\n", d->msg[i]);
		abort();
	}
	unlink(path);
	free(d);
	if (sl_memory_store_create(&store, 1 << 20, 42) < 0)
		abort();
}

static void emit(void *arg, struct sl_str name, struct sl_str value)
{
	sl_http_out_emit(arg, name, value);
}

static void batch_done(struct sl_batch *b)
{
}

static void inside(const struct sl_str *v, const char *lo, const char *hi)
{
	/* method points at llhttp's static names; everything else into buf */
	if (v->len && (v->p < lo || v->p + v->len > hi))
		abort();
}

static void decide(const struct sl_http_msg *m, const char *lo, const char *hi, int variant)
{
	static struct sl_eval ev;
	struct sl_request req;
	struct sockaddr_in6 peer = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	char out[8192], body[2048];
	struct sl_http_out o;
	const char *ctype;

	inside(&m->url, lo, hi);
	if (!(m->path.len == 1 && m->path.p[0] == '/')) /* "/" of an absolute url without one */
		inside(&m->path, lo, hi);
	inside(&m->query, lo, hi);
	for (size_t i = 0; i < m->nheaders; i++) {
		inside(&m->headers[i].name, lo, hi);
		inside(&m->headers[i].value, lo, hi);
	}
	sl_http_request_view(m, (const struct sockaddr *)&peer, &req);
	if (variant & 1)
		sl_http_forward_auth(m, &req);
	if (sl_eval_begin(&ev, policy, &req, now) < 0)
		return;
	/* the memory store completes inline, before submit returns */
	ev.batch.done = batch_done;
	ev.batch.status = SL_OK;
	ev.batch.time = now;
	if (ev.batch.n && sl_store_submit(store, &ev.batch) < 0)
		return;
	sl_eval_finish(&ev);
	sl_http_out_init(&o, out, sizeof(out));
	sl_http_out_status(&o, ev.decision.status, NULL);
	sl_render_headers(&ev, emit, &o);
	sl_render_body(&ev, body, sizeof(body), &ctype);
	if (sl_eval_release(&ev) && sl_store_submit(store, &ev.batch) < 0)
		return;
}

/* Drive one parser over data the way the server does. */
static void run(const uint8_t *data, size_t size, size_t step, bool response)
{
	static char buf[BUF];
	struct sl_http_parser hp;
	size_t rlen = 0, rpos = 0, head_start = 0, fed = 0;
	int variant = 0;

	sl_http_init(&hp, response, 2048, 1 << 16);
	while (true) {
		/* compaction: keep a head in progress, drop what was parsed */
		size_t keep = hp.state == SL_HTTP_IN_HEAD ? head_start : rpos;
		if (keep) {
			memmove(buf, buf + keep, rlen - keep);
			rlen -= keep;
			rpos -= keep;
			head_start -= head_start >= keep ? keep : head_start;
			if (hp.state == SL_HTTP_IN_HEAD)
				sl_http_rebase(&hp, keep);
		}
		if (fed < size && rlen < BUF) {
			size_t n = size - fed;
			if (n > step)
				n = step;
			if (n > BUF - rlen)
				n = BUF - rlen;
			memcpy(buf + rlen, data + fed, n);
			rlen += n;
			fed += n;
		} else if (rpos == rlen && hp.state != SL_HTTP_IN_BODY) {
			break;
		}
		for (int guard = 0; guard < 64; guard++) {
			size_t used = 0;
			if (hp.state == SL_HTTP_IDLE)
				head_start = rpos;
			int ev = sl_http_parse(&hp, buf + rpos, rlen - rpos, &used);
			if (used > rlen - rpos)
				abort();
			rpos += used;
			if (ev == SL_HTTP_ERR) {
				if (hp.error_status < 400 || hp.error_status > 599)
					abort();
				return;
			}
			if (ev == SL_HTTP_HEAD && !response)
				decide(&hp.msg, buf, buf + rlen, variant++);
			if (ev == SL_HTTP_NEED && (used == 0 || rpos == rlen))
				break;
		}
		if (fed == size && rpos == rlen) {
			sl_http_finish(&hp);
			break;
		}
		if (rlen == BUF && hp.state == SL_HTTP_IN_HEAD && head_start == 0)
			return; /* the server answers 431 here */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t step;
	if (!policy)
		setup();
	if (size == 0)
		return 0;
	step = (size_t)(data[0] % 64) + 1;
	now += 86400LL * 1000000000LL;
	if (now > 1700000000LL * 1000000000LL + 50000 * 86400LL * 1000000000LL)
		now = 1700000000LL * 1000000000LL; /* ~137 years on: start over */
	run(data + 1, size - 1, step, false);
	run(data + 1, size - 1, step, true);
	return 0;
}
