-- Renews a member's heartbeat in a worker group and returns the live
-- members, by the Redis server's clock, so that members on hosts whose
-- clocks differ agree on who is alive.
-- KEYS[1] the group's sorted set
-- ARGV[1] the member ("" to only read), ARGV[2] the heartbeat TTL in
-- milliseconds.
-- Returns the live members, sorted.
if redis.replicate_commands then
  redis.replicate_commands()
end
local t = redis.call("time")
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[1] ~= "" then
  redis.call("zadd", KEYS[1], now + ttl, ARGV[1])
end
redis.call("zremrangebyscore", KEYS[1], "-inf", now)
redis.call("pexpire", KEYS[1], 3 * ttl)
local members = redis.call("zrangebyscore", KEYS[1], "(" .. now, "+inf")
table.sort(members)
return members
