"""Rendering: every sentence an editor wrote reaches both parts, and the known MJML/premailer traps stay shut."""

from __future__ import annotations

import re
from pathlib import Path

import lxml.html
import pytest
from conftest import DRAFTS
from content import normalise, sentences, urls

from newsletter.load import load_draft
from newsletter.model import Issue
from newsletter.render import GMAIL_CLIP_BYTES, PERSONAL, render


def visible_text(html: str) -> str:
    body = lxml.html.document_fromstring(html).body
    for hidden in body.xpath("//style|//script"):
        hidden.drop_tree()
    return normalise(body.text_content())


@pytest.fixture(scope="module", params=DRAFTS, ids=lambda p: p.stem)
def rendered(request: pytest.FixtureRequest, authorities: dict) -> tuple[Path, object]:
    draft = load_draft(request.param, authorities)
    return request.param, render(draft.issue, authorities["walsall"])


def test_there_are_three_drafts() -> None:
    assert [p.stem for p in DRAFTS] == ["2023-11", "2025-07", "2025-09"]


def test_every_sentence_reaches_the_html(rendered: tuple) -> None:
    path, result = rendered
    text = visible_text(result.html)
    wanted = sentences(path)
    assert len(wanted) > 40
    missing = [s for s in wanted if s not in text]
    assert not missing, missing


def test_every_sentence_reaches_the_text_part(rendered: tuple) -> None:
    path, result = rendered
    text = normalise(result.text)
    missing = [s for s in sentences(path) if s not in text]
    assert not missing, missing


def test_every_link_reaches_both_parts(rendered: tuple) -> None:
    path, result = rendered
    hrefs = set(lxml.html.document_fromstring(result.html).xpath("//a/@href"))
    for url in urls(path):
        assert url in hrefs, url
        assert url.removeprefix("mailto:") in result.text, url


def test_html_is_well_under_gmail_clipping(rendered: tuple) -> None:
    path, result = rendered
    print(f"{path.name}: {result.size / 1024:.1f} KB of HTML")
    assert result.size < GMAIL_CLIP_BYTES


def test_known_traps_are_handled(rendered: tuple) -> None:
    _, result = rendered
    html = result.html
    assert html.startswith("<!DOCTYPE html>")
    assert "fonts.googleapis" not in html and "<link" not in html
    media = re.findall(r"@media[^{]*\{[^}]*\}", html)
    assert media and all("!important" in rule for rule in media)
    doc = lxml.html.document_fromstring(html)
    assert doc.get("lang") == "en-GB"
    assert doc.findtext(".//title").startswith("Regional Update, ")
    assert all(t.get("role") == "presentation" for t in doc.iter("table"))
    assert "font-family:-apple-system" in html.replace(" ", "")
    # Inline styles were applied by premailer (so clients that drop <style> still get 16px+ text).
    for paragraph in doc.xpath("//p"):
        if not paragraph.text_content().strip():
            continue  # a divider
        sizes = re.findall(r"font-size:\s*(\d+)px", paragraph.get("style", "") + " " +
                           " ".join(a.get("style", "") for a in paragraph.iterancestors() if a.tag == "div"))
        assert sizes and int(sizes[0]) >= 16, lxml.html.tostring(paragraph)[:200]


def test_headings_are_in_order(rendered: tuple) -> None:
    _, result = rendered
    levels = [int(h.tag[1]) for h in lxml.html.document_fromstring(result.html).iter("h1", "h2", "h3", "h4")]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(levels, levels[1:])), levels


def test_text_part_layout() -> None:
    result = render(load_draft(Path(DRAFTS[-1])).issue)
    text = result.text
    assert "From Birmingham Children’s Trusts Chief Executive and our RIIA Sponsor\n=====" in text
    assert "\nPWLE Seminar: Child contact problems and the Family Court (FREE)\n-----" in text
    assert "When: Wednesday 15 October 2025, 9:30am to 11am" in text
    assert "Where: online (Microsoft Teams)" in text
    assert re.search(r"^• Hear the emerging findings", text, re.M)
    assert re.search(r"^[^\n]+: https://example\.org/lost-link/pwle-seminar-child-contact-family-court$", text, re.M)
    assert max(len(line) for line in text.splitlines() if "https://" not in line) <= 78


def test_audience_sections_only_in_their_variants(authorities: dict) -> None:
    issue = load_draft(DRAFTS[-1]).issue
    data = issue.model_dump(by_alias=True)
    data["sections"] = [{s.pop("kind"): s} for s in data["sections"]]
    data["sections"].append({"article": {"heading": "Only for Dudley", "body": "Dudley colleagues only.",
                                         "audience": ["dudley"]}})
    targeted = Issue.model_validate(data)
    assert "Dudley colleagues only." in render(targeted, authorities["dudley"]).text
    assert "Dudley colleagues only." in visible_text(render(targeted, authorities["dudley"]).html)
    assert "Dudley colleagues only." not in render(targeted, authorities["walsall"]).text
    assert "Dudley colleagues only." not in render(targeted, authorities["walsall"]).html
    assert "you work for Dudley Metropolitan Borough Council" in normalise(render(targeted, authorities["dudley"]).text)


def test_fill_personal_fields_escapes_html() -> None:
    result = render(load_draft(DRAFTS[0]).issue)
    assert all(marker in result.html and marker in result.text for marker in PERSONAL.values())
    html, text = result.fill(email="o'neil&co@example.org", unsubscribe_url="https://x.example/u?t=1&l=2")
    assert "o&#x27;neil&amp;co@example.org" in html and "https://x.example/u?t=1&amp;l=2" in html
    assert "o'neil&co@example.org" in text and "https://x.example/u?t=1&l=2" in text
    assert not any(marker in html + text for marker in PERSONAL.values())


def test_editor_text_is_escaped_in_headings(authorities: dict) -> None:
    issue = load_draft(DRAFTS[0]).issue
    data = issue.model_dump(by_alias=True)
    data["sections"] = [{"article": {"heading": "A & B <b>bold</b>", "body": "Text."}}]
    result = render(Issue.model_validate(data))
    assert "<b>bold</b>" not in result.html and "A &amp; B &lt;b&gt;bold&lt;/b&gt;" in result.html
