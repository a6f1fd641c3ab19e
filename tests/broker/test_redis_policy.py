"""`worker.broker.redis_policy` on real Redis servers: an evicting one is refused,
the rest warned about."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from structlog.testing import capture_logs

from worker.broker.redis_policy import check_redis, forget
from worker.errors import ConfigError
from worker.local.embedded import EmbeddedRedis


@pytest.fixture
def own_redis() -> Iterator[EmbeddedRedis]:
    """A Redis of this test alone: its configuration is changed at will."""
    forget()
    with EmbeddedRedis() as server:
        yield server
    forget()


def client_of(server: EmbeddedRedis) -> redis.Redis:
    return redis.Redis.from_url(server.url, decode_responses=True)


def config_calls(client: redis.Redis) -> int:
    stats: dict[str, dict[str, int]] = client.info("commandstats")  # type: ignore[assignment]
    return int(stats.get("cmdstat_config", {}).get("calls", 0))


@pytest.mark.parametrize("policy", ["allkeys-lru", "volatile-lru", "volatile-ttl", "allkeys-lfu"])
def test_a_redis_that_may_evict_is_refused_naming_the_setting(
    own_redis: EmbeddedRedis, policy: str
) -> None:
    client_of(own_redis).config_set("maxmemory-policy", policy)
    with pytest.raises(ConfigError) as refused:
        check_redis(own_redis.url)
    message = str(refused.value)
    assert "maxmemory-policy" in message and repr(policy) in message
    assert "noeviction" in message
    assert f"127.0.0.1:{own_redis.port}/0" in message


def test_noeviction_passes_and_is_asked_once_per_url(own_redis: EmbeddedRedis) -> None:
    client = client_of(own_redis)
    before = config_calls(client)
    for _ in range(100):
        check_redis(own_redis.url)
    asked = config_calls(client) - before
    assert 0 < asked <= 4  # one pipeline of CONFIG GETs, then nothing per call


def test_a_password_never_reaches_the_message(own_redis: EmbeddedRedis) -> None:
    client = client_of(own_redis)
    client.execute_command("ACL", "SETUSER", "ops", "on", ">hunter2-secret", "~*", "&*", "+@all")
    client.config_set("maxmemory-policy", "allkeys-lru")
    url = f"redis://ops:hunter2-secret@127.0.0.1:{own_redis.port}/0"
    with pytest.raises(ConfigError) as refused:
        check_redis(url)
    assert "hunter2" not in str(refused.value)


def test_a_redis_that_forbids_config_get_is_used_with_a_warning(
    own_redis: EmbeddedRedis,
) -> None:
    """Managed services rename or forbid CONFIG: that must not stop anything."""
    admin = client_of(own_redis)
    admin.config_set("maxmemory-policy", "allkeys-lru")  # not visible to the limited user
    admin.execute_command("ACL", "SETUSER", "limited", "on", ">pw", "~*", "&*", "+@all", "-config")
    url = f"redis://limited:pw@127.0.0.1:{own_redis.port}/0"
    with capture_logs() as logs:
        check_redis(url)
    [warning] = [e for e in logs if e["event"] == "redis.policy_unchecked"]
    assert warning["log_level"] == "warning" and "maxmemory-policy" in warning["message"]


def test_persistence_off_is_warned_about_except_on_the_embedded_redis(
    own_redis: EmbeddedRedis, tmp_path: Path
) -> None:
    with capture_logs() as logs:
        check_redis(own_redis.url)  # embedded, no AOF, no snapshots: by design
    assert [e["event"] for e in logs] == []
    forget()
    client_of(own_redis).config_set("dir", str(tmp_path))  # now it is "a" Redis like any other
    with capture_logs() as logs:
        check_redis(own_redis.url)
    [warning] = [e for e in logs if e["event"] == "redis.persistence_off"]
    assert "appendonly" in warning["message"]
    forget()
    client_of(own_redis).config_set("save", "3600 1")  # RDB snapshots count as persistence
    with capture_logs() as logs:
        check_redis(own_redis.url)
    assert [e["event"] for e in logs] == []


def test_an_unreachable_redis_is_not_judged_and_asked_again(own_redis: EmbeddedRedis) -> None:
    url = own_redis.url
    own_redis.stop()
    with capture_logs() as logs:
        check_redis(url, redis.Redis.from_url(url, socket_connect_timeout=0.5))
    assert [e["event"] for e in logs] == ["redis.unreachable_at_check"]
    own_redis.start()
    client_of(own_redis).config_set("maxmemory-policy", "allkeys-lru")
    with pytest.raises(ConfigError):
        check_redis(url)
