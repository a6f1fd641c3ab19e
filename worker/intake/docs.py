"""OpenAPI pieces shared by the routes, and the document the app serves and commits.

The committed ``docs/openapi.json`` is exactly `openapi_text` of a fresh app,
so a test can compare the two byte for byte and fail when a route changes
without the document being regenerated
(``startproc serve --print-openapi > docs/openapi.json``).
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from worker import __version__
from worker.intake.problems import PROBLEM_TYPE, Problem, title_for
from worker.intake.schemas import REF, job_schema

PROBLEM_REF = {"$ref": REF.format(model="Problem")}
DESCRIPTION = """\
HTTP intake of process-start-worker: enqueue start jobs (one, a list, or a
CSV/JSONL batch), read their results, check health, scrape metrics.

Every error is an RFC 7807 `application/problem+json` document; validation
problems list each invalid field in `errors`. Authenticate with
`Authorization: Bearer <token>` (a token of `STARTPROC_INTAKE_TOKENS`);
`/healthz`, `/metrics` and `/openapi.json` need no token. A read-only token
(`NAME:TOKEN:ro`) may only read: its POSTs are 403.
"""


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries for problem+json errors (FastAPI would say application/json)."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in codes:
        entry: dict[str, Any] = {
            "description": title_for(code),
            "content": {PROBLEM_TYPE: {"schema": PROBLEM_REF}},
        }
        if code == 401:
            entry["headers"] = {
                "WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}
            }
        out[code] = entry
    return out


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus the schemas the routes refer to by ``$ref``."""
    if app.openapi_schema:
        return app.openapi_schema
    doc = get_openapi(
        title="process-start-worker intake",
        version=__version__,
        description=DESCRIPTION,
        routes=app.routes,
    )
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    job, job_defs = job_schema()
    problem = Problem.model_json_schema(ref_template=REF)
    schemas.update({**job_defs, "Job": job, **problem.pop("$defs", {}), "Problem": problem})
    doc["components"]["schemas"] = dict(sorted(schemas.items()))
    app.openapi_schema = doc
    return doc


def openapi_text(app: FastAPI) -> str:
    """The document as committed: stable key order from FastAPI, 2-space indent, newline."""
    return json.dumps(build_openapi(app), indent=2, ensure_ascii=False) + "\n"
