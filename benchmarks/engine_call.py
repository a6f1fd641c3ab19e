"""Instructions per Camunda 8 start call (`Engine.start`), counted by callgrind.

CPU time on a shared machine is noise; callgrind's instruction counts are
not. The script runs itself twice under ``valgrind --tool=callgrind``, with
N = 0 and N = ``--n`` start calls after the same warm-up, against a
zero-latency sandbox in its own (uncounted) process; the difference over N
is one call's instructions: building the request, credentials, the HTTP
exchange, reading and classifying the answer.

    python benchmarks/engine_call.py --n 300            # needs valgrind
    python benchmarks/engine_call.py --n 300 --direct   # no valgrind: µs per call
    python benchmarks/engine_call.py --floors           # also the same exchange in raw
                                                        # http.client, urllib3 (and pycurl)

``--floors`` counts the same start (JSON body, JSON answer decoded) made
straight with each client library, no worker code: what is left for our own
code above the library. pycurl is counted when it is installed
(``pip install pycurl``); the worker does not use it (README, "Why not libcurl").

Run as a file, not ``-m``: with ``PYTHONPATH=/path/to/other/checkout`` it
measures that checkout's ``worker`` (a baseline); the output names it.
Not part of ``run_all`` (it needs valgrind and takes a few minutes).
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import os
import re
import select
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WARMUP = 30
PROCESS = "order-process"


def sandbox() -> tuple[subprocess.Popen[bytes], str]:
    """``startproc sandbox camunda8`` on a free port, in its own process."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "worker.cli", "sandbox", "camunda8", "--port", "0", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else b""
    if not line:
        proc.kill()
        raise RuntimeError("the sandbox did not start within 60 s")
    return proc, str(json.loads(line)["base_urls"]["camunda8"])


def calls(base_url: str, n: int) -> float:
    """Warm up, then ``n`` start calls; seconds they took."""
    from worker.engines import build_engine
    from worker.models import Job
    from worker.targets import Targets

    targets = Targets.from_dict(
        {"targets": {"bench": {"engine": "camunda8", "base_url": base_url}}}, env={}
    )
    engine = build_engine(targets["bench"])
    jobs = [
        Job.model_validate({"target": "bench", "process": PROCESS, "business_key": f"k-{i}",
                            "variables": {"orderId": f"o-{i}", "amount": 12.5}})
        for i in range(WARMUP + n)
    ]
    for i in range(WARMUP):
        engine.start(jobs[i], f"warm-{i}")
    started = time.perf_counter()
    for i in range(WARMUP, WARMUP + n):
        engine.start(jobs[i], f"key-{os.getpid()}-{i}")
    return time.perf_counter() - started


def raw_calls(client: str, base_url: str, n: int) -> None:
    """Warm up, then ``n`` of the same start straight through ``client``: the floor."""
    from urllib.parse import urlsplit

    url = base_url.rstrip("/") + "/v2/process-instances"
    parts = urlsplit(url)
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": "engine-call-bench"}
    send: Any
    if client == "http.client":
        import http.client

        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=30)

        def send(body: bytes) -> bytes:
            connection.request("POST", parts.path, body=body, headers=headers)
            return connection.getresponse().read()
    elif client == "urllib3":
        import urllib3

        pool = urllib3.HTTPConnectionPool(parts.hostname or "", parts.port, maxsize=4)
        timeout = urllib3.Timeout(connect=5, read=30)

        def send(body: bytes) -> bytes:
            return pool.urlopen("POST", parts.path, body=body, headers=headers, retries=False,
                                redirect=False, timeout=timeout).data
    else:
        import pycurl  # type: ignore[import-not-found, import-untyped, unused-ignore]

        curl = pycurl.Curl()
        curl.setopt(pycurl.URL, url)
        curl.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in headers.items()])
        curl.setopt(pycurl.TIMEOUT_MS, 30_000)

        def send(body: bytes) -> bytes:
            buffer = io.BytesIO()
            curl.setopt(pycurl.POSTFIELDS, body)
            curl.setopt(pycurl.WRITEDATA, buffer)
            curl.perform()
            return buffer.getvalue()

    for i in range(WARMUP + n):
        body = {"processDefinitionId": PROCESS, "variables": {"orderId": f"o-{i}", "amount": 12.5},
                "operationReference": i + 1}
        json.loads(send(json.dumps(body).encode()))


def instructions(base_url: str, n: int, folder: Path, client: str = "worker") -> int:
    """Instructions of one run of this script with ``n`` calls, counted by callgrind."""
    out = folder / f"callgrind.{client}.{n}.out"
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         __file__, "--child", "--client", client, "--url", base_url, "--n", str(n)],
        check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    match = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
    if match is None:
        raise RuntimeError(f"no totals in {out}")
    return int(match.group(1))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="start calls to count")
    parser.add_argument("--url", help="a running Camunda 8 sandbox's base URL")
    parser.add_argument("--direct", action="store_true", help="time the calls, no valgrind")
    parser.add_argument("--floors", action="store_true",
                        help="also count the raw clients (http.client, urllib3, pycurl)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", default="worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        if args.client == "worker":
            calls(args.url, args.n)
        else:
            raw_calls(args.client, args.url, args.n)
        return
    import worker

    print(f"worker: {Path(worker.__file__).parent}")
    proc, base_url = sandbox() if args.url is None else (None, args.url)
    try:
        if args.direct:
            seconds = calls(base_url, args.n)
            print(f"{args.n} start calls: {seconds / args.n * 1e6:.0f} µs per call")
            return
        clients = ["worker"]
        if args.floors:
            clients += ["http.client", "urllib3"]
            clients += ["pycurl"] if importlib.util.find_spec("pycurl") else []
        with tempfile.TemporaryDirectory() as folder:
            for client in clients:
                base = instructions(base_url, 0, Path(folder), client)
                total = instructions(base_url, args.n, Path(folder), client)
                name = "Engine.start" if client == "worker" else f"raw {client}"
                print(f"{name}: N=0: {base:,} instructions; N={args.n}: {total:,}; "
                      f"{(total - base) / args.n:,.0f} per start call", flush=True)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
