"""Inbox processing: read the reply and bounce mailbox, act on what is understood, leave the rest.

`classify(raw)` says what one message is:

- `hard_bounce` / `soft_bounce`: a delivery status notification. RFC 3464 reports
  (message/delivery-status) are read field by field: Action failed with Status 5.x.x is hard; 4.x.x, or
  Action delayed, is soft; a few 5.x.x codes that say nothing about the address (mailbox full, message
  too big, 5.7.x policy and spam blocks) count as soft, so one blocked send cannot suppress a whole
  list. Bounces without such a part (qmail, Exim, old Exchange, ...) go to `flufl.bounce` for the
  addresses, and the status code, SMTP reply or wording beside each address decides hard or soft.
- `unsubscribe`: a message to the List-Unsubscribe mailto with the subject "unsubscribe TOKEN", whose
  signed token names the person; a bad, expired or unchecked token is `unknown`, never trusted.
- `auto_reply`: out-of-office and other automatic replies (RFC 3834 Auto-Submitted, X-Autoreply,
  X-Autorespond, Precedence: auto_reply, "Automatic reply:" subjects) and read receipts. Never bounces.
- `unknown`: everything else, such as a person's reply. It is left exactly where it is.

The issue a message is about comes from the Message-ID of our original message (`<2025-09.hex@domain>`)
in the returned message or headers, In-Reply-To/References, or the quoted copy.

`process(source, ledger, secret, list_id)` records bounces and unsubscribes in the ledger, then moves the
message to the processed folder. Only messages about the newsletter are moved (a bounce or automatic
reply that names no issue of ours and no address we sent to may be a person's own mail in a shared
mailbox). Nothing is ever deleted. Every step is idempotent (the ledger keys bounces by address and
issue and ignores repeated suppressions), so a run stopped part-way (a dropped connection) is finished
by running it again, and reading the same message twice changes nothing.

Sources: IMAP over TLS (`imaps://host`, or `imap://host` with STARTTLS; plain IMAP only to loopback), a
Maildir (`maildir:DIR`, processed messages go to its `.Processed` subfolder) or an mbox (`mbox:FILE`,
read-only: processed messages stay, and idempotency makes that safe).
"""

from __future__ import annotations

import collections
import dataclasses
import email
import email.errors
import email.header
import email.message
import email.parser
import email.utils
import imaplib
import ipaddress
import mailbox
import os
import re
import ssl
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from flufl.bounce import all_failures

from newsletter.config import IMAP_PASSWORD_ENV as PASSWORD_ENV
from newsletter.ledger import SOFT_BOUNCES_IN_A_ROW, Ledger
from newsletter.unsubscribe import BadToken, read_token

Kind = Literal["hard_bounce", "soft_bounce", "unsubscribe", "auto_reply", "unknown"]
KINDS: tuple[Kind, ...] = ("hard_bounce", "soft_bounce", "unsubscribe", "auto_reply", "unknown")

PROCESSED = "Processed"
SOURCE = "inbox"
"""What the ledger records as the source of bounces and suppressions made here."""


class InboxError(Exception):
    """The mailbox cannot be read or changed (refused login, lost connection, ...): stop the run.

    Everything done before the error is recorded and moved; `report` says what that was. Running
    again finishes the job.
    """

    def __init__(self, message: str, report: Report | None = None) -> None:
        super().__init__(message)
        self.report = report


# -- classification ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a bounce reports: `address` as we sent it when the report says (Original-Recipient)."""

    address: str
    kind: Literal["hard", "soft"]
    reason: str
    final: str | None = None
    """The Final-Recipient, when it differs from `address` (an alias or forward)."""


@dataclasses.dataclass(frozen=True, slots=True)
class Classified:
    kind: Kind
    addresses: tuple[str, ...]
    issue: str | None
    reason: str
    subject: str = ""
    message_id: str = ""
    """This message's own Message-ID (not our original's)."""
    failures: tuple[Failure, ...] = ()
    """For bounces: each recipient, hard or soft (one report can hold both)."""
    list_id: str | None = None
    """For unsubscribe requests: the list the token was made for."""


OUR_ID = re.compile(r"<(\d{4}-(?:0[1-9]|1[0-2]))\.[0-9a-f]{8,64}@([A-Za-z0-9.-]+)>")
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
SMTP_REPLY = re.compile(r"(?<![\d.#])([45])\d\d(?=[ -]\s*\S)")
UNSUBSCRIBE = re.compile(r"^\s*unsubscribe(?:\s+(\S+))?\s*$", re.IGNORECASE)
AUTO_SUBJECT = re.compile(r"^\s*(?:automatic reply|auto(?:matic)?[ -]?(?:reply|response|respond)|autoreply|"
                          r"out of (?:the )?office|ooo\b|away from (?:the|my) office|auto:)", re.IGNORECASE)
BOUNCE_SUBJECT = re.compile(r"undeliver|delivery (?:status notification|has failed|failure|failed|problem)|"
                            r"failure notice|returned mail|mail delivery (?:failed|failure|system)|non-?delivery|"
                            r"could not be delivered|address not found|message not delivered|delivery incomplete|"
                            r"delayed mail|warning: could not send", re.IGNORECASE)
DAEMONS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "mail-delivery-subsystem")
COPY_MARKERS = re.compile(r"^\s*(?:-{2,}\s*Below this line is a copy of the message|"
                          r"-{2,}\s*This is a copy of the message|-{2,}\s*Original message|"
                          r"-{2,}\s*The header of the original message|Original message headers:)",
                          re.IGNORECASE | re.MULTILINE)
SOFT_WORDS = re.compile(r"mailbox (?:is )?full|over ?quota|quota exceeded|exceeded (?:the )?(?:storage|quota)|"
                        r"insufficient (?:system )?storage|temporar|try again|retry|deferred|"
                        r"greylist|too many (?:connections|messages)|rate limit", re.IGNORECASE)
HARD_WORDS = re.compile(r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|"
                        r"does not exist|doesn't exist|no mailbox|not found|invalid (?:recipient|address|mailbox)|"
                        r"recipient (?:address )?rejected|mailbox unavailable|account (?:has been )?disabled|"
                        r"permanent error|address rejected", re.IGNORECASE)
SOFT_PERMANENT = {"5.2.2", "5.2.3", "5.3.4"}
"""5.x.x codes about the mailbox or message rather than the address: mailbox full, message too big."""


def status_kind(status: str) -> Literal["hard", "soft"] | None:
    """Hard or soft from an RFC 3463 status such as 5.1.1; None for 2.x.x (success)."""
    if status.startswith("4."):
        return "soft"
    if status.startswith("5."):
        if status in SOFT_PERMANENT or status.startswith("5.7."):
            return "soft"  # policy, spam and authentication blocks say nothing about the address
        return "hard"
    return None


def classify(raw: bytes, *, secret: str | None = None, domain: str | None = None) -> Classified:
    """What one message is. `secret` checks unsubscribe tokens (without it none is trusted); `domain`
    limits the Message-IDs taken as ours to that domain (any domain when None)."""
    try:
        msg = email.message_from_bytes(raw)
        return _classify(msg, raw, secret, domain)
    except Exception as exc:  # noqa: BLE001 - one malformed message must not stop the run: a person looks
        return Classified("unknown", (), None, f"could not be read: {type(exc).__name__}: {exc}"[:200])


def _classify(msg: email.message.Message, raw: bytes, secret: str | None, domain: str | None) -> Classified:
    subject = _header(msg, "subject")
    own_id = _header(msg, "message-id").strip()
    issue = find_issue(msg, raw, domain)
    common = {"subject": subject, "message_id": own_id}

    failures, reported = _dsn_failures(msg)
    if not failures and not reported and _looks_like_bounce(msg):
        failures = _heuristic_failures(msg)
        if not failures:
            return Classified("unknown", (), issue, "looks like a bounce but names no address that can be read",
                              **common)
    failures = _drop_own(msg, failures)
    if failures:
        kind: Kind = "hard_bounce" if any(f.kind == "hard" for f in failures) else "soft_bounce"
        reason = "; ".join(dict.fromkeys(f.reason for f in failures))
        return Classified(kind, tuple(dict.fromkeys(f.address for f in failures)), issue, _short(reason),
                          failures=tuple(failures), **common)
    if reported:
        return Classified("unknown", (), issue, f"delivery report without a failure ({', '.join(reported)})", **common)

    match = UNSUBSCRIBE.match(unquote(subject))
    if match:
        token = match.group(1)
        if not token:
            return Classified("unknown", (), issue, "asks to unsubscribe without a token: a person should check who",
                              **common)
        if not secret:
            return Classified("unknown", (), issue, "unsubscribe request: no secret to check its token", **common)
        try:
            address, list_id = read_token(token, secret)
        except BadToken as exc:
            return Classified("unknown", (), issue, f"unsubscribe request with an {exc} token: not trusted", **common)
        return Classified("unsubscribe", (address.lower(),), issue, "unsubscribe request (signed token)",
                          list_id=list_id, **common)

    automatic = _auto_reply(msg, subject)
    if automatic:
        sender = email.utils.parseaddr(_header(msg, "from"))[1].lower()
        return Classified("auto_reply", (sender,) if sender else (), issue, automatic, **common)
    return Classified("unknown", (), issue, "not a bounce, unsubscribe request or automatic reply", **common)


def find_issue(msg: email.message.Message, raw: bytes, domain: str | None = None) -> str | None:
    """The issue of our original message: returned message or headers, In-Reply-To/References, quoted copy."""
    own = _header(msg, "message-id")

    def first(text: str) -> str | None:
        for match in OUR_ID.finditer(text):
            if match.group(0) in own:
                continue
            if domain is None or match.group(2).lower() == domain.lower():
                return match.group(1)
        return None

    for part in msg.walk():
        returned = _returned_headers(part)
        if returned is not None and (found := first(_header(returned, "message-id"))):
            return found
    for name in ("in-reply-to", "references"):
        if found := first(" ".join(reversed(_header(msg, name).split()))):
            return found
    text = raw.decode("latin-1")
    for line in re.finditer(r"^\s*Message-ID:\s*(<[^>\r\n]*>)", text, re.IGNORECASE | re.MULTILINE):
        if found := first(line.group(1)):
            return found
    return first(text)


def _returned_headers(part: email.message.Message) -> email.message.Message | None:
    content_type = part.get_content_type()
    if content_type in ("message/rfc822", "message/global") and part.is_multipart():
        inner = part.get_payload(0)
        return inner if isinstance(inner, email.message.Message) else None
    if content_type in ("text/rfc822-headers", "message/global-headers", "text/rfc822"):
        return email.parser.Parser().parsestr(_text(part), headersonly=True)
    return None


def _dsn_failures(msg: email.message.Message) -> tuple[list[Failure], list[str]]:
    """Failed and delayed recipients of every RFC 3464 part; and the actions seen, if any part was there."""
    failures: list[Failure] = []
    actions: list[str] = []
    for part in msg.walk():
        if part.get_content_type() not in ("message/delivery-status", "message/global-delivery-status"):
            continue
        blocks = _status_blocks(part)
        for block in blocks:  # the first block is about the message and has no Action
            action = block.get("action", "").strip().lower()
            if not action:
                continue
            actions.append(action.split()[0])
            original = _recipient(block.get("original-recipient", ""))
            final = _recipient(block.get("final-recipient", "") or block.get("x-actual-recipient", ""))
            address = original or final
            if not address:
                continue
            status_match = ENHANCED_STATUS.search(block.get("status", ""))
            status = ".".join(status_match.groups()) if status_match else ""
            diagnostic = _diagnostic(block.get("diagnostic-code", ""))
            if action.startswith("delayed"):
                kind: Literal["hard", "soft"] | None = "soft"
            elif action.startswith(("failed", "error")):
                kind = status_kind(status) if status else None
                if kind is None:
                    kind = _kind_from_text(diagnostic, permanent=True)
            else:
                continue  # delivered, relayed, expanded: no failure
            what = "delayed" if action.startswith("delayed") else "failed"
            if status and status in diagnostic:
                reason = diagnostic
            else:
                reason = " ".join(x for x in (status, diagnostic or what) if x)
            failures.append(Failure(address, kind, _short(reason), final if original and final != original else None))
    return failures, list(dict.fromkeys(actions))


def _diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type (`smtp;`) and without the repeated codes of continuation lines."""
    text = " ".join(value.split())
    if re.match(r"^[A-Za-z][\w-]*\s*;", text):
        text = text.split(";", 1)[1].strip()
    first = re.match(r"^[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s+)?", text)
    head, rest = (text[:first.end()], text[first.end():]) if first else ("", text)
    rest = re.sub(r"(?:^|\s)[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?=\s)", "", rest)
    return " ".join(head.replace("-", " ", 1).split() + rest.split())


def _status_blocks(part: email.message.Message) -> list[email.message.Message]:
    payload = part.get_payload()
    if isinstance(payload, list):
        return [b for b in payload if isinstance(b, email.message.Message)]
    # Encoded or unparsed: split the fields into blocks ourselves.
    text = _text(part).replace("\r\n", "\n")
    return [email.parser.Parser().parsestr(block.strip() + "\n", headersonly=True)
            for block in re.split(r"\n\s*\n", text) if block.strip()]


def _recipient(value: str) -> str:
    """The address in an RFC 3464 recipient field: `rfc822; someone@example.org`."""
    value = " ".join(value.split())
    if ";" in value:
        _kind, value = value.split(";", 1)
    value = value.strip().strip("<>").strip()
    return value.lower() if "@" in value else ""


def _looks_like_bounce(msg: email.message.Message) -> bool:
    """Worth asking flufl.bounce about: its heuristics are only for what a mail system sent."""
    sender = email.utils.parseaddr(_header(msg, "from"))[1].lower()
    return (sender.split("@")[0] in DAEMONS
            or bool(BOUNCE_SUBJECT.search(_header(msg, "subject")))
            or (msg.get_content_type() == "multipart/report"
                and str(msg.get_param("report-type") or "").lower() != "disposition-notification")
            or "x-failed-recipients" in msg
            or "x-ms-exchange-message-is-ndr" in msg)


def _heuristic_failures(msg: email.message.Message) -> list[Failure]:
    temporary, permanent = all_failures(msg)
    notice = _notice_text(msg)
    failures = []
    for found, permanent_ in ((permanent, True), (temporary, False)):
        for address in sorted(a.decode("ascii", "replace").lower() for a in found):
            if "@" not in address:
                continue
            window = _window(notice, address)
            kind = _kind_from_text(window, permanent=permanent_)
            failures.append(Failure(address, kind, _short(_reason_from_text(window) or
                                                          ("failed" if permanent_ else "delayed"))))
    return failures


def _notice_text(msg: email.message.Message) -> str:
    """The human-readable notice of a bounce, without the returned copy of our message."""
    texts: list[str] = []

    def visit(part: email.message.Message) -> None:
        content_type = part.get_content_type()
        if content_type in ("message/rfc822", "text/rfc822-headers", "message/delivery-status", "message/global"):
            return
        if part.is_multipart():
            for sub in part.get_payload():
                visit(sub)
        elif content_type == "text/plain" or (content_type == "text/html" and not texts):
            text = _text(part)
            if content_type == "text/html":
                text = re.sub(r"<[^>]+>", " ", text)
            texts.append(text)

    visit(msg)
    text = "\n".join(texts)
    marker = COPY_MARKERS.search(text)
    return text[:marker.start()] if marker else text


def _window(text: str, address: str) -> str:
    """The lines after an address in the notice (where its diagnosis is), else the whole notice."""
    at = text.lower().find(address)
    if at < 0:
        return text
    rest = text[at:at + 800]
    # Stop at the next recipient paragraph (qmail: a blank line then <addr>:)
    stop = re.search(r"\n\s*\n\s*<[^>\s]+@[^>\s]+>:", rest)
    return rest[:stop.start()] if stop else rest


def _kind_from_text(text: str, *, permanent: bool) -> Literal["hard", "soft"]:
    status = ENHANCED_STATUS.search(text)
    if status and (kind := status_kind(".".join(status.groups()))):
        return kind
    reply = SMTP_REPLY.search(text)
    if reply:
        return "hard" if reply.group(1) == "5" else "soft"
    if SOFT_WORDS.search(text):
        return "soft"
    if HARD_WORDS.search(text):
        return "hard"
    return "hard" if permanent else "soft"


def _reason_from_text(text: str) -> str:
    """A short diagnosis: the status code and the line that says what happened."""
    status = ENHANCED_STATUS.search(text)
    lines = [" ".join(line.split()) for line in text.splitlines()]
    lines = [line for line in lines[1:] if line] or [line for line in lines if line]
    said = next((line for line in lines if SMTP_REPLY.search(line) or ENHANCED_STATUS.search(line)), None)
    said = said or next((line for line in lines if HARD_WORDS.search(line) or SOFT_WORDS.search(line)), None)
    said = said or (lines[0] if lines else "")
    code = ".".join(status.groups()) if status else ""
    return f"{code} {said}".strip() if code and code not in said else said


def _drop_own(msg: email.message.Message, failures: list[Failure]) -> list[Failure]:
    """Heuristics can pick up the bounce's own To/From (our bounce address): never treat those as failures."""
    own = {email.utils.parseaddr(_header(msg, h))[1].lower() for h in ("to", "from", "return-path", "delivered-to")}
    return [f for f in failures if f.address not in own]


def _auto_reply(msg: email.message.Message, subject: str) -> str | None:
    submitted = _header(msg, "auto-submitted").strip().lower()
    if submitted and not submitted.startswith("no"):
        return f"automatic reply (Auto-Submitted: {submitted})"
    for name in ("x-autoreply", "x-autorespond", "x-autoresponder", "x-autogenerated"):
        if name in msg:
            return f"automatic reply ({name.title()})"
    if _header(msg, "precedence").strip().lower() == "auto_reply":
        return "automatic reply (Precedence: auto_reply)"
    if AUTO_SUBJECT.match(subject):
        return f"automatic reply (subject: {_short(subject, 60)})"
    report_type = (msg.get_param("report-type") or "") if msg.get_content_type() == "multipart/report" else ""
    if str(report_type).lower() == "disposition-notification" or any(
            p.get_content_type() == "message/disposition-notification" for p in msg.walk()):
        return "read receipt"
    return None


def _header(msg: email.message.Message, name: str) -> str:
    """A header as text, RFC 2047 words decoded, never raising on a malformed one."""
    value = msg.get(name)
    if value is None:
        return ""
    try:
        return " ".join(str(email.header.make_header(email.header.decode_header(str(value)))).split())
    except (email.errors.HeaderParseError, LookupError, UnicodeError, ValueError):
        return " ".join(str(value).split())


def _text(part: email.message.Message) -> str:
    payload = part.get_payload(decode=True)
    if payload is None:
        value = part.get_payload()
        return value if isinstance(value, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1")


def _short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


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

    def __init__(self, host: str, port: int | None = None, *, username: str, password: str,
                 security: Literal["tls", "starttls", "plain"] = "tls", folder: str = "INBOX",
                 processed: str = PROCESSED, timeout: float = 60, ssl_context: ssl.SSLContext | None = None) -> None:
        if security not in ("tls", "starttls", "plain"):
            raise ValueError(f"unknown security {security!r}")
        if security == "plain" and not _is_loopback(host):
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
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(self.host, self.port, ssl_context=context,
                                                        timeout=self.timeout)
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
            typ, data = imap.uid("SEARCH", None, "UNDELETED")
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
                raise InboxError(f"{self.host} supports neither MOVE nor UIDPLUS, so a message cannot be moved "
                                 "without touching others")
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
        try:
            imap.logout()  # LOGOUT, never CLOSE: CLOSE would expunge others' deleted messages
        except (OSError, imaplib.IMAP4.error):
            pass

    def _abandon(self) -> None:
        imap, self.imap = self.imap, None
        if imap is not None:
            try:
                imap.shutdown()
            except OSError:
                pass

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
            raise InboxError(f"the IMAP connection to {where} failed while {what}: "
                             f"{type(exc).__name__}: {exc}") from None


def _literal(data: list, uid: str) -> bytes | None:
    """The message bytes of a FETCH response, checked against the size the server announced."""
    for item in data:
        if not isinstance(item, tuple) or len(item) < 2:
            continue
        head = item[0].decode("ascii", "replace") if isinstance(item[0], bytes) else str(item[0])
        size = re.search(r"BODY\[\]\s*\{(\d+)\}", head, re.IGNORECASE)
        if size is None:
            continue
        body = item[1]
        if len(body) != int(size.group(1)):
            raise InboxError(f"message UID {uid} arrived cut short ({len(body)} of {size.group(1)} bytes): "
                             "the connection was lost")
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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_source(url: str, *, username: str | None = None, password: str | None = None, folder: str = "INBOX",
                processed: str = PROCESSED, starttls: bool | None = None, timeout: float = 60) -> Source:
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
        security = "plain" if _is_loopback(parts.hostname) else "starttls"
    else:
        security = "starttls" if starttls else "plain"
    return ImapSource(parts.hostname, parts.port, username=user, password=password, security=security,
                      folder=folder, processed=processed, timeout=timeout)


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
        return (f"{self.total} message(s){f' ({kinds})' if kinds else ''}; {self.moved} moved to {self.processed}, "
                f"{self.left} left in place")

    def table(self) -> list[tuple[str, str, str, str]]:
        """(message, kind, address, action) rows for the terminal."""
        return [(line.message, line.kind, line.address or "-", line.action) for line in self.lines]


def process(source: Source, ledger: Ledger, secret: str, list_id: str, *, domain: str | None = None,
            dry_run: bool = False) -> Report:
    """Act on every message in `source` that is understood; see the module's docstring.

    Raises InboxError (with `.report` so far) when the source fails part-way; what was done before
    stays done, and running again finishes the job. `dry_run` classifies and reports only.
    """
    report = Report(processed=source.processed)
    try:
        for ref, raw in source.messages():
            found = classify(raw, secret=secret, domain=domain)
            label = _short(found.subject or found.message_id or "(no subject)", 70)
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
    if found.kind in ("hard_bounce", "soft_bounce"):
        lines = []
        ours = found.issue is not None
        for failure in found.failures:
            address, last = _sent_address(ledger, failure)
            if last is None:
                lines.append(Line(label, found.kind, failure.address,
                                  f"{failure.kind} bounce for an address we never sent to: nothing recorded"))
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
            return [Line(label, found.kind, address, f"token is for the list {found.list_id}, not ours: "
                                                     "nothing recorded, left for a person")], False
        if dry_run:
            return [Line(label, found.kind, address, "would suppress (unsubscribed by email)")], True
        new = ledger.suppress(address, "unsubscribed by email", SOURCE)
        return [Line(label, found.kind, address, "suppressed (unsubscribed by email)" if new
                     else "already suppressed")], True
    if found.kind == "auto_reply":
        address = found.addresses[0] if found.addresses else ""
        if found.issue is None:
            return [Line(label, found.kind, address, f"{found.reason}, not about the newsletter: left for a person")], \
                False
        return [Line(label, found.kind, address, f"{found.reason} to {found.issue}: nothing to record")], True
    return [Line(label, found.kind, "", f"left in place: {found.reason}")], False


def _sent_address(ledger: Ledger, failure: Failure) -> tuple[str, str | None]:
    """The reported address we sent to (as sent, else the final recipient), and our newest issue for it."""
    for address in (failure.address, failure.final):
        if address and (last := ledger.last_issue_sent_to(address)) is not None:
            return address, last
    return failure.address, None


def _bounce(ledger: Ledger, address: str, issue: str, failure: Failure, dry_run: bool) -> str:
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
