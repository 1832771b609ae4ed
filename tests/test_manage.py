"""The "Manage your subscription" page over real HTTP (uvicorn), from the link in a sent message to each action,
and axe-core in Debian's Chromium on the page at phone and desktop width."""

from __future__ import annotations

import asyncio
import json
import mailbox
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.endpoint import create_app
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.recipients import load_authorities
from newsletter.send import Job, queue_recipients
from newsletter.transport import opener
from newsletter.unsubscribe import make_token
from test_endpoint import running

SECRET = "manage-secret"
LIST_ID = "regional-update.wmchildrensservices.org.uk"
READER = "sarah.bradley@walsall.example.org"  # first on recipients/walsall.csv
PUBLIC = "https://updates.example.org"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    return Settings.model_validate(
        {
            "ledger": tmp_path / "ledger.db",
            "recipients": ROOT / "recipients",
            "transport": {"url": f"outbox:{tmp_path / 'outbox'}"},
            "list": {"unsubscribe_url": f"{PUBLIC}/unsubscribe"},
            "publication": {"privacy_url": "https://wm.example.org/privacy"},
        }
    )


@pytest.fixture
def server(settings: Settings) -> Iterator[str]:
    with running(create_app(settings, SECRET, busy_timeout=0.2)) as url:
        yield url


def manage_url(server: str, email: str = READER) -> str:
    return f"{server}/manage/{make_token(email, LIST_ID, SECRET)}"


def signup(settings: Settings, email: str) -> tuple[str, str, str] | None:
    with Ledger(settings.ledger) as ledger:
        return ledger.db.execute("SELECT name, authority, consent FROM signups WHERE email = ?", (email,)).fetchone()


def selected(page: str) -> list[str]:
    return re.findall(r'<option value="([^"]*)" selected>', page)


def test_the_footer_links_the_manage_page_in_both_parts_and_the_link_works(server: str, settings: Settings) -> None:
    members = load_authorities(ROOT / "recipients" / "authorities.yaml")
    issue = load_draft(DRAFTS[-1]).issue
    with Ledger(settings.ledger) as ledger:
        queue_recipients(ledger, issue, settings, members, ["walsall"])
        transport = opener(settings.transport.url, settings.transport)
        asyncio.run(Job(issue, members, ledger, transport, settings, SECRET, only=["walsall"]).run())
    folder = Path(settings.transport.url.removeprefix("outbox:"))
    (message,) = [m for m in mailbox.Maildir(folder, create=False) if READER in m["To"]]
    from email import message_from_bytes, policy

    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    text = parsed.get_body(("plain",)).get_content()
    page = parsed.get_body(("html",)).get_content()
    (in_text,) = re.findall(rf"{PUBLIC}/manage/[\w~-]+", text)
    (in_html,) = re.findall(rf'<a href="({PUBLIC}/manage/[\w~-]+)"[^>]*>Manage your subscription</a>', page)
    assert in_text == in_html
    assert "Manage your subscription:\n" + in_text in text
    # The unsubscribe link beside it carries the same token.
    assert in_text.rsplit("/", 1)[1] in re.findall(rf"{PUBLIC}/unsubscribe/([\w~-]+)", text)[0]
    opened = httpx.get(in_text.replace(PUBLIC, server))
    assert opened.status_code == 200
    assert READER in opened.text and selected(opened.text) == ["walsall"]
    assert "set-cookie" not in opened.headers and "<script" not in opened.text


def test_changing_authority_writes_the_readers_own_signup_row(server: str, settings: Settings) -> None:
    url = manage_url(server)
    before = httpx.get(url)
    assert selected(before.text) == ["walsall"] and signup(settings, READER) is None
    changed = httpx.post(f"{url}/authority", data={"authority": "dudley"})
    assert changed.status_code == 200, changed.text
    assert "Dudley Metropolitan Borough Council" in changed.text
    name, authority, consent = signup(settings, READER)  # type: ignore[misc]
    assert (name, authority) == ("Sarah Bradley", "dudley") and "manage page" in consent
    assert selected(httpx.get(url).text) == ["dudley"]
    # Again: the row is updated, not duplicated; an unknown authority changes nothing.
    httpx.post(f"{url}/authority", data={"authority": "coventry"})
    refused = httpx.post(f"{url}/authority", data={"authority": "atlantis"})
    assert refused.status_code == 400
    with Ledger(settings.ledger) as ledger:
        assert ledger.db.execute("SELECT email, authority FROM signups").fetchall() == [(READER, "coventry")]


def test_unsubscribing_from_the_manage_page_suppresses_like_the_unsubscribe_link(
    server: str, settings: Settings
) -> None:
    url = manage_url(server)
    assert "Unsubscribe</button>" in httpx.get(url).text
    done = httpx.post(f"{url}/unsubscribe")
    assert done.status_code == 200 and "You are unsubscribed" in done.text
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression(READER) == "unsubscribed (manage page)"
    after = httpx.get(url).text
    assert "does not get the" in after and "Unsubscribe</button>" not in after


def test_download_is_a_json_attachment_of_what_is_held(server: str, settings: Settings) -> None:
    url = manage_url(server)
    httpx.post(f"{url}/authority", data={"authority": "dudley"})
    with Ledger(settings.ledger) as ledger:
        ledger.bounce(READER, "2025-09", "soft", "452 4.2.2 mailbox full", "inbox")
    response = httpx.post(f"{url}/download")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"].startswith("attachment;")
    assert "set-cookie" not in response.headers
    held = json.loads(response.content)
    assert held["address"] == READER
    assert held["signup"]["authority"] == "dudley" and held["signup"]["name"] == "Sarah Bradley"
    assert [b["reason"] for b in held["bounces"]] == ["452 4.2.2 mailbox full"]
    assert [entry["authority"] for entry in held["authority_lists"]] == ["walsall"]
    assert held["retention_months"] == 24


@pytest.mark.parametrize(
    ("method", "path"), [("GET", ""), ("POST", "/authority"), ("POST", "/unsubscribe"), ("POST", "/download")]
)
def test_a_forged_or_expired_link_gets_400_and_changes_nothing(
    server: str, settings: Settings, method: str, path: str
) -> None:
    token = make_token(READER, LIST_ID, SECRET)
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    other_key = make_token(READER, LIST_ID, "not our secret")
    for bad in (forged, other_key):
        response = httpx.request(method, f"{server}/manage/{bad}{path}", data={"authority": "dudley"})
        assert response.status_code == 400, response.text
        assert READER not in response.text
    with running(create_app(settings, SECRET, max_age=-1)) as expiring:
        response = httpx.request(method, f"{expiring}/manage/{token}{path}", data={"authority": "dudley"})
        assert response.status_code == 400
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == [] and ledger.db.execute("SELECT * FROM signups").fetchall() == []


def test_a_ledger_held_by_a_send_gets_503_not_a_hang(server: str, settings: Settings) -> None:
    url = manage_url(server)
    httpx.get(url)  # the ledger exists
    holder = sqlite3.connect(settings.ledger, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        response = httpx.post(f"{url}/authority", data={"authority": "dudley"}, timeout=10)
        assert response.status_code == 503 and response.headers["retry-after"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert signup(settings, READER) is None


def test_a_forgotten_reader_gets_no_actions(server: str, settings: Settings) -> None:
    from newsletter.privacy import forget

    with Ledger(settings.ledger) as ledger:
        forget(settings, ledger, READER, SECRET)
    url = manage_url(server)
    page = httpx.get(url).text
    assert "erased" in page and "<form" not in page
    assert httpx.post(f"{url}/authority", data={"authority": "dudley"}).status_code == 400
    assert signup(settings, READER) is None


@pytest.mark.parametrize("width", [375, 800])
def test_no_wcag_violations_on_the_manage_page(browser: object, server: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.goto(manage_url(server))
    assert page.locator("select#authority").count() == 1
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    page.close()
    assert results.violations_count == 0, results.generate_report()
    assert results.response["passes"], "axe ran no checks"
    assert overflow <= 0
