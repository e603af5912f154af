-- Commits a consumer offset, fenced by its lease.
-- KEYS[1] lock key, KEYS[2] offset key
-- ARGV[1] holder value, ARGV[2] stream id "<ms>-<seq>"
-- Returns 1 when the offset moved to ARGV[2], 0 when it already was at or
-- past it, -1 when the lock does not hold this holder's value (nothing is
-- written).
if redis.call("get", KEYS[1]) ~= ARGV[1] then
  return -1
end
return commit_offset(KEYS[2], ARGV[2])
