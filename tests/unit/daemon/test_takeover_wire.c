/* The takeover control messages (src/daemon/takeover_wire.c, compiled in
 * here): every message type encodes and parses back to what was put in,
 * and the parser refuses every malformed variant an attacker on the
 * control socket could send: wrong magic, version, flags or length, an
 * unknown type, descriptors where none belong or a count that does not
 * match them, bad entries, trailing bytes, and every truncation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <cmocka.h>
#include <sluice/error.h>

#include "daemon/takeover_wire.h"

static uint8_t buf[SL_TK_MSG_MAX];
static struct sl_tk_msg m;

static struct sl_tk_sock sock4(uint16_t index, const char *ip, uint16_t port, const char *name)
{
	struct sl_tk_sock s;
	struct sockaddr_in *in = (struct sockaddr_in *)&s.addr;
	memset(&s, 0, sizeof(s));
	s.index = index;
	s.kind = 1;
	in->sin_family = AF_INET;
	in->sin_port = htons(port);
	inet_pton(AF_INET, ip, &in->sin_addr);
	s.addrlen = sizeof(*in);
	snprintf(s.name, sizeof(s.name), "%s", name);
	return s;
}

static size_t socks_msg(size_t n)
{
	struct sl_tk_enc e;
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SOCKS);
	sl_tk_list(&e);
	for (size_t i = 0; i < n; i++) {
		struct sl_tk_sock s = sock4((uint16_t)i, "127.0.0.1", (uint16_t)(8000 + i), "gw");
		assert_true(sl_tk_put_sock(&e, &s));
	}
	return sl_tk_end(&e);
}

static void hello_and_empty_messages_round_trip(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_HELLO);
	sl_tk_u32(&e, 4242);
	size_t n = sl_tk_end(&e);
	assert_int_equal(n, SL_TK_HEAD + 4);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), 0);
	assert_int_equal(m.type, SL_TK_HELLO);
	assert_int_equal(m.pid, 4242);
	const uint8_t types[] = {SL_TK_READY, SL_TK_STARTED, SL_TK_BYE, SL_TK_COMMIT,
	                         SL_TK_WELCOME};
	for (size_t i = 0; i < sizeof(types); i++) {
		sl_tk_begin(&e, buf, sizeof(buf), types[i]);
		n = sl_tk_end(&e);
		assert_int_equal(n, SL_TK_HEAD);
		assert_int_equal(sl_tk_parse(buf, n, 0, &m), 0);
		assert_int_equal(m.type, types[i]);
	}
}

static void socks_round_trip_v4_and_v6(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	struct sl_tk_sock a = sock4(3, "10.1.2.3", 8080, "gateway"), b, got;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&b.addr;

	memset(&b, 0, sizeof(b));
	b.index = 4;
	b.kind = 3;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(9901);
	inet_pton(AF_INET6, "::1", &in6->sin6_addr);
	snprintf(b.name, sizeof(b.name), "admin");
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SOCKS);
	sl_tk_list(&e);
	assert_true(sl_tk_put_sock(&e, &a));
	assert_true(sl_tk_put_sock(&e, &b));
	size_t n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 2, &m), 0);
	assert_int_equal(m.n, 2);
	got = m.socks[0];
	assert_int_equal(got.index, 3);
	assert_int_equal(got.kind, 1);
	assert_string_equal(got.name, "gateway");
	assert_true(sl_tk_addr_eq(&got.addr, &a.addr));
	assert_int_equal(got.addrlen, sizeof(struct sockaddr_in));
	got = m.socks[1];
	assert_int_equal(got.kind, 3);
	assert_string_equal(got.name, "admin");
	assert_true(sl_tk_addr_eq(&got.addr, &b.addr));
	assert_false(sl_tk_addr_eq(&m.socks[0].addr, &m.socks[1].addr));
	/* the descriptors must match the entries */
	assert_int_equal(sl_tk_parse(buf, n, 1, &m), SL_EPROTO);
	assert_int_equal(sl_tk_parse(buf, n, 3, &m), SL_EPROTO);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), SL_EPROTO);
}

static void an_entry_list_holds_at_most_max_fds(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	struct sl_tk_sock s = sock4(0, "127.0.0.1", 1, "x");
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SOCKS);
	sl_tk_list(&e);
	for (int i = 0; i < SL_TK_MAX_FDS; i++)
		assert_true(sl_tk_put_sock(&e, &s));
	assert_false(sl_tk_put_sock(&e, &s));
	size_t n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, SL_TK_MAX_FDS, &m), 0);
	/* an empty list is refused: SOCKS and CONNS always carry something */
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_CONNS);
	sl_tk_list(&e);
	n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), SL_EPROTO);
}

static void conns_carry_undecided_bytes(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	const char *head = "GET /x HTTP/1.1\r\nHost: a\r\n";
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_CONNS);
	sl_tk_list(&e);
	assert_true(sl_tk_put_conn(&e, 0, NULL, 0));
	assert_true(sl_tk_put_conn(&e, 2, head, (uint32_t)strlen(head)));
	size_t n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 2, &m), 0);
	assert_int_equal(m.n, 2);
	assert_int_equal(m.conns[0].len, 0);
	assert_int_equal(m.conns[1].index, 2);
	assert_int_equal(m.conns[1].len, strlen(head));
	assert_memory_equal(m.conns[1].bytes, head, strlen(head));
	/* bytes that do not fit the message are refused by the encoder */
	static char big[SL_TK_MSG_MAX];
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_CONNS);
	sl_tk_list(&e);
	assert_false(sl_tk_put_conn(&e, 0, big, sizeof(big)));
	assert_true(sl_tk_put_conn(&e, 0, big, 1000));
	assert_true(sl_tk_end(&e) > 1000);
}

static void releases_round_trip(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	struct sl_tk_release r[3] =
	        {
	                {1, 1, 5, 60000000000LL, (const uint8_t *)"1.2.3.4", 7, "inflight", 8},
	                {UINT64_MAX, 3, 50, 1, (const uint8_t *)"", 0, "", 0},
	                {7, 2, 1, 2, (const uint8_t *)"k\0y", 3, "c", 1},
	        },
	                     got;
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_RELEASE);
	sl_tk_list(&e);
	for (int i = 0; i < 3; i++)
		assert_true(sl_tk_put_release(&e, &r[i]));
	size_t n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), 0);
	assert_int_equal(m.n, 3);
	for (size_t i = 0; i < 3; i++) {
		sl_tk_release_at(&m, i, &got);
		assert_true(got.limit_id == r[i].limit_id);
		assert_true(got.cost == r[i].cost);
		assert_true(got.n == r[i].n);
		assert_true(got.period == r[i].period);
		assert_int_equal(got.key_len, r[i].key_len);
		assert_memory_equal(got.key, r[i].key, r[i].key_len);
		assert_int_equal(got.name_len, r[i].name_len);
		assert_memory_equal(got.name, r[i].name, r[i].name_len);
	}
	/* a release message never carries descriptors */
	assert_int_equal(sl_tk_parse(buf, n, 1, &m), SL_EPROTO);
}

static void saved_and_abort_texts(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SAVED);
	sl_tk_u8(&e, 1);
	sl_tk_text(&e, "/var/lib/sluice/state.snap", 26);
	size_t n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), 0);
	assert_true(m.has_snapshot);
	assert_int_equal(m.text_len, 26);
	assert_memory_equal(m.text, "/var/lib/sluice/state.snap", 26);
	/* "a snapshot" with no path, a path without one, a NUL inside: refused */
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SAVED);
	sl_tk_u8(&e, 1);
	sl_tk_text(&e, "", 0);
	assert_int_equal(sl_tk_parse(buf, sl_tk_end(&e), 0, &m), SL_EPROTO);
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SAVED);
	sl_tk_u8(&e, 0);
	sl_tk_text(&e, "x", 1);
	assert_int_equal(sl_tk_parse(buf, sl_tk_end(&e), 0, &m), SL_EPROTO);
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_SAVED);
	sl_tk_u8(&e, 1);
	sl_tk_text(&e, "a\0b", 3);
	assert_int_equal(sl_tk_parse(buf, sl_tk_end(&e), 0, &m), SL_EPROTO);
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_ABORT);
	sl_tk_text(&e, "busy", 4);
	n = sl_tk_end(&e);
	assert_int_equal(sl_tk_parse(buf, n, 0, &m), 0);
	assert_int_equal(m.type, SL_TK_ABORT);
	assert_memory_equal(m.text, "busy", 4);
}

static void head_faults_are_refused(void **unused)
{
	(void)unused;
	size_t n = socks_msg(2);
	static uint8_t bad[SL_TK_MSG_MAX + 16];
	struct {
		size_t at;
		uint8_t v;
	} faults[] = {
	        {0, 'X'},               /* magic */
	        {4, 2},                 /* version */
	        {5, 0},                 /* type 0 */
	        {5, 200},               /* unknown type */
	        {6, 1},                 /* flags */
	        {8, 0},                 /* length lies (low byte) */
	        {11, 1},                /* length lies (high byte) */
	        {SL_TK_HEAD, 3},        /* entry count (2 -> 3) */
	        {SL_TK_HEAD + 4, 0},    /* kind 0 */
	        {SL_TK_HEAD + 4, 9},    /* kind 9 */
	        {SL_TK_HEAD + 5, 5},    /* family 5 */
	        {SL_TK_HEAD + 24, 200}, /* name length past the end */
	};
	assert_int_equal(sl_tk_parse(buf, n, 2, &m), 0);
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		memcpy(bad, buf, n);
		bad[faults[i].at] = faults[i].v;
		assert_int_equal(sl_tk_parse(bad, n, 2, &m), SL_EPROTO);
	}
	/* a trailing byte, even when the length says so */
	memcpy(bad, buf, n);
	bad[n] = 0;
	assert_int_equal(sl_tk_parse(bad, n + 1, 2, &m), SL_EPROTO);
	bad[8]++;
	assert_int_equal(sl_tk_parse(bad, n + 1, 2, &m), SL_EPROTO);
	/* too long a message, too short a head */
	assert_int_equal(sl_tk_parse(bad, SL_TK_MSG_MAX + 1, 0, &m), SL_EPROTO);
	assert_int_equal(sl_tk_parse(buf, SL_TK_HEAD - 1, 0, &m), SL_EPROTO);
	/* descriptors on a message that has none */
	struct sl_tk_enc e;
	sl_tk_begin(&e, buf, sizeof(buf), SL_TK_READY);
	assert_int_equal(sl_tk_parse(buf, sl_tk_end(&e), 1, &m), SL_EPROTO);
}

/* Every proper prefix of every valid message is refused (with its length
 * patched to claim exactly that prefix too). */
static void every_truncation_is_refused(void **unused)
{
	(void)unused;
	static uint8_t msgs[4][1024], cut[1024];
	size_t lens[4], fds[4] = {2, 1, 0, 0};
	struct sl_tk_enc e;

	lens[0] = socks_msg(2);
	memcpy(msgs[0], buf, lens[0]);
	sl_tk_begin(&e, msgs[1], sizeof(msgs[1]), SL_TK_CONNS);
	sl_tk_list(&e);
	sl_tk_put_conn(&e, 1, "GET / HT", 8);
	lens[1] = sl_tk_end(&e);
	struct sl_tk_release r = {1, 1, 5, 9, (const uint8_t *)"key", 3, "n", 1};
	sl_tk_begin(&e, msgs[2], sizeof(msgs[2]), SL_TK_RELEASE);
	sl_tk_list(&e);
	sl_tk_put_release(&e, &r);
	lens[2] = sl_tk_end(&e);
	sl_tk_begin(&e, msgs[3], sizeof(msgs[3]), SL_TK_SOCKS_END);
	sl_tk_u32(&e, 1);
	sl_tk_u16(&e, 2);
	sl_tk_u32(&e, 3);
	lens[3] = sl_tk_end(&e);
	for (int k = 0; k < 4; k++) {
		assert_int_equal(sl_tk_parse(msgs[k], lens[k], fds[k], &m), 0);
		for (size_t len = 0; len < lens[k]; len++) {
			memcpy(cut, msgs[k], len);
			assert_int_equal(sl_tk_parse(cut, len, fds[k], &m), SL_EPROTO);
			if (len >= SL_TK_HEAD) {
				uint32_t plen = (uint32_t)(len - SL_TK_HEAD);
				for (int i = 0; i < 4; i++)
					cut[8 + i] = (uint8_t)(plen >> (8 * i));
				assert_int_equal(sl_tk_parse(cut, len, fds[k], &m), SL_EPROTO);
			}
		}
	}
}

static void a_full_buffer_fails_the_whole_message(void **unused)
{
	(void)unused;
	struct sl_tk_enc e;
	uint8_t small[16];
	sl_tk_begin(&e, small, sizeof(small), SL_TK_ABORT);
	sl_tk_text(&e, "a reason longer than the buffer", 31);
	assert_int_equal(sl_tk_end(&e), 0);
	sl_tk_begin(&e, small, 4, SL_TK_READY); /* not even the head */
	assert_int_equal(sl_tk_end(&e), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	        cmocka_unit_test(hello_and_empty_messages_round_trip),
	        cmocka_unit_test(socks_round_trip_v4_and_v6),
	        cmocka_unit_test(an_entry_list_holds_at_most_max_fds),
	        cmocka_unit_test(conns_carry_undecided_bytes),
	        cmocka_unit_test(releases_round_trip),
	        cmocka_unit_test(saved_and_abort_texts),
	        cmocka_unit_test(head_faults_are_refused),
	        cmocka_unit_test(every_truncation_is_refused),
	        cmocka_unit_test(a_full_buffer_fails_the_whole_message),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
