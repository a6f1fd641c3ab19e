"""HTTP intake (``startproc serve``): enqueue start jobs and read results over HTTP.

Modules: `app` (the FastAPI app factory), `auth` (bearer tokens), `problems`
(RFC 7807 errors), `middleware` (size limits, last-resort 500), `params`
(unknown query parameters), `jobs`, `batches` and `ops` (the routes),
`schemas` and `docs` (the OpenAPI document), `context` (what routes share),
`server` (uvicorn on a pre-bound socket).
"""

from __future__ import annotations

from worker.intake.app import create_app
from worker.intake.docs import openapi_text

__all__ = ["create_app", "openapi_text"]
