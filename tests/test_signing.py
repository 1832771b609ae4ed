"""DKIM with `cryptography` (newsletter/signing.py), checked by dkimpy's verifier, an independent implementation.

RSA-SHA256 and Ed25519-SHA256 (RFC 8463), alone and both on one message; real composed messages with
encoded-word names, folded headers and long lines; a changed byte in a signed header or in the body
fails. The body canonicalisation in pieces is held equal to dkimpy's on arbitrary splits.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import random
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from dkim.canonicalization import CanonicalizationPolicy
from dkim.util import parse_tag_value

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.errors import ConfigError, JobError
from newsletter.ledger import Ledger, Row
from newsletter.load import load_draft
from newsletter.message import SIGNED_HEADERS, Composer
from newsletter.recipients import Recipient, load_authorities
from newsletter.render import render
from newsletter.send import Job, queue_recipients
from newsletter.signing import Signer, _BodyHash, _canonical_field, _canonical_lines
from newsletter.transport import Result, opener
from smtp_server import Server

DOMAIN = "wmchildrensservices.org.uk"
HEADERS = [h for h in SIGNED_HEADERS if h != b"reply-to"]
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ED_KEY = ed25519.Ed25519PrivateKey.generate()
RSA_PEM = RSA_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
)
ED_PEM = ED_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
)
RECORDS = {
    f"news2025._domainkey.{DOMAIN}.".encode(): b"v=DKIM1; k=rsa; p="
    + base64.b64encode(
        RSA_KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    ),
    f"ed2025._domainkey.{DOMAIN}.".encode(): b"v=DKIM1; k=ed25519; p="
    + base64.b64encode(ED_KEY.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)),
}
ISSUE = load_draft(DRAFTS[-1]).issue
RENDERED = render(ISSUE)
SETTINGS = Settings.model_validate({"list": {"unsubscribe_url": "https://updates.wmchildrensservices.org.uk/u"}})


def dns(name: bytes, timeout: int = 5) -> bytes:
    return RECORDS[name]


def needs_nacl() -> None:
    pytest.importorskip("nacl", reason="dkimpy verifies Ed25519 with PyNaCl: pip install pynacl")


def verified(message: bytes, index: int = 0) -> bool:
    try:
        return dkim.DKIM(message).verify(idx=index, dnsfunc=dns)
    except dkim.DKIMException:
        return False


def composed(name: str = 'Siân O\'Neil-Ğüneş, "Ops"', address: str = "sian.oneil@walsall.example.org") -> bytes:
    """A real message from the product's Composer (no DKIM of its own), for the signer to sign."""
    return Composer(ISSUE, RENDERED, SETTINGS, "k").compose(Recipient(address, name, "walsall")).data


LONG_NAME = "Åsa Þórsdóttir-Ñúñez de la Peña y Çelik, Head of Safeguarding Partnerships and Quality Assurance"


@pytest.mark.parametrize("name", ["Priya Sharma", 'Siân O\'Neil-Ğüneş, "Ops"', LONG_NAME, "Zoë =?utf-8?q?x?="])
def test_rsa_signature_verifies_with_dkimpy_on_real_messages(name: str) -> None:
    data = composed(name)
    head = data.split(b"\r\n\r\n", 1)[0]
    if name == LONG_NAME:
        assert re.search(rb"\r\nTo: [^\r]*\r\n [^\r]*=\?utf-8\?", head)  # an encoded-word name folded over lines
    signer = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS)
    message = signer.sign(data) + data
    assert message.startswith(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed;")
    assert verified(message)


def test_ed25519_signature_verifies_with_dkimpy() -> None:
    needs_nacl()
    data = composed(LONG_NAME)
    message = Signer(ED_PEM, "ed2025", DOMAIN, include_headers=HEADERS).sign(data) + data
    assert b"a=ed25519-sha256;" in message.split(b"\r\n\r\n")[0]
    assert verified(message)
    assert not verified(message.replace(b"fresh start", b"fresh stark"))


def test_both_signatures_on_one_message_each_verify() -> None:
    needs_nacl()
    data = composed()
    signer = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS, also=[(ED_PEM, "ed2025")])
    assert signer.algorithms == ["rsa-sha256", "ed25519-sha256"]
    message = signer.sign(data) + data
    assert message.count(b"DKIM-Signature:") == 2
    assert verified(message, 0) and verified(message, 1)
    tampered = message.replace(b"Subject: Regional", b"Subject: Regionul")
    assert not verified(tampered, 0) and not verified(tampered, 1)


def test_a_changed_byte_in_a_signed_header_or_the_body_fails() -> None:
    data = composed("Siân O'Neil-Ğüneş")
    message = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS).sign(data) + data
    assert verified(message)
    head, body = message.split(b"\r\n\r\n", 1)
    to = re.search(rb"\r\nTo: [^\r]*", head).group(0)
    changes = [
        (b"Subject: Regional", b"Subject: Regionul"),  # unstructured header
        (to, to.replace(b"=?utf-8?", b"=?UTF-8?", 1)),  # the encoded-word name: the same text decoded, other bytes
        (b"Message-ID: <", b"Message-ID: <x"),
        (b"List-Unsubscribe: <mailto:", b"List-Unsubscribe: <mailto:x"),
        (b"multipart/alternative", b"multipart/alternativf"),
    ]
    for old, new in changes:
        assert old in head, old
        assert not verified(head.replace(old, new, 1) + b"\r\n\r\n" + body), old
    for old, new in [(b"fresh start", b"fresh stark"), (b"sian.oneil@walsall", b"sian.oneil@walsalm")]:
        assert old in body
        assert not verified(head + b"\r\n\r\n" + body.replace(old, new, 1)), old
    assert not verified(message[:-40] + message[-39:])  # one byte fewer
    # What relaxed/relaxed forgives, and a header it does not sign, still verify.
    assert verified(head + b"\r\nX-Added: by a relay\r\n\r\n" + body)
    assert verified(head.replace(b"Subject: Regional", b"Subject:  Regional") + b"\r\n\r\n" + body)
    assert verified(head + b"\r\n\r\n" + body + b"\r\n\r\n")


def test_the_signature_is_dkimpys_byte_for_byte(monkeypatch: pytest.MonkeyPatch) -> None:
    """RSA PKCS#1 v1.5 is deterministic: for the same time, fields and canonical form, b= must be dkimpy's."""
    data = composed(LONG_NAME)
    monkeypatch.setattr(dkim.time, "time", lambda: 1_790_000_000.5)
    theirs = dkim.sign(
        data, b"news2025", DOMAIN.encode(), RSA_PEM, include_headers=HEADERS, canonicalize=(b"relaxed", b"relaxed")
    )
    ours = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS).sign(data, now=1_790_000_000.5)
    tags = {k: re.sub(rb"\s+", b" ", v) for k, v in parse_tag_value(ours.split(b":", 1)[1]).items()}
    their_tags = {k: re.sub(rb"\s+", b" ", v) for k, v in parse_tag_value(theirs.split(b":", 1)[1]).items()}
    assert list(tags) == list(their_tags) == [b"v", b"a", b"c", b"d", b"i", b"q", b"s", b"t", b"h", b"bh", b"b"]
    assert tags[b"b"].replace(b" ", b"") == their_tags[b"b"].replace(b" ", b"")  # the same signature
    assert tags == {**their_tags, b"b": tags[b"b"]}  # the same tags, folded elsewhere
    assert all(len(line) <= 78 for line in ours.split(b"\r\n")) and ours.endswith(b"==\r\n")


def test_body_pieces_reused_across_readers_give_the_same_signatures() -> None:
    """A variant's messages: fixed pieces (the same objects every time) around each reader's own values.

    Sign each with one Signer given the pieces, and with a fresh one given the bytes only: the same fields.
    """
    rng = random.Random(12)
    fixed = [
        b"--b\r\nContent-Type: text/plain\r\n\r\nDear reader,  \r\n\tindented\t line \r\nsoft=\r\n",
        b" and the rest of a line that started in the reader's own piece  \r\n" * 40,
        b"=\r\n",
        b"\r\n--b--\r\n",
        b"\r\n\r\n  \r\n",
    ]
    signer = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS)
    for reader in range(12):
        own = [f"reader{reader}@example.org".encode(), b"x" * rng.randint(0, 90) + b"  \t ", b"\r\n" * (reader % 3)]
        body = [fixed[0], own[0], fixed[1], own[1], fixed[2], own[2], fixed[3], fixed[4]]
        head = (
            f"From: Team <team@{DOMAIN}>\r\nTo: r{reader}@example.org\r\nSubject: Issue\r\n"
            f"Date: Fri, 19 Sep 2025 09:00:00 +0100\r\nMessage-ID: <{reader}@x>\r\nMIME-Version: 1.0\r\n"
            "Content-Type: text/plain\r\n\r\n"
        ).encode()
        data = head + b"".join(body)
        with_pieces = signer.sign(data, body, now=1_790_000_000)
        fresh = Signer(RSA_PEM, "news2025", DOMAIN, include_headers=HEADERS).sign(data, now=1_790_000_000)
        assert with_pieces == fresh
        assert verified(with_pieces + data)
        expected = hashlib.sha256(
            CanonicalizationPolicy.from_c_value(b"relaxed/relaxed").canonicalize_body(b"".join(body))
        ).digest()
        assert base64.b64encode(expected) in with_pieces.replace(b"\r\n ", b"")
    with pytest.raises(ValueError, match="pieces"):
        signer.sign(data, body[:-1])


def _random_body(rng: random.Random) -> bytes:
    alphabet = [b"a", b"b", b"\xc3\xa9", b" ", b"  ", b"\t", b"\r\n", b"\r\n", b"=", b"\r\n\r\n"]
    return b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60)))


def test_body_canonicalisation_in_pieces_is_dkimpys() -> None:
    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    rng = random.Random(6376)
    for _ in range(3000):
        body = _random_body(rng)
        cuts = sorted(rng.sample(range(len(body) + 1), min(len(body) + 1, rng.randint(0, 6))))
        pieces = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
        if any(p.startswith(b"\n") or p.endswith(b"\r") for p in pieces):
            continue  # a CRLF cut in two is refused as a bare CR and LF (tested below)
        state = _BodyHash()
        for piece in pieces:
            state.feed(piece)
        assert state.digest() == hashlib.sha256(relaxed.canonicalize_body(body)).digest(), (body, pieces)


def test_line_and_field_fast_paths_are_dkimpys() -> None:
    from dkim.canonicalization import compress_whitespace, strip_trailing_whitespace

    relaxed = CanonicalizationPolicy.from_c_value(b"relaxed/relaxed")
    rng = random.Random(8463)
    for _ in range(3000):
        lines = _random_body(rng) + b"\r\n"
        assert _canonical_lines(lines) == compress_whitespace(strip_trailing_whitespace(lines))
        value = rng.choice([b" ", b""]) + _random_body(rng).replace(b"\r\n", rng.choice([b"\r\n ", b"\r\n\t"]))
        ((name, canonical),) = relaxed.canonicalize_headers([(b"Subject", value + b"\r\n")])
        assert _canonical_field(b"Subject", value) == name + b":" + canonical


def test_bare_line_ends_are_refused() -> None:
    signer = Signer(RSA_PEM, "news2025", DOMAIN)
    with pytest.raises(ValueError, match="CRLF"):
        signer.sign(b"From: a@example.org\r\n\r\nline\nother\r\n")
    with pytest.raises(ValueError, match="CRLF"):
        signer.sign(b"From: a@example.org\r\n\r\nline\r\rother\r\n", [b"line\r\rother\r\n"])


def test_a_key_dkimpy_made_for_ed25519_is_read() -> None:
    needs_nacl()
    raw = ED_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    data = composed()
    message = Signer(base64.b64encode(raw) + b"\n", "ed2025", DOMAIN, include_headers=HEADERS).sign(data) + data
    assert verified(message)


@pytest.mark.parametrize(
    ("key", "says"),
    [
        (b"", "is empty"),
        (b"not a key at all", "not a private key in PEM form"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "cannot be read"),
        (
            RSA_KEY.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"pw"),
            ),
            "protected by a password",
        ),
        (
            ec.generate_private_key(ec.SECP256R1()).private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ),
            "elliptic-curve (ECDSA) key, which DKIM does not sign with",
        ),
        (
            RSA_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
            "cannot be read",
        ),
    ],
)
def test_a_key_that_cannot_sign_is_one_clear_config_error(key: bytes, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Signer(key, "news2025", DOMAIN, name="the DKIM key /etc/newsletter/dkim.pem")
    message = str(caught.value)
    assert says in message and "\n" not in message, message
    assert message.startswith("the DKIM key /etc/newsletter/dkim.pem ")
    assert "RSA private key" in message and "Ed25519" in message


def test_selector_and_domain_are_checked() -> None:
    with pytest.raises(ConfigError, match="selector"):
        Signer(RSA_PEM, "news 2025;", DOMAIN)
    with pytest.raises(ConfigError, match="domain"):
        Signer(RSA_PEM, "news2025", "not a domain")
    with pytest.raises(ValueError, match="From"):
        Signer(RSA_PEM, "news2025", DOMAIN, include_headers=[b"subject"])


def test_the_composers_messages_for_many_readers_all_verify() -> None:
    """Through the product's Composer (whatever it signs with): one variant, several readers, each verifies."""
    settings = Settings.model_validate(
        {"list": {"unsubscribe_url": "https://updates.wmchildrensservices.org.uk/u"}, "dkim": {"selector": "news2025"}}
    )
    composer = Composer(ISSUE, RENDERED, settings, "k", dkim_key=RSA_PEM)
    for index, name in enumerate(["Priya Sharma", LONG_NAME, "Okafor, Daniel", "Zoë Lambert", "Priya Sharma"]):
        message = composer.compose(Recipient(f"reader.{index}@walsall.example.org", name, "walsall")).data
        assert verified(message), name
        assert not verified(message.replace(f"reader.{index}@".encode(), f"reader.{index + 1}@".encode())), name


def test_a_key_is_read_once_per_process() -> None:
    """OpenSSL checks an RSA key for ~50 ms as it reads it: sixteen variants' Composers must not pay it 16 times."""
    from newsletter.keys import load_key

    assert load_key(RSA_PEM) is load_key(RSA_PEM)
    one, two = Signer(RSA_PEM, "news2025", DOMAIN), Signer(RSA_PEM, "news2025", DOMAIN)
    assert one._keys[0].key is two._keys[0].key


def test_the_signing_process_imports_only_what_it_signs_with() -> None:
    """Every send starts one: dkimpy (with dnspython), asyncio or the settings would triple its start."""
    code = "import sys, newsletter.keys; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    )
    assert "cryptography" in loaded
    heavy = {"dkim", "dns", "asyncio", "pydantic"}
    assert not [m for m in loaded if m.split(".")[0] in heavy or m in ("newsletter.signing", "newsletter.config")]


def test_a_signing_process_whose_job_is_gone_ends_quietly() -> None:
    """A job killed (SIGKILL, the OOM killer) before it handed the keys over, or while answers were on their
    way: its signing process ends at once, with no traceback in the terminal or the journal."""
    from newsletter.keys import REQUEST, handover

    command = [sys.executable, "-m", "newsletter.keys"]
    before_keys = subprocess.run(command, input=b"\x00", capture_output=True, timeout=30)
    assert (before_keys.returncode, before_keys.stderr) == (0, b"")

    child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None and child.stderr is not None
    child.stdin.write(handover([RSA_PEM]) + REQUEST.pack(1, 0, bytes(32)))
    child.stdin.flush()
    assert child.stdout.read(6)  # it answers while someone reads
    child.stdout.close()  # then nobody does
    with contextlib.suppress(BrokenPipeError):
        for number in range(2, 200):
            child.stdin.write(REQUEST.pack(number, 0, bytes(32)))
            child.stdin.flush()
        child.stdin.close()
    assert child.wait(timeout=30) == 0
    assert child.stderr.read() == b""


def test_a_signing_process_that_stops_answering_ends_the_job_and_a_rerun_finishes(tmp_path: Path) -> None:
    """Stopped (SIGSTOP), not dead: no end of file ever comes. The job ends after the transport's timeout with
    one JobError instead of waiting for ever, nothing unsigned is sent, and the next run sends the rest."""
    stopped: list[int] = []

    def stop_after_ten(row: Row, result: Result) -> None:
        if not stopped and job.outcome.sent >= 10 and job.signing is not None:
            stopped.append(job.signing.process.pid)
            os.kill(job.signing.process.pid, signal.SIGSTOP)

    with Server() as server, Ledger(tmp_path / "ledger.db") as ledger:
        settings = _job_settings(tmp_path, server.url)
        job = _job(settings, ledger, stop_after_ten)
        with pytest.raises(JobError, match="signing process did not answer in 2 s"):
            asyncio.run(job.run())
        assert stopped and job.signing is not None and job.signing.process.poll() is not None  # ended, not left
        rows = dict(ledger.db.execute("SELECT email, status FROM deliveries").fetchall())
        sent = {email for email, status in rows.items() if status == "sent"}
        in_flight = {email for email, status in rows.items() if status == "sending"}
        assert 10 <= len(sent) < len(rows) and len(in_flight) <= settings.transport.connections
        assert {arrival.recipient for arrival in server.handler.arrivals} - sent <= in_flight
        asyncio.run(_job(settings, ledger).run())
    arrivals = [arrival.recipient for arrival in server.handler.arrivals]
    assert all(verified(arrival.data) for arrival in server.handler.arrivals)
    assert set(arrivals) == set(rows)
    assert {email for email in arrivals if arrivals.count(email) > 1} <= in_flight


def _job_settings(tmp_path: Path, url: str) -> Settings:
    return Settings.model_validate(
        {
            "transport": {"url": url, "rate_per_minute": 60_000, "connections": 3, "timeout": 2.0},
            "ledger": tmp_path / "ledger.db",
            "recipients": ROOT / "recipients",
            "list": {"unsubscribe_url": "https://updates.wmchildrensservices.org.uk/u"},
            "dkim": {"selector": "news2025"},
        }
    )


def _job(settings: Settings, ledger: Ledger, on_result: Callable[[Row, Result], None] | None = None) -> Job:
    known = list(load_authorities(ROOT / "recipients" / "authorities.yaml"))
    queue_recipients(ledger, ISSUE, settings, known)
    opened = opener(settings.transport.url, settings.transport)
    return Job(ISSUE, known, ledger, opened, settings, "k", dkim_key=RSA_PEM, on_result=on_result)


def test_the_send_job_signs_every_message_it_sends(tmp_path: Path) -> None:
    """The job's signing process (not the Composer's own signing): every arrival at a real SMTP server verifies."""
    with Server() as server, Ledger(tmp_path / "ledger.db") as ledger:
        outcome = asyncio.run(_job(_job_settings(tmp_path, server.url), ledger).run())
    arrivals = server.handler.arrivals
    assert outcome.sent == len(arrivals) >= 48
    assert all(verified(arrival.data) for arrival in arrivals)
    assert len({arrival.data.split(b" b=", 1)[1][:40] for arrival in arrivals}) == len(arrivals)  # each its own


def test_a_signing_process_that_dies_stops_the_job_and_a_rerun_finishes(tmp_path: Path) -> None:
    """Killed mid-run: the job ends with one JobError, nothing unsigned is sent, the ledger agrees with the
    server, and the next run sends the rest, signed, to each reader once."""
    killed: list[int] = []

    def kill_after_ten(row: Row, result: Result) -> None:
        if len(killed) == 0 and job.outcome.sent >= 10 and job.signing is not None:
            killed.append(job.signing.process.pid)
            os.kill(job.signing.process.pid, signal.SIGKILL)

    settings = _job_settings(tmp_path, "")
    with Server() as server, Ledger(tmp_path / "ledger.db") as ledger:
        settings = _job_settings(tmp_path, server.url)
        job = _job(settings, ledger, kill_after_ten)
        with pytest.raises(JobError, match="signing process stopped"):
            asyncio.run(job.run())
        assert killed
        rows = dict(ledger.db.execute("SELECT email, status FROM deliveries").fetchall())
        sent = {email for email, status in rows.items() if status == "sent"}
        in_flight = {email for email, status in rows.items() if status == "sending"}
        first = [arrival.recipient for arrival in server.handler.arrivals]
        assert 10 <= len(sent) < len(rows) and sent <= set(first) and set(first) - sent <= in_flight
        assert len(in_flight) <= settings.transport.connections
        asyncio.run(_job(settings, ledger).run())
    arrivals = [arrival.recipient for arrival in server.handler.arrivals]
    assert all(verified(arrival.data) for arrival in server.handler.arrivals)
    assert set(arrivals) == set(rows)
    assert {email for email in arrivals if arrivals.count(email) > 1} <= in_flight
