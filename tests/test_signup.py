"""Sign-up with confirmation, over real parts: the Starlette app under uvicorn, aiosmtpd receiving the
confirmation, Debian's Chromium filling the form, and `newsletter send` afterwards.

Also what abuse meets: the same bytes for every address, one email a day per address, the honeypot, forged
and expired links, bodies too big, a client asking too often; and axe-core on every page.
"""

from __future__ import annotations

import csv
import mailbox
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe

from conftest import DRAFTS, ROOT
from newsletter.config import Settings
from newsletter.endpoint import create_app
from newsletter.ledger import Ledger
from newsletter.load import load_draft
from newsletter.privacy import keyed_hash, without_forgotten
from newsletter.recipients import gather, load_authorities
from newsletter.report import write_reports
from newsletter.send import queue_recipients
from newsletter.signup import (
    Signup,
    confirmed_readers,
    make_confirmation_token,
    read_confirmation_token,
)
from newsletter.unsubscribe import make_token, read_token
from smtp_server import Server, free_port
from web_server import running

SECRET = "signup-secret"
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
ON_A_LIST = "sarah.bradley@walsall.example.org"
"""In walsall.csv: signing up for Dudley must give one copy, Dudley's."""
NEW = "new.reader@dudley.example.org"
WAIT = 20.0
"""Seconds to wait for something that should come (an email): far above what it takes."""


# -- the running parts ----------------------------------------------------------------------------------


@pytest.fixture
def smtp() -> Iterator[Server]:
    with Server() as server:
        yield server


@pytest.fixture
def lists(tmp_path: Path) -> Path:
    """A copy of the sample lists, Walsall and Dudley naming their domains (so the form can propose them)."""
    folder = tmp_path / "recipients"
    shutil.copytree(ROOT / "recipients", folder)
    path = folder / "authorities.yaml"
    text = path.read_text(encoding="utf-8")
    for slug in ("walsall", "dudley"):
        line = next(line for line in text.splitlines() if f"slug: {slug}," in line)
        text = text.replace(line, line.replace("}", f", domains: [{slug}.example.org]}}"))
    path.write_text(text, encoding="utf-8")
    return folder


def make_settings(tmp_path: Path, lists: Path, smtp: Server, port: int, **signup: object) -> Settings:
    return Settings.model_validate(
        {
            "ledger": tmp_path / "ledger.db",
            "recipients": lists,
            "transport": {"url": smtp.url},
            "list": {"unsubscribe_url": f"http://localhost:{port}/unsubscribe"},
            "publication": {"privacy_url": "https://updates.example.org/privacy"},
            "signup": signup,
        }
    )


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def settings(tmp_path: Path, lists: Path, smtp: Server, port: int) -> Settings:
    return make_settings(tmp_path, lists, smtp, port)


@pytest.fixture
def server(settings: Settings, port: int) -> Iterator[str]:
    with running(create_app(settings, SECRET), port) as url:
        yield url


def arrived(smtp: Server, address: str, count: int = 1) -> list[EmailMessage]:
    """The confirmation emails for `address`, once `count` of them have come (or WAIT has passed)."""
    deadline = time.monotonic() + WAIT
    while len(smtp.handler.received(address)) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return [a.message for a in smtp.handler.received(address)]


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"http://\S+/subscribe/confirm/\S+", body.get_content())
    assert found, body.get_content()
    return found.group(0).replace("localhost", "127.0.0.1")


def form(address: str, name: str = "Nia Reader", authority: str = "dudley", **more: str) -> dict[str, str]:
    return {"email": address, "name": name, "authority": authority, "consent": "yes", "website": "", **more}


def signups(path: Path) -> list[tuple[str, ...]]:
    with Ledger(path) as ledger:
        return list(ledger.db.execute("SELECT email, name, authority, consent FROM signups ORDER BY email"))


# -- end to end -------------------------------------------------------------------------------------------


def test_a_reader_signs_up_in_chromium_confirms_and_the_next_send_includes_them_once(
    browser: object, tmp_path: Path, settings: Settings, server: str, smtp: Server
) -> None:
    page = browser.new_page()  # type: ignore[attr-defined]
    for address, name in ((NEW, "Nia Reader"), (ON_A_LIST, "Sarah Bradley-Jones")):
        page.goto(f"{server}/subscribe")
        page.fill("#email", address)
        page.fill("#name", name)
        page.select_option("#authority", "dudley")
        page.check("#consent")
        page.click("button[type=submit]")
        assert page.locator("h1").inner_text() == "Check your email"
        assert address not in str(signups(settings.ledger))  # nothing stored before confirmation

        (message,) = arrived(smtp, address)
        assert message["To"] == f"{name} <{address}>" and "Confirm your subscription" in message["Subject"]
        assert message["Auto-Submitted"] == "auto-generated"
        page.goto(link_in(message))
        assert address not in str(signups(settings.ledger))  # opening the link (as scanners do) stores nothing
        page.click("button:has-text('Confirm')")
        assert page.locator("h1").inner_text() == "You are subscribed"
    page.close()
    assert signups(settings.ledger) == [
        (NEW, "Nia Reader", "dudley", settings.signup.consent),
        (ON_A_LIST, "Sarah Bradley-Jones", "dudley", settings.signup.consent),
    ]

    # `newsletter send` to an outbox: the new reader once, and the listed one once, under the sign-up's authority.
    outbox = tmp_path / "outbox"
    config = tmp_path / "newsletter.toml"
    config.write_text(
        f'ledger = "{settings.ledger}"\nrecipients = "{settings.recipients}"\n[transport]\nurl = "outbox:{outbox}"\n',
        encoding="utf-8",
    )
    sent = subprocess.run(
        [sys.executable, "-m", "newsletter", "send", str(DRAFTS[-1]), "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=300,
        env={k: v for k, v in os.environ.items() if k != "NEWSLETTER_SECRET"},
        check=False,
    )
    assert sent.returncode == 0, sent.stdout + sent.stderr
    assert "signed up on the web for Dudley" in sent.stderr  # the list row it replaced, as a note
    recipients = [str(m["To"]) for m in mailbox.Maildir(outbox, create=False)]
    authorities = load_authorities(settings.recipients / "authorities.yaml")
    on_lists = {p.email for p in _listed(settings)}
    assert len(recipients) == len(on_lists | {NEW})
    for address in (NEW, ON_A_LIST):
        assert sum(address in to for to in recipients) == 1
    with Ledger(settings.ledger) as ledger:
        rows = dict(
            ledger.db.execute("SELECT email, authority FROM deliveries WHERE email IN (?, ?)", (NEW, ON_A_LIST))
        )
    assert rows == {NEW: "dudley", ON_A_LIST: "dudley"}

    # The report lists both as Dudley's joiners, for the list owner's records.
    with Ledger(settings.ledger) as ledger:
        made = write_reports(ledger, "2025-09", {a.slug: a for a in authorities}, tmp_path / "reports")
    reports = {r.authority.slug: r for r in made}
    assert reports["dudley"].joined == 2 and reports["walsall"].joined == 0
    assert reports["dudley"].joined_file is not None
    with reports["dudley"].joined_file.open(encoding="utf-8-sig") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["email", "name", "signed up"]
    assert sorted(line[0] for line in lines[1:]) == sorted([NEW, ON_A_LIST])


def _listed(settings: Settings) -> list:
    return list(gather(settings.recipients, load_authorities(settings.recipients / "authorities.yaml")))


# -- joining at send time ---------------------------------------------------------------------------------


def confirm_directly(path: Path, address: str, name: str, authority: str) -> None:
    with Ledger(path) as ledger:
        ledger.db.execute(
            "INSERT INTO signups VALUES (?, ?, ?, 'I agree', ?, ?)",
            (address, name, authority, time.time(), time.time()),
        )


def test_sign_ups_join_once_suppressions_win_and_a_gone_authority_is_reported(settings: Settings) -> None:
    issue = load_draft(DRAFTS[-1]).issue
    authorities = load_authorities(settings.recipients / "authorities.yaml")
    confirm_directly(settings.ledger, ON_A_LIST, "Sarah B", "dudley")
    confirm_directly(settings.ledger, "gone@dudley.example.org", "Gone Reader", "dudley")
    confirm_directly(settings.ledger, "orphan@example.org", "Orphan", "old-authority")
    confirm_directly(settings.ledger, "tariq.mahmood@walsall.example.org", "Tariq", "old-authority")
    with Ledger(settings.ledger) as ledger:
        ledger.suppress("gone@dudley.example.org", "hard bounce: 550 5.1.1", "inbox")
        summaries = queue_recipients(ledger, issue, settings, authorities)
        people = list(gather(settings.recipients, authorities, set(), None, {}, confirmed_readers(ledger)))
        rows = dict(ledger.db.execute("SELECT email, authority FROM deliveries WHERE issue = ?", (issue.issue,)))
    assert rows[ON_A_LIST] == "dudley"  # the sign-up replaced the Walsall row
    assert "gone@dudley.example.org" not in rows and "orphan@example.org" not in rows
    assert rows["tariq.mahmood@walsall.example.org"] == "walsall"  # an unsendable sign-up leaves the list's copy
    assert summaries["dudley"].joined == 1 and summaries["dudley"].suppressed >= 1
    warnings = [str(p) for p in summaries["old-authority"].problems]
    assert len(warnings) == 2 and all("no longer listed" in w for w in warnings)
    assert len(rows) == len({p.email for p in _listed(settings)})  # nobody lost
    assert len(people) == len({p.email for p in people})  # nobody twice (not only thanks to the ledger's key)
    assert [p.authority for p in people if p.email == ON_A_LIST] == ["dudley"]


# -- abuse -----------------------------------------------------------------------------------------------


def test_every_address_gets_the_same_bytes_whatever_it_is(settings: Settings, server: str) -> None:
    confirm_directly(settings.ledger, "signed.up@dudley.example.org", "Signed Up", "dudley")
    with Ledger(settings.ledger) as ledger:
        ledger.suppress("left@dudley.example.org", "unsubscribed (web page)", "web")
        ledger.suppress("bounced@dudley.example.org", "hard bounce: 550", "inbox")
    addresses = [
        ON_A_LIST,  # on a list
        "signed.up@dudley.example.org",  # signed up already
        "left@dudley.example.org",  # unsubscribed
        "bounced@dudley.example.org",  # bounced
        "nobody.yet@dudley.example.org",  # unknown
        ON_A_LIST,  # asked again the same day
    ]
    answers = [httpx.post(f"{server}/subscribe", data=form(a)) for a in addresses]
    assert {(r.status_code, r.content, r.headers["content-type"]) for r in answers} == {
        (answers[0].status_code, answers[0].content, answers[0].headers["content-type"])
    }
    assert answers[0].status_code == 200 and b"Check your email" in answers[0].content
    assert not any("set-cookie" in r.headers for r in answers)


def test_one_confirmation_a_day_per_address(settings: Settings, server: str, smtp: Server) -> None:
    assert httpx.post(f"{server}/subscribe", data=form(NEW)).status_code == 200
    assert len(arrived(smtp, NEW)) == 1
    assert httpx.post(f"{server}/subscribe", data=form(NEW.upper(), name="Someone Else")).status_code == 200
    # Confirmations go out one at a time in the order asked: once a later one has come, any for NEW has too.
    httpx.post(f"{server}/subscribe", data=form("later@dudley.example.org"))
    assert len(arrived(smtp, "later@dudley.example.org")) == 1
    assert len(smtp.handler.received(NEW)) == 1
    with Ledger(settings.ledger) as ledger:
        kept = list(ledger.db.execute("SELECT address_hash FROM signup_requests"))
    assert (keyed_hash(NEW, SECRET),) in kept
    assert NEW not in str(kept)  # only a keyed hash of the address is kept


def test_the_honeypot_sends_nothing_and_answers_the_same(settings: Settings, server: str, smtp: Server) -> None:
    human = httpx.post(f"{server}/subscribe", data=form("human@dudley.example.org"))
    bot = httpx.post(f"{server}/subscribe", data=form("victim@dudley.example.org", website="http://spam.example"))
    assert bot.status_code == human.status_code == 200 and bot.content == human.content
    httpx.post(f"{server}/subscribe", data=form("after@dudley.example.org"))
    assert len(arrived(smtp, "after@dudley.example.org")) == 1
    assert smtp.handler.received("victim@dudley.example.org") == []
    with Ledger(settings.ledger) as ledger:
        hashes = {h for (h,) in ledger.db.execute("SELECT address_hash FROM signup_requests")}
    assert keyed_hash("victim@dudley.example.org", SECRET) not in hashes


def test_a_bounced_address_is_sent_no_confirmation(settings: Settings, server: str, smtp: Server) -> None:
    with Ledger(settings.ledger) as ledger:
        ledger.suppress("bounced@dudley.example.org", "hard bounce: 550", "inbox")
    httpx.post(f"{server}/subscribe", data=form("bounced@dudley.example.org"))
    httpx.post(f"{server}/subscribe", data=form("after@dudley.example.org"))
    assert len(arrived(smtp, "after@dudley.example.org")) == 1
    assert smtp.handler.received("bounced@dudley.example.org") == []


GOOD = Signup(NEW, "Nia Reader", "dudley", "I agree")


@pytest.mark.parametrize("kind", ["forged", "tampered", "an unsubscribe token", "garbage", "expired"])
def test_bad_confirmation_links_get_400_and_store_nothing(settings: Settings, server: str, kind: str) -> None:
    good = make_confirmation_token(GOOD, SECRET)
    token = {
        "forged": make_confirmation_token(GOOD, "a guessed secret"),
        "tampered": good[:40] + ("A" if good[40] != "A" else "B") + good[41:],
        "an unsubscribe token": make_token(NEW, settings.list.id, SECRET),
        "garbage": "not-a-token",
        "expired": make_confirmation_token(GOOD, SECRET, now=time.time() - 49 * 3600),
    }[kind]
    for response in (
        httpx.get(f"{server}/subscribe/confirm/{token}"),
        httpx.post(f"{server}/subscribe/confirm/{token}"),
    ):
        assert response.status_code == 400
        assert "This link does not work" in response.text and NEW not in response.text
    assert signups(settings.ledger) == []


def test_the_two_kinds_of_token_never_stand_for_each_other(settings: Settings, server: str) -> None:
    confirmation = make_confirmation_token(GOOD, SECRET)
    assert httpx.post(f"{server}/unsubscribe/{confirmation}").status_code == 400
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppressions() == []
    with pytest.raises(ValueError, match="invalid"):
        read_token(confirmation, SECRET)
    with pytest.raises(ValueError, match="invalid"):
        read_confirmation_token(make_token(NEW, settings.list.id, SECRET), SECRET, 3600)
    assert read_confirmation_token(confirmation, SECRET, 3600) == GOOD


def test_confirming_twice_is_harmless_and_lifts_an_unsubscribe_never_a_bounce(settings: Settings, server: str) -> None:
    left = Signup("left@dudley.example.org", "Left", "dudley", "I agree")
    bounced = Signup("bounced@dudley.example.org", "Bounced", "dudley", "I agree")
    with Ledger(settings.ledger) as ledger:
        ledger.suppress(left.email, "unsubscribed (one-click)", "web")
        ledger.suppress(bounced.email, "hard bounce: 550 5.1.1", "inbox")
    for signup in (GOOD, GOOD, left, bounced):
        answer = httpx.post(f"{server}/subscribe/confirm/{make_confirmation_token(signup, SECRET)}")
        assert answer.status_code == 200 and "You are subscribed" in answer.text
    assert [row[0] for row in signups(settings.ledger)] == sorted([NEW, left.email, bounced.email])
    with Ledger(settings.ledger) as ledger:
        assert ledger.suppression(left.email) is None
        assert ledger.suppression(bounced.email).startswith("hard bounce")


def test_signing_up_again_after_being_forgotten_is_fresh_consent(
    settings: Settings, server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`forget` blocks the address from every list; a confirmed sign-up afterwards is the person asking again,
    so it lifts the block and the next send includes them (once)."""
    from newsletter.privacy import forget

    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)  # the send's secret is the server's: the block would hold
    with Ledger(settings.ledger) as ledger:
        forget(settings, ledger, ON_A_LIST, SECRET)
        people = {p.email for p in without_forgotten(_listed(settings), ledger, lambda: SECRET, {})}
    assert ON_A_LIST not in people
    token = make_confirmation_token(Signup(ON_A_LIST, "Sarah B", "dudley", "I agree"), SECRET)
    assert httpx.post(f"{server}/subscribe/confirm/{token}").status_code == 200
    issue = load_draft(DRAFTS[-1]).issue
    with Ledger(settings.ledger) as ledger:
        queue_recipients(ledger, issue, settings, load_authorities(settings.recipients / "authorities.yaml"))
        rows = ledger.db.execute("SELECT authority FROM deliveries WHERE email = ?", (ON_A_LIST,)).fetchall()
    assert rows == [("dudley",)]


def test_a_body_too_big_is_refused_with_413(settings: Settings, server: str) -> None:
    big = form(NEW, name="x" * 64 * 1024)
    assert httpx.post(f"{server}/subscribe", data=big).status_code == 413
    token = make_confirmation_token(GOOD, SECRET)
    assert httpx.post(f"{server}/subscribe/confirm/{token}", content=b"x" * 64 * 1024).status_code == 413
    assert signups(settings.ledger) == []


def test_a_client_asking_too_often_gets_429(tmp_path: Path, lists: Path, smtp: Server, port: int) -> None:
    with running(create_app(make_settings(tmp_path, lists, smtp, port, per_client_per_hour=3), SECRET), port) as server:
        answers = [
            httpx.post(f"{server}/subscribe", data=form(f"r{n}@dudley.example.org")).status_code for n in range(5)
        ]
        refused = httpx.post(f"{server}/subscribe", data=form("r9@dudley.example.org"))
        assert httpx.get(f"{server}/subscribe").status_code == 200  # the form itself is never limited
    assert answers == [200, 200, 200, 429, 429]
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0


# -- the form ---------------------------------------------------------------------------------------------


def test_the_form_works_without_javascript_and_says_what_to_fix(settings: Settings, server: str) -> None:
    page = httpx.get(f"{server}/subscribe")
    assert page.status_code == 200 and "<script" not in page.text
    assert settings.signup.consent in page.text and "https://updates.example.org/privacy" in page.text
    wrong = httpx.post(
        f"{server}/subscribe", data=form("not an address", name="<b>Zoë</b>", authority="nowhere", consent="")
    )
    assert wrong.status_code == 400
    assert "&lt;b&gt;Zoë&lt;/b&gt;" in wrong.text and "<b>Zoë" not in wrong.text  # kept, escaped
    for field in ("email", "authority", "consent"):
        assert f'id="{field}-error"' in wrong.text


def test_the_authority_is_proposed_from_the_domain(server: str) -> None:
    page = httpx.get(f"{server}/subscribe", params={"email": "someone@walsall.example.org"})
    assert '<option value="walsall" selected>' in page.text
    posted = httpx.post(f"{server}/subscribe", data=form("someone@social.dudley.example.org", authority=""))
    assert posted.status_code == 400 and '<option value="dudley" selected>' in posted.text
    assert "we have chosen Dudley" in posted.text


def test_a_name_cannot_add_a_header_to_the_confirmation(server: str, smtp: Server) -> None:
    sneaky = "Ann =?utf-8?q?=0D=0ABcc=3A_victim@example.org?= \r\nX-Injected: yes"
    httpx.post(f"{server}/subscribe", data=form(NEW, name=sneaky))
    (message,) = arrived(smtp, NEW)
    assert message["Bcc"] is None and message["X-Injected"] is None
    assert "=?utf-8?q?=0D=0ABcc" in str(message["To"])  # shown as the text it is


# -- accessibility ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("width", [375, 800])
def test_no_wcag_violations_on_the_sign_up_pages(browser: object, settings: Settings, server: str, width: int) -> None:
    token = make_confirmation_token(GOOD, SECRET)
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    checked = []
    for url, method in (
        (f"{server}/subscribe", "goto"),
        (f"{server}/subscribe", "errors"),
        (f"{server}/subscribe/confirm/{token}", "goto"),
        (f"{server}/subscribe/confirm/{token}", "confirm"),
        (f"{server}/subscribe", "sent"),
    ):
        page.goto(url)
        if method == "errors":
            page.fill("#email", "not an address")
            page.evaluate("document.querySelector('form').noValidate = true")
            page.click("button[type=submit]")
        elif method == "confirm":
            page.click("button:has-text('Confirm')")
        elif method == "sent":
            page.fill("#email", "axe@dudley.example.org")
            page.fill("#name", "Axe Reader")
            page.select_option("#authority", "dudley")
            page.check("#consent")
            page.click("button[type=submit]")
        results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
        assert results.violations_count == 0, f"{method} {url}\n" + results.generate_report()
        assert results.response["passes"], "axe ran no checks"
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        checked.append(page.locator("h1").inner_text())
    page.close()
    assert checked == [
        "Sign up for the West Midlands Regional Update",
        "Sign up for the West Midlands Regional Update",
        "Confirm your subscription",
        "You are subscribed",
        "Check your email",
    ]


def test_a_ledger_locked_by_a_send_gets_503_and_nothing_is_sent_or_stored(
    settings: Settings, server: str, smtp: Server
) -> None:
    from test_endpoint import locked

    token = make_confirmation_token(GOOD, SECRET)
    with locked(settings.ledger):
        for answer in (
            httpx.post(f"{server}/subscribe", data=form("locked@dudley.example.org"), timeout=60),
            httpx.post(f"{server}/subscribe/confirm/{token}", timeout=60),
        ):
            assert answer.status_code == 503 and int(answer.headers["retry-after"]) > 0
    httpx.post(f"{server}/subscribe", data=form("after@dudley.example.org"))
    assert len(arrived(smtp, "after@dudley.example.org")) == 1
    assert smtp.handler.received("locked@dudley.example.org") == []
    assert signups(settings.ledger) == []
