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
from typing import Annotated, Any, Literal

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
    model_validator,
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


def ascii_address(value: str) -> str:
    """`value` checked and in the form SMTP without SMTPUTF8 carries: the domain as IDNA A-labels (xn--...).
    EmailNotValidError for anything else, a non-ASCII part before the @ included."""
    checked = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    if checked.ascii_email is None:  # only when SMTPUTF8 would be needed, which allow_smtputf8=False refuses first
        raise EmailNotValidError(f"{value} needs SMTPUTF8")
    return checked.ascii_email


def _email(value: Any) -> str:
    """An address as it goes into headers and the envelope: ASCII, an internationalised domain as IDNA
    A-labels (xn--...); an address with non-ASCII before the @ is refused (it would need SMTPUTF8)."""
    if not isinstance(value, str):
        raise PydanticCustomError("email", "an email address is text like name@organisation.gov.uk")
    try:
        return ascii_address(value.strip())
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
    raise PydanticCustomError("time", "`{value}` is not a time: write it like 09:30, 14:00 or 2pm", {"value": value})


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
            "slug",
            "`{value}` is not an authority slug: lower-case words joined by hyphens, like telford-and-wrekin",
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
    image: Picture | None = None
    """A picture between the heading and the body."""
    body: Markdown
    sign_off: Line = "Kind regards"
    signed: Markdown
    """One or more names; line breaks are kept."""


class Article(SectionBase):
    kind: Literal["article"] = "article"
    heading: Line
    image: Picture | None = None
    """A picture between the heading and the body."""
    body: Markdown
    contact: Person | None = None
    links: list[Link] = []


class Picture(Strict):
    """A picture: on its own as an `image` section, or inside a letter or article (between heading and body)."""

    src: Url
    alt: str = Field(description="What the picture shows; an empty alt marks a decorative image.")
    caption: Line | None = None
    link: Url | None = None
    """Where clicking the picture goes."""
    width: int | None = Field(default=None, ge=40, le=600)
    """Its width in the email in pixels (40 to 600); absent: the full width of the column."""


class Image(Picture, SectionBase):
    kind: Literal["image"] = "image"


class Session(Strict):
    date: Date
    start: Time | None = None
    end: Time | None = None
    venue: Line | None = None
    online: Line | None = None
    """The platform, such as Microsoft Teams or Zoom."""
    booking: Link | None = None
    """A sign-up link for this session only."""
    note: Line | None = None
    """A line about this session only, such as "includes a ten-minute break"."""

    @field_validator("end")
    @classmethod
    def _ends_after_start(cls, end: dt.time | None, info: ValidationInfo) -> dt.time | None:
        start = info.data.get("start")
        if end is not None and start is not None and end <= start:
            raise PydanticCustomError(
                "time",
                "this session ends at {end}, before it starts at {start}: check the times",
                {"end": f"{end:%H:%M}", "start": f"{start:%H:%M}"},
            )
        return end


class Event(Strict):
    title: Line
    cost: Line | None = None
    """`free` (shown as a FREE badge), or a price as readers should see it, such as `£25` or `£40 (members £25)`."""
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
        raise PydanticCustomError(
            "section", "the fields of a {kind} go on the lines below it, indented", {"kind": kind}
        )
    return {**body, "kind": kind}


Section = Annotated[Letter | Article | Events | Image, Field(discriminator="kind"), BeforeValidator(_section)]


ISSUE_ID = r"^\d{4}-(0[1-9]|1[0-2])(-[a-z0-9]+)*$"
"""An issue's id: its month (2025-09), or for a special issue its month and a name (2025-04-farewell)."""


def _issue_id(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.strftime("%Y-%m")
    if isinstance(value, str) and re.match(ISSUE_ID, value.strip()):
        return value.strip()
    raise PydanticCustomError(
        "issue_id",
        "`{value}` is not an issue: write its month, like 2025-09, or for a special issue its month and a name "
        "in lower-case words joined by hyphens, like 2025-04-farewell",
        {"value": value},
    )


IssueId = Annotated[str, BeforeValidator(_issue_id), Field(json_schema_extra={"pattern": ISSUE_ID})]

_FILE = re.compile(r"^(?!/)(?![A-Za-z]:)[^\\\x00-\x1f]+$")
RESERVED_FILES = {"index.html", "index.txt"}
"""Names the web archive uses for itself beside an issue's files."""


def _attachment_file(value: Any) -> Any:
    """A file in the draft's folder (or below it), written with `/` between folders."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    parts = text.split("/")
    if not _FILE.match(text) or any(part in ("", ".", "..") for part in parts):
        raise PydanticCustomError(
            "attachment",
            "`{value}` is not a file in the draft's folder: write its name, like "
            "2025-04-dates.pdf, or a folder below the draft's and the name, like files/2025-04-dates.pdf "
            "(with / between them, never ..)",
            {"value": value},
        )
    if parts[-1].lower() in RESERVED_FILES:
        raise PydanticCustomError(
            "attachment",
            "a file called {name} would replace the issue's own page in the web archive: rename it",
            {"name": parts[-1]},
        )
    return text


class Attachment(Strict):
    """A document readers can open: published with the web archive (a file) or elsewhere (a URL).

    Never attached to the email itself: it is linked from it.
    """

    title: Line
    file: Annotated[str, BeforeValidator(_attachment_file)] | None = None
    """A file in the draft's folder: `newsletter archive` publishes it beside the issue's page."""
    url: Url | None = None
    """A document already on the web."""

    @model_validator(mode="after")
    def _file_or_url(self) -> Attachment:
        if (self.file is None) == (self.url is None):
            raise PydanticCustomError(
                "attachment",
                "{what}: `file:` for a file in the draft's folder, or `url:` for a web address",
                {"what": "give this attachment one of them, not both" if self.file else "this attachment needs one of"},
            )
        return self

    @property
    def name(self) -> str | None:
        """The file's name as published (beside the issue's page), or None for a URL."""
        return self.file.rsplit("/", 1)[-1] if self.file else None

    @property
    def filetype(self) -> str | None:
        """`PDF`, `DOCX` ...: the type readers are told before they open it, from the file name (or the URL's)."""
        from urllib.parse import urlsplit

        path = self.file or urlsplit(self.url or "").path
        last = path.rsplit("/", 1)[-1]
        ext = last.rsplit(".", 1)[-1] if "." in last else ""
        return ext.upper() if 1 <= len(ext) <= 5 and ext.isalnum() else None


class Issue(Strict):
    title: Line = "Regional Update"
    issue: IssueId = Field(
        description="The month of the issue, year-month, like 2025-09; a special issue adds a name, like "
        "2025-04-farewell. Sending records and web archive folders are named by it."
    )
    edition: Line | None = None
    """What the masthead shows instead of the month, such as "Farewell edition"."""
    subject: Line
    preheader: Line | None = None
    sender: Sender = Field(alias="from")
    reply_to: Email | None = None
    send_on: Date
    status: Literal["draft", "approved"] = "draft"
    contents: bool | None = None
    """An "In this issue" list under the masthead: true, false, or absent for one when the issue is long."""
    sections: list[Section] = Field(min_length=1)
    attachments: list[Attachment] = []
    """Documents linked from the email (never attached to it): files are published with the web archive."""

    @field_validator("attachments")
    @classmethod
    def _distinct_names(cls, attachments: list[Attachment]) -> list[Attachment]:
        seen: set[str] = set()
        for attachment in attachments:
            if attachment.name is None:
                continue
            if attachment.name.lower() in seen:
                raise PydanticCustomError(
                    "attachment",
                    "two attachments are files called {name}: they are published side by side, "
                    "so give them different names",
                    {"name": attachment.name},
                )
            seen.add(attachment.name.lower())
        return attachments

    @property
    def month(self) -> dt.date:
        year, month = map(int, self.issue.split("-")[:2])
        return dt.date(year, month, 1)

    @property
    def month_label(self) -> str:
        return f"{calendar.month_name[self.month.month]} {self.month.year}"

    @property
    def edition_label(self) -> str:
        """What the masthead, the page title and the archive index call this issue: `edition`, else the month."""
        return self.edition or self.month_label

    def for_authority(self, slug: str | None) -> list[Section]:
        """The sections one authority's readers see; None is the everyone-only variant (web archive)."""
        return [s for s in self.sections if s.audience is None or (slug is not None and slug in s.audience)]
