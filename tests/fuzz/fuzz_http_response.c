/* libFuzzer target: arbitrary bytes as what an upstream sends on one
 * pooled connection, through the response parser the way src/net/proxy.c
 * drives it: sl_http_init(hp, true, buffer size, 0) per exchange, skip_body
 * when the request was HEAD, the read buffer compacted before every read
 * (a head in progress kept and rebased), 1xx heads skipped, the head's
 * headers forwarded (hop-by-hop ones dropped), body bytes passed on raw, a
 * close-delimited body completed by EOF (sl_http_finish), and, when a
 * response ends on a keep-alive connection with nothing after it, the next
 * bytes parsed as the next exchange's response.
 *
 * Findings: sanitizer reports; views outside the buffer; a status outside
 * 100-599; an error other than 502; a Content-Length body whose raw bytes
 * differ from its length; body bytes where there is no body (HEAD, 1xx,
 * 204, 304); a parser that neither consumes nor reports anything.
 *
 * Input: byte 0 the largest read (1..64 bytes), byte 1 the seed of the
 * read sizes (reads are split at pseudo-random points), byte 2 bit 0: the
 * request was HEAD, bit 1: a 512-byte buffer (the proxy's is 64 KiB; a
 * small one makes compaction and "head larger than the buffer" happen).
 * Corpus: tests/fuzz/corpus/http_response/. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "http/http.h"

#define BIG   65536 /* bytes: UP_RCAP in proxy.c */
#define SMALL 512   /* bytes */
#define OUT   16384 /* bytes: SL_OUT_CAP */

static char rbuf[BIG];

struct up {
	struct sl_http_parser hp;
	size_t rcap, rlen, rpos, head_start; /* bytes */
	bool skip_1xx, resp_head, resp_end;
	uint64_t body; /* raw body bytes of the current response */
	bool has_body; /* of the response whose head went out */
	bool length;   /* ... delimited by Content-Length */
	uint64_t clen; /* bytes */
	bool in_1xx;   /* between a 1xx head and its end */
};

static void die(const char *what)
{
	fprintf(stderr, "fuzz_http_response: %s\n", what);
	abort();
}

static void inside(const struct sl_str *v, const struct up *u)
{
	if (v->len && (v->p < rbuf || v->p + v->len > rbuf + u->rlen))
		die("view outside the read buffer");
}

/* head_to_client: the forwarded head, as the client would get it. */
static void head_to_client(struct up *u)
{
	static char obuf[OUT];
	const struct sl_http_msg *m = &u->hp.msg;
	struct sl_http_out o;

	if (m->status < 100 || m->status > 599)
		die("status out of range");
	inside(&m->reason, u);
	sl_http_out_init(&o, obuf, sizeof(obuf));
	sl_http_out_status(&o, m->status, NULL);
	for (size_t i = 0; i < m->nheaders; i++) {
		inside(&m->headers[i].name, u);
		inside(&m->headers[i].value, u);
		if (!sl_http_hop_by_hop(m->headers[i].name))
			sl_http_out_header(&o, m->headers[i].name, m->headers[i].value);
	}
	if (m->upgrade && m->keep_alive)
		die("keep-alive after an upgrade");
	u->resp_head = true;
	u->has_body = m->has_body;
	u->length = m->has_body && m->has_length && !m->chunked;
	u->clen = m->content_length;
	u->body = 0;
}

/* up_process without the client: false when the exchange failed. */
static bool process(struct up *u)
{
	for (int guard = 0; !u->resp_end; guard++) {
		size_t used;
		int ev;

		if (guard > 100000)
			die("no progress");
		if (u->rpos == u->rlen && u->hp.state != SL_HTTP_IN_BODY)
			break;
		if (u->hp.state == SL_HTTP_IDLE)
			u->head_start = u->rpos;
		ev = sl_http_parse(&u->hp, rbuf + u->rpos, u->rlen - u->rpos, &used);
		if (used > u->rlen - u->rpos)
			die("consumed more than it was given");
		u->rpos += used;
		if (ev == SL_HTTP_ERR) {
			if (u->hp.error_status != 502)
				die("response error other than 502");
			return false;
		}
		if (ev == SL_HTTP_HEAD) {
			if (u->hp.msg.status / 100 == 1) {
				u->skip_1xx = u->in_1xx = true;
				continue;
			}
			head_to_client(u);
			continue;
		}
		if (u->in_1xx && used)
			die("body bytes in a 1xx response");
		if (ev == SL_HTTP_END && u->skip_1xx) {
			u->skip_1xx = u->in_1xx = false;
			continue;
		}
		if (used && u->resp_head) {
			if (!u->has_body)
				die("body bytes in a response without a body");
			u->body += used;
		}
		if (ev == SL_HTTP_END) {
			if (!u->resp_head)
				die("end without a head");
			if (u->length && u->body != u->clen)
				die("Content-Length body of another size");
			u->resp_end = true;
		}
		if (used)
			continue;
		if (ev == SL_HTTP_NEED && u->rpos == u->rlen)
			break;
	}
	return true;
}

/* start(): a fresh parser on the pooled connection. */
static void start(struct up *u, size_t rcap, bool head_request)
{
	sl_http_init(&u->hp, true, rcap, 0);
	u->hp.skip_body = head_request;
	u->rcap = rcap;
	u->rlen = u->rpos = u->head_start = 0;
	u->skip_1xx = u->in_1xx = u->resp_head = u->resp_end = false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct up u;
	size_t step, fed = 0, rcap;
	uint32_t rng;
	bool head_request;

	if (size < 3)
		return 0;
	step = (size_t)(data[0] % 64) + 1;
	rng = data[1] * 2654435761u + 1;
	head_request = data[2] & 1;
	rcap = data[2] & 2 ? SMALL : BIG;
	data += 3;
	size -= 3;
	start(&u, rcap, head_request);
	while (true) {
		/* up_alloc_cb: keep a head in progress, drop what was parsed */
		size_t keep = u.hp.state == SL_HTTP_IN_HEAD ? u.head_start : u.rpos, n;
		if (keep) {
			memmove(rbuf, rbuf + keep, u.rlen - keep);
			u.rlen -= keep;
			u.rpos -= keep;
			u.head_start = u.head_start >= keep ? u.head_start - keep : 0;
			if (u.hp.state == SL_HTTP_IN_HEAD)
				sl_http_rebase(&u.hp, keep);
		}
		if (fed == size) {
			/* EOF: completes a close-delimited body, else a failure */
			if (u.hp.state == SL_HTTP_IN_BODY && u.rpos == u.rlen &&
			    sl_http_finish(&u.hp) == SL_HTTP_END) {
				if (!u.resp_head || u.length)
					die("EOF ended a response that has a length");
				if (u.hp.msg.keep_alive)
					die("keep-alive after a close-delimited body");
			}
			return 0;
		}
		if (u.rlen == u.rcap)
			return 0; /* UV_ENOBUFS: a head larger than the buffer, 502 */
		rng = rng * 1103515245u + 12345u;
		n = 1 + (rng >> 16) % step;
		if (n > size - fed)
			n = size - fed;
		if (n > u.rcap - u.rlen)
			n = u.rcap - u.rlen;
		memcpy(rbuf + u.rlen, data + fed, n);
		u.rlen += n;
		fed += n;
		if (!process(&u))
			return 0; /* up_fail: 502 and the connection closed */
		if (u.resp_end) {
			/* exchange_end/up_put: reused only when nothing is left over */
			if (!u.hp.msg.keep_alive || u.rpos != u.rlen)
				return 0;
			start(&u, rcap, head_request);
		}
	}
}
