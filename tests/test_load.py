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
    "unclosed quote": (GOOD.replace("subject: Regional Update, September 2025", 'subject: "Regional Update'), 3,
                       "the quote opened on this line is not closed"),
    "yaml syntax": (GOOD.replace("      contact: {name", "       contact: {name"), 15, "the YAML cannot be read"),
    "tab indentation": (GOOD.replace("      heading: Regional SEND", "\theading: Regional SEND"), 10,
                        "indented with a tab"),
    "unknown key": (GOOD.replace("      heading: Regional SEND", "      hedaing: Regional SEND"), 10,
                    "unknown key `hedaing`: did you mean `heading`?"),
    "unknown section kind": (GOOD.replace("  - article:", "  - artcle:"), 9, "did you mean `article`?"),
    "wrong type": (GOOD.replace("          cost: free", "          cost: [free, paid]"), 19,
                   "`cost` should be text, not a list"),
    "missing field": (GOOD.replace("subject: Regional Update, September 2025\n", ""), 1,
                      "the draft has no `subject`"),
    "missing field in a section": (GOOD.replace("        - title: PWLE Seminar\n          cost: free",
                                                "        - cost: free"), 18, "this event has no `title`"),
    "impossible date": (GOOD.replace("date: 2025-10-15", "date: 2025-02-30"), 21,
                        "2025-02-30 is not a day of the calendar"),
    "date in words": (GOOD.replace("send_on: 2025-09-19", "send_on: 19th September"), 6,
                      "write it as year-month-day"),
    "impossible time": (GOOD.replace('start: "09:30"', 'start: "25:00"'), 21, "`25:00` is not a time"),
    "end before start": (GOOD.replace('start: "09:30", end: "11:00"', 'start: "2pm", end: "11:00"'), 21,
                         "this session ends at 11:00, before it starts at 14:00: check the times"),
    "malformed email": (GOOD.replace("natalie.bevan@wmchildrensservices.org.uk", "natalie.bevan@"), 15,
                        "`natalie.bevan@` is not a valid email address"),
    "malformed url": (GOOD.replace('"https://example.org/seminar"', '"www.example.org/seminar"'), 22,
                      "is not a web address"),
    "javascript url": (GOOD.replace('"https://example.org/seminar"', '"javascript:alert(1)"'), 22,
                       "is not a web address"),
    "empty section": (GOOD.replace("  - events:\n", "  - letter:\n  - events:\n"), 16,
                      "this letter section is empty"),
    "empty heading": (GOOD.replace("heading: Regional SEND Co-ordinator", 'heading: ""'), 10,
                      "`heading` is empty"),
    "empty list": (GOOD.split("        - title: PWLE Seminar")[0].replace("      items:\n", "      items: []\n"), 17,
                   "`items` needs at least one item"),
    "script in markdown": (GOOD.replace("She starts on Monday.", "She starts <script>alert(1)</script> Monday."), 14,
                           "`<script>` is HTML"),
    "onclick in markdown": (GOOD.replace("She starts on Monday.", 'Read <a href="#" onclick="steal()">this</a>.'),
                            14, "is HTML"),
    "status": (GOOD.replace("status: draft", "status: ready"), 7, "write `draft` or `approved`"),
    "duplicate key": (GOOD.replace("status: draft", "status: draft\nstatus: approved"), 8, "duplicate key"),
    "heading on two lines": (GOOD.replace("heading: Regional SEND Co-ordinator", 'heading: "Regional\\nSEND"'), 10,
                             "single line"),
    "not a mapping": ("- just\n- a list\n", 1, "a draft starts with `title:`"),
}


@pytest.mark.parametrize("name", BAD)
def test_bad_draft_reports_line_and_fix(tmp_path: Path, name: str) -> None:
    text, line, words = BAD[name]
    found = problems(tmp_path, text)
    assert any(words in message and at == line for at, message in found), found


def test_several_problems_reported_at_once(tmp_path: Path) -> None:
    text = (GOOD.replace("hedaing", "heading").replace("      heading: Regional SEND", "      hedaing: Regional SEND")
            .replace("date: 2025-10-15", "date: 2025-02-30").replace("status: draft", "status: ready"))
    lines = [line for line, _ in problems(tmp_path, text)]
    assert lines == sorted(lines) and {7, 10, 21} <= set(lines)


def test_unknown_audience_suggests_authority(tmp_path: Path, authorities: dict) -> None:
    text = GOOD.replace("      contact:", "      audience: [walsal, dudley]\n      contact:")
    assert problems(tmp_path, text, authorities) == [(15, "`walsal` is not an authority: did you mean `walsall`?")]


def test_markdown_html_is_never_live() -> None:
    html = to_html('Hi <script>alert(1)</script> <img src=x onerror="alert(2)"> [x](javascript:alert(3)) '
                   '<style>body{}</style> <form action="https://evil.example"><input></form>')
    for live in ("<script", "<img", 'href="javascript', "<style", "<form", "<input"):
        assert live not in html
    assert not re.search(r"<[^>]*\son\w+=", html)
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize("shape", ["deep", "wide", "aliases", "big"])
def test_huge_or_nested_drafts_are_refused_quickly(tmp_path: Path, shape: str) -> None:
    if shape == "deep":
        text = GOOD + "extra: " + "[" * 5000 + "]" * 5000 + "\n"
    elif shape == "wide":
        text = GOOD.replace("sections:\n", "sections:\n" + "".join(
            f"  - article: {{heading: h{i}, body: b, links: [{{text: a, url: 'https://a.org'}}]}}\n"
            for i in range(4000)))
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
