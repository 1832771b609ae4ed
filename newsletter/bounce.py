"""What a message in the reply mailbox is: a bounce (hard or soft), an unsubscribe request, an
automatic reply, or unknown.

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
- `unknown`: everything else, such as a person's reply.

The issue a message is about comes from the Message-ID of our original message (`<2025-09.hex@domain>`)
in the returned message or headers, In-Reply-To/References, or the quoted copy.
"""

from __future__ import annotations

import dataclasses
import email
import email.errors
import email.header
import email.message
import email.parser
import email.utils
import re
from typing import Literal
from urllib.parse import unquote

from flufl.bounce import all_failures

from newsletter.unsubscribe import BadToken, read_token

Kind = Literal["hard_bounce", "soft_bounce", "unsubscribe", "auto_reply", "unknown"]
KINDS: tuple[Kind, ...] = ("hard_bounce", "soft_bounce", "unsubscribe", "auto_reply", "unknown")

@dataclasses.dataclass(frozen=True, slots=True)
class Failure:
    """One recipient a bounce reports: `address` as we sent it when the report says (Original-Recipient)."""

    address: str
    kind: Literal["hard", "soft"]
    reason: str
    final: str | None = None
    """The Final-Recipient, when it differs from `address` (an alias or forward)."""
    delayed: bool = False
    """A warning that the relay is still trying (Action: delayed): not a failure yet."""


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
        return Classified(kind, tuple(dict.fromkeys(f.address for f in failures)), issue, short(reason),
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
            failures.append(Failure(address, kind, short(reason), final if original and final != original else None,
                                    delayed=what == "delayed"))
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
            failures.append(Failure(address, kind, short(_reason_from_text(window) or
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
        return f"automatic reply (subject: {short(subject, 60)})"
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


def short(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


