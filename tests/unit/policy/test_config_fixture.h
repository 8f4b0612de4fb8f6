/* Shared by the config tests: write a YAML fixture to a temp file, load it,
 * and find messages by exact "file:line:col: " prefix. */
#ifndef SLUICE_TEST_CFG_FIXTURE_H
#define SLUICE_TEST_CFG_FIXTURE_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "policy/policy.h"

static char fixture_path[64];
static struct sl_diag fixture_diag;

/* Load yaml text; returns sl_policy_load's code, *out the policy or NULL. */
static inline int load_text(const char *yaml, struct sl_policy **out)
{
	snprintf(fixture_path, sizeof(fixture_path), "/tmp/sluice-cfg-XXXXXX");
	int fd = mkstemp(fixture_path);
	if (fd < 0)
		return -1000;
	size_t len = strlen(yaml);
	if (write(fd, yaml, len) != (ssize_t)len) {
		close(fd);
		return -1000;
	}
	close(fd);
	int rc = sl_policy_load(fixture_path, out, &fixture_diag);
	unlink(fixture_path);
	return rc;
}

/* 1-based line:col of the n-th (from 1) occurrence of needle in text. */
static inline void pos_of(const char *text, const char *needle, int nth, size_t *line, size_t *col)
{
	const char *p = text;
	for (int i = 0; i < nth; i++) {
		p = strstr(i ? p + 1 : p, needle);
		if (!p) {
			*line = *col = 0;
			return;
		}
	}
	*line = 1;
	const char *ls = text;
	for (const char *q = text; q < p; q++)
		if (*q == '\n') {
			(*line)++;
			ls = q + 1;
		}
	*col = (size_t)(p - ls) + 1;
}

/* Index of the message "<file>:<line>:<col>: ..." containing `what`, or -1. */
static inline int find_diag(size_t line, size_t col, const char *what)
{
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "%s:%zu:%zu: ", fixture_path, line, col);
	for (size_t i = 0; i < fixture_diag.n; i++)
		if (!strncmp(fixture_diag.msg[i], prefix, strlen(prefix)) &&
		    strstr(fixture_diag.msg[i] + strlen(prefix), what))
			return (int)i;
	return -1;
}

static inline void dump_diag(void)
{
	for (size_t i = 0; i < fixture_diag.n; i++)
		fprintf(stderr, "  diag: %s\n", fixture_diag.msg[i]);
}

#endif
