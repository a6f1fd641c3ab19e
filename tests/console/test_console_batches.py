"""A batch file through the console in chromium, against a real worker.

200 rows with two bad ones: the validation report shows both inline (line,
column, reason) before anything is sent; the cells are corrected on the page,
the file validates clean, the run starts, the progress bar reaches 200 with
live counts, and the per-row report downloads with one line per row.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

from playwright.sync_api import expect

from tests.console.conftest import OPERATOR
from tests.console.helpers import sign_in
from tests.integration.conftest import Pipeline
from tests.support.browser import screenshot
from worker import batch
from worker.config import settings
from worker.local.sandbox import SandboxServer

ROWS = 200
BAD = {52: ("amount", "twelve"), 152: ("since", "2026-13-45")}  # file line -> (column, value)


def customers_csv(folder: Path) -> Path:
    path = folder / "customers.csv"
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["customer_id", "amount", "since", "note"])
        for n in range(1, ROWS + 1):
            row = {"amount": f"{n}.50", "since": "2026-01-15"}
            line = n + 1
            if line in BAD:
                column, value = BAD[line]
                row[column] = value
            writer.writerow([f"C{n:04d}", row["amount"], row["since"], f"<b>row {n}</b>"])
    return path


def test_a_csv_with_two_bad_rows_is_fixed_started_followed_and_reported(
    page: Any, live: Pipeline, sandbox: SandboxServer, tmp_path: Path
) -> None:
    sign_in(page, OPERATOR, "/ui/batches")
    page.get_by_label("File").set_input_files(str(customers_csv(tmp_path)))
    page.get_by_label("Target").select_option("orders")
    page.get_by_label("Process", exact=True).fill("order-process")
    page.get_by_label("Business-key column").fill("customer_id")
    page.get_by_label("Column mapping").fill("customer_id\namount:float\nsince=customerSince:date")
    page.get_by_role("button", name="Upload and validate").click()

    expect(page.locator("[data-validation]")).to_contain_text("200 rows: 198 valid, 2 invalid")
    for line, (column, value) in BAD.items():
        row = page.locator(f'tr[data-line="{line}"]')
        expect(row.locator("th")).to_have_text(str(line))
        expect(row.locator("td").first).to_contain_text(column)
        cell = row.get_by_label(f"line {line}, {column}")
        expect(cell).to_have_value(value)
        expect(cell).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("line 52, note")).to_have_value("<b>row 51</b>")  # as text
    expect(page.locator("table.bad-rows b")).to_have_count(0)  # never as markup
    expect(page.get_by_role("button", name="Start 198 rows")).to_be_disabled()
    assert sandbox.app("camunda8").count() == 0, "nothing is sent before the file is valid"
    screenshot(page, "batch-validation")

    page.get_by_label("line 52, amount").fill("12.50")
    page.get_by_label("line 152, since").fill("2026-03-01")
    page.get_by_role("button", name="Save the fixes and validate again").click()
    expect(page.locator("[data-validation]")).to_contain_text("200 rows: 200 valid, 0 invalid")

    page.get_by_role("button", name="Start 200 rows").click()
    expect(page.locator("#bar")).to_be_visible()
    screenshot(page, "batch-progress")
    expect(page.locator('[data-field="done"]')).to_have_text("200", timeout=120_000)
    expect(page.locator('[data-field="created"]')).to_have_text("200")
    expect(page.locator("#bar")).to_have_attribute("value", "200")
    link = page.get_by_role("link", name="Download the per-row report")
    expect(link).to_be_visible(timeout=30_000)
    screenshot(page, "batch-done")
    with page.expect_download() as download:
        link.click()
    saved = tmp_path / "report.csv"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "customers.report.csv"
    rows = list(csv.DictReader(saved.open(encoding="utf-8")))
    assert [int(r["line"]) for r in rows] == list(range(2, ROWS + 2))
    assert {r["status"] for r in rows} == {"created"}
    assert rows[50]["business_key"] == "C0051" and rows[50]["instance_id"]
    assert sandbox.app("camunda8").count() == ROWS
    status = batch.status("customers.csv:orders:order-process", settings())
    assert (status.created, status.failed, status.expected) == (ROWS, 0, ROWS)
    variables = {
        i["variables"]["customer_id"]: i["variables"] for i in sandbox.app("camunda8").instances
    }
    assert variables["C0051"]["amount"] == 12.5, "the fixed cell was sent, typed"
    assert variables["C0151"]["customerSince"] == "2026-03-01"
    expect(page.get_by_role("button", name=re.compile("Re-run"))).to_have_count(0)


def test_failed_rows_are_re_run_under_the_same_keys(
    page: Any, live: Pipeline, sandbox: SandboxServer, tmp_path: Path
) -> None:
    path = tmp_path / "small.jsonl"
    path.write_text("".join(f'{{"id": "S{n}", "n": {n}}}\n' for n in range(1, 11)))
    sandbox.app("camunda8").faults.script([{"status": 400}] * 3)
    sign_in(page, OPERATOR, "/ui/batches")
    page.get_by_label("File").set_input_files(str(path))
    page.get_by_label("Process", exact=True).fill("order-process")
    page.get_by_label("Business-key column").fill("id")
    page.get_by_role("button", name="Upload and validate").click()
    page.get_by_role("button", name="Start 10 rows").click()
    expect(page.locator('[data-field="failed"]')).to_have_text("3", timeout=60_000)
    rerun = page.get_by_role("button", name="Re-run the failed rows")
    expect(rerun).to_be_visible(timeout=30_000)
    rerun.click()
    expect(page.locator("label[for=bar]")).to_contain_text("Run 2")
    expect(page.locator('[data-field="created"]')).to_have_text("10", timeout=60_000)
    expect(page.locator('[data-field="failed"]')).to_have_text("0")
    expect(page.get_by_role("link", name="Download the per-row report")).to_be_visible()
    assert sandbox.app("camunda8").count() == 10, "the 7 started rows were not started again"
