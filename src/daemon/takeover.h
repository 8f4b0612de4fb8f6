/* Zero-downtime upgrade and restart: `sluice serve -c FILE --takeover`
 * (docs/daemon.md "Upgrades and restarts"). The running process (the
 * host) listens on a unix control socket; the new one (the client)
 * connects, receives every listening socket (SCM_RIGHTS), then the host
 * pauses (no accepting, no deciding: connections wait in the shared
 * kernel backlog or as they are), saves its memory-store snapshot, and the
 * client loads it before it accepts, so no counter is lost. Then the host
 * hands its idle keep-alive connections over too, finishes what is in
 * flight and exits 0 without saving again. Until the client says it
 * serves, any failure on either side (a dead or hung peer, a bad message,
 * a failed save) undoes the pause: the host serves on as before. */
#ifndef SLUICE_DAEMON_TAKEOVER_H
#define SLUICE_DAEMON_TAKEOVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>
#include "daemon/snapshot.h"
#include "net/server.h"
#include "policy/policy.h"
#include "store/store.h"

#define SL_TK_PATH_MAX     108   /* bytes of a unix socket path, NUL included */
#define SL_TK_STEP_TIMEOUT 10000 /* ms the host waits for each step of the client */
#define SL_TK_ANSWER_MS    5000  /* ms the client waits for an answer of the host */
#define SL_TK_SAVE_MS      60000 /* ms the client waits for the snapshot to be saved */

/* The control socket of policy p into out: server.control_socket, else
 * "<store.snapshot>.ctl" when a snapshot is set, else "<config file>.ctl".
 * Returns 0, or SL_EINVAL when the path does not fit a unix socket
 * (message in err). */
int sl_takeover_path(const struct sl_policy *p, char *out, size_t cap, char *err, size_t errcap);

/* ---- the running process ---- */

struct sl_takeover_host {
	/* set by the caller before sl_takeover_host_start */
	uv_loop_t *loop; /* the daemon's main loop */
	struct sl_server *server;
	struct sl_store *store;
	struct sl_snapshot *snap;     /* the periodic snapshot thread (restarted on abort) */
	int64_t snapshot_interval;    /* ns */
	void (*committed)(void *arg); /* the new process serves: drain, exit 0, no save */
	void *arg;

	/* internal */
	char path[SL_TK_PATH_MAX];
	char snap_tmp[SL_TK_PATH_MAX + 8]; /* handover snapshot without store.snapshot */
	dev_t dev;
	ino_t ino; /* of the socket file we made, so we never unlink another's */
	int lfd, sfd;
	uv_poll_t lpoll, spoll;
	uv_timer_t timer;
	uv_async_t async;
	bool started, session;
	bool refusing; /* draining: every new session is refused */
	uint8_t state;
	pid_t peer;
	unsigned npaused;   /* atomic: workers that paused */
	uint64_t paused_at; /* ns (uv_hrtime) the pause began: logged at commit */
	uv_mutex_t mu;      /* guards the queues below (worker threads fill them) */
	struct sl_tk_qconn *conns;
	size_t nconns, capconns;
	uint8_t *rel; /* encoded RELEASE entries */
	size_t rel_len, rel_cap, rel_count, rel_dropped;
	uint8_t *buf; /* SL_TK_MSG_MAX bytes: one message in or out */
};

/* Bind the control socket (mode 0600; a stale file of a dead process is
 * replaced, a live one is refused) and serve takeovers on h->loop.
 * Returns 0 or a negative code with a message in err. Thread: main. */
int sl_takeover_host_start(struct sl_takeover_host *h, const char *path, char *err, size_t cap);

/* A takeover is under way and not yet committed (SIGTERM aborts it). */
bool sl_takeover_host_busy(const struct sl_takeover_host *h);

/* Give up a takeover under way (why is logged); the host serves on. */
void sl_takeover_host_abort(struct sl_takeover_host *h, const char *why);

/* Refuse takeovers from now on (the daemon drains to exit). */
void sl_takeover_host_refuse(struct sl_takeover_host *h);

/* Whether the host handed over (then the exit must not save). */
bool sl_takeover_host_committed(const struct sl_takeover_host *h);

/* At exit, after the workers left: send what is left, BYE, close the
 * handles (the loop must run once more to free them) and unlink the
 * socket file if it is still ours. */
void sl_takeover_host_close(struct sl_takeover_host *h);

/* ---- the new process ---- */

struct sl_takeover_client {
	int fd;
	pid_t old_pid;
	unsigned old_workers;
	struct sl_server_sock *socks; /* received */
	size_t nsocks;
	bool given;    /* the fds of socks are the server's (sl_server_create_inherit) */
	uint16_t *map; /* old listener slot -> ours (UINT16_MAX: none) */
	size_t nmap;
	struct sl_server *server;
	struct sl_store *store;
	uv_poll_t poll;
	bool polling;
	uint64_t adopted, released; /* connections and releases taken over */
	uint8_t *buf;
};

/* Connect to the running process on path, say hello and receive its
 * listening sockets. Returns 0, or a negative code with the reason in err
 * (no process, refused, no answer within SL_TK_ANSWER_MS...). */
int sl_takeover_connect(struct sl_takeover_client *c, const char *path, char *err, size_t cap);

/* The sockets are ours (the server was created on them): ask the host to
 * pause and save, and wait for it. snap gets the snapshot path to load
 * ("" when there is none: a Redis store). Returns 0 or a negative code. */
int sl_takeover_ready(struct sl_takeover_client *c, char *snap, size_t snapcap, char *err,
                      size_t cap);

/* Our workers accept: tell the host, which hands over. Then connections
 * and releases it sends are taken on loop until it says bye. */
int sl_takeover_started(struct sl_takeover_client *c, uv_loop_t *loop, struct sl_server *server,
                        struct sl_store *store, char *err, size_t cap);

/* Tell the host the takeover is off (why) and close: it serves on. */
void sl_takeover_fail(struct sl_takeover_client *c, const char *why);

/* Under systemd (NOTIFY_SOCKET set: NotifyAccess=all in the unit), tell
 * it that this process is the service's main process now. */
void sl_takeover_notify_mainpid(void);

/* Close what is left (on exit). */
void sl_takeover_client_close(struct sl_takeover_client *c);

#endif
