/* The takeover control protocol's messages (docs/daemon.md "Upgrades and
 * restarts"): what a running sluice and the one taking over from it say on
 * the control socket, a SOCK_SEQPACKET unix socket, so one recvmsg is one
 * message and descriptors (SCM_RIGHTS) travel with the message they belong
 * to. Encoding and parsing only: no sockets, no allocation, every length
 * checked, so the parser can be fed hostile bytes (tests/fuzz). */
#ifndef SLUICE_DAEMON_TAKEOVER_WIRE_H
#define SLUICE_DAEMON_TAKEOVER_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define SL_TK_MAGIC   "SLTK"
#define SL_TK_VERSION 1
#define SL_TK_HEAD    12    /* bytes: magic, version, type, flags (u16), payload length (u32) */
#define SL_TK_MSG_MAX 65536 /* bytes: the largest message, head included */
#define SL_TK_MAX_FDS 64    /* descriptors in one message */
#define SL_TK_NAME    64    /* bytes of a listener name, NUL included */

enum sl_tk_type {
	SL_TK_HELLO = 1,     /* new -> old: u32 pid */
	SL_TK_SOCKS = 2,     /* old -> new, with fds: listening sockets */
	SL_TK_SOCKS_END = 3, /* old -> new: u32 pid, u16 workers, u32 sockets sent */
	SL_TK_READY = 4,     /* new -> old: sockets held, pause and save */
	SL_TK_SAVED = 5,     /* old -> new: u8 has_snapshot, u16 len, path */
	SL_TK_STARTED = 6,   /* new -> old: snapshot loaded; hand over */
	SL_TK_CONNS = 7,     /* old -> new, with fds: idle client connections */
	SL_TK_RELEASE = 8,   /* old -> new: concurrency slots given back */
	SL_TK_BYE = 9,       /* old -> new: drained, exiting */
	SL_TK_ABORT = 10,    /* either way: u16 len, reason; the handover is off */
	SL_TK_COMMIT = 11,   /* old -> new: handed over, accept now */
	SL_TK_WELCOME = 12,  /* old -> new, first: a session (else ABORT, then close) */
	SL_TK_TYPE_MAX = 12,
};

/* A listening socket (SOCKS entry; its fd is the entry's descriptor). */
struct sl_tk_sock {
	uint16_t index; /* the sender's listener slot */
	uint8_t kind;   /* 1 proxy, 2 check, 3 admin */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char name[SL_TK_NAME];
};

/* A client connection between requests (CONNS entry): bytes it sent that
 * the old process read but did not decide (a head in progress), a view
 * into the message. */
struct sl_tk_conn {
	uint16_t index; /* the sender's listener slot */
	const uint8_t *bytes;
	uint32_t len; /* bytes */
};

/* One concurrency release (RELEASE entry); key is a view. */
struct sl_tk_release {
	uint64_t limit_id;
	uint64_t cost;  /* units */
	uint64_t n;     /* slots of the limit */
	int64_t period; /* ns: lease ttl */
	const uint8_t *key;
	uint16_t key_len; /* bytes */
	const char *name; /* limit name, not NUL-terminated */
	uint8_t name_len; /* bytes, < SL_TK_NAME */
};

/* A parsed message: views into the buffer it was parsed from. */
struct sl_tk_msg {
	uint8_t type; /* enum sl_tk_type */
	uint32_t pid;
	uint16_t workers;
	uint32_t total;
	bool has_snapshot;
	const char *text; /* SAVED path, ABORT reason: not NUL-terminated */
	uint16_t text_len;
	struct sl_tk_sock socks[SL_TK_MAX_FDS];
	struct sl_tk_conn conns[SL_TK_MAX_FDS];
	size_t n; /* entries of socks or conns, or of RELEASE */
	const uint8_t *rel;
	size_t rel_len; /* bytes of RELEASE entries, validated */
};

/* Parse one received message buf[0, len) that came with nfds descriptors.
 * Accepts only a well-formed message of a known type whose entries fill
 * the payload exactly and whose descriptor count is what it says (SOCKS,
 * CONNS: one per entry; every other type: none). Returns 0, or SL_EPROTO
 * (m then undefined). Pure; views in m point into buf. */
int sl_tk_parse(const uint8_t *buf, size_t len, size_t nfds, struct sl_tk_msg *m);

/* The protocol version a message claims (its magic is ours), else -1: so
 * a peer of another sluice version is told so, not just "malformed". */
int sl_tk_version(const uint8_t *buf, size_t len);

/* The RELEASE entry at p[0, len): its length in bytes, or 0 when p does not
 * start with a whole entry. */
size_t sl_tk_release_next(const uint8_t *p, size_t len, struct sl_tk_release *out);

/* The i-th RELEASE entry of a parsed message (i < m->n). */
void sl_tk_release_at(const struct sl_tk_msg *m, size_t i, struct sl_tk_release *out);

/* Encoder over a caller's buffer: every put is bounds-checked and a full
 * buffer makes the whole message fail (sl_tk_end returns 0). */
struct sl_tk_enc {
	uint8_t *buf;
	size_t cap, len; /* bytes */
	bool overflow;
	size_t count_at; /* offset of the u16 entry count, 0: none */
	uint16_t count;
};

void sl_tk_begin(struct sl_tk_enc *e, uint8_t *buf, size_t cap, uint8_t type);
void sl_tk_u8(struct sl_tk_enc *e, uint8_t v);
void sl_tk_u16(struct sl_tk_enc *e, uint16_t v);
void sl_tk_u32(struct sl_tk_enc *e, uint32_t v);
void sl_tk_u64(struct sl_tk_enc *e, uint64_t v);
void sl_tk_bytes(struct sl_tk_enc *e, const void *p, size_t n);
/* A u16 length then the bytes (at most 65535). */
void sl_tk_text(struct sl_tk_enc *e, const char *s, size_t n);
/* Start an entry list: a u16 count patched by sl_tk_end. */
void sl_tk_list(struct sl_tk_enc *e);
/* Entries; each returns false (nothing written) when it does not fit in
 * `room` bytes of what is left, so the caller sends and starts anew. */
bool sl_tk_put_sock(struct sl_tk_enc *e, const struct sl_tk_sock *s);
bool sl_tk_put_conn(struct sl_tk_enc *e, uint16_t index, const void *bytes, uint32_t n);
bool sl_tk_put_release(struct sl_tk_enc *e, const struct sl_tk_release *r);
/* Finish: the message's length in bytes, or 0 on overflow. */
size_t sl_tk_end(struct sl_tk_enc *e);

/* Whether two socket addresses are the same IPv4/IPv6 address and port. */
bool sl_tk_addr_eq(const struct sockaddr_storage *a, const struct sockaddr_storage *b);

#endif
