/* The daemon's clock: nanoseconds on one timeline anchored to the Unix epoch
 * (wall-clock read once at start, plus CLOCK_MONOTONIC elapsed since), so
 * it never goes backwards and `now + reset_after` is a Unix time. Workers
 * read it once per loop pass and pass `now` down. */
#ifndef SLUICE_NET_CLOCK_H
#define SLUICE_NET_CLOCK_H

#include <stdint.h>

/* Anchor the timeline. Call once before any worker starts. */
void sl_clock_init(void);

/* ns since the epoch on the anchored timeline. Thread: any. */
int64_t sl_clock_now(void);

#endif
