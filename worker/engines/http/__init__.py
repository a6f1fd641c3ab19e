"""HTTP plumbing shared by every engine: the pooled session, Retry-After, transport errors.

* `worker.engines.http.session`: the pooled session, its adapter, and
  `exchange`, which sends a prepared request straight to the adapter's
  urllib3 pool when requests adds nothing to it (no proxy, no mock).
* `worker.engines.http.deadline`: the per-call deadline over every read of
  an answer, and when a request started to go out.
* `worker.engines.http.errors`: transient, ambiguous or permanent, by whether
  the engine could have received the request.
"""

from __future__ import annotations

import email.utils
import re
import time
from datetime import UTC, datetime

from worker.engines.http.deadline import CallDeadlineExceeded, CallState, call_deadline
from worker.engines.http.errors import tls_refusal, transport_error
from worker.engines.http.session import (
    USER_AGENT,
    EngineAdapter,
    exchange,
    make_session,
    prepare_direct,
)

__all__ = [
    "USER_AGENT",
    "CallDeadlineExceeded",
    "CallState",
    "EngineAdapter",
    "call_deadline",
    "exchange",
    "make_session",
    "parse_retry_after",
    "prepare_direct",
    "tls_refusal",
    "transport_error",
]


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date."""
    if not value:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]+", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return max(0.0, (when - current).total_seconds())
