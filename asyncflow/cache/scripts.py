"""The Lua side of the Redis task cache (see asyncflow/cache/redis.py for the why).

Keys, under `<key_prefix>cache1:` ("1": the layout below; a change to it gets
a new number, so that two layouts never share keys):

- `generation`: a number. An entry counts only if it was written in the
  current generation; bumping it forgets every entry at once.
- `members`: sorted set, one member per live replica, scored with its lease
  expiry in Redis milliseconds.
- `server`: the run_id of the Redis process that set it (see CHECK_SERVER).
- `task:<task_id>`: a hash, `v` the row version, `g` the generation it was
  written in, and `c<codec version>` one payload per codec version that wrote
  this row version (an entry without a payload of the reader's codec is a miss;
  without any payload it is a tombstone: "the row is at least at version v").
"""

from __future__ import annotations

CACHE_CALL = """
-- KEYS: generation, members, one key per put, then one key per get.
-- ARGV: member, lease expiry (Redis ms; 0: no renewal), bump (1/0), ttl,
--       codec field, number of puts, then per put: version, generation, payload.
-- Returns: generation, Redis time (ms), then per get its payload or nil.
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local function text(n) return string.format('%.0f', n) end
local generation = tonumber(redis.call('GET', KEYS[1]))
if not generation then
  -- An empty Redis: start from the clock in microseconds, above any generation
  -- of a previous life of this Redis, so that no old ticket matches.
  generation = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  redis.call('SET', KEYS[1], text(generation))
end
-- A replica whose lease ran out may have written the store without reaching
-- Redis: nothing cached before now can be trusted.
if ARGV[3] == '1' or #redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 1) > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  generation = redis.call('INCR', KEYS[1])
end
-- A renewal that arrives after its expiry (Redis was stalled) renews nothing.
if tonumber(ARGV[2]) > now then
  redis.call('ZADD', KEYS[2], 'GT', ARGV[2], ARGV[1])
end
local ttl, field, puts = ARGV[4], ARGV[5], tonumber(ARGV[6])
for i = 1, puts do
  local key, version, ticket = KEYS[2 + i], tonumber(ARGV[4 + 3 * i]), tonumber(ARGV[5 + 3 * i])
  local entry = redis.call('HMGET', key, 'v', 'g')
  local current = -1
  if tonumber(entry[2]) == generation then current = tonumber(entry[1]) end
  if current < version then
    redis.call('DEL', key)
    redis.call('HSET', key, 'v', ARGV[4 + 3 * i], 'g', text(generation))
  end
  -- A row read or written before the generation changed may be older than a
  -- write that was forgotten with the old generation: it only marks the
  -- version (a tombstone), it is not served.
  if ticket == generation and current <= version then
    redis.call('HSET', key, field, ARGV[6 + 3 * i])
  end
  if current <= version then
    redis.call('EXPIRE', key, ttl)
  end
end
local reply = {generation, now}
for i = 3 + puts, #KEYS do
  local entry = redis.call('HMGET', KEYS[i], 'g', field)
  if tonumber(entry[1]) == generation and entry[2] then
    reply[#reply + 1] = entry[2]
  else
    reply[#reply + 1] = false
  end
end
return reply
"""

CHECK_SERVER = """
-- Run on every new connection. KEYS: server, generation. ARGV: the run_id of
-- the Redis process. Another process than the one that last set `server`
-- (Redis restarted from a snapshot, or a replica promoted) may hold entries
-- older than writes the previous one had acknowledged: a new generation.
-- Returns 0: same process, 1: another process, 2: first contact.
local known = redis.call('GET', KEYS[1])
if known ~= ARGV[1] then
  local clock = redis.call('TIME')
  local generation = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
  redis.call('SET', KEYS[2], string.format('%.0f', generation))
  redis.call('SET', KEYS[1], ARGV[1])
  if known then return 1 end
  return 2
end
return 0
"""
