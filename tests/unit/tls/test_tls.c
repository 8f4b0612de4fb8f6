/* The TLS layer: contexts refuse what cannot serve (missing files, a PEM
 * that does not parse, a key that does not match), and the stream moves
 * bytes both ways over a real loopback TCP pair on one libuv loop: large
 * payloads through the fixed rings, a reader that stops and starts again
 * (plaintext held, then delivered from the loop), a write the socket takes
 * at once, verification failures reported as UV_EPROTO with the reason,
 * and a close with writes queued (each completes with UV_ECANCELED). The
 * certificates are made here with OpenSSL's API in a temporary directory. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <uv.h>

#include "tls/cert_fixture.h"
#include "tls/tls.h"

static char dir[256];
static char cert_a[300], key_a[300], cert_b[300], key_b[300], garbage[300], missing[300];

static int setup(void **unused)
{
	const char *tmp = getenv("TMPDIR");
	FILE *f;
	snprintf(dir, sizeof(dir), "%s/sluice-test-tls-XXXXXX", tmp ? tmp : "/tmp");
	if (!mkdtemp(dir))
		return -1;
	snprintf(cert_a, sizeof(cert_a), "%s/a.pem", dir);
	snprintf(key_a, sizeof(key_a), "%s/a.key", dir);
	snprintf(cert_b, sizeof(cert_b), "%s/b.pem", dir);
	snprintf(key_b, sizeof(key_b), "%s/b.key", dir);
	snprintf(garbage, sizeof(garbage), "%s/garbage.pem", dir);
	snprintf(missing, sizeof(missing), "%s/missing.pem", dir);
	make_cert(cert_a, key_a);
	make_cert(cert_b, key_b);
	f = fopen(garbage, "w");
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", f);
	fclose(f);
	return 0;
}

static int teardown(void **unused)
{
	const char *files[] = {cert_a, key_a, cert_b, key_b, garbage};
	for (size_t i = 0; i < 5; i++)
		unlink(files[i]);
	rmdir(dir);
	return 0;
}

/* ---- contexts ---- */

static void server_ctx_refuses_missing_garbage_and_mismatched_files(void **unused)
{
	struct sl_tls_ctx *x = (void *)1;
	char err[256];

	assert_int_equal(sl_tls_server_ctx(&x, missing, key_a, err, sizeof(err)), -2);
	assert_null(x);
	assert_non_null(strstr(err, "cert file '"));
	assert_non_null(strstr(err, "No such file or directory"));
	assert_int_equal(sl_tls_server_ctx(&x, cert_a, missing, err, sizeof(err)), -2);
	assert_true(strncmp(err, "key file '", 10) == 0);
	assert_int_equal(sl_tls_server_ctx(&x, "/dev/null", key_a, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(sl_tls_server_ctx(&x, dir, key_a, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "not a regular file"));
	assert_int_equal(sl_tls_server_ctx(&x, garbage, key_a, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "not a PEM certificate chain"));
	assert_int_equal(sl_tls_server_ctx(&x, cert_a, key_b, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "does not match cert file"));
	assert_int_equal(sl_tls_server_ctx(&x, cert_a, garbage, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "not an unencrypted PEM private key"));
	assert_int_equal(sl_tls_server_ctx(&x, cert_a, key_a, err, sizeof(err)), 0);
	assert_non_null(x);
	sl_tls_ctx_unref(x);
}

static void client_ctx_refuses_a_missing_or_empty_ca(void **unused)
{
	struct sl_tls_ctx *x;
	char err[256];

	assert_int_equal(sl_tls_client_ctx(&x, missing, true, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "ca file '"));
	assert_int_equal(sl_tls_client_ctx(&x, garbage, true, err, sizeof(err)), -2);
	assert_non_null(strstr(err, "no PEM certificate"));
	assert_int_equal(sl_tls_client_ctx(&x, NULL, true, err, sizeof(err)), 0);
	sl_tls_ctx_unref(x);
	assert_int_equal(sl_tls_client_ctx(&x, cert_a, true, err, sizeof(err)), 0);
	sl_tls_ctx_unref(x);
}

/* ---- streams over a loopback pair ---- */

#define BIG (3u << 20) /* bytes each way */

struct end {
	uv_tcp_t tcp;
	struct sl_tls *t;
	char *buf; /* what was read */
	size_t len, cap;
	ssize_t last_err; /* the last negative nread */
	unsigned reads;
	unsigned writes_done;
	int write_status;
	bool closed;
	uv_write_t w[4];
};

struct pair {
	uv_loop_t loop;
	struct end s, c;
	struct sl_tls_ctx *sx, *cx;
	uv_timer_t guard;
	bool timed_out;
};

static void guard_cb(uv_timer_t *t)
{
	struct pair *p = t->data;
	p->timed_out = true;
	uv_stop(&p->loop);
}

static void fds(int *a, int *b)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t len = sizeof(sa);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(l, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(listen(l, 1), 0);
	getsockname(l, (struct sockaddr *)&sa, &len);
	*a = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(*a, (struct sockaddr *)&sa, sizeof(sa)), 0);
	*b = accept(l, NULL, NULL);
	assert_true(*b >= 0);
	close(l);
}

static void end_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct end *e = h->data;
	size_t room = e->cap - e->len;
	*b = uv_buf_init(e->buf + e->len, (unsigned)(room > 7000 ? 7000 : room));
}

static void end_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
	struct end *e = s->data;
	if (n > 0) {
		e->len += (size_t)n;
		e->reads++;
	} else if (n < 0) {
		e->last_err = n;
	}
}

static void pair_open(struct pair *p, const char *ca, const char *host)
{
	char err[256];
	int a, b;

	memset(p, 0, sizeof(*p));
	assert_int_equal(uv_loop_init(&p->loop), 0);
	assert_int_equal(sl_tls_server_ctx(&p->sx, cert_a, key_a, err, sizeof(err)), 0);
	assert_int_equal(sl_tls_client_ctx(&p->cx, ca, true, err, sizeof(err)), 0);
	fds(&a, &b);
	uv_tcp_init(&p->loop, &p->c.tcp);
	uv_tcp_init(&p->loop, &p->s.tcp);
	assert_int_equal(uv_tcp_open(&p->c.tcp, a), 0);
	assert_int_equal(uv_tcp_open(&p->s.tcp, b), 0);
	p->c.tcp.data = &p->c;
	p->s.tcp.data = &p->s;
	p->c.t = sl_tls_new(p->cx, &p->loop, &p->c.tcp, host, NULL);
	p->s.t = sl_tls_new(p->sx, &p->loop, &p->s.tcp, NULL, NULL);
	assert_non_null(p->c.t);
	assert_non_null(p->s.t);
	p->c.cap = p->s.cap = BIG + 16;
	p->c.buf = malloc(p->c.cap);
	p->s.buf = malloc(p->s.cap);
	uv_timer_init(&p->loop, &p->guard);
	p->guard.data = p;
	uv_timer_start(&p->guard, guard_cb, 10000, 0);
}

static void end_closed(void *arg)
{
	((struct end *)arg)->closed = true;
}

static void tcp_closed(uv_handle_t *h)
{
}

static void pair_close(struct pair *p)
{
	struct end *ends[2] = {&p->c, &p->s};
	for (int i = 0; i < 2; i++) {
		if (!ends[i]->closed)
			sl_tls_close(ends[i]->t, end_closed, ends[i]);
		uv_close((uv_handle_t *)&ends[i]->tcp, tcp_closed);
	}
	uv_close((uv_handle_t *)&p->guard, tcp_closed);
	uv_run(&p->loop, UV_RUN_DEFAULT);
	assert_true(p->c.closed && p->s.closed);
	sl_tls_free(p->c.t);
	sl_tls_free(p->s.t);
	assert_int_equal(uv_loop_close(&p->loop), 0);
	sl_tls_ctx_unref(p->sx);
	sl_tls_ctx_unref(p->cx);
	free(p->c.buf);
	free(p->s.buf);
}

/* Run the loop until cond holds (checked every millisecond), or fail. */
static struct pair *cur;
static bool (*cur_cond)(struct pair *);
static void poll_cb(uv_timer_t *t)
{
	if (cur_cond(cur))
		uv_stop(&cur->loop);
}

static void run_until(struct pair *p, bool (*cond)(struct pair *))
{
	uv_timer_t poll;
	cur = p;
	cur_cond = cond;
	uv_timer_init(&p->loop, &poll);
	uv_timer_start(&poll, poll_cb, 1, 1);
	if (!cond(p))
		uv_run(&p->loop, UV_RUN_DEFAULT);
	uv_close((uv_handle_t *)&poll, tcp_closed);
	uv_run(&p->loop, UV_RUN_NOWAIT);
	assert_false(p->timed_out);
}

static void write_done(uv_write_t *req, int status)
{
	struct end *e = req->data;
	e->writes_done++;
	e->write_status = status ? status : e->write_status;
}

static unsigned char pattern(size_t i)
{
	return (unsigned char)((i * 131) ^ (i >> 9));
}

static bool server_has_big(struct pair *p)
{
	return p->s.len == BIG;
}
static bool client_has_big(struct pair *p)
{
	return p->c.len == BIG && p->s.writes_done == 1;
}

static void big_payloads_cross_both_ways_in_order(void **unused)
{
	struct pair p;
	char *out = malloc(BIG), *back;
	pair_open(&p, cert_a, "localhost");
	for (size_t i = 0; i < BIG; i++)
		out[i] = (char)pattern(i);
	assert_int_equal(sl_tls_read_start(p.s.t, end_alloc, end_read), 0);
	assert_int_equal(sl_tls_read_start(p.c.t, end_alloc, end_read), 0);
	for (int i = 0; i < 4; i++) { /* four queued writes before the handshake */
		uv_buf_t b = uv_buf_init(out + (size_t)i * (BIG / 4), BIG / 4);
		p.c.w[i].data = &p.c;
		assert_int_equal(sl_tls_write(p.c.t, &p.c.w[i], &b, 1, write_done), 0);
	}
	{ /* the queue is bounded */
		uv_write_t extra;
		uv_buf_t b = uv_buf_init(out, 1);
		assert_int_equal(sl_tls_write(p.c.t, &extra, &b, 1, write_done), UV_ENOBUFS);
	}
	assert_int_equal(p.c.writes_done, 0); /* never from inside the call */
	run_until(&p, server_has_big);
	assert_memory_equal(p.s.buf, out, BIG);
	assert_int_equal(p.c.writes_done, 4);
	assert_int_equal(p.c.write_status, 0);
	assert_true(sl_tls_established(p.s.t) && sl_tls_established(p.c.t));
	/* and back, two buffers in one write */
	back = p.s.buf;
	{
		uv_buf_t b[2] = {uv_buf_init(back, 1000), uv_buf_init(back + 1000, BIG - 1000)};
		p.s.w[0].data = &p.s;
		assert_int_equal(sl_tls_write(p.s.t, &p.s.w[0], b, 2, write_done), 0);
	}
	run_until(&p, client_has_big);
	assert_memory_equal(p.c.buf, out, BIG);
	pair_close(&p);
	free(out);
}

static bool server_read_some(struct pair *p)
{
	return p->s.len > 0;
}
static bool client_sent_all(struct pair *p)
{
	return p->c.writes_done == 1;
}

static void a_stopped_reader_gets_held_plaintext_once_it_reads_again(void **unused)
{
	struct pair p;
	static char msg[200000];
	uv_buf_t b = uv_buf_init(msg, sizeof(msg));
	pair_open(&p, cert_a, "localhost");
	memset(msg, 'm', sizeof(msg));
	assert_int_equal(sl_tls_read_start(p.s.t, end_alloc, end_read), 0);
	assert_int_equal(sl_tls_read_start(p.c.t, end_alloc, end_read), 0);
	p.c.w[0].data = &p.c;
	assert_int_equal(sl_tls_write(p.c.t, &p.c.w[0], &b, 1, write_done), 0);
	run_until(&p, server_read_some);
	sl_tls_read_stop(p.s.t);
	{
		size_t seen = p.s.len;
		uv_run(&p.loop, UV_RUN_NOWAIT);
		uv_run(&p.loop, UV_RUN_NOWAIT);
		assert_int_equal(p.s.len, seen); /* nothing delivered while stopped */
	}
	assert_int_equal(sl_tls_read_start(p.s.t, end_alloc, end_read), 0);
	run_until(&p, client_sent_all);
	while (p.s.len < sizeof(msg) && !p.timed_out)
		uv_run(&p.loop, UV_RUN_ONCE);
	assert_int_equal(p.s.len, sizeof(msg));
	assert_true(p.s.reads > 1);
	pair_close(&p);
}

static bool both_established(struct pair *p)
{
	return sl_tls_established(p->c.t) && sl_tls_established(p->s.t) && p->c.len == 2;
}
static bool server_has_3(struct pair *p)
{
	return p->s.len == 3;
}

static void send_is_synchronous_when_the_socket_takes_it(void **unused)
{
	struct pair p;
	uv_buf_t b = uv_buf_init("hi", 2);
	pair_open(&p, cert_a, "localhost");
	assert_int_equal(sl_tls_read_start(p.s.t, end_alloc, end_read), 0);
	assert_int_equal(sl_tls_read_start(p.c.t, end_alloc, end_read), 0);
	p.s.w[0].data = &p.s;
	/* before the handshake a send is queued and completes later */
	assert_int_equal(sl_tls_send(p.s.t, &p.s.w[0], &b, 1, write_done), 0);
	run_until(&p, both_established);
	assert_int_equal(p.s.writes_done, 1);
	b = uv_buf_init("abc", 3);
	assert_int_equal(sl_tls_send(p.c.t, &p.c.w[0], &b, 1, write_done), 1);
	run_until(&p, server_has_3);
	assert_int_equal(p.c.writes_done, 0); /* a send that returned 1 has no callback */
	assert_memory_equal(p.s.buf, "abc", 3);
	pair_close(&p);
}

static bool client_failed(struct pair *p)
{
	return p->c.last_err != 0 && p->c.writes_done == 1;
}

static void verification_failures_are_eproto_with_the_reason(void **unused)
{
	const char *cases[2][3] = {{cert_b, "localhost", "certificate verify failed"},
	                           {cert_a, "other.example", "hostname mismatch"}};
	for (int i = 0; i < 2; i++) {
		struct pair p;
		uv_buf_t b = uv_buf_init("GET / HTTP/1.1\r\n\r\n", 18);
		pair_open(&p, cases[i][0], cases[i][1]);
		assert_int_equal(sl_tls_read_start(p.s.t, end_alloc, end_read), 0);
		assert_int_equal(sl_tls_read_start(p.c.t, end_alloc, end_read), 0);
		p.c.w[0].data = &p.c;
		assert_int_equal(sl_tls_write(p.c.t, &p.c.w[0], &b, 1, write_done), 0);
		run_until(&p, client_failed);
		assert_int_equal(p.c.last_err, UV_EPROTO);
		assert_int_equal(p.c.write_status, UV_EPROTO);
		assert_non_null(strstr(sl_tls_error(p.c.t), cases[i][2]));
		assert_int_equal(p.s.len, 0); /* the request never reached the server */
		pair_close(&p);
	}
}

/* ---- random chunking and pauses ---- */

#define RND_TOTAL (4u << 20) /* bytes */

static uint64_t rnd_state;
static unsigned rnd(unsigned n) /* 0..n-1, xorshift64 */
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return (unsigned)(rnd_state % n);
}

struct rnd_run {
	struct pair *p;
	char *src;
	size_t off;       /* bytes handed to the stream so far */
	unsigned busy;    /* bitmask of p->c.w[] in flight */
	unsigned sync1;   /* sends that completed at once */
	unsigned toggles; /* reader stops + starts */
	bool reading;
	uv_timer_t flip;
};
static struct rnd_run *rr;

static void rnd_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct end *e = h->data;
	size_t room = e->cap - e->len, want = 1 + rnd(9000);
	*b = uv_buf_init(e->buf + e->len, (unsigned)(room < want ? room : want));
}

static void rnd_fill(void);

static void rnd_done(uv_write_t *req, int status)
{
	assert_int_equal(status, 0);
	rr->busy &= ~(1u << (unsigned)(req - rr->p->c.w));
	rnd_fill();
}

/* Keep up to three writes of random sizes (and 1 or 2 buffers) queued,
 * through sl_tls_write or sl_tls_send at random. */
static void rnd_fill(void)
{
	struct pair *p = rr->p;
	for (unsigned i = 0; i < 3 && rr->off < RND_TOTAL; i++) {
		size_t n = 1 + rnd(70000), a;
		uv_buf_t b[2];
		int rc;
		if (rr->busy & (1u << i))
			continue;
		if (n > RND_TOTAL - rr->off)
			n = RND_TOTAL - rr->off;
		a = n > 1 && rnd(2) ? 1 + rnd((unsigned)n - 1) : n;
		b[0] = uv_buf_init(rr->src + rr->off, (unsigned)a);
		b[1] = uv_buf_init(rr->src + rr->off + a, (unsigned)(n - a));
		rr->off += n;
		rr->busy |= 1u << i;
		if (rnd(2)) {
			rc = sl_tls_send(p->c.t, &p->c.w[i], b, n > a ? 2 : 1, rnd_done);
			assert_true(rc == 0 || rc == 1);
			if (rc == 1) {
				rr->busy &= ~(1u << i);
				rr->sync1++;
				i = (unsigned)-1; /* that slot is free again: start over */
			}
		} else {
			assert_int_equal(
			        sl_tls_write(p->c.t, &p->c.w[i], b, n > a ? 2 : 1, rnd_done), 0);
		}
	}
}

static void rnd_flip(uv_timer_t *t)
{
	struct pair *p = rr->p;
	if (rnd(2))
		return;
	rr->toggles++;
	if (rr->reading)
		sl_tls_read_stop(p->s.t);
	else
		assert_int_equal(sl_tls_read_start(p->s.t, rnd_alloc, end_read), 0);
	rr->reading = !rr->reading;
}

static bool rnd_all_in(struct pair *p)
{
	if (p->s.len == RND_TOTAL && !rr->reading) { /* the last bytes may wait on a pause */
		sl_tls_read_start(p->s.t, rnd_alloc, end_read);
		rr->reading = true;
	}
	return p->s.len == RND_TOTAL && rr->busy == 0 && rr->off == RND_TOTAL;
}

static void random_chunks_and_reader_pauses_keep_every_byte_in_order(void **unused)
{
	for (uint64_t seed = 1; seed <= 3; seed++) {
		struct pair p;
		struct rnd_run run = {.p = &p};
		rnd_state = 0x9E3779B97F4A7C15ull * seed;
		rr = &run;
		pair_open(&p, cert_a, "localhost");
		p.s.cap = RND_TOTAL + 16;
		p.s.buf = realloc(p.s.buf, p.s.cap);
		run.src = malloc(RND_TOTAL);
		for (size_t i = 0; i < RND_TOTAL; i++)
			run.src[i] = (char)pattern(i * seed);
		for (int i = 0; i < 4; i++)
			p.c.w[i].data = &p.c;
		assert_int_equal(sl_tls_read_start(p.s.t, rnd_alloc, end_read), 0);
		assert_int_equal(sl_tls_read_start(p.c.t, end_alloc, end_read), 0);
		run.reading = true;
		uv_timer_init(&p.loop, &run.flip);
		uv_timer_start(&run.flip, rnd_flip, 1, 1);
		rnd_fill();
		run_until(&p, rnd_all_in);
		assert_memory_equal(p.s.buf, run.src, RND_TOTAL);
		assert_true(run.toggles > 2);
		uv_close((uv_handle_t *)&run.flip, tcp_closed);
		pair_close(&p);
		free(run.src);
	}
}

static void close_with_queued_writes_cancels_them(void **unused)
{
	struct pair p;
	uv_buf_t b = uv_buf_init("x", 1);
	pair_open(&p, cert_a, "localhost");
	p.c.w[0].data = p.c.w[1].data = &p.c;
	assert_int_equal(sl_tls_write(p.c.t, &p.c.w[0], &b, 1, write_done), 0);
	assert_int_equal(sl_tls_write(p.c.t, &p.c.w[1], &b, 1, write_done), 0);
	sl_tls_close(p.c.t, end_closed, &p.c);
	assert_int_equal(sl_tls_write(p.c.t, &p.c.w[2], &b, 1, write_done), UV_ECANCELED);
	assert_int_equal(p.c.writes_done, 0);
	pair_close(&p);
	assert_int_equal(p.c.writes_done, 2);
	assert_int_equal(p.c.write_status, UV_ECANCELED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(server_ctx_refuses_missing_garbage_and_mismatched_files),
	        cmocka_unit_test(client_ctx_refuses_a_missing_or_empty_ca),
	        cmocka_unit_test(big_payloads_cross_both_ways_in_order),
	        cmocka_unit_test(a_stopped_reader_gets_held_plaintext_once_it_reads_again),
	        cmocka_unit_test(send_is_synchronous_when_the_socket_takes_it),
	        cmocka_unit_test(verification_failures_are_eproto_with_the_reason),
	        cmocka_unit_test(close_with_queued_writes_cancels_them),
	        cmocka_unit_test(random_chunks_and_reader_pauses_keep_every_byte_in_order),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
