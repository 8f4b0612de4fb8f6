/* `sluice serve -c FILE`: run the daemon in the foreground until SIGTERM
 * or SIGINT (drain, snapshot, exit 0); SIGHUP reloads FILE. */
#ifndef SLUICE_DAEMON_SERVE_H
#define SLUICE_DAEMON_SERVE_H

/* argv[0] is "serve". Returns the process exit status: 0 after a clean
 * shutdown, 1 when the config, a listener or the snapshot fails at startup
 * or the final snapshot cannot be saved, 2 on bad usage. */
int sl_cmd_serve(int argc, char **argv);

#endif
