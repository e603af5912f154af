-- Functions shared by the offset scripts, which are appended to this file.

-- parse_id splits a stream id into its decimal parts without leading
-- zeros, so that they compare by length, then as text: numerically, however
-- many digits they have (Lua numbers lose precision past 2^53).
local function parse_id(s)
  local ms, seq = string.match(s, "^(%d+)%-(%d+)$")
  if not ms then
    ms = string.match(s, "^(%d+)$")
    seq = "0"
  end
  if not ms then
    return nil
  end
  return (string.gsub(ms, "^0+", "")), (string.gsub(seq, "^0+", ""))
end

local function cmp_num(a, b)
  if #a ~= #b then
    if #a < #b then return -1 end
    return 1
  end
  if a == b then return 0 end
  if a < b then return -1 end
  return 1
end

-- commit_offset sets the offset at key to id unless it already holds an id
-- at or past it: offsets never move backwards. A stored value that is not
-- an id is overwritten. Returns 1 when the offset moved, 0 otherwise, or an
-- error reply for an invalid id.
local function commit_offset(key, id)
  local nms, nseq = parse_id(id)
  if not nms then
    return redis.error_reply("ERR redstream: invalid offset " .. id)
  end
  local cur = redis.call("get", key)
  if cur then
    local cms, cseq = parse_id(cur)
    if cms then
      local c = cmp_num(nms, cms)
      if c == 0 then c = cmp_num(nseq, cseq) end
      if c <= 0 then return 0 end
    end
  end
  redis.call("set", key, id)
  return 1
end
