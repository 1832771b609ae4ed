"""Issue model -> the email's two parts: HTML (Jinja2 -> MJML -> mjml-python -> premailer) and text.

Each authority's variant is rendered once; per-recipient fields are placeholders that `Rendered.fill`
replaces with a string substitution, so sending to thousands never re-renders the issue. `render_sample`
fills them for a clearly sample reader, so what the editor opens is what a reader gets.

The text part reads like a letter: the prose is kept as written, each link's words are followed by a
number (`the booking form [1]`) and the addresses are listed after the section (`[1] https://...`), one
line each, once per section, with nothing glued to them. Lines are at most 72 characters, but a URL.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import logging
import re
import secrets
import textwrap
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import mjml
from premailer import Premailer

from newsletter import markdown
from newsletter.errors import RenderError
from newsletter.model import Attachment, Issue, Person, Session
from newsletter.recipients import Authority

if TYPE_CHECKING:
    from newsletter.config import Settings

TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
FONTS = "-apple-system, BlinkMacSystemFont, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"
COLOUR = {
    "brand": "#183f6b", "accent": "#183f6b", "heading": "#183f6b", "link": "#1a5ea8", "text": "#1f2933",
    "muted": "#4b5563", "background": "#eef1f5", "paper": "#ffffff", "footer": "#e5e9ef", "rule": "#c9d1db",
    "badge": "#1f6f3f",
}
PERSONAL = {"email": "[[email]]", "unsubscribe_url": "[[unsubscribe_url]]"}
"""Per-recipient fields, as placeholders in the rendered parts."""
GMAIL_CLIP_BYTES = 102 * 1024
CONTENTS_FROM = 6
"""An issue without `contents:` gets an "In this issue" list when a variant has this many headed parts."""
SIGNATURE = "-- "
"""The signature separator (RFC 3676 4.3: dash, dash, space): mail programs grey out or trim what follows."""


@dataclasses.dataclass(frozen=True)
class Rendered:
    html: str
    text: str
    variant: str | None = None
    """The authority whose variant this is (its name), or None for the everyone-variant."""

    def fill(self, **fields: str) -> tuple[str, str]:
        """The parts for one recipient; values are escaped for HTML, verbatim in text."""
        missing = PERSONAL.keys() - fields.keys()
        if missing:
            raise ValueError(f"personal fields missing: {', '.join(sorted(missing))}")
        body_html, body_text = self.html, self.text
        for name, marker in PERSONAL.items():
            body_html = body_html.replace(marker, html.escape(fields[name], quote=True))
            body_text = body_text.replace(marker, fields[name])
        return body_html, body_text

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))


@dataclasses.dataclass(frozen=True)
class Web:
    """Where an issue is published on the web: its page, and the folder its calendar files are in."""

    page: str | None = None
    """The issue's web page, for the email's "view in your browser" link."""
    files: str | None = None
    """Prefix of the `.ics` links ("" = beside the page); None leaves "Add to calendar" out."""


def render(issue: Issue, authority: Authority | None = None, *, web: Web = Web(), archive: bool = False) -> Rendered:
    """One authority's variant; None renders the sections meant for everyone.

    `archive` renders the public web page: no personal fields, no unsubscribe link.
    """
    sections = issue.for_authority(authority.slug if authority else None)
    context = {
        "issue": issue,
        "sections": sections,
        "contents": contents(issue, sections),
        "audience": authority.name if authority else "an organisation in the region",
        "personal": PERSONAL,
        "archive": archive,
        "web": web,
        "calendar": _calendar_files(issue) if web.files is not None else {},
        "documents": [(attachment, attachment_url(attachment, web)) for attachment in issue.attachments],
        "documents_anchor": DOCUMENTS_ANCHOR,
        "documents_heading": DOCUMENTS_HEADING,
        "fonts": FONTS,
        "colour": COLOUR,
        "signature": SIGNATURE,
    }
    source = _environment().get_template("email.mjml.j2").render(context)
    text = _text_environment().get_template("email.txt.j2").render({**context, "refs": References()})
    return Rendered(html=to_html(source), text=_squeeze_blank_lines(text), variant=authority.name if authority else None)


DOCUMENTS_ANCHOR = "documents"
DOCUMENTS_HEADING = "Documents"


def anchor(number: int) -> str:
    """The id of the heading of the `number`th section (from 1) of a variant: the contents list links to it."""
    return f"section-{number}"


def contents(issue: Issue, sections: list) -> list[tuple[str, str]]:
    """The "In this issue" list of a variant, as (anchor, heading); empty when it has none.

    `contents: true` always gives one, `false` never; without it, a variant with CONTENTS_FROM or more
    headed parts (sections with a heading, and the documents) gets one.
    """
    entries = [(anchor(n), section.heading) for n, section in enumerate(sections, 1) if getattr(section, "heading", None)]
    if issue.attachments:
        entries.append((DOCUMENTS_ANCHOR, DOCUMENTS_HEADING))
    wanted = issue.contents if issue.contents is not None else len(entries) >= CONTENTS_FROM
    return entries if wanted and entries else []


def attachment_url(attachment: Attachment, web: Web) -> str | None:
    """Where readers open an attachment: its URL, or the published file beside the issue's page (None when
    no archive is configured: `check` makes that an error, as the link would lead nowhere)."""
    if attachment.url:
        return attachment.url
    if web.files is None or attachment.name is None:
        return None
    return web.files + urllib.parse.quote(attachment.name)


class References:
    """The numbered links of the text part: `words [1]` in the prose, `[1] https://...` after the section.

    Numbers run on through the message, so each is found once by a search; an address is listed once
    per section however often the section links to it.
    """

    def __init__(self) -> None:
        self.next = 1
        self.pending: dict[str, int] = {}

    def number(self, url: str) -> int:
        if url not in self.pending:
            self.pending[url] = self.next
            self.next += 1
        return self.pending[url]

    def mark(self, url: str) -> str:
        """` [n]`, joined to the word before it until the line is wrapped."""
        return f"{markdown.GLUE}[{self.number(url)}]"

    def flush(self) -> str:
        """The list of the section's addresses (mailto: links as the address), emptied for the next section."""
        lines = [f"[{n}] {url.removeprefix('mailto:')}" for url, n in self.pending.items()]
        self.pending = {}
        return "\n".join(lines)


@dataclasses.dataclass(frozen=True)
class Sample:
    """An issue as one sample reader gets it: the personal fields filled, nobody's address in it."""

    html: str
    text: str
    email: str

    @property
    def size(self) -> int:
        return len(self.html.encode("utf-8"))

    @property
    def note(self) -> str:
        return f"personal fields filled for a sample reader: {self.email}"


def sample_address(authority: Authority | None) -> str:
    """A clearly made-up reader of the authority, at a reserved domain (RFC 2606): never a real mailbox."""
    return f"sample.reader@{authority.slug if authority else 'everyone'}.example.org"


def render_sample(issue: Issue, authority: Authority | None, settings: Settings) -> Sample:
    """The variant as a reader of `authority` gets it: with the links the send would have (view in your
    browser, calendar files, documents) and the personal fields filled for `sample_address`.

    Its unsubscribe link has the shape of a real one but is sealed with a throwaway key: it unsubscribes
    nobody, so `render` needs no secret.
    """
    from newsletter.archive import published
    from newsletter.message import Composer

    rendered = render(issue, authority, web=published(settings, issue))
    address = sample_address(authority)
    fields = Composer(issue, rendered, settings, secrets.token_urlsafe(32)).personal_fields(address)
    page, text = rendered.fill(**fields)
    return Sample(html=page, text=text, email=address)


def short_name(name: str) -> str:
    """`Dudley Metropolitan Borough Council` -> `Dudley`: an authority as a proof's subject names it."""
    for ending in (" Metropolitan Borough Council", " County Council", " City Council", " Council"):
        if name.endswith(ending) and len(name) > len(ending):
            return name.removesuffix(ending)
    return name


def _calendar_files(issue: Issue) -> dict[int, str]:
    """Session (by identity) -> its .ics file name."""
    from newsletter.calendar import entries

    return {id(entry.session): entry.filename for entry in entries(issue)}


def to_html(source: str) -> str:
    """MJML -> inlined HTML, with the known traps handled (fonts, !important, doctype, network)."""
    try:
        page = mjml.mjml2html(source, fonts={}, disable_comments=True)
    except ValueError as exc:
        raise RenderError(f"MJML could not be rendered: {exc}") from None
    # premailer keeps a doctype only when it matches lxml's spelling exactly.
    page = re.sub(r"^<!doctype html>", "<!DOCTYPE html>", page, flags=re.IGNORECASE)
    inlined = Premailer(
        page,
        keep_style_tags=True,  # media queries must stay in <style>: they make the columns responsive
        strip_important=False,
        allow_network=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
        remove_classes=False,
    ).transform()
    return inlined


def when(session: Session) -> str:
    """`Wednesday 15 October 2025, 9:30am to 11am` in GOV.UK style."""
    text = day(session.date)
    if session.start and session.end:
        return f"{text}, {clock(session.start)} to {clock(session.end)}"
    if session.start:
        return f"{text}, {clock(session.start)}"
    return text


def short_day(date: dt.date) -> str:
    return f"{date:%a} {date.day} {date:%b}"


def day(date: dt.date) -> str:
    return f"{date:%A} {date.day} {date:%B %Y}"


def clock(time: dt.time) -> str:
    if time == dt.time(12, 0):
        return "midday"
    hour = time.hour % 12 or 12
    minutes = f":{time.minute:02d}" if time.minute else ""
    return f"{hour}{minutes}{'am' if time.hour < 12 else 'pm'}"


def where(venue: str | None, online: str | None) -> str:
    return " and ".join(filter(None, [venue, f"online ({online})" if online else None]))


def contact(person: Person) -> str:
    """`Contact: Natalie Bevan, SEND Co-ordinator, natalie.bevan@...` as text; the template links the address."""
    return ", ".join(filter(None, [person.name, person.role, person.email]))


def _html_contact(person: Person) -> str:
    from markupsafe import Markup, escape

    parts = [escape(person.name)] + ([escape(person.role)] if person.role else [])
    if person.email:
        parts.append(Markup('<a href="mailto:{0}">{0}</a>').format(person.email))
    return Markup("Contact: ") + Markup(", ").join(parts)


def _filters(env: jinja2.Environment) -> jinja2.Environment:
    env.globals.update(when=when, where=where, anchor=anchor)
    env.filters.update(day=day, short_day=short_day, id=id)
    return env


def _wrap(text: str, indent: str = "", first: str | None = None) -> list[str]:
    lines = textwrap.wrap(text, markdown.WIDTH, initial_indent=indent if first is None else first,
                          subsequent_indent=indent, break_long_words=False, break_on_hyphens=False)
    return [line.replace(markdown.GLUE, " ") for line in lines]


def _labelled(label: str, url: str) -> str:
    """`label: URL` on one line when it fits, else the URL on a line of its own: never inside a sentence."""
    line = f"{label}: {url}"
    return line if len(line) <= markdown.WIDTH or len(label) + 2 > markdown.WIDTH else f"{label}:\n{url}"


def _squeeze_blank_lines(text: str) -> str:
    """No line ends in spaces (but the signature separator), at most two blank lines in a row."""
    lines = [line if line == SIGNATURE else line.replace(markdown.GLUE, " ").rstrip() for line in text.split("\n")]
    return re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines)).strip("\n") + "\n"


def _underline(text: str, char: str = "=") -> str:
    lines = _wrap(text)
    return "\n".join([*lines, char * max(map(len, lines))])


@functools.cache
def _environment() -> jinja2.Environment:
    env = _filters(jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined))
    env.filters["markdown"] = markdown.to_html
    env.globals["contact"] = _html_contact
    return env


@functools.cache
def _text_environment() -> jinja2.Environment:
    env = _filters(jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=False,
                                      undefined=jinja2.StrictUndefined, keep_trailing_newline=True))
    env.filters["markdown"] = lambda source, refs: markdown.to_text(source, refs=refs)
    env.filters["underline"] = _underline
    env.filters["wrap"] = lambda text, indent="", first=None: "\n".join(_wrap(text, indent, first))
    env.globals["contact"] = lambda person: f"Contact: {contact(person)}"
    env.globals["labelled"] = _labelled
    return env
