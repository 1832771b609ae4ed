"""The fast paths the benchmarks led to give exactly what the general, slower paths give.

Headers written directly are the email package's bytes; bodies encoded once per variant decode to the
filled parts; DATA dot-stuffed with replace is what aiosmtplib sends.
"""

from __future__ import annotations

import email
import email.policy
import random
from email.headerregistry import Address

from conftest import DRAFTS


def test_headers_written_directly_are_what_the_email_package_writes() -> None:
    from newsletter.message import _headers, _plain_headers, _plain_to

    rng = random.Random(5)
    alphabet = "abXY09 '-.,\"éŁ\\()<>@;:=?_"
    names = ["", "Priya Sharma", "O'Neil", "Price-Jones", "Hollis, Karen", "Dr. Who", "a  b", " x", "x ", ".", "-"]
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    addresses = ["priya.sharma.0@birmingham.example.org", "a_b+c-d@sub-x.example.org", "o'neil@example.org",
                 "x..y@example.org", "plain@localhost"]
    direct = 0
    for name in names:
        for address in addresses:
            fast = _plain_to(name, address)
            if fast is not None:
                direct += 1
                assert fast == _headers(("To", Address(display_name=name, addr_spec=address))), (name, address)
    assert direct > 200
    date = "Tue, 07 Oct 2025 09:30:00 +0100"
    message_id = "<2025-09.0123456789abcdef01234567@wmchildrensservices.org.uk>"
    unsubscribe = ("<mailto:unsubscribe@wmchildrensservices.org.uk?subject=unsubscribe%20WyJhIl0.aNq.x-_Y>, "
                   "<https://updates.example.org/unsubscribe/WyJhIl0.aNq.x-_Y>")
    assert _plain_headers(date, message_id, unsubscribe) == _headers(
        ("Date", date), ("Message-ID", message_id), ("List-Unsubscribe", unsubscribe))
    assert _plain_headers(date, message_id, "<https://x.example/=?utf-8?q?a?=>") is None


def test_bodies_encoded_once_decode_to_the_filled_parts() -> None:
    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.message import QP_LINE, Composer
    from newsletter.recipients import Recipient
    from newsletter.render import render as render_issue

    settings = Settings.model_validate({"list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"}})
    for draft in DRAFTS:
        issue = load_draft(draft).issue
        rendered = render_issue(issue)
        composer = Composer(issue, rendered, settings, "k")
        for address in ("priya.sharma@walsall.example.org", "o'neil&co.with.a.very.long.local.part.that.wraps."
                        "around.the.line@a-long-subdomain.walsall.example.org"):
            data = composer.compose(Recipient(address, "Priya Sharma", "walsall")).data
            message = email.message_from_bytes(data, policy=email.policy.default)
            url = message["List-Unsubscribe"].split("<")[-1].rstrip(">")
            html, text = rendered.fill(email=address, unsubscribe_url=url)
            for kind, filled in (("html", html), ("plain", text)):
                decoded = message.get_body((kind,)).get_content()
                assert decoded.replace("\r\n", "\n") == filled.replace("\r\n", "\n")
            body = data.split(b"\r\n\r\n", 1)[1]
            assert max(len(line) for line in body.split(b"\r\n")) <= QP_LINE


def test_quoted_printable_pieces_keep_to_76_characters() -> None:
    import binascii

    from newsletter.message import _continued, _qp

    rng = random.Random(7)
    for _ in range(5000):
        text = "".join(rng.choice("ab =.\té\n") for _ in range(rng.randint(1, 300)))
        whole = _qp(text)  # b2a_qp itself can pass 76 where it encodes a space before a line end
        encoded = _continued(whole)
        assert max(len(line) for line in encoded.split(b"\r\n")) <= max(76, *map(len, whole.split(b"\r\n")))
        assert binascii.a2b_qp(encoded.replace(b"\r\n", b"\n") + b"x").decode() == text.replace("\r\n", "\n") + "x"


def test_dot_stuffing_matches_aiosmtplib() -> None:
    from aiosmtplib.protocol import PERIOD_REGEX, normalize_message_line_endings

    from newsletter.transport import _wire

    rng = random.Random(11)
    for _ in range(20000):
        data = bytes(rng.choice(b"\r\n.a ") for _ in range(rng.randint(0, 30)))
        normal = normalize_message_line_endings(data)
        expected = (PERIOD_REGEX.sub(b"..", normal) + b".\r\n", len(normal))
        assert _wire(data) == expected
        if normal == data:
            assert _wire(data, crlf=True) == expected


