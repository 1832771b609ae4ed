"""`newsletter daily`, as the scheduler runs it: a subprocess, a real SMTP relay (aiosmtpd), a real mailbox
(a Maildir), a real check-in server on 127.0.0.1. The team hears only when something happened."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import mailbox
import os
import re
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT
from newsletter.config import load_settings
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.recipients import load_authorities
from newsletter.send import exclusive, queue_recipients
from smtp_server import Handler, Logins, Server
from test_inbox import FIXTURES, unsubscribe_message
from test_send_cli import SEPTEMBER, everyone
from test_unattended import draft_for

TODAY = dt.date.today()
MONTH = f"{TODAY:%Y-%m}"
SECRET = "inbox-test-secret"
"""The same secret as test_inbox's, so its unsubscribe messages check out."""
TEAM = "regional.team@example.org"


def settings(
    tmp_path: Path,
    transport: str,
    *,
    inbox: str | None = None,
    notify: tuple[str, ...] = (TEAM,),
    healthcheck: str | None = None,
    username: str | None = None,
    **options: int,
) -> Path:
    """A newsletter.toml for the daily job in `tmp_path`: the sample lists, a drafts folder, the given parts."""
    lines = [
        f'ledger = "{tmp_path / "ledger.db"}"',
        f'recipients = "{ROOT / "recipients"}"',
        f'drafts = "{tmp_path / "drafts"}"',
        "notify = " + json.dumps(list(notify)),
    ]
    if healthcheck:
        lines.append(f'healthcheck_url = "{healthcheck}"')
    lines += [
        "[transport]",
        f'url = "{transport}"',
        "rate_per_minute = 60000",
        "connections = 2",
        "timeout = 2",
        "backoff = 0.05",
        "attempts = 2",
    ]
    if username:
        lines.append(f'username = "{username}"')
    lines += [f"{key} = {value}" for key, value in options.items()]
    if inbox:
        lines += ["[inbox]", f'url = "{inbox}"']
    path = tmp_path / "newsletter.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "drafts").mkdir(exist_ok=True)
    return path


def approved(tmp_path: Path, send_on: dt.date) -> Path:
    """This month's issue in tmp_path/drafts, approved, to go on `send_on`."""
    (tmp_path / "drafts").mkdir(exist_ok=True)
    return draft_for(tmp_path / "drafts", MONTH, send_on)


def daily(config: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "NEWSLETTER_SECRET": SECRET, **env}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "daily", "--config", str(config)],
        cwd=config.parent,
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


def maildir(path: Path, *messages: bytes) -> str:
    box = mailbox.Maildir(path, create=True)
    for message in messages:
        box.add(message)
    return f"maildir:{path}"


def names() -> dict[str, str]:
    return {a.slug: a.name for a in load_authorities(ROOT / "recipients" / "authorities.yaml")}


def report_text(data: bytes) -> str:
    import email
    import email.policy

    message = email.message_from_bytes(data, policy=email.policy.default)
    return f"Subject: {message['Subject'].strip()}\n\n{message.get_content()}".replace("\r\n", "\n")


# -- the send day and the day after ------------------------------------------------------------------------------


def test_on_the_send_day_readers_get_it_once_and_the_team_one_report_and_the_next_day_nothing(tmp_path: Path) -> None:
    people = sorted(everyone())
    leaving = people[3]
    inbox = maildir(tmp_path / "mail", unsubscribe_message(leaving, secret=SECRET))
    draft = approved(tmp_path, TODAY)
    with Server() as server:
        config = settings(tmp_path, server.url, inbox=inbox)
        first = daily(config)
        assert first.returncode == 0, first.stdout + first.stderr
        draft.write_text(
            draft.read_text(encoding="utf-8").replace(f"send_on: {TODAY}", f"send_on: {TODAY - dt.timedelta(days=1)}")
        )
        second = daily(config)  # the next day, as far as the issue is concerned: due yesterday, still in its window
        arrivals = list(server.handler.arrivals)
    readers = Counter(a.recipient for a in arrivals if a.recipient != TEAM)
    assert set(readers) == set(people) - {leaving}  # the unsubscribe read first is honoured by the same run
    assert set(readers.values()) == {1}
    reports = [a for a in arrivals if a.recipient == TEAM]
    assert len(reports) == 1
    text = report_text(reports[0].data)
    sent = len(people) - 1
    assert f"Subject: West Midlands Regional Update: issue {MONTH}: {sent} sent, 1 reader suppressed" in text
    assert f"It started and finished going out: {sent} sent in this run" in text
    with Ledger(tmp_path / "ledger.db") as ledger:
        counts = ledger.summary(MONTH)
    for slug, name in names().items():  # each authority's line names its count from the ledger
        row = counts[slug]
        assert any(
            line.split() == [*name.split(), str(row["sent"]), str(row["failed"]), "0"] for line in text.splitlines()
        ), (name, text)
    assert any(line.split() == ["All", str(sent), "0", "0"] for line in text.splitlines())
    assert f"{leaving}  unsubscribed by email" in text
    assert f"Run report sent to {TEAM}." in first.stdout
    assert f"Issue {MONTH} started and finished going out: {sent} sent, 0 failed, 0 still to send" in first.stdout
    assert leaving not in first.stdout  # the summary (and the monitor's log) names no reader
    # The next day: nothing sent, no report, one line.
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.strip().splitlines() == [
        f"Nothing to report: issue {MONTH} is due and everyone has it; the reply mailbox had nothing new."
    ]
    assert second.stderr == ""


def test_a_refused_relay_login_is_exit_2_one_clear_line_and_the_report_is_saved_in_the_outbox(tmp_path: Path) -> None:
    approved(tmp_path, TODAY)
    with Server(authenticator=Logins(accept=0), auth_require_tls=False) as server:
        config = settings(tmp_path, server.url, username="mailer")
        result = daily(config, NEWSLETTER_SMTP_PASSWORD="wrong")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if not line.startswith("No send history")]
    assert lines[0].startswith("the relay refused the login for mailer: 535")
    saved = list(mailbox.Maildir(tmp_path / "outbox", create=False))
    assert len(saved) == 1 and len(lines) == 2  # the stop, then where the report went
    assert lines[1].startswith(f"The run report could not be sent to {TEAM} (the relay refused the login")
    assert f"saved in {tmp_path / 'outbox' / 'new'}/" in lines[1] and lines[1].endswith(" instead.")
    text = report_text(saved[0].as_bytes())
    assert "Subject: West Midlands Regional Update: stopped on an error" in text
    assert "could not be sent through smtp://127.0.0.1" in text and "the relay refused the login" in text
    assert f"Issue {MONTH} is due today and nothing was sent" in text
    assert "Exit code 2: could not run." in text
    assert server.handler.arrivals == []
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.summary(MONTH) == {}  # checked before anyone was queued


def test_failures_and_mail_left_for_a_person_need_a_person(tmp_path: Path) -> None:
    people = sorted(everyone())
    refused = people[5]
    inbox = maildir(tmp_path / "mail", (FIXTURES / "human-reply.eml").read_bytes())
    approved(tmp_path, TODAY)
    with Server(Handler(script={refused: ["550 5.1.1 no such user here"]})) as server:
        result = daily(settings(tmp_path, server.url, inbox=inbox))
        reports = [a for a in server.handler.arrivals if a.recipient == TEAM]
    assert result.returncode == 1, result.stdout + result.stderr
    assert "exit code 1: something needs a person" in result.stdout
    assert len(reports) == 1
    text = report_text(reports[0].data)
    assert "1 failed" in text.splitlines()[0] and "1 mailbox message for you" in text.splitlines()[0]
    assert f"{refused}  550 5.1.1 no such user here" in text
    assert "Left where they are, for a person to read:" in text
    assert len(list(mailbox.Maildir(tmp_path / "mail", create=False))) == 1  # still there, unread


def test_readers_sent_again_after_a_killed_run_are_named(tmp_path: Path) -> None:
    """A run killed mid-hand-off leaves a row `sending`: the next daily run sends it again and says so."""
    draft = approved(tmp_path, TODAY)
    outbox = tmp_path / "out"
    config = settings(tmp_path, f"outbox:{outbox}")
    with Ledger(tmp_path / "ledger.db") as ledger:
        issue = load_draft(draft).issue
        queue_recipients(
            ledger, issue, load_settings(config), list(load_authorities(ROOT / "recipients" / "authorities.yaml"))
        )
        in_flight = sorted(everyone())[7]
        assert ledger.sending(MONTH, in_flight, "<killed@example.org>")
    result = daily(config)
    assert result.returncode == 0, result.stdout + result.stderr
    (report,) = [m for m in mailbox.Maildir(outbox, create=False) if m["To"] == TEAM]
    text = report_text(report.as_bytes())
    assert f"so sent again (they may have two copies):\n    {in_flight}\n" in text


def test_a_send_stopped_at_the_daily_cap_is_not_a_failure(tmp_path: Path) -> None:
    approved(tmp_path, TODAY)
    with Server() as server:
        result = daily(settings(tmp_path, server.url, daily_cap=10))
        reports = [a for a in server.handler.arrivals if a.recipient == TEAM]
        readers = [a for a in server.handler.arrivals if a.recipient != TEAM]
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(readers) == 10
    (report,) = reports
    text = report_text(report.data)
    assert f"issue {MONTH}: 10 sent, {len(everyone()) - 10} still to send" in text.splitlines()[0]
    assert "started going out; stopped at the relay's daily cap: the rest go at the next run" in text


def test_a_mailbox_that_cannot_be_read_stops_that_step_only(tmp_path: Path) -> None:
    approved(tmp_path, TODAY)
    outbox = tmp_path / "out"
    result = daily(settings(tmp_path, f"outbox:{outbox}", inbox=f"maildir:{tmp_path / 'no-such-mailbox'}"))
    assert result.returncode == 2, result.stdout + result.stderr
    assert f"the reply mailbox: {tmp_path / 'no-such-mailbox'} is not a Maildir" in result.stderr
    messages = list(mailbox.Maildir(outbox, create=False))
    readers = [m for m in messages if m["To"] != TEAM]
    assert len(readers) == len(everyone())  # the issue still went on its day
    (report,) = [m for m in messages if m["To"] == TEAM]
    assert "STOPPED ON AN ERROR" in report_text(report.as_bytes())


def test_the_whole_run_holds_the_ledgers_lock(tmp_path: Path) -> None:
    approved(tmp_path, TODAY)
    outbox = tmp_path / "out"
    config = settings(
        tmp_path,
        f"outbox:{outbox}",
        inbox=maildir(tmp_path / "mail", unsubscribe_message(everyone()[0], secret=SECRET)),
    )
    with exclusive(tmp_path / "ledger.db"):
        result = daily(config)
    assert result.returncode == 2
    assert "another send is already running" in result.stderr
    assert len(list(mailbox.Maildir(tmp_path / "mail", create=False))) == 1  # the mailbox was not touched either
    messages = list(mailbox.Maildir(outbox, create=False))
    assert [m["To"] for m in messages] == [TEAM]  # the report, through the transport: nothing else


def test_an_idle_day_is_one_line_and_no_mail(tmp_path: Path) -> None:
    approved(tmp_path, TODAY + dt.timedelta(days=3))  # approved, not due yet
    outbox = tmp_path / "out"
    result = daily(settings(tmp_path, f"outbox:{outbox}"))
    assert result.returncode == 0, result.stderr
    idle = "Nothing to report: no issue is due; the reply mailbox is not read (no [inbox] url in newsletter.toml)."
    assert result.stdout.splitlines() == [idle]
    assert not outbox.exists() or list(mailbox.Maildir(outbox, create=False)) == []


def test_a_draft_that_cannot_be_read_is_reported(tmp_path: Path) -> None:
    broken = tmp_path / "drafts" / "2999-01.yaml"
    settings_path = settings(tmp_path, f"outbox:{tmp_path / 'out'}")
    broken.write_text(Path(SEPTEMBER).read_text(encoding="utf-8").replace("status: approved", "status: ok"))
    result = daily(settings_path)
    assert result.returncode == 1, result.stdout + result.stderr
    (report,) = list(mailbox.Maildir(tmp_path / "out", create=False))
    assert f"{broken}: `newsletter check {broken}` lists the problems" in report_text(report.as_bytes())


def test_an_issue_due_with_errors_is_not_sent_and_the_team_is_told_why(tmp_path: Path) -> None:
    draft = approved(tmp_path, TODAY)
    draft.write_text(
        draft.read_text(encoding="utf-8") + "\nattachments:\n  - {title: Plan, file: files/plan.pdf}\n",
        encoding="utf-8",
    )
    outbox = tmp_path / "out"
    result = daily(settings(tmp_path, f"outbox:{outbox}"))
    assert result.returncode == 1, result.stdout + result.stderr
    (report,) = list(mailbox.Maildir(outbox, create=False))  # the report only: no reader got the issue
    text = report_text(report.as_bytes())
    assert re.search(
        rf"ISSUE NOT SENT\n  issue {MONTH} is due, but {re.escape(str(draft))} has \d+ error\(s\) to "
        rf"fix first: `newsletter check {re.escape(str(draft))}` lists them",
        text,
    )


# -- the check-in URL --------------------------------------------------------------------------------------------


class Monitor(http.server.ThreadingHTTPServer):
    """A cron monitor on 127.0.0.1 that records each check-in (path and body) and answers `status`."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.pings: list[tuple[str, str]] = []
        monitor = self

        class Ping(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
                monitor.pings.append((self.path, body))
                self.send_response(monitor.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Ping)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/ping/abc-123"

    def __enter__(self) -> Monitor:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    with Monitor() as running:
        yield running


def test_the_monitor_hears_success_and_failure(tmp_path: Path, monitor: Monitor) -> None:
    config = settings(tmp_path, f"outbox:{tmp_path / 'out'}", healthcheck=monitor.url)
    idle = daily(config)
    assert idle.returncode == 0, idle.stderr
    (tmp_path / "ledger.db").write_bytes(b"")  # an emptied ledger: the run cannot go on
    broken = daily(config)
    assert broken.returncode == 2
    assert [path for path, _ in monitor.pings] == ["/ping/abc-123", "/ping/abc-123/fail"]
    assert monitor.pings[0][1].startswith("Nothing to report: no issue is due")
    assert "is empty, so the send history is lost" in monitor.pings[1][1]


def test_a_failing_check_in_is_one_line_and_never_changes_the_exit_code(tmp_path: Path) -> None:
    with Monitor(status=500) as refusing:
        refused = daily(settings(tmp_path, f"outbox:{tmp_path / 'out'}", healthcheck=refusing.url))
    assert refused.returncode == 0
    assert refused.stderr.splitlines()[-1] == (
        "the check-in at 127.0.0.1 was refused: HTTP 500 Internal Server Error (the run's exit code is unchanged)"
    )
    assert "abc-123" not in refused.stderr  # the URL is the monitor's key: only its host is named
    with Monitor() as gone:
        url = gone.url
    unreachable = daily(settings(tmp_path, f"outbox:{tmp_path / 'out'}", healthcheck=url))
    assert unreachable.returncode == 0
    assert unreachable.stderr.splitlines() == [unreachable.stderr.splitlines()[0]]
    assert unreachable.stderr.startswith("the check-in at 127.0.0.1 failed:")


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://hc-ping.example.org/abc", "use https://"),
        ("hc-ping.example.org/abc", "a check-in URL is a web address"),
    ],
)
def test_a_check_in_url_must_be_https_but_to_this_machine(tmp_path: Path, url: str, why: str) -> None:
    result = daily(settings(tmp_path, f"outbox:{tmp_path / 'out'}", healthcheck=url))
    assert result.returncode == 2
    assert "healthcheck_url" in result.stderr and why in result.stderr
    assert "Traceback" not in result.stderr


# -- archive -----------------------------------------------------------------------------------------------------


def test_archive_prints_the_pages_it_wrote(tmp_path: Path) -> None:
    out = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "archive", "--out", str(out), "--drafts", str(ROOT / "drafts")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    printed = [line.split(" (")[0] for line in result.stdout.splitlines() if "calendar file" in line]
    assert f"{out}/2025-09/index.html" in printed
    assert all(Path(path).is_file() for path in printed)
