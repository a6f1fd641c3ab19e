"""The operator console: web pages under ``/ui`` of ``startproc serve``.

For the people who run batches, watch targets and settle dead letters.
Server-rendered (Jinja2, autoescape on), with a small script of our own for
the live parts; everything it needs ships in the package (``templates/``,
``static/``), nothing comes from a CDN.

Modules: `app` (the app, errors, security headers, what pages share),
`session` (sign-in with intake tokens, signed cookies, CSRF, roles),
`render` (templates and filters), one module per page (`login`,
`overview`, `jobs`, `batches` with `batch_runs`, `dead_letters`,
`schedules`).
"""

from __future__ import annotations

from worker.console.app import create_console

__all__ = ["create_console"]
