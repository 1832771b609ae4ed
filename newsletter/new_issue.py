"""Next month's draft from the latest one: metadata rolled forward, past events taken out.

The YAML is edited as a round-trip tree, so the editor's comments, order and layout carry over.
"""

from __future__ import annotations

import calendar
import dataclasses
import datetime as dt
import re
from pathlib import Path

from ruamel.yaml import YAML

from newsletter.errors import NewIssueError

MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclasses.dataclass
class NewIssue:
    path: Path
    source: Path
    removed: list[str]
    """Events (or sessions) left out because they are over by the new send date."""


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

    yaml = YAML(typ="rt")
    yaml.width = 4096  # keep the editor's long lines as they are
    yaml.preserve_quotes = True
    tree = yaml.load(source.read_text(encoding="utf-8"))
    old_label, new_label = _label(str(tree["issue"])), _label(month)
    send_on = _same_day(tree["send_on"], month)
    tree["issue"] = month
    tree["status"] = "draft"
    tree["send_on"] = send_on
    for key in ("subject", "preheader"):
        if isinstance(tree.get(key), str):
            tree[key] = type(tree[key])(tree[key].replace(old_label, new_label))
    removed = _drop_past_events(tree, send_on)
    with target.open("x", encoding="utf-8") as handle:
        yaml.dump(tree, handle)
    return NewIssue(target, source, removed)


def _label(month: str) -> str:
    year, number = map(int, month.split("-"))
    return f"{calendar.month_name[number]} {year}"


def _same_day(previous: object, month: str) -> dt.date:
    """The same day of the month as last time, or the month's last day when it is shorter."""
    day = previous.day if isinstance(previous, dt.date) else 15
    year, number = map(int, month.split("-"))
    return dt.date(year, number, min(day, calendar.monthrange(year, number)[1]))


def _as_date(value: object) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        return None


def _drop_past_events(tree: dict, send_on: dt.date) -> list[str]:
    removed: list[str] = []
    sections = tree.get("sections") or []
    for section in list(sections):
        events = section.get("events") if isinstance(section, dict) else None
        if not isinstance(events, dict):
            continue
        items = events.get("items") or []
        for event in list(items):
            sessions = event.get("sessions") or []
            past = [s for s in sessions if (_as_date(s.get("date")) or send_on) < send_on]
            if sessions and len(past) == len(sessions):
                items.remove(event)
                removed.append(str(event.get("title")))
            else:
                for session in past:
                    sessions.remove(session)
                    removed.append(f"{event.get('title')} ({session.get('date')})")
        if not items:
            sections.remove(section)
    return removed
