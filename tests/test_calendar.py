""" "Add to calendar" files: every .ics is parsed back with icalendar and checked against zoneinfo."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from icalendar import Calendar

from newsletter.calendar import CalendarEntry, entries, ics, slug
from newsletter.load import load_draft
from newsletter.model import Issue

ROOT = Path(__file__).resolve().parent.parent
DRAFTS = sorted((ROOT / "drafts").glob("*.yaml"))
LONDON = ZoneInfo("Europe/London")
UTC = UTC
BOOKING = {"text": "Book a place", "url": "https://example.org/book"}


def make_issue(*sections: dict, month: str = "2025-09", send_on: str = "2025-09-19") -> Issue:
    return Issue.model_validate(
        {
            "issue": month,
            "subject": "Regional Update test",
            "from": {"name": "West Midlands Regional Team", "email": "regional.update@wmchildrensservices.org.uk"},
            "send_on": send_on,
            "sections": list(sections) or [{"article": {"heading": "Nothing", "body": "Nothing on."}}],
        }
    )


def events(*items: dict, **section: object) -> dict:
    return {"events": {"items": list(items), **section}}


def one(item: dict, **issue: str) -> tuple[CalendarEntry, Calendar]:
    (entry,) = entries(make_issue(events(item), **issue))
    return entry, parse(entry.data)


def parse(data: bytes) -> Calendar:
    calendar = Calendar.from_ical(data)
    calendar.validate()  # icalendar's own check: PRODID, VERSION, a component
    assert calendar.errors == []
    assert len(calendar.events) == 1
    assert calendar.events[0].errors == []
    assert calendar.get_missing_tzids() == set()  # a VTIMEZONE for every TZID used
    return calendar


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


# --- times -----------------------------------------------------------------------------------------


def test_summer_session_is_local_london_time_in_bst():
    entry, calendar = one(
        {"title": "Care Leavers Policy Workshop", "sessions": [{"date": "2025-10-14", "start": "10:00", "end": "12pm"}]}
    )
    event = calendar.events[0]
    assert event.start == datetime(2025, 10, 14, 10, 0, tzinfo=LONDON)
    assert event.end == datetime(2025, 10, 14, 12, 0, tzinfo=LONDON)
    assert event.start.utcoffset() == event.end.utcoffset() == timedelta(hours=1)
    assert event.start.replace(tzinfo=None) == datetime(2025, 10, 14, 10, 0)  # wall time, not shifted
    assert event["DTSTART"].params["TZID"] == event["DTEND"].params["TZID"] == "Europe/London"
    assert b"DTSTART;TZID=Europe/London:20251014T100000\r\n" in entry.data
    assert b"DTEND;TZID=Europe/London:20251014T120000\r\n" in entry.data


def test_winter_session_is_gmt():
    _, calendar = one(
        {
            "title": "Regional Safeguarding Network",
            "sessions": [{"date": "2025-12-03", "start": "2pm", "end": "4.30pm"}],
        }
    )
    event = calendar.events[0]
    assert event.start == datetime(2025, 12, 3, 14, 0, tzinfo=LONDON)
    assert event.end == datetime(2025, 12, 3, 16, 30, tzinfo=LONDON)
    assert event.start.utcoffset() == event.end.utcoffset() == timedelta(0)
    assert utc(event.start) == datetime(2025, 12, 3, 14, 0, tzinfo=UTC)


def test_october_before_and_after_the_clocks_go_back():
    before, after = entries(
        make_issue(
            events(
                {"title": "Before", "sessions": [{"date": "2025-10-25", "start": "09:00", "end": "10:00"}]},
                {"title": "After", "sessions": [{"date": "2025-10-27", "start": "09:00", "end": "10:00"}]},
            )
        )
    )
    assert parse(before.data).events[0].start.utcoffset() == timedelta(hours=1)
    assert utc(parse(before.data).events[0].start) == datetime(2025, 10, 25, 8, 0, tzinfo=UTC)
    assert parse(after.data).events[0].start.utcoffset() == timedelta(0)
    assert utc(parse(after.data).events[0].start) == datetime(2025, 10, 27, 9, 0, tzinfo=UTC)


def test_session_across_the_autumn_change_lasts_three_and_a_half_hours():
    # Clocks go back at 02:00 BST on Sunday 26 October 2025: 00:30 BST to 03:00 GMT.
    entry, calendar = one(
        {"title": "Overnight helpline training", "sessions": [{"date": "2025-10-26", "start": "00:30", "end": "03:00"}]}
    )
    event = calendar.events[0]
    assert event.start == datetime(2025, 10, 26, 0, 30, tzinfo=LONDON)
    assert event.end == datetime(2025, 10, 26, 3, 0, tzinfo=LONDON)
    assert event.start.utcoffset() == timedelta(hours=1)
    assert event.end.utcoffset() == timedelta(0)
    assert utc(event.start) == datetime(2025, 10, 25, 23, 30, tzinfo=UTC)
    assert utc(event.end) == datetime(2025, 10, 26, 3, 0, tzinfo=UTC)
    assert utc(event.end) - utc(event.start) == timedelta(hours=3, minutes=30)
    assert b"DTSTART;TZID=Europe/London:20251026T003000\r\n" in entry.data
    assert b"DTEND;TZID=Europe/London:20251026T030000\r\n" in entry.data


def test_session_across_the_spring_change_lasts_an_hour_and_a_half():
    # Clocks go forward at 01:00 GMT on Sunday 29 March 2026: 00:30 GMT to 03:00 BST.
    _, calendar = one(
        {
            "title": "Overnight helpline training",
            "sessions": [{"date": "2026-03-29", "start": "00:30", "end": "03:00"}],
        },
        month="2026-03",
        send_on="2026-03-06",
    )
    event = calendar.events[0]
    assert event.start == datetime(2026, 3, 29, 0, 30, tzinfo=LONDON)
    assert event.end == datetime(2026, 3, 29, 3, 0, tzinfo=LONDON)
    assert event.start.utcoffset() == timedelta(0)
    assert event.end.utcoffset() == timedelta(hours=1)
    assert utc(event.start) == datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
    assert utc(event.end) == datetime(2026, 3, 29, 2, 0, tzinfo=UTC)
    assert utc(event.end) - utc(event.start) == timedelta(hours=1, minutes=30)


def test_no_end_time_means_one_hour():
    entry, calendar = one({"title": "Drop-in", "sessions": [{"date": "2025-10-15", "start": "09:30"}]})
    event = calendar.events[0]
    assert event.start == datetime(2025, 10, 15, 9, 30, tzinfo=LONDON)
    assert event.end == datetime(2025, 10, 15, 10, 30, tzinfo=LONDON)
    assert b"DTEND;TZID=Europe/London:20251015T103000\r\n" in entry.data


def test_no_end_time_across_the_autumn_change_is_one_real_hour():
    # 01:30 is there twice on 26 October 2025; an editor's 01:30 is the first (BST), as RFC 5545 reads it.
    # An hour later is the second 01:30 (GMT), which a TZID time cannot say: it is written in UTC.
    entry, calendar = one({"title": "Night shift briefing", "sessions": [{"date": "2025-10-26", "start": "01:30"}]})
    event = calendar.events[0]
    assert utc(event.start) == datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    assert utc(event.end) == datetime(2025, 10, 26, 1, 30, tzinfo=UTC)
    assert b"DTEND:20251026T013000Z\r\n" in entry.data


def test_all_day_session_has_dates_and_ends_the_next_day():
    entry, calendar = one(
        {
            "title": "Regional Safeguarding Conference",
            "venue": "Worcestershire County Cricket Club",
            "sessions": [{"date": "2025-11-27"}],
        }
    )
    event = calendar.events[0]
    assert event.start == date(2025, 11, 27) and not isinstance(event.start, datetime)
    assert event.end == date(2025, 11, 28) and not isinstance(event.end, datetime)
    assert b"DTSTART;VALUE=DATE:20251127\r\n" in entry.data
    assert b"DTEND;VALUE=DATE:20251128\r\n" in entry.data
    assert calendar.timezones == []  # no local times, so no VTIMEZONE is needed
    # the last day of a month and of a year roll over too
    _, december = one({"title": "Year end", "sessions": [{"date": "2025-12-31"}]})
    assert december.events[0].end == date(2026, 1, 1)


def test_end_before_start_is_refused():
    with pytest.raises(ValueError, match=r"ends .* before it starts"):
        entries(
            make_issue(events({"title": "Typo", "sessions": [{"date": "2025-10-15", "start": "10:00", "end": "2:00"}]}))
        )


# --- VTIMEZONE ----------------------------------------------------------------------------------------


def test_vtimezone_is_europe_london_and_agrees_with_zoneinfo():
    """Read the VTIMEZONE on its own (not looked up by name) and compare it with zoneinfo every 15 minutes."""
    _, calendar = one({"title": "Workshop", "sessions": [{"date": "2025-10-15", "start": "09:30", "end": "11:00"}]})
    (vtimezone,) = calendar.timezones
    assert vtimezone.tz_name == "Europe/London"
    assert calendar.subcomponents.index(vtimezone) < calendar.subcomponents.index(calendar.events[0])
    from_file = vtimezone.to_tz(lookup_tzid=False)  # dateutil's reading of the component itself
    instant, mismatches = datetime(2025, 1, 1, tzinfo=UTC), []
    while instant < datetime(2027, 1, 1, tzinfo=UTC):
        if instant.astimezone(from_file).utcoffset() != instant.astimezone(LONDON).utcoffset():
            mismatches.append(instant)
        instant += timedelta(minutes=15)
    assert mismatches == []


def test_vtimezone_onsets_are_local_times_before_the_change():
    """RFC 5545 3.6.5: BST starts at 01:00 GMT (last Sunday of March), ends at 02:00 BST (last Sunday of October)."""
    _, calendar = one({"title": "Workshop", "sessions": [{"date": "2025-10-15", "start": "09:30"}]})
    (vtimezone,) = calendar.timezones
    onsets = {
        (o.name, o.TZOFFSETFROM, o.TZOFFSETTO): [o.DTSTART, *(d for d, _ in o.rdates)]
        for o in vtimezone.walk()
        if o.name in ("STANDARD", "DAYLIGHT") and o.TZOFFSETFROM != o.TZOFFSETTO
    }
    assert onsets == {
        ("DAYLIGHT", timedelta(0), timedelta(hours=1)): [datetime(2025, 3, 30, 1, 0), datetime(2026, 3, 29, 1, 0)],
        ("STANDARD", timedelta(hours=1), timedelta(0)): [datetime(2025, 10, 26, 2, 0), datetime(2026, 10, 25, 2, 0)],
    }
    # and each is the instant zoneinfo changes the offset, read with TZOFFSETFROM
    for (_, before, after), times in onsets.items():
        for onset in times:
            change = (onset - before).replace(tzinfo=UTC)
            assert (change - timedelta(seconds=1)).astimezone(LONDON).utcoffset() == before
            assert change.astimezone(LONDON).utcoffset() == after


def test_vtimezone_covers_the_year_of_the_session():
    _, calendar = one(
        {"title": "Next year", "sessions": [{"date": "2026-06-10", "start": "10:00"}]},
        month="2026-05",
        send_on="2026-05-15",
    )
    (vtimezone,) = calendar.timezones
    tz = vtimezone.to_tz(lookup_tzid=False)
    for moment in (
        datetime(2026, 6, 10, 9, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
        datetime(2027, 7, 1, tzinfo=UTC),
    ):
        assert moment.astimezone(tz).utcoffset() == moment.astimezone(LONDON).utcoffset()


# --- the calendar and its properties ------------------------------------------------------------------


def test_calendar_properties():
    entry, calendar = one(
        {
            "title": "PWLE Seminar: Child contact problems and the Family Court",
            "cost": "free",
            "sessions": [{"date": "2025-10-15", "start": "09:30", "end": "11:00", "online": "Microsoft Teams"}],
            "booking": BOOKING,
            "about": "Hello.",
        }
    )
    assert calendar["PRODID"] == "-//West Midlands Regional Update//newsletter//EN"
    assert calendar["VERSION"] == "2.0"
    assert calendar["METHOD"] == "PUBLISH"
    assert calendar["CALSCALE"] == "GREGORIAN"
    event = calendar.events[0]
    assert event["SUMMARY"] == "PWLE Seminar: Child contact problems and the Family Court"
    assert datetime(2025, 9, 19, 0, 0, tzinfo=UTC) == event.DTSTAMP  # from send_on: reproducible
    assert b"DTSTAMP:20250919T000000Z\r\n" in entry.data
    assert event["UID"] == "2025-09-pwle-seminar-child-contact-problems-2025-10-15@wmchildrensservices.org.uk"
    assert entry.filename == "2025-09-pwle-seminar-child-contact-problems-2025-10-15.ics"


def test_online_session_has_platform_as_location_and_booking_link():
    _, calendar = one(
        {
            "title": "PWLE Seminar",
            "booking": BOOKING,
            "sessions": [{"date": "2025-10-15", "start": "09:30", "end": "11:00", "online": "Microsoft Teams"}],
        }
    )
    event = calendar.events[0]
    assert event["LOCATION"] == "Microsoft Teams"
    assert event["URL"] == "https://example.org/book"
    assert "Book a place: https://example.org/book" in event["DESCRIPTION"].splitlines()


def test_event_level_online_platform_is_used_for_its_sessions():
    _, calendar = one({"title": "Webinar", "online": "Zoom", "sessions": [{"date": "2025-10-15", "start": "11:00"}]})
    assert calendar.events[0]["LOCATION"] == "Zoom"


def test_venue_is_the_location_and_a_session_venue_beats_the_event_venue():
    first, second = entries(
        make_issue(
            events(
                {
                    "title": "Roadshow",
                    "venue": "Bescot Stadium",
                    "sessions": [
                        {"date": "2025-10-01", "start": "10:00"},
                        {"date": "2025-10-08", "start": "10:00", "venue": "The Studio, Birmingham"},
                    ],
                }
            )
        )
    )
    assert parse(first.data).events[0]["LOCATION"] == "Bescot Stadium"
    assert parse(second.data).events[0]["LOCATION"] == "The Studio, Birmingham"


def test_hybrid_session_has_venue_as_location_and_the_platform_in_the_description():
    _, calendar = one(
        {
            "title": "Hybrid",
            "sessions": [{"date": "2025-10-15", "start": "10:00", "venue": "The Studio", "online": "Microsoft Teams"}],
        }
    )
    event = calendar.events[0]
    assert event["LOCATION"] == "The Studio"
    assert "Also online: Microsoft Teams" in event["DESCRIPTION"].splitlines()


def test_description_is_plain_text_with_booking_links():
    _, calendar = one(
        {
            "title": "Workshop",
            "register_by": "2025-09-26",
            "booking": {"text": "Book the workshop", "url": "https://example.org/workshop"},
            "sessions": [
                {
                    "date": "2025-10-14",
                    "start": "10:00",
                    "end": "12:00",
                    "online": "Microsoft Teams",
                    "booking": {"text": "Sign up for 14 October", "url": "https://example.org/14-october"},
                }
            ],
            "about": "A **bold** start and *some* emphasis.\n\n"
            "- Hear the [emerging findings](https://example.org/findings)\n- Work with facilitators\n",
        }
    )
    event = calendar.events[0]
    description = event["DESCRIPTION"]
    assert "**" not in description and "*some*" not in description and "](" not in description
    assert description.startswith("A bold start and some emphasis.")
    # a link is its words and a number, its address listed after the text: no URL inside a sentence
    assert "• Hear the emerging findings [1]" in description.splitlines()
    assert "[1] https://example.org/findings" in description.splitlines()
    assert "• Work with facilitators" in description.splitlines()
    lines = description.splitlines()
    assert "Sign up for 14 October: https://example.org/14-october" in lines
    assert "Book the workshop: https://example.org/workshop" in lines
    assert "Register by: Friday 26 September 2025" in lines
    assert event["URL"] == "https://example.org/14-october"  # the session's own link first


def test_no_booking_link_means_no_url():
    _, calendar = one({"title": "Conference", "sessions": [{"date": "2025-11-27"}]})
    assert "URL" not in calendar.events[0]
    assert "DESCRIPTION" not in calendar.events[0]  # nothing to say beyond the title


def test_lines_are_crlf_and_folded_at_75_octets():
    entry, calendar = one(
        {
            "title": "Recognising Autism in Children and Young People – Practitioner Perspective "
            "with a very long title",
            "venue": "Children’s Centre, Wolverhampton — the café upstairs",
            "booking": {"text": "Book", "url": "https://example.org/" + "a" * 150},
            "about": "Naïve café résumé — “quotes” and ‘apostrophes’ in a paragraph that is far longer than "
            "seventy-five octets so that icalendar has to fold it, possibly in the middle of a character. " * 3,
            "sessions": [{"date": "2025-10-15", "start": "09:30", "end": "11:00"}],
        }
    )
    assert entry.data.endswith(b"\r\n")
    assert b"\n" not in entry.data.replace(b"\r\n", b"")
    lines = entry.data.split(b"\r\n")[:-1]
    assert max(len(line) for line in lines) <= 75
    assert any(line.startswith(b" ") for line in lines)  # something was folded
    for line in lines:
        line.decode("utf-8")  # folding never splits a character
    assert calendar.events[0]["LOCATION"] == "Children’s Centre, Wolverhampton — the café upstairs"
    assert calendar.events[0]["URL"] == "https://example.org/" + "a" * 150


# --- names and UIDs -----------------------------------------------------------------------------------


def test_slug():
    assert slug("PWLE Seminar: Child contact problems and the Family Court") == "pwle-seminar-child-contact-problems"
    assert slug("Children’s Services & Café — Ofsted") == "childrens-services-and-cafe-ofsted"
    assert slug("Supercalifragilisticexpialidocious" * 3) == ("supercalifragilisticexpialidocious" * 3)[:40]
    assert slug("★ ☆") == "event"
    assert len(slug("Webinar on Parenting disabled children and young people and those with SEN")) <= 40


def test_two_sessions_of_one_event_on_one_day_get_their_start_times():
    issue = make_issue(
        events(
            {
                "title": "Webinar",
                "sessions": [
                    {"date": "2025-10-06", "start": "11:00", "end": "12:30"},
                    {"date": "2025-10-06", "start": "14:00", "end": "15:30"},
                    {"date": "2025-10-14", "start": "10:30", "end": "12:00"},
                ],
            }
        )
    )
    assert [e.filename for e in entries(issue)] == [
        "2025-09-webinar-2025-10-06-1100.ics",
        "2025-09-webinar-2025-10-06-1400.ics",
        "2025-09-webinar-2025-10-14.ics",
    ]


def test_same_day_sessions_without_distinct_times_are_numbered():
    issue = make_issue(
        events(
            {
                "title": "Open day",
                "sessions": [{"date": "2025-10-06", "venue": "Walsall"}, {"date": "2025-10-06", "venue": "Dudley"}],
            },
            {"title": "Open day!", "sessions": [{"date": "2025-10-06", "venue": "Sandwell"}]},
        )
    )
    names = [e.filename for e in entries(issue)]
    assert names == [
        "2025-09-open-day-2025-10-06-1.ics",
        "2025-09-open-day-2025-10-06-2.ics",
        "2025-09-open-day-2025-10-06-3.ics",
    ]


def test_filenames_and_uids_are_unique_url_safe_and_stable():
    issue = make_issue(
        events(
            {
                "title": "Café & Co: “Quotes” / slashes?",
                "sessions": [{"date": "2025-10-06", "start": "9am"}, {"date": "2025-10-06", "start": "2pm"}],
            },
            {"title": "Café & Co: Quotes slashes", "sessions": [{"date": "2025-10-06", "start": "9am"}]},
        ),
        events({"title": "Another", "sessions": [{"date": "2025-10-07"}]}, audience=["walsall"]),
    )
    first, second = entries(issue), entries(issue)
    names = [e.filename for e in first]
    assert len(set(names)) == len(names) == 4
    assert all(re.fullmatch(r"[a-z0-9.-]+", name) and name.endswith(".ics") for name in names)
    uids = [str(parse(e.data).events[0]["UID"]) for e in first]
    assert len(set(uids)) == 4
    assert all(uid.startswith("2025-09-") and uid.endswith("@wmchildrensservices.org.uk") for uid in uids)
    assert [e.data for e in first] == [e.data for e in second]  # byte for byte: UID, DTSTAMP, VTIMEZONE
    assert [str(parse(e.data).events[0]["UID"]) for e in second] == uids


def test_entries_cover_every_events_section_whatever_the_audience():
    issue = make_issue(
        {"article": {"heading": "News", "body": "Text."}},
        events(
            {"title": "A", "sessions": [{"date": "2025-10-01"}, {"date": "2025-10-02"}]}, {"title": "To be confirmed"}
        ),
        events({"title": "B", "sessions": [{"date": "2025-10-03", "start": "10:00"}]}, audience=["walsall", "dudley"]),
    )
    found = entries(issue)
    assert [(e.event.title, e.session.date) for e in found] == [
        ("A", date(2025, 10, 1)),
        ("A", date(2025, 10, 2)),
        ("B", date(2025, 10, 3)),
    ]
    assert all(isinstance(e, CalendarEntry) for e in found)


def test_ics_gives_the_same_file_as_entries():
    issue = make_issue(
        events(
            {
                "title": "Twice",
                "sessions": [{"date": "2025-10-06", "start": "11:00"}, {"date": "2025-10-06", "start": "14:00"}],
            }
        )
    )
    for entry in entries(issue):
        assert ics(issue, entry.event, entry.session) == entry.data
    other = make_issue(events({"title": "Elsewhere", "sessions": [{"date": "2025-12-01"}]}))
    stranger = other.sections[0].items[0]
    with pytest.raises(ValueError, match="not in issue"):
        ics(issue, stranger, stranger.sessions[0])


def test_an_issue_without_events_has_no_entries():
    assert entries(make_issue()) == []


# --- the real drafts ----------------------------------------------------------------------------------


def _sessions_in_yaml(tree) -> int:
    """Sessions counted in the YAML itself, not through the model."""
    return sum(
        len(item.get("sessions") or [])
        for section in tree["sections"]
        if "events" in section
        for item in section["events"]["items"]
    )


@pytest.mark.parametrize("path", DRAFTS, ids=[p.stem for p in DRAFTS])
def test_real_drafts(path: Path):
    draft = load_draft(path)
    found = entries(draft.issue)
    assert len(found) == _sessions_in_yaml(draft.tree)
    assert len(found) == {"2023-11": 0, "2025-07": 2, "2025-09": 6}.get(path.stem, len(found))
    assert len({e.filename for e in found}) == len(found)
    for entry in found:
        assert re.fullmatch(r"[a-z0-9.-]+\.ics", entry.filename)
        assert entry.filename.startswith(f"{draft.issue.issue}-")
        calendar = parse(entry.data)
        event = calendar.events[0]
        assert event["SUMMARY"] == entry.event.title
        if entry.session.start:
            assert event.start == datetime.combine(entry.session.date, entry.session.start, tzinfo=LONDON)
            assert [tz.tz_name for tz in calendar.timezones] == ["Europe/London"]
        else:
            assert event.start == entry.session.date
            assert event.end == entry.session.date + timedelta(days=1)
        assert max(len(line) for line in entry.data.split(b"\r\n")) <= 75


def test_september_draft_online_seminar():
    found = {e.filename: e for e in entries(load_draft(ROOT / "drafts" / "2025-09.yaml").issue)}
    seminar = parse(found["2025-09-pwle-seminar-child-contact-problems-2025-10-15.ics"].data).events[0]
    assert seminar["LOCATION"] == "Microsoft Teams"
    assert seminar["URL"] == "https://example.org/lost-link/pwle-seminar-child-contact-family-court"
    assert utc(seminar.start) == datetime(2025, 10, 15, 8, 30, tzinfo=UTC)
    assert utc(seminar.end) == datetime(2025, 10, 15, 10, 0, tzinfo=UTC)
    webinars = sorted(name for name in found if "webinar-on-parenting" in name)
    assert len(webinars) == 2
    assert parse(found[webinars[0]].data).events[0]["URL"].endswith("parenting-send-webinar-6-october")


def test_a_sessions_note_is_in_its_description_only():
    first, second = entries(
        make_issue(
            events(
                {
                    "title": "Two-part course",
                    "about": "A course in two parts.",
                    "sessions": [
                        {"date": "2025-10-01", "start": "09:30", "end": "12:30", "note": "includes a ten-minute break"},
                        {"date": "2025-10-08", "start": "09:30", "end": "11:00"},
                    ],
                }
            )
        )
    )
    described = parse(first.data).events[0]["DESCRIPTION"]
    assert described.startswith("A course in two parts.")
    assert "includes a ten-minute break" in described.splitlines()
    assert "ten-minute" not in parse(second.data).events[0]["DESCRIPTION"]


def test_a_special_issue_names_its_files_by_its_id():
    issue = make_issue(
        events({"title": "Farewell lunch", "sessions": [{"date": "2025-04-25", "start": "12:30"}]}),
        month="2025-04-farewell",
        send_on="2025-04-11",
    )
    (entry,) = entries(issue)
    assert entry.filename == "2025-04-farewell-farewell-lunch-2025-04-25.ics"
    assert (
        str(parse(entry.data).events[0]["UID"])
        == "2025-04-farewell-farewell-lunch-2025-04-25@wmchildrensservices.org.uk"
    )
