"""Erasure (`newsletter forget`) and retention (`newsletter tidy`) on a ledger that real sends filled.

`forget` is judged by searching every table and column of the SQLite file, the raw bytes of the file and
its log, and the unsubscribe spool for the address in any case; the history's counts must not move.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import mailbox
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.daily import Run
from newsletter.endpoint import Spool, spool_folder
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.privacy import EXPIRED, FORGOTTEN, Tidied, forget, held_about, keyed_hash, months_before, tidy
from newsletter.recipients import gather
from newsletter.send import Job, queue_recipients
from newsletter.transport import opener

SECRET = "privacy-secret-for-tests"
READER = "tariq.mahmood@walsall.example.org"  # on recipients/walsall.csv
NEIGHBOUR = "x" + READER  # an address that contains the reader's: must be left alone


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)  # what `send` hashes the lists with: the key `forget` used
    return Settings.model_validate(
        {
            "ledger": tmp_path / "ledger.db",
            "recipients": ROOT / "recipients",
            "transport": {"url": f"outbox:{tmp_path / 'outbox'}"},
            "list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"},
        }
    )


def everyone() -> list[str]:
    from newsletter.recipients import load_authorities

    return [p.email for p in gather(ROOT / "recipients", load_authorities(ROOT / "recipients" / "authorities.yaml"))]


def send(settings: Settings, draft: Path) -> str:
    """One issue to every list, through the outbox, as `newsletter send` does it; returns the issue id."""
    from newsletter.recipients import load_authorities

    members = load_authorities(ROOT / "recipients" / "authorities.yaml")
    issue = load_draft(draft).issue
    with Ledger(settings.ledger) as ledger:
        queue_recipients(ledger, issue, settings, members)
        asyncio.run(
            Job(issue, members, ledger, opener(settings.transport.url, settings.transport), settings, SECRET).run()
        )
    return issue.issue


def outbox(settings: Settings) -> list[str]:
    folder = Path(settings.transport.url.removeprefix("outbox:"))
    return [m["To"].split("<")[-1].rstrip(">").lower() for m in mailbox.Maildir(folder, create=False)]


def everywhere(path: Path, text: str) -> list[str]:
    """Each table.column of the SQLite file holding `text` (any case) in any row (NEIGHBOUR's own rows aside)."""
    found = []
    with sqlite3.connect(path) as db:
        tables = [n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"deliveries", "suppressions", "bounces", "signups", "forgotten"} <= set(tables)
        for table in tables:
            for column in [c[1] for c in db.execute(f'PRAGMA table_info("{table}")')]:
                (count,) = db.execute(
                    f'SELECT count(*) FROM "{table}" '
                    f'WHERE instr(replace(lower(CAST("{column}" AS TEXT)), ?, ""), ?) > 0',
                    (NEIGHBOUR, text.lower()),
                ).fetchone()
                if count:
                    found.append(f"{table}.{column}")
    return found


def history(path: Path, issues: list[str]) -> dict[str, object]:
    """What the reports count, per issue: sent per authority, and every status per authority."""
    with Ledger(path, create=False) as ledger:
        return {i: (ledger.sent_counts(i), ledger.summary(i)) for i in issues}


def run_cli(settings_file: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args, "--config", str(settings_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=settings_file.parent,
    )


def toml(settings: Settings, tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "newsletter.toml"
    path.write_text(
        f'ledger = "{settings.ledger}"\nrecipients = "{settings.recipients}"\n{extra}'
        f'[transport]\nurl = "{settings.transport.url}"\n'
        '[list]\nunsubscribe_url = "https://updates.example.org/unsubscribe"\n',
        encoding="utf-8",
    )
    return path


def test_forget_leaves_the_address_nowhere_and_the_counts_as_they_were(settings: Settings, tmp_path: Path) -> None:
    first = send(settings, DRAFTS[-2])
    second = send(settings, DRAFTS[-1])
    shouted = READER.upper().replace("@WALSALL", "@Walsall")
    with Ledger(settings.ledger) as ledger:
        ledger.bounce(READER, second, "soft", f"452 4.2.2 <{shouted}>: mailbox full", "inbox")
        ledger.suppress(READER, f"unsubscribed by email from {READER}", "inbox")
        ledger.suppress(NEIGHBOUR, "unsubscribed (one-click)", "web")
        with ledger.transaction():
            ledger.db.execute(
                "INSERT INTO signups VALUES (?, 'Tariq Mahmood', 'dudley', 'the wording', 1, 1)", (READER,)
            )
            # A row still waiting (a run stopped at the cap): forget must close it.
            ledger.db.execute(
                "INSERT INTO deliveries (issue, email, name, authority, status, updated) "
                "VALUES ('2099-01', ?, 'Tariq Mahmood', 'walsall', 'pending', 1)",
                (READER,),
            )
    Spool(spool_folder(settings.ledger)).add(shouted, "unsubscribed (one-click)")
    Spool(spool_folder(settings.ledger)).add(NEIGHBOUR, "unsubscribed (one-click)")
    counts = history(settings.ledger, [first, second])
    assert "deliveries.email" in everywhere(settings.ledger, READER)  # it was there to be found

    result = run_cli(toml(settings, tmp_path), "forget", f"  {shouted} ")
    assert result.returncode == 0, result.stderr
    assert f"Erased {READER}" in result.stdout
    assert "Still listed in" in result.stdout and "walsall.csv" in result.stdout and "Walsall Council" in result.stdout

    assert everywhere(settings.ledger, READER) == []
    assert everywhere(settings.ledger, "Tariq Mahmood") == []
    for file in settings.ledger.parent.glob(f"{settings.ledger.name}*"):  # the file, its log: no old copy
        if file.is_file():
            assert READER.encode() not in file.read_bytes().lower().replace(NEIGHBOUR.encode(), b""), file
    spooled = [email for _, email, _ in Spool(spool_folder(settings.ledger)).entries()]
    assert spooled == [NEIGHBOUR]
    assert not any(
        READER in p.read_text().lower().replace(NEIGHBOUR, "") for p in spool_folder(settings.ledger).iterdir()
    )
    # Only what was theirs changed: the neighbour's suppression stands; the counts are the same.
    assert history(settings.ledger, [first, second]) == counts
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression(NEIGHBOUR) == "unsubscribed (one-click)"
        key = keyed_hash(READER, SECRET)
        rows = ledger.db.execute("SELECT issue, name, status FROM deliveries WHERE email = ?", (FORGOTTEN + key,))
        assert sorted(rows) == sorted([("2099-01", "", "failed"), (first, "", "sent"), (second, "", "failed")])
        assert ledger.db.execute("SELECT count(*) FROM forgotten WHERE key = ?", (key,)).fetchone() == (1,)
        assert ledger.suppression(FORGOTTEN + key) is not None  # the opt-out is still counted
        assert held_about(settings, ledger, READER, SECRET)["erased"] is True


def test_a_forgotten_address_back_in_a_list_is_never_sent_and_the_send_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    first = send(settings, DRAFTS[-2])
    with Ledger(settings.ledger) as ledger:
        forget(settings, ledger, READER, SECRET)
    folder = Path(settings.transport.url.removeprefix("outbox:"))
    for key in list(mailbox.Maildir(folder, create=False).keys()):
        mailbox.Maildir(folder, create=False).remove(key)

    # The next issue, with the reader still on Walsall's export (and in another case there).
    lists = tmp_path / "recipients"
    lists.mkdir()
    for source in (ROOT / "recipients").iterdir():
        text = source.read_text(encoding="utf-8-sig")
        (lists / source.name).write_text(text.replace(READER, READER.title()), encoding="utf-8")
    moved = settings.model_copy(update={"recipients": lists})
    from newsletter.recipients import load_authorities

    members = load_authorities(lists / "authorities.yaml")
    issue = load_draft(DRAFTS[-1]).issue
    with Ledger(moved.ledger) as ledger:
        summaries = queue_recipients(ledger, issue, moved, members)
        asyncio.run(Job(issue, members, ledger, opener(moved.transport.url, moved.transport), moved, SECRET).run())
    sent = outbox(moved)
    assert READER not in sent
    assert sorted(sent) == sorted(e for e in everyone() if e != READER)
    (warning,) = [p for p in summaries["walsall"].problems if "erased at their request" in p.message]
    assert warning.message.startswith("1 address(es)") and "Walsall Council" in warning.message
    assert everywhere(moved.ledger, READER) == []
    assert history(moved.ledger, [first])[first][0]["walsall"] == len([e for e in everyone() if "@walsall." in e])


def test_tidy_hashes_rows_older_than_the_retention_period_and_leaves_recent_ones(
    settings: Settings, tmp_path: Path
) -> None:
    old = send(settings, DRAFTS[-2])
    recent = send(settings, DRAFTS[-1])
    aged = time.time() - 26 * 31 * 86400  # over two years ago
    with Ledger(settings.ledger) as ledger, ledger.transaction():
        ledger.db.execute("UPDATE deliveries SET sent_at = ?, updated = ? WHERE issue = ?", (aged, aged, old))
    with Ledger(settings.ledger) as ledger:
        ledger.bounce(READER, old, "hard", f"550 5.1.1 <{READER}>: no such user", "inbox")
        ledger.bounce(NEIGHBOUR, recent, "soft", "452 mailbox full", "inbox")
        with ledger.transaction():
            ledger.db.execute("UPDATE bounces SET received = ? WHERE issue = ?", (aged, old))
    counts = history(settings.ledger, [old, recent])

    result = run_cli(toml(settings, tmp_path, "retention_months = 24\n"), "tidy")
    assert result.returncode == 0, result.stderr
    people = len(everyone())
    assert f"{people:,} delivery row(s) and 1 bounce(s)" in result.stdout

    with Ledger(settings.ledger) as ledger:
        old_rows = list(ledger.db.execute("SELECT email, name, reply FROM deliveries WHERE issue = ?", (old,)))
        recent_rows = list(ledger.db.execute("SELECT email, name FROM deliveries WHERE issue = ?", (recent,)))
        assert len(old_rows) == people and all(e.startswith(EXPIRED) and n == "" for e, n, _ in old_rows)
        assert {e for e, _, _ in old_rows} == {EXPIRED + keyed_hash(a, SECRET) for a in everyone()}
        assert sorted(e for e, _ in recent_rows) == sorted(everyone()) and all(n for _, n in recent_rows)
        bounces = dict(ledger.db.execute("SELECT issue, email FROM bounces"))
        assert bounces == {old: EXPIRED + keyed_hash(READER, SECRET), recent: NEIGHBOUR}
        (reason,) = ledger.db.execute("SELECT reason FROM bounces WHERE issue = ?", (old,)).fetchone()
        assert READER not in reason.lower()
        assert ledger.suppression(READER) is not None  # suppressions are kept: the opt-out must be honoured
    assert history(settings.ledger, [old, recent]) == counts
    # Twice is the same as once.
    again = run_cli(toml(settings, tmp_path, "retention_months = 24\n"), "tidy")
    assert "nothing older than" in again.stdout


def test_daily_runs_retention_and_records_it(settings: Settings, tmp_path: Path) -> None:
    old = send(settings, DRAFTS[-2])
    aged = time.time() - 40 * 31 * 86400
    with Ledger(settings.ledger) as ledger, ledger.transaction():
        ledger.db.execute("UPDATE deliveries SET sent_at = ?, updated = ? WHERE issue = ?", (aged, aged, old))
    (tmp_path / "drafts").mkdir()  # no issue is due: retention still runs
    extra = f'retention_months = 36\ndrafts = "{tmp_path / "drafts"}"\n'
    result = run_cli(toml(settings, tmp_path, extra), "daily")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("Nothing to report: no issue is due")
    assert f"Retention: {len(everyone()):,} delivery row(s)" in result.stdout
    assert everywhere(settings.ledger, READER) == []
    # The run's record: a line in the summary and the team's report when it replaced anything, none otherwise.
    run = Run()
    with Ledger(settings.ledger) as ledger:
        run.tidied = tidy(ledger, SECRET, 36)
    assert run.tidied.total == 0 and len(run.summary()) == 1  # already done by the daily run
    run.tidied = Tidied(aged, deliveries=3, bounces=1)
    assert run.summary()[-1].startswith("Retention: 3 delivery row(s) and 1 bounce(s)")
    assert "RETENTION\n  Retention: 3 delivery row(s)" in run.report("List")[1]


def test_held_about_gathers_everything_for_one_address(settings: Settings) -> None:
    issue = send(settings, DRAFTS[-1])
    with Ledger(settings.ledger) as ledger:
        ledger.bounce(READER, issue, "soft", "452 mailbox full", "inbox")
        held = held_about(settings, ledger, READER.upper(), SECRET)
    assert held["address"] == READER and held["erased"] is False
    assert [d["issue"] for d in held["deliveries"]] == [issue]  # type: ignore[index]
    assert held["deliveries"][0]["name"] == "Tariq Mahmood"  # type: ignore[index]
    assert held["bounces"][0]["kind"] == "soft"  # type: ignore[index]
    assert held["authority_lists"] == [
        {
            "authority": "walsall",
            "authority_name": "Walsall Council",
            "name": "Tariq Mahmood",
            "other_columns": {"role": "Service Manager, Fostering"},
        }
    ]
    json.dumps(held)  # plain data


def test_the_hash_needs_the_secret_and_ignores_case() -> None:
    assert keyed_hash(READER, SECRET) == keyed_hash(READER.upper(), SECRET)
    assert keyed_hash(READER, SECRET) != keyed_hash(READER, SECRET + "x")
    assert keyed_hash(READER, SECRET) != keyed_hash(NEIGHBOUR, SECRET)


@pytest.mark.parametrize(
    ("when", "months", "expected"),
    [
        (dt.datetime(2025, 3, 31, 8, 30), 1, dt.datetime(2025, 2, 28, 8, 30)),
        (dt.datetime(2025, 9, 19), 24, dt.datetime(2023, 9, 19)),
        (dt.datetime(2024, 2, 29), 12, dt.datetime(2023, 2, 28)),
        (dt.datetime(2025, 1, 15), 13, dt.datetime(2023, 12, 15)),
    ],
)
def test_months_before_counts_calendar_months(when: dt.datetime, months: int, expected: dt.datetime) -> None:
    assert months_before(when, months) == expected
