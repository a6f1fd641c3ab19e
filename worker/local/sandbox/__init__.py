"""Stateful emulators of the five workflow engines, on a real HTTP server.

Used by the tests, ``make demo`` and ``startproc sandbox``; nothing in the
worker imports this package. Only werkzeug and the standard library.

    from worker.local.sandbox import SandboxServer
    with SandboxServer("all") as sandbox:
        sandbox.base_url("camunda7")   # -> http://127.0.0.1:PORT/camunda7/engine-rest
        sandbox.app("camunda8").faults.script([{"status": 503}])
"""

from worker.local.sandbox.base import EngineApp
from worker.local.sandbox.server import ENGINE_NAMES, SandboxServer

__all__ = ["ENGINE_NAMES", "EngineApp", "SandboxServer"]
