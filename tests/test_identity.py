"""Any network can adopt the tool: every name, the brand colour and the logo come from newsletter.toml.

A fictional second network is rendered through every output (both parts, the headers, the web archive,
the calendar files, the endpoint and preview pages) and no West Midlands wording may appear anywhere;
the shipped defaults still say exactly what they said. Brand colours are checked for contrast, the logo
for alt text, and a `templates_dir` override for what every copy must keep.
"""

from __future__ import annotations

import email
import email.policy
import http.client
import re
import threading
from pathlib import Path

import httpx
import lxml.html
import pytest

from conftest import DRAFTS, ROOT
from content import normalise, sentences
from newsletter.archive import build
from newsletter.calendar import entries
from newsletter.config import Settings, load_settings
from newsletter.endpoint import create_app
from newsletter.errors import ConfigError
from newsletter.load import load_draft
from newsletter.message import Composer
from newsletter.recipients import Authority, Recipient
from newsletter.render import (
    AA_CONTRAST,
    ON_BRAND,
    Web,
    contrast,
    count_words,
    darker,
    identity_problems,
    render,
    render_sample,
)
from newsletter.unsubscribe import make_token

WEST_MIDLANDS = [
    "West Midlands",
    "wmchildrensservices",
    "Regional Update",
    "in the region",
    "sixteen",
    "Walsall",
    "Birmingham",
    "Dudley",
    "#183f6b",
]
"""Wording (and the colour) of the shipped sample that must never reach another network's readers."""

NORTHSHIRE = {
    "publication": {
        "title": "Northshire Bulletin",
        "network": "Northshire Children’s Partnership",
        "masthead": "Northshire Children’s Partnership",
        "readers": "practitioners and managers",
        "unnamed_member": "a partner organisation",
        "sender": {"name": "Northshire Partnership Team", "email": "bulletin@northshire.example.net"},
        "postal_address": "Partnership Office, 1 Market Street, Northtown, NT1 1AA",
        "privacy_url": "https://northshire.example.net/privacy",
    },
    "brand": {
        "colour": "#6b1d5c",
        "logo": {
            "url": "https://northshire.example.net/logo.png",
            "alt": "Northshire Children’s Partnership",
            "width": 180,
        },
    },
    "list": {
        "id": "bulletin.northshire.example.net",
        "name": "Northshire Bulletin",
        "domain": "northshire.example.net",
        "bounce_to": "bounces@northshire.example.net",
        "unsubscribe_mailto": "unsubscribe@northshire.example.net",
        "unsubscribe_url": "https://northshire.example.net/unsubscribe",
        "archive_url": "https://northshire.example.net/bulletin",
    },
}
MEMBERS = {
    a.slug: a
    for a in [
        Authority(slug="northtown", name="Northtown Council", kind="council"),
        Authority(slug="fellside", name="Fellside Children's Trust", kind="trust"),
    ]
}
DRAFT = """\
title: Northshire Bulletin
issue: 2025-10
subject: "Northshire Bulletin, October 2025: a new chair and the autumn conference"
preheader: A new chair for the partnership and the autumn conference
from: {name: Northshire Partnership Team, email: bulletin@northshire.example.net}
reply_to: bulletin@northshire.example.net
send_on: 2025-10-17
status: approved
sections:
  - letter:
      heading: From the chair
      body: |
        Welcome to the October issue. Our partnership has a new chair this month.
      signed: Priya Shah
  - article:
      heading: Practice week
      body: Practice week starts on Monday with sessions in every member organisation.
      links:
        - {text: Read the practice week programme, url: "https://northshire.example.net/practice-week"}
      audience: [northtown]
  - events:
      heading: Upcoming events
      items:
        - title: Autumn conference
          cost: free
          sessions:
            - {date: 2025-11-12, start: "09:30", end: "16:00", venue: Northtown Civic Hall}
          booking: {text: Book a place at the autumn conference, url: "https://northshire.example.net/conference"}
"""


def northshire(**changes: object) -> Settings:
    data = {**NORTHSHIRE, **changes}
    return Settings.model_validate(data)


@pytest.fixture
def draft(tmp_path: Path) -> Path:
    path = tmp_path / "drafts" / "2025-10.yaml"
    path.parent.mkdir()
    path.write_text(DRAFT, encoding="utf-8")
    return path


def assert_no_west_midlands(text: str, where: str) -> None:
    found = [words for words in WEST_MIDLANDS if words.lower() in text.lower()]
    assert not found, f"{where}: {found}"


def decoded(data: bytes) -> str:
    """Every header (decoded) and every part's text of a message."""
    message = email.message_from_bytes(data, policy=email.policy.default)
    headers = "\n".join(f"{name}: {value}" for name, value in message.items())
    parts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
    return "\n".join([headers, *parts])


def test_a_second_network_shows_its_own_names_and_never_the_west_midlands(draft: Path, tmp_path: Path) -> None:
    settings = northshire()
    issue = load_draft(draft, MEMBERS).issue
    outputs: dict[str, str] = {}
    for slug in [None, *MEMBERS]:
        sample = render_sample(issue, MEMBERS.get(slug or ""), settings)
        outputs[f"html {slug}"], outputs[f"text {slug}"] = sample.html, sample.text
        composer = Composer(
            issue,
            render(issue, MEMBERS.get(slug or ""), web=Web(), settings=settings),
            settings,
            "a secret for the test",
        )
        outputs[f"message {slug}"] = decoded(
            composer.compose(Recipient("reader@northtown.example.org", "A Reader", slug or "northtown")).data
        )
    site = tmp_path / "site"
    build([issue], site, drafts=draft.parent, settings=settings, members=len(MEMBERS))
    for path in site.rglob("*"):
        if path.is_file():
            outputs[str(path.relative_to(site))] = path.read_text(encoding="utf-8")
    for entry in entries(issue, settings):
        outputs[entry.filename] = entry.data.decode()
    assert any(name.endswith(".ics") for name in outputs)
    for where, text in outputs.items():
        assert_no_west_midlands(text, where)

    page = lxml.html.document_fromstring(outputs["html northtown"])
    (h1,) = page.iter("h1")
    assert h1.text_content() == "Northshire Bulletin"  # the masthead stays live text beside the logo
    (logo,) = [img for img in page.iter("img") if img.get("src") == "https://northshire.example.net/logo.png"]
    assert logo.get("alt") == "Northshire Children’s Partnership"
    assert logo.getparent().get("width") == "180"  # MJML sizes the cell; the picture fills it
    visible = normalise(page.text_content())
    assert "October 2025 · Northshire Children’s Partnership" in visible
    assert (
        "You receive the Northshire Bulletin because you work for Northtown Council, a member of the Northshire "
        "Children’s Partnership."
    ) in visible
    assert "Partnership Office, 1 Market Street, Northtown, NT1 1AA" in visible
    assert "https://northshire.example.net/privacy" in page.xpath("//a/@href")
    assert "#6b1d5c" in outputs["html northtown"]
    assert "you work for a partner organisation" in normalise(outputs["text None"])
    text = outputs["text northtown"]
    assert text.startswith("NORTHSHIRE BULLETIN\nOctober 2025 · Northshire Children’s Partnership\n")
    assert "\nPrivacy notice: https://northshire.example.net/privacy\n" in text
    message = outputs["message northtown"]
    assert "List-Id: Northshire Bulletin <bulletin.northshire.example.net>" in message
    assert re.search(r"Message-ID: <2025-10\.[0-9a-f]+@northshire\.example\.net>", message)
    web = normalise(lxml.html.document_fromstring(outputs["2025-10/index.html"]).text_content())
    assert (
        "The Northshire Bulletin goes each month to practitioners and managers of the two member organisations "
        "of the Northshire Children’s Partnership."
    ) in web
    index = outputs["index.html"]
    assert "<title>Northshire Bulletin: past issues</title>" in index and "#6b1d5c" in index
    assert "The monthly update of the Northshire Children’s Partnership" in index
    ics = outputs["2025-10/2025-10-autumn-conference-2025-11-12.ics"]
    assert "PRODID:-//Northshire Bulletin//newsletter//EN" in ics
    assert re.search(r"UID:2025-10-autumn-conference-2025-11-12@northshire\.example\.net", ics)


def test_the_shipped_defaults_say_what_they_always_said(authorities: dict) -> None:
    issue = load_draft(DRAFTS[-1], authorities).issue
    default = render(issue, authorities["walsall"])
    explicit = render(issue, authorities["walsall"], settings=Settings())
    assert default == explicit
    assert default.text.startswith("REGIONAL UPDATE\nSeptember 2025 · West Midlands children’s services\n")
    assert (
        "You receive the Regional Update because you work for Walsall Council, a member of the West Midlands "
        "children’s services network."
    ) in normalise(default.text)
    assert "you work for an organisation in the region" in normalise(render(issue).text)
    web = render(issue, None, web=Web(files=""), archive=True, members=len(authorities))
    assert (
        "The Regional Update goes each month to staff of the sixteen member organisations of the West Midlands "
        "children’s services network."
    ) in normalise(web.text)
    assert "#183f6b" in default.html and "<img" not in default.html.split("<h1")[0].split("<body")[1]


def test_the_member_count_comes_from_the_authorities_never_a_sentence(authorities: dict) -> None:
    issue = load_draft(DRAFTS[-1], authorities).issue
    assert "of the three member organisations" in normalise(render(issue, archive=True, members=3).text)
    assert "staff of the member organisations" in normalise(render(issue, archive=True).text)
    assert [count_words(n) for n in (1, 2, 16, 20, 42, 99, 120, 1500)] == [
        "one",
        "two",
        "sixteen",
        "twenty",
        "forty-two",
        "ninety-nine",
        "120",
        "1,500",
    ]


def test_a_draft_without_a_title_takes_the_publications(draft: Path) -> None:
    draft.write_text(DRAFT.replace("title: Northshire Bulletin\n", "", 1), encoding="utf-8")
    issue = load_draft(draft, MEMBERS).issue
    assert render(issue, settings=northshire()).text.startswith("NORTHSHIRE BULLETIN\n")


# --- the brand is checked ---------------------------------------------------------------------------------


def test_contrast_is_wcags() -> None:
    assert contrast("#000000", "#ffffff") == pytest.approx(21)
    assert contrast("#ffffff", "#ffffff") == pytest.approx(1)
    assert contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)  # the lightest AA grey on white
    assert contrast("#183f6b", ON_BRAND) > 10


def test_a_low_contrast_brand_colour_is_an_error_with_its_ratio_and_a_darker_suggestion(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    config.write_text('[publication]\ntitle = "Northshire Bulletin"\n\n[brand]\ncolour = "#F5A623"  # orange\n')
    settings = load_settings(config)
    assert settings.brand.colour == "#f5a623"
    (problem,) = identity_problems(settings, config)
    assert problem.severity == "error" and problem.file == config and problem.line == 5
    assert "`[brand] colour` #f5a623 gives 2.02:1 contrast with the white text on it" in problem.message
    assert "WCAG AA needs 4.5:1" in problem.message
    suggestion = re.search(r"such as (#[0-9a-f]{6}) \((\d\.\d\d):1\)", problem.message)
    assert suggestion and contrast(suggestion.group(1), ON_BRAND) >= AA_CONTRAST
    assert darker("#f5a623") == suggestion.group(1)
    # just short of 4.5 is never shown as 4.5
    assert "4.49:1" in identity_problems(Settings.model_validate({"brand": {"colour": "#647a86"}}))[0].message
    assert identity_problems(Settings()) == [] and identity_problems(northshire()) == []


def test_a_colour_must_be_a_colour_and_a_logo_must_have_alt_text(tmp_path: Path) -> None:
    config = tmp_path / "newsletter.toml"
    for body, words in [
        ('[brand]\ncolour = "navy"\n', "is not a colour"),
        ('[brand]\nlogo = {url = "https://n.example.net/logo.png"}\n', "[brand.logo] alt: Field required"),
        ('[brand]\nlogo = {url = "https://n.example.net/logo.png", alt = " "}\n', "[brand.logo] alt"),
        ('[brand]\nlogo = {url = "https://n.example.net/l.png", alt = "N", width = 900}\n', "width"),
    ]:
        config.write_text(body)
        with pytest.raises(ConfigError, match=re.escape(words)):
            load_settings(config)
    settings = Settings.model_validate({"brand": {"logo": {"url": "http://n.example.net/logo.png", "alt": "logo.png"}}})
    messages = [p.message for p in identity_problems(settings)]
    assert any("must start with https://" in m for m in messages)
    assert any("say what the logo says" in m for m in messages)


# --- the pages around the email -------------------------------------------------------------------------


def test_the_unsubscribe_pages_name_the_list_and_wear_its_colour(tmp_path: Path) -> None:
    settings = northshire(ledger=tmp_path / "newsletter.db")
    app = create_app(settings, "a secret for the test")
    token = make_token("reader@northtown.example.org", settings.list.id, "a secret for the test")

    async def fetch() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as client:
            return await client.get(f"/unsubscribe/{token}")

    import asyncio

    page = asyncio.run(fetch()).text
    assert "Unsubscribe from the Northshire Bulletin?" in page and "#6b1d5c" in page
    assert_no_west_midlands(page, "unsubscribe page")


def test_the_preview_renders_with_the_deployments_settings(draft: Path) -> None:
    from newsletter.preview import serve

    stop, ready, urls = threading.Event(), threading.Event(), []
    thread = threading.Thread(
        target=serve,
        args=(draft, MEMBERS),
        daemon=True,
        kwargs={
            "port": 0,
            "ready": lambda url: (urls.append(url), ready.set()),
            "stop": stop,
            "settings": northshire(),
        },
    )
    thread.start()
    assert ready.wait(30)
    port = int(urls[0].rstrip("/").rsplit(":", 1)[1])
    try:
        pages = {}
        for path in ("/", "/email.html?authority=northtown", "/email.txt"):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            connection.request("GET", path)
            pages[path] = connection.getresponse().read().decode()
            connection.close()
    finally:
        stop.set()
        thread.join(10)
    assert "#6b1d5c" in pages["/"] and "#6b1d5c" in pages["/email.html?authority=northtown"]
    assert pages["/email.txt"].startswith("NORTHSHIRE BULLETIN\n")
    for path, text in pages.items():
        assert_no_west_midlands(text, path)


# --- a network's own templates ----------------------------------------------------------------------------

OWN_MASTHEAD = """\
{% extends "shipped/email.mjml.j2" %}
{% block styles %} .masthead h1 { letter-spacing: 0.5px; }{% endblock %}
{% block masthead %}
    <mj-section background-color="{{ colour.brand }}" padding="28px 0 24px">
      <mj-column>
        <mj-text css-class="masthead">
          <h1>{{ title }}</h1>
          <p>Our own masthead: {{ issue.edition_label }}</p>
        </mj-text>
      </mj-column>
    </mj-section>
{% endblock %}
"""


def test_a_templates_dir_replaces_blocks_and_keeps_every_sentence(tmp_path: Path, authorities: dict) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "email.mjml.j2").write_text(OWN_MASTHEAD)
    settings = Settings.model_validate({"templates_dir": folder})
    for path in DRAFTS:
        issue = load_draft(path, authorities).issue
        result = render(issue, authorities["walsall"], settings=settings)
        visible = normalise(lxml.html.document_fromstring(result.html).text_content())
        assert "Our own masthead:" in visible and "letter-spacing" in result.html
        missing = [s for s in sentences(path) if s not in visible]
        assert not missing, missing
        assert identity_problems(settings, issue=issue) == []
    assert "Our own masthead" not in render(issue, authorities["walsall"]).html  # the shipped one is untouched


def test_a_templates_dir_that_drops_what_every_copy_needs_is_an_error(tmp_path: Path, authorities: dict) -> None:
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "email.mjml.j2").write_text(
        OWN_MASTHEAD.replace("{% endblock %}\n", "{% endblock %}\n{% block footer %}{% endblock %}\n", 1).replace(
            "<h1>{{ title }}</h1>", "<h2>{{ title }}</h2>"
        )
    )
    (folder / "emial.txt.j2").write_text("typo")
    issue = load_draft(DRAFTS[-1], authorities).issue
    problems = identity_problems(Settings.model_validate({"templates_dir": folder}), issue=issue)
    messages = "\n".join(f"{p.severity}: {p.message}" for p in problems)
    assert "error: the templates in" in messages
    assert "leave out the reader's address (HTML part)" in messages
    assert "leave out the unsubscribe link (HTML part)" in messages
    assert "leave out the title as a live-text heading (<h1>)" in messages
    assert "warning: " in messages and "emial.txt.j2 is not a template the tool uses" in messages
    (folder / "email.mjml.j2").write_text("{% if %}")
    (broken,) = [
        p
        for p in identity_problems(Settings.model_validate({"templates_dir": folder}), issue=issue)
        if p.severity == "error"
    ]
    assert "do not render" in broken.message
    (absent,) = identity_problems(Settings.model_validate({"templates_dir": tmp_path / "nowhere"}))
    assert "is not a folder" in absent.message


def test_the_archive_index_is_branded_and_counts_the_members(tmp_path: Path, authorities: dict) -> None:
    issue = load_draft(DRAFTS[-1], authorities).issue.model_copy(update={"status": "approved"})
    build([issue], tmp_path / "wm", drafts=ROOT / "drafts", members=len(authorities))
    html = (tmp_path / "wm" / "2025-09" / "index.html").read_text(encoding="utf-8")
    page = normalise(lxml.html.document_fromstring(html).text_content())
    assert "goes each month to staff of the sixteen member organisations of the West Midlands" in page
    index = (tmp_path / "wm" / "index.html").read_text()
    assert "<title>Regional Update: past issues</title>" in index and "<img" not in index
