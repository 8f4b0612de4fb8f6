/* The Lua side of the Redis store: one library decides every check of a
 * call atomically with the formulas of src/core (gcra.c, quota.c,
 * sliding.c, concurrency.c, decide.c), on Redis server time, so the clocks
 * of sluice nodes never matter. A call carries many groups (one decision,
 * peek, refund, local-mode sync or heartbeat each), so one round trip and
 * one script entry serve every request a worker has ready. The one design
 * decision: Lua numbers are doubles, exact only below 2^53, so every time
 * is handled relative to the call's server time (a state's `rel` is its
 * expiry minus now, a duration) and only the stored strings hold absolute
 * decimal nanoseconds; products that may pass 2^53 fall back to an exact
 * long division. Loaded as a Redis Function library (FUNCTION LOAD, its
 * helpers defined once) or, where FUNCTION is missing, as an EVALSHA
 * script with the same body. */
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/evp.h>
#include <hiredis/hiredis.h>
#include <sluice/batch-t.h>
#include <sluice/error.h>
#include "store/redis_int.h"

/* State per key: "<expires ns> <v1>[ <v2>]" with the expiry of struct
 * sl_state (TTL set to it, so Redis reclaims fresh states): rate "<TAT>
 * <T the TAT was committed under>", quota "<window end> <used>", sliding
 * "<start of w+2> <prev> <cur>", concurrency "<lease end> <in use>". */
static const char body[] =
        "local E9 = 1000000000\n"
        "local P52 = 4503599627370496\n"
        "local P53 = 9007199254740992\n"
        "-- bound on the first call: a function library cannot read globals while it loads\n"
        "local floor, call, fmt\n"
        "local now_s, now_ns, NM = 0, 0, {}\n"
        "local SPECS, NSPECS = {}, 0\n"
        "\n"
        "local function fdm(a, b)\n"
        "  local q = floor(a / b)\n"
        "  local r = a - q * b\n"
        "  if r < 0 then q = q - 1; r = r + b elseif r >= b then q = q + 1; r = r - b end\n"
        "  return q, r\n"
        "end\n"
        "-- floor(a*b/m), exact: directly when a*b < 2^53, else base-16 long\n"
        "-- division over a's digits (exact for b and m below 2^48)\n"
        "local function mulfloor(a, b, m)\n"
        "  local x = a * b\n"
        "  if x < P53 then return (fdm(x, m)) end\n"
        "  local h = 1\n"
        "  while h * 16 <= a do h = h * 16 end\n"
        "  local q, r, t = 0, 0, 0\n"
        "  while h >= 1 do\n"
        "    t, r = fdm(r * 16 + (floor(a / h) % 16) * b, m)\n"
        "    q = q * 16 + t\n"
        "    h = h / 16\n"
        "  end\n"
        "  return q\n"
        "end\n"
        "-- now mod p, exactly (cached per call): Horner over 1e9 in base 2^k with\n"
        "-- 2^k * p <= 2^52, so every partial sum stays below 2^53\n"
        "local function nowmod(p)\n"
        "  local e = NM[p]\n"
        "  if e then return e end\n"
        "  local _, a = fdm(now_s, p)\n"
        "  local B = 2\n"
        "  while B * 2 * p <= P52 do B = B * 2 end\n"
        "  local ds, x = {}, E9\n"
        "  while x > 0 do local q, d = fdm(x, B); ds[#ds + 1] = d; x = q end\n"
        "  local r = 0\n"
        "  for j = #ds, 1, -1 do local _, y = fdm(r * B + a * ds[j], p); r = y end\n"
        "  _, r = fdm(r + now_ns, p)\n"
        "  NM[p] = r\n"
        "  return r\n"
        "end\n"
        "local function dfc(y, m, d)\n"
        "  if m <= 2 then y = y - 1 end\n"
        "  local era = floor(y / 400)\n"
        "  local yoe = y - era * 400\n"
        "  local mm = m > 2 and m - 3 or m + 9\n"
        "  local doy = floor((153 * mm + 2) / 5) + d - 1\n"
        "  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468\n"
        "end\n"
        "local function cfd(z)\n"
        "  z = z + 719468\n"
        "  local era = floor(z / 146097)\n"
        "  local doe = z - era * 146097\n"
        "  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) "
        "/ 365)\n"
        "  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))\n"
        "  local mp = floor((5 * doy + 2) / 153)\n"
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
        "    a = floor(l / 3600) * 3600; b = a + 3600\n"
        "  elseif cal == 3 then\n"
        "    local d = floor(l / 86400)\n"
        "    d = d - (d + 3) % 7\n"
        "    a = d * 86400; b = a + 7 * 86400\n"
        "  elseif cal == 4 then\n"
        "    local y, m = cfd(floor(l / 86400))\n"
        "    a = dfc(y, m, 1) * 86400\n"
        "    if m == 12 then b = dfc(y + 1, 1, 1) * 86400 else b = dfc(y, m + 1, 1) * 86400 end\n"
        "  else\n"
        "    a = floor(l / 86400) * 86400; b = a + 86400\n"
        "  end\n"
        "  return a - tz, b - tz\n"
        "end\n"
        "\n"
        "-- A state is {rel, v1, v2}: rel = expires - now (ns; <= 0: fresh).\n"
        "-- gcra: the backlog TAT - now, rescaled when the stored interval v differs\n"
        "local function backlog(st, t)\n"
        "  local w = st[1]\n"
        "  if w <= 0 then return 0 end\n"
        "  local v = st[2]\n"
        "  if v > 0 and v ~= t then w = mulfloor(w, t, v) end\n"
        "  return w\n"
        "end\n"
        "-- Each eval returns outcome (0 allowed, 1 delayed, 2 rejected), the result\n"
        "-- {remaining, reset_after, retry_after, delay, window} and the next state\n"
        "-- or nil when nothing changes.\n"
        "local function gcra(sp, st, c)\n"
        "  local t = sp[4]\n"
        "  local bt = sp[5] * t\n"
        "  local bq = sp[5] + sp[6]\n"
        "  local wait = backlog(st, t)\n"
        "  local res = {0, wait, 0, 0, sp[3]}\n"
        "  if c == 0 then\n"
        "    if wait <= bt then res[1] = fdm(bt - wait, t) end\n"
        "    return 0, res\n"
        "  end\n"
        "  if c > bq then return 2, res end\n"
        "  local d = wait + c * t\n"
        "  if d > bq * t then res[3] = d - bt; return 2, res end\n"
        "  res[2] = d\n"
        "  if d <= bt then res[1] = fdm(bt - d, t); return 0, res, {d, t, 0} end\n"
        "  res[4] = d - bt\n"
        "  return 1, res, {d, t, 0}\n"
        "end\n"
        "-- quota window of a state: rel of its end, used, and its length (ns)\n"
        "local function qwin(sp, st)\n"
        "  local rel, used, es, ens = 0, 0, 0, 0\n"
        "  if st[1] > 0 then\n"
        "    rel, used = st[1], st[2]\n"
        "    local q, r = fdm(now_ns + rel, E9)\n"
        "    es, ens = now_s + q, r\n"
        "  else\n"
        "    local _, b = calwin(sp[7], sp[8], now_s)\n"
        "    es = b\n"
        "    rel = (b - now_s) * E9 - now_ns\n"
        "  end\n"
        "  local a = calwin(sp[7], sp[8], ens > 0 and es or es - 1)\n"
        "  return rel, used, (es - a) * E9 + ens\n"
        "end\n"
        "local function quota(sp, st, c)\n"
        "  local rel, used, win = qwin(sp, st)\n"
        "  local n = sp[2]\n"
        "  local res = {used < n and n - used or 0, rel, 0, 0, win}\n"
        "  if c == 0 then return 0, res end\n"
        "  if c > n or used > n - c then\n"
        "    if c <= n then res[3] = rel end\n"
        "    return 2, res\n"
        "  end\n"
        "  res[1] = n - used - c\n"
        "  return 0, res, {rel, used + c, 0}\n"
        "end\n"
        "-- sliding: prev, cur, extra (ns the stored window starts after now), e\n"
        "-- (ns into the window), and the window start (rel)\n"
        "local function slide(sp, st)\n"
        "  local p = sp[3]\n"
        "  local prev, cur, extra = 0, 0, 0\n"
        "  local e = nowmod(p)\n"
        "  if st[1] > 0 then\n"
        "    local dw = fdm(e + st[1], p) - 2\n"
        "    if dw == 0 then\n"
        "      prev, cur = st[2], st[3]\n"
        "    elseif dw == -1 then\n"
        "      prev = st[3]\n"
        "    elseif dw > 0 then\n"
        "      prev, cur = st[2], st[3]\n"
        "      extra = dw * p - e\n"
        "    end\n"
        "  end\n"
        "  if extra > 0 then return prev, cur, extra, 0, extra end\n"
        "  return prev, cur, 0, e, -e\n"
        "end\n"
        "local function sliding(sp, st, c)\n"
        "  local p, n = sp[3], sp[2]\n"
        "  local prev, cur, extra, e, ss = slide(sp, st)\n"
        "  local left = p - e\n"
        "  local est = prev - mulfloor(prev, e, p) + cur\n"
        "  local res = {est < n and n - est or 0, 0, 0, 0, p}\n"
        "  if cur > 0 then res[2] = extra + left + p elseif prev > 0 then res[2] = extra + left "
        "end\n"
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
        "  res[1] = n - est - c\n"
        "  res[2] = extra + left + p\n"
        "  return 0, res, {ss + 2 * p, prev, cur + c}\n"
        "end\n"
        "local function conc(sp, st, c)\n"
        "  local n = sp[2]\n"
        "  local used, rel = 0, 0\n"
        "  if st[1] > 0 then used, rel = st[2], st[1] end\n"
        "  local res = {used < n and n - used or 0, rel, 0, 0, 0}\n"
        "  if c == 0 then return 0, res end\n"
        "  if c > n or used > n - c then\n"
        "    if c <= n then res[3] = math.min(E9, rel) end\n"
        "    return 2, res\n"
        "  end\n"
        "  local x = sp[3]\n"
        "  if rel > x then x = rel end\n"
        "  res[1] = n - used - c\n"
        "  res[2] = x\n"
        "  return 0, res, {x, used + c, 0}\n"
        "end\n"
        "local evals = {gcra, quota, sliding, conc}\n"
        "local Z = {0, 0, 0, 0, 0}\n"
        "local function run(sp, st, c)\n"
        "  local a = sp[1]\n"
        "  if a >= 1 and a <= 4 then return evals[a](sp, st, c) end\n"
        "  if a == 5 then return 0, Z end\n"
        "  return 2, Z\n"
        "end\n"
        "-- local mode: take c units without a limit check (admitted on a node)\n"
        "local function add(sp, st, c)\n"
        "  local a = sp[1]\n"
        "  if a == 1 then\n"
        "    local t = sp[4]\n"
        "    return {backlog(st, t) + c * t, t, 0}\n"
        "  elseif a == 2 then\n"
        "    local rel, used = qwin(sp, st)\n"
        "    return {rel, used + c, 0}\n"
        "  elseif a == 3 then\n"
        "    local prev, cur, _, _, ss = slide(sp, st)\n"
        "    return {ss + 2 * sp[3], prev, cur + c}\n"
        "  end\n"
        "  local x = sp[3]\n"
        "  if st[1] > x then x = st[1] end\n"
        "  return {x, (st[1] > 0 and st[2] or 0) + c, 0}\n"
        "end\n"
        "local function refund(sp, st, c, rs, rns)\n"
        "  if st[1] <= 0 then return nil end\n"
        "  local a = sp[1]\n"
        "  if rs > 0 and a == 2 then\n"
        "    local q, r = fdm(now_ns + st[1], E9)\n"
        "    local es = now_s + q\n"
        "    if rs < calwin(sp[7], sp[8], r > 0 and es or es - 1) then return nil end\n"
        "  elseif rs > 0 and a == 3 then\n"
        "    local p = sp[3]\n"
        "    local e = nowmod(p)\n"
        "    local rrel = (rs - now_s) * E9 + (rns - now_ns)\n"
        "    if fdm(e + rrel, p) ~= fdm(e + st[1], p) - 2 then return nil end\n"
        "  end\n"
        "  if a == 1 then\n"
        "    local t = sp[4]\n"
        "    local d = backlog(st, t) - c * t\n"
        "    if d < 0 then d = 0 end\n"
        "    return {d, t, 0}\n"
        "  elseif a == 3 then\n"
        "    return {st[1], st[2], st[3] > c and st[3] - c or 0}\n"
        "  end\n"
        "  local u = st[2] > c and st[2] - c or 0\n"
        "  if a == 4 and u == 0 then return {0, 0, 0} end\n"
        "  return {st[1], u, st[3]}\n"
        "end\n"
        "\n"
        "-- A key holds the states of every limit on one descriptor value:\n"
        "-- \"<limit id hex> <expires ns> <v1> <v2>\" entries joined by ';', so a\n"
        "-- decision over several limits of one value reads and writes one key.\n"
        "local FRESH = {0, 0, 0}\n"
        "local function parse(v)\n"
        "  local pk = {}\n"
        "  if not v then return pk end\n"
        "  -- expires split into seconds and the last 9 digits by the pattern; one\n"
        "  -- entry (one limit on the value) without an iterator\n"
        "  local id, es, ens, a, b = string.match(v, '^(%x+) (%d+)(%d%d%d%d%d%d%d%d%d) (%d+) "
        "(%d+)$')\n"
        "  if id then\n"
        "    pk[id] = {(tonumber(es) - now_s) * E9 + (tonumber(ens) - now_ns), tonumber(a), "
        "tonumber(b)}\n"
        "    return pk\n"
        "  end\n"
        "  for id, es, ens, a, b in string.gmatch(v, '(%x+) (%d+)(%d%d%d%d%d%d%d%d%d) (%d+) "
        "(%d+)') do\n"
        "    pk[id] = {(tonumber(es) - now_s) * E9 + (tonumber(ens) - now_ns), tonumber(a), "
        "tonumber(b)}\n"
        "  end\n"
        "  return pk\n"
        "end\n"
        "local function store(key, pk)\n"
        "  local parts, n, mx = {}, 0, 0\n"
        "  for id, st in pairs(pk) do\n"
        "    local rel = st[1]\n"
        "    if rel > 0 then\n"
        "      local q, r = fdm(now_ns + rel, E9)\n"
        "      n = n + 1\n"
        "      parts[n] = fmt('%s %d%09d %d %d', id, now_s + q, r, st[2], st[3])\n"
        "      if rel > mx then mx = rel end\n"
        "    end\n"
        "  end\n"
        "  if n == 0 then call('DEL', key); return end\n"
        "  -- the TTL as a string of our own: Lua would format a number with %.14g\n"
        "  call('SET', key, n == 1 and parts[1] or table.concat(parts, ';'), 'PX', fmt('%d', "
        "floor((mx + 999999) / 1000000)))\n"
        "end\n"
        "local function spec(s)\n"
        "  local sp = SPECS[s]\n"
        "  if sp then return sp end\n"
        "  local nums, id = string.match(s, '^([^|]*)|(%x+)$')\n"
        "  if not nums then error('sluice: bad spec') end\n"
        "  sp = {}\n"
        "  for x in string.gmatch(nums, '%-?%d+') do sp[#sp + 1] = tonumber(x) end\n"
        "  if #sp ~= 8 then error('sluice: bad spec') end\n"
        "  sp[9] = id\n"
        "  if NSPECS >= 256 then SPECS, NSPECS = {}, 0 end\n"
        "  SPECS[s], NSPECS = sp, NSPECS + 1\n"
        "  return sp\n"
        "end\n"
        "-- the reply being built and its length\n"
        "local OUT, NO = {}, 0\n"
        "local function emit(o, res)\n"
        "  local n = NO\n"
        "  OUT[n + 1], OUT[n + 2], OUT[n + 3], OUT[n + 4], OUT[n + 5], OUT[n + 6] =\n"
        "    o, res[1], res[2], res[3], res[4], res[5]\n"
        "  NO = n + 6\n"
        "end\n"
        "local function emitraw(st)\n"
        "  local n = NO\n"
        "  if st and st[1] > 0 then OUT[n + 1], OUT[n + 2], OUT[n + 3] = st[1], st[2], st[3]\n"
        "  else OUT[n + 1], OUT[n + 2], OUT[n + 3] = 0, 0, 0 end\n"
        "  NO = n + 3\n"
        "end\n"
        "\n"
        "-- per-group scratch, and the state check i of a group starts from: with\n"
        "-- chain, the uncommitted next state of an earlier check of the same\n"
        "-- counter (same key and limit id) in this group, else the stored one\n"
        "local SPS, CS, KS, NSTS, OUTS, RESS = {}, {}, {}, {}, {}, {}\n"
        "local function state(cur, i, chain)\n"
        "  local k = KS[i]\n"
        "  if not k then return nil end\n"
        "  local id = SPS[i][9]\n"
        "  if chain then\n"
        "    for j = i - 1, 1, -1 do\n"
        "      if NSTS[j] and KS[j] == k and SPS[j][9] == id then return NSTS[j] end\n"
        "    end\n"
        "  end\n"
        "  return cur[k][id] or FRESH\n"
        "end\n"
        "\n"
        "-- KEYS: one per stateful check (rate, quota, sliding, concurrency: the\n"
        "-- key of its descriptor value) and one per H group, in order. ARGV: groups,\n"
        "-- each: op, m, then for R the commit's server time s ns (0 0: a release),\n"
        "-- for H a node id and a ttl (ms), otherwise m pairs (spec \"algo n period\n"
        "-- interval burst queue calendar tz|limit id hex\", cost). Ops: D decide (all or "
        "nothing), S decide then raw states, P peek,\n"
        "-- R refund then peek, A take without a limit check then raw states, H node\n"
        "-- heartbeat. Reply: time s, time ns, then per group: D P R 6 integers per\n"
        "-- check (outcome remaining reset_after retry_after delay window), S those\n"
        "-- and 3 more, A 3 per check (raw state: rel v1 v2), H the live node count.\n"
        "local function main(keys, args)\n"
        "  if not floor then floor, call, fmt = math.floor, redis.call, string.format end\n"
        "  local tm = call('TIME')\n"
        "  now_s, now_ns, NM = tonumber(tm[1]), tonumber(tm[2]) * 1000, {}\n"
        "  local cur, dirty = {}, {}\n"
        "  if #keys > 0 then\n"
        "    local vals = call('MGET', unpack(keys))\n"
        "    for i = 1, #keys do\n"
        "      local k = keys[i]\n"
        "      if not cur[k] then cur[k] = parse(vals[i]) end\n"
        "    end\n"
        "  end\n"
        "  OUT, NO = {now_s, now_ns}, 2\n"
        "  local ai, ki, na = 1, 0, #args\n"
        "  while ai <= na do\n"
        "    local op, m = args[ai], tonumber(args[ai + 1])\n"
        "    ai = ai + 2\n"
        "    if op == 'H' then\n"
        "      ki = ki + 1\n"
        "      local key, ttl = keys[ki], tonumber(args[ai + 1])\n"
        "      local ms = now_s * 1000 + floor(now_ns / 1000000)\n"
        "      call('ZADD', key, ms, args[ai])\n"
        "      call('ZREMRANGEBYSCORE', key, '-inf', ms - ttl)\n"
        "      call('PEXPIRE', key, ttl * 4)\n"
        "      NO = NO + 1\n"
        "      OUT[NO] = call('ZCARD', key)\n"
        "      ai = ai + 2\n"
        "    elseif op == 'D' and m == 1 then\n"
        "      -- one check: nothing to chain or undo\n"
        "      local sp = spec(args[ai])\n"
        "      local o, res, nst\n"
        "      if sp[1] >= 1 and sp[1] <= 4 then\n"
        "        ki = ki + 1\n"
        "        local k = keys[ki]\n"
        "        local pk = cur[k]\n"
        "        o, res, nst = run(sp, pk[sp[9]] or FRESH, tonumber(args[ai + 1]))\n"
        "        if o ~= 2 and nst then pk[sp[9]] = nst; dirty[k] = true end\n"
        "      else\n"
        "        o, res = run(sp, nil, 0)\n"
        "      end\n"
        "      ai = ai + 2\n"
        "      emit(o, res)\n"
        "    else\n"
        "      local rs, rns = 0, 0\n"
        "      if op == 'R' then rs, rns = tonumber(args[ai]), tonumber(args[ai + 1]); ai = ai + 2 "
        "end\n"
        "      -- scratch arrays reused by every group (entries past m are stale)\n"
        "      local sps, cs, ks, nsts = SPS, CS, KS, NSTS\n"
        "      for i = 1, m do\n"
        "        local sp = spec(args[ai])\n"
        "        sps[i], cs[i], nsts[i] = sp, tonumber(args[ai + 1]), false\n"
        "        ai = ai + 2\n"
        "        if sp[1] >= 1 and sp[1] <= 4 then ki = ki + 1; ks[i] = keys[ki] else ks[i] = "
        "false end\n"
        "      end\n"
        "      if op == 'D' or op == 'S' then\n"
        "        local outs, ress, first = OUTS, RESS, 0\n"
        "        for i = 1, m do\n"
        "          local o, res, nst = run(sps[i], state(cur, i, true), cs[i])\n"
        "          outs[i], ress[i] = o, res\n"
        "          if o == 2 then\n"
        "            if first == 0 then first = i end\n"
        "          elseif nst then\n"
        "            nsts[i] = nst\n"
        "          end\n"
        "        end\n"
        "        if first > 0 then\n"
        "          for i = 1, m do\n"
        "            if outs[i] ~= 2 then outs[i], ress[i] = run(sps[i], state(cur, i, false), 0) "
        "end\n"
        "          end\n"
        "        else\n"
        "          -- in order, so a counter checked twice keeps its last state\n"
        "          for i = 1, m do\n"
        "            local nst = nsts[i]\n"
        "            if nst then cur[ks[i]][sps[i][9]] = nst; dirty[ks[i]] = true end\n"
        "          end\n"
        "        end\n"
        "        for i = 1, m do emit(outs[i], ress[i]) end\n"
        "        if op == 'S' then for i = 1, m do emitraw(state(cur, i, false)) end end\n"
        "      elseif op == 'A' then\n"
        "        for i = 1, m do\n"
        "          local k = ks[i]\n"
        "          if k and cs[i] > 0 then\n"
        "            cur[k][sps[i][9]] = add(sps[i], state(cur, i, false), cs[i])\n"
        "            dirty[k] = true\n"
        "          end\n"
        "          emitraw(state(cur, i, false))\n"
        "        end\n"
        "      else\n"
        "        if op == 'R' then\n"
        "          for i = 1, m do\n"
        "            local k = ks[i]\n"
        "            local nst = k and refund(sps[i], state(cur, i, false), cs[i], rs, rns)\n"
        "            if nst then cur[k][sps[i][9]] = nst; dirty[k] = true end\n"
        "          end\n"
        "        end\n"
        "        for i = 1, m do\n"
        "          local o, res = run(sps[i], state(cur, i, false), 0)\n"
        "          emit(o, res)\n"
        "        end\n"
        "      end\n"
        "    end\n"
        "  end\n"
        "  for k, _ in pairs(dirty) do store(k, cur[k]) end\n"
        "  return OUT\n"
        "end\n";

static pthread_once_t once = PTHREAD_ONCE_INIT;
static char *eval_src, *func_src;
static char eval_sha[41], func_name[32];

static void sha1_hex(const char *s, char out[41])
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	EVP_Digest(s, strlen(s), md, &len, EVP_sha1(), NULL);
	for (unsigned i = 0; i < 20 && i < len; i++)
		snprintf(out + 2 * i, 3, "%02x", md[i]);
	out[40] = '\0';
}

/* The two sources are built once: the library is named after the body's
 * SHA1, so nodes running different versions never replace each other's. */
static void build(void)
{
	static const char eval_tail[] = "return main(KEYS, ARGV)\n";
	char sha[41];
	size_t n;

	sha1_hex(body, sha);
	snprintf(func_name, sizeof(func_name), "sluice_%.12s", sha);
	n = strlen(body) + sizeof(eval_tail);
	eval_src = malloc(n);
	if (eval_src)
		snprintf(eval_src, n, "%s%s", body, eval_tail);
	n = strlen(body) + 2 * sizeof(func_name) + 64;
	func_src = malloc(n);
	if (func_src)
		snprintf(func_src, n, "#!lua name=%s\n%sredis.register_function('%s', main)\n",
		         func_name, body, func_name);
	if (eval_src)
		sha1_hex(eval_src, eval_sha);
}

int sl_redis_scripts(struct sl_redis_scripts *out)
{
	pthread_once(&once, build);
	if (!eval_src || !func_src)
		return SL_ENOMEM;
	out->eval_src = eval_src;
	out->func_src = func_src;
	out->sha = eval_sha;
	out->func = func_name;
	return 0;
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

int sl_redis_reply_time(const redisReply *r, int64_t *t_s, int64_t *t_ns)
{
	if (r->type != REDIS_REPLY_ARRAY || r->elements < SL_REDIS_HDR_FIELDS)
		return SL_EPROTO;
	for (size_t k = 0; k < r->elements; k++)
		if (r->element[k]->type != REDIS_REPLY_INTEGER)
			return SL_EPROTO;
	*t_s = r->element[0]->integer;
	*t_ns = r->element[1]->integer;
	if (*t_s < 0 || *t_s > MAX_TIME_S || *t_ns < 0 || *t_ns >= SL_NS_PER_SEC)
		return SL_EPROTO;
	return 0;
}

size_t sl_redis_group_fields(char op, size_t m)
{
	switch (op) {
	case 'H':
		return 1;
	case 'A':
		return m * SL_REDIS_RAW_FIELDS;
	case 'S':
		return m * (SL_REDIS_ITEM_FIELDS + SL_REDIS_RAW_FIELDS);
	default:
		return m * SL_REDIS_ITEM_FIELDS;
	}
}

int sl_redis_group_result(redisReply *const *v, size_t avail, char op, struct sl_check *checks,
                          size_t m, struct sl_redis_result *out, struct sl_redis_raw *raw)
{
	size_t need = sl_redis_group_fields(op, m), items = op == 'A' ? 0 : m;
	bool deny = false, delay = false;

	if (need > avail)
		return SL_EPROTO;
	out->status = 0;
	out->denied = m;
	out->delay = 0;
	for (size_t k = 0; k < need; k++)
		if (v[k]->type != REDIS_REPLY_INTEGER || v[k]->integer < 0)
			return SL_EPROTO;
	for (size_t i = 0; i < items; i++) {
		struct sl_check *ck = &checks[i];
		redisReply *const *f = v + i * SL_REDIS_ITEM_FIELDS;

		if (f[0]->integer > SL_REJECTED)
			return SL_EPROTO;
		ck->res.outcome = (uint8_t)f[0]->integer;
		ck->res.remaining = (uint64_t)f[1]->integer;
		ck->res.reset_after = f[2]->integer;
		ck->res.retry_after = f[3]->integer;
		ck->res.delay = f[4]->integer;
		ck->res.window = f[5]->integer;
		sl_redis_fill_limits(ck);
		if (ck->res.outcome == SL_REJECTED && !deny) {
			deny = true;
			out->denied = i;
		}
		if (ck->res.outcome == SL_DELAYED)
			delay = true;
		if (ck->res.delay > out->delay)
			out->delay = ck->res.delay;
	}
	if (op == 'D' || op == 'S')
		out->status = deny ? 2 : delay ? 1 : 0;
	if (op == 'S' || op == 'A') {
		redisReply *const *f = v + items * SL_REDIS_ITEM_FIELDS;

		for (size_t i = 0; i < m; i++, f += SL_REDIS_RAW_FIELDS) {
			raw[i].rel = f[0]->integer;
			raw[i].v1 = (uint64_t)f[1]->integer;
			raw[i].v2 = (uint64_t)f[2]->integer;
		}
	}
	return (int)need;
}

int sl_redis_script_result(const redisReply *r, struct sl_check *checks, size_t m,
                           struct sl_redis_result *out)
{
	int64_t ts, tns;
	int n;

	if (sl_redis_reply_time(r, &ts, &tns) < 0 ||
	    r->elements != SL_REDIS_HDR_FIELDS + m * SL_REDIS_ITEM_FIELDS)
		return SL_EPROTO;
	n = sl_redis_group_result(r->element + SL_REDIS_HDR_FIELDS,
	                          r->elements - SL_REDIS_HDR_FIELDS, 'D', checks, m, out, NULL);
	if (n < 0)
		return n;
	out->t_s = ts;
	out->t_ns = tns;
	out->time = ts * SL_NS_PER_SEC + tns;
	return 0;
}
