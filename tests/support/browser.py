"""A real browser for the console's tests: Debian's chromium, driven by Playwright.

Never a browser Playwright downloads: ``/usr/bin/chromium`` (``apt-get install
chromium``; ``.ci/run`` installs it). Without it the tests fail -- on CI and
locally alike -- with one line saying what to install: a browser test that
skips would pass without having looked at a single page.

``STARTPROC_CONSOLE_SCREENSHOTS=docs/console`` makes `screenshot` keep a PNG
of each page the tests name (how the README's pictures are made).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
SHOTS_ENV = "STARTPROC_CONSOLE_SCREENSHOTS"
VIEWPORT = {"width": 1280, "height": 860}


def chromium() -> str:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get update && apt-get install -y chromium) to run the console's browser tests",
            pytrace=False,
        )
    return str(CHROMIUM)


@contextmanager
def launched() -> Iterator[object]:
    """A headless chromium (``playwright.sync_api.Browser``), closed afterwards."""
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    path = chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        try:
            yield browser
        finally:
            browser.close()


def screenshot(page: object, name: str) -> None:
    """Keep ``<name>.png`` of the page when `SHOTS_ENV` names a folder; else nothing."""
    folder = os.environ.get(SHOTS_ENV)
    if not folder:
        return
    Path(folder).mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]
