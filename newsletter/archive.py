"""The web archive: a static site of every approved issue, for the email's "view in your browser" link.

Each issue's page is the everyone-variant of the email rendered for the web (no personal data, no
unsubscribe tokens), beside its calendar files; the index lists the issues newest first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path

import jinja2

from newsletter.calendar import entries
from newsletter.config import Settings
from newsletter.model import Issue
from newsletter.render import TEMPLATES, Web, render


def published(settings: Settings, issue: Issue) -> Web:
    """Where the archive puts an issue, as the email links to it; nothing when no archive is configured."""
    base = settings.list.archive_url
    if not base:
        return Web()
    folder = f"{base.rstrip('/')}/{issue.issue}/"
    return Web(page=folder, files=folder)


@dataclasses.dataclass(frozen=True)
class Page:
    issue: Issue
    folder: str
    files: list[str]


def build(issues: Iterable[Issue], out: Path) -> list[Page]:
    """Write the site into `out`: index.html, and <month>/index.html with its .ics files."""
    pages = []
    for issue in sorted((i for i in issues if i.status == "approved"), key=lambda i: i.issue, reverse=True):
        folder = out / issue.issue
        folder.mkdir(parents=True, exist_ok=True)
        rendered = render(issue, None, web=Web(files=""), archive=True)
        (folder / "index.html").write_text(rendered.html, encoding="utf-8")
        (folder / "index.txt").write_text(rendered.text, encoding="utf-8")
        files = []
        for entry in entries(issue):
            (folder / entry.filename).write_bytes(entry.data)
            files.append(entry.filename)
        pages.append(Page(issue, f"{issue.issue}/", files))
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    (out / "index.html").write_text(env.get_template("archive-index.html.j2").render(pages=pages), encoding="utf-8")
    return pages
