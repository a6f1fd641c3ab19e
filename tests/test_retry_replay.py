"""`RetryPolicy.call` runs the first attempt outside tenacity and replays a transient one.

Every wait is drawn at the top of its window (``random.uniform`` patched), so
the waits name the attempt numbers tenacity saw: a replay that is off by one
(the replayed error counted as attempt 2, or attempt 1 run twice) shifts the
waits, the number of calls or the callbacks, and these tests fail.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from tenacity import RetryCallState, Retrying, retry_if_exception_type, stop_after_attempt

from worker.errors import PermanentError, TransientError
from worker.retry import RetryAfterTooLong, RetryPolicy

Outcome = tuple[str, int, list[float], list[str]]


@pytest.fixture(autouse=True)
def top_of_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(random, "uniform", lambda _low, high: high)


def tenacity_alone(
    policy: RetryPolicy, fn: Callable[[], str], on_retry: Callable[[TransientError], None]
) -> str:
    """`RetryPolicy.call` before issue 19: every attempt, the first too, inside tenacity."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, TransientError):
            on_retry(error)

    retrying = Retrying(
        retry=retry_if_exception_type(TransientError),
        stop=stop_after_attempt(policy.attempts),
        wait=policy._wait,
        sleep=policy.sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)


def run(
    call: Callable[[RetryPolicy, Callable[[], str], Callable[[TransientError], None]], str],
    attempts: int,
    errors: list[Exception],
) -> Outcome:
    """(result or raised error, calls of fn, waits, errors passed to on_retry)."""
    sleeps: list[float] = []
    retried: list[str] = []
    policy = RetryPolicy(attempts=attempts, initial=0.1, cap=1.0, sleep=sleeps.append)
    pending, calls = list(errors), [0]

    def fn() -> str:
        calls[0] += 1
        if pending:
            raise pending.pop(0)
        return "ok"

    try:
        got = call(policy, fn, lambda error: retried.append(str(error)))
    except Exception as exc:
        got = f"{type(exc).__name__}: {exc}"
    return got, calls[0], sleeps, retried


def ours(
    policy: RetryPolicy, fn: Callable[[], str], on_retry: Callable[[TransientError], None]
) -> str:
    return policy.call(fn, on_retry)


def transient(n: int) -> list[Exception]:
    return [TransientError(f"e{i}") for i in range(n)]


@pytest.mark.parametrize("attempts", [1, 2, 4, 6])
@pytest.mark.parametrize(
    "errors",
    [
        [],
        transient(1),
        transient(3),
        transient(8),
        [TransientError("slow", retry_after=0.75), *transient(2)],
        [*transient(2), TransientError("slow", retry_after=0.3)],
        [TransientError("later", retry_after=60)],
        [*transient(1), TransientError("later", retry_after=60)],
        [PermanentError("no")],
        [*transient(2), PermanentError("no")],
    ],
    ids=lambda errors: "+".join(str(e) for e in errors) or "none",
)
def test_the_same_calls_waits_and_callbacks_as_tenacity_alone(
    attempts: int, errors: list[Exception]
) -> None:
    assert run(ours, attempts, errors) == run(tenacity_alone, attempts, errors)


def test_a_failing_first_attempt_is_tenacitys_attempt_1() -> None:
    """The numbers themselves, so both implementations cannot be wrong together."""
    assert run(ours, 4, transient(3)) == ("ok", 4, [0.1, 0.2, 0.4], ["e0", "e1", "e2"])
    assert run(ours, 4, transient(9)) == (
        "TransientError: e3", 4, [0.1, 0.2, 0.4], ["e0", "e1", "e2"]
    )
    assert run(ours, 1, transient(1)) == ("TransientError: e0", 1, [], [])
    assert run(ours, 2, [TransientError("slow", retry_after=0.75)]) == ("ok", 2, [0.75], ["slow"])


def test_a_retry_after_over_the_cap_on_the_first_attempt_hands_over_at_once() -> None:
    got, calls, sleeps, retried = run(ours, 4, [TransientError("later", retry_after=60)])
    assert (got, calls, sleeps, retried) == ("RetryAfterTooLong: later", 1, [], [])


def test_the_replayed_error_is_the_one_raised() -> None:
    first = TransientError("only one attempt")
    policy = RetryPolicy(attempts=1, sleep=lambda _s: None)

    def fn() -> str:
        raise first

    with pytest.raises(TransientError) as caught:
        policy.call(fn)
    assert caught.value is first and not isinstance(caught.value, RetryAfterTooLong)
