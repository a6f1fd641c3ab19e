"""The retry policy, as data (tenacity strategies), in one place.

Two tiers:

* **in-call**: a few quick attempts inside one task run for blips and
  backpressure (429/503/RESOURCE_EXHAUSTED, refused connections):
  exponential backoff with full jitter, capped, and never shorter than the
  engine's ``Retry-After``.
* **Celery**: when the in-call budget is spent, or ``Retry-After`` is longer
  than the in-call cap, the task is re-queued with a countdown computed by
  `RetryPolicy.countdown`, so a long outage holds no worker thread.

Only `TransientError` is retried; everything else decides the job at once.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from worker.errors import TransientError

T = TypeVar("T")


class RetryAfterTooLong(TransientError):
    """The engine asked for a pause longer than an in-call wait may take."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    initial: float = 0.2
    cap: float = 5.0
    task_max_retries: int = 8
    task_backoff_max: float = 600.0
    sleep: Callable[[float], None] = time.sleep

    def _wait(self, state: RetryCallState) -> float:
        jitter = wait_random_exponential(multiplier=self.initial, max=self.cap)(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None) or 0.0
        if retry_after > self.cap:
            raise RetryAfterTooLong(
                str(error), http_status=getattr(error, "http_status", None), retry_after=retry_after
            ) from error
        return max(jitter, retry_after)

    def call(
        self, fn: Callable[[], T], on_retry: Callable[[TransientError], None] | None = None
    ) -> T:
        """Run ``fn`` with in-call retries; re-raises the last `TransientError`.

        The first attempt runs outside tenacity (nearly every call ends there,
        and tenacity's per-call set-up was 4 % of a start); a transient first
        error is replayed into tenacity as its attempt 1, so the waits, the
        callbacks and the stop are the ones tenacity gives a failing attempt 1.
        """
        try:
            return fn()
        except TransientError as exc:
            first: TransientError | None = exc

        def replayed() -> T:
            nonlocal first
            if first is not None:
                error, first = first, None
                raise error
            return fn()

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if on_retry and isinstance(error, TransientError):
                on_retry(error)

        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            stop=stop_after_attempt(self.attempts),
            wait=self._wait,
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(replayed)

    def countdown(self, retries_done: int, retry_after: float | None = None) -> float:
        """Seconds before the Celery-level retry number ``retries_done + 1``.

        Never over ``task_backoff_max``, not even for the engine's ``Retry-After``:
        an absurd one (``300000000000``) would overflow the retry's ETA, and Celery
        drops a retry it cannot publish.
        """
        ceiling = min(self.task_backoff_max, self.cap * 2.0 ** min(retries_done + 1, 64))
        return self.bounded(max(retry_after or 0.0, random.uniform(ceiling / 2, ceiling)))

    def bounded(self, countdown: float) -> float:
        """``countdown`` capped at ``task_backoff_max`` (every countdown goes through here)."""
        return min(countdown, self.task_backoff_max)
