"""Fault injection for start requests: the same knobs on every engine.

Two sources, scripted first:

* ``script([...])`` — one-shot faults consumed in order by the next start
  requests: ``{"status": 503, "retry_after": "1"}``, ``{"drop": "before_commit"}``,
  ``{"drop": "after_commit"}``, ``{"latency_ms": 1500}`` (a slow but successful
  start, for client timeouts), ``{"trickle_ms": 50}`` (the start is handled,
  then the whole answer is written a byte every 50 ms: each read is quick, the
  answer as a whole is not, for client deadlines), with optional ``code``
  (C7 ``ExceptionDto.code``), ``title`` (C8 problem title), ``message`` and
  ``body`` (a verbatim JSON body).
  ``"on": "lookup"`` aims an entry at the next *lookup* request instead (the
  searches a worker reconciles with: C8 search, C7 instance and variable
  queries, PM4 request list), e.g. ``{"status": 403, "on": "lookup"}`` for a
  start-only role; start and lookup entries are consumed independently.
* ``configure(...)`` — standing knobs: ``latency_ms`` before every start,
  ``error_rate`` (the engine's transient error, or ``error_status``),
  ``drop_after_commit_rate`` (drawn from a seeded RNG, so a run is
  reproducible), ``search_lag_ms`` (C8 search shows an instance only once
  it is that old, judged at search time: setting the lag back to 0 makes
  everything visible at once, with no waiting in tests),
  ``token_latency_ms`` (a slow OAuth2 token endpoint; a request waiting out
  the latency is released as soon as the knob is set lower),
  ``capacity_per_s`` (the engine takes that many starts a second, a tenth of
  a second's worth at once; it refuses the rest with ``capacity_status``,
  429 by default, before a scripted fault is drawn: a gateway's rate limit).
  These apply to start requests; ``lookup_error_rate`` is the lookups' own: a
  drawn lookup answers the engine's transient error, 502, or drops the
  connection (a timeout, as a client sees it), each a third of the time, from
  the same seeded RNG. ``snapshot()`` counts lookup faults apart (``lookup_error``, …).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

from worker.local.sandbox.web import JsonDict

DropPoint = Literal["before_commit", "after_commit"]
RequestKind = Literal["start", "lookup"]
_DROP_POINTS = ("before_commit", "after_commit")
_REQUEST_KINDS = ("start", "lookup")
_SCRIPT_KEYS = frozenset({"status", "retry_after", "drop", "latency_ms", "trickle_ms", "code",
                          "title", "message", "body", "on"})


@dataclass(frozen=True)
class Fault:
    """One fault to apply to one start request.

    ``status`` None with ``error`` True means "the engine's own transient error".
    """

    error: bool = False
    status: int | None = None
    retry_after: str | None = None
    drop: DropPoint | None = None
    latency_ms: int = 0
    trickle_ms: int = 0
    code: int | None = None
    title: str | None = None
    message: str | None = None
    body: Any = None
    on: RequestKind = "start"

    @classmethod
    def from_spec(cls, spec: JsonDict) -> Fault:
        """Validate one scripted entry (ValueError names what is wrong)."""
        unknown = set(spec) - _SCRIPT_KEYS
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; use {sorted(_SCRIPT_KEYS)}")
        drop = spec.get("drop")
        if drop is not None and drop not in _DROP_POINTS:
            raise ValueError(f"drop must be one of {_DROP_POINTS}, not {drop!r}")
        status = spec.get("status")
        if status is not None and not (isinstance(status, int) and 400 <= status <= 599):
            raise ValueError(f"status must be an HTTP error status, not {status!r}")
        trickle_ms = spec.get("trickle_ms", 0)
        if not (isinstance(trickle_ms, int) and trickle_ms >= 0):
            raise ValueError(f"trickle_ms must be a whole number >= 0, not {trickle_ms!r}")
        if status is None and drop is None and not spec.get("latency_ms") and not trickle_ms:
            raise ValueError(f"a fault needs status, drop, latency_ms or trickle_ms: {spec!r}")
        if status is not None and drop is not None:
            raise ValueError("a fault is either a status or a drop, not both")
        if drop is not None and trickle_ms:
            raise ValueError("a dropped connection cannot trickle an answer")
        on = spec.get("on", "start")
        if on not in _REQUEST_KINDS:
            raise ValueError(f"on must be one of {_REQUEST_KINDS}, not {on!r}")
        retry_after = spec.get("retry_after")
        return cls(
            error=status is not None,
            status=status,
            retry_after=None if retry_after is None else str(retry_after),
            drop=drop,
            latency_ms=int(spec.get("latency_ms", 0)),
            trickle_ms=trickle_ms,
            code=spec.get("code"),
            title=spec.get("title"),
            message=spec.get("message"),
            body=spec.get("body"),
            on=on,
        )


@dataclass(frozen=True)
class FaultSettings:
    """The standing knobs (what ``configure`` sets)."""

    latency_ms: int = 0
    error_rate: float = 0.0
    error_status: int | None = None
    drop_after_commit_rate: float = 0.0
    search_lag_ms: int = 0
    seed: int | None = None
    token_latency_ms: int = 0
    capacity_per_s: float = 0.0
    capacity_status: int = 429
    lookup_error_rate: float = 0.0


_LOOKUP_FAULTS = (
    Fault(error=True, on="lookup"),
    Fault(error=True, status=502, on="lookup"),
    Fault(drop="before_commit", on="lookup"),
)
"""What a drawn lookup fault is: the engine's "try later", a proxy's 502, no answer at all."""


class FaultKnobs:
    """Decides, per start request, which fault (if any) applies. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._settings = FaultSettings()
        self._rng = random.Random()
        self._script: list[Fault] = []
        self._injected: Counter[str] = Counter()
        self._capacity = 0.0  # tokens of the capacity bucket, refilled at capacity_per_s
        self._capacity_at = time.monotonic()

    def configure(
        self,
        latency_ms: int = 0,
        error_rate: float = 0.0,
        error_status: int | None = None,
        drop_after_commit_rate: float = 0.0,
        search_lag_ms: int = 0,
        seed: int | None = None,
        token_latency_ms: int = 0,
        capacity_per_s: float = 0.0,
        capacity_status: int = 429,
        lookup_error_rate: float = 0.0,
    ) -> FaultSettings:
        """Replace every standing knob (omitted ones go back to off).

        ``seed`` None seeds the RNG from the OS: pass a seed for reproducible runs.
        """
        for name, rate in (("error_rate", error_rate),
                           ("drop_after_commit_rate", drop_after_commit_rate),
                           ("lookup_error_rate", lookup_error_rate)):
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], not {rate!r}")
        if latency_ms < 0 or search_lag_ms < 0 or token_latency_ms < 0:
            raise ValueError("latency_ms, search_lag_ms and token_latency_ms must be >= 0")
        if error_status is not None and not 400 <= error_status <= 599:
            raise ValueError(f"error_status must be an HTTP error status, not {error_status!r}")
        if capacity_per_s < 0 or not 400 <= capacity_status <= 599:
            raise ValueError("capacity_per_s must be >= 0 and capacity_status an error status")
        settings = FaultSettings(latency_ms, error_rate, error_status,
                                 drop_after_commit_rate, search_lag_ms, seed, token_latency_ms,
                                 float(capacity_per_s), capacity_status, lookup_error_rate)
        with self._changed:
            self._settings = settings
            self._rng = random.Random(seed)
            self._capacity, self._capacity_at = _burst(capacity_per_s), time.monotonic()
            self._changed.notify_all()
        return settings

    def over_capacity(self) -> int | None:
        """The status refusing this start when the engine's capacity is used up, else None."""
        with self._lock:
            rate = self._settings.capacity_per_s
            if not rate:
                return None
            now = time.monotonic()
            burst = _burst(rate)
            self._capacity = min(burst, self._capacity + (now - self._capacity_at) * rate)
            self._capacity_at = now
            if self._capacity >= 1:
                self._capacity -= 1
                return None
            self._injected["over_capacity"] += 1
            return self._settings.capacity_status

    def script(self, faults: list[JsonDict]) -> None:
        """Queue one-shot faults (appended after any still pending)."""
        parsed = [Fault.from_spec(spec) for spec in faults]
        with self._lock:
            self._script.extend(parsed)

    @property
    def settings(self) -> FaultSettings:
        with self._lock:
            return self._settings

    @property
    def search_lag_s(self) -> float:
        return self.settings.search_lag_ms / 1000.0

    def pending(self) -> int:
        """Scripted faults not consumed yet."""
        with self._lock:
            return len(self._script)

    def apply_latency(self) -> None:
        """Hold a start request for the standing latency, called before it is handled; like
        the token latency, judged against the knob's current value (lowering it releases)."""
        if not self.settings.latency_ms:
            return
        self._count("latency")
        started = time.monotonic()
        with self._changed:
            while True:
                left = self._settings.latency_ms / 1000.0 - (time.monotonic() - started)
                if left <= 0:
                    return
                self._changed.wait(left)

    def apply_token_latency(self) -> None:
        """Hold a token request for ``token_latency_ms``, judged against the knob's current
        value: setting it lower (or resetting) releases a held request at once."""
        started = time.monotonic()
        with self._changed:
            while True:
                left = self._settings.token_latency_ms / 1000.0 - (time.monotonic() - started)
                if left <= 0:
                    return
                self._changed.wait(left)

    def next_fault(self, on: RequestKind = "start") -> Fault | None:
        """The fault for this request: the next scripted one for its kind, else a draw.

        Starts draw from the start knobs, lookups from ``lookup_error_rate``.
        """
        with self._lock:
            index = next((i for i, f in enumerate(self._script) if f.on == on), None)
            if index is not None:
                fault: Fault | None = self._script.pop(index)
            else:
                fault = self._draw() if on == "start" else self._draw_lookup()
        if fault is not None:
            self._count(_kind(fault))
        return fault

    def _draw(self) -> Fault | None:
        settings = self._settings
        if settings.error_rate and self._rng.random() < settings.error_rate:
            return Fault(error=True, status=settings.error_status)
        if settings.drop_after_commit_rate and self._rng.random() < settings.drop_after_commit_rate:
            return Fault(drop="after_commit")
        return None

    def _draw_lookup(self) -> Fault | None:
        rate = self._settings.lookup_error_rate
        if rate and self._rng.random() < rate:
            return self._rng.choice(_LOOKUP_FAULTS)
        return None

    def _count(self, kind: str) -> None:
        with self._lock:
            self._injected[kind] += 1

    def snapshot(self) -> JsonDict:
        """Settings, pending script length and faults injected so far, as JSON."""
        with self._lock:
            return {
                "settings": asdict(self._settings),
                "scripted_pending": len(self._script),
                "injected": dict(self._injected),
            }

    def reset(self) -> None:
        """Knobs off, script emptied, counts zeroed."""
        with self._changed:
            self._settings = FaultSettings()
            self._rng = random.Random()
            self._script.clear()
            self._injected.clear()
            self._changed.notify_all()


def _kind(fault: Fault) -> str:
    """How ``snapshot()["injected"]`` counts it; lookup faults as ``lookup_<kind>``."""
    if fault.on == "lookup":
        return f"lookup_{_kind(replace(fault, on='start'))}"
    if fault.drop is not None:
        return f"drop_{fault.drop}"
    if fault.error:
        return "error"
    if fault.trickle_ms:
        return "trickle"
    return "latency"


def _burst(rate: float) -> float:
    """A tenth of a second's worth of starts, at least one."""
    return max(1.0, rate / 10.0)
