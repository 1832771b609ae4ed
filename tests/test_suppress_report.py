"""Suppression list by hand, and the per-authority report of bounces and unsubscribes since the last issue."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import DRAFTS, ROOT
from newsletter.ledger import Ledger, Row

SEPTEMBER = str(DRAFTS[-1])


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "newsletter.toml"
    if not config.exists():
        config.write_text(
            f'ledger = "{tmp_path / "ledger.db"}"\nrecipients = "{ROOT / "recipients"}"\n', encoding="utf-8"
        )
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args, "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_suppress_add_list_remove(tmp_path: Path) -> None:
    added = run(tmp_path, "suppress", "add", "Jo.Bloggs@Walsall.example.org", "--reason", "left the council")
    assert added.returncode == 0 and "is suppressed" in added.stdout
    again = run(tmp_path, "suppress", "add", "jo.bloggs@walsall.example.org", "--reason", "again")
    assert "already suppressed: left the council" in again.stdout
    listed = run(tmp_path, "suppress", "list")
    assert "jo.bloggs@walsall.example.org" in listed.stdout and "left the council" in listed.stdout
    assert "manual" in listed.stdout
    removed = run(tmp_path, "suppress", "remove", "jo.bloggs@walsall.example.org", "--reason", "came back")
    assert removed.returncode == 0
    assert "jo.bloggs" not in run(tmp_path, "suppress", "list").stdout
    missing = run(tmp_path, "suppress", "remove", "nobody@walsall.example.org", "--reason", "x")
    assert missing.returncode == 1 and "not on the suppression list" in missing.stderr


def sent(ledger: Ledger, issue: str, rows: list[Row]) -> None:
    ledger.enqueue(issue, rows)
    for row in rows:
        ledger.sending(issue, row.email, f"<{issue}.x@example.org>")
        ledger.finished(issue, row.email, "sent", "250 ok")


def test_report_lists_bounces_and_unsubscribes_since_the_last_issue(tmp_path: Path) -> None:
    walsall = [Row(f"w{i}@walsall.example.org", f"Walsall {i}", "walsall") for i in range(4)]
    dudley = [Row(f"d{i}@dudley.example.org", f"Dudley {i}", "dudley") for i in range(3)]
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.suppress("old@walsall.example.org", "unsubscribed (one-click)", "web")  # before the last issue
        ledger.db.execute("UPDATE suppressions SET created = ?", (time.time() - 86400 * 60,))
        sent(ledger, "2025-07", walsall + dudley)
        ledger.bounce("w0@walsall.example.org", "2025-07", "hard", "550 5.1.1 user unknown", "inbox")
        sent(ledger, "2025-09", walsall[1:] + dudley)
        ledger.suppress("w1@walsall.example.org", "unsubscribed (one-click)", "web")
        ledger.bounce("d2@dudley.example.org", "2025-09", "soft", "452 4.2.2 mailbox full", "inbox")
        ledger.suppress("d1@dudley.example.org", "manual: asked by phone", "manual")  # not a list problem

    out = tmp_path / "reports"
    result = run(tmp_path, "report", SEPTEMBER, "--out", str(out))
    assert result.returncode == 0, result.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["2025-09-dudley-remove.csv", "2025-09-walsall-remove.csv"]
    with (out / "2025-09-walsall-remove.csv").open(encoding="utf-8-sig") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["email"], r["what"]) for r in rows] == [
        ("w0@walsall.example.org", "hard bounce"),
        ("w1@walsall.example.org", "unsubscribed"),
    ]
    assert rows[0]["name"] == "Walsall 0" and rows[0]["reason"] == "550 5.1.1 user unknown"
    with (out / "2025-09-dudley-remove.csv").open(encoding="utf-8-sig") as handle:
        assert [(r["email"], r["what"]) for r in csv.DictReader(handle)] == [("d2@dudley.example.org", "soft bounce")]
    cells = {
        row[0]: row[1:4]
        for row in (
            [c.strip() for c in line.split("│")[1:-1]] for line in result.stdout.splitlines() if line.startswith("│")
        )
    }
    assert cells["Walsall Council"] == ["3", "1", "1"]  # sent this issue, bounced, unsubscribed
    assert cells["Dudley Metropolitan Borough Council"] == ["3", "1", "0"]
    assert cells["Coventry City Council"] == ["0", "0", "0"]
    assert "old@walsall" not in (out / "2025-09-walsall-remove.csv").read_text(encoding="utf-8-sig")


FORMULAS = ['=HYPERLINK("http://evil.test","x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)", "\t=1+1", "\r=1+1"]


def test_report_cells_from_data_cannot_be_formulas(tmp_path: Path, authorities: dict) -> None:  # type: ignore[type-arg]
    """OWASP CSV injection: a cell starting = + - @ tab or CR gets a leading ' so Excel shows it as text."""
    from newsletter.report import write_reports

    people = [Row(f"w{i}@walsall.example.org", name, "walsall") for i, name in enumerate(FORMULAS)]
    people.append(Row("-lead@walsall.example.org", "Amy Lowe", "walsall"))
    with Ledger(tmp_path / "ledger.db") as ledger:
        sent(ledger, "2025-07", people)
        sent(ledger, "2025-09", people)
        for index, row in enumerate(people):
            ledger.bounce(row.email, "2025-09", "hard", FORMULAS[index % len(FORMULAS)], "inbox")
        reports = write_reports(ledger, "2025-09", authorities, tmp_path / "reports")
    (report,) = [r for r in reports if r.file is not None]
    with report.file.open(encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(people)
    by_email = {row["email"]: row for row in rows}
    for index, name in enumerate(FORMULAS):
        row = by_email[f"w{index}@walsall.example.org"]
        assert row["name"] == "'" + name
        assert row["reason"] == "'" + name
    lead = by_email["'-lead@walsall.example.org"]  # even an address: Excel would read "-lead" as a formula
    assert lead["name"] == "Amy Lowe" and lead["what"] == "hard bounce" and lead["date"][:2] == "20"
    for row in rows:
        for cell in row.values():
            assert not cell or cell[0] not in "=+-@\t\r"
