"""Driving the start service in-process: one runtime per test, its results, a job to start."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kombu import Connection

from worker.delivery.results import results_queue
from worker.runtime import Runtime
from worker.service import Delivery, Done


def run(rt: Runtime, job: Any, job_id: str = "job-1", retries: int = 0) -> Any:
    outcome = rt.service.handle(job, Delivery(job_id=job_id, retries=retries))
    return outcome.result if isinstance(outcome, Done) else outcome


def drain(
    broker_url: str,
    name: str = "startproc.results",
    wait: float = 0.2,
    connect: Callable[[str], Connection] = Connection,
) -> list[dict[str, Any]]:
    """Everything on the results queue, consumed the way another app would.

    ``connect``: how to reach the broker (`worker.broker.connections.broker_connection`
    for URLs plain kombu does not take, such as ``sentinel://``).
    """
    messages: list[dict[str, Any]] = []
    with connect(broker_url) as conn, conn.SimpleQueue(results_queue(name)) as queue:
        while True:
            try:
                message = queue.get(timeout=wait)
            except queue.Empty:
                return messages
            messages.append(message.payload)
            message.ack()


C8_JOB = {"target": "camunda8", "process": "order-process", "variables": {"orderId": "A-1"}}
