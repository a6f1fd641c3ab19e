"""Unknown query parameters are errors, not silently ignored.

``POST /batches?bussiness_key=id`` would otherwise run the batch *without* a
business key -- every row keyed by its content instead -- and report
success. Rejecting the typo with a "did you mean" costs nothing and saves a
batch that cannot be undone.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request

from worker.intake.problems import FieldError, ProblemError
from worker.validation import did_you_mean


def known_query_parameters(request: Request) -> set[str]:
    """Every query parameter the matched route (and its dependencies) declares."""
    names: set[str] = set()
    pending: list[Any] = [getattr(request.scope.get("route"), "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is not None:
            names.update(param.alias for param in dependant.query_params)
            pending.extend(dependant.dependencies)
    return names


async def reject_unknown_query(request: Request) -> None:
    """A FastAPI dependency: 422 naming each query parameter the route does not take."""
    known = known_query_parameters(request)
    unknown = sorted(set(request.query_params) - known)
    if not unknown:
        return
    errors = [
        FieldError(field=name, message=f"unknown query parameter{did_you_mean(name, known)}")
        for name in unknown
    ]
    raise ProblemError(
        422,
        "invalid",
        "Invalid request",
        "; ".join(f"{e.field}: {e.message}" for e in errors),
        errors=errors,
    )
