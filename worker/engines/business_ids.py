"""Camunda 8.9 business ids: whose instance holds the id the engine refused (409)?

With the cluster's business id uniqueness control on, the engine refuses a
second active root instance with the same ``businessId`` for a process
definition and tenant. The worker then searches the holder:

* it carries the job's key tag: a lost attempt of this very job landed, and
  it is the start (``created``);
* another instance: ``failed`` / ``conflict`` naming it in
  ``error.existing_instance_id``, or, when the job asked for it with
  ``options.on_duplicate = "return_existing"``, a ``duplicate`` of it (unless
  the key's tag finds ours beside it: ours completed before the other began);
* none found (completed since, or not searchable yet), or the search failed:
  ambiguous, so the key is reconciled later and never re-sent blindly (the
  holder may be ours and complete before a resend).

Assumption (the spec is silent): ``parentProcessInstanceKey: {"$exists":
false}`` selects root instances, whose parent key is null.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from worker.engines.base import Started
from worker.errors import AmbiguousError, ConflictError, JobError, PermanentError

Search = Callable[[dict[str, Any]], dict[str, Any] | None]
"""The first process instance a search with this filter finds, or None."""

RETURN_EXISTING = "return_existing"


def instance_key(item: dict[str, Any]) -> str:
    return str(item["processInstanceKey"])


def resolve_clash(
    search: Search, body: dict[str, Any], clash: PermanentError, on_duplicate: str
) -> Started:
    """The outcome of a start the engine refused because its business id is held."""
    business_id = body["businessId"]
    tag = body["tags"][-1]  # the adapter puts the key's tag last
    criteria: dict[str, Any] = {
        "businessId": business_id,
        "state": "ACTIVE",
        "parentProcessInstanceKey": {"$exists": False},  # root instances only
    }
    criteria.update(
        {k: body[k] for k in ("processDefinitionId", "processDefinitionKey", "tenantId")
         if k in body}
    )
    try:
        holder = search(criteria)
        if holder is not None and tag in (holder.get("tags") or []):
            return Started(instance_key(holder), 409, holder)
        ours = search({"tags": [tag]})
        if ours is not None:
            return Started(instance_key(ours), 409, ours)
        existing = instance_key(holder) if holder is not None else None
    except (JobError, KeyError, TypeError) as exc:
        reason = exc.message if isinstance(exc, JobError) else "no instance key in the answer"
        raise AmbiguousError(
            f"{clash.message}; looking up the instance holding business id "
            f"{business_id!r} failed ({reason}): it may be ours",
            http_status=409,
            engine_error=clash.engine_error,
        ) from None
    if existing is None:
        raise AmbiguousError(
            f"{clash.message}; no active instance with business id {business_id!r} "
            "found (completed since, or not searchable yet): it may be ours",
            http_status=409,
            engine_error=clash.engine_error,
        )
    if on_duplicate == RETURN_EXISTING:
        assert holder is not None
        return Started(existing, 409, holder, existing=True)
    raise ConflictError(
        f"{clash.message} (held by instance {existing})",
        http_status=409,
        engine_error=clash.engine_error,
        existing_instance_id=existing,
    )
