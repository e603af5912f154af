-- Replays a dead letter: adds its payload to the stream again and deletes
-- it, in one step, so a replay never loses the entry and happens at most
-- once however many callers race.
-- KEYS[1] dead-letter stream, KEYS[2] main stream; ARGV[1] dead letter id.
-- Returns the new entry's id, false (nil) when there is no such dead letter,
-- or 0 when it has no payload (nothing is written).
if redis.replicate_commands then
  redis.replicate_commands()
end
local e = redis.call("xrange", KEYS[1], ARGV[1], ARGV[1])
if #e == 0 then
  return false
end
local f = e[1][2]
for i = 1, #f, 2 do
  if f[i] == "payload" then
    local id = redis.call("xadd", KEYS[2], "*", "payload", f[i + 1])
    redis.call("xdel", KEYS[1], ARGV[1])
    return id
  end
end
return 0
