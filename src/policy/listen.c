/* Listen address parsing and resolution (listen.h). IP literals are parsed
 * with inet_pton and never reach the resolver; a host name goes through
 * getaddrinfo (AI_ADDRCONFIG, TCP) and its first address wins, the one the
 * system's address ordering (RFC 6724, gai.conf) prefers, so "localhost"
 * binds what a client resolving it tries first. */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sluice/error.h>
#include "policy/listen.h"

#define HOST_MAX 253 /* bytes: the longest DNS name */

/* RFC 1123 host name: dot-separated labels of letters, digits and '-',
 * not starting or ending with '-', each 1-63 bytes. */
static bool valid_name(const char *h)
{
	size_t label = 0;

	if (*h == '\0')
		return false;
	for (const char *p = h; *p; p++) {
		if (*p == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			continue;
		}
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '-'))
			return false;
		if (*p == '-' && label == 0)
			return false;
		if (++label > 63)
			return false;
	}
	return label == 0 || h[strlen(h) - 1] != '-';
}

static int fail(char *err, size_t cap, int rc, const char *fmt, const char *arg)
{
	if (cap > 0)
		snprintf(err, cap, fmt, arg);
	return rc;
}

int sl_listen_resolve(const char *s, struct sockaddr_storage *ss, socklen_t *len, char *err,
                      size_t cap)
{
	char host[HOST_MAX + 1];
	const char *colon;
	bool v6 = false;
	long port;
	char *end;

	memset(ss, 0, sizeof(*ss));
	*len = 0;
	if (s[0] == '[') {
		const char *rb = strchr(s, ']');
		if (!rb || rb[1] != ':' || (size_t)(rb - s - 1) > HOST_MAX)
			return fail(err, cap, SL_EINVAL, "%s", "expected [IPv6]:PORT");
		memcpy(host, s + 1, (size_t)(rb - s - 1));
		host[rb - s - 1] = '\0';
		colon = rb + 1;
		v6 = true;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return fail(err, cap, SL_EINVAL, "%s", "no :PORT");
		if ((size_t)(colon - s) > HOST_MAX)
			return fail(err, cap, SL_EINVAL, "%s", "host name too long");
		memcpy(host, s, (size_t)(colon - s));
		host[colon - s] = '\0';
		if (strchr(host, ':'))
			return fail(err, cap, SL_EINVAL, "%s", "an IPv6 address goes in brackets");
	}
	if (colon[1] < '0' || colon[1] > '9')
		return fail(err, cap, SL_EINVAL, "%s", "the port must be a number 1-65535");
	port = strtol(colon + 1, &end, 10);
	if (*end || port < 1 || port > 65535)
		return fail(err, cap, SL_EINVAL, "%s", "the port must be a number 1-65535");

	if (v6) {
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) != 1)
			return fail(err, cap, SL_EINVAL, "'%s' is not an IPv6 address", host);
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)port);
		*len = sizeof(*a6);
		return 0;
	}
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	if (host[0] == '\0' || strcmp(host, "*") == 0) {
		a4->sin_family = AF_INET;
		a4->sin_addr.s_addr = htonl(INADDR_ANY);
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
		return 0;
	}
	if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)port);
		*len = sizeof(*a4);
		return 0;
	}
	/* Dotted digits that inet_pton refused ("1.2.3", "300.1.1.1") are a
	 * typo, not a name to hand to DNS. */
	if (strspn(host, "0123456789.") == strlen(host))
		return fail(err, cap, SL_EINVAL, "'%s' is not an IPv4 address", host);
	if (!valid_name(host))
		return fail(err, cap, SL_EINVAL, "'%s' is not an IP address or a host name", host);

#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
	/* A fuzzer feeding configs must not wait on DNS for every input. */
	return fail(err, cap, SL_ENOENT, "host '%s' does not resolve: no resolver when fuzzing",
	            host);
#endif
	struct addrinfo hints, *res = NULL;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	int rc = getaddrinfo(host, NULL, &hints, &res);
	if (rc != 0 || res == NULL) {
		if (cap > 0)
			snprintf(err, cap, "host '%s' does not resolve: %s", host,
			         rc == EAI_SYSTEM ? "system error" : gai_strerror(rc));
		if (res)
			freeaddrinfo(res);
		return SL_ENOENT;
	}
	if (res->ai_addrlen > sizeof(*ss) ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
		freeaddrinfo(res);
		return fail(err, cap, SL_ENOENT, "host '%s' has no IPv4 or IPv6 address", host);
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = (socklen_t)res->ai_addrlen;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	freeaddrinfo(res);
	return 0;
}

bool sl_listen_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *a4 = (const struct sockaddr_in *)ss;
		return (ntohl(a4->sin_addr.s_addr) >> 24) == 127;
	}
	if (ss->ss_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)ss)->sin6_addr;
		if (IN6_IS_ADDR_LOOPBACK(a))
			return true;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return false;
}
