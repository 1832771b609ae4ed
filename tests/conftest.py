"""Shared fixtures: the repository's drafts and authorities, and a real headless Chromium."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.recipients import Authority, load_authorities

ROOT = Path(__file__).resolve().parent.parent
DRAFTS = sorted((ROOT / "drafts").glob("*.yaml"))
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="session")
def authorities() -> dict[str, Authority]:
    return {a.slug: a for a in load_authorities(ROOT / "recipients" / "authorities.yaml")}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    """Debian's Chromium driven by Playwright (never Playwright's own download).

    Module-scoped: Playwright's sync API keeps an event loop running while open, which would stop
    other modules' tests from running their own with asyncio.run.
    """
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
