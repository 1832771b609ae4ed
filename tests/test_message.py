"""Per-recipient messages: headers that cannot be injected, names encoded, DKIM that verifies."""

from __future__ import annotations

import base64
import email
import email.policy

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from conftest import DRAFTS
from newsletter.config import Settings
from newsletter.load import load_draft
from newsletter.message import Composer
from newsletter.recipients import Recipient
from newsletter.render import render
from newsletter.unsubscribe import BadToken, make_token, read_token

ISSUE = load_draft(DRAFTS[-1]).issue
RENDERED = render(ISSUE)


def person(name: str = 'Siân O\'Neil, "Ops"', address: str = "sian.oneil@walsall.example.org") -> Recipient:
    return Recipient(email=address, name=name, authority="walsall", fields={})


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def test_names_with_accents_commas_and_quotes_round_trip() -> None:
    message = parse(Composer(ISSUE, RENDERED, Settings(), "k").compose(person()).data)
    (to,) = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ('Siân O\'Neil, "Ops"', "sian.oneil@walsall.example.org")
    assert message.get_body(("plain",)).get_content().count("sian.oneil@walsall.example.org") == 1


@pytest.mark.parametrize("name", ["Eve\r\nBcc: victim@example.org", "Eve\nBcc: victim@example.org"])
def test_crlf_in_a_name_cannot_add_a_header(name: str) -> None:
    try:
        data = Composer(ISSUE, RENDERED, Settings(), "k").compose(person(name)).data
    except ValueError:
        return  # refused outright: fine
    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"\r\nBcc:" not in head and b"\nBcc:" not in head
    assert parse(data)["Bcc"] is None


def test_message_lines_stay_within_smtp_limits() -> None:
    data = Composer(ISSUE, RENDERED, Settings(), "k").compose(person()).data
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    assert b"\n" not in data.replace(b"\r\n", b"")


def test_message_id_is_stable_per_issue_and_person_and_proofs_differ() -> None:
    one = Composer(ISSUE, RENDERED, Settings(), "k")
    assert one.compose(person()).message_id == one.compose(person()).message_id
    assert one.compose(person()).message_id != one.compose(person(address="x@walsall.example.org")).message_id
    assert "sian" not in one.compose(person()).message_id  # no address in a header others may see
    proof = Composer(ISSUE, RENDERED, Settings(), "k", proof=True)
    assert proof.compose(person()).message_id != proof.compose(person()).message_id
    assert parse(proof.compose(person()).data)["Subject"].startswith("[PROOF] ")


def test_mailto_unsubscribe_without_a_web_endpoint() -> None:
    message = parse(Composer(ISSUE, RENDERED, Settings(), "k").compose(person()).data)
    assert message["List-Unsubscribe"].startswith("<mailto:unsubscribe@wmchildrensservices.org.uk?subject=")
    assert message["List-Unsubscribe-Post"] is None  # one-click needs an HTTPS endpoint


def test_tokens_refuse_tampering_and_age() -> None:
    token = make_token("a@example.org", "list.example.org", "secret")
    assert read_token(token, "secret") == ("a@example.org", "list.example.org")
    with pytest.raises(BadToken):
        read_token(token, "other-secret")
    with pytest.raises(BadToken):
        read_token(token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1], "secret")
    with pytest.raises(BadToken):
        read_token(token, "secret", max_age=-1)


def test_dkim_signature_verifies_and_breaks_when_altered() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    settings = Settings.model_validate({"dkim": {"selector": "news2025"}})
    data = Composer(ISSUE, RENDERED, settings, "k", dkim_key=private).compose(person()).data
    assert data.startswith(b"DKIM-Signature:")

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"news2025._domainkey.wmchildrensservices.org.uk."
        return record

    assert dkim.verify(data, dnsfunc=dns)
    assert not dkim.verify(data.replace(b"Subject: Regional", b"Subject: Regionul"), dnsfunc=dns)
    assert not dkim.verify(data.replace(b"fresh start", b"fresh stark"), dnsfunc=dns)


# --- proofs -------------------------------------------------------------------------------------------


def test_a_proof_subject_names_its_variant(authorities: dict) -> None:
    for slug, shown in [
        ("dudley", "Dudley"),
        ("telford-and-wrekin", "Telford & Wrekin"),
        ("wolverhampton", "City of Wolverhampton"),
        ("birmingham-childrens-trust", "Birmingham Children's Trust"),
    ]:
        composer = Composer(ISSUE, render(ISSUE, authorities[slug]), Settings(), "k", proof=True)
        assert parse(composer.compose(person()).data)["Subject"] == f"[PROOF: {shown}] {ISSUE.subject}"
    real = Composer(ISSUE, render(ISSUE, authorities["dudley"]), Settings(), "k")
    assert parse(real.compose(person()).data)["Subject"] == ISSUE.subject


def _unsubscribe_tokens(message: email.message.EmailMessage) -> list[str]:
    """The token of every unsubscribe link: the List-Unsubscribe header's two and both parts' footers."""
    import re

    texts = [message["List-Unsubscribe"], *(message.get_body((part,)).get_content() for part in ("plain", "html"))]
    return [a or b for text in texts for a, b in re.findall(r"subject=unsubscribe%20([\w~-]+)|/u/([\w~-]+)", text)]


def test_a_proofs_unsubscribe_links_unsubscribe_nobody(authorities: dict) -> None:
    from newsletter.message import PROOF_READER

    settings = Settings.model_validate({"list": {"unsubscribe_url": "https://wm.example.org/u"}})
    proof = Composer(ISSUE, render(ISSUE, authorities["dudley"]), settings, "k", proof=True)
    message = parse(proof.compose(person()).data)
    tokens = _unsubscribe_tokens(message)
    assert len(tokens) == 4  # the header's mailto and one-click, and the two footers
    for token in tokens:
        assert read_token(token, "k")[0] == PROOF_READER
    assert PROOF_READER.endswith(".invalid")
    # the proof still says whom it was sent to
    assert "This copy was sent to sian.oneil@walsall.example.org." in message.get_body(("plain",)).get_content()
    # a real message's links are the reader's own
    real = parse(Composer(ISSUE, render(ISSUE, authorities["dudley"]), settings, "k").compose(person()).data)
    assert {read_token(t, "k")[0] for t in _unsubscribe_tokens(real)} == {"sian.oneil@walsall.example.org"}


def test_nothing_is_ever_attached(authorities: dict) -> None:
    data = {
        **ISSUE.model_dump(by_alias=True),
        "attachments": [
            {"title": "Dates for 2025/26", "url": "https://wm.example.org/dates.pdf"},
            {"title": "Programme", "file": "programme.pdf"},
        ],
    }
    data["sections"] = [{s.pop("kind"): s} for s in data["sections"]]
    from newsletter.model import Issue

    issue = Issue.model_validate(data)
    settings = Settings.model_validate({"list": {"archive_url": "https://wm.example.org/archive"}})
    from newsletter.archive import published

    message = parse(
        Composer(issue, render(issue, authorities["dudley"], web=published(settings, issue)), settings, "k")
        .compose(person())
        .data
    )
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert not list(message.iter_attachments())
    html_part = message.get_body(("html",)).get_content()
    assert 'href="https://wm.example.org/archive/' + issue.issue + '/programme.pdf"' in html_part
    assert 'href="https://wm.example.org/dates.pdf"' in html_part
