"""The one-click unsubscribe endpoint over real HTTP (uvicorn), and the next send honouring it."""

from __future__ import annotations

import asyncio
import mailbox
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from conftest import DRAFTS, ROOT
from smtp_server import free_port

from newsletter.config import Settings
from newsletter.endpoint import create_app
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.recipients import gather
from newsletter.send import Job, queue_recipients
from newsletter.transport import opener
from newsletter.unsubscribe import MAX_AGE, make_token

SECRET = "endpoint-secret"
LIST_ID = "regional-update.wmchildrensservices.org.uk"


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings.model_validate({
        "ledger": tmp_path / "ledger.db", "recipients": ROOT / "recipients",
        "transport": {"url": f"outbox:{tmp_path / 'outbox'}"},
        "list": {"unsubscribe_url": "https://updates.example.org/unsubscribe"}})


@contextmanager
def running(app: object) -> Iterator[str]:
    """A real uvicorn server on loopback, in a thread."""
    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    instance.should_exit = True
    thread.join(10)


@pytest.fixture()
def server(settings: Settings) -> Iterator[str]:
    with running(create_app(settings, SECRET)) as url:
        yield url


def people(authorities: dict) -> list:
    return list(gather(ROOT / "recipients", list(authorities.values())))


def test_one_click_post_unsubscribes_without_redirect_or_cookies(server: str, settings: Settings,
                                                                 authorities: dict) -> None:
    person = people(authorities)[3]
    token = make_token(person.email, LIST_ID, SECRET)
    response = httpx.post(f"{server}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"},
                          follow_redirects=False)
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
        asyncio.run(Job(issue, list(authorities.values()), ledger, opener(settings.transport.url, settings.transport),
                        settings, SECRET).run())
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
        for response in (httpx.post(f"{server}/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}),
                         httpx.get(f"{server}/unsubscribe/{token}")):
            assert response.status_code == 400
            assert "This link does not work" in response.text
            assert "reader@" not in response.text and "expired" not in response.text.lower()
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == []
