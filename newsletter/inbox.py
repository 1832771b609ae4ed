"""Inbox processing: read the reply and bounce mailbox, act on what `bounce.classify` understands, leave the rest.

`process(source, ledger, secret, list_id)` records bounces and unsubscribes in the ledger, then moves the
message to the processed folder; a delivery warning (`delayed`) is reported and moved, never recorded.
Only messages about the newsletter are moved (a bounce or automatic reply that names no issue of ours and
no address we sent to may be a person's own mail in a shared mailbox). Nothing is ever deleted. Every
step is idempotent (the ledger keys bounces by address and issue and ignores repeated suppressions), so a
run stopped part-way (a dropped connection) is finished by running it again, and reading the same
message twice changes nothing.

Sources: IMAP over TLS (`imaps://host`, or `imap://host` with STARTTLS; plain IMAP only to loopback), a
Maildir (`maildir:DIR`, processed messages go to its `.Processed` subfolder) or an mbox (`mbox:FILE`,
read-only: processed messages stay, and idempotency makes that safe).
"""

from __future__ import annotations

import collections
import dataclasses
import imaplib
import mailbox
import os
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError

from newsletter.bounce import KINDS, Classified, Failure, Kind, classify, short
from newsletter.config import IMAP_PASSWORD_ENV as PASSWORD_ENV
from newsletter.errors import NewsletterError
from newsletter.ledger import SOFT_BOUNCES_IN_A_ROW, Ledger
from newsletter.recipients import address as held_address
from newsletter.transport import is_loopback

PROCESSED = "Processed"
SOURCE = "inbox"
"""What the ledger records as the source of bounces and suppressions made here."""


class InboxError(NewsletterError):
    """The mailbox cannot be read or changed (refused login, lost connection, ...): stop the run.

    Everything done before the error is recorded and moved; `report` says what that was. Running
    again finishes the job.
    """

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


# -- sources -------------------------------------------------------------------------------------


class Source(ABC):
    """A mailbox to work through: list messages (id and bytes), move one to a folder, never delete."""

    processed: str = PROCESSED
    can_move: bool = True

    def open(self) -> None:
        return None

    def close(self) -> None:
        return None

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def messages(self) -> Iterator[tuple[str, bytes]]:
        """(id, bytes) of every message in the mailbox, one at a time, in arrival order."""

    @abstractmethod
    def move(self, ref: str, folder: str | None = None) -> bool:
        """Move one message to `folder` (the processed folder by default); False when it cannot be moved."""

    @abstractmethod
    def describe(self) -> str: ...


class MaildirSource(Source):
    """A Maildir; processed messages go to its Maildir++ subfolder (`.Processed`), by an atomic rename."""

    def __init__(self, path: Path, processed: str = PROCESSED) -> None:
        self.path = Path(path)
        self.processed = processed
        if not (self.path / "cur").is_dir() or not (self.path / "new").is_dir():
            raise InboxError(f"{self.path} is not a Maildir (it needs cur/ and new/)")
        self.box = mailbox.Maildir(self.path, factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        keys = sorted(self.box.keys(), key=self._arrival)
        for key in keys:
            try:
                yield key, self.box.get_bytes(key)
            except (KeyError, FileNotFoundError):
                continue  # moved or removed by someone else since the listing

    def _arrival(self, key: str) -> tuple[float, str]:
        for sub in ("new", "cur"):
            path = self._file(key, sub)
            if path is not None:
                try:
                    return path.stat().st_mtime, key
                except OSError:
                    break
        return 0.0, key

    def _file(self, key: str, sub: str) -> Path | None:
        folder = self.path / sub
        exact = folder / key
        if exact.exists():
            return exact
        for candidate in folder.glob(f"{key}{self.box.colon}*"):
            return candidate
        return None

    def move(self, ref: str, folder: str | None = None) -> bool:
        name = folder or self.processed
        if not name or "/" in name or name.startswith("."):
            raise InboxError(f"`{name}` cannot be a Maildir folder name")
        target = self.path / f".{name}"
        if not (target / "cur").is_dir():
            self.box.add_folder(name)
        for sub in ("new", "cur"):
            source = self._file(ref, sub)
            if source is not None:
                os.rename(source, target / sub / source.name)
                return True
        return False

    def describe(self) -> str:
        return f"maildir:{self.path}"


class MboxSource(Source):
    """An mbox file, read only: processed messages cannot be moved out, so they stay (idempotency)."""

    can_move = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InboxError(f"{self.path} is not an mbox file")
        self.box = mailbox.mbox(self.path, factory=None, create=False)

    def messages(self) -> Iterator[tuple[str, bytes]]:
        for key in self.box.iterkeys():
            yield str(key), self.box.get_bytes(key)

    def move(self, ref: str, folder: str | None = None) -> bool:
        return False

    def describe(self) -> str:
        return f"mbox:{self.path}"

    def close(self) -> None:
        self.box.close()


class ImapSource(Source):
    """One IMAP connection to one folder.

    TLS from the start (`tls`, port 993) or upgraded by STARTTLS (`starttls`, port 143); plain IMAP
    only to a loopback address (the tests). Messages are fetched with BODY.PEEK, so what is left
    keeps its unread mark; moved with MOVE (RFC 6851), or COPY and UID EXPUNGE of that one message
    (UIDPLUS). Never CLOSE or plain EXPUNGE: those would remove messages someone else marked deleted.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        username: str,
        password: str,
        security: Literal["tls", "starttls", "plain"] = "tls",
        folder: str = "INBOX",
        processed: str = PROCESSED,
        timeout: float = 60,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if security not in ("tls", "starttls", "plain"):
            raise ValueError(f"unknown security {security!r}")
        if security == "plain" and not is_loopback(host):
            raise InboxError(f"refusing to log in to {host} without TLS: use imaps:// or imap:// with STARTTLS")
        self.host = host
        self.port = port or (993 if security == "tls" else 143)
        self.username = username
        self.password = password
        self.security = security
        self.folder = _quote(folder)
        self.folder_name = folder
        self.processed = processed
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.imap: imaplib.IMAP4 | None = None
        self.capabilities: set[str] = set()
        self._folders: set[str] = set()

    def describe(self) -> str:
        scheme = "imaps" if self.security == "tls" else "imap"
        return f"{scheme}://{self.username}@{self.host}:{self.port}/{self.folder_name}"

    def open(self) -> None:
        where = f"{self.host}:{self.port}"
        context = self.ssl_context or ssl.create_default_context()
        try:
            if self.security == "tls":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context, timeout=self.timeout)
            else:
                imap = imaplib.IMAP4(self.host, self.port, timeout=self.timeout)
                if self.security == "starttls":
                    try:
                        imap.starttls(ssl_context=context)
                    except imaplib.IMAP4.error as exc:
                        imap.shutdown()
                        raise InboxError(f"{where} does not offer STARTTLS, which is required: {exc}") from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise InboxError(f"cannot connect to the IMAP server {where}: {exc}") from None
        self.imap = imap
        try:
            imap.login(self.username, self.password)
        except imaplib.IMAP4.abort as exc:
            self._abandon()
            raise InboxError(f"the IMAP connection to {where} was lost while logging in: {exc}") from None
        except imaplib.IMAP4.error as exc:
            self._abandon()
            raise InboxError(f"the IMAP server {where} refused the login for {self.username}: {_said(exc)}") from None
        except OSError as exc:
            self._abandon()
            raise InboxError(f"the IMAP connection to {where} failed while logging in: {exc}") from None
        with self._guard("reading its capabilities"):
            typ, data = imap.capability()
            self.capabilities = set(data[0].decode("ascii", "replace").upper().split()) if typ == "OK" else set()
        with self._guard(f"opening the folder {self.folder_name}"):
            typ, data = imap.select(self.folder)
        if typ != "OK":
            raise InboxError(f"cannot open the folder `{self.folder_name}` on {where}: {_said(data)}")

    def messages(self) -> Iterator[tuple[str, bytes]]:
        imap = self._connected()
        with self._guard("listing the messages"):
            typ, data = imap.uid("SEARCH", "UNDELETED")  # no charset: imaplib would drop a None here anyway
        if typ != "OK":
            raise InboxError(f"{self.host} would not list the messages: {_said(data)}")
        for uid in (data[0] or b"").split():
            ref = uid.decode("ascii")
            with self._guard(f"fetching message UID {ref}"):
                typ, data = imap.uid("FETCH", ref, "(BODY.PEEK[])")
            if typ != "OK":
                raise InboxError(f"{self.host} would not send message UID {ref}: {_said(data)}")
            raw = _literal(data, ref)
            if raw is None:
                continue  # gone since the listing
            yield ref, raw

    def move(self, ref: str, folder: str | None = None) -> bool:
        imap = self._connected()
        name = folder or self.processed
        target = _quote(name)
        self._ensure(name, target)
        with self._guard(f"moving message UID {ref} to {name}"):
            if "MOVE" in self.capabilities:
                typ, data = imap.uid("MOVE", ref, target)
            elif "UIDPLUS" in self.capabilities:
                typ, data = imap.uid("COPY", ref, target)
                if typ == "OK":
                    typ, data = imap.uid("STORE", ref, "+FLAGS.SILENT", r"(\Deleted)")
                if typ == "OK":
                    typ, data = imap.uid("EXPUNGE", ref)
            else:
                raise InboxError(
                    f"{self.host} supports neither MOVE nor UIDPLUS, so a message cannot be moved "
                    "without touching others"
                )
        if typ != "OK":
            raise InboxError(f"{self.host} would not move message UID {ref} to {name}: {_said(data)}")
        return True

    def _ensure(self, name: str, quoted: str) -> None:
        if name in self._folders:
            return
        imap = self._connected()
        with self._guard(f"looking for the folder {name}"):
            typ, data = imap.list('""', quoted)
            exists = typ == "OK" and any(item for item in data if item)
            if not exists:
                typ, data = imap.create(quoted)
                if typ != "OK":
                    raise InboxError(f"cannot create the folder `{name}` on {self.host}: {_said(data)}")
                imap.subscribe(quoted)
        self._folders.add(name)

    def close(self) -> None:
        imap, self.imap = self.imap, None
        if imap is None:
            return
        with suppress(OSError, imaplib.IMAP4.error):
            imap.logout()  # LOGOUT, never CLOSE: CLOSE would expunge others' deleted messages

    def _abandon(self) -> None:
        imap, self.imap = self.imap, None
        if imap is not None:
            with suppress(OSError):
                imap.shutdown()

    def _connected(self) -> imaplib.IMAP4:
        if self.imap is None:
            raise InboxError(f"not connected to {self.host}: the connection was lost or never opened")
        return self.imap

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        where = f"{self.host}:{self.port}"
        try:
            yield
        except InboxError:
            raise
        except imaplib.IMAP4.abort as exc:
            self._abandon()
            raise InboxError(f"the IMAP connection to {where} was lost while {what}: {exc}") from None
        except imaplib.IMAP4.error as exc:
            raise InboxError(f"the IMAP server {where} refused {what}: {_said(exc)}") from None
        except OSError as exc:  # timeouts, resets, TLS errors
            self._abandon()
            raise InboxError(
                f"the IMAP connection to {where} failed while {what}: {type(exc).__name__}: {exc}"
            ) from None


def _literal(data: list[Any], uid: str) -> bytes | None:
    """The message bytes of a FETCH response, checked against the size the server announced."""
    for item in data:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        head = item[0].decode("ascii", "replace") if isinstance(item[0], bytes) else str(item[0])
        size = re.search(r"BODY\[\]\s*\{(\d+)\}", head, re.IGNORECASE)
        if size is None:
            continue
        body: bytes = item[1]
        if len(body) != int(size.group(1)):
            raise InboxError(
                f"message UID {uid} arrived cut short ({len(body)} of {size.group(1)} bytes): the connection was lost"
            )
        return body
    return None


def _quote(name: str) -> str:
    if not name or any(ord(c) < 32 or ord(c) > 126 for c in name):
        raise InboxError(f"`{name}`: folder names must be plain ASCII")
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _said(data: object) -> str:
    if isinstance(data, list):
        data = b" ".join(d for d in data if isinstance(d, bytes))
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def open_source(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    folder: str = "INBOX",
    processed: str = PROCESSED,
    starttls: bool | None = None,
    timeout: float = 60,
) -> Source:
    """The source named by `url`: imaps://host[:993], imap://host[:143] (STARTTLS), maildir:DIR or mbox:FILE.

    For IMAP the password comes from the caller (the CLI reads NEWSLETTER_IMAP_PASSWORD); `starttls`
    None means required for every host but loopback, and False is refused for any other host.
    """
    if url.startswith("maildir:"):
        return MaildirSource(Path(url.removeprefix("maildir:") or "inbox"), processed)
    if url.startswith("mbox:"):
        return MboxSource(Path(url.removeprefix("mbox:")))
    parts = urlsplit(url)
    if parts.scheme not in ("imap", "imaps") or not parts.hostname:
        raise InboxError(f"`{url}` is not a mailbox: use imaps://host:993, imap://host:143, maildir:DIR or mbox:FILE")
    user = username or (unquote(parts.username) if parts.username else None)
    if not user:
        raise InboxError(f"{parts.hostname}: no IMAP user name (set [inbox] username)")
    if not password:
        raise InboxError(f"the IMAP login needs a password: set {PASSWORD_ENV} in the environment")
    if parts.scheme == "imaps":
        security: Literal["tls", "starttls", "plain"] = "tls"
    elif starttls is None:
        security = "plain" if is_loopback(parts.hostname) else "starttls"
    else:
        security = "starttls" if starttls else "plain"
    return ImapSource(
        parts.hostname,
        parts.port,
        username=user,
        password=password,
        security=security,
        folder=folder,
        processed=processed,
        timeout=timeout,
    )


# -- processing ----------------------------------------------------------------------------------


@dataclasses.dataclass
class Line:
    """One message's outcome, for the terminal."""

    message: str
    """The subject (or Message-ID) of the message."""
    kind: Kind
    address: str
    action: str
    moved: bool = False
    ref: str = ""
    """The source's id of the message: IMAP UID, Maildir key, mbox index."""


@dataclasses.dataclass
class Report:
    counts: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    lines: list[Line] = dataclasses.field(default_factory=list)
    moved: int = 0
    left: int = 0
    processed: str = PROCESSED

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        kinds = ", ".join(f"{k.replace('_', ' ')} {self.counts[k]}" for k in KINDS if self.counts[k])
        return (
            f"{self.total} message(s){f' ({kinds})' if kinds else ''}; {self.moved} moved to {self.processed}, "
            f"{self.left} left in place"
        )

    def table(self) -> list[tuple[str, str, str, str]]:
        """(message, kind, address, action) rows for the terminal."""
        return [(line.message, line.kind, line.address or "-", line.action) for line in self.lines]


def process(
    source: Source, ledger: Ledger, secret: str, list_id: str, *, domain: str | None = None, dry_run: bool = False
) -> Report:
    """Act on every message in `source` that is understood; see the module's docstring.

    Raises InboxError (with `.report` so far) when the source fails part-way; what was done before
    stays done, and running again finishes the job. `dry_run` classifies and reports only.
    """
    report = Report(processed=source.processed)
    try:
        for ref, raw in source.messages():
            found = classify(raw, secret=secret, domain=domain)
            label = short(found.subject or found.message_id or "(no subject)", 70)
            report.counts[found.kind] += 1
            lines, move = _act(found, ledger, list_id, label, dry_run)
            for line in lines:
                line.ref = ref
            report.lines += lines
            if move and not dry_run and source.can_move:
                source.move(ref)
                report.moved += 1
                for line in lines:
                    line.moved = True
                    line.action += f"; moved to {source.processed}"
            else:
                report.left += 1
                if move and not dry_run:
                    for line in lines:
                        line.action += f"; left in place ({source.describe()} cannot move messages)"
    except InboxError as exc:
        exc.report = report
        exc.args = (f"{exc}. The {report.total} message(s) read before it are dealt with; run again to finish",)
        raise
    return report


def _act(found: Classified, ledger: Ledger, list_id: str, label: str, dry_run: bool) -> tuple[list[Line], bool]:
    """Record what a message says; the lines to report and whether the message is ours to move."""
    if found.kind in ("hard_bounce", "soft_bounce", "delayed"):
        lines = []
        ours = found.issue is not None
        for failure in found.failures:
            address, last = _sent_address(ledger, failure)
            if last is None:
                what = "delay warning" if failure.delayed else f"{failure.kind} bounce"
                lines.append(
                    Line(
                        label, found.kind, failure.address, f"{what} for an address we never sent to: nothing recorded"
                    )
                )
                continue
            ours = True
            issue = found.issue or last
            lines.append(Line(label, found.kind, address, _bounce(ledger, address, issue, failure, dry_run)))
        if not ours:
            for line in lines:
                line.action += "; not about the newsletter, left for a person"
        return lines, ours
    if found.kind == "unsubscribe":
        address = found.addresses[0]
        if found.list_id != list_id:
            return [
                Line(
                    label,
                    found.kind,
                    address,
                    f"token is for the list {found.list_id}, not ours: nothing recorded, left for a person",
                )
            ], False
        if dry_run:
            return [Line(label, found.kind, address, "would suppress (unsubscribed by email)")], True
        new = ledger.suppress(address, "unsubscribed by email", SOURCE)
        return [
            Line(label, found.kind, address, "suppressed (unsubscribed by email)" if new else "already suppressed")
        ], True
    if found.kind == "auto_reply":
        address = found.addresses[0] if found.addresses else ""
        if found.issue is None:
            return [
                Line(label, found.kind, address, f"{found.reason}, not about the newsletter: left for a person")
            ], False
        return [Line(label, found.kind, address, f"{found.reason} to {found.issue}: nothing to record")], True
    return [Line(label, found.kind, "", f"left in place: {found.reason}")], False


def _sent_address(ledger: Ledger, failure: Failure) -> tuple[str, str | None]:
    """The reported address we sent to (as sent, else the final recipient), and our newest issue for it.

    A report may give an internationalised domain in Unicode (RFC 6533 `utf-8;`) where we sent to its
    xn-- form: the ledger is asked for both, so the bounce is recorded, and suppresses, where the sends look.
    """
    for reported in (failure.address, failure.final):
        for address in _as_sent(reported):
            if (last := ledger.last_issue_sent_to(address)) is not None:
                return address, last
    return failure.address, None


def _as_sent(reported: str | None) -> list[str]:
    """The address as reported, then as the lists and the ledger hold it, when that differs."""
    if not reported:
        return []
    try:
        held = held_address(reported)
    except EmailNotValidError:
        return [reported]
    return [reported] if held == reported else [reported, held]


def _bounce(ledger: Ledger, address: str, issue: str, failure: Failure, dry_run: bool) -> str:
    if failure.delayed:  # the message may still arrive: counting it as a bounce could suppress a live reader
        return f"delivery of {issue} delayed ({failure.reason}): nothing recorded, the relay is still trying"
    if dry_run:
        return f"would record a {failure.kind} bounce of {issue} ({failure.reason})"
    was_suppressed = address in ledger.suppressed()
    new = ledger.bounce(address, issue, failure.kind, failure.reason, source=SOURCE)
    action = f"{failure.kind} bounce of {issue} {'recorded' if new else 'already recorded'}"
    if address in ledger.suppressed():
        if was_suppressed:
            action += "; already suppressed"
        elif failure.kind == "hard":
            action += "; suppressed"
        else:
            action += f"; suppressed after soft bounces from {SOFT_BOUNCES_IN_A_ROW} issues in a row"
    elif failure.kind == "soft":
        action += f" ({ledger.soft_streak(address)} of {SOFT_BOUNCES_IN_A_ROW} issues in a row)"
    return action
