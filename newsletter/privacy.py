"""What is held about a reader, erasing it on request (`forget`), and keeping it no longer than needed (`tidy`).

UK GDPR gives a reader the right to see what is held about them and to have it erased, and says personal
data is kept no longer than needed. The ledger still has to count: how many had each issue, how many
bounced or unsubscribed. So an address is never simply deleted from the history: it is replaced by a
keyed hash (HMAC-SHA256 of the lower-cased address, with a key derived from NEWSLETTER_SECRET), which
keeps every count right and cannot be turned back into the address without the secret.

- `forget` replaces the address everywhere in the ledger by `forgotten:<hash>`, empties the names, deletes
  the reader's own sign-up, drops their spooled unsubscribes, and records the hash in `forgotten`: a
  forgotten address that reappears in an authority's export is never mailed again (`without_forgotten`).
- `tidy` replaces addresses and names in delivery and bounce rows older than `retention_months` by
  `expired:<hash>`. Suppressions stay: honouring an opt-out needs the address.

Both overwrite what they replace on disk (`secure_delete`, then a WAL checkpoint), so the old text is not
left in free pages. Changing the secret breaks the link between an address and its hash: keep it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import re
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.ledger import Ledger
from newsletter.recipients import Authority, Recipient, RowProblem, load_authorities, read_list
from newsletter.sealed import derived_key

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.recipients import ListSummary

FORGOTTEN = "forgotten:"
"""What replaces an erased address in the ledger, before its hash."""
EXPIRED = "expired:"
"""What replaces an address in rows older than the retention period, before its hash."""
HASHED = (FORGOTTEN, EXPIRED)
SQLValue = str | bytes | int | float | None
_INFO = b"newsletter forgotten address v1"
"""HKDF's info: this key is for hashing addresses only, never the unsubscribe tokens' key."""


def _key(secret: str) -> bytes:
    return derived_key(secret, _INFO)


def keyed_hash(email: str, secret: str) -> str:
    """The address's keyed hash (hex): the same for any case of the address, unguessable without the secret.
    It stands for a forgotten address, an expired row's, and an address asking for a confirmation today."""
    return hmac.new(_key(secret), email.strip().lower().encode(), hashlib.sha256).hexdigest()


def _address_pattern(email: str) -> re.Pattern[str]:
    """The address as a whole word, any case: forgetting ann@example.org leaves joann@example.org alone."""
    return re.compile(rf"(?<![\w.!#$%&'*+/=?^`{{|}}~-]){re.escape(email)}(?![\w-]|\.[\w-])", re.IGNORECASE)


def _redactor(email: str, replacement: str) -> tuple[Callable[[SQLValue], SQLValue], Callable[[SQLValue], bool]]:
    """Two SQL functions: the value with every occurrence of the address replaced; whether it holds one."""
    pattern = _address_pattern(email)

    def redact(value: SQLValue) -> SQLValue:
        return pattern.sub(replacement, value) if isinstance(value, str) else value

    def holds(value: SQLValue) -> bool:
        return isinstance(value, str) and pattern.search(value) is not None

    return redact, holds


def _tables(db: sqlite3.Connection) -> dict[str, list[str]]:
    """Every table of the ledger and its columns: erasure must reach tables added after this module."""
    names = [
        n for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    ]
    return {name: [row[1] for row in db.execute(f'PRAGMA table_info("{name}")')] for name in names}


def _scrub_file(db: sqlite3.Connection) -> None:
    """Move what was just committed from the write-ahead log into the file, so no old copy is left in the log."""
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# -- what is held ------------------------------------------------------------------------------------


def listed_in(settings: Settings, email: str) -> list[tuple[Authority, Recipient]]:
    """Each authority whose CSV list has this address, with that row: where it would come back from."""
    email = email.strip().lower()
    found = []
    for authority in load_authorities(settings.recipients / "authorities.yaml"):
        path = settings.recipients / f"{authority.slug}.csv"
        if not path.exists():
            continue
        for item in read_list(path, authority.slug):
            if isinstance(item, Recipient) and item.email == email:
                found.append((authority, item))
                break
    return found


def _when(seconds: float | None) -> str | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(timespec="seconds") if seconds is not None else None


def held_about(settings: Settings, ledger: Ledger, email: str, secret: str) -> dict[str, object]:
    """Everything the newsletter holds about one address, as plain data (the manage page's download).

    Rows already replaced by the keyed hash (older than the retention period, or erased) are counted, not
    listed: they no longer say who they were about, but the hash still links them to the address.
    """
    from newsletter.endpoint import Spool, spool_folder

    email = email.strip().lower()
    db = ledger.db
    key = keyed_hash(email, secret)
    signup = db.execute(
        "SELECT name, authority, consent, confirmed, updated FROM signups WHERE lower(email) = ?", (email,)
    ).fetchone()
    deliveries = [
        {
            "issue": issue,
            "name": name,
            "authority": authority,
            "status": status,
            "attempts": attempts,
            "sent": _when(sent_at),
            "updated": _when(updated),
            "relay_reply": reply,
        }
        for issue, name, authority, status, attempts, sent_at, updated, reply in db.execute(
            "SELECT issue, name, authority, status, attempts, sent_at, updated, reply FROM deliveries "
            "WHERE lower(email) = ? ORDER BY issue",
            (email,),
        )
    ]
    hashed = {
        prefix: db.execute("SELECT count(*) FROM deliveries WHERE email = ?", (prefix + key,)).fetchone()[0]
        for prefix in HASHED
    }
    suppression = db.execute(
        "SELECT reason, source, created FROM suppressions WHERE lower(email) = ?", (email,)
    ).fetchone()
    bounces = [
        {"issue": issue, "kind": kind, "reason": reason, "source": source, "received": _when(received)}
        for issue, kind, reason, source, received in db.execute(
            "SELECT issue, kind, reason, source, received FROM bounces WHERE lower(email) = ? ORDER BY issue",
            (email,),
        )
    ]
    spooled = [reason for _, who, reason in Spool(spool_folder(settings.ledger)).entries() if who.lower() == email]
    try:
        lists = [
            {"authority": a.slug, "authority_name": a.name, "name": r.name, "other_columns": dict(r.fields)}
            for a, r in listed_in(settings, email)
        ]
    except (OSError, ValueError) as exc:  # ListError is a ValueError
        lists = [{"error": f"the authority lists could not be read: {exc}"}]
    return {
        "address": email,
        "list": settings.list.name,
        "produced": _when(time.time()),
        "erased": db.execute("SELECT 1 FROM forgotten WHERE key = ?", (key,)).fetchone() is not None,
        "signup": (
            dict(zip(("name", "authority", "consent", "confirmed", "updated"), signup, strict=True))
            | {"confirmed": _when(signup[3]), "updated": _when(signup[4])}
            if signup
            else None
        ),
        "authority_lists": lists,
        "deliveries": deliveries,
        "older_deliveries_kept_as_a_keyed_hash": hashed[EXPIRED],
        "suppression": (
            {"reason": suppression[0], "source": suppression[1], "since": _when(suppression[2])}
            if suppression
            else None
        ),
        "bounces": bounces,
        "unsubscribes_waiting_to_be_recorded": spooled,
        "retention_months": settings.retention_months,
    }


# -- erasure -----------------------------------------------------------------------------------------


@dataclasses.dataclass
class Forgotten:
    """What `forget` changed, for the command to report."""

    email: str
    key: str
    closed: int = 0
    """Deliveries still waiting to go to them, closed."""
    changed: dict[str, int] = dataclasses.field(default_factory=dict)
    """Rows per table that held the address (now the hash, or deleted)."""
    spooled: int = 0
    lists: list[Authority] = dataclasses.field(default_factory=list)
    """Authorities whose CSV still lists them: ask them to remove the address."""


def forget(settings: Settings, ledger: Ledger, email: str, secret: str) -> Forgotten:
    """Erase one address: the ledger keeps only `forgotten:<hash>` (counts stay right) and never mails it again.

    Every table is searched, including ones this module does not know: a value holding the address has it
    replaced by the hash (a row that would then collide with one already hashed is deleted). The reader's
    sign-up row, their own statement, is deleted; names in their delivery rows are emptied; deliveries still
    waiting are closed.
    """
    from newsletter.endpoint import Spool, spool_folder

    email = email.strip().lower()
    key = keyed_hash(email, secret)
    done = Forgotten(email, key)
    db = ledger.db
    redact, holds = _redactor(email, FORGOTTEN + key)
    db.create_function("redact", 1, redact, deterministic=True)
    db.create_function("holds", 1, holds, deterministic=True)
    db.execute("PRAGMA secure_delete = ON")
    with ledger.transaction():
        db.execute("INSERT OR IGNORE INTO forgotten VALUES (?, ?)", (key, time.time()))
        done.closed = db.execute(
            "UPDATE deliveries SET status = 'failed', reply = 'not sent: erased at their request', updated = ? "
            "WHERE lower(email) = ? AND status IN ('pending', 'deferred')",
            (time.time(), email),
        ).rowcount
        db.execute("UPDATE deliveries SET name = '' WHERE lower(email) = ?", (email,))
        db.execute("UPDATE OR IGNORE deliveries SET email = ? WHERE email = ?", (FORGOTTEN + key, EXPIRED + key))
        signups = db.execute("DELETE FROM signups WHERE lower(email) = ?", (email,)).rowcount
        if signups:
            done.changed["signups"] = signups
        for table, columns in _tables(db).items():
            if table == "forgotten":
                continue
            for column in columns:
                match = f'instr(lower("{column}"), ?) > 0 AND holds("{column}")'
                changed = db.execute(
                    f'UPDATE OR IGNORE "{table}" SET "{column}" = redact("{column}") WHERE {match}', (email,)
                ).rowcount
                changed += db.execute(f'DELETE FROM "{table}" WHERE {match}', (email,)).rowcount  # collided
                if changed:
                    done.changed[table] = max(done.changed.get(table, 0), changed)
    _scrub_file(db)
    spool = Spool(spool_folder(settings.ledger))
    for path, who, _ in spool.entries():
        if who.lower() == email:
            path.unlink(missing_ok=True)
            done.spooled += 1
    done.lists = [authority for authority, _ in listed_in(settings, email)]
    return done


def without_forgotten(
    people: Iterable[Recipient], ledger: Ledger, secret: Callable[[], str], summaries: dict[str, ListSummary]
) -> Iterator[Recipient]:
    """The people to queue, less anyone erased with `forget` who is back on a list; each list's summary
    says how many it brought back, so its owner can be asked to remove them. `secret` is only asked for when
    someone has been forgotten."""
    if ledger.db.execute("SELECT 1 FROM forgotten LIMIT 1").fetchone() is None:
        yield from people
        return
    key = _key(secret())
    forgotten = {k for (k,) in ledger.db.execute("SELECT key FROM forgotten")}
    skipped: dict[str, int] = {}
    for person in people:
        if hmac.new(key, person.email.lower().encode(), hashlib.sha256).hexdigest() in forgotten:
            skipped[person.authority] = skipped.get(person.authority, 0) + 1
            continue
        yield person
    for slug, count in skipped.items():
        summary = summaries.get(slug)
        if summary is not None:
            summary.problems.append(
                RowProblem(
                    summary.file,
                    0,
                    f"{count} address(es) on this list were erased at their request (`newsletter forget`) and are "
                    f"not sent the issue: ask {summary.authority.name} to remove them from its export",
                    "warning",
                )
            )


# -- retention ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Tidied:
    """What `tidy` replaced: rows older than the cutoff, now holding the keyed hash."""

    cutoff: float
    deliveries: int = 0
    bounces: int = 0

    @property
    def total(self) -> int:
        return self.deliveries + self.bounces

    def line(self) -> str:
        before = dt.datetime.fromtimestamp(self.cutoff).strftime("%Y-%m-%d")
        if not self.total:
            return f"Retention: nothing older than {before} to tidy."
        return (
            f"Retention: {self.deliveries:,} delivery row(s) and {self.bounces:,} bounce(s) from before {before} "
            "now keep a keyed hash instead of the address and name."
        )


def months_before(when: dt.datetime, months: int) -> dt.datetime:
    """The same day `months` calendar months earlier (the month's last day when it is shorter)."""
    index = when.year * 12 + when.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for day in range(when.day, 27, -1):
        try:
            return when.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return when.replace(year=year, month=month, day=min(when.day, 28))


def tidy(ledger: Ledger, secret: str, months: int, now: dt.datetime | None = None) -> Tidied:
    """Replace addresses and names in finished delivery rows and bounces older than `months` by `expired:<hash>`.

    Rows still waiting to be sent are left (they are in use); suppressions are left (an opt-out is honoured
    only while its address is known); sign-ups are the reader's own, current statement and are left.
    """
    cutoff = months_before(now or dt.datetime.now().astimezone(), months).timestamp()
    done = Tidied(cutoff)
    db = ledger.db
    key = _key(secret)

    def pseudonym(email: str) -> str:
        return EXPIRED + hmac.new(key, email.lower().encode(), hashlib.sha256).hexdigest()

    def redact(text: SQLValue, email: str) -> SQLValue:
        return _address_pattern(email).sub(pseudonym(email), text) if isinstance(text, str) else text

    db.create_function("pseudonym", 1, pseudonym, deterministic=True)
    db.create_function("redact_address", 2, redact, deterministic=True)
    db.execute("PRAGMA secure_delete = ON")
    fresh = "email NOT LIKE 'expired:%' AND email NOT LIKE 'forgotten:%'"
    with ledger.transaction():
        done.deliveries = db.execute(
            "UPDATE OR IGNORE deliveries SET email = pseudonym(email), name = '', "
            f"reply = redact_address(reply, email) WHERE {fresh} AND status IN ('sent', 'failed') "
            "AND coalesce(sent_at, updated) < ?",
            (cutoff,),
        ).rowcount
        done.bounces = db.execute(
            "UPDATE OR IGNORE bounces SET email = pseudonym(email), reason = redact_address(reason, email) "
            f"WHERE {fresh} AND received < ?",
            (cutoff,),
        ).rowcount
    if done.total:
        _scrub_file(db)
    return done


def tidy_ledger(path: Path, secret: str, months: int) -> Tidied:
    """`tidy` on the ledger at `path` (which must exist): for the command line."""
    with Ledger(path, create=False) as ledger:
        return tidy(ledger, secret, months)
