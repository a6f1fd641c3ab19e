"""The demo scenario: one sandbox per engine, a targets file for it, and a handful of jobs.

Shared by `startproc demo` and the integration tests, so the demo is tested.
Every auth kind appears once: OAuth2 (Camunda 8, Blueworks with a Service
ID), basic (Camunda 7), bearer (ProcessMaker 4, TAS). The one secret comes
from an environment variable through ``${VAR}`` like a real deployment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from worker.local.sandbox import SandboxServer

SECRET_VAR = "STARTPROC_DEMO_SECRET"
DEMO_SECRET = "demo-secret-not-for-production"


def configure_sandbox(sandbox: SandboxServer) -> None:
    """Give each emulator the credentials the demo targets use."""
    sandbox.app("camunda8").auth.configure(
        type="oauth2", client_id="worker", client_secret=DEMO_SECRET, token_ttl=300
    )
    sandbox.app("camunda7").auth.configure(type="basic", username="demo", password=DEMO_SECRET)
    sandbox.app("processmaker4").auth.configure(type="bearer", token=DEMO_SECRET)
    sandbox.app("blueworks").auth.configure(
        type="oauth2", client_id="bwl", client_secret=DEMO_SECRET, require_on_behalf_of=True
    )
    sandbox.app("tas").auth.configure(type="bearer", token=DEMO_SECRET)


def targets_toml(sandbox: SandboxServer) -> str:
    """A targets file for the sandbox (the secret stays a ``${VAR}`` reference)."""
    secret = "${" + SECRET_VAR + "}"
    c8 = sandbox.base_url("camunda8")
    bw = sandbox.base_url("blueworks")
    pm_root = sandbox.base_url("processmaker4")
    return f"""\
[targets.orders]
engine = "camunda8"
base_url = "{c8}"
[targets.orders.auth]
type = "oauth2"
token_url = "{c8}/oauth/token"
client_id = "worker"
client_secret = "{secret}"
audience = "zeebe-api"

[targets.invoices]
engine = "camunda7"
base_url = "{sandbox.base_url("camunda7")}"
[targets.invoices.auth]
type = "basic"
username = "demo"
password = "{secret}"

[targets.onboarding]
engine = "processmaker4"
base_url = "{pm_root}"
[targets.onboarding.auth]
type = "bearer"
token = "{secret}"

[targets.approvals]
engine = "blueworks"
base_url = "{bw}"
on_behalf_of = "user_name@domain.com"
[targets.approvals.auth]
type = "oauth2"
token_url = "{bw}/oauth/token"
client_id = "bwl"
client_secret = "{secret}"

[targets.cases]
engine = "tas"
base_url = "{sandbox.base_url("tas")}"
mark_created_by_api = true
[targets.cases.auth]
type = "bearer"
token = "{secret}"
"""


def write_targets(sandbox: SandboxServer, path: Path) -> Path:
    path.write_text(targets_toml(sandbox), encoding="utf-8")
    return path


def demo_jobs() -> list[tuple[str, dict[str, Any]]]:
    """(expected status, job): one start per engine, a duplicate and a bad job."""
    return [
        (
            "created",
            {
                "target": "orders",
                "process": "order-process",
                "variables": {"orderId": "A-17", "amount": 12.5},
                "business_key": "A-17",
                "idempotency_key": "demo:orders:A-17",
            },
        ),
        (
            "created",
            {
                "target": "invoices",
                "process": "invoice",
                "variables": {"invoiceId": "INV-9", "amount": 120, "approved": False},
                "business_key": "INV-9",
            },
        ),
        (
            "created",
            {
                "target": "onboarding",
                "process": "1",
                "variables": {"employee": "Ada Lovelace"},
                "options": {"event": "node_1"},
            },
        ),
        (
            "created",
            {
                "target": "approvals",
                "process": "5f500e12a00ee",
                "variables": {"customer": "ACME"},
                "options": {"subject": "Approve {customer}", "details": "started by the demo"},
            },
        ),
        (
            "created",
            {
                "target": "cases",
                "process": "27",
                "variables": {"processVariable1": "hello", "amount": 100, "dueDate": "2026-12-01"},
            },
        ),
        (
            "duplicate",
            {
                "target": "orders",
                "process": "order-process",
                "variables": {"orderId": "A-17", "amount": 12.5},
                "business_key": "A-17",
                "idempotency_key": "demo:orders:A-17",
            },
        ),
        ("failed", {"target": "ordres", "process": "order-process"}),
    ]
