"""The Celery configuration per broker: Redis as before, RabbitMQ with quorum queues.

No broker is needed: these check the declarations and settings themselves;
`tests/integration/test_rabbitmq.py` checks what a real RabbitMQ makes of them.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from celery import Celery
from celery.utils.quorum_queues import detect_quorum_queues

from worker.celery_app import (
    TASK_NAME,
    StartprocCelery,
    job_summary,
    jobs_queue_for,
    queue_mismatch,
    quorum_queues,
    reliability_conf,
)
from worker.config import Settings, settings
from worker.delivery.results import results_queue
from worker.errors import ConfigError

REDIS = "redis://127.0.0.1:6399/0"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"
QUORUM_ONLY = (
    "task_default_exchange_type",
    "task_default_routing_key",
    "task_create_missing_queue_type",
    "task_create_missing_queue_exchange_type",
    "worker_detect_quorum_queues",
    "broker_native_delayed_delivery_queue_type",
)


def make(broker_url: str, queue_type: str = "quorum") -> Settings:
    return Settings(broker_url=broker_url, rabbitmq_queue_type=queue_type)  # type: ignore[arg-type]


def app_with(conf: dict[str, object]) -> Celery:
    app = StartprocCelery("test-conf", set_as_current=False)
    app.conf.update(conf)
    return app


def test_redis_keeps_the_default_exchange_and_the_visibility_timeout() -> None:
    conf = reliability_conf(make(REDIS), "jobs")
    [queue] = conf["task_queues"]  # type: ignore[misc]
    assert queue.name == "jobs" and queue.routing_key == "jobs" and queue.durable
    assert queue.exchange.name == "" and not queue.queue_arguments
    assert conf["task_default_exchange"] == ""
    assert not set(QUORUM_ONLY) & set(conf)
    transport = conf["broker_transport_options"]
    assert isinstance(transport, dict) and transport["visibility_timeout"] == 3600
    assert "confirm_publish" not in transport
    assert detect_quorum_queues(app_with(conf), "redis") == (False, "")


def test_rabbitmq_jobs_queue_is_quorum_on_a_topic_exchange_of_its_name() -> None:
    conf = reliability_conf(make(AMQP), "jobs")
    [queue] = conf["task_queues"]  # type: ignore[misc]
    assert queue.name == "jobs" and queue.routing_key == "jobs" and queue.durable
    assert queue.queue_arguments == {"x-queue-type": "quorum"}
    assert queue.exchange.name == "jobs" and queue.exchange.type == "topic"
    assert queue.exchange.durable
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert conf["worker_detect_quorum_queues"] is True
    assert conf["broker_native_delayed_delivery_queue_type"] == "quorum"
    assert conf["task_default_exchange"] == "jobs"
    assert conf["task_default_exchange_type"] == "topic"
    # Celery's own checks: quorum queues detected (global QoS off, delayed delivery on)
    app = app_with(conf)
    assert detect_quorum_queues(app, "amqp") == (True, "jobs")


def test_rabbitmq_queue_named_only_by_a_string_is_declared_like_ours() -> None:
    """A queue Celery creates from a bare name (task_create_missing_queues) matches ours."""
    app = app_with(reliability_conf(make(AMQP), "jobs"))
    missing = app.amqp.queues["other.jobs"]
    ours = jobs_queue_for(make(AMQP), name="other.jobs")
    assert missing.queue_arguments == ours.queue_arguments == {"x-queue-type": "quorum"}
    assert (missing.exchange.name, missing.exchange.type) == ("other.jobs", "topic")
    assert missing.exchange == ours.exchange and missing.routing_key == ours.routing_key


def test_rabbitmq_classic_setting_is_the_layout_before_quorum_queues() -> None:
    conf = reliability_conf(make(AMQP, "classic"), "jobs")
    [queue] = conf["task_queues"]  # type: ignore[misc]
    assert queue.exchange.name == "" and not queue.queue_arguments
    assert conf["task_default_exchange"] == ""
    assert not set(QUORUM_ONLY) & set(conf)
    assert conf["broker_transport_options"] == {"confirm_publish": True}
    assert not quorum_queues(make(AMQP, "classic"))


@pytest.mark.parametrize("url", [AMQP, "amqps://h//", "pyamqp://h//"])
def test_every_amqp_scheme_counts_as_rabbitmq(url: str) -> None:
    assert quorum_queues(make(url))
    assert not quorum_queues(make(REDIS))


def test_producers_declare_the_jobs_queue_for_the_broker_they_publish_to() -> None:
    cfg = make(REDIS)
    assert jobs_queue_for(cfg).exchange.name == ""
    rabbit = jobs_queue_for(cfg, AMQP)
    assert rabbit.name == cfg.jobs_queue and rabbit.exchange.type == "topic"
    assert rabbit.queue_arguments == {"x-queue-type": "quorum"}


def test_results_queue_goes_through_the_default_exchange_with_the_configured_type() -> None:
    quorum = results_queue("results", "quorum")
    classic = results_queue("results", "classic")
    assert quorum.exchange.name == classic.exchange.name == ""
    assert quorum.routing_key == "results" and quorum.durable and classic.durable
    assert quorum.queue_arguments == {"x-queue-type": "quorum"}
    assert not classic.queue_arguments


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Countdowns as Celery's own send_task receives them (nothing is sent)."""
    seen: list[Any] = []

    def send_task(self: Celery, name: str, *args: Any, countdown: Any = None, **_: Any) -> None:
        seen.append(args[2] if len(args) > 2 else countdown)

    monkeypatch.setattr(Celery, "send_task", send_task)
    return seen


def test_countdowns_are_rounded_up_to_whole_seconds_with_quorum_queues(
    captured: list[Any],
) -> None:
    """RabbitMQ's delayed delivery takes whole seconds and refuses less than one."""
    app = app_with(reliability_conf(make(AMQP), "jobs"))
    for countdown in (0.25, 1.0, 3.2, None, 0):
        app.send_task("t", countdown=countdown)
    app.send_task("t", None, None, 0.5)  # positionally, too
    assert captured == [1, 1, 4, None, 0, 1]


@pytest.mark.parametrize("url,queue_type", [(REDIS, "quorum"), (AMQP, "classic")])
def test_countdowns_stay_exact_without_quorum_queues(
    captured: list[Any], url: str, queue_type: str
) -> None:
    app = app_with(reliability_conf(make(url, queue_type), "jobs"))
    app.send_task("t", countdown=0.25)
    assert captured == [0.25]


def test_queue_type_setting_defaults_to_quorum_and_ignores_case() -> None:
    assert Settings().rabbitmq_queue_type == "quorum"
    assert make(AMQP, " Classic ").rabbitmq_queue_type == "classic"


def test_an_unknown_queue_type_is_a_configuration_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STARTPROC_RABBITMQ_QUEUE_TYPE", "qourum")
    settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as error:
            settings()
    finally:
        settings.cache_clear()
    message = str(error.value)
    assert "STARTPROC_RABBITMQ_QUEUE_TYPE must be 'quorum' or 'classic', not 'qourum'" in message
    assert "did you mean 'quorum'?" in message


class Refused(Exception):
    reply_code = 406
    reply_text = (
        "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for queue 'startproc.jobs' "
        "in vhost '/': received the value 'quorum' of type 'longstr' but current is none"
    )


def test_a_queue_of_another_type_is_explained_with_both_ways_out() -> None:
    message = str(queue_mismatch(make(AMQP), Refused()))
    assert Refused.reply_text in message
    assert "quorum queue bound to the topic exchange 'startproc.jobs'" in message
    assert "set STARTPROC_RABBITMQ_QUEUE_TYPE=classic" in message
    assert "let the workers empty 'startproc.jobs'" in message
    assert "rabbitmqctl delete_queue" in message
    classic = str(queue_mismatch(make(AMQP, "classic"), Refused()))
    assert "set STARTPROC_RABBITMQ_QUEUE_TYPE=quorum" in classic


def test_celerys_shared_delay_queues_of_another_type_point_to_a_vhost_of_its_own() -> None:
    class DelayQueueRefused(Refused):
        reply_text = "PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for 'celery_delayed_3'"

    message = str(queue_mismatch(make(AMQP), DelayQueueRefused()))
    assert "virtual host of its own" in message
    assert "rabbitmqctl delete_queue" not in message


def test_the_worker_sets_its_gil_switch_interval_at_start() -> None:
    import sys

    from worker import celery_app

    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        celery_app._switch_interval()
        assert sys.getswitchinterval() == pytest.approx(celery_app.cfg.worker_switch_interval)
        assert celery_app.cfg.worker_switch_interval == pytest.approx(0.001)  # the default
    finally:
        sys.setswitchinterval(before)


def test_a_jobs_variables_never_reach_celerys_kwargsrepr(redis_url: str) -> None:
    """Flower, task events and Celery's logs show ``kwargsrepr``; it carries no business data."""
    import json

    import redis

    from worker import producer
    from worker.config import environment

    queue = f"startproc.jobs.repr-{uuid.uuid4().hex[:8]}"
    job = {"target": "orders", "process": "p", "variables": {"iban": "DE89 3704 0044"}}
    with environment({"STARTPROC_BROKER_URL": redis_url, "STARTPROC_JOBS_QUEUE": queue}):
        producer.publish([{**job, "job_id": "j-1"}])
    raw = redis.Redis.from_url(redis_url).lpop(queue)
    assert raw is not None
    message = json.loads(raw)
    assert message["headers"]["kwargsrepr"] == (
        "{'job': {'target': 'orders', 'process': 'p', 'variables': 1}}"
    )
    assert "DE89" not in json.dumps(message["headers"])


@pytest.mark.parametrize(
    ("job", "shown"),
    [
        ("a string", "{'job': <str>}"),
        (None, "{'job': <NoneType>}"),
        (
            {"target": 7, "variables": [1]},
            "{'job': {'target': '7', 'process': 'None', 'variables': 0}}",
        ),
    ],
)
def test_job_summary_of_jobs_that_are_not_valid(job: Any, shown: str) -> None:
    assert job_summary(job) == shown


def test_an_explicit_kwargsrepr_is_kept(captured_options: list[dict[str, Any]]) -> None:
    app = app_with(reliability_conf(make(REDIS), "jobs"))
    app.send_task(TASK_NAME, kwargs={"job": {}}, kwargsrepr="mine")
    app.send_task("other.task", kwargs={"job": {"variables": {"a": 1}}})
    assert captured_options[0]["kwargsrepr"] == "mine"
    assert "kwargsrepr" not in captured_options[1]


@pytest.fixture
def captured_options(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []

    def send_task(self: Celery, name: str, *args: Any, **options: Any) -> None:
        seen.append(options)

    monkeypatch.setattr(Celery, "send_task", send_task)
    return seen
