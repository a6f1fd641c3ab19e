"""The celery beat scheduler: celery's own entries plus the schedules file.

Configured as ``beat_scheduler`` in `worker.celery_app`, so plain
``celery -A worker beat`` runs it. It extends celery's in-memory
`celery.beat.Scheduler`: entries of ``beat_schedule`` (the sweeper) run as
before, and each tick also fires the due slots of ``STARTPROC_SCHEDULES``
through `worker.schedules.fire.Firer`. Slot times are computed here (cron +
zoneinfo, see `worker.schedules.timing`), not by celery's ``crontab``, whose
DST behaviour and per-process "last run" memory could not give two beats the
same slots. The state that matters lives in Redis, so beat's ``-s`` shelve
file is not used.

**No single-beat lock, on purpose.** Correctness never depends on only one
beat running: a slot is an ordinary start job whose idempotency key and job
id are derived from (schedule, slot time), and the cursor in Redis only moves
forward, so a second beat, a restarted beat or a redelivered message sends
the *same* job and the worker starts one instance. A lock could not give that
guarantee by itself anyway -- a lock with a TTL has two holders after a long
pause or a Redis failover -- and it would add a failure mode of its own: a
beat that dies holding it stops every schedule until the TTL runs out.
Without one, a second beat is a hot standby. The price is one extra message
per slot per extra beat (absorbed by the worker without an engine call), and
celery's own entries also running once per beat.

A missing schedules file at the default path means "no schedules" (so
``startproc up`` works from a fresh clone); a missing file that
``STARTPROC_SCHEDULES`` names, a bad file, or a schedule naming a target that
is not in the targets file stops beat at start with the file, schedule and key;
so does a RabbitMQ jobs queue of another type than ``STARTPROC_RABBITMQ_QUEUE_TYPE``
(the same check as the workers').
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import structlog
from celery import beat

from worker.broker.redis_policy import check_settings
from worker.config import Settings, settings
from worker.errors import ConfigError
from worker.schedules.fire import Firer
from worker.schedules.schedule import load_schedules
from worker.schedules.state import ScheduleState
from worker.targets import load_targets

log = structlog.get_logger("worker.schedules.schedule")


def _publish(jobs: list[dict[str, Any]]) -> object:
    from worker.producer import publish

    return publish(jobs)


def build_firer(cfg: Settings) -> tuple[Firer | None, str]:
    """The firer for the configured schedules file (None without one) and a summary line."""
    from worker.broker.connections import shared_redis

    path = cfg.schedules
    if not path.exists():
        if "schedules" not in cfg.model_fields_set:
            return None, f"no schedules ({path} does not exist)"
        raise ConfigError(f"{path}: schedules file not found (set STARTPROC_SCHEDULES)")
    schedules = load_schedules(path, load_targets(cfg.targets))
    if not schedules:
        return None, f"no schedules in {path}"
    state = ScheduleState(shared_redis(cfg.require_redis()))
    enabled = sum(s.enabled for s in schedules)
    return Firer(schedules, state, _publish), f"{enabled}/{len(schedules)} schedules from {path}"


def heartbeat_path(schedule_filename: str) -> Path:
    """The file beat touches on every tick (``startproc health beat`` reads its age)."""
    return Path(f"{schedule_filename}.heartbeat")


class Scheduler(beat.Scheduler):  # type: ignore[misc]  # celery ships no types
    """celery's in-memory scheduler, ticking the schedules file as well.

    Each tick touches `heartbeat_path` of beat's ``-s`` file, the container
    health check (``startproc health beat``): beat has no remote control.
    """

    firer: Firer | None = None
    summary: str = "schedules from STARTPROC_SCHEDULES"
    heartbeat: Path | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        filename = kwargs.get("schedule_filename")
        self.heartbeat = heartbeat_path(str(filename)) if filename else None
        super().__init__(*args, **kwargs)

    def _beat(self) -> None:
        if self.heartbeat is None:
            return
        try:
            self.heartbeat.touch()
        except OSError as exc:  # a read-only folder must not stop the schedules
            log.warning("beat.heartbeat_failed", path=str(self.heartbeat), error=str(exc))
            self.heartbeat = None

    def setup_schedule(self) -> None:
        super().setup_schedule()
        from worker.celery_app import declare_broker_entities

        try:
            cfg = settings()
            self.firer, self.summary = build_firer(cfg)
            # like the workers: a jobs queue of another type on RabbitMQ stops beat
            # here, saying what to do, instead of failing every slot's publish
            declare_broker_entities(cfg)
            check_settings(cfg)  # beat publishes jobs: the same Redis check as producers
        except ConfigError as exc:
            raise SystemExit(f"startproc beat: configuration error:\n{exc}") from None
        log.info("schedules.loaded", summary=self.summary)

    def tick(self, *args: Any, **kwargs: Any) -> float:
        self._beat()
        interval = float(super().tick(*args, **kwargs))
        if self.firer is None or interval <= 0:
            return interval  # 0: celery wants to run its next entry right away
        return min(interval, self.firer.tick())

    @property
    def info(self) -> str:
        return self.summary
