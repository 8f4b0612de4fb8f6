/* llhttp glue: requests and responses into struct sl_http_msg views.
 *
 * llhttp reports every field as spans that may arrive in pieces across
 * reads; since the caller appends to one buffer and never moves a head in
 * progress without calling sl_http_rebase, the pieces are contiguous and a
 * field is just (first pointer, total length). The callbacks pause the
 * parser at the end of each head and each message, so sl_http_parse
 * returns one event at a time with the exact bytes it consumed. */
#include <stddef.h>
#include <string.h>
#include "http/http.h"

#define HP(ll) ((struct sl_http_parser *)(ll)->data)

/* Extend view v by a span that must directly follow it (or start it). */
static int span(struct sl_str *v, const char *at, size_t n)
{
	if (v->p == NULL || v->len == 0) {
		v->p = at;
		v->len = n;
		return 0;
	}
	if (v->p + v->len != at)
		return -1; /* the caller broke the contiguity contract */
	v->len += n;
	return 0;
}

/* The first failure's status; a response's is always 502 (RFC 9110
 * 15.6.3: a gateway's answer to an invalid upstream response). */
static int fail(struct sl_http_parser *hp, int status)
{
	if (hp->error_status == 0)
		hp->error_status = hp->response ? 502 : status;
	return -1;
}

static int on_message_begin(llhttp_t *ll)
{
	struct sl_http_parser *hp = HP(ll);
	/* everything but the header array (2 KiB): entries are cleared as
	 * they are used and nothing reads past nheaders */
	memset(&hp->msg, 0, offsetof(struct sl_http_msg, headers));
	memset((char *)&hp->msg + offsetof(struct sl_http_msg, nheaders), 0,
	       sizeof(hp->msg) - offsetof(struct sl_http_msg, nheaders));
	hp->in_field = false;
	hp->body_bytes = 0;
	hp->sink_len = 0;
	return 0;
}

static int on_url(llhttp_t *ll, const char *at, size_t n)
{
	return span(&HP(ll)->msg.url, at, n) ? fail(HP(ll), 400) : 0;
}

static int on_status(llhttp_t *ll, const char *at, size_t n)
{
	return span(&HP(ll)->msg.reason, at, n) ? fail(HP(ll), 502) : 0;
}

static int on_header_field(llhttp_t *ll, const char *at, size_t n)
{
	struct sl_http_parser *hp = HP(ll);
	struct sl_http_msg *m = &hp->msg;
	if (!hp->in_field) {
		if (m->nheaders == SL_HTTP_MAX_HEADERS)
			return fail(hp, hp->response ? 502 : 431);
		m->nheaders++;
		memset(&m->headers[m->nheaders - 1], 0, sizeof(m->headers[0]));
		hp->in_field = true;
	}
	return span(&m->headers[m->nheaders - 1].name, at, n) ? fail(hp, 400) : 0;
}

static int on_header_value(llhttp_t *ll, const char *at, size_t n)
{
	struct sl_http_parser *hp = HP(ll);
	struct sl_http_msg *m = &hp->msg;
	hp->in_field = false;
	if (m->nheaders == 0)
		return fail(hp, 400);
	return span(&m->headers[m->nheaders - 1].value, at, n) ? fail(hp, 400) : 0;
}

static int on_header_field_complete(llhttp_t *ll)
{
	HP(ll)->in_field = false;
	return 0;
}

/* RFC 9110 section 7.2: uri-host [":" port] of RFC 3986, so letters,
 * digits, "-._~", sub-delims, '%', and the ':' '[' ']' of a port or an
 * IPv6 literal. No userinfo ('@'), blanks, controls or raw non-ASCII. */
static const bool host_char[256] = {
        ['a' ... 'z'] = true, ['A' ... 'Z'] = true, ['0' ... '9'] = true, ['-'] = true,
        ['.'] = true,         ['_'] = true,         ['~'] = true,         ['!'] = true,
        ['$'] = true,         ['&'] = true,         ['\''] = true,        ['('] = true,
        [')'] = true,         ['*'] = true,         ['+'] = true,         [','] = true,
        [';'] = true,         ['='] = true,         ['%'] = true,         [':'] = true,
        ['['] = true,         [']'] = true,
};

/* Host characters only, and a non-empty name: "", ".", ":80" or "[]:80"
 * would be an empty host once canonical (RFC 9110 4.2.1: an http URI with
 * an empty host is invalid), which a `host` key reads as a missing
 * descriptor, so its limit would be skipped. */
static bool valid_host(struct sl_str h)
{
	bool ok = true;
	size_t name;

	while (h.len > 0 && (h.p[h.len - 1] == ' ' || h.p[h.len - 1] == '\t'))
		h.len--;
	while (h.len > 0 && (h.p[0] == ' ' || h.p[0] == '\t')) {
		h.p++;
		h.len--;
	}
	for (size_t i = 0; i < h.len; i++)
		ok &= host_char[(uint8_t)h.p[i]];
	if (!ok || h.len == 0)
		return false;
	if (h.p[0] == '[') {
		const char *rb = memchr(h.p, ']', h.len);
		return rb != NULL && rb > h.p + 1;
	}
	const char *colon = memchr(h.p, ':', h.len);
	name = colon ? (size_t)(colon - h.p) : h.len;
	while (name > 0 && h.p[name - 1] == '.')
		name--;
	return name > 0;
}

/* The request rules of RFC 9112 that llhttp leaves to its user: no
 * whitespace between a field name and its colon (section 5.1: 400, since
 * "Host : x" is read as "Host" by some and as an unknown field by others),
 * exactly one Host on HTTP/1.1 and at most one before it (section 3.2),
 * and a Host (or absolute-form authority) that is a host and a port.
 * Finds the first Host and Expect in the same pass. Returns 0 or 400. */
static int check_request_head(struct sl_http_msg *m, struct sl_str authority,
                              const struct sl_str **expect)
{
	const struct sl_str *host = NULL;

	for (size_t i = 0; i < m->nheaders; i++) {
		const struct sl_header *h = &m->headers[i];

		/* llhttp keeps blanks before the colon in the name's span */
		char last = h->name.len ? h->name.p[h->name.len - 1] : ' ';
		if (last == ' ' || last == '\t')
			return 400;
		if (h->name.len == 4 && sl_str_ieq(h->name, "host")) {
			if (host != NULL)
				return 400;
			host = &h->value;
		} else if (!*expect && h->name.len == 6 && sl_str_ieq(h->name, "expect")) {
			*expect = &h->value;
		}
	}
	if (host == NULL && m->major == 1 && m->minor >= 1)
		return 400;
	if (host != NULL && !valid_host(*host))
		return 400;
	if (m->absolute && !valid_host(authority))
		return 400;
	if (m->absolute)
		m->host = authority;
	else if (host != NULL)
		m->host = *host;
	return 0;
}

static int on_headers_complete(llhttp_t *ll)
{
	struct sl_http_parser *hp = HP(ll);
	struct sl_http_msg *m = &hp->msg;
	struct sl_str authority = {0};

	m->major = ll->http_major;
	m->minor = ll->http_minor;
	if (hp->response) {
		m->status = ll->status_code;
		if (m->status < 100 || m->status > 599)
			return fail(hp, 502); /* llhttp takes "00" (RFC 9110 15: 100-599) */
	} else {
		const char *name = llhttp_method_name((llhttp_method_t)ll->method);
		m->method.p = name;
		m->method.len = strlen(name);
		if (ll->method == HTTP_CONNECT)
			return fail(hp, 400);
		/* llhttp checks this after on_headers_complete, which pauses
		 * first: a request body whose length cannot be known is 400
		 * (RFC 9112 6.3), checked here before anything is answered. */
		if ((ll->flags & F_TRANSFER_ENCODING) && !(ll->flags & F_CHUNKED))
			return fail(hp, 400);
		sl_http_split_url(m->url, &m->path, &m->query, &authority);
		if (m->path.len == 0 || m->path.p[0] != '/') {
			/* asterisk-form and other oddities: only OPTIONS * is legal */
			if (!(ll->method == HTTP_OPTIONS && m->url.len == 1 && m->url.p[0] == '*'))
				return fail(hp, 400);
		}
		m->absolute = authority.p != NULL;
		const struct sl_str *expect = NULL;
		if (check_request_head(m, authority, &expect) != 0)
			return fail(hp, 400);
		m->expect_continue = expect && sl_str_ieq(*expect, "100-continue");
	}
	m->chunked = (ll->flags & F_CHUNKED) != 0;
	m->has_length = (ll->flags & F_CONTENT_LENGTH) != 0 && !m->chunked;
	m->content_length = m->has_length ? ll->content_length : 0;
	m->upgrade = ll->upgrade != 0;
	if (!hp->response && hp->max_body && m->has_length && m->content_length > hp->max_body)
		return fail(hp, 413);
	if (hp->response) {
		int s = m->status;
		bool nobody = hp->skip_body || s / 100 == 1 || s == 204 || s == 304;
		m->has_body = !nobody;
		if (hp->skip_body || (nobody && !(s == 101 && ll->upgrade))) {
			/* llhttp cannot both pause and skip the body: skip, and let
			 * sl_http_parse report HEAD then END. Not only for HEAD:
			 * llhttp reads a body framed by Content-Length or chunked
			 * even after a 1xx, 204 or 304, which have none (RFC 9110
			 * 6.4.1); a 304's Content-Length is the representation's.
			 * A real 101 (an upgrade) goes on as before: what follows
			 * is another protocol. */
			hp->paused_head = true;
			return 1;
		}
	} else {
		m->has_body = m->chunked || (m->has_length && m->content_length > 0);
	}
	hp->paused_head = true;
	return HPE_PAUSED;
}

static int on_body(llhttp_t *ll, const char *at, size_t n)
{
	struct sl_http_parser *hp = HP(ll);
	hp->body_bytes += n;
	if (!hp->response && hp->max_body && hp->body_bytes > hp->max_body)
		return fail(hp, 413);
	if (hp->sink) {
		if (n > hp->sink_cap - hp->sink_len)
			return fail(hp, 413);
		memcpy(hp->sink + hp->sink_len, at, n);
		hp->sink_len += n;
	}
	return 0;
}

static int on_message_complete(llhttp_t *ll)
{
	struct sl_http_parser *hp = HP(ll);
	hp->paused_end = true;
	return HPE_PAUSED;
}

static const llhttp_settings_t settings = {
        .on_message_begin = on_message_begin,
        .on_url = on_url,
        .on_status = on_status,
        .on_header_field = on_header_field,
        .on_header_value = on_header_value,
        .on_header_field_complete = on_header_field_complete,
        .on_headers_complete = on_headers_complete,
        .on_body = on_body,
        .on_message_complete = on_message_complete,
};

void sl_http_init(struct sl_http_parser *hp, bool response, size_t max_head, uint64_t max_body)
{
	/* everything but the 2 KiB header array (see on_message_begin): the
	 * proxy starts a response parser per exchange */
	size_t hdrs = offsetof(struct sl_http_parser, msg) + offsetof(struct sl_http_msg, headers);
	size_t rest = offsetof(struct sl_http_parser, msg) + offsetof(struct sl_http_msg, nheaders);
	memset(hp, 0, hdrs);
	memset((char *)hp + rest, 0, sizeof(*hp) - rest);
	hp->response = response;
	hp->max_head = max_head;
	hp->max_body = max_body;
	llhttp_init(&hp->ll, response ? HTTP_RESPONSE : HTTP_REQUEST, &settings);
	hp->ll.data = hp;
}

void sl_http_reset(struct sl_http_parser *hp)
{
	sl_http_init(hp, hp->response, hp->max_head, hp->max_body);
}

int sl_http_parse(struct sl_http_parser *hp, const char *p, size_t len, size_t *used)
{
	llhttp_errno_t e;
	size_t n;

	*used = 0;
	if (hp->state == SL_HTTP_FAILED)
		return SL_HTTP_ERR;
	if (hp->pending_end) {
		hp->pending_end = false;
		hp->state = SL_HTTP_IDLE;
		return SL_HTTP_END;
	}
	if (len == 0 && hp->state != SL_HTTP_IN_BODY)
		return SL_HTTP_NEED; /* an empty body still completes on the next call */
	if (hp->state == SL_HTTP_IDLE)
		hp->head_bytes = 0;
	hp->paused_head = hp->paused_end = false;
	e = llhttp_execute(&hp->ll, p, len);
	if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE) {
		n = (size_t)(llhttp_get_error_pos(&hp->ll) - p);
		if (e == HPE_PAUSED)
			llhttp_resume(&hp->ll);
		else
			llhttp_resume_after_upgrade(&hp->ll);
	} else if (e == HPE_OK) {
		n = len;
	} else {
		hp->state = SL_HTTP_FAILED;
		if (hp->error_status == 0)
			hp->error_status = hp->response ? 502 : 400;
		return SL_HTTP_ERR;
	}
	*used = n;
	if (hp->state != SL_HTTP_IN_BODY) {
		hp->state = SL_HTTP_IN_HEAD;
		hp->head_bytes += n;
		if (hp->max_head && hp->head_bytes > hp->max_head) {
			hp->state = SL_HTTP_FAILED;
			hp->error_status = hp->response ? 502 : 431;
			return SL_HTTP_ERR;
		}
	}
	if (hp->paused_head) {
		hp->msg.keep_alive = llhttp_should_keep_alive(&hp->ll) && !hp->msg.upgrade;
		if (hp->paused_end) {
			hp->pending_end = true;
			hp->state = SL_HTTP_IN_BODY;
		} else {
			hp->state = SL_HTTP_IN_BODY;
		}
		return SL_HTTP_HEAD;
	}
	if (hp->paused_end) {
		hp->msg.keep_alive = hp->msg.keep_alive && llhttp_should_keep_alive(&hp->ll) &&
		                     e != HPE_PAUSED_UPGRADE;
		hp->state = SL_HTTP_IDLE;
		if (e == HPE_PAUSED_UPGRADE) {
			hp->msg.keep_alive = false;
			hp->state = SL_HTTP_FAILED; /* nothing after an upgrade is HTTP */
			hp->error_status = 400;
		}
		return SL_HTTP_END;
	}
	return SL_HTTP_NEED;
}

static void rebase(struct sl_str *v, size_t delta)
{
	if (v->p)
		v->p -= delta;
}

void sl_http_rebase(struct sl_http_parser *hp, size_t delta)
{
	struct sl_http_msg *m = &hp->msg;
	/* method points at llhttp's static names and never moves; every
	 * other view points into the buffer. */
	rebase(&m->url, delta);
	rebase(&m->path, delta);
	rebase(&m->query, delta);
	rebase(&m->host, delta);
	rebase(&m->reason, delta);
	for (size_t i = 0; i < m->nheaders; i++) {
		rebase(&m->headers[i].name, delta);
		rebase(&m->headers[i].value, delta);
	}
}

int sl_http_finish(struct sl_http_parser *hp)
{
	if (hp->state == SL_HTTP_FAILED)
		return SL_HTTP_ERR;
	if (hp->state == SL_HTTP_IDLE)
		return SL_HTTP_NEED;
	hp->paused_end = false;
	llhttp_errno_t e = llhttp_finish(&hp->ll);
	if ((e == HPE_OK || e == HPE_PAUSED) && hp->paused_end && hp->response) {
		hp->state = SL_HTTP_IDLE;
		hp->msg.keep_alive = false;
		return SL_HTTP_END;
	}
	hp->state = SL_HTTP_FAILED;
	if (hp->error_status == 0)
		hp->error_status = hp->response ? 502 : 400;
	return SL_HTTP_ERR;
}
