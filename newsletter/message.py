"""One personal message per recipient: headers, multipart/alternative parts, optional DKIM signature.

The issue is rendered once per authority; a `Composer` holds that variant and makes each recipient's
message by filling the personal fields and encoding the two parts.

Headers are written here, not by the email package, because its parser decodes RFC 2047 encoded-words
in the values it is given: a name such as `=?utf-8?q?Ann=0D=0AX-Injected=3A_yes?=` came out as a line
break and a header of its own. Every value from data (names, the subject, the list name) is plain text:
control characters become spaces, words that are plain printable ASCII are written as they are, and
everything else, including anything that merely looks like an encoded-word, is encoded by us (RFC 2047,
UTF-8, in the characters a phrase allows), so what any mail program decodes is the text itself. A
display name that is not a run of atoms is a quoted-string or encoded-words, never bare specials.
Addresses are ASCII dot-atoms (internationalised domains as IDNA A-labels). Lines are folded at 78
characters between words and between List-Unsubscribe's <...> items; an encoded-word is at most 75
characters, a plain word at most 77, so only an address, a Message-ID or a URL can make a line longer,
and those are bounded well under RFC 5322's 998.

The To line of an everyday name is written by a fast path (the same bytes, tested). The two body parts
are quoted-printable encoded with `binascii` (C) once per variant, in pieces between the personal fields;
each message encodes only its own field values and joins the pieces with soft line breaks, under a
boundary that quoted-printable text cannot contain. A message is then a few joins, not a re-encoding of
the whole issue.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.utils
import hashlib
import hmac
import html
import re
import secrets
import urllib.parse
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Protocol

from email_validator import EmailNotValidError

from newsletter.config import Settings
from newsletter.errors import ConfigError, ListError, NewsletterError
from newsletter.model import Issue, ascii_address
from newsletter.render import PERSONAL, Rendered, short_name
from newsletter.signing import Pending, Signer, finish
from newsletter.unsubscribe import make_token

SIGNED_HEADERS = [
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"reply-to",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
]
FIELDS = re.compile("(" + "|".join(re.escape(marker) for marker in PERSONAL.values()) + ")")
FIELD_NAMES = {marker: name for name, marker in PERSONAL.items()}
QP_LINE = 76
"""RFC 2045's limit for a quoted-printable line, soft line break included."""
HEADER_LINE = 78
"""RFC 5322's recommended limit for a line, CRLF not counted; headers fold there where they can."""
LONGEST_URL = 900
"""A List-Unsubscribe item is one unbreakable token: with its header name it must stay under 998."""
PROOF_READER = "proof-copy@proof.invalid"
"""Whom a proof's unsubscribe links are for: an address that cannot exist (RFC 2606 `.invalid`), so
following them, or a mail program's unsubscribe button, takes nobody off the list."""

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,77}")
"""RFC 5322 atext: a word a display name can hold bare (one that contains `=?` is never written bare)."""
_PLAIN_WORD = re.compile(r"[!-~]{1,77}")
"""A word unstructured text (Subject) can hold as it is."""
_PLAIN_NAME = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_QUOTABLE_NAME = re.compile(r"[A-Za-z0-9'.,-]+(?: [A-Za-z0-9'.,-]+)*")
_ADDRESS = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
_DOT_ATOM = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
_DOMAIN = re.compile(r"(?=.{1,253}$)(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z0-9-]{2,63}")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?)*")
_Q_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!*+-/")
_Q = [chr(byte) if byte in _Q_SAFE else "_" if byte == 0x20 else f"={byte:02X}" for byte in range(256)]
"""RFC 2047 Q encoding, restricted to the characters allowed in a phrase (so also safe in unstructured text)."""
_EW_LONGEST = 75
_EW_OVERHEAD = len("=?utf-8?q??=")
_EW_SMALLEST = _EW_OVERHEAD + 12
"""Room for an encoded-word holding at least one character (four UTF-8 bytes, Q-encoded)."""
_URL_SAFE = "!#$%&'()*+,-./:;=?@[]_~"
"""Characters a URL keeps inside <...>: everything else (non-ASCII, <, >, quotes, spaces) is percent-encoded."""
_MAILTO_SAFE = "@!$'()*+,;=-._~"
"""Characters a mailto: address keeps (RFC 6068); `?`, `&`, `#` and `%` in a local part are percent-encoded."""


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
    wire: tuple[bytes, ...] | None = None
    """The data as DATA sends it, in pieces (every line that starts with a dot has another, RFC 5321 4.5.2),
    without the closing dot line; None when the transport is to make it."""
    signature: Pending | None = None
    """A DKIM signature still to be made (`compose(..., sign_later=True)`): `signed()` puts it in front."""

    def signed(self, fields: Sequence[bytes] | None = None) -> Outgoing:
        """The message with its DKIM-Signature field(s) in front: `fields` made elsewhere (the send job's
        signing process), or made here. Itself when there is nothing to sign."""
        if self.signature is None:
            return self
        made = finish(self.signature) if fields is None else b"".join(fields)
        wire = (made, *self.wire) if self.wire is not None else None  # no DKIM-Signature line starts with a dot
        return dataclasses.replace(self, data=made + self.data, signature=None, wire=wire)


class Composer:
    """Makes each recipient's message from one rendered variant of an issue."""

    def __init__(
        self,
        issue: Issue,
        rendered: Rendered,
        settings: Settings,
        secret: str,
        *,
        proof: bool = False,
        dkim_key: bytes | None = None,
    ) -> None:
        self.issue = issue
        self.rendered = rendered
        self.settings = settings
        self.secret = secret
        self.proof = proof
        self.dkim_key = dkim_key
        listing = settings.list
        if not _DOT_ATOM.fullmatch(listing.id) or len(listing.id) > 200:
            raise ConfigError(
                f"`[list] id` in newsletter.toml is `{_show(listing.id)}`: it must be a domain-like name"
                " with no spaces, like monthly-update.example.org"
            )
        if not _DOMAIN.fullmatch(listing.domain):
            raise ConfigError(
                f"`[list] domain` in newsletter.toml is `{_show(listing.domain)}`: it must be a domain"
                " name in ASCII, like example.org (an internationalised one as xn-- labels)"
            )
        if dkim_key and settings.dkim.selector and not _SELECTOR.fullmatch(settings.dkim.selector):
            raise ConfigError(
                f"`[dkim] selector` in newsletter.toml is `{_show(settings.dkim.selector)}`: it must be"
                " letters, digits, hyphens and dots, like news2025"
            )
        self.one_click_base = _url(listing.unsubscribe_url.rstrip("/")) if listing.unsubscribe_url else None
        manage = listing.manage_link()
        self.manage_base = _url(manage) if manage else None
        if self.one_click_base is not None and len(self.one_click_base) > LONGEST_URL - 300:
            raise ConfigError(
                f"`[list] unsubscribe_url` in newsletter.toml is {len(self.one_click_base)} characters"
                f" long: it must be at most {LONGEST_URL - 300}, so the link fits on one header line"
            )
        mailbox = _ascii_address(
            listing.unsubscribe_mailto, "`[list] unsubscribe_mailto` in newsletter.toml", ConfigError
        )
        self.mailto = f"mailto:{urllib.parse.quote(mailbox, safe=_MAILTO_SAFE)}?subject="
        self.sender = _ascii_address(listing.bounce_to, "`[list] bounce_to` in newsletter.toml", ConfigError)
        variant = f"[PROOF: {short_name(rendered.variant)}]" if rendered.variant else "[PROOF]"
        self.subject = f"{variant} {issue.subject}" if proof else issue.subject
        # "=_" never occurs in quoted-printable output, so no part can end the multipart early.
        self.boundary = f"=_{secrets.token_hex(12)}"
        # Headers that are the same for every recipient are encoded once.
        reply_to = _ascii_address(issue.reply_to, "the draft's `reply_to`", ConfigError) if issue.reply_to else None
        from_address = _ascii_address(issue.sender.email, "the draft's `from` email", ConfigError)
        self.signer = (
            Signer(
                dkim_key,
                settings.dkim.selector,
                listing.domain,
                include_headers=[h for h in SIGNED_HEADERS if h != b"reply-to" or reply_to],
            )
            if dkim_key and settings.dkim.selector
            else None
        )
        self.head = b"".join(
            [
                _mailbox("From", issue.sender.name, from_address),
                _header("Subject", _unstructured(self.subject)),
                *([_mailbox("Reply-To", "", reply_to)] if reply_to else []),
                _header("List-Id", [*_phrase(listing.name), f"<{listing.id}>"]),
            ]
        )
        self.tail = (
            f"Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{self.boundary}"\r\n'
        ).encode()
        self.one_click_header = b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        self.parts = (
            _Part("plain", rendered.text, self.boundary, escape=False),
            _Part("html", rendered.html, self.boundary, escape=True),
        )
        self.closing = f"--{self.boundary}--\r\n".encode()
        self.stuffed = {id(piece): _stuff(piece) for part in self.parts for piece in part.fixed()}
        """The variant's fixed body pieces with their leading dots doubled for DATA, made once (by id: the
        same objects come back in every message)."""

    def token(self, address: str) -> str:
        """The reader's token, which the unsubscribe and manage links carry (a proof's is PROOF_READER's)."""
        return make_token(PROOF_READER if self.proof else address, self.settings.list.id, self.secret)

    def unsubscribe_links(self, address: str, token: str | None = None) -> tuple[str, str | None]:
        """The mailto: and the one-click (None without `unsubscribe_url`) unsubscribe links of one reader.

        A proof's are for PROOF_READER, never for whoever the proof went to: they work, and unsubscribe nobody.
        """
        token = token or self.token(address)
        mailto = self.mailto + urllib.parse.quote("unsubscribe " + token, safe="-._~")
        one_click = f"{self.one_click_base}/{urllib.parse.quote(token, safe='-._~')}" if self.one_click_base else None
        if len(mailto) > LONGEST_URL or (one_click and len(one_click) > LONGEST_URL):
            raise ConfigError(
                f"the unsubscribe links are too long for a header line (over {LONGEST_URL} characters):"
                " shorten `[list] unsubscribe_url` or `unsubscribe_mailto` in newsletter.toml"
            )
        return mailto, one_click

    def personal_fields(self, address: str) -> dict[str, str]:
        """The values of the rendered parts' personal fields (render.PERSONAL) for one reader."""
        token = self.token(address)
        mailto, one_click = self.unsubscribe_links(address, token)
        return {"email": address, "unsubscribe_url": one_click or mailto, "manage_url": self.manage_link(token)}

    def manage_link(self, token: str) -> str:
        """The reader's "Manage your subscription" page (their unsubscribe token); "" without a web service."""
        return f"{self.manage_base}/{urllib.parse.quote(token, safe='-._~')}" if self.manage_base else ""

    def compose(self, recipient: Addressee, *, sign_later: bool = False) -> Outgoing:
        """The reader's message; with `sign_later`, its DKIM signature is left for `Outgoing.signed()` to make."""
        address = recipient.email if _ADDRESS.fullmatch(recipient.email) else _ascii_address(recipient.email)
        token = self.token(address)
        mailto, one_click = self.unsubscribe_links(address, token)
        message_id = self._message_id(address)
        date = email.utils.format_datetime(datetime.now(UTC).astimezone())
        to = _plain_to(recipient.name, address) or _mailbox("To", recipient.name, address)
        unsubscribe = [f"<{mailto}>,", f"<{one_click}>"] if one_click else [f"<{mailto}>"]
        personal = b"".join(
            [
                to,
                f"Date: {date}\r\nMessage-ID: {message_id}\r\n".encode(),
                _header("List-Unsubscribe", unsubscribe),
                self.one_click_header if one_click else b"",
            ]
        )
        fields = {"email": address, "unsubscribe_url": one_click or mailto, "manage_url": self.manage_link(token)}
        body = [*self.parts[0].encode(fields), *self.parts[1].encode(fields), self.closing]
        head = b"".join([self.head, personal, self.tail, b"\r\n"])
        data = b"".join([head, *body])
        message = Outgoing(
            sender=self.sender,
            recipient=address,
            data=data,
            message_id=message_id,
            crlf=True,
            wire=_dot_stuffed([head, *body], self.stuffed),
        )
        if self.signer is None:
            return message
        message = dataclasses.replace(message, signature=self.signer.prepare(data, body))
        return message if sign_later else message.signed()

    def _message_id(self, address: str) -> str:
        """The same ID for the same issue and person, so a rare repeat after a crash is one mail in most clients."""
        if self.proof:
            return email.utils.make_msgid("proof", domain=self.settings.list.domain)
        digest = hmac.new(self.secret.encode(), f"{self.issue.issue}\n{address}".encode(), hashlib.sha256)
        return f"<{self.issue.issue}.{digest.hexdigest()[:24]}@{self.settings.list.domain}>"


@dataclasses.dataclass(frozen=True, slots=True)
class _Encode:
    """Text a header holds as RFC 2047 encoded-words."""

    text: str


def _text(value: str) -> str:
    """A header value from data as one line of plain text: control characters (CR and LF among them) are
    spaces, runs of white space one space."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _header(name: str, tokens: Iterable[str | _Encode]) -> bytes:
    """`Name: token token ...` folded before any token that would take a line past 78 characters.

    Plain tokens are at most 77 characters, encoded-words at most 75 and sized to the room left on the
    line, so only an address, a Message-ID or a URL (an unbreakable token) can make a line longer.
    """
    lines: list[str] = []
    line = f"{name}:"
    bare = True  # nothing after the colon yet: a token there is never moved to the next line
    for token in tokens:
        if isinstance(token, str):
            words = [token]
        else:
            room = HEADER_LINE - len(line) - 1
            words = _encoded_words(token.text, room if room >= _EW_SMALLEST else HEADER_LINE - 1)
        for word in words:
            if not bare and len(line) + 1 + len(word) > HEADER_LINE:
                lines.append(line)
                line = " " + word
            else:
                line = f"{line} {word}"
            bare = False
    lines.append(line)
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


def _encoded_words(text: str, first: int) -> list[str]:
    """`text` as RFC 2047 encoded-words in UTF-8, Q or B encoded (whichever is shorter), the first at most
    `first` characters long and the rest at most 75; a character is never split between two words."""
    data = text.encode()
    q_length = sum(len(_Q[byte]) for byte in data)
    b = q_length > 4 * -(-len(data) // 3)
    words: list[str] = []
    room = min(first, _EW_LONGEST) - _EW_OVERHEAD
    pieces: list[bytes] = []
    used = size = 0
    for char in text:
        encoded = char.encode()
        cost = 4 * -(-(size + len(encoded)) // 3) if b else used + sum(len(_Q[byte]) for byte in encoded)
        if cost > room and pieces:
            words.append(_encoded_word(b"".join(pieces), b))
            room = _EW_LONGEST - _EW_OVERHEAD
            pieces, used, size = [], 0, 0
            cost = 4 * -(-len(encoded) // 3) if b else sum(len(_Q[byte]) for byte in encoded)
        pieces.append(encoded)
        used, size = cost, size + len(encoded)
    if pieces:
        words.append(_encoded_word(b"".join(pieces), b))
    return words


def _encoded_word(data: bytes, b: bool) -> str:
    if b:
        return f"=?utf-8?b?{base64.b64encode(data).decode('ascii')}?="
    return "=?utf-8?q?" + "".join(_Q[byte] for byte in data) + "?="


def _phrase(value: str) -> list[str | _Encode]:
    """A display name (or List-Id's phrase): atoms as they are, else one quoted-string, else encoded-words.

    Text that contains `=?` is always encoded, so no mail program can decode it as an encoded-word of its own.
    """
    name = _text(value)
    if not name:
        return []
    if "=?" not in name:
        words = name.split(" ")
        if all(_ATOM.fullmatch(word) for word in words):
            return list(words)
        quoted = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if name.isascii() and name.isprintable() and len(quoted) <= HEADER_LINE - 1:
            return [quoted]
    return [_Encode(name)]


def _unstructured(value: str) -> list[str | _Encode]:
    """Unstructured text (Subject): plain printable words as they are; runs of other words encoded."""
    tokens: list[str | _Encode] = []
    run: list[str] = []
    for word in _text(value).split(" "):
        if _PLAIN_WORD.fullmatch(word) and "=?" not in word:
            if run:
                tokens.append(_Encode(" ".join(run)))
                run = []
            tokens.append(word)
        elif word:
            run.append(word)
    if run:
        tokens.append(_Encode(" ".join(run)))
    return tokens


def _mailbox(name: str, display_name: str, address: str) -> bytes:
    """A header holding one mailbox: `Name: phrase <address>`, or the bare address without a name."""
    phrase = _phrase(display_name)
    return _header(name, [*phrase, f"<{address}>"] if phrase else [address])


def _plain_to(name: str, address: str) -> bytes | None:
    """The To header written directly when it is an everyday name (ASCII words, nothing to encode, escape or
    fold) and address: exactly what `_mailbox` writes. None sends it through `_mailbox`."""
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
    return f"To: {to}\r\n".encode("ascii") if len(to) + 4 <= HEADER_LINE else None


def _ascii_address(value: str, what: str = "a recipient's address", error: type[NewsletterError] = ListError) -> str:
    """An address as SMTP without SMTPUTF8 carries it: a dot-atom, the domain in IDNA A-labels.

    Lists, drafts and settings are normalised when they are read, so this only converts what was stored
    before they were (a ledger row with an internationalised domain) and refuses what cannot be sent.
    """
    if _ADDRESS.fullmatch(value):
        return value
    try:
        return ascii_address(value)
    except EmailNotValidError as exc:
        raise error(
            f"`{_show(value)}` ({what}) cannot be sent to: {_show(str(exc), 200)}; correct it, then run"
            " `newsletter recipients check` or `newsletter check`"
        ) from None


def _url(value: str) -> str:
    """A URL as a List-Unsubscribe item holds it: ASCII, with nothing that could end the <...>."""
    return urllib.parse.quote(_CONTROL.sub("", value), safe=_URL_SAFE)


def _show(value: str, longest: int = 60) -> str:
    text = _text(value).replace("`", "'")
    return text if len(text) <= longest else text[: longest - 1] + "…"


class _Part:
    """One text/* part of a variant, quoted-printable encoded once, in pieces between the personal fields.

    The fields are filled as `Rendered.fill` fills them (escaped for HTML, verbatim in text). Every piece
    but the last ends with a soft line break, so the pieces and each message's encoded values join into
    valid quoted-printable whose decoded text is the filled part, byte for byte.
    """

    def __init__(self, subtype: str, content: str, boundary: str, *, escape: bool) -> None:
        self.escape = escape
        self.header = (
            f'--{boundary}\r\nContent-Type: text/{subtype}; charset="utf-8"\r\n'
            f"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        pieces = [piece for piece in FIELDS.split(content.replace("\r\n", "\n")) if piece]
        self.items: list[bytes | tuple[str, bool]] = []
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            if piece in FIELD_NAMES:
                self.items.append((FIELD_NAMES[piece], last))
            else:
                self.items.append(_qp(piece) if last else _continued(_qp(piece)))

    def fixed(self) -> list[bytes]:
        """The pieces that are the same in every message."""
        return [self.header, *(item for item in self.items if isinstance(item, bytes))]

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


def _stuff(data: bytes) -> bytes:
    """`data` with a dot added to every line but its first that starts with one (SMTP DATA, RFC 5321 4.5.2)."""
    return data.replace(b"\r\n.", b"\r\n..")


def _dot_stuffed(chunks: list[bytes], stuffed: dict[int, bytes]) -> tuple[bytes, ...] | None:
    """The message joined from `chunks`, dot-stuffed for DATA, as pieces: the fixed ones from `stuffed`, so
    a message costs a replace over its own few bytes, not over all 55 KB. None when a line end is split
    between two chunks (the transport then stuffs the whole message)."""
    out = []
    line_start = True
    for chunk in chunks:
        if not chunk:
            continue
        if chunk.endswith(b"\r"):
            return None
        done = stuffed.get(id(chunk))
        if done is None:
            done = _stuff(chunk)
        out.append(b"." + done if line_start and chunk.startswith(b".") else done)
        line_start = chunk.endswith(b"\r\n")
    return tuple(out)


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
