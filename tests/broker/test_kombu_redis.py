"""The Redis transport that keeps one client per channel, on a real Redis."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from kombu import Connection, Consumer, Producer, Queue
from kombu.transport import redis as kombu_redis

from worker.broker.connections import broker_connection
from worker.broker.kombu_redis import SENTINEL_TRANSPORT, TRANSPORT, Transport, transport_for


def test_plain_redis_and_sentinel_urls_get_it() -> None:
    assert transport_for("redis://localhost:6379/0") == TRANSPORT
    assert transport_for("rediss://localhost:6380/0") is None  # kombu checks TLS by scheme
    assert transport_for("sentinel://localhost:26379") == SENTINEL_TRANSPORT
    assert transport_for("amqp://guest:guest@localhost//") is None
    assert transport_for(None) is None


def test_broker_connections_use_it_for_redis_only() -> None:
    assert isinstance(broker_connection("redis://localhost:1/0").transport, Transport)
    assert not isinstance(broker_connection("amqp://localhost:1//").transport, Transport)


def _count_clients(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    built = [0]
    original = kombu_redis.Channel._create_client

    def counting(self: Any, asynchronous: bool = False) -> Any:
        if not asynchronous:
            built[0] += 1
        return original(self, asynchronous=asynchronous)

    monkeypatch.setattr(kombu_redis.Channel, "_create_client", counting)
    return built


def _round_trip(conn: Connection, queue: Queue, count: int) -> list[int]:
    """Publish ``count`` messages, consume and acknowledge each; the bodies received."""
    received: list[int] = []

    def on_message(body: Any, message: Any) -> None:
        received.append(body["n"])
        message.ack()

    with conn.channel() as channel:
        producer = Producer(channel, routing_key=queue.name)
        for n in range(count):
            producer.publish({"n": n}, declare=[queue], serializer="json")
        with Consumer(channel, [queue], callbacks=[on_message]):
            while len(received) < count:
                conn.drain_events(timeout=5)
    return received


def test_many_publishes_and_acks_build_one_client(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = _count_clients(monkeypatch)
    queue = Queue("kombu-redis-test", routing_key="kombu-redis-test")
    with Connection(redis_url, transport=TRANSPORT) as conn:
        assert _round_trip(conn, queue, 50) == list(range(50))
    assert 1 <= built[0] <= 2, built  # kombu's own transport builds one per command group
    client = redis.Redis.from_url(redis_url)
    assert client.llen("kombu-redis-test") == 0
    assert client.hlen("unacked") == 0  # every ack reached Redis


def test_stock_transport_builds_a_client_per_command_group(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cost this transport removes; if kombu stops paying it, drop the module."""
    built = _count_clients(monkeypatch)
    queue = Queue("kombu-redis-stock", routing_key="kombu-redis-stock")
    with Connection(redis_url) as conn:
        assert _round_trip(conn, queue, 50) == list(range(50))
    assert built[0] >= 100, built


def test_a_closed_pool_gets_a_new_client(redis_url: str) -> None:
    with Connection(redis_url, transport=TRANSPORT) as conn:
        channel = conn.channel()
        with channel.conn_or_acquire() as first:
            first.set("kombu-redis-probe", "1")
        channel._disconnect_pools()  # what kombu does on close and after a fork
        with channel.conn_or_acquire() as second:
            assert second is not first
            assert second.connection_pool is channel.pool
            assert second.get("kombu-redis-probe") == b"1"
        channel.close()
