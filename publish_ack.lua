-- Writes the main-stream messages of committed changes, then deletes their
-- delay messages, in one atomic step: a delay message is removed only once
-- its main-stream message is in Redis. When an XADD fails, the script stops
-- there and nothing is deleted, so the Delayer still delivers the change.
-- KEYS[1] main stream, KEYS[2] delay stream
-- ARGV[1] the number n of payloads, ARGV[2..n+1] the payloads,
-- ARGV[n+2..] the ids of the delay messages to delete.
-- Returns n.
if redis.replicate_commands then
  redis.replicate_commands()
end
local n = tonumber(ARGV[1])
for i = 2, n + 1 do
  redis.call("xadd", KEYS[1], "*", "payload", ARGV[i])
end
-- XDEL in slices: unpack is bounded by Lua's stack.
local first = n + 2
while first <= #ARGV do
  local last = math.min(first + 999, #ARGV)
  redis.call("xdel", KEYS[2], unpack(ARGV, first, last))
  first = last + 1
end
return n
