"""Issue model -> the email's two parts: HTML (Jinja2 -> MJML -> mjml-python -> premailer) and text.

Each authority's variant is rendered once; per-recipient fields are placeholders that `Rendered.fill`
replaces with a string substitution, so sending to thousands never re-renders the issue.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import html
import logging
import re
import textwrap
from pathlib import Path

import jinja2
import mjml
from premailer import Premailer

from newsletter import markdown
from newsletter.errors import RenderError
from newsletter.model import Issue, Person, Session
from newsletter.recipients import Authority

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


@dataclasses.dataclass(frozen=True)
class Rendered:
    html: str
    text: str

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
    context = {
        "issue": issue,
        "sections": issue.for_authority(authority.slug if authority else None),
        "audience": authority.name if authority else "an organisation in the region",
        "personal": PERSONAL,
        "archive": archive,
        "web": web,
        "calendar": _calendar_files(issue) if web.files is not None else {},
        "fonts": FONTS,
        "colour": COLOUR,
    }
    source = _environment().get_template("email.mjml.j2").render(context)
    return Rendered(html=to_html(source), text=_text_environment().get_template("email.txt.j2").render(context))


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
    env.globals.update(when=when, where=where)
    env.filters.update(day=day, short_day=short_day, id=id)
    return env


def _wrap(text: str) -> list[str]:
    return textwrap.wrap(text, markdown.WIDTH, break_long_words=False, break_on_hyphens=False)


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
    env.filters["markdown"] = markdown.to_text
    env.filters["underline"] = _underline
    env.filters["wrap"] = lambda text: "\n".join(_wrap(text))
    env.globals["contact"] = lambda person: f"Contact: {contact(person)}"
    return env
