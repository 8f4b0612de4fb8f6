/* Epoch-anchored monotonic clock (see clock.h). The anchor is written once
 * before the workers start and only read afterwards, so no locking. */
#include <time.h>
#include "net/clock.h"

static int64_t wall0; /* ns since the epoch at sl_clock_init */
static int64_t mono0; /* ns of CLOCK_MONOTONIC at sl_clock_init */

static int64_t ns(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

void sl_clock_init(void)
{
	wall0 = ns(CLOCK_REALTIME);
	mono0 = ns(CLOCK_MONOTONIC);
}

int64_t sl_clock_now(void)
{
	if (wall0 == 0)
		sl_clock_init();
	return wall0 + (ns(CLOCK_MONOTONIC) - mono0);
}
