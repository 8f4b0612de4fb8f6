/* Types of the live account store (DESIGN.md section 6): the in-memory
 * index every worker reads on the request path, and the records in it.
 * Types only, so other headers include it cheaply. The index has one
 * writer (the accounts thread, service.c) and any number of readers; what
 * a reader can reach is freed only after every reader that could have seen
 * it has left its read section (epochs, index.c). */
#ifndef SLUICE_ACCOUNTS_T_H
#define SLUICE_ACCOUNTS_T_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include "policy/policy.h"

#define SL_ACX_READERS 1024 /* reader threads with a slot of their own */

/* An account as the index holds it: immutable once published; a change
 * publishes a new record in the account's cell. Overrides come first (for
 * alignment), then "name\0plan\0" (index.c). */
struct sl_acx_account {
	uint8_t name_len, plan_len, nover;
	bool suspended;
	struct sl_live_override *over; /* [nover], inside this allocation */
};

/* The stable place keys point at: an account's changes swap cur; a
 * deleted account's cur is NULL (its keys then find nothing). */
struct sl_acx_cell {
	_Atomic(struct sl_acx_account *) cur;
	uint32_t nkeys; /* writer only: keys pointing here */
	bool dead;      /* writer only: removed from the name table */
};

/* One API key: its SHA-256, its account, and until when it is good (ns on
 * the unix timeline; INT64_MAX: no expiry and not revoked). 48 bytes. */
struct sl_acx_key {
	uint8_t sha256[32];
	struct sl_acx_cell *cell;
	int64_t until;
};

/* Open-addressed table of pointers (keys or cells), published whole. */
struct sl_acx_table {
	size_t mask; /* capacity - 1, capacity a power of two */
	_Atomic(void *) slot[];
};

/* Fixed-size records carved from chunks; a freed one goes on a free list
 * (writer only). */
struct sl_acx_slab {
	size_t size;   /* bytes per record */
	void *free;    /* free list through the first word */
	char *cur;     /* current chunk */
	size_t left;   /* records left in it */
	void **chunks; /* every chunk, for destroy */
	size_t nchunks, capchunks;
};

struct sl_acx_retired {
	void *p;
	uint8_t kind;   /* what freeing it means (index.c) */
	uint64_t epoch; /* global epoch when it was unlinked */
};

struct sl_acx_reader {
	_Atomic uint64_t epoch; /* 0: not reading */
	char pad[56];           /* one cache line each */
};

struct sl_acx {
	_Atomic(struct sl_acx_table *) keys;  /* of struct sl_acx_key */
	_Atomic(struct sl_acx_table *) names; /* of struct sl_acx_cell */
	_Atomic uint64_t epoch;
	_Atomic unsigned slow_readers; /* threads beyond SL_ACX_READERS */
	uint64_t seed;                 /* name hash seed */
	/* writer only */
	size_t nkeys, keys_used; /* live, live + tombstones */
	size_t naccounts, names_used;
	struct sl_acx_slab key_slab, cell_slab;
	struct sl_acx_retired *retired;
	size_t nretired, capretired;
	size_t account_bytes; /* bytes of account records live */
	struct sl_acx_reader readers[SL_ACX_READERS];
};

#endif
