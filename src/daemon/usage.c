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
	      "  accounts VERB      customers of a running daemon: add, list, show, set,\n"
	      "                     suspend, resume, delete\n"
	      "  keys VERB          their API keys: issue, list, rotate, revoke\n"
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
	fputs("usage: sluice serve -c FILE\n"
	      "\n"
	      "Run the daemon in the foreground with the config FILE. Logs go to stderr,\n"
	      "the access log (server.access_log) to stdout.\n"
	      "\n"
	      "  -c, --config FILE  the YAML config (required)\n"
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
	      "  -h, --help         this help\n"
	      "\n"
	      "exit status: 0 valid, 1 invalid, 2 bad usage.\n",
	      f);
}

#define DAEMON_OPTS                                                                                \
	"the daemon: -c, --config FILE (its config: admin.listen and admin.token) or\n"            \
	"  --admin http://HOST:PORT; the token is $SLUICE_ADMIN_TOKEN, else admin.token.\n"        \
	"  --json  print the API's JSON instead of a table;  -h, --help  this help\n"

void sl_usage_accounts(FILE *f)
{
	fputs("usage: sluice accounts VERB [ACCOUNT] [OPTIONS] (-c FILE | --admin URL)\n"
	      "\n"
	      "The accounts of a running daemon's account store (its admin API).\n"
	      "\n"
	      "  add ACCOUNT --plan PLAN [--title T] [--override LIMIT=VALUE]... [--meta K=V]...\n"
	      "  list [--plan PLAN] [--limit N] [--after CURSOR] [--all]\n"
	      "  show ACCOUNT\n"
	      "  set ACCOUNT [--plan P] [--title T] [--status active|suspended]\n"
	      "              [--override LIMIT=VALUE]... (LIMIT= removes one) [--meta K=V]...\n"
	      "  suspend ACCOUNT       its keys answer 403 (responses.suspended)\n"
	      "  resume ACCOUNT\n"
	      "  delete ACCOUNT        its keys answer 401 from the next request\n"
	      "\n"
	      "An override VALUE is written as in the config: 20000/min, unlimited, 50,\n"
	      "'{rate: 900/min, burst: 15, queue: 5}'.\n"
	      "\n" DAEMON_OPTS "\n"
	      "exit status: 0 done, 1 refused (the API's error is printed) or unreachable,\n"
	      "2 bad usage.\n",
	      f);
}

void sl_usage_keys(FILE *f)
{
	fputs("usage: sluice keys VERB (ACCOUNT | KEY_ID) [OPTIONS] (-c FILE | --admin URL)\n"
	      "\n"
	      "API keys of a running daemon's accounts. A new key is printed once, on\n"
	      "stdout; sluice keeps only its SHA-256.\n"
	      "\n"
	      "  issue ACCOUNT [--label L] [--expires 2027-01-01T00:00:00Z|never]\n"
	      "  list ACCOUNT\n"
	      "  rotate KEY_ID [--grace 24h]   a new key; the old one works until the grace ends\n"
	      "  revoke KEY_ID                 401 from the next request\n"
	      "\n" DAEMON_OPTS "\n"
	      "exit status: 0 done, 1 refused (the API's error is printed) or unreachable,\n"
	      "2 bad usage.\n",
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
