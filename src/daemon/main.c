/* sluice entry point: the command line of DESIGN.md section 1. */
#include <stdio.h>
#include <string.h>
#include "daemon/commands.h"
#include "daemon/serve.h"

static void usage(FILE *f)
{
	fputs("usage: sluice serve -c FILE      run the daemon in the foreground\n"
	      "       sluice validate -c FILE   check a config; exit 1 with file:line:col errors\n"
	      "       sluice --version | --help\n",
	      f);
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("sluice %s\n", SLUICE_VERSION);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && strcmp(argv[1], "validate") == 0)
		return sl_cmd_validate(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "serve") == 0)
		return sl_cmd_serve(argc - 1, argv + 1);
	usage(stderr);
	return 2;
}
