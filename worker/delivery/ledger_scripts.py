"""The ledger's Lua scripts: every transition of a key is one of them, atomic in Redis.

Kept apart from `worker.delivery.ledger` (the Python side: arguments in,
`Claim` out), which documents the hash's fields and what each transition means.
Times come from the Redis server's clock (``TIME``), never a worker's.
"""

NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

CLAIM = NOW_MS + """
local h = KEYS[1]
local fp, job = ARGV[1], ARGV[2]
local lease, ttl = tonumber(ARGV[3]), tonumber(ARGV[4])
local send = ARGV[5] == '1'
local holder, attempt, alive_prefix = ARGV[6], tonumber(ARGV[7]), ARGV[8]
local call, enqueued, margin = ARGV[9], tonumber(ARGV[10]), tonumber(ARGV[11])
local s = redis.call('HMGET', h, 'state', 'claim_call', 'claim_reply')
local state = s[1]
if state == 'IN_FLIGHT' and s[2] == call then
  -- this very call again (redis-py resends a command whose answer was lost): same answer
  return cjson.decode(s[3])
end
local function claimed(reply)
  redis.call('HSET', h, 'holder', holder, 'claim_call', call, 'claim_reply', cjson.encode(reply))
  redis.call('EXPIRE', h, ttl)
  return reply
end
-- When (ms) a claim first met this server after another one (a restart, a failover):
-- writes made before then may be missing. 0 while the ledger has seen only this
-- server, or when it will not say who it is (INFO refused).
local function switched_at()
  local info = redis.pcall('INFO', 'server')
  if type(info) ~= 'string' then return 0 end
  local run = string.match(info, 'run_id:(%x+)')
  if not run then return 0 end
  local seen = redis.call('HMGET', KEYS[2], 'run_id', 'since')
  if seen[1] == run then return tonumber(seen[2] or 0) end
  local since = 0
  if seen[1] then since = now end
  redis.call('HSET', KEYS[2], 'run_id', run, 'since', since)
  return since
end
-- Writes stamped before `doubt` are doubted: the switch plus a margin for clocks (a
-- producer's, the old server's) running ahead of this server's, or plus one attempt
-- when longer. Until then a doubted key is busy: a holder from before the switch may
-- still be sending for it, and its outcome rebuilds the entry (then this job is a
-- duplicate of it, not a second job that found the instance and calls it its own).
local function doubted()
  local switched = switched_at()
  if switched == 0 then return 0, 0 end
  return switched, switched + math.max(margin, attempt)
end
if not state then
  local switched, doubt = doubted()
  if enqueued < doubt then
    if now < doubt then return {'busy', 0, '', '', doubt - now, 0, 0} end
    -- Enqueued before the switch: its entry (and an instance) may have been lost with it.
    -- The fence jumps to the clock, above any a holder from before the switch may hold.
    redis.call('HSET', h, 'state', 'IN_FLIGHT', 'fingerprint', fp, 'job_id', job, 'fence', now,
               'lease_until', now + lease, 'attempts', 0, 'lost_send', 1, 'created_at', now,
               'updated_at', now)
    return claimed({'claimed', now, '', '', 3, 0, now - switched})
  end
  if send then
    -- a fresh key: claimed and marked as being sent in one step
    redis.call('HSET', h, 'state', 'IN_FLIGHT', 'fingerprint', fp, 'job_id', job, 'fence', 1,
               'lease_until', now + lease, 'attempts', 1, 'sent_fence', 1, 'created_at', now,
               'updated_at', now)
    return claimed({'claimed', 1, '', '', 0, 1, 0})
  end
  redis.call('HSET', h, 'state', 'IN_FLIGHT', 'fingerprint', fp, 'job_id', job, 'fence', 1,
             'lease_until', now + lease, 'attempts', 0, 'created_at', now, 'updated_at', now)
  return claimed({'claimed', 1, '', '', 0, 0, 0})
end
local f = redis.call('HMGET', h, 'fingerprint', 'job_id', 'instance_id', 'lease_until', 'fence',
                     'sent_fence', 'attempts', 'updated_at', 'lost_send', 'holder')
if f[1] ~= fp then return {'conflict', 0, f[2] or '', '', 0, 0, 0} end
if state == 'SUCCEEDED' then
  return {'duplicate', 0, f[2] or '', f[3] or '', 0, tonumber(f[7] or 0), 0}
end
local lease_until = tonumber(f[4] or 0)
if state == 'IN_FLIGHT' and lease_until > now then
  -- A live lease, unless its holder's heartbeat is gone: then it ends once the holder's
  -- last attempt is surely over (`attempt` ms after its last write), not at lease_until.
  local last = tonumber(f[8] or now)
  local owner = f[10]
  if not owner or owner == '' or redis.call('EXISTS', alive_prefix .. owner) == 1 then
    return {'busy', 0, f[2] or '', '', lease_until - now, 0, 0}
  end
  if now - last < attempt then
    return {'busy', 0, f[2] or '', '', math.min(lease_until, last + attempt) - now, 0, 0}
  end
end
-- Taking over: a dead holder or an AMBIGUOUS outcome may have created an instance.
-- Any holder that marked a send counts, not only the last one: a holder that
-- died while reconciling an earlier holder's send leaves that send unresolved.
-- 1: an answer was lost (AMBIGUOUS, now or ever before); 2: a holder died after
-- marking a send; 3: the entry was last written before a Redis switch, so a later
-- send may be missing from it. Any loss is remembered for good (lost_send).
local maybe_sent = 0
if state == 'AMBIGUOUS' or f[9] == '1' then maybe_sent = 1 end
if state == 'IN_FLIGHT' and f[6] then maybe_sent = 2 end
local since = now - tonumber(f[8] or now)  -- ms since that holder last wrote
local switched, doubt = doubted()
local fence = tonumber(f[5] or 0) + 1
if tonumber(f[8] or 0) < doubt then
  if now < doubt then return {'busy', 0, f[2] or '', '', doubt - now, 0, 0} end
  -- a send after the entry's last write may have been lost, at most this long ago, by a
  -- holder whose fence the entry forgot: jump above it
  maybe_sent, since, fence = 3, math.min(since, now - switched), math.max(fence, now)
end
if maybe_sent > 0 then redis.call('HSET', h, 'lost_send', 1) end
redis.call('HSET', h, 'fence', fence)
redis.call('HSET', h, 'state', 'IN_FLIGHT', 'job_id', job, 'lease_until', now + lease,
           'updated_at', now)
return claimed({'claimed', fence, f[2] or '', '', maybe_sent, tonumber(f[7] or 0), since})
"""

MARK_SENDING = NOW_MS + """
local h = KEYS[1]
local f = redis.call('HMGET', h, 'fence', 'state')
if f[1] ~= ARGV[1] or f[2] ~= 'IN_FLIGHT' then return 0 end
redis.call('HSET', h, 'sent_fence', ARGV[1], 'lease_until', now + tonumber(ARGV[2]),
           'updated_at', now)
return redis.call('HINCRBY', h, 'attempts', 1)
"""

FINISH = NOW_MS + """
local h = KEYS[1]
local fence, state, fp = ARGV[1], ARGV[2], ARGV[5]
local stored = redis.call('HGET', h, 'fence')
if stored ~= fence then
  -- Only a higher fence means another holder took the key over. No entry, or a lower
  -- fence (a claim made after Redis lost the entry), means Redis lost what this holder
  -- wrote: rebuild the entry from what it knows, a success over such a claim too.
  local lost = not stored or (state == 'SUCCEEDED' and tonumber(stored) < tonumber(fence))
  if fp == '' or not lost then return 0 end
  redis.call('HSET', h, 'fingerprint', fp, 'job_id', ARGV[6], 'fence', fence,
             'sent_fence', fence)
  redis.call('HSETNX', h, 'created_at', now)
  if tonumber(redis.call('HGET', h, 'attempts') or 0) < tonumber(ARGV[7]) then
    redis.call('HSET', h, 'attempts', ARGV[7])
  end
end
redis.call('HSET', h, 'state', state, 'instance_id', ARGV[3], 'updated_at', now,
           'lease_until', 0)
if state == 'RELEASED' then redis.call('HDEL', h, 'sent_fence') end
if state == 'AMBIGUOUS' then redis.call('HSET', h, 'lost_send', 1) end
redis.call('EXPIRE', h, tonumber(ARGV[4]))
return 1
"""

PREPARE_REPLAY = NOW_MS + """
local h = KEYS[1]
local fp, job, mode, last, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local f = redis.call('HMGET', h, 'state', 'lease_until', 'sent_fence', 'lost_send')
local state = f[1]
if not state then
  if mode == 'not_created' then return 'ABSENT' end
  -- Forgotten (retention): an earlier attempt may have created the instance.
  redis.call('HSET', h, 'state', 'AMBIGUOUS', 'fingerprint', fp, 'job_id', job, 'fence', 1,
             'sent_fence', 1, 'attempts', 0, 'lease_until', 0, 'created_at', now,
             'updated_at', last)
  redis.call('EXPIRE', h, ttl)
  return 'UNKNOWN'
end
if state == 'SUCCEEDED' then return state end
if state == 'IN_FLIGHT' and tonumber(f[2] or 0) > now then return 'BUSY' end
if mode == 'not_created' then
  redis.call('HINCRBY', h, 'fence', 1)
  redis.call('HSET', h, 'state', 'RELEASED', 'lease_until', 0, 'updated_at', now)
  -- a person checked the engine: no lost send is left to look for
  redis.call('HDEL', h, 'sent_fence', 'lost_send')
  redis.call('EXPIRE', h, ttl)
  return 'RELEASED'
end
local maybe_sent = state == 'AMBIGUOUS' or f[4] == '1' or (state == 'IN_FLIGHT' and f[3])
if mode == 'lookup' then
  if not maybe_sent then
    local fence = redis.call('HINCRBY', h, 'fence', 1)
    redis.call('HSET', h, 'state', 'AMBIGUOUS', 'sent_fence', fence, 'lease_until', 0)
  end
  return 'LOOKUP'
end
if maybe_sent then return 'MAYBE_SENT' end
return state
"""

SETTLE_CREATED = NOW_MS + """
local h = KEYS[1]
local fp, job, instance, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local f = redis.call('HMGET', h, 'state', 'instance_id', 'lease_until', 'job_id')
if f[1] == 'SUCCEEDED' then
  if f[2] == instance then return {'ALREADY', f[2], f[4] or ''} end
  return {'CONFLICT', f[2] or '', f[4] or ''}
end
if f[1] == 'IN_FLIGHT' and tonumber(f[3] or 0) > now then return {'BUSY', '', f[4] or ''} end
if f[1] then
  redis.call('HINCRBY', h, 'fence', 1)
else
  redis.call('HSET', h, 'fingerprint', fp, 'fence', 1, 'attempts', 0, 'created_at', now)
end
redis.call('HSET', h, 'state', 'SUCCEEDED', 'instance_id', instance, 'job_id', job,
           'lease_until', 0, 'updated_at', now, 'resolved_by', 'person')
redis.call('EXPIRE', h, ttl)
return {'SUCCEEDED', instance, job}
"""
