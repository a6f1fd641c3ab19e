"""Thread-safe state of one emulated engine: its instances and its request counters.

Every engine stores instances in the same record shape, so tests can check any
engine the same way::

    {"id": "2251799813685249", "process": "order-process", "version": 3,
     "variables": {...}, "business_key": None, "tenant_id": "<default>",
     "tags": [], "state": "ACTIVE", "created_at": "2026-…Z", ...engine extras}
"""

from __future__ import annotations

import copy
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from worker.local.sandbox.web import JsonDict, iso_millis, utc_now

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")
_CREATED = "_created"  # monotonic creation time; private, for search lag


class InstanceStore:
    """Created instances, in creation order; readers always get deep copies."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._records: list[JsonDict] = []
        self._sequence = 0

    def next_sequence(self) -> int:
        """A number never handed out before, not even across ``clear()``.

        Ids keep growing like a real engine's, so a worker's ledger never sees
        one id twice across tests that share a sandbox.
        """
        with self._lock:
            self._sequence += 1
            return self._sequence

    def add(self, record: JsonDict) -> JsonDict:
        """Store ``record`` (with ``created_at``/``state`` defaults); returns a copy."""
        stored = copy.deepcopy(record)
        stored.setdefault("state", "ACTIVE")
        stored.setdefault("created_at", iso_millis(utc_now()))
        stored[_CREATED] = time.monotonic()
        with self._changed:
            self._records.append(stored)
            self._changed.notify_all()
        return _public(stored)

    def all(self) -> list[JsonDict]:
        with self._lock:
            return [_public(record) for record in self._records]

    def find(
        self, predicate: Callable[[JsonDict], bool], *, min_age_s: float = 0.0
    ) -> list[JsonDict]:
        """Records matching ``predicate`` that were created at least ``min_age_s`` ago.

        ``predicate`` reads the stored records themselves and must not change them:
        copying every record for every search made a large store's lookups the
        slowest part of the long fault run. Only matches are copied.
        """
        cutoff = time.monotonic() - min_age_s
        with self._lock:
            return [
                _public(record)
                for record in self._records
                if record[_CREATED] <= cutoff and predicate(record)
            ]

    def update(self, instance_id: str, **changes: Any) -> JsonDict:
        """Change fields of one instance (e.g. ``state="COMPLETED"``); KeyError if unknown."""
        with self._lock:
            for record in self._records:
                if record["id"] == instance_id:
                    record.update(copy.deepcopy(changes))
                    return _public(record)
        raise KeyError(instance_id)

    def count(self) -> int:
        with self._lock:
            return len(self._records)

    def wait_for_count(self, count: int, timeout: float) -> bool:
        """Block until at least ``count`` instances exist; False on timeout.

        For tests of ambiguous outcomes: the client gave up, the server still commits.
        """
        with self._changed:
            return self._changed.wait_for(lambda: len(self._records) >= count, timeout)

    def clear(self) -> None:
        with self._lock:
            self._records.clear()


def _public(record: JsonDict) -> JsonDict:
    return {key: copy.deepcopy(value) for key, value in record.items() if key != _CREATED}


class RequestCounters:
    """What the sandbox saw: requests by ``"METHOD /path-template"`` and by kind."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._routes: Counter[str] = Counter()
        self._kinds: Counter[str] = Counter()

    def request(self, method: str, template: str) -> None:
        with self._lock:
            self._routes[f"{method} {template}"] += 1

    def kind(self, name: str) -> None:
        """Count one request of a kind: ``start``, ``lookup``, ``token``, ``unauthorized``, …"""
        with self._changed:
            self._kinds[name] += 1
            self._changed.notify_all()

    def wait_for_kind(self, name: str, count: int, timeout: float) -> bool:
        """Block until ``count`` requests of kind ``name`` arrived; False on timeout.

        Counted when a request arrives, before any latency knob holds it, so a
        test can act while the request is held.
        """
        with self._changed:
            return self._changed.wait_for(lambda: self._kinds[name] >= count, timeout)

    def snapshot(self) -> JsonDict:
        with self._lock:
            return {
                "requests": dict(self._routes),
                "start_requests": self._kinds["start"],
                "lookup_requests": self._kinds["lookup"],
                "token_requests": self._kinds["token"],
                "unauthorized": self._kinds["unauthorized"],
            }

    def clear(self) -> None:
        with self._lock:
            self._routes.clear()
            self._kinds.clear()


class RequestLog:
    """The last requests to the engine's API, with their trace context headers.

    Only ``traceparent`` and ``tracestate`` are kept (never credentials), so
    a test can follow a producer's trace id into the engine's request.
    """

    HEADERS = ("traceparent", "tracestate")

    def __init__(self, size: int = 1000) -> None:
        self._lock = threading.Lock()
        self._entries: deque[JsonDict] = deque(maxlen=size)

    def add(self, kind: str, method: str, path: str, headers: Any) -> None:
        entry: JsonDict = {"kind": kind, "method": method, "path": path}
        for name in self.HEADERS:
            entry[name] = headers.get(name)
        with self._lock:
            self._entries.append(entry)

    def entries(self) -> list[JsonDict]:
        with self._lock:
            return [dict(entry) for entry in self._entries]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


class Registry(Generic[K, V]):
    """Deployed definitions (or users) by key, safe to read while tests deploy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: dict[K, V] = {}

    def put(self, key: K, value: V) -> V:
        with self._lock:
            self._items[key] = value
        return value

    def insert(self, make: Callable[[list[V]], tuple[K, V]]) -> V:
        """Build an entry from the current values and store it, atomically (versioning)."""
        with self._lock:
            key, value = make(list(self._items.values()))
            self._items[key] = value
        return value

    def get(self, key: K) -> V | None:
        with self._lock:
            return self._items.get(key)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._items.values())
