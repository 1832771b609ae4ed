"""Editor Markdown -> safe HTML for the email, and -> wrapped plain text for the text part.

Both come from the same markdown-it token stream, so the two parts of a message always say the same
thing. Raw HTML is off in the parser and the HTML it makes is sanitised again with nh3, so editor text
can never inject script, style, forms or event handlers into an email.
"""

from __future__ import annotations

import functools
import textwrap
from typing import Protocol

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

WIDTH = 72
GLUE = "\ue000"
"""Joins a link's number to its last word while lines are wrapped (a space afterwards): `[1]` never starts a line."""
ALLOWED_TAGS = {"p", "br", "ul", "ol", "li", "a", "strong", "em", "blockquote"}
ALLOWED_ATTRIBUTES = {"a": {"href"}, "ol": {"start"}}
URL_SCHEMES = {"https", "http", "mailto"}


@functools.cache
def _parser() -> MarkdownIt:
    # Headings, images, code and tables belong to the layout, not to a paragraph of copy.
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).disable(
        ["heading", "lheading", "image", "code", "fence", "html_block", "html_inline", "backticks"]
    )


def to_html(source: str) -> Markup:
    html = _parser().render(source)
    return Markup(
        nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, url_schemes=URL_SCHEMES, link_rel=None)
    )


class Numbering(Protocol):
    """Gives each link address a number (render.References): the text says `words [1]`, the list after it
    `[1] https://...`."""

    def mark(self, url: str) -> str: ...

    def flush(self) -> str: ...


class _Local:
    def __init__(self) -> None:
        self.urls: dict[str, int] = {}

    def mark(self, url: str) -> str:
        return f"{GLUE}[{self.urls.setdefault(url, len(self.urls) + 1)}]"

    def flush(self) -> str:
        return "\n".join(f"[{n}] {url.removeprefix('mailto:')}" for url, n in self.urls.items())


def to_text(source: str, width: int = WIDTH, refs: Numbering | None = None) -> str:
    """Plain text: paragraphs wrapped, bullets as `•`, the prose kept as written.

    A link is its words and a number, `the booking form [1]`, so no sentence is ever broken by an address;
    the addresses are listed by `refs` wherever its owner puts them (after a section of the email). Without
    `refs` they are numbered from 1 and listed at the end of this text. A link whose words are its own
    address stays as written (an email address bare, a web address in <...> so no full stop joins it).
    """
    local = refs is None
    numbering: Numbering = _Local() if refs is None else refs
    blocks: list[str] = []
    lists: list[list[int | None]] = []  # a stack of [next number or None for bullets]
    quote = 0
    pending_item = ""
    for token in _parser().parse(source):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            lists.append([int(token.attrs.get("start", 1)) if token.type == "ordered_list_open" else None])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
            blocks.append("")
        elif token.type == "list_item_open":
            number = lists[-1][0]
            pending_item = "•" if number is None else f"{number}."
            if number is not None:
                lists[-1][0] = number + 1
        elif token.type == "blockquote_open":
            quote += 1
        elif token.type == "blockquote_close":
            quote -= 1
        elif token.type == "inline":
            indent = "  " * max(len(lists) - 1, 0)
            marker, pending_item = pending_item, ""
            first = f"{indent}{marker} " if marker else indent
            later = " " * len(first) if lists else indent
            prefix = "> " * quote
            text = _inline_text(token.children or [], numbering)
            lines = [
                line
                for n, para_line in enumerate(text.split("\n"))
                for line in textwrap.wrap(
                    para_line,
                    width=width - len(prefix),
                    initial_indent=first if n == 0 else later,
                    subsequent_indent=later,
                    break_long_words=False,
                    break_on_hyphens=False,
                )
                or [""]
            ]
            blocks.append("\n".join(prefix + line.replace(GLUE, " ") for line in lines))
        elif token.type == "paragraph_close" and not token.hidden:
            blocks.append("")
    if local:
        blocks += ["", numbering.flush()]
    return _squeeze("\n".join(blocks))


def _inline_text(children: list[Token], refs: Numbering) -> str:
    out: list[str] = []
    href: list[str] = []
    link_start: list[int] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif child.type == "link_open":
            href.append(str(child.attrs.get("href", "")))
            link_start.append(len(out))
        elif child.type == "link_close":
            url = href.pop()
            start = link_start.pop()
            label = "".join(out[start:])
            target = url.removeprefix("mailto:")
            if target == label and url.startswith("mailto:"):
                continue  # the address is the words
            if target == label:
                out[start:] = [f"<{url}>"]  # RFC 3986 appendix C: the delimiters of a URL in plain text
            else:
                out.append(refs.mark(url))
    return "".join(out)


def _squeeze(text: str) -> str:
    """At most one blank line between blocks, none at the ends."""
    lines = text.split("\n")
    kept: list[str] = []
    for line in lines:
        if line.strip() or (kept and kept[-1].strip()):
            kept.append(line.rstrip())
    return "\n".join(kept).strip("\n")
