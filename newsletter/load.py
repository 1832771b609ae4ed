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

OWN_ERRORS = {"section", "email", "url", "time", "date", "slug", "issue_id", "attachment"}
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

    def problem(
        self,
        path: Path_,
        message: str,
        severity: Literal["error", "warning"] = "warning",
        offset: int | None = None,
        found: str = "",
    ) -> Problem:
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
        raise DraftError(
            [
                Problem(
                    path,
                    1,
                    1,
                    f"the file is {len(raw) // 1024} KB; a draft is at most "
                    f"{MAX_BYTES // 1024} KB. Is this the right file?",
                )
            ]
        )
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise DraftError(
            [
                Problem(
                    path, line, 1, "this line has characters that are not UTF-8: save the file as UTF-8 in your editor"
                )
            ]
        ) from None
    tabs = [
        Problem(path, n, line.index("\t") + 1, "this line is indented with a tab: indent with spaces")
        for n, line in enumerate(text.splitlines(), 1)
        if "\t" in line[: len(line) - len(line.lstrip())]
    ]
    if tabs:
        raise DraftError(tabs)
    tree = _parse(path, text)
    problems = _size_problems(path, tree)
    if problems:
        raise DraftError(problems)
    problems = list(_html_problems(path, tree, text.splitlines()))
    # Everything after a successful parse is found in this one pass: the shape of each section, the
    # fields (dates, times, addresses ...) and the authority slugs, so one `check` lists them all.
    shapes = _section_shapes(path, tree)
    problems += shapes.problems
    audience = _audience_problems(path, tree, shapes, authorities) if authorities is not None else []
    taken = {(p.line, p.column) for p in audience}
    problems += audience
    issue = None
    try:
        issue = Issue.model_validate(shapes.data)
    except ValidationError as exc:
        for error in exc.errors():
            loc = tuple(error["loc"])
            if error["type"] == "section" and len(loc) == 2 and loc[1] in shapes.handled:
                continue  # said more precisely by _section_shapes
            problem = _explain(path, tree, error, shapes.relocate(loc))
            if (problem.line, problem.column) not in taken:
                problems.append(problem)
    if problems or issue is None:
        raise DraftError(sorted(problems, key=lambda p: (p.line, p.column)))
    return Draft(path, issue, tree, text.splitlines())


def _parse(path: Path, text: str) -> CommentedMap:
    try:
        tree = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        unclosed = _unclosed_quote(text, mark.line + 1 if mark else len(text))
        if unclosed:
            raise DraftError(
                [
                    Problem(
                        path,
                        unclosed,
                        1,
                        "the quote opened on this line is not closed: add the closing quote at the end of the value",
                    )
                ]
            ) from None
        indent = _indentation_problem(path, text, mark.line + 1 if mark else len(text.splitlines()))
        if indent:
            raise DraftError([indent]) from None
        what = " ".join(filter(None, [exc.context, exc.problem]))
        hint = _yaml_hint(what)
        raise DraftError(
            [
                Problem(
                    path,
                    mark.line + 1 if mark else 1,
                    mark.column + 1 if mark else 1,
                    f"the YAML cannot be read: {what}{hint}",
                )
            ]
        ) from None
    except YAMLError as exc:
        raise DraftError([Problem(path, 1, 1, f"the YAML cannot be read: {exc}")]) from None
    except RecursionError:
        raise DraftError([Problem(path, 1, 1, "the file is nested too deeply to be a draft")]) from None
    if not isinstance(tree, CommentedMap):
        raise DraftError(
            [
                Problem(
                    path,
                    1,
                    1,
                    "a draft starts with `title:`, `issue:`, `subject:` ... "
                    "one per line; this file is not laid out that way",
                )
            ]
        )
    return tree


_QUOTED = re.compile(r'^\s*(?:- )?(?:[\w-]+:\s+)?(?P<q>["\'])')


def _unclosed_quote(text: str, before: int) -> int | None:
    """The first line, up to the error, whose value opens a quote it does not close."""
    for number, line in enumerate(text.splitlines()[:before], 1):
        match = _QUOTED.match(line)
        if match and line.rstrip().count(match["q"]) - line.count("\\" + match["q"]) == 1:
            return number
    return None


_KEY_LINE = re.compile(r"""^(?P<key>[A-Za-z_][\w-]*|"[^"\n]*"|'[^'\n]*')[ ]*:(?:[ ]+(?P<value>.*))?$""")
_BLOCK_SCALAR = re.compile(r"^[|>][-+0-9]*\s*(?:#.*)?$")


@dataclasses.dataclass
class _Line:
    number: int
    indent: int
    key: str
    dedented_from: int | None


def _indentation_problem(path: Path, text: str, error_line: int) -> Problem | None:
    """The line, up to where the YAML parser gave up, whose indentation does not fit the lines above it.

    The parser reports where it noticed, often the line after the mistake (a key outdented under `image:`
    surfaces as "mapping values are not allowed" on the next line). This follows the blocks the way an
    editor sees them, keys and `- ` items by their indentation, and names the line that went wrong. None
    when the layout is consistent up to the error (the message is then the parser's own).
    """
    levels: list[int] = []
    items: set[int] = set()  # the levels that are `- ` lists rather than keys
    previous: _Line | None = None
    opens = False
    scalar_above: int | None = None  # the column a block scalar (`body: |`) belongs to
    scalar_indent: int | None = None  # the indentation of its text, set by its first line
    flow = 0
    for number, line in enumerate(text.splitlines()[:error_line], 1):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip(" "))
        if scalar_above is not None:
            if not stripped or indent >= (scalar_indent or scalar_above + 1):
                scalar_indent = scalar_indent or (indent if stripped else None)
                continue
            scalar_above = scalar_indent = None
        if flow:
            flow += _brackets(line)
            continue
        if not stripped or stripped.startswith("#"):
            continue
        column, rest = indent, line[indent:].rstrip()
        dashes = []
        while rest == "-" or rest.startswith("- "):
            step = len(rest) - len(rest[1:].lstrip(" "))
            dashes.append(column)
            column, rest = column + step, rest[step:]
        match = _KEY_LINE.match(rest)
        if not match and not dashes:
            continue  # the continuation of a value above
        value = (match["value"] or "") if match else rest
        here = _Line(number, indent, match["key"] if match else "-", None)
        if levels and indent > levels[-1]:
            if not opens:
                if previous and previous.dedented_from is not None and indent <= previous.dedented_from:
                    return _less(path, previous)
                return Problem(
                    path,
                    number,
                    indent + 1,
                    f"this line is indented more than the line above it: "
                    f"{_spaces(indent)}, where {_named(previous)} has {levels[-1]}. Line it up with the "
                    "keys of its block (and put quotes around a value that contains `: `)",
                )
            levels.append(indent)
            if dashes:
                items.add(indent)
        else:
            if levels and indent < levels[-1]:
                here.dedented_from = levels[-1]
                while levels and levels[-1] > indent:
                    items.discard(levels.pop())
                if not levels or levels[-1] != indent or (indent in items and not dashes):
                    return _less(path, here)
            elif levels and indent in items and not dashes and not opens:
                return Problem(
                    path,
                    number,
                    indent + 1,
                    "this line is lined up with the `- ` above it but does not "
                    "start with `- `: indent it like the keys above it, or start it with `- `",
                )
            if not levels:
                levels.append(indent)
                if dashes:
                    items.add(indent)
        for dash in dashes[1:]:
            levels.append(dash)
            items.add(dash)
        if dashes and match:
            levels.append(column)
        previous = here
        opens = (match is not None and (not value or value.startswith("#"))) or (bool(dashes) and not rest)
        if match and _BLOCK_SCALAR.match(value):
            scalar_above = column
        elif not match and _BLOCK_SCALAR.match(value):
            scalar_above = dashes[-1]
        elif value[:1] in "[{" or (not match and rest[:1] in "[{"):
            flow = max(_brackets(value if match else rest), 0)
    return None


def _brackets(text: str) -> int:
    """How many flow brackets this text leaves open (quoted text aside)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'[^\']*\'', "", text)
    return text.count("[") + text.count("{") - text.count("]") - text.count("}")


def _spaces(count: int) -> str:
    return "1 space" if count == 1 else f"{count} spaces"


def _named(line: _Line | None) -> str:
    if line is None:
        return "the line above"
    return f"`{line.key}` on line {line.number}" if line.key != "-" else f"the item on line {line.number}"


def _less(path: Path, line: _Line) -> Problem:
    above = line.dedented_from
    return Problem(
        path,
        line.number,
        line.indent + 1,
        f"this line is indented less than the lines above it: "
        f"{_spaces(line.indent)}, where they have {above}. Line up each key with the others of its block "
        "(the fields of a section, event or session all start in the same column)",
    )


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
            return [
                Problem(
                    path,
                    1,
                    1,
                    f"the draft has more than {MAX_NODES:,} values; a draft is far smaller. Is this the right file?",
                )
            ]
        if depth > MAX_DEPTH:
            line, column = node.lc.line + 1, node.lc.col + 1
            return [
                Problem(
                    path,
                    line,
                    column,
                    f"the draft is nested more than {MAX_DEPTH} levels deep here; "
                    "sections hold their fields directly, with no deeper lists",
                )
            ]
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
            yield Problem(
                path,
                line,
                column,
                f"`{match.group()[:40]}` is HTML, which drafts do not use "
                "(it would show as text). Write Markdown instead: **bold**, *italic*, [link text](https://...)",
            )


def text_position(
    tree: Any, lines: list[str], path: Path_, offset: int | None = None, found: str = ""
) -> tuple[int, int]:
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


def _explain(path: Path, tree: CommentedMap, error: Any, at: Path_ | None = None) -> Problem:
    """Turn one pydantic error into a sentence an editor can act on, at the right line.

    `at` is where the value is in the file when that differs from the model's path (the fields of a section
    written beside its kind instead of under it).
    """
    loc: Path_ = tuple(error["loc"])
    at = loc if at is None else at
    kind = error["type"]
    name = next((str(p) for p in reversed(loc) if isinstance(p, str) and p not in SECTION_KINDS), "")
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        guess = difflib.get_close_matches(str(loc[-1]), allowed, n=1, cutoff=0.6)
        hint = (
            f": did you mean `{guess[0]}`?" if guess else f"; the keys here are {', '.join(allowed)}" if allowed else ""
        )
        line, column = position(tree, at, key=True)
        return Problem(path, line, column, f"unknown key `{loc[-1]}`{hint}")
    line, column = position(tree, at)
    if kind == "missing":
        where = _owner(loc[:-1])
        return Problem(path, line, column, f"{where} has no `{loc[-1]}`: add a line `{loc[-1]}: ...`")
    if kind in (
        "string_type",
        "dict_type",
        "list_type",
        "model_type",
        "model_attributes_type",
        "int_type",
        "int_parsing",
        "date_type",
    ):
        expected = {
            "string_type": "text",
            "dict_type": "a block of keys (`name: value` lines, indented)",
            "model_type": "a block of keys (`name: value` lines, indented)",
            "model_attributes_type": "a block of keys (`name: value` lines, indented)",
            "list_type": "a list (lines starting with `- `)",
            "int_type": "a whole number",
            "int_parsing": "a whole number",
            "date_type": "a date like 2025-10-15",
        }[kind]
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


def fields_at(loc: Path_) -> list[str]:
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


_fields_at = fields_at


@dataclasses.dataclass
class _Shapes:
    """The sections as the model should see them, and what was wrong with their shape."""

    data: Any
    """The tree, or a copy whose misshapen sections are put right so their fields are checked too."""
    problems: list[Problem]
    handled: set[int]
    """Sections whose shape problem is already said (the model's own words for it are dropped)."""
    moved: dict[int, tuple[str, set[str]]]
    """Section index -> (kind, the keys written beside the kind instead of under it)."""

    def relocate(self, loc: Path_) -> Path_:
        """Where a value the model found at `loc` really is in the file."""
        if len(loc) >= 4 and loc[0] == "sections" and loc[1] in self.moved:
            kind, keys = self.moved[loc[1]]
            if loc[2] == kind and loc[3] in keys:
                return (*loc[:2], *loc[3:])
        return loc


def _section_shapes(path: Path, tree: CommentedMap) -> _Shapes:
    """Say what is wrong with a section that is not `- kind:` with its fields indented under it, naming the
    keys found and where the fields belong; and give the model the section as meant, so the errors in its
    fields come out in the same run."""
    sections = tree.get("sections")
    shapes = _Shapes(tree, [], set(), {})
    if not isinstance(sections, list):
        return shapes
    kinds = ", ".join(SECTION_KINDS)
    repaired = list(sections)
    for i, item in enumerate(sections):
        at: Path_ = ("sections", i)
        if item is None:
            line, column = position(tree, at)
            shapes.problems.append(
                Problem(
                    path,
                    line,
                    column,
                    "this `-` starts a section but nothing follows it: "
                    f"write the kind ({kinds}) with a colon, and its fields under it",
                )
            )
            shapes.handled.add(i)
            continue
        if isinstance(item, str):
            word = item.strip()
            guess = (
                word if word in SECTION_KINDS else next(iter(difflib.get_close_matches(word, SECTION_KINDS, n=1)), None)
            )
            line, column = position(tree, at)
            what = (
                f"`{word}` needs a colon after it (`- {guess}:`), with its fields indented under it"
                if guess
                else f"`{word[:40]}` is not a section: each section is one of {kinds}, followed by a colon and its "
                "fields indented under it"
            )
            shapes.problems.append(Problem(path, line, column, what))
            shapes.handled.add(i)
            continue
        if not isinstance(item, CommentedMap) or len(item) < 2:
            continue  # one key: the model says what is wrong with it, if anything
        shapes.handled.add(i)
        keys = [str(k) for k in item]
        found = [k for k in keys if k in SECTION_KINDS]
        others = [k for k in keys if k not in SECTION_KINDS]
        if len(found) > 1:
            line, column = position(tree, (*at, found[1]), key=True)
            shapes.problems.append(
                Problem(
                    path,
                    line,
                    column,
                    f"`{found[1]}:` is in the same section as "
                    f"`{found[0]}:` on line {position(tree, (*at, found[0]), key=True)[0]}: "
                    f"start a new section with `- {found[1]}:`",
                )
            )
            continue
        if not found:
            line, column = position(tree, (*at, keys[0]), key=True)
            close = difflib.get_close_matches(keys[0], SECTION_KINDS, n=1)
            fits = [k for k in SECTION_KINDS if set(keys) <= set(fields_at((k,)))]
            hint = (
                f"did you mean `{close[0]}:`?"
                if close
                else f"for these fields, write `- {fits[0]}:` on its own line and indent them under it"
                if len(fits) == 1
                else f"write the kind ({kinds}) with a colon on its own line, and indent the fields under it"
            )
            shapes.problems.append(
                Problem(path, line, column, f"this section starts with `{keys[0]}`, not with its kind: {hint}")
            )
            continue
        kind = found[0]
        body = item[kind]
        kind_line, kind_column = position(tree, (*at, kind), key=True)
        if body is None:
            line, column = position(tree, (*at, others[0]), key=True)
            names = ", ".join(f"`{k}`" for k in others)
            shapes.problems.append(
                Problem(
                    path,
                    line,
                    column,
                    f"found `{kind}:` with nothing under it, and its fields ({names}) lined up with "
                    f"it in column {kind_column}: indent them {2} more spaces, under `{kind}:` (line {kind_line})",
                )
            )
            fields = {k: item[k] for k in others}
        elif isinstance(body, dict):
            inside = next(iter(body), None)
            for key in others:
                line, column = position(tree, (*at, key), key=True)
                like = (
                    f"like `{inside}` (line {position(tree, (*at, kind, inside), key=True)[0]})"
                    if inside
                    else f"under `{kind}:`"
                )
                shapes.problems.append(
                    Problem(
                        path,
                        line,
                        column,
                        f"`{key}` is lined up with `{kind}:` (line {kind_line}), so it is not one of "
                        f"the {kind}'s fields: indent it {like}",
                    )
                )
            fields = {**{k: item[k] for k in others}, **body}
        else:
            line, column = position(tree, (*at, kind))
            names = ", ".join(f"`{k}`" for k in others)
            shapes.problems.append(
                Problem(
                    path,
                    line,
                    column,
                    f"`{kind}:` is followed by a value instead of its fields, and {names} are lined "
                    f"up with it: put each field of the {kind} on its own line, indented under `{kind}:`",
                )
            )
            continue
        repaired[i] = {kind: fields}
        shapes.moved[i] = (kind, set(others))
    if shapes.moved:
        shapes.data = {**tree, "sections": repaired}
    return shapes


def _audience_problems(path: Path, tree: CommentedMap, shapes: _Shapes, slugs: Collection[str]) -> list[Problem]:
    """Unknown authorities, found in the tree so they come out beside every other problem."""
    problems = []
    sections = shapes.data.get("sections") if isinstance(shapes.data, dict) else None
    for i, item in enumerate(sections if isinstance(sections, list) else []):
        if not (isinstance(item, dict) and len(item) == 1):
            continue
        ((kind, body),) = item.items()
        audience = body.get("audience") if isinstance(body, dict) else None
        for j, slug in enumerate(audience if isinstance(audience, list) else []):
            if isinstance(slug, str) and slug not in slugs:
                guess = difflib.get_close_matches(slug, slugs, n=1) or difflib.get_close_matches(
                    slug.lower(), slugs, n=1
                )
                hint = f": did you mean `{guess[0]}`?" if guess else "; the list is in recipients/authorities.yaml"
                line, column = position(tree, shapes.relocate(("sections", i, kind, "audience", j)))
                problems.append(Problem(path, line, column, f"`{slug}` is not an authority{hint}"))
    return problems
