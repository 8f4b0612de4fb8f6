/* libFuzzer target: arbitrary bytes as one message on the takeover control
 * socket (src/daemon/takeover_wire.c, compiled in: the daemon's files are
 * not a library), the parser every byte from a peer goes through. The
 * first input byte is the number of descriptors that came with it (mod
 * SL_TK_MAX_FDS + 1). Per input:
 *   - the return is 0 or SL_EPROTO;
 *   - a parsed message's views lie inside the input, names are
 *     NUL-terminated, and re-encoding its entries gives a message that
 *     parses to the same entries.
 * Anything else aborts (a finding).
 *
 * Build: make fuzz (build-fuzz/fuzz_takeover_msg)
 * Run:   ./scripts/fuzz-run.sh build-fuzz 30 (corpus: corpus/takeover_msg/) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "daemon/takeover_wire.c"

static struct sl_tk_msg m, m2;
static uint8_t out[SL_TK_MSG_MAX];

static void inside(const uint8_t *p, size_t n, const uint8_t *buf, size_t len)
{
	if (n && (p < buf || p + n > buf + len))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	size_t nfds = data[0] % (SL_TK_MAX_FDS + 1);
	const uint8_t *buf = data + 1;
	size_t len = size - 1;
	int rc = sl_tk_parse(buf, len, nfds, &m);
	struct sl_tk_enc e;

	if (rc != 0) {
		if (rc != SL_EPROTO)
			abort();
		return 0;
	}
	if (m.text)
		inside((const uint8_t *)m.text, m.text_len, buf, len);
	switch (m.type) {
	case SL_TK_SOCKS:
		if (m.n != nfds)
			abort();
		sl_tk_begin(&e, out, sizeof(out), SL_TK_SOCKS);
		sl_tk_list(&e);
		for (size_t i = 0; i < m.n; i++) {
			if (!memchr(m.socks[i].name, 0, sizeof(m.socks[i].name)))
				abort();
			if (!sl_tk_put_sock(&e, &m.socks[i]))
				abort();
		}
		if (sl_tk_parse(out, sl_tk_end(&e), m.n, &m2) != 0 || m2.n != m.n)
			abort();
		for (size_t i = 0; i < m.n; i++)
			if (!sl_tk_addr_eq(&m.socks[i].addr, &m2.socks[i].addr) ||
			    strcmp(m.socks[i].name, m2.socks[i].name) != 0 ||
			    m.socks[i].index != m2.socks[i].index)
				abort();
		break;
	case SL_TK_CONNS:
		if (m.n != nfds)
			abort();
		sl_tk_begin(&e, out, sizeof(out), SL_TK_CONNS);
		sl_tk_list(&e);
		for (size_t i = 0; i < m.n; i++) {
			inside(m.conns[i].bytes, m.conns[i].len, buf, len);
			if (!sl_tk_put_conn(&e, m.conns[i].index, m.conns[i].bytes, m.conns[i].len))
				abort();
		}
		if (sl_tk_parse(out, sl_tk_end(&e), m.n, &m2) != 0 || m2.n != m.n)
			abort();
		break;
	case SL_TK_RELEASE:
		sl_tk_begin(&e, out, sizeof(out), SL_TK_RELEASE);
		sl_tk_list(&e);
		for (size_t i = 0; i < m.n; i++) {
			struct sl_tk_release r;
			sl_tk_release_at(&m, i, &r);
			inside(r.key, r.key_len, buf, len);
			inside((const uint8_t *)r.name, r.name_len, buf, len);
			if (!sl_tk_put_release(&e, &r))
				abort();
		}
		if (sl_tk_parse(out, sl_tk_end(&e), 0, &m2) != 0 || m2.n != m.n)
			abort();
		break;
	default:
		if (nfds)
			abort();
		break;
	}
	return 0;
}
