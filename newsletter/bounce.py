"""What a message in the reply mailbox is: a bounce (hard or soft), a delivery warning, an unsubscribe
request, an automatic reply, or unknown.

- `hard_bounce` / `soft_bounce`: a report that a message could not be delivered. Hard is for an
  address that is gone (5.1.x, "user unknown", "no such mailbox", or a permanent failure that gives no
  reason); soft is for everything that says nothing final about the address: a full mailbox or quota,
  a message too big, spam and policy blocks (5.7.x), timeouts, loops and faults of the receiving
  system, so one blocked send cannot suppress a whole list (soft bounces suppress after three issues in
  a row).
  RFC 3464 reports (message/delivery-status) and RFC 6533 global ones (message/global-delivery-status,
  UTF-8 addresses) are read field by field: a specific Status decides; a vague one (5.0.0, or none)
  is read from the Diagnostic-Code, then from the notice beside the address. Bounces without such a
  part (qmail, Exim, old Exchange, ...) go to `flufl.bounce` for the addresses, and the status code,
  wording or SMTP reply beside each address (else anywhere in the notice) decides.
  A mail system's automatic deletion notice (an MDN "automatic-action/...; deleted", as Dovecot sends
  for a full mailbox) is a bounce too.
- `delayed`: a warning that the relay is still trying (Action: delayed, or a "message delayed" notice).
  Reported, never counted as a bounce.
- `unsubscribe`: a message to the List-Unsubscribe mailto with the subject "unsubscribe TOKEN", whose
  signed token names the person; a bad, expired or unchecked token is `unknown`, never trusted.
- `auto_reply`: out-of-office and other automatic replies (RFC 3834 Auto-Submitted, X-Autoreply,
  X-Autorespond, Precedence: auto_reply, "Automatic reply:" subjects) and read receipts. Never bounces.
- `unknown`: everything else, such as a person's reply.

The issue a message is about comes from the Message-ID of our original message (`<2025-09.hex@domain>`)
in the returned message or headers, In-Reply-To/References, or the quoted copy.
"""

from __future__ import annotations

import base64
import dataclasses
import email
import email.errors
import email.header
import email.message
import email.parser
import email.utils
import functools
import quopri
import re
from collections.abc import Callable
from typing import Literal, TypedDict
from urllib.parse import unquote

from flufl.bounce import all_failures

from newsletter.errors import BadToken
from newsletter.unsubscribe import read_token

Kind = Literal["hard_bounce", "soft_bounce", "delayed", "unsubscribe", "auto_reply", "unknown"]
KINDS: tuple[Kind, ...] = ("hard_bounce", "soft_bounce", "delayed", "unsubscribe", "auto_reply", "unknown")


@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a bounce reports: `address` as we sent it when the report says (Original-Recipient)."""

    address: str
    kind: Literal["hard", "soft"]
    reason: str
    final: str | None = None
    """The Final-Recipient, when it differs from `address` (an alias or forward)."""
    delayed: bool = False
    """A warning that the relay is still trying (Action: delayed): not a failure yet. `kind` is then soft."""


class _Common(TypedDict):
    """What every classification of one message carries, whatever it found."""

    subject: str
    message_id: str


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


OUR_ID = re.compile(r"<(\d{4}-(?:0[1-9]|1[0-2])(?:-[a-z0-9]+)*)\.[0-9a-f]{8,64}@([A-Za-z0-9.-]+)>")
ENHANCED_STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
SMTP_REPLY = re.compile(r"(?<![\d.#])([45]\d\d)(?=[ -]\s*\S)")
UNSUBSCRIBE = re.compile(r"^\s*unsubscribe(?:\s+(\S+))?\s*$", re.IGNORECASE)
AUTO_SUBJECT = re.compile(
    r"^\s*(?:automatic reply|auto(?:matic)?[ -]?(?:reply|response|respond)|autoreply|"
    r"out of (?:the )?office|ooo\b|away from (?:the|my) office|auto:)",
    re.IGNORECASE,
)
BOUNCE_SUBJECT = re.compile(
    r"undeliver|delivery (?:status notification|has failed|failure|failed|problem|warning)|"
    r"failure notice|returned mail|mail delivery (?:failed|failure|system)|non-?delivery|"
    r"could not be delivered|address not found|message not delivered|delivery incomplete|"
    r"delayed mail|warning: could not send",
    re.IGNORECASE,
)
DAEMONS = ("mailer-daemon", "mailer_daemon", "mailerdaemon", "postmaster", "mail-delivery-subsystem", "mdaemon")
COPY_MARKERS = re.compile(
    r"^\s*(?:-{2,}\s*Below this line is a copy of the message|"
    r"-{2,}\s*This is a copy of the message|-{2,}\s*Original message|"
    r"-{2,}\s*The header of the original message|Original message headers:|"
    r"-{2,}\s*START OF RETURNED MESSAGE|Here is a copy of the first part of the message|"
    r"(?:Return-Path|Received):\s)",  # a returned header block pasted into the notice
    re.IGNORECASE | re.MULTILINE,
)
SOFT_WORDS = re.compile(
    # the mailbox or the message, not the address
    r"mail ?(?:box|folder)(?: is)? full|quota|(?:out of|insufficient(?: system)?|exceeded(?: its| the)?) storage|"
    r"mail ?box space|too much mail|message size|size limit|too (?:big|large)|"
    # spam and policy blocks
    r"spam|unsolicited|blocked|block ?list|black ?list|not accepting mail from|"
    r"(?:local|security|content|sender) policy|policy (?:reasons|violation|restriction)|due to policy|"
    # the receiving system, the network, loops, time
    r"temporar|try again later|host not found, try again|name service error|retry|deferred|greylist|"
    r"too many (?:connections|messages|hops)|rate limit|looping|mail loop|loop detected|command died|"
    r"while being processed|try to resend|"
    r"timed? ?out|not (?:reachable|responding)|did not respond|no answer from host|(?:can't|could not|unable to) "
    r"connect|connection (?:refused|failed|lost)|unavailable or busy|server busy|queue too long|queue period|"
    r"aborted after|failed \d+ attempts|after \d+ attempt",
    re.IGNORECASE,
)
HARD_WORDS = re.compile(
    r"user unknown|unknown user|no such (?:user|mailbox|recipient|address)|"
    r"does not exist|doesn't exist|no mailbox|not found|invalid (?:recipient|address|mailbox)|"
    r"recipient (?:address )?rejected|mailbox unavailable|account (?:has been )?disabled|"
    r"not recognized|no longer (?:valid|exists|in use)|permanent error|address rejected",
    re.IGNORECASE,
)
SOFT_PERMANENT = {"5.2.2", "5.2.3", "5.3.4"}
"""5.x.x codes about the mailbox or message rather than the address: mailbox full, message too big."""
SOFT_REPLIES = {"552", "554"}
"""SMTP replies without an enhanced code that say nothing about the address: 552 exceeded storage
allocation; 554 transaction failed (content, policy or loops; a missing address says so in words)."""
UNICODE_CHAR = re.compile(r"\\x\{([0-9A-Fa-f]{2,6})\}")
"""RFC 6533 EmbeddedUnicodeChar in a utf-8 address: \\x{FC} is ü."""
DSN_PARTS = ("message/delivery-status", "message/global-delivery-status")
MDN_PARTS = ("message/disposition-notification", "message/global-disposition-notification")
AUTOMATIC_DELETION = re.compile(r"automatic-action/[^;]*;\s*deleted", re.IGNORECASE)


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
    common: _Common = {"subject": subject, "message_id": own_id}

    failures, reported = _dsn_failures(msg)
    if not failures and not reported and _looks_like_bounce(msg):
        failures = _heuristic_failures(msg)
        if not failures:
            return Classified(
                "unknown", (), issue, "looks like a bounce but names no address that can be read", **common
            )
    failures = _drop_own(msg, failures)
    if failures:
        kind: Kind = (
            "delayed"
            if all(f.delayed for f in failures)
            else "hard_bounce"
            if any(f.kind == "hard" for f in failures)
            else "soft_bounce"
        )
        reason = "; ".join(dict.fromkeys(f.reason for f in failures))
        return Classified(
            kind,
            tuple(dict.fromkeys(f.address for f in failures)),
            issue,
            short(reason),
            failures=tuple(failures),
            **common,
        )
    if reported:
        return Classified("unknown", (), issue, f"delivery report without a failure ({', '.join(reported)})", **common)

    match = UNSUBSCRIBE.match(unquote(subject))
    if match:
        token = match.group(1)
        if not token:
            return Classified(
                "unknown", (), issue, "asks to unsubscribe without a token: a person should check who", **common
            )
        if not secret:
            return Classified("unknown", (), issue, "unsubscribe request: no secret to check its token", **common)
        try:
            address, list_id = read_token(token, secret)
        except BadToken as exc:
            return Classified("unknown", (), issue, f"unsubscribe request with an {exc} token: not trusted", **common)
        return Classified(
            "unsubscribe", (address.lower(),), issue, "unsubscribe request (signed token)", list_id=list_id, **common
        )

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
    if content_type in ("message/rfc822", "message/global", "message/global-headers") and part.is_multipart():
        inner = part.get_payload(0)  # the parser reads every message/* part as a message
        return inner if isinstance(inner, email.message.Message) else None
    if content_type in ("text/rfc822-headers", "message/global-headers", "text/rfc822"):
        return email.parser.Parser().parsestr(_text(part), headersonly=True)
    return None


def _dsn_failures(msg: email.message.Message) -> tuple[list[Failure], list[str]]:
    """Failed and delayed recipients of every RFC 3464 / RFC 6533 report part, and of automatic-deletion
    MDNs; and the actions seen, if any report part was there."""
    failures: list[Failure] = []
    actions: list[str] = []
    notice: str | None = None

    def beside(address: str) -> str:
        nonlocal notice
        if notice is None:
            notice = _notice_text(msg)
        return _window(notice, address)

    for part in msg.walk():
        content_type = part.get_content_type()
        if content_type in MDN_PARTS:
            failures += _deletion(part, beside)
            continue
        if content_type not in DSN_PARTS:
            continue
        for block in _status_blocks(part):  # the first block is about the message and has no Action
            action = block.get("action", "").lower()
            if not action:
                continue
            actions.append(action.split()[0])
            original = _recipient(block.get("original-recipient", ""))
            final = _recipient(block.get("final-recipient", "") or block.get("x-actual-recipient", ""))
            address = original or final
            if not address:
                continue
            if action.startswith("delayed"):
                what = "delayed"
            elif action.startswith(("fail", "error")):  # failed; also seen: failure, fail, error
                what = "failed"
            else:
                continue  # delivered, relayed, expanded: no failure
            status_field = block.get("status", "")
            status_match = ENHANCED_STATUS.search(status_field)
            status = ".".join(status_match.groups()) if status_match else ""
            said = _diagnostic(block.get("diagnostic-code", "")) or _status_comment(status_field, status_match)
            kind = "soft" if what == "delayed" else _failed_kind(status, said, functools.partial(beside, address))
            if not said and what == "failed" and (not status or status.endswith(".0.0")):
                said = _reason_from_text(beside(address))  # the notice said what the report did not
            reason = said if status and status in said else " ".join(x for x in (status, said or what) if x)
            failures.append(
                Failure(
                    address,
                    kind,
                    short(reason),
                    final if original and final != original else None,
                    delayed=what == "delayed",
                )
            )
    return failures, list(dict.fromkeys(actions))


def _failed_kind(status: str, said: str, notice: Callable[[], str]) -> Literal["hard", "soft"]:
    """Hard or soft for a failed recipient: a specific Status decides; a vague one (X.0.0) or none is read
    from what the report says (Diagnostic-Code, or a comment in Status), then from the notice."""
    if status and not status.endswith(".0.0") and (kind := status_kind(status)):
        return kind
    kind = _evidence(said) or _evidence(notice())
    return kind or ("soft" if status.startswith("4.") else "hard")


def _deletion(part: email.message.Message, beside: Callable[[str], str]) -> list[Failure]:
    """An MDN saying the recipient's system deleted the message unread (Sieve reject, a full mailbox):
    a failure, soft unless the notice says the address is gone. Read receipts are not failures."""
    fields: dict[str, str] = {}
    for block in _status_blocks(part):
        fields = {**block, **fields}
    if not AUTOMATIC_DELETION.search(fields.get("disposition", "")):
        return []
    address = _recipient(fields.get("final-recipient", "") or fields.get("original-recipient", ""))
    if not address:
        return []
    window = beside(address)
    return [
        Failure(
            address,
            _evidence(window) or "soft",
            short(_reason_from_text(window) or "deleted unread by the recipient's mail system"),
        )
    ]


def _diagnostic(value: str) -> str:
    """A Diagnostic-Code without its type (`smtp;`) and without the repeated codes of continuation lines."""
    text = " ".join(value.split())
    if re.match(r"^[A-Za-z][\w-]*\s*;", text):
        text = text.split(";", 1)[1].strip()
    first = re.match(r"^[45]\d\d[ -](?:[245]\.\d{1,3}\.\d{1,3}\s+)?", text)
    head, rest = (text[: first.end()], text[first.end() :]) if first else ("", text)
    rest = re.sub(r"(?:^|\s)[45]\d\d[ -][245]\.\d{1,3}\.\d{1,3}(?=\s)", "", rest)
    return " ".join(head.replace("-", " ", 1).split() + rest.split())


def _status_comment(value: str, code: re.Match[str] | None) -> str:
    """What a Status field says besides its code: `5.0.0 (recipient reached disk quota)`, `553 Too big`."""
    text = value[code.end() :] if code else value
    return " ".join(text.split()).strip("() ")


def _status_blocks(part: email.message.Message) -> list[dict[str, str]]:
    """The field blocks of a report part (lower-case names, unfolded values), from its decoded text.

    The text, not the parser's blocks: Python reads message/global-delivery-status as one message (its
    recipient blocks lost in a body), leaves non-ASCII field values as bytes it cannot decode, and does
    not undo a base64 or quoted-printable transfer encoding on message/* parts.
    """
    payload = part.get_payload()
    if isinstance(payload, list):  # written back out as the bytes that were read
        raw = b"\n".join(p.as_bytes() for p in payload if isinstance(p, email.message.Message))
    else:
        raw = str(payload).encode("utf-8", "surrogateescape")
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding == "base64":
        raw = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/]", b"", raw) + b"==")
    elif encoding == "quoted-printable":
        raw = quopri.decodestring(raw)
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    blocks = []
    for chunk in re.split(r"\n[ \t]*\n", text):
        fields: dict[str, str] = {}
        name = ""
        for line in chunk.split("\n"):
            if line[:1] in (" ", "\t") and name:
                fields[name] += " " + line.strip()
                continue
            name, colon, value = line.partition(":")
            name = name.strip().lower() if colon else ""
            if name and name not in fields:
                fields[name] = value.strip()
        if fields:
            blocks.append({k: " ".join(v.split()) for k, v in fields.items()})
    return blocks


def _recipient(value: str) -> str:
    """The address in an RFC 3464 recipient field: `rfc822; someone@example.org`, or RFC 6533
    `utf-8; jürgen@example.de` (where `\\x{FC}` may stand for a character)."""
    address_type, semicolon, address = value.partition(";")
    if not semicolon:
        address_type, address = "rfc822", value
    address = address.strip().strip("<>").strip()
    if address_type.strip().lower() == "utf-8":
        address = UNICODE_CHAR.sub(_unicode_char, address)
    return address.lower() if "@" in address else ""


def _unicode_char(match: re.Match[str]) -> str:
    point = int(match.group(1), 16)
    return chr(point) if point <= 0x10FFFF and not 0xD800 <= point <= 0xDFFF else match.group(0)


def _looks_like_bounce(msg: email.message.Message) -> bool:
    """Worth asking flufl.bounce about: its heuristics are only for what a mail system sent."""
    sender = email.utils.parseaddr(_header(msg, "from"))[1].lower()
    return (
        sender.split("@")[0] in DAEMONS
        or (not sender and "<>" in _header(msg, "from"))  # a null sender: only mail systems use one
        or bool(BOUNCE_SUBJECT.search(_header(msg, "subject")))
        or (
            msg.get_content_type() == "multipart/report"
            and str(msg.get_param("report-type") or "").lower() != "disposition-notification"
        )
        or "x-failed-recipients" in msg
        or "x-ms-exchange-message-is-ndr" in msg
    )


def _heuristic_failures(msg: email.message.Message) -> list[Failure]:
    """flufl.bounce's addresses: its temporary ones are warnings (delayed); for each permanent one, the
    wording beside the address, else anywhere in the notice, says hard or soft (hard when nothing does)."""
    temporary, permanent = all_failures(msg)
    notice = _notice_text(msg)
    failures = []
    for found, delayed in ((permanent, False), (temporary, True)):
        for address in sorted(a.decode("ascii", "replace").lower() for a in found):
            if "@" not in address:
                continue
            said = window = _window(notice, address)
            kind = _evidence(window)
            if kind is None and not delayed and (kind := _evidence(notice)):
                said = notice
            failures.append(
                Failure(
                    address,
                    "soft" if delayed else kind or "hard",
                    short(_reason_from_text(said) or ("delayed" if delayed else "failed")),
                    delayed=delayed,
                )
            )
    return failures


def _notice_text(msg: email.message.Message) -> str:
    """The human-readable notice of a bounce, without the returned copy of our message."""
    texts: list[str] = []

    def visit(part: email.message.Message) -> None:
        content_type = part.get_content_type()
        if content_type.startswith("message/") or content_type == "text/rfc822-headers":
            return  # the returned message or headers, and the machine-readable report parts
        if part.is_multipart():
            for sub in part.get_payload():
                if isinstance(sub, email.message.Message):
                    visit(sub)
        elif content_type == "text/plain" or (content_type == "text/html" and not texts):
            text = _text(part)
            if content_type == "text/html":
                text = re.sub(r"<[^>]+>", " ", text)
            texts.append(text)

    visit(msg)
    text = "\n".join(texts)
    marker = COPY_MARKERS.search(text)
    return text[: marker.start()] if marker else text


def _window(text: str, address: str) -> str:
    """The lines after an address in the notice (where its diagnosis is), else the whole notice."""
    at = text.lower().find(address)
    if at < 0:
        return text
    rest = text[at : at + 800]
    # Stop at the next recipient paragraph (qmail: a blank line then <addr>:)
    stop = re.search(r"\n\s*\n\s*<[^>\s]+@[^>\s]+>:", rest)
    return rest[: stop.start()] if stop else rest


def _evidence(text: str) -> Literal["hard", "soft"] | None:
    """What a piece of a report says about the address, if anything: a specific status code (5.1.1; not
    a vague X.0.0), then wording (soft first: "mailbox full" beats "mailbox unavailable"), then a bare
    SMTP reply. Lines are joined first, so wording wrapped across lines is read whole."""
    text = " ".join(text.split())
    for match in ENHANCED_STATUS.finditer(text):
        code = ".".join(match.groups())
        if not code.endswith(".0.0") and (kind := status_kind(code)):
            return kind
    if SOFT_WORDS.search(text):
        return "soft"
    if HARD_WORDS.search(text):
        return "hard"
    reply = SMTP_REPLY.search(text)
    if reply:
        return "soft" if reply.group(1).startswith("4") or reply.group(1) in SOFT_REPLIES else "hard"
    return None


def _reason_from_text(text: str) -> str:
    """A short diagnosis: in the first paragraph that gives a code (else says what happened, else the
    first paragraph), the lines from the one that does, unwrapped, without the address they start with."""

    def code(line: str) -> str:
        return next((".".join(m.groups()) for m in ENHANCED_STATUS.finditer(line) if m.group(1) != "2"), "")

    def coded(line: str) -> bool:
        return bool(SMTP_REPLY.search(line) or code(line))

    def worded(line: str) -> bool:
        return bool(HARD_WORDS.search(line) or SOFT_WORDS.search(line))

    def unwrapped(lines: list[str]) -> str:
        return re.sub(r"^[^\s@]*@\S*\s*", "", " ".join(" ".join(lines).split()))  # without the address

    paragraphs = [[line.strip() for line in p.splitlines() if line.strip()] for p in re.split(r"\n[ \t]*\n", text)]
    said = next((s for s in map(unwrapped, paragraphs) if s), "")
    for test in (coded, worded):
        lines = next((lines for lines in paragraphs if test(" ".join(lines))), None)
        if lines:
            said = unwrapped(lines[next((i for i, line in enumerate(lines) if test(line)), 0) :])
            break
    status = code(said)
    return f"{status} {said}".strip() if status and status not in said else said


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
        return f"automatic reply (subject: {short(subject, 60)})"
    report_type = (msg.get_param("report-type") or "") if msg.get_content_type() == "multipart/report" else ""
    if str(report_type).lower() == "disposition-notification" or any(
        p.get_content_type() == "message/disposition-notification" for p in msg.walk()
    ):
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
    if not isinstance(payload, bytes):  # None: nothing to decode
        value = part.get_payload()
        return value if isinstance(value, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("latin-1")


def short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
