/* The sluice subcommands (DESIGN.md section 1). Each takes the command line
 * from its own name on: argv[0] is "validate", "serve", ... and returns the
 * process exit status. */
#ifndef SLUICE_DAEMON_COMMANDS_H
#define SLUICE_DAEMON_COMMANDS_H

/* `sluice validate -c FILE`: load FILE; print every "file:line:col:
 * message" error to stderr and return 1, or print "FILE: ok" and return 0.
 * Bad usage returns 2. */
int sl_cmd_validate(int argc, char **argv);

#endif
