"""What a careful sub-editor would look at before an issue goes out: warnings, never errors.

`load.py` refuses a draft that cannot be sent; these checks read a valid draft and point at things that
are probably wrong (a weekday that does not match its date, a deadline already past, "click here",
a placeholder left in). Each check is one small function over the draft; every warning is placed at
the line and column of what it is about, and says what to do in plain words.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import re
from collections.abc import Callable, Iterator
from typing import Any, TypedDict
from urllib.parse import urlsplit

from markdown_it.token import Token

from newsletter.load import Draft, Path_, Problem, fields_at
from newsletter.markdown import _parser
from newsletter.model import (
    SECTION_KINDS,
    Article,
    Events,
    Image,
    Letter,
    Link,
    Person,
    Picture,
)

WARN_BYTES = 90 * 1024
GMAIL_CLIP_KB = 102
SUBJECT_MAX = 78
EXAMPLE_LINK = "“Book a place on the PWLE seminar”"

DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = [
    "",
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]


def check(draft: Draft, html_size: int | None = None) -> list[Problem]:
    """Every warning for a valid draft, in line order."""
    problems = [problem for one in CHECKS for problem in one(draft)]
    problems += check_size(draft, html_size)
    return sorted(problems, key=lambda p: (p.line, p.column))


# ---------------------------------------------------------------------------------------------------------
# The text of a draft, with where each piece is


class _At(TypedDict):
    """Where in a piece of text a problem is: `Draft.problem`'s `offset` and `found`."""

    offset: int | None
    found: str


@dataclasses.dataclass(frozen=True)
class Text:
    """One text value of the draft: `text` is as written in the YAML, so offsets match the file."""

    path: Path_
    text: str
    kind: str
    """markdown (body, about, intro, signed), line (headings, titles, names ...), link_text or alt."""


@dataclasses.dataclass(frozen=True)
class Url:
    path: Path_
    url: str
    offset: int | None = None
    found: str = ""


@dataclasses.dataclass(frozen=True)
class Anchor:
    """A link as readers see it: its words and where it goes."""

    path: Path_
    text: str
    url: str
    offset: int | None = None
    found: str = ""


def _raw(draft: Draft, path: Path_, value: str) -> str:
    """The value as written in the file (block text keeps its layout), or the model's value."""
    node: Any = draft.tree
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return value
    return node if isinstance(node, str) and node.strip() == value else value


def texts(draft: Draft) -> Iterator[Text]:
    """Every piece of text a reader sees, in the order of the draft."""
    issue = draft.issue

    def text(path: Path_, value: str | None, kind: str) -> Iterator[Text]:
        if value is not None:
            yield Text(path, _raw(draft, path, value), kind)

    def person(at: Path_, who: Person | None) -> Iterator[Text]:
        if who is not None:
            yield from text((*at, "name"), who.name, "line")
            yield from text((*at, "role"), who.role, "line")

    def links(at: Path_, items: list[Link]) -> Iterator[Text]:
        for j, link in enumerate(items):
            yield from text((*at, j, "text"), link.text, "link_text")

    yield from text(("title",), issue.title, "line")
    yield from text(("edition",), issue.edition, "line")
    yield from text(("subject",), issue.subject, "line")
    yield from text(("preheader",), issue.preheader, "line")
    yield from text(("from", "name"), issue.sender.name, "line")
    for i, section in enumerate(issue.sections):
        at: Path_ = ("sections", i, section.kind)
        if isinstance(section, Letter):
            yield from text((*at, "heading"), section.heading, "line")
            if section.image:
                yield from text((*at, "image", "alt"), section.image.alt, "alt")
                yield from text((*at, "image", "caption"), section.image.caption, "line")
            yield from text((*at, "body"), section.body, "markdown")
            yield from text((*at, "sign_off"), section.sign_off, "line")
            yield from text((*at, "signed"), section.signed, "markdown")
        elif isinstance(section, Article):
            yield from text((*at, "heading"), section.heading, "line")
            if section.image:
                yield from text((*at, "image", "alt"), section.image.alt, "alt")
                yield from text((*at, "image", "caption"), section.image.caption, "line")
            yield from text((*at, "body"), section.body, "markdown")
            yield from person((*at, "contact"), section.contact)
            yield from links((*at, "links"), section.links)
        elif isinstance(section, Image):
            yield from text((*at, "alt"), section.alt, "alt")
            yield from text((*at, "caption"), section.caption, "line")
        elif isinstance(section, Events):
            yield from text((*at, "heading"), section.heading, "line")
            yield from text((*at, "intro"), section.intro, "markdown")
            for j, event in enumerate(section.items):
                item: Path_ = (*at, "items", j)
                yield from text((*item, "title"), event.title, "line")
                yield from text((*item, "cost"), event.cost, "line")
                for k, session in enumerate(event.sessions):
                    yield from text((*item, "sessions", k, "venue"), session.venue, "line")
                    yield from text((*item, "sessions", k, "online"), session.online, "line")
                    yield from text((*item, "sessions", k, "note"), session.note, "line")
                    if session.booking:
                        yield from text((*item, "sessions", k, "booking", "text"), session.booking.text, "link_text")
                yield from text((*item, "venue"), event.venue, "line")
                yield from text((*item, "online"), event.online, "line")
                if event.booking:
                    yield from text((*item, "booking", "text"), event.booking.text, "link_text")
                yield from text((*item, "about"), event.about, "markdown")
                yield from person((*item, "contact"), event.contact)
                yield from links((*item, "links"), event.links)
    for j, attachment in enumerate(issue.attachments):
        yield from text(("attachments", j, "title"), attachment.title, "link_text")


def link_fields(draft: Draft) -> Iterator[tuple[Path_, Link]]:
    """The `links:` and `booking:` of articles, events and sessions, with their paths."""
    for i, section in enumerate(draft.issue.sections):
        at: Path_ = ("sections", i, section.kind)
        if isinstance(section, Article):
            yield from (((*at, "links", j), link) for j, link in enumerate(section.links))
        elif isinstance(section, Events):
            for j, event in enumerate(section.items):
                item: Path_ = (*at, "items", j)
                for k, session in enumerate(event.sessions):
                    if session.booking:
                        yield (*item, "sessions", k, "booking"), session.booking
                if event.booking:
                    yield (*item, "booking"), event.booking
                yield from (((*item, "links", n), link) for n, link in enumerate(event.links))


def pictures(draft: Draft) -> Iterator[tuple[Path_, Picture]]:
    """Every picture: image sections, and the `image:` of letters and articles, with their paths."""
    for i, section in enumerate(draft.issue.sections):
        if isinstance(section, Image):
            yield ("sections", i, "image"), section
        elif isinstance(section, (Letter, Article)) and section.image:
            yield ("sections", i, section.kind, "image"), section.image


def anchors(draft: Draft) -> Iterator[Anchor]:
    """Every link in the issue: the link fields, and the Markdown links in the text."""
    for path, link in link_fields(draft):
        yield Anchor((*path, "text"), link.text, link.url)
    for piece in texts(draft):
        if piece.kind == "markdown":
            for found in scan_markdown(piece.text).links:
                yield Anchor(piece.path, found.text, found.url, found.offset, found.found)


def urls(draft: Draft) -> Iterator[Url]:
    """Every address the issue links to or loads: link fields, images, contacts and Markdown links."""
    for path, link in link_fields(draft):
        yield Url((*path, "url"), link.url)
    for at, picture in pictures(draft):
        yield Url((*at, "src"), picture.src)
        if picture.link:
            yield Url((*at, "link"), picture.link)
    for j, attachment in enumerate(draft.issue.attachments):
        if attachment.url:
            yield Url(("attachments", j, "url"), attachment.url)
    for i, section in enumerate(draft.issue.sections):
        if isinstance(section, Article) and section.contact and section.contact.email:
            yield Url(("sections", i, "article", "contact", "email"), "mailto:" + section.contact.email)
    for at, event in _events(draft):
        if event.contact and event.contact.email:
            yield Url((*at, "contact", "email"), "mailto:" + event.contact.email)
    for piece in texts(draft):
        if piece.kind == "markdown":
            for found in scan_markdown(piece.text).links:
                yield Url(piece.path, found.url, found.offset, found.found)


# ---------------------------------------------------------------------------------------------------------
# Markdown: links and bare email addresses, located in the text as written


@dataclasses.dataclass(frozen=True)
class Found:
    text: str
    url: str
    offset: int
    found: str
    autolink: bool = False


@dataclasses.dataclass(frozen=True)
class Scan:
    links: tuple[Found, ...]
    emails: tuple[Found, ...]
    """Email addresses written as plain text, outside any link."""


EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")


@functools.lru_cache(maxsize=512)
def scan_markdown(source: str) -> Scan:
    """The links and plain-text email addresses of a Markdown text, parsed as the email renders it."""
    links: list[Found] = []
    emails: list[Found] = []
    line_starts = [0]
    for line in source.split("\n"):
        line_starts.append(line_starts[-1] + len(line) + 1)
    for block in _parser().parse(source):
        if block.type != "inline" or not block.children:
            continue
        cursor = line_starts[min(block.map[0], len(line_starts) - 1)] if block.map else 0
        children: list[Token] = block.children
        n = 0
        while n < len(children):
            child = children[n]
            if child.type == "link_open":
                depth, label, m = 1, [], n + 1
                while m < len(children) and depth:
                    depth += {"link_open": 1, "link_close": -1}.get(children[m].type, 0)
                    if children[m].type in ("text", "code_inline"):
                        label.append(children[m].content)
                    elif children[m].type in ("softbreak", "hardbreak"):
                        label.append("\n")
                    m += 1
                text = "".join(label)
                autolink = child.markup == "autolink"
                href = str(child.attrs.get("href", ""))
                offset, found = _locate(source, cursor, ["<" + text] if autolink else ["[" + text, text, href])
                links.append(Found(text, href, offset, found, autolink))
                cursor, n = offset + 1, m
                continue
            if child.type == "text":
                for match in EMAIL.finditer(child.content):
                    offset, found = _locate(source, cursor, [match.group()])
                    emails.append(Found(match.group(), "", offset, found))
                    cursor = offset + 1
            n += 1
    return Scan(tuple(links), tuple(emails))


def _locate(source: str, cursor: int, needles: list[str]) -> tuple[int, str]:
    """Where the first of `needles` found at or after `cursor` is; `found` is its first line."""
    for needle in needles:
        needle = needle.split("\n")[0]
        if needle and (at := source.find(needle, cursor)) >= 0:
            return at, needle
    return cursor, ""


# ---------------------------------------------------------------------------------------------------------
# 1. Weekdays beside dates


def _names(words: list[str]) -> str:
    forms = {form for word in words for form in (word.title(), word.upper())}
    return "|".join(sorted(forms, key=len, reverse=True))


_WEEKDAY_WORDS = {
    "monday": 0,
    "mon": 0,
    "tuesday": 1,
    "tues": 1,
    "tue": 1,
    "wednesday": 2,
    "weds": 2,
    "wed": 2,
    "thursday": 3,
    "thurs": 3,
    "thur": 3,
    "thu": 3,
    "friday": 4,
    "fri": 4,
    "saturday": 5,
    "sat": 5,
    "sunday": 6,
    "sun": 6,
}
_MONTH_WORDS = {name.lower(): n for n, name in enumerate(MONTHS) if name} | {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
_WD = rf"(?P<weekday>{_names(list(_WEEKDAY_WORDS))})\b\.?,?\s+"
_DAY = r"(?:the\s+)?(?P<day>[0-3]?\d)(?!\d)(?i:st|nd|rd|th)?\b"
_MONTH = rf"(?P<month>{_names(list(_MONTH_WORDS))})\b\.?"
_YEAR = r"(?:,?\s+(?P<year>(?:19|20)\d\d)\b)?"
_OF = r"(?:\s+(?i:of))?\s+"
WEEKDAY_DATE = [
    re.compile(rf"\b{_WD}{_DAY}{_OF}{_MONTH}{_YEAR}"),  # Monday 6th October, Wed 15 Oct 2025
    re.compile(rf"\b{_WD}{_MONTH}\s+{_DAY}{_YEAR}"),  # Monday, October 6th
    # Monday 6th and Tuesday 7th October: the first day takes the month (and year) that follows
    re.compile(
        rf"\b{_WD}{_DAY}(?=\s*(?:and|&|or|to|until|-|–|—)\s*(?:{_names(list(_WEEKDAY_WORDS))})?\.?,?\s*"
        rf"(?:the\s+)?[0-3]?\d(?!\d)(?i:st|nd|rd|th)?{_OF}{_MONTH}{_YEAR})"
    ),
]


def day_label(day: dt.date) -> str:
    return f"{DAYS[day.weekday()]} {day.day} {MONTHS[day.month]} {day.year}"


def guess_year(issue_month: dt.date, month: int) -> int:
    """The year of a month named without one: the one nearest the issue, from 3 months before to 8 after.

    A November issue naming January means the next January; a February issue naming December, the last.
    """
    here = issue_month.year * 12 + issue_month.month - 1
    for year in (issue_month.year, issue_month.year + 1, issue_month.year - 1):
        if -3 <= year * 12 + month - 1 - here <= 8:
            return year
    return issue_month.year


def check_weekdays(draft: Draft) -> Iterator[Problem]:
    """ "Monday 7 October" when 7 October is a Tuesday."""
    for piece in texts(draft):
        seen: set[int] = set()
        for pattern in WEEKDAY_DATE:
            for match in pattern.finditer(piece.text):
                if match.start() in seen:
                    continue
                seen.add(match.start())
                weekday = _WEEKDAY_WORDS[match["weekday"].lower()]
                month = _MONTH_WORDS[match["month"].lower()]
                year = int(match["year"]) if match["year"] else guess_year(draft.issue.month, month)
                day = int(match["day"])
                where: _At = {"offset": match.start(), "found": match.group().split("\n")[0]}
                try:
                    date = dt.date(year, month, day)
                except ValueError:
                    yield draft.problem(
                        piece.path, f"{day} {MONTHS[month]} {year} is not a date: check the day and the month", **where
                    )
                    continue
                if date.weekday() != weekday:
                    yield draft.problem(
                        piece.path,
                        f"{DAYS[weekday]} {day} {MONTHS[month]} {year} is a "
                        f"{DAYS[date.weekday()]}: check the day or the date",
                        **where,
                    )


# ---------------------------------------------------------------------------------------------------------
# 2. Dates of events


def _events(draft: Draft) -> Iterator[tuple[Path_, Any]]:
    for i, section in enumerate(draft.issue.sections):
        if isinstance(section, Events):
            for j, event in enumerate(section.items):
                yield ("sections", i, "events", "items", j), event


def check_past_sessions(draft: Draft) -> Iterator[Problem]:
    """A session dated before the issue is sent."""
    send_on = draft.issue.send_on
    for at, event in _events(draft):
        for k, session in enumerate(event.sessions):
            if session.date < send_on:
                yield draft.problem(
                    (*at, "sessions", k, "date"),
                    f"this session is on {day_label(session.date)}, "
                    f"before the issue goes out on {day_label(send_on)}: check the date, "
                    "or remove the session",
                )


def check_register_by(draft: Draft) -> Iterator[Problem]:
    """A registration deadline already past when the issue is sent, or after the event."""
    send_on = draft.issue.send_on
    for at, event in _events(draft):
        deadline = event.register_by
        if deadline is None:
            continue
        path = (*at, "register_by")
        if deadline < send_on:
            yield draft.problem(
                path,
                f"registration closes on {day_label(deadline)}, before the issue goes out "
                f"on {day_label(send_on)}: check the date, or remove `register_by`",
            )
        elif event.sessions and deadline > (last := max(s.date for s in event.sessions)):
            yield draft.problem(
                path,
                f"registration closes on {day_label(deadline)}, after the last session "
                f"on {day_label(last)}: check the dates",
            )


# ---------------------------------------------------------------------------------------------------------
# 3. Link text


VAGUE_LINK_TEXT = {
    "click here",
    "here",
    "this link",
    "link",
    "more",
    "read more",
    "this",
    "this page",
    "find out more",
    "click",
    "learn more",
    "more info",
    "more information",
    "click this link",
}


def _words(text: str) -> str:
    """Lower case, single spaces, without the punctuation around it: `Click here!` -> `click here`."""
    return " ".join(re.sub(r"^\W+|\W+$", "", text.casefold()).split())


def _is_address(text: str) -> bool:
    text = text.strip()
    return bool(re.match(r"(?i)(?:https?://|www\.)\S+$", text))


def check_link_text(draft: Draft) -> Iterator[Problem]:
    """Link words that say nothing out of context ("click here"), or a bare web address."""
    for link in anchors(draft):
        where: _At = {"offset": link.offset, "found": link.found}
        if not link.text.strip():
            yield draft.problem(
                link.path,
                "this link has no words, so readers cannot see it: write where it goes between the [ ]",
                **where,
            )
        elif _words(link.text) in VAGUE_LINK_TEXT:
            yield draft.problem(
                link.path,
                f"the link text `{link.text.strip()}` does not say where it goes: "
                f"describe the destination, like {EXAMPLE_LINK}",
                **where,
            )
        elif _is_address(link.text):
            yield draft.problem(
                link.path,
                f"the link text is a bare web address: describe the destination instead, like {EXAMPLE_LINK}",
                **where,
            )


# ---------------------------------------------------------------------------------------------------------
# 4. Images


IMAGE_FILE = re.compile(r"(?i)\.(?:jpe?g|png|gif|webp|svg|bmp|tiff?|heic|avif)$|^(?:IMG|DSC|DSCN|PXL)[_-]?\d+$")
IMAGE_WORDS = {"image", "photo", "picture", "logo", "img", "photograph", "pic", "graphic"}


def check_image_alt(draft: Draft) -> Iterator[Problem]:
    """Alt text missing on a linked image, or alt text that is a file name or just "photo"."""
    for at, section in pictures(draft):
        path = (*at, "alt")
        alt = section.alt.strip()
        if not alt:
            if section.link:
                yield draft.problem(
                    path, f"this picture is a link, so its `alt` must say where it goes: write it, like {EXAMPLE_LINK}"
                )
        elif IMAGE_FILE.search(alt):
            yield draft.problem(path, f"the alt text `{alt}` is a file name: say what the picture shows")
        elif _words(alt) in IMAGE_WORDS:
            yield draft.problem(path, f"the alt text `{alt}` says nothing about the picture: say what it shows")


# ---------------------------------------------------------------------------------------------------------
# 5. Placeholders


PLACEHOLDER = re.compile(r"(?i)\b(?:TODO|TBC|TBA|TBD|X{3,}|lorem\s+ipsum)\b|\[insert\b")
PLACEHOLDER_HOSTS = ("example.org", "example.com", "example.net")


def check_placeholder_text(draft: Draft) -> Iterator[Problem]:
    """TODO, TBC, lorem ipsum, [insert ...] left in the copy."""
    for piece in texts(draft):
        for match in PLACEHOLDER.finditer(piece.text):
            yield draft.problem(
                piece.path,
                f"`{match.group()}` is a placeholder: put in the real text before sending",
                offset=match.start(),
                found=match.group(),
            )


def _host(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme.lower() == "mailto":
        return parts.path.rpartition("@")[2].lower()
    try:
        return (parts.hostname or "").lower()
    except ValueError:
        return ""


def is_placeholder(url: str) -> bool:
    host = _host(url).rstrip(".")
    return any(host == name or host.endswith("." + name) for name in PLACEHOLDER_HOSTS)


def check_placeholder_links(draft: Draft) -> Iterator[Problem]:
    """Links to example.org and the like: stand-ins for an address that was lost or not yet known."""
    for url in urls(draft):
        if is_placeholder(url.url):
            yield draft.problem(
                url.path,
                f"this link points at a placeholder address ({url.url}): put in the real one",
                offset=url.offset,
                found=url.found,
            )


def check_link_scheme(draft: Draft) -> Iterator[Problem]:
    """http:// where https:// belongs, and Markdown links that are not web or email addresses."""
    for url in urls(draft):
        if is_placeholder(url.url):
            continue  # the placeholder warning already asks for the real address
        scheme = urlsplit(url.url.strip()).scheme.lower()
        where: _At = {"offset": url.offset, "found": url.found}
        if scheme == "http":
            yield draft.problem(url.path, "this link starts with http://: use the https:// address", **where)
        elif not scheme:
            yield draft.problem(
                url.path,
                f"`{url.url[:60]}` is not a full web address, so the link will not "
                "open: write it in full, starting with https://",
                **where,
            )
        elif scheme not in ("https", "mailto"):
            yield draft.problem(
                url.path,
                f"`{scheme}:` links are taken out of the email: link to an https:// address or a mailto: address",
                **where,
            )


# ---------------------------------------------------------------------------------------------------------
# 6. Duplicate headings


def _heading_key(text: str) -> str:
    text = text.replace("’", "'").replace("‘", "'").replace("“", '"').replace("”", '"')
    return " ".join(text.casefold().split())


def _overlap(one: list[str] | None, other: list[str] | None) -> bool:
    """Whether some reader gets both sections (no audience means everyone)."""
    return one is None or other is None or bool(set(one) & set(other))


def check_duplicate_headings(draft: Draft) -> Iterator[Problem]:
    """The same section heading or event title twice in what one reader gets."""
    seen: list[tuple[str, list[str] | None, Path_]] = []
    for i, section in enumerate(draft.issue.sections):
        at: Path_ = ("sections", i, section.kind)
        headings: list[tuple[Path_, str]] = []
        if isinstance(section, (Letter, Article, Events)):
            headings.append(((*at, "heading"), section.heading))
        if isinstance(section, Events):
            headings += [((*at, "items", j, "title"), event.title) for j, event in enumerate(section.items)]
        for path, heading in headings:
            key = _heading_key(heading)
            first = next((p for k, audience, p in seen if k == key and _overlap(audience, section.audience)), None)
            if first is not None:
                line = draft.where(first)[0]
                yield draft.problem(
                    path, f"the heading `{heading}` is also on line {line}: make each heading different"
                )
            seen.append((key, section.audience, path))


# ---------------------------------------------------------------------------------------------------------
# 7. Subject and preheader


def check_subject(draft: Draft) -> Iterator[Problem]:
    """A subject longer than inboxes show."""
    length = len(draft.issue.subject)
    if length > SUBJECT_MAX:
        yield draft.problem(
            ("subject",), f"the subject is {length} characters; inboxes show about {SUBJECT_MAX}: shorten it"
        )


def check_preheader(draft: Draft) -> Iterator[Problem]:
    """No preheader, so inboxes show whatever text comes first."""
    if draft.issue.preheader is None:
        yield draft.problem(("subject",), "there is no `preheader`: add one line for inboxes to show after the subject")


# ---------------------------------------------------------------------------------------------------------
# 8. Size


def check_size(draft: Draft, html_size: int | None) -> list[Problem]:
    """HTML large enough that Gmail is close to clipping it."""
    if html_size is None or html_size <= WARN_BYTES:
        return []
    kb = math.ceil(html_size / 1024)
    return [
        draft.problem(
            (),
            f"the email is {kb} KB; Gmail clips messages over {GMAIL_CLIP_KB} KB: "
            "shorten some items or move them to the web",
        )
    ]


# ---------------------------------------------------------------------------------------------------------
# 9. Contacts


def check_plain_emails(draft: Draft) -> Iterator[Problem]:
    """An email address in the text that readers cannot click."""
    for piece in texts(draft):
        if piece.kind == "markdown":
            for email in scan_markdown(piece.text).emails:
                yield draft.problem(
                    piece.path,
                    f"{email.text} is not a link: write it as "
                    f"[{email.text}](mailto:{email.text}), or put it in `contact:`",
                    offset=email.offset,
                    found=email.found,
                )
        elif piece.kind == "line":
            for match in EMAIL.finditer(piece.text):
                yield draft.problem(
                    piece.path,
                    f"{match.group()} cannot be a link here: put it in the text as "
                    f"[{match.group()}](mailto:{match.group()}), or in `contact:`",
                    offset=match.start(),
                    found=match.group(),
                )


def check_contacts(draft: Draft) -> Iterator[Problem]:
    """A contact named without an address, so readers cannot reach them."""
    for i, section in enumerate(draft.issue.sections):
        at: Path_ = ("sections", i, section.kind)
        if isinstance(section, Article) and section.contact and not section.contact.email:
            yield _no_email(draft, (*at, "contact"), section.contact)
    for at, event in _events(draft):
        if event.contact and not event.contact.email:
            yield _no_email(draft, (*at, "contact"), event.contact)


def _no_email(draft: Draft, path: Path_, who: Person) -> Problem:
    return draft.problem(path, f"{who.name} has no email address: add their email address, or remove the contact")


# ---------------------------------------------------------------------------------------------------------
# 10. Slips that leave a valid draft saying something else than meant


def check_keys_in_text(draft: Draft) -> Iterator[Problem]:
    """A line of a text block that looks like one of its block's own keys (`audience: [walsall]` indented two
    spaces too far): it is read as text, shown to readers, and does nothing."""
    for piece in texts(draft):
        if piece.kind != "markdown":
            continue
        keys = set(fields_at(piece.path[:-1])) | set(fields_at(piece.path[:3])) | set(SECTION_KINDS)
        field = str(piece.path[-1])
        offset = 0
        for line in piece.text.split("\n"):
            match = KEY_IN_TEXT.match(line)
            if match and match["key"] in keys:
                key = match["key"]
                owner = "event" if "items" in piece.path else str(piece.path[2])
                yield draft.problem(
                    piece.path,
                    f"`{key}:` is inside the text of `{field}`, so readers will see it "
                    f"as text and it does nothing: if it is the {owner}'s `{key}`, indent it like "
                    f"`{field}:` (line {draft.where(piece.path)[0]})",
                    offset=offset + match.start("key"),
                    found=line.strip(),
                )
            offset += len(line) + 1


KEY_IN_TEXT = re.compile(r"^\s*(?:-\s+)?(?P<key>[a-z_]+):(?:\s|$)")


def check_send_day(draft: Draft) -> Iterator[Problem]:
    """A send date on a Saturday or Sunday, when the readers are not at work."""
    day = draft.issue.send_on
    if day.weekday() >= 5:
        friday, monday = day - dt.timedelta(days=day.weekday() - 4), day + dt.timedelta(days=7 - day.weekday())
        yield draft.problem(
            ("send_on",),
            f"the send date, {day_label(day)}, is at the weekend, when readers are not "
            f"at work: send it on {day_label(friday)} or {day_label(monday)}",
        )


def _same_address(url: str) -> str:
    parts = urlsplit(url.strip())
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}?{parts.query}"


def check_repeated_links(draft: Draft) -> Iterator[Problem]:
    """The same address as a link in the text and again as a button or `links` entry of the same section."""
    found_in_text: dict[Path_, dict[str, tuple[Path_, Found]]] = {}
    for piece in texts(draft):
        if piece.kind == "markdown" and len(piece.path) > 3:
            inline = found_in_text.setdefault(piece.path[:3], {})
            for written in scan_markdown(piece.text).links:
                inline.setdefault(_same_address(written.url), (piece.path, written))
    for path, link in link_fields(draft):
        first = found_in_text.get(path[:3], {}).get(_same_address(link.url))
        if first is not None:
            at, found = first
            line = draft.where(at, found.offset, found.found)[0]
            yield draft.problem(
                path,
                f"this link goes where the link in the text on line {line} goes, so readers "
                "are given it twice: keep one of them",
            )


ATTACHED = re.compile(
    r"(?i)\b(?:(?:see|find)\s+(?:the\s+)?attach(?:ed|ments?)\b|(?:is|are)\s+attached\b|"
    r"attached\s+(?:is|are|please|you\s+will)\b|(?:I|we)(?:\s+have|['’]ve)\s+attached\b|"
    r"the\s+attached\s+(?:document|file|form|flyer|leaflet|poster|pdf|letter|list|report|programme|agenda|dates|"
    r"slides|guidance|presentation|sheet|information|details)\b)"
)


def check_see_attached(draft: Draft) -> Iterator[Problem]:
    """ "Please find attached" in an issue that links no attachment: emails from this tool carry no files."""
    if getattr(draft.issue, "attachments", None):
        return
    for piece in texts(draft):
        section = draft.issue.sections[piece.path[1]] if piece.path[0] == "sections" else None  # type: ignore[index]
        if getattr(section, "attachments", None):
            continue
        for match in ATTACHED.finditer(piece.text):
            yield draft.problem(
                piece.path,
                f"“{match.group()}”, but nothing is attached (emails from this tool never "
                "carry files): add the document under `attachments:`, so the email links to it, or "
                "link to it in the text",
                offset=match.start(),
                found=match.group(),
            )


ATTACHMENT_WARN_BYTES = 10 * 1024 * 1024


def check_attachments(draft: Draft) -> Iterator[Problem]:
    """Each attachment file is there, beside the draft (an error: its link would lead nowhere), and not huge."""
    folder = draft.path.parent
    for j, attachment in enumerate(draft.issue.attachments):
        if attachment.file is None:
            continue
        path = ("attachments", j, "file")
        found = folder / attachment.file
        if not found.is_file():
            yield draft.problem(
                path,
                f"there is no file {attachment.file} in {folder}: put it there, or correct "
                "the name (the web archive publishes it and the email links to it)",
                "error",
            )
        elif (size := found.stat().st_size) > ATTACHMENT_WARN_BYTES:
            yield draft.problem(
                path,
                f"{attachment.file} is {size / 1024 / 1024:.1f} MB: readers on phones and "
                "slow connections may not get it; over 10 MB, make it smaller or split it",
            )


def check_attachments_published(draft: Draft, archive_url: str | None) -> list[Problem]:
    """A file attachment needs the web archive (`archive_url` in newsletter.toml): the email links it there."""
    if archive_url:
        return []
    return [
        draft.problem(
            ("attachments", j, "file"),
            f"{attachment.file} can only be linked from the email once it "
            "is published with the web archive: set `archive_url` under [list] in newsletter.toml "
            "(and run `newsletter archive`), or give a `url:` where the document already is",
            "error",
        )
        for j, attachment in enumerate(draft.issue.attachments)
        if attachment.file is not None
    ]


CHECKS: list[Callable[[Draft], Iterator[Problem]]] = [
    check_weekdays,
    check_past_sessions,
    check_register_by,
    check_link_text,
    check_image_alt,
    check_placeholder_text,
    check_placeholder_links,
    check_link_scheme,
    check_duplicate_headings,
    check_subject,
    check_preheader,
    check_plain_emails,
    check_contacts,
    check_keys_in_text,
    check_send_day,
    check_repeated_links,
    check_see_attached,
    check_attachments,
]
