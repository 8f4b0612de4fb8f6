/* HTTP/1.x without sockets: llhttp glue that turns bytes into a parsed head
 * of (ptr, len) views into the caller's read buffer, body framing events
 * for streaming, and a response/request writer into fixed buffers.
 *
 * The one decision to know: the parser pauses at the end of every head and
 * every message, so the caller always knows the exact byte boundaries of
 * head, body and the next pipelined message in its buffer. Body bytes are
 * reported raw (chunk framing included), which is what a proxy forwards.
 * Views stay valid while the bytes stay where they are in the buffer; a
 * caller that moves them (compaction) calls sl_http_rebase. */
#ifndef SLUICE_HTTP_H
#define SLUICE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <llhttp.h>
#include "policy/policy.h"

#define SL_HTTP_MAX_HEADERS 64 /* headers per message; more: 431 */

/* A parsed message head. Every sl_str points into the bytes given to
 * sl_http_parse (or at static strings), valid until those bytes move. */
struct sl_http_msg {
	struct sl_str method; /* requests; static string */
	struct sl_str url;    /* raw request target */
	struct sl_str path;   /* url without the query (origin-form) */
	struct sl_str query;  /* after '?', without it */
	struct sl_str host;   /* Host header, or the authority of an absolute url */
	bool absolute;        /* absolute-form target: host is its authority, and
	                       * a forwarded copy must carry it as Host */
	struct sl_str reason; /* responses */
	int status;           /* responses */
	uint8_t major, minor;
	struct sl_header headers[SL_HTTP_MAX_HEADERS];
	size_t nheaders;
	bool chunked;
	bool has_length;
	uint64_t content_length; /* bytes, when has_length */
	bool has_body;           /* a body follows the head */
	bool keep_alive;         /* another message may follow this one */
	bool expect_continue;    /* Expect: 100-continue */
	bool upgrade;            /* Upgrade/CONNECT: the connection ends after it */
};

enum sl_http_event {
	SL_HTTP_NEED = 0, /* every byte consumed; in the body, those were body bytes */
	SL_HTTP_HEAD = 1, /* head complete: msg is valid; used = bytes of the head's tail */
	SL_HTTP_END = 2,  /* message complete: used = its last body bytes (raw) */
	SL_HTTP_ERR = 3,  /* refused: error_status is 400, 413, 431 (502 for responses) */
};

enum sl_http_state {
	SL_HTTP_IDLE = 0, /* between messages */
	SL_HTTP_IN_HEAD,
	SL_HTTP_IN_BODY,
	SL_HTTP_FAILED,
};

struct sl_http_parser {
	llhttp_t ll;
	struct sl_http_msg msg;
	uint8_t state;    /* enum sl_http_state */
	bool response;    /* parses responses */
	bool skip_body;   /* the next response answers a HEAD request */
	bool in_field;    /* last header span was a name */
	bool paused_head; /* set by the callbacks, read by sl_http_parse */
	bool paused_end;
	bool pending_end;    /* head and end arrived together (HEAD responses) */
	int error_status;    /* after SL_HTTP_ERR */
	size_t head_bytes;   /* bytes of the current head so far */
	size_t max_head;     /* bytes; over: 431 */
	uint64_t body_bytes; /* decoded body bytes of the current message */
	uint64_t max_body;   /* bytes; over: 413 (0: unlimited) */
	/* Optional copy of the decoded body (admin requests): over sink_cap
	 * bytes is 413. NULL: body bytes are only reported raw. */
	char *sink;
	size_t sink_cap, sink_len; /* bytes */
};

/* Initialise in place for requests (response false) or responses. Limits
 * are bytes. Thread: any (the parser belongs to one connection). */
void sl_http_init(struct sl_http_parser *hp, bool response, size_t max_head, uint64_t max_body);

/* Start over (after an error, or a new upstream connection). */
void sl_http_reset(struct sl_http_parser *hp);

/* Feed len bytes at p (which must directly follow the bytes fed before
 * while a head is in progress). Parses at most up to the next event and
 * sets *used to the bytes consumed. Returns an enum sl_http_event. In
 * SL_HTTP_IN_BODY every consumed byte is raw body. After SL_HTTP_ERR the
 * parser refuses everything until sl_http_reset. */
int sl_http_parse(struct sl_http_parser *hp, const char *p, size_t len, size_t *used);

/* The caller moved the buffer the views point into by -delta bytes
 * (memmove of [x, end) to [x - delta, end - delta)). */
void sl_http_rebase(struct sl_http_parser *hp, size_t delta);

/* End of input from the peer: for a response read until EOF, completes it
 * (returns SL_HTTP_END); otherwise SL_HTTP_ERR if a message was cut. */
int sl_http_finish(struct sl_http_parser *hp);

/* Case-insensitive header lookup: the first value or NULL. */
const struct sl_str *sl_http_header(const struct sl_http_msg *m, const char *name);
bool sl_str_ieq(struct sl_str a, const char *b);

/* Fill req with views of m (borrowed from m). peer is borrowed too. */
void sl_http_request_view(const struct sl_http_msg *m, const struct sockaddr *peer,
                          struct sl_request *req);

/* Forward-auth: rewrite req's method/path/query to the original request
 * named by X-Original-Method/X-Original-URI (nginx auth_request) or
 * X-Forwarded-Method/X-Forwarded-Uri (Traefik, Caddy); X-Forwarded-Host
 * names the host. Leaves them as they are when neither is present (Envoy).
 * Marks req->unreleased: the check listener answers before the original
 * request is served and never learns when it ends, so the concurrency
 * slots it takes are never released (they lapse with their lease). */
void sl_http_forward_auth(const struct sl_http_msg *m, struct sl_request *req);

/* Split a request target into path and query (views into url). */
void sl_http_split_url(struct sl_str url, struct sl_str *path, struct sl_str *query,
                       struct sl_str *authority);

/* ---- writing (response.c) ---- */

/* A fixed output buffer; once something does not fit, `overflow` is set and
 * nothing more is written (the caller answers 500/502 or closes). */
struct sl_http_out {
	char *buf;
	size_t cap; /* bytes */
	size_t len; /* bytes */
	bool overflow;
};

void sl_http_out_init(struct sl_http_out *o, char *buf, size_t cap);
void sl_http_out_bytes(struct sl_http_out *o, const void *p, size_t n);
void sl_http_out_str(struct sl_http_out *o, const char *s);
/* "HTTP/1.1 <status> <reason>\r\n"; reason NULL: the standard one. */
void sl_http_out_status(struct sl_http_out *o, int status, const char *reason);
/* "name: value\r\n"; CR and LF in either are refused (header left out). */
void sl_http_out_header(struct sl_http_out *o, struct sl_str name, struct sl_str value);
void sl_http_out_header_c(struct sl_http_out *o, const char *name, const char *value);
void sl_http_out_header_u64(struct sl_http_out *o, const char *name, uint64_t v);
/* sl_header_emit_fn adapter: arg is a struct sl_http_out. */
void sl_http_out_emit(void *arg, struct sl_str name, struct sl_str value);
/* Standard reason phrase of a status ("Unknown" for others). */
const char *sl_http_reason(int status);

/* Hop-by-hop headers a proxy never forwards (Connection, Keep-Alive, ...).
 * Transfer-Encoding is not among them: bodies are forwarded raw. */
bool sl_http_hop_by_hop(struct sl_str name);

/* A complete small response: status line, Content-Length, optional
 * Connection: close, the given content type and body. Used for errors. */
void sl_http_out_simple(struct sl_http_out *o, int status, const char *content_type,
                        const char *body, size_t body_len, bool close);

#endif
