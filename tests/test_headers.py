"""Header values from data are plain text: no encoded-word, line break, comma or length gets through as structure.

Each finding of issue 10's "Header injection" is reproduced with its exact string, through the path the
data really takes (a CSV list read by recipients.py, a draft read by load.py, the settings), into a real
`Composer`, and judged on the message as a mail program parses it.
"""

from __future__ import annotations

import email
import email.header
import email.message
import email.policy
import json
import re
from pathlib import Path

import pytest

from conftest import DRAFTS
from newsletter.config import Settings
from newsletter.errors import NewsletterError
from newsletter.ledger import Row
from newsletter.load import load_draft
from newsletter.message import Composer, Outgoing
from newsletter.model import Issue
from newsletter.recipients import Recipient, RowProblem, read_list
from newsletter.render import render

SEPTEMBER = DRAFTS[-1]
ISSUE = load_draft(SEPTEMBER).issue
RENDERED = render(ISSUE)
VICTIM = "victim1@walsall.example.org"
TEAM = "regional.update@wmchildrensservices.org.uk"

REPLY_TO_AND_HEADER = "=?utf-8?q?Ann=0D=0AReply-To=3A_attacker=40evil=2Etest=0D=0AX-Injected=3A_yes?="
ENDS_HEADERS = "=?utf-8?q?Ann=0D=0A=0D=0AX-Injected=3A_yes?="
ADDS_RECIPIENT = "=?utf-8?q?x=2C_attacker=40evil=2Etest=2C_y?="
ENCODED_WORDS = [REPLY_TO_AND_HEADER, ENDS_HEADERS, ADDS_RECIPIENT]

HEADERS = {
    "from",
    "subject",
    "reply-to",
    "list-id",
    "to",
    "date",
    "message-id",
    "list-unsubscribe",
    "auto-submitted",
    "mime-version",
    "content-type",
}
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
ONE_CLICK = Settings.model_validate({"list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"}})


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def shown(data: bytes, field: str) -> str:
    """A header as an RFC 2047 reader shows it: white space between adjacent encoded-words dropped."""
    raw = email.message_from_bytes(data, policy=email.policy.compat32)[field]
    return str(email.header.make_header(email.header.decode_header("".join(raw.splitlines()))))


def assert_named(outgoing: Outgoing, field: str, name: str, address: str) -> None:
    """One mailbox in `field`, shown with exactly `name`.

    Python's address parser keeps the folding space between two adjacent encoded-words, which RFC 2047
    says to drop (mail programs do); where that makes a difference, an RFC 2047 decoder is the judge,
    and Python's reading must agree but for spaces.
    """
    (mailbox,) = parse(outgoing.data)[field].addresses
    assert mailbox.addr_spec == address
    if mailbox.display_name != name:
        assert shown(outgoing.data, field) == f"{name} <{address}>"
        assert mailbox.display_name.replace(" ", "") == name.replace(" ", "")


def write_list(tmp_path: Path, *rows: str) -> Path:
    path = tmp_path / "walsall.csv"
    path.write_bytes(("email,name\r\n" + "".join(f"{row}\r\n" for row in rows)).encode("utf-8"))
    return path


def read(path: Path) -> tuple[list[Recipient], list[RowProblem]]:
    items = list(read_list(path, "walsall"))
    return ([i for i in items if isinstance(i, Recipient)], [i for i in items if isinstance(i, RowProblem)])


def draft(
    tmp_path: Path, *, subject: str | None = None, from_name: str | None = None, from_email: str | None = None
) -> Issue:
    """The September draft with a field changed, read as `newsletter check` and `send` read it."""
    text = SEPTEMBER.read_text(encoding="utf-8")
    if subject is not None:
        text = re.sub(r"(?m)^subject: .*$", lambda _: f"subject: {json.dumps(subject)}", text, count=1)
    if from_name is not None:
        text = text.replace("  name: West Midlands Regional Team", f"  name: {json.dumps(from_name)}", 1)
    if from_email is not None:
        text = text.replace(f"  email: {TEAM}", f"  email: {json.dumps(from_email)}", 1)
    path = tmp_path / SEPTEMBER.name
    path.write_text(text, encoding="utf-8")
    return load_draft(path).issue


def assert_lines(data: bytes) -> None:
    """CRLF only; no line over 998; header lines over 78 only where there is nothing to fold at."""
    assert b"\n" not in data.replace(b"\r\n", b"") and b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    head = data.split(b"\r\n\r\n", 1)[0]
    head.decode("ascii")  # headers are 7-bit: any other character is encoded
    for line in head.split(b"\r\n"):
        if len(line) > 78:
            value = line if line.startswith(b" ") else line.split(b":", 1)[1]
            assert len(value.split()) == 1, f"a foldable header line of {len(line)} characters: {line[:100]!r}"


def assert_sound(
    outgoing: Outgoing,
    *,
    to: str = VICTIM,
    issue: Issue = ISSUE,
    settings: Settings | None = None,
    extra: frozenset[str] = frozenset(),
) -> email.message.EmailMessage:
    """The message a mail program sees: exactly our headers, once each, one addressee, the body intact."""
    data = outgoing.data
    assert_lines(data)
    message = parse(data)
    names = [name.lower() for name in message]
    assert sorted(names) == sorted(HEADERS | extra), names
    assert message.defects == []
    for name, value in message.items():
        assert not CONTROL.search(str(value)), (name, str(value))
        assert not value.defects, (name, value.defects)
    (addressee,) = message["To"].addresses
    assert addressee.addr_spec == to and outgoing.recipient == to
    assert [a.addr_spec for a in message["Reply-To"].addresses] == [TEAM]
    (sender,) = message["From"].addresses
    assert sender.addr_spec == issue.sender.email
    unsubscribe = str(message["List-Unsubscribe"])
    url = unsubscribe.split("<")[-1].rstrip(">")
    html, text = render(issue).fill(email=to, unsubscribe_url=url)
    assert message.is_multipart() and len(message.get_payload()) == 2
    assert message.get_body(("plain",)).get_content().replace("\r\n", "\n") == text.replace("\r\n", "\n")
    assert message.get_body(("html",)).get_content().replace("\r\n", "\n") == html.replace("\r\n", "\n")
    return message


# --- names from a recipient list ---------------------------------------------------------------


@pytest.mark.parametrize("name", ENCODED_WORDS)
def test_an_encoded_word_name_in_a_csv_row_is_plain_text(tmp_path: Path, name: str) -> None:
    (recipient,), _ = read(write_list(tmp_path, f"{VICTIM},{name}"))
    assert recipient.name == name  # kept as written: nothing decodes it
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(recipient)
    message = assert_sound(outgoing)
    assert_named(outgoing, "To", name, VICTIM)  # the reader sees what the list says, literally
    assert message["X-Injected"] is None


@pytest.mark.parametrize(
    "name",
    [
        "x, attacker@evil.test, y",
        '"Eve" <eve@evil.test>',
        "Eve <eve@evil.test>, Bob",
        'a\\" <b@c.test>, "d',
        "Hollis, Karen",
        "O'Neil; Siân (Ops) <x>",
        "=?utf-8?b?QW5uDQpYLUluamVjdGVkOiB5ZXM=?=",
        "=?",
        "?=",
        "x=?y?q?z?=w",
    ],
)
def test_a_name_that_looks_like_addresses_is_one_display_name(name: str) -> None:
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(Recipient(VICTIM, name, "walsall"))
    assert_sound(outgoing)
    assert_named(outgoing, "To", name, VICTIM)


@pytest.mark.parametrize(
    "name",
    ["Eve\r\nBcc: victim@example.org", "Ann\r\n\r\nX-Injected: yes", "Ann\x00\x0b\x1b\u2028\x85x", "Ann\tTab", "\r\n"],
)
def test_control_characters_in_a_stored_name_cannot_add_headers(name: str) -> None:
    """A ledger row is composed as it was stored, without the list reader's cleaning."""
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(Row(VICTIM, name, "walsall"))
    message = assert_sound(outgoing)
    assert message["Bcc"] is None and message["X-Injected"] is None


def test_a_1200_character_name_in_a_list_is_shortened_at_check_with_its_row(tmp_path: Path) -> None:
    long_name = " ".join(["Bartholomew"] * 100)  # 1,199 characters
    recipients, problems = read(write_list(tmp_path, "amy.lowe@walsall.example.org,Amy Lowe", f"{VICTIM},{long_name}"))
    assert [r.email for r in recipients] == ["amy.lowe@walsall.example.org", VICTIM]
    assert [(p.row, p.severity) for p in problems] == [(3, "warning")]
    assert "1199 characters" in problems[0].message or "1,199 characters" in problems[0].message
    name = recipients[1].name
    assert 0 < len(name) <= 200 and long_name.startswith(name.rstrip("…").rstrip())
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(recipients[1])
    assert_sound(outgoing)
    assert_named(outgoing, "To", name, VICTIM)


@pytest.mark.parametrize(
    "name",
    [
        " ".join(["Bartholomew"] * 100),
        "x" * 1200,
        "Siân " * 240,
        "ŁŁŁ" * 400,
        "'" * 1200,
        ", ".join(["a@b.test"] * 130),
    ],
)
def test_long_names_from_anywhere_are_folded_and_round_trip(name: str) -> None:
    outgoing = Composer(ISSUE, RENDERED, ONE_CLICK, "k").compose(Row(VICTIM, name, "walsall"))
    assert_sound(outgoing, extra=frozenset({"list-unsubscribe-post"}))
    assert_named(outgoing, "To", " ".join(name.split()), VICTIM)


# --- the draft and the settings --------------------------------------------------------------


@pytest.mark.parametrize("subject", ENCODED_WORDS)
def test_an_encoded_word_subject_is_plain_text(tmp_path: Path, subject: str) -> None:
    issue = draft(tmp_path, subject=subject)
    message = assert_sound(
        Composer(issue, render(issue), Settings(), "k").compose(Recipient(VICTIM, "Ann", "walsall")), issue=issue
    )
    assert message["Subject"] == subject
    assert message["To"].addresses[0].display_name == "Ann"


@pytest.mark.parametrize("name", ENCODED_WORDS)
def test_an_encoded_word_from_name_is_plain_text(tmp_path: Path, name: str) -> None:
    issue = draft(tmp_path, from_name=name)
    outgoing = Composer(issue, render(issue), Settings(), "k").compose(Recipient(VICTIM, "Ann", "walsall"))
    assert_sound(outgoing, issue=issue)
    assert_named(outgoing, "From", name, TEAM)


@pytest.mark.parametrize("name", ENCODED_WORDS)
def test_an_encoded_word_list_name_is_plain_text(name: str) -> None:
    settings = Settings.model_validate({"list": {"name": name}})
    message = assert_sound(Composer(ISSUE, RENDERED, settings, "k").compose(Recipient(VICTIM, "Ann", "walsall")))
    assert str(message["List-Id"]) == f"{name} <regional-update.wmchildrensservices.org.uk>"


def test_a_proof_subject_with_an_encoded_word_is_plain_text(tmp_path: Path) -> None:
    issue = draft(tmp_path, subject=REPLY_TO_AND_HEADER)
    outgoing = Composer(issue, render(issue), Settings(), "k", proof=True).compose(Recipient(VICTIM, "", "walsall"))
    assert parse(outgoing.data)["Subject"] == f"[PROOF] {REPLY_TO_AND_HEADER}"
    assert_sound(outgoing, issue=issue)


def test_long_subject_list_name_and_sender_are_folded(tmp_path: Path) -> None:
    subject = "Regional Update, September 2025: " + " ".join(f"Outstanding authority number {n}," for n in range(12))
    issue = draft(tmp_path, subject=subject, from_name="West Midlands Regional Team of the Directors " * 4)
    settings = Settings.model_validate({"list": {"name": "West Midlands Regional Update for Children’s Services " * 3}})
    outgoing = Composer(issue, render(issue), settings, "k").compose(Recipient(VICTIM, "Ann", "walsall"))
    message = assert_sound(outgoing, issue=issue, settings=settings)
    assert message["Subject"] == subject
    assert_named(outgoing, "From", issue.sender.name, TEAM)
    assert str(message["List-Id"]) == f"{settings.list.name} <{settings.list.id}>"
    head = outgoing.data.split(b"\r\n\r\n", 1)[0]
    assert max(len(line) for line in head.split(b"\r\n") if not line.startswith(b"List-Unsubscribe:")) <= 78


def test_a_subject_with_one_enormous_word_stays_within_the_line_limit(tmp_path: Path) -> None:
    issue = draft(tmp_path, subject="https://example.org/" + "a" * 1500)
    message = assert_sound(
        Composer(issue, render(issue), Settings(), "k").compose(Recipient(VICTIM, "Ann", "walsall")), issue=issue
    )
    assert message["Subject"] == issue.subject


def test_list_unsubscribe_with_a_long_url_folds_between_its_items() -> None:
    base = "https://updates.wmchildrensservices.org.uk/newsletter/regional-update/unsubscribe/one-click/" + "x" * 60
    settings = Settings.model_validate({"list": {"unsubscribe_url": base}})
    outgoing = Composer(ISSUE, RENDERED, settings, "k").compose(Recipient(VICTIM, "Ann", "walsall"))
    message = assert_sound(outgoing, extra=frozenset({"list-unsubscribe-post"}))
    head = outgoing.data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    lines = re.search(r"(?m)^List-Unsubscribe:.*\r\n(?: .*\r\n)*", head + "\r\n")
    assert lines is not None
    folded = lines.group(0).split("\r\n")[:-1]
    assert len(folded) == 2
    assert re.fullmatch(r"List-Unsubscribe: <mailto:[^<> ]+>,", folded[0])
    assert re.fullmatch(rf" <{re.escape(base)}/[^<> ]+>", folded[1])
    items = re.findall(r"<([^<>]+)>", str(message["List-Unsubscribe"]))
    assert len(items) == 2 and items[0].startswith("mailto:") and items[1].startswith(base + "/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_an_unsubscribe_url_too_long_for_a_header_line_is_refused() -> None:
    settings = Settings.model_validate({"list": {"unsubscribe_url": "https://updates.example.org/" + "x" * 1000}})
    with pytest.raises(NewsletterError, match="unsubscribe_url"):
        Composer(ISSUE, RENDERED, settings, "k").compose(Recipient(VICTIM, "Ann", "walsall"))


# --- internationalised addresses ---------------------------------------------------------------


def test_an_internationalised_domain_is_sent_as_a_labels(tmp_path: Path) -> None:
    recipients, problems = read(
        write_list(tmp_path, "user@bücher.example.org,Zoë Brown", "USER@xn--bcher-kva.example.org,Zoë Brown")
    )
    assert problems == []
    assert [r.email for r in recipients] == ["user@xn--bcher-kva.example.org"] * 2  # one dedupe key
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(recipients[0])
    assert_sound(outgoing, to="user@xn--bcher-kva.example.org")
    assert_named(outgoing, "To", "Zoë Brown", "user@xn--bcher-kva.example.org")
    outgoing.data.decode("ascii")


def test_a_stored_internationalised_address_is_sent_as_a_labels() -> None:
    """A ledger row written before lists were normalised still goes out in ASCII."""
    outgoing = Composer(ISSUE, RENDERED, Settings(), "k").compose(Row("user@bücher.example.org", "Ann", "walsall"))
    assert_sound(outgoing, to="user@xn--bcher-kva.example.org")


def test_a_non_ascii_local_part_is_refused_at_its_row(tmp_path: Path) -> None:
    recipients, problems = read(write_list(tmp_path, "amy.lowe@walsall.example.org,Amy", "zoë@walsall.example.org,Zoë"))
    assert [r.email for r in recipients] == ["amy.lowe@walsall.example.org"]
    assert [(p.row, p.severity) for p in problems] == [(3, "error")]
    assert "zoë@walsall.example.org" in problems[0].message and "before the @" in problems[0].message


def test_an_internationalised_sender_domain_in_a_draft_is_ascii(tmp_path: Path) -> None:
    issue = draft(tmp_path, from_email="regional.update@bücher.example.org")
    assert issue.sender.email == "regional.update@xn--bcher-kva.example.org"
    outgoing = Composer(issue, render(issue), Settings(), "k").compose(Recipient(VICTIM, "Ann", "walsall"))
    assert_sound(outgoing, issue=issue)
