"""YAML draft -> Issue model, with every problem mapped back to the file, line and column.

Editors are not programmers: each problem says what is wrong in plain words and what to do, and all
problems in a draft are reported together so one run finds them all.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString

from newsletter.errors import NewsletterError
from newsletter.model import SECTION_KINDS, Issue

MAX_BYTES = 256 * 1024
"""A year of issues is under 60 KB; anything this big is a mistake, not a newsletter."""
MAX_NODES = 20_000
MAX_DEPTH = 12
HTML_TAG = re.compile(r"<\s*/?\s*[a-zA-Z][a-zA-Z0-9-]*(\s[^<>]*)?/?>")

OWN_ERRORS = {"section", "email", "url", "time", "date", "slug"}
"""Error types raised by model.py with messages written for editors."""

Path_ = tuple[str | int, ...]


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing an editor should fix (error) or look at (warning), with where it is."""

    file: Path
    line: int
    column: int
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"


class DraftError(NewsletterError):
    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


@dataclasses.dataclass(frozen=True)
class Draft:
    """A valid issue together with its source, so later checks can point at lines too."""

    path: Path
    issue: Issue
    tree: CommentedMap
    lines: list[str]

    def where(self, path: Path_, offset: int | None = None, found: str = "") -> tuple[int, int]:
        """Line and column of a value in the source, or of `found` at `offset` within a text value."""
        return text_position(self.tree, self.lines, path, offset, found)

    def problem(self, path: Path_, message: str, severity: Literal["error", "warning"] = "warning",
                offset: int | None = None, found: str = "") -> Problem:
        line, column = self.where(path, offset, found)
        return Problem(self.path, line, column, message, severity)


class _Constructor(RoundTripConstructor):
    """Dates stay text until the model parses them, so an impossible date is a located error."""


_Constructor.add_constructor("tag:yaml.org,2002:timestamp", RoundTripConstructor.construct_yaml_str)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.Constructor = _Constructor
    return yaml


def load_draft(path: Path, authorities: Collection[str] | None = None) -> Draft:
    """Read and validate a draft; raise DraftError listing every problem found."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DraftError([Problem(path, 0, 0, f"cannot read the draft: {exc.strerror}")]) from None
    if len(raw) > MAX_BYTES:
        raise DraftError([Problem(path, 1, 1, f"the file is {len(raw) // 1024} KB; a draft is at most "
                                  f"{MAX_BYTES // 1024} KB. Is this the right file?")])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DraftError([Problem(path, line, 1, "this line has characters that are not UTF-8: "
                                  "save the file as UTF-8 in your editor")]) from None
    tabs = [Problem(path, n, line.index("\t") + 1, "this line is indented with a tab: indent with spaces")
            for n, line in enumerate(text.splitlines(), 1) if "\t" in line[: len(line) - len(line.lstrip())]]
    if tabs:
        raise DraftError(tabs)
    tree = _parse(path, text)
    problems = _size_problems(path, tree)
    if problems:
        raise DraftError(problems)
    problems = list(_html_problems(path, tree, text.splitlines()))
    try:
        issue = Issue.model_validate(tree)
    except ValidationError as exc:
        problems += [_explain(path, tree, error) for error in exc.errors()]
        raise DraftError(sorted(problems, key=lambda p: (p.line, p.column))) from None
    if authorities is not None:
        problems += _audience_problems(path, tree, issue, authorities)
    if problems:
        raise DraftError(sorted(problems, key=lambda p: (p.line, p.column)))
    return Draft(path, issue, tree, text.splitlines())


def _parse(path: Path, text: str) -> CommentedMap:
    try:
        tree = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        unclosed = _unclosed_quote(text, mark.line + 1 if mark else len(text))
        if unclosed:
            raise DraftError([Problem(path, unclosed, 1, "the quote opened on this line is not closed: "
                                      "add the closing quote at the end of the value")]) from None
        what = " ".join(filter(None, [exc.context, exc.problem]))
        hint = _yaml_hint(what)
        raise DraftError([Problem(path, mark.line + 1 if mark else 1, mark.column + 1 if mark else 1,
                                  f"the YAML cannot be read: {what}{hint}")]) from None
    except YAMLError as exc:
        raise DraftError([Problem(path, 1, 1, f"the YAML cannot be read: {exc}")]) from None
    except RecursionError:
        raise DraftError([Problem(path, 1, 1, "the file is nested too deeply to be a draft")]) from None
    if not isinstance(tree, CommentedMap):
        raise DraftError([Problem(path, 1, 1, "a draft starts with `title:`, `issue:`, `subject:` ... "
                                  "one per line; this file is not laid out that way")])
    return tree


_QUOTED = re.compile(r'^\s*(?:- )?(?:[\w-]+:\s+)?(?P<q>["\'])')


def _unclosed_quote(text: str, before: int) -> int | None:
    """The first line, up to the error, whose value opens a quote it does not close."""
    for number, line in enumerate(text.splitlines()[:before], 1):
        match = _QUOTED.match(line)
        if match and line.rstrip().count(match["q"]) - line.count("\\" + match["q"]) == 1:
            return number
    return None


def _yaml_hint(what: str) -> str:
    if "found duplicate key" in what:
        return ". Each key appears once in its block: remove or rename one of them"
    if "mapping values are not allowed" in what:
        return ". A value that contains `: ` needs quotes around it"
    if "found character '\\t'" in what:
        return ". Indent with spaces, not tabs"
    return ". Check the indentation and any quotes on this line and the one above"


def _size_problems(path: Path, tree: Any) -> list[Problem]:
    """Refuse trees no editor writes (alias bombs, deep nesting) before validation walks them."""
    count = 0
    stack: list[tuple[Any, int]] = [(tree, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            return [Problem(path, 1, 1, f"the draft has more than {MAX_NODES:,} values; "
                            "a draft is far smaller. Is this the right file?")]
        if depth > MAX_DEPTH:
            line, column = node.lc.line + 1, node.lc.col + 1
            return [Problem(path, line, column, f"the draft is nested more than {MAX_DEPTH} levels deep here; "
                            "sections hold their fields directly, with no deeper lists")]
        if isinstance(node, dict):
            stack += [(v, depth + 1) for v in node.values()]
        elif isinstance(node, list):
            stack += [(v, depth + 1) for v in node]
    return []


def _html_problems(path: Path, tree: CommentedMap, lines: list[str]) -> Iterator[Problem]:
    """HTML in a draft would show as text (Markdown is parsed with HTML off): say so where it is."""
    stack: list[tuple[Any, Path_]] = [(tree, ())]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            stack += [(v, (*at, k)) for k, v in node.items()]
        elif isinstance(node, list):
            stack += [(v, (*at, i)) for i, v in enumerate(node)]
        elif isinstance(node, str) and (match := HTML_TAG.search(node)):
            line, column = text_position(tree, lines, at, match.start(), match.group())
            yield Problem(path, line, column, f"`{match.group()[:40]}` is HTML, which drafts do not use "
                          "(it would show as text). Write Markdown instead: **bold**, *italic*, [link text](https://...)")


def text_position(tree: Any, lines: list[str], path: Path_, offset: int | None = None,
                  found: str = "") -> tuple[int, int]:
    """Where `found`, at `offset` in the text value at `path`, is in the file.

    Exact for block scalars (`body: |`), the usual home of long text; a single-line value gives its own
    line, and the column where `found` appears on it.
    """
    line, column = position(tree, path)
    if offset is None:
        return line, column
    node: Any = tree
    for part in path:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return line, column
    if isinstance(node, (LiteralScalarString, FoldedScalarString)):
        line += 1 + str(node)[:offset].count("\n")
        column = 1
    if found and 0 < line <= len(lines) and found in lines[line - 1]:
        column = lines[line - 1].index(found) + 1
    return line, column


def position(tree: Any, path: Path_, key: bool = False) -> tuple[int, int]:
    """Line and column (1-based) of the deepest part of `path` present in the YAML tree.

    A nested block is placed at its key; a plain value at the value itself, or at its key when `key`.
    Parts not in the tree (a section's kind tag, a missing key) are skipped.
    """
    line, column = 1, 1
    node = tree
    for i, part in enumerate(path):
        if isinstance(node, CommentedMap) and part in node:
            child = node[part]
            at_key = (key and i == len(path) - 1) or isinstance(child, (CommentedMap, CommentedSeq))
            ln, col = node.lc.key(part) if at_key else node.lc.value(part)
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            child = node[part]
            ln, col = node.lc.item(part)
        else:
            continue
        line, column, node = ln + 1, col + 1, child
    return line, column


def _explain(path: Path, tree: CommentedMap, error: Any) -> Problem:
    """Turn one pydantic error into a sentence an editor can act on, at the right line."""
    loc: Path_ = tuple(error["loc"])
    kind = error["type"]
    name = next((str(p) for p in reversed(loc) if isinstance(p, str) and p not in SECTION_KINDS), "")
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = f": did you mean `{guess[0]}`?" if guess else f"; the keys here are {', '.join(allowed)}" if allowed else ""
        line, column = position(tree, loc, key=True)
        return Problem(path, line, column, f"unknown key `{loc[-1]}`{hint}")
    line, column = position(tree, loc)
    if kind == "missing":
        where = _owner(loc[:-1])
        return Problem(path, line, column, f"{where} has no `{loc[-1]}`: add a line `{loc[-1]}: ...`")
    if kind in ("string_type", "dict_type", "list_type", "model_type", "model_attributes_type", "int_type",
                "int_parsing", "date_type"):
        expected = {"string_type": "text", "dict_type": "a block of keys (`name: value` lines, indented)",
                    "model_type": "a block of keys (`name: value` lines, indented)",
                    "model_attributes_type": "a block of keys (`name: value` lines, indented)",
                    "list_type": "a list (lines starting with `- `)", "int_type": "a whole number",
                    "int_parsing": "a whole number", "date_type": "a date like 2025-10-15"}[kind]
        return Problem(path, line, column, f"`{name}` should be {expected}, not {_describe(error.get('input'))}")
    if kind == "string_too_short":
        return Problem(path, line, column, f"`{name}` is empty: write it, or remove the line")
    if kind == "too_short":
        return Problem(path, line, column, f"`{name}` needs at least one item")
    if kind == "literal_error":
        expected = error["ctx"]["expected"].replace("'", "`")
        return Problem(path, line, column, f"`{name}` cannot be `{error.get('input')}`: write {expected}")
    if kind == "string_pattern_mismatch" and name == "issue":
        return Problem(path, line, column, "`issue` is the month, written year-month like 2025-09")
    message = error["msg"].removeprefix("Value error, ")
    if kind in OWN_ERRORS or not name:  # our own messages say what they are about
        return Problem(path, line, column, message)
    return Problem(path, line, column, f"`{name}`: {message[0].lower()}{message[1:]}")


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a block of keys"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing"
    return f"`{value}`"


def _owner(loc: Path_) -> str:
    kind = next((str(p) for p in reversed(loc) if isinstance(p, str) and p in SECTION_KINDS), None)
    parent = next((str(p) for p in reversed(loc) if isinstance(p, str)), None)
    if parent and parent not in SECTION_KINDS:
        return {"items": "this event", "sessions": "this session"}.get(parent, f"`{parent}`")
    return f"this {kind}" if kind else "the draft"


def _unwrap(annotation: Any) -> Any:
    """The model class behind an annotation such as `list[Event] | None`, or None."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return None
            annotation = args[0]
        elif origin is list:
            annotation = typing.get_args(annotation)[0]
        else:
            return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _fields_at(loc: Path_) -> list[str]:
    """The keys a model accepts at this place in the draft, as the editor writes them."""
    model: Any = Issue
    for part in loc:
        if part in SECTION_KINDS:
            model = SECTION_KINDS[part]
        elif isinstance(part, str) and model is not None:
            fields = {f.alias or n: f for n, f in model.model_fields.items()}
            model = _unwrap(fields[part].annotation) if part in fields else None
    if model is None:
        return []
    return [f.alias or n for n, f in model.model_fields.items() if n != "kind"]


def _audience_problems(path: Path, tree: CommentedMap, issue: Issue, slugs: Collection[str]) -> list[Problem]:
    problems = []
    for i, section in enumerate(issue.sections):
        for j, slug in enumerate(section.audience or []):
            if slug not in slugs:
                guess = difflib.get_close_matches(slug, slugs, n=1)
                hint = f": did you mean `{guess[0]}`?" if guess else "; the list is in recipients/authorities.yaml"
                line, column = position(tree, ("sections", i, section.kind, "audience", j))
                problems.append(Problem(path, line, column, f"`{slug}` is not an authority{hint}"))
    return problems
