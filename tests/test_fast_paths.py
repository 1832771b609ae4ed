"""The fast paths the benchmarks led to give exactly what the general, slower paths give.

Headers written directly are what the general header writer writes (and, for everyday names, what the
email package writes); whatever the general writer writes, a mail program reads back as the text it was
given; bodies encoded once per variant decode to the filled parts; DATA dot-stuffed with replace is what
aiosmtplib sends to a server. Templates compiled in an earlier run are what compiling them gives.
"""

from __future__ import annotations

import asyncio
import email
import email.header
import email.policy
import os
import random
import re
import tempfile
from collections.abc import Iterator
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import jinja2
import pytest

from conftest import DRAFTS

HOSTILE = "abXY09 '-.,\"éŁ\\()<>@;:=?_\r\n\t\x00\u2028"
REFERENCE = email.policy.SMTP.clone(max_line_length=78)


def decoded(header: bytes) -> str:
    """A header's value as an RFC 2047 reader shows it (Python's address parser keeps the space between two
    adjacent encoded-words, which RFC 2047 drops)."""
    raw = email.message_from_bytes(header + b"\r\n", policy=email.policy.compat32).values()[0]
    return str(email.header.make_header(email.header.decode_header("".join(raw.splitlines()))))


def assert_folded(header: bytes) -> None:
    lines = header.removesuffix(b"\r\n").split(b"\r\n")
    assert all(line.startswith(b" ") for line in lines[1:])
    for line in lines:
        assert len(line) <= 998
        if len(line) > 78:
            value = line if line.startswith(b" ") else line.split(b":", 1)[1]
            assert len(value.split()) == 1, header


def test_headers_written_directly_are_what_the_general_writer_and_the_email_package_write() -> None:
    from newsletter.message import _mailbox, _plain_to, _text

    rng = random.Random(5)
    names = [
        "",
        "Priya Sharma",
        "O'Neil",
        "Price-Jones",
        "Hollis, Karen",
        "Dr. Who",
        "a  b",
        " x",
        "x ",
        ".",
        "-",
        "=?utf-8?q?Ann=0D=0AX-Injected=3A_yes?=",
        "x" * 300,
        "Siân " * 60,
    ]
    names += ["".join(rng.choice(HOSTILE) for _ in range(rng.randint(1, 12))) for _ in range(3000)]
    names += ["".join(rng.choice(HOSTILE) for _ in range(rng.randint(60, 240))) for _ in range(100)]
    addresses = [
        "priya.sharma.0@birmingham.example.org",
        "a_b+c-d@sub-x.example.org",
        "o'neil@example.org",
        "user@xn--bcher-kva.example.org",
    ]
    direct = 0
    for name in names:
        for address in addresses:
            general = _mailbox("To", name, address)
            assert_folded(general)
            (mailbox,) = email.message_from_bytes(general + b"\r\n", policy=email.policy.default)["To"].addresses
            assert mailbox.addr_spec == address
            text = _text(name)
            if mailbox.display_name != text:
                assert decoded(general) == f"{text} <{address}>", (name, general)
                assert mailbox.display_name.replace(" ", "") == text.replace(" ", ""), (name, general)
            fast = _plain_to(name, address)
            if fast is not None:
                direct += 1
                assert fast == general, (name, address)
                reference = EmailMessage(policy=REFERENCE)
                reference["To"] = Address(display_name=name, addr_spec=address)
                assert fast == reference.as_bytes().split(b"\r\n\r\n")[0] + b"\r\n", (name, address)
    assert direct > 200
    for address in ("x..y@example.org", "plain@localhost", "user@bücher.example.org"):
        assert _plain_to("Priya Sharma", address) is None


def test_unstructured_text_reads_back_as_given_and_folds() -> None:
    from newsletter.message import _header, _text, _unstructured

    rng = random.Random(3)
    subjects = [
        "Regional Update, September 2025: three Outstanding authorities and events",
        "=?",
        "a =?x?q?y?= b",
        "https://example.org/" + "a" * 200,
        "Siân’s " * 40,
    ]
    subjects += ["".join(rng.choice(HOSTILE + "     ") for _ in range(rng.randint(1, 300))) for _ in range(2000)]
    for subject in subjects:
        header = _header("Subject", _unstructured(subject))
        assert_folded(header)
        message = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
        assert message["Subject"] == _text(subject), (subject, header)
        assert decoded(header) == _text(subject)


def test_list_unsubscribe_folds_between_its_items() -> None:
    from newsletter.message import _header

    mailto = "<mailto:unsubscribe@wmchildrensservices.org.uk?subject=unsubscribe%20WyJhIl0.aNq.x-_Y>"
    https = "<https://updates.example.org/unsubscribe/WyJhIl0.aNq.x-_Y>"
    header = _header("List-Unsubscribe", [mailto + ",", https])
    assert header == f"List-Unsubscribe: {mailto},\r\n {https}\r\n".encode()
    message = email.message_from_bytes(header + b"\r\n", policy=email.policy.default)
    assert message["List-Unsubscribe"] == f"{mailto}, {https}"
    assert _header("List-Unsubscribe", ["<https://x.example/u/a>,", "<https://x.example/u/b>"]) == (
        b"List-Unsubscribe: <https://x.example/u/a>, <https://x.example/u/b>\r\n"
    )


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
        for address in (
            "priya.sharma@walsall.example.org",
            "o'neil&co.with.a.very.long.local.part.that.wraps.around.the.line@a-long-subdomain.walsall.example.org",
        ):
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


def rfc5321(data: bytes) -> tuple[bytes, int]:
    """DATA as RFC 5321 says: every line end CRLF, ending with one; a dot added to each line that starts with
    one (4.5.2); the closing dot line. And the size of the message before the dots are added."""
    normal = re.sub(rb"\r\n|\r|\n", b"\r\n", data)
    if not normal.endswith(b"\r\n"):
        normal += b"\r\n"
    lines = normal.split(b"\r\n")[:-1]
    return b"".join((b"." if line.startswith(b".") else b"") + line + b"\r\n" for line in lines) + b".\r\n", len(normal)


def test_dot_stuffing_is_rfc_5321() -> None:
    from newsletter.transport import _wire

    rng = random.Random(11)
    for _ in range(20000):
        data = bytes(rng.choice(b"\r\n.a ") for _ in range(rng.randint(0, 30)))
        expected = rfc5321(data)
        assert _wire(data) == expected, data
        if re.sub(rb"\r\n|\r|\n", b"\r\n", data) == data:
            assert _wire(data, crlf=True) == expected, data


def test_messages_dot_stuffed_in_pieces_are_what_the_whole_message_stuffed_is() -> None:
    """The Composer stuffs each variant's fixed pieces once (`Outgoing.wire`): joined, they must be exactly
    what RFC 5321 makes of the whole message, signed or not, whatever the reader's address puts at a line's
    start; and a line end split between two pieces hands the job back to the transport."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.message import Composer, _dot_stuffed
    from newsletter.recipients import Recipient
    from newsletter.render import render as render_issue

    key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    settings = Settings.model_validate(
        {"list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"}, "dkim": {"selector": "s"}}
    )
    # 73 characters put the next one at the start of a quoted-printable line: a dot there must be doubled
    addresses = ["priya.sharma@walsall.example.org", "a" * 73 + ".b@walsall.example.org", "x." * 40 + "y@w.example.org"]
    checked = 0
    for draft in DRAFTS:
        issue = load_draft(draft).issue
        rendered = render_issue(issue)
        for dkim_key in (None, key):
            composer = Composer(issue, rendered, settings, "k", dkim_key=dkim_key)
            for address in addresses:
                message = composer.compose(Recipient(address, "Priya Sharma", "walsall"))
                assert message.wire is not None
                assert b"".join([*message.wire, b".\r\n"]) == rfc5321(message.data)[0]
                checked += 1
    assert checked == len(DRAFTS) * 2 * len(addresses)
    assert _dot_stuffed([b"a\r", b"\n.b\r\n"], {}) is None
    assert b"".join(_dot_stuffed([b"a\r\n", b".b\r\n", b".c"], {}) or ()) == b"a\r\n..b\r\n..c"


def test_dot_stuffing_is_what_aiosmtplib_sends() -> None:
    """aiosmtplib's public sendmail, to a server that records the bytes of each MAIL command and DATA."""
    import aiosmtplib

    from newsletter.transport import _wire

    rng = random.Random(13)
    messages = [b"", b".", b"..", b".\r\n", b"\r\n.\r\n", b"a\rb", b"a\n.b\n", b"\r\r\n\n."]
    messages += [bytes(rng.choice(b"\r\n.a ") for _ in range(rng.randint(0, 30))) for _ in range(300)]
    received: list[tuple[bytes, bytes]] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 test\r\n")
        mail = b""
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-test\r\n250 SIZE 1000000\r\n")
            elif verb == b"MAIL":
                mail = line
                writer.write(b"250 ok\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go on\r\n")
                await writer.drain()
                payload = await reader.readuntil(b"\r\n.\r\n")
                received.append((mail, payload))
                writer.write(b"250 ok\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 bye\r\n")
                await writer.drain()
                break
            else:
                writer.write(b"250 ok\r\n")
            await writer.drain()
        writer.close()

    async def main() -> None:
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            client = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=10)
            await client.connect()
            for data in messages:
                await client.sendmail("a@example.org", ["b@example.org"], data)
            await client.quit()

    asyncio.run(main())
    assert len(received) == len(messages)
    for data, (mail, payload) in zip(messages, received, strict=True):
        wire, size = _wire(data)
        assert payload == wire, data
        assert mail.rstrip(b"\r\n").lower().endswith(f" size={size}".encode()), (data, mail)


@pytest.fixture
def new_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """A temporary directory of the test's own (where Jinja keeps compiled templates), and a way to start
    afresh as a new run of `newsletter` would: no environment built yet."""
    from newsletter import render

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()

    def fresh() -> None:
        render.environment.cache_clear()
        render._text_environment.cache_clear()

    fresh()
    yield fresh
    fresh()


def test_templates_compiled_in_an_earlier_run_are_what_compiling_gives(
    tmp_path: Path, new_runs: object, authorities: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.render import render, shipped_templates

    own = tmp_path / "templates"
    own.mkdir()
    shipped = shipped_templates().get_source(jinja2.Environment(), "email.txt.j2")[0]
    (own / "email.txt.j2").write_text("Our own first line\n" + shipped, encoding="utf-8")
    settings = Settings.model_validate({"templates_dir": own})
    issue = load_draft(DRAFTS[-1], authorities).issue
    first = render(issue, authorities["walsall"], settings=settings)
    assert first.text.startswith("Our own first line")
    kept = sorted(p.name.split("-")[1] for p in (tmp_path / "tmp").glob("_jinja2-cache-*/newsletter-*.cache"))
    assert kept == ["html", "text"]

    # The next run compiles nothing, and renders the same bytes.
    new_runs()  # type: ignore[operator]
    with monkeypatch.context() as patch:
        patch.setattr(jinja2.Environment, "compile", lambda *a, **k: pytest.fail("compiled again"))
        again = render(issue, authorities["walsall"], settings=settings)
    assert (again.html, again.text) == (first.html, first.text)

    # An edited template is compiled again: the edit shows.
    (own / "email.txt.j2").write_text("Our own edited line\n" + shipped, encoding="utf-8")
    new_runs()  # type: ignore[operator]
    assert render(issue, authorities["walsall"], settings=settings).text.startswith("Our own edited line")

    # A damaged cache (cut short, its checksum still right) is no cache.
    for path in (tmp_path / "tmp").glob("_jinja2-cache-*/newsletter-*.cache"):
        path.write_bytes(path.read_bytes()[:-100])
    new_runs()  # type: ignore[operator]
    damaged = render(issue, authorities["walsall"], settings=settings)
    assert damaged.text.startswith("Our own edited line") and damaged.html == first.html


def test_rendering_needs_no_cache_of_compiled_templates(tmp_path: Path, new_runs: object, authorities: dict) -> None:
    """Where Jinja finds no folder of the user's own to keep them in, templates are compiled every run."""
    from newsletter.config import Settings
    from newsletter.load import load_draft
    from newsletter.render import render

    for path in (tmp_path / "tmp").iterdir():
        path.unlink()
    cache = tmp_path / "tmp" / f"_jinja2-cache-{os.getuid()}"
    cache.write_text("a file where the folder would be")
    issue = load_draft(DRAFTS[-1], authorities).issue
    assert "Walsall" in render(issue, authorities["walsall"]).html
    assert cache.read_text() == "a file where the folder would be"

    # The folder taken away (a cleaner of temporary files) while the templates are being compiled.
    cache.unlink()
    new_runs()  # type: ignore[operator]
    from newsletter.render import _text_environment, environment

    folder = Settings().templates_dir
    environment(folder), _text_environment(folder)  # the caches made: the folder is there
    cache.rmdir()
    assert "Walsall" in render(issue, authorities["walsall"]).html
