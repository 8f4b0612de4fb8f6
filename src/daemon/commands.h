/* The sluice subcommands (DESIGN.md section 1). Each takes the command line
 * from its own name on: argv[0] is "validate", "serve", ... and returns the
 * process exit status. */
#ifndef SLUICE_DAEMON_COMMANDS_H
#define SLUICE_DAEMON_COMMANDS_H

#include <stdio.h>

/* `sluice validate -c FILE`: load FILE; print every "file:line:col:
 * message" error to stderr and return 1, or print "FILE: ok" and return 0.
 * -h/--help prints its usage to stdout and returns 0; bad usage returns 2. */
int sl_cmd_validate(int argc, char **argv);

/* `sluice accounts VERB ...` and `sluice keys VERB ...` (accounts.c): the
 * account store of a running daemon through its admin API (-c FILE or
 * --admin URL names it). 0 done, 1 refused or unreachable, 2 bad usage. */
int sl_cmd_accounts(int argc, char **argv);
int sl_cmd_keys(int argc, char **argv);

/* Help texts (usage.c): the whole command line, and one per command. */
void sl_usage_main(FILE *f);
void sl_usage_serve(FILE *f);
void sl_usage_validate(FILE *f);
void sl_usage_accounts(FILE *f);
void sl_usage_keys(FILE *f);

/* A usage error: "sluice CMD: " + the printf-style message on stderr,
 * then usage to stderr. cmd may be NULL (the top level). Returns 2, the
 * exit status of bad usage. */
int sl_usage_error(void (*usage)(FILE *f), const char *cmd, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#endif
