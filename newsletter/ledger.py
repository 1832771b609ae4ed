"""The send log: one row per issue x recipient in SQLite, written before and after each hand-off.

A row is `pending` until a connection takes it, `sending` while the relay has it, then `sent`,
`deferred` (a temporary failure, tried again later) or `failed` (permanent, or out of attempts). A
process killed mid-send leaves only the messages in flight as `sending`; the next run sends those again
and marks them `uncertain`, so the report can name the few people who may have two copies.

WAL with synchronous=NORMAL: a commit survives the process being killed (the case we design for)
without an fsync per message.
"""

from __future__ import annotations

import dataclasses
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Literal

from newsletter.errors import LedgerError

Status = Literal["pending", "sending", "sent", "deferred", "failed"]
STATUSES: tuple[Status, ...] = ("pending", "sending", "sent", "deferred", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    issue      TEXT NOT NULL,
    email      TEXT NOT NULL,
    name       TEXT NOT NULL,
    authority  TEXT NOT NULL,
    status     TEXT NOT NULL CHECK (status IN ('pending', 'sending', 'sent', 'deferred', 'failed')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    reply      TEXT,
    message_id TEXT,
    uncertain  INTEGER NOT NULL DEFAULT 0,
    next_try   REAL NOT NULL DEFAULT 0,
    sent_at    REAL,
    updated    REAL NOT NULL,
    PRIMARY KEY (issue, email)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (issue, status, next_try);
CREATE INDEX IF NOT EXISTS deliveries_sent_at ON deliveries (status, updated);
CREATE TABLE IF NOT EXISTS suppressions (
    email   TEXT PRIMARY KEY,
    reason  TEXT NOT NULL,
    source  TEXT NOT NULL,
    created REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bounces (
    email    TEXT NOT NULL,
    issue    TEXT NOT NULL,
    kind     TEXT NOT NULL CHECK (kind IN ('hard', 'soft')),
    reason   TEXT NOT NULL,
    source   TEXT NOT NULL,
    received REAL NOT NULL,
    PRIMARY KEY (email, issue)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signup_requests (
    address_hash TEXT PRIMARY KEY,
    sent         REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS signups (
    email     TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    authority TEXT NOT NULL,
    consent   TEXT NOT NULL,
    confirmed REAL NOT NULL,
    updated   REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS forgotten (
    key     TEXT PRIMARY KEY,
    created REAL NOT NULL
) WITHOUT ROWID;
"""
SOFT_BOUNCES_IN_A_ROW = 3
"""A mailbox that soft-bounces this many issues running is treated as gone."""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    email: str
    name: str
    authority: str
    attempts: int = 0


@dataclasses.dataclass(frozen=True, slots=True)
class Finished:
    """What became of one hand-off, to be recorded."""

    email: str
    status: Status
    reply: str
    next_try: float = 0


@dataclasses.dataclass(frozen=True)
class Removal:
    email: str
    name: str
    authority: str
    what: str
    """`hard bounce`, `soft bounce` or `unsubscribed`."""
    reason: str
    time: float


@dataclasses.dataclass(frozen=True)
class Failure:
    email: str
    authority: str
    status: str
    attempts: int
    reply: str


class Ledger:
    """The send log at `path`; a missing file is a new ledger when `create`, and `created` says so.

    An existing file must be a ledger: an empty, damaged or foreign file is refused (LedgerError), because
    treating it as "nobody has anything yet" would send the issue to everyone again, suppressed readers too.
    """

    def __init__(self, path: Path, *, create: bool = True, timeout: float = 30) -> None:
        self.path = Path(path)
        self.created = not self.path.exists()
        if self.created and not create:
            raise LedgerError(
                f"no send history at {self.path}: nothing has been sent with this configuration yet "
                "(check `ledger` in newsletter.toml)"
            )
        if self.path.is_dir():
            raise LedgerError(f"{self.path} is a folder, not a ledger: set `ledger` in newsletter.toml to a file")
        if not self.created and self.path.stat().st_size == 0:
            raise LedgerError(
                f"{self.path} is empty, so the send history is lost: restore it from a backup, or "
                "delete it to start again (everyone, suppressed readers too, would then be sent "
                "every issue again)"
            )
        if not self.created and _header(self.path) != b"SQLite format 3\x00":
            raise LedgerError(
                f"{self.path} is damaged or not a newsletter ledger (it is not an SQLite database): "
                "restore it from a backup, or point `ledger` in newsletter.toml at the right file"
            )
        if self.created and not self.path.parent.is_dir():
            raise LedgerError(f"cannot create the ledger {self.path}: the folder {self.path.parent} does not exist")
        try:
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
            tables = {t for (t,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not self.created and "deliveries" not in tables:
                self.db.close()
                raise LedgerError(
                    f"{self.path} is an SQLite database but not a newsletter ledger: point `ledger` in "
                    "newsletter.toml at the right file"
                )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise LedgerError(_explain(self.path, exc)) from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- filling -----------------------------------------------------------------------------------

    def enqueue(self, issue: str, rows: Iterable[Row], batch: int = 2000) -> int:
        """Add recipients not yet in the ledger for this issue; returns how many were new."""
        added = 0
        now = time.time()
        chunk: list[tuple[object, ...]] = []

        def flush() -> int:
            with self.transaction():
                before = self.db.total_changes
                self.db.executemany(
                    "INSERT OR IGNORE INTO deliveries (issue, email, name, authority, status, updated) "
                    "VALUES (?, ?, ?, ?, 'pending', ?)",
                    chunk,
                )
                return self.db.total_changes - before

        for row in rows:
            chunk.append((issue, row.email, row.name, row.authority, now))
            if len(chunk) >= batch:
                added += flush()
                chunk = []
        if chunk:
            added += flush()
        return added

    def recover(self, issue: str) -> int:
        """Rows left `sending` by a killed run go out again, marked uncertain; returns how many."""
        with self.transaction():
            return self.db.execute(
                "UPDATE deliveries SET status = 'pending', uncertain = 1, updated = ? "
                "WHERE issue = ? AND status = 'sending'",
                (time.time(), issue),
            ).rowcount

    def retry_failed(self, issue: str) -> int:
        with self.transaction():
            return self.db.execute(
                "UPDATE deliveries SET status = 'pending', attempts = 0, next_try = 0, updated = ? "
                "WHERE issue = ? AND status = 'failed' AND email NOT IN (SELECT email FROM suppressions)",
                (time.time(), issue),
            ).rowcount

    def drop_suppressed(self, issue: str) -> int:
        """Suppressed since they were queued: never send, and say why."""
        with self.transaction():
            return self.db.execute(
                "UPDATE deliveries SET status = 'failed', updated = ?, reply = 'suppressed: ' || "
                "(SELECT reason FROM suppressions s WHERE s.email = deliveries.email) "
                "WHERE issue = ? AND status IN ('pending', 'deferred') "
                "AND email IN (SELECT email FROM suppressions)",
                (time.time(), issue),
            ).rowcount

    # -- sending -----------------------------------------------------------------------------------

    def due(self, issue: str, after: str = "", limit: int = 500, only: Collection[str] | None = None) -> list[Row]:
        """The next page of rows to send, in address order after `after` (keyset paging: flat memory)."""
        where, args = _only(only)
        cursor = self.db.execute(
            "SELECT email, name, authority, attempts FROM deliveries WHERE issue = ? AND email > ? "
            f"AND (status = 'pending' OR (status = 'deferred' AND next_try <= ?)) {where} ORDER BY email LIMIT ?",
            (issue, after, time.time(), *args, limit),
        )
        return [Row(*r) for r in cursor]

    def next_retry(self, issue: str, only: Collection[str] | None = None) -> float | None:
        """When the earliest deferred row may be tried again; None when nothing is waiting."""
        where, args = _only(only)
        when: float | None
        (when,) = self.db.execute(
            f"SELECT min(next_try) FROM deliveries WHERE issue = ? AND status = 'deferred' {where}", (issue, *args)
        ).fetchone()
        return when

    def sending(self, issue: str, email: str, message_id: str) -> bool:
        """Mark a row `sending` just before its hand-off; False when it is not ours to send any more."""
        return self.record(issue, [], [(email, message_id)])[0]

    def finished(self, issue: str, email: str, status: Status, reply: str, next_try: float = 0) -> None:
        self.record(issue, [Finished(email, status, reply, next_try)], [])

    def record(self, issue: str, finished: Sequence[Finished], claims: Sequence[tuple[str, str]]) -> list[bool]:
        """In one transaction: the finished hand-offs, then claims of rows about to be handed off, each
        (email, Message-ID); returns for each claim whether the row is ours to send.

        The send job groups its writes this way: what a worker finished goes in with its next claim, so the
        ledger never holds more than one `sending` row per connection, as if each were written at once.
        A claim checks both that the row is still waiting (so two jobs can never hand off the same row) and
        that the address has not been suppressed since it was queued (so a reader who unsubscribes or
        bounces during a long paced run gets nothing more); such a row is closed as failed.
        """
        now = time.time()
        claimed = []
        with self.transaction():
            if finished:
                self.db.executemany(
                    "UPDATE deliveries SET status = ?, reply = ?, next_try = ?, updated = ?, "
                    "sent_at = CASE WHEN ? = 'sent' THEN ? ELSE sent_at END WHERE issue = ? AND email = ?",
                    [(o.status, o.reply[:500], o.next_try, now, o.status, now, issue, o.email) for o in finished],
                )
            for email, message_id in claims:
                ours = (
                    self.db.execute(
                        "UPDATE deliveries SET status = 'sending', message_id = ?, attempts = attempts + 1, "
                        "updated = ? WHERE issue = ? AND email = ? AND status IN ('pending', 'deferred') "
                        "AND email NOT IN (SELECT email FROM suppressions)",
                        (message_id, now, issue, email),
                    ).rowcount
                    == 1
                )
                if not ours:
                    self.db.execute(
                        "UPDATE deliveries SET status = 'failed', updated = ?, reply = 'suppressed: ' || "
                        "(SELECT reason FROM suppressions s WHERE s.email = deliveries.email) "
                        "WHERE issue = ? AND email = ? AND status IN ('pending', 'deferred') "
                        "AND email IN (SELECT email FROM suppressions)",
                        (now, issue, email),
                    )
                claimed.append(ours)
        return claimed

    def sent_since(self, since: float) -> int:
        """Messages handed to the relay since a time, every issue: the daily cap counts these (not rows
        marked as sent by hand, which never went through it)."""
        count: int
        (count,) = self.db.execute(
            "SELECT count(*) FROM deliveries WHERE status = 'sent' AND updated >= ? AND attempts > 0", (since,)
        ).fetchone()
        return count

    def mark_sent(self, issue: str, note: str) -> int:
        """Record every waiting row of an issue as delivered by other means; returns how many."""
        now = time.time()
        with self.transaction():
            return self.db.execute(
                "UPDATE deliveries SET status = 'sent', reply = ?, sent_at = ?, updated = ? "
                "WHERE issue = ? AND status IN ('pending', 'deferred') "
                "AND email NOT IN (SELECT email FROM suppressions)",
                (note, now, now, issue),
            ).rowcount

    def unfinished_issues(self) -> set[str]:
        """Issues with readers still waiting: a run stopped (a daily cap, a crash) before everyone had it."""
        return {
            i
            for (i,) in self.db.execute(
                "SELECT DISTINCT issue FROM deliveries WHERE status IN ('pending', 'deferred', 'sending')"
            )
        }

    def newest_issue(self) -> str | None:
        """The newest issue this ledger has started: the unattended job never sends one older than it."""
        newest: str | None
        (newest,) = self.db.execute("SELECT max(issue) FROM deliveries").fetchone()
        return newest

    # -- reporting ---------------------------------------------------------------------------------

    def summary(self, issue: str) -> dict[str, dict[str, int]]:
        """Per authority: a count per status, and `uncertain` (may have two copies)."""
        table: dict[str, dict[str, int]] = {}
        for authority, status, count, uncertain in self.db.execute(
            "SELECT authority, status, count(*), sum(uncertain) FROM deliveries WHERE issue = ? "
            "GROUP BY authority, status",
            (issue,),
        ):
            row = table.setdefault(authority, dict.fromkeys((*STATUSES, "uncertain"), 0))
            row[status] = count
            row["uncertain"] += uncertain
        return table

    def sent_counts(self, issue: str) -> dict[str, int]:
        """Per authority, how many have this issue (bounced ones included: the relay took them)."""
        return dict(
            self.db.execute(
                "SELECT authority, count(*) FROM deliveries WHERE issue = ? AND sent_at IS NOT NULL GROUP BY authority",
                (issue,),
            )
        )

    def previous_issue(self, issue: str) -> str | None:
        previous: str | None
        (previous,) = self.db.execute("SELECT max(issue) FROM deliveries WHERE issue < ?", (issue,)).fetchone()
        return previous

    def issue_started(self, issue: str | None) -> float | None:
        """When the first message of an issue went out."""
        started: float | None
        (started,) = self.db.execute("SELECT min(sent_at) FROM deliveries WHERE issue = ?", (issue,)).fetchone()
        return started

    def removals_since(self, since: float) -> list[Removal]:
        """Bounces and unsubscribes from a time on, with the authority each address was last sent for."""
        rows = self.db.execute(
            "SELECT b.email, b.kind || ' bounce', b.reason, b.received FROM bounces b WHERE b.received >= ? "
            "UNION ALL SELECT s.email, 'unsubscribed', s.reason, s.created FROM suppressions s "
            "WHERE s.created >= ? AND s.reason LIKE 'unsubscribed%'",
            (since, since),
        ).fetchall()
        removals = []
        for email, what, reason, when in rows:
            last = self.db.execute(
                "SELECT name, authority FROM deliveries WHERE email = ? ORDER BY issue DESC LIMIT 1", (email,)
            ).fetchone()
            name, authority = last if last else ("", "")
            removals.append(Removal(email, name, authority, what, reason, when))
        return removals

    def failures(self, issue: str) -> Iterator[Failure]:
        for row in self.db.execute(
            "SELECT email, authority, status, attempts, coalesce(reply, '') FROM deliveries "
            "WHERE issue = ? AND status IN ('failed', 'deferred') ORDER BY authority, email",
            (issue,),
        ):
            yield Failure(*row)

    def uncertain(self, issue: str) -> list[str]:
        return [
            e
            for (e,) in self.db.execute(
                "SELECT email FROM deliveries WHERE issue = ? AND uncertain = 1 ORDER BY email", (issue,)
            )
        ]

    # -- suppression -------------------------------------------------------------------------------

    def suppress(self, email: str, reason: str, source: str) -> bool:
        """Put an address on the suppression list; False when it was already there (the first reason stays)."""
        with self.transaction():
            return (
                self.db.execute(
                    "INSERT OR IGNORE INTO suppressions VALUES (?, ?, ?, ?)",
                    (email.lower(), reason, source, time.time()),
                ).rowcount
                == 1
            )

    def unsuppress(self, email: str) -> bool:
        with self.transaction():
            return self.db.execute("DELETE FROM suppressions WHERE email = ?", (email.lower(),)).rowcount == 1

    def suppressed(self) -> set[str]:
        return {e for (e,) in self.db.execute("SELECT email FROM suppressions")}

    def suppression(self, email: str) -> str | None:
        """Why an address is suppressed, or None."""
        row = self.db.execute("SELECT reason FROM suppressions WHERE email = ?", (email.lower(),)).fetchone()
        return row[0] if row else None

    def suppressions(self) -> list[tuple[str, str, str, float]]:
        """(email, reason, source, time), newest first."""
        return list(self.db.execute("SELECT email, reason, source, created FROM suppressions ORDER BY created DESC"))

    # -- bounces -----------------------------------------------------------------------------------

    def bounce(self, email: str, issue: str, kind: Literal["hard", "soft"], reason: str, source: str) -> bool:
        """Record a bounce of one issue (once: the same report read twice changes nothing); True when new.

        A hard bounce suppresses the address at once; soft ones after SOFT_BOUNCES_IN_A_ROW issues running.
        The issue's ledger row says it bounced.
        """
        email = email.lower()
        with self.transaction():
            # A hard report after a soft one for the same issue upgrades it; anything else is a repeat.
            new = (
                self.db.execute(
                    "INSERT INTO bounces VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (email, issue) DO UPDATE SET "
                    "kind = 'hard', reason = excluded.reason WHERE bounces.kind = 'soft' AND excluded.kind = 'hard'",
                    (email, issue, kind, reason[:500], source, time.time()),
                ).rowcount
                == 1
            )
            if new:
                self.db.execute(
                    "UPDATE deliveries SET status = 'failed', reply = ?, updated = ? WHERE issue = ? AND email = ?",
                    (f"bounced ({kind}): {reason}"[:500], time.time(), issue, email),
                )
        if kind == "hard":
            self.suppress(email, f"hard bounce: {reason}"[:500], source)
        elif self.soft_streak(email) >= SOFT_BOUNCES_IN_A_ROW:
            self.suppress(email, f"soft bounces from {SOFT_BOUNCES_IN_A_ROW} issues in a row: {reason}"[:500], source)
        return new

    def soft_streak(self, email: str) -> int:
        """How many of the latest issues sent to this address, running back from the newest, soft-bounced."""
        issues = [
            i
            for (i,) in self.db.execute(
                "SELECT DISTINCT issue FROM (SELECT issue FROM deliveries WHERE email = ? "
                "UNION SELECT issue FROM bounces WHERE email = ?) ORDER BY issue DESC",
                (email.lower(), email.lower()),
            )
        ]
        bounced = {
            i
            for (i,) in self.db.execute("SELECT issue FROM bounces WHERE email = ? AND kind = 'soft'", (email.lower(),))
        }
        streak = 0
        for issue in issues:
            if issue not in bounced:
                break
            streak += 1
        return streak

    def last_issue_sent_to(self, email: str) -> str | None:
        """The newest issue this address was handed to the relay for: where a bounce without an ID belongs."""
        row = self.db.execute(
            "SELECT max(issue) FROM deliveries WHERE email = ? AND status IN ('sent', 'failed')", (email.lower(),)
        ).fetchone()
        return row[0] if row else None

    def transaction(self) -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on an exception): for other modules' writes to this database."""
        return _Transaction(self.db)


def _header(path: Path) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read(16)
    except OSError as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc.strerror or exc}") from None


def _explain(path: Path, exc: sqlite3.DatabaseError) -> str:
    """One line for what SQLite said about the ledger file, with what to do."""
    text = str(exc)
    if "locked" in text:
        return f"the ledger {path} is busy (another command holds it): try again in a minute"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return f"cannot write the ledger {path} ({text}): check the folder exists and is writable"
    return (
        f"{path} is damaged or not a newsletter ledger ({text}): restore it from a backup, or point `ledger` in "
        "newsletter.toml at the right file"
    )


def _only(authorities: Collection[str] | None) -> tuple[str, tuple[str, ...]]:
    if authorities is None:
        return "", ()
    ordered = tuple(sorted(authorities))
    return f"AND authority IN ({', '.join('?' * len(ordered))})", ordered


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, so two runs of the job never interleave a read and a write."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
