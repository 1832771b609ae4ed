"""`newsletter send` and `status` as the mailing job runs them: subprocesses, a real outbox and server, SIGKILL."""

from __future__ import annotations

import contextlib
import datetime as dt
import email
import email.policy
import mailbox
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from conftest import ROOT
from newsletter.ledger import Ledger
from newsletter.recipients import gather, load_authorities
from smtp_server import Handler, Server

SEPTEMBER = str(ROOT / "drafts" / "2025-09.yaml")


def config(tmp_path: Path, url: str, **transport: object) -> Path:
    options = {"url": url, "rate_per_minute": 60000, "connections": 2, "timeout": 2, "backoff": 0.05, **transport}
    lines = [
        "[transport]",
        *(f"{k} = {v!r}".replace("'", '"') for k, v in options.items()),
        "",
        f'ledger = "{tmp_path / "ledger.db"}"',
        f'recipients = "{ROOT / "recipients"}"',
    ]
    # top-level keys must come before any table in TOML
    text = "\n".join([*lines[-2:], "", *lines[:-3]]) + "\n"
    path = tmp_path / "newsletter.toml"
    path.write_text(text, encoding="utf-8")
    return path


def run(*args: str, cwd: Path = ROOT, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NEWSLETTER_SECRET": "kill-test-secret"}
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,
    )


def start_send(settings: Path) -> subprocess.Popen[bytes]:
    """`newsletter send` of the September issue in the background, to be killed."""
    env = {**os.environ, "NEWSLETTER_SECRET": "kill-test-secret"}
    return subprocess.Popen(
        [sys.executable, "-m", "newsletter", "send", SEPTEMBER, "--config", str(settings)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def everyone() -> list[str]:
    return [p.email for p in gather(ROOT / "recipients", load_authorities(ROOT / "recipients" / "authorities.yaml"))]


def test_send_to_the_outbox_prints_the_summary(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox"
    result = run(
        "send", SEPTEMBER, "--transport", f"outbox:{outbox}", "--config", str(config(tmp_path, "outbox:unused"))
    )
    assert result.returncode == 0, result.stderr
    messages = [
        email.message_from_bytes(m.as_bytes(), policy=email.policy.default)
        for m in mailbox.Maildir(outbox, create=False)
    ]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(everyone())
    assert "Walsall Council" in result.stdout and "All" in result.stdout
    assert f"{len(everyone())}" in result.stdout.splitlines()[-2]
    again = run("send", SEPTEMBER, "--transport", f"outbox:{outbox}", "--config", str(config(tmp_path, "outbox:x")))
    assert again.returncode == 0 and len(list(mailbox.Maildir(outbox, create=False))) == len(messages)


def test_a_draft_is_refused_with_how_to_approve(tmp_path: Path) -> None:
    draft = tmp_path / "2025-10.yaml"
    draft.write_text(
        Path(SEPTEMBER).read_text(encoding="utf-8").replace("status: approved", "status: draft"), encoding="utf-8"
    )
    result = run("send", str(draft), "--config", str(config(tmp_path, f"outbox:{tmp_path / 'o'}")))
    assert result.returncode == 1
    assert "`status: draft` to `status: approved`" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_relay_needs_the_secret_from_the_environment(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "NEWSLETTER_SECRET"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "newsletter",
            "send",
            SEPTEMBER,
            "--config",
            str(config(tmp_path, "smtp://127.0.0.1:9")),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2 and "NEWSLETTER_SECRET" in result.stderr


def test_tls_is_required_for_a_remote_relay(tmp_path: Path) -> None:
    path = config(tmp_path, "smtp://relay.example.org:587")
    path.write_text(path.read_text().replace("[transport]", "[transport]\nstarttls = false"), encoding="utf-8")
    result = run("send", SEPTEMBER, "--config", str(path))
    assert result.returncode == 2 and "without TLS" in result.stderr


def test_killed_mid_send_then_rerun_gives_everyone_the_issue(tmp_path: Path) -> None:
    """SIGKILL part-way: after a re-run everyone has it; duplicates are only the reported in-flight ones."""
    people = everyone()
    with Server(Handler(delay=0.08)) as server:
        settings = config(tmp_path, server.url, connections=3)
        job = start_send(settings)
        deadline = time.monotonic() + 60
        while len(server.handler.arrivals) < len(people) // 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        job.send_signal(signal.SIGKILL)
        job.wait()
        killed_at = len(server.handler.arrivals)
        assert 0 < killed_at < len(people), "the kill must land part-way"
        time.sleep(0.3)  # let the server finish the transactions the kill cut off
        with Ledger(tmp_path / "ledger.db") as ledger:
            in_flight = {e for (e,) in ledger.db.execute("SELECT email FROM deliveries WHERE status = 'sending'")}
        assert 0 < len(in_flight) <= 3
        result = run("send", SEPTEMBER, "--config", str(settings))
        assert result.returncode == 0, result.stderr
    copies = Counter(a.recipient for a in server.handler.arrivals)
    assert set(copies) == set(people)
    duplicated = {e for e, n in copies.items() if n > 1}
    assert duplicated <= in_flight and max(copies.values()) <= 2
    assert f"{len(in_flight)} message(s) were in flight" in result.stdout
    status = run("status", SEPTEMBER, "--config", str(settings))
    assert status.returncode == 0
    for address in in_flight:
        assert address in status.stdout


def test_status_failed_lists_the_server_reply(tmp_path: Path) -> None:
    person = everyone()[1]
    with Server(Handler(script={person: ["550 5.1.1 no such user"]})) as server:
        settings = config(tmp_path, server.url)
        result = run("send", SEPTEMBER, "--config", str(settings))
    assert result.returncode == 1  # something failed: the job says so
    status = run("status", SEPTEMBER, "--failed", "--config", str(settings))
    assert person in status.stdout and "550 5.1.1 no such user" in status.stdout


@pytest.mark.parametrize("approved", [True, False])
def test_send_due_sends_only_approved_drafts_whose_day_has_come(tmp_path: Path, approved: bool) -> None:
    drafts = tmp_path / "drafts"
    drafts.mkdir()
    text = Path(SEPTEMBER).read_text(encoding="utf-8").replace("send_on: 2025-09-19", f"send_on: {dt.date.today()}")
    (drafts / "2025-09.yaml").write_text(text if approved else text.replace("approved", "draft"), encoding="utf-8")
    text = Path(SEPTEMBER).read_text(encoding="utf-8")
    (drafts / "2099-01.yaml").write_text(
        text.replace("send_on: 2025-09-19", "send_on: 2099-01-15").replace("issue: 2025-09", "issue: 2099-01"),
        encoding="utf-8",
    )
    outbox = tmp_path / "outbox"
    result = run("send", "--due", "--config", str(config(tmp_path, f"outbox:{outbox}")), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    sent = list(mailbox.Maildir(outbox, create=True))
    if approved:
        assert len(sent) == len(everyone())
        assert all(m["Subject"].startswith("Regional Update, September 2025") for m in sent)
    else:
        assert not sent and "No approved issue is due today." in result.stdout


@pytest.mark.parametrize(("sig", "dkim"), [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True)])
def test_ctrl_c_stops_cleanly_and_the_rerun_finishes(tmp_path: Path, sig: signal.Signals, dkim: bool) -> None:
    """Ctrl-C (or systemd's SIGTERM), sent to the whole process group as a terminal and systemd send it (the
    DKIM signing process included): messages in flight finish, nothing is left `sending`, a re-run goes on."""
    from bench.common import dkim_key

    people = everyone()
    with Server(Handler(delay=0.08)) as server:
        settings = config(tmp_path, server.url, connections=2)
        if dkim:
            key = dkim_key(tmp_path)
            text = settings.read_text(encoding="utf-8")
            settings.write_text(f'{text}\n[dkim]\nselector = "news"\nkey_file = "{key}"\n', encoding="utf-8")
        env = {**os.environ, "NEWSLETTER_SECRET": "kill-test-secret"}
        job = subprocess.Popen(
            [sys.executable, "-m", "newsletter", "send", SEPTEMBER, "--config", str(settings)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while len(server.handler.arrivals) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.killpg(job.pid, sig)
        out, err = job.communicate(timeout=60)
        assert job.returncode == 1 and "Stopped. Run the same command again" in out, err
        assert "Traceback" not in err and "Error" not in err
        if dkim:
            assert all(b"DKIM-Signature:" in a.data for a in server.handler.arrivals)
        stopped_at = len(server.handler.arrivals)
        assert stopped_at < len(people)
        with Ledger(tmp_path / "ledger.db") as ledger:
            statuses = dict(ledger.db.execute("SELECT status, count(*) FROM deliveries GROUP BY status"))
        assert "sending" not in statuses and statuses["sent"] == stopped_at
        result = run("send", SEPTEMBER, "--config", str(settings))
        assert result.returncode == 0, result.stderr
    assert sorted(a.recipient for a in server.handler.arrivals) == sorted(people)  # one copy each


def test_proof_goes_to_the_given_addresses_only_and_leaves_the_ledger_alone(tmp_path: Path) -> None:
    draft = tmp_path / "2025-09.yaml"
    draft.write_text(
        Path(SEPTEMBER)
        .read_text(encoding="utf-8")
        .replace(
            "sections:\n",
            (
                "sections:\n  - article:\n      heading: For Dudley only\n      body: Dudley colleagues only.\n"
                "      audience: [dudley]\n"
            ),
            1,
        )
        .replace("status: approved", "status: draft"),
        encoding="utf-8",
    )
    with Server() as server:
        settings = config(tmp_path, server.url)
        result = run(
            "proof",
            str(draft),
            "--to",
            "editor@wmchildrensservices.org.uk",
            "--to",
            "colleague@wmchildrensservices.org.uk",
            "--config",
            str(settings),
        )
        assert result.returncode == 0, result.stderr
        one = run(
            "proof",
            str(draft),
            "--to",
            "editor@wmchildrensservices.org.uk",
            "--authority",
            "walsall",
            "--config",
            str(settings),
        )
        assert one.returncode == 0, one.stderr
    arrivals = server.handler.arrivals
    # Two different variants (Dudley's, everyone else's) to two people, then Walsall's to one.
    assert sorted(a.recipient for a in arrivals) == sorted(
        ["editor@wmchildrensservices.org.uk"] * 3 + ["colleague@wmchildrensservices.org.uk"] * 2
    )
    assert all(re.match(r"\[PROOF: [^\]]+\] Regional Update", a.message["Subject"]) for a in arrivals)
    dudley = [a for a in arrivals if "Dudley colleagues only." in a.message.get_body(("plain",)).get_content()]
    assert len(dudley) == 2
    assert not (tmp_path / "ledger.db").exists()  # proofs never touch the ledger


@pytest.mark.parametrize("fraction", [0.25, 0.6])
def test_killed_amid_grouped_ledger_writes_loses_nobody(tmp_path: Path, fraction: float) -> None:
    """The ledger's writes are grouped (a worker's result goes in with its next claim): a SIGKILL landing among
    them, with no server delay so that writing is much of the work, still leaves at most one `sending` row per
    connection, every `sent` row arrived, and a re-run gives everyone the issue, duplicating only those rows."""
    from bench.common import write_lists

    lists = tmp_path / "recipients"
    write_lists(lists, 1200)
    people = [p.email for p in gather(lists, load_authorities(lists / "authorities.yaml"))]
    with Server() as server:
        settings = config(tmp_path, server.url, connections=4)
        settings.write_text(settings.read_text().replace(str(ROOT / "recipients"), str(lists)), encoding="utf-8")
        job = start_send(settings)
        deadline = time.monotonic() + 120
        most_sending = 0  # what any reader of the ledger sees at any moment, not only after the kill
        while len(server.handler.arrivals) < len(people) * fraction and time.monotonic() < deadline:
            if (tmp_path / "ledger.db").exists():
                with contextlib.suppress(sqlite3.OperationalError):
                    with contextlib.closing(sqlite3.connect(tmp_path / "ledger.db", timeout=0.1)) as db:
                        (sending,) = db.execute("SELECT count(*) FROM deliveries WHERE status = 'sending'").fetchone()
                    most_sending = max(most_sending, sending)
            time.sleep(0.002)
        job.send_signal(signal.SIGKILL)
        job.wait()
        time.sleep(0.3)  # let the server finish the transactions the kill cut off
        first = {a.recipient for a in server.handler.arrivals}
        assert 0 < len(first) < len(people), "the kill must land part-way"
        with Ledger(tmp_path / "ledger.db") as ledger:
            rows = dict(ledger.db.execute("SELECT email, status FROM deliveries").fetchall())
        in_flight = {e for e, status in rows.items() if status == "sending"}
        sent = {e for e, status in rows.items() if status == "sent"}
        assert len(in_flight) <= 4 and most_sending <= 4
        assert sent <= first and first - sent <= in_flight
        result = run("send", SEPTEMBER, "--config", str(settings))
        assert result.returncode == 0, result.stderr
    copies = Counter(a.recipient for a in server.handler.arrivals)
    assert set(copies) == set(people)
    assert {e for e, n in copies.items() if n > 1} <= in_flight and max(copies.values()) <= 2
