/* Private to src/usage: the counting table's helpers (count.c) that the
 * flusher and the database code (usage.c) use. */
#ifndef SLUICE_USAGE_USAGE_INT_H
#define SLUICE_USAGE_USAGE_INT_H

#include <sluice/error.h>
#include "usage/usage.h"

/* Allocate both buffers of at least want slots. Returns 0 or SL_ENOMEM. */
int usage_shard_init(struct sl_usage_shard *s, uint32_t want);
void usage_shard_free(struct sl_usage_shard *s);
/* Make the other buffer active; returns the one the worker filled until
 * now (its used count in *fill), which the caller owns until it swaps
 * again. Thread: the flusher (flushes are serialised). */
struct sl_usage_buf *usage_shard_swap(struct sl_usage_shard *s, uint32_t *fill);
/* Empty b (only the slots it used). */
void usage_buf_clear(struct sl_usage_buf *b);

#endif
