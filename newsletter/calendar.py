""" "Add to calendar" files: one iCalendar (.ics) file per session of every event in an issue.

Each file is a VCALENDAR with one VEVENT, made with the `icalendar` library (never hand-written), so
escaping, CRLF line endings and folding at 75 octets are the library's. Files are reproducible: the UID
comes from the issue month and the file name, DTSTAMP from the issue's send_on day, so rendering the
same draft twice gives the same bytes.

Times are wall-clock times in Europe/London as editors write them. A timed session gets
DTSTART/DTEND with TZID=Europe/London and the VTIMEZONE that icalendar derives from zoneinfo
(`Calendar.add_missing_timezones`, with its spring onsets corrected: see `_correct_onsets`); a
session with no time is an all-day entry (DTSTART;VALUE=DATE, DTEND the next day).

The PRODID names the list (`[list] name`) and the UIDs end in its domain (`[list] domain`), both from
newsletter.toml: each network's calendar entries are its own.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from collections import defaultdict
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from icalendar import Calendar, Timezone, TimezoneDaylight, TimezoneStandard
from icalendar import Event as VEvent

from newsletter.config import Settings
from newsletter.markdown import to_text
from newsletter.model import Event, Events, Issue, Link, Session

LONDON = ZoneInfo("Europe/London")
DEFAULT_LENGTH = dt.timedelta(hours=1)
"""How long a session with a start but no end time is taken to last (elapsed time)."""
SLUG_LENGTH = 40
"""Longest slug of an event title in a file name; cut at a word, never mid-word unless one word is longer."""
_TRAILING_WORDS = {"a", "an", "and", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with"}
_DESCRIPTION_WIDTH = 10_000
"""Paragraphs stay on one line in DESCRIPTION: calendar apps wrap text themselves."""


@dataclass(frozen=True)
class CalendarEntry:
    filename: str
    """Stable, URL-safe ([a-z0-9.-]) and unique within the issue, like
    `2025-09-pwle-seminar-child-contact-problems-2025-10-15.ics`."""
    event: Event
    session: Session
    data: bytes
    """The .ics file."""


def entries(issue: Issue, settings: Settings | None = None) -> list[CalendarEntry]:
    """One entry per session of every event in every events section of the issue (all audiences).

    `settings` names the list in PRODID and gives the UIDs' domain (None: the shipped defaults).
    """
    settings = settings or Settings()
    return [
        CalendarEntry(name, event, session, _ics(issue, event, session, name, settings))
        for name, event, session in _named(issue)
    ]


def filenames(issue: Issue) -> list[tuple[str, Session]]:
    """Each session's file name, without making the files: what the email links to."""
    return [(name, session) for name, _, session in _named(issue)]


def ics(issue: Issue, event: Event, session: Session, settings: Settings | None = None) -> bytes:
    """The .ics file of one session of an event of this issue."""
    return _ics(issue, event, session, _filename_of(issue, event, session), settings or Settings())


def prodid(settings: Settings) -> str:
    """`-//West Midlands Regional Update//newsletter//EN`: the list's name, as a calendar app shows the source."""
    name = " ".join(settings.list.name.replace("//", "/").split())
    return f"-//{name}//newsletter//EN"


def slug(title: str, length: int = SLUG_LENGTH) -> str:
    """`PWLE Seminar: Child contact problems and the Family Court` -> `pwle-seminar-child-contact-problems`."""
    ascii_text = unicodedata.normalize("NFKD", title.replace("&", " and ")).encode("ascii", "ignore").decode()
    words = re.findall(r"[a-z0-9]+", ascii_text.lower().replace("'", ""))
    kept: list[str] = []
    for word in words:
        if len("-".join([*kept, word])) > length:
            break
        kept.append(word)
    if not kept:
        return words[0][:length] if words else "event"
    if len(kept) < len(words):  # cut short: do not end on "and", "the", "of" ...
        while len(kept) > 1 and kept[-1] in _TRAILING_WORDS:
            kept.pop()
    return "-".join(kept)


def _sessions(issue: Issue) -> list[tuple[Event, Session]]:
    return [
        (event, session)
        for section in issue.sections
        if isinstance(section, Events)
        for event in section.items
        for session in event.sessions
    ]


def _named(issue: Issue) -> list[tuple[str, Event, Session]]:
    """Every session with its file name (without .ics until the end), unique within the issue.

    The name is issue month, title slug and session date; sessions that would share a name (one event
    twice on one day) get their start time, or, when that does not tell them apart, their position.
    """
    pairs = _sessions(issue)
    names = [f"{issue.issue}-{slug(event.title)}-{session.date.isoformat()}" for event, session in pairs]
    groups: dict[str, list[int]] = defaultdict(list)
    for i, name in enumerate(names):
        groups[name].append(i)
    for name, members in groups.items():
        if len(members) == 1:
            continue
        times = [start.strftime("%H%M") if (start := pairs[i][1].start) else "all-day" for i in members]
        suffixes = times if len(set(times)) == len(times) else [str(n) for n in range(1, len(members) + 1)]
        for i, suffix in zip(members, suffixes, strict=True):
            names[i] = f"{name}-{suffix}"
    seen: set[str] = set()
    for i, name in enumerate(names):  # a belt-and-braces pass: never hand out one name twice
        candidate, n = name, 2
        while candidate in seen:
            candidate, n = f"{name}-{n}", n + 1
        seen.add(candidate)
        names[i] = candidate
    return [(f"{name}.ics", event, session) for name, (event, session) in zip(names, pairs, strict=True)]


def _filename_of(issue: Issue, event: Event, session: Session) -> str:
    named = _named(issue)
    for match in (lambda e, s: e is event and s is session, lambda e, s: e == event and s == session):
        for name, e, s in named:
            if match(e, s):
                return name
    raise ValueError(f"the session on {session.date} of {event.title!r} is not in issue {issue.issue}")


def _times(event: Event, session: Session) -> tuple[dt.date | dt.datetime, dt.date | dt.datetime]:
    """Start and end: aware Europe/London datetimes, or dates for an all-day entry."""
    if session.start is None:
        return session.date, session.date + dt.timedelta(days=1)
    start = dt.datetime.combine(session.date, session.start, tzinfo=LONDON)
    if session.end is not None:
        end = dt.datetime.combine(session.date, session.end, tzinfo=LONDON)
    else:
        # One hour of elapsed time: arithmetic on aware datetimes with one tzinfo is wall-clock time.
        end = (start.astimezone(dt.UTC) + DEFAULT_LENGTH).astimezone(LONDON)
        if end.replace(fold=0).utcoffset() != end.utcoffset():
            # The second 01:xx of the October change: TZID local time cannot say which one, so UTC.
            end = end.astimezone(dt.UTC)
    if end.astimezone(dt.UTC) <= start.astimezone(dt.UTC):
        raise ValueError(
            f"{event.title!r} on {session.date}: the session ends ({session.end:%H:%M}) "
            f"before it starts ({session.start:%H:%M})"
        )
    return start, end


def _description(event: Event, session: Session, venue: str | None, online: str | None) -> str | None:
    parts: list[str] = []
    if event.about:
        parts.append(to_text(event.about, width=_DESCRIPTION_WIDTH))
    details: list[str] = []
    if session.note:
        details.append(session.note)
    if venue and online:
        details.append(f"Also online: {online}")
    if event.register_by:
        day = event.register_by
        details.append(f"Register by: {day:%A} {day.day} {day:%B %Y}")
    links: list[Link] = [link for link in (session.booking, event.booking, *event.links) if link is not None]
    urls: set[str] = set()
    for link in links:
        if link.url not in urls:
            urls.add(link.url)
            details.append(f"{link.text}: {link.url}")
    if details:
        parts.append("\n".join(details))
    return "\n\n".join(parts) or None


def _correct_onsets(vtimezone: Timezone, zone: ZoneInfo) -> None:
    """Put each change of offset in a VTIMEZONE at the instant zoneinfo has it.

    RFC 5545 (3.6.5) gives an observance's onset (DTSTART, RDATE) as the local time *before* the change,
    read with TZOFFSETFROM: in London, 01:00 on the last Sunday of March and 02:00 on the last Sunday
    of October. icalendar 7.3's `Timezone.from_tzinfo` steps through zoneinfo in wall-clock time and
    writes the spring change as 02:00, which a calendar that reads the VTIMEZONE takes as 02:00 UTC,
    an hour late. Each onset is set here from the instant the offset really changes, found in UTC;
    where icalendar is already right this changes nothing.
    """
    observances: list[TimezoneStandard | TimezoneDaylight] = [*vtimezone.standard, *vtimezone.daylight]
    for observance in observances:
        before, after = observance.TZOFFSETFROM, observance.TZOFFSETTO
        if before == after:
            continue  # the observance in force at the start of the range, not a change
        onsets = [observance.DTSTART, *(onset for onset, _ in observance.rdates)]
        true = [_change(zone, onset, before, after) for onset in onsets]
        if true != onsets:
            observance.DTSTART = true[0]
            observance.rdates = true[1:]


def _change(zone: ZoneInfo, onset: dt.datetime, before: dt.timedelta, after: dt.timedelta) -> dt.datetime:
    """The local time, read with the offset `before`, at which `zone` goes from `before` to `after`
    within three hours either side of `onset`; `onset` itself if there is no such change."""
    utc = (onset - before).replace(tzinfo=dt.UTC)
    step = dt.timedelta(minutes=1)
    instant = utc - dt.timedelta(hours=3)
    while instant <= utc + dt.timedelta(hours=3):
        if instant.astimezone(zone).utcoffset() == after and (instant - step).astimezone(zone).utcoffset() == before:
            return (instant + before).replace(tzinfo=None)
        instant += step
    return onset


def _ics(issue: Issue, event: Event, session: Session, filename: str, settings: Settings) -> bytes:
    start, end = _times(event, session)
    # A session's own place replaces the event's; the event's applies when the session names none.
    venue, online = (session.venue, session.online) if session.venue or session.online else (event.venue, event.online)
    booking = session.booking or event.booking
    vevent = VEvent.new(
        uid=f"{filename.removesuffix('.ics')}@{settings.list.domain}",
        stamp=dt.datetime.combine(issue.send_on, dt.time(0), tzinfo=dt.UTC),
        summary=event.title,
        description=_description(event, session, venue, online),
        location=venue or online,
        url=booking.url if booking else None,
        start=start,
        end=end,
    )
    calendar = Calendar()
    calendar.prodid = prodid(settings)
    calendar.version = "2.0"
    calendar.calscale = "GREGORIAN"
    calendar.method = "PUBLISH"
    calendar.add_component(vevent)
    if isinstance(start, dt.datetime):
        # VTIMEZONE for every TZID used (Europe/London), from zoneinfo, covering the session's year and
        # the next: the transitions a reader's calendar needs, without sixty years of RDATEs.
        year = session.date.year
        calendar.add_missing_timezones(first_date=dt.date(year, 1, 1), last_date=dt.date(year + 2, 1, 1))
        for vtimezone in calendar.timezones:
            _correct_onsets(vtimezone, ZoneInfo(vtimezone.tz_name))
    calendar.validate()
    ical: bytes = calendar.to_ical()
    return ical
