"""One personal message per recipient: headers, multipart/alternative parts, optional DKIM signature.

The issue is rendered once per authority; a `Composer` holds that variant and makes each recipient's
message by filling the personal fields and encoding the two parts. Headers go through the standard
library's email package (RFC 2047 for names, CR/LF refused), except personal ones whose values are
plain ASCII that the package would write out unchanged, which are written directly (the same bytes,
without a parse and refold per message). The two body parts are quoted-printable encoded with
`binascii` (C) once per variant, in pieces between the personal fields; each message encodes only its
own field values and joins the pieces with soft line breaks, under a boundary that quoted-printable
text cannot contain. A message is then a few joins, not a re-encoding of the whole issue.
"""

from __future__ import annotations

import binascii
import dataclasses
import email.policy
import email.utils
import hashlib
import hmac
import html
import re
import secrets
import urllib.parse
from datetime import datetime, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from typing import Protocol

import dkim

from newsletter.config import Settings
from newsletter.model import Issue
from newsletter.render import PERSONAL, Rendered
from newsletter.unsubscribe import make_token

POLICY = email.policy.SMTP.clone(max_line_length=998)
"""No folding below RFC 5322's hard limit: a folded List-Unsubscribe URL would break one-click."""
SIGNED_HEADERS = [b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-id", b"list-unsubscribe",
                  b"list-unsubscribe-post", b"mime-version", b"content-type"]
FIELDS = re.compile("(" + "|".join(re.escape(marker) for marker in PERSONAL.values()) + ")")
FIELD_NAMES = {marker: name for name, marker in PERSONAL.items()}
QP_LINE = 76
"""RFC 2045's limit for a quoted-printable line, soft line break included."""

# Values the email package writes out exactly as given (checked against it in tests/test_bench.py): a
# display name of atext words (quoted when it has a comma or full stop), a dot-atom address, and
# unstructured ASCII with no encoded-word opener and no runs of spaces.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_QUOTABLE_NAME = re.compile(r"[A-Za-z0-9'.,-]+(?: [A-Za-z0-9'.,-]+)*")
_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_MSG_ID = re.compile(r"<[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
_UNSTRUCTURED = re.compile(r"[!-~]+(?: [!-~]+)*")
_DATE = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}")
_LONGEST_PLAIN_LINE = 900
"""Longer header lines go through the email package, which folds at 998."""


class Addressee(Protocol):
    """Who a message is for: a list's Recipient, or a ledger row when a send resumes."""

    @property
    def email(self) -> str: ...

    @property
    def name(self) -> str: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Outgoing:
    """What the transport needs: the envelope and the bytes of the message."""

    sender: str
    recipient: str
    data: bytes
    message_id: str
    crlf: bool = False
    """The data's line ends are all CRLF and it ends with one (as the composer makes it): SMTP needs no conversion."""


class Composer:
    """Makes each recipient's message from one rendered variant of an issue."""

    def __init__(self, issue: Issue, rendered: Rendered, settings: Settings, secret: str, *, proof: bool = False,
                 dkim_key: bytes | None = None) -> None:
        self.issue = issue
        self.rendered = rendered
        self.settings = settings
        self.secret = secret
        self.proof = proof
        self.dkim_key = dkim_key
        self.subject = f"[PROOF] {issue.subject}" if proof else issue.subject
        # "=_" never occurs in quoted-printable output, so no part can end the multipart early.
        self.boundary = f"=_{secrets.token_hex(12)}"
        # Headers that are the same for every recipient are encoded once.
        self.head = _headers(
            ("From", Address(display_name=issue.sender.name, addr_spec=issue.sender.email)),
            ("Subject", self.subject),
            *([("Reply-To", issue.reply_to)] if issue.reply_to else []),
            ("List-Id", f"{settings.list.name} <{settings.list.id}>"),
        )
        self.tail = _headers(
            ("Auto-Submitted", "auto-generated"),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{self.boundary}"'),
        )
        self.one_click_header = _headers(("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"))
        self.parts = (_Part("plain", rendered.text, self.boundary, escape=False),
                      _Part("html", rendered.html, self.boundary, escape=True))
        self.closing = f"--{self.boundary}--\r\n".encode()

    def compose(self, recipient: Addressee) -> Outgoing:
        listing = self.settings.list
        token = make_token(recipient.email, listing.id, self.secret)
        mailto = f"mailto:{listing.unsubscribe_mailto}?subject={urllib.parse.quote('unsubscribe ' + token)}"
        one_click = f"{listing.unsubscribe_url.rstrip('/')}/{token}" if listing.unsubscribe_url else None
        message_id = self._message_id(recipient.email)
        date = email.utils.format_datetime(datetime.now(timezone.utc).astimezone())
        unsubscribe = ", ".join(f"<{u}>" for u in (mailto, one_click) if u)
        to = _plain_to(recipient.name, recipient.email)
        if to is None:
            to = _headers(("To", Address(display_name=recipient.name, addr_spec=recipient.email)))
        personal = _plain_headers(date, message_id, unsubscribe)
        if personal is None:
            personal = _headers(("Date", date), ("Message-ID", message_id), ("List-Unsubscribe", unsubscribe))
        personal = to + personal + (self.one_click_header if one_click else b"")
        fields = {"email": recipient.email, "unsubscribe_url": one_click or mailto}
        data = b"".join([self.head, personal, self.tail, b"\r\n", *self.parts[0].encode(fields),
                         *self.parts[1].encode(fields), self.closing])
        if self.dkim_key and self.settings.dkim.selector:
            signed = [h for h in SIGNED_HEADERS if h != b"reply-to" or self.issue.reply_to]
            data = dkim.sign(data, self.settings.dkim.selector.encode(), listing.domain.encode(), self.dkim_key,
                             include_headers=signed) + data
        return Outgoing(sender=listing.bounce_to, recipient=recipient.email, data=data, message_id=message_id,
                        crlf=True)

    def _message_id(self, address: str) -> str:
        """The same ID for the same issue and person, so a rare repeat after a crash is one mail in most clients."""
        if self.proof:
            return email.utils.make_msgid("proof", domain=self.settings.list.domain)
        digest = hmac.new(self.secret.encode(), f"{self.issue.issue}\n{address}".encode(), hashlib.sha256)
        return f"<{self.issue.issue}.{digest.hexdigest()[:24]}@{self.settings.list.domain}>"


def _headers(*pairs: tuple[str, object]) -> bytes:
    """Encoded header lines; the email package refuses CR/LF in values, so data cannot add a header."""
    head = EmailMessage(policy=POLICY)
    for name, value in pairs:
        head[name] = value
    return b"".join(POLICY.fold_binary(name, value) for name, value in head.items())


def _plain_to(name: str, address: str) -> bytes | None:
    """The To header written directly when the email package would write exactly these bytes (an ASCII name
    with nothing to encode or escape, a dot-atom address); None sends it through the package."""
    if not _ADDRESS.fullmatch(address):
        return None
    if not name:
        to = address
    elif _PLAIN_NAME.fullmatch(name):
        to = f"{name} <{address}>"
    elif _QUOTABLE_NAME.fullmatch(name):
        to = f'"{name}" <{address}>'
    else:
        return None
    return f"To: {to}\r\n".encode("ascii") if len(to) + 4 <= _LONGEST_PLAIN_LINE else None


def _plain_headers(date: str, message_id: str, unsubscribe: str) -> bytes | None:
    """Date, Message-ID and List-Unsubscribe written directly when the email package would write exactly these
    bytes (plain ASCII, nothing to encode or fold); None sends them through the package."""
    if not (_DATE.fullmatch(date) and _MSG_ID.fullmatch(message_id) and _UNSTRUCTURED.fullmatch(unsubscribe)
            and "=?" not in unsubscribe and len(unsubscribe) + 18 <= _LONGEST_PLAIN_LINE
            and len(message_id) + 12 <= _LONGEST_PLAIN_LINE):
        return None
    return f"Date: {date}\r\nMessage-ID: {message_id}\r\nList-Unsubscribe: {unsubscribe}\r\n".encode("ascii")


class _Part:
    """One text/* part of a variant, quoted-printable encoded once, in pieces between the personal fields.

    The fields are filled as `Rendered.fill` fills them (escaped for HTML, verbatim in text). Every piece
    but the last ends with a soft line break, so the pieces and each message's encoded values join into
    valid quoted-printable whose decoded text is the filled part, byte for byte.
    """

    def __init__(self, subtype: str, content: str, boundary: str, *, escape: bool) -> None:
        self.escape = escape
        self.header = (f"--{boundary}\r\nContent-Type: text/{subtype}; charset=\"utf-8\"\r\n"
                       f"Content-Transfer-Encoding: quoted-printable\r\n\r\n").encode()
        pieces = [piece for piece in FIELDS.split(content.replace("\r\n", "\n")) if piece]
        self.items: list[bytes | tuple[str, bool]] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if piece in FIELD_NAMES:
                self.items.append((FIELD_NAMES[piece], last))
            else:
                self.items.append(_qp(piece) if last else _continued(_qp(piece)))

    def encode(self, fields: dict[str, str]) -> list[bytes]:
        chunks = [self.header]
        for item in self.items:
            if isinstance(item, bytes):
                chunks.append(item)
                continue
            name, last = item
            value = html.escape(fields[name], quote=True) if self.escape else fields[name]
            encoded = _qp(value.replace("\r\n", "\n"))
            chunks.append(encoded if last else _continued(encoded))
        chunks.append(b"\r\n")
        return chunks


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (`text` has LF ones)."""
    return binascii.b2a_qp(text.encode("utf-8"), istext=True).replace(b"\n", b"\r\n")


def _continued(encoded: bytes) -> bytes:
    """Encoded text that more text will follow on the same (decoded) line: end it with a soft line break.

    b2a_qp lets the last line of its input reach the full 76 characters (it breaks only before a
    character that has another after it); such a line is broken before its last character first,
    which is then a literal (trailing spaces at the end are always encoded), so no line passes 76.
    """
    if not encoded or encoded.endswith(b"\n"):
        return encoded
    if len(encoded) - (encoded.rfind(b"\n") + 1) >= QP_LINE:
        encoded = encoded[:-1] + b"=\r\n" + encoded[-1:]
    return encoded + b"=\r\n"
