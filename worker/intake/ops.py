"""``/healthz`` and ``/metrics``: unauthenticated, for load balancers and Prometheus.

Neither needs a token (probes and scrapers rarely carry one) and neither
reveals job data: health names only which dependency failed, metrics only
counts.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from worker.intake.context import intake_of
from worker.intake.docs import problems
from worker.intake.problems import problem_response
from worker.intake.schemas import Health
from worker.metrics import CONTENT_TYPE_LATEST, render

router = APIRouter(tags=["operations"])


@router.get(
    "/healthz",
    summary="Redis and the broker are reachable",
    response_model=Health,
    responses=problems(503),
)
async def healthz(request: Request) -> JSONResponse:
    """200 when Redis and the broker answer within seconds; 503 problem naming the failure."""
    checks = await run_in_threadpool(intake_of(request).health)
    failed = [f"{name}: {c.get('error')}" for name, c in checks.items() if not c["ok"]]
    if failed:
        return problem_response(
            503,
            "unavailable",
            "Service Unavailable",
            "; ".join(failed),
            instance=request.url.path,
            extra={"checks": checks},
            headers={"Retry-After": "5", "Cache-Control": "no-store"},
        )
    return JSONResponse(
        Health.model_validate({"status": "ok", "checks": checks}).model_dump(exclude_none=True),
        headers={"Cache-Control": "no-store"},
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    """Job counters and backlog gauges in the Prometheus text format."""
    registry = intake_of(request).metrics_registry
    body = await run_in_threadpool(render, registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
