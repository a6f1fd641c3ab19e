"""The retry policy: which errors retry, how long it waits, when Celery takes over."""

from __future__ import annotations

import pytest

from worker.errors import AmbiguousError, PermanentError, TransientError
from worker.retry import RetryAfterTooLong, RetryPolicy


def policy(**kw: object) -> tuple[RetryPolicy, list[float]]:
    sleeps: list[float] = []
    return RetryPolicy(sleep=sleeps.append, **kw), sleeps  # type: ignore[arg-type]


def flaky(errors: list[Exception], value: str = "ok"):  # type: ignore[no-untyped-def]
    calls = {"n": 0}

    def fn() -> str:
        calls["n"] += 1
        if errors:
            raise errors.pop(0)
        return value

    return fn, calls


def test_transient_errors_are_retried_until_success() -> None:
    p, sleeps = policy(attempts=4, initial=0.1, cap=1.0)
    fn, calls = flaky([TransientError("a"), TransientError("b")])
    assert p.call(fn) == "ok"
    assert calls["n"] == 3 and len(sleeps) == 2
    assert all(0 <= s <= 1.0 for s in sleeps)


def test_retry_after_is_a_floor() -> None:
    p, sleeps = policy(attempts=3, initial=0.01, cap=5.0)
    fn, _ = flaky([TransientError("slow down", retry_after=2.5)])
    p.call(fn)
    assert sleeps == [pytest.approx(2.5, abs=0.05)] or sleeps[0] >= 2.5


def test_retry_after_longer_than_the_cap_hands_over_to_celery() -> None:
    p, sleeps = policy(attempts=5, cap=1.0)
    fn, calls = flaky([TransientError("later", retry_after=60)])
    with pytest.raises(RetryAfterTooLong) as caught:
        p.call(fn)
    assert caught.value.retry_after == 60 and calls["n"] == 1 and sleeps == []


def test_attempts_are_bounded_and_the_last_error_is_raised() -> None:
    p, sleeps = policy(attempts=3)
    fn, calls = flaky([TransientError(str(i)) for i in range(10)])
    with pytest.raises(TransientError, match="2"):
        p.call(fn)
    assert calls["n"] == 3 and len(sleeps) == 2


@pytest.mark.parametrize("error", [PermanentError("no"), AmbiguousError("maybe")])
def test_other_errors_are_never_retried_in_call(error: Exception) -> None:
    p, sleeps = policy()
    fn, calls = flaky([error])
    with pytest.raises(type(error)):
        p.call(fn)
    assert calls["n"] == 1 and sleeps == []


def test_celery_countdown_grows_with_jitter_and_is_capped() -> None:
    p, _ = policy(cap=1.0, task_backoff_max=30.0)
    for retries in range(12):
        value = p.countdown(retries)
        ceiling = min(30.0, 2 ** (retries + 1))
        assert ceiling / 2 <= value <= ceiling
    assert p.countdown(0, retry_after=25) == 25  # Retry-After is a floor, up to the cap
    assert p.countdown(0, retry_after=45) == 30


@pytest.mark.parametrize("retry_after", [300_000_000_000.0, float("inf"), 601.0])
def test_every_countdown_is_capped_even_an_absurd_retry_after(retry_after: float) -> None:
    """`Retry-After: 300000000000` once became Celery's countdown: the retry's ETA
    overflowed, Celery rejected the message, and the job was silently dropped."""
    p, _ = policy(cap=1.0, task_backoff_max=600.0)
    assert p.countdown(0, retry_after=retry_after) == 600.0
    assert p.countdown(3, retry_after=retry_after) == 600.0


def test_a_huge_retry_count_does_not_overflow_the_backoff() -> None:
    p, _ = policy(cap=5.0, task_backoff_max=600.0)
    assert 300.0 <= p.countdown(5000) <= 600.0
