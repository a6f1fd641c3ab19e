"""`Batch`: steps in order, one round trip, scripts reloaded when Redis lost them."""

from __future__ import annotations

import pytest
import redis

from worker.delivery.redis_batch import Batch, ScriptCall

INCR_BY_ARG = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def test_answers_come_back_in_step_order(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(INCR_BY_ARG)
    ScriptCall(script, ["warm"], [1]).run()
    batch = Batch(redis_client)
    first = batch.script(ScriptCall(script, ["n"], [5]))
    plain = batch.command(lambda pipe: pipe.get("n"))
    second = batch.script(ScriptCall(script, ["n"], [2]))
    answers = batch.execute()
    assert (answers[first], answers[plain], answers[second]) == (5, "5", 7)


def test_one_round_trip_even_with_scripts(redis_client: redis.Redis) -> None:
    script = redis_client.register_script(INCR_BY_ARG)
    ScriptCall(script, ["warm"], [1]).run()  # loaded once, as a worker's first job would
    before = redis_client.info("stats")["total_commands_processed"]
    batch = Batch(redis_client)
    batch.script(ScriptCall(script, ["a"], [1]))
    batch.command(lambda pipe: pipe.set("b", "1"))
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
    plain = batch.command(lambda pipe: pipe.incr("plain"))
    scripted = batch.script(ScriptCall(script, ["scripted"], [3]))
    answers = batch.execute()
    assert answers[scripted] == 3
    # the plain step ran twice (steps must be idempotent), its first answer is kept
    assert answers[plain] == 1 and redis_client.get("plain") == "2"


def test_other_errors_are_raised(redis_client: redis.Redis) -> None:
    redis_client.set("text", "not a number")
    batch = Batch(redis_client)
    batch.command(lambda pipe: pipe.incr("text"))
    with pytest.raises(redis.ResponseError):
        batch.execute()


def test_by_size_keeps_order_and_puts_at_least_one_value_in_each_run() -> None:
    from worker.delivery.redis_batch import by_size

    values = [b"a" * 3, b"b" * 3, b"c" * 5, b"d", b"e" * 9]
    assert [list(run) for run in by_size(values, len, limit=6)] == [
        [b"aaa", b"bbb"],
        [b"ccccc", b"d"],
        [b"e" * 9],
    ]
    assert list(by_size([], len, limit=6)) == []
