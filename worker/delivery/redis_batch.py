"""Several Redis commands and Lua scripts in one round trip, on a connection of the thread's own.

A job touches three owners (ledger, results, in-flight registry) in a few
steps; each step is one `Batch`: its commands packed by hiredis and written
at once, the answers read back in order. A profile of one start found
redis-py's pipeline and pool machinery (per-command Python encoding,
observability hooks, a ``getpid``/``poll`` per checkout) costing more client
CPU than Redis spent on the commands, so a batch skips them: it writes on a
connection kept for the calling thread (made by the client's own pool, so the
same URL, TLS, Sentinel and timeouts; dropped with the thread or after a fork),
and keeps redis-py's retry and disconnect handling (the connection's ``retry``,
as a pipeline would). Like a pipeline that is retried, a batch whose answer
was lost is sent again: only idempotent steps, or ones that carry a call token
(the ledger's claim), belong in one.

A batch sends scripts as plain EVALSHA. If Redis lost its scripts (a restart
without them), the batch loads them and runs again, keeping the first answer
of every step that had one.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import ssl
import struct
import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import hiredis
import redis
from redis.commands.core import Script
from redis.connection import ConnectionPool
from redis.exceptions import NoScriptError, ResponseError

Command = tuple[Any, ...]
"""One Redis command as its words, e.g. ``("HDEL", key, field)``."""

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
        """On its own: one EVALSHA (the script is loaded first when Redis lost it)."""
        batch = Batch(cast(redis.Redis, self.script.registered_client))
        batch.script(self)
        return batch.execute()[0]


@dataclass
class Batch:
    """Commands collected in order; `execute` returns their answers in the same order."""

    client: redis.Redis
    _commands: list[Command] = field(default_factory=list)
    _scripts: list[Script] = field(default_factory=list)

    def script(self, call: ScriptCall) -> int:
        """Queue a script run; returns its index in `execute`'s answers."""
        self._scripts.append(call.script)
        keys = call.keys
        return self.command("EVALSHA", call.script.sha, len(keys), *keys, *call.args)

    def command(self, *words: Any) -> int:
        """Queue one plain command, e.g. ``batch.command("HDEL", key, field)``."""
        self._commands.append(words)
        return len(self._commands) - 1

    def execute(self) -> list[Any]:
        answers = round_trip(self.client, self._commands)
        if any(isinstance(a, NoScriptError) for a in answers):
            for script in {s.sha: s for s in self._scripts}.values():
                self.client.script_load(script.script)
            again = round_trip(self.client, self._commands)
            answers = [
                b if isinstance(a, NoScriptError) else a
                for a, b in zip(answers, again, strict=True)
            ]
        for answer in answers:
            if isinstance(answer, Exception):
                raise answer
        return answers


def round_trip(client: redis.Redis, commands: Sequence[Command]) -> list[Any]:
    """Write ``commands`` at once and read every answer (an error answer is returned, not
    raised); a dropped connection is reconnected and the whole batch resent (as redis-py
    retries a pipeline: the connection's ``retry``, plus once for a kept idle connection)."""
    connection = _own_connection(client.connection_pool)
    try:  # hiredis encodes str, bytes, int and float in C (redis-py's packer: in Python)
        packed = b"".join([hiredis.pack_command(command) for command in commands])
    except TypeError as exc:
        raise redis.DataError(f"a command holds a value Redis cannot take: {exc}") from None

    def once() -> list[Any]:
        try:
            if not connection.is_connected:
                # connect() itself: a Sentinel-managed connection asks the sentinels
                # there for the master (sending on a closed one would not).
                connection.connect()
                kernel_timeouts(getattr(connection, "_sock", None))
            connection.send_packed_command([packed])
            answers: list[Any] = []
            for _ in commands:
                try:
                    answers.append(connection.read_response())
                except ResponseError as exc:
                    answers.append(exc)
            return answers
        except redis.ConnectionError as exc:
            connection.disconnect()  # answers may be left unread: never reuse it so
            if _timed_out_in_kernel(exc):
                raise redis.TimeoutError("Timeout reading from or writing to socket") from None
            raise
        except BaseException:
            connection.disconnect()
            raise

    def with_retries() -> list[Any]:
        return list(connection.retry.call_with_retry(once, lambda _e: connection.disconnect()))

    reused = connection.is_connected
    try:
        return with_retries()
    except redis.ConnectionError:
        if not reused:
            raise
        # A kept connection the server closed while it was idle (a restart, a timeout, a
        # kill): what a pool's check at checkout would have found, so reconnect once.
        return with_retries()


def kernel_timeouts(sock: socket.socket | None) -> None:
    """The socket's timeout kept by the kernel (``SO_RCVTIMEO``/``SO_SNDTIMEO``), the
    socket itself made blocking.

    Python polls before every send and receive on a socket with a timeout, and
    gives up the GIL for each poll as for the I/O: twice the syscalls and GIL
    hand-offs, which a worker's busy threads pay for in context switches. The
    kernel's timeouts bound each send and receive the same way (a wait that
    runs out fails with EAGAIN, raised as the timeout it is). TLS sockets keep
    Python's timeout (OpenSSL reads ahead), as do sockets without one.
    """
    if sock is None or isinstance(sock, ssl.SSLSocket) or sock.family not in _PLAIN_FAMILIES:
        return
    timeout = sock.gettimeout()
    if timeout is None or timeout <= 0:
        return
    seconds = int(timeout)
    value = struct.pack("ll", seconds, int((timeout - seconds) * 1_000_000) or 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)
    sock.settimeout(None)


_PLAIN_FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)


def _timed_out_in_kernel(exc: BaseException) -> bool:
    """redis-py's ConnectionError for a send or receive the kernel's timeout ended."""
    cause = exc.__context__
    return isinstance(cause, OSError) and cause.errno in (errno.EAGAIN, errno.EWOULDBLOCK)


class _Held(weakref.WeakKeyDictionary[ConnectionPool, Any]):
    """One thread's connections by pool; closed when the thread ends and drops this."""

    def __del__(self) -> None:
        for connection in list(self.values()):
            with contextlib.suppress(Exception):
                connection.disconnect()


_threads = threading.local()


def _own_connection(pool: ConnectionPool) -> Any:  # redis-py's connections are untyped
    """The calling thread's connection made by ``pool`` (one per pool and thread).

    Kept in the thread's locals and dropped with the pool, so it is closed when
    either ends; made anew in a forked child, which must not share its parent's socket.
    """
    pid = os.getpid()
    held: _Held | None = getattr(_threads, "held", None)
    if held is None or _threads.pid != pid:
        _threads.pid, _threads.held = pid, (held := _Held())
    connection = held.get(pool)
    if connection is None:
        connection = held[pool] = pool.make_connection()
    return connection
