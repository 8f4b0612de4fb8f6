-- sluice's decision library: every check of a call decided atomically with
-- the formulas of src/core (gcra.c, quota.c, sliding.c, concurrency.c,
-- decide.c) on Redis server time. Loaded by src/store/redis_scripts.c as a
-- Function library (or an EVALSHA script with the same body); the calling
-- convention is above main() at the end.
--
-- Lua numbers are doubles, exact below 2^53, so every time is handled
-- relative to the call's server time (a state's rel is its expiry minus
-- now, a duration) and only stored values hold absolute times, as seconds
-- and nanoseconds; products that may pass 2^53 fall back to an exact long
-- division. Stored values, the call's program and the reply are binary
-- (struct.pack, struct.unpack): formatting and matching text was most of
-- the cost. What a decision costs Redis: docs/store-redis.md.
local E9 = 1000000000
local P52 = 4503599627370496
local P53 = 9007199254740992
-- bound on the first call: a function library cannot read globals while it loads
local floor, min, call, fmt, P, U, byte
local now_s, now_ns, NM = 0, 0, {}
local SPECS, NSPECS = {}, 0

local function fdm(a, b)
  local q = floor(a / b)
  local r = a - q * b
  if r < 0 then q = q - 1; r = r + b elseif r >= b then q = q + 1; r = r - b end
  return q, r
end
-- floor(a*b/m), exact: directly when a*b < 2^53, else base-16 long
-- division over a's digits (exact for b and m below 2^48)
local function mulfloor(a, b, m)
  local x = a * b
  if x < P53 then return (fdm(x, m)) end
  local h = 1
  while h * 16 <= a do h = h * 16 end
  local q, r, t = 0, 0, 0
  while h >= 1 do
    t, r = fdm(r * 16 + (floor(a / h) % 16) * b, m)
    q = q * 16 + t
    h = h / 16
  end
  return q
end
-- now mod p, exactly (cached per call): Horner over 1e9 in base 2^k with
-- 2^k * p <= 2^52, so every partial sum stays below 2^53
local function nowmod(p)
  local e = NM[p]
  if e then return e end
  local _, a = fdm(now_s, p)
  local B = 2
  while B * 2 * p <= P52 do B = B * 2 end
  local ds, x = {}, E9
  while x > 0 do local q, d = fdm(x, B); ds[#ds + 1] = d; x = q end
  local r = 0
  for j = #ds, 1, -1 do local _, y = fdm(r * B + a * ds[j], p); r = y end
  _, r = fdm(r + now_ns, p)
  NM[p] = r
  return r
end
local function dfc(y, m, d)
  if m <= 2 then y = y - 1 end
  local era = floor(y / 400)
  local yoe = y - era * 400
  local mm = m > 2 and m - 3 or m + 9
  local doy = floor((153 * mm + 2) / 5) + d - 1
  return era * 146097 + yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy - 719468
end
local function cfd(z)
  z = z + 719468
  local era = floor(z / 146097)
  local doe = z - era * 146097
  local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
  local mp = floor((5 * doy + 2) / 153)
  local m = mp < 10 and mp + 3 or mp - 9
  local y = yoe + era * 400
  if m <= 2 then y = y + 1 end
  return y, m
end
-- calendar window [a, b) in UTC seconds containing UTC second s
local function calwin(cal, tz, s)
  local l = s + tz
  local a, b
  if cal == 1 then
    a = floor(l / 3600) * 3600; b = a + 3600
  elseif cal == 3 then
    local d = floor(l / 86400)
    d = d - (d + 3) % 7
    a = d * 86400; b = a + 7 * 86400
  elseif cal == 4 then
    local y, m = cfd(floor(l / 86400))
    a = dfc(y, m, 1) * 86400
    if m == 12 then b = dfc(y + 1, 1, 1) * 86400 else b = dfc(y, m + 1, 1) * 86400 end
  else
    a = floor(l / 86400) * 86400; b = a + 86400
  end
  return a - tz, b - tz
end


-- A state is three numbers (r, x, y): r = expires - now (ns; <= 0:
-- fresh), x and y its values (v1, v2 of struct sl_state).
-- gcra: the backlog TAT - now, rescaled when the stored interval x differs
local function backlog(r, x, t)
  if r <= 0 then return 0 end
  if x > 0 and x ~= t then return mulfloor(r, t, x) end
  return r
end
-- Each algorithm returns the outcome (0 allowed, 1 delayed, 2 rejected),
-- remaining, reset_after, retry_after, delay and window, then the next
-- state's three numbers when it changes (nothing otherwise). Multiple
-- values, not tables: nothing is allocated for a decision.
local function gcra(sp, r, x, y, c)
  local t = sp[4]
  local bt = sp[5] * t
  local bq = sp[5] + sp[6]
  local wait = 0 -- backlog(r, x, t), written out
  if r > 0 then
    wait = r
    if x > 0 and x ~= t then wait = mulfloor(r, t, x) end
  end
  if c == 0 then
    local rem = 0
    if wait <= bt then rem = fdm(bt - wait, t) end
    return 0, rem, wait, 0, 0, sp[3]
  end
  if c > bq then return 2, 0, wait, 0, 0, sp[3] end
  local d = wait + c * t
  if d > bq * t then return 2, 0, wait, d - bt, 0, sp[3] end
  if d <= bt then
    -- remaining = floor((bt - d) / t), as fdm: the quotient corrected
    local q = (bt - d) / t
    q = q - q % 1
    local m = bt - d - q * t
    if m < 0 then q = q - 1 elseif m >= t then q = q + 1 end
    return 0, q, d, 0, 0, sp[3], d, t, 0
  end
  return 1, 0, d, 0, d - bt, sp[3], d, t, 0
end
-- quota window of a state: rel of its end, used, and its length (ns)
local function qwin(sp, r, x)
  local rel, used, es, ens = 0, 0, 0, 0
  if r > 0 then
    rel, used = r, x
    local q, m = fdm(now_ns + rel, E9)
    es, ens = now_s + q, m
  else
    local _, b = calwin(sp[7], sp[8], now_s)
    es = b
    rel = (b - now_s) * E9 - now_ns
  end
  local a = calwin(sp[7], sp[8], ens > 0 and es or es - 1)
  return rel, used, (es - a) * E9 + ens
end
local function quota(sp, r, x, y, c)
  -- a running state's window is the fixed length (but for months) when
  -- its end is on a window boundary (not so after a change of calendar
  -- or zone, which keeps the counter)
  local rel, used, win = r, x, sp[13]
  if r <= 0 or not win or r > win or (nowmod(win) + r + sp[14]) % win ~= 0 then
    rel, used, win = qwin(sp, r, x)
  end
  local n = sp[2]
  local rem = used < n and n - used or 0
  if c == 0 then return 0, rem, rel, 0, 0, win end
  if c > n or used > n - c then return 2, rem, rel, c <= n and rel or 0, 0, win end
  return 0, n - used - c, rel, 0, 0, win, rel, used + c, 0
end
-- sliding: prev, cur, extra (ns the stored window starts after now), e
-- (ns into the window), and the window start (rel)
local function slide(sp, r, x, y)
  local p = sp[3]
  local prev, cur, extra = 0, 0, 0
  local e = nowmod(p)
  if r > 0 then
    local dw = fdm(e + r, p) - 2
    if dw == 0 then
      prev, cur = x, y
    elseif dw == -1 then
      prev = y
    elseif dw > 0 then
      prev, cur = x, y
      extra = dw * p - e
    end
  end
  if extra > 0 then return prev, cur, extra, 0, extra end
  return prev, cur, 0, e, -e
end
local function sliding(sp, r, x, y, c)
  local p, n = sp[3], sp[2]
  local prev, cur, extra, e, ss = slide(sp, r, x, y)
  local left = p - e
  local est = prev - mulfloor(prev, e, p) + cur
  local rem = est < n and n - est or 0
  local reset = 0
  if cur > 0 then reset = extra + left + p elseif prev > 0 then reset = extra + left end
  if c ~= 0 and (c > n or est > n - c) then
    local r = 0
    if c <= n then
      if cur + c <= n then
        local k = n - c - cur
        local pa = prev <= k and 0 or p - mulfloor(k, p, prev)
        r = pa - e
      else
        local k = n - c
        r = left + (cur <= k and 0 or p - mulfloor(k, p, cur))
      end
    end
    return 2, rem, reset, r > 0 and r + extra or 0, 0, p
  end
  if c == 0 then return 0, rem, reset, 0, 0, p end
  return 0, n - est - c, extra + left + p, 0, 0, p, ss + 2 * p, prev, cur + c
end
local function conc(sp, r, x, y, c)
  local n = sp[2]
  local used, rel = 0, 0
  if r > 0 then used, rel = x, r end
  local rem = used < n and n - used or 0
  if c == 0 then return 0, rem, rel, 0, 0, 0 end
  if c > n or used > n - c then return 2, rem, rel, c <= n and min(E9, rel) or 0, 0, 0 end
  local x = sp[3]
  if rel > x then x = rel end
  return 0, n - used - c, x, 0, 0, 0, x, used + c, 0
end
local function unlimited() return 0, 0, 0, 0, 0, 0 end
local function deny() return 2, 0, 0, 0, 0, 0 end
-- by algorithm number (src/core: 1 rate .. 4 concurrency, 5 unlimited,
-- anything else deny); a spec keeps its own at sp[11]
local ALGOS = {gcra, quota, sliding, conc, unlimited}
local function run(sp, r, x, y, c)
  return sp[11](sp, r, x, y, c)
end
-- local mode: take c units without a limit check (admitted on a node);
-- the next state
local function add(sp, r, x, y, c)
  local a = sp[1]
  if a == 1 then
    local t = sp[4]
    return backlog(r, x, t) + c * t, t, 0
  elseif a == 2 then
    local rel, used = qwin(sp, r, x)
    return rel, used + c, 0
  elseif a == 3 then
    local prev, cur, _, _, ss = slide(sp, r, x, y)
    return ss + 2 * sp[3], prev, cur + c
  end
  local m = sp[3]
  if r > m then m = r end
  return m, (r > 0 and x or 0) + c, 0
end
-- give c back to a state committed at server time (rs, rns) (0 0: a
-- release): the next state, or nothing when the state is another window's
local function refund(sp, r, x, y, c, rs, rns)
  if r <= 0 then return end
  local a = sp[1]
  if rs > 0 and a == 2 then
    local q, m = fdm(now_ns + r, E9)
    local es = now_s + q
    if rs < calwin(sp[7], sp[8], m > 0 and es or es - 1) then return end
  elseif rs > 0 and a == 3 then
    local p = sp[3]
    local e = nowmod(p)
    local rrel = (rs - now_s) * E9 + (rns - now_ns)
    if fdm(e + rrel, p) ~= fdm(e + r, p) - 2 then return end
  end
  if a == 1 then
    local t = sp[4]
    local d = backlog(r, x, t) - c * t
    if d < 0 then d = 0 end
    return d, t, 0
  elseif a == 3 then
    return r, x, y > c and y - c or 0
  end
  local u = x > c and x - c or 0
  if a == 4 and u == 0 then return 0, 0, 0 end
  return r, u, y
end

-- A key holds the states of every limit on one descriptor value, so a
-- decision over several limits of one value reads and writes one key:
-- a version byte (3), the key's TTL deadline (ms since the epoch), then
-- per limit 32 bytes: the low 53 bits of its id, its expiry as ns before
-- the deadline, and x, y; int64s, little-endian (src/redismod/call.c
-- reads and writes the same). A key is kept a little past its last
-- state's expiry (at least 1 s, a quarter of the time to it), so the
-- writes within that deadline keep its TTL (SET KEEPTTL) instead of
-- setting one, and a busy key is not deleted and created again between
-- decisions. Values of the text format before this one ("<limit id hex>
-- <expires ns> <v1> <v2>" entries joined by ';') are read too, and
-- rewritten in this one on the next change.
--
-- Redis' Lua hashes every byte of every string it makes, and each string
-- and table is garbage to collect: a call makes only the strings it must
-- (the values read and written, the reply), and the tables of the values
-- of several limits it reads; a value of one limit is decided from its
-- unpacked numbers, with no table.
local VER = 3
local ENTSZ, HDRSZ = 32, 9
local KEEP_MIN = 1000 -- ms a key outlives its state, at least
local DROP_AFTER = -60 * E9 -- ns: an entry expired this long ago is dropped
local FMTS, RFMTS = {}, {} -- struct formats: a value by entry count, a reply by field count
local NOW_MS, SUB = 0, 0 -- the call's time in ms, and the ns past that ms

-- A value in memory is a flat array f: the version, the TTL deadline, then
-- four slots per entry (id, d, x, y) and f.n entries, as stored: one
-- struct.unpack reads a whole value and one struct.pack writes it. An
-- entry's expiry is d ns before the deadline, so its state's r is f.b - d
-- with f.b = (deadline - now in ms) * 1e6 - SUB, exact within the 2^53 ns
-- bound on durations; a write that keeps the deadline rewrites no d.
local function fmtn(n)
  local s = FMTS[n]
  if not s then
    s = '<Bi8' .. string.rep('i8i8i8i8', n)
    FMTS[n] = s
  end
  return s
end
-- a limit id in hex as the number kept in Redis: its low 53 bits (a
-- double holds them exactly)
local function idnum(h)
  h = string.rep('0', 16 - #h) .. h
  return (tonumber(string.sub(h, 1, 8), 16) % 2 ^ 21) * 2 ^ 32 + tonumber(string.sub(h, 9, 16), 16)
end
-- a value with no entries (its deadline now, so it is never kept), room
-- for four made at once (a table that grows is rehashed)
local function fresh()
  return {VER, NOW_MS, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, n = 0, b = -SUB}
end
local function parse(v)
  if not v or #v < HDRSZ then return fresh() end
  local b = byte(v, 1)
  local f
  if b == VER then
    local n = (#v - HDRSZ) / ENTSZ
    n = n - n % 1
    if n <= 64 then
      f = {n = n, b = 0, U(fmtn(n), v)} -- (its last slot: unpack's next position)
    else
      -- many limits on one value: entry by entry (a bounded stack)
      local pos
      f = {n = n, b = 0}
      f[1], f[2], pos = U('<Bi8', v)
      for o = 2, 4 * n - 2, 4 do
        f[o + 1], f[o + 2], f[o + 3], f[o + 4], pos = U('<i8i8i8i8', v, pos)
      end
    end
    f.b = (f[2] - NOW_MS) * 1000000 - SUB
  else
    f = fresh()
    if (b >= 48 and b <= 57) or (b >= 97 and b <= 102) then
      -- the text format
      for id, es, ens, x, y in string.gmatch(v, '(%x+) (%d+)(%d%d%d%d%d%d%d%d%d) (%d+) (%d+)') do
        local o = 2 + 4 * f.n
        f.n = f.n + 1
        f[o + 1], f[o + 2], f[o + 3], f[o + 4] = idnum(id),
          f.b - ((tonumber(es) - now_s) * E9 + (tonumber(ens) - now_ns)), tonumber(x), tonumber(y)
      end
    end
  end
  return f
end
-- the index before limit sp's four slots in f, or nil (a linear search:
-- a value holds a few limits, and comparing numbers costs nothing)
local function find(f, sp)
  local id = sp[9]
  for o = 2, 4 * f.n - 2, 4 do
    if f[o + 1] == id then return o end
  end
end
-- the state (r, x, y) at index o of f (nil: fresh)
local function state(f, o)
  if not o then return 0, 0, 0 end
  return f.b - f[o + 2], f[o + 3], f[o + 4]
end
-- the state of limit sp in f (false: no key)
local function get(f, sp)
  return state(f, f and find(f, sp))
end
-- write state (r, x, y) of sp at index o of f (nil: a new entry); the index
local function commit(f, o, sp, r, x, y)
  if not o then
    o = 2 + 4 * f.n
    f.n = f.n + 1
    f[o + 1] = sp[9]
  end
  f[o + 2], f[o + 3], f[o + 4] = f.b - r, x, y
  return o
end
local function put(f, sp, r, x, y)
  commit(f, find(f, sp), sp, r, x, y)
end
-- the TTL deadline of a key whose last state expires in mx ns (> 0), its
-- deadline now dl: dl when it lasts that long (keep), else a new one
local function deadline(dl, mx)
  -- ms since the epoch of the last expiry, rounded up
  local need = now_s * 1000 + floor((now_ns + mx + 999999) / 1000000)
  if dl >= need then return dl, true end
  local slack = floor(mx / 4000000)
  return need + (slack > KEEP_MIN and slack or KEEP_MIN), false
end
local function write(key, v, dl, keep)
  if keep then call('SET', key, v, 'KEEPTTL')
  else call('SET', key, v, 'PXAT', fmt('%d', dl)) end
end
local function store(key, f)
  local nf, base = 2 + 4 * f.n, f.b
  local mn, lim, dead = base, base - DROP_AFTER, false
  -- the latest expiry (the smallest d), and whether one is long gone
  for o = 4, nf, 4 do
    local d = f[o]
    if d < mn then
      mn = d
    elseif d >= lim then
      dead = true
    end
  end
  if mn >= base then call('DEL', key); return end
  if dead then
    -- drop entries expired long ago (a limit no longer checked leaves this
    -- way); one expired lately stays, so that the value keeps its shape
    -- when that limit is checked again
    local g, m = {VER, f[2]}, 2
    for o = 2, nf - 4, 4 do
      if f[o + 2] < lim then
        g[m + 1], g[m + 2], g[m + 3], g[m + 4] = f[o + 1], f[o + 2], f[o + 3], f[o + 4]
        m = m + 4
      end
    end
    f, nf = g, m
  end
  local dl, keep = deadline(f[2], base - mn)
  if dl ~= f[2] then
    local sh = (dl - f[2]) * 1000000
    f[2] = dl
    for o = 4, nf, 4 do f[o] = f[o] + sh end
  end
  write(key, P(fmtn((nf - 2) / 4), unpack(f, 1, nf)), dl, keep)
end
-- "algo n period interval burst queue calendar tz|limit id hex", parsed
-- once: a worker sends the same few strings again and again
local function spec(s)
  local sp = SPECS[s]
  if sp then return sp end
  local nums, id = string.match(s, '^([^|]*)|(%x+)$')
  if not nums or #id > 16 then error('sluice: bad spec') end
  sp = {}
  for x in string.gmatch(nums, '%-?%d+') do sp[#sp + 1] = tonumber(x) end
  if #sp ~= 8 then error('sluice: bad spec') end
  sp[9] = idnum(id)
  sp[11] = ALGOS[sp[1]] or deny
  sp[12] = sp[1] == 2 -- its result carries the window
  -- a quota window's length when fixed (hours, days, weeks: the zone is
  -- a fixed offset), else false; and the ns from a boundary to the epoch
  -- in that calendar, mod the length (weeks start on Monday, the epoch
  -- was a Thursday)
  local w = sp[7] == 1 and 3600 or sp[7] == 3 and 7 * 86400 or 86400
  sp[13] = sp[1] == 2 and sp[7] ~= 4 and w * E9
  sp[14] = ((sp[8] + (sp[7] == 3 and 3 * 86400 or 0)) % w) * E9
  if NSPECS >= 256 then SPECS, NSPECS = {}, 0 end
  SPECS[s], NSPECS = sp, NSPECS + 1
  return sp
end

-- the reply being built: int64 fields, packed once at the end; per-group
-- scratch
local OUT, NO = {}, 0
local SPS, CS, KS, UNDO = {}, {}, {}, {}
-- per key of the call (by KEYS index): its value, the index of the same
-- key's first occurrence, whether it changed; and a reused key -> index map
local CUR, CAN, DIRTY, SEEN, VALS, SHARED = {}, {}, {}, {}, {}, {}
local FMT1 = '<Bi8i8i8i8i8' -- a value of one entry
local ONE = HDRSZ + ENTSZ
local OP_D, OP_S, OP_P, OP_R, OP_A, OP_H = 68, 83, 80, 82, 65, 72

-- the value of the call's key k in memory, read when first needed
local function value(k)
  local f = CUR[k]
  if not f then
    f = parse(VALS[k])
    CUR[k] = f
  end
  return f
end
-- append the raw state of sp in f (rel x y; 0 0 0 when fresh)
local function raw(f, sp)
  local r, x, y = get(f, sp)
  if r <= 0 then r, x, y = 0, 0, 0 end
  OUT[NO + 1], OUT[NO + 2], OUT[NO + 3] = r, x, y
  NO = NO + 3
end
-- write one check's result after OUT[n]: outcome, remaining, reset_after,
-- then retry_after (a rejection) or delay (a delay) in one field, and a
-- quota's window (the others' is known to the caller); the new end
local function result(n, sp, o, r1, r2, r3, r4, r5)
  OUT[n + 1], OUT[n + 2], OUT[n + 3], OUT[n + 4] = o, r1, r2, o == 2 and r3 or r4
  if sp[12] then
    OUT[n + 5] = r5
    return n + 5
  end
  return n + 4
end
local function reply()
  local s = RFMTS[NO]
  if not s then
    s = '<' .. string.rep('i8', NO)
    RFMTS[NO] = s
  end
  return P(s, unpack(OUT, 1, NO))
end

-- KEYS: the call's keys (the key of a descriptor value holds the states of
-- its limits; the heartbeat's sorted set). ARGV[1]: the program, groups
-- of: op (byte: D decide all or nothing, S decide then raw states, P peek,
-- R refund then peek, A take without a limit check then raw states, H
-- node heartbeat) and m (byte: checks), then for R the commit's server
-- time (s, ns: int64; 0 0 a release), for H the KEYS index of its set
-- (uint16), the ARGV index of the node id (uint16) and a ttl (ms, int64),
-- then m checks: the ARGV index of its spec string (uint16: "algo n period
-- interval burst queue calendar tz|limit id hex"), the KEYS index of its
-- key (uint16, 0 for unlimited and deny) and its cost (int64); all
-- little-endian. ARGV[2...]: the spec strings and node ids. Reply: one
-- string of little-endian int64s: server time s, ns, then per group: D P
-- R a result per check (outcome, remaining, reset_after, retry_after or
-- delay, and a quota's window: see result()), S those and then 3 per
-- check, A 3 per check (raw state: rel x y), H the live node count.
local function main(keys, args)
  if not floor then
    floor, min, call, fmt = math.floor, math.min, redis.call, string.format
    P, U, byte = struct.pack, struct.unpack, string.byte
  end
  local tm = call('TIME')
  now_s, now_ns, NM = tonumber(tm[1]), tonumber(tm[2]) * 1000, {}
  SUB = now_ns % 1000000
  NOW_MS = now_s * 1000 + (now_ns - SUB) / 1000000
  -- values are parsed when first used (cur), but for a key the call uses
  -- once, by one single-check decision, on a value of at most that one
  -- limit: that one is decided straight from the value, with no table
  local cur, dirty, can, vals, shared, nk = CUR, DIRTY, CAN, VALS, SHARED, #keys
  if nk > 0 then
    local vs = call('MGET', unpack(keys))
    for i = 1, nk do
      local k = keys[i]
      local j = SEEN[k]
      if j then
        can[i], shared[j] = j, true
      else
        SEEN[k], can[i], shared[i] = i, i, false
      end
      vals[i], cur[i], dirty[i] = vs[i], false, false
    end
    for i = 1, nk do SEEN[keys[i]] = nil end
  end
  OUT[1], OUT[2], NO = now_s, now_ns, 2
  local prog = args[1]
  local pos, plen = 1, #prog
  while pos <= plen do
    local op, m
    op, m, pos = U('<BB', prog, pos)
    if op == OP_D and m == 1 then
      -- one check: nothing to chain or undo
      local si, kx, c
      si, kx, c, pos = U('<HHi8', prog, pos)
      local sp = SPECS[args[si]] or spec(args[si])
      local n = NO
      NO = n + (sp[12] and 5 or 4)
      local k = kx > 0 and can[kx]
      local v = k and not cur[k] and not shared[k] and vals[k]
      local direct = k and not cur[k] and not shared[k]
      local ver, dl, id, d, x0, y0
      if v then
        if #v == ONE and byte(v, 1) == VER then
          ver, dl, id, d, x0, y0 = U(FMT1, v)
          direct = id == sp[9]
        else
          direct = false
        end
      end
      if direct then
        -- the whole value is this one state
        local r = 0
        if v then r = (dl - NOW_MS) * 1000000 - SUB - d else dl, x0, y0 = 0, 0, 0 end
        local o, r1, r2, r3, r4, r5, n1, n2, n3 = sp[11](sp, r, x0, y0, c)
        if o ~= 2 and n1 then
          if n1 > 0 then
            -- deadline() and write(), written out
            local need = NOW_MS + (SUB + n1 + 999999) / 1000000
            need = need - need % 1
            if dl >= need then
              call('SET', keys[k], P(FMT1, VER, dl, sp[9], (dl - NOW_MS) * 1000000 - SUB - n1, n2,
                                     n3), 'KEEPTTL')
            else
              local slack = n1 / 4000000
              slack = slack - slack % 1
              dl = need + (slack > KEEP_MIN and slack or KEEP_MIN)
              call('SET', keys[k], P(FMT1, VER, dl, sp[9], (dl - NOW_MS) * 1000000 - SUB - n1, n2,
                                     n3), 'PXAT', fmt('%d', dl))
            end
          elseif v then
            call('DEL', keys[k])
          end
        end
        OUT[n + 1], OUT[n + 2], OUT[n + 3], OUT[n + 4] = o, r1, r2, o == 2 and r3 or r4
        if sp[12] then OUT[n + 5] = r5 end
      elseif k then
        -- find, state and commit written out: the hot path of every call
        local f = cur[k]
        if not f then
          f = parse(vals[k])
          cur[k] = f
        end
        local id = sp[9]
        local e, r, x, y = nil, 0, 0, 0
        for j = 2, 4 * f.n - 2, 4 do
          if f[j + 1] == id then
            e, r, x, y = j, f.b - f[j + 2], f[j + 3], f[j + 4]
            break
          end
        end
        local o, r1, r2, r3, r4, r5, n1, n2, n3 = sp[11](sp, r, x, y, c)
        if o ~= 2 and n1 then
          if not e then
            e = 2 + 4 * f.n
            f.n = f.n + 1
            f[e + 1] = id
          end
          f[e + 2], f[e + 3], f[e + 4] = f.b - n1, n2, n3
          dirty[k] = true
        end
        OUT[n + 1], OUT[n + 2], OUT[n + 3], OUT[n + 4] = o, r1, r2, o == 2 and r3 or r4
        if sp[12] then OUT[n + 5] = r5 end
      else
        result(n, sp, sp[11](sp, 0, 0, 0, 0))
      end
    elseif op == OP_H then
      local kx, ni, ttl
      kx, ni, ttl, pos = U('<HHi8', prog, pos)
      local key = keys[kx]
      local ms = now_s * 1000 + floor(now_ns / 1000000)
      call('ZADD', key, ms, args[ni])
      call('ZREMRANGEBYSCORE', key, '-inf', ms - ttl)
      call('PEXPIRE', key, ttl * 4)
      NO = NO + 1
      OUT[NO] = call('ZCARD', key)
    elseif op == OP_D or op == OP_S then
      -- each check commits as it passes, so a later check of the same
      -- counter (same key and limit id) sees it. A rejection takes the
      -- group back: a key only this group uses is read again from its
      -- value, a shared one has its changes undone in reverse; the checks
      -- are then read again from the program and the passing ones
      -- reported as peeks. find, state and commit written out: the hot
      -- path of a decision over several limits.
      local undo, nu, first, at, gpos = UNDO, 0, false, NO, pos
      for i = 1, m do
        local si, kx, c
        si, kx, c, pos = U('<HHi8', prog, pos)
        local sp = SPECS[args[si]] or spec(args[si])
        local k = kx > 0 and can[kx]
        local e, r, x, y, f = nil, 0, 0, 0, nil
        if k then
          f = cur[k]
          if not f then
            f = parse(vals[k])
            cur[k] = f
          end
          local id = sp[9]
          -- (a value holds a group's limits in its order, mostly)
          local j = 4 * i - 2
          if j < 4 * f.n and f[j + 1] == id then
            e, r, x, y = j, f.b - f[j + 2], f[j + 3], f[j + 4]
          else
            for j = 2, 4 * f.n - 2, 4 do
              if f[j + 1] == id then
                e, r, x, y = j, f.b - f[j + 2], f[j + 3], f[j + 4]
                break
              end
            end
          end
        end
        local o, r1, r2, r3, r4, r5, n1, n2, n3 = sp[11](sp, r, x, y, c)
        OUT[at + 1], OUT[at + 2], OUT[at + 3], OUT[at + 4] = o, r1, r2, o == 2 and r3 or r4
        if sp[12] then
          OUT[at + 5] = r5
          at = at + 5
        else
          at = at + 4
        end
        if o == 2 then
          first = true
        elseif n1 then
          if not e then
            e = 2 + 4 * f.n
            f.n = f.n + 1
            f[e + 1] = sp[9]
            if shared[k] then
              -- undone to long expired, dropped when its key is stored
              undo[nu + 1], undo[nu + 2], undo[nu + 3], undo[nu + 4], undo[nu + 5] =
                k, e, f.b - DROP_AFTER, 0, 0
              nu = nu + 5
            end
          elseif shared[k] then
            undo[nu + 1], undo[nu + 2], undo[nu + 3], undo[nu + 4], undo[nu + 5] =
              k, e, f[e + 2], f[e + 3], f[e + 4]
            nu = nu + 5
          end
          f[e + 2], f[e + 3], f[e + 4] = f.b - n1, n2, n3
          dirty[k] = true
        end
      end
      local g0 = NO
      NO = at
      if first or op == OP_S then
        -- the group's checks again: (spec, key) of each in SPS, KS
        local sps, ks = SPS, KS
        for i = 1, m do
          local si, kx, c
          si, kx, c, gpos = U('<HHi8', prog, gpos)
          local k = kx > 0 and can[kx]
          sps[i], ks[i] = SPECS[args[si]] or spec(args[si]), k
          if first and k and not shared[k] then cur[k], dirty[k] = false, false end
        end
        if first then
          for j = nu - 4, 1, -5 do
            local f, s = cur[undo[j]], undo[j + 1]
            f[s + 2], f[s + 3], f[s + 4] = undo[j + 2], undo[j + 3], undo[j + 4]
          end
          local n = g0
          for i = 1, m do
            local sp, k = sps[i], ks[i]
            if OUT[n + 1] ~= 2 then
              local r, x, y = get(k and value(k), sp)
              result(n, sp, run(sp, r, x, y, 0))
            end
            n = n + (sp[12] and 5 or 4)
          end
        end
        if op == OP_S then
          for i = 1, m do raw(ks[i] and value(ks[i]), sps[i]) end
        end
      end
    else
      local rs, rns = 0, 0
      if op == OP_R then rs, rns, pos = U('<i8i8', prog, pos) end
      -- scratch arrays reused by every group (entries past m are stale)
      local sps, cs, ks = SPS, CS, KS
      for i = 1, m do
        local si, kx, c
        si, kx, c, pos = U('<HHi8', prog, pos)
        local k = kx > 0 and can[kx]
        if k and not cur[k] then cur[k] = parse(vals[k]) end
        sps[i], cs[i], ks[i] = SPECS[args[si]] or spec(args[si]), c, k
      end
      if op == OP_A then
        for i = 1, m do
          local k, sp = ks[i], sps[i]
          local f = k and cur[k]
          if f and cs[i] > 0 then
            local r, x, y = get(f, sp)
            put(f, sp, add(sp, r, x, y, cs[i]))
            dirty[k] = true
          end
          raw(f, sp)
        end
      elseif op == OP_P or op == OP_R then
        -- every refund first: a counter checked twice reports both
        if op == OP_R then
          for i = 1, m do
            local k = ks[i]
            local f = k and cur[k]
            if f then
              local r, x, y = get(f, sps[i])
              local n1, n2, n3 = refund(sps[i], r, x, y, cs[i], rs, rns)
              if n1 then put(f, sps[i], n1, n2, n3); dirty[k] = true end
            end
          end
        end
        for i = 1, m do
          local k = ks[i]
          local r, x, y = get(k and cur[k], sps[i])
          NO = result(NO, sps[i], run(sps[i], r, x, y, 0))
        end
      else
        error('sluice: bad op')
      end
    end
  end
  for i = 1, nk do
    if dirty[i] then store(keys[i], cur[i]) end
    cur[i] = false
  end
  return reply()
end
