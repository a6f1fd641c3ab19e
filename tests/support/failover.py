"""What a Redis failover can take back, and the Camunda 8.9 sandbox set up for uniqueness.

A replica promoted before it received the last writes has no ledger entry
for a key a worker already started, and no result for that job: the job is
redelivered and claims the key as if it were new. Only the engine can still
tell that it was started.
"""

from __future__ import annotations

import redis

from worker.keys import (
    deliveries_key,
    ledger_key,
    result_by_idempotency_key,
    result_key,
    retried_key,
)
from worker.local.sandbox.camunda8 import Camunda8App


def lose_recent_writes(client: redis.Redis, target: str, key: str, job_id: str) -> None:
    """Forget the ledger entry of ``key`` and everything recorded for ``job_id``."""
    client.delete(
        ledger_key(target, key),
        result_key(job_id),
        result_by_idempotency_key(target, key),
        deliveries_key(job_id),
        retried_key(job_id),
    )


def enforce_business_ids(app: Camunda8App) -> None:
    """The 8.9 API with the cluster's business id uniqueness control on."""
    app.configure(api_version="8.9", business_id_unique=True)


def default_camunda8(app: Camunda8App) -> None:
    """Back to the sandbox's defaults (8.8, no uniqueness): the sandbox is shared."""
    app.configure(api_version="8.8", business_id_unique=False)
