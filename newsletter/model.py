"""The shape of a draft: pydantic models of an issue and its sections, in the editors' own words.

Every model forbids unknown keys so a typo is an error with a suggestion, never silently ignored.
Values are parsed here (dates, times, addresses, links); cross-file facts such as which authority
slugs exist are checked in `load.py`, which knows the files.
"""

from __future__ import annotations

import calendar
import datetime as dt
import difflib
import re
from typing import Annotated, Any, Literal, Union

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


def _one_line(value: str) -> str:
    if len(value.splitlines()) > 1:  # CR, LF and every other line break Python knows (U+2028, NEL, ...)
        raise PydanticCustomError("one_line", "this must be a single line of text")
    return value


Line = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1), AfterValidator(_one_line)]
"""A short single line: a heading, a name, a title."""

Markdown = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
"""Paragraphs in Markdown: blank line between paragraphs, `- ` for bullets, `[text](url)` for links."""


def _email(value: Any) -> str:
    """An address as it goes into headers and the envelope: ASCII, an internationalised domain as IDNA
    A-labels (xn--...); an address with non-ASCII before the @ is refused (it would need SMTPUTF8)."""
    if not isinstance(value, str):
        raise PydanticCustomError("email", "an email address is text like name@organisation.gov.uk")
    try:
        return validate_email(value.strip(), check_deliverability=False, allow_smtputf8=False).ascii_email
    except EmailNotValidError as exc:
        raise PydanticCustomError(
            "email", "`{value}` is not a valid email address ({reason})", {"value": value, "reason": str(exc)}
        ) from None


Email = Annotated[str, BeforeValidator(_email)]

_HOST = re.compile(r"^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}$|^localhost$", re.IGNORECASE)


def _url(value: Any) -> str:
    """A web address an email reader can open: http(s), a real host, no spaces."""
    from urllib.parse import urlsplit

    text = str(value).strip() if isinstance(value, str) else ""
    parts = urlsplit(text) if text and not any(c.isspace() for c in text) else None
    host = (parts.hostname or "") if parts else ""
    if parts is None or parts.scheme not in ("https", "http") or not _HOST.match(host):
        raise PydanticCustomError(
            "url",
            "`{value}` is not a web address: write it in full, starting with https://",
            {"value": value},
        )
    return text


Url = Annotated[str, BeforeValidator(_url)]

_TIME = re.compile(r"^(?P<h>\d{1,2})(?:[:.](?P<m>\d{2}))?\s*(?P<ampm>am|pm)?$", re.IGNORECASE)


def _time(value: Any) -> Any:
    """Times as editors write them: 09:30, 9.30, 14:00, 2pm, 10.30am, noon."""
    if isinstance(value, dt.time) or value is None:
        return value
    text = str(value).strip().lower()
    if text in ("noon", "midday", "12 noon"):
        return dt.time(12, 0)
    match = _TIME.match(text)
    if match:
        hour, minute, ampm = int(match["h"]), int(match["m"] or 0), match["ampm"]
        if ampm and 1 <= hour <= 12:
            hour = hour % 12 + (12 if ampm == "pm" else 0)
        if (ampm or match["m"]) and hour < 24 and minute < 60:
            return dt.time(hour, minute)
    raise PydanticCustomError(
        "time", "`{value}` is not a time: write it like 09:30, 14:00 or 2pm", {"value": value}
    )


Time = Annotated[dt.time, BeforeValidator(_time)]


def _date(value: Any) -> Any:
    if isinstance(value, dt.date) or not isinstance(value, str):
        return value
    match = re.fullmatch(r"(\d{4})-(\d{1,2})-(\d{1,2})", value.strip())
    if not match:
        raise PydanticCustomError(
            "date", "`{value}` is not a date: write it as year-month-day, like 2025-10-15", {"value": value}
        )
    try:
        return dt.date(*map(int, match.groups()))
    except ValueError:
        raise PydanticCustomError(
            "date", "{value} is not a day of the calendar (check the day and the month)", {"value": value}
        ) from None


Date = Annotated[dt.date, BeforeValidator(_date)]


def _slug(value: str) -> str:
    if not SLUG.match(value):
        raise PydanticCustomError(
            "slug", "`{value}` is not an authority slug: lower-case words joined by hyphens, like telford-and-wrekin",
            {"value": value},
        )
    return value


Slug = Annotated[str, AfterValidator(_slug)]


class Link(Strict):
    text: Line
    url: Url


class Person(Strict):
    """Someone readers can contact; the address may be missing when the copy lost it."""

    name: Line
    email: Email | None = None
    role: Line | None = None


class Sender(Strict):
    name: Line
    email: Email


class SectionBase(Strict):
    audience: list[Slug] | None = Field(default=None, min_length=1)
    """Only these authorities' variants include the section; absent means everyone."""


class Letter(SectionBase):
    kind: Literal["letter"] = "letter"
    heading: Line
    body: Markdown
    sign_off: Line = "Kind regards"
    signed: Markdown
    """One or more names; line breaks are kept."""


class Article(SectionBase):
    kind: Literal["article"] = "article"
    heading: Line
    body: Markdown
    contact: Person | None = None
    links: list[Link] = []


class Image(SectionBase):
    kind: Literal["image"] = "image"
    src: Url
    alt: str = Field(description="What the picture shows; an empty alt marks a decorative image.")
    caption: Line | None = None
    link: Url | None = None
    width: int | None = Field(default=None, ge=40, le=600)


class Session(Strict):
    date: Date
    start: Time | None = None
    end: Time | None = None
    venue: Line | None = None
    online: Line | None = None
    """The platform, such as Microsoft Teams or Zoom."""
    booking: Link | None = None
    """A sign-up link for this session only."""

    @field_validator("end")
    @classmethod
    def _ends_after_start(cls, end: dt.time | None, info: ValidationInfo) -> dt.time | None:
        start = info.data.get("start")
        if end is not None and start is not None and end <= start:
            raise PydanticCustomError("time", "this session ends at {end}, before it starts at {start}: check the times",
                                      {"end": f"{end:%H:%M}", "start": f"{start:%H:%M}"})
        return end


class Event(Strict):
    title: Line
    cost: Line | None = None
    """`free`, or a price such as `£25`."""
    sessions: list[Session] = []
    """Empty while the date is still to be confirmed."""
    venue: Line | None = None
    online: Line | None = None
    register_by: Date | None = None
    booking: Link | None = None
    about: Markdown | None = None
    contact: Person | None = None
    links: list[Link] = []

    @property
    def cost_label(self) -> str | None:
        return "FREE" if self.cost and self.cost.lower() == "free" else self.cost


class Events(SectionBase):
    kind: Literal["events"] = "events"
    heading: Line = "Upcoming conferences and events"
    intro: Markdown | None = None
    items: list[Event] = Field(min_length=1)


SECTION_KINDS: dict[str, type[SectionBase]] = {"letter": Letter, "article": Article, "events": Events, "image": Image}


def _section(value: Any) -> Any:
    """`- article: {...}` in YAML becomes the Article model: one key, naming the kind."""
    if isinstance(value, SectionBase):
        return value
    kinds = ", ".join(SECTION_KINDS)
    if not isinstance(value, dict) or len(value) != 1:
        raise PydanticCustomError(
            "section", "each section is one of {kinds}, followed by a colon and its fields", {"kinds": kinds}
        )
    ((kind, body),) = value.items()
    if kind not in SECTION_KINDS:
        guess = difflib.get_close_matches(str(kind), SECTION_KINDS, n=1)
        hint = f": did you mean `{guess[0]}`?" if guess else f"; use one of {kinds}"
        raise PydanticCustomError("section", "`{kind}` is not a kind of section{hint}", {"kind": kind, "hint": hint})
    if body is None:
        raise PydanticCustomError("section", "this {kind} section is empty: give it its fields", {"kind": kind})
    if not isinstance(body, dict):
        raise PydanticCustomError("section", "the fields of a {kind} go on the lines below it, indented", {"kind": kind})
    return {**body, "kind": kind}


Section = Annotated[Union[Letter, Article, Events, Image], Field(discriminator="kind"), BeforeValidator(_section)]


class Issue(Strict):
    title: Line = "Regional Update"
    issue: Annotated[str, StringConstraints(pattern=r"^\d{4}-(0[1-9]|1[0-2])$")] = Field(
        description="The month of the issue, year-month, like 2025-09"
    )
    subject: Line
    preheader: Line | None = None
    sender: Sender = Field(alias="from")
    reply_to: Email | None = None
    send_on: Date
    status: Literal["draft", "approved"] = "draft"
    sections: list[Section] = Field(min_length=1)

    @field_validator("issue", mode="before")
    @classmethod
    def _month_text(cls, value: Any) -> Any:
        return value.strftime("%Y-%m") if isinstance(value, dt.date) else value

    @property
    def month(self) -> dt.date:
        year, month = map(int, self.issue.split("-"))
        return dt.date(year, month, 1)

    @property
    def month_label(self) -> str:
        return f"{calendar.month_name[self.month.month]} {self.month.year}"

    def for_authority(self, slug: str | None) -> list[SectionBase]:
        """The sections one authority's readers see; None is the everyone-only variant (web archive)."""
        return [s for s in self.sections if s.audience is None or (slug is not None and slug in s.audience)]
