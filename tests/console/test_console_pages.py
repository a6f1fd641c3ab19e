"""The console in chromium: sign-in, roles, dead letters, schedules, jobs, the overview.

Every test drives the pages as a person would (clicks, forms, confirmations)
against a real worker, Redis and sandbox, and then checks the effect where
it lands: the ledger answering a new job, beat's firing, the store.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import OPERATOR, VIEWER
from tests.console.helpers import dead_letter, sign_in
from tests.integration.conftest import Pipeline
from tests.support.browser import screenshot
from worker import producer
from worker.broker.connections import shared_redis
from worker.config import settings
from worker.delivery.dlq import DeadLetters
from worker.local.sandbox import SandboxServer
from worker.schedules.fire import Firer
from worker.schedules.schedule import load_schedules
from worker.schedules.state import ScheduleState


def test_sign_in_and_sign_out(page: Any, live: Pipeline) -> None:
    page.goto("/ui/jobs")
    expect(page).to_have_url(re.compile(re.escape("/ui/login?next=/ui/jobs")))
    screenshot(page, "login")
    page.get_by_label("Token").fill("not-a-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_have_text("That token is not valid.")

    page.get_by_label("Token").fill(OPERATOR)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile("/ui/jobs$"))
    expect(page.locator(".who")).to_contain_text("ops operator")
    cookie = next(c for c in page.context.cookies() if c["name"] == "startproc_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"
    assert 0 < cookie["expires"] - time.time() <= settings().ui_session_seconds
    assert OPERATOR not in cookie["value"], "the cookie never carries the token"

    forged = page.request.post("/ui/schedules/nightly-orders/pause", form={"csrf": "forged"})
    assert forged.status == 403 and "CSRF" in forged.text()
    assert not ScheduleState(shared_redis(settings().require_redis())).paused("nightly-orders")

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile("/ui/login$"))
    page.goto("/ui/dead-letters")
    expect(page).to_have_url(re.compile("/ui/login"))


def test_a_dead_letter_resolved_as_created_makes_its_key_a_duplicate(
    page: Any, live: Pipeline, sandbox: SandboxServer
) -> None:
    job_id, instance_id = dead_letter(live, sandbox, "BW-17")
    sign_in(page, OPERATOR, "/ui/dead-letters")
    row = page.locator(f'tr[data-job="{job_id}"]')
    expect(row).to_contain_text("ambiguous")
    screenshot(page, "dead-letters")
    row.get_by_role("link", name=job_id).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(job_id)
    expect(page.locator("main")).not_to_contain_text("only-on-the-job-page")
    screenshot(page, "dead-letter")
    page.get_by_label("Instance id").fill(instance_id)
    page.get_by_role("button", name="Resolve: created…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Resolve: it was created?")
    screenshot(page, "dead-letter-confirm")
    page.get_by_role("button", name="Confirm: resolve: it was created").click()
    expect(page.get_by_role("status")).to_contain_text(f"resolved {job_id}: created")
    expect(page.locator(f'tr[data-job="{job_id}"]')).to_have_count(0)

    again = producer.prepare(
        {
            "target": "approvals",
            "process": "5f500e12a00ee",
            "business_key": "BW-17",
            "variables": {"customer": "ACME", "secretNote": "only-on-the-job-page"},
        }
    )
    producer.publish([again])
    result = live.wait(again["job_id"])
    assert (result.status, result.instance_id) == ("duplicate", instance_id)
    assert len(sandbox.app("blueworks").instances) == 1, "nothing was started twice"

    page.goto(f"/ui/jobs/{job_id}")
    expect(page.locator("main")).to_contain_text(f"created, instance {instance_id}")
    expect(page.locator("main")).to_contain_text("only-on-the-job-page")  # its own page only
    screenshot(page, "job")


def test_a_read_only_token_is_refused_on_replay(
    page: Any, live: Pipeline, sandbox: SandboxServer
) -> None:
    job_id, _instance = dead_letter(live, sandbox, "BW-18")
    sign_in(page, VIEWER, f"/ui/dead-letters/{job_id}")
    expect(page.locator(".who")).to_contain_text("viewer")
    expect(page.get_by_role("button", name="Replay…")).to_be_disabled()
    page.goto(f"/ui/dead-letters/{job_id}/replay")  # the confirmation, reached by its URL
    page.get_by_role("button", name="Confirm: replay").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Refused")
    expect(page.get_by_role("alert")).to_contain_text("read-only token (role viewer)")
    store = DeadLetters(shared_redis(settings().require_redis()))
    assert store.get(job_id) is not None, "the entry is still there"
    assert len(sandbox.app("blueworks").instances) == 1, "no replay reached the engine"


def test_a_schedule_paused_and_resumed(page: Any, live: Pipeline) -> None:
    state = ScheduleState(shared_redis(settings().require_redis()))
    sign_in(page, OPERATOR, "/ui/schedules")
    row = page.locator('tr[data-schedule="nightly-orders"]')
    expect(row.locator("[data-state]")).to_have_text("running")
    expect(row).to_contain_text("02:00 CE")  # its own zone: CET or CEST
    screenshot(page, "schedules")
    row.get_by_role("button", name="Pause…").click()
    screenshot(page, "schedule-confirm")
    page.get_by_role("button", name="Confirm: pause").click()
    expect(row.locator("[data-state]")).to_contain_text("paused by ops")
    assert state.paused("nightly-orders")

    schedule = next(s for s in load_schedules(settings().schedules) if s.name == "nightly-orders")
    slot = schedule.next_slots(datetime.now(UTC), 1)[0]
    published: list[list[dict[str, Any]]] = []
    firer = Firer([schedule], state, published.append, clock=lambda: slot)
    state.advance(schedule.name, slot - timedelta(minutes=1))
    firer.fire_due(schedule, slot)
    assert published == [], "beat fires nothing for a paused schedule"

    row.get_by_role("button", name="Resume…").click()
    page.get_by_role("button", name="Confirm: resume").click()
    expect(row.locator("[data-state]")).to_have_text("running")
    later = schedule.next_slots(slot, 1)[0]
    firer.fire_due(schedule, later)
    assert [job["idempotency_key"] for batch in published for job in batch] == [
        f"schedule:nightly-orders:{later.strftime('%Y-%m-%dT%H:%M:%SZ')}"
    ], "resumed: the next slot fires, the paused one is not caught up"

    row = page.locator('tr[data-schedule="hourly-health"]')
    row.get_by_role("button", name="Run now…").click()
    page.get_by_role("button", name="Confirm: run now").click()
    notice = page.get_by_role("status")
    expect(notice).to_contain_text("ran hourly-health")
    new_job = notice.inner_text().rsplit("as job ", 1)[1].strip()
    assert live.wait(new_job).status == "created"
    page.reload()
    expect(row).to_contain_text("created")


def test_overview_and_jobs(page: Any, live: Pipeline) -> None:
    ok = producer.prepare({"target": "orders", "process": "order-process", "business_key": "A-1"})
    producer.publish([ok])
    assert live.wait(ok["job_id"]).status == "created"
    live.sandbox.app("camunda8").faults.script([{"status": 400}])  # the next start only
    bad = producer.prepare({"target": "orders", "process": "order-process"})
    producer.publish([bad])
    assert live.wait(bad["job_id"]).status == "failed"
    sign_in(page, OPERATOR)
    orders = page.locator('tr[data-target="orders"]')
    expect(orders.locator("td.num").nth(0)).to_have_text("1")  # created, 5 min
    expect(orders.locator("td.num").nth(2)).to_have_text("1")  # failed, 5 min
    expect(orders.locator("td.num").nth(6)).to_have_text("50.0 %")
    expect(page.locator("[data-workers]")).to_have_text("1", timeout=30_000)  # live refresh
    screenshot(page, "overview")

    page.get_by_role("link", name="Jobs").click()
    page.get_by_label("Job id (or its first characters), idempotency key or business key").fill(
        "A-1"
    )
    page.get_by_role("button", name="Find").click()
    expect(page.locator("table")).to_contain_text(ok["job_id"])
    screenshot(page, "jobs")
    page.get_by_role("link", name=ok["job_id"]).click()
    expect(page.locator("dl.facts").first).to_contain_text("created")
    page.goto(f"/ui/jobs?q={bad['job_id'][:12]}")
    expect(page).to_have_url(re.compile(re.escape(f"/ui/jobs/{bad['job_id']}") + "$"))
    expect(page.locator("main")).to_contain_text("HTTP status")
    expect(page.locator("main")).to_contain_text("400")
    page.goto("/ui/jobs/no-such-job")
    expect(page.get_by_role("alert")).to_contain_text("Unknown job id")
