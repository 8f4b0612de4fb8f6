/* Redis Cluster addressing for the Redis store: the CRC16 slot function,
 * parsing of MOVED/ASK redirections, of CLUSTER SLOTS replies and of the
 * store URL. The slot map itself lives per worker in redis.c; this file
 * has no state. */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <hiredis/hiredis.h>
#include <sluice/error.h>
#include "store/redis_int.h"

/* Bitwise CRC16/XMODEM: 8 shifts per byte. Keys are short (tens of bytes)
 * and one slot is computed per check, so a 512-byte table buys nothing. */
uint16_t sl_redis_crc16(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint16_t crc = 0;

	for (size_t i = 0; i < len; i++) {
		crc ^= (uint16_t)(b[i] << 8);
		for (int k = 0; k < 8; k++)
			crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
			                     : (uint16_t)(crc << 1);
	}
	return crc;
}

unsigned sl_redis_key_slot(const char *key, size_t len)
{
	const char *open = memchr(key, '{', len);

	if (open) {
		size_t rest = len - (size_t)(open - key) - 1;
		const char *close = memchr(open + 1, '}', rest);

		if (close && close > open + 1)
			return sl_redis_crc16(open + 1, (size_t)(close - open - 1)) &
			       (SL_REDIS_SLOTS - 1);
	}
	return sl_redis_crc16(key, len) & (SL_REDIS_SLOTS - 1);
}

int sl_redis_parse_redirect(const char *err, size_t len, unsigned *slot, char *host, size_t hostcap,
                            int *port)
{
	char buf[160];
	const char *p, *colon;
	char *end;
	unsigned long v;
	int kind;

	if (len >= sizeof(buf))
		return 0;
	memcpy(buf, err, len);
	buf[len] = '\0';
	if (strncmp(buf, "MOVED ", 6) == 0) {
		kind = 1;
		p = buf + 6;
	} else if (strncmp(buf, "ASK ", 4) == 0) {
		kind = 2;
		p = buf + 4;
	} else {
		return 0;
	}
	v = strtoul(p, &end, 10);
	if (end == p || *end != ' ' || v >= SL_REDIS_SLOTS)
		return 0;
	p = end + 1;
	colon = strrchr(p, ':'); /* the last one: IPv6 hosts contain colons */
	if (!colon || (size_t)(colon - p) >= hostcap)
		return 0;
	*slot = (unsigned)v;
	memcpy(host, p, (size_t)(colon - p));
	host[colon - p] = '\0';
	v = strtoul(colon + 1, &end, 10);
	if (end == colon + 1 || v == 0 || v > 65535)
		return 0;
	*port = (int)v;
	return kind;
}

unsigned sl_redis_slot_map(const redisReply *r, const char *from_host, sl_redis_node_fn node,
                           void *arg, uint8_t map[SL_REDIS_SLOTS])
{
	unsigned covered = 0;

	memset(map, SL_REDIS_NO_NODE, SL_REDIS_SLOTS);
	if (!r || r->type != REDIS_REPLY_ARRAY)
		return 0;
	for (size_t i = 0; i < r->elements; i++) {
		const redisReply *e = r->element[i], *m;
		const char *host;
		unsigned n;
		long long lo, hi; /* slots */

		if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
		    e->element[0]->type != REDIS_REPLY_INTEGER ||
		    e->element[1]->type != REDIS_REPLY_INTEGER ||
		    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2)
			continue;
		m = e->element[2];
		if (m->element[0]->type != REDIS_REPLY_STRING ||
		    m->element[1]->type != REDIS_REPLY_INTEGER || m->element[1]->integer < 1 ||
		    m->element[1]->integer > 65535)
			continue;
		/* An empty or "?" address means "the node you asked". */
		host = m->element[0]->len && strcmp(m->element[0]->str, "?") != 0
		               ? m->element[0]->str
		               : from_host;
		n = node(arg, host, (int)m->element[1]->integer);
		if (n == SL_REDIS_NO_NODE)
			continue;
		/* clamped first: a range from -2^63 would be 2^63 steps */
		lo = e->element[0]->integer < 0 ? 0 : e->element[0]->integer;
		hi = e->element[1]->integer < SL_REDIS_SLOTS ? e->element[1]->integer
		                                             : SL_REDIS_SLOTS - 1;
		for (long long s = lo; s <= hi; s++) {
			if (map[s] == SL_REDIS_NO_NODE) {
				map[s] = (uint8_t)n;
				covered++;
			}
		}
	}
	return covered;
}

/* Resolve one "host[:port]" of hlen bytes into out. */
static int parse_one(const char *p, size_t hlen, struct sl_redis_addr *out)
{
	char host[256];
	const char *colon = NULL;
	struct addrinfo hints, *ai = NULL;
	long port = 6379;

	if (hlen == 0 || hlen >= sizeof(host))
		return SL_EINVAL;
	memcpy(host, p, hlen);
	host[hlen] = '\0';
	if (host[0] == '[') { /* [v6]:port */
		char *rb = strchr(host, ']');

		if (!rb)
			return SL_EINVAL;
		*rb = '\0';
		memmove(host, host + 1, strlen(host + 1) + 1);
		colon = rb[1] == ':' ? rb + 1 : NULL;
		if (colon) {
			char *end;

			port = strtol(rb + 2, &end, 10);
			if (*end != '\0')
				return SL_EINVAL;
		}
	} else if ((colon = strrchr(host, ':')) && strchr(host, ':') == colon) {
		char *end;

		port = strtol(colon + 1, &end, 10);
		if (end == colon + 1 || *end != '\0')
			return SL_EINVAL;
		host[colon - host] = '\0';
	}
	if (port <= 0 || port > 65535 || host[0] == '\0')
		return SL_EINVAL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (getaddrinfo(host, NULL, &hints, &ai) != 0 || !ai)
		return SL_EINVAL;
	if (getnameinfo(ai->ai_addr, ai->ai_addrlen, out->host, sizeof(out->host), NULL, 0,
	                NI_NUMERICHOST) != 0) {
		freeaddrinfo(ai);
		return SL_EINVAL;
	}
	freeaddrinfo(ai);
	out->port = (int)port;
	return 0;
}

int sl_redis_parse_url(const char *url, struct sl_redis_addr *out, unsigned max)
{
	const char *p = url;
	unsigned n = 0;

	if (!url)
		return SL_EINVAL;
	while (*p) {
		const char *comma, *slash;
		size_t len;
		int rc;

		if (strncmp(p, "redis://", 8) == 0)
			p += 8;
		comma = strchr(p, ',');
		len = comma ? (size_t)(comma - p) : strlen(p);
		slash = memchr(p, '/', len); /* "/db" suffix: ignored */
		if (slash)
			len = (size_t)(slash - p);
		if (n == max)
			return SL_ERANGE;
		rc = parse_one(p, len, &out[n]);
		if (rc < 0)
			return rc;
		n++;
		if (!comma)
			break;
		p = comma + 1;
	}
	return n ? (int)n : SL_EINVAL;
}
