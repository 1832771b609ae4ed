"""Rendering: every sentence an editor wrote reaches both parts whole, the text part reads like a letter, and
the known MJML/premailer traps stay shut."""

from __future__ import annotations

import itertools
import os
import re
from pathlib import Path

import lxml.html
import pytest

from conftest import DRAFTS
from content import normalise, sentences, urls, without_references
from newsletter.config import Settings
from newsletter.load import load_draft
from newsletter.model import Issue
from newsletter.render import (
    GMAIL_CLIP_BYTES,
    PERSONAL,
    SIGNATURE,
    render,
    render_sample,
)

OWN_TEMPLATES = Settings.model_validate({"templates_dir": os.environ.get("NEWSLETTER_TEMPLATES_DIR") or None})
"""`NEWSLETTER_TEMPLATES_DIR=my-templates pytest tests/test_render.py tests/test_accessibility.py` holds a
network's own templates (`templates_dir`) to the same fidelity and accessibility tests as the shipped ones."""


def visible_text(html: str) -> str:
    body = lxml.html.document_fromstring(html).body
    for hidden in body.xpath("//style|//script"):
        hidden.drop_tree()
    return normalise(body.text_content())


@pytest.fixture(scope="module", params=DRAFTS, ids=lambda p: p.stem)
def rendered(request: pytest.FixtureRequest, authorities: dict) -> tuple[Path, object]:
    draft = load_draft(request.param, authorities)
    return request.param, render(draft.issue, authorities["walsall"], settings=OWN_TEMPLATES)


def test_the_past_drafts_are_all_measured() -> None:
    assert {"2023-11", "2025-07", "2025-09"} <= {p.stem for p in DRAFTS}


def test_every_sentence_reaches_the_html(rendered: tuple) -> None:
    path, result = rendered
    text = visible_text(result.html)
    wanted = sentences(path)
    assert len(wanted) > 40
    missing = [s for s in wanted if s not in text]
    assert not missing, missing


def test_every_sentence_reaches_the_text_part_whole(rendered: tuple) -> None:
    """No sentence is broken by an address: all a link may add to the prose is its number, `words [1]`."""
    path, result = rendered
    text = without_references(result.text)
    missing = [s for s in sentences(path) if s not in text]
    assert not missing, missing


URL = re.compile(r"(?:https?://|mailto:)\S+")


def test_no_url_is_inside_a_sentence_or_has_punctuation_attached(rendered: tuple) -> None:
    """An address stands at the end of its line after `[n] ` or a label's `: `, or on a line of its own."""
    _, result = rendered
    for line in result.text.splitlines():
        for match in URL.finditer(line):
            before, after = line[: match.start()], line[match.end() :]
            assert after == "", line
            assert re.fullmatch(r"\[\d+\] |[^\[\]]*: |", before), line
            assert match.group()[-1] not in ".,;:!?)'\"”’", line


def test_each_url_is_listed_once_per_section_and_every_number_has_its_url(rendered: tuple) -> None:
    _, result = rendered
    text = result.text
    listed = re.findall(r"^\[(\d+)\] (\S+)$", text, re.M)
    numbers = [int(n) for n, _ in listed]
    assert listed, "every past issue links somewhere"
    assert numbers == sorted(set(numbers)), "numbers run on through the message, each listed once"
    used = {int(n) for n in re.findall(r"(?<!^)\[(\d+)\]", text, re.M)}
    assert used == set(numbers)
    for block in re.split(r"\n\n\n", text):  # the sections
        urls_here = [url for n, url in re.findall(r"^\[(\d+)\] (\S+)$", block, re.M)]
        assert len(urls_here) == len(set(urls_here)), block[:80]


def test_signature_separator_is_dash_dash_space(rendered: tuple) -> None:
    _, result = rendered
    assert SIGNATURE == "-- "
    assert "\n-- \n" in result.text
    assert result.text.count("\n-- \n") == 1
    assert "\n--\n" not in result.text


def test_text_lines_stay_within_78_characters_but_urls(rendered: tuple) -> None:
    _, result = rendered
    _, text = result.fill(
        email="sample.reader@walsall.example.org", unsubscribe_url="https://unsubscribe.example.org/u/" + "x" * 140
    )
    long = [line for line in text.splitlines() if len(line) > 78 and not URL.search(line)]
    assert not long, long
    for line in text.splitlines():
        if len(line) > 78:  # only an unbreakable address, alone or after its number or label
            assert URL.search(line) and len(URL.sub("", line)) <= 78, line


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
        sizes = re.findall(
            r"font-size:\s*(\d+)px",
            paragraph.get("style", "")
            + " "
            + " ".join(a.get("style", "") for a in paragraph.iterancestors() if a.tag == "div"),
        )
        assert sizes and int(sizes[0]) >= 16, lxml.html.tostring(paragraph)[:200]


def test_headings_are_in_order(rendered: tuple) -> None:
    _, result = rendered
    levels = [int(h.tag[1]) for h in lxml.html.document_fromstring(result.html).iter("h1", "h2", "h3", "h4")]
    assert levels[0] == 1 and levels.count(1) == 1
    assert all(b - a <= 1 for a, b in itertools.pairwise(levels)), levels


def test_text_part_layout() -> None:
    result = render(load_draft(Path(DRAFTS[-1])).issue)
    text = result.text
    assert "From Birmingham Children’s Trusts Chief Executive and our RIIA Sponsor\n=====" in text
    assert "\nPWLE Seminar: Child contact problems and the Family Court (FREE)\n-----" in text
    assert "When: Wednesday 15 October 2025, 9:30am to 11am" in text
    assert "Where: online (Microsoft Teams)" in text
    assert re.search(r"^• Hear the emerging findings", text, re.M)
    assert "For more details, see the PWLE Seminar on child contact problems and the\nFamily Court [3]." in text
    assert re.search(r"^\[3\] https://example\.org/lost-link/pwle-seminar-child-contact-family-court$", text, re.M)
    # the button's words, with the same number: the address is listed once for the event
    assert (
        "\nDetails and registration for the PWLE Seminar on child contact problems\nand the Family Court [3]\n" in text
    )
    assert text.count("https://example.org/lost-link/pwle-seminar-child-contact-family-court") == 1
    assert "  Sign up for the Monday 6 October webinar on parenting disabled\n  children and those with SEN [6]" in text
    assert max(len(line) for line in text.splitlines() if "https://" not in line) <= 78


def test_audience_sections_only_in_their_variants(authorities: dict) -> None:
    issue = load_draft(DRAFTS[-1]).issue
    data = issue.model_dump(by_alias=True)
    data["sections"] = [{s.pop("kind"): s} for s in data["sections"]]
    data["sections"].append(
        {"article": {"heading": "Only for Dudley", "body": "Dudley colleagues only.", "audience": ["dudley"]}}
    )
    targeted = Issue.model_validate(data)
    assert "Dudley colleagues only." in render(targeted, authorities["dudley"]).text
    assert "Dudley colleagues only." in visible_text(render(targeted, authorities["dudley"]).html)
    assert "Dudley colleagues only." not in render(targeted, authorities["walsall"]).text
    assert "Dudley colleagues only." not in render(targeted, authorities["walsall"]).html
    assert "you work for Dudley Metropolitan Borough Council" in normalise(render(targeted, authorities["dudley"]).text)


def test_fill_personal_fields_escapes_html() -> None:
    web = Settings.model_validate({"list": {"unsubscribe_url": "https://x.example/u"}})  # so a manage link too
    result = render(load_draft(DRAFTS[0]).issue, settings=web)
    assert all(marker in result.html and marker in result.text for marker in PERSONAL.values())
    html, text = result.fill(
        email="o'neil&co@example.org",
        unsubscribe_url="https://x.example/u?t=1&l=2",
        manage_url="https://x.example/m?a&b",
    )
    assert "o&#x27;neil&amp;co@example.org" in html and "https://x.example/u?t=1&amp;l=2" in html
    assert "o'neil&co@example.org" in text and "https://x.example/u?t=1&l=2" in text
    assert "https://x.example/m?a&amp;b" in html and "https://x.example/m?a&b" in text
    assert not any(marker in html + text for marker in PERSONAL.values())
    # Without a web service there is no manage link, and the two other fields are all a copy needs.
    plain = render(load_draft(DRAFTS[0]).issue)
    assert PERSONAL["manage_url"] not in plain.html + plain.text
    html, text = plain.fill(email="a@example.org", unsubscribe_url="mailto:u@example.org")
    assert "Manage your subscription" not in html + text


def test_editor_text_is_escaped_in_headings(authorities: dict) -> None:
    issue = load_draft(DRAFTS[0]).issue
    data = issue.model_dump(by_alias=True)
    data["sections"] = [{"article": {"heading": "A & B <b>bold</b>", "body": "Text."}}]
    result = render(Issue.model_validate(data))
    assert "<b>bold</b>" not in result.html and "A &amp; B &lt;b&gt;bold&lt;/b&gt;" in result.html


# --- what `render` shows ------------------------------------------------------------------------------


def test_render_sample_fills_the_personal_fields_for_a_sample_reader(authorities: dict) -> None:
    from newsletter.config import Settings
    from newsletter.unsubscribe import BadToken, read_token

    issue = load_draft(DRAFTS[-1]).issue
    sample = render_sample(issue, authorities["walsall"], Settings())
    assert sample.email == "sample.reader@walsall.example.org"
    assert sample.note == "personal fields filled for a sample reader: sample.reader@walsall.example.org"
    assert not any(marker in sample.html + sample.text for marker in PERSONAL.values())
    assert "[[" not in sample.html + sample.text
    assert "This copy was sent to sample.reader@walsall.example.org." in sample.text
    assert "This copy was sent to sample.reader@walsall.example.org." in visible_text(sample.html)
    assert "you work for Walsall Council" in normalise(sample.text)
    (unsubscribe,) = lxml.html.document_fromstring(sample.html).xpath("//a[starts-with(., 'Unsubscribe')]/@href")
    assert unsubscribe.startswith("mailto:unsubscribe@wmchildrensservices.org.uk?subject=unsubscribe%20")
    assert sample.size == len(sample.html.encode()) < GMAIL_CLIP_BYTES
    # With a one-click endpoint and an archive: the links a reader gets, and a token nobody can act on.
    settings = Settings.model_validate(
        {"list": {"unsubscribe_url": "https://wm.example.org/u", "archive_url": "https://wm.example.org/archive"}}
    )
    sample = render_sample(issue, authorities["dudley"], settings)
    assert sample.email == "sample.reader@dudley.example.org"
    hrefs = lxml.html.document_fromstring(sample.html).xpath("//a/@href")
    assert "https://wm.example.org/archive/2025-09/" in hrefs
    assert any(h.startswith("https://wm.example.org/archive/2025-09/") and h.endswith(".ics") for h in hrefs)
    (unsubscribe,) = [h for h in hrefs if h.startswith("https://wm.example.org/u/")]
    assert unsubscribe in sample.text
    token = unsubscribe.rsplit("/", 1)[1]
    with pytest.raises(BadToken):  # sealed with a throwaway key: no endpoint can read it
        read_token(token, "any secret at all")
    # everyone's variant
    assert render_sample(issue, None, Settings()).email == "sample.reader@everyone.example.org"
