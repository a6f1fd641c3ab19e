"""worker.delivery.liveness on a real Redis: the heartbeat key is written at once and kept alive."""

from __future__ import annotations

import os

import redis

from tests.support.waiting import wait_until
from worker.delivery.liveness import Liveness
from worker.keys import alive_key


def test_the_heartbeat_is_written_before_first_use_and_refreshed(
    redis_client: redis.Redis,
) -> None:
    default = Liveness(redis_client, ttl=2.0)
    assert default.holder().endswith(f":{os.getpid()}")  # host:pid
    default._stop.set()
    live = Liveness(redis_client, ttl=2.0, name="refreshed")
    holder = live.holder()
    try:
        assert live.holder() == holder == "refreshed"
        first = redis_client.get(alive_key(holder))
        assert first is not None and 0 < redis_client.pttl(alive_key(holder)) <= 2000
        wait_until(lambda: redis_client.get(alive_key(holder)) != first, 3, "a refresh")
    finally:
        live.stop()
    assert redis_client.exists(alive_key(holder)) == 0


def test_a_stopped_heartbeat_expires_within_the_ttl(redis_client: redis.Redis) -> None:
    live = Liveness(redis_client, ttl=2.0, name="stopped")
    holder = live.holder()
    live._stop.set()  # the thread stops as a SIGKILL would stop it; the key is left to expire
    wait_until(lambda: redis_client.exists(alive_key(holder)) == 0, 4, "the key to expire")
