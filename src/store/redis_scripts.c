/* The Lua side of the Redis store: one script decides a whole batch (or
 * the checks of one cluster slot) atomically with the formulas of
 * src/core (gcra.c, quota.c, sliding.c, concurrency.c, decide.c), on Redis
 * server time, so the clocks of sluice nodes never matter. The one design
 * decision: Lua numbers are doubles, exact only below 2^53, so absolute
 * times travel as (seconds, nanoseconds) pairs and are stored as decimal
 * nanosecond strings; only durations are single numbers (exact while below
 * 2^53 ns, 104 days). The same script serves decide (D), peek (P) and
 * refund/release (R), so there is one SHA to load. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <openssl/evp.h>
#include <hiredis/hiredis.h>
#include <sluice/batch-t.h>
#include <sluice/error.h>
#include "store/redis_int.h"

/* State per key: "<expires ns> <v1>[ <v2>]" with the expiry of struct
 * sl_state (TTL set to it, so Redis reclaims fresh states): rate "<TAT> 0",
 * quota "<window end> <used>", sliding "<start of w+2> <prev> <cur>",
 * concurrency "<lease end> <in use>". */
const char sl_redis_script[] =
	"-- sluice decision script: one call decides every check of a batch (or\n"
	"-- of one cluster slot) atomically, on Redis server time.\n"
	"-- KEYS: one per stateful check (rate, quota, sliding, concurrency), in order.\n"
	"-- ARGV[1] op: D decide (all or nothing), P peek, R refund then peek.\n"
	"-- ARGV[2], ARGV[3]: R only: server time (s, ns) of the commit being\n"
	"--   refunded, or 0 0 (a release: no window check).\n"
	"-- ARGV[4..]: 9 per check: algo n period interval burst queue calendar tz cost.\n"
	"-- Reply: status (0 ok, 1 delay, 2 deny), first rejecting index (-1 none),\n"
	"--   time s, time ns, then 6 per check: outcome remaining reset_after\n"
	"--   retry_after delay window (ns).\n"
	"-- Times are (s, ns) pairs: Lua numbers are doubles, exact only below\n"
	"-- 2^53, so absolute nanoseconds never appear as one number; durations do.\n"
	"local E9 = 1000000000\n"
	"local op = ARGV[1]\n"
	"local tm = redis.call('TIME')\n"
	"local now_s, now_ns = tonumber(tm[1]), tonumber(tm[2]) * 1000\n"
	"\n"
	"local function fdm(a, b)\n"
	"  local q = math.floor(a / b)\n"
	"  local r = a - q * b\n"
	"  if r < 0 then q = q - 1; r = r + b elseif r >= b then q = q + 1; r = r - b end\n"
	"  return q, r\n"
	"end\n"
	"local function tadd(s, ns, d)\n"
	"  local q, r = fdm(ns + d, E9)\n"
	"  return s + q, r\n"
	"end\n"
	"local function gt(as, ans, bs, bns) return as > bs or (as == bs and ans > bns) end\n"
	"local function diff(as, ans, bs, bns) return (as - bs) * E9 + (ans - bns) end\n"
	"local function live(st) return gt(st[1], st[2], now_s, now_ns) end\n"
	"-- floor(a*b/m), 0 <= a < 2^32, b and m below 2^48: base-16 long division\n"
	"local function mulfloor(a, b, m)\n"
	"  local q, r, t = 0, 0, 0\n"
	"  for i = 7, 0, -1 do\n"
	"    t, r = fdm(r * 16 + (math.floor(a / 16 ^ i) % 16) * b, m)\n"
	"    q = q * 16 + t\n"
	"  end\n"
	"  return q\n"
	"end\n"
	"-- (w, e) with w*p + e = s*1e9 + ns, 0 <= e < p\n"
	"local function wdiv(s, ns, p)\n"
	"  local q, r, t = 0, 0, 0\n"
	"  for i = 8, 0, -1 do\n"
	"    t, r = fdm(r * 16 + (math.floor(s / 16 ^ i) % 16) * E9, p)\n"
	"    q = q * 16 + t\n"
	"  end\n"
	"  t, r = fdm(r + ns, p)\n"
	"  return q + t, r\n"
	"end\n"
	"local function dfc(y, m, d)\n"
	"  if m <= 2 then y = y - 1 end\n"
	"  local era = math.floor(y / 400)\n"
	"  local yoe = y - era * 400\n"
	"  local mm = m > 2 and m - 3 or m + 9\n"
	"  local doy = math.floor((153 * mm + 2) / 5) + d - 1\n"
	"  return era * 146097 + yoe * 365 + math.floor(yoe / 4) - math.floor(yoe / 100) + doy - 719468\n"
	"end\n"
	"local function cfd(z)\n"
	"  z = z + 719468\n"
	"  local era = math.floor(z / 146097)\n"
	"  local doe = z - era * 146097\n"
	"  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) -\n"
	"    math.floor(doe / 146096)) / 365)\n"
	"  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))\n"
	"  local mp = math.floor((5 * doy + 2) / 153)\n"
	"  local m = mp < 10 and mp + 3 or mp - 9\n"
	"  local y = yoe + era * 400\n"
	"  if m <= 2 then y = y + 1 end\n"
	"  return y, m\n"
	"end\n"
	"-- calendar window [a, b) in UTC seconds containing UTC second s\n"
	"local function calwin(cal, tz, s)\n"
	"  local l = s + tz\n"
	"  local a, b\n"
	"  if cal == 1 then\n"
	"    a = math.floor(l / 3600) * 3600; b = a + 3600\n"
	"  elseif cal == 3 then\n"
	"    local d = math.floor(l / 86400)\n"
	"    d = d - (d + 3) % 7\n"
	"    a = d * 86400; b = a + 7 * 86400\n"
	"  elseif cal == 4 then\n"
	"    local y, m = cfd(math.floor(l / 86400))\n"
	"    a = dfc(y, m, 1) * 86400\n"
	"    if m == 12 then b = dfc(y + 1, 1, 1) * 86400 else b = dfc(y, m + 1, 1) * 86400 end\n"
	"  else\n"
	"    a = math.floor(l / 86400) * 86400; b = a + 86400\n"
	"  end\n"
	"  return a - tz, b - tz\n"
	"end\n"
	"\n"
	"-- Each eval returns outcome (0 allowed, 1 delayed, 2 rejected), the\n"
	"-- result {remaining, reset_after, retry_after, delay, window} and the next\n"
	"-- state {exp_s, exp_ns, v1, v2} or nil when nothing changes.\n"
	"local function gcra(sp, st, c)\n"
	"  local t = sp[4]\n"
	"  local bt = sp[5] * t\n"
	"  local bq = sp[5] + sp[6]\n"
	"  local wait = 0\n"
	"  if live(st) then wait = diff(st[1], st[2], now_s, now_ns) end\n"
	"  local res = {0, wait, 0, 0, sp[3]}\n"
	"  if c == 0 then\n"
	"    if wait <= bt then res[1] = fdm(bt - wait, t) end\n"
	"    return 0, res\n"
	"  end\n"
	"  if c > bq then return 2, res end\n"
	"  local d = wait + c * t\n"
	"  if d > bq * t then res[3] = d - bt; return 2, res end\n"
	"  local s, ns = tadd(now_s, now_ns, d)\n"
	"  res[2] = d\n"
	"  if d <= bt then res[1] = fdm(bt - d, t); return 0, res, {s, ns, 0, 0} end\n"
	"  res[4] = d - bt\n"
	"  return 1, res, {s, ns, 0, 0}\n"
	"end\n"
	"\n"
	"local function quota(sp, st, c)\n"
	"  local es, ens, used = 0, 0, 0\n"
	"  if live(st) then\n"
	"    es, ens, used = st[1], st[2], st[3]\n"
	"  else\n"
	"    local _, b = calwin(sp[7], sp[8], now_s)\n"
	"    es = b\n"
	"  end\n"
	"  local a = calwin(sp[7], sp[8], ens > 0 and es or es - 1)\n"
	"  local n = sp[2]\n"
	"  local res = {used < n and n - used or 0, diff(es, ens, now_s, now_ns), 0, 0, diff(es, ens, a, 0)}\n"
	"  if c == 0 then return 0, res end\n"
	"  if c > n or used > n - c then\n"
	"    if c <= n then res[3] = res[2] end\n"
	"    return 2, res\n"
	"  end\n"
	"  res[1] = n - used - c\n"
	"  return 0, res, {es, ens, used + c, 0}\n"
	"end\n"
	"\n"
	"local function sliding(sp, st, c)\n"
	"  local p, n = sp[3], sp[2]\n"
	"  local prev, cur, extra = 0, 0, 0\n"
	"  local w, e = wdiv(now_s, now_ns, p)\n"
	"  local ss, sns = tadd(now_s, now_ns, -e)\n"
	"  if live(st) then\n"
	"    local sw = wdiv(st[1], st[2], p) - 2\n"
	"    if sw == w then\n"
	"      prev, cur = st[3], st[4]\n"
	"    elseif sw == w - 1 then\n"
	"      prev = st[4]\n"
	"    elseif sw > w then\n"
	"      prev, cur = st[3], st[4]\n"
	"      extra = (sw - w) * p - e\n"
	"      ss, sns = tadd(st[1], st[2], -2 * p)\n"
	"    end\n"
	"  end\n"
	"  if extra > 0 then e = 0 end\n"
	"  local left = p - e\n"
	"  local est = prev - mulfloor(prev, e, p) + cur\n"
	"  local res = {est < n and n - est or 0, 0, 0, 0, p}\n"
	"  if cur > 0 then res[2] = extra + left + p elseif prev > 0 then res[2] = extra + left end\n"
	"  if c ~= 0 and (c > n or est > n - c) then\n"
	"    local r = 0\n"
	"    if c <= n then\n"
	"      if cur + c <= n then\n"
	"        local k = n - c - cur\n"
	"        local pa = prev <= k and 0 or p - mulfloor(k, p, prev)\n"
	"        r = pa - e\n"
	"      else\n"
	"        local k = n - c\n"
	"        r = left + (cur <= k and 0 or p - mulfloor(k, p, cur))\n"
	"      end\n"
	"    end\n"
	"    if r > 0 then res[3] = r + extra end\n"
	"    return 2, res\n"
	"  end\n"
	"  if c == 0 then return 0, res end\n"
	"  cur = cur + c\n"
	"  res[1] = n - est - c\n"
	"  res[2] = extra + left + p\n"
	"  local xs, xns = tadd(ss, sns, 2 * p)\n"
	"  return 0, res, {xs, xns, prev, cur}\n"
	"end\n"
	"\n"
	"local function conc(sp, st, c)\n"
	"  local n = sp[2]\n"
	"  local used = 0\n"
	"  local res = {0, 0, 0, 0, 0}\n"
	"  if live(st) then used = st[3]; res[2] = diff(st[1], st[2], now_s, now_ns) end\n"
	"  res[1] = used < n and n - used or 0\n"
	"  if c == 0 then return 0, res end\n"
	"  if c > n or used > n - c then\n"
	"    if c <= n then res[3] = math.min(E9, res[2]) end\n"
	"    return 2, res\n"
	"  end\n"
	"  local xs, xns = tadd(now_s, now_ns, sp[3])\n"
	"  if gt(st[1], st[2], xs, xns) then xs, xns = st[1], st[2] end\n"
	"  res[1] = n - used - c\n"
	"  res[2] = diff(xs, xns, now_s, now_ns)\n"
	"  return 0, res, {xs, xns, used + c, 0}\n"
	"end\n"
	"\n"
	"local evals = {gcra, quota, sliding, conc}\n"
	"\n"
	"local function load(key)\n"
	"  local v = redis.call('GET', key)\n"
	"  if not v then return {0, 0, 0, 0} end\n"
	"  local e, a, b = string.match(v, '^(%d+) (%d+) ?(%d*)$')\n"
	"  if not e then return {0, 0, 0, 0} end\n"
	"  local l = #e\n"
	"  local s, ns = 0, tonumber(e)\n"
	"  if l > 9 then s, ns = tonumber(string.sub(e, 1, l - 9)), tonumber(string.sub(e, l - 8)) end\n"
	"  return {s, ns, tonumber(a), tonumber(b) or 0}\n"
	"end\n"
	"\n"
	"local function store(key, st, keepttl)\n"
	"  local ttl = diff(st[1], st[2], now_s, now_ns)\n"
	"  if ttl <= 0 then\n"
	"    redis.call('DEL', key)\n"
	"    return\n"
	"  end\n"
	"  local e\n"
	"  if st[1] > 0 then e = string.format('%d%09d', st[1], st[2]) else e = string.format('%d', st[2]) end\n"
	"  local v = e .. ' ' .. string.format('%d', st[3])\n"
	"  if st[4] ~= 0 then v = v .. ' ' .. string.format('%d', st[4]) end\n"
	"  if keepttl then\n"
	"    redis.call('SET', key, v, 'KEEPTTL')\n"
	"  else\n"
	"    redis.call('SET', key, v, 'PX', math.floor((ttl + 999999) / 1000000))\n"
	"  end\n"
	"end\n"
	"\n"
	"local nitems = math.floor((#ARGV - 3) / 9)\n"
	"local sps, costs, keys, outs, ress = {}, {}, {}, {}, {}\n"
	"local orig, cur = {}, {}\n"
	"local k = 0\n"
	"for i = 1, nitems do\n"
	"  local b = 3 + (i - 1) * 9\n"
	"  local sp = {}\n"
	"  for j = 1, 8 do sp[j] = tonumber(ARGV[b + j]) end\n"
	"  sps[i] = sp\n"
	"  costs[i] = tonumber(ARGV[b + 9])\n"
	"  if sp[1] >= 1 and sp[1] <= 4 then\n"
	"    k = k + 1\n"
	"    local key = KEYS[k]\n"
	"    keys[i] = key\n"
	"    if not orig[key] then orig[key] = load(key); cur[key] = orig[key] end\n"
	"  end\n"
	"end\n"
	"\n"
	"local function run(i, st, c)\n"
	"  local a = sps[i][1]\n"
	"  if a >= 1 and a <= 4 then return evals[a](sps[i], st, c) end\n"
	"  if a == 5 then return 0, {0, 0, 0, 0, 0} end\n"
	"  return 2, {0, 0, 0, 0, 0}\n"
	"end\n"
	"\n"
	"local status, first = 0, -1\n"
	"local dirty = {}\n"
	"if op == 'D' then\n"
	"  for i = 1, nitems do\n"
	"    local key = keys[i]\n"
	"    local o, res, nst = run(i, key and cur[key], costs[i])\n"
	"    outs[i], ress[i] = o, res\n"
	"    if o == 2 and first < 0 then first = i - 1 end\n"
	"    if o == 1 then status = 1 end\n"
	"    if o ~= 2 and nst then cur[key] = nst; dirty[key] = true end\n"
	"  end\n"
	"  if first >= 0 then\n"
	"    status = 2\n"
	"    for i = 1, nitems do\n"
	"      if outs[i] ~= 2 then\n"
	"        local key = keys[i]\n"
	"        outs[i], ress[i] = run(i, key and orig[key], 0)\n"
	"      end\n"
	"    end\n"
	"  else\n"
	"    for key, _ in pairs(dirty) do store(key, cur[key], false) end\n"
	"  end\n"
	"else\n"
	"  if op == 'R' then\n"
	"    local rs, rns = tonumber(ARGV[2]), tonumber(ARGV[3])\n"
	"    for i = 1, nitems do\n"
	"      local key, sp, c = keys[i], sps[i], costs[i]\n"
	"      local st = key and cur[key]\n"
	"      if st and live(st) then\n"
	"        local a = sp[1]\n"
	"        local ok = true\n"
	"        if rs > 0 and a == 2 then\n"
	"          local wa = calwin(sp[7], sp[8], st[2] > 0 and st[1] or st[1] - 1)\n"
	"          ok = rs >= wa\n"
	"        elseif rs > 0 and a == 3 then\n"
	"          ok = wdiv(rs, rns, sp[3]) == wdiv(st[1], st[2], sp[3]) - 2\n"
	"        end\n"
	"        if ok then\n"
	"          local n = {st[1], st[2], st[3], st[4]}\n"
	"          if a == 1 then\n"
	"            local d = diff(st[1], st[2], now_s, now_ns) - c * sp[4]\n"
	"            if d < 0 then d = 0 end\n"
	"            n[1], n[2] = tadd(now_s, now_ns, d)\n"
	"          elseif a == 3 then\n"
	"            n[4] = st[4] > c and st[4] - c or 0\n"
	"          else\n"
	"            n[3] = st[3] > c and st[3] - c or 0\n"
	"            if a == 4 and n[3] == 0 then n = {0, 0, 0, 0} end\n"
	"          end\n"
	"          cur[key] = n\n"
	"          dirty[key] = true\n"
	"        end\n"
	"      end\n"
	"    end\n"
	"    for key, _ in pairs(dirty) do\n"
	"      local st = cur[key]\n"
	"      if st[1] == 0 and st[2] == 0 then redis.call('DEL', key)\n"
	"      elseif not live(st) then redis.call('DEL', key)\n"
	"      else store(key, st, true) end\n"
	"    end\n"
	"  end\n"
	"  for i = 1, nitems do\n"
	"    local key = keys[i]\n"
	"    outs[i], ress[i] = run(i, key and cur[key], 0)\n"
	"  end\n"
	"end\n"
	"\n"
	"local out = {status, first, now_s, now_ns}\n"
	"for i = 1, nitems do\n"
	"  local r = ress[i]\n"
	"  out[#out + 1] = outs[i]\n"
	"  for j = 1, 5 do out[#out + 1] = r[j] end\n"
	"end\n"
	"return out\n";

void sl_redis_script_sha1(char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_Digest(sl_redis_script, strlen(sl_redis_script), md, &len, EVP_sha1(), NULL);
	for (unsigned i = 0; i < 20 && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
}

void sl_redis_fill_limits(struct sl_check *ck)
{
	switch (ck->spec->algo) {
	case SL_ALGO_RATE:
	case SL_ALGO_QUOTA:
	case SL_ALGO_SLIDING:
	case SL_ALGO_CONCURRENCY:
		ck->res.limit = ck->spec->n;
		break;
	case SL_ALGO_UNLIMITED:
		ck->res.limit = SL_UNLIMITED;
		ck->res.remaining = SL_UNLIMITED;
		break;
	default:
		ck->res.limit = 0;
		ck->res.remaining = 0;
		break;
	}
}

/* Bounds of what the script can send: times are Redis TIME (s, us * 1000)
 * and the durations it computes are never negative. */
#define MAX_TIME_S (INT64_MAX / SL_NS_PER_SEC - 1) /* s: time in ns fits int64 */

int sl_redis_script_result(const redisReply *r, struct sl_check *checks, size_t m,
                           struct sl_redis_result *out)
{
	long long hdr[SL_REDIS_HDR_FIELDS];

	if (r->type != REDIS_REPLY_ARRAY ||
	    r->elements != SL_REDIS_HDR_FIELDS + m * SL_REDIS_ITEM_FIELDS)
		return SL_EPROTO;
	for (size_t k = 0; k < r->elements; k++)
		if (r->element[k]->type != REDIS_REPLY_INTEGER)
			return SL_EPROTO;
	for (int k = 0; k < SL_REDIS_HDR_FIELDS; k++)
		hdr[k] = r->element[k]->integer;
	/* A deny names one of the call's checks; a time makes an int64 of ns. */
	if (hdr[0] < 0 || hdr[0] > 2 || (hdr[0] == 2 && (hdr[1] < 0 || (uint64_t)hdr[1] >= m)) ||
	    hdr[2] < 0 || hdr[2] > MAX_TIME_S || hdr[3] < 0 || hdr[3] >= SL_NS_PER_SEC)
		return SL_EPROTO;
	out->delay = 0;
	for (size_t i = 0; i < m; i++) {
		struct sl_check *ck = &checks[i];
		redisReply **v = r->element + SL_REDIS_HDR_FIELDS + i * SL_REDIS_ITEM_FIELDS;

		for (int k = 0; k < SL_REDIS_ITEM_FIELDS; k++)
			if (v[k]->integer < 0)
				return SL_EPROTO;
		if (v[0]->integer > SL_REJECTED)
			return SL_EPROTO;
		ck->res.outcome = (uint8_t)v[0]->integer;
		ck->res.remaining = (uint64_t)v[1]->integer;
		ck->res.reset_after = v[2]->integer;
		ck->res.retry_after = v[3]->integer;
		ck->res.delay = v[4]->integer;
		ck->res.window = v[5]->integer;
		sl_redis_fill_limits(ck);
		if (ck->res.delay > out->delay)
			out->delay = ck->res.delay;
	}
	out->status = hdr[0];
	out->denied = hdr[0] == 2 ? (size_t)hdr[1] : m;
	out->t_s = hdr[2];
	out->t_ns = hdr[3];
	out->time = (int64_t)hdr[2] * SL_NS_PER_SEC + hdr[3];
	return 0;
}
