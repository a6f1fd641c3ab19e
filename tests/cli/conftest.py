"""The CLI's tests drive the real ``startproc`` against the integration stack's pipeline."""

from tests.integration.conftest import live, pipeline  # noqa: F401  (fixtures, shared)
