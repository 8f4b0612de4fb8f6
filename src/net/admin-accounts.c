/* The account admin API of DESIGN.md section 6: /v1/accounts[/{account}
 * [/keys]] and /v1/keys/{id}[/rotate]. This file routes and checks the
 * request's shape (method, path, query, JSON object); the operation itself
 * runs on the accounts thread (src/accounts/service.c), which validates
 * every field against the policy, writes the store and the index, and
 * renders the answer. It comes back to this worker's loop through the
 * admin's mailbox (an uv_async), so a worker never waits on the disk. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "accounts/accounts.h"
#include "net/admin-int.h"

struct job;

/* Answers of the accounts thread for one worker's loop. Freed when the
 * admin closed it and no job refers to it any more. */
struct sl_admin_mailbox {
	pthread_mutex_t mu;
	uv_async_t async;
	struct job *head;
	unsigned refs; /* the admin + jobs in flight */
	bool closed;
};

struct job {
	struct sl_acc_req r;
	struct sl_admin_call *c;
	struct sl_admin_mailbox *mb;
	struct job *next;
};

static void mb_unref_locked(struct sl_admin_mailbox *mb, bool *free_it)
{
	*free_it = --mb->refs == 0;
}

static void mb_free(struct sl_admin_mailbox *mb)
{
	pthread_mutex_destroy(&mb->mu);
	free(mb);
}

static void finish(struct job *j)
{
	struct sl_admin_call *c = j->c;

	if (j->r.status == 204 || j->r.out == NULL) {
		c->resp.status = j->r.status;
		c->resp.content_type = sl_admin_ct_json;
		c->resp.len = 0;
	} else {
		sl_admin_respond_owned(&c->resp, j->r.status, sl_admin_ct_json, j->r.out,
		                       j->r.outlen);
		j->r.out = NULL;
	}
	sl_policy_unref(j->r.policy);
	sl_acc_req_clear(&j->r);
	free(j);
	c->kind = K_NONE;
	c->done(c);
}

static void mb_async(uv_async_t *h)
{
	struct sl_admin_mailbox *mb = h->data;
	struct job *j;

	pthread_mutex_lock(&mb->mu);
	j = mb->head;
	mb->head = NULL;
	pthread_mutex_unlock(&mb->mu);
	while (j != NULL) {
		struct job *next = j->next;
		bool free_it;

		pthread_mutex_lock(&mb->mu);
		mb_unref_locked(mb, &free_it); /* never the last: the admin holds one */
		pthread_mutex_unlock(&mb->mu);
		finish(j);
		j = next;
	}
}

/* On the accounts thread: hand the answer to the call's loop. */
static void job_done(struct sl_acc_req *r)
{
	struct job *j = r->arg;
	struct sl_admin_mailbox *mb = j->mb;
	bool free_it = false;

	pthread_mutex_lock(&mb->mu);
	if (mb->closed) {
		/* the worker is gone: nobody waits for this answer */
		mb_unref_locked(mb, &free_it);
		pthread_mutex_unlock(&mb->mu);
		sl_policy_unref(j->r.policy);
		sl_acc_req_clear(&j->r);
		free(j);
		if (free_it)
			mb_free(mb);
		return;
	}
	j->next = mb->head;
	mb->head = j;
	uv_async_send(&mb->async);
	pthread_mutex_unlock(&mb->mu);
}

int sl_admin_accounts_init(struct sl_admin *a)
{
	struct sl_admin_mailbox *mb = calloc(1, sizeof(*mb));

	if (mb == NULL)
		return SL_ENOMEM;
	if (uv_async_init(a->loop, &mb->async, mb_async) != 0) {
		free(mb);
		return SL_EIO;
	}
	pthread_mutex_init(&mb->mu, NULL);
	mb->async.data = mb;
	mb->refs = 1;
	uv_unref((uv_handle_t *)&mb->async);
	a->mailbox = mb;
	return 0;
}

static void mb_closed(uv_handle_t *h)
{
	struct sl_admin_mailbox *mb = h->data;
	struct job *j, *next;
	bool free_it;

	pthread_mutex_lock(&mb->mu);
	/* answers that arrived after the last wake-up: nobody reads them */
	for (j = mb->head; j != NULL; j = next) {
		next = j->next;
		mb->refs--;
		sl_policy_unref(j->r.policy);
		sl_acc_req_clear(&j->r);
		free(j);
	}
	mb->head = NULL;
	mb_unref_locked(mb, &free_it);
	pthread_mutex_unlock(&mb->mu);
	if (free_it)
		mb_free(mb);
}

void sl_admin_accounts_close(struct sl_admin *a)
{
	struct sl_admin_mailbox *mb = a->mailbox;

	if (mb == NULL)
		return;
	a->mailbox = NULL;
	pthread_mutex_lock(&mb->mu);
	mb->closed = true;
	pthread_mutex_unlock(&mb->mu);
	uv_close((uv_handle_t *)&mb->async, mb_closed);
}

/* ---- routing ---- */

static bool is(struct sl_str s, const char *lit)
{
	size_t n = strlen(lit);
	return s.len == n && memcmp(s.p, lit, n) == 0;
}

static int method_not_allowed(struct sl_admin_call *c, const char *allow)
{
	sl_admin_add_extra(&c->resp, "Allow", allow);
	sl_admin_respond_error(&c->resp, 405, "method_not_allowed", allow);
	return 0;
}

/* The next path segment after *p (which points at '/'), copied into out
 * (cap bytes); false when it is empty or too long. */
static bool segment(const char **p, const char *end, char *out, size_t cap)
{
	const char *s = *p + 1, *e = s;

	while (e < end && *e != '/')
		e++;
	if (e == s || (size_t)(e - s) >= cap)
		return false;
	memcpy(out, s, (size_t)(e - s));
	out[e - s] = '\0';
	*p = e;
	return true;
}

static int hex(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

/* Query parameter name of q into out (cap bytes), %XX escapes decoded ('+'
 * stays '+': account names have no spaces but may have a '+'). -1 absent,
 * -2 too long or a NUL escape, else its length. */
static long query_value(struct sl_str q, const char *name, char *out, size_t cap)
{
	size_t nl = strlen(name), i = 0;

	while (i < q.len) {
		size_t j = i;
		while (j < q.len && q.p[j] != '&')
			j++;
		if (j - i > nl && memcmp(q.p + i, name, nl) == 0 && q.p[i + nl] == '=') {
			const char *v = q.p + i + nl + 1;
			size_t vl = j - i - nl - 1, o = 0;
			for (size_t k = 0; k < vl; k++) {
				char c = v[k];
				if (c == '%' && k + 2 < vl && hex(v[k + 1]) >= 0 &&
				    hex(v[k + 2]) >= 0) {
					c = (char)(hex(v[k + 1]) << 4 | hex(v[k + 2]));
					k += 2;
					if (c == '\0')
						return -2;
				}
				if (o + 1 >= cap)
					return -2;
				out[o++] = c;
			}
			out[o] = '\0';
			return (long)o;
		}
		i = j + 1;
	}
	return -1;
}

static void bad_query(struct sl_admin_call *c, const char *field, const char *msg)
{
	struct sl_buf w = {.p = c->resp.body, .cap = sizeof(c->resp.body)};

	sl_buf_str(&w, "{\"error\":\"invalid\",\"field\":");
	sl_admin_jw_cstr(&w, field);
	sl_buf_str(&w, ",\"message\":");
	sl_admin_jw_cstr(&w, msg);
	sl_buf_str(&w, "}");
	c->resp.status = 400;
	c->resp.content_type = sl_admin_ct_json;
	c->resp.len = w.len;
}

static int list_query(struct sl_admin_call *c, const struct sl_admin_req *req, struct job *j)
{
	char num[16];
	long n;

	j->r.limit = 100;
	n = query_value(req->query, "limit", num, sizeof(num));
	if (n >= 0) {
		char *end;
		long v = strtol(num, &end, 10);
		if (n == 0 || *end != '\0' || v < 1 || v > 1000) {
			bad_query(c, "limit", "limit is a page size from 1 to 1000");
			return -1;
		}
		j->r.limit = (unsigned)v;
	} else if (n == -2) {
		bad_query(c, "limit", "limit is a page size from 1 to 1000");
		return -1;
	}
	if (query_value(req->query, "plan", j->r.plan, sizeof(j->r.plan)) == -2) {
		bad_query(c, "plan", "plan is too long");
		return -1;
	}
	if (query_value(req->query, "after", j->r.after, sizeof(j->r.after)) == -2) {
		bad_query(c, "after", "after is not a cursor this API returned");
		return -1;
	}
	return 0;
}

static bool no_store(struct sl_admin_call *c, const struct sl_admin_req *req)
{
	if (req->policy != NULL && req->policy->live != NULL)
		return false;
	sl_admin_respond_error(&c->resp, 503, "no_account_store",
	                       "this daemon has no account store: add accounts: {store: sqlite} "
	                       "to the config and restart");
	return true;
}

static int submit(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req,
                  struct job *j, bool with_body)
{
	struct sl_accounts *acc;

	if (no_store(c, req)) {
		free(j);
		return 0;
	}
	acc = sl_accounts_of(req->policy->live);
	if (with_body && req->body.len > 0) {
		j->r.body = sl_admin_parse_object(&c->resp, req);
		if (j->r.body == NULL) {
			free(j);
			return 0;
		}
	} else if (with_body) {
		j->r.body = cJSON_CreateObject();
	}
	if (a->mailbox == NULL) {
		sl_acc_req_clear(&j->r);
		free(j);
		sl_admin_respond_error(&c->resp, 503, "unavailable", "admin is closing");
		return 0;
	}
	j->c = c;
	j->mb = a->mailbox;
	j->r.policy = (struct sl_policy *)req->policy;
	sl_policy_ref(j->r.policy);
	j->r.now = sl_admin_now(a);
	j->r.done = job_done;
	j->r.arg = j;
	pthread_mutex_lock(&j->mb->mu);
	j->mb->refs++;
	pthread_mutex_unlock(&j->mb->mu);
	if (sl_accounts_submit(acc, &j->r) != 0) {
		bool free_it;
		pthread_mutex_lock(&j->mb->mu);
		mb_unref_locked(j->mb, &free_it);
		pthread_mutex_unlock(&j->mb->mu);
		sl_policy_unref(j->r.policy);
		sl_acc_req_clear(&j->r);
		free(j);
		sl_admin_respond_error(&c->resp, 503, "store_unavailable",
		                       "the accounts thread is not running");
		return 0;
	}
	c->kind = K_ACCOUNTS;
	return SL_AGAIN;
}

static struct job *job_new(struct sl_admin_call *c)
{
	struct job *j = calloc(1, sizeof(*j));

	if (j == NULL)
		sl_admin_respond_error(&c->resp, 503, "unavailable", "out of memory");
	return j;
}

int sl_admin_accounts(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	const char *p = req->path.p + strlen("/v1/accounts"), *end = req->path.p + req->path.len;
	char name[SL_LIVE_NAME_MAX + 1];
	struct job *j;

	if (p == end) {
		bool post = is(req->method, "POST");
		if (!post && !is(req->method, "GET"))
			return method_not_allowed(c, "GET, POST");
		if ((j = job_new(c)) == NULL)
			return 0;
		j->r.op = post ? SL_ACC_CREATE : SL_ACC_LIST;
		if (!post && list_query(c, req, j) != 0) {
			free(j);
			return 0;
		}
		return submit(a, c, req, j, post);
	}
	if (!segment(&p, end, name, sizeof(name))) {
		sl_admin_respond_error(&c->resp, 404, "not_found", "no such account");
		return 0;
	}
	if (p == end) {
		int op = is(req->method, "GET")      ? SL_ACC_GET
		         : is(req->method, "PATCH")  ? SL_ACC_PATCH
		         : is(req->method, "DELETE") ? SL_ACC_DELETE
		                                     : 0;
		if (op == 0)
			return method_not_allowed(c, "GET, PATCH, DELETE");
		if ((j = job_new(c)) == NULL)
			return 0;
		j->r.op = op;
		memcpy(j->r.account, name, strlen(name) + 1);
		return submit(a, c, req, j, op == SL_ACC_PATCH);
	}
	if (req->path.len - (size_t)(p - req->path.p) == 5 && memcmp(p, "/keys", 5) == 0) {
		bool post = is(req->method, "POST");
		if (!post && !is(req->method, "GET"))
			return method_not_allowed(c, "GET, POST");
		if ((j = job_new(c)) == NULL)
			return 0;
		j->r.op = post ? SL_ACC_KEY_ISSUE : SL_ACC_KEY_LIST;
		memcpy(j->r.account, name, strlen(name) + 1);
		return submit(a, c, req, j, post);
	}
	sl_admin_respond_error(&c->resp, 404, "not_found", "no such admin endpoint");
	return 0;
}

int sl_admin_keys(struct sl_admin *a, struct sl_admin_call *c, const struct sl_admin_req *req)
{
	const char *p = req->path.p + strlen("/v1/keys"), *end = req->path.p + req->path.len;
	char id[SL_ACC_ID_MAX];
	struct job *j;

	if (p == end || !segment(&p, end, id, sizeof(id))) {
		sl_admin_respond_error(&c->resp, 404, "not_found", "no such key");
		return 0;
	}
	if (p == end) {
		int op = is(req->method, "GET")      ? SL_ACC_KEY_GET
		         : is(req->method, "DELETE") ? SL_ACC_KEY_REVOKE
		                                     : 0;
		if (op == 0)
			return method_not_allowed(c, "GET, DELETE");
		if ((j = job_new(c)) == NULL)
			return 0;
		j->r.op = op;
		memcpy(j->r.id, id, strlen(id) + 1);
		return submit(a, c, req, j, false);
	}
	if (req->path.len - (size_t)(p - req->path.p) == 7 && memcmp(p, "/rotate", 7) == 0) {
		if (!is(req->method, "POST"))
			return method_not_allowed(c, "POST");
		if ((j = job_new(c)) == NULL)
			return 0;
		j->r.op = SL_ACC_KEY_ROTATE;
		memcpy(j->r.id, id, strlen(id) + 1);
		return submit(a, c, req, j, true);
	}
	sl_admin_respond_error(&c->resp, 404, "not_found", "no such admin endpoint");
	return 0;
}
