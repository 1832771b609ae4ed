"""The one-click unsubscribe endpoint over real HTTP (uvicorn), and the next send honouring it.

Also what a hostile or unlucky request meets: a ledger locked by a send, a body far too big.
"""

from __future__ import annotations

import asyncio
import mailbox
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.endpoint import create_app
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.recipients import gather
from newsletter.send import Job, queue_recipients
from newsletter.transport import opener
from newsletter.unsubscribe import MAX_AGE, make_token
from smtp_server import free_port
from web_server import running

SECRET = "endpoint-secret"
LIST_ID = "regional-update.wmchildrensservices.org.uk"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {
            "ledger": tmp_path / "ledger.db",
            "recipients": ROOT / "recipients",
            "transport": {"url": f"outbox:{tmp_path / 'outbox'}"},
            "list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"},
        }
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with running(create_app(settings, SECRET)) as url:
        yield url


def people(authorities: dict) -> list:
    return list(gather(ROOT / "recipients", list(authorities.values())))


def test_one_click_post_unsubscribes_without_redirect_or_cookies(
    server: str, settings: Settings, authorities: dict
) -> None:
    person = people(authorities)[3]
    token = make_token(person.email, LIST_ID, SECRET)
    response = httpx.post(
        f"{server}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}, follow_redirects=False
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers and "location" not in response.headers
    assert "You are unsubscribed" in response.text
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression(person.email) == "unsubscribed (one-click)"
    again = httpx.post(f"{server}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # harmless the second time
    with Ledger(settings.ledger) as ledger:
        assert len(ledger.suppressions()) == 1

    # The next send skips that person.
    issue = load_draft(DRAFTS[-1]).issue
    with Ledger(settings.ledger) as ledger:
        queue_recipients(ledger, issue, settings, list(authorities.values()))
        asyncio.run(
            Job(
                issue,
                list(authorities.values()),
                ledger,
                opener(settings.transport.url, settings.transport),
                settings,
                SECRET,
            ).run()
        )
    sent = [m["To"] for m in mailbox.Maildir(Path(settings.transport.url.removeprefix("outbox:")), create=False)]
    assert len(sent) == len(people(authorities)) - 1
    assert not any(person.email in to for to in sent)


def test_get_shows_a_button_and_changes_nothing(server: str, settings: Settings) -> None:
    token = make_token("reader@walsall.example.org", LIST_ID, SECRET)
    response = httpx.get(f"{server}/unsubscribe/{token}")
    assert response.status_code == 200
    assert '<form method="post"' in response.text and "Unsubscribe</button>" in response.text
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == []


def test_resubscribe_after_unsubscribing(server: str, settings: Settings) -> None:
    token = make_token("reader@walsall.example.org", LIST_ID, SECRET)
    httpx.post(f"{server}/unsubscribe/{token}")
    page = httpx.get(f"{server}/unsubscribe/{token}")
    assert "Subscribe again" in page.text
    assert httpx.post(f"{server}/unsubscribe/{token}/resubscribe").status_code == 200
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression("reader@walsall.example.org") is None


def test_resubscribe_never_undoes_a_bounce(server: str, settings: Settings) -> None:
    with Ledger(settings.ledger) as ledger:
        ledger.suppress("gone@walsall.example.org", "hard bounce: 550 5.1.1", "inbox")
    token = make_token("gone@walsall.example.org", LIST_ID, SECRET)
    assert "Subscribe again" not in httpx.get(f"{server}/unsubscribe/{token}").text
    httpx.post(f"{server}/unsubscribe/{token}/resubscribe")
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression("gone@walsall.example.org").startswith("hard bounce")


@pytest.mark.parametrize("kind", ["tampered", "other secret", "other list", "garbage", "expired"])
def test_bad_tokens_get_a_plain_page_and_change_nothing(settings: Settings, kind: str) -> None:
    good = make_token("reader@walsall.example.org", LIST_ID, SECRET)
    token = {
        "tampered": good[:-3] + ("AAA" if not good.endswith("AAA") else "BBB"),
        "other secret": make_token("reader@walsall.example.org", LIST_ID, "guess"),
        "other list": make_token("reader@walsall.example.org", "another.list.example.org", SECRET),
        "garbage": "not-a-token",
        "expired": good,
    }[kind]
    with running(create_app(settings, SECRET, max_age=-1 if kind == "expired" else MAX_AGE)) as server:
        for response in (
            httpx.post(f"{server}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
            httpx.get(f"{server}/unsubscribe/{token}"),
        ):
            assert response.status_code == 400
            assert "This link does not work" in response.text
            assert "reader@" not in response.text and "expired" not in response.text.lower()
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == []


# -- a ledger locked by a running send -------------------------------------------------------------

READER = "reader@walsall.example.org"
ONE_CLICK = {"List-Unsubscribe": "One-Click"}
HANG_GUARD = 5.0
"""Seconds: far above what the endpoint takes (about its 1 s busy timeout), far below the 30 s it took."""


@contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the ledger's write lock, as a send's transaction does."""
    Ledger(path).close()
    hold = sqlite3.connect(path, isolation_level=None)
    hold.execute("BEGIN EXCLUSIVE")
    try:
        yield hold
    finally:
        hold.rollback()
        hold.close()


def recorded(path: Path, email: str, within: float = 20) -> str | None:
    deadline = time.monotonic() + within
    while True:
        with Ledger(path) as ledger:
            reason = ledger.suppression(email)
        if reason is not None or time.monotonic() > deadline:
            return reason
        time.sleep(0.05)


def test_a_locked_ledger_answers_at_once_and_the_unsubscribe_is_recorded_when_free(settings: Settings) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    with running(create_app(settings, SECRET, retry_every=0.1)) as server:
        with locked(settings.ledger):
            start = time.monotonic()
            response = httpx.post(f"{server}/unsubscribe/{token}", data=ONE_CLICK, timeout=60)
            took = time.monotonic() - start
            assert took < HANG_GUARD
            assert response.status_code == 202
            assert "You are unsubscribed" in response.text and "few minutes" in response.text
            assert "Subscribe again" not in httpx.get(f"{server}/unsubscribe/{token}", timeout=60).text
            assert "You are unsubscribed" in httpx.get(f"{server}/unsubscribe/{token}", timeout=60).text
            with Ledger(settings.ledger) as ledger:
                assert ledger.suppression(READER) is None  # not yet: the lock is still held
            again = httpx.post(f"{server}/unsubscribe/{token}/resubscribe", timeout=60)
            assert again.status_code == 503 and int(again.headers["retry-after"]) > 0
        assert recorded(settings.ledger, READER) == "unsubscribed (one-click)"
        with Ledger(settings.ledger) as ledger:
            assert len(ledger.suppressions()) == 1


def test_requests_that_need_no_database_never_wait_for_one_that_does(settings: Settings) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    with running(create_app(settings, SECRET, busy_timeout=HANG_GUARD)) as server, locked(settings.ledger):
        posted: list[httpx.Response] = []
        poster = threading.Thread(
            target=lambda: posted.append(httpx.post(f"{server}/unsubscribe/{token}", data=ONE_CLICK, timeout=60))
        )
        poster.start()
        time.sleep(0.3)  # the POST is waiting for the lock
        bad = httpx.get(f"{server}/unsubscribe/not-a-token", timeout=60)
        assert bad.status_code == 400
        assert poster.is_alive()  # answered while the POST still waits
        poster.join(60)
        assert posted[0].status_code == 202


def test_an_unsubscribe_taken_while_locked_survives_a_restart(settings: Settings) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    with locked(settings.ledger), running(create_app(settings, SECRET, retry_every=3600)) as server:
        assert httpx.post(f"{server}/unsubscribe/{token}", data=ONE_CLICK, timeout=60).status_code == 202
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression(READER) is None
    with running(create_app(settings, SECRET, retry_every=3600)):
        assert recorded(settings.ledger, READER) == "unsubscribed (one-click)"  # on startup


# -- bodies ------------------------------------------------------------------------------------------


def status_of(server: str, head: bytes, body: Iterator[bytes]) -> int:
    """Send a request by hand (the body from another thread, as long as the server reads it); the status."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=HANG_GUARD) as sock:
        sock.sendall(head)

        def send() -> None:
            try:
                for chunk in body:
                    sock.sendall(chunk)
            except OSError:
                pass  # the server answered and closed: what it should do

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        answer = b""
        while b"\r\n" not in answer:
            chunk = sock.recv(4096)
            assert chunk, "closed without an answer"
            answer += chunk
    return int(answer.split()[1])


def test_a_body_over_the_limit_is_refused_with_413(server: str, settings: Settings) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    size = 4 * 1024 * 1024
    head = (
        f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {size}\r\n\r\n"
    ).encode()
    body = (b"List-Unsubscribe=One-Click&" + b"x" * (64 * 1024 - 27) for _ in range(size // (64 * 1024)))
    assert status_of(server, head, body) == 413
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == []


def test_a_huge_declared_body_is_refused_without_being_read(server: str) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    head = f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nContent-Length: {1 << 30}\r\n\r\n".encode()
    assert status_of(server, head, iter([b"List-Unsubscribe=One-Click"])) == 413  # 1 GB announced, never sent


def test_a_chunked_body_is_counted_as_it_comes(server: str) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    head = f"POST /unsubscribe/{token} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    chunk = b"%x\r\n%s\r\n" % (4096, b"y" * 4096)
    assert status_of(server, head, iter([chunk] * 16)) == 413  # 64 KB and no end: answered anyway


def test_a_normal_one_click_body_still_works(server: str) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    files = {"List-Unsubscribe": (None, "One-Click")}  # multipart, as some clients send it
    assert httpx.post(f"{server}/unsubscribe/{token}", files=files).status_code == 200


# -- the command --------------------------------------------------------------------------------------


def test_serve_keeps_tokens_out_of_its_log_and_refuses_a_bad_port(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'ledger = "{tmp_path / "ledger.db"}"\nrecipients = "{ROOT / "recipients"}"\n'
        '[list]\nunsubscribe_url = "https://updates.example.org/unsubscribe"\n',
        encoding="utf-8",
    )
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET}
    command = [sys.executable, "-m", "newsletter", "serve", "--config", str(config)]

    bad = subprocess.run(
        [*command, "--port", "99999"], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert bad.returncode == 2
    assert "Traceback" not in bad.stderr and "65535" in bad.stderr

    port = free_port()
    process = subprocess.Popen(
        [*command, "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None, "serve did not start"
                time.sleep(0.1)
        token = make_token(READER, LIST_ID, SECRET)
        assert httpx.get(f"http://127.0.0.1:{port}/unsubscribe/{token}").status_code == 200
        assert httpx.post(f"http://127.0.0.1:{port}/unsubscribe/{token}", data=ONE_CLICK).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/unsubscribe/{token}x?q=1").status_code == 400
        assert httpx.get(f"http://127.0.0.1:{port}/subscribe").status_code == 200
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0].decode()
    for page in ("Unsubscribe endpoint", "Manage pages", "Sign-up form"):  # it says what it serves, and where
        assert f"{page} on http://127.0.0.1:{port}/" in output
    assert "POST /unsubscribe/" in output  # there is an access log ...
    assert token not in output and token[:20] not in output  # ... without the tokens
