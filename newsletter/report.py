"""Authority reports: who bounced or unsubscribed, and who signed up on the web, since the last issue, for each
list's owner.

Each authority's contact exports their list from their own system; a CSV of the addresses to remove
lets them clean it at the source, so the next export does not bring the same people back. The CSVs are
opened in Excel, so no cell from data may start a formula (OWASP's CSV injection guidance): such a cell
gets a leading single quote and is shown as text.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
from pathlib import Path

from newsletter.ledger import Ledger
from newsletter.recipients import Authority

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
"""What Excel, LibreOffice and Google Sheets read as the start of a formula (or strip before one)."""


def neutralise(cell: str) -> str:
    """A value as a spreadsheet cell that is text, never a formula: `=HYPERLINK(...)` becomes `'=HYPERLINK(...)`."""
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell


@dataclasses.dataclass
class AuthorityReport:
    authority: Authority
    sent: int = 0
    bounced: int = 0
    unsubscribed: int = 0
    file: Path | None = None
    joined: int = 0
    """Readers who signed up on the web for this authority since the previous issue (confirmed, or moved here)."""
    joined_file: Path | None = None


def write_reports(ledger: Ledger, issue: str, authorities: dict[str, Authority], out: Path) -> list[AuthorityReport]:
    """One CSV per authority with anything to report; the counts for every authority."""
    since = ledger.issue_started(ledger.previous_issue(issue)) or 0.0
    reports = {slug: AuthorityReport(a) for slug, a in authorities.items()}
    for slug, count in ledger.sent_counts(issue).items():
        if slug in reports:
            reports[slug].sent = count
    rows: dict[str, list[list[str]]] = {}
    for event in ledger.removals_since(since):
        report = reports.get(event.authority)
        if report is None:
            continue
        if event.what == "unsubscribed":
            report.unsubscribed += 1
        else:
            report.bounced += 1
        when = dt.datetime.fromtimestamp(event.time).strftime("%Y-%m-%d")
        rows.setdefault(event.authority, []).append([event.email, event.name, event.what, event.reason, when])
    out.mkdir(parents=True, exist_ok=True)
    for slug, lines in rows.items():
        path = out / f"{issue}-{slug}-remove.csv"
        with path.open("w", newline="", encoding="utf-8-sig") as handle:  # BOM: Excel opens it as UTF-8
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "what", "reason", "date"])
            writer.writerows([neutralise(cell) for cell in line] for line in sorted(lines))
        reports[slug].file = path
    _write_joiners(ledger, issue, since, reports, out)
    return list(reports.values())


def _write_joiners(ledger: Ledger, issue: str, since: float, reports: dict[str, AuthorityReport], out: Path) -> None:
    """`<issue>-<slug>-add.csv`: who signed up on the web since the previous issue, for the owner to add."""
    from newsletter.signup import joiners_since

    rows: dict[str, list[list[str]]] = {}
    for joiner in joiners_since(ledger, since):
        report = reports.get(joiner.authority)
        if report is None:
            continue
        report.joined += 1
        when = dt.datetime.fromtimestamp(joiner.confirmed).strftime("%Y-%m-%d")
        rows.setdefault(joiner.authority, []).append([joiner.email, joiner.name, when])
    for slug, lines in rows.items():
        path = out / f"{issue}-{slug}-add.csv"
        with path.open("w", newline="", encoding="utf-8-sig") as handle:
            writer = csv.writer(handle)
            writer.writerow(["email", "name", "signed up"])
            writer.writerows([neutralise(cell) for cell in line] for line in sorted(lines))
        reports[slug].joined_file = path
