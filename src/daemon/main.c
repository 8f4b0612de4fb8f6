/* sluice entry point: the command line of DESIGN.md section 1. Options
 * before the command are only -h/--help and -V/--version; everything
 * after the command name belongs to that command. */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include "daemon/commands.h"
#include "daemon/serve.h"

static bool is(const char *arg, const char *shrt, const char *lng)
{
	return strcmp(arg, shrt) == 0 || strcmp(arg, lng) == 0;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		sl_usage_main(stderr);
		return 2;
	}
	if (is(argv[1], "-V", "--version")) {
		printf("sluice %s\n", SLUICE_VERSION);
		return 0;
	}
	if (is(argv[1], "-h", "--help") || strcmp(argv[1], "help") == 0) {
		if (strcmp(argv[1], "help") == 0 && argc >= 3) {
			if (strcmp(argv[2], "serve") == 0) {
				sl_usage_serve(stdout);
				return 0;
			}
			if (strcmp(argv[2], "validate") == 0) {
				sl_usage_validate(stdout);
				return 0;
			}
			if (strcmp(argv[2], "accounts") == 0) {
				sl_usage_accounts(stdout);
				return 0;
			}
			if (strcmp(argv[2], "keys") == 0) {
				sl_usage_keys(stdout);
				return 0;
			}
			return sl_usage_error(sl_usage_main, NULL, "unknown command '%s'", argv[2]);
		}
		sl_usage_main(stdout);
		return 0;
	}
	if (strcmp(argv[1], "validate") == 0)
		return sl_cmd_validate(argc - 1, argv + 1);
	if (strcmp(argv[1], "serve") == 0)
		return sl_cmd_serve(argc - 1, argv + 1);
	if (strcmp(argv[1], "accounts") == 0)
		return sl_cmd_accounts(argc - 1, argv + 1);
	if (strcmp(argv[1], "keys") == 0)
		return sl_cmd_keys(argc - 1, argv + 1);
	if (argv[1][0] == '-')
		return sl_usage_error(sl_usage_main, NULL, "unknown option '%s'", argv[1]);
	return sl_usage_error(sl_usage_main, NULL, "unknown command '%s'", argv[1]);
}
