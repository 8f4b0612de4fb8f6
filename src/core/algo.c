/* Limit specs and the dispatch of sl_algo_eval / sl_algo_refund to the one
 * file per algorithm. The builders are where parameters are validated: once
 * a spec is built, every product the algorithms form from it ((B+Q)*T for
 * rate) fits in int64, so the hot path has no error returns, only
 * saturation where a caller's cost or stored state may be arbitrary.
 * unlimited and deny are stateless and live here. */
#include <stdint.h>
#include <string.h>
#include <sluice/algo.h>
#include <sluice/error.h>

int sl_spec_rate(struct sl_limit_spec *s, uint64_t n, int64_t period, uint64_t burst,
                 uint64_t queue)
{
	uint64_t interval, bq, bqt;

	if (n == 0 || period <= 0 || n > (uint64_t)period)
		return SL_EINVAL;
	interval = (uint64_t)period / n + ((uint64_t)period % n != 0);
	if (burst == 0)
		burst = n;
	if (__builtin_add_overflow(burst, queue, &bq) ||
	    __builtin_mul_overflow(bq, interval, &bqt) || bqt > (uint64_t)INT64_MAX)
		return SL_EINVAL;
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_RATE;
	s->n = n;
	s->period = period;
	s->interval = (int64_t)interval;
	s->burst = burst;
	s->queue = queue;
	return SL_OK;
}

int sl_spec_quota(struct sl_limit_spec *s, uint64_t n, uint8_t calendar, int32_t tz_offset)
{
	if (n == 0 || calendar < SL_CAL_HOUR || calendar > SL_CAL_MONTH || tz_offset <= -86400 ||
	    tz_offset >= 86400)
		return SL_EINVAL;
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_QUOTA;
	s->calendar = calendar;
	s->tz_offset = tz_offset;
	s->n = n;
	return SL_OK;
}

int sl_spec_sliding(struct sl_limit_spec *s, uint64_t n, int64_t period)
{
	if (n == 0 || n >= (UINT64_C(1) << 32) || period <= 0)
		return SL_EINVAL;
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_SLIDING;
	s->n = n;
	s->period = period;
	return SL_OK;
}

int sl_spec_concurrency(struct sl_limit_spec *s, uint64_t n, int64_t lease_ttl)
{
	if (n == 0 || lease_ttl <= 0)
		return SL_EINVAL;
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_CONCURRENCY;
	s->n = n;
	s->period = lease_ttl;
	return SL_OK;
}

void sl_spec_unlimited(struct sl_limit_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_UNLIMITED;
}

void sl_spec_deny(struct sl_limit_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->algo = SL_ALGO_DENY;
}

/* Results start zeroed and next starts as *st, so each algorithm sets only
 * what differs. */
int sl_algo_eval(const struct sl_limit_spec *spec, const struct sl_state *st, int64_t now,
                 uint64_t cost, struct sl_state *next, struct sl_result *res)
{
	*next = *st;
	memset(res, 0, sizeof(*res));
	switch (spec->algo) {
	case SL_ALGO_RATE:
		return sl_gcra_eval(spec, st, now, cost, next, res);
	case SL_ALGO_QUOTA:
		return sl_quota_eval(spec, st, now, cost, next, res);
	case SL_ALGO_SLIDING:
		return sl_sliding_eval(spec, st, now, cost, next, res);
	case SL_ALGO_CONCURRENCY:
		return sl_concurrency_eval(spec, st, now, cost, next, res);
	case SL_ALGO_UNLIMITED:
		res->outcome = SL_ALLOWED;
		res->limit = SL_UNLIMITED;
		res->remaining = SL_UNLIMITED;
		return SL_ALLOWED;
	default: /* SL_ALGO_DENY, and unknown algorithms fail closed */
		res->outcome = SL_REJECTED;
		return SL_REJECTED;
	}
}

void sl_algo_refund(const struct sl_limit_spec *spec, struct sl_state *st, int64_t now,
                    uint64_t cost)
{
	switch (spec->algo) {
	case SL_ALGO_RATE:
		sl_gcra_refund(spec, st, now, cost);
		break;
	case SL_ALGO_QUOTA:
		sl_quota_refund(spec, st, now, cost);
		break;
	case SL_ALGO_SLIDING:
		sl_sliding_refund(spec, st, now, cost);
		break;
	case SL_ALGO_CONCURRENCY:
		sl_concurrency_refund(spec, st, now, cost);
		break;
	default: /* stateless */
		break;
	}
}
