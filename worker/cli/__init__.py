"""The ``startproc`` command line (typer + rich). Imported only by the console script."""

from __future__ import annotations


def main() -> None:
    from worker.cli.app import run

    run()
