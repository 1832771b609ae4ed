"""Next month's draft from the latest one: metadata rolled forward, past events taken out.

The new draft is the old one's text with only what changes edited in place (the month, the send date, the
status, the month in the subject) and the lines of past events cut out, so the editor's comments, quotes,
indentation and blank lines carry over byte for byte. What still describes the old month (the subject,
the preheader, any line naming it) is listed for the editor to rewrite.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import re
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from newsletter.errors import NewIssueError
from newsletter.load import Problem

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
MODELINE = "# yaml-language-server: $schema=../schema/draft.schema.json"
"""The first line of a draft: editors using a YAML language server (VS Code's YAML extension) get the
draft format's completions, help and checks from the schema committed beside drafts/."""


@dataclasses.dataclass
class NewIssue:
    path: Path
    source: Path
    removed: list[str]
    """Events (or sessions) left out because they are over by the new send date."""
    rewrite: list[Problem] = dataclasses.field(default_factory=list)
    """What still describes the old month, in line order: the subject, the preheader and every line (comments
    too) naming the old month, each with its line in the new draft and what to do."""
    send_on: dt.date | None = None
    weekend: dt.date | None = None
    """The same day of the new month when it fell on a Saturday or Sunday (send_on is then the Friday before,
    or the Monday after when that Friday is in the month before)."""


def latest(drafts: Path) -> Path:
    found = sorted(p for p in drafts.glob("*.yaml") if MONTH.match(p.stem))
    if not found:
        raise NewIssueError(f"there is no draft in {drafts} to start from (drafts are named like 2025-09.yaml)")
    return found[-1]


def create(drafts: Path, month: str | None = None) -> NewIssue:
    """Write drafts/<month>.yaml from the latest draft; never overwrites."""
    source = latest(drafts)
    if month is None:
        year, number = map(int, source.stem.split("-"))
        month = f"{year + number // 12}-{number % 12 + 1:02d}"
    if not MONTH.match(month):
        raise NewIssueError(f"`{month}` is not a month: write it year-month, like 2025-10")
    target = drafts / f"{month}.yaml"
    if target.exists():
        raise NewIssueError(f"{target} already exists: edit it, or delete it first to start again")

    text = source.read_text(encoding="utf-8")
    tree = YAML(typ="rt").load(text)
    if not isinstance(tree, CommentedMap):
        raise NewIssueError(f"{source} is not laid out as a draft: fix it (newsletter check {source}) and try again")
    old_month = str(tree.get("issue", source.stem))[:7]
    if not MONTH.match(old_month):
        old_month = source.stem
    old_label, new_label = _label(old_month), _label(month)
    same_day = _same_day(tree.get("send_on"), month)
    send_on = _weekday(same_day)

    lines = text.splitlines(keepends=True)
    changed = (
        _set_value(lines, tree, "issue", lambda _: month)
        and _set_value(lines, tree, "send_on", lambda _: send_on.isoformat())
        and _set_value(lines, tree, "status", lambda _: "draft", missing_ok=True)
    )
    for key in ("subject", "preheader"):
        _set_value(lines, tree, key, lambda old: old.replace(old_label, new_label), missing_ok=True)
    cuts, removed = _past_events(tree, send_on)
    spans = [_item_lines(lines, seq, index) for seq, index in cuts]
    if changed and all(span is not None for span in spans):
        gone = {n for span in spans if span for n in span}
        out = "".join(line for n, line in enumerate(lines) if n not in gone)
    else:  # a layout these edits cannot follow (flow-style lists, a value over several lines): re-write it
        out = _redump(text, month, send_on, old_label, new_label, cuts)
    if not out.startswith("# yaml-language-server:"):
        out = MODELINE + "\n" + out
    with target.open("x", encoding="utf-8") as handle:
        handle.write(out)
    rewrite = _to_rewrite(target, out, old_month, new_label)
    return NewIssue(target, source, removed, rewrite, send_on, same_day if same_day != send_on else None)


def _label(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{calendar.month_name[number]} {year}"


def _same_day(previous: object, month: str) -> dt.date:
    """The same day of the month as last time, or the month's last day when it is shorter."""
    before = _as_date(previous)
    day = before.day if before else 15
    year, number = map(int, month.split("-"))
    return dt.date(year, number, min(day, calendar.monthrange(year, number)[1]))


def _weekday(day: dt.date) -> dt.date:
    """A working day: a Saturday or Sunday moves to the Friday before, or to the Monday after when that Friday
    is in the month before (so the issue stays in its month)."""
    if day.weekday() < 5:
        return day
    friday = day - dt.timedelta(days=day.weekday() - 4)
    return friday if friday.month == day.month else day + dt.timedelta(days=7 - day.weekday())


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


# ---------------------------------------------------------------------------------------------------------
# Editing the text in place

_PLAIN_END = re.compile(r"\s+#|\s*$")


def _set_value(lines: list[str], tree: CommentedMap, key: str, change: Any, missing_ok: bool = False) -> bool:
    """Replace the one-line value of a top-level key where it is written, quotes and comment kept.

    False when the value is not on one line (the caller then falls back to a re-write)."""
    if key not in tree:
        return missing_ok
    line, column = tree.lc.value(key)
    text = lines[line]
    body = text.rstrip("\r\n")
    ending = text[len(body) :]
    quote = body[column : column + 1]
    if quote in ("'", '"'):
        end = body.find(quote, column + 1)
        while quote == '"' and end > 0 and body[end - 1] == "\\":
            end = body.find(quote, end + 1)
        if end < 0:
            return False
        start = column + 1
    elif quote in ("|", ">", "[", "{", "&", "*", "!"):
        return False
    else:
        start = column
        end = column + _PLAIN_END.search(body[column:]).start()  # type: ignore[union-attr]
        if line + 1 < len(lines) and _continues(lines[line + 1], body):
            return False
    old = body[start:end]
    lines[line] = body[:start] + change(old) + body[end:] + ending
    return True


def _continues(following: str, line: str) -> bool:
    """Whether the next line carries on a plain value (indented more than its key, and not a key itself)."""
    indent = len(line) - len(line.lstrip(" "))
    stripped = following.strip()
    return bool(stripped) and not stripped.startswith("#") and len(following) - len(following.lstrip(" ")) > indent


def _past_events(tree: CommentedMap, send_on: dt.date) -> tuple[list[tuple[CommentedSeq, int]], list[str]]:
    """What to cut (a list and the index in it) and its names: events over by the send date, past sessions of
    events that go on, and an events section left with no event."""
    cuts: list[tuple[CommentedSeq, int]] = []
    removed: list[str] = []
    sections = tree.get("sections")
    for i, section in enumerate(sections if isinstance(sections, CommentedSeq) else []):
        events = section.get("events") if isinstance(section, dict) else None
        items = events.get("items") if isinstance(events, dict) else None
        if not isinstance(items, CommentedSeq):
            continue
        gone: list[int] = []
        inner: list[tuple[CommentedSeq, int]] = []
        for j, event in enumerate(items):
            sessions = event.get("sessions") if isinstance(event, dict) else None
            if not isinstance(sessions, CommentedSeq) or not sessions:
                continue
            past = [
                k
                for k, s in enumerate(sessions)
                if isinstance(s, dict) and (_as_date(s.get("date")) or send_on) < send_on
            ]
            if len(past) == len(sessions):
                gone.append(j)
                removed.append(str(event.get("title")))
            else:
                inner += [(sessions, k) for k in past]
                removed += [f"{event.get('title')} ({sessions[k].get('date')})" for k in past]
        if items and len(gone) == len(items):
            cuts.append((sections, i))
        else:
            cuts += [(items, j) for j in gone] + inner
    return cuts, removed


def _item_lines(lines: list[str], seq: CommentedSeq, index: int) -> range | None:
    """The lines of one `- ` item of a block list, with the blank lines that separate it from its neighbours
    (after it; before it for the last item), so what is left is laid out as before. None for a flow list."""
    line, column = seq.lc.item(index)
    text = lines[line]
    dash = text.rfind("-", 0, column)
    if dash < 0 or text[:dash].strip() or text[dash + 1 : column].strip():
        return None
    end = line + 1
    last = line
    while end < len(lines):
        following = lines[end]
        stripped = following.strip()
        if stripped:
            if len(following) - len(following.lstrip(" ")) <= dash:
                break
            last = end
        end += 1
    if index < len(seq) - 1:
        return range(line, end)
    start = line
    while start > 0 and not lines[start - 1].strip():
        start -= 1
    return range(start, last + 1)


def _redump(
    text: str, month: str, send_on: dt.date, old_label: str, new_label: str, cuts: list[tuple[CommentedSeq, int]]
) -> str:
    """The round-trip re-write, for layouts the in-place edits cannot follow (comments kept, layout not)."""
    import io

    yaml = YAML(typ="rt")
    yaml.width = 4096  # keep the editor's long lines as they are
    yaml.preserve_quotes = True
    tree = yaml.load(text)
    tree["issue"] = month
    tree["send_on"] = send_on
    if "status" in tree:
        tree["status"] = "draft"
    for key in ("subject", "preheader"):
        if isinstance(tree.get(key), str):
            tree[key] = type(tree[key])(tree[key].replace(old_label, new_label))
    fresh, _ = _past_events(tree, send_on)  # the same cuts, in this tree
    for seq, index in sorted(fresh, key=lambda cut: -cut[1]):
        del seq[index]
    out = io.StringIO()
    yaml.dump(tree, out)
    return out.getvalue()


# ---------------------------------------------------------------------------------------------------------
# What the editor must rewrite


def _to_rewrite(path: Path, text: str, old_month: str, new_label: str) -> list[Problem]:
    year, number = map(int, old_month.split("-"))
    name = calendar.month_name[number]
    naming = re.compile(rf"\b(?:{name}|{calendar.month_abbr[number]}{'t' if number == 9 else ''})\b")
    old_label = f"{name} {year}"
    found: list[Problem] = []
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.lstrip(" ")
        column = len(line) - len(stripped) + 1
        if stripped.startswith("subject:"):
            found.append(
                Problem(
                    path,
                    n,
                    column,
                    f"the subject still describes the {old_label} issue (only its month "
                    f"is moved on): rewrite it for {new_label}",
                    "warning",
                )
            )
        elif stripped.startswith("preheader:"):
            found.append(
                Problem(
                    path,
                    n,
                    column,
                    f"the preheader is the one of {old_label}: write one line about "
                    f"{new_label} for inboxes to show after the subject",
                    "warning",
                )
            )
        elif match := naming.search(line):
            what = "this comment" if stripped.startswith("#") else "this line"
            found.append(
                Problem(
                    path,
                    n,
                    match.start() + 1,
                    f"{what} names {match.group()}, the month of the last "
                    f"issue: rewrite it for {new_label}, or remove it",
                    "warning",
                )
            )
    return found
