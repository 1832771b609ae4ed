"""Room for real issues: a session's note, a picture in a letter or article, attachments, a special issue
with no month of its own (`2025-04-farewell`, `edition`), and the "In this issue" list, each through the
model, both parts of the email, the calendar and the web archive."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import lxml.html
import pytest
from ruamel.yaml import YAML

from content import normalise, sentences, without_references
from newsletter.archive import build, published
from newsletter.checks import ATTACHMENT_WARN_BYTES, check, check_attachments_published
from newsletter.config import Settings
from newsletter.errors import OutputError
from newsletter.load import DraftError, load_draft
from newsletter.model import Issue
from newsletter.render import CONTENTS_FROM, GMAIL_CLIP_BYTES, Web, render

FAREWELL = Path(__file__).resolve().parent / "fixtures" / "special" / "2025-04-farewell.yaml"
ARCHIVE = "https://wm.example.org/archive"
WEB = Web(page=f"{ARCHIVE}/2025-04-farewell/", files=f"{ARCHIVE}/2025-04-farewell/")
TREE = YAML(typ="safe").load(FAREWELL.read_text(encoding="utf-8"))


def issue_from(**changes: object) -> Issue:
    data = copy.deepcopy(TREE)
    data.update(changes)
    return Issue.model_validate({k: v for k, v in data.items() if v is not None})


def visible(html: str) -> str:
    body = lxml.html.document_fromstring(html).body
    for hidden in body.xpath("//style|//script"):
        hidden.drop_tree()
    return normalise(body.text_content())


@pytest.fixture(scope="module")
def farewell() -> Issue:
    return load_draft(FAREWELL).issue


@pytest.fixture(scope="module")
def parts(farewell: Issue, authorities: dict) -> tuple[lxml.html.HtmlElement, str, str]:
    rendered = render(farewell, authorities["dudley"], web=WEB)
    return lxml.html.document_fromstring(rendered.html), rendered.html, rendered.text


# --- the whole special issue ------------------------------------------------------------------------


def test_every_sentence_of_the_special_issue_reaches_both_parts_whole(parts: tuple) -> None:
    _, html, text = parts
    wanted = sentences(FAREWELL)
    assert len(wanted) > 15
    assert not [s for s in wanted if s not in visible(html)]
    assert not [s for s in wanted if s not in without_references(text)]


def test_the_special_issue_is_well_under_gmail_clipping(parts: tuple) -> None:
    _, html, _ = parts
    assert len(html.encode()) < GMAIL_CLIP_BYTES // 2


def test_the_text_part_of_the_special_issue_keeps_its_promises(parts: tuple) -> None:
    _, _, text = parts
    for line in text.splitlines():
        if len(line) > 78:
            assert re.fullmatch(r"\[\d+\] https://\S+", line), line
        for url in re.findall(r"https?://\S+", line):
            assert line.endswith(url) and url[-1] not in ".,;:)", line
    assert "\n-- \n" in text


# --- a special issue: its id and edition ---------------------------------------------------------------


@pytest.mark.parametrize("value", ["2025-04", "2025-04-farewell", "2025-12-christmas-special"])
def test_issue_ids_a_month_or_a_month_and_a_name(value: str) -> None:
    issue = issue_from(issue=value)
    assert issue.issue == value
    assert issue.month_label == ("December 2025" if value.startswith("2025-12") else "April 2025")


@pytest.mark.parametrize(
    "value",
    [
        "2025-13",
        "2025-4",
        "2025-04-",
        "2025-04-Farewell",
        "2025-04_farewell",
        "farewell",
        "2025-04--farewell",
        "2025-04-farewell edition",
    ],
)
def test_other_issue_ids_are_refused_with_what_to_write(value: str, tmp_path: Path) -> None:
    draft = tmp_path / "special.yaml"
    draft.write_text(
        FAREWELL.read_text(encoding="utf-8").replace("issue: 2025-04-farewell", f"issue: {value}"), encoding="utf-8"
    )
    with pytest.raises(DraftError) as caught:
        load_draft(draft)
    (problem,) = [p for p in caught.value.problems if "issue" in p.message]
    assert problem.line == 4
    assert "2025-04-farewell" in problem.message and "2025-09" in problem.message


def test_the_masthead_title_and_web_page_show_the_edition(parts: tuple, farewell: Issue) -> None:
    doc, _, text = parts
    assert doc.findtext(".//title") == "Regional Update, Farewell edition"
    masthead = normalise(doc.xpath("//*[contains(@class, 'masthead')]")[0].text_content())
    assert "Farewell edition · West Midlands" in masthead and "April" not in masthead
    assert text.splitlines()[:2] == ["REGIONAL UPDATE", "Farewell edition · West Midlands children’s services"]
    page = render(farewell, None, web=Web(files=""), archive=True)
    assert "This is the web version of the Regional Update: Farewell edition (April 2025)." in visible(page.html)
    # without an edition, a special issue's masthead shows its month
    plain = render(issue_from(edition=None), None)
    assert "April 2025 · West Midlands" in plain.text


def test_a_special_issue_is_published_and_linked_by_its_id(farewell: Issue) -> None:
    settings = Settings.model_validate({"list": {"archive_url": ARCHIVE}})
    web = published(settings, farewell)
    assert web.page == web.files == f"{ARCHIVE}/2025-04-farewell/"


# --- the contents list ----------------------------------------------------------------------------------


def test_contents_links_to_an_id_for_each_part(parts: tuple) -> None:
    doc, _, text = parts
    (heading,) = [h for h in doc.iter("h2") if h.text_content() == "In this issue"]
    items = heading.getnext().findall("li")
    links = [(li.find("a").get("href"), li.find("a").text_content()) for li in items]
    assert [t for _, t in links] == [
        "Goodbye from our Chair",
        "A thank-you from the Regional Team",
        "Upcoming conferences and events",
        "Documents",
    ]
    for href, title in links:
        assert href.startswith("#")
        (target,) = doc.xpath(f"//*[@id='{href[1:]}']")
        assert target.tag == "h2" and target.text_content() == title
    assert "\n\nIn this issue\n• Goodbye from our Chair\n• A thank-you from the Regional Team\n" in text
    # under the masthead, before the first section
    headings = [h.text_content() for h in doc.iter("h1", "h2")]
    assert headings[:3] == ["Regional Update", "In this issue", "Goodbye from our Chair"]


def test_contents_true_false_or_automatic_for_a_long_issue() -> None:
    assert "In this issue" not in render(issue_from(contents=False), None).text
    short = issue_from(contents=None, attachments=None)
    assert len(short.sections) < CONTENTS_FROM and "In this issue" not in render(short, None).text
    many = issue_from(
        contents=None,
        attachments=None,
        sections=TREE["sections"]
        + [{"article": {"heading": f"News item {n}", "body": f"News number {n}."}} for n in range(CONTENTS_FROM - 3)],
    )
    result = render(many, None)
    assert "In this issue" in result.text and "In this issue" in visible(result.html)
    assert f"#section-{CONTENTS_FROM}" in result.html
    assert 'id="section-1"' in result.html
    # a variant counts its own sections
    assert CONTENTS_FROM == 6


def test_the_past_drafts_keep_their_layout_but_the_long_one_gets_contents(authorities: dict) -> None:
    from conftest import DRAFTS

    found = {
        path.stem: "In this issue" in render(load_draft(path).issue, authorities["walsall"]).text
        for path in DRAFTS
        if path.stem in ("2023-11", "2025-07", "2025-09")
    }
    assert found == {"2023-11": True, "2025-07": False, "2025-09": False}


# --- a picture in a letter or an article -------------------------------------------------------------


def test_a_picture_sits_between_the_heading_and_the_body(parts: tuple) -> None:
    doc, _, text = parts
    order = [e for e in doc.iter("h2", "img", "p") if e.tag != "p" or e.text_content().strip()]
    at = next(i for i, e in enumerate(order) if e.tag == "h2" and e.text_content() == "Goodbye from our Chair")
    image, caption, first = order[at + 1], order[at + 2], order[at + 3]
    assert image.tag == "img" and image.get("alt") == "Alison Hinds speaking at the Team Excellence Awards"
    assert image.get("src") == "https://example.org/images/alison-hinds.jpg"
    assert image.getparent().get("width") == "240"  # MJML sizes the cell; the picture fills it
    assert caption.text_content() == "Alison at the 2024 Team Excellence Awards"
    assert first.text_content().startswith("After six years as Chair")
    linked = doc.xpath("//img[@alt='The six members of the Regional Team outside the Council House']")[0]
    assert (
        linked.getparent().tag == "a" and linked.getparent().get("href") == "https://example.org/farewell/team-photos"
    )
    assert (
        "Goodbye from our Chair\n======================\n\n[Image: Alison Hinds speaking at the Team "
        "Excellence Awards]\nAlison at the 2024 Team Excellence Awards\n\nAfter six years"
    ) in text
    assert "[Image: The six members of the Regional Team outside the Council\nHouse] [2]" in text


def test_a_picture_needs_its_alt_text(tmp_path: Path) -> None:
    draft = tmp_path / "special.yaml"
    source = FAREWELL.read_text(encoding="utf-8")
    draft.write_text(
        source.replace("        alt: Alison Hinds speaking at the Team Excellence Awards\n", ""), encoding="utf-8"
    )
    with pytest.raises(DraftError) as caught:
        load_draft(draft)
    assert [(p.line, "`alt`" in p.message) for p in caught.value.problems] == [(19, True)]
    draft.write_text(
        source.replace("alt: Alison Hinds speaking at the Team Excellence Awards", "alt: IMG_2041.jpg"),
        encoding="utf-8",
    )
    (warning,) = [p for p in check(load_draft(draft)) if "file name" in p.message]
    assert warning.line == 21


# --- a session's note ------------------------------------------------------------------------------------


def test_a_sessions_note_is_under_its_session_in_both_parts(parts: tuple) -> None:
    doc, _, text = parts
    lines = [normalise(p.text_content()) for p in doc.xpath("//p[contains(@class, 'meta')]")]
    first = next(i for i, line in enumerate(lines) if line.startswith("When: Tuesday 29 April 2025"))
    assert lines[first + 1] == "Note: includes a ten-minute break"
    second = next(i for i, line in enumerate(lines) if line.startswith("When: Tuesday 6 May 2025"))
    assert lines[second + 1] == "Note: a shorter repeat of the morning session"
    assert (
        "When: Tuesday 29 April 2025, 9:30am to 12:30pm\n  Note: includes a ten-minute break\n"
        "  Add Tue 29 Apr to your calendar [4]\nWhere: The Studio, Birmingham\n"
    ) in text


# --- attachments -----------------------------------------------------------------------------------------


def test_attachments_are_linked_from_both_parts(parts: tuple) -> None:
    doc, _, text = parts
    (heading,) = [h for h in doc.iter("h2") if h.text_content() == "Documents"]
    items = heading.getnext().findall("li")
    assert [normalise(li.text_content()) for li in items] == [
        "Network meeting dates for 2025/26 (PDF)",
        "Regional Priority Plan 2025 to 2028 (PDF)",
    ]
    assert [li.find("a").get("href") for li in items] == [
        f"{ARCHIVE}/2025-04-farewell/2025-26-network-dates.pdf",
        "https://example.org/farewell/regional-priority-plan.pdf",
    ]
    assert (
        "Documents\n=========\n\n• Network meeting dates for 2025/26 (PDF) [7]\n"
        "• Regional Priority Plan 2025 to 2028 (PDF) [8]\n\n"
        f"[7] {ARCHIVE}/2025-04-farewell/2025-26-network-dates.pdf\n"
        "[8] https://example.org/farewell/regional-priority-plan.pdf\n"
    ) in text


def test_without_an_archive_a_file_is_named_but_not_linked_and_check_says_why(farewell: Issue) -> None:
    result = render(farewell, None)
    doc = lxml.html.document_fromstring(result.html)
    assert "Network meeting dates for 2025/26 (PDF)" in visible(result.html)
    assert not [a for a in doc.xpath("//a/@href") if "network-dates" in a]
    assert "• Network meeting dates for 2025/26 (PDF)\n" in result.text
    draft = load_draft(FAREWELL)
    (problem,) = check_attachments_published(draft, None)
    assert (problem.severity, problem.line) == ("error", 64)
    assert "archive_url" in problem.message
    assert check_attachments_published(draft, ARCHIVE) == []


def test_check_finds_a_missing_attachment_and_warns_over_10_mb(tmp_path: Path) -> None:
    shutil.copy(FAREWELL, tmp_path / FAREWELL.name)
    draft = load_draft(tmp_path / FAREWELL.name)
    (missing,) = [p for p in check(draft) if "files/2025-26-network-dates.pdf" in p.message]
    assert (missing.severity, missing.line, missing.column) == ("error", 64, 11)
    (tmp_path / "files").mkdir()
    big = tmp_path / "files" / "2025-26-network-dates.pdf"
    with big.open("wb") as file:
        file.truncate(ATTACHMENT_WARN_BYTES)
    assert not [p for p in check(draft) if "network-dates" in p.message]
    with big.open("ab") as file:
        file.write(b"x" * 1024 * 1024)
    (large,) = [p for p in check(draft) if "network-dates" in p.message]
    assert (large.severity, large.line) == ("warning", 64) and "11.0 MB" in large.message
    assert not [p for p in check(load_draft(FAREWELL)) if "network-dates" in p.message]


@pytest.mark.parametrize(
    ("attachment", "says"),
    [
        ({"title": "Dates"}, "needs one of"),
        ({"title": "Dates", "file": "dates.pdf", "url": "https://example.org/dates.pdf"}, "not both"),
        ({"title": "Dates", "file": "../dates.pdf"}, "not a file in the draft's folder"),
        ({"title": "Dates", "file": "/home/editor/dates.pdf"}, "not a file in the draft's folder"),
        ({"title": "Dates", "file": "files\\dates.pdf"}, "not a file in the draft's folder"),
        ({"title": "Dates", "file": "index.html"}, "replace the issue's own page"),
        ({"title": "Dates", "url": "dates.pdf"}, "not a web address"),
        ({"title": "Dates", "file": "dates.pdf", "size": 3}, "unknown key"),
    ],
)
def test_attachments_that_cannot_be_published_are_refused(attachment: dict, says: str, tmp_path: Path) -> None:
    data = copy.deepcopy(TREE)
    data["attachments"] = [attachment]
    draft = tmp_path / "2025-04-farewell.yaml"
    with draft.open("w", encoding="utf-8") as file:
        YAML().dump(data, file)
    with pytest.raises(DraftError) as caught:
        load_draft(draft)
    assert any(says in p.message for p in caught.value.problems), caught.value.problems


def test_two_attachment_files_may_not_share_a_name() -> None:
    with pytest.raises(ValueError, match="different names"):
        issue_from(attachments=[{"title": "One", "file": "a/dates.pdf"}, {"title": "Two", "file": "b/Dates.pdf"}])


# --- the web archive --------------------------------------------------------------------------------------


def test_the_archive_publishes_attachments_beside_the_issue(farewell: Issue, tmp_path: Path) -> None:
    out = tmp_path / "site"
    (page,) = build([farewell], out, drafts=FAREWELL.parent)
    folder = out / "2025-04-farewell"
    assert page.folder == "2025-04-farewell/"
    assert (folder / "2025-26-network-dates.pdf").read_bytes() == (
        FAREWELL.parent / "files" / "2025-26-network-dates.pdf"
    ).read_bytes()
    assert "2025-26-network-dates.pdf" in page.files
    doc = lxml.html.parse(str(folder / "index.html")).getroot()
    hrefs = doc.xpath("//a/@href")
    assert "2025-26-network-dates.pdf" in hrefs  # beside the page
    assert all((folder / h).is_file() for h in hrefs if not h.startswith(("https:", "mailto:", "#")))
    index = lxml.html.parse(str(out / "index.html")).getroot()
    assert normalise(index.xpath("//main//a")[0].text_content()) == "Regional Update, Farewell edition"
    assert sorted(p.name for p in folder.iterdir()) == sorted(["index.html", "index.txt", *page.files])


def test_the_archive_stops_on_a_missing_attachment(farewell: Issue, tmp_path: Path) -> None:
    with pytest.raises(OutputError, match=r"2025-26-network-dates\.pdf is not there"):
        build([farewell], tmp_path / "site", drafts=tmp_path)
