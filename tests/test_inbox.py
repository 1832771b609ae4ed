"""Inbox processing: real-shaped bounces classified, the ledger updated once, only understood mail moved.

The same mailbox is processed from a Maildir, an mbox and a real IMAP server (Debian's Dovecot on
loopback, skipped when it is not installed), including a connection dropped part-way through.
"""

from __future__ import annotations

import imaplib
import mailbox
import re
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from imap_server import PASSWORD, Dovecot, DropProxy, available
from newsletter.bounce import classify, status_kind
from newsletter.config import Settings
from newsletter.inbox import (
    ImapSource,
    InboxError,
    MaildirSource,
    MboxSource,
    _literal,
    open_source,
    process,
)
from newsletter.ledger import Ledger, Row
from newsletter.unsubscribe import make_token

FIXTURES = Path(__file__).parent / "fixtures" / "dsn"
SECRET = "inbox-test-secret"
LIST_ID = Settings().list.id
DOMAIN = Settings().list.domain
ISSUES = ("2025-07", "2025-08", "2025-09")

# fixture file: (kind, addresses, issue, hard/soft of each failure)
EXPECTED = {
    "postfix-user-unknown.eml": ("hard_bounce", ("unknown.user@postfix.example.org",), "2025-09", "hard"),
    "m365-recipient-not-found.eml": ("hard_bounce", ("left.council@m365.example.org",), "2025-09", "hard"),
    "gmail-address-not-found.eml": ("hard_bounce", ("no.such.person@mail.example.org",), "2025-09", "hard"),
    "qmail-no-mailbox.eml": ("hard_bounce", ("gone@qmail.example.org",), "2025-09", "hard"),
    "soft-mailbox-full.eml": ("soft_bounce", ("full.mailbox@soft.example.org",), "2025-09", "soft"),
    "postfix-delayed.eml": ("delayed", ("slow.server@delay.example.org",), "2025-09", "soft"),
    "exim-over-quota.eml": ("soft_bounce", ("quota@exim.example.org",), "2025-09", "soft"),
    "out-of-office.eml": ("auto_reply", ("away@example.org",), "2025-09", None),
    "human-reply.eml": ("unknown", (), "2025-09", None),
}
UNSUBSCRIBER = "leaving@example.org"
STRANGER = "stranger@elsewhere.example.org"
RECIPIENTS = sorted(
    {a for _, addresses, _, _ in EXPECTED.values() for a in addresses}
    | {UNSUBSCRIBER, "colleague@example.org", "steady@example.org"}
)
HARD = {
    "unknown.user@postfix.example.org",
    "left.council@m365.example.org",
    "no.such.person@mail.example.org",
    "gone@qmail.example.org",
}
SOFT = {"full.mailbox@soft.example.org", "quota@exim.example.org"}
DELAYED = "slow.server@delay.example.org"
"""Its report says Action: delayed: a warning, reported and moved, but nothing is recorded while the relay
keeps trying."""


# -- messages built in the test ----------------------------------------------------------------------


def unsubscribe_message(
    address: str = UNSUBSCRIBER,
    *,
    list_id: str = LIST_ID,
    secret: str = SECRET,
    token: str | None = None,
    message_id: str = "<unsub.1@mail.example.org>",
) -> bytes:
    """What a mail program sends when the List-Unsubscribe mailto is clicked."""
    msg = EmailMessage()
    msg["From"] = address
    msg["To"] = "unsubscribe@wmchildrensservices.org.uk"
    msg["Subject"] = f"unsubscribe {token if token is not None else make_token(address, list_id, secret)}"
    msg["Message-ID"] = message_id
    msg.set_content("This message will unsubscribe you from the list.\n")
    return msg.as_bytes()


def dsn(
    address: str,
    *,
    issue: str | None,
    status: str = "5.1.1",
    action: str = "failed",
    message_id: str | None = None,
    diagnostic: str | None = None,
) -> bytes:
    """A minimal RFC 3464 report; with `issue` None, no returned headers (the issue is unknown)."""
    own = message_id or f"<dsn.{address.split('@')[0]}.{issue}.{status}@mx.example.org>"
    code = "550" if status.startswith("5") else "452"
    returned = (
        ""
        if issue is None
        else f"""--B
Content-Type: text/rfc822-headers

From: West Midlands Regional Team <regional.update@wmchildrensservices.org.uk>
To: <{address}>
Message-ID: <{issue}.00112233445566778899aabb@wmchildrensservices.org.uk>

"""
    )
    text = f"""Return-Path: <>
From: Mail Delivery System <MAILER-DAEMON@mx.example.org>
To: bounces@wmchildrensservices.org.uk
Subject: Undelivered Mail Returned to Sender
Message-ID: {own}
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B"

--B
Content-Type: text/plain

<{address}>: {code} {status} mailbox problem

--B
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {address}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; {diagnostic or f"{code} {status} mailbox problem"}

{returned}--B--
"""
    return text.replace("\n", "\r\n").encode()


def stranger_bounce() -> bytes:
    """A bounce of mail this pipeline never sent: no issue, an address that is not in the send log."""
    return dsn(STRANGER, issue=None, message_id="<stranger.1@mx.example.org>")


def bad_token_message() -> bytes:
    return unsubscribe_message(
        "victim@example.org",
        token="WyJ2aWN0aW1AZXhhbXBsZS5vcmciXQ.aM0Pfg.forged",
        message_id="<unsub.forged@mail.example.org>",
    )


def all_messages() -> list[tuple[str, bytes]]:
    """Every fixture, plus the unsubscribe requests and the stranger's bounce made here."""
    messages = [(name, (FIXTURES / name).read_bytes()) for name in EXPECTED]
    messages.insert(4, ("unsubscribe", unsubscribe_message()))
    messages += [("stranger", stranger_bounce()), ("bad-token", bad_token_message())]
    return messages


UNDERSTOOD = {name for name, (kind, *_) in EXPECTED.items() if kind != "unknown"} | {"unsubscribe"}
LEFT = {"human-reply.eml", "stranger", "bad-token"}


def message_id(raw: bytes) -> str:
    match = re.search(rb"^Message-I[Dd]:\s*(<[^>]+>)", raw, re.MULTILINE | re.IGNORECASE)
    if match is None:
        match = re.search(rb"^Message-I[Dd]:\s*\r?\n\s+(<[^>]+>)", raw, re.MULTILINE | re.IGNORECASE)
    assert match, raw[:200]
    return match.group(1).decode()


def ids(names: set[str]) -> set[str]:
    return {message_id(raw) for name, raw in all_messages() if name in names}


# -- the ledger ----------------------------------------------------------------------------------------


def make_ledger(path: Path, issues: tuple[str, ...] = ISSUES, recipients: list[str] = RECIPIENTS) -> Ledger:
    ledger = Ledger(path)
    for issue in issues:
        ledger.enqueue(issue, [Row(address, address.split("@")[0], "walsall") for address in recipients])
        for address in recipients:
            ledger.sending(issue, address, f"<{issue}.000000000000000000000000@{DOMAIN}>")
            ledger.finished(issue, address, "sent", "250 2.0.0 queued")
    return ledger


def tables(ledger: Ledger) -> dict[str, list[tuple]]:
    """Every row of every table, timestamps included: for 'nothing changed'."""
    return {
        table: sorted(ledger.db.execute(f"SELECT * FROM {table}"))
        for table in ("deliveries", "suppressions", "bounces")
    }


def state(ledger: Ledger) -> dict[str, set[tuple]]:
    """The ledger without timestamps: for comparing runs that happened at different times."""
    return {
        "deliveries": set(ledger.db.execute("SELECT issue, email, status, coalesce(reply, '') FROM deliveries")),
        "suppressions": set(ledger.db.execute("SELECT email, reason, source FROM suppressions")),
        "bounces": set(ledger.db.execute("SELECT email, issue, kind, reason, source FROM bounces")),
    }


def check_ledger_after_everything(ledger: Ledger) -> None:
    bounces = {(e, i, k) for e, i, k, _, s in state(ledger)["bounces"] if s == "inbox"}
    assert bounces == {(a, "2025-09", "hard") for a in HARD} | {(a, "2025-09", "soft") for a in SOFT}
    suppressed = {e: r for e, r, _ in state(ledger)["suppressions"]}
    assert set(suppressed) == HARD | {UNSUBSCRIBER}
    assert suppressed[UNSUBSCRIBER] == "unsubscribed by email"
    assert suppressed["gone@qmail.example.org"] == "hard bounce: Sorry, no mailbox here by that name. (#5.1.1)"
    assert all(source == "inbox" for _, _, source in state(ledger)["suppressions"])
    rows = {(i, e): (s, r) for i, e, s, r in state(ledger)["deliveries"]}
    for address in HARD | SOFT:
        status, reply = rows[("2025-09", address)]
        assert status == "failed" and reply.startswith(f"bounced ({'hard' if address in HARD else 'soft'}): ")
        assert rows[("2025-08", address)] == ("sent", "250 2.0.0 queued")
    assert rows[("2025-09", DELAYED)] == ("sent", "250 2.0.0 queued")
    assert rows[("2025-09", "steady@example.org")] == ("sent", "250 2.0.0 queued")
    assert rows[("2025-09", UNSUBSCRIBER)] == ("sent", "250 2.0.0 queued")  # suppression acts on later issues
    assert "victim@example.org" not in suppressed and STRANGER not in suppressed


# -- Maildir helpers -------------------------------------------------------------------------------------


def fill_maildir(path: Path, messages: list[tuple[str, bytes]]) -> mailbox.Maildir:
    box = mailbox.Maildir(path, factory=None, create=True)
    for _, raw in messages:
        box.add(raw)
    return box


def maildir_ids(path: Path) -> set[str]:
    return {
        message_id(path.joinpath(sub, name).read_bytes())
        for sub in ("new", "cur")
        for name in (p.name for p in (path / sub).iterdir())
    }


def files(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# -- classification --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fixture_is_classified(name: str) -> None:
    kind, addresses, issue, severity = EXPECTED[name]
    found = classify((FIXTURES / name).read_bytes(), secret=SECRET, domain=DOMAIN)
    assert (found.kind, found.addresses, found.issue) == (kind, addresses, issue), found
    assert found.reason
    if severity:
        assert [f.kind for f in found.failures] == [severity]
    else:
        assert found.failures == ()


def test_reasons_are_short_and_say_what_happened() -> None:
    def reason(name: str) -> str:
        return classify((FIXTURES / name).read_bytes(), secret=SECRET).reason

    assert reason("m365-recipient-not-found.eml") == (
        "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup"
    )
    assert reason("gmail-address-not-found.eml").startswith(
        "550 5.1.1 The email account that you tried to reach does not exist. Please try double-checking"
    )
    assert "User unknown in local recipient table" in reason("postfix-user-unknown.eml")
    assert reason("soft-mailbox-full.eml").endswith("Mailbox full")
    assert "over quota" in reason("exim-over-quota.eml")
    assert all(len(reason(name)) <= 200 for name in EXPECTED)


def test_unsubscribe_with_a_valid_token() -> None:
    found = classify(unsubscribe_message(), secret=SECRET, domain=DOMAIN)
    assert (found.kind, found.addresses, found.list_id) == ("unsubscribe", (UNSUBSCRIBER,), LIST_ID)
    # Mail programs fold the long subject; some leave the %20 of the mailto URL.
    token = make_token(UNSUBSCRIBER, LIST_ID, SECRET)
    folded = unsubscribe_message().replace(b"Subject: unsubscribe ", b"Subject: unsubscribe\r\n ")
    assert classify(folded, secret=SECRET).kind == "unsubscribe"
    raw = unsubscribe_message(token=f"%20{token}").replace(b"unsubscribe %20", b"unsubscribe%20")
    assert classify(raw, secret=SECRET).addresses == (UNSUBSCRIBER,)


@pytest.mark.parametrize(
    ("raw", "secret", "why"),
    [
        (bad_token_message(), SECRET, "invalid token"),
        (unsubscribe_message(secret="someone else's secret"), SECRET, "invalid token"),
        (unsubscribe_message(), None, "no secret"),
        (unsubscribe_message(token=""), SECRET, "without a token"),
    ],
)
def test_an_unsubscribe_that_cannot_be_checked_is_never_trusted(raw: bytes, secret: str | None, why: str) -> None:
    found = classify(raw, secret=secret)
    assert found.kind == "unknown" and found.addresses == ()
    assert why in found.reason


def test_an_expired_token_is_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 500 * 24 * 3600)
    raw = unsubscribe_message()
    monkeypatch.setattr(time, "time", real)
    found = classify(raw, secret=SECRET)
    assert found.kind == "unknown" and "expired" in found.reason


@pytest.mark.parametrize(
    "header",
    [
        "X-Autoreply: yes",
        "X-Autorespond: Out of office",
        "Precedence: auto_reply",
        "Subject: Out of Office: Regional Update",
        "Subject: Automatic reply: hello",
        "Auto-Submitted: auto-replied (vacation)",
    ],
)
def test_automatic_replies(header: str) -> None:
    raw = (
        f"From: Someone <someone@example.org>\r\nTo: regional.update@{DOMAIN}\r\n{header}\r\n"
        + ("" if header.startswith("Subject") else "Subject: Re: Regional Update\r\n")
        + f"In-Reply-To: <2025-08.0123456789abcdef01234567@{DOMAIN}>\r\n\r\nI am away.\r\n"
    ).encode()
    found = classify(raw, secret=SECRET, domain=DOMAIN)
    assert (found.kind, found.issue, found.failures) == ("auto_reply", "2025-08", ())


def test_a_read_receipt_is_an_automatic_reply() -> None:
    raw = f"""From: Reader <reader@example.org>
To: regional.update@{DOMAIN}
Subject: Read: Regional Update, September 2025
Message-ID: <mdn.1@example.org>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=disposition-notification; boundary="R"

--R
Content-Type: text/plain

Your message was read on Friday 19 September 2025 at 09:12.

--R
Content-Type: message/disposition-notification

Reporting-UA: EX01.example.org; Microsoft Exchange Server
Final-Recipient: rfc822; reader@example.org
Original-Message-ID: <2025-09.0123456789abcdef01234567@{DOMAIN}>
Disposition: automatic-action/MDN-sent-automatically; displayed

--R--
""".replace("\n", "\r\n").encode()
    found = classify(raw, domain=DOMAIN)
    assert (found.kind, found.issue, found.reason) == ("auto_reply", "2025-09", "read receipt")


def test_a_bounce_that_says_auto_replied_is_still_a_bounce() -> None:
    raw = (FIXTURES / "postfix-user-unknown.eml").read_bytes()
    assert b"Auto-Submitted: auto-replied" in raw
    assert classify(raw).kind == "hard_bounce"


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        ("5.1.1", "hard"),
        ("5.1.10", "hard"),
        ("5.4.4", "hard"),
        ("4.2.2", "soft"),
        ("4.4.7", "soft"),
        ("5.2.2", "soft"),
        ("5.7.1", "soft"),
        ("5.3.4", "soft"),
        ("2.0.0", None),
    ],
)
def test_status_codes(status: str, kind: str | None) -> None:
    assert status_kind(status) == kind
    if kind:
        assert classify(dsn("x@example.org", issue="2025-09", status=status)).kind == f"{kind}_bounce"


def test_a_delayed_report_is_a_warning_and_a_delivered_one_is_not_a_bounce() -> None:
    found = classify(dsn("x@example.org", issue="2025-09", status="5.1.1", action="delayed"))
    assert found.kind == "delayed" and [(f.kind, f.delayed) for f in found.failures] == [("soft", True)]
    found = classify(dsn("x@example.org", issue="2025-09", status="2.0.0", action="delivered"))
    assert found.kind == "unknown" and "delivered" in found.reason


def test_the_issue_comes_only_from_our_message_ids() -> None:
    raw = dsn("x@example.org", issue="2025-09").replace(DOMAIN.encode(), b"other.example.org")
    assert classify(raw, domain=DOMAIN).issue is None
    assert classify(raw).issue == "2025-09"  # without a domain, any
    assert classify(dsn("x@example.org", issue=None)).issue is None


def test_a_mixed_report_keeps_each_recipient_hard_or_soft() -> None:
    raw = dsn("hard@example.org", issue="2025-09").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 mailbox problem\r\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 mailbox problem\r\n\r\nFinal-Recipient: rfc822; soft@example.org\r\n"
        b"Action: delayed\r\nStatus: 4.4.1\r\n",
    )
    found = classify(raw)
    assert found.kind == "hard_bounce"
    assert [(f.address, f.kind) for f in found.failures] == [("hard@example.org", "hard"), ("soft@example.org", "soft")]


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage",
        b"Subject: =?bogus?Q?x?=\r\n\r\n",
        b'Content-Type: multipart/report; boundary="x"\r\n\r\n--x\r\n',
    ],
)
def test_garbage_is_unknown(raw: bytes) -> None:
    assert classify(raw).kind == "unknown"


# -- processing a Maildir --------------------------------------------------------------------------------


def test_process_a_maildir(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, all_messages())
    human = next(p for p in (inbox / "new").iterdir() if b"Chris Colleague" in p.read_bytes())
    human_bytes, human_stat = human.read_bytes(), human.stat()
    with make_ledger(tmp_path / "ledger.db") as ledger:
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        check_ledger_after_everything(ledger)
    assert dict(report.counts) == {
        "hard_bounce": 5,
        "soft_bounce": 2,
        "delayed": 1,
        "unsubscribe": 1,
        "auto_reply": 1,
        "unknown": 2,
    }
    assert (report.moved, report.left) == (len(UNDERSTOOD), len(LEFT))
    assert maildir_ids(inbox / ".Processed") == ids(UNDERSTOOD)
    assert (inbox / ".Processed" / "maildirfolder").exists()
    assert maildir_ids(inbox) == ids(LEFT)
    # The person's reply is exactly as it was: same file, same bytes, never even marked seen.
    assert human.read_bytes() == human_bytes and human.stat().st_mtime == human_stat.st_mtime
    actions = {line.address: line.action for line in report.lines}
    assert actions["gone@qmail.example.org"] == "hard bounce of 2025-09 recorded; suppressed; moved to Processed"
    assert actions[DELAYED] == (
        "delivery of 2025-09 delayed (4.4.1 connect to mx.delay.example.org[192.0.2.40]:25: "
        "Connection timed out): nothing recorded, the relay is still trying; moved to Processed"
    )
    assert actions["full.mailbox@soft.example.org"].startswith(
        "soft bounce of 2025-09 recorded (1 of 3 issues in a row)"
    )
    assert actions[UNSUBSCRIBER] == "suppressed (unsubscribed by email); moved to Processed"
    assert "never sent to" in actions[STRANGER] and "left for a person" in actions[STRANGER]
    assert report.summary().startswith(
        "12 message(s) (hard bounce 5, soft bounce 2, delayed 1, unsubscribe 1, auto reply 1, unknown 2)"
    )
    assert f"{len(UNDERSTOOD)} moved to Processed, {len(LEFT)} left in place" in report.summary()
    assert all(len(row) == 4 for row in report.table())


def test_processing_twice_changes_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, all_messages())
    with make_ledger(tmp_path / "ledger.db") as ledger:
        process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        before, folder = tables(ledger), files(inbox)
        again = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert tables(ledger) == before and files(inbox) == folder
        assert again.moved == 0 and again.total == len(LEFT)
        # The same reports delivered a second time: the ledger still does not change.
        fill_maildir(inbox, all_messages())
        third = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert tables(ledger) == before
        assert third.moved == len(UNDERSTOOD)
        assert {line.action.split(";")[0] for line in third.lines if line.address in HARD} == {
            "hard bounce of 2025-09 already recorded"
        }
        assert [line.action for line in third.lines if line.address == UNSUBSCRIBER] == [
            "already suppressed; moved to Processed"
        ]


def test_an_mbox_cannot_move_so_it_relies_on_idempotency(tmp_path: Path) -> None:
    path = tmp_path / "inbox.mbox"
    box = mailbox.mbox(path)
    for _, raw in all_messages():
        box.add(raw)
    box.close()
    content = path.read_bytes()
    with make_ledger(tmp_path / "ledger.db") as ledger:
        first = process(MboxSource(path), ledger, SECRET, LIST_ID, domain=DOMAIN)
        check_ledger_after_everything(ledger)
        before = tables(ledger)
        second = process(MboxSource(path), ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert tables(ledger) == before
    assert path.read_bytes() == content
    assert first.moved == second.moved == 0 and first.counts == second.counts
    assert any("cannot move messages" in line.action for line in first.lines)


def test_soft_bounces_from_three_issues_in_a_row_suppress_two_do_not(tmp_path: Path) -> None:
    address = "flaky@example.org"
    inbox = tmp_path / "inbox"
    with make_ledger(tmp_path / "ledger.db", recipients=[address]) as ledger:
        fill_maildir(inbox, [("", dsn(address, issue=i, status="4.2.2")) for i in ("2025-09", "2025-08")])
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID)
        assert ledger.soft_streak(address) == 2 and address not in ledger.suppressed()
        assert report.lines[-1].action.startswith("soft bounce of 2025-08 recorded (2 of 3 issues in a row)")
        fill_maildir(inbox, [("", dsn(address, issue="2025-07", status="4.2.2"))])
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID)
        assert ledger.soft_streak(address) == 3 and address in ledger.suppressed()
        assert "suppressed after soft bounces from 3 issues in a row" in report.lines[0].action


def test_a_bounce_without_an_issue_belongs_to_the_last_issue_sent(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, [("", dsn("steady@example.org", issue=None))])
    with make_ledger(tmp_path / "ledger.db") as ledger:
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID)
        assert state(ledger)["bounces"] == {
            ("steady@example.org", "2025-09", "hard", "550 5.1.1 mailbox problem", "inbox")
        }
    assert report.moved == 1


def test_a_bounce_that_gives_the_domain_in_unicode_is_recorded_where_we_sent(tmp_path: Path) -> None:
    """RFC 6533: a report may name the reader `utf-8; jürgen@bücher.example` where we sent to the xn-- form
    (forwarded on, say). The hard bounce is recorded for the address the ledger holds, so the next send skips it."""
    sent = "jurgen@xn--bcher-kva.example"  # bücher.example, as the lists hold it
    report = (
        dsn("jurgen@bücher.example", issue="2025-09")
        .replace(b"message/delivery-status", b"message/global-delivery-status")
        .replace(b"Final-Recipient: rfc822;", b"Final-Recipient: utf-8;")
    )
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, [("", report)])
    with make_ledger(tmp_path / "ledger.db", recipients=[*RECIPIENTS, sent]) as ledger:
        process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert {(email, issue, kind) for email, issue, kind, *_ in state(ledger)["bounces"]} == {
            (sent, "2025-09", "hard")
        }
        assert ledger.suppression(sent) == "hard bounce: 550 5.1.1 mailbox problem"


def test_a_bounce_of_our_issue_for_an_unknown_address_records_nothing_and_is_moved(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, [("", dsn("nobody@example.org", issue="2025-09")), ("", stranger_bounce())])
    with make_ledger(tmp_path / "ledger.db") as ledger:
        before = tables(ledger)
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert tables(ledger) == before
    assert (report.moved, report.left) == (1, 1)
    assert maildir_ids(inbox) == {"<stranger.1@mx.example.org>"}


def test_an_unsubscribe_for_another_list_is_left_alone(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, [("", unsubscribe_message(list_id="other-list.example.org"))])
    with make_ledger(tmp_path / "ledger.db") as ledger:
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID)
        assert ledger.suppressed() == set()
    assert report.left == 1 and "not ours" in report.lines[0].action


def test_an_automatic_reply_not_about_the_newsletter_is_left(tmp_path: Path) -> None:
    raw = (FIXTURES / "out-of-office.eml").read_bytes()
    raw = re.sub(rb"(In-Reply-To|References): .*\n", b"", raw)
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, [("", raw)])
    with make_ledger(tmp_path / "ledger.db") as ledger:
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
    assert report.counts["auto_reply"] == 1 and report.left == 1


def test_a_dry_run_changes_nothing(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    fill_maildir(inbox, all_messages())
    folder = files(inbox)
    with make_ledger(tmp_path / "ledger.db") as ledger:
        before = tables(ledger)
        report = process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN, dry_run=True)
        assert tables(ledger) == before
    assert files(inbox) == folder
    assert report.counts["hard_bounce"] == 5 and report.moved == 0
    assert any(line.action.startswith("would record a hard bounce of 2025-09") for line in report.lines)


def test_sources_by_url(tmp_path: Path) -> None:
    fill_maildir(tmp_path / "box", [])
    assert isinstance(open_source(f"maildir:{tmp_path / 'box'}"), MaildirSource)
    with pytest.raises(InboxError, match="not a Maildir"):
        open_source(f"maildir:{tmp_path / 'missing'}")
    with pytest.raises(InboxError, match="NEWSLETTER_IMAP_PASSWORD"):
        open_source("imaps://outlook.example.org", username="bounces@example.org")
    source = open_source("imaps://outlook.example.org", username="u", password="p")
    assert isinstance(source, ImapSource) and (source.security, source.port) == ("tls", 993)
    source = open_source("imap://mail.example.org", username="u", password="p")
    assert (source.security, source.port) == ("starttls", 143)
    assert open_source("imap://127.0.0.1:1143", username="u", password="p").security == "plain"
    with pytest.raises(InboxError, match="without TLS"):
        open_source("imap://mail.example.org", username="u", password="p", starttls=False)
    with pytest.raises(InboxError, match="not a mailbox"):
        open_source("pop3://mail.example.org")


def test_a_fetch_cut_short_is_an_error() -> None:
    with pytest.raises(InboxError, match="cut short"):
        _literal([(b"1 (UID 7 BODY[] {100}", b"x" * 60), b")"], "7")
    assert _literal([(b"1 (UID 7 BODY[] {3}", b"abc"), b")"], "7") == b"abc"


# -- a real IMAP server ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dovecot() -> Iterator[Dovecot]:
    reason = available()
    if reason:
        pytest.skip(reason)
    with Dovecot() as server:
        yield server


_users = iter(range(1, 1000))


@pytest.fixture
def user(dovecot: Dovecot) -> str:
    """A fresh mailbox holding every message, in order."""
    name = f"bounces{next(_users)}"
    imap = imaplib.IMAP4("127.0.0.1", dovecot.port)
    imap.login(name, PASSWORD)
    for _, raw in all_messages():
        typ, _ = imap.append("INBOX", None, None, raw)
        assert typ == "OK"
    imap.logout()
    return name


def imap_source(port: int, user: str) -> ImapSource:
    return ImapSource("127.0.0.1", port, username=user, password=PASSWORD, security="plain", timeout=10)


def folder(port: int, user: str, name: str) -> dict[str, set[str]]:
    """Message-ID -> flags of every message in a folder (an empty dict when it does not exist)."""
    imap = imaplib.IMAP4("127.0.0.1", port)
    imap.login(user, PASSWORD)
    try:
        typ, _ = imap.select(f'"{name}"', readonly=True)
        if typ != "OK":
            return {}
        typ, data = imap.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (MESSAGE-ID)])")
        found = {}
        for item in data:
            if isinstance(item, tuple):
                flags = set(re.search(rb"FLAGS \(([^)]*)\)", item[0]).group(1).decode().split())
                found[message_id(item[1])] = flags
        return found
    finally:
        imap.logout()


def maildir_result(tmp_path: Path) -> dict[str, set[tuple]]:
    """What processing everything from a Maildir leaves in the ledger: the IMAP runs must match it."""
    inbox = tmp_path / "reference"
    fill_maildir(inbox, all_messages())
    with make_ledger(tmp_path / "reference.db") as ledger:
        process(MaildirSource(inbox), ledger, SECRET, LIST_ID, domain=DOMAIN)
        return state(ledger)


def test_process_over_imap(dovecot: Dovecot, user: str, tmp_path: Path) -> None:
    assert folder(dovecot.port, user, "Processed") == {}
    with make_ledger(tmp_path / "ledger.db") as ledger:
        with imap_source(dovecot.port, user) as source:
            report = process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        check_ledger_after_everything(ledger)
        assert state(ledger) == maildir_result(tmp_path)
        before = tables(ledger)
        with imap_source(dovecot.port, user) as source:
            again = process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert tables(ledger) == before
    assert (report.moved, report.left) == (len(UNDERSTOOD), len(LEFT))
    assert (again.moved, again.total) == (0, len(LEFT))
    assert set(folder(dovecot.port, user, "Processed")) == ids(UNDERSTOOD)
    inbox = folder(dovecot.port, user, "INBOX")
    assert set(inbox) == ids(LEFT)
    assert all(r"\Seen" not in flags and r"\Deleted" not in flags for flags in inbox.values())
    assert (report.lines[0].ref, report.lines[0].message) == ("1", "Undelivered Mail Returned to Sender")


def test_a_dropped_connection_fails_cleanly_and_a_second_run_finishes(
    dovecot: Dovecot, user: str, tmp_path: Path
) -> None:
    first_two = [name for name, _ in all_messages()[:2]]
    with make_ledger(tmp_path / "ledger.db") as ledger, DropProxy(dovecot.port, drop_before=("FETCH", 3)) as proxy:
        with (
            pytest.raises(InboxError, match="lost while fetching message UID 3") as failure,
            imap_source(proxy.port, user) as source,
        ):
            process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert proxy.dropped.is_set()
        # What was done before the drop is recorded and moved; nothing else happened.
        assert [line.address for line in failure.value.report.lines] == [
            "unknown.user@postfix.example.org",
            "left.council@m365.example.org",
        ]
        assert {e for e, *_ in state(ledger)["bounces"]} == {
            "unknown.user@postfix.example.org",
            "left.council@m365.example.org",
        }
        assert set(folder(dovecot.port, user, "Processed")) == ids(set(first_two))
        assert set(folder(dovecot.port, user, "INBOX")) == ids({n for n, _ in all_messages()} - set(first_two))
        # Run again (the proxy lets later connections through): the job is finished.
        with imap_source(proxy.port, user) as source:
            process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert state(ledger) == maildir_result(tmp_path)
    assert set(folder(dovecot.port, user, "Processed")) == ids(UNDERSTOOD)
    assert set(folder(dovecot.port, user, "INBOX")) == ids(LEFT)


@pytest.mark.parametrize("cut", [0.3, 0.6])
def test_a_connection_cut_mid_message(dovecot: Dovecot, user: str, tmp_path: Path, cut: float) -> None:
    total = sum(len(raw) for _, raw in all_messages())
    expected = maildir_result(tmp_path)
    with make_ledger(tmp_path / "baseline.db") as untouched:
        baseline = state(untouched)
    with (
        make_ledger(tmp_path / "ledger.db") as ledger,
        DropProxy(dovecot.port, drop_after_bytes=int(total * cut)) as proxy,
    ):
        with (
            pytest.raises(InboxError, match=r"IMAP connection to 127\.0\.0\.1"),
            imap_source(proxy.port, user) as source,
        ):
            process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        partial = state(ledger)
        moved = folder(dovecot.port, user, "Processed")
        inbox = folder(dovecot.port, user, "INBOX")
        # Nothing lost, nothing wrong: a subset of the full result, and every moved message recorded.
        assert set(moved) | set(inbox) == ids({n for n, _ in all_messages()}) and not set(moved) & set(inbox)
        assert moved and set(inbox) > ids(LEFT)
        assert all(partial[table] <= expected[table] | baseline[table] for table in partial)
        recorded = {e for e, *_ in partial["bounces"]} | {e for e, *_ in partial["suppressions"]}
        for name, raw in all_messages():
            found = classify(raw, secret=SECRET, domain=DOMAIN)
            if message_id(raw) in moved and found.kind in ("hard_bounce", "soft_bounce", "unsubscribe"):
                assert set(found.addresses) <= recorded, name
        with imap_source(proxy.port, user) as source:
            process(source, ledger, SECRET, LIST_ID, domain=DOMAIN)
        assert state(ledger) == expected
    assert set(folder(dovecot.port, user, "Processed")) == ids(UNDERSTOOD)


def test_a_refused_login_is_a_clear_error(dovecot: Dovecot) -> None:
    source = ImapSource("127.0.0.1", dovecot.port, username="bounces", password="wrong", security="plain", timeout=10)
    with pytest.raises(InboxError, match="refused the login for bounces"):
        source.open()


def test_an_unreachable_server_is_a_clear_error() -> None:
    from imap_server import free_port

    source = ImapSource("127.0.0.1", free_port(), username="u", password="p", security="plain", timeout=5)
    with pytest.raises(InboxError, match=r"cannot connect to the IMAP server 127\.0\.0\.1"):
        source.open()


def test_plain_imap_only_to_loopback() -> None:
    with pytest.raises(InboxError, match="without TLS"):
        ImapSource("mail.example.org", username="u", password="p", security="plain")


def test_the_inbox_command(tmp_path: Path) -> None:
    """`newsletter inbox` as the team runs it: config, secret from the environment, a table and a summary."""
    import os
    import subprocess
    import sys

    inbox = tmp_path / "inbox"
    fill_maildir(inbox, all_messages())
    make_ledger(tmp_path / "ledger.db").close()
    config = tmp_path / "newsletter.toml"
    config.write_text(f'ledger = "{tmp_path / "ledger.db"}"\n[inbox]\nurl = "maildir:{inbox}"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "inbox", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NEWSLETTER_SECRET": SECRET, "COLUMNS": "200"},
    )
    assert result.returncode == 0, result.stderr
    assert "gone@qmail.example.org" in result.stdout and "suppressed" in result.stdout
    assert "12 message(s)" in result.stdout
    assert maildir_ids(inbox / ".Processed") == ids(UNDERSTOOD)
    with Ledger(tmp_path / "ledger.db") as ledger:
        assert ledger.suppression("gone@qmail.example.org").startswith("hard bounce")


def test_the_inbox_command_without_a_mailbox_says_where_to_set_one(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    config = tmp_path / "newsletter.toml"
    config.write_text(f'ledger = "{tmp_path / "ledger.db"}"\n', encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "newsletter", "inbox", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NEWSLETTER_SECRET": SECRET, "COLUMNS": "200"},
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "Say which mailbox to read: set `url` under [inbox] in newsletter.toml, or pass --source."
    )
