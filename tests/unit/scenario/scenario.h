/* Scenario harness: a real compiled policy (sl_policy_load), the real memory
 * store, and the evaluation pipeline a front end runs — sl_eval_begin ->
 * sl_store_submit -> sl_eval_finish -> sl_render_headers/body — driven with
 * an injected clock, so each seed's published numbers can be checked end
 * to end without a socket or a sleep. Header-only; one include per test. */
#ifndef SLUICE_TEST_SCENARIO_H
#define SLUICE_TEST_SCENARIO_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sluice/error.h>
#include "policy/policy.h"
#include "store/store.h"

#define SEC SL_NS_PER_SEC
#define MS  (SL_NS_PER_SEC / 1000)

struct scn {
	struct sl_policy *p;
	struct sl_store *store;
	struct sl_eval ev;
	struct sl_eval lease; /* rebuilds an earlier request's checks to release them */
	int status;
	int64_t delay;   /* ns */
	char hdrs[4096]; /* "Name: value\n" per header */
	char body[2048];
	long body_len;
	const char *ctype;
	unsigned done_calls;
};

/* A request: method, path?query, client ip, API key header (or NULL). */
struct scn_req {
	const char *method, *target, *ip, *key;
	const char *account, *plan; /* /v1/decide style; NULL: not given */
	uint64_t cost;
};

#define REQ(m, t, addr, k)                                                                         \
	((struct scn_req){.method = (m), .target = (t), .ip = (addr), .key = (k)})

static void scn_done(struct sl_batch *b)
{
	((struct scn *)b->data)->done_calls++;
}

/* Load path (a file under $SLUICE_SRC when relative) and create a store. */
static inline struct scn *scn_open(const char *path)
{
	struct scn *s = calloc(1, sizeof(*s));
	struct sl_diag diag = {0};
	char full[1024];
	const char *src = getenv("SLUICE_SRC");

	if (path[0] != '/' && src != NULL)
		snprintf(full, sizeof(full), "%s/%s", src, path);
	else
		snprintf(full, sizeof(full), "%s", path);
	if (sl_policy_load(full, &s->p, &diag) != 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msg[i]);
		free(s);
		return NULL;
	}
	if (sl_memory_store_create(&s->store, 64ULL << 20, 42) != 0) {
		sl_policy_unref(s->p);
		free(s);
		return NULL;
	}
	s->ev.batch.done = scn_done;
	s->ev.batch.data = s;
	s->lease.batch.done = scn_done;
	s->lease.batch.data = s;
	return s;
}

/* Load a config given as YAML text (written to a temporary file). */
static inline struct scn *scn_open_yaml(const char *yaml)
{
	char path[] = "/tmp/sluice-scenario-XXXXXX";
	int fd = mkstemp(path);
	struct scn *s;

	if (fd < 0)
		return NULL;
	if (write(fd, yaml, strlen(yaml)) != (ssize_t)strlen(yaml)) {
		close(fd);
		unlink(path);
		return NULL;
	}
	close(fd);
	s = scn_open(path);
	unlink(path);
	return s;
}

static inline void scn_close(struct scn *s)
{
	if (s == NULL)
		return;
	s->store->ops->destroy(s->store);
	sl_policy_unref(s->p);
	free(s);
}

static void scn_collect(void *arg, struct sl_str name, struct sl_str value)
{
	struct scn *s = arg;
	size_t n = strlen(s->hdrs);

	snprintf(s->hdrs + n, sizeof(s->hdrs) - n, "%.*s: %.*s\n", (int)name.len, name.p,
	         (int)value.len, value.p);
}

/* Run one request at `now` (ns) through the whole pipeline. Returns the
 * status; headers, body and delay are kept in s. */
static inline void scn_request(struct sl_request *req, struct sl_header *h, const struct scn_req *r)
{
	const char *q = strchr(r->target, '?');
	unsigned nh = 0;

	memset(req, 0, sizeof(*req));
	req->method = (struct sl_str){r->method, strlen(r->method)};
	req->path = (struct sl_str){r->target, q ? (size_t)(q - r->target) : strlen(r->target)};
	if (q)
		req->query = (struct sl_str){q + 1, strlen(q + 1)};
	req->host = (struct sl_str){"api.example.com", 15};
	if (r->key)
		h[nh++] = (struct sl_header){{"X-Api-Key", 9}, {r->key, strlen(r->key)}};
	req->headers = h;
	req->nheaders = nh;
	req->ip = (struct sl_str){r->ip, r->ip ? strlen(r->ip) : 0};
	if (r->account)
		req->account = (struct sl_str){r->account, strlen(r->account)};
	if (r->plan)
		req->plan = (struct sl_str){r->plan, strlen(r->plan)};
	req->cost = r->cost;
}

/* The response of an earlier allowed request r ended: give back its
 * concurrency slots (rebuilt from r, as the key bytes are a function of
 * the request). Returns the number of slots released. */
static inline size_t scn_end(struct scn *s, int64_t now, const struct scn_req *r)
{
	struct sl_header h[4];
	struct sl_request req;
	size_t n;

	scn_request(&req, h, r);
	if (sl_eval_begin(&s->lease, s->p, &req, now) != 0)
		return 0;
	n = sl_eval_release(&s->lease);
	if (n > 0)
		sl_store_submit(s->store, &s->lease.batch);
	return n;
}

static inline int scn_run(struct scn *s, int64_t now, const struct scn_req *r)
{
	struct sl_header h[4];
	struct sl_request req;

	scn_request(&req, h, r);
	s->hdrs[0] = '\0';
	s->body_len = 0;
	s->ctype = NULL;
	if (sl_eval_begin(&s->ev, s->p, &req, now) != 0)
		return -1;
	if (s->ev.batch.n > 0) {
		unsigned before = s->done_calls;

		if (sl_store_submit(s->store, &s->ev.batch) != 0 || s->done_calls != before + 1)
			return -1;
	}
	s->status = sl_eval_finish(&s->ev);
	s->delay = s->ev.decision.delay;
	sl_render_headers(&s->ev, scn_collect, s);
	s->body_len = sl_render_body(&s->ev, s->body, sizeof(s->body) - 1, &s->ctype);
	if (s->body_len >= 0)
		s->body[s->body_len] = '\0';
	return s->status;
}

/* Release the concurrency slots of the last request (its response ended). */
static inline size_t scn_release(struct scn *s, int64_t now)
{
	size_t n = sl_eval_release(&s->ev);

	if (n > 0) {
		s->ev.batch.now = now;
		sl_store_submit(s->store, &s->ev.batch);
	}
	return n;
}

/* Value of header name in the last response, or NULL (static buffer). */
static inline const char *scn_hdr(struct scn *s, const char *name)
{
	static char val[512];
	size_t nl = strlen(name);

	for (const char *l = s->hdrs; *l;) {
		const char *eol = strchr(l, '\n');

		if (strncasecmp(l, name, nl) == 0 && l[nl] == ':' && l[nl + 1] == ' ') {
			size_t vl = (size_t)(eol - l) - nl - 2;

			memcpy(val, l + nl + 2, vl);
			val[vl] = '\0';
			return val;
		}
		l = eol + 1;
	}
	return NULL;
}

static inline long scn_hdr_num(struct scn *s, const char *name)
{
	const char *v = scn_hdr(s, name);

	return v ? strtol(v, NULL, 10) : -1;
}

/* Remaining units of the check from limit `name` in the last decision, or
 * -1 when that limit did not apply. */
static inline long long scn_remaining(struct scn *s, const char *name)
{
	for (size_t i = 0; i < s->ev.nchecks; i++)
		if (strcmp(s->ev.checks[i].name, name) == 0)
			return (long long)s->ev.checks[i].res.remaining;
	return -1;
}

/* Run the same request n times at `now`; returns how many got `status`. */
static inline unsigned scn_repeat(struct scn *s, int64_t now, const struct scn_req *r, unsigned n,
                                  int status)
{
	unsigned k = 0;

	for (unsigned i = 0; i < n; i++)
		k += scn_run(s, now, r) == status;
	return k;
}

#endif
