/* Internal types of the server (worker.c, conn.c, proxy.c): workers,
 * listeners, client connections and upstream connections. Everything here
 * belongs to exactly one worker thread except the fields marked shared. */
#ifndef SLUICE_NET_INT_H
#define SLUICE_NET_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>
#include "http/http.h"
#include "net/admin.h"
#include "net/metrics.h"
#include "usage/usage.h"
#include "net/server.h"
#include "policy/policy.h"
#include "store/store.h"
#include "tls/tls.h"
#include <sluice/error.h>

#define SL_MAX_LISTENERS 16
#define SL_MAX_LSOCKS    64    /* listening sockets of a worker: inherited extras too */
#define SL_OUT_CAP       16384 /* bytes: response heads and local bodies */
#define SL_LOGLINE       256   /* bytes of method+target kept for the access log */

/* Intrusive doubly-linked list (node inside the owner). */
struct sl_list {
	struct sl_list *prev, *next;
};

static inline void sl_list_init(struct sl_list *l)
{
	l->prev = l->next = l;
}
static inline bool sl_list_empty(const struct sl_list *l)
{
	return l->next == l;
}
static inline void sl_list_add(struct sl_list *head, struct sl_list *n)
{
	n->next = head->next;
	n->prev = head;
	head->next->prev = n;
	head->next = n;
}
static inline void sl_list_del(struct sl_list *n)
{
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = n->next = n;
}
#define sl_container(ptr, type, field) ((type *)((char *)(ptr)-offsetof(type, field)))

enum sl_lkind {
	SL_LK_PROXY = 1,
	SL_LK_CHECK,
	SL_LK_ADMIN,
};

struct sl_worker;

/* An upstream address and this worker's idle keep-alive connections to it. */
struct sl_upstream {
	char host[256];
	int port;
	struct sockaddr_storage addr; /* resolved at create */
	struct sl_list idle;          /* struct sl_upconn.link */
	unsigned nidle;
	bool tls;                        /* https:// */
	struct sl_tls_ctx *tls_ctx;      /* reference: the current policy's upstream_tls */
	char tls_host[256];              /* SNI and the name verified */
	struct sl_tls_session *tls_sess; /* the last session the upstream issued */
	int64_t tls_logged;              /* ns (worker clock) of the last handshake failure line */
	unsigned tls_quiet;              /* failures not logged since that line */
};

/* A listening socket of one worker. It is polled by hand (uv_poll_t) and
 * accepted with accept4, not through uv_listen: libuv's accept loop retries
 * EMFILE without ever returning to the loop once its reserve descriptor is
 * gone (two workers race for it), which spun every worker at 100% and left
 * signals unserved. Here an accept that runs out of descriptors pauses this
 * worker's listeners for SL_EMFILE_PAUSE and the loop goes on serving. */
struct sl_listener {
	uv_poll_t poll;
	int fd;
	struct sl_worker *w;
	uint8_t kind; /* enum sl_lkind */
	char name[64];
	char listen[128];
	struct sockaddr_storage addr; /* listen resolved (by worker 0 for all) */
	socklen_t addrlen;            /* bytes of addr */
	bool is_static;               /* proxy with upstream: static */
	struct sl_upstream *up;       /* proxy to http[s]://; else NULL */
	struct sl_tls_ctx *tls;       /* TLS listener: the current policy's context
	                               * (reference; swapped on reload); else NULL */
	bool polling;                 /* poll started: connections are accepted */
	bool closed;
};

#define SL_EMFILE_PAUSE  100  /* ms: accepting stops after EMFILE/ENFILE */
#define SL_ACCEPT_BATCH  64   /* connections accepted per readable event */
#define SL_FREE_KEEP     256  /* connections kept on a worker's free list */
#define SL_TRIM_INTERVAL 5000 /* ms: heap trim check after connections were freed */

enum sl_phase {
	SL_PH_HEAD = 0, /* reading the next head */
	SL_PH_DECIDE,   /* store batch in flight */
	SL_PH_DELAY,    /* queued decision: timer */
	SL_PH_LOCAL,    /* answered (or answering) here; the body is discarded */
	SL_PH_PROXY,    /* forwarding to the upstream */
	SL_PH_ADMIN,    /* admin call in flight */
};

struct sl_upconn;

struct sl_conn {
	uv_tcp_t tcp;
	uv_timer_t timer; /* header/idle timeout, or the queue delay */
	uv_write_t wreq;
	struct sl_worker *w;
	struct sl_tls *tls; /* TLS listener: the session over tcp; else NULL */
	struct sl_listener *l;
	struct sl_list link; /* worker's active or free list */
	uint8_t handles;     /* open uv handles (tcp, timer) */
	bool in_decide;      /* inside decide(): a store completion is inline */
	uint8_t phase;       /* enum sl_phase */
	uint8_t timer_what;
	uint64_t deadline;  /* ms (loop time) timer_what is due */
	uint64_t timer_due; /* ms (loop time) the uv timer is set for */
	bool reading;
	bool closing;           /* uv_close called (or to be called once idle) */
	bool close_after;       /* close once the current response is written */
	bool writing;           /* c->out in flight to the client */
	bool req_end;           /* the request's last byte was parsed */
	bool resp_done;         /* the response was written completely */
	bool body_inflight;     /* raw body bytes from rbuf in flight to the upstream */
	bool release_pending;   /* concurrency release to submit at the end */
	bool peer_eof;          /* EOF while a local answer was being written */
	unsigned store_pending; /* store batches in flight that point at c */
	struct sockaddr_storage peer;
	char peer_ip[48];

	/* read buffer: [0, rlen) holds bytes; [rpos, rlen) not yet parsed;
	 * a head in progress starts at head_start. */
	char *rbuf;
	size_t rcap, rlen, rpos, head_start; /* bytes */
	struct sl_http_parser hp;

	char *obuf;
	struct sl_http_out out;

	/* the request in flight */
	struct sl_policy *policy; /* reference held for the request */
	struct sl_eval ev;
	int status;         /* answered status (access log) */
	uint64_t bytes_out; /* bytes of response sent to the client */
	int64_t t_start;    /* ns, the head's arrival (loop-pass clock) */
	uint64_t t_decide;  /* ns, uv_hrtime() when the decision began: latency metric */
	uint64_t t_up;      /* ns, uv_hrtime() when the exchange with the upstream began */
	uint64_t up_ns;     /* ns from t_up to the upstream's response head; 0: none */
	bool decided;       /* ev holds this request's decision (access log) */
	bool head_method;   /* a HEAD request: local answers carry no body */
	char logline[SL_LOGLINE];
	bool keep_alive; /* the client may send another request */
	bool expect_continue;
	bool retried; /* the request was resent on a fresh upstream connection */
	struct sl_upconn *up;

	/* admin */
	struct sl_admin_call *acall; /* allocated for the first admin request */
	char *abody;                 /* decoded admin request body */
	size_t abody_len;
};

enum sl_upstate {
	SL_UP_CONNECTING = 0,
	SL_UP_IDLE,
	SL_UP_BUSY,
	SL_UP_CLOSING,
};

struct sl_upconn {
	uv_tcp_t tcp;
	struct sl_tls *tls; /* https:// upstream: the session over tcp; else NULL */
	uv_connect_t creq;
	uv_write_t wreq;    /* the request head */
	uv_write_t breq;    /* a piece of request body */
	uv_timer_t timer;   /* upstream_timeout, or the idle TTL in the pool */
	uint64_t deadline;  /* ms (loop time) the timeout is due; 0: none */
	uint64_t timer_due; /* ms (loop time) the uv timer is set for */
	struct sl_worker *w;
	struct sl_upstream *pool;
	struct sl_conn *c; /* the client it serves, or NULL */
	struct sl_list link;
	uint8_t state; /* enum sl_upstate */
	bool reused;   /* served a request before (a failure may be a stale socket) */
	bool reading;
	bool head_written; /* request head written */
	bool got_bytes;    /* some response bytes arrived */
	bool resp_head;    /* response head composed for the client (c->obuf) */
	bool head_pending; /* ... and not written yet: it goes with the body */
	bool resp_end;
	bool to_client;       /* response bytes from rbuf in flight to the client */
	bool keep;            /* reusable after this exchange */
	bool skip_1xx;        /* an interim response is being skipped */
	size_t head_start;    /* bytes: where the response head in progress starts */
	unsigned timers_open; /* handles to close before freeing */
	char *rbuf;
	size_t rcap, rlen, rpos; /* bytes */
	char *hbuf;              /* request head to the upstream */
	struct sl_http_out hout;
	struct sl_http_parser hp;
};

/* One worker thread: its loop and everything on it. */
struct sl_worker {
	struct sl_server *srv;
	unsigned index;
	uv_loop_t loop;
	bool loop_on; /* loop initialized (a failed start closes it) */
	uv_thread_t thread;
	uv_async_t async;
	uv_prepare_t prep;
	uv_check_t check;
	uv_timer_t detach_timer; /* shutdown: detach the store from this loop */
	bool now_valid;
	int64_t now; /* ns, read once per loop pass */

	/* shared with the main thread, under mu */
	pthread_mutex_t mu;
	struct sl_policy *next_policy;
	bool want_drain, want_stop;
	uint8_t want_takeover;  /* enum sl_tk_cmd, the latest asked */
	struct sl_adopt *adopt; /* connections to adopt (LIFO) */

	struct sl_policy *policy; /* reference; what new requests use */
	struct sl_listener listeners[SL_MAX_LSOCKS];
	size_t nlisteners;
	struct sl_upstream upstreams[SL_MAX_LISTENERS];
	size_t nupstreams;
	struct sl_list active, free; /* struct sl_conn.link */
	unsigned nconns;             /* open client connections */
	uint64_t accepted;           /* connections accepted since start (metrics) */
	unsigned nfree;              /* connections on the free list */
	unsigned freed_since_trim;   /* connections released to malloc since the last trim */
	uv_timer_t pause_timer;      /* accepting paused: out of descriptors */
	uv_timer_t trim_timer;       /* gives freed connection memory back to the OS */
	bool accept_paused;
	unsigned max_conns;
	unsigned nupconns; /* open upstream connections */
	bool draining, stopping;
	bool paused;      /* takeover: no accepting, no new decision */
	bool pause_acked; /* ... and the takeover was told so */
	bool fwd_release; /* paused: releases go to srv->handoff.release, not the store */
	bool handoff;     /* takeover: idle connections go to the new process */
	bool closed;      /* handles closed; written under mu */
	size_t rcap;      /* bytes: read buffer of a client connection */

	struct sl_admin admin;
	bool admin_on;
	struct sl_metrics_shard *shard;
	struct sl_usage_shard *ushard; /* usage history table, or NULL (off) */
};

struct sl_server {
	struct sl_store *store;
	struct sl_policy *policy; /* reference: the current one */
	unsigned nworkers;
	struct sl_worker *workers;
	struct sl_metrics *metrics;
	struct sl_usage *usage; /* borrowed, or NULL */
	struct sl_admin_global admin_g;
	bool admin_on;
	void (*done)(void *arg);
	void *done_arg;
	void (*detach)(struct sl_store *st, void *loop);
	unsigned running;         /* atomic: workers still in their loop */
	bool started;             /* sl_server_start ran: the threads exist */
	uint64_t emfile;          /* atomic: accepts that ran out of descriptors */
	int64_t emfile_logged;    /* atomic: ns (sl_clock_now) of the last log line */
	uint64_t emfile_reported; /* atomic: emfile at that line */
	char logbuf_unused;
	struct sl_server_handoff handoff;     /* takeover sinks (sl_server_pause) */
	bool fwd_release;                     /* atomic: the next pause forwards releases */
	unsigned adopt_next;                  /* round robin of sl_server_adopt */
	const struct sl_server_sock *inherit; /* during create only */
	size_t ninherit;
	bool *inherit_used;
};

/* Takeover commands to a worker (worker.c). */
enum sl_tk_cmd {
	SL_TKC_NONE = 0,
	SL_TKC_PAUSE,
	SL_TKC_RESUME,
	SL_TKC_HANDOFF,
};

/* A connection handed over from another process, queued for a worker. */
struct sl_adopt {
	struct sl_adopt *next;
	unsigned index; /* listener slot */
	int fd;
	size_t n; /* bytes that follow */
	char bytes[];
};

/* Socket I/O of a connection that may be TLS (t non-NULL): the plain path
 * is the direct libuv call behind one branch. */
static inline int sl_io_read_start(uv_tcp_t *tcp, struct sl_tls *t, uv_alloc_cb a, uv_read_cb r)
{
	return t ? sl_tls_read_start(t, a, r) : uv_read_start((uv_stream_t *)tcp, a, r);
}
static inline void sl_io_read_stop(uv_tcp_t *tcp, struct sl_tls *t)
{
	if (t)
		sl_tls_read_stop(t);
	else
		uv_read_stop((uv_stream_t *)tcp);
}
static inline int sl_io_write(uv_tcp_t *tcp, struct sl_tls *t, uv_write_t *req, const uv_buf_t *b,
                              unsigned n, uv_write_cb cb)
{
	return t ? sl_tls_write(t, req, b, n, cb) : uv_write(req, (uv_stream_t *)tcp, b, n, cb);
}

/* worker.c */
/* After a policy swap: TLS listeners and upstreams take the new policy's
 * contexts (a renewed certificate) for the connections made from now on. */
void sl_worker_tls_refresh(struct sl_worker *w);
/* The time of this loop pass, read once per pass (logs, timers). */
int64_t sl_worker_now(struct sl_worker *w);
/* The time now, for a decision: workers share the store, and a time cached
 * at the start of a long pass can be older than a state another worker has
 * just committed, which makes a limit refuse at its exact edge. Also
 * becomes the pass's time. */
int64_t sl_worker_now_fresh(struct sl_worker *w);
void sl_worker_conn_freed(struct sl_worker *w);
/* Whether struct sl_conn memory should go back to malloc instead of the
 * free list (the list is kept to SL_FREE_KEEP). */
bool sl_worker_keep_conn(struct sl_worker *w);
void sl_worker_maybe_exit(struct sl_worker *w);
/* The listener slot of l that every worker has (an extra inherited socket
 * reports the slot of the configured listener it serves). */
unsigned sl_listener_slot(const struct sl_listener *l);
/* accesslog.c: the access log line of c's request (after its response). */
void sl_access_log(struct sl_conn *c);

/* conn.c */
/* Take a connection for the accepted socket fd (owned from now on, closed
 * on failure) with peer address peer. Returns 0, or SL_ENOMEM (fd closed). */
int sl_conn_accept(struct sl_listener *l, int fd, const struct sockaddr_storage *peer);
void sl_conn_close(struct sl_conn *c);
void sl_conn_drain(struct sl_conn *c);
/* sl_conn_accept for a connection handed over by another process, with
 * bytes[0, n) it already sent (copied; at most the read buffer). */
int sl_conn_adopt(struct sl_listener *l, int fd, const char *bytes, size_t n);
/* Give c to the takeover sink if it is between requests (nothing in
 * flight, no answer being written): returns true, c is closing (its
 * socket lives on in the other process). Otherwise false, c untouched. */
bool sl_conn_handoff(struct sl_conn *c);
/* Proxy callbacks into the client connection. */
void sl_conn_process(struct sl_conn *c);
void sl_conn_update_read(struct sl_conn *c);
void sl_conn_request_done(struct sl_conn *c);
void sl_conn_answer_error(struct sl_conn *c, int status, bool close);
void sl_conn_write(struct sl_conn *c, const char *p, size_t n, uv_write_cb cb);
/* Write [a, a+na) then [b, b+nb) to the client with one system call when
 * the socket takes it all: returns 1, nothing in flight and cb is not
 * called. Otherwise the rest is queued (c->writing, cb called once it is
 * out): returns 0. -1: the connection failed and is closing. */
int sl_conn_send(struct sl_conn *c, const char *a, size_t na, const char *b, size_t nb,
                 uv_write_cb cb);
void sl_conn_send_continue(struct sl_conn *c);

/* proxy.c */
void sl_proxy_start(struct sl_conn *c);
/* Raw request body bytes [p, p+n) of rbuf for the upstream; the client
 * stops reading until sl_conn_process is called again by proxy.c. */
void sl_proxy_body(struct sl_conn *c, const char *p, size_t n, bool end);
/* The client went away (or failed) mid-exchange: drop the upstream side. */
void sl_proxy_abort(struct sl_conn *c);
/* The client finished writing a piece of response body: read on. */
void sl_proxy_client_wrote(struct sl_conn *c);
void sl_upstream_close_idle(struct sl_worker *w);
int sl_upstream_parse(struct sl_upstream *u, const char *url, char *err, size_t cap);

#endif
