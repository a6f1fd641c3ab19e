"""What beat remembers per schedule, in Redis, so catch-up survives restarts.

One hash per schedule, ``startproc:schedule:<name>``:

* ``cursor_ms``  -- every slot at or before this instant has been decided
  (started, or dropped by the catch-up policy);
* ``last_slot_ms`` / ``last_job_id`` -- the newest slot started, for
  ``startproc schedules list`` to show its result;
* ``paused`` (``paused_by``, ``paused_at``) -- set from the console: beat
  fires nothing for the schedule while it is there, and treats its slots as
  decided (like ``enabled = false``), so resuming starts afresh instead of
  catching up what the pause skipped.

Both only move forward (one Lua script compares and sets), so two beats, or a
beat with a slow clock, can never move a schedule back and re-open slots that
were already decided. The hash has no TTL: it is a few bytes per schedule
and losing it would turn a restart into a first start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import redis

from worker.keys import schedule_state_key

_ADVANCE = """
local cursor = tonumber(redis.call('HGET', KEYS[1], 'cursor_ms') or '-1')
if tonumber(ARGV[1]) > cursor then redis.call('HSET', KEYS[1], 'cursor_ms', ARGV[1]) end
if ARGV[2] ~= '' then
  local last = tonumber(redis.call('HGET', KEYS[1], 'last_slot_ms') or '-1')
  if tonumber(ARGV[2]) > last then
    redis.call('HSET', KEYS[1], 'last_slot_ms', ARGV[2], 'last_job_id', ARGV[3])
  end
end
return 1
"""




def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _at(ms: str | None) -> datetime | None:
    return datetime.fromtimestamp(int(ms) / 1000, UTC) if ms else None


@dataclass(frozen=True)
class LastFired:
    slot: datetime
    job_id: str


class ScheduleState:
    """Cursor and last fired slot of each schedule."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._advance = client.register_script(_ADVANCE)

    def cursor(self, name: str) -> datetime | None:
        value = self.client.hget(schedule_state_key(name), "cursor_ms")
        return _at(str(value)) if value else None

    def last_fired(self, name: str) -> LastFired | None:
        slot, job_id = self.client.hmget(schedule_state_key(name), ["last_slot_ms", "last_job_id"])
        if not slot or not job_id:
            return None
        at = _at(str(slot))
        return LastFired(at, str(job_id)) if at else None

    def note_fired(self, name: str, slot: datetime, job_id: str) -> None:
        """A slot fired by hand (the console's "run now"): the last fired slot, cursor untouched."""
        self._advance(keys=[schedule_state_key(name)], args=[-2, _ms(slot), job_id])

    def paused(self, name: str) -> bool:
        return bool(self.client.hexists(schedule_state_key(name), "paused"))

    def pause_info(self, name: str) -> dict[str, str] | None:
        """Who paused the schedule and when (Unix seconds), or None when it runs."""
        paused, by, at = self.client.hmget(
            schedule_state_key(name), ["paused", "paused_by", "paused_at"]
        )
        return {"by": str(by or ""), "at": str(at or "")} if paused else None

    def pause(self, name: str, by: str = "", at: float = 0.0) -> None:
        self.client.hset(
            schedule_state_key(name), mapping={"paused": 1, "paused_by": by, "paused_at": at}
        )

    def resume(self, name: str) -> None:
        self.client.hdel(schedule_state_key(name), "paused", "paused_by", "paused_at")

    def advance(
        self, name: str, cursor: datetime, fired: datetime | None = None, job_id: str = ""
    ) -> None:
        """Move the cursor (and the last fired slot) forward, never back."""
        self._advance(
            keys=[schedule_state_key(name)],
            args=[_ms(cursor), _ms(fired) if fired else "", job_id],
        )
