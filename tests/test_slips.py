"""Silent slips (issue 11): what a draft can get wrong while `check` used to say ok, and `new` that kept
last month's words and layout changes."""

from __future__ import annotations

import datetime as dt
import difflib
import shutil
from pathlib import Path

import pytest

from conftest import DRAFTS
from newsletter.checks import check
from newsletter.load import load_draft
from newsletter.new_issue import create
from test_checks import line_of, only, source, warnings

# a line of a text block that looks like one of the section's own keys ---------------------------------------


def test_audience_indented_into_the_body_is_a_warning(tmp_path: Path) -> None:
    sections = """\
        - article:
            heading: Walsall and Dudley only
            body: |
              A note for two authorities.

              audience: [walsall, dudley]
        """
    text, problems = warnings(tmp_path, sections)
    found = only(problems, "`audience:`")
    assert found.line == line_of(text, "audience: [walsall, dudley]")
    assert found.column == text.splitlines()[found.line - 1].index("audience") + 1
    assert "inside the text of `body`" in found.message and "readers will see it" in found.message


@pytest.mark.parametrize("key", ["contact: {name: Jo Bloggs}", "links:", "heading: Another one", "sign_off: Best"])
def test_other_section_keys_inside_text_are_warnings(tmp_path: Path, key: str) -> None:
    kind = "letter" if key.startswith("sign_off") else "article"
    sections = f"""\
        - {kind}:
            heading: News
            body: |
              First paragraph.
              {key}
            {"signed: Jo" if kind == "letter" else ""}
        """
    _, problems = warnings(tmp_path, sections)
    only(problems, f"`{key.split(':')[0]}:`")


def test_event_keys_inside_about_are_warnings(tmp_path: Path) -> None:
    sections = """\
        - events:
            items:
              - title: Participation Conference
                about: |
                  Plans are being finalised.
                  sessions:
                    - {date: 2025-11-27}
        """
    _, problems = warnings(tmp_path, sections)
    only(problems, "`sessions:`")


def test_prose_with_a_colon_is_not_taken_for_a_key(tmp_path: Path) -> None:
    sections = """\
        - article:
            heading: News
            body: |
              Contact: Jane Carter on 0121 000 0000.

              Deadline to register: Friday 26 September.
              headings: a word that is not a key
        """
    _, problems = warnings(tmp_path, sections, issue="2025-09", send_on="2025-09-19")
    assert problems == []


# a weekend send date ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("send_on", "day"), [("2025-10-18", "Saturday 18 October 2025"), ("2025-10-19", "Sunday 19 October 2025")]
)
def test_send_date_on_a_weekend_is_a_warning(tmp_path: Path, send_on: str, day: str) -> None:
    text, problems = warnings(tmp_path, "- article: {heading: News, body: Text.}", send_on=send_on)
    found = only(problems, "weekend")
    assert found.line == line_of(text, f"send_on: {send_on}")
    assert day in found.message and "Friday 17 October 2025" in found.message


def test_weekday_send_date_is_fine(tmp_path: Path) -> None:
    _, problems = warnings(tmp_path, "- article: {heading: News, body: Text.}", send_on="2025-10-17")
    assert not [p for p in problems if "weekend" in p.message]


# the same address as an inline link and as a button or `links` entry ----------------------------------------


def test_same_url_inline_and_as_a_link_field_is_a_warning(tmp_path: Path) -> None:
    sections = """\
        - article:
            heading: Survey
            body: |
              Please complete [the practitioner survey](https://wm.gov.uk/survey) by Friday.
            links:
              - {text: The practitioner survey, url: "https://wm.gov.uk/survey"}
        - events:
            items:
              - title: Participation Conference
                booking: {text: Book the Participation Conference, url: "https://wm.gov.uk/book"}
                about: |
                  [Book the Participation Conference](https://wm.gov.uk/book/)
        """
    text, problems = warnings(tmp_path, sections)
    twice = [p for p in problems if "twice" in p.message]
    assert [p.line for p in twice] == [
        line_of(text, "- {text: The practitioner survey"),
        line_of(text, "booking: {text: Book the Participation"),
    ]
    assert f"line {line_of(text, 'Please complete [the practitioner survey]')}" in twice[0].message
    assert f"line {line_of(text, '[Book the Participation Conference](')}" in twice[1].message


def test_same_url_in_different_sections_is_fine(tmp_path: Path) -> None:
    sections = """\
        - article:
            heading: Survey
            body: |
              Please complete [the practitioner survey](https://wm.gov.uk/survey) by Friday.
        - article:
            heading: Reminder
            body: Thank you.
            links:
              - {text: The practitioner survey, url: "https://wm.gov.uk/survey"}
        """
    _, problems = warnings(tmp_path, sections)
    assert not [p for p in problems if "twice" in p.message]


# "see attached" with nothing attached -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "words",
    [
        "Please find attached the dates for 2026.",
        "Please see attached the dates.",
        "The programme is attached.",
        "See the attached flyer for details.",
    ],
)
def test_see_attached_without_an_attachment_is_a_warning(tmp_path: Path, words: str) -> None:
    text, problems = warnings(
        tmp_path,
        f"""\
        - article:
            heading: Dates
            body: |
              First paragraph.

              {words}
        """,
    )
    found = only(problems, "attach")
    assert found.line == line_of(text, words)


def test_attachment_theory_is_not_an_attachment(tmp_path: Path) -> None:
    _, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: Training
            body: Attachment-informed practice and attachment theory, with attached importance.
        """,
    )
    assert not [p for p in problems if "attach" in p.message]


# `new`: keep the layout, skip weekends, list what still names last month -----------------------------------


def copy_drafts(tmp_path: Path) -> Path:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    for path in DRAFTS:
        shutil.copy(path, drafts)
    return drafts


def test_new_never_proposes_a_weekend(tmp_path: Path, authorities: dict) -> None:
    drafts = copy_drafts(tmp_path)
    made = create(drafts)  # 19 September -> 19 October 2025 is a Sunday: the Friday before
    assert load_draft(made.path, authorities).issue.send_on == dt.date(2025, 10, 17)
    assert (made.send_on, made.weekend) == (dt.date(2025, 10, 17), dt.date(2025, 10, 19))
    (drafts / "2025-10.yaml").unlink()
    made = create(drafts, "2026-02")  # 19 February 2026 is a Thursday
    assert load_draft(made.path, authorities).issue.send_on == dt.date(2026, 2, 19) and made.weekend is None


def test_new_stays_in_its_month_when_the_friday_before_is_not(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    text = DRAFTS[-1].read_text(encoding="utf-8").replace("send_on: 2025-09-19", "send_on: 2025-09-01")
    (drafts / "2025-09.yaml").write_text(text, encoding="utf-8")
    made = create(drafts, "2025-11")  # 1 November 2025 is a Saturday; 31 October is the month before
    assert load_draft(made.path).issue.send_on == dt.date(2025, 11, 3)


def test_new_keeps_the_layout_byte_for_byte(tmp_path: Path) -> None:
    drafts = copy_drafts(tmp_path)
    made = create(drafts)
    before = (drafts / "2025-09.yaml").read_text(encoding="utf-8").splitlines(keepends=True)
    after = made.path.read_text(encoding="utf-8").splitlines(keepends=True)
    changed = {
        "issue: 2025-09\n": "issue: 2025-10\n",
        "status: approved\n": "status: draft\n",
        "send_on: 2025-09-19\n": "send_on: 2025-10-17\n",
        'subject: "Regional Update, September 2025: three Outstanding authorities and events"\n': (
            'subject: "Regional Update, October 2025: three Outstanding authorities and events"\n'
        ),
    }
    removed = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, before, after, autojunk=False).get_opcodes():
        if op == "replace":
            assert [changed.get(line) for line in before[i1:i2]] == after[j1:j2]
        elif op == "delete":
            removed.append(before[i1:i2])
        else:
            assert op == "equal", (op, before[i1:i2], after[j1:j2])
    assert [line.strip() for block in removed for line in block if line.startswith("        - ")] == [
        "- title: Care Leavers Policy Workshop convened by the Rees Centre",
        '- title: "PWLE Seminar: Child contact problems and the Family Court"',
        '- title: "Inequality in the Workplace: What are we doing about it? What can be done?"',
        "- title: Webinar on Parenting disabled children and young people and those with Special Educational Needs",
    ]
    assert all(line.startswith("        - title: ") for line in after if "- title: " in line)


def test_new_lists_what_still_names_the_old_month(tmp_path: Path) -> None:
    drafts = copy_drafts(tmp_path)
    made = create(drafts)
    lines = made.path.read_text(encoding="utf-8").splitlines()
    listed = {p.line: p.message for p in made.rewrite}
    assert all(p.file == made.path and p.severity == "warning" for p in made.rewrite)
    for key in ("subject:", "preheader:"):
        assert lines.index(next(line for line in lines if line.startswith(key))) + 1 in listed
    for number, line in enumerate(lines, 1):
        if "September" in line:
            assert number in listed, (number, line)
    source = next(n for n, line in enumerate(lines, 1) if line.startswith("# (Regional Update – September 2025"))
    assert "September" in listed[source]


def test_new_writes_the_schema_line_first(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    text = DRAFTS[-1].read_text(encoding="utf-8")
    text = text[text.index("\n") + 1 :] if text.startswith("# yaml-language-server:") else text
    (drafts / "2025-09.yaml").write_text(text, encoding="utf-8")
    made = create(drafts)
    first, rest = made.path.read_text(encoding="utf-8").split("\n", 1)
    assert first == "# yaml-language-server: $schema=../schema/draft.schema.json"
    assert rest.startswith("# Source:")


def test_real_drafts_have_no_weekend_or_attachment_warnings() -> None:
    for path in DRAFTS:
        assert not [p for p in check(load_draft(path)) if "weekend" in p.message or "attach" in p.message]


def test_new_from_a_draft_with_flow_lists_still_works(tmp_path: Path, authorities: dict) -> None:
    """Sessions written `[{...}, {...}]` cannot be cut line by line: the draft is re-written instead."""
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    (drafts / "2025-09.yaml").write_text(
        source(
            """\
        - article: {heading: News, body: Text.}
        - events:
            items:
              - title: Participation Conference
                sessions: [{date: 2025-10-01}, {date: 2025-11-27}]
        """,
            issue="2025-09",
            send_on="2025-09-19",
        ),
        encoding="utf-8",
    )
    made = create(drafts)
    issue = load_draft(made.path, authorities).issue
    assert [s.date for s in issue.sections[1].items[0].sessions] == [dt.date(2025, 11, 27)]
    assert made.removed == ["Participation Conference (2025-10-01)"]
