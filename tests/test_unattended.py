"""The mailing job left to cron: it sends only the current issue, fails fast and loudly, honours unsubscribes
that arrive mid-run, and never trusts a ledger it cannot read. Real subprocesses, a real SMTP server."""

from __future__ import annotations

import asyncio
import datetime as dt
import mailbox
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.errors import JobError, LedgerError
from newsletter.ledger import Ledger, Row
from newsletter.load import load_draft
from newsletter.recipients import load_authorities
from newsletter.send import Job, Outcome, exclusive, queue_recipients
from newsletter.transport import opener
from smtp_server import Handler, Logins, Server
from test_send_cli import SEPTEMBER, config, everyone, run

TODAY = dt.date.today()


def draft_for(folder: Path, month: str, send_on: dt.date, status: str = "approved") -> Path:
    """The September 2025 issue moved to another month and send date."""
    text = Path(SEPTEMBER).read_text(encoding="utf-8")
    text = text.replace("issue: 2025-09", f"issue: {month}").replace("send_on: 2025-09-19", f"send_on: {send_on}")
    path = folder / f"{month}.yaml"
    path.write_text(text.replace("status: approved", f"status: {status}"), encoding="utf-8")
    return path


def outbox_messages(outbox: Path) -> list[mailbox.MaildirMessage]:
    return list(mailbox.Maildir(outbox, create=True)) if outbox.exists() else []


def assert_one_clear_line(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout
    assert result.stderr.strip(), "a failure must say why"


# -- 1. `send --due` sends only the current issue, once ---------------------------------------------------------


def test_due_on_a_fresh_ledger_with_last_years_approved_drafts_sends_nothing(tmp_path: Path) -> None:
    """Found: right after `make run`, `send --due` mailed November 2023 and July 2025 to everyone."""
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    for path in DRAFTS:
        shutil.copy(path, drafts)
    outbox = tmp_path / "outbox"
    result = run("send", "--due", "--config", str(config(tmp_path, f"outbox:{outbox}")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert outbox_messages(outbox) == []
    for path in DRAFTS:
        issue = load_draft(path).issue
        days = (TODAY - issue.send_on).days
        assert f"Issue {issue.issue}: not sent: its send date was {days} days ago" in result.stdout
    assert "send it by name if you mean it" in result.stdout
    assert f"No send history at {tmp_path / 'ledger.db'}: starting one." in result.stderr


def test_due_sends_the_current_issue_once_and_names_the_old_ones(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    shutil.copy(SEPTEMBER, drafts)
    month = f"{TODAY:%Y-%m}"
    draft_for(drafts, month, TODAY - dt.timedelta(days=2))
    outbox = tmp_path / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    first = run("send", "--due", "--config", str(settings), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    sent = outbox_messages(outbox)
    assert len(sent) == len(everyone())
    assert {m["List-Id"] for m in sent} and all(f"{month}." in m["Message-ID"] for m in sent)
    assert "Issue 2025-09: not sent: its send date was" in first.stdout
    again = run("send", "--due", "--config", str(settings), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(outbox_messages(outbox)) == len(sent)
    assert "No send history" not in again.stderr


def test_due_never_sends_an_issue_older_than_one_already_started(tmp_path: Path) -> None:
    """An October draft found after November went out is skipped and named; naming it still sends it."""
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    newer = draft_for(tmp_path, "2999-12", TODAY - dt.timedelta(days=1))  # kept outside drafts/: already sent
    older = draft_for(drafts, "2999-11", TODAY - dt.timedelta(days=1))
    outbox = tmp_path / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    marked = run("send", str(newer), "--mark-sent", "--config", str(settings), cwd=tmp_path)
    assert marked.returncode == 0, marked.stderr
    assert f"{len(everyone())} reader(s) recorded as having it already; nothing was sent" in marked.stdout
    result = run("send", "--due", "--config", str(settings), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert outbox_messages(outbox) == []
    assert "Issue 2999-11: not sent: issue 2999-12 has already gone out and this one is older" in result.stdout
    by_name = run("send", str(older), "--config", str(settings), cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr
    assert len(outbox_messages(outbox)) == len(everyone())


def test_an_issue_stopped_part_way_stays_due_past_the_window_so_nobody_is_skipped(tmp_path: Path) -> None:
    """A run stopped at the daily cap (or killed) and picked up after due_within_days still finishes."""
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    draft_for(drafts, "2999-05", TODAY - dt.timedelta(days=30))
    with Ledger(tmp_path / "ledger.db") as ledger:  # what a run that stopped part-way left behind
        ledger.enqueue("2999-05", [Row(e, "", "walsall") for e in everyone()[:3]])
    outbox = tmp_path / "outbox"
    result = run("send", "--due", "--config", str(config(tmp_path, f"outbox:{outbox}")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "not sent" not in result.stdout
    assert len(outbox_messages(outbox)) == len(everyone())


def test_of_two_due_issues_only_the_newest_goes(tmp_path: Path) -> None:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    draft_for(drafts, "2999-01", TODAY - dt.timedelta(days=3))
    draft_for(drafts, "2999-02", TODAY)
    draft_for(drafts, "2999-03", TODAY, status="draft")
    outbox = tmp_path / "outbox"
    result = run("send", "--due", "--config", str(config(tmp_path, f"outbox:{outbox}")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert {m["Message-ID"].split(".")[0] for m in outbox_messages(outbox)} == {"<2999-02"}
    assert "Issue 2999-01: not sent: issue 2999-02 is due too and is newer" in result.stdout


def test_mark_sent_records_without_sending_and_leaves_the_daily_cap_alone(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    result = run("send", SEPTEMBER, "--mark-sent", "--config", str(settings))
    assert result.returncode == 0, result.stderr
    assert outbox_messages(outbox) == []
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert sum(row["sent"] for row in ledger.summary("2025-09").values()) == len(everyone())
        assert ledger.sent_since(0) == 0  # never went through a relay: the cap does not count them
    again = run("send", SEPTEMBER, "--config", str(settings))
    assert again.returncode == 0 and outbox_messages(outbox) == []


@pytest.mark.parametrize("damage", ["empty", "garbage", "truncated", "foreign"])
def test_a_damaged_ledger_is_refused_never_treated_as_new(tmp_path: Path, damage: str) -> None:
    """Found: an emptied newsletter.db made the next send go to everyone again, suppressed readers included."""
    outbox = tmp_path / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    ledger_path = tmp_path / "ledger.db"
    assert run("suppress", "add", everyone()[0], "--reason", "asked", "--config", str(settings)).returncode == 0
    if damage == "empty":
        ledger_path.write_bytes(b"")
    elif damage == "garbage":
        ledger_path.write_bytes(os.urandom(8192))
    elif damage == "truncated":
        with sqlite3.connect(ledger_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        ledger_path.write_bytes(ledger_path.read_bytes()[:100])
    else:
        for path in tmp_path.glob("ledger.db*"):
            path.unlink()
        with sqlite3.connect(ledger_path) as db:
            db.execute("CREATE TABLE notes (text)")
    for command in (
        ["send", SEPTEMBER],
        ["status", SEPTEMBER],
        ["suppress", "list"],
        ["recipients", "check"],
        ["report", SEPTEMBER, "--out", str(tmp_path / "reports")],
    ):
        result = run(*command, "--config", str(settings))
        assert result.returncode == 2, (command, result.stdout, result.stderr)
        assert_one_clear_line(result)
        assert str(ledger_path) in result.stderr
    assert outbox_messages(outbox) == []


def test_a_ledger_in_a_missing_folder_is_one_clear_line(tmp_path: Path) -> None:
    settings = config(tmp_path, f"outbox:{tmp_path / 'outbox'}")
    settings.write_text(settings.read_text().replace(str(tmp_path / "ledger.db"), str(tmp_path / "nope" / "l.db")))
    result = run("send", SEPTEMBER, "--config", str(settings))
    assert result.returncode == 2
    assert_one_clear_line(result)


# -- 2. A failure stops the job cleanly, fast, and says why ------------------------------------------------------


def smtp_config(tmp_path: Path, server: Server, **transport: object) -> Path:
    path = config(tmp_path, server.url, **transport)
    path.write_text(path.read_text().replace("[transport]", '[transport]\nusername = "mailer"'), encoding="utf-8")
    return path


def run_with_password(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": "s", "NEWSLETTER_SMTP_PASSWORD": "wrong"}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args], cwd=ROOT, capture_output=True, text=True, env=env, timeout=timeout
    )


def test_a_refused_login_ends_the_send_at_once_with_the_relays_reply(tmp_path: Path) -> None:
    """Found: with a relay refusing the login, `send` hung silently and ignored SIGTERM."""
    with Server(authenticator=Logins(accept=0), auth_require_tls=False) as server:
        settings = smtp_config(tmp_path, server)
        started = time.monotonic()
        result = run_with_password("send", SEPTEMBER, "--config", str(settings), timeout=30)
        took = time.monotonic() - started
        proof = run_with_password("proof", SEPTEMBER, "--to", "me@example.org", "--config", str(settings))
    assert result.returncode == 2 and took < 30
    assert_one_clear_line(result)
    assert "refused the login for mailer: 535" in result.stderr
    assert server.handler.arrivals == []
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.summary("2025-09") == {}  # nobody queued, nothing marked
    assert proof.returncode == 2 and "refused the login" in proof.stderr
    assert_one_clear_line(proof)


def test_a_login_refused_mid_run_stops_every_worker_and_the_ledger_stays_true(tmp_path: Path) -> None:
    """The relay drops one connection (421) and then refuses to let us back in: the run ends, it does not hang."""
    people = sorted(everyone())
    script = {people[10]: ["421"]}
    logins = Logins(accept=3)  # the check before the run, then one per connection
    with Server(Handler(script=script, delay=0.02), authenticator=logins, auth_require_tls=False) as server:
        settings = smtp_config(tmp_path, server, connections=2)
        result = run_with_password("send", SEPTEMBER, "--config", str(settings), timeout=60)
        assert result.returncode == 2, result.stdout + result.stderr
        assert_one_clear_line(result)
        assert "refused the login" in result.stderr
        arrived = {a.recipient for a in server.handler.arrivals}
        with Ledger(tmp_path / "ledger.db") as ledger:
            statuses = dict(ledger.db.execute("SELECT email, status FROM deliveries WHERE issue = '2025-09'"))
        sent = {e for e, s in statuses.items() if s == "sent"}
        in_flight = {e for e, s in statuses.items() if s == "sending"}
        assert sent <= arrived  # nothing `sent` that did not arrive
        assert arrived - sent <= in_flight and len(in_flight) <= 2  # cut off mid-hand-off: recovered next run
        assert len(arrived) < len(people)
        logins.accept = 10**6
        rerun = run_with_password("send", SEPTEMBER, "--config", str(settings))
        assert rerun.returncode == 0, rerun.stderr
    copies = [a.recipient for a in server.handler.arrivals]
    assert set(copies) == set(people) and len(copies) - len(set(copies)) <= 2  # at most the ones in flight


@pytest.fixture
def small_disk(tmp_path: Path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=160k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {mounted.stderr.decode().strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_under_the_outbox_ends_the_run_cleanly(tmp_path: Path, small_disk: Path) -> None:
    outbox = small_disk / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    result = run("send", SEPTEMBER, "--config", str(settings))
    assert result.returncode == 2, result.stdout + result.stderr
    assert_one_clear_line(result)
    assert "No space left on device" in result.stderr and str(outbox) in result.stderr
    on_disk = len(outbox_messages(outbox))
    assert 0 < on_disk < len(everyone())
    with Ledger(tmp_path / "ledger.db") as ledger:
        statuses = [s for (s,) in ledger.db.execute("SELECT status FROM deliveries")]
    assert statuses.count("sent") == on_disk  # the ledger says exactly who has it
    assert statuses.count("sending") <= 2  # at most one in flight per connection, recovered next run


def test_a_dkim_key_that_is_not_a_key_stops_before_anyone_is_queued(tmp_path: Path) -> None:
    key = tmp_path / "dkim.pem"
    key.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    outbox = tmp_path / "outbox"
    settings = config(tmp_path, f"outbox:{outbox}")
    settings.write_text(settings.read_text() + f'\n[dkim]\nselector = "nl"\nkey_file = "{key}"\n')
    result = run("send", SEPTEMBER, "--config", str(settings))
    assert result.returncode == 2
    assert_one_clear_line(result)
    assert f"the DKIM key {key}" in result.stderr and "private key" in result.stderr
    assert outbox_messages(outbox) == []


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--connections", "-1"),
        ("--connections", "0"),
        ("--rate", "-5"),
        ("--transport", "smtp://127.0.0.1:abc"),
        ("--transport", "smtp://127.0.0.1:99999"),
    ],
)
def test_bad_options_are_refused_before_anything_happens(tmp_path: Path, option: str, value: str) -> None:
    result = run("send", SEPTEMBER, option, value, "--config", str(config(tmp_path, f"outbox:{tmp_path / 'o'}")))
    assert result.returncode == 2
    assert_one_clear_line(result)
    assert not (tmp_path / "o").exists()


def test_a_second_job_through_another_path_to_the_ledger_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real" / "newsletter.db"
    real.parent.mkdir()
    (tmp_path / "link.db").symlink_to(real)
    with exclusive(real):
        for other in (tmp_path / "link.db", tmp_path / "real" / ".." / "real" / "newsletter.db"):
            with pytest.raises(JobError, match="another send is already running"), exclusive(other):
                pass


def test_a_row_is_handed_off_by_one_job_only(tmp_path: Path) -> None:
    with Ledger(tmp_path / "l.db") as one, Ledger(tmp_path / "l.db") as two:
        one.enqueue("2025-09", [Row("a@example.org", "A", "walsall")])
        assert one.sending("2025-09", "a@example.org", "<1@x>")
        assert not two.sending("2025-09", "a@example.org", "<2@x>")


def test_a_paced_send_says_how_long_it_will_take(tmp_path: Path) -> None:
    with Server() as server:
        result = run("send", SEPTEMBER, "--config", str(config(tmp_path, server.url, rate_per_minute=6000)))
    assert result.returncode == 0, result.stderr
    assert (
        f"Issue 2025-09: paced at 6000 a minute (newsletter.toml): about under a minute for "
        f"{len(everyone())} reader(s)."
    ) in result.stdout
    status = run("status", SEPTEMBER, "--failed", "--config", str(config(tmp_path, server.url)))
    assert "No failures for issue 2025-09." in status.stdout


# -- 3. Unsubscribes during a long run are honoured --------------------------------------------------------------


def test_readers_suppressed_during_a_slow_run_get_nothing_more(tmp_path: Path) -> None:
    """Found: of 150 readers who unsubscribed during a 4,000-reader send, 144 still got the issue."""
    known = load_authorities(ROOT / "recipients" / "authorities.yaml")
    issue = load_draft(SEPTEMBER).issue
    suppressed: set[str] = set()
    with Server(Handler(delay=0.03)) as server:
        settings = Settings.model_validate(
            {
                "transport": {"url": server.url, "rate_per_minute": 60_000, "connections": 2, "timeout": 2},
                "ledger": tmp_path / "ledger.db",
                "recipients": ROOT / "recipients",
            }
        )
        with Ledger(settings.ledger) as ledger:
            queue_recipients(ledger, issue, settings, known)
        outcome: dict[str, Outcome] = {}

        def send() -> None:  # SQLite connections belong to one thread: the job opens its own
            with Ledger(settings.ledger) as ledger:
                job = Job(issue, known, ledger, opener(server.url, settings.transport), settings, "s")
                outcome["run"] = asyncio.run(job.run())

        thread = threading.Thread(target=send)
        thread.start()
        deadline = time.monotonic() + 30
        while len(server.handler.arrivals) < 10 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.005)
        # Another process (the endpoint, `inbox`) suppresses everyone not yet handed off, in one transaction.
        with sqlite3.connect(settings.ledger, isolation_level=None) as other:
            other.execute("BEGIN IMMEDIATE")
            taken = {e for (e,) in other.execute("SELECT email FROM deliveries WHERE status IN ('sending', 'sent')")}
            for (address,) in other.execute("SELECT email FROM deliveries").fetchall():
                if address not in taken:
                    other.execute(
                        "INSERT INTO suppressions VALUES (?, 'unsubscribed', 'endpoint', ?)", (address, time.time())
                    )
                    suppressed.add(address)
            other.execute("COMMIT")
        thread.join(timeout=60)
        assert not thread.is_alive()
        with Ledger(settings.ledger) as ledger:
            replies = dict(ledger.db.execute("SELECT email, reply FROM deliveries"))
    arrived = {a.recipient for a in server.handler.arrivals}
    assert len(suppressed) > 20
    assert arrived.isdisjoint(suppressed)
    assert outcome["run"].skipped == len(suppressed)
    assert all(replies[a].startswith("suppressed: unsubscribed") for a in suppressed)


def test_a_ledger_that_is_not_a_ledger_is_refused_in_process(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    path.write_bytes(b"")
    with pytest.raises(LedgerError, match="is empty"):
        Ledger(path)
    with pytest.raises(LedgerError, match="no send history"):
        Ledger(tmp_path / "missing.db", create=False)
