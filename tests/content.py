"""What an editor wrote in a draft, as sentences: the yardstick for "no content lost" tests.

Taken from the YAML itself (not from the model or the renderer), so a section, field or sentence that
the pipeline drops shows up as missing. Markdown is reduced to its visible text with markdown-it, split
at link boundaries (a link's text and the words around it are checked separately, since the text
part writes links as `text: URL`) and then into sentences.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt
from ruamel.yaml import YAML

PROSE_KEYS = {"heading", "body", "sign_off", "signed", "name", "role", "text", "title", "venue", "online",
              "about", "intro", "caption"}
"""Keys whose values readers must see word for word in both parts."""
_MD = MarkdownIt("commonmark")


def normalise(text: str) -> str:
    return " ".join(text.split())


def sentences(path: Path) -> list[str]:
    tree = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    found: list[str] = []
    for section in tree["sections"]:
        for key, value in _walk(section):
            if key in PROSE_KEYS and isinstance(value, str):
                found += [s for fragment in _fragments(value) for s in _split(fragment)]
    return found


def urls(path: Path) -> list[str]:
    tree = YAML(typ="safe").load(path.read_text(encoding="utf-8"))
    found = [v for k, v in _walk(tree["sections"]) if k in ("url", "src", "link") and isinstance(v, str)]
    for key, value in _walk(tree["sections"]):
        if key in PROSE_KEYS and isinstance(value, str):
            found += [t.attrs["href"] for tok in _MD.parse(value) if tok.children
                      for t in tok.children if t.type == "link_open"]
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
    for token in _MD.parse(markdown):
        if token.type != "inline":
            continue
        run: list[str] = []
        for child in token.children or []:
            if child.type in ("link_open", "link_close"):
                yield "".join(run)
                run = []
            elif child.type in ("text", "code_inline"):
                run.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                run.append(" ")
        yield "".join(run)


def _split(fragment: str) -> list[str]:
    return [s for s in (normalise(p) for p in re.split(r"(?<=[.!?])\s+", fragment)) if len(s) > 1]
