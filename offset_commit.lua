-- Commits a consumer offset, fenced by its lease.
-- KEYS[1] lock key, KEYS[2] offset key, KEYS[3] (optional) the stream
-- ARGV[1] holder value, ARGV[2] stream id "<ms>-<seq>", ARGV[3] (with
-- KEYS[3]) the offset the holder last read or committed at KEYS[2], "0-0"
-- for none
-- Returns 1 when the offset moved to ARGV[2], 0 when it already was at or
-- past it, -1 when the lock does not hold this holder's value, -2 when the
-- stored offset is not ARGV[3] or the stream has no entry ARGV[2] (nothing
-- is written in these cases).
--
-- Under the lease only its holder writes the offset, and it commits the id
-- of an entry it read. A stored offset it did not write, or an entry this
-- node does not have, means that the holder read from, or committed to,
-- another node: Redis failed over to a replica that had not received
-- them. Going on, it would skip the entries the new master got after the
-- stored offset. It must read the stored offset again and go on from there.
if redis.call("get", KEYS[1]) ~= ARGV[1] then
  return -1
end
if KEYS[3] then
  local cur = redis.call("get", KEYS[2]) or "0-0"
  local cms, cseq = parse_id(cur)
  local ems, eseq = parse_id(ARGV[3])
  if not (cms and ems and cmp_num(cms, ems) == 0 and cmp_num(cseq, eseq) == 0) then
    return -2
  end
  if #redis.call("xrange", KEYS[3], ARGV[2], ARGV[2], "COUNT", 1) == 0 then
    return -2
  end
end
return commit_offset(KEYS[2], ARGV[2])
