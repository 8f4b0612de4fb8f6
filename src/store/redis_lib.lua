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
-- division. Stored values, the arguments' limit ids and the reply are
-- binary (struct.pack): formatting and matching text was most of the cost.
local E9 = 1000000000
local P52 = 4503599627370496
local P53 = 9007199254740992
-- bound on the first call: a function library cannot read globals while it loads
local floor, min, call, fmt, P, U, byte, concat, char
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
  local wait = backlog(r, x, t)
  if c == 0 then
    local rem = 0
    if wait <= bt then rem = fdm(bt - wait, t) end
    return 0, rem, wait, 0, 0, sp[3]
  end
  if c > bq then return 2, 0, wait, 0, 0, sp[3] end
  local d = wait + c * t
  if d > bq * t then return 2, 0, wait, d - bt, 0, sp[3] end
  if d <= bt then return 0, (fdm(bt - d, t)), d, 0, 0, sp[3], d, t, 0 end
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
  local rel, used, win = qwin(sp, r, x)
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
local function run(sp, r, x, y, c)
  local a = sp[1]
  if a == 1 then return gcra(sp, r, x, y, c)
  elseif a == 2 then return quota(sp, r, x, y, c)
  elseif a == 3 then return sliding(sp, r, x, y, c)
  elseif a == 4 then return conc(sp, r, x, y, c)
  elseif a == 5 then return 0, 0, 0, 0, 0, 0 end
  return 2, 0, 0, 0, 0, 0
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
-- a version byte (1), the key's TTL deadline (ms since the epoch, int64),
-- then per limit 36 bytes: its id (8 bytes, big-endian), expires (s,
-- int64; ns, uint32) and v1, v2 (int64), all little-endian but the id.
-- A key is kept a little past its last state's expiry (at least 1 s, a
-- quarter of the time to it), so the writes within that deadline keep
-- its TTL (SET KEEPTTL) instead of setting one, and a busy key is not
-- deleted and created again between decisions. Values of the text format
-- before this one ("<limit id hex> <expires ns> <v1> <v2>" entries joined
-- by ';') are read too, and rewritten in this one on the next change.
local ENTSZ, HDRSZ = 36, 9
local R6 = '<i8i8i8i8i8i8'
local R3 = '<i8i8i8'
local Z3 = ''
local KEEP_MIN = 1000 -- ms a key outlives its state, at least
local FMTS = {}       -- the value's struct format by entry count

-- A key's value in memory is a flat array f: 1 (the version), the TTL
-- deadline, then five slots per entry (id, expires s, expires ns, x, y),
-- and f[id] the index before an entry's five: one struct.unpack reads a
-- whole value and one struct.pack writes it.
local function fmtn(n)
  local s = FMTS[n]
  if not s then
    s = '<Bi8' .. string.rep('c8i8I4i8i8', n)
    FMTS[n] = s
  end
  return s
end
-- the 8-byte id of a limit id in hex
local function idbin(h)
  h = string.rep('0', 16 - #h) .. h
  local t = {}
  for i = 1, 16, 2 do t[#t + 1] = char(tonumber(string.sub(h, i, i + 1), 16)) end
  return concat(t)
end
local function parse(v)
  local f = {1, 0}
  if not v or #v < HDRSZ then return f end
  if byte(v, 1) ~= 1 then
    -- the text format (states written before the binary one)
    for id, es, ens, a, b in string.gmatch(v, '(%x+) (%d+)(%d%d%d%d%d%d%d%d%d) (%d+) (%d+)') do
      local o = #f
      id = idbin(id)
      f[id] = o
      f[o + 1], f[o + 2], f[o + 3], f[o + 4], f[o + 5] =
        id, tonumber(es), tonumber(ens), tonumber(a), tonumber(b)
    end
    return f
  end
  local n = floor((#v - HDRSZ) / ENTSZ)
  if n <= 64 then
    f = {U(fmtn(n), v)}
    f[3 + 5 * n] = nil -- unpack's last result: the position after
  else
    -- many limits on one value: entry by entry (a bounded stack)
    local pos
    f[1], f[2], pos = U('<Bi8', v)
    for j = 1, n do
      local o = 2 + 5 * (j - 1)
      f[o + 1], f[o + 2], f[o + 3], f[o + 4], f[o + 5], pos = U('<c8i8I4i8i8', v, pos)
    end
  end
  for o = 2, 5 * n - 3, 5 do f[f[o + 1]] = o end
  return f
end
-- the state (r, x, y) of limit id in f
local function get(f, id)
  local o = f and f[id]
  if not o then return 0, 0, 0 end
  return (f[o + 2] - now_s) * E9 + (f[o + 3] - now_ns), f[o + 4], f[o + 5]
end
-- the index of id's entry in f, added (fresh) when missing
local function slot(f, id)
  local o = f[id]
  if not o then
    o = #f
    f[id] = o
    f[o + 1], f[o + 2], f[o + 3], f[o + 4], f[o + 5] = id, 0, 0, 0, 0
  end
  return o
end
local function put(f, id, r, x, y)
  local o = slot(f, id)
  local q, m = fdm(now_ns + r, E9)
  f[o + 2], f[o + 3], f[o + 4], f[o + 5] = now_s + q, m, x, y
end
local function store(key, f)
  local nf, mx, dead = #f, 0, false
  for o = 2, nf - 5, 5 do
    local r = (f[o + 2] - now_s) * E9 + (f[o + 3] - now_ns)
    if r > 0 then
      if r > mx then mx = r end
    else
      dead = true
    end
  end
  if mx == 0 then call('DEL', key); return end
  if dead then
    -- drop expired entries (a limit no longer checked leaves this way)
    local g, m = {1, f[2]}, 2
    for o = 2, nf - 5, 5 do
      if (f[o + 2] - now_s) * E9 + (f[o + 3] - now_ns) > 0 then
        g[m + 1], g[m + 2], g[m + 3], g[m + 4], g[m + 5] =
          f[o + 1], f[o + 2], f[o + 3], f[o + 4], f[o + 5]
        m = m + 5
      end
    end
    f, nf = g, m
  end
  -- ms since the epoch of the last expiry, rounded up
  local need = now_s * 1000 + floor((now_ns + mx + 999999) / 1000000)
  local keep = f[2] >= need
  if not keep then
    local slack = floor(mx / 4000000)
    f[2] = need + (slack > KEEP_MIN and slack or KEEP_MIN)
  end
  local v = P(fmtn((nf - 2) / 5), unpack(f, 1, nf))
  if keep then call('SET', key, v, 'KEEPTTL')
  else call('SET', key, v, 'PXAT', fmt('%d', f[2])) end
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
  sp[9] = idbin(id)
  if NSPECS >= 256 then SPECS, NSPECS = {}, 0 end
  SPECS[s], NSPECS = sp, NSPECS + 1
  return sp
end
local function raw(f, id)
  local r, x, y = get(f, id)
  if r > 0 then return P(R3, r, x, y) end
  return Z3
end

-- the reply being built (packed pieces) and its length; per-group scratch
local OUT, NO = {}, 0
local SPS, CS, KS, OS, UNDO = {}, {}, {}, {}, {}
local OP_D, OP_S, OP_P, OP_R, OP_A, OP_H = 68, 83, 80, 82, 65, 72

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
-- R 6 per check (outcome remaining reset_after retry_after delay window),
-- S those and then 3 per check, A 3 per check (raw state: rel v1 v2), H
-- the live node count.
local function main(keys, args)
  if not floor then
    floor, min, call, fmt = math.floor, math.min, redis.call, string.format
    P, U, byte, concat, char = struct.pack, struct.unpack, string.byte, table.concat, string.char
    Z3 = P(R3, 0, 0, 0)
  end
  local tm = call('TIME')
  now_s, now_ns, NM = tonumber(tm[1]), tonumber(tm[2]) * 1000, {}
  local cur, dirty = {}, {}
  if #keys > 0 then
    local vals = call('MGET', unpack(keys))
    for i = 1, #keys do
      local k = keys[i]
      if not cur[k] then cur[k] = parse(vals[i]) end
    end
  end
  OUT[1], NO = P('<i8i8', now_s, now_ns), 1
  local prog = args[1]
  local pos, plen = 1, #prog
  while pos <= plen do
    local op, m
    op, m, pos = U('<BB', prog, pos)
    if op == OP_D and m == 1 then
      -- one check: nothing to chain or undo
      local si, kx, c
      si, kx, c, pos = U('<HHi8', prog, pos)
      local sp = spec(args[si])
      NO = NO + 1
      if kx > 0 then
        local k, id = keys[kx], sp[9]
        local f = cur[k]
        local r, x, y = get(f, id)
        local o, r1, r2, r3, r4, r5, n1, n2, n3 = run(sp, r, x, y, c)
        if o ~= 2 and n1 then put(f, id, n1, n2, n3); dirty[k] = true end
        OUT[NO] = P(R6, o, r1, r2, r3, r4, r5)
      else
        OUT[NO] = P(R6, run(sp, 0, 0, 0, 0))
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
      OUT[NO] = P('<i8', call('ZCARD', key))
    else
      local rs, rns = 0, 0
      if op == OP_R then rs, rns, pos = U('<i8i8', prog, pos) end
      -- scratch arrays reused by every group (entries past m are stale)
      local sps, cs, ks = SPS, CS, KS
      for i = 1, m do
        local si, kx, c
        si, kx, c, pos = U('<HHi8', prog, pos)
        sps[i], cs[i], ks[i] = spec(args[si]), c, kx > 0 and keys[kx]
      end
      if op == OP_D or op == OP_S then
        -- each check commits as it passes, so a later check of the same
        -- counter (same key and limit id) sees it; a rejection undoes them
        -- in reverse and the others are reported as peeks
        local os, undo, nu, first, base = OS, UNDO, 0, 0, NO
        for i = 1, m do
          local sp, k = sps[i], ks[i]
          local f, id = k and cur[k], sp[9]
          local r, x, y = get(f, id)
          local o, r1, r2, r3, r4, r5, n1, n2, n3 = run(sp, r, x, y, cs[i])
          os[i], OUT[base + i] = o, P(R6, o, r1, r2, r3, r4, r5)
          if o == 2 then
            if first == 0 then first = i end
          elseif n1 then
            local s = slot(f, id)
            undo[nu + 1], undo[nu + 2], undo[nu + 3], undo[nu + 4], undo[nu + 5], undo[nu + 6] =
              k, s, f[s + 2], f[s + 3], f[s + 4], f[s + 5]
            nu = nu + 6
            put(f, id, n1, n2, n3)
          end
        end
        if first > 0 then
          for j = nu - 5, 1, -6 do
            local f, s = cur[undo[j]], undo[j + 1]
            f[s + 2], f[s + 3], f[s + 4], f[s + 5] = undo[j + 2], undo[j + 3], undo[j + 4], undo[j + 5]
          end
          for i = 1, m do
            if os[i] ~= 2 then
              local k = ks[i]
              local r, x, y = get(k and cur[k], sps[i][9])
              OUT[base + i] = P(R6, run(sps[i], r, x, y, 0))
            end
          end
        else
          for j = 1, nu, 6 do dirty[undo[j]] = true end
        end
        NO = base + m
        if op == OP_S then
          for i = 1, m do NO = NO + 1; OUT[NO] = raw(ks[i] and cur[ks[i]], sps[i][9]) end
        end
      elseif op == OP_A then
        for i = 1, m do
          local k, id = ks[i], sps[i][9]
          local f = k and cur[k]
          if f and cs[i] > 0 then
            local r, x, y = get(f, id)
            put(f, id, add(sps[i], r, x, y, cs[i]))
            dirty[k] = true
          end
          NO = NO + 1
          OUT[NO] = raw(f, id)
        end
      elseif op == OP_P or op == OP_R then
        -- every refund first: a counter checked twice reports both
        if op == OP_R then
          for i = 1, m do
            local k, id = ks[i], sps[i][9]
            local f = k and cur[k]
            if f then
              local r, x, y = get(f, id)
              local n1, n2, n3 = refund(sps[i], r, x, y, cs[i], rs, rns)
              if n1 then put(f, id, n1, n2, n3); dirty[k] = true end
            end
          end
        end
        for i = 1, m do
          local k = ks[i]
          local r, x, y = get(k and cur[k], sps[i][9])
          NO = NO + 1
          OUT[NO] = P(R6, run(sps[i], r, x, y, 0))
        end
      else
        error('sluice: bad op')
      end
    end
  end
  for k, _ in pairs(dirty) do store(k, cur[k]) end
  return concat(OUT, '', 1, NO)
end
