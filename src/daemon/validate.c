/* `sluice validate -c FILE`: load and check a config exactly as `serve`
 * and a reload would (the same sl_policy_load), without opening any socket,
 * and print every error at once so a file is fixed in one round. Warnings
 * ("file:line:col: warning: ...") are printed too but do not fail it. */
#include <stdio.h>
#include <string.h>
#include "daemon/commands.h"
#include "policy/policy.h"

int sl_cmd_validate(int argc, char **argv)
{
	const char *path = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			sl_usage_validate(stdout);
			return 0;
		} else if (!strcmp(argv[i], "-c") || !strcmp(argv[i], "--config")) {
			if (i + 1 >= argc)
				return sl_usage_error(sl_usage_validate, "validate",
				                      "option %s needs a FILE", argv[i]);
			path = argv[++i];
		} else if (!strncmp(argv[i], "--config=", 9)) {
			path = argv[i] + 9;
		} else {
			return sl_usage_error(sl_usage_validate, "validate", "%s '%s'",
			                      argv[i][0] == '-' ? "unknown option"
			                                        : "unexpected argument",
			                      argv[i]);
		}
	}
	if (!path)
		return sl_usage_error(sl_usage_validate, "validate", "%s",
		                      "a config is required: -c FILE");
	static struct sl_diag diag; /* 16 KiB: keep it off the stack */
	struct sl_policy *p = NULL;
	if (sl_policy_load(path, &p, &diag) != 0) {
		for (size_t i = 0; i < diag.n; i++)
			fprintf(stderr, "%s\n", diag.msg[i]);
		if (diag.n == 0)
			fprintf(stderr, "%s: invalid configuration\n", path);
		return 1;
	}
	for (size_t i = 0; i < diag.n; i++) /* warnings: they do not fail */
		fprintf(stderr, "%s\n", diag.msg[i]);
	sl_policy_unref(p);
	printf("%s: ok\n", path);
	return 0;
}
