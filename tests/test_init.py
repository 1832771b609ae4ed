"""`newsletter init`: a working deployment for a new network, and that network's issue end to end.

The end-to-end test is what an adopting network does: init a folder, give it its own colour and logo,
then check, render, send to the outbox and publish the archive, all from that folder with the real
command. Its name is everywhere, the West Midlands nowhere, axe finds nothing in Chromium, and a brand
colour too light for white text is refused by `check`.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from pydantic import BaseModel

from conftest import ROOT
from newsletter.checks import check
from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError, OutputError
from newsletter.init import MEMBERS, create
from newsletter.load import load_draft
from newsletter.recipients import load_authorities
from newsletter.render import identity_problems
from newsletter.schema import schema_text

WEST_MIDLANDS = [
    "West Midlands",
    "wmchildrensservices",
    "Regional Update",
    "in the region",
    "sixteen",
    "Walsall",
    "Birmingham",
    "#183f6b",
]
WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]
TODAY = dt.date(2025, 10, 8)


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "newsletter", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(cwd)},
    )


def test_init_writes_a_deployment_that_loads_and_checks_clean(tmp_path: Path) -> None:
    folder = tmp_path / "northshire"
    made = create(
        folder,
        title="Northshire Bulletin",
        network="Northshire Children’s Partnership",
        domain="Northshire.Example.net",
        today=TODAY,
    )
    names = sorted(str(p.relative_to(folder)) for p in made.written)
    assert names == sorted(
        [
            "newsletter.toml",
            "recipients/authorities.yaml",
            "recipients/example-council.csv",
            "recipients/example-trust.csv",
            "drafts/2025-10.yaml",
            "schema/draft.schema.json",
            "README.md",
        ]
    )
    assert made.kept == [] and made.draft == folder / "drafts" / "2025-10.yaml"

    settings = load_settings(folder / "newsletter.toml")
    assert settings.publication.title == "Northshire Bulletin"
    assert settings.publication.network == settings.publication.masthead == "Northshire Children’s Partnership"
    assert settings.list.id == "northshire-bulletin.northshire.example.net"
    assert (
        settings.list.domain == "northshire.example.net"
        and settings.publication.sender.email == "news@northshire.example.net"
    )
    assert identity_problems(settings, folder / "newsletter.toml") == []

    members = load_authorities(folder / "recipients" / "authorities.yaml")
    assert [m.slug for m in members] == list(MEMBERS)
    for member in members:
        with (folder / "recipients" / f"{member.slug}.csv").open(encoding="utf-8") as file:
            rows = list(csv.DictReader(file))
        assert rows and all(re.fullmatch(r"[a-z.]+@[a-z]+\.example\.org", row["email"]) for row in rows)

    text = made.draft.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=../schema/draft.schema.json"
    assert (folder / "schema" / "draft.schema.json").read_text(encoding="utf-8") == schema_text()
    draft = load_draft(made.draft, {m.slug for m in members})
    issue = draft.issue
    assert (issue.issue, issue.status, issue.title) == ("2025-10", "draft", "Northshire Bulletin")
    assert issue.send_on == dt.date(2025, 10, 31) and issue.send_on.weekday() < 5
    assert [p for p in check(draft, 20_000) if p.severity == "error"] == []
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "newsletter check drafts/2025-10.yaml" in readme and "newsletter send drafts/2025-10.yaml" in readme
    for path in made.written:
        if path.suffix != ".json":  # the schema is the tool's, generated from the model (newsletter/schema.py)
            assert not any(w.lower() in path.read_text(encoding="utf-8").lower() for w in WEST_MIDLANDS), path


def _keys(model: type[BaseModel]) -> dict[str, type[BaseModel] | None]:
    found: dict[str, type[BaseModel] | None] = {}
    for name, field in model.model_fields.items():
        kinds = [t for t in (field.annotation, *getattr(field.annotation, "__args__", ())) if isinstance(t, type)]
        found[name] = next((t for t in kinds if issubclass(t, BaseModel)), None)
    return found


def test_every_setting_is_in_the_starter_file_with_a_comment(tmp_path: Path) -> None:
    """A setting added to config.py without a line in newsletter/starter/newsletter.toml.j2 fails here."""
    create(tmp_path, today=TODAY)
    text = (tmp_path / "newsletter.toml").read_text(encoding="utf-8")
    tomllib.loads(text)
    tables = re.split(r"^\[([a-z_.]+)\]", text, flags=re.MULTILINE)
    sections = {"": tables[0], **dict(zip(tables[1::2], tables[2::2], strict=True))}
    missing = []
    for name, section in _keys(Settings).items():
        if section is None:
            if not re.search(rf"^#? ?{name} = .*#", sections[""], re.MULTILINE):
                missing.append(name)
            continue
        body = sections.get(name, "")
        for key, nested in _keys(section).items():
            line = re.search(rf"^#? ?{key} = .*$", body, re.MULTILINE)
            if line is None:
                missing.append(f"{name}.{key}")
            elif nested is not None:
                missing += [f"{name}.{key}.{sub}" for sub in _keys(nested) if f"{sub} = " not in line.group()]
    assert not missing, missing
    assert text.count("#") > 40  # every setting says what it does


def test_init_never_overwrites_and_fills_in_what_is_missing(tmp_path: Path) -> None:
    create(tmp_path, today=TODAY)
    (tmp_path / "newsletter.toml").write_text("# mine\n", encoding="utf-8")
    (tmp_path / "README.md").unlink()
    again = create(tmp_path, title="Another Title", today=TODAY)
    assert [p.name for p in again.written] == ["README.md"]
    assert len(again.kept) == 6
    assert (tmp_path / "newsletter.toml").read_text(encoding="utf-8") == "# mine\n"


def test_init_takes_awkward_names_and_refuses_what_cannot_work(tmp_path: Path) -> None:
    made = create(tmp_path / "a", title='The "Quarterly" Update: #1', network="Fellside & Dale network", today=TODAY)
    settings = load_settings(tmp_path / "a" / "newsletter.toml")
    assert settings.publication.title == 'The "Quarterly" Update: #1'
    assert settings.publication.masthead == "Fellside & Dale"
    assert load_draft(made.draft).issue.title == 'The "Quarterly" Update: #1'
    with pytest.raises(ConfigError, match="--domain not a domain: that is not a domain name"):
        create(tmp_path / "b", domain="not a domain", today=TODAY)
    with pytest.raises(ConfigError, match="--title must be one line"):
        create(tmp_path / "c", title="two\nlines", today=TODAY)
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="is a file"):
        create(tmp_path / "file", today=TODAY)
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


# --- end to end, with the real command ------------------------------------------------------------------


def _no_west_midlands(texts: dict[str, str]) -> None:
    for where, text in texts.items():
        found = [w for w in WEST_MIDLANDS if w.lower() in text.lower()]
        assert not found, f"{where}: {found}"


def _axe(browser: object, html: str, width: int) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})  # type: ignore[attr-defined]
    page.route("**/*", lambda route: route.abort())  # the logo's host is made up: never fetch it
    page.set_content(html)
    results = Axe().run(page, options={"runOnly": {"type": "tag", "values": WCAG}})
    page.close()
    assert results.violations_count == 0, results.generate_report()
    assert results.response["passes"]


def test_a_new_network_from_init_to_archive(tmp_path: Path, browser: object) -> None:
    result = run(
        "init",
        "northshire",
        "--title",
        "Northshire Bulletin",
        "--network",
        "Northshire Children’s Partnership",
        "--domain",
        "northshire.example.net",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "northshire"
    (draft,) = (folder / "drafts").glob("*.yaml")
    month = draft.stem
    config = folder / "newsletter.toml"
    text = config.read_text(encoding="utf-8")
    for old, new in [
        ('colour = "#2b3a4a"', 'colour = "#6b1d5c"'),
        ("# logo = ", "logo = "),
        ("# privacy_url = ", "privacy_url = "),
        ("# postal_address = ", "postal_address = "),
        ("# archive_url = ", "archive_url = "),
    ]:
        assert old in text
        text = text.replace(old, new, 1)
    config.write_text(text, encoding="utf-8")
    draft.write_text(draft.read_text(encoding="utf-8").replace("status: draft", "status: approved"), encoding="utf-8")

    for command in (
        ["check", f"drafts/{month}.yaml"],
        ["render", f"drafts/{month}.yaml", "--out", "out"],
        ["send", f"drafts/{month}.yaml"],
        ["archive", "--out", "site"],
    ):
        result = run(*command, cwd=folder)
        assert result.returncode == 0, (command, result.stdout, result.stderr)

    outputs = {
        "email.html": (folder / "out" / "email.html").read_text(encoding="utf-8"),
        "email.txt": (folder / "out" / "email.txt").read_text(encoding="utf-8"),
    }
    sent = sorted((folder / "outbox" / "new").iterdir())
    assert len(sent) == 4  # two members, two readers each
    for path in sent:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        parts = [part.get_content() for part in message.walk() if part.get_content_maintype() == "text"]
        outputs[path.name] = "\n".join([*(f"{k}: {v}" for k, v in message.items()), *parts])
        assert message["List-Id"] == "Northshire Bulletin <northshire-bulletin.northshire.example.net>"
        assert message["Message-ID"].endswith("@northshire.example.net>")
        assert message["From"] == "Northshire Children’s Partnership team <news@northshire.example.net>"
    site = folder / "site"
    for path in site.rglob("*"):
        if path.is_file():
            outputs[str(path.relative_to(site))] = path.read_text(encoding="utf-8")
    calendars = [name for name in outputs if name.endswith(".ics")]
    assert calendars
    _no_west_midlands(outputs)
    for name, text in outputs.items():
        assert "Northshire" in text, name
    for name in calendars:
        assert "PRODID:-//Northshire Bulletin//newsletter//EN" in outputs[name]
        assert re.search(r"UID:\S+@northshire\.example\.net", outputs[name])
    for name in ["email.html", f"{month}/index.html", "index.html"]:
        assert "#6b1d5c" in outputs[name] and 'alt="Northshire Children’s Partnership"' in outputs[name], name
    assert "https://www.northshire.example.net/privacy" in outputs["email.html"]
    assert "goes each month to staff of the two member organisations of the Northshire" in " ".join(
        outputs[f"{month}/index.txt"].split()
    )

    for width in (375, 800):
        _axe(browser, outputs["email.html"], width)
    _axe(browser, outputs[f"{month}/index.html"], 800)
    _axe(browser, outputs["index.html"], 800)

    # A brand colour white text cannot be read on is refused, with the ratio and a colour that would do.
    config.write_text(
        config.read_text(encoding="utf-8").replace('colour = "#6b1d5c"', 'colour = "#f5a623"'), encoding="utf-8"
    )
    refused = run("check", f"drafts/{month}.yaml", cwd=folder)
    assert refused.returncode == 1
    assert "newsletter.toml" in refused.stderr and "#f5a623 gives 2.02:1 contrast" in refused.stderr
    assert re.search(r"such as #[0-9a-f]{6} \(4\.\d\d:1\)", refused.stderr)
    assert run("send", f"drafts/{month}.yaml", "--retry-failed", cwd=folder).returncode == 1
