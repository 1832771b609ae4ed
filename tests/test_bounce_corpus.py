"""Bounce classification against real data: flufl.bounce's 117 collected bounces, RFC 6533 global
reports, and the cases GNU Mailman 3's bounce runner tests.

The expected result of each real message is in tests/data/flufl_bounce/expected.tsv, decided by reading
the message, not by running the code. A full mailbox, a quota, a size limit, a spam or policy block, a
timeout or a loop is soft (it says nothing final about the address); a warning that delivery is still
being tried is `delayed` and never counted; hard is for addresses that are gone.
"""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import pytest

from newsletter.bounce import classify
from newsletter.inbox import MaildirSource, process
from newsletter.ledger import Ledger, Row

CORPUS = Path(__file__).parent / "data" / "flufl_bounce"
KIND = {
    "hard": "hard_bounce",
    "soft": "soft_bounce",
    "delayed": "delayed",
    "auto_reply": "auto_reply",
    "unknown": "unknown",
}
DOMAIN = "wmchildrensservices.org.uk"
OUR_ID = f"<2025-09.00112233445566778899aabb@{DOMAIN}>"


def load_table() -> dict[str, tuple[str, tuple[str, ...], str]]:
    """message name -> (kind, addresses, why)."""
    with (CORPUS / "expected.tsv").open(encoding="utf-8", newline="") as handle:
        lines = [line for line in handle if not line.startswith("#")]
    table = {}
    for row in csv.DictReader(lines, delimiter="\t"):
        addresses = () if row["addresses"] == "-" else tuple(sorted(row["addresses"].split()))
        assert row["kind"] in KIND, row
        assert row["message"] not in table, row["message"]
        table[row["message"]] = (row["kind"], addresses, row["why"])
    return table


TABLE = load_table()


def test_the_table_has_one_row_for_every_message() -> None:
    assert set(TABLE) == {p.stem for p in CORPUS.glob("*.txt")}
    assert len(TABLE) == 117


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_real_bounce(name: str) -> None:
    kind, addresses, why = TABLE[name]
    found = classify((CORPUS / f"{name}.txt").read_bytes())
    assert (found.kind, tuple(sorted(found.addresses))) == (KIND[kind], addresses), f"{why}: {found}"
    if kind in ("hard", "soft"):
        assert {(f.kind, f.delayed) for f in found.failures} == {(kind, False)}, found.failures
    elif kind == "delayed":
        assert all(f.delayed and f.kind == "soft" for f in found.failures), found.failures
    else:
        assert found.failures == ()
    assert found.reason and len(found.reason) <= 200


def test_the_corpus_through_the_inbox(tmp_path: Path) -> None:
    """Every real message through `process`: hard addresses suppressed at once, nobody else."""
    everyone = sorted({a for _, addresses, _ in TABLE.values() for a in addresses})
    by_kind: dict[str, set[str]] = {k: set() for k in KIND}
    for kind, addresses, _ in TABLE.values():
        by_kind[kind].update(addresses)
    ledger = Ledger(tmp_path / "ledger.db")
    ledger.enqueue("2025-09", [Row(a, a.split("@")[0], "walsall") for a in everyone])
    for address in everyone:
        ledger.sending("2025-09", address, OUR_ID)
        ledger.finished("2025-09", address, "sent", "250 2.0.0 queued")
    import mailbox

    box = mailbox.Maildir(tmp_path / "inbox", factory=None, create=True)
    for name in sorted(TABLE):
        box.add((CORPUS / f"{name}.txt").read_bytes())
    with ledger:
        report = process(MaildirSource(tmp_path / "inbox"), ledger, "secret", "list.example.org")
        assert ledger.suppressed() == by_kind["hard"]
        recorded = dict(ledger.db.execute("SELECT email, kind FROM bounces"))
    assert set(recorded) == by_kind["hard"] | by_kind["soft"]
    assert {e for e, k in recorded.items() if k == "soft"} == by_kind["soft"] - by_kind["hard"]
    # A warning alone records nothing.
    for address in by_kind["delayed"] - by_kind["hard"] - by_kind["soft"]:
        assert address not in recorded
    counts = {KIND[k]: sum(1 for kind, *_ in TABLE.values() if kind == k) for k in KIND}
    assert dict(report.counts) == counts


# -- RFC 6533: internationalised delivery reports --------------------------------------------------


def global_dsn(
    recipient_fields: str,
    *,
    encoding: str = "8bit",
    report_type: str = "global-delivery-status",
    status: str = "5.1.1",
    diagnostic: str = "smtp; 550 5.1.1 mailbox unavailable",
) -> bytes:
    """A report as RFC 6533 builds it: multipart/report holding a message/global-delivery-status part
    (UTF-8 allowed in its fields) and the returned header block as message/global-headers."""
    fields = (
        (
            f"Reporting-MTA: dns; mx.example.net\n\n{recipient_fields}\nAction: failed\n"
            f"Status: {status}\nDiagnostic-Code: {diagnostic}\n"
        )
        .replace("\n", "\r\n")
        .encode()
    )
    body = base64.encodebytes(fields) if encoding == "base64" else fields
    head = f"""From: Mail Delivery System <MAILER-DAEMON@mx.example.net>
To: bounces@{DOMAIN}
Subject: Undelivered Mail Returned to Sender
Message-ID: <global.1@mx.example.net>
MIME-Version: 1.0
Content-Type: multipart/report; report-type={report_type}; boundary="G"

--G
Content-Type: text/plain; charset=utf-8

Your message could not be delivered.

--G
Content-Type: message/global-delivery-status
Content-Transfer-Encoding: {encoding}

""".replace("\n", "\r\n").encode()
    tail = f"""
--G
Content-Type: message/global-headers

From: West Midlands Regional Team <regional.update@{DOMAIN}>
To: reader
Message-ID: {OUR_ID}

--G--
""".replace("\n", "\r\n").encode()
    return head + body + tail


@pytest.mark.parametrize(
    ("fields", "address"),
    [
        ("Final-Recipient: rfc822; plain.reader@example.org", "plain.reader@example.org"),
        (
            "Original-Recipient: rfc822; Plain.Reader@example.org\nFinal-Recipient: rfc822; plain.reader@example.org",
            "plain.reader@example.org",
        ),
        ("Final-Recipient: utf-8; jürgen.müller@bücher.example", "jürgen.müller@bücher.example"),
        (
            "Original-Recipient: utf-8; j\\x{FC}rgen@b\\x{FC}cher.example\n"
            "Final-Recipient: utf-8; jürgen@bücher.example",
            "jürgen@bücher.example",
        ),
        ("Final-Recipient: utf-8; 用户@例子.广告", "用户@例子.广告"),
        ("Final-Recipient: rfc822; δοκιμή@παράδειγμα.δοκιμή", "δοκιμή@παράδειγμα.δοκιμή"),
    ],
)
@pytest.mark.parametrize("encoding", ["8bit", "base64"])
def test_a_global_delivery_report(fields: str, address: str, encoding: str) -> None:
    found = classify(global_dsn(fields, encoding=encoding), domain=DOMAIN)
    assert (found.kind, found.addresses, found.issue) == ("hard_bounce", (address,), "2025-09"), found
    assert found.reason == "550 5.1.1 mailbox unavailable"


def test_a_global_report_keeps_hard_and_soft_apart() -> None:
    full = classify(
        global_dsn(
            "Final-Recipient: utf-8; ännchen@example.de", status="5.2.2", diagnostic="smtp; 552 5.2.2 Postfach voll"
        )
    )
    assert (full.kind, full.addresses) == ("soft_bounce", ("ännchen@example.de",))


def test_an_old_report_with_a_utf8_final_recipient_keeps_the_report() -> None:
    """A plain message/delivery-status part with raw UTF-8 in Final-Recipient: the report is kept."""
    raw = (
        "From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        "--B\r\nContent-Type: text/plain\r\n\r\nFailed.\r\n\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        "Final-Recipient: rfc822; jürgen@example.de\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        "Final-Recipient: rfc822; anne@example.de\r\nAction: failed\r\nStatus: 5.2.2\r\n\r\n--B--\r\n"
    )
    found = classify(raw.encode("utf-8"))
    assert [(f.address, f.kind) for f in found.failures] == [("jürgen@example.de", "hard"), ("anne@example.de", "soft")]


def test_a_utf8_address_is_recorded_in_the_ledger(tmp_path: Path) -> None:
    import mailbox

    address = "jürgen.müller@bücher.example"
    box = mailbox.Maildir(tmp_path / "inbox", factory=None, create=True)
    box.add(global_dsn(f"Final-Recipient: utf-8; {address}"))
    with Ledger(tmp_path / "ledger.db") as ledger:
        ledger.enqueue("2025-09", [Row(address, "Jürgen", "walsall")])
        ledger.sending("2025-09", address, OUR_ID)
        ledger.finished("2025-09", address, "sent", "250 2.0.0 queued")
        report = process(MaildirSource(tmp_path / "inbox"), ledger, "secret", "list.example.org", domain=DOMAIN)
        assert ledger.suppressed() == {address}
    assert report.moved == 1 and report.lines[0].action.startswith("hard bounce of 2025-09 recorded; suppressed")


# -- what the classification rules must see in real wording ---------------------------------------


def dsn(fields: str, notice: str = "Delivery failed.") -> bytes:
    return (
        f"From: MAILER-DAEMON@mx.example.net\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        f"MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; boundary=B\r\n\r\n"
        f"--B\r\nContent-Type: text/plain\r\n\r\n{notice}\r\n\r\n"
        f"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"{fields}\r\n\r\n--B--\r\n"
    ).encode()


@pytest.mark.parametrize(
    ("status", "diagnostic", "kind"),
    [
        ("5.0.0", "smtp; 550 5.7.1 Message rejected as spam", "soft"),
        (
            "5.0.0",
            "smtp; 550-5.7.1 [192.0.2.1] Our system has detected\r\n"
            "    550 5.7.1 that this message is likely unsolicited",
            "soft",
        ),
        ("5.0.0", "smtp; 550 5.1.1 <x@example.org>: user unknown", "hard"),
        ("5.0.0", "smtp; 550 Requested action not taken: mailbox unavailable (over quota)", "soft"),
        ("5.0.0", "smtp; 550 5.0.0 The user's inbox is out of\r\n    storage", "soft"),
        ("5.0.0", "smtp; 550 unknown user", "hard"),
        ("5.0.0", "smtp; 554 Message refused", "soft"),
        ("", "smtp; 552 Mailbox for x@example.org would exceed the allowed size", "soft"),
        ("", "", "hard"),
        ("5.1.1", "smtp; 550 5.1.1 mailbox full", "hard"),  # a specific status code is believed
    ],
)
def test_a_vague_status_is_read_from_the_diagnostic(status: str, diagnostic: str, kind: str) -> None:
    found = classify(
        dsn(
            f"Final-Recipient: rfc822; x@example.org\r\nAction: failed\r\nStatus: {status}\r\n"
            f"Diagnostic-Code: {diagnostic}"
        )
    )
    assert [(f.address, f.kind, f.delayed) for f in found.failures] == [("x@example.org", kind, False)]


@pytest.mark.parametrize(
    "said",
    [
        "550 Your message to this address was refused: the mailbox is\n    full",
        "550 5.0.0 The user's inbox is out of\n    storage",
        "550 The mailbox has exceeded its\n    storage allocation",
        "550 This account is over\n    quota",
    ],
)
def test_wrapped_wording_in_a_plain_notice(said: str) -> None:
    """qmail-style: no report part, the reason under the address, wrapped by the mail system."""
    raw = (
        "From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n"
        "Hi. This is the qmail-send program at mx.example.net.\n"
        "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
        "This is a permanent error; I've given up. Sorry it didn't work out.\n\n"
        f"<reader@example.org>:\n{said}\n\n--- Below this line is a copy of the message.\n\nHello\n"
    )
    found = classify(raw.encode())
    assert [(f.address, f.kind, f.delayed) for f in found.failures] == [("reader@example.org", "soft", False)]


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("failed", "hard_bounce"),
        ("failure", "hard_bounce"),
        ("fail", "hard_bounce"),
        ("Failed", "hard_bounce"),
        ("error", "hard_bounce"),
        ("delayed", "delayed"),
        ("delivered", "unknown"),
        ("relayed", "unknown"),
        ("expanded", "unknown"),
    ],
)
def test_action_spellings(action: str, kind: str) -> None:
    found = classify(dsn(f"Final-Recipient: rfc822; x@example.org\r\nAction: {action}\r\nStatus: 5.1.1"))
    assert found.kind == kind


def test_a_warning_is_never_a_bounce() -> None:
    warning = (
        b"From: Mail Delivery System <Mailer-Daemon@mx.example.net>\r\n"
        b"Subject: Warning: message 1abc-0007-00 delayed 4 hours\r\n\r\n"
        b"This message was created automatically by mail delivery software.\r\n"
        b"A message that you sent has not yet been delivered to one or more of its\r\n"
        b"recipients after more than 4 hours on the queue on mx.example.net.\r\n\r\n"
        b"The address to which the message has not yet been delivered is:\r\n\r\n"
        b"  reader@example.org\r\n\r\n"
        b"No action is required on your part. Delivery attempts will continue for\r\n"
        b"some time, and this warning may be repeated at intervals if the message\r\n"
        b"remains undelivered.\r\n"
    )
    found = classify(warning)
    assert (found.kind, found.addresses) == ("delayed", ("reader@example.org",))
    assert all(f.delayed for f in found.failures)


# -- GNU Mailman 3's bounce runner cases --------------------------------------------------------------
# Rebuilt after the messages in GNU Mailman 3.2.1 src/mailman/runners/tests/test_bounce.py
# (test_nonverp_detectable_fatal_bounce, test_nonverp_detectable_nonfatal_bounce,
# test_no_detectable_bounce_addresses): Mailman registers a bounce for the first, ignores the
# temporary second, and forwards the third to a person because it names no address.


def mailman_dsn(action: str) -> bytes:
    return (
        f"From: mail-daemon@example.com\r\nTo: test-bounces@example.com\r\nMessage-Id: <first>\r\n"
        f"Content-Type: multipart/report; report-type=delivery-status; boundary=AAA\r\nMIME-Version: 1.0\r\n\r\n"
        f"--AAA\r\nContent-Type: message/delivery-status\r\n\r\n"
        f"Action: {action}\r\nOriginal-Recipient: rfc822; bart@example.com\r\n\r\n--AAA--\r\n"
    ).encode()


def test_mailman_a_fatal_report_with_only_an_original_recipient() -> None:
    found = classify(mailman_dsn("fail"))
    assert (found.kind, found.addresses) == ("hard_bounce", ("bart@example.com",))


def test_mailman_a_delayed_report_is_not_counted() -> None:
    found = classify(mailman_dsn("delayed"))
    assert (found.kind, found.addresses) == ("delayed", ("bart@example.com",))


def test_mailman_a_bounce_without_an_address_is_left_for_a_person() -> None:
    found = classify(b"From: mail-daemon@example.com\r\nTo: test-bounces@example.com\r\nMessage-Id: <third>\r\n\r\n")
    assert (found.kind, found.addresses) == ("unknown", ())
