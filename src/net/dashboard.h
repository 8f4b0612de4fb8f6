/* The dashboard's files, embedded at build time (scripts/embed.cmake
 * writes dashboard-files.c from src/net/dashboard/). */
#ifndef SLUICE_NET_DASHBOARD_H
#define SLUICE_NET_DASHBOARD_H

#include <stddef.h>

struct sl_dash_file {
	const char *name;           /* "index.html" */
	const unsigned char *bytes; /* NUL-terminated past len */
	size_t len;                 /* bytes */
};

extern const struct sl_dash_file sl_dash_files[]; /* ends with name NULL */

#endif
