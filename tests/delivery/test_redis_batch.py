"""`Batch`: steps in order, one round trip, scripts reloaded when Redis lost them, and a
connection of the thread's own that survives drops, forks and ends with its thread."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.sentinel import MASTER_NAME, SentinelSet
from tests.support.waiting import wait_until
from worker.broker.sentinel import master_client
from worker.delivery import redis_batch
from worker.delivery.redis_batch import Batch, ScriptCall

INCR_BY_ARG = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_answers_come_back_in_step_order(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(INCR_BY_ARG)
    ScriptCall(script, ["warm"], [1]).run()
    batch = Batch(redis_client)
    first = batch.script(ScriptCall(script, ["n"], [5]))
    plain = batch.command("GET", "n")
    second = batch.script(ScriptCall(script, ["n"], [2]))
    answers = batch.execute()
    assert (answers[first], answers[plain], answers[second]) == (5, "5", 7)


def test_one_round_trip_even_with_scripts(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(INCR_BY_ARG)
    ScriptCall(script, ["warm"], [1]).run()  # loaded once, as a worker's first job would
    before = redis_client.info("stats")["total_commands_processed"]
    batch = Batch(redis_client)
    batch.script(ScriptCall(script, ["a"], [1]))
    batch.command("SET", "b", "1")
    batch.execute()
    after = redis_client.info("stats")["total_commands_processed"]
    # EVALSHA + INCRBY inside it + SET + the first INFO: no SCRIPT EXISTS, no retries
    assert after - before == 4


def test_scripts_lost_by_redis_are_loaded_and_only_failed_steps_take_the_rerun(
    redis_client: redis.Redis,
) -> None:
    script = redis_client.register_script(INCR_BY_ARG)
    ScriptCall(script, ["warm"], [1]).run()
    redis_client.script_flush()  # as after a restart without its scripts
    batch = Batch(redis_client)
    plain = batch.command("INCR", "plain")
    scripted = batch.script(ScriptCall(script, ["scripted"], [3]))
    answers = batch.execute()
    assert answers[scripted] == 3
    # the plain step ran twice (steps must be idempotent), its first answer is kept
    assert answers[plain] == 1 and redis_client.get("plain") == "2"


def test_other_errors_are_raised(redis_client: redis.Redis) -> None:
    redis_client.set("text", "not a number")
    batch = Batch(redis_client)
    batch.command("INCR", "text")
    with pytest.raises(redis.ResponseError):
        batch.execute()


def clients_named(client: redis.Redis, name: str) -> int:
    listed: list[dict[str, str]] = client.client_list()  # type: ignore[assignment]
    return sum(1 for entry in listed if entry.get("name") == name)


def named_client(redis_client: redis.Redis, name: str) -> redis.Redis:
    kwargs = redis_client.connection_pool.connection_kwargs
    return redis.Redis(connection_pool=redis.ConnectionPool(**{**kwargs, "client_name": name}))


def test_the_socket_timeout_is_the_kernels_and_still_ends_a_wait(
    redis_client: redis.Redis,
) -> None:
    """No poll before each send and receive, yet a Redis that stops answering times out."""
    kwargs = redis_client.connection_pool.connection_kwargs
    pool = redis.ConnectionPool(
        **{**kwargs, "socket_timeout": 0.25, "retry": Retry(NoBackoff(), 0), "client_name": "k"}
    )
    client = redis.Redis(connection_pool=pool)
    warm = Batch(client)
    warm.command("PING")
    assert warm.execute() == ["PONG"]
    sock = redis_batch._own_connection(pool)._sock
    assert sock.gettimeout() is None
    timeout = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
    seconds, micros = struct.unpack("ll", timeout)
    assert 0.25 <= seconds + micros / 1e6 < 0.3  # the kernel rounds up to its tick
    redis_client.client_pause(30_000, all=False)  # writes wait: longer than the test may take
    try:
        stuck = Batch(client)
        stuck.command("SET", "paused", "1")
        with pytest.raises(redis.TimeoutError):
            stuck.execute()
    finally:
        redis_client.client_unpause()
    again = Batch(client)
    again.command("GET", "paused")
    assert again.execute() in ([None], ["1"])  # a new connection; the paused SET may have run


def test_a_dropped_connection_is_reconnected_and_the_batch_sent_again(
    redis_client: redis.Redis,
) -> None:
    client = named_client(redis_client, "dropped")
    first = Batch(client)
    first.command("SET", "k", "1")
    first.execute()
    assert redis_client.client_kill_filter(skipme=True, _type="normal") >= 1  # every client
    again = Batch(client)
    again.command("INCR", "k")
    assert again.execute() == [2]


def test_each_thread_has_one_connection_closed_when_the_thread_ends(
    redis_client: redis.Redis,
) -> None:
    client = named_client(redis_client, "threads")
    ran = threading.Barrier(3)  # both threads done with their batches, and this test
    done = threading.Event()

    def work() -> None:
        for _ in range(3):
            batch = Batch(client)
            batch.command("PING")
            batch.execute()
        ran.wait(10)
        done.wait(10)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    ran.wait(10)
    assert clients_named(redis_client, "threads") == 2  # one per thread, not one per batch
    done.set()
    for thread in threads:
        thread.join(10)
    wait_until(
        lambda: clients_named(redis_client, "threads") == 0, 10, "the threads' connections closed"
    )


def test_a_forked_child_opens_its_own_connection(redis_client: redis.Redis) -> None:
    client = named_client(redis_client, "forked")
    batch = Batch(client)
    batch.command("SET", "parent", "1")
    batch.execute()
    pid = os.fork()
    if pid == 0:  # the child: its answer must not be read from the parent's socket
        try:
            child = Batch(client)
            child.command("INCR", "child")
            os._exit(0 if child.execute() == [1] else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    parent = Batch(client)
    parent.command("GET", "parent")
    assert parent.execute() == ["1"]


def test_a_sentinel_managed_client_sends_to_the_master_the_sentinel_names() -> None:
    """A kept connection connects as its pool would: through the sentinels, never to the
    connection's default address (localhost:6379, where another Redis may answer)."""
    with SentinelSet() as sentinels:
        client = master_client(sentinels.url, MASTER_NAME, None)
        batch = Batch(client)
        batch.command("SET", "through-sentinel", "1")
        batch.execute()
        assert sentinels.client(sentinels.master_port).get("through-sentinel") == b"1"
def test_by_size_keeps_order_and_puts_at_least_one_value_in_each_run() -> None:
    from worker.delivery.redis_batch import by_size

    values = [b"a" * 3, b"b" * 3, b"c" * 5, b"d", b"e" * 9]
    assert [list(run) for run in by_size(values, len, limit=6)] == [
        [b"aaa", b"bbb"],
        [b"ccccc", b"d"],
        [b"e" * 9],
    ]
    assert list(by_size([], len, limit=6)) == []
