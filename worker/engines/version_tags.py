"""Camunda 8 version tags: which definition key a (process id, version tag) names.

The create call has no version tag field, so a job pinned with
``options.version_tag`` is started by the definition key found with
``POST /v2/process-definitions/search`` (8.8+: ``filter.versionTag``, newest
version first when a tag was deployed more than once). Keys are cached per
adapter for `CACHE_SECONDS`, so a steady stream of jobs costs one search a
minute, not one per start; a newer deployment with the same tag is picked up
within that time.

A tag that matches nothing fails the job ``permanent`` (the search is
eventually consistent: a definition deployed a moment ago may not be found
yet; the message says so), and so does an answer without a definition key.
A failed search is the engine's classified error, retried like a start's;
nothing has been sent to start an instance by then.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from worker.engines.base import StartRequest
from worker.errors import PermanentError

PATH = "/v2/process-definitions/search"
CACHE_SECONDS = 60.0
LONG_KEY = re.compile(r"^-?[0-9]{1,24}$")

Fetch = Callable[[StartRequest], Any]
Pin = tuple[str, str, str | None]
"""(process id, version tag, tenant id)."""


def search_request(process_id: str, version_tag: str, tenant_id: str | None) -> StartRequest:
    """The search for the newest definition of ``process_id`` carrying ``version_tag``.

    ``processDefinitionId`` is a string filter property: its ``$eq`` form is
    the one both the 8.8 and the 8.9 schema accept (8.8 types the property as
    an object). No ``page``: the search query schema admits only ``filter``
    and ``sort``, and the first item is all that is needed.
    """
    criteria: dict[str, Any] = {
        "processDefinitionId": {"$eq": process_id},
        "versionTag": version_tag,
    }
    if tenant_id is not None:
        criteria["tenantId"] = tenant_id
    body = {"filter": criteria, "sort": [{"field": "version", "order": "DESC"}]}
    return StartRequest("POST", PATH, json=body)


class DefinitionKeys:
    """Definition keys by (process id, version tag, tenant), looked up once a minute."""

    def __init__(
        self, fetch: Fetch, ttl: float = CACHE_SECONDS, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._fetch = fetch
        self.ttl = ttl
        """Seconds a key found is used before it is looked up again."""
        self._clock = clock
        self._lock = threading.Lock()
        self._keys: dict[Pin, tuple[str, float]] = {}

    def key(self, process_id: str, version_tag: str, tenant_id: str | None) -> str:
        pin = (process_id, version_tag, tenant_id)
        with self._lock:
            cached = self._keys.get(pin)
        if cached is not None and self._clock() - cached[1] < self.ttl:
            return cached[0]
        key = self._search(pin)
        with self._lock:
            self._keys[pin] = (key, self._clock())
        return key

    def forget(self, process_id: str, version_tag: str, tenant_id: str | None) -> None:
        """Drop a key the engine no longer knows (a start by it answered 404)."""
        with self._lock:
            self._keys.pop((process_id, version_tag, tenant_id), None)

    def _search(self, pin: Pin) -> str:
        process_id, version_tag, tenant_id = pin
        answer = self._fetch(search_request(process_id, version_tag, tenant_id))
        items = answer.get("items") if isinstance(answer, dict) else None
        if not isinstance(items, list):
            raise PermanentError(
                "camunda8 process definition search answered without a list of items",
                engine_error=answer,
            )
        if not items:
            scope = f" of tenant {tenant_id!r}" if tenant_id is not None else ""
            raise PermanentError(
                f"camunda8: no process definition {process_id!r}{scope} has version tag "
                f"{version_tag!r} (a definition deployed moments ago may not be searchable yet)"
            )
        first = items[0]
        key = str(first.get("processDefinitionKey")) if isinstance(first, dict) else ""
        if not LONG_KEY.match(key):
            raise PermanentError(
                "camunda8 process definition search answered without a definition key",
                engine_error=answer,
            )
        return key
