"""The web archive: a static site of every approved issue, for the email's "view in your browser" link.

Each issue's page is the everyone-variant of the email rendered for the web (no personal data, no
unsubscribe tokens), beside its calendar files and its attachments (the files a draft names under
`attachments:`, copied from the drafts folder: the email links them there, never attaches them); the
index lists the issues newest first. A special issue (`2025-04-farewell`) has a folder of that name.
Names, colours and templates come from the settings, the member count from `authorities.yaml`.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Iterable
from pathlib import Path

from newsletter.calendar import entries
from newsletter.config import Settings
from newsletter.errors import OutputError
from newsletter.model import Issue
from newsletter.render import Web, environment, identity_context, render, title_of


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
    title: str = ""
    """The issue's title as its masthead shows it."""


def build(
    issues: Iterable[Issue],
    out: Path,
    *,
    drafts: Path = Path("drafts"),
    settings: Settings | None = None,
    members: int | None = None,
) -> list[Page]:
    """Write the site into `out`: index.html, and <issue>/index.html with its .ics files and attachments.

    Attachment files are read from `drafts`, the folder of the drafts (their paths are relative to it).
    `settings` gives the names and brand (None: the shipped defaults); `members` is the number of
    organisations in authorities.yaml, which the pages' footer counts.
    """
    settings = settings or Settings()
    pages = []
    for issue in sorted((i for i in issues if i.status == "approved"), key=lambda i: i.issue, reverse=True):
        folder = out / issue.issue
        folder.mkdir(parents=True, exist_ok=True)
        rendered = render(issue, None, web=Web(files=""), archive=True, settings=settings, members=members)
        (folder / "index.html").write_text(rendered.html, encoding="utf-8")
        (folder / "index.txt").write_text(rendered.text, encoding="utf-8")
        files = []
        for entry in entries(issue, settings):
            (folder / entry.filename).write_bytes(entry.data)
            files.append(entry.filename)
        for attachment in issue.attachments:
            if attachment.file is None or attachment.name is None:
                continue
            source = drafts / attachment.file
            if attachment.name in files:
                raise OutputError(
                    f"issue {issue.issue}: the attachment {attachment.file} has the name of a calendar "
                    "file of the issue: rename it"
                )
            try:
                shutil.copyfile(source, folder / attachment.name)
            except FileNotFoundError:
                raise OutputError(
                    f"issue {issue.issue}: the attachment {source} is not there: put the file beside "
                    "the draft, or correct `file:` (`newsletter check` lists every such problem)"
                ) from None
            except OSError as exc:
                raise OutputError(
                    f"issue {issue.issue}: cannot publish the attachment {source}: {exc.strerror or exc}"
                ) from None
            files.append(attachment.name)
        pages.append(Page(issue, f"{issue.issue}/", files, title_of(issue, settings)))
    index = environment(settings.templates_dir).get_template("archive-index.html.j2")
    (out / "index.html").write_text(
        index.render(pages=pages, **identity_context(None, settings, members)), encoding="utf-8"
    )
    return pages
