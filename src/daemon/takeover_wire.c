/* Takeover messages (takeover_wire.h): a 12-byte head (magic "SLTK",
 * version, type, flags, payload length) and a little-endian payload. The
 * parser trusts nothing: the length must match what was received, every
 * entry must fit, and the descriptor count must match the entries, so a
 * stray or hostile client on the control socket is refused, never
 * half-believed. */
#include <netinet/in.h>
#include <string.h>
#include <sluice/error.h>
#include "daemon/takeover_wire.h"

/* ---- reading ---- */

struct rd {
	const uint8_t *p;
	size_t len, pos; /* bytes */
	bool bad;
};

static bool need(struct rd *r, size_t n)
{
	if (r->bad || r->len - r->pos < n) {
		r->bad = true;
		return false;
	}
	return true;
}

static uint8_t get8(struct rd *r)
{
	return need(r, 1) ? r->p[r->pos++] : 0;
}

static uint16_t get16(struct rd *r)
{
	if (!need(r, 2))
		return 0;
	uint16_t v = (uint16_t)(r->p[r->pos] | r->p[r->pos + 1] << 8);
	r->pos += 2;
	return v;
}

static uint32_t get32(struct rd *r)
{
	if (!need(r, 4))
		return 0;
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = v << 8 | r->p[r->pos + (size_t)i];
	r->pos += 4;
	return v;
}

static uint64_t get64(struct rd *r)
{
	uint64_t lo = get32(r);
	return lo | (uint64_t)get32(r) << 32;
}

static const uint8_t *get_bytes(struct rd *r, size_t n)
{
	if (!need(r, n))
		return NULL;
	const uint8_t *p = r->p + r->pos;
	r->pos += n;
	return p;
}

static bool get_sock(struct rd *r, struct sl_tk_sock *s)
{
	uint8_t family, nlen;
	uint16_t port;
	const uint8_t *a, *name;

	memset(s, 0, sizeof(*s));
	s->index = get16(r);
	s->kind = get8(r);
	family = get8(r);
	port = get16(r);
	a = get_bytes(r, 16);
	nlen = get8(r);
	name = get_bytes(r, nlen);
	if (r->bad || s->kind < 1 || s->kind > 3 || nlen >= SL_TK_NAME)
		return false;
	memcpy(s->name, name, nlen);
	s->name[nlen] = 0;
	if (family == 4) {
		struct sockaddr_in *in = (struct sockaddr_in *)&s->addr;
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		memcpy(&in->sin_addr, a, 4);
		s->addrlen = sizeof(*in);
	} else if (family == 6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&s->addr;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		memcpy(&in6->sin6_addr, a, 16);
		s->addrlen = sizeof(*in6);
	} else {
		return false;
	}
	return true;
}

/* A RELEASE entry: u64 limit_id, u64 cost, u64 n, u64 period, u16 key
 * length, key, u8 name length, name. */
static bool get_release(struct rd *r, struct sl_tk_release *out)
{
	out->limit_id = get64(r);
	out->cost = get64(r);
	out->n = get64(r);
	out->period = (int64_t)get64(r);
	out->key_len = get16(r);
	out->key = get_bytes(r, out->key_len);
	out->name_len = get8(r);
	out->name = (const char *)get_bytes(r, out->name_len);
	return !r->bad && out->name_len < SL_TK_NAME;
}

int sl_tk_parse(const uint8_t *buf, size_t len, size_t nfds, struct sl_tk_msg *m)
{
	struct rd r = {buf, len, 0, false};
	uint32_t plen;
	uint16_t count;

	memset(m, 0, offsetof(struct sl_tk_msg, socks));
	m->n = 0;
	m->rel = NULL;
	m->rel_len = 0;
	if (len < SL_TK_HEAD || len > SL_TK_MSG_MAX || memcmp(buf, SL_TK_MAGIC, 4) != 0)
		return SL_EPROTO;
	r.pos = 4;
	if (get8(&r) != SL_TK_VERSION)
		return SL_EPROTO;
	m->type = get8(&r);
	if (get16(&r) != 0) /* flags: none defined */
		return SL_EPROTO;
	plen = get32(&r);
	if (plen != len - SL_TK_HEAD || m->type < 1 || m->type > SL_TK_TYPE_MAX)
		return SL_EPROTO;
	if (nfds && m->type != SL_TK_SOCKS && m->type != SL_TK_CONNS)
		return SL_EPROTO;
	switch (m->type) {
	case SL_TK_HELLO:
		m->pid = get32(&r);
		break;
	case SL_TK_SOCKS:
		count = get16(&r);
		if (count == 0 || count > SL_TK_MAX_FDS || count != nfds)
			return SL_EPROTO;
		for (size_t i = 0; i < count; i++)
			if (!get_sock(&r, &m->socks[i]))
				return SL_EPROTO;
		m->n = count;
		break;
	case SL_TK_SOCKS_END:
		m->pid = get32(&r);
		m->workers = get16(&r);
		m->total = get32(&r);
		break;
	case SL_TK_SAVED:
		m->has_snapshot = get8(&r) != 0;
		m->text_len = get16(&r);
		m->text = (const char *)get_bytes(&r, m->text_len);
		if (!r.bad && m->has_snapshot != (m->text_len > 0))
			return SL_EPROTO;
		if (!r.bad && memchr(m->text, 0, m->text_len))
			return SL_EPROTO;
		break;
	case SL_TK_CONNS:
		count = get16(&r);
		if (count == 0 || count > SL_TK_MAX_FDS || count != nfds)
			return SL_EPROTO;
		for (size_t i = 0; i < count; i++) {
			m->conns[i].index = get16(&r);
			m->conns[i].len = get32(&r);
			m->conns[i].bytes = get_bytes(&r, m->conns[i].len);
		}
		m->n = count;
		break;
	case SL_TK_RELEASE: {
		struct sl_tk_release one;
		count = get16(&r);
		m->rel = buf + r.pos;
		for (size_t i = 0; i < count; i++)
			if (!get_release(&r, &one))
				return SL_EPROTO;
		m->rel_len = (size_t)(buf + r.pos - m->rel);
		m->n = count;
		break;
	}
	case SL_TK_ABORT:
		m->text_len = get16(&r);
		m->text = (const char *)get_bytes(&r, m->text_len);
		break;
	default: /* READY, STARTED, BYE: no payload */
		break;
	}
	if (r.bad || r.pos != len)
		return SL_EPROTO;
	return 0;
}

int sl_tk_version(const uint8_t *buf, size_t len)
{
	if (len < 5 || memcmp(buf, SL_TK_MAGIC, 4) != 0)
		return -1;
	return buf[4];
}

size_t sl_tk_release_next(const uint8_t *p, size_t len, struct sl_tk_release *out)
{
	struct rd r = {p, len, 0, false};
	return get_release(&r, out) ? r.pos : 0;
}

void sl_tk_release_at(const struct sl_tk_msg *m, size_t i, struct sl_tk_release *out)
{
	struct rd r = {m->rel, m->rel_len, 0, false};
	for (size_t k = 0; k <= i; k++)
		get_release(&r, out);
}

/* ---- writing ---- */

static void put(struct sl_tk_enc *e, const void *p, size_t n)
{
	if (n == 0)
		return;
	if (e->overflow || e->cap - e->len < n) {
		e->overflow = true;
		return;
	}
	memcpy(e->buf + e->len, p, n);
	e->len += n;
}

void sl_tk_u8(struct sl_tk_enc *e, uint8_t v)
{
	put(e, &v, 1);
}

void sl_tk_u16(struct sl_tk_enc *e, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)};
	put(e, b, 2);
}

void sl_tk_u32(struct sl_tk_enc *e, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
	put(e, b, 4);
}

void sl_tk_u64(struct sl_tk_enc *e, uint64_t v)
{
	sl_tk_u32(e, (uint32_t)v);
	sl_tk_u32(e, (uint32_t)(v >> 32));
}

void sl_tk_bytes(struct sl_tk_enc *e, const void *p, size_t n)
{
	put(e, p, n);
}

void sl_tk_text(struct sl_tk_enc *e, const char *s, size_t n)
{
	if (n > 65535)
		n = 65535;
	sl_tk_u16(e, (uint16_t)n);
	put(e, s, n);
}

void sl_tk_begin(struct sl_tk_enc *e, uint8_t *buf, size_t cap, uint8_t type)
{
	e->buf = buf;
	e->cap = cap < SL_TK_MSG_MAX ? cap : SL_TK_MSG_MAX;
	e->len = 0;
	e->overflow = false;
	e->count_at = 0;
	e->count = 0;
	put(e, SL_TK_MAGIC, 4);
	sl_tk_u8(e, SL_TK_VERSION);
	sl_tk_u8(e, type);
	sl_tk_u16(e, 0);
	sl_tk_u32(e, 0); /* patched by sl_tk_end */
}

void sl_tk_list(struct sl_tk_enc *e)
{
	e->count_at = e->len;
	e->count = 0;
	sl_tk_u16(e, 0);
}

static bool room(const struct sl_tk_enc *e, size_t n)
{
	return !e->overflow && e->cap - e->len >= n && e->count < 65535;
}

bool sl_tk_put_sock(struct sl_tk_enc *e, const struct sl_tk_sock *s)
{
	size_t nlen = strnlen(s->name, SL_TK_NAME - 1);
	uint8_t a[16] = {0};
	uint16_t port;
	uint8_t family;

	if (!room(e, 2 + 1 + 1 + 2 + 16 + 1 + nlen) || e->count >= SL_TK_MAX_FDS)
		return false;
	if (s->addr.ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)&s->addr;
		family = 4;
		port = ntohs(in->sin_port);
		memcpy(a, &in->sin_addr, 4);
	} else {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&s->addr;
		family = 6;
		port = ntohs(in6->sin6_port);
		memcpy(a, &in6->sin6_addr, 16);
	}
	sl_tk_u16(e, s->index);
	sl_tk_u8(e, s->kind);
	sl_tk_u8(e, family);
	sl_tk_u16(e, port);
	put(e, a, 16);
	sl_tk_u8(e, (uint8_t)nlen);
	put(e, s->name, nlen);
	e->count++;
	return true;
}

bool sl_tk_put_conn(struct sl_tk_enc *e, uint16_t index, const void *bytes, uint32_t n)
{
	if (!room(e, 6 + (size_t)n) || e->count >= SL_TK_MAX_FDS)
		return false;
	sl_tk_u16(e, index);
	sl_tk_u32(e, n);
	put(e, bytes, n);
	e->count++;
	return true;
}

bool sl_tk_put_release(struct sl_tk_enc *e, const struct sl_tk_release *r)
{
	if (!room(e, 35 + (size_t)r->key_len + r->name_len) || r->name_len >= SL_TK_NAME)
		return false;
	sl_tk_u64(e, r->limit_id);
	sl_tk_u64(e, r->cost);
	sl_tk_u64(e, r->n);
	sl_tk_u64(e, (uint64_t)r->period);
	sl_tk_u16(e, r->key_len);
	put(e, r->key, r->key_len);
	sl_tk_u8(e, r->name_len);
	put(e, r->name, r->name_len);
	e->count++;
	return true;
}

size_t sl_tk_end(struct sl_tk_enc *e)
{
	if (e->overflow || e->len < SL_TK_HEAD)
		return 0;
	uint32_t plen = (uint32_t)(e->len - SL_TK_HEAD);
	for (int i = 0; i < 4; i++)
		e->buf[8 + i] = (uint8_t)(plen >> (8 * i));
	if (e->count_at) {
		e->buf[e->count_at] = (uint8_t)e->count;
		e->buf[e->count_at + 1] = (uint8_t)(e->count >> 8);
	}
	return e->len;
}

bool sl_tk_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
		return x->sin_port == y->sin_port &&
		       memcmp(&x->sin_addr, &y->sin_addr, sizeof(x->sin_addr)) == 0;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
		return x->sin6_port == y->sin6_port &&
		       memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}
