/* The help texts of the command line, one per command, so `sluice -h`,
 * `sluice serve --help` and a usage error print the same words. Help asked
 * for goes to stdout (exit 0); help after a usage error goes to stderr
 * (exit 2), as getopt-based tools do. Keep them in step with man/sluice.8. */
#include <stdarg.h>
#include <stdio.h>
#include "daemon/commands.h"

void sl_usage_main(FILE *f)
{
	fputs("usage: sluice COMMAND [OPTIONS]\n"
	      "\n"
	      "An API rate-limiting gateway and decision service.\n"
	      "\n"
	      "commands:\n"
	      "  serve -c FILE      run the daemon in the foreground (SIGHUP reloads FILE,\n"
	      "                     SIGTERM/SIGINT drain and stop)\n"
	      "  validate -c FILE   check a config; exit 1 with file:line:col errors\n"
	      "  help [COMMAND]     this help, or one command's\n"
	      "\n"
	      "options:\n"
	      "  -h, --help         this help; `sluice COMMAND --help` for one command\n"
	      "  -V, --version      print the version\n"
	      "\n"
	      "See sluice(8).\n",
	      f);
}

void sl_usage_serve(FILE *f)
{
	fputs("usage: sluice serve -c FILE [--takeover]\n"
	      "\n"
	      "Run the daemon in the foreground with the config FILE. Logs go to stderr,\n"
	      "the access log (server.access_log) to stdout.\n"
	      "\n"
	      "  -c, --config FILE  the YAML config (required)\n"
	      "  --takeover         take the listening sockets, connections and counters\n"
	      "                     over from the sluice running with FILE's control socket\n"
	      "                     (server.control_socket), which then drains and exits 0:\n"
	      "                     a zero-downtime upgrade or restart\n"
	      "  -h, --help         this help\n"
	      "\n"
	      "signals: SIGHUP reloads FILE (a bad config is refused and the old one keeps\n"
	      "serving); SIGTERM or SIGINT drain the connections, save the snapshot, exit 0.\n"
	      "exit status: 0 after a clean stop, 1 when it cannot start (the config, a\n"
	      "listener, the store) or stops on an error, 2 on bad usage.\n",
	      f);
}

void sl_usage_validate(FILE *f)
{
	fputs("usage: sluice validate -c FILE\n"
	      "\n"
	      "Load FILE exactly as `serve` and a reload would, without opening a socket.\n"
	      "Prints \"FILE: ok\", or every error as file:line:col: message.\n"
	      "\n"
	      "  -c, --config FILE  the YAML config (required)\n"
	      "  --takeover         take the listening sockets, connections and counters\n"
	      "                     over from the sluice running with FILE's control socket\n"
	      "                     (server.control_socket), which then drains and exits 0:\n"
	      "                     a zero-downtime upgrade or restart\n"
	      "  -h, --help         this help\n"
	      "\n"
	      "exit status: 0 valid, 1 invalid, 2 bad usage.\n",
	      f);
}

int sl_usage_error(void (*usage)(FILE *f), const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "sluice%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n", stderr);
	usage(stderr);
	return 2;
}
