"""What an editor wrote in a draft, as sentences: the yardstick for "no content lost" tests.

Taken from the YAML itself (not from the model or the renderer), so a section, field or sentence that
the pipeline drops shows up as missing. Markdown is reduced to its visible text with markdown-it (a
link is its words) and split into sentences, which must appear whole in both parts: the text part may
only add a link's number after its words (`the booking form [1]`), which `without_references` takes out.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from ruamel.yaml import YAML

PROSE_KEYS = {
    "heading",
    "body",
    "sign_off",
    "signed",
    "name",
    "role",
    "text",
    "title",
    "venue",
    "online",
    "about",
    "intro",
    "caption",
    "note",
    "edition",
}
"""Keys whose values readers must see word for word in both parts."""
_MD = MarkdownIt("commonmark")


def normalise(text: str) -> str:
    return " ".join(text.split())


_REFERENCE = re.compile(r" ?\[\d+\]")


def without_references(text: str) -> str:
    """Normalised text with the text part's link numbers (` [1]`) taken out."""
    return normalise(_REFERENCE.sub("", normalise(text)))


def sentences(path: Path) -> list[str]:
    return sentences_of(YAML(typ="safe").load(path.read_text(encoding="utf-8")))


def sentences_of(tree: dict) -> list[str]:
    """The sentences of a draft's sections and attachments, and its edition's name."""
    found: list[str] = []
    for section in [*tree["sections"], *tree.get("attachments", []), {"edition": tree.get("edition")}]:
        for key, value in _walk(section):
            if key in PROSE_KEYS and isinstance(value, str):
                found += [s for fragment in _fragments(value) for s in _split(fragment)]
    return found


def urls(path: Path) -> list[str]:
    tree = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    found = [v for k, v in _walk(tree["sections"]) if k in ("url", "src", "link") and isinstance(v, str)]
    for key, value in _walk(tree["sections"]):
        if key in PROSE_KEYS and isinstance(value, str):
            found += [
                t.attrs["href"]
                for tok in _MD.parse(value)
                if tok.children
                for t in tok.children
                if t.type == "link_open"
            ]
    return found


def _walk(node: Any, key: str | None = None) -> Iterator[tuple[str | None, Any]]:
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, k)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item, key)
    else:
        yield key, node


def _fragments(markdown: str) -> Iterator[str]:
    """Each paragraph (or list item) of a Markdown text as its visible words, links included."""
    for token in _MD.parse(markdown):
        if token.type != "inline":
            continue
        run: list[str] = []
        for child in token.children or []:
            if child.type in ("text", "code_inline"):
                run.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                run.append(" ")
        yield "".join(run)


def _split(fragment: str) -> list[str]:
    return [s for s in (normalise(p) for p in re.split(r"(?<=[.!?])\s+", fragment)) if len(s) > 1]
