"""Job and Result: every field validated, unknown fields rejected, timestamps stable."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from worker.errors import InvalidJob
from worker.models import MAX_JOB_BYTES, ErrorInfo, Job, Result, iso_ms

CONTRACT_JOB = {
    "target": "orders",
    "process": "order-process",
    "version": 3,
    "variables": {"orderId": "A-17", "amount": 12.5},
    "business_key": "A-17",
    "idempotency_key": "orders:A-17",
    "tenant_id": None,
    "options": {},
}


def test_the_contract_example_parses_and_is_frozen() -> None:
    job = Job.parse(CONTRACT_JOB)
    assert job.target == "orders" and job.version == 3 and job.variables["amount"] == 12.5
    with pytest.raises(ValidationError):
        job.target = "x"  # type: ignore[misc]


def test_json_text_and_bytes_are_accepted() -> None:
    assert Job.parse(json.dumps(CONTRACT_JOB)).business_key == "A-17"
    assert Job.parse(json.dumps(CONTRACT_JOB).encode()).business_key == "A-17"


def test_numeric_process_ids_become_text() -> None:
    assert Job.parse({"target": "cases", "process": 27}).process_id == "27"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"target": None}, "target"),
        ({"target": "Orders!"}, "target"),
        ({"process": ""}, "process"),
        ({"process": True}, "process"),
        ({"version": 0}, "version"),
        ({"version": "3"}, "version"),
        ({"version": 2**31}, "version"),
        ({"variables": "x"}, "variables"),
        ({"variables": {"": 1}}, "variables"),
        ({"business_key": ""}, "business_key"),
        ({"business_key": "x" * 256}, "business_key"),
        ({"idempotency_key": "a\nb"}, "idempotency_key"),
        ({"tenant_id": 5}, "tenant_id"),
        ({"options": []}, "options"),
        ({"job_id": "has space"}, "job_id"),
        ({"enqueued_at": "yesterday"}, "enqueued_at"),
        ({"extra": 1}, "extra: unknown field"),
        ({"busines_key": "x"}, "did you mean 'business_key'"),
    ],
)
def test_every_field_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        Job.parse({**CONTRACT_JOB, **change})
    assert message in caught.value.message
    assert caught.value.kind == "invalid"


def test_missing_required_fields_are_named() -> None:
    with pytest.raises(InvalidJob, match="target: required field is missing"):
        Job.parse({"process": "p"})


@pytest.mark.parametrize("raw", ["[1]", "nope", 42, None, b"\xff\xfe"])
def test_non_objects_are_invalid(raw: object) -> None:
    with pytest.raises(InvalidJob, match="job:"):
        Job.parse(raw)


def test_oversize_jobs_are_refused_before_parsing() -> None:
    big = {**CONTRACT_JOB, "variables": {"blob": "x" * MAX_JOB_BYTES}}
    with pytest.raises(InvalidJob, match="larger than"):
        Job.parse(big)
    with pytest.raises(InvalidJob, match="larger than"):
        Job.parse(json.dumps(big))


def test_payload_ignores_who_and_when() -> None:
    a = Job.parse({**CONTRACT_JOB, "job_id": "a", "enqueued_at": "2026-01-01T00:00:00Z"})
    b = Job.parse({**CONTRACT_JOB, "job_id": "b", "batch_id": "x"})
    assert a.payload() == b.payload()
    assert Job.parse({**CONTRACT_JOB, "variables": {}}).payload() != a.payload()


def test_result_serialises_exactly_as_the_contract_shows() -> None:
    result = Result(
        job_id="j",
        idempotency_key="orders:A-17",
        target="orders",
        engine="camunda8",
        process="order-process",
        business_key="A-17",
        status="created",
        instance_id="2251799813685249",
        attempts=1,
        enqueued_at=datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC),
        finished_at=datetime(2026, 11, 25, 10, 0, 0, 42_999, tzinfo=UTC),
    )
    data = json.loads(result.to_json())
    assert list(data) == [
        "job_id",
        "idempotency_key",
        "target",
        "engine",
        "process",
        "business_key",
        "status",
        "instance_id",
        "attempts",
        "error",
        "batch_id",
        "schedule",
        "enqueued_at",
        "finished_at",
    ]
    assert data["enqueued_at"] == "2026-11-25T10:00:00.000Z"
    assert data["finished_at"] == "2026-11-25T10:00:00.042Z"
    assert Result.model_validate_json(result.to_json()) == result


def test_result_rejects_unknown_status_and_kind() -> None:
    with pytest.raises(ValidationError):
        Result(job_id="j", status="started")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        ErrorInfo(kind="oops", message="m")  # type: ignore[arg-type]


def test_iso_ms_converts_to_utc() -> None:
    from datetime import timedelta, timezone

    prague = timezone(timedelta(hours=1))
    assert iso_ms(datetime(2026, 1, 1, 1, 0, tzinfo=prague)) == "2026-01-01T00:00:00.000Z"


def test_existing_instance_id_is_in_an_error_only_when_there_is_one() -> None:
    plain = ErrorInfo(kind="permanent", http_status=400, message="no")
    assert json.loads(plain.model_dump_json()) == {
        "kind": "permanent", "http_status": 400, "message": "no", "engine_error": None
    }
    clash = ErrorInfo(kind="conflict", http_status=409, message="held", existing_instance_id="7")
    assert json.loads(clash.model_dump_json())["existing_instance_id"] == "7"
    result = Result(job_id="j", status="failed", error=clash)
    assert Result.model_validate_json(result.to_json()) == result


# ---------------------------------------------------------------- start by message

MESSAGE_JOB = {
    "target": "orders",
    "message": {"name": "order-received", "correlation_key": "A-17", "ttl": 0},
    "variables": {"orderId": "A-17"},
    "business_key": "A-17",
}


def test_the_contract_message_job_parses_and_is_labelled_by_its_name() -> None:
    job = Job.parse(MESSAGE_JOB)
    assert job.process is None and job.message is not None
    assert (job.message.name, job.message.correlation_key, job.message.ttl) == (
        "order-received", "A-17", 0
    )
    assert job.process_id == "message:order-received"
    assert job.payload()["message"] == MESSAGE_JOB["message"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"message": None}, "message: Value error, a job needs a process or a message; neither"),
        ({"process": "p"}, "message: Value error, a job needs a process or a message, not both"),
        ({"version": 2}, "leave version unset"),
        ({"message": {}}, "message.name: required field is missing"),
        ({"message": {"name": ""}}, "message.name: String should have at least 1 character"),
        ({"message": {"name": "x" * 256}}, "message.name: String should have at most 255"),
        ({"message": {"name": "a\nb"}}, "message.name: String should match pattern"),
        ({"message": {"name": 7}}, "message.name: Input should be a valid string"),
        ({"message": {"name": "m", "correlation_key": 17}}, "message.correlation_key: Input"),
        ({"message": {"name": "m", "correlation_key": ""}}, "message.correlation_key: String"),
        ({"message": {"name": "m", "correlation_key": "k" * 256}}, "message.correlation_key"),
        ({"message": {"name": "m", "ttl": -1}}, "message.ttl: Input should be greater"),
        ({"message": {"name": "m", "ttl": "0"}}, "message.ttl: Input should be a valid integer"),
        ({"message": {"name": "m", "ttl": 2**31}}, "message.ttl: Input should be less"),
        ({"message": {"name": "m", "tll": 0}}, "message.tll: unknown field (did you mean 'ttl'?)"),
        ({"message": "order-received"}, "message: Input should be a valid dictionary"),
    ],
)
def test_every_message_field_is_validated(change: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidJob) as caught:
        Job.parse({**MESSAGE_JOB, **change})
    assert message in caught.value.message


def test_a_job_without_process_or_message_names_both() -> None:
    with pytest.raises(InvalidJob) as caught:
        Job.parse({"target": "orders"})
    assert "neither is set" in caught.value.message
