"""Who gets the issue: the member authorities and their recipient lists.

Each list is a CSV file exported from Excel by an authority's contact, so reading one forgives what
Excel and people do (a BOM, Windows-1252 bytes, semicolons, stray spaces, odd headings, blank rows)
and reports every row it cannot use with the row number Excel shows and what to do about it. A row
is never dropped without a problem saying so, and files are streamed, never held in memory whole.

Addresses are normalised as they are read (lower case, an internationalised domain as IDNA A-labels), so
the dedupe key, the ledger, the suppression list and the envelope all hold the same ASCII form. Names are
one line of plain text of at most LONGEST_NAME characters; message.py encodes them for the headers.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Collection, Container, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import BinaryIO, Literal

from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from newsletter.errors import ListError
from newsletter.model import Line, Slug, ascii_address

Severity = Literal["error", "warning", "note"]


class Authority(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    slug: Slug
    name: Line
    kind: Literal["council", "trust"]
    domains: tuple[Line, ...] = ()
    """Optional: the email domains of its staff (`[walsall.gov.uk]`), so the sign-up form can propose it."""

    def owns(self, email: str) -> bool:
        """Whether the address is at one of `domains` or below one (`x@social.walsall.gov.uk`)."""
        domain = email.rpartition("@")[2].lower()
        return any(domain == d.lower() or domain.endswith("." + d.lower()) for d in self.domains)


_AUTHORITY_EXAMPLE = "`- {slug: walsall, name: Walsall Council, kind: council}`"


def load_authorities(path: Path) -> list[Authority]:
    """The member organisations, in the order the file lists them.

    Raises ListError with one line (the file, the line when known, what is wrong and what to do) for a
    file that is missing, unreadable, not YAML, or has an entry that is not an authority.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ListError(
            f"{path}: there is no such file: it lists the member authorities, one {_AUTHORITY_EXAMPLE}"
            " per line; restore it, or set `recipients` in newsletter.toml to the folder that has it"
        ) from None
    except UnicodeDecodeError as exc:
        raise ListError(
            f"{path}: the file is not UTF-8 (byte {exc.start + 1} cannot be read): save it as UTF-8"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ListError(f"{path}: the file cannot be read ({reason}): check it is a file you can read") from None
    try:
        data = YAML(typ="rt", pure=True).load(text)  # round-trip: it knows the line of every entry
    except YAMLError as exc:
        raise ListError(_yaml_problem(path, text, exc)) from None
    except RecursionError:
        raise ListError(
            f"{path}: the file is nested too deeply to be an authorities list: each authority is one"
            f" line like {_AUTHORITY_EXAMPLE}"
        ) from None
    if data is None:
        raise ListError(f"{path}: the file is empty: list each member authority as {_AUTHORITY_EXAMPLE}")
    if not isinstance(data, list):
        raise ListError(f"{path}:1: the file should be a list of authorities, each line like {_AUTHORITY_EXAMPLE}")
    authorities: list[Authority] = []
    first_line: dict[str, int] = {}
    for index, entry in enumerate(data):
        line = _line(data, index)
        if not isinstance(entry, dict):
            raise ListError(
                f"{path}:{line}: entry {index + 1} (`{_show(str(entry))}`) is not an authority:"
                f" write it like {_AUTHORITY_EXAMPLE}"
            )
        try:
            authority = Authority.model_validate(dict(entry))
        except ValidationError as exc:
            raise ListError(_authority_problem(path, entry, line, exc)) from None
        if authority.slug in first_line:
            raise ListError(
                f"{path}:{line}: the slug `{authority.slug}` is listed twice (first at line"
                f" {first_line[authority.slug]}): list each authority once"
            )
        first_line[authority.slug] = line
        authorities.append(authority)
    return authorities


def _line(container: object, key: object) -> int:
    """The 1-based line of an entry (a sequence index) or of a field's value (a mapping key) in the YAML."""
    lc = getattr(container, "lc", None)
    try:
        if isinstance(container, dict):
            return int(lc.value(key)[0]) + 1 if lc is not None else 1
        return int(lc.item(key)[0]) + 1 if lc is not None else 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(getattr(lc, "line", 0)) + 1


def _yaml_problem(path: Path, text: str, exc: YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    context = getattr(exc, "context_mark", None)
    # A structure left open is found at the end of the file; the line that opened it is the one to fix.
    if mark is not None and context is not None and mark.line >= len(text.rstrip().splitlines()):
        mark = context
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
    return (
        f"{path}{line}: this is not valid YAML ({problem}): check the brackets, commas and colons on this line;"
        f" each authority is one line like {_AUTHORITY_EXAMPLE}"
    )


def _authority_problem(path: Path, entry: dict, line: int, exc: ValidationError) -> str:  # type: ignore[type-arg]
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else ""
    if error["type"] == "extra_forbidden":
        return (
            f"{path}:{_key_line(entry, field, line)}: `{_show(field)}` is not a field of an authority:"
            " each has only slug, name, kind and domains"
        )
    if error["type"] == "missing":
        return f"{path}:{line}: this authority has no `{field}`: write it like {_AUTHORITY_EXAMPLE}"
    where = f"{path}:{_line(entry, field) if field in entry else line}"
    if field == "kind":
        return f"{where}: `kind` is `{_show(str(entry.get('kind')))}`: it must be council or trust"
    if field == "slug" and error["type"] == "slug":
        return f"{where}: {error['msg']}"
    return f"{where}: `{field}`: {error['msg'][:1].lower() + error['msg'][1:]}: write it like {_AUTHORITY_EXAMPLE}"


def _key_line(entry: object, key: str, default: int) -> int:
    lc = getattr(entry, "lc", None)
    try:
        return int(lc.key(key)[0]) + 1 if lc is not None else default
    except (KeyError, IndexError, TypeError, AttributeError):
        return default


@dataclass(frozen=True, slots=True)
class Recipient:
    """One person to send the issue to; `email` (normalised, lower-cased) is the dedupe key."""

    email: str
    name: str
    authority: str
    fields: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class RowProblem:
    """Something in a list its owner should fix or know about, at the row Excel shows (0: the file)."""

    file: Path
    row: int
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        where = f"{self.file}:{self.row}" if self.row > 0 else f"{self.file}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class ListSummary:
    """What one authority's list contributed to a send, so its owner can be told what to fix."""

    authority: Authority
    file: Path
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    suppressed: int = 0
    problems: list[RowProblem] = field(default_factory=list)
    joined: int = 0
    """Readers who signed up on the web for this authority (not counted in `valid`)."""


# Headings are compared by their letters and digits only, so "E-mail", "Email Address" and
# " EMAIL " all match; anything else is kept as a personal field under its lower-cased heading.
_EMAIL_HEADINGS = frozenset({"email", "emailaddress", "emailaddr", "workemail", "workemailaddress"})
_NAME_HEADINGS = frozenset({"name", "fullname", "displayname", "contactname"})
_FIRST_HEADINGS = frozenset({"firstname", "forename", "forenames", "givenname"})
_LAST_HEADINGS = frozenset({"lastname", "surname", "familyname"})
_DELIMITERS = (",", ";", "\t", "|")
_INVISIBLE = "\u200b\u200c\u200d\u2060\ufeff"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_LONE_CR = re.compile(r"(?<=\r)(?!\n)")
_SEP_LINE = re.compile(r'^"?sep=([^"\w\s]|\t)"?[,;\t|]*$', re.IGNORECASE)
_WORKBOOK_MAGIC = (b"PK\x03\x04", b"\xd0\xcf\x11\xe0")
_CSV_UTF8 = '"CSV UTF-8 (Comma delimited)"'


def read_list(path: Path, authority: str) -> Iterator[Recipient | RowProblem]:
    """Every valid recipient in one list, and a problem for each row that is not, in file order.

    Streams the file, so a list of any length is read in flat memory. Duplicates are left in:
    deciding which copy to keep needs all the lists, which is `gather`'s job.
    """
    for _row, item, _skipped in _read(Path(path), authority):
        yield item


def gather(
    directory: Path,
    authorities: Sequence[Authority],
    suppressed: Container[str] = frozenset(),
    only: Collection[str] | None = None,
    summaries: dict[str, ListSummary] | None = None,
    signups: Iterable[Recipient] = (),
) -> Iterator[Recipient]:
    """Everyone who should get the issue, once each, reading `<directory>/<slug>.csv` per authority.

    `signups` (confirmed web sign-ups) are the readers' own word, so each replaces any list row for the
    same address: one copy, under the sign-up's authority, first in its authority's turn. One naming an
    authority no longer in `authorities` is sent nothing (a warning in a summary of its own), and leaves
    the lists' copy of that address alone.

    The first authority (in `authorities` order) that lists an address keeps it, so people on two
    lists get one copy; later copies are notes in that list's summary. Suppressed addresses
    (bounces, unsubscribes; a plain `Container` must hold them lower-cased) are skipped and
    counted. `summaries` is filled as the iterator is consumed, one entry per authority read.
    Raises ListError (a ValueError) at once if `only` names an authority that does not exist, because sending
    to nobody there by mistake is worse than stopping.
    """
    chosen = list(authorities)
    if only is not None:
        wanted = set(only)
        unknown = sorted(wanted - {authority.slug for authority in chosen})
        if unknown:
            listed = ", ".join(f"`{slug}`" for slug in unknown)
            raise ListError(f"no authority is called {listed}: the slugs are in recipients/authorities.yaml")
        chosen = [authority for authority in chosen if authority.slug in wanted]
    return _gather(
        Path(directory),
        chosen,
        {authority.slug: authority for authority in authorities},
        _lowered(suppressed),
        {} if summaries is None else summaries,
        list(signups),
    )


def _gather(
    directory: Path,
    chosen: list[Authority],
    names: dict[str, Authority],
    suppressed: Container[str],
    summaries: dict[str, ListSummary],
    signups: list[Recipient],
) -> Iterator[Recipient]:
    seen: dict[str, tuple[str, int]] = {}  # address -> (slug, row) of the copy that is kept
    joined = {p.email: p for p in signups if p.authority in names}
    _unknown_signups(directory, [p for p in signups if p.authority not in names], summaries)
    for authority in chosen:
        path = directory / f"{authority.slug}.csv"
        summary = summaries.get(authority.slug)
        if summary is None:
            summary = summaries[authority.slug] = ListSummary(authority, path)
        for person in joined.values():
            if person.authority != authority.slug:
                continue
            if person.email in suppressed:
                summary.suppressed += 1
                continue
            summary.joined += 1
            yield person
        if not path.exists():
            summary.problems.append(RowProblem(path, 0, _missing(directory, path, authority)))
            continue
        for row, item, skipped in _read(path, authority.slug):
            if isinstance(item, RowProblem):
                summary.problems.append(item)
                summary.invalid += skipped
                continue
            if item.email in suppressed:
                summary.suppressed += 1
                continue
            if item.email in joined:
                keeper = names[joined[item.email].authority].name
                message = f"`{item.email}` signed up on the web for {keeper}, which replaces this row: one copy"
                summary.problems.append(RowProblem(path, row, message, "note"))
                continue
            first = seen.get(item.email)
            if first is not None:
                summary.duplicates += 1
                summary.problems.append(RowProblem(path, row, _duplicate(item.email, authority, first, names), "note"))
                continue
            seen[item.email] = (authority.slug, row)
            summary.valid += 1
            yield item


def _unknown_signups(directory: Path, people: list[Recipient], summaries: dict[str, ListSummary]) -> None:
    """Sign-ups for an authority since taken out of authorities.yaml: a warning each, in a summary per slug."""
    for person in people:
        summary = summaries.get(person.authority)
        if summary is None:  # the slug was checked when they signed up; the name says it is gone
            name = f"{person.authority} (not in authorities.yaml)"
            gone = Authority(slug=person.authority, name=name, kind="council")
            summary = summaries[person.authority] = ListSummary(gone, directory / "authorities.yaml")
        message = (
            f"`{person.email}` signed up on the web for `{person.authority}`, which is no longer listed here: "
            "they are not sent this issue (add it again, or ask them to sign up for their authority)"
        )
        summary.problems.append(RowProblem(summary.file, 0, message, "warning"))


def _lowered(suppressed: Container[str]) -> Container[str]:
    """Suppression entries compared lower-cased, as the addresses they are checked against are."""
    if isinstance(suppressed, Collection) and not isinstance(suppressed, str):
        return frozenset(entry.strip().lower() for entry in suppressed if isinstance(entry, str))
    return suppressed


def _missing(directory: Path, path: Path, authority: Authority) -> str:
    message = f"there is no list for {authority.name}: export it from Excel as {_CSV_UTF8} and save it as {path}"
    if directory.is_dir():
        near = sorted(
            other.name
            for other in directory.iterdir()
            if other != path and other.name.lower().split(".")[0].strip() == authority.slug
        )
        if near:
            message += f" (there is {', '.join(f'`{name}`' for name in near)}: rename it, or save it as CSV)"
    return message


def _duplicate(email: str, authority: Authority, first: tuple[str, int], names: dict[str, Authority]) -> str:
    slug, row = first
    if slug == authority.slug:
        return f"`{email}` is already in this list at row {row}: they will get one copy (you can delete this row)"
    keeper = names[slug].name if slug in names else slug
    return f"`{email}` is also on the list for {keeper} (row {row}), which keeps it: they will get one copy from there"


class _Source:
    """The decoded lines of one file: UTF-8 where the bytes allow, Windows-1252 where they do not.

    Deciding line by line (not for the whole file) copes with a UTF-8 list that someone added a few
    Windows-1252 rows to, and lets the file be streamed in one pass.
    """

    def __init__(self, binary: BinaryIO) -> None:
        self.binary = binary
        self.yielded = 0  # lines handed out so far
        self.converted_at: int | None = None  # the first line read as Windows-1252

    def lines(self) -> Iterator[str]:
        head = self.binary.read(2)
        self.binary.seek(0)
        if head in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):  # Excel's "Unicode Text"
            text = io.TextIOWrapper(self.binary, encoding="utf-16", errors="replace", newline="")
            for line in text:
                self.yielded += 1
                yield line
            return
        for number, raw in enumerate(self.binary):
            if number == 0 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                line = raw.decode("cp1252", errors="replace")
                if self.converted_at is None:
                    self.converted_at = self.yielded + 1
            # Old Mac exports end lines with a bare CR; the csv module wants one line at a time.
            pieces = _LONE_CR.split(line) if "\r" in line.rstrip("\r\n") else [line]
            for piece in pieces:
                if piece:
                    self.yielded += 1
                    yield piece


@dataclass
class _Columns:
    """Which column holds what, from the heading row."""

    row: int
    headings: list[str]
    email: int | None = None
    name: int | None = None
    first: int | None = None
    last: int | None = None
    fields: list[tuple[int, str]] = field(default_factory=list)
    unheaded: set[int] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)


def _columns(cells: list[str], row: int) -> _Columns:
    headings = [_clean(cell) for cell in cells]
    columns = _Columns(row, headings)
    keys: set[str] = set()
    for index, heading in enumerate(headings):
        compact = _key(heading)
        if compact in _EMAIL_HEADINGS:
            if columns.email is None:
                columns.email = index
                continue
            columns.warnings.append(
                f"columns {_letter(columns.email)} (`{headings[columns.email]}`) and {_letter(index)} (`{heading}`)"
                f" both look like email addresses: only column {_letter(columns.email)} is used, so rename or"
                " remove the other one"
            )
        elif compact in _NAME_HEADINGS and columns.name is None:
            columns.name = index
            continue
        elif compact in _FIRST_HEADINGS and columns.first is None:
            columns.first = index
        elif compact in _LAST_HEADINGS and columns.last is None:
            columns.last = index
        key = heading.lower()
        if not key:
            columns.unheaded.add(index)
        elif key in keys:
            columns.warnings.append(
                f"two columns are headed `{heading}`: only the first is used, "
                f"so rename or remove column {_letter(index)}"
            )
        else:
            keys.add(key)
            columns.fields.append((index, key))
    if columns.email is not None and columns.name is None and columns.first is None and columns.last is None:
        columns.warnings.append(
            f"there is no name column (the headings are {_listing(headings)}), so names will be blank:"
            " add a column headed `name` if people should be greeted by name"
        )
    return columns


def _read(path: Path, authority: str) -> Iterator[tuple[int, Recipient | RowProblem, bool]]:
    """(row, recipient or problem, whether the problem means a row was not used) for one file."""
    try:
        binary = open(path, "rb")  # noqa: SIM115 - closed by the `with` below, after the checks
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        yield (
            0,
            RowProblem(path, 0, f"the list cannot be opened ({reason}): check the file is a CSV file you can read"),
            False,
        )
        return
    with binary:
        if binary.read(4).startswith(_WORKBOOK_MAGIC):
            message = (
                "this is an Excel workbook saved with a .csv name, not a CSV file: "
                f"open it in Excel and save it as {_CSV_UTF8}"
            )
            yield 0, RowProblem(path, 0, message), False
            return
        binary.seek(0)
        yield from _rows(path, authority, _Source(binary))


def _rows(path: Path, authority: str, source: _Source) -> Iterator[tuple[int, Recipient | RowProblem, bool]]:
    def problem(row: int, message: str, severity: Severity = "error") -> RowProblem:
        return RowProblem(path, row, message, severity)

    lines = source.lines()
    first = next(lines, None)
    hidden = 0  # lines Excel does not show as rows
    if first is not None and (sep := _SEP_LINE.match(first.strip(" \r\n" + _INVISIBLE))):
        delimiter, hidden = sep.group(1), 1
    else:
        delimiter, lines = _delimiter(chain([] if first is None else [first], lines))
    reader = csv.reader(lines, delimiter=delimiter, skipinitialspace=True)

    row = 0
    columns: _Columns | None = None
    warned_encoding = False
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            message = (
                f'this row cannot be read ({exc}): look for a quote mark `"` that is not closed in or above it,'
                " fix it and export again; the rest of the file was not read"
            )
            yield row + 1, problem(row + 1, message), True
            return
        row += 1
        if not warned_encoding and source.converted_at is not None and source.converted_at <= reader.line_num + hidden:
            warned_encoding = True
            message = (
                f"the file was converted from Windows-1252 because it is not saved as UTF-8 (first at row {row}):"
                f" check accented names such as Siân or Zoë look right, and next time save it from Excel as {_CSV_UTF8}"
            )
            yield 1, problem(1, message, "warning"), False
        if not any(_clean(cell) for cell in cells):
            continue  # a blank row: Excel exports them, nobody needs telling

        if columns is None:
            columns = _columns(cells, row)
            for warning in columns.warnings:
                yield row, problem(row, warning, "warning"), False
            if columns.email is None:
                yield row, problem(row, _no_email_column(columns, _count_rows(reader))), False
                return
            continue
        yield from _recipient(path, authority, row, cells, columns, delimiter)

    if columns is None:
        message = "the file is empty: row 1 should have the headings `email` and `name`, with one person per row below"
        yield 1, problem(1, message), False


def _recipient(
    path: Path, authority: str, row: int, cells: list[str], columns: _Columns, delimiter: str
) -> Iterator[tuple[int, Recipient | RowProblem, bool]]:
    assert columns.email is not None

    def cell(index: int | None) -> str:
        return cells[index] if index is not None and index < len(cells) else ""

    for value in cells:
        later = value.splitlines()[1:]
        if any("@" in line and delimiter in line for line in later):
            message = (
                f'a quote mark `"` in this row is never closed, so this row and the {len(later)} line(s) of the file'
                " after it were read as one cell and none of them were used: add the missing quote mark (or remove"
                " the stray one) and export again"
            )
            yield row, RowProblem(path, row, message), True
            return

    raw = _clean(cell(columns.email))
    if not raw:
        who = _clean(cell(columns.name)) or next((_clean(value) for value in cells if _clean(value)), "")
        message = f"there is no email address in this row (`{_show(who)}`): add it, or delete the row, and export again"
        yield row, RowProblem(path, row, message), True
        return
    if _key(raw) in _EMAIL_HEADINGS:
        message = "this row repeats the headings (two exports pasted together?), so it was skipped: you can delete it"
        yield row, RowProblem(path, row, message, "note"), False
        return
    try:
        email = address(raw)
    except EmailNotValidError as exc:
        reason = str(exc).rstrip(".")
        reason = reason[:1].lower() + reason[1:]
        message = f"`{_show(raw)}` is not a valid email address ({reason}): {_fix(raw, cell(columns.name))}"
        yield row, RowProblem(path, row, message), True
        return

    raw_name = cell(columns.name)
    if columns.name is not None:
        name = _clean(raw_name)
        if "\r" in raw_name or "\n" in raw_name:
            message = (
                f"the name was on more than one line in its cell, so the lines were joined: `{_show(name)}`; "
                "check it reads right"
            )
            yield row, RowProblem(path, row, message, "warning"), False
    else:
        name = _clean(f"{cell(columns.first)} {cell(columns.last)}")
    if len(name) > LONGEST_NAME:
        short = _shorten(name)
        message = (
            f"the name is {len(name)} characters long, more than an email header holds well ({LONGEST_NAME}),"
            f" so it was shortened to `{_show(short)}`: correct it in the spreadsheet and export again"
        )
        yield row, RowProblem(path, row, message, "warning"), False
        name = short
    if "=?" in name:
        message = (
            f"the name `{_show(name)}` looks like an encoded email header (`=?...?=`): it will be shown"
            " as written, so check the spreadsheet holds the person's real name"
        )
        yield row, RowProblem(path, row, message, "warning"), False

    stray = [
        index
        for index, value in enumerate(cells)
        if (index >= len(columns.headings) or index in columns.unheaded) and _clean(value)
    ]
    if stray:
        letters = ", ".join(_letter(index) for index in stray)
        values = ", ".join(f"`{_show(cells[index])}`" for index in stray)
        message = (
            f"column {letters} has no heading, so {values} was ignored: if a value contains `{_show(delimiter)}`"
            ' put it in quotes ("Smith, John"), otherwise give the column a heading'
        )
        yield row, RowProblem(path, row, message, "warning"), False

    fields = {key: _clean(cell(index)) for index, key in columns.fields}
    yield row, Recipient(email, name, authority, fields), False


def _delimiter(lines: Iterator[str]) -> tuple[str, Iterator[str]]:
    """The delimiter the heading row uses, and the lines again from the start.

    The heading row decides: the delimiter that reveals an email heading wins, else the one that
    splits it into most cells. That copes with Excel's semicolon exports in some locales.
    """
    buffered: list[str] = []
    for line in lines:
        buffered.append(line)
        if line.strip(" \t\r\n,;|" + _INVISIBLE):
            break
    heading = buffered[-1] if buffered else ""
    best, most = ",", 0
    for delimiter in _DELIMITERS:
        cells = next(csv.reader([heading], delimiter=delimiter, skipinitialspace=True), [])
        if any(_key(cell) in _EMAIL_HEADINGS for cell in cells):
            return delimiter, chain(buffered, lines)
        if len(cells) > most:
            best, most = delimiter, len(cells)
    return best, chain(buffered, lines)


def _no_email_column(columns: _Columns, rows_below: int) -> str:
    person = next((heading for heading in columns.headings if "@" in heading and _valid(heading)), None)
    if person is not None:
        return (
            f"row {columns.row} looks like a person (`{_show(person)}`), not column headings: insert a row at the top"
            f" with the headings `email` and `name` and export again; none of the {rows_below + 1} rows were used"
        )
    return (
        f"there is no email column (the headings are {_listing(columns.headings)}): head the column of addresses"
        f" `email` and export again; none of the {rows_below} rows below were used"
    )


def _count_rows(reader: Iterator[list[str]]) -> int:
    count = 0
    try:
        for cells in reader:
            count += any(_clean(cell) for cell in cells)
    except csv.Error:
        pass
    return count


def _fix(raw: str, name: str) -> str:
    """What to do about an address that is not valid, for the mistakes people actually make."""
    if "<" in raw or ">" in raw:
        return "put only the address in the email column, without a name or `<` `>`, and export again"
    if raw.lower().startswith("mailto:"):
        return "remove `mailto:` from the start and export again"
    if raw.count("@") > 1:
        return "put one address per row and export again"
    local = raw.rpartition("@")[0]
    if local and not local.isascii():
        return _NON_ASCII_LOCAL + ", correct it in the spreadsheet and export again"
    if "@" not in raw and "@" in name:
        return "the email and name columns look swapped in this row: correct it in the spreadsheet and export again"
    return "correct it in the spreadsheet and export again"


LONGEST_NAME = 200
"""Longer names are shortened (with a warning at their row): a name is written into the To header."""


def _shorten(name: str) -> str:
    """At most LONGEST_NAME characters, cut at a space when there is one in the last quarter."""
    cut = name[:LONGEST_NAME]
    space = cut.rfind(" ")
    return (cut[:space] if space >= LONGEST_NAME * 3 // 4 else cut).rstrip()


_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@"
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
"""The everyday shape of an address, a strict subset of what email-validator accepts."""


def address(raw: str) -> str:
    """The address as the envelope, the ledger and the suppression list hold it, and the dedupe key: lower
    case, ASCII, an internationalised domain as IDNA A-labels (xn--...); EmailNotValidError when it is not
    one, or when its local part is not ASCII (that needs SMTPUTF8, which is not used).

    The everyday shape is checked by pattern (resuming a send re-reads 100,000 rows, and the full
    validator is most of that time); anything else goes to email-validator.
    """
    at = raw.find("@")
    if (
        len(raw) <= 254
        and 0 < at <= 64
        and _PLAIN_ADDRESS.fullmatch(raw)
        and "--" not in raw[at:]
        and raw.rsplit(".", 1)[1].lower() not in SPECIAL_USE_DOMAIN_NAMES
    ):
        return raw.lower()
    return ascii_address(raw).lower()


def valid_address(raw: str) -> str:
    """One address given by hand (`newsletter suppress add`), as `address` keys it; ListError, in one line
    saying what to do, when it is not an address that can be sent to."""
    text = raw.strip()
    if not text:
        raise ListError("no address was given: write it in full, like name@organisation.gov.uk")
    try:
        return address(text)
    except EmailNotValidError as exc:
        reason = " ".join(str(exc).rstrip(".").split())
        reason = reason[:1].lower() + reason[1:]
        raise ListError(
            f"`{_show(text)}` is not a valid email address ({_show(reason, 200)}): {_fix_one(text)}"
        ) from None


def _fix_one(raw: str) -> str:
    """What to do about one address typed on the command line."""
    local = raw.rpartition("@")[0]
    if "<" in raw or ">" in raw:
        return "give only the address, without a name or `<` `>`"
    if raw.lower().startswith("mailto:"):
        return "leave out `mailto:`"
    if raw.count("@") > 1:
        return "give one address at a time"
    if local and not local.isascii():
        return _NON_ASCII_LOCAL
    return "write it in full, like name@organisation.gov.uk"


_NON_ASCII_LOCAL = (
    "letters with accents or other non-ASCII characters before the @ cannot be sent (the relay would"
    " need SMTPUTF8): ask the person for another address"
)


def _valid(value: str) -> bool:
    try:
        validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError:
        return False
    return True


def _key(heading: str) -> str:
    return re.sub(r"[^a-z0-9]", "", heading.lower())


def _clean(value: str) -> str:
    """One line of text: no line breaks or control characters (names become email headers)."""
    return " ".join(_CONTROL.sub(" ", value).split()).strip(_INVISIBLE).strip()


def _show(value: str, longest: int = 60) -> str:
    """A value as quoted in a message: one line, no backticks, not too long."""
    text = _clean(value).replace("`", "'") if value != "\t" else "tab"
    return text if len(text) <= longest else text[: longest - 1] + "…"


def _listing(headings: list[str]) -> str:
    shown = [f"`{_show(heading)}`" for heading in headings if heading]
    return ", ".join(shown) if shown else "blank"


def _letter(index: int) -> str:
    """The Excel column letter for a 0-based index: 0 -> A, 26 -> AA."""
    letters = ""
    index += 1
    while index:
        index, remainder = divmod(index - 1, 26)
        letters = chr(ord("A") + remainder) + letters
    return letters
