"""The Lua scripts of the Redis stores: each check-and-write runs atomically inside Redis.

Every script first checks the *epoch* of its state: a random id written beside the state when a store first
touches it and remembered by the store. A state whose epoch key is gone (Redis restarted without
persistence, or was flushed) or changed makes the script return ``-2`` and write nothing, so a budget or a
ledger is never silently reset to zero. The caller passes the epoch it knows (``''`` the first time, with a
fresh candidate the script stores if none exists); every script returns ``{code, epoch}``.

Budget scripts share one layout: ``KEYS = state hash, lease amounts hash, lease deadline zset, epoch key
[, operation key]`` and ``ARGV = known epoch, candidate epoch, lease seconds, ...``. Their prelude reclaims
leases whose deadline (Redis server time) passed. A pause longer than a lease in which nobody touched the
budget (a Redis outage, or an idle budget) moves every deadline forward by the pause, so a holder that could
not renew while Redis was down is not robbed of its lease; a dead holder's lease is then reclaimed one lease
period after the budget is used again.

Amounts travel as decimal strings (``repr`` of a float) so ``HINCRBYFLOAT`` applies them exactly.

Example:
    >>> "redis.call('TIME')" in BUDGET_PRELUDE and TRY_RESERVE.startswith(BUDGET_PRELUDE)
    True
"""

from __future__ import annotations

BUDGET_PRELUDE = """
local function check_epoch()
  local epoch = redis.call('GET', KEYS[4])
  if ARGV[1] == '' then
    if not epoch then
      epoch = ARGV[2]
      redis.call('SET', KEYS[4], epoch)
    end
    return epoch
  end
  if epoch ~= ARGV[1] then return nil end
  return epoch
end

local function give_back(held)
  local i = 0
  for x in string.gmatch(held, '%S+') do
    if tonumber(x) ~= 0 then
      local left = tonumber(redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. i, '-' .. x))
      if left < 0 then redis.call('HSET', KEYS[1], 'r' .. i, '0') end
    end
    i = i + 1
  end
end

local function reclaim()
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local seen = tonumber(redis.call('HGET', KEYS[1], 'seen') or '0')
  local pause = now - seen
  if seen > 0 and pause > tonumber(ARGV[3]) then
    local all = redis.call('ZRANGE', KEYS[3], 0, -1, 'WITHSCORES')
    for i = 1, #all, 2 do
      redis.call('ZADD', KEYS[3], string.format('%.6f', tonumber(all[i + 1]) + pause), all[i])
    end
  end
  redis.call('HSET', KEYS[1], 'seen', string.format('%.6f', now))
  local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', string.format('%.6f', now))
  for _, id in ipairs(dead) do
    local held = redis.call('HGET', KEYS[2], id)
    if held then
      give_back(held)
      redis.call('HDEL', KEYS[2], id)
    end
    redis.call('ZREM', KEYS[3], id)
  end
  return now
end
"""

# ARGV[4] op ttl, [5..8] wanted, [9..12] limits (-1 = unlimited), [13] relative tolerance, [14] lease ('' = none).
TRY_RESERVE = BUDGET_PRELUDE + """
local done = redis.call('GET', KEYS[5])
if done then return {tonumber(done), redis.call('GET', KEYS[4]) or ''} end
local epoch = check_epoch()
if not epoch then return {-2, redis.call('GET', KEYS[4]) or ''} end
local now = reclaim()
local tol = tonumber(ARGV[13])
local st = redis.call('HMGET', KEYS[1], 's0', 's1', 's2', 's3', 'r0', 'r1', 'r2', 'r3')
for i = 1, 4 do
  local w = tonumber(ARGV[4 + i])
  local lim = tonumber(ARGV[8 + i])
  if w > 0 and lim >= 0 then
    local s = tonumber(st[i] or '0')
    local r = tonumber(st[4 + i] or '0')
    if s + r + w > lim * (1 + tol) then
      redis.call('SET', KEYS[5], '0', 'EX', ARGV[4])
      return {0, epoch}
    end
  end
end
for i = 1, 4 do
  if tonumber(ARGV[4 + i]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 'r' .. (i - 1), ARGV[4 + i]) end
end
if ARGV[14] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[14], ARGV[5] .. ' ' .. ARGV[6] .. ' ' .. ARGV[7] .. ' ' .. ARGV[8])
  redis.call('ZADD', KEYS[3], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[14])
end
redis.call('SET', KEYS[5], '1', 'EX', ARGV[4])
return {1, epoch}
"""

# ARGV[4] lease.
RENEW = BUDGET_PRELUDE + """
local epoch = check_epoch()
if not epoch then return {-2, redis.call('GET', KEYS[4]) or ''} end
local now = reclaim()
if redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then
  redis.call('ZADD', KEYS[3], string.format('%.6f', now + tonumber(ARGV[3])), ARGV[4])
  return {1, epoch}
end
return {0, epoch}
"""

# ARGV[4] op ttl, [5..8] actual, [9..12] reserved (returned when no lease), [13] lease ('' = none).
SETTLE = BUDGET_PRELUDE + """
if redis.call('EXISTS', KEYS[5]) == 1 then return {0, redis.call('GET', KEYS[4]) or ''} end
local epoch = check_epoch()
if not epoch then return {-2, redis.call('GET', KEYS[4]) or ''} end
reclaim()
for i = 1, 4 do
  if tonumber(ARGV[4 + i]) ~= 0 then redis.call('HINCRBYFLOAT', KEYS[1], 's' .. (i - 1), ARGV[4 + i]) end
end
if ARGV[13] ~= '' then
  local held = redis.call('HGET', KEYS[2], ARGV[13])
  if held then
    give_back(held)
    redis.call('HDEL', KEYS[2], ARGV[13])
  end
  redis.call('ZREM', KEYS[3], ARGV[13])
else
  give_back(ARGV[9] .. ' ' .. ARGV[10] .. ' ' .. ARGV[11] .. ' ' .. ARGV[12])
end
redis.call('SET', KEYS[5], '1', 'EX', ARGV[4])
return {1, epoch}
"""

# Reclaims expired leases, then returns {1, epoch, s0..s3, r0..r3}.
SNAPSHOT = BUDGET_PRELUDE + """
local epoch = check_epoch()
if not epoch then return {-2, redis.call('GET', KEYS[4]) or ''} end
reclaim()
local st = redis.call('HMGET', KEYS[1], 's0', 's1', 's2', 's3', 'r0', 'r1', 'r2', 'r3')
return {1, epoch, st[1] or '0', st[2] or '0', st[3] or '0', st[4] or '0', st[5] or '0', st[6] or '0',
        st[7] or '0', st[8] or '0'}
"""

# Sets reserved to the sum of the live leases (after reclaiming); ARGV[4] = '1' also zeroes spent.
CLEAR = BUDGET_PRELUDE + """
local epoch = check_epoch()
if not epoch then return {-2, redis.call('GET', KEYS[4]) or ''} end
reclaim()
local live = {0, 0, 0, 0}
for _, held in ipairs(redis.call('HVALS', KEYS[2])) do
  local i = 1
  for x in string.gmatch(held, '%S+') do
    live[i] = live[i] + tonumber(x)
    i = i + 1
  end
end
for i = 1, 4 do
  redis.call('HSET', KEYS[1], 'r' .. (i - 1), string.format('%.17g', live[i]))
  if ARGV[4] == '1' then redis.call('HSET', KEYS[1], 's' .. (i - 1), '0') end
end
return {1, epoch}
"""

# KEYS: legacy id set, entries list, id -> digest hash, epoch key. ARGV: entry id, payload, digest, known
# epoch, candidate epoch. Returns {1 written | 0 the same entry was written before | -1 another entry holds
# the id | -2 epoch lost, epoch}.
APPEND = """
local epoch = redis.call('GET', KEYS[4])
if ARGV[4] == '' then
  if not epoch then
    epoch = ARGV[5]
    redis.call('SET', KEYS[4], epoch)
  end
elseif epoch ~= ARGV[4] then
  return {-2, epoch or ''}
end
local stored = redis.call('HGET', KEYS[3], ARGV[1])
if stored then
  if stored == ARGV[3] then return {0, epoch} end
  return {-1, epoch}
end
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return {-1, epoch} end
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('RPUSH', KEYS[2], ARGV[2])
return {1, epoch}
"""

# KEYS: epoch key. ARGV: known epoch ('' = first contact), candidate. Returns {1 | -2, epoch}.
EPOCH = """
local epoch = redis.call('GET', KEYS[1])
if ARGV[1] == '' then
  if not epoch then
    epoch = ARGV[2]
    redis.call('SET', KEYS[1], epoch)
  end
  return {1, epoch}
end
if epoch ~= ARGV[1] then return {-2, epoch or ''} end
return {1, epoch}
"""

__all__ = ["BUDGET_PRELUDE", "TRY_RESERVE", "RENEW", "SETTLE", "SNAPSHOT", "CLEAR", "APPEND", "EPOCH"]
