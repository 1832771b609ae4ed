"""The sub-editor's warnings: each check fires on a small draft at the right line, and is silent on a
clean one; the real drafts give only the warnings they deserve."""

from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import pytest

from newsletter.checks import check, guess_year
from newsletter.load import Draft, Problem, load_draft

ROOT = Path(__file__).resolve().parent.parent
DRAFTS = sorted((ROOT / "drafts").glob("*.yaml"))

HEADER = """\
title: Regional Update
issue: {issue}
subject: "{subject}"
{preheader}from: {{name: West Midlands Regional Team, email: regional.update@wmchildrensservices.org.uk}}
send_on: {send_on}
sections:
"""


def source(
    sections: str,
    issue: str = "2025-10",
    send_on: str = "2025-10-01",
    subject: str = "Regional Update, October 2025",
    preheader: str | None = "News and events",
) -> str:
    header = HEADER.format(
        issue=issue,
        send_on=send_on,
        subject=subject,
        preheader=f"preheader: {preheader}\n" if preheader is not None else "",
    )
    return header + textwrap.dedent(sections).strip("\n") + "\n"


def load(tmp_path: Path, text: str) -> Draft:
    path = tmp_path / "draft.yaml"
    path.write_text(text, encoding="utf-8")
    return load_draft(path)


def line_of(text: str, needle: str) -> int:
    """The line (1-based) of the only line holding `needle`."""
    lines = [n for n, line in enumerate(text.splitlines(), 1) if needle in line]
    assert len(lines) == 1, f"{needle!r} is on lines {lines}"
    return lines[0]


def warnings(
    tmp_path: Path, sections: str, html_size: int | None = None, **header: str | None
) -> tuple[str, list[Problem]]:
    text = source(sections, **header)
    problems = check(load(tmp_path, text), html_size)
    assert all(p.severity == "warning" for p in problems)
    return text, problems


def only(problems: list[Problem], fragment: str) -> Problem:
    found = [p for p in problems if fragment in p.message]
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


ARTICLE = """\
- article:
    heading: News
    body: |
      First paragraph.

      {body}
"""


# 1. weekdays beside dates -----------------------------------------------------------------------------------


def test_weekday_that_does_not_match_the_date(tmp_path: Path) -> None:
    text, problems = warnings(tmp_path, ARTICLE.format(body="Join us on Monday 7th October, 11am."))
    problem = only(problems, "check the day or the date")
    assert problem.message == "Monday 7 October 2025 is a Tuesday: check the day or the date"
    assert (problem.line, problem.column) == (line_of(text, "Monday 7th"), 18)


def test_weekday_that_matches_the_date_in_its_year(tmp_path: Path) -> None:
    _, problems = warnings(
        tmp_path, ARTICLE.format(body="Join us on Monday 7th October, 11am."), issue="2024-10", send_on="2024-10-01"
    )
    assert problems == []


@pytest.mark.parametrize(
    ("right", "wrong"),
    [
        ("Monday 6th October, 11am", "Sunday 6th October, 11am"),
        ("Tuesday 14 October 2025", "Tuesday 14 October 2026"),
        ("Wed 15 Oct", "Thurs. 15 Oct"),
        ("Thursday 16th October", "Thursday 17th October"),
        ("Monday 22nd of September", "Monday 23rd of September"),
        ("Friday 26 September", "Friday 26 Sept 2024"),
        ("Monday, October 6th", "Monday, October 7th"),
        ("MONDAY 6TH OCTOBER", "FRIDAY 6TH OCTOBER"),
        ("Monday 6th and Tuesday 7th October", "Monday 7th and Tuesday 8th October"),
    ],
)
def test_weekdays_written_every_way_are_read(tmp_path: Path, right: str, wrong: str) -> None:
    _, problems = warnings(tmp_path, ARTICLE.format(body=f"See you {right}."), issue="2025-09", send_on="2025-09-01")
    assert problems == []
    _, problems = warnings(tmp_path, ARTICLE.format(body=f"See you {wrong}."), issue="2025-09", send_on="2025-09-01")
    assert problems and all("check the day or the date" in p.message for p in problems)


def test_weekday_year_is_the_next_one_for_months_long_before_the_issue(tmp_path: Path) -> None:
    assert guess_year(load(tmp_path, source(ARTICLE.format(body="x"), issue="2025-11")).issue.month, 1) == 2026
    text, problems = warnings(
        tmp_path,
        "- article:\n    heading: Tuesday 12 January and Monday 12 January\n    body: Hello.\n",
        issue="2025-11",
        send_on="2025-11-01",
    )
    problem = only(problems, "check the day or the date")  # 12 January 2026 is a Monday
    assert problem.message == "Tuesday 12 January 2026 is a Monday: check the day or the date"
    assert problem.line == line_of(text, "Tuesday 12 January")


def test_weekday_beside_a_day_that_does_not_exist(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path, ARTICLE.format(body="Come on Tuesday 31 September."), issue="2025-09", send_on="2025-09-01"
    )
    assert only(problems, "31 September 2025 is not a date").line == line_of(text, "31 September")


def test_weekdays_in_the_real_september_draft_are_right(tmp_path: Path) -> None:
    draft = load_draft(ROOT / "drafts" / "2025-09.yaml")
    assert "Monday 22nd of September" in "\n".join(draft.lines)
    assert not [p for p in check(draft) if "check the day" in p.message]


# 2. dates of events -----------------------------------------------------------------------------------------

EVENT = """\
- events:
    items:
      - title: Seminar
        sessions:
          - {{date: {date}, start: "{start}", end: "{end}"}}
          - {{date: 2025-10-20}}
        register_by: {register_by}
"""


def test_session_before_the_send_date(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path, EVENT.format(date="2025-09-30", start="10:00", end="11:00", register_by="2025-10-10")
    )
    problem = only(problems, "before the issue goes out")
    assert problem.message == (
        "this session is on Tuesday 30 September 2025, before the issue goes out on "
        "Wednesday 1 October 2025: check the date, or remove the session"
    )
    assert problem.line == line_of(text, "2025-09-30")


def test_registration_closing_before_the_send_date(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path, EVENT.format(date="2025-10-15", start="10:00", end="11:00", register_by="2025-09-29")
    )
    problem = only(problems, "registration closes on Monday 29 September 2025, before the issue goes out")
    assert problem.line == line_of(text, "register_by")


def test_registration_closing_after_the_last_session(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path, EVENT.format(date="2025-10-15", start="10:00", end="11:00", register_by="2025-10-21")
    )
    problem = only(problems, "after the last session on Monday 20 October 2025")
    assert problem.line == line_of(text, "register_by")


# 3. link text -----------------------------------------------------------------------------------------------


def test_markdown_link_that_says_click_here(tmp_path: Path) -> None:
    text, problems = warnings(tmp_path, ARTICLE.format(body="To book, [click here](https://wm.gov.uk/book)."))
    problem = only(problems, "does not say where it goes")
    assert "`click here`" in problem.message and "Book a place on the PWLE seminar" in problem.message
    assert (problem.line, problem.column) == (line_of(text, "click here"), 16)


def test_link_field_that_says_read_more_or_is_an_address(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: News
            body: Hello.
            links:
              - {text: "Read more...", url: "https://wm.gov.uk/a"}
              - {text: "https://wm.gov.uk/b", url: "https://wm.gov.uk/b"}
        - events:
            items:
              - title: Seminar
                booking: {text: Here, url: "https://wm.gov.uk/c"}
                about: See <https://wm.gov.uk/d> for details, and [](https://wm.gov.uk/e).
        """,
    )
    assert only(problems, "`Read more...` does not say").line == line_of(text, "Read more")
    assert only(problems, "`Here` does not say").line == line_of(text, "text: Here")
    bare = [p.line for p in problems if "bare web address" in p.message]
    assert bare == [line_of(text, '"https://wm.gov.uk/b"'), line_of(text, "about:")]
    assert only(problems, "this link has no words").line == line_of(text, "about:")
    assert len(problems) == 5


# 4. images --------------------------------------------------------------------------------------------------


def test_images_alt_text(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - image: {src: "https://wm.gov.uk/a.jpg", alt: "", link: "https://wm.gov.uk/awards"}
        - image: {src: "https://wm.gov.uk/b.jpg", alt: IMG_1234.JPG}
        - image: {src: "https://wm.gov.uk/c.jpg", alt: "Photo."}
        - image: {src: "https://wm.gov.uk/d.jpg", alt: ""}
        """,
    )
    assert only(problems, "this picture is a link, so its `alt` must say where it goes").line == line_of(text, "a.jpg")
    assert only(problems, "`IMG_1234.JPG` is a file name: say what the picture shows").line == line_of(text, "b.jpg")
    assert only(problems, "`Photo.` says nothing about the picture").line == line_of(text, "c.jpg")
    assert len(problems) == 3  # the unlinked decorative image may have an empty alt


# 5. placeholders --------------------------------------------------------------------------------------------


def test_placeholder_text(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: News
            body: |
              Our to-do list is long.

              Speakers: [insert names]. Lorem ipsum dolor.
        - events:
            items:
              - title: Seminar
                venue: Venue tbc
        """,
    )
    assert only(problems, "`[insert` is a placeholder: put in the real text").line == line_of(text, "Speakers")
    assert only(problems, "`Lorem ipsum` is a placeholder").line == line_of(text, "Speakers")
    problem = only(problems, "`tbc` is a placeholder")
    assert (problem.line, problem.column) == (
        line_of(text, "Venue tbc"),
        text.splitlines()[problem.line - 1].index("tbc") + 1,
    )
    assert len(problems) == 3


def test_placeholder_and_insecure_links(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: News
            body: |
              Read [the plan](https://www.example.com/plan) and [the report](http://wm.gov.uk/report).
            links:
              - {text: The lost page, url: "https://example.org/lost-link/x"}
              - {text: The real page, url: "https://example.org.uk/x"}
        - image: {src: "http://wm.gov.uk/a.jpg", alt: The team, link: "https://lists.example.net/x"}
        - events:
            items:
              - {title: Seminar, contact: {name: Jo, email: jo@example.com}}
        """,
    )
    placeholder = [p.line for p in problems if p.message.startswith("this link points at a placeholder address (")]
    assert placeholder == [
        line_of(text, "the plan"),
        line_of(text, "lost-link"),
        line_of(text, "a.jpg"),
        line_of(text, "jo@example.com"),
    ]
    insecure = [(p.line, p.column) for p in problems if "use the https:// address" in p.message]
    body = line_of(text, "the report")
    assert insecure == [(body, text.splitlines()[body - 1].index("[the report") + 1), (line_of(text, "a.jpg"), 16)]
    assert len(problems) == 6


# 6. duplicate headings --------------------------------------------------------------------------------------


def test_duplicate_headings(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article: {heading: "Children’s  News", body: Hello.}
        - article: {heading: Local news, body: For Walsall., audience: [walsall]}
        - article: {heading: Local news, body: For Dudley., audience: [dudley]}
        - events:
            items:
              - title: "children's news"
        """,
    )
    problem = only(problems, "is also on line")
    assert problem.message == "the heading `children's news` is also on line 8: make each heading different"
    assert problem.line == line_of(text, 'title: "children\'s news"')
    assert len(problems) == 1  # the two Local news sections never reach the same reader


# 7. subject and preheader -----------------------------------------------------------------------------------


def test_long_subject_and_no_preheader(tmp_path: Path) -> None:
    subject = "Regional Update, October 2025: " + "news " * 10
    text, problems = warnings(tmp_path, ARTICLE.format(body="Hello."), subject=subject.strip(), preheader=None)
    long = only(problems, "the subject is 80 characters; inboxes show about 78: shorten it")
    missing = only(problems, "there is no `preheader`")
    assert long.line == missing.line == line_of(text, "subject:")


# 8. size ----------------------------------------------------------------------------------------------------


def test_html_size(tmp_path: Path) -> None:
    _, problems = warnings(tmp_path, ARTICLE.format(body="Hello."), html_size=95 * 1024 - 10)
    problem = only(problems, "Gmail clips")
    assert problem.message == (
        "the email is 95 KB; Gmail clips messages over 102 KB: shorten some items or move them to the web"
    )
    assert (problem.line, problem.column) == (1, 1)
    assert warnings(tmp_path, ARTICLE.format(body="Hello."), html_size=90 * 1024)[1] == []


# 9. contacts ------------------------------------------------------------------------------------------------


def test_email_address_that_is_not_a_link(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: News
            body: |
              Write to [jo@wm.gov.uk](mailto:jo@wm.gov.uk) or <al@wm.gov.uk>.

              Or to sam.lee@wm.gov.uk.
        """,
    )
    problem = only(problems, "is not a link")
    assert problem.message == (
        "sam.lee@wm.gov.uk is not a link: write it as [sam.lee@wm.gov.uk](mailto:sam.lee@wm.gov.uk), "
        "or put it in `contact:`"
    )
    assert (problem.line, problem.column) == (line_of(text, "Or to"), 13)
    assert len(problems) == 1


def test_contact_without_an_email_address(tmp_path: Path) -> None:
    text, problems = warnings(
        tmp_path,
        """\
        - article:
            heading: News
            body: Hello.
            contact: {name: Sandra Prew, role: Researcher}
        - events:
            items:
              - title: Seminar
                contact:
                  name: Sue DeWaal
        """,
    )
    assert only(
        problems, "Sandra Prew has no email address: add their email address, or remove the contact"
    ).line == line_of(text, "Sandra Prew")
    assert only(problems, "Sue DeWaal has no email").line == line_of(text, "Sue DeWaal") - 1  # at `contact:`


# silence on a clean draft -----------------------------------------------------------------------------------

CLEAN = """\
- letter:
    heading: From the Chair
    body: |
      September always feels like a fresh start. On Monday 6th October, 11am, we meet; on
      Wednesday 15 Oct we meet again. Write to [the Regional Team](mailto:regional.team@wm.gov.uk)
      or <chair@wm.gov.uk>, and read [the Regional Priority Plan](https://wm.gov.uk/plan).

      - a bullet with **bold** and *italic*
    sign_off: Best wishes
    signed: |
      Nafeesa and Lizzie,\\
      the Regional Team
- article:
    heading: Regional SEND Co-ordinator
    body: Natalie joins us on Monday 22nd of September.
    contact: {name: Natalie Bevan, role: SEND Co-ordinator, email: natalie.bevan@wm.gov.uk}
    links:
      - {text: Read the RIIA Grant Delivery Plan, url: "https://wm.gov.uk/riia"}
    audience: [walsall, dudley]
- image:
    src: https://wm.gov.uk/team.jpg
    alt: The Walsall team receiving their award
    caption: Walsall's Team of Excellence
    link: https://wm.gov.uk/awards
    width: 300
- image: {src: "https://wm.gov.uk/rule.png", alt: ""}
- events:
    heading: Upcoming conferences and events
    intro: All events are free for member authorities.
    items:
      - title: "PWLE Seminar: Child contact problems and the Family Court"
        cost: free
        sessions:
          - date: 2025-10-06
            start: "11:00"
            end: "12:30"
            online: Microsoft Teams
            booking: {text: Sign up for the Monday 6 October seminar, url: "https://wm.gov.uk/pwle-6"}
          - {date: 2025-10-14, start: 10.30am, end: noon, venue: "The Studio, Birmingham"}
        venue: Worcestershire County Cricket Club
        online: Microsoft Teams
        register_by: 2025-09-26
        booking: {text: Register for the PWLE seminar, url: "https://wm.gov.uk/pwle"}
        about: |
          Deadline to register: Friday 26 September.
        contact: {name: Sue DeWaal, email: sue.dewaal@wm.gov.uk}
        links:
          - {text: The seminar programme, url: "https://wm.gov.uk/pwle/programme"}
      - title: Participation Conference
"""


def test_clean_draft_has_no_warnings(tmp_path: Path) -> None:
    text = source(CLEAN, issue="2025-09", send_on="2025-09-19")
    assert check(load(tmp_path, text), html_size=40 * 1024) == []


# the real drafts --------------------------------------------------------------------------------------------

KINDS = {
    "placeholder link": "): put in the real one",
    "contact without email": "has no email address: add their email address, or remove the contact",
    "email not a link": "is not a link: write it as [",
    "same link twice": "so readers are given it twice",
}
EXPECTED = {
    "2023-11.yaml": {"placeholder link": 5, "contact without email": 4},
    "2025-07.yaml": {"placeholder link": 2, "contact without email": 1, "same link twice": 1},
    "2025-09.yaml": {"placeholder link": 12, "same link twice": 5},
}


@pytest.mark.parametrize("path", DRAFTS, ids=[p.name for p in DRAFTS])
def test_real_drafts_warn_only_about_what_is_really_wrong(path: Path) -> None:
    draft = load_draft(path)
    problems = check(draft, html_size=60 * 1024)
    kinds = Counter(next((k for k, fragment in KINDS.items() if fragment in p.message), p.message) for p in problems)
    assert dict(kinds) == EXPECTED[path.name]
    assert all(p.severity == "warning" for p in problems)
    assert [(p.line, p.column) for p in problems] == sorted((p.line, p.column) for p in problems)
    for p in problems:
        if p.message.startswith("this link points at a placeholder"):
            assert "example.org/lost-link/" in draft.lines[p.line - 1]


def test_checks_do_not_crash_on_odd_but_valid_drafts(tmp_path: Path) -> None:
    odd = """\
        - image: {src: "https://wm.gov.uk/a.jpg", alt: "  ", link: "https://wm.gov.uk/b"}
        - events:
            intro: "[](https://wm.gov.uk/x) [x]"
            items:
              - title: Participation Conference
                register_by: 2025-09-01
                about: |
                  [**Book** *now*](https://wm.gov.uk/b) [a\\
                  b](https://wm.gov.uk/c) <mailto:x@wm.gov.uk> Monday 99 October, Sunday 0 May.

                  > quoted [here](<https://wm.gov.uk/with space>)

                  1. [ref link][r]

                  [r]: https://wm.gov.uk/r
        """
    _, problems = warnings(tmp_path, odd, send_on="2025-10-01")
    assert any("registration closes" in p.message for p in problems)
    assert any("`here` does not say" in p.message for p in problems)
