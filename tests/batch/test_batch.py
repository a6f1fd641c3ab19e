"""Batch files without a worker: reading, mapping, typing, validation, rejects, dry runs.

The broker is the suite's embedded Redis, so "nothing was enqueued" is read
from the jobs queue itself; no engine is called (validation uses the
adapters' ``build_request``, which makes no HTTP request).
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import redis
from typer.testing import CliRunner

from tests.conftest import make_settings
from worker import keys
from worker.batch import (
    BatchInterrupted,
    BatchSummary,
    check_batch_id,
    default_batch_id,
    status,
    submit,
)
from worker.batch.mapping import BatchMapping, CellError, Column, load_mapping, parse_map
from worker.batch.results import Tally, counters_key, wait_for
from worker.batch.rows import SeenKeys, Validator, content_hash, row_key
from worker.batch.send import InterruptGuard, earlier_answers
from worker.batch.source import Record, detect_delimiter, detect_encoding, open_source
from worker.cli.batch import _with_wait_value
from worker.config import Settings
from worker.engines import build_engine
from worker.errors import ConfigError
from worker.models import Result
from worker.targets import Targets

REPO = Path(__file__).resolve().parents[2]
QUEUE = "startproc.jobs"


@pytest.fixture
def targets() -> Targets:
    raw = {
        "orders": {"engine": "camunda8", "base_url": "http://127.0.0.1:9"},
        "cases": {"engine": "tas", "base_url": "http://127.0.0.1:9"},
    }
    return Targets.from_dict({"targets": raw}, env={})


@pytest.fixture
def cfg(redis_url: str) -> Settings:
    return make_settings(redis_url)


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def queued(redis_client: redis.Redis) -> list[dict[str, Any]]:
    """The jobs waiting in the broker, decoded from kombu's envelopes."""
    import base64

    out = []
    for raw in redis_client.lrange(QUEUE, 0, -1):
        body = json.loads(base64.b64decode(json.loads(raw)["body"]))
        out.append(body[1]["job"])
    return out


def go(path: Path | str, cfg: Settings, targets: Targets, **kwargs: Any) -> BatchSummary:
    options: dict[str, Any] = {"target": "orders", "process": "order-process"}
    options.update(kwargs)
    return submit(path, settings=cfg, targets=targets, **options)


# ---------------------------------------------------------------- mapping and types


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("amount", Column("amount", "amount", "string")),
        ("amount:float", Column("amount", "amount", "float")),
        ("amount=total", Column("amount", "total", "string")),
        ("amount=total:int", Column("amount", "total", "int")),
        ("when=at:datetime", Column("when", "at", "datetime")),
    ],
)
def test_map_option_forms(text: str, expected: Column) -> None:
    assert parse_map(text) == expected


def test_map_option_with_unknown_type_suggests() -> None:
    with pytest.raises(ConfigError, match=r"unknown type 'flaot'.*did you mean 'float'"):
        parse_map("amount=total:flaot")


@pytest.mark.parametrize(
    ("kind", "cell", "value"),
    [
        ("string", " a b ", " a b "),
        ("int", " 42 ", 42),
        ("int", "-7", -7),
        ("float", "12.5", 12.5),
        ("float", "3", 3.0),
        ("bool", "Yes", True),
        ("bool", "0", False),
        ("bool", "off", False),
        ("date", "2026-11-25", "2026-11-25"),
        ("datetime", "2026-11-25T10:00:00+01:00", "2026-11-25T10:00:00+01:00"),
        ("datetime", "2026-11-25 10:00", "2026-11-25T10:00:00"),
        ("json", '{"a": [1, 2]}', {"a": [1, 2]}),
        ("json", "null", None),
    ],
)
def test_cell_types(kind: str, cell: str, value: Any) -> None:
    assert Column("c", "c", kind).convert(cell) == value  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "cell", "reason"),
    [
        ("int", "4.5", "'4.5' is not an integer"),
        ("int", str(2**63), "does not fit in 64 bits"),
        ("float", "twelve", "'twelve' is not a number"),
        ("float", "nan", "NaN and infinity"),
        ("bool", "maybe", "'maybe' is not a boolean"),
        ("date", "25.11.2026", "is not a date (YYYY-MM-DD)"),
        ("datetime", "yesterday", "is not a date-time"),
        ("json", "{oops", "not valid JSON"),
    ],
)
def test_cell_type_errors(kind: str, cell: str, reason: str) -> None:
    with pytest.raises(CellError, match=reason.replace("(", r"\(").replace(")", r"\)")):
        Column("c", "c", kind).convert(cell)  # type: ignore[arg-type]


def test_formats_and_empty_policies() -> None:
    assert Column("d", "d", "date", format="%d.%m.%Y").convert("25.11.2026") == "2026-11-25"
    assert Column("f", "f", "float", format=",").convert("1.234,5") == 1234.5
    assert Column("s", "s", "string").convert("") == ""
    assert Column("i", "i", "int").convert("") is None
    assert Column("s", "s", "string", empty="null").convert("") is None
    with pytest.raises(CellError, match="empty value"):
        Column("i", "i", "int", empty="error").convert("")
    mapping = BatchMapping(columns=(Column("a", "a", "int", empty="omit"), Column("b", "B")))
    assert mapping.variables({"a": "", "b": "x", "c": "ignored"}) == ({"B": "x"}, [])


def test_default_mapping_sends_every_column_as_text() -> None:
    variables, errors = BatchMapping().variables({"a": "1", "b": ""})
    assert (variables, errors) == ({"a": "1", "b": ""}, [])
    jsonl = BatchMapping().with_defaults_for("jsonl")
    assert jsonl.variables({"n": 1, "ok": True, "o": {"x": 1}}) == (
        {"n": 1, "ok": True, "o": {"x": 1}},
        [],
    )


def test_mapping_file_and_the_example_load(tmp_path: Path) -> None:
    example = load_mapping(REPO / "config" / "batch-mapping.example.toml")
    assert example.business_key and example.columns
    path = write(
        tmp_path / "m.toml",
        'business_key = "id"\n[columns.amount]\nvariable = "total"\ntype = "float"\n',
    )
    mapping = load_mapping(path)
    assert mapping.business_key == "id"
    assert mapping.columns == (Column("amount", "total", "float"),)
    bad = write(tmp_path / "bad.toml", '[columns.amount]\ntpye = "float"\n')
    with pytest.raises(ConfigError, match=r"bad.toml: columns.amount.tpye: unknown field"):
        load_mapping(bad)


# ---------------------------------------------------------------- reading files


def test_encoding_sniffing() -> None:
    assert detect_encoding(codecs.BOM_UTF8 + b"a,b\n") == "utf-8-sig"
    assert detect_encoding("naïve,b\n".encode()) == "utf-8"
    assert detect_encoding("naïve,b\n".encode("cp1252")) == "cp1252"
    assert detect_encoding(codecs.BOM_UTF16_LE + "a".encode("utf-16-le")) == "utf-16"


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_sniffing(delimiter: str) -> None:
    sample = delimiter.join(["id", "name", "note"]) + "\n" + delimiter.join(["1", "a", "b"]) + "\n"
    assert detect_delimiter(sample) == delimiter


def test_csv_lines_are_where_records_start(tmp_path: Path) -> None:
    path = write(
        tmp_path / "f.csv",
        'id,note\n1,plain\n\n2,"two\nlines"\n3,x,extra\n4,last\n',
    )
    records = list(open_source(path).records())
    assert [(r.line, r.values.get("id"), r.error) for r in records] == [
        (2, "1", None),
        (4, "2", None),
        (6, "3", "3 fields, the header has 2"),
        (7, "4", None),
    ]


def test_bom_and_cp1252_files_read_as_text(tmp_path: Path) -> None:
    bom = write(tmp_path / "bom.csv", "\ufeffid;name\n1;Zoë\n")
    source = open_source(bom)
    assert (source.encoding, source.delimiter, source.header()) == (
        "utf-8-sig",
        ";",
        ["id", "name"],
    )
    assert next(source.records()).values == {"id": "1", "name": "Zoë"}
    legacy = write(tmp_path / "legacy.csv", "id,name\n1,Zoë\n", encoding="cp1252")
    assert next(open_source(legacy).records()).values["name"] == "Zoë"


def test_utf16_files_read_too(tmp_path: Path) -> None:
    path = write(tmp_path / "u16.csv", "\ufeffid\tname\n1\tZoë\n", encoding="utf-16-le")
    source = open_source(path)
    assert (source.encoding, source.delimiter) == ("utf-16", "\t")
    assert [r.values for r in source.records()] == [{"id": "1", "name": "Zoë"}]


def test_bad_headers_stop_the_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="column 'a' appears twice"):
        open_source(write(tmp_path / "d.csv", "a,a\n1,2\n")).header()
    with pytest.raises(ConfigError, match="column 2 has no name"):
        open_source(write(tmp_path / "e.csv", "a,\n1,2\n")).header()


def test_undecodable_bytes_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "mixed.csv"
    path.write_bytes(b"id,name\n" + b"1,ok\n" * 3 + b"2,\xff\xfe\n")
    source = open_source(path, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"mixed.csv: line 5: not valid utf-8"):
        list(source.records())


def test_jsonl_records_and_their_errors(tmp_path: Path) -> None:
    path = write(tmp_path / "f.jsonl", '{"id": 1}\n\n[1]\n{broken\n{"id": 2}\n')
    records = list(open_source(path).records())
    assert [(r.line, r.error) for r in records] == [
        (1, None),
        (3, "expected a JSON object, got list"),
        (4, records[2].error),
        (5, None),
    ]
    assert records[2].error is not None and records[2].error.startswith("not valid JSON")


# ---------------------------------------------------------------- validation


def validator(targets: Targets, target: str, process: str, **mapping: Any) -> Validator:
    engine = build_engine(targets[target])
    return Validator(engine, target, process, "b1", BatchMapping(**mapping))


def test_keys_are_derived_from_batch_and_business_key_or_content() -> None:
    assert row_key("b1", "C-1", {"a": 1}) == "batch:b1:C-1"
    assert row_key("b1", None, {"b": 2, "a": 1}) == f"batch:b1:{content_hash({'a': 1, 'b': 2})}"
    assert len(content_hash({"a": 1})) == 64


def test_validation_errors_carry_line_column_and_reason(targets: Targets) -> None:
    check = validator(
        targets,
        "orders",
        "order-process",
        business_key="id",
        columns=(Column("id", "id"), Column("amount", "amount", "float")),
    ).check
    assert check(Record(2, {"id": "A", "amount": "1.5"})).__class__.__name__ == "ValidRow"
    assert [(e.line, e.column, e.reason) for e in check(Record(3, {"id": "B", "amount": "x"}))] == [  # type: ignore[union-attr]
        (3, "amount", "'x' is not a number")
    ]
    assert [(e.column, e.reason) for e in check(Record(4, {"id": " ", "amount": "1"}))] == [  # type: ignore[union-attr]
        ("id", "missing business key")
    ]
    assert [(e.column, e.reason) for e in check(Record(9, {"id": "A", "amount": "2"}))] == [  # type: ignore[union-attr]
        ("id", "duplicate business key 'A', first on line 2")
    ]


def test_identical_rows_without_business_key_are_duplicates(targets: Targets) -> None:
    check = validator(targets, "orders", "order-process").check
    check(Record(2, {"a": "1"}))
    errors = check(Record(5, {"a": "1"}))
    assert isinstance(errors, list)
    assert "same content as another row" in errors[0].reason and "line 2" in errors[0].reason


def test_engine_rules_come_from_the_adapter(targets: Targets) -> None:
    """TAS takes no booleans: its adapter says so, pointed at the source column."""
    check = validator(
        targets, "cases", "12", columns=(Column("Flag", "flag", "bool"), Column("n", "n"))
    ).check
    errors = check(Record(7, {"Flag": "yes", "n": "1"}))
    assert isinstance(errors, list)
    assert (errors[0].line, errors[0].column) == (7, "Flag")
    assert "TAS takes strings, numbers and dates, not booleans" in errors[0].reason
    not_numeric = validator(targets, "cases", "order-process").check(Record(2, {"n": "1"}))
    assert isinstance(not_numeric, list)
    assert not_numeric[0].column == "(process)"


def test_reserved_variable_is_refused_before_sending(targets: Targets) -> None:
    errors = validator(targets, "orders", "p").check(Record(2, {"_startproc_key": "x"}))
    assert isinstance(errors, list)
    assert errors[0].column == "_startproc_key" and "reserved" in errors[0].reason


def test_seen_keys_grow_and_remember_first_lines() -> None:
    seen = SeenKeys(capacity=8)
    for n in range(5000):
        assert seen.add(f"k{n}", n + 2) is None
    assert seen.add("k1234", 99999) == 1236
    assert seen.count == 5000
    assert seen.nbytes == 16384 * 12  # <= 50 % load, 12 bytes a slot


# ---------------------------------------------------------------- submit


CUSTOMERS = (
    "customer_id,name,amount,vip\n"
    "C-1,Ada,1.5,yes\n"
    "C-2,Bob,lots,no\n"
    ",Nobody,2,no\n"
    "C-1,Ada again,1.5,yes\n"
    "C-3,Cy,3,maybe\n"
    "C-4,Dee,4,no\n"
)
MAPS = ["customer_id=customerId", "name", "amount:float", "vip:bool"]


def test_invalid_rows_stop_the_batch_and_nothing_is_sent(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS)
    summary = go(path, cfg, targets, business_key="customer_id", maps=MAPS)
    assert (summary.rows, summary.valid, summary.invalid, summary.exit_code) == (6, 2, 4, 2)
    assert [(e.line, e.column) for e in summary.errors] == [
        (3, "amount"),
        (4, "customer_id"),
        (5, "customer_id"),
        (6, "vip"),
    ]
    assert summary.enqueued == 0 and summary.rejects_path is None
    assert redis_client.llen(QUEUE) == 0


def test_skip_invalid_sends_the_valid_rows_and_writes_rejects(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    path = write(tmp_path / "customers.csv", CUSTOMERS)
    summary = go(path, cfg, targets, business_key="customer_id", maps=MAPS, skip_invalid=True)
    assert (summary.valid, summary.invalid, summary.enqueued, summary.exit_code) == (2, 4, 2, 0)
    jobs = queued(redis_client)
    assert sorted(j["business_key"] for j in jobs) == ["C-1", "C-4"]
    job = next(j for j in jobs if j["business_key"] == "C-1")
    assert job["variables"] == {"customerId": "C-1", "name": "Ada", "amount": 1.5, "vip": True}
    assert job["idempotency_key"] == "batch:customers.csv:orders:order-process:C-1"
    assert job["batch_id"] == "customers.csv:orders:order-process"
    assert summary.rejects_path == str(tmp_path / "customers.rejects.csv")
    with (tmp_path / "customers.rejects.csv").open(encoding="utf-8") as handle:
        rejects = list(csv.DictReader(handle))
    assert [(r["line"], r["column"], r["customer_id"]) for r in rejects] == [
        ("3", "amount", "C-2"),
        ("4", "customer_id", ""),
        ("5", "customer_id", "C-1"),
        ("6", "vip", "C-3"),
    ]
    assert rejects[2]["error"] == "duplicate business key 'C-1', first on line 2"


def test_dry_run_validates_and_sends_nothing(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    clean = write(tmp_path / "clean.csv", "id,name\n1,a\n2,b\n")
    summary = go(clean, cfg, targets, dry_run=True, business_key="id")
    assert (summary.rows, summary.valid, summary.dry_run, summary.exit_code) == (2, 2, True, 0)
    dirty = write(tmp_path / "dirty.csv", CUSTOMERS)
    rejects = tmp_path / "out" / "rejects.jsonl"
    rejects.parent.mkdir()
    summary = go(
        dirty, cfg, targets, dry_run=True, business_key="customer_id", maps=MAPS, rejects=rejects
    )
    assert (summary.invalid, summary.exit_code) == (4, 2)
    assert redis_client.llen(QUEUE) == 0
    assert json.loads(rejects.read_text().splitlines()[0])["errors"][0]["column"] == "amount"
    with pytest.raises(ConfigError, match="--dry-run sends nothing"):
        go(clean, cfg, targets, dry_run=True, wait=1)


def test_jsonl_from_stdin_needs_a_batch_id(
    tmp_path: Path,
    cfg: Settings,
    targets: Targets,
    redis_client: redis.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b'{"id": "A", "n": 1, "tags": ["x"]}\n{"id": "B", "n": 2.5, "tags": []}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with pytest.raises(ConfigError, match="stdin needs --batch-id"):
        go("-", cfg, targets)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    summary = go("-", cfg, targets, batch_id="nightly", business_key="id")
    assert (summary.format, summary.enqueued) == ("jsonl", 2)
    variables = sorted((j["variables"] for j in queued(redis_client)), key=lambda v: v["id"])
    assert variables == [{"id": "A", "n": 1, "tags": ["x"]}, {"id": "B", "n": 2.5, "tags": []}]


def test_unknown_columns_and_targets_fail_before_any_row(
    tmp_path: Path, cfg: Settings, targets: Targets
) -> None:
    path = write(tmp_path / "f.csv", "id,amount\n1,2\n")
    with pytest.raises(ConfigError, match=r"column 'amont' is not in the header.*'amount'"):
        go(path, cfg, targets, maps=["amont:float"])
    with pytest.raises(ConfigError, match="column 'key' is not in the header"):
        go(path, cfg, targets, business_key="key")
    with pytest.raises(ConfigError, match=r"unknown target 'ordres'.*'orders'"):
        go(path, cfg, targets, target="ordres")


def test_batch_ids() -> None:
    assert default_batch_id("/data/x/customers.csv", "orders", "p") == "customers.csv:orders:p"
    with pytest.raises(ConfigError):
        check_batch_id("a\nb")
    with pytest.raises(ConfigError):
        check_batch_id("x" * 201)


def test_rows_started_by_an_earlier_run_are_not_sent_again(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    path = write(tmp_path / "r.csv", "id,n\nA,1\nB,2\nC,3\n")
    first = go(path, cfg, targets, business_key="id")
    assert first.enqueued == 3
    jobs = {j["business_key"]: j for j in queued(redis_client)}
    record(redis_client, jobs["A"], "created")
    record(redis_client, jobs["B"], "failed")  # failed rows are tried again
    redis_client.delete(QUEUE)
    second = go(path, cfg, targets, business_key="id", report=tmp_path / "report.csv")
    assert (second.enqueued, second.already_done) == (2, 1)
    assert sorted(j["business_key"] for j in queued(redis_client)) == ["B", "C"]
    with (tmp_path / "report.csv").open(encoding="utf-8") as handle:
        report = {r["business_key"]: r for r in csv.DictReader(handle)}
    assert (report["A"]["status"], report["A"]["instance_id"]) == ("created", "i-A")
    assert (report["B"]["status"], report["C"]["status"]) == ("pending", "pending")
    assert report["A"]["job_id"] == jobs["A"]["job_id"]


def record(client: redis.Redis, job: dict[str, Any], status_: str) -> None:
    """Store a result as the worker would (index by job id and by key, batch counters)."""
    from worker.delivery.results import ResultStore

    failed = status_ == "failed"
    result = Result.model_validate(
        {
            "job_id": job["job_id"],
            "idempotency_key": job["idempotency_key"],
            "target": job["target"],
            "status": status_,
            "instance_id": None if failed else f"i-{job['business_key']}",
            "error": {"kind": "permanent", "message": "no"} if failed else None,
            "batch_id": job["batch_id"],
        }
    )
    ResultStore(client, lambda _r: None, retention_days=1).record(result)


def test_wait_and_status_read_the_results_index(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    path = write(tmp_path / "w.csv", "id\nA\nB\nC\n")
    summary = go(path, cfg, targets, business_key="id")
    jobs = queued(redis_client)
    for job, outcome in zip(jobs, ["created", "duplicate"], strict=False):
        record(redis_client, job, outcome)
    tally = wait_for(redis_client, [j["job_id"] for j in jobs], 3, timeout=0.3, interval=0.05)
    assert (tally.created, tally.duplicate, tally.failed, tally.pending) == (1, 1, 0, 1)
    assert redis_client.hgetall(counters_key(summary.batch_id)) == {
        "created": "1",
        "duplicate": "1",
    }
    state = status(summary.batch_id, cfg)
    assert (state.done, state.expected, state.pending) == (2, 3, 1)
    assert state.meta["target"] == "orders"
    assert wait_for(redis_client, iter(()), 0, timeout=None) == Tally(0)


def test_a_wait_that_runs_out_still_writes_the_report(
    tmp_path: Path, cfg: Settings, targets: Targets
) -> None:
    path = write(tmp_path / "p.csv", "id,n\nA,1\nB,x\n")
    report = tmp_path / "report.jsonl"
    summary = go(
        path,
        cfg,
        targets,
        business_key="id",
        maps=["id", "n:int"],
        skip_invalid=True,
        wait=0.2,
        report=report,
    )
    assert (summary.waited, summary.pending, summary.exit_code) == (True, 1, 3)
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [(r["line"], r["status"]) for r in rows] == [(2, "pending"), (3, "rejected")]
    assert rows[1]["error"] == "n: 'x' is not an integer"


def test_earlier_answers_ignore_failed_results(redis_client: redis.Redis) -> None:
    job = {
        "job_id": "j1",
        "idempotency_key": "k1",
        "target": "orders",
        "batch_id": "b",
        "business_key": "x",
    }
    record(redis_client, job, "failed")
    assert earlier_answers(redis_client, "orders", ["k1", "k2"]) == {}
    record(redis_client, {**job, "job_id": "j2"}, "duplicate")
    assert earlier_answers(redis_client, "orders", ["k1", "k2"]) == {"k1": "j2"}
    assert redis_client.get(keys.result_by_idempotency_key("orders", "k1")) == "j2"


def test_interrupt_stops_at_a_chunk_boundary(
    tmp_path: Path, cfg: Settings, targets: Targets, redis_client: redis.Redis
) -> None:
    path = write(tmp_path / "i.csv", "id\n" + "".join(f"R{n}\n" for n in range(25)))

    def stop(chunks: int, summary: BatchSummary) -> None:
        if chunks == 2:
            raise KeyboardInterrupt

    with pytest.raises(BatchInterrupted) as stopped:
        go(path, cfg, targets, business_key="id", chunk=10, on_chunk=stop)
    summary = stopped.value.summary
    assert (summary.enqueued, summary.interrupted, summary.phase, summary.exit_code) == (
        20,
        True,
        "enqueue",
        1,
    )
    assert redis_client.llen(QUEUE) == 20


def test_interrupt_guard_defers_the_first_ctrl_c() -> None:
    import os
    import signal

    with InterruptGuard() as guard:
        os.kill(os.getpid(), signal.SIGINT)
        assert guard.requested  # the chunk would finish here
        with pytest.raises(KeyboardInterrupt):
            guard.checkpoint()


# ---------------------------------------------------------------- CLI


def test_rich_progress_draws_every_phase(tmp_path: Path, cfg: Settings, targets: Targets) -> None:
    from rich.console import Console

    from worker.batch.progress import RichProgress

    out = io.StringIO()
    path = write(tmp_path / "p.csv", "id\n" + "".join(f"R{n}\n" for n in range(50)))
    with RichProgress(Console(file=out, force_terminal=True, width=120)) as bars:
        summary = go(path, cfg, targets, business_key="id", chunk=7, progress=bars)
    assert summary.enqueued == 50
    assert "validating" in out.getvalue() and "enqueueing" in out.getvalue()
    assert "50 rows" in out.getvalue()


def test_bare_wait_means_no_limit() -> None:
    assert _with_wait_value(["f.csv", "--wait"]) == ["f.csv", "--wait", "inf"]
    assert _with_wait_value(["--wait", "f.csv"]) == ["--wait", "inf", "f.csv"]
    assert _with_wait_value(["--wait", "30", "f.csv"]) == ["--wait", "30", "f.csv"]


def test_cli_batch_file_and_batch_status(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch, redis_client: redis.Redis
) -> None:
    from worker.cli.app import app
    from worker.config import settings

    targets_file = write(
        tmp_path / "targets.toml",
        '[targets.orders]\nengine = "camunda8"\nbase_url = "http://127.0.0.1:9"\n',
    )
    monkeypatch.setenv("STARTPROC_BROKER_URL", redis_url)
    monkeypatch.setenv("STARTPROC_TARGETS", str(targets_file))
    settings.cache_clear()
    try:
        path = write(tmp_path / "c.csv", CUSTOMERS)
        runner = CliRunner()
        args = ["batch", str(path), "-t", "orders", "-p", "p", "--business-key", "customer_id"]
        dry = runner.invoke(app, [*args, "--map", "amount:float", "--dry-run", "--json"])
        assert dry.exit_code == 2, dry.output
        assert json.loads(dry.stdout)["invalid"] == 3
        sent = runner.invoke(app, [*args, "--skip-invalid", "--json"])
        assert sent.exit_code == 0, sent.output
        batch_id = json.loads(sent.stdout)["batch_id"]
        assert json.loads(sent.stdout)["enqueued"] == 4
        shown = runner.invoke(app, ["batch", "status", batch_id, "--json"])
        assert shown.exit_code == 0, shown.output
        assert json.loads(shown.stdout)["expected"] == 4
        unknown = runner.invoke(app, ["batch", "status", "nope"])
        assert unknown.exit_code == 4
        usage = runner.invoke(app, [*args, "--map", "amount:money"])
        assert usage.exit_code == 2 and "unknown type 'money'" in usage.output
    finally:
        settings.cache_clear()


def test_the_size_limit_counts_the_compact_form(targets: Targets) -> None:
    """Escaped in the job (6 characters each), 600,000 "é" still fit: the limit counts 1 each."""
    from worker.batch.rows import ValidRow

    check = validator(targets, "orders", "order-process").check
    fits = check(Record(2, {"a": "é" * 600_000}))
    assert isinstance(fits, ValidRow) and json.loads(fits.text) == {"a": "é" * 600_000}
    errors = check(Record(3, {"a": "x" * (1024 * 1024)}))
    assert isinstance(errors, list)
    assert errors[0].reason == "variables: 1048584 bytes is larger than the 1048576 limit"
