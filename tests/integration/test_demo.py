"""`startproc demo` end to end, in its own process, on its own embedded Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_prints_five_created_results_a_duplicate_and_an_invalid_job() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STARTPROC_")}
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli.__main__", "demo", "--json"],
        env=env, capture_output=True, text=True, timeout=180,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    results = json.loads(done.stdout)
    assert [r["engine"] for r in results[:5]] == [
        "camunda8", "camunda7", "processmaker4", "blueworks", "tas",
    ]
    assert [r["status"] for r in results] == ["created"] * 5 + ["duplicate", "failed"]
    assert results[5]["instance_id"] == results[0]["instance_id"]
