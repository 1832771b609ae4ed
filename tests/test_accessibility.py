"""Every rendered draft in a real headless Chromium: axe-core WCAG 2.1 A/AA, and no sideways scroll on a phone."""

from __future__ import annotations

from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe

from conftest import DRAFTS
from newsletter.load import load_draft
from newsletter.render import Web, render
from test_render import OWN_TEMPLATES

WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
SPECIAL = Path(__file__).resolve().parent / "fixtures" / "special" / "2025-04-farewell.yaml"
"""A special issue with every newer field: contents list, pictures in a letter and an article, notes, documents."""


@pytest.fixture(scope="module", params=[*DRAFTS, SPECIAL], ids=lambda p: p.stem)
def html(request: pytest.FixtureRequest, authorities: dict) -> str:
    issue = load_draft(request.param, authorities).issue
    folder = f"https://wm.example.org/archive/{issue.issue}/"
    rendered = render(
        issue, authorities["sandwell-childrens-trust"], web=Web(page=folder, files=folder), settings=OWN_TEMPLATES
    )
    page_html, _ = rendered.fill(email="zoe.smith@sandwell.example.org", unsubscribe_url="https://example.org/u/t")
    return page_html


@pytest.mark.parametrize("width", [375, 800])
def test_no_wcag_violations(browser: object, html: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.set_content(html)
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    page.close()
    assert results.violations_count == 0, results.generate_report()
    assert results.response["passes"], "axe ran no checks"


def test_no_horizontal_scroll_on_a_phone(browser: object, html: str) -> None:
    page = browser.new_page(viewport={"width": 375, "height": 800})  # type: ignore[attr-defined]
    page.set_content(html)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    column = page.evaluate("document.querySelector('.mj-column-per-100').getBoundingClientRect().width")
    page.close()
    assert overflow <= 0
    assert column <= 375
