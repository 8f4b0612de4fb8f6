/* From a parsed head to the struct sl_request the policy evaluates:
 * header lookup, request-target splitting, and the forward-auth rewrite
 * that makes the check listener decide for the request a proxy in front of
 * it is about to serve. Everything here is views: nothing is copied. */
#include <string.h>
#include <strings.h>
#include "http/http.h"

bool sl_str_ieq(struct sl_str a, const char *b)
{
	size_t n = strlen(b);
	return a.len == n && (n == 0 || strncasecmp(a.p, b, n) == 0);
}

const struct sl_str *sl_http_header(const struct sl_http_msg *m, const char *name)
{
	for (size_t i = 0; i < m->nheaders; i++)
		if (sl_str_ieq(m->headers[i].name, name))
			return &m->headers[i].value;
	return NULL;
}

void sl_http_split_url(struct sl_str url, struct sl_str *path, struct sl_str *query,
                       struct sl_str *authority)
{
	const char *p = url.p, *end = url.p + url.len;
	struct sl_str auth = {0};

	/* absolute-form: scheme "://" authority path */
	if (url.len > 7 &&
	    (strncasecmp(p, "http://", 7) == 0 || strncasecmp(p, "https://", 8) == 0)) {
		p += (p[4] == ':') ? 7 : 8;
		auth.p = p;
		while (p < end && *p != '/' && *p != '?')
			p++;
		auth.len = (size_t)(p - auth.p);
	}
	const char *q = p;
	while (q < end && *q != '?' && *q != '#')
		q++;
	path->p = p;
	path->len = (size_t)(q - p);
	if (path->len == 0 && auth.len) {
		path->p = "/";
		path->len = 1;
	}
	query->p = q;
	query->len = 0;
	if (q < end && *q == '?') {
		const char *h = ++q;
		while (h < end && *h != '#')
			h++;
		query->p = q;
		query->len = (size_t)(h - q);
	}
	if (authority)
		*authority = auth;
}

void sl_http_request_view(const struct sl_http_msg *m, const struct sockaddr *peer,
                          struct sl_request *req)
{
	memset(req, 0, sizeof(*req));
	req->method = m->method;
	req->path = m->path;
	req->query = m->query;
	req->host = m->host;
	req->headers = m->headers;
	req->nheaders = m->nheaders;
	req->peer = peer;
}

static bool name_is(struct sl_str name, const char *lower, size_t n)
{
	return name.len == n && strncasecmp(name.p, lower, n) == 0;
}

void sl_http_forward_auth(const struct sl_http_msg *m, struct sl_request *req)
{
	/* the first of each of the five headers, in one pass (lengths first:
	 * most requests carry none of them) */
	const struct sl_str *omethod = NULL, *ouri = NULL, *fmethod = NULL, *furi = NULL;
	const struct sl_str *method, *uri, *host = NULL;

	req->unreleased = true; /* a check listener never sees the response */
	for (size_t i = 0; i < m->nheaders; i++) {
		const struct sl_header *h = &m->headers[i];
		const struct sl_str **slot = NULL;

		switch (h->name.len) {
		case 17:
			if (name_is(h->name, "x-original-method", 17))
				slot = &omethod;
			break;
		case 14:
			if (name_is(h->name, "x-original-uri", 14))
				slot = &ouri;
			break;
		case 18:
			if (name_is(h->name, "x-forwarded-method", 18))
				slot = &fmethod;
			break;
		case 15:
			if (name_is(h->name, "x-forwarded-uri", 15))
				slot = &furi;
			break;
		case 16:
			if (name_is(h->name, "x-forwarded-host", 16))
				slot = &host;
			break;
		default:
			break;
		}
		if (slot && !*slot)
			*slot = &h->value;
	}
	method = omethod;
	uri = ouri;
	if (!method && !uri) {
		method = fmethod;
		uri = furi;
	}
	if (method && method->len)
		req->method = *method;
	if (uri && uri->len) {
		struct sl_str auth;
		sl_http_split_url(*uri, &req->path, &req->query, &auth);
		if (auth.len)
			req->host = auth;
	}
	if (host && host->len && (method || uri))
		req->host = *host;
}
