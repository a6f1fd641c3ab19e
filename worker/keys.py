"""Idempotency keys, fingerprints and every Redis key name, in one place.

A key is scoped by target: the same key for two targets is two starts
(CONTRACT section 3). Redis key names live here so the ledger, the results
index and the tools that inspect them never drift apart.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import uuid
from typing import Any

PREFIX = "startproc"


def idempotency_key(
    *, target: str, process: str, explicit: str | None, business_key: str | None, job_id: str
) -> str:
    """The job's key: explicit, else derived from the business key, else the job id.

    Deriving from the job id still makes Celery redeliveries and retries of
    that one job safe, which is all a producer without keys can expect.
    """
    if explicit:
        return explicit
    if business_key:
        return f"{target}:{process}:{business_key}"
    return f"job:{job_id}"


def fingerprint(payload: dict[str, Any]) -> str:
    """Hash of the normalised payload: same key + other fingerprint = conflict."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


_ids = random.Random()  # seeded from the OS; a private one, so nobody's seed() repeats it
os.register_at_fork(after_in_child=_ids.seed)  # a forked child draws its own ids


def unique_id() -> uuid.UUID:
    """A random (version 4) UUID for what must be unique, never secret: a delivery tag, a
    claim's call token.

    `uuid.uuid4` reads the OS's randomness on every call, a syscall that gives up
    the GIL (twice per start); this generator is seeded from it once per process.
    """
    return uuid.UUID(int=_ids.getrandbits(128), version=4)


def short_hash(text: str, length: int = 32) -> str:
    """A stable, charset-safe digest for places with strict patterns (C8 tags)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def int64_reference(text: str) -> int:
    """A positive int64 derived from ``text`` (C8 ``operationReference`` must be >= 1)."""
    value = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") & (2**63 - 1)
    return value or 1


def ledger_key(target: str, key: str) -> str:
    return f"{PREFIX}:ledger:{target}:{key}"


def result_key(job_id: str) -> str:
    return f"{PREFIX}:result:{job_id}"


def result_by_idempotency_key(target: str, key: str) -> str:
    return f"{PREFIX}:result-by-key:{target}:{key}"


def glob_literal(text: str) -> str:
    """``text`` escaped for a SCAN/HSCAN pattern: matched literally, never as a glob."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


def result_by_key_any_target(key: str) -> str:
    """A SCAN pattern matching ``key`` literally under any target."""
    return f"{PREFIX}:result-by-key:*:{glob_literal(key)}"


def result_waiters(job_id: str) -> str:
    return f"{PREFIX}:notify:{job_id}"


RESULTS_LOG = f"{PREFIX}:results-log"
OUTBOX = f"{PREFIX}:outbox"
DLQ = f"{PREFIX}:dlq"
DLQ_ORDER = f"{DLQ}:order"
DLQ_KINDS = f"{DLQ}:kinds"
"""Dead-letter entries per kind, kept by the scripts that add and remove entries."""
INFLIGHT = f"{PREFIX}:inflight"
INFLIGHT_DEADLINES = f"{PREFIX}:inflight:deadlines"
INFLIGHT_HOLDERS = f"{PREFIX}:inflight:holders"
"""Job id -> the worker process running it now (`worker.delivery.liveness`)."""
INFLIGHT_RUNNING = f"{PREFIX}:inflight:running"
"""Jobs a worker took and has not decided, scored by when a worker first took them."""
REDIS_EPOCH = f"{PREFIX}:redis-epoch"
"""The Redis server the ledger last saw (``run_id``) and since when it doubts older writes."""


def alive_key(holder: str) -> str:
    """A worker process's heartbeat (expires when it stops beating)."""
    return f"{PREFIX}:alive:{holder}"


def batch_counters(batch_id: str) -> str:
    """Results per status of a batch (incremented when each result is recorded)."""
    return f"{PREFIX}:batch:{batch_id}"


def batch_meta(batch_id: str) -> str:
    return f"{PREFIX}:batch-meta:{batch_id}"


OUTCOMES_TTL = 2 * 3600  # seconds a minute's outcome counters are kept (the console shows 1 h)


def outcomes_minute(minute: int) -> str:
    """Results recorded in one minute (Unix time // 60), by ``target|status``."""
    return f"{PREFIX}:outcomes:{minute}"


WORKERS = f"{PREFIX}:workers"  # hostname -> last beacon (Unix seconds); see worker.delivery.beacons


def schedule_state_key(name: str) -> str:
    """A schedule's beat state: ``cursor_ms``, ``last_slot_ms``, ``last_job_id``."""
    return f"{PREFIX}:schedule:{name}"


def deliveries_key(job_id: str) -> str:
    """Counts every delivery of a job, retries included."""
    return f"{PREFIX}:deliveries:{job_id}"


def retried_key(job_id: str) -> str:
    """Counts deliveries of a job that ended in a planned retry (so were not lost)."""
    return f"{PREFIX}:retried:{job_id}"


def oauth_token_key(identity: str) -> str:
    """A shared OAuth2 token (a secret: the value is never logged) of one client identity."""
    return f"{PREFIX}:oauth-token:{short_hash(identity)}"


def oauth_token_lock(identity: str) -> str:
    """Held by the one worker fetching the shared token of ``identity``."""
    return f"{PREFIX}:oauth-token-lock:{short_hash(identity)}"


RATES = f"{PREFIX}:rates"
"""The targets with a shared rate bucket (for the rate gauge)."""


def rate_key(target: str) -> str:
    """A target's shared rate bucket: tokens, current (adaptive) rate, epoch."""
    return f"{PREFIX}:rate:{target}"
