/* The unit of work between policy and store: a batch of checks (one
 * multi-limit decision, or releases) and its completion. Plain data, so the
 * policy can build batches without seeing any store. */
#ifndef SLUICE_BATCH_T_H
#define SLUICE_BATCH_T_H

#include <stddef.h>
#include <stdint.h>
#include <sluice/algo-t.h>

/* One limit of a decision. Borrowed by the store until `done` runs. */
struct sl_check {
	const struct sl_limit_spec *spec;
	uint64_t limit_id;    /* stable id of (limit, plan variant, parameters) */
	const char *name;     /* limit name, for Redis keys and logs */
	const char *key;      /* descriptor bytes identifying the counter */
	uint32_t key_len;     /* bytes */
	uint64_t cost;        /* units */
	struct sl_result res; /* filled by the store */
};

enum sl_batch_op {
	SL_OP_DECIDE = 0,  /* all-or-nothing take of every check's cost */
	SL_OP_RELEASE = 1, /* give back every check's cost (concurrency) */
	SL_OP_PEEK = 2,    /* report state, consume nothing */
};

struct sl_batch;
typedef void (*sl_batch_cb)(struct sl_batch *b);

struct sl_batch {
	struct sl_check *checks;
	size_t n;
	uint8_t op;    /* enum sl_batch_op */
	int64_t now;   /* ns; the Redis store uses server time instead */
	void *loop;    /* uv_loop_t of the submitting thread (Redis store) */
	sl_batch_cb done;
	void *data; /* caller's */

	/* Filled by the store before done(): */
	int status;    /* SL_OK, SL_DELAY, SL_DENY, or < 0 (backend failure) */
	size_t denied; /* index of the first rejecting check (SL_DENY) */
	int64_t delay; /* ns, largest queue delay (SL_DELAY) */
	int64_t time;  /* ns, the time the decision was made at */
};

#endif
