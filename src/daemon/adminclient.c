/* The admin API client of the CLI (adminclient.h). The address comes from
 * the same config the daemon runs (admin.listen, resolved as the server
 * resolves it), so `sluice accounts list -c FILE` reaches that daemon.
 * Only the `admin` section is read: the CLI must not need what the daemon
 * alone may read (a TLS key, the account database). */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "daemon/adminclient.h"
#include "policy/listen.h"
#include <yaml.h>

#define REPLY_MAX  (64u << 20) /* bytes: the largest answer read */
#define TIMEOUT_MS 10000

/* The scalar at key `name` of mapping n, or NULL. */
static const char *map_scalar(yaml_document_t *doc, yaml_node_t *n, const char *name)
{
	if (n == NULL || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);
		yaml_node_t *v = yaml_document_get_node(doc, p->value);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, name))
			return v && v->type == YAML_SCALAR_NODE ? (const char *)v->data.scalar.value
			                                        : NULL;
	}
	return NULL;
}

static yaml_node_t *map_get(yaml_document_t *doc, yaml_node_t *n, const char *name)
{
	if (n == NULL || n->type != YAML_MAPPING_NODE)
		return NULL;
	for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = yaml_document_get_node(doc, p->key);

		if (k && k->type == YAML_SCALAR_NODE && !strcmp((char *)k->data.scalar.value, name))
			return yaml_document_get_node(doc, p->value);
	}
	return NULL;
}

/* admin.listen (default 127.0.0.1:9901, "" for off) and admin.token of the
 * config at path. Returns 0 or -1 with err. */
static int read_admin(const char *path, char *listen, size_t lcap, char *token, size_t tcap,
                      char *err, size_t cap)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	yaml_node_t *admin;
	const char *l, *t;
	FILE *f = fopen(path, "rb");
	int rc = -1;

	if (f == NULL) {
		snprintf(err, cap, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!yaml_parser_initialize(&parser)) {
		fclose(f);
		snprintf(err, cap, "out of memory");
		return -1;
	}
	yaml_parser_set_input_file(&parser, f);
	if (!yaml_parser_load(&parser, &doc)) {
		snprintf(err, cap, "%s:%zu:%zu: %s (sluice validate -c %s says more)", path,
		         parser.problem_mark.line + 1, parser.problem_mark.column + 1,
		         parser.problem ? parser.problem : "not YAML", path);
		goto out;
	}
	admin = map_get(&doc, yaml_document_get_root_node(&doc), "admin");
	l = map_scalar(&doc, admin, "listen");
	t = map_scalar(&doc, admin, "token");
	snprintf(listen, lcap, "%s", l == NULL ? "127.0.0.1:9901" : strcmp(l, "off") ? l : "");
	snprintf(token, tcap, "%s", t ? t : "");
	yaml_document_delete(&doc);
	rc = 0;
out:
	yaml_parser_delete(&parser);
	fclose(f);
	return rc;
}

int sl_admin_target_init(struct sl_admin_target *t, const char *config, const char *url, char *err,
                         size_t cap)
{
	const char *env = getenv("SLUICE_ADMIN_TOKEN");
	char listen[300] = "", rerr[128];

	memset(t, 0, sizeof(*t));
	t->timeout_ms = TIMEOUT_MS;
	if (config != NULL &&
	    read_admin(config, listen, sizeof(listen), t->token, sizeof(t->token), err, cap) != 0)
		return -1;
	if (url != NULL) {
		if (strncmp(url, "http://", 7) != 0) {
			snprintf(err, cap, "--admin %s: expected http://HOST:PORT", url);
			return -1;
		}
		snprintf(listen, sizeof(listen), "%s", url + 7);
	}
	if (listen[0] == '\0') {
		snprintf(err, cap, "%s",
		         config ? "the config has no admin listener (admin.listen: off)"
		                : "no daemon named: give -c FILE or --admin URL");
		return -1;
	}
	snprintf(t->hostport, sizeof(t->hostport), "%s", listen);
	{
		size_t n = strlen(t->hostport);

		if (n > 0 && t->hostport[n - 1] == '/')
			t->hostport[n - 1] = '\0';
	}
	if (sl_listen_resolve(t->hostport, &t->addr, &t->addrlen, rerr, sizeof(rerr)) != 0) {
		snprintf(err, cap, "admin address %s: %s", t->hostport, rerr);
		return -1;
	}
	if (env != NULL && env[0] != '\0')
		snprintf(t->token, sizeof(t->token), "%s", env);
	return 0;
}

/* Wait for fd to be ready for ev; 0, or -1 with errno (ETIMEDOUT). */
static int wait_fd(int fd, short ev, int ms)
{
	struct pollfd pf = {.fd = fd, .events = ev};
	int n;

	do
		n = poll(&pf, 1, ms);
	while (n < 0 && errno == EINTR);
	if (n == 0)
		errno = ETIMEDOUT;
	return n > 0 ? 0 : -1;
}

static int dial(const struct sl_admin_target *t)
{
	int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int soerr = 0, one = 1;
	socklen_t sl = sizeof(soerr);

	if (fd < 0)
		return -1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&t->addr, t->addrlen) != 0) {
		if (errno != EINPROGRESS || wait_fd(fd, POLLOUT, t->timeout_ms) != 0)
			goto fail;
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr != 0) {
			errno = soerr ? soerr : errno;
			goto fail;
		}
	}
	return fd;
fail:
	soerr = errno;
	close(fd);
	errno = soerr;
	return -1;
}

static int send_all(int fd, const char *p, size_t n, int ms)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(fd, POLLOUT, ms) != 0)
				return -1;
			continue;
		}
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Parse "HTTP/1.x SSS ..." head + body of buf[0..n). */
static int parse_reply(char *buf, size_t n, struct sl_admin_reply *out, char *err, size_t cap)
{
	char *end = memmem(buf, n, "\r\n\r\n", 4), *cl;
	size_t head, blen;

	if (end == NULL || n < 12 || memcmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ') {
		snprintf(err, cap, "not an HTTP response");
		return -1;
	}
	out->status = (int)strtol(buf + 9, NULL, 10);
	if (out->status < 100 || out->status > 599) {
		snprintf(err, cap, "a bad HTTP status line");
		return -1;
	}
	head = (size_t)(end - buf) + 4;
	blen = n - head;
	*end = '\0';
	cl = strcasestr(buf, "\r\nContent-Length:");
	if (cl != NULL) {
		unsigned long long v = strtoull(cl + 17, NULL, 10);

		if (v > blen) {
			snprintf(err, cap, "the response was cut short");
			return -1;
		}
		blen = (size_t)v;
	}
	out->body = malloc(blen + 1);
	if (out->body == NULL) {
		snprintf(err, cap, "out of memory");
		return -1;
	}
	memcpy(out->body, buf + head, blen);
	out->body[blen] = '\0';
	out->len = blen;
	return 0;
}

int sl_admin_request(const struct sl_admin_target *t, const char *method, const char *path,
                     const char *body, struct sl_admin_reply *out, char *err, size_t cap)
{
	size_t blen = body ? strlen(body) : 0, n = 0, bufcap = 16384;
	char head[2048], *buf = NULL;
	int fd, hl, rc = -1;

	memset(out, 0, sizeof(*out));
	hl = snprintf(head, sizeof(head),
	              "%s %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n"
	              "User-Agent: sluice-cli/" SLUICE_VERSION "\r\n"
	              "Accept: application/json\r\n%s%s%s"
	              "%s%zu\r\n\r\n",
	              method, path, t->hostport, t->token[0] ? "Authorization: Bearer " : "",
	              t->token[0] ? t->token : "", t->token[0] ? "\r\n" : "",
	              body ? "Content-Type: application/json\r\nContent-Length: "
	                   : "Content-Length: ",
	              blen);
	if (hl < 0 || (size_t)hl >= sizeof(head)) {
		snprintf(err, cap, "the request is too long");
		return -1;
	}
	fd = dial(t);
	if (fd < 0) {
		snprintf(err, cap, "cannot reach the admin API at %s: %s (is sluice running?)",
		         t->hostport, strerror(errno));
		return -1;
	}
	if (send_all(fd, head, (size_t)hl, t->timeout_ms) != 0 ||
	    (blen > 0 && send_all(fd, body, blen, t->timeout_ms) != 0)) {
		snprintf(err, cap, "sending to %s: %s", t->hostport, strerror(errno));
		goto out;
	}
	buf = malloc(bufcap);
	if (buf == NULL) {
		snprintf(err, cap, "out of memory");
		goto out;
	}
	for (;;) {
		ssize_t r;

		if (n == bufcap) {
			char *nb;

			if (bufcap >= REPLY_MAX) {
				snprintf(err, cap, "the response is larger than %u bytes",
				         REPLY_MAX);
				goto out;
			}
			nb = realloc(buf, bufcap * 2);
			if (nb == NULL) {
				snprintf(err, cap, "out of memory");
				goto out;
			}
			buf = nb;
			bufcap *= 2;
		}
		r = recv(fd, buf + n, bufcap - n, 0);
		if (r < 0 && (errno == EAGAIN || errno == EINTR)) {
			if (wait_fd(fd, POLLIN, t->timeout_ms) != 0) {
				snprintf(err, cap, "no answer from %s within %d ms", t->hostport,
				         t->timeout_ms);
				goto out;
			}
			continue;
		}
		if (r < 0) {
			snprintf(err, cap, "reading from %s: %s", t->hostport, strerror(errno));
			goto out;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	rc = parse_reply(buf, n, out, err, cap);
out:
	free(buf);
	close(fd);
	return rc;
}
