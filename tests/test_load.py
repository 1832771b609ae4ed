"""Bad drafts: each problem is reported with the line it is on and words an editor can act on."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from newsletter.load import MAX_BYTES, DraftError, load_draft
from newsletter.markdown import to_html

GOOD = """\
title: Regional Update
issue: 2025-09
subject: Regional Update, September 2025
preheader: A grant, a new co-ordinator and events
from: {name: West Midlands Regional Team, email: team@wmchildrensservices.org.uk}
send_on: 2025-09-19
status: draft
sections:
  - article:
      heading: Regional SEND Co-ordinator
      body: |
        We are pleased to welcome Natalie Bevan.

        She starts on Monday.
      contact: {name: Natalie Bevan, email: natalie.bevan@wmchildrensservices.org.uk}
  - events:
      items:
        - title: PWLE Seminar
          cost: free
          sessions:
            - {date: 2025-10-15, start: "09:30", end: "11:00", online: Microsoft Teams}
          booking: {text: Register for the PWLE seminar, url: "https://example.org/seminar"}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "draft.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def problems(tmp_path: Path, text: str, authorities: object = None) -> list[tuple[int, str]]:
    with pytest.raises(DraftError) as caught:
        load_draft(write(tmp_path, text), authorities)  # type: ignore[arg-type]
    for problem in caught.value.problems:
        assert problem.file.name == "draft.yaml"
    return [(p.line, p.message) for p in caught.value.problems]


def test_good_draft_loads(tmp_path: Path, authorities: dict) -> None:
    draft = load_draft(write(tmp_path, GOOD), authorities)
    assert draft.issue.month_label == "September 2025"
    assert [s.kind for s in draft.issue.sections] == ["article", "events"]
    assert draft.issue.sections[1].items[0].sessions[0].start.hour == 9


BAD = {
    "unclosed quote": (
        GOOD.replace("subject: Regional Update, September 2025", 'subject: "Regional Update'),
        3,
        "the quote opened on this line is not closed",
    ),
    "yaml syntax": (GOOD.replace('start: "09:30"', 'start: "09:30'), 21, "the YAML cannot be read"),
    "indented too far": (
        GOOD.replace("      contact: {name", "       contact: {name"),
        15,
        "this line is indented more than the line above it: 7 spaces, where `body` on line 11 has 6",
    ),
    "tab indentation": (
        GOOD.replace("      heading: Regional SEND", "\theading: Regional SEND"),
        10,
        "indented with a tab",
    ),
    "unknown key": (
        GOOD.replace("      heading: Regional SEND", "      hedaing: Regional SEND"),
        10,
        "unknown key `hedaing`: did you mean `heading`?",
    ),
    "unknown section kind": (GOOD.replace("  - article:", "  - artcle:"), 9, "did you mean `article`?"),
    "wrong type": (
        GOOD.replace("          cost: free", "          cost: [free, paid]"),
        19,
        "`cost` should be text, not a list",
    ),
    "missing field": (GOOD.replace("subject: Regional Update, September 2025\n", ""), 1, "the draft has no `subject`"),
    "missing field in a section": (
        GOOD.replace("        - title: PWLE Seminar\n          cost: free", "        - cost: free"),
        18,
        "this event has no `title`",
    ),
    "impossible date": (
        GOOD.replace("date: 2025-10-15", "date: 2025-02-30"),
        21,
        "2025-02-30 is not a day of the calendar",
    ),
    "date in words": (GOOD.replace("send_on: 2025-09-19", "send_on: 19th September"), 6, "write it as year-month-day"),
    "impossible time": (GOOD.replace('start: "09:30"', 'start: "25:00"'), 21, "`25:00` is not a time"),
    "end before start": (
        GOOD.replace('start: "09:30", end: "11:00"', 'start: "2pm", end: "11:00"'),
        21,
        "this session ends at 11:00, before it starts at 14:00: check the times",
    ),
    "malformed email": (
        GOOD.replace("natalie.bevan@wmchildrensservices.org.uk", "natalie.bevan@"),
        15,
        "`natalie.bevan@` is not a valid email address",
    ),
    "malformed url": (
        GOOD.replace('"https://example.org/seminar"', '"www.example.org/seminar"'),
        22,
        "is not a web address",
    ),
    "javascript url": (
        GOOD.replace('"https://example.org/seminar"', '"javascript:alert(1)"'),
        22,
        "is not a web address",
    ),
    "empty section": (GOOD.replace("  - events:\n", "  - letter:\n  - events:\n"), 16, "this letter section is empty"),
    "empty heading": (GOOD.replace("heading: Regional SEND Co-ordinator", 'heading: ""'), 10, "`heading` is empty"),
    "empty list": (
        GOOD.split("        - title: PWLE Seminar")[0].replace("      items:\n", "      items: []\n"),
        17,
        "`items` needs at least one item",
    ),
    "script in markdown": (
        GOOD.replace("She starts on Monday.", "She starts <script>alert(1)</script> Monday."),
        14,
        "`<script>` is HTML",
    ),
    "onclick in markdown": (
        GOOD.replace("She starts on Monday.", 'Read <a href="#" onclick="steal()">this</a>.'),
        14,
        "is HTML",
    ),
    "status": (GOOD.replace("status: draft", "status: ready"), 7, "write `draft` or `approved`"),
    "duplicate key": (GOOD.replace("status: draft", "status: draft\nstatus: approved"), 8, "duplicate key"),
    "heading on two lines": (
        GOOD.replace("heading: Regional SEND Co-ordinator", 'heading: "Regional\\nSEND"'),
        10,
        "single line",
    ),
    "not a mapping": ("- just\n- a list\n", 1, "a draft starts with `title:`"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_draft_reports_line_and_fix(tmp_path: Path, name: str) -> None:
    text, line, words = BAD[name]
    found = problems(tmp_path, text)
    assert any(words in message and at == line for at, message in found), found


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    text = (
        GOOD.replace("hedaing", "heading")
        .replace("      heading: Regional SEND", "      hedaing: Regional SEND")
        .replace("date: 2025-10-15", "date: 2025-02-30")
        .replace("status: draft", "status: ready")
    )
    lines = [line for line, _ in problems(tmp_path, text)]
    assert lines == sorted(lines) and {7, 10, 21} <= set(lines)


def test_unknown_audience_suggests_authority(tmp_path: Path, authorities: dict) -> None:
    text = GOOD.replace("      contact:", "      audience: [walsal, dudley]\n      contact:")
    assert problems(tmp_path, text, authorities) == [(15, "`walsal` is not an authority: did you mean `walsall`?")]


def test_markdown_html_is_never_live() -> None:
    html = to_html(
        'Hi <script>alert(1)</script> <img src=x onerror="alert(2)"> [x](javascript:alert(3)) '
        '<style>body{}</style> <form action="https://evil.example"><input></form>'
    )
    for live in ("<script", "<img", 'href="javascript', "<style", "<form", "<input"):
        assert live not in html
    assert not re.search(r"<[^>]*\son\w+=", html)
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize("shape", ["deep", "wide", "aliases", "big"])
def test_huge_or_nested_drafts_are_refused_quickly(tmp_path: Path, shape: str) -> None:
    if shape == "deep":
        text = GOOD + "extra: " + "[" * 5000 + "]" * 5000 + "\n"
    elif shape == "wide":
        text = GOOD.replace(
            "sections:\n",
            "sections:\n"
            + "".join(
                f"  - article: {{heading: h{i}, body: b, links: [{{text: a, url: 'https://a.org'}}]}}\n"
                for i in range(4000)
            ),
        )
    elif shape == "aliases":
        text = GOOD + textwrap.dedent("""\
            a: &a [x, x, x, x, x, x, x, x, x, x]
            b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]
            c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]
            d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]
            e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]
            f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]
            """)
    else:
        text = GOOD + "# " + "x" * MAX_BYTES + "\n"
    found = problems(tmp_path, text)
    assert len(found) == 1
    assert any(w in found[0][1] for w in ("nested", "values", "KB")), found


# ---------------------------------------------------------------------------------------------------------
# Every problem in one pass, at the line where it really is (issue 11)

FIVE = """\
title: Regional Update
issue: 2025-10
subject: Regional Update, October 2025
preheader: News and events
from: {name: West Midlands Regional Team, email: team@wmchildrensservices.org.uk}
send_on: 2025-10-17
sections:
  - article:
      heading: Regional SEND Co-ordinator
      body: |
        We are pleased to welcome Natalie Bevan.
      audience: [walsall, sandwel]
  - image:
    src: https://wmchildrensservices.org.uk/team.jpg
    alt: The Walsall team receiving their award
  - events:
      items:
        - title: PWLE Seminar
          sessions:
            - {date: 2025-02-30, start: "25:00", end: "11:00"}
"""


def test_schema_errors_dates_times_and_authorities_come_back_together(tmp_path: Path, authorities: dict) -> None:
    found = problems(tmp_path, FIVE, authorities)
    assert (12, "`sandwel` is not an authority: did you mean `sandwell`?") in found, found
    assert any(line == 14 and "`image:`" in message and "`src`, `alt`" in message for line, message in found), found
    assert any(line == 20 and "2025-02-30 is not a day of the calendar" in message for line, message in found), found
    assert any(line == 20 and "`25:00` is not a time" in message for line, message in found), found
    assert [line for line, _ in found] == sorted(line for line, _ in found)


def test_unknown_authority_is_found_beside_other_errors(tmp_path: Path, authorities: dict) -> None:
    text = GOOD.replace("      contact:", "      audience: [sandwel]\n      contact:").replace(
        "date: 2025-10-15", "date: 2025-02-30"
    )
    found = problems(tmp_path, text, authorities)
    assert (15, "`sandwel` is not an authority: did you mean `sandwell`?") in found, found
    assert any(line == 22 and "not a day of the calendar" in message for line, message in found), found


def test_section_fields_not_indented_under_the_kind(tmp_path: Path) -> None:
    """`- image:` with its fields lined up with it: say which key was found and where the fields go."""
    text = GOOD.replace("  - article:\n      heading:", "  - article:\n    heading:").replace(
        "\n      body: |\n        We are pleased to welcome Natalie Bevan.\n\n        She starts on Monday.\n"
        "      contact:",
        "\n    body: Welcome.\n    contact:",
    )
    ((line, message),) = [(line, m) for line, m in problems(tmp_path, text) if "`article:`" in m]
    assert line == 10
    assert "`heading`" in message and "indent" in message and "under `article:`" in message, message


def test_section_field_outdented_after_the_fields(tmp_path: Path) -> None:
    text = GOOD.replace("      contact: {name", "    contact: {name")
    found = problems(tmp_path, text)
    ((line, message),) = [(line, m) for line, m in found if "`contact`" in m]
    assert line == 15
    assert "lined up with `article:` (line 9)" in message and "indent it like `heading`" in message, message


def test_section_field_errors_are_reported_beside_the_shape_error(tmp_path: Path) -> None:
    """The fields of a section whose shape is wrong are still checked, at their own lines."""
    text = GOOD.replace(
        "          cost: free\n          sessions:\n            - {date: 2025-10-15",
        "          cost: free\n          sessions:\n            - {date: 2025-02-30",
    ).replace("  - events:\n      items:", "  - events:\n    items:")
    found = problems(tmp_path, text)
    assert any("`events:`" in m and line == 17 for line, m in found), found
    assert any("not a day of the calendar" in m and line == 21 for line, m in found), found


OUTDENTED = """\
title: Regional Update
issue: 2025-10
subject: Regional Update, October 2025
from: {name: West Midlands Regional Team, email: team@wmchildrensservices.org.uk}
send_on: 2025-10-17
sections:
  - image:
      src: https://wmchildrensservices.org.uk/team.jpg
    alt: The Walsall team receiving their award
      caption: Walsall's Team of Excellence
"""


@pytest.mark.parametrize(
    ("bad", "line", "words"),
    [
        (OUTDENTED, 9, "this line is indented less than the lines above it"),
        (
            OUTDENTED.replace("    alt:", "      alt:").replace("      caption", "     caption"),
            10,
            "this line is indented less than the lines above it",
        ),
        (OUTDENTED.replace("    alt:", "       alt:"), 9, "this line is indented more than the line above it"),
        (
            GOOD.replace("      contact: {name", "     contact: {name"),
            15,
            "this line is indented less than the lines above it",
        ),
    ],
)
def test_yaml_indentation_error_points_at_the_line_that_is_wrong(
    tmp_path: Path, bad: str, line: int, words: str
) -> None:
    found = problems(tmp_path, bad)
    assert len(found) == 1 and found[0][0] == line and words in found[0][1], found
    assert "needs quotes" not in found[0][1]
