"""The idempotency ledger: who may call the engine for a key, and what came of it.

One Redis hash per (target, idempotency key)::

    state        IN_FLIGHT -> SUCCEEDED | FAILED | AMBIGUOUS | RELEASED
    fingerprint  hash of the normalised payload (same key, other payload = conflict)
    job_id       the job that claimed it last; instance_id once SUCCEEDED
    fence        grows on every claim; a holder with an older fence can't write (an
                 entry Redis lost is rebuilt by its holder's outcome, see `finish`)
    lease_until  ms epoch (Redis server time); an IN_FLIGHT entry past it belongs
                 to a dead worker
    holder       the worker process that claimed it (`worker.liveness`); once that
                 worker's heartbeat key is gone and its last attempt is surely over
                 (``attempt_ms`` since its last write), the lease counts as run out
    sent_fence   the fence of the last holder that was about to send; cleared only
                 when a send is known not to have created anything (RELEASED), so a
                 takeover knows whether any earlier holder may have created an instance
    attempts     start requests sent for this key
    lost_send    1 once a send's outcome was never learned (an AMBIGUOUS answer, or a
                 holder that died after marking a send); never cleared, so every later
                 claim reconciles first: the lost instance may show up in a search
                 long after a later send was settled (RELEASED or FAILED)
    claim_call   a token of the claim call that holds the key, and ``claim_reply``
                 its answer: redis-py resends a command whose answer was lost
                 (a timeout), and the resent claim must get the same answer, not
                 "busy" from its own lease

A Redis that restarts or fails over may come back without its last writes (the
last second of an ``everysec`` AOF after a host crash, a replica that lagged):
claims, sends, outcomes, acknowledgements. The key ``startproc:redis-epoch``
names the server the ledger last saw (``run_id``); a claim that meets another
server notes the time (``since``). From then on an entry last written before
that time, or missing for a job enqueued before it, may have lost a send. Such a
key is busy for a few seconds after the switch (a holder from before it may still
be sending, and its outcome rebuilds the entry); then the claim reconciles first
(``maybe_sent`` 3), like a takeover after a crash, and its fence jumps to the clock
(ms), above any fence the lost writes handed out, so a holder from before the
switch can no longer mark a send or write over it.

Every transition is one Lua script, so two workers racing on a key can never
both be told to call the engine (like arq's atomic enqueue: the outcome is a
return value, not an exception). Times come from the Redis server's clock
(``TIME``), as in the rate limiter: a lease written by one worker and judged
expired by another is compared on one clock, so skew between worker hosts
cannot end a live holder's lease early. The interface (`claim`, `mark_sending`,
`finish`) is small enough for a SQL implementation with row locks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

import redis

from worker.keys import REDIS_EPOCH, alive_key, ledger_key
from worker.redis_batch import ScriptCall

ClaimStatus = Literal["claimed", "duplicate", "conflict", "busy"]
CLOCK_SKEW_MARGIN = 5.0
"""Seconds a clock (a producer's ``enqueued_at``, the old Redis server's) may run ahead of
the new server's and a write made before a switch still be doubted."""
FinalState = Literal["SUCCEEDED", "FAILED", "AMBIGUOUS", "RELEASED"]

_NOW_MS = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
"""

_CLAIM = _NOW_MS + """
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

_MARK_SENDING = _NOW_MS + """
local h = KEYS[1]
local f = redis.call('HMGET', h, 'fence', 'state')
if f[1] ~= ARGV[1] or f[2] ~= 'IN_FLIGHT' then return 0 end
redis.call('HSET', h, 'sent_fence', ARGV[1], 'lease_until', now + tonumber(ARGV[2]),
           'updated_at', now)
return redis.call('HINCRBY', h, 'attempts', 1)
"""

_FINISH = _NOW_MS + """
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

ReplayMode = Literal["lookup", "unknown", "not_created"]

_PREPARE_REPLAY = _NOW_MS + """
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

_SETTLE_CREATED = _NOW_MS + """
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


@dataclass(frozen=True)
class Claim:
    """The ledger's answer to "may I call the engine for this key?"."""

    status: ClaimStatus
    fence: int = 0
    other_job_id: str = ""
    instance_id: str = ""
    maybe_sent: bool = False
    """True when a previous holder may have created an instance: reconcile first."""
    holder_died: bool = False
    """``maybe_sent`` because a holder died after marking a send (not an answer lost)."""
    writes_lost: bool = False
    """``maybe_sent`` because Redis switched since the entry was written (or it is missing)."""
    since_send: float = 0.0
    """With ``maybe_sent``: seconds since that holder's last write (its send or its outcome),
    or since the switch (``writes_lost``)."""
    wait_ms: int = 0
    attempts: int = 0
    sending: bool = False
    """True when the claim also marked the first send (``claim(send=True)`` on a new key)."""


class Ledger:
    """Redis implementation of the ledger. Thread-safe (redis-py pools connections)."""

    def __init__(self, client: redis.Redis, lease_seconds: int, retention_days: int) -> None:
        self.client = client
        self.lease_ms = lease_seconds * 1000
        self.ttl = retention_days * 86400
        self._claim = client.register_script(_CLAIM)
        self._mark = client.register_script(_MARK_SENDING)
        self._finish = client.register_script(_FINISH)
        self._prepare_replay = client.register_script(_PREPARE_REPLAY)
        self._settle_created = client.register_script(_SETTLE_CREATED)

    def claim(
        self,
        target: str,
        key: str,
        fingerprint: str,
        job_id: str,
        send: bool = False,
        holder: str = "",
        attempt_seconds: float = 0.0,
        call: str | None = None,
        enqueued_at: float | None = None,
    ) -> Claim:
        """Ask for the key. ``send``: a key nobody had is also marked as being sent.

        That saves `mark_sending`'s round trip for the common first attempt;
        the caller then checks `Claim.sending` and skips it once. ``holder``:
        this worker process (`worker.liveness`), recorded with the claim.
        ``attempt_seconds``: the longest one HTTP attempt to the target can
        take; a dead holder's lease is taken over that long after its last write.
        ``call`` identifies this call (a fresh token by default), so the client
        library may safely resend it after a timeout. ``enqueued_at`` (Unix
        time; None: unknown, so maybe long ago): a job enqueued before a Redis
        switch, or within `CLOCK_SKEW_MARGIN` or one attempt after it, finding no
        entry waits until then (busy) and reconciles first.
        """
        enqueued_ms = 0 if enqueued_at is None else int(enqueued_at * 1000)
        raw = self._claim(
            keys=[ledger_key(target, key), REDIS_EPOCH],
            args=[
                fingerprint,
                job_id,
                self.lease_ms,
                self.ttl,
                "1" if send else "0",
                holder,
                int(attempt_seconds * 1000),
                alive_key(""),
                call or uuid.uuid4().hex,
                max(enqueued_ms, 0),
                int(CLOCK_SKEW_MARGIN * 1000),
            ],
        )
        status, fence, other, instance, extra, attempts, since = raw
        if status == "busy":
            return Claim("busy", other_job_id=other, wait_ms=int(extra))
        return Claim(
            status,
            fence=int(fence),
            other_job_id=other,
            instance_id=instance,
            maybe_sent=bool(int(extra)),
            holder_died=int(extra) == 2,
            writes_lost=int(extra) == 3,
            since_send=int(since) / 1000,
            attempts=int(attempts),
            sending=send and status == "claimed" and int(fence) == 1 and int(attempts) == 1,
        )

    def mark_sending(self, target: str, key: str, fence: int) -> int | None:
        """Record that this holder is about to send; extends the lease.

        None if fenced out, or if the key is no longer in flight: after Redis lost
        an entry two holders can share a fence number, and a key another holder
        already decided must not be sent again.
        """
        attempts = self._mark(keys=[ledger_key(target, key)], args=[fence, self.lease_ms])
        return int(attempts) or None

    def finish(
        self,
        target: str,
        key: str,
        fence: int,
        state: FinalState,
        instance_id: str = "",
        *,
        fingerprint: str = "",
        job_id: str = "",
        attempts: int = 0,
    ) -> bool:
        """Write the outcome if this holder still owns the key; False for a stale holder.

        A holder owns the key unless a *higher* fence took it over. When Redis
        lost the entry (failover to a lagging replica, an AOF tail, a restart),
        the outcome rebuilds it from ``fingerprint``, ``job_id`` and ``attempts``,
        and a success also replaces a lower-fenced claim made after the loss:
        a success dropped there would let the next job start a second instance.
        Without a ``fingerprint`` a lost entry is left alone.
        """
        call = self.finish_call(
            target,
            key,
            fence,
            state,
            instance_id,
            fingerprint=fingerprint,
            job_id=job_id,
            attempts=attempts,
        )
        return bool(call.run())

    def finish_call(
        self,
        target: str,
        key: str,
        fence: int,
        state: FinalState,
        instance_id: str = "",
        *,
        fingerprint: str = "",
        job_id: str = "",
        attempts: int = 0,
    ) -> ScriptCall:
        """`finish` as a script call, to send in a `Batch` with other steps (its answer: 0/1)."""
        return ScriptCall(
            self._finish,
            [ledger_key(target, key)],
            [fence, state, instance_id, self.ttl, fingerprint, job_id, attempts],
        )

    def get(self, target: str, key: str) -> dict[str, str]:
        return dict(self.client.hgetall(ledger_key(target, key)))  # type: ignore[arg-type]

    # ---- settling dead letters by hand (`worker.settle`)

    def prepare_replay(
        self, target: str, key: str, fingerprint: str, job_id: str, mode: ReplayMode, last: float
    ) -> str:
        """Make the entry say what a replay may do before its job is sent again.

        ``lookup`` (an engine with a lookup): whatever the entry says, the
        replay looks the instance up first (an entry forgotten after the
        retention is recreated as AMBIGUOUS, last written at ``last``, a
        Unix time, so one lookup is enough). ``unknown`` (no lookup): only a
        forgotten entry is recreated as AMBIGUOUS. ``not_created`` (a person
        checked): the entry is RELEASED, so the replay sends.

        Returns ``UNKNOWN`` (recreated), ``LOOKUP``, ``MAYBE_SENT`` (no
        lookup, and an instance may exist), ``RELEASED``, ``ABSENT``,
        ``BUSY`` (a worker holds the key now) or the entry's state otherwise.
        """
        answer = self._prepare_replay(
            keys=[ledger_key(target, key)],
            args=[fingerprint, job_id, mode, int(last * 1000), self.ttl],
        )
        return str(answer)

    def settle_created(
        self, target: str, key: str, fingerprint: str, job_id: str, instance_id: str
    ) -> tuple[str, str, str]:
        """Record a success a person found in the engine: (verdict, instance id, job id).

        ``SUCCEEDED`` (written), ``ALREADY`` (that very instance was recorded),
        ``CONFLICT`` (another instance is recorded: returned with it) or
        ``BUSY`` (a worker holds the key now). Other holders are fenced out.
        """
        verdict, instance, job = self._settle_created(
            keys=[ledger_key(target, key)], args=[fingerprint, job_id, instance_id, self.ttl]
        )
        return str(verdict), str(instance), str(job)
