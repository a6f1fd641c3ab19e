"""Steps the console tests share: signing in, waiting for a dead letter made by a real worker."""

from __future__ import annotations

import re
import time
from typing import Any

from playwright.sync_api import expect

from tests.integration.conftest import Pipeline
from worker import producer
from worker.broker.connections import shared_redis
from worker.config import settings
from worker.delivery.dlq import DeadLetters
from worker.local.sandbox import SandboxServer


def sign_in(page: Any, token: str, path: str = "/ui/") -> None:
    page.goto(path)
    expect(page).to_have_url(re.compile("/ui/login"))
    page.get_by_label("Token").fill(token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()


def dead_letter(pipeline: Pipeline, sandbox: SandboxServer, business_key: str) -> tuple[str, str]:
    """A Blueworks start whose answer is lost after the engine committed it.

    Blueworks cannot be searched, so the worker dead-letters it (failed/ambiguous);
    returns the job id and the instance the engine did create.
    """
    blueworks = sandbox.app("blueworks")
    before = {str(i.get("id")) for i in blueworks.instances}
    blueworks.faults.script([{"drop": "after_commit"}])
    job = producer.prepare(
        {
            "target": "approvals",
            "process": "5f500e12a00ee",
            "business_key": business_key,
            "variables": {"customer": "ACME", "secretNote": "only-on-the-job-page"},
        }
    )
    producer.publish([job])
    result = pipeline.wait(job["job_id"])
    assert result.status == "failed" and result.error is not None
    assert result.error.kind == "ambiguous", result.error
    store = DeadLetters(shared_redis(settings().require_redis()))
    deadline = time.monotonic() + 10
    while store.get(job["job_id"]) is None:
        assert time.monotonic() < deadline, "the job never reached the dead-letter store"
        time.sleep(0.05)
    created = [str(i.get("id")) for i in blueworks.instances if str(i.get("id")) not in before]
    assert len(created) == 1, blueworks.instances
    return job["job_id"], created[0]
