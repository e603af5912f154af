-- Moves the due messages of a delay stream to its main stream and commits
-- the delayer's offset, fenced by its lease, in one atomic step.
-- KEYS[1] lock key, KEYS[2] offset key, KEYS[3] delay stream, KEYS[4] main stream
-- ARGV[1] holder value, ARGV[2] offset (the last id moved so far),
-- ARGV[3] the newest due id (messages up to and including it are due),
-- ARGV[4] the most messages to move.
-- Returns -1 when the lock does not hold this holder's value, -2 when the
-- stored offset is not ARGV[2] (nothing is written in either case);
-- otherwise {moved, last id moved or "", id of the next message or ""}.
if redis.call("get", KEYS[1]) ~= ARGV[1] then
  return -1
end
-- Under the lease only its holder writes the offset. A stored offset other
-- than the one it moved up to means its last moves are not on this node
-- (Redis failed over to a replica that had not received them), or someone
-- reset it: the delay messages after the stored offset are still here and
-- unmoved, and moving on from ARGV[2] would skip them, and trim them away.
local cur = redis.call("get", KEYS[2]) or "0-0"
local cms, cseq = parse_id(cur)
local ams, aseq = parse_id(ARGV[2])
if not (cms and ams and cmp_num(cms, ams) == 0 and cmp_num(cseq, aseq) == 0) then
  return -2
end
-- Redis < 7 replicates scripts verbatim unless told otherwise, and XADD *
-- is not deterministic.
if redis.replicate_commands then
  redis.replicate_commands()
end
local call, main = redis.call, KEYS[4]
local due = call("xrange", KEYS[3], "(" .. ARGV[2], ARGV[3], "COUNT", ARGV[4])
local last = ""
for j = 1, #due do
  local f = due[j][2]
  if f[1] == "payload" then
    call("xadd", main, "*", "payload", f[2])
  else
    for i = 3, #f, 2 do
      if f[i] == "payload" then
        call("xadd", main, "*", "payload", f[i + 1])
        break
      end
    end
  end
end
if #due > 0 then
  last = due[#due][1]
end
local from = ARGV[2]
if last ~= "" then
  -- Delete what was moved: everything up to and including last, since the
  -- delayer deletes what it moves and ids only grow. Trimming a prefix
  -- frees whole nodes, where XDEL costs a lookup per id.
  redis.call("xtrim", KEYS[3], "minid", last)
  redis.call("xdel", KEYS[3], last)
  local r = commit_offset(KEYS[2], last)
  if type(r) == "table" then
    return r
  end
  from = last
end
local nxt = redis.call("xrange", KEYS[3], "(" .. from, "+", "COUNT", 1)
local next_id = ""
if #nxt > 0 then
  next_id = nxt[1][1]
end
return {#due, last, next_id}
