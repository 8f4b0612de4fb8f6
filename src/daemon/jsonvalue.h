/* Command-line values as JSON for the admin API (jsonvalue.c). */
#ifndef SLUICE_DAEMON_JSONVALUE_H
#define SLUICE_DAEMON_JSONVALUE_H

#include <cjson/cJSON.h>

/* text written as in the YAML config ("20000/min", "50", "unlimited",
 * "{rate: 900/min, burst: 15}", "" for null) as a new cJSON value, or
 * NULL when it is not one YAML value. The caller frees it. */
cJSON *sl_cli_value(const char *text);

#endif
