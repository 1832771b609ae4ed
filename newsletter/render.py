"""Issue model -> the email's two parts: HTML (Jinja2 -> MJML -> mjml-python -> premailer) and text.

Each authority's variant is rendered once; per-recipient fields are placeholders that `Rendered.fill`
replaces with a string substitution, so sending to thousands never re-renders the issue. `render_sample`
fills them for a clearly sample reader, so what the editor opens is what a reader gets.

The text part reads like a letter: the prose is kept as written, each link's words are followed by a
number (`the booking form [1]`) and the addresses are listed after the section (`[1] https://...`), one
line each, once per section, with nothing glued to them. Lines are at most 72 characters, but a URL.

Every name, the brand colour and the logo come from `newsletter.toml` (`Settings.publication`, `.brand`),
so another network adopts the tool without touching a template; `templates_dir` may replace templates,
and `identity_problems` is what `check` says about all of it (contrast, logo, an override's omissions).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import html
import logging
import math
import re
import secrets
import textwrap
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import cssutils
import jinja2
import mjml
from premailer import Premailer

from newsletter import markdown
from newsletter.config import Settings
from newsletter.errors import RenderError
from newsletter.load import Problem
from newsletter.model import Attachment, Image, Issue, Person, Section, Session
from newsletter.recipients import Authority

# premailer validates every inline style against cssutils' property profiles, which compile some hundred
# regular expressions the first time: about a tenth of a second of every `check`. Validation only logs (and the
# log is silenced below): without the profiles the HTML of every draft and variant was the same, byte for byte.
cssutils.profile.removeProfile(all=True)

if TYPE_CHECKING:
    from collections.abc import Iterator

TEMPLATES = "newsletter.templates"
"""The shipped templates: the top-level templates/ folder, installed as this package (see pyproject.toml)."""
FONTS = "-apple-system, BlinkMacSystemFont, Segoe UI, Roboto, Helvetica Neue, Arial, sans-serif"
COLOUR = {
    "brand": "#183f6b",
    "accent": "#183f6b",
    "heading": "#183f6b",
    "link": "#1a5ea8",
    "text": "#1f2933",
    "muted": "#4b5563",
    "background": "#eef1f5",
    "paper": "#ffffff",
    "footer": "#e5e9ef",
    "rule": "#c9d1db",
    "badge": "#1f6f3f",
}
"""The shipped palette; `[brand] colour` replaces brand, accent and heading (white text goes on it, and it is
text on white paper), the rest is tuned for contrast and stays."""
ON_BRAND = "#ffffff"
AA_CONTRAST = 4.5
"""WCAG 2.1 AA (1.4.3): normal-size text needs 4.5:1 against what it sits on."""
PERSONAL = {"email": "[[email]]", "unsubscribe_url": "[[unsubscribe_url]]", "manage_url": "[[manage_url]]"}
"""Per-recipient fields, as placeholders in the rendered parts (`manage_url` only with a web service configured)."""
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
        """The parts for one recipient; values are escaped for HTML, verbatim in text.

        Only the fields the parts hold are required: `manage_url` is there only with a web service.
        """
        missing = {n for n, m in PERSONAL.items() if n not in fields and (m in self.html or m in self.text)}
        if missing:
            raise ValueError(f"personal fields missing: {', '.join(sorted(missing))}")
        body_html, body_text = self.html, self.text
        for name, marker in PERSONAL.items():
            if name in fields:
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


def render(
    issue: Issue,
    authority: Authority | None = None,
    *,
    web: Web = Web(),
    archive: bool = False,
    settings: Settings | None = None,
    members: int | None = None,
) -> Rendered:
    """One authority's variant; None renders the sections meant for everyone.

    `archive` renders the public web page: no personal fields, no unsubscribe link. `settings` gives the
    names, brand and templates (None: the shipped defaults); `members` is how many organisations
    `authorities.yaml` lists, which the web page's footer counts (None: it gives no number).
    """
    settings = settings or Settings()
    publication = settings.publication
    sections = issue.for_authority(authority.slug if authority else None)
    context = {
        **identity_context(issue, settings, members),
        "issue": issue,
        "sections": sections,
        "contents": contents(issue, sections),
        "audience": authority.name if authority else publication.unnamed_member,
        "personal": PERSONAL if settings.list.manage_link() else {k: PERSONAL[k] for k in ("email", "unsubscribe_url")},
        "archive": archive,
        "web": web,
        "calendar": _calendar_files(issue) if web.files is not None else {},
        "documents": [(attachment, attachment_url(attachment, web)) for attachment in issue.attachments],
        "documents_anchor": DOCUMENTS_ANCHOR,
        "documents_heading": DOCUMENTS_HEADING,
        "fonts": FONTS,
        "signature": SIGNATURE,
    }
    source = environment(settings.templates_dir).get_template("email.mjml.j2").render(context)
    text_template = _text_environment(settings.templates_dir).get_template("email.txt.j2")
    text = text_template.render({**context, "refs": References()})
    return Rendered(
        html=to_html(source), text=_squeeze_blank_lines(text), variant=authority.name if authority else None
    )


def identity_context(issue: Issue | None, settings: Settings, members: int | None = None) -> dict[str, object]:
    """What every template (email, archive index) knows of the publication: names, colours, logo, member count."""
    publication = settings.publication
    return {
        "title": title_of(issue, settings) if issue else publication.title,
        "publication": publication,
        "logo": settings.brand.logo,
        "colour": palette(settings.brand.colour),
        "members": count_words(members) if members else None,
    }


def title_of(issue: Issue, settings: Settings) -> str:
    """The masthead's title: the draft's own `title:` when it gives one, else the publication's."""
    return issue.title if "title" in issue.model_fields_set else settings.publication.title


def palette(brand: str) -> dict[str, str]:
    """The colours of a rendering: the shipped palette with the brand colour where the brand shows."""
    return {**COLOUR, "brand": brand, "accent": brand, "heading": brand}


_NUMBERS = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
_TENS = ["twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def count_words(n: int) -> str:
    """16 -> `sixteen`, 42 -> `forty-two`: a count in a sentence, in words up to ninety-nine, else digits."""
    if 0 <= n < 20:
        return _NUMBERS[n]
    if n < 100:
        tens, units = divmod(n, 10)
        return _TENS[tens - 2] + (f"-{_NUMBERS[units]}" if units else "")
    return f"{n:,}"


# --- what `check` says about the identity and templates ------------------------------------------------


def luminance(colour: str) -> float:
    """WCAG 2.1 relative luminance of `#rrggbb`."""
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    r, g, b = (c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    """WCAG contrast ratio of two `#rrggbb` colours, from 1 to 21."""
    light, dark = sorted((luminance(a), luminance(b)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def darker(colour: str, against: str = ON_BRAND, target: float = AA_CONTRAST) -> str:
    """The same hue darkened just enough to reach `target` contrast with `against`: a suggestion, not a rule."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    for step in range(100, -1, -1):
        candidate = "#" + "".join(f"{round(c * step / 100):02x}" for c in rgb)
        if contrast(candidate, against) >= target:
            return candidate
    return "#000000"


def ratio_text(ratio: float) -> str:
    """`4.47:1`: rounded down, so a colour just short of 4.5 never reads as 4.5."""
    return f"{math.floor(ratio * 100) / 100:.2f}:1"


TEMPLATE_NAMES = ("email.mjml.j2", "email.txt.j2", "archive-index.html.j2")
"""The templates `templates_dir` may replace (the preview's own pages are the tool's, not the brand's)."""


def identity_problems(
    settings: Settings, config: Path = Path("newsletter.toml"), issue: Issue | None = None
) -> list[Problem]:
    """What `check` reports about newsletter.toml's identity: brand contrast, the logo, `templates_dir`.

    With an issue, an override of the templates is rendered and must still carry what every copy needs.
    """
    lines = _toml_lines(config)

    def problem(key: str, message: str, severity: Literal["error", "warning"] = "error") -> Problem:
        return Problem(config, lines.get(key, 1), 1, message, severity)

    problems: list[Problem] = []
    colour = settings.brand.colour
    ratio = contrast(colour, ON_BRAND)
    if ratio < AA_CONTRAST:
        suggestion = darker(colour)
        problems.append(
            problem(
                "colour",
                f"`[brand] colour` {colour} gives {ratio_text(ratio)} contrast with the "
                "white text on it (the masthead and buttons; headings are this colour on white): "
                f"WCAG AA needs 4.5:1. Use a darker shade, such as {suggestion} "
                f"({ratio_text(contrast(suggestion, ON_BRAND))})",
            )
        )
    logo = settings.brand.logo
    if logo is not None:
        if not logo.url.lower().startswith("https://"):
            problems.append(
                problem(
                    "url",
                    f"`[brand.logo] url` {logo.url} must start with https://: mail programs "
                    "block pictures from plain http",
                )
            )
        if re.search(r"\.(png|jpe?g|gif|svg|webp)$", logo.alt, re.IGNORECASE) or logo.alt.lower() in ("logo", "image"):
            problems.append(
                problem(
                    "alt",
                    f"`[brand.logo] alt` is `{logo.alt}`: say what the logo says (usually the "
                    "organisation's name), for readers whose mail program blocks pictures",
                )
            )
    if settings.templates_dir is not None:
        problems += _template_problems(settings, issue, problem)
    return problems


def _toml_lines(config: Path) -> dict[str, int]:
    """The line of each key in newsletter.toml (the last one wins: close enough to point at)."""
    try:
        text = config.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    found: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"\s*([A-Za-z_]+)\s*=", line)
        if match:
            found[match.group(1)] = number
    return found


def _template_problems(settings: Settings, issue: Issue | None, problem: Callable[..., Problem]) -> list[Problem]:
    folder = settings.templates_dir
    assert folder is not None
    if not folder.is_dir():
        return [problem("templates_dir", f"`templates_dir` {folder} is not a folder: make it, or remove the setting")]
    problems = [
        problem(
            "templates_dir",
            f"{path} is not a template the tool uses ({', '.join(TEMPLATE_NAMES)}): it changes nothing; check its name",
            "warning",
        )
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name not in TEMPLATE_NAMES
    ]
    if issue is None:
        return problems
    try:
        member = render(
            issue, Authority(slug="sample", name="Sample Member Council", kind="council"), settings=settings
        )
        everyone = render(issue, None, web=Web(files=""), archive=True, settings=settings, members=2)
    except (jinja2.TemplateError, RenderError) as exc:
        return [*problems, problem("templates_dir", f"the templates in {folder} do not render: {exc}")]
    problems.extend(
        problem("templates_dir", f"the templates in {folder} leave out {what}: every copy needs it")
        for what in _missing(issue, member, everyone, settings)
    )
    return problems


def _missing(issue: Issue, member: Rendered, everyone: Rendered, settings: Settings) -> Iterator[str]:
    """What an overriding template dropped that the shipped ones always show."""
    import lxml.html

    html_page = member.html
    for name, marker in PERSONAL.items():
        if name == "manage_url":
            continue  # optional: a layout of the network's own that predates it still works
        label = {"email": "the reader's address", "unsubscribe_url": "the unsubscribe link"}[name]
        if marker not in html_page:
            yield f"{label} (HTML part)"
        if marker not in member.text:
            yield f"{label} (text part)"
    document = lxml.html.document_fromstring(html_page)
    if document.get("lang") is None:
        yield "the page's language (<html lang=...>)"
    if not any(title_of(issue, settings) in h1.text_content() for h1 in document.iter("h1")):
        yield "the title as a live-text heading (<h1>)"
    if any(img.get("alt") is None for img in document.iter("img")):
        yield "the alt text of a picture"
    headings = [s.heading for s in issue.sections if not isinstance(s, Image) and s.heading]
    for rendered, part in ((member, "HTML part"), (everyone, "web page")):
        visible = " ".join(lxml.html.document_fromstring(rendered.html).text_content().split())
        for heading in headings:
            if " ".join(heading.split()) not in visible:
                yield f"the heading `{heading}` ({part})"
    text = " ".join(member.text.split())
    for heading in headings:
        if " ".join(heading.split()) not in text:
            yield f"the heading `{heading}` (text part)"


DOCUMENTS_ANCHOR = "documents"
DOCUMENTS_HEADING = "Documents"


def anchor(number: int) -> str:
    """The id of the heading of the `number`th section (from 1) of a variant: the contents list links to it."""
    return f"section-{number}"


def contents(issue: Issue, sections: list[Section]) -> list[tuple[str, str]]:
    """The "In this issue" list of a variant, as (anchor, heading); empty when it has none.

    `contents: true` always gives one, `false` never; without it, a variant with CONTENTS_FROM or more
    headed parts (sections with a heading, and the documents) gets one.
    """
    entries = [
        (anchor(n), section.heading)
        for n, section in enumerate(sections, 1)
        if not isinstance(section, Image) and section.heading
    ]
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

    rendered = render(issue, authority, web=published(settings, issue), settings=settings)
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
    from newsletter.calendar import filenames

    return {id(session): name for name, session in filenames(issue)}


def to_html(source: str) -> str:
    """MJML -> inlined HTML, with the known traps handled (fonts, !important, doctype, network)."""
    try:
        page = mjml.mjml2html(source, fonts={}, disable_comments=True)
    except ValueError as exc:
        raise RenderError(f"MJML could not be rendered: {exc}") from None
    # premailer keeps a doctype only when it matches lxml's spelling exactly.
    page = re.sub(r"^<!doctype html>", "<!DOCTYPE html>", page, flags=re.IGNORECASE)
    inlined: str = Premailer(
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
    lines = textwrap.wrap(
        text,
        markdown.WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_long_words=False,
        break_on_hyphens=False,
    )
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


def _loader(templates_dir: Path | None) -> jinja2.BaseLoader:
    """The network's own templates first (when `templates_dir` is set), then the shipped ones; `shipped/NAME`
    is always the shipped template, so an override can `{% extends "shipped/email.mjml.j2" %}` and change a block."""
    shipped = shipped_templates()
    own = [jinja2.FileSystemLoader(templates_dir)] if templates_dir is not None else []
    return jinja2.ChoiceLoader([*own, jinja2.PrefixLoader({"shipped": shipped}), shipped])


def shipped_templates() -> jinja2.BaseLoader:
    """The templates that come with the package, found by import (a wheel, an sdist or an editable install)."""
    return jinja2.PackageLoader(TEMPLATES, ".")


class _Compiled(jinja2.FileSystemBytecodeCache):
    """Compiled templates kept between runs, so `check` and `render` do not compile the templates every time
    (about 45 ms of each run). Jinja keeps them in the user's own folder in the temporary directory and checks
    that nobody else can write there; an edited template is compiled again (its checksum is in the file).

    A cache that cannot be read or written is no cache: rendering never fails because of it.
    """

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)  # Jinja itself drops a file that is damaged or from another version
        except OSError:
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        with contextlib.suppress(OSError):
            super().dump_bytecode(bucket)


def _compiled(kind: str) -> jinja2.BytecodeCache | None:
    """The cache for one kind of environment: the HTML one escapes and the text one does not, so the same
    template compiles differently in each and they must not share."""
    try:
        return _Compiled(pattern=f"newsletter-{kind}-%s.cache")
    except (OSError, RuntimeError):  # no temporary directory of our own to be had
        return None


@functools.cache
def environment(templates_dir: Path | None = None) -> jinja2.Environment:
    """The HTML templates (autoescaped): the email's MJML and the archive index."""
    env = _filters(
        jinja2.Environment(
            loader=_loader(templates_dir),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
            bytecode_cache=_compiled("html"),
        )
    )
    env.filters["markdown"] = markdown.to_html
    env.globals["contact"] = _html_contact
    return env


@functools.cache
def _text_environment(templates_dir: Path | None = None) -> jinja2.Environment:
    env = _filters(
        jinja2.Environment(
            loader=_loader(templates_dir),
            autoescape=False,
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            bytecode_cache=_compiled("text"),
        )
    )
    env.filters["markdown"] = lambda source, refs: markdown.to_text(source, refs=refs)
    env.filters["underline"] = _underline
    env.filters["wrap"] = lambda text, indent="", first=None: "\n".join(_wrap(text, indent, first))
    env.globals["contact"] = lambda person: f"Contact: {contact(person)}"
    env.globals["labelled"] = _labelled
    return env
