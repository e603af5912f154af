-- Releases a lease and wakes its waiters.
-- KEYS[1] lock key, KEYS[2] notify list
-- ARGV[1] holder value, ARGV[2] notify list TTL in milliseconds
-- Returns 1 when the holder's lock was deleted, 0 when it had already
-- expired, -1 when another holder has it (its waiters are left alone).
local cur = redis.call("get", KEYS[1])
local released = 0
if cur == ARGV[1] then
  redis.call("del", KEYS[1])
  released = 1
elseif cur then
  return -1
end
redis.call("del", KEYS[2])
redis.call("rpush", KEYS[2], "1")
redis.call("pexpire", KEYS[2], ARGV[2])
return released
