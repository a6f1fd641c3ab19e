"""Several Redis commands and Lua scripts in one round trip.

A job's last step touches three owners (ledger, results, in-flight
registry); as separate calls that is three round trips on the hot path, and
each costs more in the client than in Redis. `Batch` sends them together.

redis-py runs a registered script inside a pipeline only after a SCRIPT
EXISTS round trip of its own, so a batch sends scripts as plain EVALSHA. If
Redis lost its scripts (a restart without them), the batch loads them and
runs again, keeping the first answer of every step that had one: only steps
that are idempotent belong in a batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import redis
from redis.commands.core import Script
from redis.exceptions import NoScriptError

Step = Callable[[Any], object]
"""Adds exactly one command to a pipeline."""

T = TypeVar("T")
COMMAND_BYTES = 4 * 1024 * 1024


def by_size(
    values: Sequence[T], size: Callable[[T], int], limit: int = COMMAND_BYTES
) -> Iterator[Sequence[T]]:
    """``values`` in runs of about ``limit`` bytes at most (one value at least), in order.

    For variadic commands (``LPUSH key v1 v2 ...``, ``HSET key f1 v1 ...``):
    Redis reads a whole command before it runs it, so a thousand 1 MB jobs
    go as several commands in the same pipeline, not as one of a gigabyte.
    """
    start, total = 0, 0
    for index, value in enumerate(values):
        length = size(value)
        if total and total + length > limit:
            yield values[start:index]
            start, total = index, 0
        total += length
    if start < len(values):
        yield values[start:]


@dataclass(frozen=True)
class ScriptCall:
    """One run of a Lua script: what a module hands out instead of running it."""

    script: Script
    keys: Sequence[str]
    args: Sequence[Any]

    def run(self) -> Any:
        """On its own: one EVALSHA (redis-py loads the script when Redis lost it)."""
        return self.script(keys=list(self.keys), args=list(self.args))


@dataclass
class Batch:
    """Commands collected in order; `execute` returns their answers in the same order."""

    client: redis.Redis
    _steps: list[Step] = field(default_factory=list)
    _scripts: list[Script] = field(default_factory=list)

    def script(self, call: ScriptCall) -> int:
        """Queue a script run; returns its index in `execute`'s answers."""
        self._scripts.append(call.script)
        keys, args = list(call.keys), list(call.args)
        return self.command(lambda pipe: pipe.evalsha(call.script.sha, len(keys), *keys, *args))

    def command(self, step: Step) -> int:
        """Queue one plain command, e.g. ``lambda p: p.hdel(key, field)``."""
        self._steps.append(step)
        return len(self._steps) - 1

    def execute(self) -> list[Any]:
        answers = self._run()
        if any(isinstance(a, NoScriptError) for a in answers):
            for script in {s.sha: s for s in self._scripts}.values():
                self.client.script_load(script.script)
            again = self._run()
            answers = [
                b if isinstance(a, NoScriptError) else a
                for a, b in zip(answers, again, strict=True)
            ]
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers

    def _run(self) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for step in self._steps:
            step(pipe)
        return list(pipe.execute(raise_on_error=False))
